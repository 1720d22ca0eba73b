"""DOTA v1.0 / v1.5 labelTxt + images -> canonical detection records, optionally split into patches.

Owns the mapping of a DOTA split folder (``labelTxt/*.txt`` + ``images/*.png``) to one detection
record per image (quads in original pixels, DOTA vertex order kept, difficult flag kept) or, with
``split_patches``, one record per 1024 px patch (gap 200, objects kept when IoF >= 0.7, objects cut
by a patch border clipped and marked difficult 2, patch ids ``<orig>__1024__<x>___<y>``, patch
images written padded under ``patch_dir/images``). Parsing the labelTxt format and the patch rules
are ``cotrain.dota.formats.read_labeltxt`` and ``cotrain.dota.split.split_image``; this module must not
re-implement them, and it must not compute metrics.
"""

from __future__ import annotations

from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    clean_box,
    find_image,
    image_size,
    read_id_list,
    read_utf8,
    relative_image_path,
)
from cotrain.dota.formats import HEADER_KEYS, ReadReport, read_labeltxt
from cotrain.dota.split import split_image
from cotrain.dota.types import DOTA_V1_CLASSES, DOTA_V15_CLASSES, GT
from cotrain.errors import CotrainError

DOTA_CLASSES = {"1.0": DOTA_V1_CLASSES, "1.5": DOTA_V15_CLASSES}
"""Class list per DOTA version (official order)."""
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""Image file extensions tried for a label file's stem, in this order (DOTA ships PNG)."""


def _object_lines(text: str, malformed: set[int]) -> list[int]:
    """Line numbers of the lines read_labeltxt turned into objects (same skipping rules, same order)."""
    lines = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        key, sep, _ = line.partition(":")
        if not line or (sep and key.strip().lower() in HEADER_KEYS) or lineno in malformed:
            continue
        lines.append(lineno)
    return lines


def _read_objects(label_path: Path, classes: tuple[str, ...], width: int, height: int,
                  report: ConvertReport) -> list[GT] | None:
    """Clean objects of one labelTxt file (bad lines/objects counted), or None when the file is unusable."""
    try:
        text = read_utf8(label_path)
    except ConvertError as exc:
        report.skip(exc.reason, str(exc))
        return None
    rr = ReadReport()
    gts = read_labeltxt(label_path, report=rr)
    malformed = set()
    for msg in rr.malformed:
        # ReadReport entries are "<path>:<line>: <reason>"; the line number locates the object lines.
        malformed.add(int(msg[len(str(label_path)) + 1:].split(":", 1)[0]))
        report.skip("malformed_line", f"{msg}. Fix or delete the line (x1 y1 ... x4 y4 class difficult)")
    linenos = _object_lines(text, malformed)
    kept = []
    for gt, lineno in zip(gts, linenos):
        where = f"{label_path}:{lineno}"
        if gt.label not in classes:
            report.skip("unknown_class", f"{where}: class {gt.label!r} is not a DOTA v{_version_of(classes)} class. "
                        "Pick the right --version or fix the label")
            continue
        if gt.difficult not in (0, 1, 2):
            report.skip("bad_difficult", f"{where}: difficult flag {gt.difficult} is not 0, 1 or 2. Fix the line")
            continue
        quad = clean_box(gt.quad.tolist(), "quad", width, height, where, report)
        if quad is not None:
            kept.append(GT(gt.label, quad, gt.difficult))
    return kept


def _version_of(classes: tuple[str, ...]) -> str:
    return next(v for v, c in DOTA_CLASSES.items() if c == classes)


def _objects(gts: list[GT]) -> list[dict]:
    return [{"label": g.label, "quad": [int(x) if float(x).is_integer() else float(x) for x in g.quad],
             "difficult": g.difficult} for g in gts]


def _patch_objects(gts: list[GT], size: int, where: str, report: ConvertReport) -> list[dict]:
    """Patch objects clamped into the patch.

    The split replaces a cut object by the min-area rectangle of its visible part, which may poke a
    few pixels past the window edge; clamping keeps the object (counted as 'patch_box_clamped').
    """
    out = []
    for i, g in enumerate(gts):
        q = [min(max(float(x), 0.0), float(size)) for x in g.quad]
        if q != [float(x) for x in g.quad]:
            report.fixed["patch_box_clamped"] += 1
        q = clean_box(q, "quad", size, size, f"{where}: object {i} ({g.label})", report)
        if q is not None:
            out.append({"label": g.label, "quad": q, "difficult": g.difficult})
    return out


