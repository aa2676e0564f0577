"""refdet: a framework-free NumPy reference implementation of object-detection internals.

Every public function of the modules listed in ``_PUBLIC_MODULES`` is importable from ``refdet``
directly (``from refdet import box_iou``) and from its module (``from refdet.iou import box_iou``).
"""
import importlib as _importlib

__version__ = "0.1.0"

# One line per module; each module's ``__all__`` is re-exported here.
_PUBLIC_MODULES = [
    "quant",
    "layers",
    "boxes",
    "eval",
    "iou",
    "box_coder",
    "anchors",
    "matcher",
    "sampler",
    "targets",
    "losses",
    "nms",
    "fpn",
    "heads",
    "quant_head",
    "roi",
    "proposals",
    "roi_heads",
]

__all__ = []
for _name in _PUBLIC_MODULES:
    _mod = _importlib.import_module(f"refdet.{_name}")
    for _sym in _mod.__all__:
        globals()[_sym] = getattr(_mod, _sym)
        __all__.append(_sym)
del _name, _mod, _sym

from refdet import conventions  # noqa: E402,F401
