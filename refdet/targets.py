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

Conventions are resolved **once**: each recipe resolves its own profile (``describe("rpn_targets")``,
``describe("retinanet_targets")``, ``describe("ssd_targets")``), then the matcher's and the box coder's
profiles of the same name with the caller's overrides, and hands those :class:`~refdet.conventions.Profile`
objects down to :func:`refdet.box_iou`, :func:`refdet.match` / :func:`refdet.ssd_match` and
:func:`refdet.encode_boxes`. Nothing replaces the caller's convention: the box coder is the
``encode_boxes`` profile of the same name (mmdet's midpoint centres and stds, py-faster-rcnn's +1
widths, TF's ``eps`` and ``(dy, dx, dh, dw)`` order), and where a recipe's framework codes its
targets differently from that framework's generic coder (Caffe SSD: normalised boxes, no +1,
midpoint centres) the difference is a declared knob of the recipe's table. The default ``weights``
are knobs as well (torchvision's SSD (10, 10, 5, 5), mmdet's SSD stds (0.1, 0.1, 0.2, 0.2)).

An image without ground truth (M = 0) follows the models (knob ``empty_gt``): the RPN labels every
(eligible) anchor negative and regresses to all-zero boxes; RetinaNet and SSD make every anchor
background (torchvision's ``Matcher`` itself raises there; the models catch M = 0 before calling it);
Caffe SSD ignores every default box (``"all_ignore"``).

Invalid geometry is a caller error, checked before any IoU: an anchor (default box) whose width or
height is <= 0 under the box coder's convention, or a flipped ground truth (``x2 < x1`` or
``y2 < y1``), raises a ValueError naming the argument, the row and the box (with the ``+1`` of
py-faster-rcnn a box with ``x1 == x2`` is one pixel wide and valid). Such an anchor's code would be
inf or NaN (detectron2's box coder asserts positive anchor sizes), a flipped box's IoU and code are
NaN in every framework. A zero-size ground truth (a point or a line) is valid: it is the
low-quality-match pathology whose answers the frameworks define (it overlaps no anchor), and an
anchor matched to it regresses to ``dw = -inf`` exactly as torchvision's ``encode_boxes`` gives.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from refdet import _checks
from refdet import conventions
from refdet.box_coder import _centers_sizes, _check_sizes, encode_boxes
from refdet.boxes import boxes_inside_image
from refdet.iou import box_iou
from refdet.matcher import EMPTY_GT_POLICIES, match_details, ssd_match
from refdet.matcher import _check_thresholds
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
_IGNORED = np.int64(-2)  # torchvision's BETWEEN_THRESHOLDS code, also given to anchors outside the image
_NO_LEVEL = np.int64(-1)  # the level of an anchor that is not positive

Convention = Union[str, conventions.Profile]


def _check_weights(w):
    return tuple(float(v) for v in _checks.check_weights4(w))  # its errors name `weights` (the default)


_WEIGHTS_SOURCE = ("torchvision rpn.py / retinanet.py BoxCoder((1, 1, 1, 1)), ssd.py BoxCoder((10, 10, 5, 5)); "
                   "detectron2 RPN/RETINANET BBOX_REG_WEIGHTS (1, 1, 1, 1); mmdet DeltaXYWHBBoxCoder "
                   "target_stds (1, 1, 1, 1), SSD (0.1, 0.1, 0.2, 0.2); Caffe SSD prior variance "
                   "(0.1, 0.1, 0.2, 0.2); TF OD API target_assigner.py create_target_assigner and SSD configs "
                   "FasterRcnnBoxCoder scale_factors (10, 10, 5, 5)")
_ONES = (1.0, 1.0, 1.0, 1.0)
_TENS = (10.0, 10.0, 5.0, 5.0)
_STDS = (0.1, 0.1, 0.2, 0.2)


# The knob declarations shared by the three tables are module-level values (an Option is immutable), not
# functions: a function called only while the module is imported is out of reach of mutation testing.
_WEIGHTS_OPTION = conventions.option(
    "box-coder weights (wx, wy, ww, wh) of the targets; stds under the profile's weight_mode='divide'",
    check=_check_weights, source=_WEIGHTS_SOURCE)
_EMPTY_GT_MEANING = "what an image without ground truth (M = 0) gives: "
_EMPTY_GT_SOURCE = ("torchvision rpn.py 206-210, retinanet.py 498-502 and ssd.py 390-396 catch M = 0 before the "
                    "matcher (all negative); Caffe SSD mines no negatives there (weiliu89/caffe#145)")


conventions.register(
    "rpn_targets",
    {
        "torchvision": {"allowed_border": None, "border_mode": "filter_before_match", "weights": _ONES,
                        "empty_gt": "all_negative"},
        "detectron2": {"allowed_border": None, "border_mode": "ignore_after_match", "weights": _ONES,
                       "empty_gt": "all_negative"},
        "mmdet": {"allowed_border": None, "border_mode": "filter_before_match", "weights": _ONES,
                  "empty_gt": "all_negative"},
        "caffe": {"allowed_border": 0, "border_mode": "filter_before_match", "weights": _ONES,
                  "empty_gt": "all_negative"},
        "tf": {"allowed_border": None, "border_mode": "filter_before_match", "weights": _TENS,
               "empty_gt": "all_negative"},
        "paper": {"allowed_border": 0, "border_mode": "filter_before_match", "weights": _ONES,
                  "empty_gt": "all_negative"},
    },
    knobs={
        "allowed_border": conventions.number(
            "anchors crossing the image by more than this are ignored (None or < 0: keep all)", allow_none=True,
            source="py-faster-rcnn anchor_target_layer.py 109-115 (0); detectron2 RPN.BOUNDARY_THRESH (-1); "
                   "mmdet AnchorHead allowed_border (-1 in the released configs)"),
        "border_mode": conventions.choice(
            BORDER_MODES, "filter_before_match: outside anchors are removed before matching, so they cannot "
                          "be a gt's best anchor | ignore_after_match: match all, then label outside ones -1",
            source="py-faster-rcnn anchor_target_layer.py (inds_inside before bbox_overlaps); mmdet "
                   "anchor_inside_flags; detectron2 rpn.py label_and_sample_anchors (after matching)"),
        "weights": _WEIGHTS_OPTION,
        "empty_gt": conventions.choice(
            EMPTY_GT_POLICIES, _EMPTY_GT_MEANING + "every eligible anchor negative (the models' rule)",
            source=_EMPTY_GT_SOURCE),
    },
    doc="torchvision RegionProposalNetwork.assign_targets_to_anchors (rpn.py 193-229) keeps every "
        "anchor; detectron2 RPN.BOUNDARY_THRESH = -1 by default (label_and_sample_anchors sets outside "
        "anchors to -1 after matching when >= 0); mmdet AnchorHead allowed_border=-1 in the released "
        "configs (anchor_inside_flags filters before assigning when >= 0); py-faster-rcnn "
        "anchor_target_layer.py 109-115 keeps inds_inside (allowed_border 0) before bbox_overlaps; "
        "Faster R-CNN paper 3.3: 'we ignore all cross-boundary anchors'. py-faster-rcnn cannot take an "
        "image without gt (its argmax fails; its roidb filter drops such images): refdet labels it all "
        "negative. The matcher, IoU and box coder are the profiles of the same name (describe('match'), "
        "describe('box_iou'), describe('encode_boxes')).",
)

conventions.register(
    "retinanet_targets",
    {
        "torchvision": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
                        "positive_strict": False, "weights": _ONES, "empty_gt": "all_negative"},
        "detectron2": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
                       "positive_strict": False, "weights": _ONES, "empty_gt": "all_negative"},
        "mmdet": {"allow_low_quality_matches": True, "min_pos_iou": 0.0, "background_after": False,
                  "positive_strict": False, "weights": _ONES, "empty_gt": "all_negative"},
        "caffe": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": True,
                  "positive_strict": False, "weights": _ONES, "empty_gt": "all_negative"},
        "tf": {"allow_low_quality_matches": True, "min_pos_iou": -np.inf, "background_after": False,
               "positive_strict": False, "weights": _TENS, "empty_gt": "all_negative"},
        "paper": {"allow_low_quality_matches": False, "min_pos_iou": -np.inf, "background_after": False,
                  "positive_strict": False, "weights": _ONES, "empty_gt": "all_negative"},
    },
    knobs={
        "allow_low_quality_matches": conventions.flag(
            "promote each gt's best anchor(s) (not in the paper)",
            source="torchvision retinanet.py 462-466 Matcher(0.5, 0.4, True); Focal Loss paper section 4"),
        "min_pos_iou": conventions.number(
            "gate of the low-quality step (-inf: none)", low=-np.inf, high=np.inf,
            source="mmdet configs/_base_/models/retinanet_r50_fpn.py MaxIoUAssigner(min_pos_iou=0)"),
        "background_after": conventions.flag(
            "background written after the positives", source="Detectron1 roi_data/retinanet.py"),
        "positive_strict": conventions.flag(
            "IoU > high instead of >= high", source="torchvision _utils.py Matcher (>=)"),
        "weights": _WEIGHTS_OPTION,
        "empty_gt": conventions.choice(
            EMPTY_GT_POLICIES, _EMPTY_GT_MEANING + "every anchor background", source=_EMPTY_GT_SOURCE),
    },
    doc="torchvision retinanet.py 462-466 Matcher(0.5, 0.4, True); detectron2 RETINANET.IOU_THRESHOLDS "
        "[0.4, 0.5], allow_low_quality_matches=True; mmdet retinanet config MaxIoUAssigner(0.5, 0.4, "
        "min_pos_iou=0); Detectron1 roi_data/retinanet.py (fg first, bg after); Focal Loss paper "
        "section 4 'Box regression targets' (IoU 0.5 / [0, 0.4), no low-quality rule). The IoU and box "
        "coder are the profiles of the same name.",
)

