"""Export refdet models to ONNX, read their parameters back, and check runtimes against refdet.

Needs the optional package ``onnx`` (and ``onnxruntime`` to run models); both are imported inside
the functions, so ``import refdet`` never needs them.

How the graph reproduces refdet (SPEC-quant-exchange §6):

* **Opset** 19 by default (17-21 accepted): onnx.reference runs every op used here at 19-21 and
  onnxruntime 1.32 runs all of them. The IR version is set explicitly (8 for opset <= 18, 9 for 19-20,
  10 for 21) instead of the installed onnx's newest, which older runtimes reject. Every model passes
  ``onnx.checker.check_model(full_check=True)``.
* **FPN upsampling** is ``Resize(x, "", "", Shape(lateral), mode="nearest",
  coordinate_transformation_mode="asymmetric", nearest_mode="floor")``: source ``floor(dst * in /
  out)``, PyTorch's ``nearest`` (13 -> 25 included). ONNX's default ``half_pixel`` +
  ``round_prefer_floor`` picks another row there (output 13 of 13 -> 25). ``upsample_mode=
  "nearest-exact"`` becomes ``half_pixel`` + ``round_prefer_ceil`` (``floor((dst + 0.5) * in / out)``);
  ``upsample="x2"`` uses ``scales = [1, 1, 2, 2]``.

  *Exactness* (checked against onnxruntime 1.32): for ``nearest`` on the sizes of a stride-2 pyramid
  (``out = 2 in`` or ``2 in - 1``, every ``in`` < 2000) ``Resize`` picks PyTorch's rows. For other
  ratios the two round differently where ``dst * in / out`` is an exact integer: onnxruntime computes
  ``dst / float32(out / in)``, PyTorch ``dst * float32(in / out)``, so 14 -> 16 at output 8 is row 6
  in onnxruntime and row 7 in PyTorch (455 of the 12,736 pairs in 1..64 x 1..199 differ somewhere).
  ``nearest-exact`` through ``Resize`` differs even on pyramid sizes (50 -> 99 at output 49).
  ``upsample_op="gather"`` writes PyTorch's index arithmetic out in ONNX ops (``Shape``, ``Range``,
  float32 ``Mul``, ``Floor``, ``Gather``) and is exact for every size pair in both modes.
* **Head layout**: ``Transpose(perm=[0, 2, 3, 1])`` then ``Reshape([0, -1, C])``: channel
  ``a*C + c`` of location (y, x) becomes row ``(y*W + x)*A + a`` (:func:`refdet.flatten_head_output`,
  torchvision's ``permute_and_flatten``); levels are concatenated on axis 1. The 2A softmax RPN
  objectness (class-major channels ``c*A + a``) is ``Reshape([0, 2, A, -1])``,
  ``Transpose([0, 3, 2, 1])``, ``Reshape([0, -1, 2])``.
* **GroupNorm** is written out with ``Reshape``/``ReduceMean``/``Sqrt`` in refdet's order
  (two-pass biased variance, ``rstd = 1 / sqrt(var + eps)``), so it runs at every opset.
* **Post-processing** follows :func:`refdet.decode_boxes` (torchvision) operation by operation in
  float32: ``d / weights``; ``dw = min(dw, clamp)``; ``w = x2 - x1``; ``cx = x1 + 0.5 * w``;
  ``pcx = dx * w + cx``; ``pw = exp(dw) * w``; ``x1' = pcx - 0.5 * pw``, ``x2' = pcx + 0.5 * pw``.
  Only ``exp`` can differ (the runtime's libm, last bit). Scores are ``Sigmoid(cls_logits)`` and
  ``NonMaxSuppression(boxes, Transpose(scores, [0, 2, 1]), max_output_boxes_per_class, iou_threshold,
  score_threshold, center_point_box=0)`` with all three as initializers; ``max_output_boxes_per_class``
  is always present (without it ONNX selects **nothing**). Semantics: :func:`refdet.onnx_non_max_suppression`.

* **YOLO post-processing** (``model="yolo_postprocess"``): the DFL decode as ``Reshape(N, P, 4, R)``,
  ``Softmax(axis=-1)``, ``Mul`` by the bins ``0 .. R - 1`` and ``ReduceSum`` (ultralytics' 1 x 1 conv); ``dist2bbox`` and the stride as
  ``Sub``/``Add``/``Div``/``Mul``; ultralytics' NMS by the class-offset trick (``ArgMax`` first
  maximum, ``ReduceMax``, corners ``xy -+ wh / 2`` shifted by ``class * max_wh``) into one
  single-class ``NonMaxSuppression`` whose ``max_output_boxes_per_class`` is ``max_det``; the
  ``detections`` rows are ``Gather``-ed from the flattened tensors at row ``image * P + point``. Float differences: the softmax and the expectation's
  summation order (a few ulp of the coordinate scale).

Parameter initializers carry refdet's keys (torchvision state_dict keys) unchanged; the model's
``metadata_props`` record ``refdet.model``, ``refdet.config`` (JSON) and ``refdet.params`` (the list of
parameter initializers), which :func:`load_onnx_params` and :func:`verify_onnx` read back.

Parameters are exported as float32 (ONNX Runtime's CPU convolutions are float32): a round trip gives
back ``params[k].astype(float32)``, bit for bit.

**Quantized head** (``model="quantized_retinanet_head"``, ``params`` a
:class:`refdet.quant.QuantizedHead`): QDQ form (SPEC §4), the form onnxruntime's own quantizer
writes: ``QuantizeLinear``/``DequantizeLinear`` on the input and after every conv (after its ReLU),
weights as int8 initializers behind ``DequantizeLinear(axis=0)`` with per-channel scales and zero
points 0, biases as int32 initializers behind ``DequantizeLinear`` at scale ``s_x * s_w[f]``.
onnxruntime fuses each DQ-Conv-(Relu)-Q group into ``QLinearConv`` (with uint8 activations every
conv; with int8 activations onnxruntime 1.32 on x86 leaves the first conv of each subnet as a float
``Conv`` on dequantized values); refdet's answer is :func:`refdet.quant.run_quantized_head` with
``mode="onnxruntime"`` (float32 multiplier, RNE), which the fused convs reproduce exactly.
onnx.reference (and ``"onnxruntime-unfused"``) run the convs in float on dequantized values and
re-quantize, which can land 1 LSB away near rounding ties; ``verify_onnx(lsb_tolerance=...)``. Needs opset
>= 19 in onnx.reference (its DequantizeLinear exists for 19, 21, 23, 25 only).
:func:`load_quantized_head` rebuilds the ``QuantizedHead`` from the file.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from refdet import _checks
from refdet.exchange import _models, _onnx_check
from refdet.exchange import files as _files
from refdet.exchange.files import format_bytes

__all__ = ["export_onnx", "load_onnx_params", "load_quantized_head", "read_onnx", "onnx_config", "verify_onnx",
           "run_onnx",
           "IR_VERSION_OF_OPSET"]

#: the IR version written for each accepted opset (onnx.helper.VERSION_TABLE: onnx 1.13-1.16)
IR_VERSION_OF_OPSET = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def _import_onnx():
    try:
        import onnx
        import onnx.helper  # noqa: F401
        import onnx.numpy_helper  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("refdet.exchange.onnx needs the optional package 'onnx' (pip install 'refdet[onnx]')") \
            from exc
    return onnx


def _c_order(arr):
    """C-contiguous, keeping 0-d arrays 0-d (``np.ascontiguousarray`` would make them (1,))."""
    arr = np.asarray(arr)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


class _Builder(_models.ProgramEmitter):
    """Collects nodes and initializers; names are unique and readable."""

    def __init__(self, onnx, opset):
        self.onnx = onnx
        self.h = onnx.helper
        self.opset = opset
        self.nodes, self.inits, self.params = [], [], []
        self._n = 0
        self._consts = {}
        self.prefix = ""
        self.upsample_op = "resize"

    def name(self, hint):
        self._n += 1
        return f"{hint}_{self._n}"

    def param(self, key, arr):
        key = self.prefix + key
        if key not in self.params:
            self.inits.append(self.onnx.numpy_helper.from_array(_c_order(arr), key))
            self.params.append(key)
        return key

    def const(self, arr, hint="const"):
        arr = np.asarray(arr)
        sig = (arr.dtype.str, arr.shape, arr.tobytes())
        if sig not in self._consts:
            name = f"_refdet_{hint}_{len(self._consts)}"
            self.inits.append(self.onnx.numpy_helper.from_array(_c_order(arr), name))
            self._consts[sig] = name
        return self._consts[sig]

    def op(self, op_type, inputs, hint=None, n_out=1, **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    # -- layers ------------------------------------------------------------------------------------
    def conv(self, x, wkey, bkey, params, *, pad, stride=1, hint="conv"):
        w = params[wkey]
        ins = [x, self.param(wkey, w)]
        if bkey is not None:
            ins.append(self.param(bkey, params[bkey]))
        return self.op("Conv", ins, hint, kernel_shape=list(w.shape[2:]), pads=[pad] * 4,
                       strides=[stride, stride], dilations=[1, 1], group=1)

    def reduce_mean(self, x, axes):
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(np.asarray(axes, np.int64), "axes")], keepdims=1)
        return self.op("ReduceMean", [x], axes=list(axes), keepdims=1)

    def group_norm(self, x, gkey, bkey, params, groups, eps):
        # refdet.layers.group_norm_forward: xc = x - mean; var = mean(xc * xc); rstd = 1 / sqrt(var + eps)
        r = self.op("Reshape", [x, self.const(np.asarray([0, groups, -1], np.int64), "shape")], "gn_groups")
        xc = self.op("Sub", [r, self.reduce_mean(r, [2])], "gn_centred")
        var = self.reduce_mean(self.op("Mul", [xc, xc]), [2])
        std = self.op("Sqrt", [self.op("Add", [var, self.const(np.asarray(eps, np.float32), "eps")])])
        rstd = self.op("Div", [self.const(np.asarray(1.0, np.float32), "one"), std], "gn_rstd")
        xhat = self.op("Reshape", [self.op("Mul", [xc, rstd]), self.op("Shape", [x])], "gn_xhat")
        c3 = self.const(np.asarray([-1, 1, 1], np.int64), "shape")
        g = self.op("Reshape", [self.param(gkey, params[gkey]), c3])
        b = self.op("Reshape", [self.param(bkey, params[bkey]), c3])
        return self.op("Add", [self.op("Mul", [xhat, g]), b], "gn")

    def relu(self, x):
        return self.op("Relu", [x])

    def flatten(self, x, c, hint):
        t = self.op("Transpose", [x], perm=[0, 2, 3, 1])
        return self.op("Reshape", [t, self.const(np.asarray([0, -1, c], np.int64), "shape")], hint)

    def flatten_class_major(self, x, a, c, hint):
        r = self.op("Reshape", [x, self.const(np.asarray([0, c, a, -1], np.int64), "shape")])
        t = self.op("Transpose", [r], perm=[0, 3, 2, 1])
        return self.op("Reshape", [t, self.const(np.asarray([0, -1, c], np.int64), "shape")], hint)

    def upsample_gather(self, x, like, mode):
        """Nearest upsampling of ``x`` to ``like``'s spatial size with PyTorch's own index arithmetic.

        Per axis: ``scale = float32(in) / float32(out)``; ``src = floor(float32(dst) * scale)``
        (``nearest``) or ``floor(float32((dst + 0.5) * double(scale)))`` (``nearest-exact``); clipped to
        ``in - 1``; then ``Gather``. This is :func:`refdet.resize.upsample_nearest_source_index` written in
        ONNX ops, exact for every size pair (``Resize`` is exact only for 2x pyramids, see the module
        docstring).
        """
        T = self.onnx.TensorProto
        i64 = lambda v: self.const(np.asarray(v, np.int64), "idx")  # noqa: E731
        s_in, s_out = self.op("Shape", [x]), self.op("Shape", [like])
        for axis in (2, 3):
            n_in = self.op("Slice", [s_in, i64([axis]), i64([axis + 1])])
            n_out = self.op("Slice", [s_out, i64([axis]), i64([axis + 1])])
            scale = self.op("Div", [self.op("Cast", [n_in], to=T.FLOAT), self.op("Cast", [n_out], to=T.FLOAT)],
                            "scale")
            dst = self.op("Range", [i64(0), self.op("Squeeze", [n_out, i64([0])]), i64(1)], "dst")
            if mode == "nearest":
                src = self.op("Mul", [self.op("Cast", [dst], to=T.FLOAT), scale])
            else:
                d = self.op("Add", [self.op("Cast", [dst], to=T.DOUBLE), self.const(np.asarray(0.5), "half64")])
                src = self.op("Cast", [self.op("Mul", [d, self.op("Cast", [scale], to=T.DOUBLE)])], to=T.FLOAT)
            idx = self.op("Cast", [self.op("Floor", [src])], to=T.INT64)
            idx = self.op("Min", [idx, self.op("Sub", [n_in, i64([1])])], "src_index")
            x = self.op("Gather", [x, idx], "upsample_axis", axis=axis)
        return x

    def concat(self, xs, hint):
        return xs[0] if len(xs) == 1 else self.op("Concat", xs, hint, axis=1)


# ---------------------------------------------------------------------------------------------------
# graph bodies
# ---------------------------------------------------------------------------------------------------

def _rpn_graph(g, cfg, params, xs):
    trunk = []
    for i in range(cfg["conv_depth"]):
        trunk += [("conv", f"conv.{i}.0.weight", f"conv.{i}.0.bias", 1), ("relu",)]
    a = cfg["num_anchors"]
    obj, dlt = [], []
    for x in xs:
        t = g.program(trunk, x, params, 1, 0.0)
        o = g.conv(t, "cls_logits.weight", "cls_logits.bias", params, pad=0)
        d = g.conv(t, "bbox_pred.weight", "bbox_pred.bias", params, pad=0)
        obj.append(g.flatten(o, 1, "objectness_level") if cfg["objectness"] == "sigmoid"
                   else g.flatten_class_major(o, a, 2, "objectness_level"))
        dlt.append(g.flatten(d, 4, "deltas_level"))
    return [g.concat(obj, "objectness_cat"), g.concat(dlt, "deltas_cat")]


def _retinanet_graph(g, hc, params, xs):
    progs = {h: [tuple(op) for op in ops] for h, ops in hc["programs"].items()}
    k = hc["num_classes"]
    cls, box = [], []
    for x in xs:
        c = g.program(progs["classification_head"], x, params, hc["num_groups"], hc["eps"])
        b = g.program(progs["regression_head"], x, params, hc["num_groups"], hc["eps"])
        cls.append(g.flatten(c, k, "cls_level"))
        box.append(g.flatten(b, 4, "box_level"))
    return [g.concat(cls, "cls_cat"), g.concat(box, "box_cat")]


def _resize_attrs(mode):
    if mode == "nearest":   # torch 'nearest': src = floor(dst * in / out)
        return dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    # torch 'nearest-exact': src = floor((dst + 0.5) * in / out) = round-half-up of the half-pixel coordinate
    return dict(mode="nearest", coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")


def _fpn_graph(g, fc, params, xs):
    s = fc["settings"]
    L = len(xs)
    outs = [None] * L
    m = g.conv(xs[L - 1], f"inner_blocks.{L - 1}.0.weight", f"inner_blocks.{L - 1}.0.bias", params, pad=0,
               hint="lateral")
    top_lateral = m
    outs[L - 1] = g.conv(m, f"layer_blocks.{L - 1}.0.weight", f"layer_blocks.{L - 1}.0.bias", params, pad=1,
                         hint="p")
    for i in range(L - 2, -1, -1):
        lat = g.conv(xs[i], f"inner_blocks.{i}.0.weight", f"inner_blocks.{i}.0.bias", params, pad=0,
                     hint="lateral")
        if g.upsample_op == "gather":
            up = g.upsample_gather(m, lat, s["upsample_mode"])
        elif s["upsample"] == "to_lateral":
            up = g.op("Resize", [m, "", "", g.op("Shape", [lat], "lateral_shape")], "upsample",
                      **_resize_attrs(s["upsample_mode"]))
        else:
            up = g.op("Resize", [m, "", g.const(np.asarray([1, 1, 2, 2], np.float32), "scales")], "upsample",
                      **_resize_attrs(s["upsample_mode"]))
        m = g.op("Add", [lat, up], "merge")
        if s["fuse"] == "avg":
            m = g.op("Mul", [m, g.const(np.asarray(0.5, np.float32), "half")], "merge_avg")
        outs[i] = g.conv(m, f"layer_blocks.{i}.0.weight", f"layer_blocks.{i}.0.bias", params, pad=1, hint="p")
    extra = []
    if s["extra_blocks"] == "maxpool":
        extra.append(g.op("MaxPool", [outs[L - 1]], "pool", kernel_shape=[1, 1], strides=[2, 2]))
    elif s["extra_blocks"] == "p6p7":
        x = {"c5": xs[L - 1], "p5": outs[L - 1], "lateral": top_lateral}[s["p6p7_input"]]
        p6 = g.conv(x, "extra_blocks.p6.weight", "extra_blocks.p6.bias", params, pad=1, stride=2, hint="p6")
        x7 = g.op("Relu", [p6]) if s["relu_before_p7"] else p6
        extra += [p6, g.conv(x7, "extra_blocks.p7.weight", "extra_blocks.p7.bias", params, pad=1, stride=2,
                             hint="p7")]
    return outs + extra


def _qdq_graph(g, cfg, params, xs):
    """QDQ RetinaNet head: Q/DQ of the input, then per layer DQ(weight), DQ(bias), Conv, [Relu], Q, DQ."""
    def dq(key, axis=None):
        kw = {} if axis is None else {"axis": axis}
        return g.op("DequantizeLinear", [g.param(key + "_quantized", params[key + "_quantized"]),
                                         g.param(key + "_scale", params[key + "_scale"]),
                                         g.param(key + "_zero_point", params[key + "_zero_point"])], "dq", **kw)

    def qdq(x, scale_key, zp_key, hint):
        s_, z_ = g.param(scale_key, params[scale_key]), g.param(zp_key, params[zp_key])
        return g.op("DequantizeLinear", [g.op("QuantizeLinear", [x, s_, z_], hint + "_q"), s_, z_], hint)

    k = cfg["num_classes"]
    outs = {"cls": [], "box": []}
    for x in xs:
        for branch in ("cls", "box"):
            # a Q/DQ pair per consumer: onnxruntime's QDQ fusion turns DQ -> Conv -> Q into QLinearConv
            # only when the pair feeds that one Conv (the same input quantized twice: identical integers)
            cur = qdq(x, "input_scale", "input_zero_point", "input_dq")
            for name, relu in cfg["layers"][branch]:
                w = dq(name + ".weight", axis=0)           # per output channel, int8, zero point 0
                b = dq(name + ".bias", axis=0)             # int32 at scale s_x * s_w[f]
                cur = g.op("Conv", [cur, w, b], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                           strides=[1, 1], dilations=[1, 1], group=1)
                if relu:
                    cur = g.op("Relu", [cur])
                cur = qdq(cur, name + ".output_scale", name + ".output_zero_point", "act_dq")
            outs[branch].append(g.flatten(cur, k if branch == "cls" else 4, branch + "_level"))
    return [g.concat(outs["cls"], "cls_cat"), g.concat(outs["box"], "box_cat")]


def _postprocess_graph(g, cfg, params, xs):
    logits, deltas, anchors = xs
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731

    def sl(x, a, b):
        return g.op("Slice", [x, g.const(i64([a]), "starts"), g.const(i64([b]), "ends"),
                              g.const(i64([-1]), "axes")])

    rel = g.op("Div", [deltas, g.param("weights", params["weights"])], "rel_codes")   # d / (wx, wy, ww, wh)
    dxy = sl(rel, 0, 2)
    dwh = g.op("Min", [sl(rel, 2, 4), g.param("clamp", params["clamp"])], "clamped")  # min(d, clamp)
    half = g.const(f32(0.5), "half")
    wh = g.op("Sub", [sl(anchors, 2, 4), sl(anchors, 0, 2)], "anchor_wh")
    ctr = g.op("Add", [sl(anchors, 0, 2), g.op("Mul", [half, wh])], "anchor_ctr")       # x1 + 0.5 * w
    pctr = g.op("Add", [g.op("Mul", [dxy, wh]), ctr], "pred_ctr")                       # dx * w + cx
    pwh = g.op("Mul", [g.op("Exp", [dwh]), wh], "pred_wh")                              # exp(dw) * w
    hw = g.op("Mul", [half, pwh], "half_wh")
    boxes = g.op("Concat", [g.op("Sub", [pctr, hw]), g.op("Add", [pctr, hw])], "boxes", axis=-1)
    scores = g.op("Sigmoid", [logits], "scores")
    nms_in = [boxes, g.op("Transpose", [scores], "scores_bkn", perm=[0, 2, 1]),
              g.param("max_output_boxes_per_class", params["max_output_boxes_per_class"]),
              g.param("iou_threshold", params["iou_threshold"])]
    if "score_threshold" in params:
        nms_in.append(g.param("score_threshold", params["score_threshold"]))
    sel = g.op("NonMaxSuppression", nms_in, "selected_indices", center_point_box=0)
    return [boxes, scores, sel]


def _yolo_postprocess_graph(g, cfg, params, xs):
    """ultralytics Detect inference + non_max_suppression (see ``_models``' docstring), in float32."""
    z, logits, points, strides = xs
    r = int(cfg["reg_max"])
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731
    i64 = lambda v: np.asarray(v, np.int64)  # noqa: E731

    def sl(x, a, b):
        return g.op("Slice", [x, g.const(i64([a]), "starts"), g.const(i64([b]), "ends"), g.const(i64([-1]), "axes")])

    # DFL: softmax over the reg_max bins of each side, expectation over 0 .. reg_max - 1 (ultralytics DFL:
    # view(b, 4, reg_max, a).softmax(2) and a 1x1 conv with weights arange(reg_max))
    if r > 1:
        z4 = g.op("Reshape", [z, g.const(i64([0, -1, 4, r]), "shape")], "dfl_logits")
        prob = g.op("Softmax", [z4], "dfl_softmax", axis=-1)
        weighted = g.op("Mul", [prob, g.const(f32(np.arange(r)), "dfl_bins")], "dfl_weighted")
        if g.opset >= 13:                                                                    # sum_j j p_j
            dist = g.op("ReduceSum", [weighted, g.const(i64([-1]), "axes")], "distances", keepdims=0)
        else:
            dist = g.op("ReduceSum", [weighted], "distances", axes=[-1], keepdims=0)          # (N, P, 4)
    else:
        dist = z
    # dist2bbox(xywh=True) in grid units, then times the stride (Detect._inference)
    x1y1 = g.op("Sub", [points, sl(dist, 0, 2)], "x1y1")
    x2y2 = g.op("Add", [points, sl(dist, 2, 4)], "x2y2")
    centre = g.op("Div", [g.op("Add", [x1y1, x2y2]), g.const(f32(2.0), "two")], "centre")
    wh = g.op("Sub", [x2y2, x1y1], "wh")
    boxes = g.op("Mul", [g.op("Concat", [centre, wh], axis=-1), strides], "boxes_xywh")
    scores = g.op("Sigmoid", [logits], "scores")
    # non_max_suppression: xywh2xyxy (xy -+ wh / 2), best class (first maximum), class offset, one NMS
    xy, half = sl(boxes, 0, 2), g.op("Div", [sl(boxes, 2, 4), g.const(f32(2.0), "two")], "half_wh")
    xyxy = g.op("Concat", [g.op("Sub", [xy, half]), g.op("Add", [xy, half])], "xyxy", axis=-1)
    if g.opset >= 18:
        conf = g.op("ReduceMax", [scores, g.const(i64([-1]), "axes")], "conf", keepdims=1)      # (N, P, 1)
    else:
        conf = g.op("ReduceMax", [scores], "conf", axes=[-1], keepdims=1)
    label = g.op("Cast", [g.op("ArgMax", [scores], "label_index", axis=-1, keepdims=1, select_last_index=0)],
                 "label", to=g.onnx.TensorProto.FLOAT)                                           # (N, P, 1)
    shifted = g.op("Add", [xyxy, g.op("Mul", [label, g.param("max_wh", params["max_wh"])])], "class_offset_boxes")
    nms_in = [shifted, g.op("Transpose", [conf], "conf_n1p", perm=[0, 2, 1]),
              g.param("max_output_boxes_per_class", params["max_output_boxes_per_class"]),
              g.param("iou_threshold", params["iou_threshold"])]
    if "score_threshold" in params:
        nms_in.append(g.param("score_threshold", params["score_threshold"]))
    sel = g.op("NonMaxSuppression", nms_in, "selected_indices", center_point_box=0)
    # detections: (image, x1, y1, x2, y2, score, class) of each selection, in NMS order: the selected
    # rows of the (N * P, .) flattened tensors, row image * P + point
    b = g.op("Gather", [sel, g.const(i64(0), "batch_col")], "image_index", axis=1)                  # (S,)
    a = g.op("Gather", [sel, g.const(i64(2), "point_col")], "point_index", axis=1)                  # (S,)
    n_points = g.op("Gather", [g.op("Shape", [conf]), g.const(i64(1), "points_dim")], "n_points", axis=0)
    row = g.op("Add", [g.op("Mul", [b, n_points]), a], "row")                                       # (S,)

    def rows(x, c, hint):
        return g.op("Gather", [g.op("Reshape", [x, g.const(i64([-1, c]), "shape")]), row], hint, axis=0)
    image = g.op("Unsqueeze", [g.op("Cast", [b], to=g.onnx.TensorProto.FLOAT), g.const(i64([1]), "axes")],
                 "image")                                                                            # (S, 1)
    det = g.op("Concat", [image, rows(xyxy, 4, "det_boxes"), rows(conf, 1, "det_score"), rows(label, 1, "det_class")],
               "detections", axis=1)
    return [boxes, scores, sel, det]


def _value_infos(onnx, cfg):
    T = onnx.TensorProto
    mk = onnx.helper.make_tensor_value_info
    m = cfg["model"]
    if m == "yolo_postprocess":
        ins = [mk("box_logits", T.FLOAT, ["N", "P", 4 * cfg["reg_max"]]), mk("cls_logits", T.FLOAT, ["N", "P", "K"]),
               mk("anchor_points", T.FLOAT, ["P", 2]), mk("stride_tensor", T.FLOAT, ["P", 1])]
        outs = [mk("boxes", T.FLOAT, ["N", "P", 4]), mk("scores", T.FLOAT, ["N", "P", "K"]),
                mk("selected_indices", T.INT64, ["S", 3]), mk("detections", T.FLOAT, ["S", 7])]
        return ins, outs
    if m == "postprocess":
        ins = [mk("cls_logits", T.FLOAT, ["N", "R", "K"]), mk("bbox_deltas", T.FLOAT, ["N", "R", 4]),
               mk("anchors", T.FLOAT, ["R", 4])]
        outs = [mk("boxes", T.FLOAT, ["N", "R", 4]), mk("scores", T.FLOAT, ["N", "R", "K"]),
                mk("selected_indices", T.INT64, ["S", 3])]
        return ins, outs
    names = _models.input_names(cfg)
    ins = [mk(n, T.FLOAT, ["N", c, f"H{i}", f"W{i}"]) for i, (n, c) in enumerate(zip(names, cfg["in_channels"]))]
    onames = _models.output_names(cfg)
    if m == "fpn":
        outs = [mk(n, T.FLOAT, ["N", cfg["out_channels"], f"P{i}_H", f"P{i}_W"]) for i, n in enumerate(onames)]
    elif m == "rpn_head":
        outs = [mk(onames[0], T.FLOAT, ["N", "R", 1 if cfg["objectness"] == "sigmoid" else 2]),
                mk(onames[1], T.FLOAT, ["N", "R", 4])]
    else:
        hc = cfg["head"] if m == "fpn_retinanet_head" else cfg
        outs = [mk(onames[0], T.FLOAT, ["N", "R", hc["num_classes"]]), mk(onames[1], T.FLOAT, ["N", "R", 4])]
    return ins, outs


def export_onnx(params=None, *, model="retinanet_head", opset=19, num_levels=1, extra_blocks=None,
                convention="torchvision", upsample=None, upsample_mode=None, fuse=None, p6p7_input=None,
                relu_before_p7=None, num_groups=32, eps=1e-5, weights=(1.0, 1.0, 1.0, 1.0),
                clamp=math.log(1000.0 / 16), max_output_boxes_per_class=100, iou_threshold=0.5,
                score_threshold=0.05, upsample_op="resize", check=True, reg_max=16, num_classes=80,
                agnostic=False, max_wh=7680.0):
    """Build an ONNX model of a refdet head, FPN, FPN + head, or the inference post-processing.

    Parameters
    ----------
    params : dict of arrays
        ``"rpn_head"``: :func:`refdet.rpn_head_init` keys; ``"retinanet_head"``:
        :func:`refdet.retinanet_head_init` keys (GroupNorm or not); ``"fpn"``: :func:`refdet.fpn_init`
        keys; ``"fpn_retinanet_head"``: the FPN's keys under ``"backbone.fpn."`` and the head's under
        ``"head."`` (torchvision ``RetinaNet.state_dict()`` minus the body); ``"postprocess"``: optional,
        entries ``weights``, ``clamp``, ``max_output_boxes_per_class``, ``iou_threshold``,
        ``score_threshold`` override the keywords of the same names; ``"quantized_retinanet_head"``: a
        :class:`refdet.quant.QuantizedHead`.
    model : str
        One of ``"rpn_head"``, ``"retinanet_head"``, ``"fpn"``, ``"fpn_retinanet_head"``,
        ``"postprocess"``, ``"quantized_retinanet_head"``, ``"yolo_postprocess"``. Dashes are accepted
        for underscores (``"retinanet-head"``).
    opset : int in [17, 21]
    num_levels : int
        Heads only: number of input maps (``features`` for 1, else ``features_0 ..``); the head is
        applied to each with shared weights and the rows concatenated level by level.
    extra_blocks : {"p6p7", "maxpool", "none"}, optional
        FPN extra levels (default: "p6p7" when the params have P6/P7 weights, else "none").
    convention, upsample, upsample_mode, fuse, p6p7_input, relu_before_p7
        FPN knobs, as in :func:`refdet.fpn_forward`.
    num_groups, eps : int, float
        GroupNorm settings of a RetinaNet v2 head (used only if the params have GroupNorm weights).
    weights, clamp, max_output_boxes_per_class, iou_threshold, score_threshold
        Post-processing settings (``score_threshold=None``: no score filter).
    upsample_op : {"resize", "gather"}
        How the FPN upsamples: ``Resize`` (the default; exact for 2x pyramids, see the module
        docstring) or ``"gather"``, PyTorch's index arithmetic written out (``Shape``, ``Range``,
        float32 ``Mul``, ``Floor``, ``Gather``): exact for every pair of sizes.
    check : bool
        Run ``onnx.checker.check_model(full_check=True)`` (default).
    reg_max, num_classes, agnostic, max_wh
        ``"yolo_postprocess"`` only: DFL bins per side, K (the declared class dimension of the
        inputs), class-agnostic NMS (no offset), the class offset in pixels (ultralytics 7680). With
        it ``max_output_boxes_per_class`` is ultralytics' ``max_det``, ``score_threshold`` its
        ``conf_thres`` and ``iou_threshold`` its ``iou_thres``; ``params`` may override ``max_wh``,
        ``max_output_boxes_per_class``, ``iou_threshold``, ``score_threshold``.

    Returns
    -------
    onnx.ModelProto
        Inputs float32 NCHW with symbolic N, H, W; outputs as listed in :mod:`refdet.exchange._models`.
    """
    onnx = _import_onnx()
    opset = _checks.check_int(opset, "opset", low=17, high=21)
    knobs = dict(upsample=upsample, upsample_mode=upsample_mode, fuse=fuse, p6p7_input=p6p7_input,
                 relu_before_p7=relu_before_p7)
    cfg, p = _models.make_config(
        model, params, num_levels=num_levels, extra_blocks=extra_blocks, convention=convention,
        fpn_knobs=knobs, num_groups=num_groups, eps=eps,
        post=dict(weights=weights, clamp=clamp, max_output_boxes_per_class=max_output_boxes_per_class,
                  iou_threshold=iou_threshold, score_threshold=score_threshold,
                  yolo=dict(reg_max=reg_max, num_classes=num_classes, agnostic=agnostic, max_wh=max_wh)))
    if cfg["model"] == "quantized_retinanet_head" and opset < 19:
        raise ValueError(f"`opset` must be >= 19 for a QDQ model (onnx.reference implements DequantizeLinear "
                         f"from version 19 on); got {opset}")
    g = _Builder(onnx, opset)
    g.upsample_op = _checks.check_choice(upsample_op, "upsample_op", ("resize", "gather"))
    xs = _models.input_names(cfg)
    m = cfg["model"]
    if m == "rpn_head":
        outs = _rpn_graph(g, cfg, p, xs)
    elif m == "retinanet_head":
        outs = _retinanet_graph(g, cfg, p, xs)
    elif m == "fpn":
        outs = _fpn_graph(g, cfg, p, xs)
    elif m == "quantized_retinanet_head":
        outs = _qdq_graph(g, cfg, p, xs)
    elif m == "yolo_postprocess":
        outs = _yolo_postprocess_graph(g, cfg, p, xs)
    elif m == "fpn_retinanet_head":
        g.prefix = _models.FPN_PREFIX   # initializers keep the full torchvision RetinaNet keys
        outs = _fpn_graph(g, cfg["fpn"], _models.split_prefixed(p, _models.FPN_PREFIX), xs)
        g.prefix = _models.HEAD_PREFIX
        outs = _retinanet_graph(g, cfg["head"], _models.split_prefixed(p, _models.HEAD_PREFIX), outs)
        g.prefix = ""
    else:
        outs = _postprocess_graph(g, cfg, p, xs)
    onames = _models.output_names(cfg)
    for src, dst in zip(outs, onames):  # name the outputs
        g.nodes.append(onnx.helper.make_node("Identity", [src], [dst]))
    ins, out_infos = _value_infos(onnx, cfg)
    graph = onnx.helper.make_graph(g.nodes, f"refdet_{m}", ins, out_infos, initializer=g.inits)
    mp = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                producer_name="refdet", producer_version=_version())
    mp.ir_version = IR_VERSION_OF_OPSET[opset]
    onnx.helper.set_model_props(mp, {"refdet.model": m, "refdet.config": json.dumps(cfg),
                                     "refdet.params": json.dumps(g.params)})
    if check:
        onnx.checker.check_model(mp, full_check=True)
    return mp


