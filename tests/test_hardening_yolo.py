"""Hardening of refdet.yolo: sizes and loops capped, thresholds refused, arguments named."""
import numpy as np
import pytest

from refdet import yolo as Y
import tests.contract.yolo as C


def test_kmean_anchors_loop_counts_capped():
    wh = np.random.default_rng(0).uniform(2, 300, (30, 2))
    with pytest.raises(ValueError, match="`gen` asks for 1,000,000,000 elements"):
        Y.kmean_anchors(wh, 4, gen=10 ** 9, rng=0)
    with pytest.raises(ValueError, match="`kmeans_iter` asks for"):
        Y.kmean_anchors(wh, 4, kmeans_iter=2 ** 63, rng=0)
    with pytest.raises(ValueError, match=r"at least n = 1000000000 sizes \(`n`\)"):
        Y.kmean_anchors(wh, 10 ** 9, rng=0)


def test_allocations_capped_before_allocating():
    asg = Y.Assignment(np.array([1, 2]), np.array([0, -1]), np.zeros((2, 4)), np.array([0.5, 0.0]))
    with pytest.raises(ValueError, match="`num_classes` asks for"):
        Y.target_scores(asg, 10 ** 9)
    with pytest.raises(ValueError, match="`batch_size` asks for"):
        Y.yolov5_build_targets(np.array([[0, 1, 0.3, 0.4, 0.3, 0.5]]), C.LEVEL_ANCH / 8, [(4, 4), (2, 2)],
                               batch_size=10 ** 9)


def test_class_counts_beyond_int64_are_named():
    (a, nl, lab, g), kw = C._atss(np.random.default_rng(0))
    with pytest.raises(ValueError, match="`num_classes` must be <= 2147483647"):
        Y.atss_assign(a, nl, lab, g, num_classes=2 ** 63)
    with pytest.raises(TypeError, match="`num_level_anchors` must be a list"):
        Y.atss_assign(a, None, lab, g, num_classes=2)


@pytest.mark.parametrize("thr", [-0.5, 1.5, float("nan")])
def test_iou_thresholds_refused(thr):
    b = C._boxes(np.random.default_rng(0))
    with pytest.raises(ValueError, match="`iou_threshold` must"):
        Y.diou_nms(b, np.linspace(1, 0, 6), thr)
    with pytest.raises(ValueError, match="`iou_thr` must"):
        Y.weighted_boxes_fusion([b / 80], [np.linspace(1, 0, 6)], [np.zeros(6, int)], iou_thr=thr)
    with pytest.raises(ValueError, match="`ignore_thresh` must"):
        Y.yolov3_assign(b[:2], np.array([0, 1]), C.LEVEL_ANCH, [8.0, 16.0], [(4, 4), (2, 2)], num_classes=2,
                        ignore_thresh=thr)


def test_flipped_gt_refused_by_yolov3_assign():
    g = C._boxes(np.random.default_rng(0), 2)[:, [2, 3, 0, 1]]
    with pytest.raises(ValueError, match="`gt_boxes` row 0 is flipped"):
        Y.yolov3_assign(g, np.array([0, 1]), C.LEVEL_ANCH, [8.0, 16.0], [(4, 4), (2, 2)], num_classes=2)


def test_messages_name_the_argument():
    with pytest.raises(ValueError, match=r"4 \* reg_max = 4000000000 \(`reg_max`"):
        Y.dfl_forward(np.zeros((2, 3, 64)), reg_max=10 ** 9)
    with pytest.raises(ValueError, match=r"at stride 1.5 \(`image_size`, `strides\[0\]`\)"):
        Y.make_anchors([(4, 4)], [1.5], image_size=(32, 32))
    with pytest.raises(ValueError, match="`clamp_margin` must be < R - 1"):
        Y.distribution_focal_loss_forward(np.zeros((4, 8)), np.ones(4), clamp_margin=10 ** 9)
    with pytest.raises(TypeError, match="`classes` must be a list"):
        Y.yolo_non_max_suppression(np.zeros((1, 6, 7), np.float32), classes=3)
    with pytest.raises(TypeError, match="`allows_overflow` must be a bool"):
        b = C._boxes(np.random.default_rng(0))
        Y.weighted_boxes_fusion([b / 80], [np.linspace(1, 0, 6)], [np.zeros(6, int)], allows_overflow=np.ones(2))
    with pytest.raises(ValueError, match="task_aligned_assign: `alpha` must"):
        (ps, pb, ap, lab, g), kw = C._tal(np.random.default_rng(0))
        Y.task_aligned_assign(ps, pb, ap, lab, g, alpha=float("inf"), **kw)


def test_yolo_losses_name_their_sequences():
    (preds, gb, gl, a, s, im), kw = C._v3_loss(np.random.default_rng(0))
    with pytest.raises(TypeError, match="`gt_boxes` must be a list"):
        Y.yolov3_loss_forward(preds, None, gl, a, s, im)
    with pytest.raises(TypeError, match="`assignments` must be a list"):
        Y.yolov3_loss_forward(preds, gb, gl, a, s, im, assignments=1.5)
    big = [(p / np.abs(p).max() * 60000).astype(np.float16) for p in preds]
    with pytest.raises(ValueError, match=r"`preds\[0\]` \(image 0\) decodes to non-finite boxes"):
        Y.yolov3_loss_forward(big, gb, gl, a, s, im)
    (preds, t, a, s), kw = C._v5_loss(np.random.default_rng(0))
    with pytest.raises(TypeError, match="`balance` must be a list"):
        Y.yolov5_loss_forward(preds, t, a, s, balance=4.0)
    with pytest.raises(TypeError, match="`sort_obj_iou` must be a bool"):
        Y.yolov5_loss_forward(preds, t, a, s, sort_obj_iou=np.array([1, 0]))
    with pytest.raises(TypeError, match=r"`build\[0\]` must be a YOLOv5LevelTargets"):
        Y.yolov5_loss_forward(preds, t, a, s, build=[np.zeros(3), np.zeros(3)])
