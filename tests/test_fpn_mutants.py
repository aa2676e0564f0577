"""refdet.fpn: the branches mutation testing found unpinned (issue 19).

fpn_init's draws and exact allocation cap, every validation message of fpn_forward / fpn_backward /
fpn_explain, the backward's partial-gradient branches (a missing P6 or P7 gradient, maxpool without
a gradient) and fpn_explain's candidate list (which knobs it tries, the profiles it names, the
ranking), on hand-worked tiny FPNs.
"""
import math

import numpy as np
import pytest

from refdet import fpn as FP
from refdet.testing import check_gradients
from tests.test_fpn import _identity_fpn as _id_fpn
from tests.test_fpn import _img


# ---------------------------------------------------------------------------------------------------
# fpn_init
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("convention, src, c_in", [("torchvision", None, 5), ("mmdet", None, 5),
                                                   ("torchvision", "p5", 4), ("detectron2", "lateral", 4)])
def test_init_draws_in_key_order_with_the_convention_bound(convention, src, c_in):
    # inner_blocks (F, C_i, 1, 1) for every level, then layer_blocks (F, F, 3, 3), then p6, p7; each
    # U(-b, b) with b = sqrt(3 / fan_in) (kaiming_uniform a=1) or sqrt(6 / (fan_in + fan_out)) (xavier)
    p = FP.fpn_init([3, 5], 4, rng=2, convention=convention, p6p7_input=src)
    rng = np.random.default_rng(2)
    order = [("inner_blocks.0.0", (4, 3, 1, 1)), ("inner_blocks.1.0", (4, 5, 1, 1)),
             ("layer_blocks.0.0", (4, 4, 3, 3)), ("layer_blocks.1.0", (4, 4, 3, 3)),
             ("extra_blocks.p6", (4, c_in, 3, 3)), ("extra_blocks.p7", (4, 4, 3, 3))]
    assert list(p) == [f"{k}.{s}" for k, _ in order for s in ("weight", "bias")]
    for key, (f, c, kh, kw) in order:
        fan_in, fan_out = c * kh * kw, f * kh * kw
        b = math.sqrt(6.0 / (fan_in + fan_out)) if convention == "mmdet" else math.sqrt(3.0 / fan_in)
        np.testing.assert_array_equal(p[f"{key}.weight"], rng.uniform(-b, b, size=(f, c, kh, kw)))
        np.testing.assert_array_equal(p[f"{key}.bias"], np.zeros(f))


def test_init_dtype_reaches_every_array():
    p = FP.fpn_init([3], 2, rng=0, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in p.values())
    assert len(p) == 8


@pytest.mark.parametrize("extra, src, n", [
    # F = 4, C = (3, 5): laterals 4*4 + 4*6 = 40, outputs 2 * 4 * 37 = 296 -> 336;
    # P6 from C5: 4 * (45 + 1) = 184, or from an F-channel map 4 * 37 = 148; P7 4 * 37 = 148
    ("p6p7", "c5", 336 + 184 + 148),
    ("p6p7", "auto", 336 + 184 + 148),
    ("p6p7", "p5", 336 + 148 + 148),
    ("p6p7", "lateral", 336 + 148 + 148),
    ("maxpool", "c5", 336),
    ("none", "p5", 336),
])
def test_init_allocation_cap_is_the_exact_parameter_count(extra, src, n):
    p = FP.fpn_init([3, 5], 4, rng=0, extra_blocks=extra, p6p7_input=src)
    assert sum(v.size for v in p.values()) == n
    FP.fpn_init([3, 5], 4, rng=0, extra_blocks=extra, p6p7_input=src, max_elements=n)
    with pytest.raises(ValueError, match=rf"^`in_channels_list` and `out_channels` ask for {n} elements "
                                         rf"\(FPN parameters, [\d.]+ KiB\); the cap is {n - 1} elements"):
        FP.fpn_init([3, 5], 4, rng=0, extra_blocks=extra, p6p7_input=src, max_elements=n - 1)
    with pytest.raises(ValueError, match=rf"ask for {n} elements \(FPN parameters, {n * 4 / 1024:.3g} KiB\)"):
        FP.fpn_init([3, 5], 4, rng=0, extra_blocks=extra, p6p7_input=src, max_elements=n - 1, dtype=np.float32)


