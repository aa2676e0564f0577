"""refdet.exchange.nnef: the 128-byte tensor header (own reader/writer vs the nnef package), export,
parameter round trips, the nnef parser, nnef.Session parity, and hostile folders/files; the .npz reader."""
import io
import json
import math
import os
import struct
import tempfile
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refdet
from refdet.exchange import nnef as rn
from refdet.exchange.files import load_params_npz, save_params_npz


def scaled(params, seed=0):
    """Random float32 params with O(1) outputs (N(0, 1/fan_in) weights, GroupNorm gamma around 1)."""
    r = np.random.default_rng(seed)
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        fan_in = int(np.prod(v.shape[1:])) if v.ndim == 4 else 10
        out[k] = (r.standard_normal(v.shape) / math.sqrt(fan_in)).astype(np.float32)
        if k.endswith(".1.weight"):
            out[k] += np.float32(1)
    return out


def head(gn=False, c=8):
    return scaled(refdet.retinanet_head_init(c, 3, 4, rng=0, num_convs=2, norm="group_norm" if gn else None))


def fpn(extra="p6p7"):
    return scaled(refdet.fpn_init([8, 16, 32], 8, rng=0, extra_blocks=extra))


# ---------------------------------------------------------------------------------------------------
# the .dat format (pure NumPy: always runs)
# ---------------------------------------------------------------------------------------------------

def test_golden_header_float32_16x8x1x1():
    # SPEC §7.2: a float32 [16, 8, 1, 1] weight is a 640-byte file: 128-byte header + 16*8*4 = 512 data bytes
    buf = io.BytesIO()
    a = np.arange(128, dtype=np.float32).reshape(16, 8, 1, 1)
    rn.write_nnef_tensor(buf, a)
    raw = buf.getvalue()
    assert len(raw) == 640
    want = (b"\x4e\xef\x01\x00"                        # magic, version 1.0
            + struct.pack("<I", 512)                   # data_length
            + struct.pack("<I", 4)                     # rank
            + struct.pack("<8I", 16, 8, 1, 1, 0, 0, 0, 0)
            + struct.pack("<I", 32)                    # bits per item
            + struct.pack("<I", 0)                     # item type 0 = float
            + b"\x00" * 76)                            # reserved
    assert raw[:128] == want
    assert raw[128:] == a.astype("<f4").tobytes()
    back = rn.read_nnef_tensor(raw)
    assert back.dtype == np.float32 and np.array_equal(back, a)


def test_quantized_and_bool_headers():
    buf = io.BytesIO()
    rn.write_nnef_tensor(buf, np.array([-128, 0, 127], np.int8), quantized=True)
    raw = buf.getvalue()
    assert struct.unpack("<II", raw[44:52]) == (8, 3)          # 8 bits, item type 3 = qint
    arr, q = rn.read_nnef_tensor(raw, return_quantization=True)
    assert q and arr.dtype == np.int8 and arr.tolist() == [-128, 0, 127]
    buf = io.BytesIO()
    b = np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1]], bool)
    rn.write_nnef_tensor(buf, b)
    raw = buf.getvalue()
    # 9 bools: 1 bit each, ceil(9 / 8) = 2 data bytes: 0b10110000, 0b10000000
    assert struct.unpack("<I", raw[4:8]) == (2,) and raw[128:] == bytes([0b10110000, 0b10000000])
    assert np.array_equal(rn.read_nnef_tensor(raw), b)
    with pytest.raises(ValueError):
        rn.write_nnef_tensor(io.BytesIO(), np.zeros(3, np.float32), quantized=True)
    with pytest.raises(TypeError):
        rn.write_nnef_tensor(io.BytesIO(), np.zeros(3, np.complex64))


_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
           np.uint32, np.uint64, np.bool_]


@given(st.sampled_from(_DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))))
def test_own_reader_writer_round_trip(a):
    buf = io.BytesIO()
    rn.write_nnef_tensor(buf, a)
    back = rn.read_nnef_tensor(buf.getvalue())
    assert back.dtype == a.dtype and back.shape == a.shape
    assert np.array_equal(back, a, equal_nan=a.dtype.kind == "f")


@given(st.sampled_from(_DTYPES).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))),
    st.booleans())
