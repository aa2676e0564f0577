"""Goldens worked by hand that pin what the rest of the layers tests leave open (issue 19: the mutants
of refdet/layers.py that survived tests/test_*layers*.py): the dtype rule for mixed arguments, the
argument and cache checks of every backward pass (each error names its argument), empty inputs,
the outputs never aliasing the cache, and the padding rules of max pooling."""
import numpy as np
import pytest

from refdet.layers import (conv2d_backward, conv2d_forward, group_norm_backward, group_norm_forward,
                           max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward, sigmoid_backward,
                           sigmoid_forward)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 5, 6))


# --------------------------------------------------------------------------------------------------
# dtypes: float64 wins over float32 whichever argument carries it
# --------------------------------------------------------------------------------------------------

def test_mixed_float32_float64_arguments_compute_in_float64():
    x32, w = X.astype(np.float32), RNG.standard_normal((3, 4, 3, 3))
    for args in ((x32, w, None), (X, w.astype(np.float32), None), (x32, w.astype(np.float32), np.ones(3)),
                 (x32, w.astype(np.float64), np.ones(3, np.float32))):
        y, cache = conv2d_forward(*args, padding=1)
        assert y.dtype == np.float64 and cache.x.dtype == np.float64 and cache.w.dtype == np.float64
        g = conv2d_backward(np.ones_like(y), cache)
        assert g.dx.dtype == g.dw.dtype == np.float64
    y, _ = conv2d_forward(x32, w.astype(np.float32), np.ones(3, np.float32), padding=1)
    assert y.dtype == np.float32
    for gm, bt in ((np.ones(4), None), (None, np.zeros(4)), (np.ones(4, np.float32), np.zeros(4))):
        y, cache = group_norm_forward(x32, gm, bt, num_groups=2)
        assert y.dtype == np.float64 and cache.xhat.dtype == np.float64
    assert group_norm_forward(x32, np.ones(4, np.float32), None, num_groups=2)[0].dtype == np.float32


# --------------------------------------------------------------------------------------------------
# the backward passes check their cache and dy
# --------------------------------------------------------------------------------------------------

def _pairs():
    y, c = conv2d_forward(X, RNG.standard_normal((3, 4, 3, 3)), padding=1)
    yield conv2d_backward, y, c, "Conv2dCache", "conv2d_forward"
    y, c = relu_forward(X)
    yield relu_backward, y, c, "ReluCache", "relu_forward"
    y, c = sigmoid_forward(X)
    yield sigmoid_backward, y, c, "SigmoidCache", "sigmoid_forward"
    y, c = max_pool2d_forward(X, 2)
    yield max_pool2d_backward, y, c, "MaxPool2dCache", "max_pool2d_forward"
    y, c = group_norm_forward(X, num_groups=2)
    yield group_norm_backward, y, c, "GroupNormCache", "group_norm_forward"


def test_backward_refuses_another_cache_and_a_wrong_dy_shape():
    pairs = list(_pairs())
    for i, (bwd, y, cache, cname, fname) in enumerate(pairs):
        other = pairs[(i + 1) % len(pairs)][2]
        with pytest.raises(TypeError, match=rf"^`cache` must be the {cname} returned by {fname}; got "
                                            rf"{type(other).__name__}$"):
            bwd(np.ones_like(y), other)
        bad = np.ones(y.shape[:-1] + (y.shape[-1] + 1,))
        with pytest.raises(ValueError, match=rf"^`dy` must have the output's shape \({y.shape[0]}, .*\); got "
                                             rf"\({bad.shape[0]}, "):
            bwd(bad, cache)


def test_conv2d_compute_dx_must_be_a_bool():
    y, cache = conv2d_forward(X, RNG.standard_normal((3, 4, 3, 3)))
    with pytest.raises(TypeError, match="`compute_dx` must be a bool"):
        conv2d_backward(np.ones_like(y), cache, compute_dx=0)


