"""Test-side builders of one-op int8 ``.tflite`` models, and a runner on LiteRT's reference kernels.

The models are written with nnef-tools' TFLite flatbuffer writer
(``nnef_tools.io.tf.lite.writer.write_flatbuffers``), so no TensorFlow is needed, and run with
``ai_edge_litert.interpreter.Interpreter(..., experimental_op_resolver_type=OpResolverType.BUILTIN_REF)``:
the reference kernels (``tensorflow/lite/kernels/internal/reference/...``) that refdet's "tflite" mode
reproduces. The default resolver (XNNPACK) and the optimized builtin kernels (ruy) round differently
(1 LSB by design, SPEC-quant-exchange §3.2) and must not be used for these comparisons.

Both packages are imported lazily: importing this module needs only numpy. Callers skip with
``pytest.importorskip("ai_edge_litert")`` and ``pytest.importorskip("nnef_tools")`` first.

Quantization parameters as TFLite stores them:

* activations: int8, per-tensor ``(scale, zero_point)``;
* CONV_2D weights: int8 OHWI, per-channel scales along dim 0 (``quantized_dimension`` 0, which is the
  flatbuffer default; the nnef-tools writer does not write the field), zero points 0;
* bias: int32, ``scale[o] = float32(double(x_scale) * double(w_scale[o]))``, zero point 0.
"""
import os
import tempfile
import warnings

import numpy as np

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _f32_list(v, n=None):
    a = np.asarray(v, dtype=np.float32).reshape(-1)
    if n is not None and a.size == 1:
        a = np.repeat(a, n)
    return [float(s) for s in a]          # lists: the writer's "all zero?" test breaks on arrays


def _quant(scale, zero_point, n=None):
    s = _f32_list(scale, n)
    z = np.asarray(zero_point, dtype=np.int64).reshape(-1)
    if z.size == 1 and len(s) > 1:
        z = np.repeat(z, len(s))
    return {"scale": s, "zero_point": [int(v) for v in z]}


def _serialize(graph):
    from nnef_tools.io.tf.lite.writer import write_flatbuffers

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)    # flatbuffers: "numElems is deprecated"
        path = os.path.join(d, "model.tflite")
        write_flatbuffers(graph, path)
        with open(path, "rb") as f:
            return f.read()


