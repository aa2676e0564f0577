import numpy as np

from tests.contract import Bad, Case


def _boxes(rng, n=6):
    xy = rng.uniform(-20, 80, size=(n, 2))
    wh = rng.uniform(0, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _two(rng):
    return (_boxes(rng, 5), _boxes(rng, 4))


_PAIRWISE = ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")

CASES = [Case(name, lambda r: (_two(r), {}), box_args={0: "boxes1", 1: "boxes2"}) for name in _PAIRWISE]
CASES += [Case("box_iou_paired", lambda r: ((_boxes(r, 5), _boxes(r, 5)), {}),
               box_args={0: "boxes1", 1: "boxes2"})]

BAD = []
for _name in _PAIRWISE + ("box_iou_paired",):
    BAD += [
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"convention": "keras"}), ValueError,
            "`convention`.*'keras'"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"guard": "nan_to_one"}), ValueError,
            "`guard`.*'nan_to_one'"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"plus_one": "yes"}), TypeError, "`plus_one`"),
        Bad(_name, lambda r: ((_boxes(r, 3), _boxes(r, 3)), {"half_wh": 1}), TypeError, "`half_wh`"),
        Bad(_name, lambda r: ((_boxes(r, 3), [[0, 0, 1]]), {}), ValueError, r"`boxes2`.*\(N, 4\)"),
    ]
BAD += [
    Bad("box_iou_paired", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {}), ValueError, "same length"),
    Bad("box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"out": np.empty((2, 3))}), ValueError, "`out`"),
    Bad("box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"guard": "eps_union", "eps": 0.0}), ValueError,
        "`eps`"),
    Bad("distance_box_iou", lambda r: ((_boxes(r, 3), _boxes(r, 2)), {"eps": -1.0}), ValueError, "`eps`"),
]

EXEMPT = {"IOU_GUARDS": "a constant tuple of guard names"}
