"""Documented answers: hostile calls whose non-error answer is refdet's documented behaviour.

Each entry is ``(function, argument, variant, problem) -> reason``; ``"*"`` matches anything. Keep it
short: every entry is a promise written in the function's docstring.
"""
from __future__ import annotations

import fnmatch

TABLE = {
}


#: arguments whose valid values lie in [0, 1] (IoU and score thresholds, fractions, probabilities)
UNIT_INTERVAL = r"(.*thresh.*|.*fraction.*|.*_iou|iou_.*|high|low|.*prob.*|alpha|momentum|.*_rate|eta|beta)"
#: their hostile variants that must be refused
OUT_OF_UNIT = {"above1", "below0", "nan", "inf", "-inf", "npnan", "neg", "huge"}
#: variants that are never a count
NOT_A_COUNT = {"frac", "nan", "str"}


def must_refuse(function, pnames, labels):
    """Is a successful answer to this variant itself a finding (a value outside the domain accepted)?"""
    import re

    for p, lbl in zip(pnames, labels):
        variant = lbl.split("=", 1)[1]
        if re.fullmatch(UNIT_INTERVAL, p) and variant in OUT_OF_UNIT and not excused(function, p, variant, "accepted"):
            return True
    return False


def excused(function, argument, variant, problem):
    for (f, a, v, p), _reason in TABLE.items():
        if fnmatch.fnmatchcase(function, f) and fnmatch.fnmatchcase(argument, a) \
                and fnmatch.fnmatchcase(variant, v) and fnmatch.fnmatchcase(problem, p):
            return True
    return False
