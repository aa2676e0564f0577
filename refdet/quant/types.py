"""The element types of ONNX quantization, bit for bit: sub-byte integers and their packing, the
float8 and float4 minifloats and their encoding.

ONNX ``QuantizeLinear``/``DequantizeLinear`` (opsets 19-25) carry values in fourteen element types.
Eight of them are integers, and NumPy holds each one in an ordinary integer dtype, so refdet does too:

==========  ====  =============================  ===========  =============================
name        bits  range                          unpacked in  in QuantizeLinear since opset
==========  ====  =============================  ===========  =============================
``uint8``   8     [0, 255]                       uint8        10
``int8``    8     [-128, 127]                    int8         10
``uint16``  16    [0, 65535]                     uint16       21
``int16``   16    [-32768, 32767]                int16        21
``uint4``   4     [0, 15]                        uint8        21
``int4``    4     [-8, 7]                        int8         21
``uint2``   2     [0, 3]                         uint8        25
``int2``    2     [-2, 1]                        int8         25
``int32``   32    (DequantizeLinear input only)               10
==========  ====  =============================  ===========  =============================

The minifloats are held as their **bit codes** (``uint8``, one code per element), which is the only
representation that is exact for NaN payloads, ``-0`` and the non-IEEE encodings:

==================  =  =  ====  =====  ==========  ====================  ==========
name                E  M  bias  max    -0 exists   NaN codes             inf codes
==================  =  =  ====  =====  ==========  ====================  ==========
``float8e4m3fn``    4  3  7     448    yes (0x80)  0x7F, 0xFF            none
``float8e4m3fnuz``  4  3  8     240    no          0x80                  none
``float8e5m2``      5  2  15    57344  yes (0x80)  0x7D-0x7F, 0xFD-0xFF  0x7C, 0xFC
``float8e5m2fnuz``  5  2  16    57344  no          0x80                  none
``float4e2m1``      2  1  1     6      yes (0x8)   none                  none
==================  =  =  ====  =====  ==========  ====================  ==========

A code is ``sign | exponent | mantissa`` from the high bit down; exponent 0 is subnormal
(``mantissa / 2**M * 2**(1 - bias)``), otherwise ``(1 + mantissa / 2**M) * 2**(exponent - bias)``.
"fn" means finite (no infinities; only the all-ones code is NaN), "uz" means unsigned zero (the
negative-zero code 0x80 is the only NaN). Source: the ONNX IR spec ``docs/docs/Float8.md`` and
``docs/docs/Float4.md``, the tables in the ``Cast`` operator (onnx/defs/tensor/defs.cc).

Packing (:func:`pack` / :func:`unpack`)
---------------------------------------
Sub-byte tensors (``int4``, ``uint4``, ``float4e2m1``: 2 per byte; ``int2``, ``uint2``: 4 per byte)
are stored flattened in C order, **the first element in the lowest bits**: element ``2k`` is the low
nibble of byte ``k`` and element ``2k + 1`` the high nibble (for 2-bit types element ``4k + j`` sits at
bits ``2j, 2j + 1``). An element count that does not fill the last byte leaves its high bits zero.
Signed values are stored in two's complement (``-1`` as int4 is ``0xF``). Source: ONNX IR spec
(``docs/IR.md``, "4 bit integer types" / "2 bit integer types"), ``onnx/numpy_helper.py``
``_pack_4bitx2`` / ``_pack_2bitx4``; onnxruntime ``Int4x2`` / ``Int2x4`` (core/framework/int4.h, int2.h).

Encoding (:func:`encode_float`)
-------------------------------
ONNX ``Cast`` and ``QuantizeLinear`` round to nearest, ties to even (RNE), then handle what falls
outside the finite range by the ``saturate`` flag (the table in the Cast schema):

=================  ============  ============  ===========  ============
x                  E4M3FN        E4M3FNUZ      E5M2         E5M2FNUZ
=================  ============  ============  ===========  ============
saturate=True
+-Inf              +-448         +-240         +-57344      +-57344
[x] > max          max           max           max          max
saturate=False
+-Inf              NaN (0x7F|s)  NaN (0x80)    +-Inf        NaN (0x80)
[x] > max          NaN (0x7F|s)  NaN (0x80)    +-Inf        NaN (0x80)
=================  ============  ============  ===========  ============

(``[x]`` is x rounded to the type's mantissa width, so for E4M3FN 464 is a tie between 448 and
the non-existent 480 and rounds to 448; 464.0001 rounds beyond it.) float4e2m1 has neither NaN nor
Inf: it always saturates to +-6. Two runtimes implement this with different details, reproduced
with ``runtime=``:

* ``"onnx_reference"``: ``onnx.reference`` (onnx 1.23), which casts with ``ml_dtypes``
  (``onnx.numpy_helper.saturate_cast`` = clip to the finite range, then the ml_dtypes cast). A NaN
  becomes ``0x7F|s`` for E4M3FN, ``0x7E|s`` for E5M2, 0x80 for the FNUZ types; for float4e2m1 a NaN
  becomes a zero with the sign bit **flipped** (+NaN -> 0x8, -NaN -> 0x0: ml_dtypes 0.7's
  ``float4_e2m1fn`` cast; the spec leaves it open; onnx <= 1.19's own helper gave 0x7).
* ``"onnxruntime"``: ``onnxruntime/core/framework/float8.h`` (the CPU constructors of ``Float8E4M3FN``
  etc.), which follow the table except for three quirks, all measured on onnxruntime 1.32:
  E4M3FN maps ``[480, 496)`` to 448 (it clears the low bit of a code that would read 0x7F, before
  rounding); E5M2 without saturation gives NaN ``0x7F|s`` (not Inf) for ``[61440, 65536)`` (it ORs
  the Inf code into the max code); a NaN becomes ``0x7F|s`` for E5M2 (not 0x7E). onnxruntime has no
  CPU encoder for float4e2m1 (``QuantizeLinear`` to it is NOT_IMPLEMENTED): refused.

Decoding (:func:`decode_float`) is a table lookup and the same everywhere: every code maps to an exact
float32 value (NaN codes to a NaN with the code's sign bit, Inf codes to Inf).

ml_dtypes interop: :func:`as_ml_dtypes` / :func:`from_ml_dtypes` convert to and from ``ml_dtypes``
arrays when that package is installed (it comes with onnx >= 1.18); refdet itself does not need it.
Readable reference: :mod:`refdet.reference.onnx_ops` (``encode_float_scalar``: the encoding of one
number, written as the rule above).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import math

import numpy as np

from refdet import _checks

__all__ = [
    "ELEMENT_TYPES",
    "INTEGER_TYPES",
    "FLOAT_TYPES",
    "PACKED_TYPES",
    "ElementType",
    "element_type",
    "pack",
    "unpack",
    "encode_float",
    "decode_float",
    "float_code_values",
    "as_ml_dtypes",
    "from_ml_dtypes",
]

#: The encodings :func:`encode_float` reproduces.
ENCODE_RUNTIMES = ("onnx_reference", "onnxruntime")


class ElementType(NamedTuple):
    """One ONNX element type (see the module tables).

    ``qmin``/``qmax`` are the integer range, or the finite float range for a minifloat. ``storage``
    is the NumPy dtype refdet holds unpacked values in (bit codes, ``uint8``, for a minifloat).
    ``exponent_bits``, ``mantissa_bits``, ``bias`` describe a minifloat (0 for integers).
    ``onnx_type`` is the ``TensorProto.DataType`` number; ``quantize_since`` the first opset whose
    QuantizeLinear output (or, for int32, DequantizeLinear input) may have this type.
    """
    name: str
    bits: int
    kind: str                 # "int" or "float"
    signed: bool
    qmin: float
    qmax: float
    storage: np.dtype
    onnx_type: int
    quantize_since: int
    exponent_bits: int = 0
    mantissa_bits: int = 0
    bias: int = 0


_I = np.dtype(np.int8)
_U = np.dtype(np.uint8)
ELEMENT_TYPES = {
    "uint8": ElementType("uint8", 8, "int", False, 0, 255, _U, 2, 10),
    "int8": ElementType("int8", 8, "int", True, -128, 127, _I, 3, 10),
    "uint16": ElementType("uint16", 16, "int", False, 0, 65535, np.dtype(np.uint16), 4, 21),
    "int16": ElementType("int16", 16, "int", True, -32768, 32767, np.dtype(np.int16), 5, 21),
    "int32": ElementType("int32", 32, "int", True, -(2 ** 31), 2 ** 31 - 1, np.dtype(np.int32), 6, 10),
    "uint4": ElementType("uint4", 4, "int", False, 0, 15, _U, 21, 21),
    "int4": ElementType("int4", 4, "int", True, -8, 7, _I, 22, 21),
    "uint2": ElementType("uint2", 2, "int", False, 0, 3, _U, 25, 25),
    "int2": ElementType("int2", 2, "int", True, -2, 1, _I, 26, 25),
    "float8e4m3fn": ElementType("float8e4m3fn", 8, "float", True, -448.0, 448.0, _U, 17, 19, 4, 3, 7),
    "float8e4m3fnuz": ElementType("float8e4m3fnuz", 8, "float", True, -240.0, 240.0, _U, 18, 19, 4, 3, 8),
    "float8e5m2": ElementType("float8e5m2", 8, "float", True, -57344.0, 57344.0, _U, 19, 19, 5, 2, 15),
    "float8e5m2fnuz": ElementType("float8e5m2fnuz", 8, "float", True, -57344.0, 57344.0, _U, 20, 19, 5, 2, 16),
    "float4e2m1": ElementType("float4e2m1", 4, "float", True, -6.0, 6.0, _U, 23, 23, 2, 1, 1),
}
INTEGER_TYPES = tuple(k for k, v in ELEMENT_TYPES.items() if v.kind == "int")
FLOAT_TYPES = tuple(k for k, v in ELEMENT_TYPES.items() if v.kind == "float")
#: Types stored several to a byte.
PACKED_TYPES = ("uint4", "int4", "float4e2m1", "uint2", "int2")

# spellings users reach for -> refdet's names
_ALIASES = {"float8_e4m3fn": "float8e4m3fn", "float8_e4m3fnuz": "float8e4m3fnuz", "float8_e5m2": "float8e5m2",
            "float8_e5m2fnuz": "float8e5m2fnuz", "float4_e2m1fn": "float4e2m1", "float4e2m1fn": "float4e2m1",
            "e4m3fn": "float8e4m3fn", "e4m3fnuz": "float8e4m3fnuz", "e5m2": "float8e5m2", "e5m2fnuz": "float8e5m2fnuz"}
_BY_ONNX = {v.onnx_type: k for k, v in ELEMENT_TYPES.items()}


def element_type(dtype, name: str = "dtype") -> ElementType:
    """The :class:`ElementType` for a name (``"int4"``, ``"float8e4m3fn"``, also ml_dtypes spellings such
    as ``"float8_e4m3fn"``), an ONNX ``TensorProto`` type number, a NumPy integer dtype, or an
    ml_dtypes dtype. Raises ValueError/TypeError naming ``name``."""
    if isinstance(dtype, ElementType):
        return dtype
    if isinstance(dtype, (int, np.integer)) and not isinstance(dtype, bool):
        key = _BY_ONNX.get(int(dtype))
        if key is None:
            raise ValueError(f"`{name}` must be an ONNX quantized element type; got TensorProto type {int(dtype)}")
        return ELEMENT_TYPES[key]
    if isinstance(dtype, str):
        key = _ALIASES.get(dtype, dtype)
    else:
        try:
            key = np.dtype(dtype).name
        except TypeError:
            raise TypeError(f"`{name}` must be an element type name such as 'int4' or 'float8e4m3fn'; got "
                            f"{type(dtype).__name__} {dtype!r}") from None
        key = _ALIASES.get(key, key)
    if key not in ELEMENT_TYPES:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(k) for k in ELEMENT_TYPES)}; got {dtype!r}")
    return ELEMENT_TYPES[key]


# ---------------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------------

def pack(values, dtype) -> np.ndarray:
    """Pack a tensor of a sub-byte type into bytes, ONNX's layout (first element in the low bits).

    Parameters
    ----------
    values : array_like of ints, any shape
        ``int4``/``int2``: integers in the type's range (two's complement is applied);
        ``uint4``/``uint2``: in ``[0, 15]`` / ``[0, 3]``; ``float4e2m1``: bit codes in ``[0, 15]``
        (from :func:`encode_float`).
    dtype : str
        One of ``"int4", "uint4", "float4e2m1", "int2", "uint2"``.

    Returns
    -------
    ndarray of uint8, shape (ceil(N * bits / 8),)
        ``N = values.size``, flattened in C order. Unused high bits of the last byte are 0.

    Example: int4 ``[2, -5, 6]`` -> ``[0xB2, 0x06]`` (``-5`` is ``0xB``; the odd element fills the low
    nibble of the second byte).
    """
    t = element_type(dtype)
    if t.name not in PACKED_TYPES:
        raise ValueError(f"`dtype` must be a packed sub-byte type ({', '.join(PACKED_TYPES)}); got {t.name!r}")
    arr = _checks.as_array(values, "values")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.size:
            raise TypeError(f"`values` must be integers (bit codes for float4e2m1); got dtype {arr.dtype}")
        else:
            arr = arr.astype(np.int64)
    flat = np.ascontiguousarray(arr).reshape(-1).astype(np.int64)
    lo, hi = (0, 15) if t.name == "float4e2m1" else (int(t.qmin), int(t.qmax))
    if flat.size and (flat.min() < lo or flat.max() > hi):
        bad = flat[(flat < lo) | (flat > hi)][0]
        raise ValueError(f"`values` must lie in [{lo}, {hi}] for {t.name}; got {int(bad)}")
    per = 8 // t.bits
    mask = (1 << t.bits) - 1
    n = flat.size
    padded = np.zeros(-(-n // per) * per, dtype=np.uint8)
    padded[:n] = (flat & mask).astype(np.uint8)                  # two's complement in `bits` bits
    lanes = padded.reshape(-1, per)                              # (bytes, elements per byte)
    shifts = (np.arange(per, dtype=np.uint8) * t.bits)           # element j of a byte at bit j * bits
    return np.bitwise_or.reduce(lanes << shifts, axis=1).astype(np.uint8)


def unpack(data, dtype, shape) -> np.ndarray:
    """Unpack bytes written by :func:`pack` (or by ONNX / onnxruntime) into one value per element.

    Parameters
    ----------
    data : array_like of uint8, shape (ceil(N * bits / 8),)
        The packed bytes (a ``bytes`` object is accepted). Exactly that many bytes are required; the
        unused high bits of the last byte are ignored.
    dtype : str
        ``"int4"``, ``"uint4"``, ``"float4e2m1"``, ``"int2"`` or ``"uint2"``.
    shape : tuple of int
        The tensor's shape (N = its product).

    Returns
    -------
    ndarray, shape ``shape``
        int8 (sign-extended) for int4/int2, uint8 for uint4/uint2, uint8 bit codes for float4e2m1.
    """
    t = element_type(dtype)
    if t.name not in PACKED_TYPES:
        raise ValueError(f"`dtype` must be a packed sub-byte type ({', '.join(PACKED_TYPES)}); got {t.name!r}")
    if isinstance(data, (bytes, bytearray)):
        raw = np.frombuffer(bytes(data), dtype=np.uint8)
    else:
        raw = _checks.as_array(data, "data")
        if raw.dtype.kind not in "iu":
            raise TypeError(f"`data` must be bytes or an array of byte values; got dtype {raw.dtype}")
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError(f"`data` must hold byte values in [0, 255]; got [{int(raw.min())}, {int(raw.max())}]")
        raw = raw.astype(np.uint8).reshape(-1)
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (int(shape),)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"`shape` must be a tuple of ints; got {type(shape).__name__} {shape!r}")
    shape = tuple(_checks.check_int(s, "shape", low=0) for s in shape)
    n = math.prod(shape)                                   # a Python int: no int64 wrap
    per = 8 // t.bits
    need = -(-n // per)
    if raw.size != need:
        raise ValueError(f"`data` must hold ceil({n} * {t.bits} / 8) = {need} bytes for `shape` {shape} of "
                         f"{t.name}; got {raw.size}")
    shifts = (np.arange(per, dtype=np.uint8) * t.bits)
    codes = ((raw[:, None] >> shifts) & ((1 << t.bits) - 1)).reshape(-1)[:n]   # (N,) the raw bit fields
    if t.signed and t.kind == "int":
        half = 1 << (t.bits - 1)
        out = np.where(codes >= half, codes.astype(np.int16) - (1 << t.bits), codes).astype(np.int8)
    else:
        out = codes.astype(np.uint8)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------------
# minifloat tables
# ---------------------------------------------------------------------------------------------------

def _minifloat(name):
    t = element_type(name)
    if t.kind != "float":
        raise ValueError(f"`dtype` must be one of {', '.join(FLOAT_TYPES)}; got {t.name!r}")
    return t


def _layout(t):
    """(sign bit, max positive code, NaN code for +, NaN code for -, +Inf code or None, has -0)."""
    sign = 1 << (t.bits - 1)
    if t.name == "float8e4m3fn":
        return sign, 0x7E, 0x7F, 0xFF, None, True
    if t.name == "float8e5m2":
        return sign, 0x7B, 0x7E, 0xFE, 0x7C, True
    if t.name in ("float8e4m3fnuz", "float8e5m2fnuz"):
        return sign, 0x7F, 0x80, 0x80, None, False
    return sign, 0x7, None, None, None, True          # float4e2m1


_TABLES: dict = {}


def float_code_values(dtype) -> np.ndarray:
    """The value of every code of a minifloat type: float64 array of length ``2**bits``, indexed by
    code (NaN codes give NaN with the code's sign, Inf codes give +-Inf). Built from the formula
    ``(1 + m / 2**M) * 2**(e - bias)`` (``m / 2**M * 2**(1 - bias)`` for e = 0)."""
    t = _minifloat(dtype)
    if t.name in _TABLES:
        return _TABLES[t.name].copy()
    n = 1 << t.bits
    codes = np.arange(n)
    sign_bit, max_code, nan_p, nan_n, inf_code, _ = _layout(t)
    e = (codes & (sign_bit - 1)) >> t.mantissa_bits
    m = codes & ((1 << t.mantissa_bits) - 1)
    mag = np.where(e == 0, m / 2.0 ** t.mantissa_bits * 2.0 ** (1 - t.bias),
                   (1 + m / 2.0 ** t.mantissa_bits) * 2.0 ** (e - t.bias))
    neg = (codes & sign_bit) != 0
    vals = np.where(neg, -mag, mag)
    mag_code = codes & (sign_bit - 1)
    if t.name == "float8e4m3fn":
        vals[mag_code == 0x7F] = np.nan
    elif t.name == "float8e5m2":
        vals[mag_code == 0x7C] = np.inf
        vals[mag_code > 0x7C] = np.nan
    elif t.name in ("float8e4m3fnuz", "float8e5m2fnuz"):
        vals[0x80] = np.nan
    vals = np.where(neg & np.isinf(vals), -np.inf, vals)
    vals = np.where(np.isnan(vals), np.copysign(np.nan, np.where(neg, -1.0, 1.0)), vals)
    _TABLES[t.name] = vals
    return vals.copy()


def decode_float(codes, dtype) -> np.ndarray:
    """The float32 value of each minifloat bit code (exact: every minifloat is a float32).

    Parameters
    ----------
    codes : array_like of uint8, any shape
        Bit codes in ``[0, 2**bits)`` (as from :func:`encode_float`, or ``unpack(..., "float4e2m1", shape)``).
    dtype : str
        A minifloat type name.

    Returns
    -------
    ndarray of float32, same shape. NaN codes give NaN carrying the code's sign bit (onnxruntime's
    ``ToFloat`` writes 0x7FC00000 / 0xFFC00000; ml_dtypes likewise keeps the sign).
    """
    t = _minifloat(dtype)
    arr = _checks.as_array(codes, "codes")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`codes` must be integer bit codes; got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= (1 << t.bits)):
        raise ValueError(f"`codes` must lie in [0, {(1 << t.bits) - 1}] for {t.name}; got "
                         f"[{int(arr.min())}, {int(arr.max())}]")
    table = float_code_values(t.name).astype(np.float32)
    return table[arr.astype(np.intp)]


def encode_float(x, dtype, *, saturate: bool = True, runtime: str = "onnx_reference") -> np.ndarray:
    """Round real numbers to a minifloat type, to nearest with ties to even, and return the bit codes.

    Parameters
    ----------
    x : array_like of float, any shape
        float16/float32/float64 (or integers): every value is rounded once, from its exact value (a
        float32 is exactly a float64, so there is no double rounding).
    dtype : str
        ``"float8e4m3fn"``, ``"float8e4m3fnuz"``, ``"float8e5m2"``, ``"float8e5m2fnuz"`` or ``"float4e2m1"``.
    saturate : bool
        ONNX's ``saturate`` attribute: out-of-range values and infinities become the largest finite
        value (True) or NaN/Inf (False, see the module table). float4e2m1 always saturates.
    runtime : {"onnx_reference", "onnxruntime"}
        Whose details to reproduce where they differ (the module docstring lists them with sources).

    Returns
    -------
    ndarray of uint8, same shape as ``x``: the codes (``sign | exponent | mantissa``).

    Notes
    -----
    The rounding is a search in the sorted table of the type's non-negative values: for
    ``v[i] <= |x| < v[i + 1]`` the result is ``i`` below the midpoint, ``i + 1`` above it, and the even
    code (mantissa LSB 0) on it; the midpoint of two minifloats is exact in float64. Above the largest
    finite value the next "virtual" value (``max + ulp``) plays ``v[i + 1]``, which is how 464 rounds
    to 448 in E4M3FN but 61440 overflows in E5M2 (its max code 0x7B is odd).
    """
    t = _minifloat(dtype)
    _checks.check_choice(runtime, "runtime", ENCODE_RUNTIMES)
    if not isinstance(saturate, (bool, np.bool_)) and not (isinstance(saturate, (int, np.integer))
                                                           and saturate in (0, 1)):
        raise TypeError(f"`saturate` must be a bool; got {type(saturate).__name__} {saturate!r}")
    saturate = bool(saturate)
    if runtime == "onnxruntime" and t.name == "float4e2m1":
        raise ValueError("`dtype` float4e2m1: onnxruntime 1.32 has no CPU encoder for float4e2m1 (QuantizeLinear "
                         "to it is NOT_IMPLEMENTED); use runtime='onnx_reference'")
    arr = _checks.as_array(x, "x")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"`x` must be real numbers; got dtype {arr.dtype}")
    with np.errstate(invalid="ignore"):          # signalling NaN bit patterns quieten without a warning
        a64 = arr.astype(np.float64)
    sign_bit, max_code, nan_p, nan_n, inf_code, neg_zero = _layout(t)
    table = float_code_values(t.name)[:max_code + 1]             # v[0] = 0 < v[1] < ... < v[max]
    ulp_top = table[max_code] - table[max_code - 1]
    ext = np.append(table, table[max_code] + ulp_top)            # the virtual code max + 1
    neg = np.signbit(a64)
    mag = np.abs(a64)
    finite = np.isfinite(mag)
    m = np.where(finite, mag, 0.0)
    i = np.searchsorted(ext, m, side="right") - 1                # ext[i] <= m < ext[i + 1]
    i = np.minimum(i, max_code + 1)
    lo = ext[i]
    hi = ext[np.minimum(i + 1, max_code + 1)]
    mid = (lo + hi) / 2                                          # exact: few significant bits
    up = (m > mid) | ((m == mid) & (i % 2 == 1))                 # ties to the even code
    code = np.where((i <= max_code) & (m != lo), i + up, i)      # m == lo exactly: code i
    overflow = code > max_code
    # out-of-range finite values and infinities
    if saturate or t.name == "float4e2m1":
        big = np.full(code.shape, max_code)
    elif inf_code is not None:
        big = np.full(code.shape, inf_code)
    else:
        big = np.full(code.shape, nan_p if not neg_zero else 0x7F)
    code = np.where(overflow | ~finite, big, code)
    if runtime == "onnxruntime":
        if t.name == "float8e4m3fn":
            # float8.h: a code that would read 0x7F has its low bit cleared before rounding: [480, 496) -> 448
            code = np.where(finite & (mag >= 480) & (mag < 496), max_code, code)
        elif t.name == "float8e5m2" and not saturate:
            # float8.h ORs the Inf code 0x7C into the max code 0x7B when rounding up from it: NaN 0x7F
            code = np.where(finite & (mag >= 61440) & (mag < 65536), 0x7F, code)
    code = code.astype(np.int64)
    # the sign: fnuz types have no negative zero and a single NaN (0x80) that carries no sign
    if neg_zero:
        code = np.where(neg, code | sign_bit, code)
    else:
        code = np.where(neg & (code != 0) & (code != 0x80), code | sign_bit, code)
    # NaN inputs
    nan = np.isnan(a64)
    if nan.any():
        if t.name == "float4e2m1":
            # ml_dtypes 0.7 (onnx.reference): +NaN -> 0x8 (-0), -NaN -> 0x0
            nan_code = np.where(neg, 0x0, 0x8)
        elif t.name == "float8e5m2" and runtime == "onnxruntime":
            nan_code = np.where(neg, 0xFF, 0x7F)
        else:
            nan_code = np.where(neg, nan_n, nan_p)
        code = np.where(nan, nan_code, code)
    return code.astype(np.uint8).reshape(arr.shape)


# ---------------------------------------------------------------------------------------------------
# ml_dtypes interop (optional)
# ---------------------------------------------------------------------------------------------------

_ML_NAMES = {"float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz", "float8e5m2": "float8_e5m2",
             "float8e5m2fnuz": "float8_e5m2fnuz", "float4e2m1": "float4_e2m1fn", "int4": "int4", "uint4": "uint4",
             "int2": "int2", "uint2": "uint2"}


def _ml_dtypes():
    try:
        import ml_dtypes  # noqa: PLC0415  (optional)
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("ml_dtypes is not installed (pip install ml_dtypes; it comes with onnx >= 1.18)") from None
    return ml_dtypes


def as_ml_dtypes(values, dtype) -> np.ndarray:
    """refdet's representation (integers, or bit codes for a minifloat) as an ``ml_dtypes`` array of the
    same shape (needs ml_dtypes). 8/16/32-bit integer types are returned as plain NumPy arrays."""
    t = element_type(dtype)
    arr = _checks.as_array(values, "values")
    if t.name not in _ML_NAMES:
        return arr.astype(t.storage)
    mld = getattr(_ml_dtypes(), _ML_NAMES[t.name])
    if t.kind == "float":
        return np.ascontiguousarray(arr.astype(np.uint8)).view(mld)
    return arr.astype(t.storage).astype(mld)


def from_ml_dtypes(array) -> Tuple[np.ndarray, str]:
    """``(values, dtype name)`` of an ml_dtypes (or NumPy integer) array: integers as int8/uint8, minifloats
    as their uint8 bit codes."""
    arr = np.asarray(array)
    name = _ALIASES.get(arr.dtype.name, arr.dtype.name)
    t = element_type(name, "array.dtype")
    if t.kind == "float":
        return np.ascontiguousarray(arr).view(np.uint8).copy(), t.name
    return arr.astype(t.storage), t.name


def _storage_range(t: ElementType) -> Tuple[Optional[int], Optional[int]]:
    return (int(t.qmin), int(t.qmax)) if t.kind == "int" else (None, None)
