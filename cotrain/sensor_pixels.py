"""Pixels for the sensor branch: band images, and patch rows over the model's channel layout.

The layout and what fills each channel are in ``cotrain.model.sensor_branch``. Here:

- ``BandImage``: an ``ms`` / ``sar`` image of a ``sensor_branch`` dataset at its target size. It
  holds its composite (8-bit, PIL) and its bands, z-scored by the dataset's statistics (invalid
  pixels 0). It has ``size`` / ``width`` / ``height`` like a PIL image, so token counting is unchanged.
- ``patch_rows``: (C, H, W) float planes -> the (patches, C * T * P * P) rows of the Qwen processors:
  - the still image is repeated T times;
  - the patch order is merge-window-major;
  - each row is channel-major, then time, then pixel.
  A test checks it against the transformers image processor.
- ``layout_pixels``: one image (PIL or ``BandImage``) -> its rows over the whole layout.

Bands are resampled to the target size bilinearly on float32 (PIL ``F`` mode), like the 20 m bands
onto the 10 m grid (``cotrain.sensors``). The composite uses bicubic, as every RGB image does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cotrain.errors import BadRecordError, ConfigError


@dataclass
class BandImage:
    composite: Image.Image
    bands: np.ndarray
    """(n, H, W) float32 z-scores at the composite's size."""
    names: tuple[str, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.composite.size

    @property
    def width(self) -> int:
        return self.composite.width

    @property
    def height(self) -> int:
        return self.composite.height


_STATS: dict[tuple, dict] = {}


def statistics(path: str | Path) -> dict[str, dict]:
    """The band statistics file ``path`` (``cotrain sensors stats``), read once per process and version of the
    file (its size and modification time): a file rewritten in the same process is read again."""
    from cotrain.sensors import read_statistics

    resolved = Path(path).resolve()
    try:
        st = resolved.stat()
        key = (str(resolved), st.st_size, st.st_mtime_ns)
    except OSError:
        return read_statistics(path)  # its error names the missing file and the command that writes it
    if key not in _STATS:
        _STATS[key] = read_statistics(path)
    return _STATS[key]


def open_band_image(img: dict, record_id: str, *, target_wh: tuple[int, int], bands: list[str], stats: str,
                    composite: str | None = None) -> BandImage:
    """An ms / sar entry (``abs_path`` / ``band_files`` resolved) as a ``BandImage`` of size ``target_wh``."""
    from cotrain.images import open_entry
    from cotrain.sensors import normalise, read_bands

    rgb = open_entry(img, record_id, target_wh=target_wh, composite=composite)
    if not bands:  # an image of the branch's dataset with none of its bands (e.g. S2 bands named, an S1 image)
        return BandImage(rgb, np.zeros((0, target_wh[1], target_wh[0]), np.float32), ())
    read = read_bands({**img, "path": img["abs_path"]}, ".", bands, rid=record_id)
    z = normalise(read, statistics(stats))
    w, h = target_wh
    if z.shape[1:] != (h, w):
        z = np.stack([np.asarray(Image.fromarray(p, mode="F").resize((w, h), Image.BILINEAR)) for p in z])
    return BandImage(rgb, z.astype(np.float32), tuple(read.bands))


def open_pixels(img: dict, record_id: str, *, target_wh: tuple[int, int]):
    """An image entry at ``target_wh``: a ``BandImage`` when its dataset feeds it through the sensor branch
    (the entry carries ``branch: {bands, stats}``), else the 8-bit RGB PIL image of ``open_entry``."""
    from cotrain.images import open_entry

    branch = img.get("branch")
    if not branch or img.get("modality") not in ("ms", "sar"):
        return open_entry(img, record_id, target_wh=target_wh, composite=img.get("composite"))
    own = set(img.get("bands") or img.get("band_files") or ())
    bands = [b for b in branch["bands"] if b in own]
    return open_band_image(img, record_id, target_wh=target_wh, bands=bands, stats=branch["stats"],
                           composite=img.get("composite"))


def patch_rows(planes: np.ndarray | torch.Tensor, patch: int, temporal: int, merge: int) -> torch.Tensor:
    """(gh * gw, C * T * P * P) rows of (C, H, W) planes, in the Qwen image processors' order."""
    x = torch.as_tensor(planes, dtype=torch.float32)
    c, h, w = x.shape
    gh, gw = h // patch, w // patch
    if gh * patch != h or gw * patch != w or gh % merge or gw % merge:
        raise ValueError(f"planes of {h} x {w} do not tile into {patch}-pixel patches in {merge} x {merge} windows")
    x = x.unsqueeze(0).expand(temporal, c, h, w)
    x = x.reshape(temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(2, 5, 3, 6, 1, 0, 4, 7)  # (gh/m, gw/m, m, m, C, T, P, P)
    return x.reshape(gh * gw, c * temporal * patch * patch)


def _rgb_planes(im: Image.Image, mean, std) -> np.ndarray:
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return ((a - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)


def layout_pixels(image, layout: tuple[str, ...], image_processor, record_id: str = "?") -> torch.Tensor:
    """The patch rows of one image over ``layout`` (R, G, B, then band channels; absent ones 0)."""
    ip = image_processor
    rgb = image.composite if isinstance(image, BandImage) else image
    planes = np.zeros((len(layout), rgb.height, rgb.width), np.float32)
    planes[:3] = _rgb_planes(rgb, ip.image_mean, ip.image_std)
    if isinstance(image, BandImage):
        for name, plane in zip(image.names, image.bands):
            if name not in layout:
                raise BadRecordError(f"record {record_id!r}: band {name} has no channel in the model (its channels: "
                                     f"{', '.join(layout)})", reason="band_channel", record_id=record_id)
            planes[layout.index(name)] = plane
    return patch_rows(planes, ip.patch_size, ip.temporal_patch_size, ip.merge_size)


def check_statistics(bands: list[str], stats: str, where: str) -> None:
    """A statistics file that is missing or lacks one of ``bands`` is an error naming it and the fix."""
    if not Path(stats).is_file():
        raise ConfigError(f"{where}: sensor_branch.stats={stats!r} is not a file; compute the per-band statistics "
                          "with: cotrain sensors stats --records TRAIN.jsonl --image-root ROOT --modality ms|sar "
                          "--out STATS.json")
    missing = [b for b in bands if b not in statistics(stats)]
    if missing:
        raise ConfigError(f"{where}: {stats} has no statistics for band(s) {', '.join(missing)}; recompute it with "
                          f"--bands {','.join(bands)}")
