"""Affine quantization, observers, fake quantization and integer kernels, framework by framework.

The affine map (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference")::

    real = (q - z) * s                       dequantize
    q    = clamp(round(x / s) + z, qmin, qmax)   quantize

Every framework agrees on that *form*; "bit-exact" only means something once four details are chosen,
and refdet makes each one an explicit keyword:

1. **The rounding mode.** Round half to even (RNE: ONNX ``QuantizeLinear``, onnxruntime, PyTorch,
   ``np.rint``), half away from zero (TFLite reference kernels, ``std::round``), half up
   (``floor(v + 0.5)``: TF ``FakeQuantWithMinMaxVars``, TFLite single-rounding builds). The helpers
   :func:`round_half_even`, :func:`round_half_away` and :func:`round_half_up` are exact for every
   float (``floor(v + 0.5)`` is *not*: in float32 ``0.49999997 + 0.5`` rounds to 1).
2. **Division or multiplication by a reciprocal.** ONNX/onnxruntime and the TFLite reference kernel
   divide ``x / s`` in float32; PyTorch multiplies ``x * (1.0f / s)``. They differ by one step in rare
   cases (``op="div"`` / ``op="mul_inv"``).
3. **When the zero point is added.** ONNX, onnxruntime, TFLite and PyTorch with an integer zero
   point round first and add ``z`` after (``add_zero_point="after"``). PyTorch's learnable fake quant
   backward rounds ``z + x / s`` (``"before"``). Only half-up rounding commutes with adding an integer:
   under RNE ``rint(2.5) + 1 = 3`` but ``rint(3.5) = 4``; under half-away ``round(-0.5) + 1 = 0`` but
   ``round(0.5) = 1``.
4. **Where the range comes from** (:func:`qparams_from_minmax`): ``/127`` (onnxruntime and TFLite
   symmetric int8 use [-127, 127]) vs ``/127.5`` (PyTorch qint8 symmetric keeps [-128, 127]); the scale
   computed in float64 then stored as float32 (onnxruntime) or in float32 (PyTorch, TF); the zero point
   rounded half-even (onnxruntime, PyTorch) or half-away (TF).

Integer requantization (:func:`requantize`) has its own modes: TFLite's gemmlowp double rounding
(``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``, bit-exact with the TFLite
*reference* kernels ``BUILTIN_REF``; XNNPACK and the optimized ruy kernels differ by 1 LSB by design),
TFLite's single rounding build, onnxruntime's float32 multiply then RNE (x86 MLAS), and onnx.reference's
float64 multiply then ``np.round`` (which adds the output zero point *before* rounding). They agree
except near ties, and the tests construct such ties.

Conventions: ``convention="torchvision"`` (also ``"detectron2"``, ``"mmdet"``, alias ``"torch"``) means
PyTorch's quantization semantics; ``"onnx"`` (alias ``"onnxruntime"``) means the ONNX operators and
onnxruntime's quantization tooling; ``"tf"`` (alias ``"tflite"``) means TFLite's reference kernels and
the TF fake-quant ops. ``refdet.conventions.describe("qparams_from_minmax")`` prints the table.

A quantized head is built from these pieces: :func:`quantize_weights` (per-channel int8 weights),
:func:`quantize_bias` (int32 biases at ``x_scale * w_scale``), an observer or :func:`qparams_from_minmax`
for each activation, then :func:`qlinear_conv` (ONNX, NCHW) or :func:`tflite_conv2d_int8` (TFLite, NHWC)
per layer, the ReLU as the integer clamp ``[zero_point, qmax]`` (:func:`tflite_activation_range`), and
:func:`dequantize` before a float sigmoid.

Everything here needs NumPy only; integer arithmetic is exact (int64, or float BLAS only where every
partial sum is provably an integer below 2**24 / 2**53).

The package, one concern per module:

* :mod:`refdet.quant.affine`: rounding modes, :class:`QParams`, :func:`qparams_from_minmax`,
  :func:`quantize` / :func:`dequantize`, :func:`quantize_weights` / :func:`quantize_bias`;
* :mod:`refdet.quant.observers`: range estimation from calibration data (min/max, moving average,
  per channel, percentile, histogram L2 search, MSE grid search);
* :mod:`refdet.quant.fake_quant`: quantize-dequantize in float, its straight-through and LSQ gradients;
* :mod:`refdet.quant.fixed_point`: TFLite's Q31 multiplier, gemmlowp's arithmetic, :func:`requantize`
  in every runtime's rounding;
* :mod:`refdet.quant.kernels`: exact integer convolution, ONNX ``QLinearConv``, TFLite int8 ``CONV_2D``;
* :mod:`refdet.quant.types`: ONNX's element types bit for bit (int4/int2 packing, float8/float4
  encoding) and :mod:`refdet.quant.onnx_qdq`: ``QuantizeLinear``/``DequantizeLinear`` in all of them;
* :mod:`refdet.quant.head`: a RetinaNet head quantized end to end (calibrate, quantize, the integer
  and the fake-quant paths);
* :mod:`refdet.quant.report`: what quantization did to the head's outputs and detections.

The readable reference, in exact rational arithmetic, is :mod:`refdet.reference.quant`; the commands
``refdet quantize`` and ``refdet demo --quantize`` live in :mod:`refdet.apps.quantize`.
"""
from __future__ import annotations

