"""TF's quantization kernels: ``FakeQuantWithMinMaxVars/Args/VarsPerChannel`` (with the range
nudging) and their gradients, and ``QuantizeV2`` (``MIN_COMBINED``, ``MIN_FIRST``, ``SCALED``).

Fake quant (``tensorflow/core/kernels/fake_quant_ops_functor.h``, TF 2.21). ``qmin = 1 if
narrow_range else 0``, ``qmax = 2**num_bits - 1``; ``Nudge`` moves the range so that real 0 is a grid
point, all in float32::

    scale      = (max - min) / (qmax - qmin)
    inv_scale  = (qmax - qmin) / (max - min)           # recomputed, not 1 / scale
    zp_from_min = qmin - min / scale
    zp         = qmin if zp_from_min < qmin, qmax if > qmax, else std::round(zp_from_min)   (halves away)
    nudged_min = (qmin - zp) * scale;   nudged_max = (qmax - zp) * scale
    quant_zero = floor(-nudged_min * inv_scale + 0.5)
    v          = clamp(x, nudged_min, nudged_max) - nudged_min
    y          = floor(v / scale - quant_zero + 0.5) * scale          (Vars: divides)
    y          = floor(v * inv_scale - quant_zero + 0.5) * scale      (Args, VarsPerChannel: multiply)

``min == max == 0`` gives zeros (and passes the whole gradient through). Older kernels computed
``floor(v * inv + 0.5) * scale + nudged_min`` (``inv = 1 / scale``): within an ulp, not bit-equal; it
is the ``legacy=True`` variant here. refdet's :func:`refdet.quant.fake_quant_forward` with
``convention="tf"`` (scale and zero point given, no nudging) is the same quantizer written in
refdet's ``(clamp(round(x / s) + z) - z) s`` order.

Gradient (``FakeQuantWithMinMaxVarsGradient``): ``dx = dy`` where ``nudged_min <= x <= nudged_max``
(both inclusive), ``dmin = sum(dy where x < nudged_min)``, ``dmax = sum(dy where x > nudged_max)``.
TF sums with Eigen's vectorised reduction; refdet sums in float64 and rounds once, so ``dmin`` and
``dmax`` agree with TF to the rounding of a float32 sum, not bit for bit.

``QuantizeV2`` (``tensorflow/core/kernels/quantize_op.cc``, ``quantization_utils.h``): see
:func:`quantize_v2`. TF's x86 wheels run with oneDNN on by default, and then TF 2.21 replaces
``QuantizeV2`` for 8-bit types in two cases (``qint8``/``quint8`` ``SCALED`` with ``HALF_TO_EVEN``,
``quint8`` ``MIN_FIRST``) by oneDNN's ``_MklQuantizeV2`` (``kernels/mkl/mkl_quantize_op.cc``), which
uses a symmetric range ``(-max_abs, max_abs)`` and another scale: its integers differ from the
reference kernel's by one step on many inputs, and its ``output_min`` is not ``min_T / scale``. The
reference kernel is the one that does what the op's documentation says; refdet reproduces it, and
``refdet verify tensorflow`` and the tests run TF with ``TF_ENABLE_ONEDNN_OPTS=0``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks

__all__ = ["nudge", "fake_quant_with_min_max_vars", "fake_quant_with_min_max_args",
           "fake_quant_with_min_max_vars_per_channel", "fake_quant_with_min_max_vars_gradient",
           "FakeQuantGradients", "quantize_v2", "QuantizeResult", "QUANTIZE_MODES", "ROUND_MODES", "QUANTIZED_TYPES"]

F = np.float32
QUANTIZE_MODES = ("MIN_COMBINED", "MIN_FIRST", "SCALED")
ROUND_MODES = ("HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN")
#: TF's quantized types and their NumPy storage
QUANTIZED_TYPES = {"quint8": np.uint8, "qint8": np.int8, "quint16": np.uint16, "qint16": np.int16}


def _round_away(v):
    """std::round / Eigen ``round()``: halves away from zero (``v - trunc(v)`` is exact)."""
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= 0.5).astype(v.dtype)


def _bits(num_bits, narrow_range):
    nb = _checks.check_int(num_bits, "num_bits", low=2, high=16)
    if not isinstance(narrow_range, (bool, np.bool_)):
        raise TypeError(f"`narrow_range` must be a bool; got {type(narrow_range).__name__}")
    return (1 if narrow_range else 0), (1 << nb) - 1


def nudge(min_value: float, max_value: float, quant_min: int, quant_max: int):
    """TF's ``Nudge``: ``(nudged_min, nudged_max, scale, inv_scale)``, float32 scalars (see the module
    docstring for the arithmetic).

    ``min_value < max_value`` (finite in float32) and ``quant_min < quant_max`` are required: TF's
    kernels call ``Nudge`` only after asserting ``min < max`` (fake_quant_ops_functor.h), and the
    quantized range has at least two levels (``num_bits >= 2``); a ValueError names the argument.
    """
    with np.errstate(over="ignore"):          # beyond float32: refused just below
        mn, mx = F(_checks.check_real(min_value, "min_value")), F(_checks.check_real(max_value, "max_value"))
    for name, v in (("min_value", mn), ("max_value", mx)):
        if not np.isfinite(v):
            raise ValueError(f"`{name}` must be finite in float32; got {v}")
    if not mn < mx:
        raise ValueError(f"`min_value` must be < `max_value` (TF asserts min < max before Nudge); got {mn} and {mx}")
    quant_min = _checks.check_int(quant_min, "quant_min")
    quant_max = _checks.check_int(quant_max, "quant_max")
    if not quant_min < quant_max:
        raise ValueError(f"`quant_min` must be < `quant_max` (at least two levels); got {quant_min} and {quant_max}")
    return _nudge(mn, mx, quant_min, quant_max)


def _nudge(mn, mx, quant_min, quant_max):
    """:func:`nudge` without its checks (the kernels' callers validated ``min < max`` already)."""
    mn, mx = F(mn), F(mx)
    qminf, qmaxf = F(quant_min), F(quant_max)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = (mx - mn) / (qmaxf - qminf)
        inv = (qmaxf - qminf) / (mx - mn)
        zpf = qminf - mn / scale
    if not zpf >= qminf:          # as zpf < qminf; a NaN zpf (0 / 0 scale) too, refused by the caller's scale check
        zp = quant_min
    elif zpf > qmaxf:
        zp = quant_max
    else:
        zp = int(_round_away(np.asarray(zpf)))
    return (qminf - F(zp)) * scale, (qmaxf - F(zp)) * scale, scale, inv


def _check_range(mn, mx, name_min, name_max):
    mn, mx = _checks.check_real(mn, name_min), _checks.check_real(mx, name_max)
    if not (mn < mx or (mn == 0 and mx == 0)):
        raise ValueError(f"`{name_min}` must be < `{name_max}` (TF's fake quant asserts min < max; only "
                         f"min == max == 0 is defined, as zeros); got {mn} and {mx}")
    return mn, mx


def _fq(x, mn, mx, qmin, qmax, op, legacy):
    if mn == 0 and mx == 0:
        return np.zeros_like(x)
    nmin, nmax, s, inv = _nudge(mn, mx, qmin, qmax)
    if not (s >= np.finfo(F).tiny and np.isfinite(inv)):
        raise ValueError(f"`max` - `min` = {float(F(mx) - F(mn))!r} is too small: the float32 scale is subnormal "
                         "(TF runs with denormals flushed to zero, so its answer is not defined by the formula)")
    v = np.maximum(np.minimum(x, nmax), nmin) - nmin
    if legacy:                    # TF <= 2.x before the quant_zero rewrite: 1 / scale, + nudged_min
        return np.floor(v * (F(1) / s) + F(0.5)) * s + nmin
    qz = np.floor(-nmin * inv + F(0.5))
    q = v / s if op == "div" else v * inv
    return np.floor(q - qz + F(0.5)) * s


def _as_f32(x, name="inputs"):
    a = _checks.as_array(x, name)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"`{name}` must be a real array; got dtype {a.dtype}")
    return a.astype(F, copy=False)


