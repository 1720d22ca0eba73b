"""Land-cover surfaces of the synthetic scenes: cover layout, RGB texture and the infrared rule.

This module owns what the ground looks like: the cover registry (``COVERS``), the scene classes
(``SCENE_CLASSES``: which cover dominates and which objects a scene holds), the cover layout
(Voronoi patches with a dominant cover, a harbour quay, or a free mixture for large images), and the
rendering of each cover to RGB and IR intensity on a coarse canvas. It must not place or draw
objects (``objects.py``), write files or build records (``tasks.py``, ``generate.py``).

Scale: every scene has a ground sample distance of ``GSD_M`` = 0.5 m per pixel; sizes in the
texture code are in metres so an image twice as large shows twice as much ground, not bigger fields.

Surfaces are rendered on a canvas ``scale`` times coarser than the image (``MIN_SCALE``, more
for images larger than ``CANVAS_SIDE`` canvas pixels) and upsampled bilinearly; objects are then painted at
full resolution and a fine grain added, so an 8192 px image costs about as much as a 1024 px one.

Infrared rule (the IR twin is a daytime thermal-infrared-like single channel, 0..255, brighter =
warmer). Each pixel's intensity is the temperature proxy of its surface:

==================  =========  ===================================================
surface             intensity  why
==================  =========  ===================================================
water               ~45        high heat capacity, evaporation: coolest
forest              ~100       transpiration keeps canopy cool: mid
farmland            110-150    green crops ~110, ripe ~140, ploughed soil ~150
bare soil           ~150       dry, sun-heated: mid-bright
concrete            ~165       bright, partly reflective paint/cement
urban roofs, roads  185-220    dark roofs and asphalt absorb sun: bright
asphalt (parking)   ~200       bright; painted lines ~175
==================  =========  ===================================================

Objects (``objects.py``) add: vehicle bodies ~175, plane skins ~150, ship hulls ~110 (water cooled),
tank roofs ~178, courts ~165, and hot spots of 235-250 at engines (vehicles, planes) and funnels
(ships). Sensor model: fixed-pattern noise, a per-column offset (sigma 1.2) like the striping of a
push-broom detector array; no per-pixel noise, which would make the lossless IR files 4x bigger. So, for mean intensities: water < vegetation < bare soil
< roofs/asphalt < engine hot spots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

GSD_M = 0.5
"""Ground sample distance of every synthetic image, metres per pixel."""
MIN_SCALE = 2
"""Surfaces are textured at >= 1 m per canvas pixel: finer texture vanishes at the model's resolution."""
CANVAS_SIDE = 1024
"""Largest canvas side; bigger images get a coarser canvas (an 8192 px image: 8 px per canvas pixel)."""


@dataclass(frozen=True)
class Cover:
    """One land-cover surface."""

    name: str
    """Key used in cover maps, manifests and records."""
    phrase: str
    """Words used in questions and captions ("bare soil")."""
    rgb: tuple[int, int, int]
    """Mean colour in the RGB image."""
    ir: float
    """Mean IR intensity (0..255) under the IR rule of the module docstring."""
    ir_phrase: str
    """How the cover looks in the IR twin, for IR-aware captions."""


COVERS: dict[str, Cover] = {
    "water": Cover("water", "water", (30, 64, 96), 45, "dark, the coolest surface"),
    "forest": Cover("forest", "forest", (40, 82, 42), 100, "mid-gray, cooled by transpiration"),
    "farmland": Cover("farmland", "farmland", (120, 135, 80), 125, "mid-gray with field-by-field tones"),
    "urban": Cover("urban", "urban area", (140, 130, 125), 200, "bright, with sun-heated roofs and roads"),
    "bare_soil": Cover("bare_soil", "bare soil", (180, 148, 108), 150, "moderately bright"),
    "concrete": Cover("concrete", "concrete pavement", (186, 186, 182), 165, "bright"),
    "asphalt": Cover("asphalt", "asphalt", (74, 74, 78), 200, "very bright, hot asphalt"),
}
COVER_NAMES: tuple[str, ...] = tuple(COVERS)
"""Cover names in cover-map index order (the value stored in a cover map is the index here)."""
LAND_COVER_CLASSES = ("water", "forest", "farmland", "urban", "bare_soil")


