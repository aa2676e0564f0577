"""Tests for refdet.heads: RPN / RetinaNet / SSD heads and the channel -> anchor layout.

Goldens carry their arithmetic; gradient checks are float64 central differences
(refdet.testing.check_gradients); differential tests copy the weights of torchvision's heads into
refdet and compare the forward outputs and the autograd gradients.
"""
import math
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refdet
from refdet import conventions
from refdet import heads as H
from refdet.testing import check_gradients
from refdet.testing import strategies as rst

# float64 on both sides: same formulas, different summation order -> agreement to ~1e-12 relative
F64 = dict(rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# layout: flatten_head_output / unflatten_head_output
# ---------------------------------------------------------------------------------------------------

def test_flatten_golden_anchor_major_layout():
    # A = 2 anchors, C = 2 values, H = 1, W = 2; x[ch, 0, xx] = 10*ch + xx.
    # channel a*C + c, location x -> row x*A + a, column c:
    #   row 0 (x=0, a=0): channels 0, 1 at x=0 -> [0, 10]
    #   row 1 (x=0, a=1): channels 2, 3 at x=0 -> [20, 30]
    #   row 2 (x=1, a=0): [1, 11];  row 3 (x=1, a=1): [21, 31]
    x = (10 * np.arange(4)[:, None, None] + np.arange(2)[None, None, :]).astype(np.int64)
    out = H.flatten_head_output(x, 2)
    np.testing.assert_array_equal(out, [[0, 10], [20, 30], [1, 11], [21, 31]])
    assert out.dtype == np.int64  # a pure rearrangement keeps the dtype
    # per location: row y*W + x holds the A*C channels in channel order
    np.testing.assert_array_equal(H.flatten_head_output(x, 2, per_location=True), [[0, 10, 20, 30], [1, 11, 21, 31]])


def test_flatten_class_major_golden_py_faster_rcnn():
    # py-faster-rcnn rpn_cls_score, A = 2: channels [bg_0, bg_1, fg_0, fg_1] = [0, 1, 10, 11] at one
    # location. class_major (channel c*A + a): anchor 0 -> (bg, fg) = (0, 10), anchor 1 -> (1, 11);
    # read anchor-major it would wrongly pair (0, 1) and (10, 11).
    x = np.array([0.0, 1.0, 10.0, 11.0]).reshape(4, 1, 1)
    np.testing.assert_array_equal(H.flatten_head_output(x, 2, layout="class_major"), [[0, 10], [1, 11]])
    np.testing.assert_array_equal(H.flatten_head_output(x, 2), [[0, 1], [10, 11]])
    back = H.unflatten_head_output(np.array([[0.0, 10.0], [1.0, 11.0]]), 2, (1, 1), layout="class_major")
    np.testing.assert_array_equal(back, x)
    with pytest.raises(ValueError, match="`layout` must be one of"):
        H.flatten_head_output(x, 2, layout="nhwc")


def test_flatten_general_formula():
    # row (y*W + x)*A + a, column c  ==  x[a*C + c, y, x], checked element by element
    A, C, Hh, W = 3, 4, 5, 2
    x = np.random.default_rng(0).standard_normal((A * C, Hh, W))
    out = H.flatten_head_output(x, A)
    for y in range(Hh):
        for xx in range(W):
            for a in range(A):
                for c in range(C):
                    assert out[(y * W + xx) * A + a, c] == x[a * C + c, y, xx]


def test_seed_shapes_50x50_with_9_anchors():
    # The seed's shapes: a 50x50 map with A = 9 anchors.
    reg = np.zeros((36, 50, 50))   # 4A = 36 channels
    cls = np.zeros((9, 50, 50))    # A = 9 objectness channels
    assert H.flatten_head_output(reg, 9, per_location=True).shape == (2500, 36)   # 50*50 locations
    assert H.flatten_head_output(reg, 9).shape == (22500, 4)                      # 2500*9 anchors
    assert H.flatten_head_output(cls, 9, per_location=True).shape == (2500, 9)
    assert H.flatten_head_output(cls, 9).shape == (22500, 1)
    # batched: (B, A*C, H, W) -> (B, H*W*A, C)
    assert H.flatten_head_output(np.zeros((2, 36, 50, 50)), 9).shape == (2, 22500, 4)
    # and what an RPN head actually produces on that map
    params = H.rpn_head_init(4, 9, rng=0)
    out, _ = H.rpn_head_forward(params, np.ones((1, 4, 50, 50)))
    assert out.objectness.shape == (1, 9, 50, 50) and out.deltas.shape == (1, 36, 50, 50)
    assert H.flatten_head_output(out.deltas[0], 9, per_location=True).shape == (2500, 36)
    assert H.flatten_head_output(out.deltas[0], 9).shape == (22500, 4)
    assert H.flatten_head_output(out.objectness[0], 9, per_location=True).shape == (2500, 9)


def test_flatten_list_of_levels_concatenates_level_major():
    rng = np.random.default_rng(1)
    levels = [rng.standard_normal((2, 3 * 5, h, w)) for h, w in [(4, 3), (2, 2)]]
    out = H.flatten_head_output(levels, 3)
    assert out.shape == (2, 4 * 3 * 3 + 2 * 2 * 3, 5)
    np.testing.assert_array_equal(out[:, :36], H.flatten_head_output(levels[0], 3))
    np.testing.assert_array_equal(out[:, 36:], H.flatten_head_output(levels[1], 3))
    # per-level anchor counts (SSD): 2 and 3 anchors, 4 values each
    lv = [rng.standard_normal((8, 2, 2)), rng.standard_normal((12, 1, 1))]
    assert H.flatten_head_output(lv, [2, 3]).shape == (2 * 2 * 2 + 3, 4)


@settings(max_examples=40)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4),
       st.booleans())
