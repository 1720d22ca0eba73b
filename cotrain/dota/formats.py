"""DOTA and mmrotate file formats: labelTxt ground truth, Task1 result files, mmrotate 1.x result pickles.

This module owns reading and writing those files into the detection data model (``GT`` / ``Det`` with
quads in ORIGINAL image pixels). Splitting large images into patches and merging patch detections
back live in ``cotrain.dota.split``; scoring lives in ``detection.metrics``. It must not compute IoU or
metrics, and it must not guess class lists: callers pass them.

Formats
-------
* labelTxt (DOTA v1.0 / v1.5 / v2.0): optional header lines ``imagesource:...`` and ``gsd:...``, then
  one object per line ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult``; the difficult flag may be missing
  (then 0). Blank lines are skipped. The image id is the file stem.
* Task1 (DOTA server submission): one file ``Task1_<class>.txt`` per class, lines
  ``image_id score x1 y1 x2 y2 x3 y3 x4 y4``.
* mmrotate 1.x ``tools/test.py --out results.pkl``: a list with one dict per image holding ``img_id``
  or ``img_path`` and ``pred_instances`` = {``bboxes`` (N, 5) [cx, cy, w, h, theta radians],
  ``scores`` (N,), ``labels`` (N,) class indices}, as numpy arrays or torch tensors.

Malformed text lines are skipped and counted: pass a ``ReadReport`` to collect them as
``file:line: reason`` (otherwise one warning per file is logged), or ``strict=True`` to raise
``DotaFormatError`` at the first one.

WARNING: unpickling runs code stored in the file. ``read_mmrotate_pickle`` loads only the path the
user names on the command line; never point it at a file you did not produce or do not trust.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cotrain.dota.types import GT, Det, Detections, GroundTruth
from cotrain.errors import CotrainError
from cotrain.geometry.iou import rboxes_to_quads

log = logging.getLogger(__name__)

HEADER_KEYS = ("imagesource", "gsd")
"""Header keys a DOTA labelTxt file may start with (``key:value``)."""
TASK1_PREFIX = "Task1_"
"""File name prefix of DOTA Task1 (oriented box) result files."""


class DotaFormatError(CotrainError):
    """A DOTA labelTxt or Task1 file (or directory) is malformed; the message names file:line and the fix."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(where + message)


class DetectorResultError(CotrainError):
    """A conventional detector's result file (mmrotate pickle) does not have the expected shape."""


@dataclass
class ReadReport:
    """What a reader saw: counts plus one ``file:line: reason`` entry per skipped line."""

    files: int = 0
    """Files read."""
    objects: int = 0
    """Objects (GT or detections) returned."""
    malformed: list[str] = field(default_factory=list)
    """Skipped lines as ``file:line: reason``."""

    def summary(self) -> str:
        """One line for logs and reports."""
        return f"{self.files} files, {self.objects} objects, {len(self.malformed)} malformed lines skipped"


