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

:func:`accuracy_report` compares float and quantized head outputs: SQNR per tensor, logit error,
scores that cross the score threshold, top-k overlap, IoU drift of decoded boxes, detection agreement
after NMS and, with ground truth, the change in COCO AP. ``refdet quantize`` runs all of it on the
demo's synthetic data.

NumPy only. The sigmoid stays in float after dequantization (TFLite's int8 LOGISTIC with its fixed
output (1/256, -128) is not modelled), and GroupNorm heads (torchvision v2) are refused: fold or
drop the norm first.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet import heads as _heads
from refdet import layers as _layers
from refdet import quant as _q

__all__ = [
    "QuantizedConv",
    "QuantizedHead",
    "QuantizedHeadOutput",
    "quantize_retinanet_head",
    "make_quantized_conv",
    "run_quantized_head",
    "run_fake_quant_head",
    "float_head_layers",
    "sqnr_db",
    "accuracy_report",
    "format_accuracy_report",
]

_SCHEMES = {"onnx": "onnx", "tflite": "tf"}      # scheme -> refdet.quant convention name
_RUN_MODES = ("onnxruntime", "onnx_reference", "tflite", "tflite_single", "float_rne")
_OBSERVERS = {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
              "histogram": "HistogramObserver", "percentile": "PercentileObserver", "mse": "MSEObserver"}
_CLS, _BOX = "classification_head", "regression_head"

conventions.register(
    "quantize_retinanet_head",
    {"onnx": {"scheme": "onnx"}, "tf": {"scheme": "tflite"}},
    knobs={"scheme": "'onnx': onnxruntime quantize_static (weights rint(w / s), bias rint(b / (s_x s_w)), zero "
                     "points RNE, scales in float64 stored as float32); 'tflite': the TFLite converter (weights and "
                     "bias TfLiteRound(v * (1 / s)), zero points half away, scales in float32)"},
    doc="onnxruntime/quantization (quantize_static with per_channel=True, QDQ, QInt8, MinMax; verified: identical "
        "weights, scales and biases, see tests/test_quant_head.py). TFLite: tensorflow/lite/tools/optimize/"
        "quantization_utils.cc (SymmetricPerChannelQuantizeValues, SymmetricPerChannelBiasQuantize; read from the "
        "source). PyTorch eager/FX quantization keeps conv biases in float and uses /127.5 weight scales: not "
        "modelled, so there is no torchvision profile.",
)

conventions.register(
    "run_quantized_head",
    {"onnx": {"mode": "onnxruntime"}, "tf": {"mode": "tflite"}},
    knobs={"mode": "the runtime whose integer arithmetic is reproduced: 'onnxruntime' (x86 MLAS QLinearConv: "
                   "float32 multiplier, RNE; QuantizeLinear RNE), 'onnx_reference', 'tflite' (BUILTIN_REF: gemmlowp "
                   "double rounding; QUANTIZE half away), 'tflite_single', 'float_rne' (XNNPACK-like)"},
    doc="See refdet.quant.requantize for each mode's arithmetic and sources. onnxruntime verified bit-exact on "
        "the head (QLinearConv chain and quantize_static's QDQ model); TFLite by the per-layer kernel "
        "tflite_conv2d_int8 (itself verified against LiteRT BUILTIN_REF, SPEC-quant-exchange §3).",
)


