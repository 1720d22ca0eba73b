"""Converters from public remote-sensing dataset formats to canonical records (shared/DESIGN.md section 4).

This package owns turning source annotations (DOTA labelTxt, DIOR-R / DIOR-RSVG XML, RSVQA JSON,
scene folders, caption JSON, ...) into canonical JSONL records with boxes in ORIGINAL pixels and
image sizes read from image headers (never by decoding pixels). What every converter
shares (``ConvertReport``, the ``on_bad`` policy, header-only image sizes, box clean-up, the
validating atomic JSONL writer) is in ``base``; this module holds the ``CONVERTERS`` registry. Converters must
not train, tokenise or resize anything; a converter module knows one source format.

Contract of a converter: ``convert_<fmt>(src..., out_jsonl, *, image_root=..., split=None,
on_bad="skip"|"raise") -> ConvertReport``. Bad inputs (missing image, malformed line or element,
box outside the image by more than 1 px, zero-area box, NaN, non-UTF-8 text) are counted skips,
or raise ``ConvertError`` with ``on_bad="raise"``; every message names the file and line/element.
"""

from __future__ import annotations

from typing import Callable

from cotrain.converters.base import (
                                     MAX_EXAMPLES,
                                     ON_BAD,
                                     ConvertError,
                                     ConvertReport,
                                     RecordWriter,
                                     clean_box,
                                     find_image,
                                     image_size,
                                     read_id_list,
                                     read_utf8,
                                     relative_image_path,
                                     run_converter,
)
from cotrain.converters.bigearthnet_txt import convert_bigearthnet_txt
from cotrain.converters.captions import convert_captions

# ----------------------------------------------------------------------------------------------
# registry: name -> converter function (CLIs and docs list them from here)
from cotrain.converters.dior import convert_dior_r
from cotrain.converters.dota import convert_dota
from cotrain.converters.fusion import convert_fusionrs
from cotrain.converters.llava import convert_llava
from cotrain.converters.rsvg import convert_rsvg
from cotrain.converters.rsvqa import convert_rsvqa
from cotrain.converters.scenes import convert_scenes

CONVERTERS: dict[str, Callable[..., ConvertReport]] = {
    "dota": convert_dota,
    "dior_r": convert_dior_r,
    "rsvg": convert_rsvg,
    "rsvqa": convert_rsvqa,
    "scenes": convert_scenes,
    "captions": convert_captions,
    "fusionrs": convert_fusionrs,
    "llava": convert_llava,
    "bigearthnet_txt": convert_bigearthnet_txt,
}

__all__ = ["CONVERTERS", "ON_BAD", "MAX_EXAMPLES", "ConvertError", "ConvertReport", "RecordWriter", "clean_box", "find_image", "image_size", "read_id_list", "read_utf8", "relative_image_path", "run_converter"]
