"""Benchmarks: records + task + metric + prompt options, found by name or read from a file.

A :class:`Benchmark` is what ```cotrain eval` --bench`` runs: a canonical records file (DESIGN
section 4) and its image root, the metric family that scores it, and the options that shape its
prompts exactly like training (box format, prompt style, class list, pixel limits). Three sources:

- ``demo`` names: the synthetic splits ``cotrain make-demo-data`` writes (``demo`` = all of them);
- public RS benchmarks by their standard files (``cotrain.eval.public``): converted once to
  canonical records under a cache directory, then run like any other;
- a YAML file: one benchmark mapping or ``{benchmarks: [...]}``, keys as :class:`Benchmark`'s fields.

This module must not run models or compute metrics.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from cotrain.config import bind_dataclass, suggest_key
from cotrain.errors import ConfigError

METRICS = ("classification", "vqa", "mcq", "grounding", "captioning", "detection", "retrieval", "mixed",
           "triplet_retrieval")
"""Metric families; ``vqa`` also reports yes/no accuracy and counting MAE by answer type; ``mixed``
(task ``mixed``) scores each record by its own task's metric and reports each task apart."""

TASK_METRIC = {"classification": "classification", "vqa": "vqa", "zoom_vqa": "vqa", "mcq": "mcq",
               "grounding": "grounding", "captioning": "captioning", "detection": "detection", "mixed": "mixed",
               "triplet": "triplet_retrieval"}
"""Default metric of each record task."""



@dataclass
class BenchmarkOptions:
    """Prompt and scoring options of a benchmark, typed; bound by ``cotrain.config.bind_dataclass``.

    A benchmark keeps only the options it was given (``Benchmark.options`` is that mapping, with
    checked values), so a default here never hides the scorer's own default.
    """

    box_format: str | None = None
    """Box format of prompts and answers: hbb, obb or quad (grounding and detection); point (grounding: scored as
    point-in-target accuracy)."""
    prompt_style: str | None = None
    """plain or json answers."""
    classes: list[str] | None = None
    """Class list shown in classification / detection prompts (default: the records' own)."""
    min_pixels: int | None = None
    """Override the checkpoint's lower pixel budget per image."""
    max_pixels: int | None = None
    """Override the checkpoint's upper pixel budget per image."""
    max_new_tokens: int | None = None
    """Generation length cap."""
    lenient: bool = False
    """Classification "contains" match (reported as lenient)."""
    iou_thresholds: list[float] | None = None
    """Grounding Acc@IoU thresholds (default 0.5, 0.7, 0.9)."""
    max_samples: int | None = None
    """Score at most this many records."""
    split: str | None = None
    """Split of a public benchmark's standard files."""
    captions_per_image: int | None = None
    """Retrieval: captions per image (several captions handled as one image's)."""
    composite: str | None = None
    """How ms / sar images are shown to the model: true_colour | false_colour | sar (``cotrain.sensors``)."""
    sensor_branch: Any = None
    """ms / sar images through the model's sensor branch: {bands: [...], stats: STATS.json} (``cotrain.sensor_pixels``)."""
    aggregate: str | None = None
    """IRGPT-style suite totals (``cotrain.eval.summary.psum_nsum``): accuracy (into psum) or mae (counting MAE into
    nsum); default by metric (accuracy for classification, vqa, mcq; Acc@0.5 for grounding)."""
    ir_texts: str | None = None
    """Tri-modal retrieval: the captions IR images are matched with: auto (ir_captions when every record has them),
    captions or ir_captions."""

    def __post_init__(self):
        if self.aggregate not in (None, "accuracy", "mae"):
            raise ConfigError(f"aggregate={self.aggregate!r}; use accuracy (psum) or mae (nsum)")
        if self.ir_texts not in (None, "auto", "captions", "ir_captions"):
            raise ConfigError(f"ir_texts={self.ir_texts!r}; use auto, captions or ir_captions")
        if self.box_format not in (None, "hbb", "obb", "quad", "point"):
            raise ConfigError(f"box_format={self.box_format!r}; use hbb, obb, quad or point (grounding: point-in-target)")
        if self.prompt_style not in (None, "plain", "json"):
            raise ConfigError(f"prompt_style={self.prompt_style!r}; use plain or json")
        for name in ("min_pixels", "max_pixels", "max_new_tokens", "max_samples", "captions_per_image"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value}; it must be >= 1")


