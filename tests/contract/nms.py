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
    Case("nms", lambda r: ((_boxes(r), _scores(r), 0.3), {}), box_args={0: "boxes"}),
    Case("batched_nms", lambda r: ((_boxes(r), _scores(r), r.integers(0, 3, 8), 0.3), {}),
         box_args={0: "boxes"}),
    Case("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"method": "linear"}), box_args={0: "boxes"}),
    Case("onnx_non_max_suppression",
         lambda r: ((_boxes(r)[None], _scores(r)[None, None], 5, 0.3, 0.1), {}), box_args={0: "boxes"}),
    Case("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"score_threshold": 0.2})),
    Case("merge_multiscale_detections", lambda r: ((_dets(r), [1.0, 2.0], 0.5), {})),
]

BAD = [
    Bad("nms", lambda r: ((_boxes(r), _scores(r, 7), 0.5), {}), ValueError, "`scores` must have length 8"),
    Bad("nms", lambda r: ((_boxes(r), _scores(r), "0.5"), {}), TypeError, "`iou_threshold`"),
    Bad("nms", lambda r: ((_boxes(r), _scores(r), float("nan")), {}), ValueError, "`iou_threshold`"),
    Bad("nms", lambda r: ((_boxes(r), _scores(r), 0.5), {"convention": "keras"}), ValueError,
        "`convention`.*'keras'"),
    Bad("nms", lambda r: ((_boxes(r), _scores(r), 0.5), {"ties": "random"}), ValueError, "`ties`"),
    Bad("nms", lambda r: ((_boxes(r), np.r_[np.nan, _scores(r, 7)], 0.5), {"nan_scores": "reject"}),
        ValueError, "`scores`.*NaN"),
    Bad("nms", lambda r: ((_boxes(r), _scores(r), 0.5), {"corner_order": "any", "plus_one": True}),
        ValueError, "`plus_one"),
    Bad("batched_nms", lambda r: ((_boxes(r), _scores(r), np.zeros(8), 0.5), {}), TypeError, "`idxs`"),
    Bad("batched_nms", lambda r: ((_boxes(r), _scores(r), np.zeros(7, int), 0.5), {}), ValueError, "`idxs`"),
    Bad("batched_nms", lambda r: ((_boxes(r), _scores(r), np.zeros(8, int), 0.5), {"coordinate_trick": "yes"}),
        ValueError, "`coordinate_trick`"),
    Bad("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"method": "cubic"}), ValueError, "`method`"),
    Bad("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"sigma": 0.0}), ValueError, "`sigma`"),
    Bad("soft_nms", lambda r: ((_boxes(r), np.r_[np.nan, _scores(r, 7)]), {}), ValueError, "`scores`.*NaN"),
    Bad("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"convention": "onnx"}), ValueError, "`convention`"),
    Bad("onnx_non_max_suppression", lambda r: ((_boxes(r)[None], _scores(r)[None], 5), {}), ValueError,
        "`scores` must have shape"),
    Bad("onnx_non_max_suppression", lambda r: ((_boxes(r)[None], _scores(r)[None, None], 5, 1.5), {}),
        ValueError, "`iou_threshold`"),
    Bad("onnx_non_max_suppression", lambda r: ((_boxes(r)[None], _scores(r)[None, None], 5.0), {}),
        TypeError, "`max_output_boxes_per_class`"),
    Bad("onnx_non_max_suppression",
        lambda r: ((_boxes(r)[None], _scores(r)[None, None], 5), {"center_point_box": 2}),
        ValueError, "`center_point_box`"),
    Bad("postprocess_detections", lambda r: (_levels(r)[:2] + ([_boxes(r, 12)], (50, 60)), {}), ValueError,
        "one entry per level"),
    Bad("postprocess_detections", lambda r: (_levels(r) + ((50, 60),), {"style": "yolo"}), ValueError, "`style`"),
    Bad("postprocess_detections",
        lambda r: (([np.zeros((12, 3))], [np.zeros((12, 5))], [_boxes(r, 12)], (50, 60)), {}),
        ValueError, r"`box_deltas\[0\]`"),
    Bad("merge_multiscale_detections", lambda r: ((_dets(r), [1.0], 0.5), {}), ValueError, "`scales`"),
    Bad("merge_multiscale_detections", lambda r: ((_dets(r), [1.0, 0.0], 0.5), {}), ValueError, r"`scales\[1\]`"),
]

EXEMPT = {
    "SoftNMSResult": "a NamedTuple type (the result of soft_nms)",
    "Detections": "a NamedTuple type (the result of postprocess_detections)",
}
