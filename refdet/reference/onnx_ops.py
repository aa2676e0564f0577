"""Readable references for refdet.onnx_ops and refdet.quant.onnx_qdq / types: loops and formulas.

Each function is the operator written the way its definition reads, one output element (or one row)
at a time, in float64 Python arithmetic unless a runtime's float32 order is the point. They are slow on
purpose; ``tests/test_onnx_ops_reference.py`` holds the fast paths equal to them.
"""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np

__all__ = [
    "softmax",
    "log_softmax",
    "softmax_backward",
    "log_softmax_backward",
    "leaky_relu",
    "conv_transpose2d",
    "conv_transpose2d_backward",
    "resize_linear",
    "resize_linear_backward",
    "resize_1d",
    "topk",
    "encode_float_scalar",
    "pack",
    "unpack",
    "quantize_linear",
]


def _rows(x, axis):
    """Index tuples of every row along ``axis`` (the other indices fixed)."""
    shape = list(x.shape)
    n = shape[axis]
    others = [range(s) for i, s in enumerate(shape) if i != axis]
    for idx in itertools.product(*others):
        yield [tuple(idx[:axis]) + (j,) + tuple(idx[axis:]) for j in range(n)]


def softmax(x, axis=-1):
    """``exp(x_i - max) / sum_j exp(x_j - max)`` along ``axis``, row by row (float64)."""
    x = np.asarray(x, np.float64)
    axis %= x.ndim
    y = np.zeros_like(x)
    for row in _rows(x, axis):
        m = max(x[i] for i in row)
        e = [math.exp(x[i] - m) for i in row]
        s = sum(e)
        for i, v in zip(row, e):
            y[i] = v / s
    return y


def log_softmax(x, axis=-1):
    """``x_i - max - log(sum_j exp(x_j - max))`` along ``axis``, row by row (float64)."""
    x = np.asarray(x, np.float64)
    axis %= x.ndim
    y = np.zeros_like(x)
    for row in _rows(x, axis):
        m = max(x[i] for i in row)
        lse = math.log(sum(math.exp(x[i] - m) for i in row))
        for i in row:
            y[i] = x[i] - m - lse
    return y


def softmax_backward(dy, y, axis=-1):
    """``dx_i = y_i * (dy_i - sum_j dy_j y_j)``: the softmax Jacobian ``diag(y) - y y^T`` times ``dy``."""
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    axis %= y.ndim
    dx = np.zeros_like(y)
    for row in _rows(y, axis):
        dot = sum(dy[i] * y[i] for i in row)
        for i in row:
            dx[i] = y[i] * (dy[i] - dot)
    return dx


def log_softmax_backward(dy, y, axis=-1):
    """``dx_i = dy_i - exp(y_i) * sum_j dy_j``: the Jacobian ``I - 1 softmax^T`` times ``dy``."""
    dy, y = np.asarray(dy, np.float64), np.asarray(y, np.float64)
    axis %= y.ndim
    dx = np.zeros_like(y)
    for row in _rows(y, axis):
        total = sum(dy[i] for i in row)
        for i in row:
            dx[i] = dy[i] - math.exp(y[i]) * total
    return dx


def leaky_relu(x, alpha=0.01):
    """``x if x > 0 else alpha * x``, element by element."""
    x = np.asarray(x, np.float64)
    return np.array([v if v > 0 else alpha * v for v in x.reshape(-1)]).reshape(x.shape)


