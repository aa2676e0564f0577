"""``refdet verify``: run another implementation against refdet and print what agrees.

Usage::

    refdet verify                         refdet's self-check + every installed backend
    refdet verify torchvision             torchvision's ops (nms, box_iou, Matcher, BoxCoder, ...)
    refdet verify onnxruntime             ONNX NonMaxSuppression / Relu / Conv run by onnxruntime
    refdet verify onnx-reference          the same nodes run by onnx.reference
    refdet verify ultralytics             ultralytics' YOLO ops (TAL, NMS, DFL, ...; the `yolo` extra)
    refdet verify self                    only refdet's self-check
    refdet verify --op nms mypkg.ops:nms --convention torchvision
    refdet verify --op focal_loss mypkg.losses:focal --grad mypkg.losses:focal_grad

For each op the target provides, the conformance check of :mod:`refdet.testing.conformance` runs the
golden edge cases and ``--cases`` hypothesis-generated cases (``--seed``: the same cases every run)
and the table shows: target, op, cases, agreeing, worst error and the first mismatch; the full
explanation of every disagreeing op follows the table. ``--json`` prints the same as JSON. A progress
line is written to stderr while it runs. Exit status 0 when everything agrees, 1 on any
disagreement, 2 on a usage error.

Self-check: the gradient check (float64 central differences) of every ``*_forward`` /
``*_backward`` pair found by walking refdet's modules (a pair without a registered check is a
failure, so a new pair cannot slip through), and hypothesis invariants (IoU symmetric and in
[0, 1]; encode/decode round trip; NMS output unique, sorted, idempotent, every suppressed box
explained; matcher codes valid; balanced-sampler counts).

Adapters map each backend's op to refdet's signature (NumPy in, NumPy out); torch, onnx and
onnxruntime are imported only when their target runs.
"""
from __future__ import annotations

import importlib
import json
import math
import pkgutil
import sys

import numpy as np

__all__ = ["run_target", "self_check", "verify", "TARGETS", "gradcheck_coverage"]


# ---------------------------------------------------------------------------------------------------
# adapters: {op: dict(fn=..., [grad=...], [convention=...], [other check options])}
# ---------------------------------------------------------------------------------------------------

def _torchvision_adapters():
    import torch
    import torchvision
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    torch.set_num_threads(1)
    ops = torchvision.ops

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def match(q):
        if q.shape[1] == 0:      # torchvision raises on 0 anchors; compare the other rules
            return np.zeros(0, np.int64)
        return det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)(T(q)).numpy()

    coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def anchors(image_size, feature_sizes, strides, sizes, aspect_ratios):
        gen = AnchorGenerator(sizes=tuple(tuple(s) for s in sizes),
                              aspect_ratios=tuple(tuple(float(r) for r in a) for a in aspect_ratios))
        h, w = image_size
        images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
        feats = [torch.zeros(1, 1, fh, fw) for fh, fw in feature_sizes]
        return gen(images, feats)[0].numpy()

    def focal(x, t):
        return ops.sigmoid_focal_loss(T(x), T(t), alpha=0.25, gamma=2.0, reduction="none").numpy()

    def focal_grad(x, t, dloss):
        xt = T(x).clone().requires_grad_(True)
        loss = ops.sigmoid_focal_loss(xt, T(t), alpha=0.25, gamma=2.0, reduction="none")
        (loss * T(dloss)).sum().backward()
        return xt.grad.numpy()

    def relu_grad(x, dy):
        xt = T(x).clone().requires_grad_(True)
        (torch.relu(xt) * T(dy)).sum().backward()
        return xt.grad.numpy()

    def conv(x, w, b, *, stride, padding, dilation, groups):
        return torch.nn.functional.conv2d(T(x), T(w), None if b is None else T(b), stride=stride, padding=padding,
                                          dilation=dilation, groups=groups).numpy()

    sampler = det_utils.BalancedPositiveNegativeSampler(256, 0.5)

    def sample(labels):
        pos, neg = sampler([T(labels)])
        return pos[0].numpy().astype(bool), neg[0].numpy().astype(bool)

    return {
        "nms": dict(fn=lambda b, s, t: ops.nms(T(b), T(s), t).numpy()),
        "batched_nms": dict(fn=lambda b, s, i, t: ops.batched_nms(T(b), T(s), T(i), t).numpy()),
        "box_iou": dict(fn=lambda a, b: ops.box_iou(T(a), T(b)).numpy()),
        "generalized_box_iou": dict(fn=lambda a, b: ops.generalized_box_iou(T(a), T(b)).numpy()),
        "match": dict(fn=match),
        "encode_boxes": dict(fn=lambda b, a: coder.encode_single(T(b), T(a)).numpy()),
        "decode_boxes": dict(fn=lambda d, a: coder.decode_single(T(d), T(a)).numpy()),
        "anchors": dict(fn=anchors),
        "focal_loss": dict(fn=focal, grad=focal_grad),
        "relu": dict(fn=lambda x: torch.relu(T(x)).numpy(), grad=relu_grad),
        "conv2d": dict(fn=conv, dtype=np.float64),
        "sample_balanced": dict(fn=sample),
    }


