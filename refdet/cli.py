"""The ``refdet`` command line (also ``python -m refdet``). Thin: each command lives in its module.

    refdet demo            the whole pipeline on synthetic data (the README's main command)
                           options: --model retinanet|rpn|ssd, --seed, --steps, --batch, --out,
                           --no-plots, --show-reference, --quantize
    refdet anchors         teaching: cell anchors, anchors per level, head output shapes
                           (refdet anchors retinanet, or --preset retinanet; --show-reference)
    refdet describe OP     what each convention profile sets for an op
    refdet gradcheck       gradient-check every registered backward pass
    refdet verify, quantize, export, verify-export, eval   (see `refdet COMMAND --help`)

Errors are one line on stderr, never a traceback: ``refdet demo: error: argument --batch: must be an
integer in 1..512; got 0``. Exit status 0 success, 1 a disagreement, 2 a usage error (bad option,
missing file, missing optional package: the line names the extra to install), 3 an internal error
(``REFDET_TRACEBACK=1`` shows its traceback), 130 interrupted. Long commands show a progress line
on stderr (:mod:`refdet.apps.progress`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from refdet.apps.args import extra_for, int_range, missing_package_message

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
    p.add_argument("--seed", type=int_range(0), default=0, help="seed of the inputs and upstream gradients")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _gradcheck_run(args):
    from refdet.apps.progress import Progress
    from refdet.testing.gradcheck import gradcheck_all, gradcheck_names
    from refdet.verify import _register_selfcheck_cases
    _register_selfcheck_cases()  # the losses, heads, FPN, box coder and detector cases
    known = gradcheck_names()
    unknown = [n for n in args.names if not any(n in k for k in known)]
    if unknown:
        raise ValueError(f"no gradient-check case matches {', '.join(repr(u) for u in unknown)}; "
                         f"the cases are: {', '.join(known)}")
    n = sum(1 for k in known if not args.names or any(s in k for s in args.names))
    # one result line per case on stdout; the progress line (stderr) says how far and how long
    with Progress(n, "gradcheck", unit="cases", enabled=not args.quiet) as bar:
        reports = gradcheck_all(args.names or None, rng=args.seed, out=bar.write,
                                progress=lambda i, total, name: bar.update(status=name))
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``refdet demo: error: argument --batch: ... (see refdet demo --help)``,
    exit status 2 (argparse's own usage block would make a usage error several lines)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    parser = _Parser(prog="refdet", description="refdet: a NumPy reference implementation "
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


def _one_line(text):
    """A message on one line: its non-empty lines joined with "; "."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return "; ".join(lines)


def _fail(command, message, code):
    """One line on stderr: ``refdet COMMAND: message`` (no prefix when ``command`` is None)."""
    prefix = "" if command is None else f"refdet {command}: "
    print(f"{prefix}{_one_line(message)}", file=sys.stderr)
    return code


def main(argv=None):
    """Run the ``refdet`` command line; returns the exit status.

    Exit status: 0 success; 1 a disagreement (``verify``, ``verify-export``, ``gradcheck``: something
    does not agree with refdet); 2 a usage error (a bad option, a missing or bad input file, a missing
    optional package); 3 an internal error (a bug: please report it; ``REFDET_TRACEBACK=1`` shows the
    traceback); 130 interrupted. Every failure is one line on stderr. A usage error found while parsing
    the options raises ``SystemExit(2)`` (as argparse does; the console script exits with it).
    """
    parser = build_parser()
    # a usage error argparse finds raises SystemExit(2) after its one line (--help, --version: 0)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        print("refdet: error: no command given (see `refdet --help`)", file=sys.stderr)
        return 2
    command = args.command
    mod, run = args._run
    traceback = os.environ.get("REFDET_TRACEBACK", "") not in ("", "0")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(command)
            return int(getattr(importlib.import_module(mod), run)(args) or 0)
    except KeyboardInterrupt:
        return _fail(command, "interrupted", 130)
    except BrokenPipeError:  # `refdet ... | head`: the reader left; stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except ImportError as exc:
        if traceback:
            raise
        name = getattr(exc, "name", None) or ""
        if name and extra_for(name) is not None:
            if isinstance(exc, ModuleNotFoundError) and not _installed(name.split(".")[0]):
                return _fail(None, missing_package_message(command, name), 2)
            # installed, but a part of it cannot be imported (a broken or too old install)
            return _fail(command, f"error: cannot import {name} ({exc}); reinstall it: "
                                  f"pip install --upgrade --force-reinstall 'refdet[{extra_for(name, command)}]'", 2)
        return _fail(command, f"internal error: {type(exc).__name__}: {exc} (REFDET_TRACEBACK=1 shows "
                              f"the traceback)", 3)
    except (ValueError, TypeError, OSError) as exc:
        if traceback:
            raise
        # OSError: a missing or unreadable file, a folder that cannot be created (str names the path)
        return _fail(command, f"error: {exc}", 2)
    except Exception as exc:  # a bug: one line, and how to see the traceback
        if traceback:
            raise
        return _fail(command, f"internal error: {type(exc).__name__}: {exc} (a bug: please report it; "
                              f"REFDET_TRACEBACK=1 shows the traceback)", 3)


def _installed(package):
    """Whether ``package`` can be found (False also when an import of it was blocked)."""
    import importlib.util
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _warning_printer(command):
    """``warnings.showwarning`` writing one line per warning: ``refdet CMD: warning: message``."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"refdet {command}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)
    return show


if __name__ == "__main__":
    sys.exit(main())
