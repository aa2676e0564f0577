"""Fuzz suite, library half (issue 13): every public function walked with hostile values of every argument.

The walk (:mod:`tests.fuzz.runner`) runs in ONE subprocess whose address space is capped with
``resource.setrlimit(RLIMIT_AS, ...)`` (2 GiB), so that a regression that allocates far too much fails
with MemoryError instead of swapping. For every seed call (:mod:`tests.fuzz.seeds`: the contract cases
plus the names they do not cover) and every parameter in turn, every hostile variant of its value
(:mod:`tests.fuzz.hostile`: NaN/inf, wrong ndim and last dimension, empty, bool/complex/object/str/int8/
float16 dtypes and float16 overflow, Python lists, None, negative/zero/huge integers, thresholds out of
range, non-contiguous, Fortran and read-only views, flipped and zero-width boxes, hostile
implementations for the comparators) replaces it, and the call must:

* raise only TypeError or ValueError whose message names the argument in backticks (the comparators
  of ``refdet.testing`` may raise AssertionError), or give the documented answer
  (:mod:`tests.fuzz.documented`: each entry a sentence of a docstring);
* never answer NaN when every input was finite, never accept a threshold outside [0, 1] or a NaN option;
* modify no input, answer the same twice, answer a benign variant (a view, a list, a NumPy scalar)
  bit for bit as the seed, and return within 10 s.

A hypothesis stage then varies two arguments at once on other seeds: ``max_examples // 30`` examples per
function (2 under the ``ci`` profile, 33 under ``thorough``; a tenth of that for the conformance checks,
whose every call runs an implementation over golden cases).

The counts (functions walked, calls made, open findings) are printed (``pytest -s``) and held above a
floor. ``test_walk_reports_every_kind_of_broken_function`` runs the same walk over deliberately broken
functions (:mod:`tests.fuzz.wrong`) and checks that each breakage is reported.
"""
import importlib
import inspect
import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import settings

import refdet
from tests.fuzz import documented
from tests.fuzz.seeds import HAVE_ML_DTYPES, SKIPPED, all_cases, resolve
from tests.fuzz.wrong import EXPECTED
from tests._runtimes_fuzz_cases import LEFT_OUT as RUNTIMES_LEFT_OUT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the namespaces whose public callables the walk must cover (besides refdet.__all__)
NAMESPACES = ("quant", "quant.types", "yolo", "onnx_ops", "roi", "tf_ops", "testing", "testing.conformance",
              "testing.conformance_yolo", "testing.compare_anchors", "testing.compare_floats", "testing.compare_match",
              "testing.compare_nms", "testing.gradcheck", "runtimes.opencv", "runtimes.opencv_ssd", "runtimes.openvino",
              "runtimes.openvino_priors", "runtimes.adapters", "runtimes.onnx_runners", "runtimes.tensorflow",
              "testing.conformance_runtimes", "testing.conformance_opencv", "testing.conformance_opencv_ssd",
              "testing.conformance_openvino", "runtimes.openvino_detection", "runtimes.openvino_proposal",
              "runtimes.openvino_detectron")
#: public names left out on purpose (their reasons are in tests.fuzz.seeds.SKIPPED)
LEFT_OUT = {"testing.gradcheck_all", "testing.register_gradcheck", "testing.gradcheck.gradcheck_all",
            "testing.gradcheck.register_gradcheck"} | RUNTIMES_LEFT_OUT

#: floors for the counts (the walk shrinking unnoticed is a regression too)
MIN_FUNCTIONS = 300
MIN_CALLS = 30000


def _run_walker(*args, timeout=1500):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.runner", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"the walker died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["seconds"] = time.perf_counter() - t0
    return report


def _is_record(obj):
    """A result or cache record (NamedTuple, dataclass, exception), not a function of arrays."""
    return inspect.isclass(obj) and (issubclass(obj, tuple) or hasattr(obj, "__dataclass_fields__")
                                     or issubclass(obj, BaseException))


def _public_callables():
    out = {}
    for n in refdet.__all__:
        out[n] = getattr(refdet, n)
    for ns in NAMESPACES:
        mod = importlib.import_module(f"refdet.{ns}")
        for n in getattr(mod, "__all__", [n for n in dir(mod) if not n.startswith("_")]):
            out[f"{ns}.{n}"] = getattr(mod, n)
    return {k: v for k, v in out.items() if callable(v) and not _is_record(v) and not inspect.ismodule(v)}


def test_every_public_function_has_a_seed():
    seeded = {id(resolve(c.name)) for c in all_cases()}
    left_out = LEFT_OUT | (set() if HAVE_ML_DTYPES else {"quant.types.as_ml_dtypes", "quant.types.from_ml_dtypes"})
    missing = sorted(k for k, v in _public_callables().items() if id(v) not in seeded and k not in left_out)
    assert not missing, f"public functions the fuzz walk does not reach (add a seed in tests/fuzz/seeds.py): {missing}"
    assert SKIPPED, "the namespaces left out keep their reasons"


def test_walk_reports_every_kind_of_broken_function():
    # the walk's checks can fail: each deliberately broken function is reported with its problem
    report = _run_walker("--selftest", "--call-seconds", "1")
    found = {(f["function"], f["problem"]) for f in report["failures"]}
    missed = [(k, p) for k, p in EXPECTED.items() if (f"wrong.{k}", p) not in found]
    assert not missed, f"the walk did not report: {missed}"
    alloc = [f for f in report["failures"] if f["function"] == "wrong.allocates" and f["problem"] == "crash"]
    assert any("MemoryError" in f["detail"] for f in alloc), "the address-space cap did not stop 8 GB"


def test_every_public_function_keeps_its_promises_on_hostile_values(record_property):
    examples = max(1, settings.default.max_examples // 30)
    # derandomized profiles (ci) draw the same examples every run; the others explore
    report = _run_walker("--examples", str(examples), *(() if settings.default.derandomize else ("--random",)))
    bad = report["failures"]
    opened = report["open"]
    print(f"\nfuzz walk: {report['functions']} public functions, {report['calls']} calls "
          f"({examples} hypothesis examples per function), {len(bad)} failures, {len(opened)} open findings in "
          f"modules owned elsewhere ({len({o['function'] for o in opened})} functions), {report['seconds']:.0f} s; "
          f"slowest {[(n, round(t, 1)) for n, t in report['slowest'][:4]]}")
    for key in ("functions", "calls"):                    # the counts, in the junit XML too
        record_property(f"fuzz_{key}", report[key])
    record_property("fuzz_open_findings", len(opened))
    for o in opened[:10]:
        print("  open:", o["function"], o["variant"], o["problem"], o["detail"][:120])
    lines = [f"{f['function']}({f['variant']}): {f['problem']}: {f['detail']}" for f in bad]
    assert not bad, f"{len(bad)} hostile calls broke a promise:\n" + "\n".join(lines[:60])
    assert report["functions"] >= MIN_FUNCTIONS and report["calls"] >= MIN_CALLS, report


def test_documented_answers_are_explained():
    # every exception to the generic promises carries its reason (a docstring sentence or source)
    for table in (documented.TABLE, documented.SKIP, documented.OPEN):
        for key, reason in table.items():
            assert isinstance(reason, str) and len(reason) > 20, key
