"""refdet.heads.ssd: the branches mutation testing found unpinned (issue 19).

The initialiser's draws and allocation cap worked by hand, and every validation branch of
``ssd_head_forward`` with the message that names the argument. Tiny shapes only.
"""
import math
import re

import numpy as np
import pytest

from refdet import heads as H

CLS, BOX = "classification_head.module_list", "regression_head.module_list"


def _params():
    # two levels: C = (3, 2), A = (2, 3), K = 4
    return H.ssd_head_init([3, 2], [2, 3], 4, rng=1)


def _feats():
    return [np.zeros((1, 3, 2, 2)), np.zeros((1, 2, 1, 1))]


# ---------------------------------------------------------------------------------------------------
# ssd_head_init
# ---------------------------------------------------------------------------------------------------

def test_init_draws_in_key_order_with_the_xavier_bound():
    # every classification conv first (level order), then every regression conv; each
    # U(-sqrt(6 / ((C + F) * 9)), +...) with F the conv's output channels; biases 0
    p = H.ssd_head_init([3, 2], [2, 3], 4, rng=5)
    rng = np.random.default_rng(5)
    for key, (f, c) in ((f"{CLS}.0", (8, 3)), (f"{CLS}.1", (12, 2)), (f"{BOX}.0", (8, 3)), (f"{BOX}.1", (12, 2))):
        bound = math.sqrt(6.0 / ((c + f) * 9))
        np.testing.assert_array_equal(p[f"{key}.weight"], rng.uniform(-bound, bound, (f, c, 3, 3)))
        np.testing.assert_array_equal(p[f"{key}.bias"], np.zeros(f))
        assert p[f"{key}.bias"].dtype == np.float64
    assert list(p) == [f"{CLS}.0.weight", f"{CLS}.0.bias", f"{CLS}.1.weight", f"{CLS}.1.bias",
                       f"{BOX}.0.weight", f"{BOX}.0.bias", f"{BOX}.1.weight", f"{BOX}.1.bias"]


def test_init_single_int_in_channels_is_one_level_and_dtype_is_kept():
    p = H.ssd_head_init(3, 2, 4, rng=0, dtype=np.float32)
    assert sorted(p) == sorted([f"{CLS}.0.weight", f"{CLS}.0.bias", f"{BOX}.0.weight", f"{BOX}.0.bias"])
    assert p[f"{CLS}.0.weight"].shape == (8, 3, 3, 3) and p[f"{BOX}.0.weight"].shape == (8, 3, 3, 3)
    assert all(v.dtype == np.float32 for v in p.values())


def test_init_allocation_cap_is_the_exact_parameter_count():
    # (A*K + 4A) * (9C + 1) per level: level 0 (8 + 8) * 28 = 448, level 1 (12 + 12) * 19 = 456 -> 904
    n = sum(v.size for v in _params().values())
    assert n == 904
    assert H.ssd_head_init([3, 2], [2, 3], 4, rng=1, max_elements=904).keys() == _params().keys()
    with pytest.raises(ValueError, match=r"^`in_channels`, `num_anchors` and `num_classes` ask for 904 elements "
                                         r"\(SSD head parameters, 7.06 KiB\); the cap is 903 elements"):
        H.ssd_head_init([3, 2], [2, 3], 4, rng=1, max_elements=903)