conventions.register(
    "ssd_targets",
    {
        "torchvision": {"weights": _TENS, "plus_one": None, "center": None, "empty_gt": "all_negative"},
        "mmdet": {"weights": _STDS, "plus_one": None, "center": None, "empty_gt": "all_negative"},
        "caffe": {"weights": _STDS, "plus_one": False, "center": "midpoint", "empty_gt": "all_ignore"},
        "tf": {"weights": _TENS, "plus_one": None, "center": None, "empty_gt": "all_negative"},
        "paper": {"weights": _ONES, "plus_one": None, "center": None, "empty_gt": "all_negative"},
    },
    knobs={
        "weights": _WEIGHTS_OPTION,
        "plus_one": conventions.Option(
            "flag", "+1 widths in the IoU and the box coder (None: as box_iou / encode_boxes of the same name)",
            allow_none=True,
            source="Caffe SSD bbox_util.cpp JaccardOverlap / EncodeBBox on normalised boxes: no +1"),
        "center": conventions.choice(
            ("half_width", "midpoint"), "the box coder's centre formula (None: as encode_boxes of the same name)",
            allow_none=True, source="Caffe SSD bbox_util.cpp EncodeBBox CENTER_SIZE: (xmin + xmax) / 2"),
        "empty_gt": conventions.choice(
            EMPTY_GT_POLICIES, _EMPTY_GT_MEANING + "all background, or all ignored (Caffe)", source=_EMPTY_GT_SOURCE),
    },
    doc="torchvision SSD.compute_loss (ssd.py 340-396): SSDMatcher(0.5), BoxCoder((10, 10, 5, 5)); mmdet "
        "SSDHead DeltaXYWHBBoxCoder target_stds (0.1, 0.1, 0.2, 0.2); Caffe SSD MultiBoxLossLayer: "
        "MatchBBox, EncodeBBox CENTER_SIZE dividing by the prior variances, no +1 (normalised "
        "coordinates); TF ssd configs FasterRcnnBoxCoder (10, 10, 5, 5); SSD paper eq. 2 (no variances). "
        "The matcher is describe('ssd_match') of the same name.",
)


