"""refdet.quant.head and refdet.quant.report: a quantized RetinaNet head end to end.

* the integer path equals a slow per-layer reference built from refdet.quant's ONNX QLinearConv and
  TFLite CONV_2D kernels (and the input QUANTIZE written out by hand), in every runtime mode;
* it agrees with the fake-quant path within 1 LSB per layer;
* the quantization itself (weights, biases, multipliers, activation qparams shared across levels)
  follows the formulas;
* the accuracy report's numbers are right on constructed inputs (known SQNR, known box shifts,
  known threshold crossings, known detection disagreements);
* with onnxruntime, the head's towers as a QuantizeLinear -> QLinearConv chain give exactly the
  integers of the "onnxruntime" mode;
* `refdet quantize` and `refdet demo --quantize` run.
"""
import math

import numpy as np
import pytest

from refdet import quant as Q
from refdet import quant as QH
from refdet.apps import quantize as QA
from refdet.quant import head as QHEAD
from refdet.heads import retinanet_head_forward, retinanet_head_init
from tests.conftest import readonly

MODES = ["onnxruntime", "onnx_reference", "tflite", "tflite_single", "float_rne"]


def _head(seed=0, c=8, a=3, k=2, depth=2, std=0.15):
    r = np.random.default_rng(seed)
    p = retinanet_head_init(c, a, k, rng=r, num_convs=depth, dtype=np.float32)
    for key in p:  # larger weights and nonzero biases than the init, so every layer does something
        if key.endswith("weight"):
            p[key] = (r.standard_normal(p[key].shape) * std).astype(np.float32)
        elif "conv" in key:
            p[key] = (r.standard_normal(p[key].shape) * 0.1).astype(np.float32)
    return p


def _feats(seed=1, c=8, b=2, sizes=(8, 4, 2, 1)):
    r = np.random.default_rng(seed)
    return [(r.standard_normal((b, c, s, s)) * 1.5 + 0.3).astype(np.float32) for s in sizes]


@pytest.fixture(scope="module")
def setup():
    p = _head()
    calib = [_feats(seed=s) for s in (10, 11)]          # two calibration batches
    feats = _feats(seed=1)
    heads = {s: QH.quantize_retinanet_head(p, calib, scheme=s) for s in ("onnx", "tflite")}
    return p, calib, feats, heads


def _scheme(mode):
    return "tflite" if mode.startswith("tflite") else "onnx"


# ---------------------------------------------------------------------------------------------------
# the quantization itself
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["onnx", "tflite"])
def test_weights_biases_multipliers_follow_the_formulas(setup, scheme):
    p, calib, _, heads = setup
    qh = heads[scheme]
    assert qh.num_anchors == 3 and qh.num_classes == 2 and len(qh.cls_layers) == len(qh.box_layers) == 3
    rnd = Q.round_half_away if scheme == "tflite" else Q.round_half_even
    prev_s, prev_z = qh.input_scale, qh.input_zero_point
    for layer in qh.cls_layers:
        w = p[layer.name + ".weight"].astype(np.float64)
        absmax = np.abs(w).reshape(len(w), -1).max(1)
        # symmetric per channel, narrow [-127, 127]: s = absmax / 127 (onnx: float64 then float32)
        np.testing.assert_allclose(layer.w_scale, absmax / 127, rtol=1e-6)
        assert layer.weight.dtype == np.int8 and np.all(np.abs(layer.weight).reshape(len(w), -1).max(1) == 127)
        # the layer reads the previous layer's qparams
        assert layer.x_scale == prev_s and layer.x_zero_point == prev_z
        # int32 bias at s_x * s_w, zero point 0
        bs = np.float32(layer.x_scale) * layer.w_scale
        np.testing.assert_array_equal(layer.bias_scale, bs)
        b = p[layer.name + ".bias"].astype(np.float64)
        want = rnd(b / bs.astype(np.float64)) if scheme == "onnx" else rnd(b * (1.0 / bs.astype(np.float64)))
        np.testing.assert_array_equal(layer.bias, want.astype(np.int32))
        # multipliers: float32 (onnxruntime) and double + Q31 (TFLite)
        np.testing.assert_array_equal(layer.multiplier, (np.float32(layer.x_scale) * layer.w_scale) / layer.y_scale)
        md = np.float64(layer.x_scale) * layer.w_scale.astype(np.float64) / np.float64(layer.y_scale)
        np.testing.assert_array_equal(layer.multiplier_double, md)
        np.testing.assert_allclose(layer.q31 * 2.0 ** (layer.shift - 31), md, rtol=2.0 ** -30)
        assert np.all((layer.q31 >= 2 ** 30) & (layer.q31 < 2 ** 31))
        # a ReLU output's range starts at 0: zero point = qmin, and the fused clamp is [qmin, 127]
        if layer.relu:
            assert layer.y_zero_point == -128 and layer.qmin == -128
        prev_s, prev_z = layer.y_scale, layer.y_zero_point
    assert not qh.cls_layers[-1].relu and qh.cls_layers[-1].qmin == -128


