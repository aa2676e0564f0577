"""Affine quantization: rounding modes, scale and zero point, quantize and dequantize, weights and biases.

The map (Jacob et al. 2018)::

    real = (q - z) * s                           dequantize
    q    = clamp(round(x / s) + z, qmin, qmax)   quantize

and the four details that make it bit-exact for one framework (rounding mode, division or reciprocal
multiply, when the zero point is added, where the range comes from): see :mod:`refdet.quant`.
Reference: :mod:`refdet.reference.quant` (``quantize`` in exact rational arithmetic).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from refdet import _checks
from refdet import conventions

__all__ = [
    "QUANT_DTYPES",
    "QParams",
    "round_half_even",
    "round_half_away",
    "round_half_up",
    "qparams_from_minmax",
    "quantize",
    "dequantize",
    "QuantizedTensor",
    "quantize_weights",
    "QuantizedBias",
    "quantize_bias",
]

ArrayLike = Union[np.ndarray, float, int, list, tuple]

#: quantized type name -> (qmin, qmax)
QUANT_DTYPES = dict(_checks.QUANT_RANGES)

_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1

# Framework names users reach for, mapped onto refdet's profile names.
_ALIASES = {"torch": "torchvision", "pytorch": "torchvision", "onnxruntime": "onnx", "ort": "onnx",
            "tflite": "tf", "tensorflow": "tf"}


def _resolve(op_name: str, convention, **overrides) -> conventions.Profile:
    """``conventions.resolve`` with the framework aliases ("torch", "onnxruntime", "tflite", ...)."""
    if isinstance(convention, str):
        convention = _ALIASES.get(convention, convention)
    return conventions.resolve(op_name, convention, **overrides)


_TORCH_SRC = ("torch/ao/quantization/observer.py::_calculate_qparams; "
              "aten/src/ATen/native/quantized/AffineQuantizerBase.cpp (x * (1.0f/scale), nearbyint)")
_ORT_SRC = ("onnxruntime/python/tools/quantization/quant_utils.py::compute_scale_zp and "
            "get_qmin_qmax_for_qType (symmetric int8 [-127, 127]); ONNX QuantizeLinear schema (RNE of x / y_scale)")
_TF_SRC = ("tensorflow/lite/kernels/internal/quantization_util.cc (NudgeQuantizationRange), "
           "tensorflow/core/kernels/fake_quant_ops_functor.h (Nudge, std::round), TFLite quantization_spec.md "
           "(symmetric weights in [-127, 127]); reference/quantize.h (TfLiteRound(x / scale))")


_ROUNDINGS = ("half_even", "half_away", "half_up")
_OPS = ("div", "mul_inv")

_ROUNDING_SRC = ("half_even: np.rint / std::nearbyint (ONNX QuantizeLinear, PyTorch); half_away: std::round, "
                 "TfLiteRound (TFLite reference kernels); half_up: floor(v + 0.5) (TF FakeQuantWithMinMaxVars)")
_OP_SRC = ("div: onnx/reference/ops/op_quantize_linear.py, tensorflow/lite/kernels/internal/reference/quantize.h; "
           "mul_inv: aten/src/ATen/native/quantized/AffineQuantizerBase.cpp (x * (1.0f / scale))")

conventions.register(
    "qparams_from_minmax",
    {
        "torchvision": {"narrow_range": False, "scale_dtype": "float32", "zero_point_rule": "torch",
                        "tiny_range": "eps"},
        "detectron2": {"narrow_range": False, "scale_dtype": "float32", "zero_point_rule": "torch",
                       "tiny_range": "eps"},
        "mmdet": {"narrow_range": False, "scale_dtype": "float32", "zero_point_rule": "torch",
                  "tiny_range": "eps"},
        "onnx": {"narrow_range": "symmetric", "scale_dtype": "float64", "zero_point_rule": "onnx",
                 "tiny_range": "one"},
        "tf": {"narrow_range": "symmetric", "scale_dtype": "float32", "zero_point_rule": "tf",
               "tiny_range": "one"},
    },
    knobs={
        "narrow_range": conventions.choice(
            (True, False, "symmetric"),
            "qmin + 1 (int8 [-127, 127]): True, False, or 'symmetric' = only for symmetric signed types",
            source="onnxruntime quant_utils.py::get_qmin_qmax_for_qType (symmetric int8 [-127, 127]); TFLite "
                   "quantization_spec.md; PyTorch observers keep [-128, 127]"),
        "scale_dtype": conventions.choice(
            ("float32", "float64"),
            "precision of (rmax - rmin) / (qmax - qmin); the stored scale is float32 either way",
            source="onnxruntime quant_utils.py::compute_scale_zp (numpy float64); torch observer.py (float32)"),
        "zero_point_rule": conventions.choice(
            ("torch", "onnx", "tf"),
            "'onnx' rint(qmin - rmin/s), symmetric rint((qmin+qmax)/2); 'torch' qmin - rint(rmin/s) clamped, "
            "symmetric 0 (signed) or 128 (uint8); 'tf' std::round(clamp(qmin - rmin/s))",
            source=_TORCH_SRC + "; " + _ORT_SRC + "; " + _TF_SRC),
        "tiny_range": conventions.choice(
            ("eps", "one"),
            "'one': scale < float32 tiny -> (1.0, 0) (onnxruntime); 'eps': scale floored at float32 eps (PyTorch)",
            source="onnxruntime quant_utils.py::compute_scale_zp; torch observer.py::_calculate_qparams (eps)"),
    },
    doc=f"torch: {_TORCH_SRC}. onnx: {_ORT_SRC}. tf: {_TF_SRC}. TFLite's own ChooseQuantizationParams "
        "returns scale 0 for an all-zero range; refdet never returns a zero scale and uses (1.0, 0) instead.",
)

conventions.register(
    "quantize",
    {
        "torchvision": {"rounding": "half_even", "op": "mul_inv"},
        "detectron2": {"rounding": "half_even", "op": "mul_inv"},
        "mmdet": {"rounding": "half_even", "op": "mul_inv"},
        "onnx": {"rounding": "half_even", "op": "div"},
        "tf": {"rounding": "half_away", "op": "div"},
    },
    knobs={"rounding": conventions.choice(_ROUNDINGS, "rounding of x / scale to an integer", source=_ROUNDING_SRC),
           "op": conventions.choice(_OPS, "'div': x / scale; 'mul_inv': x * (1 / scale), the reciprocal rounded "
                                    "to the working dtype", source=_OP_SRC)},
    doc="PyTorch quantize_per_tensor / fake_quantize: nearbyint(x * (1.0f/scale)) (fbgemm::Quantize, "
        "QuantizedOpKernels.cpp). ONNX QuantizeLinear: rint(x / y_scale) (onnx/reference/ops/op_quantize_linear.py; "
        "onnxruntime verified on 2M values). TFLite reference QUANTIZE: TfLiteRound(x / scale) = half away "
        "(reference/quantize.h). TFLite's optimized kernel multiplies by 1/scale and rounds to even; XNNPACK "
        "divides and rounds to even: pass rounding= and op= explicitly for those.",
)

conventions.register(
    "quantize_weights",
    {
        "torchvision": {"rounding": "half_even", "op": "mul_inv"},
        "detectron2": {"rounding": "half_even", "op": "mul_inv"},
        "mmdet": {"rounding": "half_even", "op": "mul_inv"},
        "onnx": {"rounding": "half_even", "op": "div"},
        "tf": {"rounding": "half_away", "op": "mul_inv"},
    },
    knobs={"rounding": conventions.choice(_ROUNDINGS, "rounding of w / scale", source=_ROUNDING_SRC),
           "op": conventions.choice(_OPS, "'div' or 'mul_inv' (multiply by the float32 reciprocal)",
                                    source="onnxruntime quant_utils.py::quantize_nparray (division); TFLite "
                                           "quantization_utils.cc::SymmetricPerChannelQuantizeValues (reciprocal)")},
    doc="PyTorch: PerChannelMinMaxObserver + quantize_per_channel (nearbyint(w * (1/s))). onnxruntime quantizer: "
        "compute_scale_zp per channel + quantize_nparray ((w.astype(float32) / scale).round() + zp). TFLite "
        "converter: SymmetricPerChannelQuantizeValues, TfLiteRound(w * scaling_factor_inv) "
        "(tensorflow/lite/tools/optimize/quantization_utils.cc; read from the source, not run here).",
)

conventions.register(
    "quantize_bias",
    {
        "onnx": {"rounding": "half_even", "op": "div"},
        "tf": {"rounding": "half_away", "op": "mul_inv"},
    },
    knobs={"rounding": conventions.choice(_ROUNDINGS, "rounding of b / (x_scale * w_scale)", source=_ROUNDING_SRC),
           "op": conventions.choice(_OPS, "'div': float64(b) / float64(bias_scale); 'mul_inv': "
                                    "float64(b) * (1.0 / float64(bias_scale))",
                                    source="onnxruntime base_quantizer.py::quantize_bias_static_impl (division); "
                                           "TFLite quantization_utils.cc::SymmetricPerChannelBiasQuantize "
                                           "(reciprocal)")},
    doc="onnxruntime base_quantizer.quantize_bias_static_impl: bias_scale = input_scale * weight_scale (float32), "
        "(float64(b) / float64(bias_scale)).round(), clipped to int32. TFLite SymmetricPerChannelBiasQuantize: "
        "TfLiteRound(b * (1.0 / scale)) in double (read from the source). PyTorch keeps conv biases in float "
        "(fbgemm adds them after requantization), so there is no torchvision profile.",
)

# ---------------------------------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------------------------------

def round_half_even(v: ArrayLike) -> np.ndarray:
    """Round to the nearest integer, ties to even (``np.rint``, ``std::nearbyint``, ONNX, PyTorch).

    Parameters
    ----------
    v : ndarray of float

    Returns
    -------
    ndarray, same shape and float dtype. ``round_half_even(-0.5)`` is ``-0.0``: cast to int before
    comparing signs.
    """
    return np.rint(_round_input(v))


def _round_input(v):
    """A real (not bool, not complex) array for the rounding functions."""
    a = _checks.as_array(v, "v")
    if a.dtype.kind == "b":
        raise TypeError("`v` must be an array of real numbers; got dtype bool")
    return a


def round_half_away(v: ArrayLike) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (``std::round``, ``TfLiteRound``, NNEF).

    Computed as ``trunc(v) + sign(v) * (|v - trunc(v)| >= 0.5)``, which is exact for every float:
    ``v - trunc(v)`` is exact, whereas ``floor(|v| + 0.5)`` misrounds the largest float below 0.5.
    """
    v = _round_input(v)
    t = np.trunc(v)
    with np.errstate(invalid="ignore"):  # inf - inf: the NaN fraction adds 0, and +-inf stays
        frac = v - t  # exact
    return t + np.where(np.abs(frac) >= 0.5, np.sign(v), t.dtype.type(0))   # sign(v) has t's dtype for floats