class RPNTargets(NamedTuple):
    """Targets of the region proposal network for one image.

    Attributes
    ----------
    labels : ndarray of int64, shape (N,)
        After sampling: 1 sampled positive, 0 sampled negative, -1 not used by the loss
        (py-faster-rcnn's ``rpn_labels``; ``labels == assigned`` with ``sample=False``).
    deltas : ndarray, shape (N, 4)
        ``encode_boxes(matched_boxes, anchors)`` for every anchor, with the box coder of the
        convention (its code order: ``(dy, dx, dh, dw)`` under TF), as torchvision computes them;
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
        Regression targets (the profile's weights: torchvision (10, 10, 5, 5)) on foreground rows,
        zeros elsewhere.
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
    out = np.full(mask.shape[0], _NO_LEVEL)                                 # int64: the fill's dtype
    if level is not None:
        out[mask] = level[mask]
    return out


def _coder(s, encode_kw):
    """The encode_boxes profile of the recipe's convention, and the other encode_boxes keywords.

    ``s`` is the recipe's resolved profile. Its ``plus_one`` / ``center`` knobs (when it declares them
    and they are not None) override the box coder's profile of the same name; ``encode_kw`` (the
    caller's explicit choice) may override any coder knob, name another ``convention`` for the coder,
    or pass ``means`` / ``log``.
    """
    kw = {}
    if encode_kw is not None:
        if not isinstance(encode_kw, dict):
            raise TypeError(f"`encode_kw` must be a dict of encode_boxes keywords; got {type(encode_kw).__name__}")
        kw = dict(encode_kw)
    if "weights" in kw:
        raise TypeError("`encode_kw` must not hold 'weights': pass `weights=` to the targets function")
    base = kw.pop("convention", s.name)
    table = conventions.describe("encode_boxes")
    knobs = {k: kw.pop(k) for k in list(kw) if k in table.options}
    for k in ("plus_one", "center"):
        if k in s and s[k] is not None and knobs.get(k) is None:
            knobs[k] = s[k]
    return conventions.resolve("encode_boxes", base, **knobs), kw


def _encode(gt, anchors, s, coder):
    profile, extra = coder
    return encode_boxes(gt, anchors, weights=s.weights, convention=profile, **extra)


def _iou_profile(s):
    """The box_iou profile of the recipe's convention (its ``plus_one`` knob, when declared and set, wins)."""
    po = s["plus_one"] if "plus_one" in s else None
    return conventions.resolve("box_iou", s.name, plus_one=po)


