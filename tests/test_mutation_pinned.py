"""The mutation-testing setup itself (``mutation/``): the generator, the code swap, the pragma budget.

The per-module runs are a developer command (``python -m mutation run``), not a test; these tests
hold the pieces it is built from to their contract, and the repository to its rule that at most 2% of
the core modules' lines carry ``# pragma: no mutate``, each with its reason.
"""
import ast
import os
import types

import pytest

from mutation import config as C
from mutation import mutants as M
from mutation import worker as W

ROOT = C.ROOT

SNIPPET = '''\
"""doc"""
LIMIT = 3


def f(a, b, plus_one=False, mode="x"):
    """doc"""
    w = a - b
    if plus_one:
        w += 1
    if mode == "y" and w > 0:
        return max(w, 0)
    raise ValueError(f"bad {a}")
'''


def _ops(ms):
    return sorted((m.line, m.op, m.before, m.after) for m in ms)


def test_generator_finds_each_operator_once_per_site():
    ms = M.generate(SNIPPET, "snippet.py")
    got = _ops(ms)
    # LIMIT = 3 (module level), the default False, "a - b", "if plus_one", "w += 1" (operator and 1),
    # "mode == 'y'" (== and the string), "and", "w > 0" (> and 0), max -> min, its 0; nothing in the
    # docstrings or the raise; a constant under a unary minus reads -1 -> -2
    assert _ops(M.generate("x = -1\n", "m.py")) == [(1, "number", "-1", "-2")]
    assert got == sorted([
        (2, "number", "3", "4"),
        (5, "bool", "False", "True"),
        (7, "binop", "a - b", "a + b"),
        (8, "negate", "plus_one", "not plus_one"),
        (9, "augassign", "w += 1", "w -= 1"),
        (9, "number", "1", "2"),
        (10, "boolop", "mode == 'y' and w > 0", "mode == 'y' or w > 0"),
        (10, "compare", "mode == 'y'", "mode != 'y'"),
        (10, "string", "'y'", "'XXyXX'"),
        (10, "compare", "w > 0", "w >= 0"),
        (10, "number", "0", "1"),
        (11, "twin", "max", "min"),
        (11, "number", "0", "1"),
    ])
    levels = {(m.line, m.op): m.level for m in ms}
    assert levels[(2, "number")] == "module" and levels[(5, "bool")] == "module"   # run at import
    assert levels[(7, "binop")] == "function" and ms[0].scope == "<module>"
    assert len({m.id for m in ms}) == len(ms)


def test_ids_survive_edits_elsewhere():
    a = {m.id for m in M.generate(SNIPPET, "snippet.py") if m.scope == "f"}
    b = {m.id for m in M.generate("import os\n\n\n" + SNIPPET.replace("LIMIT = 3", "LIMIT = 5"), "snippet.py")
         if m.scope == "f"}
    assert a == b


def test_apply_changes_exactly_one_node():
    src = SNIPPET
    for m in M.generate(src, "snippet.py"):
        tree = M.apply(src, m)
        diff = [(x, y) for x, y in zip(ast.unparse(ast.parse(src)).splitlines(), ast.unparse(tree).splitlines())
                if x != y]
        assert len(diff) == 1, (m.describe(), diff)


def test_pragma_marks_the_line_equivalent_with_its_reason():
    src = SNIPPET.replace("LIMIT = 3", "LIMIT = 3  # pragma: no mutate (a speed heuristic)")
    ms = [m for m in M.generate(src, "snippet.py") if m.line == 2]
    assert ms and all(m.equivalent and m.reason == "a speed heuristic" for m in ms)
    assert not any(m.equivalent for m in M.generate(src, "snippet.py") if m.line != 2)
    # a selector marks only the mutants it names
    src = SNIPPET.replace("w > 0:", "w > 0:  # pragma: no mutate[0 -> 1; x -> y] (w is an int: > 0 is >= 1)")
    eq = {(m.before, m.after) for m in M.generate(src, "snippet.py") if m.equivalent}
    assert eq == {("0", "1")}
    # an operator change alone names every such change on the line
    src = SNIPPET.replace("w > 0:", "w > 0:  # pragma: no mutate[> -> >=] (w is an int)")
    eq = {(m.before, m.after) for m in M.generate(src, "snippet.py") if m.equivalent}
    assert eq == {("w > 0", "w >= 0")}


def test_code_swap_reaches_every_reference(tmp_path):
    """A function-level mutant replaces the code object of the live function: references held by other
    modules (``from x import f``, dispatch tables) see the mutant too."""
    mod = types.ModuleType("snippet_mod")
    mod.__file__ = str(tmp_path / "snippet_mod.py")
    exec(compile(SNIPPET, mod.__file__, "exec"), mod.__dict__)
    alias = mod.f
    table = {"f": mod.f}
    m = next(m for m in M.generate(SNIPPET, "snippet_mod.py") if m.op == "binop")
    code = compile(M.apply(SNIPPET, m), mod.__file__, "exec", dont_inherit=True)
    assert mod.f(5, 2, mode="y") == 3
    W._apply(m, mod, code)
    assert alias(5, 2, mode="y") == 7 and table["f"](5, 2, mode="y") == 7


