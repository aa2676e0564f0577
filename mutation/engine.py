"""The engine: mutmut 3, one core module at a time, against that module's own test files.

For each module of ``setup.cfg [mutation]`` a work folder ``build/mutation/<name>/`` gets a copy of
``refdet/``, ``tests/`` and ``conftest.py`` and a ``setup.cfg`` whose ``[mutmut]`` section is the
repository's ``[mutmut]`` section (the shared settings) plus three per-module keys::

    only_mutate = refdet/box_coder.py
    pytest_add_cli_args_test_selection = tests/test_box_coder.py
    source_paths = refdet/

and ``mutmut run`` runs there. mutmut keeps its own cache in ``build/mutation/<name>/mutants/``: a
second run re-tests only the functions whose code (or tests) changed. The copies mean the worktree
is never mutated, and modules can run one after another without invalidating each other's cache.

Statuses are mutmut's (``mutmut.stats.status_by_exit_code``): *killed* and *timeout* count as
killed; *survived*, *no tests* (no test of the module's own files reaches the function), *suspicious*,
*segfault* and *not checked* count against the score. *Equivalent* mutants are the ones the
``# pragma: no mutate`` lines hold back (mutmut does not generate them; they are counted by
generating the file again with the pragmas switched off).
"""
from __future__ import annotations

import configparser
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from mutation import config as C

ROOT = C.ROOT
WORK = os.path.join(ROOT, "build", "mutation")
RESULTS_JSON = os.path.join(ROOT, "mutation", "results.json")
RESULTS_MD = os.path.join(ROOT, "mutation", "results.md")
SCORES_JSON = os.path.join(ROOT, "mutation", "scores.json")

KILLED = ("killed", "timeout")
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env.setdefault("HYPOTHESIS_PROFILE", "ci")
    env.setdefault("CI", "true")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def workdir(mod: C.Module) -> str:
    return os.path.join(WORK, mod.name)


def _sync_tree(src: str, dst: str) -> None:
    """Make ``dst`` a copy of ``src`` (files that changed are rewritten; files gone are removed)."""
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=_COPY_IGNORE)


_DOCUMENTED = re.compile(r"^@conventions\.documented\((?P<op>[^()]*)\)[ \t]*$")
_DEF = re.compile(r"^def (?P<name>\w+)\(")


def undecorate(code: str) -> str:
    """``code`` with each module-level ``@conventions.documented("op")`` applied after the module instead.

    mutmut 3 does not mutate a decorated function at all (``file_mutation.py``: decorators run at
    definition time), so the public functions that carry their convention table, the ones whose branches
    the conventions select, would never be mutated. In the work copy the decorator line becomes a comment
    (line numbers stay those of the worktree's file) and ``name = conventions.documented("op")(name)``
    is appended at the end: the same docstring, and a function mutmut sees.
    """
    lines = code.splitlines()
    tail = []
    for i, ln in enumerate(lines):
        m = _DOCUMENTED.match(ln)
        if not m:
            continue
        d = next((_DEF.match(x) for x in lines[i + 1:] if not x.startswith("@")), None)
        if d is None:
            continue  # a decorated class or method: left as it is
        lines[i] = "# " + ln + "  (mutation engine: applied at the end of the module)"
        tail.append(f"{d.group('name')} = conventions.documented({m.group('op')})({d.group('name')})")
    if not tail:
        return code
    return "\n".join(lines + ["", ""] + tail) + "\n"


