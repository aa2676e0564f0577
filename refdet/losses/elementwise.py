"""Element-wise losses as forward/backward pairs: binary cross entropy with logits, softmax cross
entropy, the sigmoid and softmax focal losses, smooth L1 and L1.

See :mod:`refdet.losses` for the shape of every pair, the dtype rules and the documented kinks.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet.losses._reduction import _c_order, _ReduceInfo, _check_cache, _check_reduction, _reduce, _reduce_backward

__all__ = [
    "bce_with_logits_forward", "bce_with_logits_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward",
    "softmax_focal_loss_forward", "softmax_focal_loss_backward",
    "smooth_l1_forward", "smooth_l1_backward",
    "l1_forward", "l1_backward",
    "LogitGrads", "RegressionGrads",
]


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


# Caches ------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Small shared pieces
# ------------------------------------------------------------------------------------------------

def _logits(x, name="logits"):
    return _c_order(_checks.as_float_array(x, name))


def _like(t, x, tname, xname):
    """Validate ``t`` as a float array of ``x``'s shape, cast to ``x``'s dtype."""
    arr = _checks.as_float_array(t, tname)
    if arr.shape != x.shape:
        raise ValueError(f"`{xname}` and `{tname}` must have the same shape; got {x.shape} and {arr.shape}")
    return _c_order(arr.astype(x.dtype, copy=False))


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` (torch's CPU formula); exp overflowing to inf gives exactly 0."""
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


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
    m = z.max(axis=1, keepdims=True) if z.shape[1] else np.zeros((len(z), 1), z.dtype)
    shifted = z - m
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


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


# ------------------------------------------------------------------------------------------------
# Binary cross entropy with logits
# ------------------------------------------------------------------------------------------------

