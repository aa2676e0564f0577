"""What the exporters share: the exportable models, their configuration, and the comparison with
refdet's own answer (computed by :mod:`refdet.exchange._model_reference`).

A model is described by a **config** (a small JSON-able dict) read from the parameter shapes plus the
exporter's keywords. The same config drives the ONNX graph, the NNEF graph, the random inputs of
``verify`` and the refdet reference computation, so the three cannot drift apart.

Models
------
``"rpn_head"``
    :func:`refdet.rpn_head_forward` on ``num_levels`` maps, flattened with
    :func:`refdet.flatten_head_output`: outputs ``objectness`` (N, R, 1) [sigmoid] or (N, R, 2)
    [softmax, (background, foreground), class-major channels] and ``deltas`` (N, R, 4),
    ``R = sum_l H_l * W_l * A`` in ``(level, y, x, a)`` order.
``"retinanet_head"``
    :func:`refdet.retinanet_head_forward` (with or without GroupNorm), flattened: ``cls_logits``
    (N, R, K) and ``bbox_deltas`` (N, R, 4).
``"fpn"``
    :func:`refdet.fpn_forward`: inputs ``features_0 .. features_{L-1}`` (highest resolution first),
    outputs ``fpn_0 ..`` (the P levels, then the extra levels).
``"fpn_retinanet_head"``
    The FPN, then the RetinaNet head on every FPN output: ``cls_logits``, ``bbox_deltas`` over all
    levels. Parameters are torchvision ``RetinaNet`` state_dict keys: ``backbone.fpn.*`` and ``head.*``.
``"quantized_retinanet_head"`` (ONNX only)
    A :class:`refdet.quant.QuantizedHead` as a QDQ graph: ``QuantizeLinear``/``DequantizeLinear``
    around float ``Conv``/``Relu`` with per-channel int8 weights (axis 0) and int32 biases at scale
    ``s_x * s_w``; outputs the dequantized ``cls_logits`` and ``bbox_deltas`` like ``"retinanet_head"``.
    refdet's answer is :func:`refdet.quant.run_quantized_head` (``mode="onnxruntime"``).
``"postprocess"``
    Inference post-processing: ``boxes = decode_boxes(bbox_deltas, anchors)`` (torchvision
    convention, weights divide, ``dw, dh`` clamped from above at ``clamp``), ``scores =
    sigmoid(cls_logits)`` and ONNX ``NonMaxSuppression`` per (image, class): ``selected_indices``
    (S, 3) = (image, class, anchor), exactly :func:`refdet.onnx_non_max_suppression`. Parameters:
    ``weights`` (4,), ``clamp`` (1,), ``max_output_boxes_per_class`` (1,) int64, ``iou_threshold`` (1,),
    ``score_threshold`` (1,) (absent: no score filter).
``"yolo_postprocess"`` (ONNX only)
    The anchor-free YOLO's inference (ultralytics ``Detect`` + ``non_max_suppression``) from the raw
    head outputs: inputs ``box_logits`` (N, P, 4 * reg_max) DFL logits (side-major), ``cls_logits``
    (N, P, K), ``anchor_points`` (P, 2) in grid units and ``stride_tensor`` (P, 1). Outputs ``boxes``
    (N, P, 4) = :func:`refdet.yolo.dfl_decode_forward` (softmax over the bins, expectation over
    ``0 .. reg_max - 1``, ``dist2bbox`` to ``(cx, cy, w, h)``, times the stride), ``scores`` (N, P, K)
    = ``sigmoid(cls_logits)``, ``selected_indices`` (S, 3) ``(image, 0, point)`` and ``detections``
    (S, 7) ``(image, x1, y1, x2, y2, score, class)``: ultralytics' NMS written with ONNX's
    ``NonMaxSuppression`` and the **class-offset trick** -- best class by ``ArgMax`` (first maximum),
    its score by ``ReduceMax``, corners ``xy -+ wh / 2``, each box shifted by ``class * max_wh``
    (0 for ``agnostic``), one single-class NMS with ``max_output_boxes_per_class = max_det``,
    ``score_threshold = conf_thres`` (strict) and ``iou_threshold``. refdet's answer is the same
    steps with :func:`refdet.onnx_non_max_suppression`. It equals
    :func:`refdet.yolo.yolo_non_max_suppression` (ultralytics) row for row except in two corners:
    ONNX never lets a zero-area box suppress or be suppressed (torchvision's NMS does the arithmetic),
    and ONNX compares the IoU with ``float32(iou_threshold)`` where torchvision compares the float32
    IoU with the float64 threshold -- an IoU of exactly ``float32(0.3) = 0.30000001`` is kept by ONNX
    and suppressed by ultralytics (tests/test_exchange_onnx.py pins both). Parameters: ``max_wh`` (1,),
    ``max_output_boxes_per_class`` (1,) int64 (= ``max_det``), ``iou_threshold`` (1,),
    ``score_threshold`` (1,).
"""
from __future__ import annotations

