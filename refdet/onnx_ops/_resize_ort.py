"""onnxruntime's Resize kernels, in its float32 order of operations (private to refdet.onnx_ops.resize).

Sources (onnxruntime 1.32 CPU): ``core/providers/cpu/tensor/upsamplebase.h`` (coordinates, nearest
rounding), ``upsample.cc`` (nearest mappings, ``GetCubicCoeffs``, ``ResizeBiCubic``), ``upsample.h``
(``UpsampleBilinear``, ``NhwcUpsampleBilinear``, ``UpsampleTrilinear``), ``upsample_antialias.h``
(``SetupUpsampleFilterAntiAlias``, ``UpsampleBaseAntiAlias``). The module docstring of
:mod:`refdet.onnx_ops.resize` describes what each function reproduces.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ORT_NEAREST_TIE_EPS", "coord_ort", "resize_ort"]

#: onnxruntime's tie tolerance for round_prefer_floor / round_prefer_ceil (issue #28291, PR #28757)
ORT_NEAREST_TIE_EPS = np.float32(1e-6)


def coord_ort(mode, L, s, n, start, end):
    """onnxruntime's get_original_coordinate for output indices 0..L-1, float32 (upsamplebase.h)."""
    f = np.float32
    i = np.arange(L, dtype=np.float32)
    s, h = f(s), f(0.5)
    if mode == "asymmetric":
        return i / s
    if mode == "pytorch_half_pixel":
        return (i + h) / s - h if L > 1 else np.zeros(L, f)
    if mode == "tf_half_pixel_for_nn":
        return (i + h) / s
    if mode == "align_corners":
        return i * f(n - 1) / f(L - 1) if L != 1 else np.zeros(L, f)
    if mode == "tf_crop_and_resize":
        st, en = f(start), f(end)
        if L > 1:
            return st * f(n - 1) + (i * (en - st) * f(n - 1)) / f(L - 1)
        return np.full(L, np.float64(0.5) * np.float64(st + en) * np.float64(n - 1), np.float64).astype(f)
    if mode == "half_pixel_symmetric":
        out_w = s * f(n)                                        # float
        adj = f(L) / out_w
        offset = (f(n) / f(2)) * (f(1) - adj)
        return (np.float64(offset) + (i.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(f)
    return (i + h) / s - h                                      # half_pixel


# ---------------------------------------------------------------------------------------------------

def _ort_nearest_index(ax, ctm, nearest_mode, extrapolate):
    """Source index per output index (-1: extrapolate) for one axis (UpsampleNearestSetupInputMappings)."""
    if ax.s == 1.0:
        return np.arange(ax.L, dtype=np.int64)                 # scale 1: a copy, whatever the roi
    x = coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
    fl = np.floor(x)
    frac = (x - fl).astype(np.float32)
    tie = np.abs(frac - np.float32(0.5)) <= ORT_NEAREST_TIE_EPS
    if nearest_mode == "floor":
        r = fl
    elif nearest_mode == "ceil":
        r = np.ceil(x)
    elif nearest_mode == "round_prefer_floor":
        r = np.where(tie, fl, np.where(frac > 0.5, fl + 1, fl))
    else:
        r = np.where(tie, fl + 1, np.where(frac >= 0.5, fl + 1, fl))
    idx = np.clip(r.astype(np.int64), 0, ax.n - 1)
    if extrapolate:
        idx = np.where((x < 0) | (x > np.float32(ax.n - 1)), -1, idx)
    return idx


def _ort_linear_params(ax, ctm):
    """(x1, x2, d1, d2, original) of SetupUpsampleBilinear for one axis (float32)."""
    f = np.float32
    if ax.s == 1.0:
        orig = np.arange(ax.L, dtype=f)
    else:
        orig = coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
    c = np.maximum(f(0), np.minimum(orig, f(ax.n - 1)))
    x1 = np.minimum(c.astype(np.int64), ax.n - 1)
    x2 = np.minimum(x1 + 1, ax.n - 1)
    d1 = np.abs(c - x1.astype(f))
    d2 = np.abs(c - x2.astype(f))
    same = x1 == x2
    d1 = np.where(same, f(0.5), d1).astype(f)
    d2 = np.where(same, f(0.5), d2).astype(f)
    return x1, x2, d1, d2, orig


def _ort_cubic_coeffs(s, a):
    """GetCubicCoeffs (upsample.cc), float32, for fractional parts ``s`` (L,) -> (L, 4)."""
    f = np.float32
    A = f(a)
    t = np.abs(s).astype(f)
    t1, u, u1 = t + f(1), f(1) - t, f(2) - t
    c0 = ((A * t1 - f(5) * A) * t1 + f(8) * A) * t1 - f(4) * A
    c1 = ((A + f(2)) * t - (A + f(3))) * t * t + f(1)
    c2 = ((A + f(2)) * u - (A + f(3))) * u * u + f(1)
    c3 = ((A * u1 - f(5) * A) * u1 + f(8) * A) * u1 - f(4) * A
    return np.stack([c0, c1, c2, c3], axis=1).astype(f)


def _ort_cubic_axis(ax, ctm, a, exclude_outside):
    """(taps (L, 4), coefficients (L, 4), coefficient sums (L,), original (L,)) for one axis."""
    f = np.float32
    orig = np.arange(ax.L, dtype=f) if ax.s == 1.0 else coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
    base = np.floor(orig)
    coeff = _ort_cubic_coeffs((orig - base).astype(f), a)
    taps = base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    total = np.ones(ax.L, f)
    if exclude_outside:
        coeff = np.where((taps < 0) | (taps >= ax.n), f(0), coeff).astype(f)
        total = np.zeros(ax.L, f)
        for j in range(4):                                      # summed in tap order, float32
            total = (total + coeff[:, j]).astype(f)
    return np.clip(taps, 0, ax.n - 1), coeff, total, orig


def _ort_aa_axis(ax, ctm, support_size, filt, exclude_outside):
    """Pillow-style antialias weights of SetupUpsampleFilterAntiAlias: (bounds (L, 2), weights (L, W))."""
    f = np.float32
    scale = f(1) / f(ax.s)
    support = (f(support_size) * f(0.5)) * scale if scale >= 1 else f(support_size) * f(0.5)
    window = int(np.ceil(support)) * 2 + 1
    inv = f(1) / scale if scale >= 1 else f(1)
    if scale == 1:
        center = f(0.5) + np.arange(ax.L, dtype=f)
    else:
        center = f(0.5) + coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
    # floor(center - support + 0.5): a float difference, then + 0.5 in double
    lo_real = np.floor((center - support).astype(np.float64) + 0.5).astype(np.int64)
    hi_real = np.floor((center + support).astype(np.float64) + 0.5).astype(np.int64)
    lo_cut, hi_cut = np.maximum(lo_real, 0), np.minimum(hi_real, ax.n)
    lo = lo_cut if exclude_outside else lo_real
    hi = hi_cut if exclude_outside else hi_real
    W = np.zeros((ax.L, window), f)
    for i in range(ax.L):                                       # per output index: a handful of taps
        cnt = int(hi[i] - lo[i])
        w = filt(((np.arange(cnt) + lo[i]).astype(f) - center[i] + f(0.5)) * inv).astype(f)
        total = f(0)
        for v in w:                                             # float32 running sum, tap order
            total = f(total + v)
        buf = np.zeros(max(cnt, 1), f)
        buf[:cnt] = w
        k = int(hi_cut[i] - lo_cut[i])
        if not exclude_outside:                                 # fold out-of-range taps onto the edge taps
            neg = int(-lo[i]) if lo[i] < 0 else 0
            for j in range(neg):
                buf[neg] = f(buf[neg] + buf[j])
            bound = int(hi[i] - ax.n) if hi[i] > ax.n else 0
            for j in range(cnt - bound, cnt):
                buf[cnt - bound - 1] = f(buf[cnt - bound - 1] + buf[j])
            if neg or bound:
                buf[:k] = buf[neg:neg + k].copy()
        inv_total = f(1) if total == 0 else f(1) / total
        W[i, :max(k, 0)] = (buf[:max(k, 0)] * inv_total).astype(f)
    return np.stack([lo_cut, hi_cut], axis=1), W


def _lin_filter(t):
    t = np.abs(t)
    return np.where(t < 1, np.float32(1) - t, np.float32(0)).astype(np.float32)


def _cubic_filter(a):
    A = np.float32(a)

    def filt(t):
        f = np.float32
        t = np.abs(t).astype(f)
        return np.where(t < 1, ((A + f(2)) * t - (A + f(3))) * t * t + f(1),
                        np.where(t < 2, (((t - f(5)) * t + f(8)) * t - f(4)) * A, f(0))).astype(f)
    return filt


def _layout_2d(plan, mode, antialias):
    """Which axes onnxruntime's fused kernels interpolate, as (h_axis, w_axis) or (d, h, w); else None."""
    r = len(plan)
    one = [ax.s == 1.0 for ax in plan]
    if r == 2:
        return (0, 1)
    if r == 4 and one[0] and one[1]:
        return (2, 3)
    if r == 4 and one[0] and one[3] and (mode == "linear" and not antialias):
        return (1, 2)                                           # NHWC bilinear
    if mode == "linear" and not antialias:
        if r == 3:
            return (0, 1, 2)
        if r == 5 and one[0] and one[1]:
            return (2, 3, 4)
    return None


def resize_ort(x, plan, mode, ctm, a, exclude_outside, extrapolation_value, nearest_mode, antialias):
    dt = x.dtype
    f = np.float32
    extrap = ctm == "tf_crop_and_resize"
    ext_val = f(extrapolation_value)
    if mode == "nearest":
        idx = [_ort_nearest_index(ax, ctm, nearest_mode, extrap) for ax in plan]
        grids = np.ix_(*[np.maximum(i, 0) for i in idx])
        y = x[grids]
        if extrap:
            bad = np.zeros(y.shape, bool)
            for k, i in enumerate(idx):
                shp = [1] * len(plan)
                shp[k] = len(i)
                bad = bad | (i < 0).reshape(shp)
            y = np.where(bad, ext_val.astype(dt), y)
        return y
    axes = _layout_2d(plan, mode, antialias)
    if axes is None:
        what = "antialias" if antialias else mode
        aa = " with antialias" if antialias else ""
        raise ValueError(f"`mode` {mode!r}{aa} on a {len(plan)}-D input with `scales` (or `sizes`) "
                         f"{[ax.s for ax in plan]}: onnxruntime's {what} kernels take 2-D, NCHW"
                         f"{', NHWC, 3-D and NCDHW' if mode == 'linear' and not antialias else ''} inputs only "
                         f"(upsamplebase.h ScalesValidation); use runtime='onnx_reference'")
    others = [k for k in range(len(plan)) if k not in axes]
    xt = np.moveaxis(x, list(axes), list(range(len(plan) - len(axes), len(plan))))    # (..., [D], H, W)
    if antialias:
        y = _ort_aa(xt, [plan[k] for k in axes], mode, ctm, a, exclude_outside, extrap, ext_val)
    elif mode == "linear" and len(axes) == 2:
        y = _ort_bilinear(xt, plan[axes[0]], plan[axes[1]], ctm, extrap, ext_val)
    elif mode == "linear":
        y = _ort_trilinear(xt, [plan[k] for k in axes], ctm, extrap, ext_val)
    else:
        y = _ort_bicubic(xt, plan[axes[0]], plan[axes[1]], ctm, a, exclude_outside, extrap, ext_val)
    y = np.moveaxis(y, list(range(len(plan) - len(axes), len(plan))), list(axes))
    del others
    return y


def _ort_bilinear(x, ah, aw, ctm, extrap, ext_val):
    y1, y2, dy1, dy2, oy = _ort_linear_params(ah, ctm)
    x1, x2, dx1, dx2, ox = _ort_linear_params(aw, ctm)
    r1, r2 = np.take(x, y1, axis=-2), np.take(x, y2, axis=-2)          # (..., Ho, W): rows first, then columns
    X11, X21 = np.take(r1, x1, axis=-1), np.take(r1, x2, axis=-1)
    X12, X22 = np.take(r2, x1, axis=-1), np.take(r2, x2, axis=-1)
    c11 = dx2[None, :] * dy2[:, None]                                   # float32 products, as (dx * dy)
    c21 = dx1[None, :] * dy2[:, None]
    c12 = dx2[None, :] * dy1[:, None]
    c22 = dx1[None, :] * dy1[:, None]
    y = ((c11 * X11 + c21 * X21) + c12 * X12) + c22 * X22                # left to right
    if extrap:
        bad = ((oy < 0) | (oy > np.float32(ah.n - 1)))[:, None] | ((ox < 0) | (ox > np.float32(aw.n - 1)))[None, :]
        y = np.where(bad, ext_val, y)
    return y.astype(x.dtype)


def _ort_trilinear(x, axs, ctm, extrap, ext_val):
    (z1, z2, dz1, dz2, oz), (y1, y2, dy1, dy2, oy), (x1, x2, dx1, dx2, ox) = [_ort_linear_params(a, ctm) for a in axs]
    Z, Y, Xx = np.ix_(np.arange(len(z1)), np.arange(len(y1)), np.arange(len(x1)))
    terms = []
    for zz, dzz in ((z1, dz2), (z2, dz1)):
        for yy, dyy in ((y1, dy2), (y2, dy1)):
            for xx, dxx in ((x1, dx2), (x2, dx1)):
                coef = (dxx[None, None, :] * dyy[None, :, None]) * dzz[:, None, None]
                terms.append(coef * x[..., zz[Z], yy[Y], xx[Xx]])
    order = [0, 1, 2, 3, 4, 5, 6, 7]        # X111, X211, X121, X221, X112, X212, X122, X222
    y = terms[order[0]]
    for t in order[1:]:
        y = y + terms[t]
    if extrap:
        bad = ((oz < 0) | (oz > np.float32(axs[0].n - 1)))[:, None, None] | \
            ((oy < 0) | (oy > np.float32(axs[1].n - 1)))[None, :, None] | \
            ((ox < 0) | (ox > np.float32(axs[2].n - 1)))[None, None, :]
        y = np.where(bad, ext_val, y)
    return y.astype(x.dtype)


def _ort_bicubic(x, ah, aw, ctm, a, exclude_outside, extrap, ext_val):
    f = np.float32
    ty, cy, sy, oy = _ort_cubic_axis(ah, ctm, a, exclude_outside)
    tx, cx, sx, ox = _ort_cubic_axis(aw, ctm, a, exclude_outside)
    wdt = np.result_type(x.dtype, f)
    res = np.zeros(x.shape[:-2] + (ah.L, aw.L), wdt)
    for i in range(4):
        rows = x[..., ty[:, i], :]                                          # (..., Ho, W)
        inner = np.zeros(x.shape[:-2] + (ah.L, aw.L), wdt)
        for j in range(4):
            inner = inner + (cx[:, j] / sx)[None, :] * rows[..., :, tx[:, j]]   # coeff / sum * value
        res = res + (inner * cy[:, i][:, None]) / sy[:, None]
    if extrap:
        bad = ((oy < 0) | (oy > f(ah.n - 1)))[:, None] | ((ox < 0) | (ox > f(aw.n - 1)))[None, :]
        res = np.where(bad, ext_val, res)
    return res.astype(x.dtype)


def _ort_aa(x, axs, mode, ctm, a, exclude_outside, extrap, ext_val):
    filt = _lin_filter if mode == "linear" else _cubic_filter(a)
    support = 2.0 if mode == "linear" else 4.0
    ah, aw = axs
    (bh, Wh), (bw, Ww) = [_ort_aa_axis(ax, ctm, support, filt, exclude_outside) for ax in (ah, aw)]
    wdt = np.result_type(x.dtype, np.float32)
    f = np.float32
    # horizontal pass (W) into a buffer of the input's rows (skipped: a copy when W is unchanged), then H
    if aw.L == aw.n:
        tmp = x.astype(wdt)
    else:
        tmp = np.zeros(x.shape[:-1] + (aw.L,), wdt)
        for j in range(Ww.shape[1]):                      # output += X * w, tap by tap from xmin
            src = np.minimum(bw[:, 0] + j, aw.n - 1)
            use = (bw[:, 0] + j) < bw[:, 1]
            tmp = tmp + np.where(use, x[..., :, src] * Ww[:, j], f(0))
    if ah.L == ah.n:
        return tmp.astype(x.dtype)
    y = np.zeros(x.shape[:-2] + (ah.L, aw.L), wdt)
    for j in range(Wh.shape[1]):
        src = np.minimum(bh[:, 0] + j, ah.n - 1)
        use = (bh[:, 0] + j) < bh[:, 1]
        y = y + np.where(use[:, None], tmp[..., src, :] * Wh[:, j][:, None], f(0))
    return y.astype(x.dtype)