def conv_output_hw(h, w, kh, kw, stride, dilation, padding):
    """TFLite's output size (``ComputeOutSize``): SAME = ceil(in / s), VALID = ceil((in - dk + 1) / s)."""
    (sh, sw), (dh, dw) = stride, dilation
    if padding == "SAME":
        return -(-h // sh), -(-w // sw)
    return -(-(h - dh * (kh - 1)) // sh), -(-(w - dw * (kw - 1)) // sw)


def conv2d_int8_model(x_shape, x_scale, x_zero_point, w, w_scale, bias, y_scale, y_zero_point, *,
                      stride=(1, 1), padding="VALID", dilation=(1, 1), activation="NONE"):
    """Bytes of a ``.tflite`` model with one int8 ``CONV_2D`` (per-channel weights, int32 bias).

    Parameters
    ----------
    x_shape : tuple (N, H, W, C)
    x_scale, y_scale : float (stored as float32)
    x_zero_point, y_zero_point : int in [-128, 127]
    w : ndarray of int8, shape (O, KH, KW, C)   (OHWI, stored as a constant)
    w_scale : float or ndarray, shape (O,)   (stored per channel)
    bias : ndarray of int32, shape (O,)
    stride, dilation : pair (h, w)
    padding : {"SAME", "VALID"}
    activation : {"NONE", "RELU", "RELU6", "RELU_N1_TO_1"}   (fused_activation_function)

    Returns
    -------
    bytes
    """
    from nnef_tools.model import Graph, Operation, Tensor

    w = np.ascontiguousarray(w, dtype=np.int8)
    bias = np.ascontiguousarray(bias, dtype=np.int32)
    o, kh, kw, c = w.shape
    n, h, wd, cx = x_shape
    assert cx == c and bias.shape == (o,) and padding in ("SAME", "VALID") and activation in ACTIVATIONS
    ws = np.asarray(_f32_list(w_scale, o), dtype=np.float32)
    bias_scale = (np.float64(np.float32(x_scale)) * ws.astype(np.float64)).astype(np.float32)
    oh, ow = conv_output_hw(h, wd, kh, kw, stride, dilation, padding)
    g = Graph(name="conv2d_int8")
    tx = Tensor(g, name="x", shape=tuple(x_shape), dtype=np.int8, quant=_quant(x_scale, x_zero_point))
    tw = Tensor(g, name="w", shape=w.shape, dtype=np.int8, data=w, quant=_quant(ws, 0, o))
    tb = Tensor(g, name="b", shape=(o,), dtype=np.int32, data=bias, quant=_quant(bias_scale, 0, o))
    ty = Tensor(g, name="y", shape=(n, oh, ow, o), dtype=np.int8, quant=_quant(y_scale, y_zero_point))
    Operation(g, type="CONV_2D", inputs=(tx, tw, tb), outputs=(ty,),
              attribs=dict(padding=padding, stride_h=int(stride[0]), stride_w=int(stride[1]),
                           dilation_h_factor=int(dilation[0]), dilation_w_factor=int(dilation[1]),
                           fused_activation_function=activation))
    g.inputs, g.outputs = [tx], [ty]
    return _serialize(g)


def fully_connected_int8_model(x_shape, x_scale, x_zero_point, w, w_scale, bias, y_scale, y_zero_point, *,
                               activation="NONE"):
    """Bytes of a ``.tflite`` model with one int8 ``FULLY_CONNECTED``.

    ``x`` is (N, C), ``w`` int8 (O, C) with a per-tensor scale (one value) or per-channel scales (O,),
    ``bias`` int32 (O,); the output is (N, O).
    """
    from nnef_tools.model import Graph, Operation, Tensor

    w = np.ascontiguousarray(w, dtype=np.int8)
    bias = np.ascontiguousarray(bias, dtype=np.int32)
    o, c = w.shape
    n, cx = x_shape
    assert cx == c and bias.shape == (o,) and activation in ACTIVATIONS
    ws = np.asarray(_f32_list(w_scale), dtype=np.float32)
    bias_scale = (np.float64(np.float32(x_scale)) * ws.astype(np.float64)).astype(np.float32)
    g = Graph(name="fully_connected_int8")
    tx = Tensor(g, name="x", shape=tuple(x_shape), dtype=np.int8, quant=_quant(x_scale, x_zero_point))
    tw = Tensor(g, name="w", shape=w.shape, dtype=np.int8, data=w, quant=_quant(ws, 0))
    tb = Tensor(g, name="b", shape=(o,), dtype=np.int32, data=bias, quant=_quant(bias_scale, 0))
    ty = Tensor(g, name="y", shape=(n, o), dtype=np.int8, quant=_quant(y_scale, y_zero_point))
    Operation(g, type="FULLY_CONNECTED", inputs=(tx, tw, tb), outputs=(ty,),
              attribs=dict(fused_activation_function=activation, weights_format="DEFAULT",
                           keep_num_dims=False, asymmetric_quantize_inputs=False))
    g.inputs, g.outputs = [tx], [ty]
    return _serialize(g)


def quantize_model(shape, y_scale, y_zero_point):
    """Bytes of a ``.tflite`` model with one ``QUANTIZE`` op: float32 ``shape`` -> int8 (scale, zp)."""
    from nnef_tools.model import Graph, Operation, Tensor

    g = Graph(name="quantize_int8")
    tx = Tensor(g, name="x", shape=tuple(shape), dtype=np.float32)
    ty = Tensor(g, name="y", shape=tuple(shape), dtype=np.int8, quant=_quant(y_scale, y_zero_point))
    Operation(g, type="QUANTIZE", inputs=(tx,), outputs=(ty,), attribs={})
    g.inputs, g.outputs = [tx], [ty]
    return _serialize(g)


def run_reference(model, x):
    """Run a one-input ``.tflite`` model on LiteRT's ``BUILTIN_REF`` kernels and return the output."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    assert tuple(inp["shape"]) == x.shape and inp["dtype"] == x.dtype, (inp, x.shape, x.dtype)
    interp.set_tensor(inp["index"], np.ascontiguousarray(x))
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


def quantized_head_model(qhead, input_shape):
    """Bytes of a ``.tflite`` model of a :class:`refdet.quant.QuantizedHead` (int8, TFLite scheme).

    ``x`` float32 NHWC ``input_shape`` -> ``QUANTIZE`` (head input qparams) -> per branch, the layers as
    int8 ``CONV_2D`` 3x3 stride 1 SAME (= padding 1) with fused RELU on tower layers -> ``DEQUANTIZE``
    of each branch's last layer. Outputs, in order: every layer's int8 output (``layer.name``, NHWC),
    then ``<last layer name>.float`` for the classification and the regression branch.

    Returns
    -------
    (bytes, list of str)
        The model and its output names.
    """
    from nnef_tools.model import Graph, Operation, Tensor

    n, h, w, c = input_shape
    g = Graph(name="quantized_retinanet_head")
    tx = Tensor(g, name="x", shape=tuple(input_shape), dtype=np.float32)
    tq = Tensor(g, name="input", shape=tuple(input_shape), dtype=np.int8,
                quant=_quant(qhead.input_scale, qhead.input_zero_point))
    Operation(g, type="QUANTIZE", inputs=(tx,), outputs=(tq,), attribs={})
    outputs = []
    for branch in (qhead.cls_layers, qhead.box_layers):
        prev = tq
        for layer in branch:
            wt = np.ascontiguousarray(np.asarray(layer.weight, np.int8).transpose(0, 2, 3, 1))   # OIHW -> OHWI
            f = wt.shape[0]
            tw = Tensor(g, name=layer.name + ".w", shape=wt.shape, dtype=np.int8, data=wt,
                        quant=_quant(layer.w_scale, 0, f))
            tb = Tensor(g, name=layer.name + ".b", shape=(f,), dtype=np.int32,
                        data=np.ascontiguousarray(layer.bias, dtype=np.int32), quant=_quant(layer.bias_scale, 0, f))
            ty = Tensor(g, name=layer.name, shape=(n, h, w, f), dtype=np.int8,
                        quant=_quant(layer.y_scale, layer.y_zero_point))
            Operation(g, type="CONV_2D", inputs=(prev, tw, tb), outputs=(ty,),
                      attribs=dict(padding="SAME", stride_h=1, stride_w=1, dilation_h_factor=1, dilation_w_factor=1,
                                   fused_activation_function="RELU" if layer.relu else "NONE"))
            outputs.append(ty)
            prev = ty
        tf = Tensor(g, name=prev.name + ".float", shape=prev.shape, dtype=np.float32)
        Operation(g, type="DEQUANTIZE", inputs=(prev,), outputs=(tf,), attribs={})
        outputs.append(tf)
    g.inputs, g.outputs = [tx], outputs
    return _serialize(g), [t.name for t in outputs]


def run_reference_outputs(model, x):
    """Run a one-input ``.tflite`` model on ``BUILTIN_REF`` kernels; a dict of every output by tensor name."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=model, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    assert tuple(inp["shape"]) == x.shape and inp["dtype"] == x.dtype, (inp, x.shape, x.dtype)
    interp.set_tensor(inp["index"], np.ascontiguousarray(x))
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()}
