"""Hardening of refdet.heads and refdet.fpn: initialisers capped before allocating, params named."""
import numpy as np
import pytest

import refdet
from refdet.heads.yolo import yolo_head_init


@pytest.mark.parametrize("call", [
    lambda: refdet.rpn_head_init(16, 9, conv_depth=10 ** 9),           # hung: 1e9 small convs
    lambda: refdet.rpn_head_init(16, 10 ** 9),
    lambda: refdet.retinanet_head_init(16, 9, 10 ** 9),
    lambda: refdet.retinanet_head_init(16, 10 ** 9, 80),
    lambda: refdet.retinanet_head_init(16, 9, 80, num_convs=10 ** 9),
    lambda: refdet.ssd_head_init([16, 16], [4, 6], 10 ** 9),
    lambda: refdet.ssd_head_init([16, 10 ** 9], [4, 6], 91),
    lambda: refdet.fpn_init([16, 32], 10 ** 9),
    lambda: refdet.fpn_init([16, 10 ** 9], 32),
    lambda: yolo_head_init(16, 10 ** 9),
])
def test_initialisers_refuse_huge_counts_naming_them(call):
    with pytest.raises(ValueError, match=r"ask for [\d,]+ elements \(.*parameters, .*max_elements="):
        call()


def test_cap_keyword_and_dtype_named():
    p = refdet.rpn_head_init(4, 3, rng=0)
    n = sum(v.size for v in p.values())
    assert refdet.rpn_head_init(4, 3, rng=0, max_elements=n).keys() == p.keys()
    with pytest.raises(ValueError, match="ask for"):
        refdet.rpn_head_init(4, 3, rng=0, max_elements=n - 1)
    with pytest.raises(TypeError, match="`dtype` must be a floating dtype"):
        refdet.retinanet_head_init(4, 3, 2, dtype="bogus")
    with pytest.raises(TypeError, match="`dtype` must be a floating dtype"):
        refdet.fpn_init([4], 4, dtype="bogus")


def test_forward_names_malformed_params():
    p = refdet.rpn_head_init(4, 3, rng=0)
    p["cls_logits.weight"] = None
    with pytest.raises(ValueError, match=r"`params\['cls_logits.weight'\]` must have shape"):
        refdet.rpn_head_forward(p, np.zeros((1, 4, 5, 5)))
    s = refdet.ssd_head_init([4, 4], [2, 2], 3, rng=0)
    s["regression_head.module_list.0.weight"] = np.zeros((0, 4, 3, 3))
    with pytest.raises(ValueError, match=r"`params\['regression_head.module_list.0.weight'\]`"):
        refdet.ssd_head_forward(s, [np.zeros((1, 4, 3, 3)), np.zeros((1, 4, 2, 2))])
    with pytest.raises(TypeError, match="`per_location` must be a bool"):
        refdet.flatten_head_output(np.zeros((1, 12, 2, 2)), 3, per_location=np.array([1, 0]))