def test_unflatten_inverts_flatten(a, c, h, w, b, batched):
    rng = np.random.default_rng(a * 1000 + c * 100 + h * 10 + w)
    shape = (b, a * c, h, w) if batched else (a * c, h, w)
    x = rng.standard_normal(shape)
    flat = H.flatten_head_output(x, a)
    back = H.unflatten_head_output(flat, a, (h, w))
    np.testing.assert_array_equal(back, x)
    cm = H.flatten_head_output(x, a, layout="class_major")
    np.testing.assert_array_equal(H.unflatten_head_output(cm, a, (h, w), layout="class_major"), x)
    # class-major channel c*A + a holds what anchor-major channel a*C + c holds after a transpose
    xt = x.reshape(shape[:-3] + (a, c, h, w)).swapaxes(-4, -3).reshape(shape)
    np.testing.assert_array_equal(H.flatten_head_output(xt, a, layout="class_major"), flat)
    # list form, two levels
    y = rng.standard_normal((b, a * c, h + 1, w) if batched else (a * c, h + 1, w))
    flat2 = H.flatten_head_output([x, y], a)
    b0, b1 = H.unflatten_head_output(flat2, a, [(h, w), (h + 1, w)])
    np.testing.assert_array_equal(b0, x)
    np.testing.assert_array_equal(b1, y)


def test_flatten_returns_new_array():
    x = np.arange(6.0).reshape(6, 1, 1)  # H = W = 1: the rearrangement could have been a view
    out = H.flatten_head_output(x, 1)
    assert not np.shares_memory(out, x)


def test_flatten_errors():
    with pytest.raises(ValueError, match="multiple of `num_anchors`"):
        H.flatten_head_output(np.zeros((7, 2, 2)), 3)
    with pytest.raises(ValueError, match="`x` must be 3-D"):
        H.flatten_head_output(np.zeros((7, 2)), 1)
    with pytest.raises(ValueError, match="sum H\\*W\\*A"):
        H.unflatten_head_output(np.zeros((10, 4)), 2, (2, 2))


# ---------------------------------------------------------------------------------------------------
# RPN head: goldens, init, conventions
# ---------------------------------------------------------------------------------------------------

def _rpn_golden_params(conv_bias):
    return {
        "conv.0.0.weight": np.ones((1, 1, 3, 3)), "conv.0.0.bias": np.array([conv_bias]),
        "cls_logits.weight": np.full((1, 1, 1, 1), 2.0), "cls_logits.bias": np.array([1.0]),
        "bbox_pred.weight": np.array([1.0, -1.0, 0.5, 0.0]).reshape(4, 1, 1, 1), "bbox_pred.bias": np.zeros(4),
    }


