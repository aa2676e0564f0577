"""Tests for refdet.fpn: goldens (TV16 through a whole FPN), conventions, gradient checks, and
differential tests against torchvision.ops.FeaturePyramidNetwork (weights copied in, autograd)."""
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refdet
from refdet import conventions
from refdet import fpn as FP
from refdet.testing import check_gradients
from refdet.testing import strategies as rst

# float64 on both sides, different summation order: ~1e-12 relative agreement
F64 = dict(rtol=1e-10, atol=1e-12)


def _identity_fpn(channels_list, extra=None, p6=None, p7=None):
    """F = 1: 1x1 laterals with weight 1 (copy), 3x3 output convs with only the centre tap = 1
    (identity), zero biases; so P_i = M_i and the top-down merge is visible directly."""
    p = {}
    for i, c in enumerate(channels_list):
        p[f"inner_blocks.{i}.0.weight"] = np.ones((1, c, 1, 1))
        p[f"inner_blocks.{i}.0.bias"] = np.zeros(1)
    for i in range(len(channels_list)):
        w = np.zeros((1, 1, 3, 3))
        w[0, 0, 1, 1] = 1.0
        p[f"layer_blocks.{i}.0.weight"] = w
        p[f"layer_blocks.{i}.0.bias"] = np.zeros(1)
    if extra == "p6p7":
        p["extra_blocks.p6.weight"], p["extra_blocks.p6.bias"] = p6
        p["extra_blocks.p7.weight"], p["extra_blocks.p7.bias"] = p7
    return p


def _img(a):
    return np.asarray(a, dtype=np.float64)[None, None]


# ---------------------------------------------------------------------------------------------------
# goldens
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,expected", [
    # TV16: x = arange(9).view(3, 3) -> 5 x 5. PyTorch "nearest": src = floor(dst * 3 / 5) -> rows/cols
    # [0, 0, 1, 1, 2];  "nearest-exact": floor((dst + 0.5) * 3 / 5) -> [0, 0, 1, 2, 2].
    ("nearest", [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5], [3, 3, 4, 4, 5], [6, 6, 7, 7, 8]]),
    ("nearest-exact", [[0, 0, 1, 2, 2], [0, 0, 1, 2, 2], [3, 3, 4, 5, 5], [6, 6, 7, 8, 8], [6, 6, 7, 8, 8]]),
])
def test_tv16_top_down_upsampling_to_lateral_size(mode, expected):
    # C4 = zeros 5x5, C5 = arange(9) 3x3; identity weights: P4 = 0 + upsample(C5) = TV16, P5 = C5
    p = _identity_fpn([1, 1])
    outs, _ = FP.fpn_forward(p, [_img(np.zeros((5, 5))), _img(np.arange(9).reshape(3, 3))],
                             extra_blocks="none", upsample_mode=mode)
    np.testing.assert_array_equal(outs[0][0, 0], expected)
    np.testing.assert_array_equal(outs[1][0, 0], np.arange(9).reshape(3, 3))
    assert len(outs) == 2


def test_tv16_maxpool_extra_level():
    # TV16: max_pool2d(k=1, s=2) of a 5x5 arange(25) keeps every second pixel:
    # rows/cols 0, 2, 4 -> [[0, 2, 4], [10, 12, 14], [20, 22, 24]]
    p = _identity_fpn([1])
    outs, _ = FP.fpn_forward(p, [_img(np.arange(25).reshape(5, 5))], extra_blocks="maxpool")
    np.testing.assert_array_equal(outs[1][0, 0], [[0, 2, 4], [10, 12, 14], [20, 22, 24]])


# P6 = conv3x3/s2/p1 with an all-ones kernel on C5 = arange(25) 5x5 -> 3x3 (floor((5-1)/2)+1 = 3):
# output (i, j) sums the 3x3 window centred on (2i, 2j), clipped to the map:
#   (0,0): 0+1+5+6 = 12            (0,1): 1+2+3+6+7+8 = 27             (0,2): 3+4+8+9 = 24
#   (1,0): 5+6+10+11+15+16 = 63    (1,1): 6+7+8+11+12+13+16+17+18 = 108 (1,2): 8+9+13+14+18+19 = 81
#   (2,0): 15+16+20+21 = 72        (2,1): 16+17+18+21+22+23 = 117       (2,2): 18+19+23+24 = 84
P6_ONES = [[12, 27, 24], [63, 108, 81], [72, 117, 84]]
# P7 = the same conv on P6 (3x3 -> 2x2), windows centred on (0,0), (0,2), (2,0), (2,2):
#   12+27+63+108 = 210, 27+24+108+81 = 240, 63+108+72+117 = 360, 108+81+117+84 = 390
P7_ONES = [[210, 240], [360, 390]]


