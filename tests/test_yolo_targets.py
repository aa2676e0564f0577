"""Tests of refdet.yolo.targets: YOLOv3 (darknet) and YOLOv5 grid targets, golden vectors worked by
hand from the papers/code, YOLOv5's rules held equal to a plain loop written from its description."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.testing import strategies_yolo as ys
from refdet.yolo import targets as Tg
from refdet.yolo.anchors import YOLOV3_ANCHORS

SIZES_416 = [(52, 52), (26, 26), (13, 13)]
STRIDES = [8.0, 16.0, 32.0]


# ------------------------------------------------------------------------------------------ YOLOv3

def test_yolov3_best_anchor_and_cell_golden():
    # gt 100 x 100 centred at (200, 120). Centre-aligned IoU with the nine COCO anchors:
    #   (116, 90): inter 100 * 90 = 9000, union 10000 + 10440 - 9000 = 11440 -> 0.787 (the best)
    #   (59, 119): inter 59 * 100 = 5900, union 10000 + 7021 - 5900 = 11121 -> 0.531
    #   (156, 198): inter 10000, union 30888 -> 0.324; the small ones are smaller still
    # (116, 90) is template 0 of level 2 (stride 32): cell (j, i) = (floor(120/32), floor(200/32)) = (3, 6)
    g = np.array([[150.0, 70, 250, 170]])
    out = Tg.yolov3_assign(g, np.array([4]), YOLOV3_ANCHORS, STRIDES, SIZES_416, num_classes=80)
    assert [int((o.gt_index >= 0).sum()) for o in out] == [0, 0, 1]
    assert out[2].gt_index[0, 3, 6] == 0 and out[2].labels[0, 3, 6] == 4 and out[2].quality[0, 3, 6] == 1
    np.testing.assert_array_equal(out[2].boxes[0, 3, 6], g[0])
    assert np.all(out[0].labels == 80)


def test_yolov3_ignore_threshold_is_strict_and_responsibility_wins():
    # level 0 prediction equal to a gt (IoU 1 > 0.7) is ignored (-2); one with IoU exactly 0.7
    # ([0, 0, 7, 10] vs [0, 0, 10, 10]: 70 / 100) is not (darknet: best_iou > ignore_thresh)
    A, (h, w) = 3, SIZES_416[0]
    g = np.array([[0.0, 0, 10, 10]])
    preds = [np.tile(np.array([500.0, 500, 501, 501]), (A, hh, ww, 1)) for hh, ww in SIZES_416]
    preds[0][1, 5, 5] = [0, 0, 10, 10]
    preds[0][2, 5, 5] = [0, 0, 7, 10]
    out = Tg.yolov3_assign(g, np.array([0]), YOLOV3_ANCHORS, STRIDES, SIZES_416, num_classes=2, pred_boxes=preds)
    assert out[0].gt_index[1, 5, 5] == -2 and out[0].gt_index[2, 5, 5] == -1
    assert out[0].best_iou[2, 5, 5] == 0.7
    # the responsible prediction (10 x 10 -> template (10, 13) of level 0, cell (0, 0)) is positive
    # even when its own prediction overlaps the gt above the threshold
    preds[0][0, 0, 0] = [0, 0, 10, 10]
    out = Tg.yolov3_assign(g, np.array([0]), YOLOV3_ANCHORS, STRIDES, SIZES_416, num_classes=2, pred_boxes=preds)
    assert out[0].gt_index[0, 0, 0] == 0


def test_yolov3_later_gt_overwrites_same_cell_and_empty():
    # two gts with the same best template and cell: the later one is responsible (darknet overwrites)
    g = np.array([[0.0, 0, 10, 13], [1.0, 1, 11, 14]])
    out = Tg.yolov3_assign(g, np.array([0, 1]), YOLOV3_ANCHORS, STRIDES, SIZES_416, num_classes=2)
    assert out[0].gt_index[0, 0, 0] == 1 and out[0].labels[0, 0, 0] == 1
    out = Tg.yolov3_assign(np.zeros((0, 4)), np.zeros(0, np.int64), YOLOV3_ANCHORS, STRIDES, SIZES_416,
                           num_classes=2)
    assert all(np.all(o.gt_index == -1) for o in out)


def test_yolov3_bad_input():
    with pytest.raises(ValueError, match="`feature_sizes`"):
        Tg.yolov3_assign(np.zeros((0, 4)), np.zeros(0, np.int64), YOLOV3_ANCHORS, STRIDES, SIZES_416[:2],
                         num_classes=2)
    with pytest.raises(ValueError, match="`anchors`.*positive"):
        Tg.yolov3_assign(np.zeros((0, 4)), np.zeros(0, np.int64), -YOLOV3_ANCHORS, STRIDES, SIZES_416,
                         num_classes=2)
    with pytest.raises(ValueError, match=r"`pred_boxes\[0\]`"):
        Tg.yolov3_assign(np.zeros((0, 4)), np.zeros(0, np.int64), YOLOV3_ANCHORS, STRIDES, SIZES_416,
                         num_classes=2, pred_boxes=[np.zeros((3, 5, 5, 4))] * 3)


# ------------------------------------------------------------------------------------------ YOLOv5

GRID_ANCH = np.array([[[1.0, 1.0], [2.0, 2.0], [8.0, 8.0]]])


def test_yolov5_build_targets_golden():
    # 4 x 4 grid; target (x, y, w, h) = (0.3125, 0.59375, 0.25, 0.25): gxy = (1.25, 2.375), gwh = (1, 1)
    # ratio test (anchor_t = 4): (1, 1) -> 1; (2, 2) -> max(0.5, 2) = 2 < 4; (8, 8) -> 8: rejected
    # neighbours: x: 1.25 % 1 = 0.25 < 0.5 and 1.25 > 1 -> left; y: 0.375 < 0.5 and 2.375 > 1 -> up;
    #   right: (4 - 1.25) % 1 = 0.75 no; down: (4 - 2.375) % 1 = 0.625 no
    # entries (kind-major, anchor-minor): centre a0, a1 at cell (1, 2); left a0, a1 at (0, 2);
    #   up a0, a1 at (1, 1); tbox xy = gxy - cell: (0.25, 0.375), (1.25, 0.375), (0.25, 1.375)
    t = np.array([[0, 2, 0.3125, 0.59375, 0.25, 0.25]])
    (lv,) = Tg.yolov5_build_targets(t, GRID_ANCH, [(4, 4)])
    assert lv.anchor.tolist() == [0, 1, 0, 1, 0, 1]
    assert lv.gx.tolist() == [1, 1, 0, 0, 1, 1] and lv.gy.tolist() == [2, 2, 2, 2, 1, 1]
    assert lv.labels.tolist() == [2] * 6 and lv.gt_index.tolist() == [0] * 6
    np.testing.assert_array_equal(lv.boxes[:, :2], [[0.25, 0.375]] * 2 + [[1.25, 0.375]] * 2 + [[0.25, 1.375]] * 2)
    np.testing.assert_array_equal(lv.boxes[:, 2:], np.ones((6, 2)))
    np.testing.assert_array_equal(lv.anchors, GRID_ANCH[0, [0, 1, 0, 1, 0, 1]])
    assert lv.dense_gt_index[0, 0, 2, 1] == 0 and lv.dense_gt_index[0, 2].max() == -1


def test_yolov5_thresholds_are_strict():
    # gx = 1.5: 1.5 % 1 = 0.5 is not < 0.5 -> no left cell; right: (4 - 1.5) % 1 = 0.5 -> no right.
    # gy = 1.0: not > 1 -> no up cell; (4 - 1) % 1 = 0 < 0.5 and 3 > 1 -> down.
    # ratio exactly 4 (w = 1 grid vs anchor 4 ... here gwh = 0.25 vs anchor 1) is rejected (strict <)
    t = np.array([[0, 0, 0.375, 0.25, 0.25, 0.25], [0, 1, 0.375, 0.25, 0.0625, 0.0625]])
    (lv,) = Tg.yolov5_build_targets(t, GRID_ANCH[:, :1], [(4, 4)])
    assert lv.gt_index.tolist() == [0, 0]                        # centre + down for target 0; target 1 rejected
    # the "down" cell of a centre exactly on a border is trunc(1.0 + 0.5) = 1: the centre's own cell
    # again, a duplicate entry (tbox y = 1.0 - 1 = 0 for both)
    assert (lv.gx.tolist(), lv.gy.tolist()) == ([1, 1], [1, 1])
    np.testing.assert_array_equal(lv.boxes[:, :2], [[0.5, 0.0], [0.5, 0.0]])


def _loop_build_targets(t, anchors, h, w, anchor_t=4.0):
    """YOLOv5's rules written as loops: per target, per template, the centre cell and the neighbours."""
    entries = []
    for kind in range(5):
        for a, (aw, ah) in enumerate(anchors):
            for i, (img, cls, x, y, bw, bh) in enumerate(t):
                gx, gy, gw, gh = x * w, y * h, bw * w, bh * h
                if not max(gw / aw, aw / gw, gh / ah, ah / gh) < anchor_t:
                    continue
                near = [True, gx % 1 < 0.5 and gx > 1, gy % 1 < 0.5 and gy > 1,
                        (w - gx) % 1 < 0.5 and w - gx > 1, (h - gy) % 1 < 0.5 and h - gy > 1]
                if not near[kind]:
                    continue
                ox, oy = [(0, 0), (0.5, 0), (0, 0.5), (-0.5, 0), (0, -0.5)][kind]
                ci, cj = int(gx - ox), int(gy - oy)
                entries.append((int(img), a, min(max(cj, 0), h - 1), min(max(ci, 0), w - 1), i, int(cls),
                                gx - ci, gy - cj, gw, gh))
    return entries


