"""refdet.exchange.onnx: export, parameter round trips, runtime parity (onnxruntime, onnx.reference),
the checker, odd FPN sizes, post-processing (decode + NonMaxSuppression) and hostile files."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refdet
from refdet.testing import strategies as rst

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from refdet.exchange import onnx as rx  # noqa: E402
from refdet.exchange.cli import random_params  # noqa: E402


def scaled(params, seed=0):
    """Random float32 params with O(1) outputs: N(0, 1/fan_in) weights, N(0, 0.1) biases (the stock
    initialisers give outputs ~0.01, too small to catch a layout bug)."""
    r = np.random.default_rng(seed)
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        fan_in = int(np.prod(v.shape[1:])) if v.ndim == 4 else 10
        out[k] = (r.standard_normal(v.shape) / math.sqrt(fan_in)).astype(np.float32)
        if k.endswith(".1.weight"):          # GroupNorm gamma around 1
            out[k] += np.float32(1)
    return out


def head(gn=False, c=8, a=3, k=4, depth=2):
    return scaled(refdet.retinanet_head_init(c, a, k, rng=0, num_convs=depth,
                                             norm="group_norm" if gn else None))


def fpn(chans=(8, 16, 32), f=8, extra="p6p7"):
    return scaled(refdet.fpn_init(list(chans), f, rng=0, extra_blocks=extra))


def fpn_head():
    p = {"backbone.fpn." + k: v for k, v in fpn().items()}
    p.update({"head." + k: v for k, v in head().items()})
    return p


def assert_ok(report):
    assert report.ok, "\n" + str(report)
    assert {r["runtime"] for r in report.rows} == {"onnxruntime", "onnx.reference"}


# ---------------------------------------------------------------------------------------------------
# optional dependency stays optional
# ---------------------------------------------------------------------------------------------------

def test_import_refdet_does_not_import_onnx_or_nnef():
    code = ("import sys, refdet, refdet.exchange, refdet.cli; refdet.cli.build_parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'nnef', 'torch')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_lazy_names_of_refdet_exchange():
    import refdet.exchange as ex

    assert ex.export_onnx is rx.export_onnx and ex.load_onnx_params is rx.load_onnx_params
    assert callable(ex.export_nnef) and callable(ex.load_nnef)
    with pytest.raises(AttributeError):
        ex.no_such_name


# ---------------------------------------------------------------------------------------------------
# round trips and the checker
# ---------------------------------------------------------------------------------------------------

CASES = {
    "retinanet_head": (lambda: head(), {}),
    "retinanet_head_gn": (lambda: head(gn=True, c=16), {"num_groups": 4}),
    "retinanet_head_3_levels": (lambda: head(), {"num_levels": 3}),
    "rpn_head": (lambda: scaled(refdet.rpn_head_init(8, 3, rng=0)), {"model": "rpn_head", "num_levels": 2}),
    "rpn_head_softmax": (lambda: scaled(refdet.rpn_head_init(8, 3, rng=0, objectness="softmax")),
                         {"model": "rpn_head"}),
    "fpn_p6p7": (lambda: fpn(), {"model": "fpn"}),
    "fpn_maxpool": (lambda: fpn(extra="maxpool"), {"model": "fpn", "extra_blocks": "maxpool"}),
    "fpn_retinanet_head": (fpn_head, {"model": "fpn_retinanet_head"}),
}


def _export(case, **kw):
    make, opts = CASES[case]
    p = make()
    opts = dict(opts, **kw)
    opts.setdefault("model", "retinanet_head")
    return p, rx.export_onnx(p, **opts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_parameters_round_trip_identically(case, tmp_path):
    p, m = _export(case)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    for src in (m, str(path), path.read_bytes()):
        back = rx.load_onnx_params(src)
        assert list(back) == list(p) or set(back) == set(p)
        for k, v in p.items():
            assert back[k].dtype == np.float32 and back[k].shape == v.shape
            assert np.array_equal(back[k], v), k


def test_float64_params_come_back_as_their_float32_values():
    p64 = {k: v.astype(np.float64) + 1e-12 for k, v in head().items()}
    back = rx.load_onnx_params(rx.export_onnx(p64))
    for k, v in p64.items():
        assert np.array_equal(back[k], v.astype(np.float32))


@pytest.mark.parametrize("opset", [17, 18, 19, 20, 21])
def test_checker_full_check_and_ir_version_per_opset(opset):
    for case in ("retinanet_head_gn", "fpn_p6p7"):
        _, m = _export(case, opset=opset)
        onnx.checker.check_model(m, full_check=True)
        onnx.shape_inference.infer_shapes(m, strict_mode=True)
        assert m.opset_import[0].version == opset
        # IR 8 for opset <= 18, 9 for 19-20, 10 for 21 (onnx.helper.VERSION_TABLE)
        assert m.ir_version == {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}[opset]
    m = rx.export_onnx(model="postprocess", opset=opset)
    onnx.checker.check_model(m, full_check=True)


def test_graph_layout_follows_the_spec():
    _, m = _export("fpn_p6p7")
    resizes = [n for n in m.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    for n in resizes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs == {"mode": b"nearest", "coordinate_transformation_mode": b"asymmetric",
                         "nearest_mode": b"floor"}
        assert n.input[1] == "" and n.input[2] == ""        # sizes only, from the lateral's Shape
        shape_node = next(s for s in m.graph.node if n.input[3] in s.output)
        assert shape_node.op_type == "Shape"
    _, m = _export("retinanet_head")
    perms = [onnx.helper.get_attribute_value(n.attribute[0]) for n in m.graph.node if n.op_type == "Transpose"]
    assert perms == [[0, 2, 3, 1], [0, 2, 3, 1]]
    m = rx.export_onnx(model="postprocess")
    nms = next(n for n in m.graph.node if n.op_type == "NonMaxSuppression")
    inits = {t.name for t in m.graph.initializer}
    assert list(nms.input[2:]) == ["max_output_boxes_per_class", "iou_threshold", "score_threshold"]
    assert set(nms.input[2:]) <= inits


# ---------------------------------------------------------------------------------------------------
# runtime parity
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_runtimes_agree_with_refdet(case):
    _, m = _export(case)
    assert_ok(rx.verify_onnx(m, rng=1, batch=2))


@pytest.mark.parametrize("sizes", [[(13, 9), (7, 5), (4, 3)], [(25, 17), (13, 9), (7, 5)],
                                   [(5, 7), (3, 4), (2, 2)], [(38, 10), (19, 5), (10, 3)],
                                   [(6, 6), (4, 5), (3, 2)]])
def test_fpn_odd_sizes(sizes):
    # 13 x 9 C3 under 7 x 5 C4: Resize to the lateral's Shape must reproduce torch 'nearest'
    # (src = floor(dst * in / out)) for 7 -> 13, 5 -> 9, 4 -> 7 ...; the last case is not a 2x pyramid
    _, m = _export("fpn_p6p7")
    r = np.random.default_rng(3)
    inputs = {f"features_{i}": r.standard_normal((1, c, h, w)).astype(np.float32)
              for i, (c, (h, w)) in enumerate(zip((8, 16, 32), sizes))}
    assert_ok(rx.verify_onnx(m, inputs))


def test_onnx_default_resize_would_pick_other_rows():
    # The same model with ONNX's default half_pixel/round_prefer_floor disagrees on 13 x 9 over 7 x 5:
    # the comparison is strong enough to see the pitfall of SPEC §6.3.
    _, m = _export("fpn_p6p7")
    for n in m.graph.node:
        if n.op_type == "Resize":
            del n.attribute[:]
            n.attribute.extend([onnx.helper.make_attribute("mode", "nearest")])
    report = rx.verify_onnx(m, runtimes=("onnxruntime",))
    assert not report.ok
    assert not next(r for r in report.rows if r["output"] == "fpn_0")["ok"]


@pytest.mark.parametrize("mode,fuse", [("nearest-exact", "sum"), ("nearest", "avg")])
def test_fpn_knobs(mode, fuse):
    p = fpn(extra="none")
    m = rx.export_onnx(p, model="fpn", upsample_mode=mode, fuse=fuse)
    r = np.random.default_rng(0)
    for sizes in ([(16, 8), (8, 4), (4, 2)], [(13, 9), (7, 5), (4, 3)]):
        inputs = {f"features_{i}": r.standard_normal((1, c, h, w)).astype(np.float32)
                  for i, (c, (h, w)) in enumerate(zip((8, 16, 32), sizes))}
        assert_ok(rx.verify_onnx(m, inputs))
    m = rx.export_onnx(p, model="fpn", convention="detectron2")           # upsample="x2": scales 2
    inputs = {f"features_{i}": r.standard_normal((1, c, h, w)).astype(np.float32)
              for i, (c, (h, w)) in enumerate(zip((8, 16, 32), [(16, 8), (8, 4), (4, 2)]))}
    assert_ok(rx.verify_onnx(m, inputs))


@pytest.mark.parametrize("src", ["c5", "p5", "lateral"])
def test_fpn_p6p7_inputs(src):
    f = 8
    chans = (8, 16, 32) if src == "c5" else (8, 16, 32)
    p = scaled(refdet.fpn_init(list(chans), f, rng=0, p6p7_input=src))
    m = rx.export_onnx(p, model="fpn", p6p7_input=src, relu_before_p7=(src != "lateral"))
    assert_ok(rx.verify_onnx(m, rng=2))


def test_head_outputs_match_flatten_head_output_directly():
    p = head()
    m = rx.export_onnx(p, num_levels=2)
    r = np.random.default_rng(0)
    f0 = r.standard_normal((2, 8, 5, 3)).astype(np.float32)
    f1 = r.standard_normal((2, 8, 3, 2)).astype(np.float32)
    got = rx.run_onnx(m, {"features_0": f0, "features_1": f1})
    out, _ = refdet.retinanet_head_forward(p, [f0, f1])
    want = refdet.flatten_head_output(out.cls_logits, 3)
    assert got["cls_logits"].shape == (2, (15 + 6) * 3, 4)
    np.testing.assert_allclose(got["cls_logits"], want, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# post-processing: decode + NonMaxSuppression
# ---------------------------------------------------------------------------------------------------

def _post_inputs(anchors, logits, deltas=None):
    anchors = np.asarray(anchors, np.float32)
    logits = np.asarray(logits, np.float32)
    if logits.ndim == 1:
        logits = logits[None, :, None]
    if deltas is None:
        deltas = np.zeros((logits.shape[0], len(anchors), 4), np.float32)
    return {"cls_logits": logits, "bbox_deltas": np.asarray(deltas, np.float32), "anchors": anchors}


def test_postprocess_golden_threshold_ties_and_cap():
    # Zero deltas decode every anchor to itself (exp(0) = 1). Boxes 0 and 1 overlap with
    # IoU = (10*5) / (10*10) = 0.5 exactly: with iou_threshold 0.5 box 1 is KEPT (suppression needs
    # IoU > threshold, strictly). Box 2 = box 0 (IoU 1) is suppressed. Boxes 3 and 4 are zero-area:
    # never suppressed, never suppress. Logits 2, 1, 2, 0, 0: box 2 ties box 0 and loses the tie
    # (lower index first), box 3 ties box 4 -> order 0, 1, 3, 4; score threshold sigmoid(-1) = 0.27
    # drops nothing.
    anchors = [[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 10], [5, 5, 5, 9], [5, 5, 5, 9]]
    inputs = _post_inputs(anchors, [2.0, 1.0, 2.0, 0.0, 0.0])
    m = rx.export_onnx(model="postprocess", iou_threshold=0.5, score_threshold=0.25)
    got = rx.run_onnx(m, inputs)
    np.testing.assert_array_equal(got["selected_indices"][:, 2], [0, 1, 3, 4])
    np.testing.assert_array_equal(got["boxes"][0], np.asarray(anchors, np.float32))
    assert_ok(rx.verify_onnx(m, inputs))
    # max_output_boxes_per_class = 2 keeps the first two selections
    m2 = rx.export_onnx(model="postprocess", iou_threshold=0.5, max_output_boxes_per_class=2)
    np.testing.assert_array_equal(rx.run_onnx(m2, inputs)["selected_indices"], [[0, 0, 0], [0, 0, 1]])
    assert_ok(rx.verify_onnx(m2, inputs))
    # the threshold just below 0.5 suppresses box 1
    m3 = rx.export_onnx(model="postprocess", iou_threshold=float(np.nextafter(np.float32(0.5), np.float32(0))))
    np.testing.assert_array_equal(rx.run_onnx(m3, inputs)["selected_indices"][:, 2], [0, 3, 4])


def test_postprocess_decode_clamp_and_weights():
    # TV9: anchor [0, 0, 10, 10], deltas [0, 0, 10, 10] clamp to w = 10 * 1000 / 16 = 625 ->
    # [-307.5, -307.5, 317.5, 317.5]. With weights (10, 10, 5, 5) the deltas [1, 2, 5, 5] mean
    # dx = 0.1, dy = 0.2, dw = dh = 1: centre (6, 7), size 10e = 27.18...
    inputs = _post_inputs([[0, 0, 10, 10]], [[[0.0]], [[0.0]]], deltas=[[[0, 0, 10, 10]], [[1, 2, 5, 5]]])
    m = rx.export_onnx(model="postprocess")
    got = rx.run_onnx(m, inputs)["boxes"]
    np.testing.assert_allclose(got[0, 0], [-307.5, -307.5, 317.5, 317.5], rtol=1e-6)
    mw = rx.export_onnx(model="postprocess", weights=(10, 10, 5, 5))
    e = 10 * math.e
    np.testing.assert_allclose(rx.run_onnx(mw, inputs)["boxes"][1, 0],
                               [1 + 5 - e / 2, 2 + 5 - e / 2, 1 + 5 + e / 2, 2 + 5 + e / 2], rtol=1e-6)
    assert_ok(rx.verify_onnx(mw, inputs))


def test_postprocess_without_score_threshold_and_empty():
    m = rx.export_onnx(model="postprocess", score_threshold=None)
    nms = next(n for n in m.graph.node if n.op_type == "NonMaxSuppression")
    assert len(nms.input) == 4
    assert_ok(rx.verify_onnx(m, rng=5))
    # max_output_boxes_per_class = 0 selects nothing (ONNX semantics), refdet agrees
    m0 = rx.export_onnx(model="postprocess", max_output_boxes_per_class=0)
    report = rx.verify_onnx(m0, runtimes=("onnxruntime",))
    assert report.ok
    assert next(r for r in report.rows if r["output"] == "selected_indices")["shape"] == (0, 3)


@settings(max_examples=30)
@given(rst.nms_inputs(min_n=1, max_n=20), st.integers(1, 5), st.sampled_from([None, 0.0, 0.5]))
def test_postprocess_nms_matches_onnxruntime_exactly(data, k, score_thr):
    boxes, logits, thr = data
    # degenerate anchors are fine (zero-area boxes decode to zero-area boxes)
    inputs = _post_inputs(boxes, logits)
    m = rx.export_onnx(model="postprocess", iou_threshold=thr, max_output_boxes_per_class=k,
                       score_threshold=score_thr)
    report = rx.verify_onnx(m, inputs, runtimes=("onnxruntime",), check=False)
    assert report.ok, "\n" + str(report)


# ---------------------------------------------------------------------------------------------------
# bad arguments and hostile files
# ---------------------------------------------------------------------------------------------------

def test_bad_arguments():
    with pytest.raises(ValueError, match="opset"):
        rx.export_onnx(head(), opset=16)
    with pytest.raises(ValueError, match="model"):
        rx.export_onnx(head(), model="ssd_head")
    with pytest.raises(TypeError):
        rx.export_onnx([1, 2, 3])
    with pytest.raises(ValueError, match="iou_threshold"):
        rx.export_onnx(model="postprocess", iou_threshold=1.5)
    with pytest.raises(ValueError, match="params"):
        rx.export_onnx({"head.x": np.zeros(3)}, model="fpn_retinanet_head")
    with pytest.raises(ValueError):
        rx.export_onnx({"classification_head.cls_logits.weight": np.zeros((12, 8, 3, 3))})
    with pytest.raises(TypeError):
        rx.load_onnx_params(12)


def test_hostile_files(tmp_path):
    _, m = _export("retinanet_head")
    good = m.SerializeToString()
    cases = {}
    cases["garbage.onnx"] = b"\x00\xff" * 100 + b"not a protobuf"
    cases["truncated.onnx"] = good[: len(good) // 2]
    cases["empty.onnx"] = b""
    # an initializer claiming 2**40 floats while storing a few bytes: refused before any allocation
    big = onnx.ModelProto()
    big.CopyFrom(m)
    t = big.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])
    cases["absurd_extents.onnx"] = big.SerializeToString()
    # external data pointing outside the model's folder
    ext = onnx.ModelProto()
    ext.CopyFrom(m)
    t = ext.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../etc/passwd")
    cases["external.onnx"] = ext.SerializeToString()
    # metadata listing parameters that are not there
    bad_meta = onnx.ModelProto()
    bad_meta.CopyFrom(m)
    for p in bad_meta.metadata_props:
        if p.key == "refdet.params":
            p.value = '["nope"]'
    cases["bad_meta.onnx"] = bad_meta.SerializeToString()
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError):
            rx.load_onnx_params(str(path))
    with pytest.raises(ValueError, match="max_bytes"):
        rx.load_onnx_params(good, max_bytes=100)
    with pytest.raises(ValueError, match="missing"):
        rx.load_onnx_params(str(tmp_path / "missing.onnx"))
    # a model with no refdet metadata: every initializer by name, but verify_onnx refuses it
    plain = onnx.ModelProto()
    plain.CopyFrom(m)
    del plain.metadata_props[:]
    assert set(rx.load_onnx_params(plain)) >= set(head())
    with pytest.raises(ValueError, match="not exported by refdet"):
        rx.verify_onnx(plain)


# ---------------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------------

def test_cli_export_and_verify(tmp_path, capsys):
    from refdet import cli
    from refdet.exchange.files import save_params_npz

    out = str(tmp_path / "fpn.onnx")
    assert cli.main(["export", "--model", "fpn", "--format", "onnx", out]) == 0
    assert cli.main(["verify-export", out]) == 0
    text = capsys.readouterr().out
    assert "onnxruntime" in text and "onnx.reference" in text and "fpn_0" in text and "all outputs agree" in text
    # the seed's parameters are what was exported
    want = random_params("fpn", seed=0)
    back = rx.load_onnx_params(out)
    assert all(np.array_equal(back[k], v) for k, v in want.items())
    # --params from an .npz
    npz = str(tmp_path / "p.npz")
    p = fpn_head()
    save_params_npz(p, npz)
    out2 = str(tmp_path / "fh.onnx")
    assert cli.main(["export", "--model", "fpn-retinanet-head", "--params", npz, out2]) == 0
    back = rx.load_onnx_params(out2)
    assert all(np.array_equal(back[k], v) for k, v in p.items())
    assert cli.main(["verify-export", out2]) == 0
    # existing output without --overwrite is an error (exit 2), a disagreement exits 1
    assert cli.main(["export", "--model", "fpn", out]) == 2
    m = onnx.load(out)
    for n in m.graph.node:
        if n.op_type == "Resize":
            del n.attribute[:]
    onnx.save(m, out)
    assert cli.main(["verify-export", out]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().out
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    assert cli.main(["verify-export", str(bad)]) == 2


@pytest.mark.parametrize("model", ["retinanet-head", "rpn-head", "postprocess"])
def test_cli_models(model, tmp_path):
    from refdet import cli

    out = str(tmp_path / "m.onnx")
    assert cli.main(["export", "--model", model, out, "--seed", "3"]) == 0
    assert os.path.getsize(out) > 0
    assert cli.main(["verify-export", out, "--batch", "2"]) == 0


# ---------------------------------------------------------------------------------------------------
# the upsampling index map: Resize (asymmetric/floor) and the Gather emulation vs PyTorch's rule
# ---------------------------------------------------------------------------------------------------

def _index_session(op, mode):
    """A one-axis model: x (1, 1, 1, n_in) -> (1, 1, 1, n_out), n_out from the shape of `like`."""
    import onnxruntime as ort

    g = rx._Builder(onnx, 19)
    if op == "resize":
        attrs = rx._resize_attrs(mode)
        y = g.op("Resize", ["x", "", "", g.op("Shape", ["like"])], **attrs)
    else:
        y = g.upsample_gather("x", "like", mode)
    g.nodes.append(onnx.helper.make_node("Identity", [y], ["y"]))
    T = onnx.TensorProto
    graph = onnx.helper.make_graph(
        g.nodes, "idx", [onnx.helper.make_tensor_value_info("x", T.FLOAT, [1, 1, "H", "W"]),
                         onnx.helper.make_tensor_value_info("like", T.FLOAT, [1, 1, "H2", "W2"])],
        [onnx.helper.make_tensor_value_info("y", T.FLOAT, [1, 1, "H2", "W2"])], initializer=g.inits)
    m = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 19)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(n_in, n_out):
        x = np.arange(n_in, dtype=np.float32).reshape(1, 1, 1, n_in)
        y = sess.run(None, {"x": x, "like": np.zeros((1, 1, 1, n_out), np.float32)})[0]
        return y.reshape(-1).astype(np.int64)
    return run


def test_resize_matches_torch_nearest_on_pyramid_sizes():
    from refdet.layers import upsample_nearest_source_index as src

    run = _index_session("resize", "nearest")
    for n in range(1, 400):                       # 2x pyramids: out = 2 in - 1 or 2 in
        for out in (2 * n - 1, 2 * n):
            np.testing.assert_array_equal(run(n, out), src(n, out, mode="nearest"), err_msg=f"{n} -> {out}")
    # ...but not for every ratio: 14 -> 16, output 8: 8 * 14 / 16 = 7 exactly. PyTorch:
    # 8 * float32(0.875) = 7.0 -> row 7; onnxruntime: 8 / float32(16 / 14) = 6.9999995 -> row 6.
    assert src(14, 16, mode="nearest")[8] == 7 and run(14, 16)[8] == 6


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_gather_upsampling_is_torch_exact_for_every_size(mode):
    from refdet.layers import upsample_nearest_source_index as src

    run = _index_session("gather", mode)
    for n in range(1, 40):
        for out in range(1, 90):
            np.testing.assert_array_equal(run(n, out), src(n, out, mode=mode), err_msg=f"{n} -> {out}")
    for n, out in ((14, 16), (50, 99), (1000, 1999), (7, 13)):
        np.testing.assert_array_equal(run(n, out), src(n, out, mode=mode), err_msg=f"{n} -> {out}")


def test_gather_upsampling_against_torch_interpolate():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    run = {m: _index_session("gather", m) for m in ("nearest", "nearest-exact")}
    for n, out in ((14, 16), (13, 25), (50, 99), (3, 5), (38, 75), (9, 4)):
        for mode in ("nearest", "nearest-exact"):
            x = torch.arange(n, dtype=torch.float32).reshape(1, 1, 1, n)
            want = torch.nn.functional.interpolate(x, size=(1, out), mode=mode).reshape(-1).long().numpy()
            np.testing.assert_array_equal(run[mode](n, out), want, err_msg=f"{mode} {n} -> {out}")


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_fpn_with_gather_upsampling_any_sizes(mode):
    p = fpn(extra="none")
    m = rx.export_onnx(p, model="fpn", upsample_op="gather", upsample_mode=mode)
    r = np.random.default_rng(0)
    for sizes in ([(16, 16), (14, 14), (3, 3)], [(99, 5), (50, 3), (25, 2)]):
        inputs = {f"features_{i}": r.standard_normal((1, c, h, w)).astype(np.float32)
                  for i, (c, (h, w)) in enumerate(zip((8, 16, 32), sizes))}
        assert_ok(rx.verify_onnx(m, inputs))
    # the Resize export of the same model disagrees on 16 over 14 (rows 8 vs 7 of the 14 -> 16 map)
    if mode == "nearest":
        inputs = {f"features_{i}": r.standard_normal((1, c, h, w)).astype(np.float32)
                  for i, (c, (h, w)) in enumerate(zip((8, 16, 32), [(16, 16), (14, 14), (3, 3)]))}
        assert not rx.verify_onnx(rx.export_onnx(p, model="fpn", upsample_mode=mode), inputs).ok


# ---------------------------------------------------------------------------------------------------
# end to end against torchvision: its modules' state_dicts exported, run in onnxruntime
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("v2", [False, True])
def test_torchvision_fpn_and_retinanet_head_through_onnxruntime(v2):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from functools import partial

    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.set_num_threads(1)
    torch.manual_seed(0)
    f, a, k = 16, 3, 5
    # v1: P6 from P5 (in == out channels); v2: P6 from C5 and GroupNorm(4) towers
    extra = LastLevelP6P7(32, f) if v2 else LastLevelP6P7(f, f)
    fpn_m = FeaturePyramidNetwork([8, 16, 32], f, extra_blocks=extra).eval()
    head_m = RetinaNetHead(f, a, k, norm_layer=partial(torch.nn.GroupNorm, 4) if v2 else None).eval()
    with torch.no_grad():                   # move the GroupNorm affine params and biases off 1 / 0
        for name, prm in head_m.named_parameters():
            if prm.ndim == 1:
                prm.add_(0.1 * torch.randn_like(prm))
    params = {"backbone.fpn." + n: t.detach().numpy().copy() for n, t in fpn_m.state_dict().items()}
    params.update({"head." + n: t.detach().numpy().copy() for n, t in head_m.state_dict().items()})
    m = rx.export_onnx(params, model="fpn_retinanet_head", num_groups=4)
    r = np.random.default_rng(0)
    feats = [r.standard_normal((2, c, h, w)).astype(np.float32)
             for c, (h, w) in zip((8, 16, 32), [(13, 9), (7, 5), (4, 3)])]
    got = rx.run_onnx(m, {f"features_{i}": x for i, x in enumerate(feats)})
    with torch.no_grad():
        levels = fpn_m({str(i): torch.from_numpy(x) for i, x in enumerate(feats)})
        out = head_m(list(levels.values()))
    for ours, theirs in (("cls_logits", "cls_logits"), ("bbox_deltas", "bbox_regression")):
        want = out[theirs].numpy()
        assert got[ours].shape == want.shape
        np.testing.assert_allclose(got[ours], want, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert_ok(rx.verify_onnx(m, {f"features_{i}": x for i, x in enumerate(feats)}))


def test_postprocess_boxes_match_torchvision_box_coder():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import BoxCoder

    r = np.random.default_rng(0)
    xy = r.uniform(0, 80, (40, 2))
    anchors = np.concatenate([xy, xy + r.uniform(1, 30, (40, 2))], 1).astype(np.float32)
    deltas = (r.standard_normal((1, 40, 4)) * 2).astype(np.float32)
    deltas[0, :3, 2:] = 9.0                                      # hits the log(1000 / 16) clamp
    m = rx.export_onnx(model="postprocess", weights=(1.0, 1.0, 1.0, 1.0))
    got = rx.run_onnx(m, {"cls_logits": np.zeros((1, 40, 2), np.float32), "bbox_deltas": deltas,
                          "anchors": anchors})["boxes"][0]
    want = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(torch.from_numpy(deltas[0]), torch.from_numpy(anchors))
    # float32 in the same order of operations; only exp may differ in the last bit (MKL vs MLAS)
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-7, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# the quantized RetinaNet head as QDQ
# ---------------------------------------------------------------------------------------------------

def _qhead(seed=0, scheme="onnx", activation_dtype="uint8", c=8):
    from refdet.quant import quantize_retinanet_head

    p = head(c=c, depth=2)
    r = np.random.default_rng(seed)
    cal = [[r.standard_normal((2, c, 9, 7)).astype(np.float32) * (1 + i)] for i in range(3)]
    return quantize_retinanet_head(p, cal, scheme=scheme, activation_dtype=activation_dtype)


def _same_qhead(a, b):
    assert (a.scheme, a.activation_dtype, a.num_anchors, a.num_classes) == \
        (b.scheme, b.activation_dtype, b.num_anchors, b.num_classes)
    assert a.input_scale == b.input_scale and a.input_zero_point == b.input_zero_point
    for la, lb in zip(a.cls_layers + a.box_layers, b.cls_layers + b.box_layers):
        for f in la._fields:
            x, y = getattr(la, f), getattr(lb, f)
            if f == "name":
                assert x == y
            else:
                assert np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y), (la.name, f)


@pytest.mark.parametrize("scheme,adt", [("onnx", "uint8"), ("onnx", "int8"), ("tflite", "int8")])
def test_qdq_round_trip(scheme, adt, tmp_path):
    q = _qhead(scheme=scheme, activation_dtype=adt)
    m = rx.export_onnx(q, model="quantized_retinanet_head", num_levels=2)
    onnx.checker.check_model(m, full_check=True)
    path = tmp_path / "q.onnx"
    onnx.save(m, str(path))
    _same_qhead(q, rx.load_quantized_head(str(path)))
    p = rx.load_onnx_params(m)
    name = q.cls_layers[0].name
    assert p[name + ".weight_quantized"].dtype == np.int8 and p[name + ".bias_quantized"].dtype == np.int32
    assert p["input_zero_point"].dtype == np.dtype(adt) and p["input_zero_point"].shape == ()
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Conv") == 2 * 2 * 3 and "QuantizeLinear" in ops
    dq_w = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith(".weight_quantized")]
    assert all(onnx.helper.get_attribute_value(n.attribute[0]) == 0 for n in dq_w)   # axis 0: per channel


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_qdq_onnxruntime_equals_refdet_integer_path(seed):
    import onnxruntime as ort

    # uint8 activations (onnxruntime's default): every conv is fused into QLinearConv and the
    # outputs are the integers of run_quantized_head(mode="onnxruntime"), exactly
    q = _qhead(seed=seed)
    m = rx.export_onnx(q, model="quantized_retinanet_head", num_levels=2)
    report = rx.verify_onnx(m, rng=seed, batch=2, lsb_tolerance=0, runtimes=("onnxruntime",))
    assert report.ok, "\n" + str(report)
    so = ort.SessionOptions()
    so.optimized_model_filepath = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"refdet_qdq_{os.getpid()}.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    fused = onnx.load(so.optimized_model_filepath)
    os.remove(so.optimized_model_filepath)
    ops = {n.op_type for n in fused.graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    # onnx.reference and the unfused session compute float convs on dequantized values: within 1 LSB
    report = rx.verify_onnx(m, rng=seed, batch=2, runtimes=("onnx.reference", "onnxruntime-unfused"))
    assert report.ok, "\n" + str(report)


def test_qdq_int8_and_tflite_scheme_within_one_lsb():
    for scheme in ("onnx", "tflite"):
        m = rx.export_onnx(_qhead(scheme=scheme, activation_dtype="int8"), model="quantized_retinanet_head")
        assert_ok(rx.verify_onnx(m, rng=3))


def test_qdq_bad_arguments():
    with pytest.raises(TypeError, match="QuantizedHead"):
        rx.export_onnx(head(), model="quantized_retinanet_head")
    with pytest.raises(ValueError, match="opset"):
        rx.export_onnx(_qhead(), model="quantized_retinanet_head", opset=17)
    with pytest.raises(ValueError, match="not a 'quantized_retinanet_head'"):
        rx.load_quantized_head(rx.export_onnx(head()))
    from refdet.exchange import nnef as rn

    with pytest.raises(ValueError, match="ONNX"):
        rn.export_nnef(_qhead(), "/nonexistent/never", model="quantized_retinanet_head")


def test_cli_quantized(tmp_path, capsys):
    from refdet import cli

    out = str(tmp_path / "q.onnx")
    assert cli.main(["export", "--model", "quantized-retinanet-head", out, "--levels", "2"]) == 0
    assert cli.main(["verify-export", out]) == 0
    assert "all outputs agree" in capsys.readouterr().out
    q = rx.load_quantized_head(out)
    assert q.activation_dtype == "uint8" and q.scheme == "onnx"


def test_nms_disagreement_is_explained():
    # A tampered graph whose NonMaxSuppression reads IoU threshold 0.7 instead of the recorded 0.5:
    # boxes with IoU 0.6 are both kept. verify_onnx flags it and says that refdet's NMS on the
    # runtime's own boxes does not reproduce it (a semantics difference, not float noise).
    m = rx.export_onnx(model="postprocess", iou_threshold=0.5, score_threshold=None)
    inputs = _post_inputs([[0, 0, 10, 10], [0, 0, 10, 6]], [1.0, 0.5])      # IoU 60 / 100 = 0.6
    assert rx.verify_onnx(m, inputs, runtimes=("onnxruntime",)).ok
    bad = onnx.ModelProto()
    bad.CopyFrom(m)
    bad.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray([0.7], np.float32), "other_iou"))
    next(n for n in bad.graph.node if n.op_type == "NonMaxSuppression").input[3] = "other_iou"
    report = rx.verify_onnx(bad, inputs, runtimes=("onnxruntime",))
    row = next(r for r in report.rows if r["output"] == "selected_indices")
    assert not row["ok"] and "semantics difference" in row["note"]
    assert "the runtime has 2 rows, refdet 1" in row["note"]
    # a model whose refdet.params drop a post-processing setting is refused, not half-verified
    for p in bad.metadata_props:
        if p.key == "refdet.params":
            p.value = '["weights", "clamp", "max_output_boxes_per_class"]'
    with pytest.raises(ValueError, match="iou_threshold"):
        rx.verify_onnx(bad, inputs)


def test_hostile_config_metadata():
    _, m = _export("retinanet_head")
    for bad in ('{"model": "retinanet_head", "in_channels": [1000000000]}', '{"model": "x"}', "[1, 2]", "{bad json",
                '{"model": "retinanet_head", "in_channels": [9]}'):
        mm = onnx.ModelProto()
        mm.CopyFrom(m)
        for p in mm.metadata_props:
            if p.key == "refdet.config":
                p.value = bad
        with pytest.raises(ValueError):
            rx.verify_onnx(mm)


def test_verify_refuses_foreign_operators():
    # verify_onnx runs the file: a graph with an operator refdet never writes (here a ConstantOfShape
    # asking for 2**40 floats) is refused before any runtime sees it
    _, m = _export("retinanet_head")
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray([1 << 20, 1 << 20], np.int64), "_big"))
    m.graph.node.insert(0, onnx.helper.make_node("ConstantOfShape", ["_big"], ["_junk"]))
    with pytest.raises(ValueError, match="operators refdet never emits"):
        rx.verify_onnx(m, check=False)


# ---------------------------------------------------------------------------------------------------
# the Faster R-CNN box head with its multi-scale RoIAlign (issue 14)
# ---------------------------------------------------------------------------------------------------

def _box_head_case(seed=0, levels=4, C=4, size=(3, 3), K=24, classes=5, image=(128, 96), aligned=False):
    rng = np.random.default_rng(seed)
    p = refdet.box_head_init(C * size[0] * size[1], classes, representation_size=16, rng=seed)
    p = {k: (rng.standard_normal(v.shape) / math.sqrt(v.shape[-1])).astype(np.float32) for k, v in p.items()}
    scales = [2.0 ** -(2 + i) for i in range(levels)]
    B = 2
    feats = {f"features_{i}": rng.standard_normal((B, C, math.ceil(image[0] * s), math.ceil(image[1] * s)))
             .astype(np.float32) for i, s in enumerate(scales)}
    # sizes spread over every level (sqrt(area) from 8 to 800), on a 1/4 grid, a few exactly on 224 / 448
    side = np.exp(rng.uniform(np.log(8), np.log(800), (K, 2)))
    side[:3] = [[224, 224], [448, 448], [112, 448]]
    ctr = rng.uniform(0, [image[1], image[0]], (K, 2))
    rois = np.round(np.concatenate([ctr - side / 2, ctr + side / 2], 1) * 4) / 4
    inputs = dict(feats, rois=rois.astype(np.float32), batch_indices=rng.integers(0, B, K).astype(np.int64))
    return p, scales, inputs


@pytest.mark.parametrize("levels,aligned,sr", [(4, False, 2), (4, True, 0), (1, False, -1), (3, False, 2)])
def test_box_head_export_runs_in_both_runtimes_like_refdet(levels, aligned, sr):
    p, scales, inputs = _box_head_case(levels=levels, aligned=aligned)
    mp = rx.export_box_head_onnx(p, scales=scales, output_size=3, sampling_ratio=sr, aligned=aligned)
    onnx.checker.check_model(mp, full_check=True)
    assert [i.name for i in mp.graph.input][-2:] == ["rois", "batch_indices"]
    ops = [n.op_type for n in mp.graph.node]
    assert ops.count("RoiAlign") == levels and ops.count("Gemm") == 4
    rows = rx.verify_box_head_onnx(mp, p, inputs, atol=1e-5, rtol=1e-5)
    assert len(rows) == 6 and all(r["ok"] for r in rows), rows
    # every level is used, and the levels output is refdet's assignment
    from refdet.roi import assign_roi_levels
    got = rx.run_onnx(mp, inputs)
    if levels > 1:
        want = assign_roi_levels(inputs["rois"], min_level=2, max_level=1 + levels)
        np.testing.assert_array_equal(got["levels"], want)
        assert set(want.tolist()) == set(range(levels))
        assert want[:3].tolist() == [2, min(3, levels - 1), 2]      # 224 -> P4, 448 -> P5, sqrt(112 * 448) = 224
    # a RoIAlign convention mix-up is visible: refdet with the other `aligned` disagrees
    cfg_other = dict(json.loads({q.key: q.value for q in mp.metadata_props}["refdet.config"]), aligned=not aligned)
    other = rx._model_reference.box_head_reference(cfg_other, p, inputs)
    assert not np.allclose(other["class_logits"], got["class_logits"], atol=1e-4)


def test_box_head_export_matches_torchvision_roi_heads():
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    p, scales, inputs = _box_head_case(levels=4, K=30)
    mp = rx.export_box_head_onnx(p, scales=scales, output_size=3)
    got = rx.run_onnx(mp, inputs)
    C = inputs["features_0"].shape[1]
    pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 3, 2)
    head = TwoMLPHead(C * 9, 16)
    pred = FastRCNNPredictor(16, 5)
    sd = {k.replace("box_head.", "").replace("box_predictor.", ""): torch.from_numpy(v) for k, v in p.items()}
    head.load_state_dict({k: v for k, v in sd.items() if k.startswith("fc")})
    pred.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc")})
    feats = {str(i): torch.from_numpy(inputs[f"features_{i}"]) for i in range(4)}
    boxes = [torch.from_numpy(inputs["rois"][inputs["batch_indices"] == b]) for b in range(2)]
    with torch.no_grad():
        x = pred(head(pool(feats, boxes, [(128, 96), (128, 96)])))
    order = np.concatenate([np.flatnonzero(inputs["batch_indices"] == b) for b in range(2)])
    np.testing.assert_allclose(got["class_logits"][order], x[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["box_regression"][order], x[1].numpy(), rtol=1e-5, atol=1e-5)


def test_box_head_export_bad_input():
    p, scales, inputs = _box_head_case()
    with pytest.raises(ValueError, match=r"`scales\[1\]` must be a power of two"):
        rx.export_box_head_onnx(p, scales=[0.25, 0.3])
    with pytest.raises(ValueError, match="is missing 'box_head.fc7.weight'"):
        rx.export_box_head_onnx({k: v for k, v in p.items() if k != "box_head.fc7.weight"}, scales=scales)
    with pytest.raises(ValueError, match="not a multiple of output_size 4 x 4"):
        rx.export_box_head_onnx(p, scales=scales, output_size=4)
    with pytest.raises(ValueError, match="canonical level"):
        rx.export_box_head_onnx(p, scales=scales, output_size=3, convention="mmdet")
    with pytest.raises(ValueError, match="not a refdet box_head model"):
        rx.verify_box_head_onnx(rx.export_onnx(head(), model="retinanet_head"), p, inputs)


# the YOLO post-processing (DFL decode + ultralytics NMS by the class-offset trick)
# ---------------------------------------------------------------------------------------------------

def _yolo_inputs(box_logits, cls_logits, sizes=((2, 2), (1, 1)), strides=(8.0, 16.0)):
    from refdet.yolo import make_anchors
    pts, st = make_anchors(list(sizes), list(strides))
    return {"box_logits": np.asarray(box_logits, np.float32), "cls_logits": np.asarray(cls_logits, np.float32),
            "anchor_points": pts, "stride_tensor": st}


@pytest.mark.parametrize("opset", [17, 18, 19, 20, 21])
def test_yolo_postprocess_checker_and_runtimes(opset):
    m = rx.export_onnx(model="yolo_postprocess", reg_max=8, num_classes=3, opset=opset)
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version == {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}[opset]
    ops = {n.op_type for n in m.graph.node}
    assert {"Softmax", "ReduceSum", "ArgMax", "ReduceMax", "NonMaxSuppression", "Gather"} <= ops
    nms = next(n for n in m.graph.node if n.op_type == "NonMaxSuppression")
    assert list(nms.input[2:]) == ["max_output_boxes_per_class", "iou_threshold", "score_threshold"]
    assert_ok(rx.verify_onnx(m, batch=2, height=8, width=6, rng=opset))


@pytest.mark.parametrize("kw", [dict(reg_max=16, num_classes=80), dict(reg_max=1, num_classes=2),
                                dict(reg_max=4, num_classes=1, agnostic=True),
                                dict(reg_max=4, num_classes=3, score_threshold=None, iou_threshold=0.7,
                                     max_output_boxes_per_class=5)])
def test_yolo_postprocess_variants_agree_with_refdet(kw):
    m = rx.export_onnx(model="yolo_postprocess", **kw)
    assert_ok(rx.verify_onnx(m, batch=2, height=8, width=8, rng=1))
    back = rx.load_onnx_params(m)
    assert back["max_wh"][0] == (0.0 if kw.get("agnostic") else 7680.0)
    assert ("score_threshold" in back) == (kw.get("score_threshold", 0.05) is not None)


def test_yolo_postprocess_golden_decode_offset_trick_and_thresholds():
    R = 4
    z = np.zeros((1, 5, 4 * R), np.float32)
    # point 0 at (0.5, 0.5) of stride 8: distances peaked at bins (1, 1, 2, 2) -> x1y1 = (-0.5, -0.5),
    # x2y2 = (2.5, 2.5) -> cxcywh (1, 1, 3, 3) * 8 = (8, 8, 24, 24) up to the softmax's exp(-30) tails
    for side, k in enumerate((1, 1, 2, 2)):
        z[0, 0, side * R + k] = 30.0
    for side, k in enumerate((2, 1, 1, 2)):     # point 1 at (1.5, 0.5): distances (2, 1, 1, 2), the same box
        z[0, 1, side * R + k] = 30.0
    cls = np.full((1, 5, 2), -9.0, np.float32)
    cls[0, 0] = [2.0, -9.0]          # class 0, score sigmoid(2) = 0.881
    cls[0, 1] = [-9.0, 1.0]          # class 1 (a different class: the offset keeps it), 0.731
    cls[0, 2] = [0.0, -9.0]          # score 0.5: exactly the threshold below -> dropped (score > thr)
    inputs = _yolo_inputs(z, cls)
    m = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=2, score_threshold=0.5, iou_threshold=0.5)
    got = rx.run_onnx(m, inputs)
    np.testing.assert_allclose(got["boxes"][0, 0], [8, 8, 24, 24], atol=1e-3)
    np.testing.assert_array_equal(got["selected_indices"], [[0, 0, 0], [0, 0, 1]])
    det = got["detections"]
    np.testing.assert_allclose(det[:, [0, 5, 6]], [[0, 1 / (1 + math.exp(-2)), 0], [0, 1 / (1 + math.exp(-1)), 1]],
                               rtol=1e-6)
    np.testing.assert_allclose(det[:, 1:5], [[-4, -4, 20, 20]] * 2, atol=1e-3)   # x1 = cx - w / 2 = 8 - 12
    assert_ok(rx.verify_onnx(m, inputs))
    # class-agnostic: the second box (IoU 1 with the first) is suppressed
    ma = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=2, score_threshold=0.5, agnostic=True)
    np.testing.assert_array_equal(rx.run_onnx(ma, inputs)["selected_indices"], [[0, 0, 0]])
    # max_det = 1 keeps only the best
    m1 = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=2, max_output_boxes_per_class=1)
    np.testing.assert_array_equal(rx.run_onnx(m1, inputs)["selected_indices"], [[0, 0, 0]])


def test_yolo_postprocess_equals_ultralytics_semantics_on_the_detector():
    # the exported graph on a YOLO detector's own outputs gives refdet.yolo.yolo_non_max_suppression's
    # rows (ultralytics non_max_suppression): same selections, boxes to float32 precision
    from refdet.detector import Detector
    from refdet.synthetic import make_synthetic_dataset
    from refdet.yolo import dfl_decode_forward, yolo_non_max_suppression

    det = Detector("yolo")
    params = det.init(rng=0)
    for k in params["head"]:
        if k.startswith("cv3") and k.endswith("2.bias"):
            params["head"][k] = params["head"][k] + np.float32(3.0)          # scores around 0.1-0.9
    images = make_synthetic_dataset(3, rng=0).images
    cls, box, _ = det.forward(params, images)
    inputs = {"box_logits": box, "cls_logits": cls, "anchor_points": det.anchor_points_grid.astype(np.float32),
              "stride_tensor": det.stride_tensor.astype(np.float32)}
    m = rx.export_onnx(model="yolo_postprocess", reg_max=det.reg_max, num_classes=2, score_threshold=0.25,
                       iou_threshold=0.45, max_output_boxes_per_class=300)
    got = rx.run_onnx(m, inputs)
    xywh, _ = dfl_decode_forward(box, inputs["anchor_points"], inputs["stride_tensor"], reg_max=det.reg_max)
    pred = np.concatenate([xywh, 1 / (1 + np.exp(-cls))], -1).transpose(0, 2, 1).astype(np.float32)
    rows = yolo_non_max_suppression(pred, 0.25, 0.45, max_det=300)
    d = got["detections"]
    assert len(d) == sum(len(r) for r in rows) > 10
    for b, r in enumerate(rows):
        mine = d[d[:, 0] == b]
        np.testing.assert_array_equal(mine[:, 6], r[:, 5])
        np.testing.assert_allclose(mine[:, 1:6], r[:, :5], rtol=1e-5, atol=1e-4)
    assert_ok(rx.verify_onnx(m, inputs))


def test_yolo_postprocess_equals_ultralytics_itself():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    block = pytest.importorskip("ultralytics.nn.modules.block")
    tal = pytest.importorskip("ultralytics.utils.tal")
    unms = pytest.importorskip("ultralytics.utils.nms")
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    R, K = 16, 3
    inputs = _yolo_inputs((rng.standard_normal((2, 84, 4 * R)) * 2).astype(np.float32),
                          (rng.standard_normal((2, 84, K)) * 2 - 1).astype(np.float32),
                          sizes=((8, 8), (4, 4), (2, 2)), strides=(8.0, 16.0, 32.0))
    with torch.no_grad():
        boxes = tal.dist2bbox(block.DFL(R)(torch.from_numpy(inputs["box_logits"]).permute(0, 2, 1)),
                              torch.from_numpy(inputs["anchor_points"]).T.unsqueeze(0), xywh=True, dim=1) \
            * torch.from_numpy(inputs["stride_tensor"]).T
        pred = torch.cat([boxes, torch.from_numpy(inputs["cls_logits"]).permute(0, 2, 1).sigmoid()], 1)
        ref = unms.non_max_suppression(pred, 0.25, 0.45, max_det=300)
    m = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=K, score_threshold=0.25, iou_threshold=0.45,
                       max_output_boxes_per_class=300)
    d = rx.run_onnx(m, inputs)["detections"]
    for b, r in enumerate(ref):
        mine = d[d[:, 0] == b]
        assert len(mine) == len(r) > 0
        np.testing.assert_array_equal(mine[:, 6], r[:, 5].numpy())
        np.testing.assert_allclose(mine[:, 1:6], r[:, :5].numpy(), rtol=1e-5, atol=2e-4)


@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([1, 4, 16]), st.integers(1, 4),
       st.sampled_from([None, 0.0, 0.3]), st.sampled_from([0.0, 0.45, 0.7]), st.booleans())
def test_yolo_postprocess_selections_match_refdet_exactly(seed, R, K, conf, iou, ties):
    # quantized logits make equal scores and identical boxes (ties broken by the lower index in both)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, 21, 4 * R)) * 2 + (2 if R == 1 else 0)
    c = rng.standard_normal((2, 21, K)) * 2
    if ties:
        z, c = np.round(z), np.round(c)
    inputs = _yolo_inputs(z, c, sizes=((4, 4), (2, 2), (1, 1)), strides=(8.0, 16.0, 32.0))
    m = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=K, score_threshold=conf, iou_threshold=iou,
                       max_output_boxes_per_class=7, check=False)
    report = rx.verify_onnx(m, inputs, runtimes=("onnxruntime",), check=False)
    assert report.ok, "\n" + str(report)


def test_yolo_postprocess_bad_arguments_and_nnef():
    with pytest.raises(ValueError, match="may only have"):
        rx.export_onnx({"weights": np.ones(4)}, model="yolo_postprocess")
    with pytest.raises(TypeError, match="`agnostic`"):
        rx.export_onnx(model="yolo_postprocess", agnostic="yes")
    with pytest.raises(ValueError, match="`reg_max`"):
        rx.export_onnx(model="yolo_postprocess", reg_max=0)
    with pytest.raises(ValueError, match="`iou_threshold`"):
        rx.export_onnx(model="yolo_postprocess", iou_threshold=1.5)
    m = rx.export_onnx(model="yolo_postprocess", reg_max=4, num_classes=2)
    with pytest.raises(ValueError, match="box_logits"):
        rx.verify_onnx(m, _yolo_inputs(np.zeros((1, 5, 12)), np.zeros((1, 5, 2))), runtimes=("onnxruntime",))
    from refdet.exchange import nnef as rn
    with pytest.raises(ValueError, match="NonMaxSuppression"):
        rn.export_nnef(None, "unused_folder", model="yolo_postprocess")


def test_cli_yolo_postprocess(tmp_path):
    from refdet import cli

    out = str(tmp_path / "yolo.onnx")
    assert cli.main(["export", "--model", "yolo-postprocess", out, "--classes", "3"]) == 0
    assert rx.onnx_config(out)["num_classes"] == 3
    assert cli.main(["verify-export", out, "--batch", "2"]) == 0


def test_yolo_postprocess_float32_threshold_corner_differs_from_ultralytics_as_documented():
    # boxes [0.5, 0.5, 12.5, 13.5] (12 x 13) and [-12.5, 0.5, 13.5, 6.5] (26 x 6) overlap 12 x 6: IoU =
    # 72 / 240 = float32(0.3) = 0.30000001. ONNX compares with float32(0.3): kept. torchvision (and so
    # ultralytics and refdet.yolo.yolo_non_max_suppression) compares with the double 0.3: suppressed.
    from refdet.yolo import yolo_non_max_suppression

    R = 16
    z = np.zeros((1, 2, 4 * R), np.float32)
    for p_, dist in ((0, (0, 0, 12, 13)), (1, (14, 0, 12, 6))):
        for side, k in enumerate(dist):
            z[0, p_, side * R + k] = 40.0
    cls = np.array([[[2.2], [1.4]]], np.float32)                      # sigmoid 0.90, 0.80
    inputs = _yolo_inputs(z, cls, sizes=((1, 2),), strides=(1.0,))
    m = rx.export_onnx(model="yolo_postprocess", reg_max=R, num_classes=1, iou_threshold=0.3, score_threshold=0.25)
    got = rx.run_onnx(m, inputs)
    np.testing.assert_array_equal(got["detections"][:, 1:5], [[0.5, 0.5, 12.5, 13.5], [-12.5, 0.5, 13.5, 6.5]])
    np.testing.assert_array_equal(got["selected_indices"][:, 2], [0, 1])          # ONNX keeps both
    assert_ok(rx.verify_onnx(m, inputs))                                           # refdet's ONNX semantics
    pred = np.concatenate([got["boxes"], got["scores"]], -1).transpose(0, 2, 1)
    (rows,) = yolo_non_max_suppression(pred, 0.25, 0.3)
    assert len(rows) == 1                                                           # ultralytics suppresses
