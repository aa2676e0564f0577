"""refdet.eval.coco: hand-worked cases for what the pycocotools differentials do not pin (issue 19).

``maskUtils.iou`` on single pairs (crowds, boxes that touch or lie apart in one axis), the summary
with fewer than three ``max_dets`` and custom thresholds, ``ap_per_class``'s selections, the warning
for annotation id 0 pointing at the caller, and matching decisions that turn on a tie or a threshold.
"""
import sys
import warnings

import numpy as np
import pytest

from refdet.eval import evaluate_detections
from refdet.eval import coco as C
from tests._eval_records import dt_record as _dt
from tests._eval_records import gt_record as _gt

EPS = np.spacing(1)


def test_pair_iou_by_hand():
    d = np.array([[0.0, 0, 10, 10]] * 6)  # xywh
    g = np.array([[5.0, 5, 10, 10],   # inter 5 * 5 = 25, union 175
                  [5.0, 5, 10, 10],   # the same as a crowd: 25 / detection area 100
                  [10.0, 0, 5, 5],    # touches along x = 10: w = 0 -> 0
                  [5.0, 20, 10, 10],  # w = 5, h = -10: apart in y -> 0 (not -50 / 250)
                  [20.0, 5, 10, 10],  # w = -10, h = 5 -> 0
                  [20.0, 20, 10, 10]])  # w = h = -10: inter would be +100 -> 0
    crowd = np.array([False, True, False, False, False, False])
    got = C._pair_iou(d, g, crowd)
    assert got.tolist() == [25 / 175, 25 / 100, 0.0, 0.0, 0.0, 0.0]
    # a crowd that the detection does not meet is 0 too; a tiny positive overlap is kept
    got = C._pair_iou(np.array([[0.0, 0, 10, 10]] * 2), np.array([[20.0, 20, 10, 10], [9.5, 9.5, 4, 4]]),
                      np.array([True, False]))
    assert got.tolist() == [0.0, 0.25 / (100 + 16 - 0.25)]


def test_summary_with_two_max_dets_and_custom_thresholds():
    # one small gt found exactly: AP = 1 / (1 + eps) wherever defined. max_dets (2, 50) stand in for
    # summarize's [0], [1], [2] as 2, 50, 50; the first line asks for maxDets=100 literally -> -1
    gt = _gt([[0, 0, 10, 10]], [1], [0])
    res = evaluate_detections(_dt([[0, 0, 10, 10]], [0.9], [1], [0]), gt, iou_thresholds=[0.5, 0.75, 0.8],
                              max_dets=(2, 50))
    one = 1 / (1 + EPS)
    np.testing.assert_allclose(res.stats, [-1.0, one, one, one, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0],
                               rtol=0, atol=1e-15)
    lines = res.summary().splitlines()
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.80 | area=   all | maxDets=100 ] = -1.000"
    assert lines[1] == " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets= 50 ] = 1.000"
    assert lines[2] == " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets= 50 ] = 1.000"
    assert lines[3] == " Average Precision  (AP) @[ IoU=0.50:0.80 | area= small | maxDets= 50 ] = 1.000"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.80 | area=   all | maxDets=  2 ] = 1.000"
    assert lines[7] == " Average Recall     (AR) @[ IoU=0.50:0.80 | area=   all | maxDets= 50 ] = 1.000"
    assert lines[11] == " Average Recall     (AR) @[ IoU=0.50:0.80 | area= large | maxDets= 50 ] = -1.000"
    assert len(lines) == 12 and str(res) == res.summary()
    # without 0.5 and 0.75 among the thresholds, AP50 and AP75 are -1; one max_det stands in for all
    res = evaluate_detections(_dt([[0, 0, 10, 10]], [0.9], [1], [0]), gt, iou_thresholds=[0.6], max_dets=[3])
    np.testing.assert_allclose(res.stats, [-1.0, -1.0, -1.0, one, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0],
                               rtol=0, atol=1e-15)
    assert res.summary().splitlines()[8] == \
        " Average Recall     (AR) @[ IoU=0.60:0.60 | area=   all | maxDets=  3 ] = 1.000"
    assert res.stat_names == ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _two_classes():
    # class 1: gt [0, 0, 10, 10] found by [0, 0, 10, 5] at IoU 0.5 exactly (only t = 0.5 matches).
    # class 2: gt [20, 20, 40, 40] (20 x 20 = 400 < 32^2: small); a false positive [60, 60, 70, 70]
    # at 0.9, then the exact box at 0.8.
    gt = _gt([[0, 0, 10, 10], [20, 20, 40, 40]], [1, 2], [0, 0])
    dt = _dt([[0, 0, 10, 5], [60, 60, 70, 70], [20, 20, 40, 40]], [0.7, 0.9, 0.8], [1, 2, 2], [0, 0, 0])
    return dt, gt


