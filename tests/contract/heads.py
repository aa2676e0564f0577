"""Contract cases for refdet.heads (every init, forward, backward, the layout helpers, documented errors)."""
import numpy as np

from refdet import heads
from tests.contract import Bad, Case


def _feats(rng, c=4, sizes=((5, 4), (3, 2))):
    return [rng.standard_normal((2, c, h, w)) for h, w in sizes]


def _rpn(rng):
    return (heads.rpn_head_init(4, 3, rng=1), _feats(rng)), {}


def _retina(rng):
    return (heads.retinanet_head_init(4, 2, 3, rng=1, norm="group_norm"), _feats(rng)), {"num_groups": 2}


def _ssd(rng):
    return (heads.ssd_head_init([4, 4], [2, 3], 5, rng=1), _feats(rng)), {}


def _bwd(fwd, make_args):
    def make(rng):
        args, kw = make_args(rng)
        out, cache = fwd(*args, **kw)
        d = type(out)(*[[rng.standard_normal(o.shape) for o in field] for field in out])
        return (d, cache), {}
    return make


CASES = [
    Case("rpn_head_init", lambda r: ((4, 3), {"rng": 0, "conv_depth": 2})),
    Case("rpn_head_forward", _rpn),
    Case("rpn_head_backward", _bwd(heads.rpn_head_forward, _rpn)),
    Case("retinanet_head_init", lambda r: ((4, 2, 3), {"rng": 0})),
    Case("retinanet_head_forward", _retina),
    Case("retinanet_head_backward", _bwd(heads.retinanet_head_forward, _retina)),
    Case("ssd_head_init", lambda r: (([4, 4], [2, 3], 5), {"rng": 0})),
    Case("ssd_head_forward", _ssd),
    Case("ssd_head_backward", _bwd(heads.ssd_head_forward, _ssd)),
    Case("flatten_head_output", lambda r: ((r.standard_normal((2, 12, 5, 4)), 3), {})),
    Case("unflatten_head_output", lambda r: ((r.standard_normal((2, 5 * 4 * 3 + 3 * 2 * 3, 4)), 3,
                                              [(5, 4), (3, 2)]), {})),
]

BAD = [
    Bad("rpn_head_forward", lambda r: ((heads.rpn_head_init(4, 3, rng=0), r.standard_normal((1, 5, 3, 3))), {}),
        ValueError, r"`features` must have C = 4 channels"),
    Bad("rpn_head_forward", lambda r: ((heads.rpn_head_init(4, 3, rng=0), r.standard_normal((4, 3, 3))), {}),
        ValueError, r"`features` must be 4-D"),
    Bad("rpn_head_forward", lambda r: (("params", r.standard_normal((1, 4, 3, 3))), {}),
        TypeError, r"`params` must be a dict"),
    Bad("rpn_head_forward", lambda r: (({**heads.rpn_head_init(4, 3, rng=0), "cls_logits.bias": np.zeros(5)},
                                        r.standard_normal((1, 4, 3, 3))), {}),
        ValueError, r"`params\['cls_logits.bias'\]` must have shape \(3,\)"),
    Bad("rpn_head_forward", lambda r: ((heads.rpn_head_init(4, 3, rng=0), np.full((1, 4, 3, 3), np.nan)), {}),
        ValueError, r"`features`.*NaN"),
    Bad("rpn_head_init", lambda r: ((4, 3), {"objectness": "softplus"}), ValueError, r"`objectness`"),
    Bad("rpn_head_init", lambda r: ((4, 0), {}), ValueError, r"`num_anchors` must be >= 1"),
    Bad("rpn_head_init", lambda r: ((4, 3), {"rng": "seed"}), TypeError, r"`rng`"),
    Bad("retinanet_head_init", lambda r: ((4, 2, 3), {"prior_probability": 1.0}), ValueError,
        r"`prior_probability` must lie in \(0, 1\)"),
    Bad("retinanet_head_init", lambda r: ((4, 2, 3), {"norm": "batch_norm"}), ValueError, r"`norm`"),
    Bad("retinanet_head_forward", lambda r: ((heads.retinanet_head_init(4, 2, 3, rng=0, norm="group_norm"),
                                              r.standard_normal((1, 4, 3, 3))), {"num_groups": 3}),
        ValueError, r"`num_groups` must divide"),
    Bad("retinanet_head_backward", lambda r: ((None, None), {}), TypeError, r"`cache`"),
    Bad("ssd_head_init", lambda r: (([4, 4], [2], 5), {}), ValueError, r"`num_anchors` must have one entry per level"),
    Bad("ssd_head_forward", lambda r: ((heads.ssd_head_init([4, 4], 2, 5, rng=0), _feats(r)[:1]), {}),
        ValueError, r"one map per head level"),
    Bad("ssd_head_forward", lambda r: ((heads.ssd_head_init([4, 4], 2, 5, rng=0), _feats(r)), {"num_classes": 4}),
        ValueError, r"`num_classes` = 4 does not match"),
    Bad("flatten_head_output", lambda r: ((np.zeros((7, 2, 2)), 3), {}), ValueError, r"multiple of `num_anchors`"),
    Bad("flatten_head_output", lambda r: (("x", 3), {}), TypeError, r"`x`"),
    Bad("unflatten_head_output", lambda r: ((np.zeros((10, 4)), 2, (2, 2)), {}), ValueError, r"sum H\*W\*A = 8"),
]

EXEMPT = {
    "RPNHeadOutput": "NamedTuple of head outputs",
    "RetinaNetHeadOutput": "NamedTuple of head outputs",
    "SSDHeadOutput": "NamedTuple of head outputs",
    "HeadCache": "NamedTuple cache of the head forwards",
    "RETINANET_PRIOR_BIAS": "a constant, -log(99)",
}