@dataclass(frozen=True)
class SceneClass:
    """A classification class: which surface dominates and which objects the scene holds."""

    name: str
    """Class label written to classification records."""
    phrase: str
    """Noun phrase for captions ("an airport apron")."""
    dominant: str
    """Cover that takes more than 60% of the image."""
    secondary: tuple[str, ...]
    """Covers that may fill the remaining patches."""
    objects: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Object label -> (min, max) count for a 512x512 image; scaled with the image area."""
    layout: str = "patches"
    """``patches`` (Voronoi patches) or ``harbor`` (water with a quay band and piers)."""


SCENE_CLASSES: dict[str, SceneClass] = {
    "water": SceneClass("water", "a lake", "water", ("forest", "bare_soil", "farmland"),
                        {"ship": (1, 2)}),
    "forest": SceneClass("forest", "a forest", "forest", ("farmland", "water", "bare_soil"),
                         {"large-vehicle": (1, 2), "small-vehicle": (0, 2)}),
    "farmland": SceneClass("farmland", "farmland", "farmland", ("forest", "bare_soil", "urban", "water"),
                           {"large-vehicle": (1, 2), "storage-tank": (0, 2)}),
    "urban": SceneClass("urban", "a residential area", "urban", ("forest", "bare_soil"),
                        {"small-vehicle": (2, 8), "tennis-court": (0, 2)}),
    "bare_soil": SceneClass("bare_soil", "bare land", "bare_soil", ("farmland", "forest", "urban"),
                            {"storage-tank": (1, 4), "large-vehicle": (0, 2)}),
    "airport": SceneClass("airport", "an airport apron", "concrete", ("bare_soil", "farmland"),
                          {"plane": (2, 5), "small-vehicle": (0, 3), "large-vehicle": (0, 2)}),
    "harbor": SceneClass("harbor", "a harbor", "water", ("concrete",),
                         {"ship": (3, 7), "storage-tank": (0, 2)}, layout="harbor"),
    "parking_lot": SceneClass("parking_lot", "a parking lot", "asphalt", ("urban", "forest"),
                              {"small-vehicle": (20, 50), "large-vehicle": (0, 3)}),
}
CLASS_NAMES: tuple[str, ...] = tuple(SCENE_CLASSES)


def canvas_scale(width: int, height: int) -> int:
    """Image pixels per canvas pixel: ``MIN_SCALE``, or more so the canvas side fits ``CANVAS_SIDE``."""
    return max(MIN_SCALE, -(-max(width, height) // CANVAS_SIDE))


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-std value noise on an (h, w) grid whose features are about ``cell`` px wide."""
    if cell <= 1.5:
        return rng.standard_normal((h, w), dtype=np.float32)
    gh, gw = int(np.ceil(h / cell)) + 2, int(np.ceil(w / cell)) + 2
    coarse = rng.standard_normal((gh, gw), dtype=np.float32)
    up = np.asarray(Image.fromarray(coarse).resize((int(gw * cell), int(gh * cell)), Image.BICUBIC))
    up = up[:h, :w]
    # Interpolation shrinks the variance by a cell-dependent amount; renormalise so amplitudes
    # in the renderers mean the same thing at every scale.
    return (up - up.mean()) / (up.std() + 1e-6)


@dataclass
class Canvas:
    """The coarse grid a scene's surfaces are rendered on."""

    h: int
    """Canvas rows."""
    w: int
    """Canvas columns."""
    scale: int
    """Image pixels per canvas pixel."""
    rng: np.random.Generator
    """Generator of this scene's texture draws."""
    options: dict
    """Scene-level structure choices (runway, parking row orientation)."""

    @property
    def px_m(self) -> float:
        """Metres per canvas pixel."""
        return GSD_M * self.scale

    def noise(self, size_m: float) -> np.ndarray:
        return smooth_noise(self.rng, self.h, self.w, size_m / self.px_m)

    def xm(self) -> np.ndarray:
        """Ground x (metres) of canvas pixel centres, shape (1, w)."""
        return ((np.arange(self.w, dtype=np.float32) + 0.5) * self.px_m)[None, :]

    def ym(self) -> np.ndarray:
        """Ground y (metres) of canvas pixel centres, shape (h, 1)."""
        return ((np.arange(self.h, dtype=np.float32) + 0.5) * self.px_m)[:, None]

    def cuts(self, extent_m: float, lo_m: float, hi_m: float) -> np.ndarray:
        """Irregular cut positions (metres) from 0 past ``extent_m``, spaced in [lo_m, hi_m]."""
        n = int(extent_m / lo_m) + 2
        return np.cumsum(self.rng.uniform(lo_m, hi_m, n)).astype(np.float32) - self.rng.uniform(0, lo_m)


def _nearest_cut_distance(coord: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(cuts, coord), 1, len(cuts) - 1)
    return np.minimum(np.abs(coord - cuts[i - 1]), np.abs(cuts[i] - coord))