def conv_transpose2d(x, w, b=None, *, stride=(1, 1), padding=(0, 0, 0, 0), output_padding=(0, 0), dilation=(1, 1),
                     groups=1):
    """The scatter: every input pixel adds ``x[n, c, h, w] * w[c, f, i, j]`` to output pixel
    ``(h*sh + i*dh - top, w*sw + j*dw - left)`` of channel ``g * F/g + f``. ``padding`` is
    ``(top, bottom, left, right)``."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n_, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = padding
    cg = c // groups
    ho = (h - 1) * sh - pt - pb + dh * (kh - 1) + output_padding[0] + 1
    wo = (wd - 1) * sw - pl - pr + dw * (kw - 1) + output_padding[1] + 1
    y = np.zeros((n_, fg * groups, ho, wo))
    for n in range(n_):
        for ci in range(c):
            g = ci // cg
            for r in range(h):
                for q in range(wd):
                    for f in range(fg):
                        for i in range(kh):
                            for j in range(kw):
                                oy, ox = r * sh + i * dh - pt, q * sw + j * dw - pl
                                if 0 <= oy < ho and 0 <= ox < wo:
                                    y[n, g * fg + f, oy, ox] += x[n, ci, r, q] * w[ci, f, i, j]
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv_transpose2d_backward(dy, x, w, *, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                              has_bias=True):
    """The chain rule of the scatter, loop for loop: each (input pixel, tap) pair that reached output pixel
    ``o`` receives ``dy[o] * w`` (into ``dx``) and ``dy[o] * x`` (into ``dw``). Returns ``(dx, dw, db)``."""
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    n_, c, h, wd = x.shape
    _, fg, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pb, pl, pr = padding
    cg = c // groups
    ho, wo = dy.shape[2:]
    dx, dwt = np.zeros_like(x), np.zeros_like(w)
    for n in range(n_):
        for ci in range(c):
            g = ci // cg
            for r in range(h):
                for q in range(wd):
                    for f in range(fg):
                        for i in range(kh):
                            for j in range(kw):
                                oy, ox = r * sh + i * dh - pt, q * sw + j * dw - pl
                                if 0 <= oy < ho and 0 <= ox < wo:
                                    dx[n, ci, r, q] += dy[n, g * fg + f, oy, ox] * w[ci, f, i, j]
                                    dwt[ci, f, i, j] += dy[n, g * fg + f, oy, ox] * x[n, ci, r, q]
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dwt, db


def _linear_source(i, n, L, align_corners, scale_factor):
    """PyTorch's bilinear source coordinate of output index ``i`` (clamped at 0)."""
    if align_corners:
        return 0.0 if L == 1 else i * (n - 1) / (L - 1)
    scale = 1.0 / scale_factor if scale_factor else n / L
    return max((i + 0.5) * scale - 0.5, 0.0)


def resize_linear(x, size, *, align_corners=False, scale_factor=None):
    """``F.interpolate(x, size, mode="bilinear")`` pixel by pixel: the four neighbours of the source point
    weighted by ``(1 - ly)(1 - lx)``, ``(1 - ly) lx``, ``ly (1 - lx)``, ``ly lx``."""
    x = np.asarray(x, np.float64)
    n_, c, h, w = x.shape
    ho, wo = size
    sfh, sfw = (scale_factor, scale_factor) if np.isscalar(scale_factor) or scale_factor is None else scale_factor
    y = np.zeros((n_, c, ho, wo))
    for i in range(ho):
        sy = _linear_source(i, h, ho, align_corners, sfh)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(wo):
            sx = _linear_source(j, w, wo, align_corners, sfw)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            y[:, :, i, j] = ((1 - ly) * (1 - lx) * x[:, :, y0, x0] + (1 - ly) * lx * x[:, :, y0, x1]
                             + ly * (1 - lx) * x[:, :, y1, x0] + ly * lx * x[:, :, y1, x1])
    return y


def resize_linear_backward(dy, in_shape, *, align_corners=False, scale_factor=None):
    """Each output gradient goes to the four source pixels with the forward's weights."""
    dy = np.asarray(dy, np.float64)
    n_, c, h, w = in_shape
    ho, wo = dy.shape[2:]
    sfh, sfw = (scale_factor, scale_factor) if np.isscalar(scale_factor) or scale_factor is None else scale_factor
    dx = np.zeros(in_shape)
    for i in range(ho):
        sy = _linear_source(i, h, ho, align_corners, sfh)
        y0 = min(int(math.floor(sy)), h - 1)
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(wo):
            sx = _linear_source(j, w, wo, align_corners, sfw)
            x0 = min(int(math.floor(sx)), w - 1)
            x1, lx = min(x0 + 1, w - 1), sx - x0
            g = dy[:, :, i, j]
            dx[:, :, y0, x0] += (1 - ly) * (1 - lx) * g
            dx[:, :, y0, x1] += (1 - ly) * lx * g
            dx[:, :, y1, x0] += ly * (1 - lx) * g
            dx[:, :, y1, x1] += ly * lx * g
    return dx


def _keys(t, a):
    t = abs(t)
    if t <= 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