def test_p6p7_golden_from_c5():
    ones = (np.ones((1, 1, 3, 3)), np.zeros(1))
    p = _identity_fpn([1], "p6p7", ones, ones)
    outs, _ = FP.fpn_forward(p, [_img(np.arange(25).reshape(5, 5))], p6p7_input="c5")
    assert [o.shape[-2:] for o in outs] == [(5, 5), (3, 3), (2, 2)]
    np.testing.assert_array_equal(outs[1][0, 0], P6_ONES)
    np.testing.assert_array_equal(outs[2][0, 0], P7_ONES)   # P6 > 0, so the ReLU changes nothing


def test_relu_before_p7_torchvision_vs_mmdet():
    # p6 weight -1: P6 = -P6_ONES < 0 everywhere. With the ReLU (torchvision, detectron2, paper)
    # P7 = conv(0) = bias 0.5; without it (mmdet relu_before_extra_convs=False) P7 = -P7_ONES + 0.5.
    p = _identity_fpn([1], "p6p7", (-np.ones((1, 1, 3, 3)), np.zeros(1)), (np.ones((1, 1, 3, 3)), np.full(1, 0.5)))
    x = [_img(np.arange(25).reshape(5, 5))]
    tv, _ = FP.fpn_forward(p, x, convention="torchvision")
    mm, _ = FP.fpn_forward(p, x, convention="mmdet")
    np.testing.assert_array_equal(tv[1][0, 0], -np.array(P6_ONES, float))
    np.testing.assert_array_equal(tv[2][0, 0], np.full((2, 2), 0.5))
    np.testing.assert_array_equal(mm[2][0, 0], -np.array(P7_ONES, float) + 0.5)
    np.testing.assert_array_equal(FP.fpn_forward(p, x, relu_before_p7=False)[0][2], mm[2])


def test_p6p7_input_auto_is_torchvision_use_p5_rule():
    # Lateral bias 100 makes P5 = C5 + 100 != C5. The p6 weight has 1 input channel = F, so torchvision
    # (use_P5 = in_channels == out_channels) reads P5: P6 = P6_ONES + 100 * (taps inside the map).
    ones = (np.ones((1, 1, 3, 3)), np.zeros(1))
    p = _identity_fpn([1], "p6p7", ones, ones)
    p["inner_blocks.0.0.bias"] = np.array([100.0])
    x = [_img(np.arange(25).reshape(5, 5))]
    auto, cache = FP.fpn_forward(p, x)
    assert cache.settings["p6p7_input"] == "p5"
    taps = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]])   # window sizes of the 3x3/s2/p1 conv on 5x5
    np.testing.assert_array_equal(auto[1][0, 0], np.array(P6_ONES) + 100 * taps)
    c5, _ = FP.fpn_forward(p, x, p6p7_input="c5")
    np.testing.assert_array_equal(c5[1][0, 0], P6_ONES)
    lat, _ = FP.fpn_forward(p, x, p6p7_input="lateral")       # identity output conv: lateral == P5
    np.testing.assert_array_equal(lat[1], auto[1])


def test_fuse_avg_and_x2_golden():
    # C5 = [[0, 4], [8, 12]], C4 = 2 everywhere (4x4). x2 nearest upsampling repeats each pixel 2x2;
    # detectron2 fuse_type="avg": M4 = (2 + up) / 2 -> [[1,1,3,3],[1,1,3,3],[5,5,7,7],[5,5,7,7]].
    p = _identity_fpn([1, 1])
    x = [_img(np.full((4, 4), 2.0)), _img([[0, 4], [8, 12]])]
    outs, _ = FP.fpn_forward(p, x, extra_blocks="none", convention="detectron2", fuse="avg")
    np.testing.assert_array_equal(outs[0][0, 0], [[1, 1, 3, 3], [1, 1, 3, 3], [5, 5, 7, 7], [5, 5, 7, 7]])
    np.testing.assert_array_equal(outs[1][0, 0], [[0, 4], [8, 12]])   # the top level is not averaged
    s, _ = FP.fpn_forward(p, x, extra_blocks="none", convention="detectron2")
    np.testing.assert_array_equal(s[0][0, 0], [[2, 2, 6, 6], [2, 2, 6, 6], [10, 10, 14, 14], [10, 10, 14, 14]])


