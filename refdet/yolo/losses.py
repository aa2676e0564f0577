"""The generalized focal losses: quality focal loss, distribution focal loss (GFL) and varifocal loss.

Focal loss (RetinaNet) down-weights easy examples of a 0/1 target. The detectors of the YOLO era
train against *soft* targets instead -- the IoU (or TAL's alignment) of the prediction with its
ground truth -- and the losses below are the focal loss grown up for that:

* **Quality focal loss** (GFL, arXiv:2006.04388 eq. 5): ``QFL(z, y) = |y - p|^beta * BCE(z, y)``,
  ``p = sigmoid(z)``, the soft target ``y`` in [0, 1] (0 for every class but the object's).
* **Distribution focal loss** (GFL eq. 6): a box side predicted as a distribution over integer bins
  learns the two bins around the target ``y``: ``DFL = -((y_r - y) log P(y_l) + (y - y_l) log P(y_r))``
  with ``y_l = floor(y)``, ``y_r = y_l + 1``, ``P = softmax(z)``.
* **Varifocal loss** (VarifocalNet, arXiv:2008.13367 eq. 2): asymmetric -- positives are weighted by
  their target ``q`` (IoU-aware), negatives by ``alpha * p^gamma``:
  ``VFL = q * BCE(z, q)`` if positive else ``alpha * p^gamma * BCE(z, 0)``.

Every loss is a forward/backward pair (``forward -> (loss, cache)``, ``backward(dloss, cache) ->
LogitGrads(dlogits)``) with the derivative written term by term in the backward's docstring, and a
``reduction`` of ``"none"`` (elementwise), ``"sum"`` or ``"mean"`` (over all elements). The
frameworks' normalisations (mmdet's sum over classes and ``avg_factor``, ultralytics' ``mean(1).sum()``
and ``/ target_scores_sum``) are applied by the caller or by the detector losses of
:mod:`refdet.yolo.detector_losses`. Targets are constants (not differentiated), as in the frameworks.

Sources: mmdet v3 ``models/losses/gfocal_loss.py`` (``quality_focal_loss``,
``distribution_focal_loss``) and ``varifocal_loss.py``; ultralytics 8.4 ``utils/loss.py`` (``DFLoss``,
``VarifocalLoss``).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.yolo import _common

__all__ = [
    "LogitGrads",
    "quality_focal_loss_forward", "quality_focal_loss_backward",
    "distribution_focal_loss_forward", "distribution_focal_loss_backward",
    "varifocal_loss_forward", "varifocal_loss_backward",
]

REDUCTIONS = ("none", "sum", "mean")


class LogitGrads(NamedTuple):
    """Gradient w.r.t. the logits."""
    dlogits: np.ndarray


class _Red(NamedTuple):
    reduction: str
    shape: tuple
    count: int
    dtype: np.dtype


class FocalFamilyCache(NamedTuple):
    kind: str
    dfactor: np.ndarray      # dL/dz per element (before the upstream gradient and reduction)
    red: _Red


class DFLCache(NamedTuple):
    probs: np.ndarray        # (..., R)
    left: np.ndarray         # (...,) int64
    wl: np.ndarray
    wr: np.ndarray
    red: _Red


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    s = loss.sum(dtype=loss.dtype)
    if reduction == "sum":
        return np.asarray(s, loss.dtype)
    if loss.size == 0:
        return np.asarray(np.nan, loss.dtype)
    return np.asarray(s / loss.dtype.type(loss.size), loss.dtype)


def _upstream(dloss, red):
    d = _common.floats(dloss, "dloss")
    if red.reduction == "none":
        if d.shape != red.shape:
            raise ValueError(f"`dloss` must have shape {red.shape} (reduction='none'); got {d.shape}")
        return d.astype(red.dtype, copy=False)
    if d.size != 1:
        raise ValueError(f"`dloss` must be a scalar (reduction={red.reduction!r}); got shape {d.shape}")
    g = red.dtype.type(d.reshape(()))
    if red.reduction == "mean":
        g = g / red.dtype.type(max(red.count, 1))
    return g


def _logits_targets(logits, targets):
    z = _common.floats(logits, "logits")
    t = _common.floats(targets, "targets")
    if t.shape != z.shape:
        raise ValueError(f"`logits` and `targets` must have the same shape; got {z.shape} and {t.shape}")
    dt = _common.common_dtype(z, t)
    return z.astype(dt, copy=False), t.astype(dt, copy=False)


def _check_cache(cache, kind, forward):
    if not isinstance(cache, FocalFamilyCache) or cache.kind != kind:
        raise TypeError(f"`cache` must be the cache returned by {forward}; got {type(cache).__name__}")


def _pow_abs(a, e):
    """``|a|^e`` and ``e |a|^(e-1) sign(a)`` (0 where a = 0: the subgradient at the kink)."""
    m = np.abs(a)
    T = a.dtype.type
    val = _common.torch_pow(m, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        der = np.where(m > 0, T(e) * _common.torch_pow(np.where(m > 0, m, 1), e - 1) * np.sign(a), T(0))
    return val, der


# ------------------------------------------------------------------------------------------------
# Quality focal loss
# ------------------------------------------------------------------------------------------------

def quality_focal_loss_forward(logits, targets, *, beta: float = 2.0, reduction: str = "none"):
    """Quality focal loss, elementwise: ``|y - sigmoid(z)|^beta * BCE_with_logits(z, y)``.

    Parameters
    ----------
    logits : ndarray, any shape S (e.g. (N, K))
    targets : ndarray, shape S
        Soft targets in [0, 1]: the quality (IoU) at the object's class, 0 elsewhere.
    beta : float
        >= 0 (GFL: 2). ``beta = 0`` is plain BCE.
    reduction : {"none", "sum", "mean"}

    Returns
    -------
    loss : ndarray, shape S or ()
    cache : FocalFamilyCache

    Notes
    -----
    mmdet's ``quality_focal_loss`` evaluates the same number in two branches (``sigmoid^beta *
    BCE(z, 0)`` for negatives, ``|y - sigmoid|^beta * BCE(z, y)`` at the positive class) and sums
    over classes: ``loss.sum(axis=-1)`` of this elementwise loss.
    """
    red = _checks.check_choice(reduction, "reduction", REDUCTIONS)
    b = _checks.check_real(beta, "beta")
    if b < 0:
        raise ValueError(f"`beta` must be >= 0; got {b}")
    z, t = _logits_targets(logits, targets)
    if t.size and (t.min() < 0 or t.max() > 1):
        raise ValueError("`targets` must lie in [0, 1] (soft quality targets)")
    p, q = _common.sigmoid(z)
    bce = _common.bce_logits(z, t)
    w, dw = _pow_abs(p - t, b)                     # |p - y|^beta and its derivative w.r.t. (p - y)
    loss = w * bce
    # dL/dz = d|p-y|^beta/dp * p(1-p) * BCE + |p-y|^beta * (p - y)
    dfac = dw * (p * q) * bce + w * (p - t)
    return _reduce(loss, red), FocalFamilyCache("qfl", dfac, _Red(red, z.shape, z.size, z.dtype))


def quality_focal_loss_backward(dloss, cache):
    """``dL/dz = beta |p - y|^(beta-1) sign(p - y) p (1 - p) BCE + |p - y|^beta (p - y)``.

    The first term is the modulating factor's derivative (chain rule through ``p = sigmoid(z)``),
    the second the BCE's ``p - y`` scaled by the factor. At ``p = y`` the factor's subgradient is
    taken as 0 (for ``beta < 1`` the one-sided derivative is infinite there). Returns LogitGrads.
    """
    _check_cache(cache, "qfl", "quality_focal_loss_forward")
    return LogitGrads(cache.dfactor * _upstream(dloss, cache.red))


# ------------------------------------------------------------------------------------------------
# Distribution focal loss
# ------------------------------------------------------------------------------------------------

conventions.register("distribution_focal_loss", {
    "ultralytics": {"clamp_margin": 0.01, "right_weight": "one_minus_left"},
    "mmdet": {"clamp_margin": None, "right_weight": "target_minus_left"},
}, knobs={
    "clamp_margin": conventions.number("targets are clamped to [0, R - 1 - margin] first (None: must already "
                                       "lie in [0, R - 1))", low=0.0, allow_none=True,
                                       source="ultralytics utils/loss.py DFLoss (reg_max - 1 - 0.01)"),
    "right_weight": conventions.choice(("one_minus_left", "target_minus_left"),
                                       "weight of the right bin: 1 - w_left (ultralytics) or y - y_left (mmdet); "
                                       "equal in exact arithmetic, not always in floating point",
                                       source="ultralytics DFLoss wr = 1 - wl; mmdet distribution_focal_loss"),
}, doc="ultralytics 8.4 utils/loss.py DFLoss; mmdet v3 models/losses/gfocal_loss.py distribution_focal_loss.")


@conventions.documented("distribution_focal_loss")
def distribution_focal_loss_forward(logits, targets, *, reduction: str = "none", convention="ultralytics",
                                    clamp_margin=None, right_weight: Optional[str] = None):
    """Distribution focal loss of each distribution (GFL eq. 6).

    ``y_l = floor(y)``, ``y_r = y_l + 1``, ``w_l = y_r - y``, ``w_r = 1 - w_l`` (ultralytics) or
    ``y - y_l`` (mmdet); ``DFL = -(w_l log softmax(z)[y_l] + w_r log softmax(z)[y_r])``. Its
    minimum over ``z`` puts all mass on the two bins with ``P(y_l) = w_l``: the expectation is ``y``.

    Parameters
    ----------
    logits : ndarray, shape (..., R)
        One distribution over ``R = reg_max`` bins per row (ultralytics: ``pred_dist.view(-1,
        reg_max)``, four rows per box).
    targets : ndarray, shape (...)
        Distances in bins, >= 0. With ``clamp_margin`` (ultralytics) they are clamped to
        ``[0, R - 1 - margin]``; without (mmdet) they must lie in ``[0, R - 1)``.
    reduction : {"none", "sum", "mean"}
    convention : {"ultralytics", "mmdet"}
    clamp_margin, right_weight
        Override the profile (table below).

    Returns
    -------
    loss : ndarray, shape (...) or ()
    cache : DFLCache
    """
    red = _checks.check_choice(reduction, "reduction", REDUCTIONS)
    s = conventions.resolve("distribution_focal_loss", convention, clamp_margin=clamp_margin,
                            right_weight=right_weight)
    z = _common.floats(logits, "logits")
    if z.ndim == 0 or z.shape[-1] < 2:
        raise ValueError(f"`logits` must have shape (..., R) with R >= 2 bins; got {z.shape}")
    R = z.shape[-1]
    y = _common.floats(targets, "targets")
    if y.shape != z.shape[:-1]:
        raise ValueError(f"`targets` must have shape {z.shape[:-1]} (one per distribution); got {y.shape}")
    dt = _common.common_dtype(z, y)
    z, y = z.astype(dt, copy=False), y.astype(dt, copy=False)
    T = dt.type
    if s.clamp_margin is not None:
        if not s.clamp_margin < R - 1:
            raise ValueError(f"`clamp_margin` must be < R - 1 = {R - 1} (targets clamp to [0, R - 1 - margin]); "
                             f"got {s.clamp_margin}")
        y = np.clip(y, T(0), T(R - 1 - s.clamp_margin))
    elif y.size and (y.min() < 0 or y.max() >= R - 1):
        raise ValueError(f"`targets` must lie in [0, R - 1) = [0, {R - 1}) without clamping (mmdet); "
                         f"got range [{y.min()}, {y.max()}]")
    tl = np.floor(y).astype(np.int64)                               # y >= 0: .long() == floor
    tl = np.minimum(tl, R - 2)
    tr = tl + 1
    wl = tr.astype(dt) - y
    wr = (T(1) - wl) if s.right_weight == "one_minus_left" else (y - tl.astype(dt))
    logp = _common.log_softmax(z, axis=-1)
    lp_l = np.take_along_axis(logp, tl[..., None], axis=-1)[..., 0]
    lp_r = np.take_along_axis(logp, tr[..., None], axis=-1)[..., 0]
    loss = -(lp_l * wl + lp_r * wr)
    return _reduce(loss, red), DFLCache(np.exp(logp), tl, wl, wr, _Red(red, y.shape, y.size, dt))


def distribution_focal_loss_backward(dloss, cache):
    """``dL/dz_j = (w_l + w_r) P_j - w_l [j = y_l] - w_r [j = y_r]`` (cross entropy's softmax minus
    one-hot, for the two weighted bins). Returns LogitGrads shaped like the logits."""
    if not isinstance(cache, DFLCache):
        raise TypeError(f"`cache` must be the DFLCache returned by distribution_focal_loss_forward; "
                        f"got {type(cache).__name__}")
    g = _upstream(dloss, cache.red)
    dz = cache.probs * (cache.wl + cache.wr)[..., None]
    np.put_along_axis(dz, cache.left[..., None],
                      np.take_along_axis(dz, cache.left[..., None], axis=-1) - cache.wl[..., None], axis=-1)
    r = cache.left[..., None] + 1
    np.put_along_axis(dz, r, np.take_along_axis(dz, r, axis=-1) - cache.wr[..., None], axis=-1)
    g = np.asarray(g)
    return LogitGrads(dz * (g[..., None] if g.ndim else g))


# ------------------------------------------------------------------------------------------------
# Varifocal loss
# ------------------------------------------------------------------------------------------------

def varifocal_loss_forward(logits, targets, *, alpha: float = 0.75, gamma: float = 2.0,
                           iou_weighted: bool = True, labels=None, reduction: str = "none"):
    """Varifocal loss, elementwise: ``w * BCE_with_logits(z, q)``.

    ``w = q`` (``iou_weighted``, else 1) for positives, ``alpha * |p - q|^gamma`` for negatives
    (``= alpha * p^gamma`` for the usual ``q = 0``), ``p = sigmoid(z)``. Positives are
    ``targets > 0`` (mmdet) or, when ``labels`` is given, where ``labels`` is true (ultralytics'
    ``VarifocalLoss(pred_score, gt_score, label)``). The weight is *not* detached: its derivative is
    part of the gradient, as in both implementations.

    Parameters
    ----------
    logits : ndarray, any shape S
    targets : ndarray, shape S
        IoU-aware targets ``q`` in [0, 1].
    alpha : float
        Negative weight (0.75), >= 0.
    gamma : float
        Focusing exponent (2.0), >= 0.
    iou_weighted : bool
    labels : ndarray of bool, shape S, optional
    reduction : {"none", "sum", "mean"}

    Returns
    -------
    loss : ndarray, shape S or ()
    cache : FocalFamilyCache
    """
    red = _checks.check_choice(reduction, "reduction", REDUCTIONS)
    a = _checks.check_real(alpha, "alpha")
    gm = _checks.check_real(gamma, "gamma")
    if a < 0:
        raise ValueError(f"`alpha` must be >= 0; got {a}")
    if gm < 0:
        raise ValueError(f"`gamma` must be >= 0; got {gm}")
    if not isinstance(iou_weighted, (bool, np.bool_)):
        raise TypeError(f"`iou_weighted` must be a bool; got {type(iou_weighted).__name__}")
    z, t = _logits_targets(logits, targets)
    if t.size and (t.min() < 0 or t.max() > 1):
        raise ValueError("`targets` must lie in [0, 1]")
    if labels is None:
        pos = t > 0
    else:
        lb = _checks.as_array(labels, "labels")
        if lb.shape != z.shape:
            raise ValueError(f"`labels` must have the shape of `logits` {z.shape}; got {lb.shape}")
        pos = lb.astype(bool)
    T = z.dtype.type
    p, q = _common.sigmoid(z)
    bce = _common.bce_logits(z, t)
    m, dm = _pow_abs(p - t, gm)
    wpos = t if iou_weighted else np.ones_like(t)
    w = np.where(pos, wpos, T(a) * m)
    dw = np.where(pos, T(0), T(a) * dm * (p * q))                   # d(alpha |p-q|^gamma)/dz
    loss = w * bce
    dfac = dw * bce + w * (p - t)
    return _reduce(loss, red), FocalFamilyCache("vfl", dfac, _Red(red, z.shape, z.size, z.dtype))


def varifocal_loss_backward(dloss, cache):
    """``dL/dz = w (p - q) + [negative] alpha gamma |p - q|^(gamma-1) sign(p - q) p (1 - p) BCE``.

    Positives: the weight ``q`` is a constant, only BCE's ``p - q`` remains. Negatives: the product
    rule through the focal weight. Returns LogitGrads.
    """
    _check_cache(cache, "vfl", "varifocal_loss_forward")
    return LogitGrads(cache.dfactor * _upstream(dloss, cache.red))
