"""Quantization in exact rational arithmetic: the readable reference of :mod:`refdet.quant`.

Every value here is a Python ``int`` or a :class:`fractions.Fraction`, so nothing rounds unless a line
says so. Where a runtime computes in floating point, that rounding is written out as a call to
:func:`round_to_float` (IEEE 754 round to nearest, ties to even), at the place the runtime's source
does it; everything else is exact. One function per requantization mode, each a few lines long, the
runtime's source named in its docstring. Scalars in, scalars out: slow, for tests and for reading.

    requantize_tflite           gemmlowp double rounding on TFLite's Q31 multiplier
    requantize_tflite_single    TFLITE_SINGLE_ROUNDING: one round-half-up shift
    requantize_tflite_fc        std::round of the float64 product (LiteRT int8 FULLY_CONNECTED)
    requantize_onnxruntime      RNE of the float32 product (onnxruntime x86 MLAS)
    requantize_onnx_reference   np.round of the float64 product plus the zero point (onnx.reference)
    requantize_float_rne        RNE of the float64 product
    requantize_exact            the real answer: RNE of acc * M with no intermediate rounding

The fast, vectorised functions of :mod:`refdet.quant` name their reference here, and
``tests/test_reference_quant.py`` holds the two bit-equal on hypothesis inputs (exact ties included).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence, Tuple, Union

import numpy as np

Number = Union[int, float, Fraction]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
HALF = Fraction(1, 2)

# ---------------------------------------------------------------------------------------------------
# Rounding an exact rational
# ---------------------------------------------------------------------------------------------------


def round_half_even(v: Fraction) -> int:
    """Nearest integer, ties to even (``np.rint``, ``std::nearbyint``): Python's ``round``."""
    return round(Fraction(v))


def round_half_away(v: Fraction) -> int:
    """Nearest integer, ties away from zero (``std::round``, ``TfLiteRound``)."""
    v = Fraction(v)
    return math.floor(v + HALF) if v >= 0 else -math.floor(-v + HALF)


def round_half_up(v: Fraction) -> int:
    """Nearest integer, ties toward +inf: ``floor(v + 1/2)``."""
    return math.floor(Fraction(v) + HALF)


ROUNDINGS = {"half_even": round_half_even, "half_away": round_half_away, "half_up": round_half_up}


def _floor_log2(a: Fraction) -> int:
    """The exponent ``e`` with ``2**e <= a < 2**(e + 1)``, for ``a > 0``."""
    e = a.numerator.bit_length() - a.denominator.bit_length()   # a lies in (2**(e - 1), 2**(e + 1))
    return e if Fraction(2) ** e <= a else e - 1

# (significand bits p, smallest normal exponent, largest exponent)
_FORMATS = {"float32": (24, -126, 127), "float64": (53, -1022, 1023)}


def round_to_float(v: Union[Fraction, float], dtype: str = "float64") -> Union[Fraction, float]:
    """``v`` rounded to the nearest float32 / float64, ties to the even significand (IEEE 754).

    ``v = 2**e * m`` with ``2**(p-1) <= m < 2**p`` (``e`` no smaller than the subnormal exponent);
    ``m`` is rounded half to even. A result beyond the largest finite float is ``+-inf`` (a float);
    every other result is an exact :class:`Fraction`. ``+-inf`` passes through.
    """
    if isinstance(v, float) and math.isinf(v):
        return v
    v = Fraction(v)
    if v == 0:
        return Fraction(0)
    p, emin, emax = _FORMATS[dtype]
    a = abs(v)
    ulp = Fraction(2) ** (max(_floor_log2(a), emin) - p + 1)  # subnormals share the smallest exponent's ulp
    r = round_half_even(a / ulp) * ulp
    if r >= Fraction(2) ** (emax + 1):
        return math.inf if v > 0 else -math.inf
    return r if v > 0 else -r


def _clamp(q: Union[int, float], qmin: int, qmax: int) -> int:
    """``min(max(q, qmin), qmax)``; an infinite ``q`` saturates."""
    return int(min(max(q, qmin), qmax))


def _round_or_saturate(v: Union[Fraction, float], rounding) -> Union[int, float]:
    return v if isinstance(v, float) else rounding(v)   # +-inf stays infinite and saturates in _clamp


# ---------------------------------------------------------------------------------------------------
# quantize
# ---------------------------------------------------------------------------------------------------


