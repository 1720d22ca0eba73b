"""The typed config tree of a run (data / model / train / eval) and how it is read.

A run config is a YAML file bound to nested dataclasses, plus ``key=value`` overrides from the
command line (``train.max_steps=20``, ``model.path=/ckpt/Qwen2.5-VL-7B-Instruct``). Everything is
checked here, before any model or image is loaded: unknown keys (with the closest valid key
suggested), wrong types, impossible values and missing files each raise ``ConfigError`` naming
the key and the fix. String values may use ``${data_root}`` and ``${output_dir}`` which are
replaced after overrides are applied, so one recipe serves any machine.

This module must not import torch or transformers: validation runs before anything heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cotrain.errors import ConfigError


@dataclass
class SyntheticConfig:
    """Parameters of the built-in synthetic data, generated under ``data.data_root`` if missing."""

    kind: str = "scenes"
    """Which set: "scenes" (land-cover scenes with every task, the demo) or "localize" (large objects
    on plain ground for grounding and detection: loc_grounding / loc_det; uses n_scenes as its image
    count and ignores n_large and large_size) or "ir_difficulty" (the scenes under data_root/demo and, under
    data_root, their training triplets with degraded IR images and corrupted captions at known knobs:
    syn_ir_difficulty, knobs.jsonl; cotrain.data.synthetic.ir_difficulty) or "multisensor" (n_scenes co-registered
    Sentinel-1 / Sentinel-2 patches: ms_cls, ms_vqa, ms_mcq, ms_cap, ms_pair; cotrain.data.synthetic.multisensor)."""
    seed: int = 0
    """Seed of the generator; same seed, same images and records."""
    n_scenes: int = 1200
    """Number of ordinary scenes (all tasks except zoom draw from them)."""
    n_large: int = 2
    """Number of large (>= 8000 px) images for zoom questions."""
    large_size: int = 8192
    """Side of the large images in pixels."""

    def __post_init__(self) -> None:
        if self.kind not in ("scenes", "localize", "ir_difficulty", "multisensor"):
            raise ConfigError(f"data.synthetic.kind={self.kind!r}; use scenes (the demo's land-cover scenes), "
                              "localize (large objects on plain ground: loc_grounding, loc_det) or ir_difficulty "
                              "(IR triplets at known difficulty knobs)")


@dataclass
class CurriculumConfig:
    """An easy-to-hard curriculum on one dataset (``cotrain.curriculum``; README "Curriculum")."""

    scores: str = ""
    """Score file (JSON lines keyed by record id) written by ``cotrain curriculum score``."""
    tiers: int = 5
    """Number of difficulty tiers M."""
    schedule: str = "ascending_stratified_random"
    """ascending_stratified_random | descending_stratified_random | ascending | descending | bidirectional | random."""
    merge: str = "mean_rank"
    """How the two lessons' rankings become one: mean_rank | max_rank | transfer | alignment."""
    loss_weights: bool = False
    """Multiply each sample's token loss by the score file's lesson-2 weight (eq. 6 of IRGPT)."""

    def __post_init__(self) -> None:
        from cotrain.curriculum.schedule import MERGES, SCHEDULES

        if not self.scores:
            raise ConfigError("curriculum.scores is required: the score file of `cotrain curriculum score`")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"curriculum.schedule={self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.merge not in MERGES:
            raise ConfigError(f"curriculum.merge={self.merge!r}; use one of {', '.join(MERGES)}")
        if self.tiers < 1:
            raise ConfigError(f"curriculum.tiers={self.tiers}; use >= 1")


