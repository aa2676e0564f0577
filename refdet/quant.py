"""Affine quantization, observers, fake quantization and integer kernels, framework by framework.

The affine map (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference")::

    real = (q - z) * s                       dequantize
    q    = clamp(round(x / s) + z, qmin, qmax)   quantize

Every framework agrees on that *form*; "bit-exact" only means something once four details are chosen,
and refdet makes each one an explicit keyword:

1. **The rounding mode.** Round half to even (RNE: ONNX ``QuantizeLinear``, onnxruntime, PyTorch,
   ``np.rint``), half away from zero (TFLite reference kernels, ``std::round``), half up
   (``floor(v + 0.5)``: TF ``FakeQuantWithMinMaxVars``, TFLite single-rounding builds). The helpers
   :func:`round_half_even`, :func:`round_half_away` and :func:`round_half_up` are exact for every
   float (``floor(v + 0.5)`` is *not*: in float32 ``0.49999997 + 0.5`` rounds to 1).
2. **Division or multiplication by a reciprocal.** ONNX/onnxruntime and the TFLite reference kernel
   divide ``x / s`` in float32; PyTorch multiplies ``x * (1.0f / s)``. They differ by one step in rare
   cases (``op="div"`` / ``op="mul_inv"``).
3. **When the zero point is added.** ONNX, onnxruntime, TFLite and PyTorch with an integer zero
   point round first and add ``z`` after (``add_zero_point="after"``). PyTorch's learnable fake quant
   backward rounds ``z + x / s`` (``"before"``). Only half-up rounding commutes with adding an integer:
   under RNE ``rint(2.5) + 1 = 3`` but ``rint(3.5) = 4``; under half-away ``round(-0.5) + 1 = 0`` but
   ``round(0.5) = 1``.
4. **Where the range comes from** (:func:`qparams_from_minmax`): ``/127`` (onnxruntime and TFLite
   symmetric int8 use [-127, 127]) vs ``/127.5`` (PyTorch qint8 symmetric keeps [-128, 127]); the scale
   computed in float64 then stored as float32 (onnxruntime) or in float32 (PyTorch, TF); the zero point
   rounded half-even (onnxruntime, PyTorch) or half-away (TF).

Integer requantization (:func:`requantize`) has its own modes: TFLite's gemmlowp double rounding
(``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``, bit-exact with the TFLite
*reference* kernels ``BUILTIN_REF``; XNNPACK and the optimized ruy kernels differ by 1 LSB by design),
TFLite's single rounding build, onnxruntime's float32 multiply then RNE (x86 MLAS), and onnx.reference's
float64 multiply then ``np.round`` (which adds the output zero point *before* rounding). They agree
except near ties, and the tests construct such ties.

Conventions: ``convention="torchvision"`` (also ``"detectron2"``, ``"mmdet"``, alias ``"torch"``) means
PyTorch's quantization semantics; ``"onnx"`` (alias ``"onnxruntime"``) means the ONNX operators and
onnxruntime's quantization tooling; ``"tf"`` (alias ``"tflite"``) means TFLite's reference kernels and
the TF fake-quant ops. ``refdet.conventions.describe("qparams_from_minmax")`` prints the table.

A quantized head is built from these pieces: :func:`quantize_weights` (per-channel int8 weights),
:func:`quantize_bias` (int32 biases at ``x_scale * w_scale``), an observer or :func:`qparams_from_minmax`
for each activation, then :func:`qlinear_conv` (ONNX, NCHW) or :func:`tflite_conv2d_int8` (TFLite, NHWC)
per layer, the ReLU as the integer clamp ``[zero_point, qmax]`` (:func:`tflite_activation_range`), and
:func:`dequantize` before a float sigmoid.

Everything here needs NumPy only; integer arithmetic is exact (int64, or float BLAS only where every
partial sum is provably an integer below 2**24 / 2**53).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

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
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "PercentileObserver",
    "HistogramObserver",
    "MSEObserver",
    "FakeQuantCache",
    "FakeQuantGrads",
    "fake_quant_forward",
    "fake_quant_backward",
    "QuantizedMultiplier",
    "quantize_multiplier",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "requantize",
    "conv2d_int",
    "qlinear_conv",
    "tflite_activation_range",
    "tflite_conv2d_int8",
]

#: quantized type name -> (qmin, qmax)
QUANT_DTYPES = dict(_checks.QUANT_RANGES)

_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1

# Framework names users reach for, mapped onto refdet's profile names.
_ALIASES = {"torch": "torchvision", "pytorch": "torchvision", "onnxruntime": "onnx", "ort": "onnx",
            "tflite": "tf", "tensorflow": "tf"}


def _resolve(op_name, convention, **overrides):
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
        "narrow_range": "qmin + 1 (int8 [-127, 127]): True, False, or 'symmetric' = only for symmetric signed types",
        "scale_dtype": "precision of (rmax - rmin) / (qmax - qmin); the stored scale is float32 either way",
        "zero_point_rule": "'onnx' rint(qmin - rmin/s), symmetric rint((qmin+qmax)/2); 'torch' qmin - rint(rmin/s) "
                           "clamped, symmetric 0 (signed) or 128 (uint8); 'tf' std::round(clamp(qmin - rmin/s))",
        "tiny_range": "'one': scale < float32 tiny -> (1.0, 0) (onnxruntime); 'eps': scale floored at float32 "
                      "eps (PyTorch)",
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
    knobs={"rounding": "'half_even' (RNE), 'half_away' (std::round) or 'half_up' (floor(v + 0.5))",
           "op": "'div': x / scale; 'mul_inv': x * (1 / scale), the reciprocal rounded to the working dtype"},
    doc="PyTorch quantize_per_tensor / fake_quantize: nearbyint(x * (1.0f/scale)) (fbgemm::Quantize, "
        "QuantizedOpKernels.cpp). ONNX QuantizeLinear: rint(x / y_scale) (onnx/reference/ops/op_quantize_linear.py; "
        "onnxruntime verified on 2M values). TFLite reference QUANTIZE: TfLiteRound(x / scale) = half away "
        "(reference/quantize.h). TFLite's optimized kernel multiplies by 1/scale and rounds to even; XNNPACK "
        "divides and rounds to even: pass rounding= and op= explicitly for those.",
)

conventions.register(
    "fake_quant_forward",
    {
        "torchvision": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "detectron2": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "mmdet": {"rounding": "half_even", "op": "mul_inv", "mask": "torch"},
        "onnx": {"rounding": "half_even", "op": "div", "mask": "torch"},
        "tf": {"rounding": "half_up", "op": "mul_inv", "mask": "tf"},
    },
    knobs={"rounding": "rounding mode of x / scale",
           "op": "'div' or 'mul_inv' (multiply by the reciprocal)",
           "mask": "'torch': gradient passes where the rounded, unclamped q is in [qmin, qmax]; "
                   "'tf': where x is in [(qmin - z) s, (qmax - z) s]"},
    doc="PyTorch fake_quantize_per_tensor_affine_cachemask (FakeQuantPerTensorAffine.cpp, "
        "QuantizedOpKernels.cpp): q = z + nearbyint(x * inv_scale), mask on q. TF FakeQuantWithMinMaxVars "
        "(fake_quant_ops_functor.h): floor(v + 0.5) with v = (clamp(x) - nudged_min) * inv_scale, gradient mask "
        "nudged_min <= x <= nudged_max (TF's own float order of operations is not reproduced bit for bit). "
        "ONNX has no fake-quant op: its forward is QuantizeLinear then DequantizeLinear (division, RNE) and "
        "refdet uses PyTorch's mask for it.",
)


# ---------------------------------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------------------------------

def round_half_even(v):
    """Round to the nearest integer, ties to even (``np.rint``, ``std::nearbyint``, ONNX, PyTorch).

    Parameters
    ----------
    v : ndarray of float

    Returns
    -------
    ndarray, same shape and float dtype. ``round_half_even(-0.5)`` is ``-0.0``: cast to int before
    comparing signs.
    """
    return np.rint(v)


def round_half_away(v):
    """Round to the nearest integer, ties away from zero (``std::round``, ``TfLiteRound``, NNEF).

    Computed as ``trunc(v) + sign(v) * (|v - trunc(v)| >= 0.5)``, which is exact for every float:
    ``v - trunc(v)`` is exact, whereas ``floor(|v| + 0.5)`` misrounds the largest float below 0.5.
    """
    v = np.asarray(v)
    t = np.trunc(v)
    frac = v - t  # exact
    return t + np.where(np.abs(frac) >= 0.5, np.sign(v), 0).astype(t.dtype, copy=False)


def round_half_up(v):
    """Round to the nearest integer, ties toward +inf (``floor(v + 0.5)`` in exact arithmetic).

    TF's ``FakeQuantWithMinMaxVars`` and TFLite's single-rounding requantization round this way. It is
    the only one of the three modes that commutes with adding an integer zero point.
    """
    v = np.asarray(v)
    f = np.floor(v)
    return f + (v - f >= 0.5).astype(f.dtype)  # v - floor(v) is exact


_ROUNDERS = {"half_even": round_half_even, "half_away": round_half_away, "half_up": round_half_up}


def _rounder(rounding):
    _checks.check_choice(rounding, "rounding", tuple(_ROUNDERS))
    return _ROUNDERS[rounding]


# ---------------------------------------------------------------------------------------------------
# Ranges and qparams
# ---------------------------------------------------------------------------------------------------

class QParams(NamedTuple):
    """Quantization parameters.

    scale : ndarray of float32, shape () or (C,)
    zero_point : ndarray of int64, same shape
    """
    scale: np.ndarray
    zero_point: np.ndarray


def _qrange(dtype, narrow_range, symmetric, qmin, qmax):
    """The (qmin, qmax) used: the type's range, narrowed and/or overridden."""
    lo, hi = QUANT_DTYPES[dtype]
    narrow = narrow_range
    if narrow == "symmetric":
        narrow = bool(symmetric) and lo < 0
    elif not isinstance(narrow, (bool, np.bool_)):
        raise ValueError(f"`narrow_range` must be True, False or 'symmetric'; got {narrow_range!r}")
    if narrow:
        lo += 1
    if qmin is not None:
        lo = _checks.check_int(qmin, "qmin", low=QUANT_DTYPES[dtype][0], high=QUANT_DTYPES[dtype][1])
    if qmax is not None:
        hi = _checks.check_int(qmax, "qmax", low=QUANT_DTYPES[dtype][0], high=QUANT_DTYPES[dtype][1])
    if not lo <= 0 <= hi:
        raise ValueError(f"the quantized range must contain 0 (so that 0.0 is exact); got [{lo}, {hi}]")
    if lo >= hi:
        raise ValueError(f"`qmin` must be < `qmax`; got [{lo}, {hi}]")
    return lo, hi


