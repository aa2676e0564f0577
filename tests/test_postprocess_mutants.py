"""Tests of refdet.postprocess that pin what mutation testing found unpinned (issue 19): every
argument named in its error, each default of each style, the strict and inclusive score cuts, the
flat (anchor, class) index. Hand-worked values; each test takes milliseconds."""
import math

import numpy as np
import pytest

from refdet import merge_multiscale_detections as merge
from refdet import postprocess_detections as post

A = [np.array([[0, 0, 4, 4.0]])]
D = [np.zeros((1, 4))]
L2 = [np.zeros((1, 2))]


def _err(kind, msg, f, *a, **k):
    with pytest.raises(kind, match=msg):
        f(*a, **k)


def test_postprocess_names_its_arguments():
    _err(ValueError, r"^`style` must be one of 'retinanet', 'rpn'; got 'x'$", post, L2, D, A, (8, 8), style="x")
    _err(ValueError, r"^`cls_logits\[0\]` must have shape \(N, K\); got \(1, 2, 1\)$", post, [np.zeros((1, 2, 1))], D,
         A, (8, 8))
    _err(ValueError, r"^`cls_logits\[0\]` must have shape \(N, 1\); got \(1, 2\)$", post, L2, D, A, (8, 8), style="rpn")
    _err(ValueError, r"^`box_deltas\[0\]` must have shape \(N, 4\); got \(1, 3\)$", post, L2, [np.zeros((1, 3))], A,
         (8, 8))
    _err(ValueError, r"^`anchors\[0\]` must have shape \(N, 4\); got \(1, 5\)$", post, L2, D, [np.zeros((1, 5))], (8, 8))
    _err(ValueError, r"^`anchors\[1\]` must have shape \(N, 4\); got \(1, 5\)$", post, L2 + L2, D + D,
         A + [np.zeros((1, 5))], (8, 8))
    _err(ValueError, r"^`cls_logits`, `box_deltas` and `anchors` must have one entry per level; got 2, 1 and 1$",
         post, L2 + L2, D, A, (8, 8))
    _err(ValueError, r"^`cls_logits`, `box_deltas` and `anchors` must have one entry per level; got 1, 2 and 1$",
         post, L2, D + D, A, (8, 8))
    _err(ValueError, r"^`cls_logits`, `box_deltas` and `anchors` must have one entry per level; got 1, 1 and 2$",
         post, L2, D, A + A, (8, 8))
    _err(ValueError, r"^level 0: `cls_logits`, `box_deltas` and `anchors` must have the same number of anchors; "
                     r"got 2, 1 and 1$", post, [np.zeros((2, 2))], D, A, (8, 8))
    _err(ValueError, r"^level 0: .* got 1, 2 and 1$", post, L2, [np.zeros((2, 4))], A, (8, 8))
    _err(ValueError, r"^level 0: .* got 1, 1 and 2$", post, L2, D, [np.zeros((2, 4))], (8, 8))
    _err(ValueError, r"^`image_size` must be positive; got \(0, 8\)$", post, L2, D, A, (0, 8))
    _err(ValueError, r"^`topk_candidates` must be >= 0; got -1$", post, L2, D, A, (8, 8), topk_candidates=-1)
    _err(ValueError, r"^`detections_per_image` must be >= 0; got -1$", post, L2, D, A, (8, 8), detections_per_image=-1)
    _err(ValueError, r"^`cls_logits\[0\]` must not contain NaN; got nan at index \(0, 0\)$", post,
         [np.full((1, 2), np.nan)], D, A, (8, 8))
    _err(ValueError, r"^`box_deltas\[0\]` must not contain NaN or inf; got nan at index \(0, 0\)$", post, L2,
         [np.full((1, 4), np.nan)], A, (8, 8))
    _err(TypeError, r"^`cls_logits\[0\]` must be an array of numbers; got str 'a'$", post, ["a"], D, A, (8, 8))
    _err(TypeError, r"^`cls_logits\[0\]` must be an array of real numbers; got dtype bool", post,
         [np.zeros((1, 2), bool)], D, A, (8, 8))
    _err(ValueError, r"^`score_threshold` must lie in \[0, 1\] \(the scores it filters are sigmoid probabilities\); "
                     r"got 2.0$", post, L2, D, A, (8, 8), score_threshold=2)
    _err(ValueError, r"^`nms_threshold` must lie in \[0, 1\]", post, L2, D, A, (8, 8), nms_threshold=2)
    _err(ValueError, r"^batched_nms: `coordinate_trick` must be one of", post, L2, D, A, (8, 8), coordinate_trick="x")
    # +-inf logits are scores 1 and 0
    d = post([np.array([[np.inf, -np.inf]])], D, A, (8, 8))
    assert d.scores.tolist() == [1.0] and d.labels.tolist() == [0]


