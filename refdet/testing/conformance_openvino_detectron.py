"""Conformance checks of OpenVINO's ``ExperimentalDetectron*`` operators (opset 6) as its CPU plugin runs them
(:mod:`refdet.runtimes.openvino_detectron`), registered in
:data:`refdet.testing.conformance_runtimes.RUNTIME_CHECKS` (``refdet verify openvino``). Every output is
compared bit for bit.
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish, _np

__all__ = ["check_openvino_prior_grid_generator", "check_openvino_generate_proposals_single_image",
           "check_openvino_detectron_detection_output", "check_openvino_detectron_roi_feature_extractor"]


def _below(v):
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def _ref(op):
    from refdet.runtimes import openvino_detectron as E

    if op == "prior_grid_generator":
        return lambda **c: (E.prior_grid_generator(**c),)
    if op == "generate_proposals_single_image":
        return lambda **c: E.generate_proposals_single_image(**c)[:2]
    if op == "detection_output":
        return lambda **c: E.detectron_detection_output(**c)[:3]
    return lambda **c: E.detectron_roi_feature_extractor(**c)


def _variants(op, case):
    c = dict(case)
    if op == "prior_grid_generator":
        return [("stride_x and stride_y swapped", dict(c, stride_x=c["stride_y"], stride_y=c["stride_x"])),
                ("steps derived from the image although strides are given", dict(c, stride_x=0.0, stride_y=0.0))]
    if op == "generate_proposals_single_image":
        return [("IoU equal to nms_threshold suppressed (>=); the plugin suppresses nms_threshold < IoU",
                 dict(c, nms_threshold=_below(c["nms_threshold"])))]
    if op == "detection_output":
        return [("scores equal to score_threshold kept (>=); the plugin keeps score > threshold",
                 dict(c, score_threshold=_below(c["score_threshold"]))),
                ("overlap equal to nms_threshold suppressed (>=); the plugin suppresses overlap > threshold",
                 dict(c, nms_threshold=_below(c["nms_threshold"])))]
    return [("aligned read the other way round", dict(c, aligned=not c["aligned"])),
            ("an adaptive sampling grid (sampling_ratio 0)" if c["sampling_ratio"] else "a fixed 2 x 2 sampling grid",
             dict(c, sampling_ratio=0 if c["sampling_ratio"] else 2))]


def _compare(op, fn):
    ref = _ref(op)

    def compare(case):
        exp = ref(**case)
        got = fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()})
        got = (got,) if not isinstance(got, (tuple, list)) else tuple(got)
        got = [_np(g) for g in got[:len(exp)]]
        if len(got) == len(exp) and all(g.shape == e.shape and np.array_equal(g.astype(e.dtype), e)
                                         for g, e in zip(got, exp)):
            return 0.0, None
        lines, errs = [], [0.0] if len(got) == len(exp) else [np.inf]
        for k, (g, e) in enumerate(zip(got, exp)):
            if g.shape != e.shape:
                lines.append(f"output {k}: shape {g.shape}, OpenVINO's {e.shape}")
                errs.append(np.inf)
            elif not np.array_equal(g.astype(e.dtype), e):
                errs.append(float(np.max(np.abs(g.astype(np.float64) - e))))
                lines.append(f"output {k} differs by up to {errs[-1]:.3g}")
        err = max(errs)
        for desc, alt in _variants(op, case):
            try:
                a = ref(**alt)
            except ValueError:
                continue
            if len(a) == len(got) and all(g.shape == x.shape and np.array_equal(g.astype(x.dtype), x)
                                          for g, x in zip(got, a)):
                lines.append(f"  likely cause: {desc}")
                break
        return err, "\n".join(lines)
    return compare


def _golden(op):
    f = np.float32
    if op == "prior_grid_generator":
        base = dict(priors=np.array([[-8, -8, 8, 8]], f), feature_shape=(1, 2, 2, 3), image_shape=(1, 3, 16, 24),
                    flatten=True, h=0, w=0, stride_x=0.0, stride_y=0.0)
        return [("steps from the image (8 x 8)", base), ("explicit strides", dict(base, stride_x=4.0, stride_y=2.0)),
                ("not flattened", dict(base, flatten=False)), ("a 3 x 2 grid over a 2 x 3 map", dict(base, h=3, w=2))]
    if op == "generate_proposals_single_image":
        from refdet.runtimes.openvino_detectron import prior_grid_generator

        anchors = prior_grid_generator(np.array([[-8, -8, 8, 8]], f), (1, 1, 2, 4), (1, 3, 16, 32))
        base = dict(im_info=np.array([16, 32, 1], f), anchors=anchors, deltas=np.zeros((4, 2, 4), f),
                    scores=np.arange(8, dtype=f).reshape(1, 2, 4) / 8, min_size=0.0, nms_threshold=0.5,
                    pre_nms_count=8, post_nms_count=10)
        return [("anchors 8 px apart", base), ("tied scores: the heap's order", dict(base, scores=np.full((1, 2, 4), 0.5, f))),
                ("min_size above every box", dict(base, min_size=40.0)), ("post_nms_count 2", dict(base, post_nms_count=2))]
    if op == "detection_output":
        rois = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [5, 5, 5, 9]], f)
        base = dict(rois=rois, deltas=np.zeros((4, 12), f), scores=np.array([[0.1, 0.9, 0.2], [0.1, 0.8, 0.7],
                                                                              [0.2, 0.5, 0.5], [0.0, 0.9, 0.9]], f),
                    im_info=np.array([[100, 100, 1]], f), score_threshold=0.05, nms_threshold=0.5, num_classes=3,
                    post_nms_count=100, max_detections_per_image=100, max_delta_log_wh=float(np.log(1000 / 16)),
                    class_agnostic_box_regression=False, deltas_weights=[10.0, 10.0, 5.0, 5.0])
        return [("overlapping RoIs, an empty one", base), ("max_detections_per_image 2 (a tie across classes)",
                                                          dict(base, max_detections_per_image=2)),
                ("post_nms_count 1", dict(base, post_nms_count=1)), ("scores equal to the threshold", dict(base, score_threshold=0.5))]
    feats = [np.arange(2 * 8 * 8, dtype=f).reshape(1, 2, 8, 8), np.arange(2 * 4 * 4, dtype=f).reshape(1, 2, 4, 4)]
    base = dict(rois=np.array([[0, 0, 16, 16], [0, 0, 300, 300], [4, 4, 4, 10]], f), features=feats, output_size=2,
                sampling_ratio=2, pyramid_scales=[4, 8], aligned=False)
    return [("two levels, an empty RoI", base), ("aligned", dict(base, aligned=True)),
            ("adaptive sampling", dict(base, sampling_ratio=0))]


def _check(op, name, fn, n_cases, seed, raise_on_failure, progress):
    from refdet.testing import strategies_openvino_detection as sod

    r = _Runner(name, "abs", "openvino", _compare(op, fn), progress)
    return _finish(r.run(_golden(op), sod.openvino_detectron_cases(op), n_cases, seed), raise_on_failure)


def check_openvino_prior_grid_generator(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(priors, feature_shape, image_shape, **attributes) -> grid`` against OpenVINO
    ExperimentalDetectronPriorGridGenerator (:func:`refdet.runtimes.openvino_detectron.prior_grid_generator`)."""
    return _check("prior_grid_generator", "openvino_prior_grid_generator", fn, n_cases, seed, raise_on_failure,
                  progress)