def test_init_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"^`in_channels_list` must be a list of ints \(C_i per level\); "
                                        r"got str 'ab'$"):
        FP.fpn_init("ab", 2)
    with pytest.raises(TypeError, match=r"^`in_channels_list` must be a list of ints \(C_i per level\); "
                                        r"got bytes b'ab'$"):
        FP.fpn_init(b"ab", 2)
    with pytest.raises(TypeError, match=r"^`in_channels_list` must be a list of ints \(C_i per level\); got int 3$"):
        FP.fpn_init(3, 2)
    with pytest.raises(ValueError, match=r"^`in_channels_list\[1\]` must be >= 1; got 0$"):
        FP.fpn_init([2, 0], 2)
    with pytest.raises(ValueError, match=r"^`in_channels_list` must list at least one level; got an empty list$"):
        FP.fpn_init([], 2)
    with pytest.raises(ValueError, match=r"^`out_channels` must be >= 1; got 0$"):
        FP.fpn_init([2], 0)
    with pytest.raises(ValueError, match=r"^`extra_blocks` must be one of 'p6p7', 'maxpool', 'none'; got 'p6'$"):
        FP.fpn_init([2], 2, extra_blocks="p6")
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating dtype; got int8$"):
        FP.fpn_init([2], 2, dtype=np.int8)
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating dtype; got str 'bogus'$"):
        FP.fpn_init([2], 2, dtype="bogus")
    p = FP.fpn_init((1, 1), 1, rng=0)   # a tuple, and the smallest sizes
    assert p["inner_blocks.1.0.weight"].shape == (1, 1, 1, 1) and p["extra_blocks.p6.weight"].shape == (1, 1, 3, 3)


# ---------------------------------------------------------------------------------------------------
# fpn_forward: validation, dtype, settings
# ---------------------------------------------------------------------------------------------------

def _setup():
    p = FP.fpn_init([2, 3], 2, rng=0)
    return p, [np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 2, 2))]


def test_forward_validation_messages():
    p, f = _setup()
    with pytest.raises(TypeError, match=r"^`params` must be a dict of arrays \(state_dict keys\); got list"):
        FP.fpn_forward([1], f)
    with pytest.raises(TypeError, match=r"^`features` must be a list of \(B, C_i, H_i, W_i\) maps \(highest "
                                        r"resolution first\); got ndarray$"):
        FP.fpn_forward(p, f[0])
    with pytest.raises(ValueError, match=r"^`features` must hold at least one map; got an empty list$"):
        FP.fpn_forward(p, [])
    with pytest.raises(ValueError, match=r"^`features\[1\]` must be 4-D"):
        FP.fpn_forward(p, [f[0], np.zeros((3, 2, 2))])
    with pytest.raises(ValueError, match=r"^every level of `features` must have the same batch size; got 1 for level 0 "
                                         r"and 2 for level 1$"):
        FP.fpn_forward(p, [f[0], np.zeros((2, 3, 2, 2))])
    with pytest.raises(ValueError, match=r"^`params` hold an FPN with 2 levels \(inner_blocks.\*.0.weight\) but "
                                         r"`features` has 1 maps$"):
        FP.fpn_forward(p, f[:1])
    q = {"inner_blocks.0.0.weight": 1, "inner_blocks.5.0.weight": 1, 3: 0, "inner_blocks.0.0.bias": 0,
         "x_inner_blocks.1.0.weight": 0}
    with pytest.raises(ValueError, match=r"^`params` is missing 'inner_blocks.1.0.weight' \(expected keys: "
                                         r"'inner_blocks.1.0.weight'\)$"):
        FP.fpn_forward(q, f)
    with pytest.raises(ValueError, match=r"^`params\['inner_blocks.1.0.weight'\]` must have shape \(F, C, 1, 1\); "
                                         r"got \(2, 3, 1\)$"):
        FP.fpn_forward(dict(p, **{"inner_blocks.1.0.weight": np.zeros((2, 3, 1))}), f)
    with pytest.raises(ValueError, match=r"^`params\['extra_blocks.p6.weight'\]` must have shape \(F, C_in, 3, 3\); "
                                         r"got \(2, 3, 3\)$"):
        FP.fpn_forward(dict(p, **{"extra_blocks.p6.weight": np.zeros((2, 3, 3))}), f)
    with pytest.raises(ValueError, match=r"^`params` has no 'extra_blocks.p6.weight': they were made without P6/P7 "
                                         r"\(pass extra_blocks='maxpool' or 'none' to fpn_forward, as to fpn_init\)$"):
        FP.fpn_forward(FP.fpn_init([2, 3], 2, rng=0, extra_blocks="none"), f)
    with pytest.raises(ValueError, match=r"^`params` has P6/P7 weights but extra_blocks='none'; pass "
                                         r"extra_blocks='p6p7' \(as to fpn_init\)$"):
        FP.fpn_forward(p, f, extra_blocks="none")
    with pytest.raises(ValueError, match=r"^`extra_blocks` must be one of 'p6p7', 'maxpool', 'none'; got 'x'$"):
        FP.fpn_forward(p, f, extra_blocks="x")
    with pytest.raises(ValueError, match=r"^p6p7_input='p5' has 2 channels but `params\['extra_blocks.p6.weight'\]` "
                                         r"expects 3$"):
        FP.fpn_forward(p, f, p6p7_input="p5")
    # every expected shape is derived: F from the top lateral, C_i from the features, F for the rest
    for key, shape, want in (("inner_blocks.0.0.bias", (3,), (2,)), ("layer_blocks.1.0.weight", (2, 2, 1, 1),
                                                                     (2, 2, 3, 3)),
                             ("layer_blocks.0.0.bias", (1,), (2,)), ("extra_blocks.p6.bias", (1,), (2,)),
                             ("extra_blocks.p7.weight", (2, 3, 3, 3), (2, 2, 3, 3)),
                             ("extra_blocks.p7.bias", (3,), (2,)), ("extra_blocks.p6.weight", (1, 3, 3, 3),
                                                                    (2, 3, 3, 3))):
        with pytest.raises(ValueError, match=rf"^`params\['{key}'\]` must have shape {re_shape(want)}; "
                                             rf"got {re_shape(shape)}$"):
            FP.fpn_forward(dict(p, **{key: np.zeros(shape)}), f)


