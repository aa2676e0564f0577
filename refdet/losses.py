"""Detection losses as forward/backward pairs: cross entropy, focal, smooth L1, IoU losses and the
composed RPN / RetinaNet / SSD (MultiBox) losses with every framework's normalisation.

Every loss has the CS231n shape::

    loss, cache = sigmoid_focal_loss_forward(logits, targets, alpha=0.25, gamma=2.0)
    grads = sigmoid_focal_loss_backward(dloss, cache)      # FocalGrads(dlogits)

``dloss`` has the shape of ``loss`` (a scalar for ``reduction="mean"``/``"sum"``, the elementwise
shape for ``"none"``). The gradients are NamedTuples with one field per differentiable input; the
caches are NamedTuples too. Nothing is stored between calls: detectron2's EMA loss normaliser is
passed in and returned explicitly (:func:`retinanet_loss_forward`).

Dtypes: float64 in -> float64 math (the oracle answer); float32 in -> float32 math in torch's order
of operations (``(1 - t) * x - log_sigmoid(x)`` for BCE, torchvision's ``ce * (1 - p_t) ** gamma``
for focal loss, ``(C - U) / (C + eps)`` for GIoU ...). Element values then agree with torch float32
to a few ulp, not bit for bit: torch evaluates ``exp``/``log1p`` with SLEEF, NumPy with its own SIMD
kernels, and the two round differently in the last place for ~15 % of inputs. float16 is computed
in float32; integer inputs become float64.

Kinks (documented subgradients, the same as PyTorch autograd):

* ``|d|`` at ``d = 0`` (L1, and smooth L1 with ``beta = 0``): gradient 0.
* ``max(a, b)`` / ``min(a, b)`` with ``a == b`` (box corners in the IoU losses): the gradient is
  split in halves between ``a`` and ``b`` (``torch.maximum``'s backward).
* the intersection of two boxes that only touch: torchvision masks ``iw > 0 and ih > 0``; mmdet
  clamps ``iw`` and ``ih`` at 0, and torch's ``clamp`` backward passes the gradient only strictly
  inside the range, so at ``iw == 0`` the gradient is 0 in both (checked against autograd). The same
  strict rule applies to mmdet's CIoU clamp to [-1, 1].
* hard-negative mining and the IoU > 0.5 gate of mmdet's CIoU are selections, not functions: they are
  held fixed in the backward pass (as torch's ``no_grad``/indexing does).

Sources: torchvision 0.29 ``ops/focal_loss.py``, ``ops/giou_loss.py``, ``ops/diou_loss.py``,
``ops/ciou_loss.py``, ``models/detection/{rpn,retinanet,ssd}.py``; detectron2 ``layers/losses.py``,
``modeling/proposal_generator/rpn.py``, ``modeling/meta_arch/retinanet.py``; mmdet v3
``models/losses/{iou_loss,focal_loss}.py``, ``structures/bbox/bbox_overlaps.py``,
``models/dense_heads/ssd_head.py``; ssd.pytorch ``layers/modules/multibox_loss.py``; Detectron1
``roi_data/retinanet.py``; the Faster R-CNN, SSD, RetinaNet, GIoU and DIoU/CIoU papers.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "REDUCTIONS",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward",
    "softmax_focal_loss_forward", "softmax_focal_loss_backward",
    "smooth_l1_forward", "smooth_l1_backward",
    "l1_forward", "l1_backward",
    "giou_loss_forward", "giou_loss_backward",
    "diou_loss_forward", "diou_loss_backward",
    "ciou_loss_forward", "ciou_loss_backward",
    "rpn_loss_forward", "rpn_loss_backward",
    "retinanet_loss_forward", "retinanet_loss_backward",
    "multibox_loss_forward", "multibox_loss_backward",
    "LossTargets", "RPNLoss", "RetinaNetLoss", "MultiBoxLoss",
    "LogitGrads", "RegressionGrads", "BoxLossGrads", "RPNLossGrads", "RetinaNetLossGrads", "MultiBoxLossGrads",
]

REDUCTIONS = ("none", "mean", "sum")

# 4 / pi^2: the CIoU aspect-ratio term v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2 lies in [0, 1).
_FOUR_OVER_PI2 = 4.0 / (math.pi ** 2)


# ------------------------------------------------------------------------------------------------
# Named results
# ------------------------------------------------------------------------------------------------

class LogitGrads(NamedTuple):
    """Gradient w.r.t. the logits (BCE, cross entropy, focal losses)."""
    dlogits: np.ndarray


class RegressionGrads(NamedTuple):
    """Gradients w.r.t. prediction and target (smooth L1, L1): ``dtarget = -dpred``."""
    dpred: np.ndarray
    dtarget: np.ndarray


class BoxLossGrads(NamedTuple):
    """Gradients of a GIoU/DIoU/CIoU loss w.r.t. both box sets (torchvision differentiates both)."""
    dpred_boxes: np.ndarray
    dtarget_boxes: np.ndarray


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

class _ReduceInfo(NamedTuple):
    reduction: str
    shape: tuple
    count: int       # elements averaged over by "mean" (non-ignored ones for cross entropy)
    dtype: np.dtype


class BCECache(NamedTuple):
    p: np.ndarray
    targets: np.ndarray
    weight: Optional[np.ndarray]
    red: _ReduceInfo


class CECache(NamedTuple):
    probs: np.ndarray        # (N, K) softmax
    labels: np.ndarray       # (N,) int64
    valid: np.ndarray        # (N,) bool, label != ignore_index
    red: _ReduceInfo


class FocalCache(NamedTuple):
    p: np.ndarray
    one_minus_p: np.ndarray
    targets: np.ndarray
    ce: np.ndarray
    alpha: float
    gamma: float
    red: _ReduceInfo


class SoftmaxFocalCache(NamedTuple):
    probs: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    log_py: np.ndarray
    alpha_t: np.ndarray
    gamma: float
    red: _ReduceInfo


class RegressionCache(NamedTuple):
    diff: np.ndarray
    beta: float
    red: _ReduceInfo


class BoxLossCache(NamedTuple):
    kind: str
    formula: str
    values: dict             # named intermediates of the forward pass (see _iou_family_forward)
    red: _ReduceInfo


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
    "giou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: iou = I/(U+eps), giou = iou - (C-U)/(C+eps), intersection masked "
                      "where iw, ih > 0; mmdet: U <- max(U, eps), C <- max(C, eps), iw/ih/cw/ch clamped at 0",
           "eps": "the guard (torchvision functional default 1e-7; mmdet GIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0 (torchvision returns 0*sum = 0; torch mean is NaN)"},
    doc="torchvision ops/giou_loss.py 7-74 (fvcore's giou_loss, used by detectron2); mmdet "
        "bbox_overlaps(mode='giou', is_aligned=True) behind GIoULoss (eps=1e-6).",
)

conventions.register(
    "diou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: 1 - I/(U+eps) + rho2/(cw^2+ch^2+eps); mmdet: same terms with "
                      "iw/ih/cw/ch clamped at 0 and rho2 = ((x1g+x2g)-(x1+x2))^2/4 + ...",
           "eps": "the guard (mmdet DIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0"},
    doc="torchvision ops/diou_loss.py 64-90; detectron2 layers/losses.py diou_loss; mmdet "
        "models/losses/iou_loss.py diou_loss.",
)

conventions.register(
    "ciou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "detectron2", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={"formula": "torchvision: DIoU part always with eps=1e-7 (its _diou_iou_loss is called "
                      "without eps), alpha = v/(1-iou+v+eps) under no_grad; detectron2: eps used "
                      "everywhere; mmdet: h+eps in atan(w/h), alpha = [iou>0.5] v/(1-iou+v), "
                      "CIoU clamped to [-1, 1]",
           "eps": "the guard (mmdet CIoULoss module default 1e-6)",
           "empty_mean": "value of reduction='mean' on N = 0"},
    doc="torchvision ops/ciou_loss.py; detectron2 layers/losses.py ciou_loss; mmdet v3 "
        "models/losses/iou_loss.py ciou_loss (alpha gated by IoU > 0.5, clamp).",
)

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
    knobs={"cls_normalizer": "'sampled': BCE mean over the sampled anchors of the batch; "
                             "'batch_size': BCE sum / (batch_size_per_image * B)",
           "reg_normalizer": "'sampled': box-loss sum / number of sampled anchors (batch); "
                             "'sampled_per_image': per image / its sampled count, summed; "
                             "'batch_size': / (batch_size_per_image * B); "
                             "'locations': / (N / anchors_per_location) per image (the paper's N_reg)",
           "beta": "smooth L1 beta (1/9 = 1/sigma^2 with sigma 3; 0 = L1)",
           "reg_weight": "lambda multiplying the box loss (the paper's lambda = 10)"},
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
    knobs={"normalizer": "'per_image': sum_i / max(1, pos_i), mean over images (torchvision); "
                         "'num_pos': batch sum / (sum pos + normalizer_eps); 'ema': batch sum / "
                         "EMA of max(1, sum pos) (start 100, momentum 0.9); 'fg_plus_one': batch "
                         "sum / sum_i (pos_i + 1) (Detectron1)",
           "normalizer_eps": "added to the positive count by 'num_pos' (mmdet: float32 eps)",
           "box_loss": "'smooth_l1' or 'l1' on the encoded deltas of positives",
           "beta": "smooth L1 beta (0 = L1)"},
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
    knobs={"mining_cap": "'none': 3*pos negatives by rank with positives at -inf, so positives are "
                         "counted twice when 3*pos exceeds the negatives (torchvision, TV14); "
                         "'negatives': min(3*pos, #negatives) (Caffe SSD, mmdet); 'priors_minus_one': "
                         "min(3*pos, P - 1) and the union pos|neg (ssd.pytorch)",
           "zero_positive": "N = 0 positives in the batch: 'max1' divides by max(1, N) (loss 0); "
                            "'nan' divides by N (0/0, ssd.pytorch, mmdet); 'zero' returns 0 (paper)",
           "beta": "smooth L1 beta of the localisation loss"},
    doc="torchvision ssd.py 255-324 (neg_to_pos_ratio (1 - 0.25)/0.25 = 3, torch.sort (not stable), "
        "N = max(1, num_foreground)); ssd.pytorch multibox_loss.py 82-117 (clamp(3*pos, max=P-1), "
        "N = num_pos.sum()); Caffe SSD MineHardExamples; mmdet ssd_head.py loss_by_feat_single; "
        "SSD paper section 2.2 (L = 0 if N = 0).",
)


# ------------------------------------------------------------------------------------------------
# Small shared pieces
# ------------------------------------------------------------------------------------------------

def _reduce(loss, reduction, count=None, empty_mean=float("nan")):
    """Apply ``reduction``; returns an array (0-d for mean/sum). ``count`` overrides the mean's
    denominator (cross entropy averages over the non-ignored elements only)."""
    if reduction == "none":
        return loss
    s = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(s, dtype=loss.dtype)
    n = loss.size if count is None else count
    if n == 0:
        return np.asarray(empty_mean, dtype=loss.dtype)
    return np.asarray(s / loss.dtype.type(n), dtype=loss.dtype)


def _reduce_backward(dloss, red, name="dloss", scalar_ok=False):
    """Upstream gradient of a reduced loss -> per-element factor with the loss's elementwise shape
    (or, with ``scalar_ok``, a 0-d scalar of the working dtype that broadcasts to it)."""
    d = _checks.as_float_array(dloss, name)
    if red.reduction == "none":
        if d.shape != red.shape:
            raise ValueError(f"`{name}` must have shape {red.shape} (reduction='none'); got {d.shape}")
        return d.astype(red.dtype, copy=False)
    if d.size != 1:
        raise ValueError(f"`{name}` must be a scalar (reduction={red.reduction!r}); got shape {d.shape}")
    g = red.dtype.type(d.reshape(()))
    if red.reduction == "mean":
        g = g / red.dtype.type(max(red.count, 1))
    if scalar_ok:
        return g
    return np.full(red.shape, g, dtype=red.dtype)


def _check_cache(cache, cls, forward):
    if not isinstance(cache, cls):
        raise TypeError(f"`cache` must be the {cls.__name__} returned by {forward}; got {type(cache).__name__}")
    return cache


def _logits(x, name="logits"):
    return _checks.as_float_array(x, name)


def _like(t, x, tname, xname):
    """Validate ``t`` as a float array of ``x``'s shape, cast to ``x``'s dtype."""
    arr = _checks.as_float_array(t, tname)
    if arr.shape != x.shape:
        raise ValueError(f"`{xname}` and `{tname}` must have the same shape; got {x.shape} and {arr.shape}")
    return arr.astype(x.dtype, copy=False)


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` (torch's CPU formula) and ``1 - p`` computed as sigmoid(-x) so that it
    keeps its relative precision when p -> 1."""
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        p = one / (one + np.exp(-x))
        q = one / (one + np.exp(x))
    return p, q


