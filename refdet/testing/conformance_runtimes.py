"""Conformance checks of other runtimes' operators: OpenCV dnn and OpenVINO (issue 15).

The checks live in :mod:`refdet.testing.conformance_opencv` and
:mod:`refdet.testing.conformance_openvino`; this module gathers them in ``RUNTIME_CHECKS``. Import them
from :mod:`refdet.testing.conformance` (which lists them in ``CHECKS`` for ``refdet
verify opencv`` / ``refdet verify openvino``) or from here::

    from refdet.testing import conformance_runtimes as cr
    cr.check_opencv_nms_boxes(my_nms_boxes)

Each check feeds golden edge cases and then seeded hypothesis cases (strategies of
:mod:`refdet.testing.strategies_runtimes`) to ``fn``, compares with the refdet reproduction in
:mod:`refdet.runtimes`, and explains the first mismatch by naming the variant that reproduces it
("int rects: IoU with +1 widths", "eta applied before the keep test", "top_k applied to the kept
boxes instead of the candidates", "zero-area rects with IoU 0/0 instead of 1", ...).

Signatures expected from ``fn`` (NumPy in; arrays or lists out):

check_opencv_nms_boxes
    ``fn(rects (N, 4) xywh, scores (N,), score_threshold, nms_threshold, eta, top_k) -> indices (K,)``
check_opencv_nms_boxes_batched
    ``fn(rects, scores, class_ids (N,), score_threshold, nms_threshold, eta, top_k) -> indices``
check_opencv_soft_nms_boxes
    ``fn(rects (N, 4) int, scores, score_threshold, nms_threshold, top_k, sigma, method) ->
    (indices (K,), scores (K,))`` with ``method`` "linear" or "gaussian"
check_opencv_blob_from_image
    ``fn(image (H, W[, C]), scalefactor, size (W, H) or None, mean, swap_rb, crop) -> (1, C, H', W')``
check_opencv_prior_box
    ``fn(layer_shape (H, W), image_shape (IH, IW), attrs dict) -> (2, H * W * P * 4)`` (OpenCV's
    Caffe ``PriorBox`` layer; :mod:`refdet.testing.conformance_opencv_ssd`)
check_opencv_detection_output
    ``fn(loc (B, P * L * 4), conf (B, P * C), priors (1, 2, P * 4), attrs dict) -> (B * keep_top_k, 7)``
check_openvino_nms
    ``fn(boxes (B, N, 4), scores (B, C, N), max_output_boxes_per_class, iou_threshold, score_threshold,
    soft_nms_sigma, box_encoding, sort_result_descending)`` (keywords) ``-> (selected_indices (K, 3),
    selected_scores (K, 3)[, valid_outputs])``
check_openvino_prior_box, check_openvino_prior_box_clustered
    ``fn(layer_shape (H, W), image_shape (IH, IW), attrs dict) -> (2, 4 * H * W * P)``
check_openvino_fake_quantize
    ``fn(x, input_low, input_high, output_low, output_high, levels)`` (keywords) ``-> y`` like ``x``
check_openvino_roi_align
    ``fn(features, rois (K, 4), batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
    aligned_mode)`` (keywords) ``-> (K, C, pooled_h, pooled_w)``
check_openvino_roi_pooling
    ``fn(features, rois (K, 5), output_size, spatial_scale, method)`` (keywords) ``-> (K, C, PH, PW)``
check_openvino_interpolate
    ``fn(x, sizes=, axes=, mode=, coordinate_transformation_mode=, nearest_mode=) -> y``
check_openvino_detection_output (in :mod:`refdet.testing.conformance_openvino_detection`)
    ``fn(location, confidence, priors, **attributes) -> (1, 1, R, 7)``
check_openvino_proposal (in :mod:`refdet.testing.conformance_openvino_detection`)
    ``fn(class_probs, bbox_deltas, image_shape, **attributes) -> (rois (B * post_nms_topn, 5), probs)``
the ExperimentalDetectron checks
    ``check_openvino_prior_grid_generator``, ``check_openvino_generate_proposals_single_image``,
    ``check_openvino_detectron_detection_output``, ``check_openvino_detectron_roi_feature_extractor``:
    OpenVINO's ExperimentalDetectron* operators (in :mod:`refdet.testing.conformance_openvino_detectron`)
"""
from __future__ import annotations

from refdet.testing.conformance_opencv import (  # noqa: F401  (re-exported)
    _per_class_nms, check_opencv_blob_from_image, check_opencv_nms_boxes, check_opencv_nms_boxes_batched,
    check_opencv_soft_nms_boxes, opencv_nms_loop)
from refdet.testing.conformance_opencv_ssd import (  # noqa: F401  (re-exported)
    check_opencv_detection_output, check_opencv_prior_box)
from refdet.testing.conformance_openvino import (  # noqa: F401  (re-exported)
    check_openvino_fake_quantize, check_openvino_interpolate, check_openvino_nms, check_openvino_prior_box,
    check_openvino_prior_box_clustered, check_openvino_roi_align, check_openvino_roi_pooling,
    fake_quantize_tolerance)
from refdet.testing.conformance_openvino_detection import (  # noqa: F401  (re-exported)
    check_openvino_detection_output, check_openvino_proposal)
from refdet.testing.conformance_openvino_detectron import (  # noqa: F401  (re-exported)
    check_openvino_detectron_detection_output, check_openvino_detectron_roi_feature_extractor,
    check_openvino_generate_proposals_single_image, check_openvino_prior_grid_generator)

__all__ = ["check_opencv_nms_boxes", "check_opencv_nms_boxes_batched", "check_opencv_soft_nms_boxes",
           "check_opencv_blob_from_image", "check_opencv_prior_box", "check_opencv_detection_output",
           "check_openvino_nms",
           "check_openvino_prior_box", "check_openvino_prior_box_clustered", "check_openvino_fake_quantize",
           "check_openvino_roi_align", "check_openvino_roi_pooling", "check_openvino_interpolate",
           "check_openvino_detection_output", "check_openvino_proposal", "check_openvino_prior_grid_generator",
           "check_openvino_generate_proposals_single_image", "check_openvino_detectron_detection_output",
           "check_openvino_detectron_roi_feature_extractor",
           "RUNTIME_CHECKS"]


#: op name (``refdet verify --op``) -> check function
RUNTIME_CHECKS = {
    "opencv_nms_boxes": check_opencv_nms_boxes,
    "opencv_nms_boxes_batched": check_opencv_nms_boxes_batched,
    "opencv_soft_nms_boxes": check_opencv_soft_nms_boxes,
    "opencv_blob_from_image": check_opencv_blob_from_image,
    "opencv_prior_box": check_opencv_prior_box,
    "opencv_detection_output": check_opencv_detection_output,
    "openvino_nms": check_openvino_nms,
    "openvino_prior_box": check_openvino_prior_box,
    "openvino_prior_box_clustered": check_openvino_prior_box_clustered,
    "openvino_fake_quantize": check_openvino_fake_quantize,
    "openvino_roi_align": check_openvino_roi_align,
    "openvino_roi_pooling": check_openvino_roi_pooling,
    "openvino_interpolate": check_openvino_interpolate,
    "openvino_detection_output": check_openvino_detection_output,
    "openvino_proposal": check_openvino_proposal,
    "openvino_prior_grid_generator": check_openvino_prior_grid_generator,
    "openvino_generate_proposals_single_image": check_openvino_generate_proposals_single_image,
    "openvino_detectron_detection_output": check_openvino_detectron_detection_output,
    "openvino_detectron_roi_feature_extractor": check_openvino_detectron_roi_feature_extractor,
}
