"""The ``refdet`` command line without sharp edges (issue 17 item 2), run three ways: the INSTALLED console
script (the ``refdet`` next to sys.executable) and ``python -m refdet`` in a subprocess, and ``main()`` in
process. Every failure is one line on stderr (exit 2 for a usage error, 1 for a disagreement), never a
traceback; a missing optional package is named with its extra; a missing file is said to be missing.
"""
import configparser
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys

import pytest

import refdet
from refdet import cli
from refdet.apps import args as A

REPO = os.path.dirname(os.path.dirname(os.path.abspath(refdet.__file__)))
SCRIPT = shutil.which("refdet", path=os.path.dirname(sys.executable))


def _env():
    env = dict(os.environ)
    # the subprocess imports the refdet under test (this checkout), whatever is installed
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("REFDET_TRACEBACK", None)
    return env


def _run(cmd, cwd=None, timeout=600):
    return subprocess.run(cmd, cwd=cwd or REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def script(*argv, cwd=None):
    """The installed console script."""
    if SCRIPT is None:
        pytest.skip("the refdet console script is not installed next to sys.executable")
    return _run([SCRIPT, *argv], cwd)


def module(*argv, cwd=None):
    """``python -m refdet``."""
    return _run([sys.executable, "-m", "refdet", *argv], cwd)


def blocked(modules, *argv, cwd=None):
    """``main(argv)`` in a fresh interpreter in which importing each of ``modules`` fails (as if not installed)."""
    code = (f"import sys\nfor m in {list(modules)!r}: sys.modules[m] = None\n"
            f"from refdet.cli import main\nsys.exit(main({list(argv)!r}))\n")
    return _run([sys.executable, "-c", code], cwd)


RUNNERS = [pytest.param(script, id="console-script"), pytest.param(module, id="python-m")]


def one_line_error(r, code=2):
    """The process failed with ``code`` and said so in exactly one line on stderr, without a traceback."""
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    err = r.stderr.strip("\n")
    assert "Traceback" not in r.stderr
    assert err and "\n" not in err, f"not one line:\n{r.stderr}"
    return err


# ---------------------------------------------------------------------------------------------------
# refdet anchors --preset
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNNERS)
def test_anchors_preset_option_and_positional_agree(run):
    a = run("anchors", "--preset", "faster-rcnn")       # the README's command
    b = run("anchors", "faster-rcnn")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and "22,500 anchors" in a.stdout and a.stderr == ""