def test_interop_with_the_nnef_package(a, quantized):
    nnef = pytest.importorskip("nnef")
    quantized = quantized and a.dtype.kind in "iu"
    with tempfile.TemporaryDirectory() as d:       # nnef's reader needs real files (np.fromfile)
        mine, theirs = os.path.join(d, "mine.dat"), os.path.join(d, "theirs.dat")
        rn.write_nnef_tensor(mine, a, quantized=quantized)
        with open(mine, "rb") as fh:                 # refdet writes, nnef reads
            back, q = nnef.read_tensor(fh, return_quantization=True)
        assert bool(q) == quantized and back.dtype == a.dtype and back.shape == a.shape
        assert np.array_equal(back, a, equal_nan=a.dtype.kind == "f")
        with open(theirs, "wb") as fh:               # nnef writes, refdet reads: byte-identical files
            nnef.write_tensor(fh, a, quantized=quantized)
        with open(mine, "rb") as f1, open(theirs, "rb") as f2:
            assert f1.read() == f2.read()
        back2, q2 = rn.read_nnef_tensor(theirs, return_quantization=True)
        assert q2 == quantized and np.array_equal(back2, a, equal_nan=a.dtype.kind == "f")


def _header(data_length=512, rank=4, extents=(16, 8, 1, 1), bits=32, item=0, magic=b"\x4e\xef", version=(1, 0),
            reserved0=0):
    ext = list(extents) + [0] * (8 - len(extents))
    return (magic + bytes(version) + struct.pack("<II", data_length, rank) + struct.pack("<8I", *ext)
            + struct.pack("<II", bits, item) + struct.pack("<I", reserved0) + b"\x00" * 72)


HOSTILE_DAT = {
    "short header": b"\x4e\xef\x01\x00" + b"\x00" * 20,
    "wrong magic": _header(magic=b"PK") + b"\x00" * 512,
    "version 2.0": _header(version=(2, 0)) + b"\x00" * 512,
    "rank 9": _header(rank=9) + b"\x00" * 512,
    "extent past rank": _header(rank=2, extents=(16, 8, 1, 1), data_length=512) + b"\x00" * 512,
    "data_length disagrees": _header(data_length=100) + b"\x00" * 100,
    "truncated data": _header() + b"\x00" * 100,
    "trailing bytes": _header() + b"\x00" * 600,
    "absurd extents": _header(data_length=0xFFFFFFFC, rank=2, extents=(0xFFFFFFFF, 0xFFFFFFFF)) + b"\x00" * 64,
    "absurd but consistent length": _header(data_length=0x40000000, rank=1, extents=(0x10000000,)) + b"\x00" * 64,
    "bits for float": _header(bits=24) + b"\x00" * 384,
    "bool with 4 bits": _header(bits=4, item=5, data_length=64) + b"\x00" * 64,
    "vendor type": _header(item=0x10000) + b"\x00" * 512,
    "unknown type": _header(item=9) + b"\x00" * 512,
}


