"""Issue 13, model files: each reported class of hostile file, refused before it costs anything.

* a 15 KB NNEF folder declaring 1 x 8 x 5792 x 5792 inputs (4.5 GiB of verification) -> budget error;
* deeply nested JSON in refdet.json and in the ONNX metadata -> ValueError naming the file and the field;
* graph attributes (Conv pads of 30000, strides, dilations, group, Resize scales / sizes, NMS limits,
  Reshape targets, Gather indices, Range limits, MaxPool windows) -> ValueError before any runtime runs;
* graph.nnef / refdet.json / sub-folders reached through symlinks -> refused; archive members with ``..``,
  absolute names, links, devices -> refused;
* a 535 KB .nnef.tgz holding an unreferenced 512 MiB tensor -> only what the graph references is
  extracted (peak memory stays near the baseline);
* no pickle anywhere; the command line's errors (one line on stderr, exit 2 / 1, missing packages named with
  their extra, missing files said to be missing even without onnx).

The memory-heavy ones run in a subprocess whose address space is capped (tests/_hostile_files.py).
"""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import refdet
from refdet.exchange import files as rfiles
from refdet.exchange import nnef as rn
from tests import _hostile_files as hf

HERE = os.path.dirname(os.path.abspath(__file__))


def head(c=8):
    return refdet.retinanet_head_init(c, 3, 4, rng=0, num_convs=2)


@pytest.fixture(scope="module")
def nnef_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("nnef_base")
    return rn.export_nnef(head(), d / "m", model="retinanet_head")


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def edit_json(folder, fn):
    p = os.path.join(folder, "refdet.json")
    with open(p) as fh:
        meta = json.load(fh)
    fn(meta)
    with open(p, "w") as fh:
        json.dump(meta, fh)


# ---------------------------------------------------------------------------------------------------
# budgets
# ---------------------------------------------------------------------------------------------------

