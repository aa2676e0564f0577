"""Mutation testing of refdet's core: does a wrong answer make the module's own tests fail?

``python -m mutation`` (see :mod:`mutation.__main__`) generates first-order mutants of each core
module (:mod:`mutation.mutants`), runs each against the tests of the module's own test files that
execute its line, in a temporary copy of the tree (:mod:`mutation.runner`, :mod:`mutation.worker`),
and records the per-module table in ``mutation/results.md`` / ``results.json``. The modules and
their test files are listed in ``setup.cfg`` ``[mutation]``. This package is a developer tool: it is
not part of the ``refdet`` library and nothing in ``refdet/`` imports it.
"""
