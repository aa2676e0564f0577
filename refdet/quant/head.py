"""Post-training quantization of a RetinaNet head, end to end: calibrate, quantize, run the integer
path, and measure what quantization did to the detections.

The recipe (Jacob et al. 2018; the TFLite int8 spec; onnxruntime's static QDQ quantizer) applied to
the RetinaNet head of :mod:`refdet.heads` (two towers of 3x3 conv + ReLU, then a 3x3 conv to ``A*K``
class logits and one to ``4A`` box deltas, shared by every FPN level):

1. **Weights**: per output channel, symmetric, int8 in [-127, 127], zero point 0
   (:func:`refdet.quant.quantize_weights`: ``/127`` and RNE of ``w / s`` for onnx; half-away of
   ``w * (1/s)`` for tflite).
2. **Activations**: one asymmetric (scale, zero point) per tensor, from an observer run over float
   calibration features (:class:`refdet.quant.MinMaxObserver` by default): the head input and the
   output of every conv (after its ReLU for the tower convs, so their range starts at 0 and their
   zero point is ``qmin``). The qparams are shared by all FPN levels, as they are when one set of
   modules (PyTorch eager, torchvision's head) or one exported graph serves every level. Calibration
   runs the *float* model (PyTorch's and onnxruntime's post-training flow), not the quantized one.
3. **Biases**: int32 at scale ``s_in * s_w[f]``, zero point 0 (:func:`refdet.quant.quantize_bias`).
4. **Requantization multipliers** per output channel, ``M_f = s_in * s_w[f] / s_out``: in float32 as
   onnxruntime computes them (``float32(float32(s_in * s_w) / s_out)``) and in double as TFLite does,
   with TFLite's Q31 form ``(q, shift)`` (:func:`refdet.quant.quantize_multiplier`).

The integer path (:func:`run_quantized_head`): quantize the input (onnxruntime: RNE of ``x / s``;
TFLite reference QUANTIZE: half away from zero), then per layer the exact int32 accumulator
(:func:`refdet.quant.conv2d_int`) plus the int32 bias, :func:`refdet.quant.requantize` in the chosen
runtime's rounding, the ReLU fused as the clamp ``[max(qmin, zero_point), qmax]`` (TFLite's
``CalculateActivationRangeQuantized``; for onnxruntime the same clamp is what its QDQ Conv+Relu fusion
computes), and the last conv's int8 output dequantized to float logits and deltas. The fake-quant path
(:func:`run_fake_quant_head`) simulates the same model in float64 (quantize-dequantize around float
convs): it differs from the integer path only where ``acc * M`` lies within rounding error of a half,
by at most 1 LSB per layer.

:func:`refdet.quant.report.accuracy_report` compares float and quantized head outputs (SQNR, logit
error, threshold crossings, top-k overlap, box IoU drift, detection agreement, COCO AP);
``refdet quantize`` (:mod:`refdet.apps.quantize`) runs all of it on the demo's synthetic data.

NumPy only. The sigmoid stays in float after dequantization (TFLite's int8 LOGISTIC with its fixed
output (1/256, -128) is not modelled), and GroupNorm heads (torchvision v2) are refused: fold or
drop the norm first.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import heads as _heads
from refdet import layers as _layers
from refdet.quant import observers as _observers
from refdet.quant.affine import (QUANT_DTYPES, ArrayLike, QParams, _resolve, dequantize, quantize, quantize_bias,
                                 quantize_weights)
from refdet.quant.fake_quant import fake_quant_forward
from refdet.quant.fixed_point import quantize_multiplier, requantize
from refdet.quant.kernels import conv2d_int

__all__ = [
    "QuantizedConv",
    "QuantizedHead",
    "QuantizedHeadOutput",
    "quantize_retinanet_head",
    "make_quantized_conv",
    "run_quantized_head",
    "run_fake_quant_head",
    "float_head_layers",
]

Features = Union[np.ndarray, list, tuple]

_SCHEMES = {"onnx": "onnx", "tflite": "tf"}      # scheme -> refdet.quant convention name
_RUN_MODES = ("onnxruntime", "onnx_reference", "tflite", "tflite_single", "float_rne")
_OBSERVERS = {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
              "histogram": "HistogramObserver", "percentile": "PercentileObserver", "mse": "MSEObserver"}
_CLS, _BOX = "classification_head", "regression_head"

conventions.register(
    "quantize_retinanet_head",
    {"onnx": {"scheme": "onnx"}, "tf": {"scheme": "tflite"}},
    knobs={"scheme": conventions.choice(
        tuple(_SCHEMES),
        "'onnx': onnxruntime quantize_static (weights rint(w / s), bias rint(b / (s_x s_w)), zero points RNE, "
        "scales in float64 stored as float32); 'tflite': the TFLite converter (weights and bias "
        "TfLiteRound(v * (1 / s)), zero points half away, scales in float32)",
        source="onnxruntime/python/tools/quantization (quantize_static, base_quantizer.py); "
               "tensorflow/lite/tools/optimize/quantization_utils.cc")},
    doc="onnxruntime/quantization (quantize_static with per_channel=True, QDQ, QInt8, MinMax; verified: identical "
        "weights, scales and biases, see tests/test_quant_head.py). TFLite: tensorflow/lite/tools/optimize/"
        "quantization_utils.cc (SymmetricPerChannelQuantizeValues, SymmetricPerChannelBiasQuantize; read from the "
        "source). PyTorch eager/FX quantization keeps conv biases in float and uses /127.5 weight scales: not "
        "modelled, so there is no torchvision profile.",
)

conventions.register(
    "run_quantized_head",
    {"onnx": {"mode": "onnxruntime"}, "tf": {"mode": "tflite"}},
    knobs={"mode": conventions.choice(
        _RUN_MODES,
        "the runtime whose integer arithmetic is reproduced: 'onnxruntime' (x86 MLAS QLinearConv: float32 "
        "multiplier, RNE; QuantizeLinear RNE), 'onnx_reference', 'tflite' (BUILTIN_REF: gemmlowp double rounding; "
        "QUANTIZE half away), 'tflite_single', 'float_rne' (XNNPACK-like)",
        source="onnxruntime MLAS MlasRequantizeOutput; onnx/reference/ops/op_qlinear_conv.py; "
               "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h")},
    doc="See refdet.quant.requantize for each mode's arithmetic and sources. onnxruntime verified bit-exact on "
        "the head (QLinearConv chain and quantize_static's QDQ model); TFLite by the per-layer kernel "
        "tflite_conv2d_int8 (itself verified against LiteRT BUILTIN_REF, SPEC-quant-exchange §3).",
)


class QuantizedConv(NamedTuple):
    """One quantized 3x3 conv layer of the head (padding 1, stride 1).

    Attributes
    ----------
    name : str
        The torchvision key prefix, e.g. ``"classification_head.conv.0.0"`` or
        ``"regression_head.bbox_reg"``.
    weight : ndarray of int8, shape (F, C, 3, 3)
        Symmetric per output channel: zero point 0, values in [-127, 127].
    w_scale : ndarray of float32, shape (F,)
    bias : ndarray of int32, shape (F,)
        ``round(b / (x_scale * w_scale[f]))`` (zero point 0).
    bias_scale : ndarray of float32, shape (F,)
        ``float32(x_scale * w_scale[f])``.
    x_scale, x_zero_point : float32, int
        Input activation qparams (the previous layer's output, or the head input).
    y_scale, y_zero_point : float32, int
        Output activation qparams from calibration.
    relu : bool
        A ReLU follows the conv (tower layers); it is fused as the clamp ``qmin``.
    qmin, qmax : int
        Output clamp: the type's range, raised to ``max(qmin, y_zero_point)`` under ``relu``.
    multiplier : ndarray of float32, shape (F,)
        ``float32(float32(x_scale * w_scale) / y_scale)``: onnxruntime's requantization scale.
    multiplier_double : ndarray of float64, shape (F,)
        ``double(x_scale) * double(w_scale) / double(y_scale)``: TFLite's.
    q31, shift : ndarray of int64, shape (F,)
        TFLite ``QuantizeMultiplier(multiplier_double)``: ``M ~= q31 * 2**(shift - 31)``.
    """
    name: str
    weight: np.ndarray
    w_scale: np.ndarray
    bias: np.ndarray
    bias_scale: np.ndarray
    x_scale: np.float32
    x_zero_point: int
    y_scale: np.float32
    y_zero_point: int
    relu: bool
    qmin: int
    qmax: int
    multiplier: np.ndarray
    multiplier_double: np.ndarray
    q31: np.ndarray
    shift: np.ndarray


class QuantizedHead(NamedTuple):
    """A RetinaNet head quantized for the integer path.

    Attributes
    ----------
    scheme : {"onnx", "tflite"}
        Which tooling's rounding rules built the weights, biases and activation qparams.
    activation_dtype : {"int8", "uint8"}
    input_scale, input_zero_point : float32, int
        Qparams of the head input (the FPN levels).
    cls_layers, box_layers : tuple of QuantizedConv
        The classification and box subnets in order (towers, then the output conv).
    num_anchors, num_classes : int
        A and K.
    observer : str
        The observer the activation ranges came from.
    """
    scheme: str
    activation_dtype: str
    input_scale: np.float32
    input_zero_point: int
    cls_layers: tuple
    box_layers: tuple
    num_anchors: int
    num_classes: int
    observer: str


class QuantizedHeadOutput(NamedTuple):
    """Outputs of the quantized (integer or fake-quant) head; per level lists unless one map was given.

    Attributes
    ----------
    cls_logits : ndarray of float32, shape (B, A*K, H, W)
        Dequantized class logits.
    bbox_deltas : ndarray of float32, shape (B, 4A, H, W)
        Dequantized box deltas.
    cls_q, bbox_q : ndarray of int8/uint8, same shapes
        The integers the last convs produced (``None`` on the fake-quant path).
    intermediates : dict or None
        With ``return_intermediates``: layer name -> the layer's output per level (integers on the
        integer path, floats on the fake-quant path), plus ``"input"``.
    """
    cls_logits: object
    bbox_deltas: object
    cls_q: object
    bbox_q: object
    intermediates: Optional[dict]


# ---------------------------------------------------------------------------------------------------
# layout and float reference
# ---------------------------------------------------------------------------------------------------

def _layout(params):
    """[(name, weight_key, bias_key, relu)] per branch, plus C, A, K; refuses GroupNorm heads."""
    _, c, a, k, progs = _heads._retinanet_layout(params)
    out = {}
    for head in (_CLS, _BOX):
        ops = progs[head]
        if any(op[0] == "gn" for op in ops):
            raise ValueError("`params` has GroupNorm layers (torchvision retinanet v2 head): fold them into the "
                             "convs before quantizing; quantize_retinanet_head supports conv + ReLU towers")
        layers = []
        for i, op in enumerate(ops):
            if op[0] != "conv":
                continue
            if op[2] is None:
                raise ValueError(f"`params` lacks the bias of {op[1]!r}")
            relu = i + 1 < len(ops) and ops[i + 1][0] == "relu"
            layers.append((op[1][:-len(".weight")], op[1], op[2], relu))
        _check_tower(params, layers, c)
        out[head] = layers
    return out, c, a, k


def _check_tower(params, layers, c):
    """Every conv's weight (F, C_in, 3, 3) and bias (F,): real, finite, chained C_in = previous F."""
    c_in = c
    for _, wk, bk, _ in layers:
        w = _checks.as_float_array(params[wk], f"params[{wk!r}]", ndim=4)
        if w.shape[1] != c_in:
            raise ValueError(f"`params[{wk!r}]` must have {c_in} input channels (shape (F, {c_in}, KH, KW)); "
                             f"got shape {w.shape}")
        b = _checks.as_float_array(params[bk], f"params[{bk!r}]", ndim=1)
        if b.shape != (w.shape[0],):
            raise ValueError(f"`params[{bk!r}]` must have shape ({w.shape[0]},) (one per output channel of "
                             f"{wk!r}); got {b.shape}")
        c_in = w.shape[0]


