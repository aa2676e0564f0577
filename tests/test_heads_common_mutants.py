"""refdet.heads._common: the branches mutation testing found unpinned (issue 19).

The op-list interpreter's fusion rule (when the branches' first convs may run as one stacked conv,
and when they must not), the fused backward with a missing field or bias-free convs, the backward's
validation messages, feature validation and the initialisers, on tiny hand-worked programs.
"""
import math
from typing import NamedTuple

import numpy as np
import pytest

from refdet import heads as H
from refdet.heads import _common as CM
from refdet.testing import check_gradients


def _conv(wk, bk=None, pad=1):
    return ("conv", wk, bk, pad)


# ---------------------------------------------------------------------------------------------------
# _fusable: the fusion rule
# ---------------------------------------------------------------------------------------------------

def _params():
    return {"a": np.zeros((2, 3, 3, 3)), "b": np.zeros((4, 3, 3, 3)), "c": np.zeros((4, 3, 1, 1)),
            "d": np.zeros((4, 2, 3, 3)), "ab": np.zeros(2), "bb": np.zeros(4)}


def test_fusable_takes_two_or_more_branches_that_all_start_with_a_conv():
    p = _params()
    two = [[_conv("a")], [_conv("b"), ("relu",)]]
    assert CM._fusable(two, p) == [_conv("a"), _conv("b")]
    three = [[_conv("a")], [_conv("b")], [_conv("b")]]
    assert CM._fusable(three, p) == [_conv("a"), _conv("b"), _conv("b")]
    assert CM._fusable([[_conv("a")]], p) is None                     # one branch: nothing to fuse
    assert CM._fusable([[_conv("a")], [("relu",), _conv("b")]], p) is None
    assert CM._fusable([[("relu",)], [_conv("b")]], p) is None
    assert CM._fusable([[_conv("a")], []], p) is None                 # an empty branch
    assert CM._fusable([[], [_conv("a")]], p) is None


def test_fusable_needs_the_same_padding_bias_presence_and_kernel():
    p = _params()
    assert CM._fusable([[_conv("a", pad=1)], [_conv("b", pad=0)]], p) is None
    assert CM._fusable([[_conv("a", "ab")], [_conv("b")]], p) is None
    assert CM._fusable([[_conv("a")], [_conv("b", "bb")]], p) is None
    assert CM._fusable([[_conv("a", "ab")], [_conv("b", "bb")]], p) == [_conv("a", "ab"), _conv("b", "bb")]
    assert CM._fusable([[_conv("a")], [_conv("c")]], p) is None       # 3x3 against 1x1
    assert CM._fusable([[_conv("a")], [_conv("d")]], p) is None       # 3 against 2 input channels


# ---------------------------------------------------------------------------------------------------
# the interpreter forward/backward on hand-made programs
# ---------------------------------------------------------------------------------------------------



class TwoOut(NamedTuple):
    first: object
    second: object


class ThreeOut(NamedTuple):
    first: object
    second: object
    third: object


def _run(program, params, feats, single=False, output_type=TwoOut):
    feats = [feats] if single else feats       # single: one map, outputs and gradients unwrapped
    return CM._forward_levels("test_head", output_type, params, feats, single, np.dtype(np.float64),
                              lambda lvl: program)


def test_fused_and_unfused_programs_agree_forward_and_backward():
    # the same maths with fusion (both branches start with a 3x3 conv) and without (padding 0 on one
    # branch breaks the rule: a different program, compared with its own float64 gradient check)
    rng = np.random.default_rng(0)
    p = {"a": rng.standard_normal((2, 3, 3, 3)), "b": rng.standard_normal((1, 3, 3, 3)),
         "ab": rng.standard_normal(2), "bb": rng.standard_normal(1), "t": rng.standard_normal((3, 3, 1, 1))}
    trunk = [_conv("t", None, 0), ("relu",)]
    fused = (trunk, [[_conv("a", "ab"), ("relu",)], [_conv("b", "bb")]])
    x = [rng.standard_normal((2, 3, 4, 3)), rng.standard_normal((2, 3, 2, 2))]
    out, cache = _run(fused, p, x)
    assert cache.levels[0][4] is not None                       # it did fuse: (conv cache, cuts [2])
    assert cache.levels[0][4][1] == [2]
    # the stacked filters are cached once across levels and give each branch its own channels
    for lvl in range(2):
        t = np.maximum(CM._run(trunk, p, x[lvl])[0], 0)
        np.testing.assert_allclose(out.first[lvl], np.maximum(CM._run([_conv("a", "ab")], p, t)[0], 0), rtol=1e-13)
        np.testing.assert_allclose(out.second[lvl], CM._run([_conv("b", "bb")], p, t)[0], rtol=1e-13)

    def fwd(params, feats):
        return _run(fused, params, feats)

    def bwd(dout, cache):
        return CM._backward_levels(dout, cache)

    check_gradients(fwd, bwd, (p, x), rtol=1e-6, atol=1e-8, max_elements=25, rng=0)


