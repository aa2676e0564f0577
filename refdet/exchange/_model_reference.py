"""refdet's own answer for an exported model, and what computing it costs: the reference outputs of each
model of :mod:`refdet.exchange._models` (its config, its parameters, its inputs) and the bytes refdet's
forward pass holds, counted from the shapes before anything is allocated.

:func:`refdet.exchange.onnx.verify_onnx` and :func:`refdet.exchange.nnef.verify_nnef` compare the
runtimes with these.
"""
from __future__ import annotations

import math

import numpy as np

from refdet import _checks
from refdet.exchange._models import (FPN_PREFIX, HEAD_PREFIX, input_names, output_names, qhead_from_params,
                                     split_prefixed)

__all__ = ["reference_outputs", "yolo_reference_outputs", "box_head_reference", "reference_work_bytes"]


class _Tally:
    """Bytes of every array refdet's forward pass keeps (caches hold them all) plus its largest scratch."""

    def __init__(self, itemsize=4):
        self.itemsize = itemsize
        self.tensors = 0
        self.scratch = 0

    def add(self, shape, times=1):
        self.tensors += times * math.prod(shape) * self.itemsize
        return tuple(shape)

    def conv(self, x, w_shape, pad, stride=1):
        from refdet._conv import IM2COL_MAX_BYTES

        if len(w_shape) != 4:
            raise ValueError(f"a convolution weight of shape {list(w_shape)} (not 4-D)")
        b, c, h, w = x
        f, _, kh, kw = w_shape
        ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"a {kh}x{kw} convolution does not fit a {h}x{w} map")
        wp = w + 2 * pad
        cols = b * c * kh * kw * ho * wp * self.itemsize
        # im2col chunk, the padded input, and the GEMM output with the junk columns of the whole-row layout
        self.scratch = max(self.scratch, min(cols, IM2COL_MAX_BYTES) + b * c * (h + 2 * pad) * wp * self.itemsize)
        return self.add((b, f, ho, wo), times=2)


def _head_work(t, hc, params, feats, model):
    from refdet import heads

    outs = []
    for x in feats:
        if model == "rpn_head":
            _, c, a, n_obj, depth = heads._rpn_layout(params)
            for i in range(depth):
                x = t.add(t.conv(x, np.shape(params[f"conv.{i}.0.weight"]), 1), times=2)   # conv, relu (+mask)
            o = t.conv(x, np.shape(params["cls_logits.weight"]), 0)
            d = t.conv(x, np.shape(params["bbox_pred.weight"]), 0)
            outs += [t.add(o, 2), t.add(d, 2)]       # flattened copies
            continue
        if model == "quantized_retinanet_head":
            progs = {b: [op for n, _ in hc["layers"][b] for op in (("conv", n + ".weight_quantized", None, 1),
                                                                    ("relu",))] for b in ("cls", "box")}
        else:
            progs = heads._retinanet_layout(params)[4]
        for ops in progs.values():
            y = x
            for op in ops:
                if op[0] == "conv":
                    y = t.conv(y, np.shape(params[op[1]]), op[3])
                elif op[0] == "gn":
                    y = t.add(y, times=5)            # centred, squared, normalised, scaled, shifted
                else:
                    y = t.add(y, times=2)
            outs.append(t.add(y, 2))
    return outs


