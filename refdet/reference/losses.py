"""The element-wise losses as formulas: BCE with logits, smooth L1, and the sigmoid focal loss with its
gradient written as the paper's terms (Lin et al. 2017, "Focal Loss for Dense Object Detection").

The readable versions of :mod:`refdet.losses.elementwise`. Each function takes arrays (any shape; a
float32 array keeps float32 arithmetic) and returns the per-element value. The order of operations
is torchvision's, so tests hold the fast paths equal to these bit for bit.
"""
from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``p = 1 / (1 + exp(-x))``."""
    return 1 / (1 + np.exp(-x))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """``log p = min(x, 0) - log(1 + exp(-|x|))``: the same number, without overflow for any x."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def bce_with_logits(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Binary cross entropy ``-[t log p + (1 - t) log(1 - p)]`` with ``p = sigmoid(x)``.

    With ``log(1 - p) = log_sigmoid(x) - x`` this is ``(1 - t) x - log_sigmoid(x)``, which never
    takes the log of 0 (torch's form).
    """
    return (1 - t) * x - log_sigmoid(x)


def bce_with_logits_grad(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``dL/dx = p - t``."""
    return sigmoid(x) - t


def smooth_l1(d: np.ndarray, beta: float) -> np.ndarray:
    """Smooth L1 of a difference ``d``: ``0.5 d^2 / beta`` where ``|d| < beta``, else
    ``|d| - 0.5 beta``; the pieces meet at ``|d| = beta`` (value beta / 2, slope 1). beta = 0 is L1."""
    if beta == 0:
        return np.abs(d)
    return np.where(np.abs(d) < beta, 0.5 * np.abs(d) * np.abs(d) / beta, np.abs(d) - 0.5 * beta)


def smooth_l1_grad(d: np.ndarray, beta: float) -> np.ndarray:
    """``d / beta`` where ``|d| < beta``, else ``sign(d)``; beta = 0: ``sign(d)`` (0 at d = 0)."""
    if beta == 0:
        return np.sign(d)
    return np.where(np.abs(d) < beta, d / beta, np.sign(d))


def sigmoid_focal_loss(x: np.ndarray, t: np.ndarray, alpha: float = 0.25, gamma: float = 2.0) -> np.ndarray:
    """``FL = alpha_t (1 - p_t)^gamma CE``: cross entropy scaled down where the example is easy.

    ``alpha`` weights the positive class; ``alpha = -1`` switches the weighting off (torchvision).
    """
    p = sigmoid(x)
    ce = bce_with_logits(x, t)                       # = -log(p_t) for 0/1 targets
    p_t = p * t + (1 - p) * (1 - t)                  # the probability of the true class
    loss = ce * (1 - p_t) ** gamma                   # the modulating factor (1 - p_t)^gamma
    if alpha >= 0:
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        loss = alpha_t * loss
    return loss


def sigmoid_focal_loss_grad(x: np.ndarray, t: np.ndarray, alpha: float = 0.25, gamma: float = 2.0
                            ) -> np.ndarray:
    """``dFL/dx``, term by term (product rule on ``FL = alpha_t * CE * m``, ``m = (1 - p_t)^gamma``).

    ::

        d CE / dx  = p - t
        d p_t / dx = t p (1 - p) - (1 - t) p (1 - p) = (2t - 1) p (1 - p)
        d m / dx   = -gamma (1 - p_t)^(gamma - 1) (2t - 1) p (1 - p)
        dFL/dx     = alpha_t [ (p - t) m  -  gamma CE (1 - p_t)^(gamma - 1) (2t - 1) p (1 - p) ]
                              term 1          term 2 (the modulating factor's own slope)

    Limits: gamma = 0 leaves term 1 = p - t, the BCE gradient. Where ``1 - p_t`` is 0 in floating
    point (an example classified perfectly) and gamma < 1, ``(1 - p_t)^(gamma - 1)`` is infinite but
    its product with ``CE p (1 - p) ~ (1 - p_t)^2`` tends to 0: it is taken as 0 there. A badly wrong
    example (p_t -> 0) has m -> 1 and CE p (1 - p) ~ ``|x| e^-|x|`` -> 0: the gradient tends to
    ``alpha_t (p - t)``. ``1 - p`` is computed as ``sigmoid(-x)``, the same number without the
    cancellation of ``1 - p`` when p rounds to 1.
    """
    p = sigmoid(x)
    q = sigmoid(-x)                                  # 1 - p
    ce = bce_with_logits(x, t)
    one_minus_p_t = p * (1 - t) + q * t
    term1 = (p - t) * one_minus_p_t ** gamma
    if gamma == 0:
        term2 = 0
    else:
        with np.errstate(divide="ignore"):
            m1 = np.where(one_minus_p_t > 0, one_minus_p_t ** (gamma - 1), 0)   # limit 0 (see above)
        term2 = (2 * t - 1) * p * q * ce * m1 * gamma
    alpha_t = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else 1
    return alpha_t * (term1 - term2)
