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
        assert y.dtype == np.float64 and cache.xhat.dtype == np.float64 and cache.rstd.dtype == np.float64
        assert gm is None or cache.gamma.dtype == np.float64
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_norm_empty_batch_and_empty_map(dtype):
    for shape in ((0, 4, 3, 3), (2, 4, 0, 3)):
        x = np.zeros(shape, dtype)
        y, cache = group_norm_forward(x, np.ones(4, dtype), np.full(4, 2.0, dtype), num_groups=2)
        assert y.shape == shape and cache.rstd.shape == (shape[0], 2)
        assert y.dtype == cache.rstd.dtype == cache.xhat.dtype == dtype
        g = group_norm_backward(np.ones(shape), cache)
        assert g.dx.shape == shape and not g.dx.any()
        assert g.dx.dtype == g.dgamma.dtype == g.dbeta.dtype == dtype
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


def test_group_norm_one_element_groups_golden():
    # C = G = 2, H = W = 1: each group holds one value, so mean = x, var = 0, xhat = 0, rstd = 1/sqrt(eps);
    # y = beta, dgamma = sum dy * 0 = 0, dbeta = sum dy, dx = rstd * (dxhat - mean(dxhat) - 0) = 0
    x = np.array([3.0, -7.0]).reshape(1, 2, 1, 1)
    y, cache = group_norm_forward(x, np.array([2.0, 3.0]), np.array([0.5, -1.0]), num_groups=2, eps=0.25)
    np.testing.assert_array_equal(y.ravel(), [0.5, -1.0])
    np.testing.assert_array_equal(cache.rstd, [[2.0, 2.0]])
    g = group_norm_backward(np.array([4.0, 5.0]).reshape(1, 2, 1, 1), cache)
    np.testing.assert_array_equal(g.dx.ravel(), [0, 0])
    np.testing.assert_array_equal(g.dgamma, [0, 0])
    np.testing.assert_array_equal(g.dbeta, [4, 5])


def test_group_norm_two_element_group_golden():
    # one group [1, 3] (C = 2, H = W = 1), eps 0: mean 2, var 1, rstd 1, xhat [-1, 1];
    # gamma [2, 1]: dxhat = dy * gamma = [2, 1] for dy = [1, 1]: mean(dxhat) = 1.5,
    # mean(dxhat * xhat) = (-2 + 1) / 2 = -0.5 -> dx = [2 - 1.5 - (-1)(-0.5), 1 - 1.5 - (1)(-0.5)] = [0, 0]
    # and for dy = [1, 0]: dxhat = [2, 0], means 1 and -1: dx = [2 - 1 - 1, 0 - 1 + 1] = [0, 0]; dy = [0, 1]:
    # dxhat = [0, 1], means 0.5 and 0.5: dx = [0 - 0.5 + 0.5, 1 - 0.5 - 0.5] = [0, 0] (normalising two
    # values gives +-1 whatever they are: the input gradient is 0). Three values are not that rigid:
    x = np.array([1.0, 3.0]).reshape(1, 2, 1, 1)
    y, cache = group_norm_forward(x, np.array([2.0, 1.0]), None, num_groups=1, eps=0.0)
    np.testing.assert_array_equal(y.ravel(), [-2.0, 1.0])
    np.testing.assert_array_equal(cache.rstd, [[1.0]])
    for dy in ([1.0, 1.0], [1.0, 0.0], [0.0, 1.0]):
        np.testing.assert_array_equal(group_norm_backward(np.array(dy).reshape(1, 2, 1, 1), cache).dx.ravel(), [0, 0])
    # [0, 3, 6] (one channel, 1 x 3), eps 0: mean 3, var (9 + 0 + 9) / 3 = 6, rstd 1/sqrt(6),
    # xhat = [-3, 0, 3] / sqrt(6); dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) written out here
    x = np.array([0.0, 3.0, 6.0]).reshape(1, 1, 1, 3)
    y, cache = group_norm_forward(x, num_groups=1, eps=0.0)
    r = 1 / np.sqrt(6.0)
    xh = np.array([-3.0, 0.0, 3.0]) * r
    np.testing.assert_allclose(y.ravel(), xh, rtol=1e-15)
    dy = np.array([1.0, 0.0, 0.0])
    want = r * (dy - dy.mean() - xh * (dy * xh).mean())
    np.testing.assert_allclose(group_norm_backward(dy.reshape(1, 1, 1, 3), cache).dx.ravel(), want, rtol=1e-14)


