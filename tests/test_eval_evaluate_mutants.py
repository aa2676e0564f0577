"""refdet.eval.evaluate: the entry points' checks, defaults and forwarding (issue 19).

Every refusal is pinned by its whole message; every option is shown to reach the evaluation by a
scene whose answer changes with it (hand-worked below), and the bounds of each check are tried on
both sides.
"""
import os

import numpy as np
import pytest

from refdet.eval import average_precision, evaluate_detections
from refdet.eval.evaluate import _area_ranges, _is_detections

# gt A [2, 2, 12, 12], B [20, 20, 40, 40] (class 1, image 0); detections d1 [2, 2, 12, 7] (.9),
# d2 [50, 50, 60, 60] (.8, nothing), d3 = B (.7).
# d1 vs A: continuous IoU 50 / 100 = 0.5; the devkit's +1 pixels 66 / 121 = 0.545.
# VOC (plus_one, IoU > 0.5): tp, fp, tp -> recall (.5, .5, 1), precision (1, .5, 2/3):
#   voc2010 = .5 * 1 + .5 * 2/3; voc2007 = (6 * 1 + 5 * 2/3) / 11.
# plus_one=False, or iou_threshold 0.6: d1 misses -> recall (0, 0, .5), precision (0, 0, 1/3):
#   voc2010 = .5 * 1/3.
GT = {"image_id": np.array([0, 0]), "labels": np.array([1, 1]),
      "boxes": np.array([[2.0, 2, 12, 12], [20, 20, 40, 40]])}
DT = {"image_id": np.array([0, 0, 0]), "labels": np.array([1, 1, 1]),
      "boxes": np.array([[2.0, 2, 12, 7], [50, 50, 60, 60], [20, 20, 40, 40]]), "scores": np.array([0.9, 0.8, 0.7])}
V2010, V2007, MISS = 0.5 + 0.5 * 2 / 3, (6 + 5 * 2 / 3) / 11, 0.5 / 3


def test_voc_options_reach_the_evaluation():
    assert evaluate_detections(DT, GT, style="voc").map == pytest.approx(V2010, abs=1e-15)
    assert evaluate_detections(DT, GT, style="voc", method="voc2007").map == pytest.approx(V2007, abs=1e-15)
    assert evaluate_detections(DT, GT, style="voc", plus_one=False).map == pytest.approx(MISS, abs=1e-15)
    assert evaluate_detections(DT, GT, style="voc", iou_threshold=0.6).map == pytest.approx(MISS, abs=1e-15)
    assert evaluate_detections(DT, GT, style="voc", method=None).method == "voc2010"


def test_average_precision_forwards_every_option():
    # the curve methods on detections: voc* -> the VOC mean AP, coco101 -> COCO's stats[0]
    assert average_precision(DT, GT, method="voc2010") == pytest.approx(V2010, abs=1e-15)
    assert average_precision(DT, GT, method="voc2007") == pytest.approx(V2007, abs=1e-15)
    assert average_precision(DT, GT, method="voc2010", plus_one=False) == pytest.approx(MISS, abs=1e-15)
    assert average_precision(DT, GT, method="voc2010", iou_threshold=0.6) == pytest.approx(MISS, abs=1e-15)
    coco = evaluate_detections(DT, GT)
    assert average_precision(DT, GT) == coco.stats[0]  # refdet columns: coco101 by default
    assert average_precision(DT, GT, method="coco101") == coco.stats[0]
    # box_format reaches both: read as xywh, d1 vs A is inter 12 * 7 = 84 over 12 * 12 = 144
    as_xywh = evaluate_detections(DT, GT, box_format="xywh")
    assert as_xywh.stats[0] != coco.stats[0]
    assert average_precision(DT, GT, box_format="xywh") == as_xywh.stats[0]
    assert average_precision(DT, GT, method="voc2010", box_format="xywh") == \
        evaluate_detections(DT, GT, style="voc", box_format="xywh").map
    # VOC: read as xywh, d1 vs A is 13 * 8 = 104 over 13 * 13 = 169 (+1 pixels): 0.615 > 0.6 > 0.545
    assert average_precision(DT, GT, method="voc2010", box_format="xywh", iou_threshold=0.6) == \
        pytest.approx(V2010, abs=1e-15)
    # format: per-image dicts with difficult flags are VOC input (voc2010 by default); named
    # format="voc" the same; format="torchvision" on the same dicts (no detection of the method) is coco101
    voc_gt = [{"boxes": GT["boxes"], "labels": GT["labels"], "difficult": np.zeros(2, bool)}]
    voc_dt = [{"boxes": DT["boxes"], "labels": DT["labels"], "scores": DT["scores"]}]
    assert average_precision(voc_dt, voc_gt) == pytest.approx(V2010, abs=1e-15)
    assert average_precision(voc_dt, voc_gt, format="voc") == pytest.approx(V2010, abs=1e-15)
    assert average_precision(voc_dt, voc_gt, format="torchvision") == coco.stats[0]
    tv_gt = [{"boxes": GT["boxes"], "labels": GT["labels"]}]
    assert average_precision(voc_dt, tv_gt) == coco.stats[0]
    assert average_precision(voc_dt, tv_gt, format="voc") == pytest.approx(V2010, abs=1e-15)


