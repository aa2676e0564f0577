"""The second stage of Faster R-CNN: RoI sampling, the box head, the Fast R-CNN loss, detections.

Training, per image (torchvision ``models/detection/roi_heads.py`` ``RoIHeads.select_training_samples``)::

    proposals + ground truths      the gt boxes are appended to the proposals (every gt gets a RoI)
    IoU(gt, RoI), best gt per RoI  fg: IoU >= 0.5; bg: IoU < 0.5 (py-faster-rcnn: 0.1 <= IoU < 0.5)
    balanced sample                512 RoIs, at most 25 % foreground (py-faster-rcnn: 128, 32 fg)
    targets                        encode(matched gt, RoI) with weights (10, 10, 5, 5)

then :func:`box_head_forward` (two FC layers with ReLU, a class score and class-specific box deltas
per RoI; in :mod:`refdet.box_head`, re-exported here) and :func:`fastrcnn_loss_forward`; at inference
:func:`fastrcnn_postprocess` (softmax, a box per class, clip, score threshold, per-class NMS, the best 100).

Where the frameworks differ (convention tables of ``sample_rois``, ``fastrcnn_loss``,
``fastrcnn_postprocess``):

* **background index**: torchvision and py-faster-rcnn put background at class 0 (labels 1..K are
  objects, ``num_classes`` counts the background); detectron2 and mmdet put it *last* (objects
  0..K-1, background K), and their box predictor has K (not K + 1) groups of 4 deltas.
* **sample order**: torchvision returns the sampled RoIs in proposal order (``torch.where(pos | neg)``),
  detectron2 and py-faster-rcnn the foreground draws then the background draws.
* **box loss**: torchvision smooth L1 with ``beta = 1/9`` summed over foreground RoIs and divided by
  the number of sampled RoIs; detectron2 and mmdet plain L1 (``beta = 0``), same normalisation (0 for
  an empty batch instead of NaN); py-faster-rcnn ``SmoothL1Loss`` with ``sigma = 1`` (``beta = 1 /
  sigma**2``) on inside-weighted differences, outside weights, summed and divided by the RoI count.
* **detections**: torchvision drops boxes smaller than 0.01 px; py-faster-rcnn decodes with its
  denormalised test deltas (weights 1), NMS at 0.3 with +1 IoU, and keeps every box scoring at least
  the 100th best score (ties can give more than 100), grouped by class.

Dtypes follow the inputs (float32 stays float32).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.box_coder import decode_boxes, encode_boxes
from refdet.box_head import BoxHeadCache, BoxHeadOutput, box_head_backward, box_head_forward, box_head_init
from refdet.boxes import clip_boxes_to_image, remove_small_boxes
from refdet.iou import box_iou
from refdet.matcher import match_details
from refdet.nms import batched_nms
from refdet.sampler import sample_balanced, sample_balanced_indices

__all__ = [
    "RoISamples",
    "sample_rois",
    "class_specific_targets",
    "BoxHeadOutput",
    "BoxHeadCache",
    "box_head_init",
    "box_head_forward",
    "box_head_backward",
    "FastRCNNLoss",
    "FastRCNNLossCache",
    "FastRCNNLossGrads",
    "fastrcnn_loss_forward",
    "fastrcnn_loss_backward",
    "FastRCNNDetections",
    "fastrcnn_postprocess",
]


def _check_weights(value):
    w = _checks.check_weights4(value, "box_weights")
    return tuple(float(v) for v in w)


_WEIGHTS = conventions.option(
    "box coder weights (wx, wy, ww, wh) of the box head (stds under weight_mode 'divide')", check=_check_weights,
    source="torchvision RoIHeads bbox_reg_weights (10, 10, 5, 5); detectron2 ROI_BOX_HEAD.BBOX_REG_WEIGHTS; "
           "mmdet target_stds (0.1, 0.1, 0.2, 0.2); py-faster-rcnn BBOX_NORMALIZE_STDS (0.1, 0.1, 0.2, 0.2)")
_BACKGROUND = conventions.choice(
    ("first", "last"), "class index of the background: 0 (labels 1..K objects) or K (labels 0..K-1 objects)",
    source="torchvision/py-faster-rcnn: 0; detectron2 FastRCNNOutputLayers / mmdet BBoxHead: num_classes")

conventions.register(
    "sample_rois",
    {
        "torchvision": dict(batch_size_per_image=512, positive_fraction=0.25, fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5,
                            bg_iou_thresh_lo=0.0, append_gt=True, order="index", fg_rounding="floor",
                            background="first", box_weights=(10.0, 10.0, 5.0, 5.0)),
        "detectron2": dict(batch_size_per_image=512, positive_fraction=0.25, fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5,
                           bg_iou_thresh_lo=0.0, append_gt=True, order="fg_first", fg_rounding="floor",
                           background="last", box_weights=(10.0, 10.0, 5.0, 5.0)),
        "mmdet": dict(batch_size_per_image=512, positive_fraction=0.25, fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5,
                      bg_iou_thresh_lo=0.0, append_gt=True, order="fg_first", fg_rounding="floor",
                      background="last", box_weights=(0.1, 0.1, 0.2, 0.2)),
        "caffe": dict(batch_size_per_image=128, positive_fraction=0.25, fg_iou_thresh=0.5, bg_iou_thresh_hi=0.5,
                      bg_iou_thresh_lo=0.1, append_gt=True, order="fg_first", fg_rounding="round",
                      background="first", box_weights=(0.1, 0.1, 0.2, 0.2)),
    },
    knobs={
        "batch_size_per_image": conventions.integer(
            "RoIs sampled per image", low=1,
            source="torchvision box_batch_size_per_image 512; detectron2 ROI_HEADS.BATCH_SIZE_PER_IMAGE 512; "
                   "mmdet RandomSampler num 512; py-faster-rcnn TRAIN.BATCH_SIZE 128"),
        "positive_fraction": conventions.number(
            "largest foreground share of the sample", low=0.0, high=1.0,
            source="0.25 everywhere (box_positive_fraction, POSITIVE_FRACTION, pos_fraction, FG_FRACTION)"),
        "fg_iou_thresh": conventions.number(
            "a RoI whose best IoU is >= this is foreground", low=0.0, high=1.0,
            source="torchvision box_fg_iou_thresh; detectron2 IOU_THRESHOLDS [0.5]; py-faster-rcnn FG_THRESH"),
        "bg_iou_thresh_hi": conventions.number(
            "background needs best IoU < this (between it and fg_iou_thresh: ignored)", low=0.0, high=1.0,
            source="torchvision box_bg_iou_thresh 0.5; py-faster-rcnn BG_THRESH_HI 0.5"),
        "bg_iou_thresh_lo": conventions.number(
            "background needs best IoU >= this (below: ignored)", low=0.0, high=1.0,
            source="py-faster-rcnn TRAIN.BG_THRESH_LO 0.1 (0 elsewhere: every low-IoU RoI is background)"),
        "append_gt": conventions.flag(
            "add the ground-truth boxes to the proposals before matching",
            source="torchvision add_gt_proposals; detectron2 PROPOSAL_APPEND_GT; py-faster-rcnn proposal_target_layer"),
        "order": conventions.choice(
            ("index", "fg_first"), "'index': sampled RoIs in proposal order (torch.where(pos | neg)); "
                                   "'fg_first': foreground draws then background draws",
            source="torchvision RoIHeads.subsample; detectron2 _sample_proposals; py-faster-rcnn _sample_rois"),
        "fg_rounding": conventions.choice(
            ("floor", "round"), "foreground quota int(batch * fraction) or np.round(batch * fraction)",
            source="torchvision BalancedPositiveNegativeSampler int(); py-faster-rcnn np.round(FG_FRACTION * 128)"),
        "background": _BACKGROUND,
        "box_weights": _WEIGHTS,
    },
    doc="IoU, matching and target encoding follow the profile of the same name (box_iou, match, encode_boxes): "
        "py-faster-rcnn's +1 IoU and +1 encoding with stds. detectron2/mmdet label the background num_classes.",
)


def _as_list(x, name, B=None):
    if isinstance(x, np.ndarray) or not isinstance(x, (list, tuple)):
        raise TypeError(f"`{name}` must be a list with one array per image; got {type(x).__name__}")
    if B is not None and len(x) != B:
        raise ValueError(f"`{name}` must have one entry per image ({B}); got {len(x)}")
    return list(x)


class RoISamples(NamedTuple):
    """The sampled RoIs of each image (lists with one entry per image).

    rois : list of ndarray (S_i, 4)
        Sampled proposals (and ground truths), in the convention's order.
    labels : list of ndarray (S_i,) int64
        Class of each RoI; background is 0 (``background="first"``) or ``num_classes - 1`` ("last").
    matched_idxs : list of ndarray (S_i,) int64
        Ground truth each RoI was compared with (its best gt; 0 for an image without gt).
    regression_targets : list of ndarray (S_i, 4)
        ``encode(gt[matched], roi)`` with the box weights (also for background RoIs, unused by the loss).
    sampled_indices : list of ndarray (S_i,) int64
        Index of each RoI in ``proposals + appended gts``.
    """
    rois: list
    labels: list
    matched_idxs: list
    regression_targets: list
    sampled_indices: list


@conventions.documented("sample_rois")
def sample_rois(proposals, gt_boxes, gt_labels, *, num_classes: Optional[int] = None, rng=None,
                permutations=None, convention="torchvision", batch_size_per_image: Optional[int] = None,
                positive_fraction: Optional[float] = None, fg_iou_thresh: Optional[float] = None,
                bg_iou_thresh_hi: Optional[float] = None, bg_iou_thresh_lo: Optional[float] = None,
                append_gt: Optional[bool] = None, order: Optional[str] = None, fg_rounding: Optional[str] = None,
                background: Optional[str] = None, box_weights=None) -> RoISamples:
    """Match proposals to ground truths and sample the RoIs the box head trains on.

    Parameters
    ----------
    proposals : list of ndarray (P_i, 4)
        xyxy proposals per image (e.g. :func:`refdet.proposals.select_proposals` boxes).
    gt_boxes : list of ndarray (M_i, 4)
    gt_labels : list of ndarray (M_i,) int
        Object classes in the convention's numbering: ``1..K`` when background is first, ``0..K-1``
        when it is last.
    num_classes : int, optional
        Classes including the background (K + 1); needed when background is last (it is its label).
    rng : None, int or Generator
        Draws the sample (``rng.permutation`` of the foreground then the background candidates).
    permutations : list of (pos_perm, neg_perm), optional
        Per image, the framework's own draws (torchvision: ``torch.randperm(#fg)``,
        ``torch.randperm(#bg)``) instead of ``rng``: reproduces a torchvision run exactly.
    convention : str or conventions.Profile
        Table below.
    batch_size_per_image, positive_fraction, fg_iou_thresh, bg_iou_thresh_hi, bg_iou_thresh_lo, append_gt,
    order, fg_rounding, background, box_weights
        Override single knobs of the table; None keeps the profile's value.

    Returns
    -------
    RoISamples
    """
    s = conventions.resolve("sample_rois", convention, batch_size_per_image=batch_size_per_image,
                            positive_fraction=positive_fraction, fg_iou_thresh=fg_iou_thresh,
                            bg_iou_thresh_hi=bg_iou_thresh_hi, bg_iou_thresh_lo=bg_iou_thresh_lo, append_gt=append_gt,
                            order=order, fg_rounding=fg_rounding, background=background, box_weights=box_weights)
    props = _as_list(proposals, "proposals")
    B = len(props)
    gts = _as_list(gt_boxes, "gt_boxes", B)
    gls = _as_list(gt_labels, "gt_labels", B)
    if s.background == "last":
        if num_classes is None:
            raise ValueError("`num_classes` (including the background) is needed when the background label "
                             "is last (detectron2, mmdet)")
        bg = _checks.check_int(num_classes, "num_classes", low=1) - 1
    else:
        bg = 0
    gen = _checks.as_rng(rng) if permutations is None else None
    if permutations is not None:
        permutations = _as_list(permutations, "permutations", B)
    out = RoISamples([], [], [], [], [])
    name = s.name
    for i in range(B):
        p = _checks.as_boxes(props[i], f"proposals[{i}]")
        g = _checks.as_boxes(gts[i], f"gt_boxes[{i}]", dtype=p.dtype)
        # every sampled RoI is a reference box of the box coder (the gts join the candidates): its
        # width and height must be > 0 (encode_boxes' rule), checked here to name the argument
        for arr, what in ((p, f"proposals[{i}]"), (g, f"gt_boxes[{i}]")):
            plus = 1 if conventions.resolve("encode_boxes", name)["plus_one"] else 0
            bad = ~((arr[:, 2] - arr[:, 0] + plus > 0) & (arr[:, 3] - arr[:, 1] + plus > 0))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"`{what}` row {j} has a width or height <= 0: {arr[j].tolist()} (RoIs are encoded "
                                 f"against: detectron2's box coder asserts positive sizes)")
        lab = _checks.as_int_labels(gls[i], f"gt_labels[{i}]", n=len(g))
        if s.background == "first" and lab.size and lab.min() < 1:
            raise ValueError(f"`gt_labels[{i}]` must be object classes >= 1 (0 is the background); got {lab.min()}")
        if s.background == "last" and lab.size and (lab.min() < 0 or lab.max() >= bg):
            raise ValueError(f"`gt_labels[{i}]` must lie in [0, {bg}) (background is {bg}); got {lab.tolist()}")
        cand = np.concatenate([p, g]) if s.append_gt else p
        if len(g):
            det = match_details(box_iou(g, cand, convention=name), high=s.fg_iou_thresh, low=s.bg_iou_thresh_hi,
                                allow_low_quality_matches=False, convention=name, allow_nan=True)
            matched = np.maximum(det.matches, 0)
            labels = lab[matched].copy()
            bgm = det.matches == -1
            if s.bg_iou_thresh_lo > 0:
                ignore = bgm & ~(det.max_iou >= cand.dtype.type(s.bg_iou_thresh_lo))
                bgm &= ~ignore
                labels[ignore] = -1
            labels[bgm] = bg
            labels[det.matches == -2] = -1
        else:                                     # an image without objects: every RoI is background
            matched = np.zeros(len(cand), dtype=np.int64)
            labels = np.full(len(cand), bg, dtype=np.int64)
        # the sampler's encoding: >= 1 positive, 0 negative, -1 ignored
        fg = (labels >= 0) & (labels != bg)
        code = np.where(fg, 1, np.where(labels == bg, 0, -1))
        batch = s.batch_size_per_image
        frac = s.positive_fraction
        if s.fg_rounding == "round":              # np.round(FG_FRACTION * BATCH_SIZE), half to even
            q = float(np.round(frac * batch))
            frac = min(1.0, (q + 0.5) / batch)   # the sampler takes int(batch * frac) = q
        perm = permutations[i] if permutations is not None else None
        if s.order == "index":
            pos, neg = sample_balanced(code, batch, frac, rng=gen if perm is None else None, permutation=perm)
            idx = np.flatnonzero(pos | neg)
        else:
            pi, ni = sample_balanced_indices(code, batch, frac, rng=gen if perm is None else None, permutation=perm)
            idx = np.concatenate([pi, ni]).astype(np.int64)
        rois = cand[idx]
        gsel = g if len(g) else np.zeros((1, 4), dtype=cand.dtype)
        targets = encode_boxes(gsel[matched[idx]], rois, weights=s.box_weights, convention=name)
        out.rois.append(rois)
        out.labels.append(labels[idx])
        out.matched_idxs.append(matched[idx])
        out.regression_targets.append(targets)
        out.sampled_indices.append(idx)
    return out


def class_specific_targets(regression_targets: np.ndarray, labels: np.ndarray, num_classes: int, *,
                           background: str = "first", inside_weights=(1.0, 1.0, 1.0, 1.0)):
    """py-faster-rcnn's ``_get_bbox_regression_labels``: targets spread into per-class slots.

    Parameters
    ----------
    regression_targets : ndarray, shape (S, 4)
    labels : ndarray of int, shape (S,)
    num_classes : int
        Including the background.
    background : {"first", "last"}
        Background RoIs (and ignored, -1) get no target.
    inside_weights : 4 numbers
        ``TRAIN.BBOX_INSIDE_WEIGHTS`` (1, 1, 1, 1).

    Returns
    -------
    bbox_targets, inside_weights, outside_weights : ndarray, shape (S, 4 * num_classes)
        Row ``s`` holds the target in columns ``4 * labels[s] : 4 * labels[s] + 4``;
        ``outside_weights = inside_weights > 0`` (as ``proposal_target_layer`` sets them).
    """
    t = _checks.as_float_array(regression_targets, "regression_targets", ndim=2, last=4)
    lab = _checks.as_int_labels(labels, "labels", n=len(t))
    C = _checks.check_int(num_classes, "num_classes", low=1)
    _checks.check_choice(background, "background", ("first", "last"))
    iw = np.asarray(inside_weights, dtype=t.dtype)
    bg = 0 if background == "first" else C - 1
    out = np.zeros((len(t), 4 * C), dtype=t.dtype)
    win = np.zeros_like(out)
    fg = np.flatnonzero((lab >= 0) & (lab != bg) & (lab < C))
    cols = 4 * lab[fg][:, None] + np.arange(4)
    out[fg[:, None], cols] = t[fg]
    win[fg[:, None], cols] = iw
    return out, win, (win > 0).astype(t.dtype)


# ---------------------------------------------------------------------------------------------------
# the Fast R-CNN loss
# ---------------------------------------------------------------------------------------------------

conventions.register(
    "fastrcnn_loss",
    {
        "torchvision": {"background": "first", "beta": 1.0 / 9, "empty": "nan"},
        "detectron2": {"background": "last", "beta": 0.0, "empty": "zero"},
        "mmdet": {"background": "last", "beta": 0.0, "empty": "zero"},
        "caffe": {"background": "first", "beta": 1.0, "empty": "nan"},
    },
    knobs={
        "background": _BACKGROUND,
        "beta": conventions.number(
            "smooth L1 transition: 0.5 x^2 / beta below beta, |x| - 0.5 beta above; 0: L1 (py-faster-rcnn: "
            "beta = 1 / sigma^2)", low=0.0,
            source="torchvision fastrcnn_loss beta=1/9; detectron2 ROI_BOX_HEAD.SMOOTH_L1_BETA 0.0; mmdet L1Loss; "
                   "py-faster-rcnn SmoothL1Loss sigma 1 (train.prototxt loss_bbox)"),
        "empty": conventions.choice(
            ("nan", "zero"), "the losses of an empty batch: 0 / 0 (torchvision's mean) or 0 (detectron2)",
            source="torchvision F.cross_entropy mean of nothing; detectron2 cross_entropy / max(N, 1)"),
    },
    doc="Classification: softmax cross-entropy averaged over the N sampled RoIs. Box: the foreground RoIs' "
        "deltas of their own class (class-agnostic when box_regression has 4 columns) against their targets, "
        "summed and divided by N (every framework normalises by the sampled RoIs, not the foreground ones).",
)


class FastRCNNLoss(NamedTuple):
    classification: float
    box: float


class FastRCNNLossCache(NamedTuple):
    prob: np.ndarray             # (N, C) softmax
    labels: np.ndarray           # (N,) int64
    fg: np.ndarray               # (F,) indices of foreground RoIs
    slots: np.ndarray            # (F,) their box-regression class slot
    diff: np.ndarray             # (F, 4) pred - target (inside-weighted)
    outside: np.ndarray          # (F, 4)
    beta: float
    n: int
    reg_shape: tuple
    dtype: np.dtype


class FastRCNNLossGrads(NamedTuple):
    dclass_logits: np.ndarray
    dbox_regression: np.ndarray


def _slots(labels, C, n_slots, background):
    """Box-regression group of each foreground label (and which labels are foreground)."""
    bg = 0 if background == "first" else C - 1
    fg = np.flatnonzero((labels != bg) & (labels >= 0))
    lab = labels[fg]
    if n_slots == 1:
        slot = np.zeros_like(lab)
    elif n_slots == C:
        slot = lab
    elif n_slots == C - 1:
        slot = lab - 1 if background == "first" else lab
    else:
        raise ValueError(f"`box_regression` must have 4, 4 * {C - 1} or 4 * {C} columns for {C} classes; "
                         f"got {4 * n_slots}")
    return fg, slot


def _smooth_l1(x, beta):
    a = np.abs(x)
    if beta < 1e-5:            # detectron2's smooth_l1_loss: "if beta < 1e-5: loss = |x|"
        return a
    return np.where(a < beta, 0.5 * x * x / beta, a - 0.5 * beta)


@conventions.documented("fastrcnn_loss")
def fastrcnn_loss_forward(class_logits: np.ndarray, box_regression: np.ndarray, labels, regression_targets, *,
                          inside_weights=None, outside_weights=None, convention="torchvision",
                          background: Optional[str] = None, beta: Optional[float] = None,
                          empty: Optional[str] = None):
    """The Fast R-CNN loss of the sampled RoIs (torchvision ``fastrcnn_loss``).

    Parameters
    ----------
    class_logits : ndarray, shape (N, C)
        C classes including the background.
    box_regression : ndarray, shape (N, 4 * G)
        G = C (torchvision), C - 1 (detectron2, mmdet) or 1 (class-agnostic).
    labels : ndarray of int, shape (N,) or list of per-image arrays (concatenated)
        Background per the convention; -1 is not allowed (sampled RoIs are never ignored).
    regression_targets : ndarray, shape (N, 4), or list (concatenated)
    inside_weights, outside_weights : ndarray, shape (N, 4), optional
        py-faster-rcnn's weights of the foreground rows (default 1): the box loss is
        ``outside * smooth_l1(inside * (pred - target))``.
    convention, background, beta, empty
        Table below.

    Returns
    -------
    loss : FastRCNNLoss
        ``classification = mean_n -log softmax(logits_n)[label_n]``; ``box = sum over foreground RoIs
        and the 4 coordinates of smooth_l1(pred[slot] - target) / N``.
    cache : FastRCNNLossCache
    """
    s = conventions.resolve("fastrcnn_loss", convention, background=background, beta=beta, empty=empty)
    z = _checks.as_float_array(class_logits, "class_logits", ndim=2)
    N, C = z.shape
    dt = z.dtype
    d = _checks.as_float_array(box_regression, "box_regression", ndim=2, dtype=dt)
    if len(d) != N or d.shape[1] % 4:
        raise ValueError(f"`box_regression` must have shape ({N}, 4 * G); got {d.shape}")
    lab = np.concatenate([_checks.as_int_labels(v, "labels") for v in labels]) if isinstance(labels, list) \
        else _checks.as_int_labels(labels, "labels")
    tg = np.concatenate(list(regression_targets)) if isinstance(regression_targets, list) else regression_targets
    tg = _checks.as_float_array(tg, "regression_targets", dtype=dt)
    if lab.shape != (N,):
        raise ValueError(f"`labels` must hold one label per RoI ({N}); got {lab.shape[0]}")
    if tg.shape != (N, 4):
        raise ValueError(f"`regression_targets` must have shape ({N}, 4); got {tg.shape}")
    if lab.size and (lab.min() < 0 or lab.max() >= C):
        raise ValueError(f"`labels` must lie in [0, {C}) for {C} class logits; got {lab.min()}..{lab.max()}")
    # softmax cross-entropy, mean over the N RoIs
    m = z.max(axis=1, keepdims=True) if N else np.zeros((0, 1), dt)
    e = np.exp(z - m)
    ssum = e.sum(axis=1, keepdims=True)
    logp = (z - m) - np.log(ssum)
    nll = -logp[np.arange(N), lab]
    fg, slot = _slots(lab, C, d.shape[1] // 4, s.background)
    pred = d.reshape(N, d.shape[1] // 4, 4)[fg, slot]
    iw = np.ones((len(fg), 4), dt) if inside_weights is None else \
        _checks.as_float_array(inside_weights, "inside_weights", dtype=dt)[fg]
    ow = np.ones((len(fg), 4), dt) if outside_weights is None else \
        _checks.as_float_array(outside_weights, "outside_weights", dtype=dt)[fg]
    diff = iw * (pred - tg[fg])
    box_sum = (ow * _smooth_l1(diff, s.beta)).sum()
    if N == 0 and s.empty == "zero":
        cls, box = 0.0, 0.0
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            cls = float(nll.sum() / dt.type(N)) if N else float("nan")
            box = float(box_sum / dt.type(N)) if N else float("nan")
    prob = e / ssum
    cache = FastRCNNLossCache(prob, lab, fg, slot, diff, ow * iw, float(s.beta), N, d.shape, dt)
    return FastRCNNLoss(cls, box), cache


def fastrcnn_loss_backward(dloss, cache: FastRCNNLossCache) -> FastRCNNLossGrads:
    """Gradients of :func:`fastrcnn_loss_forward`.

    Parameters
    ----------
    dloss : FastRCNNLoss or (dclassification, dbox)
    cache : FastRCNNLossCache

    Returns
    -------
    FastRCNNLossGrads
        ``dclass_logits = (softmax - onehot) / N * dcls``; ``dbox_regression`` nonzero only in each
        foreground RoI's class slot: ``d smooth_l1 / dx = clip(x / beta, -1, 1)`` (``sign(x)`` for the
        L1 of beta 0, 0 at x = 0) times the weights, ``/ N * dbox``.
    """
    if not isinstance(cache, FastRCNNLossCache):
        raise TypeError(f"`cache` must be the FastRCNNLossCache of fastrcnn_loss_forward; got {type(cache).__name__}")
    if not isinstance(dloss, tuple) or len(dloss) != 2:
        raise TypeError("`dloss` must be a pair (dclassification, dbox)")
    dc = _checks.check_real(dloss[0], "dloss.classification")
    db = _checks.check_real(dloss[1], "dloss.box")
    dt = cache.dtype
    N = cache.n
    dz = np.zeros_like(cache.prob)
    dd = np.zeros((N, cache.reg_shape[1] // 4, 4), dtype=dt)
    if N:
        dz = cache.prob.copy()
        dz[np.arange(N), cache.labels] -= 1
        dz *= dt.type(dc / N)
        x = cache.diff
        g = np.sign(x) if cache.beta < 1e-5 else np.clip(x / dt.type(cache.beta), -1, 1)
        dd[cache.fg, cache.slots] = g * cache.outside * dt.type(db / N)
    return FastRCNNLossGrads(dz, dd.reshape(cache.reg_shape))


# ---------------------------------------------------------------------------------------------------
# inference
# ---------------------------------------------------------------------------------------------------

conventions.register(
    "fastrcnn_postprocess",
    {
        "torchvision": dict(background="first", score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
                            min_size=1e-2, box_weights=(10.0, 10.0, 5.0, 5.0), top_k_rule="first",
                            order="score", coordinate_trick="torchvision"),
        "detectron2": dict(background="last", score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
                           min_size=None, box_weights=(10.0, 10.0, 5.0, 5.0), top_k_rule="first", order="score",
                           coordinate_trick="torchvision"),
        "mmdet": dict(background="last", score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
                      min_size=None, box_weights=(0.1, 0.1, 0.2, 0.2), top_k_rule="first", order="score",
                      coordinate_trick=True),
        "caffe": dict(background="first", score_thresh=0.05, nms_thresh=0.3, detections_per_img=100,
                      min_size=None, box_weights=(1.0, 1.0, 1.0, 1.0), top_k_rule="score_at_k", order="class",
                      coordinate_trick=False),
    },
    knobs={
        "background": _BACKGROUND,
        "score_thresh": conventions.number("keep class scores > this (strict)", low=0.0, high=1.0,
                                           source="torchvision box_score_thresh 0.05; detectron2 SCORE_THRESH_TEST "
                                                  "0.05; mmdet score_thr 0.05; py-faster-rcnn test_net thresh 0.05"),
        "nms_thresh": conventions.number("per-class NMS IoU threshold", low=0.0, high=1.0,
                                         source="torchvision box_nms_thresh 0.5; detectron2 NMS_THRESH_TEST 0.5; "
                                                "mmdet nms iou_threshold 0.5; py-faster-rcnn TEST.NMS 0.3"),
        "detections_per_img": conventions.integer("detections kept per image (0: all)", low=0,
                                                  source="torchvision box_detections_per_img 100; detectron2 "
                                                         "DETECTIONS_PER_IMAGE 100; py-faster-rcnn max_per_image 100"),
        "min_size": conventions.number("drop boxes with a side below this (None: keep all)", low=0.0,
                                       allow_none=True,
                                       source="torchvision postprocess_detections remove_small_boxes(1e-2)"),
        "box_weights": _WEIGHTS,
        "top_k_rule": conventions.choice(
            ("first", "score_at_k"), "'first': the first k by score; 'score_at_k': every detection scoring >= the "
                                     "k-th best score (py-faster-rcnn; ties can keep more than k)",
            source="py-faster-rcnn tools/test_net.py: image_thresh = np.sort(image_scores)[-max_per_image]"),
        "order": conventions.choice(("score", "class"),
                                    "detections by decreasing score, or grouped by class (score order inside)",
                                    source="py-faster-rcnn all_boxes[j][i] per class"),
        "coordinate_trick": conventions.choice(
            (False, True, "torchvision"), "per-class NMS by offsetting each class's boxes (torchvision: when at "
                                          "most 1000 candidates; mmcv: below 10000)",
            source="torchvision ops/boxes.py batched_nms (detectron2 calls it); mmcv ops/nms.py batched_nms"),
    },
    doc="Decoding, clipping and the per-class NMS follow the decode_boxes / clip_boxes_to_image / batched_nms "
        "profile of the same name (py-faster-rcnn: +1 widths, clip to W - 1, +1 IoU, IoU >= thr suppresses; its "
        "test deltas are the denormalised bbox_pred, hence weights 1). torchvision's batched_nms uses its "
        "coordinate trick when at most 1000 candidates remain, reproduced here.",
)


class FastRCNNDetections(NamedTuple):
    """Detections per image (lists with one entry per image)."""
    boxes: list      # (D_i, 4) xyxy, clipped
    scores: list     # (D_i,) softmax probabilities
    labels: list     # (D_i,) int64 object classes in the convention's numbering
    rois: list       # (D_i,) int64 index of the proposal each detection came from


@conventions.documented("fastrcnn_postprocess")
def fastrcnn_postprocess(class_logits: np.ndarray, box_regression: np.ndarray, proposals, image_sizes, *,
                         convention="torchvision", exp=None, background: Optional[str] = None,
                         score_thresh: Optional[float] = None, nms_thresh: Optional[float] = None,
                         detections_per_img: Optional[int] = None, min_size: Optional[float] = None,
                         box_weights=None, top_k_rule: Optional[str] = None, order: Optional[str] = None,
                         coordinate_trick=None) -> FastRCNNDetections:
    """Box-head outputs to detections (torchvision ``RoIHeads.postprocess_detections``).

    Parameters
    ----------
    class_logits : ndarray, shape (R, C)
        All images' RoIs concatenated.
    box_regression : ndarray, shape (R, 4 * G)
        G = C (torchvision), C - 1 (detectron2, mmdet) or 1 (class-agnostic).
    proposals : list of ndarray (R_i, 4)
        The RoIs of each image (sum R_i = R).
    image_sizes : list of (H, W)
    convention : str or conventions.Profile
        Table below.
    background, score_thresh, nms_thresh, detections_per_img, min_size, box_weights, top_k_rule, order,
    coordinate_trick
        Override single knobs of the table; None keeps the profile's value (so ``min_size`` cannot be
        switched off by passing None: pass ``min_size=0.0``).
    exp : callable, optional
        Elementwise exponential of the decode (default: correctly rounded).

    Returns
    -------
    FastRCNNDetections
        Per image: every (RoI, class) pair with ``softmax > score_thresh``, decoded with that class's
        deltas, clipped, small boxes dropped, per-class NMS, the best ``detections_per_img``.
        Candidates are enumerated RoI-major, class-minor (``(r, k)``), as torchvision flattens them;
        equal scores keep that order.
    """
    s = conventions.resolve("fastrcnn_postprocess", convention, background=background, score_thresh=score_thresh,
                            nms_thresh=nms_thresh, detections_per_img=detections_per_img, min_size=min_size,
                            box_weights=box_weights, top_k_rule=top_k_rule, order=order,
                            coordinate_trick=coordinate_trick)
    z = _checks.as_float_array(class_logits, "class_logits", ndim=2)
    R, C = z.shape
    dt = z.dtype
    d = _checks.as_float_array(box_regression, "box_regression", ndim=2, dtype=dt)
    props = _as_list(proposals, "proposals")
    sizes = _as_list(image_sizes, "image_sizes", len(props))
    counts = [len(_checks.as_boxes(p, f"proposals[{i}]")) for i, p in enumerate(props)]
    if sum(counts) != R or len(d) != R:
        raise ValueError(f"`proposals` hold {sum(counts)} RoIs but `class_logits` has {R} rows and "
                         f"`box_regression` {len(d)}")
    G = d.shape[1] // 4
    if d.shape[1] % 4 or G not in (1, C - 1, C):
        raise ValueError(f"`box_regression` must have 4, 4 * {C - 1} or 4 * {C} columns; got {d.shape[1]}")
    e = np.exp(z - z.max(axis=1, keepdims=True)) if R else z
    prob = e / e.sum(axis=1, keepdims=True) if R else z
    # foreground classes and their box slots
    fg_cls = np.arange(1, C) if s.background == "first" else np.arange(C - 1)
    if G == 1:
        slot = np.zeros(C - 1, np.int64)
    elif G == C:
        slot = fg_cls
    else:
        slot = fg_cls - 1 if s.background == "first" else fg_cls
    name = s.name
    out = FastRCNNDetections([], [], [], [])
    start = 0
    for i, n in enumerate(counts):
        p = _checks.as_boxes(props[i], f"proposals[{i}]", dtype=dt)
        size = _checks.check_image_size(sizes[i], f"image_sizes[{i}]")
        zs = prob[start:start + n]
        ds = d[start:start + n]
        start += n
        # decode every (RoI, class slot): (n, G, 4) -> candidates (n, K) RoI-major
        boxes = decode_boxes(ds, p, weights=s.box_weights, convention=name, exp=exp).reshape(n, G, 4)
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), size, convention=name).reshape(n, G, 4)
        cb = boxes[:, slot].reshape(-1, 4)
        cs = zs[:, fg_cls].reshape(-1)
        cl = np.broadcast_to(fg_cls, (n, len(fg_cls))).reshape(-1)
        cr = np.repeat(np.arange(n), len(fg_cls))
        keep = np.flatnonzero(cs > dt.type(s.score_thresh))
        cb, cs, cl, cr = cb[keep], cs[keep], cl[keep], cr[keep]
        if s.min_size is not None:
            keep = remove_small_boxes(cb, s.min_size, convention=name)
            cb, cs, cl, cr = cb[keep], cs[keep], cl[keep], cr[keep]
        keep = batched_nms(cb, cs, cl, s.nms_thresh, convention=name, coordinate_trick=s.coordinate_trick)
        k = s.detections_per_img
        if k and len(keep) > k:
            if s.top_k_rule == "first":
                keep = keep[:k]
            else:
                kth = np.sort(cs[keep])[-k]
                keep = keep[cs[keep] >= kth]
        if s.order == "class":
            keep = keep[np.argsort(cl[keep], kind="stable")]
        out.boxes.append(cb[keep])
        out.scores.append(cs[keep])
        out.labels.append(cl[keep].astype(np.int64))
        out.rois.append(cr[keep].astype(np.int64))
    return out