def round_half_up(v: ArrayLike) -> np.ndarray:
    """Round to the nearest integer, ties toward +inf (``floor(v + 0.5)`` in exact arithmetic).

    TF's ``FakeQuantWithMinMaxVars`` and TFLite's single-rounding requantization round this way. It is
    the only one of the three modes that commutes with adding an integer zero point.
    """
    v = _round_input(v)
    f = np.floor(v)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN >= 0.5 is False, and +-inf stays
        return f + (v - f >= 0.5).astype(f.dtype)  # v - floor(v) is exact


_ROUNDERS = {"half_even": round_half_even, "half_away": round_half_away, "half_up": round_half_up}


def _rounder(rounding):
    """The rounding function of a resolved profile's ``rounding`` (conventions.resolve has checked it)."""
    return _ROUNDERS[rounding]


# ---------------------------------------------------------------------------------------------------
# Ranges and qparams
# ---------------------------------------------------------------------------------------------------

class QParams(NamedTuple):
    """Quantization parameters.

    Attributes
    ----------
    scale : ndarray of float32, shape () or (C,)
    zero_point : ndarray of int64, same shape
    """
    scale: np.ndarray
    zero_point: np.ndarray


def _qrange(dtype, narrow_range, symmetric, qmin, qmax):
    """The (qmin, qmax) used: the type's range, narrowed and/or overridden."""
    lo, hi = QUANT_DTYPES[dtype]
    narrow = narrow_range
    if narrow == "symmetric":   # True, False or "symmetric": conventions.resolve has checked it
        narrow = bool(symmetric) and lo < 0
    if narrow:
        lo += 1
    if qmin is not None:
        lo = _checks.check_int(qmin, "qmin", low=QUANT_DTYPES[dtype][0], high=QUANT_DTYPES[dtype][1])
    if qmax is not None:
        hi = _checks.check_int(qmax, "qmax", low=QUANT_DTYPES[dtype][0], high=QUANT_DTYPES[dtype][1])
    if not lo <= 0 <= hi:
        raise ValueError(f"the quantized range [`qmin`, `qmax`] must contain 0 (so that 0.0 is exact); got "
                         f"[{lo}, {hi}]")
    if lo >= hi:
        raise ValueError(f"`qmin` must be < `qmax`; got [{lo}, {hi}]")
    return lo, hi