def convert_dota(label_dir: str | Path, image_dir: str | Path, out_jsonl: str | Path, *,
                 image_root: str | Path | None = None, version: str = "1.0", split: str | Path | None = None,
                 split_patches: bool = False, patch_dir: str | Path | None = None, patch: int = 1024,
                 gap: int = 200, iof_thr: float = 0.7, keep_empty: bool = True,
                 on_bad: str = "skip") -> ConvertReport:
    """Convert a DOTA split (``labelTxt`` dir + images dir) into detection records.

    ``split``: optional id-list file (one image id per line) restricting the images converted.
    ``image_root``: root the record image paths are relative to (default: ``image_dir``, or
    ``patch_dir`` with ``split_patches``). With ``split_patches`` patch images and their labelTxt
    are written under ``patch_dir`` (``images/``, ``labelTxt/``) and one record per patch is written;
    ``keep_empty=False`` drops patches without objects. Images without a label file are ignored.
    """
    if version not in DOTA_CLASSES:
        raise ConvertError(f"DOTA version {version!r} is unknown; use one of {', '.join(DOTA_CLASSES)}",
                           reason="bad_option")
    classes = DOTA_CLASSES[version]
    label_dir, image_dir = Path(label_dir), Path(image_dir)
    if not label_dir.is_dir():
        raise ConvertError(f"{label_dir}: not a directory. Pass the DOTA 'labelTxt' folder", reason="bad_option")
    if split_patches and patch_dir is None:
        raise ConvertError("split_patches needs patch_dir: the folder the patch images are written to",
                           reason="bad_option")
    root = Path(image_root) if image_root is not None else Path(patch_dir if split_patches else image_dir)
    report = ConvertReport(f"DOTA v{version} {label_dir}", on_bad=on_bad)
    files = sorted(label_dir.glob("*.txt"))
    if split is not None:
        wanted = read_id_list(split)
        by_stem = {f.stem: f for f in files}
        files = []
        for image_id in wanted:
            if image_id in by_stem:
                files.append(by_stem[image_id])
            else:
                report.skip("label_missing", f"{split}: id {image_id!r} has no {label_dir}/{image_id}.txt. "
                            "Check the split file matches this labelTxt folder")
    with RecordWriter(out_jsonl, report) as writer:
        for label_path in files:
            image_path = find_image(label_path.stem, [image_dir], IMAGE_EXTS)
            if image_path is None:
                report.skip("image_missing", f"{label_path}: no image {label_path.stem}{{{','.join(IMAGE_EXTS)}}} "
                            f"in {image_dir}. Add the image or remove the label file")
                continue
            try:
                width, height = image_size(image_path)
            except ConvertError as exc:
                report.skip(exc.reason, f"{label_path}: {exc}")
                continue
            gts = _read_objects(label_path, classes, width, height, report)
            if gts is None:
                continue
            if not split_patches:
                try:
                    rel = relative_image_path(image_path, root)
                except ConvertError as exc:
                    report.skip(exc.reason, str(exc))
                    continue
                writer.write({"id": label_path.stem, "task": "detection",
                              "images": [{"path": rel, "modality": "rgb", "width": width, "height": height}],
                              "objects": _objects(gts), "classes": list(classes)}, str(label_path))
                continue
            try:
                patches = split_image(image_path, patch_dir, gts, image_id=label_path.stem, patch=patch, gap=gap,
                                      iof_thr=iof_thr)
            except CotrainError as exc:
                report.skip("image_unreadable", f"{image_path}: cannot split ({exc})")
                continue
            for p in patches:
                objects = _patch_objects(p.gts, patch, f"{label_path} patch {p.id}", report)
                if not objects and not keep_empty:
                    continue
                try:
                    rel = relative_image_path(Path(patch_dir) / "images" / f"{p.id}.png", root)
                except ConvertError as exc:
                    report.skip(exc.reason, str(exc))
                    continue
                writer.write({"id": p.id, "task": "detection",
                              "images": [{"path": rel, "modality": "rgb", "width": p.w, "height": p.h}],
                              "objects": objects, "classes": list(classes)}, f"{label_path} patch {p.id}")
    return report
