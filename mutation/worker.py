"""The process that runs tests against mutants (started by :mod:`mutation.runner` inside the copy).

Two jobs, both run with the copy of the tree as the current directory and first on ``sys.path``:

``baseline``
    Run the module's test files once, unmutated, under coverage.py with one dynamic context per
    test: which test executes which line of the module, how long each test takes, which pass.

``mutants``
    Collect the test files once (importing pytest, NumPy, torch, refdet and the test modules), then
    fork one child per mutant. The child swaps the mutated function's code object into the live
    function (or, for a mutant outside any function, re-runs the mutated module over the live one),
    runs the selected tests fastest first with ``-x`` and exits; the parent kills it at its time
    limit. Nothing is written to disk but the results: the mutant exists only in the child's memory.

Hypothesis runs under the ``mutation`` profile: the ``ci`` profile's derandomized examples without
the shrink phase (a mutant is killed by the first failing example; minimising it only costs time).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import types


def _hypothesis_profile():
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile(
        "mutation", derandomize=True, max_examples=60, deadline=None, database=None, print_blob=False,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    os.environ["HYPOTHESIS_PROFILE"] = "mutation"


class _Select:
    """pytest plugin: run only ``order`` (nodeids), in that order; record outcomes and durations."""

    def __init__(self, order=None, record=None, on_test=None):
        self.order = order
        self.record = record if record is not None else {}
        self.on_test = on_test
        self.first_failure = None

    def pytest_collection_modifyitems(self, session, config, items):
        if self.order is None:
            return
        rank = {n: i for i, n in enumerate(self.order)}
        keep = [it for it in items if it.nodeid in rank]
        keep.sort(key=lambda it: rank[it.nodeid])
        deselected = [it for it in items if it.nodeid not in rank]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
        items[:] = keep

    def pytest_runtest_setup(self, item):
        if self.on_test is not None:
            self.on_test(item.nodeid)

    def pytest_runtest_logreport(self, report):
        r = self.record.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
        r["duration"] += report.duration
        if report.failed:
            r["outcome"] = "failed"
            if self.first_failure is None:
                self.first_failure = report.nodeid
        elif report.skipped and r["outcome"] == "passed":
            r["outcome"] = "skipped"


def _pytest_args(test_files, extra=()):
    return ["-q", "-p", "no:cacheprovider", "--no-header", "--tb=no", "-o", "addopts=", "-W", "ignore",
            *extra, *test_files]


def baseline(target: str, test_files: list, out: str) -> None:
    """Per-test coverage of ``target`` (one line set per test), durations and outcomes -> ``out``."""
    import coverage

    _hypothesis_profile()
    path = os.path.abspath(target)
    cov = coverage.Coverage(data_file=None, include=[path], config_file=False, branch=False)
    cov.start()
    import pytest

    from refdet import conventions

    current = {"test": None}
    ops_by_test = {}
    original = conventions.resolve

    def traced(op, convention, /, **overrides):
        prof = original(op, convention, **overrides)
        if current["test"] is not None:
            ops_by_test.setdefault(current["test"], set()).add(f"{op}|{prof.name}")
        return prof

    original_describe = conventions.describe

    def traced_describe(op):
        if current["test"] is not None:
            ops_by_test.setdefault(current["test"], set()).add(f"{op}|*")  # reads the whole table
        return original_describe(op)

    conventions.resolve = traced
    conventions.describe = traced_describe

    def on_test(nodeid):
        current["test"] = nodeid
        cov.switch_context(nodeid)

    plugin = _Select(on_test=on_test)
    t0 = time.perf_counter()
    code = pytest.main(_pytest_args(test_files), plugins=[plugin])
    conventions.resolve = original
    conventions.describe = original_describe
    wall = time.perf_counter() - t0
    cov.stop()
    data = cov.get_data()
    lines = {}
    for f in data.measured_files():
        if os.path.abspath(f) != path:
            continue
        for ln, ctxs in data.contexts_by_lineno(f).items():
            for c in ctxs:
                if c:
                    lines.setdefault(c, set()).add(ln)
    tests = {}
    for nodeid, r in plugin.record.items():
        tests[nodeid] = dict(r, lines=sorted(lines.get(nodeid, ())), ops=sorted(ops_by_test.get(nodeid, ())))
    with open(out, "w") as fh:
        json.dump({"exit_code": int(code), "wall": wall, "tests": tests}, fh)


# --------------------------------------------------------------------------------------------------
# applying a mutant inside the child
# --------------------------------------------------------------------------------------------------

def _live_functions(module):
    """{co_qualname: [function objects]} defined in ``module``'s file (unwrapping decorators)."""
    fname = module.__file__
    found = {}
    seen = set()

    def add(obj):
        while obj is not None and id(obj) not in seen:
            seen.add(id(obj))
            if isinstance(obj, (staticmethod, classmethod)):
                obj = obj.__func__
                continue
            if isinstance(obj, property):
                for f in (obj.fget, obj.fset, obj.fdel):
                    add(f)
                return
            if isinstance(obj, types.FunctionType):
                if obj.__code__.co_filename == fname:
                    found.setdefault(obj.__code__.co_qualname, []).append(obj)
                obj = getattr(obj, "__wrapped__", None)
                continue
            if isinstance(obj, type) and getattr(obj, "__module__", None) == module.__name__:
                for v in list(vars(obj).values()):
                    add(v)
            return

    for v in list(vars(module).values()):
        add(v)
    return found


