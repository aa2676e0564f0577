"""Which tests pin each value of each convention option (``mutation/convention_coverage.{md,json}``).

A value is *pinned* when a test would fail if the branch it selects computed something else. Two
steps, both in a temporary copy of the tree:

``trace``
    The whole test suite runs once with :mod:`mutation.conventions_trace`: for each test, the
    ``(op, knob, value)`` triples of every profile the library resolved (``--files``: only those
    files, merged into the cached trace).
``pin``
    For every value ``v`` of every option (each profile's value, each allowed value of a ``choice``,
    both values of a ``flag``) and every *alternative* ``w`` (the option's other allowed values; for a
    number, the other profiles' values, or ``2 v`` when no profile differs), a *swap* makes
    :func:`refdet.conventions.resolve` hand out ``w`` wherever the library would get ``v`` for that
    op and knob (a test, or refdet's testing/reference oracles, reading the registry still read
    ``v``), and runs the tests that resolved ``v``: generic files last, fastest first, ``-x``, at most
    :data:`SWAP_MAX_TESTS` tests from :data:`SWAP_MAX_FILES` files and ``--budget`` seconds. The
    first failing test pins ``v`` against ``w``. A value is pinned when every alternative is caught
    (or is in :data:`EQUIVALENT_SWAPS`). Incremental: a swap keeps its result while it would run the
    same tests; a swap killed by a test that still passes stays killed.

``render`` writes the table from the two; ``pending`` writes the values it does not pin to
``tests/conventions_not_yet_pinned.txt``; ``check`` compares the committed table with the live
registry (what ``tests/test_conventions_pinned.py`` does).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import subprocess
import sys
import time

from mutation import runner as R
from mutation.worker import same_value

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE_JSON = os.path.join(HERE, "convention_coverage.json")
TABLE_MD = os.path.join(HERE, "convention_coverage.md")
TRACE = os.path.join(R.CACHE, "convention-trace.json")
SWAPS = os.path.join(R.CACHE, "convention-swaps.jsonl")
#: tests that read the registry itself (profiles against their table): they resolve every value but
#: pin none of the branches (the trace of an older plugin recorded their direct calls)
NOT_SWAP_TESTS = ("tests/test_conventions.py::", "tests/test_conventions_pinned.py::")
#: a swap runs the fastest tests resolving the value until their baseline time reaches this (s)
SWAP_TEST_SECONDS = 20.0
#: ... from at most this many test files, at most this many tests (a swap's child collects each file
#: it runs: with eleven files, collecting took longer than the tests)
SWAP_MAX_FILES = 2
SWAP_MAX_TESTS = 12

_IOU_FAMILY = tuple(f"{f}{p}" for f in ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
                    for p in ("", "_paired"))
#: Swaps that cannot change any result, each with its reason (and the test that shows it). A swap
#: between two values of one group is reported as equivalent, not run, and counts as pinned.
EQUIVALENT_SWAPS = [
    {"ops": _IOU_FAMILY, "knob": "guard", "values": ("inter_gt_0", "skip_degenerate", "pfr"),
     "reason": "one function: I > 0 needs iw > 0 and ih > 0, hence positive areas and U > 0 "
               "(tests/test_iou_pinned.py::test_zero_writing_guards_are_one_function)"},
    {"ops": ("decode_boxes", "decode_boxes_forward"), "knob": "weight_mode", "values": ("multiply", "multiply_after"),
     "reason": "decoding divides the delta by the weight under both (they differ only in encode's order of "
               "operations): forward and backward bit-identical "
               "(tests/test_box_coder_conventions_pinned.py::test_decode_multiply_and_multiply_after_are_one_function)"},
    {"ops": ("fpn_init",), "knob": "p6p7_input", "values": ("auto", "c5"),
     "reason": "fpn_init only sizes the P6 weight from it: C5's channels under both (fpn_forward tells them apart) "
               "(tests/test_fpn_conventions_pinned.py::test_fpn_init_p6_sources_with_one_shape_are_one_function)"},
    {"ops": ("fpn_init",), "knob": "p6p7_input", "values": ("p5", "lateral"),
     "reason": "fpn_init only sizes the P6 weight from it: F channels under both "
               "(tests/test_fpn_conventions_pinned.py::test_fpn_init_p6_sources_with_one_shape_are_one_function)"},
    {"ops": ("multibox_loss",), "knob": "zero_positive", "values": ("max1", "zero"),
     "reason": "with no positive nothing is mined (3 * 0 negatives): the sum / max(1, 0) is 0, the paper's 0; "
               "forward and backward bit-identical "
               "(tests/test_losses_detector_conventions_pinned.py::test_zero_positive_max1_and_zero_are_one_function)"},
    {"ops": ("roi_align", "multiscale_roi_align"), "knob": "sampling_ratio", "values": (-1, 0),
     "reason": "every sampling_ratio <= 0 is the adaptive grid ceil(size / output): same bits forward and "
               "backward (tests/test_roi_conventions_pinned.py::"
               "test_roi_align_sampling_ratio_minus_one_and_zero_are_one_function)"},
    {"ops": ("filter_proposals",), "knob": "score", "values": ("logit", "probability"),
     "reason": "both take the objectness as the score (only 'sigmoid' transforms it); the two names say what "
               "the input holds (detectron2's logits, py-faster-rcnn's softmax probabilities) "
               "(tests/test_pinned_proposals.py::test_score_logit_and_probability_are_one_function)"},
    {"ops": ("filter_proposals",), "knob": "nms_profile", "values": ("torchvision", "mmdet"),
     "reason": "refdet.nms's 'mmdet' and 'torchvision' profiles are one table (mmcv nms = torchvision's "
               "greedy NMS), and the sparse speed path taken under 'torchvision' is exact "
               "(tests/test_pinned_proposals.py::test_nms_profile_torchvision_and_mmdet_are_one_function)"},
]


def equivalent_swap(op, knob, v, w):
    """The reason the swap ``v -> w`` of ``op``'s ``knob`` cannot change a result, or None."""
    for rule in EQUIVALENT_SWAPS:
        if op in rule["ops"] and knob == rule["knob"] and any(same_value(v, x) for x in rule["values"]) \
                and any(same_value(w, x) for x in rule["values"]):
            return rule["reason"]
    return None


