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

import numpy as np

from refdet import _checks
from refdet.exchange import _model_reference, _models, _onnx_check
from refdet.exchange import files as _files
from refdet.exchange.files import format_bytes
# the graphs written (one body per model) and the readers of untrusted files live beside this module
from refdet.exchange._onnx_graphs import (IR_VERSION_OF_OPSET, _box_head_graph, _Builder, _c_order,  # noqa: F401
                                          _fpn_graph, _import_onnx, _postprocess_graph, _qdq_graph,
                                          _resize_attrs, _retinanet_graph, _rpn_graph, _value_infos,
                                          _yolo_postprocess_graph)
from refdet.exchange._onnx_read import (_config, _params, _source, load_onnx_params,  # noqa: F401
                                        load_quantized_head, onnx_config, read_onnx)
from refdet.exchange._onnx_check import _one_line

__all__ = ["export_onnx", "load_onnx_params", "load_quantized_head", "read_onnx", "onnx_config", "verify_onnx",
           "run_onnx",
           "IR_VERSION_OF_OPSET"]

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
    if runtime in ("openvino", "opencv"):         # issue 15: refdet.runtimes.onnx_runners (lazy imports)
        from refdet.runtimes.onnx_runners import RUNNERS
        return RUNNERS[runtime](mp.SerializeToString(), feeds, names)
    if runtime not in ("onnxruntime", "onnxruntime-unfused", "onnx.reference"):
        raise ValueError(f"`runtime` must be 'onnxruntime', 'onnxruntime-unfused', 'onnx.reference', 'openvino' or "
                         f"'opencv'; got {runtime!r}")
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


#: every runtime verify_onnx can run (``refdet verify-export`` runs them all; the installed ones run)
ALL_RUNTIMES = ("onnxruntime", "onnx.reference", "openvino", "opencv")


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
    runtimes : sequence of {"onnxruntime", "onnxruntime-unfused", "onnx.reference", "openvino", "opencv"}
        Runtimes not installed are listed in ``report.skipped``; so are OpenVINO (its ONNX frontend, CPU
        plugin, f32) and OpenCV dnn (its ONNX importer) when they cannot load or run the model (an
        operator they lack), with their own message: that is not a disagreement
        (:mod:`refdet.runtimes.onnx_runners`).
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
        ref = _model_reference.reference_work_bytes(cfg, params, shapes)
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
        want = _model_reference.reference_outputs(cfg, params, inputs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: refdet cannot compute this model: {_one_line(exc)}") from None
    rows, skipped = [], {}
    for rt in runtimes:
        try:
            got = _run_vetted(mp, inputs, rt, what)
        except ImportError as exc:
            skipped[rt] = f"not installed ({exc})"
            continue
        except ValueError as exc:
            if type(exc).__name__ != "RuntimeCannotRun":      # openvino / opencv refused the model
                raise
            skipped[rt] = str(exc)
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
        answer: :func:`refdet.exchange._model_reference.box_head_reference` (:func:`verify_box_head_onnx`).

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
    want = _model_reference.box_head_reference(cfg, params, inputs)
    feeds = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    rows = []
    for rt in runtimes:
        # an in-memory model refdet built itself: checked by onnx's full_check, not by the file vetting
        got = _run_vetted(mp, feeds, rt, "box_head model")
        for name in ("levels", "class_logits", "box_regression"):
            rows.append(_models.compare(name, rt, got[name], want[name], atol=atol, rtol=rtol))
    return rows


__all__ += ["export_box_head_onnx", "verify_box_head_onnx"]