def bce_with_logits_forward(logits: np.ndarray, targets: np.ndarray, *, reduction: str = "mean",
                            weight: Optional[np.ndarray] = None) -> Tuple[np.ndarray, BCECache]:
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

    Notes
    -----
    Reference: :func:`refdet.reference.losses.bce_with_logits` (equal bit for bit).
    """
    red = _check_reduction(reduction)
    x = _logits(logits)
    t = _like(targets, x, "targets", "logits")
    w = None
    if weight is not None:
        w = _c_order(_checks.as_float_array(weight, "weight").astype(x.dtype, copy=False))
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
    p = _sigmoid(x)
    info = _ReduceInfo(red, x.shape, x.size, x.dtype)
    return _reduce(loss, red), BCECache(p, t, w, info)


def bce_with_logits_backward(dloss: Union[float, np.ndarray], cache: BCECache) -> LogitGrads:
    """``dL/dx = (sigmoid(x) - t) * weight``; returns ``LogitGrads(dlogits)``.

    Reference: :func:`refdet.reference.losses.bce_with_logits_grad` (equal bit for bit).
    """
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
    z = _c_order(_checks.as_float_array(logits, "logits"))
    if z.ndim != 2:
        raise ValueError(f"`logits` must be 2-D with shape (N, K); got shape {z.shape}")
    y = _c_order(_checks.as_int_labels(labels, "labels"))
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"`logits` and `labels` must have the same length N; got {z.shape[0]} and {y.shape[0]}")
    ignore_index = _checks.check_int(ignore_index, "ignore_index")
    valid = y != ignore_index
    k = z.shape[1]
    bad = valid & ((y < 0) | (y >= k))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"`labels` must lie in [0, {k}) or equal ignore_index={ignore_index}; "
                         f"got {int(y[i])} at index {i} (K = {k} columns of `logits`, `ignore_index`)")
    return z, y, valid


def softmax_cross_entropy_forward(logits: np.ndarray, labels: np.ndarray, *, reduction: str = "mean",
                                  ignore_index: int = -1) -> Tuple[np.ndarray, CECache]:
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


def softmax_cross_entropy_backward(dloss: Union[float, np.ndarray], cache: CECache) -> LogitGrads:
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


def sigmoid_focal_loss_forward(logits: np.ndarray, targets: np.ndarray, *, alpha: Optional[float] = 0.25,
                               gamma: float = 2.0, reduction: str = "none") -> Tuple[np.ndarray, FocalCache]:
    """Sigmoid focal loss (Lin et al. 2017), ``torchvision.ops.sigmoid_focal_loss``.

    The paper's terms, in torchvision's order of operations::

        p       = sigmoid(x) = 1 / (1 + exp(-x))
        ce      = BCE(x, t) = -[t log p + (1 - t) log(1 - p)]      (from the logits, never overflows)
        p_t     = p t + (1 - p)(1 - t)
        loss    = ce * (1 - p_t) ** gamma
        alpha_t = alpha t + (1 - alpha)(1 - t)                       (skipped for alpha = -1)
        FL      = alpha_t * loss

    ``alpha`` weights the **positive** class (0.25 in the paper: positives are down-weighted because
    gamma already silences the easy negatives).

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
    Reference: :func:`refdet.reference.losses.sigmoid_focal_loss`, the lines above as written; this
    function computes the same operations in the same order (equal bit for bit) in reused buffers
    (:func:`_sigmoid_focal_inplace`), which RetinaNet-sized inputs need for speed.

    ``ce`` is taken from the logits, not from ``-log(p_t)``, so it stays exact where p_t rounds to 1.
    In float32 torchvision's order inherits a cancellation: for t = 0 and x << 0,
    ``(1 - t) x - log_sigmoid(x)`` subtracts two numbers close to x, and a loss of 7e-13 at x = -9.2
    carries a ~1e-3 relative error in torchvision and in refdet alike (the two then differ by many
    ulps, both far from the float64 value). Use float64 inputs for the oracle answer.

    Examples
    --------
    A confident right answer (x = 2, t = 1), a fairly confident right answer (x = -1, t = 0) and an
    undecided one (x = 0, t = 1): gamma = 0 is the cross entropy; gamma = 2 multiplies each term by
    ``(1 - p_t) ** 2`` and keeps mostly the undecided one (log 2 / 4).

    >>> x, t = np.array([2.0, -1.0, 0.0]), np.array([1.0, 0.0, 1.0])
    >>> sigmoid_focal_loss_forward(x, t, alpha=None, gamma=0.0)[0]
    array([0.12692801, 0.31326169, 0.69314718])
    >>> loss, cache = sigmoid_focal_loss_forward(x, t, alpha=None, gamma=2.0)
    >>> loss
    array([0.00180356, 0.02265806, 0.1732868 ])
    >>> sigmoid_focal_loss_backward(np.ones(3), cache).dlogits
    array([-0.00487094,  0.05258113, -0.2982868 ])
    """
    red = _check_reduction(reduction)
    a, gam = _focal_params(alpha, gamma)
    x = _logits(logits)
    t = _like(targets, x, "targets", "logits")
    loss, p, q, ce = _sigmoid_focal_inplace(x, t, a, gam)
    info = _ReduceInfo(red, x.shape, x.size, x.dtype)
    return _reduce(loss, red), FocalCache(p, q, t, ce, a, gam, info)


def _sigmoid_focal_inplace(x, t, a, gam):
    """The speed path of :func:`sigmoid_focal_loss_forward`: the same operations as the reference
    (and as torchvision), in the same order, written into reused buffers: on RetinaNet-sized inputs
    (10^7 elements) every fresh temporary costs as much as the arithmetic (page faults).
    Returns ``(loss, p, q, ce)`` with ``q = 1 - p = sigmoid(-x)`` (for the gradient). ``x`` and ``t``
    are only read."""
    dt = x.dtype.type
    one = dt(1)
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
    return loss, p, q, ce


def _focal_dx(c, g):
    """The closed-form focal-loss gradient, term by term (``g`` = upstream per element); the speed
    path of :func:`refdet.reference.losses.sigmoid_focal_loss_grad` (the same terms in the same
    order, in reused buffers).

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


def sigmoid_focal_loss_backward(dloss: Union[float, np.ndarray], cache: FocalCache) -> LogitGrads:
    """Gradient of :func:`sigmoid_focal_loss_forward`; returns ``LogitGrads(dlogits)``.

    Reference: :func:`refdet.reference.losses.sigmoid_focal_loss_grad`, the derivative as the
    paper's terms (term 1: the BCE gradient times the modulating factor; term 2: the modulating
    factor's own slope), equal bit for bit; the derivation and the limits are in ``_focal_dx``.
    """
    _check_cache(cache, FocalCache, "sigmoid_focal_loss_forward")
    g = _reduce_backward(dloss, cache.red, scalar_ok=True)
    return LogitGrads(_focal_dx(cache, g))