def test_merge_names_its_arguments():
    det = (A[0], np.zeros(1), np.zeros(1, np.int64))
    _err(TypeError, r"^`detections` must be a list of \(boxes, scores, labels\); got str$", merge, "x", [1])
    _err(ValueError, r"^`scales` must have one entry per element of `detections` \(0\); got \[1\]$", merge, [], [1])
    _err(ValueError, r"^`scales` must have one entry per element of `detections` \(1\); got 1$", merge, [det], 1)
    _err(TypeError, r"^`detections\[0\]` must be \(boxes, scores, labels\); got tuple$", merge, [(A[0],)], [1])
    _err(TypeError, r"^`detections\[0\]` must be \(boxes, scores, labels\); got int$", merge, [5], [1])
    _err(ValueError, r"^`scales\[0\]` must be > 0; got 0.0$", merge, [det], [0])
    _err(ValueError, r"^`scales\[1\]` must be a number or a pair \(sy, sx\); got \(1, 2, 3\)$", merge, [det, det],
         [1, (1, 2, 3)])
    _err(ValueError, r"^`scales\[0\]\[0\]` must be > 0; got 0.0$", merge, [det], [(0, 2)])
    _err(ValueError, r"^`scales\[0\]\[1\]` must be > 0; got -2.0$", merge, [det], [(1, -2)])
    _err(ValueError, r"^`max_detections` must be >= 0; got -1$", merge, [det], [1], max_detections=-1)
    _err(TypeError, r"^`detections\[1\]\.boxes` must be an array of real numbers; got dtype bool", merge,
         [det, (A[0].astype(bool), det[1], det[2])], [1, 1])
    _err(ValueError, r"^`detections\[0\]\.scores` must have length 1", merge, [(A[0], np.zeros(2), det[2])], [1])
    _err(TypeError, r"^`detections\[0\]\.labels` must be an integer array; got dtype float64$", merge,
         [(A[0], det[1], np.zeros(1))], [1])
    _err(ValueError, r"^`iou_threshold` must lie in \[0, 1\]", merge, [det], [1], 2.0)
    _err(TypeError, r"^`class_aware` must be a bool \(True or False\); got int 1$", merge, [det], [1], class_aware=1)


# ------------------------------------------------------------------------- defaults per style

def _logit(p):
    return math.log(p / (1 - p))


def test_retinanet_defaults():
    # score_threshold 0.05 (strict): sigmoid(logit(0.0502)) kept, sigmoid(logit(0.0498)) dropped
    anchors = [np.array([[0, 0, 4, 4], [10, 10, 14, 14.0]])]
    logits = [np.array([[_logit(0.0502)], [_logit(0.0498)]])]
    d = post(logits, [np.zeros((2, 4))], anchors, (20, 20))
    assert d.boxes.tolist() == [[0, 0, 4, 4]]
    # nms_threshold 0.5: IoU 0.6 suppresses (RPN's 0.7 would not)
    anchors = [np.array([[0, 0, 10, 10], [0, 0, 10, 6.0]])]
    logits = [np.array([[2.0], [1.0]])]
    assert len(post(logits, [np.zeros((2, 4))], anchors, (20, 20)).scores) == 1
    # no min_size filter: a box 0.0005 wide stays
    tiny = [np.array([[1, 1, 1.0005, 3]])]
    assert len(post([np.array([[2.0]])], D, tiny, (20, 20)).scores) == 1
    # the score cut is strict: sigmoid(0) = 0.5 is not > 0.5
    assert len(post([np.array([[0.0]])], D, A, (8, 8), score_threshold=0.5).scores) == 0
    assert len(post([np.array([[1e-9]])], D, A, (8, 8), score_threshold=0.5).scores) == 1