def test_rpn_head_golden():
    # x = [[1, 2], [3, 4]]; a 3x3 all-ones kernel with padding 1 sees the whole 2x2 map from every
    # position: 1 + 2 + 3 + 4 = 10, plus bias -5 -> 5 everywhere; ReLU keeps 5.
    # objectness = 2 * 5 + 1 = 11; deltas = [5, -5, 2.5, 0] * ... = (1, -1, 0.5, 0) * 5.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, _ = H.rpn_head_forward(_rpn_golden_params(-5.0), x)
    np.testing.assert_array_equal(out.objectness, np.full((1, 1, 2, 2), 11.0))
    np.testing.assert_array_equal(out.deltas[0, :, 0, 0], [5.0, -5.0, 2.5, 0.0])
    # bias -12: 10 - 12 = -2 < 0, ReLU -> 0, objectness = bias = 1, deltas = 0
    out, _ = H.rpn_head_forward(_rpn_golden_params(-12.0), x)
    np.testing.assert_array_equal(out.objectness, np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(out.deltas, np.zeros((1, 4, 2, 2)))


def test_rpn_head_golden_backward():
    # dL/dobjectness = 1 everywhere (4 positions), dL/ddeltas = 0, pre-ReLU value 5 > 0:
    # d cls_logits.weight = sum over positions of t = 4 * 5 = 20; d cls_logits.bias = 4;
    # dt = 2 at every position; each 3x3 tap of the conv sees x at the positions where the tap lands
    # inside the map; the centre tap sees every x: 2 * (1 + 2 + 3 + 4) = 20; conv bias: 4 * 2 = 8.
    # dx: every output position sends 2 * 1 (all-ones kernel) to every input pixel: 4 * 2 = 8.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, cache = H.rpn_head_forward(_rpn_golden_params(-5.0), x)
    dp, dx = H.rpn_head_backward(H.RPNHeadOutput(np.ones((1, 1, 2, 2)), None), cache)
    assert dp["cls_logits.weight"].item() == 20.0 and dp["cls_logits.bias"].item() == 4.0
    assert dp["conv.0.0.weight"][0, 0, 1, 1] == 20.0 and dp["conv.0.0.bias"].item() == 8.0
    np.testing.assert_array_equal(dp["bbox_pred.weight"], np.zeros((4, 1, 1, 1)))
    np.testing.assert_array_equal(dx, np.full((1, 1, 2, 2), 8.0))


def test_rpn_head_init_layouts_and_conventions():
    p = H.rpn_head_init(8, 3, rng=0)
    assert p["cls_logits.weight"].shape == (3, 8, 1, 1)      # A sigmoid logits
    assert p["bbox_pred.weight"].shape == (12, 8, 1, 1)
    assert p["conv.0.0.weight"].shape == (8, 8, 3, 3)
    for k, v in p.items():
        if k.endswith("bias"):
            np.testing.assert_array_equal(v, 0.0)
    caffe = H.rpn_head_init(8, 3, rng=0, convention="caffe")
    assert caffe["cls_logits.weight"].shape == (6, 8, 1, 1)  # 2A softmax logits (py-faster-rcnn)
    assert H.rpn_head_init(8, 3, rng=0, objectness="softmax")["cls_logits.weight"].shape == (6, 8, 1, 1)
    assert H.rpn_head_init(8, 3, rng=0, convention="caffe", objectness="sigmoid")["cls_logits.weight"].shape \
        == (3, 8, 1, 1)                                      # the explicit knob wins
    assert set(H.rpn_head_init(8, 3, rng=0, conv_depth=2)) >= {"conv.1.0.weight", "conv.1.0.bias"}
    table = conventions.describe("rpn_head_init")
    assert table["torchvision"]["objectness"] == "sigmoid" and table["caffe"]["objectness"] == "softmax"


def test_rpn_softmax_layout_background_then_foreground():
    # py-faster-rcnn: channels [0, A) background, [A, 2A) foreground of the same anchors. Make the
    # foreground logit of anchor a equal a and the background logit 0: softmax over (bg, fg) =
    # sigmoid(fg - bg).
    A, C = 3, 2
    p = H.rpn_head_init(C, A, rng=0, objectness="softmax")
    p["cls_logits.weight"] = np.zeros_like(p["cls_logits.weight"])
    p["cls_logits.bias"] = np.concatenate([np.zeros(A), np.arange(A, dtype=float)])
    out, _ = H.rpn_head_forward(p, np.ones((1, C, 2, 2)))
    fg = out.objectness[:, A:] - out.objectness[:, :A]
    flat = H.flatten_head_output(fg[0], A)
    np.testing.assert_array_equal(flat[:, 0], np.tile(np.arange(A, dtype=float), 4))


def test_init_is_reproducible_and_uses_rng():
    a = H.retinanet_head_init(4, 2, 3, rng=7)
    b = H.retinanet_head_init(4, 2, 3, rng=np.random.default_rng(7))
    c = H.retinanet_head_init(4, 2, 3, rng=8)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["classification_head.conv.0.0.weight"], c["classification_head.conv.0.0.weight"])