OPTION_KEYS = tuple(f.name for f in dataclasses.fields(BenchmarkOptions))


def bind_options(raw: dict, where: str) -> dict:
    """Check benchmark options through the config machinery; the given keys with checked values."""
    bound = bind_dataclass(BenchmarkOptions, dict(raw), where)
    return {k: getattr(bound, k) for k in raw}


@dataclass
class Benchmark:
    """One evaluation set."""

    name: str
    """Unique name; also the results sub-directory."""
    records: str
    """Canonical records JSONL."""
    image_root: str
    """Directory the records' image paths are relative to."""
    task: str
    """Record task (every record must have it)."""
    metric: str = ""
    """Metric family (default from the task, see ``TASK_METRIC``)."""
    options: dict = field(default_factory=dict)
    """Prompt and scoring options: ``box_format`` (hbb|obb|quad), ``prompt_style`` (plain|json),
    ``classes``, ``min_pixels`` / ``max_pixels`` (override the checkpoint's), ``max_new_tokens``,
    ``lenient`` (classification "contains" match, labelled as such), ``iou_thresholds``, ``max_samples``."""
    description: str = ""
    source: str = ""
    """Where the data comes from (paper / standard files)."""

    def __post_init__(self):
        if not self.metric:
            if self.task not in TASK_METRIC:
                raise ConfigError(f"benchmark {self.name!r}: task {self.task!r} has no default metric; set 'metric' "
                                  f"to one of {METRICS}")
            self.metric = TASK_METRIC[self.task]
        if self.metric not in METRICS:
            raise ConfigError(f"benchmark {self.name!r}: metric {self.metric!r} is not one of {METRICS}")
        self.options = bind_options(self.options, f"benchmark {self.name!r} options")


DEMO_SPLITS = {
    # name: (records stem, task, options)
    "syn_cls": ("syn_cls", "classification", {}),
    "syn_vqa": ("syn_vqa", "vqa", {}),
    "syn_mcq": ("syn_mcq", "mcq", {}),
    "syn_grounding": ("syn_grounding", "grounding", {"box_format": "hbb"}),
    # the tiny demo tokenizer is byte-level (one token per character): long answers need room
    "syn_cap_rgb": ("syn_cap_rgb", "captioning", {"max_new_tokens": 256}),
    "syn_cap_ir": ("syn_cap_ir", "captioning", {"max_new_tokens": 256}),
    "syn_cap_dual": ("syn_cap_dual", "captioning", {"max_new_tokens": 384}),
    "syn_det": ("syn_det", "detection", {"box_format": "quad", "max_new_tokens": 1024}),
    "syn_zoom": ("syn_zoom", "zoom_vqa", {}),
    # image <-> caption retrieval by caption likelihood: images x captions forward passes, so a subset
    "syn_retrieval": ("syn_cap_rgb", "captioning", {"metric": "retrieval", "max_samples": 40}),
    # RGB / IR / text retrieval of a CLIP model (model.kind: clip); not part of ``demo`` (a VLM's suite)
    "syn_triplet_retrieval": ("syn_triplet", "triplet", {}),
}
"""The synthetic demo splits (``cotrain make-demo-data``), evaluated on their ``test`` split by default."""
CLIP_SPLITS = ("syn_triplet_retrieval",)
"""Demo splits for CLIP checkpoints, left out of ``--bench demo``."""


def demo_benchmark(name: str, data_root: str | Path, split: str = "test") -> Benchmark:
    """Benchmark for one synthetic split (``demo:syn_cls`` or ``syn_cls``)."""
    stem, task, options = DEMO_SPLITS[name]
    options = dict(options)
    metric = options.pop("metric", "")
    root = Path(data_root)
    return Benchmark(name=name, records=str(root / "records" / f"{stem}_{split}.jsonl"), image_root=str(root),
                     task=task, metric=metric, options=options, description=f"synthetic demo {task} ({split} split)",
                     source="`cotrain make-demo-data`")