def fake_quant_with_min_max_vars(inputs: np.ndarray, min: float, max: float, *, num_bits: int = 8,  # noqa: A002
                                 narrow_range: bool = False, legacy: bool = False) -> np.ndarray:
    """TF ``FakeQuantWithMinMaxVars`` (``tf.quantization.fake_quant_with_min_max_vars``), float32.

    Parameters
    ----------
    inputs : ndarray of float32 (other real dtypes are cast), any shape
    min, max : float
        ``min < max`` (or both 0); TF's range variables, nudged so that 0 is exact.
    num_bits : int in [2, 16]
    narrow_range : bool
        Quantize to ``[1, 2**num_bits - 1]`` instead of ``[0, 2**num_bits - 1]``.
    legacy : bool
        The pre-``quant_zero`` kernel's order of operations (see the module docstring).

    Returns
    -------
    ndarray of float32, shape of ``inputs``: bit for bit TF's.
    """
    qmin, qmax = _bits(num_bits, narrow_range)
    mn, mx = _check_range(min, max, "min", "max")
    if not isinstance(legacy, (bool, np.bool_)):
        raise TypeError(f"`legacy` must be a bool; got {type(legacy).__name__}")
    return _fq(_as_f32(inputs), mn, mx, qmin, qmax, "div", legacy)


