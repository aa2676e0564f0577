"""Fuzz suite, file half (issue 13): hostile model files against every loader and verify path.

Hand-built files (one per known attack) and hypothesis-generated ones (mutations of refdet's own exports:
attributes, initializers, constant inputs, metadata, graph structure and raw bytes of ONNX models; numbers,
operations, nesting, refdet.json fields, tensor headers and links of NNEF folders; members, compressions
and bombs of archives; members and headers of .npz files; headers of .dat files) are written to a temporary
folder, then opened in ONE subprocess per batch whose address space is capped with
``resource.setrlimit(RLIMIT_AS, ...)`` (tests/_hostile_files.py), so that a regression fails instead of
swapping. Every case must end in a return value or a ``ValueError`` / ``TypeError`` whose message names
the file, with the subprocess's peak RSS (``ru_maxrss``) within the interpreter's baseline plus the file's
budget (64 MiB + 16 x its size, refdet.exchange.files), and no runtime may fail for lack of memory.

Counts: 171 hand-built files (501 file x loader cases); the generated ones are ``max_examples`` per family
(5 families: about 300 under the ``ci`` profile, about 5,000 under ``thorough``; a mutation that does not
apply to its base model is skipped). Each test prints its counts (``pytest -s``).
"""
import json
import os
import re
import shutil
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refdet
from refdet.exchange import nnef as rn
from refdet.exchange.files import save_params_npz
from tests import _hostile_files as hf

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from refdet.exchange import onnx as rx  # noqa: E402

_FEEDS = {"head": {"features": [1, 8, 13, 9]}, "gn_head": {"features": [1, 8, 13, 9]},
          "rpn": {"features": [1, 8, 13, 9]}, "qhead": {"features": [1, 8, 13, 9]},
          "fpn": {"features_0": [1, 8, 13, 9], "features_1": [1, 16, 7, 5]},
          "fpn_x2": {"features_0": [1, 8, 8, 8], "features_1": [1, 16, 4, 4]},
          "fpn_gather": {"features_0": [1, 8, 13, 9], "features_1": [1, 16, 7, 5]},
          "post": {"cls_logits": [1, 20, 3], "bbox_deltas": [1, 20, 4], "anchors": [20, 4]}}


def _scaled(params, seed=0):
    r = np.random.default_rng(seed)
    return {k: (r.standard_normal(np.shape(v)) / np.sqrt(max(np.prod(np.shape(v)[1:]), 1))).astype(np.float32)
            for k, v in params.items()}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """refdet's own exports, the material every hostile file is made from."""
    d = tmp_path_factory.mktemp("fuzz_bases")
    head = _scaled(refdet.retinanet_head_init(8, 3, 4, rng=0, num_convs=2))
    gn = _scaled(refdet.retinanet_head_init(8, 3, 4, rng=1, num_convs=1, norm="group_norm"))
    fp = _scaled(refdet.fpn_init([8, 16], 8, rng=0, extra_blocks="maxpool"))
    rpn = _scaled(refdet.rpn_head_init(8, 3, rng=0))
    from refdet.exchange.cli import quantize_for_export

    models = {"head": rx.export_onnx(head), "gn_head": rx.export_onnx(gn, num_groups=4),
              "rpn": rx.export_onnx(rpn, model="rpn_head"),
              "fpn": rx.export_onnx(fp, model="fpn", extra_blocks="maxpool"),
              "fpn_x2": rx.export_onnx(fp, model="fpn", upsample="x2"),
              "fpn_gather": rx.export_onnx(fp, model="fpn", upsample_op="gather"),
              "post": rx.export_onnx(model="postprocess"),
              "qhead": rx.export_onnx(quantize_for_export(refdet.retinanet_head_init(8, 3, 4, rng=0, num_convs=1),
                                                          rescale=True, batches=2),
                                      model="quantized_retinanet_head")}
    out = {"onnx": {}, "models": models, "dir": d}
    for k, m in models.items():
        out["onnx"][k] = str(d / f"{k}.onnx")
        onnx.save(m, out["onnx"][k])
    out["nnef"] = {"head": rn.export_nnef(head, d / "head_nnef", model="retinanet_head"),
                   "fpn": rn.export_nnef(fp, d / "fpn_nnef", model="fpn", extra_blocks="maxpool")}
    out["nnef_feeds"] = {"head": {"features": [1, 8, 13, 9]},
                         "fpn": {"features_0": [1, 8, 13, 9], "features_1": [1, 16, 7, 5]}}
    out["tgz"] = rn.export_nnef(head, d / "head.nnef.tgz", model="retinanet_head")
    out["npz"] = save_params_npz(head, d / "head.npz")
    out["dat"] = os.path.join(out["nnef"]["head"], "classification_head.cls_logits.weight.dat")
    out["warmup"] = [("verify_onnx", out["onnx"]["head"], {}), ("verify_onnx", out["onnx"]["fpn_gather"], {}),
                     ("verify_nnef", out["nnef"]["fpn"], {}), ("load_nnef", out["tgz"], {}),
                     ("load_params_npz", str(out["npz"]), {})]
    return out


def _run(cases, bases):
    baseline, recs = hf.run_cases(cases, bases["warmup"])
    if os.environ.get("REFDET_FUZZ_DUMP"):     # every case and its outcome, as JSON lines, for a closer look
        with open(os.environ["REFDET_FUZZ_DUMP"], "a") as fh:
            for c in cases:
                fh.write(json.dumps({**c, **recs[c["id"]]}) + "\n")
    bad = hf.check_records(cases, baseline, recs)
    slow = sorted(recs.values(), key=lambda r: -r["seconds"])[:3]
    print(f"\n{len(cases)} (file, loader) cases run; {sum(r['outcome'] == 'error' for r in recs.values())} refused; "
          f"baseline {baseline >> 20} MiB, peak {max(r['maxrss'] for r in recs.values()) - baseline >> 20} MiB above "
          f"it; slowest {[(r['id'], r['seconds']) for r in slow]}")
    assert not bad, f"{len(bad)} of {len(cases)} hostile files broke the contract:\n" + "\n".join(bad[:40])
    return recs


