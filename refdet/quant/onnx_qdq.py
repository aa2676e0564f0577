"""ONNX ``QuantizeLinear`` and ``DequantizeLinear`` in every element type and layout of opsets 10-25.

::

    y = saturate(round(x / y_scale) + y_zero_point)        QuantizeLinear  (integer types)
    y = cast(x / y_scale)                                   QuantizeLinear  (float8, float4e2m1)
    y = (x - x_zero_point) * x_scale                        DequantizeLinear

Layouts (the shape of the scale decides, as in the schema):

* per tensor: a scalar (or one-element) scale;
* per axis: a 1-D scale of length ``x.shape[axis]``;
* blocked (opset >= 21): a scale of ``x``'s rank whose ``axis`` dimension is ``ceil(D / block_size)``:
  element ``i`` along ``axis`` uses scale ``i // block_size`` (the last block may be short).

Element types and their representation are those of :mod:`refdet.quant.types`: integer types as
integers (int4/int2 in int8, uint4/uint2 in uint8; :func:`refdet.quant.types.pack` gives ONNX's
packed bytes), float8/float4 as uint8 bit codes.

Where onnxruntime 1.32 (CPU) and onnx.reference (onnx 1.23) differ, ``runtime=`` chooses:

================================  =========================================  ==========================================
case                              ``"onnxruntime"``                          ``"onnx_reference"``
================================  =========================================  ==========================================
float16 ``x`` and scale           divides in float32 (MLFloat16 -> float)    divides in float16 (NumPy), rounds twice
NaN ``x`` (integer types)         ``qmin`` (MLAS quantize kernel)            ``rint(nan).astype(int32)`` = INT32_MIN on
                                                                             x86-64, then ``+ zero_point`` wraps in
                                                                             int32, then clip
``|round(x / s)| >= 2**31``       saturates to ``qmin``/``qmax``             the same int32 cast: INT32_MIN (+ zp,
                                                                             wrapping): 1e10 quantizes to -128 in int8
float8 special values             ``float8.h`` quirks (see ``types``)        ml_dtypes (the spec's table)
float4e2m1                        refused (no CPU kernel: NOT_IMPLEMENTED)   ``x / s + zero_point`` cast by ml_dtypes
                                                                             (so ``-0`` becomes ``+0``); DQ ignores
                                                                             the zero point
blocked scale size                exactly ``ceil(D / block_size)`` (the      any ``S`` with ``S * block_size >= D``
                                  spec's accepted range)                     (extra scales unused)
``x`` and scale of different      refused (one type parameter T1 at          NumPy promotion
float types                       opsets <= 21 in its kernels)
================================  =========================================  ==========================================

Sources: ``onnx/reference/ops/op_quantize_linear.py`` and ``op_dequantize_linear.py``,
``onnx/reference/ops/_quant_utils.py`` (``reshape_input``); onnxruntime
``core/providers/cpu/quantization/quantize_linear.cc`` (``PrepareForQDQ``, the blocked shape check)
and MLAS ``QuantizeLinear`` kernels (``platform.cpp``: RNE via ``cvtps2dq`` after a float clamp,
NaN ending at the minimum). The x86-64 int32 cast behaviour of NumPy (``cvttsd2si`` yields
0x80000000 for NaN and out-of-range values) is what ``onnx_reference`` reproduces; on aarch64 NumPy's
cast saturates instead.

Everything else is common: the rounding is half to even (``np.rint`` / ``nearbyintf``); the zero point
is added after rounding; DequantizeLinear computes ``(x - zp)`` exactly then multiplies in float32
(float64 scales: float64) and casts to the output type. float64 inputs (which no runtime accepts) are
computed in float64: the oracle answer.

Readable reference: :func:`refdet.reference.onnx_ops.quantize_linear` (element by element).
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.quant import types as _types

__all__ = ["ONNX_QDQ_RUNTIMES", "quantize_linear", "dequantize_linear"]

#: The runtimes whose details :func:`quantize_linear` / :func:`dequantize_linear` reproduce.
ONNX_QDQ_RUNTIMES = ("onnxruntime", "onnx_reference")

_MIN_OPSET, _MAX_OPSET = 10, 25
_INT32_MIN = -(2 ** 31)
_INT32_MAX = 2 ** 31 - 1

_SRC = ("onnx/reference/ops/op_quantize_linear.py, op_dequantize_linear.py (onnx 1.23); onnxruntime "
        "core/providers/cpu/quantization/quantize_linear.cc, core/framework/float8.h (1.32)")
for _op in ("quantize_linear", "dequantize_linear"):
    conventions.register(
        _op,
        {"onnx": {"runtime": "onnxruntime"}},
        knobs={"runtime": conventions.choice(
            ONNX_QDQ_RUNTIMES, "whose arithmetic to reproduce where onnxruntime and onnx.reference differ "
            "(float16 division, NaN and int32 overflow, float8 special values, float4, blocked scale sizes)",
            source=_SRC)},
        doc="ONNX QuantizeLinear/DequantizeLinear exist only in ONNX; the 'onnx' profile reproduces "
            "onnxruntime (the deployed runtime); runtime='onnx_reference' reproduces onnx.reference.",
    )


def _check_opset(opset) -> int:
    return _checks.check_int(opset, "opset", low=_MIN_OPSET, high=_MAX_OPSET)


def _need_opset(opset, since, what):
    if opset < since:
        raise ValueError(f"`opset` {opset}: {what} needs opset >= {since} (ONNX QuantizeLinear/DequantizeLinear "
                         f"schema); got opset={opset}")


def _float_input(x, name):
    arr = _checks.as_array(x, name)
    if arr.dtype.kind == "f":
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    raise TypeError(f"`{name}` must be real numbers; got dtype {arr.dtype}")


def _expand(param, x_shape, axis, block_size, name, runtime):
    """``param`` (a scale or zero point) broadcastable to ``x_shape``: per tensor, per axis or blocked."""
    p = np.asarray(param)
    if p.ndim == 0 or p.size == 1 and not block_size:
        return p.reshape(())
    if not block_size:
        if p.ndim != 1:
            raise ValueError(f"`{name}` must be a scalar, 1-D (per `axis`) or, with `block_size` > 0, of x's rank; "
                             f"got shape {p.shape}")
        if axis is None:
            raise ValueError(f"`{name}` is 1-D (per axis) but `x` is 0-D")
        if p.shape[0] != x_shape[axis]:
            raise ValueError(f"`{name}` must have one value per index of `axis` = {axis} ({x_shape[axis]}); "
                             f"got length {p.shape[0]}")
        shape = [1] * len(x_shape)
        shape[axis] = p.shape[0]
        return p.reshape(shape)
    if p.ndim != len(x_shape):
        raise ValueError(f"`{name}` must have x's rank {len(x_shape)} for blocked quantization (block_size="
                         f"{block_size}); got shape {p.shape}")
    other = [d for i, (d, s) in enumerate(zip(x_shape, p.shape)) if i != axis and d != s]
    if other:
        raise ValueError(f"`{name}` must have x's shape {tuple(x_shape)} except along `axis` = {axis}; got "
                         f"{p.shape}")
    d, s = x_shape[axis], p.shape[axis]
    need = -(-d // block_size)
    if runtime == "onnxruntime" and s != need:
        raise ValueError(f"`block_size` {block_size}: onnxruntime requires `{name}`.shape[{axis}] == ceil({d} / "
                         f"{block_size}) = {need} (the spec's accepted range); got {s}")
    if s * block_size < d:
        raise ValueError(f"`block_size` {block_size} is too small: {s} blocks of {block_size} along axis {axis} "
                         f"cover {s * block_size} < {d} elements (onnx.reference _quant_utils.reshape_input)")
    return np.repeat(p, block_size, axis=axis).take(np.arange(d), axis=axis)   # element i -> block i // B


def _resolve_axis(axis, ndim, needed):
    a = _checks.check_int(axis, "axis")
    if not needed:
        return a % ndim if ndim and -ndim <= a < ndim else None
    if not -ndim <= a < ndim:
        raise ValueError(f"`axis` must lie in [{-ndim}, {ndim}) for a {ndim}-D `x`; got {a}")
    return a % ndim


def _division_dtype(x, scale, precision, runtime):
    """The dtype ``x / scale`` is computed in."""
    if precision is not None:
        return np.dtype(precision)
    if x.dtype == np.float64 or scale.dtype == np.float64:
        return np.dtype(np.float64)
    if runtime == "onnxruntime":
        return np.dtype(np.float32)            # MLFloat16 is converted to float for the division
    return np.result_type(x.dtype, scale.dtype)   # NumPy promotion (float16 / float16 stays float16)


_PRECISIONS = {1: np.float32, 10: np.float16, 11: np.float64, "float32": np.float32, "float16": np.float16,
               "float64": np.float64, "float": np.float32, "double": np.float64}


def _dtype_name(v, name):
    """``np.dtype(v).name``, or a TypeError naming ``name`` (NaN, an array, an unknown string)."""
    try:
        if isinstance(v, np.ndarray):
            raise TypeError
        return np.dtype(v).name
    except TypeError:
        raise TypeError(f"`{name}` must be a float dtype (float16, float32 or float64) or its TensorProto number; "
                        f"got {v!r}") from None


def _precision(precision, opset):
    if precision is None:
        return None
    _need_opset(opset, 23, "the `precision` attribute")
    key = precision if isinstance(precision, str) else (int(precision) if isinstance(precision, (int, np.integer))
                                                       else _dtype_name(precision, "precision"))
    if key not in _PRECISIONS:
        raise ValueError(f"`precision` must be float16, float32 or float64 (or their TensorProto numbers 10, 1, 11); "
                         f"got {precision!r}")
    return np.dtype(_PRECISIONS[key])


def _zero_point_type(zero_point, output_dtype, opset, name):
    """The output element type: from ``output_dtype``, else from the zero point's dtype, else uint8."""
    if output_dtype is not None:
        _need_opset(opset, 21, "the `output_dtype` attribute")
        return _types.element_type(output_dtype, "output_dtype")
    if zero_point is None:
        return _types.ELEMENT_TYPES["uint8"]
    zp = np.asarray(zero_point)
    name_ = _types._ALIASES.get(zp.dtype.name, zp.dtype.name)
    if name_ in _types.ELEMENT_TYPES and name_ != "int32":
        return _types.ELEMENT_TYPES[name_]
    raise ValueError(f"`{name}` of dtype {zp.dtype} does not name an ONNX quantized type: give it the type "
                     f"(np.int8, np.uint16, an ml_dtypes array, ...) or pass output_dtype='int4' etc.")


