"""refdet.heads.retinanet: the branches mutation testing found unpinned (issue 19).

The initialiser's draws, prior bias and allocation cap worked by hand, a GroupNorm tower worked by
hand (num_groups and eps reach the layer), the per-subnet layout rules (GroupNorm with or without a
conv bias), and every validation message.
"""
import math

import numpy as np
import pytest

from refdet import heads as H

CLS, BOX = "classification_head", "regression_head"


def test_init_draws_in_key_order_and_the_prior_bias():
    # classification tower convs, cls_logits, then the regression tower and bbox_reg: each
    # standard_normal * 0.01 from one Generator; cls bias -log((1 - pi) / pi) = -log(4) for pi = 0.2
    p = H.retinanet_head_init(2, 1, 3, rng=9, num_convs=2, prior_probability=0.2)
    rng = np.random.default_rng(9)
    order = [f"{CLS}.conv.0.0", f"{CLS}.conv.1.0", f"{CLS}.cls_logits", f"{BOX}.conv.0.0", f"{BOX}.conv.1.0",
             f"{BOX}.bbox_reg"]
    shapes = [(2, 2, 3, 3), (2, 2, 3, 3), (3, 2, 3, 3), (2, 2, 3, 3), (2, 2, 3, 3), (4, 2, 3, 3)]
    assert list(p) == [f"{k}.{s}" for k in order for s in ("weight", "bias")]
    for key, shape in zip(order, shapes):
        np.testing.assert_array_equal(p[f"{key}.weight"], rng.standard_normal(shape) * 0.01)
    np.testing.assert_allclose(p[f"{CLS}.cls_logits.bias"], np.full(3, -math.log(4.0)), rtol=0, atol=1e-15)
    for key in order:
        if key != f"{CLS}.cls_logits":
            np.testing.assert_array_equal(p[f"{key}.bias"], np.zeros(p[f"{key}.bias"].shape))


def test_init_group_norm_keys_and_dtype():
    p = H.retinanet_head_init(2, 1, 3, rng=9, num_convs=1, norm="group_norm", dtype=np.float32)
    assert list(p) == [f"{CLS}.conv.0.0.weight", f"{CLS}.conv.0.1.weight", f"{CLS}.conv.0.1.bias",
                       f"{CLS}.cls_logits.weight", f"{CLS}.cls_logits.bias",
                       f"{BOX}.conv.0.0.weight", f"{BOX}.conv.0.1.weight", f"{BOX}.conv.0.1.bias",
                       f"{BOX}.bbox_reg.weight", f"{BOX}.bbox_reg.bias"]
    assert all(v.dtype == np.float32 for v in p.values())
    np.testing.assert_array_equal(p[f"{CLS}.conv.0.1.weight"], [1.0, 1.0])
    np.testing.assert_array_equal(p[f"{BOX}.conv.0.1.bias"], [0.0, 0.0])


@pytest.mark.parametrize("norm, n", [
    # C = 2, A = 1, K = 3, one tower conv per subnet:
    # towers 2 * (36 + 2) = 76 [+ 2 * 2 GroupNorm weights - 2 * 2 conv biases]; cls (3 * 19) = 57;
    # box (4 * 19) = 76
    (None, 76 + 57 + 76),
    ("group_norm", 2 * (36 + 4) + 57 + 76),
])
def test_init_allocation_cap_is_the_exact_parameter_count(norm, n):
    p = H.retinanet_head_init(2, 1, 3, rng=0, num_convs=1, norm=norm)
    assert sum(v.size for v in p.values()) == n
    assert H.retinanet_head_init(2, 1, 3, rng=0, num_convs=1, norm=norm, max_elements=n).keys() == p.keys()
    with pytest.raises(ValueError, match=rf"^`in_channels`, `num_anchors`, `num_classes` and `num_convs` ask for "
                                         rf"{n} elements \(RetinaNet head parameters, [\d.]+ KiB\); "
                                         rf"the cap is {n - 1} elements"):
        H.retinanet_head_init(2, 1, 3, rng=0, num_convs=1, norm=norm, max_elements=n - 1)


