"""refdet: a framework-free NumPy reference implementation of object-detection internals.

The top level holds the ops users call, imported explicitly below from the module that owns each
one (``from refdet import box_iou`` is ``from refdet.iou import box_iou``). Cache and gradient
types, observers, low-level fixed-point helpers and module constants stay in their modules
(``refdet.layers.Conv2dGrads``, ``refdet.quant.MinMaxObserver``, ``refdet.matcher.LOW_QUALITY_MODES``).
Families with a namespace of their own are subpackages: ``refdet.yolo``, ``refdet.quant``,
``refdet.reference`` (the readable loops), ``refdet.testing``, ``refdet.exchange`` (optional
dependencies, imported lazily). ARCHITECTURE.md maps the modules.
"""
from __future__ import annotations

__version__ = "0.1.0"

from refdet import conventions

from refdet.boxes import (
    box_convert, box_area, clip_boxes_to_image, remove_small_boxes, boxes_inside_image,
)
from refdet.iou import (
    box_iou, box_iou_paired, box_iou_paired_forward, box_iou_paired_backward, generalized_box_iou,
    generalized_box_iou_paired, generalized_box_iou_paired_forward,
    generalized_box_iou_paired_backward, distance_box_iou, distance_box_iou_paired,
    distance_box_iou_paired_forward, distance_box_iou_paired_backward, complete_box_iou,
    complete_box_iou_paired, complete_box_iou_paired_forward, complete_box_iou_paired_backward,
)
from refdet.anchors import (
    cell_anchors, grid_anchors, faster_rcnn_anchors, octave_sizes, pyramid_anchors,
    anchors_inside_image, ssd_sizes_from_ratios, ssd_default_boxes,
)
from refdet.box_coder import (
    encode_boxes, decode_boxes, decode_boxes_forward, decode_boxes_backward,
)
from refdet.matcher import (
    MatchResult, match, match_details, ssd_match,
)
from refdet.sampler import (
    sample_balanced, sample_balanced_indices, sample_labels, sample_counts,
)
from refdet.targets import (
    RPNTargets, RetinaNetTargets, SSDTargets, rpn_targets, retinanet_targets, ssd_targets,
)
from refdet.nms import (
    nms, batched_nms, soft_nms, SoftNMSResult, onnx_non_max_suppression, descending_order,
)
from refdet.postprocess import (
    postprocess_detections, Detections, merge_multiscale_detections,
)
from refdet.layers import (
    conv2d_forward, conv2d_backward, relu_forward, relu_backward, sigmoid_forward,
    sigmoid_backward, max_pool2d_forward, max_pool2d_backward, group_norm_forward,
    group_norm_backward,
)
from refdet.resize import (
    upsample_nearest_source_index, onnx_resize_nearest_source_index, upsample_nearest_forward,
    upsample_nearest_backward,
)
from refdet.fpn import (
    fpn_init, fpn_forward, fpn_backward, fpn_explain,
)
from refdet.heads import (
    RPNHeadOutput, RetinaNetHeadOutput, SSDHeadOutput, rpn_head_init, rpn_head_forward,
    rpn_head_backward, retinanet_head_init, retinanet_head_forward, retinanet_head_backward,
    ssd_head_init, ssd_head_forward, ssd_head_backward, flatten_head_output, unflatten_head_output,
)
from refdet.losses import (
    bce_with_logits_forward, bce_with_logits_backward, softmax_cross_entropy_forward,
    softmax_cross_entropy_backward, sigmoid_focal_loss_forward, sigmoid_focal_loss_backward,
    softmax_focal_loss_forward, softmax_focal_loss_backward, smooth_l1_forward, smooth_l1_backward,
    l1_forward, l1_backward, giou_loss_forward, giou_loss_backward, diou_loss_forward,
    diou_loss_backward, ciou_loss_forward, ciou_loss_backward, rpn_loss_forward, rpn_loss_backward,
    retinanet_loss_forward, retinanet_loss_backward, multibox_loss_forward, multibox_loss_backward,
    LossTargets, RPNLoss, RetinaNetLoss, MultiBoxLoss,
)
from refdet.quant import (
    QParams, round_half_even, round_half_away, round_half_up, qparams_from_minmax, quantize,
    dequantize, QuantizedTensor, quantize_weights, QuantizedBias, quantize_bias,
    fake_quant_forward, fake_quant_backward, quantize_multiplier, requantize, conv2d_int,
    qlinear_conv, tflite_activation_range, tflite_conv2d_int8, quantize_retinanet_head,
    make_quantized_conv, run_quantized_head, run_fake_quant_head, float_head_layers, sqnr_db,
    accuracy_report, format_accuracy_report,
)
from refdet.eval import (
    average_precision, evaluate_detections, COCOResult, VOCResult,
)

from refdet.roi import (
    roi_align_forward, roi_align_backward, roi_align, onnx_roi_align, roi_pool_forward, roi_pool_backward,
    roi_pool, crop_and_resize_forward, crop_and_resize_backward, crop_and_resize, tf_normalized_boxes,
    tf_crop_and_pool_forward, tf_crop_and_pool_backward, assign_roi_levels, infer_level_scales,
    multiscale_roi_align_forward, multiscale_roi_align_backward, multiscale_roi_align,
)
from refdet.proposals import (
    Proposals, filter_proposals, select_proposals, top_k_per_level,
)
from refdet.roi_heads import (
    RoISamples, sample_rois, class_specific_targets, BoxHeadOutput, box_head_init, box_head_forward,
    box_head_backward, FastRCNNLoss, fastrcnn_loss_forward, fastrcnn_loss_backward, FastRCNNDetections,
    fastrcnn_postprocess,
)
from refdet.detector import Detector, DetectorConfig, sgd_momentum_update

