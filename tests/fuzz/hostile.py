"""Hostile values for one argument, derived from the valid value a seed call passes.

:func:`mutations` looks at a valid argument (an array, a scalar, a string, a list, a dict, a
Generator, a cache ...) and returns the hostile variants the fuzz suite tries in its place, each as a
:class:`Mutation` with a label and a *kind*:

``BENIGN``   the same question asked differently (a Fortran-ordered, strided or read-only view, a
             Python list of float64 values, a NumPy scalar for a Python one): the answer must be
             bit-identical to the seed call's answer;
``HOSTILE``  anything else (NaN and inf, a wrong ndim or last dimension, an empty array, a bool,
             complex, object, str, int8 or float16 array, None, negative / zero / huge integers,
             thresholds out of range, flipped boxes): the call must either raise a TypeError or
             ValueError naming the argument, or answer (with no NaN if every input was finite).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, List

import numpy as np

BENIGN = "benign"
HOSTILE = "hostile"


@dataclass
class Mutation:
    label: str
    value: Any
    kind: str = HOSTILE


def _is_namedtuple(v):
    return isinstance(v, tuple) and hasattr(v, "_fields")


def _noncontig(a):
    """The same values as a strided (non-contiguous) view."""
    if a.ndim == 0:
        return a
    big = np.repeat(a, 2, axis=-1)
    return big[..., ::2]


def _readonly(a):
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def float_array_mutations(v: np.ndarray) -> List[Mutation]:
    out = [Mutation("fortran", np.asfortranarray(v), BENIGN),
           Mutation("strided", _noncontig(v), BENIGN),
           Mutation("readonly", _readonly(v), BENIGN)]
    lst = v.tolist()
    same = v.dtype == np.float64 and np.asarray(lst, dtype=np.float64).shape == v.shape
    out.append(Mutation("list", lst, BENIGN if same else HOSTILE))   # benign if nothing is lost
    if v.size:
        for label, x in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
            a = v.copy()
            a.flat[0] = x
            out.append(Mutation(label, a))
        a = v.copy()
        a.flat[-1] = np.nan
        out.append(Mutation("nan_last", a))
    out += [Mutation("none", None),
            Mutation("add_axis", v[..., None]),
            Mutation("bool", v.astype(bool)),
            Mutation("complex", v.astype(np.complex128)),
            Mutation("object", v.astype(object)),
            Mutation("str", v.astype(str)),
            Mutation("int8", np.clip(np.round(v), -128, 127).astype(np.int8)),
            Mutation("float16", v.astype(np.float16)),
            Mutation("negative", -v),
            Mutation("zeros", np.zeros_like(v)),
            Mutation("string", "array")]
    if v.ndim >= 1:
        out.append(Mutation("empty", v[:0]))
        out.append(Mutation("scalar", np.asarray(v.flat[0]) if v.size else np.asarray(0.0)))
        if v.shape[-1]:
            out.append(Mutation("last+1", np.concatenate([v, v[..., :1]], axis=-1)))
            if v.shape[-1] > 1:
                out.append(Mutation("last-1", v[..., :-1]))
        if v.shape[0] > 1:
            out.append(Mutation("first-1", v[:-1]))
        m = float(np.max(np.abs(v))) if v.size else 0.0
        if m > 0 and np.isfinite(m):
            # values a float16 holds whose products overflow it (areas > 65504)
            out.append(Mutation("float16_big", (v / m * 60000.0).astype(np.float16)))
    if v.ndim >= 2:
        out.append(Mutation("drop_axis", v.reshape(v.shape[:-2] + (-1,))))
    if v.ndim >= 1 and v.shape[-1] == 4 and v.size:
        out.append(Mutation("flipped", v[..., [2, 3, 0, 1]].copy()))
        z = v.copy()
        z[..., 2] = z[..., 0]
        out.append(Mutation("zero_width", z))
        p = v.copy()
        p[..., 2:] = p[..., :2]
        out.append(Mutation("points", p))
    return out


def int_array_mutations(v: np.ndarray) -> List[Mutation]:
    out = [Mutation("fortran", np.asfortranarray(v), BENIGN),
           Mutation("strided", _noncontig(v), BENIGN),
           Mutation("readonly", _readonly(v), BENIGN),
           Mutation("list", v.tolist()),
           Mutation("none", None),
           Mutation("add_axis", v[..., None]),
           Mutation("bool", v.astype(bool)),
           Mutation("float", v.astype(np.float64) + 0.5),
           Mutation("complex", v.astype(np.complex128)),
           Mutation("str", v.astype(str)),
           Mutation("negative", -np.abs(v) - 7),
           Mutation("huge", v.astype(np.int64) + 2 ** 40),
           Mutation("string", "array")]
    if v.ndim >= 1:
        out.append(Mutation("empty", v[:0]))
        if v.shape[0] > 1:
            out.append(Mutation("first-1", v[:-1]))
    if v.ndim >= 2:
        out.append(Mutation("drop_axis", v.reshape(v.shape[:-2] + (-1,))))
    return out


def bool_array_mutations(v: np.ndarray) -> List[Mutation]:
    out = [Mutation("strided", _noncontig(v), BENIGN),
           Mutation("readonly", _readonly(v), BENIGN),
           Mutation("none", None),
           Mutation("add_axis", v[..., None]),
           Mutation("int", v.astype(np.int64) * 3),
           Mutation("float", v.astype(np.float64) + 0.5),
           Mutation("str", v.astype(str))]
    if v.ndim >= 1:
        out.append(Mutation("empty", v[:0]))
        if v.shape[0] > 1:
            out.append(Mutation("first-1", v[:-1]))
    return out


INT_HOSTILE = [("neg", -1), ("zero", 0), ("huge", 10 ** 9), ("int64max", 2 ** 63), ("frac", 1.5),
               ("bool", True), ("none", None), ("str", "3"), ("nan", float("nan")), ("array", np.array([3, 4]))]
FLOAT_HOSTILE = [("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("neg", -1.0),
                 ("zero", 0.0), ("above1", 1.5), ("below0", -0.5), ("huge", 1e9), ("none", None),
                 ("str", "0.5"), ("bool", True), ("complex", 0.5 + 0.5j), ("array", np.array([0.5, 0.6])),
                 ("npnan", np.float64("nan"))]


def int_mutations(v, *, same_type=True) -> List[Mutation]:
    """``same_type``: an int64 NumPy scalar asks the same question (False for a seed of another NumPy
    integer type, whose dtype may be part of the answer: a zero point's type names the output type)."""
    out = [Mutation(lbl, x) for lbl, x in INT_HOSTILE]
    out.append(Mutation("np.int64", np.int64(v), BENIGN if same_type else HOSTILE))
    out.append(Mutation("float_valued", float(v)))
    return out


def float_mutations(v, *, same_type=True) -> List[Mutation]:
    """``same_type``: as for :func:`int_mutations` (a float32 scale's dtype is the output's dtype)."""
    out = [Mutation(lbl, x) for lbl, x in FLOAT_HOSTILE]
    out.append(Mutation("np.float64", np.float64(v), BENIGN if same_type else HOSTILE))
    out.append(Mutation("0-d", np.array(v, dtype=np.float64)))   # a 0-d array for a scalar option: may be refused
    return out


def str_mutations(v) -> List[Mutation]:
    return [Mutation("bogus", "bogus-value"), Mutation("empty", ""), Mutation("none", None),
            Mutation("int", 1), Mutation("upper", v.upper() + "!"), Mutation("list", [v])]


def bool_mutations(v) -> List[Mutation]:
    return [Mutation("none", None), Mutation("str", "yes"), Mutation("int2", 2), Mutation("float", 0.5),
            Mutation("np.bool_", np.bool_(v), BENIGN), Mutation("array", np.array([v, v]))]


def default_none_mutations() -> List[Mutation]:
    return [Mutation("str", "bogus-value"), Mutation("nan", float("nan")), Mutation("neg", -1),
            Mutation("huge", 10 ** 9), Mutation("array", np.zeros((2, 3))), Mutation("emptylist", [])]


def rng_mutations(v) -> List[Mutation]:
    return [Mutation("neg", -1), Mutation("str", "seed"), Mutation("frac", 1.5),
            Mutation("legacy", np.random.RandomState(0)), Mutation("array", np.array([[1.5]]))]


def dtype_mutations(v) -> List[Mutation]:
    return [Mutation("str", "bogus-dtype"), Mutation("int32", np.int32), Mutation("complex", np.complex128),
            Mutation("bool", np.bool_), Mutation("object", object)]


def sequence_mutations(v) -> List[Mutation]:
    """A list or tuple (of numbers, pairs, arrays ...)."""
    out = [Mutation("none", None), Mutation("empty", type(v)()), Mutation("string", "sequence")]
    if len(v):
        out.append(Mutation("drop_last", type(v)(v[:-1])))
        out.append(Mutation("dup_last", type(v)(list(v) + [v[-1]])))
        first = v[0]
        for m in mutations(first, depth=1):
            if m.kind == BENIGN:
                continue
            out.append(Mutation(f"[0].{m.label}", type(v)([m.value] + list(v[1:]))))
        if all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v):
            out.append(Mutation("ndarray", np.asarray(v), BENIGN if all(isinstance(x, float) for x in v) else HOSTILE))
    return out