def _key(v) -> str:
    return pickle.dumps(v, protocol=4).hex()


def _validate(opt, v, knob, op) -> bool:
    if v is None:
        return opt.allow_none
    try:
        w = opt.validate(v, knob, op)
    except (TypeError, ValueError):
        return False
    return same_value(w, v)


def alternatives(opt, v, values, knob, op) -> list:
    """The values ``v`` is swapped for: what the branch would compute if the option said otherwise.

    A flag: the other bool. A choice: every other allowed value. A number, an integer or another
    shape: the values other profiles set; when none differs, one nudge (``v + 1`` for an integer,
    ``2 v`` (or 1 for 0) for a number, else ``v / 2``), the first the declaration accepts.
    """
    if opt.kind == "flag":
        cands, nudge = ([True, False] if v is None else [not v]), False
    elif opt.kind == "choice":
        cands, nudge = list(opt.allowed), False
    else:
        cands, nudge = [c for c in values if not same_value(c, v)], False
        if not cands and v is not None and not isinstance(v, bool):
            if opt.kind == "integer":
                cands, nudge = [v + 1, v - 1], True
            elif isinstance(v, float) and math.isfinite(v):
                cands, nudge = [2.0 * v if v != 0 else 1.0, 0.5 * v if v != 0 else 0.5], True
    out = []
    for c in cands:
        if same_value(c, v) or any(same_value(c, o) for o in out):
            continue
        if _validate(opt, c, knob, op):
            out.append(c)
            if nudge:
                break
    return out


