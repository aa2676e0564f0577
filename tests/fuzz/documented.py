"""What a hostile call may answer instead of raising: the explicit table of documented answers.

The runner's generic promises (only TypeError/ValueError naming the argument, no NaN for finite
inputs, thresholds outside their range refused) have exceptions where refdet reproduces a framework
that defines the answer, or where an answer is documented in the function's docstring. Each entry is
``(function, argument, variant, problem) -> reason`` with shell-style wildcards; keep it short: every
entry is a sentence of a docstring (the reason says which).
"""
from __future__ import annotations

import fnmatch
import re

TABLE = {
    # -- NaN answers a reproduced framework defines -------------------------------------------------
    ("complete_box_iou*", "boxes*", "*", "nan"):
        "torchvision's complete_box_iou computes atan(0/0) = NaN for a point box (SPEC TV10; "
        "refdet.iou.complete_box_iou docstring); the guarded profiles give finite values",
    ("ciou_loss_forward", "*_boxes", "*", "nan"):
        "torchvision's complete_box_iou_loss: the same atan(0/0) for a point box",
    ("yolo.yolov5_loss_forward", "preds", "*", "nan"):
        "YOLOv5's bbox_iou(xywh=True, CIoU=True) has no eps: a prediction of zero width and height "
        "(sigmoid underflow) gives NaN (yolov5_loss_forward docstring)",
    ("evaluate_detections", "*", "*", "nan"):
        "per-class AP is NaN for a class without (non-difficult) ground truth, as detectron2's "
        "COCOEvaluator and voc_eval report it (refdet.eval.coco / voc docstrings)",
    ("average_precision", "*", "*", "nan"):
        "the VOC mean over classes with a defined AP is NaN when none is defined (refdet.eval.voc)",
    ("accuracy_report", "*", "*", "nan"):
        "a mean over nothing (no candidate anchor, no matched detection) is NaN: 'not applicable' "
        "(accuracy_report docstring)",
    ("yolo.autoanchor_metric", "wh", "empty", "nan"):
        "YOLOv5's metric of no boxes: the mean of an empty set (NaN, as torch's mean)",
    ("yolo.anchor_fitness", "wh", "empty", "nan"):
        "YOLOv5's fitness of no boxes: the mean of an empty set (NaN, as torch's mean)",
    ("*", "min_pos_iou", "neg", "accepted"):
        "min_pos_iou = -1 gates GIoU qualities, which lie in [-1, 1] (refdet.matcher: -inf or [-1, 1])",
    ("*", "min_pos_iou", "below0", "accepted"): "the same [-1, 1] domain (GIoU qualities)",
    ("*", "min_pos_iou", "-inf", "accepted"): "-inf is 'no gate' (torchvision and detectron2's profiles)",
    ("dequantize_linear", "x_scale", "*nan", "accepted"):
        "ONNX DequantizeLinear multiplies by the scale, whatever it is: a NaN scale gives NaN (onnxruntime and "
        "onnx.reference), a NaN input answered with NaN",
    ("flatten_head_output", "x", "list", "layout"):
        "a list is a list of levels (flatten_head_output docstring), not the array as nested lists",
    ("testing.conformance.*", "fn", "nan_output", "nan"):
        "the report's worst_error is NaN when the implementation under test answered NaN "
        "(ConformanceReport: 'NaN: the implementation answered NaN')",
    ("quant.types.element_type", "*name*", "*", "unnamed"):
        "`name` is the label element_type's messages give the argument it checks (its callers pass their "
        "own argument's name): a bogus label is echoed, not named",
    ("quant.types.decode_float", "codes", "*", "nan"):
        "a NaN bit code decodes to NaN (float8e4m3fn 0x7f/0xff, e5m2 0x7d-0x7f ...: the type's own NaN encodings, "
        "refdet.quant.types module table)",
    # -- errors that keep a reproduced framework's own text ----------------------------------------
    ("match", "iou", "empty", "unnamed"):
        "empty_gt='raise' raises torchvision's Matcher error text exactly "
        "(tests/test_matcher.py::test_tv8e_against_torchvision)",
    ("ssd_match", "iou", "empty", "unnamed"):
        "the same torchvision text (SSDMatcher)",
    # -- values outside a unit interval that a framework defines ------------------------------------
    ("*focal*", "alpha", "neg", "accepted"):
        "alpha = -1 disables the weighting (torchvision sigmoid_focal_loss: 'alpha < 0: no weighting')",
    ("retinanet_loss_forward", "alpha", "neg", "accepted"): "the same torchvision rule, alpha = -1",
    ("onnx_non_max_suppression", "score_threshold", "*", "accepted"):
        "ONNX NonMaxSuppression sets no range for score_threshold: the scores are raw values",
    ("soft_nms", "score_threshold", "*", "accepted"):
        "Soft-NMS thresholds decayed raw scores, any real (soft_nms docstring)",
    ("tf_ops.*non_max_suppression", "score_threshold", "*inf", "accepted"):
        "TF's NonMaxSuppressionV3/V4/V5 and CombinedNonMaxSuppression require only a scalar score_threshold "
        "(tensorflow/core/kernels/image/non_max_suppression_op.cc): -inf keeps every box, +inf none; NaN is "
        "refused (refdet.tf_ops.nms._score_threshold)",
    ("tf_ops.*non_max_suppression", "score_threshold", "neg", "accepted"): "the same TF rule: any real",
    ("tf_ops.*non_max_suppression", "score_threshold", "below0", "accepted"): "the same TF rule: any real",
    ("tf_ops.*non_max_suppression", "score_threshold", "above1", "accepted"): "the same TF rule: any real",
    ("tf_ops.*non_max_suppression", "score_threshold", "huge", "accepted"): "the same TF rule: any real",
    ("yolo.weighted_boxes_fusion", "skip_box_thr", "*", "accepted"):
        "ZFTurbo's skip_box_thr filters raw scores, any real",
    # -- OpenCV dnn and OpenVINO: the thresholds each runtime accepts (refdet.runtimes reproduces them) --
    ("runtimes.opencv.nms_boxes", "*_threshold", "above1", "accepted"):
        "OpenCV's NMSBoxes asserts only score_threshold >= 0 and nms_threshold >= 0 (modules/imgproc/src/nms.cpp "
        "CV_Assert_N): scores are raw values, an IoU threshold >= 1 suppresses nothing (nms_boxes docstring)",
    ("runtimes.opencv.nms_boxes", "*_threshold", "huge", "accepted"): "the same OpenCV rule: any value >= 0",
    ("runtimes.opencv.soft_nms_boxes", "*_threshold", "above1", "accepted"):
        "the same OpenCV rule for softNMSBoxes: any value >= 0",
    ("runtimes.opencv.soft_nms_boxes", "*_threshold", "huge", "accepted"):
        "the same OpenCV rule for softNMSBoxes: any value >= 0",
    ("runtimes.opencv.nms_boxes_batched", "nms_threshold", "above1", "accepted"):
        "OpenCV's NMSBoxesBatched asserts only nms_threshold >= 0",
    ("runtimes.opencv.nms_boxes_batched", "nms_threshold", "huge", "accepted"):
        "OpenCV's NMSBoxesBatched asserts only nms_threshold >= 0",
    ("runtimes.opencv.nms_boxes_batched", "score_threshold", "*", "accepted"):
        "OpenCV's NMSBoxesBatched does not assert score_threshold >= 0 (cv2 answers for -0.5): any real",
    ("testing.conformance_opencv.opencv_nms_loop", "score_threshold", "*", "accepted"):
        "the readable loop serves NMSBoxes and NMSBoxesBatched: any real score threshold (NaN and inf refused)",
    ("testing.conformance_opencv.opencv_nms_loop", "nms_threshold", "above1", "accepted"):
        "OpenCV's NMSBoxes asserts only nms_threshold >= 0",
    ("testing.conformance_opencv.opencv_nms_loop", "nms_threshold", "huge", "accepted"):
        "OpenCV's NMSBoxes asserts only nms_threshold >= 0",
    ("runtimes.opencv_ssd.detection_output", "confidence_threshold", "*", "accepted"):
        "OpenCV's DetectionOutput filters the raw conf input (no softmax) with score > threshold: any real "
        "(detection_output docstring)",
    ("runtimes.opencv_ssd.detection_output", "nms_threshold", "above1", "accepted"):
        "OpenCV asserts only nms_threshold > 0 (detection_output_layer.cpp); >= 1 suppresses nothing",
    ("runtimes.opencv_ssd.detection_output", "nms_threshold", "huge", "accepted"):
        "the same OpenCV DetectionOutput rule: any nms_threshold > 0",
    ("runtimes.openvino.non_max_suppression", "*_threshold", "*", "accepted"):
        "OpenVINO NonMaxSuppression-9 takes any float iou_threshold and score_threshold (the specification "
        "sets no range; the CPU plugin compares raw scores)",
    ("testing.conformance_*", "fn", "nan_output", "nan"):
        "the report's worst_error is NaN when the implementation under test answered NaN",
    # -- the implementation under test fails: reported, not a refdet error ------------------------
    ("testing.check_gradients", "*forward*", "*", "crash"):
        "an exception the forward under test raises propagates unchanged (it is the implementation's)",
    ("testing.check_gradients", "*backward*", "*", "crash"):
        "an exception the backward under test raises propagates unchanged",
    ("testing.check_gradients", "*inputs*", "*", "unnamed"):
        "the forward under test validates its own inputs; check_gradients prefixes `forward` refused "
        "`inputs` only to TypeError/ValueError",
}