def _as_levels(features, name):
    """ndarray (B, C, H, W) or list of them -> (list of arrays, single?)."""
    if isinstance(features, (list, tuple)):
        if len(features) == 0:
            raise ValueError(f"`{name}` must hold at least one feature map; got an empty list")
        return [_checks.as_nchw(f, f"{name}[{i}]") for i, f in enumerate(features)], False
    return [_checks.as_nchw(features, name)], True


def float_head_layers(params: dict, features: Features) -> dict:
    """The float head, layer by layer: every conv's output (after its ReLU for the tower convs).

    The same computation as :func:`refdet.heads.retinanet_head_forward` (same layers, same dtype),
    keeping what calibration observes.

    Parameters
    ----------
    params : dict
        RetinaNet head parameters (torchvision keys), without GroupNorm.
    features : ndarray, shape (B, C, H, W), or list of them (FPN levels)

    Returns
    -------
    dict
        ``"input"`` and each layer name (``"classification_head.conv.0.0"``, ...,
        ``"regression_head.bbox_reg"``) -> list of arrays, one per level.
    """
    spec, c, _, _ = _layout(params)
    feats, _ = _as_levels(features, "features")
    for i, f in enumerate(feats):
        if f.shape[1] != c:
            raise ValueError(f"`features[{i}]` must have C = {c} channels; got {f.shape[1]}")
    out = {"input": list(feats)}
    for head in (_CLS, _BOX):
        xs = list(feats)
        for name, wk, bk, relu in spec[head]:
            w = np.asarray(params[wk], dtype=xs[0].dtype)
            b = np.asarray(params[bk], dtype=xs[0].dtype)
            ys = []
            for x in xs:                                        # loop over levels
                y, _ = _layers.conv2d_forward(x, w, b, padding=1)
                if relu:
                    y, _ = _layers.relu_forward(y)
                ys.append(y)
            out[name] = ys
            xs = ys
    return out