def test_x2_upsampling_rejects_odd_sizes():
    # detectron2 (scale_factor=2) cannot add a 6x6 upsampled map to a 5x5 lateral; torchvision can.
    p = _identity_fpn([1, 1])
    x = [_img(np.zeros((5, 5))), _img(np.arange(9).reshape(3, 3))]
    with pytest.raises(ValueError, match="upsample='x2' needs every map twice the size"):
        FP.fpn_forward(p, x, extra_blocks="none", convention="detectron2")
    FP.fpn_forward(p, x, extra_blocks="none")   # torchvision: interpolates to 5x5


# ---------------------------------------------------------------------------------------------------
# init and conventions
# ---------------------------------------------------------------------------------------------------

def test_init_keys_and_p6_channels():
    p = FP.fpn_init([4, 6, 8], 5, rng=0)
    assert p["extra_blocks.p6.weight"].shape == (5, 8, 3, 3)   # from C5 (8 channels)
    assert p["inner_blocks.2.0.weight"].shape == (5, 8, 1, 1) and p["layer_blocks.0.0.weight"].shape == (5, 5, 3, 3)
    assert FP.fpn_init([4, 6, 8], 5, rng=0, p6p7_input="p5")["extra_blocks.p6.weight"].shape == (5, 5, 3, 3)
    assert not any(k.startswith("extra") for k in FP.fpn_init([4, 8], 5, rng=0, extra_blocks="maxpool"))
    assert not any(k.startswith("extra") for k in FP.fpn_init([4, 8], 5, rng=0, extra_blocks="none"))
    for k, v in p.items():
        if k.endswith("bias"):
            np.testing.assert_array_equal(v, 0.0)


def test_init_bounds_per_convention():
    # torchvision kaiming_uniform_(a=1) = detectron2 c2_xavier_fill: U(+-sqrt(3 / fan_in));
    # lateral 1x1 with C = 64: fan_in = 64 -> bound sqrt(3/64) = 0.2165. 64*64 = 4096 draws: the largest
    # |w| is within 1% of the bound with probability 1 - 0.99**4096.
    for conv in ("torchvision", "detectron2"):
        w = FP.fpn_init([64], 64, rng=0, convention=conv, extra_blocks="none")["inner_blocks.0.0.weight"]
        b = math.sqrt(3 / 64)
        assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
    # mmdet Xavier uniform: U(+-sqrt(6 / (fan_in + fan_out))) = sqrt(6/128) for the 1x1 lateral
    w = FP.fpn_init([64], 64, rng=0, convention="mmdet", extra_blocks="none")["inner_blocks.0.0.weight"]
    b = math.sqrt(6 / 128)
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.99 * b
    # 3x3 output conv: fan_in = 64 * 9
    w = FP.fpn_init([64], 64, rng=0, extra_blocks="none")["layer_blocks.0.0.weight"]
    assert np.abs(w).max() <= math.sqrt(3 / 576)
    a, b2 = FP.fpn_init([3, 4], 2, rng=5), FP.fpn_init([3, 4], 2, rng=5)
    assert all(np.array_equal(a[k], b2[k]) for k in a)


def test_convention_tables():
    t = conventions.describe("fpn_forward")
    assert t["torchvision"]["upsample"] == "to_lateral" and t["detectron2"]["upsample"] == "x2"
    assert t["mmdet"]["relu_before_p7"] is False and t["torchvision"]["relu_before_p7"] is True
    assert t["torchvision"]["p6p7_input"] == "auto" and t["paper"]["p6p7_input"] == "c5"
    assert conventions.describe("fpn_init")["mmdet"]["init"] == "xavier_uniform"
    assert "fpn_forward" in str(t)


# ---------------------------------------------------------------------------------------------------
# gradient checks
# ---------------------------------------------------------------------------------------------------

def _rand_setup(seed, channels=(2, 3, 2), sizes=((7, 5), (4, 3), (2, 2)), f=2, extra="p6p7", p6p7_input="c5",
                batch=2):
    rng = np.random.default_rng(seed)
    p = FP.fpn_init(list(channels), f, rng=rng, extra_blocks=extra, p6p7_input=p6p7_input)
    p = {k: v + 0.2 * rng.standard_normal(v.shape) for k, v in p.items()}   # non-zero biases too
    feats = [rng.standard_normal((batch, c, h, w)) for c, (h, w) in zip(channels, sizes)]
    return p, feats