def test_budget_formula_and_keyword():
    b = rfiles.file_budget(15_000)
    assert b.limit == rfiles.BUDGET_FLOOR + 16 * 15_000 and not b.explicit
    assert rfiles.file_budget(10 ** 12).limit == rfiles.DEFAULT_MAX_BYTES        # the cap
    assert rfiles.file_budget(10 ** 12, max_bytes=5 << 30).limit == 5 << 30      # the keyword raises it
    with pytest.raises(ValueError, match="max_bytes"):
        b.check(b.limit + 1, "something")
    b.check(b.limit, "something")                                                 # at the limit: fine
    with pytest.raises(ValueError, match="max_bytes"):
        rfiles.file_budget(1, max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes"):
        rfiles.file_budget(1, max_bytes="1G")


def test_nnef_declaring_huge_inputs_is_refused_before_allocating(nnef_model, tmp_path):
    # the reported file: 15 KB, input_shapes [[1, 8, 5792, 5792]] -> verify allocated 4.5 GiB
    folder = copy_model(nnef_model, tmp_path / "huge_inputs")
    edit_json(folder, lambda m: m.update(input_shapes=[[1, 8, 5792, 5792]]))
    g = os.path.join(folder, "graph.nnef")
    with open(g) as fh:
        text = fh.read()
    with open(g, "w") as fh:
        fh.write(text.replace("shape = [1, 8, 13, 9]", "shape = [1, 8, 5792, 5792]"))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert size < 40_000
    c = hf.case("nnef/huge-input-shapes", "verify_nnef", folder, expect="error", match="budget")
    base = rn.export_nnef(head(), tmp_path / "warm", model="retinanet_head")
    baseline, recs = hf.run_cases([c], [("verify_nnef", base, {})])
    assert not hf.check_records([c], baseline, recs), recs
    assert "max_bytes" in recs[c["id"]]["message"] and "1 x" not in recs[c["id"]]["message"]


def test_max_bytes_raises_the_budget(tmp_path):
    pytest.importorskip("nnef")
    folder = rn.export_nnef(head(), tmp_path / "bigger", model="retinanet_head", height=400, width=400)
    with pytest.raises(ValueError, match=r"budget of 64\.\d MiB.*max_bytes="):
        rn.verify_nnef(folder)
    with pytest.raises(ValueError, match="budget max_bytes=1048576"):
        rn.verify_nnef(folder, max_bytes=1 << 20)
    assert rn.verify_nnef(folder, max_bytes=1 << 30).ok


# ---------------------------------------------------------------------------------------------------
# nested JSON
# ---------------------------------------------------------------------------------------------------

def test_nested_refdet_json_names_file_and_field(nnef_model, tmp_path):
    folder = copy_model(nnef_model, tmp_path / "nested")
    p = os.path.join(folder, "refdet.json")
    with open(p) as fh:
        text = fh.read()
    with open(p, "w") as fh:      # 100,000 levels inside config.programs: RecursionError before the fix
        fh.write(text.replace('"programs": {', '"programs": {"deep": ' + "[" * 100000 + "]" * 100000 + ", ", 1))
    for fn in (rn.load_nnef, rn.nnef_config, rn.verify_nnef):
        with pytest.raises(ValueError, match=r"refdet\.json.*config\.programs\.deep.*32 levels"):
            fn(folder)


def test_loads_json_depth_scan_is_exact():
    for depth in (1, 5, 32):
        assert rfiles.loads_json("[" * depth + "]" * depth, "x", max_depth=32) is not None
    with pytest.raises(ValueError, match="33|32 levels"):
        rfiles.loads_json("[" * 33 + "]" * 33, "x", max_depth=32)
    # brackets inside strings, escaped quotes and backslashes do not count
    text = json.dumps({"a": "[[[[[[" * 10, "b": '\\"[[[[[[[' * 10, "c": [[["\\\\"]]]})
    assert rfiles.loads_json(text, "x", max_depth=4) == json.loads(text)
    with pytest.raises(ValueError, match=r"field 'k'.*a\.b\[1\]"):
        rfiles.loads_json('{"a": {"b": [0, [[[[1]]]]]}}', "file.json", max_depth=4, field="k")
    for bad in ("NaN", "[Infinity]", "1" * 5000, "{", "\xff"):
        with pytest.raises(ValueError, match="file.json"):
            rfiles.loads_json(bad, "file.json")


def test_nested_onnx_metadata_names_the_field():
    onnx = pytest.importorskip("onnx")
    from refdet.exchange import onnx as rx

    m = rx.export_onnx(head())
    for key, fn in (("refdet.config", rx.onnx_config), ("refdet.params", rx.load_onnx_params)):
        mm = onnx.ModelProto()
        mm.CopyFrom(m)
        hf.set_metadata(mm, key, "[" * 200000 + "]" * 200000)
        with pytest.raises(ValueError, match=re.escape(key) + ".*32 levels"):
            fn(mm)
    mm = onnx.ModelProto()
    mm.CopyFrom(m)
    hf.set_metadata(mm, "refdet.config", '{"model": "retinanet_head", "in_channels": [8], "x": '
                    + "[" * 40 + "]" * 40 + "}")
    with pytest.raises(ValueError, match=r"'refdet.config'.*x\[0\]"):
        rx.verify_onnx(mm)


# ---------------------------------------------------------------------------------------------------
# ONNX attributes, checked before any runtime runs
# ---------------------------------------------------------------------------------------------------

def _onnx_cases():
    """(id, model maker, what the message must mention): each a refdet export with one hostile attribute."""
    onnx = pytest.importorskip("onnx")
    from refdet.exchange import onnx as rx

    p = head()
    fp = refdet.fpn_init([8, 16], 8, rng=0, extra_blocks="maxpool")

    def conv(attr, value):
        m = rx.export_onnx(p)
        hf.set_attr(hf.first(m, "Conv"), attr, value)
        return m

    def resize_sizes(v):
        m = rx.export_onnx(fp, model="fpn")
        return hf.replace_input_with_const(m, hf.first(m, "Resize"), 3, np.asarray(v, np.int64))

    def resize_scales(v):
        m = rx.export_onnx(fp, model="fpn", upsample="x2")
        return hf.replace_input_with_const(m, hf.first(m, "Resize"), 2, np.asarray(v, np.float32))

    def post(key, v):
        m = rx.export_onnx(model="postprocess")
        for t in m.graph.initializer:
            if t.name == key:
                t.CopyFrom(onnx.numpy_helper.from_array(np.asarray(v, onnx.helper.tensor_dtype_to_np_dtype(
                    t.data_type)), key))
        return m

    def reshape_target(v):
        m = rx.export_onnx(p)
        return hf.replace_input_with_const(m, hf.first(m, "Reshape"), 1, np.asarray(v, np.int64))

    def gather_indices(v):
        m = rx.export_onnx(fp, model="fpn", upsample_op="gather")
        return hf.replace_input_with_const(m, hf.first(m, "Gather"), 1, np.asarray(v, np.int64))

    def range_limit(v):
        m = rx.export_onnx(fp, model="fpn", upsample_op="gather")
        return hf.replace_input_with_const(m, hf.first(m, "Range"), 1, np.asarray(v, np.int64))

    def maxpool(attr, value):
        m = rx.export_onnx(fp, model="fpn", extra_blocks="maxpool")
        hf.set_attr(hf.first(m, "MaxPool"), attr, value)
        return m

    def transpose_perm(v):
        m = rx.export_onnx(p)
        hf.set_attr(hf.first(m, "Transpose"), "perm", v)
        return m

    def init_dims():
        m = rx.export_onnx(p)
        t = m.graph.initializer[0]
        del t.dims[:]
        t.dims.extend([1 << 20, 1 << 20])
        return m

    return [
        ("conv-pads-30000", lambda: conv("pads", [30000] * 4), "pads"),
        ("conv-pads-negative", lambda: conv("pads", [-1, 0, 0, 0]), "pads"),
        ("conv-strides-0", lambda: conv("strides", [0, 1]), "strides"),
        ("conv-dilations-huge", lambda: conv("dilations", [1 << 20, 1]), "kernel extent"),
        ("conv-kernel-shape", lambda: conv("kernel_shape", [5, 5]), "kernel_shape"),
        ("conv-group-3", lambda: conv("group", 3), "group"),
        ("conv-auto-pad", lambda: conv("auto_pad", "EVERYTHING"), "auto_pad"),
        ("conv-unknown-attr", lambda: conv("bogus", 1), "bogus"),
        ("resize-sizes-huge", lambda: resize_sizes([1, 8, 100000, 100000]), "budget"),
        ("resize-sizes-zero", lambda: resize_sizes([1, 8, 0, 5]), "sizes"),
        ("resize-scales-1e4", lambda: resize_scales([1, 1, 1e4, 1e4]), "budget"),
        ("resize-scales-nan", lambda: resize_scales([1, 1, np.nan, 2]), "scales"),
        ("resize-scales-negative", lambda: resize_scales([1, 1, -2, 2]), "scales"),
        ("nms-max-output-negative", lambda: post("max_output_boxes_per_class", [-5]), "max_output_boxes_per_class"),
        ("nms-iou-1.5", lambda: post("iou_threshold", [1.5]), "iou_threshold"),
        ("nms-iou-nan", lambda: post("iou_threshold", [np.nan]), "iou_threshold"),
        ("reshape-target-huge", lambda: reshape_target([1 << 20, 1 << 20, 1]), "Reshape"),
        ("reshape-target-two-minus-ones", lambda: reshape_target([-1, -1, 4]), "Reshape"),
        ("gather-indices-out-of-range", lambda: gather_indices(np.arange(10) + 1000), "Gather indices"),
        ("gather-indices-huge-count", lambda: gather_indices(np.zeros((512, 512), np.int64)), "budget"),
        ("range-limit-huge", lambda: range_limit([1 << 40]), "Range"),
        ("maxpool-kernel-0", lambda: maxpool("kernel_shape", [0, 0]), "kernel"),
        ("maxpool-pads-huge", lambda: maxpool("pads", [1000] * 4), "pads"),
        ("transpose-perm", lambda: transpose_perm([0, 0, 1, 2]), "perm"),
        ("initializer-extents", init_dims, "extents"),
    ]


_ONNX_CASE_IDS = ["conv-pads-30000", "conv-pads-negative", "conv-strides-0", "conv-dilations-huge",
                  "conv-kernel-shape", "conv-group-3", "conv-auto-pad", "conv-unknown-attr", "resize-sizes-huge",
                  "resize-sizes-zero", "resize-scales-1e4", "resize-scales-nan", "resize-scales-negative",
                  "nms-max-output-negative", "nms-iou-1.5", "nms-iou-nan", "reshape-target-huge",
                  "reshape-target-two-minus-ones", "gather-indices-out-of-range", "gather-indices-huge-count",
                  "range-limit-huge", "maxpool-kernel-0", "maxpool-pads-huge", "transpose-perm",
                  "initializer-extents"]


@pytest.mark.parametrize("cid", _ONNX_CASE_IDS)
def test_onnx_attribute_refused_before_any_runtime(cid, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    import onnx.reference

    from refdet.exchange import onnx as rx

    maker, word = {c[0]: (c[1], c[2]) for c in _onnx_cases()}[cid]
    m = maker()

    def no_runtime(*a, **k):
        raise AssertionError("a runtime was started on a hostile model")
    monkeypatch.setattr(ort, "InferenceSession", no_runtime)
    monkeypatch.setattr(onnx.reference, "ReferenceEvaluator", no_runtime)
    with pytest.raises(ValueError, match=re.escape(word)) as info:
        # (a 16 MiB budget: the 2 MiB of gather indices would get 96 MiB by default)
        rx.verify_onnx(m, check=False, max_bytes=16 << 20)
    assert "the ONNX model" in str(info.value)


def test_onnx_pads_30000_in_a_capped_subprocess(tmp_path):
    # before the fix onnxruntime tried to allocate ~115 GB; now the file is refused at once
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from refdet.exchange import onnx as rx

    m = rx.export_onnx(head())
    good = tmp_path / "good.onnx"
    onnx.save(m, str(good))
    hf.set_attr(hf.first(m, "Conv"), "pads", [30000] * 4)
    onnx.save(m, str(tmp_path / "pads.onnx"))
    cases = [hf.case("pads", "verify_onnx", tmp_path / "pads.onnx", check=False, expect="error", match="pads"),
             hf.case("pads-run", "run_onnx", tmp_path / "pads.onnx", feeds={"features": [1, 8, 13, 9]},
                     expect="error", match="pads")]
    baseline, recs = hf.run_cases(cases, [("verify_onnx", str(good), {})])
    assert not hf.check_records(cases, baseline, recs), recs


def test_a_runtime_failure_is_one_line_naming_runtime_and_file(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from refdet.exchange import onnx as rx

    path = tmp_path / "m.onnx"
    onnx.save(rx.export_onnx(head()), str(path))

    class Boom:
        def __init__(self, *a, **k):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\nline two")
    monkeypatch.setattr(ort, "InferenceSession", Boom)
    with pytest.raises(ValueError) as info:
        rx.verify_onnx(str(path), runtimes=("onnxruntime",))
    msg = str(info.value)
    assert "onnxruntime" in msg and "m.onnx" in msg and "\n" not in msg


# ---------------------------------------------------------------------------------------------------
# symlinks and archives
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["graph.nnef", "refdet.json", "dat-inside", "subfolder"])
def test_symlinks_are_refused(what, nnef_model, tmp_path):
    folder = copy_model(nnef_model, tmp_path / "linked")
    outside = tmp_path / "outside"
    outside.mkdir()
    if what in ("graph.nnef", "refdet.json"):
        shutil.move(os.path.join(folder, what), outside / what)
        os.symlink(outside / what, os.path.join(folder, what))
    elif what == "dat-inside":      # even a link to a file inside the folder: refdet follows none
        dat = sorted(f for f in os.listdir(folder) if f.endswith(".dat"))[0]
        shutil.copy(os.path.join(folder, dat), os.path.join(folder, "copy.bin"))
        os.remove(os.path.join(folder, dat))
        os.symlink("copy.bin", os.path.join(folder, dat))
    else:                            # a label 'sub/w' where 'sub' links to a folder outside
        g = os.path.join(folder, "graph.nnef")
        with open(g) as fh:
            text = fh.read()
        with open(g, "w") as fh:
            fh.write(text.replace("label = 'classification_head.cls_logits.bias'", "label = 'sub/bias'"))
        shutil.move(os.path.join(folder, "classification_head.cls_logits.bias.dat"), outside / "bias.dat")
        os.symlink(outside, os.path.join(folder, "sub"))
    for fn in (rn.load_nnef, rn.verify_nnef):
        with pytest.raises(ValueError, match="symbolic link") as info:
            fn(folder)
        assert "linked'" in str(info.value)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "sym", "hard", "chr", "blk", "fifo", "duplicate",
                                  "backslash", "size-lie"])