@pytest.mark.parametrize("name", sorted(HOSTILE_DAT))
def test_hostile_tensor_files_are_refused_before_allocating(name, tmp_path):
    data = HOSTILE_DAT[name]
    path = tmp_path / "t.dat"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        for src in (data, str(path)):
            with pytest.raises(ValueError):
                rn.read_nnef_tensor(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + (1 << 20)      # nothing sized by the header's claims
    with pytest.raises(ValueError):
        rn.read_nnef_tensor(str(tmp_path / "missing.dat"))


def test_old_uint_marked_signed():
    # nnef/binary.py: an uint tensor with reserved[0] != 0 is a signed int (files from old writers)
    raw = _header(data_length=2, rank=1, extents=(2,), bits=8, item=1, reserved0=1) + bytes([0xFF, 0x01])
    assert rn.read_nnef_tensor(raw).tolist() == [-1, 1]


# ---------------------------------------------------------------------------------------------------
# export / load / parse / run
# ---------------------------------------------------------------------------------------------------

CASES = {
    "retinanet_head_2_levels": (lambda: head(), dict(model="retinanet_head", num_levels=2)),
    "retinanet_head_gn": (lambda: head(gn=True, c=16), dict(model="retinanet_head", num_groups=4)),
    "rpn_head": (lambda: scaled(refdet.rpn_head_init(8, 3, rng=0)), dict(model="rpn_head", num_levels=2)),
    "rpn_head_softmax": (lambda: scaled(refdet.rpn_head_init(8, 3, rng=0, objectness="softmax")),
                         dict(model="rpn-head")),
    "fpn_p6p7_13x9": (lambda: fpn(), dict(model="fpn", height=13, width=9)),
    "fpn_maxpool_25x17": (lambda: fpn("maxpool"), dict(model="fpn", extra_blocks="maxpool", height=25, width=17)),
    "fpn_exact_avg": (lambda: fpn("none"), dict(model="fpn", upsample_mode="nearest-exact", fuse="avg",
                                                height=16, width=8)),
    "fpn_x2": (lambda: fpn("none"), dict(model="fpn", convention="detectron2", height=16, width=8, batch=2)),
    "fpn_retinanet_head": (lambda: {**{"backbone.fpn." + k: v for k, v in fpn().items()},
                                    **{"head." + k: v for k, v in head().items()}},
                           dict(model="fpn_retinanet_head")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_parser_and_session(case, tmp_path):
    make, opts = CASES[case]
    p = make()
    folder = rn.export_nnef(p, tmp_path / "m", **opts)
    back = rn.load_nnef(folder)
    assert set(back) == set(p)
    for k, v in p.items():
        assert back[k].dtype == np.float32 and back[k].shape == v.shape and np.array_equal(back[k], v), k
    nnef = pytest.importorskip("nnef")
    graph = nnef.load_graph(folder, lowered=["nearest_upsample"])
    nnef.infer_shapes(graph)
    meta = json.loads((tmp_path / "m" / "refdet.json").read_text())
    for name, shape in zip(graph.outputs, meta["output_shapes"]):
        assert list(graph.tensors[name].shape) == shape
    # nnef's own loader reads refdet's .dat files into the same values (conv biases as [1, C])
    labels = {op.attribs["label"]: op.outputs["output"] for op in graph.operations if op.name == "variable"}
    assert set(labels) == set(p)
    for label, arr in back.items():
        data = graph.tensors[labels[label]].data
        assert np.array_equal(np.asarray(data).reshape(arr.shape), arr), label
    report = rn.verify_nnef(folder, rng=1)
    assert report.ok, "\n" + str(report)
    assert {r["runtime"] for r in report.rows} == {"nnef.Session"}


def test_nnef_session_matches_refdet_fpn_directly(tmp_path):
    pytest.importorskip("nnef")
    p = fpn()
    folder = rn.export_nnef(p, tmp_path / "f", model="fpn", height=13, width=9)
    r = np.random.default_rng(0)
    feats = [r.standard_normal((1, c, h, w)).astype(np.float32) for c, (h, w) in zip((8, 16, 32),
                                                                                     [(13, 9), (7, 5), (4, 3)])]
    got = rn.run_nnef(folder, {f"features_{i}": f for i, f in enumerate(feats)})
    want, _ = refdet.fpn_forward(p, feats)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[f"fpn_{i}"], w, atol=1e-5)
    text = (tmp_path / "f" / "graph.nnef").read_text()
    # 4 -> 7 and 3 -> 5: nearest_upsample x2 then a crop; 7 -> 13, 5 -> 9 likewise
    assert "nearest_upsample" in text and "slice(" in text


def test_unrepresentable_upsampling_and_postprocess(tmp_path):
    p = fpn("none")
    # 10 -> 15 (a 1.5x step) is not integer-factor nearest + crop: refused, ONNX is the way
    with pytest.raises(ValueError, match="NNEF cannot express"):
        rn.export_nnef(p, tmp_path / "a", model="fpn", input_sizes=[(15, 15), (10, 10), (5, 5)])
    with pytest.raises(ValueError, match="NonMaxSuppression"):
        rn.export_nnef(None, tmp_path / "b", model="postprocess")
    folder = rn.export_nnef(head(), tmp_path / "c", model="retinanet_head")
    with pytest.raises(ValueError, match="not empty"):
        rn.export_nnef(head(), folder, model="retinanet_head")
    rn.export_nnef(head(), folder, model="retinanet_head", overwrite=True)
    with pytest.raises(ValueError, match="input_sizes"):
        rn.export_nnef(head(), tmp_path / "d", model="retinanet_head", input_sizes=[(3, 3), (2, 2)])


def _write_graph(folder, label, shape=(2,)):
    os.makedirs(folder, exist_ok=True)
    text = (f"version 1.0;\ngraph g( x ) -> ( y )\n{{\n    x = external<scalar>(shape = [1, 2]);\n"
            f"    v = variable<scalar>(shape = {list(shape)}, label = '{label}');\n    y = add(x, v);\n}}\n")
    with open(os.path.join(folder, "graph.nnef"), "w") as fh:
        fh.write(text)


@pytest.mark.parametrize("label", ["../../etc/passwd", "/etc/passwd", "a/../../b", "..", "./x", "a\\..\\b",
                                   "x'; import os"])
def test_hostile_labels_are_refused(label, tmp_path):
    folder = tmp_path / "m"
    _write_graph(str(folder), label)
    with pytest.raises(ValueError, match="label"):
        rn.load_nnef(folder)


def test_hostile_folders(tmp_path):
    # symlink escaping the folder
    outside = tmp_path / "secret.dat"
    rn.write_nnef_tensor(str(outside), np.zeros(2, np.float32))
    folder = tmp_path / "m"
    _write_graph(str(folder), "w")
    os.symlink(outside, folder / "w.dat")
    with pytest.raises(ValueError, match="outside"):
        rn.load_nnef(folder)
    # declared shape disagrees with the file
    f2 = tmp_path / "m2"
    _write_graph(str(f2), "w", shape=(3,))
    rn.write_nnef_tensor(str(f2 / "w.dat"), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="declares"):
        rn.load_nnef(f2)
    # missing tensor file, missing graph, not a folder, no version line, corrupt refdet.json
    f3 = tmp_path / "m3"
    _write_graph(str(f3), "w")
    with pytest.raises(ValueError, match="missing"):
        rn.load_nnef(f3)
    with pytest.raises(ValueError):
        rn.load_nnef(tmp_path / "nothing")
    (tmp_path / "m4").mkdir()
    with pytest.raises(ValueError, match="graph.nnef"):
        rn.load_nnef(tmp_path / "m4")
    (tmp_path / "m4" / "graph.nnef").write_text("graph g() -> () {}")
    with pytest.raises(ValueError, match="version"):
        rn.load_nnef(tmp_path / "m4")
    (tmp_path / "m4" / "graph.nnef").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="UTF-8"):
        rn.load_nnef(tmp_path / "m4")
    folder = rn.export_nnef(head(), tmp_path / "m5", model="retinanet_head")
    meta = json.loads((tmp_path / "m5" / "refdet.json").read_text())
    meta["param_shapes"]["classification_head.cls_logits.bias"] = [10 ** 9]
    (tmp_path / "m5" / "refdet.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="refdet.json"):
        rn.load_nnef(folder)
    (tmp_path / "m5" / "refdet.json").write_text("{not json")
    with pytest.raises(ValueError, match="refdet.json"):
        rn.load_nnef(folder)
    # a corrupt tensor file inside an exported model
    folder = rn.export_nnef(head(), tmp_path / "m6", model="retinanet_head")
    dat = tmp_path / "m6" / "classification_head.cls_logits.weight.dat"
    dat.write_bytes(dat.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated"):
        rn.load_nnef(folder)
    with pytest.raises(ValueError, match="max_bytes"):
        rn.load_nnef(rn.export_nnef(head(), tmp_path / "m7", model="retinanet_head"), max_bytes=1000)


def test_foreign_folder_without_refdet_json(tmp_path):
    # a folder written by the nnef package itself: labels with '/', biases stay [1, C]
    nnef = pytest.importorskip("nnef")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "lat3").mkdir()
    text = ("version 1.0;\ngraph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = [1, 2, 3, 3]);\n"
            "    w = variable<scalar>(shape = [4, 2, 1, 1], label = 'lat3/weight');\n"
            "    b = variable<scalar>(shape = [1, 4], label = 'lat3/bias');\n"
            "    y = conv(x, w, b, padding = [(0, 0), (0, 0)]);\n}\n")
    (folder / "graph.nnef").write_text(text)
    w = np.arange(8, dtype=np.float32).reshape(4, 2, 1, 1)
    b = np.ones((1, 4), np.float32)
    with open(folder / "lat3" / "weight.dat", "wb") as fh:
        nnef.write_tensor(fh, w)
    with open(folder / "lat3" / "bias.dat", "wb") as fh:
        nnef.write_tensor(fh, b)
    back = rn.load_nnef(folder)
    assert np.array_equal(back["lat3/weight"], w) and np.array_equal(back["lat3/bias"], b)
    with pytest.raises(ValueError, match="not exported by refdet"):
        rn.verify_nnef(folder)


# ---------------------------------------------------------------------------------------------------
# .npz parameter files
# ---------------------------------------------------------------------------------------------------

def test_npz_round_trip(tmp_path):
    p = {**head(), "int": np.arange(5, dtype=np.int64), "scalar": np.float64(2.5)}
    path = tmp_path / "p.npz"
    save_params_npz(p, path)
    back = load_params_npz(path)
    assert set(back) == set(p)
    for k, v in p.items():
        assert back[k].dtype == np.asarray(v).dtype and np.array_equal(back[k], v)
    np.savez_compressed(tmp_path / "c.npz", **p)
    back = load_params_npz(tmp_path / "c.npz")
    assert all(np.array_equal(back[k], v) for k, v in p.items())
    f = tmp_path / "f.npz"
    np.savez(f, a=np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    assert np.array_equal(load_params_npz(f)["a"], np.arange(6.0).reshape(2, 3))


def _npy_bytes(arr=None, header=None):
    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(b"\x00" * 16)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_npz(tmp_path):
    cases = {
        "traversal": [("../../etc/passwd.npy", _npy_bytes(np.zeros(2)))],
        "absolute": [("/etc/x.npy", _npy_bytes(np.zeros(2)))],
        "not npy": [("a.txt", b"hello")],
        "pickled": [("a.npy", _npy_bytes(np.array([{"x": 1}], dtype=object)))],
        "huge header": [("a.npy", _npy_bytes(header={"descr": "<f8", "fortran_order": False,
                                                      "shape": (1 << 20, 1 << 20)}))],
        "bad magic": [("a.npy", b"\x93NUMPX" + b"\x00" * 40)],
        "duplicate": [("a.npy", _npy_bytes(np.zeros(2))), ("a.npy", _npy_bytes(np.zeros(2)))],
    }
    for name, members in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        with zipfile.ZipFile(path, "w") as zf:
            for member, data in members:
                zf.writestr(member, data)
        tracemalloc.start()
        try:
            with pytest.raises(ValueError):
                load_params_npz(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < (4 << 20), name
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="zip"):
        load_params_npz(junk)
    good = tmp_path / "good.npz"
    save_params_npz(head(), good)
    (tmp_path / "trunc.npz").write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError):
        load_params_npz(tmp_path / "trunc.npz")
    with pytest.raises(ValueError, match="max_bytes"):
        load_params_npz(good, max_bytes=100)
    with pytest.raises(ValueError, match="plain name"):
        save_params_npz({"../x": np.zeros(2)}, tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["retinanet-head", "rpn-head", "fpn", "fpn-retinanet-head"])
def test_cli_export_nnef_and_verify(model, tmp_path, capsys):
    pytest.importorskip("nnef")
    from refdet import cli
    from refdet.exchange.cli import random_params

    out = str(tmp_path / "m")
    assert cli.main(["export", "--model", model, "--format", "nnef", out, "--seed", "4"]) == 0
    back = rn.load_nnef(out)
    want = random_params(model, seed=4)
    assert set(back) == set(want) and all(np.array_equal(back[k], v) for k, v in want.items())
    assert cli.main(["verify-export", out]) == 0
    text = capsys.readouterr().out
    assert "nnef.Session" in text and "all outputs agree" in text


def test_cli_verify_nnef_disagreement(tmp_path, capsys):
    pytest.importorskip("nnef")
    from refdet import cli

    out = tmp_path / "m"
    assert cli.main(["export", "--model", "fpn", "--format", "nnef", str(out)]) == 0
    g = out / "graph.nnef"
    g.write_text(g.read_text().replace("add(", "sub(", 1))      # the graph no longer is refdet's FPN
    assert cli.main(["verify-export", str(out)]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().out
    assert cli.main(["export", "--model", "postprocess", "--format", "nnef", str(tmp_path / "p")]) == 2


# ---------------------------------------------------------------------------------------------------
# .nnef.tgz archives
# ---------------------------------------------------------------------------------------------------

def test_archive_round_trip_and_verify(tmp_path):
    p = fpn()
    arch = rn.export_nnef(p, tmp_path / "m.nnef.tgz", model="fpn")
    assert os.path.isfile(arch)
    back = rn.load_nnef(arch)
    assert set(back) == set(p) and all(np.array_equal(back[k], v) for k, v in p.items())
    assert rn.nnef_config(arch)["model"] == "fpn"
    with pytest.raises(ValueError, match="exists"):
        rn.export_nnef(p, arch, model="fpn")
    tar = rn.export_nnef(p, tmp_path / "m.tar", model="fpn")
    assert set(rn.load_nnef(tar)) == set(p)
    pytest.importorskip("nnef")
    assert rn.verify_nnef(arch).ok


def test_archive_in_a_top_level_folder(tmp_path):
    import tarfile

    folder = rn.export_nnef(head(), tmp_path / "model", model="retinanet_head")
    arch = tmp_path / "wrapped.tgz"
    with tarfile.open(arch, "w:gz") as tf:
        tf.add(folder, arcname="model")
    assert set(rn.load_nnef(arch)) == set(head())


def _tar_with(path, members, links=()):
    import tarfile

    with tarfile.open(path, "w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
            info.linkname = target
            tf.addfile(info)


def test_hostile_archives(tmp_path):
    graph = b"version 1.0;\ngraph g( x ) -> ( y )\n{\n    x = external<scalar>(shape = [1, 2]);\n    y = copy(x);\n}\n"
    cases = {
        "traversal": ([("graph.nnef", graph), ("../../etc/passwd.dat", b"x")], ()),
        "absolute": ([("graph.nnef", graph), ("/etc/passwd.dat", b"x")], ()),
        "symlink": ([("graph.nnef", graph)], [("w.dat", "/etc/passwd", "sym")]),
        "hardlink": ([("graph.nnef", graph)], [("w.dat", "graph.nnef", "hard")]),
        "no graph": ([("w.dat", b"x")], ()),
        "two graphs": ([("a/graph.nnef", graph), ("b/graph.nnef", graph)], ()),
    }
    for name, (members, links) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.tgz"
        _tar_with(path, members, links)
        with pytest.raises(ValueError):
            rn.load_nnef(path)
    # a label escaping the folder inside an archive's graph.nnef
    path = tmp_path / "label.tgz"
    _tar_with(path, [("graph.nnef", graph.replace(b"y = copy(x);",
                                                  b"v = variable<scalar>(shape = [2], label = '../../etc/passwd');"
                                                  b" y = add(x, v);"))])
    with pytest.raises(ValueError, match="label"):
        rn.load_nnef(path)
    # not an archive, truncated archive, member larger than allowed
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"definitely not gzip")
    with pytest.raises(ValueError):
        rn.load_nnef(junk)
    good = rn.export_nnef(head(), tmp_path / "good.tgz", model="retinanet_head")
    trunc = tmp_path / "trunc.tgz"
    trunc.write_bytes(open(good, "rb").read()[:400])
    with pytest.raises(ValueError):
        rn.load_nnef(trunc)
    with pytest.raises(ValueError, match="max_bytes"):
        rn.load_nnef(good, max_bytes=500)
    with pytest.raises(ValueError):
        rn.load_nnef(tmp_path / "missing.tgz")


def test_cli_archive(tmp_path, capsys):
    pytest.importorskip("nnef")
    from refdet import cli

    out = str(tmp_path / "head.nnef.tgz")
    assert cli.main(["export", "--model", "retinanet-head", "--format", "nnef", out, "--group-norm",
                     "--channels", "8", "--num-groups", "4"]) == 0
    assert cli.main(["verify-export", out]) == 0
    assert "all outputs agree" in capsys.readouterr().out


def test_hostile_refdet_json_sizes(tmp_path):
    folder = rn.export_nnef(head(), tmp_path / "m", model="retinanet_head")
    path = tmp_path / "m" / "refdet.json"
    good = json.loads(path.read_text())
    for bad in ({"input_shapes": [[1, 8, 100000, 100000]]}, {"input_shapes": [[1, 9, 3, 3]]},
                {"input_shapes": "x"}, {"config": dict(good["config"], in_channels=[10 ** 9])},
                {"config": dict(good["config"], model="rm -rf")}):
        path.write_text(json.dumps(dict(good, **bad)))
        with pytest.raises(ValueError):
            rn.verify_nnef(folder)


def test_run_refuses_foreign_operations(tmp_path):
    pytest.importorskip("nnef")
    folder = rn.export_nnef(head(), tmp_path / "m", model="retinanet_head")
    g = tmp_path / "m" / "graph.nnef"
    text = g.read_text()
    g.write_text(text.replace("relu(", "tile(", 1))
    with pytest.raises(ValueError, match="never emits"):
        rn.verify_nnef(folder)
    g.write_text("version 1.0;\nextension KHR_enable_fragment_definitions;\n" + text.split("\n", 1)[1])
    with pytest.raises(ValueError, match="fragments"):
        rn.verify_nnef(folder)
