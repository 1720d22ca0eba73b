"""Public remote-sensing benchmarks read from their standard files (``--bench aid --data-root DIR``).

This module owns the table of public benchmarks (``PUBLIC_BENCHMARKS``): for each, the files it
expects under the data root, the split and conventions it uses, its metric and prompt options, and
the converter call that turns those files into canonical records. ``prepare_public`` converts once
into ``<cache_dir>/<name>.jsonl`` (atomic) and reuses that file while a fingerprint of the sources
(paths, sizes, mtimes of every file under the listed paths) still matches. It must not run models,
score answers, or change a converter's output; a benchmark only chooses which converter, split and
options to use.

Splits and conventions (paths relative to ``--data-root``):

* Scene folders without an official split (``aid``, ``ucm``, ``nwpu_resisc45``, ``whu_rs19``): the
  TEST part of the seeded per-class split ``ratios=(0.8, 0.1, 0.1), seed=0`` of
  ``cotrain.converters.scenes`` -- the same draw ```cotrain convert scenes` --ratios 0.8,0.1,0.1
  --seed 0`` makes (the project default), so a model trained on that train part never sees these
  images. Papers use other ratios (AID 50/50 or 20/80, NWPU 20/80 or 10/90, UCM 80/20); numbers
  are therefore comparable across cotrain runs, not to a paper's table.
* ``meter_ml``: the expert-labelled test set, read from an ASSUMED label CSV (``METER-ML/test.csv``,
  columns ``image,label``; see ``cotrain.converters.meter_ml``); multi-label images left out.
* RSVQA: the official ``test`` split of LR (``RSVQA_LR/LR_split_test_*.json``, images
  ``Images_LR/<id>.tif``) and of HR (``RSVQA_HR/USGS_split_test_*.json``) plus HR's second test
  set ``test_phili`` (Philadelphia), both with images ``RSVQA_HR/Data/<id>.tif``.
* VRSBench: the released evaluation files (``VRSBench_EVAL_{vqa,Cap,referring}.json``) over
  ``Images_val/``; referring boxes are the ``{<x1><y1><x2><y2>}`` references in per cent (0..100)
  of the image width / height, mapped to pixels (``cotrain.converters.vrsbench``). Acc@0.5 and
  Acc@0.7 as in the paper.
* DIOR-RSVG: ``test.txt`` (object indices) of the release. ``rsvg_test`` (Sun et al., ACM MM 2022)
  ASSUMES the release arranged in the same layout (``RSVG/Annotations/*.xml`` with
  ``<description>`` per object, ``RSVG/JPEGImages/``, ``RSVG/test.txt``).
* FusionRS: ASSUMED layout ``FusionRS/test/{rgb,ir}/`` + ``captions.json`` (the folder layout of
  ``cotrain.converters.fusion``; the IR-aware captions of the IR images) and ``qa.json`` (the
  entry list of ``cotrain.converters.fusionrs_qa``, one ``type`` per QA family).
* BigEarthNet.txt: the manually verified ``benchmark`` split, rows exported from the parquet as JSON
  lines, images rendered to RGB per Sentinel-2 patch (ASSUMED, see
  ``cotrain.converters.bigearthnet_txt``); binary (yes/no) rows as vqa, multiple-choice rows as mcq,
  captions as captioning, referring rows as grounding (hbb; Acc@0.25/0.5/0.75/0.9, mIoU and the
  parse rate, which is the paper's instruction-following rate), and the same referring rows asked
  for a point (``bigearthnet_txt_point``: point-in-box accuracy). The row's ``type`` is the
  record's ``subtask``, so each result has a ``by_subtask`` table.

Cache: one cache directory can serve several data roots; the fingerprint names the absolute
source paths, so a different root rebuilds. Concurrent ranks must not prepare the same name at
once (prepare on rank 0, then barrier).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cotrain.converters import ConvertError, ConvertReport
from cotrain.converters.bigearthnet_txt import convert_bigearthnet_txt
from cotrain.converters.fusion import convert_fusionrs
from cotrain.converters.fusionrs_qa import convert_fusionrs_qa
from cotrain.converters.meter_ml import CLASSES as METER_ML_CLASSES
from cotrain.converters.meter_ml import convert_meter_ml
from cotrain.converters.rsvg import convert_rsvg
from cotrain.converters.rsvqa import convert_rsvqa
from cotrain.converters.scenes import (
    _class_folders as class_folders,  # the converter's own folder reading
)
from cotrain.converters.scenes import convert_scenes
from cotrain.converters.vrsbench import EVAL_FILES, convert_vrsbench
from cotrain.errors import ConfigError
from cotrain.eval.registry import METRICS, OPTION_KEYS, Benchmark, register_source
from cotrain.files import write_text_atomic

CACHE_VERSION = 1
"""Bump when a benchmark's conversion changes meaning, so every cached file is rebuilt."""
SCENE_SPLIT = {"split": "test", "ratios": (0.8, 0.1, 0.1), "seed": 0}
"""The seeded split of the scene sets that have no official one (see the module docstring)."""


