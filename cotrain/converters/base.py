"""What every converter shares: ``ConvertReport`` (counts, skips by reason with a few ``file:line``
examples), the ``on_bad`` policy, header-only image sizes, box clean-up (clip within 1 px, else
skip), the atomic JSONL writer that validates every record, and ``run_converter`` for CLIs.
The contract of a converter is in the package docstring (``cotrain.converters``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from cotrain.errors import CotrainError, RecordError
from cotrain.pixels import pixel_limit
from cotrain.geometry.quads import order_quad
from cotrain.records import BOX_TOLERANCE_PX, validate_record

ON_BAD = ("skip", "raise")
MAX_EXAMPLES = 3
"""Example messages kept per skip reason in a report."""


class ConvertError(CotrainError):
    """A source annotation could not be converted (raised with ``on_bad="raise"``, else counted).

    ``reason`` is a short stable key (``"image_missing"``, ``"box_outside"``, ...) also used in reports.
    """

    def __init__(self, message: str, *, reason: str):
        self.reason = reason
        super().__init__(message)


@dataclass
class ConvertReport:
    """What one conversion did: records written, skips by reason, and a few example messages."""

    source: str
    """The source format and input (for the printed header)."""
    out: str = ""
    """The JSONL file written."""
    on_bad: str = "skip"
    """'skip' counts bad inputs; 'raise' stops at the first one with ConvertError."""
    written: int = 0
    """Records written."""
    skipped: Counter = field(default_factory=Counter)
    """Skipped items by reason key (an item is a record, an object, a line: see the reason)."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Up to MAX_EXAMPLES messages per reason, each naming file and line/element."""
    fixed: Counter = field(default_factory=Counter)
    """Repairs that kept an item (e.g. 'box_clipped': a box within 1 px outside the image)."""
    ignored: Counter = field(default_factory=Counter)
    """Items left out by design, never an error (e.g. 'no_description', 'inactive')."""

    def __post_init__(self) -> None:
        if self.on_bad not in ON_BAD:
            raise ConvertError(f"on_bad={self.on_bad!r}: use 'skip' (count bad inputs) or 'raise' (stop at the "
                               "first one)", reason="bad_option")

    def skip(self, reason: str, message: str) -> None:
        """Count one bad input (or raise ConvertError under on_bad='raise')."""
        if self.on_bad == "raise":
            raise ConvertError(message, reason=reason)
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES:
            kept.append(message)

    def summary(self) -> str:
        """Multi-line text for CLIs and logs."""
        lines = [f"{self.source}: wrote {self.written} records to {self.out}"]
        for reason, n in sorted(self.skipped.items()):
            lines.append(f"  skipped {n} x {reason}")
            lines.extend(f"    e.g. {m}" for m in self.examples.get(reason, []))
        for what, n in sorted(self.fixed.items()):
            lines.append(f"  fixed {n} x {what}")
        for what, n in sorted(self.ignored.items()):
            lines.append(f"  ignored {n} x {what}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# images and paths


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header without decoding pixels; ConvertError when unreadable.

    Reasons: ``image_missing`` (no such file), ``image_unreadable`` (not an image PIL can identify).
    """
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: image not found. Check the image directory or drop the annotation",
                           reason="image_missing")
    # Remote-sensing scenes (DOTA reaches 20000x20000) exceed PIL's decompression-bomb guard, which
    # fires in open(); reading the header decodes nothing, so the guard is lifted for this call only.
    try:
        with pixel_limit(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # header quirks (EXIF, TIFF tags) do not matter for a size
            with Image.open(path) as img:
                return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ConvertError(f"{path}: not a readable image ({exc}). Replace the file or drop the annotation",
                           reason="image_unreadable") from None


def find_image(stem: str, dirs: Sequence[str | Path], exts: Sequence[str]) -> Path | None:
    """The first ``<dir>/<stem><ext>`` that exists, searching dirs then extensions in the given order."""
    for d in dirs:
        for ext in exts:
            p = Path(d) / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def relative_image_path(path: str | Path, image_root: str | Path) -> str:
    """``path`` relative to ``image_root`` in POSIX form; ConvertError when it lies outside the root."""
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(image_root))
    except ValueError:
        raise ConvertError(f"{path} is not under image_root {image_root}. Pass an image_root that contains "
                           "the image directory", reason="image_outside_root") from None
    return rel.as_posix()


def read_utf8(path: str | Path) -> str:
    """A text file's content; ConvertError(reason 'not_utf8') naming the byte offset when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConvertError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}). "
                           "Re-encode the file as UTF-8", reason="not_utf8") from None