def test_max_json_bytes_reaches_the_reader(tmp_path):
    import json
    gt = {"images": [{"id": 0}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    dt = [{"image_id": 0, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 1.0}]
    gp, dp = os.path.join(tmp_path, "gt.json"), os.path.join(tmp_path, "dt.json")
    for path, obj in ((gp, gt), (dp, dt)):
        with open(path, "w") as f:
            json.dump(obj, f)
    size = os.path.getsize(gp)
    assert evaluate_detections(dp, gp, max_json_bytes=size).stats[1] == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match=rf"gt\.json' is {size} bytes, more than the {size - 1}"):
        evaluate_detections(dp, gp, max_json_bytes=size - 1)
    with pytest.raises(ValueError, match=rf"more than the {size - 1} .*\(average_precision of a detection set"):
        average_precision(dp, gp, max_json_bytes=size - 1)
    with pytest.raises(ValueError, match=rf"more than the {size - 1}"):
        average_precision(dp, gp, method="voc2010", max_json_bytes=size - 1)
    # 0 is a valid bound (nothing is read from a file here)
    assert evaluate_detections(DT, GT, max_json_bytes=0).stats[0] == evaluate_detections(DT, GT).stats[0]


def test_style_follows_the_format_unless_named():
    voc_gt = [{"boxes": GT["boxes"], "labels": GT["labels"], "difficult": np.zeros(2, bool)}]
    voc_dt = [{"boxes": DT["boxes"], "labels": DT["labels"], "scores": DT["scores"]}]
    assert hasattr(evaluate_detections(voc_dt, voc_gt), "map")
    assert hasattr(evaluate_detections(voc_dt, voc_gt, style="coco"), "stats")
    assert hasattr(evaluate_detections(DT, GT), "stats")
    assert hasattr(evaluate_detections(DT, GT, style="voc"), "map")
    assert hasattr(evaluate_detections(voc_dt, voc_gt, format="torchvision"), "stats")


def test_coco_options_reach_the_evaluation():
    res = evaluate_detections(DT, GT, iou_thresholds=[0.5, 0.5 + 1e-9], area_ranges=[("all", 0, 1e9)],
                              max_dets=[1, 3])
    # d1 hits A at IoU 0.5 exactly (>= counts) but not above it
    assert res.iou_thresholds.tolist() == [0.5, 0.5 + 1e-9]
    assert res.recall[:, 0, 0, 1].tolist() == [1.0, 0.5]
    assert res.area_ranges == (("all", 0.0, 1e9),) and res.max_dets == (1, 3)
    assert res.precision.shape == (2, 101, 1, 1, 2)
    assert np.array_equal(evaluate_detections(DT, GT).iou_thresholds, np.linspace(0.5, 0.95, 10))
    # thresholds at the bounds of [0, 1] are accepted; 1 is read as 1 - 1e-10 (COCOeval)
    res = evaluate_detections(DT, GT, iou_thresholds=[0.0, 1.0])
    assert res.recall[:, 0, 0, 2].tolist() == [1.0, 0.5]
    # max_dets may repeat a value (non-decreasing)
    assert evaluate_detections(DT, GT, max_dets=(2, 2, 2)).max_dets == (2, 2, 2)


@pytest.mark.parametrize("kw,err,match", [
    ({"format": "yolo"}, ValueError, r"^`format` must be one of .*'refdet'.*; got 'yolo'$"),
    ({"style": "kitti"}, ValueError, r"^`style` must be one of .*'coco'.*'voc'.*; got 'kitti'$"),
    ({"box_format": 3}, TypeError, r"^`box_format` must be a format name \(str\) or None; got int 3$"),
    ({"box_format": "xyxz"}, ValueError, r"`box_format`"),
    ({"max_json_bytes": -1}, ValueError, r"^`max_json_bytes` must be >= 0; got -1$"),
    ({"max_json_bytes": 1.5}, TypeError, r"^`max_json_bytes` must be an integer"),
    ({"plus_one": 1}, TypeError, r"^`plus_one` must be a bool"),
    ({"iou_threshold": 1.5}, ValueError,
     r"^`iou_threshold` must lie in \[0, 1\] \(voc_eval compares an IoU with it\); got 1.5$"),
    ({"iou_thresholds": []}, ValueError,
     r"^`iou_thresholds` must be a non-empty list of values in \[0, 1\]; got \[\]$"),
    ({"iou_thresholds": [0.5, -0.1]}, ValueError, r"^`iou_thresholds` must be .*; got \[0.5, -0.1\]$"),
    ({"iou_thresholds": [1.0 + 1e-9]}, ValueError, r"^`iou_thresholds` must be a non-empty list"),
    ({"iou_thresholds": [[0.5]]}, ValueError, r"`iou_thresholds`"),
    ({"max_dets": "100"}, TypeError, r"^`max_dets` must be a sequence of integers; got str '100'$"),
    ({"max_dets": b"1"}, TypeError, r"^`max_dets` must be a sequence of integers; got bytes"),
    ({"max_dets": 100}, TypeError, r"^`max_dets` must be a sequence of integers; got int 100$"),
    ({"max_dets": [0, 10]}, ValueError, r"^`max_dets` must be >= 1; got 0$"),
    ({"max_dets": [1.0]}, TypeError, r"^`max_dets` must be an integer"),
    ({"max_dets": []}, ValueError, r"^`max_dets` must be a non-empty increasing sequence; got \(\)$"),
    ({"max_dets": [10, 1]}, ValueError, r"^`max_dets` must be a non-empty increasing sequence; got \(10, 1\)$"),
    ({"method": "coco101"}, ValueError, r"^`method` must be one of .*'voc2010'.*'voc2007'.*; got 'coco101'$"),
])
def test_evaluate_detections_checks_its_options(kw, err, match):
    with pytest.raises(err, match=match):
        evaluate_detections(DT, GT, **kw)
    # checked whichever style is asked for
    if "style" not in kw:
        with pytest.raises(err, match=match):
            evaluate_detections(DT, GT, style="voc", **kw)


def test_refdet_format_needs_a_column_mapping():
    with pytest.raises(TypeError, match=r"^`ground_truths` must be a mapping of columns \(image_id, boxes, labels\) "
                                        r"for format='refdet'; got list"):
        evaluate_detections(DT, [GT], format="refdet")


@pytest.mark.parametrize("ranges,err,match", [
    ("all", TypeError, r"^`area_ranges` must be a non-empty list of \(name, lo, hi\) triples; got str"),
    (b"x", TypeError, r"^`area_ranges` must be a non-empty list"),
    ([], TypeError, r"^`area_ranges` must be a non-empty list .*; got list"),
    (np.array([[0, 1, 2]]), TypeError, r"^`area_ranges` must be a non-empty list .*; got ndarray"),
    ([("all", 0, 1), "abc"], TypeError, r"^`area_ranges\[1\]` must be a \(name, lo, hi\) triple; got str 'abc'$"),
    ([("all", 0, 1), {0: 1}], TypeError, r"^`area_ranges\[1\]` must be a \(name, lo, hi\) triple; got dict"),
    ([("all", 0)], TypeError, r"^`area_ranges\[0\]` must be a \(name, lo, hi\) triple; got tuple"),
    ([("all", 0, 1, 2)], TypeError, r"^`area_ranges\[0\]` must be a \(name, lo, hi\) triple"),
    ([(0, 0, 1)], TypeError, r"^`area_ranges\[0\]` must be a \(name, lo, hi\) triple"),
    ([("all", -1, 1)], ValueError, r"^`area_ranges\[0\]\[1\]` must be >= 0; got -1"),
    ([("all", 0, 1), ("x", -0.5, 1)], ValueError, r"^`area_ranges\[1\]\[1\]` must be >= 0; got -0.5$"),
    ([("all", "0", 1)], TypeError, r"^`area_ranges\[0\]\[1\]` must be a real number; got str '0'$"),
    ([("all", np.inf, np.inf)], ValueError, r"^`area_ranges\[0\]\[1\]` must be finite; got inf$"),
    ([("all", 0, True)], TypeError, r"^`area_ranges\[0\]\[2\]` must be a number \(inf allowed\); got bool True$"),
    ([("all", 0, "9")], TypeError, r"^`area_ranges\[0\]\[2\]` must be a number \(inf allowed\); got str"),
    ([("all", 0, float("nan"))], TypeError, r"^`area_ranges\[0\]\[2\]` must be a number"),
    ([("all", 0, 1), ("big", 5.0, 4.0)], ValueError, r"^`area_ranges\[1\]` must have lo <= hi; got \('big', 5.0, 4.0\)$"),
])
def test_area_ranges_refused(ranges, err, match):
    with pytest.raises(err, match=match):
        _area_ranges(ranges)


def test_area_ranges_accepted():
    got = _area_ranges((("all", 0, np.inf), ["one", np.float32(3), np.int64(3)], ("big", 2.5, np.float64(7.5)),
                        ("tiny", 0.25, 0.5)))
    assert got == (("all", 0.0, np.inf), ("one", 3.0, 3.0), ("big", 2.5, 7.5), ("tiny", 0.25, 0.5))
    assert all(type(v) is float for r in got for v in r[1:])
    assert isinstance(got, tuple)


def test_is_detections():
    import pathlib
    assert _is_detections("dt.json") and _is_detections(pathlib.Path("dt.json"))
    assert _is_detections({"boxes": []})
    assert _is_detections([{"boxes": []}]) and _is_detections(({"boxes": []}, {"boxes": []}))
    assert not _is_detections([])
    assert not _is_detections([0.5, 1.0]) and not _is_detections(np.array([0.5]))
    assert not _is_detections([{"boxes": []}, 0.5])
    assert not _is_detections(0.5)


def test_average_precision_of_a_curve():
    # recall (0, 1), precision (0, .5): every method 0.5 (tests/test_eval.py), default voc2010
    assert average_precision([0.5, 1.0], [1.0, 0.5]) == 0.5 * 1.0 + 0.5 * 0.5
    assert average_precision(np.array([0.5, 1.0]), [1.0, 0.5], method="voc2007") == \
        pytest.approx((6 * 1.0 + 5 * 0.5) / 11, abs=1e-15)
    with pytest.raises(ValueError, match=r"^`format` applies to detections; `recall` is a curve \(got format='coco'\)$"):
        average_precision([0.5], [1.0], format="coco")
    with pytest.raises(ValueError, match=r"^`format` must be one of"):
        average_precision([0.5], [1.0], format="cocoa")
    with pytest.raises(ValueError, match=r"^`iou_threshold` must lie in \[0, 1\] \(voc_eval compares an IoU with it\)"):
        average_precision([0.5], [1.0], iou_threshold=-0.5)
    with pytest.raises(ValueError, match=r"^`method` must be one of .*; got 'voc'$"):
        average_precision([0.5], [1.0], method="voc")


def test_average_precision_of_detections_names_its_arguments():
    tail = r" \(average_precision of a detection set: `recall` holds the detections, `precision` the ground truths\)$"
    with pytest.raises(ValueError, match=r"^`method` must be one of .*; got 'voc'" + tail):
        average_precision(DT, GT, method="voc")
    with pytest.raises(TypeError, match=r"^`box_format` must be a format name \(str\) or None; got int 3" + tail):
        average_precision(DT, GT, box_format=3)
    with pytest.raises(TypeError, match=r"^`box_format` must be a format name .*" + tail):
        average_precision(DT, GT, method="voc2007", box_format=3)
    with pytest.raises(TypeError, match=r"^`plus_one` must be a bool .*" + tail):
        average_precision(DT, GT, method="voc2007", plus_one=1)
    with pytest.raises(ValueError, match=r"^`ground_truths` is a mapping but neither .*" + tail):
        average_precision(DT, {"x": 1})
    bad = dict(DT, image_id=np.array([0, 0, 5]))
    with pytest.raises(ValueError, match=r"unknown image ids \[5\] .*" + tail):
        average_precision(bad, GT)
    with pytest.raises(ValueError, match=r"^`iou_threshold` must lie in \[0, 1\]"):
        average_precision(DT, GT, iou_threshold=2.0)
    with pytest.raises(ValueError, match=r"^`format` must be one of"):
        average_precision(DT, GT, format="cocoa")
    # the chained original is kept
    with pytest.raises(ValueError) as info:
        average_precision(DT, GT, method="voc")
    assert isinstance(info.value.__cause__, ValueError)


def test_average_precision_passes_the_named_format_on():
    # refdet's columns named as COCO input: read as a COCO dataset, which they are not
    tail = r".*\(average_precision of a detection set"
    for method in (None, "coco101", "voc2010"):
        with pytest.raises(ValueError, match=r"^`ground_truths` has no 'images' list" + tail):
            average_precision(DT, GT, format="coco", method=method)
    # per-image lists named as refdet's columns
    tv_gt = [{"boxes": GT["boxes"], "labels": GT["labels"]}]
    tv_dt = [{"boxes": DT["boxes"], "labels": DT["labels"], "scores": DT["scores"]}]
    for method in ("coco101", "voc2007"):
        with pytest.raises(TypeError, match=r"^`ground_truths` must be a mapping of columns .* for format='refdet'"):
            average_precision(tv_dt, tv_gt, format="refdet", method=method)


def test_iou_thresholds_are_float64():
    res = evaluate_detections(DT, GT, iou_thresholds=np.array([0.5, 0.55], np.float32))
    assert res.iou_thresholds.dtype == np.float64
    assert res.iou_thresholds.tolist() == [0.5, float(np.float32(0.55))]
    assert evaluate_detections(DT, GT, iou_thresholds=[1, 0]).iou_thresholds.dtype == np.float64