def _version():
    from refdet import __version__
    return __version__


# ---------------------------------------------------------------------------------------------------
# reading (untrusted files)
# ---------------------------------------------------------------------------------------------------

#: the ``refdet.*`` metadata values are JSON of at most this many bytes (a model with 10,000 parameters
#: lists their names in about 400 KB)
_JSON_MAX_BYTES = 1 << 20


def _source(model_or_path, max_bytes=None):
    """(ModelProto, what, size): the model, how messages name it, and its size in bytes (the budget's base).

    Files larger than ``max_bytes`` (default :data:`refdet.exchange.files.DEFAULT_MAX_BYTES`) are refused
    before they are read; so is anything that does not parse as an ONNX protobuf, initializers stored as
    external data (their location is a path a hostile file could point anywhere, e.g.
    ``../../etc/passwd``) and sparse initializers.
    """
    onnx = _import_onnx()
    limit = _files.largest_file(max_bytes)
    if isinstance(model_or_path, onnx.ModelProto):
        mp, what = model_or_path, "the ONNX model"
        size = mp.ByteSize()
    elif isinstance(model_or_path, (bytes, bytearray, memoryview)):
        data, what = bytes(model_or_path), "the ONNX bytes"
        mp = None
    elif isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        what = f"ONNX file {path!r}"
        if not os.path.exists(path):
            raise ValueError(f"{what} is missing (no such file)")
        data = _files.read_bounded(path, limit, "ONNX file")
        mp = None
    else:
        raise TypeError(f"`model_or_path` must be an onnx.ModelProto, bytes or a path; got "
                        f"{type(model_or_path).__name__}")
    if mp is None:
        size = len(data)
        if size > limit:
            raise ValueError(f"{what} is {size} bytes, more than max_bytes={limit}")
        mp = onnx.ModelProto()
        try:
            mp.ParseFromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise ValueError(f"{what} is not a valid ONNX model (protobuf parse failed: {_one_line(exc)})") from None
        del data
    if not mp.HasField("graph"):
        raise ValueError(f"{what} is not a valid ONNX model (no graph)")
    for t in mp.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise ValueError(f"{what}: initializer {t.name!r} refers to external data, which refdet does not "
                             f"follow (a file path taken from an untrusted model)")
    if len(mp.graph.sparse_initializer):
        raise ValueError(f"{what}: sparse initializers are refused (refdet writes none)")
    return mp, what, size