def _full(c: Canvas, rgb, ir) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast a renderer's result to (h, w, 3) float32 RGB and (h, w) float32 IR."""
    rgb = np.broadcast_to(np.asarray(rgb, np.float32), (c.h, c.w, 3))
    ir = np.broadcast_to(np.asarray(ir, np.float32), (c.h, c.w))
    return rgb, ir


def _jitter(c: Canvas, rgb) -> np.ndarray:
    # Per-scene lighting (brightness) and a slight tint; a larger per-channel spread turns gray
    # concrete pink, and classes must stay apart by colour.
    gain = 1.0 + c.rng.normal(0.0, 0.05) + c.rng.normal(0.0, 0.012, 3)
    return np.asarray(rgb, np.float32) * gain.astype(np.float32)


def _water(c: Canvas):
    n1, n2 = c.noise(40.0), c.noise(6.0)
    v = n1 * 5.0 + n2 * 2.0
    return _full(c, _jitter(c, COVERS["water"].rgb) + v[..., None] * np.float32([1.0, 1.1, 1.2]),
                 COVERS["water"].ir + n1 * 3.0)


def _forest(c: Canvas):
    crowns, patches = c.noise(3.0), c.noise(30.0)
    v = crowns * 13.0 + patches * 7.0
    return _full(c, _jitter(c, COVERS["forest"].rgb) + v[..., None] * np.float32([0.6, 1.0, 0.5]),
                 COVERS["forest"].ir + crowns * 4.0 + patches * 4.0)


# Crop palette: RGB and IR of green, light green, ripe and ploughed fields (IR per the rule).
_FIELDS = np.float32([[72, 122, 52, 110], [120, 150, 78, 115], [188, 172, 98, 140],
                      [134, 104, 72, 150], [96, 136, 60, 112]])


def _farmland(c: Canvas):
    xm, ym = c.xm(), c.ym()
    xc, yc = c.cuts(c.w * c.px_m, 50.0, 150.0), c.cuts(c.h * c.px_m, 50.0, 150.0)
    col, row = np.searchsorted(xc, xm), np.searchsorted(yc, ym)
    n_fields = (len(xc) + 1) * (len(yc) + 1)
    field_id = row * (len(xc) + 1) + col
    kind = c.rng.integers(0, len(_FIELDS), n_fields)[field_id]
    along_x = c.rng.random(n_fields)[field_id] < 0.5
    period = 4.0
    stripes = np.where(along_x, np.sin(2 * np.pi * xm / period), np.sin(2 * np.pi * ym / period))
    base = _FIELDS[kind]
    rgb = base[..., :3] * (1.0 + c.rng.normal(0, 0.03, 3)).astype(np.float32) + (stripes * 6.0)[..., None]
    rgb = rgb + c.noise(8.0)[..., None] * 4.0
    ir = base[..., 3] + stripes * 2.0
    track = np.minimum(_nearest_cut_distance(xm, xc), _nearest_cut_distance(ym, yc)) < max(1.5, c.px_m * 0.6)
    rgb = np.where(track[..., None], np.float32([150, 135, 105]), rgb)
    ir = np.where(track, np.float32(150), ir)
    return _full(c, rgb, ir)


_ROOFS = np.float32([[168, 82, 62, 205], [122, 122, 128, 200], [205, 205, 200, 185],
                     [72, 72, 82, 220], [110, 120, 140, 200], [150, 110, 90, 205]])


def _urban(c: Canvas):
    xm, ym = c.xm(), c.ym()
    road_x, road_y = c.cuts(c.w * c.px_m, 70.0, 130.0), c.cuts(c.h * c.px_m, 70.0, 130.0)
    lot_x, lot_y = c.cuts(c.w * c.px_m, 12.0, 30.0), c.cuts(c.h * c.px_m, 12.0, 30.0)
    n_lots = (len(lot_x) + 1) * (len(lot_y) + 1)
    lot = np.searchsorted(lot_y, ym) * (len(lot_x) + 1) + np.searchsorted(lot_x, xm)
    roof = _ROOFS[c.rng.integers(0, len(_ROOFS), n_lots)[lot]]
    green = (c.rng.random(n_lots) < 0.15)[lot]
    rgb = np.where(green[..., None], np.float32([78, 108, 60]), roof[..., :3])
    ir = np.where(green, np.float32(110), roof[..., 3])
    rgb = rgb + c.noise(4.0)[..., None] * 4.0
    alley = np.minimum(_nearest_cut_distance(xm, lot_x), _nearest_cut_distance(ym, lot_y)) < max(1.0, c.px_m * 0.5)
    rgb = np.where(alley[..., None], np.float32([62, 62, 64]), rgb)
    ir = np.where(alley, np.float32(175), ir)
    half_road = c.rng.uniform(4.0, 7.0)
    road = np.minimum(_nearest_cut_distance(xm, road_x), _nearest_cut_distance(ym, road_y)) < half_road
    rgb = np.where(road[..., None], np.float32([92, 92, 95]), rgb)
    ir = np.where(road, np.float32(205), ir)
    return _full(c, rgb, ir)


