"""The fast layers held equal to their readable references (refdet.reference.conv).

Bounds, and why:

* conv2d forward/backward, float64 and float32: the reference sums its K terms with ``math.fsum``
  (one rounding of the exact sum of the rounded products), the fast path in BLAS order. Any order of
  K - 1 additions of K rounded products is within ``(K + 1) u sum|terms|`` of the exact sum
  (u = eps / 2 of the fast path's dtype), so ``|fast - ref| <= (K + 2) u sum|terms|``, with
  ``sum|terms|`` computed by the reference on ``|x|, |w|, |b|``. K counts every term the fast path
  may add, zeros included (padding, the whole-row im2col's spare columns).
* conv2d with integer inputs: exact (int64 in the reference; float64 sums of small integers are
  exact in the fast path), so **equal**.
* max_pool2d, relu, nearest resizing: no arithmetic, or additions in the same order: **bit-equal**,
  ties, -inf, signed zeros and the ReLU kink included.
* group_norm: the moments' rounding is amplified by ``max|x| / sigma`` (a group with a large mean
  and a small spread is ill-conditioned); the bound is ``16 (n + 4) u`` times that factor and the
  size of the result (written out in each test).
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refdet import _conv
from refdet.layers import (conv2d_backward, conv2d_forward, group_norm_backward, group_norm_forward,
                           max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward, sigmoid_forward)
from refdet.reference import conv as R
from refdet.resize import upsample_nearest_backward, upsample_nearest_forward

U64 = np.finfo(np.float64).eps / 2
U32 = float(np.finfo(np.float32).eps) / 2

_side = st.integers(0, 2)
PADDINGS = st.one_of(_side, st.tuples(_side, _side), st.tuples(st.tuples(_side, _side), st.tuples(_side, _side)),
                     st.tuples(_side, _side, _side, _side), st.sampled_from(["same", "same_lower", "valid", "SAME"]))


@st.composite
def conv_geometries(draw, max_side=6):
    """A conv2d geometry with any spelling of the padding grammar (asymmetric and 'same' included)."""
    groups = draw(st.integers(1, 3))
    c, f = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(PADDINGS)
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    t, b, l, r = _conv.parse_padding(padding, (h, w), (kh, kw), stride, dilation)
    assume(dilation[0] * (kh - 1) < h + t + b and dilation[1] * (kw - 1) < w + l + r)
    return dict(x_shape=(draw(st.integers(1, 2)), c, h, w), w_shape=(f, c // groups, kh, kw),
                kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups))


def _values(rng, shape, kind, dtype=np.float64):
    """'normal' floats, or 'int': small integers (exact sums, ties, exact zeros)."""
    if kind == "int":
        return rng.integers(-3, 4, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _within(fast, ref, bound, what):
    err = np.abs(fast.astype(np.float64) - ref)
    assert np.all(err <= bound), (f"{what}: |fast - reference| = {err.max():.3g} exceeds the bound at "
                                  f"{np.unravel_index(np.argmax(err - bound), err.shape)}")


# ---------------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------------

@given(g=conv_geometries(), bias=st.booleans(), kind=st.sampled_from(["normal", "int"]),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_forward_equals_the_loop(g, bias, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    x, w = _values(rng, g["x_shape"], kind, dtype), _values(rng, g["w_shape"], kind, dtype)
    b = _values(rng, g["w_shape"][0], kind, dtype) if bias else None
    y, _ = conv2d_forward(x, w, b, **g["kw"])
    ref = R.conv2d(x, w, b, **g["kw"])
    assert y.shape == ref.shape and y.dtype == dtype
    if kind == "int":
        np.testing.assert_array_equal(y, ref)  # sums of small integers: exact on both sides
        return
    f, cg, kh, kw = w.shape
    k = cg * kh * kw + 1
    abs_terms = R.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **g["kw"])
    _within(y, ref, (k + 2) * (U64 if dtype == np.float64 else U32) * abs_terms, "conv2d")


@given(g=conv_geometries(), bias=st.booleans(), kind=st.sampled_from(["normal", "int"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_conv2d_backward_equals_the_chain_rule_loops(g, bias, kind, seed):
    rng = np.random.default_rng(seed)
    x, w = _values(rng, g["x_shape"], kind), _values(rng, g["w_shape"], kind)
    y, cache = conv2d_forward(x, w, np.zeros(w.shape[0]) if bias else None, **g["kw"])
    dy = _values(rng, y.shape, kind)
    grads = conv2d_backward(dy, cache)
    dx, dw, db = R.conv2d_backward(dy, x, w, **g["kw"])
    if kind == "int":
        np.testing.assert_array_equal(grads.dx, dx)
        np.testing.assert_array_equal(grads.dw, dw)
        if bias:
            np.testing.assert_array_equal(grads.db, db)
        return
    # the number of terms any summation order may add, zeros included
    bsz, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    t, bo, le, ri = cache.padding
    ho, wo = y.shape[2:]
    n_dx = (f // g["kw"]["groups"]) * kh * kw + 1
    n_dw = bsz * ho * (wd + le + ri + wo) + 1
    adx, adw, adb = R.conv2d_backward(np.abs(dy), np.abs(x), np.abs(w), **g["kw"])
    _within(grads.dx, dx, (n_dx + 2) * U64 * adx, "dx")
    _within(grads.dw, dw, (n_dw + 2) * U64 * adw, "dw")
    if bias:
        _within(grads.db, db, (bsz * ho * wo + 2) * U64 * adb, "db")
    else:
        assert grads.db is None


def test_conv2d_integer_inputs_give_exact_int64():
    # the integer path: int64 in, int64 out, exact (what the quantized kernels are held to)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1, 4, 6, 5))
    w = rng.integers(-128, 128, (6, 2, 3, 3))
    b = rng.integers(-1000, 1000, 6)
    ref = R.conv2d(x, w, b, stride=(2, 1), padding=(1, 0, 2, 1), groups=2)
    assert ref.dtype == np.int64
    y, _ = conv2d_forward(x, w, b, stride=(2, 1), padding=(1, 0, 2, 1), groups=2)
    np.testing.assert_array_equal(y, ref)   # |sums| < 2**53: exact in float64 too
    # one output written out: y[0, 0, 0, 0] reads rows -1..1 (row -1 is padding), columns -2..0
    want = b[0] + sum(int(w[0, c, p, q]) * int(x[0, c, p - 1, q - 2])
                      for c in range(2) for p in range(3) for q in range(3) if p >= 1 and q >= 2)
    assert ref[0, 0, 0, 0] == want


def test_references_refuse_large_inputs():
    with pytest.raises(ValueError, match="MAX_WORK"):
        R.conv2d(np.zeros((1, 64, 32, 32)), np.zeros((64, 64, 3, 3)), padding=1)
    with pytest.raises(ValueError, match="MAX_WORK"):
        R.max_pool2d(np.zeros((4, 64, 64, 64)), 3)


# ---------------------------------------------------------------------------------------------------
# max pooling: bit-equal, ties included
# ---------------------------------------------------------------------------------------------------

@st.composite
def pool_geometries(draw, max_side=7):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    numeric = st.tuples(st.integers(0, kh // 2), st.integers(0, kh // 2), st.integers(0, kw // 2),
                        st.integers(0, kw // 2))
    padding = draw(st.one_of(numeric, st.sampled_from(["same", "same_lower", "valid"])))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    t, b, l, r = _conv.parse_padding(padding, (h, w), (kh, kw), stride, dilation)
    assume(dilation[0] * (kh - 1) < h + t + b and dilation[1] * (kw - 1) < w + l + r)
    return dict(x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), kernel_size=(kh, kw),
                kw=dict(stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=draw(st.booleans()) if not isinstance(padding, str) else False))


@given(g=pool_geometries(), neg_inf=st.booleans(), seed=st.integers(0, 2 ** 32 - 1),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_max_pool_equals_the_loop_bit_for_bit_with_ties(g, neg_inf, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, g["x_shape"]).astype(dtype)          # few values: ties in most windows
    if neg_inf:
        x[rng.random(x.shape) < 0.4] = -np.inf
    y, cache = max_pool2d_forward(x, g["kernel_size"], **g["kw"])
    yr, ir = R.max_pool2d(x, g["kernel_size"], **g["kw"])
    np.testing.assert_array_equal(y, yr)
    np.testing.assert_array_equal(cache.indices, ir)             # the first maximum in row-major order
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = max_pool2d_backward(dy, cache).dx
    assert dx.tobytes() == R.max_pool2d_backward(dy, ir, x.shape).tobytes()   # same addition order


def test_max_pool_tie_rule_golden():
    # a 2 x 2 window over [[1, 3], [3, 2]]: the 3 at row-major position 1 wins over the later 3
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    assert R.max_pool2d(x, 2)[1][0, 0, 0, 0] == 1
    assert max_pool2d_forward(x, 2)[1].indices[0, 0, 0, 0] == 1


# ---------------------------------------------------------------------------------------------------
# ReLU (the kink) and sigmoid
# ---------------------------------------------------------------------------------------------------

@given(seed=st.integers(0, 2 ** 32 - 1), dtype=st.sampled_from([np.float64, np.float32]))
def test_relu_equals_the_formula_at_the_kink(seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-1.5, -0.0, 0.0, 0.0, 2.25, np.inf, -np.inf], dtype), size=(2, 3, 4))
    y, cache = relu_forward(x)
    assert y.tobytes() == R.relu(x).tobytes()                    # relu(-0.0) = +0.0 on both sides
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = relu_backward(dy, cache).dx
    assert dx.tobytes() == R.relu_backward(dy, x).tobytes()
    assert np.all(dx[x == 0] == 0)                               # ReLU'(0) = 0


@given(x=st.lists(st.floats(-750, 750, allow_nan=False), min_size=1, max_size=30))
def test_sigmoid_equals_the_formula(x):
    x = np.array(x)
    y, _ = sigmoid_forward(x)
    # two roundings of exp (each <= 1 ulp) and two of the division/addition: 4 ulp relative
    np.testing.assert_allclose(y, R.sigmoid(x), rtol=8 * U64, atol=0)


# ---------------------------------------------------------------------------------------------------
# nearest resizing: the index formula; gradients in the same order
# ---------------------------------------------------------------------------------------------------

@given(h=st.integers(1, 9), w=st.integers(1, 9), ho=st.integers(1, 20), wo=st.integers(1, 20),
       mode=st.sampled_from(["nearest", "nearest-exact"]), seed=st.integers(0, 2 ** 32 - 1),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_upsample_nearest_equals_the_index_formula(h, w, ho, wo, mode, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, w)).astype(dtype)
    y, cache = upsample_nearest_forward(x, size=(ho, wo), mode=mode)
    assert y.tobytes() == R.upsample_nearest(x, (ho, wo), mode=mode).tobytes()
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = upsample_nearest_backward(dy, cache).dx
    assert dx.tobytes() == R.upsample_nearest_backward(dy, (h, w), mode=mode).tobytes()


def test_upsample_index_formula_fpn_sizes():
    # 13 -> 25 (P5 -> P4 of an 800-px image): floor(dst * float32(13/25)); dst 24 -> floor(12.48) = 12
    x = np.arange(13.0).reshape(1, 1, 13, 1)
    assert R.upsample_nearest(x, (25, 1))[0, 0, 24, 0] == 12
    # exact x2 (the fast path's dst >> 1 shortcut) is the same formula
    x = np.arange(7.0).reshape(1, 1, 7, 1)
    np.testing.assert_array_equal(R.upsample_nearest(x, (14, 1))[0, 0, :, 0], np.arange(14) // 2)


# ---------------------------------------------------------------------------------------------------
# group normalisation
# ---------------------------------------------------------------------------------------------------

def _group_scale(x, g, eps):
    """Per element: the group's max|x| / sigma (>= 1), the conditioning of normalising that group."""
    b, c, h, w = x.shape
    xg = x.reshape(b, g, -1)
    sd = np.sqrt(xg.var(axis=2) + eps)
    scale = np.maximum(np.abs(xg).max(axis=2) / sd, 1.0)             # (B, G)
    return np.repeat(scale, c // g, axis=1)[:, :, None, None], np.repeat(sd, c // g, axis=1)[:, :, None, None]


@given(g=st.integers(1, 3), cpg=st.integers(1, 3), hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       affine=st.booleans(), shift=st.sampled_from([0.0, 3.0, 100.0]), seed=st.integers(0, 2 ** 32 - 1))
def test_group_norm_equals_the_formula(g, cpg, hw, affine, shift, seed):
    rng = np.random.default_rng(seed)
    c = g * cpg
    x = rng.standard_normal((2, c, *hw)) + shift                 # a shift makes the moments ill-conditioned
    gamma = rng.standard_normal(c) if affine else None
    beta = rng.standard_normal(c) if affine else None
    eps = 1e-5
    y, cache = group_norm_forward(x, gamma, beta, num_groups=g, eps=eps)
    ref = R.group_norm(x, gamma, beta, num_groups=g, eps=eps)
    n = cpg * hw[0] * hw[1]
    scale, sd = _group_scale(x, g, eps)
    ga = np.abs(gamma)[:, None, None] if affine else 1.0
    be = np.abs(beta)[:, None, None] if affine else 0.0
    xhat = np.abs(cache.xhat)
    _within(y, ref, 16 * (n + 4) * U64 * scale * (1 + xhat) * ga + 4 * U64 * be, "group_norm")

    dy = rng.standard_normal(x.shape)
    grads = group_norm_backward(dy, cache)
    dx, dgamma, dbeta = R.group_norm_backward(dy, x, gamma, num_groups=g, eps=eps)
    gd = np.abs(dy) * ga
    gmax = gd.reshape(2, g, -1).max(axis=2)
    gmax = np.repeat(gmax, cpg, axis=1)[:, :, None, None]
    xmax = np.repeat(xhat.reshape(2, g, -1).max(axis=2), cpg, axis=1)[:, :, None, None]
    # dx = (g - mean g - xhat mean(g xhat)) / sd: each part off by (n + 4) u times the conditioning
    _within(grads.dx, dx, 16 * (n + 4) * U64 * scale * gmax * (1 + xmax) ** 2 / sd, "group_norm dx")
    if affine:
        m = 2 * hw[0] * hw[1]
        abs_dy = np.abs(dy).sum(axis=(0, 2, 3))
        _within(grads.dbeta, dbeta, (m + 2) * U64 * abs_dy, "dbeta")
        big = scale.max() * (1 + xhat.max())
        _within(grads.dgamma, dgamma, 16 * (m + n + 4) * U64 * big * abs_dy, "dgamma")