def re_shape(t):
    import re
    return re.escape(str(tuple(t)))


def test_forward_x2_message_names_the_sizes():
    p = _id_fpn([1, 1])
    x = [_img(np.zeros((5, 4))), _img(np.zeros((3, 2)))]
    with pytest.raises(ValueError, match=r"^upsample='x2' needs every map twice the size of the next: level 0 is "
                                         r"\(5, 4\) but level 1 upsampled by 2 is \(6, 4\) \(detectron2 pads inputs "
                                         r"to a multiple of 32; use upsample='to_lateral' for torchvision/mmdet "
                                         r"behaviour\)$"):
        FP.fpn_forward(p, x, extra_blocks="none", upsample="x2")
    # the width alone off by one is refused too
    with pytest.raises(ValueError, match=r"level 0 is \(6, 5\) but level 1 upsampled by 2 is \(6, 4\)"):
        FP.fpn_forward(p, [_img(np.zeros((6, 5))), _img(np.zeros((3, 2)))], extra_blocks="none", upsample="x2")


def test_forward_x2_nearest_exact_golden():
    # 'x2' with nearest-exact: for an exact factor 2 the source of dst is floor((dst + 0.5) / 2) =
    # floor(dst / 2): the same as nearest. C5 = [[1, 2]] -> [[1, 1, 2, 2], [1, 1, 2, 2]]
    p = _id_fpn([1, 1])
    x = [_img(np.zeros((2, 4))), _img([[1.0, 2.0]])]
    outs, cache = FP.fpn_forward(p, x, extra_blocks="none", upsample="x2", upsample_mode="nearest-exact")
    np.testing.assert_array_equal(outs[0][0, 0], [[1, 1, 2, 2], [1, 1, 2, 2]])
    assert cache.settings["upsample_mode"] == "nearest-exact" and cache.settings["upsample"] == "x2"


def test_forward_mixed_dtypes_and_settings_in_the_cache():
    p, f = _setup()
    outs, cache = FP.fpn_forward(p, [f[0].astype(np.float32), f[1]])
    assert all(o.dtype == np.float64 for o in outs) and cache.dtype == np.float64
    assert cache.settings == {"upsample": "to_lateral", "upsample_mode": "nearest", "fuse": "sum",
                              "p6p7_input": "c5", "relu_before_p7": True, "extra_blocks": "p6p7"}
    assert cache.feature_shapes == [(1, 2, 4, 4), (1, 3, 2, 2)]
    assert cache.out_shapes == [(1, 2, 4, 4), (1, 2, 2, 2), (1, 2, 1, 1), (1, 2, 1, 1)]
    _, cache = FP.fpn_forward(FP.fpn_init([2, 3], 2, rng=0, extra_blocks="none"), f, extra_blocks="none",
                              convention="mmdet")
    assert cache.settings["extra_blocks"] == "none" and cache.extra == ("none",)
    assert cache.settings["relu_before_p7"] is False