def _bare_soil(c: Canvas):
    n1, n2, n3 = c.noise(60.0), c.noise(10.0), c.noise(2.0)
    v = n1 * 10.0 + n2 * 6.0 + n3 * 4.0
    return _full(c, _jitter(c, COVERS["bare_soil"].rgb) + v[..., None] * np.float32([1.0, 0.9, 0.8]),
                 COVERS["bare_soil"].ir + n1 * 5.0 + n2 * 3.0)


def _concrete(c: Canvas):
    xm, ym = c.xm(), c.ym()
    rgb = _jitter(c, COVERS["concrete"].rgb) + c.noise(20.0)[..., None] * 3.0
    ir = COVERS["concrete"].ir + c.noise(20.0) * 2.0
    if c.px_m <= 1.5:  # slab joints only where a pixel is finer than the 7.5 m slab
        joint = (np.mod(xm, 7.5) < c.px_m) | (np.mod(ym, 7.5) < c.px_m)
        rgb = rgb - joint[..., None].astype(np.float32) * 14.0
    runway = c.options.get("runway")
    if runway is not None:
        horizontal, centre_frac = runway
        across = (ym if horizontal else xm) - centre_frac * (c.h if horizontal else c.w) * c.px_m
        along = xm if horizontal else ym
        strip = np.abs(across) < 22.5
        paint = strip & (((np.abs(across) < max(0.6, c.px_m * 0.5)) & (np.mod(along, 60.0) < 30.0))
                         | (np.abs(np.abs(across) - 21.0) < max(0.6, c.px_m * 0.5)))
        rgb = np.where(strip[..., None], np.float32([64, 64, 66]), rgb)
        rgb = np.where(paint[..., None], np.float32([228, 228, 224]), rgb)
        ir = np.where(strip, np.float32(205), ir)
        ir = np.where(paint, np.float32(175), ir)
    return _full(c, rgb, ir)


def _asphalt(c: Canvas):
    xm, ym = c.xm(), c.ym()
    rgb = _jitter(c, COVERS["asphalt"].rgb) + c.noise(15.0)[..., None] * 3.0
    ir = COVERS["asphalt"].ir + c.noise(15.0) * 2.0
    rows_along_x = c.options.get("parking_rows_along_x", True)
    across, along = (ym, xm) if rows_along_x else (xm, ym)
    # Double rows of 5 m stalls (2.5 m wide) separated by 7 m aisles.
    in_stall_row = np.mod(across, 17.0) < 10.0
    line = in_stall_row & (np.mod(along, 2.5) < max(0.3, min(c.px_m, 1.0)))
    # A 0.1 m paint line covers a fraction of a canvas pixel: blend instead of painting it solid.
    blend = np.float32(min(1.0, 0.35 / c.px_m))
    rgb = np.where(line[..., None], rgb + (np.float32([215, 215, 210]) - rgb) * blend, rgb)
    ir = np.where(line, ir + (np.float32(175) - ir) * blend, ir)
    return _full(c, rgb, ir)


COVER_RENDERERS: dict[str, Callable[[Canvas], tuple[np.ndarray, np.ndarray]]] = {
    "water": _water, "forest": _forest, "farmland": _farmland, "urban": _urban,
    "bare_soil": _bare_soil, "concrete": _concrete, "asphalt": _asphalt,
}
assert set(COVER_RENDERERS) == set(COVERS)


