"""Contract cases for refdet.onnx_ops (names "onnx_ops.<name>": the operators live under refdet.onnx_ops)
and ONNX QuantizeLinear/DequantizeLinear with the element types (refdet.quant, refdet.quant.types).

Every operator and layer pair: read-only inputs accepted and never written. The bad inputs: unsupported
attribute combinations raise a ValueError naming the attribute and the runtime that defines it.
"""
import numpy as np

import refdet.onnx_ops  # noqa: F401  (makes refdet.onnx_ops reachable as an attribute)
import refdet.onnx_ops as O
from tests.contract import Bad, Case


def _x(r, shape=(2, 3, 4, 5)):
    return r.standard_normal(shape).astype(np.float32)


def _bwd(fwd, make):
    def m(r):
        args, kw = make(r)
        y, cache = fwd(*args, **kw)
        return (r.standard_normal(y.shape).astype(y.dtype), cache), {}
    return m


def _ct(r):
    return (r.standard_normal((1, 4, 3, 4)), r.standard_normal((4, 3, 3, 2)), r.standard_normal(6)), \
        {"stride": 2, "padding": (1, 0, 0, 1), "output_padding": 1, "groups": 2}


def _rl(r):
    return (_x(r),), {"size": (7, 9), "align_corners": True}


CASES = [
    Case("onnx_ops.softmax", lambda r: ((_x(r),), {"axis": 1, "opset": 11})),
    Case("onnx_ops.log_softmax", lambda r: ((_x(r),), {"runtime": "onnx_reference"})),
    Case("onnx_ops.softmax_forward", lambda r: ((_x(r),), {"axis": 1})),
    Case("onnx_ops.softmax_backward", _bwd(O.softmax_forward, lambda r: ((_x(r),), {}))),
    Case("onnx_ops.log_softmax_forward", lambda r: ((_x(r),), {"axis": 0})),
    Case("onnx_ops.log_softmax_backward", _bwd(O.log_softmax_forward, lambda r: ((_x(r),), {}))),
    Case("onnx_ops.leaky_relu", lambda r: ((_x(r),), {"alpha": 0.1})),
    Case("onnx_ops.leaky_relu_forward", lambda r: ((_x(r),), {"negative_slope": 0.1})),
    Case("onnx_ops.leaky_relu_backward", _bwd(O.leaky_relu_forward, lambda r: ((_x(r),), {}))),
    Case("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 2, 3, 4)), _x(r, (2, 3, 3, 3)), _x(r, (3,))),
                                               {"strides": [2, 2], "auto_pad": "SAME_UPPER"})),
    Case("onnx_ops.conv_transpose2d_forward", _ct),
    Case("onnx_ops.conv_transpose2d_backward", _bwd(O.conv_transpose2d_forward, _ct)),
    Case("onnx_ops.resize", lambda r: ((_x(r), None, np.array([1, 1, 1.5, 0.6], np.float32)),
                                       {"mode": "cubic", "exclude_outside": 1})),
    Case("onnx_ops.resize_source_coordinate", lambda r: ((5, 8, 1.6), {"coordinate_transformation_mode": "align_corners"})),
    Case("onnx_ops.resize_linear_forward", _rl),
    Case("onnx_ops.resize_linear_backward", _bwd(O.resize_linear_forward, _rl)),
    Case("onnx_ops.topk", lambda r: ((np.round(_x(r)), 3), {"axis": 2, "largest": False})),
    Case("quantize_linear", lambda r: ((_x(r), np.full((2, 3, 2, 5), 0.1, np.float32)),
                                       {"axis": 2, "block_size": 2, "output_dtype": "int4"})),
    Case("dequantize_linear", lambda r: ((r.integers(0, 256, (2, 3)).astype(np.uint8), np.float32(0.5), np.uint8(3)),
                                         {})),
    Case("quant.types.pack", lambda r: ((r.integers(-8, 8, 7),), {"dtype": "int4"})),
    Case("quant.types.unpack", lambda r: ((r.integers(0, 256, 4).astype(np.uint8), "uint2", (4, 4)), {})),
    Case("quant.types.encode_float", lambda r: ((_x(r) * 100, "float8e5m2"), {"saturate": False})),
    Case("quant.types.decode_float", lambda r: ((r.integers(0, 256, 9).astype(np.uint8), "float8e4m3fnuz"), {})),
    Case("quant.types.float_code_values", lambda r: (("float4e2m1",), {})),
    Case("quant.types.element_type", lambda r: (("int2",), {})),
]