def _onnx_node_runner(kind):
    """``run(node_type, inputs: list of (name, array), attrs) -> first output`` for ``kind``."""
    import onnx
    from onnx import TensorProto, helper

    dtypes = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
              np.dtype(np.int64): TensorProto.INT64}

    def run(op_type, inputs, attrs, out_type):
        ins = [helper.make_tensor_value_info(n, dtypes[a.dtype], list(a.shape)) for n, a in inputs]
        node = helper.make_node(op_type, [n for n, _ in inputs], ["y"], **attrs)
        graph = helper.make_graph([node], "refdet_verify", ins, [helper.make_tensor_value_info("y", out_type, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        model.ir_version = min(model.ir_version, 9)
        feed = {n: a for n, a in inputs}
        if kind == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            return sess.run(None, feed)[0]
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, feed)[0]

    return run, onnx, dtypes


def _onnx_adapters(kind):
    run, onnx, dtypes = _onnx_node_runner(kind)
    from onnx import TensorProto

    def nms(b, s, thr):
        n = len(b)
        if n == 0:
            return np.zeros(0, np.int64)
        out = run("NonMaxSuppression", [("boxes", b.astype(np.float32)[None]),
                                        ("scores", s.astype(np.float32)[None, None]),
                                        ("max_output", np.array([n], np.int64)),
                                        ("iou_threshold", np.array([thr], np.float32))], {}, TensorProto.INT64)
        return np.asarray(out)[:, 2]

    def relu(x):
        return run("Relu", [("x", x)], {}, dtypes[x.dtype])

    def conv(x, w, b, *, stride, padding, dilation, groups):
        def pair(v):
            return list(v) if isinstance(v, (tuple, list)) else [v, v]
        p = pair(padding)
        ins = [("x", x), ("w", w)] + ([("b", b)] if b is not None else [])
        return run("Conv", ins, dict(strides=pair(stride), pads=[p[0], p[1], p[0], p[1]], dilations=pair(dilation),
                                     group=groups), dtypes[x.dtype])

    return {
        "nms": dict(fn=nms, convention="onnx"),
        "relu": dict(fn=relu),
        "conv2d": dict(fn=conv, dtype=np.float32),
    }


def _ultralytics_adapters():
    """ultralytics' own functions behind refdet's signatures (the YOLO conformance checks).

    One change, stated where it is made: ``TaskAlignedAssigner.select_topk_candidates`` calls
    ``torch.topk``, whose order among equal alignments is unspecified (on the CPU it follows the
    partition, not the index); the adapter replaces that one method by a stable sort (lowest index
    first among equals, refdet's documented rule). Everything else is ultralytics' code.
    """
    import torch
    import torchvision  # noqa: F401  (ultralytics' NMS calls torchvision.ops.nms when torchvision is imported,
    #                    as in every ultralytics run; its TorchNMS fallback sorts with an unstable argsort)
    from ultralytics.nn.modules.block import DFL
    from ultralytics.utils import loss as uloss
    from ultralytics.utils import nms as unms
    from ultralytics.utils import tal

    torch.set_num_threads(1)

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    class StableTopkTAL(tal.TaskAlignedAssigner):
        def select_topk_candidates(self, metrics, topk_mask=None):
            k = min(self.topk, metrics.shape[-1])
            topk_idxs = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., :k]
            if topk_mask is None:
                topk_mask = (metrics.gather(-1, topk_idxs).max(-1, keepdim=True)[0] > self.eps).expand_as(topk_idxs)
            topk_idxs = topk_idxs.masked_fill(~topk_mask, 0)
            count = torch.zeros(metrics.shape, dtype=torch.int8)
            count.scatter_add_(-1, topk_idxs, torch.ones_like(topk_idxs, dtype=torch.int8))
            count.masked_fill_(count > 1, 0)
            return count

    def make_anchors(sizes, strides):
        feats = [torch.zeros(1, 1, h, w, dtype=torch.float64) for h, w in sizes]
        p, st = tal.make_anchors(feats, torch.tensor(strides, dtype=torch.float64), 0.5)
        return p.numpy(), st.numpy()

    def dfl_decode(z, ap, st):
        r = z.shape[-1] // 4
        box = T(z).permute(0, 2, 1)                                    # (B, 4 R, N): Detect's layout
        dfl = DFL(r).to(box.dtype) if r > 1 else torch.nn.Identity()
        with torch.no_grad():
            out = tal.dist2bbox(dfl(box), T(ap).T.unsqueeze(0), xywh=True, dim=1) * T(st).T
        return out.numpy().transpose(0, 2, 1)

    def assign(ps, pb, ap, gl, gb, gm, *, strides, topk, alpha, beta):
        a = StableTopkTAL(topk=topk, num_classes=ps.shape[-1], alpha=alpha, beta=beta, stride=list(strides))
        out = a(T(ps), T(pb), T(ap), T(gl[..., None].astype(ps.dtype)), T(gb.astype(ps.dtype)),
                T(gm[..., None].astype(ps.dtype)))
        return tuple(o.numpy() for o in out)

    def nms(p, conf, iou):
        return [r.numpy() for r in unms.non_max_suppression(T(p), conf, iou)]

    def dfl_loss(z, y, dloss=None):
        zt = T(z).clone().requires_grad_(dloss is not None)
        out = uloss.DFLoss(z.shape[-1])(zt, T(y).clone().view(-1, 1)).view(-1)   # one distribution per row
        if dloss is None:
            return out.detach().numpy()
        (out * T(dloss)).sum().backward()
        return zt.grad.numpy()

    def vfl(z, q, lab, dloss=None):
        # VarifocalLoss reduces (mean over axis 1, then sum): one element per call gives the elementwise loss
        crit = uloss.VarifocalLoss()
        out = np.zeros(z.shape)
        for idx in np.ndindex(z.shape):
            zt = T(np.asarray(z[idx]).reshape(1, 1)).clone().requires_grad_(dloss is not None)
            v = crit(zt, T(np.asarray(q[idx], z.dtype).reshape(1, 1)), T(np.asarray(lab[idx], z.dtype).reshape(1, 1)))
            if dloss is None:
                out[idx] = float(v)
            else:
                v.backward()
                out[idx] = float(zt.grad) * float(dloss[idx])
        return out

    return {
        "make_anchors": dict(fn=make_anchors),
        "dfl_decode": dict(fn=dfl_decode),
        "task_aligned_assign": dict(fn=assign),
        "yolo_nms": dict(fn=nms),
        "distribution_focal_loss": dict(fn=dfl_loss, grad=lambda z, y, d: dfl_loss(z, y, d)),
        # ultralytics computes the BCE in float32 (pred_score.float()): float32 cases only
        "varifocal_loss": dict(fn=vfl, grad=lambda z, q, lab, d: vfl(z, q, lab, d), dtypes=(np.float32,)),
    }


TARGETS = {
    "torchvision": (("torch", "torchvision"), _torchvision_adapters),
    "onnxruntime": (("onnx", "onnxruntime"), lambda: _onnx_adapters("onnxruntime")),
    "onnx-reference": (("onnx",), lambda: _onnx_adapters("onnx-reference")),
    "ultralytics": (("torch", "torchvision", "ultralytics"), _ultralytics_adapters),
}
# the setup.cfg extra that installs each target's packages
TARGET_EXTRAS = {"torchvision": "torch", "onnxruntime": "onnx", "onnx-reference": "onnx", "ultralytics": "yolo"}
#: ops whose check takes a `convention` (the rest compare with one fixed profile), with the default
#: used when the command line leaves --convention at "torchvision"
_CONVENTION_OPS = {op: "torchvision" for op in ("nms", "batched_nms", "box_iou", "generalized_box_iou", "match",
                                                 "encode_boxes", "decode_boxes", "anchors")}
_CONVENTION_OPS.update({"task_aligned_assign": "ultralytics", "yolo_nms": "ultralytics"})
_CONVENTION_OPS.update({op: "torchvision" for op in ("roi_align", "assign_roi_levels", "filter_proposals")})
#: ops whose check also compares a gradient (`--grad`)
_GRAD_OPS = ("focal_loss", "relu", "distribution_focal_loss", "varifocal_loss", "quality_focal_loss")


# --- RoI operators, FPN levels, proposal selection (issue 14): adapters chained onto the targets above ---

def _torchvision_roi_adapters():
    """torchvision's ``ops.roi_align`` / ``ops.roi_pool``, ``poolers.LevelMapper`` (P2-P5) and
    ``RegionProposalNetwork.filter_proposals`` (test mode, its default counts) in refdet's signatures."""
    import torch
    import torchvision
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    from torchvision.ops.poolers import LevelMapper

    torch.set_num_threads(1)
    ops = torchvision.ops

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
        return ops.roi_align(T(x), T(rois), output_size, spatial_scale, sampling_ratio, aligned).numpy()

    def roi_pool(x, rois, output_size, spatial_scale):
        return ops.roi_pool(T(x), T(rois), output_size, spatial_scale).numpy()

    mapper = LevelMapper(2, 5)

    def levels(boxes):
        return mapper([T(boxes)]).numpy()

    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, 256, 0.5,
                                dict(training=2000, testing=1000), dict(training=2000, testing=1000), 0.7,
                                score_thresh=0.0).eval()

    def proposals(p, o, image_sizes, counts):
        with torch.no_grad():
            b, s = rpn.filter_proposals(T(p), T(o), [tuple(v) for v in image_sizes], list(counts))
        return [v.numpy() for v in b], [v.numpy() for v in s]

    return {
        "roi_align": dict(fn=roi_align),
        "roi_pool": dict(fn=roi_pool),
        "assign_roi_levels": dict(fn=levels),
        "filter_proposals": dict(fn=proposals),
    }