def _check_geometry(boxes, name, coder):
    """Widths and heights > 0 (anchors, default boxes) or >= 0 (``gt_boxes``) under the coder's +1 and eps."""
    allow_zero = name == "gt_boxes"      # a zero-size gt is valid (it overlaps nothing); a reference box is not
    with np.errstate(over="ignore"):  # x2 - x1 of a box wider than the dtype's range is inf: valid
        _, _, w, h = _centers_sizes(boxes, coder[0])
        e = coder[0]["eps"]
        if e:
            w, h = w + boxes.dtype.type(e), h + boxes.dtype.type(e)
    _check_sizes(w, h, boxes, name, allow_zero=allow_zero)


def _common(anchors, gt_boxes, level, coder, name="anchors"):
    a = _checks.as_boxes(anchors, name)
    g = _checks.as_boxes(gt_boxes, "gt_boxes")
    dt = np.result_type(a.dtype, g.dtype)
    a, g = np.asarray(a, dtype=dt), np.asarray(g, dtype=dt)          # never written: no copy
    _check_geometry(a, name, coder)                                        # > 0
    _check_geometry(g, "gt_boxes", coder)                                  # >= 0
    return a, g, _as_level(level, a.shape[0])


@conventions.documented("rpn_targets")
def rpn_targets(anchors: ArrayLike, gt_boxes: ArrayLike, image_size: Tuple[int, int], *,
                level: Optional[ArrayLike] = None, convention: Convention = "torchvision", high: float = 0.7,
                low: float = 0.3, allow_low_quality_matches: bool = True, batch_size_per_image: int = 256,
                positive_fraction: float = 0.5, sample: bool = True, rng=None,
                permutation: Optional[Tuple[ArrayLike, ArrayLike]] = None,
                weights: Optional[Sequence[float]] = None, allowed_border: Optional[float] = None,
                border_mode: Optional[str] = None, low_quality: Optional[str] = None,
                min_pos_iou: Optional[float] = None, positive_strict: Optional[bool] = None,
                background_after: Optional[bool] = None, empty_gt: Optional[str] = None,
                encode_kw: Optional[dict] = None) -> "RPNTargets":
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
    convention : str or Profile
        The recipe's profile (knobs below); the matcher, IoU and box coder use the profiles of the
        same name (``describe("match")``, ``describe("box_iou")``, ``describe("encode_boxes")``).
    high, low, allow_low_quality_matches, low_quality, min_pos_iou, positive_strict, background_after
        Passed to :func:`refdet.match` (the last four override the ``match`` profile).
    batch_size_per_image, positive_fraction, sample, rng, permutation
        The balanced sample (:func:`refdet.sample_balanced`); ``sample=False`` skips it.
    weights : 4 numbers, optional
        Box-coder weights (stds under a ``weight_mode="divide"`` coder); default: the profile's
        (RPN: 1, 1, 1, 1; TF 10, 10, 5, 5).
    allowed_border : float or None, optional
        Ignore anchors crossing the image by more than this many pixels (py-faster-rcnn and the
        paper: 0). ``None`` under a profile that sets it, or a negative value: keep every anchor.
    border_mode : {"filter_before_match", "ignore_after_match"}, optional
        Whether outside anchors take part in matching.
    empty_gt : str, optional
        Policy for M = 0 (default: every eligible anchor negative, as torchvision's RPN).
    encode_kw : dict, optional
        Explicit :func:`refdet.encode_boxes` keywords (knob overrides, ``means``, ``log``, or another
        ``convention`` for the coder).

    Returns
    -------
    RPNTargets
    """
    s = conventions.resolve("rpn_targets", convention, allowed_border=allowed_border, border_mode=border_mode,
                            weights=weights, empty_gt=empty_gt)
    mp = conventions.resolve("match", s.name, low_quality=low_quality, min_pos_iou=min_pos_iou,
                             positive_strict=positive_strict, background_after=background_after)
    coder = _coder(s, encode_kw)
    ip = _iou_profile(s)
    a, g, lv = _common(anchors, gt_boxes, level, coder)
    _checks.check_image_size(image_size)
    sample = _checks.check_bool(sample, "sample")
    _check_thresholds(high, low)          # checked even when no IoU is computed (no anchor, or no gt)
    n, m = a.shape[0], g.shape[0]
    inside = boxes_inside_image(a, image_size, allowed_border=s.allowed_border)
    if m == 0:
        matched = match_details(np.zeros((0, n)), convention=mp.replace(empty_gt=s.empty_gt)).matches
        matched[~inside] = -2
        matched_boxes = np.zeros_like(a)
        deltas = np.zeros_like(a)
    else:
        # allow_nan: box_iou's unguarded 0/0 (two identical point boxes) is NaN, as in torch
        mkw = dict(high=high, low=low, allow_low_quality_matches=allow_low_quality_matches, convention=mp,
                   allow_nan=True)
        if s["border_mode"] == "filter_before_match":
            idx = np.flatnonzero(inside)
            matched = np.full(n, _IGNORED)                                  # int64: the fill's dtype
            if idx.size:
                matched[idx] = match_details(box_iou(g, a[idx], convention=ip), **mkw).matches  # (M, N_in)
        else:
            matched = match_details(box_iou(g, a, convention=ip), **mkw).matches
            matched[~inside] = -2
        matched_boxes = g[np.maximum(matched, 0)]
        deltas = _encode(matched_boxes, a, s, coder)
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


@conventions.documented("retinanet_targets")
def retinanet_targets(anchors: ArrayLike, gt_boxes: ArrayLike, gt_labels: ArrayLike, num_classes: int, *,
                      level: Optional[ArrayLike] = None, convention: Convention = "torchvision",
                      high: float = 0.5, low: float = 0.4, allow_low_quality_matches: Optional[bool] = None,
                      weights: Optional[Sequence[float]] = None, low_quality: Optional[str] = None,
                      min_pos_iou: Optional[float] = None, positive_strict: Optional[bool] = None,
                      background_after: Optional[bool] = None, empty_gt: Optional[str] = None,
                      encode_kw: Optional[dict] = None, max_elements: Optional[int] = None) -> "RetinaNetTargets":
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
    convention : str or Profile
        ``describe("retinanet_targets")``: mmdet gates the low-quality step with ``min_pos_iou=0``,
        Detectron1 (``"caffe"``) writes the background after the positives, the paper has no
        low-quality step. The IoU, the rest of the matcher and the box coder are the profiles of the
        same name.
    high, low : float
        0.5 / 0.4.
    allow_low_quality_matches, low_quality, min_pos_iou, positive_strict, background_after
        Matcher knobs (:func:`refdet.match`).
    weights : 4 numbers, optional
        Default: the profile's (1, 1, 1, 1; TF 10, 10, 5, 5).
    empty_gt : str, optional
        Default: every anchor background (torchvision ``retinanet.py`` 498-502).
    encode_kw : dict, optional
        As in :func:`rpn_targets`.
    max_elements : int, optional
        Cap on the one-hot ``cls_targets`` (``N * num_classes`` elements), default
        :data:`refdet._checks.MAX_ELEMENTS` (2**28): more is a ValueError naming ``num_classes``.

    Returns
    -------
    RetinaNetTargets
    """
    s = conventions.resolve("retinanet_targets", convention, allow_low_quality_matches=allow_low_quality_matches,
                            min_pos_iou=min_pos_iou, background_after=background_after,
                            positive_strict=positive_strict, weights=weights, empty_gt=empty_gt)
    mp = conventions.resolve("match", s.name, low_quality=low_quality, min_pos_iou=s.min_pos_iou,
                             positive_strict=s.positive_strict, background_after=s.background_after)
    coder = _coder(s, encode_kw)
    ip = _iou_profile(s)
    a, g, lv = _common(anchors, gt_boxes, level, coder)
    k = _checks.check_int(num_classes, "num_classes", low=1)
    _checks.check_allocation(a.shape[0] * k, a.dtype.itemsize, f"one-hot targets of {a.shape[0]} anchors x {k} "
                             f"classes", name="num_classes", limit=max_elements)
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0, high=k - 1)
    _check_thresholds(high, low)          # checked even when no IoU is computed (no gt), as in rpn_targets
    n, m = a.shape[0], g.shape[0]
    if m == 0:
        matched = match_details(np.zeros((0, n)), convention=mp.replace(empty_gt=s.empty_gt)).matches
    else:
        matched = match_details(box_iou(g, a, convention=ip), high=high, low=low, convention=mp,  # (M, N)
                                allow_low_quality_matches=s.allow_low_quality_matches, allow_nan=True).matches
    fg = matched >= 0
    cls_targets = np.zeros((n, k), dtype=a.dtype)
    cls_targets[np.flatnonzero(fg), lab[matched[fg]]] = 1
    deltas = np.zeros_like(a)
    if fg.any():
        deltas[fg] = _encode(g[matched[fg]], a[fg], s, coder)
    labels = np.where(matched == -1, k, -1)                                 # background K, ignored -1
    labels[fg] = lab[matched[fg]]
    return RetinaNetTargets(cls_targets=cls_targets, deltas=deltas, matched=matched, labels=labels,
                            valid=matched != -2, foreground=fg, num_foreground=int(fg.sum()),
                            level=_levels_of(lv, fg))


