"""refdet.losses' element-wise losses held equal to refdet.reference.losses (the formulas as the paper
writes them), on hypothesis inputs: logits on a 1/8 grid with exact zeros and saturating values
(|x| = 17, 30, and 40 / 800 below), hard and soft targets, differences hitting |d| = beta exactly.

Bound: **bit-equal**, float64 and float32 (the bytes, so even the sign of a zero): the reference is
written in torchvision's order of operations and the fast paths (the focal loss in reused buffers)
perform the same operations in the same order.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet import losses as L
from refdet.reference import losses as R
from refdet.testing import strategies as rst

DTYPES = [np.float64, np.float32]
ALPHAS = [0.25, -1.0, 0.0, 1.0, 0.5]
GAMMAS = [2.0, 0.0, 1.0, 0.5, 1.5, 3.0]


def _bits(fast, ref):
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.dtype == ref.dtype and fast.shape == ref.shape, (fast.dtype, ref.dtype, fast.shape, ref.shape)
    same = np.ascontiguousarray(fast).tobytes() == np.ascontiguousarray(ref).tobytes()
    assert same, f"differ at {np.flatnonzero(fast.ravel() != ref.ravel())[:5]}: {fast.ravel()[:4]} vs {ref.ravel()[:4]}"


def _inputs(data, dtype):
    x = data.draw(rst.logits(max_dims=2, max_side=9))
    if x.size and data.draw(st.booleans()):
        x.ravel()[0] = data.draw(st.sampled_from([0.0, -0.0, 40.0, -40.0, 800.0, -800.0]))
    t = data.draw(rst.binary_targets(x.shape, soft=data.draw(st.booleans())))
    return x.astype(dtype), t.astype(dtype)


@given(st.data(), st.sampled_from(DTYPES), st.sampled_from(ALPHAS), st.sampled_from(GAMMAS))
def test_sigmoid_focal_loss_is_the_formula(data, dtype, alpha, gamma):
    x, t = _inputs(data, dtype)
    loss, cache = L.sigmoid_focal_loss_forward(x, t, alpha=alpha, gamma=gamma)
    with np.errstate(over="ignore"):
        _bits(loss, R.sigmoid_focal_loss(x, t, alpha, gamma))
        ref_grad = R.sigmoid_focal_loss_grad(x, t, alpha, gamma)
    _bits(L.sigmoid_focal_loss_backward(np.ones(x.shape, dtype), cache).dlogits, ref_grad)
    assert np.all(np.isfinite(ref_grad))                 # the limits hold at saturated logits too


@given(st.data(), st.sampled_from(DTYPES))
def test_bce_is_the_formula(data, dtype):
    x, t = _inputs(data, dtype)
    loss, cache = L.bce_with_logits_forward(x, t, reduction="none")
    with np.errstate(over="ignore"):
        _bits(loss, R.bce_with_logits(x, t))
        _bits(L.bce_with_logits_backward(np.ones(x.shape, dtype), cache).dlogits, R.bce_with_logits_grad(x, t))


@given(st.integers(0, 12), st.sampled_from([1.0, 1 / 9, 0.0, 0.11, 0.5]), st.sampled_from(DTYPES), st.data())
def test_smooth_l1_is_the_formula(n, beta, dtype, data):
    # differences on a 1/36 grid hit 0 and |d| = beta (1 = 36/36, 0.5 = 18/36) exactly; for beta = 1/9
    # the differences are drawn at +-beta itself
    p = np.array(data.draw(st.lists(st.integers(-72, 72), min_size=n, max_size=n)), float) / 36
    t = np.array(data.draw(st.lists(st.integers(-72, 72), min_size=n, max_size=n)), float) / 36
    if beta == 1 / 9:
        t = p - np.array(data.draw(st.lists(st.sampled_from([0.0, 1 / 9, -1 / 9, 0.05, 2.0]), min_size=n,
                                            max_size=n)))
    p, t = p.astype(dtype), t.astype(dtype)
    loss, cache = L.smooth_l1_forward(p, t, beta=beta, reduction="none")
    d = p - t
    _bits(loss, R.smooth_l1(d, dtype(beta)))
    _bits(L.smooth_l1_backward(np.ones(n, dtype), cache).dpred, R.smooth_l1_grad(d, dtype(beta)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_limits_golden(dtype):
    # x = 0, t = 1, alpha 0.25, gamma 2: p = p_t = 1/2, CE = ln 2, FL = 0.25 * 0.25 * ln 2 = 0.0433217;
    # gradient alpha (1 - p)^g (g p ln p + p - 1) = 0.0625 * (-ln 2 - 0.5) = -0.0745717.
    # x = 40, t = 1: 1 - p_t = sigmoid(-40) ~ 4e-18 (float32: 1 - p rounds to 0), the gradient -> 0.
    # x = -40, t = 1 (badly wrong): m -> 1, the gradient -> alpha (p - t) = -0.25.
    x = np.array([0.0, 40.0, -40.0], dtype)
    t = np.ones(3, dtype)
    loss = R.sigmoid_focal_loss(x, t)
    grad = R.sigmoid_focal_loss_grad(x, t)
    np.testing.assert_allclose(loss[0], 0.25 * 0.25 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(grad[0], 0.0625 * (-np.log(2) - 0.5), rtol=1e-6)
    assert abs(grad[1]) < 1e-15 and grad[2] == pytest.approx(-0.25, rel=1e-6)
    # gamma = 0 is alpha_t times the BCE gradient p - t
    np.testing.assert_array_equal(R.sigmoid_focal_loss_grad(x, t, 0.25, 0.0), 0.25 * R.bce_with_logits_grad(x, t))
