"""Named convention profiles: what each framework does, op by op, as a declared schema.

Every refdet op whose behaviour differs between frameworks takes ``convention=`` (default
``"torchvision"``). A profile only sets *defaults*: each knob it sets is also an explicit keyword of
the op, and an explicit keyword always wins::

    box_iou(a, b, convention="caffe")                  # +1 pixel widths, py-faster-rcnn guards
    box_iou(a, b, convention="caffe", plus_one=False)  # the caffe profile, but continuous widths

Each module registers the table of its ops when it is imported (:func:`register`). A table declares
every knob as an :class:`Option`: its type, its allowed values, one line of meaning and its source::

    conventions.register("box_iou", {"torchvision": {"plus_one": False}, "caffe": {"plus_one": True}},
                         knobs={"plus_one": conventions.flag(
                             "add 1 to widths and heights (the legacy pixel convention)",
                             source="py-faster-rcnn lib/utils/cython_bbox.pyx")})

:func:`resolve` checks every value (the profile's and the caller's) against its declaration and
returns a frozen :class:`Profile`. Composite ops pass that object down (``rpn_targets`` resolves its
profile once and hands it to the matcher and the box coder) instead of re-resolving strings: a
:class:`Profile` is accepted wherever a convention name is. :func:`describe` returns the table, so
``print(refdet.conventions.describe("nms"))`` shows what every profile sets for NMS, what each knob
means and where the setting comes from; :func:`table_rst` renders the same table for docstrings and
the documentation site.

Profiles
--------
torchvision   torchvision 0.29 (the default everywhere)
detectron2    detectron2 (facebookresearch), 2026 main
mmdet         mmdetection v3 / mmcv
caffe         py-faster-rcnn / Detectron1 / Caffe SSD: the "+1 pixel" world
tf            TensorFlow Object Detection API and TF core kernels
onnx          the ONNX operator specification (onnx.reference and onnxruntime)
paper         what the paper's text says, where it differs from all code

The YOLO family (``refdet.yolo``) adds profiles for ops that exist only there (:data:`YOLO_PROFILES`):

ultralytics   the ultralytics package 8.x (YOLOv8 / YOLO11 / YOLO26 code paths)
yolov5        ultralytics/yolov5 (v7.0), also YOLOv7's copies of its utilities
yolox         Megvii-BaseDetection/YOLOX (main)
darknet       pjreddie/darknet and AlexeyAB/darknet (YOLOv2-v4)

Other runtimes (issue 15, :data:`RUNTIME_PROFILES`; their operators are in :mod:`refdet.runtimes`):

openvino      OpenVINO's CPU plugin (src/plugins/intel_cpu), where it differs from its reference
opencv        OpenCV dnn (modules/dnn, modules/imgproc/src/nms.cpp)
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterator, Optional, Tuple

PROFILES = ("torchvision", "detectron2", "mmdet", "caffe", "tf", "onnx", "paper")
#: Profiles of the YOLO family's own ops (refdet.yolo); an op may use these and PROFILES together.
YOLO_PROFILES = ("ultralytics", "yolov5", "yolox", "darknet")
#: Profiles of other runtimes (refdet.runtimes); an op may add them to its PROFILES.
RUNTIME_PROFILES = ("openvino", "opencv")

__all__ = ["PROFILES", "YOLO_PROFILES", "RUNTIME_PROFILES", "Option", "Profile", "ConventionTable", "flag", "choice", "number", "integer",
           "option", "register", "resolve", "describe", "ops", "table_rst", "documented"]

_REGISTRY: dict = {}

_KINDS = ("flag", "choice", "number", "integer", "any")


class Option:
    """The declaration of one convention knob.

    Parameters
    ----------
    kind : {"flag", "choice", "number", "integer", "any"}
        ``flag``: a bool. ``choice``: one of ``allowed`` (compared with ``==``, type-checked).
        ``number``: a real number in ``[low, high]`` (NaN refused). ``integer``: an int in
        ``[low, high]``. ``any``: a value checked by ``check`` only (tuples of sizes, weights, ...).
    meaning : str
        One line: what the knob does.
    source : str
        Where the frameworks' settings come from (file and function, paper section).
    allowed : tuple, optional
        The values a ``choice`` accepts.
    low, high : float, optional
        Inclusive bounds of a ``number`` or ``integer``.
    allow_none : bool
        Whether ``None`` is a meaningful value (e.g. "no clamp"). A ``None`` *override* always means
        "use the profile's value"; this flag is about the value a profile itself sets.
    check : callable, optional
        ``check(value) -> value`` raising ``TypeError``/``ValueError`` for a bad value (for ``any``,
        or an extra check after the kind's own). It may normalise (e.g. a list to a tuple).
    """

    __slots__ = ("kind", "meaning", "source", "allowed", "low", "high", "allow_none", "check", "allow_nan")

    def __init__(self, kind: str, meaning: str, *, source: str = "", allowed: Optional[tuple] = None,
                 low: Optional[float] = None, high: Optional[float] = None, allow_none: bool = False,
                 check: Optional[Callable[[Any], Any]] = None, allow_nan: bool = False):
        if kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {', '.join(_KINDS)}; got {kind!r}")
        if not isinstance(meaning, str) or not meaning.strip():
            raise ValueError("`meaning` must be a non-empty one-line string")
        if kind == "choice" and not allowed:
            raise ValueError("a choice option needs its `allowed` values")
        self.kind = kind
        self.meaning = meaning.strip()
        self.source = source.strip()
        self.allowed = tuple(allowed) if allowed is not None else None
        self.low = low
        self.high = high
        self.allow_none = bool(allow_none)
        self.check = check
        self.allow_nan = bool(allow_nan)

    def describe_values(self) -> str:
        """The allowed values in words (for tables and error messages)."""
        if self.kind == "flag":
            s = "True or False"
        elif self.kind == "choice":
            s = "one of " + ", ".join(repr(v) for v in self.allowed)
        elif self.kind in ("number", "integer"):
            what = "an integer" if self.kind == "integer" else "a number"
            if self.low is not None and self.high is not None:
                s = f"{what} in [{self.low}, {self.high}]"
            elif self.low is not None:
                s = f"{what} >= {self.low}"
            elif self.high is not None:
                s = f"{what} <= {self.high}"
            else:
                s = f"a finite {what[2:] if what.startswith('a ') else what[3:]}"
        elif self.kind == "legacy":
            s = "undeclared"
        else:
            s = "see the op's docstring"
        return s + (" or NaN" if self.allow_nan else "") + (" or None" if self.allow_none else "")

    def validate(self, value: Any, knob: str, op: str) -> Any:
        """``value`` checked (and normalised) for this option; raises naming ``knob`` and ``op``."""
        if value is None:
            if self.allow_none:
                return None
            raise ValueError(f"{op}: `{knob}` must be {self.describe_values()}; got None")
        if self.kind == "flag":
            # NumPy's bool is numpy.bool_ (NumPy 1) or numpy.bool (NumPy 2); no NumPy import here
            if not isinstance(value, bool) and not (type(value).__name__ in ("bool_", "bool")
                                                    and type(value).__module__ == "numpy"):
                raise TypeError(f"{op}: `{knob}` must be a bool; got {type(value).__name__} {value!r}")
            value = bool(value)
        elif self.kind == "choice":
            ok = False
            for a in self.allowed:
                # bool is an int: True must not pass for 1, nor 1 for True
                if type(a) is type(value) or (isinstance(a, str) and isinstance(value, str)) or (
                        isinstance(a, numbers.Real) and isinstance(value, numbers.Real)
                        and isinstance(a, bool) == isinstance(value, bool)):
                    try:
                        if a == value:
                            ok = True
                            value = a
                            break
                    except Exception:  # noqa: BLE001 (an exotic type's __eq__)
                        pass
            if not ok:
                raise ValueError(f"{op}: `{knob}` must be {self.describe_values()}; got {value!r}")
        elif self.kind in ("number", "integer"):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                what = "an int" if self.kind == "integer" else "a real number"
                raise TypeError(f"{op}: `{knob}` must be {what}; got {type(value).__name__} {value!r}")
            if self.kind == "integer":
                if not isinstance(value, numbers.Integral):
                    raise TypeError(f"{op}: `{knob}` must be an int; got {type(value).__name__} {value!r}")
                value = int(value)
            else:
                value = float(value)
                if math.isnan(value):
                    if self.allow_nan:
                        return value
                    raise ValueError(f"{op}: `{knob}` must be {self.describe_values()}; got nan")
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ValueError(f"{op}: `{knob}` must be {self.describe_values()}; got {value!r}")
            if self.kind == "number" and self.low is None and self.high is None and math.isinf(value):
                raise ValueError(f"{op}: `{knob}` must be finite; got {value!r}")
        if self.check is not None:
            value = self.check(value)
        return value

    def __repr__(self):
        return f"Option({self.kind!r}, {self.meaning!r}, values={self.describe_values()!r})"


def flag(meaning: str, *, source: str = "") -> Option:
    """A bool knob."""
    return Option("flag", meaning, source=source)


def choice(allowed, meaning: str, *, source: str = "", allow_none: bool = False) -> Option:
    """A knob taking one of ``allowed``."""
    return Option("choice", meaning, source=source, allowed=tuple(allowed), allow_none=allow_none)


def number(meaning: str, *, source: str = "", low: Optional[float] = None, high: Optional[float] = None,
           allow_none: bool = False, allow_nan: bool = False, check=None) -> Option:
    """A real-valued knob in ``[low, high]`` (inclusive; NaN refused unless ``allow_nan``, e.g. a
    reduction's value on an empty input, which torch defines as NaN)."""
    return Option("number", meaning, source=source, low=low, high=high, allow_none=allow_none,
                  allow_nan=allow_nan, check=check)


def integer(meaning: str, *, source: str = "", low: Optional[int] = None, high: Optional[int] = None,
            allow_none: bool = False) -> Option:
    """An int knob in ``[low, high]`` (inclusive)."""
    return Option("integer", meaning, source=source, low=low, high=high, allow_none=allow_none)


def option(meaning: str, *, check: Callable[[Any], Any], source: str = "", allow_none: bool = False) -> Option:
    """A knob of another shape (a tuple of weights, sizes, ...), validated by ``check(value)``."""
    return Option("any", meaning, source=source, check=check, allow_none=allow_none)


class Profile(Mapping):
    """The resolved, frozen knob values of one op under one convention.

    Read it as a mapping (``s["guard"]``, ``dict(s)``, ``**s``) or by attribute (``s.guard``).
    ``name`` is the convention profile it started from, ``op`` the op it was resolved for, and
    ``overridden`` the knobs the caller set explicitly. Pass it as ``convention=`` to another op:
    an op resolving a profile of its own name keeps every value; a profile of another op carries
    its convention name (``resolve("match", rpn_profile)`` is the matcher's table for that name).
    """

    __slots__ = ("_op", "_name", "_values", "_overridden")

    def __init__(self, op: str, name: str, values: dict, overridden: frozenset = frozenset()):
        object.__setattr__(self, "_op", op)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_overridden", frozenset(overridden))

    op = property(lambda self: self._op, doc="the op this profile was resolved for")
    name = property(lambda self: self._name, doc="the convention profile name it started from")
    overridden = property(lambda self: self._overridden, doc="knobs set explicitly by the caller")

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"{self._op} has no convention knob {key!r} "
                                 f"(knobs: {', '.join(self._values)})") from None

    def __setattr__(self, key, value):
        raise AttributeError("a Profile is frozen; use .replace(knob=value)")

    def __hash__(self):
        return hash((self._op, self._name, tuple(sorted((k, repr(v)) for k, v in self._values.items()))))

    def __eq__(self, other):
        if isinstance(other, Profile):
            return (self._op, self._name, self._values) == (other._op, other._name, other._values)
        return NotImplemented

    def replace(self, **overrides) -> "Profile":
        """A new profile with some knobs changed (validated like :func:`resolve`'s overrides)."""
        return resolve(self._op, self, **overrides)

    def __repr__(self):
        vals = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Profile({self._op!r}, {self._name!r}: {vals})"

    def __reduce__(self):
        return (Profile, (self._op, self._name, self._values, self._overridden))


class ConventionTable(dict):
    """``{profile: {knob: value}}`` for one op, printable as a table.

    Attributes
    ----------
    op : str
        The op's name.
    doc : str
        Where the settings come from (sources, issue numbers).
    knobs : dict
        ``{knob: meaning}`` for every knob any profile sets (the one-line meaning of each
        :class:`Option`).
    options : dict
        ``{knob: Option}``: the full declaration of every knob.
    """

    def __init__(self, op, profiles, options, doc):
        super().__init__(profiles)
        self.op = op
        self.options = dict(options)
        self.knobs = {k: o.meaning for k, o in self.options.items()}
        self.doc = doc

    def __str__(self):
        names = list(self.knobs)
        cols = ["profile"] + names
        rows = [[p] + [repr(self[p].get(k, "-")) for k in names] for p in self]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        line = "  ".join(c.ljust(w) for c, w in zip(cols, widths))
        out = [f"{self.op}: what each convention profile sets", "", line, "-" * len(line)]
        out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        out += [""]
        for k, o in self.options.items():
            out.append(f"{k}: {o.meaning} ({o.describe_values()})")
            if o.source:
                out.append(f"    source: {o.source}")
        if self.doc:
            out += ["", self.doc.strip()]
        return "\n".join(out)

    __repr__ = __str__


def _as_option(knob, decl, profiles, op):
    if isinstance(decl, Option):
        return decl
    if isinstance(decl, str):  # undeclared (legacy): a meaning only; tests/test_conventions.py refuses it
        o = Option("any", decl, allow_none=any(s.get(knob) is None for s in profiles.values()))
        o.kind = "legacy"
        return o
    raise TypeError(f"op {op!r}: knob {knob!r} must be declared as a conventions.Option "
                    f"(flag/choice/number/integer/option); got {type(decl).__name__} {decl!r}")


def register(op: str, profiles: dict, *, knobs: dict, doc: str = "") -> ConventionTable:
    """Register the convention table of ``op``.

    Parameters
    ----------
    op : str
        Public name of the op (``"box_iou"``, ``"nms"``, ...).
    profiles : dict
        ``{profile: {knob: value}}``. Every profile must set every knob in ``knobs``; a profile may be
        left out only when the op does not exist in that framework (the op then raises for it).
    knobs : dict
        ``{knob: Option}`` (from :func:`flag`, :func:`choice`, :func:`number`, :func:`integer`,
        :func:`option`); the knob names are the op's keyword arguments. Every profile's value is
        checked against its declaration here, at import time.
    doc : str
        Sources for the settings as a whole.
    """
    options = {k: _as_option(k, d, profiles, op) for k, d in knobs.items()}
    checked = {}
    for p, settings in profiles.items():
        if p not in PROFILES and p not in YOLO_PROFILES and p not in RUNTIME_PROFILES:
            raise ValueError(f"unknown profile {p!r} for op {op!r}")
        missing = set(options) - set(settings)
        extra = set(settings) - set(options)
        if missing or extra:
            raise ValueError(f"profile {p!r} of op {op!r}: missing {sorted(missing)}, unknown {sorted(extra)}")
        checked[p] = {k: options[k].validate(settings[k], k, f"{op} (profile {p!r})") if settings[k] is not None
                      else settings[k] for k in options}
        for k, v in checked[p].items():
            if v is None and not options[k].allow_none:
                raise ValueError(f"profile {p!r} of op {op!r} sets `{k}` to None, which its option does not allow")
    table = ConventionTable(op, checked, options, doc)
    _REGISTRY[op] = table
    return table


def resolve(op: str, convention, /, **overrides) -> Profile:
    """The knob values for ``op`` under ``convention``, with explicit (non-None) keywords winning.

    ``convention`` is a profile name or a :class:`Profile` (see there). Every override is checked
    against the knob's declaration: ``TypeError``/``ValueError`` naming the knob. An unknown
    convention raises ``ValueError`` naming the profiles that exist for the op.
    """
    table = _REGISTRY.get(op)
    if table is None:
        raise KeyError(f"no convention table registered for op {op!r}")
    base_overridden = frozenset()
    if isinstance(convention, Profile):
        if convention.op == op:
            name = convention.name
            settings = dict(convention)
            base_overridden = convention.overridden
        else:
            name = convention.name
            settings = None
    elif isinstance(convention, str):
        name = convention
        settings = None
    else:
        raise TypeError(f"`convention` must be a profile name (str) or a conventions.Profile; "
                        f"got {type(convention).__name__} {convention!r}")
    if name not in table:
        raise ValueError(
            f"`convention` must be one of {', '.join(repr(p) for p in table)} for {op}; got {name!r}")
    if settings is None:
        settings = dict(table[name])
    done = set(base_overridden)
    for k, v in overrides.items():
        if k not in table.options:
            raise TypeError(f"{op}: {k!r} is not a convention knob (knobs: {', '.join(table.options)})")
        if v is not None:
            settings[k] = table.options[k].validate(v, k, op)
            done.add(k)
    return Profile(op, name, settings, frozenset(done))


def describe(op: str) -> ConventionTable:
    """The :class:`ConventionTable` of ``op`` (print it for a table)."""
    import refdet  # noqa: F401  (importing refdet registers every module's tables)

    if op not in _REGISTRY:
        raise ValueError(f"`op` must be one of {', '.join(sorted(_REGISTRY))}; got {op!r}")
    return _REGISTRY[op]


def ops() -> list:
    """Names of every op with a convention table."""
    import refdet  # noqa: F401

    return sorted(_REGISTRY)


def table_rst(op: str, *, registry_only: bool = False) -> str:
    """The convention table of ``op`` as a numpydoc/reStructuredText section body.

    One line per knob (meaning, allowed values, source) and a grid of what each profile sets. Used
    by :func:`documented` for docstrings and by the documentation site.
    """
    table = _REGISTRY[op] if registry_only else describe(op)
    lines = []
    for k, o in table.options.items():
        lines.append(f"``{k}`` : {_rst_text(o.describe_values())}")
        lines.append(f"    {_rst_text(o.meaning)}")
        if o.source:
            lines.append(f"    *Source:* {_rst_text(o.source)}")
    names = list(table.options)
    cols = ["profile"] + names
    rows = [[p] + [repr(table[p][k]) for k in names] for p in table]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    sep = "  ".join("=" * w for w in widths)
    lines += ["", sep, "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip(), sep]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(sep)
    return "\n".join(lines)


def _rst_text(text: str) -> str:
    """Plain text made safe for reStructuredText: a ``*`` or ``|`` that could open emphasis or a
    substitution (``ops/*_loss.py``, ``|x|``) and a word ending in ``_`` (read as a hyperlink
    reference) are backslash-escaped; a ``*`` or ``|`` between spaces (``obj * cls``) is already
    literal and stays as it is."""
    text = re.sub(r"([*|])(?=\S)|(?<=\S)([*|])", lambda m: "\\" + (m.group(1) or m.group(2)), text)
    return re.sub(r"(?<=\w)_(?=[\s.,;:)]|$)", r"\\_", text)


def documented(op: str):
    """Decorator: append the generated convention table of ``op`` to the function's docstring.

    The table is registered before the function is defined (module order), so the docstring a reader
    sees in ``help()`` and on the documentation site is generated from the registry, never copied.
    """
    def deco(func):
        body = table_rst(op, registry_only=True)
        # the docstring's own indentation (4 spaces in a function; none where the compiler strips it)
        rest = [ln for ln in (func.__doc__ or "").splitlines()[1:] if ln.strip()]
        indent = min((ln[:len(ln) - len(ln.lstrip())] for ln in rest), key=len, default="")
        text = "\n".join(indent + ln if ln else "" for ln in body.splitlines())
        doc = (func.__doc__ or "").rstrip()
        func.__doc__ = f"{doc}\n\n{indent}Conventions\n{indent}-----------\n{text}\n"
        func.__convention_op__ = op
        return func
    return deco


def _profile_names(table) -> Tuple[str, ...]:
    return tuple(table)