def test_hostile_archive_members(kind, nnef_model, tmp_path):
    graph = open(os.path.join(nnef_model, "graph.nnef"), "rb").read()
    members = [("graph.nnef", graph, "file")]
    members += {"dotdot": [("../../evil.dat", b"x", "file")], "absolute": [("/tmp/evil.dat", b"x", "file")],
                "sym": [("w.dat", "/etc/passwd", "sym")], "hard": [("w.dat", "graph.nnef", "hard")],
                "chr": [("null.dat", None, "chr")], "blk": [("disk.dat", None, "blk")],
                "fifo": [("pipe.dat", None, "fifo")], "duplicate": [("graph.nnef", graph, "file")],
                "backslash": [("a\\..\\b.dat", b"x", "file")],
                "size-lie": [("big.dat", b"x" * 100, "size-lie", 1 << 30)]}[kind]
    path = hf.write_tar(tmp_path / f"{kind}.nnef.tgz", members)
    with pytest.raises(ValueError, match=f"{kind}.nnef.tgz"):
        rn.load_nnef(path)


def test_unreferenced_512mib_tensor_is_not_extracted(nnef_model, tmp_path):
    # the reported archive: ~535 KB of gzip holding a 512 MiB tensor that graph.nnef never names; before the
    # fix it was read into memory and written out in full
    members = [(f, open(os.path.join(nnef_model, f), "rb").read(), "file") for f in sorted(os.listdir(nnef_model))]
    members.insert(1, ("unused.dat", 512 << 20, "file"))
    arch = hf.write_tar(tmp_path / "bomb.nnef.tgz", members, compresslevel=9)
    assert os.path.getsize(arch) < 1 << 20
    # 128 MiB that the graph does reference: refused by the budget of a 130 KB archive before it is written
    graph = open(os.path.join(nnef_model, "graph.nnef")).read().replace(
        "variable<scalar>(shape = [1, 12], label = 'regression_head.bbox_reg.bias')",
        "variable<scalar>(shape = [1, 33554432], label = 'regression_head.bbox_reg.bias')")
    assert "33554432" in graph
    ref = [(n, graph.encode() if n == "graph.nnef" else (128 << 20) if n == "regression_head.bbox_reg.bias.dat"
            else d, k) for n, d, k in members if n != "unused.dat"]
    ref_arch = hf.write_tar(tmp_path / "referenced.nnef.tgz", ref, compresslevel=9)
    cases = [hf.case("unreferenced", "load_nnef", arch),
             hf.case("referenced", "load_nnef", ref_arch, expect="error", match="budget")]
    baseline, recs = hf.run_cases(cases, [("load_nnef", str(nnef_model), {})])
    assert not hf.check_records(cases, baseline, recs), recs
    assert recs["unreferenced"]["outcome"] == "ok"
    assert max(r["maxrss"] for r in recs.values()) - baseline < 48 << 20


