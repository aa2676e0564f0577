import numpy as np

from tests.contract import Bad, Case


def _anchors(rng, n=40):
    c = rng.uniform(0, 64, size=(n, 2))
    s = rng.choice([8.0, 16.0, 32.0], size=(n, 1))
    return np.concatenate([c - s / 2, c + s / 2], axis=1)


def _gts(rng, m=3):
    xy = rng.uniform(0, 48, size=(m, 2))
    wh = rng.uniform(4, 24, size=(m, 2))
    return np.concatenate([xy, xy + wh], axis=1)


CASES = [
    Case("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"rng": 0}), box_args={0: "anchors", 1: "gt_boxes"}),
    Case("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)),
                                   {"convention": "caffe", "rng": 1, "level": np.arange(40) % 3})),
    Case("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0, 2, 1]), 3), {}),
         box_args={0: "anchors", 1: "gt_boxes"}),
    Case("ssd_targets", lambda r: ((_anchors(r), _gts(r), np.array([1, 2, 3])), {}),
         box_args={0: "default_boxes", 1: "gt_boxes"}),
    Case("ssd_targets", lambda r: ((_anchors(r), np.zeros((0, 4)), np.zeros(0, np.int64)), {"convention": "caffe"})),
]

BAD = [
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64,)), {}), ValueError, "`image_size`"),
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"level": np.zeros(3, np.int64)}),
        ValueError, "`level` must have length 40"),
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"border_mode": "clip"}),
        ValueError, "`border_mode`.*'clip'"),
    Bad("rpn_targets", lambda r: ((_anchors(r), np.zeros((0, 4)), (64, 64)), {"empty_gt": "raise"}),
        ValueError, "No ground-truth boxes available"),
    Bad("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0, 3, 1]), 3), {}),
        ValueError, "`gt_labels` values must be <= 2"),
    Bad("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0, 1]), 3), {}),
        ValueError, "`gt_labels` must have length 3"),
    Bad("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0.0, 1.0, 1.0]), 3), {}),
        TypeError, "`gt_labels` must be an integer array"),
    Bad("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0, 1, 1]), 0), {}),
        ValueError, "`num_classes`"),
    Bad("ssd_targets", lambda r: ((_anchors(r), _gts(r), np.array([1, 2, 3])), {"convention": "detectron2"}),
        ValueError, "`convention`"),
    Bad("ssd_targets", lambda r: ((_anchors(r), _gts(r), np.array([1, 2, 3])), {"encode_kw": "caffe"}),
        TypeError, "`encode_kw`"),
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"weights": (1, 1, 0, 1)}),
        ValueError, "`weights` must be positive"),
    Bad("retinanet_targets", lambda r: ((_anchors(r), _gts(r), np.array([0, 2, 1]), 3), {"weights": "ones"}),
        TypeError, "`weights`"),
    Bad("ssd_targets", lambda r: ((_anchors(r), _gts(r), np.array([1, 2, 3])), {"empty_gt": "skip"}),
        ValueError, "`empty_gt`.*'skip'"),
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"encode_kw": {"center": "middle"}}),
        ValueError, "`center`.*'middle'"),
    Bad("rpn_targets", lambda r: ((_anchors(r), _gts(r), (64, 64)), {"convention": 3}),
        TypeError, "`convention`"),
]

EXEMPT = {
    "RPNTargets": "a NamedTuple class (returned by rpn_targets)",
    "RetinaNetTargets": "a NamedTuple class (returned by retinanet_targets)",
    "SSDTargets": "a NamedTuple class (returned by ssd_targets)",
}