@dataclass(frozen=True)
class PublicBenchmark:
    """A public benchmark: where its standard files are and how they become canonical records."""

    name: str
    """Registry key (lower case)."""
    task: str
    """Canonical record task."""
    metric: str
    """Metric family (one of ``cotrain.eval.registry.METRICS``)."""
    layout: str
    """The standard files expected under ``--data-root`` (shown in every missing-file error)."""
    source: str
    """Paper / where to get the data."""
    options: dict
    """Prompt and scoring options (keys of ``cotrain.eval.registry.OPTION_KEYS``)."""
    convert: Callable[[Path, Path], object]
    """``(data_root, out_jsonl)`` -> writes canonical records (returns the ConvertReport)."""
    files: tuple[str, ...] = ()
    """Paths (relative to the data root) that must exist; their content is the cache fingerprint."""
    image_dir: str = ""
    """Folder (relative to the data root) the records' image paths are relative to."""
    hint: str = ""
    """Extra advice appended to a missing-file error (e.g. how to export a parquet table)."""

    def __post_init__(self):
        assert self.metric in METRICS and set(self.options) <= set(OPTION_KEYS), self.name


# ----------------------------------------------------------------------------------------------
# class lists: the folder names of the releases, normalised as cotrain.converters.scenes writes them

AID_CLASSES = ["airport", "bare land", "baseball field", "beach", "bridge", "center", "church", "commercial",
               "dense residential", "desert", "farmland", "forest", "industrial", "meadow", "medium residential",
               "mountain", "park", "parking", "playground", "pond", "port", "railway station", "resort", "river",
               "school", "sparse residential", "square", "stadium", "storage tanks", "viaduct"]
UCM_CLASSES = ["agricultural", "airplane", "baseballdiamond", "beach", "buildings", "chaparral", "denseresidential",
               "forest", "freeway", "golfcourse", "harbor", "intersection", "mediumresidential", "mobilehomepark",
               "overpass", "parkinglot", "river", "runway", "sparseresidential", "storagetanks", "tenniscourt"]
NWPU_CLASSES = ["airplane", "airport", "baseball diamond", "basketball court", "beach", "bridge", "chaparral",
                "church", "circular farmland", "cloud", "commercial area", "dense residential", "desert", "forest",
                "freeway", "golf course", "ground track field", "harbor", "industrial area", "intersection", "island",
                "lake", "meadow", "medium residential", "mobile home park", "mountain", "overpass", "palace",
                "parking lot", "railway", "railway station", "rectangular farmland", "river", "roundabout", "runway",
                "sea ice", "ship", "snowberg", "sparse residential", "stadium", "storage tank", "tennis court",
                "terrace", "thermal power station", "wetland"]
WHU_RS19_CLASSES = ["airport", "beach", "bridge", "commercial", "desert", "farmland", "football field", "forest",
                    "industrial", "meadow", "mountain", "park", "parking", "pond", "port", "railway station",
                    "residential", "river", "viaduct"]


# ----------------------------------------------------------------------------------------------
# conversions: (data_root, out) -> ConvertReport


def _scenes(folder: str, classes: list[str]):
    def convert(root: Path, out: Path) -> ConvertReport:
        # A folder set that differs from the release is a wrong --data-root or a renamed folder; the
        # class list in the prompt would then disagree with the labels.
        names = set(class_folders(root / folder))
        if names != set(classes):
            missing, extra = sorted(set(classes) - names), sorted(names - set(classes))
            raise ConfigError(f"{root / folder}: class folders differ from the release ({len(classes)} classes): "
                              f"missing {missing[:8]}, unexpected {extra[:8]}. Point --data-root at the folder that "
                              f"holds {folder}/ with the original class folders")
        return convert_scenes(root / folder, out, image_root=root, **SCENE_SPLIT)
    return convert


def _meter_ml(root: Path, out: Path) -> ConvertReport:
    return convert_meter_ml(root / "METER-ML" / "test.csv", out, image_root=root)


