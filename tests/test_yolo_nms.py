"""Tests of refdet.yolo.nms: ultralytics ``non_max_suppression`` differentially (float32, bit for bit,
hypothesis inputs with tied scores, identical boxes, empty images), YOLOv5's convention, merge-NMS,
DIoU-NMS and weighted boxes fusion by golden vectors worked by hand."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.testing import strategies_yolo as ys
from refdet.yolo import nms as N


def _ultra_nms():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    return torch, pytest.importorskip("ultralytics.utils.nms")


@given(ys.yolo_predictions(), st.sampled_from([0.0, 0.25, 0.5]), st.sampled_from([0.3, 0.45, 0.7]),
       st.booleans(), st.booleans(), st.sampled_from([3, 300]), st.sampled_from([None, [0], [0, 2]]))
def test_matches_ultralytics_non_max_suppression(pk, conf, iou, agnostic, multi, max_det, classes):
    torch, un = _ultra_nms()
    pred, K = pk
    kw = dict(conf_thres=conf, iou_thres=iou, agnostic=agnostic, multi_label=multi, max_det=max_det, nc=K,
              classes=classes)
    ref, ridx = un.non_max_suppression(torch.from_numpy(pred), return_idxs=True, **kw)
    got, gidx = N.yolo_non_max_suppression(pred, return_indices=True, **kw)
    assert len(got) == len(ref)
    for r, ri, g, gi in zip(ref, ridx, got, gidx):
        assert g.dtype == np.float32 and g.shape == tuple(r.shape)
        np.testing.assert_array_equal(g, r.numpy())
        np.testing.assert_array_equal(gi, ri.numpy().reshape(-1).astype(np.int64))


def test_max_nms_cap_and_max_wh_trick_match_ultralytics():
    torch, un = _ultra_nms()
    rng = np.random.default_rng(0)
    n, K = 400, 3
    xy = rng.uniform(0, 200, (1, n, 2))
    wh = rng.uniform(5, 60, (1, n, 2))
    sc = rng.permutation(n * K).reshape(1, n, K) / (n * K)                   # distinct scores
    pred = np.concatenate([xy, wh, sc], -1).astype(np.float32).transpose(0, 2, 1).copy()
    for kw in (dict(max_nms=50), dict(max_nms=50, multi_label=True), dict(max_wh=100, agnostic=False)):
        ref = un.non_max_suppression(torch.from_numpy(pred), 0.1, 0.5, nc=K, **kw)
        got = N.yolo_non_max_suppression(pred, 0.1, 0.5, nc=K, **kw)
        np.testing.assert_array_equal(got[0], ref[0].numpy())


def test_yolov5_convention_golden():
    # YOLOv5 rows (x, y, w, h, obj, cls0, cls1): candidates by obj > conf, score = obj * cls
    #   box 0: obj 0.9, cls (0.5, 0.2) -> scores 0.45, 0.18 -> class 0, 0.45
    #   box 1: obj 0.2 (not a candidate although cls 1.0)
    #   box 2: obj 0.6, cls (0.1, 0.9) -> 0.54 for class 1; same place as box 0 but another class:
    #          the max_wh offset keeps both
    p = np.array([[[10, 10, 8, 8, 0.9, 0.5, 0.2], [50, 50, 8, 8, 0.2, 0.0, 1.0],
                   [10, 10, 8, 8, 0.6, 0.1, 0.9]]], dtype=np.float64)
    (out,) = N.yolo_non_max_suppression(p, 0.25, 0.45, convention="yolov5")
    np.testing.assert_allclose(out, [[6, 6, 14, 14, 0.54, 1], [6, 6, 14, 14, 0.45, 0]], rtol=1e-15)
    # agnostic: one NMS over both classes -> the lower-scored one is suppressed (IoU 1)
    (out,) = N.yolo_non_max_suppression(p, 0.25, 0.45, convention="yolov5", agnostic=True)
    assert out.shape == (1, 6) and out[0, 5] == 1


def test_merge_nms_golden():
    # same class: A = [0, 0, 10, 10] score 0.9, B = [0, 0, 10, 12] score 0.6 (IoU 100 / 120 = 0.83 > 0.45),
    # C far away, score 0.5. NMS keeps A and C; merge: A <- (0.9 A + 0.6 B) / 1.5 = [0, 0, 10, 10.8].
    # redundant=True then drops C (it overlaps nothing but itself: its IoU row sums to 1)
    p = np.array([[[5, 5, 10, 10, 1, 0.9], [5, 6, 10, 12, 1, 0.6], [100, 100, 10, 10, 1, 0.5]]], dtype=np.float64)
    (out,) = N.yolo_non_max_suppression(p, 0.25, 0.45, convention="yolov5", merge=True)
    np.testing.assert_allclose(out, [[0, 0, 10, 10.8, 0.9, 0]], rtol=1e-12)
    (out,) = N.yolo_non_max_suppression(p, 0.25, 0.45, convention="yolov5", merge=True, redundant=False)
    np.testing.assert_allclose(out[:, :4], [[0, 0, 10, 10.8], [95, 95, 105, 105]], rtol=1e-12)


def test_yolo_nms_bad_input_and_empty():
    with pytest.raises(ValueError, match="`conf_thres`"):
        N.yolo_non_max_suppression(np.zeros((1, 6, 7)), 1.5)
    with pytest.raises(ValueError, match="`prediction`.*NaN"):
        N.yolo_non_max_suppression(np.full((1, 6, 7), np.nan))
    with pytest.raises(ValueError, match="`prediction`.*3-D"):
        N.yolo_non_max_suppression(np.zeros((6, 7)))
    with pytest.raises(ValueError, match="`convention`"):
        N.yolo_non_max_suppression(np.zeros((1, 6, 7)), convention="detectron2")
    out = N.yolo_non_max_suppression(np.zeros((2, 6, 0), np.float32))
    assert [o.shape for o in out] == [(0, 6), (0, 6)]


# ------------------------------------------------------------------------------------- DIoU-NMS

def test_diou_nms_golden_threshold_hit_exactly():
    # A = [0, 0, 10, 10] (score 0.9), B = [0, 0, 10, 20] (0.8): IoU = 100 / 200 = 0.5; centres (5, 5)
    # and (5, 10): rho^2 = 25; enclosing box [0, 0, 10, 20]: c^2 = 100 + 400 = 500.
    #   paper (beta 1, >=): 0.5 - 25 / 500 = 0.45 >= 0.45 -> B suppressed
    #   darknet (beta 0.6, >): 0.5 - 0.05^0.6 = 0.5 - 0.1657 = 0.334 -> B kept
    #   plain NMS at 0.45 would suppress B (0.5 > 0.45)
    b = np.array([[0.0, 0, 10, 10], [0.0, 0, 10, 20]])
    s = np.array([0.9, 0.8])
    thr = 0.5 - 25 / 500
    assert N.diou_nms(b, s, thr).tolist() == [0]
    assert N.diou_nms(b, s, thr, convention="darknet").tolist() == [0, 1]
    assert N.diou_nms(b, s, thr, inclusive=False).tolist() == [0, 1]          # 0.45 > 0.45 is false
    # different classes never suppress; equal scores: the lower index first
    assert N.diou_nms(b, s, thr, idxs=np.array([0, 1])).tolist() == [0, 1]
    assert N.diou_nms(b, np.array([0.5, 0.5]), thr).tolist() == [0]
    assert N.diou_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_diou_nms_equals_plain_nms_without_distance_term():
    # concentric boxes: rho = 0, so DIoU-NMS is plain NMS
    from refdet.nms import nms
    rng = np.random.default_rng(0)
    wh = rng.uniform(1, 20, (30, 2))
    b = np.concatenate([50 - wh / 2, 50 + wh / 2], 1)
    s = rng.random(30)
    assert N.diou_nms(b, s, 0.5, inclusive=False).tolist() == nms(b, s, 0.5).tolist()


# ------------------------------------------------------------------------------------- WBF

def test_wbf_golden():
    # model 0: [0.1, 0.1, 0.5, 0.5] 0.9 (label 0) and a lone [0.7, 0.7, 0.9, 0.9] 0.8 (label 1);
    # model 1: [0.12, 0.1, 0.52, 0.5] 0.6 (label 0). IoU of the two label-0 boxes:
    #   inter 0.38 * 0.4 = 0.152, union 0.16 + 0.16 - 0.152 = 0.168 -> 0.905 > 0.55: one cluster
    #   fused = (0.9 b0 + 0.6 b1) / 1.5: x1 = (0.09 + 0.072) / 1.5 = 0.108, x2 = (0.45 + 0.312) / 1.5 = 0.508
    #   score ("avg") = (0.9 + 0.6) / 2 * min(2 models, 2 boxes) / (1 + 1) = 0.75; lone: 0.8 * 1 / 2 = 0.4
    boxes = [np.array([[0.1, 0.1, 0.5, 0.5], [0.7, 0.7, 0.9, 0.9]]), np.array([[0.12, 0.1, 0.52, 0.5]])]
    scores = [np.array([0.9, 0.8]), np.array([0.6])]
    labels = [np.array([0, 1]), np.array([0])]
    b, s, lab = N.weighted_boxes_fusion(boxes, scores, labels)
    np.testing.assert_allclose(b, [[0.108, 0.1, 0.508, 0.5], [0.7, 0.7, 0.9, 0.9]], rtol=1e-12)
    np.testing.assert_allclose(s, [0.75, 0.4], rtol=1e-12)
    assert lab.tolist() == [0, 1]
    # "max": max score / max weight: 0.9 and 0.8
    _, s, _ = N.weighted_boxes_fusion(boxes, scores, labels, conf_type="max")
    np.testing.assert_allclose(s, [0.9, 0.8], rtol=1e-12)
    # weights (2, 1): scores 1.8 and 0.6; fused = (1.8 b0 + 0.6 b1) / 2.4, score 1.2 * 2 / 3 = 0.8
    b, s, _ = N.weighted_boxes_fusion(boxes, scores, labels, weights=[2, 1])
    np.testing.assert_allclose(b[0, [0, 2]], [(0.18 + 0.072) / 2.4, (0.9 + 0.312) / 2.4], rtol=1e-12)
    np.testing.assert_allclose(s, [0.8, 1.6 / 3], rtol=1e-12)
    # IoU exactly at iou_thr does not join (strict >): two boxes with IoU 0.5 at iou_thr 0.5
    b, s, _ = N.weighted_boxes_fusion([np.array([[0.0, 0, 0.2, 0.2]]), np.array([[0.0, 0, 0.2, 0.1]])],
                                      [np.array([0.9]), np.array([0.8])], [np.array([0]), np.array([0])],
                                      iou_thr=0.5)
    assert b.shape == (2, 4)


def test_wbf_prefilter_and_empty():
    # flipped corners are swapped, coordinates clipped to [0, 1], zero-area boxes and scores below
    # skip_box_thr dropped
    b, s, lab = N.weighted_boxes_fusion([np.array([[0.5, 0.5, -0.2, 0.1], [0.3, 0.3, 0.3, 0.6], [0, 0, 1, 1]])],
                                        [np.array([0.9, 0.9, 0.05])], [np.array([3, 3, 3])], skip_box_thr=0.1)
    np.testing.assert_allclose(b, [[0.0, 0.1, 0.5, 0.5]])
    assert lab.tolist() == [3] and s.tolist() == [0.9]
    b, s, lab = N.weighted_boxes_fusion([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)])
    assert b.shape == (0, 4) and s.shape == (0,)
    with pytest.raises(ValueError, match="`weights`"):
        N.weighted_boxes_fusion([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)], weights=[1, 2])
    with pytest.raises(ValueError, match="`conf_type`"):
        N.weighted_boxes_fusion([np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)], conf_type="box_and_model_avg")