BAD = [
    Bad("onnx_ops.resize", lambda r: ((np.zeros(4, np.float32), None, [2.0]), {"mode": "linear"}), ValueError,
        r"`mode` 'linear' on a 1-D input .*onnxruntime"),
    Bad("onnx_ops.resize", lambda r: ((_x(r), None, [1, 1, 2, 2]), {"mode": "linear", "exclude_outside": 1}),
        ValueError, r"`exclude_outside`.*onnxruntime refuses it"),
    Bad("onnx_ops.resize", lambda r: ((_x(r), [0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 0.5, 0.5]),
                                      {"mode": "linear", "antialias": 1,
                                       "coordinate_transformation_mode": "tf_crop_and_resize"}),
        ValueError, r"`antialias` with coordinate_transformation_mode='tf_crop_and_resize': onnxruntime"),
    Bad("onnx_ops.resize", lambda r: ((_x(r), None, [1, 1, 2, 2]), {"mode": "nearest", "antialias": 1}), ValueError,
        r"`antialias` applies to mode 'linear' and 'cubic' only"),
    Bad("onnx_ops.resize", lambda r: ((_x(r), None, [1, 1, 2, 2], [1, 1, 4, 4]), {}), ValueError,
        r"exactly one of `scales` and `sizes`"),
    Bad("onnx_ops.resize", lambda r: ((_x(r), None, [1, 1, 2, 2]),
                                      {"coordinate_transformation_mode": "tf_half_pixel_for_nn",
                                       "runtime": "onnx_reference"}), ValueError,
        r"'tf_half_pixel_for_nn'.*not implemented by onnx\.reference"),
    Bad("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 2, 3, 4)), _x(r, (2, 3, 3, 3))),
                                              {"strides": [1, 1], "dilations": [2, 2], "output_padding": [1, 1]}),
        ValueError, r"`output_padding`/`output_shape` along spatial axis 0: onnxruntime refuses it"),
    Bad("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 4, 3, 4)), _x(r, (4, 3, 3, 3)), _x(r, (6,))), {"group": 2,
                                                                                                 "runtime": "onnx_reference"}),
        ValueError, r"`group` 2 .*onnx\.reference's grouped ConvTranspose"),
    Bad("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 2, 3, 4)), _x(r, (2, 3, 3, 3))),
                                              {"output_shape": [5, 8], "runtime": "onnx_reference"}),
        ValueError, r"`output_shape` .*onnx\.reference's ConvTranspose ignores"),
    Bad("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 2, 3, 4)), _x(r, (2, 3, 3, 3))), {"output_shape": [9, 12]}),
        ValueError, r"onnxruntime refuses it"),
    Bad("onnx_ops.conv_transpose", lambda r: ((_x(r, (1, 2, 3, 4)), _x(r, (2, 3, 3, 3))), {"kernel_shape": [2, 2]}),
        ValueError, r"`kernel_shape` must equal w\.shape\[2:\]"),
    Bad("onnx_ops.conv_transpose2d_forward", lambda r: ((_x(r), _x(r, (3, 2, 3, 3))), {"stride": 1, "output_padding": 1}),
        ValueError, r"`output_padding` must be smaller than max\(stride, dilation\)"),
    Bad("onnx_ops.conv_transpose2d_forward", lambda r: ((_x(r), _x(r, (3, 2, 3, 3))), {"padding": "same"}),
        ValueError, r"`padding` must be numbers for a transposed convolution"),
    Bad("onnx_ops.conv_transpose2d_forward", lambda r: ((_x(r), _x(r, (4, 2, 3, 3))), {}), ValueError,
        r"`w` must have shape \(C, F / groups, KH, KW\)"),
    Bad("onnx_ops.conv_transpose2d_backward", lambda r: ((_x(r), None), {}), TypeError, r"`cache`"),
    Bad("onnx_ops.topk", lambda r: ((np.arange(3.0), 4), {}), ValueError, r"`k` must be <= the size of `axis` 0"),
    Bad("onnx_ops.softmax", lambda r: ((np.arange(3),), {}), TypeError, r"`x` must be a float16/float32/float64"),
    Bad("onnx_ops.softmax", lambda r: ((_x(r),), {"axis": 4}), ValueError, r"`axis` must lie in \[-4, 4\)"),
    Bad("onnx_ops.softmax_forward", lambda r: ((np.array([1.0, np.nan]),), {}), ValueError, r"`x`.*NaN"),
    Bad("onnx_ops.softmax_backward", lambda r: ((np.ones(3), None), {}), TypeError, r"`cache`"),
    Bad("onnx_ops.log_softmax_backward", lambda r: ((np.ones(3), None), {}), TypeError, r"`cache`"),
    Bad("onnx_ops.leaky_relu", lambda r: ((_x(r),), {"runtime": "tflite"}), ValueError, r"`runtime` must be one of"),
    Bad("onnx_ops.leaky_relu_backward", lambda r: ((np.ones(3), None), {}), TypeError, r"`cache`"),
    Bad("onnx_ops.resize_linear_forward", lambda r: ((_x(r),), {"size": 3, "scale_factor": 2}), ValueError,
        r"exactly one of `size` and `scale_factor`"),
    Bad("onnx_ops.resize_linear_backward", lambda r: ((_x(r), None), {}), TypeError, r"`cache`"),
    Bad("quantize_linear", lambda r: ((_x(r), np.float32(1)), {"output_dtype": "float4e2m1"}), ValueError,
        r"`output_dtype` float4e2m1: onnxruntime 1\.32 has no CPU QuantizeLinear"),
    Bad("quantize_linear", lambda r: ((_x(r), np.float32(1)), {"output_dtype": "int2", "opset": 23}), ValueError,
        r"`opset` 23: element type int2 needs opset >= 25"),
    Bad("dequantize_linear", lambda r: ((np.zeros(3, np.uint8), np.float32(1)), {"dtype": "float4e2m1"}), ValueError,
        r"`dtype` float4e2m1: onnxruntime 1\.32 has no CPU DequantizeLinear"),
    Bad("quant.types.encode_float", lambda r: ((np.ones(2), "float4e2m1"), {"runtime": "onnxruntime"}), ValueError,
        r"float4e2m1: onnxruntime 1\.32 has no CPU encoder"),
    Bad("quant.types.unpack", lambda r: ((np.zeros(1, np.uint8), "int4", (3,)), {}), ValueError,
        r"`data` must hold ceil\(3 \* 4 / 8\) = 2 bytes"),
]

