"""FusionRS-style RGB / infrared / caption triplets -> three kinds of captioning records.

No public specification of the FusionRS annotation file could be found, so two documented
layouts are read (a source that differs is a one-line reshaping away from either):

1. **Entry list** (``.json`` list or ``.jsonl``, one entry per line), paths relative to ``image_root``
   (default: the file's folder)::

       {"id": "0001", "rgb": "rgb/0001.jpg", "ir": "ir/0001.png",
        "captions": ["...", "..."],          # or "caption": "..." (used for every kind)
        "rgb_captions": [...], "ir_captions": [...], "dual_captions": [...],   # optional, per kind
        "split": "train"}                     # optional; filtered by ``split=``

2. **Folder**: ``root/rgb/<name>``, ``root/ir/<name>`` (the IR file may have another image
   extension than the RGB one) and ``root/captions.json`` mapping ``<name>`` (the RGB file name
   or its stem) to a caption string, a list, or an object with the entry keys above.

Each triplet gives up to three records (``kinds``), ids ``<id>#rgb``, ``<id>#ir``, ``<id>#dual``:

* ``rgb``  : the RGB image, ``caption_style: "scene"``, captions = ``rgb_captions`` or ``captions``;
* ``ir``   : the IR image (modality ``ir``), ``caption_style: "ir_aware"``, ``ir_captions`` or ``captions``;
* ``dual`` : both images (RGB first), ``caption_style: "ir_aware"`` when ``dual_captions`` or
  ``ir_captions`` exist (the text then speaks about thermal cues), else ``"scene"``.
* ``ir_original`` (not written by default; the ``original`` supervision of FusionRS tuning): the IR
  image with the original captions (``rgb_captions`` or ``captions``), ``caption_style: "scene"``, id
  ``<id>#ir_original``.
* ``triplet`` (not written by default; contrastive training): task ``triplet``, both images,
  ``captions`` = ``rgb_captions`` or ``captions`` (the original ones), ``ir_captions`` = the entry's
  IR-aware ``ir_captions`` when it has them. Twins of different sizes are skipped (``twin_size_mismatch``).

A kind whose image is missing or unreadable is skipped alone (counted); the others are kept.
Must not decode pixels or register the two images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    image_size,
    read_utf8,
)
from cotrain.converters.scenes import IMAGE_EXTENSIONS

KINDS = ("rgb", "ir", "dual", "ir_original", "triplet")
DEFAULT_KINDS = ("rgb", "ir", "dual")
CAPTION_FILE = "captions.json"


def _caption_list(value: object) -> list[str] | None:
    """A caption string or list of strings -> whitespace-normalised non-empty captions; None if malformed."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [" ".join(v.split()) for v in value if v.strip()]


def _captions_of(entry: dict, key: str) -> list[str] | None:
    """``<key>_captions`` or ``<key>_caption`` of an entry (``key=""``: ``captions``/``caption``).

    None when absent; ValueError when present but not a string or a list of strings.
    """
    prefix = f"{key}_" if key else ""
    for name in (f"{prefix}captions", f"{prefix}caption"):
        if name in entry:
            got = _caption_list(entry[name])
            if got is None:
                raise ValueError(f"'{name}' must be a string or a list of strings, got {entry[name]!r:.60}")
            return got
    return None


def _load_json(path: Path) -> object:
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}). Fix the file",
                           reason="invalid_json") from None


def _entries_from_file(path: Path, report: ConvertReport) -> Iterator[tuple[str, object]]:
    if path.suffix.lower() == ".jsonl":
        for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as exc:
                report.skip("invalid_json", f"{path}:{lineno}: invalid JSON ({exc.msg}). Write one object per line")
        return
    data = _load_json(path)
    if not isinstance(data, list):
        raise ConvertError(f"{path}: expected a JSON list of triplet entries, got {type(data).__name__}. Use the "
                           "entry-list layout (see cotrain/converters/fusion.py) or a .jsonl file", reason="bad_format")
    for i, entry in enumerate(data):
        yield f"{path}: entry {i}", entry