def quantize(x: Number, scale: Number, zero_point: int, *, qmin: int, qmax: int, rounding: str = "half_even",
             op: str = "div", add_zero_point: str = "after", dtype: str = "float32") -> int:
    """``q = clamp(round(x / s) + z, qmin, qmax)`` with the working dtype's float roundings written out.

    ``x`` and ``s`` are first held in ``dtype`` (``s = fl(scale)``); then::

        op="div":      v = fl(x / s)                 ONNX QuantizeLinear, TFLite reference QUANTIZE
        op="mul_inv":  v = fl(x * fl(1 / s))         PyTorch (x * (1.0f / scale))
        add_zero_point="after":   q = round(v) + z
        add_zero_point="before":  q = round(fl(v + fl(z)))   (PyTorch's learnable fake-quant backward)

    where ``fl`` is :func:`round_to_float` to ``dtype`` and ``round`` is ``ROUNDINGS[rounding]``.
    ``x = +-inf`` (or an overflow to it) saturates. Fast path: :func:`refdet.quant.quantize`.
    """
    def fl(v):
        return round_to_float(v, dtype)

    rnd = ROUNDINGS[rounding]
    x, s, z = fl(float(x)), fl(Fraction(scale)), int(zero_point)
    v = fl(x / s) if op == "div" else fl(x * fl(1 / s))
    if add_zero_point == "before":
        return _clamp(_round_or_saturate(fl(v + fl(z)), rnd), qmin, qmax)
    return _clamp(_round_or_saturate(v, rnd) + z, qmin, qmax)


# ---------------------------------------------------------------------------------------------------
# TFLite fixed point (tensorflow/lite/kernels/internal/common.h, gemmlowp/fixedpoint/fixedpoint.h)
# ---------------------------------------------------------------------------------------------------


def quantize_multiplier(m: float, *, single_rounding: bool = False) -> Tuple[int, int]:
    """TFLite ``QuantizeMultiplier`` (quantization_util.cc): ``M ~= q * 2**(shift - 31)``.

    ``M = f * 2**shift`` with ``f`` in [1/2, 1) (``frexp``); ``q = round_half_away(f * 2**31)``; a
    ``q`` of ``2**31`` becomes ``2**30`` with ``shift + 1``; ``shift < -31`` gives ``(0, 0)``, as does
    ``M = 0``. Single-rounding builds clamp ``shift > 30`` to ``(2**31 - 1, 30)``. Fast path:
    :func:`refdet.quant.quantize_multiplier`.
    """
    M = Fraction(m)
    if M == 0:
        return 0, 0
    shift = _floor_log2(M) + 1                   # 2**(shift - 1) <= M < 2**shift
    q = round_half_away(M / Fraction(2) ** shift * 2 ** 31)
    if q == 2 ** 31:
        q, shift = 2 ** 30, shift + 1
    if shift < -31:
        return 0, 0
    if single_rounding and shift > 30:
        return 2 ** 31 - 1, 30
    return q, shift


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``a * b / 2**31`` rounded, ties toward +inf.

    The source adds a nudge (``2**30`` when ``a * b >= 0``, ``1 - 2**30`` otherwise) and divides with
    C++'s truncation toward zero; in both cases that is ``floor(a * b / 2**31 + 1/2)``. The one
    overflow, ``INT32_MIN * INT32_MIN``, saturates to ``INT32_MAX``. Fast path:
    :func:`refdet.quant.saturating_rounding_doubling_high_mul`.
    """
    if a == b == INT32_MIN:
        return INT32_MAX
    return round_half_up(Fraction(a * b, 2 ** 31))


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    Fast path: :func:`refdet.quant.rounding_divide_by_pot`.
    """
    return round_half_away(Fraction(x, 2 ** exponent))


def _wrap_int32(v: int) -> int:
    """What an int32 multiply gives on two's-complement hardware (C++ leaves the overflow undefined)."""
    return (v + 2 ** 31) % 2 ** 32 - 2 ** 31


def multiply_by_quantized_multiplier(x: int, q: int, shift: int, *, single_rounding: bool = False) -> int:
    """TFLite ``MultiplyByQuantizedMultiplier(x, q, shift)`` (kernels/internal/common.h).

    Double rounding (default build)::

        SRDHM(x * 2**max(shift, 0), q)          round at 2**-31, ties toward +inf
        RoundingDivideByPOT(., max(-shift, 0))  round again, ties away from zero

    ``TFLITE_SINGLE_ROUNDING``: ``(x * q + 2**(30 - shift)) >> (31 - shift)`` = ``x * q / 2**(31 - shift)``
    rounded half up, once. Fast path: :func:`refdet.quant.multiply_by_quantized_multiplier`.
    """
    if single_rounding:
        return round_half_up(Fraction(x * q, 2 ** (31 - shift)))
    high = saturating_rounding_doubling_high_mul(_wrap_int32(x * 2 ** max(shift, 0)), q)
    return rounding_divide_by_pot(high, max(-shift, 0))


# ---------------------------------------------------------------------------------------------------
# requantize: q = clamp(round(acc * M) + zero_point, qmin, qmax), one function per runtime
# ---------------------------------------------------------------------------------------------------