def load_registry() -> None:
    """Import every refdet module that registers a convention table (``import refdet`` alone misses
    the ones it does not import, e.g. ``refdet.tf_ops``): found by reading the sources, not by
    importing the whole package."""
    import importlib
    import re

    import refdet

    pkg = os.path.dirname(os.path.abspath(refdet.__file__))
    pat = re.compile(r"^\s*(?:conventions|_conv|C)\.register\(|^\s*register\(", re.M)
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        for f in filenames:
            if not f.endswith(".py") or f == "__main__.py":
                continue
            path = os.path.join(dirpath, f)
            with open(path, encoding="utf-8") as fh:
                if not pat.search(fh.read()):
                    continue
            rel = os.path.relpath(path, os.path.dirname(pkg))[:-3].replace(os.sep, ".")
            importlib.import_module(rel[: -len(".__init__")] if rel.endswith(".__init__") else rel)


def registry_values():
    """[(op, knob, value, [alternatives])] for every value of every option of every registered op."""
    from refdet import conventions

    load_registry()
    out = []
    for op in conventions.ops():
        t = conventions.describe(op)
        for knob, opt in t.options.items():
            vals = []

            def add(v):
                if not any(same_value(v, w) for w in vals):
                    vals.append(v)

            for p in t:
                add(t[p][knob])
            if opt.kind == "choice":
                for a in opt.allowed:
                    add(a)
            if opt.kind == "flag":
                add(False)
                add(True)
            for v in vals:
                out.append((op, knob, v, alternatives(opt, v, vals, knob, op)))
    return out