def _fpn_work(t, fc, params, feats):
    n = len(feats)
    lat = [t.conv(x, np.shape(params[f"inner_blocks.{i}.0.weight"]), 0) for i, x in enumerate(feats)]
    outs = []
    for i in range(n):
        if i < n - 1:
            t.add(lat[i], times=2)                   # upsampled top-down map, merged sum
        outs.append(t.conv(lat[i], np.shape(params[f"layer_blocks.{i}.0.weight"]), 1))
    s = fc["settings"]
    if s["extra_blocks"] == "maxpool":
        b, f, h, w = outs[-1]
        outs.append(t.add((b, f, (h + 1) // 2, (w + 1) // 2), times=2))
    elif s["extra_blocks"] == "p6p7":
        src = {"c5": feats[-1], "p5": outs[-1]}.get(s["p6p7_input"], lat[-1])
        p6 = t.conv(src, np.shape(params["extra_blocks.p6.weight"]), 1, 2)
        outs += [p6, t.conv(t.add(p6), np.shape(params["extra_blocks.p7.weight"]), 1, 2)]
    return outs


def reference_work_bytes(cfg, params, shapes):
    """An upper estimate of the bytes :func:`reference_outputs` allocates for inputs of ``shapes``
    ({name: shape}): every array its forward passes keep (inputs, conv outputs, activations, the
    flattened outputs) plus its largest scratch buffer (an im2col chunk). Computed from shapes only.

    Raises ``ValueError`` (a parameter missing, a map too small for a kernel) like the computation would.
    """
    m = cfg["model"]
    names = input_names(cfg)
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"`inputs` is missing {missing} (the model's inputs are {names})")
    t = _Tally(8 if m == "quantized_retinanet_head" else 4)
    for n in names:
        t.add(shapes[n])
    if m == "postprocess":
        b, r, k = (tuple(shapes["cls_logits"]) + (1, 1, 1))[:3]
        t.add((b, r, k), times=4)                    # scores, sigmoid temporaries, transposed copy
        t.add((b, r, 4), times=16)                   # decode's temporaries (float64 for the oracle)
        t.scratch = 64 * r * 8 + 8 * b * k * r       # NMS block walk rows, selections
        return t.tensors + t.scratch
    if m not in ("fpn", "fpn_retinanet_head", "rpn_head", "retinanet_head", "quantized_retinanet_head"):
        return t.tensors        # a model without an estimate here: its graph's own check bounds the run
    feats = [tuple(shapes[n]) for n in names]
    for x in feats:
        if len(x) != 4:
            raise ValueError(f"`inputs` must be (B, C, H, W) maps; got shape {list(x)}")
    try:
        if m == "fpn":
            _fpn_work(t, cfg, params, feats)
        elif m == "fpn_retinanet_head":
            outs = _fpn_work(t, cfg["fpn"], split_prefixed(params, FPN_PREFIX), feats)
            _head_work(t, cfg["head"], split_prefixed(params, HEAD_PREFIX), outs, "retinanet_head")
        else:
            _head_work(t, cfg, params, feats, m)
    except KeyError as exc:
        raise ValueError(f"the parameters lack {exc.args[0]!r}, which the model's config needs") from None
    return t.tensors + t.scratch


def _fpn_kwargs(fc):
    s = fc["settings"]
    return dict(extra_blocks=s["extra_blocks"], upsample=s["upsample"], upsample_mode=s["upsample_mode"],
                fuse=s["fuse"], p6p7_input=s["p6p7_input"], relu_before_p7=s["relu_before_p7"])


def reference_outputs(cfg, params, inputs):
    """refdet's own answer for every output of the exported model: ``{name: array}``.

    ``inputs`` are the graph inputs by name; the parameters as loaded back from the file (float32),
    so refdet computes in float32 like the runtimes.
    """
    from refdet import box_coder, fpn, heads, layers
    from refdet.nms import onnx_non_max_suppression  # (refdet.nms is also the function nms)

    m = cfg["model"]
    names = input_names(cfg)
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"`inputs` is missing {missing} (the model's inputs are {names})")
    if m == "yolo_postprocess":
        return yolo_reference_outputs(cfg, params, inputs)
    if m == "postprocess":
        missing = [k for k in ("weights", "clamp", "max_output_boxes_per_class", "iou_threshold") if k not in params]
        if missing or ("score_threshold" in params) != bool(cfg.get("has_score_threshold", True)):
            raise ValueError(f"the post-processing parameters are incomplete: missing {missing or ['score_threshold']}")
        logits = _checks.as_float_array(inputs["cls_logits"], "cls_logits", ndim=3)
        deltas = _checks.as_float_array(inputs["bbox_deltas"], "bbox_deltas", ndim=3, last=4)
        anchors = _checks.as_boxes(inputs["anchors"], "anchors")
        w = tuple(float(v) for v in params["weights"])
        clamp = float(np.asarray(params["clamp"]).reshape(-1)[0])
        boxes = np.stack([box_coder.decode_boxes(d, anchors, weights=w, clamp=clamp) for d in deltas]) \
            if len(deltas) else np.zeros((0, anchors.shape[0], 4), deltas.dtype)
        scores, _ = layers.sigmoid_forward(logits)
        st = params.get("score_threshold")
        sel = onnx_non_max_suppression(
            boxes, scores.transpose(0, 2, 1), int(params["max_output_boxes_per_class"][0]),
            float(params["iou_threshold"][0]), None if st is None else float(np.asarray(st).reshape(-1)[0]))
        return {"boxes": boxes, "scores": scores, "selected_indices": sel}
    feats = [inputs[n] for n in names]
    if m == "quantized_retinanet_head":
        from refdet.quant import run_quantized_head

        out = run_quantized_head(qhead_from_params(cfg, params), list(feats), mode="onnxruntime")
        a = cfg["num_anchors"]
        return {"cls_logits": heads.flatten_head_output(out.cls_logits, a),
                "bbox_deltas": heads.flatten_head_output(out.bbox_deltas, a)}
    if m == "fpn":
        outs, _ = fpn.fpn_forward(params, feats, **_fpn_kwargs(cfg))
        return dict(zip(output_names(cfg), outs))
    if m == "fpn_retinanet_head":
        feats, _ = fpn.fpn_forward(split_prefixed(params, FPN_PREFIX), feats, **_fpn_kwargs(cfg["fpn"]))
        params, hc = split_prefixed(params, HEAD_PREFIX), cfg["head"]
    else:
        hc = cfg
    a = hc["num_anchors"]
    if m == "rpn_head":
        out, _ = heads.rpn_head_forward(params, list(feats))
        layout = "anchor_major" if hc["objectness"] == "sigmoid" else "class_major"
        return {"objectness": heads.flatten_head_output(out.objectness, a, layout=layout),
                "deltas": heads.flatten_head_output(out.deltas, a)}
    out, _ = heads.retinanet_head_forward(params, list(feats), num_groups=hc["num_groups"], eps=hc["eps"])
    return {"cls_logits": heads.flatten_head_output(out.cls_logits, a),
            "bbox_deltas": heads.flatten_head_output(out.bbox_deltas, a)}


def yolo_reference_outputs(cfg, params, inputs):
    """refdet's answer for ``"yolo_postprocess"``: DFL decode, sigmoid, the class-offset trick and
    :func:`refdet.onnx_non_max_suppression` (float32 in, float32 math)."""
    from refdet import layers
    from refdet.nms import onnx_non_max_suppression
    from refdet.yolo import _common
    from refdet.yolo.decode import dfl_decode_forward

    r = int(cfg["reg_max"])
    z = _checks.as_float_array(inputs["box_logits"], "box_logits", ndim=3)
    cls = _checks.as_float_array(inputs["cls_logits"], "cls_logits", ndim=3)
    if z.shape[-1] != 4 * r or cls.shape[:2] != z.shape[:2]:
        raise ValueError(f"`box_logits` must be (N, P, 4 * reg_max = {4 * r}) and `cls_logits` (N, P, K) with the "
                         f"same N, P; got {z.shape} and {cls.shape}")
    boxes, _ = dfl_decode_forward(z, inputs["anchor_points"], inputs["stride_tensor"], reg_max=r, out_fmt="cxcywh")
    scores, _ = layers.sigmoid_forward(cls)
    xyxy = _common.cxcywh_to_xyxy(boxes)                       # ultralytics xywh2xyxy: xy -+ wh / 2
    T = xyxy.dtype.type
    label = scores.argmax(axis=-1) if scores.size else np.zeros(scores.shape[:2], np.int64)   # first maximum
    conf = scores.max(axis=-1) if scores.size else np.zeros(scores.shape[:2], scores.dtype)
    shifted = xyxy + (label.astype(xyxy.dtype) * T(np.asarray(params["max_wh"]).reshape(-1)[0]))[..., None]
    st = params.get("score_threshold")
    sel = onnx_non_max_suppression(shifted, conf[:, None, :], int(params["max_output_boxes_per_class"][0]),
                                   float(params["iou_threshold"][0]),
                                   None if st is None else float(np.asarray(st).reshape(-1)[0]))
    b, a = sel[:, 0], sel[:, 2]
    det = np.concatenate([b[:, None].astype(xyxy.dtype), xyxy[b, a], conf[b, a][:, None],
                          label[b, a][:, None].astype(xyxy.dtype)], axis=1)
    return {"boxes": boxes, "scores": scores, "selected_indices": sel, "detections": det}


def box_head_reference(cfg, params, inputs):
    """refdet's answer for a ``"box_head"`` model: ``{"levels", "class_logits", "box_regression"}``.

    ``inputs``: ``features_0 ..`` (N, C, H_l, W_l), ``rois`` (K, 4) xyxy image pixels, ``batch_indices``
    (K,) int64.
    """
    from refdet.roi import assign_roi_levels, multiscale_roi_align, roi_align
    from refdet.roi_heads import box_head_forward

    L = len(cfg["scales"])
    feats = [np.asarray(inputs[f"features_{i}"]) for i in range(L)]
    r = np.asarray(inputs["rois"])
    rois5 = np.concatenate([np.asarray(inputs["batch_indices"]).astype(r.dtype)[:, None], r], axis=1)
    kw = dict(canonical_scale=cfg["canonical_scale"], canonical_level=cfg["canonical_level"],
              eps_inside=cfg["eps_inside"], eps_outside=cfg["eps_outside"], plus_one=False)
    if L == 1:
        pooled = roi_align(feats[0], rois5, tuple(cfg["output_size"]), cfg["scales"][0], cfg["sampling_ratio"],
                           cfg["aligned"])
        levels = np.zeros(len(r), np.int64)
    else:
        pooled = multiscale_roi_align(feats, rois5, tuple(cfg["output_size"]), cfg["sampling_ratio"],
                                      scales=cfg["scales"], min_level=cfg["min_level"], aligned=cfg["aligned"], **kw)
        levels = assign_roi_levels(r, min_level=cfg["min_level"], max_level=cfg["max_level"], **kw)
    out, _ = box_head_forward(params, pooled)
    return {"levels": levels, "class_logits": out.class_logits, "box_regression": out.box_regression}