def _rsvqa(folder: str, prefix: str, images: str, split: str):
    def convert(root: Path, out: Path) -> ConvertReport:
        return convert_rsvqa(root / folder, root / folder / images, out, split=split, prefix=prefix, image_root=root)
    return convert


def _vrsbench(kind: str):
    def convert(root: Path, out: Path) -> ConvertReport:
        return convert_vrsbench(root / "VRSBench" / EVAL_FILES[kind], root / "VRSBench" / "Images_val", out,
                                kind=kind, image_root=root)
    return convert


def _rsvg(folder: str):
    def convert(root: Path, out: Path) -> ConvertReport:
        return convert_rsvg(root / folder / "Annotations", root / folder / "JPEGImages", out, image_root=root,
                            split=root / folder / "test.txt")
    return convert


def _fusion_ir_caption(root: Path, out: Path) -> ConvertReport:
    return convert_fusionrs(root / "FusionRS" / "test", out, kinds=("ir",))


def _fusion_triplets(root: Path, out: Path) -> ConvertReport:
    return convert_fusionrs(root / "FusionRS" / "test", out, kinds=("triplet",))


def _fusion_qa(qa_type: str):
    def convert(root: Path, out: Path) -> ConvertReport:
        return convert_fusionrs_qa(root / "FusionRS" / "test" / "qa.json", out, qa_type=qa_type)
    return convert


def _bigearthnet(kind: str):
    def convert(root: Path, out: Path) -> ConvertReport:
        base = root / "BigEarthNet.txt"
        return convert_bigearthnet_txt(base / "BigEarthNet.txt.jsonl", base / "images", out, kind=kind,
                                       split="benchmark", image_root=root)
    return convert


# ----------------------------------------------------------------------------------------------
# the table

_SCENE_NOTE = "test part of the seeded per-class split 0.8/0.1/0.1, seed 0 (no official split)"
_FUSION_QA_LAYOUT = ("FusionRS/test/qa.json (JSON list of {{id, rgb: 'rgb/<name>', ir: 'ir/<name>', question, answer, "
                     "type: {t}}}) + FusionRS/test/rgb/, FusionRS/test/ir/ [assumed layout]")
_BEN_LAYOUT = ("BigEarthNet.txt/BigEarthNet.txt.jsonl (rows of BigEarthNet.txt.parquet as JSON lines: ID, patch_id, "
               "input, output, split; split 'benchmark' used) + BigEarthNet.txt/images/<patch_id>.png (RGB renderings "
               "of the Sentinel-2 patches) [assumed export]")
_BEN_BOXES = "; referring outputs are [x1, y1, x2, y2] in image pixels [assumed unit]"
_BEN_HINT = ("Export the parquet with: python -c \"import pandas; pandas.read_parquet('BigEarthNet.txt.parquet')"
             ".to_json('BigEarthNet.txt.jsonl', orient='records', lines=True)\"")