def resize_1d(values, out_len, *, mode="linear", coordinate_transformation_mode="half_pixel", scale=None,
              nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=False, roi=(0.0, 1.0),
              extrapolation_value=0.0):
    """ONNX ``Resize`` of one axis as the spec defines it, in exact float64 formulas (no antialias):
    the source coordinate of each output index, then the nearest / linear / cubic sample with edge
    repetition. ``scale`` defaults to ``out_len / n``; the coordinate uses the *integer* output length.
    """
    v = [float(t) for t in values]
    n = len(v)
    s = out_len / n if scale is None else scale
    out = []
    for i in range(out_len):
        ctm = coordinate_transformation_mode
        if ctm == "align_corners":
            x = 0.0 if out_len == 1 else i * (n - 1) / (out_len - 1)
        elif ctm == "asymmetric":
            x = i / s
        elif ctm == "pytorch_half_pixel":
            x = (i + 0.5) / s - 0.5 if out_len > 1 else 0.0
        elif ctm == "tf_half_pixel_for_nn":
            x = (i + 0.5) / s
        elif ctm == "half_pixel_symmetric":
            x = n / 2 * (1 - out_len / (s * n)) + (i + 0.5) / s - 0.5
        elif ctm == "tf_crop_and_resize":
            st, en = roi
            x = (st * (n - 1) + i * (en - st) * (n - 1) / (out_len - 1)) if out_len > 1 else 0.5 * (st + en) * (n - 1)
            if x < 0 or x > n - 1:
                out.append(extrapolation_value)
                continue
        else:
            x = (i + 0.5) / s - 0.5
        at = lambda k: v[min(max(k, 0), n - 1)]  # noqa: E731  (edge repetition)
        fl = math.floor(x)
        fr = x - fl
        if mode == "nearest":
            if nearest_mode == "floor":
                k = fl
            elif nearest_mode == "ceil":
                k = math.ceil(x)
            elif nearest_mode == "round_prefer_floor":
                k = fl if fr <= 0.5 else fl + 1
            else:
                k = fl if fr < 0.5 else fl + 1
            out.append(at(k))
        elif mode == "linear":
            out.append((1 - fr) * at(fl) + fr * at(fl + 1))
        else:
            taps = [fl - 1, fl, fl + 1, fl + 2]
            wts = [_keys(x - k, cubic_coeff_a) for k in taps]
            if exclude_outside:
                wts = [wt if 0 <= k < n else 0.0 for wt, k in zip(wts, taps)]
                tot = sum(wts)
                wts = [wt / tot for wt in wts]
            out.append(sum(wt * at(k) for wt, k in zip(wts, taps)))
    return np.array(out)


def topk(row, k, *, largest=True):
    """The indices of the ``k`` largest (smallest) values of a 1-D row: sorted by value, NaN above
    everything, ties by the lower index (ONNX TopK-11; onnx.reference)."""
    row = [float(v) for v in row]

    def key(i):
        v = row[i]
        if math.isnan(v):
            return (0 if largest else 1, 0.0, i)
        return (1 if largest else 0, -v if largest else v, i)
    return sorted(range(len(row)), key=key)[:k]


def encode_float_scalar(x, values, *, saturate=True, nan_code=None, inf_code=None, signed_zero=True, sign_bit=0x80):
    """One number to a minifloat code, by the definition: the nearest representable value (``values``:
    the non-negative finite values, indexed by code), ties to the even code; out of range (past the
    virtual value ``max + ulp``) or infinite: the largest code with ``saturate``, else ``inf_code`` (or
    ``nan_code`` for a type without infinities). ``signed_zero=False`` for the FNUZ types (no -0, one
    NaN code without a sign). Exact rational arithmetic (``Fraction``)."""
    neg = math.copysign(1.0, x) < 0
    max_code = len(values) - 1
    overflow = max_code if saturate else (inf_code if inf_code is not None else nan_code)
    if math.isnan(x):
        code = nan_code
    elif math.isinf(x):
        code = overflow
    else:
        m = abs(Fraction(x))
        grid = [Fraction(v) for v in values] + [2 * Fraction(values[-1]) - Fraction(values[-2])]   # + virtual
        best = None
        for c, v in enumerate(grid):
            d = abs(m - v)
            if best is None or d < best[0] or (d == best[0] and c % 2 == 0):
                best = (d, c)
        code = best[1] if best[1] <= max_code else overflow
    if not signed_zero and code in (0, nan_code):
        return code
    return code | sign_bit if neg else code


def pack(values, bits):
    """Bytes of ``bits``-bit two's complement fields, element ``k`` at bit ``(k % per) * bits`` of byte ``k // per``."""
    per = 8 // bits
    out = [0] * (-(-len(values) // per))
    for k, v in enumerate(values):
        out[k // per] |= (int(v) & ((1 << bits) - 1)) << ((k % per) * bits)
    return out


def unpack(data, bits, count, *, signed):
    """The inverse of :func:`pack` for ``count`` elements."""
    per = 8 // bits
    out = []
    for k in range(count):
        field = (data[k // per] >> ((k % per) * bits)) & ((1 << bits) - 1)
        out.append(field - (1 << bits) if signed and field >= 1 << (bits - 1) else field)
    return out


def quantize_linear(x, scale, zero_point, qmin, qmax):
    """ONNX QuantizeLinear of one real number to an integer type: ``clip(rint(x / s) + z, qmin, qmax)``
    with round half to even, in exact rational arithmetic on the float32 quotient (as both runtimes
    divide in float32)."""
    q = Fraction(float(np.float32(x) / np.float32(scale)))
    fl = math.floor(q)
    frac = q - fl
    r = fl + 1 if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and fl % 2 == 1) else fl
    return min(max(r + int(zero_point), qmin), qmax)