def dict_mutations(v) -> List[Mutation]:
    out = [Mutation("none", None), Mutation("list", list(v.values()))]
    keys = list(v)
    if keys:
        d = dict(v)
        d.pop(keys[0])
        out.append(Mutation(f"drop[{keys[0]!r}]", d))
        d = dict(v)
        d["bogus_key"] = np.zeros(2)
        out.append(Mutation("extra_key", d))
    for k in keys[:6]:
        for m in mutations(v[k], depth=1):
            if m.kind == BENIGN or m.label not in ("nan", "none", "add_axis", "str", "empty", "neg", "flipped",
                                                   "bogus", "first-1", "huge", "string"):
                continue
            d = dict(v)
            d[k] = m.value
            out.append(Mutation(f"[{k!r}].{m.label}", d))
    return out


def namedtuple_mutations(v) -> List[Mutation]:
    # a cache or a result record: its fields come from refdet itself, so only its kind is varied
    return [Mutation("none", None), Mutation("string", "cache"), Mutation("plain_tuple", tuple(v))]


def _map_arrays(out, fn):
    if isinstance(out, np.ndarray):
        return fn(out)
    if isinstance(out, tuple) and not _is_namedtuple(out):
        return tuple(_map_arrays(o, fn) for o in out)
    if _is_namedtuple(out):
        return type(out)(*(_map_arrays(o, fn) for o in out))
    if isinstance(out, list):
        return [_map_arrays(o, fn) for o in out]
    return out


