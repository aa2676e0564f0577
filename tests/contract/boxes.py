import numpy as np

from tests.contract import Bad, Case


def _boxes(rng, n=6):
    xy = rng.uniform(-20, 80, size=(n, 2))
    wh = rng.uniform(0, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


CASES = [
    Case("box_convert", lambda r: ((_boxes(r), "xyxy", "cxcywh"), {}), box_args={0: "boxes"}),
    Case("box_area", lambda r: ((_boxes(r),), {}), box_args={0: "boxes"}),
    Case("clip_boxes_to_image", lambda r: ((_boxes(r), (50, 60)), {}), box_args={0: "boxes"}),
    Case("remove_small_boxes", lambda r: ((_boxes(r), 1.0), {}), box_args={0: "boxes"}),
    Case("boxes_inside_image", lambda r: ((_boxes(r), (50, 60)), {"allowed_border": 0}), box_args={0: "boxes"}),
]

BAD = [
    Bad("box_convert", lambda r: ((_boxes(r), "xyxy", "ltrb"), {}), ValueError, "`out_fmt`.*'ltrb'"),
    Bad("box_area", lambda r: ((_boxes(r),), {"convention": "keras"}), ValueError, "`convention`.*'keras'"),
    Bad("clip_boxes_to_image", lambda r: ((_boxes(r), (50,)), {}), ValueError, "`image_size`"),
    Bad("clip_boxes_to_image", lambda r: ((_boxes(r), (50, -1)), {}), ValueError, "`image_size`"),
    Bad("remove_small_boxes", lambda r: ((_boxes(r), "1"), {}), TypeError, "`min_size`"),
    Bad("remove_small_boxes", lambda r: ((_boxes(r), float("nan")), {}), ValueError, "`min_size`"),
]

EXEMPT = {"BOX_FORMATS": "a constant tuple of format names"}
