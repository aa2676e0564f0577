"""Run a module's mutants against its own tests, in a temporary copy of the tree.

The worktree is never written to, except ``mutation/results.{md,json}`` and the cache
``mutation/.cache/`` (baselines and partial results, so an interrupted run resumes).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from mutation import config as C
from mutation import mutants as M

ROOT = C.ROOT
HERE = os.path.join(ROOT, "mutation")
CACHE = os.path.join(HERE, ".cache")

_IGNORE = shutil.ignore_patterns(".git", ".venv*", "__pycache__", ".hypothesis", ".cache", "*.egg-info",
                                 ".pytest_cache", "mutants", "docs", "benchmarks", "build")


def make_copy(root: str = ROOT) -> str:
    """A temporary copy of the tree (sources, tests, config): mutants run there, never here."""
    tmp = tempfile.mkdtemp(prefix="refdet-mutation-")
    dst = os.path.join(tmp, "tree")
    shutil.copytree(root, dst, ignore=_IGNORE, symlinks=True)
    return dst


def _env(tree: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=tree, CI="true", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               HYPOTHESIS_STORAGE_DIRECTORY=os.path.join(tree, ".hypothesis"), PYTHONDONTWRITEBYTECODE="1")
    return env


def _digest(paths: List[str], extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for p in sorted(paths):
        h.update(p.encode())
        with open(p, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:16]


def _code_files(tree: str) -> List[str]:
    """What a baseline depends on: the library, the tests, and the worker that runs them."""
    out = [os.path.join(tree, "mutation", "worker.py")]
    for d in ("refdet", "tests"):
        for base, _, files in os.walk(os.path.join(tree, d)):
            out += [os.path.join(base, f) for f in files if f.endswith(".py")]
    return out


def baseline(mod: C.Module, tree: str, log=print) -> dict:
    """The unmutated run of ``mod``'s test files: per-test lines of ``mod`` executed, durations."""
    tests = mod.test_files(tree)
    key = _digest(_code_files(tree), mod.path + "|" + " ".join(tests))
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"baseline-{mod.name}-{key}.json")
    if os.path.exists(path):
        with open(path) as fh:
            data = json.load(fh)
        data["key"] = key
        return data
    log(f"[{mod.name}] baseline: {len(tests)} test file(s), coverage per test ...")
    t0 = time.perf_counter()
    out = os.path.join(os.path.dirname(tree), f"baseline-{mod.name}.json")
    cmd = [sys.executable, "-m", "mutation.worker", "baseline", mod.path, out, *tests]
    proc = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True)
    if not os.path.exists(out):
        raise RuntimeError(f"baseline of {mod.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(out) as fh:
        data = json.load(fh)
    data["seconds"] = time.perf_counter() - t0
    failed = [n for n, r in data["tests"].items() if r["outcome"] == "failed"]
    if failed:
        log(f"[{mod.name}] warning: {len(failed)} test(s) fail unmutated and are not used: {failed[:5]}")
    with open(path, "w") as fh:
        json.dump(data, fh)
    data["key"] = key
    return data


def plan(mod: C.Module, tree: str, base: dict, cfg: C.Config) -> List[dict]:
    """Each mutant with the tests that execute its line (fastest first) and its time limit."""
    with open(os.path.join(tree, mod.path)) as fh:
        source = fh.read()
    ms = M.generate(source, mod.path)
    tests = {n: r for n, r in base["tests"].items() if r["outcome"] == "passed"}
    by_line: Dict[int, set] = {}
    for n, r in tests.items():
        for ln in r["lines"]:
            by_line.setdefault(ln, set()).add(n)
    users = {n for n, r in tests.items() if r["lines"]}
    items = []
    for m in ms:
        if m.level == "module":
            sel = set(users)
        else:
            sel = set()
            for ln in set(range(m.line, m.end_line + 1)) | {m.stmt_line}:
                sel |= by_line.get(ln, set())
        order = sorted(sel, key=lambda n: (tests[n]["duration"], n))
        budget = sum(tests[n]["duration"] for n in order)
        items.append({"mutant": m.to_json(), "tests": order,
                      "timeout": cfg.timeout_factor * budget + cfg.timeout_constant})
    return items


def run_module(mod: C.Module, tree: str, cfg: C.Config, *, jobs: int = 1, only: Optional[set] = None,
               fresh: bool = False, log=print, deadline: Optional[float] = None,
               order: Optional[List[str]] = None) -> dict:
    """Run ``mod``'s mutants (all, or the ids in ``only``; in ``order`` if given, until ``deadline``,
    a ``time.time()``); returns the module's record."""
    t0 = time.perf_counter()
    base = baseline(mod, tree, log=log)
    items = plan(mod, tree, base, cfg)
    equivalent = [it for it in items if it["mutant"]["equivalent"]]
    todo = [it for it in items if not it["mutant"]["equivalent"] and (only is None or it["mutant"]["id"] in only)]
    statuses: Dict[str, dict] = {}
    for it in equivalent:
        statuses[it["mutant"]["id"]] = {"status": "equivalent", "killer": it["mutant"]["reason"], "time": 0.0}
    uncovered = [it for it in todo if not it["tests"]]
    for it in uncovered:
        statuses[it["mutant"]["id"]] = {"status": "uncovered", "killer": "", "time": 0.0}
    runnable = [it for it in todo if it["tests"]]
    ids = ",".join(sorted(it["mutant"]["id"] for it in runnable))
    partial = os.path.join(CACHE, f"partial-{mod.name}-{base['key']}-{hashlib.sha1(ids.encode()).hexdigest()[:8]}.jsonl")
    done: Dict[str, dict] = {}
    if os.path.exists(partial) and not fresh:
        with open(partial) as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                done[r["id"]] = r
    elif os.path.exists(partial):
        os.unlink(partial)
    pending = [it for it in runnable if it["mutant"]["id"] not in done]
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        pending.sort(key=lambda it: rank.get(it["mutant"]["id"], len(rank)))
    log(f"[{mod.name}] {len(items)} mutants: {len(equivalent)} marked equivalent, {len(uncovered)} on lines no "
        f"test executes, {len(runnable)} to run ({len(done)} already done); baseline {base.get('seconds', 0):.0f} s")
    if pending:
        tmp = os.path.dirname(tree)
        job = os.path.join(tmp, f"job-{mod.name}.json")
        with open(job, "w") as fh:
            json.dump({"kind": "mutant", "target": mod.path, "test_files": mod.test_files(tree),
                       "items": [dict(it, id=it["mutant"]["id"]) for it in pending],
                       "jobs": jobs, "tmpdir": tmp,
                       "ops_by_test": {n: r.get("ops", []) for n, r in base["tests"].items()}}, fh)
        cmd = [sys.executable, "-m", "mutation.worker", "items", job, partial]
        proc = subprocess.Popen(cmd, cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, f"worker-{mod.name}.log"), "w"))
        seen = 0
        last = time.perf_counter()
        try:
            while True:
                rc = proc.poll()
                n = _count_lines(partial)
                if n != seen and (time.perf_counter() - last > 30 or rc is not None):
                    log(f"[{mod.name}] {n}/{len(runnable)} run ({time.perf_counter() - t0:.0f} s)")
                    last = time.perf_counter()
                seen = n
                if rc is not None:
                    break
                if deadline is not None and time.time() > deadline:
                    proc.terminate()
                    proc.wait()
                    break
                time.sleep(1.0)
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        if proc.returncode not in (0, None, -15):
            with open(os.path.join(tmp, f"worker-{mod.name}.log")) as fh:
                raise RuntimeError(f"the worker of {mod.name} failed:\n{fh.read()[-3000:]}")
        with open(partial) as fh:
            for line in fh:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                done[r["id"]] = r
    for it in runnable:
        r = done.get(it["mutant"]["id"])
        if r is not None:
            statuses[it["mutant"]["id"]] = {"status": r["status"], "killer": r["killer"], "time": r["time"]}
    return summarise(mod, items, statuses, time.perf_counter() - t0, base, complete=(only is None and all(
        it["mutant"]["id"] in statuses for it in items)))