def _nanify(a):
    return np.full(a.shape, np.nan, a.dtype) if a.dtype.kind == "f" else a


def _out_of_range(a):
    if a.dtype.kind in "iu":
        return a.astype(np.int64) + 10 ** 6
    if a.dtype.kind == "f":
        return a * 1e30
    if a.dtype.kind == "b":
        return a.astype(np.int64) * 7
    return a


def implementation_mutations(fn) -> List[Mutation]:
    """Hostile implementations in place of a callable under test (an NMS, an IoU, a forward ...)."""
    def raises(*a, **k):
        raise RuntimeError("the implementation under test crashed")

    def wrap(f):
        def g(*a, **k):
            return _map_arrays(fn(*a, **k), f)
        return g

    return [Mutation("returns_none", lambda *a, **k: None),
            Mutation("returns_str", lambda *a, **k: "result"),
            Mutation("raises", raises),
            Mutation("nan_output", wrap(_nanify)),
            Mutation("out_of_range", wrap(_out_of_range)),
            Mutation("extra_axis", wrap(lambda a: a[..., None])),
            Mutation("dropped_row", wrap(lambda a: a[:-1] if a.ndim and a.shape[0] else a)),
            Mutation("float_indices", wrap(lambda a: a + 0.5 if a.dtype.kind in "iu" else a))]


def mutations(v, *, depth=0) -> List[Mutation]:
    """Hostile variants of the valid argument ``v`` (an empty list for what we cannot vary)."""
    if isinstance(v, np.random.Generator):
        return rng_mutations(v)
    if isinstance(v, (bool, np.bool_)):
        return bool_mutations(bool(v))
    if isinstance(v, (numbers.Integral,)) and not isinstance(v, bool):
        return int_mutations(int(v), same_type=not isinstance(v, np.generic) or v.dtype == np.int64)
    if isinstance(v, numbers.Real):
        return float_mutations(float(v), same_type=not isinstance(v, np.generic) or v.dtype == np.float64)
    if isinstance(v, str):
        return str_mutations(v)
    if isinstance(v, type) or isinstance(v, np.dtype):
        return dtype_mutations(v)
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f":
            return float_array_mutations(v)
        if v.dtype.kind in "iu":
            return int_array_mutations(v)
        if v.dtype.kind == "b":
            return bool_array_mutations(v)
        return []
    if _is_namedtuple(v):
        return namedtuple_mutations(v)
    if isinstance(v, (list, tuple)):
        return sequence_mutations(v) if depth == 0 else [Mutation("none", None), Mutation("empty", type(v)())]
    if isinstance(v, dict):
        return dict_mutations(v) if depth == 0 else [Mutation("none", None)]
    if callable(v):
        return [Mutation("none", None), Mutation("string", "not callable")] + implementation_mutations(v)
    return [Mutation("none", None), Mutation("string", "bogus-object")]


def default_mutations(default) -> List[Mutation]:
    """Hostile values for a parameter the seed call leaves at its default."""
    if default is None:
        return default_none_mutations()
    return [m for m in mutations(default) if m.kind != BENIGN]