import math
import re

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.exchange import files as _files

MODELS = ("rpn_head", "retinanet_head", "fpn", "fpn_retinanet_head", "postprocess", "quantized_retinanet_head",
          "yolo_postprocess")
FPN_PREFIX = "backbone.fpn."
HEAD_PREFIX = "head."

#: the cap of every file's memory budget unless the caller passes ``max_bytes`` (refdet.exchange.files)
DEFAULT_MAX_BYTES = _files.DEFAULT_MAX_BYTES


def check_model(model):
    if not isinstance(model, str):
        raise TypeError(f"`model` must be one of {', '.join(repr(m) for m in MODELS)}; got {model!r}")
    names = {m.replace("_", "-"): m for m in MODELS}
    model = names.get(model, model)
    _checks.check_choice(model, "model", MODELS)
    return model


_as_params = _files._as_params


def split_prefixed(params, prefix):
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------------

def _rpn_config(p, num_levels):
    from refdet import heads

    _, c, a, n_obj, depth = heads._rpn_layout(p)
    heads.rpn_head_forward(p, np.zeros((0, c, 1, 1), np.float32))  # full key/shape validation
    return {"in_channels": [c] * num_levels, "num_anchors": a,
            "objectness": "sigmoid" if n_obj == a else "softmax", "conv_depth": depth}


def _retinanet_config(p, num_levels, num_groups, eps):
    from refdet import heads

    _, c, a, k, progs = heads._retinanet_layout(p)
    gn = any(op[0] == "gn" for ops in progs.values() for op in ops)
    if gn and c % num_groups:
        raise ValueError(f"`num_groups` must divide the head's C = {c} channels; got {num_groups}")
    heads.retinanet_head_forward(p, np.zeros((0, c, 1, 1), np.float32), num_groups=num_groups, eps=eps)
    return {"in_channels": [c] * num_levels, "num_anchors": a, "num_classes": k,
            "group_norm": gn, "num_groups": int(num_groups), "eps": float(eps),
            "programs": {h: [list(op) for op in ops] for h, ops in progs.items()}}


def _fpn_config(p, extra_blocks, convention, knobs):
    from refdet import fpn

    n = sum(1 for k in p if re.fullmatch(r"inner_blocks\.\d+\.0\.weight", k))
    if n == 0:
        raise ValueError("`params` hold no FPN (no 'inner_blocks.{i}.0.weight' keys)")
    cs = []
    for i in range(n):
        key = f"inner_blocks.{i}.0.weight"
        if key not in p or p[key].ndim != 4:
            raise ValueError(f"`params[{key!r}]` must exist and have shape (F, C_{i}, 1, 1)")
        cs.append(int(p[key].shape[1]))
    if extra_blocks is None:
        extra_blocks = "p6p7" if "extra_blocks.p6.weight" in p else "none"
    s = conventions.resolve("fpn_forward", convention, **knobs)
    feats = [np.zeros((0, c, 2 ** (n - i), 2 ** (n - i)), np.float32) for i, c in enumerate(cs)]
    _, cache = fpn.fpn_forward(p, feats, extra_blocks=extra_blocks, convention=convention, **knobs)
    settings = dict(cache.settings)
    f = int(p["inner_blocks.0.0.weight"].shape[0])
    if extra_blocks == "p6p7" and s["p6p7_input"] == "auto":
        settings["p6p7_input"] = "p5" if p["extra_blocks.p6.weight"].shape[1] == f else "c5"
    settings["relu_before_p7"] = bool(settings["relu_before_p7"])
    n_out = n + {"p6p7": 2, "maxpool": 1, "none": 0}[extra_blocks]
    return {"in_channels": cs, "out_channels": f, "num_outputs": n_out, "settings": settings}


