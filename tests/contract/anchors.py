import numpy as np

from tests.contract import Bad, Case


def _cell(rng):
    s = rng.uniform(8, 64, size=(6, 2))
    return np.concatenate([-s, s], axis=1)


def _anchors(rng, n=8):
    xy = rng.uniform(-40, 90, size=(n, 2))
    wh = rng.uniform(0, 60, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


_SSD300 = dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
               scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])

CASES = [
    Case("cell_anchors", lambda r: ((np.array([32.0, 64.0]), np.array([0.5, 1.0, 2.0])), {})),
    Case("grid_anchors", lambda r: ((_cell(r), (3, 4), 16), {"offset": 0.5}), box_args={0: "cell"}),
    Case("faster_rcnn_anchors", lambda r: ((16, np.array([0.5, 1.0, 2.0]), np.array([8.0, 16.0])), {})),
    Case("octave_sizes", lambda r: ((np.array([32.0, 64.0]), 3), {})),
    Case("pyramid_anchors", lambda r: (((64, 96), [(8, 12), (4, 6)], None, np.array([32.0, 64.0]),
                                        np.array([0.5, 1.0, 2.0])), {})),
    Case("anchors_inside_image", lambda r: ((_anchors(r), (60, 70)), {"allowed_border": 0}),
         box_args={0: "anchors"}),
    Case("ssd_sizes_from_ratios", lambda r: ((300, 6, 0.2, 0.9), {})),
    Case("ssd_default_boxes", lambda r: (((300, 300), [38, 19, 10, 5, 3, 1]), dict(_SSD300))),
]

BAD = [
    Bad("cell_anchors", lambda r: (((32,), (0.5, 1)), {"convention": "keras"}), ValueError, "`convention`.*'keras'"),
    Bad("cell_anchors", lambda r: (((32, -1), (0.5, 1)), {}), ValueError, "`sizes` must be positive"),
    Bad("cell_anchors", lambda r: (((32,), ()), {}), ValueError, "`aspect_ratios` must not be empty"),
    Bad("cell_anchors", lambda r: (((32,), (1.0, float("nan"))), {}), ValueError, "`aspect_ratios`.*NaN"),
    Bad("cell_anchors", lambda r: (("32", (1.0,)), {}), TypeError, "`sizes`"),
    Bad("cell_anchors", lambda r: (((32,), (1.0,)), {"rounding": "floor"}), ValueError, "`rounding`.*'floor'"),
    Bad("cell_anchors", lambda r: (((32,), (1.0,)), {"dtype": np.int32}), TypeError, "`dtype`"),
    Bad("grid_anchors", lambda r: ((_cell(r), (3, 4), 0), {}), ValueError, "`stride` must be > 0"),
    Bad("grid_anchors", lambda r: ((_cell(r), (3, -4), 16), {}), ValueError, "`feature_size"),
    Bad("grid_anchors", lambda r: ((_cell(r), (3, 4), 16), {"offset": "centre"}), ValueError, "`offset`"),
    Bad("faster_rcnn_anchors", lambda r: ((0,), {}), ValueError, "`base_size` must be > 0"),
    Bad("octave_sizes", lambda r: (((32,), 0), {}), ValueError, "`scales_per_octave` must be >= 1"),
    Bad("pyramid_anchors", lambda r: (((64, 64), [(8, 8), (4, 4)], [8], (32, 64), (1.0,)), {}),
        ValueError, "`strides` must have one entry per feature map"),
    Bad("pyramid_anchors", lambda r: (((64, 64), [(8, 8), (4, 4)], None, (32, 64, 128), (1.0,)), {}),
        ValueError, "`sizes` must have one entry per feature map"),
    Bad("pyramid_anchors", lambda r: (((64, 64), [(0, 8)], None, (32,), (1.0,)), {}),
        ValueError, "`strides` cannot be derived"),
    Bad("pyramid_anchors", lambda r: (((64, 64), [], None, (32,), (1.0,)), {}),
        ValueError, "`feature_sizes` must name at least one"),
    Bad("pyramid_anchors", lambda r: (((64, 64), [(8, 8)], None, (32,), (1.0,)), {"center_offset": "middle"}),
        ValueError, "`center_offset`"),
    Bad("anchors_inside_image", lambda r: ((_anchors(r), (60,)), {}), ValueError, "`image_size`"),
    Bad("ssd_sizes_from_ratios", lambda r: ((300, 2), {}), ValueError, "`num_levels` must be >= 3"),
    Bad("ssd_default_boxes", lambda r: (((300, 300), [38, 19]), {"aspect_ratios": [[2]]}),
        ValueError, "`aspect_ratios` must have one entry per feature map"),
    Bad("ssd_default_boxes", lambda r: (((300, 300), [38, 19]), {"aspect_ratios": [[2], [2]], "scales": [0.1]}),
        ValueError, "`scales` must have 3"),
    Bad("ssd_default_boxes", lambda r: (((300, 300), [38]), {"aspect_ratios": [[2]], "box_format": "xywh"}),
        ValueError, "`box_format`"),
    Bad("ssd_default_boxes", lambda r: (((300, 300), [38]), {"aspect_ratios": [[2]], "steps": [0]}),
        ValueError, "`steps` must be positive"),
]

EXEMPT = {}
