"""``refdet verify``: run another implementation against refdet and print what agrees.

Usage::

    refdet verify                         refdet's self-check + every installed backend
    refdet verify torchvision             torchvision's ops (nms, box_iou, Matcher, BoxCoder, ...)
    refdet verify onnxruntime             ONNX NonMaxSuppression / Relu / Conv run by onnxruntime
    refdet verify onnx-reference          the same nodes run by onnx.reference
    refdet verify ultralytics             ultralytics' YOLO ops (TAL, NMS, DFL, ...; the `yolo` extra)
    refdet verify tensorflow              TF's kernels (NMS V3/V5, CombinedNMS, ...; the `tensorflow` extra)
    refdet verify opencv                  cv2.dnn NMSBoxes / NMSBoxesBatched / softNMSBoxes / blobFromImage,
                                          SSD PriorBox / DetectionOutput layers
    refdet verify openvino                OpenVINO CPU NonMaxSuppression-9, PriorBox(Clustered), FakeQuantize,
                                          DetectionOutput, Proposal, ExperimentalDetectron*
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

# the backends' adapters and the self-check live beside this module; this one holds the registry of
# targets, runs them and prints the table
from refdet._verify_adapters import (_onnx_adapters, _onnx_node_runner, _onnx_roi_adapters,  # noqa: F401
                                     _torchvision_adapters, _torchvision_roi_adapters, _ultralytics_adapters)
from refdet._verify_selfcheck import (GRADCHECK_EXEMPT, YOLOStepCase, _register_selfcheck_cases,  # noqa: F401
                                      _roi_self_rows, _row, gradcheck_coverage, self_check)

__all__ = ["run_target", "self_check", "verify", "TARGETS", "gradcheck_coverage"]


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

def _chain_adapters(first, second):
    return lambda: {**first(), **second()}


TARGETS["torchvision"] = (TARGETS["torchvision"][0],
                          _chain_adapters(TARGETS["torchvision"][1], _torchvision_roi_adapters))
TARGETS["onnxruntime"] = (TARGETS["onnxruntime"][0],
                          _chain_adapters(TARGETS["onnxruntime"][1], lambda: _onnx_roi_adapters("onnxruntime")))
TARGETS["onnx-reference"] = (TARGETS["onnx-reference"][0],
                             _chain_adapters(TARGETS["onnx-reference"][1],
                                             lambda: _onnx_roi_adapters("onnx-reference")))


TARGETS["tensorflow"] = (("tensorflow",), lambda: importlib.import_module("refdet.runtimes.tensorflow").adapters())
TARGET_EXTRAS["tensorflow"] = "tensorflow"
_GRAD_OPS += ("tf_crop_and_resize", "tf_fake_quant", "tf_conv2d", "tf_sigmoid_cross_entropy")
# --- other runtimes (issue 15): refdet.runtimes.adapters, checks in refdet.testing.conformance_runtimes ---
from refdet.runtimes import adapters as _runtime_adapters  # noqa: E402  (NumPy only; runtimes imported lazily)

TARGETS["opencv"] = (("cv2",), _runtime_adapters.opencv_adapters)
from refdet.runtimes.openvino_detection_adapters import openvino_detection_adapters as _ov_det  # noqa: E402

TARGETS["openvino"] = (("openvino",), _chain_adapters(_runtime_adapters.openvino_adapters, _ov_det))
TARGET_EXTRAS.update(opencv="opencv", openvino="openvino")


def _installed(modules):
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


# ---------------------------------------------------------------------------------------------------
# rows and progress
# ---------------------------------------------------------------------------------------------------

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
        raise ValueError(f"refdet verify {target} needs {', '.join(missing)}: "
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
                   help="torchvision | onnxruntime | onnx-reference | ultralytics | tensorflow | opencv | openvino | "
                        "self | module:callable "
                        "(omit: self-check + every installed backend)")
    p.add_argument("--op", default=None, help="the op a module:callable implements (or restrict a backend to "
                   "one op): nms, batched_nms, box_iou, generalized_box_iou, match, encode_boxes, decode_boxes, "
                   "anchors, focal_loss, relu, conv2d, sample_balanced, roi_align, roi_pool, assign_roi_levels, "
                   "filter_proposals; YOLO: make_anchors, dfl_decode, "
                   "yolov3_decode, yolov5_decode, yolox_decode, task_aligned_assign, yolo_nms, "
                   "distribution_focal_loss, varifocal_loss, quality_focal_loss; runtimes (`refdet verify opencv` / "
                   "`openvino`): opencv_nms_boxes, opencv_nms_boxes_batched, opencv_soft_nms_boxes, "
                   "opencv_blob_from_image, opencv_prior_box, opencv_detection_output, openvino_nms, "
                   "openvino_prior_box, openvino_prior_box_clustered, "
                   "openvino_fake_quantize, openvino_roi_align, openvino_roi_pooling, openvino_interpolate, "
                   "openvino_detection_output, openvino_proposal, openvino_prior_grid_generator, "
                   "openvino_generate_proposals_single_image, openvino_detectron_detection_output, "
                   "openvino_detectron_roi_feature_extractor")
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