def test_rpn_defaults():
    # score_threshold 0.0 (inclusive): a logit of -inf gives score 0 and stays
    d = post([np.array([-np.inf])], D, A, (8, 8), style="rpn")
    assert d.scores.tolist() == [0.0] and d.labels.tolist() == [0]
    # the inclusive cut: sigmoid(0) = 0.5 >= 0.5 stays
    assert len(post([np.array([0.0])], D, A, (8, 8), style="rpn", score_threshold=0.5).scores) == 1
    # nms_threshold 0.7: IoU 0.6 kept
    anchors = [np.array([[0, 0, 10, 10], [0, 0, 10, 6.0]])]
    assert len(post([np.array([2.0, 1.0])], [np.zeros((2, 4))], anchors, (20, 20), style="rpn").scores) == 2
    # min_size 1e-3: a box 0.0005 wide goes, one 0.002 wide stays
    tiny = [np.array([[1, 1, 1.0005, 3], [5, 5, 5.002, 7]])]
    d = post([np.array([2.0, 1.0])], [np.zeros((2, 4))], tiny, (20, 20), style="rpn")
    assert d.boxes[:, 0].tolist() == [5.0]
    # an explicit min_size also applies under retinanet
    d = post([np.array([[2.0], [1.0]])], [np.zeros((2, 4))], tiny, (20, 20), min_size=1e-3)
    assert d.boxes[:, 0].tolist() == [5.0]


@pytest.mark.parametrize("style, cap", [("retinanet", 300), ("rpn", 1000)])
def test_detections_per_image_default(style, cap):
    n = cap + 5
    x = np.arange(n, dtype=np.float64)[:, None] * 3
    anchors = [np.concatenate([x, x * 0, x + 2, x * 0 + 2], axis=1)]       # disjoint, 2 x 2
    logits = np.linspace(3, 1, n)[:, None]
    d = post([logits], [np.zeros((n, 4))], anchors, (10, 4 * n), style=style, topk_candidates=n)
    assert len(d.scores) == cap
    # topk_candidates defaults to 1000 per level
    d = post([logits], [np.zeros((n, 4))], anchors, (10, 4 * n), style=style, detections_per_image=n)
    assert len(d.scores) == min(n, 1000)


def test_flat_index_is_anchor_times_classes_plus_class():
    # 3 anchors x 2 classes; the best scores: (anchor 2, class 0), (anchor 1, class 1), (anchor 0, class 1)
    anchors = [np.array([[0, 0, 2, 2], [10, 10, 12, 12], [20, 20, 22, 22.0]])]
    logits = [np.array([[-9.0, 1.0], [-9.0, 2.0], [3.0, -9.0]])]
    d = post(logits, [np.zeros((3, 4))], anchors, (30, 30))
    assert d.labels.tolist() == [0, 1, 1]
    assert d.boxes[:, 0].tolist() == [20, 10, 0]
    assert d.labels.dtype == np.int64
    # top-k keeps the best two candidates (ties to the lower flat index)
    d = post([np.array([[1.0, 1.0], [1.0, -9.0], [-9.0, -9.0]])], [np.zeros((3, 4))], anchors, (30, 30),
             topk_candidates=2)
    assert d.labels.tolist() == [0, 1] and d.boxes[:, 0].tolist() == [0, 0]
    # RPN: top-k on the logits of each level, labels are the levels
    d = post([np.array([1.0, 3.0]), np.array([2.0])], [np.zeros((2, 4)), np.zeros((1, 4))],
             [anchors[0][:2], anchors[0][2:]], (30, 30), style="rpn", topk_candidates=1)
    assert d.labels.tolist() == [0, 1] and d.boxes[:, 0].tolist() == [10, 20]