def test_group_norm_argument_messages_are_exact():
    x = np.zeros((1, 6, 2, 2))
    with pytest.raises(ValueError, match=r"^`num_groups` must divide the channels C = 6 of `x`; got num_groups=4$"):
        group_norm_forward(x, num_groups=4)
    with pytest.raises(ValueError, match=r"^`num_groups` must be >= 1; got 0$"):
        group_norm_forward(x, num_groups=0)
    with pytest.raises(ValueError, match=r"^`beta` must have shape \(6,\); got shape \(3,\)$"):
        group_norm_forward(x, None, np.ones(3), num_groups=2)
    with pytest.raises(ValueError, match=r"^`gamma` must have shape \(6,\); got shape \(2,\)$"):
        group_norm_forward(x, np.ones(2), None, num_groups=2)
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0; got -1e-05$"):
        group_norm_forward(x, num_groups=2, eps=-1e-5)


def test_max_pool_backward_skips_only_the_windows_without_input():
    # W = 3, kernel (1, 2), dilation 2, stride 2, padding 1, ceil_mode: windows read columns {-1, 1} and
    # {1, 3}: window 0 holds column 1 only, window 1 column 1 only (3 is padding) -> both pick index 1.
    # Add a second row whose first window is -inf everywhere: index of its first real element (column 1).
    x = np.array([[5.0, 7.0, 6.0], [2.0, -np.inf, 9.0]]).reshape(1, 1, 2, 3)
    y, cache = max_pool2d_forward(x, (1, 2), stride=(1, 2), padding=(0, 1), dilation=(1, 2), ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [[7, 7], [-np.inf, -np.inf]])
    np.testing.assert_array_equal(cache.indices[0, 0], [[1, 1], [4, 4]])
    dx = max_pool2d_backward(np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2), cache).dx[0, 0]
    np.testing.assert_array_equal(dx, [[0, 3, 0], [0, 7, 0]])
    # W = 1, kernel 2, dilation 2, padding 1: no window holds column 0 (index -1, no gradient); with a
    # batch of two planes the real index 0 of plane 1 must still get its gradient
    x = np.array([1.0, 2.0]).reshape(2, 1, 1, 1)
    y, cache = max_pool2d_forward(x, (1, 2), stride=(1, 3), padding=(0, 1), dilation=2, ceil_mode=True)
    assert cache.indices.ravel().tolist() == [-1, -1]
    x = np.arange(6.0).reshape(2, 1, 1, 3)
    y, cache = max_pool2d_forward(x, (1, 2), stride=(1, 2), padding=(0, 1), dilation=(1, 2), ceil_mode=True)
    np.testing.assert_array_equal(cache.indices.ravel(), [1, 1, 1, 1])
    dx = max_pool2d_backward(np.array([1.0, 2.0, 3.0, 4.0]).reshape(2, 1, 1, 2), cache).dx
    np.testing.assert_array_equal(dx.ravel(), [0, 3, 0, 0, 7, 0])
    # W = 2, kernel 2, dilation 3, "same" (left 1, right 2): window 0 reads columns -1 and 2 (both padding:
    # index -1), window 1 columns 0 and 3 (index 0): the gradient of window 1 reaches column 0
    x = np.array([5.0, 7.0]).reshape(1, 1, 1, 2)
    y, cache = max_pool2d_forward(x, (1, 2), stride=1, dilation=(1, 3), padding="same")
    np.testing.assert_array_equal(y.ravel(), [-np.inf, 5])
    np.testing.assert_array_equal(cache.indices.ravel(), [-1, 0])
    np.testing.assert_array_equal(max_pool2d_backward(np.array([1.0, 2.0]).reshape(1, 1, 1, 2), cache).dx.ravel(),
                                  [2, 0])


