"""Fixed-point requantization: an integer accumulator times a real multiplier, rounded as each runtime does.

TFLite stores ``M = s_in * s_w / s_out`` as a Q31 integer and a shift (:func:`quantize_multiplier`) and
multiplies with gemmlowp's two roundings (:func:`saturating_rounding_doubling_high_mul`, then
:func:`rounding_divide_by_pot`: :func:`multiply_by_quantized_multiplier`); onnxruntime multiplies in
float32 and rounds half to even; onnx.reference in float64. :func:`requantize` runs any of them,
vectorised in exact int64 arithmetic.

Reference: :mod:`refdet.reference.quant` writes each mode in exact rational arithmetic
(``fractions.Fraction``), one function per mode; the tests hold every function here bit-equal to it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from refdet import _checks
from refdet.quant.affine import _INT32_MAX, _INT32_MIN, QUANT_DTYPES, ArrayLike, _along, _to_int, round_half_away

__all__ = [
    "QuantizedMultiplier",
    "quantize_multiplier",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "requantize",
]


class QuantizedMultiplier(NamedTuple):
    """``M ~= multiplier * 2**(shift - 31)``; multiplier in [2**30, 2**31) (or 0).

    Python ints for a scalar multiplier, int64 arrays otherwise.
    """
    multiplier: Union[int, np.ndarray]
    shift: Union[int, np.ndarray]


def quantize_multiplier(m: ArrayLike, *, single_rounding: bool = False) -> QuantizedMultiplier:
    """TFLite ``QuantizeMultiplier``: a real multiplier as a Q31 integer and a power-of-two shift.

    ``(f, shift) = frexp(M)`` with ``f`` in [0.5, 1); ``q = TfLiteRound(f * 2**31)`` (half away); if
    ``q == 2**31`` (f rounds up to 1: M = 1 - 2**-40 gives that) then ``q = 2**30, shift += 1``; if
    ``shift < -31`` then ``(0, 0)`` (the multiplier underflows). ``M = 0`` gives ``(0, 0)``. With
    ``single_rounding`` (``TFLITE_SINGLE_ROUNDING`` builds) a ``shift > 30`` is clamped to
    ``(2**31 - 1, 30)``. Source: ``tensorflow/lite/kernels/internal/quantization_util.cc``.
    Reference: :func:`refdet.reference.quant.quantize_multiplier` (exact rationals).

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
    single_rounding = _checks.check_bool(single_rounding, "single_rounding")
    a = _checks.as_float_array(m, "m")  # float32 m stays float32: its f * 2**31 is exact there too
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
    return np.asarray(v).astype(np.int32).astype(np.int64)  # NumPy's int64 -> int32 cast keeps the low 32 bits