_ENTRIES = [
    PublicBenchmark("aid", "classification", "classification",
                    f"AID/<class folder>/*.jpg, 30 folders (e.g. AID/Airport/airport_1.jpg); {_SCENE_NOTE}",
                    "Xia et al., AID, TGRS 2017", {"classes": AID_CLASSES}, _scenes("AID", AID_CLASSES), ("AID",)),
    PublicBenchmark("ucm", "classification", "classification",
                    f"UCMerced_LandUse/Images/<class folder>/*.tif, 21 folders (e.g. "
                    f"UCMerced_LandUse/Images/agricultural/agricultural00.tif); {_SCENE_NOTE}",
                    "Yang & Newsam, UC Merced Land Use, ACM GIS 2010", {"classes": UCM_CLASSES},
                    _scenes("UCMerced_LandUse/Images", UCM_CLASSES), ("UCMerced_LandUse/Images",)),
    PublicBenchmark("nwpu_resisc45", "classification", "classification",
                    f"NWPU-RESISC45/<class folder>/*.jpg, 45 folders (e.g. NWPU-RESISC45/airplane/airplane_001.jpg); "
                    f"{_SCENE_NOTE}", "Cheng et al., NWPU-RESISC45, Proc. IEEE 2017", {"classes": NWPU_CLASSES},
                    _scenes("NWPU-RESISC45", NWPU_CLASSES), ("NWPU-RESISC45",)),
    PublicBenchmark("whu_rs19", "classification", "classification",
                    f"WHU-RS19/<class folder>/*.jpg, 19 folders (e.g. WHU-RS19/Airport/airport_01.jpg); {_SCENE_NOTE}",
                    "Dai & Yang / Xia et al., WHU-RS19, 2010", {"classes": WHU_RS19_CLASSES},
                    _scenes("WHU-RS19", WHU_RS19_CLASSES), ("WHU-RS19",)),
    PublicBenchmark("meter_ml", "classification", "classification",
                    "METER-ML/test.csv (columns image,label; image relative to METER-ML/, e.g. "
                    "test_images/<id>/naip.png; label CAFOs|Coal Mines|Landfills|Proc Plants|R&Ts|WWTPs|Negative) "
                    "[assumed layout]",
                    "Zhu et al., METER-ML, CDCEO 2022 (stanfordmlgroup.github.io/projects/meter-ml)",
                    {"classes": METER_ML_CLASSES}, _meter_ml, ("METER-ML/test.csv",)),
    PublicBenchmark("rsvqa_lr_test", "vqa", "vqa",
                    "RSVQA_LR/LR_split_test_{images,questions,answers}.json + RSVQA_LR/Images_LR/<id>.tif",
                    "Lobry et al., RSVQA, TGRS 2020 (zenodo.org/record/6344334)", {"max_new_tokens": 16},
                    _rsvqa("RSVQA_LR", "LR", "Images_LR", "test"),
                    tuple(f"RSVQA_LR/LR_split_test_{k}.json" for k in ("images", "questions", "answers"))
                    + ("RSVQA_LR/Images_LR",)),
    PublicBenchmark("rsvqa_hr_test", "vqa", "vqa",
                    "RSVQA_HR/USGS_split_test_{images,questions,answers}.json + RSVQA_HR/Data/<id>.tif",
                    "Lobry et al., RSVQA, TGRS 2020 (zenodo.org/record/6344367)", {"max_new_tokens": 16},
                    _rsvqa("RSVQA_HR", "USGS", "Data", "test"),
                    tuple(f"RSVQA_HR/USGS_split_test_{k}.json" for k in ("images", "questions", "answers"))
                    + ("RSVQA_HR/Data",)),
    PublicBenchmark("rsvqa_hr_test_phili", "vqa", "vqa",
                    "RSVQA_HR/USGS_split_test_phili_{images,questions,answers}.json + RSVQA_HR/Data/<id>.tif",
                    "Lobry et al., RSVQA, TGRS 2020 (second HR test set, Philadelphia)", {"max_new_tokens": 16},
                    _rsvqa("RSVQA_HR", "USGS", "Data", "test_phili"),
                    tuple(f"RSVQA_HR/USGS_split_test_phili_{k}.json" for k in ("images", "questions", "answers"))
                    + ("RSVQA_HR/Data",)),
    PublicBenchmark("vrsbench_vqa", "vqa", "vqa",
                    "VRSBench/VRSBench_EVAL_vqa.json + VRSBench/Images_val/<image_id>.png",
                    "Li et al., VRSBench, NeurIPS 2024 D&B (huggingface.co/datasets/xiang709/VRSBench)",
                    {"max_new_tokens": 32}, _vrsbench("vqa"), ("VRSBench/VRSBench_EVAL_vqa.json", "VRSBench/Images_val")),
    PublicBenchmark("vrsbench_cap", "captioning", "captioning",
                    "VRSBench/VRSBench_EVAL_Cap.json + VRSBench/Images_val/<image_id>.png",
                    "Li et al., VRSBench, NeurIPS 2024 D&B", {"max_new_tokens": 256}, _vrsbench("caption"),
                    ("VRSBench/VRSBench_EVAL_Cap.json", "VRSBench/Images_val")),
    PublicBenchmark("vrsbench_referring", "grounding", "grounding",
                    "VRSBench/VRSBench_EVAL_referring.json (boxes '{<x1><y1><x2><y2>}' in per cent of the image) + "
                    "VRSBench/Images_val/<image_id>.png", "Li et al., VRSBench, NeurIPS 2024 D&B",
                    {"box_format": "hbb", "iou_thresholds": [0.5, 0.7]}, _vrsbench("referring"),
                    ("VRSBench/VRSBench_EVAL_referring.json", "VRSBench/Images_val")),
    PublicBenchmark("dior_rsvg_test", "grounding", "grounding",
                    "DIOR-RSVG/Annotations/*.xml + DIOR-RSVG/JPEGImages/*.jpg + DIOR-RSVG/test.txt (object indices)",
                    "Zhan et al., RSVG / DIOR-RSVG, TGRS 2023", {"box_format": "hbb", "iou_thresholds": [0.5]},
                    _rsvg("DIOR-RSVG"), ("DIOR-RSVG/Annotations", "DIOR-RSVG/JPEGImages", "DIOR-RSVG/test.txt")),
    PublicBenchmark("rsvg_test", "grounding", "grounding",
                    "RSVG/Annotations/*.xml (VOC with <description>) + RSVG/JPEGImages/ + RSVG/test.txt (object "
                    "indices) [assumed: the DIOR-RSVG layout]",
                    "Sun et al., Visual Grounding in Remote Sensing Images (GeoVG), ACM MM 2022",
                    {"box_format": "hbb", "iou_thresholds": [0.5]}, _rsvg("RSVG"),
                    ("RSVG/Annotations", "RSVG/JPEGImages", "RSVG/test.txt")),
    PublicBenchmark("fusionrs_ir_caption", "captioning", "captioning",
                    "FusionRS/test/rgb/<name>, FusionRS/test/ir/<name>, FusionRS/test/captions.json (name -> captions "
                    "or {ir_captions: [...]}) [assumed layout]", "FusionRS (RGB-infrared captioning / QA)",
                    {"max_new_tokens": 128}, _fusion_ir_caption,
                    ("FusionRS/test/captions.json", "FusionRS/test/rgb", "FusionRS/test/ir"), image_dir="FusionRS/test"),
    PublicBenchmark("fusionrs_retrieval", "triplet", "triplet_retrieval",
                    "FusionRS/test/rgb/<name>, FusionRS/test/ir/<name>, FusionRS/test/captions.json (name -> captions "
                    "or {captions: [...], ir_captions: [...]}) [assumed layout]",
                    "FusionRS (RGB-infrared-text retrieval, CLIP checkpoints)", {}, _fusion_triplets,
                    ("FusionRS/test/captions.json", "FusionRS/test/rgb", "FusionRS/test/ir"), image_dir="FusionRS/test"),
    *[PublicBenchmark(f"fusionrs_{t}_qa", "vqa", "vqa", _FUSION_QA_LAYOUT.format(t=t), "FusionRS (RGB-infrared QA)",
                      {"max_new_tokens": 32}, _fusion_qa(t), ("FusionRS/test/qa.json",), image_dir="FusionRS/test")
      for t in ("scene", "object", "ir_cue")],
    PublicBenchmark("bigearthnet_txt_binary", "vqa", "vqa", _BEN_LAYOUT,
                    "Herzog et al., BigEarthNet.txt, 2026 (huggingface.co/datasets/BIFOLD-BigEarthNetv2-0/BigEarthNet.txt)",
                    {"max_new_tokens": 8}, _bigearthnet("binary"),
                    ("BigEarthNet.txt/BigEarthNet.txt.jsonl", "BigEarthNet.txt/images"), hint=_BEN_HINT),
    PublicBenchmark("bigearthnet_txt_mcq", "mcq", "mcq", _BEN_LAYOUT, "Herzog et al., BigEarthNet.txt, 2026",
                    {"max_new_tokens": 8}, _bigearthnet("mcq"),
                    ("BigEarthNet.txt/BigEarthNet.txt.jsonl", "BigEarthNet.txt/images"), hint=_BEN_HINT),
    PublicBenchmark("bigearthnet_txt_caption", "captioning", "captioning", _BEN_LAYOUT,
                    "Herzog et al., BigEarthNet.txt, 2026", {"max_new_tokens": 256}, _bigearthnet("caption"),
                    ("BigEarthNet.txt/BigEarthNet.txt.jsonl", "BigEarthNet.txt/images"), hint=_BEN_HINT),
    PublicBenchmark("bigearthnet_txt_referring", "grounding", "grounding", _BEN_LAYOUT + _BEN_BOXES,
                    "Herzog et al., BigEarthNet.txt, 2026",
                    {"box_format": "hbb", "iou_thresholds": [0.25, 0.5, 0.75, 0.9], "max_new_tokens": 48},
                    _bigearthnet("referring"), ("BigEarthNet.txt/BigEarthNet.txt.jsonl", "BigEarthNet.txt/images"),
                    hint=_BEN_HINT),
    PublicBenchmark("bigearthnet_txt_point", "grounding", "grounding", _BEN_LAYOUT + _BEN_BOXES,
                    "Herzog et al., BigEarthNet.txt, 2026 (the referring rows asked for a point, scored "
                    "point-in-box)", {"box_format": "point", "max_new_tokens": 24},
                    _bigearthnet("referring"), ("BigEarthNet.txt/BigEarthNet.txt.jsonl", "BigEarthNet.txt/images"),
                    hint=_BEN_HINT),
]