def make_config(model, params, *, num_levels=1, extra_blocks=None, convention="torchvision",
                fpn_knobs=None, num_groups=32, eps=1e-5, post=None):
    """(config, params as float32 arrays) for ``model``; validates the parameters by running refdet."""
    model = check_model(model)
    knobs = {k: v for k, v in (fpn_knobs or {}).items() if v is not None}
    cfg = {"model": model}
    if model == "quantized_retinanet_head":
        return quantized_config(params, _checks.check_int(num_levels, "num_levels", low=1))
    if model == "postprocess":
        p = post_params(params, **{k: v for k, v in (post or {}).items() if k != "yolo"})
        cfg["in_channels"] = []
        cfg["has_score_threshold"] = "score_threshold" in p
        return cfg, p
    if model == "yolo_postprocess":
        yolo = dict((post or {}).get("yolo") or {})
        p = yolo_post_params(params, **{k: v for k, v in (post or {}).items() if k != "yolo" and k not in
                                         ("weights", "clamp")}, max_wh=yolo.get("max_wh", 7680.0),
                             agnostic=yolo.get("agnostic", False))
        cfg["in_channels"] = []
        cfg["reg_max"] = _checks.check_int(yolo.get("reg_max", 16), "reg_max", low=1, high=1 << 10)
        cfg["num_classes"] = _checks.check_int(yolo.get("num_classes", 80), "num_classes", low=1, high=1 << 16)
        cfg["has_score_threshold"] = "score_threshold" in p
        return cfg, p
    p = {k: np.asarray(v, dtype=np.float32) for k, v in _as_params(params).items()}
    num_levels = _checks.check_int(num_levels, "num_levels", low=1)
    if model == "rpn_head":
        cfg.update(_rpn_config(p, num_levels))
    elif model == "retinanet_head":
        cfg.update(_retinanet_config(p, num_levels, num_groups, eps))
    elif model == "fpn":
        cfg.update(_fpn_config(p, extra_blocks, convention, knobs))
    else:
        fp, hp = split_prefixed(p, FPN_PREFIX), split_prefixed(p, HEAD_PREFIX)
        stray = [k for k in p if not (k.startswith(FPN_PREFIX) or k.startswith(HEAD_PREFIX))]
        if stray:
            raise ValueError(f"`params` for 'fpn_retinanet_head' must have keys starting with {FPN_PREFIX!r} "
                             f"or {HEAD_PREFIX!r} (torchvision RetinaNet state_dict); got {stray[:3]}")
        fc = _fpn_config(fp, extra_blocks, convention, knobs)
        hc = _retinanet_config(hp, fc["num_outputs"], num_groups, eps)
        if hc["in_channels"][0] != fc["out_channels"]:
            raise ValueError(f"the head reads C = {hc['in_channels'][0]} channels but the FPN makes "
                             f"F = {fc['out_channels']}")
        cfg.update({"fpn": fc, "head": hc, "in_channels": fc["in_channels"]})
    return cfg, p


def quantized_config(qhead, num_levels):
    """(config, params) of a :class:`refdet.quant.QuantizedHead`: the QDQ initializers by name."""
    from refdet.quant import QuantizedHead

    if not isinstance(qhead, QuantizedHead):
        raise TypeError(f"model='quantized_retinanet_head' needs a QuantizedHead (from "
                        f"refdet.quant.quantize_retinanet_head) as `params`; got {type(qhead).__name__}")
    adt = np.dtype(qhead.activation_dtype)
    p = {"input_scale": np.asarray(qhead.input_scale, np.float32),
         "input_zero_point": np.asarray(qhead.input_zero_point, adt)}
    layers = {}
    for branch, ls in (("cls", qhead.cls_layers), ("box", qhead.box_layers)):
        layers[branch] = []
        for layer in ls:
            n = layer.name
            f = layer.weight.shape[0]
            p[n + ".weight_quantized"] = np.asarray(layer.weight, np.int8)
            p[n + ".weight_scale"] = np.asarray(layer.w_scale, np.float32)
            p[n + ".weight_zero_point"] = np.zeros(f, np.int8)
            p[n + ".bias_quantized"] = np.asarray(layer.bias, np.int32)
            p[n + ".bias_scale"] = np.asarray(layer.bias_scale, np.float32)
            p[n + ".bias_zero_point"] = np.zeros(f, np.int32)
            p[n + ".output_scale"] = np.asarray(layer.y_scale, np.float32)
            p[n + ".output_zero_point"] = np.asarray(layer.y_zero_point, adt)
            layers[branch].append([n, bool(layer.relu)])
    c = int(qhead.cls_layers[0].weight.shape[1])
    cfg = {"model": "quantized_retinanet_head", "in_channels": [c] * num_levels,
           "num_anchors": int(qhead.num_anchors), "num_classes": int(qhead.num_classes),
           "scheme": qhead.scheme, "activation_dtype": qhead.activation_dtype, "observer": qhead.observer,
           "layers": layers}
    return cfg, p


