"""onnx.reference's Resize: separable, one axis at a time, float64 (private to refdet.onnx_ops.resize).

Source: ``onnx/reference/ops/op_resize.py`` (onnx 1.23): ``_compute_x_ori``, ``_interpolate_1d_along_axis``,
``_cubic_coeffs``, ``_cubic_coeffs_antialias``, ``_linear_coeffs_antialias``, ``_nearest_coeffs``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["coord_ref", "resize_reference"]


def coord_ref(mode, L, s, n, start, end):
    """onnx.reference's _compute_x_ori (float64; output_width = s * n, unrounded)."""
    y = np.arange(L, dtype=np.float64)
    w = s * n
    if mode == "align_corners":
        return np.zeros(L) if w == 1 else y * (n - 1) / (w - 1)
    if mode == "asymmetric":
        return y / s
    if mode == "tf_crop_and_resize":
        # roi is a float32 tensor: roi[1] - roi[0] and roi[0] * (n - 1) are float32 operations there
        f = np.float32
        d, off = f(end) - f(start), f(start) * f(n - 1)
        x = np.full(L, float(d * f(n - 1) / f(2))) if w == 1 else y * d * (n - 1) / (w - 1)
        return x + float(off)
    if mode == "pytorch_half_pixel":
        return np.full(L, -0.5) if w == 1 else (y + 0.5) / s - 0.5
    if mode == "half_pixel_symmetric":
        adj = L / w
        return n / 2 * (1 - adj) + (y + 0.5) / s - 0.5
    return (y + 0.5) / s - 0.5


# ---------------------------------------------------------------------------------------------------

def _keys_from_ratio(ratio, a):
    """onnx.reference's _cubic_coeffs: the four weights at taps (p - 1, p, p + 1, p + 2), written as there.

    The evaluator hands the attribute ``cubic_coeff_a`` over as a ``np.float32``, so by NumPy's
    promotion rules every product with it is a float32 operation: ``ratio + 1``, ``1 - ratio`` are
    computed in float64 (Python floats) and rounded to float32 where they meet ``A``.
    """
    f = np.float32
    A = f(a)
    r = ratio.astype(f)
    u = (1 - ratio).astype(f)
    rp1 = (ratio + 1).astype(f)
    up1 = ((1 - ratio) + 1).astype(f)
    return np.stack([
        ((A * rp1 - f(5) * A) * rp1 + f(8) * A) * rp1 - f(4) * A,
        ((A + f(2)) * r - (A + f(3))) * r * r + f(1),
        ((A + f(2)) * u - (A + f(3))) * u * u + f(1),
        ((A * up1 - f(5) * A) * up1 + f(8) * A) * up1 - f(4) * A,
    ], axis=1).astype(np.float64)


def _keys_aa(t, a):
    """onnx.reference's _cubic_coeffs_antialias: weights normalised by their (float32) sum, as there.

    ``compute_coeff`` works on Python floats ``x, x**2, x**3`` meeting the float32 ``A`` (float32 results),
    and returns the Python float ``0.0`` outside ``|x| < 2``; a row holding such a 0.0 becomes a float64
    array, divided in float64 by the float32 sum, the others are divided in float32.
    """
    f = np.float32
    A = f(a)
    x = np.abs(t)
    x2 = x * x
    x3 = x * x2
    inner = (A + f(2)) * x3.astype(f) - (A + f(3)) * x2.astype(f) + f(1)
    outer = A * x3.astype(f) - f(5) * A * x2.astype(f) + f(8) * A * x.astype(f) - f(4) * A
    zero = x >= 2
    c = np.where(x <= 1, inner, np.where(zero, f(0), outer)).astype(f)
    tot = np.zeros(c.shape[0], f)
    for j in range(c.shape[1]):                                  # sum(coeffs): float32 (0 + np.float32 ...)
        tot = (tot + c[:, j]).astype(f)
    as64 = c.astype(np.float64) / tot.astype(np.float64)[:, None]
    as32 = (c / tot[:, None]).astype(f).astype(np.float64)
    return np.where(zero.any(axis=1)[:, None], as64, as32)


def _seq_sum(c):
    """Python's sum() over the taps of each row: left to right."""
    tot = np.zeros(c.shape[0])
    for j in range(c.shape[1]):
        tot = tot + c[:, j]
    return tot[:, None]