def _qparams_profile(convention, narrow_range=None, scale_dtype=None, zero_point_rule=None, tiny_range=None):
    """The resolved ``qparams_from_minmax`` profile (a NumPy bool ``narrow_range`` is taken as a bool)."""
    if isinstance(narrow_range, np.bool_):
        narrow_range = bool(narrow_range)
    return _resolve("qparams_from_minmax", convention, narrow_range=narrow_range, scale_dtype=scale_dtype,
                    zero_point_rule=zero_point_rule, tiny_range=tiny_range)


@conventions.documented("qparams_from_minmax")
def qparams_from_minmax(rmin: ArrayLike, rmax: ArrayLike, *, dtype: str = "int8", symmetric: bool = False,
                        axis: Optional[int] = None, convention="torchvision",
                        narrow_range: Union[bool, str, None] = None, scale_dtype: Optional[str] = None,
                        zero_point_rule: Optional[str] = None, tiny_range: Optional[str] = None,
                        qmin: Optional[int] = None, qmax: Optional[int] = None) -> QParams:
    """Scale and zero point that map the real range ``[rmin, rmax]`` onto a quantized type.

    The range is always widened to contain 0 first (``rmin = min(rmin, 0)``, ``rmax = max(rmax, 0)``)
    so that 0.0 (zero padding, ReLU zeros) is exactly representable. Then, with ``[qmin, qmax]`` the
    type's range (narrowed by one at the bottom under ``narrow_range``)::

        asymmetric: s = (rmax - rmin) / (qmax - qmin)        z = round(qmin - rmin / s)
        symmetric:  s = max(|rmin|, rmax) / ((qmax - qmin) / 2)   z = the middle of [qmin, qmax]

    =============  ============  ===============  =====================================  ========================
    convention     symmetric     scale computed   zero point                             all-zero range
    =============  ============  ===============  =====================================  ========================
    torchvision    [-128, 127]:  in float32       ``qmin - rint(rmin/s)``, clamped;      scale floored at float32
    (torch)        /127.5                         symmetric: 0 (signed), 128 uint8       eps (1.19e-7)
    onnx           [-127, 127]:  float64, stored  ``rint(qmin - rmin/s)``;               (1.0, 0)
    (onnxruntime)  /127          as float32       symmetric ``rint((qmin+qmax)/2)``
    tf (tflite)    [-127, 127]:  in float32       ``std::round(clamp(qmin - rmin/s))``,  (1.0, 0)
                   /127                           half away from zero
    =============  ============  ===============  =====================================  ========================

    ONNX ``DynamicQuantizeLinear`` (onnxruntime) follows the onnx rule but computes in float32: pass
    ``scale_dtype="float32"`` (verified exact on random arrays; the float64 default differs from it in
    about one case in five).

    Parameters
    ----------
    rmin, rmax : float or ndarray, shape () or (C,)
        Observed range, rounded to float32 first (every framework keeps ranges in float32). Per-channel
        ranges (shape (C,)) need ``axis``.
    dtype : {"int8", "uint8", "int16", "uint16", "int32"}
    symmetric : bool
        Symmetric range ``[-absmax, absmax]`` (weights); the zero point is then the middle of the range.
    axis : int, optional
        The channel axis the per-channel parameters will be used along (any int >= 0, recorded only
        as a guard: per-channel ``rmin``/``rmax`` without ``axis`` are refused, so that a (C,) range is
        never silently taken as per-tensor).
    convention : str
        ``"torchvision"`` (PyTorch observers), ``"onnx"`` (onnxruntime ``compute_scale_zp``), ``"tf"``
        (TFLite / TF fake-quant nudging). Knobs below override it.
    narrow_range : bool or "symmetric", optional
    scale_dtype : {"float32", "float64"}, optional
    zero_point_rule : {"torch", "onnx", "tf"}, optional
    tiny_range : {"eps", "one"}, optional
    qmin, qmax : int, optional
        A custom integer range (PyTorch ``quant_min``/``quant_max``, onnxruntime ``reduce_range`` =
        uint8 [0, 127] or int8 [-64, 64]).

    Returns
    -------
    QParams(scale, zero_point)
        ``scale`` float32, ``zero_point`` int64, both of shape () (per-tensor) or (C,).

    Examples
    --------
    >>> qparams_from_minmax(-1.0, 3.0, dtype="uint8", convention="onnx")   # TV-Q5
    QParams(scale=array(0.01568628, dtype=float32), zero_point=array(64))
    """
    s = _qparams_profile(convention, narrow_range, scale_dtype, zero_point_rule, tiny_range)
    dtype = _checks.check_quant_dtype(dtype)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"`symmetric` must be a bool; got {symmetric!r}")
    lo, hi = _qrange(dtype, s["narrow_range"], symmetric, qmin, qmax)
    a = _checks.as_float_array(rmin, "rmin")
    b = _checks.as_float_array(rmax, "rmax")
    if a.ndim > 1 or b.ndim > 1:
        raise ValueError(f"`rmin` and `rmax` must be scalars or 1-D (per channel); got shapes {a.shape} and {b.shape}")
    per_channel = a.ndim == 1 or b.ndim == 1
    if axis is not None:
        _checks.check_int(axis, "axis")
    if per_channel and axis is None and max(a.size, b.size) != 1:
        raise ValueError(f"per-channel ranges (shapes {a.shape}, {b.shape}) need `axis`")
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError:
        raise ValueError(f"`rmin` and `rmax` must have the same length; got {a.shape} and {b.shape}") from None
    if axis is None:
        a, b = a.reshape(()), b.reshape(())
    if np.any(a > b):
        raise ValueError(f"`rmin` must be <= `rmax`; got rmin={a.tolist()}, rmax={b.tolist()}")

    wd = np.float64 if s["scale_dtype"] == "float64" else np.float32
    # The frameworks keep the observed range in float32 (PyTorch buffers, ORT calibration tensors, TF
    # variables); onnxruntime then promotes to float64 before subtracting.
    a32 = a.astype(np.float32)
    b32 = b.astype(np.float32)
    zero = np.float32(0)
    a32 = np.minimum(a32, zero)  # widen to contain 0
    b32 = np.maximum(b32, zero)
    if symmetric:
        absmax = np.maximum(-a32, b32)
        a32, b32 = -absmax, absmax
    lo_f, hi_f = wd(lo), wd(hi)
    if symmetric:
        # (qmax - qmin) / 2 is exact in both precisions (127.5 or 127)
        scale = b32.astype(wd) / ((hi_f - lo_f) / wd(2))
    else:
        scale = (b32.astype(wd) - a32.astype(wd)) / (hi_f - lo_f)
    scale = np.asarray(scale)   # a 0-d array, not a NumPy scalar

    tiny = np.float32(np.finfo(np.float32).tiny)
    eps = np.float32(np.finfo(np.float32).eps)
    degenerate = False   # (broadcasts in np.where)
    if s["tiny_range"] == "eps":
        scale = np.maximum(scale, wd(eps))
    else:
        degenerate = scale < wd(tiny)
        scale = np.where(degenerate, wd(1.0), scale)

    rule = s["zero_point_rule"]
    if rule == "onnx":
        if symmetric:
            zp = np.full(scale.shape, np.rint((lo + hi) / 2.0))
        else:
            zp = np.rint(wd(lo) - a32.astype(wd) / scale)
        zp = np.where(degenerate, 0.0, zp)
    elif rule == "torch":
        if symmetric:
            if lo < 0:
                mid = 0
            elif (lo, hi) == QUANT_DTYPES[dtype]:
                mid = (hi + 1) // 2  # 128 for quint8 (observer.py: "zero_point = 128")
            else:
                mid = (lo + hi) // 2  # customized quant range
            zp = np.full(scale.shape, float(mid))
        else:
            zp = wd(lo) - np.rint(a32.astype(wd) / scale)
    else:  # tf: zero_point_from_min, clamped, std::round
        # Nudge clamps zero_point_from_min to [qmin, qmax] before std::round; round_half_away commutes with
        # a clamp to integers, so the clamp below is that clamp
        zp = round_half_away(wd(lo) - a32.astype(wd) / scale)
        zp = np.where(degenerate, 0.0, zp)
    zp = np.clip(zp, lo, hi)  # pragma: no mutate (tf's Nudge clamp; the torch and onnx zero points lie in [lo, hi])
    return QParams(np.asarray(scale.astype(np.float32)), np.asarray(zp).astype(np.int64))