def qhead_from_params(cfg, params):
    """Rebuild the :class:`refdet.quant.QuantizedHead` from QDQ initializers and the config.

    The derived fields (requantization multipliers, Q31 form, clamps) are recomputed with the formulas
    of :func:`refdet.quant.quantize_retinanet_head`, so the result equals the exported head.
    """
    from refdet import quant as q
    from refdet.quant import QuantizedConv, QuantizedHead

    adt = cfg.get("activation_dtype")
    if adt not in ("int8", "uint8") or not isinstance(cfg.get("layers"), dict):
        raise ValueError("the model's refdet config does not describe a quantized head")
    lo, hi = q.QUANT_DTYPES[adt]

    def get(key):
        if key not in params:
            raise ValueError(f"the quantized model lacks the initializer {key!r}")
        return np.asarray(params[key])

    xs, xz = np.float32(get("input_scale")), int(get("input_zero_point"))
    branches = []
    for branch in ("cls", "box"):
        layers = []
        for name, relu in cfg["layers"].get(branch, []):
            ws = get(name + ".weight_scale").astype(np.float32)
            ys, yz = np.float32(get(name + ".output_scale")), int(get(name + ".output_zero_point"))
            m32 = np.asarray((xs * ws) / ys, dtype=np.float32)
            m64 = np.float64(xs) * ws.astype(np.float64) / np.float64(ys)
            q31, shift = q.quantize_multiplier(m64)
            layers.append(QuantizedConv(
                name=name, weight=get(name + ".weight_quantized").astype(np.int8), w_scale=ws,
                bias=get(name + ".bias_quantized").astype(np.int32),
                bias_scale=get(name + ".bias_scale").astype(np.float32), x_scale=xs, x_zero_point=xz,
                y_scale=ys, y_zero_point=yz, relu=bool(relu), qmin=max(lo, yz) if relu else lo, qmax=hi,
                multiplier=m32, multiplier_double=m64, q31=np.asarray(q31, np.int64),
                shift=np.asarray(shift, np.int64)))
            xs, xz = ys, yz
        branches.append(tuple(layers))
        xs, xz = np.float32(get("input_scale")), int(get("input_zero_point"))
    if not branches[0] or not branches[1]:
        raise ValueError("the quantized model's config lists no layers")
    return QuantizedHead(scheme=cfg.get("scheme", "onnx"), activation_dtype=adt,
                         input_scale=np.float32(get("input_scale")), input_zero_point=int(get("input_zero_point")),
                         cls_layers=branches[0], box_layers=branches[1], num_anchors=int(cfg["num_anchors"]),
                         num_classes=int(cfg["num_classes"]), observer=str(cfg.get("observer", "")))


def _is_int(v, low, high):
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _need(cfg, key, ok, where, what):
    if not isinstance(cfg, dict) or key not in cfg or not ok(cfg[key]):
        got = cfg.get(key, "nothing") if isinstance(cfg, dict) else cfg
        raise ValueError(f"{where}: the refdet config's {key!r} must be {what}; got {str(got)[:80]}")
    return cfg[key]


_FPN_SETTINGS = ("extra_blocks", "upsample", "upsample_mode", "fuse", "p6p7_input", "relu_before_p7")


def _check_head_config(hc, where, model):
    _need(hc, "num_anchors", lambda v: _is_int(v, 1, 1 << 16), where, "an integer in [1, 65536]")
    if model == "rpn_head":
        _need(hc, "objectness", lambda v: v in ("sigmoid", "softmax"), where, "'sigmoid' or 'softmax'")
        return
    _need(hc, "num_classes", lambda v: _is_int(v, 1, 1 << 16), where, "an integer in [1, 65536]")
    if model == "quantized_retinanet_head":
        _need(hc, "activation_dtype", lambda v: v in ("int8", "uint8"), where, "'int8' or 'uint8'")
        for key in ("scheme", "observer"):
            if key in hc and not isinstance(hc[key], str):
                raise ValueError(f"{where}: the refdet config's {key!r} must be text")
        layers = _need(hc, "layers", lambda v: isinstance(v, dict), where, "a dict of 'cls' and 'box' layer lists")
        for branch in ("cls", "box"):
            _need(layers, branch, lambda v: isinstance(v, list) and 1 <= len(v) <= 1024 and all(
                isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], bool)
                for x in v), where, "a list of [layer name, relu] pairs")
        return
    _need(hc, "num_groups", lambda v: _is_int(v, 1, 1 << 16), where, "an integer in [1, 65536]")
    _need(hc, "eps", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf,
          where, "a finite number >= 0")


