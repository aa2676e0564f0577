"""The bounded CI step: mutants of the modules a change touched, compared with the recorded scores.

``python -m mutation ci [--since REV] [--budget SECONDS] [--jobs N]``

1. The modules: those whose file, or one of whose test files, changed since ``--since`` (default: the
   previous landing, ``HEAD^1``); when none did (or git cannot tell), one module by rotation (the day
   of the year picks it), so every module is re-checked in turn.
2. Within the budget, split evenly between them: first the mutants the record does not know (new
   code), then the recorded ones in an order drawn from the date.
3. Each module's score is *projected*: the recorded statuses with the re-run mutants' new statuses in
   place. The step fails when a projected score is below the module's score in
   ``mutation/scores.json``, or when a mutant the record says was killed now survives, and prints
   those mutants.
"""
from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import time

from mutation import config as C
from mutation import mutants as M
from mutation import runner as R


def changed_files(since):
    try:
        rev = since or "HEAD^1"
        out = subprocess.run(["git", "diff", "--name-only", rev, "HEAD"], cwd=C.ROOT, capture_output=True,
                             text=True, check=True).stdout
        extra = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=C.ROOT, capture_output=True,
                               text=True, check=True).stdout  # uncommitted edits count too
    except (OSError, subprocess.CalledProcessError):
        return None
    return {line.strip() for line in (out + extra).splitlines() if line.strip()}


def touched_modules(cfg, files):
    if not files:
        return []
    out = []
    for m in cfg.modules:
        if m.path in files or any(t in files for t in m.test_files()):
            out.append(m)
    return out


def load_scores():
    if os.path.exists(R.SCORES_JSON):
        with open(R.SCORES_JSON) as fh:
            return json.load(fh)
    return {}


def main(args, cfg):
    t_start = time.time()
    deadline_all = t_start + args.budget
    files = changed_files(args.since)
    mods = touched_modules(cfg, files)
    today = datetime.date.today()
    if not mods:
        mods = [cfg.modules[today.timetuple().tm_yday % len(cfg.modules)]]
        why = "no core module changed" if files is not None else "git cannot tell what changed"
        print(f"mutation ci: {why}; today's module by rotation: {mods[0].name}")
    else:
        print(f"mutation ci: changed modules: {', '.join(m.name for m in mods)}")
    results = R.load_results()
    scores = load_scores()
    failed = []
    tree = R.make_copy()
    try:
        for i, mod in enumerate(mods):
            left = deadline_all - time.time()
            share = left / (len(mods) - i)
            if share < 30:
                print(f"[{mod.name}] skipped: the budget is spent")
                continue
            deadline = time.time() + share
            rec = results["modules"].get(mod.name, {})
            known = rec.get("statuses", {})
            with open(os.path.join(tree, mod.path)) as fh:
                ms = M.generate(fh.read(), mod.path)
            new = [m.id for m in ms if m.id not in known and not m.equivalent]
            old = [m.id for m in ms if m.id in known and not m.equivalent]
            random.Random(today.toordinal()).shuffle(old)
            order = new + old
            got = R.run_module(mod, tree, cfg, jobs=args.jobs, only=set(order), order=order, deadline=deadline,
                               log=print)
            fresh = {k: v for k, v in got["statuses"].items() if v != "not_run"}
            current = {m.id for m in ms}
            merged = {k: v for k, v in known.items() if k in current}
            merged.update(fresh)
            merged.update({m.id: "equivalent" for m in ms if m.equivalent})
            ran = [v for v in merged.values() if v not in ("equivalent", "not_run")]
            killed = sum(v in ("killed", "timeout") for v in ran)
            projected = 100.0 * killed / len(ran) if ran else 100.0
            regressed = [k for k, v in fresh.items() if v not in ("killed", "timeout", "equivalent")
                         and known.get(k) in ("killed", "timeout")]
            newly = [k for k, v in fresh.items() if v in ("survived", "uncovered", "error") and k not in known]
            floor = scores.get(mod.name)
            n_run = sum(1 for v in fresh.values() if v not in ("equivalent",))
            print(f"[{mod.name}] re-ran {n_run} of {len(current)} mutants ({len(new)} new): projected score "
                  f"{projected:.1f}% (recorded {floor if floor is not None else 'none'})")
            by_id = {m.id: m for m in ms}
            for k in regressed:
                print(f"    killed before, survives now: {by_id[k].describe()}")
            for k in newly:
                print(f"    new surviving mutant: {by_id[k].describe()}")
            if regressed or (floor is not None and projected + 1e-9 < floor):
                failed.append(mod.name)
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(tree), ignore_errors=True)
    print(f"mutation ci: {time.time() - t_start:.0f} s")
    if failed:
        print(f"mutation ci: FAILED: the score dropped in {', '.join(failed)}")
        return 1
    return 0
