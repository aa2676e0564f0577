"""refdet.quant.fake_quant at its exact boundaries (issue 19: the mutants the TV-F1 vectors and the
PyTorch comparisons in tests/test_quant.py leave alive).

Every expected value is worked by hand from the formulas in the docstrings (integers and scales that
are powers of two, so the arithmetic is exact); none is read back from refdet.
"""
import warnings

import numpy as np
import pytest

from refdet import quant as Q

I8 = dict(qmin=-128, qmax=127)


# ---------------------------------------------------------------------------------------------------
# forward: arguments named in the errors
# ---------------------------------------------------------------------------------------------------

def test_forward_names_qmin_qmax_and_refuses_an_empty_range():
    with pytest.raises(TypeError, match="`qmin` must be an integer"):
        Q.fake_quant_forward([0.0], 1.0, 0, qmin=-1.5, qmax=3)
    with pytest.raises(TypeError, match="`qmax` must be an integer"):
        Q.fake_quant_forward([0.0], 1.0, 0, qmin=-1, qmax=2.5)
    # qmin == qmax is refused (a range of one value), not only qmin > qmax
    with pytest.raises(ValueError, match=r"`qmin` must be < `qmax`; got \[3, 3\]"):
        Q.fake_quant_forward([0.0], 1.0, 3, qmin=3, qmax=3)
    with pytest.raises(ValueError, match=r"`qmin` must be < `qmax`; got \[4, 3\]"):
        Q.fake_quant_forward([0.0], 1.0, 3, qmin=4, qmax=3)


def test_forward_names_learnable_grad_factor_and_x():
    with pytest.raises(TypeError, match="`learnable` must be a bool; got 'yes'"):
        Q.fake_quant_forward([0.0], 1.0, 0, learnable="yes", **I8)
    with pytest.raises(TypeError, match="`grad_factor` must be a real number"):
        Q.fake_quant_forward([0.0], 1.0, 0, grad_factor="0.5", **I8)
    with pytest.raises(TypeError, match="`x` must be an array of numbers"):
        Q.fake_quant_forward("abc", 1.0, 0, **I8)
    with pytest.raises(ValueError, match="`x` must not contain NaN"):
        Q.fake_quant_forward([0.0, np.nan], 1.0, 0, **I8)
    with pytest.raises(ValueError, match=r"per-tensor \(PyTorch _fake_quantize_learnable_per_tensor_affine\); "
                                         r"got an `axis`"):
        Q.fake_quant_forward(np.zeros((2, 3)), 1.0, 0.0, axis=0, learnable=True, **I8)


def test_forward_axis_range_is_that_of_x():
    # a 1-D x has one axis: axis=1 is out of range (not taken as a 2-D input's axis)
    with pytest.raises(ValueError, match=r"`axis` must lie in \[-1, 1\) for a 1-D input; got 1"):
        Q.fake_quant_forward(np.zeros(3), np.ones(3), np.zeros(3, np.int64), axis=1, **I8)
    # a 0-d x is one channel along axis 0 (this raised IndexError before issue 19's tests)
    y, c = Q.fake_quant_forward(np.float64(1.25), np.array([0.5]), np.array([1]), axis=0, **I8)
    assert y.shape == () and y.tolist() == 1.0   # rint(2.5) = 2 (ties to even), (2 + 1 - 1) * 0.5
    assert c.mask.shape == () and c.zero_point.tolist() == 1.0
    with pytest.raises(ValueError, match=r"`scale` must have one value per channel along `axis` 0 \(1\); "
                                         r"got length 2"):
        Q.fake_quant_forward(np.float64(1.25), np.array([0.5, 1.0]), np.array([1, 1]), axis=0, **I8)


def test_forward_per_channel_lengths_are_checked_against_x():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"`scale` must have one value per channel along `axis` 0 \(3\); "
                                         r"got length 2"):
        Q.fake_quant_forward(x, [0.5, 0.25], [0, 0, 0], axis=0, **I8)
    with pytest.raises(ValueError, match=r"`zero_point` must have one value per channel along `axis` 0 \(3\); "
                                         r"got length 2"):
        Q.fake_quant_forward(x, [0.5, 0.25, 1.0], [0, 0], axis=0, **I8)
    with pytest.raises(ValueError, match=r"`scale` must be > 0"):
        Q.fake_quant_forward(x, 0.0, 0, **I8)
    with pytest.raises(ValueError, match=r"`zero_point` must lie in \[-128, 127\] \(\[`qmin`, `qmax`\]\); "
                                         r"got 200"):
        Q.fake_quant_forward(x, 1.0, 200, **I8)


# ---------------------------------------------------------------------------------------------------
# forward: values, masks and the cache
# ---------------------------------------------------------------------------------------------------

def test_forward_infinities_saturate_and_block_the_gradient():
    # s = 0.5, z = 0: +inf -> q = 127 -> 63.5; -inf -> -128 -> -64; both outside both masks
    x = np.array([np.inf, -np.inf, 1.0])
    for mask in ("torch", "tf"):
        y, c = Q.fake_quant_forward(x, 0.5, 0, mask=mask, **I8)
        assert y.tolist() == [63.5, -64.0, 1.0]
        assert c.mask.tolist() == [False, False, True]