def _check_fpn_config(fc, where):
    _need(fc, "out_channels", lambda v: _is_int(v, 1, 1 << 16), where, "an integer in [1, 65536]")
    _need(fc, "num_outputs", lambda v: _is_int(v, 1, 64), where, "an integer in [1, 64]")
    st = _need(fc, "settings", lambda v: isinstance(v, dict), where, "a dict of FPN settings")
    for key in _FPN_SETTINGS:
        _need(st, key, lambda v: isinstance(v, (str, bool)) or v is None, where + " settings", "a name or flag")


def check_file_config(cfg, where):
    """Sanity of a config read from a file (untrusted): every field refdet reads exists with the right
    type, and sizes that drive allocations are bounded. ``ValueError`` naming ``where`` and the field."""
    if not isinstance(cfg, dict) or cfg.get("model") not in MODELS:
        raise ValueError(f"{where}: the refdet config does not name a refdet model")
    m = cfg["model"]
    ch = cfg.get("in_channels")
    if (not isinstance(ch, list) or len(ch) > 16 or (m not in ("postprocess", "yolo_postprocess") and not ch)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= 1 << 16 for c in ch)):
        raise ValueError(f"{where}: the refdet config has an invalid 'in_channels' {str(ch)[:80]}")
    for key in ("num_anchors", "num_classes"):
        v = cfg.get(key)
        if v is not None and not _is_int(v, 1, 1 << 16):
            raise ValueError(f"{where}: the refdet config has an invalid {key!r} {str(v)[:80]}")
    if m == "postprocess":
        if not isinstance(cfg.get("has_score_threshold", True), bool):
            raise ValueError(f"{where}: the refdet config's 'has_score_threshold' must be true or false")
    elif m == "yolo_postprocess":
        if not isinstance(cfg.get("has_score_threshold", True), bool):
            raise ValueError(f"{where}: the refdet config's 'has_score_threshold' must be true or false")
        if not _is_int(cfg.get("reg_max"), 1, 1 << 10) or not _is_int(cfg.get("num_classes"), 1, 1 << 16):
            raise ValueError(f"{where}: the refdet config has an invalid 'reg_max' {str(cfg.get('reg_max'))[:80]} or "
                             f"'num_classes' {str(cfg.get('num_classes'))[:80]}")
    elif m == "fpn":
        _check_fpn_config(cfg, where)
    elif m == "fpn_retinanet_head":
        _check_fpn_config(_need(cfg, "fpn", lambda v: isinstance(v, dict), where, "a dict"), where + " 'fpn'")
        _check_head_config(_need(cfg, "head", lambda v: isinstance(v, dict), where, "a dict"), where + " 'head'",
                           "retinanet_head")
    elif m in ("rpn_head", "retinanet_head", "quantized_retinanet_head"):
        _check_head_config(cfg, where, m)
    return cfg


def input_shapes(cfg, *, batch=1, height=13, width=9, num_anchors_total=50):
    """The shapes :func:`random_inputs` makes, without making them: ``{name: shape}``."""
    if cfg["model"] == "postprocess":
        r, k = int(num_anchors_total), int(cfg.get("num_classes", 3))
        return {"cls_logits": (batch, r, k), "bbox_deltas": (batch, r, 4), "anchors": (r, 4)}
    if cfg["model"] == "yolo_postprocess":
        p = sum(h * w for h, w in level_sizes(height, width, 3))
        return {"box_logits": (batch, p, 4 * int(cfg["reg_max"])), "cls_logits": (batch, p, int(cfg["num_classes"])),
                "anchor_points": (p, 2), "stride_tensor": (p, 1)}
    sizes = level_sizes(height, width, len(cfg["in_channels"]))
    return {name: (batch, c, h, w) for name, c, (h, w) in zip(input_names(cfg), cfg["in_channels"], sizes)}