def _copy(mp):
    m = onnx.ModelProto()
    m.CopyFrom(mp)
    return m


class _Writer:
    """Writes case files under one folder with unique names."""

    def __init__(self, root):
        self.root = root
        self.n = 0
        self.cases = []

    def path(self, stem, suffix=""):
        self.n += 1
        return os.path.join(self.root, f"{re.sub(r'[^A-Za-z0-9_]', '_', stem)[:40]}_{self.n}{suffix}")

    def add(self, cid, loader, path, **kw):
        self.cases.append(hf.case(f"{cid}#{len(self.cases)}", loader, path, **kw))


# ---------------------------------------------------------------------------------------------------
# hand-built files: one per attack named in the issue (and its neighbours)
# ---------------------------------------------------------------------------------------------------

def _hand_onnx(w, b):
    m0 = b["models"]
    def save(mp, stem):
        p = w.path(stem, ".onnx")
        onnx.save(mp, p)
        return p

    good = open(b["onnx"]["head"], "rb").read()
    for stem, data in (("empty", b""), ("random", np.random.default_rng(0).bytes(5000)),
                       ("truncated_half", good[: len(good) // 2]), ("truncated_10", good[:10]),
                       ("text", b"ir_version: 9\ngraph { }")):
        p = w.path(stem, ".onnx")
        open(p, "wb").write(data)
        for loader in ("load_onnx_params", "verify_onnx"):
            w.add(f"onnx/{stem}", loader, p, expect="error")
    edits = []

    def conv(attr, value, base="head"):
        mp = _copy(m0[base])
        hf.set_attr(hf.first(mp, "Conv"), attr, value)
        return mp, base
    edits += [("conv_pads_30000", conv("pads", [30000] * 4)), ("conv_pads_neg", conv("pads", [-3, 0, 0, 0])),
              ("conv_pads_short", conv("pads", [1, 1])), ("conv_strides_0", conv("strides", [0, 0])),
              ("conv_strides_huge", conv("strides", [1 << 40, 1])), ("conv_dil_0", conv("dilations", [0, 1])),
              ("conv_dil_huge", conv("dilations", [1 << 30, 1 << 30])), ("conv_kernel", conv("kernel_shape", [1, 1])),
              ("conv_group_0", conv("group", 0)), ("conv_group_3", conv("group", 3)),
              ("conv_group_huge", conv("group", 1 << 40)), ("conv_autopad", conv("auto_pad", "SAME_HUGE")),
              ("conv_unknown_attr", conv("alpha", 1.0)), ("conv_float_pads", conv("pads", [1.5, 1.0, 1.0, 1.0])),
              ("qconv_pads", conv("pads", [5000] * 4, "qhead"))]

    def const(base, op, index, value, k=0):
        mp = _copy(m0[base])
        return hf.replace_input_with_const(mp, hf.first(mp, op, k), index, np.asarray(value)), base
    edits += [("resize_sizes_huge", const("fpn", "Resize", 3, np.asarray([1, 8, 1 << 20, 1 << 20], np.int64))),
              ("resize_sizes_neg", const("fpn", "Resize", 3, np.asarray([1, 8, -5, 5], np.int64))),
              ("resize_sizes_short", const("fpn", "Resize", 3, np.asarray([10, 10], np.int64))),
              ("resize_scales_1e4", const("fpn_x2", "Resize", 2, np.asarray([1, 1, 1e4, 1e4], np.float32))),
              ("resize_scales_inf", const("fpn_x2", "Resize", 2, np.asarray([1, 1, np.inf, 2], np.float32))),
              ("resize_scales_0", const("fpn_x2", "Resize", 2, np.asarray([1, 1, 0, 2], np.float32))),
              ("reshape_huge", const("head", "Reshape", 1, np.asarray([1 << 30, 1 << 30, 4], np.int64))),
              ("reshape_bad", const("head", "Reshape", 1, np.asarray([7, -1, 5], np.int64))),
              ("reshape_neg", const("head", "Reshape", 1, np.asarray([-7, 2, 2], np.int64))),
              ("reshape_float", const("head", "Reshape", 1, np.asarray([1.0, -1.0, 4.0], np.float32))),
              ("gather_oob", const("fpn_gather", "Gather", 1, np.asarray([0, 1, 1 << 40], np.int64))),
              ("gather_neg_oob", const("fpn_gather", "Gather", 1, np.asarray([-1000], np.int64))),
              ("range_huge", const("fpn_gather", "Range", 1, np.asarray(1 << 40, np.int64))),
              ("range_delta_0", const("fpn_gather", "Range", 2, np.asarray(0, np.int64))),
              ("slice_axes_bad", const("fpn_gather", "Slice", 3, np.asarray([9], np.int64))),
              ("slice_steps_0", const("post", "Slice", 3, np.asarray([0], np.int64))),
              ("squeeze_axis_bad", const("fpn_gather", "Squeeze", 1, np.asarray([5], np.int64))),
              ("reduce_axes_bad", const("gn_head", "ReduceMean", 1, np.asarray([7], np.int64))),
              ("nms_max_neg", const("post", "NonMaxSuppression", 2, np.asarray([-1], np.int64))),
              ("nms_max_huge", const("post", "NonMaxSuppression", 2, np.asarray([1 << 62], np.int64))),  # (valid)
              ("nms_iou_2", const("post", "NonMaxSuppression", 3, np.asarray([2.0], np.float32))),
              ("nms_iou_nan", const("post", "NonMaxSuppression", 3, np.asarray([np.nan], np.float32))),
              ("nms_score_nan", const("post", "NonMaxSuppression", 4, np.asarray([np.nan], np.float32))),
              ("dq_scale_shape", const("qhead", "DequantizeLinear", 1, np.ones(5, np.float32), 1))]

    def attr(base, op, name, value):
        mp = _copy(m0[base])
        hf.set_attr(hf.first(mp, op), name, value)
        return mp, base
    edits += [("maxpool_kernel_0", attr("fpn", "MaxPool", "kernel_shape", [0, 0])),
              ("maxpool_pads", attr("fpn", "MaxPool", "pads", [100, 100, 100, 100])),
              ("maxpool_strides_0", attr("fpn", "MaxPool", "strides", [0, 2])),
              ("maxpool_ceil_7", attr("fpn", "MaxPool", "ceil_mode", 7)),
              ("transpose_perm_dup", attr("head", "Transpose", "perm", [0, 0, 0, 0])),
              ("transpose_perm_huge", attr("head", "Transpose", "perm", [1 << 40, 0, 1, 2])),
              ("concat_axis_9", attr("rpn", "Concat", "axis", 9) if hf.first(m0["rpn"], "Concat")
               else attr("head", "Transpose", "perm", [3, 2, 1])),
              ("gather_axis_9", attr("fpn_gather", "Gather", "axis", 9)),
              ("cast_to_string", attr("fpn_gather", "Cast", "to", 8)),
              ("cast_to_99", attr("fpn_gather", "Cast", "to", 99)),
              ("resize_mode", attr("fpn", "Resize", "mode", "bilinear!")),
              ("resize_antialias", attr("fpn", "Resize", "antialias", 1)),
              ("resize_crop", attr("fpn", "Resize", "coordinate_transformation_mode", "tf_crop_and_resize")),
              ("nms_center", attr("post", "NonMaxSuppression", "center_point_box", 7)),
              ("reduce_keepdims", attr("gn_head", "ReduceMean", "keepdims", 5)),
              ("dq_axis", attr("qhead", "DequantizeLinear", "axis", 9)),
              ("q_block", attr("qhead", "QuantizeLinear", "block_size", 4))]

    mp = _copy(m0["head"])
    t = mp.graph.initializer[0]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])
    edits.append(("init_extents_huge", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.initializer[0].raw_data = mp.graph.initializer[0].raw_data[:-3]
    edits.append(("init_raw_short", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.initializer[0].data_type = 8
    edits.append(("init_string", (mp, "head")))
    mp = _copy(m0["head"])
    t = mp.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../../../etc/passwd")
    edits.append(("external_data", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.initializer.append(mp.graph.initializer[0])
    edits.append(("duplicate_initializer", (mp, "head")))
    for key, value in (("refdet.config", "[" * 100000 + "]" * 100000), ("refdet.params", "{" * 50 + "}" * 50),
                       ("refdet.config", '{"model": "retinanet_head", "in_channels": [' + "9" * 5000 + "]}"),
                       ("refdet.config", '{"model": "retinanet_head", "in_channels": [8], "num_anchors": NaN}'),
                       ("refdet.config", "x" * (2 << 20)), ("refdet.params", '["a", "a"]'),
                       ("refdet.config", '{"model": "fpn", "in_channels": [8, 16]}'),
                       ("refdet.config", '{"model": "retinanet_head", "in_channels": [8], "num_anchors": 3, '
                                         '"num_classes": 4, "num_groups": 0, "eps": 1e-5}')):
        base = "head" if key != "refdet.config" or '"fpn"' not in value else "fpn"
        mp = _copy(m0[base])
        hf.set_metadata(mp, key, value)
        edits.append((f"meta_{key}", (mp, base)))
    mp = _copy(m0["head"])
    mp.graph.node.insert(0, onnx.helper.make_node("ConstantOfShape", [mp.graph.initializer[0].name], ["_junk"]))
    edits.append(("foreign_op", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.node[0].domain = "com.evil"
    edits.append(("custom_domain", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.node[0].input[0] = "nowhere"
    edits.append(("undefined_input", (mp, "head")))
    mp = _copy(m0["head"])
    nodes = list(mp.graph.node)
    del mp.graph.node[:]
    mp.graph.node.extend(nodes[::-1])
    edits.append(("reversed_nodes", (mp, "head")))
    mp = _copy(m0["head"])
    mp.graph.node.append(mp.graph.node[0])
    edits.append(("duplicate_output", (mp, "head")))
    mp = _copy(m0["head"])
    mp.opset_import[0].version = 1
    edits.append(("opset_1", (mp, "head")))
    mp = _copy(m0["head"])
    sub = onnx.helper.make_graph([], "g", [], [])
    mp.graph.node[0].attribute.append(onnx.helper.make_attribute("then_branch", sub))
    edits.append(("graph_attribute", (mp, "head")))
    for stem, (mp, base) in edits:
        p = save(mp, stem)
        expect = None if stem == "nms_max_huge" else "error"   # no limit is a valid NMS: it must just not crash
        w.add(f"onnx/{stem}", "verify_onnx", p, check=False, runtimes=["onnxruntime"], expect=expect)
        w.add(f"onnx/{stem}", "verify_onnx", p, runtimes=["onnx.reference"], expect=expect)
        if not stem.startswith("meta_"):       # run_onnx reads no metadata
            w.add(f"onnx/{stem}", "run_onnx", p, feeds=_FEEDS[base], expect=expect)
        w.add(f"onnx/{stem}", "load_onnx_params", p)
    mp = _copy(m0["qhead"])
    hf.set_metadata(mp, "refdet.config", json.dumps({**json.loads(next(
        q.value for q in mp.metadata_props if q.key == "refdet.config")), "layers": {"cls": [["x", True]]}}))
    p = save(mp, "qhead_layers")
    w.add("onnx/qhead_layers", "load_quantized_head", p, expect="error")


def _hand_nnef(w, b):
    base = b["nnef"]["head"]

    def folder(stem, edit=None):
        p = w.path(stem)
        shutil.copytree(base, p)
        if edit:
            edit(p)
        return p

    def text(p, old, new, count=1):
        g = os.path.join(p, "graph.nnef")
        s = open(g).read()
        assert old in s, old
        open(g, "w").write(s.replace(old, new, count))

    def meta(p, fn):
        j = os.path.join(p, "refdet.json")
        m = json.load(open(j))
        fn(m)
        json.dump(m, open(j, "w"))

    edits = {
        "input_shapes_5792": lambda p: (meta(p, lambda m: m.update(input_shapes=[[1, 8, 5792, 5792]])),
                                        text(p, "[1, 8, 13, 9]", "[1, 8, 5792, 5792]")),
        "input_shapes_json_only": lambda p: meta(p, lambda m: m.update(input_shapes=[[1, 8, 5792, 5792]])),
        "input_shapes_bad": lambda p: meta(p, lambda m: m.update(input_shapes=[[1, 8, -3, 9]])),
        "input_shapes_str": lambda p: meta(p, lambda m: m.update(input_shapes="[[1, 8, 13, 9]]")),
        "json_nested": lambda p: open(os.path.join(p, "refdet.json"), "w").write("[" * 100000 + "]" * 100000),
        "json_nested_field": lambda p: meta(p, lambda m: m["config"].update(num_anchors=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
            [[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])),
        "json_config_int": lambda p: meta(p, lambda m: m.update(config=5)),
        "json_eps_str": lambda p: meta(p, lambda m: m["config"].update(eps="x")),
        "json_no_groups": lambda p: meta(p, lambda m: m["config"].pop("num_groups")),
        "json_param_shape": lambda p: meta(p, lambda m: m["param_shapes"].update(
            {"classification_head.cls_logits.bias": [10 ** 12]})),
        "json_bigint": lambda p: open(os.path.join(p, "refdet.json"), "w").write('{"config": ' + "7" * 10000 + "}"),
        "json_not_utf8": lambda p: open(os.path.join(p, "refdet.json"), "wb").write(b"\xff\xfe{}"),
        "graph_pad_30000": lambda p: text(p, "padding = [(1, 1), (1, 1)]",
                                          "padding = [(30000, 30000), (30000, 30000)]"),
        "graph_stride_0": lambda p: text(p, "stride = [1, 1]", "stride = [0, 1]"),
        "graph_dilation_huge": lambda p: text(p, "dilation = [1, 1]", "dilation = [100000, 1]"),
        "graph_groups_3": lambda p: text(p, "dilation = [1, 1])", "dilation = [1, 1], groups = 3)"),
        "graph_reshape_huge": lambda p: text(p, "shape = [1, 351, 4]", "shape = [1, 1073741824, 1073741824]"),
        "graph_transpose_bad": lambda p: text(p, "axes = [0, 2, 3, 1]", "axes = [0, 0, 0, 0]"),
        "graph_external_huge": lambda p: text(p, "external<scalar>(shape = [1, 8, 13, 9])",
                                              "external<scalar>(shape = [100000, 8, 100000, 9])"),
        "graph_variable_huge": lambda p: text(p, "shape = [1, 12]", "shape = [1, 1099511627776]"),
        "graph_nested": lambda p: text(p, "relu(", "relu(" + "copy(" * 100000, 1),
        "graph_deep_list": lambda p: text(p, "stride = [1, 1]", "stride = " + "[" * 100000 + "]" * 100000),
        "graph_foreign_op": lambda p: text(p, "relu(", "tile("),
        "graph_fragment": lambda p: text(p, "version 1.0;", "version 1.0;\nextension KHR_enable_fragment_definitions;"),
        "graph_tuple_lhs": lambda p: text(p, "    conv", "    (a, b) = conv(x, x);\n    conv"),
        "graph_label_traversal": lambda p: text(p, "label = 'classification_head.cls_logits.bias'",
                                                "label = '../../../etc/passwd'"),
        "graph_label_absolute": lambda p: text(p, "label = 'classification_head.cls_logits.bias'",
                                               "label = '/etc/passwd'"),
        "graph_truncated": lambda p: open(os.path.join(p, "graph.nnef"), "r+").truncate(300),
        "graph_random": lambda p: open(os.path.join(p, "graph.nnef"), "wb").write(np.random.default_rng(1).bytes(3000)),
        "graph_missing": lambda p: os.remove(os.path.join(p, "graph.nnef")),
        "graph_quant": lambda p: open(os.path.join(p, "graph.quant"), "w").write('"x": linear_quantize(0, 1, 8);'),
        "graph_version_9": lambda p: text(p, "version 1.0;", "version 9.0;"),
        "dat_extents": lambda p: _patch(os.path.join(p, "classification_head.cls_logits.bias.dat"), 12,
                                        struct.pack("<I", 0xFFFFFFFF)),
        "dat_rank_9": lambda p: _patch(os.path.join(p, "classification_head.cls_logits.bias.dat"), 8,
                                       struct.pack("<I", 9)),
        "dat_bits_0": lambda p: _patch(os.path.join(p, "classification_head.cls_logits.bias.dat"), 44,
                                       struct.pack("<I", 0)),
        "dat_truncated": lambda p: open(os.path.join(p, "classification_head.cls_logits.bias.dat"),
                                        "r+b").truncate(100),
        "dat_missing": lambda p: os.remove(os.path.join(p, "classification_head.cls_logits.bias.dat")),
        "dat_is_dir": lambda p: (os.remove(os.path.join(p, "classification_head.cls_logits.bias.dat")),
                                 os.mkdir(os.path.join(p, "classification_head.cls_logits.bias.dat"))),
    }
    outside = w.path("outside")
    os.mkdir(outside)
    shutil.copy(os.path.join(base, "graph.nnef"), os.path.join(outside, "graph.nnef"))
    shutil.copy(os.path.join(base, "refdet.json"), os.path.join(outside, "refdet.json"))
    shutil.copy(os.path.join(base, "classification_head.cls_logits.bias.dat"), os.path.join(outside, "b.dat"))

    def link(name, target):
        def f(p):
            os.remove(os.path.join(p, name))
            os.symlink(target, os.path.join(p, name))
        return f
    edits["link_graph"] = link("graph.nnef", os.path.join(outside, "graph.nnef"))
    edits["link_json"] = link("refdet.json", os.path.join(outside, "refdet.json"))
    edits["link_dat_outside"] = link("classification_head.cls_logits.bias.dat", os.path.join(outside, "b.dat"))
    edits["link_dat_inside"] = link("classification_head.cls_logits.bias.dat",
                                    "classification_head.cls_logits.weight.dat")
    edits["link_dat_dangling"] = link("classification_head.cls_logits.bias.dat", "/nonexistent/x.dat")
    for stem, edit in edits.items():
        p = folder(stem, edit)
        for loader in ("load_nnef", "verify_nnef", "run_nnef"):
            kw = {"feeds": b["nnef_feeds"]["head"]} if loader == "run_nnef" else {}
            # load_nnef reads graph.nnef's variables and refdet.json's param_shapes, never runs an operation;
            # run_nnef runs the graph and reads no config or input_shapes; verify_nnef reads everything
            must = (loader == "verify_nnef" or stem.startswith(("dat_", "link_", "json_nested", "json_param",
                                                                 "json_bigint", "json_not"))
                    or (stem.startswith("graph_") and (loader == "run_nnef" or stem in (
                        "graph_nested", "graph_deep_list", "graph_fragment", "graph_tuple_lhs",
                        "graph_label_traversal", "graph_label_absolute", "graph_truncated", "graph_random",
                        "graph_missing", "graph_version_9", "graph_variable_huge"))))
            if stem == "graph_external_huge" and loader == "run_nnef":
                kw = {"feeds": {"features": [1, 8, 13, 9]}}    # fed shapes must match the declaration
            w.add(f"nnef/{stem}", loader, p, expect="error" if must else None, **kw)
    p = w.path("not_a_model")
    os.mkdir(p)
    w.add("nnef/empty_folder", "load_nnef", p, expect="error")
    w.add("nnef/missing_folder", "verify_nnef", p + "_missing", expect="error")


def _patch(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _hand_archives(w, b):
    base = b["nnef"]["head"]
    files = [(f, open(os.path.join(base, f), "rb").read(), "file") for f in sorted(os.listdir(base))]
    graph = open(os.path.join(base, "graph.nnef"), "rb").read()
    big_graph = graph.replace(b"shape = [1, 12], label = 'regression_head.bbox_reg.bias'",
                              b"shape = [1, 16777216], label = 'regression_head.bbox_reg.bias'")
    kinds = {
        "dotdot": files + [("../../evil.dat", b"x", "file")], "absolute": files + [("/tmp/evil.dat", b"x", "file")],
        "dotdot_inside": files + [("a/../../evil.dat", b"x", "file")],
        "symlink": files + [("evil.dat", "/etc/passwd", "sym")],
        "hardlink": files + [("evil.dat", "graph.nnef", "hard")],
        "chr": files + [("null.dat", None, "chr")], "fifo": files + [("pipe.dat", None, "fifo")],
        "blk": files + [("disk.dat", None, "blk")], "duplicate": files + [files[0]],
        "no_graph": [f for f in files if f[0] != "graph.nnef"],
        "two_graphs": [("a/" + n, d, k) for n, d, k in files] + [("b/" + n, d, k) for n, d, k in files],
        "unreferenced_64m": files[:1] + [("unused.dat", 64 << 20, "file")] + files[1:],
        "referenced_64m": [(n, big_graph if n == "graph.nnef"
                            else (64 << 20) if n.startswith("regression_head.bbox_reg.b") else d, k)
                           for n, d, k in files],
        "size_lie": files[:2] + [("lie.dat", b"x" * 10, "size-lie", 1 << 40)],
        "label_missing": [f for f in files if not f[0].startswith("regression_head.bbox_reg.bias")],
        "nested_graph": [(n, b"version 1.0; graph g(x) -> (y) { y = " + b"copy(" * 50000 + b"x" + b")" * 50000
                          + b"; }" if n == "graph.nnef" else d, k) for n, d, k in files],
    }
    for stem, members in kinds.items():
        for mode, suffix in (("w:gz", ".nnef.tgz"),) + ((("w", ".tar"), ("w:bz2", ".tar.gz"), ("w:xz", ".tgz"))
                                                        if stem in ("symlink", "unreferenced_64m") else ()):
            if mode != "w:gz" and stem == "unreferenced_64m":
                continue
            p = hf.write_tar(w.path(stem, suffix), members, mode=mode, compresslevel=9)
            ok = stem == "unreferenced_64m"
            w.add(f"tar/{stem}", "load_nnef", p, expect=None if ok else "error")
            w.add(f"tar/{stem}", "verify_nnef", p, expect=None if ok else "error")
    good = open(b["tgz"], "rb").read()
    for stem, data in (("truncated", good[: len(good) // 2]), ("random", np.random.default_rng(2).bytes(4000)),
                       ("empty", b""), ("gzip_of_junk", __import__("gzip").compress(b"junk" * 1000))):
        p = w.path(stem, ".nnef.tgz")
        open(p, "wb").write(data)
        w.add(f"tar/{stem}", "load_nnef", p, expect="error")


def _hand_npz(w, b):
    import zipfile

    def z(stem, members, compression=zipfile.ZIP_STORED, expect="error"):
        p = hf.write_zip(w.path(stem, ".npz"), members, compression=compression)
        w.add(f"npz/{stem}", "load_params_npz", p, expect=expect)
    z("traversal", [("../../etc/passwd.npy", hf.npy_bytes(np.zeros(2)))])
    z("absolute", [("/etc/x.npy", hf.npy_bytes(np.zeros(2)))])
    z("pickle", [("a.npy", hf.npy_bytes(np.array([{"x": 1}], dtype=object)))])
    z("huge_shape", [("a.npy", hf.npy_bytes(header={"descr": "<f8", "fortran_order": False,
                                                    "shape": (1 << 30, 1 << 30)}))])
    z("negative_shape", [("a.npy", hf.npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (-4,)}))])
    z("object_descr", [("a.npy", hf.npy_bytes(header={"descr": "|O", "fortran_order": False, "shape": (2,)},
                                              body=b"\x80\x04K\x01."))])
    z("bad_header", [("a.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__}")])
    z("zip_bomb", [("a.npy", (hf.npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (32 << 20,)}),
                              256 << 20))], compression=zipfile.ZIP_DEFLATED)
    z("not_npy", [("a.txt", b"hello")])
    # 48 MiB of zeros in a 48 KB member: within the 64 MiB floor of the budget, so it loads (once in memory)
    z("within_budget", [("a.npy", (hf.npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (6 << 20,)}),
                                   48 << 20))], compression=zipfile.ZIP_DEFLATED, expect=None)
    for stem, data in (("random", np.random.default_rng(3).bytes(2000)), ("empty", b"")):
        p = w.path(stem, ".npz")
        open(p, "wb").write(data)
        w.add(f"npz/{stem}", "load_params_npz", p, expect="error")


def _hand_dat(w, b):
    cases = {"extents_huge": hf.nnef_header([1 << 31, 1 << 31]), "rank_9": hf.nnef_header([1] * 8, rank=9),
             "bits_0": hf.nnef_header([4], bits=0), "bits_13": hf.nnef_header([4], bits=13),
             "magic": hf.nnef_header([4], magic=b"\x00\x00"), "version": hf.nnef_header([4], version=(2, 0)),
             "vendor_item": hf.nnef_header([4], item=1 << 17), "length_lie": hf.nnef_header([4], data_length=1 << 31),
             "short": b"\x4e\xef\x01\x00"}
    for stem, header in cases.items():
        p = w.path(stem, ".dat")
        open(p, "wb").write(header + bytes(16))
        w.add(f"dat/{stem}", "read_nnef_tensor", p, expect="error")


def test_hand_built_hostile_files(bases, tmp_path, record_property):
    w = _Writer(str(tmp_path))
    _hand_onnx(w, bases)
    _hand_nnef(w, bases)
    _hand_archives(w, bases)
    _hand_npz(w, bases)
    _hand_dat(w, bases)
    files = {c["path"] for c in w.cases}
    print(f"\nhand-built: {len(files)} hostile files, {len(w.cases)} (file, loader) cases")
    record_property("hostile_files", len(files))          # the counts, in the junit XML too
    record_property("file_loader_cases", len(w.cases))
    _run(w.cases, bases)


# ---------------------------------------------------------------------------------------------------
# generated files: hypothesis mutations of refdet's own exports
# ---------------------------------------------------------------------------------------------------

_HOSTILE_INTS = st.sampled_from([0, 1, 2, 3, -1, -2, 7, 255, 30000, 1 << 20, 1 << 31, 1 << 40, (1 << 62), -(1 << 40)])
_INTS = st.one_of(_HOSTILE_INTS, st.integers(-5, 40))
_ATTR_VALUES = st.one_of(st.lists(_INTS, max_size=6), _INTS, st.floats(), st.sampled_from(
    ["", "NOTSET", "VALID", "SAME_UPPER", "nearest", "linear", "cubic", "asymmetric", "half_pixel", "floor",
     "round_prefer_ceil", "stretch", "bogus", "tf_crop_and_resize"]))
_ATTR_NAMES = st.sampled_from(["pads", "strides", "dilations", "kernel_shape", "group", "auto_pad", "perm", "axis",
                               "axes", "to", "mode", "coordinate_transformation_mode", "nearest_mode",
                               "center_point_box", "keepdims", "allowzero", "ceil_mode", "storage_order",
                               "saturate", "block_size", "antialias", "start", "end", "bogus"])
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), _INTS, st.floats(allow_nan=False), st.text(max_size=8)),
                     lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
                     max_leaves=12)


@st.composite
def _onnx_mutation(draw, names):
    base = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["attr", "attr", "const", "init", "meta", "bytes", "graph"]))
    if kind == "attr":
        return base, kind, (draw(st.integers(0, 10 ** 6)), draw(_ATTR_NAMES), draw(_ATTR_VALUES))
    if kind == "const":
        vals = draw(st.lists(st.one_of(_INTS, st.floats(width=32)), min_size=0, max_size=6))
        return base, kind, (draw(st.integers(0, 10 ** 6)), draw(st.integers(1, 4)), vals,
                            draw(st.sampled_from(["int64", "float32", "int32"])))
    if kind == "init":
        return base, kind, (draw(st.integers(0, 10 ** 6)), draw(st.sampled_from(["dims", "raw", "type"])),
                            draw(st.lists(_INTS, max_size=5)), draw(st.integers(-64, 64)),
                            draw(st.sampled_from([0, 1, 2, 3, 6, 7, 8, 14, 16, 99])))
    if kind == "meta":
        key = draw(st.sampled_from(["refdet.config", "refdet.params", "refdet.model"]))
        how = draw(st.sampled_from(["field", "json", "nested", "text"]))
        return base, kind, (key, how, draw(st.text(max_size=6)), draw(_JSON), draw(st.integers(30, 5000)))
    if kind == "bytes":
        return base, kind, (draw(st.sampled_from(["truncate", "flip"])), draw(st.floats(0, 1)),
                            draw(st.lists(st.integers(0, 10 ** 6), max_size=8)),
                            draw(st.binary(min_size=1, max_size=8)))
    return base, kind, (draw(st.sampled_from(["delete", "duplicate", "undefined", "front"])),
                        draw(st.integers(0, 10 ** 6)))


def _apply_onnx(b, base, kind, args):
    """The bytes of a mutated model (None when the mutation does not apply)."""
    mp = _copy(b["models"][base])
    nodes = mp.graph.node
    if kind == "attr":
        i, name, value = args
        node = nodes[i % len(nodes)]
        from refdet.exchange._onnx_check import _RULES
        defined = sorted(_RULES.get(node.op_type, (None, set()))[1])
        if defined and name != "bogus" and name not in defined:    # mostly an attribute the operator has
            name = defined[len(name) % len(defined)]
        try:
            hf.set_attr(node, name, value)
        except (ValueError, TypeError):
            return None
    elif kind == "const":
        i, k, vals, dt = args
        node = nodes[i % len(nodes)]
        arr = np.asarray(vals, dtype=np.float64)
        with np.errstate(all="ignore"):
            arr = arr.astype(dt) if dt == "float32" else np.clip(np.nan_to_num(arr), -(1 << 62), 1 << 62).astype(dt)
        hf.replace_input_with_const(mp, node, k % (len(node.input) + 1), arr)
    elif kind == "init":
        i, what, dims, delta, dtype = args
        t = mp.graph.initializer[i % len(mp.graph.initializer)]
        if what == "dims":
            del t.dims[:]
            t.dims.extend(dims)
        elif what == "raw":
            t.raw_data = t.raw_data[:max(len(t.raw_data) + delta, 0)] if delta < 0 else t.raw_data + bytes(delta)
        else:
            t.data_type = dtype
    elif kind == "meta":
        key, how, field, value, depth = args
        props = {p.key: p.value for p in mp.metadata_props}
        if how == "field" and key in props:
            try:
                cfg = json.loads(props[key])
            except ValueError:
                cfg = {}
            if isinstance(cfg, dict) and cfg:
                cfg[sorted(cfg)[len(field) % len(cfg)] if field[:1] != "n" else field] = value
            text = json.dumps(cfg)
        elif how == "nested":
            text = "[" * depth + "]" * depth
        elif how == "json":
            text = json.dumps(value)
        else:
            text = field
        hf.set_metadata(mp, key, text)
    elif kind == "bytes":
        data = bytearray(mp.SerializeToString())
        how, frac, positions, junk = args
        if how == "truncate":
            return bytes(data[: int(frac * len(data))])
        for pos in positions:
            data[pos % len(data)] = junk[pos % len(junk)]
        return bytes(data)
    else:
        how, i = args
        if not len(nodes):
            return None
        node = nodes[i % len(nodes)]
        if how == "delete":
            nodes.remove(node)
        elif how == "duplicate":
            nodes.append(node)
        elif how == "undefined" and len(node.input):
            node.input[0] = "undefined_tensor"
        else:
            keep = list(nodes)
            del nodes[:]
            nodes.extend([node] + [n for n in keep if n is not node])
    return mp.SerializeToString()


@st.composite
def _nnef_mutation(draw):
    base = draw(st.sampled_from(["head", "fpn"]))
    kind = draw(st.sampled_from(["number", "number", "op", "nest", "text", "json", "dat", "link"]))
    return base, kind, (draw(st.integers(0, 10 ** 6)), draw(_HOSTILE_INTS), draw(st.sampled_from(
        ["relu", "conv", "copy", "tile", "add", "reshape", "slice", "sigmoid", "external", "variable", "max_pool",
         "nearest_upsample", "transpose", "concat", "mean_reduce"])), draw(st.integers(33, 3000)),
        draw(st.floats(0, 1)), draw(_JSON), draw(st.binary(min_size=1, max_size=6)),
        draw(st.sampled_from(["input_shapes", "config", "param_shapes", "model", "num_anchors", "eps", "settings"])))


def _apply_nnef(b, w, base, kind, args):
    i, hostile, op, depth, frac, value, junk, field = args
    p = w.path(f"nnef_{kind}")
    shutil.copytree(b["nnef"][base], p)
    g = os.path.join(p, "graph.nnef")
    text = open(g).read()
    if kind == "number":
        nums = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", text))
        m = nums[i % len(nums)]
        text = text[:m.start()] + str(hostile) + text[m.end():]
    elif kind == "op":
        ops = list(re.finditer(r"= (\w+)[<(]", text))
        m = ops[i % len(ops)]
        text = text[:m.start(1)] + op + text[m.end(1):]
    elif kind == "nest":
        ops = list(re.finditer(r"= (\w+)\(", text))
        m = ops[i % len(ops)]
        text = text[:m.end()] + "copy(" * depth + text[m.end():]
    elif kind == "text":
        text = text[: int(frac * len(text))] + junk.decode("latin-1")
    elif kind == "json":
        j = os.path.join(p, "refdet.json")
        meta = json.load(open(j))
        target = meta["config"] if field in ("model", "num_anchors", "eps", "settings") else meta
        target[field] = value
        json.dump(meta, open(j, "w"))
    elif kind == "dat":
        dats = sorted(f for f in os.listdir(p) if f.endswith(".dat"))
        path = os.path.join(p, dats[i % len(dats)])
        data = bytearray(open(path, "rb").read())
        pos = int(frac * min(len(data), 140))
        data[pos:pos + len(junk)] = junk
        open(path, "wb").write(bytes(data))
    else:
        names = sorted(os.listdir(p))
        victim = os.path.join(p, names[i % len(names)])
        os.remove(victim)
        os.symlink(os.path.join(b["nnef"][base], names[(i + 1) % len(names)]) if frac < 0.5 else "/etc/hostname",
                   victim)
    if kind in ("number", "op", "nest", "text"):
        open(g, "w", encoding="utf-8", errors="surrogateescape").write(text)
    return p


@st.composite
def _archive_mutation(draw):
    return (draw(st.lists(st.sampled_from(["dotdot", "absolute", "sym", "hard", "chr", "fifo", "dup", "zeros",
                                            "junk", "deep", "none"]), min_size=1, max_size=3)),
            draw(st.sampled_from(["w:gz", "w", "w:bz2", "w:xz"])), draw(st.integers(0, 16 << 20)),
            draw(st.one_of(st.just(1.0), st.just(1.0), st.floats(0.2, 1.0))), draw(st.booleans()))


def _apply_archive(b, w, extras, mode, size, keep, referenced):
    base = b["nnef"]["head"]
    files = [(f, open(os.path.join(base, f), "rb").read(), "file") for f in sorted(os.listdir(base))]
    add = {"dotdot": ("../x.dat", b"x", "file"), "absolute": ("/x.dat", b"x", "file"), "sym": ("s.dat", "/etc", "sym"),
           "hard": ("h.dat", "graph.nnef", "hard"), "chr": ("c.dat", None, "chr"), "fifo": ("f.dat", None, "fifo"),
           "dup": files[-1], "zeros": ("zeros.dat", size, "file"), "junk": ("junk.bin", b"\x00" * 100, "file"),
           "deep": ("a/b/c/d/e.dat", b"x", "file")}
    members = files + [add[e] for e in extras if e != "none"]
    if referenced and "zeros" in extras:
        members = [(n, d.replace(b"label = 'regression_head.bbox_reg.bias'", b"label = 'zeros'")
                    .replace(b"shape = [1, 12], label = 'zeros'", f"shape = [{size // 4}], label = 'zeros'".encode())
                    if n == "graph.nnef" else d, k) for n, d, k in members]
    suffix = ".tar" if mode == "w" else ".nnef.tgz"
    p = hf.write_tar(w.path("arch", suffix), members, mode=mode, compresslevel=6)
    if keep < 0.95:
        data = open(p, "rb").read()
        open(p, "wb").write(data[: int(keep * len(data))])
    return p


@st.composite
def _npz_mutation(draw):
    member = st.tuples(st.sampled_from(["a.npy", "b.npy", "../a.npy", "/a.npy", "a", "a.npy/", "a b.npy", ""]),
                       st.sampled_from(["array", "header", "pickle", "junk"]),
                       st.lists(_INTS, max_size=4), st.sampled_from(["<f8", "<f4", "|O", "<i8", "|b1", "<c16", "V3",
                                                                     "<U5", "S0"]),
                       st.binary(max_size=64))
    return draw(st.lists(member, min_size=1, max_size=3)), draw(st.booleans())


def _apply_npz(w, members, deflate):
    import zipfile

    out = []
    for name, kind, shape, descr, junk in members:
        if kind == "array":
            data = hf.npy_bytes(np.zeros([abs(s) % 5 for s in shape]))
        elif kind == "header":
            try:
                data = hf.npy_bytes(header={"descr": descr, "fortran_order": False, "shape": tuple(shape)}, body=junk)
            except (ValueError, TypeError):
                data = junk
        elif kind == "pickle":
            data = hf.npy_bytes(np.array([junk], dtype=object))
        else:
            data = junk
        out.append((name or "x.npy", data))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hf.write_zip(w.path("npz", ".npz"), out,
                            compression=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)


@st.composite
def _dat_mutation(draw):
    return (draw(st.lists(st.one_of(_HOSTILE_INTS, st.integers(0, 9)).map(lambda v: v & 0xFFFFFFFF), max_size=9)),
            draw(st.one_of(st.none(), _HOSTILE_INTS.map(lambda v: v & 0xFFFFFFFF))),
            draw(st.sampled_from([0, 1, 8, 13, 16, 32, 64, 1 << 20])),
            draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 1 << 16])),
            draw(st.one_of(st.none(), st.integers(0, 12))), draw(st.integers(0, 256)))


