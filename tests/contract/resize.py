"""Contract cases for refdet.resize (nearest-neighbour resizing; also importable from refdet.layers)."""
from refdet import resize
from tests.contract import Bad, Case


def _x(rng, shape=(2, 4, 6, 5)):
    return rng.standard_normal(shape)


def _bwd(fwd, make_args):
    def make(rng):
        args, kw = make_args(rng)
        y, cache = fwd(*args, **kw)
        return (rng.standard_normal(y.shape), cache), {}
    return make


CASES = [
    Case("upsample_nearest_source_index", lambda r: ((13, 25), {"mode": "nearest-exact"})),
    Case("upsample_nearest_forward", lambda r: ((_x(r),), {"size": (11, 7)})),
    Case("onnx_resize_nearest_source_index", lambda r: ((13, 25), {})),
    Case("upsample_nearest_backward", _bwd(resize.upsample_nearest_forward,
                                           lambda r: ((_x(r),), {"scale_factor": 2, "mode": "nearest-exact"}))),
]

BAD = [
    Bad("upsample_nearest_forward", lambda r: ((_x(r),), {}), ValueError, r"exactly one of `size` and `scale_factor`"),
    Bad("upsample_nearest_forward", lambda r: ((_x(r),), {"size": 4, "mode": "area"}), ValueError, r"`mode`"),
    Bad("upsample_nearest_backward", lambda r: ((_x(r), "cache"), {}), TypeError, r"`cache`"),
    Bad("upsample_nearest_forward", lambda r: ((_x(r),), {"size": 4, "convention": "keras"}), ValueError,
        r"`convention`.*'keras'"),
    Bad("onnx_resize_nearest_source_index", lambda r: ((13, 25), {"coordinate_transformation_mode": "half"}),
        ValueError, r"`coordinate_transformation_mode`"),
]

EXEMPT = {"UpsampleCache": "NamedTuple type", "UpsampleGrads": "NamedTuple type"}