def test_init_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^`in_channels` must be >= 1; got 0$"):
        H.retinanet_head_init(0, 2, 3)
    with pytest.raises(ValueError, match=r"^`num_anchors` must be >= 1; got 0$"):
        H.retinanet_head_init(4, 0, 3)
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 1; got 0$"):
        H.retinanet_head_init(4, 2, 0)
    for pi in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^`prior_probability` must lie in \(0, 1\); got {pi}$"):
            H.retinanet_head_init(4, 2, 3, prior_probability=pi)
    with pytest.raises(TypeError, match=r"^`prior_probability` must be a real number"):
        H.retinanet_head_init(4, 2, 3, prior_probability="a")
    with pytest.raises(ValueError, match=r"^`num_convs` must be >= 0; got -1$"):
        H.retinanet_head_init(4, 2, 3, num_convs=-1)
    with pytest.raises(ValueError, match=r"^`norm` must be one of 'group_norm'; got 'bn'$"):
        H.retinanet_head_init(4, 2, 3, norm="bn")
    assert f"{CLS}.conv.0.0.weight" not in H.retinanet_head_init(4, 2, 3, rng=0, num_convs=0)


# ---------------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------------

def _gn_params(conv_bias=False):
    # C = 2, A = 1, K = 1, one tower conv per subnet whose 3x3 kernel is the identity at the centre tap
    eye = np.zeros((2, 2, 3, 3))
    eye[0, 0, 1, 1] = eye[1, 1, 1, 1] = 1.0
    p = {}
    for head, last, f in ((CLS, "cls_logits", 1), (BOX, "bbox_reg", 4)):
        p[f"{head}.conv.0.0.weight"] = eye.copy()
        if conv_bias:
            p[f"{head}.conv.0.0.bias"] = np.array([1.0, 1.0])
        p[f"{head}.conv.0.1.weight"] = np.ones(2)
        p[f"{head}.conv.0.1.bias"] = np.zeros(2)
        w = np.zeros((f, 2, 3, 3))
        w[:, 0, 1, 1], w[:, 1, 1, 1] = 1.0, 2.0
        p[f"{head}.{last}.weight"] = w
        p[f"{head}.{last}.bias"] = np.full(f, 0.25)
    return p


def test_forward_group_norm_golden_groups_and_eps():
    # x = [1, 3] at one pixel; identity conv -> [1, 3]; one group: mean 2, variance 1, eps 3 ->
    # (x - 2) / sqrt(1 + 3) = [-0.5, 0.5]; ReLU -> [0, 0.5]; last conv 1 * 0 + 2 * 0.5 + 0.25 = 1.25
    x = np.array([1.0, 3.0]).reshape(1, 2, 1, 1)
    out, _ = H.retinanet_head_forward(_gn_params(), x, num_groups=1, eps=3.0)
    assert out.cls_logits.item() == 1.25
    np.testing.assert_array_equal(out.bbox_deltas[0, :, 0, 0], [1.25] * 4)
    # eps 0.25: / sqrt(1.25)
    out, _ = H.retinanet_head_forward(_gn_params(), x, num_groups=1, eps=0.25)
    np.testing.assert_allclose(out.cls_logits.item(), 2 * 1 / math.sqrt(1.25) + 0.25, rtol=1e-15)
    # two groups of one channel: each normalises to 0 -> the bias alone
    out, _ = H.retinanet_head_forward(_gn_params(), x, num_groups=2, eps=3.0)
    assert out.cls_logits.item() == 0.25
    # a conv bias before GroupNorm is read (torchvision allows it) and cancels in the normalisation
    out_b, _ = H.retinanet_head_forward(_gn_params(conv_bias=True), x, num_groups=1, eps=3.0)
    assert out_b.cls_logits.item() == 1.25


def test_forward_subnets_read_their_own_layout():
    # GroupNorm in the classification subnet only; the regression tower has a plain conv + bias
    p = _gn_params()
    for k in (f"{BOX}.conv.0.1.weight", f"{BOX}.conv.0.1.bias"):
        del p[k]
    p[f"{BOX}.conv.0.0.bias"] = np.array([-2.0, 0.0])
    x = np.array([1.0, 3.0]).reshape(1, 2, 1, 1)
    out, cache = H.retinanet_head_forward(p, x, num_groups=1, eps=3.0)
    assert out.cls_logits.item() == 1.25
    # box: relu([1 - 2, 3 + 0]) = [0, 3] -> 2 * 3 + 0.25 = 6.25
    np.testing.assert_array_equal(out.bbox_deltas[0, :, 0, 0], [6.25] * 4)
    dp, _ = H.retinanet_head_backward(H.RetinaNetHeadOutput(None, np.ones((1, 4, 1, 1))), cache)
    np.testing.assert_array_equal(dp[f"{BOX}.conv.0.0.bias"], [0.0, 8.0])   # ReLU closed on channel 0
    # only the GroupNorm towers need num_groups | C: C = 2 with num_groups 3 is fine without GroupNorm
    plain = H.retinanet_head_init(2, 1, 1, rng=0, num_convs=1)
    H.retinanet_head_forward(plain, x, num_groups=3)
    with pytest.raises(ValueError, match=r"^`num_groups` must divide the head's C = 2 channels; got 3$"):
        H.retinanet_head_forward(_gn_params(), x, num_groups=3)
    # GroupNorm in the regression subnet only is checked as well
    q = _gn_params()
    for k in (f"{CLS}.conv.0.1.weight", f"{CLS}.conv.0.1.bias"):
        del q[k]
    q[f"{CLS}.conv.0.0.bias"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"^`num_groups` must divide the head's C = 2 channels; got 3$"):
        H.retinanet_head_forward(q, x, num_groups=3)


