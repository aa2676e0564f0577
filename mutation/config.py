"""The ``[mutation]`` section of ``setup.cfg``: which modules are mutated against which test files.

Each line of ``modules`` is ``name  path  test-glob [test-glob ...]``::

    [mutation]
    modules =
        iou          refdet/iou.py           tests/test_*iou*.py
        anchors.cell refdet/anchors/cell.py  tests/test_*anchors*.py

A module is mutated against the test files whose name contains its name (for a module inside a
package, the package's name: ``anchors.cell`` against ``tests/test_*anchors*.py``), and of those,
each mutant runs only the tests that execute its line (measured by the unmutated baseline run).
"""
from __future__ import annotations

import configparser
import glob
import os
from dataclasses import dataclass
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Module:
    name: str
    path: str              # repository-relative
    test_globs: tuple

    def test_files(self, root: str = ROOT) -> List[str]:
        """The test files (repository-relative, sorted) the globs match under ``root``."""
        found = set()
        for g in self.test_globs:
            for f in glob.glob(os.path.join(root, g)):
                found.add(os.path.relpath(f, root))
        return sorted(found)


@dataclass(frozen=True)
class Config:
    modules: tuple
    timeout_factor: float
    timeout_constant: float
    max_pragma_fraction: float

    def select(self, names) -> List[Module]:
        """Modules named by ``names``: a name, or a group prefix (``anchors`` = every ``anchors.*``,
        ``iou`` = ``iou`` and ``iou_engine``); in configuration order."""
        out = []
        for m in self.modules:
            for n in names:
                if m.name == n or m.name.startswith(n + ".") or m.name.startswith(n + "_") or m.path == n:
                    out.append(m)
                    break
        missing = [n for n in names if not any(m.name == n or m.name.startswith(n + ".") or
                                               m.name.startswith(n + "_") or m.path == n for m in self.modules)]
        if missing:
            raise SystemExit(f"unknown module(s) {', '.join(missing)}; known: "
                             f"{', '.join(m.name for m in self.modules)}")
        return out

    def by_path(self, path: str):
        for m in self.modules:
            if m.path == path:
                return m
        return None


def load(root: str = ROOT) -> Config:
    cp = configparser.ConfigParser()
    cp.read(os.path.join(root, "setup.cfg"))
    if not cp.has_section("mutation"):
        raise SystemExit("setup.cfg has no [mutation] section")
    sec = cp["mutation"]
    mods = []
    for line in sec.get("modules", "").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 3:
            raise SystemExit(f"setup.cfg [mutation] modules: `{line}` needs a name, a path and test globs")
        mods.append(Module(parts[0], parts[1], tuple(parts[2:])))
    return Config(modules=tuple(mods), timeout_factor=sec.getfloat("timeout_factor", 5.0),
                  timeout_constant=sec.getfloat("timeout_constant", 20.0),
                  max_pragma_fraction=sec.getfloat("max_pragma_fraction", 0.02))