def _count_lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as fh:
        return sum(1 for _ in fh)


def summarise(mod, items, statuses, seconds, base, complete=True) -> dict:
    counts = {k: 0 for k in ("killed", "timeout", "survived", "uncovered", "equivalent", "error", "not_run")}
    survivors = []
    for it in items:
        m = it["mutant"]
        st = statuses.get(m["id"], {"status": "not_run"})["status"]
        counts[st] += 1
        if st in ("survived", "uncovered", "error"):
            survivors.append({"id": m["id"], "line": m["line"], "op": m["op"], "scope": m["scope"],
                              "before": m["before"], "after": m["after"], "status": st,
                              "tests": len(it["tests"])})
    ran = counts["killed"] + counts["timeout"] + counts["survived"] + counts["uncovered"] + counts["error"]
    score = (counts["killed"] + counts["timeout"]) / ran if ran else 1.0
    return {"name": mod.name, "path": mod.path, "test_files": mod.test_files(ROOT), "mutants": len(items),
            **counts, "score": round(100.0 * score, 2), "seconds": round(seconds, 1),
            "baseline_seconds": round(base.get("seconds", 0.0), 1), "complete": complete,
            "date": datetime.date.today().isoformat(),
            "statuses": {mid: s["status"] for mid, s in sorted(statuses.items())},
            "killers": {mid: s["killer"] for mid, s in sorted(statuses.items()) if s["status"] in ("killed",)},
            "survivors": survivors}


# --------------------------------------------------------------------------------------------------
# the committed record
# --------------------------------------------------------------------------------------------------