EXEMPT = {
    "ONNX_QDQ_RUNTIMES": "constant: the runtimes QuantizeLinear/DequantizeLinear reproduce",
    "onnx_ops.SOFTMAX_RUNTIMES": "constant", "onnx_ops.LEAKY_RELU_RUNTIMES": "constant",
    "onnx_ops.CONV_TRANSPOSE_RUNTIMES": "constant", "onnx_ops.AUTO_PADS": "constant",
    "onnx_ops.RESIZE_RUNTIMES": "constant", "onnx_ops.RESIZE_MODES": "constant",
    "onnx_ops.COORDINATE_TRANSFORMATION_MODES": "constant", "onnx_ops.NEAREST_MODES": "constant",
    "onnx_ops.KEEP_ASPECT_RATIO_POLICIES": "constant", "onnx_ops.ORT_NEAREST_TIE_EPS": "constant",
    "onnx_ops.SoftmaxCache": "NamedTuple type", "onnx_ops.SoftmaxGrads": "NamedTuple type",
    "onnx_ops.LogSoftmaxCache": "NamedTuple type", "onnx_ops.LogSoftmaxGrads": "NamedTuple type",
    "onnx_ops.LeakyReluCache": "NamedTuple type", "onnx_ops.LeakyReluGrads": "NamedTuple type",
    "onnx_ops.ConvTranspose2dCache": "NamedTuple type", "onnx_ops.ConvTranspose2dGrads": "NamedTuple type",
    "onnx_ops.ResizeLinearCache": "NamedTuple type", "onnx_ops.ResizeLinearGrads": "NamedTuple type",
    "quant.types.ELEMENT_TYPES": "constant table", "quant.types.INTEGER_TYPES": "constant",
    "quant.types.FLOAT_TYPES": "constant", "quant.types.PACKED_TYPES": "constant",
    "quant.types.ElementType": "NamedTuple type",
    "quant.types.as_ml_dtypes": "optional-dependency conversion (tests/test_quant_types.py)",
    "quant.types.from_ml_dtypes": "optional-dependency conversion (tests/test_quant_types.py)",
}