@pytest.mark.parametrize("extra,kw", [
    ("p6p7", {"p6p7_input": "c5"}),
    ("p6p7", {"p6p7_input": "p5", "relu_before_p7": False}),
    ("p6p7", {"p6p7_input": "lateral", "fuse": "avg", "upsample_mode": "nearest-exact"}),
    ("maxpool", {}),
    ("none", {"fuse": "avg"}),
])
def test_fpn_gradients(extra, kw):
    src = kw.get("p6p7_input", "c5")
    p, feats = _rand_setup(1, extra=extra, p6p7_input=src)
    check_gradients(FP.fpn_forward, FP.fpn_backward, (p, feats), kwargs=dict(extra_blocks=extra, **kw),
                    rtol=1e-5, atol=1e-7, max_elements=25, rng=0)


def test_fpn_gradients_x2_detectron2():
    p, feats = _rand_setup(2, sizes=((8, 4), (4, 2), (2, 1)))
    check_gradients(FP.fpn_forward, FP.fpn_backward, (p, feats),
                    kwargs=dict(convention="detectron2", fuse="avg"), rtol=1e-5, atol=1e-7, max_elements=25, rng=0)


def test_backward_none_entries_are_zero():
    p, feats = _rand_setup(3)
    outs, cache = FP.fpn_forward(p, feats)
    rng = np.random.default_rng(0)
    g = [rng.standard_normal(o.shape) for o in outs]
    g_none = list(g)
    g_none[3] = None
    g_zero = list(g)
    g_zero[3] = np.zeros(outs[3].shape)
    a, b = FP.fpn_backward(g_none, cache), FP.fpn_backward(g_zero, cache)
    assert all(np.array_equal(a[0][k], b[0][k]) for k in a[0])
    assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))


# ---------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------

def test_errors():
    p, feats = _rand_setup(4)
    with pytest.raises(ValueError, match="has no 'extra_blocks.p6.weight'"):
        FP.fpn_forward(FP.fpn_init([2, 3, 2], 2, rng=0, extra_blocks="maxpool"), feats)
    with pytest.raises(ValueError, match="has P6/P7 weights but extra_blocks='maxpool'"):
        FP.fpn_forward(p, feats, extra_blocks="maxpool")
    with pytest.raises(ValueError, match=r"`params\['inner_blocks.0.0.weight'\]` must have shape \(2, 3, 1, 1\)"):
        FP.fpn_forward(p, [np.zeros((2, 3, 7, 5))] + feats[1:])
    with pytest.raises(ValueError, match="an FPN with 3 levels .* but `features` has 2 maps"):
        FP.fpn_forward(p, feats[1:])   # params for three levels, two maps given
    with pytest.raises(ValueError, match="p6p7_input='p5' has 2 channels"):
        FP.fpn_forward(FP.fpn_init([2, 3], 2, rng=0, p6p7_input="c5"), feats[:1] + [np.zeros((2, 3, 4, 3))],
                       p6p7_input="p5")
    with pytest.raises(TypeError, match="`features` must be a list"):
        FP.fpn_forward(p, feats[0])
    with pytest.raises(ValueError, match="`extra_blocks` must be one of"):
        FP.fpn_init([2], 2, extra_blocks="p6")
    with pytest.raises(ValueError, match="`convention`"):
        FP.fpn_forward(p, feats, convention="keras")
    with pytest.raises(ValueError, match="`upsample_mode` must be one of"):
        FP.fpn_forward(p, feats, upsample_mode="bilinear")
    outs, cache = FP.fpn_forward(p, feats)
    with pytest.raises(ValueError, match="`doutputs` must be a list of 5 arrays"):
        FP.fpn_backward(outs[:4], cache)
    with pytest.raises(ValueError, match=r"`doutputs\[1\]` must have the output's shape"):
        FP.fpn_backward([outs[0], outs[0]] + outs[2:], cache)


def test_float32_stays_float32():
    p, feats = _rand_setup(5)
    outs, cache = FP.fpn_forward(p, [f.astype(np.float32) for f in feats])
    assert all(o.dtype == np.float32 for o in outs)
    dp, df = FP.fpn_backward([np.ones_like(o) for o in outs], cache)
    assert all(d.dtype == np.float32 for d in df) and dp["layer_blocks.0.0.weight"].dtype == np.float32


