"""Per-band statistics of multispectral / SAR images: ``cotrain sensors stats --records R --image-root D --out S``.

    cotrain sensors stats --records ms_train.jsonl --image-root /data/ben --modality ms --out ms_stats.json
    cotrain sensors stats --records ms_train.jsonl --image-root /data/ben --modality sar --bands VV,VH --out s1.json

Mean and std per band over the valid pixels (nodata / NaN masked) of every image of the modality, on
the 10 m grid (``cotrain.sensors.band_statistics``); ``cotrain.sensors.normalise`` applies them.
"""

from __future__ import annotations

import argparse
import json
import sys

from cotrain.errors import CotrainError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cotrain sensors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stats", help="per-band mean / std of a records file's ms or sar images")
    s.add_argument("--records", required=True)
    s.add_argument("--image-root", required=True)
    s.add_argument("--modality", choices=("ms", "sar"), default="ms")
    s.add_argument("--bands", default=None, help="comma list (default: the 10 / 20 m S2 bands, or VV,VH)")
    s.add_argument("--max-records", type=int, default=None, help="the first N records only")
    s.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    from cotrain.records import read_records
    from cotrain.sensors import DEFAULT_S2_BANDS, S1_BANDS, band_statistics, write_statistics

    try:
        bands = [b.strip() for b in args.bands.split(",")] if args.bands else \
            list(DEFAULT_S2_BANDS if args.modality == "ms" else S1_BANDS)
        records = read_records(args.records)[:args.max_records]
        stats = band_statistics(records, args.image_root, args.modality, bands)
        write_statistics(stats, args.out)
    except CotrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=1))
    print(f"wrote {args.out}")
    return 0