def read_onnx(model_or_path, *, max_bytes=None):
    """Load an ONNX model safely: a ``ModelProto``, bytes, or a path.

    Refuses (``ValueError``) a missing file, files larger than ``max_bytes`` (default 2 GiB), anything
    that does not parse as an ONNX protobuf, and initializers stored as external data (their location
    is a path that a hostile file could point anywhere, e.g. ``../../etc/passwd``); nothing is read
    besides the one file.
    """
    return _source(model_or_path, max_bytes)[0]


def _one_line(exc, limit=300):
    """An exception's message on one line (runtimes' messages span many), at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


_ONNX_NP = _onnx_check.ONNX_DTYPES


def _check_tensor(onnx, t, what="the model"):
    """That an initializer's stored data matches its declared extents (before anything is converted)."""
    dims = list(t.dims)
    if any(d < 0 for d in dims) or len(dims) > 32:
        raise ValueError(f"{what}: initializer {t.name!r} has invalid extents {dims[:10]}")
    dtype = _ONNX_NP.get(t.data_type)
    if dtype is None:
        raise ValueError(f"{what}: initializer {t.name!r} has an unsupported data type {t.data_type}")
    if t.HasField("segment"):
        raise ValueError(f"{what}: initializer {t.name!r} is a segment of a tensor (refused)")
    count = math.prod(dims)
    if t.HasField("raw_data") or t.raw_data:
        have = len(t.raw_data)
        need = count * np.dtype(dtype).itemsize
        if have != need:
            raise ValueError(f"{what}: initializer {t.name!r} claims extents {dims} ({need} bytes of "
                             f"{np.dtype(dtype)}) but stores {have} bytes")
    else:
        field = {1: t.float_data, 11: t.double_data, 7: t.int64_data, 12: t.uint64_data, 13: t.uint64_data}.get(
            t.data_type, t.int32_data)
        if len(field) != count:
            raise ValueError(f"{what}: initializer {t.name!r} claims extents {dims} ({count} values) but stores "
                             f"{len(field)}")