def fake_quant_with_min_max_args(inputs: np.ndarray, min: float = -6.0, max: float = 6.0, *,  # noqa: A002
                                 num_bits: int = 8, narrow_range: bool = False) -> np.ndarray:
    """TF ``FakeQuantWithMinMaxArgs``: as :func:`fake_quant_with_min_max_vars`, but the range is an
    attribute (float32) and the kernel multiplies by ``inv_scale`` instead of dividing by ``scale``.
    """
    qmin, qmax = _bits(num_bits, narrow_range)
    mn, mx = _check_range(F(_checks.check_real(min, "min")), F(_checks.check_real(max, "max")), "min", "max")
    if mn == 0 and mx == 0:
        raise ValueError("`min` must be < `max` (TF's FakeQuantWithMinMaxArgs asserts it); got 0 and 0")
    return _fq(_as_f32(inputs), mn, mx, qmin, qmax, "mul", False)


def fake_quant_with_min_max_vars_per_channel(inputs: np.ndarray, min: np.ndarray, max: np.ndarray, *,  # noqa: A002
                                             num_bits: int = 8, narrow_range: bool = False) -> np.ndarray:
    """TF ``FakeQuantWithMinMaxVarsPerChannel``: one range per entry of the **last** axis, and (unlike
    the per-tensor Vars kernel) multiplication by ``inv_scale``.

    Parameters
    ----------
    inputs : ndarray, shape (..., D)
    min, max : ndarray, shape (D,)
    """
    qmin, qmax = _bits(num_bits, narrow_range)
    x = _as_f32(inputs)
    if x.ndim < 1:
        raise ValueError(f"`inputs` must have at least one axis (the channel axis is the last); got {x.shape}")
    D = x.shape[-1]
    mns = _checks.as_float_array(min, "min", ndim=1).astype(np.float64)
    mxs = _checks.as_float_array(max, "max", ndim=1).astype(np.float64)
    if len(mns) != D or len(mxs) != D:
        raise ValueError(f"`min` and `max` must have shape ({D},) (the last axis of `inputs`); got "
                         f"{mns.shape} and {mxs.shape}")
    out = np.empty_like(x)
    for d in range(D):                            # one Nudge per channel, as the kernel's loop
        mn, mx = _check_range(F(mns[d]), F(mxs[d]), f"min[{d}]", f"max[{d}]")
        out[..., d] = _fq(x[..., d], mn, mx, qmin, qmax, "mul", False)
    return out


class FakeQuantGradients(NamedTuple):
    """Output of :func:`fake_quant_with_min_max_vars_gradient` (TF's three outputs)."""
    backprops_wrt_input: np.ndarray
    backprop_wrt_min: np.ndarray
    backprop_wrt_max: np.ndarray


def fake_quant_with_min_max_vars_gradient(gradients: np.ndarray, inputs: np.ndarray, min: float,  # noqa: A002
                                          max: float, *, num_bits: int = 8,  # noqa: A002
                                          narrow_range: bool = False) -> FakeQuantGradients:
    """TF ``FakeQuantWithMinMaxVarsGradient``: the straight-through gradient and the range gradients.

    ``dx = dy * (nudged_min <= x <= nudged_max)``; ``dmin = sum(dy[x < nudged_min])``; ``dmax =
    sum(dy[x > nudged_max])`` (float64 sums rounded to float32; TF's Eigen reduction may differ in
    the last bits). ``min == max == 0``: ``dx = dy``, ``dmin = dmax = 0``.

    Parameters
    ----------
    gradients, inputs : ndarray, same shape
    min, max, num_bits, narrow_range
        As :func:`fake_quant_with_min_max_vars`.
    """
    qmin, qmax = _bits(num_bits, narrow_range)
    mn, mx = _check_range(min, max, "min", "max")
    x = _as_f32(inputs)
    g = _as_f32(gradients, "gradients")
    if g.shape != x.shape:
        raise ValueError(f"`gradients` must have the shape of `inputs` {x.shape}; got {g.shape}")
    if mn == 0 and mx == 0:
        return FakeQuantGradients(g.copy(), F(0), F(0))
    nmin, nmax, s, _ = _nudge(mn, mx, qmin, qmax)
    if not s >= np.finfo(F).tiny:
        raise ValueError(f"`max` - `min` = {float(F(mx) - F(mn))!r} is too small: the float32 scale is subnormal")
    inside = (x >= nmin) & (x <= nmax)
    dx = g * inside.astype(F)                    # gradients * (1.0 or 0.0): -0.0 stays
    dmin = F(np.sum(g[x < nmin], dtype=np.float64))
    dmax = F(np.sum(g[x > nmax], dtype=np.float64))
    return FakeQuantGradients(dx, dmin, dmax)