def test_module_level_mutant_rebinds_values():
    src = SNIPPET + "\n\ndef g():\n    return LIMIT\n"
    for code_src, read in ((SNIPPET, False), (src, True)):
        mod = types.ModuleType("snippet_mod2")
        mod.__file__ = "/nonexistent/snippet_mod2.py"
        exec(compile(code_src, mod.__file__, "exec"), mod.__dict__)
        m = next(m for m in M.generate(code_src, "snippet_mod2.py") if m.line == 2)
        code = compile(M.apply(code_src, m), mod.__file__, "exec", dont_inherit=True)
        changed = W._apply(m, mod, code)
        assert mod.LIMIT == 4
        # read by a function: tests cannot be narrowed (None); read by none: nothing to run (no table)
        assert changed is None if read else changed == set()


def test_same_value_keeps_bools_and_strings_apart():
    assert W.same_value(1.0, 1) and W.same_value(float("nan"), float("nan"))
    assert not W.same_value(True, 1) and not W.same_value(0.0, False) and not W.same_value(None, 0)
    assert W.same_value((1.0, 2.0), (1, 2)) and not W.same_value("1", 1)


def test_config_lists_existing_modules_and_tests():
    cfg = C.load()
    assert cfg.modules
    for m in cfg.modules:
        assert os.path.exists(os.path.join(ROOT, m.path)), m.path
        assert m.test_files(), f"{m.name}: no test file matches {m.test_globs}"
    assert [m.name for m in cfg.select(["iou"])] == ["iou", "iou_engine"]
    with pytest.raises(SystemExit):
        cfg.select(["no_such_module"])


def test_pragmas_within_budget_and_each_names_its_reason():
    cfg = C.load()
    lines = pragma = 0
    for m in cfg.modules:
        with open(os.path.join(ROOT, m.path)) as fh:
            src = fh.read()
        found = M.pragma_lines(src)
        for ln, (_, reason) in found.items():
            assert len(reason) >= 10, f"{m.path}:{ln}: `# pragma: no mutate` must say why on the same line"
        lines += len(src.splitlines())
        pragma += len(found)
    assert pragma <= cfg.max_pragma_fraction * lines, (pragma, lines)


# ------------------------------------------------------------------ the mutmut driver (engine)

def test_engine_names_scopes_and_lines():
    from mutation import engine as E

    assert E.scope_of("refdet.box_coder.x__decode__mutmut_3") == "_decode"
    assert E.scope_of("refdet.box_coder.x_decode_boxes_backward__mutmut_12") == "decode_boxes_backward"
    assert E.scope_of("refdet.quant.kernels.xǁRequantǁ__call____mutmut_1") == "Requant.__call__"
    mod = C.load().select(["box_coder"])[0]
    diff = ("--- a\n+++ b\n@@ -1,3 +1,3 @@\n def _means4(means):\n-    if means is None:\n"
            "+    if means is not None:\n")
    d = E.describe(mod, "refdet.box_coder.x__means4__mutmut_1", diff)
    with open(os.path.join(ROOT, mod.path)) as fh:
        assert fh.read().splitlines()[d["line"] - 1].strip() == "if means is None:"
    assert (d["before"], d["after"], d["scope"]) == ("if means is None:", "if means is not None:", "_means4")


def test_engine_summary_counts_and_ci_projection():
    from mutation import ci as CI
    from mutation import engine as E

    mod = C.load().select(["matcher"])[0]
    gen = {"names": ["m.x_f__mutmut_1", "m.x_f__mutmut_2", "m.x_g__mutmut_1", "m.x_g__mutmut_2"],
           "hashes": {"x_f": "a", "x_g": "b"}, "equivalent": 3}
    st = {"m.x_f__mutmut_1": "killed", "m.x_f__mutmut_2": "timeout", "m.x_g__mutmut_1": "survived",
          "m.x_g__mutmut_2": "no tests"}
    rec = E.summarise(mod, gen, st, 12.0, [])
    assert (rec["mutants"], rec["killed"], rec["survived"], rec["equivalent"]) == (7, 2, 2, 3)
    assert rec["score"] == 50.0
    # a function whose code changed loses its recorded statuses; the others keep theirs
    known = CI.known_statuses(rec, dict(gen, hashes={"x_f": "a", "x_g": "changed"}))
    assert known == {"m.x_f__mutmut_1": "killed", "m.x_f__mutmut_2": "timeout"}
    # a partial record's unchecked mutants are no verdicts: the projection must not count them as survivors
    rec["statuses"]["m.x_g__mutmut_1"] = "not checked"
    known = CI.known_statuses(rec, gen)
    assert "m.x_g__mutmut_1" not in known and known["m.x_g__mutmut_2"] == "no tests"