# ---------------------------------------------------------------------------------------------------
# quantize / dequantize
# ---------------------------------------------------------------------------------------------------

def _along(p, ndim, axis):
    """Reshape a 1-D per-channel parameter to broadcast along ``axis`` of an ``ndim``-D array."""
    if p.ndim == 0 or axis is None:
        return p
    if ndim == 0:  # a 0-d input is one channel: its (1,) parameter becomes a scalar
        return p.reshape(())
    shape = [1] * ndim
    shape[axis] = p.shape[0]
    return p.reshape(shape)


_SATURATE = 2.0 ** 40  # pragma: no mutate (any bound past every integer range plus zero point saturates alike)


def _to_int(r, lo, hi):
    """Float integers -> int64 without overflow (values beyond [lo, hi] only need to stay beyond)."""
    return np.clip(r, lo - 1, hi + 1).astype(np.int64)


@conventions.documented("quantize")
def quantize(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, *, dtype: str = "int8",
             axis: Optional[int] = None, rounding: Optional[str] = None, op: Optional[str] = None,
             add_zero_point: str = "after", convention="torchvision", qmin: Optional[int] = None,
             qmax: Optional[int] = None) -> np.ndarray:
    """Quantize real values: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    Parameters
    ----------
    x : ndarray of float, any shape
        float32 is divided (or multiplied) in float32, as every framework does; float64 in float64;
        float16 in float32; integers in float64. NaN is rejected; +-inf saturate.
    scale : float or ndarray, shape () or (C,)
        Positive and finite. A (C,) scale needs ``axis`` and ``x.shape[axis] == C``.
    zero_point : int or ndarray of int, shape () or (C,)
        Inside the type's range.
    dtype : {"int8", "uint8", "int16", "uint16", "int32"}
        Result type; the clamp range unless ``qmin``/``qmax`` narrow it.
    axis : int, optional
        Channel axis of per-channel parameters (ONNX ``axis``, TFLite ``quantized_dimension``).
    rounding : {"half_even", "half_away", "half_up"}, optional
        Overrides the convention (torchvision/onnx: half_even; tf: half_away).
    op : {"div", "mul_inv"}, optional
        ``x / scale`` (ONNX, TFLite reference) or ``x * (1 / scale)`` (PyTorch). Overrides the convention.
    add_zero_point : {"after", "before"}
        ``"after"``: ``round(x / s) + z`` (ONNX, onnxruntime, TFLite, PyTorch with an integer zero
        point). ``"before"``: ``round(x / s + z)`` (PyTorch learnable fake quant). They differ at ties
        for an odd ``z`` under RNE (2.5 with z = 1: 3 vs 4) and for a sign change under half-away.
    convention : str
        ``"torchvision"`` (default: multiply by the float32 reciprocal, RNE), ``"onnx"`` (divide, RNE),
        ``"tf"`` (divide, half away: the TFLite reference QUANTIZE kernel).

    Returns
    -------
    ndarray of ``dtype``, same shape as ``x``

    Notes
    -----
    Reference: :func:`refdet.reference.quant.quantize` (exact rationals, with the working dtype's
    roundings of ``x / s``, ``1 / s``, ``x * (1 / s)`` and ``v + z`` written out).

    Examples
    --------
    The range [-1, 3] as uint8 (scale 4 / 255, zero point 64): 0.52 / s = 33.15 rounds to 33, and
    values past the range saturate at 255.

    >>> x = np.array([-1.0, 0.0, 0.5, 0.52, 3.0, 4.0], dtype=np.float32)
    >>> quantize(x, 4 / 255, 64, dtype="uint8", convention="onnx")
    array([  0,  64,  96,  97, 255, 255], dtype=uint8)
    """
    s = _resolve("quantize", convention, rounding=rounding, op=op)
    rnd = _rounder(s["rounding"])
    _checks.check_choice(add_zero_point, "add_zero_point", ("after", "before"))
    dtype = _checks.check_quant_dtype(dtype)
    lo, hi = _qrange(dtype, "symmetric", False, qmin, qmax)   # never narrowed (not symmetric), qmin/qmax checked
    xa = _checks.as_array(x, "x")
    wd = _checks.working_dtype(xa.dtype)   # x / scale promotes x to it (scale is cast to it below)
    _checks.check_finite(xa, "x", allow_inf=True)
    ax = _checks.check_axis(axis, max(xa.ndim, 1))
    length = None if ax is None else (xa.shape[ax] if xa.ndim else 1)  # a 0-d input is one channel
    sc = _checks.as_quant_scale(scale, axis=ax, length=length)   # named `scale` by default
    zp = _checks.as_quant_zero_point(zero_point, qmin=QUANT_DTYPES[dtype][0],   # named `zero_point`
                                     qmax=QUANT_DTYPES[dtype][1], axis=ax, length=length)
    sc = _along(sc.astype(wd), xa.ndim, ax)
    zp = _along(zp, xa.ndim, ax)
    with np.errstate(over="ignore"):
        v = xa / sc if s["op"] == "div" else xa * (wd.type(1) / sc)
    if add_zero_point == "after":
        q = np.clip(rnd(v), -_SATURATE, _SATURATE).astype(np.int64) + zp   # stays beyond [lo, hi] if it was
    else:
        with np.errstate(over="ignore"):
            q = _to_int(rnd(v + zp.astype(wd)), lo, hi)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, *, axis: Optional[int] = None,
               out_dtype: str = "float32") -> np.ndarray:
    """``(q - zero_point) * scale``: ONNX ``DequantizeLinear``, PyTorch ``dequantize``, TFLite DEQUANTIZE.

    Parameters
    ----------
    q : ndarray of int, any shape
    scale : float or ndarray, shape () or (C,)
    zero_point : int or ndarray of int, shape () or (C,)
        (Not range-checked against q's type: any integer works.)
    axis : int, optional
        Channel axis of per-channel parameters.
    out_dtype : {"float32", "float64"}
        Every framework dequantizes into float32: ``float32(q - z) * float32(scale)`` (the difference
        ``q - z`` is exact in int64 and exact in float32 below 2**24). ``"float64"`` gives the exact
        product for a float32 scale.

    Returns
    -------
    ndarray of ``out_dtype``, same shape as ``q``

    Examples
    --------
    >>> dequantize(np.array([0, 64, 96, 255], dtype=np.uint8), np.float32(4 / 255), 64)
    array([-1.0039216,  0.       ,  0.5019608,  2.9960785], dtype=float32)
    """
    qa = _checks.as_int_array(q, "q")
    _checks.check_choice(out_dtype, "out_dtype", ("float32", "float64"))
    ax = _checks.check_axis(axis, max(qa.ndim, 1))
    length = None if ax is None else (qa.shape[ax] if qa.ndim else 1)  # a 0-d input is one channel
    sc = _checks.as_quant_scale(scale, "scale", axis=ax, length=length)
    zp = _checks.as_quant_zero_point(zero_point, "zero_point", qmin=-(2 ** 62), qmax=2 ** 62, axis=ax,
                                     length=length)
    od = np.dtype(out_dtype)
    diff = qa.astype(np.int64) - _along(zp, qa.ndim, ax)
    return diff.astype(od) * _along(sc.astype(od), qa.ndim, ax)