def prepare(mod: C.Module) -> str:
    """The module's work folder, with the current sources and its mutmut configuration."""
    wd = workdir(mod)
    os.makedirs(wd, exist_ok=True)
    for d in ("refdet", "tests"):
        _sync_tree(os.path.join(ROOT, d), os.path.join(wd, d))
    target = os.path.join(wd, mod.path)
    with open(target) as fh:
        code = fh.read()
    new = undecorate(code)
    if new != code:
        with open(target, "w") as fh:
            fh.write(new)
    # a cache made before undecorate() holds no test for the functions it uncovered (mutmut collects
    # the tests of each function once, then only for new tests): collect them all again, once
    marker = os.path.join(wd, ".undecorated")
    if not os.path.exists(marker):
        stats = os.path.join(wd, "mutants", "mutmut-stats.json")
        if os.path.exists(stats):
            os.remove(stats)
        open(marker, "w").close()
    for f in ("conftest.py",):
        if os.path.exists(os.path.join(ROOT, f)):
            shutil.copy2(os.path.join(ROOT, f), os.path.join(wd, f))
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(os.path.join(ROOT, "setup.cfg"))
    out = configparser.ConfigParser(interpolation=None)
    if cp.has_section("tool:pytest"):
        out["tool:pytest"] = dict(cp["tool:pytest"])
    base = dict(cp["mutmut"]) if cp.has_section("mutmut") else {}
    tests = mod.test_files(ROOT)
    if not tests:
        raise SystemExit(f"[{mod.name}] no test file matches {' '.join(mod.test_globs)}")
    base.update(source_paths="refdet/", only_mutate=mod.path,
                pytest_add_cli_args_test_selection="\n" + "\n".join(tests))
    out["mutmut"] = base
    text = _render_cfg(out)
    path = os.path.join(wd, "setup.cfg")
    old = open(path).read() if os.path.exists(path) else None
    if old != text:
        with open(path, "w") as fh:
            fh.write(text)
    return wd


def _render_cfg(cp: configparser.ConfigParser) -> str:
    lines = []
    for sec in cp.sections():
        lines.append(f"[{sec}]")
        for k, v in cp[sec].items():
            v = v.strip("\n")
            lines.append(f"{k} = {v}" if "\n" not in v else f"{k} =\n" + "\n".join(
                "    " + x.strip() for x in v.splitlines() if x.strip()))
        lines.append("")
    return "\n".join(lines)


