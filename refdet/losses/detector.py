"""The composed detector losses as forward/backward pairs: RPN, RetinaNet and SSD (MultiBox), each
with its framework's normaliser.

See :mod:`refdet.losses` for the shape of every pair and the dtype rules.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.losses._reduction import _c_order, _check_cache
from refdet.losses.elementwise import (FocalCache, _bce_elementwise, _focal_dx, _focal_params, _log_softmax,
                                       _sigmoid, _smooth_l1_elementwise, _smooth_l1_grad,
                                       sigmoid_focal_loss_forward)

__all__ = [
    "rpn_loss_forward", "rpn_loss_backward",
    "retinanet_loss_forward", "retinanet_loss_backward",
    "multibox_loss_forward", "multibox_loss_backward",
    "LossTargets", "RPNLoss", "RetinaNetLoss", "MultiBoxLoss",
    "RPNLossGrads", "RetinaNetLossGrads", "MultiBoxLossGrads",
]

Convention = Union[str, conventions.Profile]


# ------------------------------------------------------------------------------------------------
# Named results
# ------------------------------------------------------------------------------------------------

class RPNLossGrads(NamedTuple):
    """Gradients of :func:`rpn_loss_forward` w.r.t. its objectness logits and box deltas."""
    dobjectness: np.ndarray
    ddeltas: np.ndarray


class RetinaNetLossGrads(NamedTuple):
    """Gradients of :func:`retinanet_loss_forward` w.r.t. its class logits and box deltas."""
    dcls_logits: np.ndarray
    dbox_deltas: np.ndarray


class MultiBoxLossGrads(NamedTuple):
    """Gradients of :func:`multibox_loss_forward` w.r.t. its class logits and box deltas."""
    dconf_logits: np.ndarray
    dloc_deltas: np.ndarray


class LossTargets(NamedTuple):
    """Per-anchor training targets for the composed losses (plain arrays; any object with the fields
    ``labels`` and ``deltas`` works: ``refdet.targets.RPNTargets`` / ``RetinaNetTargets`` /
    ``SSDTargets``, a dict, a ``(labels, deltas)`` pair, or a list of these, one per image).

    Attributes
    ----------
    labels : ndarray of int, shape (B, N) or (N,)
        RPN: 1 positive, 0 negative, -1 ignored (not sampled). RetinaNet (detectron2/mmdet and
        ``refdet.targets`` encoding): class index in [0, K) for a positive, K background, -1 ignored
        (-2, torchvision's ``BETWEEN_THRESHOLDS``, is ignored too). SSD: class index in [1, K) for a
        positive, 0 background, -1 ignored (never mined; an empty image under Caffe's policy).
    deltas : ndarray, shape (B, N, 4) or (N, 4)
        Encoded regression targets; only the rows of positives are read.
    """
    labels: np.ndarray
    deltas: np.ndarray


class RPNLoss(NamedTuple):
    """objectness and box_regression: 0-d arrays (torchvision's ``loss_objectness``, ``loss_rpn_box_reg``)."""
    objectness: np.ndarray
    box_regression: np.ndarray


class RetinaNetLoss(NamedTuple):
    """classification, box_regression: 0-d arrays. normalizer: what the batch sums were divided by
    (shape (B,) for torchvision's per-image normaliser). ema: the updated EMA state (detectron2's
    ``normalizer="ema"``; None otherwise): pass it to the next call."""
    classification: np.ndarray
    box_regression: np.ndarray
    normalizer: np.ndarray
    ema: Optional[float]


class MultiBoxLoss(NamedTuple):
    """classification and box_regression: 0-d arrays (torchvision SSD's loss dict)."""
    classification: np.ndarray
    box_regression: np.ndarray


# Caches ------------------------------------------------------------------------------------------
# Caches ------------------------------------------------------------------------------------------

class RPNLossCache(NamedTuple):
    p: np.ndarray
    labels_f: np.ndarray
    cls_weight: np.ndarray   # per-anchor factor of dL_obj/dx (selection / normaliser)
    diff: np.ndarray
    reg_weight: np.ndarray   # per-anchor factor of the box-loss gradient
    beta: float
    shapes: tuple
    dtype: np.dtype


class RetinaNetLossCache(NamedTuple):
    focal: FocalCache
    cls_weight: np.ndarray   # (B, N, 1) per-anchor factor
    diff: np.ndarray
    reg_weight: np.ndarray   # (B, N, 1)
    beta: float
    shapes: tuple
    dtype: np.dtype


class MultiBoxLossCache(NamedTuple):
    probs: np.ndarray        # (B, P, K)
    labels: np.ndarray       # (B, P)
    weight: np.ndarray       # (B, P): how often each anchor's CE is counted (0, 1 or 2) / N
    positives: np.ndarray    # (B, P) bool
    negatives: np.ndarray    # (B, P) bool, the mined negatives (may hold positives: torchvision)
    diff: np.ndarray
    reg_weight: np.ndarray   # (B, P, 1)
    beta: float
    shapes: tuple
    dtype: np.dtype


# ------------------------------------------------------------------------------------------------
# Convention tables
# ------------------------------------------------------------------------------------------------

conventions.register(
    "rpn_loss",
    {
        "torchvision": {"cls_normalizer": "sampled", "reg_normalizer": "sampled", "beta": 1.0 / 9,
                        "reg_weight": 1.0},
        "detectron2": {"cls_normalizer": "batch_size", "reg_normalizer": "batch_size", "beta": 0.0,
                       "reg_weight": 1.0},
        "caffe": {"cls_normalizer": "sampled", "reg_normalizer": "sampled_per_image", "beta": 1.0 / 9,
                  "reg_weight": 1.0},
        "paper": {"cls_normalizer": "batch_size", "reg_normalizer": "locations", "beta": 1.0,
                  "reg_weight": 10.0},
    },
    knobs={
        "cls_normalizer": conventions.choice(
            ("sampled", "batch_size"),
            "'sampled': BCE mean over the sampled anchors of the batch; 'batch_size': BCE sum / "
            "(batch_size_per_image * B)",
            source="torchvision models/detection/rpn.py compute_loss; detectron2 "
                   "modeling/proposal_generator/rpn.py losses (normalizer = BATCH_SIZE_PER_IMAGE * num_images)"),
        "reg_normalizer": conventions.choice(
            ("sampled", "sampled_per_image", "batch_size", "locations"),
            "'sampled': box-loss sum / number of sampled anchors (batch); 'sampled_per_image': per "
            "image / its sampled count, summed; 'batch_size': / (batch_size_per_image * B); "
            "'locations': / (N / anchors_per_location) per image (the paper's N_reg)",
            source="torchvision rpn.py; detectron2 rpn.py; py-faster-rcnn rpn/anchor_target_layer.py "
                   "(outside weights 1 / num_examples); Faster R-CNN paper eq. (1)"),
        "beta": conventions.number(
            "smooth L1 beta (1/9 = 1/sigma^2 with sigma 3; 0 = L1)", low=0.0,
            source="torchvision rpn.py (beta=1/9); detectron2 SMOOTH_L1_BETA 0.0; py-faster-rcnn "
                   "rpn_loss_bbox sigma 3"),
        "reg_weight": conventions.number(
            "lambda multiplying the box loss (the paper's lambda = 10)", low=0.0,
            source="Faster R-CNN paper eq. (1)"),
    },
    doc="torchvision rpn.py 299-334; detectron2 rpn.py 394-429 (SMOOTH_L1_BETA 0, normaliser "
        "BATCH_SIZE_PER_IMAGE * num_images); py-faster-rcnn anchor_target_layer.py 177-194 "
        "(RPN_POSITIVE_WEIGHT -1: outside weights 1/num_examples) with sigma 3; Faster R-CNN paper "
        "eq. (1): N_cls = 256, N_reg ~ 2400 anchor locations, lambda = 10.",
)

_F32_EPS = float(np.finfo(np.float32).eps)

conventions.register(
    "retinanet_loss",
    {
        "torchvision": {"normalizer": "per_image", "normalizer_eps": 0.0, "box_loss": "smooth_l1",
                        "beta": 1.0},
        "detectron2": {"normalizer": "ema", "normalizer_eps": 0.0, "box_loss": "smooth_l1", "beta": 0.0},
        "mmdet": {"normalizer": "num_pos", "normalizer_eps": _F32_EPS, "box_loss": "l1", "beta": 0.0},
        "caffe": {"normalizer": "fg_plus_one", "normalizer_eps": 0.0, "box_loss": "smooth_l1",
                  "beta": 0.11},
        "paper": {"normalizer": "num_pos", "normalizer_eps": _F32_EPS, "box_loss": "smooth_l1",
                  "beta": 0.11},
    },
    knobs={
        "normalizer": conventions.choice(
            ("per_image", "num_pos", "ema", "fg_plus_one"),
            "'per_image': sum_i / max(1, pos_i), mean over images (torchvision); 'num_pos': batch sum / "
            "(sum pos + normalizer_eps); 'ema': batch sum / EMA of max(1, sum pos) (start 100, momentum "
            "0.9); 'fg_plus_one': batch sum / sum_i (pos_i + 1) (Detectron1)",
            source="torchvision models/detection/retinanet.py compute_loss; mmdet anchor_head.py "
                   "loss_by_feat (avg_factor); detectron2 meta_arch/retinanet.py losses (_ema_update); "
                   "Detectron1 roi_data/retinanet.py (retnet_fg_num)"),
        "normalizer_eps": conventions.number(
            "added to the positive count by 'num_pos' (mmdet: float32 eps)", low=0.0,
            source="mmdet models/losses/utils.py weight_reduce_loss (eps = torch.finfo(torch.float32).eps)"),
        "box_loss": conventions.choice(
            ("smooth_l1", "l1"), "the box loss on the encoded deltas of positives",
            source="torchvision retinanet.py _box_loss (smooth_l1); mmdet RetinaNet config L1Loss"),
        "beta": conventions.number(
            "smooth L1 beta (0 = L1)", low=0.0,
            source="torchvision retinanet.py (beta 1.0 for smooth_l1); detectron2 Base-RetinaNet.yaml "
                   "SMOOTH_L1_BETA 0.0; Detectron1 BBOX_REG_BETA 0.11"),
    },
    doc="torchvision retinanet.py 158-189 and 272-302 (_box_loss smooth_l1 beta 1.0); detectron2 "
        "meta_arch/retinanet.py losses (_ema_update 'loss_normalizer', initial 100, momentum 0.9; "
        "Base-RetinaNet.yaml SMOOTH_L1_BETA 0.0); mmdet anchor_head.py loss_by_feat (avg_factor = "
        "num positives, weight_reduce_loss eps = float32 eps) with L1Loss; Detectron1 "
        "roi_data/retinanet.py (retnet_fg_num += fg + 1, BBOX_REG_BETA 0.11). The paper normalises "
        "by the number of positives; its code (Detectron1) uses beta 0.11.",
)

conventions.register(
    "multibox_loss",
    {
        "torchvision": {"mining_cap": "none", "zero_positive": "max1", "beta": 1.0},
        "mmdet": {"mining_cap": "negatives", "zero_positive": "nan", "beta": 1.0},
        "caffe": {"mining_cap": "negatives", "zero_positive": "max1", "beta": 1.0},
        "paper": {"mining_cap": "negatives", "zero_positive": "zero", "beta": 1.0},
    },
    knobs={
        "mining_cap": conventions.choice(
            ("none", "negatives", "priors_minus_one"),
            "'none': 3*pos negatives by rank with positives at -inf, so positives are counted twice "
            "when 3*pos exceeds the negatives (torchvision, TV14); 'negatives': min(3*pos, #negatives) "
            "(Caffe SSD, mmdet); 'priors_minus_one': min(3*pos, P - 1) and the union pos|neg (ssd.pytorch)",
            source="torchvision models/detection/ssd.py compute_loss; Caffe SSD MineHardExamples; mmdet "
                   "ssd_head.py loss_by_feat_single; ssd.pytorch layers/modules/multibox_loss.py"),
        "zero_positive": conventions.choice(
            ("max1", "nan", "zero"),
            "N = 0 positives in the batch: 'max1' divides by max(1, N) (loss 0); 'nan' divides by N "
            "(0/0, ssd.pytorch, mmdet); 'zero' returns 0 (paper)",
            source="torchvision ssd.py (N = max(1, num_foreground)); ssd.pytorch (N = num_pos.sum()); "
                   "SSD paper section 2.2 (L = 0 if N = 0)"),
        "beta": conventions.number(
            "smooth L1 beta of the localisation loss", low=0.0,
            source="torchvision ssd.py (F.smooth_l1_loss, beta 1); ssd.pytorch; Caffe SmoothL1Loss"),
    },
    doc="torchvision ssd.py 255-324 (neg_to_pos_ratio (1 - 0.25)/0.25 = 3, torch.sort (not stable), "
        "N = max(1, num_foreground)); ssd.pytorch multibox_loss.py 82-117 (clamp(3*pos, max=P-1), "
        "N = num_pos.sum()); Caffe SSD MineHardExamples; mmdet ssd_head.py loss_by_feat_single; "
        "SSD paper section 2.2 (L = 0 if N = 0).",
)


# ------------------------------------------------------------------------------------------------
# Composed detector losses: shared input handling
# ------------------------------------------------------------------------------------------------

def _field(targets, name, index, alternatives=()):
    if isinstance(targets, dict):
        for n in (name,) + tuple(alternatives):
            if n in targets:
                return targets[n]
        raise ValueError(f"`targets` must have a {name!r} entry; got keys {sorted(targets)}")
    for n in (name,) + tuple(alternatives):
        if hasattr(targets, n):
            return getattr(targets, n)
    if isinstance(targets, (tuple, list)) and len(targets) > index:
        return targets[index]
    raise TypeError(f"`targets` must have fields `labels` and `deltas` (a LossTargets, a refdet.targets "
                    f"result, a dict, a (labels, deltas) pair, or a list of these per image); "
                    f"got {type(targets).__name__}")


def _is_per_image_list(targets):
    """A list of per-image targets (objects with ``labels`` or dicts), not a (labels, deltas) pair."""
    return isinstance(targets, list) or (
        isinstance(targets, tuple) and not hasattr(targets, "_fields") and len(targets) > 0
        and (isinstance(targets[0], dict) or hasattr(targets[0], "labels")))


def _target_labels(t):
    """The label array of one targets object in refdet's encoding. A ``refdet.targets.RetinaNetTargets``
    (which has ``foreground`` and ``valid`` masks) is read through those masks, so its own encoding
    (K background, -1 ignored) and refdet's agree by construction."""
    labels = _field(t, "labels", 0)
    if not isinstance(t, dict) and hasattr(t, "foreground") and hasattr(t, "valid") and hasattr(t, "cls_targets"):
        fg = np.asarray(t.foreground, dtype=bool)
        valid = np.asarray(t.valid, dtype=bool)
        k = np.shape(t.cls_targets)[-1]
        labels = np.where(fg, np.asarray(labels), np.where(valid, k, -1))
    return labels


def _target_arrays(targets):
    """(labels, deltas) from any accepted targets form; per-image lists are stacked to (B, N)."""
    if _is_per_image_list(targets):
        labs = [np.asarray(_checks.as_array(_target_labels(t), "targets.labels")) for t in targets]
        dels = [np.asarray(_checks.as_array(_field(t, "deltas", 1, ("regression_targets", "box_targets")),
                                            "targets.deltas")) for t in targets]
        if len({a.shape for a in labs}) > 1:
            raise ValueError(f"per-image `targets` must have the same number of anchors; got label shapes "
                             f"{[a.shape for a in labs]}")
        return np.stack(labs), np.stack(dels)
    return _target_labels(targets), _field(targets, "deltas", 1, ("regression_targets", "box_targets"))


def _head_inputs(logits, deltas, targets, *, logits_ndim, logits_name, deltas_name):
    """Validate the batched head outputs and targets; returns (x, dl, labels, tdeltas, batched)."""
    x = _checks.as_float_array(logits, logits_name)
    dl = _checks.as_float_array(deltas, deltas_name)
    batched = x.ndim == logits_ndim + 1
    if x.ndim not in (logits_ndim, logits_ndim + 1):
        raise ValueError(f"`{logits_name}` must be {logits_ndim}-D or {logits_ndim + 1}-D (batched); "
                         f"got shape {x.shape}")
    if not batched:
        x = x[None]
    if dl.ndim == 2:
        dl = dl[None]
    if dl.ndim != 3 or dl.shape[-1] != 4 or dl.shape[:2] != x.shape[:2]:
        raise ValueError(f"`{deltas_name}` must have shape {x.shape[:2] + (4,)} to match `{logits_name}` "
                         f"{x.shape if batched else x.shape[1:]}; got {np.shape(deltas)}")
    raw_labels, raw_deltas = _target_arrays(targets)
    labels = _checks.as_array(raw_labels, "targets.labels")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"`targets.labels` must be an integer array; got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    if labels.ndim == 1:
        labels = labels[None]
    if labels.shape != x.shape[:2]:
        raise ValueError(f"`targets.labels` must have shape {x.shape[:2]} (one per anchor); got {labels.shape}")
    td = _checks.as_float_array(raw_deltas, "targets.deltas")
    if td.ndim == 2:
        td = td[None]
    if td.shape != dl.shape:
        raise ValueError(f"`targets.deltas` must have shape {dl.shape} (like `{deltas_name}`); got {td.shape}")
    dt = np.promote_types(x.dtype, dl.dtype)
    # C order at the boundary: the per-image and batch sums then add in one order for every layout
    return (_c_order(x.astype(dt, copy=False)), _c_order(dl.astype(dt, copy=False)), _c_order(labels),
            _c_order(td.astype(dt, copy=False)), batched)


def _split_dloss(dloss, n, name="dloss"):
    """Upstream gradient for a composed loss: a scalar (the gradient of the sum of the parts) or
    ``n`` values, one per part (a NamedTuple/sequence)."""
    if isinstance(dloss, (tuple, list)):
        if len(dloss) < n:
            raise ValueError(f"`{name}` must be a scalar or {n} values; got {len(dloss)} values")
        return [_checks.check_real(np.asarray(v).reshape(()).item() if np.size(v) == 1 else v,
                                   f"{name}[{i}]") for i, v in enumerate(list(dloss)[:n])]
    v = np.asarray(dloss).reshape(()).item() if np.size(dloss) == 1 else dloss
    return [_checks.check_real(v, name)] * n


# ------------------------------------------------------------------------------------------------
# RPN loss
# ------------------------------------------------------------------------------------------------

@conventions.documented("rpn_loss")
def rpn_loss_forward(objectness: np.ndarray, deltas: np.ndarray, targets: Any, *,
                     pos_mask: Optional[np.ndarray] = None, neg_mask: Optional[np.ndarray] = None,
                     convention: Convention = "torchvision", cls_normalizer: Optional[str] = None,
                     reg_normalizer: Optional[str] = None, beta: Optional[float] = None,
                     reg_weight: Optional[float] = None, batch_size_per_image: int = 256,
                     anchors_per_location: int = 9) -> Tuple[RPNLoss, RPNLossCache]:
    """RPN loss: objectness BCE on sampled anchors + smooth L1 on sampled positives, normalised as
    each framework does (Faster R-CNN eq. 1 and its implementations).

    Parameters
    ----------
    objectness : ndarray, shape (B, N) or (N,)
        One logit per anchor (torchvision/detectron2's sigmoid objectness; py-faster-rcnn's 2-way
        softmax ``(bg, fg)`` is the same loss on ``fg - bg``).
    deltas : ndarray, shape (B, N, 4) or (N, 4)
    targets : LossTargets(labels, deltas) or refdet.targets.RPNTargets or dict
        ``labels`` (B, N) int: 1 positive, 0 negative, -1 ignored; ``deltas`` (B, N, 4) encoded gt.
    pos_mask, neg_mask : ndarray of bool, shape (B, N), optional
        The sampled positives / negatives (``refdet.sample_balanced``). Default: every label 1 / 0
        is sampled (the labels are already subsampled, as py-faster-rcnn writes them).
    convention : {"torchvision", "detectron2", "caffe", "paper"}
        torchvision: BCE **mean** over the sampled anchors of the batch; box loss = smooth L1
        (beta 1/9) **sum** over sampled positives / number of sampled anchors. detectron2: both sums
        / (256 * B), L1. caffe (py-faster-rcnn): BCE mean; box loss per image / its sampled count.
        paper: cls sum / 256 (N_cls), box lambda = 10 times the sum / N_reg with N_reg = number of
        anchor locations = N / anchors_per_location (about 2400).
    cls_normalizer, reg_normalizer, beta, reg_weight : optional
        Override the profile (see ``refdet.conventions.describe("rpn_loss")``).

    Returns
    -------
    losses : RPNLoss(objectness, box_regression), 0-d arrays
        With nothing sampled torchvision's means are 0/0 = NaN, and so are refdet's.
    cache : RPNLossCache  (``rpn_loss_backward`` -> ``RPNLossGrads(dobjectness, ddeltas)``)
    """
    s = conventions.resolve("rpn_loss", convention, cls_normalizer=cls_normalizer,
                            reg_normalizer=reg_normalizer, beta=beta, reg_weight=reg_weight)
    b_, lam = s["beta"], s["reg_weight"]
    bspi = _checks.check_int(batch_size_per_image, "batch_size_per_image", low=1)
    apl = _checks.check_int(anchors_per_location, "anchors_per_location", low=1)
    x = _checks.as_float_array(objectness, "objectness")
    obj_shape = x.shape
    if x.ndim not in (1, 2):
        raise ValueError(f"`objectness` must have shape (B, N) or (N,); got {x.shape}")
    x3 = x[..., None] if x.ndim == 2 else x[None, :, None]
    x3, dl, labels, td, _ = _head_inputs(x3, deltas, targets, logits_ndim=2, logits_name="objectness",
                                         deltas_name="deltas")
    x2 = x3[..., 0]
    bad = (labels < -1) | (labels > 1)
    if bad.any():
        raise ValueError(f"`targets.labels` must be 1 (positive), 0 (negative) or -1 (ignored); "
                         f"got {int(labels[bad][0])}")
    pos = labels == 1
    neg = labels == 0
    for m, nm, base in ((pos_mask, "pos_mask", pos), (neg_mask, "neg_mask", neg)):
        if m is not None:
            mm = _checks.as_array(m, nm)
            if mm.dtype != bool:
                raise TypeError(f"`{nm}` must be a bool mask; got dtype {mm.dtype}")
            mm = _c_order(mm.reshape(labels.shape)) if mm.size == labels.size else mm
            if mm.shape != labels.shape:
                raise ValueError(f"`{nm}` must have shape {labels.shape}; got {np.shape(m)}")
            if (mm & ~base).any():
                raise ValueError(f"`{nm}` selects anchors whose label is not {1 if nm == 'pos_mask' else 0}")
            if nm == "pos_mask":
                pos = mm
            else:
                neg = mm
    sampled = pos | neg
    B, N = labels.shape
    dt = x2.dtype.type
    lab_f = pos.astype(x2.dtype)
    with np.errstate(over="ignore"):
        ce = _bce_elementwise(x2, lab_f)
    p = _sigmoid(x2)
    n_sampled = int(sampled.sum())
    if s["cls_normalizer"] == "sampled":
        cls_den = np.full((B, 1), n_sampled, dtype=x2.dtype)
    else:
        cls_den = np.full((B, 1), bspi * B, dtype=x2.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        cls_w = sampled / cls_den                                   # (B, N)
        obj_loss = (ce * sampled).sum(dtype=x2.dtype) / cls_den[0, 0] if B else np.asarray(np.nan, x2.dtype)
    diff = dl - td
    per = _smooth_l1_elementwise(diff, b_).sum(axis=-1) * pos       # (B, N)
    rn = s["reg_normalizer"]
    if rn == "sampled":
        reg_den = np.full((B, 1), n_sampled, dtype=x2.dtype)
    elif rn == "sampled_per_image":
        reg_den = sampled.sum(axis=1, keepdims=True).astype(x2.dtype)
    elif rn == "batch_size":
        reg_den = np.full((B, 1), bspi * B, dtype=x2.dtype)
    else:  # paper: N_reg = number of anchor locations of an image, summed over images
        reg_den = np.full((B, 1), (N / apl) * B, dtype=x2.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        reg_w = dt(lam) * pos / reg_den                              # (B, N)
        if rn == "sampled_per_image":                                # per image, then summed
            box_loss = dt(lam) * (per / reg_den).sum(dtype=x2.dtype)
        elif B:
            box_loss = dt(lam) * (per.sum(dtype=x2.dtype) / reg_den[0, 0])
        else:
            box_loss = dt(np.nan)
    losses = RPNLoss(np.asarray(obj_loss, x2.dtype), np.asarray(box_loss, x2.dtype))
    return losses, RPNLossCache(p, lab_f, cls_w.astype(x2.dtype), diff, reg_w.astype(x2.dtype)[..., None],
                                b_, (obj_shape, np.shape(deltas)), x2.dtype)


def rpn_loss_backward(dloss: Union[float, Sequence[float]], cache: RPNLossCache) -> RPNLossGrads:
    """Gradients of :func:`rpn_loss_forward`: ``(sigmoid(x) - label) * selected / normaliser`` for
    the objectness and ``lambda * smooth_l1'(d) * positive / normaliser`` for the deltas.

    ``dloss``: a scalar (gradient of objectness + box_regression) or a pair (d_objectness, d_box).
    Returns ``RPNLossGrads(dobjectness, ddeltas)`` in the input shapes.
    """
    _check_cache(cache, RPNLossCache, "rpn_loss_forward")
    d_obj, d_box = _split_dloss(dloss, 2)
    dt = cache.dtype.type
    with np.errstate(invalid="ignore"):
        dx = (cache.p - cache.labels_f) * cache.cls_weight * dt(d_obj)
        dd = _smooth_l1_grad(cache.diff, cache.beta) * cache.reg_weight * dt(d_box)
    obj_shape, del_shape = cache.shapes
    return RPNLossGrads(dx.reshape(obj_shape), dd.reshape(del_shape))


# ------------------------------------------------------------------------------------------------
# RetinaNet loss
# ------------------------------------------------------------------------------------------------

@conventions.documented("retinanet_loss")
def retinanet_loss_forward(cls_logits: np.ndarray, box_deltas: np.ndarray, targets: Any, *,
                           normalizer: Optional[str] = None, convention: Convention = "torchvision",
                           alpha: float = 0.25, gamma: float = 2.0, normalizer_eps: Optional[float] = None,
                           box_loss: Optional[str] = None, beta: Optional[float] = None,
                           ema: Optional[float] = None, ema_momentum: float = 0.9,
                           ema_initial: float = 100.0) -> Tuple[RetinaNetLoss, RetinaNetLossCache]:
    """RetinaNet loss: sigmoid focal classification loss over non-ignored anchors + box loss over
    positives, each divided by the framework's normaliser.

    Parameters
    ----------
    cls_logits : ndarray, shape (B, N, K) or (N, K)
        One logit per anchor and foreground class (no background column).
    box_deltas : ndarray, shape (B, N, 4) or (N, 4)
    targets : LossTargets(labels, deltas) or dict
        ``labels`` (B, N) int: class in [0, K) for a positive, K for background (detectron2's and
        mmdet's index, ``refdet.targets``), -1 or -2 ignored (between the IoU thresholds: no
        classification loss); a ``refdet.targets.RetinaNetTargets`` (or a list, one per image) works;
        ``deltas`` (B, N, 4): encoded gt boxes (rows of non-positives are not read).
    normalizer : {"per_image", "num_pos", "ema", "fg_plus_one"}, optional
        torchvision ``per_image``: per image ``sum / max(1, pos_i)``, then the mean over images
        (the box loss too). mmdet/paper ``num_pos``: batch sum / (sum of positives +
        ``normalizer_eps``). detectron2 ``ema``: batch sum / (momentum * ema + (1 - momentum) *
        max(1, sum of positives)), the EMA starting at ``ema_initial = 100``. Detectron1
        ``fg_plus_one``: batch sum / sum_i (pos_i + 1).
    alpha, gamma : focal-loss parameters (0.25, 2 everywhere).
    box_loss, beta : the box loss per convention: torchvision smooth L1 beta 1, detectron2 L1
        (beta 0), mmdet L1, Detectron1 smooth L1 beta 0.11. (torchvision's ``_box_loss`` also offers
        "giou"/"diou"/"ciou" on decoded boxes: decode with ``refdet.decode_boxes`` and use
        :func:`giou_loss_forward` and friends with ``reduction="sum"``, divided the same way.)
    ema : float, optional
        detectron2's EMA state from the previous step (None = first step: ``ema_initial``).

    Returns
    -------
    losses : RetinaNetLoss(classification, box_regression, normalizer, ema)
        ``ema`` is the updated state for ``normalizer="ema"`` (pass it to the next call), else None.
    cache : RetinaNetLossCache (``retinanet_loss_backward`` -> ``RetinaNetLossGrads(dcls_logits, dbox_deltas)``)
    """
    s = conventions.resolve("retinanet_loss", convention, normalizer=normalizer,
                            normalizer_eps=normalizer_eps, box_loss=box_loss, beta=beta)
    norm = s["normalizer"]
    b_ = 0.0 if s["box_loss"] == "l1" else s["beta"]
    neps = s["normalizer_eps"]
    a, gam = _focal_params(alpha, gamma)
    mom = _checks.check_probability(ema_momentum, "ema_momentum")
    _checks.check_positive(ema_initial, "ema_initial")           # checked even when the EMA is unused
    shapes = (np.shape(cls_logits), np.shape(box_deltas))
    x, dl, labels, td, _ = _head_inputs(cls_logits, box_deltas, targets, logits_ndim=2,
                                        logits_name="cls_logits", deltas_name="box_deltas")
    B, N, K = x.shape
    dt = x.dtype.type
    if labels.size and (labels.min() < -2 or labels.max() > K):
        bad = labels[(labels < -2) | (labels > K)][0]
        raise ValueError(f"`targets.labels` must be a class in [0, {K}), {K} (background) or -1/-2 "
                         f"(ignored); got {int(bad)}")
    pos = (labels >= 0) & (labels < K)                               # (B, N)
    valid = labels >= 0                                              # -1, -2: between thresholds
    onehot = np.zeros(x.shape, dtype=x.dtype)
    bi, ai = np.nonzero(pos)
    onehot[bi, ai, labels[bi, ai]] = 1
    fl, fcache = sigmoid_focal_loss_forward(x, onehot, alpha=a, gamma=gam, reduction="none")
    cls_sum_img = (fl * valid[..., None]).sum(axis=(1, 2), dtype=x.dtype)         # (B,)
    diff = dl - td
    per_anchor = _smooth_l1_elementwise(diff, b_).sum(axis=-1) * pos               # (B, N)
    box_sum_img = per_anchor.sum(axis=1, dtype=x.dtype)                            # (B,)
    npos_img = pos.sum(axis=1)
    new_ema = None
    with np.errstate(divide="ignore", invalid="ignore"):
        if norm == "per_image":
            den_img = np.maximum(1, npos_img).astype(x.dtype)                      # (B,)
            cls = (cls_sum_img / den_img).sum(dtype=x.dtype) / dt(B) if B else dt(np.nan)
            box = (box_sum_img / den_img).sum(dtype=x.dtype) / dt(max(1, B))
            cls_scale = np.broadcast_to((1.0 / (den_img * max(B, 1))).astype(x.dtype)[:, None], (B, N))
            box_scale = cls_scale
            normalizer_value = den_img
        else:
            total_pos = int(npos_img.sum())
            if norm == "num_pos":
                den = dt(total_pos + neps) if x.dtype == np.float64 else dt(total_pos) + dt(neps)
            elif norm == "fg_plus_one":
                den = dt(total_pos + B)
            else:
                prev = ema_initial if ema is None else ema
                prev = _checks.check_positive(prev, "ema")
                new_ema = prev * mom + max(total_pos, 1) * (1 - mom)
                den = dt(new_ema)
            cls = cls_sum_img.sum(dtype=x.dtype) / den
            box = box_sum_img.sum(dtype=x.dtype) / den
            cls_scale = np.full((B, N), dt(1) / den, dtype=x.dtype)
            box_scale = cls_scale
            normalizer_value = np.asarray(den, x.dtype)
    losses = RetinaNetLoss(np.asarray(cls, x.dtype), np.asarray(box, x.dtype), normalizer_value, new_ema)
    cache = RetinaNetLossCache(fcache, (cls_scale * valid)[..., None].astype(x.dtype), diff,
                               (box_scale * pos)[..., None].astype(x.dtype), b_, shapes, x.dtype)
    return losses, cache


def retinanet_loss_backward(dloss: Union[float, Sequence[float]], cache: RetinaNetLossCache
                            ) -> RetinaNetLossGrads:
    """Gradients of :func:`retinanet_loss_forward` (the normaliser is a count: held fixed).

    ``dlogits = focal'(x) * valid / normaliser``, ``ddeltas = smooth_l1'(d) * positive /
    normaliser``. ``dloss``: a scalar (gradient of classification + box_regression) or a pair.
    """
    _check_cache(cache, RetinaNetLossCache, "retinanet_loss_forward")
    d_cls, d_box = _split_dloss(dloss, 2)
    dt = cache.dtype.type
    g = cache.cls_weight * dt(d_cls)
    dx = _focal_dx(cache.focal, np.broadcast_to(g, cache.focal.p.shape))
    dd = _smooth_l1_grad(cache.diff, cache.beta) * cache.reg_weight * dt(d_box)
    return RetinaNetLossGrads(dx.reshape(cache.shapes[0]), dd.reshape(cache.shapes[1]))


# ------------------------------------------------------------------------------------------------
# SSD MultiBox loss with hard-negative mining
# ------------------------------------------------------------------------------------------------

def _stable_rank_desc(key, last=None):
    """Rank of every entry in a descending **stable** sort along the last axis (ties: lower index
    first); entries flagged in ``last`` (ignored anchors) go after all others. torchvision computes
    ``idx.sort(1)[1]`` of ``sort(descending=True)``; ``torch.sort`` is not documented as stable, so
    tie order there is an implementation detail."""
    if last is None:
        order = np.argsort(-key, axis=-1, kind="stable")
    else:  # lexsort is stable: primary key `last` (False first), then -key; B >= 1 (some anchor is flagged)
        order = np.stack([np.lexsort((-key[b], last[b])) for b in range(key.shape[0])])
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(key.shape[-1])[None, :].repeat(key.shape[0], 0), axis=-1)
    return rank


@conventions.documented("multibox_loss")
def multibox_loss_forward(conf_logits: np.ndarray, loc_deltas: np.ndarray, targets: Any, *,
                          neg_pos_ratio: float = 3, convention: Convention = "torchvision",
                          mining_cap: Optional[str] = None, zero_positive: Optional[str] = None,
                          beta: Optional[float] = None) -> Tuple[MultiBoxLoss, MultiBoxLossCache]:
    """SSD MultiBox loss ``(L_conf + L_loc) / N`` with 3:1 hard-negative mining (Liu et al. 2016).

    Parameters
    ----------
    conf_logits : ndarray, shape (B, P, K) or (P, K)
        Class 0 is background.
    loc_deltas : ndarray, shape (B, P, 4) or (P, 4)
    targets : LossTargets(labels, deltas) or dict
        ``labels`` (B, P) int in [0, K): 0 background, > 0 the matched class; ``deltas`` (B, P, 4).
    neg_pos_ratio : float
        Negatives kept per positive (torchvision ``(1 - 0.25) / 0.25 = 3``).
    mining_cap : {"none", "negatives", "priors_minus_one"}, optional
        "none" (torchvision): rank the CE of all anchors with positives set to -inf and keep ranks
        < 3 * pos_i. When 3 * pos_i exceeds the negatives the -inf positives get ranks too and
        their CE is counted **twice** (TV14, NVIDIA/DeepLearningExamples#948). "negatives" (Caffe,
        mmdet): at most min(3 * pos_i, #negatives), only negatives. "priors_minus_one"
        (ssd.pytorch): min(3 * pos_i, P - 1) with positives' loss set to 0, and the loss taken over
        the union positives | mined (no double counting).
    zero_positive : {"max1", "nan", "zero"}, optional
        N = 0: "max1" divides by max(1, N) (torchvision, Caffe: the loss is 0), "nan" divides by N
        (ssd.pytorch, mmdet: 0/0 = NaN), "zero" (the paper: L = 0).
    beta : float, optional
        Smooth L1 beta of the localisation loss (1 everywhere).

    Returns
    -------
    losses : MultiBoxLoss(classification, box_regression), 0-d arrays
    cache : MultiBoxLossCache (``.negatives`` holds the mined mask)

    Notes
    -----
    Ties in the mining sort are broken by anchor index (a **stable** descending sort). torch.sort is
    not documented as stable, so when two negatives have the same CE at the cut, torchvision may
    keep the other one; the loss value is the same, the gradient's support differs.
    N is the number of positives of the whole batch (all frameworks).
    """
    s = conventions.resolve("multibox_loss", convention, mining_cap=mining_cap, zero_positive=zero_positive,
                            beta=beta)
    cap, zp, b_ = s["mining_cap"], s["zero_positive"], s["beta"]
    ratio = _checks.check_positive(neg_pos_ratio, "neg_pos_ratio", strict=False)
    shapes = (np.shape(conf_logits), np.shape(loc_deltas))
    z, dl, labels, td, _ = _head_inputs(conf_logits, loc_deltas, targets, logits_ndim=2,
                                        logits_name="conf_logits", deltas_name="loc_deltas")
    B, P, K = z.shape
    dt = z.dtype.type
    if labels.size and (labels.min() < -1 or labels.max() >= K):
        bad = labels[(labels < -1) | (labels >= K)][0]
        raise ValueError(f"`targets.labels` must lie in [0, {K}) (0 = background) or be -1 (ignored); "
                         f"got {int(bad)}")
    ignored = labels < 0                                                     # never mined, no loss
    logp = _log_softmax(z.reshape(B * P, K)).reshape(B, P, K)
    ce = -np.take_along_axis(logp, np.maximum(labels, 0)[..., None], axis=-1)[..., 0] if K \
        else np.zeros((B, P), z.dtype)
    ce = np.where(ignored, z.dtype.type(0), ce)
    pos = labels > 0
    npos = pos.sum(axis=1)                                                   # (B,)
    num_neg = ratio * npos.astype(np.float64)                                # torchvision: a float
    if cap == "priors_minus_one":
        num_neg = np.minimum(num_neg, P - 1)
        key = np.where(pos, 0.0, ce)
    else:
        key = np.where(pos, -np.inf, ce)
        if cap == "negatives":
            num_neg = np.minimum(np.floor(num_neg), (~pos & ~ignored).sum(axis=1))
    rank = _stable_rank_desc(key.astype(np.float64), ignored if ignored.any() else None)   # (B, P); P = 0 too
    mined = (rank < num_neg[:, None]) & ~ignored                             # (B, P)
    if cap == "none":
        count = pos.astype(z.dtype) + mined.astype(z.dtype)                  # 2 for double-counted positives
    else:
        count = (pos | mined).astype(z.dtype)
    n_total = int(npos.sum())
    if n_total == 0 and zp == "zero":
        den = None
    elif zp == "max1":
        den = dt(max(1, n_total))
    else:
        den = dt(n_total)
    diff = dl - td
    per_anchor = _smooth_l1_elementwise(diff, b_).sum(axis=-1) * pos
    with np.errstate(divide="ignore", invalid="ignore"):
        if den is None:
            cls = dt(0)
            box = dt(0)
            weight = np.zeros((B, P), z.dtype)
            reg_w = np.zeros((B, P, 1), z.dtype)
        else:
            # torchvision: (cls_loss[foreground].sum() + cls_loss[background_idxs].sum()) / N
            cls = ((ce * pos).sum(dtype=z.dtype) + (ce * mined).sum(dtype=z.dtype)) / den if cap == "none" \
                else (ce * count).sum(dtype=z.dtype) / den
            box = per_anchor.sum(dtype=z.dtype) / den
            weight = count / den
            reg_w = (pos / den)[..., None].astype(z.dtype)
    losses = MultiBoxLoss(np.asarray(cls, z.dtype), np.asarray(box, z.dtype))
    cache = MultiBoxLossCache(np.exp(logp), labels, weight.astype(z.dtype), pos, mined, diff, reg_w, b_,
                              shapes, z.dtype)
    return losses, cache


def multibox_loss_backward(dloss: Union[float, Sequence[float]], cache: MultiBoxLossCache
                           ) -> MultiBoxLossGrads:
    """Gradients of :func:`multibox_loss_forward` with the mined set held fixed:
    ``dconf = count * (softmax - onehot) / N`` (count = 2 for torchvision's double-counted
    positives) and ``dloc = smooth_l1'(d) * positive / N``. ``dloss``: scalar or pair."""
    _check_cache(cache, MultiBoxLossCache, "multibox_loss_forward")
    d_cls, d_box = _split_dloss(dloss, 2)
    dt = cache.dtype.type
    dz = cache.probs.copy()
    B, P, K = dz.shape
    if dz.size:
        bi, ai = np.nonzero(np.ones((B, P), bool))
        dz[bi, ai, np.maximum(cache.labels[bi, ai], 0)] -= 1
    dz *= (cache.weight * dt(d_cls))[..., None]
    dd = _smooth_l1_grad(cache.diff, cache.beta) * cache.reg_weight * dt(d_box)
    return MultiBoxLossGrads(dz.reshape(cache.shapes[0]), dd.reshape(cache.shapes[1]))