# ----------------------------------------------------------------------------------------------
# boxes


def clean_box(values: Sequence[float], kind: str, width: int, height: int, where: str,
              report: ConvertReport) -> list[float] | None:
    """A box (hbb or quad, original pixels) checked against its image, or None after a counted skip.

    NaN/inf -> ``box_nan``; more than ``BOX_TOLERANCE_PX`` outside the image -> ``box_outside``;
    within it -> clipped to the image and counted in ``report.fixed['box_clipped']``; zero area
    (after clipping) -> ``box_zero_area``. Quads keep their vertex order (DOTA's first vertex is
    meaningful for some classes); the area test uses the reordered outline so bow-ties are not zero.
    """
    v = [float(x) for x in values]
    if not all(math.isfinite(x) for x in v):
        report.skip("box_nan", f"{where}: coordinate is NaN or infinite: {values!r}. Fix or delete the annotation")
        return None
    t = BOX_TOLERANCE_PX
    xs, ys = v[0::2], v[1::2]
    if min(xs) < -t or max(xs) > width + t or min(ys) < -t or max(ys) > height + t:
        report.skip("box_outside", f"{where}: box {v!r} lies outside the {width}x{height} image by more than "
                    f"{t:g} px. Check the annotation belongs to this image")
        return None
    clipped = [min(max(x, 0.0), float(width)) if i % 2 == 0 else min(max(x, 0.0), float(height))
               for i, x in enumerate(v)]
    if clipped != v:
        report.fixed["box_clipped"] += 1
    if kind == "hbb":
        area = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1])
        ok = clipped[2] > clipped[0] and clipped[3] > clipped[1]
    else:
        q = order_quad(clipped)
        area = 0.5 * abs(sum(q[i] * q[(i + 3) % 8] - q[(i + 2) % 8] * q[i + 1] for i in range(0, 8, 2)))
        ok = area > 0.0
    if not ok:
        report.skip("box_zero_area", f"{where}: box {v!r} has zero area (or x2<=x1 / y2<=y1). Fix or delete "
                    "the annotation")
        return None
    return [int(x) if x.is_integer() else x for x in clipped]


# ----------------------------------------------------------------------------------------------
# output


class RecordWriter:
    """Writes validated records to ``<out>.tmp`` and renames it to ``out`` on a clean exit.

    Every record goes through ``cotrain.records.validate_record``; a failing one is a counted skip
    (``invalid_record``) so a converter bug can never produce a file training rejects. Duplicate
    ids are skipped (``duplicate_id``). On an exception the temp file is removed and ``out`` is
    left as it was.
    """

    def __init__(self, out_jsonl: str | Path, report: ConvertReport):
        self.out = Path(out_jsonl)
        self.tmp = self.out.with_name(self.out.name + ".tmp")
        self.report = report
        self.report.out = str(self.out)
        self._ids: set[str] = set()
        self._fh = None

    def __enter__(self) -> "RecordWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.tmp, "w", encoding="utf-8")
        return self

    def write(self, record: dict, where: str) -> bool:
        """Validate and write one record; False (after a counted skip) when it is rejected."""
        try:
            validate_record(record)
        except RecordError as exc:
            self.report.skip("invalid_record", f"{where}: {exc}")
            return False
        if record["id"] in self._ids:
            self.report.skip("duplicate_id", f"{where}: id {record['id']!r} already written. Make source ids "
                             "unique (e.g. convert splits into separate files)")
            return False
        self._ids.add(record["id"])
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.report.written += 1
        return True

    def __exit__(self, exc_type, exc, tb) -> None:
        self._fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.out)
        else:
            self.tmp.unlink(missing_ok=True)


def read_id_list(path: str | Path) -> list[str]:
    """Ids of a split file (one per line, blank lines ignored), e.g. DIOR's ImageSets/Main/test.txt."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: split file not found. Pass a text file with one id per line",
                           reason="split_missing")
    return [s.strip() for s in read_utf8(path).splitlines() if s.strip()]


def run_converter(convert, *args, **kwargs) -> int:
    """Run one converter for a CLI and print its report; the exit code is 0 when records were
    written, 1 when none were, 2 with the error message on bad input."""
    import sys

    try:
        report = convert(*args, **kwargs)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.written else 1
