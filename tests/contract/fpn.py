"""Contract cases for refdet.fpn (init, forward, backward, documented errors)."""
import numpy as np

from refdet import fpn
from tests.contract import Bad, Case


def _feats(rng, channels=(2, 3, 4), sizes=((9, 7), (5, 4), (3, 2))):
    return [rng.standard_normal((2, c, h, w)) for c, (h, w) in zip(channels, sizes)]


def _fwd(extra):
    def make(rng):
        return (fpn.fpn_init([2, 3, 4], 3, rng=1, extra_blocks=extra), _feats(rng)), {"extra_blocks": extra}
    return make


def _bwd(extra):
    def make(rng):
        args, kw = _fwd(extra)(rng)
        outs, cache = fpn.fpn_forward(*args, **kw)
        return ([rng.standard_normal(o.shape) for o in outs], cache), {}
    return make


CASES = [
    Case("fpn_init", lambda r: (([2, 3, 4], 3), {"rng": 0})),
    Case("fpn_forward", _fwd("p6p7")),
    Case("fpn_forward", _fwd("maxpool")),
    Case("fpn_backward", _bwd("p6p7")),
    Case("fpn_backward", _bwd("maxpool")),
    Case("fpn_explain", lambda r: (_fwd("maxpool")(r)[0] + (fpn.fpn_forward(*_fwd("maxpool")(r)[0],
                                                                            extra_blocks="maxpool")[0],),
                                   {"extra_blocks": "maxpool"})),
]

BAD = [
    Bad("fpn_init", lambda r: (([2, 0], 3), {}), ValueError, r"`in_channels_list\[1\]` must be >= 1"),
    Bad("fpn_init", lambda r: ((3, 3), {}), TypeError, r"`in_channels_list` must be a list"),
    Bad("fpn_init", lambda r: (([2], 3), {"extra_blocks": "p6"}), ValueError, r"`extra_blocks` must be one of"),
    Bad("fpn_init", lambda r: (([2], 3), {"init": "orthogonal"}), ValueError, r"`init` must be one of"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), _feats(r)), {"extra_blocks": "none"}),
        ValueError, r"has P6/P7 weights but extra_blocks='none'"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), _feats(r)), {"convention": "detectron2"}),
        ValueError, r"upsample='x2' needs every map twice the size"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), _feats(r, channels=(2, 3, 5))), {}),
        ValueError, r"`params\['inner_blocks.2.0.weight'\]` must have shape \(3, 5, 1, 1\)"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), _feats(r)[0]), {}),
        TypeError, r"`features` must be a list"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), [np.full((1, 2, 3, 3), np.inf)] + _feats(r)[1:]),
                                  {}), ValueError, r"`features\[0\]`.*NaN or inf"),
    Bad("fpn_forward", lambda r: ((fpn.fpn_init([2, 3, 4], 3, rng=0), _feats(r)), {"fuse": "max"}),
        ValueError, r"`fuse` must be one of"),
    Bad("fpn_backward", lambda r: (([], None), {}), TypeError, r"`cache` must be the FPNCache"),
    Bad("fpn_explain", lambda r: (_fwd("none")(r)[0] + ("outputs",), {"extra_blocks": "none"}), TypeError,
        r"`outputs` must be a list"),
]

EXEMPT = {
    "EXTRA_BLOCKS": "a constant tuple of extra-level names",
    "FPNCache": "NamedTuple cache of fpn_forward",
    "FPNCandidate": "NamedTuple result of fpn_explain",
}