# ---------------------------------------------------------------------------------------------------
# RetinaNet and SSD init
# ---------------------------------------------------------------------------------------------------

def test_retinanet_prior_bias_golden():
    # -log((1 - 0.01) / 0.01) = -log(99) = -4.59511985013459
    assert abs(H.RETINANET_PRIOR_BIAS - (-4.59511985013459)) < 1e-13
    p = H.retinanet_head_init(16, 9, 80, rng=0)
    np.testing.assert_allclose(p["classification_head.cls_logits.bias"], -4.59511985013459, rtol=0, atol=1e-13)
    assert p["classification_head.cls_logits.weight"].shape == (720, 16, 3, 3)   # A*K = 9*80
    assert p["regression_head.bbox_reg.weight"].shape == (36, 16, 3, 3)          # 4A
    np.testing.assert_array_equal(p["regression_head.bbox_reg.bias"], 0.0)
    # sigmoid of the bias is the prior 0.01
    assert abs(1 / (1 + math.exp(-H.RETINANET_PRIOR_BIAS)) - 0.01) < 1e-15


def test_retinanet_init_statistics():
    # normal(0, 0.01): with n = 64*64*9 = 36864 draws the sample std is within ~0.4% (1 sigma) of 0.01
    p = H.retinanet_head_init(64, 1, 1, rng=0, num_convs=1)
    w = p["classification_head.conv.0.0.weight"]
    assert abs(w.std() - 0.01) < 0.0005 and abs(w.mean()) < 0.0005
    g = H.retinanet_head_init(8, 1, 1, rng=0, norm="group_norm")
    assert "classification_head.conv.0.0.bias" not in g           # conv has no bias before GroupNorm
    np.testing.assert_array_equal(g["regression_head.conv.3.1.weight"], 1.0)
    np.testing.assert_array_equal(g["regression_head.conv.3.1.bias"], 0.0)


def test_ssd_init_xavier_bound():
    # xavier_uniform: bound = sqrt(6 / ((C + F) * 3 * 3)); C = 32, F = A*K = 4*6 = 24 -> sqrt(6/504)
    p = H.ssd_head_init([32, 16], [4, 6], 6, rng=0)
    w = p["classification_head.module_list.0.weight"]
    bound = math.sqrt(6 / ((32 + 24) * 9))
    assert w.shape == (24, 32, 3, 3)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound   # 6912 uniform draws
    assert p["regression_head.module_list.1.weight"].shape == (24, 16, 3, 3)   # 4 * 6 anchors
    np.testing.assert_array_equal(p["classification_head.module_list.1.bias"], 0.0)


# ---------------------------------------------------------------------------------------------------
# gradient checks (float64 central differences)
# ---------------------------------------------------------------------------------------------------

GC = dict(rtol=1e-5, atol=1e-7, max_elements=30, rng=0)


@pytest.mark.parametrize("objectness", ["sigmoid", "softmax"])
@pytest.mark.parametrize("levels", [False, True])
def test_rpn_head_gradients(objectness, levels):
    rng = np.random.default_rng(3)
    p = H.rpn_head_init(3, 2, rng=1, conv_depth=2, objectness=objectness)
    p = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()}  # away from the tiny init
    feats = [rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 3, 2))] if levels \
        else rng.standard_normal((1, 3, 4, 3))
    check_gradients(H.rpn_head_forward, H.rpn_head_backward, (p, feats), **GC)


@pytest.mark.parametrize("norm", [None, "group_norm"])
def test_retinanet_head_gradients(norm):
    rng = np.random.default_rng(4)
    p = H.retinanet_head_init(4, 2, 3, rng=1, norm=norm)
    p = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()}
    feats = [rng.standard_normal((2, 4, 4, 3)), rng.standard_normal((2, 4, 2, 2))]
    check_gradients(H.retinanet_head_forward, H.retinanet_head_backward, (p, feats),
                    kwargs={"num_groups": 2}, **GC)


def test_ssd_head_gradients():
    rng = np.random.default_rng(5)
    p = H.ssd_head_init([3, 2], [2, 3], 4, rng=1)
    feats = [rng.standard_normal((2, 3, 4, 3)), rng.standard_normal((2, 2, 2, 1))]
    check_gradients(H.ssd_head_forward, H.ssd_head_backward, (p, feats), **GC)