def test_sigmoid_is_exact_on_both_sides():
    for x in (-30.0, -2.0, 0.0, 2.0, 30.0):
        d = post([np.array([[x]])], D, A, (8, 8), score_threshold=0.0)
        want = 1 / (1 + math.exp(-x))
        assert d.scores[0] == pytest.approx(want, rel=1e-15, abs=0)
    d = post([np.array([[2.0]], np.float32)], D, A, (8, 8))
    assert d.scores.dtype == np.float32


def test_decoding_and_clipping_per_level():
    # dx = 0.5 moves a 4-wide anchor by 2; weights divide the deltas (x by 2); clipping to (H, W)
    anchors = [np.array([[0, 0, 4, 4.0]]), np.array([[4, 4, 8, 8.0]])]
    deltas = [np.array([[0.5, 0, 0, 0]]), np.array([[0, 0.5, 0, 0]])]
    logits = [np.array([[2.0]]), np.array([[1.0]])]
    d = post(logits, deltas, anchors, (20, 20))
    assert d.boxes.tolist() == [[2, 0, 6, 4], [4, 6, 8, 10]]
    d = post(logits, deltas, anchors, (20, 20), weights=(2.0, 1.0, 1.0, 1.0))
    assert d.boxes.tolist() == [[1, 0, 5, 4], [4, 6, 8, 10]]
    d = post(logits, deltas, anchors, (9, 7))
    assert d.boxes.tolist() == [[2, 0, 6, 4], [4, 6, 7, 9]]
    # clamp: dw = 10 is clamped to log(1000 / 16) by default: w = 4 * 62.5
    mid = [np.array([[500, 500, 504, 504.0]])]
    d = post([np.array([[2.0]])], [np.array([[0, 0, 10.0, 0]])], mid, (1000, 1000))
    assert d.boxes[0, 2] - d.boxes[0, 0] == pytest.approx(250.0, rel=1e-12)
    d = post([np.array([[2.0]])], [np.array([[0, 0, 1.0, 0]])], mid, (1000, 1000), clamp=0.5)
    assert d.boxes[0, 2] - d.boxes[0, 0] == pytest.approx(4 * math.exp(0.5), rel=1e-12)
    # the same through the RPN branch (which decodes before its top-k)
    d = post([np.array([2.0])], [np.array([[0, 0, 10.0, 0]])], mid, (1000, 1000), style="rpn")
    assert d.boxes[0, 2] - d.boxes[0, 0] == pytest.approx(250.0, rel=1e-12)
    d = post([np.array([2.0])], [np.array([[0, 0, 1.0, 0]])], mid, (1000, 1000), style="rpn", clamp=0.5)
    assert d.boxes[0, 2] - d.boxes[0, 0] == pytest.approx(4 * math.exp(0.5), rel=1e-12)
    d = post([np.array([2.0])], [np.array([[0.5, 0, 0, 0]])], mid, (1000, 1000), style="rpn",
             weights=(2.0, 1.0, 1.0, 1.0))
    assert d.boxes.tolist() == [[501, 500, 505, 504]]


def test_caffe_convention_reaches_every_stage():
    # +1 widths in decoding, W - 1 clipping, IoU >= threshold
    anchors = [np.array([[0, 0, 9, 9.0]])]
    d = post([np.array([[2.0]])], D, anchors, (5, 5), convention="caffe")
    assert d.boxes.tolist() == [[0, 0, 4, 4]]
    d = post([np.array([[2.0]])], D, anchors, (5, 5))
    assert d.boxes.tolist() == [[0, 0, 5, 5]]


