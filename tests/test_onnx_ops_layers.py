"""Tests of the refdet.onnx_ops layer pairs: gradient checks (float64 central differences), torch
autograd (F.softmax, F.log_softmax, F.leaky_relu, F.conv_transpose2d, F.interpolate bilinear with
align_corners True/False) forward and backward, golden cases with the arithmetic written out, memory
layouts, and the readable references of refdet.reference.onnx_ops.

Tolerances: float64 against torch ~1e-12 (different summation orders); float32 forward against torch
within a few ulp (their exp and GEMM orders differ); gradient checks at the registry's 1e-5 relative.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refdet.onnx_ops as O
from refdet.reference import onnx_ops as R
from refdet.testing import check_gradients


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# ---------------------------------------------------------------------------------------------------
# golden cases
# ---------------------------------------------------------------------------------------------------

def test_softmax_golden():
    # [0, ln 3]: exp -> [1, 3], sum 4 -> [0.25, 0.75]; log-softmax [ln .25, ln .75]
    x = np.array([[0.0, np.log(3.0)]])
    y, _ = O.softmax_forward(x)
    np.testing.assert_allclose(y, [[0.25, 0.75]], rtol=1e-15)
    ly, _ = O.log_softmax_forward(x)
    np.testing.assert_allclose(ly, np.log([[0.25, 0.75]]), rtol=1e-15)
    # a masked logit (-inf) gets probability 0 and passes no gradient
    y, c = O.softmax_forward(np.array([1.0, -np.inf, 1.0]))
    np.testing.assert_array_equal(y, [0.5, 0, 0.5])
    assert O.softmax_backward(np.array([1.0, 5.0, -1.0]), c).dx[1] == 0


def test_conv_transpose2d_golden():
    # 2x2 input, 2x2 kernel of ones, stride 2: each input pixel paints its own 2x2 block
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.ones((1, 1, 2, 2))
    y, _ = O.conv_transpose2d_forward(x, w, stride=2)
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # stride 1: overlaps add (the centre sums all four): (2-1)*1 + 2 = 3 rows
    y, _ = O.conv_transpose2d_forward(x, w, stride=1)
    np.testing.assert_array_equal(y[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    # padding 1 crops one row/column from every side of that; output_padding 1 (stride 2) adds a zero row + column
    y, _ = O.conv_transpose2d_forward(x, w, stride=1, padding=1)
    np.testing.assert_array_equal(y[0, 0], [[10]])
    y, _ = O.conv_transpose2d_forward(x, w, np.array([0.5]), stride=2, output_padding=1)
    assert y.shape == (1, 1, 5, 5) and np.all(y[0, 0, 4] == 0.5) and np.all(y[0, 0, :, 4] == 0.5)


def test_resize_linear_golden():
    # 1x2 -> 1x4, half pixel: src = (j + 0.5) * 2/4 - 0.5 = [-0.25 -> 0, 0.25, 0.75, 1.25 -> 1 (edge)]
    x = np.array([[[[0.0, 4.0]]]])
    y, _ = O.resize_linear_forward(x, size=(1, 4))
    np.testing.assert_allclose(y[0, 0, 0], [0, 1, 3, 4])
    y, _ = O.resize_linear_forward(x, size=(1, 4), align_corners=True)       # src = j * 1/3
    np.testing.assert_allclose(y[0, 0, 0], [0, 4 / 3, 8 / 3, 4])
    # output length 1: PyTorch (half_pixel) reads the centre 0.5 -> 2; ONNX pytorch_half_pixel reads 0 -> 0
    assert O.resize_linear_forward(x, size=(1, 1))[0][0, 0, 0, 0] == 2
    assert O.resize_linear_forward(x, size=(1, 1), coordinate_transformation_mode="pytorch_half_pixel")[0][0, 0, 0, 0] == 0


def test_leaky_relu_golden():
    y, c = O.leaky_relu_forward(np.array([-2.0, 0.0, 3.0]), negative_slope=0.1)
    np.testing.assert_allclose(y, [-0.2, 0, 3])
    np.testing.assert_allclose(O.leaky_relu_backward(np.ones(3), c).dx, [0.1, 0.1, 1])   # kink: the slope


# ---------------------------------------------------------------------------------------------------
# against torch autograd
# ---------------------------------------------------------------------------------------------------

@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=st.floats(-20, 20)),
       data=st.data(), log=st.booleans())
def test_softmax_pairs_match_torch(x, data, log):
    torch = _torch()
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-3, 3)))
    fwd, bwd = (O.log_softmax_forward, O.log_softmax_backward) if log else (O.softmax_forward, O.softmax_backward)
    y, cache = fwd(x, axis=axis)
    t = torch.tensor(x, requires_grad=True)
    ty = (torch.log_softmax if log else torch.softmax)(t, dim=axis)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bwd(dy, cache).dx, t.grad.numpy(), rtol=1e-10, atol=1e-13)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8), elements=st.floats(-20, 20,
                                                                                                         width=32)))
def test_softmax_float32_close_to_torch(x):
    torch = _torch()
    y, _ = O.softmax_forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, torch.softmax(torch.tensor(x), -1).numpy(), rtol=4e-7, atol=1e-7)


@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=6), elements=st.floats(-5, 5)),
       slope=st.floats(-1, 1), data=st.data())
def test_leaky_relu_pair_matches_torch(x, slope, data):
    torch = _torch()
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-3, 3)))
    y, cache = O.leaky_relu_forward(x, negative_slope=slope)
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.leaky_relu(t, slope)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(O.leaky_relu_backward(dy, cache).dx, t.grad.numpy())


@st.composite
def conv_transpose_layer(draw, dtype=np.float64):
    groups = draw(st.integers(1, 2))
    c, fg = groups * draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    oph, opw = draw(st.integers(0, max(sh, dh) - 1)), draw(st.integers(0, max(sw, dw) - 1))
    full_h, full_w = (h - 1) * sh + dh * (kh - 1) + 1, (w - 1) * sw + dw * (kw - 1) + 1
    ph, pw = draw(st.integers(0, (full_h + oph - 1) // 2)), draw(st.integers(0, (full_w + opw - 1) // 2))
    el = st.floats(-2, 2) if dtype == np.float64 else st.floats(-2, 2, width=32)
    x = draw(hnp.arrays(dtype, (draw(st.integers(1, 2)), c, h, w), elements=el))
    wt = draw(hnp.arrays(dtype, (c, fg, kh, kw), elements=el))
    b = draw(st.none() | hnp.arrays(dtype, (fg * groups,), elements=el))
    return x, wt, b, dict(stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw), dilation=(dh, dw),
                          groups=groups)


@given(case=conv_transpose_layer(), data=st.data())
def test_conv_transpose2d_pair_matches_torch(case, data):
    torch = _torch()
    F = torch.nn.functional
    x, w, b, kw = case
    y, cache = O.conv_transpose2d_forward(x, w, b, **kw)
    dy = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-2, 2)))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    ty = F.conv_transpose2d(tx, tw, tb, stride=kw["stride"], padding=kw["padding"], output_padding=kw["output_padding"],
                            groups=kw["groups"], dilation=kw["dilation"])
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = O.conv_transpose2d_backward(dy, cache)
    np.testing.assert_allclose(g.dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.dw, tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(g.db, tb.grad.numpy(), rtol=1e-12, atol=1e-12)
    else:
        assert g.db is None


@given(case=conv_transpose_layer(np.float32))
def test_conv_transpose2d_float32_close_to_torch(case):
    torch = _torch()
    x, w, b, kw = case
    y, _ = O.conv_transpose2d_forward(x, w, b, **kw)
    assert y.dtype == np.float32
    t = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), None if b is None else torch.tensor(b),
                                             stride=kw["stride"], padding=kw["padding"],
                                             output_padding=kw["output_padding"], groups=kw["groups"],
                                             dilation=kw["dilation"]).numpy()
    bound = 1e-6 * (1 + np.abs(x).max() * np.abs(w).max() * w[0].size * x.shape[1])
    np.testing.assert_allclose(y, t, rtol=0, atol=bound)


@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6)),
                    elements=st.floats(-5, 5)),
       ho=st.integers(1, 13), wo=st.integers(1, 13), align=st.booleans(), data=st.data())
def test_resize_linear_pair_matches_torch(x, ho, wo, align, data):
    torch = _torch()
    y, cache = O.resize_linear_forward(x, size=(ho, wo), align_corners=align)
    dy = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-2, 2)))
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(t, size=(ho, wo), mode="bilinear", align_corners=align)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(O.resize_linear_backward(dy, cache).dx, t.grad.numpy(), rtol=1e-12, atol=1e-12)


@given(x=hnp.arrays(np.float64, (1, 2, 5, 7), elements=st.floats(-5, 5)),
       sf=st.sampled_from([0.5, 0.75, 1.5, 2.0, 2.5, 1.7]), align=st.booleans())
def test_resize_linear_scale_factor_matches_torch(x, sf, align):
    # with scale_factor PyTorch uses 1 / scale_factor for the coordinates, not in / out
    torch = _torch()
    y, _ = O.resize_linear_forward(x, scale_factor=sf, align_corners=align)
    t = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=sf, mode="bilinear", align_corners=align)
    np.testing.assert_allclose(y, t.numpy(), rtol=1e-12, atol=1e-12)


def test_resize_linear_onnx_convention_matches_onnx_resize():
    # convention="onnx": the ONNX Resize(linear, half_pixel) map, in the working dtype
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    y, _ = O.resize_linear_forward(x, size=(9, 7), convention="onnx")
    np.testing.assert_allclose(y, O.resize(x, sizes=[2, 3, 9, 7], mode="linear"), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# gradient checks and the registry
# ---------------------------------------------------------------------------------------------------

@given(case=conv_transpose_layer())
def test_conv_transpose2d_gradcheck(case):
    x, w, b, kw = case
    check_gradients(O.conv_transpose2d_forward, O.conv_transpose2d_backward, (x, w, b), kwargs=kw, rng=0,
                    max_elements=10)


@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                                 "half_pixel_symmetric"])
@pytest.mark.parametrize("convention", ["torchvision", "onnx"])
def test_resize_linear_gradcheck_every_mode(ctm, convention):
    rng = np.random.default_rng(1)
    check_gradients(O.resize_linear_forward, O.resize_linear_backward, (rng.standard_normal((1, 2, 4, 3)),),
                    kwargs={"size": (7, 5), "coordinate_transformation_mode": ctm, "convention": convention}, rng=0)


def test_every_pair_registered_and_passing():
    from refdet.testing import gradcheck_all
    res = gradcheck_all(["softmax_forward", "log_softmax_forward", "leaky_relu_forward", "conv_transpose2d_forward",
                         "resize_linear_forward"])
    assert len(res) >= 9 and all(r.ok for r in res.values()), {k: str(v) for k, v in res.items() if not v.ok}


# ---------------------------------------------------------------------------------------------------
# the readable references and memory layouts
# ---------------------------------------------------------------------------------------------------

@given(case=conv_transpose_layer(), data=st.data())
def test_conv_transpose2d_equals_reference_loops(case, data):
    x, w, b, kw = case
    y, cache = O.conv_transpose2d_forward(x, w, b, **kw)
    pads = cache.padding
    ref = R.conv_transpose2d(x, w, b, stride=kw["stride"], padding=pads, output_padding=kw["output_padding"],
                             dilation=kw["dilation"], groups=kw["groups"])
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-2, 2)))
    g = O.conv_transpose2d_backward(dy, cache)
    rdx, rdw, rdb = R.conv_transpose2d_backward(dy, x, w, stride=kw["stride"], padding=pads, dilation=kw["dilation"],
                                                groups=kw["groups"], has_bias=b is not None)
    np.testing.assert_allclose(g.dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g.dw, rdw, rtol=1e-12, atol=1e-12)


@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.floats(-30, 30)),
       data=st.data())
def test_softmax_equals_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-3, 3)))
    y, c = O.softmax_forward(x, axis=axis)
    np.testing.assert_allclose(y, R.softmax(x, axis), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(O.softmax_backward(dy, c).dx, R.softmax_backward(dy, y, axis), rtol=1e-12, atol=1e-15)
    ly, lc = O.log_softmax_forward(x, axis=axis)
    np.testing.assert_allclose(ly, R.log_softmax(x, axis), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(O.log_softmax_backward(dy, lc).dx, R.log_softmax_backward(dy, ly, axis), rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_array_equal(O.leaky_relu_forward(x, negative_slope=0.2)[0], R.leaky_relu(x, 0.2))


@given(x=hnp.arrays(np.float64, st.tuples(st.just(1), st.integers(1, 2), st.integers(1, 5), st.integers(1, 5)),
                    elements=st.floats(-5, 5)),
       ho=st.integers(1, 9), wo=st.integers(1, 9), align=st.booleans(), data=st.data())
def test_resize_linear_equals_reference(x, ho, wo, align, data):
    y, c = O.resize_linear_forward(x, size=(ho, wo), align_corners=align)
    np.testing.assert_allclose(y, R.resize_linear(x, (ho, wo), align_corners=align), rtol=1e-13, atol=1e-13)
    dy = data.draw(hnp.arrays(np.float64, y.shape, elements=st.floats(-2, 2)))
    np.testing.assert_allclose(O.resize_linear_backward(dy, c).dx,
                               R.resize_linear_backward(dy, x.shape, align_corners=align), rtol=1e-12, atol=1e-13)


def test_layouts_give_identical_bits():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    base = O.conv_transpose2d_forward(x, w, stride=2, padding=1, groups=2)[0]
    basel = O.resize_linear_forward(x, size=(7, 9))[0]
    bases = O.softmax_forward(x, axis=1)[0]
    for v in (np.asfortranarray(x), x[:, :, ::-1, :][:, :, ::-1, :]):
        v = v.copy(order="K") if v.flags.writeable else v
        v.setflags(write=False)
        np.testing.assert_array_equal(O.conv_transpose2d_forward(v, w, stride=2, padding=1, groups=2)[0], base)
        np.testing.assert_array_equal(O.resize_linear_forward(v, size=(7, 9))[0], basel)
        np.testing.assert_array_equal(O.softmax_forward(v, axis=1)[0], bases)