class QuantizedTensor(NamedTuple):
    """q : ndarray of int; scale : float32, shape () or (C,); zero_point : int64, same; axis : int or None."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: Optional[int]


@conventions.documented("quantize_weights")
def quantize_weights(w: ArrayLike, *, axis: Optional[int] = 0, dtype: str = "int8", symmetric: bool = True,
                     convention="torchvision", rounding: Optional[str] = None, op: Optional[str] = None,
                     **qparam_knobs) -> QuantizedTensor:
    """Quantize a weight tensor per channel (or per tensor) from its own range, framework by framework.

    The range of each channel (``w.min``, ``w.max`` over every axis but ``axis``) goes through
    :func:`qparams_from_minmax` and the values through :func:`quantize`, both under ``convention``:

    * ``"torchvision"``: ``/127.5`` (qint8 symmetric keeps [-128, 127]), ``nearbyint(w * (1/s))``;
    * ``"onnx"``: ``/127`` ([-127, 127]), ``rint(w / s)`` (onnxruntime's quantizer);
    * ``"tf"``: ``/127``, ``TfLiteRound(w * (1/s))`` (half away, reciprocal multiply).

    Parameters
    ----------
    w : ndarray of float, e.g. (F, C, KH, KW) conv weights (float32 as the frameworks hold them)
    axis : int or None
        Channel axis: 0 for conv weights (ONNX ``axis=0``, TFLite CONV_2D ``quantized_dimension=0``);
        None for per-tensor.
    dtype, symmetric : see :func:`qparams_from_minmax`
    convention : str
    rounding, op : optional overrides of the value rounding
    **qparam_knobs : narrow_range, scale_dtype, zero_point_rule, tiny_range, qmin, qmax

    Returns
    -------
    QuantizedTensor(q, scale, zero_point, axis)
    """
    s = _resolve("quantize_weights", convention, rounding=rounding, op=op)
    wa = _checks.as_float_array(w, "w")
    ax = _checks.check_axis(axis, max(wa.ndim, 1))
    # qparams_from_minmax widens every range to contain 0: an empty tensor or channel is the range [0, 0]
    if ax is None or wa.ndim == 0:
        lo, hi = (wa.min(), wa.max()) if wa.size else (0.0, 0.0)
        ax = None
    elif wa.size == 0:  # no channels, or channels of no elements
        lo = hi = np.zeros(wa.shape[ax])
    else:
        moved = np.moveaxis(wa, ax, 0).reshape(wa.shape[ax], wa.size // wa.shape[ax])
        lo, hi = moved.min(axis=1), moved.max(axis=1)
    qp = qparams_from_minmax(lo, hi, dtype=dtype, symmetric=symmetric, axis=ax, convention=convention,
                             **qparam_knobs)
    q = quantize(wa, qp.scale, qp.zero_point, dtype=dtype, axis=ax, rounding=s["rounding"], op=s["op"])
    return QuantizedTensor(q, qp.scale, qp.zero_point, ax)


class QuantizedBias(NamedTuple):
    """q : ndarray of int32, shape (F,); scale : ndarray of float32, shape () or (F,) = x_scale * w_scale."""
    q: np.ndarray
    scale: np.ndarray


@conventions.documented("quantize_bias")
def quantize_bias(b: ArrayLike, x_scale: ArrayLike, w_scale: ArrayLike, *, convention="onnx",
                  rounding: Optional[str] = None, op: Optional[str] = None) -> QuantizedBias:
    """Quantize a bias to int32 with scale ``x_scale * w_scale[f]`` and zero point 0.

    ``bias_scale = float32(float32(x_scale) * float32(w_scale))``; then

    * ``"onnx"``: ``rint(float64(b) / float64(bias_scale))`` (onnxruntime's quantizer);
    * ``"tf"``: ``TfLiteRound(float64(b) * (1.0 / float64(bias_scale)))`` (half away, reciprocal);

    clipped to int32. The default is ``"onnx"``: PyTorch keeps conv biases in float, so there is no
    PyTorch rule to reproduce.

    Parameters
    ----------
    b : ndarray of float, shape (F,)
    x_scale : float
    w_scale : float or ndarray, shape (F,)

    Returns
    -------
    QuantizedBias(q, scale)
    """
    s = _resolve("quantize_bias", convention, rounding=rounding, op=op)
    rnd = _rounder(s["rounding"])
    ba = _checks.as_float_array(b, "b", ndim=1)
    xs = _checks.as_quant_scale(x_scale, "x_scale").astype(np.float32)
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=ba.shape[0]).astype(np.float32)
    bs = np.asarray(xs * ws)   # float32 * float32
    s64 = np.asarray(bs, dtype=np.float64)
    v = ba / s64 if s["op"] == "div" else ba * (1.0 / s64)   # in double (float64 s64), the reciprocal too
    q = np.clip(rnd(v), _INT32_MIN, _INT32_MAX).astype(np.int32)
    return QuantizedBias(q, bs)


