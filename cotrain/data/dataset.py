"""From canonical records to encoded training samples, with bad-input accounting.

Owns the per-sample path: record -> target sizes (smart resize, optional random resize) ->
conversation (task builder + box codec for the resized image) -> pixels (decode, resize) ->
token ids and labels (chat encoder). A sample that cannot be built (missing or corrupt image,
too many tokens) raises ``BadRecordError`` with a stable reason key; ``TrainingDataset`` turns
that into a counted, logged skip (``on_bad_record: skip``) or re-raises (``raise``).

Must not decide the mixture (``cotrain.data.mixture.MixtureSampler`` does); must not load a model.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from cotrain.boxes import BoxCodec
from cotrain.config import DataConfig, DatasetConfig
from cotrain.errors import BadRecordError, ConfigError, RecordError
from cotrain.sensor_pixels import open_pixels
from cotrain.sensors import COMPOSITE_MODALITY
from cotrain.records import read_records
from cotrain.resolution import ImageSizeError, random_resize, smart_resize
from cotrain.seeding import stable_seed
from cotrain.tasks import build_conversation, prompt_only

log = logging.getLogger(__name__)


@dataclass
class LoadedDataset:
    """A dataset config with its validated records."""

    cfg: DatasetConfig
    records: Sequence[dict]
    classes: list[str] | None = None
    """Dataset class list for records without their own ``classes`` (sorted labels seen)."""


def dataset_classes(records: list[dict]) -> list[str] | None:
    """The dataset's class list: labels of classification records or object labels of detection records."""
    labels: set[str] = set()
    for rec in records:
        if rec["task"] == "classification":
            labels.update(rec.get("classes") or [rec["label"]])
        elif rec["task"] == "detection":
            labels.update(rec.get("classes") or [o["label"] for o in rec["objects"]])
    return sorted(labels) or None


class LazyRecords(Sequence):
    """The records of a large file, read one at a time through a memory-mapped ``RecordIndex``.

    Records are validated when read (a bad one raises ``RecordError`` naming file:line, which the
    training dataset counts as a skip), so millions of records never live as Python objects.
    """

    def __init__(self, index: Any, limit: int | None = None):
        self.index = index
        self.n = len(index) if limit is None else min(limit, len(index))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.index.record(j) for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.index.record(i % self.n)


def load_dataset(ds: DatasetConfig, *, lazy_above_mb: float = 256.0, rank: int = 0,
                 world_size: int = 1) -> LoadedDataset:
    """Read and validate the records of ``ds``; RecordError names file:line and field.

    Files larger than ``lazy_above_mb`` go through a memory-mapped ``RecordIndex`` (built once
    beside the file by rank 0, O(1) access); their class list comes from the first 1000 records
    (or their ``classes`` field), and records are validated when read.
    """
    if Path(ds.records).stat().st_size > lazy_above_mb * 2**20:
        from cotrain.data.index import RecordIndex

        index = RecordIndex.build_or_load(ds.records, rank=rank, world_size=world_size)
        if len(index) == 0:
            raise RecordError(f"dataset {ds.name!r} has no records", path=ds.records)
        head = []
        for i in range(min(1000, len(index))):
            try:
                head.append(index.record(i))
            except RecordError as e:  # counted when training reaches it; only the class list is sampled here
                log.warning("dataset %s: %s", ds.name, e)
        _check_task(ds, head)
        needs = [r for r in head if r["task"] in ("classification", "detection")]
        if ds.classes is None and needs and not all(r.get("classes") for r in needs):
            # labels first seen after the sampled head would all become skips: refuse instead of guessing
            raise ConfigError(f"dataset {ds.name!r} is read lazily ({ds.records} > {lazy_above_mb:g} MB) and its "
                              "records carry no 'classes' list; give the class list with 'classes: [...]' in the "
                              "recipe's dataset entry")
        classes = ds.classes if ds.classes is not None else dataset_classes(head)
        log.info("dataset %s: %d records through a memory-mapped index (%s)", ds.name, len(index), index.index_path)
        return LoadedDataset(ds, LazyRecords(index, ds.max_samples), classes)
    records = read_records(ds.records)
    _check_task(ds, records)
    if not records:
        raise RecordError(f"dataset {ds.name!r} has no records", path=ds.records)
    # from all records: max_samples must not shrink the class list
    classes = ds.classes if ds.classes is not None else dataset_classes(records)
    if ds.max_samples is not None:
        records = records[: ds.max_samples]
    return LoadedDataset(ds, records, classes)


