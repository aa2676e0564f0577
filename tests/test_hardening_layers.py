"""Hardening of refdet.layers, refdet.resize and the integer kernels: geometry sizes capped, strides
beyond the input answered, the geometry arguments named."""
import numpy as np
import pytest

import refdet
from refdet import quant as Q

X = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
W = np.random.default_rng(1).standard_normal((3, 2, 3, 3))


def test_max_pool_stride_beyond_int64_is_one_window():
    # PyTorch allows a stride larger than the input: one window; 2**63 must not overflow
    y, cache = refdet.max_pool2d_forward(X, 2, stride=2 ** 63)
    y2, _ = refdet.max_pool2d_forward(X, 2, stride=100)
    assert y.shape == (1, 2, 1, 1) and np.array_equal(y, y2)
    assert refdet.max_pool2d_backward(np.ones_like(y), cache).dx.shape == X.shape


def test_conv_stride_beyond_int64_is_one_window():
    y, cache = refdet.conv2d_forward(X, W, stride=2 ** 63, padding=1)
    y2, _ = refdet.conv2d_forward(X, W, stride=7, padding=1)
    assert np.array_equal(y, y2)
    g = refdet.conv2d_backward(np.ones_like(y), cache)
    assert g.dx.shape == X.shape


@pytest.mark.parametrize("kw", [dict(padding=10 ** 9), dict(padding=2 ** 63)])
def test_conv_padding_sizes_refused_before_allocating(kw):
    with pytest.raises(ValueError, match="`padding` and `dilation` ask for"):
        refdet.conv2d_forward(X, W, **kw)
    with pytest.raises(ValueError, match="`padding` and `dilation` ask for"):
        Q.conv2d_int(np.zeros((1, 2, 6, 6), np.uint8), np.zeros((3, 2, 3, 3), np.int8), x_zero_point=128, **kw)


def test_dilation_and_kernel_named_when_the_window_does_not_fit():
    with pytest.raises(ValueError, match=r"`dilation` x \(the kernel - 1\)"):
        refdet.conv2d_forward(X, W, dilation=10 ** 9)
    with pytest.raises(ValueError, match=r"`dilation` x \(`kernel_size` - 1\)"):
        refdet.max_pool2d_forward(X, 10 ** 9)


def test_upsample_sizes_refused_and_scales_checked():
    with pytest.raises(ValueError, match=r"`out_size` asks for 1,000,000,000 elements"):
        refdet.upsample_nearest_source_index(5, 10 ** 9)
    with pytest.raises(ValueError, match="`out_size` asks for"):
        refdet.onnx_resize_nearest_source_index(5, 10 ** 9)
    with pytest.raises(ValueError, match="`size` asks for"):
        refdet.upsample_nearest_forward(X, size=(10 ** 5, 10 ** 5))
    with pytest.raises(ValueError, match="`scale_factor` asks for"):
        refdet.upsample_nearest_forward(X, scale_factor=1e6)
    assert refdet.upsample_nearest_source_index(5, 7, max_elements=7).shape == (7,)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_upsample_source_index_of_non_finite_values_is_an_error(bad):
    with pytest.raises(TypeError, match="`in_size` must be an integer"):
        refdet.upsample_nearest_source_index(bad, 5)
    with pytest.raises(ValueError, match="`scale_factor` must be finite"):
        refdet.upsample_nearest_source_index(5, 10, scale_factor=bad)
    with pytest.raises((TypeError, ValueError), match="`scale`"):
        refdet.onnx_resize_nearest_source_index(5, 10, scale=bad)


def test_int_conv_groups_named():
    with pytest.raises(ValueError, match="`groups`"):
        Q.conv2d_int(np.zeros((1, 3, 6, 6), np.uint8), np.zeros((4, 3, 3, 3), np.int8), groups=10 ** 9)