from refdet.quant.affine import (
    QUANT_DTYPES,
    QParams,
    QuantizedBias,
    QuantizedTensor,
    dequantize,
    qparams_from_minmax,
    quantize,
    quantize_bias,
    quantize_weights,
    round_half_away,
    round_half_even,
    round_half_up,
)
from refdet.quant.fake_quant import FakeQuantCache, FakeQuantGrads, fake_quant_backward, fake_quant_forward
from refdet.quant.fixed_point import (
    QuantizedMultiplier,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from refdet.quant.head import (
    QuantizedConv,
    QuantizedHead,
    QuantizedHeadOutput,
    float_head_layers,
    make_quantized_conv,
    quantize_retinanet_head,
    run_fake_quant_head,
    run_quantized_head,
)
from refdet.quant.kernels import conv2d_int, qlinear_conv, tflite_activation_range, tflite_conv2d_int8
from refdet.quant.onnx_qdq import ONNX_QDQ_RUNTIMES, dequantize_linear, quantize_linear
from refdet.quant.observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PerChannelMinMaxObserver,
    PercentileObserver,
)
from refdet.quant.report import accuracy_report, format_accuracy_report, sqnr_db

__all__ = [
    # affine
    "QUANT_DTYPES",
    "QParams",
    "round_half_even",
    "round_half_away",
    "round_half_up",
    "qparams_from_minmax",
    "quantize",
    "dequantize",
    "QuantizedTensor",
    "quantize_weights",
    "QuantizedBias",
    "quantize_bias",
    # observers
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "PercentileObserver",
    "HistogramObserver",
    "MSEObserver",
    # fake quantization
    "FakeQuantCache",
    "FakeQuantGrads",
    "fake_quant_forward",
    "fake_quant_backward",
    # fixed point
    "QuantizedMultiplier",
    "quantize_multiplier",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "requantize",
    # integer kernels
    "conv2d_int",
    "qlinear_conv",
    "tflite_activation_range",
    "tflite_conv2d_int8",
    # ONNX QuantizeLinear / DequantizeLinear in every element type (refdet.quant.types: packing, float8/float4)
    "ONNX_QDQ_RUNTIMES",
    "quantize_linear",
    "dequantize_linear",
    # the quantized RetinaNet head
    "QuantizedConv",
    "QuantizedHead",
    "QuantizedHeadOutput",
    "quantize_retinanet_head",
    "make_quantized_conv",
    "run_quantized_head",
    "run_fake_quant_head",
    "float_head_layers",
    # its accuracy report
    "sqnr_db",
    "accuracy_report",
    "format_accuracy_report",
]
