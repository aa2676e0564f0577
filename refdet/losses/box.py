"""Box losses as forward/backward pairs: the GIoU, DIoU and CIoU losses of matched box pairs.

Every loss here is ``1 - value`` of an IoU-family value of :mod:`refdet.iou`, computed by its paired
forward/backward (:func:`refdet.iou.generalized_box_iou_paired_forward` and friends) under the profile
that the loss's framework uses; this module only picks that profile, writes the final sum in the
framework's order and reduces. The IoU family has one implementation, in :mod:`refdet.iou`.

What each framework's loss is, in terms of :mod:`refdet.iou`'s knobs:

=========================== =========================================================================
torchvision GIoU/DIoU loss  ``guard="plus_eps"`` (``I / (U + eps)``, ``(C - U) / (C + eps)``), no clamp
                            of the enclosing box (``ops/giou_loss.py``, ``ops/diou_loss.py``)
torchvision CIoU loss       the same with eps = 1e-7 in the DIoU part whatever ``eps`` is (its
                            ``_diou_iou_loss`` is called without eps), ``eps`` in alpha only
                            (``ops/ciou_loss.py``)
detectron2 CIoU loss        the same with ``eps`` everywhere (``layers/losses.py`` ciou_loss)
mmdet GIoU loss             the ``"mmdet"`` profile of ``generalized_box_iou`` (``bbox_overlaps``)
mmdet DIoU/CIoU loss        the ``"mmdet"`` profiles of ``distance_box_iou`` / ``complete_box_iou``,
                            which are mmdet's loss definitions (``models/losses/iou_loss.py``)
=========================== =========================================================================

See :mod:`refdet.losses` for the shape of every pair, the dtype rules and the documented kinks.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import iou as _iou
from refdet.losses._reduction import _ReduceInfo, _check_cache, _check_reduction, _reduce, _reduce_backward

__all__ = [
    "giou_loss_forward", "giou_loss_backward",
    "diou_loss_forward", "diou_loss_backward",
    "ciou_loss_forward", "ciou_loss_backward",
    "BoxLossGrads",
]

Convention = Union[str, conventions.Profile]


class BoxLossGrads(NamedTuple):
    """Gradients of a GIoU/DIoU/CIoU loss w.r.t. both box sets (torchvision differentiates both)."""
    dpred_boxes: np.ndarray
    dtarget_boxes: np.ndarray


class BoxLossCache(NamedTuple):
    kind: str                            # "giou", "diou" or "ciou"
    formula: str
    iou: "_iou.PairedIoUCache"           # the paired forward's cache: its fields name the terms
    red: _ReduceInfo


# ------------------------------------------------------------------------------------------------
# Convention tables
# ------------------------------------------------------------------------------------------------

def _check_empty_mean(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise TypeError(f"`empty_mean` must be a float (NaN allowed); got {type(v).__name__} {v!r}")
    return float(v)


_EMPTY_MEAN = conventions.option(
    "value of reduction='mean' on N = 0 (torchvision returns 0 * sum = 0; a torch mean of nothing is NaN)",
    check=_check_empty_mean,
    source="torchvision ops/giou_loss.py, diou_loss.py, ciou_loss.py (loss.sum() * 0.0 when numel() == 0); "
           "mmdet weight_reduce_loss (loss.mean())")
_LOSS_EPS = conventions.number(
    "the guard constant (torchvision functional default 1e-7; mmdet loss modules 1e-6)", low=0.0,
    source="torchvision ops/*_loss.py eps=1e-7; mmdet models/losses/iou_loss.py GIoULoss/DIoULoss/CIoULoss "
           "eps=1e-6")

conventions.register(
    "giou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={
        "formula": conventions.choice(
            ("torchvision", "mmdet"),
            "torchvision: 1 - GIoU with iou = I / (U + eps), (C - U) / (C + eps), no clamp of the "
            "enclosing box; mmdet: 1 - GIoU of bbox_overlaps (U <- max(U, eps), C <- max(C, eps))",
            source="torchvision ops/giou_loss.py (fvcore's giou_loss, used by detectron2); mmdet "
                   "models/losses/iou_loss.py giou_loss -> bbox_overlaps(mode='giou', is_aligned=True)"),
        "eps": _LOSS_EPS,
        "empty_mean": _EMPTY_MEAN,
    },
    doc="torchvision ops/giou_loss.py; detectron2 uses fvcore's giou_loss (the same formula); mmdet "
        "bbox_overlaps(mode='giou', is_aligned=True) behind GIoULoss (eps=1e-6).",
)

conventions.register(
    "diou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={
        "formula": conventions.choice(
            ("torchvision", "mmdet"),
            "torchvision: 1 - I/(U + eps) + rho^2/(cw^2 + ch^2 + eps), no clamp of the enclosing box; "
            "mmdet: 1 - (iou - rho^2/c^2) with cw, ch clamped at 0 and rho^2 from coordinate sums",
            source="torchvision ops/diou_loss.py _diou_iou_loss; detectron2 layers/losses.py diou_loss; "
                   "mmdet models/losses/iou_loss.py diou_loss"),
        "eps": _LOSS_EPS,
        "empty_mean": _EMPTY_MEAN,
    },
    doc="torchvision ops/diou_loss.py; detectron2 layers/losses.py diou_loss; mmdet "
        "models/losses/iou_loss.py diou_loss.",
)

conventions.register(
    "ciou_loss",
    {
        "torchvision": {"formula": "torchvision", "eps": 1e-7, "empty_mean": 0.0},
        "detectron2": {"formula": "detectron2", "eps": 1e-7, "empty_mean": 0.0},
        "mmdet": {"formula": "mmdet", "eps": 1e-6, "empty_mean": float("nan")},
    },
    knobs={
        "formula": conventions.choice(
            ("torchvision", "detectron2", "mmdet"),
            "torchvision: the DIoU part always with eps = 1e-7 (its _diou_iou_loss is called without "
            "eps), alpha = v / (1 - iou + v + eps) under no_grad; detectron2: eps everywhere; mmdet: "
            "h + eps in atan(w / h), alpha = [iou > 0.5] v / (1 - iou + v), CIoU clamped to [-1, 1]",
            source="torchvision ops/ciou_loss.py; detectron2 layers/losses.py ciou_loss; mmdet v3 "
                   "models/losses/iou_loss.py ciou_loss"),
        "eps": _LOSS_EPS,
        "empty_mean": _EMPTY_MEAN,
    },
    doc="torchvision ops/ciou_loss.py; detectron2 layers/losses.py ciou_loss; mmdet v3 "
        "models/losses/iou_loss.py ciou_loss (alpha gated by IoU > 0.5 after the CIoU authors' code, clamp).",
)

_PAIRED = {"giou": "generalized_box_iou_paired", "diou": "distance_box_iou_paired",
           "ciou": "complete_box_iou_paired"}
_FORWARD = {"giou": _iou.generalized_box_iou_paired_forward, "diou": _iou.distance_box_iou_paired_forward,
            "ciou": _iou.complete_box_iou_paired_forward}
_BACKWARD = {"giou": _iou.generalized_box_iou_paired_backward, "diou": _iou.distance_box_iou_paired_backward,
             "ciou": _iou.complete_box_iou_paired_backward}


def iou_profile(kind: str, loss_profile: conventions.Profile) -> conventions.Profile:
    """The :mod:`refdet.iou` profile whose paired value ``v`` makes the loss ``1 - v``.

    ``kind`` is ``"giou"``, ``"diou"`` or ``"ciou"``; ``loss_profile`` the resolved profile of
    ``"<kind>_loss"``. The mapping is the table in this module's docstring.
    """
    op, e = _PAIRED[kind], loss_profile["eps"]
    if loss_profile["formula"] == "mmdet":
        # mmdet's IoU-family definitions are the "mmdet" profiles of refdet.iou. The loss clamps
        # CIoU in mmdet's order, iou - (rho^2/c^2 + alpha v); the gradient is masked by the profile's
        # own clamp (clip=True) of refdet.iou's iou - rho^2/c^2 - alpha v: the same elements, since the
        # clamp acts only at or below -1, where alpha = 0 (the gate opens only where CIoU > -3/4) and
        # the two orders give the same bits.
        return conventions.resolve(op, "mmdet", eps=e)
    # half_wh stays the profile's: the boxes are float32/float64 by now (as_boxes), it acts on float16 only
    over = {"guard": "plus_eps", "clamp_enclosing": False}
    if kind == "ciou" and loss_profile["formula"] == "torchvision":
        over["alpha_eps"] = e       # _diou_iou_loss(boxes1, boxes2): the profile's eps 1e-7 in the DIoU part
    else:
        over["eps"] = e
    return conventions.resolve(op, "torchvision", **over)


def _box_pair(pred_boxes, target_boxes):
    p = _checks.as_boxes(pred_boxes, "pred_boxes")
    g = _checks.as_boxes(target_boxes, "target_boxes")
    if p.shape != g.shape:
        raise ValueError(f"`pred_boxes` and `target_boxes` must have the same shape (N, 4); "
                         f"got {p.shape} and {g.shape}")
    return p, g                     # refdet.iou promotes the pair to one dtype (float32 + float64 -> float64)


def _box_loss_forward(kind, pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean,
                      atan=None):
    s = conventions.resolve(f"{kind}_loss", convention, formula=formula, eps=eps, empty_mean=empty_mean)
    red = _check_reduction(reduction)
    p, g = _box_pair(pred_boxes, target_boxes)
    prof = iou_profile(kind, s)
    kw = {"atan": atan} if kind == "ciou" else {}
    value, c = _FORWARD[kind](p, g, convention=prof, **kw)
    dt = value.dtype.type
    one = dt(1)
    # no FP warning can arise below: the terms are finite, +-inf (rho^2/c^2 with c^2 = 0) or NaN
    if kind == "giou" or (kind == "diou" and s["formula"] == "mmdet"):
        loss = one - value                                       # 1 - GIoU; mmdet 1 - (iou - rho^2/c^2)
    elif s["formula"] == "mmdet":                                # mmdet ciou_loss: clamp(cious, -1, 1)
        # of which only the lower bound acts (CIoU <= IoU <= 1); the clamp's backward (0 outside
        # (-1, 1)) is refdet.iou's clip, see iou_profile
        loss = one - np.maximum(c.iou - (c.distance + c.alpha * c.v), -one)
    else:
        loss = one - c.iou + c.distance                          # torchvision/detectron2: 1 - iou + rho^2/c^2
        if kind == "ciou":
            loss = loss + c.alpha * c.v                          # ... + alpha * v
    info = _ReduceInfo(red, loss.shape, loss.size, value.dtype)   # the pair's promoted working dtype
    return _reduce(loss, red, empty_mean=s["empty_mean"]), BoxLossCache(kind, s["formula"], c, info)


def _box_loss_backward(dloss, cache):
    _check_cache(cache, BoxLossCache, "giou_loss_forward / diou_loss_forward / ciou_loss_forward")
    g = _reduce_backward(dloss, cache.red)
    dvalue = -g                                                  # loss = 1 - value
    grads = _BACKWARD[cache.kind](dvalue, cache.iou)
    return BoxLossGrads(grads.dboxes1, grads.dboxes2)




@conventions.documented("giou_loss")
def giou_loss_forward(pred_boxes: np.ndarray, target_boxes: np.ndarray, *, reduction: str = "none",
                      eps: Optional[float] = None, convention: Convention = "torchvision",
                      formula: Optional[str] = None, empty_mean: Optional[float] = None
                      ) -> Tuple[np.ndarray, BoxLossCache]:
    """Generalised-IoU loss ``1 - GIoU`` (Rezatofighi et al. 2019) of matched box pairs.

    ``GIoU = IoU - (C - U) / C`` with ``C`` the area of the smallest enclosing box, ``U`` the union,
    computed by :func:`refdet.iou.generalized_box_iou_paired_forward`. torchvision:
    ``iou = I / (U + eps)``, ``GIoU = iou - (C - U) / (C + eps)`` (the ``plus_eps`` guard, no clamp of
    the enclosing box). mmdet: ``U <- max(U, eps)``, ``C <- max(C, eps)``, ``GIoU = I/U - (C - U)/C``
    (the ``"mmdet"`` profile of :func:`refdet.generalized_box_iou`, so the loss is exactly
    ``1 - generalized_box_iou(p, g, convention="mmdet", eps=eps)`` on the diagonal).
    The loss lies in [0, 2): 0 for identical boxes, -> 2 for far-apart boxes.
    Reference: ``1 - refdet.reference.iou.giou`` per pair.

    Parameters
    ----------
    pred_boxes, target_boxes : ndarray, shape (N, 4), xyxy
        Matched pairs (row i with row i). Boxes with x2 < x1 are not rejected (torchvision does not
        check either).
    reduction : {"none", "mean", "sum"}
        "mean" of an empty input returns the profile's ``empty_mean`` (torchvision: 0).
    eps : float, optional
        The guard; default from the profile (torchvision/detectron2 1e-7, mmdet module 1e-6).
    convention : {"torchvision", "detectron2", "mmdet"} or conventions.Profile
    formula : str, optional
        Overrides the profile's formula (table at the end).
    empty_mean : float, optional
        Overrides the value of an empty "mean".

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : BoxLossCache
        For ``giou_loss_backward`` (``-> BoxLossGrads(dpred_boxes, dtarget_boxes)``); ``cache.iou``
        is the paired IoU cache, whose fields name the terms (``iou``, ``distance``, ``alpha``, ...).
    """
    return _box_loss_forward("giou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


def giou_loss_backward(dloss: Union[float, np.ndarray], cache: BoxLossCache) -> BoxLossGrads:
    """Gradient of :func:`giou_loss_forward` w.r.t. both box sets: ``-`` the gradient of GIoU, from
    :func:`refdet.iou.generalized_box_iou_paired_backward` (the derivation is there).

    torchvision: with ``r = (C - U)/(C + eps)``: ``d iou/dI = 1/(U+eps)``,
    ``d iou/dU = -I/(U+eps)^2``, ``dr/dU = -1/(C+eps)``, ``dr/dC = (U+eps)/(C+eps)^2``; then
    ``dU/dI = -1``, ``dU/dw = h`` ..., ``dI/d iw = ih`` (0 where the boxes do not overlap),
    ``d iw/dx2 = [x2 < X2]`` (1/2 on ties), ``dC/d cw = ch``, ``d cw/dx2 = [x2 > X2]``.
    """
    return _box_loss_backward(dloss, cache)


@conventions.documented("diou_loss")
def diou_loss_forward(pred_boxes: np.ndarray, target_boxes: np.ndarray, *, reduction: str = "none",
                      eps: Optional[float] = None, convention: Convention = "torchvision",
                      formula: Optional[str] = None, empty_mean: Optional[float] = None
                      ) -> Tuple[np.ndarray, BoxLossCache]:
    """Distance-IoU loss ``1 - IoU + rho^2 / c^2`` (Zheng et al. 2020) of matched box pairs.

    ``rho`` is the distance between the box centres, ``c`` the diagonal of the enclosing box; the
    terms come from :func:`refdet.iou.distance_box_iou_paired_forward`. torchvision adds eps to
    ``U`` and to ``c^2`` and sums ``(1 - iou) + rho^2/c^2`` in that order; mmdet clamps the
    enclosing widths at 0, writes ``rho^2 = ((X1+X2) - (x1+x2))^2/4 + ((Y1+Y2) - (y1+y2))^2/4`` and
    returns ``1 - (iou - rho^2/c^2)`` (exactly ``1 - distance_box_iou(p, g, convention="mmdet")``).
    Reference: ``1 - refdet.reference.iou.diou`` per pair.

    Parameters
    ----------
    pred_boxes, target_boxes : ndarray, shape (N, 4), xyxy
        Matched pairs (row i with row i). Boxes with x2 < x1 are not rejected (torchvision does not
        check either).
    reduction : {"none", "mean", "sum"}
        "mean" of an empty input returns the profile's ``empty_mean`` (torchvision: 0).
    eps : float, optional
        The guard; default from the profile (torchvision/detectron2 1e-7, mmdet module 1e-6).
    convention : {"torchvision", "detectron2", "mmdet"} or conventions.Profile
    formula : str, optional
        Overrides the profile's formula (table at the end).
    empty_mean : float, optional
        Overrides the value of an empty "mean".

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : BoxLossCache
        For ``diou_loss_backward`` (``-> BoxLossGrads(dpred_boxes, dtarget_boxes)``); ``cache.iou``
        is the paired IoU cache, whose fields name the terms (``iou``, ``distance``, ``alpha``, ...).
    """
    return _box_loss_forward("diou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean)


def diou_loss_backward(dloss: Union[float, np.ndarray], cache: BoxLossCache) -> BoxLossGrads:
    """Gradient of :func:`diou_loss_forward` (via :func:`refdet.iou.distance_box_iou_paired_backward`):
    ``-d iou + d(rho^2)/c^2 - rho^2 d(c^2)/c^4`` with ``d rho^2 / d x1 = (xp - xg)``
    (``xp = (x1 + x2)/2``) and ``d c^2/d cw = 2 cw``."""
    return _box_loss_backward(dloss, cache)


@conventions.documented("ciou_loss")
def ciou_loss_forward(pred_boxes: np.ndarray, target_boxes: np.ndarray, *, reduction: str = "none",
                      eps: Optional[float] = None, convention: Convention = "torchvision",
                      formula: Optional[str] = None, empty_mean: Optional[float] = None,
                      atan: Optional[Callable[[np.ndarray], np.ndarray]] = None
                      ) -> Tuple[np.ndarray, BoxLossCache]:
    """Complete-IoU loss ``1 - IoU + rho^2/c^2 + alpha v`` (Zheng et al. 2020).

    ``v = 4/pi^2 (atan(W/H) - atan(w/h))^2`` (aspect-ratio consistency) and
    ``alpha = v / (1 - IoU + v + eps)`` treated as a constant in the backward pass (``no_grad``);
    the terms come from :func:`refdet.iou.complete_box_iou_paired_forward`.
    torchvision computes the DIoU part with eps = 1e-7 whatever ``eps`` is (``_diou_iou_loss`` is
    called without it); detectron2 uses ``eps`` throughout; mmdet adds eps to the heights inside
    ``atan``, sets ``alpha = [IoU > 0.5] v / (1 - IoU + v)`` and clamps CIoU to [-1, 1] (gradient 0
    where the clamp is active): that is the ``"mmdet"`` profile of :func:`refdet.complete_box_iou`,
    so this loss is ``1 - complete_box_iou(p, g, convention="mmdet", eps=eps)`` on the diagonal
    (mmdet sums ``rho^2/c^2 + alpha v`` before subtracting it from the IoU, refdet's pairwise CIoU
    subtracts the two in turn: the two agree to an ulp of 1). torchvision's CIoU of a zero-height box
    is NaN (atan(0/0)). The gate is why mmdet's CIoU loss and torchvision's differ by up to ~0.43 on
    pairs with IoU <= 0.5: there mmdet's CIoU loss is its DIoU loss.

    Reference: ``1 - refdet.reference.iou.ciou`` per pair.

    Parameters
    ----------
    pred_boxes, target_boxes : ndarray, shape (N, 4), xyxy
        Matched pairs (row i with row i). Boxes with x2 < x1 are not rejected (torchvision does not
        check either); a zero-height box gives NaN under torchvision (atan(0/0)).
    reduction : {"none", "mean", "sum"}
        "mean" of an empty input returns the profile's ``empty_mean`` (torchvision: 0).
    eps : float, optional
        The guard; default from the profile (torchvision/detectron2 1e-7, mmdet module 1e-6).
    convention : {"torchvision", "detectron2", "mmdet"} or conventions.Profile
    formula : str, optional
        Overrides the profile's formula (table at the end).
    empty_mean : float, optional
        Overrides the value of an empty "mean".
    atan : callable, optional
        The arctangent (default :func:`numpy.arctan`); pass torch's to reproduce torchvision's
        float32 bits.

    Returns
    -------
    loss : ndarray, shape (N,) or ()
    cache : BoxLossCache
        For ``ciou_loss_backward`` (``-> BoxLossGrads(dpred_boxes, dtarget_boxes)``); ``cache.iou``
        is the paired IoU cache, whose fields name the terms (``iou``, ``distance``, ``alpha``, ...).
    """
    return _box_loss_forward("ciou", pred_boxes, target_boxes, reduction, eps, convention, formula, empty_mean,
                             atan)


def ciou_loss_backward(dloss: Union[float, np.ndarray], cache: BoxLossCache) -> BoxLossGrads:
    """Gradient of :func:`ciou_loss_forward` (alpha fixed; via
    :func:`refdet.iou.complete_box_iou_paired_backward`): the DIoU gradient plus
    ``alpha * 8/pi^2 * theta * d theta`` with ``d atan(w/h) = (dw h - w dh) / (h^2 + w^2)``."""
    return _box_loss_backward(dloss, cache)