def _tensor_to_array(onnx, t, what="the model"):
    """``numpy_helper.to_array`` after checking that the stored data matches the declared extents."""
    _check_tensor(onnx, t, what)
    try:
        return onnx.numpy_helper.to_array(t)
    except Exception as exc:  # a value out of its type's range in int32_data, and the like
        raise ValueError(f"{what}: initializer {t.name!r} cannot be read: {_one_line(exc)}") from None


def _metadata(mp, what):
    props = {}
    for p in mp.metadata_props:
        if p.key.startswith("refdet.") and p.key in props:
            raise ValueError(f"{what}: metadata {p.key!r} appears twice")
        props[p.key] = p.value
    return props


def _metadata_json(props, key, what):
    value = props[key]
    if len(value) > _JSON_MAX_BYTES:
        raise ValueError(f"{what}: metadata {key!r} is {len(value)} characters, more than the {_JSON_MAX_BYTES} "
                         f"refdet accepts")
    return _files.loads_json(value, f"{what} metadata", field=key)


def _config(mp, what):
    props = _metadata(mp, what)
    if "refdet.config" not in props:
        raise ValueError(f"{what} was not exported by refdet (no 'refdet.config' metadata)")
    cfg = _metadata_json(props, "refdet.config", what)
    _models.check_file_config(cfg, f"{what} metadata 'refdet.config'")
    inits = {t.name for t in mp.graph.initializer}
    ins = [i for i in mp.graph.input if i.name not in inits]
    if cfg["model"] not in ("postprocess", "yolo_postprocess"):
        dims = [i.type.tensor_type.shape.dim[1].dim_value if len(i.type.tensor_type.shape.dim) == 4 else None
                for i in ins]
        if dims != cfg["in_channels"]:
            raise ValueError(f"{what}: metadata 'refdet.config' says in_channels {cfg['in_channels']} but the graph's "
                             f"inputs have {dims}")
    if [i.name for i in ins] != _models.input_names(cfg):
        raise ValueError(f"{what}: the graph's inputs {[i.name for i in ins][:8]} are not the "
                         f"{_models.input_names(cfg)} of a {cfg['model']!r}")
    return cfg