# ---------------------------------------------------------------------------------------------------
# fpn_backward
# ---------------------------------------------------------------------------------------------------

def test_backward_validation_messages():
    p, f = _setup()
    outs, cache = FP.fpn_forward(p, f)
    with pytest.raises(TypeError, match=r"^`cache` must be the FPNCache returned by fpn_forward; got str$"):
        FP.fpn_backward(outs, "x")
    with pytest.raises(ValueError, match=r"^`doutputs` must be a list of 4 arrays \(one per output of fpn_forward\); "
                                         r"got ndarray$"):
        FP.fpn_backward(outs[0], cache)
    with pytest.raises(ValueError, match=r"^`doutputs` must be a list of 4 arrays \(one per output of fpn_forward\); "
                                         r"got list of length 3$"):
        FP.fpn_backward(outs[:3], cache)
    with pytest.raises(ValueError, match=r"^`doutputs` must be a list of 4 arrays \(one per output of fpn_forward\); "
                                         r"got tuple of length 5$"):
        FP.fpn_backward(tuple(outs) + (outs[0],), cache)
    with pytest.raises(ValueError, match=r"^`doutputs\[2\]` must be 4-D"):
        FP.fpn_backward(outs[:2] + [outs[2][0], outs[3]], cache)
    with pytest.raises(ValueError, match=r"^`doutputs\[3\]` must have the output's shape \(1, 2, 1, 1\); "
                                         r"got \(1, 2, 2, 2\)$"):
        FP.fpn_backward(outs[:3] + [outs[1]], cache)
    g, d = FP.fpn_backward(tuple(outs), cache)   # a tuple is accepted
    assert len(d) == 2


def _p6p7_case():
    rng = np.random.default_rng(5)
    p = FP.fpn_init([2, 3], 2, rng=rng)
    p = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()}
    f = [rng.standard_normal((1, 2, 6, 4)), rng.standard_normal((1, 3, 3, 2))]
    return p, f, rng


@pytest.mark.parametrize("src", ["c5", "p5", "lateral"])
@pytest.mark.parametrize("which", ["p6_only", "p7_only", "neither"])
def test_backward_with_a_missing_p6_or_p7_gradient(src, which):
    # None is a zero gradient: the same answer as zeros, for every source of P6
    p, f, rng = _p6p7_case()
    if src != "c5":
        p["extra_blocks.p6.weight"] = p["extra_blocks.p6.weight"][:, :2]
    outs, cache = FP.fpn_forward(p, f, p6p7_input=src)
    g = [rng.standard_normal(o.shape) for o in outs]
    none, zero = list(g), list(g)
    gone = {"p6_only": [3], "p7_only": [2], "neither": [2, 3]}[which]
    for i in gone:
        none[i], zero[i] = None, np.zeros(outs[i].shape)
    a, b = FP.fpn_backward(none, cache), FP.fpn_backward(zero, cache)
    for k in a[0]:
        np.testing.assert_array_equal(a[0][k], b[0][k])
    for x, y in zip(a[1], b[1]):
        np.testing.assert_array_equal(x, y)
    if which == "neither":
        assert not a[0]["extra_blocks.p6.weight"].any() and not a[0]["extra_blocks.p7.bias"].any()
    else:
        assert a[0]["extra_blocks.p6.weight"].any()


@pytest.mark.parametrize("src", ["c5", "p5", "lateral"])
def test_backward_p6_only_gradient_reaches_its_source(src):
    # only dP6 given: it flows into C5 (directly), P5 (through the top output conv) or the top lateral
    p, f, rng = _p6p7_case()
    if src != "c5":
        p["extra_blocks.p6.weight"] = p["extra_blocks.p6.weight"][:, :2]
    outs, cache = FP.fpn_forward(p, f, p6p7_input=src, relu_before_p7=False)
    g = [None, None, rng.standard_normal(outs[2].shape), None]
    dp, df = FP.fpn_backward(g, cache)
    assert not df[0].any()                                        # nothing reaches level 0
    assert df[1].any()
    assert dp["layer_blocks.1.0.weight"].any() == (src == "p5")   # only 'p5' passes the top output conv
    assert dp["inner_blocks.1.0.weight"].any() == (src != "c5")   # 'c5' skips the lateral
    assert not dp["layer_blocks.0.0.weight"].any() and not dp["extra_blocks.p7.weight"].any()

    def fwd(params, feats):
        return FP.fpn_forward(params, feats, p6p7_input=src, relu_before_p7=False)

    check_gradients(fwd, FP.fpn_backward, (p, f), rtol=1e-6, atol=1e-8, max_elements=12, rng=0)


