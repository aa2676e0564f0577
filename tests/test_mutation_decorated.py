"""mutation/engine.py: the functions carrying ``@conventions.documented`` are mutated too.

mutmut 3 generates no mutant in a decorated function; the public functions with a convention table
(nms, batched_nms, soft_nms, box_area, box_iou, decode_boxes, match, ...) were silently skipped. The
engine's work copy applies the decorator after the module instead (engine.undecorate).
"""
import subprocess
import sys

import pytest

from mutation import engine as E

SRC = '''\
from refdet import conventions


@conventions.documented("toy")
def f(x):
    """doc"""
    return x + 1


@other
def g(x):
    return x


    @conventions.documented("inner")
    def h(x):
        return x
'''


def test_undecorate_applies_the_table_after_the_module_and_keeps_line_numbers():
    out = E.undecorate(SRC)
    lines, before = out.splitlines(), SRC.splitlines()
    assert lines[3].startswith('# @conventions.documented("toy")') and "applied at the end of the module" in lines[3]
    assert lines[4] == "def f(x):"
    # every other line unchanged and in place; only the top-level decorator of a def is moved
    assert [ln for i, ln in enumerate(lines[:len(before)]) if i != 3] == [ln for i, ln in enumerate(before) if i != 3]
    assert lines[-1] == 'f = conventions.documented("toy")(f)'
    assert "@other" in out and '    @conventions.documented("inner")' in out
    assert E.undecorate("def f():\n    return 1\n") == "def f():\n    return 1\n"


def test_undecorated_functions_get_mutants(tmp_path):
    pytest.importorskip("mutmut")
    (tmp_path / "setup.cfg").write_text("[mutmut]\nsource_paths = .\n")
    (tmp_path / "a.py").write_text(SRC)
    (tmp_path / "b.py").write_text(E.undecorate(SRC))
    code = ("from mutmut.mutation.file_mutation import mutate_file_contents\n"
            "for p in ('a.py', 'b.py'):\n"
            "    names = mutate_file_contents(p, open(p).read()).mutant_names\n"
            "    print(p, any(n.startswith('x_f__') for n in names))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["a.py", "False", "b.py", "True"]   # mutmut skips the decorated f


def test_a_non_positive_budget_is_refused_in_one_line():
    # a zero or negative budget used to be accepted and skip every module ("the budget is spent")
    for args in (["ci", "--budget", "-5"], ["conventions", "pin", "--budget", "0"], ["run", "iou", "--budget", "0"]):
        out = subprocess.run([sys.executable, "-m", "mutation", *args], capture_output=True, text=True)
        assert out.returncode == 2 and "must be > 0 seconds" in out.stderr and "Traceback" not in out.stderr
