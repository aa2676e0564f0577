"""Tests of refdet.yolo.decode: golden decodes, gradient checks, torch autograd, ultralytics.

Tolerances: float64 against torch float64 1e-12 relative (same formulas); float32 against
ultralytics' float32 DFL to a few ulp of the coordinate's magnitude (the expectation is summed in a
different order: a 1 x 1 convolution there, a dot product here).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.testing import check_gradients
from refdet.yolo import decode as D
from refdet.yolo.anchors import make_anchors


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _ultra():
    _torch()
    return pytest.importorskip("ultralytics.utils.tal")


ANCH = np.array([[10.0, 13.0], [16.0, 30.0]])


# --------------------------------------------------------------------------------------- golden

def test_yolov3_decode_golden():
    # t = 0: sigmoid = 0.5. Cell (x=2, y=1) of a stride-8 map, anchor (10, 13):
    # cx = (0.5 + 2) * 8 = 20, cy = (0.5 + 1) * 8 = 12, w = 10 * e^0 = 10, h = 13
    t = np.zeros((1, 2, 2, 3, 4))
    b, _ = D.yolov3_decode_forward(t, ANCH, 8)
    np.testing.assert_allclose(b[0, 0, 1, 2], [20, 12, 10, 13], rtol=1e-15)
    # tw = ln 2 doubles the width: 16 * 2 = 32 for anchor 1
    t[0, 1, 1, 2, 2] = math.log(2.0)
    b, _ = D.yolov3_decode_forward(t, ANCH, 8)
    np.testing.assert_allclose(b[0, 1, 1, 2, 2], 32.0, rtol=1e-15)
    # YOLOv4 scale_x_y = 2: cx = (2 * 0.5 - 0.5 + 2) * 8 = 20 at t = 0 (the centre stays put), and a
    # saturated sigmoid reaches (2 * 1 - 0.5 + 2) * 8 = 28, half a cell beyond the cell's edge at 24
    t = np.zeros((1, 1, 1, 3, 4))
    t[..., 0] = 40.0
    b, _ = D.yolov3_decode_forward(t, ANCH[:1], 8, scale_x_y=2.0)
    np.testing.assert_allclose(b[0, 0, 0, 2, :2], [28.0, 4.0], rtol=1e-15)


def test_yolov5_decode_golden():
    # t = 0: 2 * 0.5 - 0.5 = 0.5 -> cx = (0.5 + 2) * 8 = 20; w = (2 * 0.5)^2 * 10 = 10
    t = np.zeros((1, 1, 2, 3, 4))
    b, _ = D.yolov5_decode_forward(t, ANCH[:1], 8)
    np.testing.assert_allclose(b[0, 0, 1, 2], [20, 12, 10, 13], rtol=1e-15)
    # saturated: centre offset 2 - 0.5 = 1.5 cells, size at most 4 anchors (anchor_t = 4)
    t[:] = 50.0
    b, _ = D.yolov5_decode_forward(t, ANCH[:1], 8)
    np.testing.assert_allclose(b[0, 0, 0, 0], [12, 12, 40, 52], rtol=1e-15)


def test_yolox_decode_golden():
    # cx = (t + x) * s with the grid at 0 (no half cell): t = 0.25 at cell x = 3, stride 16 -> 52
    t = np.zeros((1, 1, 4, 4))
    t[0, 0, 3, 0] = 0.25
    t[0, 0, 3, 2] = math.log(3.0)
    b, _ = D.yolox_decode_forward(t, 16)
    np.testing.assert_allclose(b[0, 0, 3], [52, 0, 48, 16], rtol=1e-15)


def test_dfl_golden():
    # all mass on bin 3 -> d = 3; uniform over 4 bins -> (0 + 1 + 2 + 3) / 4 = 1.5
    z = np.full((1, 4, 4), -1e4)
    z[0, 0, 3] = 0.0
    z[0, 1] = 0.0
    z[0, 2, 1] = z[0, 2, 2] = 0.0                           # half on 1, half on 2 -> 1.5
    z[0, 3, 0] = 0.0
    d, _ = D.dfl_forward(z, reg_max=4)
    np.testing.assert_allclose(d, [[3.0, 1.5, 1.5, 0.0]], atol=1e-12)
    # flat layout (side-major) gives the same
    d2, _ = D.dfl_forward(z.reshape(1, 16), reg_max=4)
    np.testing.assert_array_equal(d, d2)


def test_dist2bbox_bbox2dist_golden_and_round_trip():
    # point (10, 20), distances l=2, t=3, r=4, b=5: xyxy (8, 17, 14, 25); cxcywh (11, 21, 6, 8)
    d = np.array([[2.0, 3.0, 4.0, 5.0]])
    p = np.array([[10.0, 20.0]])
    np.testing.assert_array_equal(D.dist2bbox(d, p), [[8, 17, 14, 25]])
    np.testing.assert_array_equal(D.dist2bbox(d, p, out_fmt="cxcywh"), [[11, 21, 6, 8]])
    np.testing.assert_array_equal(D.bbox2dist(p, np.array([[8.0, 17, 14, 25]])), d)
    # reg_max clamps to [0, reg_max - 0.01]: ultralytics passes reg_max - 1 = 3 -> [0, 2.99]
    np.testing.assert_allclose(D.bbox2dist(p, np.array([[8.0, 17, 14, 25]]), reg_max=3), [[2, 2.99, 2.99, 2.99]])


# ------------------------------------------------------------------------------ gradient checks

def _raw(rng, shape, scale=1.5):
    return rng.standard_normal(shape) * scale


@pytest.mark.parametrize("fn,shape,kw", [
    ("yolov3", (2, 2, 3, 2, 4), dict(anchors=ANCH, stride=8)),
    ("yolov3", (1, 2, 2, 2, 4), dict(anchors=ANCH, stride=(8, 16), scale_x_y=1.1)),
    ("yolov5", (2, 2, 3, 2, 4), dict(anchors=ANCH, stride=8)),
    ("yolox", (2, 3, 2, 4), dict(stride=16)),
])
def test_decoders_gradcheck(fn, shape, kw):
    rng = np.random.default_rng(0)
    fwd = getattr(D, f"{fn}_decode_forward")
    bwd = getattr(D, f"{fn}_decode_backward")
    check_gradients(fwd, bwd, (_raw(rng, shape),), kwargs=kw, rng=1)


def test_dfl_and_dist2bbox_gradcheck():
    rng = np.random.default_rng(0)
    check_gradients(lambda z: D.dfl_forward(z, reg_max=5), D.dfl_backward, (_raw(rng, (2, 3, 20)),), rng=1)
    pts = rng.uniform(0, 9, (3, 2))
    for fmt in ("xyxy", "cxcywh"):
        check_gradients(lambda d: D.dist2bbox_forward(d, pts, out_fmt=fmt),
                        D.dist2bbox_backward, (rng.uniform(0, 5, (2, 3, 4)),), rng=1)
    ap, st_ = make_anchors([(2, 2), (1, 1)], [8, 16], dtype=np.float64)
    check_gradients(lambda z: D.dfl_decode_forward(z, ap, st_, reg_max=6), D.dfl_decode_backward,
                    (_raw(rng, (2, 5, 24)),), rng=2)


# ------------------------------------------------------------------------------ torch autograd

def _autograd(torch, f, t_np, dout):
    t = torch.tensor(t_np, requires_grad=True)
    y = f(t)
    y.backward(torch.tensor(dout))
    return y.detach().numpy(), t.grad.numpy()


@given(st.integers(0, 10 ** 6), st.sampled_from([1.0, 1.05, 1.2]))
def test_yolov3_decode_matches_torch_autograd(seed, sxy):
    torch = _torch()
    rng = np.random.default_rng(seed)
    t = _raw(rng, (1, 2, 3, 4, 4), 3)
    dout = rng.standard_normal(t.shape)
    a = torch.tensor(ANCH)
    gy, gx = torch.meshgrid(torch.arange(3.0, dtype=torch.float64), torch.arange(4.0, dtype=torch.float64),
                            indexing="ij")

    def f(x):
        p = x[..., :2].sigmoid() * sxy - 0.5 * (sxy - 1)              # darknet scal_add
        cx = (p[..., 0] + gx) * 8
        cy = (p[..., 1] + gy) * 8
        wh = x[..., 2:].exp() * a[None, :, None, None, :]
        return torch.cat([cx[..., None], cy[..., None], wh], -1)

    ref, gref = _autograd(torch, f, t, dout)
    got, cache = D.yolov3_decode_forward(t, ANCH, 8, scale_x_y=sxy)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(D.yolov3_decode_backward(dout, cache).dt, gref, rtol=1e-12, atol=1e-12)


@given(st.integers(0, 10 ** 6))
def test_yolov5_and_yolox_decode_match_torch_autograd(seed):
    torch = _torch()
    rng = np.random.default_rng(seed)
    t = _raw(rng, (2, 2, 3, 4, 4), 3)
    dout = rng.standard_normal(t.shape)
    a = torch.tensor(ANCH)
    yv, xv = torch.meshgrid(torch.arange(3.0, dtype=torch.float64), torch.arange(4.0, dtype=torch.float64),
                            indexing="ij")
    grid = torch.stack((xv, yv), 2) - 0.5                              # YOLOv5 Detect._make_grid

    def f5(x):                                                         # YOLOv5 Detect.forward
        xy, wh = x.sigmoid().split((2, 2), 4)
        xy = (xy * 2 + grid) * 8
        wh = (wh * 2) ** 2 * (a[None, :, None, None, :])
        return torch.cat((xy, wh), 4)

    ref, gref = _autograd(torch, f5, t, dout)
    got, cache = D.yolov5_decode_forward(t, ANCH, 8)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(D.yolov5_decode_backward(dout, cache).dt, gref, rtol=1e-12, atol=1e-12)

    tx = t[:, 0]
    dx = dout[:, 0]

    def fx(x):                                                         # YOLOX decode_outputs
        g = torch.stack((xv, yv), 2)
        return torch.cat([(x[..., :2] + g) * 16, x[..., 2:4].exp() * 16], -1)

    ref, gref = _autograd(torch, fx, tx, dx)
    got, cache = D.yolox_decode_forward(tx, 16)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(D.yolox_decode_backward(dx, cache).dt, gref, rtol=1e-12, atol=1e-12)


def test_yolov5_decode_float32_matches_torch_bits():
    torch = _torch()
    rng = np.random.default_rng(3)
    t = (rng.standard_normal((2, 2, 5, 6, 4)) * 3).astype(np.float32)
    a = torch.tensor(ANCH, dtype=torch.float32)
    yv, xv = torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij")
    grid = torch.stack((xv, yv), 2).float() - 0.5
    xy, wh = torch.from_numpy(t).sigmoid().split((2, 2), 4)
    ref = torch.cat(((xy * 2 + grid) * 8, (wh * 2) ** 2 * a[None, :, None, None, :]), 4).numpy()
    got, _ = D.yolov5_decode_forward(t, ANCH.astype(np.float32), 8)
    assert got.dtype == np.float32
    # sigmoid is 1 / (1 + exp(-x)) on both sides; exp may differ by an ulp between SLEEF and NumPy
    np.testing.assert_allclose(got, ref, rtol=4 * np.finfo(np.float32).eps, atol=1e-5)


# ------------------------------------------------------------------------------- ultralytics

@given(st.integers(0, 10 ** 6), st.sampled_from(["xyxy", "cxcywh"]))
def test_dist2bbox_and_bbox2dist_match_ultralytics(seed, fmt):
    torch = _torch()
    tal = _ultra()
    rng = np.random.default_rng(seed)
    d = np.round(rng.uniform(0, 20, (2, 7, 4)), 1)
    p = np.round(rng.uniform(0, 30, (7, 2)), 1)
    dout = rng.standard_normal((2, 7, 4))
    td = torch.tensor(d, requires_grad=True)
    ref = tal.dist2bbox(td, torch.tensor(p), xywh=fmt == "cxcywh")
    ref.backward(torch.tensor(dout))
    got, cache = D.dist2bbox_forward(d, p, out_fmt=fmt)
    np.testing.assert_array_equal(got, ref.detach().numpy())
    np.testing.assert_array_equal(D.dist2bbox_backward(dout, cache).ddistance, td.grad.numpy())
    boxes = got if fmt == "xyxy" else D.dist2bbox(d, p)
    for rm in (None, 16, 3):
        r = tal.bbox2dist(torch.tensor(p), torch.tensor(boxes), reg_max=rm).numpy()
        np.testing.assert_array_equal(D.bbox2dist(p, boxes, reg_max=rm), r)
    # round trip: dist2bbox(bbox2dist(a, b), a) == b up to the rounding of a - (a - x1)
    np.testing.assert_allclose(D.dist2bbox(D.bbox2dist(p, boxes), p), boxes, atol=1e-12)


@pytest.mark.parametrize("reg_max", [16, 8, 1])
def test_dfl_decode_matches_ultralytics_inference_float32(reg_max):
    torch = _torch()
    tal = _ultra()
    block = pytest.importorskip("ultralytics.nn.modules.block")
    rng = np.random.default_rng(reg_max)
    sizes, strides = [(8, 8), (4, 4), (2, 2)], [8.0, 16.0, 32.0]
    ap, st_ = make_anchors(sizes, strides)
    N = ap.shape[0]
    z = (rng.standard_normal((2, N, 4 * reg_max)) * 3).astype(np.float32)
    box = torch.from_numpy(np.ascontiguousarray(z.transpose(0, 2, 1)))       # (B, 4 * reg_max, N)
    dfl = block.DFL(reg_max) if reg_max > 1 else torch.nn.Identity()
    with torch.no_grad():
        ref = tal.dist2bbox(dfl(box), torch.from_numpy(ap.T).unsqueeze(0), xywh=True, dim=1) \
            * torch.from_numpy(st_.T)
    got, _ = D.dfl_decode_forward(z, ap, st_, reg_max=reg_max)
    ref = ref.numpy().transpose(0, 2, 1)
    assert got.dtype == np.float32
    # each coordinate is a difference of terms up to stride * (cells + reg_max): judge the float32
    # error against the largest magnitude, not the (possibly cancelled) coordinate itself
    assert np.max(np.abs(got - ref)) <= 16 * np.finfo(np.float32).eps * np.max(np.abs(ref))


def test_dfl_decode_matches_v8_loss_bbox_decode_float64():
    torch = _torch()
    rng = np.random.default_rng(0)
    R = 16
    ap, _ = make_anchors([(4, 4)], [8.0], dtype=np.float64)
    z = rng.standard_normal((2, 16, 4 * R)) * 2
    proj = torch.arange(R, dtype=torch.float64)
    # ultralytics v8DetectionLoss.bbox_decode
    pd = torch.tensor(z).view(2, 16, 4, R).softmax(3).matmul(proj)
    ref = torch.cat([torch.tensor(ap) - pd[..., :2], torch.tensor(ap) + pd[..., 2:]], -1).numpy()
    got, _ = D.dfl_decode_forward(z, ap, reg_max=R, out_fmt="xyxy")
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)


def test_dfl_backward_matches_torch_autograd():
    torch = _torch()
    rng = np.random.default_rng(5)
    z = rng.standard_normal((3, 6, 4 * 7)) * 2
    dout = rng.standard_normal((3, 6, 4))
    tz = torch.tensor(z, requires_grad=True)
    y = tz.view(3, 6, 4, 7).softmax(3).matmul(torch.arange(7, dtype=torch.float64))
    y.backward(torch.tensor(dout))
    d, cache = D.dfl_forward(z, reg_max=7)
    np.testing.assert_allclose(d, y.detach().numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(D.dfl_backward(dout, cache).dt, tz.grad.numpy(), rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------- properties

@given(st.integers(0, 10 ** 6), st.integers(2, 20))
def test_dfl_expectation_in_range_and_layout_independent(seed, R):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((5, 4 * R)) * 10
    d, _ = D.dfl_forward(z, reg_max=R)
    assert np.all(d >= -1e-12) and np.all(d <= R - 1 + 1e-12)
    f = np.asfortranarray(z)
    ro = z.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(D.dfl_forward(f, reg_max=R)[0], d)
    np.testing.assert_array_equal(D.dfl_forward(ro, reg_max=R)[0], d)


# ------------------------------------------------------------------------------- bad input

def test_decode_bad_input():
    with pytest.raises(ValueError, match="`reg_max` must be >= 1"):
        D.dfl_forward(np.zeros((2, 4)), reg_max=0)
    with pytest.raises(ValueError, match=r"`logits`.*NaN or inf; got nan at index \(1, 5\)"):
        D.dfl_forward(np.where(np.arange(128).reshape(2, 64) == 69, np.nan, 0.0), reg_max=16)
    with pytest.raises(ValueError, match="`logits`.*4 \\* reg_max"):
        D.dfl_forward(np.zeros((2, 30)), reg_max=16)
    with pytest.raises(ValueError, match="`anchors`.*positive"):
        D.yolov3_decode_forward(np.zeros((1, 2, 2, 2, 4)), np.array([[1.0, 2.0], [0.0, 3.0]]), 8)
    with pytest.raises(ValueError, match="`anchors`.*one row per anchor"):
        D.yolov5_decode_forward(np.zeros((1, 3, 2, 2, 4)), ANCH, 8)
    with pytest.raises(ValueError, match="`t`.*NaN"):
        D.yolov5_decode_forward(np.full((1, 2, 2, 2, 4), np.nan), ANCH, 8)
    with pytest.raises(ValueError, match="`t`.*\\(B, A, H, W, 4\\)"):
        D.yolov3_decode_forward(np.zeros((2, 2, 4)), ANCH, 8)
    with pytest.raises(ValueError, match="`stride`.*> 0"):
        D.yolox_decode_forward(np.zeros((1, 2, 2, 4)), 0)
    with pytest.raises(ValueError, match="`anchor_points`.*broadcast"):
        D.dist2bbox(np.zeros((5, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`out_fmt`"):
        D.dist2bbox(np.zeros((5, 4)), np.zeros((5, 2)), out_fmt="xywh")
    with pytest.raises(ValueError, match="`stride_tensor`"):
        D.dfl_decode_forward(np.zeros((1, 3, 64)), np.zeros((3, 2)), np.ones((4, 1)))
    with pytest.raises(TypeError, match="`cache`"):
        D.yolov5_decode_backward(np.zeros((1, 2, 2, 2, 4)), D.yolox_decode_forward(np.zeros((1, 2, 2, 4)), 8)[1])