def test_backward_none_fields_are_zero_gradients():
    rng = np.random.default_rng(6)
    p = H.retinanet_head_init(4, 2, 3, rng=1)
    x = rng.standard_normal((1, 4, 3, 3))
    out, cache = H.retinanet_head_forward(p, x)
    d_cls = rng.standard_normal(out.cls_logits.shape)
    dp_a, dx_a = H.retinanet_head_backward(H.RetinaNetHeadOutput(d_cls, None), cache)
    dp_b, dx_b = H.retinanet_head_backward(H.RetinaNetHeadOutput(d_cls, np.zeros(out.bbox_deltas.shape)), cache)
    np.testing.assert_array_equal(dx_a, dx_b)
    assert all(np.array_equal(dp_a[k], dp_b[k]) for k in dp_a)
    assert not dp_a["regression_head.bbox_reg.weight"].any()


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------

def test_param_and_feature_errors():
    p = H.rpn_head_init(4, 3, rng=0)
    x = np.zeros((1, 4, 3, 3))
    bad = dict(p)
    del bad["bbox_pred.bias"]
    with pytest.raises(ValueError, match="missing 'bbox_pred.bias'"):
        H.rpn_head_forward(bad, x)
    with pytest.raises(ValueError, match="unexpected keys 'extra'"):
        H.rpn_head_forward(dict(p, extra=np.zeros(1)), x)
    with pytest.raises(ValueError, match=r"`params\['cls_logits.bias'\]` must have shape \(3,\)"):
        H.rpn_head_forward(dict(p, **{"cls_logits.bias": np.zeros(4)}), x)
    with pytest.raises(ValueError, match="C = 4 channels"):
        H.rpn_head_forward(p, np.zeros((1, 5, 3, 3)))
    with pytest.raises(ValueError, match="`features` must be 4-D"):
        H.rpn_head_forward(p, np.zeros((4, 3, 3)))
    with pytest.raises(TypeError, match="`params` must be a dict"):
        H.rpn_head_forward([1, 2], x)
    with pytest.raises(ValueError, match=r"`params\['conv.0.0.weight'\]`.*NaN"):
        H.rpn_head_forward(dict(p, **{"conv.0.0.weight": np.full((4, 4, 3, 3), np.nan)}), x)
    out, cache = H.rpn_head_forward(p, x)
    with pytest.raises(ValueError, match="doutput.deltas"):
        H.rpn_head_backward(H.RPNHeadOutput(out.objectness, np.zeros((1, 12, 3, 4))), cache)
    with pytest.raises(TypeError, match="HeadCache"):
        H.rpn_head_backward(out, None)
    with pytest.raises(ValueError, match="`num_groups` must divide"):
        H.retinanet_head_forward(H.retinanet_head_init(6, 1, 1, rng=0, norm="group_norm"),
                                 np.zeros((1, 6, 2, 2)), num_groups=4)
    with pytest.raises(ValueError, match="one map per head level"):
        H.ssd_head_forward(H.ssd_head_init([2, 2], 2, 3, rng=0), [np.zeros((1, 2, 2, 2))])


def test_float32_in_float32_out():
    p = H.retinanet_head_init(4, 2, 3, rng=0)
    out, cache = H.retinanet_head_forward(p, np.ones((1, 4, 3, 3), np.float32))
    assert out.cls_logits.dtype == np.float32
    dp, dx = H.retinanet_head_backward(H.RetinaNetHeadOutput(np.ones_like(out.cls_logits), None), cache)
    assert dx.dtype == np.float32 and dp["classification_head.cls_logits.weight"].dtype == np.float32


def test_exported_from_refdet():
    # the top level keeps the ops users call; cache/gradient types and constants stay in the module
    for name in H.__all__:
        if name.endswith(("Cache", "Grads", "Candidate")) or name.isupper():
            assert not hasattr(refdet, name), name
            continue
        assert getattr(refdet, name) is getattr(H, name)


# ---------------------------------------------------------------------------------------------------
# differential tests against torchvision (weights copied in; forward and autograd backward)
# ---------------------------------------------------------------------------------------------------

from tests._torchutil import _state, _torch  # noqa: E402


def _randomise(torch, module, seed, std=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)


def _maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


_sizes = rst.pyramid_sizes(max_levels=3, max_side=13)


