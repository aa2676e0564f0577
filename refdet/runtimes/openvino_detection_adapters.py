"""``refdet verify openvino``: OpenVINO's DetectionOutput, Proposal and ExperimentalDetectron* operators on the
CPU plugin, behind the signatures of :mod:`refdet.testing.conformance_openvino_detection` and
:mod:`refdet.testing.conformance_openvino_detectron` (openvino imported when called)."""
from __future__ import annotations

import numpy as np

__all__ = ["openvino_detection_output", "openvino_proposal", "openvino_detection_adapters",
           "openvino_prior_grid_generator", "openvino_generate_proposals_single_image",
           "openvino_detectron_detection_output", "openvino_detectron_roi_feature_extractor"]


def _key(attrs):
    return repr(sorted((k, tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v) for k, v in attrs.items()))


def openvino_detection_output(location, confidence, priors, arm_confidence=None, arm_location=None, *, opset=8,
                              **attrs):
    """OpenVINO DetectionOutput (``opset`` 8, or 1 with ``num_classes`` derived from the shapes) on the CPU plugin."""
    import openvino.opset1 as o1
    import openvino.opset8 as o8

    from refdet.runtimes.adapters import openvino_runner

    a = dict(attrs)
    kt = a.get("keep_top_k", -1)
    a["keep_top_k"] = [int(kt)] if np.ndim(kt) == 0 else [int(v) for v in kt]
    ins = [np.asarray(location, np.float32), np.asarray(confidence, np.float32), np.asarray(priors, np.float32)]
    if arm_confidence is not None:
        ins += [np.asarray(arm_confidence, np.float32), np.asarray(arm_location, np.float32)]
    if opset == 1:
        ps = 4 if a.get("normalized", False) else 5
        a["num_classes"] = ins[1].shape[1] // (ins[2].shape[2] // ps)
    op = o1 if opset == 1 else o8

    def build(*p):
        return op.detection_output(p[0], p[1], p[2], dict(a), *p[3:])
    return openvino_runner().run(("detection_output", opset, _key(a)), build, ins)[0]


def openvino_proposal(class_probs, bbox_deltas, image_shape, **attrs):
    """OpenVINO Proposal-4 on the CPU plugin -> (rois (B * post_nms_topn, 5), probs (B * post_nms_topn,))."""
    import openvino.opset4 as o4

    from refdet.runtimes.adapters import openvino_runner

    a = dict(attrs)
    cp = np.asarray(class_probs)
    if min(cp.shape[1] // 2 * cp.shape[2] * cp.shape[3], int(a["pre_nms_topn"])) < 8:
        # OpenVINO 2026.4's CPU plugin dies with SIGSEGV there (found by hypothesis; refdet answers normally)
        raise RuntimeError("OpenVINO's CPU Proposal crashes (segmentation fault) when min(A * H * W, pre_nms_topn) < 8")
    for k in ("base_size", "pre_nms_topn", "post_nms_topn", "feat_stride", "min_size"):
        a[k] = np.uint32(a[k])            # the opset API wants unsigned integers
    for k in ("ratio", "scale"):
        a[k] = [float(v) for v in a[k]]
    ins = [np.asarray(class_probs, np.float32), np.asarray(bbox_deltas, np.float32),
           np.asarray(image_shape, np.float32)]
    out = openvino_runner().run(("proposal", _key(a)), lambda c, d, s: o4.proposal(c, d, s, dict(a)), ins)
    return out[0], out[1]


def openvino_detection_adapters():
    """The DetectionOutput / Proposal adapters in :func:`refdet.runtimes.adapters.openvino_adapters`' form."""
    return {
        "openvino_detection_output": dict(fn=openvino_detection_output),
        "openvino_proposal": dict(fn=openvino_proposal),
        "openvino_prior_grid_generator": dict(fn=openvino_prior_grid_generator),
        "openvino_generate_proposals_single_image": dict(fn=openvino_generate_proposals_single_image),
        "openvino_detectron_detection_output": dict(fn=openvino_detectron_detection_output),
        "openvino_detectron_roi_feature_extractor": dict(fn=openvino_detectron_roi_feature_extractor),
    }


def _factory_run(key, op_type, attrs, inputs, n_out=None):
    """Run an opset-6 operator the Python opset modules do not expose (built with ``NodeFactory``)."""
    from openvino.utils.node_factory import NodeFactory

    from refdet.runtimes.adapters import openvino_runner

    def build(*p):
        return NodeFactory("opset6").create(op_type, [x.output(0) for x in p], dict(attrs))
    return openvino_runner().run((key, _key(attrs)), build, inputs)


def openvino_prior_grid_generator(priors, feature_shape, image_shape, **attrs):
    """OpenVINO ExperimentalDetectronPriorGridGenerator on the CPU plugin."""
    ins = [np.asarray(priors, np.float32), np.zeros(feature_shape, np.float32), np.zeros(image_shape, np.float32)]
    a = dict(flatten=True, h=0, w=0, stride_x=0.0, stride_y=0.0)
    a.update(attrs)
    a["stride_x"], a["stride_y"] = float(a["stride_x"]), float(a["stride_y"])
    if (a["h"] or feature_shape[2]) * (a["w"] or feature_shape[3]) > feature_shape[2] * feature_shape[3]:
        raise RuntimeError("OpenVINO's CPU ExperimentalDetectronPriorGridGenerator writes past its output buffer "
                           "(heap corruption) when h * w exceeds the feature map's cells")
    return _factory_run("ed_pgg", "ExperimentalDetectronPriorGridGenerator", a, ins)[0]


def openvino_generate_proposals_single_image(im_info, anchors, deltas, scores, **attrs):
    """OpenVINO ExperimentalDetectronGenerateProposalsSingleImage on the CPU plugin -> (rois, scores)."""
    a = dict(attrs)
    a["min_size"], a["nms_threshold"] = float(a["min_size"]), float(a["nms_threshold"])
    ins = [np.asarray(v, np.float32) for v in (im_info, anchors, deltas, scores)]
    out = _factory_run("ed_gpsi", "ExperimentalDetectronGenerateProposalsSingleImage", a, ins)
    return out[0], out[1]


def openvino_detectron_detection_output(rois, deltas, scores, im_info, **attrs):
    """OpenVINO ExperimentalDetectronDetectionOutput on the CPU plugin -> (boxes, classes, scores)."""
    a = dict(attrs)
    for k in ("score_threshold", "nms_threshold", "max_delta_log_wh"):
        if k in a:
            a[k] = float(a[k])
    if "deltas_weights" in a:
        a["deltas_weights"] = [float(v) for v in a["deltas_weights"]]
    ins = [np.asarray(v, np.float32) for v in (rois, deltas, scores, im_info)]
    out = _factory_run("ed_do", "ExperimentalDetectronDetectionOutput", a, ins)
    return out[0], out[1], out[2]


def openvino_detectron_roi_feature_extractor(rois, features, **attrs):
    """OpenVINO ExperimentalDetectronROIFeatureExtractor on the CPU plugin -> (roi_features, rois)."""
    a = dict(attrs)
    a["pyramid_scales"] = [int(v) for v in a["pyramid_scales"]]
    ins = [np.asarray(rois, np.float32)] + [np.asarray(f, np.float32) for f in features]
    out = _factory_run("ed_rfe", "ExperimentalDetectronROIFeatureExtractor", a, ins)
    return out[0], out[1]
