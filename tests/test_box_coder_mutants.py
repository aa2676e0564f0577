"""Tests written from the mutation run of refdet.box_coder (mutation/results.md).

``decode_boxes`` and ``decode_boxes_forward`` forward the same knobs to one decoder, and
``encode_boxes`` reads each knob once: each knob gets a case on which it changes the answer, and the
shapes must agree with one another and differ from the knob's default (a knob dropped on the way, or
passed as None = the profile's value, fails). The float32 cases were found by search: there the
profiles' orders of operations (centre ``x1 + 0.5 w`` against ``(x1 + x2) 0.5``; ``w (g - p) / s``
against ``((g - p) / s) w``) round apart.
"""
import re

import numpy as np
import pytest

from refdet.box_coder import decode_boxes, decode_boxes_forward, encode_boxes

F32 = np.float32

ANCHOR = np.array([[0.0, 0.0, 16.0, 16.0]])
BOX = np.array([[2.0, 4.0, 18.0, 12.0]])
W = (10.0, 10.0, 5.0, 5.0)
G32 = np.array([[32.97317, 78.84287, 63.292656, 124.19266]], dtype=F32)
A32 = np.array([[13.40417, 40.3113, 34.749695, 67.54263]], dtype=F32)
D32 = np.array([[0.00814218, -0.2756029, 1.2940638, 1.0067244]], dtype=F32)
DELTAS = np.array([[0.1, -0.2, 0.3, -0.4]])
SHRINK = np.array([[0.1, -0.2, -10.0, 0.3]])   # dw = -10: below mmdet's symmetric clamp


def _log2(x):
    return np.log(x) * 2


def _exp2(x):
    return np.exp(x) * 2


# (knobs under test, knobs of both calls, boxes, anchors)
ENCODE_CASES = [
    ({"convention": "mmdet"}, {"weights": W}, BOX, ANCHOR),
    ({"plus_one": True}, {}, BOX, ANCHOR),
    ({"center": "midpoint"}, {"weights": W}, G32, A32),
    ({"weight_mode": "multiply_after"}, {"weights": W}, G32, A32),
    ({"weight_mode": "divide"}, {"weights": W}, BOX, ANCHOR),
    ({"eps": 0.5}, {}, BOX, ANCHOR),
    ({"eps": 1.0}, {}, BOX, ANCHOR),
    ({"order": "yx"}, {}, BOX, ANCHOR),
    ({"means": (0.1, 0.2, 0.3, 0.4)}, {"weight_mode": "divide"}, BOX, ANCHOR),
    ({"log": _log2}, {}, BOX, ANCHOR),
    ({"weights": W}, {}, BOX, ANCHOR),
]


