"""The layers a detector is built from, as forward/backward pairs on NCHW arrays.

Every layer is a pair::

    y, cache = conv2d_forward(x, w, b, stride=1, padding=1)
    grads = conv2d_backward(dy, cache)          # Conv2dGrads(dx, dw, db)

``*_forward`` returns the output and a NamedTuple cache holding what the backward pass needs;
``*_backward(dy, cache)`` returns a NamedTuple of gradients named after the forward's inputs
(``dx`` for ``x``, ``dw`` for ``w``, ...), the CS231n ``layers.py`` contract. No hidden state.

Layout: feature maps are ``(B, C, H, W)`` (NCHW, PyTorch's layout); convolution weights are
``(F, C / groups, KH, KW)``. Everything follows PyTorch's definitions (cross-correlation, not
flipped convolution; ``floor`` output sizes; nearest-neighbour source indices computed in float32 as
ATen does) so that results can be compared with ``torch.nn.functional`` directly.

Dtypes: float64 in -> float64 math (the oracle); float32 in -> float32 math; float16 is computed in
float32; integer inputs become float64. When arguments mix float32 and float64 the float64 wins
(PyTorch would refuse the mix).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

from refdet import _checks

__all__ = [
    "Conv2dCache",
    "Conv2dGrads",
    "conv2d_forward",
    "conv2d_backward",
    "ReluCache",
    "ReluGrads",
    "relu_forward",
    "relu_backward",
    "SigmoidCache",
    "SigmoidGrads",
    "sigmoid_forward",
    "sigmoid_backward",
]

#: Largest im2col matrix (bytes) built at once; larger convolutions are done in chunks of output rows.
IM2COL_MAX_BYTES = 256 * 2 ** 20


def _dtype_of(*arrays):
    """The dtype to compute in: float32 only if every array works in float32, else float64."""
    dts = [a.dtype for a in arrays if a is not None]
    return np.dtype(np.float32) if all(d == np.float32 for d in dts) else np.dtype(np.float64)


# ---------------------------------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------------------------------

class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs: the inputs (unpadded) and the geometry."""
    x: np.ndarray                 # (B, C, H, W), compute dtype
    w: np.ndarray                 # (F, C / groups, KH, KW), compute dtype
    has_bias: bool
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    out_shape: tuple              # (B, F, Ho, Wo)


class Conv2dGrads(NamedTuple):
    dx: np.ndarray                # (B, C, H, W)
    dw: np.ndarray                # (F, C / groups, KH, KW)
    db: Optional[np.ndarray]      # (F,) or None when the forward had no bias


def _pad(x, ph, pw):
    """Zero-pad H by ``ph`` and W by ``pw`` on both sides (a new array; ``x`` itself is never written)."""
    if ph == 0 and pw == 0:
        return x
    b, c, h, w = x.shape
    out = np.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def _windows(xp, r0, rows, kh, kw, sh, sw, dh, dw, wo):
    """Read-only strided view ``(B, C, KH, KW, rows, Wo)`` of the padded input.

    Element ``[b, c, i, j, r, q]`` is ``xp[b, c, (r0 + r) * sh + i * dh, q * sw + j * dw]``: the input
    pixel that kernel tap ``(i, j)`` sees for output pixel ``(r0 + r, q)``. No copy is made here.
    """
    s_b, s_c, s_h, s_w = xp.strides
    base = xp[:, :, r0 * sh:, :]
    return as_strided(base, shape=(xp.shape[0], xp.shape[1], kh, kw, rows, wo),
                      strides=(s_b, s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w), writeable=False)