def test_archives_are_streamed_never_extractall(monkeypatch, nnef_model, tmp_path):
    import tarfile

    def refuse(*a, **k):
        raise AssertionError("extractall / extract used")
    monkeypatch.setattr(tarfile.TarFile, "extractall", refuse)
    monkeypatch.setattr(tarfile.TarFile, "extract", refuse)
    arch = rn.export_nnef(head(), tmp_path / "a.nnef.tgz", model="retinanet_head")
    assert set(rn.load_nnef(arch)) == set(head())


def test_too_many_archive_members(tmp_path, monkeypatch):
    monkeypatch.setattr(rfiles, "MAX_ARCHIVE_MEMBERS", 50)
    members = [("graph.nnef", b"version 1.0;", "file")] + [(f"d{i}", None, "dir") for i in range(60)]
    path = hf.write_tar(tmp_path / "many.tgz", members)
    with pytest.raises(ValueError, match="more than 50 members"):
        rn.load_nnef(path)


def test_no_pickle_and_no_eval_in_the_readers():
    src = os.path.join(os.path.dirname(refdet.__file__), "exchange")
    for name in os.listdir(src):
        if name.endswith(".py"):
            with open(os.path.join(src, name)) as fh:
                text = fh.read()
            assert "allow_pickle=True" not in text and "pickle.load" not in text, name
            assert not re.search(r"(?<![\w.])(eval|exec)\(", text), name
            assert not re.search(r"\.extract(all)?\(", text), name