def probe(mod: C.Module, what: str, *args: str) -> dict:
    wd = workdir(mod)
    out = subprocess.run([sys.executable, "-m", "mutation._probe", what, mod.path, *args], cwd=wd, env=_env(),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"[{mod.name}] mutation._probe {what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def _mutmut() -> List[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "mutmut")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("mutmut")
    if found:
        return [found]
    raise SystemExit("mutmut is not installed: pip install -e '.[mutation]'")


def run_mutmut(mod: C.Module, names: Optional[List[str]] = None, jobs: int = 1, log=print,
               timeout: Optional[float] = None) -> float:
    """``mutmut run`` in the module's work folder (all its mutants, or ``names``); returns seconds."""
    wd = workdir(mod)
    cmd = _mutmut() + ["run", "--max-children", str(jobs)] + list(names or [])
    t0 = time.perf_counter()
    with open(os.path.join(wd, "mutmut.log"), "w") as fh:
        # its own process group: a timeout (or Ctrl-C) ends mutmut's forked children too
        p = subprocess.Popen(cmd, cwd=wd, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except BaseException as e:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            if not isinstance(e, subprocess.TimeoutExpired):
                raise
            rc = "timeout (the budget)"
    seconds = time.perf_counter() - t0
    if rc != 0:
        with open(os.path.join(wd, "mutmut.log"), errors="replace") as fh:
            tail = fh.read()[-2000:].replace("\r", "\n")
        log(f"[{mod.name}] mutmut run ended with {rc} after {seconds:.0f} s; log tail:\n{tail}")
    return seconds


def statuses(mod: C.Module) -> Dict[str, str]:
    """Each mutant's status in the work folder's mutmut record."""
    from mutmut.stats import status_by_exit_code

    meta = os.path.join(workdir(mod), "mutants", mod.path + ".meta")
    if not os.path.exists(meta):
        return {}
    with open(meta) as fh:
        data = json.load(fh)
    return {k: status_by_exit_code[v] for k, v in data["exit_code_by_key"].items()}


_NAME = re.compile(r"^(?P<mod>[\w.]+)\.x(?:ǁ(?P<cls>\w+)ǁ)?_?_?(?P<fn>.+)__mutmut_(?P<i>\d+)$")


def scope_of(name: str) -> str:
    """``refdet.box_coder.x__decode__mutmut_3`` -> ``_decode``; methods as ``Class.method``."""
    tail = name.rsplit(".", 1)[-1]
    tail = tail[1:] if tail.startswith("x") else tail
    tail = tail.rsplit("__mutmut_", 1)[0]
    if "ǁ" in tail:
        parts = [p for p in tail.split("ǁ") if p]
        return ".".join(parts)
    return tail[1:] if tail.startswith("_") else tail


def describe(mod: C.Module, name: str, diff: str) -> dict:
    """Line (in the file), before and after of one mutant, from mutmut's function diff."""
    scope = scope_of(name)
    before = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    line = 0
    with open(os.path.join(ROOT, mod.path)) as fh:
        src = fh.read().splitlines()
    fn = scope.rsplit(".", 1)[-1]
    start = next((i for i, s in enumerate(src) if re.match(rf"\s*(async\s+)?def {re.escape(fn)}\(", s)), None)
    if start is not None and before:
        for i in range(start, len(src)):
            if src[i].strip() == before[0]:
                line = i + 1
                break
    return {"id": name, "scope": scope, "line": line, "before": " / ".join(before), "after": " / ".join(after)}


def run_module(mod: C.Module, jobs: int = 1, log=print, names: Optional[List[str]] = None,
               timeout: Optional[float] = None, fresh: bool = False) -> dict:
    """Run mutmut on one module; return its record.

    Without ``names``: mutmut's cache in the work folder keeps the verdicts of functions whose code
    did not change (``fresh`` drops it), mutmut tests every other mutant, and then every mutant whose
    verdict came from the cache and is not killed is run once more by name against the current
    tests (tests added since a survivor was recorded get their chance; a mutant this run has just
    tested is not run twice). With ``names``: only those.
    """
    prepare(mod)
    if fresh:
        shutil.rmtree(os.path.join(workdir(mod), "mutants"), ignore_errors=True)
    gen = probe(mod, "names")
    # verdicts already in the cache: only these can predate the current tests (a mutant this run
    # tested has just met them, and running it again would only repeat the answer)
    cached = {k for k, v in statuses(mod).items() if v != "not checked"}
    seconds = run_mutmut(mod, names=names, jobs=jobs, log=log, timeout=timeout)
    if names is None and not fresh:
        again = [k for k, v in statuses(mod).items()
                 if k in set(gen["names"]) and k in cached and v not in KILLED]
        left = None if timeout is None else timeout - seconds
        if again and (left is None or left > 0):
            log(f"[{mod.name}] re-running {len(again)} mutant(s) not killed in the record against the current tests")
            seconds += run_mutmut(mod, names=again, jobs=jobs, log=log, timeout=left)
    st = statuses(mod)
    st = {k: v for k, v in st.items() if k in set(gen["names"])}
    surv = sorted(k for k, v in st.items() if v not in KILLED and v != "not checked")
    diffs = probe(mod, "diffs", *surv) if surv else {}
    return summarise(mod, gen, st, seconds, [dict(describe(mod, k, diffs.get(k, "")), status=st[k]) for k in surv],
                     complete=names is None)


def summarise(mod: C.Module, gen: dict, st: Dict[str, str], seconds: float, survivors: List[dict],
              complete: bool = True) -> dict:
    killed = sum(v in KILLED for v in st.values())
    ran = len(gen["names"])
    # a run stopped by its budget leaves mutants without a verdict: they are neither killed nor
    # survived, the score is over the checked ones, and the record says it is partial
    not_checked = sum(st.get(k, "not checked") == "not checked" for k in gen["names"])
    checked = ran - not_checked
    survived = checked - killed
    eq = gen["equivalent"]
    score = 100.0 * killed / checked if checked else 100.0
    rec = {"name": mod.name, "path": mod.path, "test_files": mod.test_files(ROOT), "mutants": ran + eq,
           "killed": killed, "survived": survived, "equivalent": eq, "score": round(score, 2),
           "seconds": round(seconds, 1), "complete": complete and not not_checked,
           "date": datetime.date.today().isoformat(), "engine": "mutmut", "hashes": gen["hashes"],
           "statuses": dict(sorted(st.items())),
           "survivors": [s for s in survivors if s.get("status") != "not checked"]}
    if not_checked:
        rec["not_checked"] = not_checked
    return rec


# --------------------------------------------------------------------------------------------------
# the committed record
# --------------------------------------------------------------------------------------------------

def load_results() -> dict:
    if os.path.exists(RESULTS_JSON):
        with open(RESULTS_JSON) as fh:
            data = json.load(fh)
        if data.get("engine") == "mutmut":
            return data
    return {"engine": "mutmut", "modules": {}, "history": [], "samples": []}


def load_scores() -> dict:
    if os.path.exists(SCORES_JSON):
        with open(SCORES_JSON) as fh:
            return json.load(fh)
    return {}


def record_score(name: str, score: float) -> None:
    """Set ``name``'s recorded score (CI fails when a later run projects below it)."""
    scores = load_scores()
    scores[name] = score
    with open(SCORES_JSON, "w") as fh:
        json.dump(dict(sorted(scores.items())), fh, indent=1)
        fh.write("\n")


def save_results(results: dict, cfg: C.Config) -> None:
    with open(RESULTS_JSON, "w") as fh:
        json.dump(results, fh, indent=1, sort_keys=True, ensure_ascii=False)
        fh.write("\n")
    with open(RESULTS_MD, "w") as fh:
        fh.write(render_md(results, cfg))


def _row(r: dict) -> str:
    partial = "" if r.get("complete", True) else f" (partial: {r.get('not_checked', '?')} not checked)"
    return (f"{r['mutants']} | {r['killed']} | {r['survived']} | {r['equivalent']} | {r['score']:.1f}%{partial} | "
            f"{r['seconds']:.0f} | {r['date']} |")


def render_md(results: dict, cfg: C.Config) -> str:
    lines = ["# Mutation testing: the core modules against their own tests", "",
             "Generated by `python -m mutation run` (README, \"Developer: mutation testing\"); the engine is",
             "mutmut 3, each module mutated against the test files whose names contain its name. A mutant",
             "is *killed* when one of those tests fails on it (or it runs past mutmut's time limit),",
             "*survived* when they all pass (or none of them reaches it), *equivalent* when its line carries",
             "`# pragma: no mutate` with the reason. Score = killed / (mutants - equivalent). Times are",
             "wall-clock seconds of `mutmut run` on the shared 2-core machine (2 children), test",
             "collection included.", "",
             "| module | file | mutants | killed | survived | equivalent | score | time (s) | date |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    mods = results.get("modules", {})
    for m in cfg.modules:
        r = mods.get(m.name)
        if r is None:
            lines.append(f"| {m.name} | `{m.path}` | | | | | not run | | |")
        else:
            lines.append(f"| {m.name} | `{m.path}` | " + _row(r))
    if mods:
        rs = list(mods.values())
        n, k, s, e = (sum(r[x] for r in rs) for x in ("mutants", "killed", "survived", "equivalent"))
        t = sum(r["seconds"] for r in rs)
        lines.append(f"| **all run** | | {n} | {k} | {s} | {e} | {100.0 * k / max(1, n - e):.1f}% | {t:.0f} | |")
    notes = [(m.name, mods[m.name]["note"]) for m in cfg.modules if m.name in mods and mods[m.name].get("note")]
    if notes:
        lines += [""] + [f"- {name}: {note}." for name, note in notes]
    history = results.get("history", [])
    if history:
        lines += ["", "## Before the tests that kill the survivors", "",
                  "Each module's first full mutmut run on this branch:", "",
                  "| module | mutants | killed | survived | equivalent | score | time (s) | date |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for h in history:
            lines.append(f"| {h['name']} | " + _row(h))
    samples = results.get("samples", [])
    if samples:
        lines += ["", "## Random samples (the in-house generator, `python -m mutation sample`)", "",
                  "First-order mutants drawn at random by a second generator (seed from the OS, printed;",
                  "nobody chose them) and run against the same test files:", "",
                  "| date | seed | modules | drawn | killed | equivalent | survived |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for s in samples:
            lines.append(f"| {s['date']} | {s['seed']} | {s.get('modules', 'all')} | {s['drawn']} | {s['killed']} | "
                         f"{s['equivalent']} | {s['survived']} |")
    surv = [(name, x) for name, r in mods.items() for x in r.get("survivors", [])]
    if surv:
        lines += ["", "## Surviving mutants", "", "| module | line | mutant | in | status |",
                  "|---|---:|---|---|---|"]
        for name, x in surv:
            b = x["before"].replace("|", "\\|")
            a = x["after"].replace("|", "\\|")
            lines.append(f"| {name} | {x['line']} | `{b}` -> `{a}` | `{x['scope']}` | {x['status']} |")
    return "\n".join(lines) + "\n"
