"""Hypothesis strategies for OpenVINO's DetectionOutput and Proposal (:mod:`refdet.runtimes.openvino_detection`).

Each returns a dict of keyword arguments. Values are often drawn from a coarse grid so that scores tie,
a confidence threshold equals a score, decoded boxes coincide, touch, are empty or inverted, and an
overlap equals the NMS threshold exactly (e.g. IoU 0.5 of two grid boxes).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

__all__ = ["openvino_detection_output_cases", "openvino_proposal_cases", "openvino_detectron_cases"]


def _vals(rng, grid, shape, scale=1.0):
    if grid:
        return (rng.integers(0, 5, size=shape) / 4 * scale).astype(np.float32)
    return (rng.normal(size=shape) * scale).astype(np.float32)


@st.composite
def openvino_detection_output_cases(draw, *, max_batch=2, max_priors=8, max_classes=4):
    """Arguments of :func:`refdet.runtimes.openvino_detection.detection_output` (every attribute, the 3- and
    5-input forms, Caffe and MXNet styles, normalized and pixel priors with a ``-1`` end marker)."""
    B = draw(st.integers(1, max_batch))
    P = draw(st.integers(1, max_priors))
    K = draw(st.integers(1, max_classes))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    share = draw(st.booleans())
    L = 1 if share else K
    norm = draw(st.booleans())
    venc = draw(st.booleans())
    grid = draw(st.booleans())
    ps = 4 if norm else 5
    code = draw(st.sampled_from(["caffe.PriorBoxParameter.CORNER", "caffe.PriorBoxParameter.CENTER_SIZE"]))
    loc = np.zeros((B, P * L * 4), np.float32) if draw(st.booleans()) and grid else _vals(rng, grid, (B, P * L * 4), 0.3)
    conf = _vals(rng, True, (B, P * K)) if draw(st.booleans()) else rng.random((B, P * K)).astype(np.float32)
    pri = _vals(rng, grid, (1 if draw(st.booleans()) else B, 1 if venc else 2, P * ps))
    if not grid:
        pri = np.abs(pri)
    ih, iw = (1, 1) if norm else (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    if not norm:
        pri[:, 0] *= np.float32(max(ih, iw))
        pri[:, 0, 0::5] = 0
        if P > 1 and draw(st.booleans()):
            pri[:, 0, 5 * draw(st.integers(1, P - 1))] = -1           # the end-of-priors marker
    mx = K > 1 and draw(st.integers(0, 3)) == 0
    cthr = float(draw(st.sampled_from([0.0, 0.25, 0.5])))
    if draw(st.booleans()):
        cthr = float(conf.ravel()[draw(st.integers(0, conf.size - 1))])  # a score on the threshold
    case = dict(location=loc, confidence=conf, priors=pri,
                nms_threshold=float(draw(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0]))),
                keep_top_k=int(draw(st.sampled_from([-1, 0, 1, 2, 5]))),
                top_k=int(draw(st.sampled_from([-1, 0, 1, 3]))),
                background_label_id=0 if mx else int(draw(st.sampled_from([-1, 0, 1]))),
                code_type=code, variance_encoded_in_target=venc, share_location=share, confidence_threshold=cthr,
                clip_after_nms=draw(st.booleans()), clip_before_nms=draw(st.booleans()), decrease_label_id=mx,
                normalized=norm, input_height=ih, input_width=iw)
    if draw(st.integers(0, 3)) == 0:
        case.update(arm_confidence=_vals(rng, True, (B, 2 * P)), arm_location=_vals(rng, grid, loc.shape, 0.3),
                    objectness_score=float(draw(st.sampled_from([0.0, 0.25, 0.5]))))
    if case["keep_top_k"] == 0 and case["top_k"] > 0:
        case["top_k"] = -1        # OpenVINO leaves part of that output uninitialised (documented)
    return case


@st.composite
def openvino_proposal_cases(draw, *, max_side=10):
    """Arguments of :func:`refdet.runtimes.openvino_proposal.proposal`: scores from a grid (ties, which the
    plugin's unstable sort orders by its heap), small and large deltas, both frameworks, every flag.
    ``min(A * H * W, pre_nms_topn) >= 8`` (OpenVINO 2026.4's CPU plugin crashes below)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    B = draw(st.integers(1, 2))
    ratio = draw(st.lists(st.sampled_from([0.5, 0.7, 1.0, 2.0]), min_size=1, max_size=3, unique=True))
    scale = draw(st.lists(st.sampled_from([0.5, 1.0, 2.0, 8.0]), min_size=1, max_size=2, unique=True))
    A = len(ratio) * len(scale)
    H = draw(st.integers(1, max_side))
    W = draw(st.integers(max(1, -(-8 // (A * H))), max_side + 8))
    grid = draw(st.booleans())
    cp = (rng.integers(0, 4, size=(B, 2 * A, H, W)) / 4 if grid else rng.random((B, 2 * A, H, W))).astype(np.float32)
    bd = (rng.integers(-2, 3, size=(B, 4 * A, H, W)) / 4 if grid else
          rng.normal(size=(B, 4 * A, H, W)) * 0.3).astype(np.float32)
    info = [float(draw(st.integers(8, 80))), float(draw(st.integers(8, 80))), float(draw(st.sampled_from([1.0, 0.5, 2.0])))]
    if draw(st.booleans()):
        info.append(float(draw(st.sampled_from([1.0, 1.5]))))
    return dict(class_probs=cp, bbox_deltas=bd, image_shape=np.array(info, np.float32),
                base_size=int(draw(st.sampled_from([4, 8, 15, 16]))), pre_nms_topn=int(draw(st.sampled_from([8, 20, 1000]))),
                post_nms_topn=int(draw(st.sampled_from([1, 3, 10, 300]))),
                nms_thresh=float(draw(st.sampled_from([0.3, 0.5, 0.7, 1.0]))), feat_stride=int(draw(st.sampled_from([1, 4, 16]))),
                min_size=int(draw(st.sampled_from([1, 4, 10]))), ratio=ratio, scale=scale,
                clip_before_nms=draw(st.booleans()), clip_after_nms=draw(st.booleans()), normalize=draw(st.booleans()),
                box_size_scale=float(draw(st.sampled_from([1.0, 2.0]))),
                box_coordinate_scale=float(draw(st.sampled_from([1.0, 0.5]))),
                framework=draw(st.sampled_from(["", "tensorflow"])))


@st.composite
def openvino_detectron_cases(draw, op, *, max_side=6):
    """Arguments of one :mod:`refdet.runtimes.openvino_detectron` operator (``op`` one of
    ``"prior_grid_generator"``, ``"generate_proposals_single_image"``, ``"detection_output"``,
    ``"roi_feature_extractor"``): grid values (tied scores, coinciding boxes, empty RoIs) or random ones."""
    from refdet.runtimes.openvino_detectron import prior_grid_generator

    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    grid = draw(st.booleans())
    if op == "prior_grid_generator":
        A, H, W = draw(st.integers(1, 3)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
        h, w = draw(st.sampled_from([(0, 0), (H, W), (W, H), (H * W, 1)]))
        return dict(priors=_vals(rng, grid, (A, 4), 8.0), feature_shape=(1, 2, H, W),
                    image_shape=(1, 3, draw(st.integers(1, 64)), draw(st.integers(1, 64))),
                    flatten=draw(st.booleans()), h=h, w=w, stride_x=float(draw(st.sampled_from([0.0, 4.0, 2.5]))),
                    stride_y=float(draw(st.sampled_from([0.0, 4.0, 3.3]))))
    if op == "generate_proposals_single_image":
        A, H = draw(st.integers(1, 2)), draw(st.integers(1, max_side))
        W = draw(st.integers(max(1, -(-8 // (A * H))), max_side + 8))       # >= 8 proposals (the plugin crashes below)
        base = np.array([[-8, -8, 8, 8], [-4, -12, 4, 12]], np.float32)[:A]
        anchors = prior_grid_generator(base, (1, 1, H, W), (1, 3, 8 * H, 8 * W))
        deltas = _vals(rng, grid, (4 * A, H, W), 0.5)
        if draw(st.booleans()):
            deltas[2] = 10.0                                                  # beyond log(1000 / 16): clamped
        return dict(im_info=np.array([8 * H, 8 * W, 1], np.float32), anchors=anchors, deltas=deltas,
                    scores=_vals(rng, True, (A, H, W)) if grid else rng.random((A, H, W)).astype(np.float32),
                    min_size=float(draw(st.sampled_from([0.0, 1.0, 6.0]))),
                    nms_threshold=float(draw(st.sampled_from([0.3, 0.5, 0.7, 1.0]))),
                    pre_nms_count=int(draw(st.sampled_from([8, 20, 1000]))),
                    post_nms_count=int(draw(st.sampled_from([1, 5, 50]))))
    if op == "detection_output":
        N, K = draw(st.integers(1, 8)), draw(st.integers(2, 4))
        r = (rng.integers(0, 6, size=(N, 4)) * 4 if grid else rng.random((N, 4)) * 30).astype(np.float32)
        if draw(st.booleans()):
            r = np.concatenate([np.minimum(r[:, :2], r[:, 2:]), np.maximum(r[:, :2], r[:, 2:])], axis=1)
        return dict(rois=r, deltas=_vals(rng, grid, (N, 4 * K), 1.0),
                    scores=_vals(rng, True, (N, K)) if grid else rng.random((N, K)).astype(np.float32),
                    im_info=np.array([[100, 100, 1]], np.float32),
                    score_threshold=float(draw(st.sampled_from([0.0, 0.25, 0.5]))),
                    nms_threshold=float(draw(st.sampled_from([0.3, 0.5, 0.7]))), num_classes=K,
                    post_nms_count=int(draw(st.sampled_from([1, 2, 100]))),
                    max_detections_per_image=int(draw(st.sampled_from([1, 3, 100]))),
                    max_delta_log_wh=float(draw(st.sampled_from([float(np.log(1000 / 16)), 0.5]))),
                    class_agnostic_box_regression=False,
                    deltas_weights=list(draw(st.sampled_from([(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0),
                                                              (2.0, 3.0, 0.5, 4.0)]))))
    L, C = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    feats = [rng.normal(size=(1, C, draw(st.integers(1, 10)), draw(st.integers(1, 10)))).astype(np.float32)
             for _ in range(L)]
    N = draw(st.integers(1, 6))
    r = (rng.integers(0, 20, size=(N, 4)) * 8 if grid else rng.random((N, 4)) * 400).astype(np.float32)
    if draw(st.integers(0, 3)):
        r = np.concatenate([np.minimum(r[:, :2], r[:, 2:]), np.maximum(r[:, :2], r[:, 2:])], axis=1)
    return dict(rois=r, features=feats, output_size=draw(st.integers(1, 3)), sampling_ratio=draw(st.sampled_from([0, 1, 2])),
                pyramid_scales=[4 * 2 ** i for i in range(L)], aligned=draw(st.booleans()))