# ---------------------------------------------------------------------------------------------------
# calibration and quantization
# ---------------------------------------------------------------------------------------------------

def _make_observer(observer, convention, dtype, observer_kwargs):
    if observer_kwargs is not None and not isinstance(observer_kwargs, dict):
        raise TypeError(f"`observer_kwargs` must be a dict of observer keywords (or None); got "
                        f"{_checks._describe(observer_kwargs)}")
    if callable(observer) and not isinstance(observer, str):
        return observer()
    _checks.check_choice(observer, "observer", tuple(_OBSERVERS))
    cls = getattr(_observers, _OBSERVERS[observer])
    return cls(dtype=dtype, symmetric=False, convention=convention, **(observer_kwargs or {}))


def _calibration_batches(calibration_features):
    """Accept one batch (array or list of levels) or a list of batches (each a list of levels)."""
    cf = calibration_features
    if isinstance(cf, (list, tuple)) and len(cf) and isinstance(cf[0], (list, tuple)):
        return [_as_levels(b, f"calibration_features[{i}]")[0] for i, b in enumerate(cf)]
    return [_as_levels(cf, "calibration_features")[0]]


@conventions.documented("quantize_retinanet_head")
def quantize_retinanet_head(params: dict, calibration_features, *, scheme: Optional[str] = None,
                            observer="minmax", activation_dtype: str = "int8",
                            observer_kwargs: Optional[dict] = None, activation_qparams: Optional[dict] = None,
                            convention="onnx") -> QuantizedHead:
    """Calibrate and quantize a RetinaNet head: int8 per-channel weights, int32 biases, activation qparams.

    Parameters
    ----------
    params : dict
        RetinaNet head parameters (:func:`refdet.heads.retinanet_head_init` or a torchvision
        ``RetinaNetHead`` state_dict as arrays), conv + ReLU towers (no GroupNorm).
    calibration_features : ndarray (B, C, H, W), a list of them (FPN levels), or a list of such lists
        (several batches). Float features the observers see.
    scheme : {"onnx", "tflite"}, optional (default from ``convention``: "onnx")
        ``"onnx"``: onnxruntime's quantizer (weights ``rint(w / s)``, ``s = absmax / 127``; bias
        ``rint(b / (s_x s_w))``; activation ranges by ``compute_scale_zp``, zero point RNE, scale in
        float64 stored as float32). ``"tflite"``: the TFLite converter (weights and bias
        ``TfLiteRound(v * (1 / s))``, half away from zero; activation zero point half away, scale in
        float32). Both use int8 weights in [-127, 127].
    observer : {"minmax", "moving_average", "histogram", "percentile", "mse"} or callable
        Range estimator per activation tensor (a callable returns a fresh observer object with
        ``update(x)`` and ``qparams()``).
    activation_dtype : {"int8", "uint8"}
        uint8 is onnxruntime's default for activations; TFLite requires int8.
    observer_kwargs : dict, optional
        Passed to the observer class (e.g. ``{"percentile": 99.99}``).
    activation_qparams : dict, optional
        ``tensor name -> (scale, zero_point)`` fixing some activation qparams instead of observing
        them (names: ``"input"`` and the layer names, e.g. ``"classification_head.conv.0.0"``), e.g.
        the ranges another tool calibrated. ``calibration_features`` may be None when every tensor
        is given.
    convention : {"onnx", "tf"} (aliases "onnxruntime", "tflite")
        Sets ``scheme`` when it is not given.

    Returns
    -------
    QuantizedHead
    """
    scheme = _resolve("quantize_retinanet_head", convention, scheme=scheme)["scheme"]
    _checks.check_choice(activation_dtype, "activation_dtype", ("int8", "uint8"))
    if scheme == "tflite" and activation_dtype != "int8":
        raise ValueError(f"`activation_dtype` must be 'int8' under scheme='tflite' (the TFLite int8 spec); "
                         f"got {activation_dtype!r}")
    conv = _SCHEMES[scheme]
    spec, c, a, k = _layout(params)
    names = ["input"] + [s[0] for h in (_CLS, _BOX) for s in spec[h]]
    given = {}
    if activation_qparams is not None:
        if not isinstance(activation_qparams, dict):
            raise TypeError(f"`activation_qparams` must be a dict: tensor name -> (scale, zero_point); got "
                            f"{type(activation_qparams).__name__}")
        unknown = sorted(set(activation_qparams) - set(names))
        if unknown:
            raise ValueError(f"`activation_qparams` has unknown tensors {unknown}; the tensors are {names}")
        lo_t, hi_t = QUANT_DTYPES[activation_dtype]
        for n, v in activation_qparams.items():
            sc, zp = v
            given[n] = QParams(np.asarray(_checks.as_quant_scale(sc, f"activation_qparams[{n!r}] scale"),
                                             np.float32),
                                  np.asarray(_checks.as_quant_zero_point(zp, f"activation_qparams[{n!r}] zero point",
                                                                         qmin=lo_t, qmax=hi_t)))
    todo = [n for n in names if n not in given]
    obs = {n: _make_observer(observer, conv, activation_dtype, observer_kwargs) for n in todo}
    if todo:
        if calibration_features is None:
            raise ValueError(f"`calibration_features` is needed for the tensors without `activation_qparams`: {todo}")
        for levels in _calibration_batches(calibration_features):
            acts = float_head_layers(params, levels)
            for n in todo:
                for t in acts[n]:                               # loop over levels
                    obs[n].update(t)
    qp = {n: given[n] if n in given else obs[n].qparams() for n in names}

    def build(head):
        layers = []
        prev = "input"
        for name, wk, bk, relu in spec[head]:
            xs = np.float32(qp[prev].scale)
            wq = quantize_weights(np.asarray(params[wk], dtype=np.float32), axis=0, dtype="int8",
                                     symmetric=True, convention=conv)
            bq = quantize_bias(np.asarray(params[bk], dtype=np.float32), xs, wq.scale, convention=conv)
            layers.append(make_quantized_conv(name, wq.q, wq.scale, bq.q, xs, qp[prev].zero_point, qp[name].scale,
                                              qp[name].zero_point, relu=relu, activation_dtype=activation_dtype))
            prev = name
        return tuple(layers)

    obs_name = observer if isinstance(observer, str) else getattr(observer, "__name__", type(observer).__name__)
    return QuantizedHead(scheme=scheme, activation_dtype=activation_dtype,
                         input_scale=np.float32(qp["input"].scale), input_zero_point=int(qp["input"].zero_point),
                         cls_layers=build(_CLS), box_layers=build(_BOX), num_anchors=a, num_classes=k,
                         observer=str(obs_name))


