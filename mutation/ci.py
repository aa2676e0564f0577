"""The bounded CI step: mutmut on the modules a change touched, compared with the recorded scores.

``python -m mutation ci [--since REV] [--budget SECONDS] [--jobs N]``

1. The modules: those whose file, or one of whose test files, changed since ``--since`` (default: the
   previous landing, ``HEAD^1``), at most ``--max-modules`` of them (the smallest first); when none
   did (or git cannot tell), one module by rotation (the day of the year picks it), so every module
   is re-checked in turn.
2. Within the budget, split evenly between them, mutmut runs: first the mutants the record does not
   know (functions whose code changed since the recorded run), then recorded ones in an order drawn
   from the date, as many as the module's recorded time per mutant lets the share hold.
3. Each module's score is *projected* on the recorded mutants (those of functions whose code has not
   changed since the record): the recorded statuses with the re-run ones' new statuses in place. The
   step fails when a projected score is below the module's score in ``mutation/scores.json``, or
   when a mutant the record says a test killed now survives, and prints those mutants. Survivors
   among the mutants of changed or new code are printed too, but have no recorded score to fall
   below until the module is run again with ``--record``.
"""
from __future__ import annotations

import datetime
import os
import random
import subprocess
import time

from mutation import config as C
from mutation import engine as E

STATS_SECONDS = 90.0   # mutmut's one pass over the module's tests before the mutants, and start-up


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
    return [m for m in cfg.modules if m.path in files or any(t in files for t in m.test_files())]


def _function_of(name: str) -> str:
    return name.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]


def known_statuses(rec: dict, gen: dict) -> dict:
    """The recorded statuses still valid: those of functions whose code has not changed."""
    old_h = rec.get("hashes", {})
    new_h = gen["hashes"]
    names = set(gen["names"])
    out = {}
    for k, v in rec.get("statuses", {}).items():
        f = _function_of(k)
        if v == "not checked":   # a partial record's unchecked mutant is no verdict to hold
            continue
        if k in names and f in new_h and old_h.get(f) == new_h[f]:
            out[k] = v
    return out


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
        if len(mods) > args.max_modules:
            mods = sorted(mods, key=lambda m: os.path.getsize(os.path.join(C.ROOT, m.path)))[: args.max_modules]
            print(f"mutation ci: more modules changed than fit; the {args.max_modules} smallest")
        print(f"mutation ci: changed modules: {', '.join(m.name for m in mods)}")
    results = E.load_results()
    scores = E.load_scores()
    failed = []
    for i, mod in enumerate(mods):
        left = deadline_all - time.time()
        share = left / (len(mods) - i)
        if share < STATS_SECONDS + 30:
            print(f"[{mod.name}] skipped: the budget is spent")
            continue
        t0 = time.time()
        E.prepare(mod)
        gen = E.probe(mod, "names")
        rec = results["modules"].get(mod.name, {})
        known = known_statuses(rec, gen)
        new = [n for n in gen["names"] if n not in known]
        old = sorted(known)
        random.Random(today.toordinal()).shuffle(old)
        per = rec["seconds"] * max(1, args.jobs) / max(1, len(rec.get("statuses", {}))) if rec else 2.0
        per = max(per, 0.5)
        room = share - (time.time() - t0) - STATS_SECONDS
        n = max(5, int(room * args.jobs / per / 1.5)) if room > 0 else 5
        chosen = (new + old)[:n]
        E.run_mutmut(mod, names=chosen, jobs=args.jobs, timeout=max(60.0, share - (time.time() - t0)))
        st = E.statuses(mod)
        fresh = {k: st[k] for k in chosen if st.get(k) not in (None, "not checked")}
        # the recorded score is held on the recorded mutants (functions unchanged since); mutants of
        # changed or new code have no recorded score yet: their survivors are printed, not held
        merged = dict(known)
        merged.update({k: v for k, v in fresh.items() if k in known})
        killed = sum(v in E.KILLED for v in merged.values())
        projected = 100.0 * killed / len(merged) if merged else 100.0
        # a test failure recorded, a survivor now (a recorded timeout may have been the load's doing)
        regressed = [k for k, v in fresh.items() if v not in E.KILLED and known.get(k) == "killed"]
        newly = [k for k, v in fresh.items() if v not in E.KILLED and k not in known]
        floor = scores.get(mod.name)
        if floor is not None and known:
            # the record's own score on the same mutants: dropping functions changed since moves it
            floor = min(floor, 100.0 * sum(v in E.KILLED for v in known.values()) / len(known))
        print(f"[{mod.name}] re-ran {len(fresh)} of {len(gen['names'])} mutants ({len(new)} not in the record) in "
              f"{time.time() - t0:.0f} s: projected score {projected:.1f}% (recorded "
              f"{f'{floor:.2f}%' if floor is not None else 'none'} on the same mutants)")
        bad = regressed + newly
        if bad:
            diffs = E.probe(mod, "diffs", *bad)
            for k in bad:
                d = E.describe(mod, k, diffs.get(k, ""))
                why = "killed before, survives now" if k in regressed else "new surviving mutant"
                print(f"    {why}: line {d['line']} `{d['before']}` -> `{d['after']}` in {d['scope']} [{k}]")
        if regressed or (floor is not None and projected + 1e-9 < floor):
            failed.append(mod.name)
    print(f"mutation ci: {time.time() - t_start:.0f} s")
    if failed:
        print(f"mutation ci: FAILED: the score dropped in {', '.join(failed)}")
        return 1
    return 0
