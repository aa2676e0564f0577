"""ONNX's own node test cases for every operator refdet implements, run in OpenVINO and OpenCV dnn.

The cases are those of ``tests/test_onnx_ops_node_cases.py`` (one-node models of Softmax, LogSoftmax,
LeakyRelu, ConvTranspose, Resize, TopK, QuantizeLinear, DequantizeLinear). Each case's model runs in
OpenVINO (``Core().read_model(bytes)``, the ONNX frontend, CPU plugin, f32) and in OpenCV dnn
(``cv2.dnn.readNetFromONNX``); its outputs are compared with the case's expected outputs. Every case
must agree except those listed in :data:`DEVIATIONS`, whose current behaviour is asserted (a runtime
that starts loading, running or agreeing on one of them fails the test, so the table is kept true):

* ``"load"`` / ``"run"``: the runtime refuses the model / cannot run it; the recorded message must match;
* ``"differs"``: it runs and disagrees; the test then checks the runtime's answer equals the named
  refdet variant (the attribute the runtime ignores, onnxruntime's formula, ...) or the stated rule.

The same table is in ``docs/guides/runtime_deviations.rst``. The runtimes are skipped when missing.
"""
import numpy as np
import pytest

pytest.importorskip("onnx")

from onnx import helper  # noqa: E402

from tests import _node_case_runtimes as R  # noqa: E402
from tests.test_onnx_ops_node_cases import CASES, KNOWN_DIFFERENCES, _close, _expected, run_case  # noqa: E402

_ALIGN = "divides by L - 1 like onnxruntime (the generator divides by scale * n - 1); equals refdet's onnxruntime"
_TYPES2 = "no 2-bit types (int2/uint2, ONNX opset 25)"


def _ov_quant_rounding(case, got):
    """OpenVINO's QuantizeLinear: round half to even of x / scale + zero_point (ONNX: of x / scale, then
    + zero_point)."""
    x, s, zp = R._inputs(case)
    want = np.clip(np.rint(x.astype(np.float32) / s.astype(np.float32) + np.float32(zp.ravel()[0])), 0, 65535)
    return np.array_equal(got[0], want.astype(np.uint16))


def _topk_ties_any_order(case, got):
    """Values equal the expected ones; the indices pick tied elements, not the lowest index first."""
    x = R._inputs(case)[0]
    want = _expected(case)
    vals, idx = np.asarray(got[0]), np.asarray(got[1])
    picked = np.take_along_axis(x, idx, axis=-1)
    return np.array_equal(vals, want[0]) and np.array_equal(picked, want[0]) and not np.array_equal(idx, want[1])