def _row_chunks(ho, bytes_per_row):
    """Split output rows ``[0, ho)`` into chunks whose im2col matrix stays under IM2COL_MAX_BYTES."""
    step = max(1, int(IM2COL_MAX_BYTES // max(bytes_per_row, 1)))
    return [(r0, min(ho, r0 + step)) for r0 in range(0, ho, step)]


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    ``y[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] * xpad[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw]``
    where ``g = f // (F / groups)`` is the group of output channel ``f``, ``Cg = C / groups`` and
    ``xpad`` is ``x`` zero-padded by ``padding`` on each side.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    w : ndarray, shape (F, C / groups, KH, KW)
    b : ndarray, shape (F,), or None
    stride, padding, dilation : int or (int, int)
        Per (H, W). ``stride >= 1``, ``padding >= 0``, ``dilation >= 1``.
    groups : int
        Must divide both C and F; each group of ``F / groups`` filters sees ``C / groups`` channels.

    Returns
    -------
    y : ndarray, shape (B, F, Ho, Wo)
        ``Ho = floor((H + 2*ph - dh*(KH - 1) - 1) / sh) + 1``, likewise ``Wo``.
    cache : Conv2dCache

    Notes
    -----
    im2col: a strided view of the padded input is copied into the matrix ``(B, groups, Cg*KH*KW,
    Ho*Wo)`` and multiplied by the weights ``(groups, F/groups, Cg*KH*KW)`` in one batched BLAS
    matmul. When that matrix would exceed ``IM2COL_MAX_BYTES`` (256 MiB) the output rows are done in
    chunks. float32 results agree with PyTorch to float32 rounding (the summation order of a GEMM is
    not defined, so bit equality is not promised); float64 results are the oracle answer.
    NaN/inf in ``x``, ``w`` or ``b`` are rejected (``0 * inf`` would poison every window).
    """
    x = _checks.as_nchw(x, "x")
    groups = _checks.check_int(groups, "groups", low=1)
    w = _checks.check_conv_weight(w, x, groups, "w", "x")
    w = _checks.as_float_array(w, "w")
    f_out = w.shape[0]
    b = _checks.check_optional_vector(b, "b", f_out)
    sh, sw = _checks.check_pair(stride, "stride", low=1)
    ph, pw = _checks.check_pair(padding, "padding", low=0)
    dh, dw = _checks.check_pair(dilation, "dilation", low=1)
    dt = _dtype_of(x, w, b)
    x, w = x.astype(dt, copy=False), w.astype(dt, copy=False)
    bsz, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ho = _checks.conv_output_size(h, kh, sh, ph, dh, name="x")
    wo = _checks.conv_output_size(wd, kw, sw, pw, dw, name="x")

    g, fg, cg = groups, f_out // groups, c // groups
    wg = w.reshape(g, fg, cg * kh * kw)                                    # (g, F/g, Cg*KH*KW)
    y = np.empty((bsz, f_out, ho, wo), dtype=dt)
    if y.size:
        xp = _pad(x, ph, pw)
        for r0, r1 in _row_chunks(ho, bsz * c * kh * kw * wo * dt.itemsize):
            rows = r1 - r0
            cols = _windows(xp, r0, rows, kh, kw, sh, sw, dh, dw, wo)    # view (B, C, KH, KW, rows, Wo)
            cols = cols.reshape(bsz, g, cg * kh * kw, rows * wo)          # the im2col copy
            out = np.matmul(wg, cols)                                     # (B, g, F/g, rows*Wo)
            y[:, :, r0:r1, :] = out.reshape(bsz, f_out, rows, wo)
    if b is not None:
        y += b.astype(dt, copy=False)[:, None, None]                      # (F, 1, 1) broadcast
    cache = Conv2dCache(x, w, b is not None, (sh, sw), (ph, pw), (dh, dw), groups, y.shape)
    return y, cache


def conv2d_backward(dy, cache):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, shape (B, F, Ho, Wo)
        Gradient of the loss with respect to ``y``.
    cache : Conv2dCache

    Returns
    -------
    Conv2dGrads
        ``dx`` (B, C, H, W), ``dw`` (F, C / groups, KH, KW), ``db`` (F,) or None.

    Notes
    -----
    With ``cols`` the im2col matrix of the forward pass (recomputed from the cached ``x``):
    ``dw = dy @ cols^T`` summed over the batch, ``db = dy.sum((0, 2, 3))`` and ``dcols = w^T @ dy``.
    ``dx`` is col2im of ``dcols``: each of the KH*KW kernel taps adds its slice of ``dcols`` into the
    strided positions of the padded input it read (a loop over the taps, never over pixels); the
    padding is then cut off.
    """
    if not isinstance(cache, Conv2dCache):
        raise TypeError(f"`cache` must be the Conv2dCache returned by conv2d_forward; got {type(cache).__name__}")
    x, w = cache.x, cache.w
    dt = x.dtype
    dy = _checks.as_nchw(dy, "dy")
    if dy.shape != cache.out_shape:
        raise ValueError(f"`dy` must have the output's shape {cache.out_shape}; got {dy.shape}")
    dy = dy.astype(dt, copy=False)
    (sh, sw), (ph, pw), (dh, dw), g = cache.stride, cache.padding, cache.dilation, cache.groups
    bsz, c, h, wd = x.shape
    f_out, cg, kh, kw = w.shape
    fg = f_out // g
    ho, wo = dy.shape[2], dy.shape[3]
    wg = w.reshape(g, fg, cg * kh * kw)                                    # (g, F/g, Cg*KH*KW)
    wgt = wg.transpose(0, 2, 1)                                            # (g, Cg*KH*KW, F/g)
    dwg = np.zeros((g, fg, cg * kh * kw), dtype=dt)
    hp, wp = h + 2 * ph, wd + 2 * pw
    dxp = np.zeros((bsz, c, hp, wp), dtype=dt)
    if dy.size and x.size:
        xp = _pad(x, ph, pw)
        for r0, r1 in _row_chunks(ho, bsz * c * kh * kw * wo * dt.itemsize):
            rows = r1 - r0
            dyc = dy[:, :, r0:r1, :].reshape(bsz, g, fg, rows * wo)         # (B, g, F/g, rows*Wo)
            cols = _windows(xp, r0, rows, kh, kw, sh, sw, dh, dw, wo)
            cols = cols.reshape(bsz, g, cg * kh * kw, rows * wo)          # (B, g, Cg*KH*KW, rows*Wo)
            part = np.matmul(dyc, cols.transpose(0, 1, 3, 2))             # (B, g, F/g, Cg*KH*KW)
            dwg += part[0] if bsz == 1 else part.sum(axis=0)
            del cols, part
            dcols = np.matmul(wgt, dyc)                                   # (B, g, Cg*KH*KW, rows*Wo)
            dcols = dcols.reshape(bsz, c, kh, kw, rows, wo)
            # col2im: tap (i, j) read xp[:, :, (r0 + r)*sh + i*dh, q*sw + j*dw]; add its gradient back.
            for i in range(kh):
                top = r0 * sh + i * dh
                for j in range(kw):
                    left = j * dw
                    dxp[:, :, top:top + (rows - 1) * sh + 1:sh, left:left + (wo - 1) * sw + 1:sw] += dcols[:, :, i, j]
            del dcols
    dx = np.ascontiguousarray(dxp[:, :, ph:ph + h, pw:pw + wd]) if (ph or pw) else dxp
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    return Conv2dGrads(dx, dwg.reshape(w.shape), db)


# ---------------------------------------------------------------------------------------------------
# ReLU and sigmoid (any shape)
# ---------------------------------------------------------------------------------------------------

class ReluCache(NamedTuple):
    positive: np.ndarray          # bool, x > 0 (same shape as x)
    dtype: np.dtype


class ReluGrads(NamedTuple):
    dx: np.ndarray


def relu_forward(x):
    """``y = max(x, 0)``, any shape.

    Returns
    -------
    y : ndarray, same shape as ``x``
    cache : ReluCache

    Notes
    -----
    The derivative at the kink is taken as **ReLU'(0) = 0** (``dx = dy * (x > 0)``), the choice
    PyTorch's ``threshold_backward`` makes. ``+-inf`` are accepted (``relu(inf) = inf``); NaN is
    rejected.
    """
    x = _checks.as_float_array(x, "x", finite=False)
    _checks.check_finite(x, "x", allow_inf=True)
    pos = x > 0
    y = np.where(pos, x, x.dtype.type(0))
    return y, ReluCache(pos, x.dtype)


def relu_backward(dy, cache):
    """``dx = dy * (x > 0)``: the gradient passes where the input was strictly positive."""
    if not isinstance(cache, ReluCache):
        raise TypeError(f"`cache` must be the ReluCache returned by relu_forward; got {type(cache).__name__}")
    dy = _checks.as_float_array(dy, "dy", dtype=cache.dtype)
    if dy.shape != cache.positive.shape:
        raise ValueError(f"`dy` must have the output's shape {cache.positive.shape}; got {dy.shape}")
    return ReluGrads(np.where(cache.positive, dy, dy.dtype.type(0)))


class SigmoidCache(NamedTuple):
    y: np.ndarray                 # sigmoid(x), same shape as x


class SigmoidGrads(NamedTuple):
    dx: np.ndarray


def sigmoid_forward(x):
    """``y = 1 / (1 + exp(-x))``, any shape, without overflow.

    Written as ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0`` with
    ``e = exp(-|x|) <= 1``, so ``exp`` never overflows and tiny outputs keep their relative precision
    (``sigmoid(-700)`` is ``exp(-700)``-sized, about 1e-304, not 0 from ``1 / (1 + inf)``). ``+-inf`` give 1 and 0.

    Returns
    -------
    y : ndarray, same shape as ``x``, values in [0, 1]
    cache : SigmoidCache
    """
    x = _checks.as_float_array(x, "x", finite=False)
    _checks.check_finite(x, "x", allow_inf=True)
    one = x.dtype.type(1)
    e = np.exp(-np.abs(x))
    y = np.where(x >= 0, one / (one + e), e / (one + e))
    return y, SigmoidCache(y)


def sigmoid_backward(dy, cache):
    """``dx = dy * (1 - y) * y`` with ``y`` the forward output (ATen's order of operations)."""
    if not isinstance(cache, SigmoidCache):
        raise TypeError(f"`cache` must be the SigmoidCache returned by sigmoid_forward; got {type(cache).__name__}")
    y = cache.y
    dy = _checks.as_float_array(dy, "dy", dtype=y.dtype)
    if dy.shape != y.shape:
        raise ValueError(f"`dy` must have the output's shape {y.shape}; got {dy.shape}")
    return SigmoidGrads(dy * (y.dtype.type(1) - y) * y)  # ATen sigmoid_backward order: dy * (1 - y) * y
