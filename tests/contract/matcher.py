import numpy as np

from tests.contract import Bad, Case


def _iou(rng, m=3, n=12):
    q = np.round(rng.uniform(0, 1, size=(m, n)), 1)  # rounded: ties and exact thresholds occur
    return q


def _nan(rng):
    q = _iou(rng)
    q[1, 2] = np.nan
    return q


CASES = [
    Case("match", lambda r: ((_iou(r),), {})),
    Case("match", lambda r: ((_iou(r),), {"convention": "mmdet", "min_pos_iou": 0.0})),
    Case("match_details", lambda r: ((_iou(r),), {"convention": "tf"})),
    Case("ssd_match", lambda r: ((_iou(r), 0.5), {})),
    Case("ssd_match", lambda r: ((_iou(r), 0.5), {"convention": "caffe"})),
]

BAD = [
    Bad("match", lambda r: ((np.zeros((0, 5)),), {}), ValueError, "No ground-truth boxes available"),
    Bad("match", lambda r: ((_nan(r),), {}), ValueError, "`iou`.*NaN"),
    Bad("match", lambda r: ((np.zeros(5),), {}), ValueError, r"`iou` must be 2-D"),
    Bad("match", lambda r: (("iou",), {}), TypeError, "`iou`"),
    Bad("match", lambda r: ((_iou(r),), {"high": 0.3, "low": 0.7}), ValueError, "`low` must be <= `high`"),
    Bad("match", lambda r: ((_iou(r),), {"low_quality": "best"}), ValueError, "`low_quality`.*'best'"),
    Bad("match", lambda r: ((_iou(r),), {"convention": "onnx"}), ValueError, "`convention`.*'onnx'"),
    Bad("match", lambda r: ((_iou(r),), {"high": "0.7"}), TypeError, "`high`"),
    Bad("match_details", lambda r: ((_iou(r),), {"empty_gt": "skip"}), ValueError, "`empty_gt`.*'skip'"),
    Bad("ssd_match", lambda r: ((_nan(r),), {}), ValueError, "`iou`.*NaN"),
    Bad("ssd_match", lambda r: ((_iou(r), float("nan")), {}), ValueError, "`threshold`"),
    Bad("ssd_match", lambda r: ((_iou(r),), {"prematch": "hungarian"}), ValueError, "`prematch`.*'hungarian'"),
    Bad("ssd_match", lambda r: ((np.zeros((0, 4)),), {}), ValueError, "No ground-truth boxes available"),
]

EXEMPT = {
    "LOW_QUALITY_MODES": "a constant tuple of mode names",
    "EMPTY_GT_POLICIES": "a constant tuple of policy names",
    "SSD_PREMATCH_MODES": "a constant tuple of mode names",
    "MatchResult": "a NamedTuple class (returned by match_details)",
}
