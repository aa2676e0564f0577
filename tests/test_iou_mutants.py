"""Tests written from the mutation runs of refdet.iou and refdet._iou_engine (mutation/results.md).

Every public IoU function has three shapes (pairwise (N, M), paired (N,), paired forward with a
cache) that forward the same knobs. ``test_every_knob_reaches_every_shape`` gives each knob a pair of
boxes on which that knob changes the answer, and holds all three shapes to one another (the paired
ones are the diagonal of the pairwise one, bit for bit) and to a value different from the knob's
default: a shape that drops a knob, or passes it as None (the profile's value), fails.
The other tests pin single branches with values worked by hand in the comments.
"""
import math

import numpy as np
import pytest

from refdet import iou as riou

F16 = np.float16
F32 = np.float32

FAMILY = {
    "iou": (riou.box_iou, riou.box_iou_paired, riou.box_iou_paired_forward),
    "giou": (riou.generalized_box_iou, riou.generalized_box_iou_paired, riou.generalized_box_iou_paired_forward),
    "diou": (riou.distance_box_iou, riou.distance_box_iou_paired, riou.distance_box_iou_paired_forward),
    "ciou": (riou.complete_box_iou, riou.complete_box_iou_paired, riou.complete_box_iou_paired_forward),
}

A = np.array([[0.0, 0.0, 10.0, 10.0]])
B = np.array([[5.0, 5.0, 15.0, 15.0]])
POINT = np.array([[1.0, 1.0, 1.0, 1.0]])
FLIPPED_B = np.array([[15.0, 15.0, 5.0, 5.0]])  # B given by its other diagonal
# both boxes flipped: the enclosing width max(x2) - min(x1) = 2 - 10 = -8 is negative (clamped or not)
FLIP_A = np.array([[10.0, 10.0, 0.0, 0.0]])
FLIP_B = np.array([[12.0, 12.0, 2.0, 2.0]])
# float16 pair whose float16 intersection width differs from the float32 one (see test_iou_pinned.py)
H1 = np.array([[0.0625, 0, 1000.5, 1]], dtype=F16)
H2 = np.array([[0, 0, 1024, 1]], dtype=F16)
# a tall box and a wide box, overlapping a little: an aspect term v > 0 and IoU < 0.5
TALL = np.array([[0.0, 0.0, 2.0, 10.0]])
WIDE = np.array([[1.0, 1.0, 11.0, 3.0]])
# far apart, different aspect ratios: CIoU = DIoU - alpha v < -1
FAR1 = np.array([[0.0, 0.0, 1.0, 10.0]])
FAR2 = np.array([[100.0, 0.0, 110.0, 1.0]])
# centre sums that overflow float64 where the halves do not: ((X1 + X2) - (x1 + x2))^2 = 4e308 = inf,
# ((X1 + X2)/2 - (x1 + x2)/2)^2 = 1e308
HUGE1 = np.array([[0.0, 0.0, 1.0, 1.0]])
HUGE2 = np.array([[1e154, 0.0, 1e154 + 1e140, 1.0]])


def _atan_scaled(x):
    return np.arctan(x) * 1.5


# (kinds, knobs under test, knobs of the baseline and of the test alike, boxes1, boxes2)
CASES = [
    (("iou", "giou", "diou", "ciou"), {"convention": "caffe"}, {}, A, B),
    (("iou", "giou", "diou", "ciou"), {"plus_one": True}, {}, A, B),
    (("iou", "giou", "diou", "ciou"), {"guard": "inter_gt_0"}, {}, POINT, POINT),
    (("iou", "giou", "diou", "ciou"), {"sort_corners": True}, {}, A, FLIPPED_B),
    (("iou", "giou", "diou", "ciou"), {"sort_corners": True}, {}, FLIPPED_B, A),
    (("iou", "giou"), {"half_wh": False}, {}, H1, H2),
    (("diou", "ciou"), {"half_wh": True}, {}, H1, H2),
    (("iou",), {"eps": 0.5}, {"guard": "plus_eps"}, A, B),
    (("giou",), {"eps": 0.5}, {"guard": "plus_eps"}, A, B),
    (("diou", "ciou"), {"eps": 0.5}, {}, A, B),
    (("giou", "diou", "ciou"), {"clamp_enclosing": False}, {}, FLIP_A, FLIP_B),
    (("diou", "ciou"), {"centre_distance": "sums"}, {}, HUGE1, HUGE2),
    (("ciou",), {"height_eps": True}, {"eps": 0.5}, TALL, WIDE),
    (("ciou",), {"alpha_gate": 0.5}, {}, TALL, WIDE),
    (("ciou",), {"alpha_eps": 0.5}, {}, TALL, WIDE),
    (("ciou",), {"clip": True}, {}, FAR1, FAR2),
    (("ciou",), {"atan": _atan_scaled}, {}, TALL, WIDE),
]