def test_exported_from_refdet():
    # the top level keeps the ops users call; cache/gradient types and constants stay in the module
    for name in FP.__all__:
        if name.endswith(("Cache", "Grads", "Candidate")) or name.isupper():
            assert not hasattr(refdet, name), name
            continue
        assert getattr(refdet, name) is getattr(FP, name)


# ---------------------------------------------------------------------------------------------------
# differential: torchvision.ops.FeaturePyramidNetwork (forward + autograd backward)
# ---------------------------------------------------------------------------------------------------

from tests._torchutil import _state, _torch  # noqa: E402


def _compare_with_autograd(torch, module_or_fn, params, feats, kwargs, named_params, rng):
    tf = [torch.tensor(f, requires_grad=True) for f in feats]
    t_out = module_or_fn(tf)
    outs, cache = FP.fpn_forward(params, feats, **kwargs)
    assert len(outs) == len(t_out)
    for a, b in zip(outs, t_out):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.detach().numpy(), **F64)
    g = [rng.standard_normal(o.shape) for o in outs]
    torch.autograd.backward(list(t_out), [torch.tensor(x) for x in g])
    dp, df = FP.fpn_backward(g, cache)
    for a, t in zip(df, tf):
        np.testing.assert_allclose(a, t.grad.numpy(), **F64)
    for k, p in named_params:
        np.testing.assert_allclose(dp[k], p.grad.numpy(), **F64)


_level_sizes = rst.pyramid_sizes(max_levels=3, max_side=13)


@pytest.mark.parametrize("extra", ["p6p7_c5", "p6p7_p5", "maxpool", "none"])
@settings(max_examples=6)
@given(sizes=_level_sizes, seed=st.integers(0, 2 ** 16))
def test_fpn_matches_torchvision(extra, sizes, seed):
    torch = _torch()
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    # any sizes: torchvision interpolates to each lateral's size (13x9 over 7x5, or even upwards)
    channels = [3, 4, 6][:len(sizes)]
    f = 5
    if extra == "p6p7_c5":
        eb, kw = LastLevelP6P7(channels[-1], f), {}
    elif extra == "p6p7_p5":
        eb, kw = LastLevelP6P7(f, f), {}          # torchvision v1: in == out -> use_P5
    elif extra == "maxpool":
        eb, kw = LastLevelMaxPool(), {"extra_blocks": "maxpool"}
    else:
        eb, kw = None, {"extra_blocks": "none"}
    m = FeaturePyramidNetwork(channels, f, extra_blocks=eb).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():   # non-zero biases so that every bias gradient is exercised
        for prm in m.parameters():
            prm.add_(torch.randn(prm.shape, generator=g, dtype=prm.dtype) * 0.1)
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((2, c, h, w)) for c, (h, w) in zip(channels, sizes)]

    def run(tf):
        return list(m(OrderedDict((f"c{i}", t) for i, t in enumerate(tf))).values())

    _compare_with_autograd(torch, run, _state(m), feats, kw, list(m.named_parameters()), rng)


def test_fpn_state_dict_keys_match_torchvision():
    _torch()
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    for eb, ours in ((LastLevelP6P7(8, 5), FP.fpn_init([4, 6, 8], 5, rng=0)),
                     (LastLevelP6P7(5, 5), FP.fpn_init([4, 6, 8], 5, rng=0, p6p7_input="p5")),
                     (None, FP.fpn_init([4, 6, 8], 5, rng=0, extra_blocks="none"))):
        tv = {k: tuple(v.shape) for k, v in FeaturePyramidNetwork([4, 6, 8], 5, extra_blocks=eb).state_dict().items()}
        assert {k: v.shape for k, v in ours.items()} == tv


def test_fpn_float32_matches_torchvision():
    torch = _torch()
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    m = FeaturePyramidNetwork([8, 16], 8, extra_blocks=LastLevelP6P7(16, 8))
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal(s).astype(np.float32) for s in ((1, 8, 13, 9), (1, 16, 7, 5))]
    t = list(m(OrderedDict((str(i), torch.tensor(x)) for i, x in enumerate(feats))).values())
    outs, _ = FP.fpn_forward(_state(m), feats)
    for a, b in zip(outs, t):
        b = b.detach().numpy()
        assert a.dtype == np.float32
        # float32 sums of <= 16*9 products in a different order: a few ulps of the output scale
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max())


