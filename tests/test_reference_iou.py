"""refdet.iou and the IoU losses held equal to refdet.reference.iou (the loop over pairs and the
papers' formulas per pair), on hypothesis inputs: ties, duplicates, degenerate (point and line)
boxes, IoU exactly at thresholds, empty sets.

Bounds, and why:

* IoU, GIoU, DIoU (pairwise and paired), float64 and float32: **bit-equal** (ULP distance 0; the
  sign of a zero is not compared). The reference follows torchvision's order of operations.
* CIoU: bit-equal when both use the same arctangent (the reference's scalar ``np.arctan`` is passed
  to the fast path); with NumPy's vectorised arctangent (another kernel than the scalar one) within
  4 ulp of 1 (values lie in [-1.5, 1]).
* The losses ``1 - value``: the GIoU loss is bit-equal to ``1 - giou``; torchvision's DIoU/CIoU losses
  add ``(1 - iou) + rho^2/c^2 (+ alpha v)`` where the formula subtracts ``1 - (iou - ...)``: within 4
  ulp of 1.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet import iou as I
from refdet import losses as L
from refdet.reference import iou as R
from refdet.testing import strategies as rst
from refdet.testing import ulp_distance

DTYPES = [np.float64, np.float32]


def _equal(fast, ref):
    """Bit-equal up to the sign of a zero (NaN where NaN)."""
    assert fast.shape == ref.shape and fast.dtype == ref.dtype, (fast.shape, ref.shape, fast.dtype, ref.dtype)
    d = ulp_distance(fast, ref)
    assert np.all(d == 0), f"{int((d > 0).sum())} values differ, up to {d.max()} ulp"


def _within_ulps_of_one(fast, ref, k):
    """|fast - ref| <= k ulp of 1 (both NaN counts as equal)."""
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    nan = np.isnan(fast)
    assert np.array_equal(nan, np.isnan(ref))
    bound = k * np.finfo(fast.dtype).eps
    err = np.abs(fast[~nan].astype(np.float64) - ref[~nan].astype(np.float64))
    assert np.all(err <= bound), f"max error {err.max()} > {k} ulp of 1 ({bound})"


def _scalar_atan(x):
    """The reference's arctangent (np.arctan of one scalar at a time) as an array function."""
    flat = np.asarray(x).ravel()
    return np.array([np.arctan(v) for v in flat], dtype=flat.dtype).reshape(np.shape(x))


def _sets(dtype, max_n=8, **kw):
    return rst.box_sets(max_n=max_n, dtype=dtype, **kw)


@given(_sets(np.float64), _sets(np.float64), st.sampled_from(DTYPES))
def test_box_iou_is_the_loop(a, b, dtype):
    a, b = a.astype(dtype), b.astype(dtype)
    _equal(I.box_iou(a, b), R.box_iou(a, b))
    _equal(I.box_iou(a, b, convention="paper"), R.pairwise(R.iou, a, b))


@given(rst.box_sets(max_n=8, grid=None), rst.box_sets(max_n=8, grid=None))
def test_box_iou_is_the_loop_off_grid(a, b):
    _equal(I.box_iou(a, b), R.box_iou(a, b))


@given(rst.threshold_box_pairs())
def test_iou_exactly_at_a_threshold(pair):
    # the pair's float32 IoU is c / r (1/2, 1/3, ...); fast and loop agree on it to the bit, so a
    # threshold placed exactly there (or one ulp off) is on the same side for both
    boxes, t = pair
    b32 = boxes.astype(np.float32)
    fast = I.box_iou(b32[:1], b32[1:])[0, 0]
    ref = R.iou(b32[0], b32[1])
    assert fast == ref
    assert (fast >= np.float32(t)) == (ref >= np.float32(t))
    assert I.box_iou_paired(b32[:1], b32[1:])[0] == ref


