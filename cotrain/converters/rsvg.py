"""DIOR-RSVG / RSVG visual-grounding XML -> canonical grounding records.

Owns the DIOR-RSVG layout (Zhan et al., "RSVG: Exploring Data and Model for Visual Grounding on
Remote Sensing Data", TGRS 2023): ``Annotations/<id>.xml`` VOC-style, each ``<object>`` with
``<name>``, ``<bndbox>`` (xmin, ymin, xmax, ymax in pixels) and ``<description>`` (the referring
expression); images in ``JPEGImages/``; splits ``train.txt`` / ``val.txt`` / ``test.txt`` listing
OBJECT indices, counted over every ``<object>`` of every XML file in sorted file-name order (the
official loader counts them the same way, in directory order, which is sorted on the release).
One record per object that has a description: ``expression`` = the description with runs of
whitespace collapsed, ``target`` = ``{"hbb": ...}``, id ``<xml stem>_<object index in file>``.
Objects without a description are counted as ``ignored``. Must not build prompts.
"""

from __future__ import annotations

from pathlib import Path

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    clean_box,
    read_utf8,
)
from cotrain.converters.dior import (
    BNDBOX_FIELDS,
    box_values,
    checked_image,
    read_voc_xml,
)


def read_index_split(path: str | Path) -> set[int]:
    """Object indices of a DIOR-RSVG split file (one integer per line)."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: split file not found. Pass DIOR-RSVG's train.txt / val.txt / test.txt",
                           reason="split_missing")
    indices = set()
    for lineno, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            indices.add(int(line.strip()))
        except ValueError:
            raise ConvertError(f"{path}:{lineno}: {line.strip()!r} is not an object index. DIOR-RSVG split files "
                               "hold one integer per line", reason="malformed_line") from None
    return indices


def convert_rsvg(ann_dir: str | Path, image_dir: str | Path, out_jsonl: str | Path, *,
                 image_root: str | Path | None = None, split: str | Path | None = None,
                 on_bad: str = "skip") -> ConvertReport:
    """Convert DIOR-RSVG / RSVG XML annotations into grounding records (one per described object).

    ``split``: optional DIOR-RSVG split file of global object indices (see the module docstring).
    ``image_root``: root of the record image paths (default: ``image_dir``).
    """
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    if not ann_dir.is_dir():
        raise ConvertError(f"{ann_dir}: not a directory. Pass the DIOR-RSVG 'Annotations' folder",
                           reason="bad_option")
    wanted = None if split is None else read_index_split(split)
    root_dir = Path(image_root) if image_root is not None else image_dir
    report = ConvertReport(f"RSVG {ann_dir}", on_bad=on_bad)
    counter = 0  # global object index over all files: what the split files refer to
    with RecordWriter(out_jsonl, report) as writer:
        for xml_path in sorted(ann_dir.glob("*.xml")):
            try:
                root = read_voc_xml(xml_path)
            except ConvertError as exc:
                # The file's objects cannot be counted, so later split indices would shift silently.
                report.skip(exc.reason, f"{exc} (object indices of later files may shift against the split file)")
                continue
            objects = root.findall("object")
            first, counter = counter, counter + len(objects)
            chosen = [(k, o) for k, o in enumerate(objects) if wanted is None or first + k in wanted]
            if not chosen:
                continue
            image = checked_image(xml_path, root, [image_dir], root_dir, report)
            if image is None:
                continue
            for k, obj in chosen:
                where = f"{xml_path}: <object> {k}"
                expression = " ".join((obj.findtext("description") or "").split())
                if not expression:
                    report.ignored["no_description"] += 1
                    continue
                values = box_values(obj.find("bndbox"), BNDBOX_FIELDS)
                if isinstance(values, str):
                    report.skip("malformed_element", f"{where}: {values}. Grounding objects need <bndbox> with "
                                "xmin, ymin, xmax, ymax")
                    continue
                box = clean_box(values, "hbb", image["width"], image["height"], where, report)
                if box is None:
                    continue
                writer.write({"id": f"{xml_path.stem}_{k}", "task": "grounding", "images": [image],
                              "expression": expression, "target": {"hbb": box}}, where)
    if wanted is not None and counter <= max(wanted, default=-1):
        report.skip("split_mismatch", f"{split}: indices reach {max(wanted)} but the annotations hold only "
                    f"{counter} objects. Use the split file that belongs to this annotation folder")
    return report