def voronoi_cells(rng: np.random.Generator, h: int, w: int, n_cells: int) -> np.ndarray:
    """(h, w) int map of ``n_cells`` Voronoi cells with wobbly (noise-warped) borders."""
    g = max(1, -(-max(h, w) // 256))  # compute on a <=256 px grid, then repeat
    gh, gw = -(-h // g), -(-w // g)
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    amp = 0.06 * max(gh, gw)
    yy = yy + smooth_noise(rng, gh, gw, max(gh, gw) / 6) * amp
    xx = xx + smooth_noise(rng, gh, gw, max(gh, gw) / 6) * amp
    sy, sx = rng.uniform(0, gh, n_cells), rng.uniform(0, gw, n_cells)
    d2 = (yy[None] - sy[:, None, None]) ** 2 + (xx[None] - sx[:, None, None]) ** 2
    cells = np.argmin(d2, axis=0)
    return np.repeat(np.repeat(cells, g, axis=0), g, axis=1)[:h, :w]


def patch_layout(rng: np.random.Generator, h: int, w: int, dominant: str, secondary: tuple[str, ...],
                 min_fraction: float) -> np.ndarray:
    """Cover map where ``dominant`` keeps at least ``min_fraction`` of the area, the rest in patches."""
    cells = voronoi_cells(rng, h, w, int(rng.integers(5, 12)))
    area = np.bincount(cells.ravel(), minlength=cells.max() + 1) / cells.size
    cover_of_cell = np.full(len(area), COVER_NAMES.index(dominant), np.uint8)
    left = 1.0
    for cell in rng.permutation(len(area)):
        if secondary and left - area[cell] >= min_fraction:
            cover_of_cell[cell] = COVER_NAMES.index(secondary[int(rng.integers(len(secondary)))])
            left -= area[cell]
    return cover_of_cell[cells]


def harbor_layout(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Water with a concrete quay along one edge and 1-3 piers reaching into the water."""
    cover = np.full((h, w), COVER_NAMES.index("water"), np.uint8)
    concrete = COVER_NAMES.index("concrete")
    edge = int(rng.integers(4))  # 0 top, 1 bottom, 2 left, 3 right
    view = cover if edge < 2 else cover.T  # work as if the quay were at the top or bottom
    rows, cols = view.shape
    depth = int(rows * rng.uniform(0.16, 0.26))
    quay = slice(0, depth) if edge % 2 == 0 else slice(rows - depth, rows)
    view[quay, :] = concrete
    pier_w = max(2, int(rng.uniform(12.0, 20.0) / (GSD_M * scale)))
    for _ in range(int(rng.integers(1, 4))):
        c0 = int(rng.integers(0, max(1, cols - pier_w)))
        length = int(rows * rng.uniform(0.1, 0.22))
        span = slice(depth, depth + length) if edge % 2 == 0 else slice(rows - depth - length, rows - depth)
        view[span, c0:c0 + pier_w] = concrete
    return cover


def mixture_layout(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Cover map for large images: many patches, every cover present (so every object has a surface)."""
    cells = voronoi_cells(rng, h, w, 40)
    area = np.bincount(cells.ravel(), minlength=40)
    order = np.argsort(-area, kind="stable")
    cover_of_cell = rng.integers(0, len(COVER_NAMES), 40).astype(np.uint8)
    cover_of_cell[order[:len(COVER_NAMES)]] = rng.permutation(len(COVER_NAMES))
    return cover_of_cell[cells]


def render_surfaces(cover_map: np.ndarray, scale: int, rng: np.random.Generator,
                    options: dict) -> tuple[np.ndarray, np.ndarray]:
    """RGB (h, w, 3) uint8 and IR (h, w) uint8 of the cover map, on the canvas grid."""
    h, w = cover_map.shape
    canvas = Canvas(h, w, scale, rng, options)
    rgb = np.zeros((h, w, 3), np.float32)
    ir = np.zeros((h, w), np.float32)
    for idx in np.unique(cover_map):
        c_rgb, c_ir = COVER_RENDERERS[COVER_NAMES[idx]](canvas)
        mask = cover_map == idx
        np.copyto(rgb, c_rgb, where=mask[..., None])
        np.copyto(ir, c_ir, where=mask)
    return np.clip(rgb, 0, 255).astype(np.uint8), np.clip(ir, 0, 255).astype(np.uint8)


def cover_fractions(cover_map: np.ndarray) -> dict[str, float]:
    """Share of the image area of every cover present, largest first, rounded to 4 decimals."""
    counts = np.bincount(cover_map.ravel(), minlength=len(COVER_NAMES)) / cover_map.size
    order = np.argsort(-counts, kind="stable")
    return {COVER_NAMES[i]: round(float(counts[i]), 4) for i in order if counts[i] > 0}


def upsample(canvas_img: np.ndarray, width: int, height: int) -> Image.Image:
    """PIL image of the canvas array resized bilinearly to the full image size."""
    img = Image.fromarray(canvas_img)
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return img


def full_res_cover_map(cover_map: np.ndarray, scale: int, width: int, height: int) -> np.ndarray:
    """The canvas cover map repeated to image pixels (nearest), shape (height, width)."""
    return np.repeat(np.repeat(cover_map, scale, axis=0), scale, axis=1)[:height, :width]
