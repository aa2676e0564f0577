"""pytest plugin: record which convention values each test resolves.

Loaded with ``-p mutation.conventions_trace`` and ``REFDET_CONVENTION_TRACE=<out.json>`` (the
``python -m mutation conventions trace`` command does both). It wraps
:func:`refdet.conventions.resolve` for the session and writes, per test, its outcome, duration and
the ``[op, knob, value]`` triples of every profile it resolved (``value`` pickled, hex).

The wrapper is on the hot path of every op call (a hypothesis test resolves thousands of profiles),
so it does as little as it can: a call adds the *identity* of the profile's settings, ``(op,
((knob, type, value), ...))``, to the current test's set (a tuple hash, no pickling), and a Profile
object already seen (one resolved once and handed down: ``resolve(op, prof)`` with no overrides)
is recognised by ``id``. Each distinct settings tuple is turned into ``(op, knob, key)`` triples
once per session, when the test ends. The first version pickled every value on every call: test_iou.py
ran 60% slower traced than plain; now it runs within a few percent.
"""
from __future__ import annotations

import json
import os
import pickle
import sys

from mutation.worker import _hypothesis_profile, library_caller

_hypothesis_profile()  # registered before tests/conftest.py loads HYPOTHESIS_PROFILE=mutation
_STATE = {"test": None, "pending": None, "values": {}, "record": {}, "calls": 0}
#: settings identity -> frozenset of (op, knob, key) triples (computed once per distinct settings)
_TRIPLES: dict = {}


def value_key(v) -> str:
    """A convention value as a stable string key (pickled, hex)."""
    return pickle.dumps(v, protocol=4).hex()


def _tag(v):
    """``v`` made hashable with its type kept (``True``, ``1`` and ``1.0`` stay three values)."""
    if isinstance(v, (tuple, list)):
        return (type(v), tuple(_tag(x) for x in v))
    try:
        hash(v)
    except TypeError:
        return (type(v), id(v))
    return (type(v), v)


def _identity(op, prof):
    return (op, tuple((k, _tag(v)) for k, v in prof.items()))


def _triples(ident, prof):
    out = _TRIPLES.get(ident)
    if out is None:
        op = ident[0]
        s = set()
        for k, v in prof.items():
            try:
                s.add((op, k, value_key(v)))
            except Exception:  # noqa: BLE001 (an unpicklable value: recorded by its repr)
                s.add((op, k, "repr:" + repr(v)))
        out = _TRIPLES[ident] = frozenset(s)
    return out


def pytest_configure(config):
    from refdet import conventions

    original = conventions.resolve
    state = _STATE
    last = {"op": None, "ident": None, "prof": None}

    callers = {}

    def traced(op, convention, /, **overrides):
        prof = original(op, convention, **overrides)
        state["calls"] += 1
        pending = state["pending"]
        if pending is not None:
            # only the library's calls count (what a swap changes: mutation.worker._swap_child)
            fn = sys._getframe(1).f_code.co_filename
            lib = callers.get(fn)
            if lib is None:
                lib = callers[fn] = library_caller(fn)
            if not lib:
                return prof
            # a Profile of this op handed down unchanged resolves to the same settings: reuse its identity
            if convention is last["prof"] and op == last["op"] and all(v is None for v in overrides.values()):
                ident = last["ident"]
            else:
                ident = _identity(op, prof)
            if ident not in pending:
                pending[ident] = prof
            last["prof"], last["ident"], last["op"] = prof, ident, op
        return prof

    state["pending"] = None
    conventions.resolve = traced
    state["original"] = original


def _flush():
    t, pending = _STATE["test"], _STATE["pending"]
    if t is None or pending is None:
        return
    seen = _STATE["values"].setdefault(t, set())
    for ident, prof in pending.items():
        seen.update(_triples(ident, prof))
    _STATE["pending"] = None


def pytest_runtest_setup(item):
    _flush()
    _STATE["test"] = item.nodeid
    _STATE["pending"] = {}


def pytest_runtest_logreport(report):
    r = _STATE["record"].setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    r["duration"] += report.duration
    if report.failed:
        r["outcome"] = "failed"
    elif report.skipped and r["outcome"] == "passed":
        r["outcome"] = "skipped"


def pytest_unconfigure(config):
    _flush()
    _STATE["test"] = None
    out = os.environ.get("REFDET_CONVENTION_TRACE")
    if "original" in _STATE:
        from refdet import conventions

        conventions.resolve = _STATE.pop("original")
    if not out:
        return
    tests = {}
    for nodeid, r in _STATE["record"].items():
        tests[nodeid] = dict(r, values=sorted([list(t) for t in _STATE["values"].get(nodeid, ())]))
    with open(out, "w") as fh:
        json.dump({"tests": tests, "resolve_calls": _STATE["calls"]}, fh)
