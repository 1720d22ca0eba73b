"""Large images: split DOTA scenes into overlapping patches, and merge patch detections back.

This module owns the window grid, the assignment of ground-truth objects to patches, patch ids,
writing patch images + labelTxt, and the merge (offset back + per-class rotated NMS). File formats
live in ``cotrain.dota.formats``; IoU in ``cotrain.geometry.iou``. It must not score anything.

Conventions (the DOTA devkit's ``ImgSplit`` and mmrotate's ``img_split.py`` agree on them):

* windows of ``patch`` x ``patch`` pixels step by ``patch - gap`` from 0; when the image is larger
  than a patch, the last window along an axis is shifted to end exactly at the image border; an
  axis shorter than a patch gets one window at 0, padded (black) to the patch size;
* windows are listed column by column (x outer, y inner), as both references do;
* patch id ``<image id>__<patch>__<x>___<y>`` (``P0000__1024__824___0``); the merge parses it
  from the right, so image ids may themselves contain ``__``;
* an object goes to a window when IoF = area(object & window) / area(object) >= ``iof_thr``;
  objects wholly inside keep their vertices and difficult flag; objects cut by the window border
  are clipped to it and marked ``difficult=2`` (DOTA's "truncated"). A clipped polygon with 4
  vertices is kept as is; any other vertex count (a corner cut off, a 5- or 6-gon) is replaced by
  its minimum-area rectangle, because DOTA objects are quads. That rectangle covers the visible
  part exactly as a rotated box would and may reach slightly past the window edge; clamping its
  corners instead would bend it into a non-rectangle that no longer covers the part;
  an object of zero area goes only to windows that hold it wholly;
* merge: per original image and class, detections are ranked by score (descending), then by the
  patch offset (x, then y), then patch id, then emitted order, and greedy NMS drops a detection
  whose rotated IoU (min-area rectangles, DOTA/mmrotate convention) with a kept one is ABOVE
  ``nms_iou`` (0.1, as the devkit and mmrotate). The explicit tie order makes the result
  independent of dict order and sort stability. Output: sorted image ids, classes in sorted
  order, kept detections in rank order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from PIL import Image

from cotrain.dota.formats import DotaFormatError, write_labeltxt
from cotrain.dota.types import GT, Det, Detections
from cotrain.errors import ConfigError
from cotrain.pixels import pixel_limit
from cotrain.geometry.iou import iou_matrix, min_area_rect
from cotrain.geometry.quads import order_quad

PATCH_ID = re.compile(r"^(?P<image>.+)__(?P<size>\d+)__(?P<x>\d+)___(?P<y>\d+)$")
"""Patch id pattern ``<image id>__<patch>__<x>___<y>`` (DOTA devkit / mmrotate naming)."""
TRUNCATED = 2
"""DOTA difficult flag of an object cut by a patch border."""


@dataclass
class Patch:
    """One window of a split image, with the objects assigned to it in patch coordinates."""

    id: str
    """Patch id ``<image id>__<patch>__<x>___<y>``."""
    x: int
    """Left edge of the window in original image pixels."""
    y: int
    """Top edge of the window in original image pixels."""
    w: int
    """Window width (the patch size; the saved patch is padded to it)."""
    h: int
    """Window height (the patch size)."""
    gts: list[GT] = field(default_factory=list)
    """Objects kept in this patch, quads relative to (x, y)."""


def patch_id(image_id: str, patch: int, x: int, y: int) -> str:
    """The devkit-style patch id of the window at (x, y)."""
    return f"{image_id}__{patch}__{x}___{y}"


def parse_patch_id(pid: str) -> tuple[str, int, int]:
    """(original image id, x, y) of a patch id; ``DotaFormatError`` when it is not one."""
    m = PATCH_ID.match(pid)
    if m is None:
        raise DotaFormatError(f"image id {pid!r} is not a patch id '<image>__<patch>__<x>___<y>'. Merge only "
                              "detections made on patches from split_annotations/split_image (or the DOTA devkit "
                              "at rate 1); evaluate whole-image detections without merging.")
    return m["image"], int(m["x"]), int(m["y"])


def window_starts(length: int, patch: int, gap: int) -> list[int]:
    """Window offsets along one axis: steps of ``patch - gap``, the last one ending at the border."""
    if length <= patch:
        return [0]
    starts = list(range(0, length - patch, patch - gap))
    return starts + [length - patch]


def _check_grid(width: int, height: int, patch: int, gap: int, iof_thr: float) -> None:
    if patch <= 0 or gap < 0 or gap >= patch:
        raise ConfigError(f"split patch={patch}, gap={gap}: need patch > gap >= 0 (DOTA uses patch 1024, gap 200).")
    if width <= 0 or height <= 0:
        raise ConfigError(f"split: image size {width}x{height} is empty. Check the image's recorded width/height.")
    if not 0.0 < iof_thr <= 1.0:
        raise ConfigError(f"split iof_thr={iof_thr}: must be in (0, 1] (DOTA uses 0.7).")


def _clipped_quad(piece, x0: float, y0: float) -> np.ndarray | None:
    """A quad (patch coordinates) for the part of an object inside a window, or None if nothing is left."""
    if not isinstance(piece, shapely.Polygon) or piece.is_empty or piece.area <= 0:
        return None
    ring = np.asarray(shapely.simplify(piece, 0.0).exterior.coords)[:-1]
    if len(ring) != 4:
        ring = np.asarray(shapely.oriented_envelope(piece).exterior.coords)[:4]
    quad = (ring - (x0, y0)).reshape(-1)
    return np.asarray(order_quad(quad.tolist()), dtype=np.float64)


def split_annotations(image_id: str, width: int, height: int, gts: Sequence[GT], *, patch: int = 1024,
                      gap: int = 200, iof_thr: float = 0.7) -> list[Patch]:
    """The patches of one image with the objects each one keeps (see the module docstring for the rules)."""
    _check_grid(width, height, patch, gap, iof_thr)
    quads = np.array([g.quad for g in gts], dtype=np.float64).reshape(-1, 8)
    xs, ys = quads[:, 0::2], quads[:, 1::2]
    lo_x, hi_x = xs.min(1, initial=np.inf), xs.max(1, initial=-np.inf)
    lo_y, hi_y = ys.min(1, initial=np.inf), ys.max(1, initial=-np.inf)
    # Vertex order of a DOTA quad carries meaning (first vertex = head for some classes), so whole
    # objects keep it; only the geometry used for areas is reordered into a valid outline.
    outlines = np.array([order_quad(q.tolist()) for q in quads], dtype=np.float64).reshape(-1, 4, 2)
    polys = shapely.polygons(outlines)
    areas = shapely.area(polys)
    patches = []
    for x in window_starts(width, patch, gap):
        for y in window_starts(height, patch, gap):
            inside = (lo_x >= x) & (hi_x <= x + patch) & (lo_y >= y) & (hi_y <= y + patch)
            touching = (hi_x > x) & (lo_x < x + patch) & (hi_y > y) & (lo_y < y + patch)
            cut = np.flatnonzero(touching & ~inside & (areas > 0))
            pieces = shapely.intersection(polys[cut], shapely.box(x, y, x + patch, y + patch)) if cut.size else []
            iof = np.zeros(len(gts))
            iof[cut] = shapely.area(pieces) / areas[cut] if cut.size else 0.0
            iof[inside] = 1.0
            kept = []
            piece_of = dict(zip(cut.tolist(), pieces))
            for i in np.flatnonzero(iof >= iof_thr):
                g = gts[i]
                if inside[i]:
                    kept.append(GT(g.label, g.quad - np.tile([x, y], 4), g.difficult))
                    continue
                quad = _clipped_quad(piece_of[int(i)], x, y)
                if quad is not None:
                    kept.append(GT(g.label, quad, TRUNCATED))
            patches.append(Patch(patch_id(image_id, patch, x, y), x, y, patch, patch, kept))
    return patches


def split_image(image_path: str | Path, out_dir: str | Path, gts: Sequence[GT], *, image_id: str | None = None,
                patch: int = 1024, gap: int = 200, iof_thr: float = 0.7, ext: str = ".png") -> list[Patch]:
    """Crop one image into padded patches under ``out_dir/images`` and their labels under ``out_dir/labelTxt``.

    This is the DOTA split layout that mmrotate's DOTA dataset reads. ``image_id`` defaults to the
    image's file stem. Padding is black (0 in every band). Returns the patches written.
    """
    image_path, out_dir = Path(image_path), Path(out_dir)
    image_id = image_id or image_path.stem
    img_dir, label_dir = out_dir / "images", out_dir / "labelTxt"
    img_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    # DOTA scenes reach 20000x20000 px, beyond PIL's decompression-bomb guard; the user named this
    # file explicitly, so the guard is lifted for this one open and restored right after.
    try:
        with pixel_limit(None), Image.open(image_path) as img:
            img.load()
    except OSError as exc:
        raise ConfigError(f"{image_path}: cannot open image ({exc}). Check the path and the file.") from exc
    patches = split_annotations(image_id, img.width, img.height, gts, patch=patch, gap=gap, iof_thr=iof_thr)
    for p in patches:
        canvas = Image.new(img.mode, (p.w, p.h), 0)
        canvas.paste(img.crop((p.x, p.y, min(p.x + p.w, img.width), min(p.y + p.h, img.height))), (0, 0))
        canvas.save(img_dir / f"{p.id}{ext}")
        write_labeltxt(label_dir / f"{p.id}.txt", p.gts)
    return patches


def rotated_nms(quads: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy NMS over quads already in rank order: indices kept (rotated IoU above ``iou_thr`` suppresses)."""
    quads = np.asarray(quads, dtype=np.float64).reshape(-1, 8)
    # The min-area rectangle can reach outside its quad's bounding box, so the axis-aligned
    # prefilter uses the rectangles' bounds; IoU of the rectangles is the "rbox" IoU.
    rects = min_area_rect(quads) if len(quads) else quads
    x0, x1 = rects[:, 0::2].min(1), rects[:, 0::2].max(1)
    y0, y1 = rects[:, 1::2].min(1), rects[:, 1::2].max(1)
    alive = np.ones(len(rects), dtype=bool)
    keep = []
    for i in range(len(rects)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = slice(i + 1, None)
        near = alive[rest] & (x0[rest] <= x1[i]) & (x1[rest] >= x0[i]) & (y0[rest] <= y1[i]) & (y1[rest] >= y0[i])
        cand = np.flatnonzero(near) + i + 1
        if cand.size:
            iou = iou_matrix(rects[i:i + 1], rects[cand], mode="quad")[0]
            alive[cand[iou > iou_thr]] = False
    return np.asarray(keep, dtype=np.int64)


def merge_patch_detections(dets: Detections, *, nms_iou: float = 0.1) -> Detections:
    """Detections keyed by patch id -> detections keyed by original image id, offset back and NMS-merged.

    Every original image that had a patch appears in the result, with ``[]`` when nothing survives.
    Tie order and output order: see the module docstring.
    """
    groups: dict[str, dict[str, list[tuple]]] = {}
    for pid, items in dets.items():
        image_id, x, y = parse_patch_id(pid)
        by_label = groups.setdefault(image_id, {})
        offset = np.tile([float(x), float(y)], 4)
        for k, d in enumerate(items):
            by_label.setdefault(d.label, []).append((-d.score, x, y, pid, k, d.quad + offset, d.score))
    merged: Detections = {}
    for image_id in sorted(groups):
        out: list[Det] = []
        for label in sorted(groups[image_id]):
            rows = sorted(groups[image_id][label], key=lambda r: r[:5])
            keep = rotated_nms(np.array([r[5] for r in rows]), nms_iou)
            out.extend(Det(label, rows[i][5], rows[i][6]) for i in keep)
        merged[image_id] = out
    return merged