def _entries_from_folder(root: Path) -> Iterator[tuple[str, object]]:
    cap_path = root / CAPTION_FILE
    if not cap_path.is_file() or not (root / "rgb").is_dir() or not (root / "ir").is_dir():
        raise ConvertError(f"{root}: a FusionRS folder needs rgb/, ir/ and {CAPTION_FILE}. Pass such a folder or "
                           "an entry list (.json/.jsonl)", reason="source_missing")
    captions = _load_json(cap_path)
    if not isinstance(captions, dict):
        raise ConvertError(f"{cap_path}: expected an object mapping image names to captions, got "
                           f"{type(captions).__name__}", reason="bad_format")
    ir_by_stem: dict[str, str] = {}
    for p in sorted((root / "ir").iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            ir_by_stem.setdefault(p.stem, p.name)
    for rgb in sorted(p for p in (root / "rgb").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        where = f"{root}: rgb/{rgb.name}"
        value = captions.get(rgb.name, captions.get(rgb.stem))
        entry = dict(value) if isinstance(value, dict) else {} if value is None else {"captions": value}
        entry.update({"id": rgb.stem, "rgb": f"rgb/{rgb.name}"})
        ir_name = rgb.name if (root / "ir" / rgb.name).is_file() else ir_by_stem.get(rgb.stem)
        entry["ir"] = f"ir/{ir_name}" if ir_name else f"ir/{rgb.name}"
        yield where, entry


def convert_fusionrs(src: str | Path, out_jsonl: str | Path, *, image_root: str | Path | None = None,
                     split: str | None = None, kinds: Sequence[str] = DEFAULT_KINDS,
                     on_bad: str = "skip") -> ConvertReport:
    """Write rgb / ir-aware / dual-modal captioning (and triplet) records for every triplet of ``src``."""
    src = Path(src)
    bad_kinds = [k for k in kinds if k not in KINDS]
    if bad_kinds or not kinds:
        raise ConvertError(f"kinds={list(kinds)!r}: choose from {', '.join(KINDS)}", reason="bad_option")
    report = ConvertReport(source=f"fusionrs {src}", on_bad=on_bad)
    if src.is_dir():
        root = Path(image_root) if image_root is not None else src
        try:
            prefix = src.resolve().relative_to(root.resolve()).as_posix() if image_root is not None else ""
        except ValueError:
            raise ConvertError(f"{src} is not under image_root {root}. Leave image_root out (the folder is then the "
                               "root) or pass a folder that contains it", reason="image_outside_root") from None
        prefix = "" if prefix == "." else prefix
        entries = _entries_from_folder(src)
    elif src.is_file():
        root = Path(image_root) if image_root is not None else src.parent
        prefix = ""
        entries = _entries_from_file(src, report)
    else:
        raise ConvertError(f"{src}: not found. Pass a triplet list (.json/.jsonl) or a folder with rgb/, ir/ and "
                           f"{CAPTION_FILE}", reason="source_missing")
    with RecordWriter(out_jsonl, report) as writer:
        for where, entry in entries:
            if not isinstance(entry, dict):
                report.skip("bad_entry", f"{where}: expected an object, got {entry!r:.80}. Fix the entry")
                continue
            if split is not None and entry.get("split") != split:
                continue
            paths = {m: entry.get(m) for m in ("rgb", "ir")}
            missing = [m for m, p in paths.items() if not isinstance(p, str) or not p]
            if missing:
                report.skip("bad_entry", f"{where}: needs image paths 'rgb' and 'ir', missing {missing}. Fix the entry")
                continue
            try:
                general = _captions_of(entry, "")
                per_kind = {k: _captions_of(entry, k) for k in KINDS}
            except ValueError as exc:
                report.skip("bad_entry", f"{where}: {exc}. Fix the entry")
                continue
            tid = str(entry.get("id") or Path(paths["rgb"]).stem)
            images = {}
            for modality, rel in paths.items():
                rel = f"{prefix}/{rel}" if prefix else rel
                try:
                    width, height = image_size(root / rel)
                except ConvertError as exc:
                    images[modality] = exc
                    continue
                images[modality] = {"path": rel, "modality": modality, "width": width, "height": height}
            for kind in kinds:
                kwhere = f"{where} ({tid}#{kind})"
                needed = ("rgb", "ir") if kind in ("dual", "triplet") else ("ir",) if kind == "ir_original" else (kind,)
                errors = [images[m] for m in needed if isinstance(images[m], ConvertError)]
                if errors:
                    report.skip(errors[0].reason, f"{kwhere}: {errors[0]}")
                    continue
                if kind == "triplet":
                    _write_triplet(writer, report, tid, images, general, per_kind, kwhere)
                    continue
                if kind == "ir_original":
                    captions, style = per_kind["rgb"] or general, "scene"
                elif kind == "dual":
                    captions = per_kind["dual"] or per_kind["ir"] or general
                    style = "ir_aware" if (per_kind["dual"] or per_kind["ir"]) else "scene"
                else:
                    captions = per_kind[kind] or general
                    style = "ir_aware" if kind == "ir" else "scene"
                if not captions:
                    report.skip("no_captions", f"{kwhere}: no caption for this kind. Add 'captions' or "
                                f"'{kind}_captions' to the entry")
                    continue
                writer.write({"id": f"{tid}#{kind}", "task": "captioning",
                              "images": [images[m] for m in needed],
                              "captions": captions, "caption_style": style}, kwhere)
    return report


def _write_triplet(writer, report: ConvertReport, tid: str, images: dict, general, per_kind: dict, where: str) -> None:
    rgb, ir = images["rgb"], images["ir"]
    if (rgb["width"], rgb["height"]) != (ir["width"], ir["height"]):
        report.skip("twin_size_mismatch", f"{where}: the IR twin is {ir['width']}x{ir['height']} but the RGB image "
                    f"is {rgb['width']}x{rgb['height']}. Co-register the pair or drop it")
        return
    captions = per_kind["rgb"] or general
    if not captions:
        report.skip("no_captions", f"{where}: no original caption. Add 'captions' or 'rgb_captions' to the entry")
        return
    rec = {"id": f"{tid}#triplet", "task": "triplet", "images": [rgb, ir], "captions": captions}
    if per_kind["ir"]:
        rec["ir_captions"] = per_kind["ir"]
    writer.write(rec, where)