def test_activation_qparams_come_from_all_levels_and_batches(setup):
    p, calib, _, heads = setup
    # min/max over both calibration batches and all four levels, then the onnx rule
    acts = [QH.float_head_layers(p, b) for b in calib]
    for name in ("input", "classification_head.cls_logits", "regression_head.bbox_reg"):
        lo = min(float(t.min()) for a in acts for t in a[name])
        hi = max(float(t.max()) for a in acts for t in a[name])
        want = Q.qparams_from_minmax(lo, hi, dtype="int8", convention="onnx")
        if name == "input":
            got = (heads["onnx"].input_scale, heads["onnx"].input_zero_point)
        else:
            layer = [la for la in heads["onnx"].cls_layers + heads["onnx"].box_layers if la.name == name][0]
            got = (layer.y_scale, layer.y_zero_point)
        assert got[0] == want.scale and got[1] == int(want.zero_point)


def test_float_head_layers_match_retinanet_head_forward(setup):
    # retinanet_head_forward runs the two subnets' first convs as one stacked GEMM; BLAS may sum a
    # dot product in another order for a taller matrix, so the two agree to rounding, not bit for bit
    p, _, feats, _ = setup
    ref, _ = retinanet_head_forward(p, feats)
    got = QH.float_head_layers(p, feats)
    tol = dict(rtol=1e-5, atol=1e-5) if ref.cls_logits[0].dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(ref.cls_logits, got["classification_head.cls_logits"]):
        np.testing.assert_allclose(a, b, **tol)
    for a, b in zip(ref.bbox_deltas, got["regression_head.bbox_reg"]):
        np.testing.assert_allclose(a, b, **tol)


# ---------------------------------------------------------------------------------------------------
# the integer path against a slow per-layer reference
# ---------------------------------------------------------------------------------------------------

def _reference_layer(layer, xq, mode):
    """One level, one layer, with the runtime's own kernel from refdet.quant."""
    if mode.startswith("tflite") or mode == "float_rne":
        y = Q.tflite_conv2d_int8(xq.transpose(0, 2, 3, 1), layer.x_scale, layer.x_zero_point,
                                 layer.weight.transpose(0, 2, 3, 1), layer.w_scale, layer.bias, layer.y_scale,
                                 layer.y_zero_point, padding="SAME", activation="RELU" if layer.relu else "NONE",
                                 mode=mode)
        return y.transpose(0, 3, 1, 2)
    y = Q.qlinear_conv(xq, layer.x_scale, np.int8(layer.x_zero_point), layer.weight, layer.w_scale,
                       np.zeros(len(layer.weight), np.int8), layer.y_scale, np.int8(layer.y_zero_point), layer.bias,
                       padding=1, mode=mode)
    return np.maximum(y, np.int8(layer.y_zero_point)) if layer.relu else y   # a separate QLinear Relu


def _reference_input(qh, x, mode):
    v = x.astype(np.float32) / np.float32(qh.input_scale)            # both runtimes divide in float32
    r = Q.round_half_away(v) if mode.startswith("tflite") else np.rint(v)
    return np.clip(r + qh.input_zero_point, -128, 127).astype(np.int8)


@pytest.mark.parametrize("mode", MODES)
def test_integer_path_equals_per_layer_reference(setup, mode):
    _, _, feats, heads = setup
    qh = heads[_scheme(mode)]
    ro = [readonly(f) for f in feats]
    out = QH.run_quantized_head(qh, ro, mode=mode, return_intermediates=True)
    for lvl, f in enumerate(feats):                         # slow: level by level, layer by layer
        xq = _reference_input(qh, f, mode)
        np.testing.assert_array_equal(out.intermediates["input"][lvl], xq)
        for branch, q_out, f_out in ((qh.cls_layers, out.cls_q, out.cls_logits),
                                     (qh.box_layers, out.bbox_q, out.bbox_deltas)):
            cur = xq
            for layer in branch:
                cur = _reference_layer(layer, cur, mode)
                np.testing.assert_array_equal(out.intermediates[layer.name][lvl], cur, err_msg=layer.name)
            np.testing.assert_array_equal(q_out[lvl], cur)
            last = branch[-1]
            # dequantized in float32: float32(q - zp) * float32(scale)
            np.testing.assert_array_equal(f_out[lvl], (cur.astype(np.float32) - np.float32(last.y_zero_point))
                                          * np.float32(last.y_scale))
    assert out.cls_logits[0].dtype == np.float32 and out.cls_q[0].dtype == np.int8