def _code_objects(code, out=None):
    out = {} if out is None else out
    out.setdefault(code.co_qualname, []).append(code)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_objects(c, out)
    return out


def _compile(mutant, source):
    """(module, code object) of the mutated module; raises if the mutant does not apply (an error)."""
    from mutation import mutants as M

    import importlib

    modname = mutant.module[:-3].replace("/", ".")
    if modname.endswith(".__init__"):
        modname = modname[: -len(".__init__")]
    module = importlib.import_module(modname)
    tree = M.apply(source, mutant)
    return module, compile(tree, module.__file__, "exec", dont_inherit=True)


def _fingerprint(v, depth=0):
    """A comparable summary of a module-level value (to see what a module-level mutant changed)."""
    import numpy as np

    if depth > 6:
        return ("deep",)
    if isinstance(v, dict):
        return ("dict", tuple((repr(k), _fingerprint(x, depth + 1)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_fingerprint(x, depth + 1) for x in v))
    if isinstance(v, (set, frozenset)):
        return ("set", tuple(sorted(repr(x) for x in v)))
    if isinstance(v, np.ndarray):
        return ("ndarray", str(v.dtype), v.shape, v.tobytes())
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType)):
        return ("obj", getattr(v, "__module__", ""), getattr(v, "__qualname__", getattr(v, "__name__", "")))
    if hasattr(v, "__slots__") and not isinstance(v, (int, float, str, bytes)):
        return (type(v).__name__, tuple((k, _fingerprint(getattr(v, k, None), depth + 1))
                                        for k in type(v).__slots__))
    return ("value", repr(v))


def _registry_snapshot():
    from refdet import conventions

    snap = {}
    for op, t in conventions._REGISTRY.items():
        snap[f"{op}|*"] = _fingerprint(t.options)
        for name, values in t.items():
            snap[f"{op}|{name}"] = _fingerprint(values)
    return snap