def _log_sigmoid(x):
    """``log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|))`` (torch's log_sigmoid): never overflows."""
    return np.minimum(x, x.dtype.type(0)) - np.log1p(np.exp(-np.abs(x)))


def _bce_elementwise(x, t):
    """torch's binary_cross_entropy_with_logits, elementwise: ``(1 - t) * x - log_sigmoid(x)``.

    Algebraically ``max(x, 0) - x t + log1p(exp(-|x|))``: for x >= 0, ``x - xt + log1p(e^-x)``;
    for x < 0, ``x - xt - x + log1p(e^x)``. Either form is stable (no exp of a positive number);
    torch's order is used so that float32 values agree with torch to an ulp or two.
    """
    return (x.dtype.type(1) - t) * x - _log_sigmoid(x)


def _log_softmax(z):
    """Row-wise log-softmax ``z - max - log(sum(exp(z - max)))``, (N, K) -> (N, K)."""
    m = z.max(axis=-1, keepdims=True) if z.shape[-1] else np.zeros(z.shape[:-1] + (1,), z.dtype)
    shifted = z - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _smooth_l1_elementwise(d, beta):
    """PyTorch's smooth L1 of a difference ``d``: ``0.5 d^2 / beta`` if ``|d| < beta`` else
    ``|d| - 0.5 beta``; ``beta = 0`` is L1 (PyTorch switches to l1_loss; fvcore for beta < 1e-5)."""
    z = np.abs(d)
    if beta == 0:
        return z
    b = d.dtype.type(beta)
    half = d.dtype.type(0.5)
    return np.where(z < b, half * z * z / b, z - half * b)


