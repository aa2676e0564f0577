"""refdet.eval.voc: hand-worked cases for the branches the differential tests do not reach (issue 19).

The devkit loop (``voc_eval.py``) is compared on random scenes in tests/test_eval.py and
tests/test_eval_formats.py; these cases pin what random scenes rarely hit: an overlap exactly at the
threshold (``ovmax > ovthresh`` is strict), ``plus_one=False``, boxes that only touch, classes and
images without ground truth, a difficult ground truth reached first, the result's fields and summary.
"""
import warnings

import numpy as np
import pytest

from refdet.eval import evaluate_detections
from tests._eval_records import dt_record as _dt
from tests._eval_records import gt_record as _gt


def _voc(dt, gt, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0 / 0 (the devkit's NaNs are silent)
        return evaluate_detections(dt, gt, style="voc", **kw)


def _found(res, **kw):
    return _voc(*res, **kw).recall[0].tolist()


@pytest.mark.parametrize("plus_one,iou", [(False, 50 / 100), (True, 66 / 121)])
def test_overlap_exactly_at_the_threshold_is_a_false_positive(plus_one, iou):
    # gt [0, 0, 10, 10], detection [0, 0, 10, 5]: continuous inter 10 * 5 = 50, union 100 -> 0.5; with
    # the devkit's +1 pixels inter 11 * 6 = 66, union 121 + 66 - 66 = 121 -> 66/121 (the same float
    # division as refdet's). ovmax > ovthresh is strict: at the overlap a false positive, just below
    # it a true positive.
    case = (_dt([[0, 0, 10, 5]], [0.9], [0], [0]), _gt([[0, 0, 10, 10]], [0], [0]))
    assert _found(case, plus_one=plus_one, iou_threshold=iou) == [0.0]
    assert _found(case, plus_one=plus_one, iou_threshold=np.nextafter(iou, 0.0)) == [1.0]
    # the other convention's overlap is on the other side: 0.5 < 66/121
    assert _found(case, plus_one=not plus_one, iou_threshold=0.5) == [float(not plus_one)]


def test_disjoint_and_touching_boxes_at_threshold_zero():
    # gt [0, 0, 10, 10]. At iou_threshold=0 a detection is a true positive iff it overlaps at all.
    # [0, 20, 10, 30] (apart in y) and [20, 0, 30, 10] (apart in x): iw or ih is clamped to 0.
    # [0, 10, 10, 20] touches the gt along y = 10: with +1 pixels it shares a row (ih = 1, overlap
    # 11 / 231 > 0), without them ih = 0.
    gt = _gt([[0, 0, 10, 10]], [0], [0])
    for box in ([0, 20, 10, 30], [20, 0, 30, 10]):
        for plus_one in (True, False):
            assert _found((_dt([box], [0.9], [0], [0]), gt), plus_one=plus_one, iou_threshold=0.0) == [0.0]
    touch = _dt([[0, 10, 10, 20]], [0.9], [0], [0])
    assert _found((touch, gt), plus_one=True, iou_threshold=0.0) == [1.0]
    assert _found((touch, gt), plus_one=True, iou_threshold=11 / 231) == [0.0]
    assert _found((touch, gt), plus_one=False, iou_threshold=0.0) == [0.0]


def test_no_ground_truth_at_all():
    # image 0 and class 1 exist, no ground truth: every detection is a false positive; recall is
    # 0 / 0 = NaN as in the devkit, precision 0; AP and the mean are NaN
    gt = _gt(np.zeros((0, 4)), [], [], images=[0], classes=[1])
    res = _voc(_dt([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], [1, 1], [0, 0]), gt)
    assert np.isnan(res.recall[0]).all() and len(res.recall[0]) == 2
    assert res.precision[0].tolist() == [0.0, 0.0]
    assert np.isnan(res.ap).all() and np.isnan(res.map)


def test_class_with_only_difficult_ground_truths_has_no_ap():
    # class 1: one difficult gt and no detection -> npos 0, AP NaN (not the 0 of an empty curve),
    # left out of the mean; class 2 found -> AP 1
    gt = _gt([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2], [0, 0], difficult=np.array([True, False]))
    res = _voc(_dt([[20, 20, 30, 30]], [0.9], [2], [0]), gt)
    assert np.isnan(res.ap[0]) and res.ap[1] == 1.0
    assert res.map == 1.0
    assert res.recall[0].size == 0 and res.precision[0].size == 0
    # only that class: the mean over no defined AP is NaN
    only = _voc(_dt(np.zeros((0, 4)), [], [], []), _gt([[0, 0, 10, 10]], [1], [0], difficult=np.array([True])))
    assert np.isnan(only.ap).all() and np.isnan(only.map)


def test_difficult_reached_first_gives_precision_zero_not_nan():
    # detection 1 hits the difficult gt (neither tp nor fp: tp + fp = 0, the devkit's eps makes
    # 0 / eps = 0), detection 2 the normal one: precision (0, 1), recall (0, 1)
    gt = _gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], [0, 0], difficult=np.array([True, False]))
    res = _voc(_dt([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 0], [0, 0]), gt)
    assert res.precision[0].tolist() == [0.0, 1.0]
    assert res.recall[0].tolist() == [0.0, 1.0]
    # and a detection hitting a difficult gt is not a duplicate of anything: two on the normal gt
    # after it -> tp then fp
    res = _voc(_dt([[0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 0, 0], [0, 0, 0]), gt)
    assert res.precision[0].tolist() == [0.0, 1.0, 0.5]


def test_nan_overlap_is_silent():
    # the NaN overlap of tests/test_eval.py::test_voc_nan_overlaps_follow_the_devkit, without a warning
    gt = _gt([[50, 0, 39, 9], [0, 0, 9, 9]], [0, 0], [0, 0])
    res = _voc(_dt([[0, 0, 9, 9]], [0.9], [0], [0]), gt)
    assert res.recall[0].tolist() == [0.0]


def _scene():
    # the docstring scene of evaluate_detections: cat AP 0.5 (one of two found), dog AP 1
    gt = _gt([[10, 10, 50, 50], [60, 60, 100, 120], [0, 0, 20, 20]], [1, 2, 1], [0, 0, 1])
    dt = _dt([[12, 10, 50, 52], [60, 60, 100, 110], [30, 30, 40, 40]], [0.9, 0.8, 0.7], [1, 2, 1], [0, 0, 1])
    return dt, gt


def test_result_fields_and_summary():
    res = _voc(*_scene())
    assert res.ap.tolist() == [0.5, 1.0] and res.map == 0.75
    assert res.classes.tolist() == [1, 2]
    assert res.iou_threshold == 0.5 and isinstance(res.iou_threshold, float)
    assert res.method == "voc2010" and res.class_names == ()
    assert res.summary() == "class 1: AP = 0.5000\nclass 2: AP = 1.0000\nmAP@0.5 (voc2010) = 0.7500"
    assert str(res) == res.summary()
    res = _voc(*_scene(), iou_threshold=0.25, method="voc2007")
    assert res.iou_threshold == 0.25 and res.method == "voc2007"
    assert res.summary().splitlines()[-1] == f"mAP@0.25 (voc2007) = {res.map:.4f}"


def test_class_names_from_coco_input():
    coco_gt = {"images": [{"id": 0}, {"id": 1}],
               "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}],
               "annotations": [
                   {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 10, 40, 40]},
                   {"id": 2, "image_id": 0, "category_id": 2, "bbox": [60, 60, 40, 60]},
                   {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]}]}
    coco_dt = [{"image_id": 0, "category_id": 1, "bbox": [12, 10, 38, 42], "score": 0.9},
               {"image_id": 0, "category_id": 2, "bbox": [60, 60, 40, 50], "score": 0.8},
               {"image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "score": 0.7}]
    res = _voc(coco_dt, coco_gt)
    assert res.class_names == ("cat", "dog")
    assert res.summary() == "class cat: AP = 0.5000\nclass dog: AP = 1.0000\nmAP@0.5 (voc2010) = 0.7500"