def _p():
    return H.retinanet_head_init(4, 2, 3, rng=0, num_convs=1)


@pytest.mark.parametrize("key, shape, msg", [
    (f"{BOX}.bbox_reg.weight", (8, 4, 3), rf"`params\['{BOX}.bbox_reg.weight'\]` must have shape \(4A, C, 3, 3\); "
                                          rf"got \(8, 4, 3\)"),
    (f"{BOX}.bbox_reg.weight", (7, 4, 3, 3), rf"`params\['{BOX}.bbox_reg.weight'\]` must have shape "
                                             rf"\(4A, C, 3, 3\); got \(7, 4, 3, 3\)"),
    (f"{CLS}.cls_logits.weight", (6, 4, 3), rf"`params\['{CLS}.cls_logits.weight'\]` must have shape "
                                            rf"\(A\*K, C, 3, 3\) with A = 2; got \(6, 4, 3\)"),
    (f"{CLS}.cls_logits.weight", (7, 4, 3, 3), rf"`params\['{CLS}.cls_logits.weight'\]` must have shape "
                                               rf"\(A\*K, C, 3, 3\) with A = 2; got \(7, 4, 3, 3\)"),
    (f"{CLS}.cls_logits.bias", (7,), rf"`params\['{CLS}.cls_logits.bias'\]` must have shape \(6,\); got \(7,\)"),
    (f"{BOX}.bbox_reg.bias", (7,), rf"`params\['{BOX}.bbox_reg.bias'\]` must have shape \(8,\); got \(7,\)"),
    (f"{CLS}.cls_logits.weight", (6, 4, 1, 1), rf"`params\['{CLS}.cls_logits.weight'\]` must have shape "
                                               rf"\(6, 4, 3, 3\); got \(6, 4, 1, 1\)"),
    (f"{BOX}.bbox_reg.weight", (8, 4, 1, 1), rf"`params\['{BOX}.bbox_reg.weight'\]` must have shape "
                                             rf"\(8, 4, 3, 3\); got \(8, 4, 1, 1\)"),
    (f"{CLS}.conv.0.0.weight", (4, 4, 1, 1), rf"`params\['{CLS}.conv.0.0.weight'\]` must have shape "
                                             rf"\(4, 4, 3, 3\); got \(4, 4, 1, 1\)"),
    (f"{BOX}.conv.0.0.bias", (3,), rf"`params\['{BOX}.conv.0.0.bias'\]` must have shape \(4,\); got \(3,\)"),
])
def test_forward_refuses_malformed_params(key, shape, msg):
    p = _p()
    p[key] = np.zeros(shape)
    with pytest.raises(ValueError, match="^" + msg + "$"):
        H.retinanet_head_forward(p, np.zeros((1, 4, 2, 2)))


def test_forward_validation_messages():
    x = np.zeros((1, 4, 2, 2))
    for gone in (f"{BOX}.bbox_reg.weight", f"{CLS}.cls_logits.weight"):
        p = _p()
        del p[gone]
        with pytest.raises(ValueError, match=rf"^`params` is missing '{gone}' \(expected keys: "
                                             rf"'{CLS}.cls_logits.weight', '{BOX}.bbox_reg.weight'\)$"):
            H.retinanet_head_forward(p, x)
    g = H.retinanet_head_init(4, 2, 3, rng=0, num_convs=1, norm="group_norm")
    del g[f"{BOX}.conv.0.1.bias"]
    with pytest.raises(ValueError, match=rf"^`params` is missing '{BOX}.conv.0.1.bias'"):
        H.retinanet_head_forward(g, x, num_groups=2)
    g = H.retinanet_head_init(4, 2, 3, rng=0, num_convs=1, norm="group_norm")
    g[f"{CLS}.conv.0.1.weight"] = np.ones(3)
    with pytest.raises(ValueError, match=rf"^`params\['{CLS}.conv.0.1.weight'\]` must have shape \(4,\); got \(3,\)$"):
        H.retinanet_head_forward(g, x, num_groups=2)
    with pytest.raises(TypeError, match=r"^`params` must be a dict of arrays"):
        H.retinanet_head_forward([1], x)
    with pytest.raises(ValueError, match=r"^`features` must have C = 4 channels \(the heads' in_channels\); "
                                         r"got shape \(1, 3, 2, 2\)$"):
        H.retinanet_head_forward(_p(), np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"^`num_groups` must be >= 1; got 0$"):
        H.retinanet_head_forward(_p(), x, num_groups=0)
    with pytest.raises(ValueError, match=r"^`eps` must be > 0; got 0.0$"):
        H.retinanet_head_forward(_p(), x, eps=0.0)