def requantize_tflite(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """TFLite reference kernels (``BUILTIN_REF``, default build): the Q31 multiplier, double rounding.

    ``(q, shift) = quantize_multiplier(M)``, then ``MultiplyByQuantizedMultiplier(acc, q, shift) + z``
    clamped (reference/integer_ops/conv.h). Fast path: ``requantize(mode="tflite")``.
    """
    q, shift = quantize_multiplier(m)
    return _clamp(multiply_by_quantized_multiplier(acc, q, shift) + zero_point, qmin, qmax)


def requantize_tflite_single(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """TFLite built with ``TFLITE_SINGLE_ROUNDING=1``: one round-half-up shift of ``acc * q``.

    Fast path: ``requantize(mode="tflite_single")``.
    """
    q, shift = quantize_multiplier(m, single_rounding=True)
    return _clamp(multiply_by_quantized_multiplier(acc, q, shift, single_rounding=True) + zero_point, qmin, qmax)


def requantize_tflite_fc(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """LiteRT's int8 ``FULLY_CONNECTED`` reference: ``std::round(double(acc) * M) + z``.

    ``acc * M`` is a float64 product (rounded once to nearest even), then rounded half away from
    zero. Fast path: ``requantize(mode="tflite_fc")``.
    """
    p = round_to_float(acc * Fraction(m), "float64")
    return _clamp(_round_or_saturate(p, round_half_away) + zero_point, qmin, qmax)


def requantize_onnxruntime(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """onnxruntime CPU ``QLinearConv`` (x86 MLAS ``MlasRequantizeOutput``): float32 product, RNE.

    ``acc`` and ``M`` are each rounded to float32 (``acc`` exactly below 2**24), their product is
    rounded to float32 -- the step that makes onnxruntime differ from the exact answer near a tie --
    and that float32 is rounded half to even; then ``+ z`` and the clamp. Fast path:
    ``requantize(mode="onnxruntime")``.
    """
    a32, m32 = round_to_float(acc, "float32"), round_to_float(Fraction(m), "float32")
    p = round_to_float(a32 * m32, "float32")
    return _clamp(_round_or_saturate(p, round_half_even) + zero_point, qmin, qmax)


def requantize_onnx_reference(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """onnx.reference ``QLinearConv`` (onnx/reference/ops/op_qlinear_conv.py).

    ``M`` is held in float32; ``float64(acc) * float64(M32)`` is rounded to float64, the zero point is
    added *before* rounding (another float64 rounding), the sum is clipped to ``[qmin, qmax]`` and
    rounded by ``np.round`` (half to even). Fast path: ``requantize(mode="onnx_reference")``.
    """
    m32 = round_to_float(Fraction(m), "float32")
    v = round_to_float(round_to_float(acc * m32, "float64") + zero_point, "float64")
    return _clamp(round_half_even(min(max(v, qmin), qmax)), qmin, qmax)


def requantize_float_rne(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """``rint(float64(acc) * M) + z``: the float64 product, rounded half to even.

    Equal to :func:`requantize_exact` unless the float64 rounding of ``acc * M`` (which has up to 84
    significant bits) lands on or crosses a half. Fast path: ``requantize(mode="float_rne")``.
    """
    p = round_to_float(acc * Fraction(m), "float64")
    return _clamp(_round_or_saturate(p, round_half_even) + zero_point, qmin, qmax)


def requantize_exact(acc: int, m: float, zero_point: int, qmin: int, qmax: int) -> int:
    """The exact answer: ``acc * M`` in rationals (``M`` = the float64 value given), rounded half to even
    once. No runtime computes this; it is what each mode above approximates."""
    return _clamp(round_half_even(acc * Fraction(m)) + zero_point, qmin, qmax)


REQUANTIZE = {"tflite": requantize_tflite, "tflite_single": requantize_tflite_single,
              "tflite_fc": requantize_tflite_fc, "onnxruntime": requantize_onnxruntime,
              "onnx_reference": requantize_onnx_reference, "float_rne": requantize_float_rne}


# ---------------------------------------------------------------------------------------------------
# integer convolution
# ---------------------------------------------------------------------------------------------------


def conv2d_int(x: np.ndarray, w: np.ndarray, x_zero_point: int, w_zero_point: Sequence[int],
               stride: Tuple[int, int] = (1, 1), padding: Tuple[int, int, int, int] = (0, 0, 0, 0),
               dilation: Tuple[int, int] = (1, 1), groups: int = 1) -> np.ndarray:
    """``acc[n, f, i, j] = sum_{c, u, v} (x[n, g*Cg + c, i*sh + u*dh - top, j*sw + v*dw - left] - x_zp)
    * (w[f, c, u, v] - w_zp[f])``, a loop over output positions in Python ints.

    ``x`` (N, C, H, W), ``w`` (F, C/groups, KH, KW); ``padding`` is refdet's ``(top, bottom, left, right)``;
    a tap in the padding contributes 0. Fast path: :func:`refdet.quant.conv2d_int`.
    """
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pb, pl, pr) = stride, dilation, padding
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, f, oh, ow), dtype=np.int64)
    for b in range(n):
        for o in range(f):
            g = o // (f // groups)
            for i in range(oh):
                for j in range(ow):
                    acc = 0
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                y, xx = i * sh + u * dh - pt, j * sw + v * dw - pl
                                if 0 <= y < h and 0 <= xx < wd:
                                    acc += (int(x[b, g * cg + ci, y, xx]) - x_zero_point) * \
                                        (int(w[o, ci, u, v]) - int(w_zero_point[o]))
                    out[b, o, i, j] = acc
    return out