def onnx_config(model_or_path, *, max_bytes=None):
    """The refdet config recorded in a model exported by :func:`export_onnx` (a dict), or ``ValueError``."""
    mp, what, _ = _source(model_or_path, max_bytes)
    return _config(mp, what)


def _params(onnx, mp, what):
    inits = {}
    for t in mp.graph.initializer:
        if t.name in inits:
            raise ValueError(f"{what}: initializer {t.name!r} appears twice")
        inits[t.name] = t
    props = _metadata(mp, what)
    keys = list(inits)
    if "refdet.params" in props:
        keys = _metadata_json(props, "refdet.params", what)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{what}: metadata 'refdet.params' must be a list of names")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: metadata 'refdet.params' lists a name twice")
        missing = [k for k in keys if k not in inits]
        if missing:
            raise ValueError(f"{what}: the model lists parameters {missing[:3]} that are not initializers")
    return {k: _tensor_to_array(onnx, inits[k], what) for k in keys}


def load_onnx_params(model_or_path, *, max_bytes=None):
    """The parameters stored in an ONNX model, as a dict of NumPy arrays.

    Parameters
    ----------
    model_or_path : onnx.ModelProto, bytes or path
    max_bytes : int, optional
        Largest file accepted (default 2 GiB). The arrays are never larger than the data the file
        stores (each initializer's length is checked against its extents first).

    Returns
    -------
    dict
        For a model from :func:`export_onnx`: exactly the exported parameters under their refdet keys
        (float32, bit-identical; ``max_output_boxes_per_class`` int64), listed in the ``refdet.params``
        metadata. For another model: every initializer by name.
    """
    onnx = _import_onnx()
    mp, what, _ = _source(model_or_path, max_bytes)
    return _params(onnx, mp, what)