#: runtime -> case -> (status, why, how the deviation is checked: refdet variant or a rule)
DEVIATIONS = {
    "openvino": {
        "test_dequantizelinear_uint2": ("load", _TYPES2, "Unsupported data type UINT2"),
        "test_dequantizelinear_int2": ("load", _TYPES2, "Unsupported data type INT2"),
        "test_quantizelinear_uint2": ("load", _TYPES2, "Unsupported data type UINT2"),
        "test_quantizelinear_int2": ("load", _TYPES2, "Unsupported data type INT2"),
        "test_quantizelinear_float4e2m1": ("load", "no QuantizeLinear to float4e2m1",
                                           "Conversion is failed for: QuantizeLinear"),
        "test_quantizelinear_blocked_symmetric": ("load", "no blocked QuantizeLinear without a zero point",
                                                  "Conversion is failed for: QuantizeLinear"),
        "test_quantizelinear_uint16": ("differs", "rounds x / scale + zero_point half to even (1.5 + 32767 -> "
                                                  "32768); ONNX rounds x / scale first (2 + 32767 = 32769)",
                                       _ov_quant_rounding),
        "test_resize_downsample_scales_linear_align_corners": ("differs", _ALIGN, {"runtime": "onnxruntime"}),
        "test_resize_downsample_scales_cubic_align_corners": ("differs", _ALIGN, {"runtime": "onnxruntime"}),
        "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside": (
            "differs", "ignores exclude_outside (equals refdet with exclude_outside=0)", {"exclude_outside": 0}),
        "test_resize_downsample_scales_cubic_A_n0p5_exclude_outside": (
            "differs", "ignores exclude_outside (equals refdet with exclude_outside=0)", {"exclude_outside": 0}),
        "test_resize_downsample_scales_linear_antialias": ("differs", "ignores antialias", {"antialias": 0}),
        "test_resize_downsample_sizes_linear_antialias": ("differs", "ignores antialias", {"antialias": 0}),
        "test_resize_downsample_scales_cubic_antialias": ("differs", "ignores antialias", {"antialias": 0}),
        "test_resize_downsample_sizes_cubic_antialias": ("differs", "ignores antialias", {"antialias": 0}),
        "test_resize_tf_crop_and_resize": ("load", "no tf_crop_and_resize", "Conversion is failed for: Resize"),
        "test_resize_tf_crop_and_resize_extrapolation_value": ("load", "no tf_crop_and_resize",
                                                               "Conversion is failed for: Resize"),
        "test_resize_tf_crop_and_resize_axes_2_3": ("load", "no tf_crop_and_resize",
                                                    "Conversion is failed for: Resize"),
        "test_resize_tf_crop_and_resize_axes_3_2": ("load", "no tf_crop_and_resize",
                                                    "Conversion is failed for: Resize"),
        "test_resize_downsample_scales_linear_half_pixel_symmetric": ("load", "no half_pixel_symmetric",
                                                                      "Conversion is failed for: Resize"),
        "test_resize_upsample_scales_linear_half_pixel_symmetric": ("load", "no half_pixel_symmetric",
                                                                    "Conversion is failed for: Resize"),
        "test_resize_upsample_sizes_nearest_not_larger": (
            "differs", "ignores keep_aspect_ratio_policy (uses sizes as given)", {"keep_aspect_ratio_policy": "stretch"}),
        "test_resize_upsample_sizes_nearest_not_smaller": (
            "differs", "ignores keep_aspect_ratio_policy (uses sizes as given)", {"keep_aspect_ratio_policy": "stretch"}),
        "test_resize_downsample_sizes_nearest_not_larger": (
            "differs", "ignores keep_aspect_ratio_policy (uses sizes as given)", {"keep_aspect_ratio_policy": "stretch"}),
        "test_resize_downsample_sizes_nearest_not_smaller": (
            "differs", "ignores keep_aspect_ratio_policy (uses sizes as given)", {"keep_aspect_ratio_policy": "stretch"}),
        "test_top_k_same_values": ("differs", "tied values: not the lowest index first", _topk_ties_any_order),
        "test_top_k_same_values_largest": ("differs", "tied values: not the lowest index first",
                                           _topk_ties_any_order),
        "test_top_k_same_values_2d": ("differs", "tied values: not the lowest index first", _topk_ties_any_order),
    },
    "opencv": {
        "test_dequantizelinear_uint2": ("load", _TYPES2, "unsupported datatype"),
        "test_dequantizelinear_int2": ("load", _TYPES2, "unsupported datatype"),
        "test_quantizelinear_uint2": ("load", _TYPES2, "unsupported datatype"),
        "test_quantizelinear_int2": ("load", _TYPES2, "unsupported datatype"),
        "test_resize_downsample_scales_linear_align_corners": ("differs", _ALIGN, {"runtime": "onnxruntime"}),
        "test_resize_downsample_scales_cubic_align_corners": ("differs", _ALIGN, {"runtime": "onnxruntime"}),
    },
}
# cv2's Python binding has no float8 / 4-bit arrays: these cases cannot be fed (not a kernel limitation)
for _name in ("test_dequantizelinear_e4m3fn", "test_dequantizelinear_e4m3fn_float16",
              "test_dequantizelinear_e4m3fn_zero_point", "test_dequantizelinear_e5m2", "test_dequantizelinear_uint4",
              "test_dequantizelinear_int4", "test_dequantizelinear_float4e2m1", "test_quantizelinear_e4m3fn",
              "test_quantizelinear_e5m2", "test_quantizelinear_uint4", "test_quantizelinear_int4",
              "test_quantizelinear_float4e2m1"):
    DEVIATIONS["opencv"][_name] = ("run", "cv2's Python binding cannot feed float8 / 4-bit arrays",
                                   "cv2's Python binding cannot feed")

_MODULES = {"openvino": "openvino", "opencv": "cv2"}
_NAMES = {c.name for c in CASES}


def test_the_table_names_real_cases():
    for runtime, table in DEVIATIONS.items():
        assert set(table) <= _NAMES, set(table) - _NAMES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_refdet_equals_the_onnx_expected_output(case):
    got = run_case(case, "onnx_reference")
    want = _expected(case)
    assert len(got) == len(want) and all(_close(g, w) for g, w in zip(got, want)), case.name


def _refdet_variant(case, how):
    """refdet's outputs for ``case`` with attribute overrides (or runtime="onnxruntime")."""
    runtime = how.get("runtime", "onnx_reference")
    overrides = {k: v for k, v in how.items() if k != "runtime"}
    if not overrides:
        return run_case(case, runtime)
    node = case.model.graph.node[0]
    keep = [a for a in node.attribute if a.name not in overrides]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(k, v) for k, v in overrides.items()])
    return run_case(case, runtime)


@pytest.mark.parametrize("runtime", ["openvino", "opencv"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_node_case_in_runtime(case, runtime):
    pytest.importorskip(_MODULES[runtime])
    entry = DEVIATIONS[runtime].get(case.name)
    status, res = (R.run_openvino if runtime == "openvino" else R.run_opencv)(case)
    want = _expected(case)
    if entry is None:
        assert status == "ok", f"{runtime} {status}: {res}"
        diff = R.compare(res, want, _close)
        assert diff is None, f"{runtime} differs from ONNX on {case.name}: {diff}"
        # and from refdet (which equals ONNX but for the documented onnxruntime cases)
        if (case.name, "onnx_reference") not in KNOWN_DIFFERENCES:
            assert R.compare(res, run_case(case, "onnx_reference"), _close) is None
        return
    want_status, why, how = entry
    if want_status in ("load", "run"):
        assert status == want_status, f"{runtime} now gets past '{want_status}' on {case.name} ({why}): {res}"
        assert how in res, res
        return
    assert status == "ok", f"{runtime} {status}: {res}"
    assert R.compare(res, want, _close) is not None, f"{runtime} now agrees on {case.name} ({why}): update the table"
    if callable(how):
        assert how(case, res), f"{runtime} on {case.name}: not the documented deviation ({why})"
    else:
        import copy
        alt = _refdet_variant(copy.deepcopy(case), how)
        assert R.compare(res, alt, _close) is None, f"{runtime} on {case.name}: not refdet with {how} ({why})"