PUBLIC_BENCHMARKS: dict[str, PublicBenchmark] = {b.name: b for b in _ENTRIES}
assert len(PUBLIC_BENCHMARKS) == len(_ENTRIES), "public benchmark names must be unique"


# ----------------------------------------------------------------------------------------------
# preparation


def _missing_error(bench: PublicBenchmark, root: Path, rel: str) -> ConfigError:
    """ConfigError for a missing standard file, with the closest existing name of its folder."""
    path = root / rel
    parent = path.parent
    while not parent.is_dir() and parent != root and root in parent.parents:
        parent = parent.parent
    hint = ""
    if parent.is_dir():
        wanted = path.relative_to(parent).parts[0] if parent != path else path.name
        names = sorted(p.name for p in parent.iterdir())
        close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {(parent / close[0])}?"
    extra = f" {bench.hint}." if bench.hint else ""
    return ConfigError(f"benchmark {bench.name!r}: {path} not found{hint} Expected layout under --data-root "
                       f"{root}: {bench.layout}.{extra}")


def source_fingerprint(bench: PublicBenchmark, root: Path) -> dict:
    """Paths, sizes and mtimes (ns) of every source file, plus what defines the conversion."""
    files = []
    for rel in bench.files:
        path = root / rel
        walk = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in walk:
            st = p.stat()
            files.append([str(p), st.st_size, st.st_mtime_ns])
    return {"benchmark": bench.name, "cache_version": CACHE_VERSION, "root": str(root), "files": files}


