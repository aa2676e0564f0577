"""What the ``refdet`` commands share on the command line: argument types that refuse a bad value at
parse time (naming the option and the allowed range), and the message for a missing optional package.

    p.add_argument("--batch", type=int_range(1, 512), ...)
    # refdet demo --batch 0  ->  refdet demo: error: argument --batch: must be an integer in 1..512; got 0

``missing_package_message("export", "onnx")`` -> ``"`refdet export` needs onnx: pip install 'refdet[onnx]'"``:
the extra that installs each optional package is in :data:`EXTRAS` (held equal to setup.cfg by a test).
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

__all__ = ["int_range", "float_range", "EXTRAS", "extra_for", "missing_package_message"]


def int_range(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``low..high`` (inclusive; ``high=None``: no upper bound).

    argparse prefixes the message with the option: ``argument --steps: must be an integer >= 1; got -5``.
    """
    want = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {want}; got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"must be an integer {want}; got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def float_range(low: float, high: Optional[float] = None, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number ``>= low`` (``> low`` with ``low_open``) and ``<= high``."""
    want = (f"> {low:g}" if low_open else f">= {low:g}") + ("" if high is None else f" and <= {high:g}")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {want}; got {text!r}") from None
        if not math.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"must be a finite number {want}; got {text}")
        return v

    parse.__name__ = "number"
    return parse


#: import name -> the setup.cfg extras that install it (the first is the one to suggest by default)
EXTRAS = {
    "matplotlib": ("plot", "demo"),
    "threadpoolctl": ("demo", "test"),
    "onnx": ("onnx",),
    "onnxruntime": ("onnx",),
    "nnef": ("nnef",),
    "nnef_tools": ("tflite",),
    "ai_edge_litert": ("tflite",),
    "torch": ("torch",),
    "torchvision": ("torch",),
    "pycocotools": ("coco",),
    "faster_coco_eval": ("coco",),
    "hypothesis": ("test",),
    "pytest": ("test",),
    "ultralytics": ("yolo",),
    "tensorflow_cpu": ("tensorflow",),     # the distribution tensorflow-cpu; its module is `tensorflow`
    "openvino": ("openvino",),
    "opencv_python_headless": ("opencv",),   # imported as cv2 (refdet verify opencv names the extra itself)
    "sphinx": ("docs",),
    "numpydoc": ("docs",),
    "sphinx_gallery": ("docs",),
    "pydata_sphinx_theme": ("docs",),
    "myst_parser": ("docs",),
}


def extra_for(module: str, command: Optional[str] = None) -> Optional[str]:
    """The extra to install for ``module`` (a dotted name is reduced to its package); the extra named
    after ``command`` when it has the module (``refdet demo`` -> ``demo``). None for an unknown one."""
    extras = EXTRAS.get(module.split(".")[0])
    if not extras:
        return None
    return command if command in extras else extras[0]


def missing_package_message(command: str, module: str, what: str = "") -> str:
    """One line: which command needs which package and how to install it.

    ``what`` narrows the command (``"figures"`` -> "`refdet demo` figures need matplotlib: ...").
    """
    top = module.split(".")[0]
    extra = extra_for(top, command)
    install = f"pip install 'refdet[{extra}]'" if extra else f"pip install {top}"
    subject = f"`refdet {command}`" + (f" {what}" if what else "")
    verb = "need" if what else "needs"
    return f"{subject} {verb} {top}, which is not installed: {install}"
