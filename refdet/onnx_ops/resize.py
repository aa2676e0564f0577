"""ONNX ``Resize`` (nearest, linear, cubic; every attribute of opsets 11-19) and the bilinear layer pair.

Resizing maps each output index ``i`` of an axis to a *source coordinate* ``x`` in the input and
interpolates there. The coordinate (``coordinate_transformation_mode``; ``s`` the scale, ``L`` the
output length, ``n`` the input length):

=========================  ===========================================================================
half_pixel (default)       ``(i + 0.5) / s - 0.5``
half_pixel_symmetric       ``n/2 * (1 - L / (s*n)) + (i + 0.5) / s - 0.5`` (centres the output when
                           ``L != s * n``)
pytorch_half_pixel         ``(i + 0.5) / s - 0.5`` if ``L > 1`` else 0
align_corners              ``i * (n - 1) / (L - 1)`` (0 when ``L == 1``)
asymmetric                 ``i / s`` (with ``floor``: PyTorch's ``nearest``)
tf_half_pixel_for_nn       ``(i + 0.5) / s``
tf_crop_and_resize         ``start*(n-1) + i * (end - start) * (n-1) / (L - 1)`` (``L == 1``: the roi's
                           centre); outside ``[0, n - 1]`` the output is ``extrapolation_value``
=========================  ===========================================================================

then ``mode``: ``nearest`` (``nearest_mode`` rounds the coordinate), ``linear`` (the two neighbours,
weights ``1 - f, f``), ``cubic`` (four neighbours, Keys' kernel with ``cubic_coeff_a``; with
``exclude_outside`` the taps outside the input get weight 0 and the rest are renormalised). Neighbours
outside the input repeat the edge. With ``antialias`` a downscale by ``s < 1`` widens the linear or
cubic kernel by ``1/s`` (a triangle or Keys filter of support ``1/s``, normalised to sum 1: Pillow's
resampling). ``scales`` gives ``L = floor(s * n)``; ``sizes`` gives ``L`` and ``s = L / n``, and with
``keep_aspect_ratio_policy`` ``not_larger`` / ``not_smaller`` one scale (the min / max over ``axes``)
is used for every axis, ``L = round(s * n)``. ``axes`` lists the axes ``scales``/``sizes``/``roi``
refer to.

Two runtimes, reproduced with ``runtime=``:

* ``"onnxruntime"`` (1.32, ``core/providers/cpu/tensor/upsamplebase.h``, ``upsample.cc``, ``upsample.h``,
  ``upsample_aa.cc``): scales, sizes and coordinates in **float32**, as written above (the half-pixel
  symmetric and crop formulas partly in double, as there); sizes give ``s = float(L) / float(n)``,
  scales give ``L = int64(s * float(n))`` (a float32 product), the aspect policy
  ``L = std::round(s * n)``. ``nearest_mode`` rounds with a tie tolerance: ``|frac - 0.5| <= 1e-6``
  counts as a tie (fitted on every size pair ``n < 70``, ``L <= 2n + 1``; onnxruntime issue #28291 /
  PR #28757: "epsilon-based fractional tie check"). Linear is ``dx2*dy2*X11 + dx1*dy2*X21 + dx2*dy1*X12
  + dx1*dy1*X22`` with the coordinate clamped to ``[0, n - 1]`` (trilinear likewise, eight terms);
  cubic interpolates along W then H (each tap ``coeff / sum * value``) with float32 coefficients;
  antialias is Pillow's separable filter (W, then H; ``upsample_antialias.h``): taps
  ``[floor(c - support + 0.5), floor(c + support + 0.5))`` around ``c = coordinate + 0.5``, weights
  ``filter((j - coordinate) * scale)`` summed in float32, out-of-range taps folded onto the edge tap
  (or dropped with ``exclude_outside``), times ``1 / total`` (a reciprocal, not a division). An axis
  with scale 1 is copied (even with a crop roi), and an output of the input's shape is a copy.
  Layouts: linear on 2-D, 3-D, 4-D (NCHW, or NHWC with scales ``[1, sh, sw, 1]``), 5-D (NCDHW); cubic
  on 2-D and NCHW; antialias on 2-D and NCHW. Others are refused (ValueError naming ``mode`` and
  onnxruntime). No float64 kernel exists: refdet keeps its float32 coordinates with float64 values.
* ``"onnx_reference"`` (onnx 1.23, ``onnx/reference/ops/op_resize.py``): separable, one axis at a
  time, in float64; ``s`` and the coordinates in float64, and -- the notable difference --
  ``align_corners``, ``tf_crop_and_resize`` and ``pytorch_half_pixel`` use the *unrounded* output
  width ``s * n`` where the spec says ``L`` (so ``scales=0.6`` on 4 pixels divides by ``2.4 - 1``, not
  ``2 - 1``: onnxruntime and the reference differ on ``test_resize_downsample_scales_linear_align_corners``),
  ``pytorch_half_pixel`` with ``s * n == 1`` gives ``-0.5`` (not 0), the cubic coefficients are
  rounded to float32 (the evaluator hands ``cubic_coeff_a`` over as a ``np.float32``, and NumPy's
  promotion keeps every product with it in float32; ONNX's node-test generators pass a Python float
  and differ from the evaluator by up to 7e-7 of the range), nearest ties are exact
  comparisons, antialias windows fold out-of-range taps onto the edge (or drop them with
  ``exclude_outside``), and the result is clipped to the dtype's range (``inf`` becomes the largest
  float).

float32 results reproduce onnxruntime bit for bit where the operation order above is all there is
(nearest always; linear, cubic and antialias measured in the tests); the reference runtime is
float64 then cast.

The layer pair :func:`resize_linear_forward` / :func:`resize_linear_backward` is bilinear resizing of
NCHW maps as ``F.interpolate(mode="bilinear")`` (``align_corners``; the source index
``(i + 0.5) * scale - 0.5`` clamped at 0 with ``scale = 1/scale_factor`` when a factor is given,
``n / L`` otherwise: ATen ``area_pixel_compute_source_index`` / ``compute_scales_value``), or with an
ONNX coordinate mode. It is written as two interpolation matrices, ``y = A_h x A_w^T``, so the
backward is their transpose. Readable reference: :func:`refdet.reference.onnx_ops.resize_linear`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "RESIZE_RUNTIMES",
    "RESIZE_MODES",
    "COORDINATE_TRANSFORMATION_MODES",
    "NEAREST_MODES",
    "KEEP_ASPECT_RATIO_POLICIES",
    "resize",
    "resize_source_coordinate",
    "ResizeLinearCache",
    "ResizeLinearGrads",
    "resize_linear_forward",
    "resize_linear_backward",
]

RESIZE_RUNTIMES = ("onnxruntime", "onnx_reference")
RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_TRANSFORMATION_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                   "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
KEEP_ASPECT_RATIO_POLICIES = ("stretch", "not_larger", "not_smaller")

#: onnxruntime's tie tolerance for round_prefer_floor / round_prefer_ceil (issue #28291)
ORT_NEAREST_TIE_EPS = np.float32(1e-6)

_ORT = ("onnxruntime core/providers/cpu/tensor/upsamplebase.h (get_original_coordinate, scales), upsample.cc, "
        "upsample.h (UpsampleBilinear), upsample_aa.cc (SetupUpsampleFilterAA)")
_REF = "onnx/reference/ops/op_resize.py (_interpolate_1d_along_axis, _compute_x_ori, *_coeffs*)"
_ATEN = "ATen native/UpSample.h (area_pixel_compute_source_index, compute_scales_value), UpSampleKernel.cpp"

conventions.register(
    "resize",
    {"onnx": {"runtime": "onnxruntime"}},
    knobs={"runtime": conventions.choice(
        RESIZE_RUNTIMES, "onnxruntime (float32 coordinates, fused bilinear/bicubic kernels, Pillow antialias, "
        "tie tolerance 1e-6) or onnx.reference (float64, separable, unrounded output width s*n)",
        source=f"{_ORT}; {_REF}")},
    doc="ONNX Resize-19 (also 11, 13, 18 semantics: opset 18 added antialias, axes, keep_aspect_ratio_policy; 19 "
        "half_pixel_symmetric).",
)
conventions.register(
    "resize_linear_forward",
    {"torchvision": {"coordinate_transformation_mode": "half_pixel", "scale_rule": "torch"},
     "onnx": {"coordinate_transformation_mode": "half_pixel", "scale_rule": "onnx"},
     "detectron2": {"coordinate_transformation_mode": "half_pixel", "scale_rule": "torch"},
     "mmdet": {"coordinate_transformation_mode": "half_pixel", "scale_rule": "torch"}},
    knobs={
        "coordinate_transformation_mode": conventions.choice(
            ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"),
            "source coordinate of output index i (align_corners=True selects 'align_corners'); PyTorch's "
            "align_corners=False is 'half_pixel' (its output of length 1 reads the centre, which ONNX "
            "'pytorch_half_pixel', what torch.onnx exports, does not)", source=f"{_ATEN}; {_ORT}"),
        "scale_rule": conventions.choice(
            ("torch", "onnx"), "'torch': multiply by 1/scale_factor (or n/L) in the working dtype; 'onnx': divide "
            "by the float32 scale L/n (or scale_factor)", source=f"{_ATEN}; {_ORT}"),
    },
    doc="F.interpolate(mode='bilinear') vs ONNX Resize(mode='linear') on NCHW maps.",
)


# ---------------------------------------------------------------------------------------------------
# shapes and scales
# ---------------------------------------------------------------------------------------------------

class _Axis(NamedTuple):
    n: int                # input length
    L: int                # output length
    s: float              # scale (float32 value for onnxruntime, float64 for the reference)
    start: float          # roi start (normalised)
    end: float            # roi end
    resized: bool         # listed in axes (or all axes when axes is None)


def _vector(v, name, kind):
    if v is None:
        return None
    a = _checks.as_array(v, name)
    if a.size == 0:
        return None
    if a.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {a.shape}")
    if kind == "int":
        if a.dtype.kind not in "iu":
            raise TypeError(f"`{name}` must be integers (int64 in ONNX); got dtype {a.dtype}")
        return a.astype(np.int64)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"`{name}` must be real numbers; got dtype {a.dtype}")
    return a.astype(np.float64)


def _plan(shape, roi, scales, sizes, axes, policy, runtime):
    r = len(shape)
    if axes is None:
        ax = list(range(r))
    else:
        ax = [_checks.check_int(a, "axes") for a in axes]
        for a in ax:
            if not -r <= a < r:
                raise ValueError(f"`axes` values must lie in [{-r}, {r}); got {a}")
        ax = [a % r for a in ax]
        if len(set(ax)) != len(ax):
            raise ValueError(f"`axes` must not repeat an axis; got {list(axes)}")
    k = len(ax)
    scales = _vector(scales, "scales", "float")
    sizes = _vector(sizes, "sizes", "int")
    if (scales is None) == (sizes is None):
        raise ValueError("exactly one of `scales` and `sizes` must be given (non-empty)")
    for name, v in (("scales", scales), ("sizes", sizes)):
        if v is not None and v.size != k:
            raise ValueError(f"`{name}` must have one value per axis in `axes` ({k}); got {v.size}")
    roi_v = _vector(roi, "roi", "float")
    if roi_v is not None and roi_v.size != 2 * k:
        raise ValueError(f"`roi` must have 2 * {k} values (starts, then ends, for the axes); got {roi_v.size}")
    f32 = np.float32
    sc = [1.0] * r
    out = list(shape)
    starts, ends = [0.0] * r, [1.0] * r
    if roi_v is not None:
        for i, a in enumerate(ax):
            starts[a], ends[a] = roi_v[i], roi_v[k + i]
    if scales is not None:
        if np.any(scales <= 0):
            raise ValueError(f"`scales` must be > 0; got {scales.tolist()}")
        for i, a in enumerate(ax):
            s = f32(scales[i])                                                    # a float32 tensor in ONNX
            sc[a] = float(s)
            if runtime == "onnxruntime":
                out[a] = int(np.trunc(s * f32(shape[a])))                         # int64(float * float(n))
            else:
                out[a] = int(math.floor(float(s) * shape[a]))                     # (s * shape).astype(int)
    else:
        if np.any(sizes < 0):
            raise ValueError(f"`sizes` must be >= 0; got {sizes.tolist()}")
        for i, a in enumerate(ax):
            out[a] = int(sizes[i])
            if shape[a] == 0:
                if out[a] != 0:
                    raise ValueError(f"`sizes`: axis {a} has length 0 and cannot be resized to {out[a]}")
                sc[a] = 1.0
            elif runtime == "onnxruntime":
                sc[a] = float(f32(out[a]) / f32(shape[a]))
            else:
                sc[a] = out[a] / shape[a]
        if policy != "stretch":
            vals = [sc[a] for a in ax]
            s = min(vals) if policy == "not_larger" else max(vals)
            for a in ax:
                sc[a] = s
                if runtime == "onnxruntime":
                    p = f32(s) * f32(shape[a])
                    out[a] = int(np.sign(p) * np.floor(np.abs(p) + 0.5))          # std::round of the float product
                else:
                    out[a] = int(s * shape[a] + 0.5)
    return [_Axis(shape[a], out[a], sc[a], starts[a], ends[a], a in ax) for a in range(r)]


# ---------------------------------------------------------------------------------------------------
# coordinates
# ---------------------------------------------------------------------------------------------------

def _coord_ort(mode, L, s, n, start, end):
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


def _coord_ref(mode, L, s, n, start, end):
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


def resize_source_coordinate(in_size: int, out_size: int, scale: float, *,
                             coordinate_transformation_mode: str = "half_pixel", roi: Tuple[float, float] = (0.0, 1.0),
                             runtime: str = "onnxruntime") -> np.ndarray:
    """The source coordinate of every output index of one axis (module table), as ``runtime`` computes it.

    Returns
    -------
    ndarray, shape (out_size,): float32 (onnxruntime) or float64 (onnx_reference)
    """
    _checks.check_choice(runtime, "runtime", RESIZE_RUNTIMES)
    _checks.check_choice(coordinate_transformation_mode, "coordinate_transformation_mode",
                         COORDINATE_TRANSFORMATION_MODES)
    n = _checks.check_int(in_size, "in_size", low=1)
    L = _checks.check_int(out_size, "out_size", low=0)
    s = _checks.check_positive(scale, "scale")
    fn = _coord_ort if runtime == "onnxruntime" else _coord_ref
    return fn(coordinate_transformation_mode, L, s, n, float(roi[0]), float(roi[1]))


# ---------------------------------------------------------------------------------------------------
# onnx.reference: separable, float64
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


def _resize_reference(x, plan, mode, ctm, a, exclude_outside, extrapolation_value, nearest_mode, antialias):
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
        xs = _coord_ref(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
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


# ---------------------------------------------------------------------------------------------------
# onnxruntime kernels (float32 coordinates and weights)
# ---------------------------------------------------------------------------------------------------

def _ort_nearest_index(ax, ctm, nearest_mode, extrapolate):
    """Source index per output index (-1: extrapolate) for one axis (UpsampleNearestSetupInputMappings)."""
    if ax.s == 1.0:
        return np.arange(ax.L, dtype=np.int64)                 # scale 1: a copy, whatever the roi
    x = _coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
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
        orig = _coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
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
    orig = np.arange(ax.L, dtype=f) if ax.s == 1.0 else _coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
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
        center = f(0.5) + _coord_ort(ctm, ax.L, ax.s, ax.n, ax.start, ax.end)
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


def _resize_ort(x, plan, mode, ctm, a, exclude_outside, extrapolation_value, nearest_mode, antialias):
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
        raise ValueError(f"`mode` {mode!r}{' with antialias' if antialias else ''} on a {len(plan)}-D input with scales "
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
    X11 = x[..., y1[:, None], x1[None, :]]
    X21 = x[..., y1[:, None], x2[None, :]]
    X12 = x[..., y2[:, None], x1[None, :]]
    X22 = x[..., y2[:, None], x2[None, :]]
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


@conventions.documented("resize")
def resize(x: np.ndarray, roi=None, scales=None, sizes=None, *, mode: str = "nearest",
           coordinate_transformation_mode: str = "half_pixel", cubic_coeff_a: float = -0.75,
           exclude_outside: int = 0, extrapolation_value: float = 0.0, nearest_mode: str = "round_prefer_floor",
           antialias: int = 0, axes: Optional[Sequence[int]] = None, keep_aspect_ratio_policy: str = "stretch",
           convention: Union[str, conventions.Profile] = "onnx", runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``Resize`` (opsets 11-19), every attribute, as onnxruntime or onnx.reference computes it.

    Parameters
    ----------
    x : ndarray, any shape (D0, ..., Dr-1)
        float16 (computed in float32, returned as float16), float32 or float64.
    roi : array_like, shape (2k,), optional
        ``[starts..., ends...]`` (normalised) for ``tf_crop_and_resize``; ignored otherwise.
    scales : array_like of float, shape (k,), optional
        One per axis in ``axes`` (all axes by default). Exactly one of ``scales`` and ``sizes``.
    sizes : array_like of int, shape (k,), optional
    mode : {"nearest", "linear", "cubic"}
    coordinate_transformation_mode : str
        See the module table.
    cubic_coeff_a : float
        Keys' ``A`` (-0.75 in ONNX, TensorFlow and PyTorch's bicubic; -0.5 in Keys' paper and Pillow).
    exclude_outside : int
        Cubic (or antialiased) taps outside the input get weight 0; the rest are renormalised.
    extrapolation_value : float
        The output where a ``tf_crop_and_resize`` coordinate leaves ``[0, n - 1]``.
    nearest_mode : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}
    antialias : int
        Widen the linear/cubic filter by ``1 / scale`` when downscaling (opset >= 18).
    axes : list of int, optional
        The axes ``scales``, ``sizes`` and ``roi`` refer to.
    keep_aspect_ratio_policy : {"stretch", "not_larger", "not_smaller"}
        With ``sizes``: one scale, the min (not_larger) or max (not_smaller) over ``axes``.
    convention, runtime
        ``"onnxruntime"`` (default) or ``"onnx_reference"`` (module docstring).

    Returns
    -------
    ndarray, x's dtype, x's shape with the resized lengths.
    """
    runtime = conventions.resolve("resize", convention, runtime=runtime).runtime
    xa = _checks.as_array(x, "x")
    if xa.dtype.kind != "f":
        raise TypeError(f"`x` must be float16/float32/float64 (refdet resizes floating maps; onnxruntime's integer "
                        f"Resize kernels truncate); got dtype {xa.dtype}")
    if xa.ndim == 0:
        raise ValueError("`x` must have at least 1 dimension")
    _checks.check_choice(mode, "mode", RESIZE_MODES)
    _checks.check_choice(coordinate_transformation_mode, "coordinate_transformation_mode",
                         COORDINATE_TRANSFORMATION_MODES)
    _checks.check_choice(nearest_mode, "nearest_mode", NEAREST_MODES)
    _checks.check_choice(keep_aspect_ratio_policy, "keep_aspect_ratio_policy", KEEP_ASPECT_RATIO_POLICIES)
    a = _checks.check_real(cubic_coeff_a, "cubic_coeff_a")
    ext = _checks.check_real(extrapolation_value, "extrapolation_value")
    excl = bool(_checks.check_int(exclude_outside, "exclude_outside", low=0, high=1))
    aa = bool(_checks.check_int(antialias, "antialias", low=0, high=1))
    if aa and mode == "nearest":
        raise ValueError("`antialias` applies to mode 'linear' and 'cubic' only (ONNX Resize-18; both runtimes refuse "
                         "it with 'nearest')")
    if runtime == "onnxruntime" and excl and mode != "cubic" and not (aa and mode == "linear"):
        raise ValueError("`exclude_outside`=1 with mode 'linear' without antialias (or 'nearest'): onnxruntime refuses "
                         "it ('exclude_outside can be set to 1 when mode is CUBIC, or LINEAR with anti-aliasing')")
    ctm = coordinate_transformation_mode
    if ctm == "tf_crop_and_resize" and _vector(roi, "roi", "float") is None:
        raise ValueError("`roi` is required with coordinate_transformation_mode='tf_crop_and_resize'")
    if runtime == "onnxruntime" and aa and ctm == "tf_crop_and_resize":
        raise ValueError("`antialias` with coordinate_transformation_mode='tf_crop_and_resize': onnxruntime's antialias "
                         "kernel tests extrapolation with the output-row table indexed by input rows (upsample_aa.h, "
                         "UpsampleBaseAA), reading out of bounds; refused (use runtime='onnx_reference')")
    out_dtype = xa.dtype
    work = xa.astype(_checks.working_dtype(xa.dtype), copy=False)
    plan = _plan(work.shape, roi if ctm == "tf_crop_and_resize" else None, scales, sizes, axes,
                 keep_aspect_ratio_policy, runtime)
    out_shape = tuple(ax.L for ax in plan)
    if runtime == "onnxruntime":
        if 0 in out_shape or work.size == 0:
            return np.zeros(out_shape, out_dtype)
        if out_shape == work.shape:
            return work.astype(out_dtype, copy=True)                       # memcpy (BaseCompute)
        y = _resize_ort(work, plan, mode, ctm, a, excl, ext, nearest_mode, aa)
        return y.astype(out_dtype)
    if 0 in out_shape or work.size == 0:
        return np.zeros(out_shape, out_dtype)
    y = _resize_reference(work, plan, mode, ctm, a, excl, ext, nearest_mode, aa)
    if out_dtype.kind == "f":
        info = np.finfo(out_dtype)
        y = np.clip(y, info.min, info.max)                                  # onnx.numpy_helper.saturate_cast
    return y.astype(out_dtype)