def make_quantized_conv(name: str, weight: np.ndarray, w_scale: ArrayLike, bias: np.ndarray, x_scale: float,
                        x_zero_point: int, y_scale: float, y_zero_point: int, *, relu: bool,
                        activation_dtype: str = "int8") -> QuantizedConv:
    """One :class:`QuantizedConv` from integers and scales (derives the clamp and the multipliers).

    For quantized models made elsewhere (an onnxruntime QDQ model, a TFLite flatbuffer): the weights,
    bias and qparams as stored there.

    Parameters
    ----------
    name : str
    weight : ndarray of int8, shape (F, C, 3, 3)
        Per-channel symmetric (zero point 0).
    w_scale : ndarray of float, shape (F,)
    bias : ndarray of int, shape (F,)
        int32 at scale ``x_scale * w_scale``.
    x_scale, x_zero_point, y_scale, y_zero_point : float, int
    relu : bool
        Fuse a ReLU as the clamp ``[max(qmin, y_zero_point), qmax]``.
    activation_dtype : {"int8", "uint8"}

    Returns
    -------
    QuantizedConv
        ``multiplier = float32(float32(x_scale * w_scale) / y_scale)`` (onnxruntime);
        ``multiplier_double = double(x_scale) * double(w_scale) / double(y_scale)`` and its Q31 form
        (TFLite ``QuantizeMultiplier``).
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str; got {type(name).__name__}")
    _checks.check_choice(activation_dtype, "activation_dtype", ("int8", "uint8"))
    lo_t, hi_t = QUANT_DTYPES[activation_dtype]
    w = _checks.as_int_array(weight, "weight", ndim=4)
    if w.size and (w.min() < -128 or w.max() > 127):
        raise ValueError(f"`weight` must hold int8 values; got [{w.min()}, {w.max()}]")
    f = w.shape[0]
    ws = _checks.as_quant_scale(w_scale, "w_scale", axis=0, length=f).astype(np.float32)
    ws = np.broadcast_to(ws, (f,)).copy()
    b = _checks.as_int_array(bias, "bias", ndim=1)
    if b.shape[0] != f:
        raise ValueError(f"`bias` must have one value per output channel ({f}); got length {b.shape[0]}")
    if b.size and (b.min() < -2 ** 31 or b.max() > 2 ** 31 - 1):
        raise ValueError(f"`bias` must fit in int32; got [{b.min()}, {b.max()}]")
    xs = np.float32(_checks.as_quant_scale(x_scale, "x_scale"))
    ys = np.float32(_checks.as_quant_scale(y_scale, "y_scale"))
    xz = int(_checks.as_quant_zero_point(x_zero_point, "x_zero_point", qmin=lo_t, qmax=hi_t))
    yz = int(_checks.as_quant_zero_point(y_zero_point, "y_zero_point", qmin=lo_t, qmax=hi_t))
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"`relu` must be a bool; got {relu!r}")
    m32 = np.asarray((xs * ws) / ys, dtype=np.float32)                 # float32 throughout, as onnxruntime
    m64 = np.float64(xs) * ws.astype(np.float64) / np.float64(ys)     # double, as TFLite
    q31, shift = quantize_multiplier(m64)
    return QuantizedConv(name=name, weight=w.astype(np.int8), w_scale=ws, bias=b.astype(np.int32),
                         bias_scale=np.asarray(xs * ws, np.float32), x_scale=xs, x_zero_point=xz, y_scale=ys,
                         y_zero_point=yz, relu=bool(relu), qmin=max(lo_t, yz) if relu else lo_t, qmax=hi_t,
                         multiplier=m32, multiplier_double=m64, q31=np.asarray(q31, np.int64),
                         shift=np.asarray(shift, np.int64))


def _check_qhead(qhead):
    if not isinstance(qhead, QuantizedHead):
        raise TypeError(f"`qhead` must be a QuantizedHead (from quantize_retinanet_head); got "
                        f"{type(qhead).__name__}")
    return qhead


# ---------------------------------------------------------------------------------------------------
# the integer path
# ---------------------------------------------------------------------------------------------------

def _input_convention(mode):
    """How the runtime's QUANTIZE rounds: TFLite reference = half away; onnxruntime/XNNPACK = RNE; both divide."""
    return "tf" if mode in ("tflite", "tflite_single") else "onnx"