def qparams_from_minmax(rmin, rmax, *, dtype="int8", symmetric=False, axis=None, convention="torchvision",
                        narrow_range=None, scale_dtype=None, zero_point_rule=None, tiny_range=None,
                        qmin=None, qmax=None):
    """Scale and zero point that map the real range ``[rmin, rmax]`` onto a quantized type.

    The range is always widened to contain 0 first (``rmin = min(rmin, 0)``, ``rmax = max(rmax, 0)``)
    so that 0.0 (zero padding, ReLU zeros) is exactly representable. Then, with ``[qmin, qmax]`` the
    type's range (narrowed by one at the bottom under ``narrow_range``)::

        asymmetric: s = (rmax - rmin) / (qmax - qmin)        z = round(qmin - rmin / s)
        symmetric:  s = max(|rmin|, rmax) / ((qmax - qmin) / 2)   z = the middle of [qmin, qmax]

    ============= ============ =============== ================================= ==========================
    convention    symmetric    scale computed  zero point                        all-zero range
    ============= ============ =============== ================================= ==========================
    torchvision   [-128, 127]: in float32      ``qmin - rint(rmin/s)``, clamped;  scale floored at float32
    (torch)       /127.5                       symmetric: 0 (signed), 128 uint8   eps (1.19e-7)
    onnx          [-127, 127]: float64, stored ``rint(qmin - rmin/s)``;           (1.0, 0)
    (onnxruntime) /127         as float32      symmetric ``rint((qmin+qmax)/2)``
    tf (tflite)   [-127, 127]: in float32      ``std::round(clamp(qmin - rmin/s))``, (1.0, 0)
                  /127                         half away from zero
    ============= ============ =============== ================================= ==========================

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
    s = _resolve("qparams_from_minmax", convention, narrow_range=narrow_range, scale_dtype=scale_dtype,
                 zero_point_rule=zero_point_rule, tiny_range=tiny_range)
    dtype = _checks.check_quant_dtype(dtype)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"`symmetric` must be a bool; got {symmetric!r}")
    _checks.check_choice(s["scale_dtype"], "scale_dtype", ("float32", "float64"))
    _checks.check_choice(s["zero_point_rule"], "zero_point_rule", ("torch", "onnx", "tf"))
    _checks.check_choice(s["tiny_range"], "tiny_range", ("eps", "one"))
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
    scale = np.asarray(scale, dtype=wd)

    tiny = np.float32(np.finfo(np.float32).tiny)
    eps = np.float32(np.finfo(np.float32).eps)
    degenerate = np.zeros(scale.shape, dtype=bool)
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
        zp_from_min = wd(lo) - a32.astype(wd) / scale
        zp = round_half_away(np.clip(zp_from_min, wd(lo), wd(hi)))
        zp = np.where(degenerate, 0.0, zp)
    zp = np.clip(zp.astype(np.float64), lo, hi).astype(np.int64)  # 0 is in [lo, hi]: a no-op but for float noise
    return QParams(np.asarray(scale.astype(np.float32)), np.asarray(zp))


# ---------------------------------------------------------------------------------------------------
# quantize / dequantize
# ---------------------------------------------------------------------------------------------------

def _along(p, ndim, axis):
    """Reshape a 1-D per-channel parameter to broadcast along ``axis`` of an ``ndim``-D array."""
    if p.ndim == 0 or axis is None:
        return p
    shape = [1] * ndim
    shape[axis] = p.shape[0]
    return p.reshape(shape)


def _to_int(r, lo, hi):
    """Float integers -> int64 without overflow (values beyond [lo, hi] only need to stay beyond)."""
    return np.clip(r, lo - 1, hi + 1).astype(np.int64)


def quantize(x, scale, zero_point, *, dtype="int8", axis=None, rounding=None, op=None,
             add_zero_point="after", convention="torchvision", qmin=None, qmax=None):
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
    """
    s = _resolve("quantize", convention, rounding=rounding, op=op)
    rnd = _rounder(s["rounding"])
    _checks.check_choice(s["op"], "op", ("div", "mul_inv"))
    _checks.check_choice(add_zero_point, "add_zero_point", ("after", "before"))
    dtype = _checks.check_quant_dtype(dtype)
    lo, hi = _qrange(dtype, False, False, qmin, qmax) if (qmin is not None or qmax is not None) \
        else QUANT_DTYPES[dtype]
    xa = _checks.as_array(x, "x")
    wd = _checks.working_dtype(xa.dtype)
    xa = xa.astype(wd, copy=False)
    _checks.check_finite(xa, "x", allow_inf=True)
    ax = _checks.check_axis(axis, max(xa.ndim, 1))
    length = xa.shape[ax] if (ax is not None and xa.ndim) else None
    sc = _checks.as_quant_scale(scale, "scale", axis=ax, length=length)
    zp = _checks.as_quant_zero_point(zero_point, "zero_point", qmin=QUANT_DTYPES[dtype][0],
                                     qmax=QUANT_DTYPES[dtype][1], axis=ax, length=length)
    sc = _along(sc.astype(wd), xa.ndim, ax)
    zp = _along(zp, xa.ndim, ax)
    with np.errstate(over="ignore"):
        v = xa / sc if s["op"] == "div" else xa * (wd.type(1) / sc)
    if add_zero_point == "after":
        q = _to_int(rnd(v), lo - zp.max(initial=0) - 1, hi - zp.min(initial=0) + 1) + zp
    else:
        with np.errstate(over="ignore"):
            q = _to_int(rnd(v + zp.astype(wd)), lo, hi)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q, scale, zero_point, *, axis=None, out_dtype="float32"):
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
    """
    qa = _checks.as_int_array(q, "q")
    _checks.check_choice(out_dtype, "out_dtype", ("float32", "float64"))
    ax = _checks.check_axis(axis, max(qa.ndim, 1))
    length = qa.shape[ax] if (ax is not None and qa.ndim) else None
    sc = _checks.as_quant_scale(scale, "scale", axis=ax, length=length)
    zp = _checks.as_quant_zero_point(zero_point, "zero_point", qmin=-(2 ** 62), qmax=2 ** 62, axis=ax,
                                     length=length)
    od = np.dtype(out_dtype)
    diff = qa.astype(np.int64) - _along(zp, qa.ndim, ax)
    return diff.astype(od) * _along(sc.astype(od), qa.ndim, ax)


conventions.register(
    "quantize_weights",
    {
        "torchvision": {"rounding": "half_even", "op": "mul_inv"},
        "detectron2": {"rounding": "half_even", "op": "mul_inv"},
        "mmdet": {"rounding": "half_even", "op": "mul_inv"},
        "onnx": {"rounding": "half_even", "op": "div"},
        "tf": {"rounding": "half_away", "op": "mul_inv"},
    },
    knobs={"rounding": "rounding of w / scale", "op": "'div' or 'mul_inv' (multiply by the float32 reciprocal)"},
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
    knobs={"rounding": "rounding of b / (x_scale * w_scale)",
           "op": "'div': float64(b) / float64(bias_scale); 'mul_inv': float64(b) * (1.0 / float64(bias_scale))"},
    doc="onnxruntime base_quantizer.quantize_bias_static_impl: bias_scale = input_scale * weight_scale (float32), "
        "(float64(b) / float64(bias_scale)).round(), clipped to int32. TFLite SymmetricPerChannelBiasQuantize: "
        "TfLiteRound(b * (1.0 / scale)) in double (read from the source). PyTorch keeps conv biases in float "
        "(fbgemm adds them after requantization), so there is no torchvision profile.",
)


class QuantizedTensor(NamedTuple):
    """q : ndarray of int; scale : float32, shape () or (C,); zero_point : int64, same; axis : int or None."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: Optional[int]


def quantize_weights(w, *, axis=0, dtype="int8", symmetric=True, convention="torchvision", rounding=None, op=None,
                     **qparam_knobs):
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
    if ax is None or wa.ndim == 0:
        lo = wa.min(initial=0.0) if wa.size else 0.0
        hi = wa.max(initial=0.0) if wa.size else 0.0
        ax = None
    else:
        moved = np.moveaxis(wa, ax, 0).reshape(wa.shape[ax], -1)
        if moved.shape[1] == 0:
            lo = hi = np.zeros(wa.shape[ax], wa.dtype)
        else:
            lo, hi = moved.min(axis=1), moved.max(axis=1)
    qp = qparams_from_minmax(lo, hi, dtype=dtype, symmetric=symmetric, axis=ax, convention=convention,
                             **qparam_knobs)
    q = quantize(wa, qp.scale, qp.zero_point, dtype=dtype, axis=ax, rounding=s["rounding"], op=s["op"],
                 convention=convention)
    return QuantizedTensor(q, qp.scale, qp.zero_point, ax)