def _torch_fpn(torch, params, feats, *, upsample, mode, fuse, extra, src, relu):
    """An independent torch.nn.functional FPN with every refdet knob (for conventions torchvision has
    no module for: detectron2's scale_factor=2 and avg fuse, mmdet's on_lateral / no-ReLU P7)."""
    import torch.nn.functional as F

    L = len(feats)
    m = F.conv2d(feats[-1], params[f"inner_blocks.{L - 1}.0.weight"], params[f"inner_blocks.{L - 1}.0.bias"])
    top = m
    outs = [F.conv2d(m, params[f"layer_blocks.{L - 1}.0.weight"], params[f"layer_blocks.{L - 1}.0.bias"], padding=1)]
    for i in range(L - 2, -1, -1):
        lat = F.conv2d(feats[i], params[f"inner_blocks.{i}.0.weight"], params[f"inner_blocks.{i}.0.bias"])
        if upsample == "to_lateral":
            td = F.interpolate(m, size=lat.shape[-2:], mode=mode)
        else:
            td = F.interpolate(m, scale_factor=2.0, mode=mode)
        m = lat + td
        if fuse == "avg":
            m = m / 2
        outs.insert(0, F.conv2d(m, params[f"layer_blocks.{i}.0.weight"], params[f"layer_blocks.{i}.0.bias"], padding=1))
    if extra == "maxpool":
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
    elif extra == "p6p7":
        x = {"c5": feats[-1], "p5": outs[L - 1], "lateral": top}[src]
        p6 = F.conv2d(x, params["extra_blocks.p6.weight"], params["extra_blocks.p6.bias"], stride=2, padding=1)
        p7 = F.conv2d(F.relu(p6) if relu else p6, params["extra_blocks.p7.weight"], params["extra_blocks.p7.bias"],
                      stride=2, padding=1)
        outs += [p6, p7]
    return outs


@settings(max_examples=15)
@given(convention=st.sampled_from(["torchvision", "detectron2", "mmdet", "paper"]),
       fuse=st.sampled_from(["sum", "avg"]), mode=st.sampled_from(["nearest", "nearest-exact"]),
       extra=st.sampled_from(["p6p7", "maxpool", "none"]), src=st.sampled_from(["c5", "p5", "lateral"]),
       relu=st.booleans(), sizes=rst.pyramid_sizes(max_levels=3, max_side=16, divisible=True),
       seed=st.integers(0, 2 ** 16))
def test_fpn_knobs_match_torch_functional(convention, fuse, mode, extra, src, relu, sizes, seed):
    torch = _torch()
    # sizes halve exactly level to level, so that 'x2' (detectron2/paper) is valid as well
    channels = [2, 3, 4][:len(sizes)]
    rng = np.random.default_rng(seed)
    params = FP.fpn_init(channels, 3, rng=rng, extra_blocks=extra, p6p7_input=src)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    feats = [rng.standard_normal((1, c, h, w)) for c, (h, w) in zip(channels, sizes)]
    kw = dict(extra_blocks=extra, convention=convention, fuse=fuse, upsample_mode=mode, p6p7_input=src,
              relu_before_p7=relu)
    up = conventions.describe("fpn_forward")[convention]["upsample"]
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}

    def run(tf):
        return _torch_fpn(torch, tparams, tf, upsample=up, mode=mode, fuse=fuse, extra=extra, src=src, relu=relu)

    _compare_with_autograd(torch, run, params, feats, kw, list(tparams.items()), rng)


