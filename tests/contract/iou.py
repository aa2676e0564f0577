"""Contract cases for refdet.iou: pairwise, paired, and the paired forward/backward pairs."""
import numpy as np

from refdet import iou
from tests.contract import Bad, Case


def _boxes(rng, n=6):
    xy = rng.uniform(-20, 80, size=(n, 2))
    wh = rng.uniform(0, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _two(rng):
    return (_boxes(rng, 5), _boxes(rng, 4))


def _aligned(rng):
    return (_boxes(rng, 5), _boxes(rng, 5))


_PAIRWISE = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
_PAIRED = tuple(f"{k}_paired" for k in _PAIRWISE)


def _bwd(forward_name):
    def make(rng):
        out, cache = getattr(iou, forward_name)(*_aligned(rng))
        return (rng.standard_normal(out.shape), cache), {}
    return make


CASES = [Case(name, lambda r: (_two(r), {}), box_args={0: "boxes1", 1: "boxes2"}) for name in _PAIRWISE]
for _name in _PAIRED:
    CASES.append(Case(_name, lambda r: (_aligned(r), {}), box_args={0: "boxes1", 1: "boxes2"}))
    CASES.append(Case(f"{_name}_forward", lambda r: (_aligned(r), {}), box_args={0: "boxes1", 1: "boxes2"}))
    CASES.append(Case(f"{_name}_backward", _bwd(f"{_name}_forward")))

BAD = []
for _name in _PAIRWISE + _PAIRED + tuple(f"{k}_forward" for k in _PAIRED):
    BAD += [
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"convention": "keras"}), ValueError,
            "`convention`.*'keras'"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"guard": "nan_to_one"}), ValueError,
            "`guard`.*'nan_to_one'"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"plus_one": "yes"}), TypeError, "`plus_one`"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"half_wh": 1}), TypeError, "`half_wh`"),
        Bad(_name, lambda r: ((_boxes(r, 3), [[0, 0, 1]]), {}), ValueError, r"`boxes2`.*\(N, 4\)"),
    ]
for _name in _PAIRED + tuple(f"{k}_forward" for k in _PAIRED):
    BAD.append(Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 2)), {}), ValueError, "same length"))
for _name in _PAIRED:
    BAD += [
        Bad(f"{_name}_backward", lambda r: ((np.ones(3), None), {}), TypeError, "`cache` must be the PairedIoUCache"),
        Bad(f"{_name}_backward", (lambda n: lambda r: ((np.ones(4), _bwd(f"{n}_forward")(r)[0][1]), {}))(_name),
            ValueError, r"`dvalues` must have shape \(5,\)"),
    ]
BAD += [
    Bad("box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"out": np.empty((2, 3))}), ValueError, "`out`"),
    Bad("box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"guard": "eps_union", "eps": 0.0}), ValueError,
        "`eps`"),
    Bad("box_iou_paired", lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"guard": "plus_eps", "eps": -1.0}),
        ValueError, "`eps`"),
    Bad("distance_box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"eps": -1.0}), ValueError, "`eps`"),
    Bad("generalized_box_iou_paired", lambda r: (_aligned(r), {"clamp_enclosing": 0}), TypeError,
        "`clamp_enclosing`"),
    Bad("distance_box_iou_paired", lambda r: (_aligned(r), {"centre_distance": "corners"}), ValueError,
        "`centre_distance`.*'corners'"),
    Bad("complete_box_iou", lambda r: (_two(r), {"alpha_gate": 1.5}), ValueError, "`alpha_gate`"),
    Bad("complete_box_iou_paired", lambda r: (_aligned(r), {"alpha_eps": -1e-7}), ValueError, "`alpha_eps`"),
    Bad("complete_box_iou_paired_forward", lambda r: (_aligned(r), {"clip": "yes"}), TypeError, "`clip`"),
]

EXEMPT = {"IOU_GUARDS": "a constant tuple of guard names"}
