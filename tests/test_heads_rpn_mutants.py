"""refdet.heads.rpn: the branches mutation testing found unpinned (issue 19).

The initialiser's draws, layout and allocation cap worked by hand, the softmax/sigmoid objectness
per convention, and every validation branch with the message that names the argument.
"""
import numpy as np
import pytest

from refdet import heads as H


def test_init_draws_in_key_order_normal_001():
    # conv.{i}.0 (C, C, 3, 3) for i < depth, then cls_logits (A or 2A, C, 1, 1), then bbox_pred
    # (4A, C, 1, 1): each standard_normal * 0.01 from the same Generator; biases 0
    for objectness, n_obj in (("sigmoid", 2), ("softmax", 4)):
        p = H.rpn_head_init(3, 2, rng=4, conv_depth=2, objectness=objectness)
        rng = np.random.default_rng(4)
        expect = [("conv.0.0", (3, 3, 3, 3)), ("conv.1.0", (3, 3, 3, 3)), ("cls_logits", (n_obj, 3, 1, 1)),
                  ("bbox_pred", (8, 3, 1, 1))]
        assert list(p) == [f"{k}.{s}" for k, _ in expect for s in ("weight", "bias")]
        for key, shape in expect:
            np.testing.assert_array_equal(p[f"{key}.weight"], rng.standard_normal(shape) * 0.01)
            np.testing.assert_array_equal(p[f"{key}.bias"], np.zeros(shape[0]))


@pytest.mark.parametrize("convention, n_obj", [("torchvision", 2), ("detectron2", 2), ("mmdet", 2),
                                               ("caffe", 4), ("paper", 4)])
def test_init_objectness_channels_per_convention(convention, n_obj):
    p = H.rpn_head_init(3, 2, rng=0, convention=convention)
    assert p["cls_logits.weight"].shape == (n_obj, 3, 1, 1) and p["cls_logits.bias"].shape == (n_obj,)
    assert p["bbox_pred.weight"].shape == (8, 3, 1, 1)


def test_init_allocation_cap_is_the_exact_parameter_count():
    # depth 2: 2 * (9*3*3 + 3) = 168; softmax cls (4 + 8) * (3 + 1) = 48 -> 216
    p = H.rpn_head_init(3, 2, rng=0, conv_depth=2, objectness="softmax")
    assert sum(v.size for v in p.values()) == 216
    assert H.rpn_head_init(3, 2, rng=0, conv_depth=2, objectness="softmax", max_elements=216).keys() == p.keys()
    with pytest.raises(ValueError, match=r"^`in_channels`, `num_anchors` and `conv_depth` ask for 216 elements "
                                         r"\(RPN head parameters, 1.69 KiB\); the cap is 215 elements"):
        H.rpn_head_init(3, 2, rng=0, conv_depth=2, objectness="softmax", max_elements=215)
    # float32: 4 bytes per element in the message
    with pytest.raises(ValueError, match=r"ask for 216 elements \(RPN head parameters, 864 bytes\)"):
        H.rpn_head_init(3, 2, rng=0, conv_depth=2, objectness="softmax", max_elements=215, dtype=np.float32)


def test_init_dtype_and_errors():
    p = H.rpn_head_init(3, 2, rng=0, dtype=np.float32)
    assert all(v.dtype == np.float32 for v in p.values())
    assert "conv.0.0.weight" not in H.rpn_head_init(3, 2, rng=0, conv_depth=0)
    with pytest.raises(ValueError, match=r"^`in_channels` must be >= 1; got 0$"):
        H.rpn_head_init(0, 2)
    with pytest.raises(ValueError, match=r"^`num_anchors` must be >= 1; got 0$"):
        H.rpn_head_init(3, 0)
    with pytest.raises(ValueError, match=r"^`conv_depth` must be >= 0; got -1$"):
        H.rpn_head_init(3, 2, conv_depth=-1)
    with pytest.raises(ValueError, match=r"`objectness` must be one of 'sigmoid', 'softmax'; got 'x'$"):
        H.rpn_head_init(3, 2, objectness="x")


def _p():
    return H.rpn_head_init(3, 2, rng=0)


def _x():
    return np.zeros((1, 3, 2, 2))


