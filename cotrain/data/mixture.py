"""The weighted, deterministic, resumable mixture of datasets (DESIGN.md section 5).

Owns which record is seen when: per epoch, each dataset's records are expanded by its weight
(every record floor(w) times plus a fresh random frac(w) share drawn without replacement), the
expanded list is shuffled, and the result is cut into disjoint, equal-length shards, one per rank.
Must not read records, decode images or know about tasks: it deals in integers only.

Indices. The sampler yields GLOBAL indices into the concatenation of the datasets in the order
given (dataset ``d``'s record ``r`` is ``offsets[d] + r``); ``locate`` turns one back into
``(d, r)``. A map-style dataset over the concatenation therefore needs no knowledge of weights.

Purity. Everything is a function of explicit inputs, never of global RNG state or ``hash()``:

- dataset ``name``'s fractional draw: of (seed, epoch, name). It does not change when another
  dataset's weight changes or when the datasets are listed in another order;
- the epoch order: of (seed, epoch). The expanded list is built in dataset-NAME order before the
  shuffle, so listing the datasets differently yields the same (name, record) sequence;
- rank ``k``'s shard: of (seed, epoch, k, num_replicas): items ``k, k + W, k + 2W, ...`` of the
  epoch order (W = num_replicas). At step ``s`` with per-rank batch B the ranks together take
  items ``s*B*W .. (s+1)*B*W - 1`` of the epoch order, whatever W is.

Equal-length shards. ``drop_last=False`` pads by wrapping: the shard length is
ceil(N / W) and the missing ``W*len - N`` items are the first items of the epoch order again (at
most W - 1 duplicates; the last batch of a rank may be partial, the same on every rank).
``drop_last=True`` keeps only full batches: len = floor(N / (W*B)) * B and the tail of the epoch
order is dropped (a different tail each epoch, since the order is reshuffled).

Curriculum. A dataset with a curriculum (``cotrain.curriculum.schedule``) keeps the places the
shuffle gave it; they are refilled with its own samples in the schedule's order (easy to hard by
default), a pure function of (seed, epoch, name, scores). Its digest joins the fingerprint.

Resume. The order is a pure function of (seed, epoch), so a resumed Trainer run recomputes it and
the Trainer skips the batches the checkpoint had consumed (its own ``skip_first_batches``);
``cotrain_state.json`` records the mixture fingerprint so a changed recipe is refused
(``cotrain.training.checkpoint``, tested by the SIGKILL test in tests/cotrain/test_resume.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from cotrain.seeding import stable_seed
from cotrain.errors import ConfigError


def mixture_fingerprint(sizes: list[int], weights: list[float], names: list[str]) -> str:
    """A short hash of the recipe's shape: sizes, weights (exact bits) and names, in order."""
    payload = json.dumps({"sizes": [int(s) for s in sizes], "weights": [float(w).hex() for w in weights],
                          "names": list(names)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class MixtureSampler(Sampler[int]):
    """Weighted multi-dataset sampler over global indices; deterministic, sharded and resumable.

    ``sizes[d]`` records of dataset ``names[d]`` are used ``weights[d]`` times per epoch on average.
    ``batch_size`` is the per-rank batch; it only matters for ``drop_last`` (whole batches).
    """

    def __init__(self, sizes: list[int], weights: list[float], names: list[str], *, seed: int,
                 batch_size: int = 1, num_replicas: int = 1, rank: int = 0, drop_last: bool = False,
                 curricula: dict[int, Any] | None = None, curriculum_step: int = 1):
        self.sizes = [int(s) for s in sizes]
        self.weights = [float(w) for w in weights]
        self.names = [str(n) for n in names]
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.drop_last = bool(drop_last)
        self._check()
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        """offsets[d] is the global index of dataset d's record 0; offsets[-1] is the total."""
        self.fingerprint = mixture_fingerprint(self.sizes, self.weights, self.names)
        self.curricula = dict(curricula or {})
        """dataset index -> ``cotrain.curriculum.schedule.Curriculum`` (its records' order within each epoch)."""
        self.curriculum_step = max(int(curriculum_step), 1)
        """Samples of the global order per optimizer step (tier boundaries are rounded to steps)."""
        if self.curricula:  # a changed score file or schedule must not resume silently
            parts = [self.fingerprint] + [f"{d}:{c.digest()}:{self.curriculum_step}"
                                          for d, c in sorted(self.curricula.items())]
            self.fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        # per dataset: how many times every record is used, and how many extra records are drawn
        self._whole = [int(math.floor(w)) for w in self.weights]
        self._extra = [int(round((w - math.floor(w)) * n)) for w, n in zip(self.weights, self.sizes)]
        self.epoch_size = sum(k * n + e for k, n, e in zip(self._whole, self.sizes, self._extra))
        """Samples per epoch over all ranks, before padding or dropping (the same every epoch)."""
        self._check_epoch_size()
        self.epoch = 0
        self._plan_cache: tuple[int, np.ndarray] | None = None

    # -- validation -------------------------------------------------------------------------

    def _check(self) -> None:
        if not (len(self.sizes) == len(self.weights) == len(self.names)) or not self.sizes:
            raise ConfigError(f"MixtureSampler needs one size, weight and name per dataset; got {len(self.sizes)} "
                              f"sizes, {len(self.weights)} weights, {len(self.names)} names")
        seen: set[str] = set()
        for n, w, name in zip(self.sizes, self.weights, self.names):
            if name in seen:
                raise ConfigError(f"dataset name {name!r} appears twice in the mixture; names seed the weight "
                                  "draws, so give each dataset a unique 'name'")
            seen.add(name)
            if n <= 0:
                raise ConfigError(f"dataset {name!r} has {n} records; remove it from the recipe or fix its "
                                  "records file")
            if not (math.isfinite(w) and w > 0):
                raise ConfigError(f"dataset {name!r} has weight {w}; 'weight' must be a finite number > 0 "
                                  "(the expected uses of each record per epoch)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}; it must be >= 1")
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ConfigError(f"rank={self.rank} with num_replicas={self.num_replicas}; need 0 <= rank < num_replicas")

    def _check_epoch_size(self) -> None:
        if self.epoch_size == 0:
            raise ConfigError("the weighted mixture is empty (every weight rounds to 0 records); raise the weights")
        if len(self) == 0:
            raise ConfigError(
                f"an epoch has {self.epoch_size} samples, fewer than one batch of {self.batch_size} per rank on "
                f"{self.num_replicas} ranks, and drop_last=True would drop them all; lower the batch size or set "
                "drop_last=False")

    # -- the epoch plan ---------------------------------------------------------------------

    def __len__(self) -> int:
        """Samples per rank per epoch."""
        per_step = self.num_replicas * self.batch_size
        if self.drop_last:
            return (self.epoch_size // per_step) * self.batch_size
        return -(-self.epoch_size // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next pass."""
        self.epoch = int(epoch)

    def fractional_draw(self, d: int, epoch: int) -> np.ndarray:
        """Sorted record indices of dataset ``d`` drawn for its frac(weight) share in ``epoch``."""
        n, extra = self.sizes[d], self._extra[d]
        if not extra:
            return np.empty(0, dtype=np.int64)
        rng = np.random.default_rng(stable_seed(self.seed, epoch, self.names[d], "weight"))
        return np.sort(rng.choice(n, size=extra, replace=False)).astype(np.int64)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Global indices of the whole epoch (all ranks, before padding), in training order."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        parts = []
        for d in sorted(range(len(self.names)), key=lambda i: self.names[i]):
            base = np.arange(self.offsets[d], self.offsets[d + 1], dtype=np.int64)
            parts.extend([base] * self._whole[d])
            parts.append(self.fractional_draw(d, epoch) + self.offsets[d])
        order = np.concatenate(parts)
        np.random.default_rng(stable_seed(self.seed, epoch, "order")).shuffle(order)
        for d, cur in self.curricula.items():
            # the dataset keeps its places in the mix; which of its samples fills them follows the schedule
            pos, recs = self._curriculum_slots(order, d)
            order[pos] = recs[cur.sequence(recs, self.seed, epoch)] + self.offsets[d]
        self._plan_cache = (epoch, order)
        return order

    def _curriculum_slots(self, order: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.flatnonzero((order >= self.offsets[d]) & (order < self.offsets[d + 1]))
        return pos, order[pos] - self.offsets[d]

    def curriculum_tiers(self, epoch: int, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(places in the epoch order, realised tier) of dataset ``d``'s samples, tiers rounded to whole steps."""
        from cotrain.curriculum.schedule import round_to_steps

        pos, recs = self._curriculum_slots(self.epoch_order(epoch), d)
        return pos, round_to_steps(self.curricula[d].tiers[recs], pos, self.curriculum_step)

    def rank_indices(self, epoch: int, start: int = 0) -> np.ndarray:
        """This rank's global indices of ``epoch`` from shard position ``start`` on (vectorised slice)."""
        order = self.epoch_order(epoch)
        steps = np.arange(start, len(self), dtype=np.int64)
        # wrapping (modulo) is the padding; with drop_last every position is already < epoch_size
        return order[(self.rank + steps * self.num_replicas) % len(order)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices(self.epoch).tolist())

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset index, record index) of a global index."""
        if not 0 <= index < self.offsets[-1]:
            raise IndexError(f"global index {index} outside the mixture's {int(self.offsets[-1])} records")
        d = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return d, int(index - self.offsets[d])

    # -- reporting --------------------------------------------------------------------------

    def realised_mix(self, epoch: int | None = None) -> dict[str, dict[str, Any]]:
        """Per dataset name: records, weight, samples in the epoch and their share; also this rank's count.

        ``samples``/``share`` are over the whole epoch (all ranks, before padding);
        ``rank_samples`` counts what this rank's shard draws from the dataset, padding included.
        """
        epoch = self.epoch if epoch is None else int(epoch)
        rank_ds = np.searchsorted(self.offsets, self.rank_indices(epoch), side="right") - 1
        rank_counts = np.bincount(rank_ds, minlength=len(self.names))
        mix = {}
        for d, name in enumerate(self.names):
            samples = self._whole[d] * self.sizes[d] + self._extra[d]
            mix[name] = {"records": self.sizes[d], "weight": self.weights[d], "samples": samples,
                         "share": samples / self.epoch_size, "rank_samples": int(rank_counts[d])}
        return mix
