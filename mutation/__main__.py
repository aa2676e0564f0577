"""``python -m mutation``: mutation testing of refdet's core (README, "Developer: mutation testing").

    python -m mutation list                     the modules, their test files, line and pragma counts
    python -m mutation run box_coder            one module (or a group: anchors, losses, quant, eval, ...)
    python -m mutation run --all                every module in setup.cfg [mutation]
    python -m mutation show box_coder           the surviving mutants of the last recorded run
    python -m mutation sample 40                the cross-check: a random sample from a second generator
    python -m mutation ci --budget 540          CI: the modules the change touched, within a time budget
    python -m mutation conventions trace|pin|check|render|pending   the convention-coverage table

``run`` drives mutmut 3 (mutation/engine.py): each module in its own work folder
``build/mutation/<name>/`` against its own test files, and writes mutation/results.md and
mutation/results.json. ``sample`` uses the in-house ast generator and fork-per-mutant runner
(mutation/mutants.py, runner.py, worker.py) only as the cross-check the issue asks for: mutants
nobody chose, from operators mutmut does not have (np.minimum <-> np.maximum, float32 <-> float64).
The worktree is never left mutated.
"""
from __future__ import annotations

import argparse
import datetime
import os
import random
import shutil
import sys

from mutation import config as C
from mutation import engine as E


def _cleanup(tree):
    shutil.rmtree(os.path.dirname(tree), ignore_errors=True)


def cmd_list(args, cfg):
    print(f"{'module':<20} {'file':<30} {'lines':>6} {'pragma':>7}  tests")
    for m in cfg.modules:
        with open(os.path.join(C.ROOT, m.path)) as fh:
            src = fh.read()
        n_pragma = sum("# pragma: no mutate" in ln for ln in src.splitlines())
        print(f"{m.name:<20} {m.path:<30} {len(src.splitlines()):>6} {n_pragma:>7}  {' '.join(m.test_files())}")


def _print_rec(rec, show):
    print(f"[{rec['name']}] {rec['mutants']} mutants: {rec['killed']} killed, {rec['survived']} survived, "
          f"{rec['equivalent']} equivalent: score {rec['score']:.1f}% in {rec['seconds']:.0f} s"
          + (f" (partial: {rec['not_checked']} not checked)" if rec.get("not_checked") else ""))
    for s in rec["survivors"][:show]:
        print(f"    line {s['line']:>4} `{s['before']}` -> `{s['after']}` in {s['scope']} ({s['status']}) "
              f"[{s['id']}]")


def cmd_run(args, cfg):
    mods = cfg.modules if args.all else cfg.select(args.modules)
    if not mods:
        raise SystemExit("name a module (python -m mutation list) or pass --all")
    for mod in mods:
        rec = E.run_module(mod, jobs=args.jobs, names=args.mutant or None, fresh=args.fresh,
                           timeout=args.budget)
        _print_rec(rec, args.show)
        if args.dry or args.mutant:
            continue
        if rec["killed"] + rec["survived"] == 0 and rec.get("not_checked"):
            # mutmut checked nothing (its stats pass failed, or the budget ended before the first
            # mutant): a row would read "100%, partial" and say nothing; keep the old record
            print(f"[{mod.name}] not recorded: mutmut checked no mutant (see "
                  f"{os.path.relpath(os.path.join(E.workdir(mod), 'mutmut.log'), C.ROOT)})")
            continue
        results = E.load_results()  # another run may have recorded other modules meanwhile
        if args.before and mod.name not in {h["name"] for h in results.get("history", [])}:
            results.setdefault("history", []).append(
                {k: v for k, v in rec.items() if k not in ("statuses", "hashes", "survivors")})
        results["modules"][mod.name] = rec
        E.save_results(results, cfg)
        if args.record:
            E.record_score(mod.name, rec["score"])


def cmd_show(args, cfg):
    results = E.load_results()
    for mod in cfg.select(args.modules):
        rec = results["modules"].get(mod.name)
        if rec is None:
            print(f"[{mod.name}] not run")
            continue
        _print_rec(rec, 10 ** 6)


