"""The public entry points: :func:`evaluate_detections` and :func:`average_precision`."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet.eval import columns, formats
from refdet.eval.coco import COCO_AREA_RANGES, COCOResult, evaluate_coco
from refdet.eval.curves import CURVE_METHODS, curve_ap, iou_thresholds as _coco_iou_thresholds, validate_curve
from refdet.eval.voc import VOCResult, evaluate_voc

STYLES = ("coco", "voc")


def evaluate_detections(detections: Any, ground_truths: Any, *, format: Optional[str] = None,
                        style: Optional[str] = None, box_format: Optional[str] = None,
                        iou_thresholds: Optional[Sequence[float]] = None,
                        area_ranges: Sequence[Tuple[str, float, float]] = COCO_AREA_RANGES,
                        max_dets: Sequence[int] = (1, 10, 100), iou_threshold: float = 0.5,
                        method: Optional[str] = None, plus_one: bool = True,
                        max_json_bytes: int = formats.DEFAULT_MAX_JSON_BYTES) -> Union[COCOResult, VOCResult]:
    """Evaluate detections against ground truths, COCO or VOC style, in any of the ecosystem's formats.

    ``style="coco"`` gives what ``pycocotools.cocoeval.COCOeval`` (``evaluate``, ``accumulate``,
    ``summarize``) gives for ``iouType="bbox"``: the 12 summary numbers and the precision, recall and
    score arrays, equal to 1e-12 (in practice bit for bit). ``style="voc"`` gives what the VOC
    devkit's ``voc_eval.py`` gives for each class. The rules, ties and thresholds are written out in
    :mod:`refdet.eval.coco` and :mod:`refdet.eval.voc`.

    Parameters
    ----------
    detections, ground_truths
        In one of four formats (:mod:`refdet.eval.formats`), detected from ``ground_truths`` or
        named by ``format``:

        ``"refdet"``: two column mappings, one row per box: ``detections = {"image_id": (D,),
        "boxes": (D, 4), "scores": (D,), "labels": (D,)}``, ``ground_truths = {"image_id": (G,),
        "boxes": (G, 4), "labels": (G,)}`` plus optional ``"iscrowd"``, ``"area"``, ``"ignore"``,
        ``"difficult"`` (G,) and ``"images"`` (I,), ``"classes"`` (K,) (every image and class id,
        including those without boxes; default: the ids present in the ground truths).

        ``"coco"``: pycocotools' results list and ground-truth dict, or paths to the JSON files.

        ``"torchvision"``: lists of per-image dicts, torchmetrics' ``MeanAveragePrecision``
        inputs: ``detections[i] = {"boxes", "scores", "labels"}``, ``ground_truths[i] = {"boxes",
        "labels"}`` with optional ``"iscrowd"``, ``"area"``.

        ``"voc"``: the same per-image dicts with ``"difficult"`` flags in the ground truths.

        Every detection's image and class must be among the ground truths' (refused with a
        ``ValueError`` naming the entry otherwise, as pycocotools' ``loadRes`` refuses unknown
        images).
    format : {"refdet", "coco", "torchvision", "voc"}, optional
        Default: detected (:func:`refdet.eval.formats.detect_format`).
    style : {"coco", "voc"}, optional
        Default ``"voc"`` for VOC input, ``"coco"`` otherwise. COCO style reads ``iscrowd``,
        ``area`` and ``ignore`` (``difficult`` has no effect); VOC style reads ``difficult`` only.
    box_format : {"xyxy", "xywh", "cxcywh", "yxyx"}, optional
        Default ``"xyxy"``; COCO input is always ``"xywh"``.
    iou_thresholds : sequence of float, shape (T,), optional
        COCO only; default ``0.50:0.05:0.95`` built as pycocotools builds it (``np.linspace``).
    area_ranges : sequence of (name, low, high)
        COCO only; inclusive bounds in pixels²; the names "all", "small", "medium", "large" feed the
        summary.
    max_dets : sequence of int
        COCO only; increasing; default (1, 10, 100). The first summary line asks for 100, the others
        for ``max_dets[0..2]``, as ``summarize`` does.
    iou_threshold : float
        VOC only: a detection is a true positive when its best IoU is **strictly greater** than this
        (``ovmax > ovthresh`` in ``voc_eval.py``).
    method : {"voc2010", "voc2007"}, optional
        VOC only; default "voc2010" (all-point); "voc2007" is the 11-point metric.
    plus_one : bool
        VOC only: the devkit's +1 pixel widths (default True, as ``voc_eval.py``).
    max_json_bytes : int
        Largest JSON file read (COCO paths).

    Returns
    -------
    COCOResult or VOCResult
        ``COCOResult.stats`` (12,), ``.precision`` (T, R, K, A, M), ``.summary()`` (the 12 lines of
        ``COCOeval.summarize()``); ``VOCResult.ap`` (K,), ``.map``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, the entry (``detections[3]['boxes']``) or the file and field
        (``gt.json['annotations'][7]['bbox']``) that is wrong.

    Examples
    --------
    One scene in every format. Image 0 holds a cat (class 1, 40x40) and a dog (class 2, 40x60);
    image 1 a small cat. The detector finds the first cat (IoU 1520 / 1676 = 0.907), the dog (IoU
    2000 / 2400 = 0.833) and puts a false cat in image 1.

    refdet's columns (``xyxy``):

    >>> import numpy as np
    >>> from refdet.eval import evaluate_detections
    >>> gt = {"image_id": np.array([0, 0, 1]), "labels": np.array([1, 2, 1]),
    ...       "boxes": np.array([[10., 10, 50, 50], [60, 60, 100, 120], [0, 0, 20, 20]])}
    >>> dt = {"image_id": np.array([0, 0, 1]), "labels": np.array([1, 2, 1]),
    ...       "boxes": np.array([[12., 10, 50, 52], [60, 60, 100, 110], [30, 30, 40, 40]]),
    ...       "scores": np.array([0.9, 0.8, 0.7])}
    >>> res = evaluate_detections(dt, gt)

    The cat class has recall 1/2 with precision 1 (then a false positive), for the 9 thresholds up
    to 0.90: 51 of the 101 recall points read precision 1; the dog is found for the 7 thresholds up
    to 0.80. AP = (9 * 51 / 101 + 7 * 101 / 101) / 20 (up to ``tp / (tp + fp + eps)``):

    >>> print(f"{res.stats[0]:.6f} {(9 * 51 / 101 + 7) / 20:.6f}")
    0.577228 0.577228
    >>> print(res.summary().splitlines()[0])
     Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.577

    COCO's dicts (``xywh`` boxes; the same numbers):

    >>> coco_gt = {"images": [{"id": 0}, {"id": 1}],
    ...            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    ...            "annotations": [
    ...                {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
    ...                {"id": 2, "image_id": 0, "category_id": 2, "bbox": [60, 60, 40, 60], "area": 2400, "iscrowd": 0},
    ...                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400, "iscrowd": 0}]}
    >>> coco_dt = [{"image_id": 0, "category_id": 1, "bbox": [12, 10, 38, 42], "score": 0.9},
    ...            {"image_id": 0, "category_id": 2, "bbox": [60, 60, 40, 50], "score": 0.8},
    ...            {"image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.7}]
    >>> res_coco = evaluate_detections(coco_dt, coco_gt)
    >>> bool(np.array_equal(res_coco.precision, res.precision)), res_coco.class_names
    (True, ('cat', 'dog'))

    The same as JSON files (paths or ``pathlib.Path``; read size-bounded):

    >>> import json, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> gt_path, dt_path = os.path.join(folder, "gt.json"), os.path.join(folder, "dt.json")
    >>> for path, obj in ((gt_path, coco_gt), (dt_path, coco_dt)):
    ...     with open(path, "w") as f:
    ...         json.dump(obj, f)
    >>> bool(np.array_equal(evaluate_detections(dt_path, gt_path).stats, res.stats))
    True
    >>> import shutil; shutil.rmtree(folder)

    torchvision / torchmetrics per-image dicts (``xyxy``; arrays, lists or CPU tensors):

    >>> tv_gt = [{"boxes": [[10, 10, 50, 50], [60, 60, 100, 120]], "labels": [1, 2]},
    ...          {"boxes": [[0, 0, 20, 20]], "labels": [1]}]
    >>> tv_dt = [{"boxes": [[12, 10, 50, 52], [60, 60, 100, 110]], "scores": [0.9, 0.8], "labels": [1, 2]},
    ...          {"boxes": [[30, 30, 40, 40]], "scores": [0.7], "labels": [1]}]
    >>> bool(np.array_equal(evaluate_detections(tv_dt, tv_gt).stats, res.stats))
    True

    VOC per-image dicts with ``difficult`` flags, evaluated as ``voc_eval.py`` (+1 pixel overlaps,
    ``IoU > 0.5``): the cat class has precision (1, 1/2) at recall (1/2, 1/2), AP 0.5; the dog 1.

    >>> voc_gt = [{"boxes": [[10, 10, 50, 50], [60, 60, 100, 120]], "labels": [1, 2], "difficult": [False, False]},
    ...           {"boxes": [[0, 0, 20, 20]], "labels": [1], "difficult": [False]}]
    >>> voc = evaluate_detections(tv_dt, voc_gt)
    >>> voc.ap.tolist(), voc.map
    ([0.5, 1.0], 0.75)

    Marking the small cat difficult removes it from the recall denominator: the cat AP becomes 1.

    >>> voc_gt[1]["difficult"] = [True]
    >>> evaluate_detections(tv_dt, voc_gt).ap.tolist()
    [1.0, 1.0]
    """
    # options first, whichever style uses them (an option the style ignores is still checked)
    if format is not None:
        _checks.check_choice(format, "format", formats.FORMATS)
    if style is not None:
        _checks.check_choice(style, "style", STYLES)
    if box_format is not None and not isinstance(box_format, str):
        raise TypeError(f"`box_format` must be a format name (str) or None; got {_checks._describe(box_format)}")
    max_json_bytes = _checks.check_int(max_json_bytes, "max_json_bytes", low=0)
    plus_one = _checks.check_bool(plus_one, "plus_one")
    iou_threshold = _checks.check_unit_threshold(iou_threshold, "iou_threshold",
                                                 source="voc_eval compares an IoU with it")
    if iou_thresholds is not None:
        thr_in = _checks.as_float_array(iou_thresholds, "iou_thresholds", ndim=1, dtype=np.float64)
        if thr_in.size == 0 or np.any((thr_in < 0) | (thr_in > 1)):
            raise ValueError(f"`iou_thresholds` must be a non-empty list of values in [0, 1]; got {thr_in.tolist()}")
    ar = _area_ranges(area_ranges)
    if isinstance(max_dets, (str, bytes)) or not hasattr(max_dets, "__iter__"):
        raise TypeError(f"`max_dets` must be a sequence of integers; got {_checks._describe(max_dets)}")
    md = tuple(_checks.check_int(v, "max_dets", low=1) for v in max_dets)
    if not md or list(md) != sorted(md):
        raise ValueError(f"`max_dets` must be a non-empty increasing sequence; got {md}")
    method = "voc2010" if method is None else _checks.check_choice(method, "method", ("voc2010", "voc2007"))
    fmt = format
    if fmt is None:
        fmt = formats.detect_format(detections, ground_truths)  # pragma: no mutate (it reads the ground truths only)
    coco_style = fmt != "voc" if style is None else style == "coco"
    if fmt == "refdet" and not isinstance(ground_truths, Mapping):
        raise TypeError(f"`ground_truths` must be a mapping of columns (image_id, boxes, labels) for "
                        f"format='refdet'; got {_checks._describe(ground_truths)}")
    conv = formats.convert(detections, ground_truths, fmt, box_format, max_json_bytes)
    p = columns.prepare(conv.detections, conv.ground_truths, conv.box_format)
    if coco_style:
        thr = _coco_iou_thresholds() if iou_thresholds is None else thr_in
        return evaluate_coco(p, thr, ar, md, conv.class_names)
    return evaluate_voc(p, iou_threshold, method, plus_one, conv.class_names)


def _area_ranges(area_ranges):
    """A non-empty sequence of ``(name, lo, hi)`` triples with 0 <= lo <= hi (hi may be inf)."""
    if not isinstance(area_ranges, (list, tuple)) or not area_ranges:  # a str or bytes is neither
        raise TypeError(f"`area_ranges` must be a non-empty list of (name, lo, hi) triples; got "
                        f"{_checks._describe(area_ranges)}")
    out = []
    for i, r in enumerate(area_ranges):
        if not isinstance(r, (list, tuple)) or len(r) != 3 or not isinstance(r[0], str):
            raise TypeError(f"`area_ranges[{i}]` must be a (name, lo, hi) triple; got {_checks._describe(r)}")
        lo = _checks.check_real(r[1], f"area_ranges[{i}][1]")
        if lo < 0:
            raise ValueError(f"`area_ranges[{i}][1]` must be >= 0; got {lo}")
        if isinstance(r[2], bool) or not isinstance(r[2], (int, float, np.integer, np.floating)) or np.isnan(r[2]):
            raise TypeError(f"`area_ranges[{i}][2]` must be a number (inf allowed); got {_checks._describe(r[2])}")
        hi = float(r[2])
        if hi < lo:
            raise ValueError(f"`area_ranges[{i}]` must have lo <= hi; got {tuple(r)}")
        out.append((r[0], lo, hi))
    return tuple(out)


def _is_detections(x) -> bool:
    """Whether ``x`` is a detection set (any format) rather than a recall curve."""
    if isinstance(x, (str, os.PathLike, Mapping)):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, Mapping) for v in x)


def average_precision(recall: Any, precision: Any, *, method: Optional[str] = None, format: Optional[str] = None,
                      box_format: Optional[str] = None, iou_threshold: float = 0.5, plus_one: bool = True,
                      max_json_bytes: int = formats.DEFAULT_MAX_JSON_BYTES) -> float:
    """Average precision: of one precision/recall curve, or of a detection set in any format.

    Parameters
    ----------
    recall, precision : ndarray, shape (D,)
        The curve after each of D detections sorted by descending score (recall non-decreasing).
        Or ``recall`` = detections and ``precision`` = ground truths in any format of
        :func:`evaluate_detections`: the headline number is returned, COCO's AP@[.50:.95]
        (``stats[0]``) for ``method="coco101"``, the VOC mean AP at ``iou_threshold`` for
        ``"voc2010"`` / ``"voc2007"``.
    method : {"voc2010", "voc2007", "coco101"}, optional
        Default ``"voc2010"`` for a curve; for detections, ``"voc2010"`` for VOC input and
        ``"coco101"`` otherwise.

        ``"voc2010"`` (VOC2010 and later, ``voc_ap(use_07_metric=False)``): make precision
        monotone from the right, then sum ``(r[i+1] - r[i]) * p[i+1]`` over the points where recall
        changes, with sentinels ``r = 0`` / ``p = 0`` in front and ``r = 1`` / ``p = 0`` behind.
        ``"voc2007"``: 11-point interpolation, the mean over ``t = 0, 0.1, ..., 1`` (``np.arange(0.,
        1.1, 0.1)``) of the highest precision at recall ``>= t`` (0 if none). ``"coco101"``: COCO's
        101-point interpolation, precision made monotone from the right and read at
        ``searchsorted(recall, t, "left")`` for ``t = 0, 0.01, ..., 1`` (0 past the end of the
        curve), then averaged.
    format, box_format, iou_threshold, plus_one, max_json_bytes
        For detections only: as in :func:`evaluate_detections`.

    Returns
    -------
    float

    Examples
    --------
    One ground truth found by the second of two detections: recall (0, 1), precision (0, 0.5).
    voc2010: the rise from recall 0 to 1 happens at precision 0.5; voc2007: every threshold t sees
    max precision 0.5 (eleven float additions of 0.5 / 11: 0.5 up to rounding); coco101: every
    read-out is 0.5.

    >>> from refdet.eval import average_precision
    >>> [round(average_precision([0.0, 1.0], [0.0, 0.5], method=m), 12) for m in ("voc2010", "voc2007", "coco101")]
    [0.5, 0.5, 0.5]

    A detection set (here torchvision's per-image dicts): one of two ground truths found, then a
    false positive; COCO's AP is 51 / 101 (the recall points 0, 0.01, ..., 0.5 read precision 1):

    >>> gt = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [0, 0]}]
    >>> dt = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "scores": [0.9, 0.8], "labels": [0, 0]}]
    >>> round(average_precision(dt, gt), 6), round(51 / 101, 6)
    (0.50495, 0.50495)
    >>> average_precision(dt, gt, method="voc2010")
    0.5
    """
    if format is not None:
        _checks.check_choice(format, "format", formats.FORMATS)
    _checks.check_unit_threshold(iou_threshold, "iou_threshold", source="voc_eval compares an IoU with it")
    if _is_detections(recall):
        try:
            if method is None:
                fmt = format
                if fmt is None:
                    fmt = formats.detect_format(recall, precision)  # pragma: no mutate (it reads the ground truths only)
                method = "voc2010" if fmt == "voc" else "coco101"
            _checks.check_choice(method, "method", CURVE_METHODS)
            if method == "coco101":
                res = evaluate_detections(recall, precision, format=format, style="coco", box_format=box_format,
                                          max_json_bytes=max_json_bytes)
                return float(res.stats[0])
            res = evaluate_detections(recall, precision, format=format, style="voc", box_format=box_format,
                                      iou_threshold=iou_threshold, method=method, plus_one=plus_one,
                                      max_json_bytes=max_json_bytes)
        except (TypeError, ValueError) as exc:  # say which of our arguments held what
            raise type(exc)(f"{exc} (average_precision of a detection set: `recall` holds the detections, "
                            f"`precision` the ground truths)") from exc
        return float(res.map)
    if format is not None:
        raise ValueError(f"`format` applies to detections; `recall` is a curve (got format={format!r})")
    method = "voc2010" if method is None else method
    _checks.check_choice(method, "method", CURVE_METHODS)
    rec, prec = validate_curve(recall, precision)
    return curve_ap(rec, prec, method)
