"""``refdet eval GT.json RESULTS.json``: pycocotools' COCO evaluation from the two JSON files.

Prints the 12 lines of ``COCOeval.summarize()`` (same text layout), optionally the AP of each
category (``--per-category``), or everything as JSON (``--json``). Errors (a missing or unreadable
file, malformed JSON, a field of the wrong kind, a result on an unknown image) are one line on
stderr naming the file and the field, with exit status 2; warnings (annotation id 0) are one line
each on stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

IOU_TYPES = ("bbox",)


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("gt", metavar="GT.json", help="COCO ground truth: images, annotations, categories")
    p.add_argument("results", metavar="RESULTS.json",
                   help="COCO results: a list of {image_id, category_id, bbox [x, y, w, h], score}")
    p.add_argument("--iou-type", default="bbox", help="what is compared: bbox (the only type refdet evaluates)")
    p.add_argument("--per-category", action="store_true",
                   help="also print the AP@[.50:.95] and AP50 of every category")
    p.add_argument("--json", action="store_true", help="print JSON (stats, per-category AP) instead of text")


def _num(v: float):
    """A JSON-safe number: NaN (a category without ground truth) becomes null."""
    return None if isinstance(v, float) and math.isnan(v) else v


def _per_category_rows(res):
    ap = res.ap_per_class()
    ap50 = res.ap_per_class(iou_threshold=0.5) if (res.iou_thresholds == 0.5).any() else [float("nan")] * len(ap)
    names = res.class_names or tuple(str(c) for c in res.classes.tolist())
    return [(int(c), n, float(a), float(b)) for c, n, a, b in zip(res.classes.tolist(), names, ap, ap50)]


def _eval_run(args: argparse.Namespace) -> int:
    if args.iou_type not in IOU_TYPES:
        raise ValueError(f"--iou-type {args.iou_type!r} is not supported; refdet evaluates boxes: "
                         f"{', '.join(IOU_TYPES)}")
    from refdet.eval import evaluate_detections

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = evaluate_detections(args.results, args.gt, format="coco", style="coco")
    for w in caught:
        print(f"refdet eval: warning: {w.message}", file=sys.stderr)
    rows = _per_category_rows(res)
    try:
        _print(res, rows, args)
    except BrokenPipeError:  # `refdet eval ... | head`: stop quietly, as a pipe reader expects
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _print(res, rows, args) -> None:
    if args.json:
        out = {"iou_type": args.iou_type,
               "stats": {n: float(v) for n, v in zip(res.stat_names, res.stats)},
               "summary": res.summary().splitlines(),
               "per_category": [{"id": c, "name": n, "AP": _num(a), "AP50": _num(b)} for c, n, a, b in rows]}
        print(json.dumps(out, indent=1))
        return
    print(res.summary())
    if args.per_category:
        width = max([len("name")] + [len(n) for _, n, _, _ in rows])
        print(f"\nper-category AP (area=all | maxDets={res.max_dets[-1]}; nan: no ground truth)")
        print(f"{'id':>8}  {'name':<{width}}  {'AP':>6}  {'AP50':>6}")
        for c, n, a, b in rows:
            print(f"{c:>8}  {n:<{width}}  {a:6.3f}  {b:6.3f}")
    sys.stdout.flush()