def post_params(params=None, *, weights=(1.0, 1.0, 1.0, 1.0), clamp=math.log(1000.0 / 16),
                max_output_boxes_per_class=100, iou_threshold=0.5, score_threshold=0.05):
    """Initializer values of the post-processing model (``params`` entries override the keywords)."""
    given = _as_params(params) if params is not None else {}
    allowed = {"weights", "clamp", "max_output_boxes_per_class", "iou_threshold", "score_threshold"}
    extra = [k for k in given if k not in allowed]
    if extra:
        raise ValueError(f"`params` for 'postprocess' may only have {sorted(allowed)}; got {extra}")
    w = given.get("weights", weights)
    w = _checks.check_weights4(np.asarray(w, dtype=np.float64).reshape(-1), "weights")
    c = _checks.check_real(np.asarray(given.get("clamp", clamp)).reshape(()), "clamp")
    k = _checks.check_int(int(np.asarray(given.get("max_output_boxes_per_class", max_output_boxes_per_class))
                              .reshape(-1)[0]), "max_output_boxes_per_class", low=0)
    t = _checks.check_probability(float(np.asarray(given.get("iou_threshold", iou_threshold)).reshape(-1)[0]),
                                  "iou_threshold")
    out = {"weights": np.asarray(w, np.float32), "clamp": np.asarray([c], np.float32),
           "max_output_boxes_per_class": np.asarray([k], np.int64),
           "iou_threshold": np.asarray([t], np.float32)}
    st = given.get("score_threshold", score_threshold)
    if st is not None:
        out["score_threshold"] = np.asarray(
            [_checks.check_real(float(np.asarray(st).reshape(-1)[0]), "score_threshold")], np.float32)
    return out


def yolo_post_params(params=None, *, max_output_boxes_per_class=300, iou_threshold=0.45, score_threshold=0.25,
                     max_wh=7680.0, agnostic=False):
    """Initializer values of the YOLO post-processing model (``params`` entries override the keywords):
    ``max_wh`` (0 when ``agnostic``), ``max_output_boxes_per_class`` (ultralytics' ``max_det``),
    ``iou_threshold``, ``score_threshold`` (``conf_thres``; None: no score filter)."""
    given = _as_params(params) if params is not None else {}
    allowed = {"max_wh", "max_output_boxes_per_class", "iou_threshold", "score_threshold"}
    extra = [k for k in given if k not in allowed]
    if extra:
        raise ValueError(f"`params` for 'yolo_postprocess' may only have {sorted(allowed)}; got {extra}")
    if not isinstance(agnostic, (bool, np.bool_)):
        raise TypeError(f"`agnostic` must be a bool; got {type(agnostic).__name__}")
    wh = _checks.check_positive(float(np.asarray(given.get("max_wh", max_wh)).reshape(-1)[0]), "max_wh", strict=False)
    k = _checks.check_int(int(np.asarray(given.get("max_output_boxes_per_class", max_output_boxes_per_class))
                              .reshape(-1)[0]), "max_output_boxes_per_class", low=0)
    t = _checks.check_probability(float(np.asarray(given.get("iou_threshold", iou_threshold)).reshape(-1)[0]),
                                  "iou_threshold")
    out = {"max_wh": np.asarray([0.0 if agnostic else wh], np.float32),
           "max_output_boxes_per_class": np.asarray([k], np.int64), "iou_threshold": np.asarray([t], np.float32)}
    st = given.get("score_threshold", score_threshold)
    if st is not None:
        out["score_threshold"] = np.asarray(
            [_checks.check_probability(float(np.asarray(st).reshape(-1)[0]), "score_threshold")], np.float32)
    return out


# ---------------------------------------------------------------------------------------------------
# inputs and outputs
# ---------------------------------------------------------------------------------------------------

def input_names(cfg):
    if cfg["model"] == "postprocess":
        return ["cls_logits", "bbox_deltas", "anchors"]
    if cfg["model"] == "yolo_postprocess":
        return ["box_logits", "cls_logits", "anchor_points", "stride_tensor"]
    n = len(cfg["in_channels"])
    if cfg["model"] in ("rpn_head", "retinanet_head", "quantized_retinanet_head") and n == 1:
        return ["features"]
    return [f"features_{i}" for i in range(n)]


def output_names(cfg):
    m = cfg["model"]
    if m == "rpn_head":
        return ["objectness", "deltas"]
    if m in ("retinanet_head", "fpn_retinanet_head", "quantized_retinanet_head"):
        return ["cls_logits", "bbox_deltas"]
    if m == "fpn":
        return [f"fpn_{i}" for i in range(cfg["num_outputs"])]
    if m == "yolo_postprocess":
        return ["boxes", "scores", "selected_indices", "detections"]
    return ["boxes", "scores", "selected_indices"]