@pytest.mark.parametrize("knobs,base,boxes,anchors", ENCODE_CASES, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_encode_reads_every_knob(knobs, base, boxes, anchors):
    got = encode_boxes(boxes, anchors, **base, **knobs)
    off = encode_boxes(boxes, anchors, **base)
    assert got.dtype == off.dtype == boxes.dtype
    assert not np.array_equal(got, off), knobs


DECODE_CASES = [
    ({"convention": "mmdet"}, {}, SHRINK, ANCHOR),
    ({"plus_one": True}, {}, DELTAS, ANCHOR),
    ({"center": "midpoint"}, {}, D32, A32),
    ({"weight_mode": "divide"}, {"weights": W}, DELTAS, ANCHOR),
    ({"order": "yx"}, {}, DELTAS, ANCHOR),
    ({"clamp_mode": "symmetric"}, {}, SHRINK, ANCHOR),
    ({"clamp_mode": "none"}, {"clamp": 0.1}, DELTAS, ANCHOR),
    ({"x2_minus_one": True}, {}, DELTAS, ANCHOR),
    ({"float32_deltas": True}, {}, DELTAS, ANCHOR),
    ({"exp": _exp2}, {}, DELTAS, ANCHOR),
    ({"clamp": 0.1}, {}, DELTAS, ANCHOR),
    ({"means": (0.1, 0.2, 0.3, 0.4)}, {"weight_mode": "divide"}, DELTAS, ANCHOR),
    ({"weights": W}, {}, DELTAS, ANCHOR),
]


@pytest.mark.parametrize("knobs,base,deltas,anchors", DECODE_CASES, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_decode_and_its_forward_read_every_knob(knobs, base, deltas, anchors):
    got = decode_boxes(deltas, anchors, **base, **knobs)
    fwd = decode_boxes_forward(deltas, anchors, **base, **knobs)[0]
    off = decode_boxes(deltas, anchors, **base)
    assert fwd.dtype == got.dtype and np.array_equal(fwd, got), knobs
    assert not np.array_equal(got, off), knobs
    assert not np.array_equal(decode_boxes_forward(deltas, anchors, **base)[0], fwd), knobs


INF_BOX = np.array([[-1e308, 0.0, 1e308, 1.0]])   # width 2e308: overflows to inf
FP_ENCODE = {
    "point_target": (np.array([[8.0, 8.0, 8.0, 8.0]]), ANCHOR),     # log(0 / 16) = -inf (x/0 inside log)
    "overflow": (INF_BOX, ANCHOR),                                  # w = inf, dw = log(inf) = inf
    "inf_over_inf": (INF_BOX, INF_BOX),                             # gw / pw = inf / inf = NaN
}
FP_DECODE = {
    "exp_overflow": np.array([[0.0, 0.0, 1000.0, 0.0]]),            # exp(1000) = inf (no clamp)
    "inf_minus_inf": np.array([[1e308, 0.0, 1000.0, 0.0]]),        # cx = 1e308 * 16 = inf, w = inf: cx - w / 2 = NaN
}


def test_no_floating_point_warning_escapes():
    # -inf, inf and NaN are the documented answers on these inputs (torchvision's, unguarded), never a
    # warning: under a caller's np.errstate(all="raise") the results are those under "ignore"
    for name, (boxes, anchors) in FP_ENCODE.items():
        with np.errstate(all="ignore"):
            want = encode_boxes(boxes, anchors)
        with np.errstate(all="raise"):
            got = encode_boxes(boxes, anchors)
        assert np.array_equal(got, want, equal_nan=True), name
        assert not np.isfinite(got).all(), name
    for name, deltas in FP_DECODE.items():
        for f in (decode_boxes, lambda d, a, **k: decode_boxes_forward(d, a, **k)[0]):
            with np.errstate(all="ignore"):
                want = f(deltas, ANCHOR, clamp_mode="none")
            with np.errstate(all="raise"):
                got = f(deltas, ANCHOR, clamp_mode="none")
            assert np.array_equal(got, want, equal_nan=True), name
            assert not np.isfinite(got).all(), name


def _forward(d, a, **kw):
    return decode_boxes_forward(d, a, **kw)[0]


@pytest.mark.parametrize("f", [decode_boxes, _forward], ids=["decode_boxes", "decode_boxes_forward"])
@pytest.mark.parametrize("kw,err,name", [
    ({"exp": 3}, TypeError, "`exp`"),
    ({"clamp": "x"}, TypeError, "`clamp`"),
    ({"means": (1, 2)}, ValueError, "`means`"),
    ({"weights": (1, 2)}, ValueError, "`weights`"),
    ({"deltas": np.zeros((1, 3))}, ValueError, "`deltas`"),
    ({"anchors": np.zeros((1, 3))}, ValueError, "`anchors`"),
    ({"anchors": np.zeros((2, 4))}, ValueError, "`deltas`.*`anchors`|`anchors`.*`deltas`"),
])
def test_decode_errors_name_the_argument(f, kw, err, name):
    kw = dict(kw)
    d = kw.pop("deltas", DELTAS)
    a = kw.pop("anchors", ANCHOR)
    with pytest.raises(err, match=name):
        f(d, a, **kw)


FLIPPED_WHY = re.escape("a target box must not be flipped (x2 < x1 or y2 < y1): log(gw / pw) of a negative size "
                        "is NaN")
ANCHOR_WHY = re.escape("a reference box needs both > 0 (the code divides by its size and takes log(gw / pw): "
                       "detectron2's Box2BoxTransform.get_deltas asserts positive reference sizes)")


@pytest.mark.parametrize("kw,err,name", [
    ({"log": 3}, TypeError, "`log`"),
    ({"means": "abcd"}, TypeError, "`means`"),
    ({"weights": (0, 1, 1, 1)}, ValueError, "`weights`"),
    ({"boxes": np.zeros((1, 3))}, ValueError, "`boxes`"),
    ({"anchors": np.zeros((1, 3))}, ValueError, "`anchors`"),
    ({"anchors": np.zeros((2, 4))}, ValueError, "`boxes`.*`anchors`|`anchors`.*`boxes`"),
    ({"anchors": np.array([[0.0, 0.0, 0.0, 16.0]])}, ValueError, "`anchors` row 0 has width 0.0 and height 16.0; " + ANCHOR_WHY + "; got box"),
    ({"anchors": np.array([[0.0, 0.0, 16.0, 0.0]])}, ValueError, "`anchors` row 0 has width 16.0 and height 0.0"),
    ({"boxes": np.array([[2.0, 0.0, 1.0, 16.0]])}, ValueError, "`boxes` row 0 has width -1.0 and height 16.0; " + FLIPPED_WHY + "; got box"),
    ({"boxes": np.array([[0.0, 2.0, 16.0, 1.0]])}, ValueError, r"`boxes` row 0 has width 16.0 and height -1.0; .*"
                                                              r"got box \[0.0, 2.0, 16.0, 1.0\]"),
])
def test_encode_errors_name_the_argument(kw, err, name):
    kw = dict(kw)
    b = kw.pop("boxes", BOX)
    a = kw.pop("anchors", ANCHOR)
    with pytest.raises(err, match=name):
        encode_boxes(b, a, **kw)


# Distinct weights and means (no two equal: a weight read for another coordinate shows), boxes and
# anchors of distinct sizes, deltas that reach both sides of the clamp.
WEIGHTS = (1.5, 2.5, 3.5, 4.5)
MEANS = (0.1, -0.2, 0.3, -0.4)
BOXES4 = np.array([[2.0, 4.0, 18.0, 12.0], [0.5, 1.0, 3.0, 9.0], [10.0, 20.0, 13.0, 21.0]])
ANCHORS4 = np.array([[0.0, 0.0, 16.0, 16.0], [1.0, 2.0, 5.0, 4.0], [8.0, 18.0, 16.0, 30.0]])
DELTAS8 = np.array([[0.1, -0.2, 0.3, -0.4, 0.5, 0.6, -7.0, 30.0],
                    [-0.3, 0.25, 20.0, -1.5, 0.0, -0.1, 0.2, 0.7],
                    [1.0, 2.0, -30.0, 5.0, -0.5, 0.3, 4.0, -4.0]])


@pytest.mark.parametrize("dtype", [np.float64, F32])
@pytest.mark.parametrize("weight_mode", ["multiply", "multiply_after", "divide"])
def test_encode_is_the_reference_under_every_knob(dtype, weight_mode):
    from refdet.reference import box_coder as ref

    g, a = BOXES4.astype(dtype), ANCHORS4.astype(dtype)
    for plus_one in (False, True):
        for center in ("half_width", "midpoint"):
            for eps in (0.0, 1e-3):
                for order in ("xy", "yx"):
                    kw = dict(weights=WEIGHTS, means=MEANS, plus_one=plus_one, center=center,
                              weight_mode=weight_mode, eps=eps, order=order)
                    got = encode_boxes(g, a, **kw)
                    assert got.dtype == dtype
                    np.testing.assert_array_equal(got, ref.encode_boxes(g, a, **kw), err_msg=str(kw))


@pytest.mark.parametrize("dtype", [np.float64, F32])
@pytest.mark.parametrize("weight_mode", ["multiply", "divide"])
@pytest.mark.parametrize("clamp_mode", ["max", "symmetric", "none"])
def test_decode_is_the_reference_under_every_knob(dtype, weight_mode, clamp_mode):
    from refdet.reference import box_coder as ref

    d, a = DELTAS8.astype(dtype), ANCHORS4.astype(dtype)
    for plus_one in (False, True):
        for center in ("half_width", "midpoint"):
            for order in ("xy", "yx"):
                for x2_minus_one in (False, True):
                    kw = dict(weights=WEIGHTS, means=MEANS, clamp=-3.0 if clamp_mode == "symmetric" else 3.0,
                              plus_one=plus_one, center=center, weight_mode=weight_mode, order=order,
                              clamp_mode=clamp_mode, x2_minus_one=x2_minus_one)
                    want = ref.decode_boxes(d, a, **kw)
                    for f in (decode_boxes, _forward):
                        got = f(d, a, **kw)
                        assert got.dtype == dtype
                        np.testing.assert_array_equal(got, want, err_msg=str(kw))


def test_log_and_exp_must_be_elementwise():
    with pytest.raises(ValueError, match="`log` must be elementwise"):
        encode_boxes(BOX, ANCHOR, log=lambda x: np.log(x).sum())
    for f in (decode_boxes, _forward):
        with pytest.raises(ValueError, match="`exp` must be elementwise"):
            f(DELTAS, ANCHOR, exp=lambda x: np.exp(x).ravel()[:0])


def test_encode_works_in_the_wider_of_the_two_dtypes():
    # float32 boxes on float64 anchors, and the other way round: float64 math (np.result_type), the
    # same numbers as all-float64 (both inputs are exact in float32)
    want = encode_boxes(BOXES4, ANCHORS4, weights=WEIGHTS)
    for g, a in ((BOXES4.astype(F32), ANCHORS4), (BOXES4, ANCHORS4.astype(F32))):
        got = encode_boxes(g, a, weights=WEIGHTS)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_means_that_are_not_numbers_are_described():
    for f in (encode_boxes, decode_boxes):
        with pytest.raises(TypeError, match=r"`means` must be 4 real numbers; got list \[1, 2, 3, 'x'\]"):
            f(DELTAS if f is decode_boxes else BOX, ANCHOR, weight_mode="divide", means=[1, 2, 3, "x"])
