"""Writes a chain's trace: JSON with every step's box (overview, original and map coordinates) and a PNG.

The PNG shows the overview with each zoom window drawn (numbered, in the order the model asked)
and the crops the model received beside it, each labelled with its window in original pixels.
Reads only the ``ChainResult``; must not run models or read images.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from cotrain.files import write_text_atomic
from zoom_chain.controller import ChainResult

COLOURS = ("red", "yellow", "cyan", "magenta", "lime", "orange")


def write_trace(result: ChainResult, out_dir: str | Path, *, stem: str = "trace", thumb: int = 256) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.png`` under ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / f"{stem}.json"
    write_text_atomic(js, json.dumps(result.trace(), indent=2, default=str))
    png = out / f"{stem}.png"
    if result.overview is None:
        return js, png
    ov = result.overview.convert("RGB").copy()
    sx = ov.width / result.image_size[0]
    sy = ov.height / result.image_size[1]
    draw = ImageDraw.Draw(ov)
    zooms = [s for s in result.steps if s.box_original]
    for k, s in enumerate(zooms):
        x0, y0, x1, y1 = s.box_original
        colour = COLOURS[k % len(COLOURS)]
        draw.rectangle([x0 * sx, y0 * sy, max(x0 * sx + 1, x1 * sx), max(y0 * sy + 1, y1 * sy)], outline=colour, width=3)
        draw.text((x0 * sx + 4, y0 * sy + 2), str(k + 1), fill=colour)
    crops = []
    for k, (s, crop) in enumerate(zip(zooms, result.crops)):
        c = crop.convert("RGB").copy()
        c.thumbnail((thumb, thumb))
        crops.append((k, s, c))
    header = 40
    width = ov.width + sum(c.width + 8 for _, _, c in crops) + 8
    height = max([ov.height] + [c.height + 18 for _, _, c in crops]) + header
    canvas = Image.new("RGB", (max(width, 760), height), "white")  # room for the question and answer lines
    canvas.paste(ov, (0, header))
    d = ImageDraw.Draw(canvas)
    d.text((4, 2), f"Q: {' '.join(result.question.split())[:110]}", fill="black")
    d.text((4, 18), f"A: {result.answer[:80]!r}  [{result.status}, {result.visual_tokens} visual tokens, "
                    f"full resolution {result.full_resolution_tokens}]", fill="darkgreen")
    x = ov.width + 8
    for k, s, c in crops:
        canvas.paste(c, (x, header + 16))
        d.text((x, header), f"{k + 1}: {s.box_original}{'' if s.native else ' (downscaled)'}",
               fill=COLOURS[k % len(COLOURS)] if COLOURS[k % len(COLOURS)] != "yellow" else "olive")
        x += c.width + 8
    canvas.save(png)
    return js, png