def _apply(mutant, module, code):
    """Swap the mutant into the live module. Returns the ``"op|profile"`` entries of the convention
    tables it changed (``"op|*"``: an option's declaration) when that is all it changed, so that the
    tests can be narrowed to those resolving them; None when it changed anything else."""
    live = _live_functions(module)
    if mutant.level == "function" and mutant.scope in live:
        new = [c for c in _code_objects(code).get(mutant.scope, [])]
        if len(new) == 1:
            for f in live[mutant.scope]:
                f.__code__ = new[0]
            return None
    # module level (or a function the module does not expose): re-run the mutated module in a fresh
    # namespace, then move its code and values onto the live module's objects
    ns = {k: module.__dict__[k] for k in ("__name__", "__file__", "__package__", "__spec__", "__loader__",
                                          "__builtins__", "__path__") if k in module.__dict__}
    before = _registry_snapshot()
    exec(code, ns)
    after = _registry_snapshot()
    changed_ops = {op for op in set(before) | set(after) if before.get(op) != after.get(op)}
    data_changed = False
    newfuncs = _live_functions(types.SimpleNamespace(__file__=module.__file__, __name__=module.__name__, **{
        k: v for k, v in ns.items() if not k.startswith("__")}))
    for qual, fs in live.items():
        for g in newfuncs.get(qual, [])[:1]:
            for f in fs:
                if len(f.__code__.co_freevars) == len(g.__code__.co_freevars):
                    f.__code__ = g.__code__
                if _fingerprint((f.__defaults__, f.__kwdefaults__)) != _fingerprint((g.__defaults__,
                                                                                     g.__kwdefaults__)):
                    data_changed = True
                f.__defaults__ = g.__defaults__
                f.__kwdefaults__ = g.__kwdefaults__
    # names the module's functions read at run time (a table read only while the module is imported,
    # e.g. the profile dicts handed to conventions.register, changes results only through the registry)
    used = set()
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            for cc in _code_objects(c).values():
                for x in cc:
                    used.update(x.co_names)
    for k, v in ns.items():
        if k.startswith("__"):
            continue
        old = module.__dict__.get(k, None)
        if isinstance(old, (types.FunctionType, type, types.ModuleType)):
            continue
        if (k not in module.__dict__ or _fingerprint(old) != _fingerprint(v)) and k in used:
            data_changed = True
        module.__dict__[k] = v
    return None if data_changed else changed_ops


def _run_tests(order, fail_path):
    """Run ``order`` (nodeids) with -x in this (child) process and exit with pytest's code."""
    import pytest

    plugin = _Select(order=order)
    files = list(dict.fromkeys(n.split("::")[0] for n in order))  # only the files holding selected tests
    try:
        code = pytest.main(_pytest_args(files, ("-x",)), plugins=[plugin])
    except BaseException as exc:  # noqa: BLE001
        with open(fail_path, "w") as fh:
            fh.write(f"<pytest> {type(exc).__name__}: {exc}")
        os._exit(3)
    if plugin.first_failure:
        with open(fail_path, "w") as fh:
            fh.write(plugin.first_failure)
    os._exit(int(code))


def _mutant_child(item, spec, source, fail_path):
    from mutation import mutants as M

    mutant = M.Mutant.from_json(item["mutant"])
    order = item["tests"]
    ops_by_test = spec.get("ops_by_test")
    try:
        module, code = _compile(mutant, source)
    except BaseException as exc:  # noqa: BLE001 (the mutant does not apply to this source: an error)
        with open(fail_path, "w") as fh:
            fh.write(f"<apply> {type(exc).__name__}: {exc}")
        os._exit(3)
    try:
        changed_ops = _apply(mutant, module, code)
    except BaseException as exc:  # noqa: BLE001 (the mutated module does not even import: killed)
        with open(fail_path, "w") as fh:
            fh.write(f"<import> {type(exc).__name__}: {exc}")
        os._exit(1)
    if changed_ops is not None and ops_by_test is not None:
        # the mutant changed convention tables only: the tests resolving those ops are the ones
        changed = {k.split("|")[0] for k in changed_ops}
        whole = {k[:-2] for k in changed_ops if k.endswith("|*")}
        order = [n for n in order if any(k in changed_ops or k.split("|")[0] in whole
                                         or (k.endswith("|*") and k[:-2] in changed)
                                         for k in ops_by_test.get(n, ()))]
        if not order:  # it changed nothing any test can see: it survives (run nothing)
            with open(fail_path, "w") as fh:
                fh.write(f"<no test resolves {sorted(changed_ops) or 'a changed op'}>")
            os._exit(0)
    _run_tests(order, fail_path)


def library_caller(filename: str) -> bool:
    """``filename`` (of the code calling ``conventions.resolve``) is refdet's library code: not a test,
    not ``refdet/testing`` or ``refdet/reference`` (the independent oracles a test compares with)."""
    import refdet

    pkg = os.path.dirname(os.path.abspath(refdet.__file__)) + os.sep
    f = os.path.abspath(filename)
    return f.startswith(pkg) and not f.startswith((pkg + "testing" + os.sep, pkg + "reference" + os.sep))


