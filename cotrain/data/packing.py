"""Sequence packing, planned and served: which samples share a row, and the dataset of those packs.

``plan_packs`` decides which samples of an epoch share a row from token counts known before any
pixel is decoded (best-fit decreasing, then a seeded shuffle of the packs so that long and short
samples do not cluster at the start or end of the epoch). ``PackedTrainingDataset`` is the training
dataset whose item is one pack: for each epoch the mixture's order (``MixtureSampler.epoch_order``)
is measured sample by sample (exact token counts from the recorded image sizes and the epoch's
templates), planned, and served in plan order by ``PackSampler``. The plan is a pure function of
(seed, epoch), so ranks agree and a resume re-derives it. Samples that cannot be measured (a bad
record, more tokens than ``max_length``) never enter the plan; they are counted as skips once per
epoch (attached to pack 0). A sample whose image turns out bad when the pack is built leaves a hole
(counted) rather than pulling in a replacement of unknown length; a pack left with no sample at all
falls back to a replacement.

Must not decide the mixture (``MixtureSampler``), build samples (``cotrain.data.dataset``), lay out
tensors (``cotrain.data.collate.PackCollator``) nor truncate: a sample longer than ``max_length``
never enters a plan.
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from cotrain.errors import BadRecordError
from cotrain.seeding import stable_seed

log = logging.getLogger(__name__)


def plan_packs(lengths: Sequence[int], max_length: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Group item positions ``0..len(lengths)-1`` into packs whose lengths sum to <= ``max_length``.

    Best-fit decreasing (each item, longest first, goes into the open pack with the least room that
    still fits it), items inside a pack kept in their original order, then the packs shuffled by
    (seed, epoch). Deterministic: ties are broken by position. Items longer than ``max_length`` are
    refused (the caller removes them first and counts them).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    lengths = [int(x) for x in lengths]
    too_long = [i for i, n in enumerate(lengths) if n > max_length or n < 1]
    if too_long:
        i = too_long[0]
        raise ValueError(f"item {i} has length {lengths[i]}, outside 1..max_length={max_length}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    # open packs as a sorted list of (room left, pack number): bisect finds the best fit in O(log n)
    rooms: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(rooms, (n, -1))
        if k < len(rooms):
            room, p = rooms.pop(k)
            packs[p].append(i)
            room -= n
        else:
            p = len(packs)
            packs.append([i])
            room = max_length - n
        if room > 0:
            bisect.insort(rooms, (room, p))
    for pack in packs:
        pack.sort()
    rng = np.random.default_rng(stable_seed(seed, epoch, "pack-order"))
    return [packs[j] for j in rng.permutation(len(packs))]


def pack_fill(lengths: Sequence[int], packs: list[list[int]], max_length: int) -> float:
    """Share of the packs' ``max_length`` slots holding real tokens."""
    if not packs:
        return 0.0
    return sum(int(lengths[i]) for p in packs for i in p) / (len(packs) * max_length)


class PackedTrainingDataset:
    """Map-style dataset of packs over a :class:`cotrain.data.dataset.TrainingDataset`."""

    def __init__(self, base: Any, *, progress: bool = True):
        self.base = base
        self.max_length = int(base.data_cfg.max_length)
        self.progress = progress
        self.epoch = -1
        self.packs: list[np.ndarray] = []
        self.lengths: dict[int, int] = {}
        self.plan_skipped: list[tuple[str, str, str]] = []
        self.fill = 0.0
        self.sampler = PackSampler(self)
        self.set_epoch(base.epoch)

    def set_epoch(self, epoch: int) -> None:
        epoch = int(epoch)
        self.base.set_epoch(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self._plan(epoch)

    def _plan(self, epoch: int) -> None:
        from tqdm import tqdm

        t0 = time.time()
        order = self.base.sampler.epoch_order(epoch)
        lengths: dict[int, int] = {}
        skipped: list[tuple[str, str, str]] = []
        keep: list[int] = []
        bar = tqdm(order.tolist(), desc=f"measuring epoch {epoch} for packing", unit="sample",
                   disable=not self.progress, mininterval=2.0, leave=False)
        for i in bar:
            if i not in lengths:
                try:
                    lengths[i] = self.base.sample_length(i, epoch)
                except BadRecordError as e:
                    if self.base.data_cfg.on_bad_record == "raise":
                        raise
                    lengths[i] = -1
                    d, _ = self.base.sampler.locate(i)
                    skipped.append((e.reason, self.base.datasets[d].cfg.name, str(e.record_id)))
            n = lengths[i]
            if n > self.max_length:
                d, r = self.base.sampler.locate(i)
                skipped.append(("too_long", self.base.datasets[d].cfg.name, f"record {r}"))
            elif n > 0:
                keep.append(i)
        if not keep:
            raise BadRecordError(f"epoch {epoch}: no sample fits data.max_length={self.max_length}; raise it or "
                                 "lower max_pixels", reason="too_many_bad")
        kept = np.asarray(keep, dtype=np.int64)
        kept_lengths = [lengths[i] for i in keep]
        plan = plan_packs(kept_lengths, self.max_length, seed=self.base.data_cfg.seed, epoch=epoch)
        self.packs = [kept[np.asarray(p, dtype=np.int64)] for p in plan]
        self.lengths = lengths
        self.plan_skipped = skipped
        self.fill = pack_fill(kept_lengths, plan, self.max_length)
        log.info("packing epoch %d: %d samples -> %d packs of <= %d tokens, fill %.3f, %d skipped (%.1f s)",
                 epoch, len(keep), len(self.packs), self.max_length, self.fill, len(skipped), time.time() - t0)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, k: int) -> dict:
        samples: list[dict] = []
        skipped = list(self.plan_skipped) if k == 0 else []
        indices = self.packs[int(k)].tolist()
        for i in indices:
            sample, bad = self.base.build_exact(i)
            skipped += bad
            if sample is not None:
                samples.append(sample)
        if not samples:  # every sample of the pack was bad: one replacement (fits alone by construction)
            sample = self.base[indices[0]]
            skipped += sample.pop("skipped", [])
            samples.append(sample)
        return {"samples": samples, "skipped": skipped}


class PackSampler(Sampler[int]):
    """Pack numbers of the current epoch in plan order; ``set_epoch`` re-plans (HF / accelerate call it)."""

    def __init__(self, dataset: PackedTrainingDataset):
        self.dataset = dataset

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset.packs)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.dataset.packs)))