class QuantizedConv(NamedTuple):
    """One quantized 3x3 conv layer of the head (padding 1, stride 1).

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
        out[head] = layers
    return out, c, a, k


def _as_levels(features, name):
    """ndarray (B, C, H, W) or list of them -> (list of arrays, single?)."""
    if isinstance(features, (list, tuple)):
        if len(features) == 0:
            raise ValueError(f"`{name}` must hold at least one feature map; got an empty list")
        return [_checks.as_nchw(f, f"{name}[{i}]") for i, f in enumerate(features)], False
    return [_checks.as_nchw(features, name)], True


def float_head_layers(params, features):
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
    if callable(observer) and not isinstance(observer, str):
        return observer()
    _checks.check_choice(observer, "observer", tuple(_OBSERVERS))
    cls = getattr(_q, _OBSERVERS[observer])
    return cls(dtype=dtype, symmetric=False, convention=convention, **(observer_kwargs or {}))


def _calibration_batches(calibration_features):
    """Accept one batch (array or list of levels) or a list of batches (each a list of levels)."""
    cf = calibration_features
    if isinstance(cf, (list, tuple)) and len(cf) and isinstance(cf[0], (list, tuple)):
        return [_as_levels(b, f"calibration_features[{i}]")[0] for i, b in enumerate(cf)]
    return [_as_levels(cf, "calibration_features")[0]]


def quantize_retinanet_head(params, calibration_features, *, scheme=None, observer="minmax",
                            activation_dtype="int8", observer_kwargs=None, activation_qparams=None,
                            convention="onnx"):
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
    scheme = _q._resolve("quantize_retinanet_head", convention, scheme=scheme)["scheme"]
    _checks.check_choice(scheme, "scheme", tuple(_SCHEMES))
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
        lo_t, hi_t = _q.QUANT_DTYPES[activation_dtype]
        for n, v in activation_qparams.items():
            sc, zp = v
            given[n] = _q.QParams(np.asarray(_checks.as_quant_scale(sc, f"activation_qparams[{n!r}] scale"),
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
            wq = _q.quantize_weights(np.asarray(params[wk], dtype=np.float32), axis=0, dtype="int8",
                                     symmetric=True, convention=conv)
            bq = _q.quantize_bias(np.asarray(params[bk], dtype=np.float32), xs, wq.scale, convention=conv)
            layers.append(make_quantized_conv(name, wq.q, wq.scale, bq.q, xs, qp[prev].zero_point, qp[name].scale,
                                              qp[name].zero_point, relu=relu, activation_dtype=activation_dtype))
            prev = name
        return tuple(layers)

    obs_name = observer if isinstance(observer, str) else getattr(observer, "__name__", type(observer).__name__)
    return QuantizedHead(scheme=scheme, activation_dtype=activation_dtype,
                         input_scale=np.float32(qp["input"].scale), input_zero_point=int(qp["input"].zero_point),
                         cls_layers=build(_CLS), box_layers=build(_BOX), num_anchors=a, num_classes=k,
                         observer=str(obs_name))


def make_quantized_conv(name, weight, w_scale, bias, x_scale, x_zero_point, y_scale, y_zero_point, *, relu,
                        activation_dtype="int8"):
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
    lo_t, hi_t = _q.QUANT_DTYPES[activation_dtype]
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
    q31, shift = _q.quantize_multiplier(m64)
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
    acc = _q.conv2d_int(xq, layer.weight, x_zero_point=layer.x_zero_point, w_zero_point=0, padding=1,
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
    return _q.requantize(acc, mult, layer.y_zero_point, mode=mode, qmin=layer.qmin, qmax=layer.qmax,
                         axis=1, out_dtype=od)


def _collect(single, v):
    return v[0] if single else v


def run_quantized_head(qhead, features, *, mode=None, return_intermediates=False, convention="onnx"):
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
    mode = _q._resolve("run_quantized_head", convention, mode=mode)["mode"]
    qh = _check_qhead(qhead)
    _checks.check_choice(mode, "mode", _RUN_MODES)
    feats, single = _as_levels(features, "features")
    c = qh.cls_layers[0].weight.shape[1]
    for i, f in enumerate(feats):
        if f.shape[1] != c:
            raise ValueError(f"`features[{i}]` must have C = {c} channels; got {f.shape[1]}")
    if qh.activation_dtype == "uint8" and mode in ("tflite", "tflite_single"):
        raise ValueError(f"mode={mode!r} needs int8 activations (the TFLite int8 spec); this head has uint8")
    conv = _input_convention(mode)
    xq = [_q.quantize(f, qh.input_scale, qh.input_zero_point, dtype=qh.activation_dtype, convention=conv)
          for f in feats]
    inter = {"input": xq} if return_intermediates else None
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
        deq = [_q.dequantize(v, last.y_scale, last.y_zero_point) for v in cur]
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
    y, _ = _q.fake_quant_forward(x, scale, zp, qmin=qmin, qmax=qmax, rounding=rounding, op="div",
                                 convention="onnx")
    return y


def _fake_conv(layer, x, scheme):
    """One layer on the fake-quant path: float64 conv of dequantized weights, float bias, ReLU, fake quant."""
    w = _q.dequantize(layer.weight, layer.w_scale, 0, axis=0, out_dtype="float64")
    b = layer.bias.astype(np.float64) * layer.bias_scale.astype(np.float64)
    y, _ = _layers.conv2d_forward(np.asarray(x, np.float64), w, b, padding=1)
    if layer.relu:
        y, _ = _layers.relu_forward(y)
    return _fq(y, layer.y_scale, layer.y_zero_point, layer.qmin, layer.qmax, scheme)


def run_fake_quant_head(qhead, features, *, return_intermediates=False):
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
    lo, hi = _q.QUANT_DTYPES[qh.activation_dtype]
    x0 = [_fq(np.asarray(f, np.float64), qh.input_scale, qh.input_zero_point, lo, hi, qh.scheme) for f in feats]
    inter = {"input": x0} if return_intermediates else None
    res = []
    for branch in (qh.cls_layers, qh.box_layers):
        cur = x0
        for layer in branch:
            cur = [_fake_conv(layer, x, qh.scheme) for x in cur]
            if inter is not None:
                inter[layer.name] = cur
        res.append(cur)
    return QuantizedHeadOutput(_collect(single, res[0]), _collect(single, res[1]), None, None, inter)


# ---------------------------------------------------------------------------------------------------
# accuracy report
# ---------------------------------------------------------------------------------------------------

def sqnr_db(reference, approximation):
    """Signal-to-quantization-noise ratio ``10 log10(sum x**2 / sum (x - x_hat)**2)`` in dB (float64).

    Parameters
    ----------
    reference, approximation : ndarray (same shape) or lists of them (concatenated)

    Returns
    -------
    float
        ``inf`` when the approximation is exact (including both empty); ``-inf`` for a zero
        reference with a nonzero error.
    """
    def cat(v, name):
        if isinstance(v, (list, tuple)):
            return np.concatenate([_checks.as_float_array(t, f"{name}[{i}]", dtype=np.float64).ravel()
                                   for i, t in enumerate(v)]) if len(v) else np.zeros(0)
        return _checks.as_float_array(v, name, dtype=np.float64).ravel()
    x = cat(reference, "reference")
    y = cat(approximation, "approximation")
    if x.shape != y.shape:
        raise ValueError(f"`reference` and `approximation` must have the same size; got {x.size} and {y.size}")
    sig = float(np.dot(x, x))
    noise = float(np.dot(x - y, x - y))
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _flat_levels(out, a, what, field):
    """(B, A*C, H, W) per level -> list per level of (B, H*W*A, C); or (B, N, C) -> [that]."""
    v = out
    if isinstance(v, (list, tuple)):
        levels = []
        for i, t in enumerate(v):
            t = _checks.as_float_array(t, f"{what}.{field}[{i}]")
            if t.ndim != 4 or t.shape[1] % a:
                raise ValueError(f"`{what}.{field}[{i}]` must have shape (B, A*C, H, W) with A = {a}; got {t.shape}")
            levels.append(_heads.flatten_head_output(t, a))
        return levels
    t = _checks.as_float_array(v, f"{what}.{field}")
    if t.ndim == 4:
        return [_heads.flatten_head_output(t, a)]
    if t.ndim != 3:
        raise ValueError(f"`{what}.{field}` must be (B, N, C) or per-level (B, A*C, H, W) maps; got {t.shape}")
    return [t]


def _outputs(out, what, num_anchors):
    if not (isinstance(out, tuple) and len(out) >= 2):
        raise TypeError(f"`{what}` must be a (cls_logits, bbox_deltas) pair (e.g. a RetinaNetHeadOutput or "
                        f"QuantizedHeadOutput); got {type(out).__name__}")
    cls, box = out[0], out[1]
    if num_anchors is None:
        b0 = box[0] if isinstance(box, (list, tuple)) else box
        b0 = np.asarray(b0)
        num_anchors = b0.shape[1] // 4 if b0.ndim == 4 else 1
    return _flat_levels(cls, num_anchors, what, "cls_logits"), _flat_levels(box, num_anchors, what, "bbox_deltas")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # no overflow warning for large |x|


def _match(fd, qd, iou_threshold):
    """Greedy one-to-one matching of quantized to float detections of the same class.

    Quantized detections in order (highest score first, as NMS returns them) each take the unmatched
    float detection of its class with the highest IoU, if that IoU >= ``iou_threshold`` (ties: the
    lower float index). Returns (matched pairs (qi, fi), their IoUs).
    """
    from refdet.iou import box_iou
    if len(fd.boxes) == 0 or len(qd.boxes) == 0:
        return [], []
    iou = box_iou(qd.boxes.astype(np.float64), fd.boxes.astype(np.float64))   # (Q, F)
    iou = np.where(qd.labels[:, None] == fd.labels[None, :], iou, -1.0)
    taken = np.zeros(len(fd.boxes), dtype=bool)
    pairs, ious = [], []
    for i in range(len(qd.boxes)):                      # loop over kept detections
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            taken[j] = True
            pairs.append((i, j))
            ious.append(float(row[j]))
    return pairs, ious


def _coco_columns(dets, ground_truths, num_classes):
    n = len(dets)
    gt_b = [np.asarray(g[0], np.float64).reshape(-1, 4) for g in ground_truths]
    gt_l = [np.asarray(g[1], np.int64).reshape(-1) for g in ground_truths]
    gt = {"image_id": np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(gt_b)]),
          "labels": np.concatenate(gt_l) if gt_l else np.zeros(0, np.int64),
          "boxes": np.concatenate(gt_b) if gt_b else np.zeros((0, 4)),
          "images": np.arange(n), "classes": np.arange(num_classes)}
    dt = {"image_id": np.concatenate([np.full(len(d.boxes), i, np.int64) for i, d in enumerate(dets)]),
          "boxes": np.concatenate([np.asarray(d.boxes, np.float64).reshape(-1, 4) for d in dets]),
          "scores": np.concatenate([np.asarray(d.scores, np.float64) for d in dets]),
          "labels": np.concatenate([np.asarray(d.labels, np.int64) for d in dets])}
    return dt, gt


def accuracy_report(float_outputs, quant_outputs, anchors, *, image_size, num_anchors=None,
                    score_threshold=0.05, nms_threshold=0.5, match_iou=0.5, topk=(100, 1000),
                    topk_candidates=1000, detections_per_image=100, min_size=1e-2,
                    box_weights=(1.0, 1.0, 1.0, 1.0), ground_truths=None, extra_tensors=None):
    """What quantization did to a RetinaNet head's outputs and detections.

    Parameters
    ----------
    float_outputs, quant_outputs : (cls_logits, bbox_deltas) pairs
        Either per-level lists of raw maps (B, A*K, H, W) / (B, 4A, H, W) (what
        :func:`refdet.heads.retinanet_head_forward` and :func:`run_quantized_head` return), or
        flattened (B, N, K) / (B, N, 4) arrays (one level). Anchors are flattened ``(level, y, x, a)``.
    anchors : ndarray, shape (N, 4), or list per level of (N_l, 4); xyxy
    image_size : (H, W)
        For clipping the decoded boxes.
    num_anchors : int, optional
        A; default from the box maps' channels (4A).
    score_threshold : float
        Detection score threshold (strict ``>``, torchvision), also the threshold of the crossing count.
    nms_threshold, topk_candidates, detections_per_image, min_size, box_weights
        Post-processing, :func:`refdet.nms.postprocess_detections` (``style="retinanet"``); the
        defaults are :meth:`refdet.detector.Detector.detect`'s.
    match_iou : float
        A quantized detection agrees with a float one of the same class when IoU >= ``match_iou``.
    topk : tuple of int
        k for the top-k anchor overlap (of (anchor, class) scores, per image).
    ground_truths : list of B (boxes (M, 4), labels (M,)), optional
        With it, COCO AP / AP50 of both detection sets (:func:`refdet.eval.evaluate_detections`).
    extra_tensors : dict, optional
        ``name -> (reference, approximation)``: more tensors to report the SQNR of (e.g. every layer).

    Returns
    -------
    dict
        ``sqnr_db`` {tensor: dB} (``cls_logits``, ``bbox_deltas``, ``cls_logits/L<i>`` per level, and
        ``extra_tensors``); ``logit_error`` {max, mean} and ``delta_error`` {max, mean} (absolute);
        ``threshold_crossings`` {count, up, down, total, fraction} over (anchor, class) pairs, where
        ``up`` = below or at the threshold in float, above it quantized; ``topk_overlap`` {k: mean
        fraction of the float top-k among the quantized top-k}; ``box_iou`` {mean, mean_drift = 1 -
        mean, min, candidates_mean, num_candidates} of float vs quantized decoded boxes per anchor
        (candidates: anchors with a float score above the threshold); ``detections`` {float, quant,
        matched, precision, recall, matched_mean_iou, matched_mean_score_diff}; ``ap`` {float, quant,
        delta, ap50_float, ap50_quant, ap50_delta} or None.

    Notes
    -----
    Precision = matched / #quantized detections, recall = matched / #float detections, summed over
    images; an empty side counts as 1.0 (nothing to disagree with).
    """
    from refdet.box_coder import decode_boxes
    from refdet.iou import box_iou_paired
    from refdet.nms import postprocess_detections

    fc, fb = _outputs(float_outputs, "float_outputs", num_anchors)
    qc, qb = _outputs(quant_outputs, "quant_outputs", num_anchors)
    if len(fc) != len(qc) or any(a.shape != b.shape for a, b in zip(fc + fb, qc + qb)):
        raise ValueError("`float_outputs` and `quant_outputs` must have the same levels and shapes; got "
                         f"{[t.shape for t in fc + fb]} and {[t.shape for t in qc + qb]}")
    sizes = [t.shape[1] for t in fc]
    if isinstance(anchors, (list, tuple)):
        anc = [_checks.as_boxes(a, f"anchors[{i}]") for i, a in enumerate(anchors)]
        if [len(a) for a in anc] != sizes:
            raise ValueError(f"`anchors` must have {sizes} anchors per level; got {[len(a) for a in anc]}")
    else:
        allb = _checks.as_boxes(anchors, "anchors")
        if len(allb) != sum(sizes):
            raise ValueError(f"`anchors` must have one row per anchor ({sum(sizes)}); got {len(allb)}")
        anc = np.split(allb, np.cumsum(sizes)[:-1])
    _checks.check_image_size(image_size)
    thr = _checks.check_real(score_threshold, "score_threshold")
    mi = _checks.check_probability(match_iou, "match_iou")
    ks = tuple(_checks.check_int(k, "topk", low=1) for k in topk)

    F = np.concatenate([t.astype(np.float64) for t in fc], axis=1)       # (B, N, K)
    Q = np.concatenate([t.astype(np.float64) for t in qc], axis=1)
    FB = np.concatenate([t.astype(np.float64) for t in fb], axis=1)      # (B, N, 4)
    QB = np.concatenate([t.astype(np.float64) for t in qb], axis=1)
    B, N, K = F.shape

    sq = {"cls_logits": sqnr_db(F, Q), "bbox_deltas": sqnr_db(FB, QB)}
    if len(fc) > 1:
        for i in range(len(fc)):
            sq[f"cls_logits/L{i}"] = sqnr_db(fc[i], qc[i])
            sq[f"bbox_deltas/L{i}"] = sqnr_db(fb[i], qb[i])
    for name, (r, a) in (extra_tensors or {}).items():
        sq[name] = sqnr_db(r, a)

    def err(a, b):
        d = np.abs(a - b)
        return {"max": float(d.max()) if d.size else 0.0, "mean": float(d.mean()) if d.size else 0.0}

    sf, sqs = _sigmoid(F), _sigmoid(Q)
    above_f, above_q = sf > thr, sqs > thr
    up = int(np.count_nonzero(~above_f & above_q))
    down = int(np.count_nonzero(above_f & ~above_q))
    total = int(F.size)
    crossings = {"count": up + down, "up": up, "down": down, "total": total,
                 "fraction": (up + down) / total if total else 0.0}

    overlap = {}
    fs, qs = sf.reshape(B, -1), sqs.reshape(B, -1)
    for k in ks:
        kk = min(k, fs.shape[1])
        if kk == 0:
            overlap[k] = 1.0
            continue
        # stable descending order: ties go to the lower (anchor, class) index
        tf = np.argsort(-fs, axis=1, kind="stable")[:, :kk]
        tq = np.argsort(-qs, axis=1, kind="stable")[:, :kk]
        inter = [np.intersect1d(tf[i], tq[i]).size for i in range(B)]   # loop over images
        overlap[k] = float(np.mean(inter) / kk) if B else 1.0

    allanc = np.concatenate(anc).astype(np.float64)                      # (N, 4)
    A_rep = np.broadcast_to(allanc, (B, N, 4)).reshape(-1, 4)
    bf = decode_boxes(FB.reshape(-1, 4), A_rep, weights=box_weights)
    bq = decode_boxes(QB.reshape(-1, 4), A_rep, weights=box_weights)
    iou = box_iou_paired(bf, bq)
    cand = above_f.any(axis=2).reshape(-1)
    box_iou = {"mean": float(iou.mean()) if iou.size else 1.0,
               "mean_drift": float(1.0 - iou.mean()) if iou.size else 0.0,
               "min": float(iou.min()) if iou.size else 1.0,
               "candidates_mean": float(iou[cand].mean()) if cand.any() else float("nan"),
               "num_candidates": int(cand.sum())}

    def post(cls_levels, box_levels, i):
        return postprocess_detections([c[i] for c in cls_levels], [b[i] for b in box_levels], anc, image_size,
                                      style="retinanet", score_threshold=thr, topk_candidates=topk_candidates,
                                      nms_threshold=nms_threshold, detections_per_image=detections_per_image,
                                      min_size=min_size, weights=box_weights)

    fdets = [post(fc, fb, i) for i in range(B)]                         # loop over images
    qdets = [post(qc, qb, i) for i in range(B)]
    n_f = sum(len(d.boxes) for d in fdets)
    n_q = sum(len(d.boxes) for d in qdets)
    matched, ious, sdiff = 0, [], []
    for fd, qd in zip(fdets, qdets):
        pairs, pi = _match(fd, qd, mi)
        matched += len(pairs)
        ious += pi
        sdiff += [abs(float(qd.scores[a]) - float(fd.scores[b])) for a, b in pairs]
    detections = {"float": n_f, "quant": n_q, "matched": matched,
                  "precision": matched / n_q if n_q else 1.0, "recall": matched / n_f if n_f else 1.0,
                  "matched_mean_iou": float(np.mean(ious)) if ious else float("nan"),
                  "matched_mean_score_diff": float(np.mean(sdiff)) if sdiff else float("nan")}

    ap = None
    if ground_truths is not None:
        from refdet.eval import evaluate_detections
        if len(ground_truths) != B:
            raise ValueError(f"`ground_truths` must have one (boxes, labels) pair per image ({B}); got "
                             f"{len(ground_truths)}")
        res = []
        for dets in (fdets, qdets):
            dt, gt = _coco_columns(dets, ground_truths, K)
            stats = evaluate_detections(dt, gt).stats
            res.append((max(float(stats[0]), 0.0), max(float(stats[1]), 0.0)))
        ap = {"float": res[0][0], "quant": res[1][0], "delta": res[1][0] - res[0][0],
              "ap50_float": res[0][1], "ap50_quant": res[1][1], "ap50_delta": res[1][1] - res[0][1]}

    return {"sqnr_db": sq, "logit_error": err(F, Q), "delta_error": err(FB, QB), "score_threshold": thr,
            "threshold_crossings": crossings, "topk_overlap": overlap, "box_iou": box_iou,
            "detections": detections, "ap": ap}


def _fmt(v, spec):
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return format(v, spec)


def format_accuracy_report(reports):
    """A readable table of several reports side by side.

    Parameters
    ----------
    reports : dict
        column title (e.g. ``"int8 onnxruntime"``) -> a dict from :func:`accuracy_report`.

    Returns
    -------
    str
    """
    if not isinstance(reports, dict) or not reports:
        raise TypeError("`reports` must be a non-empty dict: column title -> accuracy_report(...) dict")
    cols = list(reports)
    rows = []

    def add(label, get, spec):
        vals = []
        for c in cols:
            try:
                v = get(reports[c])
            except (KeyError, TypeError):
                v = None
            vals.append("-" if v is None else _fmt(v, spec))
        rows.append((label, vals))

    first = reports[cols[0]]
    for name in first["sqnr_db"]:
        add(f"SQNR {name} (dB)", lambda r, n=name: r["sqnr_db"][n], ".2f")
    add("max |logit error|", lambda r: r["logit_error"]["max"], ".4f")
    add("mean |logit error|", lambda r: r["logit_error"]["mean"], ".5f")
    add("max |delta error|", lambda r: r["delta_error"]["max"], ".4f")
    add("mean |delta error|", lambda r: r["delta_error"]["mean"], ".5f")
    thr = first["score_threshold"]
    add(f"scores crossing {thr:g} (count)", lambda r: r["threshold_crossings"]["count"], "d")
    add("  up / down", lambda r: f"{r['threshold_crossings']['up']} / {r['threshold_crossings']['down']}", "s")
    add("  fraction of (anchor, class)", lambda r: r["threshold_crossings"]["fraction"], ".2e")
    for k in first["topk_overlap"]:
        add(f"top-{k} score overlap", lambda r, k=k: r["topk_overlap"][k], ".4f")
    add("decoded box IoU, mean (all anchors)", lambda r: r["box_iou"]["mean"], ".5f")
    add("  IoU drift 1 - mean", lambda r: r["box_iou"]["mean_drift"], ".2e")
    add("  min IoU", lambda r: r["box_iou"]["min"], ".4f")
    add("  mean IoU, score candidates", lambda r: r["box_iou"]["candidates_mean"], ".5f")
    add("detections float / quantized", lambda r: f"{r['detections']['float']} / {r['detections']['quant']}", "s")
    add("  matched (same class, IoU >= 0.5)", lambda r: r["detections"]["matched"], "d")
    add("  precision vs float", lambda r: r["detections"]["precision"], ".4f")
    add("  recall vs float", lambda r: r["detections"]["recall"], ".4f")
    add("  matched mean IoU", lambda r: r["detections"]["matched_mean_iou"], ".4f")
    add("  matched mean |score diff|", lambda r: r["detections"]["matched_mean_score_diff"], ".5f")
    add("COCO AP float -> quantized", lambda r: f"{r['ap']['float']:.4f} -> {r['ap']['quant']:.4f}", "s")
    add("  AP change", lambda r: r["ap"]["delta"], "+.4f")
    add("  AP50 change", lambda r: r["ap"]["ap50_delta"], "+.4f")

    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join([" " * w0] + [c.rjust(w) for c, w in zip(cols, ws)])]
    lines.append("-" * len(lines[0]))
    for label, vals in rows:
        lines.append("  ".join([label.ljust(w0)] + [v.rjust(w) for v, w in zip(vals, ws)]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# ``refdet quantize`` and ``refdet demo --quantize``
# ---------------------------------------------------------------------------------------------------

def retinanet_features(det, params, images):
    """The FPN levels a :class:`refdet.detector.Detector` ("retinanet") feeds its head: list of (B, F, H, W)."""
    from refdet.detector import backbone_forward
    from refdet.fpn import fpn_forward
    if det.config.model != "retinanet":
        raise ValueError(f"quantization needs a 'retinanet' detector; got {det.config.model!r}")
    x = _checks.as_nchw(images, "images")
    feats, _ = backbone_forward(params["backbone"], x)
    levels, _ = fpn_forward(params["fpn"], [feats[i] for i in det.in_stages], extra_blocks="p6p7")
    return levels


def _scheme_of(mode):
    return "tflite" if mode in ("tflite", "tflite_single") else "onnx"


def _layer_table(qhead):
    lines = [f"      {'layer':32s} {'x scale':>9s} {'x zp':>5s} {'y scale':>9s} {'y zp':>5s} {'w scale range':>21s} "
             f"{'M range':>21s} {'shift':>9s}",
             f"      {'input (FPN levels)':32s} {'':9s} {'':5s} {float(qhead.input_scale):9.5f} "
             f"{qhead.input_zero_point:5d}"]
    for layer in qhead.cls_layers + qhead.box_layers:
        sh = f"{int(layer.shift.min())}..{int(layer.shift.max())}"
        lines.append(f"      {layer.name:32s} {float(layer.x_scale):9.5f} {layer.x_zero_point:5d} "
                     f"{float(layer.y_scale):9.5f} {layer.y_zero_point:5d} "
                     f"{float(layer.w_scale.min()):9.3e}..{float(layer.w_scale.max()):9.3e} "
                     f"{float(layer.multiplier_double.min()):9.3e}..{float(layer.multiplier_double.max()):9.3e} "
                     f"{sh:>9s}")
    return "\n".join(lines)


def quantize_demo(det, params, calibration_images, test, *, modes=("onnxruntime", "tflite"), observer="minmax",
                  write=print):
    """Quantize a trained demo RetinaNet's head, run the integer paths, print and return the reports.

    Parameters
    ----------
    det : refdet.detector.Detector ("retinanet")
    params : its trained parameters
    calibration_images : ndarray, shape (B, 3, H, W)
    test : refdet.synthetic.SyntheticBatch
        Held-out images and ground truth for the report (AP change included).
    modes : sequence of run modes (see :func:`run_quantized_head`); each uses the matching scheme
        (tflite modes: the TFLite converter's rounding; the others: onnxruntime's).
    observer : str
    write : callable

    Returns
    -------
    dict
        column title -> :func:`accuracy_report` dict, plus ``"rounding_only"``: how many final integer
        outputs onnxruntime and TFLite rounding change on one and the same quantized model.
    """
    from refdet.heads import retinanet_head_forward
    for m in modes:
        _checks.check_choice(m, "mode", _RUN_MODES)
    calib = retinanet_features(det, params, calibration_images)
    feats = retinanet_features(det, params, test.images)
    float_out, _ = retinanet_head_forward(params["head"], feats)
    float_layers = float_head_layers(params["head"], feats)
    gts = list(zip(test.boxes, test.labels))
    common = dict(image_size=det.image_size, ground_truths=gts)
    write(f"[Q] post-training quantization of the RetinaNet head: int8 per-channel symmetric weights, "
          f"{observer} activation ranges from {len(calibration_images)} calibration images, int32 biases")
    qheads = {}
    for scheme in sorted({_scheme_of(m) for m in modes} | {"onnx"}):
        qheads[scheme] = quantize_retinanet_head(params["head"], calib, scheme=scheme, observer=observer)
    write("    quantization parameters (scheme onnx; M = s_x s_w / s_y per output channel):")
    write(_layer_table(qheads["onnx"]))

    def layer_tensors(inter, qh, deq):
        out = {}
        names = ["input"] + [layer.name for layer in qh.cls_layers + qh.box_layers]
        lay = {layer.name: layer for layer in qh.cls_layers + qh.box_layers}
        for n in names:
            if deq:
                s, z = (qh.input_scale, qh.input_zero_point) if n == "input" else (lay[n].y_scale, lay[n].y_zero_point)
                approx = [_q.dequantize(v, s, z) for v in inter[n]]
            else:
                approx = inter[n]
            short = n.replace("classification_head", "cls").replace("regression_head", "box")
            out[f"{short}"] = (float_layers[n], approx)
        return out

    reports = {}
    fq = run_fake_quant_head(qheads["onnx"], feats, return_intermediates=True)
    reports["fake-quant (sim)"] = accuracy_report(float_out, fq, det.anchors,
                                                  extra_tensors=layer_tensors(fq.intermediates, qheads["onnx"], False),
                                                  **common)
    for m in modes:
        qh = qheads[_scheme_of(m)]
        out = run_quantized_head(qh, feats, mode=m, return_intermediates=True)
        reports[f"int8 {m}"] = accuracy_report(float_out, out, det.anchors,
                                               extra_tensors=layer_tensors(out.intermediates, qh, True), **common)
    write(f"    accuracy on {len(test.images)} held-out images (float32 head = reference; per-layer SQNR on "
          f"the dequantized activations):")
    for line in format_accuracy_report(reports).splitlines():
        write("      " + line)
    # the same quantized model under two runtimes' rounding: what differs is rounding alone
    qt = qheads["onnx"]
    a = run_quantized_head(qt, feats, mode="onnxruntime")
    b = run_quantized_head(qt, feats, mode="tflite")
    diffs = [np.abs(x.astype(np.int64) - y.astype(np.int64)) for x, y in zip(a.cls_q + a.bbox_q, b.cls_q + b.bbox_q)]
    n_diff = int(sum(np.count_nonzero(d) for d in diffs))
    n_all = int(sum(d.size for d in diffs))
    max_d = int(max(int(d.max()) for d in diffs))
    write(f"    rounding alone (one onnx-scheme model, onnxruntime vs tflite requantization and input rounding): "
          f"{n_diff} of {n_all} final int8 outputs differ, by at most {max_d} LSB")
    reports["rounding_only"] = {"differing": n_diff, "total": n_all, "max_lsb": max_d}
    # outputs pinned at the ends of the int8 range: the calibration range was exceeded (clipping error)
    sat = {}
    for field, layer, qs in (("cls_logits", qt.cls_layers[-1], a.cls_q), ("bbox_deltas", qt.box_layers[-1], a.bbox_q)):
        n_lo = int(sum(np.count_nonzero(v == layer.qmin) for v in qs))
        n_hi = int(sum(np.count_nonzero(v == layer.qmax) for v in qs))
        sat[field] = {"at_qmin": n_lo, "at_qmax": n_hi, "total": int(sum(v.size for v in qs))}
        lo_v = float(layer.y_scale) * (layer.qmin - layer.y_zero_point)
        hi_v = float(layer.y_scale) * (layer.qmax - layer.y_zero_point)
        write(f"    saturated {field} (onnxruntime): {n_lo} at {layer.qmin} (= {lo_v:.3f}), {n_hi} at {layer.qmax} "
              f"(= {hi_v:.3f}) of {sat[field]['total']}: values beyond the calibrated range are clipped")
    reports["saturation"] = sat
    return reports


def _quantize_args(p):
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=400, help="training steps before quantizing (default 400, about "
                   "half a minute)")
    p.add_argument("--mode", nargs="+", choices=_RUN_MODES, default=["onnxruntime", "tflite"],
                   help="integer-path runtimes to reproduce (default: onnxruntime tflite)")
    p.add_argument("--observer", choices=tuple(_OBSERVERS), default="minmax")
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-calib", type=int, default=32, help="calibration images (fresh synthetic ones)")
    p.add_argument("--n-test", type=int, default=64, help="held-out images for the report")


def _single_thread():
    """Limit BLAS to one thread when threadpoolctl is installed: small matmuls on a shared machine run
    many times faster single-threaded (no effect on results)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1)


