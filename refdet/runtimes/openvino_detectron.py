"""OpenVINO's ``ExperimentalDetectron*`` operators (opset 6: Detectron's Mask R-CNN layers) as its CPU
plugin runs them: PriorGridGenerator, GenerateProposalsSingleImage and DetectionOutput.

Sources (openvinotoolkit/openvino, ``src/plugins/intel_cpu/src/nodes/``):
``experimental_detectron_priorgridgenerator.cpp``,
``experimental_detectron_generate_proposals_single_image.cpp`` (``refine_anchors``, ``nms_cpu``,
``fill_output_blobs``) and ``experimental_detectron_detection_output.cpp`` (``refine_boxes``,
``JaccardOverlap``, ``nms_cf``, the per-image top-k in ``execute``). Checked against the plugin (graphs
built with ``openvino.utils.node_factory.NodeFactory("opset6")``: the Python opset modules do not
expose these operators) in ``tests/test_openvino_detection.py``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from refdet import _checks
from refdet.runtimes.openvino_proposal import _nms, _partial_sort
from refdet.tf_ops._libm import expf

__all__ = ["prior_grid_generator", "generate_proposals_single_image", "DetectronDetections",
           "detectron_detection_output"]

_F32 = np.float32
#: Detectron's bound on the log-size deltas, ``(float) log(1000. / 16.)``
_MAX_DELTA_LOG_WH = _F32(np.log(1000.0 / 16.0))
_UNIT = ("an IoU or a probability lies in [0, 1]; OpenVINO takes any float, which can only act as 0 or 1: "
         "refdet refuses it as a likely mix-up")


def _floats(x, name, ndim):
    a = _checks.as_float_array(x, name, ndim=ndim)
    return a.astype(np.float32)


def prior_grid_generator(priors: np.ndarray, feature_shape: Sequence[int], image_shape: Sequence[int], *,
                         flatten: bool = True, h: int = 0, w: int = 0, stride_x: float = 0.0,
                         stride_y: float = 0.0) -> np.ndarray:
    """OpenVINO ``ExperimentalDetectronPriorGridGenerator``: the ``A`` priors shifted to every cell centre.

    ``out[y, x, a] = priors[a] + (step_w * (x + 0.5), step_h * (y + 0.5)) * 2`` in float32, with the grid
    ``H = h or feature H``, ``W = w or feature W`` and ``step_w = stride_x or float(image W) / W`` (likewise
    ``step_h``): a zero attribute means "derive it". Cells row-major, priors fastest.

    Parameters
    ----------
    priors : ndarray, shape (A, 4)
    feature_shape : (N, C, H, W)
        The shape of the feature map input (only H and W are read).
    image_shape : (N, C, IH, IW)
        The shape of the image input (only IH and IW are read).
    flatten : bool
    h, w : int >= 0
    stride_x, stride_y : float >= 0

    Returns
    -------
    ndarray of float32, shape (FH * FW * A, 4) when ``flatten`` else (FH, FW, A, 4)
        ``FH, FW`` the feature map's (OpenVINO's shape inference), filled in the ``h x w`` grid's order;
        ``h * w`` must equal ``FH * FW`` (``ValueError`` otherwise: the plugin overflows or leaves garbage).
    """
    p = _floats(priors, "priors", 2)
    if p.shape[1] != 4:
        raise ValueError(f"`priors` must have shape (A, 4); got {p.shape}")
    fs = [_checks.check_int(v, "feature_shape", low=1) for v in _checks.check_sequence(feature_shape, "feature_shape")]
    ims = [_checks.check_int(v, "image_shape", low=1) for v in _checks.check_sequence(image_shape, "image_shape")]
    if len(fs) != 4 or len(ims) != 4:
        raise ValueError(f"`feature_shape` and `image_shape` must be 4-D (N, C, H, W) (OpenVINO "
                         f"ExperimentalDetectronPriorGridGenerator); got {fs} and {ims}")
    _checks.check_bool(flatten, "flatten")
    gh = _checks.check_int(h, "h", low=0) or fs[2]
    gw = _checks.check_int(w, "w", low=0) or fs[3]
    sx = _checks.check_positive(stride_x, "stride_x", strict=False)
    sy = _checks.check_positive(stride_y, "stride_y", strict=False)
    if gh * gw != fs[2] * fs[3]:
        raise ValueError(f"`h` x `w` ({gh} x {gw}) must have as many cells as the feature map ({fs[2]} x {fs[3]}): "
                         f"OpenVINO ExperimentalDetectronPriorGridGenerator shapes its output from the feature map "
                         f"but fills an h x w grid (more cells write past its buffer, fewer leave rows uninitialised)")
    step_w = _F32(sx) if sx else _F32(ims[3]) / _F32(gw)
    step_h = _F32(sy) if sy else _F32(ims[2]) / _F32(gh)
    _checks.check_allocation(gh * gw * len(p) * 4, 4, "prior grid", name="h` and `w", keyword=False)
    cx = step_w * (np.arange(gw, dtype=np.float32) + _F32(0.5))
    cy = step_h * (np.arange(gh, dtype=np.float32) + _F32(0.5))
    out = np.empty((gh, gw, len(p), 4), np.float32)
    out[..., 0] = p[:, 0] + cx[None, :, None]
    out[..., 1] = p[:, 1] + cy[:, None, None]
    out[..., 2] = p[:, 2] + cx[None, :, None]
    out[..., 3] = p[:, 3] + cy[:, None, None]
    return out.reshape(-1, 4) if flatten else out.reshape(fs[2], fs[3], len(p), 4)


def _std_min(a, b):
    return np.where(b < a, b, a)


def _clamp(v, hi):
    """``std::max<float>(0, std::min<float>(v, hi))``."""
    m = np.where(hi < v, hi, v)
    return np.where(_F32(0) < m, m, _F32(0)).astype(np.float32)


def generate_proposals_single_image(im_info: np.ndarray, anchors: np.ndarray, deltas: np.ndarray, scores: np.ndarray,
                                    *, min_size: float, nms_threshold: float, pre_nms_count: int,
                                    post_nms_count: int):
    """OpenVINO ``ExperimentalDetectronGenerateProposalsSingleImage`` (opset 6) on the CPU plugin.

    For every cell ``(h, w)`` and anchor ``a`` (proposal order ``(h, w, a)``), float32 (``refine_anchors``)::

        ww = x1 - x0 + 1;  ctr_x = x0 + 0.5 * ww                       (the +1 pixel convention)
        pred_ctr_x = dx * ww + ctr_x;  pred_w = exp(min(dw, log(1000 / 16))) * ww
        x0 = pred_ctr_x - 0.5 * pred_w;  x1 = pred_ctr_x + 0.5 * pred_w - 1
        x0, x1 clamped to [0, W - 1], y0, y1 to [0, H - 1]
        score = score if x1 - x0 + 1 >= min_size and y1 - y0 + 1 >= min_size else 0 (times the score)

    then the ``pre_nms_count`` best scores (``std::partial_sort`` with ``>``, ties in libstdc++'s heap order),
    greedy NMS in that order with **+0** sides (the decode uses +1, the NMS the node's
    ``coordinates_offset = 0``: Detectron's own NMS uses +1 too): a box dies when ``nms_threshold < IoU``
    (strict); IoU 0 unless the boxes touch or overlap. At most ``post_nms_count`` kept.

    Parameters
    ----------
    im_info : ndarray, shape (3,)
        ``[height, width, scale]`` (the scale is not used).
    anchors : ndarray, shape (H * W * A, 4)
        ``[x1, y1, x2, y2]`` in ``(h, w, a)`` order (:func:`prior_grid_generator`'s output).
    deltas : ndarray, shape (4 * A, H, W)
        ``(dx, dy, dw, dh)`` of anchor ``a`` in channels ``4a .. 4a + 3``.
    scores : ndarray, shape (A, H, W)
    min_size : float
    nms_threshold : float in [0, 1]
    pre_nms_count, post_nms_count : int >= 1

    Returns
    -------
    rois : ndarray of float32, shape (post_nms_count, 4)
        Zero rows past the last proposal.
    roi_scores : ndarray of float32, shape (post_nms_count,)
    count : int
        Proposals kept (refdet's addition).
    """
    info = _checks.as_float_array(im_info, "im_info", ndim=1).astype(np.float32)
    if info.shape[0] != 3:
        raise ValueError(f"`im_info` must hold [height, width, scale]; got shape {info.shape}")
    sc = _floats(scores, "scores", 3)
    A, H, W = sc.shape
    d = _floats(deltas, "deltas", 3)
    if d.shape != (4 * A, H, W):
        raise ValueError(f"`deltas` must have shape {(4 * A, H, W)} (4 * A, H, W) for `scores` {sc.shape} (OpenVINO "
                         f"ExperimentalDetectronGenerateProposalsSingleImage); got {d.shape}")
    an = _floats(anchors, "anchors", 2)
    if an.shape != (H * W * A, 4):
        raise ValueError(f"`anchors` must have shape {(H * W * A, 4)} (H * W * A, 4); got {an.shape}")
    msz = _F32(_checks.check_real(min_size, "min_size"))
    thr = _F32(_checks.check_unit_threshold(nms_threshold, "nms_threshold", source=_UNIT))
    pre = _checks.check_int(pre_nms_count, "pre_nms_count", low=1)
    post = _checks.check_int(post_nms_count, "post_nms_count", low=1)
    _checks.check_allocation(post * 5, 4, "proposals", name="post_nms_count", keyword=False)
    one, half = _F32(1), _F32(0.5)
    x0, y0, x1, y1 = an.T
    dx, dy, dw, dh = (d.reshape(A, 4, H * W)[:, k].T.ravel() for k in range(4))   # (h, w, a) order
    s = sc.reshape(A, H * W).T.ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        ww, hh = x1 - x0 + one, y1 - y0 + one
        cx, cy = x0 + half * ww, y0 + half * hh
        pcx, pcy = dx * ww + cx, dy * hh + cy
        pw = expf(_std_min(dw, _MAX_DELTA_LOG_WH)) * ww
        ph = expf(_std_min(dh, _MAX_DELTA_LOG_WH)) * hh
        nx0, ny0 = pcx - half * pw, pcy - half * ph
        nx1, ny1 = pcx + half * pw - one, pcy + half * ph - one
        img_h, img_w = info[0], info[1]
        nx0, nx1 = _clamp(nx0, img_w - one), _clamp(nx1, img_w - one)
        ny0, ny1 = _clamp(ny0, img_h - one), _clamp(ny1, img_h - one)
        ok = (msz <= nx1 - nx0 + one) & (msz <= ny1 - ny0 + one)
    s = (ok.astype(np.float32) * s).astype(np.float32)
    boxes = np.stack([nx0, ny0, nx1, ny1], axis=1).astype(np.float32)
    order = _partial_sort(s, min(len(s), pre))
    keep = order[_nms(boxes[order], thr, _F32(0), post)]
    rois = np.zeros((post, 4), np.float32)
    out_s = np.zeros(post, np.float32)
    rois[:len(keep)] = boxes[keep]
    out_s[:len(keep)] = s[keep]
    return rois, out_s, len(keep)


class DetectronDetections(NamedTuple):
    """Outputs of OpenVINO ``ExperimentalDetectronDetectionOutput``: ``boxes (D, 4)``, ``classes (D,)`` int32,
    ``scores (D,)``, each padded with zeros to ``max_detections_per_image`` rows; ``count`` the valid rows."""
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    count: int


def _jaccard_plus_one(b, size, i, idx):
    """``JaccardOverlap`` of the EDDO node: +1 intersection sides, areas from ``refine_boxes``."""
    x1, y1, x2, y2 = b[i]
    X1, Y1, X2, Y2 = b[idx].T
    apart = (X1 > x2) | (X2 < x1) | (Y1 > y2) | (Y2 < y1)
    iw = np.where(X2 < x2, X2, x2) - np.where(x1 < X1, X1, x1) + _F32(1)
    ih = np.where(Y2 < y2, Y2, y2) - np.where(y1 < Y1, Y1, y1) + _F32(1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        inter = (iw * ih).astype(np.float32)
        iou = inter / ((size[i] + size[idx]) - inter)
    return np.where(apart | (iw <= 0) | (ih <= 0), _F32(0), iou).astype(np.float32)


def detectron_detection_output(rois: np.ndarray, deltas: np.ndarray, scores: np.ndarray, im_info: np.ndarray, *,
                               score_threshold: float, nms_threshold: float, num_classes: int,
                               post_nms_count: int, max_detections_per_image: int,
                               max_delta_log_wh: float = float(np.log(1000.0 / 16.0)),
                               class_agnostic_box_regression: bool = False,
                               deltas_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> DetectronDetections:
    """OpenVINO ``ExperimentalDetectronDetectionOutput`` (opset 6) on the CPU plugin: Detectron's box head
    post-processing.

    1. **Decode** (``refine_boxes``, float32, +1 widths) every RoI with ``x2 - x1 > 0`` and ``y2 - y1 > 0``
       (others keep box 0 and score 0) for every class ``c >= 1``: ``d = delta / weight``, ``pred_w =
       exp(min(dw, max_delta_log_wh)) * w``, ``x1' = ctr + dx * w - 0.5 * pred_w``, ``x2' = ... + 0.5 * pred_w - 1``,
       then clamped at 0 from below **only** (``im_info`` is not used: no clip to the image), area
       ``(x2' - x1' + 1) * (y2' - y1' + 1)``.
    2. **Per class** ``c >= 1`` (``nms_cf``): RoIs with score ``> score_threshold`` (strict), by score
       descending, ties lower RoI first; greedy NMS dropping overlap ``> nms_threshold`` (strict; IoU with +1
       sides, 0 when apart); the first ``post_nms_count`` kept.
    3. **Per image**: when more than ``max_detections_per_image`` detections, the best of them by score
       descending, ties lower RoI (``std::partial_sort``: equal score **and** RoI in two classes come in
       libstdc++'s heap order, reproduced), in that order; otherwise class by class in NMS order.

    ``class_agnostic_box_regression`` is accepted and **ignored** by the CPU plugin (the class-``c`` deltas are
    always used); refdet does the same.

    Parameters
    ----------
    rois : ndarray, shape (N, 4)
    deltas : ndarray, shape (N, 4 * num_classes)
    scores : ndarray, shape (N, num_classes)
    im_info : ndarray, shape (1, 3)
    score_threshold, nms_threshold : float in [0, 1]
    max_delta_log_wh : float
    num_classes, post_nms_count, max_detections_per_image : int
    class_agnostic_box_regression : bool
    deltas_weights : 4 floats, nonzero

    Returns
    -------
    DetectronDetections(boxes (max_detections_per_image, 4), classes int32, scores, count)
    """
    K = _checks.check_int(num_classes, "num_classes", low=1)
    r = _floats(rois, "rois", 2)
    if r.shape[1] != 4:
        raise ValueError(f"`rois` must have shape (N, 4); got {r.shape}")
    N = len(r)
    d = _floats(deltas, "deltas", 2)
    s = _floats(scores, "scores", 2)
    if d.shape != (N, 4 * K) or s.shape != (N, K):
        raise ValueError(f"`deltas` and `scores` must have shapes {(N, 4 * K)} and {(N, K)} for `num_classes` {K} "
                         f"(OpenVINO ExperimentalDetectronDetectionOutput); got {d.shape} and {s.shape}")
    _checks.as_float_array(im_info, "im_info")
    sthr = _F32(_checks.check_unit_threshold(score_threshold, "score_threshold", source=_UNIT))
    thr = _F32(_checks.check_unit_threshold(nms_threshold, "nms_threshold", source=_UNIT))
    mdl = _F32(_checks.check_real(max_delta_log_wh, "max_delta_log_wh"))
    post = _checks.check_int(post_nms_count, "post_nms_count", low=-1)
    mx = _checks.check_int(max_detections_per_image, "max_detections_per_image", low=1)
    _checks.check_bool(class_agnostic_box_regression, "class_agnostic_box_regression")
    try:
        wts = np.asarray([_checks.check_real(v, "deltas_weights") for v in
                          _checks.check_sequence(deltas_weights, "deltas_weights")], np.float64)
    except TypeError:
        raise TypeError(f"`deltas_weights` must be 4 real numbers; got {deltas_weights!r}") from None
    if wts.shape != (4,) or not np.all(np.isfinite(wts)) or np.any(wts == 0):
        raise ValueError(f"`deltas_weights` must be 4 finite nonzero numbers (OpenVINO "
                         f"ExperimentalDetectronDetectionOutput); got {list(deltas_weights)}")
    wts = wts.astype(np.float32)
    _checks.check_allocation(mx * 6 + K * N * 6, 4, "detections", name="max_detections_per_image", keyword=False)
    one, half = _F32(1), _F32(0.5)
    x0, y0, x1, y1 = r.T
    valid = ~((x1 - x0 <= 0) | (y1 - y0 <= 0))
    ww, hh = x1 - x0 + one, y1 - y0 + one
    cx, cy = x0 + half * ww, y0 + half * hh
    dd = d.reshape(N, K, 4) / wts                                           # (N, K, 4)
    with np.errstate(over="ignore", invalid="ignore"):
        pcx, pcy = dd[..., 0] * ww[:, None] + cx[:, None], dd[..., 1] * hh[:, None] + cy[:, None]
        pw = expf(_std_min(dd[..., 2], mdl)) * ww[:, None]
        ph = expf(_std_min(dd[..., 3], mdl)) * hh[:, None]
        nb = np.stack([pcx - half * pw, pcy - half * ph, pcx + half * pw - one, pcy + half * ph - one], axis=-1)
        nb = np.where(_F32(0) < nb, nb, _F32(0)).astype(np.float32)           # std::max(0, v)
        area = (nb[..., 2] - nb[..., 0] + one) * (nb[..., 3] - nb[..., 1] + one)
    keep_mask = valid[:, None] & (np.arange(K) >= 1)[None, :]
    boxes = np.where(keep_mask[..., None], nb, _F32(0)).transpose(1, 0, 2)  # (K, N, 4)
    area = np.where(keep_mask, area, _F32(0)).T.astype(np.float32)
    sc = np.where(keep_mask, s, _F32(0)).T                                  # (K, N)
    dets = []                                                               # (score, class, roi)
    for c in range(1, K):
        cand = np.flatnonzero(sc[c] > sthr)
        cand = cand[np.lexsort((cand, -sc[c, cand].astype(np.float64)))]
        kept = []
        for i in cand:                                                      # nms_cf
            if kept and np.any(_jaccard_plus_one(boxes[c], area[c], i, np.asarray(kept)) > thr):
                continue
            kept.append(int(i))
        kept = kept if post == -1 else kept[:post]
        dets += [(sc[c, i], c, i) for i in kept]
    if len(dets) > mx:
        keys = [(float(v), -i) for v, _, i in dets]
        dets = [dets[j] for j in _partial_sort(keys, mx)]
    ob = np.zeros((mx, 4), np.float32)
    oc = np.zeros(mx, np.int32)
    os_ = np.zeros(mx, np.float32)
    for j, (v, c, i) in enumerate(dets):
        ob[j], oc[j], os_[j] = boxes[c, i], c, v
    return DetectronDetections(ob, oc, os_, len(dets))


# --------------------------------------------------------------------------------------------------
# ROIFeatureExtractor
# --------------------------------------------------------------------------------------------------

def detectron_roi_levels(rois: np.ndarray, levels: int) -> np.ndarray:
    """The pyramid level of each RoI in ``ExperimentalDetectronROIFeatureExtractor`` (``redistribute_rois``).

    ``floor(log2(sqrt(area) / 224 + 1e-6) + 2)`` clamped to ``[0, levels - 1]``, float32, with
    ``area = (x2 - x1) * (y2 - y1)`` (no +1); a RoI with ``area <= 0`` gets level ``levels``, which no
    feature map serves: its features are 0. (Detectron's ``map_rois_to_fpn_levels`` with canonical level
    4 and the lowest level 2; ``log2`` here is correctly rounded, glibc's ``log2f`` may differ by an ulp,
    which matters only for an area within an ulp of a level boundary.)

    Parameters
    ----------
    rois : ndarray, shape (N, 4)
    levels : int >= 1

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    r = _floats(rois, "rois", 2)
    if r.shape[1] != 4:
        raise ValueError(f"`rois` must have shape (N, 4); got {r.shape}")
    L = _checks.check_int(levels, "levels", low=1)
    with np.errstate(over="ignore", invalid="ignore"):
        area = (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
        pos = area > 0
        a = np.sqrt(np.where(pos, area, _F32(1))) / _F32(224)
        lg = np.log2((a + _F32(1e-6)).astype(np.float64)).astype(np.float32)
        lvl = np.floor(lg + _F32(2)).astype(np.int64)
    return np.where(pos, np.clip(lvl, 0, L - 1), L)


def _roi_align_caffe2(x, rois, P, sr, scale, aligned):
    """Caffe2's ``ROIAlignForward_cpu_kernel`` as the node has it, float32: RoI sizes clamped to >= 1 in
    both modes, samples outside ``[-1, H] x [-1, W]`` count 0, ``out = sum(w1 v1 + w2 v2 + w3 v3 + w4 v4) /
    count`` accumulated sample by sample (rows of the sub-grid outer)."""
    _, C, H, W = x.shape
    off = _F32(0.5) if aligned else _F32(0)
    sw, sh = rois[:, 0] * scale - off, rois[:, 1] * scale - off
    ew, eh = rois[:, 2] * scale - off, rois[:, 3] * scale - off
    rw = np.where(ew - sw < _F32(1), _F32(1), ew - sw)              # std::max(end - start, 1)
    rh = np.where(eh - sh < _F32(1), _F32(1), eh - sh)
    bh, bw = rh / _F32(P), rw / _F32(P)
    ghf = np.full(len(rois), sr, np.float64) if sr > 0 else np.ceil(rh / _F32(P)).astype(np.float64)
    gwf = np.full(len(rois), sr, np.float64) if sr > 0 else np.ceil(rw / _F32(P)).astype(np.float64)
    total = float(np.sum(ghf * gwf)) * C * P * P
    _checks.check_allocation(total if total < 2.0 ** 62 else 2 ** 62, 4, "RoIAlign samples x channels", keyword=False,
                             name="sampling_ratio" if sr > 0 else "rois")
    gh, gw = ghf.astype(np.int64), gwf.astype(np.int64)
    out = np.zeros((len(rois), C, P, P), np.float32)
    fm = x[0].reshape(C, H * W)
    pidx = np.arange(P, dtype=np.float32)
    for a, b in sorted(set(zip(gh.tolist(), gw.tolist()))):        # one pass per distinct sample grid
        sel = np.flatnonzero((gh == a) & (gw == b))
        acc = np.zeros((len(sel), C, P, P), np.float32)
        base_y = sh[sel, None] + pidx[None, :] * bh[sel, None]      # (R, P)
        base_x = sw[sel, None] + pidx[None, :] * bw[sel, None]
        for iy in range(a):
            yy = base_y + (_F32(iy + 0.5) * bh[sel, None]) / _F32(a)
            for ix in range(b):
                xx = base_x + (_F32(ix + 0.5) * bw[sel, None]) / _F32(b)
                y, xq = yy[:, :, None], xx[:, None, :]              # (R, P, 1), (R, 1, P)
                empty = (y < -1) | (y > _F32(H)) | (xq < -1) | (xq > _F32(W))
                y = np.where(y <= 0, _F32(0), y)
                xq = np.where(xq <= 0, _F32(0), xq)
                yl, xl = y.astype(np.int64), xq.astype(np.int64)
                ytop, xtop = yl >= H - 1, xl >= W - 1
                yl, xl = np.where(ytop, H - 1, yl), np.where(xtop, W - 1, xl)
                yh, xh = np.where(ytop, H - 1, yl + 1), np.where(xtop, W - 1, xl + 1)
                y = np.where(ytop, yl.astype(np.float32), y)
                xq = np.where(xtop, xl.astype(np.float32), xq)
                ly, lx = y - yl.astype(np.float32), xq - xl.astype(np.float32)
                hy, hx = _F32(1) - ly, _F32(1) - lx
                ws = [hy * hx, hy * lx, ly * hx, ly * lx]
                pos = [yl * W + xl, yl * W + xh, yh * W + xl, yh * W + xh]
                ws = [np.where(empty, _F32(0), np.broadcast_to(w, empty.shape)) for w in ws]
                pos = [np.where(empty, 0, np.broadcast_to(p, empty.shape)) for p in pos]
                t = None
                for w, p in zip(ws, pos):
                    term = w[:, None] * fm[:, p].transpose(1, 0, 2, 3)  # (R, C, P, P)
                    t = term if t is None else t + term
                acc = acc + t
        out[sel] = acc / (np.float32(a * b))
    return out


def detectron_roi_feature_extractor(rois: np.ndarray, features: Sequence[np.ndarray], *, output_size: int,
                                    sampling_ratio: int, pyramid_scales: Sequence[int],
                                    aligned: bool = False):
    """OpenVINO ``ExperimentalDetectronROIFeatureExtractor`` (opset 6) on the CPU plugin: FPN level assignment
    then Caffe2's RoIAlign on the chosen level.

    Each RoI goes to level :func:`detectron_roi_levels` (RoIs with zero or negative area get features 0) and
    is pooled from ``features[level]`` with ``spatial_scale = 1 / pyramid_scales[level]``: Caffe2's RoIAlign
    (``aligned`` shifts by -0.5 pixel; the RoI's width and height are then clamped to >= 1 **in both modes**,
    unlike detectron2's ``ROIAlign(aligned=True)``; ``sampling_ratio=0``: ``ceil(size / output_size)`` samples
    per bin and axis; samples outside ``[-1, H] x [-1, W]`` count 0), in float32 in the plugin's order.

    Parameters
    ----------
    rois : ndarray, shape (N, 4)
    features : sequence of L ndarrays, shape (1, C, H_l, W_l)
    output_size, sampling_ratio : int
    pyramid_scales : sequence of L int > 0
    aligned : bool

    Returns
    -------
    roi_features : ndarray of float32, shape (N, C, output_size, output_size)
    rois : ndarray of float32, shape (N, 4)
        A copy of ``rois`` (the node's second output).
    """
    r = _floats(rois, "rois", 2)
    if r.shape[1] != 4:
        raise ValueError(f"`rois` must have shape (N, 4); got {r.shape}")
    feats = [_floats(f, "features", 4) for f in _checks.check_sequence(features, "features")]
    if not feats:
        raise ValueError("`features` must hold at least one level (OpenVINO ExperimentalDetectronROIFeatureExtractor)")
    C = feats[0].shape[1]
    for f in feats:
        if f.shape[0] != 1 or f.shape[1] != C or f.shape[2] < 1 or f.shape[3] < 1:
            raise ValueError(f"`features` must be (1, C, H, W) maps with one C ({C}) and a nonempty plane (OpenVINO "
                             f"ExperimentalDetectronROIFeatureExtractor); got {[g.shape for g in feats]}")
    P = _checks.check_int(output_size, "output_size", low=1)
    sr = _checks.check_int(sampling_ratio, "sampling_ratio", low=0)
    scales = [_checks.check_int(v, "pyramid_scales", low=1) for v in _checks.check_sequence(pyramid_scales,
                                                                                            "pyramid_scales")]
    if len(scales) != len(feats):
        raise ValueError(f"`pyramid_scales` must have one value per level ({len(feats)}); got {len(scales)}")
    _checks.check_bool(aligned, "aligned")
    _checks.check_allocation(len(r) * C * P * P, 4, "RoI features", name="output_size", keyword=False)
    lvl = detectron_roi_levels(r, len(feats))
    out = np.zeros((len(r), C, P, P), np.float32)
    for i, f in enumerate(feats):
        sel = np.flatnonzero(lvl == i)
        if sel.size:
            out[sel] = _roi_align_caffe2(f, r[sel], P, sr, _F32(1) / _F32(scales[i]), bool(aligned))
    return out, r.copy()


__all__ += ["detectron_roi_levels", "detectron_roi_feature_extractor"]