def test_forward_cache_holds_the_zero_point_and_no_learnable_fields():
    x = np.array([1.0, 2.0])
    _, c = Q.fake_quant_forward(x, 0.5, 3, **I8)
    assert c.zero_point.dtype == np.float64 and c.zero_point.tolist() == 3.0
    assert c.xq_back is None and c.zp_back is None and c.learnable is False
    assert np.shares_memory(c.x, x)   # the cache keeps x itself (float64 in): no copy of the activations
    _, c = Q.fake_quant_forward(x, np.array([0.5, 0.25]), np.array([3, -2]), axis=0, **I8)
    assert c.zero_point.dtype == np.float64 and c.zero_point.tolist() == [3.0, -2.0]


def test_forward_float32_stays_float32_float16_and_ints_are_widened():
    x = np.array([0.3, 12.0, -40.0], np.float32)
    y, c = Q.fake_quant_forward(x, np.float32(0.25), 5, **I8)
    assert y.dtype == np.float32 and c.x.dtype == np.float32
    # 0.3 / 0.25 = 1.2 -> 1; 12 / 0.25 = 48; -40 / 0.25 = -160 + 5 = -155 -> clamped -128 -> (-133) * 0.25
    assert y.tolist() == [0.25, 12.0, -33.25]
    y, c = Q.fake_quant_forward(x.astype(np.float16), np.float32(0.25), 5, **I8)   # float16 works in float32
    assert y.dtype == np.float32 and c.x.dtype == np.float32 and y.tolist() == [0.25, 12.0, -33.25]
    y, c = Q.fake_quant_forward(np.array([3, 12, -40]), 0.5, 5, **I8)   # ints work in float64
    assert y.dtype == np.float64 and c.x.dtype == np.float64 and y.tolist() == [3.0, 12.0, -40.0]


def test_tf_mask_bounds_with_a_zero_point_both_ends_inclusive():
    # s = 0.5, z = 3, int8: nudged range [(-128 - 3) * 0.5, (127 - 3) * 0.5] = [-65.5, 62.0]
    x = np.array([-65.5, -65.75, 62.0, 62.25, -62.75, 0.0])
    _, c = Q.fake_quant_forward(x, 0.5, 3, mask="tf", **I8)
    assert c.mask.tolist() == [True, False, True, False, True, True]
    # the torch mask reads q: -65.75 / 0.5 = -131.5 -> -132 + 3 = -129 < -128 (blocked);
    # 62.25 / 0.5 = 124.5 -> 124 (even) + 3 = 127 (passes)
    _, c = Q.fake_quant_forward(x, 0.5, 3, mask="torch", **I8)
    assert c.mask.tolist() == [True, False, True, True, True, True]


def test_tf_mask_bound_is_computed_in_float32_for_float32_input():
    # nmax = (127 - 0) * 0.01f in float32 is 1.27f (= 1.2699999809...), above the exact product
    # 127 * 0.01f = 1.2699999716...: x = 1.27f sits on the float32 bound, so it passes
    s = np.float32(0.01)
    x = np.array([np.float32(127) * s, -np.float32(128) * s], np.float32)
    assert float(x[0]) > 127 * float(s)   # the premise: float32 rounded the bound up
    _, c = Q.fake_quant_forward(x, s, 0, mask="tf", **I8)
    assert c.mask.tolist() == [True, True]