@pytest.mark.parametrize("key, shape, msg", [
    ("bbox_pred.weight", (8, 3, 1), r"`params\['bbox_pred.weight'\]` must have shape \(4A, C, 1, 1\); "
                                    r"got shape \(8, 3, 1\)"),
    ("bbox_pred.weight", (7, 3, 1, 1), r"`params\['bbox_pred.weight'\]` must have shape \(4A, C, 1, 1\); "
                                       r"got shape \(7, 3, 1, 1\)"),
    ("cls_logits.weight", (2, 3, 1), r"`params\['cls_logits.weight'\]` must have shape \(A or 2A, C, 1, 1\); "
                                     r"got shape \(2, 3, 1\)"),
    ("cls_logits.weight", (3, 3, 1, 1), r"`params\['cls_logits.weight'\]` must have A = 2 \(sigmoid\) or 2A = 4 "
                                        r"\(softmax\) output channels; got shape \(3, 3, 1, 1\)"),
    ("cls_logits.bias", (4,), r"`params\['cls_logits.bias'\]` must have shape \(2,\); got \(4,\)"),
    ("bbox_pred.bias", (4,), r"`params\['bbox_pred.bias'\]` must have shape \(8,\); got \(4,\)"),
    ("bbox_pred.weight", (8, 3, 3, 3), r"`params\['bbox_pred.weight'\]` must have shape \(8, 3, 1, 1\); "
                                       r"got \(8, 3, 3, 3\)"),
    ("cls_logits.weight", (2, 3, 3, 3), r"`params\['cls_logits.weight'\]` must have shape \(2, 3, 1, 1\); "
                                        r"got \(2, 3, 3, 3\)"),
    ("conv.0.0.weight", (3, 3, 1, 1), r"`params\['conv.0.0.weight'\]` must have shape \(3, 3, 3, 3\); "
                                      r"got \(3, 3, 1, 1\)"),
    ("conv.0.0.bias", (2,), r"`params\['conv.0.0.bias'\]` must have shape \(3,\); got \(2,\)"),
])
def test_forward_refuses_malformed_params(key, shape, msg):
    p = _p()
    p[key] = np.zeros(shape)
    with pytest.raises(ValueError, match="^" + msg + "$"):
        H.rpn_head_forward(p, _x())


def test_forward_validation_messages():
    for gone in ("bbox_pred.weight", "cls_logits.weight"):
        p = _p()
        del p[gone]
        with pytest.raises(ValueError, match=rf"^`params` is missing '{gone}' \(expected keys: 'cls_logits.weight', "
                                             rf"'bbox_pred.weight'\)$"):
            H.rpn_head_forward(p, _x())
    p = _p()
    del p["conv.0.0.bias"]
    with pytest.raises(ValueError, match=r"^`params` is missing 'conv.0.0.bias'"):
        H.rpn_head_forward(p, _x())
    with pytest.raises(TypeError, match=r"^`params` must be a dict of arrays"):
        H.rpn_head_forward([1], _x())
    with pytest.raises(ValueError, match=r"^`features\[1\]` must have C = 3 channels \(the heads' in_channels\); "
                                         r"got shape \(1, 2, 1, 1\)$"):
        H.rpn_head_forward(_p(), [_x(), np.zeros((1, 2, 1, 1))])
    with pytest.raises(ValueError, match=r"^`features` must have C = 3 channels \(the heads' in_channels\); "
                                         r"got shape \(1, 2, 1, 1\)$"):
        H.rpn_head_forward(_p(), np.zeros((1, 2, 1, 1)))


