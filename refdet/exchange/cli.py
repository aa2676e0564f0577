"""``refdet export`` and ``refdet verify-export``: the command-line glue of :mod:`refdet.exchange`.

    refdet export --model retinanet-head --format onnx head.onnx        # random params from --seed
    refdet export --model fpn --format nnef --params fpn.npz fpn_nnef/  # params from an .npz
    refdet verify-export head.onnx      # onnxruntime and onnx.reference vs refdet, per output
    refdet verify-export fpn_nnef/      # nnef parser + nnef.Session vs refdet

``verify-export`` exits with 0 when every runtime agrees with refdet, 1 on any disagreement (or when no
runtime could run), 2 on a bad file (``ValueError``, printed by :mod:`refdet.cli`).
"""
from __future__ import annotations

import os

from refdet.exchange import _models

_MODEL_CHOICES = [m.replace("_", "-") for m in _models.MODELS]


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
    p.add_argument("--seed", type=int, default=0, help="seed of the random parameters")
    p.add_argument("--channels", type=int, default=8, help="head channels C / FPN out channels F")
    p.add_argument("--in-channels", default="8,16,32", help="FPN input channels per level, e.g. 512,1024,2048")
    p.add_argument("--anchors", type=int, default=3, help="anchors per location A")
    p.add_argument("--classes", type=int, default=4, help="RetinaNet classes K")
    p.add_argument("--num-convs", type=int, default=4, help="RetinaNet tower depth")
    p.add_argument("--group-norm", action="store_true", help="RetinaNet v2 head (GroupNorm, 32 groups by default)")
    p.add_argument("--num-groups", type=int, default=32)
    p.add_argument("--extra-blocks", default=None, choices=["p6p7", "maxpool", "none"])
    p.add_argument("--levels", type=int, default=1, help="heads: number of input maps")
    p.add_argument("--opset", type=int, default=19)
    p.add_argument("--batch", type=int, default=1, help="NNEF: static batch size")
    p.add_argument("--height", type=int, default=13, help="NNEF: static height of the first input")
    p.add_argument("--width", type=int, default=9, help="NNEF: static width of the first input")
    p.add_argument("--iou-threshold", type=float, default=0.5)
    p.add_argument("--score-threshold", type=float, default=0.05)
    p.add_argument("--max-per-class", type=int, default=100)
    p.add_argument("--quant-scheme", default="onnx", choices=["onnx", "tflite"],
                   help="quantized-retinanet-head: whose rounding rules quantize the weights and biases")
    p.add_argument("--activation-dtype", default="uint8", choices=["uint8", "int8"],
                   help="quantized-retinanet-head: activation type (uint8 is onnxruntime's default)")
    p.add_argument("--overwrite", action="store_true")


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
    if model in ("postprocess", "yolo_postprocess"):
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


def _export_run(args):
    from refdet.exchange.files import load_params_npz

    model = _models.check_model(args.model)
    base = "retinanet_head" if model == "quantized_retinanet_head" else model
    if args.params:
        params = load_params_npz(args.params)
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
    if model == "yolo_postprocess":
        common["num_classes"] = args.classes
    if args.format == "onnx":
        import onnx

        from refdet.exchange.onnx import export_onnx

        if os.path.exists(args.out) and not args.overwrite:
            raise ValueError(f"{args.out!r} exists (pass --overwrite)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--batch", type=int, default=1, help="ONNX: batch of the random inputs")
    p.add_argument("--height", type=int, default=13, help="ONNX: height of the first input (odd on purpose)")
    p.add_argument("--width", type=int, default=9, help="ONNX: width of the first input")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--rtol", type=float, default=1e-5, help="times the output's largest |value|")


def _verify_run(args):
    from refdet.exchange.nnef import _is_archive

    if os.path.isdir(args.path) or _is_archive(args.path):
        from refdet.exchange.nnef import verify_nnef

        report = verify_nnef(args.path, atol=args.atol, rtol=args.rtol, rng=args.seed)
        kind = "NNEF"
    else:
        from refdet.exchange.onnx import verify_onnx

        report = verify_onnx(args.path, atol=args.atol, rtol=args.rtol, rng=args.seed, batch=args.batch,
                             height=args.height, width=args.width)
        kind = "ONNX"
    print(f"{kind} model {args.path}: each runtime's outputs vs refdet")
    print(report)
    if report.ok:
        print("all outputs agree")
        return 0
    print("DISAGREEMENT" if report.rows else "no runtime could run")
    return 1