def _finite_floats(tokens: Sequence[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _skip(problem: str, path: Path, line: int, *, strict: bool, report: ReadReport, fix: str) -> None:
    if strict:
        raise DotaFormatError(f"{problem}. {fix}", path=path, line=line)
    report.malformed.append(f"{path}:{line}: {problem}")


def _warn_if_unreported(report: ReadReport, given: ReadReport | None, before: int, path: Path) -> None:
    # Without a caller-supplied report the skipped lines would vanish silently; say so once per file.
    skipped = len(report.malformed) - before
    if given is None and skipped:
        log.warning("%s: skipped %d malformed line(s), first: %s", path, skipped, report.malformed[before])


# ----------------------------------------------------------------------------------------------
# labelTxt


def _header_key(text: str) -> str | None:
    key, sep, _ = text.partition(":")
    key = key.strip().lower()
    return key if sep and key in HEADER_KEYS else None


def _parse_label_line(tokens: list[str]) -> tuple[GT | None, str]:
    """(object, "") or (None, reason) for one non-blank, non-header labelTxt line."""
    if len(tokens) not in (9, 10):
        return None, (f"{len(tokens)} fields, expected 'x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]' "
                      "(9 or 10 fields)")
    coords = _finite_floats(tokens[:8])
    if coords is None:
        return None, f"coordinates {' '.join(tokens[:8])!r} are not 8 finite numbers"
    label = tokens[8]
    if _is_number(label):
        return None, f"class name {label!r} is a number (too many coordinates on the line?)"
    difficult = 0
    if len(tokens) == 10:
        if not tokens[9].lstrip("-").isdigit():
            return None, f"difficult flag {tokens[9]!r} is not an integer"
        difficult = int(tokens[9])
    return GT(label, np.asarray(coords, dtype=np.float64), difficult), ""


def read_labeltxt(path: str | Path, *, strict: bool = False, report: ReadReport | None = None) -> list[GT]:
    """Objects of one DOTA labelTxt file, in file order; malformed lines are counted in ``report``."""
    path = Path(path)
    rep = report if report is not None else ReadReport()
    before = len(rep.malformed)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DotaFormatError(f"cannot read labelTxt file ({exc}). Check the path.", path=path) from exc
    gts: list[GT] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or _header_key(line) is not None:
            continue
        gt, reason = _parse_label_line(line.split())
        if gt is None:
            _skip(reason, path, lineno, strict=strict, report=rep,
                  fix="Fix or delete the line (DOTA lines are 'x1 y1 ... x4 y4 class difficult')")
            continue
        gts.append(gt)
    rep.files += 1
    rep.objects += len(gts)
    _warn_if_unreported(rep, report, before, path)
    return gts


def read_labeltxt_header(path: str | Path) -> dict[str, str]:
    """The ``key:value`` header lines of a labelTxt file (``imagesource``, ``gsd``), values as written."""
    header: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8-sig", errors="replace").splitlines():
        key = _header_key(raw.strip())
        if key is not None:
            header[key] = raw.strip().partition(":")[2].strip()
    return header


def read_labeltxt_dir(directory: str | Path, *, strict: bool = False,
                      report: ReadReport | None = None) -> GroundTruth:
    """Ground truth of every ``*.txt`` in a labelTxt directory, keyed by file stem, in sorted id order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DotaFormatError("not a directory. Pass the DOTA 'labelTxt' folder (one .txt per image).",
                              path=directory)
    files = sorted(directory.glob("*.txt"))
    if not files:
        raise DotaFormatError("no .txt files. Pass the DOTA 'labelTxt' folder (one .txt per image), "
                              "not its parent.", path=directory)
    return {f.stem: read_labeltxt(f, strict=strict, report=report) for f in files}


def _fmt(value: float) -> str:
    """Shortest text that reads back to the same float; integers without '.0' as DOTA writes them."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def write_labeltxt(path: str | Path, gts: Iterable[GT], header: Mapping[str, object] | None = None) -> None:
    """Write one labelTxt file: optional ``key:value`` header lines, then one object per line."""
    lines = [f"{key}:{value}" for key, value in (header or {}).items()]
    for gt in gts:
        if not gt.label or any(c.isspace() for c in gt.label):
            raise DotaFormatError(f"class name {gt.label!r} is empty or contains whitespace, which the "
                                  "space-separated format cannot hold. Use hyphens (e.g. 'small-vehicle').",
                                  path=path)
        lines.append(" ".join(_fmt(v) for v in gt.quad) + f" {gt.label} {int(gt.difficult)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Task1 result files


def _task1_files(directory: Path, classes: Sequence[str] | None) -> list[tuple[str, Path]]:
    found = {p.name[len(TASK1_PREFIX):-len(".txt")]: p for p in sorted(directory.glob(f"{TASK1_PREFIX}*.txt"))}
    if not found:
        raise DotaFormatError(f"no {TASK1_PREFIX}<class>.txt files. Pass the folder holding the DOTA Task1 "
                              "result files.", path=directory)
    if classes is None:
        return sorted(found.items())
    # write_task1_dir writes a file per class, empty ones included: an empty file of a class the
    # evaluation does not cover carries no detections and is no reason to refuse the folder
    unknown = sorted(c for c in set(found) - set(classes) if found[c].stat().st_size > 0)
    if unknown:
        raise DotaFormatError(f"result files with detections of classes {unknown} that are not in the class list "
                              f"{list(classes)}. Pass the class list of the dataset these results belong to "
                              "(`cotrain eval-det`: --classes).", path=directory)
    # A class with no file has no detections (the DOTA server accepts missing files the same way).
    return [(c, found[c]) for c in classes if c in found]


def read_task1_dir(directory: str | Path, classes: Sequence[str] | None = None, *, strict: bool = False,
                   report: ReadReport | None = None) -> Detections:
    """Detections of every ``Task1_<class>.txt`` in a folder, keyed by image id.

    Images come in sorted id order; within an image, classes come in ``classes`` order (sorted names
    when None) and detections in file order.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DotaFormatError("not a directory. Pass the folder holding Task1_<class>.txt files.",
                              path=directory)
    rep = report if report is not None else ReadReport()
    dets: Detections = {}
    for label, path in _task1_files(directory, classes):
        before = len(rep.malformed)
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        count = 0
        for lineno, raw in enumerate(text.splitlines(), start=1):
            tokens = raw.split()
            if not tokens:
                continue
            values = _finite_floats(tokens[1:]) if len(tokens) == 10 else None
            if values is None:
                hint = " (6 fields is the Task2 horizontal-box format)" if len(tokens) == 6 else ""
                _skip(f"{len(tokens)} fields{hint}, expected 'image_id score x1 y1 x2 y2 x3 y3 x4 y4' with "
                      "finite numbers", path, lineno, strict=strict, report=rep,
                      fix="Fix or delete the line")
                continue
            dets.setdefault(tokens[0], []).append(Det(label, np.asarray(values[1:]), values[0]))
            count += 1
        rep.files += 1
        rep.objects += count
        _warn_if_unreported(rep, report, before, path)
    return {image_id: dets[image_id] for image_id in sorted(dets)}


def write_task1_dir(directory: str | Path, dets: Detections, classes: Sequence[str]) -> list[Path]:
    """Write one ``Task1_<class>.txt`` per class (empty files included, as the DOTA server expects).

    Lines come in sorted image id order, then emitted order; numbers are written so that
    ``read_task1_dir`` gives back the same floats. Returns the written paths.
    """
    directory = Path(directory)
    known = set(classes)
    lines: dict[str, list[str]] = {c: [] for c in classes}
    for image_id in sorted(dets):
        if not image_id or any(c.isspace() for c in image_id):
            raise DotaFormatError(f"image id {image_id!r} is empty or contains whitespace, which Task1 "
                                  "lines cannot hold. Rename the image.", path=directory)
        for det in dets[image_id]:
            if det.label not in known:
                raise DotaFormatError(f"image {image_id!r}: label {det.label!r} is not in the class list "
                                      f"{list(classes)}. Normalise labels first (detection.parse) or pass "
                                      "the full class list.", path=directory)
            coords = " ".join(_fmt(v) for v in det.quad)
            lines[det.label].append(f"{image_id} {_fmt(det.score)} {coords}")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for label in classes:
        path = directory / f"{TASK1_PREFIX}{label}.txt"
        path.write_text("".join(line + "\n" for line in lines[label]), encoding="utf-8")
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------
# mmrotate 1.x result pickles


def _as_array(value, what: str, path: Path) -> np.ndarray:
    # Tensors (and mmdet's box wrappers, which hold one in ``.tensor``) are converted without
    # importing torch here: unpickling them already imported it if they exist.
    value = getattr(value, "tensor", value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any unconvertible object is the same user error
        raise DetectorResultError(f"{path}: {what} is a {type(value).__name__}, not an array. Pass the "
                                  "pickle written by mmrotate 1.x 'tools/test.py --out'.") from exc


def _entry_id(entry: dict, index: int, path: Path) -> str:
    if entry.get("img_id") is not None:
        return str(entry["img_id"])
    if entry.get("img_path"):
        return Path(str(entry["img_path"])).stem
    raise DetectorResultError(f"{path}: entry {index} has neither 'img_id' nor 'img_path' (keys: "
                              f"{sorted(entry)}). Pass the pickle written by mmrotate 1.x 'tools/test.py "
                              "--out', which keeps the image id of every result.")


def read_mmrotate_pickle(path: str | Path, classes: Sequence[str]) -> Detections:
    """Detections from an mmrotate 1.x result pickle, keyed by ``img_id`` (else the stem of ``img_path``).

    ``classes`` is the dataset's class list in mmrotate's label order (e.g. ``DOTA_V1_CLASSES``).
    Images keep the pickle's order; detections keep their order within an image. UNPICKLING RUNS
    CODE: only pass a file you produced.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            results = pickle.load(fh)  # noqa: S301 - the user named this file; see module docstring
    except OSError as exc:
        raise DetectorResultError(f"{path}: cannot read ({exc}). Check the path.") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files fail in many ways
        raise DetectorResultError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc}). Pass the "
                                  "file written by mmrotate 1.x 'tools/test.py --out results.pkl'.") from exc
    if not isinstance(results, list):
        raise DetectorResultError(f"{path}: holds a {type(results).__name__}, expected a list with one dict per "
                                  "image. Pass the file written by mmrotate 1.x 'tools/test.py --out'.")
    dets: Detections = {}
    for index, entry in enumerate(results):
        if isinstance(entry, (list, tuple)):
            raise DetectorResultError(f"{path}: entry {index} is a list of per-class arrays, the mmrotate 0.x "
                                      "format, which carries no image ids. Re-run the test with mmrotate 1.x, "
                                      "or write DOTA Task1 files and use read_task1_dir.")
        if not isinstance(entry, dict):
            raise DetectorResultError(f"{path}: entry {index} is a {type(entry).__name__}, expected a dict with "
                                      "'img_id' and 'pred_instances'.")
        image_id = _entry_id(entry, index, path)
        pred = entry.get("pred_instances")
        if not isinstance(pred, Mapping) and not all(hasattr(pred, k) for k in ("bboxes", "scores", "labels")):
            raise DetectorResultError(f"{path}: entry {index} (image {image_id!r}) has no 'pred_instances' dict "
                                      f"(keys: {sorted(entry)}). Pass a prediction pickle, not an annotation file.")
        get = pred.get if isinstance(pred, Mapping) else (lambda k: getattr(pred, k, None))
        missing = [k for k in ("bboxes", "scores", "labels") if get(k) is None]
        if missing:
            raise DetectorResultError(f"{path}: entry {index} (image {image_id!r}): pred_instances lacks {missing}. "
                                      "Pass the file written by mmrotate 1.x 'tools/test.py --out'.")
        bboxes = _as_array(get("bboxes"), "bboxes", path).astype(np.float64)
        scores = _as_array(get("scores"), "scores", path).astype(np.float64).reshape(-1)
        labels = _as_array(get("labels"), "labels", path).reshape(-1)
        if bboxes.size == 0:
            bboxes = bboxes.reshape(0, 5)
        if bboxes.ndim != 2 or bboxes.shape[1] != 5:
            raise DetectorResultError(f"{path}: entry {index} (image {image_id!r}): bboxes have shape "
                                      f"{tuple(bboxes.shape)}, expected (N, 5) [cx, cy, w, h, theta]. Pass the "
                                      "result of a rotated detector (mmrotate), not a horizontal one.")
        if not len(bboxes) == len(scores) == len(labels):
            raise DetectorResultError(f"{path}: entry {index} (image {image_id!r}): {len(bboxes)} boxes, "
                                      f"{len(scores)} scores, {len(labels)} labels; they must agree. The file is "
                                      "damaged: re-run the test.")
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            bad = int(labels.max() if labels.max() >= len(classes) else labels.min())
            raise DetectorResultError(f"{path}: pickle from a different dataset: {len(classes)} classes expected, "
                                      f"found label {bad} (image {image_id!r}). Pass the class list the detector "
                                      "was trained with (e.g. DOTA_V15_CLASSES has 16).")
        if image_id in dets:
            raise DetectorResultError(f"{path}: image {image_id!r} appears twice (entries {index} and earlier). "
                                      "Pass one test run's pickle; concatenated runs would double-count.")
        quads = rboxes_to_quads(bboxes)
        dets[image_id] = [Det(classes[int(k)], q, s) for q, s, k in zip(quads, scores, labels)]
    return dets