def _int_conv(layer, xq, mode):
    """One layer on the integer path: int32 accumulator + bias, requantize, fused ReLU clamp."""
    acc = conv2d_int(xq, layer.weight, x_zero_point=layer.x_zero_point, w_zero_point=0, padding=1,
                        accumulator="int32")                    # (B, F, H, W)
    acc = acc + layer.bias.astype(np.int64).reshape(1, -1, 1, 1)
    if acc.size and (acc.min() < -2 ** 31 or acc.max() > 2 ** 31 - 1):
        raise ValueError(f"{layer.name}: the int32 accumulator plus bias overflows (values in "
                         f"[{acc.min()}, {acc.max()}])")
    if mode in ("onnxruntime", "onnx_reference"):
        mult = layer.multiplier                         # float32, as both ONNX runtimes hold it
    elif mode == "tflite":
        mult = (layer.q31, layer.shift)                 # TFLite's stored Q31 form
    else:
        mult = layer.multiplier_double                  # tflite_single re-derives (q, shift); float_rne exact
    od = np.int8 if layer.qmin < 0 else np.uint8
    return requantize(acc, mult, layer.y_zero_point, mode=mode, qmin=layer.qmin, qmax=layer.qmax,
                         axis=1, out_dtype=od)


def _collect(single, v):
    return v[0] if single else v