class QuantizedBias(NamedTuple):
    """q : ndarray of int32, shape (F,); scale : ndarray of float32, shape () or (F,) = x_scale * w_scale."""
    q: np.ndarray
    scale: np.ndarray


def quantize_bias(b, x_scale, w_scale, *, convention="onnx", rounding=None, op=None):
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
    _checks.check_choice(s["op"], "op", ("div", "mul_inv"))
    ba = _checks.as_float_array(b, "b", ndim=1)
    xs = _checks.as_quant_scale(x_scale, "x_scale").astype(np.float32)
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=ba.shape[0]).astype(np.float32)
    bs = np.asarray(xs * ws, dtype=np.float32)
    b64, s64 = ba.astype(np.float64), bs.astype(np.float64)
    v = b64 / s64 if s["op"] == "div" else b64 * (1.0 / s64)
    q = np.clip(rnd(v), _INT32_MIN, _INT32_MAX).astype(np.int32)
    return QuantizedBias(q, bs)


# ---------------------------------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------------------------------

class _Observer:
    """Shared plumbing: conventions, qparams, validation of each batch."""

    def __init__(self, *, dtype="int8", symmetric=False, convention="torchvision", **qkw):
        self.dtype = _checks.check_quant_dtype(dtype)
        if not isinstance(symmetric, (bool, np.bool_)):
            raise TypeError(f"`symmetric` must be a bool; got {symmetric!r}")
        self.symmetric = bool(symmetric)
        self.convention = convention
        self._qkw = qkw
        # validate the convention and the overrides now, not at the first qparams() call
        qparams_from_minmax(0.0, 1.0, dtype=self.dtype, symmetric=self.symmetric, convention=convention, **qkw)
        self.min_val = None
        self.max_val = None

    def _batch(self, x):
        xa = _checks.as_array(x, "x")
        xa = xa.astype(_checks.working_dtype(xa.dtype), copy=False)
        _checks.check_finite(xa, "x")
        return xa

    def _range(self):
        if self.min_val is None:
            raise ValueError(f"{type(self).__name__}.qparams(): no data observed yet (call update(x) first)")
        return self.min_val, self.max_val

    def _qrange(self):
        """The (qmin, qmax) the observer's qparams use."""
        narrow = _resolve("qparams_from_minmax", self.convention,
                          narrow_range=self._qkw.get("narrow_range"))["narrow_range"]
        return _qrange(self.dtype, narrow, self.symmetric, self._qkw.get("qmin"), self._qkw.get("qmax"))

    def qparams(self):
        """:class:`QParams` for the observed range under the observer's convention."""
        lo, hi = self._range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)

    def __repr__(self):
        return (f"{type(self).__name__}(dtype={self.dtype!r}, symmetric={self.symmetric}, "
                f"convention={self.convention!r}, min_val={self.min_val}, max_val={self.max_val})")


class MinMaxObserver(_Observer):
    """Running minimum and maximum over every batch seen (PyTorch ``MinMaxObserver``, onnxruntime
    ``MinMaxCalibrater``), then :func:`qparams_from_minmax`.

    Parameters
    ----------
    dtype, symmetric, convention, **knobs
        As in :func:`qparams_from_minmax` (knobs: narrow_range, scale_dtype, zero_point_rule,
        tiny_range, qmin, qmax).

    Methods
    -------
    update(x) -> self
        ``x`` : ndarray of float, any shape; NaN/inf rejected; empty batches are ignored.
    qparams() -> QParams
    """

    def update(self, x):
        xa = self._batch(x)
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self


class MovingAverageMinMaxObserver(_Observer):
    """Exponential moving average of each batch's min and max (PyTorch ``MovingAverageMinMaxObserver``).

    The first batch sets the range; after that ``min <- min + c * (batch_min - min)`` and the same for
    max, with ``c = averaging_constant`` (0.01 in PyTorch and onnxruntime). The state is kept in the
    first batch's working dtype (float32 for float32 batches, as PyTorch's buffers).
    """

    def __init__(self, averaging_constant=0.01, **kw):
        self.averaging_constant = _checks.check_probability(averaging_constant, "averaging_constant")
        super().__init__(**kw)

    def update(self, x):
        xa = self._batch(x)
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = xa.dtype.type(self.averaging_constant)
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        return self


class PerChannelMinMaxObserver(_Observer):
    """Running min and max per channel along ``ch_axis`` (PyTorch ``PerChannelMinMaxObserver``).

    Weights are usually observed with ``symmetric=True`` and ``ch_axis=0`` (conv weights
    ``(F, C, KH, KW)``; ONNX ``axis=0``; TFLite CONV_2D ``quantized_dimension=0``).
    ``qparams()`` returns (C,)-shaped scale and zero point.
    """

    def __init__(self, ch_axis=0, **kw):
        self.ch_axis = _checks.check_int(ch_axis, "ch_axis")
        super().__init__(**kw)

    def update(self, x):
        xa = self._batch(x)
        ax = _checks.check_axis(self.ch_axis, max(xa.ndim, 1), "ch_axis")
        if xa.ndim == 0:
            raise ValueError("`x` must have a channel axis; got a scalar")
        moved = np.moveaxis(xa, ax, 0).reshape(xa.shape[ax], -1)
        if moved.shape[1] == 0:
            return self
        if self.min_val is not None and self.min_val.shape[0] != moved.shape[0]:
            raise ValueError(f"`x` has {moved.shape[0]} channels along axis {ax}; earlier batches had "
                             f"{self.min_val.shape[0]}")
        lo, hi = moved.min(axis=1), moved.max(axis=1)
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else np.maximum(self.max_val, hi)
        return self

    def qparams(self):
        lo, hi = self._range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric, axis=self.ch_axis,
                                   convention=self.convention, **self._qkw)


class PercentileObserver(_Observer):
    """Histogram percentile calibration with onnxruntime's semantics (``calibrate.py``,
    ``HistogramCollector`` + ``compute_percentile``).

    * ``symmetric=True``: a histogram of ``|x|`` with ``num_bins`` bins over ``[min|x|, max|x|]``
      (extended by whole bins when a later batch exceeds it); the threshold is the bin edge where the
      CDF first reaches ``percentile / 100`` (``np.searchsorted``, left); range ``[-t, t]``.
    * ``symmetric=False``: a histogram of ``x`` over ``[-m, m]``, ``m = max|x|`` (re-binned
      on growth by whole old-width bins on both sides); ``(100 - percentile) / 200`` is cut from each
      side.

    Either threshold is then clipped to the observed min and max. The default ``convention`` is
    ``"onnx"``, because this is onnxruntime's calibrator (PyTorch has no percentile observer).
    """

    def __init__(self, percentile=99.999, num_bins=2048, *, convention="onnx", **kw):
        self.percentile = _checks.check_probability(percentile, "percentile", 0.0, 100.0)
        self.num_bins = _checks.check_int(num_bins, "num_bins", low=1)
        super().__init__(convention=convention, **kw)
        self.hist = None
        self.edges = None
        self.threshold = None

    def update(self, x):
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.symmetric:
            ab = np.abs(xa)
            if self.hist is None:
                hist, edges = np.histogram(ab, bins=self.num_bins)
                self.hist, self.edges = hist, edges.astype(ab.dtype)
            else:
                edges = self.edges
                amax = ab.max()
                if amax > edges[-1]:
                    width = edges[1] - edges[0]
                    # np.arange may add a bin past the one holding amax, exactly as onnxruntime does
                    edges = np.hstack((edges, np.arange(edges[-1] + width, amax + width, width)))
                hist, edges = np.histogram(ab, bins=edges)
                hist[: len(self.hist)] += self.hist
                self.hist, self.edges = hist, edges.astype(ab.dtype)
        else:
            t = np.asarray(max(abs(lo), abs(hi)), dtype=xa.dtype)
            if self.hist is None:
                self.hist, self.edges = np.histogram(xa, self.num_bins, range=(-t, t))
                self.threshold = t
            elif t <= self.threshold:
                h, _ = np.histogram(xa, len(self.hist), range=(-self.threshold, self.threshold))
                self.hist = h + self.hist
            elif self.threshold == 0:
                h, e = np.histogram(xa, len(self.hist), range=(-t, t))
                self.hist, self.edges, self.threshold = h + self.hist, e, t
            else:
                nb = len(self.hist)
                stride = 2 * self.threshold / nb
                half = int((t - self.threshold) // stride + 1)
                new_t = half * stride + self.threshold
                h, e = np.histogram(xa, nb + 2 * half, range=(-new_t, new_t))
                h[half: nb + half] += self.hist
                self.hist, self.edges, self.threshold = h, e, new_t
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self

    def thresholds(self):
        """(lower, upper) clipping range chosen by the percentile rule (before widening to contain 0)."""
        self._range()
        cdf = np.cumsum(self.hist / self.hist.sum())
        if self.symmetric:
            i = np.searchsorted(cdf, self.percentile / 100.0)
            lo, hi = -self.edges[i], self.edges[i]
        else:
            cut = (100.0 - self.percentile) / 200.0
            lo, hi = self.edges[np.searchsorted(cdf, cut)], self.edges[np.searchsorted(cdf, 1.0 - cut)]
        lo = self.min_val if lo < self.min_val else lo
        hi = self.max_val if hi > self.max_val else hi
        return lo, hi

    def qparams(self):
        lo, hi = self.thresholds()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)


def _histc(x, bins, lo, hi):
    """``torch.histc``: bins of equal width over [lo, hi]; x == hi goes to the last bin; outside dropped.

    The bin index is ``int((x - lo) / (hi - lo) * bins)`` in x's dtype (ATen HistogramKernel.cpp,
    linear interpolation).
    """
    if hi == lo:  # torch widens a zero-width range by 1 on each side
        lo, hi = lo - 1, hi + 1
    inside = (x >= lo) & (x <= hi)
    v = x[inside]
    t = x.dtype.type
    pos = ((v - t(lo)) / (t(hi) - t(lo)) * t(bins)).astype(np.int64)
    pos = np.minimum(pos, bins - 1)
    return np.bincount(pos, minlength=bins).astype(np.float64)


