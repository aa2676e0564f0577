"""Tests of refdet.layers: golden values, gradient checks, properties, and torch differentials."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import layers
from refdet.layers import (conv2d_backward, conv2d_forward, relu_backward, relu_forward, sigmoid_backward,
                           sigmoid_forward)
from refdet.testing import check_gradients
from refdet.testing import strategies as rst
from tests.conftest import readonly


def _conv_loop(x, w, b, stride, padding, dilation, groups):
    """Slow float64 reference: the convolution sum written out, one output pixel at a time."""
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    dh, dw = (dilation, dilation) if np.isscalar(dilation) else dilation
    bsz, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    fg = f // groups
    y = np.zeros((bsz, f, ho, wo))
    for n in range(bsz):
        for o in range(f):
            g = o // fg
            for i in range(ho):
                for j in range(wo):
                    patch = xp[n, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                               j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    y[n, o, i, j] = np.sum(patch * w[o]) + (b[o] if b is not None else 0.0)
    return y


# --------------------------------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------------------------------

def test_conv2d_golden_3x3_identity_and_sum():
    # x = arange(16) as a 4x4 map; a 3x3 kernel of ones with padding 1 sums each 3x3 neighbourhood:
    # y[0, 0] = 0 + 1 + 4 + 5 = 10; y[1, 1] = 0+1+2+4+5+6+8+9+10 = 45; bias 0.5 added everywhere.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, _ = conv2d_forward(x, np.ones((1, 1, 3, 3)), np.array([0.5]), padding=1)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == 10.5 and y[0, 0, 1, 1] == 45.5
    # stride 2, no padding, 2x2 kernel [[1, 0], [0, -1]]: y[i, j] = x[2i, 2j] - x[2i+1, 2j+1] = -5 everywhere
    y2, _ = conv2d_forward(x, np.array([[[[1.0, 0.0], [0.0, -1.0]]]]), None, stride=2)
    np.testing.assert_array_equal(y2, np.full((1, 1, 2, 2), -5.0))


def test_conv2d_output_size_formula():
    # floor((n + 2p - d(k-1) - 1)/s) + 1: 3x3/s2/p1 gives 5->3, 4->2 (SPEC §9)
    for n, expect in ((5, 3), (4, 2), (1, 1), (100, 50)):
        y, _ = conv2d_forward(np.zeros((1, 1, n, n)), np.zeros((1, 1, 3, 3)), stride=2, padding=1)
        assert y.shape[2:] == (expect, expect)


@settings(max_examples=25)
@given(cfg=rst.conv_configs(max_side=6), bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_matches_loop_reference(cfg, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][0]) if bias else None
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    y, _ = conv2d_forward(*readonly(x, w), b, **kw)
    np.testing.assert_allclose(y, _conv_loop(x, w, b, **kw), rtol=1e-12, atol=1e-12)


@settings(max_examples=20)
@given(cfg=rst.conv_configs(max_side=5, max_batch=2, max_channels_per_group=2),
       bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_gradcheck(cfg, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"])
    w = rng.standard_normal(cfg["w_shape"])
    b = rng.standard_normal(cfg["w_shape"][0]) if bias else None
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    check_gradients(conv2d_forward, conv2d_backward, (x, w, b), kwargs=kw, rng=seed)


def test_conv2d_no_bias_gives_db_none():
    rng = np.random.default_rng(0)
    y, cache = conv2d_forward(rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3)))
    g = conv2d_backward(np.ones_like(y), cache)
    assert g.db is None and g.dx.shape == (1, 2, 4, 4) and g.dw.shape == (3, 2, 3, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_dtype_policy(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    y, cache = conv2d_forward(x, w, np.zeros(3, dtype), padding=1)
    g = conv2d_backward(np.ones_like(y), cache)
    assert y.dtype == dtype and g.dx.dtype == dtype and g.dw.dtype == dtype and g.db.dtype == dtype
    # float16 computes in float32, integers in float64
    y16, _ = conv2d_forward(x.astype(np.float16), w.astype(np.float16))
    assert y16.dtype == np.float32
    yi, _ = conv2d_forward(np.ones((1, 1, 3, 3), dtype=np.int32), np.ones((1, 1, 2, 2), dtype=np.int64))
    assert yi.dtype == np.float64 and np.all(yi == 4)


def test_conv2d_chunked_im2col_equals_unchunked(monkeypatch):
    # force many row chunks: the result and the gradients must not depend on the chunking
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 4, 9, 7)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)
    y, cache = conv2d_forward(x, w, b, **kw)
    dy = rng.standard_normal(y.shape)
    g = conv2d_backward(dy, cache)
    monkeypatch.setattr(layers, "IM2COL_MAX_BYTES", 1)  # one output row per chunk
    y1, cache1 = conv2d_forward(x, w, b, **kw)
    g1 = conv2d_backward(dy, cache1)
    np.testing.assert_allclose(y1, y, rtol=1e-13, atol=1e-13)
    for a, e in zip(g1, g):
        np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-13)


def test_conv2d_empty_batch():
    y, cache = conv2d_forward(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.ones(3))
    assert y.shape == (0, 3, 3, 3)
    g = conv2d_backward(y, cache)
    assert g.dx.shape == (0, 2, 5, 5) and np.all(g.dw == 0) and np.all(g.db == 0)


@pytest.mark.parametrize("kw,match", [
    (dict(x=np.zeros((2, 3, 4)), w=np.zeros((1, 3, 1, 1))), r"`x` must be 4-D"),
    (dict(x=np.zeros((1, 3, 4, 4)), w=np.zeros((1, 2, 1, 1))), r"`w` must have shape"),
    (dict(x=np.zeros((1, 3, 4, 4)), w=np.zeros((2, 1, 1, 1)), groups=2), r"`groups` must divide the input"),
    (dict(x=np.zeros((1, 4, 4, 4)), w=np.zeros((3, 2, 1, 1)), groups=2), r"`groups` must divide the output"),
    (dict(x=np.zeros((1, 1, 4, 4)), w=np.zeros((1, 1, 3, 3)), dilation=3), r"larger than the padded input"),
    (dict(x=np.zeros((1, 1, 2, 2)), w=np.zeros((1, 1, 5, 1)), padding=1), r"larger than the padded input"),
    (dict(x=np.zeros((1, 1, 4, 4)), w=np.zeros((1, 1, 1, 1)), padding=-1), r"`padding` must be >= 0"),
    (dict(x=np.full((1, 1, 2, 2), np.inf), w=np.zeros((1, 1, 1, 1))), r"`x` must not contain NaN or inf"),
])
def test_conv2d_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        conv2d_forward(**kw)


def test_conv2d_backward_rejects_wrong_dy_shape():
    y, cache = conv2d_forward(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"`dy` must have the output's shape"):
        conv2d_backward(np.zeros((1, 1, 4, 4)), cache)


# --------------------------------------------------------------------------------------------------
# relu / sigmoid
# --------------------------------------------------------------------------------------------------

def test_relu_golden_and_kink():
    y, cache = relu_forward(np.array([-2.0, -0.0, 0.0, 3.0, np.inf, -np.inf]))
    np.testing.assert_array_equal(y, [0, 0, 0, 3, np.inf, 0])
    # ReLU'(0) = 0 (PyTorch threshold_backward): the gradient passes only where x > 0
    np.testing.assert_array_equal(relu_backward(np.ones(6), cache).dx, [0, 0, 0, 1, 1, 0])


def test_sigmoid_golden_and_stable():
    y, _ = sigmoid_forward(np.array([0.0, np.log(3.0), -700.0, 800.0, -np.inf, np.inf]))
    # sigmoid(0) = 1/2; sigmoid(log 3) = 3/4; sigmoid(-700) = exp(-700)/(1+exp(-700)) = 9.86e-305, no
    # overflow in exp(700) and no underflow to 0 from 1/(1 + exp(700))
    np.testing.assert_allclose(y[:3], [0.5, 0.75, np.exp(-700.0)], rtol=1e-15)
    assert y[3] == 1.0 and y[4] == 0.0 and y[5] == 1.0
    yf, _ = sigmoid_forward(np.array([-100.0], dtype=np.float32))
    assert yf.dtype == np.float32 and yf[0] > 0


@settings(max_examples=20)
@given(x=rst.feature_maps(low=-6, high=6))
def test_relu_sigmoid_gradcheck(x):
    x = np.where(np.abs(x) < 1e-3, 0.5, x)  # away from ReLU's kink at 0 (central differences straddle it)
    check_gradients(relu_forward, relu_backward, (x,), rng=0)
    check_gradients(sigmoid_forward, sigmoid_backward, (x,), rng=0)


# --------------------------------------------------------------------------------------------------
# differential tests against torch
# --------------------------------------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@settings(max_examples=40)
@given(cfg=rst.conv_configs(max_side=8), bias=st.booleans(), seed=st.integers(0, 2 ** 32 - 1),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_conv2d_matches_torch_forward_and_autograd(cfg, bias, seed, dtype):
    torch = _torch()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x_shape"]).astype(dtype)
    w = rng.standard_normal(cfg["w_shape"]).astype(dtype)
    b = rng.standard_normal(cfg["w_shape"][0]).astype(dtype) if bias else None
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups")}
    y, cache = conv2d_forward(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    g = conv2d_backward(dy, cache)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    ty.backward(torch.tensor(dy))
    # float64: both sides are exact sums up to reassociation -> ~1e-12 relative to the terms' size.
    # float32: each output is a sum of K = C/g*KH*KW (+1) products; reassociation error <= K * eps32 * sum|terms|.
    k = cfg["w_shape"][1] * cfg["w_shape"][2] * cfg["w_shape"][3] + 1
    tol = 1e-10 if dtype == np.float64 else 4 * k * np.finfo(np.float32).eps
    scale = lambda a: max(1.0, float(np.abs(a).max(initial=0)))  # noqa: E731
    assert y.dtype == dtype and y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=tol * scale(y) * 4)
    for mine, ref in [(g.dx, tx.grad), (g.dw, tw.grad)] + ([(g.db, tb.grad)] if bias else []):
        assert mine.dtype == dtype
        r = ref.numpy()
        np.testing.assert_allclose(mine, r, rtol=0, atol=tol * scale(r) * 4 * max(1, int(np.prod(y.shape[2:]))) ** 0.5)
    if not bias:
        assert g.db is None


@settings(max_examples=30)
@given(x=rst.feature_maps(low=-30, high=30), dtype=st.sampled_from([np.float64, np.float32]))
def test_relu_sigmoid_match_torch(x, dtype):
    torch = _torch()
    x = x.astype(dtype)
    dy = np.random.default_rng(0).standard_normal(x.shape).astype(dtype)
    for fwd, bwd, tfn in ((relu_forward, relu_backward, torch.relu), (sigmoid_forward, sigmoid_backward, torch.sigmoid)):
        y, cache = fwd(x)
        tx = torch.tensor(x, requires_grad=True)
        ty = tfn(tx)
        ty.backward(torch.tensor(dy))
        # ReLU exactly; sigmoid to a few ulp (exp implementations differ), backward computed from y
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=4 * np.finfo(dtype).eps, atol=0)
        np.testing.assert_allclose(bwd(dy, cache).dx, tx.grad.numpy(), rtol=16 * np.finfo(dtype).eps,
                                   atol=4 * np.finfo(dtype).tiny)
