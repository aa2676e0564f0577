"""Pins of ``yolo_non_max_suppression``'s convention values (issue 19 item 2,
mutation/convention_coverage.md): YOLOv5's objectness scaling of the extra (mask) channels, the
class offset ``max_wh`` of the batched-NMS trick and the ``max_nms`` cap.

Each case is the smallest input on which the value decides the answer: the golden rows are worked
by hand from ultralytics 8.4 ``utils/nms.py`` / YOLOv5 v7.0 ``utils/general.py``; where ultralytics is
installed the same inputs run through its ``non_max_suppression`` too.
"""
import numpy as np
import pytest

from refdet.yolo.nms import yolo_non_max_suppression

F = np.float32


def _v5_with_mask():
    # YOLOv5 layout (B, N, 5 + K + E): one box (xywh 50, 50, 20, 20), objectness 0.5, one class 0.8,
    # one extra (mask) channel 0.6
    return np.array([[[50, 50, 20, 20, 0.5, 0.8, 0.6]]], F)


@pytest.mark.parametrize("scale_extra, mask", [(None, F(0.6) * F(0.5)), (True, F(0.6) * F(0.5)),
                                               (False, F(0.6))])
def test_yolov5_scales_the_extra_channels_by_objectness(scale_extra, mask):
    # YOLOv5 v7.0: x[:, 5:] *= x[:, 4:5] multiplies the class scores and the mask coefficients alike:
    # row = (40, 40, 60, 60, 0.4, 0, 0.3); without scale_extra the mask stays 0.6
    out = yolo_non_max_suppression(_v5_with_mask(), 0.25, 0.45, nc=1, convention="yolov5", scale_extra=scale_extra)
    assert out[0].tolist() == [[40.0, 40.0, 60.0, 60.0, F(0.8) * F(0.5), 0.0, mask]]


def test_ultralytics_profile_with_objectness_leaves_the_extra_channels():
    # ultralytics' profile (scale_extra False) given an objectness channel: the class score is scaled,
    # the mask is not
    out = yolo_non_max_suppression(_v5_with_mask(), 0.25, 0.45, nc=1, convention="ultralytics",
                                   layout="channels_last", objectness=True)
    assert out[0].tolist() == [[40.0, 40.0, 60.0, 60.0, F(0.8) * F(0.5), 0.0, F(0.6)]]
    on = yolo_non_max_suppression(_v5_with_mask(), 0.25, 0.45, nc=1, convention="ultralytics",
                                  layout="channels_last", objectness=True, scale_extra=True)
    assert on[0][0, 6] == F(0.6) * F(0.5)


def _far_boxes():
    # ultralytics layout (B, 4 + K, N): box 0 of class 0 at [7690, 7720, 7710, 7740], box 1 of class 1 at
    # [10, 40, 30, 60]. Shifted by class * max_wh = 7680 (all four coordinates), box 1 lands on box 0.
    p = np.zeros((1, 6, 2), F)
    p[0, :4, 0] = [7700, 7730, 20, 20]
    p[0, :4, 1] = [20, 50, 20, 20]
    p[0, 4, 0], p[0, 5, 1] = 0.9, 0.8            # class 0 scores box 0; class 1 scores box 1
    return p


@pytest.mark.parametrize("max_wh, kept", [(None, [0]), (7680.0, [0]), (15360.0, [0, 1])])
def test_max_wh_offset_lets_far_boxes_of_two_classes_collide(max_wh, kept):
    # the trick assumes boxes inside [0, max_wh): at 7680 box 1 + 7680 = box 0 (IoU 1 > 0.45) and is
    # suppressed across classes, as in ultralytics; an offset of 15360 keeps them apart
    out, idx = yolo_non_max_suppression(_far_boxes(), 0.25, 0.45, max_wh=max_wh, return_indices=True)
    assert idx[0].tolist() == kept


def _capped(n=30001):
    # n rows of one class above conf: n - 1 identical boxes scored 0.9 and, last by score, one disjoint
    # box scored 0.5. NMS keeps one of the identical boxes, plus the disjoint one if it was not capped.
    p = np.zeros((1, 5, n), F)
    p[0, :4] = np.array([50, 50, 20, 20], F)[:, None]
    p[0, 4] = 0.9
    p[0, 0, -1], p[0, 4, -1] = 500, 0.5
    return p


@pytest.mark.parametrize("max_nms, kept", [(None, [0]), (30000, [0]), (30001, [0, 30000])])
def test_max_nms_caps_the_rows_before_nms(max_nms, kept):
    # 30001 candidates: the cap of 30000 rows (by score) drops the disjoint box before NMS
    out, idx = yolo_non_max_suppression(_capped(), 0.25, 0.45, max_det=1000, max_nms=max_nms, return_indices=True)
    assert idx[0].tolist() == kept


# --------------------------------------------------------------------------------------------------
# the same inputs through ultralytics
# --------------------------------------------------------------------------------------------------

def _ultralytics_nms(p, **kw):
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    from ultralytics.utils.nms import non_max_suppression

    return [o.numpy() for o in non_max_suppression(torch.from_numpy(np.ascontiguousarray(p)), 0.25, 0.45, **kw)]


def test_max_wh_and_max_nms_goldens_are_ultralytics():
    got = _ultralytics_nms(_far_boxes())
    assert len(got[0]) == 1 and got[0][0, 0] == 7690.0          # box 1 suppressed by box 0
    got = _ultralytics_nms(_capped(), max_det=1000)
    assert len(got[0]) == 1                                      # the disjoint box was capped away
    ours = yolo_non_max_suppression(_capped(), 0.25, 0.45, max_det=1000)
    np.testing.assert_array_equal(ours[0], got[0])