def _smooth_l1_grad(d, beta):
    """d/dd of smooth L1: ``d / beta`` inside, ``sign(d)`` outside (continuous at |d| = beta); for
    beta = 0 ``sign(d)`` with 0 at d = 0 (PyTorch's l1 backward)."""
    if beta == 0:
        return np.sign(d)
    return np.clip(d / d.dtype.type(beta), -1, 1)


def _check_reduction(reduction):
    return _checks.check_choice(reduction, "reduction", REDUCTIONS)


# ------------------------------------------------------------------------------------------------
# Binary cross entropy with logits
# ------------------------------------------------------------------------------------------------

def bce_with_logits_forward(logits, targets, *, reduction="mean", weight=None):
    """Binary cross entropy on logits, ``F.binary_cross_entropy_with_logits``.

    ``L = -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))] = max(x, 0) - x t + log1p(exp(-|x|))``,
    evaluated without overflow for any finite ``x``.

    Parameters
    ----------
    logits : ndarray, any shape S
    targets : ndarray, shape S
        Probabilities, usually 0/1 (soft targets are allowed, as in PyTorch).
    reduction : {"mean", "sum", "none"}
        PyTorch's default "mean" averages over all elements (NaN for an empty input, as torch).
    weight : ndarray, broadcastable to S, optional
        Multiplies each element's loss (before the reduction), as torch's ``weight``.

    Returns
    -------
    loss : ndarray, shape S ("none") or ()
    cache : BCECache
    """
    red = _check_reduction(reduction)
    x = _logits(logits)
    t = _like(targets, x, "targets", "logits")
    w = None
    if weight is not None:
        w = _checks.as_float_array(weight, "weight").astype(x.dtype, copy=False)
        try:
            np.broadcast_shapes(w.shape, x.shape)
        except ValueError:
            raise ValueError(f"`weight` must broadcast to the logits' shape {x.shape}; got {w.shape}") from None
        if np.broadcast_shapes(w.shape, x.shape) != x.shape:
            raise ValueError(f"`weight` must broadcast to the logits' shape {x.shape}; got {w.shape}")
    with np.errstate(over="ignore"):
        loss = _bce_elementwise(x, t)
    if w is not None:
        loss = loss * w
    p, _ = _sigmoid(x)
    info = _ReduceInfo(red, x.shape, x.size, x.dtype)
    return _reduce(loss, red), BCECache(p, t, w, info)


def bce_with_logits_backward(dloss, cache):
    """``dL/dx = (sigmoid(x) - t) * weight``; returns ``LogitGrads(dlogits)``."""
    _check_cache(cache, BCECache, "bce_with_logits_forward")
    g = _reduce_backward(dloss, cache.red)
    dx = (cache.p - cache.targets) * g
    if cache.weight is not None:
        dx = dx * cache.weight
    return LogitGrads(dx)


# ------------------------------------------------------------------------------------------------
# Softmax cross entropy
# ------------------------------------------------------------------------------------------------

def _class_logits(logits, labels, ignore_index):
    z = _checks.as_float_array(logits, "logits")
    if z.ndim != 2:
        raise ValueError(f"`logits` must be 2-D with shape (N, K); got shape {z.shape}")
    y = _checks.as_int_labels(labels, "labels")
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"`logits` and `labels` must have the same length N; got {z.shape[0]} and {y.shape[0]}")
    ignore_index = _checks.check_int(ignore_index, "ignore_index")
    valid = y != ignore_index
    k = z.shape[1]
    bad = valid & ((y < 0) | (y >= k))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`labels` must lie in [0, {k}) or equal ignore_index={ignore_index}; "
                         f"got {int(y[i])} at index {i}")
    return z, y, valid


def softmax_cross_entropy_forward(logits, labels, *, reduction="mean", ignore_index=-1):
    """Softmax cross entropy, ``F.cross_entropy(logits, labels, ignore_index=...)``.

    ``L_i = logsumexp(z_i) - z_i[y_i] = -log softmax(z_i)[y_i]``. Example (the seed's): a background
    anchor predicted with p(background) = 0.8 costs ``-ln 0.8 = 0.2231``.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)
        In [0, K), or ``ignore_index`` (py-faster-rcnn's ``ignore_label: -1``).
    reduction : {"mean", "sum", "none"}
        "mean" divides by the number of non-ignored rows (torch semantics; NaN when all are ignored).
        "none" returns 0 for ignored rows.
    ignore_index : int
        Default -1 (refdet's, py-faster-rcnn's); torch's default is -100.

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : CECache
    """
    red = _check_reduction(reduction)
    z, y, valid = _class_logits(logits, labels, ignore_index)
    logp = _log_softmax(z)                                           # (N, K)
    yy = np.where(valid, y, 0)
    picked = np.take_along_axis(logp, yy[:, None], axis=1)[:, 0] if z.shape[1] else np.zeros(len(y), z.dtype)
    loss = np.where(valid, -picked, z.dtype.type(0))
    info = _ReduceInfo(red, loss.shape, int(valid.sum()), z.dtype)
    return _reduce(loss, red, count=info.count), CECache(np.exp(logp), y, valid, info)


def softmax_cross_entropy_backward(dloss, cache):
    """``dL_i/dz_i = softmax(z_i) - onehot(y_i)`` (0 for ignored rows); returns ``LogitGrads``."""
    _check_cache(cache, CECache, "softmax_cross_entropy_forward")
    g = _reduce_backward(dloss, cache.red)
    dz = cache.probs.copy()
    rows = np.flatnonzero(cache.valid)
    dz[rows, cache.labels[rows]] -= 1
    dz *= (g * cache.valid)[:, None]
    return LogitGrads(dz)


# ------------------------------------------------------------------------------------------------
# Focal losses
# ------------------------------------------------------------------------------------------------

def _focal_params(alpha, gamma):
    if alpha is None:
        alpha = -1.0
    a = _checks.check_focal_alpha(alpha, "alpha")
    g = _checks.check_positive(gamma, "gamma", strict=False)
    return a, g


