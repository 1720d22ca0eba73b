"""DIOR-R (oriented) and DIOR (horizontal) VOC-style XML -> canonical detection records.

Owns the DIOR annotation layout as released (and as mmrotate's ``DIORDataset`` reads it):
``Annotations/Oriented Bounding Boxes/<id>.xml`` with one ``<object>`` per instance, ``<name>``
(class, case-insensitive: ``Expressway-Service-area`` is ``expressway-service-area``) and
``<robndbox>`` holding the four corners ``x_left_top, y_left_top, x_right_top, y_right_top,
x_right_bottom, y_right_bottom, x_left_bottom, y_left_bottom``; images in ``JPEGImages-trainval`` /
``JPEGImages-test``; splits in ``ImageSets/Main/{train,val,trainval,test}.txt``. An object with a
VOC ``<bndbox>`` (xmin, ymin, xmax, ymax; DIOR's horizontal release) becomes an hbb object.
Corners are kept in source order (clockwise from the left-top corner). Also owns
``read_voc_xml``, the safe XML reader shared with the DIOR-RSVG converter. Must not split images
or compute metrics.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from cotrain.converters.base import (
    ConvertError,
    ConvertReport,
    RecordWriter,
    clean_box,
    find_image,
    image_size,
    read_id_list,
    relative_image_path,
)

DIOR_CLASSES = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "expressway-service-area",
    "expressway-toll-station", "dam", "golffield", "groundtrackfield", "harbor", "overpass", "ship", "stadium",
    "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
)
"""The 20 DIOR classes in mmrotate's order, lower case."""
ROBNDBOX_FIELDS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
                   "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")
"""Corner fields of a DIOR-R ``<robndbox>``, in the order they form the quad."""
BNDBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
"""Fields of a VOC ``<bndbox>``."""
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")

_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def read_voc_xml(path: Path) -> ET.Element:
    """The root ``<annotation>`` of a VOC-style XML file; ConvertError naming the file and line otherwise.

    Reasons: ``not_utf8`` (a file without an encoding declaration, or declaring UTF-8, holds other
    bytes), ``malformed_xml`` (not well-formed, or not an ``<annotation>``).
    """
    data = path.read_bytes()
    m = _DECLARED_ENCODING.match(data)
    if m is None or m.group(1).lower().replace(b"_", b"-") in (b"utf-8", b"utf8"):
        try:
            data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise ConvertError(f"{path}:{line}: not UTF-8 (byte {data[exc.start]:#04x}). Re-encode the file as "
                               "UTF-8 or declare its encoding", reason="not_utf8") from None
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else "?"
        raise ConvertError(f"{path}:{line}: malformed XML ({exc}). Fix or remove the file",
                           reason="malformed_xml") from None
    if root.tag != "annotation":
        raise ConvertError(f"{path}: root element is <{root.tag}>, expected <annotation>. Pass VOC-style XML",
                           reason="malformed_xml")
    return root


def stated_size(root: ET.Element) -> tuple[int, int] | None:
    """(width, height) from ``<size>`` when present and numeric, else None."""
    try:
        return int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        return None


def box_values(element: ET.Element | None, fields: Sequence[str]) -> list[float] | str:
    """Numbers of the named child fields, or a message saying which field is missing or not a number."""
    if element is None:
        return "no box element"
    values = []
    for f in fields:
        text = element.findtext(f)
        if text is None or not text.strip():
            return f"field <{f}> is missing"
        try:
            values.append(float(text))
        except ValueError:
            return f"field <{f}> is {text.strip()!r}, not a number"
    return values


def locate_image(xml_path: Path, root: ET.Element, image_dirs: Sequence[Path]) -> Path | None:
    """The image of an annotation: ``<filename>`` in one of the dirs, else the XML stem with a known extension."""
    name = (root.findtext("filename") or "").strip()
    if name:
        for d in image_dirs:
            if (d / name).is_file():
                return d / name
    return find_image(xml_path.stem, image_dirs, IMAGE_EXTS)


