"""Contract cases for refdet.layers (every forward, every backward, the documented errors)."""
import numpy as np

from refdet import layers
from tests.contract import Bad, Case


def _x(rng, shape=(2, 4, 6, 5)):
    return rng.standard_normal(shape)


def _conv_args(rng):
    return (_x(rng), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)), \
        {"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2}


def _conv_bwd(rng):
    args, kw = _conv_args(rng)
    y, cache = layers.conv2d_forward(*args, **kw)
    return (rng.standard_normal(y.shape), cache), {}


def _bwd(fwd, make_args):
    def make(rng):
        args, kw = make_args(rng)
        y, cache = fwd(*args, **kw)
        return (rng.standard_normal(y.shape), cache), {}
    return make


CASES = [
    Case("conv2d_forward", _conv_args),
    Case("conv2d_backward", _conv_bwd),
    Case("relu_forward", lambda r: ((_x(r),), {})),
    Case("relu_backward", _bwd(layers.relu_forward, lambda r: ((_x(r),), {}))),
    Case("sigmoid_forward", lambda r: ((_x(r),), {})),
    Case("sigmoid_backward", _bwd(layers.sigmoid_forward, lambda r: ((_x(r),), {}))),
    Case("max_pool2d_forward", lambda r: ((_x(r), 3), {"stride": 2, "padding": 1})),
    Case("max_pool2d_backward", _bwd(layers.max_pool2d_forward, lambda r: ((_x(r), 1), {"stride": 2}))),
    Case("group_norm_forward", lambda r: ((_x(r), r.standard_normal(4), r.standard_normal(4)), {"num_groups": 2})),
    Case("group_norm_backward", _bwd(layers.group_norm_forward,
                                     lambda r: ((_x(r), r.standard_normal(4), None), {"num_groups": 4}))),
]

BAD = [
    Bad("conv2d_forward", lambda r: ((_x(r)[0], r.standard_normal((6, 4, 3, 3))), {}), ValueError,
        r"`x` must be 4-D"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 3, 3, 3))), {}), ValueError,
        r"`w` must have shape \(F, C / groups, KH, KW\)"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 1, 3, 3))), {"groups": 3}), ValueError,
        r"`groups` must divide the input channels"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 4, 7, 3))), {}), ValueError,
        r"larger than the padded input of `x`"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 4, 3, 3)), np.zeros(5)), {}), ValueError,
        r"`b` must have shape \(6,\)"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 4, 3, 3))), {"stride": 0}), ValueError,
        r"`stride` must be >= 1"),
    Bad("conv2d_forward", lambda r: ((_x(r), r.standard_normal((6, 4, 3, 3))), {"padding": (1, 2, 3)}),
        ValueError, r"`padding` must be an int, a pair"),
    Bad("conv2d_forward", lambda r: (("x", r.standard_normal((6, 4, 3, 3))), {}), TypeError, r"`x`"),
    Bad("conv2d_backward", lambda r: ((np.zeros((1, 1, 1, 1)), None), {}), TypeError, r"`cache`"),
    Bad("relu_forward", lambda r: ((np.array([1.0, np.nan]),), {}), ValueError, r"`x`.*NaN"),
    Bad("sigmoid_forward", lambda r: (("a",), {}), TypeError, r"`x`"),
    Bad("max_pool2d_forward", lambda r: ((_x(r), 2), {"convention": "tf"}), ValueError, r"`convention`"),
    Bad("max_pool2d_forward", lambda r: ((_x(r), 2), {"padding": 2}), ValueError, r"`padding` must be at most half"),
    Bad("max_pool2d_forward", lambda r: ((_x(r)[0], 2), {}), ValueError, r"`x` must be 4-D"),
    Bad("max_pool2d_backward", lambda r: ((_x(r), None), {}), TypeError, r"`cache`"),
    Bad("group_norm_forward", lambda r: ((_x(r),), {"num_groups": 3}), ValueError, r"`num_groups` must divide"),
    Bad("group_norm_forward", lambda r: ((_x(r), np.ones(3)), {"num_groups": 2}), ValueError, r"`gamma` must have shape"),
    Bad("group_norm_backward", lambda r: ((_x(r), ()), {}), TypeError, r"`cache`"),
]

EXEMPT = {
    "Conv2dCache": "NamedTuple type of conv2d_forward's cache",
    "Conv2dGrads": "NamedTuple type of conv2d_backward's result",
    "ReluCache": "NamedTuple type", "ReluGrads": "NamedTuple type",
    "SigmoidCache": "NamedTuple type", "SigmoidGrads": "NamedTuple type",
    "MaxPool2dCache": "NamedTuple type", "MaxPool2dGrads": "NamedTuple type",
    "GroupNormCache": "NamedTuple type", "GroupNormGrads": "NamedTuple type",
}