def test_fused_backward_with_one_field_missing_and_bias_free_convs():
    # d second = None: its slice of the stacked conv's gradient is zero; the first branch's weights get
    # their gradient, the second's nothing; no biases (g.db is None in the stacked conv)
    rng = np.random.default_rng(1)
    p = {"a": rng.standard_normal((2, 2, 1, 1)), "b": rng.standard_normal((3, 2, 1, 1))}
    prog = ([], [[_conv("a", None, 0)], [_conv("b", None, 0)]])
    x = rng.standard_normal((1, 2, 2, 2))
    out, cache = _run(prog, p, x, single=True)
    assert cache.levels[0][4] is not None
    d = rng.standard_normal(out.first.shape)
    grads, dx = CM._backward_levels(TwoOut(d, None), cache)
    # by hand for a 1x1 conv: dW[f, c] = sum_pixels d[f] * x[c]; dx[c] = sum_f W[f, c] * d[f]
    np.testing.assert_allclose(grads["a"][:, :, 0, 0], np.einsum("bfhw,bchw->fc", d, x), rtol=1e-13)
    assert not grads["b"].any()
    np.testing.assert_allclose(dx, np.einsum("fc,bfhw->bchw", p["a"][:, :, 0, 0], d), rtol=1e-13)
    # the other field alone
    e = rng.standard_normal(out.second.shape)
    grads, dx = CM._backward_levels(TwoOut(None, e), cache)
    assert not grads["a"].any()
    np.testing.assert_allclose(dx, np.einsum("fc,bfhw->bchw", p["b"][:, :, 0, 0], e), rtol=1e-13)
    # both None: zero gradients everywhere, dfeatures zeros of the input's shape
    grads, dx = CM._backward_levels(TwoOut(None, None), cache)
    assert dx.shape == x.shape and not dx.any() and not any(g.any() for g in grads.values())


def test_three_fused_branches_split_their_gradients():
    rng = np.random.default_rng(2)
    p = {k: rng.standard_normal((f, 2, 1, 1)) for k, f in (("a", 1), ("b", 2), ("c", 3))}
    p.update({k + "b": rng.standard_normal(p[k].shape[0]) for k in "abc"})
    prog = ([], [[_conv(k, k + "b", 0)] for k in "abc"])
    x = rng.standard_normal((1, 2, 1, 2))
    out, cache = _run(prog, p, x, single=True, output_type=ThreeOut)
    assert cache.levels[0][4][1] == [1, 3]
    ds = [rng.standard_normal(o.shape) for o in out]
    grads, dx = CM._backward_levels(ThreeOut(*ds), cache)
    for k, d in zip("abc", ds):
        np.testing.assert_allclose(grads[k][:, :, 0, 0], np.einsum("bfhw,bchw->fc", d, x), rtol=1e-13)
        np.testing.assert_allclose(grads[k + "b"], d.sum(axis=(0, 2, 3)), rtol=1e-13)
    want_dx = sum(np.einsum("fc,bfhw->bchw", p[k][:, :, 0, 0], d) for k, d in zip("abc", ds))
    np.testing.assert_allclose(dx, want_dx, rtol=1e-13)


def test_unfused_branches_sum_their_input_gradients_and_skip_none():
    # paddings differ: no fusion; dfeatures = sum over the branches given, None skipped
    rng = np.random.default_rng(3)
    p = {"a": rng.standard_normal((1, 2, 1, 1)), "b": rng.standard_normal((1, 2, 1, 1))}
    prog = ([], [[_conv("a", None, 0)], [_conv("b", None, 1)]])
    x = rng.standard_normal((1, 2, 1, 1))
    out, cache = _run(prog, p, x, single=True)
    assert cache.levels[0][4] is None
    assert out.second.shape == (1, 1, 3, 3)
    da, db = np.ones(out.first.shape), np.zeros(out.second.shape)
    db[0, 0, 1, 1] = 2.0                                       # the only output pixel that sees x
    _, dx = CM._backward_levels(TwoOut(da, db), cache)
    np.testing.assert_allclose(dx[0, :, 0, 0], p["a"][0, :, 0, 0] + 2 * p["b"][0, :, 0, 0], rtol=1e-13)
    _, dx = CM._backward_levels(TwoOut(None, db), cache)
    np.testing.assert_allclose(dx[0, :, 0, 0], 2 * p["b"][0, :, 0, 0], rtol=1e-13)
    _, dx = CM._backward_levels(TwoOut(None, None), cache)
    assert dx.shape == x.shape and not dx.any()


