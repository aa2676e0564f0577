"""OpenVINO's ``DetectionOutput`` (opset 8, and opset 1, which the CPU plugin converts to opset 8) as its
CPU plugin runs it: SSD's / RefineDet's decode, per-class NMS and global top-k. Proposal is in
:mod:`refdet.runtimes.openvino_proposal`, the ExperimentalDetectron* operators in
:mod:`refdet.runtimes.openvino_detectron`.

The function takes OpenVINO's inputs in OpenVINO's layouts, its attributes under their OpenVINO names as
keywords, and returns what ``openvino.Core().compile_model(model, "CPU")`` returns, in float32 (the
plugin's only precision for this node), bit for bit (``tests/test_openvino_detection.py``,
:mod:`refdet.testing.conformance_openvino_detection`).

Source (openvinotoolkit/openvino): ``src/plugins/intel_cpu/src/nodes/detection_output.cpp``; the
specification ``docs/articles_en/documentation/openvino-ir-format/operation-sets/operation-specs/detection/``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from refdet import _checks
from refdet.tf_ops._libm import expf

__all__ = ["DETECTION_OUTPUT_CODE_TYPES", "detection_output", "detection_output_rows"]

_F32 = np.float32
_UNIT = ("an overlap or a softmax score lies in [0, 1]; OpenVINO takes any float, which can only act as 0 or 1: "
         "refdet refuses it as a likely mix-up")

#: ``code_type`` values the CPU plugin accepts (compared case-insensitively); Caffe's CORNER_SIZE is refused
DETECTION_OUTPUT_CODE_TYPES = ("caffe.PriorBoxParameter.CORNER", "caffe.PriorBoxParameter.CENTER_SIZE")


def _std_min(a, b):
    """``std::min(a, b)``: ``b < a ? b : a`` (elementwise, float32)."""
    return np.where(b < a, b, a)


def _std_max(a, b):
    """``std::max(a, b)``: ``a < b ? b : a``."""
    return np.where(a < b, b, a)


def _clip01(v):
    """``std::max(0.0f, std::min(1.0f, v))`` (a NaN becomes 1, -0.0 becomes +0.0, as in C++)."""
    return _std_max(_F32(0), _std_min(_F32(1), v)).astype(np.float32)


def _decode(prior, loc, var, code_type, normalized, img_h, img_w, clip):
    """Decode ``loc`` (M, 4) against ``prior`` (M, 4) ``[xmin, ymin, xmax, ymax]`` with ``var`` (M, 4) or None
    (variance encoded in target), float32 in ``DetectionOutput::decodeBBoxes``' order of operations.

    Returns (boxes (M, 4), sizes (M,)): ``size = (xmax - xmin) * (ymax - ymin)``, negative for an inverted box.
    """
    px1, py1, px2, py2 = (prior[:, k].astype(np.float32) for k in range(4))
    if not normalized:
        w, h = _F32(img_w), _F32(img_h)
        px1, py1, px2, py2 = px1 / w, py1 / h, px2 / w, py2 / h
    l0, l1, l2, l3 = (loc[:, k] for k in range(4))
    if code_type == "corner":
        if var is None:
            out = (px1 + l0, py1 + l1, px2 + l2, py2 + l3)
        else:
            out = (px1 + var[:, 0] * l0, py1 + var[:, 1] * l1, px2 + var[:, 2] * l2, py2 + var[:, 3] * l3)
    else:
        two = _F32(2)
        pw, ph = px2 - px1, py2 - py1
        pcx, pcy = (px1 + px2) / two, (py1 + py2) / two
        with np.errstate(over="ignore", invalid="ignore"):
            if var is None:
                cx, cy = l0 * pw + pcx, l1 * ph + pcy
                ew, eh = l2, l3
            else:
                cx, cy = var[:, 0] * l0 * pw + pcx, var[:, 1] * l1 * ph + pcy
                ew, eh = var[:, 2] * l2, var[:, 3] * l3
            bw = expf(ew) * pw                                  # std::exp(float): glibc's expf (not correctly
            bh = expf(eh) * ph                                  # rounded: refdet.tf_ops._libm)
            out = (cx - bw / two, cy - bh / two, cx + bw / two, cy + bh / two)
    boxes = np.stack([np.asarray(v, np.float32) for v in out], axis=1)
    if clip:
        boxes = _clip01(boxes)
    with np.errstate(over="ignore", invalid="ignore"):
        sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes, sizes.astype(np.float32)


def _jaccard(boxes, sizes, i, idx):
    """``JaccardOverlap(i, idx)`` of the CPU plugin: 0 when the boxes are apart (``xmin2 > xmax1`` etc.) or
    the intersection has a side ``<= 0``; else ``inter / (size_i + size_j - inter)`` (float32)."""
    x1, y1, x2, y2 = boxes[i]
    X1, Y1, X2, Y2 = boxes[idx].T
    apart = (X1 > x2) | (X2 < x1) | (Y1 > y2) | (Y2 < y1)
    iw = _std_min(x2, X2) - _std_max(x1, X1)
    ih = _std_min(y2, Y2) - _std_max(y1, Y1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        inter = (iw * ih).astype(np.float32)
        iou = inter / ((sizes[i] + sizes[idx]) - inter)
    return np.where(apart | (iw <= 0) | (ih <= 0), _F32(0), iou).astype(np.float32)


def _top(conf, cand, k):
    """``partial_sort_copy`` with ``ConfidenceComparatorDO``: score descending, ties lower index first."""
    order = np.lexsort((cand, -conf[cand].astype(np.float64)))
    return cand[order[:k]]


def _greedy(boxes, sizes, order, thr):
    """``NMSCF``: visit ``order``; keep a box unless its overlap with a kept box is ``> thr`` (strict)."""
    alive = np.ones(len(order), bool)
    keep = []
    for p in range(len(order)):
        if not alive[p]:
            continue
        keep.append(order[p])
        rest = np.flatnonzero(alive[p + 1:]) + p + 1
        if rest.size:
            alive[rest] &= ~(_jaccard(boxes, sizes, order[p], order[rest]) > thr)
    return np.asarray(keep, np.int64)


def _code_type(code_type):
    if not isinstance(code_type, str):
        raise TypeError(f"`code_type` must be a str; got {type(code_type).__name__}")
    names = {c.lower(): c.rsplit(".", 1)[1].lower() for c in DETECTION_OUTPUT_CODE_TYPES}
    short = {"corner": "corner", "center_size": "center_size"}
    got = names.get(code_type.lower(), short.get(code_type.lower()))
    if got is None:
        raise ValueError(f"`code_type` must be one of {DETECTION_OUTPUT_CODE_TYPES} (OpenVINO DetectionOutput's CPU "
                         f"plugin refuses anything else, e.g. caffe.PriorBoxParameter.CORNER_SIZE); got {code_type!r}")
    return got


def _as_f32(x, name, ndim):
    a = _checks.as_array(x, name)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError(f"`{name}` must be a real array; got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"`{name}` must be {ndim}-D (OpenVINO DetectionOutput); got shape {a.shape}")
    a = a.astype(np.float32)
    _checks.check_finite(a, name)
    return a


def detection_output(location: np.ndarray, confidence: np.ndarray, priors: np.ndarray, *,
                     nms_threshold: float, keep_top_k: Union[int, Sequence[int]] = -1, top_k: int = -1,
                     background_label_id: int = 0, code_type: str = "caffe.PriorBoxParameter.CORNER",
                     variance_encoded_in_target: bool = False, share_location: bool = True,
                     confidence_threshold: float = 0.0, clip_after_nms: bool = False, clip_before_nms: bool = False,
                     decrease_label_id: bool = False, normalized: bool = False, input_height: int = 1,
                     input_width: int = 1, objectness_score: float = 0.0, arm_confidence: Optional[np.ndarray] = None,
                     arm_location: Optional[np.ndarray] = None) -> np.ndarray:
    """OpenVINO ``DetectionOutput`` (opset 8; opset 1 is the same plus ``num_classes``) on the CPU plugin:
    SSD's decode, per-class NMS and global top-k, in float32.

    Per image:

    1. **Priors**: ``priors[n]`` flattened holds ``P`` priors of ``prior_box_size`` values (4
       ``[xmin, ymin, xmax, ymax]`` when ``normalized``, else 5 ``[image_id, xmin, ymin, xmax, ymax]``),
       then (unless ``variance_encoded_in_target``) the variances, read at ``P * prior_box_size + 4 * p``.
       Un-normalized priors are divided by ``input_width`` / ``input_height`` and end at the first
       prior whose ``image_id`` is ``-1`` (the later ones are ignored). A priors batch of 1 serves every
       image; image ``n``'s priors start at ``n * P * prior_box_size`` (times 2 with variances).
    2. **Decode** (float32, ``decodeBBoxes``): ``CORNER``: ``prior + var * loc``; ``CENTER_SIZE``:
       ``cx = var0 * loc0 * pw + pcx``, ``w = exp(var2 * loc2) * pw``, corners ``cx -+ w / 2`` (``pcx =
       (x1 + x2) / 2``). ``clip_before_nms`` clamps to [0, 1]. With ``arm_confidence`` / ``arm_location``
       (RefineDet's 5-input form) the priors are first decoded with ``arm_location`` and the result is
       decoded again with ``location`` (the second decode divides by the image size again when not
       ``normalized``, and clips again: both as the plugin does).
    3. **Scores**: ``confidence[n, p, c]``; with ``arm_confidence``, a prior whose
       ``arm_confidence[n, p, 1] < objectness_score`` gets 1 for ``background_label_id`` and 0 otherwise.
    4. **Per class** (``decrease_label_id=False``, Caffe): for every ``c != background_label_id``, the
       priors with score ``> confidence_threshold`` (**strict**), the ``top_k`` best (``-1``: all) by score
       descending, ties lower prior index first, then greedy NMS in that order: a box is dropped when its
       overlap with a kept box is ``> nms_threshold`` (**strict**). Overlap (``JaccardOverlap``): 0 when the
       boxes are apart or the intersection has a side ``<= 0``, else ``inter / (size1 + size2 - inter)``
       with ``size = (xmax - xmin) * (ymax - ymin)`` of the decoded boxes (negative for an inverted box).
       **MXNet** (``decrease_label_id=True``, needs ``background_label_id=0``): each prior votes for its best
       class ``c >= 1`` among those with score ``>= confidence_threshold`` (**inclusive**) and ``> -1``
       (ties: the lower class); the ``top_k`` best (prior, class) pairs of the image (score descending, ties
       lower ``c * P + p``) go through NMS within their class; labels are reported as ``c - 1``.
    5. **keep_top_k**: when ``keep_top_k[0] > -1`` and the image has more detections, the best
       ``keep_top_k[0]`` over all classes, score descending, ties lower prior index. Two detections of
       different classes with the same score **and** prior are in no defined order (``std::sort`` of a list
       gathered in parallel): at the cut refdet keeps the lower class, the plugin either one.
    6. **Output** rows ``[image, label, score, xmin, ymin, xmax, ymax]``, images in order, classes ascending,
       then score descending, ties lower prior; ``clip_after_nms`` clamps the corners to [0, 1]. The row
       after the last detection has image ``-1`` (absent when the output is full); the other rows are 0.

    Parameters
    ----------
    location : ndarray, shape (B, P * L * 4)
        ``[n, p, l, 4]`` box deltas, ``L = 1`` when ``share_location`` else ``K``.
    confidence : ndarray, shape (B, P * K)
        ``[n, p, c]`` class scores (already softmaxed); ``K`` classes, background included.
    priors : ndarray, shape (1 or B, 1 or 2, P * prior_box_size)
    nms_threshold : float in [0, 1]
    keep_top_k : int or sequence of int
        Only the first value is used (``keep_top_k[0]``, as the plugin does). ``-1``: keep all.
    top_k : int >= -1
        Candidates per class (Caffe) or per image (MXNet) before NMS; ``-1``: all.
    background_label_id : int
        The class skipped (``-1``: none).
    code_type : str
        ``"caffe.PriorBoxParameter.CORNER"`` or ``"caffe.PriorBoxParameter.CENTER_SIZE"`` (any case; the short
        ``"corner"`` / ``"center_size"`` too).
    variance_encoded_in_target, share_location, clip_after_nms, clip_before_nms, decrease_label_id, normalized : bool
    confidence_threshold : float in [0, 1]
        (OpenVINO accepts any float; outside [0, 1] it can only act as 0 or 1: refdet refuses it.)
    input_height, input_width : int
        The image size dividing un-normalized priors.
    objectness_score : float
        With ``arm_confidence``: priors whose objectness is below it count as background.
    arm_confidence : ndarray, shape (B, P * 2), optional
    arm_location : ndarray, shape of ``location``, optional
        Both or neither.

    Returns
    -------
    ndarray of float32, shape (1, 1, R, 7)
        ``R = B * keep_top_k[0]`` when ``keep_top_k[0] > 0``, else ``B * top_k * K`` when ``top_k > 0``, else
        ``B * K * P`` (OpenVINO's shape inference). Use :func:`detection_output_rows` for the valid rows.

    Notes
    -----
    Source: ``src/plugins/intel_cpu/src/nodes/detection_output.cpp`` (``decodeBBoxes``, ``confFilterCF``,
    ``confFilterMX``, ``topk``, ``JaccardOverlap``, ``NMSCF``, ``NMSMX``, the keep_top_k block of
    ``execute``, ``generateOutput``). Large inputs (``K * P * 8`` bytes beyond the L3 cache, with
    ``confidence_threshold > 0.03``) take the plugin's "sparsity" path: the same thresholds and orders, so
    the same result. When ``keep_top_k[0] == 0`` and ``top_k > 0`` the plugin zeroes only the first
    ``B * top_k * K`` rows of its ``B * K * P``-row output (the rest are left uninitialised; refdet gives 0).
    Where Caffe (SSD's ``DetectionOutputLayer``) differs: its ``ApplyNMSFast`` keeps ``overlap <= threshold``
    (the same strict suppression) but can shrink the threshold (``eta``), and its ``BBoxSize`` is 0 for an
    inverted box where the plugin uses the (negative) product ``(xmax - xmin) * (ymax - ymin)``.

    Examples
    --------
    One prior, one foreground class (background 0), CORNER code with unit variances: the box is the
    prior plus the deltas.

    >>> pri = np.array([[[0.1, 0.1, 0.5, 0.5], [1, 1, 1, 1]]], np.float32).reshape(1, 2, 4)
    >>> out = detection_output(np.array([[0.1, 0, 0, 0.1]], np.float32), np.array([[0.2, 0.8]], np.float32),
    ...                        pri, nms_threshold=0.5, normalized=True)
    >>> detection_output_rows(out)
    array([[0. , 1. , 0.8, 0.2, 0.1, 0.5, 0.6]], dtype=float32)
    """
    loc = _as_f32(location, "location", 2)
    conf = _as_f32(confidence, "confidence", 2)
    pri = _as_f32(priors, "priors", 3)
    thr = _F32(_checks.check_unit_threshold(nms_threshold, "nms_threshold", source=_UNIT))
    cthr = _F32(_checks.check_unit_threshold(confidence_threshold, "confidence_threshold", source=_UNIT))
    obj = _F32(_checks.check_real(objectness_score, "objectness_score"))
    ktk = keep_top_k if np.ndim(keep_top_k) == 0 else (list(keep_top_k) or [None])[0]
    ktk = _checks.check_int(ktk, "keep_top_k", low=-1)
    tk = _checks.check_int(top_k, "top_k", low=-1)
    bg = _checks.check_int(background_label_id, "background_label_id")
    ct = _code_type(code_type)
    flags = {}
    for name, v in (("variance_encoded_in_target", variance_encoded_in_target), ("share_location", share_location),
                    ("clip_after_nms", clip_after_nms), ("clip_before_nms", clip_before_nms),
                    ("decrease_label_id", decrease_label_id), ("normalized", normalized)):
        _checks.check_bool(v, name)
        flags[name] = bool(v)
    ih = _checks.check_int(input_height, "input_height", low=1)
    iw = _checks.check_int(input_width, "input_width", low=1)
    if flags["decrease_label_id"] and bg != 0:
        raise ValueError(f"`decrease_label_id` needs `background_label_id` 0 (OpenVINO DetectionOutput cannot use "
                         f"decrease_label_id and background_label_id together); got background_label_id {bg}")
    if (arm_confidence is None) != (arm_location is None):
        raise ValueError("`arm_confidence` and `arm_location` go together (OpenVINO DetectionOutput has 3 or 5 inputs)")
    B = loc.shape[0]
    ps = 4 if flags["normalized"] else 5
    if pri.shape[2] % ps or pri.shape[2] == 0:
        raise ValueError(f"`priors` last dimension must be a positive multiple of {ps} (prior_box_size; normalized="
                         f"{flags['normalized']}, OpenVINO DetectionOutput); got {pri.shape}")
    P = pri.shape[2] // ps
    need_ch = 1 if flags["variance_encoded_in_target"] else 2
    if pri.shape[0] not in (1, B) or pri.shape[1] != need_ch:
        raise ValueError(f"`priors` must have shape (1 or {B}, {need_ch}, P * {ps}) "
                         f"(OpenVINO DetectionOutput, variance_encoded_in_target={flags['variance_encoded_in_target']})"
                         f"; got {pri.shape}")
    if conf.shape[0] != B or conf.shape[1] % P or conf.shape[1] == 0:
        raise ValueError(f"`confidence` must have shape ({B}, P * K) with P = {P} priors; got {conf.shape}")
    K = conf.shape[1] // P
    L = 1 if flags["share_location"] else K
    if loc.shape[1] != P * L * 4:
        raise ValueError(f"`location` must have shape ({B}, {P * L * 4}) (P * {'1' if L == 1 else 'K'} * 4, "
                         f"share_location={flags['share_location']}); got {loc.shape}")
    arm = arm_confidence is not None
    if arm:
        aconf = _as_f32(arm_confidence, "arm_confidence", 2)
        aloc = _as_f32(arm_location, "arm_location", 2)
        if aconf.shape != (B, 2 * P):
            raise ValueError(f"`arm_confidence` must have shape ({B}, {2 * P}); got {aconf.shape}")
        if aloc.shape != loc.shape:
            raise ValueError(f"`arm_location` must have the shape of `location` {loc.shape}; got {aloc.shape}")
    R = B * ktk if ktk > 0 else (B * tk * K if tk > 0 else B * K * P)
    _checks.check_allocation(R * 7, 4, "DetectionOutput rows", keyword=False,
                             name="keep_top_k" if ktk > 0 else ("top_k" if tk > 0 else "priors"))
    flat = pri.reshape(pri.shape[0], -1).ravel()
    stride = P * ps * need_ch
    mx = flags["decrease_label_id"]
    rows = []
    for n in range(B):
        pn = n if pri.shape[0] != 1 else 0
        base = flat[pn * stride: pn * stride + P * ps].reshape(P, ps)
        var = None if flags["variance_encoded_in_target"] else flat[pn * stride + P * ps: pn * stride + P * ps + 4 * P]
        var = None if var is None else var.reshape(P, 4)
        n_act = P
        if not flags["normalized"]:
            ends = np.flatnonzero(base[:, 0] == _F32(-1))
            n_act = int(ends[0]) if ends.size else P
        pbox = base[:, ps - 4:]
        sc = conf[n].reshape(P, K).T.copy()                   # (K, P)
        if arm:
            low = aconf[n].reshape(P, 2)[:, 1] < obj
            sc[:, low] = 0
            if 0 <= bg < K:
                sc[bg, low] = 1
        lo = loc[n].reshape(P, L, 4)
        boxes = np.zeros((L, P, 4), np.float32)
        sizes = np.zeros((L, P), np.float32)
        for c in range(L):
            if not flags["share_location"] and c == bg:
                continue
            v = None if var is None else var[:n_act]
            start = pbox[:n_act]
            if arm:                                            # RefineDet: the ARM deltas first, then `location`
                start, _ = _decode(start, aloc[n].reshape(P, L, 4)[:n_act, c], v, ct, flags["normalized"], ih, iw,
                                   flags["clip_before_nms"])
            b, s = _decode(start, lo[:n_act, c], v, ct, flags["normalized"], ih, iw, flags["clip_before_nms"])
            boxes[c, :n_act], sizes[c, :n_act] = b, s
        kept = {}                                              # class -> prior indices in output order
        if not mx:
            for c in range(K):
                if c == bg:
                    continue
                cand = np.flatnonzero(sc[c, :n_act] > cthr)
                cand = _top(sc[c], cand, cand.size if tk == -1 else min(tk, cand.size))
                li = 0 if flags["share_location"] else c
                kept[c] = _greedy(boxes[li], sizes[li], cand, thr)
        else:
            fg = sc[1:, :n_act].reshape(K - 1, n_act)
            ok = (fg >= cthr) & (fg > _F32(-1))
            masked = np.where(ok, fg, -np.inf)
            best = np.argmax(masked, axis=0) if K > 1 else np.zeros(n_act, np.int64)  # first maximum: the lower class
            has = ok.any(axis=0)
            pr = np.flatnonzero(has)
            cls = best[has] + 1
            key = cls * P + pr
            vals = sc[cls, pr]
            order = np.lexsort((key, -vals.astype(np.float64)))
            order = order[: (order.size if tk == -1 else min(tk, order.size))]
            for c in range(1, K):
                kept[c] = []
            for j in order:                                    # NMSMX: greedy within the candidate's class
                c, p = int(cls[j]), int(pr[j])
                li = 0 if flags["share_location"] else c
                prev = np.asarray(kept[c], np.int64)
                if prev.size and np.any(_jaccard(boxes[li], sizes[li], p, prev) > thr):
                    continue
                kept[c].append(p)
            kept = {c: np.asarray(v, np.int64) for c, v in kept.items()}
        total = sum(len(v) for v in kept.values())
        if ktk > -1 and total > ktk:
            cs = np.concatenate([np.full(len(v), c, np.int64) for c, v in kept.items()] + [np.zeros(0, np.int64)])
            prs = np.concatenate([v for v in kept.values()] + [np.zeros(0, np.int64)])
            vals = sc[cs, prs]
            order = np.lexsort((cs, prs, -vals.astype(np.float64)))[:ktk]
            kept = {c: prs[order][cs[order] == c] for c in kept}
        for c in sorted(kept):
            p = kept[c]
            if not len(p):
                continue
            li = 0 if flags["share_location"] else c
            b = boxes[li, p]
            if flags["clip_after_nms"]:
                b = _clip01(b)
            r = np.empty((len(p), 7), np.float32)
            r[:, 0], r[:, 1], r[:, 2], r[:, 3:] = n, c - 1 if mx else c, sc[c, p], b
            rows.append(r)
    out = np.zeros((R, 7), np.float32)
    det = np.concatenate(rows) if rows else np.zeros((0, 7), np.float32)
    out[:len(det)] = det
    if len(det) < R:
        out[len(det), 0] = -1
    return out.reshape(1, 1, R, 7)


def detection_output_rows(out: np.ndarray) -> np.ndarray:
    """The valid rows of a DetectionOutput result: those before the first row whose image id is -1.

    Parameters
    ----------
    out : ndarray, shape (1, 1, R, 7)

    Returns
    -------
    ndarray, shape (D, 7)
    """
    a = _checks.as_array(out, "out")
    if a.ndim != 4 or a.shape[:2] != (1, 1) or a.shape[3] != 7:
        raise ValueError(f"`out` must have shape (1, 1, R, 7) (OpenVINO DetectionOutput); got {a.shape}")
    r = a[0, 0]
    end = np.flatnonzero(r[:, 0] == -1)
    return r[: int(end[0]) if end.size else len(r)].copy()
