"""What a recipe will train on, checked and counted before any model is loaded.

``inspect_recipe(cfg)`` runs every check a training run needs (config keys, files, budgets,
every record, every image header) and returns the realised mix of epoch 0 per dataset and per
task: records, samples, share of samples, images, and estimated tokens. Token counts come from
the recorded image sizes and the chat template (``ChatEncoder.length_estimate``) on a fixed
sample of records, never from decoded pixels. Needs a tokenizer (the offline one for tiny models,
the checkpoint's otherwise) but no model weights.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from cotrain.config import RunConfig
from cotrain.data.dataset import LoadedDataset, SampleBuilder, read_record
from cotrain.errors import BadRecordError, RecordError

log = logging.getLogger(__name__)


@dataclass
class DatasetMix:
    """Realised epoch-0 numbers of one dataset."""

    name: str
    task: str
    records: int
    weight: float
    samples: int
    share: float
    images: int
    mean_tokens: float
    tokens: float
    """Estimated tokens per epoch (samples x mean tokens per sample)."""
    over_length: int
    """Sampled records whose estimate exceeds data.max_length (they would be skipped); for a CLIP recipe, whose
    first caption exceeds model.clip.max_text_tokens (it would be cut)."""
    bad_images: dict = field(default_factory=dict)
    """Image problems found by reading headers: reason -> count."""
    curriculum: dict | None = None
    """``cotrain.curriculum.schedule.describe`` of the dataset's curriculum (tier sizes, first steps), or None."""


def _tokenizer_side(cfg: RunConfig):
    """(encoder, family) without model weights."""
    from cotrain.data.encoder import ChatEncoder
    from cotrain.model.processor import build_offline_processor, load_offline_processor
    from cotrain.model.build import resolve_family

    family = resolve_family(cfg)
    if cfg.model.path:
        processor = load_offline_processor(cfg.model.path, family.name)
    else:
        processor = build_offline_processor(family.name, min_pixels=cfg.data.min_pixels,
                                            max_pixels=cfg.data.max_pixels)
    return ChatEncoder(processor, family), family


HEADER_CHECK_LIMIT = 10_000
"""Records whose image headers are checked in a lazily read (large) dataset; small ones are checked whole."""


def _length_of(cfg: RunConfig):
    """(tokens of a sampled record, the limit a sample must fit): a VLM's conversation, or a CLIP's caption."""
    if cfg.model.kind == "clip":
        from cotrain.contrastive.model import clip_processor

        processor = clip_processor(cfg)
        # the untruncated caption + end token; longer than max_text_tokens means cut at training time
        return (lambda rec, ld, i: len(processor.tokenizer(rec["captions"][0])["input_ids"]) + 1,
                processor.max_text_tokens)
    encoder, family = _tokenizer_side(cfg)
    builder = SampleBuilder(encoder, family, cfg.data)
    # the conversation training would build: downscaled to fit when data.too_long=downscale
    return (lambda rec, ld, i: builder.fitted_conversation(rec, ld, 0, i)[1]), cfg.data.max_length


def _checked_records(ld: LoadedDataset, problems: Counter):
    """The records to check: all of an in-memory dataset, the first HEADER_CHECK_LIMIT of a lazy one.
    A lazily read record that fails validation is counted as ``bad_record`` (training skips it too)."""
    n = len(ld.records) if isinstance(ld.records, list) else min(len(ld.records), HEADER_CHECK_LIMIT)
    for i in range(n):
        try:
            yield ld.records[i]
        except RecordError:
            problems["bad_record"] += 1


def check_image_headers(ld: LoadedDataset) -> Counter:
    """Open every image of every record far enough to read its size; count missing, unreadable, mismatched."""
    problems: Counter = Counter()
    seen: set[str] = set()
    for rec in _checked_records(ld, problems):
        for img in rec["images"]:
            if img.get("band_files"):  # one GeoTIFF per band on its native grid: each file must exist
                missing = [f for f in img["band_files"].values() if not (Path(ld.cfg.image_root) / f).is_file()]
                if missing:
                    problems["image_missing"] += 1
                continue
            path = Path(ld.cfg.image_root) / img["path"]
            if str(path) in seen:
                continue
            seen.add(str(path))
            if not path.is_file():
                problems["image_missing"] += 1
                continue
            try:
                with Image.open(path) as im:
                    size = im.size
            except (UnidentifiedImageError, OSError, ValueError):
                problems["image_unreadable"] += 1
                continue
            if img.get("modality") not in ("ms", "sar") and size != (int(img["width"]), int(img["height"])):
                problems["image_size_mismatch"] += 1
    return problems