def test_init_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"^`in_channels\[1\]` must be an integer; got str 'a'$"):
        H.ssd_head_init([3, "a"], 2, 4)
    with pytest.raises(ValueError, match=r"^`in_channels\[0\]` must be >= 1; got 0$"):
        H.ssd_head_init([0], 2, 4)
    with pytest.raises(ValueError, match=r"^`in_channels` must be >= 1; got 0$"):
        H.ssd_head_init(0, 2, 4)
    with pytest.raises(ValueError, match=r"^`in_channels` must list at least one level; got an empty list$"):
        H.ssd_head_init([], 2, 4)
    with pytest.raises(ValueError, match=r"^`num_anchors` must have one entry per level \(1\); got 2$"):
        H.ssd_head_init([3], [2, 3], 4)
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 1; got 0$"):
        H.ssd_head_init([3], 2, 0)
    with pytest.raises(TypeError, match=r"^`dtype` must be a floating dtype; got int64$"):
        H.ssd_head_init([3], 2, 4, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------
# ssd_head_forward: validation
# ---------------------------------------------------------------------------------------------------

def _with(**kw):
    p = _params()
    p.update({k.replace("__", "."): v for k, v in kw.items()})
    return p


def _shape_msg(lvl, wb, wc):
    return (rf"^`params\['{BOX}.{lvl}.weight'\]` must be \(4\*A_l, C_l, 3, 3\) and "
            rf"`params\['{CLS}.{lvl}.weight'\]` \(A_l\*K, C_l, 3, 3\); got {re.escape(str(wb))} and "
            rf"{re.escape(str(wc))}$")



@pytest.mark.parametrize("wb, wc", [
    ((12, 2, 3), (12, 2, 3, 3)),        # box weight not 4-D
    ((0, 2, 3, 3), (12, 2, 3, 3)),      # no box outputs (A = 0)
    ((13, 2, 3, 3), (12, 2, 3, 3)),     # box outputs not a multiple of 4
    ((12, 2, 3, 3), (12, 2, 3)),        # cls weight not 4-D
    ((12, 2, 3, 3), (0, 2, 3, 3)),      # no cls outputs
    ((12, 2, 3, 3), (13, 2, 3, 3)),     # cls outputs not a multiple of A = 3
])
def test_forward_refuses_each_malformed_level_weight(wb, wc):
    p = _params()
    p[f"{BOX}.1.weight"], p[f"{CLS}.1.weight"] = np.zeros(wb), np.zeros(wc)
    with pytest.raises(ValueError, match=_shape_msg(1, wb, wc)):
        H.ssd_head_forward(p, _feats())


def test_forward_validation_messages():
    with pytest.raises(TypeError, match=r"^`params` must be a dict of arrays \(state_dict keys\); got list"):
        H.ssd_head_forward([1], _feats())
    with pytest.raises(ValueError, match=rf"^`params` is missing '{BOX}.0.weight' \(expected keys: '{BOX}.0.weight'\)$"):
        H.ssd_head_forward({f"{CLS}.0.weight": np.zeros((8, 3, 3, 3))}, _feats())
    p = _params()
    del p[f"{CLS}.1.weight"]
    with pytest.raises(ValueError, match=rf"^`params` is missing '{CLS}.1.weight' \(expected keys: "
                                         rf"'{CLS}.1.weight', '{BOX}.1.weight'\)$"):
        H.ssd_head_forward(p, _feats())
    # K read per level: level 1 with 15 = 3 * 5 cls outputs predicts K = 5, level 0 K = 4
    p = _with(**{f"{CLS}__1__weight": np.zeros((15, 2, 3, 3)), f"{CLS}__1__bias": np.zeros(15)})
    with pytest.raises(ValueError, match=rf"^every level must predict the same number of classes; level 0 has 4, "
                                         rf"level 1 has 5 \(`params\['{CLS}.1.weight'\]` \(15, 2, 3, 3\)\)$"):
        H.ssd_head_forward(p, _feats())
    with pytest.raises(ValueError, match=r"^`num_classes` = 5 does not match the params, which predict K = 4 classes$"):
        H.ssd_head_forward(_params(), _feats(), num_classes=5)
    with pytest.raises(ValueError, match=r"^`num_classes` must be >= 1; got 0$"):
        H.ssd_head_forward(_params(), _feats(), num_classes=0)
    with pytest.raises(ValueError, match=r"^`features` must have one map per head level \(2\); got 1$"):
        H.ssd_head_forward(_params(), _feats()[:1])
    with pytest.raises(ValueError, match=r"^`features\[1\]` must have C = 2 channels; got shape \(1, 3, 1, 1\)$"):
        H.ssd_head_forward(_params(), [np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 1, 1))])
    with pytest.raises(ValueError, match=r"^`features\[0\]` must have C = 3 channels; got shape \(1, 2, 2, 2\)$"):
        H.ssd_head_forward(_params(), [np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 1, 1))])
    # the biases' shapes come from the weights: A_l*K and 4*A_l
    with pytest.raises(ValueError, match=rf"^`params\['{CLS}.1.bias'\]` must have shape \(12,\); got \(8,\)$"):
        H.ssd_head_forward(_with(**{f"{CLS}__1__bias": np.zeros(8)}), _feats())
    with pytest.raises(ValueError, match=rf"^`params\['{BOX}.0.bias'\]` must have shape \(8,\); got \(12,\)$"):
        H.ssd_head_forward(_with(**{f"{BOX}__0__bias": np.zeros(12)}), _feats())
    with pytest.raises(ValueError, match=rf"^`params\['{CLS}.0.weight'\]` must have shape \(8, 3, 3, 3\); "
                                         rf"got \(8, 3, 1, 1\)$"):
        H.ssd_head_forward(_with(**{f"{CLS}__0__weight": np.zeros((8, 3, 1, 1))}), _feats())
    with pytest.raises(ValueError, match=rf"^`params` has unexpected keys 'extra'"):
        H.ssd_head_forward(dict(_params(), extra=np.zeros(1)), _feats())


