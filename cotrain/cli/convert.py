"""``cotrain convert FORMAT ...``: a public dataset format -> canonical records, one parser for all formats.

    cotrain convert dota --labels DOTA/train/labelTxt --images DOTA/train/images --out data/dota_train.jsonl
    cotrain convert dior_r --annotations DIOR-R/Annotations --images DIOR-R/JPEGImages-trainval --out ...
    cotrain convert rsvg --annotations DIOR-RSVG/Annotations --images DIOR-RSVG/JPEGImages --out ...
    cotrain convert rsvqa --json-dir RSVQA_LR --images RSVQA_LR/Images_LR --split train --out ...
    cotrain convert scenes AID/ 'data/aid_{split}.jsonl' --split all --ratios 0.8,0.1,0.1 --seed 0
    cotrain convert captions RSICD/dataset_rsicd.json data/rsicd.jsonl --image-root RSICD/images
    cotrain convert fusionrs FusionRS/ data/fusionrs.jsonl
    cotrain convert llava geochat.json data/geochat.jsonl --image-root images --box-convention geochat
    cotrain convert bigearthnet_txt BigEarthNet.txt.jsonl images/ data/ben_ref.jsonl --kind referring --split train

FORMAT is a name of the converter registry (``cotrain.converters.CONVERTERS``); each format
declares its arguments here, in one table, and calls its converter through ``run_converter``
(prints the conversion report; exit 0 when records were written, 1 when none were, 2 on bad
input). Every converter counts bad inputs and skips them (``--on-bad skip``) or stops at the
first (``--on-bad raise``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from cotrain.converters import CONVERTERS, run_converter
from cotrain.errors import CotrainError


def _on_bad(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="bad inputs: count and skip, or stop")


def _dota(p):
    p.add_argument("--labels", required=True, help="DOTA labelTxt folder (one .txt per image)")
    p.add_argument("--images", required=True, help="DOTA images folder")
    p.add_argument("--out", required=True, help="output records JSONL")
    p.add_argument("--image-root", help="root the record image paths are relative to (default: --images, "
                   "or --patch-dir with --split-patches)")
    p.add_argument("--version", choices=("1.0", "1.5"), default="1.0", help="DOTA class list")
    p.add_argument("--split", help="optional id-list file (one image id per line) restricting the images")
    p.add_argument("--split-patches", action="store_true", help="split images into patches (DOTA devkit rules)")
    p.add_argument("--patch-dir", help="folder the patch images and labelTxt are written to")
    p.add_argument("--patch", type=int, default=1024, help="patch size in pixels")
    p.add_argument("--gap", type=int, default=200, help="overlap between neighbouring patches in pixels")
    p.add_argument("--iof-thr", type=float, default=0.7, help="keep an object in a patch when IoF >= this")
    p.add_argument("--drop-empty", action="store_true", help="do not write records for patches without objects")
    return lambda a: run_converter(CONVERTERS["dota"], a.labels, a.images, a.out, image_root=a.image_root,
                                   version=a.version, split=a.split, split_patches=a.split_patches,
                                   patch_dir=a.patch_dir, patch=a.patch, gap=a.gap, iof_thr=a.iof_thr,
                                   keep_empty=not a.drop_empty, on_bad=a.on_bad)


def _xml_folders(p, *, several_image_dirs: bool, image_root_help: str, split_help: str) -> None:
    """The arguments the per-image-XML formats (DIOR-R, DIOR-RSVG) share."""
    p.add_argument("--annotations", required=True, help="folder of per-image XML files")
    p.add_argument("--images", required=True, nargs="+" if several_image_dirs else None,
                   help="image folder(s), searched in order" if several_image_dirs else "image folder")
    p.add_argument("--out", required=True, help="output records JSONL")
    p.add_argument("--image-root", help=f"root the record image paths are relative to (default: {image_root_help})")
    p.add_argument("--split", help=split_help)


def _dior_r(p):
    _xml_folders(p, several_image_dirs=True, image_root_help="parent of the first image folder",
                 split_help="optional id-list file, e.g. ImageSets/Main/test.txt")
    return lambda a: run_converter(CONVERTERS["dior_r"], a.annotations, a.images, a.out, image_root=a.image_root,
                                   split=a.split, on_bad=a.on_bad)


def _rsvg(p):
    _xml_folders(p, several_image_dirs=False, image_root_help="--images",
                 split_help="optional split file of object indices (train.txt / val.txt / test.txt)")
    return lambda a: run_converter(CONVERTERS["rsvg"], a.annotations, a.images, a.out, image_root=a.image_root,
                                   split=a.split, on_bad=a.on_bad)


def _rsvqa(p):
    p.add_argument("--json-dir", required=True, help="folder holding <prefix>_split_<split>_*.json")
    p.add_argument("--images", required=True, help="image folder (Images_LR or Data)")
    p.add_argument("--out", required=True, help="output records JSONL")
    p.add_argument("--split", default="train", help="train | val | test | test_phili (HR)")
    p.add_argument("--prefix", help="LR or USGS (default: the only prefix with this split)")
    p.add_argument("--image-name", default="{id}.tif", help="image file name pattern given the image id")
    p.add_argument("--image-root", help="root the record image paths are relative to (default: --images)")
    return lambda a: run_converter(CONVERTERS["rsvqa"], a.json_dir, a.images, a.out, split=a.split, prefix=a.prefix,
                                   image_root=a.image_root, image_name=a.image_name, on_bad=a.on_bad)


def _scenes(p):
    p.add_argument("root", help="folder with one sub-folder of images per class")
    p.add_argument("out", help="output JSONL (with --split all: a pattern containing {split})")
    p.add_argument("--image-root", default=None, help="folder image paths are relative to (default: ROOT)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="write one part of a seeded per-class split (needs --ratios), or all three")
    p.add_argument("--ratios", default=None, help="train,val,test fractions, e.g. 0.8,0.1,0.1")
    p.add_argument("--seed", type=int, default=0, help="seed of the split draw")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    return _run_scenes


def _run_scenes(a) -> int:
    from cotrain.converters.scenes import convert_scene_splits

    try:
        ratios = [float(r) for r in a.ratios.split(",")] if a.ratios else None
        common = dict(image_root=a.image_root, seed=a.seed, modality=a.modality, on_bad=a.on_bad)
        if a.split == "all":
            reports = list(convert_scene_splits(a.root, a.out, ratios=ratios or (0.8, 0.1, 0.1), **common).values())
        else:
            reports = [CONVERTERS["scenes"](a.root, a.out, split=a.split, ratios=ratios, **common)]
    except (CotrainError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in reports:
        print(r.summary())
    return 0


def _captions(p):
    p.add_argument("json", help="the dataset_*.json caption file")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", required=True, help="folder holding the images named in the file")
    p.add_argument("--split", default=None, help="keep only entries of this split (train, val, test, restval)")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    p.add_argument("--keep-duplicates", action="store_true", help="keep repeated captions of an image")
    return lambda a: run_converter(CONVERTERS["captions"], a.json, a.out, image_root=a.image_root, split=a.split,
                                   modality=a.modality, dedupe=not a.keep_duplicates, on_bad=a.on_bad)


def _fusionrs(p):
    p.add_argument("src", help="triplet list (.json/.jsonl) or folder with rgb/, ir/ and captions.json")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", default=None, help="folder image paths are relative to "
                   "(default: the list file's folder, or the folder itself)")
    p.add_argument("--split", default=None, help="keep only entries whose 'split' is this value")
    p.add_argument("--kinds", default="rgb,ir,dual", help="record kinds to write (comma list of rgb, ir, dual, ir_original, triplet; "
                   "triplet = both images with original and IR-aware captions, for model.kind: clip)")
    return lambda a: run_converter(CONVERTERS["fusionrs"], a.src, a.out, image_root=a.image_root, split=a.split,
                                   kinds=[k.strip() for k in a.kinds.split(",") if k.strip()], on_bad=a.on_bad)


def _llava(p):
    p.add_argument("json", help="conversation list (.json) or one conversation per line (.jsonl)")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--image-root", required=True, help="folder the 'image' paths are relative to")
    p.add_argument("--box-convention", choices=("none", "geochat", "qwen2vl", "unit"), default="none",
                   help="how the source writes boxes in text (default: none = leave text unchanged)")
    p.add_argument("--split", default=None, help="keep only entries whose 'split' is this value")
    p.add_argument("--modality", default="rgb", help="image modality (rgb, ir, sar, ms)")
    return lambda a: run_converter(CONVERTERS["llava"], a.json, a.out, image_root=a.image_root, split=a.split,
                                   box_convention=a.box_convention, modality=a.modality, on_bad=a.on_bad)


def _bigearthnet_txt(p):
    from cotrain.converters.bigearthnet_txt import BOX_UNITS, KINDS

    p.add_argument("rows", help="BigEarthNet.txt rows as JSON lines (the parquet exported with pandas .to_json(..., "
                   "orient='records', lines=True))")
    p.add_argument("images", help="folder of RGB renderings, <patch_id>.png|jpg|tif")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--kind", choices=KINDS, required=True, help="which rows: binary -> vqa, mcq, caption -> captioning, "
                   "referring -> grounding (one box per row)")
    p.add_argument("--split", default="benchmark", help="keep rows of this 'split' value ('all': every row)")
    p.add_argument("--box-units", choices=tuple(BOX_UNITS), default="pixels",
                   help="unit of the referring boxes in 'output' (pixels of the image, 0..1000 or 0..1)")
    p.add_argument("--image-root", default=None, help="folder image paths are relative to (default: IMAGES)")
    return lambda a: run_converter(CONVERTERS["bigearthnet_txt"], a.rows, a.images, a.out, kind=a.kind,
                                   split=None if a.split == "all" else a.split, box_units=a.box_units,
                                   image_root=a.image_root, on_bad=a.on_bad)


FORMATS: dict[str, tuple[str, Callable]] = {
    "dota": ("DOTA v1.0/v1.5 labelTxt + images (optionally split into patches) -> detection records", _dota),
    "dior_r": ("DIOR-R oriented XML -> detection records (quads, 20 DIOR classes)", _dior_r),
    "rsvg": ("DIOR-RSVG / RSVG grounding XML -> grounding records (one per described object)", _rsvg),
    "rsvqa": ("one RSVQA LR/HR split (images/questions/answers JSON) -> vqa records", _rsvqa),
    "scenes": ("folder-per-class scene set (UCM, AID, NWPU-RESISC45, WHU-RS19) -> classification records", _scenes),
    "captions": ("Karpathy-style caption JSON (RSICD, UCM/Sydney-captions, RSITMD) -> captioning records",
                 _captions),
    "fusionrs": ("FusionRS RGB/IR/caption triplets -> scene, IR-aware and dual-modal captioning records", _fusionrs),
    "llava": ("LLaVA / ShareGPT conversation JSON (GeoChat, VHM style) -> conversation records", _llava),
    "bigearthnet_txt": ("BigEarthNet.txt rows (binary, MCQ, caption, referring) -> vqa / mcq / captioning / grounding "
                        "records", _bigearthnet_txt),
}
"""format -> (help, function adding its arguments and returning the call); keys = the converter registry."""


def build_parser() -> argparse.ArgumentParser:
    missing = sorted(set(CONVERTERS) - set(FORMATS))
    if missing:  # a converter registered without a command line is a bug caught by the tests
        raise RuntimeError(f"converters without a `cotrain convert` entry: {missing}")
    ap = argparse.ArgumentParser(prog="cotrain convert", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = ap.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, (text, declare) in FORMATS.items():
        p = sub.add_parser(name, help=text, description=text)
        call = declare(p)
        _on_bad(p)
        p.set_defaults(call=call)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.call(args))