# ---------------------------------------------------------------------------------------------------
# the bilinear layer pair (NCHW)
# ---------------------------------------------------------------------------------------------------

class ResizeLinearCache(NamedTuple):
    """What :func:`resize_linear_backward` needs: the two interpolation matrices."""
    ah: np.ndarray                # (Ho, H)
    aw: np.ndarray                # (Wo, W)
    in_shape: tuple               # (B, C, H, W)


class ResizeLinearGrads(NamedTuple):
    dx: np.ndarray                # (B, C, H, W)


def _interp_matrix(n, L, ctm, scale, rule, dt):
    """(L, n) bilinear weights of one axis: row i holds 1 - l at h0 and l at h1."""
    i = np.arange(L).astype(dt)
    if ctm == "align_corners":
        src = i * dt.type(n - 1) / dt.type(L - 1) if L > 1 else np.zeros(L, dt)
    else:
        if rule == "torch":
            r = dt.type(1.0 / scale) if scale is not None else dt.type(n) / dt.type(L)   # multiply by n / L
            half = (i + dt.type(0.5)) * r
        else:
            s = np.float32(scale) if scale is not None else np.float32(L) / np.float32(n)
            half = (i + dt.type(0.5)) / dt.type(s)
            r = None
        if ctm == "asymmetric":
            src = i * r if r is not None else i / dt.type(s)
        elif ctm == "pytorch_half_pixel":
            src = half - dt.type(0.5) if L > 1 else np.zeros(L, dt)
        elif ctm == "half_pixel_symmetric":
            sv = (1.0 / float(r)) if r is not None else float(s)
            off = n / 2 * (1 - L / (sv * n))
            src = dt.type(off) + half - dt.type(0.5)
        else:
            src = half - dt.type(0.5)
    src = np.clip(src, 0, n - 1).astype(dt)                 # ATen clamps at 0 (linear); ONNX clamps to [0, n - 1]
    h0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    h1 = np.minimum(h0 + 1, n - 1)
    lam = (src - h0.astype(dt)).astype(dt)
    A = np.zeros((L, n), dt)
    rows = np.arange(L)
    np.add.at(A, (rows, h0), dt.type(1) - lam)
    np.add.at(A, (rows, h1), lam)
    return A