def test_forward_two_conv_blocks_and_list_outputs():
    # depth 2, C = 1, A = 1 on a 1x1 map x = 3: with 3x3 kernels whose centre taps are 2 and -1 and
    # biases 1 and 4: t1 = relu(2*3 + 1) = 7, t2 = relu(-7 + 4) = 0 -> objectness = bias only (0.5);
    # with bias 10 instead: t2 = 3 -> objectness = 0.5 + 2 * 3 = 6.5
    p = {"conv.0.0.weight": np.zeros((1, 1, 3, 3)), "conv.0.0.bias": np.array([1.0]),
         "conv.1.0.weight": np.zeros((1, 1, 3, 3)), "conv.1.0.bias": np.array([4.0]),
         "cls_logits.weight": np.full((1, 1, 1, 1), 2.0), "cls_logits.bias": np.array([0.5]),
         "bbox_pred.weight": np.ones((4, 1, 1, 1)), "bbox_pred.bias": np.zeros(4)}
    p["conv.0.0.weight"][0, 0, 1, 1] = 2.0
    p["conv.1.0.weight"][0, 0, 1, 1] = -1.0
    x = np.full((1, 1, 1, 1), 3.0)
    out, _ = H.rpn_head_forward(p, x)
    assert out.objectness.item() == 0.5 and not out.deltas.any()
    p["conv.1.0.bias"] = np.array([10.0])
    out, cache = H.rpn_head_forward(p, [x, 2 * x])
    assert isinstance(out.objectness, list) and out.objectness[0].item() == 6.5
    # level 1: t1 = 13, t2 = relu(-13 + 10) = 0 -> 0.5
    assert out.objectness[1].item() == 0.5
    np.testing.assert_array_equal(out.deltas[0][0, :, 0, 0], [3.0, 3.0, 3.0, 3.0])
    # backward through level 0 only: d objectness = 1 -> d cls weight = t2 = 3, d cls bias = 1 + 1
    dp, dx = H.rpn_head_backward(H.RPNHeadOutput([np.ones((1, 1, 1, 1)), np.ones((1, 1, 1, 1))], None), cache)
    assert dp["cls_logits.weight"].item() == 3.0 and dp["cls_logits.bias"].item() == 2.0
    # dt2 = 2 (level 0) -> d conv.1 bias = 2, centre tap = 2 * t1 = 14; dt1 = 2 * -1 = -2 -> dx = -2 * 2 = -4
    assert dp["conv.1.0.bias"].item() == 2.0 and dp["conv.1.0.weight"][0, 0, 1, 1] == 14.0
    assert dx[0].item() == -4.0 and dx[1].item() == 0.0


def test_init_accepts_the_smallest_sizes():
    p = H.rpn_head_init(1, 1, rng=0, conv_depth=0)
    assert {k: v.shape for k, v in p.items()} == {"cls_logits.weight": (1, 1, 1, 1), "cls_logits.bias": (1,),
                                                  "bbox_pred.weight": (4, 1, 1, 1), "bbox_pred.bias": (4,)}


def test_cache_fields():
    p = H.rpn_head_init(3, 2, rng=0)
    x = np.ones((1, 3, 2, 2))
    _, cache = H.rpn_head_forward(p, x)
    assert cache.head == "rpn_head" and cache.output_type is H.RPNHeadOutput
    assert cache.single is True and cache.dtype == np.dtype(np.float64)
    _, cache = H.rpn_head_forward(p, [x])
    assert cache.single is False
    _, cache = H.rpn_head_forward(p, (x,))
    assert cache.single is False


def test_float64_params_run_in_the_features_float32():
    p = H.rpn_head_init(3, 2, rng=1)                        # float64
    x = np.ones((1, 3, 2, 2), np.float32)
    out, _ = H.rpn_head_forward(p, x)
    assert out.objectness.dtype == np.float32 and out.deltas.dtype == np.float32
    want = H.rpn_head_forward({k: v.astype(np.float32) for k, v in p.items()}, x)[0]
    np.testing.assert_array_equal(out.deltas, want.deltas)


def test_init_default_is_one_conv_block():
    # torchvision RPNHead(conv_depth=1): exactly one 3x3 conv + ReLU block
    p = H.rpn_head_init(3, 2, rng=0)
    assert list(p) == ["conv.0.0.weight", "conv.0.0.bias", "cls_logits.weight", "cls_logits.bias",
                       "bbox_pred.weight", "bbox_pred.bias"]


def test_forward_refuses_a_scalar_box_weight():
    # a 0-d weight has no output-channel axis: the layout message, not an IndexError
    p = _p()
    p["bbox_pred.weight"] = None
    with pytest.raises(ValueError, match=r"^`params\['bbox_pred.weight'\]` must have shape \(4A, C, 1, 1\); "
                                         r"got shape \(\)$"):
        H.rpn_head_forward(p, _x())