def softmax_focal_loss_forward(logits: np.ndarray, labels: np.ndarray, *, alpha: Optional[float] = None,
                               gamma: float = 2.0, reduction: str = "none", ignore_index: int = -1,
                               background: int = 0) -> Tuple[np.ndarray, SoftmaxFocalCache]:
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
        alpha_t = np.where(y == background, dt(1 - a), dt(a))           # two dt scalars: dtype dt
    else:
        alpha_t = np.ones(len(y), z.dtype)
    loss = -alpha_t * (dt(1) - p_y) ** dt(gam) * log_py
    loss = np.where(valid, loss, dt(0))
    info = _ReduceInfo(red, loss.shape, int(valid.sum()), z.dtype)
    return _reduce(loss, red, count=info.count), SoftmaxFocalCache(np.exp(logp), y, valid, log_py,
                                                                   alpha_t, gam, info)


def softmax_focal_loss_backward(dloss: Union[float, np.ndarray], cache: SoftmaxFocalCache) -> LogitGrads:
    """Gradient of the softmax focal loss.

    With ``q = 1 - p_y`` and ``d p_y / d z_j = p_y (delta_jy - p_j)``::

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
        bracket = dt(-1)                                                # broadcasts to (N,)
    else:
        # q rounds to 0 only where p_y rounds to 1, and there log p_y == 0 too: the bracket's first term
        # is 0 for any finite q^(gamma - 1); only 0^(gamma - 1) = inf (gamma < 1) is replaced (by q = 0)
        with np.errstate(divide="ignore"):
            qg1 = np.where(q > 0, q ** dt(gam - 1), q)
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
    return _c_order(p), _c_order(t)       # p - t promotes (float32 - float64 is computed in float64)


def smooth_l1_forward(pred: np.ndarray, target: np.ndarray, *, beta: float = 1.0,
                      reduction: str = "mean") -> Tuple[np.ndarray, RegressionCache]:
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

    Notes
    -----
    Reference: :func:`refdet.reference.losses.smooth_l1` (equal bit for bit).

    Examples
    --------
    Quadratic ``0.5 d**2 / beta`` below ``beta``, linear ``|d| - 0.5 beta`` above:

    >>> smooth_l1_forward(np.array([-2.0, -0.5, 0.25, 3.0]), np.zeros(4), beta=1.0, reduction="none")[0]
    array([1.5    , 0.125  , 0.03125, 2.5    ])
    """
    red = _check_reduction(reduction)
    b = _checks.check_positive(beta, "beta", strict=False)
    p, t = _pred_target(pred, target)
    d = p - t
    info = _ReduceInfo(red, d.shape, d.size, d.dtype)
    return _reduce(_smooth_l1_elementwise(d, b), red), RegressionCache(d, b, info)


def smooth_l1_backward(dloss: Union[float, np.ndarray], cache: RegressionCache) -> RegressionGrads:
    """``dl/dd = clip(d / beta, -1, 1)`` (``sign(d)`` for beta = 0, 0 at d = 0); returns
    ``RegressionGrads(dpred, dtarget)`` with ``dtarget = -dpred``. Reference:
    :func:`refdet.reference.losses.smooth_l1_grad` (equal bit for bit)."""
    _check_cache(cache, RegressionCache, "smooth_l1_forward")
    g = _reduce_backward(dloss, cache.red)
    dp = _smooth_l1_grad(cache.diff, cache.beta) * g
    return RegressionGrads(dp, -dp)


def l1_forward(pred: np.ndarray, target: np.ndarray, *, reduction: str = "mean"
               ) -> Tuple[np.ndarray, RegressionCache]:
    """L1 loss ``|pred - target|``, ``F.l1_loss``; the subgradient at 0 is 0 (PyTorch's sign)."""
    red = _check_reduction(reduction)
    p, t = _pred_target(pred, target)
    d = p - t
    info = _ReduceInfo(red, d.shape, d.size, d.dtype)
    return _reduce(np.abs(d), red), RegressionCache(d, 0.0, info)


def l1_backward(dloss: Union[float, np.ndarray], cache: RegressionCache) -> RegressionGrads:
    """``sign(pred - target)``; returns ``RegressionGrads(dpred, dtarget)``."""
    return smooth_l1_backward(dloss, cache)
