"""How well the scores rank known difficulty knobs (the synthetic IR difficulty set): Spearman's rho.

``knob_agreement(rows, knobs)`` pairs each score row with its record's knobs and gives rho of
lesson 1's difficulty (the NEGATED transfer score: larger transfer = easier) against the ``image``
knob, and of lesson 2's alpha against the ``caption`` knob; the two cross terms show that each
lesson answers to its own knob only. rho is the Pearson correlation of mean ranks (ties shared).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cotrain.curriculum.schedule import ranks


def spearman(a, b) -> float:
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den else float("nan")


def read_knobs(path: str | Path) -> dict[str, dict]:
    return {str(r["id"]): r for r in (json.loads(x) for x in Path(path).read_text().splitlines() if x.strip())}


def knob_agreement(rows: list[dict], knobs: dict[str, dict]) -> dict:
    """Spearman rho of each lesson against each knob, over the rows that have knobs."""
    rows = [r for r in rows if r["id"] in knobs]
    out: dict = {"n": len(rows)}
    lessons = {"transfer": lambda r: -r["transfer"], "alignment": lambda r: r["alignment"]}
    for lesson, value in lessons.items():
        if rows and lesson in rows[0]:
            for knob in ("image", "caption"):
                out[f"{lesson}_vs_{knob}"] = spearman([value(r) for r in rows], [knobs[r["id"]][knob] for r in rows])
    return out