def _check_task(ds: DatasetConfig, records) -> None:
    if ds.task is None:
        return
    for rec in records:
        if rec["task"] != ds.task:
            raise RecordError(
                f"task {rec['task']!r} but dataset {ds.name!r} declares task {ds.task!r}; fix the record or "
                "drop 'task' from the dataset entry", path=ds.records, record_id=rec.get("id"), field="task")


def _hw(conv) -> list[tuple[int, int]]:
    """(h, w) of each image of ``conv``, the order ``target_sizes`` and ``length_estimate`` use."""
    return [(int(img["resized_wh"][1]), int(img["resized_wh"][0])) for img in conv.images]


class SampleBuilder:
    """Builds one encoded sample from one record (training) or one prompt (inference)."""

    def __init__(self, encoder: Any, family: Any, data_cfg: DataConfig):
        self.encoder = encoder
        self.family = family
        self.codec = BoxCodec.for_family(family)
        self.data_cfg = data_cfg

    def target_sizes(self, record: dict, ds: DatasetConfig, epoch: int, index: int, *,
                     shrink: float = 1.0) -> list[tuple[int, int]]:
        """Resized (h, w) per image, from the recorded sizes: no pixels are decoded here.

        ``shrink`` < 1 (the length rule's downscale) caps each image at that fraction of the area it
        would otherwise get, through ``smart_resize`` of the recorded size with the smaller
        ``max_pixels``, so the aspect ratio is kept and sides stay multiples of the factor. The cap
        never goes below the dataset's ``min_pixels``.
        """
        lo = ds.min_pixels if ds.min_pixels is not None else self.data_cfg.min_pixels
        hi = ds.max_pixels if ds.max_pixels is not None else self.data_cfg.max_pixels
        f = self.family.factor
        rng = np.random.default_rng(stable_seed(self.data_cfg.seed, epoch, ds.name, index, "resize"))
        sizes = []
        for img in record["images"]:
            h, w = int(img["height"]), int(img["width"])
            try:
                if ds.random_resize > 0 and rng.random() < ds.random_resize:
                    size = random_resize(h, w, factor=f, min_pixels=lo, max_pixels=hi, rng=rng)
                else:
                    size = smart_resize(h, w, factor=f, min_pixels=lo, max_pixels=hi)
                if shrink < 1.0:
                    cap = max(lo, int(size[0] * size[1] * shrink))
                    size = smart_resize(h, w, factor=f, min_pixels=lo, max_pixels=cap)
                sizes.append(tuple(size))
            except ImageSizeError as e:
                raise BadRecordError(f"record {record.get('id')!r} of {ds.name!r}: {e}", reason="image_size",
                                     record_id=record.get("id")) from None
        return sizes

    def conversation(self, record: dict, ld: LoadedDataset, epoch: int, index: int, *, shrink: float = 1.0):
        ds = ld.cfg
        sizes = self.target_sizes(record, ds, epoch, index, shrink=shrink)
        try:
            conv = build_conversation(
                record, image_root=ds.image_root, resized_sizes=sizes, codec=self.codec, seed=self.data_cfg.seed,
                epoch=epoch, index=index, box_format=ds.box_format, prompt_style=ds.prompt_style,
                classes=ld.classes, dataset=ds.name)
            for img in conv.images:  # how the dataset shows its ms / sar images
                if img.get("modality") in ("ms", "sar"):
                    if ds.composite and COMPOSITE_MODALITY[ds.composite] == img["modality"]:
                        img["composite"] = ds.composite
                    if ds.sensor_branch is not None:
                        img["branch"] = asdict(ds.sensor_branch)
            return conv
        except RecordError as e:
            # a record that validates but cannot be phrased (label outside the class list, ...)
            raise BadRecordError(f"{ds.name}: {e}", reason="bad_record", record_id=record.get("id")) from None

    def load_pixels(self, conv) -> list[Image.Image]:
        """Decode each image of ``conv`` straight to its resized (w, h)."""
        rid = conv.meta.get("id", "?")
        return [open_pixels(img, rid, target_wh=tuple(img["resized_wh"])) for img in conv.images]

    def build(self, record: dict, ld: LoadedDataset, epoch: int, index: int, *, prompt: bool = False) -> dict:
        """Encoded training sample (or generation prompt) of ``record``."""
        if prompt:
            return self.encode(self.conversation(record, ld, epoch, index), ld, prompt=True)
        conv, n_tokens = self.fitted_conversation(record, ld, epoch, index)
        return self.encode(conv, ld, n_tokens=n_tokens)

    def _length(self, conv: Any) -> int:
        return self.encoder.length_estimate(conv, _hw(conv))

    def fitted_conversation(self, record: dict, ld: LoadedDataset, epoch: int, index: int,
                            max_rounds: int = 60) -> tuple[Any, int]:
        """(The training conversation, its exact token count), images downscaled to fit ``data.max_length``.

        Only with ``data.too_long: downscale``; with ``skip`` (or when nothing can shrink) the
        conversation is returned as built and ``encode`` skips it with reason ``too_long``. Each
        round rebuilds the conversation for the smaller sizes (so its boxes are rendered for them)
        and recounts its tokens exactly, since box numbers change the text length a little.
        Visual tokens are proportional to area, so the area cap shrinks by the ratio of the room
        left for images to the visual tokens used; a round that changes no size shrinks by 10%
        more, so the loop ends at the ``min_pixels`` sizes at the latest.
        """
        conv = self.conversation(record, ld, epoch, index)
        limit = self.data_cfg.max_length
        n = self._length(conv)
        if n <= limit or self.data_cfg.too_long != "downscale" or not conv.images:
            return conv, n
        f2 = self.family.factor ** 2
        smallest = self.target_sizes(record, ld.cfg, epoch, index, shrink=0.0)  # every cap at min_pixels
        shrink = 1.0
        for _ in range(max_rounds):
            sizes = _hw(conv)
            if sizes == smallest:
                break
            visual = sum(h * w // f2 for h, w in sizes)
            room = limit - (n - visual)
            if room <= 0:
                break  # the text alone (with vision start/end tokens) does not fit: no size helps
            shrink *= min(room / visual, 0.999)
            smaller = self.conversation(record, ld, epoch, index, shrink=shrink)
            if _hw(smaller) == sizes:
                shrink *= 0.9  # flooring to the factor kept every size: push harder
                continue
            conv, n = smaller, self._length(smaller)
            if n <= limit:
                log.debug("record %r of %r downscaled to %s to fit max_length=%d", conv.meta.get("id"),
                          ld.cfg.name, [img["resized_wh"] for img in conv.images], limit)
                return conv, n
        return conv, n

    def encode(self, conv: Any, ld: LoadedDataset, *, prompt: bool = False, n_tokens: int | None = None) -> dict:
        """Encode a built conversation; the length check runs on recorded sizes, before any decode.

        ``n_tokens``: the conversation's token count when the caller already has it (``build``).
        """
        rid = conv.meta.get("id")
        if prompt:
            conv = prompt_only(conv)
        else:
            # Never truncated: a sample that does not fit is skipped whole (fitted_conversation has
            # already downscaled it as far as data.too_long allows).
            n = self._length(conv) if n_tokens is None else n_tokens
            if n > self.data_cfg.max_length:
                if self.data_cfg.too_long == "downscale":
                    fix = " even with its images at min_pixels; raise data.max_length or lower min_pixels"
                else:
                    fix = "; raise data.max_length, lower max_pixels or set data.too_long=downscale"
                raise BadRecordError(
                    f"record {rid!r} of {ld.cfg.name!r} has {n} tokens > data.max_length={self.data_cfg.max_length}"
                    f"{fix}", reason="too_long", record_id=rid)
        pixels = self.load_pixels(conv)
        sample = self.encoder.encode(conv, pixels, add_generation_prompt=prompt)
        sample["dataset"] = ld.cfg.name
        sample["task"] = conv.meta.get("task")
        return sample


class TrainingDataset:
    """Map-style dataset over the concatenation of the datasets; the mixture lives in ``self.sampler``.

    ``self.sampler`` (a ``MixtureSampler``) decides which global indices an epoch visits and in
    which order (weights, seed, epoch, ranks, exact resume); this class only turns a global index
    into a sample. When a sample is bad and ``on_bad_record`` is ``skip``, the next good record of
    the same dataset (cyclically) is used in its place, so the mix is kept, and the returned sample
    carries ``skipped=[(reason, dataset, record id)]`` for the requested record (a bad record is
    counted when its own index is visited). Template and resize choices are seeded by (seed,
    epoch, global index).
    """

    def __init__(self, datasets: list[LoadedDataset], builder: SampleBuilder, data_cfg: DataConfig, epoch: int = 0,
                 *, batch_size: int = 1, num_replicas: int = 1, rank: int = 0, curriculum_step: int = 1):
        from cotrain.data.mixture import MixtureSampler

        self.datasets = datasets
        self.builder = builder
        self.data_cfg = data_cfg
        self.epoch = int(epoch)
        self.curricula = dataset_curricula(datasets)
        self.loss_weights = {d: c.weights for d, c in self.curricula.items() if c.weights is not None}
        """dataset index -> per-record loss weights; with any, every sample carries ``loss_weight``."""
        self.sampler = MixtureSampler([len(ld.records) for ld in datasets], [ld.cfg.weight for ld in datasets],
                                      [ld.cfg.name for ld in datasets], seed=data_cfg.seed, batch_size=batch_size,
                                      num_replicas=num_replicas, rank=rank, curricula=self.curricula,
                                      curriculum_step=curriculum_step)
        self.set_epoch(epoch)
        if len(self.sampler) == 0:
            raise RecordError("the weighted mixture is empty; check dataset weights")

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the template / random-resize seeds and of the sampler's order.

        Both must move together: accelerate's resume path (``skip_first_batches``) wraps the
        sampler so that its own ``set_epoch`` call does not reach it, and falls back to the
        dataset's.
        """
        self.epoch = int(epoch)
        if self.sampler.epoch != self.epoch:
            self.sampler.set_epoch(self.epoch)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(dataset, record) of this epoch's samples on this rank, in order (for inspection and tests)."""
        return [self.sampler.locate(int(i)) for i in self.sampler.rank_indices(self.epoch)]

    def __len__(self) -> int:
        return int(self.sampler.offsets[-1])

    def sample_length(self, i: int, epoch: int | None = None) -> int:
        """Exact token count of global index ``i``'s sample in ``epoch`` (recorded sizes, no decode).

        Raises ``BadRecordError`` for a record that cannot be built. Used to plan packs.
        """
        d, r = self.sampler.locate(int(i))
        ld = self.datasets[d]
        rec = read_record(ld, r)
        return self.builder.fitted_conversation(rec, ld, self.epoch if epoch is None else int(epoch), int(i))[1]

    def build_exact(self, i: int) -> tuple[dict | None, list[tuple[str, str, str]]]:
        """(Sample of global index ``i`` or None, skips): no replacement, so a pack keeps its planned length."""
        d, r = self.sampler.locate(int(i))
        ld = self.datasets[d]
        rec: dict = {}
        try:
            rec = read_record(ld, r)
            return self._weighted(self.builder.build(rec, ld, self.epoch, int(i)), d, r), []
        except BadRecordError as e:
            if self.data_cfg.on_bad_record == "raise":
                raise
            log.warning("skipping bad sample (%s): %s", e.reason, e)
            return None, [(e.reason, ld.cfg.name, str(rec.get("id", e.record_id)))]

    def _weighted(self, sample: dict, d: int, r: int) -> dict:
        """The sample with its curriculum loss weight (only when some dataset has weights)."""
        if self.loss_weights:
            w = self.loss_weights.get(d)
            sample["loss_weight"] = 1.0 if w is None else float(w[r])
        return sample

    def __getitem__(self, i: int) -> dict:
        d, r = self.sampler.locate(int(i))
        ld = self.datasets[d]
        n = len(ld.records)
        skipped = []
        for k in range(min(n, 64)):
            rec: dict = {}
            try:
                rec = read_record(ld, (r + k) % n)
                # seeds of index i, so a replacement is not a copy of another index's sample
                sample = self._weighted(self.builder.build(rec, ld, self.epoch, int(i)), d, (r + k) % n)
            except BadRecordError as e:
                if self.data_cfg.on_bad_record == "raise":
                    raise
                if k == 0:
                    log.warning("skipping bad sample (%s): %s", e.reason, e)
                    skipped.append((e.reason, ld.cfg.name, str(rec.get("id", e.record_id))))
                continue
            sample["skipped"] = skipped
            return sample
        raise BadRecordError(f"{min(n, 64)} consecutive records of {ld.cfg.name!r} from record {r} are bad; "
                             "see the log for reasons", reason="too_many_bad")


def dataset_curricula(datasets: list[LoadedDataset]) -> dict:
    """dataset index -> its Curriculum, for the datasets whose config has one (score files read and checked)."""
    out = {}
    for d, ld in enumerate(datasets):
        if ld.cfg.curriculum is not None:
            from cotrain.curriculum.schedule import build_curriculum

            out[d] = build_curriculum(ld.cfg.name, [str(r["id"]) for r in ld.records], ld.cfg.curriculum)
    return out


def read_record(ld: LoadedDataset, r: int) -> dict:
    """Record ``r``; a lazily read record that fails validation becomes a BadRecordError (a counted skip)."""
    try:
        return ld.records[r]
    except RecordError as e:
        raise BadRecordError(f"{ld.cfg.name}: {e}", reason="bad_record", record_id=e.record_id) from None