def test_single_map_in_single_map_out(setup):
    _, _, feats, heads = setup
    a = QH.run_quantized_head(heads["onnx"], feats[0])
    b = QH.run_quantized_head(heads["onnx"], feats[:1])
    np.testing.assert_array_equal(a.cls_q, b.cls_q[0])
    assert a.intermediates is None and isinstance(a.bbox_deltas, np.ndarray)


def test_runtimes_differ_only_by_one_lsb(setup):
    _, _, feats, heads = setup
    ort = QH.run_quantized_head(heads["onnx"], feats, mode="onnxruntime", return_intermediates=True)
    tfl = QH.run_quantized_head(heads["onnx"], feats, mode="float_rne", return_intermediates=True)
    # same model, same input rounding (RNE): float32 vs exact product rounding of acc * M, the same
    # inputs to each layer only where the previous layer agreed: compare the first layer
    d = np.abs(ort.intermediates["classification_head.conv.0.0"][0].astype(int)
               - tfl.intermediates["classification_head.conv.0.0"][0].astype(int))
    assert d.max() <= 1


@pytest.mark.parametrize("mode", MODES)
def test_fake_quant_path_agrees_within_one_lsb_per_layer(setup, mode):
    _, _, feats, heads = setup
    qh = heads[_scheme(mode)]
    out = QH.run_quantized_head(qh, feats, mode=mode, return_intermediates=True)
    n_equal = n_all = 0
    for branch in (qh.cls_layers, qh.box_layers):
        prev = "input"
        prev_s, prev_z = qh.input_scale, qh.input_zero_point
        for layer in branch:
            for lvl in range(len(feats)):
                # the same integer input to both: dequantize it, run the float64 fake-quant layer
                x = Q.dequantize(out.intermediates[prev][lvl], prev_s, prev_z, out_dtype="float64")
                y = QHEAD._fake_conv(layer, x, qh.scheme)
                q_fake = np.rint(y / np.float64(layer.y_scale)).astype(np.int64) + layer.y_zero_point
                q_int = out.intermediates[layer.name][lvl].astype(np.int64)
                assert np.abs(q_fake - q_int).max() <= 1, layer.name
                n_equal += int(np.count_nonzero(q_fake == q_int))
                n_all += q_int.size
            prev, prev_s, prev_z = layer.name, layer.y_scale, layer.y_zero_point
    assert n_equal / n_all > 0.99     # off by one only near ties


def test_fake_quant_head_end_to_end_close_to_float(setup):
    p, _, feats, heads = setup
    ref, _ = retinanet_head_forward(p, feats)
    fq = QH.run_fake_quant_head(heads["onnx"], feats, return_intermediates=True)
    ii = QH.run_quantized_head(heads["onnx"], feats)
    assert fq.cls_q is None and set(fq.intermediates) >= {"input", "regression_head.bbox_reg"}
    assert QH.sqnr_db(ref.cls_logits, fq.cls_logits) > 25
    # integer and simulated outputs agree to a few LSB end to end (errors can propagate)
    s = heads["onnx"].cls_layers[-1].y_scale
    for a, b in zip(fq.cls_logits, ii.cls_logits):
        assert np.abs(a - b).max() <= 3 * s + 1e-6


# ---------------------------------------------------------------------------------------------------
# onnxruntime: the towers as a QLinearConv chain
# ---------------------------------------------------------------------------------------------------