# --------------------------------------------------------------------------------------------------
# empty inputs
# --------------------------------------------------------------------------------------------------

def test_max_pool_empty_batch():
    x = np.zeros((0, 2, 4, 4))
    y, cache = max_pool2d_forward(x, 2)
    assert y.shape == (0, 2, 2, 2)
    dx = max_pool2d_backward(np.zeros(y.shape), cache).dx
    assert dx.shape == x.shape


def test_group_norm_empty_batch_and_empty_map():
    for shape in ((0, 4, 3, 3), (2, 4, 0, 3)):
        x = np.zeros(shape)
        y, cache = group_norm_forward(x, np.ones(4), np.full(4, 2.0), num_groups=2)
        assert y.shape == shape and cache.rstd.shape == (shape[0], 2)
        g = group_norm_backward(np.ones(shape), cache)
        assert g.dx.shape == shape and not g.dx.any()
        # dgamma = sum dy * xhat = 0 (xhat is 0 on an empty group); dbeta = sum dy over B, H, W
        np.testing.assert_array_equal(g.dgamma, np.zeros(4))
        np.testing.assert_array_equal(g.dbeta, np.full(4, float(shape[0] * shape[2] * shape[3])))


# --------------------------------------------------------------------------------------------------
# outputs never alias the cache
# --------------------------------------------------------------------------------------------------

def test_group_norm_output_does_not_share_the_cache():
    # without gamma / beta, y is xhat: returned as a copy, so writing into y leaves the backward exact
    y, cache = group_norm_forward(X, num_groups=2)
    assert not np.shares_memory(y, cache.xhat)
    want = group_norm_backward(np.ones_like(y) * 0.5 + X, cache).dx
    y[...] = 7.0
    np.testing.assert_array_equal(group_norm_backward(np.ones_like(y) * 0.5 + X, cache).dx, want)


def test_group_norm_eps_zero_allowed_negative_refused():
    # eps = 0: the golden [-1, 1] per channel of tests/test_layers.py; eps < 0 named
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 1, 2)
    np.testing.assert_allclose(group_norm_forward(x, num_groups=2, eps=0)[0].ravel(), [-1, 1, -1, 1], rtol=1e-15)
    with pytest.raises(ValueError, match="`eps`"):
        group_norm_forward(x, num_groups=2, eps=-1e-5)


# --------------------------------------------------------------------------------------------------
# max pooling: the half-kernel padding rule binds numeric padding only
# --------------------------------------------------------------------------------------------------

def test_max_pool_dilated_same_padding_may_exceed_half_the_kernel():
    # W = 5, kernel 2, dilation 3 (span 4), stride 1, "same": total (5 - 1) + 4 - 5 = 3 -> left 1, right 2
    # (more than kernel // 2 = 1, allowed for the string spellings). Output j reads columns j - 1, j + 2:
    # x = [3, 1, 4, 1, 5] -> [x2, max(x0, x3), max(x1, x4), x2, x3] = [4, 3, 5, 4, 1]
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0]).reshape(1, 1, 1, 5)
    y, cache = max_pool2d_forward(x, (1, 2), stride=1, dilation=(1, 3), padding="same")
    np.testing.assert_array_equal(y.ravel(), [4, 3, 5, 4, 1])
    np.testing.assert_array_equal(cache.indices.ravel(), [2, 0, 4, 2, 3])
    with pytest.raises(ValueError, match=r"^`padding` must be at most half the kernel size \(1, 2\) on each side; "
                                         r"got \(0, 0, 1, 2\) \(top, bottom, left, right\)$"):
        max_pool2d_forward(x, (1, 2), stride=1, dilation=(1, 3), padding=((0, 0), (1, 2)))


