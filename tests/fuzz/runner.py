"""Walk the seeds with hostile arguments and report what broke (run in a memory-capped subprocess).

For every seed call ``f(*args, **kwargs)`` and every parameter of ``f`` in turn (given or left at its
default), every hostile variant of that parameter (:mod:`tests.fuzz.hostile`) replaces it, and the
call must keep refdet's promises on bad input:

* it raises only ``TypeError`` or ``ValueError`` (the comparators of ``refdet.testing`` may also
  raise ``AssertionError``), and the message names the varied argument in backticks (```boxes``,
  ```params['w']``); a shape mismatch may name the argument it is compared with;
* or it answers, and the answer has no NaN when every input was finite (unless the table in
  :mod:`tests.fuzz.documented` says the NaN is the documented answer);
* it modifies no input;
* the same call twice gives the same answer (bit for bit, NaN equal to NaN);
* a benign variant (a Fortran, strided or read-only view, a list, a NumPy scalar) gives the seed's
  answer bit for bit;
* it returns within :data:`CALL_SECONDS` (a size check must come before the loop or the allocation).

A hypothesis stage then draws combined variants (two arguments at once, other seeds) per function.

``python -m tests.fuzz.runner [--cap-gib N] [--examples N] [--random] [--call-seconds S] [--selftest] [name ...]``
prints a JSON report: ``{"functions": n, "calls": n, "failures": [...], "open": [...], ...}`` (``open``:
findings in modules another helper owns, :data:`tests.fuzz.documented.OPEN`; ``--random``: hypothesis draws
new examples instead of the derandomized ones; ``--selftest`` walks :mod:`tests.fuzz.wrong` instead of refdet).
"""
from __future__ import annotations

import copy
import inspect
import json
import math
import numbers
import resource
import signal
import sys
import time
import warnings

import numpy as np

from tests.fuzz import documented
from tests.fuzz.hostile import BENIGN, default_mutations, mutations
from tests.fuzz.seeds import all_cases, resolve

#: seconds one call may take before it counts as a hang
CALL_SECONDS = 10.0
#: address-space cap of the walking subprocess (a regression fails with MemoryError instead of swapping)
DEFAULT_CAP_GIB = 2.0

ALLOWED = (TypeError, ValueError)
#: variants that change a length or a shape: the error may name the argument it no longer matches
#: (``boxes`` emptied: "`scores` must have length 0 (one per box of `boxes`)")
SHAPE_VARIANTS = ("empty", "first-1", "drop_last", "dup_last", "last-1", "last+1", "drop_axis", "add_axis",
                  "scalar", "list")