def test_anchors_preset_conflicts_and_unknown(capsys):
    assert cli.main(["anchors", "--preset", "retinanet", "ssd300"]) == 2
    assert "two presets given" in capsys.readouterr().err
    assert cli.main(["anchors", "--preset", "ssd300", "ssd300"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(["anchors", "--preset", "yolo"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and "faster-rcnn" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------------
# refdet demo: --out, --batch, --steps, --seed refused at once
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNNERS)
def test_demo_out_existing_file_fails_before_training(run, tmp_path):
    pytest.importorskip("matplotlib")
    f = tmp_path / "taken.txt"
    f.write_text("x")
    r = run("demo", "--out", str(f), "--steps", "1", "--batch", "2")
    err = one_line_error(r, 2)
    assert "--out" in err and "not a folder" in err and str(f) in err
    assert "[1] data" not in r.stdout and r.stdout == ""     # nothing ran: not even the data
    assert f.read_text() == "x"


@pytest.mark.parametrize("run", RUNNERS)
@pytest.mark.parametrize("argv,option,allowed", [
    (["--batch", "0"], "--batch", "in 1..512"),
    (["--batch", "1000"], "--batch", "in 1..512"),
    (["--steps", "-5"], "--steps", ">= 1"),
    (["--steps", "0"], "--steps", ">= 1"),
    (["--seed", "-1"], "--seed", ">= 0"),
    (["--batch", "two"], "--batch", "in 1..512"),
    (["--lr", "-0.1"], "--lr", "> 0"),
    (["--lr", "nan"], "--lr", "> 0"),
])
def test_demo_bad_numbers_refused_by_argparse(run, argv, option, allowed):
    r = run("demo", "--no-plots", *argv)
    err = one_line_error(r, 2)
    assert err.startswith("refdet demo: error: argument " + option + ":") and allowed in err
    assert r.stdout == ""


@pytest.mark.parametrize("argv,option,allowed", [
    (["quantize", "--steps", "-1"], "--steps", ">= 0"),
    (["quantize", "--seed", "-3"], "--seed", ">= 0"),
    (["verify", "--seed", "-1"], "--seed", ">= 0"),
    (["verify", "--cases", "-1"], "--cases", ">= 0"),
    (["gradcheck", "--seed", "-1"], "--seed", ">= 0"),
    (["export", "--model", "fpn", "--seed", "-1", "x.onnx"], "--seed", ">= 0"),
    (["verify-export", "x.onnx", "--seed", "-2"], "--seed", ">= 0"),
    (["verify-export", "x.onnx", "--atol", "-1"], "--atol", ">= 0"),
    (["anchors", "--image-size", "0", "800"], "--image-size", ">= 1"),
])
def test_other_commands_refuse_negative_numbers(argv, option, allowed, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and allowed in err and err.count("\n") == 1


def test_run_refuses_a_batch_larger_than_the_training_set():
    from refdet.demo import run
    with pytest.raises(ValueError, match="`batch`"):
        run("ssd", steps=1, batch=17, n_train=16, n_test=2, plots=False, write=lambda s: None)


def test_demo_out_checked_in_process(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    f = tmp_path / "file"
    f.write_text("")
    assert cli.main(["demo", "--out", str(f), "--steps", "1"]) == 2
    cap = capsys.readouterr()
    assert "--out" in cap.err and cap.out == ""
    # --no-plots writes no figure, so any --out is fine
    assert cli.main(["demo", "--out", str(f), "--no-plots", "--steps", "1", "--batch", "2", "--quiet"]) == 0


# ---------------------------------------------------------------------------------------------------
# export: --overwrite, missing files, missing onnx
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNNERS)
def test_export_to_an_existing_file_says_pass_overwrite(run, tmp_path):
    out = tmp_path / "head.onnx"
    out.write_bytes(b"not a model")
    err = one_line_error(run("export", "--model", "fpn", str(out)), 2)
    assert "pass --overwrite" in err and "overwrite=True" not in err
    assert out.read_bytes() == b"not a model"


def test_export_nnef_into_a_non_empty_folder_says_pass_overwrite(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "graph.nnef").write_text("x")
    assert cli.main(["export", "--model", "fpn", "--format", "nnef", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    arch = tmp_path / "a.nnef.tgz"
    arch.write_bytes(b"")
    assert cli.main(["export", "--model", "fpn", "--format", "nnef", str(arch)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err


def test_export_without_onnx_names_the_extra(tmp_path):
    r = blocked(["onnx"], "export", "--model", "fpn", str(tmp_path / "m.onnx"))
    err = one_line_error(r, 2)
    assert err == "`refdet export` needs onnx, which is not installed: pip install 'refdet[onnx]'"
    assert not (tmp_path / "m.onnx").exists()


def test_export_without_onnx_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert cli.main(["export", "--model", "fpn", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "needs onnx" in err and "pip install 'refdet[onnx]'" in err and err.count("\n") == 1


def test_missing_files_are_named_even_without_onnx(tmp_path):
    missing = str(tmp_path / "nope.onnx")
    err = one_line_error(blocked(["onnx", "onnxruntime"], "verify-export", missing), 2)
    assert "no such file" in err and missing in err and "onnx, which" not in err
    err = one_line_error(blocked(["onnx"], "export", "--model", "fpn", "--params", str(tmp_path / "p.npz"),
                                 str(tmp_path / "o.onnx")), 2)
    assert "--params" in err and "no such file" in err
    # an existing output is reported before onnx is needed
    (tmp_path / "o.onnx").write_text("")
    err = one_line_error(blocked(["onnx"], "export", "--model", "fpn", str(tmp_path / "o.onnx")), 2)
    assert "pass --overwrite" in err
    err = one_line_error(blocked(["onnx"], "export", "--model", "fpn", str(tmp_path / "no" / "dir" / "o.onnx")), 2)
    assert "does not exist" in err


def test_a_broken_install_is_not_called_missing(monkeypatch, capsys):
    """onnx installed but one of its modules missing (too old, broken): say so, not "not installed"."""
    pytest.importorskip("onnx")
    from refdet import walkthrough

    def needs_a_newer_onnx(args):
        raise ModuleNotFoundError("No module named 'onnx.future_part'", name="onnx.future_part")
    monkeypatch.setattr(walkthrough, "_anchors_run", needs_a_newer_onnx)
    assert cli.main(["anchors"]) == 2
    err = capsys.readouterr().err
    assert "cannot import onnx.future_part" in err and "not installed" not in err
    assert "pip install --upgrade --force-reinstall 'refdet[onnx]'" in err and err.count("\n") == 1


def test_verify_export_missing_file_in_process(tmp_path, capsys):
    assert cli.main(["verify-export", str(tmp_path / "gone.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# other missing packages
# ---------------------------------------------------------------------------------------------------

def test_demo_without_matplotlib_falls_back_with_a_note(tmp_path):
    r = blocked(["matplotlib"], "demo", "--steps", "1", "--batch", "2", "--out", str(tmp_path / "figs"),
                "--quiet")
    assert r.returncode == 0, r.stderr
    assert "matplotlib is not installed" in r.stdout and "pip install 'refdet[demo]'" in r.stdout
    assert "[7]" in r.stdout and "[8]" not in r.stdout
    assert not (tmp_path / "figs").exists()


def test_demo_without_matplotlib_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "figs"
    assert cli.main(["demo", "--steps", "1", "--batch", "2", "--out", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "matplotlib is not installed, so the demo runs as with --no-plots" in cap.out
    assert "[8]" not in cap.out and not out.exists() and cap.err == ""


def test_verify_without_hypothesis_names_the_test_extra():
    err = one_line_error(blocked(["hypothesis"], "verify", "--op", "box_iou", "tests.wrong_impls:right_box_iou",
                                 "--quiet"), 2)
    assert "`refdet verify` needs hypothesis" in err and "pip install 'refdet[test]'" in err


def test_verify_torchvision_without_torch_names_the_extra():
    err = one_line_error(blocked(["torch", "torchvision"], "verify", "torchvision", "--quiet"), 2)
    assert "torch" in err and "pip install 'refdet[torch]'" in err


def test_extras_table_matches_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    extras = {}
    for extra, reqs in cfg["options.extras_require"].items():
        for req in reqs.split():
            name = re.split(r"[<>=!~\[;]", req.strip())[0].lower().replace("-", "_")
            if name:
                extras.setdefault(name, set()).add(extra)
    for module, listed in A.EXTRAS.items():
        assert module in extras, f"{module} is not in any setup.cfg extra"
        assert set(listed) <= extras[module], (module, listed, extras[module])
    # every optional package is in the table (except "all", which holds everything)
    assert {m for m, e in extras.items() if e - {"all"}} <= set(A.EXTRAS)
    assert A.extra_for("matplotlib") == "plot" and A.extra_for("matplotlib", "demo") == "demo"
    assert A.extra_for("onnx.reference") == "onnx" and A.extra_for("numpy") is None


# ---------------------------------------------------------------------------------------------------
# one line, exit codes, never a traceback
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,code,text", [
    (["nosuchcommand"], 2, "invalid choice"),
    (["demo", "--model", "yolo9"], 2, "--model"),
    (["eval", "missing_gt.json", "missing_results.json"], 2, "missing_gt.json"),
    (["verify-export", "missing.onnx"], 2, "no such file"),
    (["gradcheck", "nosuchname"], 2, "the cases are"),
    (["describe", "nosuchop"], 2, "nosuchop"),
    (["anchors", "ssd300", "--image-size", "20", "20"], 2, "image_size"),
    (["verify", "--op", "nms", "no_such_module_xyz:f", "--quiet"], 2, "cannot import module"),
    (["verify", "--op", "nms", "tests.wrong_impls:wrong_nms_inclusive", "--cases", "3", "--quiet"], 1, None),
    # issue 13: a bogus convention is a usage error before any case runs (it was 108 "disagreements", exit 1)
    (["verify", "--op", "nms", "tests.wrong_impls:right_nms", "--convention", "bogus", "--quiet"], 2, "`convention`"),
    (["verify", "--op", "nms", "tests.wrong_impls:right_nms", "--cases", "999999999999", "--quiet"], 2, "`n_cases`"),
    (["anchors", "retinanet", "--image-size", "99999999", "99999999"], 2, "`image_size` asks for"),
    (["eval", "README.md", "README.md"], 2, "is not valid JSON"),
    (["verify-export", "README.md"], 2, "is not a valid ONNX model"),
])
def test_failures_are_one_line(argv, code, text):
    r = module(*argv)
    if code == 1:     # a disagreement: the report on stdout, exit 1, nothing on stderr
        assert r.returncode == 1 and "FAIL" in r.stdout and "Traceback" not in r.stderr, r.stderr
        return
    err = one_line_error(r, code)
    if argv[0] == "verify-export" and importlib.util.find_spec("onnx") is None and "no such file" not in text:
        text = "needs onnx"        # the core install: a file that exists is read only with onnx installed
    assert text in err


def test_console_script_failures_are_one_line(tmp_path):
    err = one_line_error(script("demo", "--batch", "0"), 2)
    assert "--batch" in err
    err = one_line_error(script("verify-export", str(tmp_path / "x.onnx")), 2)
    assert "no such file" in err


def test_internal_errors_interrupts_and_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    from refdet import walkthrough

    def boom(args):
        raise RuntimeError("something\nbroke")
    monkeypatch.setattr(walkthrough, "_anchors_run", boom)
    assert cli.main(["anchors"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: something; broke" in err
    assert "REFDET_TRACEBACK=1" in err
    monkeypatch.setenv("REFDET_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        cli.main(["anchors"])
    monkeypatch.delenv("REFDET_TRACEBACK")

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(walkthrough, "_anchors_run", interrupted)
    assert cli.main(["anchors"]) == 130
    assert capsys.readouterr().err == "refdet anchors: interrupted\n"

    def warns(args):
        warnings.warn("a two-line\nwarning", RuntimeWarning)
        return 0
    monkeypatch.setattr(walkthrough, "_anchors_run", warns)
    assert cli.main(["anchors"]) == 0
    assert capsys.readouterr().err == "refdet anchors: warning: a two-line; warning\n"


def test_no_command_prints_help_and_one_error_line(capsys):
    assert cli.main([]) == 2
    cap = capsys.readouterr()
    assert "COMMAND" in cap.out and cap.err == "refdet: error: no command given (see `refdet --help`)\n"


# ---------------------------------------------------------------------------------------------------
# --show-reference (issue 12 item 1)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNNERS)
def test_anchors_show_reference_prints_the_reference_source(run):
    from refdet.reference import anchors as ref
    r = run("anchors", "--show-reference")
    assert r.returncode == 0, r.stderr
    for fn in (ref.cell_anchors, ref.grid_anchors, ref._grid):
        assert inspect.getsource(fn).rstrip() in r.stdout
    assert "# refdet/reference/anchors.py, line " in r.stdout
    plain = run("anchors")
    assert r.stdout.startswith(plain.stdout) and "def cell_anchors" not in plain.stdout


def test_anchors_show_reference_per_preset(capsys):
    from refdet.reference import anchors as ref
    from refdet.walkthrough import ANCHOR_REFERENCES, reference_source
    assert cli.main(["anchors", "ssd300", "--show-reference"]) == 0
    out = capsys.readouterr().out
    assert inspect.getsource(ref.ssd_default_boxes).rstrip() in out and "def cell_anchors" not in out
    assert cli.main(["anchors", "--preset", "retinanet", "--show-reference"]) == 0
    out = capsys.readouterr().out
    assert inspect.getsource(ref.pyramid_anchors).rstrip() in out and inspect.getsource(ref.octave_sizes) in out
    for names in ANCHOR_REFERENCES.values():        # every name resolves
        reference_source(*names)
    with pytest.raises(ValueError, match="no function"):
        reference_source("anchors.nope")
    with pytest.raises(ValueError, match="no module"):
        reference_source("nope.f")