@settings(max_examples=10)
@given(sizes=_sizes, batch=st.integers(1, 2), seed=st.integers(0, 2 ** 16))
def test_rpn_head_matches_torchvision(sizes, batch, seed):
    torch = _torch()
    from torchvision.models.detection.rpn import RPNHead

    C, A = 4, 3
    head = RPNHead(C, A).double()
    _randomise(torch, head, seed)
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((batch, C, h, w)) for h, w in sizes]
    tf = [torch.tensor(f, requires_grad=True) for f in feats]
    t_obj, t_box = head(tf)
    out, cache = H.rpn_head_forward(_state(head), feats)
    for a, b in zip(out.objectness + out.deltas, list(t_obj) + list(t_box)):
        np.testing.assert_allclose(a, b.detach().numpy(), **F64)
    g_obj = [rng.standard_normal(o.shape) for o in out.objectness]
    g_box = [rng.standard_normal(o.shape) for o in out.deltas]
    torch.autograd.backward(list(t_obj) + list(t_box), [torch.tensor(g) for g in g_obj + g_box])
    dp, df = H.rpn_head_backward(H.RPNHeadOutput(g_obj, g_box), cache)
    for a, t in zip(df, tf):
        np.testing.assert_allclose(a, t.grad.numpy(), **F64)
    for k, p in head.named_parameters():
        np.testing.assert_allclose(dp[k], p.grad.numpy(), **F64)


@pytest.mark.parametrize("norm", [None, "group_norm"])
@settings(max_examples=5)
@given(sizes=_sizes, seed=st.integers(0, 2 ** 16))
def test_retinanet_heads_match_torchvision(norm, sizes, seed):
    torch = _torch()
    from torchvision.models.detection.retinanet import RetinaNetClassificationHead, RetinaNetRegressionHead

    C, A, K, G = 4, 2, 3, 2
    norm_layer = None if norm is None else partial(torch.nn.GroupNorm, G)
    cls_head = RetinaNetClassificationHead(C, A, K, norm_layer=norm_layer).double()
    box_head = RetinaNetRegressionHead(C, A, norm_layer=norm_layer).double()
    _randomise(torch, cls_head, seed)
    _randomise(torch, box_head, seed + 1)
    params = {f"classification_head.{k}": v for k, v in _state(cls_head).items()}
    params.update({f"regression_head.{k}": v for k, v in _state(box_head).items()})
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((2, C, h, w)) for h, w in sizes]
    tf = [torch.tensor(f, requires_grad=True) for f in feats]
    out, cache = H.retinanet_head_forward(params, feats, num_groups=G)
    # raw conv outputs (B, A*K, H, W) and (B, 4A, H, W)
    for lvl, t in enumerate(tf):
        raw_cls = cls_head.cls_logits(cls_head.conv(t)).detach().numpy()
        raw_box = box_head.bbox_reg(box_head.conv(t)).detach().numpy()
        np.testing.assert_allclose(out.cls_logits[lvl], raw_cls, **F64)
        np.testing.assert_allclose(out.bbox_deltas[lvl], raw_box, **F64)
    # torchvision's flattened (N, sum HWA, K) / (N, sum HWA, 4)
    t_cls, t_box = cls_head(tf), box_head(tf)
    flat_cls = H.flatten_head_output(out.cls_logits, A)
    flat_box = H.flatten_head_output(out.bbox_deltas, A)
    np.testing.assert_allclose(flat_cls, t_cls.detach().numpy(), **F64)
    np.testing.assert_allclose(flat_box, t_box.detach().numpy(), **F64)
    # backward: a gradient in the flattened layout, unflattened into the raw layout
    g_cls = rng.standard_normal(flat_cls.shape)
    g_box = rng.standard_normal(flat_box.shape)
    torch.autograd.backward([t_cls, t_box], [torch.tensor(g_cls), torch.tensor(g_box)])
    sizes_hw = [f.shape[2:] for f in feats]
    dp, df = H.retinanet_head_backward(
        H.RetinaNetHeadOutput(H.unflatten_head_output(g_cls, A, sizes_hw),
                              H.unflatten_head_output(g_box, A, sizes_hw)), cache)
    for a, t in zip(df, tf):
        np.testing.assert_allclose(a, t.grad.numpy(), **F64)
    for prefix, mod in (("classification_head.", cls_head), ("regression_head.", box_head)):
        for k, p in mod.named_parameters():
            np.testing.assert_allclose(dp[prefix + k], p.grad.numpy(), **F64)


