import numpy as np

from tests.contract import Bad, Case


def _boxes(rng, n=8):
    xy = rng.uniform(0, 40, size=(n, 2))
    wh = rng.uniform(1, 20, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _scores(rng, n=8):
    return rng.uniform(0, 1, size=n)


CASES = [
    Case("nms", lambda r: ((_boxes(r), _scores(r), 0.3), {}), box_args={0: "boxes"}),
    Case("batched_nms", lambda r: ((_boxes(r), _scores(r), r.integers(0, 3, 8), 0.3), {}),
         box_args={0: "boxes"}),
    Case("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"method": "linear"}), box_args={0: "boxes"}),
    Case("onnx_non_max_suppression",
         lambda r: ((_boxes(r)[None], _scores(r)[None, None], 5, 0.3, 0.1), {}), box_args={0: "boxes"}),
    Case("descending_order", lambda r: ((np.round(_scores(r), 1),), {"ties": "highest_index"})),
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
    Bad("descending_order", lambda r: ((_scores(r),), {"ties": "stable"}), ValueError, "`ties`"),
    Bad("descending_order", lambda r: ((_scores(r)[None],), {}), ValueError, "`scores` must be 1-D"),
    Bad("descending_order", lambda r: (("0.5",), {}), TypeError, "`scores`"),
    Bad("batched_nms", lambda r: ((_boxes(r), _scores(r), np.zeros(8, int), 0.5), {"coordinate_trick": 1}),
        ValueError, "`coordinate_trick`"),
    Bad("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"discard": "all"}), ValueError, "`discard`"),
    Bad("soft_nms", lambda r: ((_boxes(r), _scores(r)), {"inclusive": "yes"}), TypeError, "`inclusive`"),
]

EXEMPT = {
    "SoftNMSResult": "a NamedTuple type (the result of soft_nms)",
}