@conventions.documented("run_quantized_head")
def run_quantized_head(qhead: QuantizedHead, features: Features, *, mode: Optional[str] = None,
                       return_intermediates: bool = False, convention="onnx") -> QuantizedHeadOutput:
    """Run the quantized head on the integer path.

    ``xq = quantize(features)``; per layer ``acc = conv2d_int(xq - x_zp, w) + bias`` (exact, int32
    range checked), ``q = clamp(requantize(acc, M) + y_zp, qmin, qmax)`` (the ReLU is the clamp at the
    zero point); the two output convs' int8 results are dequantized to float32 ``(q - zp) * s``.

    Parameters
    ----------
    qhead : QuantizedHead
    features : ndarray, shape (B, C, H, W), or list of them (FPN levels); float
    mode : {"onnxruntime", "onnx_reference", "tflite", "tflite_single", "float_rne"}, optional
        Default from ``convention`` ("onnxruntime"). The runtime whose arithmetic is reproduced (see
        :func:`refdet.quant.requantize`):
        ``"onnxruntime"`` (x86 MLAS QLinearConv: float32 multiplier, RNE; input QuantizeLinear RNE),
        ``"onnx_reference"`` (onnx.reference), ``"tflite"`` (LiteRT ``BUILTIN_REF`` kernels: gemmlowp
        double rounding on the Q31 multiplier; input QUANTIZE half away from zero),
        ``"tflite_single"``, ``"float_rne"`` (XNNPACK-like). The layer-by-layer result equals
        :func:`refdet.quant.qlinear_conv` (onnx modes) / :func:`refdet.quant.tflite_conv2d_int8` with
        ``activation="RELU"`` (tflite modes).
    return_intermediates : bool
        Also return every layer's integer output per level.
    convention : {"onnx", "tf"} (aliases "onnxruntime", "tflite")
        Sets ``mode`` when it is not given ("onnx" -> "onnxruntime", "tf" -> "tflite").

    Returns
    -------
    QuantizedHeadOutput
    """
    mode = _resolve("run_quantized_head", convention, mode=mode)["mode"]
    qh = _check_qhead(qhead)
    feats, single = _as_levels(features, "features")
    c = qh.cls_layers[0].weight.shape[1]
    for i, f in enumerate(feats):
        if f.shape[1] != c:
            raise ValueError(f"`features[{i}]` must have C = {c} channels; got {f.shape[1]}")
    if qh.activation_dtype == "uint8" and mode in ("tflite", "tflite_single"):
        raise ValueError(f"mode={mode!r} needs int8 activations (the TFLite int8 spec); this head has uint8")
    conv = _input_convention(mode)
    xq = [quantize(f, qh.input_scale, qh.input_zero_point, dtype=qh.activation_dtype, convention=conv)
          for f in feats]
    inter = {"input": xq} if _checks.check_bool(return_intermediates, "return_intermediates") else None
    finals = {}
    for branch in (qh.cls_layers, qh.box_layers):
        cur = xq
        for layer in branch:
            cur = [_int_conv(layer, x, mode) for x in cur]      # loop over levels
            if inter is not None:
                inter[layer.name] = cur
        finals[branch[-1].name] = (cur, branch[-1])
    outs = []
    for cur, last in finals.values():
        deq = [dequantize(v, last.y_scale, last.y_zero_point) for v in cur]
        outs.append((deq, cur))
    (cls_f, cls_q), (box_f, box_q) = outs
    return QuantizedHeadOutput(_collect(single, cls_f), _collect(single, box_f), _collect(single, cls_q),
                               _collect(single, box_q), inter)