def test_gn_op_in_a_program_backward():
    # ("gn", gamma, beta, groups, eps) accumulates dgamma and dbeta: check against central differences
    rng = np.random.default_rng(4)
    p = {"w": rng.standard_normal((4, 2, 1, 1)), "g": 1 + 0.3 * rng.standard_normal(4),
         "be": rng.standard_normal(4), "o": rng.standard_normal((1, 4, 1, 1))}
    prog = ([_conv("w", None, 0), ("gn", "g", "be", 2, 1e-3), ("relu",)], [[_conv("o", None, 0)]])

    class One(NamedTuple):
        only: object

    def fwd(params, x):
        return _run(prog, params, x, single=True, output_type=One)

    check_gradients(fwd, lambda d, c: CM._backward_levels(d, c), (p, rng.standard_normal((2, 2, 2, 2))),
                    rtol=1e-6, atol=1e-8, max_elements=20, rng=0)


# ---------------------------------------------------------------------------------------------------
# backward validation (through the public heads)
# ---------------------------------------------------------------------------------------------------

def test_backward_validation_messages():
    p = H.rpn_head_init(3, 2, rng=0)
    x = np.zeros((1, 3, 2, 2))
    out, cache = H.rpn_head_forward(p, [x, x[:, :, :1]])
    with pytest.raises(TypeError, match=r"^`cache` must be the HeadCache returned by a head forward; got str$"):
        H.rpn_head_backward(out, "x")
    for bad, got in (((1,), "tuple"), ([1, 2], "list")):
        with pytest.raises(TypeError, match=rf"^`doutput` must be a RPNHeadOutput\(objectness, deltas\) \(a field may "
                                            rf"be None for a zero gradient\); got {got}$"):
            H.rpn_head_backward(bad, cache)
    for bad, got in ((out.objectness[0], "ndarray"), (out.objectness[:1], "list")):
        with pytest.raises(ValueError, match=rf"^`doutput.objectness` must be a list of 2 arrays \(one per level, like "
                                             rf"the forward's output\); got {got}$"):
            H.rpn_head_backward(H.RPNHeadOutput(bad, None), cache)
    with pytest.raises(ValueError, match=r"^`doutput.deltas\[1\]` must have the forward output's shape "
                                         r"\(1, 8, 1, 2\); got \(1, 8, 2, 2\)$"):
        H.rpn_head_backward(H.RPNHeadOutput(None, [out.deltas[0], out.deltas[0]]), cache)
    with pytest.raises(ValueError, match=r"^`doutput.deltas\[0\]` must be 4-D"):
        H.rpn_head_backward(H.RPNHeadOutput(None, [out.deltas[0][0], out.deltas[1]]), cache)
    # a single map: labels without the level index
    out1, cache1 = H.rpn_head_forward(p, x)
    with pytest.raises(ValueError, match=r"^`doutput.deltas` must have the forward output's shape \(1, 8, 2, 2\); "
                                         r"got \(1, 8, 2, 1\)$"):
        H.rpn_head_backward(H.RPNHeadOutput(None, np.zeros((1, 8, 2, 1))), cache1)
    # a tuple of levels is accepted like a list; a None level is a zero gradient
    g1, d1 = H.rpn_head_backward(H.RPNHeadOutput((out.objectness[0], None), None), cache)
    g2, d2 = H.rpn_head_backward(H.RPNHeadOutput([out.objectness[0], np.zeros_like(out.objectness[1])], None), cache)
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    np.testing.assert_array_equal(d1[1], d2[1])
    assert d1[1].shape == (1, 3, 1, 2)


def test_backward_casts_gradients_to_the_forward_dtype():
    p = H.rpn_head_init(3, 2, rng=0, dtype=np.float32)
    out, cache = H.rpn_head_forward(p, np.ones((1, 3, 2, 2), np.float32))
    dp, dx = H.rpn_head_backward(H.RPNHeadOutput(np.ones((1, 2, 2, 2)), np.ones((1, 8, 2, 2))), cache)
    assert dx.dtype == np.float32 and all(v.dtype == np.float32 for v in dp.values())
    dp0, dx0 = H.rpn_head_backward(H.RPNHeadOutput(None, None), cache)
    assert dx0.dtype == np.float32 and all(v.dtype == np.float32 for v in dp0.values())