@conventions.documented("resize_linear_forward")
def resize_linear_forward(x: np.ndarray, *, size=None, scale_factor=None, align_corners: bool = False,
                          coordinate_transformation_mode: Optional[str] = None, scale_rule: Optional[str] = None,
                          convention: Union[str, conventions.Profile] = "torchvision"
                          ) -> Tuple[np.ndarray, ResizeLinearCache]:
    """Bilinear resize of an NCHW map: ``F.interpolate(x, size or scale_factor, mode="bilinear",
    align_corners=...)``, or ONNX ``Resize(mode="linear")`` with ``convention="onnx"``.

    Parameters
    ----------
    x : ndarray, shape (B, C, H, W)
    size : int or (int, int), optional
    scale_factor : float or (float, float), optional
        Output ``floor(H * scale_factor)``; the coordinates then use ``1 / scale_factor`` (PyTorch
        without ``recompute_scale_factor``) or the float32 scale (ONNX). Exactly one of the two.
    align_corners : bool
        Corner pixels aligned: ``src = i * (H - 1) / (Ho - 1)`` (sets the coordinate mode).
    coordinate_transformation_mode, scale_rule : optional
        Knobs (the convention table).

    Returns
    -------
    y : ndarray, shape (B, C, Ho, Wo)
        ``y = A_h @ x @ A_w^T`` per plane: row ``i`` of ``A`` holds ``1 - l`` at ``floor(src)`` and
        ``l`` at the next pixel (clamped to the edge).
    cache : ResizeLinearCache
    """
    st = conventions.resolve("resize_linear_forward", convention,
                             coordinate_transformation_mode=coordinate_transformation_mode, scale_rule=scale_rule)
    ctm = "align_corners" if align_corners else st.coordinate_transformation_mode
    xa = _checks.as_nchw(x, "x", finite=False)
    _checks.check_finite(xa, "x", allow_inf=False)
    if (size is None) == (scale_factor is None):
        raise ValueError(f"exactly one of `size` and `scale_factor` must be given; got size={size!r}, "
                         f"scale_factor={scale_factor!r}")
    bsz, c, h, w = xa.shape
    if h == 0 or w == 0:
        raise ValueError(f"`x` must have non-empty spatial dimensions; got shape {xa.shape}")
    if size is not None:
        ho, wo = _checks.check_pair(size, "size", low=1)
        sh = sw = None
    else:
        if hasattr(scale_factor, "__len__") and not isinstance(scale_factor, str):
            if len(scale_factor) != 2:
                raise ValueError(f"`scale_factor` must be a number or a pair; got {len(scale_factor)} values")
            sh, sw = (_checks.check_positive(v, "scale_factor") for v in scale_factor)
        else:
            sh = sw = _checks.check_positive(scale_factor, "scale_factor")
        ho, wo = int(np.floor(h * sh)), int(np.floor(w * sw))
        if ho < 1 or wo < 1:
            raise ValueError(f"`scale_factor` {scale_factor!r} gives an empty output ({ho}, {wo})")
    dt = xa.dtype
    ah = _interp_matrix(h, ho, ctm, sh, st.scale_rule, dt)
    aw = _interp_matrix(w, wo, ctm, sw, st.scale_rule, dt)
    y = np.matmul(np.matmul(ah, np.ascontiguousarray(xa)), aw.T)           # (B, C, Ho, Wo)
    return y, ResizeLinearCache(ah, aw, xa.shape)


def resize_linear_backward(dy: np.ndarray, cache: ResizeLinearCache) -> ResizeLinearGrads:
    """``dx = A_h^T @ dy @ A_w``: each output gradient goes to its four source pixels with the
    forward's weights (ATen ``upsample_bilinear2d_backward`` adds the same four products)."""
    if not isinstance(cache, ResizeLinearCache):
        raise TypeError(f"`cache` must be the ResizeLinearCache returned by resize_linear_forward; got "
                        f"{type(cache).__name__}")
    bsz, c, h, w = cache.in_shape
    want = (bsz, c, cache.ah.shape[0], cache.aw.shape[0])
    g = _checks.as_nchw(dy, "dy", dtype=cache.ah.dtype, finite=False)
    if g.shape != want:
        raise ValueError(f"`dy` must have the output's shape {want}; got {g.shape}")
    return ResizeLinearGrads(np.matmul(np.matmul(cache.ah.T, np.ascontiguousarray(g)), cache.aw))