# --------------------------------------------------------------------------------------------------
# conv2d and max pooling name every argument they refuse
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,err,msg", [
    (dict(groups=0), ValueError, r"^`groups` must be >= 1; got 0$"),
    (dict(groups=1.0), TypeError, r"^`groups` must be an integer"),
    (dict(stride=0), ValueError, r"`stride`"),
    (dict(stride=(1, 0)), ValueError, r"`stride\[1\]`"),
    (dict(dilation=0), ValueError, r"`dilation`"),
    (dict(dilation=(0, 1)), ValueError, r"`dilation\[0\]`"),
    (dict(b=np.ones(2)), ValueError, r"^`b` must have shape \(3,\); got shape \(2,\)$"),
    (dict(b=np.array([1.0, np.nan, 0.0])), ValueError, r"^`b` must not contain NaN or inf"),
    (dict(w=np.full((3, 4, 3, 3), np.inf)), ValueError, r"^`w` must not contain NaN or inf"),
    (dict(w=np.ones((3, 4, 3))), ValueError, r"`w`"),
    (dict(x=np.ones((2, 4, 5))), ValueError, r"^`x` must be 4-D"),
])
def test_conv2d_names_the_argument(kw, err, msg):
    kw = dict(kw)                          # the parameter is shared between runs: never pop from it
    args = dict(x=X, w=np.ones((3, 4, 3, 3)), b=None)
    args.update({k: kw.pop(k) for k in ("x", "w", "b") if k in kw})
    with pytest.raises(err, match=msg):
        conv2d_forward(args["x"], args["w"], args["b"], **kw)


@pytest.mark.parametrize("kw,err,msg", [
    (dict(kernel_size=0), ValueError, r"`kernel_size` must be >= 1"),
    (dict(kernel_size=(2, 0)), ValueError, r"`kernel_size\[1\]`"),
    (dict(kernel_size=2, stride=0), ValueError, r"`stride`"),
    (dict(kernel_size=2, stride=(2, 0)), ValueError, r"`stride\[1\]`"),
    (dict(kernel_size=2, dilation=0), ValueError, r"`dilation`"),
    (dict(kernel_size=2, dilation=(1, 0)), ValueError, r"`dilation\[1\]`"),
    (dict(kernel_size=(3, 1), padding=(2, 0)), ValueError, r"`padding` must be at most half"),
    (dict(kernel_size=(1, 3), padding=(0, 2)), ValueError, r"`padding` must be at most half"),
    (dict(kernel_size=(3, 3), padding=((0, 2), (0, 0))), ValueError, r"`padding` must be at most half"),
    (dict(kernel_size=(3, 3), padding=((0, 0), (0, 2))), ValueError, r"`padding` must be at most half"),
])
def test_max_pool_names_the_argument(kw, err, msg):
    with pytest.raises(err, match=msg):
        max_pool2d_forward(X, **kw)


def test_max_pool_padding_of_exactly_half_the_kernel_is_allowed():
    # kernel 3 (half 1) with padding 1 on every side; kernel 4 (half 2) with (2, 2): -inf padding, so
    # each output is the max of the real pixels its window covers
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y, _ = max_pool2d_forward(x, 3, stride=1, padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(y[0, 0], [[4, 5, 5], [7, 8, 8], [7, 8, 8]])
    y, _ = max_pool2d_forward(x, (4, 2), stride=(3, 1), padding=(2, 1))
    # rows: windows start at -2 (rows 0, 1) and 1 (rows 1, 2, 3=pad...); columns -1..0, 0..1, 1..2, 2..3
    np.testing.assert_array_equal(y[0, 0], [[3, 4, 5, 5], [6, 7, 8, 8]])


def test_group_norm_x_named():
    with pytest.raises(ValueError, match=r"^`x` must be 4-D"):
        group_norm_forward(np.ones((2, 4)), num_groups=2)
    with pytest.raises(ValueError, match=r"^`x` must not contain NaN or inf"):
        group_norm_forward(np.full((1, 2, 1, 1), np.inf), num_groups=2)


def test_mixed_dtypes_give_the_float64_bits():
    # a float32 x with a float64 gamma is normalised in float64: the same bits as a float64 x
    x32 = (X * 3 + 1).astype(np.float32)
    gm, bt = RNG.standard_normal(4), RNG.standard_normal(4)
    y, cache = group_norm_forward(x32, gm, bt, num_groups=2)
    y64, cache64 = group_norm_forward(x32.astype(np.float64), gm, bt, num_groups=2)
    np.testing.assert_array_equal(y, y64)
    np.testing.assert_array_equal(cache.rstd, cache64.rstd)
    w = RNG.standard_normal((3, 4, 3, 3))
    y, cache = conv2d_forward(x32, w, padding=1)
    y64, cache64 = conv2d_forward(x32.astype(np.float64), w, padding=1)
    np.testing.assert_array_equal(y, y64)
    dy = RNG.standard_normal(y.shape)
    for a, e in zip(conv2d_backward(dy, cache), conv2d_backward(dy, cache64)):
        if e is not None:
            np.testing.assert_array_equal(a, e)
