"""Contract cases for refdet.heads.yolo (the YOLOv8 head: init, forward, backward, documented errors)."""
import numpy as np

import refdet.heads.yolo as HY  # noqa: F401  (makes refdet.heads.yolo reachable by name)
from tests.contract import Bad, Case


def _feats(rng, c=(4, 4), sizes=((4, 4), (2, 2))):
    return [rng.standard_normal((2, ch, h, w)) for ch, (h, w) in zip(c, sizes)]


def _params():
    return HY.yolo_head_init([4, 4], 3, reg_max=2, strides=[8, 16], image_size=32, rng=0)


def _fwd(rng):
    return (_params(), _feats(rng)), {}


def _bwd(rng):
    out, cache = HY.yolo_head_forward(*_fwd(rng)[0])
    d = HY.YOLOHeadOutput([rng.standard_normal(o.shape) for o in out.box],
                          [rng.standard_normal(o.shape) for o in out.cls])
    return (d, cache), {}


CASES = [
    Case("heads.yolo.yolo_head_widths", lambda r: ((256, 80, 16), {})),
    Case("heads.yolo.yolo_head_init", lambda r: (([4, 8], 3), {"reg_max": 4, "strides": [8, 16], "rng": 0})),
    Case("heads.yolo.yolo_head_forward", _fwd),
    Case("heads.yolo.yolo_head_backward", _bwd),
]

BAD = [
    Bad("heads.yolo.yolo_head_forward", lambda r: ((_params(), _feats(r)[:1]), {}), ValueError,
        r"`features` must have one map per head level \(2\)"),
    Bad("heads.yolo.yolo_head_forward", lambda r: ((_params(), _feats(r, c=(4, 5))), {}), ValueError,
        r"`features\[1\]` must have C = 4 channels"),
    Bad("heads.yolo.yolo_head_forward", lambda r: (({"cv2.0.2.weight": np.zeros((8, 16, 1, 1))}, _feats(r)[:1]), {}),
        ValueError, r"params"),
    Bad("heads.yolo.yolo_head_forward", lambda r: (({}, _feats(r)), {}), ValueError, r"must hold a YOLO head"),
    Bad("heads.yolo.yolo_head_forward", lambda r: ((_params(), [np.full((1, 4, 2, 2), np.nan)] * 2), {}),
        ValueError, r"`features\[0\]`.*NaN"),
    Bad("heads.yolo.yolo_head_init", lambda r: ((4, 3), {"reg_max": 0}), ValueError, r"`reg_max` must be >= 1"),
    Bad("heads.yolo.yolo_head_init", lambda r: ((4, 3), {"strides": [8, 16]}), ValueError,
        r"`strides` must give one stride per level \(3\)"),
    Bad("heads.yolo.yolo_head_init", lambda r: (([4, 4], 3), {"num_levels": 3, "strides": [8, 16]}), ValueError,
        r"`num_levels`"),
    Bad("heads.yolo.yolo_head_backward", lambda r: ((HY.YOLOHeadOutput(None, None), None), {}), TypeError, r"`cache`"),
    Bad("heads.yolo.yolo_head_backward", lambda r: ((HY.YOLOHeadOutput([np.zeros((2, 8, 4, 4))], None),
                                                     HY.yolo_head_forward(*_fwd(r)[0])[1]), {}),
        ValueError, r"`doutput.box` must be a list of 2 arrays"),
]