def test_merge_defaults_and_scales():
    # default iou_threshold 0.5 (strict): IoU exactly 0.5 keeps both
    b = np.array([[0, 0, 4, 4], [0, 0, 4, 2.0]])
    det = (b, np.array([0.9, 0.8]), np.array([0, 0]))
    assert len(merge([det], [1.0]).scores) == 2
    # scales divide x by sx and y by sy
    out = merge([(np.array([[4, 6, 8, 12.0]]), np.array([0.5]), np.array([3]))], [(3.0, 2.0)])
    assert out.boxes.tolist() == [[2, 2, 4, 4]] and out.labels.tolist() == [3]
    out = merge([(np.array([[4, 6, 8, 12.0]]), np.array([0.5]), np.array([3]))], [np.float64(2.0)])
    assert out.boxes.tolist() == [[2, 3, 4, 6]]
    # class_aware default True: identical boxes of two classes both stay
    two = (np.array([[0, 0, 4, 4], [0, 0, 4, 4.0]]), np.array([0.9, 0.8]), np.array([0, 1]))
    assert len(merge([two], [1.0]).scores) == 2
    assert len(merge([two], [1.0], class_aware=False).scores) == 1
    assert len(merge([two], [1.0], max_detections=0).scores) == 0
    e = merge([], [])
    assert e.boxes.shape == (0, 4) and e.scores.shape == (0,) and e.labels.shape == (0,)
    assert e.labels.dtype == np.int64
    # float32 boxes stay float32 (the scale factors in the boxes' dtype)
    out = merge([(np.array([[4, 6, 8, 12]], np.float32), np.array([0.5], np.float32), np.array([3]))], [0.1])
    assert out.boxes.dtype == np.float32
    assert out.boxes.tolist() == (np.array([[4, 6, 8, 12]], np.float32) / np.float32(0.1)).tolist()
    # labels must match the boxes
    with pytest.raises(ValueError, match=r"^`detections\[0\]\.labels` must have length 2; got length 1$"):
        merge([(two[0], two[1], np.array([0]))], [1.0])
    # a list of detections as a list, not a tuple, works as well
    assert len(merge([list(two)], [1.0]).scores) == 2


def test_coordinate_trick_reaches_nms_also_as_a_numpy_bool():
    # torchvision's trick shifts class 1 by max + 1 = 1000001, where float32 spacing is 0.0625: the
    # two class-1 boxes (IoU 0.94 exactly) round onto each other and the second is suppressed at 0.95
    a = np.array([[1e6 - 10, 0, 1e6, 10], [0, 0, 1, 1], [0.03, 0, 1.03, 1]], np.float32)
    lg = np.array([[5, -9], [-9, 5], [-9, 4]], np.float32)
    size = (10 ** 6 + 10, 10 ** 6 + 10)
    for style_kw in ({}, {"style": "rpn"}):
        logits = lg if not style_kw else lg.max(axis=1)
        for trick, want in ((True, 2), (np.bool_(True), 2), ("torchvision", 2), (False, 3), (np.bool_(False), 3)):
            d = post([logits], [np.zeros((3, 4), np.float32)], [a], size, nms_threshold=0.95,
                     coordinate_trick=trick, **style_kw)
            assert len(d.scores) == (want if not style_kw else 3), (trick, style_kw)


@pytest.mark.parametrize("style", ["retinanet", "rpn"])
def test_no_levels_give_empty_detections(style):
    d = post([], [], [], (8, 8), style=style)
    assert d.boxes.shape == (0, 4) and d.scores.shape == (0,) and d.labels.shape == (0,)
    assert d.boxes.dtype == d.scores.dtype == np.float64 and d.labels.dtype == np.int64


def test_single_array_levels_and_rpn_column():
    # one level may be given as a bare array; RPN logits as (N,) or (N, 1)
    d1 = post(np.array([[2.0, -9.0]]), np.zeros((1, 4)), A[0], (8, 8))
    assert d1.labels.tolist() == [0]
    d2 = post(np.array([2.0]), np.zeros((1, 4)), A[0], (8, 8), style="rpn")
    d3 = post(np.array([[2.0]]), np.zeros((1, 4)), A[0], (8, 8), style="rpn")
    assert d2.labels.dtype == np.int64 and d2.labels.tolist() == [0]
    # anything that is not a list or tuple is one level
    with pytest.raises(ValueError, match=r"^`cls_logits\[0\]` must have shape \(N, K\); got \(\)$"):
        post(5, np.zeros((1, 4)), A[0], (8, 8))
    assert d2.scores.tolist() == d3.scores.tolist() == [1 / (1 + math.exp(-2.0))]