@conventions.documented("ssd_targets")
def ssd_targets(default_boxes: ArrayLike, gt_boxes: ArrayLike, gt_labels: ArrayLike, *,
                level: Optional[ArrayLike] = None, threshold: float = 0.5, convention: Convention = "torchvision",
                weights: Optional[Sequence[float]] = None, prematch: Optional[str] = None,
                positive_strict: Optional[bool] = None, candidate_eps: Optional[float] = None,
                empty_gt: Optional[str] = None, plus_one: Optional[bool] = None, center: Optional[str] = None,
                encode_kw: Optional[dict] = None) -> "SSDTargets":
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
    convention : str or Profile
        ``describe("ssd_targets")`` and the matcher's ``describe("ssd_match")``: torchvision/mmdet (a
        shared best box goes to the last gt), TF (to the first), Caffe (greedy bipartite).
    weights : 4 numbers, optional
        Default: the profile's. torchvision/TF (10, 10, 5, 5), SSD's variances (0.1, 0.1, 0.2, 0.2) as
        multipliers; mmdet/Caffe the variances themselves as divisors (their coder's
        ``weight_mode="divide"``); the paper (1, 1, 1, 1).
    prematch, positive_strict, candidate_eps : optional
        :func:`refdet.ssd_match` knobs.
    empty_gt : str, optional
        Default: all background (torchvision ``ssd.py`` 390-396); Caffe: all ignored.
    plus_one, center : optional
        The IoU's and the box coder's pixel convention for this recipe (default: the profile's; Caffe
        SSD uses continuous widths and midpoint centres although the rest of the Caffe profile is +1).
    encode_kw : dict, optional
        As in :func:`rpn_targets`.

    Returns
    -------
    SSDTargets
    """
    s = conventions.resolve("ssd_targets", convention, weights=weights, empty_gt=empty_gt, plus_one=plus_one,
                            center=center)
    mp = conventions.resolve("ssd_match", s.name, prematch=prematch, positive_strict=positive_strict,
                             candidate_eps=candidate_eps)
    coder = _coder(s, encode_kw)
    ip = _iou_profile(s)
    a, g, lv = _common(default_boxes, gt_boxes, level, coder, "default_boxes")
    lab = _checks.as_int_labels(gt_labels, "gt_labels", n=g.shape[0], low=0)
    n, m = a.shape[0], g.shape[0]
    if m == 0:
        matched = ssd_match(np.zeros((0, n)), threshold, convention=mp.replace(empty_gt=s.empty_gt))
    else:
        matched = ssd_match(box_iou(g, a, convention=ip), threshold, convention=mp)                    # (M, N)
    fg = matched >= 0
    labels = np.zeros(n, dtype=np.int64)
    labels[fg] = lab[matched[fg]]
    labels[matched == -2] = -1
    deltas = np.zeros_like(a)
    if fg.any():
        deltas[fg] = _encode(g[matched[fg]], a[fg], s, coder)
    return SSDTargets(labels=labels, deltas=deltas, matched=matched, foreground=fg,
                      num_foreground=int(fg.sum()), level=_levels_of(lv, fg))
