"""Detector post-processing: head outputs -> detections (RetinaNet / RPN inference), multi-scale merge.

Each function is the composition a framework runs at inference, written as its steps: sigmoid,
score threshold, top-k, box decoding (:mod:`refdet.box_coder`), clipping (:mod:`refdet.boxes`) and
class-aware NMS (:mod:`refdet.nms`). Thresholds and orderings are the framework's, written down in
each docstring. The convention is resolved once per call and the resolved
:class:`refdet.conventions.Profile` objects are passed down to NMS, the box coder and the box
helpers, so a caller's ``Profile`` (with its overrides) reaches every stage unchanged.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import _nms_engine as _engine
from refdet import box_coder as _bc
from refdet import boxes as _boxes
from refdet import conventions
from refdet.nms import batched_nms, nms

__all__ = [
    "postprocess_detections",
    "Detections",
    "merge_multiscale_detections",
]

Convention = Union[str, conventions.Profile]
Levels = Union[np.ndarray, Sequence[np.ndarray]]


class Detections(NamedTuple):
    """Final detections of one image.

    Attributes
    ----------
    boxes : ndarray, shape (K, 4), xyxy
    scores : ndarray, shape (K,)
    labels : ndarray of int64, shape (K,)
        Class index (``style="retinanet"``), FPN level (``style="rpn"``), or as given.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow (as refdet.layers.sigmoid_forward).

    ``x`` is made C-contiguous first: NumPy's vectorised ``exp`` may take another code path for a
    strided input, and results must not depend on the memory layout.
    """
    x = np.ascontiguousarray(x)
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    upper = x >= 0  # pragma: no mutate (x > 0: at x = 0 both branches give 1 / 2)
    return np.where(upper, one / (one + e), e / (one + e))


def _top_k(values, k):
    """Indices of the ``k`` largest ``values``, highest first, ties to the lower index."""
    return _engine.descending(values, "lowest_index")[:k]  # pragma: no mutate (the engine reads every ties value but "highest_index" as lowest_index)


def _as_levels(x, name, last):
    """A list of 2-D arrays (one per level) or a single 2-D array."""
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        x = [x]
    out = []
    for i, a in enumerate(x):
        arr = _checks.as_array(a, f"{name}[{i}]")
        if last == 1 and arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or (last is not None and arr.shape[1] != last):
            want = f"(N, {last})" if last is not None else "(N, K)"
            raise ValueError(f"`{name}[{i}]` must have shape {want}; got {arr.shape}")
        out.append(arr)
    return out


def postprocess_detections(cls_logits: Levels, box_deltas: Levels, anchors: Levels,
                           image_size: Tuple[int, int], *, style: str = "retinanet",
                           score_threshold: Optional[float] = None, topk_candidates: int = 1000,
                           nms_threshold: Optional[float] = None,
                           detections_per_image: Optional[int] = None, min_size: Optional[float] = None,
                           weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                           clamp: Optional[float] = math.log(1000.0 / 16),
                           coordinate_trick: Union[bool, str, None] = None,
                           convention: Convention = "torchvision") -> Detections:
    """Turn one image's head outputs into detections, as torchvision's inference does.

    ``style="retinanet"`` (torchvision ``RetinaNet.postprocess_detections``, ``retinanet.py``
    509-571), for each FPN level:

    1. ``scores = sigmoid(logits).ravel()``: flat index ``anchor * K + class`` (row-major);
    2. keep ``scores > score_threshold`` (strict; default 0.05);
    3. keep the ``min(topk_candidates, kept)`` best (``torch.topk``; ties: lower flat index first,
       torch.topk leaves tie order unspecified);
    4. ``anchor = flat // K``, ``label = flat % K``; decode the anchor's deltas
       (:func:`refdet.box_coder.decode_boxes`, ``weights``, ``clamp``) and clip to the image;

    then over all levels: class-aware NMS (:func:`refdet.nms.batched_nms` with ``nms_threshold``,
    default 0.5, strict ``IoU > threshold`` under every profile but ``caffe``) and the first
    ``detections_per_image`` (default 300).

    ``style="rpn"`` (torchvision ``RegionProposalNetwork.forward`` + ``filter_proposals``,
    ``rpn.py`` 242-297): decode every anchor; per level keep the ``min(topk_candidates, N_l)``
    largest objectness **logits** (``pre_nms_top_n``; ties to the lower index); ``sigmoid``; clip;
    remove boxes narrower or shorter than ``min_size`` (default 1e-3); keep
    ``score >= score_threshold`` (inclusive, "for backwards compatibility"; default 0.0); NMS per
    level (``nms_threshold`` default 0.7); the first ``detections_per_image`` (``post_nms_top_n``,
    default 1000). Labels are the level indices.

    Parameters
    ----------
    cls_logits : list of ndarray, one per level, shape (N_l, K)
        Classification logits per anchor (RPN: objectness, shape (N_l,) or (N_l, 1)). Anchors are
        flattened ``(y, x, a)`` within a level, as ``refdet.heads`` / torchvision produce them.
        NaN is rejected; +-inf is fine.
    box_deltas : list of ndarray, one per level, shape (N_l, 4)
    anchors : list of ndarray, one per level, shape (N_l, 4), xyxy
    image_size : (H, W)
    style : {"retinanet", "rpn"}
    score_threshold, nms_threshold : float in [0, 1], optional
        Defaults per ``style`` (above). Outside [0, 1] or NaN: ValueError (the scores are sigmoid
        probabilities and an IoU lies in [0, 1]).
    topk_candidates : int >= 0
    detections_per_image : int >= 0, optional
    min_size : float, optional
        Remove boxes with ``w < min_size`` or ``h < min_size`` after clipping (RetinaNet: no filter).
    weights, clamp
        Passed to :func:`refdet.box_coder.decode_boxes`.
    coordinate_trick : {False, True, "torchvision"}, optional
        Passed to :func:`refdet.nms.batched_nms` (default: the profile's, ``False`` everywhere);
        ``"torchvision"`` reproduces torchvision bit for bit.
    convention : str or conventions.Profile
        Resolved once, here, for the box decoding, clipping, small-box filter and NMS; a
        ``batched_nms`` Profile keeps its NMS overrides.

    Returns
    -------
    Detections(boxes, scores, labels)
        Highest score first (ties in the concatenation order of the levels).
    """
    _checks.check_choice(style, "style", ("retinanet", "rpn"))
    if isinstance(coordinate_trick, np.bool_):
        coordinate_trick = bool(coordinate_trick)
    # one resolution per stage, passed down as Profile objects
    p_nms = conventions.resolve("batched_nms", convention, coordinate_trick=coordinate_trick)
    p_decode = conventions.resolve("decode_boxes", convention)
    p_clip = conventions.resolve("clip_boxes_to_image", convention)
    p_small = conventions.resolve("remove_small_boxes", convention)
    rpn = style == "rpn"
    if score_threshold is None:
        score_threshold = 0.0 if rpn else 0.05
    if nms_threshold is None:
        nms_threshold = 0.7 if rpn else 0.5
    if detections_per_image is None:
        detections_per_image = 1000 if rpn else 300
    if min_size is None and rpn:
        min_size = 1e-3
    logits = _as_levels(cls_logits, "cls_logits", 1 if rpn else None)
    deltas = _as_levels(box_deltas, "box_deltas", 4)
    anc = _as_levels(anchors, "anchors", 4)
    if not (len(logits) == len(deltas) == len(anc)):
        raise ValueError(f"`cls_logits`, `box_deltas` and `anchors` must have one entry per level; got "
                         f"{len(logits)}, {len(deltas)} and {len(anc)}")
    for lvl, (lg, d, a) in enumerate(zip(logits, deltas, anc)):
        if not (len(lg) == len(d) == len(a)):
            raise ValueError(f"level {lvl}: `cls_logits`, `box_deltas` and `anchors` must have the same "
                             f"number of anchors; got {len(lg)}, {len(d)} and {len(a)}")
    _checks.check_image_size(image_size)
    # both thresholds are refused outside [0, 1]: the scores are sigmoid probabilities, an IoU lies in [0, 1]
    sthr = _checks.check_unit_threshold(score_threshold, "score_threshold",
                                        source="the scores it filters are sigmoid probabilities")
    k_top = _checks.check_int(topk_candidates, "topk_candidates", low=0)
    n_det = _checks.check_int(detections_per_image, "detections_per_image", low=0)
    _checks.check_unit_threshold(nms_threshold, "nms_threshold")

    all_boxes, all_scores, all_labels = [], [], []
    for lvl, (lg, d, a) in enumerate(zip(logits, deltas, anc)):        # loop over levels
        lg = _checks.as_float_array(lg, f"cls_logits[{lvl}]",
                                    finite=False)  # pragma: no mutate (None is falsy like False; NaN is checked below)
        _checks.check_finite(lg, f"cls_logits[{lvl}]", allow_inf=True)
        d = _checks.as_float_array(d, f"box_deltas[{lvl}]")           # named here, not as decode's `deltas`
        if rpn:
            lg = lg[:, 0]
            top = _top_k(lg, min(k_top, len(lg)))                        # top-k on logits
            boxes = _bc.decode_boxes(d[top], a[top], weights=weights, clamp=clamp, convention=p_decode)
            scores = _sigmoid(lg[top])
            labels = np.full(len(top), np.int64(lvl))
        else:
            K = lg.shape[1]
            flat = _sigmoid(lg).ravel()                                  # index anchor * K + class
            cand = np.flatnonzero(flat > flat.dtype.type(sthr))
            top = cand[_top_k(flat[cand], min(k_top, len(cand)))]
            scores = flat[top]
            anchor_idx, labels = top // K, (top % K).astype(np.int64)
            boxes = _bc.decode_boxes(d[anchor_idx], a[anchor_idx], weights=weights, clamp=clamp,
                                     convention=p_decode)
        boxes = _boxes.clip_boxes_to_image(boxes, image_size, convention=p_clip)
        all_boxes.append(boxes)
        all_scores.append(scores)
        all_labels.append(labels)
    boxes = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, dtype=np.int64)
    if rpn or min_size is not None:
        if min_size is not None:
            k = _boxes.remove_small_boxes(boxes, min_size, convention=p_small)
            boxes, scores, labels = boxes[k], scores[k], labels[k]
        if rpn:
            k = np.flatnonzero(scores >= scores.dtype.type(sthr))
            boxes, scores, labels = boxes[k], scores[k], labels[k]
    keep = batched_nms(boxes, scores, labels, nms_threshold, convention=p_nms)[:n_det]
    return Detections(boxes[keep], scores[keep], labels[keep])


def merge_multiscale_detections(detections: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                                scales: Sequence[Union[float, Tuple[float, float]]],
                                iou_threshold: float = 0.5,
                                *, max_detections: Optional[int] = None, class_aware: bool = True,
                                convention: Convention = "torchvision") -> Detections:
    """Merge the detections of an image pyramid: rescale every scale's boxes to the original image
    and run (class-aware) NMS over the union — the multi-scale testing baseline (e.g. Fast R-CNN,
    SNIP/"image pyramid" evaluation).

    Parameters
    ----------
    detections : list of (boxes (N_s, 4), scores (N_s,), labels (N_s,))
        One entry per scale, boxes in the coordinates of the resized image (any
        :class:`Detections` works).
    scales : list of float > 0, one per entry
        The resize factor of each scale: an image resized by ``scale`` has boxes ``scale`` times
        larger, so boxes are divided by it. A pair ``(sy, sx)`` scales y and x separately.
    iou_threshold : float
        Suppress when ``IoU > iou_threshold`` (``>=`` under ``caffe``), as :func:`refdet.nms.nms`.
    max_detections : int, optional
        Keep at most this many (highest scores first).
    class_aware : bool
        ``True``: :func:`refdet.nms.batched_nms` over labels; ``False``: :func:`refdet.nms.nms`
        over all boxes.
    convention : str or conventions.Profile
        Resolved once for the NMS.

    Returns
    -------
    Detections(boxes, scores, labels)
        In the original image's coordinates, highest score first; ties go to the earlier scale,
        then the lower index (the concatenation order).
    """
    if not isinstance(detections, (list, tuple)):
        raise TypeError(f"`detections` must be a list of (boxes, scores, labels); "
                        f"got {type(detections).__name__}")
    if not isinstance(scales, (list, tuple, np.ndarray)) or len(scales) != len(detections):
        raise ValueError(f"`scales` must have one entry per element of `detections` ({len(detections)}); "
                         f"got {scales!r}")
    class_aware = _checks.check_bool(class_aware, "class_aware")
    profile = conventions.resolve("batched_nms" if class_aware else "nms", convention)
    thr = _checks.check_unit_threshold(iou_threshold, "iou_threshold")
    bs, ss, ls = [], [], []
    for i, (det, sc) in enumerate(zip(detections, scales)):
        if not isinstance(det, (tuple, list)) or len(det) != 3:
            raise TypeError(f"`detections[{i}]` must be (boxes, scores, labels); got {type(det).__name__}")
        b = _checks.as_boxes(det[0], f"detections[{i}].boxes")
        s = _checks.as_scores(det[1], f"detections[{i}].scores", n=len(b))
        lab = _checks.as_int_labels(det[2], f"detections[{i}].labels", n=len(b))
        if np.ndim(sc) == 0:
            sy = sx = _checks.check_positive(sc, f"scales[{i}]")
        else:
            if len(sc) != 2:
                raise ValueError(f"`scales[{i}]` must be a number or a pair (sy, sx); got {sc!r}")
            sy = _checks.check_positive(sc[0], f"scales[{i}][0]")
            sx = _checks.check_positive(sc[1], f"scales[{i}][1]")
        f = np.array([sx, sy, sx, sy], dtype=b.dtype)
        bs.append(b / f)
        ss.append(s)
        ls.append(lab)
    if not bs:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    boxes, scores, labels = np.concatenate(bs), np.concatenate(ss), np.concatenate(ls)
    if class_aware:
        keep = batched_nms(boxes, scores, labels, thr, convention=profile)
    else:
        keep = nms(boxes, scores, thr, convention=profile)
    if max_detections is not None:
        keep = keep[:_checks.check_int(max_detections, "max_detections", low=0)]
    return Detections(boxes[keep], scores[keep], labels[keep])