COMPARATOR_PREFIXES = ("testing.",)


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException, so that no library ``except Exception`` swallows it."""


_ACTIVE = False


def _alarm(signum, frame):
    # The timer repeats every 0.25 s after the first expiry: an alarm that lands inside a callback
    # that swallows exceptions (a gc callback) is raised again at the next bytecode boundary.
    if _ACTIVE:
        raise _Timeout()


# ---------------------------------------------------------------------------------------------------
# comparing and scanning results
# ---------------------------------------------------------------------------------------------------

def _equal(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        if a.dtype.kind == "O":
            return all(_equal(x, y) for x, y in zip(a.ravel(), b.ravel()))
        return bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, np.generic) and isinstance(b, np.generic):
        return _equal(np.asarray(a), np.asarray(b))
    if hasattr(a, "__dict__") and not isinstance(a, type) and type(a) is type(b) and not callable(a):
        return _equal(vars(a), vars(b))
    if isinstance(a, np.random.Generator):
        return True
    try:
        r = a == b
        return bool(r) if isinstance(r, (bool, np.bool_)) else True
    except Exception:
        return repr(a) == repr(b)


def _has_nan(obj, depth=0):
    """Is there a NaN anywhere in ``obj`` (arrays, floats, containers, dataclass fields)?"""
    if depth > 6:
        return False
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            return bool(np.isnan(obj).any())
        if obj.dtype.kind == "O":
            return any(_has_nan(x, depth + 1) for x in obj.ravel()[:1000])
        return False
    if isinstance(obj, (float, np.floating, complex, np.complexfloating)):
        return bool(np.isnan(obj))
    if isinstance(obj, (tuple, list)):
        return any(_has_nan(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return any(_has_nan(x, depth + 1) for x in obj.values())
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj) \
            and type(obj).__module__.startswith("refdet"):
        return any(_has_nan(x, depth + 1) for x in vars(obj).values())
    return False


def _all_finite(obj, depth=0):
    """Is every float in ``obj`` finite (and no complex, object or bogus value hiding one)?"""
    if depth > 6:
        return True
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            return bool(np.isfinite(obj).all())
        if obj.dtype.kind == "O":
            return all(_all_finite(x, depth + 1) for x in obj.ravel()[:1000])
        return True
    if isinstance(obj, (float, np.floating, complex, np.complexfloating)):
        return bool(np.isfinite(obj))
    if isinstance(obj, (tuple, list)):
        return all(_all_finite(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        return all(_all_finite(x, depth + 1) for x in obj.values())
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj) \
            and type(obj).__module__.startswith("refdet"):
        return all(_all_finite(x, depth + 1) for x in vars(obj).values())
    return True


def _snapshot(obj):
    try:
        return copy.deepcopy(obj)
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------------
# one call
# ---------------------------------------------------------------------------------------------------

class Outcome:
    __slots__ = ("value", "exc", "seconds", "warned")

    def __init__(self, value=None, exc=None, seconds=0.0, warned=None):
        self.value, self.exc, self.seconds, self.warned = value, exc, seconds, warned


def _call(f, args, kwargs):
    global _ACTIVE
    t0 = time.perf_counter()
    try:
        try:
            _ACTIVE = True
            signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS, 0.25)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                with np.errstate(all="warn"):
                    value = f(*args, **kwargs)
        finally:
            _ACTIVE = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        return Outcome(value=value, seconds=time.perf_counter() - t0,
                       warned=[str(x.message) for x in w if issubclass(x.category, RuntimeWarning)])
    except _Timeout:
        return Outcome(exc=_Timeout(f"no answer within {CALL_SECONDS} s"), seconds=time.perf_counter() - t0)
    except BaseException as e:  # noqa: BLE001  (everything is a finding)
        if isinstance(e, KeyboardInterrupt):
            raise
        e.__traceback__ = None  # the frames may hold what the call allocated (a MemoryError's gigabytes)
        return Outcome(exc=e, seconds=time.perf_counter() - t0)
    finally:
        _ACTIVE = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def _params(f, name):
    """(parameter name -> Parameter) that the walk varies (the instance of a method excluded)."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None, {}
    ps = dict(sig.parameters)
    if "." in name and name.split(".")[-2][:1].isupper() and ps and next(iter(ps)) == "self":
        ps.pop("self")
    return sig, {k: p for k, p in ps.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _names(msg, pname):
    return f"`{pname}" in msg


class Walker:
    """Runs the calls of a list of seeds and collects failures and counts."""

    def __init__(self, cases, *, examples=0, seeds_per_case=1, derandomize=True):
        self.cases = cases
        self.examples = examples
        self.derandomize = derandomize
        self.calls = 0
        self.functions = set()
        self.failures = []
        self.open = []      # findings in modules owned elsewhere (documented.OPEN): reported, not failing
        self.timings = {}
        self.slow = []

    # -- bookkeeping ---------------------------------------------------------------------------
    def fail(self, name, param, label, what, detail):
        if documented.excused(name, param, label, what):
            return
        if documented.open_finding(name, param, label, what):
            self.open.append({"function": name, "argument": param, "variant": label, "problem": what,
                              "detail": str(detail)[:200]})
            return
        self.failures.append({"function": name, "argument": param, "variant": label, "problem": what,
                              "detail": str(detail)[:400]})

    # -- building calls ------------------------------------------------------------------------
    def _bound(self, case, sig, rng_seed):
        args, kwargs = case.make(np.random.default_rng(rng_seed))
        ba = sig.bind_partial(*args, **kwargs)
        return ba

    @staticmethod
    def _variants(ba, pname, param):
        if pname in ba.arguments:
            return mutations(ba.arguments[pname])
        if param.default is inspect.Parameter.empty or param.kind == param.POSITIONAL_ONLY:
            return []
        return default_mutations(param.default)

    # -- the checks on one call ------------------------------------------------------------------
    def check(self, name, f, sig, case, rng_seed, changes, base=None):
        """Run ``f`` with ``changes`` = [(pname, mutation_index)] applied; check the promises.

        Returns the Outcome (or None if the variant does not exist for this seed).
        """
        is_cmp = name.startswith(COMPARATOR_PREFIXES)
        is_method = "self" in sig.parameters
        fresh_rng = False
        allowed = ALLOWED + (AssertionError,) if is_cmp else ALLOWED
        outs, inputs = [], []
        labels = []
        benign = True
        for attempt in range(2):
            ba = self._bound(case, sig, rng_seed)
            labels = []
            benign = True
            for pname, idx in changes:
                vs = self._variants(ba, pname, sig.parameters[pname])
                if idx >= len(vs):
                    return None
                m = vs[idx]
                if documented.skipped(name, pname, m.label):
                    return None
                ba.arguments[pname] = m.value
                labels.append(f"{pname}={m.label}")
                benign = benign and m.kind == BENIGN
            # a method's instance may change (an observer's update): only the arguments are watched
            watched = (ba.args[1:] if is_method else ba.args, ba.kwargs)
            before = _snapshot(watched)
            out = _call(f, ba.args, ba.kwargs)
            self.calls += 1
            if out.seconds > 0.5:
                self.slow.append((name, ",".join(labels) or "seed", round(out.seconds, 2)))
            outs.append(out)
            inputs.append((before, watched))
            fresh_rng = "rng" in sig.parameters and ba.arguments.get("rng") is None
            if out.exc is not None:
                break  # an error is checked once
        label = ",".join(labels) or "seed"
        pnames = [p for p, _ in changes]
        param = "+".join(pnames) or "-"
        o = outs[0]
        before, after = inputs[0]
        if before is not None and not _equal(before, after):
            self.fail(name, param, label, "modified", "an input changed during the call")
        if o.exc is not None:
            e = o.exc
            if isinstance(e, _Timeout):
                self.fail(name, param, label, "hang", str(e))
            elif not isinstance(e, allowed):
                self.fail(name, param, label, "crash", f"{type(e).__name__}: {e}")
            elif changes and not isinstance(e, AssertionError):
                msg = str(e)
                if not any(_names(msg, p) for p in pnames):
                    others = [p for p in sig.parameters if p not in pnames and _names(msg, p)]
                    # a changed length or shape may leave another argument unmatched: naming that one is fine
                    relational = any(lbl.split("=", 1)[1].split(".")[-1] in SHAPE_VARIANTS for lbl in labels)
                    if not (others and relational):
                        self.fail(name, param, label, "unnamed" if not others else "blames-other",
                                  f"{type(e).__name__}: {msg}")
            if benign and changes and base is not None and base.exc is None:
                self.fail(name, param, label, "layout", f"the seed answers but this view raises "
                                                        f"{type(e).__name__}: {e}")
            return o
        if documented.must_refuse(name, pnames, labels, self._seed_kinds(case, sig, rng_seed, pnames)):
            self.fail(name, param, label, "accepted", "a value outside the argument's domain was accepted")
        if len(outs) == 2 and not fresh_rng and not _equal(outs[0].value, outs[1].value):
            self.fail(name, param, label, "nondeterministic", "two identical calls answered differently")
        if _has_nan(o.value) and _all_finite(before if before is not None else after):
            self.fail(name, param, label, "nan", "NaN in the answer for finite inputs")
        if benign and changes and base is not None and base.exc is None and not _equal(base.value, o.value):
            self.fail(name, param, label, "layout", "a benign variant (view, list, scalar) changed the answer")
        return o

    def _seed_kinds(self, case, sig, rng_seed, pnames):
        """The kind ("float", "int", ...) of each varied argument's valid value (given or default)."""
        ba = self._bound(case, sig, rng_seed)
        out = {}
        for p in pnames:
            v = ba.arguments[p] if p in ba.arguments else sig.parameters[p].default
            if isinstance(v, float) or isinstance(v, np.floating):
                out[p] = "float"
            elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
                out[p] = "int"
            else:
                out[p] = type(v).__name__
        return out

    # -- the walk ---------------------------------------------------------------------------------
    def walk_case(self, case):
        name = case.name
        f = getattr(case, "fn", None) or resolve(name)
        sig, params = _params(f, name)
        if sig is None:
            return
        only = getattr(case, "only", ())
        if only:
            params = {k: v for k, v in params.items() if k in only}
        self.functions.add(name)
        t0 = time.perf_counter()
        base = self.check(name, f, sig, case, 0, [])
        if base is not None and base.exc is not None:
            self.fail(name, "-", "seed", "seed-fails", f"{type(base.exc).__name__}: {base.exc}")
            return
        ba = self._bound(case, sig, 0)
        for pname, param in params.items():
            for idx in range(len(self._variants(ba, pname, param))):
                self.check(name, f, sig, case, 0, [(pname, idx)], base=base)
        # an expensive seed (a conformance run, FuzzCase.only) gets a tenth of the combined examples:
        # none under ci, where its one-argument walk above is what the budget allows
        examples = self.examples // 10 if only else self.examples
        if examples:
            self.hypothesis_stage(name, f, sig, case, params, examples)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def hypothesis_stage(self, name, f, sig, case, params, examples):
        """Combined variants drawn by hypothesis: one or two arguments varied, other seeds."""
        from hypothesis import HealthCheck, given, settings, strategies as st

        names = list(params)
        if not names:
            return
        bases = {}

        @settings(max_examples=examples, deadline=None, database=None, derandomize=self.derandomize,
                  suppress_health_check=list(HealthCheck), phases=[__import__("hypothesis").Phase.generate])
        @given(st.data())
        def run(data):
            seed = data.draw(st.integers(0, 3), label="seed")
            k = data.draw(st.integers(1, min(2, len(names))), label="k")
            chosen = data.draw(st.lists(st.sampled_from(names), min_size=k, max_size=k, unique=True), label="args")
            ba = self._bound(case, sig, seed)
            changes = []
            for p in chosen:
                n = len(self._variants(ba, p, params[p]))
                if n == 0:
                    continue
                changes.append((p, data.draw(st.integers(0, n - 1), label=p)))
            if seed not in bases:              # the seed call's own answer, checked once per seed
                bases[seed] = self.check(name, f, sig, case, seed, [])
            base = bases[seed]
            if changes:
                self.check(name, f, sig, case, seed, changes, base=base)

        run()

    def walk(self, trace=None):
        for case in self.cases:
            if trace is not None:
                print(case.name, file=trace, flush=True)
            try:
                self.walk_case(case)
            except Exception as e:  # a broken seed or harness problem is a finding too
                self.fail(case.name, "-", "harness", "harness", f"{type(e).__name__}: {e}")
        return {"functions": len(self.functions), "calls": self.calls, "failures": self.failures, "open": self.open,
                "function_names": sorted(self.functions),
                "slowest": sorted(self.timings.items(), key=lambda kv: -kv[1])[:8],
                "slow_calls": sorted(self.slow, key=lambda t: -t[2])[:40]}


def _preload():
    """Import what refdet loads lazily before the address space is capped (a late import needs room)."""
    import hypothesis  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.sparse.linalg  # noqa: F401
    import refdet.testing.strategies  # noqa: F401
    import refdet.testing.conformance  # noqa: F401
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        pass


def cap_memory(gib):
    limit = int(gib * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cap = DEFAULT_CAP_GIB
    examples = 0
    if "--cap-gib" in argv:
        i = argv.index("--cap-gib")
        cap = float(argv[i + 1])
        del argv[i:i + 2]
    if "--examples" in argv:
        i = argv.index("--examples")
        examples = int(argv[i + 1])
        del argv[i:i + 2]
    if "--call-seconds" in argv:
        global CALL_SECONDS
        i = argv.index("--call-seconds")
        CALL_SECONDS = float(argv[i + 1])
        del argv[i:i + 2]
    selftest = "--selftest" in argv
    if selftest:
        argv.remove("--selftest")
    derandomize = "--random" not in argv       # --random: hypothesis draws new examples (the dev profile)
    if not derandomize:
        argv.remove("--random")
    _preload()
    if cap > 0:
        cap_memory(cap)
    signal.signal(signal.SIGALRM, _alarm)
    wanted = set(argv)
    if selftest:
        from tests.fuzz.wrong import CASES as pool
    else:
        pool = all_cases()
    cases = [c for c in pool if not wanted or c.name in wanted]
    import os

    report = Walker(cases, examples=examples, derandomize=derandomize).walk(trace=sys.stderr if os.environ.get("FUZZ_TRACE") else None)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
