"""pytest plugin: record which convention values each test resolves.

Loaded with ``-p mutation.conventions_trace`` and ``REFDET_CONVENTION_TRACE=<out.json>`` (the
``python -m mutation conventions trace`` command does both). It wraps
:func:`refdet.conventions.resolve` for the session and writes, per test, its outcome, duration and
the ``[op, knob, value]`` triples of every profile it resolved (``value`` pickled, hex).
"""
from __future__ import annotations

import json
import os
import pickle

from mutation.worker import _hypothesis_profile

_hypothesis_profile()  # registered before tests/conftest.py loads HYPOTHESIS_PROFILE=mutation
_STATE = {"test": None, "values": {}, "record": {}}


def value_key(v) -> str:
    """A convention value as a stable string key (pickled, hex)."""
    return pickle.dumps(v, protocol=4).hex()


def pytest_configure(config):
    from refdet import conventions

    original = conventions.resolve

    def traced(op, convention, /, **overrides):
        prof = original(op, convention, **overrides)
        t = _STATE["test"]
        if t is not None:
            seen = _STATE["values"].setdefault(t, set())
            for k, v in prof.items():
                try:
                    seen.add((op, k, value_key(v)))
                except Exception:  # noqa: BLE001 (an unpicklable value: recorded by its repr)
                    seen.add((op, k, "repr:" + repr(v)))
        return prof

    conventions.resolve = traced
    _STATE["original"] = original


def pytest_runtest_setup(item):
    _STATE["test"] = item.nodeid


def pytest_runtest_logreport(report):
    r = _STATE["record"].setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
    r["duration"] += report.duration
    if report.failed:
        r["outcome"] = "failed"
    elif report.skipped and r["outcome"] == "passed":
        r["outcome"] = "skipped"


def pytest_unconfigure(config):
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
        json.dump({"tests": tests}, fh)