def test_forward_golden_one_level_padding_one():
    # C = 1, A = 1, K = 1 on a 1x2 map [[1, 2]]: a 3x3 kernel with only the centre tap (cls: 2, box:
    # taps (1, 1) = 1 for output 0 and the right tap (1, 2) = 1 for output 1) and padding 1:
    # cls = 2 * x + 0.5; box[0] = x; box[1] = x shifted left with a zero pad = [2, 0]
    p = {f"{CLS}.0.weight": np.zeros((1, 1, 3, 3)), f"{CLS}.0.bias": np.array([0.5]),
         f"{BOX}.0.weight": np.zeros((4, 1, 3, 3)), f"{BOX}.0.bias": np.arange(4.0)}
    p[f"{CLS}.0.weight"][0, 0, 1, 1] = 2.0
    p[f"{BOX}.0.weight"][0, 0, 1, 1] = 1.0
    p[f"{BOX}.0.weight"][1, 0, 1, 2] = 1.0
    x = np.array([[[[1.0, 2.0]]]])
    out, cache = H.ssd_head_forward(p, [x], num_classes=1)
    assert isinstance(out.cls_logits, list) and len(out.cls_logits) == 1
    np.testing.assert_array_equal(out.cls_logits[0], [[[[2.5, 4.5]]]])
    np.testing.assert_array_equal(out.bbox_deltas[0][0, :, 0], [[1.0, 2.0], [3.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    # a single array is one level too, and the outputs are still lists
    out1, _ = H.ssd_head_forward(p, x)
    np.testing.assert_array_equal(out1.cls_logits[0], out.cls_logits[0])
    # backward: d cls = 1 everywhere -> d bias = 2 (two positions), d centre tap = 1 + 2 = 3, dx = 2
    dp, dx = H.ssd_head_backward(H.SSDHeadOutput([np.ones((1, 1, 1, 2))], None), cache)
    assert isinstance(dx, list) and len(dx) == 1
    assert dp[f"{CLS}.0.bias"].item() == 2.0 and dp[f"{CLS}.0.weight"][0, 0, 1, 1] == 3.0
    np.testing.assert_array_equal(dx[0], [[[[2.0, 2.0]]]])
    assert not dp[f"{BOX}.0.weight"].any() and not dp[f"{BOX}.0.bias"].any()


def test_init_accepts_the_smallest_sizes():
    # C = 1, A = 1, K = 1 (the lower bounds are inclusive), as an int and as a one-level list
    for c in (1, [1]):
        p = H.ssd_head_init(c, 1, 1, rng=0)
        assert p[f"{CLS}.0.weight"].shape == (1, 1, 3, 3) and p[f"{BOX}.0.weight"].shape == (4, 1, 3, 3)
    p = H.ssd_head_init([1, 2], [1, 1], 1, rng=0)
    assert p[f"{CLS}.1.weight"].shape == (1, 2, 3, 3)


def test_init_allocation_cap_in_float32_bytes():
    # 904 elements of 4 bytes = 3616 bytes = 3.53 KiB (the dtype asked for, not float64's 7.06 KiB)
    with pytest.raises(ValueError, match=r"ask for 904 elements \(SSD head parameters, 3.53 KiB\)"):
        H.ssd_head_init([3, 2], [2, 3], 4, rng=1, max_elements=903, dtype=np.float32)


def test_cache_fields_and_float32_backward():
    p = H.ssd_head_init([3, 2], [2, 3], 4, rng=1, dtype=np.float32)
    feats = [np.ones((1, 3, 2, 2), np.float32), np.ones((1, 2, 1, 1), np.float32)]
    out, cache = H.ssd_head_forward(p, feats)
    # the HeadCache documents what made it: head name, output type, list input (single False), dtype
    assert cache.head == "ssd_head" and cache.output_type is H.SSDHeadOutput
    assert cache.single is False and cache.dtype == np.dtype(np.float32)
    assert cache.param_shapes == {k: v.shape for k, v in p.items()}
    dp, dx = H.ssd_head_backward(H.SSDHeadOutput([np.ones(o.shape) for o in out.cls_logits], None), cache)
    assert all(d.dtype == np.float32 for d in dx) and all(v.dtype == np.float32 for v in dp.values())
    dp, dx = H.ssd_head_backward(H.SSDHeadOutput(None, None), cache)
    assert all(d.dtype == np.float32 for d in dx) and all(v.dtype == np.float32 for v in dp.values())


def test_float64_params_run_in_the_features_float32():
    # the parameters are cast to the features' dtype: float32 maps give float32 outputs and gradients
    p = H.ssd_head_init([3], [2], 4, rng=1)                 # float64
    x = np.ones((1, 3, 2, 2), np.float32)
    out, cache = H.ssd_head_forward(p, [x])
    assert out.cls_logits[0].dtype == np.float32 and out.bbox_deltas[0].dtype == np.float32
    want = H.ssd_head_forward({k: v.astype(np.float32) for k, v in p.items()}, [x])[0]
    np.testing.assert_array_equal(out.cls_logits[0], want.cls_logits[0])
