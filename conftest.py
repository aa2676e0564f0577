"""pytest at the repository root: only the doctest run (`pytest --doctest-modules refdet`) needs this.

refdet's core needs NumPy and SciPy only; the modules of hypothesis strategies
(refdet/testing/strategies*.py) import hypothesis at the top (they exist to be used from hypothesis
tests). Without hypothesis installed they are left out of doctest collection instead of failing it.
The test suite (tests/) has its own conftest.
"""
import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("hypothesis") is None:
    collect_ignore_glob.append("refdet/testing/strategies*.py")