def _pairs32():
    x = X.astype(np.float32)
    y, c = conv2d_forward(x, RNG.standard_normal((3, 4, 3, 3)).astype(np.float32), np.ones(3, np.float32), padding=1)
    yield conv2d_backward, y, c
    yield (relu_backward,) + relu_forward(x)
    yield (sigmoid_backward,) + sigmoid_forward(x)
    yield (max_pool2d_backward,) + max_pool2d_forward(x, 2)
    yield (group_norm_backward,) + group_norm_forward(x, np.ones(4, np.float32), np.zeros(4, np.float32),
                                                      num_groups=2)


def test_backward_casts_dy_to_the_forward_dtype():
    # a float64 (or integer) dy of a float32 forward gives float32 gradients, equal to those of dy cast first
    for bwd, y, cache in _pairs32():
        dy = np.random.default_rng(1).standard_normal(y.shape)
        want = bwd(dy.astype(np.float32), cache)
        for d in (dy, np.round(dy * 4).astype(np.int64)):
            got = bwd(d, cache)
            for a, e in zip(got, bwd(d.astype(np.float32), cache)):
                assert a.dtype == np.float32
                np.testing.assert_array_equal(a, e)
        assert all(a.dtype == np.float32 for a in want)


def test_backward_dy_checked_with_its_name():
    # sigmoid, max pool and group norm refuse a NaN dy naming it; conv2d and relu let NaN propagate (autograd)
    pairs = {bwd.__name__: (bwd, y, cache) for bwd, y, cache in _pairs32()}
    for name in ("sigmoid_backward", "max_pool2d_backward", "group_norm_backward"):
        bwd, y, cache = pairs[name]
        dy = np.ones(y.shape)
        dy.flat[3] = np.nan
        with pytest.raises(ValueError, match="`dy` must not contain NaN"):
            bwd(dy, cache)
    for name in ("conv2d_backward", "relu_backward"):
        bwd, y, cache = pairs[name]
        dy = np.ones(y.shape)
        dy.flat[0] = np.nan
        assert np.isnan(bwd(dy, cache)[0]).any()
    with pytest.raises(ValueError, match="`dy` must be 4-D"):
        pairs["conv2d_backward"][0](np.ones((3, 4)), pairs["conv2d_backward"][2])
    with pytest.raises((TypeError, ValueError), match="`dy`"):
        relu_backward(np.array(["a"] * X.size).reshape(X.shape), pairs["relu_backward"][2])


def test_forward_x_checked_with_its_name_inf_allowed():
    x = np.array([[[[-np.inf, -1.0, 0.0, 2.0, np.inf]]]])
    np.testing.assert_array_equal(relu_forward(x)[0].ravel(), [0, 0, 0, 2, np.inf])
    np.testing.assert_array_equal(sigmoid_forward(x)[0].ravel()[[0, 2, 4]], [0, 0.5, 1])
    np.testing.assert_array_equal(max_pool2d_forward(x, (1, 5))[0].ravel(), [np.inf])
    bad = x.copy()
    bad[0, 0, 0, 1] = np.nan
    for fwd in (relu_forward, sigmoid_forward, lambda a: max_pool2d_forward(a, 1)):
        with pytest.raises(ValueError, match=r"`x` must not contain NaN; got nan at index \(0, 0, 0, 1\)"):
            fwd(bad)
        with pytest.raises(TypeError, match="`x`"):
            fwd(np.array([["a"]]))


def test_sigmoid_at_signed_zero_and_both_branches():
    # +0.0 and -0.0 both give exactly 1/2; x = log 3 -> 3/4 (1 / (1 + 1/3)), x = -log 3 -> 1/4 ((1/3) / (4/3))
    y, cache = sigmoid_forward(np.array([0.0, -0.0, np.log(3.0), -np.log(3.0)]))
    np.testing.assert_allclose(y, [0.5, 0.5, 0.75, 0.25], rtol=2e-16)
    assert y[0] == 0.5 and y[1] == 0.5
    np.testing.assert_allclose(sigmoid_backward(np.ones(4), cache).dx, [0.25, 0.25, 0.1875, 0.1875], rtol=1e-15)