@dataclass
class SensorBranchConfig:
    """This dataset's ms / sar images enter through the sensor branch (``cotrain.model.sensor_branch``)."""

    bands: list[str] = field(default_factory=list)
    """Bands that reach the model, each in its own input channel (e.g. [B02, B03, B04, B05, B06, B07, B08, B8A,
    B11, B12], or [VV, VH])."""
    stats: str = ""
    """Per-band statistics file (``cotrain sensors stats``); each band is z-scored by it."""

    def __post_init__(self) -> None:
        if not self.bands:
            raise ConfigError("sensor_branch.bands is empty; name the bands that enter the branch (e.g. [B02, B03, "
                              "B04, B08])")
        from cotrain.sensors import native_resolution

        for b in self.bands:
            native_resolution(b)  # unknown name: the error lists the S1 / S2 bands
        if not self.stats:
            raise ConfigError("sensor_branch.stats is required: the per-band statistics file of `cotrain sensors "
                              "stats`")


@dataclass
class DatasetConfig:
    """One dataset of the mixture: a canonical JSONL records file and where its images live."""

    name: str = ""
    """Unique name, used in logs and reports."""
    records: str = ""
    """Path of the canonical records JSONL file."""
    image_root: str = ""
    """Directory that record image paths are relative to."""
    weight: float = 1.0
    """Expected uses of each record per epoch (2.0 = twice, 0.3 = a fresh random 30%)."""
    task: str | None = None
    """Expected task of every record; a record of another task is an error. None = any."""
    max_samples: int | None = None
    """Use at most this many records (the first ones in file order)."""
    min_pixels: int | None = None
    """Per-dataset lower pixel budget of one image (default: data.min_pixels)."""
    max_pixels: int | None = None
    """Per-dataset upper pixel budget of one image (default: data.max_pixels)."""
    random_resize: float = 0.0
    """Probability of drawing a random target area in [min_pixels, max_pixels] (augmentation)."""
    box_format: str = "quad"
    """How boxes are written in answers: hbb | obb | quad, or point (grounding only: a point inside the target, the
    record's ``point`` else the target's centre)."""
    prompt_style: str = "plain"
    """Answer style for boxes: plain lines or a fenced JSON list."""
    classes: list[str] | None = None
    """Class list for prompts (default: the records' own lists, else the sorted labels seen)."""
    composite: str | None = None
    """How this dataset's ms / sar images reach the vision tower: true_colour | false_colour | sar (3 channels,
    fixed stretches, cotrain.sensors.COMPOSITES), applied to the images of its modality (true_colour / false_colour:
    ms; sar: sar); the others, and None, use the record's own ``composite``, else the default of their modality."""
    sensor_branch: SensorBranchConfig | None = None
    """Feed this dataset's ms / sar images through the sensor branch: the composite in R, G, B plus each named
    band in its own channel (None = the composite alone)."""
    curriculum: CurriculumConfig | None = None
    """Order this dataset's samples easy to hard within each epoch (None = the mixture's random order)."""

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"dataset {self.name!r}: max_samples={self.max_samples} must be >= 1 (or left out)")
        for key in ("min_pixels", "max_pixels"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ConfigError(f"dataset {self.name!r}: {key}={v} must be > 0 (or left out for the default)")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ConfigError(f"dataset {self.name!r}: min_pixels={self.min_pixels} > max_pixels={self.max_pixels}")
        if self.box_format not in ("hbb", "obb", "quad", "point"):
            raise ConfigError(f"dataset {self.name!r}: box_format={self.box_format!r}; use hbb, obb, quad or point "
                              "(point: grounding datasets only)")
        if self.box_format == "point" and self.task not in (None, "grounding"):
            raise ConfigError(f"dataset {self.name!r}: box_format=point answers a referring expression with one point; "
                              f"it does not apply to task {self.task!r}. Use hbb, obb or quad")
        if self.prompt_style not in ("plain", "json"):
            raise ConfigError(f"dataset {self.name!r}: prompt_style={self.prompt_style!r}; use plain or json")
        if self.composite is not None and self.composite not in ("true_colour", "false_colour", "sar"):
            raise ConfigError(f"dataset {self.name!r}: composite={self.composite!r}; use true_colour, false_colour or "
                              "sar")
        if not 0.0 <= self.random_resize <= 1.0:
            raise ConfigError(f"dataset {self.name!r}: random_resize={self.random_resize} is a probability; "
                              "use a value in [0, 1]")


@dataclass
class DataConfig:
    """What the model is trained and evaluated on."""

    data_root: str = "outputs/demo_data"
    """Root directory substituted for ``${data_root}`` in paths."""
    synthetic: SyntheticConfig | None = None
    """If set, synthetic data is generated under data_root when missing."""
    datasets: list[DatasetConfig] = field(default_factory=list)
    """Training datasets."""
    eval_datasets: list[DatasetConfig] = field(default_factory=list)
    """Held-out datasets evaluated at the end of training."""
    min_pixels: int = 4 * 28 * 28
    """Default lower pixel budget of one image."""
    max_pixels: int = 256 * 28 * 28
    """Default upper pixel budget of one image."""
    max_length: int = 2048
    """Longest token sequence of one sample; longer samples are skipped (counted)."""
    too_long: str = "skip"
    """A sample over max_length: skip (counted, reason too_long) or downscale its images until it fits."""
    seed: int = 0
    """Seed of every data-side random choice (order, templates, resize)."""
    on_bad_record: str = "skip"
    """What a bad image/sample does at train time: skip (counted, logged) or raise."""
    num_workers: int = 0
    """DataLoader worker processes."""
    shared_filesystem: bool = True
    """Multi-node: true when every node sees the same data files (NFS, Lustre): global rank 0 builds each large
    records file's index. false (node-local copies of the data at the same path): each node's local rank 0 builds
    its own. train.output_dir must be shared either way (checkpoints are written by global rank 0)."""
    packing: bool = False
    """Pack several samples into each sequence of at most max_length tokens (attention never crosses samples); train.batch_size then counts packs."""

    def __post_init__(self) -> None:
        if self.on_bad_record not in ("skip", "raise"):
            raise ConfigError(f"data.on_bad_record={self.on_bad_record!r}; use skip or raise")
        ordered = [d.name for d in self.datasets if d.curriculum is not None and d.curriculum.schedule != "random"]
        if self.packing and ordered:
            raise ConfigError(f"data.packing=true reorders samples into packs, which would undo the curriculum order of "
                              f"{ordered}; set data.packing=false, or curriculum.schedule=random (loss weights only)")
        if self.too_long not in ("skip", "downscale"):
            raise ConfigError(f"data.too_long={self.too_long!r}; use skip (drop over-long samples, counted) "
                              "or downscale (shrink their images until they fit max_length)")
        if self.min_pixels <= 0 or self.max_pixels < self.min_pixels:
            raise ConfigError(f"data.min_pixels={self.min_pixels}, data.max_pixels={self.max_pixels}: "
                              "need 0 < min_pixels <= max_pixels")


@dataclass
class TinyModelConfig:
    """A random-init tiny model built from a config (tests, demo)."""

    family: str = "qwen2_5_vl"
    """Model family: qwen2_vl | qwen2_5_vl | qwen3_vl."""
    hidden_size: int = 128
    """Text hidden size (also the vision output size)."""
    num_layers: int = 2
    """Text decoder layers."""
    vision_depth: int = 2
    """Vision transformer blocks."""
    vision_width: int = 32
    """Vision transformer width (a multiple of 4; 2 attention heads)."""
    fourier_positions: bool = False
    """qwen3_vl only: start the vision tower's learned position table from a 2-D Fourier basis instead of
    noise, so patches know their place from step 0 (as in a trained checkpoint)."""
    number_tokens: int = 0
    """N > 10: the tiny tokenizer holds the whole numbers 10 .. N-1 as single tokens, so a box coordinate
    is one token (0 = one token per digit, as Qwen's real tokenizers do). Tiny models only."""
    seed: int = 0
    """Seed of the random init."""

    def __post_init__(self) -> None:
        if self.number_tokens < 0 or 0 < self.number_tokens <= 10:
            raise ConfigError(f"model.tiny.number_tokens={self.number_tokens}: use 0 (one token per digit) or "
                              "N > 10 (the whole numbers 10 .. N-1 as single tokens)")
        if self.fourier_positions and self.family != "qwen3_vl":
            raise ConfigError(f"model.tiny.fourier_positions needs family qwen3_vl (the family whose vision tower "
                              f"has a learned position table); got {self.family!r}")
        if self.vision_width % 4 or self.vision_width < 8:
            raise ConfigError(f"model.tiny.vision_width={self.vision_width} must be a multiple of 4 and >= 8")


@dataclass
class LoraConfig:
    """LoRA adapters on the language model and optionally the vision tower (peft)."""

    enabled: bool = False
    """Train LoRA adapters instead of the full weights of the adapted parts."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    language: bool = True
    """Adapt the language model's attention and MLP projections."""
    vision: bool = False
    """Also adapt the vision tower's attention and MLP projections."""
    merge_on_save: bool = True
    """The final model is saved with adapters merged into the base weights (adapters also saved apart)."""

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.lora: need r >= 1, alpha > 0, 0 <= dropout < 1 (got r={self.r}, "
                              f"alpha={self.alpha}, dropout={self.dropout})")
        if self.enabled and not (self.language or self.vision):
            raise ConfigError("model.lora.enabled with lora.language=false and lora.vision=false adapts nothing; "
                              "enable one of them")


SUPERVISIONS = ("original", "ir_aware", "mixed")


@dataclass
class ClipConfig:
    """A CLIP-style RGB / IR / text model (``model.kind: clip``, ``cotrain.contrastive``)."""

    supervision: str = "original"
    """Which captions the IR images are paired with: original (the scene captions, as RGB), ir_aware (the records'
    ir_captions) or mixed (the IR-text term is the mean of IR-original and IR-IR-aware). RGB-text always uses the
    original captions, RGB-IR the twins."""
    max_text_tokens: int = 77
    """Text length in tokens (longer captions are cut, counted in the log); the tiny model's position table size."""
    logit_scale_init: float = 2.6592
    """Initial log of the logit scale (ln(1/0.07), CLIP's); a checkpoint's own value wins."""
    logit_scale_max: float = 100.0
    """The logit scale is clamped at this value (CLIP's 100)."""
    image_size: int = 64
    """Tiny model: input side in pixels (a checkpoint brings its own)."""
    patch_size: int = 8
    """Tiny model: ViT patch side."""
    hidden_size: int = 64
    """Tiny model: width of both towers (4 heads)."""
    num_layers: int = 2
    """Tiny model: transformer blocks per tower."""
    projection_dim: int = 64
    """Tiny model: size of the shared embedding."""

    def __post_init__(self) -> None:
        if self.supervision not in SUPERVISIONS:
            raise ConfigError(f"model.clip.supervision={self.supervision!r}; use one of {', '.join(SUPERVISIONS)}")
        if self.max_text_tokens < 2:
            raise ConfigError(f"model.clip.max_text_tokens={self.max_text_tokens} must be >= 2 (text + end token)")
        if not 1.0 < self.logit_scale_max:
            raise ConfigError(f"model.clip.logit_scale_max={self.logit_scale_max} must be > 1")
        if self.image_size % self.patch_size or self.hidden_size % 4:
            raise ConfigError(f"model.clip: image_size {self.image_size} must be a multiple of patch_size "
                              f"{self.patch_size}, hidden_size {self.hidden_size} a multiple of 4")


@dataclass
class ModelConfig:
    """Which model to train and how to run it."""

    kind: str = "vlm"
    """vlm: a Qwen-VL model trained on conversations; clip: a CLIP-style RGB / IR / text model trained
    contrastively on triplet records (``model.clip``, README "RGB-IR contrastive training")."""
    path: str | None = None
    """Local HF checkpoint directory (a CLIP checkpoint with kind clip). None = build the tiny random model."""
    arch: str | None = None
    """With path None: build a random-init model of a released architecture (cotrain.model.archs: qwen2_5_vl_3b,
    qwen2_5_vl_7b, qwen2_vl_2b, qwen2_vl_7b, qwen3_vl_2b, qwen3_vl_4b, qwen3_vl_8b) instead of the tiny one."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Used only when path and arch are None."""
    attn_implementation: str = "sdpa"
    """flash_attention_2 | torch_varlen | sdpa | eager | auto (flash_attention_2 if flash-attn imports on CUDA, else
    torch_varlen on CUDA, else sdpa)."""
    dtype: str = "float32"
    """float32 | bfloat16 | auto."""
    liger: bool = False
    """Apply Liger kernels (fused RMSNorm, SwiGLU, RoPE, linear cross-entropy) to the model family; needs liger-kernel and a CUDA GPU."""
    train_vision: bool = True
    """Train the vision tower (ViT blocks); false freezes it."""
    train_merger: bool = True
    """Train the vision-language merger (patch merger MLP); false freezes it."""
    train_language: bool = True
    """Train the language model (decoder, embeddings, lm_head); false freezes it."""
    train_sensor_branch: bool = True
    """Train the widened patch embedding of a sensor branch (every channel), even with train_vision false or LoRA."""
    sensor_init: str = "zeros"
    """Kernels of the channels a sensor branch adds: zeros (the model starts as the RGB model) | rgb_mean."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters via peft (off unless lora.enabled)."""
    clip: ClipConfig = field(default_factory=ClipConfig)
    """Used only with kind clip."""

    def __post_init__(self) -> None:
        if self.sensor_init not in ("zeros", "rgb_mean"):
            raise ConfigError(f"model.sensor_init={self.sensor_init!r}; use zeros or rgb_mean")
        if self.kind not in ("vlm", "clip"):
            raise ConfigError(f"model.kind={self.kind!r}; use vlm (Qwen-VL) or clip (contrastive RGB / IR / text)")
        if self.kind == "clip" and (self.arch or self.lora.enabled or self.liger):
            raise ConfigError("model.kind=clip trains a whole CLIP model: model.arch, model.lora and model.liger are "
                              "Qwen-VL settings; drop them")
        if self.arch is not None:
            from cotrain.model.archs import get_arch

            get_arch(self.arch)  # unknown name: ConfigError with the closest names
            if self.path:
                raise ConfigError(f"model.arch={self.arch!r} and model.path={self.path!r} are both set; arch builds a "
                                  "random-init model, path loads a checkpoint. Set one of them to null")
        if self.attn_implementation not in ("flash_attention_2", "torch_varlen", "sdpa", "eager", "auto"):
            raise ConfigError(f"model.attn_implementation={self.attn_implementation!r}; "
                              "use flash_attention_2, torch_varlen, sdpa, eager or auto")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ConfigError(f"model.dtype={self.dtype!r}; use float32, bfloat16 or auto")
        if not (self.train_vision or self.train_merger or self.train_language or self.lora.enabled):
            raise ConfigError("model.train_vision, train_merger and train_language are all false: nothing would "
                              "train. Enable one of them or model.lora.enabled")
        if self.lora.enabled:
            for part in ("language", "vision"):
                if getattr(self.lora, part) and not getattr(self, f"train_{part}"):
                    raise ConfigError(f"model.lora.{part}=true adapts the {part} part but model.train_{part}=false "
                                      f"freezes it; set one of them differently")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping."""

    output_dir: str = "outputs/demo"
    """Where checkpoints, metrics and the report go."""
    epochs: float = 1.0
    """Passes over the mixture (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1 = use epochs)."""
    batch_size: int = 8
    """Samples per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.03
    """Share of steps with linear warm-up."""
    lr_scheduler: str = "cosine"
    """HF scheduler name."""
    logging_steps: int = 10
    """Log every N optimizer steps."""
    save_steps: int = 0
    """Checkpoint every N steps (0 = only the final model)."""
    seed: int = 0
    """Seed of model-side randomness (dropout, init of new heads)."""
    gradient_checkpointing: bool = False
    """Trade compute for activation memory."""
    bf16: bool = False
    """Mixed precision in bfloat16 (GPU)."""
    vision_lr: float | None = None
    """Learning rate of the vision tower (None = learning_rate)."""
    merger_lr: float | None = None
    """Learning rate of the merger (None = learning_rate)."""
    language_lr: float | None = None
    """Learning rate of the language model (None = learning_rate)."""
    loss_reduction: str = "token"
    """token: mean over all supervised tokens of an optimizer step; sample: mean of per-sample token means."""
    deepspeed: str | None = None
    """DeepSpeed ZeRO: zero1 | zero2 | zero3 | zero3_offload (shipped configs) or a path to a JSON config."""
    resume_from: str | None = None
    """Resume from a checkpoint: a checkpoint directory, or auto = the newest complete one in output_dir/checkpoints."""
    save_total_limit: int | None = 3
    """Keep at most this many checkpoints (oldest deleted; None = keep all)."""
    report_to: str = "none"
    """none | tensorboard (the HF Trainer's logs under output_dir/checkpoints/runs/<time>; needs the tensorboard
    package)."""

    def __post_init__(self) -> None:
        if self.report_to not in ("none", "tensorboard"):
            raise ConfigError(f"train.report_to={self.report_to!r}; use none or tensorboard")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate={self.learning_rate} must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("set train.max_steps > 0 or train.epochs > 0")
        if self.loss_reduction not in ("token", "sample"):
            raise ConfigError(f"train.loss_reduction={self.loss_reduction!r}; use token or sample")
        for key in ("vision_lr", "merger_lr", "language_lr"):
            v = getattr(self, key)
            if v is not None and v < 0:
                raise ConfigError(f"train.{key}={v} must be >= 0 (0 keeps the module fixed; use "
                                  f"model.train_{key.split('_')[0]}=false to freeze it without optimizer state)")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(f"train.save_total_limit={self.save_total_limit}; use >= 1 or null (keep all)")


@dataclass
class EvalConfig:
    """Held-out evaluation during and at the end of training (the harness of ``cotrain eval``)."""

    enabled: bool = True
    """Run evaluation after training."""
    max_samples: int = 200
    """At most this many records per eval dataset."""
    batch_size: int = 16
    """Prompts per generate call."""
    max_new_tokens: int = 64
    """Generation limit per answer."""
    n_visualise: int = 6
    """Number of images with predictions drawn on them written to the report."""
    every_steps: int = 0
    """Also evaluate every N optimizer steps during training (0 = only at the end); the headline numbers
    are logged next to the loss as ``eval/<dataset>/<metric>``."""
    every_steps_max_samples: int = 50
    """Records per eval dataset for the periodic evaluations (the final one uses ``max_samples``)."""

    def __post_init__(self) -> None:
        for key, low in (("max_samples", 1), ("batch_size", 1), ("max_new_tokens", 1), ("every_steps", 0),
                         ("every_steps_max_samples", 1), ("n_visualise", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"eval.{key}={getattr(self, key)} must be >= {low}")


@dataclass
class RunConfig:
    """A whole run: data, model, training, evaluation."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_name: str = "run"
    """Name of the run; outputs go to train.output_dir."""


# ----------------------------------------------------------------------------- binding


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return _bind(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{hint} Valid keys: {', '.join(valid)}."


def bind_dataclass(cls: type, raw: dict, prefix: str = "") -> Any:
    """``cls(**raw)`` with every value checked against its annotation and unknown keys refused with the
    closest valid key: the one path recipes and benchmark options share (``prefix`` names the section)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of {_type_name(cls)} fields, got {raw!r}")
    return _bind(cls, raw, prefix)


def suggest_key(name: str, valid: list[str]) -> str:
    """`` Did you mean 'x'? Valid keys: ...`` for an unknown key (empty hint when nothing is close)."""
    return _suggest(name, valid)


def _bind(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}.{_suggest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """Apply one override to the raw mapping, checking each key against the schema."""
    parts = dotted.split(".")
    cls: Any = RunConfig
    node = raw
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ConfigError(f"override {dotted!r}: {'.'.join(parts[:depth])!r} is not a section; "
                              "overrides can set fields of sections only (lists are edited in the YAML)")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise ConfigError(f"override {dotted!r}: unknown key {where!r}.{_suggest(part, names)}")
        hint = typing.get_type_hints(cls)[part]
        if depth == len(parts) - 1:
            node[part] = value
            return
        if typing.get_origin(hint) is list:
            raise ConfigError(f"override {dotted!r}: {where!r} is a list; edit list entries in the YAML file")
        inner = [a for a in (typing.get_args(hint) or (hint,)) if a is not type(None)]
        cls = inner[0]
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as a YAML scalar (``10`` -> int, ``true`` -> bool)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. train.max_steps=20)")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


_VAR = re.compile(r"\$\{(data_root|output_dir)\}")


def _substitute(obj: Any, variables: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return _VAR.sub(lambda m: variables[m.group(1)], obj)
    if isinstance(obj, list):
        return [_substitute(v, variables) for v in obj]
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            setattr(obj, f.name, _substitute(getattr(obj, f.name), variables))
        return obj
    return obj


_CONCAT_LISTS = {("data", "datasets"), ("data", "eval_datasets")}
"""Lists that ``include`` concatenates (included entries first); every other value is replaced."""


def _merge(base: dict, top: dict, path: tuple = ()) -> dict:
    out = dict(base)
    for key, value in top.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, here)
        elif here in _CONCAT_LISTS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


def read_recipe(path: str | Path, _stack: tuple = ()) -> dict:
    """The raw mapping of a recipe YAML with its ``include:`` files merged in (paths relative to it).

    Included files come first: mappings merge key by key, the dataset lists concatenate, and
    any other value of the including file wins. Include cycles are an error.
    """
    p = Path(path)
    source = str(path)
    if not p.is_file():
        where = f" (included from {_stack[-1]})" if _stack else ""
        raise ConfigError(f"config file {source!r} does not exist{where}; give the path of a recipe YAML "
                          "(e.g. data_recipes/demo.yaml)")
    key = p.resolve()
    if key in _stack:
        raise ConfigError(f"{source}: include cycle: {' -> '.join(str(s) for s in _stack + (key,))}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (data, model, train, eval)")
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{source}: 'include' must be a path or a list of paths of recipe files")
    merged: dict = {}
    for inc in includes:
        merged = _merge(merged, read_recipe(p.parent / inc, _stack + (key,)))
    return _merge(merged, data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                raw: dict | None = None) -> RunConfig:
    """Read a YAML run config (or ``raw``) with its includes, apply ``key=value`` overrides, bind and validate."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data = read_recipe(path)
    elif raw is not None:
        data = raw
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
    try:
        cfg = _bind(RunConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    _substitute(cfg, {"data_root": cfg.data.data_root, "output_dir": cfg.train.output_dir})
    _check_datasets(cfg, source)
    return cfg


def _check_datasets(cfg: RunConfig, source: str) -> None:
    seen: set[str] = set()
    for group, items in (("data.datasets", cfg.data.datasets), ("data.eval_datasets", cfg.data.eval_datasets)):
        for i, ds in enumerate(items):
            where = f"{source}: {group}[{i}]"
            if not ds.name:
                raise ConfigError(f"{where}: every dataset needs a 'name'")
            key = f"{group}:{ds.name}"
            if key in seen:
                raise ConfigError(f"{where}: duplicate dataset name {ds.name!r}; names must be unique")
            seen.add(key)
            if not ds.records:
                raise ConfigError(f"{where} ({ds.name}): 'records' (path of a JSONL file) is required")
            if not math.isfinite(ds.weight) or ds.weight <= 0:
                raise ConfigError(f"{where} ({ds.name}): weight={ds.weight} must be > 0; remove the dataset "
                                  "to leave it out")
    if not cfg.data.datasets:
        raise ConfigError(f"{source}: data.datasets is empty; list at least one training dataset")


def check_budgets(cfg: RunConfig, factor: int) -> None:
    """Raise ConfigError when a dataset's pixel budget is inverted or one image alone exceeds max_length.

    ``factor`` is the family's patch * merge (28 for Qwen2/2.5-VL): one visual token per factor^2 pixels.
    """
    for group, items in (("data.datasets", cfg.data.datasets), ("data.eval_datasets", cfg.data.eval_datasets)):
        for ds in items:
            lo = ds.min_pixels if ds.min_pixels is not None else cfg.data.min_pixels
            hi = ds.max_pixels if ds.max_pixels is not None else cfg.data.max_pixels
            if lo > hi:
                raise ConfigError(f"{group} {ds.name!r}: effective min_pixels={lo} > max_pixels={hi}; set both on "
                                  "the dataset or fix data.min_pixels / data.max_pixels")
            if hi < factor * factor:
                raise ConfigError(f"{group} {ds.name!r}: max_pixels={hi} is below one visual token "
                                  f"({factor}x{factor}={factor * factor} pixels); raise it")
            # with too_long=downscale an image can shrink to min_pixels, so that is what must fit
            budget, key = (lo, "min_pixels") if cfg.data.too_long == "downscale" else (hi, "max_pixels")
            tokens = budget // (factor * factor) + 2  # + vision start/end
            if tokens >= cfg.data.max_length:
                raise ConfigError(f"{group} {ds.name!r}: one image may take {tokens} tokens ({key}={budget}) but "
                                  f"data.max_length={cfg.data.max_length}; raise max_length or lower {key}")


def check_files(cfg: RunConfig) -> None:
    """Raise ConfigError for records files or image roots that do not exist (after data generation)."""
    for group, items in (("data.datasets", cfg.data.datasets), ("data.eval_datasets", cfg.data.eval_datasets)):
        for ds in items:
            if not Path(ds.records).is_file():
                raise ConfigError(f"{group} {ds.name!r}: records file {ds.records!r} does not exist; fix the path "
                                  "or data.data_root")
            if ds.image_root and not Path(ds.image_root).is_dir():
                raise ConfigError(f"{group} {ds.name!r}: image_root {ds.image_root!r} is not a directory")
            if ds.sensor_branch is not None:
                from cotrain.sensor_pixels import check_statistics

                check_statistics(ds.sensor_branch.bands, ds.sensor_branch.stats, f"{group} {ds.name!r}")


def config_to_dict(cfg: Any) -> dict:
    """Plain-dict form of a config, for logging and saving beside the run."""
    return dataclasses.asdict(cfg)


def iter_fields(cls: type = RunConfig, prefix: str = ""):
    """Yield (dotted key, type name, default, doc) for every field: the README option table source."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    try:
        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    except (OSError, TypeError):
        pass
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if typing.get_origin(tp) is not list:
            inner = [a for a in (typing.get_args(tp) or (tp,)) if a is not type(None)]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
                yield from iter_fields(inner[0], key + ".")
                continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        name = tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "").replace("cotrain.config.", "")
        yield key, name.replace(" | ", " or "), default, docs.get(f.name, "")
