"""METER-ML (Zhu et al., CDCEO 2022) methane-source scenes -> classification records.

METER-ML labels georeferenced NAIP / Sentinel-1 / Sentinel-2 images in the U.S. for six methane
source facility types (CAFOs, coal mines, landfills, natural gas processing plants, oil refineries
and petroleum terminals, wastewater treatment plants) or none (negatives), with an expert-labelled
test set. Its exact file layout could not be pinned down from public descriptions, so this module
reads a DOCUMENTED ASSUMPTION:

* one label CSV per split (header row required) with columns ``image`` (path of the image file,
  relative to the CSV's folder; e.g. the NAIP RGB PNG ``test_images/<id>/naip.png``) and
  ``label`` (one class, in any of the spellings of ``CLASS_ALIASES``: ``CAFOs``, ``Coal Mines``,
  ``Landfills``, ``Proc Plants``, ``R&Ts``, ``WWTPs``, ``Negative`` / ``Negatives`` or the full names);
* a ``label`` holding several classes separated by ``;`` or ``|`` (METER-ML has a few images with
  more than one facility) is a multi-label image: single-label classification cannot score it, so
  it is counted in ``report.ignored['multi_label']``, never silently given one of its labels.

Classes are written by their full names (``CLASSES``) so prompts read naturally. Record ids are the
image paths. Must not decode pixels or read GeoTIFF bands.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    image_size,
    read_utf8,
    relative_image_path,
)

CLASSES = ["coal mine", "concentrated animal feeding operation", "landfill", "natural gas processing plant",
           "no methane source", "oil refinery and petroleum terminal", "wastewater treatment plant"]
"""The seven METER-ML classes (six facility types and the negatives), sorted."""


def _key(text: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", text).split()).lower()


CLASS_ALIASES = {_key(alias): name for name, aliases in {
    "concentrated animal feeding operation": ("CAFOs", "CAFO", "concentrated animal feeding operations"),
    "coal mine": ("Coal Mines", "coal_mines", "coal mine"),
    "landfill": ("Landfills", "landfill"),
    "natural gas processing plant": ("Proc Plants", "Proc Plant", "processing plants", "natural gas processing plants"),
    "oil refinery and petroleum terminal": ("R&Ts", "R&T", "refineries and terminals",
                                            "oil refineries and petroleum terminals"),
    "wastewater treatment plant": ("WWTPs", "WWTP", "wastewater treatment plants"),
    "no methane source": ("Negative", "Negatives", "none", "no methane source"),
}.items() for alias in (*aliases, name)}
"""Spellings of a label (normalised: lower case, ``_``/``-`` as spaces) -> class name."""


def convert_meter_ml(csv_path: str | Path, out_jsonl: str | Path, *, image_root: str | Path | None = None,
                     modality: str = "rgb", on_bad: str = "skip") -> ConvertReport:
    """Write one classification record per single-label row of a METER-ML label CSV (see the module docstring).

    ``image_root``: root of the record image paths (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ConvertError(f"{csv_path}: METER-ML label CSV not found. Pass a CSV with columns image,label",
                           reason="source_missing")
    base = csv_path.parent
    root_dir = Path(image_root) if image_root is not None else base
    report = ConvertReport(f"METER-ML {csv_path}", on_bad=on_bad)
    reader = csv.DictReader(io.StringIO(read_utf8(csv_path)))
    missing = [c for c in ("image", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise ConvertError(f"{csv_path}: header {reader.fieldnames} lacks column(s) {missing}. The first row must "
                           "name the columns image,label", reason="bad_format")
    with RecordWriter(out_jsonl, report) as writer:
        for lineno, row in enumerate(reader, start=2):
            where = f"{csv_path}:{lineno}"
            rel, raw = (row.get("image") or "").strip(), (row.get("label") or "").strip()
            if not rel or not raw:
                report.skip("bad_row", f"{where}: empty 'image' or 'label'. Fix the row")
                continue
            parts = [p for p in re.split(r"[;|]", raw) if p.strip()]
            if len(parts) > 1:
                report.ignored["multi_label"] += 1
                continue
            label = CLASS_ALIASES.get(_key(raw))
            if label is None:
                report.skip("unknown_label", f"{where}: label {raw!r} is not a METER-ML class ({', '.join(CLASSES)}). "
                            "Fix the label")
                continue
            path = base / rel
            try:
                w, h = image_size(path)
                image = {"path": relative_image_path(path, root_dir), "modality": modality, "width": w, "height": h}
            except ConvertError as exc:
                report.skip(exc.reason, f"{where}: {exc}")
                continue
            writer.write({"id": Path(rel).as_posix(), "task": "classification", "images": [image], "label": label,
                          "classes": list(CLASSES)}, where)
    return report
