"""Readable references for :mod:`refdet.layers` and :mod:`refdet.resize`: each layer as the loop or
formula a textbook writes, for small inputs.

===================================  =========================================================================
reference                            fast path it checks
===================================  =========================================================================
:func:`conv2d`                       :func:`refdet.layers.conv2d_forward` (im2col + GEMM)
:func:`conv2d_backward`              :func:`refdet.layers.conv2d_backward` (GEMMs + col2im, or a flipped conv)
:func:`relu`, :func:`relu_backward`  :func:`refdet.layers.relu_forward` / ``_backward``
:func:`sigmoid`                      :func:`refdet.layers.sigmoid_forward`
:func:`max_pool2d`                   :func:`refdet.layers.max_pool2d_forward` (a loop over the taps)
:func:`max_pool2d_backward`          :func:`refdet.layers.max_pool2d_backward`
:func:`upsample_nearest`             :func:`refdet.resize.upsample_nearest_forward`
:func:`upsample_nearest_backward`    :func:`refdet.resize.upsample_nearest_backward`
:func:`group_norm`                   :func:`refdet.layers.group_norm_forward`
:func:`group_norm_backward`          :func:`refdet.layers.group_norm_backward`
===================================  =========================================================================

How they are held equal (``tests/test_reference_conv.py``):

* Sums are taken with :func:`math.fsum` (correctly rounded) of float64 products, so a reference sum
  is within one rounding of the exact sum of its (rounded) terms; the fast path sums in BLAS order.
  The test bound is ``(K + 2) * u * sum(|terms|)`` with ``K`` the number of terms and ``u = eps / 2``
  of the fast path's dtype: the classic bound of recursive summation, whatever the order.
* Integer inputs (``x``, ``w`` and ``b`` all integer) are summed exactly as Python ints and give
  int64: the integer kernels (``refdet.quant``'s ``conv2d_int``) must equal them bit for bit.
* Max pooling, ReLU and resizing do no rounding: they are held **bit-equal**, ties included. The
  tie rule is the fast path's: a window is scanned row by row and only a *strictly* greater value
  replaces the running maximum, so the first maximum in row-major window order wins.
* Gradient accumulation of max pooling and resizing adds in row-major order of the output pixels,
  the same order as the fast paths, so those gradients are bit-equal too.

Small inputs only: every function raises ``ValueError`` when its work (multiply-adds, or window
elements scanned) exceeds :data:`MAX_WORK`.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _conv

__all__ = ["MAX_WORK", "conv2d", "conv2d_backward", "relu", "relu_backward", "sigmoid", "max_pool2d",
           "max_pool2d_backward", "upsample_nearest", "upsample_nearest_backward", "group_norm",
           "group_norm_backward"]

#: Largest number of multiply-adds (or window elements) a reference agrees to loop over.
MAX_WORK = 200_000

Pair = Union[int, Sequence[int]]


def _pair(v: Pair) -> Tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _check_work(work: int, what: str) -> None:
    if work > MAX_WORK:
        raise ValueError(f"the reference {what} loops over {work} terms, more than MAX_WORK = {MAX_WORK}; "
                         f"it is for small inputs (use refdet.layers for large ones)")


def _is_int(*arrays) -> bool:
    return all(a is None or np.asarray(a).dtype.kind in "iub" for a in arrays)


def _to_int64(values: np.ndarray) -> np.ndarray:
    flat = [int(v) for v in values.reshape(-1)]
    if flat and (min(flat) < -2 ** 63 or max(flat) >= 2 ** 63):
        raise ValueError("the exact integer result does not fit in int64")
    return np.array(flat, dtype=np.int64).reshape(values.shape)


def _out_size(n: int, k: int, s: int, before: int, after: int, d: int, ceil_mode: bool = False) -> int:
    """floor((n + before + after - d*(k - 1) - 1) / s) + 1; ceil_mode rounds up while the last window
    starts inside the input or the top/left padding."""
    span = n + before + after - d * (k - 1) - 1
    if span < 0:
        raise ValueError(f"the dilated window ({d * (k - 1) + 1}) is larger than the padded input "
                         f"({n + before + after})")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + before:
        out -= 1
    return out


# ---------------------------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------------------------

def conv2d(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, *, stride: Pair = 1, padding=0,
           dilation: Pair = 1, groups: int = 1) -> np.ndarray:
    """2-D cross-correlation as a loop over output positions ``(n, f, i, j)``::

        y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * x[n, g*Cg + c, i*sh + p*dh - top, j*sw + q*dw - left]

    with ``g = f // (F / groups)``, ``Cg = C / groups`` and the terms that fall in the zero padding
    left out. ``padding`` is refdet's padding grammar (:func:`refdet._conv.parse_padding`).

    Returns
    -------
    ndarray, shape (B, F, Ho, Wo)
        int64 when ``x``, ``w`` and ``b`` are all integer (exact), else float64 (``math.fsum`` of the
        float64 products).
    """
    x, w = np.asarray(x), np.asarray(w)
    exact = _is_int(x, w, b)
    bsz, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    top, bottom, left, right = _conv.parse_padding(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    ho, wo = _out_size(h, kh, sh, top, bottom, dh), _out_size(wd, kw, sw, left, right, dw)
    _check_work(bsz * f * ho * wo * cg * kh * kw, "conv2d")
    fg = f // groups
    xs = x.tolist() if exact else x.astype(np.float64).tolist()
    ws = w.tolist() if exact else w.astype(np.float64).tolist()
    y = np.empty((bsz, f, ho, wo), dtype=object)
    for n in range(bsz):
        for o in range(f):
            g = o // fg
            for i in range(ho):
                for j in range(wo):
                    terms = [] if b is None else [int(b[o]) if exact else float(b[o])]
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * sh + p * dh - top, j * sw + q * dw - left
                                if 0 <= r < h and 0 <= s < wd:          # outside: the zero padding
                                    terms.append(ws[o][ci][p][q] * xs[n][g * cg + ci][r][s])
                    y[n, o, i, j] = sum(terms) if exact else math.fsum(terms)
    return _to_int64(y) if exact else y.astype(np.float64)


def conv2d_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, *, stride: Pair = 1, padding=0,
                    dilation: Pair = 1, groups: int = 1
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`conv2d` as the loops of the chain rule.

    Every term ``w[f, c, p, q] * x[n, ch, r, s]`` of ``y[n, f, i, j]`` sends ``dy[n, f, i, j] * x`` to
    ``dw[f, c, p, q]`` and ``dy[n, f, i, j] * w`` to ``dx[n, ch, r, s]``; ``db[f]`` is the sum of
    ``dy[:, f]``. The terms of each gradient entry are collected and summed with ``math.fsum``.

    Returns
    -------
    dx : ndarray, shape (B, C, H, W)
    dw : ndarray, shape (F, C / groups, KH, KW)
    db : ndarray, shape (F,)
        float64 (int64 when every input is integer).
    """
    dy, x, w = np.asarray(dy), np.asarray(x), np.asarray(w)
    exact = _is_int(dy, x, w)
    bsz, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    top, bottom, left, right = _conv.parse_padding(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    ho, wo = _out_size(h, kh, sh, top, bottom, dh), _out_size(wd, kw, sw, left, right, dw)
    if dy.shape != (bsz, f, ho, wo):
        raise ValueError(f"`dy` must have shape {(bsz, f, ho, wo)}; got {dy.shape}")
    _check_work(bsz * f * ho * wo * cg * kh * kw, "conv2d_backward")
    fg = f // groups
    cast = (lambda a: a.tolist()) if exact else (lambda a: a.astype(np.float64).tolist())
    dys, xs, ws = cast(dy), cast(x), cast(w)
    dx_terms = {}
    dw_terms = {}
    db_terms = {o: [] for o in range(f)}
    for n in range(bsz):
        for o in range(f):
            g = o // fg
            for i in range(ho):
                for j in range(wo):
                    d = dys[n][o][i][j]
                    db_terms[o].append(d)
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * sh + p * dh - top, j * sw + q * dw - left
                                if 0 <= r < h and 0 <= s < wd:
                                    ch = g * cg + ci
                                    dw_terms.setdefault((o, ci, p, q), []).append(d * xs[n][ch][r][s])
                                    dx_terms.setdefault((n, ch, r, s), []).append(d * ws[o][ci][p][q])
    total = sum if exact else math.fsum

    def gather(shape, terms):
        out = np.zeros(shape, dtype=object)
        for idx in np.ndindex(*shape):
            out[idx] = total(terms.get(idx, []))
        return _to_int64(out) if exact else out.astype(np.float64)

    return gather(x.shape, dx_terms), gather(w.shape, dw_terms), gather((f,), {(o,): t for o, t in db_terms.items()})


# ---------------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------------

def relu(x: np.ndarray) -> np.ndarray:
    """``y = x if x > 0 else 0`` per element (``relu(-0.0) = 0.0``, as the fast path)."""
    x = np.asarray(x)
    _check_work(x.size, "relu")
    zero = x.dtype.type(0)
    return np.array([v if v > 0 else zero for v in x.reshape(-1)], dtype=x.dtype).reshape(x.shape)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dx = dy if x > 0 else 0`` per element: the subgradient at the kink is **ReLU'(0) = 0**."""
    dy, x = np.asarray(dy), np.asarray(x)
    _check_work(x.size, "relu_backward")
    zero = dy.dtype.type(0)
    return np.array([d if v > 0 else zero for d, v in zip(dy.reshape(-1), x.reshape(-1))],
                    dtype=dy.dtype).reshape(x.shape)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` per element in float64, written as ``exp(x) / (1 + exp(x))`` for ``x < 0``
    so that ``exp`` never overflows."""
    x = np.asarray(x, dtype=np.float64)
    _check_work(x.size, "sigmoid")
    out = [1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)) for v in x.reshape(-1)]
    return np.array(out, dtype=np.float64).reshape(x.shape)


# ---------------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------------

def max_pool2d(x: np.ndarray, kernel_size: Pair, *, stride: Optional[Pair] = None, padding=0,
               dilation: Pair = 1, ceil_mode: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Max pooling as a loop over output positions, each window scanned row by row.

    Padding is ``-inf`` and never wins: only taps inside the input are looked at. A tap replaces the
    running maximum only when it is **strictly greater**, so the first maximum in row-major window
    order wins a tie. The running maximum starts at ``-inf`` with the index of the window's first
    input element, so a window whose input elements are all ``-inf`` reports its first one; a window
    holding no input element at all gives ``-inf`` and index -1.

    Returns
    -------
    y : ndarray, shape (B, C, Ho, Wo)
    indices : ndarray of int64, shape (B, C, Ho, Wo)
        Flat ``r * W + s`` of the maximum within its input plane (PyTorch's ``return_indices``).
    """
    x = np.asarray(x)
    bsz, c, h, wd = x.shape
    kh, kw = _pair(kernel_size)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    dh, dw = _pair(dilation)
    top, bottom, left, right = _conv.parse_padding(padding, (h, wd), (kh, kw), (sh, sw), (dh, dw))
    ho = _out_size(h, kh, sh, top, bottom, dh, ceil_mode)
    wo = _out_size(wd, kw, sw, left, right, dw, ceil_mode)
    _check_work(bsz * c * ho * wo * kh * kw, "max_pool2d")
    y = np.full((bsz, c, ho, wo), -np.inf, dtype=x.dtype)
    idx = np.full((bsz, c, ho, wo), -1, dtype=np.int64)
    for n in range(bsz):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    best, arg = -np.inf, -1
                    for p in range(kh):
                        for q in range(kw):
                            r, s = i * sh + p * dh - top, j * sw + q * dw - left
                            if not (0 <= r < h and 0 <= s < wd):
                                continue
                            v = x[n, ch, r, s]
                            if arg < 0 or v > best:  # the first input element, or strictly greater: ties keep
                                best, arg = v, r * wd + s  # the earlier one
                    y[n, ch, i, j], idx[n, ch, i, j] = best, arg
    return y, idx


def max_pool2d_backward(dy: np.ndarray, indices: np.ndarray, in_shape: Sequence[int]) -> np.ndarray:
    """Each output gradient added to the input element that won its window, output pixels taken in
    row-major order (windows without an input element, index -1, pass nothing)."""
    dy, indices = np.asarray(dy), np.asarray(indices)
    bsz, c, h, wd = in_shape
    _check_work(dy.size, "max_pool2d_backward")
    dx = np.zeros((bsz, c, h * wd), dtype=dy.dtype)
    for n, ch, i, j in np.ndindex(*dy.shape):
        k = indices[n, ch, i, j]
        if k >= 0:
            dx[n, ch, k] += dy[n, ch, i, j]
    return dx.reshape(bsz, c, h, wd)


# ---------------------------------------------------------------------------------------------------
# nearest-neighbour resizing
# ---------------------------------------------------------------------------------------------------

def _nearest_index(dst: int, n_in: int, n_out: int, mode: str) -> int:
    """PyTorch's source index: ``scale = float32(in) / float32(out)``, then
    ``nearest``: ``floor(float32(dst * scale))``; ``nearest-exact``: ``floor(float32((dst + 0.5) * scale))``;
    clipped to ``in - 1``."""
    scale = np.float32(n_in) / np.float32(n_out)
    if mode == "nearest":
        src = math.floor(np.float32(dst) * scale)                   # a float32 product
    else:
        src = math.floor(np.float32((dst + 0.5) * float(scale)))    # double product rounded to float32
    return min(int(src), n_in - 1)


def upsample_nearest(x: np.ndarray, size: Pair, *, mode: str = "nearest") -> np.ndarray:
    """``y[n, c, i, j] = x[n, c, src(i), src(j)]`` with ``src`` the index formula of
    :func:`_nearest_index` (PyTorch ``interpolate(size=...)``; ``mode`` 'nearest' or 'nearest-exact')."""
    x = np.asarray(x)
    bsz, c, h, wd = x.shape
    ho, wo = _pair(size)
    _check_work(bsz * c * ho * wo, "upsample_nearest")
    y = np.empty((bsz, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = x[:, :, _nearest_index(i, h, ho, mode), _nearest_index(j, wd, wo, mode)]
    return y


def upsample_nearest_backward(dy: np.ndarray, in_size: Pair, *, mode: str = "nearest") -> np.ndarray:
    """Each output gradient added into its source pixel, output pixels in row-major order."""
    dy = np.asarray(dy)
    bsz, c, ho, wo = dy.shape
    h, wd = _pair(in_size)
    _check_work(dy.size, "upsample_nearest_backward")
    dx = np.zeros((bsz, c, h, wd), dtype=dy.dtype)
    for i in range(ho):
        for j in range(wo):
            dx[:, :, _nearest_index(i, h, ho, mode), _nearest_index(j, wd, wo, mode)] += dy[:, :, i, j]
    return dx


# ---------------------------------------------------------------------------------------------------
# group normalisation
# ---------------------------------------------------------------------------------------------------

def group_norm(x: np.ndarray, gamma: Optional[np.ndarray] = None, beta: Optional[np.ndarray] = None, *,
               num_groups: int, eps: float = 1e-5) -> np.ndarray:
    """Group normalisation (Wu & He 2018, eq. 1-2) per (sample, group), in float64::

        mu = fsum(v) / n;  var = fsum((v - mu)**2) / n;  y = (v - mu) / sqrt(var + eps) * gamma[c] + beta[c]

    over the ``n = C/G * H * W`` values ``v`` of the group."""
    x = np.asarray(x, dtype=np.float64)
    bsz, c, h, wd = x.shape
    _check_work(3 * x.size, "group_norm")
    cpg = c // num_groups
    y = np.empty_like(x)
    for n in range(bsz):
        for g in range(num_groups):
            v = x[n, g * cpg:(g + 1) * cpg].reshape(-1).tolist()
            if not v:
                continue
            mu = math.fsum(v) / len(v)
            var = math.fsum((t - mu) ** 2 for t in v) / len(v)
            sd = math.sqrt(var + eps)
            for ci in range(g * cpg, (g + 1) * cpg):
                ga = 1.0 if gamma is None else float(gamma[ci])
                be = 0.0 if beta is None else float(beta[ci])
                y[n, ci] = (x[n, ci] - mu) / sd * ga + be
    return y


def group_norm_backward(dy: np.ndarray, x: np.ndarray, gamma: Optional[np.ndarray] = None, *, num_groups: int,
                        eps: float = 1e-5) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`group_norm` by the chain rule through the group's mean and variance::

        xhat = (v - mu) / sd,  g = dy * gamma
        dx   = (g - mean(g) - xhat * mean(g * xhat)) / sd
        dgamma[c] = sum over (n, h, w) of dy * xhat;   dbeta[c] = sum of dy

    (``mean`` over the group, every sum with ``math.fsum``). Returns ``(dx, dgamma, dbeta)`` in float64.
    """
    dy, x = np.asarray(dy, dtype=np.float64), np.asarray(x, dtype=np.float64)
    bsz, c, h, wd = x.shape
    _check_work(6 * x.size, "group_norm_backward")
    cpg = c // num_groups
    dx = np.zeros_like(x)
    xhat = np.zeros_like(x)
    for n in range(bsz):
        for g in range(num_groups):
            sl = slice(g * cpg, (g + 1) * cpg)
            v = x[n, sl].reshape(-1).tolist()
            if not v:
                continue
            mu = math.fsum(v) / len(v)
            sd = math.sqrt(math.fsum((t - mu) ** 2 for t in v) / len(v) + eps)
            xh = (x[n, sl] - mu) / sd
            ga = np.ones(cpg) if gamma is None else np.asarray(gamma, np.float64)[sl]
            gd = dy[n, sl] * ga[:, None, None]
            m1 = math.fsum(gd.reshape(-1).tolist()) / len(v)
            m2 = math.fsum((gd * xh).reshape(-1).tolist()) / len(v)
            dx[n, sl] = (gd - m1 - xh * m2) / sd
            xhat[n, sl] = xh
    dgamma = np.array([math.fsum((dy[:, ci] * xhat[:, ci]).reshape(-1).tolist()) for ci in range(c)])
    dbeta = np.array([math.fsum(dy[:, ci].reshape(-1).tolist()) for ci in range(c)])
    return dx, dgamma, dbeta