def test_forward_raises_no_floating_point_warnings_when_saturating():
    # x * (1 / s) overflows float32 (3e38 * 1000), and a subnormal scale's reciprocal is inf
    x = np.array([3e38, -3e38, 0.0, 1.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, c = Q.fake_quant_forward(x, np.float32(1e-3), 0, **I8)
        assert y[:2].tolist() == [np.float32(127) * np.float32(1e-3), np.float32(-128) * np.float32(1e-3)]
        assert c.mask.tolist() == [False, False, True, False]   # 1 / 0.001 = 1000 > 127
        _, c = Q.fake_quant_forward(x, np.float32(1e-45), 0, **I8)   # 1 / 1e-45 = inf; 0 * inf = NaN
        assert not c.mask.any()
        _, c = Q.fake_quant_forward(x, np.float32(1e-45), np.float32(0.0), learnable=True, **I8)
        assert not c.mask.any()
        _, c = Q.fake_quant_forward(x, np.float32(1e-3), np.float32(0.0), learnable=True, **I8)
        assert c.mask.tolist() == [False, False, True, False]


# ---------------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------------

def test_backward_names_cache_and_dy():
    _, c = Q.fake_quant_forward(np.zeros(2), 1.0, 0, **I8)
    with pytest.raises(TypeError, match=r"`cache` must be the FakeQuantCache returned by fake_quant_forward; "
                                        r"got tuple"):
        Q.fake_quant_backward(np.zeros(2), tuple(c))
    with pytest.raises(TypeError, match="`dy` must be an array of numbers"):
        Q.fake_quant_backward("ab", c)
    with pytest.raises(ValueError, match="`dy` must not contain NaN or inf"):
        Q.fake_quant_backward(np.array([0.0, np.inf]), c)


def test_backward_dx_takes_the_dtype_of_x():
    _, c = Q.fake_quant_forward(np.array([1.0, 500.0], np.float32), np.float32(1.0), 0, **I8)
    g = Q.fake_quant_backward(np.array([0.1, 2.0]), c)   # float64 dy, float32 x
    assert g.dx.dtype == np.float32 and g.dx.tolist() == [np.float32(0.1), 0.0]


def test_learnable_backward_at_qmin_and_qmax_exactly():
    # s = 1, z = 0.0 (forward rint(0) = 0, backward (int)(0 + 0.5) = 0), int8, grad_factor 1.
    # xq = rint(x): -128.25 -> -128 = qmin (inside), 127.25 -> 127 = qmax (inside), -128.75 -> -129 (below).
    # inside: dscale += dy * (x_hat - x) / s = dy * (xq - x); below: dy * (qmin - 0); dzp = -dy * s outside.
    x = np.array([-128.25, 127.25, -128.75], np.float32)
    dy = np.array([1.0, 2.0, 4.0], np.float32)
    _, c = Q.fake_quant_forward(x, np.float32(1.0), np.float32(0.0), learnable=True, **I8)
    assert c.mask.tolist() == [True, True, False]
    g = Q.fake_quant_backward(dy, c)
    assert g.dx.tolist() == [1.0, 2.0, 0.0]
    assert g.dscale.tolist() == [0.25 * 1 - 0.25 * 2 - 128 * 4]
    assert g.dzero_point.tolist() == [-4.0]


def test_learnable_backward_sums_in_float64_and_returns_float32():
    # every x below the range (xq < -128): dscale = sum(dy * (-128 - 0)), dzp = sum(-dy * 1).
    # dy = [2**24, 1, 1]: the float64 sum -128 * (2**24 + 2) = -(2**31 + 256) is a float32; a float32
    # running sum loses each -128 (a tie at half an ulp of 2**31, to even) and stays at -2**31.
    # dzp: -(2**24 + 2) likewise; a float32 running sum stops at -2**24.
    x = np.full(3, -1000.0, np.float32)
    dy = np.array([2.0 ** 24, 1.0, 1.0], np.float32)
    _, c = Q.fake_quant_forward(x, np.float32(1.0), np.float32(0.0), learnable=True, **I8)
    g = Q.fake_quant_backward(dy, c)
    assert g.dscale.dtype == np.float32 and g.dzero_point.dtype == np.float32
    assert g.dscale.tolist() == [-(2.0 ** 31 + 256)]
    assert g.dzero_point.tolist() == [-(2.0 ** 24 + 2)]


def test_learnable_backward_zero_point_gradient_sign_and_scale():
    # s = 0.5, z = 0.0, grad_factor 0.25: x = 100 -> xq = 200 > 127; x = -70 -> -140 < -128.
    # dzp = (-dy * s * g) summed = -(3 * 0.5 * 0.25) - (5 * 0.5 * 0.25) = -1.0
    # dscale = 3 * 127 * 0.25 + 5 * (-128) * 0.25 = 95.25 - 160 = -64.75
    x = np.array([100.0, -70.0])
    _, c = Q.fake_quant_forward(x, 0.5, 0.0, learnable=True, grad_factor=0.25, **I8)
    g = Q.fake_quant_backward(np.array([3.0, 5.0]), c)
    assert g.dzero_point.tolist() == [-1.0]
    assert g.dscale.tolist() == [-64.75]


def test_learnable_backward_raises_no_floating_point_warnings_for_infinite_x():
    # x = inf: x_hat - x = -inf, and dy = 0 times it is NaN (not read: the element is above the range);
    # x = 3e38: (x_hat - x) * dy = -6e38 overflows float32 (also not read)
    x = np.array([np.inf, 3e38], np.float32)
    _, c = Q.fake_quant_forward(x, np.float32(1.0), np.float32(0.0), learnable=True, **I8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = Q.fake_quant_backward(np.array([0.0, 2.0], np.float32), c)
    assert g.dscale.tolist() == [254.0] and g.dzero_point.tolist() == [-2.0]
    assert g.dx.tolist() == [0.0, 0.0]
    # an overflowing scale gradient is -inf, silently: x = 0.25 -> xq = 0 (inside), x_hat - x = -0.25,
    # dy * -0.25 * 1 * grad_factor = 3e38 * -0.25 * 100 = -7.5e39 beyond float32
    _, c = Q.fake_quant_forward(np.array([0.25], np.float32), np.float32(1.0), np.float32(0.0), learnable=True,
                                grad_factor=100.0, **I8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = Q.fake_quant_backward(np.array([3e38], np.float32), c)
    assert g.dscale.tolist() == [-np.inf] and g.dx.tolist() == [np.float32(3e38)]