def _ort_model(qh, c):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    def const(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["input"])]
    inits = [const("x_s", np.float32(qh.input_scale)), const("x_z", np.int8(qh.input_zero_point))]
    outs = ["input"]
    chans = {"input": c}
    for branch in (qh.cls_layers, qh.box_layers):
        prev = "input"
        for i, layer in enumerate(branch):
            n = layer.name
            inits += [const(n + ".ys", np.float32(layer.y_scale)), const(n + ".yz", np.int8(layer.y_zero_point)),
                      const(n + ".w", layer.weight), const(n + ".ws", layer.w_scale),
                      const(n + ".wz", np.zeros(len(layer.weight), np.int8)), const(n + ".B", layer.bias)]
            xs = "x_s" if prev == "input" else prev + ".ys"
            xz = "x_z" if prev == "input" else prev + ".yz"
            # ReLU: the tower outputs have zero point -128 = qmin, so the clamp at the zero point is
            # the saturation QLinearConv already does (asserted in the test)
            nodes.append(helper.make_node("QLinearConv", [prev, xs, xz, n + ".w", n + ".ws", n + ".wz", n + ".ys",
                                                          n + ".yz", n + ".B"], [n], pads=[1, 1, 1, 1]))
            outs.append(n)
            chans[n] = len(layer.weight)
            prev = n
        nodes.append(helper.make_node("DequantizeLinear", [prev, prev + ".ys", prev + ".yz"], [prev + ".float"]))
        outs.append(prev + ".float")
        chans[prev + ".float"] = chans[prev]
    graph = helper.make_graph(nodes, "quantized_retinanet_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, "H", "W"])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT if o.endswith(".float")
                                                             else TensorProto.INT8, ["N", chans[o], "H", "W"])
                               for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model, outs