def sigmoid_focal_loss_forward(logits, targets, *, alpha=0.25, gamma=2.0, reduction="none"):
    """Sigmoid focal loss (Lin et al. 2017), ``torchvision.ops.sigmoid_focal_loss``.

    ``p = sigmoid(x)``, ``p_t = p t + (1 - p)(1 - t)``, ``alpha_t = alpha t + (1 - alpha)(1 - t)``,
    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``. ``alpha`` weights the **positive** class (0.25 in
    the paper: positives are down-weighted because gamma already silences the easy negatives).

    Parameters
    ----------
    logits : ndarray, any shape S
    targets : ndarray, shape S
        0/1 per class (one-hot, background = all zeros); soft targets are accepted as in torchvision.
    alpha : float in [0, 1], or -1 (or None)
        -1 disables the weighting (torchvision); anything else outside [0, 1] is an error.
    gamma : float >= 0
        0 gives (alpha-weighted) binary cross entropy.
    reduction : {"none", "mean", "sum"}
        torchvision's default is "none".

    Returns
    -------
    loss : ndarray, shape S or ()
    cache : FocalCache

    Notes
    -----
    The order of operations is torchvision's: ``ce = bce_with_logits(x, t)``,
    ``loss = ce * (1 - p_t) ** gamma``, then ``alpha_t * loss``. ``ce`` is taken from the logits,
    not from ``-log(p_t)``, so it stays exact where p_t rounds to 1. In float32 that order inherits
    torch's cancellation: for t = 0 and x << 0, ``(1 - t) x - log_sigmoid(x)`` subtracts two numbers
    close to x, and a loss of 7e-13 at x = -9.2 carries a ~1e-3 relative error in torchvision and in
    refdet alike (the two then differ by many ulps, both far from the float64 value). Use float64
    inputs for the oracle answer.
    """
    red = _check_reduction(reduction)
    a, gam = _focal_params(alpha, gamma)
    x = _logits(logits)
    t = _like(targets, x, "targets", "logits")
    dt = x.dtype.type
    one = dt(1)
    # The same operations as torchvision, in the same order, but written in place: on RetinaNet-sized
    # inputs (10^7 elements) every fresh temporary costs as much as the arithmetic (page faults).
    with np.errstate(over="ignore"):
        p = np.negative(x)
        np.exp(p, out=p)
        p += one
        np.reciprocal(p, out=p)                          # p = 1 / (1 + exp(-x))   (torch's sigmoid)
        q = np.exp(x)
        q += one
        np.reciprocal(q, out=q)                          # q = 1 - p = sigmoid(-x), no cancellation
        # ce = (1 - t) * x - log_sigmoid(x), log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))
        e = np.abs(x)
        np.negative(e, out=e)
        np.exp(e, out=e)
        np.log1p(e, out=e)                               # log1p(exp(-|x|))
        lsig = np.minimum(x, dt(0))
        lsig -= e                                        # log_sigmoid(x)
        omt = np.subtract(one, t)                        # 1 - t
        ce = omt * x
        ce -= lsig                                       # BCE with logits
    # p_t = p * t + (1 - p) * (1 - t)
    pt = np.multiply(p, t, out=e)
    omp = np.subtract(one, p, out=lsig)
    omp *= omt
    pt += omp
    np.subtract(one, pt, out=pt)                         # 1 - p_t
    loss = omp                                           # reuse the buffer
    if gam == 2.0:
        np.square(pt, out=loss)                          # (1 - p_t) ** 2: torch's pow(x, 2) is x * x
    else:
        np.power(pt, dt(gam), out=loss)
    loss *= ce                                           # ce * (1 - p_t) ** gamma
    if a >= 0:
        alpha_t = np.multiply(t, dt(a), out=pt)          # alpha * t
        omt *= dt(1 - a)
        alpha_t += omt                                   # + (1 - alpha) * (1 - t)
        np.multiply(alpha_t, loss, out=loss)             # alpha_t * loss
    info = _ReduceInfo(red, x.shape, x.size, x.dtype)
    return _reduce(loss, red), FocalCache(p, q, t, ce, a, gam, info)


def _focal_dx(c, g):
    """The closed-form focal-loss gradient, term by term (``g`` = upstream per element).

    Write the loss as a product of three factors, ``FL = alpha_t * ce * m`` with

      ce = BCE(x, t) = -[t log p + (1 - t) log(1 - p)]        d ce / dx = p - t
      m  = (1 - p_t)^gamma,  p_t = p t + (1 - p)(1 - t)
           d p_t / dx = t p(1 - p) - (1 - t) p(1 - p) = (2t - 1) p (1 - p)
           d m / dx   = -gamma (1 - p_t)^(gamma - 1) (2t - 1) p (1 - p)
      alpha_t          constant in x

    so the product rule gives

      dFL/dx = alpha_t [ (p - t) (1 - p_t)^gamma  -  gamma ce (1 - p_t)^(gamma-1) (2t - 1) p (1 - p) ]
               \\_______ BCE gradient, modulated _/   \\____ derivative of the modulating factor ____/

    Hard targets (the paper's closed forms, checked against autograd in the tests):
      t = 1: p_t = p,   ce = -log p:      alpha (1 - p)^gamma (gamma p log p + p - 1)
      t = 0: p_t = 1-p, ce = -log(1 - p): (1 - alpha) p^gamma (p - gamma (1 - p) log(1 - p))

    Limits:
      gamma = 0: m = 1 and the second term vanishes -> alpha_t (p - t), the BCE gradient.
      p_t -> 1 (a well-classified example): 1 - p_t -> 0. For gamma >= 1 both terms -> 0. For
        0 < gamma < 1, (1 - p_t)^(gamma - 1) blows up, but it is multiplied by ce ~ (1 - p_t) and
        by p(1 - p) ~ (1 - p_t), so the product ~ (1 - p_t)^(gamma + 1) -> 0: where 1 - p_t is 0 in
        floating point the second term is set to its limit 0 (instead of inf * 0 = NaN).
      p_t -> 0 (a confidently wrong example): m -> 1, ce -> inf but p(1 - p) -> 0 exponentially,
        ce p (1 - p) ~ |x| e^{-|x|} -> 0: the gradient tends to alpha_t (p - t) = -+alpha_t.
    1 - p is taken as sigmoid(-x) (not 1 - sigmoid(x)) so that p (1 - p) keeps its precision.
    """
    dt = c.p.dtype.type
    one = dt(1)
    p, q, t, ce, gam = c.p, c.one_minus_p, c.targets, c.ce, c.gamma
    # 1 - p_t = p (1 - t) + (1 - p) t, from q = 1 - p without cancellation
    omt = np.subtract(one, t)
    ompt = np.multiply(p, omt)
    buf = np.multiply(q, t)
    ompt += buf
    dx = np.subtract(p, t)                               # p - t: the BCE gradient
    if gam != 0:
        if gam == 1:
            m, m1 = ompt, None                           # (1 - p_t)^1, (1 - p_t)^0 = 1
        elif gam == 2:
            m, m1 = np.square(ompt, out=buf), ompt       # (1 - p_t)^2, (1 - p_t)^1: no pow
        else:
            m = np.power(ompt, dt(gam), out=buf)
            with np.errstate(divide="ignore", invalid="ignore"):
                m1 = np.where(ompt > 0, ompt ** dt(gam - 1), dt(0))   # limit 0 where 1 - p_t == 0
        dx *= m                                          # term 1: (p - t) (1 - p_t)^gamma
        # term 2: gamma * ce * (1 - p_t)^(gamma - 1) * (2t - 1) * p * (1 - p)
        term2 = np.multiply(t, dt(2), out=buf if m is not buf else None)
        term2 -= one
        term2 *= p
        term2 *= q
        term2 *= ce
        if m1 is not None:
            term2 *= m1
        term2 *= dt(gam)
        dx -= term2
    if c.alpha >= 0:
        alpha_t = np.multiply(t, dt(c.alpha), out=ompt)
        omt *= dt(1 - c.alpha)
        alpha_t += omt
        dx *= alpha_t
    dx *= g
    return dx


def sigmoid_focal_loss_backward(dloss, cache):
    """Gradient of :func:`sigmoid_focal_loss_forward`; returns ``LogitGrads(dlogits)``. The
    derivation is in the comments of ``_focal_dx`` (and the module's tests)."""
    _check_cache(cache, FocalCache, "sigmoid_focal_loss_forward")
    g = _reduce_backward(dloss, cache.red, scalar_ok=True)
    return LogitGrads(_focal_dx(cache, g))