@given(ys.yolo_targets(), st.sampled_from([(4, 4), (5, 3), (8, 8)]))
def test_yolov5_build_targets_equals_loop(t, hw):
    h, w = hw
    anchors = np.array([[0.5, 0.75], [1.0, 2.0], [3.0, 1.5]])
    (lv,) = Tg.yolov5_build_targets(t, anchors[None], [hw], batch_size=2)
    got = list(zip(lv.image.tolist(), lv.anchor.tolist(), lv.gy.tolist(), lv.gx.tolist(), lv.gt_index.tolist(),
                   lv.labels.tolist(), *[lv.boxes[:, k].tolist() for k in range(4)]))
    assert got == _loop_build_targets(t, anchors, h, w)
    # dense view: the last entry written per cell
    dense = np.full((2, 3, h, w), -1)
    for e in got:
        dense[e[0], e[1], e[2], e[3]] = e[4]
    np.testing.assert_array_equal(lv.dense_gt_index, dense)


def test_yolov5_build_targets_empty_and_bad_input():
    (lv,) = Tg.yolov5_build_targets(np.zeros((0, 6)), GRID_ANCH, [(4, 4)], batch_size=2)
    assert lv.image.size == 0 and lv.dense_gt_index.shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="`targets`.*\\(T, 6\\)"):
        Tg.yolov5_build_targets(np.zeros((3, 5)), GRID_ANCH, [(4, 4)])
    with pytest.raises(ValueError, match="`anchor_t`"):
        Tg.yolov5_build_targets(np.zeros((0, 6)), GRID_ANCH, [(4, 4)], anchor_t=1.0)
    with pytest.raises(ValueError, match="`targets`.*NaN"):
        Tg.yolov5_build_targets(np.full((1, 6), np.nan), GRID_ANCH, [(4, 4)])
    with pytest.raises(ValueError, match="image index.*batch_size"):
        Tg.yolov5_build_targets(np.array([[3, 0, 0.5, 0.5, 0.1, 0.1]]), GRID_ANCH, [(4, 4)], batch_size=2)