def test_retinanet_head_state_dict_keys_match_torchvision():
    torch = _torch()
    from torchvision.models.detection.retinanet import RetinaNetHead

    for norm, norm_layer in ((None, None), ("group_norm", partial(torch.nn.GroupNorm, 2))):
        tv = {k: tuple(v.shape) for k, v in RetinaNetHead(4, 3, 5, norm_layer=norm_layer).state_dict().items()}
        ours = {k: v.shape for k, v in H.retinanet_head_init(4, 3, 5, rng=0, norm=norm).items()}
        assert ours == tv
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.models.detection.ssd import SSDHead
    assert {k: tuple(v.shape) for k, v in RPNHead(4, 3, conv_depth=2).state_dict().items()} == \
        {k: v.shape for k, v in H.rpn_head_init(4, 3, rng=0, conv_depth=2).items()}
    assert {k: tuple(v.shape) for k, v in SSDHead([4, 6], [2, 3], 5).state_dict().items()} == \
        {k: v.shape for k, v in H.ssd_head_init([4, 6], [2, 3], 5, rng=0).items()}


def test_retinanet_head_float32_matches_torchvision():
    torch = _torch()
    from torchvision.models.detection.retinanet import RetinaNetHead

    head = RetinaNetHead(8, 3, 4)
    _randomise(torch, head, 0, std=0.2)
    x = np.random.default_rng(0).standard_normal((1, 8, 11, 7)).astype(np.float32)
    out, _ = H.retinanet_head_forward(_state(head), x)
    t = head([torch.tensor(x)])
    assert out.cls_logits.dtype == np.float32
    # float32 GEMMs summed in a different order: 5 layers of 72-term sums of O(1) values;
    # agreement to a few float32 ulps of the output scale
    scale = np.abs(t["cls_logits"].detach().numpy()).max()
    assert _maxdiff(H.flatten_head_output(out.cls_logits, 3), t["cls_logits"].detach().numpy()) < 1e-5 * scale


@settings(max_examples=8)
@given(sizes=_sizes, seed=st.integers(0, 2 ** 16))
def test_ssd_head_matches_torchvision(sizes, seed):
    torch = _torch()
    from torchvision.models.detection.ssd import SSDHead

    cs = [3, 5, 4][:len(sizes)]
    anchors = [2, 3, 4][:len(sizes)]
    head = SSDHead(cs, anchors, 5).double()
    _randomise(torch, head, seed)
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((2, c, h, w)) for c, (h, w) in zip(cs, sizes)]
    tf = [torch.tensor(f, requires_grad=True) for f in feats]
    t = head(tf)
    out, cache = H.ssd_head_forward(_state(head), feats, num_classes=5)
    flat_cls = H.flatten_head_output(out.cls_logits, anchors)
    flat_box = H.flatten_head_output(out.bbox_deltas, anchors)
    np.testing.assert_allclose(flat_cls, t["cls_logits"].detach().numpy(), **F64)
    np.testing.assert_allclose(flat_box, t["bbox_regression"].detach().numpy(), **F64)
    g_cls, g_box = rng.standard_normal(flat_cls.shape), rng.standard_normal(flat_box.shape)
    torch.autograd.backward([t["cls_logits"], t["bbox_regression"]], [torch.tensor(g_cls), torch.tensor(g_box)])
    hw = [f.shape[2:] for f in feats]
    dp, df = H.ssd_head_backward(H.SSDHeadOutput(H.unflatten_head_output(g_cls, anchors, hw),
                                                 H.unflatten_head_output(g_box, anchors, hw)), cache)
    for a, tt in zip(df, tf):
        np.testing.assert_allclose(a, tt.grad.numpy(), **F64)
    for k, p in head.named_parameters():
        np.testing.assert_allclose(dp[k], p.grad.numpy(), **F64)


def test_empty_batch():
    h = H.retinanet_head_init(4, 2, 3, rng=0, norm="group_norm")
    out, cache = H.retinanet_head_forward(h, np.zeros((0, 4, 3, 3)), num_groups=2)
    assert out.cls_logits.shape == (0, 6, 3, 3) and out.bbox_deltas.shape == (0, 8, 3, 3)
    dp, dx = H.retinanet_head_backward(out, cache)
    assert dx.shape == (0, 4, 3, 3) and not any(v.any() for v in dp.values())
    assert H.flatten_head_output(out.cls_logits, 2).shape == (0, 18, 3)
    o, c = H.ssd_head_forward(H.ssd_head_init([4], 2, 3, rng=0), [np.ones((0, 4, 1, 1))])
    assert H.ssd_head_backward(o, c)[1][0].shape == (0, 4, 1, 1)