def trace(tree: str, log=print, files=None) -> dict:
    """Run the suite once in ``tree`` recording the convention values each test resolves (only
    ``files``, merged into the cached trace, when given)."""
    out = os.path.join(os.path.dirname(tree), "trace.json")
    env = R._env(tree)
    env["REFDET_CONVENTION_TRACE"] = out
    env["HYPOTHESIS_PROFILE"] = "mutation"
    t0 = time.perf_counter()
    log(f"conventions: tracing {', '.join(files) if files else 'the whole suite'} ...")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "mutation.conventions_trace", "-o", "addopts=", "-W", "ignore", *(files or ["tests"])],
                          cwd=tree, env=env, capture_output=True, text=True)
    if not os.path.exists(out):
        raise RuntimeError(f"the trace run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(out) as fh:
        data = json.load(fh)
    data["seconds"] = time.perf_counter() - t0
    if files and os.path.exists(TRACE):
        with open(TRACE) as fh:
            old = json.load(fh)
        keep = {n: r for n, r in old["tests"].items() if n.split("::")[0] not in files}
        keep.update(data["tests"])
        data = {"tests": keep, "seconds": old.get("seconds", 0.0), "resolve_calls": old.get("resolve_calls")}
    os.makedirs(R.CACHE, exist_ok=True)
    with open(TRACE, "w") as fh:
        json.dump(data, fh)
    log(f"conventions: traced {len(data['tests'])} tests in {data['seconds']:.0f} s")
    return data


def _item_id(op, knob, v, w) -> str:
    return hashlib.sha1(f"{op}|{knob}|{_key(v)}|{_key(w)}".encode()).hexdigest()[:12]


def _digest(tests) -> str:
    return hashlib.sha1("\n".join(tests).encode()).hexdigest()[:8]


#: test files whose tests check properties that hold under every convention (memory layout, bad
#: input, fuzzing, API contracts): run last in a swap, they seldom tell two values apart
GENERIC_TEST_FILES = ("test_contract", "test_hardening", "test_fuzz", "test_layout", "test_readme", "test_docs",
                      "test_public_api", "test_api")


def _rank(name, duration, pinned_first=False):
    """Order of the tests a swap runs: the fastest first, the generic ones last; ``pinned_first`` (the
    retry of the survivors, ``pin --pinned-first``): the ``*_pinned.py`` files before the others. (Not
    by default: a pinned test resolving a value on its way to another filled the budget.)"""
    base = os.path.basename(name.split("::")[0])
    return (0 if pinned_first and "pinned" in base else 1, 1 if base.startswith(GENERIC_TEST_FILES) else 0,
            duration, name)


def plan(trace_data: dict, ops=None, budget=None, pinned_first=False) -> list:
    tests = {n: r for n, r in trace_data["tests"].items() if r["outcome"] == "passed" and not n.startswith(NOT_SWAP_TESTS)}
    by_value = {}
    for n, r in tests.items():
        for op, knob, key in r["values"]:
            by_value.setdefault((op, knob, key), []).append(n)
    items = []
    for op, knob, v, alts in registry_values():
        if ops and op not in ops:
            continue
        users = sorted(by_value.get((op, knob, _key(v)), []), key=lambda n: _rank(n, tests[n]["duration"], pinned_first))
        chosen, total, files = [], 0.0, set()
        for n in users:
            if chosen and (total >= (SWAP_TEST_SECONDS if budget is None else budget)
                           or len(chosen) >= SWAP_MAX_TESTS * (2 if pinned_first else 1)):
                break
            f = n.split("::")[0]
            if f not in files and len(files) >= SWAP_MAX_FILES + (1 if pinned_first else 0):
                continue
            files.add(f)
            chosen.append(n)
            total += tests[n]["duration"]
        for w in alts:
            if equivalent_swap(op, knob, v, w):
                continue
            base = _item_id(op, knob, v, w)
            items.append({"id": f"{base}-{_digest(chosen)}", "base": base, "op": op, "knob": knob, "value": _key(v),
                          "to": _key(w), "tests": chosen, "resolved_by": len(users),
                          "timeout": 5.0 * total + 30.0})
    return items


def _load_swaps() -> list:
    out = []
    if os.path.exists(SWAPS):
        with open(SWAPS) as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    return out


def cached(items: list, trace_data: dict, strict: bool = True) -> dict:
    """``{base id: result or None}``: a swap's recorded result, when it still holds. A swap run on
    exactly the tests it would run now keeps its result; a swap killed by a test that still passes
    unswapped stays killed whatever tests were added. Anything else runs again: a survivor whose
    test set changed (a new test resolves the value) is re-run, nothing else (the incremental pin).
    Not ``strict`` (rendering): a swap with neither takes its latest result."""
    passing = {n for n, r in trace_data["tests"].items() if r["outcome"] == "passed"}
    by_id, killed, latest = {}, {}, {}
    for r in _load_swaps():
        by_id[r["id"]] = r
        latest[r["id"].split("-")[0]] = r
        if r["status"] in ("killed", "timeout") and (r["killer"] in passing or r["killer"].startswith("<")) \
                and r["killer"] != "":
            killed[r["id"].split("-")[0]] = r
    out = {}
    for it in items:
        # a kill by a test that still passes wins: one failing test pins the value against it
        out[it["base"]] = killed.get(it["base"]) or by_id.get(it["id"]) or (None if strict else latest.get(it["base"]))
    return out


def pin(tree: str, trace_data: dict, *, jobs=1, ops=None, budget=None, pinned_first=False, log=print) -> dict:
    items = plan(trace_data, ops, budget, pinned_first)
    done = cached(items, trace_data)
    runnable = [it for it in items if it["tests"] and done[it["base"]] is None]
    log(f"conventions: {len(items)} swaps, {sum(1 for it in items if not it['tests'])} of values no test "
        f"resolves, {len(runnable)} to run ({sum(r is not None for r in done.values())} cached)")
    if runnable:
        tmp = os.path.dirname(tree)
        files = sorted({n.split("::")[0] for it in runnable for n in it["tests"]})
        job = os.path.join(tmp, "job-swaps.json")
        with open(job, "w") as fh:
            json.dump({"kind": "swap", "test_files": files, "items": runnable, "jobs": jobs, "tmpdir": tmp}, fh)
        os.makedirs(R.CACHE, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "mutation.worker", "items", job, SWAPS], cwd=tree,
                                env=R._env(tree), stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "worker-swaps.log"), "w"))
        t0 = last = time.perf_counter()
        try:
            while proc.poll() is None:
                time.sleep(2.0)
                if time.perf_counter() - last > 60:
                    log(f"conventions: {R._count_lines(SWAPS)} swaps recorded ({time.perf_counter() - t0:.0f} s)")
                    last = time.perf_counter()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        log(f"conventions: {len(runnable)} swaps run in {time.perf_counter() - t0:.0f} s")
        done = cached(items, trace_data)
    return done


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def render(trace_data: dict, swaps: dict) -> dict:
    """The table (json) from the trace and the swap results; also writes the markdown."""
    tests = {n: r for n, r in trace_data["tests"].items() if r["outcome"] == "passed" and not n.startswith(NOT_SWAP_TESTS)}
    count = {}
    for n, r in tests.items():
        for op, knob, key in r["values"]:
            count[(op, knob, key)] = count.get((op, knob, key), 0) + 1
    rows = []
    for op, knob, v, alts in registry_values():
        entry = {"op": op, "knob": knob, "value": _show(v), "key": _key(v),
                 "resolved_by": count.get((op, knob, _key(v)), 0), "against": []}
        for w in alts:
            r = swaps.get(_item_id(op, knob, v, w))
            why = equivalent_swap(op, knob, v, w)
            if why:
                st, test = "equivalent", why
            else:
                st = "unresolved" if entry["resolved_by"] == 0 else ("not run" if r is None else r["status"])
                test = r["killer"] if r and r["status"] in ("killed", "timeout") else ""
            entry["against"].append({"to": _show(w), "key": _key(w), "status": st, "test": test})
        entry["pinned"] = all(a["status"] in ("killed", "timeout", "equivalent") for a in entry["against"]) and (
            entry["resolved_by"] > 0)
        rows.append(entry)
    used = [r for r in swaps.values() if r is not None]
    stats = {"values": len(rows), "pinned": sum(r["pinned"] for r in rows),
             "swaps": sum(len(r["against"]) for r in rows),
             "swaps_caught": sum(a["status"] in ("killed", "timeout", "equivalent") for r in rows for a in r["against"]),
             "tests_traced": len(trace_data["tests"]), "trace_seconds": round(trace_data.get("seconds", 0.0)),
             "resolve_calls": trace_data.get("resolve_calls"),
             "swap_seconds": round(sum(r.get("time", 0.0) for r in used))}
    table = {"generated_by": "python -m mutation conventions pin", "stats": stats, "values": rows}
    with open(TABLE_JSON, "w") as fh:
        json.dump(table, fh, indent=1)
        fh.write("\n")
    with open(TABLE_MD, "w") as fh:
        fh.write(render_md(table))
    return table