class HistogramObserver(_Observer):
    """PyTorch's ``HistogramObserver``: a ``bins``-bin histogram and an L2 search over its ends.

    ``update`` builds a ``torch.histc``-style histogram over the running [min, max]; when the range
    grows, the old histogram is split into ``upsample_rate`` sub-bins whose centres are re-assigned to the
    new bins (``_upscale_histogram``). ``qparams`` runs ``_non_linear_param_search``: it moves the left or
    the right end inward, one 1e-5 CDF step at a time (the side that would discard more bins goes
    first), and stops as soon as the L2 error of quantizing the histogram mass into
    ``2**bits`` destination bins (uniform density inside each source bin,
    ``norm = density * (end**3 - begin**3) / 3``) grows. The chosen [min, max] then goes through
    :func:`qparams_from_minmax`.

    PyTorch keeps the histogram in float32 and refdet in float64, so a near-equal pair of errors can
    break the other way: the chosen range may differ by a bin in rare cases (the tests compare within
    one bin width).
    """

    def __init__(self, bins=2048, upsample_rate=16, **kw):
        self.bins = _checks.check_int(bins, "bins", low=1)
        self.upsample_rate = _checks.check_int(upsample_rate, "upsample_rate", low=1)
        super().__init__(**kw)
        self.histogram = None

    def update(self, x):
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.histogram is None:
            self.min_val, self.max_val = lo, hi
            self.histogram = _histc(xa, self.bins, lo, hi)
            return self
        new_lo, new_hi = min(self.min_val, lo), max(self.max_val, hi)
        upd = _histc(xa, self.bins, new_lo, new_hi)
        if new_lo == self.min_val and new_hi == self.max_val:
            self.histogram = self.histogram + upd
            return self
        if self.min_val == self.max_val:
            old = _histc(np.asarray([self.min_val]), self.bins, new_lo, new_hi) * self.histogram.sum()
        else:
            old = self._upscale(new_lo, new_hi)
        self.histogram = upd + old
        self.min_val, self.max_val = new_lo, new_hi
        return self

    def _upscale(self, new_lo, new_hi):
        r = self.upsample_rate
        h = np.repeat(self.histogram, r) / r
        lo, hi = float(self.min_val), float(self.max_val)
        size = (hi - lo) / (self.bins * r)
        mids = np.linspace(lo, hi, self.bins * r + 1)[:-1] + 0.5 * size
        bounds = np.linspace(float(new_lo), float(new_hi), self.bins + 1)
        idx = np.searchsorted(bounds, mids, side="right") - 1  # torch.bucketize(right=True) - 1
        idx = np.clip(idx, 0, self.bins - 1)
        return np.bincount(idx, weights=h, minlength=self.bins)

    def _quant_error(self, start, end, dst_nbins):
        """L2 error of quantizing bins [start, end] into ``dst_nbins`` equal bins (uniform density)."""
        bw = (float(self.max_val) - float(self.min_val)) / self.bins
        dw = bw * (end - start + 1) / dst_nbins
        if dw == 0.0:
            return 0.0
        src = np.arange(self.bins)
        begin = (src - start) * bw
        endv = begin + bw
        db = np.clip(np.floor(begin / dw), 0, dst_nbins - 1)
        de = np.clip(np.floor(endv / dw), 0, dst_nbins - 1)
        density = self.histogram / bw

        def norm(b, e):  # integral of x**2 over [b, e], times the density
            return density * (e ** 3 - b ** 3) / 3

        total = norm(begin - (db + 0.5) * dw, np.full(self.bins, dw / 2))
        total = total + (de - db - 1) * norm(-dw / 2, dw / 2)
        total = total + norm(-dw / 2, endv - (de * dw + dw / 2))
        return float(total.sum())

    def search_range(self):
        """The (min, max) chosen by the L2 search (PyTorch ``_non_linear_param_search``)."""
        self._range()
        dst_nbins = 2 ** int(np.log2(QUANT_DTYPES[self.dtype][1] - QUANT_DTYPES[self.dtype][0] + 1))
        bw = (self.max_val - self.min_val) / self.bins
        total = self.histogram.sum()
        csum = np.cumsum(self.histogram)
        step, alpha, beta = 1e-5, 0.0, 1.0
        start, end = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            na, nb = alpha + step, beta - step
            # torch: `while l < end and cSum[l] < na*total: l += 1` (cSum is non-decreasing)
            l_ = min(start + int(np.searchsorted(csum[start:end], na * total, side="left")), end)
            # torch: `while r > start and cSum[r] > nb*total: r -= 1`
            r_ = start + int(np.searchsorted(csum[start + 1:end + 1], nb * total, side="right"))
            ns, ne = start, end
            if (l_ - start) > (end - r_):
                ns = l_
                alpha = na
            else:
                ne = r_
                beta = nb
            if ns == start and ne == end:
                continue
            err = self._quant_error(ns, ne, dst_nbins)
            if err > norm_min:
                break
            norm_min = err
            start, end = ns, ne
        return self.min_val + bw * start, self.min_val + bw * (end + 1)

    def qparams(self):
        lo, hi = self.search_range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)


class MSEObserver(_Observer):
    """Grid search for the clipping range that minimises the squared fake-quant error (refdet's own
    definition; PyTorch core has no MSE observer).

    Candidate ranges shrink the observed one (widened to contain 0): ``[k/K * min, k/K * max]`` for
    ``k = 1..K`` (``K = num_grid``, 100); with ``symmetric=True`` ``[-a_k, a_k]``, ``a_k = k/K * max|x|``. Each is turned into qparams with :func:`qparams_from_minmax` and scored by
    ``sum((x - fake_quant(x))**2)`` over every value seen; the lowest error wins and ties go to the
    **larger** range (larger ``k``). The observer keeps every value it has seen (float64), so its
    memory grows with the calibration set.
    """

    def __init__(self, num_grid=100, **kw):
        self.num_grid = _checks.check_int(num_grid, "num_grid", low=1)
        super().__init__(**kw)
        self._data = []

    def update(self, x):
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        self._data.append(xa.astype(np.float64))
        lo, hi = xa.min(), xa.max()
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self

    def _candidates(self):
        """(K,) lower and upper ends of the candidate ranges k = 1..K."""
        lo, hi = self._range()
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if self.symmetric:  # SPEC: alpha_k = absmax * k / K, range [-alpha_k, alpha_k]
            lo, hi = -max(-lo, hi), max(-lo, hi)
        f = np.arange(1, self.num_grid + 1, dtype=np.float64) / self.num_grid
        return lo * f, hi * f

    def errors(self):
        """(K,) squared fake-quant errors of the candidate ranges k = 1..K."""
        self._range()
        data = np.concatenate(self._data)
        K = self.num_grid
        los, his = self._candidates()
        qp = qparams_from_minmax(los, his, dtype=self.dtype, symmetric=self.symmetric, axis=0,
                                 convention=self.convention, **self._qkw)
        qlo, qhi = self._qrange()
        s = qp.scale.astype(np.float64)[:, None]
        z = qp.zero_point.astype(np.float64)[:, None]
        out = np.empty(K)
        for i0 in range(0, K, 8):  # chunks of candidates bound the (8, N) temporaries
            sl = slice(i0, i0 + 8)
            q = np.clip(np.rint(data[None, :] / s[sl]) + z[sl], qlo, qhi)
            out[sl] = (((q - z[sl]) * s[sl] - data[None, :]) ** 2).sum(axis=1)
        return out

    def search_range(self):
        """The chosen (min, max): lowest error, ties to the larger range."""
        err = np.asarray(self.errors())
        k = len(err) - 1 - int(np.argmin(err[::-1]))  # the last (largest) index among the minima
        los, his = self._candidates()
        return float(los[k]), float(his[k])

    def qparams(self):
        lo, hi = self.search_range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)


# ---------------------------------------------------------------------------------------------------
# Fake quantization (QAT)
# ---------------------------------------------------------------------------------------------------

class FakeQuantCache(NamedTuple):
    """What :func:`fake_quant_backward` needs.

    x : ndarray, the input (working dtype)
    scale : ndarray, shape () or broadcastable to x
    zero_point : ndarray of float, the integer zero point used by the forward (broadcastable)
    mask : ndarray of bool, shape of x: where the gradient passes
    learnable : bool
    grad_factor : float
    qmin, qmax : int
    xq_back : ndarray or None: the learnable backward's ``nearbyint(z_b + x / s)`` (float)
    zp_back : float or None: the learnable backward's zero point ``(int)(z + 0.5)``, clamped
    """
    x: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    mask: np.ndarray
    learnable: bool
    grad_factor: float
    qmin: int
    qmax: int
    xq_back: Optional[np.ndarray]
    zp_back: Optional[float]


class FakeQuantGrads(NamedTuple):
    """dx : shape of x. dscale, dzero_point : shape (1,) for learnable fake quant, else None."""
    dx: np.ndarray
    dscale: Optional[np.ndarray]
    dzero_point: Optional[np.ndarray]