def test_engine_summary_of_a_run_stopped_by_its_budget():
    from mutation import engine as E

    mod = C.load().select(["matcher"])[0]
    gen = {"names": ["m.x_f__mutmut_1", "m.x_f__mutmut_2", "m.x_g__mutmut_1", "m.x_g__mutmut_2"],
           "hashes": {"x_f": "a", "x_g": "b"}, "equivalent": 0}
    # one mutant has no verdict ("not checked"), one is absent from mutmut's record
    st = {"m.x_f__mutmut_1": "killed", "m.x_f__mutmut_2": "survived", "m.x_g__mutmut_1": "not checked"}
    rec = E.summarise(mod, gen, st, 5.0, [{"status": "survived"}, {"status": "not checked"}])
    assert (rec["killed"], rec["survived"], rec["not_checked"]) == (1, 1, 2)
    assert rec["score"] == 50.0 and rec["complete"] is False
    assert rec["survivors"] == [{"status": "survived"}]
    full = E.summarise(mod, gen, dict.fromkeys(gen["names"], "killed"), 5.0, [])
    assert full["complete"] is True and "not_checked" not in full and full["score"] == 100.0


def test_engine_work_folder_config(tmp_path, monkeypatch):
    import configparser

    from mutation import engine as E

    monkeypatch.setattr(E, "WORK", str(tmp_path))
    mod = C.load().select(["box_coder"])[0]
    wd = E.prepare(mod)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(os.path.join(wd, "setup.cfg"))
    assert cp["mutmut"]["only_mutate"] == "refdet/box_coder.py"
    assert cp["mutmut"]["pytest_add_cli_args_test_selection"].split() == mod.test_files()
    assert cp.has_section("tool:pytest") and os.path.exists(os.path.join(wd, "refdet", "box_coder.py"))


def test_engine_work_copy_lets_mutmut_mutate_documented_functions():
    """mutmut 3 skips decorated functions: the work copy applies ``conventions.documented`` after the
    module instead, keeping line numbers and the generated docstring."""
    from mutation import engine as E

    code = ('from refdet import conventions\n\n\n@conventions.documented("op")\ndef f(x):\n    """Doc."""\n'
            '    return x + 1\n\n\n@other\ndef g(x):\n    return x\n')
    out = E.undecorate(code)
    lines = out.splitlines()
    assert lines[3] == '# @conventions.documented("op")  (mutation engine: applied at the end of the module)'
    assert lines[4:12] == code.splitlines()[4:12] and "@other" in lines
    assert lines[-1] == 'f = conventions.documented("op")(f)'
    assert E.undecorate("def f():\n    return 1\n") == "def f():\n    return 1\n"
    path = os.path.join(ROOT, "refdet", "anchors", "cell.py")
    with open(path) as fh:
        src = fh.read()
    # mutmut's rule (file_mutation.py): a FunctionDef with any decorator is not mutated
    defs = {n.name: n for n in ast.parse(E.undecorate(src)).body if isinstance(n, ast.FunctionDef)}
    assert defs["cell_anchors"].decorator_list == []
    ns = {}
    exec(compile(E.undecorate(src), path, "exec"), ns)
    assert "Conventions" in ns["cell_anchors"].__doc__


def test_run_that_checked_no_mutant_is_not_recorded(monkeypatch, capsys):
    # mutmut's stats pass failing (a test failing under its trampolines) leaves every mutant
    # "not checked": such a run must not overwrite the record with "0 killed, 100%, partial"
    import argparse

    from mutation import __main__ as M
    from mutation import engine as E

    rec = {"name": "iou_engine", "mutants": 9, "killed": 0, "survived": 0, "equivalent": 0, "score": 100.0,
           "seconds": 3.0, "not_checked": 9, "complete": False, "survivors": []}
    monkeypatch.setattr(E, "run_module", lambda *a, **k: dict(rec))
    saved = []
    monkeypatch.setattr(E, "save_results", lambda *a, **k: saved.append(a))
    monkeypatch.setattr(E, "record_score", lambda *a, **k: saved.append(a))
    args = argparse.Namespace(all=False, modules=["iou_engine"], jobs=1, mutant=None, fresh=False, budget=None,
                              show=5, dry=False, before=True, record=True)
    M.cmd_run(args, C.load())
    assert saved == [] and "not recorded: mutmut checked no mutant" in capsys.readouterr().out
    # one checked mutant is a (partial) answer, and is recorded
    rec.update(killed=1, not_checked=8)
    monkeypatch.setattr(E, "load_results", lambda: {"modules": {}, "history": []})
    M.cmd_run(args, C.load())
    assert len(saved) == 2
