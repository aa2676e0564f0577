import numpy as np

from tests.contract import Bad, Case


def _x(r, shape=(2, 3, 5, 5)):
    return r.standard_normal(shape).astype(np.float32)


def _xq(r, shape=(1, 3, 6, 6), dtype=np.uint8):
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    return r.integers(lo, hi + 1, size=shape).astype(dtype)


def _wq(r, shape=(4, 3, 3, 3)):
    return r.integers(-127, 128, size=shape).astype(np.int8)


def _fq(r):
    x = _x(r, (3, 4))
    return (x, np.float32(0.05), 3), {"qmin": -128, "qmax": 127}


def _fq_back(r):
    from refdet.quant import fake_quant_forward
    x = _x(r, (3, 4))
    _, cache = fake_quant_forward(x, np.float32(0.05), np.float32(0.7), qmin=-128, qmax=127, learnable=True,
                                  grad_factor=0.5)
    return (r.standard_normal((3, 4)).astype(np.float32), cache), {}


def _qconv(r):
    x = _xq(r)
    w = _wq(r)
    return (x, np.float32(0.02), np.uint8(128), w, np.full(4, 0.01, np.float32), np.zeros(4, np.int8),
            np.float32(0.05), np.uint8(120), r.integers(-500, 500, size=4).astype(np.int32)), {"padding": 1}


def _tconv(r):
    x = _xq(r, (1, 6, 6, 3), np.int8)
    w = _wq(r, (4, 3, 3, 3))
    return (x, 0.02, -3, w, np.full(4, 0.01, np.float32), r.integers(-500, 500, size=4).astype(np.int32),
            0.05, 5), {"padding": "SAME", "activation": "RELU6"}


CASES = [
    Case("round_half_even", lambda r: ((r.standard_normal(7) * 3,), {})),
    Case("round_half_away", lambda r: ((np.array([-2.5, -0.5, 0.5, 1.49, 2.5]),), {})),
    Case("round_half_up", lambda r: ((np.array([-2.5, -0.5, 0.5, 1.49, 2.5]),), {})),
    Case("qparams_from_minmax", lambda r: ((np.array([-1.0, -0.5]), np.array([2.0, 0.25])),
                                           {"axis": 0, "symmetric": True, "convention": "onnx"})),
    Case("quantize", lambda r: ((_x(r), np.full(3, 0.05, np.float32), np.array([0, 1, -2])),
                                {"axis": 1, "convention": "tf"})),
    Case("dequantize", lambda r: ((_xq(r, (2, 3, 4)), np.full(3, 0.05, np.float32), np.array([128, 120, 0])),
                                  {"axis": 1})),
    Case("fake_quant_forward", _fq),
    Case("fake_quant_backward", _fq_back),
    Case("quantize_multiplier", lambda r: ((r.uniform(0, 2, size=5),), {})),
    Case("saturating_rounding_doubling_high_mul",
         lambda r: ((r.integers(-2 ** 31, 2 ** 31, size=6), np.int64(1 << 30)), {})),
    Case("rounding_divide_by_pot", lambda r: ((r.integers(-1000, 1000, size=6), 3), {})),
    Case("multiply_by_quantized_multiplier",
         lambda r: ((r.integers(-10 ** 6, 10 ** 6, size=6), 1099511628, -8), {})),
    Case("requantize", lambda r: ((r.integers(-5000, 5000, size=(2, 3, 4)), np.array([0.002, 0.01, 0.004]), 3),
                                  {"axis": 1})),
    Case("conv2d_int", lambda r: ((_xq(r), _wq(r)), {"x_zero_point": 128, "padding": 1, "stride": 2})),
    Case("qlinear_conv", _qconv),
    Case("tflite_activation_range", lambda r: (("RELU6", 0.05, -10), {})),
    Case("tflite_conv2d_int8", _tconv),
]