# ---------------------------------------------------------------------------------------------------
# features, channels, init helpers
# ---------------------------------------------------------------------------------------------------

def test_features_validation_and_common_dtype():
    p = H.rpn_head_init(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"^`features` must be one \(B, C, H, W\) map or a non-empty list of them; "
                                         r"got an empty list$"):
        H.rpn_head_forward(p, [])
    with pytest.raises(ValueError, match=r"^`features` must be 4-D"):
        H.rpn_head_forward(p, np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match=r"^`features\[1\]` must be 4-D"):
        H.rpn_head_forward(p, [np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2))])
    with pytest.raises(ValueError, match=r"^every level of `features` must have the same batch size; got 1 for level 0 "
                                         r"and 2 for level 1$"):
        H.rpn_head_forward(p, [np.zeros((1, 3, 2, 2)), np.zeros((2, 3, 1, 1))])
    # float32 and float64 levels: both computed in float64 (the common type)
    out, _ = H.rpn_head_forward(p, (np.ones((1, 3, 2, 2), np.float32), np.ones((1, 3, 1, 1))))
    assert out.objectness[0].dtype == np.float64 and out.objectness[1].dtype == np.float64
    assert isinstance(out.objectness, list)
    out, _ = H.rpn_head_forward(H.rpn_head_init(3, 2, rng=0, dtype=np.float32),
                                [np.ones((1, 3, 2, 2), np.float32), np.ones((1, 3, 1, 1), np.float32)])
    assert out.objectness[1].dtype == np.float32


def test_check_channels_labels():
    feats = [np.zeros((1, 3, 1, 1)), np.zeros((1, 2, 1, 1))]
    CM._check_channels(feats[:1], 3)
    with pytest.raises(ValueError, match=r"^`features` must have C = 2 channels \(the heads' in_channels\); got "
                                         r"shape \(1, 3, 1, 1\)$"):
        CM._check_channels(feats[:1], 2)
    with pytest.raises(ValueError, match=r"^`features\[1\]` must have C = 3 channels"):
        CM._check_channels(feats, 3)
    with pytest.raises(ValueError, match=r"^`maps\[0\]` must have C = 2 channels"):
        CM._check_channels(feats, 2, name="maps")


def test_init_helpers():
    rng = np.random.default_rng(0)
    w = CM._xavier_uniform(np.random.default_rng(0), (3, 2, 1, 2), np.float32)
    bound = math.sqrt(6.0 / ((2 + 3) * 1 * 2))
    np.testing.assert_array_equal(w, rng.uniform(-bound, bound, (3, 2, 1, 2)).astype(np.float32))
    assert w.dtype == np.float32
    n = CM._normal(np.random.default_rng(1), (2, 3), 0.5, np.float32)
    np.testing.assert_array_equal(n, (np.random.default_rng(1).standard_normal((2, 3)) * 0.5).astype(np.float32))
    assert n.dtype == np.float32
    r, dt = CM._init_common(3, "float32")
    assert dt == np.dtype(np.float32) and isinstance(r, np.random.Generator)
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating dtype; got str 'bogus'$"):
        CM._init_common(0, "bogus")
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating dtype; got int32$"):
        CM._init_common(0, np.int32)


def test_count_and_per_level():
    params = {"conv.0.0.weight": 0, "conv.1.0.weight": 0, "conv.1.0.bias": 0, "xconv.2.0.weight": 0,
              "conv.3.0.weightx": 0, 5: 0}
    assert CM._count(params, r"conv\.(\d+)\.0\.weight") == 2          # fullmatch, non-str keys skipped
    assert CM._count({}, r"conv\.(\d+)\.0\.weight") == 0
    assert CM._per_level(2, 3, "n") == [2, 2, 2]
    assert CM._per_level((1, 2), 2, "n") == [1, 2]
    with pytest.raises(ValueError, match=r"^`n` must have one entry per level \(3\); got 2$"):
        CM._per_level([1, 2], 3, "n")
    with pytest.raises(ValueError, match=r"^`n\[1\]` must be >= 1; got 0$"):
        CM._per_level([1, 0], 2, "n")
    with pytest.raises(ValueError, match=r"^`n` must be >= 1; got 0$"):
        CM._per_level(0, 2, "n")
    assert CM._per_level(1, 1, "n") == [1] and CM._per_level([1], 1, "n") == [1]