# --------------------------------------------------------------------------------------------------
# QuantizeV2
# --------------------------------------------------------------------------------------------------

class QuantizeResult(NamedTuple):
    """Output of :func:`quantize_v2`: the integers and the range they represent (TF's three outputs).

    Attributes
    ----------
    output : ndarray of the quantized type's storage dtype (uint8, int8, uint16, int16)
    output_min, output_max : float32 scalar, or shape (C,) with ``axis``
    """
    output: np.ndarray
    output_min: np.ndarray
    output_max: np.ndarray


def _adjusted_range(imin, imax, ensure_minimum_range):
    """``min_range = min(0, imin)``, ``max_range = max(0, imax, min_range + eps)``, eps = ``max(1, |imin|,
    |imax|) * ensure_minimum_range`` (float32)."""
    mn = np.minimum(F(0), imin)
    eps = np.maximum(F(1), np.maximum(np.abs(imin), np.abs(imax))) * F(ensure_minimum_range)
    mx = np.maximum(F(0), np.maximum(imax, mn + eps))
    return mn, mx


def _quantize_slice(x, imin, imax, T, mode, round_mode, narrow_range, ensure_minimum_range):
    info = np.iinfo(T)
    mn, mx = _adjusted_range(imin, imax, ensure_minimum_range)
    if mode == "MIN_COMBINED":
        # (double(max_T) - double(min_T)) / (max_range - min_range) in double, stored as float
        scale = F((float(info.max) - float(info.min)) / float(mx - mn))
        v = (np.maximum(np.minimum(x, mx), mn) - mn) * scale
        if info.min < 0:
            half = F((int(info.max) - int(info.min) + 1) / 2.0)
            q = _round_away(v - half)
        else:
            q = np.trunc(v + F(0.5))                    # cast<T>(v + 0.5f): truncation of a value >= 0
        return np.clip(q, info.min, info.max).astype(T), mn, mx
    if mode == "SCALED":
        lo = int(info.min) + (1 if narrow_range else 0)
        hi = int(info.max)
        big = np.finfo(F).max
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s_min = F(lo) / mn if F(lo) * mn > 0 else big
            s_max = F(hi) / mx if F(hi) * mx > 0 else big
        scale = F(min(s_min, s_max))
        with np.errstate(over="ignore", under="ignore"):
            mn, mx = F(lo) / scale, F(hi) / scale
            v = np.maximum(np.minimum(x, mx), mn) * scale
        q = np.rint(v) if round_mode == "HALF_TO_EVEN" else _round_away(v)
        return np.clip(q, info.min, info.max).astype(T), mn, mx
    # MIN_FIRST: FloatToQuantizedStruct and QUANTIZE_WITH_EIGEN (quantization_utils.h)
    steps = float(1 << (8 * np.dtype(T).itemsize))
    rscale = F(0.0 if mx == mn else (steps - 1.0) / float(mx - mn))
    rmin_scaled = _round_away(np.asarray(mn * rscale))
    q = _round_away(x * rscale) - (rmin_scaled - F(info.min))
    q = np.minimum(np.maximum(q, F(info.min)), F(info.max))
    return q.astype(np.int32).astype(T), mn, mx


