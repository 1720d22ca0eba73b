"""Rankings -> tiers -> the order a curriculum gives a dataset's samples in each epoch.

**Score file** (``cotrain curriculum score`` writes it): JSON lines ``{"id": record id, "transfer": d_i,
"alignment": alpha_i, "weight": w_i}``; each lesson column is optional, but a column present on one
line must be present on all. A record of the dataset without a line is an error listing a few ids
and the count; NaN scores are errors; scores that make every record equally difficult are an error
(the curriculum would carry no information).

**Ranking**: lesson 1 ranks DESCENDING transfer score (closer to the visible domain = easier), lesson 2
ASCENDING alpha (the pairs a warm-up helped most = easier); ties take their mean rank. ``merge``:
``mean_rank`` (default: the mean of the two ranks; the paper does not say how it combines them),
``max_rank`` (a sample is as hard as its harder lesson), ``transfer`` or ``alignment`` (one lesson).
Records are sorted by merged rank (ties by record id) and cut into ``tiers`` equal parts (sizes
differ by at most one), tier 0 the easiest.

**Schedules** (the paper's ablation), applied to the samples a dataset contributes to an epoch:

* ``ascending_stratified_random`` (default): tiers easy to hard, random order within a tier;
* ``descending_stratified_random``: tiers hard to easy, random within a tier;
* ``ascending`` / ``descending``: the strict merged-rank order, easy to hard / hard to easy;
* ``bidirectional``: tiers alternately from both ends (0, M-1, 1, M-2, ...), random within a tier
  (our reading: the paper names the schedule without defining it);
* ``random``: one uniform shuffle (the tiers are kept for reporting only).

**In the mixture** (``cotrain.data.mixture.MixtureSampler``): the epoch order is shuffled as for any
dataset, then the positions that hold the curriculum dataset's samples are refilled with those same
samples in the schedule's order. The mix over time is unchanged (the other datasets keep their
places); only which of this dataset's samples comes when. Tier boundaries are then rounded to whole
optimizer steps (``step`` samples of the global order: batch x accumulation x ranks): every sample of
a step belongs to the tier of the step's first curriculum sample, so all ranks are in the same tier
at the same step; a realised tier may thus differ from the quantile tier by fewer than ``step``
samples at each boundary. Each epoch runs the whole schedule again, with fresh within-tier orders of
(seed, epoch). With weight w < 1 an epoch holds a seeded frac(w) share of the records, ordered the
same way (realised tier sizes then vary by epoch); with w > 1 a record's copies share its tier.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cotrain.errors import ConfigError
from cotrain.seeding import stable_seed

SCHEDULES = ("ascending_stratified_random", "descending_stratified_random", "ascending", "descending",
             "bidirectional", "random")
MERGES = ("mean_rank", "max_rank", "transfer", "alignment")
LESSONS = {"transfer": -1.0, "alignment": 1.0}
"""Score column -> sign that makes ascending = easy first."""


def read_scores(path: str | Path) -> dict[str, dict]:
    """The score file as {record id: {column: value}}; malformed lines are errors naming file:line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"curriculum scores {p} do not exist; write them with `cotrain curriculum score` (README "
                          "\"Curriculum\")")
    out: dict[str, dict] = {}
    columns: set[str] | None = None
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rid = str(row.pop("id"))
            vals = {k: float(v) for k, v in row.items() if k in (*LESSONS, "weight")}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{p}:{n}: not a score line ({e}); write {{\"id\": ..., \"transfer\": ..., "
                              "\"alignment\": ..., \"weight\": ...}}") from None
        if columns is None:
            columns = set(vals)
        elif set(vals) != columns:
            raise ConfigError(f"{p}:{n}: columns {sorted(vals)} differ from the first line's {sorted(columns)}")
        bad = [k for k, v in vals.items() if not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{p}:{n}: record {rid!r} has a non-finite {bad[0]} score; rescore it or drop it")
        out[rid] = vals
    if not out:
        raise ConfigError(f"curriculum scores {p} are empty")
    return out


def ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks, ascending, ties sharing their mean rank."""
    v = np.asarray(values, np.float64)
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=np.float64)
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def merged_rank(columns: dict[str, np.ndarray], merge: str) -> np.ndarray:
    """One difficulty rank per record from the lesson columns (see the module docstring)."""
    if merge not in MERGES:
        raise ConfigError(f"curriculum merge={merge!r}; use one of {', '.join(MERGES)}")
    have = [k for k in LESSONS if k in columns]
    need = have if merge in ("mean_rank", "max_rank") else [merge]
    missing = [k for k in need if k not in columns]
    if missing or not need:
        raise ConfigError(f"curriculum merge={merge} needs the score column(s) {missing or list(LESSONS)}; the file "
                          f"has {sorted(columns)}")
    per = np.stack([ranks(LESSONS[k] * columns[k]) for k in need])
    return per.max(axis=0) if merge == "max_rank" else per.mean(axis=0)


def assign_tiers(difficulty: np.ndarray, ids: list[str], n_tiers: int) -> np.ndarray:
    """Tier (0 = easiest) of every record: equal-count cuts of the order by difficulty, then id."""
    n = len(difficulty)
    if n_tiers < 1:
        raise ConfigError(f"curriculum tiers={n_tiers}; use >= 1")
    if n_tiers > n:
        raise ConfigError(f"curriculum tiers={n_tiers} but the dataset has {n} records; use at most {n} tiers")
    if np.ptp(difficulty) == 0:
        raise ConfigError("every record has the same curriculum difficulty (constant scores): the tiers would be "
                          "arbitrary. Check the score file, or drop the curriculum")
    order = sorted(range(n), key=lambda i: (difficulty[i], ids[i]))
    tiers = np.empty(n, dtype=np.int64)
    tiers[order] = (np.arange(n) * n_tiers) // n
    return tiers


@dataclass
class Curriculum:
    """A dataset's curriculum: per record (index into its records) a difficulty and a tier."""

    name: str
    difficulty: np.ndarray
    tiers: np.ndarray
    n_tiers: int
    schedule: str
    weights: np.ndarray | None = None
    """Per-record loss weights from the score file (lesson 2), or None."""

    def digest(self) -> str:
        """What an exact resume must find unchanged (part of the mixture fingerprint)."""
        h = hashlib.sha256(f"{self.name}|{self.schedule}|{self.n_tiers}".encode())
        h.update(np.ascontiguousarray(self.tiers).tobytes())
        h.update(np.ascontiguousarray(self.difficulty).tobytes())
        return h.hexdigest()[:16]

    def tier_order(self) -> list[int]:
        m = self.n_tiers
        if self.schedule == "descending_stratified_random":
            return list(range(m - 1, -1, -1))
        if self.schedule == "bidirectional":
            lo, hi, out = 0, m - 1, []
            while lo <= hi:
                out.append(lo)
                if hi != lo:
                    out.append(hi)
                lo, hi = lo + 1, hi - 1
            return out
        return list(range(m))

    def sequence(self, records: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        """The positions of ``records`` (record indices, repeats allowed) in the schedule's order."""
        rng = np.random.default_rng(stable_seed(seed, epoch, self.name, "curriculum"))
        s = self.schedule
        if s == "random":
            return rng.permutation(len(records))
        if s in ("ascending", "descending"):
            key = self.difficulty[records] * (1 if s == "ascending" else -1)
            return np.lexsort((records, key))
        keys = rng.random(len(records))  # random within a tier
        rank_of_tier = np.empty(self.n_tiers, dtype=np.int64)
        rank_of_tier[self.tier_order()] = np.arange(self.n_tiers)
        return np.lexsort((keys, rank_of_tier[self.tiers[records]]))


def round_to_steps(tiers_in_order: np.ndarray, positions: np.ndarray, step: int) -> np.ndarray:
    """Realised tier of each curriculum sample: the tier of the first curriculum sample of its step.

    ``tiers_in_order[k]``: tier of the k-th curriculum sample of the epoch; ``positions[k]``: its place
    in the epoch order (ascending). A step is ``step`` consecutive places of the order.
    """
    steps = positions // max(int(step), 1)
    first = np.r_[True, steps[1:] != steps[:-1]]
    starts = np.flatnonzero(first)
    return np.repeat(tiers_in_order[starts], np.diff(np.r_[starts, len(steps)]))


def build_curriculum(name: str, ids: list[str], cfg) -> Curriculum:
    """The curriculum of one dataset (``cfg``: its ``cotrain.config.CurriculumConfig``) from its record ids."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"dataset {name!r}: curriculum schedule={cfg.schedule!r}; use one of {', '.join(SCHEDULES)}")
    scores = read_scores(cfg.scores)
    missing = [i for i in ids if i not in scores]
    if missing:
        raise ConfigError(f"dataset {name!r}: {len(missing)} of its {len(ids)} records have no line in {cfg.scores} "
                          f"(e.g. {missing[:5]}); score the whole records file")
    rows = [scores[i] for i in ids]
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0] if k in LESSONS}
    difficulty = merged_rank(columns, cfg.merge)
    weights = np.array([r["weight"] for r in rows]) if cfg.loss_weights and "weight" in rows[0] else None
    if cfg.loss_weights and weights is None:
        raise ConfigError(f"dataset {name!r}: curriculum.loss_weights is true but {cfg.scores} has no 'weight' column; "
                          "score with lesson 2 or set loss_weights: false")
    return Curriculum(name, difficulty, assign_tiers(difficulty, ids, cfg.tiers), cfg.tiers, cfg.schedule, weights)


def describe(sampler, d: int, epoch: int = 0, first_steps: int = 8) -> dict:
    """What ``cotrain inspect`` and the training log show of dataset ``d``'s curriculum in ``epoch``."""
    cur = sampler.curricula[d]
    pos, realised = sampler.curriculum_tiers(epoch, d)
    steps = pos // sampler.curriculum_step
    first = [int(realised[np.flatnonzero(steps == s)[0]]) if (steps == s).any() else None
             for s in range(first_steps)]
    return {"dataset": cur.name, "schedule": cur.schedule, "tiers": cur.n_tiers,
            "tier_records": np.bincount(cur.tiers, minlength=cur.n_tiers).tolist(),
            "tier_samples_epoch": np.bincount(realised, minlength=cur.n_tiers).tolist(),
            "step_samples": sampler.curriculum_step, "first_step_tiers": first,
            "loss_weights": cur.weights is not None}


def format_description(info: dict) -> str:
    steps = " ".join("-" if t is None else str(t) for t in info["first_step_tiers"])
    return (f"curriculum {info['dataset']}: {info['schedule']}, {info['tiers']} tiers of "
            f"{info['tier_records']} records ({info['tier_samples_epoch']} samples this epoch, rounded to steps of "
            f"{info['step_samples']}); tier of the first steps: {steps}"
            + ("; loss weights on" if info["loss_weights"] else ""))
