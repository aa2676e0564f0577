"""The ONNX graphs :mod:`refdet.exchange.onnx` writes: a builder that turns refdet's model programs
(:class:`refdet.exchange._models.ProgramEmitter`) into ONNX nodes and initializers, and one graph body
per model (RPN / RetinaNet heads, FPN, the QDQ quantized head, the post-processing graphs, the Faster
R-CNN box head with its multi-scale RoIAlign).

How each graph reproduces refdet (opset and IR version, the Resize modes, the head layout, GroupNorm,
the post-processing order of operations) is written in :mod:`refdet.exchange.onnx`'s docstring.
``onnx`` is imported only inside the functions.
"""
from __future__ import annotations

import numpy as np

from refdet.exchange import _models

__all__ = ["IR_VERSION_OF_OPSET"]


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
