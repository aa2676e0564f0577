"""``refdet verify openvino``: OpenVINO's DetectionOutput and Proposal on the CPU plugin, behind the
signatures of :mod:`refdet.testing.conformance_openvino_detection` (openvino imported when called)."""
from __future__ import annotations

import numpy as np

__all__ = ["openvino_detection_output", "openvino_proposal", "openvino_detection_adapters"]


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
    }