def render_md(table: dict) -> str:
    rows = table["values"]
    pinned = sum(r["pinned"] for r in rows)
    lines = ["# Convention coverage: each option value and the tests that pin it", "",
             "Generated by `python -m mutation conventions trace` + `pin` (see `mutation/convention_coverage.py`).",
             "For each value of each option of each op in `refdet.conventions`, *resolved by* counts the tests",
             "that resolve it; each alternative is a swap (the option says the alternative wherever it said the",
             "value) and the test named is the first that fails on it (*equivalent*: the two values compute the",
             "same on every input, `EQUIVALENT_SWAPS`, with the test that shows it; **SURVIVED**: no test tried",
             "failed; **NOT RUN**: the swap was not run yet). `tests/test_conventions_pinned.py` fails when a",
             "registry value is missing here, or is not pinned and not listed in",
             "`tests/conventions_not_yet_pinned.txt` (a list that may only shrink).", "",
             f"{pinned} of {len(rows)} values pinned.", "",
             *([f"Trace: {st['tests_traced']} tests in {st['trace_seconds']} s ({st['resolve_calls']} calls of "
                f"`resolve`); swaps: {st['swaps_caught']} of {st['swaps']} caught, {st['swap_seconds']} s of "
                "swap runs.", ""] if (st := table.get("stats")) else []),
             "| op | knob | value | resolved by | pinned against: alternative -> first failing test |",
             "|---|---|---|---:|---|"]
    for r in rows:
        parts = []
        for a in r["against"]:
            if a["status"] in ("killed", "timeout"):
                t = a["test"].replace("tests/", "")
                parts.append(f"`{a['to']}` -> {t}")
            elif a["status"] == "equivalent":
                parts.append(f"`{a['to']}` -> equivalent: {a['test']}")
            else:
                parts.append(f"`{a['to']}` -> **{a['status'].upper()}**")
        lines.append(f"| {r['op']} | {r['knob']} | `{r['value']}` | {r['resolved_by']} | "
                     f"{'<br>'.join(parts) if parts else '(no alternative)'} |")
    return "\n".join(lines) + "\n"


