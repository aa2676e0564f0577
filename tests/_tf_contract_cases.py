"""Contract cases for refdet.tf_ops (names "tf_ops.<name>"), run by tests/test_tf_contract.py and used as
seeds by the fuzz walk (tests/fuzz/seeds.py ``tf_cases``; tests/test_hardening_tf.py checks every tf_ops
function has one). TF's kernels reproduced. Read-only inputs
are accepted and never written, results do not depend on memory layout; unsupported attribute
combinations raise a ValueError naming the attribute and TensorFlow."""
import numpy as np

import refdet.tf_ops  # noqa: F401  (makes refdet.tf_ops reachable as an attribute)
from tests.contract import Bad, Case

F = np.float32


def _boxes(r, n=12):
    xy = r.integers(0, 8, (n, 2)).astype(F)
    return np.concatenate([xy, xy + r.integers(-1, 5, (n, 2)).astype(F)], axis=1)


def _img(r, shape=(2, 5, 6, 3)):
    return r.standard_normal(shape).astype(F)


def _comb(r):
    b = (r.integers(0, 8, (2, 6, 1, 4)) / 8).astype(F)
    return (b, r.integers(0, 4, (2, 6, 3)).astype(F) / 4, 3, 5, 0.5, 0.1), {"clip_boxes": True}


def _proposals(r):
    anchors = np.concatenate([r.integers(0, 20, (3, 4, 2, 2)), r.integers(20, 40, (3, 4, 2, 2))], -1).astype(F)
    return ((r.integers(0, 4, (2, 3, 4, 2)).astype(F) / 4, r.standard_normal((2, 3, 4, 8)).astype(F) * 0.2,
             np.array([[40, 40, 1, 0, 0], [30, 35, 0.5, 0, 0]], F), anchors.reshape(3, 4, 8), 0.5, 12, 4.0, 6), {})


CASES = [
    Case("tf_ops.non_max_suppression", lambda r: ((_boxes(r), r.integers(0, 4, 12).astype(F) / 4, 8, 0.5, 0.2), {}),
         box_args={0: "boxes"}),
    Case("tf_ops.non_max_suppression", lambda r: ((_boxes(r), r.integers(0, 4, 12).astype(F) / 4, 8, 0.5, 0.0),
                                                  {"soft_nms_sigma": 0.5, "pad_to_max_output_size": True})),
    Case("tf_ops.combined_non_max_suppression", _comb),
    Case("tf_ops.tf_iou", lambda r: ((_boxes(r, 1)[0], _boxes(r)), {})),
    Case("tf_ops.resize_bilinear", lambda r: ((_img(r), (7, 4)), {"half_pixel_centers": True})),
    Case("tf_ops.resize_nearest_neighbor", lambda r: ((_img(r), (3, 9)), {"align_corners": True})),
    Case("tf_ops.resize_source_index", lambda r: ((5, 8), {"method": "nearest"})),
    Case("tf_ops.conv2d", lambda r: ((r.standard_normal((1, 5, 6, 2)), r.standard_normal((3, 2, 2, 3)), 2, "SAME"),
                                     {})),
    Case("tf_ops.conv2d_backprop", lambda r: ((r.standard_normal((1, 5, 6, 2)), r.standard_normal((3, 2, 2, 3)),
                                               r.standard_normal((1, 3, 3, 3)), 2, "SAME"), {})),
    Case("tf_ops.sigmoid_cross_entropy_with_logits", lambda r: ((r.uniform(0, 1, (4, 5)),
                                                                 r.standard_normal((4, 5)) * 5), {})),
    Case("tf_ops.sigmoid_cross_entropy_with_logits_grad", lambda r: ((r.uniform(0, 1, (4, 5)),
                                                                      r.standard_normal((4, 5)) * 5,
                                                                      r.standard_normal((4, 5))), {})),
    Case("tf_ops.fake_quant_with_min_max_vars", lambda r: ((_img(r) * 3, -1.5, 2.0), {"num_bits": 6})),
    Case("tf_ops.fake_quant_with_min_max_args", lambda r: ((_img(r) * 3, -1.5, 2.0), {"narrow_range": True})),
    Case("tf_ops.fake_quant_with_min_max_vars_per_channel",
         lambda r: ((_img(r), np.array([-1, -2, 0], F), np.array([1, 0.5, 2], F)), {})),
    Case("tf_ops.fake_quant_with_min_max_vars_gradient", lambda r: ((_img(r), _img(r) * 3, -1.5, 2.0), {})),
    Case("tf_ops.quantize_v2", lambda r: ((_img(r) * 3, -1.5, 2.0, "qint8"), {"mode": "SCALED"})),
    Case("tf_ops.quantize_v2", lambda r: ((_img(r) * 3, np.array([-1, -2, 0], F), np.array([1, 0.5, 2], F),
                                           "quint16"), {"axis": 3})),
    Case("tf_ops.nudge", lambda r: ((-1.0, 1.0, 0, 255), {})),
    Case("tf_ops.generate_bounding_box_proposals", lambda r: _proposals(r)),
]

BAD = [
    Bad("tf_ops.resize_bilinear", lambda r: ((_img(r), 4), {"align_corners": True, "half_pixel_centers": True}),
        ValueError, r"half_pixel_centers.*align_corners.*TensorFlow"),
    Bad("tf_ops.quantize_v2", lambda r: ((_img(r), -1.0, 1.0), {"round_mode": "HALF_TO_EVEN"}),
        ValueError, r"round_mode.*TensorFlow"),
    Bad("tf_ops.quantize_v2", lambda r: ((_img(r), np.zeros(3), np.ones(3)), {"mode": "MIN_FIRST", "axis": 3}),
        ValueError, r"axis.*MIN_FIRST.*TensorFlow"),
    Bad("tf_ops.conv2d", lambda r: ((_img(r), np.ones((2, 2, 3, 1)), 1, "SAME"), {"explicit_paddings": [0] * 8}),
        ValueError, r"explicit_paddings.*TensorFlow"),
    Bad("tf_ops.non_max_suppression", lambda r: ((_boxes(r), np.ones(12), 4, 1.5), {}), ValueError, "iou_threshold"),
    Bad("tf_ops.combined_non_max_suppression", lambda r: ((np.zeros((1, 2, 2, 4)), np.zeros((1, 2, 3)), 1, 1), {}),
        ValueError, "q = 1 or q = K"),
    Bad("tf_ops.generate_bounding_box_proposals",
        lambda r: ((np.zeros((1, 2, 2, 1), F), np.zeros((1, 2, 2, 4), F), np.ones((1, 5), F), np.zeros((4, 4), F)),
                   {"nms_threshold": 1.5}), ValueError, r"nms_threshold.*TensorFlow"),
]
