"""The ``refdet`` command line (also ``python -m refdet``). Thin: each command lives in its module.

    refdet demo            the whole pipeline on synthetic data (the README's main command)
                           options: --model retinanet|rpn|ssd, --seed, --steps, --out
    refdet anchors         teaching: cell anchors, anchors per level, head output shapes
    refdet describe OP     what each convention profile sets for an op
    refdet gradcheck       gradient-check every registered backward pass
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, function that adds arguments, function that runs; returns an exit code)
COMMANDS = {
    "demo": ("refdet.demo", "_demo_args", "_demo_run",
             "train a small detector on synthetic data and show every stage (the main command)"),
    "gradcheck": ("refdet.cli", "_gradcheck_args", "_gradcheck_run",
                  "gradient-check every registered backward pass (float64 central differences)"),
    "describe": ("refdet.cli", "_describe_args", "_describe_run",
                 "print what each convention profile sets for an op"),
    "quantize": ("refdet.apps.quantize", "_quantize_args", "_quantize_run",
                 "train the demo RetinaNet briefly, quantize its head to int8 and report the accuracy change"),
    "anchors": ("refdet.walkthrough", "_anchors_args", "_anchors_run",
                "teaching: cell anchors, anchors per level and the head output shapes of a detector preset"),
    "verify": ("refdet.verify", "_verify_args", "_verify_run",
               "check torchvision / onnxruntime / onnx-reference / your own function against refdet"),
    "export": ("refdet.exchange.cli", "_export_args", "_export_run",
               "export a head / FPN / post-processing to ONNX or NNEF (random params or --params file.npz)"),
    "verify-export": ("refdet.exchange.cli", "_verify_args", "_verify_run",
                      "run an exported ONNX file or NNEF folder in every available runtime and compare with refdet"),
    "eval": ("refdet.apps.eval_cmd", "_eval_args", "_eval_run",
             "COCO-evaluate a results JSON against a ground-truth JSON (pycocotools' summary)"),
}


def _gradcheck_args(p):
    p.add_argument("names", nargs="*", help="only cases whose name contains one of these")
    p.add_argument("--seed", type=_nonnegative_int, default=0)


def _nonnegative_int(text):
    """argparse type: an int >= 0 (a seed, a count); the message names the value."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {v}")
    return v


def _gradcheck_run(args):
    from refdet.testing.gradcheck import gradcheck_all
    from refdet.verify import _register_selfcheck_cases
    _register_selfcheck_cases()  # the losses, heads, FPN, box coder and detector cases
    from refdet.testing.gradcheck import gradcheck_names
    known = gradcheck_names()
    unknown = [n for n in args.names if not any(n in k for k in known)]
    if unknown:
        raise ValueError(f"no gradient-check case matches {', '.join(repr(u) for u in unknown)}; "
                         f"the cases are: {', '.join(known)}")
    reports = gradcheck_all(args.names or None, rng=args.seed, out=print)
    bad = [n for n, r in reports.items() if not r.ok]
    print(f"{len(reports) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad or not reports else 0


def _describe_args(p):
    p.add_argument("op", nargs="?", help="op name (omit to list the ops)")


def _describe_run(args):
    from refdet import conventions
    if args.op is None:
        print("\n".join(conventions.ops()))
        return 0
    print(conventions.describe(args.op))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="refdet", description="refdet: a NumPy reference implementation "
                                     "of object-detection internals")
    from refdet import __version__
    parser.add_argument("--version", action="version", version=f"refdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (mod, add, run, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        m = importlib.import_module(mod)
        getattr(m, add)(p)
        p.set_defaults(_run=(mod, run))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    mod, run = args._run
    try:
        return int(getattr(importlib.import_module(mod), run)(args) or 0)
    except (ValueError, TypeError) as exc:
        print(f"refdet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