def _ref_axis_weights(mode, x, n, s, a, antialias, exclude_outside, nearest_mode):
    """(indices (L, T), weights (L, T)) of onnx.reference's 1-D interpolation at coordinates ``x``."""
    fl = np.floor(x)
    integer = x == fl
    ratio = np.where(integer, 1.0, x - fl)                       # the reference prefers the left pixel
    if mode == "nearest":
        if nearest_mode == "round_prefer_floor":
            c1 = ratio > 0.5
        elif nearest_mode == "round_prefer_ceil":
            c1 = ratio >= 0.5
        elif nearest_mode == "floor":
            c1 = np.zeros_like(integer)
        else:
            c1 = np.ones_like(integer)
        c1 = np.where(integer, True, c1)
        coeffs = np.stack([~c1, c1], axis=1).astype(np.float64)
    elif mode == "linear" and not antialias:
        coeffs = np.stack([1 - ratio, ratio], axis=1)
    elif mode == "cubic" and not antialias:
        coeffs = _keys_from_ratio(ratio, a)                      # taps at (p - 1, p, p + 1, p + 2), ratio from p
    else:
        sc = min(s, 1.0)
        if mode == "linear":
            start = int(np.floor(-1 / sc) + 1)
            offs = np.arange(start, start + 2 - 2 * start)
            coeffs = np.clip(1 - np.abs((offs[None, :] - ratio[:, None]) * sc), 0, 1)
        else:
            start = int(np.floor(-2 / sc) + 1)
            offs = np.arange(start, 2 - start)
            coeffs = _keys_aa(sc * (offs[None, :] - ratio[:, None]), a)
        if mode == "linear":
            coeffs = coeffs / _seq_sum(coeffs)                  # np.array(coeffs) / sum(coeffs)
    T = coeffs.shape[1]
    pad = int(np.ceil(T / 2))
    xp = x + pad
    pp = np.floor(xp)
    frac = xp - pp
    if T % 2 == 0:
        off = np.where(frac == 0, -(T // 2), -(T // 2) + 1)
    else:
        base = -((T - 1) // 2)
        off = np.where(frac <= 0.5, base, base + 1)
    idx = (pp + off).astype(np.int64)[:, None] + np.arange(T)[None, :] - pad      # (L, T) before clamping
    if exclude_outside:
        coeffs = np.where((idx < 0) | (idx >= n), 0.0, coeffs)
        tot = coeffs.sum(axis=-1, keepdims=True)
        coeffs = coeffs / np.where(tot == 0, 1.0, tot)
    return np.clip(idx, 0, n - 1), coeffs


def resize_reference(x, plan, mode, ctm, a, exclude_outside, extrapolation_value, nearest_mode, antialias):
    y = x.astype(np.float64)
    for axis, ax in enumerate(plan):
        if math.isclose(ax.s, 1.0) and ax.L == y.shape[axis] and (ctm != "tf_crop_and_resize" or (
                math.isclose(ax.start, 0.0) and math.isclose(ax.end, 1.0))):
            continue                                                       # identity axis
        if ax.L == 0:
            shp = list(y.shape)
            shp[axis] = 0
            y = np.empty(shp)
            continue
        if ctm == "tf_half_pixel_for_nn":
            raise ValueError("`coordinate_transformation_mode` 'tf_half_pixel_for_nn' (deprecated since opset 13) is "
                             "not implemented by onnx.reference 1.23 (it raises once an axis is resized); use "
                             "runtime='onnxruntime'")
        xs = coord_ref(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
        idx, w = _ref_axis_weights(mode, xs, ax.n, ax.s, a, antialias, exclude_outside, nearest_mode)
        g = np.take(y, idx.reshape(-1), axis=axis)                         # (..., L*T, ...)
        shp = y.shape[:axis] + idx.shape + y.shape[axis + 1:]
        g = g.reshape(shp)
        wshape = (1,) * axis + w.shape + (1,) * (y.ndim - axis - 1)
        y = (g * w.reshape(wshape)).sum(axis=axis + 1)
        if ctm == "tf_crop_and_resize":
            ext = (xs < 0) | (xs > ax.n - 1)
            if ext.any():
                mshape = (1,) * axis + (ax.L,) + (1,) * (y.ndim - axis - 1)
                y = np.where(ext.reshape(mshape), extrapolation_value, y)
    return y