def test_backward_maxpool_without_its_gradient_and_empty_batch():
    # P_L = P_{L-1}[::2, ::2]: its gradient lands on those pixels of P_{L-1}; None adds nothing
    p = _id_fpn([1])
    x = [_img(np.arange(9.0).reshape(3, 3))]
    outs, cache = FP.fpn_forward(p, x, extra_blocks="maxpool")
    dp, df = FP.fpn_backward([None, np.ones((1, 1, 2, 2))], cache)
    np.testing.assert_array_equal(df[0][0, 0], [[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    dp, df = FP.fpn_backward([np.ones((1, 1, 3, 3)), None], cache)
    np.testing.assert_array_equal(df[0][0, 0], np.ones((3, 3)))
    dp, df = FP.fpn_backward([None, None], cache)
    assert not df[0].any() and not any(v.any() for v in dp.values())
    # an empty batch through two levels: zero-sized gradients of the right shapes
    p2 = _id_fpn([1, 1])
    outs, cache = FP.fpn_forward(p2, [np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 2, 2))], extra_blocks="none")
    dp, df = FP.fpn_backward([np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 2, 2))], cache)
    assert [d.shape for d in df] == [(0, 1, 4, 4), (0, 1, 2, 2)] and not any(v.any() for v in dp.values())


def test_backward_avg_fuse_halves_below_the_top_only():
    # identity FPN, fuse avg: M1 = C1 (top), M0 = (C0 + up(M1)) / 2. dP0 = 1 everywhere (4x4), dP1 = 0:
    # dC0 = 1/2 per pixel; dC1 = 4 * 1/2 = 2 per pixel (each source pixel feeds 2x2 upsampled pixels)
    p = _id_fpn([1, 1])
    x = [_img(np.zeros((4, 4))), _img(np.zeros((2, 2)))]
    outs, cache = FP.fpn_forward(p, x, extra_blocks="none", fuse="avg")
    dp, df = FP.fpn_backward([np.ones((1, 1, 4, 4)), None], cache)
    np.testing.assert_array_equal(df[0][0, 0], np.full((4, 4), 0.5))
    np.testing.assert_array_equal(df[1][0, 0], np.full((2, 2), 2.0))
    # dP1 only: the top level's lateral gets it without halving
    dp, df = FP.fpn_backward([None, np.ones((1, 1, 2, 2))], cache)
    np.testing.assert_array_equal(df[1][0, 0], np.ones((2, 2)))
    assert not df[0].any()
    assert dp["inner_blocks.1.0.bias"].item() == 4.0 and dp["inner_blocks.0.0.bias"].item() == 0.0


# ---------------------------------------------------------------------------------------------------
# fpn_explain
# ---------------------------------------------------------------------------------------------------