def fake_quant_forward(x, scale, zero_point, *, qmin, qmax, axis=None, mask=None, rounding=None, op=None,
                       learnable=False, grad_factor=1.0, convention="torchvision"):
    """Fake quantization ``y = (clamp(round(x / s) + z, qmin, qmax) - z) * s`` and its gradient mask.

    PyTorch ``fake_quantize_per_tensor_affine`` / ``fake_quantize_per_channel_affine`` (float32:
    ``q = z + nearbyint(x * (1.0f / s))``, then ``(clamp(q) - z) * s`` with one float32 rounding), and
    with ``learnable=True`` ``_fake_quantize_learnable_per_tensor_affine``.

    Parameters
    ----------
    x : ndarray of float, any shape
    scale : float or ndarray, shape () or (C,) (per channel along ``axis``)
    zero_point : int or ndarray, shape () or (C,)
        An integer. With ``learnable=True`` a float (PyTorch's learnable zero point): the forward uses
        ``clamp(nearbyint(z))``, the backward ``clamp((int)(z + 0.5))`` (truncation), as PyTorch does.
    qmin, qmax : int
        The integer range, e.g. -128, 127 (keyword-only, required).
    axis : int, optional
        Channel axis for per-channel parameters (not with ``learnable``).
    mask : {"torch", "tf"}, optional
        Straight-through gradient mask. ``"torch"``: ``qmin <= q <= qmax`` on the *rounded, unclamped*
        q (so inputs up to half a step beyond ``(qmax - z) s`` still pass gradient). ``"tf"``:
        ``(qmin - z) s <= x <= (qmax - z) s`` on x (TF ``FakeQuantWithMinMaxVarsGradient``).
        Both ends inclusive.
    rounding, op : optional
        Override the convention (torchvision: half_even with the float32 reciprocal; tf: half_up).
    learnable : bool
        LSQ (Esser et al. 2020): the backward also returns the scale and zero-point gradients.
    grad_factor : float
        Multiplies the scale and zero-point gradients (LSQ's ``g = 1 / sqrt(N * Qp)``).

    Returns
    -------
    y : ndarray, shape of x, working dtype
    cache : FakeQuantCache
    """
    s = _resolve("fake_quant_forward", convention, mask=mask, rounding=rounding, op=op)
    rnd = _rounder(s["rounding"])
    _checks.check_choice(s["op"], "op", ("div", "mul_inv"))
    _checks.check_choice(s["mask"], "mask", ("torch", "tf"))
    lo = _checks.check_int(qmin, "qmin")
    hi = _checks.check_int(qmax, "qmax")
    if lo >= hi:
        raise ValueError(f"`qmin` must be < `qmax`; got [{lo}, {hi}]")
    if not isinstance(learnable, (bool, np.bool_)):
        raise TypeError(f"`learnable` must be a bool; got {learnable!r}")
    gf = _checks.check_real(grad_factor, "grad_factor")
    xa = _checks.as_array(x, "x")
    wd = _checks.working_dtype(xa.dtype)
    xa = xa.astype(wd, copy=False)
    _checks.check_finite(xa, "x", allow_inf=True)
    ax = _checks.check_axis(axis, max(xa.ndim, 1))
    if learnable and ax is not None:
        raise ValueError("`learnable=True` is per-tensor (PyTorch _fake_quantize_learnable_per_tensor_affine); "
                         "got an `axis`")
    length = xa.shape[ax] if (ax is not None and xa.ndim) else None
    sc = _checks.as_quant_scale(scale, "scale", axis=ax, length=length)
    zp = _checks.as_quant_zero_point(zero_point, "zero_point", qmin=lo, qmax=hi, axis=ax, length=length,
                                     allow_float=bool(learnable))
    t = wd.type
    sc = _along(sc.astype(wd), xa.ndim, ax)
    zp_back = None
    if learnable:
        zf = float(zp)
        z_fwd = float(min(max(np.rint(np.float32(zf)), lo), hi))
        zp_back = float(min(max(math.trunc(float(np.float32(zf) + np.float32(0.5))), lo), hi))
        zpa = np.asarray(z_fwd)
    else:
        zpa = _along(zp.astype(np.float64), xa.ndim, ax)
    inv = t(1) / sc
    with np.errstate(over="ignore", invalid="ignore"):
        v = xa / sc if s["op"] == "div" else xa * inv
        q = rnd(v) + zpa.astype(wd)  # integer-valued floats (exact below 2**24 in float32)
        qc = np.clip(q, lo, hi)
        y = (qc - zpa.astype(wd)) * sc
    y = y.astype(wd, copy=False)
    xq_back = None
    if learnable:
        with np.errstate(over="ignore", invalid="ignore"):
            xq_back = rnd(t(zp_back) + xa * inv)  # z added *before* rounding in the learnable backward
        m = (xq_back >= lo) & (xq_back <= hi)
    elif s["mask"] == "torch":
        m = (q >= lo) & (q <= hi)
    else:
        nmin = (t(lo) - zpa.astype(wd)) * sc
        nmax = (t(hi) - zpa.astype(wd)) * sc
        m = (xa >= nmin) & (xa <= nmax)
    m = np.broadcast_to(m, xa.shape).copy()
    cache = FakeQuantCache(xa, sc, zpa, m, bool(learnable), gf, lo, hi, xq_back, zp_back)
    return y, cache


def fake_quant_backward(dy, cache):
    """Straight-through gradient of :func:`fake_quant_forward` (plus LSQ's scale/zero-point gradients).

    ``dx = dy * mask`` (the rounding's derivative is taken as 1 inside the range and 0 outside: there
    is no finite-difference check for it, the tests compare with the analytic formula and PyTorch
    autograd). With ``learnable=True`` (PyTorch ``_fake_quantize_learnable_per_tensor_affine``
    backward), with ``xq = nearbyint(z_b + x / s)`` and ``x_hat = (clamp(xq) - z_b) s``::

        dscale = sum( dy * (qmin - z_b)        where xq < qmin
                      dy * (qmax - z_b)        where xq > qmax
                      dy * (x_hat - x) / s     inside ) * grad_factor
        dzero_point = sum( -dy * s  outside, 0 inside ) * grad_factor

    (LSQ: d x_hat / d s = round(x/s) - x/s inside the range, qmin or qmax - z outside.) The sums are
    taken in float64 and returned in the working dtype, shape (1,) like PyTorch's.

    Parameters
    ----------
    dy : ndarray, shape of x
    cache : FakeQuantCache

    Returns
    -------
    FakeQuantGrads(dx, dscale, dzero_point)
    """
    if not isinstance(cache, FakeQuantCache):
        raise TypeError(f"`cache` must be the FakeQuantCache returned by fake_quant_forward; got {type(cache).__name__}")
    d = _checks.as_float_array(dy, "dy", dtype=cache.x.dtype)
    if d.shape != cache.x.shape:
        raise ValueError(f"`dy` must have the shape of x {cache.x.shape}; got {d.shape}")
    dx = np.where(cache.mask, d, cache.x.dtype.type(0))
    if not cache.learnable:
        return FakeQuantGrads(dx, None, None)
    t = cache.x.dtype.type
    s = cache.scale
    zb = t(cache.zp_back)
    xq = cache.xq_back
    lo, hi = cache.qmin, cache.qmax
    gf = t(cache.grad_factor)
    inv = t(1) / s
    xhat = (np.clip(xq, lo, hi) - zb) * s
    with np.errstate(over="ignore", invalid="ignore"):
        inside = d * (xhat - cache.x) * inv * gf
    below = xq < lo
    above = xq > hi
    ds = np.where(below, d * (t(lo) - zb) * gf, np.where(above, d * (t(hi) - zb) * gf, inside))
    dz = np.where(below | above, d * t(-1) * s * gf, t(0))
    dscale = np.asarray([ds.astype(np.float64).sum()]).astype(cache.x.dtype)
    dzp = np.asarray([dz.astype(np.float64).sum()]).astype(cache.x.dtype)
    return FakeQuantGrads(dx, dscale, dzp)


# ---------------------------------------------------------------------------------------------------
# TFLite fixed-point requantization (gemmlowp), vectorised in int64
# ---------------------------------------------------------------------------------------------------

class QuantizedMultiplier(NamedTuple):
    """``M ~= multiplier * 2**(shift - 31)``; multiplier in [2**30, 2**31) (or 0), as int64."""
    multiplier: object
    shift: object