def checked_image(xml_path: Path, root: ET.Element, image_dirs: Sequence[Path], image_root: Path,
                  report: ConvertReport) -> dict | None:
    """The record's image entry (header size, cross-checked with ``<size>``), or None after a counted skip."""
    image_path = locate_image(xml_path, root, image_dirs)
    if image_path is None:
        report.skip("image_missing", f"{xml_path}: image {root.findtext('filename') or xml_path.stem!r} not "
                    f"found in {', '.join(map(str, image_dirs))}. Add the image directory or drop the annotation")
        return None
    try:
        width, height = image_size(image_path)
        rel = relative_image_path(image_path, image_root)
    except ConvertError as exc:
        report.skip(exc.reason, f"{xml_path}: {exc}")
        return None
    stated = stated_size(root)
    if stated is not None and stated != (width, height):
        report.skip("size_mismatch", f"{xml_path}: <size> says {stated[0]}x{stated[1]} but {image_path} is "
                    f"{width}x{height}. The boxes may belong to another image; fix the annotation")
        return None
    return {"path": rel, "modality": "rgb", "width": width, "height": height}


def _as_list(dirs) -> list[Path]:
    return [Path(d) for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs)]


def xml_files(ann_dir: Path, split: str | Path | None, report: ConvertReport) -> list[Path]:
    """The XML files to convert: all ``*.xml`` sorted, or those of an id-list split file in its order."""
    if not ann_dir.is_dir():
        raise ConvertError(f"{ann_dir}: not a directory. Pass the folder of per-image XML files",
                           reason="bad_option")
    files = sorted(ann_dir.glob("*.xml"))
    if split is None:
        return files
    by_stem = {f.stem: f for f in files}
    chosen = []
    for image_id in read_id_list(split):
        if image_id in by_stem:
            chosen.append(by_stem[image_id])
        else:
            report.skip("label_missing", f"{split}: id {image_id!r} has no {ann_dir}/{image_id}.xml. Check the "
                        "split file matches this annotation folder")
    return chosen


def _objects(xml_path: Path, root: ET.Element, image: dict, report: ConvertReport) -> list[dict]:
    out = []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{xml_path}: <object> {i} ({name or 'no name'})"
        label = name.lower()
        if label not in DIOR_CLASSES:
            report.skip("unknown_class", f"{where}: class {name!r} is not one of the 20 DIOR classes. Fix the name")
            continue
        if obj.find("robndbox") is not None:
            kind, values = "quad", box_values(obj.find("robndbox"), ROBNDBOX_FIELDS)
        else:
            kind, values = "hbb", box_values(obj.find("bndbox"), BNDBOX_FIELDS)
        if isinstance(values, str):
            report.skip("malformed_element", f"{where}: {values}. DIOR-R objects need <robndbox> with "
                        f"{', '.join(ROBNDBOX_FIELDS)} (or a VOC <bndbox>)")
            continue
        box = clean_box(values, kind, image["width"], image["height"], where, report)
        if box is None:
            continue
        difficult = (obj.findtext("difficult") or "0").strip()
        out.append({"label": label, kind: box, "difficult": int(difficult) if difficult in ("0", "1", "2") else 0})
    return out


def convert_dior_r(ann_dir: str | Path, image_dirs: str | Path | Sequence[str | Path], out_jsonl: str | Path, *,
                   image_root: str | Path | None = None, split: str | Path | None = None,
                   on_bad: str = "skip") -> ConvertReport:
    """Convert DIOR-R XML annotations into detection records (one per image, quads, 20 DIOR classes).

    ``image_dirs``: one or more image folders searched in order (``JPEGImages-trainval``,
    ``JPEGImages-test``). ``split``: optional id-list file (``ImageSets/Main/test.txt``).
    ``image_root``: root of the record image paths (default: the first image folder's parent).
    """
    ann_dir, dirs = Path(ann_dir), _as_list(image_dirs)
    root_dir = Path(image_root) if image_root is not None else dirs[0].parent
    report = ConvertReport(f"DIOR-R {ann_dir}", on_bad=on_bad)
    files = xml_files(ann_dir, split, report)
    with RecordWriter(out_jsonl, report) as writer:
        for xml_path in files:
            try:
                root = read_voc_xml(xml_path)
            except ConvertError as exc:
                report.skip(exc.reason, str(exc))
                continue
            image = checked_image(xml_path, root, dirs, root_dir, report)
            if image is None:
                continue
            writer.write({"id": xml_path.stem, "task": "detection", "images": [image],
                          "objects": _objects(xml_path, root, image, report), "classes": list(DIOR_CLASSES)},
                         str(xml_path))
    return report