def test_ap_per_class_selections():
    res = evaluate_detections(*_two_classes())
    one = 1 / (1 + EPS)
    # class 1: AP one at t = 0.5, 0 at the nine others; class 2: FP then TP -> precision 1/2 at
    # recall 1 (envelope 0.5 everywhere) at every threshold
    half = 1 / (2 + EPS)
    np.testing.assert_allclose(res.ap_per_class(), [one / 10, half], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.ap_per_class(iou_threshold=0.5), [one, half], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.ap_per_class(iou_threshold=0.55), [0.0, half], rtol=0, atol=1e-15)
    # with max_det=1 class 2 sees only its false positive: AP 0
    np.testing.assert_allclose(res.ap_per_class(max_det=1, iou_threshold=0.5), [one, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.ap_per_class(max_det=10), res.ap_per_class(), rtol=0, atol=0)
    # both gts are small: no medium / large ground truth -> NaN
    assert np.isnan(res.ap_per_class(area="medium")).all() and np.isnan(res.ap_per_class(area="large")).all()
    np.testing.assert_allclose(res.ap_per_class(area="small"), res.ap_per_class(), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^`area` must be one of \['all', 'small', 'medium', 'large'\]; got 'huge'$"):
        res.ap_per_class(area="huge")
    with pytest.raises(ValueError, match=r"^`max_det` must be one of \[1, 10, 100\]; got 7$"):
        res.ap_per_class(max_det=7)
    with pytest.raises(ValueError, match=r"^`iou_threshold` must be one of \[0.5, 0.55, .*0.95\]; got 0.3$"):
        res.ap_per_class(iou_threshold=0.3)


def test_annotation_id_zero_warning_points_at_the_caller():
    gt = _gt([[0, 0, 10, 10]], [1], [0], annotation_id=[0])
    with pytest.warns(UserWarning, match=r"^a ground truth with annotation id 0 was matched: pycocotools") as rec:
        res = evaluate_detections(_dt([[0, 0, 10, 10]], [0.9], [1], [0]), gt)
    # stacklevel: the warning points at the caller (under mutmut, whose trampolines add frames to
    # every call, the frame is another one: not checked there, and the line carries a pragma)
    if "mutmut" not in sys.modules:
        assert rec[0].filename == __file__
    assert res.recall[0, 0, 0, -1] == 0.0  # the match does not count
    # id 0 not matched, or no id 0: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_detections(_dt([[50, 50, 60, 60]], [0.9], [1], [0]), gt)
        res = evaluate_detections(_dt([[0, 0, 10, 10]], [0.9], [1], [0]), _gt([[0, 0, 10, 10]], [1], [0],
                                                                               annotation_id=[3]))
    assert res.recall[0, 0, 0, -1] == 1.0


def test_crowd_is_matched_many_times_and_only_when_nothing_else_is_left():
    # gt 0 a normal box, gt 1 a crowd over the same place. Three detections on the box: the first
    # takes gt 0 (a non-ignored gt wins over a crowd whatever the IoU order), the next two the crowd
    # (ignored, neither tp nor fp): recall 1, precision 1 at the one true positive.
    gt = _gt([[0, 0, 10, 10], [0, 0, 20, 20]], [1, 1], [0, 0], iscrowd=[False, True])
    dt = _dt([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8, 0.7], [1, 1, 1], [0, 0, 0])
    res = evaluate_detections(dt, gt, iou_thresholds=[0.5])
    assert res.recall[0, 0, 0, -1] == 1.0
    np.testing.assert_allclose(res.precision[0, :, 0, 0, -1], 1 / (1 + EPS), rtol=0, atol=0)
    # without the crowd the two later detections are false positives: precision (1, 1/2, 1/3), read
    # at recall 1 from the first detection (score 0.9)
    res2 = evaluate_detections(dt, _gt([[0, 0, 10, 10]], [1], [0]), iou_thresholds=[0.5])
    assert res2.scores[0, -1, 0, 0, -1] == 0.9


def test_equal_iou_goes_to_the_later_gt_and_unmatched_out_of_range_detections_are_ignored():
    # two gts at IoU 0.5 each from the detection; the later one (B) is taken, so the second
    # detection can still take A (IoU 0.75): recall 1 (tests/test_eval.py has the same with one
    # range). In the "small" range (area <= 32^2) both gts are small (100 px); a large unmatched
    # detection [100, 100, 200, 200] (area 10^4) is ignored there, counted as FP in "all".
    gt = _gt([[0, 0, 10, 20], [0, -10, 10, 10]], [1, 1], [0, 0])
    dt = _dt([[0, 0, 10, 10], [0, 5, 10, 20], [100, 100, 200, 200]], [0.9, 0.8, 0.95], [1, 1, 1], [0, 0, 0])
    res = evaluate_detections(dt, gt, iou_thresholds=[0.5], area_ranges=[("all", 0, 1e10), ("small", 0, 32 ** 2)])
    assert res.recall[0, 0, :, -1].tolist() == [1.0, 1.0]
    # "all": FP (0.95), TP, TP -> precision at recall 1: 2/3; "small": the FP is ignored -> 1
    np.testing.assert_allclose(res.precision[0, -1, 0, :, -1], [2 / (3 + EPS), 2 / (2 + EPS)], rtol=0, atol=0)


def test_area_range_bounds_are_inclusive():
    # gt area exactly 100 (10 x 10): in [100, 200] and in [0, 100], not in [101, 200]
    gt = _gt([[0, 0, 10, 10]], [1], [0])
    dt = _dt([[0, 0, 10, 10]], [0.9], [1], [0])
    res = evaluate_detections(dt, gt, iou_thresholds=[0.5],
                              area_ranges=[("a", 100, 200), ("b", 0, 100), ("c", 101, 200), ("d", 0, 99.5)])
    assert res.recall[0, 0, :, -1].tolist() == [1.0, 1.0, -1.0, -1.0]
    # the same with the gt's own area field (area 150 -> only in a and c), the box is unchanged
    res = evaluate_detections(dt, dict(gt, area=np.array([150.0])), iou_thresholds=[0.5],
                              area_ranges=[("a", 100, 200), ("b", 0, 100), ("c", 150, 150)])
    assert res.recall[0, 0, :, -1].tolist() == [1.0, -1.0, 1.0]


def test_threshold_one_is_read_as_one_minus_1e10():
    # a detection equal to its gt has IoU exactly 1 >= min(1, 1 - 1e-10); one a hair off does not
    gt = _gt([[0, 0, 10, 10], [20, 0, 30, 10]], [1, 1], [0, 0])
    dt = _dt([[0, 0, 10, 10], [20, 0, 30, 10 - 1e-8]], [0.9, 0.8], [1, 1], [0, 0])
    res = evaluate_detections(dt, gt, iou_thresholds=[1.0])
    assert res.recall[0, 0, 0, -1] == 0.5
    res = evaluate_detections(dt, gt, iou_thresholds=[1.0 - 2e-9])
    assert res.recall[0, 0, 0, -1] == 1.0


def test_degenerate_boxes_are_silent_and_zero():
    # crowd: u = detection area = 0 for a zero-width detection; apart from the gt inter = -5 * 5:
    # -25 / 0 (divide); a zero-area pair that meets: 0 / 0 (invalid). Both are masked to 0.
    # Flat boxes on top of each other (w > 0, h = 0 and w = 0, h > 0): 0 / 0 as well, 0 too.
    d = np.array([[0.0, 0, 0, 5], [0.0, 0, 0, 5], [0.0, 0, 5, 0], [0.0, 0, 5, 0]])
    g = np.array([[5.0, 0, 1, 5], [0.0, 0, 0, 5], [0.0, 0, 5, 0], [1.0, 0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert C._pair_iou(d, g, np.array([True, False, False, True])).tolist() == [0.0, 0.0, 0.0, 0.0]
        # and ap_per_class's 0 / 0 of a class without ground truth in the range
        res = evaluate_detections(*_two_classes())
        assert np.isnan(res.ap_per_class(area="large")).all()


def test_unmatched_detections_outside_the_range_are_ignored_with_inclusive_bounds():
    # gt [0, 0, 10, 10] (area 100), found by the second detection (0.8). The first (0.9) matches
    # nothing: in the range [0, 100] it is a false positive if its area is in [0, 100] (precision
    # 1/2 at recall 1), ignored otherwise (precision 1). Areas 100 (in, the bound is inclusive) and
    # 100.5 (out). The range [100.25, 1e9] holds no ground truth: -1 there.
    gt = _gt([[0, 0, 10, 10]], [1], [0])
    ranges = [("r", 0, 100), ("s", 100.25, 1e9)]
    for box, want in (([50, 50, 60, 60], [1 / (2 + EPS)]), ([50, 50, 60, 60.05], [1 / (1 + EPS)])):
        dt = _dt([box, [0, 0, 10, 10]], [0.9, 0.8], [1, 1], [0, 0])
        res = evaluate_detections(dt, gt, iou_thresholds=[0.5], area_ranges=ranges + [("all", 0, 1e9)])
        got = res.precision[0, -1, 0, :, -1]
        assert got[0] == want[0] and got[1] == -1.0 and got[2] == 1 / (2 + EPS)


def test_ap_per_class_defaults_to_the_last_max_det():
    # class 2 of _two_classes plus a second false positive: FP (.9), FP (.85), TP (.8). With
    # max_dets (1, 2, 3): at 3 (the default) precision 1/3 at recall 1, at 2 and 1 nothing found.
    dt, gt = _two_classes()
    dt = _dt(np.vstack([dt["boxes"], [[80, 80, 90, 90]]]), np.append(dt["scores"], 0.85), [1, 2, 2, 2],
             [0, 0, 0, 0])
    res = evaluate_detections(dt, gt, max_dets=(1, 2, 3))
    third = 1 / (3 + EPS)
    np.testing.assert_allclose(res.ap_per_class(iou_threshold=0.5), [1 / (1 + EPS), third], rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.ap_per_class(iou_threshold=0.5, max_det=2), [1 / (1 + EPS), 0.0],
                               rtol=0, atol=1e-15)
    assert res.ap_per_class(max_det=3).tolist() == res.ap_per_class().tolist()