def test_rpn_params_with_a_non_string_key_are_refused_by_name():
    p = H.rpn_head_init(3, 2, rng=0)
    p[5] = np.zeros(1)
    with pytest.raises(ValueError, match=r"^`params` has unexpected keys 5"):
        H.rpn_head_forward(p, np.zeros((1, 3, 2, 2)))


def test_run_refuses_an_unknown_op():
    # every op is named: a misspelt one is an error, not silently a ReLU
    x = -np.ones((1, 1, 1, 1))
    y, tape = CM._run([("relu",)], {}, x)
    assert y.item() == 0.0 and len(tape) == 1
    with pytest.raises(ValueError, match=r"^unknown head op \('Relu',\) \(the ops are 'conv', 'gn' and 'relu'\)$"):
        CM._run([("Relu",)], {}, x)


def test_a_none_level_before_a_given_one():
    # level 0 None, level 1 given: the same as zeros at level 0 (the later level is still read)
    p = H.rpn_head_init(3, 2, rng=0)
    rng = np.random.default_rng(7)
    out, cache = H.rpn_head_forward(p, [rng.standard_normal((1, 3, 2, 2)), rng.standard_normal((1, 3, 1, 2))])
    g1 = rng.standard_normal(out.objectness[1].shape)
    a = H.rpn_head_backward(H.RPNHeadOutput([None, g1], None), cache)
    b = H.rpn_head_backward(H.RPNHeadOutput([np.zeros(out.objectness[0].shape), g1], None), cache)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert a[1][1].any() and not a[1][0].any()


def test_float32_backward_rounds_the_gradient_to_float32_first():
    # a float32 head casts the incoming gradient to float32 before anything else: a float64 gradient
    # gives the bits of its float32 rounding; a None field is float32 zeros (the fused conv too)
    rng = np.random.default_rng(8)
    p = {k: v.astype(np.float32) for k, v in H.rpn_head_init(3, 2, rng=0).items()}
    p = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in p.items()}
    x = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    out, cache = H.rpn_head_forward(p, x)
    g64 = rng.standard_normal(out.deltas.shape) / 3.0
    g32 = g64.astype(np.float32)
    a = H.rpn_head_backward(H.RPNHeadOutput(None, g64), cache)
    b = H.rpn_head_backward(H.RPNHeadOutput(np.zeros(out.objectness.shape, np.float32), g32), cache)
    assert a[1].dtype == np.float32
    np.testing.assert_array_equal(a[1], b[1])
    for k in a[0]:
        assert a[0][k].dtype == np.float32
        np.testing.assert_array_equal(a[0][k], b[0][k])


def test_mixed_dtype_levels_run_and_differentiate_in_the_common_type():
    p = H.rpn_head_init(3, 2, rng=0)
    feats = [np.ones((1, 3, 2, 2), np.float32), np.ones((1, 3, 1, 1))]
    out, cache = H.rpn_head_forward(p, feats)
    assert cache.dtype == np.float64 and [t.dtype for t in out.objectness] == [np.float64, np.float64]
    dp, df = H.rpn_head_backward(H.RPNHeadOutput([np.ones(o.shape) for o in out.objectness], None), cache)
    assert [d.dtype for d in df] == [np.float64, np.float64]
    assert cache.levels[0][3] == (1, 3, 2, 2)


def test_stacked_filters_are_cached_per_weight_pair_not_per_bias():
    # two levels with their own bias-free fusable convs (an SSD-like program): level 1 must not reuse
    # level 0's stacked filters (they share the bias key None)
    rng = np.random.default_rng(9)
    p = {k: rng.standard_normal((1, 2, 1, 1)) for k in ("a0", "b0", "a1", "b1")}
    progs = [([], [[_conv("a0", None, 0)], [_conv("b0", None, 0)]]),
             ([], [[_conv("a1", None, 0)], [_conv("b1", None, 0)]])]
    x = [rng.standard_normal((1, 2, 1, 1)), rng.standard_normal((1, 2, 1, 1))]
    out, cache = CM._forward_levels("test_head", TwoOut, p, x, False, np.dtype(np.float64), lambda lvl: progs[lvl])
    assert cache.levels[1][4] is not None
    for lvl in range(2):
        np.testing.assert_allclose(out.first[lvl][0, 0], np.einsum("c,c->", p[f"a{lvl}"][0, :, 0, 0], x[lvl][0, :, 0, 0]),
                                   rtol=1e-13)
        np.testing.assert_allclose(out.second[lvl][0, 0], np.einsum("c,c->", p[f"b{lvl}"][0, :, 0, 0], x[lvl][0, :, 0, 0]),
                                   rtol=1e-13)