def _family():
    """Each family runs the profile's max_examples (ci 60, dev 100, thorough 1000)."""
    return settings(max_examples=settings.default.max_examples)


def test_generated_hostile_files(bases, tmp_path, record_property):
    w = _Writer(str(tmp_path))
    names = sorted(bases["models"])
    loaders = ["verify_onnx", "verify_onnx", "run_onnx", "load_onnx_params", "onnx_config", "load_quantized_head"]

    @_family()
    @given(_onnx_mutation(names), st.sampled_from(loaders), st.sampled_from([("onnxruntime",), ("onnx.reference",)]),
           st.booleans())
    def onnx_files(mut, loader, runtimes, check):
        base, kind, args = mut
        data = _apply_onnx(bases, base, kind, args)
        if data is None:
            return
        p = w.path(f"onnx_{base}_{kind}", ".onnx")
        open(p, "wb").write(data)
        kw = {"feeds": _FEEDS[base]} if loader == "run_onnx" else \
            {"runtimes": list(runtimes), "check": check} if loader == "verify_onnx" else {}
        w.add(f"gen/onnx/{base}/{kind}", loader, p, **kw)

    @_family()
    @given(_nnef_mutation(), st.sampled_from(["load_nnef", "verify_nnef", "verify_nnef", "run_nnef", "nnef_config"]))
    def nnef_folders(mut, loader):
        base, kind, args = mut
        p = _apply_nnef(bases, w, base, kind, args)
        kw = {"feeds": bases["nnef_feeds"][base]} if loader == "run_nnef" else {}
        w.add(f"gen/nnef/{base}/{kind}", loader, p, **kw)

    @_family()
    @given(_archive_mutation(), st.sampled_from(["load_nnef", "verify_nnef"]))
    def archives(mut, loader):
        p = _apply_archive(bases, w, *mut)
        w.add(f"gen/tar/{'+'.join(mut[0])}", loader, p)

    @_family()
    @given(_npz_mutation())
    def npz_files(mut):
        w.add("gen/npz", "load_params_npz", _apply_npz(w, *mut))

    @_family()
    @given(_dat_mutation())
    def dat_files(mut):
        extents, data_length, bits, item, rank, body = mut
        p = w.path("dat", ".dat")
        open(p, "wb").write(hf.nnef_header(extents[:8], data_length=data_length, bits=bits, item=item,
                                           rank=rank if rank is not None else len(extents)) + bytes(body))
        w.add("gen/dat", "read_nnef_tensor", p)

    for family in (onnx_files, nnef_folders, archives, npz_files, dat_files):
        family()
    files = {c["path"] for c in w.cases}
    print(f"\ngenerated: {len(files)} hostile files")
    record_property("hostile_files", len(files))
    _run(w.cases, bases)