# ---------------------------------------------------------------------------------------------------
# the command line: one line on stderr, exit 2 for usage errors, 1 for disagreements, never a traceback
# ---------------------------------------------------------------------------------------------------

def _script():
    path = os.path.join(os.path.dirname(sys.executable), "refdet")
    return path if os.path.exists(path) else None


def _run(argv, *, block=(), how="module", cwd=None):
    """Run the command line in a subprocess, optional packages blocked with sys.modules[name] = None."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), OMP_NUM_THREADS="1")
    if how == "script":
        if block:
            pytest.skip("imports cannot be blocked in the console script")
        cmd = [_script()] + argv
    elif block:
        code = ("import sys\n" + "".join(f"sys.modules[{b!r}] = None\n" for b in block)
                + f"sys.argv = ['refdet'] + {argv!r}\nfrom refdet.cli import main\nsys.exit(main())")
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "refdet"] + argv
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _one_line(proc, code, *words):
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stdout[-500:], err)
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("how", ["module", "script"])
def test_cli_usage_errors_are_one_line(how, tmp_path):
    if how == "script" and _script() is None:
        pytest.skip("the refdet console script is not installed next to this Python")
    _one_line(_run(["export", "--model", "bogus", str(tmp_path / "x.onnx")], how=how), 2, "--model", "bogus")
    _one_line(_run(["verify-export", "x.onnx", "--max-bytes", "12Q"], how=how), 2, "--max-bytes")
    _one_line(_run(["verify-export", str(tmp_path / "nope.onnx")], how=how), 2, "nope.onnx", "missing")
    _one_line(_run(["verify-export", str(tmp_path / "nope_nnef")], how=how), 2, "nope_nnef", "missing")
    _one_line(_run(["export", "--model", "fpn", "--params", str(tmp_path / "p.npz"), str(tmp_path / "o.onnx")],
                   how=how), 2, "p.npz", "no such file")
    _one_line(_run(["export", "--model", "fpn", "--format", "nnef", str(tmp_path / "no" / "such" / "x.tgz")],
                   how=how), 2, "x.tgz")


def test_cli_missing_packages_name_the_extra(tmp_path):
    err = _one_line(_run(["export", "--model", "fpn", str(tmp_path / "x.onnx")], block=["onnx"]), 2)
    assert "`refdet export` needs onnx" in err and "pip install 'refdet[onnx]'" in err
    # a missing file is said to be missing even when onnx is not installed
    _one_line(_run(["verify-export", str(tmp_path / "nope.onnx")], block=["onnx"]), 2, "nope.onnx", "missing")
    folder = rn.export_nnef(head(), tmp_path / "m", model="retinanet_head")
    err = _one_line(_run(["verify-export", folder], block=["nnef"]), 2)
    assert "`refdet verify-export` needs nnef" in err and "pip install 'refdet[nnef]'" in err
    # NNEF export needs no optional package at all
    assert _run(["export", "--model", "fpn", "--format", "nnef", str(tmp_path / "n")], block=["onnx", "nnef"]
                ).returncode == 0


def test_cli_hostile_files_and_disagreement(tmp_path, nnef_model):
    pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from refdet.exchange import onnx as rx

    m = rx.export_onnx(head())
    hf.set_attr(hf.first(m, "Conv"), "pads", [30000] * 4)
    onnx.save(m, str(tmp_path / "pads.onnx"))
    _one_line(_run(["verify-export", str(tmp_path / "pads.onnx")]), 2, "pads.onnx", "pads")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    _one_line(_run(["verify-export", str(tmp_path / "junk.onnx")]), 2, "junk.onnx")
    folder = copy_model(nnef_model, tmp_path / "big")
    edit_json(folder, lambda meta: meta.update(input_shapes=[[1, 8, 5792, 5792]]))
    _one_line(_run(["verify-export", folder]), 2, "big", "--max-bytes")
    # a disagreement: exit 1, the table on stdout, one line on stderr
    m = rx.export_onnx(refdet.fpn_init([8, 16], 8, rng=0), model="fpn")
    for n in m.graph.node:
        if n.op_type == "Resize":
            del n.attribute[:]
    onnx.save(m, str(tmp_path / "dis.onnx"))
    proc = _run(["verify-export", str(tmp_path / "dis.onnx")])
    _one_line(proc, 1, "disagree", "dis.onnx")
    assert "DISAGREEMENT" in proc.stdout