#: findings in modules another helper owns (refdet/roi_heads.py, issue 14's Faster R-CNN work in progress):
#: the suite reports them (printed, and counted in the summary) without failing; remove an entry when its
#: module is fixed, and the suite holds the fix
OPEN = {
}


def open_finding(function, argument, variant, problem):
    if "=" in variant and "," not in variant:
        variant = variant.split("=", 1)[1]
    return any(fnmatch.fnmatchcase(function, f) and fnmatch.fnmatchcase(argument, a)
               and fnmatch.fnmatchcase(variant, v) and fnmatch.fnmatchcase(problem, p) for f, a, v, p in OPEN)


#: variants the walk does not run, each with its reason (a legitimate but slow computation)
SKIP = {
    ("multiscale_roi_align*", "boxes", "*float16_big"):
        "RoIs of 60000 pixels on a 3-pixel map ask the adaptive grid for ~56M samples (torchvision's loop "
        "does the same work, ~15 s); refdet refuses only beyond 2**28 samples",
    ("roi_align*", "boxes", "*float16_big"): "the same adaptive-grid work",
}


def skipped(function, argument, variant):
    return any(fnmatch.fnmatchcase(function, f) and fnmatch.fnmatchcase(argument, a)
               and fnmatch.fnmatchcase(variant, v) for f, a, v in SKIP)


