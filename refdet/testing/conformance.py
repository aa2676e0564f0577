"""Conformance checks: run your implementation of an op against refdet, inside your own tests.

    from refdet.testing import conformance

    def test_my_nms():
        conformance.check_nms(my_nms)                      # raises AssertionError with the explanation

    report = conformance.check_box_iou(my_iou, convention="detectron2", raise_on_failure=False)
    print(report)                                          # cases, agreeing, worst error, first mismatch

Every ``check_<op>(fn, ...)`` feeds ``fn`` the op's golden edge cases (empty inputs, degenerate
boxes, IoUs exactly on a threshold and one ulp past it, tied scores, exact zeros at a kink, deltas
at the decode clamp...) and then ``n_cases`` hypothesis-generated cases (strategies of
:mod:`refdet.testing.strategies`, driven by hypothesis with a fixed ``seed``: the same cases every
run), compares each result with refdet's under ``convention``, and returns a
:class:`ConformanceReport` (cases, agreeing, worst error, the first mismatch explained). With
``raise_on_failure=True`` (the default) a disagreement raises ``AssertionError`` carrying that
report; the explanation comes from refdet's comparators (:func:`refdet.testing.assert_nms_equal`,
:func:`~refdet.testing.assert_matches_equal`, :func:`~refdet.testing.assert_allclose_ulp`,
:func:`~refdet.testing.assert_anchors_equal`, :func:`~refdet.testing.assert_sample_valid`) and
names the likely cause (``>=`` instead of ``>``, tie order, +1 pixels, a missing clamp, ...).

Signatures expected from ``fn`` (NumPy arrays in; NumPy arrays, lists or torch tensors out):

=====================  =================================================================
check_nms              ``fn(boxes (N, 4), scores (N,), iou_threshold) -> keep (K,)``
check_batched_nms      ``fn(boxes, scores, idxs (N,), iou_threshold) -> keep (K,)``
check_box_iou          ``fn(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` (also generalized)
check_match            ``fn(iou (M, N)) -> matches (N,)`` (gt index, -1 negative, -2 ignored)
check_encode_decode    ``encode(boxes, anchors) -> deltas (N, 4)``,
                       ``decode(deltas, anchors) -> boxes (N, 4)``
check_anchors          ``fn(image_size, feature_sizes, strides, sizes, aspect_ratios) -> (N, 4)``
check_focal_loss       ``fn(logits, targets) -> loss`` (elementwise), ``grad(logits, targets,
                       dloss) -> dlogits``
check_relu             ``fn(x) -> y``, ``grad(x, dy) -> dx``
check_conv2d           ``fn(x, w, b, stride=, padding=, dilation=, groups=) -> y``
check_sample_balanced  ``fn(labels (N,)) -> (pos_mask, neg_mask)``
=====================  =================================================================

The checks are written one family per module, all importable from here (``CHECKS`` lists them for
``refdet verify``): :mod:`~refdet.testing.conformance_nms` (NMS),
:mod:`~refdet.testing.conformance_boxes` (IoU, matching, box coding, anchors, sampling),
:mod:`~refdet.testing.conformance_layers` (focal loss, ReLU, conv2d),
:mod:`~refdet.testing.conformance_roi` (RoI operators, FPN levels, proposals),
:mod:`~refdet.testing.conformance_yolo` and :mod:`~refdet.testing.conformance_yolo_train` (the YOLO
family); the report and the runner they share are in :mod:`~refdet.testing.conformance_core`.

Inputs keep their dtype: float32 cases check float32 behaviour (refdet's float32 mode reproduces
the framework's order of operations), float64 cases the exact answer.

The checks drive hypothesis themselves (``@given`` with a fixed seed, no shrinking, no example
database). Call them from plain test functions; inside your own ``@given`` test, hypothesis refuses
nested ``@given`` unless the outer test suppresses ``HealthCheck.nested_given`` -- or pass
``n_cases=0`` there to run the golden cases only.
"""
from __future__ import annotations

# the checks live in sibling modules, one per family; this module is the hub that lists them in CHECKS
# (the machinery they share: refdet.testing.conformance_core)
from refdet.testing.conformance_boxes import (check_anchors, check_box_iou, check_decode, check_encode,
                                              check_encode_decode, check_generalized_box_iou, check_match,
                                              check_sample_balanced)
from refdet.testing.conformance_core import (ConformanceReport, _finish, _hypothesis_cases, _np,  # noqa: F401
                                             _Runner, _short, _variant_cause)
from refdet.testing.conformance_layers import check_conv2d, check_focal_loss, check_relu
from refdet.testing.conformance_nms import check_batched_nms, check_nms
from refdet.testing.conformance_roi import (check_assign_roi_levels, check_filter_proposals, check_roi_align,
                                            check_roi_pool)

__all__ = ["ConformanceReport", "CHECKS", "check_nms", "check_batched_nms", "check_box_iou",
           "check_generalized_box_iou", "check_match", "check_encode_decode", "check_encode", "check_decode",
           "check_anchors", "check_focal_loss", "check_relu", "check_conv2d", "check_sample_balanced"]


#: op name (as used by ``refdet verify --op``) -> check function
CHECKS = {
    "nms": check_nms,
    "batched_nms": check_batched_nms,
    "box_iou": check_box_iou,
    "generalized_box_iou": check_generalized_box_iou,
    "match": check_match,
    "encode_boxes": check_encode,
    "decode_boxes": check_decode,
    "anchors": check_anchors,
    "focal_loss": check_focal_loss,
    "relu": check_relu,
    "conv2d": check_conv2d,
    "sample_balanced": check_sample_balanced,
}

__all__ += ["check_roi_align", "check_roi_pool", "check_assign_roi_levels", "check_filter_proposals"]
CHECKS.update({
    "roi_align": check_roi_align,
    "roi_pool": check_roi_pool,
    "assign_roi_levels": check_assign_roi_levels,
    "filter_proposals": check_filter_proposals,
})


# the YOLO family (issue 16): refdet.testing.conformance_yolo, importable from here
# ---------------------------------------------------------------------------------------------------

from refdet.testing.conformance_yolo import (YOLO_CHECKS, check_dfl_decode, check_distribution_focal_loss,  # noqa: E402
                                             check_make_anchors, check_quality_focal_loss, check_task_aligned_assign,
                                             check_varifocal_loss, check_yolo_decode, check_yolo_nms,
                                             check_yolov3_decode, check_yolov5_decode, check_yolox_decode)

__all__ += ["check_make_anchors", "check_dfl_decode", "check_yolo_decode", "check_yolov3_decode",
            "check_yolov5_decode", "check_yolox_decode", "check_task_aligned_assign", "check_yolo_nms",
            "check_distribution_focal_loss", "check_varifocal_loss", "check_quality_focal_loss"]
CHECKS.update(YOLO_CHECKS)

# TensorFlow's operators (issue 15): refdet.testing.conformance_tf
from refdet.testing.conformance_tf import TF_CHECKS  # noqa: E402

CHECKS.update(TF_CHECKS)
# other runtimes (issue 15): refdet.testing.conformance_runtimes (OpenCV dnn, OpenVINO)
from refdet.testing.conformance_runtimes import RUNTIME_CHECKS  # noqa: E402

CHECKS.update(RUNTIME_CHECKS)
