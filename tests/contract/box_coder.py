import numpy as np

from tests.contract import Bad, Case


def _boxes(rng, n=6):
    xy = rng.uniform(-20, 80, size=(n, 2))
    wh = rng.uniform(1, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _deltas(rng, n=6, k=1):
    return rng.normal(0, 1, size=(n, 4 * k))


def _backward_case(rng):
    from refdet.box_coder import decode_boxes_forward

    d, a = _deltas(rng, 5, 2), _boxes(rng, 5)
    _, cache = decode_boxes_forward(d, a, weights=(10, 10, 5, 5))
    return (rng.normal(size=(5, 8)), cache), {}


CASES = [
    Case("encode_boxes", lambda r: ((_boxes(r), _boxes(r)), {"weights": (10, 10, 5, 5)}),
         box_args={0: "boxes", 1: "anchors"}),
    Case("decode_boxes", lambda r: ((_deltas(r), _boxes(r)), {}), box_args={1: "anchors"}),
    Case("decode_boxes", lambda r: ((_deltas(r, 6, 3), _boxes(r)), {"convention": "mmdet"}), box_args={1: "anchors"}),
    Case("decode_boxes_forward", lambda r: ((_deltas(r), _boxes(r)), {}), box_args={1: "anchors"}),
    Case("decode_boxes_backward", _backward_case),
]

BAD = [
    Bad("encode_boxes", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {}), ValueError, "same length"),
    Bad("encode_boxes", lambda r: ((_boxes(r), _boxes(r)), {"weights": (1, 1, 0, 1)}), ValueError, "`weights`"),
    Bad("encode_boxes", lambda r: ((_boxes(r), _boxes(r)), {"convention": "onnx"}), ValueError, "`convention`.*'onnx'"),
    Bad("encode_boxes", lambda r: ((_boxes(r), _boxes(r)), {"center": "middle"}), ValueError, "`center`"),
    Bad("encode_boxes", lambda r: ((_boxes(r), _boxes(r)), {"means": (0, 0)}), ValueError, "`means`"),
    Bad("decode_boxes", lambda r: ((_deltas(r)[:, :3], _boxes(r)), {}), ValueError, r"`deltas`.*\(N, 4K\)"),
    Bad("decode_boxes", lambda r: ((np.full((2, 4), np.nan), _boxes(r, 2)), {}), ValueError, "`deltas`.*NaN"),
    Bad("decode_boxes", lambda r: (("deltas", _boxes(r, 2)), {}), TypeError, "`deltas`"),
    Bad("decode_boxes", lambda r: ((_deltas(r, 3), _boxes(r, 2)), {}), ValueError, "same length"),
    Bad("decode_boxes", lambda r: ((_deltas(r), _boxes(r)), {"clamp": "4"}), TypeError, "`clamp`"),
    Bad("decode_boxes", lambda r: ((_deltas(r), _boxes(r)), {"clamp_mode": "min"}), ValueError, "`clamp_mode`"),
    Bad("decode_boxes", lambda r: ((_deltas(r), _boxes(r)), {"x2_minus_one": 1}), TypeError, "`x2_minus_one`"),
    Bad("decode_boxes_backward", lambda r: ((np.zeros((5, 8)), None), {}), TypeError, "`cache`"),
    Bad("decode_boxes_backward",
        lambda r: ((np.zeros((5, 4)),) + _backward_case(r)[0][1:], {}), ValueError, "`dboxes`.*shape"),
]

EXEMPT = {
    "DEFAULT_CLAMP": "a constant: log(1000 / 16)",
    "DecodeCache": "NamedTuple type of decode_boxes_forward's cache",
    "DecodeGrads": "NamedTuple type of decode_boxes_backward's result",
}