def _zero_point_values(zero_point, t, name):
    """Zero point as numbers: int64 for integer types, float64 values for minifloats."""
    zp = np.asarray(zero_point)
    if t.kind == "float":
        if zp.dtype.name in _types._ALIASES or zp.dtype.name in _types.ELEMENT_TYPES:
            codes, _ = _types.from_ml_dtypes(zp)
            return _types.decode_float(codes, t.name).astype(np.float64)
        if zp.dtype.kind not in "iuf":
            raise TypeError(f"`{name}` must be numbers; got dtype {zp.dtype}")
        return zp.astype(np.float64)
    if zp.dtype.kind == "f" or zp.dtype.kind not in "iu":
        if zp.dtype.name in ("int4", "uint4", "int2", "uint2"):
            zp = zp.astype(np.int64)
        else:
            raise TypeError(f"`{name}` must be integers for {t.name}; got dtype {zp.dtype}")
    out = zp.astype(np.int64)
    if out.size and (out.min() < t.qmin or out.max() > t.qmax):
        raise ValueError(f"`{name}` must lie in [{int(t.qmin)}, {int(t.qmax)}] for {t.name}; got "
                         f"[{int(out.min())}, {int(out.max())}]")
    return out


@conventions.documented("quantize_linear")
def quantize_linear(x: np.ndarray, y_scale, y_zero_point=None, *, axis: int = 1, block_size: int = 0,
                    saturate: bool = True, output_dtype=None, precision=None, opset: int = 25,
                    convention: Union[str, conventions.Profile] = "onnx", runtime: Optional[str] = None
                    ) -> np.ndarray:
    """ONNX ``QuantizeLinear`` (opsets 10-25), every element type and layout.

    Parameters
    ----------
    x : ndarray, any shape (D0, ..., Dn)
        float32 or float16 (what the runtimes take); float64 is computed in float64; integers as float64.
    y_scale : ndarray
        Scalar (per tensor), shape (D_axis,) (per axis) or x's shape with ``ceil(D_axis / block_size)``
        along ``axis`` (blocked). Any real values (a zero scale gives +-inf, then saturation).
    y_zero_point : ndarray or None
        Same shape as ``y_scale``. Its dtype names the output type unless ``output_dtype`` is given
        (np.int8, np.uint16, an ml_dtypes int4/float8 array, ...). For float8 types it must be 0.
    axis : int
        The per-axis / blocked axis (negative counts from the back). Ignored per tensor.
    block_size : int
        > 0 for blocked quantization (opset >= 21).
    saturate : bool
        float8 only (opset >= 19): see :func:`refdet.quant.types.encode_float`.
    output_dtype : str or int, optional
        The element type (``"int4"``, ``"float8e4m3fn"``, or a TensorProto number); default from the
        zero point, else ``"uint8"`` (the schema's default).
    precision : optional
        Opset >= 23: the float type the division runs in (float16, float32 or float64).
    opset : int
        The model's opset, 10-25: types and attributes newer than it are refused.
    convention : str or Profile
        ``"onnx"`` (the only profile).
    runtime : {"onnxruntime", "onnx_reference"}, optional
        Whose arithmetic to reproduce where they differ (module docstring table). Default from the
        profile: ``"onnxruntime"``.

    Returns
    -------
    ndarray, same shape as ``x``
        int8/uint8/int16/uint16 for those types; int8 (int4, int2) or uint8 (uint4, uint2) values
        (pack them with :func:`refdet.quant.types.pack`); uint8 bit codes for float8 and float4e2m1
        (decode with :func:`refdet.quant.types.decode_float`).

    Notes
    -----
    Integer types: ``clip(rint(x / y_scale) + y_zero_point, qmin, qmax)``, ``rint`` rounding half to
    even (``x / s = 2.5`` gives 2, ``3.5`` gives 4), the zero point added *after* rounding.
    Minifloats: ``encode_float(x / y_scale, saturate=saturate)``, round half to even.
    """
    runtime = conventions.resolve("quantize_linear", convention, runtime=runtime).runtime
    opset = _check_opset(opset)
    xa = _float_input(x, "x")
    s = _float_input(y_scale, "y_scale")
    t = _zero_point_type(y_zero_point, output_dtype, opset, "y_zero_point")
    if t.name == "int32":
        raise ValueError("`output_dtype` int32 is a DequantizeLinear input type only; QuantizeLinear cannot produce it")
    _need_opset(opset, t.quantize_since, f"element type {t.name}")
    block_size = _checks.check_int(block_size, "block_size", low=0)
    if block_size:
        _need_opset(opset, 21, "blocked quantization (`block_size`)")
    if not isinstance(saturate, (bool, np.bool_)) and not (isinstance(saturate, (int, np.integer))
                                                           and saturate in (0, 1)):
        raise TypeError(f"`saturate` must be a bool; got {type(saturate).__name__} {saturate!r}")
    prec = _precision(precision, opset)
    if runtime == "onnxruntime":
        if t.name == "float4e2m1":
            raise ValueError("`output_dtype` float4e2m1: onnxruntime 1.32 has no CPU QuantizeLinear kernel for it "
                             "(NOT_IMPLEMENTED); use runtime='onnx_reference'")
        if xa.dtype != s.dtype and np.float64 not in (xa.dtype, s.dtype) and prec is None:
            raise ValueError(f"`y_scale` of dtype {s.dtype} with `x` of dtype {xa.dtype}: onnxruntime's "
                             f"QuantizeLinear kernels bind x and y_scale to one type; use runtime='onnx_reference'")
    per_tensor = s.ndim == 0 or (s.size == 1 and not block_size)
    if block_size and s.size == 1 and runtime == "onnxruntime":
        raise ValueError(f"`block_size` {block_size} with a one-element `y_scale`: onnxruntime treats it as "
                         f"per-tensor and refuses ('block_size must be 0 for per-tensor quantization'); onnx.reference "
                         f"ignores block_size")
    ax = _resolve_axis(axis, xa.ndim, needed=not per_tensor)
    scale = _expand(s, xa.shape, ax, block_size, "y_scale", runtime)
    zp = None
    if y_zero_point is not None:
        zp_vals = _zero_point_values(y_zero_point, t, "y_zero_point")
        if zp_vals.shape != s.shape and not (zp_vals.size == 1 and s.size == 1):
            raise ValueError(f"`y_zero_point` must have y_scale's shape {s.shape}; got {zp_vals.shape}")
        zp = _expand(zp_vals.reshape(s.shape), xa.shape, ax, block_size, "y_zero_point", runtime)
        if t.kind == "float" and t.name != "float4e2m1" and np.any(zp != 0):
            raise ValueError(f"`y_zero_point` must be 0 for {t.name} (onnx.reference ignores it in QuantizeLinear "
                             f"and refuses a non-zero one in DequantizeLinear)")

    dt = _division_dtype(xa, s, prec, runtime)
    v = xa.astype(dt) / scale.astype(dt)                   # x / y_scale in the division's precision

    if t.kind == "float":
        if t.name == "float4e2m1" and zp is not None:
            v = v + zp.astype(v.dtype)                     # onnx.reference adds it (so -0 + 0 = +0)
        return _types.encode_float(v, t.name, saturate=bool(saturate), runtime=runtime)

    qmin, qmax = int(t.qmin), int(t.qmax)
    r = np.rint(v).astype(np.float64)                      # exact: rint of a float is representable
    z = np.zeros((), np.int64) if zp is None else zp
    if runtime == "onnxruntime":
        q = np.clip(r + z, qmin, qmax)                     # +-inf saturate
        q = np.where(np.isnan(r), qmin, q)                 # MLAS: NaN ends at the minimum
    else:
        bad = np.isnan(r) | (r < _INT32_MIN) | (r > _INT32_MAX)
        xi = np.where(bad, _INT32_MIN, np.where(bad, 0, r)).astype(np.int64)   # np.rint(x).astype(np.int32), x86-64
        xi = (xi + z + 2 ** 31) % 2 ** 32 - 2 ** 31        # `xi += zero_point` in int32: wraps
        q = np.clip(xi, qmin, qmax)
    return q.astype(t.storage)