def _swap_child(item, spec, source, fail_path):
    """A convention swap: wherever the library resolves ``knob`` of ``op`` to ``value``, it gets ``to``
    instead. Only the library's own calls are swapped (the branch computes something else); a test,
    or refdet's testing/reference oracles, reading the profile still read the registry's value (a
    test comparing ``resolve`` with the table pins the table, not the branch)."""
    import pickle

    from refdet import conventions

    op, knob = item["op"], item["knob"]
    value, to = pickle.loads(bytes.fromhex(item["value"])), pickle.loads(bytes.fromhex(item["to"]))
    original = conventions.resolve
    callers = {}

    def swapped(op_, convention, /, **overrides):
        prof = original(op_, convention, **overrides)
        if op_ != op:
            return prof
        fn = sys._getframe(1).f_code.co_filename
        lib = callers.get(fn)
        if lib is None:
            lib = callers[fn] = library_caller(fn)
        if lib and same_value(prof[knob], value):
            values = dict(prof)
            values[knob] = to
            prof = conventions.Profile(op_, prof.name, values, prof.overridden)
        return prof

    conventions.resolve = swapped
    _run_tests(item["tests"], fail_path)


def same_value(a, b) -> bool:
    """``a`` is ``b`` as a convention value: same type family and equal (NaN equals NaN)."""
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (a != a and b != b)  # NaN is NaN here
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def run_items(job: str, out: str) -> None:
    """Fork one child per item of ``job`` (code mutants or convention swaps); results -> ``out``."""
    _hypothesis_profile()
    with open(job) as fh:
        spec = json.load(fh)
    import pytest

    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1), os.dup(2)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    pytest.main(_pytest_args(spec["test_files"], ("--collect-only",)))  # imports everything once
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    source = None
    if spec.get("target"):
        with open(spec["target"]) as fh:
            source = fh.read()
    child = _swap_child if spec.get("kind") == "swap" else _mutant_child
    jobs = max(1, int(spec.get("jobs", 1)))
    pending = list(spec["items"])
    running = {}
    tmpdir = spec["tmpdir"]
    parent = os.getppid()

    def stop(signum, frame):  # terminated by the runner: take the running children along
        for pid in list(running):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(2)

    signal.signal(signal.SIGTERM, stop)
    with open(out, "a") as results:
        while pending or running:
            if os.getppid() != parent:  # the runner is gone (killed): stop, leave nothing behind
                stop(None, None)
            while pending and len(running) < jobs:
                item = pending.pop(0)
                fail_path = os.path.join(tmpdir, f"fail-{item['id']}")
                if os.path.exists(fail_path):
                    os.unlink(fail_path)
                pid = os.fork()
                if pid == 0:
                    try:
                        os.setpgid(0, 0)
                        null = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(null, 1)
                        os.dup2(null, 2)
                        child(item, spec, source, fail_path)
                    finally:
                        os._exit(4)
                running[pid] = (item, time.perf_counter(), fail_path)
            time.sleep(0.02)
            for pid in list(running):
                item, t0, fail_path = running[pid]
                done, status = os.waitpid(pid, os.WNOHANG)
                elapsed = time.perf_counter() - t0
                if done == 0:
                    if elapsed > item["timeout"]:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        os.waitpid(pid, 0)
                        verdict, killer = "timeout", ""
                    else:
                        continue
                else:
                    code = os.waitstatus_to_exitcode(status)
                    killer = ""
                    if os.path.exists(fail_path):
                        with open(fail_path) as fh:
                            killer = fh.read().strip()
                        os.unlink(fail_path)
                    if code == 0:
                        verdict = "survived"
                    elif code == 1:
                        verdict = "killed"
                    elif code < 0:
                        verdict, killer = "killed", killer or f"<signal {-code}>"
                    else:
                        verdict, killer = "error", killer or f"<pytest exit {code}>"
                del running[pid]
                results.write(json.dumps({"id": item["id"], "status": verdict, "killer": killer,
                                          "time": round(elapsed, 3)}) + "\n")
                results.flush()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mutation.worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baseline")
    b.add_argument("target")
    b.add_argument("out")
    b.add_argument("tests", nargs="+")
    r = sub.add_parser("items")
    r.add_argument("job")
    r.add_argument("out")
    a = p.parse_args(argv)
    if a.cmd == "baseline":
        baseline(a.target, a.tests, a.out)
    else:
        run_items(a.job, a.out)


if __name__ == "__main__":
    main()