def test_explain_validation_messages():
    p, f = _setup()
    outs, _ = FP.fpn_forward(p, f)
    with pytest.raises(ValueError, match=r"^`rtol` must be >= 0; got -1.0$"):
        FP.fpn_explain(p, f, outs, rtol=-1)
    with pytest.raises(ValueError, match=r"^`atol` must be >= 0; got -1.0$"):
        FP.fpn_explain(p, f, outs, atol=-1)
    with pytest.raises(TypeError, match=r"^`outputs` must be a list of arrays \(one per FPN output\); got ndarray$"):
        FP.fpn_explain(p, f, outs[0])
    with pytest.raises(ValueError, match=r"^`outputs\[1\]` must be 4-D"):
        FP.fpn_explain(p, f, [outs[0], outs[1][0]] + outs[2:])
    with pytest.raises(TypeError, match=r"^`features` must be a list of \(B, C_l, H_l, W_l\) maps; got str 'x'$"):
        FP.fpn_explain(p, "x", outs)
    with pytest.raises(ValueError, match=r"^`extra_blocks` must be one of 'p6p7', 'maxpool', 'none'; got 'x'$"):
        FP.fpn_explain(p, f, outs, extra_blocks="x")
    with pytest.raises(ValueError, match=r"^`outputs` must have 4 levels \(2 maps of `features` \+ 2 extra for "
                                         r"extra_blocks='p6p7'\); got 3$"):
        FP.fpn_explain(p, f, outs[:3])
    with pytest.raises(ValueError, match=r"^`outputs` must have 3 levels \(2 maps of `features` \+ 1 extra for "
                                         r"extra_blocks='maxpool'\); got 4$"):
        FP.fpn_explain(FP.fpn_init([2, 3], 2, rng=0, extra_blocks="maxpool"), f, outs, extra_blocks="maxpool")
    with pytest.raises(ValueError, match=r"^`outputs` must have 2 levels \(2 maps of `features` \+ 0 extra for "
                                         r"extra_blocks='none'\); got 4$"):
        FP.fpn_explain(FP.fpn_init([2, 3], 2, rng=0, extra_blocks="none"), f, outs, extra_blocks="none")
    # a ValueError that is not about an infeasible knob is the caller's mistake: raised, not skipped
    with pytest.raises(ValueError, match=r"must have shape"):
        FP.fpn_explain(dict(p, **{"layer_blocks.0.0.bias": np.zeros(5)}), f, outs)
    # outputs may hold NaN (their implementation's bug): compared, not refused
    nan = [o.copy() for o in outs]
    nan[0][...] = np.nan
    assert not any(c.match for c in FP.fpn_explain(p, f, nan))


def test_explain_one_level_without_extras_tries_one_candidate():
    # no upsampling (one level) and no P6/P7: nothing to vary; every profile sets these (no) knobs
    p = _id_fpn([1])
    x = [_img([[1.0, 2.0], [3.0, 4.0]])]
    outs, _ = FP.fpn_forward(p, x, extra_blocks="none")
    cands = FP.fpn_explain(p, x, outs, extra_blocks="none")
    assert len(cands) == 1
    c = cands[0]
    assert c.settings == {} and c.match and c.errors == (0.0,)
    assert c.profiles == ("torchvision", "detectron2", "mmdet", "caffe", "paper")


def test_explain_p6p7_knobs_and_profiles_for_one_level():
    # one level with P6/P7 (C5 = 1 channel = F): only p6p7_input x relu_before_p7 = 3 * 2 candidates.
    # With the identity output conv and zero biases, c5, p5 and lateral are the same map here: the
    # ReLU decides. P6 weight -1 makes P6 < 0, so relu_before_p7 True gives P7 = bias.
    p = _id_fpn([1], "p6p7", (-np.ones((1, 1, 3, 3)), np.zeros(1)), (np.ones((1, 1, 3, 3)), np.full(1, 0.5)))
    x = [_img(np.arange(1.0, 26.0).reshape(5, 5))]
    theirs, _ = FP.fpn_forward(p, x, convention="mmdet")
    cands = FP.fpn_explain(p, x, theirs, rtol=0, atol=0)
    assert len(cands) == 6
    assert all(set(c.settings) == {"p6p7_input", "relu_before_p7"} for c in cands)
    matches = [c for c in cands if c.match]
    assert {c.settings["p6p7_input"] for c in matches} == {"c5", "p5", "lateral"}
    assert all(c.settings["relu_before_p7"] is False for c in matches)
    assert all(c.errors[:2] == (0.0, 0.0) and c.errors[2] > 0 for c in cands if not c.match)
    # profiles: C_in of P6 == F == 1, so torchvision's 'auto' reads P5; detectron2/caffe/paper read C5
    # with the ReLU (no match), mmdet reads C5 without it
    by = {(c.settings["p6p7_input"], c.settings["relu_before_p7"]): c.profiles for c in cands}
    assert by[("c5", False)] == ("mmdet",)
    assert by[("p5", True)] == ("torchvision",)
    assert by[("c5", True)] == ("detectron2", "caffe", "paper")
    assert by[("p5", False)] == () and by[("lateral", False)] == () and by[("lateral", True)] == ()
    # ranking: matches first; among equal errors the candidates some framework uses come first
    assert cands[0].settings == {"p6p7_input": "c5", "relu_before_p7": False}
    assert [c.match for c in cands] == [True] * 3 + [False] * 3
    assert cands[3].profiles != ()