def _onnx_roi_adapters(kind):
    """ONNX ``RoiAlign`` (opset 19: ``coordinate_transformation_mode`` half_pixel for ``aligned=True``,
    output_half_pixel for ``aligned=False``; ``sampling_ratio`` 0 = adaptive) run by ``kind``."""
    run, _, dtypes = _onnx_node_runner(kind)

    def roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
        attrs = dict(output_height=int(output_size[0]), output_width=int(output_size[1]),
                     sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale), mode="avg",
                     coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
        return run("RoiAlign", [("X", x), ("rois", np.ascontiguousarray(rois[:, 1:])),
                                ("batch_indices", rois[:, 0].astype(np.int64))], attrs, dtypes[x.dtype])

    # the float attribute spatial_scale is float32 in the model: only scales exact in float32 compare
    return {"roi_align": dict(fn=roi_align, convention="onnx", spatial_scales=(1.0, 0.5, 0.25, 0.125))}


def _chain_adapters(first, second):
    return lambda: {**first(), **second()}


TARGETS["torchvision"] = (TARGETS["torchvision"][0],
                          _chain_adapters(TARGETS["torchvision"][1], _torchvision_roi_adapters))
TARGETS["onnxruntime"] = (TARGETS["onnxruntime"][0],
                          _chain_adapters(TARGETS["onnxruntime"][1], lambda: _onnx_roi_adapters("onnxruntime")))