def quantize_command(*, seed=0, steps=400, modes=("onnxruntime", "tflite"), observer="minmax", n_train=512,
                     n_calib=32, n_test=64, batch=8, lr=0.02, write=print):
    """Train the demo RetinaNet briefly, quantize its head and report (``refdet quantize``)."""
    import time
    from refdet.detector import Detector, sgd_momentum_update
    from refdet.synthetic import make_synthetic_dataset
    steps = _checks.check_int(steps, "steps", low=0)
    for name, v in (("n_train", n_train), ("n_calib", n_calib), ("n_test", n_test)):
        _checks.check_int(v, name, low=1)
    batch = min(_checks.check_int(batch, "batch", low=1), n_train)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with _single_thread():
        train = make_synthetic_dataset(n_train, rng=rng)
        calib = make_synthetic_dataset(n_calib, rng=rng)
        test = make_synthetic_dataset(n_test, rng=rng)
        det = Detector("retinanet")
        params = det.init(rng=rng)
        write(f"refdet quantize: train the demo RetinaNet for {steps} steps (seed {seed}), then quantize its head")
        velocity = None
        for step in range(steps):
            idx = rng.choice(n_train, size=batch, replace=False)
            lr_t = lr * min(1.0, (step + 1) / max(1, steps // 10))
            losses, grads = det.train_step(params, train.images[idx], [(train.boxes[i], train.labels[i]) for i in idx],
                                           rng=rng)
            params, velocity = sgd_momentum_update(params, grads, velocity, lr=lr_t, momentum=0.9,
                                                   weight_decay=1e-4, max_grad_norm=10.0)
            if (step + 1) % max(1, steps // 5) == 0 or step + 1 == steps:
                write(f"      step {step + 1:4d}/{steps}  loss {losses['total']:.4f}  {time.perf_counter() - t0:5.1f}s")
        reports = quantize_demo(det, params, calib.images, test, modes=tuple(modes), observer=observer, write=write)
    write(f"done in {time.perf_counter() - t0:.1f}s")
    return reports


def _quantize_run(args):
    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0; got {args.steps}")
    quantize_command(seed=args.seed, steps=args.steps, modes=tuple(args.mode), observer=args.observer,
                     n_train=args.n_train, n_calib=args.n_calib, n_test=args.n_test)
    return 0