def cmd_sample(args, cfg):
    from mutation import mutants as M
    from mutation import runner as R

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    mods = cfg.select(args.modules) if args.modules else list(cfg.modules)
    pool = []
    for mod in mods:
        with open(os.path.join(C.ROOT, mod.path)) as fh:
            src = fh.read()
        pool += [(mod, m) for m in M.generate(src, mod.path)]
    drawn = rng.sample(pool, min(args.n, len(pool)))
    print(f"seed {seed}: drew {len(drawn)} of {len(pool)} mutants")
    tree = R.make_copy()
    counts = {"killed": 0, "equivalent": 0, "survived": 0}
    rows = []
    try:
        for mod in dict.fromkeys(m for m, _ in drawn):
            ids = {mu.id for m, mu in drawn if m is mod}
            rec = R.run_module(mod, tree, cfg, jobs=args.jobs, only=ids, log=lambda *a: None)
            for mid in ids:
                st = rec["statuses"].get(mid, "not_run")
                key = "killed" if st in ("killed", "timeout") else ("equivalent" if st == "equivalent" else "survived")
                counts[key] += 1
                mu = next(mu for m, mu in drawn if mu.id == mid)
                rows.append((mod.name, mu, st))
                print(f"  {st:<10} {mu.describe()}")
    finally:
        _cleanup(tree)
    print(f"seed {seed}: {counts['killed']} killed, {counts['equivalent']} equivalent, {counts['survived']} survived")
    if not args.dry:
        results = E.load_results()
        results.setdefault("samples", []).append({"date": datetime.date.today().isoformat(), "seed": seed,
                                                  "modules": " ".join(args.modules) or "all",
                                                  "drawn": len(drawn), **counts,
                                                  "mutants": [f"{n}:{mu.id}:{st}" for n, mu, st in rows]})
        E.save_results(results, cfg)
    return 1 if counts["survived"] else 0


def _seconds(text):
    """argparse type: a positive number of seconds (a zero or negative budget would skip every module)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return v


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    import signal

    signal.signal(signal.SIGTERM, _sigterm)  # a killed run still removes its copy and its worker
    cfg = C.load()
    p = argparse.ArgumentParser(prog="python -m mutation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="modules, test files, mutant and pragma counts")
    r = sub.add_parser("run", help="run one module, a group, or --all")
    r.add_argument("modules", nargs="*")
    r.add_argument("--all", action="store_true")
    r.add_argument("--jobs", type=int, default=2, help="mutmut's --max-children (default 2)")
    r.add_argument("--mutant", nargs="*", default=None,
                   help="only these mutmut mutant names (a quick loop while writing tests; records nothing)")
    r.add_argument("--fresh", action="store_true", help="drop mutmut's cache: test every mutant again")
    r.add_argument("--budget", type=_seconds, default=None,
                   help="stop each mutmut run after this many seconds; the record is partial, with the "
                        "mutants not checked counted apart (a later run goes on from mutmut's cache)")
    r.add_argument("--dry", action="store_true", help="do not write mutation/results.*")
    r.add_argument("--show", type=int, default=50, help="print up to this many survivors per module")
    r.add_argument("--record", action="store_true",
                   help="write the module's score to mutation/scores.json (what CI holds it to)")
    r.add_argument("--before", action="store_true",
                   help="also record this run as the module's 'before' row (first run only)")
    s = sub.add_parser("show", help="the survivors of the last recorded run")
    s.add_argument("modules", nargs="+")
    sa = sub.add_parser("sample", help="re-run a random sample of mutants")
    sa.add_argument("n", type=int)
    sa.add_argument("modules", nargs="*")
    sa.add_argument("--seed", type=int)
    sa.add_argument("--jobs", type=int, default=1)
    sa.add_argument("--dry", action="store_true")
    ci = sub.add_parser("ci", help="CI: the modules the change touched, within a budget")
    ci.add_argument("--since", default=None, help="git revision of the previous landing (default HEAD^1)")
    ci.add_argument("--budget", type=_seconds, default=540.0, help="seconds (default 540)")
    ci.add_argument("--jobs", type=int, default=2)
    ci.add_argument("--max-modules", type=int, default=3, help="at most this many changed modules (smallest)")
    cv = sub.add_parser("conventions", help="the convention-coverage table")
    cv.add_argument("action", choices=("trace", "pin", "check", "render", "pending"))
    cv.add_argument("--ops", nargs="*", default=None, help="pin only these ops")
    cv.add_argument("--files", nargs="*", default=None, help="trace only these test files (merged)")
    cv.add_argument("--jobs", type=int, default=1)
    cv.add_argument("--budget", type=_seconds, default=None,
                    help="seconds of (unswapped) test time a swap may run (default: SWAP_TEST_SECONDS)")
    cv.add_argument("--pinned-first", action="store_true",
                    help="run the *_pinned.py tests first, with larger caps (a retry of the survivors)")
    args = p.parse_args(argv)
    if args.cmd == "list":
        return cmd_list(args, cfg)
    if args.cmd == "run":
        return cmd_run(args, cfg)
    if args.cmd == "show":
        return cmd_show(args, cfg)
    if args.cmd == "sample":
        return cmd_sample(args, cfg)
    if args.cmd == "ci":
        from mutation import ci as CI
        return CI.main(args, cfg)
    if args.cmd == "conventions":
        from mutation import convention_coverage as CC
        return CC.main(args, cfg)


if __name__ == "__main__":
    sys.exit(main())