def test_init_accepts_the_smallest_sizes():
    p = H.retinanet_head_init(1, 1, 1, rng=0, num_convs=0, prior_probability=0.5)
    assert {k: v.shape for k, v in p.items()} == {
        f"{CLS}.cls_logits.weight": (1, 1, 3, 3), f"{CLS}.cls_logits.bias": (1,),
        f"{BOX}.bbox_reg.weight": (4, 1, 3, 3), f"{BOX}.bbox_reg.bias": (4,)}
    assert p[f"{CLS}.cls_logits.bias"].item() == 0.0   # -log(0.5 / 0.5)


def test_cache_fields_and_float32_backward():
    p = H.retinanet_head_init(2, 1, 1, rng=0, num_convs=1, norm="group_norm", dtype=np.float32)
    x = np.ones((1, 2, 2, 2), np.float32)
    out, cache = H.retinanet_head_forward(p, x, num_groups=1)
    assert cache.head == "retinanet_head" and cache.output_type is H.RetinaNetHeadOutput
    assert cache.single is True and cache.dtype == np.dtype(np.float32)
    dp, dx = H.retinanet_head_backward(H.RetinaNetHeadOutput(np.ones(out.cls_logits.shape), None), cache)
    assert dx.dtype == np.float32 and all(v.dtype == np.float32 for v in dp.values())
    _, cache = H.retinanet_head_forward(p, [x], num_groups=1)
    assert cache.single is False


def test_init_and_forward_defaults():
    # four tower convs per subnet, no GroupNorm, pi = 0.01; forward: 32 groups, eps 1e-5
    p = H.retinanet_head_init(32, 1, 1, rng=0)
    assert sorted(k for k in p if k.startswith(f"{CLS}.conv.")) == sorted(
        f"{CLS}.conv.{i}.0.{s}" for i in range(4) for s in ("weight", "bias"))
    assert p[f"{CLS}.cls_logits.bias"].item() == -math.log(99.0)
    g = H.retinanet_head_init(32, 1, 1, rng=0, num_convs=1, norm="group_norm")
    g = {k: v + 0.5 * (k.endswith("1.bias")) for k, v in g.items()}
    x = np.random.default_rng(0).standard_normal((1, 32, 2, 2)) * 1e-3   # small: eps matters
    a = H.retinanet_head_forward(g, x)[0]
    b = H.retinanet_head_forward(g, x, num_groups=32, eps=1e-5)[0]
    np.testing.assert_array_equal(a.cls_logits, b.cls_logits)
    c = H.retinanet_head_forward(g, x, num_groups=32, eps=2e-5)[0]
    assert not np.array_equal(a.cls_logits, c.cls_logits)
    d = H.retinanet_head_forward(g, x, num_groups=16)[0]
    assert not np.array_equal(a.cls_logits, d.cls_logits)


def test_init_cap_with_two_anchors_and_float32_tower_biases():
    # C = 2, A = 2, K = 3, one tower conv: towers 2 * 38 = 76; cls (6 * 19) = 114; box (8 * 19) = 152
    n = 76 + 114 + 152
    p = H.retinanet_head_init(2, 2, 3, rng=0, num_convs=1, dtype=np.float32)
    assert sum(v.size for v in p.values()) == n
    assert all(v.dtype == np.float32 for v in p.values())      # the tower conv biases too (no GroupNorm)
    H.retinanet_head_init(2, 2, 3, rng=0, num_convs=1, max_elements=n)
    with pytest.raises(ValueError, match=rf"ask for {n} elements"):
        H.retinanet_head_init(2, 2, 3, rng=0, num_convs=1, max_elements=n - 1)


def test_forward_checks_the_group_norm_bias_shape():
    g = H.retinanet_head_init(4, 2, 3, rng=0, num_convs=1, norm="group_norm")
    g[f"{BOX}.conv.0.1.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=rf"^`params\['{BOX}.conv.0.1.bias'\]` must have shape \(4,\); got \(3,\)$"):
        H.retinanet_head_forward(g, np.zeros((1, 4, 2, 2)), num_groups=2)
