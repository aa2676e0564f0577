"""The fast paths of refdet.onnx_ops / refdet.quant.onnx_qdq / refdet.quant.types held equal to the readable
references of refdet.reference.onnx_ops (bit-equal where the order of operations is the same)."""
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refdet.onnx_ops as O
from refdet.quant import quantize_linear
from refdet.quant import types as T
from refdet.reference import onnx_ops as R


@given(row=hnp.arrays(np.float64, st.integers(1, 12), elements=st.integers(-3, 3).map(float) | st.just(np.nan)
                      | st.just(-0.0)),
       largest=st.booleans(), data=st.data())
def test_topk_equals_reference(row, largest, data):
    k = data.draw(st.integers(0, row.size))
    _, idx = O.topk(row, k, largest=largest)
    assert idx.tolist() == R.topk(row, k, largest=largest)


_LAYOUT = {"float8e4m3fn": dict(nan_code=0x7F), "float8e5m2": dict(nan_code=0x7E, inf_code=0x7C),
           "float8e4m3fnuz": dict(nan_code=0x80, signed_zero=False), "float8e5m2fnuz": dict(nan_code=0x80,
                                                                                           signed_zero=False),
           "float4e2m1": dict(nan_code=None, sign_bit=0x8)}
_MAXCODE = {"float8e4m3fn": 0x7E, "float8e5m2": 0x7B, "float8e4m3fnuz": 0x7F, "float8e5m2fnuz": 0x7F, "float4e2m1": 7}


@given(x=st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([464.0, 61440.0, 248.0, 2.0 ** -10]),
       name=st.sampled_from(list(_LAYOUT)), saturate=st.booleans())
def test_encode_float_equals_the_definition(x, name, saturate):
    if name == "float4e2m1" and math.isnan(x):
        return                                   # the spec leaves NaN -> float4 open (module docstring)
    values = T.float_code_values(name)[:_MAXCODE[name] + 1]
    want = R.encode_float_scalar(x, values, saturate=saturate or name == "float4e2m1", **_LAYOUT[name])
    assert int(T.encode_float(np.float64(x), name, saturate=saturate)) == want


@given(vals=st.lists(st.integers(-8, 7), max_size=17), bits=st.sampled_from([4, 2]))
def test_pack_equals_reference(vals, bits):
    name = "int4" if bits == 4 else "int2"
    vals = [v for v in vals if -(1 << (bits - 1)) <= v < (1 << (bits - 1))]
    packed = T.pack(np.array(vals, np.int64), name)
    assert packed.tolist() == R.pack(vals, bits)
    assert T.unpack(packed, name, (len(vals),)).tolist() == R.unpack(packed.tolist(), bits, len(vals), signed=True)


@given(k=st.integers(-600, 600), frac=st.sampled_from([0.0, 0.25, 0.5, 0.75, -0.5]), e=st.integers(-4, 4),
       zp=st.integers(-20, 20))
def test_quantize_linear_equals_reference(k, frac, e, zp):
    s = np.float32(2.0 ** e)
    x = np.float32((k + frac) * float(s))
    got = int(quantize_linear(np.array([x]), s, np.array(zp, np.int8))[0])
    assert got == R.quantize_linear(x, s, zp, -128, 127)


@given(values=hnp.arrays(np.float64, st.integers(1, 7), elements=st.floats(-10, 10)),
       out=st.integers(1, 15), mode=st.sampled_from(["nearest", "linear", "cubic"]),
       ctm=st.sampled_from(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]),
       nearest=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
       excl=st.booleans())
def test_resize_1d_equals_the_spec_formulas(values, out, mode, ctm, nearest, excl):
    # the onnx_reference runtime with sizes (scale = L / n, so s * n = L and the reference's unrounded width is the
    # integer length) is the spec's formula; float64 both, the reference's float32 cubic coefficients excepted
    if ctm == "pytorch_half_pixel" and out == 1:
        return                                   # onnx.reference: -0.5 (not the spec's 0)
    got = O.resize(values, sizes=[out], mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest,
                   exclude_outside=int(excl and mode == "cubic"), runtime="onnx_reference")
    want = R.resize_1d(values, out, mode=mode, coordinate_transformation_mode=ctm, nearest_mode=nearest,
                       exclude_outside=excl and mode == "cubic")
    # cubic: onnx.reference rounds the coefficients (and the ratio entering them) to float32: ~2e-6 per unit value
    tol = 1e-5 * (1 + np.abs(values).max()) if mode == "cubic" else 1e-12 * (1 + np.abs(values).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_contract_covers_every_onnx_ops_and_quant_types_name():
    # refdet.onnx_ops and refdet.quant.types stay out of refdet's top level, so tests/test_contract.py's own
    # coverage check does not see them: every public name has a contract case or an exemption
    import refdet.onnx_ops as OO
    from tests.contract import onnx_ops as C
    covered = {c.name for c in C.CASES} | set(C.EXEMPT)
    missing = [f"onnx_ops.{n}" for n in OO.__all__ if f"onnx_ops.{n}" not in covered]
    missing += [f"quant.types.{n}" for n in T.__all__ if f"quant.types.{n}" not in covered]
    assert not missing, missing
