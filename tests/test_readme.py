"""Every name the README calls public is importable as the README says."""
import importlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _module_table_rows():
    """Rows of the "What is inside" table: (modules, API names)."""
    rows = []
    section = README.split("## What is inside", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`refdet"):
            continue
        mods = re.findall(r"`(refdet[\w.]*)`|`(\w+)`", cells[0])
        mods = [a or ("refdet." + b) for a, b in mods]
        names = [n for n in re.findall(r"`([A-Za-z_][\w.]*)(?:\(|`)", cells[2]) if not n.startswith("*")]
        rows.append((mods, names))
    return rows


ROWS = _module_table_rows()
_NAMESPACES = ("refdet.testing", "refdet.exchange", "refdet.yolo", "refdet.reference", "refdet.onnx_ops")


def test_the_table_was_found():
    assert len(ROWS) >= 10


@pytest.mark.parametrize("mods,names", ROWS, ids=lambda v: v[0] if isinstance(v, list) and v else str(v)[:30])
def test_module_table_names_are_importable(mods, names):
    import refdet
    for m in mods:
        importlib.import_module(m)
    for name in names:
        head = name.split(".")[0]
        if name.startswith("refdet."):      # a dotted path: a module, or an attribute of one
            mod, _, attr = name.rpartition(".")
            try:
                importlib.import_module(name)
            except ImportError:
                assert hasattr(importlib.import_module(mod), attr), f"README names `{name}`, which does not exist"
            continue
        # "Every public function is importable from `refdet` directly" -- except the subpackages with a
        # namespace of their own, whose rows name them by module
        if any(m.startswith(_NAMESPACES) for m in mods):
            found = hasattr(refdet, head) or any(hasattr(importlib.import_module(m), head) for m in mods)
        else:
            found = hasattr(refdet, head)
        assert found, f"README names `{name}` in the row of {mods}, but `from refdet import {head}` fails"


def test_from_refdet_import_lines_in_readme_work():
    """Every `from refdet... import ...` line in the README's code blocks runs."""
    lines = re.findall(r"^\s*(from refdet[\w.]* import [\w, ]+)$", README, re.M)
    assert lines
    for line in lines:
        exec(line, {})