def check_openvino_generate_proposals_single_image(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(im_info, anchors, deltas, scores, **attributes) -> (rois, scores)`` against OpenVINO
    ExperimentalDetectronGenerateProposalsSingleImage
    (:func:`refdet.runtimes.openvino_detectron.generate_proposals_single_image`)."""
    return _check("generate_proposals_single_image", "openvino_generate_proposals_single_image", fn, n_cases, seed,
                  raise_on_failure, progress)


def check_openvino_detectron_detection_output(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(rois, deltas, scores, im_info, **attributes) -> (boxes, classes, scores)`` against OpenVINO
    ExperimentalDetectronDetectionOutput (:func:`refdet.runtimes.openvino_detectron.detectron_detection_output`)."""
    return _check("detection_output", "openvino_detectron_detection_output", fn, n_cases, seed, raise_on_failure,
                  progress)


def check_openvino_detectron_roi_feature_extractor(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn(rois, features, **attributes) -> (roi_features, rois)`` against OpenVINO
    ExperimentalDetectronROIFeatureExtractor
    (:func:`refdet.runtimes.openvino_detectron.detectron_roi_feature_extractor`)."""
    return _check("roi_feature_extractor", "openvino_detectron_roi_feature_extractor", fn, n_cases, seed,
                  raise_on_failure, progress)