# ---------------------------------------------------------------------------------------------------
# the fake-quant (simulated) path
# ---------------------------------------------------------------------------------------------------

def _fq(x, scale, zp, qmin, qmax, scheme):
    """Quantize-dequantize in float64 with the scheme's QUANTIZE rounding (division; RNE or half away)."""
    rounding = "half_away" if scheme == "tflite" else "half_even"
    y, _ = fake_quant_forward(x, scale, zp, qmin=qmin, qmax=qmax, rounding=rounding, op="div",
                                 convention="onnx")
    return y


def _fake_conv(layer, x, scheme):
    """One layer on the fake-quant path: float64 conv of dequantized weights, float bias, ReLU, fake quant."""
    w = dequantize(layer.weight, layer.w_scale, 0, axis=0, out_dtype="float64")
    b = layer.bias.astype(np.float64) * layer.bias_scale.astype(np.float64)
    y, _ = _layers.conv2d_forward(np.asarray(x, np.float64), w, b, padding=1)
    if layer.relu:
        y, _ = _layers.relu_forward(y)
    return _fq(y, layer.y_scale, layer.y_zero_point, layer.qmin, layer.qmax, scheme)


def run_fake_quant_head(qhead: QuantizedHead, features: Features, *,
                        return_intermediates: bool = False) -> QuantizedHeadOutput:
    """Simulate the quantized head in float64 (fake quantization, as in QAT or a QDQ graph run in float).

    Input ``fq(x)``; per layer ``fq(relu(conv(x, dequant(w)) + dequant(bias)))`` with the layer's
    output qparams; rounding is the scheme's (onnx: RNE; tflite: half away). The integer path computes
    the same ``acc * s_in * s_w / s_out`` but rounds ``acc * M`` in the runtime's arithmetic, so
    per layer the two agree to 1 LSB (exactly, away from near-ties).

    Parameters
    ----------
    qhead : QuantizedHead
    features : ndarray, shape (B, C, H, W), or list of them
    return_intermediates : bool

    Returns
    -------
    QuantizedHeadOutput
        Float64 outputs; ``cls_q`` and ``bbox_q`` are None.
    """
    qh = _check_qhead(qhead)
    feats, single = _as_levels(features, "features")
    lo, hi = QUANT_DTYPES[qh.activation_dtype]
    x0 = [_fq(np.asarray(f, np.float64), qh.input_scale, qh.input_zero_point, lo, hi, qh.scheme) for f in feats]
    inter = {"input": x0} if _checks.check_bool(return_intermediates, "return_intermediates") else None
    res = []
    for branch in (qh.cls_layers, qh.box_layers):
        cur = x0
        for layer in branch:
            cur = [_fake_conv(layer, x, qh.scheme) for x in cur]
            if inter is not None:
                inter[layer.name] = cur
        res.append(cur)
    return QuantizedHeadOutput(_collect(single, res[0]), _collect(single, res[1]), None, None, inter)