BAD = [
    Bad("quantize", lambda r: ((_x(r), 0.0, 0), {}), ValueError, "`scale` must be > 0"),
    Bad("quantize", lambda r: ((_x(r), float("nan"), 0), {}), ValueError, "`scale` must be finite"),
    Bad("quantize", lambda r: ((_x(r), 0.1, 300), {"dtype": "uint8"}), ValueError, r"`zero_point` must lie in \[0, 255\]"),
    Bad("quantize", lambda r: ((_x(r), np.full(3, 0.1), 0), {"axis": 7}), ValueError, "`axis`"),
    Bad("quantize", lambda r: ((_x(r), np.full(4, 0.1), 0), {"axis": 1}), ValueError, "`scale` must have one value per channel"),
    Bad("quantize", lambda r: ((_x(r), np.full(3, 0.1), 0), {}), ValueError, "`axis` is None"),
    Bad("quantize", lambda r: ((_x(r), 0.1, 0.5), {}), TypeError, "`zero_point` must be an integer"),
    Bad("quantize", lambda r: ((_x(r), 0.1, 0), {"rounding": "nearest"}), ValueError, "`rounding`"),
    Bad("quantize", lambda r: ((_x(r), 0.1, 0), {"dtype": "int4"}), ValueError, "`dtype`"),
    Bad("quantize", lambda r: ((np.array([np.nan], np.float32), 0.1, 0), {}), ValueError, "`x`.*NaN"),
    Bad("dequantize", lambda r: ((np.zeros(3, np.float32), 0.1, 0), {}), TypeError, "`q` must be an integer array"),
    Bad("dequantize", lambda r: ((np.zeros(3, np.int8), -0.1, 0), {}), ValueError, "`scale` must be > 0"),
    Bad("qparams_from_minmax", lambda r: ((1.0, -1.0), {}), ValueError, "`rmin` must be <= `rmax`"),
    Bad("qparams_from_minmax", lambda r: ((np.array([-1.0, -2.0]), np.array([1.0, 2.0])), {}), ValueError, "need `axis`"),
    Bad("qparams_from_minmax", lambda r: ((-1.0, 1.0), {"convention": "caffe"}), ValueError, "`convention`"),
    Bad("qparams_from_minmax", lambda r: ((-1.0, np.inf), {}), ValueError, "`rmax`"),
    Bad("fake_quant_forward", lambda r: ((_x(r), 0.1, 0), {"qmin": 5, "qmax": 5}), ValueError, "`qmin` must be < `qmax`"),
    Bad("fake_quant_forward", lambda r: ((_x(r), np.full(3, 0.1), 0.5), {"qmin": 0, "qmax": 255, "axis": 1,
                                                                          "learnable": True}),
        ValueError, "per-tensor"),
    Bad("fake_quant_backward", lambda r: ((np.zeros(3), (1, 2)), {}), TypeError, "`cache`"),
    Bad("quantize_multiplier", lambda r: ((-0.5,), {}), ValueError, "`m` must be >= 0"),
    Bad("quantize_multiplier", lambda r: ((np.inf,), {}), ValueError, "`m`"),
    Bad("rounding_divide_by_pot", lambda r: ((np.array([1, 2]), 32), {}), ValueError, "`exponent`"),
    Bad("saturating_rounding_doubling_high_mul", lambda r: ((2 ** 31, 1), {}), ValueError, "`a` must fit in int32"),
    Bad("requantize", lambda r: ((np.array([2 ** 31]), 0.5, 0), {}), ValueError, "`acc` must fit in int32"),
    Bad("requantize", lambda r: ((np.array([1, 2]), 0.5, 0), {"mode": "ruy"}), ValueError, "`mode`"),
    Bad("requantize", lambda r: ((np.array([1.5]), 0.5, 0), {}), TypeError, "`acc` must be an integer array"),
    Bad("requantize", lambda r: ((np.array([1, 2]), 0.5, 200), {}), ValueError, "`out_zero_point` must lie"),
    Bad("conv2d_int", lambda r: ((_xq(r), _wq(r, (4, 2, 3, 3))), {}), ValueError, "channels"),
    Bad("conv2d_int", lambda r: ((np.full((1, 1, 1, 3), 2 ** 20, np.int64), np.full((1, 1, 1, 3), 2 ** 12, np.int64)),
                                 {"accumulator": "int32"}), ValueError, "int32 accumulator overflows"),
    Bad("conv2d_int", lambda r: ((_xq(r), _wq(r)), {"padding": -1}), ValueError, "`padding`"),
    Bad("conv2d_int", lambda r: ((_xq(r).astype(np.float32), _wq(r)), {}), TypeError, "`xq`"),
    Bad("qlinear_conv", lambda r: ((_xq(r), 0.02, np.uint8(128), _wq(r), np.full(3, 0.01), np.int8(0), 0.05,
                                    np.uint8(0)), {}), ValueError, "`w_scale` must have one value per channel"),
    Bad("qlinear_conv", lambda r: ((_xq(r).astype(np.int16), 0.02, 0, _wq(r), 0.01, 0, 0.05, 0), {}), TypeError,
        "`x` must be int8 or uint8"),
    Bad("qlinear_conv", lambda r: ((_xq(r), 0.02, np.uint8(128), _wq(r), 0.01, np.int8(0), 0.05, np.uint8(0)),
                                   {"padding": 1, "pads": [1, 1, 1, 1]}), ValueError, "not both"),
    Bad("conv2d_int", lambda r: ((_xq(r), _wq(r)), {"padding": (1, 2, 3)}), ValueError, "`padding`"),
    Bad("tflite_conv2d_int8", lambda r: ((_xq(r, (1, 6, 6, 3), np.int8), 0.02, 0, _wq(r), 0.01, None, 0.05, 0),
                                         {"padding": "FULL"}), ValueError, "`padding`"),
    Bad("tflite_activation_range", lambda r: (("GELU", 0.1, 0), {}), ValueError, "`activation`"),
]

EXEMPT = {
    "QUANT_DTYPES": "a constant dict of integer ranges",
    "QParams": "a NamedTuple type (scale, zero_point)",
    "FakeQuantCache": "a NamedTuple type",
    "FakeQuantGrads": "a NamedTuple type",
    "QuantizedMultiplier": "a NamedTuple type",
    "MinMaxObserver": "a class with update/qparams; its contract (read-only input, errors) is tested in test_quant.py",
    "MovingAverageMinMaxObserver": "a class; contract tested in test_quant.py",
    "PerChannelMinMaxObserver": "a class; contract tested in test_quant.py",
    "PercentileObserver": "a class; contract tested in test_quant.py",
    "HistogramObserver": "a class; contract tested in test_quant.py",
    "MSEObserver": "a class; contract tested in test_quant.py",
}

CASES += [
    Case("quantize_weights", lambda r: ((_x(r, (4, 3, 3, 3)),), {"convention": "tf"})),
    Case("quantize_bias", lambda r: ((r.standard_normal(4), 0.02, np.full(4, 0.01, np.float32)), {})),
]
BAD += [
    Bad("quantize_weights", lambda r: ((_x(r, (4, 3)),), {"axis": 2}), ValueError, "`axis`"),
    Bad("quantize_bias", lambda r: ((r.standard_normal(4), 0.02, np.full(3, 0.01)), {}), ValueError, "`w_scale`"),
    Bad("quantize_bias", lambda r: ((r.standard_normal(4), 0.02, 0.01), {"convention": "torchvision"}), ValueError,
        "`convention`"),
]
EXEMPT.update({"QuantizedTensor": "a NamedTuple type", "QuantizedBias": "a NamedTuple type"})