def softmax_focal_loss_forward(logits, labels, *, alpha=None, gamma=2.0, reduction="none",
                               ignore_index=-1, background=0):
    """Softmax focal loss (RetinaNet paper's softmax variant; Detectron1 ``SoftmaxFocalLoss``).

    ``p = softmax(z)``, ``FL_i = -alpha_t (1 - p_y)^gamma log p_y`` with ``y`` the label.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray of int, shape (N,)
        In [0, K) or ``ignore_index`` (loss 0, excluded from "mean").
    alpha : float in [0, 1], -1 or None
        None / -1: no weighting. Otherwise ``alpha`` for foreground labels and ``1 - alpha`` for
        the ``background`` label: Caffe2/Detectron1 ``SoftmaxFocalLoss``
        (``modules/detectron/softmax_focal_loss_op.cu``) weights ``z = (label == 0)(1 - alpha) +
        (label >= 1) alpha``, ignores labels < 0, and divides the sum by ``max(num_fg, 1)`` (pass
        ``reduction="sum"`` and divide). Caffe2 clamps ``log(max(p, FLT_MIN))``; refdet uses the
        exact log-softmax, which differs only where p underflows float32.
    gamma : float >= 0
        0 gives (weighted) softmax cross entropy.
    reduction : {"none", "mean", "sum"}
        "mean" averages over the non-ignored rows.

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : SoftmaxFocalCache
    """
    red = _check_reduction(reduction)
    a, gam = _focal_params(alpha, gamma)
    z, y, valid = _class_logits(logits, labels, ignore_index)
    background = _checks.check_int(background, "background")
    dt = z.dtype.type
    logp = _log_softmax(z)
    yy = np.where(valid, y, 0)
    log_py = np.take_along_axis(logp, yy[:, None], axis=1)[:, 0] if z.shape[1] else np.zeros(len(y), z.dtype)
    p_y = np.exp(log_py)
    if a >= 0:
        alpha_t = np.where(y == background, dt(1 - a), dt(a)).astype(z.dtype)
    else:
        alpha_t = np.ones(len(y), z.dtype)
    loss = -alpha_t * (dt(1) - p_y) ** dt(gam) * log_py
    loss = np.where(valid, loss, dt(0))
    info = _ReduceInfo(red, loss.shape, int(valid.sum()), z.dtype)
    return _reduce(loss, red, count=info.count), SoftmaxFocalCache(np.exp(logp), y, valid, log_py,
                                                                   alpha_t, gam, info)


def softmax_focal_loss_backward(dloss, cache):
    """Gradient of the softmax focal loss.

    With ``q = 1 - p_y`` and ``d p_y / d z_j = p_y (delta_jy - p_j)``:

      FL = -a q^gamma log p_y
      dFL/dz_j = -a [ -gamma q^(gamma-1) log p_y * p_y (delta_jy - p_j) + q^gamma (delta_jy - p_j) ]
               = a (delta_jy - p_j) [ gamma q^(gamma-1) p_y log p_y - q^gamma ]

    gamma = 0 gives ``a (p_j - delta_jy)``, the cross-entropy gradient. When q = 0 in floating point
    (p_y = 1) the bracket's first term is set to its limit 0 (q^(gamma-1) log p_y ~ -q^gamma -> 0).
    """
    _check_cache(cache, SoftmaxFocalCache, "softmax_focal_loss_forward")
    g = _reduce_backward(dloss, cache.red)
    dt = cache.probs.dtype.type
    q = dt(1) - np.exp(cache.log_py)
    gam = cache.gamma
    if gam == 0:
        bracket = -np.ones_like(q)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            qg1 = np.where(q > 0, q ** dt(gam - 1), dt(1) if gam == 1 else dt(0))
        bracket = dt(gam) * qg1 * np.exp(cache.log_py) * cache.log_py - q ** dt(gam)
    coef = cache.alpha_t * bracket * g * cache.valid                    # (N,)
    delta_minus_p = -cache.probs.copy()                                 # (N, K)
    rows = np.flatnonzero(cache.valid)
    delta_minus_p[rows, cache.labels[rows]] += 1
    return LogitGrads(delta_minus_p * coef[:, None])


# ------------------------------------------------------------------------------------------------
# Smooth L1 and L1
# ------------------------------------------------------------------------------------------------

def _pred_target(pred, target):
    p = _checks.as_float_array(pred, "pred")
    t = _checks.as_float_array(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"`pred` and `target` must have the same shape; got {p.shape} and {t.shape}")
    dt = np.promote_types(p.dtype, t.dtype)
    return p.astype(dt, copy=False), t.astype(dt, copy=False)


def smooth_l1_forward(pred, target, *, beta=1.0, reduction="mean"):
    """Smooth L1 (Huber / beta) loss, ``F.smooth_l1_loss(pred, target, beta=beta)``.

    ``l(d) = 0.5 d^2 / beta`` if ``|d| < beta`` else ``|d| - 0.5 beta``, ``d = pred - target``.
    The two pieces meet at ``|d| = beta`` with value ``beta / 2`` and slope 1.

    beta: 1 (PyTorch default, torchvision SSD/RetinaNet), 1/9 (torchvision RPN and box head:
    py-faster-rcnn's sigma = 3, beta = 1/sigma^2), 0.11 (Detectron1 RetinaNet), 0 (detectron2: pure
    L1, gradient 0 at d = 0 like PyTorch).

    Returns
    -------
    loss : ndarray, shape of ``pred`` ("none") or ()
    cache : RegressionCache
    """
    red = _check_reduction(reduction)
    b = _checks.check_positive(beta, "beta", strict=False)
    p, t = _pred_target(pred, target)
    d = p - t
    info = _ReduceInfo(red, d.shape, d.size, d.dtype)
    return _reduce(_smooth_l1_elementwise(d, b), red), RegressionCache(d, b, info)


def smooth_l1_backward(dloss, cache):
    """``dl/dd = clip(d / beta, -1, 1)`` (``sign(d)`` for beta = 0, 0 at d = 0); returns
    ``RegressionGrads(dpred, dtarget)`` with ``dtarget = -dpred``."""
    _check_cache(cache, RegressionCache, "smooth_l1_forward")
    g = _reduce_backward(dloss, cache.red)
    dp = _smooth_l1_grad(cache.diff, cache.beta) * g
    return RegressionGrads(dp, -dp)


def l1_forward(pred, target, *, reduction="mean"):
    """L1 loss ``|pred - target|``, ``F.l1_loss``; the subgradient at 0 is 0 (PyTorch's sign)."""
    red = _check_reduction(reduction)
    p, t = _pred_target(pred, target)
    d = p - t
    info = _ReduceInfo(red, d.shape, d.size, d.dtype)
    return _reduce(np.abs(d), red), RegressionCache(d, 0.0, info)


def l1_backward(dloss, cache):
    """``sign(pred - target)``; returns ``RegressionGrads(dpred, dtarget)``."""
    return smooth_l1_backward(dloss, cache)


# ------------------------------------------------------------------------------------------------
# GIoU / DIoU / CIoU losses
# ------------------------------------------------------------------------------------------------

