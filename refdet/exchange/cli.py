"""``refdet export`` and ``refdet verify-export``: the command-line glue of :mod:`refdet.exchange`.

    refdet export --model retinanet-head --format onnx head.onnx        # random params from --seed
    refdet export --model fpn --format nnef --params fpn.npz fpn_nnef/  # params from an .npz
    refdet verify-export head.onnx      # onnxruntime, onnx.reference, OpenVINO, OpenCV dnn vs refdet, per output
    refdet verify-export fpn_nnef/      # nnef parser + nnef.Session vs refdet

``verify-export`` exits with 0 when every runtime agrees with refdet, 1 on any disagreement (or when no
runtime could run), 2 on a usage error or a bad file. Every failure is one line on stderr that says what
to change, never a traceback: a bad option (argparse's own message on one line), a missing file (checked
before any optional package is imported), a missing optional package with its extra (``refdet export``
needs onnx: ``pip install 'refdet[onnx]'``), a file refused by refdet's checks (a ``ValueError`` naming
the file, printed by :mod:`refdet.cli`), a runtime's own failure (naming the runtime and the file), a
model over its memory budget (``--max-bytes`` raises it).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys

from refdet.exchange import _models

_MODEL_CHOICES = [m.replace("_", "-") for m in _models.MODELS]


def _byte_count(text):
    """argparse type of ``--max-bytes``: an integer of bytes, optionally with K, M, G or T (powers of 1024)."""
    import argparse

    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"must be a number of bytes >= 1 such as 500M or 4G; got {text!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def _needs(package):
    """Import the optional ``package`` now, before any work: when it is missing, the ModuleNotFoundError
    reaches :func:`refdet.cli.main`, which names the extra to install in one line (exit 2)."""
    import importlib

    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise ModuleNotFoundError(f"No module named {package!r}", name=package) from exc


def _max_bytes_arg(p):
    p.add_argument("--max-bytes", type=_byte_count, default=None, metavar="N",
                   help="memory budget for what the file may make refdet allocate (default 64 MiB + 16 x the "
                        "file's size, at most 2 GiB); suffixes K, M, G")


def _count(low):
    """argparse type: an integer >= ``low``; argparse names the option (``argument --seed: ...``).

    (refdet.apps.args has the same for the application commands; the exchange layer sits below them.)
    """
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}; got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def _tolerance(text):
    """argparse type: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0; got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return v