def test_quantized_head_as_qlinearconv_model_matches_onnxruntime_exactly():
    ort = pytest.importorskip("onnxruntime")
    p = _head(seed=3)
    qh = QH.quantize_retinanet_head(p, _feats(seed=4), scheme="onnx")
    assert all(la.y_zero_point == -128 for la in qh.cls_layers + qh.box_layers if la.relu)
    model, outs = _ort_model(qh, 8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feats = _feats(seed=5, b=3, sizes=(12, 6, 3))
    ours = QH.run_quantized_head(qh, feats, mode="onnxruntime", return_intermediates=True)
    n = 0
    for lvl, f in enumerate(feats):
        got = dict(zip(outs, sess.run(outs, {"x": f})))
        for name in outs:
            if name.endswith(".float"):
                mine = ours.cls_logits[lvl] if name.startswith("classification") else ours.bbox_deltas[lvl]
            else:
                mine = ours.intermediates[name][lvl]
            np.testing.assert_array_equal(got[name], mine, err_msg=f"level {lvl}, {name}")
            n += mine.size
    assert n > 10000


# ---------------------------------------------------------------------------------------------------
# the report on constructed inputs
# ---------------------------------------------------------------------------------------------------

def test_sqnr_of_a_known_noise_level():
    x = np.full(1000, 2.0)
    noise = 0.02 * np.where(np.arange(1000) % 2, 1.0, -1.0)
    # signal power 4, noise power 0.0004: 10 log10(1e4) = 40 dB
    assert QH.sqnr_db(readonly(x), x + noise) == pytest.approx(40.0, abs=1e-9)
    # a tenth of the noise amplitude: +20 dB; lists are concatenated
    assert QH.sqnr_db([x[:300], x[300:]], [x[:300] + noise[:300] / 10, x[300:] + noise[300:] / 10]) == \
        pytest.approx(60.0, abs=1e-9)
    assert QH.sqnr_db(x, x) == math.inf and QH.sqnr_db(np.zeros(3), np.ones(3)) == -math.inf
    with pytest.raises(ValueError, match="same size"):
        QH.sqnr_db(x, x[:5])


def _grid_anchors(n=4, size=10.0, gap=20.0):
    """n x n well separated square anchors (no two overlap), one level, A = 1."""
    xy = np.stack(np.meshgrid(np.arange(n) * gap, np.arange(n) * gap, indexing="xy"), -1).reshape(-1, 2) + 2.0
    return np.concatenate([xy, xy + size], axis=1)


def _logit(p):
    return math.log(p / (1 - p))


def test_report_numbers_on_constructed_outputs():
    anchors = _grid_anchors()                        # 16 anchors, 10 x 10
    n, k = len(anchors), 2
    cls_f = np.full((1, n, k), -8.0)
    cls_f[0, 0, 0] = cls_f[0, 5, 1] = cls_f[0, 10, 0] = 3.0               # three confident detections
    cls_f[0, 3, 1] = _logit(0.05) - 0.01                                  # just below the threshold
    cls_f[0, 7, 0] = _logit(0.05) + 0.01                                  # just above
    cls_q = cls_f.copy()
    cls_q[0, 3, 1] += 0.02                                                # crosses up
    cls_q[0, 7, 0] -= 0.02                                                # crosses down
    cls_q[0, 12, 1] += 0.5                                                # logit error 0.5, no crossing
    box_f = np.zeros((1, n, 4))
    box_q = np.zeros((1, n, 4))
    box_q[0, :, 0] = 0.1          # every box shifted right by 0.1 w: IoU = 0.9 / 1.1
    box_q[0, 10, 0] = 1.5         # one detection moved by 1.5 w: no overlap with its float box
    rep = QH.accuracy_report((readonly(cls_f), box_f), (cls_q, box_q), readonly(anchors), image_size=(100, 100),
                             topk=(3, 16))
    assert rep["logit_error"]["max"] == pytest.approx(0.5)
    assert rep["logit_error"]["mean"] == pytest.approx((0.02 + 0.02 + 0.5) / (n * k))
    assert rep["threshold_crossings"] == {"count": 2, "up": 1, "down": 1, "total": n * k,
                                          "fraction": 2 / (n * k)}
    assert rep["delta_error"]["max"] == pytest.approx(1.5)
    iou_shift = 0.9 / 1.1
    assert rep["box_iou"]["min"] == pytest.approx(0.0)
    assert rep["box_iou"]["mean"] == pytest.approx((15 * iou_shift + 0.0) / 16)
    assert rep["box_iou"]["mean_drift"] == pytest.approx(1 - (15 * iou_shift) / 16)
    # float candidates: anchors 0, 5, 10, 7 (above 0.05 in float)
    assert rep["box_iou"]["num_candidates"] == 4
    assert rep["box_iou"]["candidates_mean"] == pytest.approx(3 * iou_shift / 4)
    # detections: float {0, 5, 10, 7}; quantized {0, 5, 10 (moved), 3}: 0 and 5 match (IoU 0.818)
    d = rep["detections"]
    assert (d["float"], d["quant"], d["matched"]) == (4, 4, 2)
    assert d["precision"] == d["recall"] == 0.5
    assert d["matched_mean_iou"] == pytest.approx(iou_shift)
    assert d["matched_mean_score_diff"] == pytest.approx(0.0)
    # top-3: {0, 5, 10} in both. top-16 of the 32 (anchor, class) scores: those three, the two near
    # the threshold, then 11 of the 27 tied at sigmoid(-8), lowest flat index first; quantized, the
    # pair (12, 1) (flat index 25) rises to sigmoid(-7.5) and pushes out the last tied one: 15/16
    assert rep["topk_overlap"][3] == 1.0 and rep["topk_overlap"][16] == 15 / 16
    assert rep["ap"] is None


def test_report_ap_change_against_ground_truth():
    anchors = _grid_anchors()
    n = len(anchors)
    cls_f = np.full((1, n, 1), -8.0)
    cls_f[0, [0, 5], 0] = 3.0
    box_f = np.zeros((1, n, 4))
    box_q = box_f.copy()
    box_q[0, 5, 0] = 1.5                              # the quantized second detection misses
    gts = [(anchors[[0, 5]], np.array([0, 0]))]       # ground truth = the float boxes
    same = QH.accuracy_report((cls_f, box_f), (cls_f, box_f), anchors, image_size=(100, 100), ground_truths=gts)
    assert same["ap"]["float"] == same["ap"]["quant"] == 1.0 and same["ap"]["delta"] == 0.0
    assert same["sqnr_db"]["cls_logits"] == math.inf and same["detections"]["precision"] == 1.0
    worse = QH.accuracy_report((cls_f, box_f), (cls_f, box_q), anchors, image_size=(100, 100), ground_truths=gts)
    # one of two objects found (at score 0.95, ranked first or tied): COCO recall 0.5 at every IoU
    # threshold, precision 1 up to recall 0.5 -> 101-point AP = 51/101
    assert worse["ap"]["float"] == 1.0
    assert worse["ap"]["quant"] == pytest.approx(51 / 101)
    assert worse["ap"]["delta"] == pytest.approx(51 / 101 - 1.0)


def test_report_accepts_per_level_maps_like_the_head_returns(setup):
    from refdet.anchors import pyramid_anchors
    p, _, feats, heads = setup
    ref, _ = retinanet_head_forward(p, feats)
    out = QH.run_quantized_head(heads["onnx"], feats)
    anchors, _ = pyramid_anchors((32, 32), [(8, 8), (4, 4), (2, 2), (1, 1)], [4, 8, 16, 32],
                                 [(8,), (16,), (32,), (64,)], [0.5, 1.0, 2.0], center_offset=0.5)
    rep = QH.accuracy_report(ref, out, anchors, image_size=(32, 32))
    assert set(rep["sqnr_db"]) >= {"cls_logits", "bbox_deltas", "cls_logits/L0", "bbox_deltas/L3"}
    assert rep["sqnr_db"]["cls_logits"] == pytest.approx(QH.sqnr_db(ref.cls_logits, out.cls_logits))
    text = QH.format_accuracy_report({"int8 onnxruntime": rep})
    assert "SQNR cls_logits (dB)" in text and "precision vs float" in text
    with pytest.raises(ValueError, match="`anchors`"):
        QH.accuracy_report(ref, out, anchors[:-1], image_size=(32, 32))


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------

def test_bad_inputs_are_refused(setup):
    p, calib, feats, heads = setup
    with pytest.raises(ValueError, match="`scheme`"):
        QH.quantize_retinanet_head(p, calib, scheme="tensorrt")
    with pytest.raises(ValueError, match="`activation_dtype`"):
        QH.quantize_retinanet_head(p, calib, scheme="tflite", activation_dtype="uint8")
    with pytest.raises(ValueError, match="`observer`"):
        QH.quantize_retinanet_head(p, calib, observer="kl")
    gn = retinanet_head_init(32, 3, 2, rng=0, num_convs=1, norm="group_norm", dtype=np.float32)
    with pytest.raises(ValueError, match="GroupNorm"):
        QH.quantize_retinanet_head(gn, np.zeros((1, 32, 4, 4), np.float32))
    with pytest.raises(TypeError, match="`qhead`"):
        QH.run_quantized_head(p, feats)
    with pytest.raises(ValueError, match="`mode`"):
        QH.run_quantized_head(heads["onnx"], feats, mode="tensorrt")
    with pytest.raises(ValueError, match="channels"):
        QH.run_quantized_head(heads["onnx"], np.zeros((1, 5, 4, 4), np.float32))
    u8 = QH.quantize_retinanet_head(p, calib, activation_dtype="uint8")
    with pytest.raises(ValueError, match="int8 activations"):
        QH.run_quantized_head(u8, feats, mode="tflite")
    with pytest.raises(TypeError, match="`float_outputs`"):
        QH.accuracy_report(np.zeros((1, 4, 2)), (np.zeros((1, 4, 2)), np.zeros((1, 4, 4))), np.zeros((4, 4)),
                           image_size=(8, 8))


def test_uint8_activations_and_other_observers_run(setup):
    p, calib, feats, _ = setup
    u8 = QH.quantize_retinanet_head(p, calib, activation_dtype="uint8", observer="histogram")
    assert u8.input_zero_point >= 0 and all(la.qmin == la.y_zero_point == 0 for la in u8.cls_layers if la.relu)
    out = QH.run_quantized_head(u8, feats, mode="onnxruntime")
    assert out.cls_q[0].dtype == np.uint8
    ref, _ = retinanet_head_forward(p, feats)
    assert QH.sqnr_db(ref.bbox_deltas, out.bbox_deltas) > 20


# ---------------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------------

def test_quantize_command_runs(capsys):
    lines = []
    reports = QA.quantize_command(steps=2, n_train=8, n_calib=2, n_test=3, batch=4, write=lines.append)
    text = "\n".join(lines)
    for word in ("quantization parameters", "int8 onnxruntime", "int8 tflite", "fake-quant", "SQNR cls_logits",
                 "scores crossing 0.05", "decoded box IoU", "precision vs float", "AP change", "rounding alone"):
        assert word in text, word
    assert set(reports) == {"fake-quant (sim)", "int8 onnxruntime", "int8 tflite", "rounding_only", "saturation"}
    assert "saturated cls_logits" in text
    assert reports["rounding_only"]["max_lsb"] <= 1


def test_quantize_cli(capsys):
    from refdet.cli import main
    assert main(["quantize", "--steps", "1", "--n-train", "8", "--n-calib", "2", "--n-test", "2",
                 "--mode", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "int8 onnxruntime" in out and "int8 tflite" not in out
    with pytest.raises(SystemExit) as e:             # argparse refuses it, naming the option (exit 2)
        main(["quantize", "--steps", "-1"])
    assert e.value.code == 2 and "--steps: must be an integer >= 0; got -1" in capsys.readouterr().err


def test_demo_quantize_option(tmp_path):
    from refdet.demo import run
    lines = []
    with QA._single_thread():     # BLAS threads only slow these tiny matmuls down
        res = run("retinanet", steps=1, batch=4, n_train=8, n_test=3, plots=False, out=str(tmp_path),
                  write=lines.append, quantize=True)
    assert "int8 tflite" in "\n".join(lines) and "int8 onnxruntime" in res["quantization"]


def test_onnx_reference_mode_matches_onnx_reference_evaluator():
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    p = _head(seed=6)
    qh = QH.quantize_retinanet_head(p, _feats(seed=7), scheme="onnx")
    model, outs = _ort_model(qh, 8)
    feats = _feats(seed=8, b=1, sizes=(6, 3))
    ours = QH.run_quantized_head(qh, feats, mode="onnx_reference", return_intermediates=True)
    ev = ReferenceEvaluator(model)
    for lvl, f in enumerate(feats):
        got = dict(zip(outs, ev.run(outs, {"x": f})))
        for name in outs:
            if not name.endswith(".float"):
                np.testing.assert_array_equal(got[name], ours.intermediates[name][lvl], err_msg=name)


# ---------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 16), std=st.floats(0.02, 0.5), scheme=st.sampled_from(["onnx", "tflite"]),
       mode=st.sampled_from(MODES), observer=st.sampled_from(["minmax", "mse", "percentile"]))
def test_property_integer_path_is_the_reference_and_one_lsb_from_fake_quant(seed, std, scheme, mode, observer):
    """Any head, any calibration: the vectorised integer path is the per-layer kernels' result, and each
    layer is within 1 LSB of the float64 simulation fed the same integers."""
    p = _head(seed=seed, c=4, a=2, k=2, depth=1, std=std)
    r = np.random.default_rng(seed + 1)
    calib = [(r.standard_normal((2, 4, s, s)) * r.uniform(0.2, 3)).astype(np.float32) for s in (4, 2)]
    feats = [(r.standard_normal((1, 4, s, s)) * 2).astype(np.float32) for s in (5, 1)]
    kw = {"observer_kwargs": {"percentile": 99.0}} if observer == "percentile" else {}
    qh = QH.quantize_retinanet_head(p, calib, scheme=scheme, observer=observer, **kw)
    out = QH.run_quantized_head(qh, feats, mode=mode, return_intermediates=True)
    for lvl, f in enumerate(feats):
        xq = _reference_input(qh, f, mode)
        assert np.array_equal(out.intermediates["input"][lvl], xq)
        for branch in (qh.cls_layers, qh.box_layers):
            cur, prev = xq, (qh.input_scale, qh.input_zero_point)
            for layer in branch:
                y_fake = QHEAD._fake_conv(layer, Q.dequantize(cur, *prev, out_dtype="float64"), qh.scheme)
                cur = _reference_layer(layer, cur, mode)
                assert np.array_equal(out.intermediates[layer.name][lvl], cur)
                q_fake = np.rint(y_fake / np.float64(layer.y_scale)).astype(np.int64) + layer.y_zero_point
                assert np.abs(q_fake - cur.astype(np.int64)).max() <= 1
                prev = (layer.y_scale, layer.y_zero_point)


# ---------------------------------------------------------------------------------------------------
# onnxruntime's own quantizer: quantize_static on the float head, then its QDQ model run by onnxruntime
# ---------------------------------------------------------------------------------------------------

def _float_head_onnx(p, c):
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits, outs = [], [], []
    for head, last in (("classification_head", "cls_logits"), ("regression_head", "bbox_reg")):
        prev = "x"
        names = [f"{head}.conv.0.0", f"{head}.conv.1.0", f"{head}.{last}"]
        for i, n in enumerate(names):
            inits += [numpy_helper.from_array(p[n + ".weight"], n + ".weight"),
                      numpy_helper.from_array(p[n + ".bias"], n + ".bias")]
            out = n + ".conv"
            nodes.append(helper.make_node("Conv", [prev, n + ".weight", n + ".bias"], [out], pads=[1, 1, 1, 1], name=n))
            if i < len(names) - 1:
                nodes.append(helper.make_node("Relu", [out], [n + ".relu"], name=n + ".relu"))
                out = n + ".relu"
            prev = out
        outs.append(prev)
    graph = helper.make_graph(nodes, "retinanet_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, "H", "W"])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 19)])
    model.ir_version = 9
    return model, outs


def test_onnx_scheme_reproduces_onnxruntime_quantize_static_and_its_qdq_model(tmp_path, caplog):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    oq = pytest.importorskip("onnxruntime.quantization")
    from onnx import numpy_helper
    p = _head(seed=3)
    calib = [_feats(seed=s) for s in (10, 11)]
    model, outs = _float_head_onnx(p, 8)
    onnx.save(model, str(tmp_path / "f.onnx"))

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": f} for batch in calib for f in batch])     # every level of every batch

        def get_next(self):
            return next(self.it, None)

    # onnxruntime's defaults (QDQ, int8 activations and weights, MinMax) with per-channel weights
    oq.quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), per_channel=True,
                       quant_format=oq.QuantFormat.QDQ, activation_type=oq.QuantType.QInt8,
                       weight_type=oq.QuantType.QInt8, calibrate_method=oq.CalibrationMethod.MinMax)
    qm = onnx.load(str(tmp_path / "q.onnx"))
    init = {t.name: numpy_helper.to_array(t) for t in qm.graph.initializer}
    producer = {o: n for n in qm.graph.node for o in n.output}
    consumers = {}
    for n in qm.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def q_after(tensor):                 # the QuantizeLinear that reads `tensor`: its (scale, zero point)
        node = [n for n in consumers[tensor] if n.op_type == "QuantizeLinear"][0]
        return init[node.input[1]], init[node.input[2]]

    theirs = {"input": q_after("x")}
    convs = {n.name: n for n in qm.graph.node if n.op_type == "Conv"}
    for name, node in convs.items():
        theirs[name] = q_after(node.output[0])          # the Relu was folded into the conv's output range
    ours_cal = QH.quantize_retinanet_head(p, calib, scheme="onnx")
    ours = QH.quantize_retinanet_head(p, None, scheme="onnx",
                                      activation_qparams={k: (v[0], v[1]) for k, v in theirs.items()})
    assert ours_cal.input_scale == theirs["input"][0] and ours_cal.input_zero_point == theirs["input"][1]
    for layer, cal in zip(ours.cls_layers + ours.box_layers, ours_cal.cls_layers + ours_cal.box_layers):
        node = convs[layer.name]
        w_dq, b_dq = producer[node.input[1]], producer[node.input[2]]
        # weights, their per-channel scales and the int32 biases: identical to onnxruntime's quantizer
        np.testing.assert_array_equal(layer.weight, init[w_dq.input[0]])
        np.testing.assert_array_equal(layer.w_scale, init[w_dq.input[1]])
        np.testing.assert_array_equal(layer.bias, init[b_dq.input[0]])
        np.testing.assert_array_equal(layer.bias_scale, init[b_dq.input[1]])
        # our own calibration: the same ranges up to the float32 conv's last bits (two float engines)
        ys, yz = theirs[layer.name]
        np.testing.assert_allclose(cal.y_scale, ys, rtol=1e-5)
        assert abs(cal.y_zero_point - int(yz)) <= 1
        assert layer.relu == (int(yz) == -128)
    # onnxruntime runs the QDQ model as QLinearConv chains: the same integers, dequantized the same way
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), so, providers=["CPUExecutionProvider"])
    feats = _feats(seed=12, b=2, sizes=(10, 5, 3))
    mine = QH.run_quantized_head(ours, feats, mode="onnxruntime")
    for lvl, f in enumerate(feats):
        cls, box = sess.run(outs, {"x": f})
        np.testing.assert_array_equal(cls, mine.cls_logits[lvl])
        np.testing.assert_array_equal(box, mine.bbox_deltas[lvl])