def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` for int32 a, b.

    ``ab = int64(a) * int64(b)``; ``nudge = 2**30`` if ``ab >= 0`` else ``1 - 2**30``; result
    ``trunc((ab + nudge) / 2**31)`` (C++ division truncates toward zero). Exact ties therefore go toward
    +inf, not away from zero: ``a * b / 2**31 = 0.5 -> 1`` and ``1.5 -> 2``, but ``-0.5 -> 0`` and
    ``-1.5 -> -1`` (the negative nudge is one short of a half). Only the final
    :func:`rounding_divide_by_pot` rounds half away from zero. The single overflow case
    ``a == b == INT32_MIN`` saturates to ``INT32_MAX``. Reference:
    :func:`refdet.reference.quant.saturating_rounding_doubling_high_mul` (``floor(a * b / 2**31 + 1/2)``).

    Parameters
    ----------
    a, b : int or ndarray of int, int32 range, broadcastable

    Returns
    -------
    ndarray of int64
    """
    a = _int32_array(a, "a")
    b = _int32_array(b, "b")
    _checks.check_broadcast((a, b), ("a", "b"))
    ab = a * b  # |ab| <= 2**62: exact in int64
    negative = ab < 0  # pragma: no mutate (ab == 0 gives 0 with either nudge: <= and < 1 are the same)
    nudge = np.where(negative, 1 - 2 ** 30, 2 ** 30)
    s = ab + nudge
    out = np.sign(s) * (np.abs(s) // 2 ** 31)  # C++ division truncates toward zero
    return np.where((a == _INT32_MIN) & (b == _INT32_MIN), _INT32_MAX, out).astype(np.int64)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    ``mask = 2**e - 1``, ``rem = x & mask``, ``threshold = (mask >> 1) + (x < 0)``; result
    ``(x >> e) + (rem > threshold)`` with an arithmetic shift. Reference:
    :func:`refdet.reference.quant.rounding_divide_by_pot`.

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
    _checks.check_broadcast((x, e), ("x", "exponent"))
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    negative = x < 0  # pragma: no mutate (x == 0 has rem 0, never above thr: <= and < 1 are the same)
    thr = (mask >> 1) + negative
    return (x >> e) + (rem > thr)


def _int32_array(v, name):
    # the range is checked before the cast to int64: a uint64 above 2**63 must not wrap into range
    a = _checks.as_int_array(v, name)
    if a.size and (a.min() < _INT32_MIN or a.max() > _INT32_MAX):
        raise ValueError(f"`{name}` must fit in int32 (the kernels' accumulator type); got values in "
                         f"[{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def _int64_array(v, name):
    """An integer array as int64; a uint64 value above int64's range raises instead of wrapping."""
    a = _checks.as_int_array(v, name)
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"`{name}` must fit in int64; got a maximum of {a.max()}")
    return a.astype(np.int64)


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike, *,
                                     single_rounding: bool = False) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier(x, q, shift)``: ``x * q * 2**(shift - 31)`` rounded.

    Default (double rounding) build::

        left = max(shift, 0); right = max(-shift, 0)
        RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x * 2**left (wrapped to int32), q), right)

    ``single_rounding=True`` (``TFLITE_SINGLE_ROUNDING``): ``(int64(x) * q + 2**(30 - shift)) >> (31 - shift)``,
    i.e. round half up, with ``shift`` in [-31, 30]. Reference:
    :func:`refdet.reference.quant.multiply_by_quantized_multiplier`.

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
    _checks.check_broadcast((x, q, sh), ("x", "multiplier", "shift"))
    single_rounding = _checks.check_bool(single_rounding, "single_rounding")
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


def _out_dtype(out_dtype, lo, hi):
    """An integer dtype that holds [lo, hi]."""
    try:
        od = np.dtype(out_dtype)
    except TypeError:
        raise TypeError(f"`out_dtype` must be an integer dtype; got {_checks._describe(out_dtype)}") from None
    if od.kind not in ("i", "u"):
        raise TypeError(f"`out_dtype` must be an integer dtype; got {od}")
    if lo < np.iinfo(od).min or hi > np.iinfo(od).max:
        raise ValueError(f"`out_dtype` {od} cannot hold [`qmin`, `qmax`] = [{lo}, {hi}]")
    return od


def _out_int_dtype(lo, hi):
    for name in ("int8", "uint8", "int16", "uint16", "int32"):
        a, b = QUANT_DTYPES[name]
        if a <= lo and hi <= b:
            return np.dtype(name)
    return np.dtype(np.int64)


def requantize(acc: ArrayLike, multiplier: Union[ArrayLike, Tuple[ArrayLike, ArrayLike]],
               out_zero_point: ArrayLike, *, mode: str = "tflite", qmin: int = -128, qmax: int = 127,
               axis: Optional[int] = None, out_dtype=None) -> np.ndarray:
    """Requantize an integer accumulator: ``q = clamp(round(acc * M) + out_zero_point, qmin, qmax)``.

    The six modes differ only in how ``acc * M`` is rounded:

    ================  ===========================================================  ===========================
    mode              arithmetic                                                   matches
    ================  ===========================================================  ===========================
    "tflite"          SRDHM (ties up at 2**-31) then RoundingDivideByPOT           TFLite BUILTIN_REF kernels,
                      (half away): gemmlowp double rounding, exact int64           default build
    "tflite_single"   ``(acc * q + 2**(30 - shift)) >> (31 - shift)``: half up     TFLITE_SINGLE_ROUNDING=1
    "tflite_fc"       ``round_half_away(float64(acc) * M) + zp`` (``std::round``   TFLite BUILTIN_REF int8
                      in double; M = double(x_s) * double(w_s) / double(y_s))      FULLY_CONNECTED (LiteRT
                                                                                   2.3: not the CONV_2D rule)
    "onnxruntime"     ``rint(float32(acc) * float32(M)) + zp``                     onnxruntime CPU (x86 MLAS)
                                                                                   QLinearConv
    "onnx_reference"  ``np.round(float64(acc) * float64(float32(M)) + zp)``:       onnx.reference QLinearConv
                      float64 product, zero point added *before* rounding
    "float_rne"       ``rint(float64(acc) * M) + zp``: RNE of the float64 product  XNNPACK-like (equal to
                                                                                   the exact RNE of acc * M
                                                                                   but where the float64
                                                                                   product rounding meets
                                                                                   a tie)
    ================  ===========================================================  ===========================

    Every float product above is rounded once to its dtype (IEEE round to nearest even) before the
    mode's own rounding: that is what makes onnxruntime and onnx.reference disagree near ties.

    How ``multiplier`` is given:

    * ``"tflite"`` / ``"tflite_single"``: either the real multiplier M (float, array) — converted with
      :func:`quantize_multiplier` (in double) — or a ``(q, shift)`` pair (ints or int arrays), as
      TFLite stores it.
    * float modes (``"tflite_fc"`` included): the real multiplier M. ``"onnxruntime"`` and
      ``"onnx_reference"`` round it to float32 first (both runtimes hold it in float32: compute it as
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

    Notes
    -----
    Reference: one function per mode in exact rational arithmetic, each float rounding written out:
    :func:`refdet.reference.quant.requantize_tflite`, ``requantize_tflite_single``,
    ``requantize_tflite_fc``, ``requantize_onnxruntime``, ``requantize_onnx_reference``,
    ``requantize_float_rne`` (``refdet.reference.quant.REQUANTIZE[mode]``); the tests hold them
    bit-equal on hypothesis inputs with exact ties.

    Examples
    --------
    An int32 accumulator times M = 0.0123, plus the output zero point 3, saturated to int8: 1000 * M =
    12.3 gives 15, 50000 * M = 615 saturates at 127.

    >>> requantize(np.array([-300, 1000, 1500, 50000]), 0.0123, 3, mode="tflite")
    array([ -1,  15,  21, 127], dtype=int8)
    """
    _checks.check_choice(mode, "mode", _REQUANT_MODES)
    a = _int64_array(acc, "acc")
    lo = _checks.check_int(qmin, "qmin")
    hi = _checks.check_int(qmax, "qmax")
    if lo > hi:
        raise ValueError(f"`qmin` must be <= `qmax`; got [{lo}, {hi}]")
    ax = _checks.check_axis(axis, max(a.ndim, 1))
    od = _out_dtype(out_dtype, lo, hi) if out_dtype is not None else _out_int_dtype(lo, hi)
    zp = _checks.as_quant_zero_point(out_zero_point, "out_zero_point", qmin=lo, qmax=hi, axis=ax,
                                     length=a.shape[ax] if (ax is not None and a.ndim) else None,
                                     range_name="[`qmin`, `qmax`]")
    zp = _along(zp, a.ndim, ax)

    def per_channel(p, name):
        p = np.asarray(p)
        if p.ndim == 1 and ax is None and p.shape[0] > 1 and a.ndim and p.shape[0] != a.shape[-1]:
            raise ValueError(f"`{name}` has {p.shape[0]} values (per-channel) but `axis` is None; pass axis= to say "
                             f"which axis of `acc` they run along")
        if p.ndim == 1 and ax is not None:
            if a.ndim and p.shape[0] != a.shape[ax]:
                raise ValueError(f"`{name}` must have one value per channel along `axis` {ax} ({a.shape[ax]}); "
                                 f"got length {p.shape[0]}")
            return _along(p, a.ndim, ax)
        _checks.check_broadcast((a, p), ("acc", name))
        return p

    is_pair = isinstance(multiplier, tuple) and len(multiplier) == 2
    if mode in ("tflite", "tflite_single"):
        single = mode == "tflite_single"
        if is_pair:
            qm = _int32_array(multiplier[0], "multiplier[0]")
            sh = _checks.as_int_array(multiplier[1], "multiplier[1]")  # multiply_by_quantized_multiplier casts
        else:
            mf = _checks.as_float_array(multiplier, "multiplier")
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
            qm = _checks.as_int_array(multiplier[0], "multiplier[0]")  # times a float64 power of two below
            sh = np.asarray(_checks.as_int_array(multiplier[1], "multiplier[1]"), dtype=np.float64)
            mf = qm * 2.0 ** (sh - 31)
        else:
            mf = _checks.as_float_array(multiplier, "multiplier")  # float32 M is exact in the float64 products
        if np.any(mf < 0):
            raise ValueError("`multiplier` must be >= 0")
        mf = per_channel(mf, "multiplier")
        if mode == "onnxruntime":
            v = np.rint(a.astype(np.float32) * mf.astype(np.float32))
            q = _to_int(v, lo - hi, hi - lo) + zp  # beyond [lo - zp, hi - zp] the final clamp saturates
        elif mode == "onnx_reference":
            v = a * mf.astype(np.float32) + zp  # int64 * float32 -> float64: float64(acc) * float64(float32(M))
            q = _to_int(np.rint(v), lo, hi)
        elif mode == "tflite_fc":
            v = round_half_away(a * mf)  # int64 * float64: float64(acc) * M
            q = _to_int(v, lo - hi, hi - lo) + zp
        else:
            v = np.rint(a * mf)  # int64 * float64: float64(acc) * M
            q = _to_int(v, lo - hi, hi - lo) + zp
    return np.clip(q, lo, hi).astype(od)