def check(table: dict) -> list:
    """Problems: registry values missing from ``table``, or not pinned against every alternative."""
    have = {(r["op"], r["knob"], r["key"]): r for r in table["values"]}
    problems = []
    live = registry_values()
    gone = set(have) - {(op, knob, _key(v)) for op, knob, v, _ in live}
    for op, knob, key in sorted(gone):
        problems.append(f"{op}.{knob} = {have[(op, knob, key)]['value']}: in the table but no longer in the registry "
                        "(regenerate the table)")
    for op, knob, v, alts in live:
        r = have.get((op, knob, _key(v)))
        if r is None:
            problems.append(f"{op}.{knob} = {v!r}: not in the table (regenerate: python -m mutation conventions pin)")
            continue
        keys = {a["key"] for a in r["against"]}
        missing = [w for w in alts if _key(w) not in keys]
        if missing:
            problems.append(f"{op}.{knob} = {v!r}: alternatives {missing!r} not tried (regenerate the table)")
        if not r["pinned"]:
            bad = [a["to"] for a in r["against"] if a["status"] not in ("killed", "timeout", "equivalent")]
            why = "no test resolves it" if r["resolved_by"] == 0 else f"no test fails when it becomes {bad}"
            problems.append(f"{op}.{knob} = {v!r}: not pinned ({why})")
    return problems


PENDING = os.path.join(os.path.dirname(HERE), "tests", "conventions_not_yet_pinned.txt")


def pending_lines(table: dict) -> list:
    """``op.knob=value  # why`` for every value ``table`` does not pin (tests/conventions_not_yet_pinned.txt)."""
    out = []
    for r in table["values"]:
        if r["pinned"]:
            continue
        bad = [a for a in r["against"] if a["status"] not in ("killed", "timeout", "equivalent")]
        if r["resolved_by"] == 0:
            why = "no test resolves it"
        elif all(a["status"] == "not run" for a in bad):
            why = "swap not run yet: " + ", ".join(a["to"] for a in bad)
        else:
            why = "; ".join(f"-> {a['to']}: {a['status']}" for a in bad)
        out.append(f"{r['op']}.{r['knob']}={r['value']}  # {why}")
    return out


def main(args, cfg):
    if args.action == "check":
        if not os.path.exists(TABLE_JSON):
            print("no table yet: python -m mutation conventions trace, then pin")
            return 1
        with open(TABLE_JSON) as fh:
            problems = check(json.load(fh))
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)")
        return 1 if problems else 0
    if args.action == "pending":
        with open(TABLE_JSON) as fh:
            lines = pending_lines(json.load(fh))
        with open(PENDING, "w") as fh:
            fh.write("# Convention values the committed table (mutation/convention_coverage.md) does not pin yet,\n"
                     "# with why. tests/test_conventions_pinned.py: the list may only shrink. Written by\n"
                     "# python -m mutation conventions pending.\n")
            fh.writelines(line + "\n" for line in lines)
        print(f"{len(lines)} value(s) not pinned -> {PENDING}")
        return 0
    if args.action == "render":
        with open(TRACE) as fh:
            data = json.load(fh)
        table = render(data, cached(plan(data), data, strict=False))
        print(f"{sum(r['pinned'] for r in table['values'])} of {len(table['values'])} values pinned")
        return 0
    tree = R.make_copy()
    try:
        if args.action == "trace" or not os.path.exists(TRACE):
            data = trace(tree, files=args.files)
        else:
            with open(TRACE) as fh:
                data = json.load(fh)
        if args.action == "pin":
            pin(tree, data, jobs=args.jobs, ops=args.ops, budget=args.budget, pinned_first=args.pinned_first)
            # the table always covers every op (a pin of some ops keeps the others' recorded results)
            table = render(data, cached(plan(data, budget=args.budget), data, strict=False))
            print(f"{sum(r['pinned'] for r in table['values'])} of {len(table['values'])} values pinned")
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(tree), ignore_errors=True)
    return 0
