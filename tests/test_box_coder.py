"""Tests of refdet.box_coder: TV9 golden vectors, conventions, round trips, gradients, torchvision."""
import math
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import refdet
from refdet.box_coder import (DEFAULT_CLAMP, DecodeCache, DecodeGrads, decode_boxes, decode_boxes_backward,
                              decode_boxes_forward, encode_boxes)
from refdet.testing import check_gradients
from refdet.testing import strategies as rst
from tests.conftest import readonly

F32 = np.float32

# TV9 (SPEC-conventions §11)
ANCHORS = np.array([[0, 0, 10, 10], [10, 20, 30, 60]], dtype=float)
GTS = np.array([[1, 2, 11, 14], [5, 15, 35, 75]], dtype=float)


def _torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import BoxCoder
    torch.set_num_threads(1)
    return torch, BoxCoder


def _torch_fns(torch):
    texp = lambda x: torch.exp(torch.from_numpy(np.ascontiguousarray(x))).numpy()  # noqa: E731
    tlog = lambda x: torch.log(torch.from_numpy(np.ascontiguousarray(x))).numpy()  # noqa: E731
    return texp, tlog


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# --------------------------------------------------------------------------------------- golden

def test_tv9_encode_weights_1():
    # anchor 0: centre (5, 5), size 10 x 10; gt 0: centre (6, 8), size 10 x 12
    #   dx = (6 - 5) / 10 = 0.1, dy = (8 - 5) / 10 = 0.3, dw = log(10/10) = 0, dh = log(12/10) = 0.1823216
    # anchor 1: centre (20, 40), size 20 x 40; gt 1: centre (20, 45), size 30 x 60
    #   dx = 0, dy = 5 / 40 = 0.125, dw = dh = log(1.5) = 0.4054651
    want = [[0.1, 0.3, 0.0, math.log(1.2)], [0.0, 0.125, math.log(1.5), math.log(1.5)]]
    np.testing.assert_allclose(encode_boxes(GTS, ANCHORS), want, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(encode_boxes(GTS.astype(F32), ANCHORS.astype(F32)), want, rtol=1e-6, atol=1e-7)


def test_tv9_encode_weights_10_10_5_5():
    # the same codes times (10, 10, 5, 5): [1, 3, 0, 5 log 1.2 = 0.9116080], [0, 1.25, 2.0273254, 2.0273254]
    want = [[1.0, 3.0, 0.0, 5 * math.log(1.2)], [0.0, 1.25, 5 * math.log(1.5), 5 * math.log(1.5)]]
    np.testing.assert_allclose(encode_boxes(GTS, ANCHORS, weights=(10, 10, 5, 5)), want, rtol=1e-14, atol=1e-15)


def test_tv9_decode_float32_round_trip_error():
    # float32: decoding the float32 codes of gt 1 gives x1 = 5.0000010 and y1 = 15.0000019 (two float32
    # ulp above 5 and 15: ulp = 2**-21 in [4, 8) and 2**-20 in [8, 16)), the rest exact, as
    # torchvision's float32 decode does
    d = encode_boxes(GTS.astype(F32), ANCHORS.astype(F32), weights=(10, 10, 5, 5))
    got = decode_boxes(d, ANCHORS.astype(F32), weights=(10, 10, 5, 5))
    assert got.dtype == F32
    assert got.tolist() == [[1, 2, 11, 14], [F32(5.000001).item(), F32(15.000002).item(), 35, 75]]
    assert got[1, 0] == F32(5 + 2 * 2.0 ** -21) and got[1, 1] == F32(15 + 2 * 2.0 ** -20)


def test_tv9_clamp():
    a = np.array([[0, 0, 10, 10]], dtype=F32)
    # dw = 10 is clamped to log(1000/16): w = 10 * 1000 / 16 = 625, x1 = 5 - 312.5 = -307.5 (float32
    # rounding of exp gives -307.5000305)
    big = decode_boxes(np.array([[0, 0, 10, 10]], F32), a)
    np.testing.assert_array_equal(big, np.array([[-307.5000305, -307.5000305, 317.5000305, 317.5000305]], F32))
    # dw = -10 is not clamped (upper only): w = 10 e^-10 = 4.54e-4 -> [4.9997730, ..., 5.0002270]
    small = decode_boxes(np.array([[0, 0, -10, -10]], F32), a)
    np.testing.assert_allclose(small, [[4.9997730, 4.9997730, 5.0002270, 5.0002270]], rtol=0, atol=1e-6)
    # mmdet clamps symmetrically: w = 10 * 16 / 1000 = 0.16 -> [4.92, 4.92, 5.08, 5.08]
    mm = decode_boxes(np.array([[0, 0, -10, -10.0]]), a.astype(float), convention="mmdet")
    np.testing.assert_allclose(mm, [[4.92, 4.92, 5.08, 5.08]], rtol=1e-14)
    # py-faster-rcnn and TF do not clamp: w = 10 e^10
    np.testing.assert_allclose(decode_boxes(np.array([[0, 0, 10, 10.0]]), a.astype(float), convention="tf")[0, 2],
                               5 + 5 * math.exp(10), rtol=1e-14)
    assert DEFAULT_CLAMP == math.log(1000 / 16) and abs(DEFAULT_CLAMP - 4.135166556742356) < 1e-15


def test_tf_object_detection_api_golden():
    # TF OD API faster_rcnn_box_coder_test.test_get_correct_relative_codes_after_encoding (boxes are
    # [ymin, xmin, ymax, xmax]; codes [ty, tx, th, tw]). E.g. box 0: centre (y, x) = (15, 12.5), size
    # 10 x 5; anchor 0: centre (22.5, 15), size 15 x 6: ty = -7.5 / 15 = -0.5, tx = -2.5 / 6 = -0.416666,
    # th = log(10 / 15) = -0.405465, tw = log(5 / 6) = -0.182321
    boxes = np.array([[10.0, 10.0, 20.0, 15.0], [0.2, 0.1, 0.5, 0.4]], F32)
    anchors = np.array([[15.0, 12.0, 30.0, 18.0], [0.1, 0.0, 0.7, 0.9]], F32)
    codes = encode_boxes(refdet.box_convert(boxes, "yxyx", "xyxy"), refdet.box_convert(anchors, "yxyx", "xyxy"),
                         convention="tf")
    want = [[-0.5, -0.416666, -0.405465, -0.182321], [-0.083333, -0.222222, -0.693147, -1.098612]]
    np.testing.assert_allclose(codes, want, rtol=1e-4, atol=1e-4)  # TF's own test tolerance
    back = decode_boxes(codes, refdet.box_convert(anchors, "yxyx", "xyxy"), convention="tf")
    np.testing.assert_allclose(refdet.box_convert(back, "xyxy", "yxyx"), boxes, rtol=1e-5, atol=1e-6)


def test_mmdet_means_and_stds():
    # mmdet R-CNN: stds (0.1, 0.1, 0.2, 0.2), centre (x1 + x2) / 2: codes are TV9's divided by the stds
    d = encode_boxes(GTS, ANCHORS, weights=(0.1, 0.1, 0.2, 0.2), convention="mmdet")
    want = np.array([[0.1, 0.3, 0.0, math.log(1.2)], [0.0, 0.125, math.log(1.5), math.log(1.5)]])
    np.testing.assert_allclose(d, want / [0.1, 0.1, 0.2, 0.2], rtol=1e-14, atol=1e-15)
    d2 = encode_boxes(GTS, ANCHORS, weights=(0.1, 0.1, 0.2, 0.2), means=(0.5, 0, 0, 0), convention="mmdet")
    np.testing.assert_allclose(d2[:, 0], (want[:, 0] - 0.5) / 0.1, rtol=1e-14)
    back = decode_boxes(d2, ANCHORS, weights=(0.1, 0.1, 0.2, 0.2), means=(0.5, 0, 0, 0), convention="mmdet")
    np.testing.assert_allclose(back, GTS, rtol=1e-14)


def test_mmdet_four_distinct_means_golden():
    # every mean and std different, so reading one slot for another changes the answer.
    # anchor [0,0,10,20]: centre (5, 10), size 10 x 20; box [1,3,13,31]: centre (7, 17), size 12 x 28
    a = np.array([[0, 0, 10, 20.0]])
    g = np.array([[1, 3, 13, 31.0]])
    means, stds = (0.1, 0.2, 0.3, 0.4), (0.5, 0.25, 2.0, 4.0)
    d = encode_boxes(g, a, weights=stds, means=means, convention="mmdet")
    want = [(0.2 - 0.1) / 0.5, (0.35 - 0.2) / 0.25, (math.log(1.2) - 0.3) / 2.0, (math.log(1.4) - 0.4) / 4.0]
    np.testing.assert_allclose(d, [want], rtol=1e-14, atol=1e-15)
    # decode d * std + mean: (0.6, 0.7, 1.3, -0.6) -> centre (11, 24), size 10 e^1.3 x 20 e^-0.6
    got = decode_boxes(np.array([[1.0, 2.0, 0.5, -0.25]]), a, weights=stds, means=means, convention="mmdet")
    hw, hh = 5 * math.exp(1.3), 10 * math.exp(-0.6)
    np.testing.assert_allclose(got, [[11 - hw, 24 - hh, 11 + hw, 24 + hh]], rtol=1e-14)
    np.testing.assert_allclose(decode_boxes(d, a, weights=stds, means=means, convention="mmdet"), g, rtol=1e-14)


def test_detectron1_minus_one_golden():
    # anchor [0,0,9,19] is 10 x 20 pixels, centre (5, 10); deltas (0.1, 0.2, 0, 0) move it to (6, 14):
    # x2 = 6 + 5 - 1 = 10, y2 = 14 + 10 - 1 = 23 (py-faster-rcnn without the -1: 11 and 24)
    a = np.array([[0, 0, 9, 19.0]])
    d = np.array([[0.1, 0.2, 0.0, 0.0]])
    det1 = dict(convention="caffe", weight_mode="multiply", clamp_mode="max", x2_minus_one=True)
    np.testing.assert_allclose(decode_boxes(d, a, **det1), [[1, 4, 10, 23]], rtol=1e-14)
    np.testing.assert_allclose(decode_boxes(d, a, convention="caffe"), [[1, 4, 11, 24]], rtol=1e-14)
    out, cache = decode_boxes_forward(d, a, **det1)
    np.testing.assert_allclose(out, [[1, 4, 10, 23]], rtol=1e-14)
    # class-specific deltas (K = 2): every class's x2, y2 loses the pixel
    d2 = np.concatenate([d, np.zeros((1, 4))], axis=1)
    np.testing.assert_allclose(decode_boxes(d2, a, **det1), [[1, 4, 10, 23, 0, 0, 9, 19]], rtol=1e-14)


def test_caffe_plus_one_and_detectron1_minus_one():
    # py-faster-rcnn: anchor [0,0,9,9] is 10 x 10 pixels, centre 0 + 0.5 * 10 = 5;
    # gt [1,2,10,13] is 10 x 12, centre (6, 8): dx = 0.1, dy = 0.3, dw = 0, dh = log(1.2)
    a = np.array([[0, 0, 9, 9.0]])
    g = np.array([[1, 2, 10, 13.0]])
    d = encode_boxes(g, a, convention="caffe")
    np.testing.assert_allclose(d, [[0.1, 0.3, 0.0, math.log(1.2)]], rtol=1e-14, atol=1e-15)
    # py-faster-rcnn decodes x2 = cx + 0.5 w (no -1): the box comes back one pixel wider and taller
    np.testing.assert_allclose(decode_boxes(d, a, convention="caffe"), g + [0, 0, 1, 1], rtol=1e-14)
    # Detectron1 decodes x2 = cx + 0.5 w - 1 and round-trips exactly
    det1 = dict(convention="caffe", weight_mode="multiply", clamp_mode="max", x2_minus_one=True)
    np.testing.assert_allclose(decode_boxes(d, a, **det1), g, rtol=1e-14)


def test_detectron2_decodes_in_float32():
    d = encode_boxes(GTS, ANCHORS, weights=(10, 10, 5, 5))  # float64 codes
    got = decode_boxes(d, ANCHORS, weights=(10, 10, 5, 5), convention="detectron2")
    assert got.dtype == F32
    # the same as torchvision's decode of the float32-cast codes and anchors, bit for bit
    want = decode_boxes(d.astype(F32), ANCHORS.astype(F32), weights=(10, 10, 5, 5))
    np.testing.assert_array_equal(got, want)
    assert decode_boxes(d, ANCHORS, convention="detectron2", float32_deltas=False).dtype == np.float64


def test_class_specific_deltas_and_empty():
    a = ANCHORS
    d = np.concatenate([encode_boxes(GTS, a), np.zeros((2, 4)), encode_boxes(a, a)], axis=1)  # K = 3
    out = decode_boxes(d, a)
    assert out.shape == (2, 12)
    np.testing.assert_allclose(out[:, 0:4], GTS, rtol=1e-14)
    np.testing.assert_allclose(out[:, 4:8], a, rtol=1e-14)
    assert decode_boxes(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert encode_boxes(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)


def test_zero_size_box_encodes_to_minus_inf():
    # torchvision has no eps: log(0 / 10) = -inf (TF adds 1e-8 and stays finite)
    g = np.array([[5, 5, 5, 15.0]])
    a = np.array([[0, 0, 10, 10.0]])
    assert encode_boxes(g, a)[0, 2] == -np.inf
    assert np.isfinite(encode_boxes(g, a, convention="tf")).all()


def test_readonly_and_describe():
    g, a = readonly(GTS, ANCHORS)
    decode_boxes(encode_boxes(g, a), a)
    t = refdet.conventions.describe("decode_boxes")
    assert t["mmdet"]["clamp_mode"] == "symmetric" and "onnx" not in t
    with pytest.raises(ValueError, match="`convention`"):
        decode_boxes(np.zeros((1, 4)), a[:1], convention="onnx")


# ---------------------------------------------------------------------------------- properties

_CONVENTIONS = ["torchvision", "detectron2", "mmdet", "tf", "paper"]


@given(rst.box_sets(min_n=1, max_n=12, degenerate=False, min_size=1.0, max_size=60),
       st.data(), st.sampled_from(_CONVENTIONS),
       st.sampled_from([(1, 1, 1, 1), (10, 10, 5, 5), (0.1, 0.1, 0.2, 0.2)]))
def test_decode_inverts_encode(boxes, data, conv, weights):
    anchors = data.draw(rst.box_sets(min_n=len(boxes), max_n=len(boxes), degenerate=False, min_size=1.0,
                                     max_size=60))
    d = encode_boxes(boxes, anchors, weights=weights, convention=conv)
    # no size ratio reaches 1000/16 = 62.5 here (sizes in [1, 60]), so the clamp never acts
    back = decode_boxes(d, anchors, weights=weights, convention=conv)
    # TF's eps = 1e-8 in the sizes is not undone on decode: an error of about
    # (|centre offset| + size) * eps / anchor size <= (400 + 60) * 1e-8 / 1 here
    tol = 1e-5 if conv == "tf" else 1e-9
    rtol = 1e-12
    if conv == "detectron2":  # detectron2 decodes in float32 (deltas.float())
        assert back.dtype == F32
        # centre = dx * w_a + centre_a adds terms as large as the largest coordinate, so the float32
        # error is a few ulps of that coordinate (anchor at x = 255.5, box at 0: ulp(256) = 3.05e-5)
        big = np.float32(max(np.abs(boxes).max(), np.abs(anchors).max(), 1.0))
        rtol, tol = 2e-6, 4 * float(np.spacing(big))
    np.testing.assert_allclose(back, boxes, rtol=rtol, atol=tol)


@given(rst.box_sets(min_n=1, max_n=12, degenerate=False, min_size=1.0, max_size=60), st.data())
def test_encode_invariant_to_joint_translation(boxes, data):
    anchors = data.draw(rst.box_sets(min_n=len(boxes), max_n=len(boxes), degenerate=False, min_size=1.0))
    shift = np.array([16.0, -32.0, 16.0, -32.0])  # exact on the 1/4 grid
    np.testing.assert_array_equal(encode_boxes(boxes + shift, anchors + shift), encode_boxes(boxes, anchors))


# ------------------------------------------------------------------------------------ gradients

@pytest.mark.parametrize("kw", [
    {},
    {"weights": (10, 10, 5, 5)},
    {"convention": "mmdet", "weights": (0.1, 0.1, 0.2, 0.2), "means": (0.1, 0, 0, 0.2)},
    {"convention": "tf", "weights": (10, 10, 5, 5)},
    {"convention": "caffe", "weight_mode": "multiply", "clamp_mode": "max", "x2_minus_one": True},
])
def test_decode_gradcheck(kw, rng):
    a = ANCHORS[[0, 1, 1, 0, 1]] + rng.uniform(0, 3, (5, 4))
    d = rng.normal(0, 0.5, (5, 8))
    d[0, 2] = 8.0  # clamped (where the profile clamps): zero gradient, away from the kink
    check_gradients(decode_boxes_forward, lambda g, c: decode_boxes_backward(g, c), (d, a), kwargs=kw,
                    rng=1, wrt=["deltas"])


def test_clamp_gradient_is_zero_exactly_at_the_clamp():
    # torch.clamp(x, max=c) passes no gradient at x == c (torch 2.x: strictly inside; the
    # torchvision differential below pins it)
    a = np.array([[0, 0, 10, 10.0]])
    d = np.array([[0, 0, DEFAULT_CLAMP - 1e-9, DEFAULT_CLAMP]])
    boxes, cache = decode_boxes_forward(d, a)
    g = decode_boxes_backward(np.ones((1, 4)) * [-1, -1, 1, 1], cache)
    assert isinstance(g, DecodeGrads) and isinstance(cache, DecodeCache)
    assert g.ddeltas[0, 2] > 0 and g.ddeltas[0, 3] == 0
    # the symmetric clamp (mmdet): -c and +c both stop it, just inside passes
    d = np.array([[0, 0, -DEFAULT_CLAMP, -DEFAULT_CLAMP + 1e-9]])
    boxes, cache = decode_boxes_forward(d, a, convention="mmdet")
    g = decode_boxes_backward(np.ones((1, 4)) * [-1, -1, 1, 1], cache)
    assert g.ddeltas[0, 2] == 0 and g.ddeltas[0, 3] > 0


def test_clamp_gradient_at_the_clamp_vs_torch_autograd():
    torch, BoxCoder = _torch()
    a = np.array([[0, 0, 10, 10.0], [2, 3, 9, 20]])
    d = np.array([[0, 0, DEFAULT_CLAMP, DEFAULT_CLAMP - 1e-9], [0.1, -0.2, -3.0, DEFAULT_CLAMP]])
    td = torch.tensor(d, requires_grad=True)
    BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(td, torch.tensor(a)).sum().backward()
    _, cache = decode_boxes_forward(d, a, weights=(1, 1, 1, 1))
    got = decode_boxes_backward(np.ones((2, 4)), cache).ddeltas
    np.testing.assert_allclose(got, td.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert got[0, 2] == 0 and got[1, 3] == 0


@given(rst.box_sets(min_n=1, max_n=10, degenerate=False, min_size=0.5, grid=None), st.data())
def test_decode_backward_vs_torch_autograd(anchors, data):
    torch, BoxCoder = _torch()
    n = len(anchors)
    d = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=8 * n, max_size=8 * n))).reshape(n, 8)
    up = np.array(data.draw(st.lists(st.floats(-2, 2), min_size=8 * n, max_size=8 * n))).reshape(n, 8)
    assume(np.all(np.abs(d[:, [2, 3, 6, 7]] / 5 - DEFAULT_CLAMP) > 1e-9))
    td = torch.tensor(d, requires_grad=True)
    out = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(td, torch.tensor(anchors))
    (out * torch.tensor(up)).sum().backward()
    boxes, cache = decode_boxes_forward(d, anchors, weights=(10, 10, 5, 5))
    np.testing.assert_allclose(boxes, out.detach().numpy(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(decode_boxes_backward(up, cache).ddeltas, td.grad.numpy(), rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------- torchvision differentials

_WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (1.3, 0.7, 2.1, 0.3)]


@given(rst.box_sets(min_n=0, max_n=16, dtype=F32), st.data(), st.sampled_from(_WEIGHTS))
def test_encode_float32_vs_torchvision(boxes, data, weights):
    torch, BoxCoder = _torch()
    texp, tlog = _torch_fns(torch)
    anchors = data.draw(rst.box_sets(min_n=len(boxes), max_n=len(boxes), dtype=F32, degenerate=False,
                                     min_size=0.25))
    want = BoxCoder(weights).encode_single(torch.from_numpy(boxes), torch.from_numpy(anchors)).numpy()
    # bit for bit once log is torch's: every other operation is in torchvision's order
    _bits_equal(encode_boxes(boxes, anchors, weights=weights, log=tlog), want)
    # with refdet's correctly rounded log: within a few float32 ulp (torch uses MKL's log)
    got = encode_boxes(boxes, anchors, weights=weights)
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    np.testing.assert_allclose(got[fin], want[fin], rtol=4e-7 * max(weights), atol=1e-6 * max(weights))


@given(st.integers(0, 12), st.data(), st.sampled_from(_WEIGHTS), st.integers(1, 3))
def test_decode_float32_vs_torchvision(n, data, weights, k):
    torch, BoxCoder = _torch()
    texp, _ = _torch_fns(torch)
    anchors = data.draw(rst.box_sets(min_n=n, max_n=n, dtype=F32))
    vals = data.draw(st.lists(st.sampled_from([0.0, 0.5, -1.25, 3.0, 4.135166556742356, 25.0, -7.0])
                              | st.floats(-6, 6, width=32), min_size=4 * k * n, max_size=4 * k * n))
    d = np.array(vals, dtype=F32).reshape(n, 4 * k)
    want = BoxCoder(weights).decode_single(torch.from_numpy(d), torch.from_numpy(anchors)).numpy()
    _bits_equal(decode_boxes(d, anchors, weights=weights, exp=texp), want)
    got = decode_boxes(d, anchors, weights=weights)
    scale = np.abs(anchors).max(initial=1.0) + np.abs(want).max(initial=1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=4e-7 * scale)


@given(rst.box_sets(min_n=1, max_n=16, grid=None, degenerate=False, min_size=0.1), st.data(),
       st.sampled_from(_WEIGHTS))
def test_float64_vs_torchvision(boxes, data, weights):
    torch, BoxCoder = _torch()
    anchors = data.draw(rst.box_sets(min_n=len(boxes), max_n=len(boxes), grid=None, degenerate=False,
                                     min_size=0.1))
    bc = BoxCoder(weights)
    want = bc.encode_single(torch.from_numpy(boxes), torch.from_numpy(anchors)).numpy()
    got = encode_boxes(boxes, anchors, weights=weights)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    back = bc.decode_single(torch.from_numpy(got), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode_boxes(got, anchors, weights=weights), back, rtol=1e-12, atol=1e-9)


def test_float32_large_random_bit_exact_with_torch_transcendentals(rng):
    torch, BoxCoder = _torch()
    texp, tlog = _torch_fns(torch)
    xy = rng.uniform(0, 800, (5000, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 300, (5000, 2))], 1).astype(F32)
    xy = rng.uniform(0, 800, (5000, 2))
    g = np.concatenate([xy, xy + rng.uniform(1, 300, (5000, 2))], 1).astype(F32)
    for w in _WEIGHTS:
        bc = BoxCoder(w)
        e = bc.encode_single(torch.from_numpy(g), torch.from_numpy(a)).numpy()
        _bits_equal(encode_boxes(g, a, weights=w, log=tlog), e)
        d = rng.normal(0, 2, (5000, 4)).astype(F32)
        _bits_equal(decode_boxes(d, a, weights=w, exp=texp),
                    bc.decode_single(torch.from_numpy(d), torch.from_numpy(a)).numpy())


@given(rst.aligned_box_sets(min_n=1, max_n=10, min_size=0.5), st.data(), st.sampled_from(_WEIGHTS))
def test_decode_float64_with_clamp_hits_vs_torchvision(pair, data, weights):
    torch, BoxCoder = _torch()
    _, anchors = pair
    d = data.draw(rst.regression_deltas(len(anchors), k=2))
    want = BoxCoder(weights).decode_single(torch.from_numpy(d), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(decode_boxes(d, anchors, weights=weights), want, rtol=1e-12, atol=1e-9)


@given(rst.aligned_box_sets(min_n=1, max_n=10, min_size=0.25))
def test_encode_identical_rows_give_zero_deltas(pair):
    boxes, anchors = pair
    same = np.all(boxes == anchors, axis=1)
    d = encode_boxes(boxes, anchors, weights=(10, 10, 5, 5))
    np.testing.assert_array_equal(d[same], 0.0)


# ------------------------------------------------------------------- the backward's contract

def test_decode_backward_float32_and_bad_input():
    a = ANCHORS.astype(F32)
    d = encode_boxes(GTS, ANCHORS).astype(F32)
    _, cache = decode_boxes_forward(d, a)
    g = decode_boxes_backward(np.ones((2, 4)), cache)
    assert g.ddeltas.dtype == F32  # the forward's working dtype, whatever the upstream gradient's
    for name in ("scale", "widths", "heights", "pred_w", "pred_h"):
        assert getattr(cache, name).dtype == F32, name   # the cache is in the working dtype
    # a float64 upstream gradient is cast to float32 first: float32 math, bit for bit
    rng = np.random.default_rng(5)
    a = np.sort(rng.uniform(0, 50, (200, 4)), axis=1)[:, [0, 1, 2, 3]].astype(F32)
    a[:, 2:] += 1
    _, cache = decode_boxes_forward(rng.normal(0, 1, (200, 4)).astype(F32), a, weights=(10, 10, 5, 5))
    up = rng.normal(0, 1, (200, 4))
    _bits_equal(decode_boxes_backward(up, cache).ddeltas, decode_boxes_backward(up.astype(F32), cache).ddeltas)
    _, cache = decode_boxes_forward(d, ANCHORS.astype(F32))
    with pytest.raises(TypeError, match="`cache` must be the DecodeCache.*got tuple"):
        decode_boxes_backward(np.ones((2, 4)), tuple(cache))
    with pytest.raises(ValueError, match=r"`dboxes` must have shape \(2, 4\).*got \(2, 8\)"):
        decode_boxes_backward(np.ones((2, 8)), cache)
    with pytest.raises(TypeError, match="`dboxes` must be an array of"):
        decode_boxes_backward([["a"] * 4] * 2, cache)
    with pytest.raises(ValueError, match="`dboxes`"):
        decode_boxes_backward(np.full((2, 4), np.nan), cache)


def test_sibling_decode_profile_keeps_its_overrides():
    # a Profile resolved for decode_boxes, handed to decode_boxes_forward, keeps its overridden knobs
    # (conventions.resolve alone would take only the profile's name)
    from refdet import conventions

    a = np.array([[0, 0, 10, 10.0]])
    d = np.array([[0, 0, 6.0, -6.0]])  # past the clamp both ways
    p = conventions.resolve("decode_boxes", "mmdet", clamp_mode="none")
    want = decode_boxes(d, a, convention="mmdet", clamp_mode="none")
    assert not np.allclose(want, decode_boxes(d, a, convention="mmdet"))
    np.testing.assert_array_equal(decode_boxes_forward(d, a, convention=p)[0], want)
    q = conventions.resolve("decode_boxes_forward", "mmdet", clamp_mode="none")
    np.testing.assert_array_equal(decode_boxes(d, a, convention=q), want)


def test_decode_deltas_shapes():
    a = ANCHORS
    for bad in (np.zeros((2, 6)), np.zeros((2, 4, 1)), np.zeros((2, 0)), np.zeros(8)):
        with pytest.raises(ValueError, match=r"`deltas` must have shape \(N, 4K\); got " + re.escape(str(bad.shape))):
            decode_boxes(bad, a)
    with pytest.raises(TypeError, match="`deltas` must be an array of"):
        decode_boxes([["x"] * 4] * 2, a)
    with pytest.raises(ValueError, match="`deltas`"):
        decode_boxes(np.full((2, 4), np.nan), a)
    # no boxes: (0, 4K), (0, 0) and the 1-D empty array all decode to no boxes
    empty = np.zeros((0, 4))
    assert decode_boxes(np.zeros((0, 8)), empty).shape == (0, 8)
    assert decode_boxes(np.zeros((0, 0)), empty).shape == (0, 0)
    assert decode_boxes(np.zeros(0), empty).shape == (0, 4)


def test_arguments_named_in_errors():
    a, d = ANCHORS, np.zeros((2, 4))
    for fn in (decode_boxes, lambda *x, **k: decode_boxes_forward(*x, **k)[0]):
        with pytest.raises(ValueError, match=r"`anchors` must have shape \(N, 4\)"):
            fn(d, np.zeros((2, 3)))
        with pytest.raises(ValueError, match="`deltas` and `anchors` must have the same length; got 3 and 2"):
            fn(np.zeros((3, 4)), a)
        with pytest.raises(ValueError, match="`weights` must be 4 numbers"):
            fn(d, a, weights=(1, 1, 1))
        with pytest.raises(TypeError, match="`clamp` must be a real number"):
            fn(d, a, clamp="big")
    with pytest.raises(ValueError, match=r"`anchors` must have shape \(N, 4\)"):
        encode_boxes(GTS, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`boxes` must have shape \(N, 4\)"):
        encode_boxes(np.zeros((2, 3)), a)
    with pytest.raises(ValueError, match="`boxes` and `anchors` must have the same length; got 1 and 2"):
        encode_boxes(GTS[:1], a)
    with pytest.raises(ValueError, match="`weights` must be 4 numbers"):
        encode_boxes(GTS, a, weights=(1, 1, 1))
    with pytest.raises(ValueError, match="`means` must be 4 finite numbers"):
        encode_boxes(GTS, a, weights=(1, 1, 1, 1), means=(0, 0, np.nan, 0), convention="mmdet")
    with pytest.raises(TypeError, match="`means` must be 4 numbers"):
        decode_boxes(d, a, means="zero", convention="mmdet")


def test_clamp_none_and_negative():
    a = np.array([[0, 0, 10, 10.0]])
    d = np.array([[0, 0, 6.0, -6.0]])
    # clamp=None is the default clamp, log(1000 / 16)
    np.testing.assert_array_equal(decode_boxes(d, a, clamp=None), decode_boxes(d, a))
    np.testing.assert_array_equal(decode_boxes(d, a, clamp=None, convention="mmdet"),
                                  decode_boxes(d, a, convention="mmdet"))
    # mmdet clamps to [-|c|, |c|]: a negative clamp is its magnitude
    np.testing.assert_array_equal(decode_boxes(d, a, clamp=-2.0, convention="mmdet"),
                                  decode_boxes(d, a, clamp=2.0, convention="mmdet"))
    w, h = 10 * math.exp(2.0), 10 * math.exp(-2.0)
    np.testing.assert_allclose(decode_boxes(d, a, clamp=2.0, convention="mmdet"),
                               [[5 - w / 2, 5 - h / 2, 5 + w / 2, 5 + h / 2]], rtol=1e-14)
    np.testing.assert_allclose(decode_boxes(d[:, [0, 1, 3, 2]], a, clamp=2.0, convention="mmdet"),
                               [[5 - h / 2, 5 - w / 2, 5 + h / 2, 5 + w / 2]], rtol=1e-14)
    # torchvision's clamp(max=c) keeps the sign: c = -1 caps dw = 6 at -1, dh = -6 stays
    w, h = 10 * math.exp(-1.0), 10 * math.exp(-6.0)
    np.testing.assert_allclose(decode_boxes(d, a, clamp=-1.0), [[5 - w / 2, 5 - h / 2, 5 + w / 2, 5 + h / 2]],
                               rtol=1e-14)


def test_decode_overflow_and_zero_size_anchors_are_silent():
    # exp overflows to inf without a clamp, and inf * 0 (a zero-width anchor) is NaN: as torch, with
    # no RuntimeWarning
    import warnings

    a = np.array([[0, 0, 10, 10.0], [5, 5, 5, 5.0]])
    d = np.array([[0, 0, 1000.0, 0], [0, 0, 1000.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = decode_boxes_forward(d, a, clamp_mode="none")
    assert out[0].tolist() == [-np.inf, 0, np.inf, 10]
    assert np.isnan(out[1]).all()
    # the cache's clamp masks are bool (documented): all True without a clamp
    assert cache.pass_w.dtype == bool and cache.pass_h.dtype == bool and cache.pass_w.all()
    _, cache = decode_boxes_forward(d, a)
    assert cache.pass_w.dtype == bool and cache.pass_w.tolist() == [[False], [False]]
    assert cache.pass_h.tolist() == [[True], [False]]


def test_encode_degenerate_is_silent():
    # log(0) = -inf (a zero-width box), widths that overflow to inf (inf / inf = NaN), and an
    # overflowing offset: the answers torch gives, with no RuntimeWarning
    import warnings

    g = np.array([[5, 5, 5, 15.0], [-1e308, 0, 1e308, 10], [1e300, 0, 1.5e300, 10]])
    a = np.array([[0, 0, 10, 10.0], [-1e308, 0, 1e308, 10], [0, 0, 1e-300, 10]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = encode_boxes(g, a)
    assert d[0, 2] == -np.inf and d[0, 0] == 0
    assert np.isnan(d[1, 0]) and np.isnan(d[1, 2]) and d[1, 3] == 0   # x2 - x1 = inf for both
    assert d[2, 0] == np.inf and d[2, 2] == np.inf                      # 1.25e300 / 1e-300 overflows


def test_clamp_masks_at_and_around_the_clamp():
    c = DEFAULT_CLAMP
    v = np.array([-6.0, -c, np.nextafter(-c, 0), 0.0, np.nextafter(c, 0), c, 6.0])
    a = np.tile([[0, 0, 10, 10.0]], (len(v), 1))
    d = np.zeros((len(v), 4))
    d[:, 2] = v
    d[:, 3] = v[::-1]
    _, cache = decode_boxes_forward(d, a, convention="mmdet")          # clamp(min=-c, max=c)
    inside = [False, False, True, True, True, False, False]
    assert cache.pass_w[:, 0].tolist() == inside and cache.pass_h[:, 0].tolist() == inside[::-1]
    _, cache = decode_boxes_forward(d, a)                               # clamp(max=c)
    below = [True, True, True, True, True, False, False]
    assert cache.pass_w[:, 0].tolist() == below and cache.pass_h[:, 0].tolist() == below[::-1]


def test_custom_log_and_exp_must_be_elementwise():
    with pytest.raises(ValueError, match=r"`log` must be elementwise; it returned shape \(1,\) for shape \(2,\)"):
        encode_boxes(GTS, ANCHORS, log=lambda x: np.log(x)[:1])
    with pytest.raises(ValueError, match=r"`exp` must be elementwise; it returned shape \(\) for shape \(2, 1\)"):
        decode_boxes(np.zeros((2, 4)), ANCHORS, exp=lambda x: np.exp(x).sum())


def test_custom_log_and_exp_checked_on_every_call():
    # the width call is fine, the height call is not: the height's result is checked too
    def second_bad(fn):
        calls = []

        def f(x):
            calls.append(1)
            return fn(x) if len(calls) == 1 else fn(x)[:1]
        return f

    with pytest.raises(ValueError, match="`log` must be elementwise"):
        encode_boxes(GTS, ANCHORS, log=second_bad(np.log))
    with pytest.raises(ValueError, match="`exp` must be elementwise"):
        decode_boxes(np.zeros((2, 4)), ANCHORS, exp=second_bad(np.exp))


def test_means_validation():
    from fractions import Fraction

    a, d, kw = ANCHORS, np.zeros((2, 4)), dict(weights=(0.1, 0.1, 0.2, 0.2), convention="mmdet")
    with pytest.raises(TypeError, match=r"`means` must be 4 numbers; got int 5"):
        decode_boxes(d, a, means=5, **kw)
    with pytest.raises(TypeError, match=r"`means` must be 4 numbers; got str 'zero'"):
        encode_boxes(GTS, a, means="zero", **kw)
    with pytest.raises(ValueError, match=r"`means` must be 4 finite numbers; got \(0, 0, 0\)"):
        decode_boxes(d, a, means=(0, 0, 0), **kw)
    with pytest.raises(ValueError, match=r"`means` must be 4 finite numbers; got \(0, 0, inf, 0\)"):
        decode_boxes(d, a, means=(0, 0, np.inf, 0), **kw)
    # any real numbers: fractions and ints are the floats they stand for
    m = (0.5, 0.25, 0.0, -0.5)
    want = decode_boxes(d, a, means=m, **kw)
    np.testing.assert_array_equal(decode_boxes(d, a, means=tuple(Fraction(x) for x in m), **kw), want)
    np.testing.assert_array_equal(encode_boxes(GTS, a, means=(1, 0, 0, 0), **kw),
                                  encode_boxes(GTS, a, means=(1.0, 0.0, 0.0, 0.0), **kw))
