"""The detection data model shared by parsing, I/O, IoU and metrics.

A detection or ground-truth object is a label plus a quadrilateral in ORIGINAL image pixels
(8 numbers, x right, y down). Rotated boxes (cx, cy, w, h, theta) and axis-aligned boxes are
converted to quads on the way in, so every metric sees one representation. Images are keyed
by id (a string: the DOTA file stem or the canonical record id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _as_quad(values) -> np.ndarray:
    q = np.asarray(values, dtype=np.float64).reshape(-1)
    if q.shape != (8,):
        raise ValueError(f"a quad has 8 numbers, got {q.shape[0]}")
    return q


@dataclass
class Det:
    """One detection: canonical class name, quad in original pixels, confidence (1.0 for VLMs)."""

    label: str
    quad: np.ndarray = field(repr=False)
    score: float = 1.0

    def __post_init__(self) -> None:
        self.quad = _as_quad(self.quad)
        self.score = float(self.score)


@dataclass
class GT:
    """One ground-truth object: class name, quad in original pixels, DOTA difficult flag (2 = truncated)."""

    label: str
    quad: np.ndarray = field(repr=False)
    difficult: int = 0

    def __post_init__(self) -> None:
        self.quad = _as_quad(self.quad)
        self.difficult = int(self.difficult)


Detections = dict[str, list[Det]]
"""Image id -> detections in emitted (or file) order."""
GroundTruth = dict[str, list[GT]]
"""Image id -> ground-truth objects."""

DOTA_V1_CLASSES = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
)
"""DOTA-v1.0 class names in the official order (mmrotate's label indices follow it)."""
DOTA_V15_CLASSES = DOTA_V1_CLASSES + ("container-crane",)
"""DOTA-v1.5 adds container-crane."""

DOTA_ABBREVIATIONS = {
    "plane": "PL", "baseball-diamond": "BD", "bridge": "BR", "ground-track-field": "GTF", "small-vehicle": "SV",
    "large-vehicle": "LV", "ship": "SH", "tennis-court": "TC", "basketball-court": "BC", "storage-tank": "ST",
    "soccer-ball-field": "SBF", "roundabout": "RA", "harbor": "HA", "swimming-pool": "SP", "helicopter": "HC",
    "container-crane": "CC",
}
"""Column headers of the published DOTA tables."""