def test_torch_functional_reference_agrees_with_torchvision_module():
    # the hand-written torch reference above is itself held equal to torchvision's module
    torch = _torch()
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    m = FeaturePyramidNetwork([3, 4], 5, extra_blocks=LastLevelP6P7(4, 5)).double()
    rng = np.random.default_rng(0)
    feats = [torch.tensor(rng.standard_normal((1, 3, 9, 7))), torch.tensor(rng.standard_normal((1, 4, 5, 4)))]
    ref = _torch_fpn(torch, dict(m.state_dict()), feats, upsample="to_lateral", mode="nearest", fuse="sum",
                     extra="p6p7", src="c5", relu=True)
    tv = list(m(OrderedDict((str(i), t) for i, t in enumerate(feats))).values())
    for a, b in zip(ref, tv):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_empty_batch_and_float16():
    p = FP.fpn_init([2, 3], 4, rng=0)
    outs, cache = FP.fpn_forward(p, [np.zeros((0, 2, 5, 5)), np.zeros((0, 3, 3, 3))])
    assert [o.shape for o in outs] == [(0, 4, 5, 5), (0, 4, 3, 3), (0, 4, 2, 2), (0, 4, 1, 1)]
    dp, df = FP.fpn_backward(outs, cache)
    assert [d.shape for d in df] == [(0, 2, 5, 5), (0, 3, 3, 3)]
    assert not any(v.any() for v in dp.values())   # no samples, no gradient
    # float16 is computed in float32; 1x1 maps (P6 of a 1x1 map is 1x1)
    outs, _ = FP.fpn_forward(p, [np.ones((1, 2, 1, 1), np.float16), np.ones((1, 3, 1, 1), np.float16)])
    assert all(o.dtype == np.float32 and o.shape == (1, 4, 1, 1) for o in outs)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_torchvision_retinanet_builders_fpn_and_head(version):
    # The stock torchvision RetinaNet (no weights): v1 = LastLevelP6P7(256, 256) -> P6 from P5,
    # v2 = LastLevelP6P7(2048, 256) -> P6 from C5 and GroupNorm(32) head towers. Copy the FPN and the
    # head into refdet, run C3..C5 of ResNet-50 widths (512, 1024, 2048), compare in float64.
    torch = _torch()
    from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2

    torch.manual_seed(0)
    build = retinanet_resnet50_fpn if version == "v1" else retinanet_resnet50_fpn_v2
    model = build(weights=None, weights_backbone=None, num_classes=5).double().eval()
    fpn_mod, head = model.backbone.fpn, model.head
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((1, c, h, w)) for c, (h, w) in zip([512, 1024, 2048], [(9, 7), (5, 4), (3, 2)])]
    with torch.no_grad():
        t_outs = list(fpn_mod(OrderedDict((str(i), torch.tensor(f)) for i, f in enumerate(feats))).values())
        t_head = head([o for o in t_outs])
    outs, cache = FP.fpn_forward(_state(fpn_mod), feats)
    assert cache.settings["p6p7_input"] == ("p5" if version == "v1" else "c5")
    for a, b in zip(outs, t_outs):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-9, atol=1e-11)
    h_out, _ = refdet.retinanet_head_forward(_state(head), outs)
    A = 9
    np.testing.assert_allclose(refdet.flatten_head_output(h_out.cls_logits, A), t_head["cls_logits"].numpy(),
                               rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(refdet.flatten_head_output(h_out.bbox_deltas, A), t_head["bbox_regression"].numpy(),
                               rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------------------------------
# fpn_explain: naming the knob behind a mismatch
# ---------------------------------------------------------------------------------------------------

def test_explain_names_mmdet_missing_relu():
    # C5 has 4 channels != F = 2, so torchvision's rule also reads C5 (as mmdet on_input does)
    p, feats = _rand_setup(7, channels=(2, 3, 4), sizes=((8, 6), (4, 3), (2, 2)))
    theirs, _ = FP.fpn_forward(p, feats, convention="mmdet")
    cands = FP.fpn_explain(p, feats, theirs)
    best = cands[0]
    assert best.match and best.profiles == ("mmdet",) and best.settings["relu_before_p7"] is False
    assert all(c.settings["relu_before_p7"] is False for c in cands if c.match)
    # the torchvision candidate agrees on P3..P6 and differs only on P7
    tv = next(c for c in cands if "torchvision" in c.profiles)
    assert not tv.match and tv.errors[:4] == (0.0, 0.0, 0.0, 0.0) and tv.errors[4] > 0
    # 4x3 -> 2x2 does not halve: no 'x2' candidate is feasible
    assert all(c.settings["upsample"] == "to_lateral" for c in cands)


def test_explain_detectron2_avg_fuse():
    p, feats = _rand_setup(8, sizes=((8, 4), (4, 2), (2, 1)), extra="maxpool")
    theirs, _ = FP.fpn_forward(p, feats, extra_blocks="maxpool", convention="detectron2", fuse="avg")
    matches = [c for c in FP.fpn_explain(p, feats, theirs, extra_blocks="maxpool") if c.match]
    assert {c.settings["fuse"] for c in matches} == {"avg"}
    # when every map halves exactly, interpolating to the lateral size and x2 are the same thing
    assert {c.settings["upsample"] for c in matches} == {"to_lateral", "x2"}
    # and for an exact factor 2, floor(dst / 2) == floor((dst + 0.5) / 2): nearest == nearest-exact
    assert {c.settings["upsample_mode"] for c in matches} == {"nearest", "nearest-exact"}
    assert any("detectron2" in c.profiles for c in FP.fpn_explain(p, feats, theirs, extra_blocks="maxpool")
               if c.settings["fuse"] == "sum")


def test_explain_reports_no_match_for_other_outputs():
    p, feats = _rand_setup(9)
    theirs, _ = FP.fpn_forward(p, feats)
    theirs = [o.copy() for o in theirs]
    theirs[0][0, 0, 0, 0] += 1.0
    cands = FP.fpn_explain(p, feats, theirs, rtol=1e-9, atol=1e-9)
    assert not any(c.match for c in cands)
    assert cands[0].errors[0] == pytest.approx(1.0) and max(cands[0].errors[1:]) == 0.0
    with pytest.raises(ValueError, match="`outputs` must have 5 levels"):
        FP.fpn_explain(p, feats, theirs[:3])


def test_explain_torchvision_float32_module():
    torch = _torch()
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    m = FeaturePyramidNetwork([4, 8], 8, extra_blocks=LastLevelP6P7(8, 8))   # in == out: P6 from P5
    rng = np.random.default_rng(1)
    feats = [rng.standard_normal(s).astype(np.float32) for s in ((1, 4, 13, 9), (1, 8, 7, 5))]
    with torch.no_grad():
        theirs = [t.numpy() for t in m(OrderedDict((str(i), torch.tensor(x)) for i, x in enumerate(feats))).values()]
    matches = [c for c in FP.fpn_explain(_state(m), feats, theirs) if c.match]
    assert matches and all(c.settings["p6p7_input"] == "p5" for c in matches)
    assert any("torchvision" in c.profiles for c in matches)
    # 13x9 over 7x5 is no exact factor: nearest-exact would pick other source rows
    assert all(c.settings["upsample_mode"] == "nearest" for c in matches)


@settings(max_examples=15)
@given(sizes=rst.pyramid_sizes(max_levels=3, max_side=9), batch=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_fpn_samples_are_independent_and_backward_is_linear(sizes, batch, seed):
    rng = np.random.default_rng(seed)
    channels = [2, 3, 4][:len(sizes)]
    p = FP.fpn_init(channels, 2, rng=rng)
    feats = [rng.standard_normal((batch, c, h, w)) for c, (h, w) in zip(channels, sizes)]
    outs, cache = FP.fpn_forward(p, feats)
    for b in range(batch):
        ob, _ = FP.fpn_forward(p, [f[b:b + 1] for f in feats])
        for x, y in zip(ob, outs):
            np.testing.assert_allclose(x[0], y[b], rtol=1e-12, atol=1e-12)
    # the backward is linear in the upstream gradient: g(2u + v) = 2 g(u) + g(v)
    u = [rng.standard_normal(o.shape) for o in outs]
    v = [rng.standard_normal(o.shape) for o in outs]
    gu, gv = FP.fpn_backward(u, cache), FP.fpn_backward(v, cache)
    g = FP.fpn_backward([2 * a + b for a, b in zip(u, v)], cache)
    for k in g[0]:
        np.testing.assert_allclose(g[0][k], 2 * gu[0][k] + gv[0][k], rtol=1e-10, atol=1e-10)
    for a, b, c in zip(g[1], gu[1], gv[1]):
        np.testing.assert_allclose(a, 2 * b + c, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------
# memory layout: C, Fortran, strided, reversed and read-only inputs give the same bits
# ---------------------------------------------------------------------------------------------------

from tests import _layouts  # noqa: E402
from tests.contract import fpn as _contract  # noqa: E402


@pytest.mark.parametrize("case", _contract.CASES, ids=lambda c: c.name)
def test_bits_do_not_depend_on_memory_layout(case):
    _layouts.assert_layout_independent(getattr(FP, case.name), case.make)


def test_bits_do_not_depend_on_memory_layout_at_a_larger_size():
    def fwd(rng):
        feats = [rng.standard_normal((2, c, h, w)) for c, (h, w) in zip((8, 16, 32), ((24, 20), (12, 10), (6, 5)))]
        return (FP.fpn_init([8, 16, 32], 16, rng=1), feats), {"convention": "detectron2", "fuse": "avg"}

    def bwd(rng):
        args, kw = fwd(rng)
        outs, cache = FP.fpn_forward(*args, **kw)
        return ([rng.standard_normal(o.shape) for o in outs], cache), {}

    _layouts.assert_layout_independent(FP.fpn_forward, fwd)
    _layouts.assert_layout_independent(FP.fpn_backward, bwd)
