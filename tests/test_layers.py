"""Tests of refdet.layers (conv2d, relu, sigmoid, max_pool2d, group_norm) and of refdet._conv (the padding
grammar, the im2col): golden values, gradient checks, properties, and torch/onnxruntime differentials.
Resizing is tested in tests/test_resize.py."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import _conv, layers
from refdet.layers import (conv2d_backward, conv2d_forward, group_norm_backward, group_norm_forward,
                           max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward, sigmoid_backward,
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
    monkeypatch.setattr(_conv, "IM2COL_MAX_BYTES", 1)  # one output row per chunk
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
        # ReLU exactly; sigmoid to a few ulp (exp implementations differ). The backward uses
        # dy * (1 - y) * y: an ulp of difference in y near 1 is an absolute error of eps in (1 - y),
        # so the gradient may differ by ~eps * |dy| absolutely on top of a few ulp relatively.
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=4 * eps, atol=0)
        mine, ref = bwd(dy, cache).dx, tx.grad.numpy()
        bound = 16 * eps * np.abs(ref) + 4 * eps * np.abs(dy) + 4 * np.finfo(dtype).tiny
        assert np.all(np.abs(mine - ref) <= bound), float(np.max(np.abs(mine - ref) - bound))


# --------------------------------------------------------------------------------------------------
# max_pool2d
# --------------------------------------------------------------------------------------------------

def test_tv16_max_pool_k1_s2_is_subsampling():
    # SPEC TV16: max_pool2d(k=1, s=2) of arange(25) as 5x5 keeps x[2i, 2j] = 10 i + 2 j
    y, cache = max_pool2d_forward(np.arange(25.0).reshape(1, 1, 5, 5), kernel_size=1, stride=2)
    np.testing.assert_array_equal(y[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    np.testing.assert_array_equal(cache.indices[0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    dx = max_pool2d_backward(np.ones((1, 1, 3, 3)), cache).dx
    assert dx.sum() == 9 and dx[0, 0, 0, 0] == 1 and dx[0, 0, 1, 1] == 0


def test_max_pool_tie_goes_to_first_in_window():
    # a 2x2 window of equal values: the gradient goes to the top-left (first in row-major order);
    # with overlapping windows (k3 s1 p1) on a constant map every window picks its own first element
    x = np.full((1, 1, 2, 2), 5.0)
    y, cache = max_pool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == 5 and cache.indices[0, 0, 0, 0] == 0
    y, cache = max_pool2d_forward(np.ones((1, 1, 3, 3)), 3, stride=1, padding=1)
    # window of output (i, j) starts at (i-1, j-1): first real element is (max(i-1,0), max(j-1,0))
    np.testing.assert_array_equal(cache.indices[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])
    dx = max_pool2d_backward(np.ones((1, 1, 3, 3)), cache).dx[0, 0]
    np.testing.assert_array_equal(dx, [[4, 2, 0], [2, 1, 0], [0, 0, 0]])


def test_max_pool_all_minus_inf_and_empty_windows():
    x = np.full((1, 1, 2, 2), -np.inf)
    y, cache = max_pool2d_forward(x, 2, padding=1)
    assert np.all(y == -np.inf)
    # PyTorch keeps the first real element's index when nothing beats -inf
    np.testing.assert_array_equal(cache.indices[0, 0], [[0, 1], [2, 3]])
    # W = 1, kernel width 2, dilation 2, padding 1: the taps read columns -1 and 1, never column 0
    y, cache = max_pool2d_forward(np.ones((1, 1, 1, 1)), (1, 2), stride=(1, 3), padding=(0, 1), dilation=2,
                                  ceil_mode=True)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == -np.inf and cache.indices[0, 0, 0, 0] == -1
    assert max_pool2d_backward(np.ones((1, 1, 1, 1)), cache).dx[0, 0, 0, 0] == 0


@settings(max_examples=30)
@given(cfg=rst.pool_configs(max_side=6), seed=st.integers(0, 2 ** 32 - 1))
def test_max_pool_gradcheck(cfg, seed):
    # distinct values spaced >= 1e-3 apart: no ties, so the max is differentiable (step 1e-6)
    rng = np.random.default_rng(seed)
    n = int(np.prod(cfg["x_shape"]))
    x = (rng.permutation(n) * 1e-2 + rng.uniform(0, 1e-3)).reshape(cfg["x_shape"]) - n * 5e-3
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "ceil_mode")}
    y, cache = max_pool2d_forward(x, cfg["kernel_size"], **kw)
    if (cache.indices < 0).any():  # a window with no input element has no derivative to check
        return
    check_gradients(max_pool2d_forward, max_pool2d_backward, (x,), kwargs=dict(kernel_size=cfg["kernel_size"], **kw),
                    rng=seed)


def test_max_pool_rejects_bad_arguments():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="`padding` must be at most half"):
        max_pool2d_forward(x, 2, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        max_pool2d_forward(x, 5)
    with pytest.raises(ValueError, match="`kernel_size` must be >= 1"):
        max_pool2d_forward(x, 0)
    with pytest.raises(ValueError, match="`x`.*NaN"):
        max_pool2d_forward(np.full((1, 1, 2, 2), np.nan), 2)


# --------------------------------------------------------------------------------------------------
# group_norm
# --------------------------------------------------------------------------------------------------

def test_group_norm_golden():
    # one group over [1, 2, 3, 4] (2 channels x 1 x 2): mean 2.5, biased var 1.25;
    # y = (x - 2.5) / sqrt(1.25 + eps) * gamma + beta
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 1, 2)
    y, _ = group_norm_forward(x, np.array([1.0, 2.0]), np.array([0.0, 10.0]), num_groups=1, eps=0.0)
    s = np.sqrt(1.25)
    np.testing.assert_allclose(y.ravel(), [-1.5 / s, -0.5 / s, 2 * 0.5 / s + 10, 2 * 1.5 / s + 10], rtol=1e-15)
    # two groups: each channel normalised alone -> [-1, 1] per channel (var 0.25, eps 0)
    y, _ = group_norm_forward(x, num_groups=2, eps=0.0)
    np.testing.assert_allclose(y.ravel(), [-1, 1, -1, 1], rtol=1e-15)


@settings(max_examples=20)
@given(g=st.integers(1, 3), cpg=st.integers(1, 3), affine=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_group_norm_gradcheck(g, cpg, affine, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, g * cpg, 3, 2)) * 2 + 0.5
    gm = rng.standard_normal(g * cpg) if affine else None
    bt = rng.standard_normal(g * cpg) if affine else None
    check_gradients(group_norm_forward, group_norm_backward, (x, gm, bt), kwargs={"num_groups": g}, rng=seed)


def test_group_norm_rejects_bad_arguments():
    x = np.zeros((1, 6, 2, 2))
    with pytest.raises(ValueError, match="`num_groups` must divide the channels C = 6"):
        group_norm_forward(x, num_groups=4)
    with pytest.raises(ValueError, match=r"`gamma` must have shape \(6,\)"):
        group_norm_forward(x, np.ones(3), num_groups=2)
    with pytest.raises(TypeError, match="`num_groups`"):
        group_norm_forward(x, num_groups=2.0)


# --------------------------------------------------------------------------------------------------
# differential: max_pool2d, group_norm vs torch
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(cfg=rst.pool_configs(max_side=8), seed=st.integers(0, 2 ** 32 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), neg_inf=st.booleans())
def test_max_pool_matches_torch_with_ties(cfg, seed, dtype, neg_inf):
    torch = _torch()
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=cfg["x_shape"]).astype(dtype)  # few distinct values: many ties
    if neg_inf:
        x[x < 0] = -np.inf
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "ceil_mode")}
    y, cache = max_pool2d_forward(x, cfg["kernel_size"], **kw)
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = torch.nn.functional.max_pool2d(tx, cfg["kernel_size"], return_indices=True, **kw)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    if (cache.indices < 0).any():
        # a window containing no input element: torch's index points outside it and its backward
        # writes out of bounds, so only the forward values are compared
        np.testing.assert_array_equal(cache.indices >= 0, y > -np.inf)
        return
    np.testing.assert_array_equal(cache.indices, ti.numpy())
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(max_pool2d_backward(dy, cache).dx, tx.grad.numpy())


@settings(max_examples=30)
@given(g=st.integers(1, 4), cpg=st.integers(1, 4), hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       dtype=st.sampled_from([np.float32, np.float64]), affine=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_group_norm_matches_torch(g, cpg, hw, dtype, affine, seed):
    torch = _torch()
    rng = np.random.default_rng(seed)
    c = g * cpg
    x = (rng.standard_normal((2, c) + hw) * 3 + 1).astype(dtype)
    gm = rng.standard_normal(c).astype(dtype) if affine else None
    bt = rng.standard_normal(c).astype(dtype) if affine else None
    y, cache = group_norm_forward(x, gm, bt, num_groups=g)
    dy = rng.standard_normal(y.shape).astype(dtype)
    gr = group_norm_backward(dy, cache)
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gm, requires_grad=True) if affine else None
    tb = torch.tensor(bt, requires_grad=True) if affine else None
    ty = torch.nn.functional.group_norm(tx, g, tg, tb, 1e-5)
    ty.backward(torch.tensor(dy))
    # float64: ~1e-12 (different summation orders of the moments); float32: normalised values are
    # O(1) but a 1-element group has var 0 -> y = beta exactly on both sides; allow 64 ulp of float32
    # relative to the largest gradient (backward sums up to 2 * 6 * 6 * 4 products)
    tol = 1e-11 if dtype == np.float64 else 64 * np.finfo(np.float32).eps
    sc = lambda a: max(1.0, float(np.abs(a).max(initial=0)))  # noqa: E731
    # the rounding error of x - mean is amplified by rstd = 1/sqrt(var + eps): up to 316 for a group
    # whose values are all equal (a 1-element group), where refdet's x - mean is exactly 0 and
    # torch's float32 moments leave ~|x| * eps32 * 316 of noise
    amp = max(1.0, float(cache.rstd.max()) * float(np.abs(x).max()) / 3)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=tol * sc(y) * amp)
    refs = [(gr.dx, tx)] + ([(gr.dgamma, tg), (gr.dbeta, tb)] if affine else [])
    for mine, t in refs:
        r = t.grad.numpy()
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, r, rtol=0, atol=tol * sc(r) * 4 * amp * sc(dy))
    if not affine:
        assert gr.dgamma is None and gr.dbeta is None


# --------------------------------------------------------------------------------------------------
# the max_pool2d convention
# --------------------------------------------------------------------------------------------------


def test_max_pool_integer_input_pools_in_float64():
    yi, _ = max_pool2d_forward(np.arange(16, dtype=np.int32).reshape(1, 1, 4, 4), 2)
    assert yi.dtype == np.float64 and yi[0, 0, 1, 1] == 15


def test_max_pool_caffe_convention_rounds_up():
    # Caffe: ceil((5 - 2) / 2) + 1 = 3 outputs (the last window holds only column 4); PyTorch: floor -> 2
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y, _ = max_pool2d_forward(x, 2, stride=2, convention="caffe")
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    assert max_pool2d_forward(x, 2, stride=2)[0].shape == (1, 1, 2, 2)
    assert max_pool2d_forward(x, 2, stride=2, convention="caffe", ceil_mode=False)[0].shape == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="`convention`"):
        max_pool2d_forward(x, 2, convention="tf")
    with pytest.raises(TypeError, match="`ceil_mode`"):
        max_pool2d_forward(x, 2, ceil_mode="yes")


# --------------------------------------------------------------------------------------------------
# "same" padding (TensorFlow SAME / ONNX auto_pad) for conv2d and max_pool2d
# --------------------------------------------------------------------------------------------------

def test_same_padding_golden():
    # H = 6, k = 3, s = 2: out = ceil(6/2) = 3, total = (3-1)*2 + 3 - 6 = 1 -> top 0, bottom 1 (TF SAME);
    # PyTorch's symmetric padding=1 gives floor((6 + 2 - 3)/2) + 1 = 3 rows too, but shifted by one:
    # TF's first window covers rows 0..2, PyTorch's rows -1..1.
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 0, 0] = 1.0                                   # picks the window's top-left pixel
    y_tf, c = conv2d_forward(x, w, stride=2, padding="same")
    assert c.padding == (0, 1, 0, 1)
    np.testing.assert_array_equal(y_tf[0, 0], x[0, 0, 0:6:2, 0:6:2])
    y_pt, _ = conv2d_forward(x, w, stride=2, padding=1)
    np.testing.assert_array_equal(y_pt[0, 0, 1:, 1:], x[0, 0, 1:4:2, 1:4:2])
    assert np.all(y_pt[0, 0, 0, :] == 0) and np.all(y_pt[0, 0, :, 0] == 0)  # reads the zero padding
    # same_lower puts the odd pixel first; valid pads nothing
    assert conv2d_forward(x, w, stride=2, padding="same_lower")[1].padding == (1, 0, 1, 0)
    assert conv2d_forward(x, w, padding="valid")[0].shape == (1, 1, 4, 4)
    # max pool 2x2 s2 "same" on a 5x5: out 3, total 1 -> one -inf row/column at the bottom/right
    y, cache = max_pool2d_forward(np.arange(25.0).reshape(1, 1, 5, 5), 2, padding="same")
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    with pytest.raises(ValueError, match="`padding`"):
        conv2d_forward(x, w, padding="full")


@settings(max_examples=25)
@given(cfg=rst.conv_configs(max_side=8), seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_same_padding_matches_torch_at_stride_1(cfg, seed):
    torch = _torch()
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(cfg["x_shape"]), rng.standard_normal(cfg["w_shape"])
    kw = dict(dilation=cfg["dilation"], groups=cfg["groups"])
    y, cache = conv2d_forward(x, w, padding="same", **kw)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    with warnings.catch_warnings():  # torch warns that it copies the input for even kernels
        warnings.simplefilter("ignore", UserWarning)
        ty = torch.nn.functional.conv2d(tx, tw, padding="same", **kw)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    g = conv2d_backward(dy, cache)
    np.testing.assert_allclose(g.dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g.dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)


def _ort_run(ort, node, inputs):
    from onnx import TensorProto, helper, numpy_helper
    names = list(inputs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, list(inputs[names[0]].shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(inputs[n], n) for n in names[1:]])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {names[0]: inputs[names[0]]})[0]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_strided_same_padding_matches_onnxruntime(auto_pad):
    ort = pytest.importorskip("onnxruntime")
    helper = pytest.importorskip("onnx").helper
    rng = np.random.default_rng(0)
    mode = "same" if auto_pad == "SAME_UPPER" else "same_lower"
    # ORT's Conv refuses dilation with auto_pad SAME (dilated "same" is checked against torch above)
    for h, wd, k, s, d in [(6, 6, 3, 2, 1), (5, 7, 3, 2, 1), (8, 9, 2, 3, 1), (9, 4, 5, 2, 1), (10, 5, 4, 3, 1),
                           (7, 7, 1, 2, 1)]:
        x = rng.standard_normal((1, 2, h, wd)).astype(np.float32)
        w = rng.standard_normal((3, 2, k, k)).astype(np.float32)
        node = helper.make_node("Conv", ["X", "W"], ["Y"], auto_pad=auto_pad, strides=[s, s], dilations=[d, d],
                                kernel_shape=[k, k])
        ref = _ort_run(ort, node, {"X": x, "W": w})
        y, _ = conv2d_forward(x, w, stride=s, dilation=d, padding=mode)
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)  # float32 sums of <= 32 terms
        raw = [(-(-n // s) - 1) * s + k - n for n in (h, wd)]  # SAME total padding before clamping at 0
        if d == 1 and min(raw) >= 0:  # ORT's MaxPool rejects the negative totals it computes otherwise
            # ORT MaxPool: -inf padding; values bit-exact
            node = helper.make_node("MaxPool", ["X"], ["Y"], auto_pad=auto_pad, strides=[s, s], kernel_shape=[k, k])
            ref = _ort_run(ort, node, {"X": x})
            yp, _ = max_pool2d_forward(x, k, stride=s, padding=mode)
            np.testing.assert_array_equal(yp, ref)


@pytest.mark.parametrize("padding", ["same", "same_lower", ((1, 0), (0, 2)), "valid"])
def test_conv2d_and_max_pool_asymmetric_padding_gradcheck(padding):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    check_gradients(conv2d_forward, conv2d_backward, (x, w, b), kwargs=dict(stride=2, padding=padding), rng=0)
    if not isinstance(padding, tuple):  # numeric pooling padding is limited to half the kernel
        xd = (rng.permutation(60) * 1e-2).reshape(1, 2, 6, 5)
        check_gradients(max_pool2d_forward, max_pool2d_backward, (xd,),
                        kwargs=dict(kernel_size=3, stride=2, padding=padding), rng=0)


def test_conv2d_backward_without_dx_gives_the_same_weight_gradients():
    rng = np.random.default_rng(7)
    for stride in (1, 2):
        x = rng.standard_normal((2, 3, 9, 8))
        w = rng.standard_normal((4, 3, 3, 3))
        y, cache = conv2d_forward(x, w, np.zeros(4), stride=stride, padding=1)
        dy = rng.standard_normal(y.shape)
        full = conv2d_backward(dy, cache)
        part = conv2d_backward(dy, cache, compute_dx=False)
        assert part.dx is None
        np.testing.assert_array_equal(part.dw, full.dw)
        np.testing.assert_array_equal(part.db, full.db)


# --------------------------------------------------------------------------------------------------
# the one padding grammar and im2col (refdet/_conv.py)
# --------------------------------------------------------------------------------------------------

def test_padding_grammar_spellings_and_onnx_order():
    # every spelling normalises to (top, bottom, left, right)
    assert _conv.parse_padding(2) == (2, 2, 2, 2)
    assert _conv.parse_padding((1, 3)) == (1, 1, 3, 3)
    assert _conv.parse_padding(((1, 2), (3, 4))) == (1, 2, 3, 4)
    assert _conv.parse_padding((1, 2, 3, 4)) == (1, 2, 3, 4)
    assert _conv.parse_padding("VALID") == (0, 0, 0, 0)
    # SAME at H = 6, k = 3, s = 2: ceil(6/2) = 3 rows need (3-1)*2 + 3 - 6 = 1 pixel, after (upper) or before
    assert _conv.parse_padding("same", (6, 5), (3, 3), (2, 2), (1, 1)) == (0, 1, 1, 1)
    assert _conv.parse_padding("same_lower", (6, 5), (3, 3), (2, 2), (1, 1)) == (1, 0, 1, 1)
    # ONNX pads are (top, left, bottom, right); converted only at ONNX-facing functions
    assert _conv.onnx_pads_to_canonical((1, 2, 3, 4)) == (1, 3, 2, 4)
    assert _conv.canonical_to_onnx_pads(_conv.onnx_pads_to_canonical((1, 2, 3, 4))) == (1, 2, 3, 4)
    x = np.arange(20.0).reshape(1, 1, 4, 5)
    y, c = conv2d_forward(x, np.ones((1, 1, 1, 1)), padding=(1, 0, 2, 0))   # 1 row on top, 2 columns left
    assert c.padding == (1, 0, 2, 0) and y.shape == (1, 1, 5, 7)
    assert np.all(y[0, 0, 0] == 0) and np.all(y[0, 0, :, :2] == 0) and np.array_equal(y[0, 0, 1:, 2:], x[0, 0])
    for bad, match in (((1, 2, 3), "got 3 values"), ((1, -1, 0, 0), r"`padding\[1\]` must be >= 0"),
                       ("full", "`padding`")):
        with pytest.raises(ValueError, match=match):
            _conv.parse_padding(bad)


@pytest.mark.parametrize("whole_rows", [True, False])
def test_im2col_layouts_agree_and_take_integers(whole_rows):
    # the two layouts hold the same matrix (junk columns of the whole-row layout cut off), in any dtype
    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, (2, 4, 5, 6)).astype(np.int64)
    plan = _conv.Im2col(x, (3, 2), pads=(1, 0, 2, 1), dilation=(1, 2), groups=2, whole_rows=whole_rows)
    assert (plan.out_h, plan.out_w) == (4, 7)
    cols = plan.cols(0, plan.out_h).reshape(2, 2, 2 * 3 * 2, plan.out_h, plan.width)[..., :plan.out_w]
    assert cols.dtype == np.int64
    xp = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 1)))
    for (b, g, k, r, q) in np.ndindex(*cols.shape):
        c, i, j = np.unravel_index(k, (2, 3, 2))
        assert cols[b, g, k, r, q] == xp[b, g * 2 + c, r + i, q + 2 * j]


# --------------------------------------------------------------------------------------------------
# memory layout: C, Fortran, strided, reversed and read-only inputs give the same bits
# --------------------------------------------------------------------------------------------------

from tests import _layouts  # noqa: E402
from tests.contract import layers as _contract  # noqa: E402


@pytest.mark.parametrize("case", _contract.CASES, ids=lambda c: c.name)
def test_bits_do_not_depend_on_memory_layout(case):
    _layouts.assert_layout_independent(getattr(layers, case.name), case.make)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_bias_gradient_of_a_fortran_dy_is_bit_identical(dtype):
    # issue 12: db = dy.sum((0, 2, 3)) followed dy's layout (up to 12 ulp apart for a Fortran dy).
    # Sizes large enough for NumPy's pairwise summation blocks to matter.
    def make(rng):
        x = rng.standard_normal((2, 8, 24, 20)).astype(dtype)
        y, cache = conv2d_forward(x, rng.standard_normal((16, 8, 3, 3)).astype(dtype), np.ones(16, dtype), padding=1)
        return (rng.standard_normal(y.shape).astype(dtype), cache), {}

    def make_strided(rng):
        x = rng.standard_normal((2, 8, 24, 20)).astype(dtype)
        y, cache = conv2d_forward(x, rng.standard_normal((16, 4, 3, 3)).astype(dtype), None, stride=2, groups=2)
        return (rng.standard_normal(y.shape).astype(dtype), cache), {}

    _layouts.assert_layout_independent(conv2d_backward, make)
    _layouts.assert_layout_independent(conv2d_backward, make_strided)
    _layouts.assert_layout_independent(
        group_norm_backward, lambda rng: ((rng.standard_normal((2, 8, 24, 20)).astype(dtype),
                                           group_norm_forward(rng.standard_normal((2, 8, 24, 20)).astype(dtype),
                                                              np.ones(8, dtype), np.zeros(8, dtype),
                                                              num_groups=4)[1]), {}))