def _from_mapping(d: dict, base: Path, where: str) -> Benchmark:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: a benchmark must be a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(Benchmark)}
    d = dict(d)
    options = dict(d.pop("options", {}) or {})
    for k in list(d):
        if k in OPTION_KEYS and k not in names:
            options[k] = d.pop(k)  # options may sit at the top level of the mapping
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}.{suggest_key(unknown[0], sorted(names | set(OPTION_KEYS)))}")
    missing = [k for k in ("name", "records", "task") if k not in d]
    if missing:
        raise ConfigError(f"{where}: benchmark is missing {missing}; a benchmark needs name, records, task "
                          "(and image_root)")
    for key in ("records", "image_root"):
        if key in d and not Path(str(d[key])).is_absolute():
            d[key] = str(base / str(d[key]))  # relative to the YAML file, so a suite file travels with its data
    d.setdefault("image_root", str(Path(d["records"]).parent))
    return Benchmark(**d, options=options)


def load_benchmark_file(path: str | Path) -> list[Benchmark]:
    """Benchmarks defined in a YAML file (one mapping, a list, or ``{benchmarks: [...]}``)."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read benchmark file {p}: {e}") from None
    if isinstance(data, dict) and "benchmarks" in data:
        data = data["benchmarks"]
    items = data if isinstance(data, list) else [data]
    out = [_from_mapping(d, p.parent, f"{p} (benchmark {i})") for i, d in enumerate(items)]
    dup = sorted({b.name for b in out if sum(c.name == b.name for c in out) > 1})
    if dup:
        raise ConfigError(f"{p}: benchmark names must be unique, {dup} repeat")
    return out


SOURCES: dict[str, tuple[str, Callable[[str, str | Path, str | Path], Benchmark]]] = {}
"""Benchmarks read from their own standard files: name -> (expected layout, prepare(name, root, cache_dir))."""


def register_source(name: str, layout: str, prepare: Callable[[str, str | Path, str | Path], Benchmark]) -> None:
    """Make ``name`` resolvable by ``resolve_benchmarks`` (``cotrain.eval.public`` registers its sets)."""
    if name in SOURCES or name in DEMO_SPLITS or name == "demo":
        raise ValueError(f"benchmark name {name!r} is registered twice")
    SOURCES[name] = (layout, prepare)


def resolve_benchmarks(spec: str, *, data_root: str | Path = "outputs/demo_data", split: str = "test",
                       public_root: str | Path | None = None, cache_dir: str | Path = "outputs/bench_cache") -> list[Benchmark]:
    """Benchmarks for a ``--bench`` value: comma-separated names and/or YAML files.

    ``demo`` expands to every synthetic split; ``syn_*`` names one; registered sources (the public
    sets of ``cotrain.eval.public`` register themselves) are prepared from ``public_root`` into ``cache_dir``.
    """
    out: list[Benchmark] = []
    for item in [s.strip() for s in spec.split(",") if s.strip()]:
        if item.endswith((".yaml", ".yml")) or Path(item).is_file():
            out.extend(load_benchmark_file(item))
        elif item == "demo":
            out.extend(demo_benchmark(n, data_root, split) for n in DEMO_SPLITS if n not in CLIP_SPLITS)
        elif item.removeprefix("demo:") in DEMO_SPLITS:
            out.append(demo_benchmark(item.removeprefix("demo:"), data_root, split))
        elif item in SOURCES:
            layout, prepare = SOURCES[item]
            if public_root is None:
                raise ConfigError(f"benchmark {item!r} is read from its standard files: pass --data-root DIR "
                                  f"(expected layout: {layout})")
            out.append(prepare(item, public_root, cache_dir))
        else:
            known = ["demo", *DEMO_SPLITS, *SOURCES]
            hint = difflib.get_close_matches(item, known, n=1)
            raise ConfigError(f"unknown benchmark {item!r}{f'; did you mean {hint[0]!r}?' if hint else ''}. Give a "
                              f"name ({', '.join(known)}) or a YAML file")
    if not out:
        raise ConfigError(f"--bench {spec!r} names no benchmark")
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmark names repeat in {spec!r}: {names}")
    return out
