"""Tests of refdet.quant.types: the ONNX element types bit for bit.

Pins: the packing layout (first element in the low bits, two's complement) against
onnx.numpy_helper's packers and unpackers, float8/float4 encoding against ml_dtypes (what onnx.reference
casts with) on every float16 and on random float32/float64 bit patterns, the onnxruntime encoding
against onnxruntime's own QuantizeLinear output bytes, and the special-value tables.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refdet.quant import types as T

FLOAT8 = ("float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz")
ML_NAMES = {"float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz", "float8e5m2": "float8_e5m2",
            "float8e5m2fnuz": "float8_e5m2fnuz", "float4e2m1": "float4_e2m1fn"}


def _ml():
    return pytest.importorskip("ml_dtypes")


# ---------------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------------

def test_pack_golden_int4_uint2():
    # int4 [2, -5, 6]: -5 is 0xB in two's complement; element 0 -> low nibble of byte 0, element 1 -> high nibble,
    # the odd element 2 -> low nibble of byte 1 (its high nibble 0)
    np.testing.assert_array_equal(T.pack([2, -5, 6], "int4"), [0xB2, 0x06])
    # uint2 [1, 2, 3, 0, 1]: byte 0 = 1 | 2 << 2 | 3 << 4 | 0 << 6 = 0x39, byte 1 = 1
    np.testing.assert_array_equal(T.pack([1, 2, 3, 0, 1], "uint2"), [0x39, 0x01])
    # int2 [-2, -1, 0, 1]: 0b10, 0b11, 0b00, 0b01 -> 0b01_00_11_10 = 0x4E
    np.testing.assert_array_equal(T.pack([-2, -1, 0, 1], "int2"), [0x4E])
    np.testing.assert_array_equal(T.unpack(bytes([0xB2, 0x06]), "int4", (3,)), [2, -5, 6])
    assert T.unpack(bytes([0xB2, 0x06]), "int4", (3,)).dtype == np.int8
    np.testing.assert_array_equal(T.unpack([0x4E], "int2", (2, 2)), [[-2, -1], [0, 1]])
    assert T.pack(np.zeros((0,), np.int8), "int4").shape == (0,)


@pytest.mark.parametrize("name", ["int4", "uint4", "int2", "uint2", "float4e2m1"])
@given(data=st.data())
def test_pack_matches_onnx_numpy_helper(name, data):
    # onnx.numpy_helper.from_array packs ml_dtypes int4/uint4/int2/uint2/float4 tensors into raw_data; odd lengths
    # (a half-filled last byte) included
    pytest.importorskip("onnx")
    ml = _ml()
    from onnx import numpy_helper

    t = T.element_type(name)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7))
    lo, hi = (0, 15) if name == "float4e2m1" else (int(t.qmin), int(t.qmax))
    vals = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, hi)))
    arr = T.as_ml_dtypes(vals, name)
    assert arr.dtype == getattr(ml, ML_NAMES.get(name, name))
    raw = np.frombuffer(numpy_helper.from_array(arr).raw_data, dtype=np.uint8)
    packed = T.pack(vals, name)
    np.testing.assert_array_equal(packed, raw)
    # and back: refdet's unpack equals numpy_helper.to_array of the same bytes
    back = T.unpack(packed, name, shape)
    np.testing.assert_array_equal(back, vals)
    values, got_name = T.from_ml_dtypes(numpy_helper.to_array(numpy_helper.from_array(arr)))
    assert got_name == name
    np.testing.assert_array_equal(values, vals)


def test_unpack_ignores_padding_bits_and_checks_length():
    # the high nibble of the last byte of an odd-length int4 tensor is padding: ignored
    np.testing.assert_array_equal(T.unpack([0xB2, 0xF6], "int4", (3,)), [2, -5, 6])
    with pytest.raises(ValueError, match=r"`data` must hold ceil\(3 \* 4 / 8\) = 2 bytes"):
        T.unpack([0xB2], "int4", (3,))
    with pytest.raises(ValueError, match=r"`values` must lie in \[-8, 7\] for int4; got 8"):
        T.pack([8], "int4")
    with pytest.raises(ValueError, match=r"`dtype` must be a packed sub-byte type"):
        T.pack([1], "int8")
    with pytest.raises(TypeError, match=r"`values` must be integers"):
        T.pack([0.5], "uint4")
    with pytest.raises(ValueError, match=r"`dtype` must be one of"):
        T.element_type("int3")


# ---------------------------------------------------------------------------------------------------
# minifloats: decoding
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ML_NAMES))
def test_decode_every_code_matches_ml_dtypes(name):
    ml = _ml()
    n = 256 if name.startswith("float8") else 16
    codes = np.arange(n, dtype=np.uint8)
    mine = T.decode_float(codes, name)
    theirs = codes.view(getattr(ml, ML_NAMES[name])).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs))
    ok = ~np.isnan(mine)
    np.testing.assert_array_equal(mine[ok].view(np.uint32), theirs[ok].view(np.uint32))   # -0.0 included
    np.testing.assert_array_equal(np.signbit(mine), np.signbit(theirs))                      # NaN sign too


def test_minifloat_tables():
    # (1 + m/2^M) 2^(e - bias); the largest finite values and the smallest subnormals
    assert T.float_code_values("float8e4m3fn")[0x7E] == 448 and np.isnan(T.float_code_values("float8e4m3fn")[0x7F])
    assert T.float_code_values("float8e4m3fnuz")[0x7F] == 240 and np.isnan(T.float_code_values("float8e4m3fnuz")[0x80])
    assert T.float_code_values("float8e5m2")[0x7B] == 57344 and T.float_code_values("float8e5m2")[0x7C] == np.inf
    assert T.float_code_values("float8e5m2fnuz")[0x7F] == 57344
    assert T.float_code_values("float8e4m3fn")[1] == 2.0 ** -9 and T.float_code_values("float8e5m2")[1] == 2.0 ** -16
    np.testing.assert_array_equal(T.float_code_values("float4e2m1")[:8], [0, 0.5, 1, 1.5, 2, 3, 4, 6])
    assert T.float_code_values("float4e2m1")[8] == 0 and np.signbit(T.float_code_values("float4e2m1")[8])
    for name in ML_NAMES:
        t = T.element_type(name)
        assert T.float_code_values(name)[~np.isnan(T.float_code_values(name))].max() in (t.qmax, np.inf)


# ---------------------------------------------------------------------------------------------------
# minifloats: encoding
# ---------------------------------------------------------------------------------------------------

# value: {type: (code with saturate=True, code with saturate=False)} (the spec's table, ml_dtypes' NaN payloads)
SPECIALS = {
    np.inf: {"float8e4m3fn": (0x7E, 0x7F), "float8e4m3fnuz": (0x7F, 0x80), "float8e5m2": (0x7B, 0x7C),
             "float8e5m2fnuz": (0x7F, 0x80)},
    -np.inf: {"float8e4m3fn": (0xFE, 0xFF), "float8e4m3fnuz": (0xFF, 0x80), "float8e5m2": (0xFB, 0xFC),
              "float8e5m2fnuz": (0xFF, 0x80)},
    np.nan: {"float8e4m3fn": (0x7F, 0x7F), "float8e4m3fnuz": (0x80, 0x80), "float8e5m2": (0x7E, 0x7E),
             "float8e5m2fnuz": (0x80, 0x80)},
    -0.0: {"float8e4m3fn": (0x80, 0x80), "float8e4m3fnuz": (0x00, 0x00), "float8e5m2": (0x80, 0x80),
           "float8e5m2fnuz": (0x00, 0x00)},
    # 464 is the tie between 448 (mantissa 110, even) and the missing 480: rounds to 448
    464.0: {"float8e4m3fn": (0x7E, 0x7E)},
    # just above the tie: beyond the range -> NaN without saturation
    464.0001: {"float8e4m3fn": (0x7E, 0x7F)},
    # E5M2: 61440 is the tie between 57344 (0x7B, odd) and 65536: to even = overflow -> Inf without saturation
    61440.0: {"float8e5m2": (0x7B, 0x7C)},
    61439.0: {"float8e5m2": (0x7B, 0x7B)},
    # E4M3FNUZ: 248 is the tie between 240 (0x7F, odd) and 256: overflow -> NaN (0x80) without saturation
    248.0: {"float8e4m3fnuz": (0x7F, 0x80)},
    # the smallest E4M3FN subnormal is 2^-9; half of it is a tie to even -> 0, a hair more -> 2^-9
    2.0 ** -10: {"float8e4m3fn": (0x00, 0x00)},
    1.5 * 2.0 ** -10: {"float8e4m3fn": (0x01, 0x01)},
    -1e-30: {"float8e4m3fn": (0x80, 0x80), "float8e4m3fnuz": (0x00, 0x00)},
}


@pytest.mark.parametrize("value", list(SPECIALS), ids=repr)
def test_encode_special_values_table(value):
    for name, (sat, nosat) in SPECIALS[value].items():
        assert T.encode_float(np.float32(value), name, saturate=True) == sat, (value, name)
        assert T.encode_float(np.float32(value), name, saturate=False) == nosat, (value, name)


def test_encode_onnxruntime_quirks():
    # measured on onnxruntime 1.32 (core/framework/float8.h): [480, 496) -> 448 in E4M3FN without saturation;
    # E5M2 without saturation gives NaN 0x7F (not Inf) for [61440, 65536), and NaN is 0x7F (ml_dtypes: 0x7E)
    enc = lambda v, n, s: int(T.encode_float(np.float32(v), n, saturate=s, runtime="onnxruntime"))  # noqa: E731
    assert enc(480, "float8e4m3fn", False) == 0x7E and enc(495.9, "float8e4m3fn", False) == 0x7E
    assert enc(496, "float8e4m3fn", False) == 0x7F and enc(480, "float8e4m3fn", True) == 0x7E
    assert enc(61440, "float8e5m2", False) == 0x7F and enc(-61440, "float8e5m2", False) == 0xFF
    assert enc(65536, "float8e5m2", False) == 0x7C and enc(61440, "float8e5m2", True) == 0x7B
    assert enc(np.nan, "float8e5m2", True) == 0x7F and enc(-np.nan, "float8e5m2", True) == 0xFF
    with pytest.raises(ValueError, match=r"float4e2m1: onnxruntime 1\.32 has no CPU encoder"):
        T.encode_float([1.0], "float4e2m1", runtime="onnxruntime")


def test_float4_rounding_and_nan():
    # RNE between neighbours: 5 ties 4 (code 6, even) and 6 (code 7) -> 4; 0.25 ties 0 and 0.5 -> 0
    np.testing.assert_array_equal(T.encode_float([5.0, 0.25, 0.75, 2.5, 7.0, 100, -0.3, -0.0], "float4e2m1"),
                                  [0x6, 0x0, 0x2, 0x4, 0x7, 0x7, 0x9, 0x8])
    # ml_dtypes 0.7 (onnx.reference): +NaN -> 0x8, -NaN -> 0x0
    assert T.encode_float(np.nan, "float4e2m1") == 0x8 and T.encode_float(-np.nan, "float4e2m1") == 0x0


def _ml_encode(x, name, saturate):
    ml = _ml()
    dt = getattr(ml, ML_NAMES[name])
    if saturate:
        info = ml.finfo(dt)
        x = np.clip(x, info.min, info.max)                   # onnx.numpy_helper.saturate_cast
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(dt).view(np.uint8)


@pytest.mark.parametrize("name", list(ML_NAMES))
@pytest.mark.parametrize("saturate", [True, False])
def test_encode_every_float16_and_random_float32_bits_match_ml_dtypes(name, saturate):
    rng = np.random.default_rng(7)
    x = np.concatenate([np.arange(2 ** 16, dtype=np.uint16).view(np.float16).astype(np.float32),
                        rng.integers(0, 2 ** 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        np.arange(400, 70000, 0.5, dtype=np.float32)])
    mine = T.encode_float(x, name, saturate=saturate)
    theirs = _ml_encode(x, name, saturate)
    bad = np.nonzero(mine != theirs)[0]
    assert bad.size == 0, [(x[i], hex(mine[i]), hex(theirs[i])) for i in bad[:5]]


@given(x=hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(allow_nan=True, allow_infinity=True)),
       name=st.sampled_from(list(ML_NAMES)), saturate=st.booleans())
def test_encode_float64_single_rounding_matches_ml_dtypes(x, name, saturate):
    # a float64 is rounded once (not via float32); ml_dtypes casts float64 directly
    np.testing.assert_array_equal(T.encode_float(x, name, saturate=saturate), _ml_encode(x, name, saturate))


def _ort_quantize_bytes(x, name, saturate):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ml = _ml()
    from onnx import TensorProto

    from tests._onnx_ops_runtime import make_model, run_ort_bytes
    tp = {"float8e4m3fn": TensorProto.FLOAT8E4M3FN, "float8e4m3fnuz": TensorProto.FLOAT8E4M3FNUZ,
          "float8e5m2": TensorProto.FLOAT8E5M2, "float8e5m2fnuz": TensorProto.FLOAT8E5M2FNUZ}[name]
    zp = np.zeros((), getattr(ml, ML_NAMES[name]))
    m = make_model("QuantizeLinear", [("x", x, False), ("s", np.array(1.0, np.float32), True), ("z", zp, True)],
                   [("y", tp)], attrs={"saturate": int(saturate)}, opset=21)
    return run_ort_bytes(m, {"x": x})[0][0]


@pytest.mark.parametrize("name", FLOAT8)
@pytest.mark.parametrize("saturate", [True, False])
def test_encode_onnxruntime_matches_onnxruntime_bytes(name, saturate):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.integers(0, 2 ** 32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        np.arange(2 ** 16, dtype=np.uint16).view(np.float16).astype(np.float32),
                        np.arange(440, 70000, 0.25, dtype=np.float32),
                        np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)])
    theirs = _ort_quantize_bytes(x, name, saturate)
    mine = T.encode_float(x, name, saturate=saturate, runtime="onnxruntime")
    bad = np.nonzero(mine != theirs)[0]
    assert bad.size == 0, [(x[i], hex(mine[i]), hex(theirs[i])) for i in bad[:5]]


@given(x=hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(width=32, allow_nan=True)),
       name=st.sampled_from(FLOAT8), saturate=st.booleans())
def test_encode_onnxruntime_hypothesis(x, name, saturate):
    np.testing.assert_array_equal(T.encode_float(x, name, saturate=saturate, runtime="onnxruntime"),
                                  _ort_quantize_bytes(x, name, saturate))


def test_encode_decode_round_trip_and_layouts():
    codes = np.arange(256, dtype=np.uint8)
    for name in FLOAT8:
        vals = T.decode_float(codes, name)
        again = T.encode_float(vals, name, saturate=False)
        finite = np.isfinite(vals)
        # every finite code (-0 of the fnuz types does not exist) comes back as itself
        np.testing.assert_array_equal(again[finite], codes[finite])
    x = np.linspace(-500, 500, 24, dtype=np.float32).reshape(4, 6)
    ref = T.encode_float(x, "float8e4m3fn")
    for v in (np.asfortranarray(x), x[:, ::-1][:, ::-1], x.copy()):
        v.setflags(write=False)
        np.testing.assert_array_equal(T.encode_float(v, "float8e4m3fn"), ref)


def test_element_type_lookup():
    assert T.element_type("float8_e4m3fn").name == "float8e4m3fn"       # ml_dtypes spelling
    assert T.element_type(22).name == "int4"                             # TensorProto.INT4
    assert T.element_type(np.int16).name == "int16"
    assert T.element_type("uint2").qmax == 3 and T.element_type("int2").qmin == -2
    with pytest.raises(ValueError, match=r"`dtype` must be an ONNX quantized element type; got TensorProto type 1"):
        T.element_type(1)
    with pytest.raises(TypeError, match=r"`dtype` must be an element type name"):
        T.element_type(object())
    with pytest.raises(ValueError, match=r"`codes` must lie in \[0, 15\] for float4e2m1"):
        T.decode_float([16], "float4e2m1")
    with pytest.raises(ValueError, match=r"`runtime` must be one of"):
        T.encode_float([1.0], "float8e5m2", runtime="tflite")