@conventions.documented("dequantize_linear")
def dequantize_linear(x, x_scale, x_zero_point=None, *, dtype=None, axis: int = 1, block_size: int = 0,
                      output_dtype=None, opset: int = 25, convention: Union[str, conventions.Profile] = "onnx",
                      runtime: Optional[str] = None) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opsets 10-25): ``y = (x - x_zero_point) * x_scale``.

    Parameters
    ----------
    x : ndarray, any shape
        Integer values, or uint8 bit codes for float8/float4e2m1 (then ``dtype`` must name the type),
        or an ml_dtypes array (the type is read from it).
    x_scale : ndarray
        Scalar, 1-D per axis, or blocked (as :func:`quantize_linear`); float32, float16 or float64.
    x_zero_point : ndarray or None
        Same shape as the scale. Must be 0 for int32 and float8 inputs; onnx.reference ignores it for
        float4e2m1.
    dtype : str, optional
        The element type of ``x`` (``"int4"``, ``"float8e5m2"``, ...). Default: from ``x``'s dtype
        (int8, uint8, int16, uint16, int32, ml_dtypes types).
    axis, block_size : int
        As in :func:`quantize_linear`.
    output_dtype : optional
        Opset >= 23: float32, float16 or float64 output (default: the scale's type).
    opset : int
        10-25.
    convention, runtime
        As in :func:`quantize_linear` (here the runtimes differ only in refusing float4e2m1 and
        mixed-precision inputs).

    Returns
    -------
    ndarray of the output type, same shape as ``x``
        ``(x - zp)`` is exact; the product is computed in float32 (float64 when the scale is float64)
        and cast to the output type (float16 rounds once, from the float32 product: both runtimes).
    """
    runtime = conventions.resolve("dequantize_linear", convention, runtime=runtime).runtime
    opset = _check_opset(opset)
    xa = _checks.as_array(x, "x")
    if dtype is None:
        name_ = _types._ALIASES.get(xa.dtype.name, xa.dtype.name)
        if name_ not in _types.ELEMENT_TYPES:
            raise ValueError(f"`x` of dtype {xa.dtype} does not name an ONNX quantized type: pass dtype="
                             f"('int4', 'float8e4m3fn', ...)")
        t = _types.ELEMENT_TYPES[name_]
        if t.kind == "float" or name_ in ("int4", "uint4", "int2", "uint2"):
            vals, _ = _types.from_ml_dtypes(xa)
            xa = vals
    else:
        t = _types.element_type(dtype, "dtype")
        if xa.dtype.name in _types._ALIASES or xa.dtype.name in ("int4", "uint4", "int2", "uint2"):
            xa, _ = _types.from_ml_dtypes(xa)
    _need_opset(opset, t.quantize_since, f"element type {t.name}")
    block_size = _checks.check_int(block_size, "block_size", low=0)
    if block_size:
        _need_opset(opset, 21, "blocked quantization (`block_size`)")
    if runtime == "onnxruntime" and t.name == "float4e2m1":
        raise ValueError("`dtype` float4e2m1: onnxruntime 1.32 has no CPU DequantizeLinear kernel for it "
                         "(NOT_IMPLEMENTED); use runtime='onnx_reference'")
    if xa.dtype.kind not in "iu":
        raise TypeError(f"`x` must be integer values (bit codes for {t.name}); got dtype {xa.dtype}")
    if t.kind == "float":
        if xa.size and (xa.min() < 0 or xa.max() >= (1 << t.bits)):
            raise ValueError(f"`x` bit codes must lie in [0, {(1 << t.bits) - 1}] for {t.name}")
        xv = _types.decode_float(xa, t.name)                                 # exact float32 values
    else:
        if xa.size and (xa.min() < t.qmin or xa.max() > t.qmax):
            raise ValueError(f"`x` must lie in [{int(t.qmin)}, {int(t.qmax)}] for {t.name}; got "
                             f"[{int(xa.min())}, {int(xa.max())}]")
        xv = xa.astype(np.int64)
    s = _checks.as_array(x_scale, "x_scale")
    if s.dtype.kind != "f":
        raise TypeError(f"`x_scale` must be float32, float16 or float64; got dtype {s.dtype}")
    per_tensor = s.ndim == 0 or (s.size == 1 and not block_size)
    if block_size and s.size == 1 and runtime == "onnxruntime":
        raise ValueError(f"`block_size` {block_size} with a one-element `x_scale`: onnxruntime treats it as "
                         f"per-tensor and refuses ('block_size must be 0 for per-tensor quantization'); onnx.reference "
                         f"ignores block_size")
    ax = _resolve_axis(axis, xa.ndim, needed=not per_tensor)
    scale = _expand(s, xa.shape, ax, block_size, "x_scale", runtime)
    if output_dtype is not None:
        _need_opset(opset, 23, "the `output_dtype` attribute")
        out_dt = _precision_out(output_dtype)
    else:
        out_dt = s.dtype
    # float32 arithmetic unless the scale is float64 (onnx.reference: x.astype(float32) - zp, times the scale)
    compute = np.dtype(np.float64) if s.dtype == np.float64 else np.dtype(np.float32)
    if x_zero_point is not None and t.kind == "int":
        zp = _zero_point_values(x_zero_point, t, "x_zero_point")
        if zp.size != s.size:
            raise ValueError(f"`x_zero_point` must have x_scale's shape {s.shape}; got {zp.shape}")
        if t.name == "int32" and np.any(zp != 0):
            raise ValueError("`x_zero_point` must be 0 for int32 input (ONNX DequantizeLinear: int32 has no zero "
                             "point)")
        z = _expand(zp.reshape(s.shape), xa.shape, ax, block_size, "x_zero_point", runtime)
        diff = (xv - z).astype(compute)                     # exact below 2**24 (float32) / 2**53
    else:
        if x_zero_point is not None and t.name != "float4e2m1":
            zp = _zero_point_values(x_zero_point, t, "x_zero_point")
            if np.any(zp != 0):
                raise ValueError(f"`x_zero_point` must be 0 for {t.name} (onnx.reference: 'x_zero_point is not "
                                 f"null but should be zero for float8 types')")
        diff = xv.astype(compute)        # int32 input: rounds above 2**24, as both runtimes' float cast
    y = diff * scale.astype(compute)
    return y.astype(out_dt)


def _precision_out(output_dtype):
    key = output_dtype if isinstance(output_dtype, str) else (
        int(output_dtype) if isinstance(output_dtype, (int, np.integer)) else _dtype_name(output_dtype, "output_dtype"))
    if key not in _PRECISIONS:
        raise ValueError(f"`output_dtype` must be float16, float32 or float64; got {output_dtype!r}")
    return np.dtype(_PRECISIONS[key])