# Subpackages with a namespace of their own. Importing yolo registers its convention tables, so
# refdet.conventions.describe("task_aligned_assign") works after `import refdet`.
from refdet import onnx_ops, quant, yolo, reference  # noqa: F401

__all__ = [
    "box_convert", "box_area", "clip_boxes_to_image", "remove_small_boxes", "boxes_inside_image",
    "box_iou", "box_iou_paired", "box_iou_paired_forward", "box_iou_paired_backward",
    "generalized_box_iou", "generalized_box_iou_paired", "generalized_box_iou_paired_forward",
    "generalized_box_iou_paired_backward", "distance_box_iou", "distance_box_iou_paired",
    "distance_box_iou_paired_forward", "distance_box_iou_paired_backward", "complete_box_iou",
    "complete_box_iou_paired", "complete_box_iou_paired_forward",
    "complete_box_iou_paired_backward", "cell_anchors", "grid_anchors", "faster_rcnn_anchors",
    "octave_sizes", "pyramid_anchors", "anchors_inside_image", "ssd_sizes_from_ratios",
    "ssd_default_boxes", "encode_boxes", "decode_boxes", "decode_boxes_forward",
    "decode_boxes_backward", "MatchResult", "match", "match_details", "ssd_match",
    "sample_balanced", "sample_balanced_indices", "sample_labels", "sample_counts", "RPNTargets",
    "RetinaNetTargets", "SSDTargets", "rpn_targets", "retinanet_targets", "ssd_targets", "nms",
    "batched_nms", "soft_nms", "SoftNMSResult", "onnx_non_max_suppression", "descending_order",
    "postprocess_detections", "Detections", "merge_multiscale_detections", "conv2d_forward",
    "conv2d_backward", "relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward",
    "max_pool2d_forward", "max_pool2d_backward", "group_norm_forward", "group_norm_backward",
    "upsample_nearest_source_index", "onnx_resize_nearest_source_index",
    "upsample_nearest_forward", "upsample_nearest_backward", "fpn_init", "fpn_forward",
    "fpn_backward", "fpn_explain", "RPNHeadOutput", "RetinaNetHeadOutput", "SSDHeadOutput",
    "rpn_head_init", "rpn_head_forward", "rpn_head_backward", "retinanet_head_init",
    "retinanet_head_forward", "retinanet_head_backward", "ssd_head_init", "ssd_head_forward",
    "ssd_head_backward", "flatten_head_output", "unflatten_head_output", "bce_with_logits_forward",
    "bce_with_logits_backward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward", "softmax_focal_loss_forward",
    "softmax_focal_loss_backward", "smooth_l1_forward", "smooth_l1_backward", "l1_forward",
    "l1_backward", "giou_loss_forward", "giou_loss_backward", "diou_loss_forward",
    "diou_loss_backward", "ciou_loss_forward", "ciou_loss_backward", "rpn_loss_forward",
    "rpn_loss_backward", "retinanet_loss_forward", "retinanet_loss_backward",
    "multibox_loss_forward", "multibox_loss_backward", "LossTargets", "RPNLoss", "RetinaNetLoss",
    "MultiBoxLoss", "QParams", "round_half_even", "round_half_away", "round_half_up",
    "qparams_from_minmax", "quantize", "dequantize", "QuantizedTensor", "quantize_weights",
    "QuantizedBias", "quantize_bias", "fake_quant_forward", "fake_quant_backward",
    "quantize_multiplier", "requantize", "conv2d_int", "qlinear_conv", "tflite_activation_range",
    "tflite_conv2d_int8", "quantize_retinanet_head", "make_quantized_conv", "run_quantized_head",
    "run_fake_quant_head", "float_head_layers", "sqnr_db", "accuracy_report",
    "format_accuracy_report", "average_precision", "evaluate_detections", "COCOResult",
    "VOCResult", "Detector", "DetectorConfig", "sgd_momentum_update",
    "roi_align_forward", "roi_align_backward", "roi_align", "onnx_roi_align", "roi_pool_forward",
    "roi_pool_backward", "roi_pool", "crop_and_resize_forward", "crop_and_resize_backward",
    "crop_and_resize", "tf_normalized_boxes", "tf_crop_and_pool_forward",
    "tf_crop_and_pool_backward", "assign_roi_levels", "infer_level_scales",
    "multiscale_roi_align_forward", "multiscale_roi_align_backward", "multiscale_roi_align",
    "Proposals", "filter_proposals", "select_proposals", "top_k_per_level", "RoISamples",
    "sample_rois", "class_specific_targets", "BoxHeadOutput", "box_head_init", "box_head_forward",
    "box_head_backward", "FastRCNNLoss", "fastrcnn_loss_forward", "fastrcnn_loss_backward",
    "FastRCNNDetections", "fastrcnn_postprocess",
]