def inspect_recipe(cfg: RunConfig, *, sample_per_dataset: int = 200, check_images: bool = True) -> list[DatasetMix]:
    """Validate ``cfg`` like a training run would and return the realised epoch-0 mix per dataset."""
    from cotrain.training.recipe import setup_data

    train_sets, _ = setup_data(cfg)
    length, limit = _length_of(cfg)
    from cotrain.data.mixture import MixtureSampler

    from cotrain.data.dataset import dataset_curricula
    from cotrain.training.recipe import optimizer_step_samples

    sampler = MixtureSampler([len(ld.records) for ld in train_sets], [ld.cfg.weight for ld in train_sets],
                             [ld.cfg.name for ld in train_sets], seed=cfg.data.seed,
                             curricula=dataset_curricula(train_sets), curriculum_step=optimizer_step_samples(cfg))
    realised = sampler.realised_mix(0)
    out = []
    for ld in tqdm(train_sets, desc="inspect", unit=" dataset"):
        tokens, over = [], 0
        for i in range(min(sample_per_dataset, len(ld.records))):
            try:
                n = length(read_record(ld, i), ld, i)
            except BadRecordError as e:
                log.warning("record %s of %s: %s", e.record_id, ld.cfg.name, e)
                continue
            tokens.append(n)
            over += n > limit
        mean_tokens = sum(tokens) / len(tokens) if tokens else 0.0
        tasks = Counter(r["task"] for r in _checked_records(ld, Counter()))
        bad = dict(check_image_headers(ld)) if check_images else {}
        samples = int(realised[ld.cfg.name]["samples"])
        out.append(DatasetMix(
            name=ld.cfg.name, task=tasks.most_common(1)[0][0] if len(tasks) == 1 else "mixed",
            records=len(ld.records), weight=ld.cfg.weight, samples=samples,
            share=float(realised[ld.cfg.name]["share"]),
            images=sum(len(r["images"]) for r in _checked_records(ld, Counter())), mean_tokens=mean_tokens,
            tokens=samples * mean_tokens, over_length=over, bad_images=bad))
    if sampler.curricula:
        from cotrain.curriculum.schedule import describe

        for d in sampler.curricula:  # ``out`` lists the datasets in train_sets order
            out[d].curriculum = describe(sampler, d)
    return out


def by_task(mix: list[DatasetMix]) -> dict[str, dict]:
    """The same numbers summed per task."""
    agg: dict[str, dict] = defaultdict(lambda: {"datasets": 0, "records": 0, "samples": 0, "share": 0.0,
                                                "images": 0, "tokens": 0.0})
    for m in mix:
        a = agg[m.task]
        a["datasets"] += 1
        a["records"] += m.records
        a["samples"] += m.samples
        a["share"] += m.share
        a["images"] += m.images
        a["tokens"] += m.tokens
    return dict(agg)


def format_mix(mix: list[DatasetMix], max_length: int, limit_name: str = "max_length") -> str:
    """Plain-text tables per dataset and per task (``limit_name``: what ``max_length`` is, for the notes)."""
    total_tokens = sum(m.tokens for m in mix) or 1.0
    lines = [f"{'dataset':<18}{'task':<15}{'records':>9}{'weight':>8}{'samples':>9}{'share':>8}{'images':>8}"
             f"{'tok/sample':>11}{'tokens':>12}{'tok share':>10}  notes"]
    for m in mix:
        notes = []
        if m.over_length:
            notes.append(f"{m.over_length} sampled > {limit_name} {max_length}")
        if m.bad_images:
            notes.append("images: " + ", ".join(f"{k} {v}" for k, v in m.bad_images.items()))
        lines.append(f"{m.name:<18}{m.task:<15}{m.records:>9}{m.weight:>8.2f}{m.samples:>9}{m.share:>8.1%}"
                     f"{m.images:>8}{m.mean_tokens:>11.0f}{m.tokens:>12,.0f}{m.tokens / total_tokens:>10.1%}  "
                     + "; ".join(notes))
    lines += ["", f"{'task':<18}{'datasets':>9}{'records':>9}{'samples':>9}{'share':>8}{'images':>8}{'tokens':>12}"
              f"{'tok share':>10}"]
    for task, a in sorted(by_task(mix).items()):
        lines.append(f"{task:<18}{a['datasets']:>9}{a['records']:>9}{a['samples']:>9}{a['share']:>8.1%}"
                     f"{a['images']:>8}{a['tokens']:>12,.0f}{a['tokens'] / total_tokens:>10.1%}")
    lines.append(f"\ntotal: {sum(m.samples for m in mix)} samples, ~{total_tokens:,.0f} tokens per epoch")
    return "\n".join(lines)


def plot_mix(mix: list[DatasetMix], out: str | Path) -> None:
    """Bar chart: share of samples and share of tokens per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    total_tokens = sum(m.tokens for m in mix) or 1.0
    x = np.arange(len(mix))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(mix) + 2), 3.8), dpi=120)
    ax.bar(x - 0.2, [m.share for m in mix], 0.4, label="share of samples")
    ax.bar(x + 0.2, [m.tokens / total_tokens for m in mix], 0.4, label="share of tokens")
    ax.set_xticks(x, [m.name for m in mix], rotation=30, ha="right")
    ax.set_ylabel("share per epoch")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