def _max_w(a, b):
    """Share of d max(a, b) going to ``a`` (1, 0, or 1/2 on a tie: torch.maximum's backward)."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


def _min_w(a, b):
    return np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0)).astype(a.dtype)


def _box_pair(pred_boxes, target_boxes):
    p = _checks.as_boxes(pred_boxes, "pred_boxes")
    g = _checks.as_boxes(target_boxes, "target_boxes")
    if p.shape != g.shape:
        raise ValueError(f"`pred_boxes` and `target_boxes` must have the same shape (N, 4); "
                         f"got {p.shape} and {g.shape}")
    dt = np.promote_types(p.dtype, g.dtype)
    return p.astype(dt, copy=False), g.astype(dt, copy=False)


def _iou_family_forward(kind, p, g, formula, eps):
    """Elementwise loss of matched pairs and the intermediates the backward pass needs.

    Symbols: pred (x1, y1, x2, y2), target (X1, Y1, X2, Y2); intersection corners
    xk1 = max(x1, X1), xk2 = min(x2, X2) (same in y); iw = xk2 - xk1, ih = yk2 - yk1;
    I = iw * ih where both > 0 (torchvision) or clamp(iw, 0) * clamp(ih, 0) (mmdet);
    U = area_p + area_g - I; enclosing box xc1 = min(x1, X1), xc2 = max(x2, X2).
    """
    dt = p.dtype.type
    one, zero, two = dt(1), dt(0), dt(2)
    e = dt(eps)
    x1, y1, x2, y2 = p.T
    X1, Y1, X2, Y2 = g.T
    v = dict(x1=x1, y1=y1, x2=x2, y2=y2, X1=X1, Y1=Y1, X2=X2, Y2=Y2)
    xk1, yk1 = np.maximum(x1, X1), np.maximum(y1, Y1)
    xk2, yk2 = np.minimum(x2, X2), np.minimum(y2, Y2)
    iw_raw, ih_raw = xk2 - xk1, yk2 - yk1
    if formula == "mmdet":
        iw, ih = np.maximum(iw_raw, zero), np.maximum(ih_raw, zero)
        inter = iw * ih
        imask_w, imask_h = iw_raw > 0, ih_raw > 0                 # torch's clamp backward: strictly inside
    else:
        m = (ih_raw > 0) & (iw_raw > 0)
        iw, ih = iw_raw, ih_raw
        inter = np.where(m, iw_raw * ih_raw, zero)
        imask_w = imask_h = m
    w, h, W, H = x2 - x1, y2 - y1, X2 - X1, Y2 - Y1
    union = w * h + W * H - inter
    xc1, yc1 = np.minimum(x1, X1), np.minimum(y1, Y1)
    xc2, yc2 = np.maximum(x2, X2), np.maximum(y2, Y2)
    cw_raw, ch_raw = xc2 - xc1, yc2 - yc1
    if formula == "mmdet":
        cw, ch = np.maximum(cw_raw, zero), np.maximum(ch_raw, zero)
        cmask_w, cmask_h = cw_raw > 0, ch_raw > 0
    else:
        cw, ch = cw_raw, ch_raw
        cmask_w = cmask_h = np.ones_like(cw_raw, dtype=bool)
    v.update(xk1=xk1, yk1=yk1, xk2=xk2, yk2=yk2, iw=iw, ih=ih, imask_w=imask_w, imask_h=imask_h,
             inter=inter, w=w, h=h, W=W, H=H, union=union, xc1=xc1, yc1=yc1, xc2=xc2, yc2=yc2,
             cw=cw, ch=ch, cmask_w=cmask_w, cmask_h=cmask_h, eps=e)

    if kind == "giou":
        carea = cw * ch
        if formula == "mmdet":
            ue = np.maximum(union, e)                              # union = max(union, eps)
            iou = inter / ue
            ce_ = np.maximum(carea, e)                             # enclose_area = max(C, eps)
            giou = iou - (ce_ - ue) / ce_
            v.update(ue=ue, ce=ce_, carea=carea)
        else:
            iou = inter / (union + e)
            giou = iou - ((carea - union) / (carea + e))
            v.update(carea=carea)
        return one - giou, v

    # DIoU / CIoU
    diou_eps = dt(1e-7) if (kind == "ciou" and formula == "torchvision") else e
    v["diou_eps"] = diou_eps
    if formula == "mmdet":
        union_e = union + e
        iou = inter / union_e
        c2 = cw ** 2 + ch ** 2 + e
        dx_ = (X1 + X2) - (x1 + x2)                                # twice the centre offset
        dy_ = (Y1 + Y2) - (y1 + y2)
        rho2 = dx_ ** 2 / dt(4) + dy_ ** 2 / dt(4)
        v.update(union_e=union_e, iou=iou, c2=c2, dcx2=dx_, dcy2=dy_, rho2=rho2)
        if kind == "diou":
            return one - (iou - rho2 / c2), v
        h_e, H_e = h + e, H + e                                    # mmdet: eps on the heights
        theta = np.arctan(W / H_e) - np.arctan(w / h_e)
        vv = dt(_FOUR_OVER_PI2) * theta ** 2
        gate = (iou > dt(0.5)).astype(p.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = gate * vv / (one - iou + vv)
        cious = iou - (rho2 / c2 + alpha * vv)
        cmask = (cious > -one) & (cious < one)                     # clamp's backward mask (strict)
        v.update(h_e=h_e, H_e=H_e, theta=theta, vv=vv, alpha=alpha, cmask=cmask)
        return one - np.clip(cious, -one, one), v

    union_e = union + diou_eps
    iou = inter / union_e
    c2 = (cw ** 2) + (ch ** 2) + diou_eps
    xp, yp = (x2 + x1) / two, (y2 + y1) / two
    xg, yg = (X1 + X2) / two, (Y1 + Y2) / two
    rho2 = ((xp - xg) ** 2) + ((yp - yg) ** 2)
    v.update(union_e=union_e, iou=iou, c2=c2, xp=xp, yp=yp, xg=xg, yg=yg, rho2=rho2)
    loss = one - iou + (rho2 / c2)
    if kind == "diou":
        return loss, v
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.arctan(W / H) - np.arctan(w / h)
    vv = dt(_FOUR_OVER_PI2) * theta ** 2
    alpha = vv / (one - iou + vv + e)                              # no_grad in torchvision
    v.update(theta=theta, vv=vv, alpha=alpha, h_e=h, H_e=H)
    return loss + alpha * vv, v


def _iou_family_backward(kind, formula, v, g):
    """Reverse-mode pass through ``_iou_family_forward``. ``g`` (N,) = dL/dloss_i. Returns the
    (N, 4) gradients of pred and target boxes. Each line is the chain rule of one forward line."""
    dt = v["x1"].dtype.type
    one, two = dt(1), dt(2)
    e = v["eps"]
    inter, union = v["inter"], v["union"]
    zeros = np.zeros_like(inter)
    d_iou = zeros.copy()
    d_union = zeros.copy()
    d_cw = zeros.copy()
    d_ch = zeros.copy()
    d = {k: zeros.copy() for k in ("x1", "y1", "x2", "y2", "X1", "Y1", "X2", "Y2")}

    if kind == "giou":
        dgiou = -g                                                 # loss = 1 - giou
        if formula == "mmdet":
            ue, ce_ = v["ue"], v["ce"]
            # giou = I/ue - (ce - ue)/ce = I/ue - 1 + ue/ce
            d_iou = dgiou
            d_ue = dgiou * (-inter / ue ** 2) + dgiou / ce_
            d_ce = dgiou * (-ue / ce_ ** 2)
            d_union = d_ue * _max_w(union, np.full_like(union, e))
            d_carea = d_ce * _max_w(v["carea"], np.full_like(union, e))
            d_inter_direct = dgiou / ue
        else:
            ce_ = v["carea"] + e
            # iou = I/(U+eps);  r = (C - U)/(C + eps);  giou = iou - r
            d_inter_direct = dgiou / (union + e)
            d_union = dgiou * (-inter / (union + e) ** 2) + dgiou / ce_       # dr/dU = -1/(C+eps)
            d_carea = -dgiou * (union + e) / ce_ ** 2                         # dr/dC = (U+eps)/(C+eps)^2
        d_cw = d_carea * v["ch"]
        d_ch = d_carea * v["cw"]
        d_inter = d_inter_direct
    else:
        union_e, c2, rho2 = v["union_e"], v["c2"], v["rho2"]
        if kind == "ciou" and formula == "mmdet":
            # loss = 1 - clamp(cious); cious = iou - rho2/c2 - alpha*v  (alpha held fixed)
            dcious = -g * v["cmask"]
            d_iou = dcious
            d_rho2 = -dcious / c2
            d_c2 = dcious * rho2 / c2 ** 2
            d_vv = -dcious * v["alpha"]
        elif formula == "mmdet":
            # loss = 1 - (iou - rho2/c2)
            d_iou = -g
            d_rho2 = g / c2
            d_c2 = -g * rho2 / c2 ** 2
            d_vv = None
        else:
            # loss = 1 - iou + rho2/c2 (+ alpha * v, alpha held fixed)
            d_iou = -g
            d_rho2 = g / c2
            d_c2 = -g * rho2 / c2 ** 2
            d_vv = g * v["alpha"] if kind == "ciou" else None
        d_inter = d_iou / union_e
        d_union = -d_iou * inter / union_e ** 2
        d_cw = d_c2 * two * v["cw"]
        d_ch = d_c2 * two * v["ch"]
        if formula == "mmdet":
            # rho2 = ((X1+X2) - (x1+x2))^2/4 + ((Y1+Y2) - (y1+y2))^2/4
            ddx = d_rho2 * v["dcx2"] / two
            ddy = d_rho2 * v["dcy2"] / two
            d["X1"] += ddx; d["X2"] += ddx; d["x1"] -= ddx; d["x2"] -= ddx
            d["Y1"] += ddy; d["Y2"] += ddy; d["y1"] -= ddy; d["y2"] -= ddy
        else:
            # rho2 = (xp - xg)^2 + (yp - yg)^2 with xp = (x1 + x2)/2
            dxp = d_rho2 * two * (v["xp"] - v["xg"])
            dyp = d_rho2 * two * (v["yp"] - v["yg"])
            d["x1"] += dxp / two; d["x2"] += dxp / two; d["X1"] -= dxp / two; d["X2"] -= dxp / two
            d["y1"] += dyp / two; d["y2"] += dyp / two; d["Y1"] -= dyp / two; d["Y2"] -= dyp / two
        if d_vv is not None:
            # v = 4/pi^2 theta^2, theta = atan(W/H_e) - atan(w/h_e); d atan(u)/du = 1/(1+u^2)
            dtheta = d_vv * dt(2 * _FOUR_OVER_PI2) * v["theta"]
            w, h_e, W, H_e = v["w"], v["h_e"], v["W"], v["H_e"]
            with np.errstate(divide="ignore", invalid="ignore"):
                ur, ug = w / h_e, W / H_e
                du = -dtheta / (one + ur ** 2)                     # d/d(w/h_e)
                dU_ = dtheta / (one + ug ** 2)                     # d/d(W/H_e)
                dw_a, dh_a = du / h_e, -du * w / h_e ** 2
                dW_a, dH_a = dU_ / H_e, -dU_ * W / H_e ** 2
            d["x2"] += dw_a; d["x1"] -= dw_a; d["y2"] += dh_a; d["y1"] -= dh_a
            d["X2"] += dW_a; d["X1"] -= dW_a; d["Y2"] += dH_a; d["Y1"] -= dH_a

    # union = w*h + W*H - inter
    d_inter = d_inter - d_union
    dw, dh = d_union * v["h"], d_union * v["w"]
    dW, dH = d_union * v["H"], d_union * v["W"]
    d["x2"] += dw; d["x1"] -= dw; d["y2"] += dh; d["y1"] -= dh
    d["X2"] += dW; d["X1"] -= dW; d["Y2"] += dH; d["Y1"] -= dH
    # inter = iw * ih (masked or clamped)
    diw = d_inter * v["ih"] * v["imask_w"] * v["imask_h"] if formula != "mmdet" else d_inter * v["ih"] * v["imask_w"]
    dih = d_inter * v["iw"] * v["imask_w"] * v["imask_h"] if formula != "mmdet" else d_inter * v["iw"] * v["imask_h"]
    # iw = min(x2, X2) - max(x1, X1)
    for lo, hi, dd, a_lo, b_lo, a_hi, b_hi in (
            ("xk1", "xk2", diw, "x1", "X1", "x2", "X2"),
            ("yk1", "yk2", dih, "y1", "Y1", "y2", "Y2")):
        wmax = _max_w(v[a_lo], v[b_lo])
        wmin = _min_w(v[a_hi], v[b_hi])
        d[a_lo] -= dd * wmax; d[b_lo] -= dd * (one - wmax)
        d[a_hi] += dd * wmin; d[b_hi] += dd * (one - wmin)
    # enclosing box: cw = max(x2, X2) - min(x1, X1)
    d_cw = d_cw * v["cmask_w"]
    d_ch = d_ch * v["cmask_h"]
    for dd, a_lo, b_lo, a_hi, b_hi in ((d_cw, "x1", "X1", "x2", "X2"), (d_ch, "y1", "Y1", "y2", "Y2")):
        wmin = _min_w(v[a_lo], v[b_lo])
        wmax = _max_w(v[a_hi], v[b_hi])
        d[a_lo] -= dd * wmin; d[b_lo] -= dd * (one - wmin)
        d[a_hi] += dd * wmax; d[b_hi] += dd * (one - wmax)
    dp = np.stack([d["x1"], d["y1"], d["x2"], d["y2"]], axis=1)
    dg = np.stack([d["X1"], d["Y1"], d["X2"], d["Y2"]], axis=1)
    return dp, dg


def _box_loss_forward(kind, pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean):
    s = conventions.resolve(f"{kind}_loss", convention, formula=formula, eps=eps, empty_mean=empty_mean)
    red = _check_reduction(reduction)
    e = _checks.check_positive(s["eps"], "eps", strict=False)
    p, g = _box_pair(pred_boxes, target_boxes)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss, v = _iou_family_forward(kind, p, g, s["formula"], e)
    info = _ReduceInfo(red, loss.shape, loss.size, p.dtype)
    out = _reduce(loss, red, empty_mean=s["empty_mean"])
    return out, BoxLossCache(kind, s["formula"], v, info)


def _box_loss_backward(dloss, cache):
    _check_cache(cache, BoxLossCache, "giou_loss_forward / diou_loss_forward / ciou_loss_forward")
    g = _reduce_backward(dloss, cache.red)
    with np.errstate(divide="ignore", invalid="ignore"):
        dp, dg = _iou_family_backward(cache.kind, cache.formula, cache.values, g)
    return BoxLossGrads(dp, dg)


_BOX_LOSS_DOC = """
    Parameters
    ----------
    pred_boxes, target_boxes : ndarray, shape (N, 4), xyxy
        Matched pairs (row i with row i). Boxes with x2 < x1 are not rejected (torchvision does not
        check either); degenerate boxes give finite losses except CIoU's atan(w/h) with h = 0.
    reduction : {"none", "mean", "sum"}
        "mean" of an empty input returns the profile's ``empty_mean`` (torchvision: 0).
    eps : float, optional
        The guard; default from the profile (torchvision/detectron2 1e-7, mmdet module 1e-6).
    convention : {"torchvision", "detectron2", "mmdet"}
    formula : str, optional
        Overrides the profile's formula (see ``refdet.conventions.describe``).

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : BoxLossCache  (``*_backward`` returns ``BoxLossGrads(dpred_boxes, dtarget_boxes)``)
"""


def giou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Generalised-IoU loss ``1 - GIoU`` (Rezatofighi et al. 2019) of matched box pairs.

    ``GIoU = IoU - (C - U) / C`` with ``C`` the area of the smallest enclosing box, ``U`` the union.
    torchvision: ``iou = I / (U + eps)``, ``GIoU = iou - (C - U) / (C + eps)``. mmdet:
    ``U <- max(U, eps)``, ``C <- max(C, eps)``, ``GIoU = I/U - (C - U)/C``.
    The loss lies in [0, 2): 0 for identical boxes, -> 2 for far-apart boxes.
    """
    return _box_loss_forward("giou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


giou_loss_forward.__doc__ += _BOX_LOSS_DOC


def giou_loss_backward(dloss, cache):
    """Hand-derived gradient of :func:`giou_loss_forward` w.r.t. both box sets.

    torchvision: with ``r = (C - U)/(C + eps)``: ``d iou/dI = 1/(U+eps)``,
    ``d iou/dU = -I/(U+eps)^2``, ``dr/dU = -1/(C+eps)``, ``dr/dC = (U+eps)/(C+eps)^2``; then
    ``dU/dI = -1``, ``dU/dw = h`` ..., ``dI/d iw = ih`` (0 where the boxes do not overlap),
    ``d iw/dx2 = [x2 < X2]`` (1/2 on ties), ``dC/d cw = ch``, ``d cw/dx2 = [x2 > X2]``.
    """
    return _box_loss_backward(dloss, cache)


def diou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Distance-IoU loss ``1 - IoU + rho^2 / c^2`` (Zheng et al. 2020) of matched box pairs.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of the enclosing box;
    torchvision adds eps to ``U`` and to ``c^2``; mmdet clamps the intersection and enclosing
    widths at 0 and writes ``rho^2 = ((X1+X2) - (x1+x2))^2/4 + ((Y1+Y2) - (y1+y2))^2/4``.
    """
    return _box_loss_forward("diou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


diou_loss_forward.__doc__ += _BOX_LOSS_DOC


def diou_loss_backward(dloss, cache):
    """Gradient of :func:`diou_loss_forward`: ``-d iou + d(rho^2)/c^2 - rho^2 d(c^2)/c^4`` with
    ``d rho^2 / d x1 = (xp - xg)`` (``xp = (x1 + x2)/2``) and ``d c^2/d cw = 2 cw``."""
    return _box_loss_backward(dloss, cache)


def ciou_loss_forward(pred_boxes, target_boxes, *, reduction="none", eps=None, convention="torchvision",
                      formula=None, empty_mean=None):
    """Complete-IoU loss ``1 - IoU + rho^2/c^2 + alpha v`` (Zheng et al. 2020).

    ``v = 4/pi^2 (atan(W/H) - atan(w/h))^2`` (aspect-ratio consistency) and
    ``alpha = v / (1 - IoU + v + eps)`` treated as a constant in the backward pass (``no_grad``).
    torchvision computes the DIoU part with eps = 1e-7 whatever ``eps`` is (``_diou_iou_loss`` is
    called without it); detectron2 uses ``eps`` throughout; mmdet adds eps to the heights inside
    ``atan``, sets ``alpha = [IoU > 0.5] v / (1 - IoU + v)`` and clamps CIoU to [-1, 1] (gradient 0
    where the clamp is active). torchvision's CIoU of a zero-height box is NaN (atan(0/0)).
    """
    return _box_loss_forward("ciou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


ciou_loss_forward.__doc__ += _BOX_LOSS_DOC


def ciou_loss_backward(dloss, cache):
    """Gradient of :func:`ciou_loss_forward` (alpha fixed): the DIoU gradient plus
    ``alpha * 8/pi^2 * theta * d theta`` with ``d atan(w/h) = (dw h - w dh) / (h^2 + w^2)``."""
    return _box_loss_backward(dloss, cache)


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
    return x.astype(dt, copy=False), dl.astype(dt, copy=False), labels, td.astype(dt, copy=False), batched


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

def rpn_loss_forward(objectness, deltas, targets, *, pos_mask=None, neg_mask=None, convention="torchvision",
                     cls_normalizer=None, reg_normalizer=None, beta=None, reg_weight=None,
                     batch_size_per_image=256, anchors_per_location=9):
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
    _checks.check_choice(s["cls_normalizer"], "cls_normalizer", ("sampled", "batch_size"))
    _checks.check_choice(s["reg_normalizer"], "reg_normalizer",
                         ("sampled", "sampled_per_image", "batch_size", "locations"))
    b_ = _checks.check_positive(s["beta"], "beta", strict=False)
    lam = _checks.check_positive(s["reg_weight"], "reg_weight", strict=False)
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
            mm = mm.reshape(labels.shape) if mm.size == labels.size else mm
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
    p, _ = _sigmoid(x2)
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


def rpn_loss_backward(dloss, cache):
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

def retinanet_loss_forward(cls_logits, box_deltas, targets, *, normalizer=None, convention="torchvision",
                           alpha=0.25, gamma=2.0, normalizer_eps=None, box_loss=None, beta=None,
                           ema=None, ema_momentum=0.9, ema_initial=100.0):
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
    norm = _checks.check_choice(s["normalizer"], "normalizer", ("per_image", "num_pos", "ema", "fg_plus_one"))
    bl = _checks.check_choice(s["box_loss"], "box_loss", ("smooth_l1", "l1"))
    b_ = 0.0 if bl == "l1" else _checks.check_positive(s["beta"], "beta", strict=False)
    neps = _checks.check_positive(s["normalizer_eps"], "normalizer_eps", strict=False)
    a, gam = _focal_params(alpha, gamma)
    mom = _checks.check_probability(ema_momentum, "ema_momentum")
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


def retinanet_loss_backward(dloss, cache):
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
    else:  # lexsort is stable: primary key `last` (False first), then -key
        order = np.stack([np.lexsort((-key[b], last[b])) for b in range(key.shape[0])]) \
            if key.shape[0] else np.zeros(key.shape, np.int64)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(key.shape[-1])[None, :].repeat(key.shape[0], 0), axis=-1)
    return rank


def multibox_loss_forward(conf_logits, loc_deltas, targets, *, neg_pos_ratio=3, convention="torchvision",
                          mining_cap=None, zero_positive=None, beta=None):
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
    cap = _checks.check_choice(s["mining_cap"], "mining_cap", ("none", "negatives", "priors_minus_one"))
    zp = _checks.check_choice(s["zero_positive"], "zero_positive", ("max1", "nan", "zero"))
    b_ = _checks.check_positive(s["beta"], "beta", strict=False)
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
    if P == 0:
        rank = np.zeros((B, 0), np.int64)
    else:
        rank = _stable_rank_desc(key.astype(np.float64), ignored if ignored.any() else None)
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


def multibox_loss_backward(dloss, cache):
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
