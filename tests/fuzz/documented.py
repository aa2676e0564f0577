"""Documented answers: hostile calls whose non-error answer is refdet's documented behaviour.

Each entry is ``(function, argument, variant, problem) -> reason``; ``"*"`` matches anything. Keep it
short: every entry is a promise written in the function's docstring.
"""
from __future__ import annotations

import fnmatch

TABLE = {
}


def excused(function, argument, variant, problem):
    for (f, a, v, p), _reason in TABLE.items():
        if fnmatch.fnmatchcase(function, f) and fnmatch.fnmatchcase(argument, a) \
                and fnmatch.fnmatchcase(variant, v) and fnmatch.fnmatchcase(problem, p):
            return True
    return False