def test_conventions_pick_scheme_and_mode(setup):
    from refdet import conventions
    p, calib, feats, heads = setup
    t = QH.quantize_retinanet_head(p, calib, convention="tflite")
    assert t.scheme == "tflite" and QH.quantize_retinanet_head(p, calib).scheme == "onnx"
    for x, y in zip(t.cls_layers, heads["tflite"].cls_layers):
        np.testing.assert_array_equal(x.bias, y.bias)
        assert x.y_zero_point == y.y_zero_point
    a = QH.run_quantized_head(heads["tflite"], feats, convention="tf")
    b = QH.run_quantized_head(heads["tflite"], feats, mode="tflite")
    for x, y in zip(a.cls_q + a.bbox_q, b.cls_q + b.bbox_q):
        np.testing.assert_array_equal(x, y)
    # an explicit mode wins over the convention
    c = QH.run_quantized_head(heads["tflite"], feats, mode="onnxruntime", convention="tf")
    d = QH.run_quantized_head(heads["tflite"], feats)
    for x, y in zip(c.cls_q, d.cls_q):
        np.testing.assert_array_equal(x, y)
    assert "tflite" in str(conventions.describe("run_quantized_head"))
    with pytest.raises(ValueError, match="`convention`"):
        QH.run_quantized_head(heads["onnx"], feats, convention="torchvision")