def quantize_v2(inputs: np.ndarray, min_range, max_range, T: str = "quint8", *, mode: str = "MIN_COMBINED",
                round_mode: str = "HALF_AWAY_FROM_ZERO", narrow_range: bool = False, axis: Optional[int] = None,
                ensure_minimum_range: float = 0.01) -> QuantizeResult:
    """TF ``QuantizeV2`` (``tf.quantization.quantize``): float32 to a quantized type.

    The range is first made safe: ``min_range = min(0, min)``, ``max_range = max(0, max, min_range +
    max(1, |min|, |max|) * ensure_minimum_range)``. Then, in float32 as the kernel:

    * ``MIN_COMBINED``: ``s = (max_T - min_T) / (max_range - min_range)`` (a double rounded to float);
      signed ``T``: ``round_away((clamp(x) - min_range) * s - (max_T - min_T + 1) / 2)``; unsigned:
      ``trunc((clamp(x) - min_range) * s + 0.5)``.
    * ``MIN_FIRST``: ``rs = (2**bits - 1) / (max_range - min_range)`` (double, stored as float);
      ``round_away(x * rs) - (round_away(min_range * rs) - min_T)``, clamped to ``T``'s range.
    * ``SCALED``: symmetric, no zero point: ``s = min((min_T + narrow) / min_range, max_T / max_range)``
      (a side with ``(min_T + narrow) * min_range <= 0`` does not count); ``round(clamp(x) * s)`` with
      ``round_mode``; the output range is ``((min_T + narrow) / s, max_T / s)``.

    Parameters
    ----------
    inputs : ndarray of float32, any shape
    min_range, max_range : float, or ndarray of shape (C,) with ``axis``
    T : {"quint8", "qint8", "quint16", "qint16"}
    mode : {"MIN_COMBINED", "MIN_FIRST", "SCALED"}
    round_mode : {"HALF_AWAY_FROM_ZERO", "HALF_TO_EVEN"}
        ``"HALF_TO_EVEN"`` only with ``mode="SCALED"`` (TF refuses it otherwise).
    narrow_range : bool
        ``SCALED`` only: ``[min_T + 1, max_T]`` (e.g. int8 [-127, 127]).
    axis : int, optional
        Per-slice ranges along ``axis`` (not with ``MIN_FIRST``: TF has no such kernel).
    ensure_minimum_range : float >= 0

    Returns
    -------
    QuantizeResult(output, output_min, output_max)
    """
    _checks.check_choice(T, "T", tuple(QUANTIZED_TYPES))
    _checks.check_choice(mode, "mode", QUANTIZE_MODES)
    _checks.check_choice(round_mode, "round_mode", ROUND_MODES)
    if not isinstance(narrow_range, (bool, np.bool_)):
        raise TypeError(f"`narrow_range` must be a bool; got {type(narrow_range).__name__}")
    if round_mode == "HALF_TO_EVEN" and mode != "SCALED":
        raise ValueError(f"`round_mode='HALF_TO_EVEN'` is only defined with mode='SCALED' (TensorFlow's QuantizeV2 "
                         f"refuses it); got mode={mode!r}")
    erange = _checks.check_positive(ensure_minimum_range, "ensure_minimum_range", strict=False)
    x = _as_f32(inputs)
    dt = QUANTIZED_TYPES[T]
    if axis is None:
        for name, v in (("min_range", min_range), ("max_range", max_range)):
            if np.ndim(v) != 0:
                raise TypeError(f"`{name}` must be a real number without `axis` (per-slice ranges need `axis`); "
                                f"got shape {np.shape(v)}")
        imin, imax = F(_checks.check_real(min_range, "min_range")), F(_checks.check_real(max_range, "max_range"))
        if imax < imin:
            raise ValueError(f"`max_range` must be >= `min_range` (TensorFlow's QuantizeV2); got {imin} and {imax}")
        q, mn, mx = _quantize_slice(x, imin, imax, dt, mode, round_mode, narrow_range, erange)
        return QuantizeResult(q, F(mn), F(mx))
    if mode == "MIN_FIRST":
        raise ValueError("`axis` is not defined with mode='MIN_FIRST' (TensorFlow's QuantizeV2: 'MIN_FIRST mode is "
                         "not implemented for Quantize with axis != -1')")
    ax = _checks.check_axis(axis, x.ndim)
    C = x.shape[ax]
    for name, v in (("min_range", min_range), ("max_range", max_range)):
        if np.ndim(v) != 1:
            raise ValueError(f"`{name}` must be 1-D with shape ({C},) (one range per slice along `axis`={axis}); "
                             f"got shape {np.shape(v)}")
    mins = _checks.as_float_array(min_range, "min_range", ndim=1).astype(F)
    maxs = _checks.as_float_array(max_range, "max_range", ndim=1).astype(F)
    if len(mins) != C or len(maxs) != C:
        raise ValueError(f"`min_range` and `max_range` must have shape ({C},) with `axis`={ax}; got {mins.shape} "
                         f"and {maxs.shape}")
    if (maxs < mins).any():
        raise ValueError("`max_range` must be >= `min_range` in every slice (TensorFlow's QuantizeV2)")
    out = np.empty(x.shape, dt)
    omin, omax = np.empty(C, F), np.empty(C, F)
    for c in range(C):                           # one range per slice, as the kernel's loop
        sl = (slice(None),) * ax + (c,)
        out[sl], omin[c], omax[c] = _quantize_slice(x[sl], mins[c], maxs[c], dt, mode, round_mode, narrow_range,
                                                    erange)
    return QuantizeResult(out, omin, omax)