def test_empty_sets():
    e = np.zeros((0, 4))
    b = np.array([[0.0, 0.0, 2.0, 3.0]])
    for name, f in (("box_iou", R.iou), ("generalized_box_iou", R.giou), ("distance_box_iou", R.diou),
                    ("complete_box_iou", R.ciou)):
        for x, y in ((e, b), (b, e), (e, e)):
            _equal(getattr(I, name)(x, y, convention="paper"), R.pairwise(f, x, y))
        _equal(getattr(I, f"{name}_paired")(e, e, convention="paper"), R.paired(f, e, e))


@given(_sets(np.float64), _sets(np.float64), st.sampled_from(DTYPES))
def test_giou_and_diou_are_the_formulas(a, b, dtype):
    a, b = a.astype(dtype), b.astype(dtype)
    _equal(I.generalized_box_iou(a, b), R.pairwise(R.giou, a, b))
    _equal(I.distance_box_iou(a, b), R.pairwise(R.diou, a, b, eps=1e-7))        # torchvision eps
    _equal(I.distance_box_iou(a, b, convention="paper"), R.pairwise(R.diou, a, b, eps=0.0))


@given(_sets(np.float64), _sets(np.float64), st.sampled_from(DTYPES))
def test_ciou_is_the_formula(a, b, dtype):
    a, b = a.astype(dtype), b.astype(dtype)
    ref = R.pairwise(R.ciou, a, b, eps=1e-7)
    _equal(I.complete_box_iou(a, b, atan=_scalar_atan), ref)
    _within_ulps_of_one(I.complete_box_iou(a, b), ref, 4)
    _equal(I.complete_box_iou(a, b, convention="paper", atan=_scalar_atan), R.pairwise(R.ciou, a, b, eps=0.0))


@given(rst.aligned_box_sets(max_n=10), st.sampled_from(DTYPES))
def test_paired_values_are_the_formulas(pair, dtype):
    a, b = (x.astype(dtype) for x in pair)
    _equal(I.box_iou_paired(a, b), R.paired(R.iou, a, b))
    _equal(I.generalized_box_iou_paired(a, b), R.paired(R.giou, a, b))
    _equal(I.distance_box_iou_paired(a, b), R.paired(R.diou, a, b, eps=1e-7))
    _equal(I.complete_box_iou_paired(a, b, atan=_scalar_atan), R.paired(R.ciou, a, b, eps=1e-7))


@given(rst.aligned_box_sets(max_n=10), st.sampled_from(DTYPES))
def test_losses_are_one_minus_the_formulas(pair, dtype):
    # eps = 0 so that the loss guards vanish and the formulas are the paper's
    a, b = (x.astype(dtype) for x in pair)
    one = dtype(1)
    _equal(L.giou_loss_forward(a, b, eps=0.0)[0], one - R.paired(R.giou, a, b))
    _within_ulps_of_one(L.diou_loss_forward(a, b, eps=0.0)[0], one - R.paired(R.diou, a, b), 4)
    # detectron2's CIoU loss uses its eps everywhere (torchvision keeps 1e-7 in the DIoU part)
    _within_ulps_of_one(L.ciou_loss_forward(a, b, eps=0.0, formula="detectron2", atan=_scalar_atan)[0],
                        one - R.paired(R.ciou, a, b), 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_degenerate_pairs_golden(dtype):
    # two identical points: I = U = 0 -> NaN (torchvision) in both; a point inside a box: IoU 0,
    # GIoU = 0 - (C - U)/C with C = U = 100 -> 0; a zero-height box: atan(w / 0) = pi/2
    a = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 4, 0]], dtype)
    b = np.array([[5, 5, 5, 5], [0, 0, 10, 10], [0, 0, 4, 4]], dtype)
    for name, f, kw in (("box_iou", R.iou, {}), ("generalized_box_iou", R.giou, {}),
                        ("distance_box_iou", R.diou, {"eps": 1e-7})):
        _equal(getattr(I, f"{name}_paired")(a, b), R.paired(f, a, b, **kw))
    assert np.isnan(I.box_iou_paired(a, b)[0]) and I.generalized_box_iou_paired(a, b)[1] == 0