def _cache_valid(out: Path, fp_path: Path, fingerprint: dict) -> bool:
    if not out.is_file() or not fp_path.is_file():
        return False
    try:
        stored = json.loads(fp_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    newest = max((f[2] for f in fingerprint["files"]), default=0)
    return stored == fingerprint and out.stat().st_mtime_ns >= newest


def prepare_public(name: str, data_root: str | Path, cache_dir: str | Path) -> Benchmark:
    """The Benchmark of public benchmark ``name``, converting its standard files under ``data_root`` once.

    The records are cached in ``<cache_dir>/<name>.jsonl`` with ``<name>.fingerprint.json`` beside
    them; a later call reuses them unless a source file was added, removed or changed (size or
    mtime), or the cache is older than a source. Missing files raise ConfigError naming the file,
    the closest existing name and the expected layout.
    """
    if name not in PUBLIC_BENCHMARKS:
        hint = difflib.get_close_matches(name, list(PUBLIC_BENCHMARKS), n=1)
        raise ConfigError(f"unknown public benchmark {name!r}{f'; did you mean {hint[0]!r}?' if hint else ''} "
                          f"(known: {', '.join(PUBLIC_BENCHMARKS)})")
    bench = PUBLIC_BENCHMARKS[name]
    root = Path(data_root).resolve()
    if not root.is_dir():
        raise ConfigError(f"benchmark {name!r}: --data-root {root} is not a directory. Expected layout under it: "
                          f"{bench.layout}")
    for rel in bench.files:
        if not (root / rel).exists():
            raise _missing_error(bench, root, rel)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out, fp_path = cache / f"{name}.jsonl", cache / f"{name}.fingerprint.json"
    fingerprint = source_fingerprint(bench, root)
    summary = "cached"
    if not _cache_valid(out, fp_path, fingerprint):
        fp_path.unlink(missing_ok=True)  # a crash below must leave no fingerprint vouching for old records
        try:
            report = bench.convert(root, out)
        except ConvertError as exc:
            raise ConfigError(f"benchmark {name!r}: {exc} (expected layout under --data-root {root}: "
                              f"{bench.layout})") from None
        if isinstance(report, ConvertReport):
            summary = report.summary()
            if report.written == 0:
                raise ConfigError(f"benchmark {name!r}: no records could be converted from {root}.\n{summary}\n"
                                  f"Expected layout: {bench.layout}")
        write_text_atomic(fp_path, json.dumps(fingerprint))
    image_root = root / bench.image_dir if bench.image_dir else root
    return Benchmark(name=name, records=str(out), image_root=str(image_root), task=bench.task, metric=bench.metric,
                     options=dict(bench.options), description=f"{bench.layout}\n{summary}", source=bench.source)


for _entry in _ENTRIES:
    register_source(_entry.name, _entry.layout, prepare_public)