def quantize_multiplier(m, *, single_rounding=False):
    """TFLite ``QuantizeMultiplier``: a real multiplier as a Q31 integer and a power-of-two shift.

    ``(f, shift) = frexp(M)`` with ``f`` in [0.5, 1); ``q = TfLiteRound(f * 2**31)`` (half away); if
    ``q == 2**31`` (f rounds up to 1: M = 1 - 2**-40 gives that) then ``q = 2**30, shift += 1``; if
    ``shift < -31`` then ``(0, 0)`` (the multiplier underflows). ``M = 0`` gives ``(0, 0)``. With
    ``single_rounding`` (``TFLITE_SINGLE_ROUNDING`` builds) a ``shift > 30`` is clamped to
    ``(2**31 - 1, 30)``. Source: ``tensorflow/lite/kernels/internal/quantization_util.cc``.

    Parameters
    ----------
    m : float or ndarray of float, >= 0, finite
        Computed in double, as TFLite does: for a conv,
        ``M_c = double(in_scale) * double(w_scale[c]) / double(out_scale)``.

    Returns
    -------
    QuantizedMultiplier(multiplier, shift)
        Python ints for a scalar ``m``, int64 arrays of m's shape otherwise.

    Examples
    --------
    >>> quantize_multiplier(0.25)
    QuantizedMultiplier(multiplier=1073741824, shift=-1)
    """
    scalar = np.ndim(m) == 0
    a = _checks.as_float_array(m, "m", dtype=np.float64)
    if np.any(a < 0):
        raise ValueError(f"`m` must be >= 0; got {a.ravel()[np.argmax(a.ravel() < 0)]}")
    f, e = np.frexp(a)
    q = round_half_away(f * 2.0 ** 31).astype(np.int64)
    e = e.astype(np.int64)
    carry = q == 2 ** 31
    q = np.where(carry, q // 2, q)
    e = np.where(carry, e + 1, e)
    tiny = (e < -31) | (a == 0)
    q = np.where(tiny, 0, q)
    e = np.where(tiny, 0, e)
    if single_rounding:
        big = e > 30
        q = np.where(big, 2 ** 31 - 1, q)
        e = np.where(big, 30, e)
    if scalar:
        return QuantizedMultiplier(int(q), int(e))
    return QuantizedMultiplier(q, e)


def _wrap_int32(v):
    """Two's-complement wrap of int64 values to int32 (what an int32 C++ multiply does in practice)."""
    return ((v + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` for int32 a, b.

    ``ab = int64(a) * int64(b)``; ``nudge = 2**30`` if ``ab >= 0`` else ``1 - 2**30``; result
    ``trunc((ab + nudge) / 2**31)`` (C++ division truncates toward zero). Exact ties therefore go toward
    +inf, not away from zero: ``a * b / 2**31 = 0.5 -> 1`` and ``1.5 -> 2``, but ``-0.5 -> 0`` and
    ``-1.5 -> -1`` (the negative nudge is one short of a half). Only the final
    :func:`rounding_divide_by_pot` rounds half away from zero. The single overflow case
    ``a == b == INT32_MIN`` saturates to ``INT32_MAX``.

    Parameters
    ----------
    a, b : int or ndarray of int, int32 range, broadcastable

    Returns
    -------
    ndarray of int64
    """
    a = _int32_array(a, "a")
    b = _int32_array(b, "b")
    ab = a * b  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, 2 ** 30, 1 - 2 ** 30)
    s = ab + nudge
    out = np.where(s >= 0, s // 2 ** 31, -((-s) // 2 ** 31))
    return np.where((a == _INT32_MIN) & (b == _INT32_MIN), _INT32_MAX, out).astype(np.int64)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``mask = 2**e - 1``, ``rem = x & mask``, ``threshold = (mask >> 1) + (x < 0)``; result
    ``(x >> e) + (rem > threshold)`` with an arithmetic shift.

    Parameters
    ----------
    x : int or ndarray of int, int32 range
    exponent : int or ndarray of int in [0, 31], broadcastable

    Returns
    -------
    ndarray of int64
    """
    x = _int32_array(x, "x")
    e = np.asarray(_checks.as_int_array(exponent, "exponent"), dtype=np.int64)
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError(f"`exponent` must lie in [0, 31]; got {e.min()}..{e.max()}")
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > thr)


def _int32_array(v, name):
    a = np.asarray(_checks.as_int_array(v, name), dtype=np.int64)
    if a.size and (a.min() < _INT32_MIN or a.max() > _INT32_MAX):
        raise ValueError(f"`{name}` must fit in int32 (the kernels' accumulator type); got values in "
                         f"[{a.min()}, {a.max()}]")
    return a


def multiply_by_quantized_multiplier(x, multiplier, shift, *, single_rounding=False):
    """TFLite ``MultiplyByQuantizedMultiplier(x, q, shift)``: ``x * q * 2**(shift - 31)`` rounded.

    Default (double rounding) build::

        left = max(shift, 0); right = max(-shift, 0)
        RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**left (wrapped to int32), q), right)

    ``single_rounding=True`` (``TFLITE_SINGLE_ROUNDING``): ``(int64(x) * q + 2**(30 - shift)) >> (31 - shift)``,
    i.e. round half up, with ``shift`` in [-31, 30].

    Parameters
    ----------
    x : ndarray of int, int32 range
    multiplier, shift : int or ndarray of int, broadcastable against x

    Returns
    -------
    ndarray of int64
    """
    x = _int32_array(x, "x")
    q = _int32_array(multiplier, "multiplier")
    sh = np.asarray(_checks.as_int_array(shift, "shift"), dtype=np.int64)
    if q.size and q.min() < 0:
        raise ValueError(f"`multiplier` must be >= 0; got minimum {q.min()}")
    if single_rounding:
        if sh.size and (sh.min() < -31 or sh.max() > 30):
            raise ValueError(f"`shift` must lie in [-31, 30] for single rounding; got {sh.min()}..{sh.max()}")
        total = 31 - sh
        return (x * q + (np.int64(1) << (total - 1))) >> total
    if sh.size and (sh.min() < -31 or sh.max() > 31):
        raise ValueError(f"`shift` must lie in [-31, 31]; got {sh.min()}..{sh.max()}")
    left = np.maximum(sh, 0)
    right = np.maximum(-sh, 0)
    xl = _wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xl, q), right)


_REQUANT_MODES = ("tflite", "tflite_single", "tflite_fc", "onnxruntime", "onnx_reference", "float_rne")


def _out_int_dtype(lo, hi):
    for name in ("int8", "uint8", "int16", "uint16", "int32"):
        a, b = QUANT_DTYPES[name]
        if a <= lo and hi <= b:
            return np.dtype(name)
    return np.dtype(np.int64)


def requantize(acc, multiplier, out_zero_point, *, mode="tflite", qmin=-128, qmax=127, axis=None,
               out_dtype=None):
    """Requantize an integer accumulator: ``q = clamp(round(acc * M) + out_zero_point, qmin, qmax)``.

    The six modes differ only in how ``acc * M`` is rounded:

    ================ =========================================================== ==========================
    mode             arithmetic                                                  matches
    ================ =========================================================== ==========================
    "tflite"         SRDHM (ties up at 2**-31) then RoundingDivideByPOT           TFLite BUILTIN_REF kernels,
                     (half away): gemmlowp double rounding, exact int64           default build
    "tflite_single"  ``(acc * q + 2**(30 - shift)) >> (31 - shift)``: half up     TFLITE_SINGLE_ROUNDING=1
    "tflite_fc"      ``round_half_away(float64(acc) * M) + zp`` (``std::round``    TFLite BUILTIN_REF int8
                     in double; M = double(x_s) * double(w_s) / double(y_s))     FULLY_CONNECTED (LiteRT
                                                                                  2.3: not the CONV_2D rule)
    "onnxruntime"    ``rint(float32(acc) * float32(M)) + zp``                     onnxruntime CPU (x86 MLAS)
                                                                                  QLinearConv
    "onnx_reference" ``np.round(float64(acc) * float64(float32(M)) + zp)``:       onnx.reference QLinearConv
                     float64 product, zero point added *before* rounding
    "float_rne"      ``rint(float64(acc) * M) + zp``                              exact-product RNE
                                                                                  (XNNPACK-like)
    ================ =========================================================== ==========================

    How ``multiplier`` is given:

    * ``"tflite"`` / ``"tflite_single"``: either the real multiplier M (float, array) — converted with
      :func:`quantize_multiplier` (in double) — or a ``(q, shift)`` pair (ints or int arrays), as
      TFLite stores it.
    * float modes (``"tflite_fc"`` included): the real multiplier M. ``"onnxruntime"`` and ``"onnx_reference"`` round it to
      float32 first (both runtimes hold it in float32: compute it as
      ``float32(float32(x_s * w_s) / y_s)`` to match them, see :func:`qlinear_conv`); ``"float_rne"``
      uses it as given. A ``(q, shift)`` pair is accepted too and means ``q * 2**(shift - 31)``.

    Parameters
    ----------
    acc : ndarray of int, any shape
        Accumulator (int32 range for the TFLite modes; float32(acc) loses bits above 2**24 in
        "onnxruntime", as onnxruntime does).
    multiplier : float, ndarray, or (q, shift)
        Scalar, or broadcastable against ``acc``, or 1-D along ``axis``.
    out_zero_point : int or ndarray of int (scalar or along ``axis``)
    mode : str
        One of the table's modes.
    qmin, qmax : int
        Saturation range (also the fused-activation clamp of TFLite).
    axis : int, optional
        Axis of ``acc`` along which 1-D multipliers / zero points run (per output channel: 1 for
        NCHW, -1 for NHWC).
    out_dtype : dtype, optional
        Default: the smallest of int8/uint8/int16/uint16/int32 holding [qmin, qmax].

    Returns
    -------
    ndarray of ``out_dtype``, shape of ``acc``
    """
    _checks.check_choice(mode, "mode", _REQUANT_MODES)
    a = np.asarray(_checks.as_int_array(acc, "acc"), dtype=np.int64)
    lo = _checks.check_int(qmin, "qmin")
    hi = _checks.check_int(qmax, "qmax")
    if lo > hi:
        raise ValueError(f"`qmin` must be <= `qmax`; got [{lo}, {hi}]")
    ax = _checks.check_axis(axis, max(a.ndim, 1))
    od = np.dtype(out_dtype) if out_dtype is not None else _out_int_dtype(lo, hi)
    zp = _checks.as_quant_zero_point(out_zero_point, "out_zero_point", qmin=lo, qmax=hi, axis=ax,
                                     length=a.shape[ax] if (ax is not None and a.ndim) else None)
    zp = _along(zp, a.ndim, ax)

    def per_channel(p, name):
        p = np.asarray(p)
        if p.ndim == 1 and ax is not None:
            if a.ndim and p.shape[0] != a.shape[ax]:
                raise ValueError(f"`{name}` must have one value per channel along axis {ax} ({a.shape[ax]}); "
                                 f"got length {p.shape[0]}")
            return _along(p, a.ndim, ax)
        return p

    is_pair = isinstance(multiplier, tuple) and len(multiplier) == 2
    if mode in ("tflite", "tflite_single"):
        single = mode == "tflite_single"
        if is_pair:
            qm = _int32_array(multiplier[0], "multiplier[0]")
            sh = np.asarray(_checks.as_int_array(multiplier[1], "multiplier[1]"), dtype=np.int64)
        else:
            mf = _checks.as_float_array(multiplier, "multiplier", dtype=np.float64)
            if np.any(mf < 0):
                raise ValueError("`multiplier` must be >= 0")
            qm, sh = quantize_multiplier(mf, single_rounding=single)
            qm, sh = np.asarray(qm), np.asarray(sh)
        _int32_array(a, "acc")
        r = multiply_by_quantized_multiplier(a, per_channel(qm, "multiplier"), per_channel(sh, "multiplier"),
                                             single_rounding=single)
        q = r + zp
    else:
        if is_pair:
            qm = np.asarray(_checks.as_int_array(multiplier[0], "multiplier[0]"), dtype=np.float64)
            sh = np.asarray(_checks.as_int_array(multiplier[1], "multiplier[1]"), dtype=np.float64)
            mf = qm * 2.0 ** (sh - 31)
        else:
            mf = _checks.as_float_array(multiplier, "multiplier", dtype=np.float64)
        if np.any(mf < 0):
            raise ValueError("`multiplier` must be >= 0")
        mf = per_channel(mf, "multiplier")
        if mode == "onnxruntime":
            v = np.rint(a.astype(np.float32) * mf.astype(np.float32))
            q = _to_int(v, lo - 2 ** 31, hi + 2 ** 31) + zp
        elif mode == "onnx_reference":
            v = a.astype(np.float64) * mf.astype(np.float32).astype(np.float64) + zp
            q = _to_int(np.rint(np.clip(v, lo, hi)), lo, hi)
        elif mode == "tflite_fc":
            v = round_half_away(a.astype(np.float64) * mf)
            q = _to_int(v, lo - 2 ** 31, hi + 2 ** 31) + zp
        else:
            v = np.rint(a.astype(np.float64) * mf)
            q = _to_int(v, lo - 2 ** 31, hi + 2 ** 31) + zp
    return np.clip(q, lo, hi).astype(od)


# ---------------------------------------------------------------------------------------------------
# Integer convolution
# ---------------------------------------------------------------------------------------------------

def _pair(v, name, low):
    if isinstance(v, (tuple, list, np.ndarray)):
        vals = [_checks.check_int(t, name, low=low) for t in v]
        if len(vals) != 2:
            raise ValueError(f"`{name}` must be an int or a pair; got {len(vals)} values")
        return tuple(vals)
    k = _checks.check_int(v, name, low=low)
    return (k, k)


def _pads(padding):
    """int p -> (p, p, p, p); (ph, pw) -> (ph, pw, ph, pw); 4 values = ONNX (top, left, bottom, right)."""
    if isinstance(padding, (tuple, list, np.ndarray)):
        vals = [_checks.check_int(t, "padding", low=0) for t in padding]
        if len(vals) == 2:
            return (vals[0], vals[1], vals[0], vals[1])
        if len(vals) == 4:
            return tuple(vals)
        raise ValueError(f"`padding` must be an int, (ph, pw) or ONNX (top, left, bottom, right); got {len(vals)} values")
    p = _checks.check_int(padding, "padding", low=0)
    return (p, p, p, p)


_EXACT32 = 2 ** 24
_EXACT64 = 2 ** 53


def conv2d_int(xq, wq, *, x_zero_point=0, w_zero_point=0, stride=1, padding=0, dilation=1, groups=1,
               accumulator="int64", method="auto"):
    """Integer 2-D convolution (cross-correlation) of zero-point-shifted operands, exactly.

    ``acc[n, f, i, j] = sum_{c, u, v} (x[n, g*Cg + c, i*sh + u*dh - pt, j*sw + v*dw - pl] - x_zp)
    * (w[f, c, u, v] - w_zp[f])`` where ``g = f // (F / groups)``: ONNX ``ConvInteger`` (and the
    accumulation inside ``QLinearConv`` and TFLite CONV_2D). Padding taps contribute 0, i.e. x is
    padded with ``x_zero_point`` (TFLite skips them, which is the same).

    Parameters
    ----------
    xq : ndarray of int, shape (N, C, H, W)
    wq : ndarray of int, shape (F, C / groups, KH, KW)
    x_zero_point : int
    w_zero_point : int or ndarray of int, shape (F,)
        Per output channel allowed (ONNX ConvInteger / QLinearConv).
    stride, dilation : int or (h, w)
    padding : int, (ph, pw) or ONNX pads (top, left, bottom, right)
    groups : int
    accumulator : {"int64", "int32"}
        ``"int32"`` emulates the runtimes' int32 accumulator: a final value outside int32 raises a
        ``ValueError`` naming the first offending output (instead of silently wrapping).
    method : {"auto", "float32", "float64", "int64"}
        How the products are summed; all give the same integers when allowed. ``"auto"`` picks float32
        BLAS over K-chunks when every partial sum is provably an integer below 2**24
        (``max|x - x_zp| * max|w - w_zp| * chunk < 2**24``), else float64 BLAS when below 2**53, else an
        int64 matmul (exact while below 2**63). An explicit method that cannot be exact raises.

    Returns
    -------
    ndarray of int64, shape (N, F, OH, OW)
        ``OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1``, likewise OW.
    """
    x = _checks.as_int_array(xq, "xq", ndim=4)
    w = _checks.as_int_array(wq, "wq", ndim=4)
    _checks.check_choice(accumulator, "accumulator", ("int64", "int32"))
    _checks.check_choice(method, "method", ("auto", "float32", "float64", "int64"))
    g = _checks.check_int(groups, "groups", low=1)
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    if c != cg * g:
        raise ValueError(f"`xq` has {c} channels but `wq` expects {cg} x groups ({g}) = {cg * g}")
    if f % g:
        raise ValueError(f"`wq` has {f} filters, not divisible by groups ({g})")
    sh, sw = _pair(stride, "stride", 1)
    dh, dw = _pair(dilation, "dilation", 1)
    pt, pl, pb, pr = _pads(padding)
    xzp = _checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=-(2 ** 31), qmax=2 ** 32)
    wzp = _checks.as_quant_zero_point(w_zero_point, "w_zero_point", qmin=-(2 ** 31), qmax=2 ** 32, axis=0,
                                      length=f)
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    hp, wp = h + pt + pb, wd + pl + pr
    if hp < eh or wp < ew:
        raise ValueError(f"the (dilated) kernel {eh}x{ew} is larger than the padded input {hp}x{wp}")
    oh, ow = (hp - eh) // sh + 1, (wp - ew) // sw + 1
    xs = x.astype(np.int64) - xzp  # (N, C, H, W)
    ws = w.astype(np.int64) - (wzp.reshape(-1, 1, 1, 1) if wzp.ndim else wzp)  # (F, Cg, KH, KW)
    K = cg * kh * kw
    bx = int(np.abs(xs).max(initial=0))
    bw = int(np.abs(ws).max(initial=0))
    prod = bx * bw
    if method == "auto":
        if prod * min(K, 64) < _EXACT32 and prod > 0:
            method = "float32"
        elif prod * K < _EXACT64:
            method = "float64"
        else:
            method = "int64"
    if method == "float32" and not prod < _EXACT32:
        raise ValueError(f"method='float32' cannot be exact: one product can reach {prod} >= 2**24")
    if method == "float64" and not prod * K < _EXACT64:
        raise ValueError(f"method='float64' cannot be exact: |acc| can reach {prod * K} >= 2**53")
    if prod * K >= 2 ** 63:
        raise ValueError(f"the accumulator can reach {prod * K}, beyond int64")
    dt = {"float32": np.float32, "float64": np.float64, "int64": np.int64}[method]

    out = np.zeros((n, f, oh, ow), dtype=np.int64)
    if out.size and K:
        xpad = np.zeros((n, c, hp, wp), dtype=dt)  # 0 after the zero-point shift = padding with x_zp
        xpad[:, :, pt:pt + h, pl:pl + wd] = xs
        win = np.lib.stride_tricks.sliding_window_view(xpad, (eh, ew), axis=(2, 3))
        win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :oh, :ow]  # (N, C, OH, OW, KH, KW)
        fg = f // g
        # columns (G, N*OH*OW, Cg*KH*KW), ordered (c, u, v) like the weights
        cols = win.reshape(n, g, cg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(g, n * oh * ow, K)
        wm = ws.astype(dt).reshape(g, fg, K).transpose(0, 2, 1)  # (G, K, F/G)
        if method == "float32":
            chunk = max(1, (_EXACT32 - 1) // max(prod, 1))
            res = np.zeros((g, n * oh * ow, fg), dtype=np.float64)
            for k0 in range(0, K, chunk):  # every chunk's partial sums are integers < 2**24: exact
                res += np.matmul(cols[:, :, k0:k0 + chunk], wm[:, k0:k0 + chunk])
        else:
            res = np.matmul(cols, wm)
        # (G, N, OH, OW, F/G) -> (N, F, OH, OW)
        out = res.reshape(g, n, oh, ow, fg).transpose(1, 0, 4, 2, 3).reshape(n, f, oh, ow)
        out = out.astype(np.int64) if out.dtype != np.int64 else out.copy()
    if accumulator == "int32":
        _check_int32_acc(out, "conv2d_int")
    return out


def _check_int32_acc(acc, where):
    if acc.size and (acc.min() < _INT32_MIN or acc.max() > _INT32_MAX):
        bad = np.argwhere((acc < _INT32_MIN) | (acc > _INT32_MAX))[0]
        raise ValueError(f"{where}: the int32 accumulator overflows: value {int(acc[tuple(bad)])} at index "
                         f"{tuple(int(i) for i in bad)} is outside [-2**31, 2**31 - 1] (onnxruntime and TFLite "
                         f"accumulate in int32; use accumulator='int64' to see the exact value)")


def _as_q8(v, name):
    a = _checks.as_int_array(v, name)
    if a.dtype not in (np.int8, np.uint8):
        raise TypeError(f"`{name}` must be int8 or uint8 (ONNX QLinearConv types); got dtype {a.dtype}")
    return a


def _zp_range(arr_or_int, fallback):
    a = np.asarray(arr_or_int)
    if a.dtype in (np.int8, np.uint8):
        return QUANT_DTYPES[a.dtype.name], a.dtype
    return QUANT_DTYPES[fallback.name], fallback


def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B=None, *,
                 stride=1, padding=0, dilation=1, groups=1, mode="onnxruntime"):
    """ONNX ``QLinearConv`` (opset 10): integer conv, int32 bias, requantization to 8 bits.

    ``y = saturate(round((conv(x - x_zp, w - w_zp) + B) * (x_scale * w_scale / y_scale)) + y_zp)``,
    NCHW, weights (F, C/groups, KH, KW), ``w_scale``/``w_zero_point`` per tensor or per output channel.
    The schema does not fix the requantization arithmetic; the two runtimes differ near ties:

    * ``mode="onnxruntime"``: the multiplier ``float32(float32(x_s * w_s[f]) / y_s)``, then
      ``rint(float32(acc) * multiplier) + y_zp`` (x86 MLAS ``MlasRequantizeOutput``; ORT PR #3196). ORT's
      CPU kernel additionally requires equal per-channel weight zero points.
    * ``mode="onnx_reference"``: ``onnx.reference``'s ``op_qlinear_conv.py``: the same float32
      multiplier, a float64 product, ``+ y_zp`` *before* clipping and ``np.round``.

    Parameters
    ----------
    x : ndarray of uint8 or int8, shape (N, C, H, W)
    x_scale : float (float32)
    x_zero_point : int or 0-d array of x's dtype
    w : ndarray of uint8 or int8, shape (F, C / groups, KH, KW)
    w_scale : float or ndarray, shape (F,)
    w_zero_point : int or ndarray, shape () or (F,)
    y_scale : float
    y_zero_point : int or 0-d array; its dtype (uint8/int8) is the output dtype (default: x's dtype)
    B : ndarray of int32, shape (F,), optional
        Bias in units of ``x_scale * w_scale[f]`` (zero point 0), added to the int32 accumulator.
    stride, dilation : int or pair
    padding : int, pair, or ONNX pads (top, left, bottom, right)
    groups : int
    mode : {"onnxruntime", "onnx_reference"} (also the other :func:`requantize` modes)

    Returns
    -------
    ndarray of uint8 or int8, shape (N, F, OH, OW)

    Raises
    ------
    ValueError
        If the int32 accumulator (with the bias) overflows.
    """
    xa = _as_q8(x, "x")
    wa = _as_q8(w, "w")
    (xlo, xhi), _ = _zp_range(x_zero_point, xa.dtype)
    (wlo, whi), _ = _zp_range(w_zero_point, wa.dtype)
    (ylo, yhi), ydt = _zp_range(y_zero_point, xa.dtype)
    f = wa.shape[0] if wa.ndim == 4 else 0
    xs = _checks.as_quant_scale(x_scale, "x_scale").astype(np.float32)
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=f).astype(np.float32)
    ys = _checks.as_quant_scale(y_scale, "y_scale").astype(np.float32)
    xz = _checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=xlo, qmax=xhi)
    wz = _checks.as_quant_zero_point(w_zero_point, "w_zero_point", qmin=wlo, qmax=whi, axis=0, length=f)
    yz = _checks.as_quant_zero_point(y_zero_point, "y_zero_point", qmin=ylo, qmax=yhi)
    acc = conv2d_int(xa, wa, x_zero_point=xz, w_zero_point=wz, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, accumulator="int32")
    if B is not None:
        b = _checks.as_int_array(B, "B", ndim=1)
        if b.shape[0] != f:
            raise ValueError(f"`B` must have one value per output channel ({f}); got length {b.shape[0]}")
        _int32_array(b, "B")
        acc = acc + b.astype(np.int64).reshape(1, -1, 1, 1)
        _check_int32_acc(acc, "qlinear_conv (accumulator + B)")
    m = (np.float32(xs) * ws) / np.float32(ys)  # float32 throughout: (x_s * w_s) / y_s
    m = np.asarray(m, dtype=np.float32)
    return requantize(acc, m if m.ndim == 0 else m, yz, mode=mode, qmin=ylo, qmax=yhi,
                      axis=1 if m.ndim == 1 else None, out_dtype=ydt)


_TFL_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def tflite_activation_range(activation, scale, zero_point, *, dtype="int8"):
    """TFLite ``CalculateActivationRangeQuantized``: the fused activation as an integer clamp.

    With ``quantize(f) = zero_point + int(TfLiteRound(float32(f) / float32(scale)))``:
    NONE -> [qmin, qmax]; RELU -> [max(qmin, zp), qmax]; RELU6 -> [max(qmin, zp), min(qmax, quantize(6))];
    RELU_N1_TO_1 -> [max(qmin, quantize(-1)), min(qmax, quantize(1))].

    Returns
    -------
    (int, int)
    """
    _checks.check_choice(activation, "activation", _TFL_ACTIVATIONS)
    dtype = _checks.check_quant_dtype(dtype)
    lo, hi = QUANT_DTYPES[dtype]
    s = np.float32(_checks.as_quant_scale(scale, "scale"))
    z = int(_checks.as_quant_zero_point(zero_point, "zero_point", qmin=lo, qmax=hi))

    def q(v):
        return z + int(round_half_away(np.float32(v) / s))

    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, z), hi
    if activation == "RELU6":
        return max(lo, z), min(hi, q(6.0))
    return max(lo, q(-1.0)), min(hi, q(1.0))


def tflite_conv2d_int8(x, x_scale, x_zero_point, w, w_scale, bias, y_scale, y_zero_point, *, stride=1,
                       padding="VALID", dilation=1, activation="NONE", mode="tflite"):
    """TFLite int8 ``CONV_2D`` with per-channel weights, reference-kernel semantics (bit-exact with
    LiteRT ``BUILTIN_REF``; XNNPACK and the optimized kernels differ by 1 LSB by design).

    ``reference/integer_ops/conv.h``::

        acc = sum w[o, u, v, c] * (x[n, ., ., c] - x_zp)         int32; padding taps skipped
        acc += bias[o]
        acc = MultiplyByQuantizedMultiplier(acc, q_o, shift_o)   (q_o, shift_o) = QuantizeMultiplier(M_o)
        y = clamp(acc + y_zp, act_min, act_max)

    with ``M_o = double(x_scale) * double(w_scale[o]) / double(y_scale)`` (float32 scales widened to
    double, ``PopulateConvolutionQuantizationParams``) and the clamp from
    :func:`tflite_activation_range`.

    Parameters
    ----------
    x : ndarray of int8, shape (N, H, W, C)   (NHWC)
    x_scale : float
    x_zero_point : int in [-128, 127]
    w : ndarray of int8, shape (O, KH, KW, C)   (OHWI; weight zero point 0 per the spec)
    w_scale : float or ndarray, shape (O,)
    bias : ndarray of int32, shape (O,), or None
        In units of ``x_scale * w_scale[o]``.
    y_scale : float
    y_zero_point : int in [-128, 127]
    stride, dilation : int or pair
    padding : "VALID", "SAME", or explicit (int, pair, (top, left, bottom, right))
        SAME puts the odd extra pixel at the bottom/right (``ComputePaddingHeightWidth``).
    activation : {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}
    mode : {"tflite", "tflite_single", "float_rne"}
        Requantization (see :func:`requantize`); "float_rne" reproduces XNNPACK.

    Returns
    -------
    ndarray of int8, shape (N, OH, OW, O)
    """
    xa = _checks.as_int_array(x, "x", ndim=4)
    wa = _checks.as_int_array(w, "w", ndim=4)
    if xa.dtype != np.int8 or wa.dtype != np.int8:
        raise TypeError(f"`x` and `w` must be int8 (TFLite int8 CONV_2D); got {xa.dtype} and {wa.dtype}")
    _checks.check_choice(mode, "mode", ("tflite", "tflite_single", "float_rne"))
    o, kh, kw, ci = wa.shape
    if xa.shape[3] != ci:
        raise ValueError(f"`x` has {xa.shape[3]} channels (NHWC) but `w` (OHWI) expects {ci}")
    xs = float(np.float32(_checks.as_quant_scale(x_scale, "x_scale")))
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=o).astype(np.float32).astype(np.float64)
    ys = float(np.float32(_checks.as_quant_scale(y_scale, "y_scale")))
    xz = int(_checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=-128, qmax=127))
    yz = int(_checks.as_quant_zero_point(y_zero_point, "y_zero_point", qmin=-128, qmax=127))
    sh, sw = _pair(stride, "stride", 1)
    dh, dw = _pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        _checks.check_choice(padding, "padding", ("VALID", "SAME"))
        if padding == "VALID":
            pads = (0, 0, 0, 0)
        else:
            h, wd = xa.shape[1], xa.shape[2]
            oh, ow = -(-h // sh), -(-wd // sw)
            th = max((oh - 1) * sh + dh * (kh - 1) + 1 - h, 0)
            tw = max((ow - 1) * sw + dw * (kw - 1) + 1 - wd, 0)
            pads = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        pads = _pads(padding)
    acc = conv2d_int(xa.transpose(0, 3, 1, 2), wa.transpose(0, 3, 1, 2), x_zero_point=xz, w_zero_point=0,
                     stride=(sh, sw), padding=pads, dilation=(dh, dw), accumulator="int32")
    if bias is not None:
        b = _checks.as_int_array(bias, "bias", ndim=1)
        if b.shape[0] != o:
            raise ValueError(f"`bias` must have one value per output channel ({o}); got length {b.shape[0]}")
        _int32_array(b, "bias")
        acc = acc + b.astype(np.int64).reshape(1, -1, 1, 1)
        _check_int32_acc(acc, "tflite_conv2d_int8 (accumulator + bias)")
    lo, hi = tflite_activation_range(activation, y_scale, yz)
    m = xs * ws / ys  # (O,) in double
    y = requantize(acc, m, yz, mode=mode, qmin=lo, qmax=hi, axis=1, out_dtype=np.int8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))