#: arguments whose valid values lie in [0, 1]: IoU and score thresholds, fractions, probabilities
UNIT_INTERVAL = r"(.*thresh.*|.*_thr|iou_thr.*|.*fraction.*|.*_iou|high|low|.*prob.*|momentum|label_smoothing|gr)"
#: (function pattern, argument) pairs in [0, 1] that the names above do not catch
UNIT_PARAMS = {("*sigmoid_focal*", "alpha"), ("*softmax_focal*", "alpha"), ("retinanet_loss_forward", "alpha")}
#: variants that must be refused for such an argument
OUT_OF_UNIT = {"above1", "below0", "nan", "inf", "-inf", "npnan", "neg", "huge"}
#: variants that no real-valued option accepts: NaN means nothing (a NaN threshold compares False)
NAN_VARIANTS = {"nan", "npnan"}


def _unit(function, p):
    return re.fullmatch(UNIT_INTERVAL, p) or any(fnmatch.fnmatchcase(function, f) and p == a
                                                 for f, a in UNIT_PARAMS)


def must_refuse(function, pnames, labels, seed_kinds=None):
    """Is a successful answer to this variant itself a finding (a value outside the domain accepted)?

    ``seed_kinds`` maps each varied argument to the kind of its valid value ("float", "int", ...).
    """
    for p, lbl in zip(pnames, labels):
        variant = lbl.split("=", 1)[1]
        if excused(function, p, variant, "accepted"):
            continue
        if _unit(function, p) and variant in OUT_OF_UNIT:
            return True
        if seed_kinds and seed_kinds.get(p) == "float" and variant in NAN_VARIANTS:
            return True
    return False


def excused(function, argument, variant, problem):
    if "," in variant and "+" in argument:      # two arguments varied: excused if either variant is
        pairs = zip(argument.split("+"), variant.split(","))
        if any(excused(function, a, v, problem) for a, v in pairs):
            return True
    if "=" in variant and "," not in variant:  # "wh=empty" -> "empty"
        variant = variant.split("=", 1)[1]
    for (f, a, v, p), _reason in TABLE.items():
        if fnmatch.fnmatchcase(function, f) and fnmatch.fnmatchcase(argument, a) \
                and fnmatch.fnmatchcase(variant, v) and fnmatch.fnmatchcase(problem, p):
            return True
    return False
