import numpy as np

from tests.contract import Bad, Case


def _boxes(rng, n=8):
    xy = rng.uniform(0, 40, size=(n, 2))
    wh = rng.uniform(1, 20, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _scores(rng, n=8):
    return rng.uniform(0, 1, size=n)


def _levels(rng):
    anchors = [_boxes(rng, 12), _boxes(rng, 6)]
    logits = [rng.normal(size=(12, 3)), rng.normal(size=(6, 3))]
    deltas = [rng.normal(scale=0.2, size=(12, 4)), rng.normal(scale=0.2, size=(6, 4))]
    return logits, deltas, anchors


def _dets(rng):
    return [(_boxes(rng, 5), _scores(rng, 5), rng.integers(0, 2, 5)),
            (_boxes(rng, 4) * 2, _scores(rng, 4), rng.integers(0, 2, 4))]


CASES = [
    Case("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"score_threshold": 0.2})),
    Case("merge_multiscale_detections", lambda r: ((_dets(r), [1.0, 2.0], 0.5), {})),
]

BAD = [
    Bad("postprocess_detections", lambda r: (_levels(r)[:2] + ([_boxes(r, 12)], (50, 60)), {}), ValueError,
        "one entry per level"),
    Bad("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"style": "yolo"}), ValueError, "`style`"),
    Bad("postprocess_detections",
        lambda r: (([np.zeros((12, 3))], [np.zeros((12, 5))], [_boxes(r, 12)], (50, 60)), {}),
        ValueError, r"`box_deltas\[0\]`"),
    Bad("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"coordinate_trick": "always"}),
        ValueError, "`coordinate_trick`"),
    Bad("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"convention": "keras"}),
        ValueError, "`convention`.*'keras'"),
    Bad("merge_multiscale_detections", lambda r: ((_dets(r), [1.0], 0.5), {}), ValueError, "`scales`"),
    Bad("merge_multiscale_detections", lambda r: ((_dets(r), [1.0, 0.0], 0.5), {}), ValueError, r"`scales\[1\]`"),
    Bad("merge_multiscale_detections", lambda r: ((_dets(r), [1.0, 2.0], 0.5), {"convention": "paper"}),
        ValueError, "`convention`"),
]

EXEMPT = {
    "Detections": "a NamedTuple type (the result of postprocess_detections)",
}
