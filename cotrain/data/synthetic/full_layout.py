"""The synthetic data laid out under the dataset names of ``data_recipes/full.yaml``.

``full.yaml`` reads ``${data_root}/records/<name>_<split>.jsonl`` for real datasets (NWPU-RESISC45,
AID, RSVQA-LR, DIOR-RSVG, DOTA, RSICD, FusionRS, ...), as the converters write them. To run that
exact recipe without the real data (a CPU smoke test, CI), ``link_full_layout`` points each of those
names at the synthetic dataset of the same task (symbolic links, no copies). The stand-ins are the
synthetic tasks, not imitations of the real datasets' content.

Must not generate data (``generate_demo_data`` does) nor know anything about training.
"""

from __future__ import annotations

import os
from pathlib import Path

from cotrain.errors import ConfigError

FULL_STANDINS: dict[str, str] = {
    "nwpu_resisc45": "syn_cls",
    "aid": "syn_cls",
    "rsvqa_lr": "syn_vqa",
    "vrsbench_vqa": "syn_vqa",
    "dior_rsvg": "syn_grounding",
    "rsvg_quad": "syn_grounding",
    "dota_v1": "syn_det",
    "rsicd": "syn_cap_rgb",
    "fusionrs_ir": "syn_cap_ir",
    "lrs_zoom": "syn_zoom",
}
"""full.yaml dataset name -> synthetic dataset with the same task."""


def link_full_layout(synthetic_root: str | Path, out: str | Path) -> Path:
    """Create ``out/records/<name>_<split>.jsonl`` and ``out/images`` as links into ``synthetic_root``."""
    src = Path(synthetic_root).resolve()
    dst = Path(out)
    if not (src / "records").is_dir() or not (src / "images").is_dir():
        raise ConfigError(f"{src} is not a synthetic data root (no records/ and images/); generate it first with "
                          "cotrain make-demo-data --out DIR")
    (dst / "records").mkdir(parents=True, exist_ok=True)
    images = dst / "images"
    if images.is_symlink() or not images.exists():
        if images.is_symlink():
            images.unlink()
        os.symlink(src / "images", images, target_is_directory=True)
    for name, syn in FULL_STANDINS.items():
        for split in ("train", "val", "test"):
            target = src / "records" / f"{syn}_{split}.jsonl"
            if not target.is_file():
                raise ConfigError(f"{target} is missing: the synthetic data at {src} is incomplete; regenerate it")
            link = dst / "records" / f"{name}_{split}.jsonl"
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(target, link)
    return dst
