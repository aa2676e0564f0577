"""Hardening of refdet.nms and refdet.postprocess: IoU thresholds outside [0, 1] refused."""
import numpy as np
import pytest

import refdet

B = np.array([[0, 0, 2, 2], [0, 0, 2, 1], [5, 5, 6, 6.0]])
S = np.array([0.9, 0.8, 0.7])
BAD = [1.5, -0.1, float("nan"), float("inf")]


@pytest.mark.parametrize("thr", BAD)
def test_nms_family_refuses_thresholds_outside_unit_interval(thr):
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        refdet.nms(B, S, thr)
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        refdet.batched_nms(B, S, np.array([0, 0, 1]), thr)
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        refdet.soft_nms(B, S, method="linear", iou_threshold=thr)
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        refdet.merge_multiscale_detections([(B, S, np.array([0, 0, 1]))], [1.0], iou_threshold=thr)


def test_nms_message_names_the_source():
    with pytest.raises(ValueError, match=r"`iou_threshold` must lie in \[0, 1\] \(ONNX NonMaxSuppression"):
        refdet.nms(B, S, 1.5)


def test_threshold_ends_are_answers():
    assert refdet.nms(B, S, 1.0).tolist() == [0, 1, 2]
    assert refdet.nms(B, S, 0.0).tolist() == [0, 2]


def test_onnx_and_soft_nms_score_thresholds_are_any_real():
    # raw scores, no range in the specification: a documented answer, not an error
    b = B[None]
    s = np.array([[[3.0, -2.0, 0.5]]])
    got = refdet.onnx_non_max_suppression(b, s, 10, 0.5, score_threshold=-1.0)
    assert got[:, 2].tolist() == [0, 2]
    r = refdet.soft_nms(B, S * 10 - 5, method="linear", iou_threshold=0.3, score_threshold=-10.0)
    assert len(r.indices) == 3


@pytest.mark.parametrize("kw", [{"score_threshold": 1.5}, {"score_threshold": -0.1}, {"nms_threshold": 2.0},
                                {"nms_threshold": float("nan")}])
def test_postprocess_thresholds_refused(kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=f"`{name}` must"):
        refdet.postprocess_detections([np.zeros((3, 2))], [np.zeros((3, 4))], [B], (8, 8), **kw)


def test_merge_class_aware_must_be_bool():
    with pytest.raises(TypeError, match="`class_aware` must be a bool"):
        refdet.merge_multiscale_detections([(B, S, np.array([0, 0, 1]))], [1.0], class_aware=np.array([1, 0]))