def _ints(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers; got {text!r}") from None


def _export_args(p):
    p.add_argument("out", help="output: a .onnx file; for NNEF a folder, or a .nnef.tgz archive")
    p.add_argument("--model", required=True, choices=_MODEL_CHOICES)
    p.add_argument("--format", default="onnx", choices=["onnx", "nnef"])
    p.add_argument("--params", default=None, help="parameters from an .npz (np.savez; refdet/torchvision keys) "
                                                  "instead of random ones")
    p.add_argument("--seed", type=_count(0), default=0, help="seed of the random parameters")
    p.add_argument("--channels", type=_count(1), default=8, help="head channels C / FPN out channels F")
    p.add_argument("--in-channels", default="8,16,32", help="FPN input channels per level, e.g. 512,1024,2048")
    p.add_argument("--anchors", type=_count(1), default=3, help="anchors per location A")
    p.add_argument("--classes", type=_count(1), default=4,
                   help="classes K (RetinaNet head; yolo-postprocess: the class rows of its (4 + K, N) input)")
    p.add_argument("--num-convs", type=_count(0), default=4, help="RetinaNet tower depth")
    p.add_argument("--group-norm", action="store_true", help="RetinaNet v2 head (GroupNorm, 32 groups by default)")
    p.add_argument("--num-groups", type=_count(1), default=32)
    p.add_argument("--extra-blocks", default=None, choices=["p6p7", "maxpool", "none"])
    p.add_argument("--levels", type=_count(1), default=1, help="heads: number of input maps")
    p.add_argument("--opset", type=_count(1), default=19)
    p.add_argument("--batch", type=_count(1), default=1, help="NNEF: static batch size")
    p.add_argument("--height", type=_count(1), default=13, help="NNEF: static height of the first input")
    p.add_argument("--width", type=_count(1), default=9, help="NNEF: static width of the first input")
    p.add_argument("--iou-threshold", type=float, default=0.5)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--max-per-class", type=_count(0), default=100)
    p.add_argument("--quant-scheme", default="onnx", choices=["onnx", "tflite"],
                   help="quantized-retinanet-head: whose rounding rules quantize the weights and biases")
    p.add_argument("--activation-dtype", default="uint8", choices=["uint8", "int8"],
                   help="quantized-retinanet-head: activation type (uint8 is onnxruntime's default)")
    p.add_argument("--overwrite", action="store_true")
    _max_bytes_arg(p)


def quantize_for_export(params, *, seed=0, height=13, width=9, scheme="onnx", activation_dtype="uint8",
                        batches=4, rescale=False):
    """A :class:`refdet.quant.QuantizedHead` of ``params`` calibrated on random N(0, 1) features
    (``batches`` batches of 2 maps ``height x width``, from ``seed``): what ``refdet export --model
    quantized-retinanet-head`` exports without real calibration data. ``rescale``: first bring the
    stock-initialised weights (std 0.01) to std ``1 / sqrt(fan_in)``."""
    import numpy as np

    from refdet.quant import quantize_retinanet_head

    c = int(np.shape(params["classification_head.cls_logits.weight"])[1])
    rng = np.random.default_rng(seed)
    if rescale:
        # the stock N(0, 0.01) weights shrink activations ~100x per layer: the int32 bias of the last
        # conv (b / (s_x * s_w)) would overflow. N(0, 1 / fan_in) keeps every layer's range O(1).
        params = {k: (v / (0.01 * np.sqrt(np.prod(v.shape[1:])))).astype(np.float32) if np.ndim(v) == 4 else v
                  for k, v in params.items()}
    cal = [[rng.standard_normal((2, c, height, width)).astype(np.float32)] for _ in range(batches)]
    return quantize_retinanet_head(params, cal, scheme=scheme, activation_dtype=activation_dtype)


def random_params(model, *, seed=0, channels=8, in_channels=(8, 16, 32), anchors=3, classes=4, num_convs=4,
                  group_norm=False, extra_blocks=None):
    """Parameters from refdet's own initialisers (float32), for ``refdet export`` without ``--params``."""
    import numpy as np

    from refdet import fpn, heads

    model = _models.check_model(model)
    rng = np.random.default_rng(seed)
    if model in ("postprocess", "yolo_postprocess"):     # no weights: thresholds only (their defaults)
        return None
    if model == "rpn_head":
        return heads.rpn_head_init(channels, anchors, rng=rng, dtype=np.float32)
    head = heads.retinanet_head_init(channels, anchors, classes, rng=rng, num_convs=num_convs,
                                     norm="group_norm" if group_norm else None, dtype=np.float32)
    if model == "retinanet_head":
        return head
    fp = fpn.fpn_init(list(in_channels), channels, extra_blocks=extra_blocks or "p6p7", rng=rng, dtype=np.float32)
    if model == "fpn":
        return fp
    out = {_models.FPN_PREFIX + k: v for k, v in fp.items()}
    out.update({_models.HEAD_PREFIX + k: v for k, v in head.items()})
    return out


def _check_destination(out, fmt, overwrite):
    """Refuse an existing output before any work, in the command line's words (``--overwrite``)."""
    from refdet.exchange.nnef import _is_archive

    folder = fmt == "nnef" and not _is_archive(out)
    if folder and os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(f"the folder {out!r} is not empty (pass --overwrite to replace its model)")
    if folder and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out!r} exists and is not a folder (an NNEF model is a folder, or a .nnef.tgz archive)")
    if not folder and os.path.isdir(out):
        raise ValueError(f"{out!r} is a folder; give a file name (e.g. model.onnx)")
    if not folder and os.path.exists(out) and not overwrite:
        raise ValueError(f"{out!r} exists (pass --overwrite)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {out!r}: the folder {parent!r} does not exist")


def _export_run(args):
    try:
        return _export(args)
    except MemoryError:
        raise ValueError("ran out of memory (lower --height / --width / --channels, or free memory)") from None
    except OSError as exc:
        raise ValueError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None


