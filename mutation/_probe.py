"""Runs inside a module's mutmut work folder (``build/mutation/<name>``), where mutmut's configuration
is: what mutmut generates for one file, and the diffs of named mutants. Prints JSON on stdout.

    python -m mutation._probe names PATH          {"names": [...], "hashes": {...}, "unpragma": n}
    python -m mutation._probe diffs PATH NAME...  {NAME: diff, ...}
"""
from __future__ import annotations

import json
import sys


def names(path: str) -> dict:
    from mutmut.mutation.file_mutation import create_mutations, mutate_file_contents

    with open(path) as fh:
        code = fh.read()
    got = mutate_file_contents(path, code)
    # the mutants the pragmas hold back: generated again with every pragma switched off
    with_pragmas = len(create_mutations(path, code)[1])
    without = len(create_mutations(path, code.replace("# pragma: no mutate", "# pragma-off: no-mutate"))[1])
    prefix = path[:-3].replace("/", ".") + "."   # mutmut's keys: refdet.box_coder.x__decode__mutmut_1
    if prefix.endswith(".__init__."):
        prefix = prefix[: -len("__init__.")]
    return {"names": [prefix + n for n in got.mutant_names], "hashes": dict(got.hash_by_function_name),
            "equivalent": without - with_pragmas}


def diffs(path: str, keys) -> dict:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    out = {}
    for k in keys:
        try:
            out[k] = get_diff_for_mutant(k, path=path)
        except Exception as e:  # a stale index: say so instead of failing the whole report
            out[k] = f"(no diff: {type(e).__name__}: {e})"
    return out


if __name__ == "__main__":
    what, path, *rest = sys.argv[1:]
    json.dump(names(path) if what == "names" else diffs(path, rest), sys.stdout)