def _three(kind, a, b, **kw):
    pairwise, paired, forward = FAMILY[kind]
    with np.errstate(all="ignore"):
        return pairwise(a, b, **kw)[0, 0], paired(a, b, **kw)[0], forward(a, b, **kw)[0][0]


@pytest.mark.parametrize("kind,knobs,base,a,b", [(k, kn, ba, a, b) for kinds, kn, ba, a, b in CASES for k in kinds],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_knob_reaches_every_shape(kind, knobs, base, a, b):
    want = _three(kind, a, b, **base, **knobs)
    default = _three(kind, a, b, **base)
    assert not np.array_equal(want[0], default[0], equal_nan=True), (kind, knobs, "the case does not test the knob")
    for shape, got, off in zip(("pairwise", "paired", "forward"), want, default):
        assert np.array_equal(got, want[0], equal_nan=True), (kind, knobs, shape, got, want[0])
        assert not np.array_equal(got, off, equal_nan=True), (kind, knobs, shape, "knob ignored")


# Inputs on which each of NumPy's floating-point conditions occurs inside the functions: 0/0 (a point
# against itself), x/0 (a line box's aspect w/h = 2/0; two flipped boxes whose clamped enclosing area
# is 0 while their "union" is 200, or whose c^2 is 0 under eps = 0 while rho^2 = 8), overflow (areas of
# 1e308 whose sum is inf; an enclosing box 1e155 wide, whose area and c^2 are inf).
FP_CASES = {
    "point": (POINT, POINT),
    "line": (np.array([[0.0, 0.0, 2.0, 0.0]]), np.array([[0.0, 0.0, 2.0, 0.0]])),
    "point_line": (POINT, np.array([[0.0, 0.0, 2.0, 0.0]])),
    "flipped": (FLIP_A, FLIP_A),
    "flipped_apart": (FLIP_A, FLIP_B),
    "huge": (np.array([[0.0, 0.0, 1e154, 1e154]]), np.array([[0.0, 0.0, 1e154, 1e154]])),
    "far": (np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([[1e155, 1e155, 1e155, 1e155]])),
}
ALL_FUNCS = [f for fs in FAMILY.values() for f in fs]


@pytest.mark.parametrize("conv", ["torchvision", "paper", "detectron2", "mmdet"])
@pytest.mark.parametrize("f", ALL_FUNCS, ids=lambda f: f.__name__)
def test_no_floating_point_warning_escapes(f, conv):
    # 0/0, x/0 and overflow are answers here (NaN, inf, the guards' 0), never warnings: under a caller's
    # np.errstate(all="raise") every function gives what it gives under "ignore"
    for name, (a, b) in FP_CASES.items():
        with np.errstate(all="ignore"):
            want = f(a, b, convention=conv)
        with np.errstate(all="raise"):
            got = f(a, b, convention=conv)
        if isinstance(want, tuple):
            want, got = want[0], got[0]
        assert np.array_equal(got, want, equal_nan=True), (name, got, want)


def test_out_error_describes_what_it_got():
    a = np.array([[0.0, 0, 2, 2], [1, 1, 3, 3]])
    with pytest.raises(ValueError, match=r"dtype float64; got ndarray of shape \(2, 2\) and dtype float32"):
        riou.box_iou(a, a, out=np.empty((2, 2), F32))
    with pytest.raises(ValueError, match=r"got list"):
        riou.box_iou(a, a, out=[[0.0, 0.0], [0.0, 0.0]])