TARGETS["onnx-reference"] = (TARGETS["onnx-reference"][0],
                             _chain_adapters(TARGETS["onnx-reference"][1],
                                             lambda: _onnx_roi_adapters("onnx-reference")))


def _installed(modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


# ---------------------------------------------------------------------------------------------------
# rows and progress
# ---------------------------------------------------------------------------------------------------

def _row(target, report):
    d = report.as_dict()
    d["target"] = target
    return d


def run_target(target, *, ops=None, n_cases=50, seed=0, progress=None):
    """Run the conformance checks of one backend target; returns a list of row dicts.

    Parameters
    ----------
    target : {"torchvision", "onnxruntime", "onnx-reference"}
    ops : iterable of str, optional
        Restrict to these op names.
    n_cases, seed : int
        Hypothesis cases per op and their seed.
    progress : callable, optional
        ``progress(text)``.
    """
    from refdet.testing.conformance import CHECKS

    if target not in TARGETS:
        raise ValueError(f"`target` must be {', '.join(TARGETS)}, self or module:callable; got {target!r}")
    mods, factory = TARGETS[target]
    if not _installed(mods):
        missing = [m for m in mods if not _installed((m,))]
        raise ValueError(f"target {target!r} needs {', '.join(missing)}, which is not installed: "
                         f"pip install 'refdet[{TARGET_EXTRAS[target]}]'")
    adapters = factory()
    unknown = [o for o in (ops or ()) if o not in adapters]
    if unknown:
        raise ValueError(f"target {target!r} does not provide {', '.join(unknown)} (it provides "
                         f"{', '.join(adapters)})")
    rows = []
    for op, spec in adapters.items():
        if ops and op not in ops:
            continue
        spec = dict(spec)
        cb = None if progress is None else (lambda rep, op=op: progress(f"{target} {op}: {rep.cases} cases, "
                                                                           f"{rep.cases - rep.agreeing} disagree"))
        report = CHECKS[op](spec.pop("fn"), **spec, n_cases=n_cases, seed=seed, raise_on_failure=False, progress=cb)
        rows.append(_row(target, report))
    return rows


def _load_callable(spec, what="TARGET"):
    if ":" not in spec:
        raise ValueError(f"`{what}` must be torchvision, onnxruntime, onnx-reference, ultralytics, self or "
                         f"module:callable; "
                         f"got {spec!r}")
    mod, _, name = spec.partition(":")
    # The console script's sys.path starts with its own bin/ folder, not the current directory (as
    # `python -m refdet` would): look in the current directory too, as users expect of a module path.
    import os
    import sys
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        obj = importlib.import_module(mod)
    except ImportError as exc:
        raise ValueError(f"`{what}`: cannot import module {mod!r}: {exc}") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"`{what}`: module {mod!r} has no attribute {name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"`{what}`: {spec!r} is not callable")
    return obj


def run_callable(spec, op, *, convention="torchvision", grad=None, n_cases=50, seed=0, progress=None):
    """Run the conformance check of ``op`` on the user's ``module:callable``; returns one row."""
    from refdet.testing.conformance import CHECKS

    if op not in CHECKS:
        raise ValueError(f"`--op` must be one of {', '.join(CHECKS)}; got {op!r}")
    fn = _load_callable(spec)
    kw = {}
    if op in _CONVENTION_OPS:
        kw["convention"] = _CONVENTION_OPS[op] if convention == "torchvision" else convention
    if grad is not None:
        if op not in _GRAD_OPS:
            raise ValueError(f"`--grad` applies to {', '.join(_GRAD_OPS)}; got --op {op}")
        kw["grad"] = _load_callable(grad, "--grad")
    cb = None if progress is None else (lambda rep: progress(f"{spec} {op}: {rep.cases} cases, "
                                                             f"{rep.cases - rep.agreeing} disagree"))
    report = CHECKS[op](fn, **kw, n_cases=n_cases, seed=seed, raise_on_failure=False, progress=cb)
    return _row(spec, report)


# ---------------------------------------------------------------------------------------------------
# self-check: every forward/backward pair gradient-checked, invariants
# ---------------------------------------------------------------------------------------------------

#: pairs whose backward is deliberately not the derivative of the forward (reason shown in the table)
GRADCHECK_EXEMPT = {
    "fake_quant_forward": "straight-through estimator: the backward is by design not the derivative of the "
                          "piecewise-constant forward (tested against torch's fake_quantize in tests/test_quant.py)",
}

_REGISTERED = False


def _register_selfcheck_cases():
    """Gradient-check cases for every non-layer pair (the layers register theirs in refdet.testing.gradcheck)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from refdet import box_coder as BC
    from refdet import detector as D
    from refdet import fpn as FP
    from refdet import heads as H
    from refdet import losses as L
    from refdet.testing.gradcheck import register_gradcheck as reg

    small = dict(max_elements=12, rtol=1e-5, atol=1e-7)

    def boxes(rng, n):
        xy = rng.uniform(0, 10, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, 6, (n, 2))], 1)

    def logits_targets(r):
        x = r.standard_normal((4, 3)) * 3
        return x, (r.random((4, 3)) < 0.4).astype(float)

    reg("decode_boxes", BC.decode_boxes_forward, BC.decode_boxes_backward,
        lambda r: ((r.normal(0, 0.5, (5, 4)), boxes(r, 5)), {}), wrt=["deltas"])
    reg("bce_with_logits", L.bce_with_logits_forward, L.bce_with_logits_backward,
        lambda r: (logits_targets(r), {}), wrt=["logits"])
    reg("sigmoid_focal_loss", L.sigmoid_focal_loss_forward, L.sigmoid_focal_loss_backward,
        lambda r: (logits_targets(r), {"reduction": "sum"}), wrt=["logits"])

    def labelled(r):
        x = r.standard_normal((5, 4)) * 2
        y = r.integers(0, 4, 5)
        y[1] = -1
        return (x, y), {}
    reg("softmax_cross_entropy", L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, labelled)
    reg("softmax_focal_loss", L.softmax_focal_loss_forward, L.softmax_focal_loss_backward, labelled)

    def regression(beta):
        def make(r):
            p = r.standard_normal((4, 4))
            t = p + r.choice([-1, 1], (4, 4)) * r.uniform(0.05, 0.3, (4, 4))   # |d| away from 0 and beta
            return (p, t), ({"beta": beta} if beta is not None else {"reduction": "sum"})
        return make
    reg("smooth_l1", L.smooth_l1_forward, L.smooth_l1_backward, regression(1.0))
    reg("l1", L.l1_forward, L.l1_backward, regression(None))
    for kind in ("giou", "diou"):
        reg(f"{kind}_loss", getattr(L, f"{kind}_loss_forward"), getattr(L, f"{kind}_loss_backward"),
            lambda r: ((boxes(r, 6), boxes(r, 6)), {"reduction": "mean", "eps": 1e-3}))

    def ciou_frozen(pred_boxes, target_boxes, **kw):
        # CIoU's alpha is a constant in the backward pass (computed under no_grad): freeze it at the
        # point of evaluation so that the central differences see the same function
        loss, c = L.ciou_loss_forward(pred_boxes, target_boxes, **{**kw, "reduction": "none"})
        alpha0 = ciou_frozen.alpha0
        return loss + (alpha0 - c.iou.alpha) * c.iou.v, c

    def ciou_make(r):
        p, g = boxes(r, 5), boxes(r, 5)
        ciou_frozen.alpha0 = L.ciou_loss_forward(p, g, eps=1e-3)[1].iou.alpha
        return (p, g), {"eps": 1e-3}
    reg("ciou_loss (alpha frozen)", ciou_frozen, L.ciou_loss_backward, ciou_make)

    from refdet import iou as IO
    for kind in ("box_iou", "generalized_box_iou", "distance_box_iou"):
        reg(f"{kind}_paired", getattr(IO, f"{kind}_paired_forward"), getattr(IO, f"{kind}_paired_backward"),
            lambda r: ((boxes(r, 6), boxes(r, 6)), {}))

    def ciou_paired_frozen(boxes1, boxes2, **kw):
        value, c = IO.complete_box_iou_paired_forward(boxes1, boxes2, **kw)
        return value - (ciou_paired_frozen.alpha0 - c.alpha) * c.v, c      # alpha held at alpha0

    def ciou_paired_make(r):
        p, g = boxes(r, 5), boxes(r, 5)
        ciou_paired_frozen.alpha0 = IO.complete_box_iou_paired_forward(p, g)[1].alpha
        return (p, g), {}
    reg("complete_box_iou_paired (alpha frozen)", ciou_paired_frozen, IO.complete_box_iou_paired_backward,
        ciou_paired_make)

    def composed(kind):
        def make(r):
            B, N, K = 2, 6, 3
            td = r.standard_normal((B, N, 4))
            dl = td + r.choice([-1, 1], (B, N, 4)) * r.uniform(0.2, 0.8, (B, N, 4))
            if kind == "rpn":
                return (r.standard_normal((B, N)), dl, L.LossTargets(r.integers(-1, 2, (B, N)), td)), {}
            if kind == "retinanet":
                return (r.standard_normal((B, N, K)) * 2, dl, L.LossTargets(r.integers(-1, K + 1, (B, N)), td)), {}
            lab = np.where(r.random((B, N)) < 0.3, r.integers(1, K, (B, N)), 0)
            lab[:, 0] = 1
            return (r.standard_normal((B, N, K)) * 2, dl, L.LossTargets(lab, td)), {}
        return make
    reg("rpn_loss", L.rpn_loss_forward, L.rpn_loss_backward, composed("rpn"), wrt=["objectness", "deltas"])
    reg("retinanet_loss", L.retinanet_loss_forward, L.retinanet_loss_backward, composed("retinanet"),
        wrt=["cls_logits", "box_deltas"])
    reg("multibox_loss", L.multibox_loss_forward, L.multibox_loss_backward, composed("multibox"),
        wrt=["conf_logits", "loc_deltas"])

    def jitter(p, r):
        # move away from the initialisation (zero biases put ReLU inputs on the kink)
        return {k: v + 0.3 * r.standard_normal(v.shape) for k, v in p.items()}
    reg("rpn_head", H.rpn_head_forward, H.rpn_head_backward,
        lambda r: ((jitter(H.rpn_head_init(2, 2, rng=1), r), r.standard_normal((1, 2, 3, 3))), {}), **small)
    reg("retinanet_head", H.retinanet_head_forward, H.retinanet_head_backward,
        lambda r: ((jitter(H.retinanet_head_init(2, 2, 2, rng=1, num_convs=1), r),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 2, 2, 2))]), {}), **small)
    reg("ssd_head", H.ssd_head_forward, H.ssd_head_backward,
        lambda r: ((H.ssd_head_init([2, 2], [2, 1], 3, rng=1),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 2, 2, 1))]), {}), **small)
    reg("fpn", FP.fpn_forward, FP.fpn_backward,
        lambda r: ((jitter(FP.fpn_init([2, 3], 2, rng=1, extra_blocks="maxpool"), r),
                    [r.standard_normal((1, 2, 4, 4)), r.standard_normal((1, 3, 2, 2))]), {"extra_blocks": "maxpool"}),
        **small)
    reg("backbone", D.backbone_forward, D.backbone_backward,
        lambda r: ((jitter(D.backbone_init((2, 2, 2, 2), in_channels=1, rng=1, dtype=np.float64), r),
                    r.standard_normal((1, 1, 16, 16))), {}), wrt=("params",), **small)  # no image gradient

    from refdet.heads import yolo as HY
    reg("yolo_head", HY.yolo_head_forward, HY.yolo_head_backward,
        lambda r: ((jitter(HY.yolo_head_init([2, 3], 2, reg_max=2, strides=[8, 16], image_size=32, rng=1), r),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 3, 2, 2))]), {}), **small)
    step = YOLOStepCase()
    reg(YOLOStepCase.NAME, step, step.backward, step.make, wrt=("params",), max_elements=3, rtol=1e-5, atol=1e-7)


class YOLOStepCase:
    """The whole YOLO training step as a forward/backward pair for the gradient-check registry.

    ``forward(params, images) -> (loss, grads)`` runs :meth:`refdet.detector.Detector.loss_and_grads`
    of a tiny float64 ``"yolo"`` detector (32 x 32 images, 2 per batch); ``backward(dloss, grads)``
    returns ``dloss * grads``. What the frameworks compute under ``no_grad`` is held at its value at
    the unperturbed parameters, so that the central differences see the function the backward pass
    differentiates: the task-aligned assignment (a fixed :class:`refdet.yolo.Assignment`) and CIoU's
    ``alpha`` (the checked loss is ``total + sum((alpha - alpha0) * d total / d alpha)``, equal to
    ``total`` at the point of evaluation, with the derivative the closed-form backward uses).
    """
    NAME = "yolo detector train step (fixed TAL targets, frozen CIoU alpha)"

    def __init__(self, det=None, targets=None):
        self.det, self.targets = det, targets
        self.assignment = self.alpha0 = None

    def make(self, rng):
        from refdet.detector import Detector

        if self.det is None:
            self.det = Detector("yolo", image_size=(32, 32), backbone_channels=(3, 4, 4, 4), fpn_channels=4,
                                reg_max=3)
            self.targets = [(np.array([[2.0, 3, 20, 25], [10, 12, 30, 28]]), np.array([1, 0])),
                            (np.array([[5.0, 6, 18, 14]]), np.array([0]))]
        params = self.det.init(rng=rng, dtype=np.float64)
        for part in params.values():                 # zero biases: move ReLU inputs off the kink
            for k, v in part.items():
                if k.endswith("bias"):
                    part[k] = v + 0.1 * rng.standard_normal(v.shape)
        images = rng.standard_normal((len(self.targets), 3) + self.det.image_size)
        _, _, trace = self.det.loss_and_grads(params, images, self.targets)
        self.assignment = trace.assignment
        self.alpha0 = None
        return (params, images), {}

    def _correction(self, cache):
        from refdet.yolo._gradcheck_cases import _v8_correction

        alphas, terms = _v8_correction(cache)
        if self.alpha0 is None:
            self.alpha0 = [a.copy() for a in alphas]
        return sum(float(((a - a0) * t).sum()) for a, a0, t in zip(alphas, self.alpha0, terms))

    def __call__(self, params, images):
        losses, grads, trace = self.det.loss_and_grads(params, images, self.targets, assignment=self.assignment)
        return np.asarray(losses["total"] + self._correction(trace.loss_cache)), grads

    @staticmethod
    def backward(dloss, grads):
        g = float(np.asarray(dloss))
        return {part: {k: v * g for k, v in d.items()} for part, d in grads.items()}, None


def _walk_pairs():
    """``{name: forward}`` for every public ``*_forward`` with a ``*_backward`` in refdet's modules."""
    import refdet

    pairs = {}
    for info in pkgutil.walk_packages(refdet.__path__, "refdet."):
        name = info.name
        if name.endswith("__main__") or ".testing" in name or name.endswith(".cli") or ".exchange" in name:
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:  # an optional module that does not import here is not refdet's self
            continue
        for attr in dir(mod):
            if not attr.endswith("_forward") or attr.startswith("_"):
                continue
            f = getattr(mod, attr)
            if callable(f) and getattr(f, "__module__", None) == name and \
                    callable(getattr(mod, attr[:-len("_forward")] + "_backward", None)):
                pairs[f"{name}.{attr}"] = f
    return pairs


def gradcheck_coverage():
    """``(covered, missing, exempt)``: forward names (module.function) with / without a gradient-check
    case in :func:`refdet.testing.gradcheck_all`'s registry, and the exempted ones."""
    from refdet.testing import gradcheck as G

    _register_selfcheck_cases()
    if not G._LAYER_CASES_REGISTERED:
        G._LAYER_CASES_REGISTERED = True
        G._register_layer_cases()
    forwards = {v[0] for v in G._CASES.values()}
    names = {getattr(v[0], "__name__", "") for v in G._CASES.values()}
    covered, missing, exempt = [], [], []
    for qual, f in _walk_pairs().items():
        short = qual.rsplit(".", 1)[1]
        if short in GRADCHECK_EXEMPT:
            exempt.append(qual)
        elif f in forwards or short in names or short.replace("_forward", "") in {n for n in G._CASES} \
                or any(k.startswith(short.replace("_forward", "")) for k in G._CASES):
            covered.append(qual)
        else:
            missing.append(qual)
    return covered, missing, exempt


def _invariant_rows(n_cases, seed, progress):
    from hypothesis import strategies as st

    import refdet
    from refdet.testing.compare_match import assert_sample_valid
    from refdet.testing.conformance import _Runner
    from refdet.testing import strategies as rst

    def iou_inv(case):
        a, b = case
        q = refdet.box_iou(a, b, convention="detectron2")          # guarded: no NaN
        qt = refdet.box_iou(b, a, convention="detectron2")
        if not np.array_equal(q, qt.T):
            return 1.0, "box_iou(a, b) != box_iou(b, a).T"
        if q.size and (q.min() < 0 or q.max() > 1):
            return 1.0, f"IoU outside [0, 1]: {q.min()}, {q.max()}"
        return 0.0, None

    def coder_inv(case):
        b, a = case
        back = refdet.decode_boxes(refdet.encode_boxes(b, a), a, clamp=1e6)
        tol = 1e-9 * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
        if not np.allclose(back, b, rtol=0, atol=tol):
            i = int(np.argmax(np.abs(back - b).max(axis=1)))
            return float(np.abs(back - b).max()), f"decode(encode(b, a), a) != b at row {i}: {back[i]} vs {b[i]}"
        return 0.0, None

    def nms_inv(case):
        b, s, thr = case
        keep = refdet.nms(b, s, thr)
        if len(set(keep.tolist())) != len(keep):
            return 1.0, "duplicate indices"
        if np.any(np.diff(s[keep]) > 0):
            return 1.0, "kept boxes not sorted by decreasing score"
        if not np.array_equal(keep[refdet.nms(b[keep], s[keep], thr)], keep):
            return 1.0, "NMS is not idempotent"
        q = refdet.box_iou(b[keep], b[keep])
        np.fill_diagonal(q, 0)
        if np.any(q > thr):
            return 1.0, "two kept boxes overlap above the threshold"
        return 0.0, None

    def match_inv(q):
        m = refdet.match(q)
        if not np.all((m >= -2) & (m < q.shape[0])):
            return 1.0, f"match codes outside -2..M-1: {np.unique(m)}"
        return 0.0, None

    def sampler_inv(labels):
        pos, neg = refdet.sample_balanced(labels, rng=seed)
        assert_sample_valid(labels, pos, neg)
        return 0.0, None

    @st.composite
    def pairs(draw):
        return draw(rst.box_sets(max_n=8)), draw(rst.box_sets(max_n=8))

    rows = []
    for name, fn, strat in (
            ("invariant: IoU symmetric, in [0, 1]", iou_inv, pairs()),
            ("invariant: decode(encode(b)) == b", coder_inv, rst.aligned_box_sets(max_n=8, min_size=0.5)),
            ("invariant: NMS unique, sorted, idempotent", nms_inv, rst.nms_inputs(max_n=20)),
            ("invariant: match codes", match_inv, rst.iou_matrices()),
            ("invariant: balanced sampler counts", sampler_inv, rst.sampler_labels(max_n=300))):
        cb = None if progress is None else (lambda rep, name=name: progress(f"self {name}: {rep.cases} cases"))
        r = _Runner(name, "violations", "-", fn, cb)
        rows.append(_row("self", r.run([], strat, n_cases, seed)))
    return rows


def self_check(*, n_cases=30, seed=0, progress=None):
    """refdet's self-check rows: every gradient check and every invariant (see the module docstring)."""
    from refdet.testing.gradcheck import gradcheck_all

    _register_selfcheck_cases()
    rows = []
    covered, missing, exempt = gradcheck_coverage()
    if progress:
        progress("self: gradient checks")
    results = gradcheck_all(rng=seed, out=(lambda line: progress("self gradcheck " + line)) if progress else None)
    for name, rep in results.items():
        w = rep.worst
        err = 0.0 if w is None else w.rel_error
        rows.append(dict(target="self", op=f"gradcheck: {name}", cases=1, agreeing=int(rep.ok), worst_error=err,
                         unit="rel", convention="-", ok=rep.ok, first_mismatch=None if rep.ok else str(rep)))
    for qual in missing:
        rows.append(dict(target="self", op=f"gradcheck: {qual}", cases=1, agreeing=0, worst_error=math.inf,
                         unit="", convention="-", ok=False,
                         first_mismatch=f"{qual} has a backward but no registered gradient-check case "
                                        "(refdet.testing.register_gradcheck)"))
    for qual in exempt:
        rows.append(dict(target="self", op=f"gradcheck: {qual}", cases=0, agreeing=0, worst_error=0.0, unit="",
                         convention="-", ok=True, skipped=GRADCHECK_EXEMPT[qual.rsplit('.', 1)[1]],
                         first_mismatch=None))
    rows += _invariant_rows(n_cases, seed, progress)
    rows += _roi_self_rows(n_cases, seed, progress)
    return rows


def _roi_self_rows(n_cases, seed, progress):
    """The RoI conformance checks run on refdet's readable loop references (refdet.reference.roi)."""
    from refdet.reference.roi import roi_align_reference, roi_level_reference, roi_pool_reference
    from refdet.testing.conformance import check_assign_roi_levels, check_roi_align, check_roi_pool

    def levels(boxes):
        return np.array([roi_level_reference(b, eps_outside=1e-6) for b in boxes], np.int64)

    rows = []
    for name, check, fn in (
            ("roi_align vs loop reference", check_roi_align,
             lambda x, r, size, scale, sr, al: roi_align_reference(x, r, size, scale, sr, al)),
            ("roi_pool vs loop reference", check_roi_pool,
             lambda x, r, size, scale: roi_pool_reference(x, r, size, scale)[0]),
            ("assign_roi_levels vs loop reference", check_assign_roi_levels, levels)):
        cb = None if progress is None else (lambda rep, name=name: progress(f"self {name}: {rep.cases} cases"))
        rep = check(fn, n_cases=n_cases, seed=seed, raise_on_failure=False, progress=cb)
        rep.op = name
        rows.append(_row("self", rep))
    return rows


# ---------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------

def _fmt_err(r):
    if r.get("skipped"):
        return "skipped"
    e = r["worst_error"]
    if e == 0:
        return "-"
    return f"{e:.3g} {r['unit']}".strip()


def format_table(rows):
    """The rows as a text table, then the full explanation of every disagreeing op."""
    head = ("target", "op", "cases", "agreeing", "worst error", "first mismatch")
    body = []
    for r in rows:
        first = r.get("skipped") or (r["first_mismatch"] or "").strip().splitlines()
        first = first if isinstance(first, str) else (first[0] if first else "")
        body.append((r["target"], r["op"], str(r["cases"]), str(r["agreeing"]), _fmt_err(r),
                     ("" if r["ok"] else "FAIL: ") + first[:70] if (first or not r["ok"]) else ""))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    out = [line, "-" * max(len(line), 100)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    bad = [r for r in rows if not r["ok"]]
    n_ok = len(rows) - len(bad)
    out.append("")
    out.append(f"{n_ok} of {len(rows)} checks agree" + ("" if not bad else f"; {len(bad)} disagree:"))
    for r in bad:
        out += ["", f"== {r['target']} / {r['op']} ==", r["first_mismatch"] or ""]
    return "\n".join(out)


def verify(target=None, *, op=None, convention="torchvision", grad=None, n_cases=None, seed=0, progress=None):
    """Run ``refdet verify`` programmatically; returns the list of row dicts (see :func:`format_table`)."""
    if target is not None and ":" in target:
        if op is None:
            raise ValueError("a module:callable target needs `--op` (which op it implements)")
        return [run_callable(target, op, convention=convention, grad=grad, n_cases=n_cases or 100, seed=seed,
                             progress=progress)]
    ops = [op] if op else None
    if target is None:
        rows = self_check(n_cases=n_cases or 30, seed=seed, progress=progress)
        for name, (mods, _) in TARGETS.items():
            if _installed(mods):
                rows += run_target(name, ops=ops, n_cases=n_cases or 30, seed=seed, progress=progress)
        return rows
    if target == "self":
        return self_check(n_cases=n_cases or 30, seed=seed, progress=progress)
    return run_target(target, ops=ops, n_cases=n_cases or 60, seed=seed, progress=progress)


# ---------------------------------------------------------------------------------------------------
# command line (wired into refdet.cli.COMMANDS)
# ---------------------------------------------------------------------------------------------------

def _verify_args(p):
    from refdet.apps.args import int_range
    p.add_argument("target", nargs="?", default=None,
                   help="torchvision | onnxruntime | onnx-reference | ultralytics | self | module:callable "
                        "(omit: self-check + every installed backend)")
    p.add_argument("--op", default=None, help="the op a module:callable implements (or restrict a backend to "
                   "one op): nms, batched_nms, box_iou, generalized_box_iou, match, encode_boxes, decode_boxes, "
                   "anchors, focal_loss, relu, conv2d, sample_balanced, roi_align, roi_pool, assign_roi_levels, "
                   "filter_proposals; YOLO: make_anchors, dfl_decode, "
                   "yolov3_decode, yolov5_decode, yolox_decode, task_aligned_assign, yolo_nms, "
                   "distribution_focal_loss, varifocal_loss, quality_focal_loss")
    p.add_argument("--convention", default="torchvision", help="refdet profile to compare a callable with "
                   "(task_aligned_assign: ultralytics | paper; yolo_nms: ultralytics | yolov5)")
    p.add_argument("--grad", default=None, help="module:callable computing the gradient (focal_loss, relu, "
                   "distribution_focal_loss, varifocal_loss, quality_focal_loss)")
    p.add_argument("--cases", type=int_range(0), default=None, help="hypothesis cases per op (default: 30 for "
                   "the full run, 60 for one backend, 100 for a callable)")
    p.add_argument("--seed", type=int_range(0), default=0, help="hypothesis seed (the same cases every run)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _verify_run(args):
    from refdet.apps.progress import Progress

    # the amount of work is not known in advance: the line shows the elapsed time and the latest check
    with Progress(None, "verify", unit="checks", enabled=not args.quiet) as prog:
        rows = verify(args.target, op=args.op, convention=args.convention, grad=args.grad, n_cases=args.cases,
                      seed=args.seed, progress=prog)
    if args.json:
        def plain(v):   # JSON has no inf / NaN: write them as strings
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            return v
        clean = [{k: plain(v) for k, v in r.items()} for r in rows]
        print(json.dumps({"ok": all(r["ok"] for r in rows), "rows": clean}, indent=2))
    else:
        print(format_table(rows))
    return 0 if all(r["ok"] for r in rows) else 1