def _export(args):
    from refdet.exchange.files import load_params_npz

    # input and output checked first: a missing file is reported even without onnx installed
    _check_destination(args.out, args.format, args.overwrite)
    if args.params and not os.path.isfile(args.params):
        raise ValueError(f"--params {args.params!r}: no such file")
    model = _models.check_model(args.model)
    base = "retinanet_head" if model == "quantized_retinanet_head" else model
    if args.format == "onnx":
        _needs("onnx")
    if args.params:
        params = load_params_npz(args.params, max_bytes=args.max_bytes)
    else:
        params = random_params(base, seed=args.seed, channels=args.channels, in_channels=_ints(args.in_channels),
                               anchors=args.anchors, classes=args.classes, num_convs=args.num_convs,
                               group_norm=args.group_norm, extra_blocks=args.extra_blocks)
    if model == "quantized_retinanet_head":
        params = quantize_for_export(params, seed=args.seed, height=args.height, width=args.width,
                                     scheme=args.quant_scheme, activation_dtype=args.activation_dtype,
                                     rescale=not args.params)
    common = dict(model=model, extra_blocks=args.extra_blocks, num_groups=args.num_groups)
    if model in ("rpn_head", "retinanet_head", "quantized_retinanet_head"):
        common["num_levels"] = args.levels
    if args.format == "onnx":
        import onnx

        from refdet.exchange.onnx import export_onnx

        if model == "yolo_postprocess":
            common["num_classes"] = args.classes         # the class columns of the (4 + K, N) input
        m = export_onnx(params, opset=args.opset, iou_threshold=args.iou_threshold,
                        score_threshold=args.score_threshold, max_output_boxes_per_class=args.max_per_class,
                        **common)
        onnx.save(m, args.out)
        print(f"wrote {args.out}: {model}, opset {args.opset}, {len(m.graph.node)} nodes, "
              f"{len(m.graph.initializer)} initializers; inputs {[i.name for i in m.graph.input]}, "
              f"outputs {[o.name for o in m.graph.output]}")
    else:
        from refdet.exchange.nnef import export_nnef

        from refdet.exchange.nnef import _is_archive

        export_nnef(params, args.out, batch=args.batch, height=args.height, width=args.width,
                    overwrite=args.overwrite, **common)
        if _is_archive(args.out):
            print(f"wrote {args.out}: an archive of graph.nnef, the tensor files and refdet.json ({model})")
        else:
            n = len([f for f in os.listdir(args.out) if f.endswith(".dat")])
            print(f"wrote {args.out}/: graph.nnef, {n} tensor files, refdet.json ({model})")
    return 0


def _verify_args(p):
    p.add_argument("path", help="an exported .onnx file, or an NNEF folder / .nnef.tgz archive")
    p.add_argument("--seed", type=_count(0), default=0, help="seed of the random inputs")
    p.add_argument("--batch", type=_count(1), default=1, help="ONNX: batch of the random inputs")
    p.add_argument("--height", type=_count(1), default=13, help="ONNX: height of the first input (odd on purpose)")
    p.add_argument("--width", type=_count(1), default=9, help="ONNX: width of the first input")
    p.add_argument("--atol", type=_tolerance, default=1e-5)
    p.add_argument("--rtol", type=_tolerance, default=1e-5, help="times the output's largest |value|")
    _max_bytes_arg(p)


def _verify_run(args):
    path = args.path
    nnef_model = os.path.isdir(path) or path.lower().endswith((".tgz", ".tar.gz", ".tar"))
    if not os.path.lexists(path):
        kind = "NNEF model" if nnef_model else "ONNX file"
        raise ValueError(f"{kind} {path!r} is missing (no such {'folder or archive' if nnef_model else 'file'})")
    _needs("nnef" if nnef_model else "onnx")
    try:
        if nnef_model:
            from refdet.exchange.nnef import verify_nnef

            report = verify_nnef(path, atol=args.atol, rtol=args.rtol, rng=args.seed, max_bytes=args.max_bytes)
            kind = "NNEF"
        else:
            from refdet.exchange.onnx import ALL_RUNTIMES, verify_onnx

            report = verify_onnx(path, atol=args.atol, rtol=args.rtol, rng=args.seed, batch=args.batch,
                                 height=args.height, width=args.width, max_bytes=args.max_bytes,
                                 runtimes=ALL_RUNTIMES)
            kind = "ONNX"
    except MemoryError:
        raise ValueError(f"ran out of memory verifying {path!r} within its budget (lower --max-bytes, --height, "
                         f"--width or --batch)") from None
    print(f"{kind} model {path}: each runtime's outputs vs refdet")
    print(report)
    if report.ok:
        print("all outputs agree")
        return 0
    bad = [r for r in report.rows if not r["ok"]]
    print("DISAGREEMENT" if report.rows else "no runtime could run")
    if report.rows:
        print(f"refdet verify-export: {len(bad)} of {len(report.rows)} outputs disagree with refdet for {path!r} "
              f"(the table above says where)", file=sys.stderr)
    else:
        print(f"refdet verify-export: no runtime could run {path!r}: {'; '.join(report.skipped.values())}",
              file=sys.stderr)
    return 1