def level_sizes(height, width, n):
    """(H, W) of ``n`` levels: the first given, each next ``ceil(previous / 2)`` (a stride-2 backbone)."""
    sizes = [(int(height), int(width))]
    for _ in range(n - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def random_inputs(cfg, *, batch=1, height=13, width=9, num_anchors_total=50, rng=None):
    """Random float32 inputs for ``cfg``: feature maps N(0, 1) (sizes from :func:`level_sizes`), or for
    ``"postprocess"`` logits N(0, 2), deltas N(0, 0.5) and random xyxy anchors in a 100 x 100 image."""
    rng = _checks.as_rng(rng)
    if cfg["model"] == "yolo_postprocess":
        # a 3-level pyramid (strides 8, 16, 32) whose finest level is height x width; logits spread so
        # that some scores pass the threshold and boxes overlap
        from refdet.yolo.anchors import make_anchors

        sizes = level_sizes(height, width, 3)
        pts, st = make_anchors(sizes, [8.0, 16.0, 32.0], dtype=np.float32)
        r, k = int(cfg["reg_max"]), int(cfg["num_classes"])
        return {"box_logits": (2 * rng.standard_normal((batch, len(pts), 4 * r))).astype(np.float32),
                "cls_logits": (2 * rng.standard_normal((batch, len(pts), k)) - 1).astype(np.float32),
                "anchor_points": pts, "stride_tensor": st}
    if cfg["model"] == "postprocess":
        r = int(num_anchors_total)
        k = int(cfg.get("num_classes", 3))
        xy = rng.uniform(0, 80, size=(r, 2))
        wh = rng.uniform(4, 30, size=(r, 2))
        anchors = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        return {"cls_logits": (2 * rng.standard_normal((batch, r, k))).astype(np.float32),
                "bbox_deltas": (0.5 * rng.standard_normal((batch, r, 4))).astype(np.float32),
                "anchors": anchors}
    sizes = level_sizes(height, width, len(cfg["in_channels"]))
    return {name: rng.standard_normal((batch, c, h, w)).astype(np.float32)
            for name, c, (h, w) in zip(input_names(cfg), cfg["in_channels"], sizes)}


# ---------------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------------

def compare(name, runtime, got, want, *, atol, rtol):
    """One row of a verification report (a dict)."""
    got = np.asarray(got)
    want = np.asarray(want)
    row = {"runtime": runtime, "output": name, "shape": tuple(want.shape), "got_shape": tuple(got.shape)}
    index_like = want.dtype.kind in "iub" and got.ndim == want.ndim and got.shape[1:] == want.shape[1:]
    if got.shape != want.shape and not index_like:
        row.update(kind="shape", max_abs_diff=float("nan"), ok=False,
                   note=f"shape {got.shape} != refdet {want.shape}")
        return row
    if want.dtype.kind in "iub":   # indices (NMS selections): identical or not; K may differ
        eq = bool(np.array_equal(got, want))
        row.update(kind="exact", max_abs_diff=0.0 if eq else float("nan"), ok=eq,
                   note="indices identical" if eq else _first_index_difference(got, want))
        return row
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    same_nan = bool(np.array_equal(np.isnan(g), np.isnan(w)))
    diff = np.abs(np.where(np.isnan(w), 0.0, g - w)) if same_nan else np.abs(g - w)
    mad = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(w))) if w.size and not np.isnan(w).all() else 0.0
    # float32 sums in another order: the error scales with the output's magnitude, not each element's
    ok = same_nan and mad <= atol + rtol * scale
    row.update(kind="float", max_abs_diff=mad, ok=ok,
               note=f"allowed {atol:g} + {rtol:g} * max|refdet| = {atol + rtol * scale:.3g}")
    return row


def _first_index_difference(got, want):
    n = min(len(got), len(want))
    bad = np.flatnonzero(np.any(got[:n] != want[:n], axis=tuple(range(1, got.ndim)))) if n else []
    if len(bad):
        i = int(bad[0])
        return f"first difference at row {i}: runtime {got[i].tolist()} vs refdet {want[i].tolist()}"
    return f"the runtime has {len(got)} rows, refdet {len(want)} (equal up to row {n})"


def format_report(rows):
    """A plain-text table of report rows."""
    head = ("runtime", "output", "shape", "check", "max |diff|", "ok")
    lines = [[r["runtime"], r["output"], "x".join(map(str, r["shape"])) or "()", r["kind"],
              f"{r['max_abs_diff']:.3g}", "yes" if r["ok"] else "NO  " + r.get("note", "")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*["-" * w for w in widths])]
    out += [fmt.format(*map(str, line)) for line in lines]
    return "\n".join(out)


class Report:
    """Per-output comparison of runtimes against refdet.

    Attributes
    ----------
    rows : list of dict
        One per (runtime, output): ``runtime``, ``output``, ``shape``, ``kind`` ("float": max abs
        difference within ``atol + rtol * |refdet|``; "exact": integer outputs such as NMS indices
        must be identical; "shape"), ``max_abs_diff``, ``ok``, ``note``.
    skipped : dict
        Runtimes that could not run, with the reason (not installed, op unsupported).
    ok : bool
        Every row agrees (and at least one runtime ran).
    """

    def __init__(self, rows, skipped):
        self.rows = list(rows)
        self.skipped = dict(skipped)

    @property
    def ok(self):
        return bool(self.rows) and all(r["ok"] for r in self.rows)

    def __str__(self):
        text = format_report(self.rows)
        for name, why in self.skipped.items():
            text += f"\n(skipped {name}: {why})"
        return text

    __repr__ = __str__


