"""Named convention profiles: what each framework does, op by op.

Every refdet op whose behaviour differs between frameworks takes ``convention=`` (default
``"torchvision"``). A profile only sets *defaults*: each knob it sets is also an explicit keyword of
the op, and an explicit keyword always wins::

    box_iou(a, b, convention="caffe")                  # +1 pixel widths, py-faster-rcnn guards
    box_iou(a, b, convention="caffe", plus_one=False)  # the caffe profile, but continuous widths

Each module registers the table of its ops when it is imported (:func:`register`);
:func:`describe` returns that table, so ``print(refdet.conventions.describe("nms"))`` shows what
every profile sets for NMS and where the setting comes from.

Profiles
--------
torchvision   torchvision 0.29 (the default everywhere)
detectron2    detectron2 (facebookresearch), 2026 main
mmdet         mmdetection v3 / mmcv
caffe         py-faster-rcnn / Detectron1 / Caffe SSD: the "+1 pixel" world
tf            TensorFlow Object Detection API and TF core kernels
onnx          the ONNX operator specification (onnx.reference and onnxruntime)
paper         what the paper's text says, where it differs from all code
"""
from __future__ import annotations

PROFILES = ("torchvision", "detectron2", "mmdet", "caffe", "tf", "onnx", "paper")

__all__ = ["PROFILES", "register", "resolve", "describe", "ops", "ConventionTable"]

_REGISTRY: dict = {}


class ConventionTable(dict):
    """``{profile: {knob: value}}`` for one op, printable as a table.

    Attributes
    ----------
    op : str
        The op's name.
    doc : str
        Where the settings come from (sources, issue numbers).
    knobs : dict
        ``{knob: meaning}`` for every knob any profile sets.
    """

    def __init__(self, op, profiles, knobs, doc):
        super().__init__(profiles)
        self.op = op
        self.knobs = dict(knobs)
        self.doc = doc

    def __str__(self):
        names = list(self.knobs)
        cols = ["profile"] + names
        rows = [[p] + [repr(self[p].get(k, "-")) for k in names] for p in self]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
        out = [f"{self.op}: what each convention profile sets", "", line, "-" * len(line)]
        out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        out += [""] + [f"{k}: {m}" for k, m in self.knobs.items()]
        if self.doc:
            out += ["", self.doc.strip()]
        return "\n".join(out)

    __repr__ = __str__


def register(op, profiles, *, knobs, doc=""):
    """Register the convention table of ``op``.

    Parameters
    ----------
    op : str
        Public name of the op (``"box_iou"``, ``"nms"``, ...).
    profiles : dict
        ``{profile: {knob: value}}``. Every profile must set every knob in ``knobs``; a profile may be
        left out only when the op does not exist in that framework (the op then raises for it).
    knobs : dict
        ``{knob: one-line meaning}``; the knob names are the op's keyword arguments.
    doc : str
        Sources for the settings.
    """
    for p, settings in profiles.items():
        if p not in PROFILES:
            raise ValueError(f"unknown profile {p!r} for op {op!r}")
        missing = set(knobs) - set(settings)
        extra = set(settings) - set(knobs)
        if missing or extra:
            raise ValueError(f"profile {p!r} of op {op!r}: missing {sorted(missing)}, unknown {sorted(extra)}")
    _REGISTRY[op] = ConventionTable(op, {p: dict(s) for p, s in profiles.items()}, knobs, doc)


def resolve(op, convention, **overrides):
    """The knob values for ``op`` under ``convention``, with explicit (non-None) keywords winning.

    Raises ``ValueError`` naming the convention and the profiles that exist for the op.
    """
    table = _REGISTRY.get(op)
    if table is None:
        raise KeyError(f"no convention table registered for op {op!r}")
    if not isinstance(convention, str):
        raise TypeError(f"`convention` must be a profile name (str); got {type(convention).__name__} {convention!r}")
    if convention not in table:
        raise ValueError(
            f"`convention` must be one of {', '.join(repr(p) for p in table)} for {op}; got {convention!r}")
    settings = dict(table[convention])
    for k, v in overrides.items():
        if k not in table.knobs:
            raise TypeError(f"{op}: {k!r} is not a convention knob (knobs: {', '.join(table.knobs)})")
        if v is not None:
            settings[k] = v
    return settings


def describe(op):
    """The :class:`ConventionTable` of ``op`` (print it for a table)."""
    import refdet  # noqa: F401  (importing refdet registers every module's tables)

    if op not in _REGISTRY:
        raise ValueError(f"`op` must be one of {', '.join(sorted(_REGISTRY))}; got {op!r}")
    return _REGISTRY[op]


def ops():
    """Names of every op with a convention table."""
    import refdet  # noqa: F401

    return sorted(_REGISTRY)
