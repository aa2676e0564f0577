"""Training targets: anchors + ground truth -> per-anchor labels, regression targets, sample masks.

Three recipes, each the composition ``box_iou -> match -> (sample) -> encode_boxes``:

* :func:`rpn_targets` (Faster R-CNN RPN, paper section 3.1.2): an anchor is positive if it is the
  best anchor of some gt (ties included) or has IoU ``>= 0.7`` with some gt (``> 0.7`` under
  ``convention="paper"``), negative if its IoU is ``< 0.3`` with every gt, otherwise ignored; anchors
  crossing the image border are ignored when ``allowed_border`` is set (py-faster-rcnn, the paper);
  256 anchors are sampled, at most 128 positive; regression targets ``encode_boxes(gt, anchor)``.
* :func:`retinanet_targets` (Focal Loss paper section 4): IoU ``>= 0.5`` foreground, ``< 0.4``
  background, in between ignored; the classification target is one-hot over K classes (all zeros
  for background); no sampling.
* :func:`ssd_targets` (SSD paper section 2.2): every gt first claims its best default box, then
  every default box with IoU ``>= 0.5``; class ids ``1..K`` with ``0`` for background; regression
  weights ``(10, 10, 5, 5)`` (variances 0.1 / 0.2).

Ground truths are matched against the anchors of **all pyramid levels at once** (one IoU matrix over
the concatenated anchors, as torchvision, detectron2 and mmdet do); pass the ``level`` array returned
by :func:`refdet.pyramid_anchors` to get the level each positive anchor lives on.

An image without ground truth (M = 0) follows torchvision's models: the RPN labels every
(eligible) anchor negative and regresses to all-zero boxes; RetinaNet and SSD make every anchor
background. (torchvision's ``Matcher`` itself raises there; the models catch M = 0 before calling it.)
A convention whose matcher has another empty-gt policy (Caffe SSD: ``"all_ignore"``) keeps it.

Box coding uses torchvision's formulas with the given ``weights`` (and +1 pixel widths under
``convention="caffe"``, py-faster-rcnn's ``bbox_transform``); pass ``encode_kw`` to use any other
:func:`refdet.encode_boxes` convention.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.box_coder import encode_boxes
from refdet.boxes import boxes_inside_image
from refdet.iou import box_iou
from refdet.matcher import match_details, ssd_match
from refdet.sampler import sample_balanced

__all__ = [
    "RPNTargets",
    "RetinaNetTargets",
    "SSDTargets",
    "rpn_targets",
    "retinanet_targets",
    "ssd_targets",
]

BORDER_MODES = ("filter_before_match", "ignore_after_match")

conventions.register(
    "rpn_targets",
    {
        "torchvision": {"allowed_border": None, "border_mode": "filter_before_match"},
        "detectron2": {"allowed_border": None, "border_mode": "ignore_after_match"},
        "mmdet": {"allowed_border": None, "border_mode": "filter_before_match"},
        "caffe": {"allowed_border": 0, "border_mode": "filter_before_match"},
        "tf": {"allowed_border": None, "border_mode": "filter_before_match"},
        "paper": {"allowed_border": 0, "border_mode": "filter_before_match"},
    },
    knobs={
        "allowed_border": "anchors crossing the image by more than this are ignored (None: keep all)",
        "border_mode": "filter_before_match: outside anchors are removed before matching, so they "
                       "cannot be a gt's best anchor (py-faster-rcnn, mmdet) | ignore_after_match: "
                       "match all anchors, then label outside ones -1 (detectron2 BOUNDARY_THRESH >= 0)",
    },
    doc="torchvision RegionProposalNetwork.assign_targets_to_anchors (rpn.py 193-229) keeps every "
        "anchor; detectron2 RPN.BOUNDARY_THRESH = -1 by default (label_and_sample_anchors sets outside "
        "anchors to -1 after matching when >= 0); mmdet AnchorHead allowed_border=-1 in the released "
        "configs (anchor_inside_flags filters before assigning when >= 0); py-faster-rcnn "
        "anchor_target_layer.py 109-115 keeps inds_inside (allowed_border 0) before bbox_overlaps; "
        "Faster R-CNN paper 3.3: 'we ignore all cross-boundary anchors'.",
)

conventions.register(
    "retinanet_targets",
    {
        "torchvision": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
                        "positive_strict": False},
        "detectron2": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
                       "positive_strict": False},
        "mmdet": {"allow_low_quality_matches": True, "min_pos_iou": 0.0, "background_after": False,
                  "positive_strict": False},
        "caffe": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": True,
                  "positive_strict": False},
        "tf": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
               "positive_strict": False},
        "paper": {"allow_low_quality_matches": False, "min_pos_iou": -np.inf, "background_after": False,
                  "positive_strict": False},
    },
    knobs={
        "allow_low_quality_matches": "promote each gt's best anchor(s) (not in the paper)",
        "min_pos_iou": "gate of the low-quality step (mmdet RetinaNet: 0.0)",
        "background_after": "background written after positives (Detectron1 RetinaNet)",
        "positive_strict": "IoU > 0.5 instead of >= 0.5",
    },
    doc="torchvision retinanet.py 462-466 Matcher(0.5, 0.4, True); detectron2 RETINANET.IOU_THRESHOLDS "
        "[0.4, 0.5], allow_low_quality_matches=True; mmdet retinanet config MaxIoUAssigner(0.5, 0.4, "
        "min_pos_iou=0); Detectron1 roi_data/retinanet.py (fg first, bg after); Focal Loss paper "
        "section 4 'Box regression targets' (IoU 0.5 / [0, 0.4), no low-quality rule).",
)


class RPNTargets(NamedTuple):
    """Targets of the region proposal network for one image.

    Attributes
    ----------
    labels : ndarray of int64, shape (N,)
        After sampling: 1 sampled positive, 0 sampled negative, -1 not used by the loss
        (py-faster-rcnn's ``rpn_labels``; ``labels == assigned`` with ``sample=False``).
    deltas : ndarray, shape (N, 4)
        ``encode_boxes(matched_boxes, anchors)`` for every anchor, as torchvision computes them;
        meaningful only where ``labels == 1``. Zeros for an image without gt (torchvision encodes
        all-zero boxes there, giving -inf; its loss never reads them).
    matched : ndarray of int64, shape (N,)
        torchvision's matcher encoding: gt index, -1 negative, -2 ignored (also anchors outside the
        image).
    assigned : ndarray of int64, shape (N,)
        Labels before sampling, 1 / 0 / -1 (torchvision ``assign_targets_to_anchors`` labels).
    pos_mask, neg_mask : ndarray of bool, shape (N,)
        The balanced sample (torchvision ``fg_bg_sampler`` masks).
    matched_boxes : ndarray, shape (N, 4)
        The gt box each anchor regresses to: ``gt_boxes[max(matched, 0)]`` (torchvision's
        ``matched_gt_boxes``; gt 0 for negatives, the argmax gt for promoted anchors).
    inside : ndarray of bool, shape (N,)
        Anchors the border rule keeps (all True without ``allowed_border``).
    level : ndarray of int64, shape (N,)
        Pyramid level of each positive (``assigned == 1``) anchor, -1 elsewhere (all -1 without
        ``level``).
    """
    labels: np.ndarray
    deltas: np.ndarray
    matched: np.ndarray
    assigned: np.ndarray
    pos_mask: np.ndarray
    neg_mask: np.ndarray
    matched_boxes: np.ndarray
    inside: np.ndarray
    level: np.ndarray


class RetinaNetTargets(NamedTuple):
    """Targets of the RetinaNet heads for one image.

    Attributes
    ----------
    cls_targets : ndarray, shape (N, K)
        One-hot over the K classes for foreground anchors, all zeros for background and ignored
        anchors (torchvision ``gt_classes_target``).
    deltas : ndarray, shape (N, 4)
        Regression targets on foreground rows, zeros elsewhere (torchvision encodes only foreground).
    matched : ndarray of int64, shape (N,)
        gt index, -1 background, -2 ignored.
    labels : ndarray of int64, shape (N,)
        Class id for foreground, ``K`` for background (detectron2 / mmdet's background index), -1
        ignored.
    valid : ndarray of bool, shape (N,)
        Anchors the classification loss sums over (``matched != -2``).
    foreground : ndarray of bool, shape (N,)
    num_foreground : int
        The focal-loss normaliser before any clamping.
    level : ndarray of int64, shape (N,)
        Level of each foreground anchor, -1 elsewhere.
    """
    cls_targets: np.ndarray
    deltas: np.ndarray
    matched: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    foreground: np.ndarray
    num_foreground: int
    level: np.ndarray


class SSDTargets(NamedTuple):
    """Targets of the SSD heads for one image.

    Attributes
    ----------
    labels : ndarray of int64, shape (N,)
        ``gt_labels`` of the matched gt for foreground default boxes, 0 (background) elsewhere; -1
        for every box when an empty image's policy is ``"all_ignore"`` (Caffe mines no negatives).
    deltas : ndarray, shape (N, 4)
        Regression targets (weights (10, 10, 5, 5) by default) on foreground rows, zeros elsewhere.
    matched : ndarray of int64, shape (N,)
        gt index or -1.
    foreground : ndarray of bool, shape (N,)
    num_foreground : int
    level : ndarray of int64, shape (N,)
    """
    labels: np.ndarray
    deltas: np.ndarray
    matched: np.ndarray
    foreground: np.ndarray
    num_foreground: int
    level: np.ndarray


def _as_level(level, n):
    if level is None:
        return None
    lv = _checks.as_int_labels(level, "level", n=n, low=0)
    return lv


def _levels_of(level, mask):
    out = np.full(mask.shape[0], -1, dtype=np.int64)
    if level is not None:
        out[mask] = level[mask]
    return out


def _encode(gt, anchors, weights, convention, encode_kw):
    kw = {"convention": "torchvision", "plus_one": convention == "caffe"}
    if encode_kw:
        if not isinstance(encode_kw, dict):
            raise TypeError(f"`encode_kw` must be a dict of encode_boxes keywords; got {type(encode_kw).__name__}")
        kw.update(encode_kw)
    return encode_boxes(gt, anchors, weights=weights, **kw)


def _common(anchors, gt_boxes, level, name="anchors"):
    a = _checks.as_boxes(anchors, name)
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    dt = np.result_type(a.dtype, g.dtype)
    return a.astype(dt, copy=False), g.astype(dt, copy=False), _as_level(level, a.shape[0])


def _empty_policy(convention, op, explicit):
    """M = 0 inside a model: the matcher's policy, except that torchvision's "raise" is caught."""
    if explicit is not None:
        return explicit
    table = conventions.describe(op)
    pol = table[convention]["empty_gt"] if convention in table else "all_negative"
    return "all_negative" if pol == "raise" else pol


def rpn_targets(anchors, gt_boxes, image_size, *, level=None, convention="torchvision", high=0.7, low=0.3,
                allow_low_quality_matches=True, batch_size_per_image=256, positive_fraction=0.5,
                sample=True, rng=None, permutation=None, weights=(1.0, 1.0, 1.0, 1.0),
                allowed_border=None, border_mode=None, low_quality=None, min_pos_iou=None,
                positive_strict=None, background_after=None, empty_gt=None, encode_kw=None):
    """RPN training targets for one image (Faster R-CNN section 3.1.2).

    Parameters
    ----------
    anchors : ndarray, shape (N, 4), xyxy
        Anchors of every level, concatenated (:func:`refdet.pyramid_anchors`).
    gt_boxes : ndarray, shape (M, 4), xyxy
    image_size : (H, W)
        For the border rule.
    level : ndarray of int, shape (N,), optional
        Level of each anchor; the result's ``level`` then gives the level of each positive.
    convention : str
        Matcher, IoU and border defaults (``describe("rpn_targets")``, ``describe("match")``).
    high, low, allow_low_quality_matches, low_quality, min_pos_iou, positive_strict, background_after
        Passed to :func:`refdet.match`.
    batch_size_per_image, positive_fraction, sample, rng, permutation
        The balanced sample (:func:`refdet.sample_balanced`); ``sample=False`` skips it.
    weights : 4 numbers
        Box-coder weights (RPN: 1, 1, 1, 1).
    allowed_border : float or None, optional
        Ignore anchors crossing the image by more than this many pixels (py-faster-rcnn and the
        paper: 0). ``None`` under a profile that sets it, or a negative value: keep every anchor.
    border_mode : {"filter_before_match", "ignore_after_match"}, optional
        Whether outside anchors take part in matching (see ``describe("rpn_targets")``).
    empty_gt : str, optional
        Policy for M = 0 (default: every eligible anchor negative, as torchvision's RPN).
    encode_kw : dict, optional
        Extra keywords of :func:`refdet.encode_boxes`.

    Returns
    -------
    RPNTargets
    """
    s = conventions.resolve("rpn_targets", convention, allowed_border=allowed_border, border_mode=border_mode)
    _checks.check_choice(s["border_mode"], "border_mode", BORDER_MODES)
    a, g, lv = _common(anchors, gt_boxes, level)
    _checks.check_image_size(image_size)
    n, m = a.shape[0], g.shape[0]
    ab = allowed_border if allowed_border is not None else s["allowed_border"]
    inside = boxes_inside_image(a, image_size, allowed_border=ab)
    if m == 0:
        pol = _empty_policy(convention, "match", empty_gt)
        matched = match_details(np.zeros((0, n)), empty_gt=pol).matches     # raises for "raise"
        matched[~inside] = -2
        matched_boxes = np.zeros_like(a)
        deltas = np.zeros_like(a)
    else:
        mkw = dict(high=high, low=low, allow_low_quality_matches=allow_low_quality_matches,
                   convention=convention, low_quality=low_quality, min_pos_iou=min_pos_iou,
                   positive_strict=positive_strict, background_after=background_after,
                   allow_nan=True)  # box_iou's unguarded 0/0 (two identical point boxes) is NaN, as in torch
        if s["border_mode"] == "filter_before_match":
            idx = np.flatnonzero(inside)
            matched = np.full(n, -2, dtype=np.int64)
            if idx.size:
                iou = box_iou(g, a[idx], convention=convention)                 # (M, N_inside)
                matched[idx] = match_details(iou, **mkw).matches
        else:
            matched = match_details(box_iou(g, a, convention=convention), **mkw).matches
            matched[~inside] = -2
        matched_boxes = g[np.maximum(matched, 0)]
        deltas = _encode(matched_boxes, a, weights, convention, encode_kw)
    assigned = np.where(matched >= 0, 1, np.where(matched == -1, 0, -1)).astype(np.int64)
    if sample:
        pos_mask, neg_mask = sample_balanced(assigned, batch_size_per_image, positive_fraction, rng=rng,
                                             permutation=permutation)
        labels = np.where(pos_mask, 1, np.where(neg_mask, 0, -1)).astype(np.int64)
    else:
        pos_mask, neg_mask = assigned == 1, assigned == 0
        labels = assigned.copy()
    return RPNTargets(labels=labels, deltas=deltas, matched=matched, assigned=assigned, pos_mask=pos_mask,
                      neg_mask=neg_mask, matched_boxes=matched_boxes, inside=inside,
                      level=_levels_of(lv, assigned == 1))


def retinanet_targets(anchors, gt_boxes, gt_labels, num_classes, *, level=None, convention="torchvision",
                      high=0.5, low=0.4, allow_low_quality_matches=None, weights=(1.0, 1.0, 1.0, 1.0),
                      low_quality=None, min_pos_iou=None, positive_strict=None, background_after=None,
                      empty_gt=None, encode_kw=None):
    """RetinaNet training targets for one image (Focal Loss paper section 4).

    Parameters
    ----------
    anchors : ndarray, shape (N, 4), xyxy
        Anchors of every level, concatenated.
    gt_boxes : ndarray, shape (M, 4), xyxy
    gt_labels : ndarray of int, shape (M,)
        Class ids in ``[0, num_classes)`` (torchvision indexes its one-hot target with them).
    num_classes : int
        K.
    level : ndarray of int, shape (N,), optional
    convention : str
        ``describe("retinanet_targets")``: mmdet gates the low-quality step with ``min_pos_iou=0``,
        Detectron1 (``"caffe"``) writes the background after the positives, the paper has no
        low-quality step.
    high, low : float
        0.5 / 0.4.
    allow_low_quality_matches, low_quality, min_pos_iou, positive_strict, background_after
        Matcher knobs (:func:`refdet.match`).
    weights : 4 numbers
    empty_gt : str, optional
        Default: every anchor background (torchvision ``retinanet.py`` 498-502).
    encode_kw : dict, optional

    Returns
    -------
    RetinaNetTargets
    """
    s = conventions.resolve("retinanet_targets", convention, allow_low_quality_matches=allow_low_quality_matches,
                            min_pos_iou=min_pos_iou, background_after=background_after,
                            positive_strict=positive_strict)
    a, g, lv = _common(anchors, gt_boxes, level)
    k = _checks.check_int(num_classes, "num_classes", low=1)
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=k - 1)
    n, m = a.shape[0], g.shape[0]
    if m == 0:
        pol = _empty_policy(convention, "match", empty_gt)
        matched = match_details(np.zeros((0, n)), empty_gt=pol).matches     # raises for "raise"
    else:
        iou = box_iou(g, a, convention=convention)                               # (M, N)
        matched = match_details(iou, high=high, low=low, convention=convention, low_quality=low_quality,
                                allow_low_quality_matches=bool(s["allow_low_quality_matches"]),
                                min_pos_iou=s["min_pos_iou"], positive_strict=s["positive_strict"],
                                background_after=s["background_after"], allow_nan=True).matches
    fg = matched >= 0
    cls_targets = np.zeros((n, k), dtype=a.dtype)
    cls_targets[np.flatnonzero(fg), lab[matched[fg]]] = 1
    deltas = np.zeros_like(a)
    if fg.any():
        deltas[fg] = _encode(g[matched[fg]], a[fg], weights, convention, encode_kw)
    labels = np.where(fg, lab[np.maximum(matched, 0)] if m else 0, np.where(matched == -1, k, -1)).astype(np.int64)
    return RetinaNetTargets(cls_targets=cls_targets, deltas=deltas, matched=matched, labels=labels,
                            valid=matched != -2, foreground=fg, num_foreground=int(fg.sum()),
                            level=_levels_of(lv, fg))


def ssd_targets(default_boxes, gt_boxes, gt_labels, *, level=None, threshold=0.5, convention="torchvision",
                weights=(10.0, 10.0, 5.0, 5.0), prematch=None, positive_strict=None, candidate_eps=None,
                empty_gt=None, encode_kw=None):
    """SSD training targets for one image (SSD paper section 2.2, torchvision ``SSD.compute_loss``).

    Parameters
    ----------
    default_boxes : ndarray, shape (N, 4), xyxy
        :func:`refdet.ssd_default_boxes` (pixels).
    gt_boxes : ndarray, shape (M, 4), xyxy
    gt_labels : ndarray of int, shape (M,)
        Class ids ``1..K``; 0 is background (torchvision's SSD, ``cls_targets > 0`` is foreground).
    level : ndarray of int, shape (N,), optional
    threshold : float
        0.5.
    convention : str
        ``describe("ssd_match")``: torchvision/mmdet (a shared best box goes to the last gt), TF (to
        the first), Caffe (greedy bipartite).
    weights : 4 numbers
        (10, 10, 5, 5): SSD's variances (0.1, 0.1, 0.2, 0.2) as multipliers.
    prematch, positive_strict, candidate_eps : optional
        :func:`refdet.ssd_match` knobs.
    empty_gt : str, optional
        Default: all background (torchvision ``ssd.py`` 390-396); Caffe: all ignored.
    encode_kw : dict, optional

    Returns
    -------
    SSDTargets
    """
    a, g, lv = _common(default_boxes, gt_boxes, level, "default_boxes")
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0)
    n, m = a.shape[0], g.shape[0]
    if m == 0:
        pol = _empty_policy(convention, "ssd_match", empty_gt)
        matched = ssd_match(np.zeros((0, n), dtype=a.dtype), threshold, convention=convention, empty_gt=pol)
    else:
        iou = box_iou(g, a, convention=convention)                               # (M, N)
        matched = ssd_match(iou, threshold, convention=convention, prematch=prematch,
                            positive_strict=positive_strict, candidate_eps=candidate_eps)
    fg = matched >= 0
    labels = np.zeros(n, dtype=np.int64)
    labels[fg] = lab[matched[fg]]
    labels[matched == -2] = -1
    deltas = np.zeros_like(a)
    if fg.any():
        deltas[fg] = _encode(g[matched[fg]], a[fg], weights, convention, encode_kw)
    return SSDTargets(labels=labels, deltas=deltas, matched=matched, foreground=fg,
                      num_foreground=int(fg.sum()), level=_levels_of(lv, fg))
