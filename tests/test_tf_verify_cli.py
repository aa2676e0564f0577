"""`refdet verify tensorflow` wiring: the missing-extra message and the callable path (no TF needed)."""
import importlib.util
import subprocess
import sys

import numpy as np

from refdet import verify as V
from refdet.cli import main


def test_missing_tensorflow_is_one_line_naming_the_extra(capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    assert main(["verify", "tensorflow", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("refdet verify tensorflow needs tensorflow: pip install 'refdet[tensorflow]'")
    assert err.count("\n") == 0 and "Traceback" not in err


def test_adapters_without_tensorflow_raise_the_same_line(monkeypatch):
    import pytest

    from refdet.runtimes import tensorflow as rt
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    with pytest.raises(ValueError, match=r"^refdet verify tensorflow needs tensorflow: pip install 'refdet\[tensorflow\]'$"):
        rt.adapters()


def test_importing_refdet_does_not_import_tensorflow():
    code = "import sys, refdet, refdet.tf_ops, refdet.testing.conformance, refdet.verify; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_tf_checks_run_on_a_callable(capsys):
    # the TF conformance checks are reachable through `--op` with the user's module:callable
    rc = main(["verify", "--op", "tf_resize", "tests.test_tf_verify_cli:_refdet_resize", "--cases", "3", "--quiet"])
    assert rc == 0, capsys.readouterr().out
    assert "tensorflow" in V.TARGETS and V.TARGET_EXTRAS["tensorflow"] == "tensorflow"


def _refdet_resize(x, size, method, ac, hp):
    from refdet.tf_ops import resize_bilinear, resize_nearest_neighbor
    f = resize_bilinear if method == "bilinear" else resize_nearest_neighbor
    return np.asarray(f(x, size, align_corners=ac, half_pixel_centers=hp))