# ---------------------------------------------------------------------------------------------------
# properties: weight sharing across levels, independence of the samples in a batch
# ---------------------------------------------------------------------------------------------------

@settings(max_examples=15)
@given(sizes=rst.pyramid_sizes(max_levels=3, max_side=6), seed=st.integers(0, 2 ** 16))
def test_levels_share_weights_and_gradients_add(sizes, seed):
    # a list of levels is the same as one call per level; the shared parameters' gradients add up
    rng = np.random.default_rng(seed)
    p = H.retinanet_head_init(4, 2, 3, rng=rng, num_convs=2)
    p = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()}
    feats = [rng.standard_normal((2, 4, h, w)) for h, w in sizes]
    out, cache = H.retinanet_head_forward(p, feats)
    d = H.RetinaNetHeadOutput([rng.standard_normal(o.shape) for o in out.cls_logits],
                              [rng.standard_normal(o.shape) for o in out.bbox_deltas])
    dp, df = H.retinanet_head_backward(d, cache)
    total = {k: np.zeros_like(v) for k, v in p.items()}
    for lvl, x in enumerate(feats):
        o1, c1 = H.retinanet_head_forward(p, x)
        np.testing.assert_array_equal(o1.cls_logits, out.cls_logits[lvl])
        dp1, dx1 = H.retinanet_head_backward(H.RetinaNetHeadOutput(d.cls_logits[lvl], d.bbox_deltas[lvl]), c1)
        np.testing.assert_array_equal(dx1, df[lvl])
        for k in total:
            total[k] += dp1[k]
    for k in total:   # summed in another order: equal to rounding
        np.testing.assert_allclose(dp[k], total[k], rtol=1e-12, atol=1e-12)


@settings(max_examples=15)
@given(x=rst.feature_maps(max_batch=3, max_channels=4, min_side=1, max_side=6), seed=st.integers(0, 2 ** 16))
def test_samples_in_a_batch_are_independent(x, seed):
    # GroupNorm normalises per sample, convolutions act per sample: row b of the output depends on
    # sample b only (so padding a batch with other images cannot change an image's predictions)
    rng = np.random.default_rng(seed)
    c = x.shape[1]
    p = H.retinanet_head_init(c, 2, 3, rng=rng, num_convs=1, norm="group_norm")
    out, _ = H.retinanet_head_forward(p, x, num_groups=1)
    for b in range(x.shape[0]):
        ob, _ = H.retinanet_head_forward(p, x[b:b + 1], num_groups=1)
        np.testing.assert_allclose(ob.cls_logits[0], out.cls_logits[b], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# memory layout: C, Fortran, strided, reversed and read-only inputs give the same bits
# ---------------------------------------------------------------------------------------------------

from tests import _layouts  # noqa: E402
from tests.contract import heads as _contract  # noqa: E402


@pytest.mark.parametrize("case", _contract.CASES, ids=lambda c: c.name)
def test_bits_do_not_depend_on_memory_layout(case):
    _layouts.assert_layout_independent(getattr(H, case.name), case.make)


@pytest.mark.parametrize("head", ["rpn", "retinanet", "ssd"])
def test_bits_do_not_depend_on_memory_layout_at_a_larger_size(head):
    # maps large enough for NumPy's blocked (pairwise) sums to depend on the layout if they could
    def fwd(rng):
        feats = [rng.standard_normal((2, 16, 12, 10)), rng.standard_normal((2, 16, 6, 5))]
        if head == "rpn":
            return (H.rpn_head_init(16, 3, rng=1), feats), {}
        if head == "retinanet":
            return (H.retinanet_head_init(16, 3, 4, rng=1, num_convs=2, norm="group_norm"), feats), {"num_groups": 4}
        return (H.ssd_head_init([16, 16], [2, 3], 5, rng=1), feats), {}

    forward = {"rpn": H.rpn_head_forward, "retinanet": H.retinanet_head_forward, "ssd": H.ssd_head_forward}[head]
    backward = {"rpn": H.rpn_head_backward, "retinanet": H.retinanet_head_backward, "ssd": H.ssd_head_backward}[head]

    def bwd(rng):
        args, kw = fwd(rng)
        out, cache = forward(*args, **kw)
        return (type(out)(*[[rng.standard_normal(o.shape) for o in f] for f in out]), cache), {}

    _layouts.assert_layout_independent(forward, fwd)
    _layouts.assert_layout_independent(backward, bwd)
