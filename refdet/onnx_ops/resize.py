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
from refdet.onnx_ops._resize_ort import ORT_NEAREST_TIE_EPS, coord_ort as _coord_ort, resize_ort as _resize_ort
from refdet.onnx_ops._resize_reference import coord_ref as _coord_ref, resize_reference as _resize_reference

__all__ = [
    "RESIZE_RUNTIMES",
    "RESIZE_MODES",
    "COORDINATE_TRANSFORMATION_MODES",
    "NEAREST_MODES",
    "KEEP_ASPECT_RATIO_POLICIES",
    "ORT_NEAREST_TIE_EPS",
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
        axes = _checks.check_sequence(axes, "axes", "a list of axes (or None)")
        ax = [_checks.check_int(a, f"axes[{i}]") for i, a in enumerate(axes)]
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
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ValueError(f"`scales` must be finite and > 0; got {scales.tolist()}")
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
    _checks.check_allocation(int(np.prod(out, dtype=object)), 8, f"an output of shape {tuple(out)}",
                             name="scales" if scales is not None else "sizes", keyword=False)
    return [_Axis(shape[a], out[a], sc[a], starts[a], ends[a], a in ax) for a in range(r)]


# ---------------------------------------------------------------------------------------------------
# coordinates
# ---------------------------------------------------------------------------------------------------

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
    _checks.check_allocation(L, 8, "source coordinates", name="out_size", keyword=False)
    s = _checks.check_positive(scale, "scale")
    if isinstance(roi, (str, bytes)) or not hasattr(roi, "__len__") or len(roi) != 2:
        raise TypeError(f"`roi` must be a (start, end) pair; got {_checks._describe(roi)}")
    r0, r1 = (_checks.check_real(v, f"roi[{i}]") for i, v in enumerate(roi))
    fn = _coord_ort if runtime == "onnxruntime" else _coord_ref
    return fn(coordinate_transformation_mode, L, s, n, r0, r1)


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
        raise ValueError("`antialias` with coordinate_transformation_mode='tf_crop_and_resize': onnxruntime's "
                         "antialias "
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
    align_corners = _checks.check_bool(align_corners, "align_corners")
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
    _checks.check_allocation(xa.shape[0] * xa.shape[1] * ho * wo, dt.itemsize,
                             f"an output of shape {(xa.shape[0], xa.shape[1], ho, wo)}",
                             name="size" if size is not None else "scale_factor", keyword=False)
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