def test_explain_ranks_by_the_worst_level_and_reports_shape_mismatch():
    p = _id_fpn([1, 1])
    x = [_img(np.zeros((4, 4))), _img([[1.0, 2.0], [3.0, 4.0]])]
    outs, _ = FP.fpn_forward(p, x, extra_blocks="none")
    # theirs: P4 off by 0.5 at one pixel -> every candidate misses; avg candidates miss more
    theirs = [outs[0].copy(), outs[1]]
    theirs[0][0, 0, 0, 0] += 0.5
    cands = FP.fpn_explain(p, x, theirs, extra_blocks="none", rtol=0, atol=0.1)
    assert not any(c.match for c in cands)
    worst = [max(c.errors) for c in cands]
    assert worst == sorted(worst) and worst[0] == 0.5
    assert cands[0].settings["fuse"] == "sum"
    # within atol every sum candidate matches
    ok = FP.fpn_explain(p, x, theirs, extra_blocks="none", rtol=0, atol=0.5)
    assert {c.settings["fuse"] for c in ok if c.match} == {"sum"}
    # rtol alone: |diff| <= rtol * |theirs| (theirs at that pixel 1.5: rtol 1/3 is enough, 0.3 is not)
    assert any(c.match for c in FP.fpn_explain(p, x, theirs, extra_blocks="none", rtol=1 / 3 + 1e-12, atol=0))
    assert not any(c.match for c in FP.fpn_explain(p, x, theirs, extra_blocks="none", rtol=0.3, atol=0))
    # a level of another shape: error inf, no match
    other = [np.zeros((1, 1, 3, 3)), outs[1]]
    c = FP.fpn_explain(p, x, other, extra_blocks="none")[0]
    assert c.errors[0] == math.inf and not c.match and c.errors[1] == 0.0
    # an empty batch: errors 0 and matches
    e = [np.zeros((0, 1, 4, 4)), np.zeros((0, 1, 2, 2))]
    eo, _ = FP.fpn_forward(p, e, extra_blocks="none")
    assert FP.fpn_explain(p, e, eo, extra_blocks="none")[0].errors == (0.0, 0.0)


def test_explain_skips_infeasible_p6_sources():
    # C5 has 3 channels, F = 2: P6 can only read C5 (p5 / lateral have 2 channels); 8 x 2 kept
    p, f = _setup()
    outs, _ = FP.fpn_forward(p, f)
    cands = FP.fpn_explain(p, f, outs)
    assert {c.settings["p6p7_input"] for c in cands} == {"c5"}
    assert len(cands) == 2 * 2 * 2 * 2
    best = [c for c in cands if c.match]
    assert {"torchvision", "mmdet"} <= set(best[0].profiles) | set(best[1].profiles if len(best) > 1 else ())
    # float32 outputs compared in float64
    cands32 = FP.fpn_explain(p, f, [o.astype(np.float32) for o in outs])
    assert any(c.match for c in cands32)


def test_explain_default_tolerances():
    # rtol 1e-5, atol 1e-6: at |theirs| = 0.05 a level matches within 1e-6 + 5e-7 = 1.5e-6
    p = _id_fpn([1])
    x = [_img([[0.05]])]
    outs, _ = FP.fpn_forward(p, x, extra_blocks="none")
    assert FP.fpn_explain(p, x, [outs[0] + 1.2e-6], extra_blocks="none")[0].match
    assert not FP.fpn_explain(p, x, [outs[0] + 1.8e-6], extra_blocks="none")[0].match
    assert not FP.fpn_explain(p, x, [outs[0] + 1.8e-6], extra_blocks="none", rtol=1e-5)[0].match
    assert FP.fpn_explain(p, x, [outs[0] + 1.8e-6], extra_blocks="none", atol=2e-6)[0].match


def test_explain_counts_an_array_of_features_as_one_map():
    # `features` given as one array is counted as one map when sizing `outputs` (then refused by
    # fpn_forward, which wants a list): the count check does not read the batch size as a level count
    p = _id_fpn([1])
    x = np.zeros((2, 1, 2, 2))
    with pytest.raises(TypeError, match=r"^`features` must be a list of \(B, C_i, H_i, W_i\) maps"):
        FP.fpn_explain(p, x, [np.zeros((2, 1, 2, 2))], extra_blocks="none")
    with pytest.raises(ValueError, match=r"^`outputs` must have 1 levels \(1 maps of `features` \+ 0 extra"):
        FP.fpn_explain(p, x, [np.zeros((2, 1, 2, 2))] * 2, extra_blocks="none")