class ProgramEmitter:
    """Mixin: emit a refdet head program (``refdet.heads``' op tuples) with a backend's ``conv``,
    ``group_norm`` and ``relu`` methods (the ONNX builder and the NNEF text writer share it)."""

    def program(self, ops, x, params, groups, eps):
        for op in ops:
            if op[0] == "conv":
                x = self.conv(x, op[1], op[2], params, pad=op[3])
            elif op[0] == "gn":
                x = self.group_norm(x, op[1], op[2], params, groups, eps)
            else:
                x = self.relu(x)
        return x


# ---------------------------------------------------------------------------------------------------
# the Faster R-CNN box head with its (multi-scale) RoIAlign (ONNX only; issue 14)
# ---------------------------------------------------------------------------------------------------

def box_head_config(params, *, scales, output_size=7, sampling_ratio=2, aligned=False, min_level=None,
                    convention="torchvision"):
    """The config of a ``"box_head"`` model: multi-scale RoIAlign (torchvision ``MultiScaleRoIAlign``:
    ``LevelMapper`` level rule, one ``RoiAlign`` per level) then ``TwoMLPHead`` and ``FastRCNNPredictor``.

    ``params``: :func:`refdet.box_head_init` keys (``box_head.fc6.*``, ``box_head.fc7.*``,
    ``box_predictor.cls_score.*``, ``box_predictor.bbox_pred.*``). ``scales``: ``spatial_scale`` per
    level, finest first (powers of two: ``1 / stride``); the level rule is the ``assign_roi_levels``
    profile of ``convention`` (a rule with ``canonical_level=None`` or ``plus_one`` is refused: the
    exported graph computes ``floor(k0 + log2(sqrt(w * h) / s0 + eps_inside) + eps_outside)``).
    """
    from refdet.roi.levels import _resolve_levels

    p = _as_params(params)
    need = ("box_head.fc6.weight", "box_head.fc6.bias", "box_head.fc7.weight", "box_head.fc7.bias",
            "box_predictor.cls_score.weight", "box_predictor.cls_score.bias", "box_predictor.bbox_pred.weight",
            "box_predictor.bbox_pred.bias")
    missing = [k for k in need if k not in p]
    if missing:
        raise ValueError(f"`params` is missing {', '.join(repr(k) for k in missing)}")
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or not len(scales):
        raise ValueError(f"`scales` must be a non-empty list of spatial scales, one per level; got {scales!r}")
    sc = []
    for i, v in enumerate(scales):
        v = float(v)
        if not (v > 0 and math.isfinite(v)) or 2.0 ** round(math.log2(v)) != v:
            raise ValueError(f"`scales[{i}]` must be a power of two (1 / stride); got {v}")
        sc.append(v)
    if isinstance(output_size, (int, np.integer)):
        output_size = (int(output_size), int(output_size))
    ph, pw = (_checks.check_int(v, "output_size", low=1) for v in output_size)
    sr = _checks.check_int(sampling_ratio, "sampling_ratio", low=-1)
    kmin = -int(round(math.log2(sc[0]))) if min_level is None else _checks.check_int(min_level, "min_level")
    rule = _resolve_levels(convention)
    if rule.canonical_level is None or rule.plus_one:
        raise ValueError(f"`convention` {getattr(rule, 'name', convention)!r}: the exported level rule needs a "
                         f"canonical level and no +1 widths")
    c_in = p["box_head.fc6.weight"].shape[1]
    if c_in % (ph * pw):
        raise ValueError(f"fc6 takes {c_in} inputs, not a multiple of output_size {ph} x {pw}")
    return dict(model="box_head", scales=sc, output_size=[ph, pw], sampling_ratio=sr, aligned=bool(aligned),
                min_level=kmin, max_level=kmin + len(sc) - 1, channels=c_in // (ph * pw),
                canonical_scale=float(rule.canonical_scale), canonical_level=int(rule.canonical_level),
                eps_inside=float(rule.eps_inside), eps_outside=float(rule.eps_outside),
                num_classes=int(p["box_predictor.cls_score.weight"].shape[0]),
                box_outputs=int(p["box_predictor.bbox_pred.weight"].shape[0]))