def load_quantized_head(model_or_path, *, max_bytes=None):
    """The :class:`refdet.quant.QuantizedHead` stored in a ``"quantized_retinanet_head"`` export.

    Integers, scales and zero points come from the initializers; the requantization multipliers are
    recomputed with :func:`refdet.quant.quantize_retinanet_head`'s formulas, so the result equals
    the head that was exported. ``max_bytes``: largest file accepted (default 2 GiB).
    """
    onnx = _import_onnx()
    mp, what, _ = _source(model_or_path, max_bytes)
    cfg = _config(mp, what)
    if cfg["model"] != "quantized_retinanet_head":
        raise ValueError(f"{what} is a {cfg['model']!r}, not a 'quantized_retinanet_head'")
    params = _params(onnx, mp, what)
    try:
        return _models.qhead_from_params(cfg, params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {_one_line(exc)}") from None


# ---------------------------------------------------------------------------------------------------
# running and verifying
# ---------------------------------------------------------------------------------------------------

def _vet(onnx, mp, what, shapes, budget, runtimes):
    """What a model must be before a runtime sees it (see :func:`verify_onnx`); the graph's sizes."""
    opsets = {o.domain: o.version for o in mp.opset_import}
    foreign = sorted({n.op_type for n in mp.graph.node if n.op_type not in _EMITTED_OPS
                      or n.domain not in ("", "ai.onnx")})
    if foreign or len(mp.functions) or any(d not in ("", "ai.onnx") for d in opsets):
        raise ValueError(f"{what} uses operators refdet never emits ({foreign[:8] or 'functions / custom domains'}); "
                         f"refdet runs only graphs made of its own operator set")
    opset = opsets.get("", opsets.get("ai.onnx"))
    if opset not in IR_VERSION_OF_OPSET:
        raise ValueError(f"{what} imports opset {opset}; refdet writes and runs opsets "
                         f"{min(IR_VERSION_OF_OPSET)}-{max(IR_VERSION_OF_OPSET)}")
    if len(mp.training_info):
        raise ValueError(f"{what} carries training information (refdet writes none)")
    return _onnx_check.check_graph(mp, shapes, budget, allowed_ops=_EMITTED_OPS, opset=opset, runtimes=runtimes)


def _run_vetted(mp, inputs, runtime, what):
    names = [o.name for o in mp.graph.output]
    feeds = {k: np.asarray(v) for k, v in inputs.items()}
    if runtime not in ("onnxruntime", "onnxruntime-unfused", "onnx.reference"):
        raise ValueError(f"`runtime` must be 'onnxruntime', 'onnxruntime-unfused' or 'onnx.reference'; got "
                         f"{runtime!r}")
    if runtime == "onnx.reference":
        from onnx.reference import ReferenceEvaluator
    else:
        import onnxruntime as ort
    try:
        if runtime == "onnx.reference":
            res = ReferenceEvaluator(mp).run(names, feeds)
        else:
            so = ort.SessionOptions()
            so.log_severity_level = 4     # fatal only: a failure is reported once, as our own ValueError
            if runtime == "onnxruntime-unfused":    # no graph optimisation: QDQ stays float Conv on DQ values
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            sess = ort.InferenceSession(mp.SerializeToString(), so, providers=["CPUExecutionProvider"])
            res = sess.run(names, feeds)
    except MemoryError:
        raise
    except Exception as exc:  # the runtime's own failure, whatever its class
        raise ValueError(f"{runtime} cannot run {what}: {_one_line(exc)}") from None
    return dict(zip(names, (np.asarray(r) for r in res)))


def run_onnx(model, inputs, runtime="onnxruntime", *, max_bytes=None):
    """Run a model with ``"onnxruntime"`` (CPU, default graph optimisations: QDQ groups fused into
    QLinearConv), ``"onnxruntime-unfused"`` (``ORT_DISABLE_ALL``) or ``"onnx.reference"``;
    ``{output name: array}``.

    The model is vetted first, as in :func:`verify_onnx`: only refdet's operators, every attribute
    checked and every tensor's size computed from ``inputs``' shapes, the total within the budget
    (``max_bytes``, default derived from the model's size). A runtime's own failure is a ``ValueError``
    naming the runtime and the model.
    """
    onnx = _import_onnx()
    mp, what, size = _source(model, max_bytes)
    budget = _files.file_budget(size, max_bytes, what)
    if not isinstance(inputs, dict):
        raise TypeError(f"`inputs` must be a dict of arrays by input name; got {type(inputs).__name__}")
    feeds = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    if isinstance(model, onnx.ModelProto) and _is_box_head(mp):
        # refdet's own box-head export, in memory (never a file): its operators (RoiAlign, Gemm,
        # NonZero, ...) are not in the file vetting's rules yet, so only onnx's full_check runs here.
        onnx.checker.check_model(mp, full_check=True)
        return _run_vetted(mp, feeds, runtime, what)
    _vet(onnx, mp, what, {k: v.shape for k, v in feeds.items()}, budget, (runtime,))
    return _run_vetted(mp, feeds, runtime, what)


def _is_box_head(mp):
    return any(p.key == "refdet.model" and p.value == "box_head" for p in mp.metadata_props)


def verify_onnx(model, inputs=None, *, runtimes=("onnxruntime", "onnx.reference"), atol=1e-5, rtol=1e-5,
                rng=0, batch=1, height=13, width=9, lsb_tolerance=1, check=True, max_bytes=None):
    """Run an exported model in every available runtime and compare each output with refdet.

    Parameters
    ----------
    model : onnx.ModelProto, bytes or path
        A model from :func:`export_onnx` (its ``refdet.config`` metadata says what refdet computes).
    inputs : dict, optional
        Graph inputs by name; default: :func:`refdet.exchange._models.random_inputs` from ``rng``
        (feature maps ``height x width`` at level 0, halving (ceil) per level: odd sizes on purpose).
    runtimes : sequence of {"onnxruntime", "onnxruntime-unfused", "onnx.reference"}
        Runtimes not installed are listed in ``report.skipped``.
    atol, rtol : float
        Float outputs agree when ``max |runtime - refdet| <= atol + rtol * max |refdet|`` (float32 sums in a
        different order, and the runtimes' ``exp``/``sigmoid`` last bits). Integer outputs (NMS
        ``selected_indices``) must be identical.
    lsb_tolerance : int
        Quantized heads only: outputs are dequantized integers, compared with
        :func:`refdet.quant.run_quantized_head` (``mode="onnxruntime"``) in units of the output
        scale. 0 demands identical integers. The default 1 allows the one-step differences a float conv
        on dequantized values can make near a rounding tie (onnx.reference always works that way;
        onnxruntime 1.32 does for the first conv of each subnet when activations are int8, while with
        uint8 activations it fuses every conv into QLinearConv).
    check : bool
        Run ``onnx.checker.check_model(full_check=True)`` (after refdet's own checks; a failure raises
        ``ValueError``).
    max_bytes : int, optional
        The memory budget: the graph's tensors at these input sizes plus refdet's own computation of the
        same outputs must fit. Default: ``64 MiB + 16 x`` the model's size, at most 2 GiB
        (:mod:`refdet.exchange.files`).

    The model is *run*, so it is vetted first, before any runtime (or the checker) sees it: it must carry
    refdet's metadata (its inputs matching the graph's), use only the operators :func:`export_onnx`
    writes (no functions, custom domains, control flow) at opset 17-21, keep no external data, and pass
    :func:`refdet.exchange._onnx_check.check_graph`: every attribute of every node checked (pads,
    strides, kernel shapes, dilations, group, Resize scales and sizes, NonMaxSuppression limits,
    Reshape targets, Gather indices...) and every tensor's size computed from the input shapes, within
    the budget. A runtime that still fails raises ``ValueError`` naming the runtime and the model.

    Returns
    -------
    Report
        ``report.ok``, ``report.rows`` (runtime, output, max_abs_diff, ...), ``str(report)`` a table.
    """
    onnx = _import_onnx()
    mp, what, size = _source(model, max_bytes)
    budget = _files.file_budget(size, max_bytes, what)
    cfg = _config(mp, what)
    params = _params(onnx, mp, what)
    if inputs is None:
        batch = _checks.check_int(batch, "batch", low=1)
        height = _checks.check_int(height, "height", low=1)
        width = _checks.check_int(width, "width", low=1)
        shapes = _models.input_shapes(cfg, batch=batch, height=height, width=width)
    else:
        if not isinstance(inputs, dict):
            raise TypeError(f"`inputs` must be a dict of arrays by input name; got {type(inputs).__name__}")
        inputs = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
        shapes = {k: v.shape for k, v in inputs.items()}
    if isinstance(runtimes, str):
        runtimes = (runtimes,)
    sizes = _vet(onnx, mp, what, shapes, budget, tuple(runtimes))
    try:
        ref = _models.reference_work_bytes(cfg, params, shapes)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: refdet cannot compute this model: {_one_line(exc)}") from None
    budget.check(sizes.total + ref, f"running the graph ({format_bytes(sizes.total)}) and refdet's own "
                                    f"computation ({format_bytes(ref)})")
    if check:
        try:
            onnx.checker.check_model(mp, full_check=True)
        except Exception as exc:
            raise ValueError(f"{what} fails onnx.checker.check_model(full_check=True): {_one_line(exc)}") from None
    if inputs is None:
        inputs = _models.random_inputs(cfg, batch=batch, height=height, width=width, rng=rng)
    try:
        want = _models.reference_outputs(cfg, params, inputs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: refdet cannot compute this model: {_one_line(exc)}") from None
    rows, skipped = [], {}
    for rt in runtimes:
        try:
            got = _run_vetted(mp, inputs, rt, what)
        except ImportError as exc:
            skipped[rt] = f"not installed ({exc})"
            continue
        for name, w in want.items():
            if name not in got:
                raise ValueError(f"{what} has no output {name!r}")
            if cfg["model"] == "quantized_retinanet_head":
                # outputs are dequantized integers: compare in units of the output's LSB
                branch = "cls" if name == "cls_logits" else "box"
                lsb = float(np.asarray(params[cfg["layers"][branch][-1][0] + ".output_scale"]).reshape(-1)[0])
                row = _models.compare(name, rt, got[name], w, atol=lsb * lsb_tolerance * (1 + 1e-6), rtol=0.0)
                row["note"] = (f"max {row['max_abs_diff'] / lsb:.3g} LSB (LSB = {lsb:.4g}); allowed "
                               f"{lsb_tolerance} LSB")
                rows.append(row)
            else:
                rows.append(_models.compare(name, rt, got[name], w, atol=atol, rtol=rtol))
                if name == "selected_indices" and not rows[-1]["ok"] and cfg["model"] == "postprocess":
                    rows[-1]["note"] += "; " + _explain_nms(cfg, params, got)
    return _models.Report(rows, skipped)


#: every operator export_onnx writes; verify_onnx refuses graphs with others (a file is run, not trusted)
_EMITTED_OPS = frozenset({
    "Conv", "Relu", "Sigmoid", "Add", "Sub", "Mul", "Div", "Min", "Exp", "Sqrt", "Floor", "ReduceMean",
    "Reshape", "Transpose", "Concat", "Slice", "Squeeze", "Shape", "Gather", "Range", "Cast", "Resize",
    "MaxPool", "Identity", "NonMaxSuppression", "QuantizeLinear", "DequantizeLinear",
    "Softmax", "ReduceSum", "ReduceMax", "ArgMax", "Unsqueeze"})   # + the YOLO post-processing


def _explain_nms(cfg, params, got):
    """Is an NMS disagreement NMS's own, or inherited from slightly different boxes/scores?"""
    from refdet.nms import onnx_non_max_suppression

    st = params.get("score_threshold")
    try:
        again = onnx_non_max_suppression(
            got["boxes"], np.asarray(got["scores"]).transpose(0, 2, 1), int(params["max_output_boxes_per_class"][0]),
            float(params["iou_threshold"][0]), None if st is None else float(np.asarray(st).reshape(-1)[0]))
    except (ValueError, TypeError) as exc:
        return f"refdet's NMS cannot run on the runtime's boxes/scores ({exc})"
    if np.array_equal(again, got["selected_indices"]):
        return ("refdet's NMS on the runtime's own boxes and scores selects what the runtime selected: the "
                "difference comes from the float differences upstream (a near-tie in IoU or score)")
    return "refdet's NMS on the runtime's own boxes and scores still differs: an NMS semantics difference"


# ---------------------------------------------------------------------------------------------------
# the Faster R-CNN box head with its multi-scale RoIAlign (issue 14)
# ---------------------------------------------------------------------------------------------------

def _box_head_levels(g, rois, cfg):
    """``levels`` (K,) int64 counted from ``min_level``: torchvision ``LevelMapper`` in ONNX ops (as its
    exported graph computes it: ``log2(v) = Log(v) / Log(2)``, float32)."""
    T = g.onnx.TensorProto
    f32 = lambda v: g.const(np.asarray(v, np.float32), "f")  # noqa: E731
    i64 = lambda v: g.const(np.asarray(v, np.int64), "idx")  # noqa: E731
    col = lambda j: g.op("Slice", [rois, i64([j]), i64([j + 1]), i64([1])], f"col{j}")  # noqa: E731
    w = g.op("Sub", [col(2), col(0)], "roi_w")
    h = g.op("Sub", [col(3), col(1)], "roi_h")
    r = g.op("Div", [g.op("Sqrt", [g.op("Mul", [w, h], "roi_area")]), f32(cfg["canonical_scale"])], "roi_ratio")
    if cfg["eps_inside"]:
        r = g.op("Add", [r, f32(cfg["eps_inside"])])
    lg = g.op("Div", [g.op("Log", [r]), f32(np.log(np.float32(2)))], "log2")
    k = g.op("Add", [f32(cfg["canonical_level"]), lg])
    if cfg["eps_outside"]:
        k = g.op("Add", [k, f32(cfg["eps_outside"])])
    k = g.op("Clip", [g.op("Floor", [k]), f32(cfg["min_level"]), f32(cfg["max_level"])], "level_clamped")
    k = g.op("Sub", [k, f32(cfg["min_level"])])
    return g.op("Reshape", [g.op("Cast", [k], to=T.INT64), i64([-1])], "levels")


def _box_head_graph(g, cfg, params, feats):
    """Multi-scale RoIAlign (one ``RoiAlign`` per level, results scattered back into RoI order), then
    ``Flatten``, ``Gemm`` fc6, ``Relu``, ``Gemm`` fc7, ``Relu``, the two predictor ``Gemm``s."""
    ph, pw = cfg["output_size"]
    attrs = dict(output_height=ph, output_width=pw, sampling_ratio=max(cfg["sampling_ratio"], 0), mode="avg",
                 coordinate_transformation_mode="half_pixel" if cfg["aligned"] else "output_half_pixel")
    i64 = lambda v: g.const(np.asarray(v, np.int64), "idx")  # noqa: E731
    rois, bidx = "rois", "batch_indices"
    if len(feats) == 1:
        levels = g.op("Mul", [bidx, i64(0)], "levels")
        pooled = g.op("RoiAlign", [feats[0], rois, bidx], "roi_align", spatial_scale=cfg["scales"][0], **attrs)
    else:
        levels = _box_head_levels(g, rois, cfg)
        k = g.op("Slice", [g.op("Shape", [rois]), i64([0]), i64([1])], "num_rois")
        shape = g.op("Concat", [k, i64([cfg["channels"], ph, pw])], "pooled_shape", axis=0)
        pooled = g.op("ConstantOfShape", [shape], "pooled_zeros",
                      value=g.onnx.helper.make_tensor("zero", g.onnx.TensorProto.FLOAT, [1], [0.0]))
        for lvl, (x, scale) in enumerate(zip(feats, cfg["scales"])):
            idx = g.op("NonZero", [g.op("Equal", [levels, i64(lvl)])], f"level{lvl}_where")      # (1, M)
            idx = g.op("Transpose", [idx], f"level{lvl}_rows", perm=[1, 0])                     # (M, 1)
            flat = g.op("Reshape", [idx, i64([-1])])
            r_l = g.op("Gather", [rois, flat], f"level{lvl}_rois", axis=0)
            b_l = g.op("Gather", [bidx, flat], f"level{lvl}_batch", axis=0)
            y = g.op("RoiAlign", [x, r_l, b_l], f"level{lvl}_roi_align", spatial_scale=scale, **attrs)
            pooled = g.op("ScatterND", [pooled, idx, y], f"level{lvl}_scatter")
    t = g.op("Flatten", [pooled], "flat", axis=1)

    def fc(x, key, hint):
        return g.op("Gemm", [x, g.param(f"{key}.weight", params[f"{key}.weight"]),
                             g.param(f"{key}.bias", params[f"{key}.bias"])], hint, transB=1)
    t = g.relu(fc(t, "box_head.fc6", "fc6"))
    t = g.relu(fc(t, "box_head.fc7", "fc7"))
    return [levels, fc(t, "box_predictor.cls_score", "cls_score"), fc(t, "box_predictor.bbox_pred", "bbox_pred")]


def export_box_head_onnx(params, *, scales=(0.25, 0.125, 0.0625, 0.03125), output_size=7, sampling_ratio=2,
                         aligned=False, min_level=None, convention="torchvision", opset=19, check=True):
    """Build an ONNX model of the Faster R-CNN box head with its multi-scale RoIAlign.

    The graph is what torchvision's ``RoIHeads`` computes at inference up to the logits: ``LevelMapper``
    (``floor(k0 + log2(sqrt(w * h) / 224) + 1e-6)`` clamped to the levels; the level rule of
    ``convention``), one ``RoiAlign`` per level (``coordinate_transformation_mode="output_half_pixel"``
    for ``aligned=False``, ``"half_pixel"`` for ``aligned=True``; ``sampling_ratio`` -1 and 0 are both
    ONNX's adaptive 0) whose rows are scattered back into RoI order, then ``TwoMLPHead`` (fc6, ReLU, fc7,
    ReLU) and ``FastRCNNPredictor`` (cls_score, bbox_pred) as ``Gemm`` nodes. With one level there is
    no level mapper (as in torchvision).

    Parameters
    ----------
    params : dict of arrays
        :func:`refdet.box_head_init` keys (torchvision ``roi_heads.state_dict()``); float32.
    scales : sequence of float
        ``spatial_scale`` per feature level, finest first; powers of two (P2-P5: 1/4 .. 1/32).
    output_size : int or (int, int)
        ``(PH, PW)``; ``C = fc6 inputs / (PH * PW)``.
    sampling_ratio : int
    aligned : bool
    min_level : int, optional
        The level of the first map (default ``-log2(scales[0])``).
    convention : str
        The ``assign_roi_levels`` rule (torchvision, detectron2, onnx, paper; not mmdet or caffe).
    opset : int in [17, 21]
    check : bool
        ``onnx.checker.check_model(full_check=True)``.

    Returns
    -------
    onnx.ModelProto
        Inputs ``features_0 ..`` (N, C, H_l, W_l) float32, ``rois`` (K, 4) float32 xyxy in image pixels,
        ``batch_indices`` (K,) int64. Outputs ``levels`` (K,) int64 (the level index each RoI is pooled
        from), ``class_logits`` (K, num_classes), ``box_regression`` (K, 4 * num_reg_classes). refdet's
        answer: :func:`refdet.exchange._models.box_head_reference` (:func:`verify_box_head_onnx`).

    Notes
    -----
    ONNX has no ``Log2``: ``Log(v) / Log(2)`` (what torchvision's export writes) can differ from
    ``log2`` in the last float32 bit, so a RoI whose size is within an ulp or two of a level boundary
    other than an exact power of two may be pooled from the neighbouring level. A RoI of negative area
    has no level (refdet: -1): its row is undefined in the graph.
    """
    onnx = _import_onnx()
    opset = _checks.check_int(opset, "opset", low=17, high=21)
    p = _models._as_params(params)
    cfg = _models.box_head_config(p, scales=scales, output_size=output_size, sampling_ratio=sampling_ratio,
                                  aligned=aligned, min_level=min_level, convention=convention)
    g = _Builder(onnx, opset)
    feats = [f"features_{i}" for i in range(len(cfg["scales"]))]
    outs = _box_head_graph(g, cfg, p, feats)
    onames = ["levels", "class_logits", "box_regression"]
    for src, dst in zip(outs, onames):
        g.nodes.append(onnx.helper.make_node("Identity", [src], [dst]))
    T = onnx.TensorProto
    mk = onnx.helper.make_tensor_value_info
    ins = [mk(n, T.FLOAT, ["N", cfg["channels"], f"H{i}", f"W{i}"]) for i, n in enumerate(feats)]
    ins += [mk("rois", T.FLOAT, ["K", 4]), mk("batch_indices", T.INT64, ["K"])]
    outs_vi = [mk("levels", T.INT64, ["K"]), mk("class_logits", T.FLOAT, ["K", cfg["num_classes"]]),
               mk("box_regression", T.FLOAT, ["K", cfg["box_outputs"]])]
    graph = onnx.helper.make_graph(g.nodes, "refdet_box_head", ins, outs_vi, initializer=g.inits)
    mp = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                producer_name="refdet", producer_version=_version())
    mp.ir_version = IR_VERSION_OF_OPSET[opset]
    onnx.helper.set_model_props(mp, {"refdet.model": "box_head", "refdet.config": json.dumps(cfg),
                                     "refdet.params": json.dumps(g.params)})
    if check:
        onnx.checker.check_model(mp, full_check=True)
    return mp


def verify_box_head_onnx(model, params, inputs, *, runtimes=("onnxruntime", "onnx.reference"), atol=1e-5,
                         rtol=1e-5):
    """Run an :func:`export_box_head_onnx` model in each runtime and compare with refdet.

    Returns a list of rows (``runtime``, ``output``, ``ok``, ``max_abs_diff`` ...; see
    :func:`refdet.exchange._models.compare`): ``levels`` must be equal, the logits and box regression
    within ``atol + rtol * |refdet|``.
    """
    onnx = _import_onnx()
    if not isinstance(model, onnx.ModelProto):
        # The file vetting of run_onnx/verify_onnx (operator allowlist, attribute and size checks) does
        # not cover the box head's operators (RoiAlign, Gemm, NonZero, ...) yet: refuse files rather
        # than run an unvetted graph from disk.
        raise TypeError("`model` must be the onnx.ModelProto returned by export_box_head_onnx (box-head "
                        f"files are not vetted yet); got {type(model).__name__}")
    mp = model
    props = {p.key: p.value for p in mp.metadata_props}
    if props.get("refdet.model") != "box_head":
        raise ValueError(f"`model` is not a refdet box_head model (refdet.model = {props.get('refdet.model')!r})")
    onnx.checker.check_model(mp, full_check=True)
    cfg = json.loads(props["refdet.config"])
    want = _models.box_head_reference(cfg, params, inputs)
    feeds = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    rows = []
    for rt in runtimes:
        # an in-memory model refdet built itself: checked by onnx's full_check, not by the file vetting
        got = _run_vetted(mp, feeds, rt, "box_head model")
        for name in ("levels", "class_logits", "box_regression"):
            rows.append(_models.compare(name, rt, got[name], want[name], atol=atol, rtol=rtol))
    return rows


__all__ += ["export_box_head_onnx", "verify_box_head_onnx"]
