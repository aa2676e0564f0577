"""Contract cases for refdet.roi (RoIAlign, RoI pooling, crop_and_resize, FPN levels, multi-scale RoIAlign)."""
import numpy as np

from refdet import roi, roi_heads
from tests.contract import Bad, Case


def _x(rng, shape=(2, 3, 9, 11)):
    return rng.standard_normal(shape)


def _rois(rng, n=5, batch=2, extent=40.0):
    xy = rng.uniform(-4, extent, size=(n, 2))
    wh = rng.uniform(0, extent / 2, size=(n, 2))
    return np.concatenate([rng.integers(0, batch, (n, 1)), xy, xy + wh], axis=1)


def _crop_boxes(rng, n=4):
    return rng.uniform(-0.1, 1.1, size=(n, 4))


def _align(rng):
    return (_x(rng), _rois(rng), (3, 2), 0.25), {"sampling_ratio": 2, "aligned": True}


def _bwd(fwd, make):
    def m(rng):
        args, kw = make(rng)
        y, cache = fwd(*args, **kw)
        return (rng.standard_normal(y.shape), cache), {}
    return m


def _pool(rng):
    return (_x(rng), [_rois(rng)[:3, 1:], _rois(rng)[:2, 1:]], 2, 0.25), {}


def _crop(rng):
    return (_x(rng), _crop_boxes(rng), np.array([0, 1, 1, 0]), (3, 4)), {"extrapolation_value": 0.5}


def _tfpool(rng):
    return (_x(rng), _crop_boxes(rng), np.array([0, 1, 1, 0])), {"crop_size": 6}


def _feats(rng):
    return [rng.standard_normal((2, 3, 32 // s, 48 // s)) for s in (4, 8, 16)]


def _ms(rng):
    return (_feats(rng), [_rois(rng, 4, 1, 40)[:, 1:] * 4, _rois(rng, 3, 1, 40)[:, 1:] * 4], 2), \
        {"image_sizes": [(32, 48), (30, 40)]}


def _level_boxes(rng):
    return (_rois(rng, 8, 1, 600)[:, 1:],), {"convention": "detectron2"}


def _props(rng, B=2, counts=(30, 12)):
    n = sum(counts)
    xy = rng.uniform(0, 60, (B, n, 2))
    return (np.concatenate([xy, xy + rng.uniform(0, 30, (B, n, 2))], axis=2), rng.normal(size=(B, n)),
            [(64, 80), (70, 50)], list(counts))


def _select(rng, counts=(30, 12)):
    n = sum(counts)
    xy = rng.uniform(0, 60, (n, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(4, 30, (n, 2))], axis=1)
    return (rng.normal(size=(2, n)), rng.normal(scale=0.3, size=(2, n, 4)), anchors, [(64, 80), (70, 50)],
            list(counts)), {"convention": "detectron2"}


def _sample_args(rng):
    props = [np.array([[0, 0, 10, 10], [1, 1, 9, 11], [20, 20, 30, 30], [40, 5, 50, 25.0]]),
             rng.uniform(0, 30, (5, 2)) @ np.array([[1, 0, 1, 0], [0, 1, 0, 1.0]]) + [0, 0, 5, 5]]
    gts = [np.array([[0, 0, 10, 10], [22, 20, 31, 29.0]]), np.zeros((0, 4))]
    return (props, gts, [np.array([1, 2]), np.zeros(0, np.int64)]), {"rng": 0, "batch_size_per_image": 4}


def _head(rng):
    return (roi_heads.box_head_init(12, 3, representation_size=6, rng=1, dtype=np.float64),
            rng.standard_normal((5, 3, 2, 2))), {}


def _loss(rng):
    return (rng.standard_normal((5, 3)), rng.standard_normal((5, 12)), np.array([1, 0, 2, 2, 0]),
            rng.standard_normal((5, 4))), {}


CASES = [
    Case("filter_proposals", lambda r: (_props(r), {"training": True})),
    Case("select_proposals", _select),
    Case("top_k_per_level", lambda r: ((r.integers(0, 5, 20).astype(float), [12, 8], 5), {})),
    Case("sample_rois", _sample_args),
    Case("class_specific_targets", lambda r: ((r.standard_normal((4, 4)), np.array([0, 2, 1, -1]), 3), {})),
    Case("box_head_init", lambda r: ((12, 3), {"representation_size": 6, "rng": 0})),
    Case("box_head_forward", _head),
    Case("box_head_backward", lambda r: ((tuple(r.standard_normal(a.shape) for a in roi_heads.box_head_forward(
        *_head(r)[0])[0]), roi_heads.box_head_forward(*_head(r)[0])[1]), {})),
    Case("fastrcnn_loss_forward", _loss),
    Case("fastrcnn_loss_backward", lambda r: (((1.0, 0.5), roi_heads.fastrcnn_loss_forward(*_loss(r)[0])[1]), {})),
    Case("fastrcnn_postprocess", lambda r: ((r.standard_normal((6, 3)), r.standard_normal((6, 12)) * 0.2,
                                             [np.array([[0, 0, 10, 10], [2, 2, 12, 12], [5, 5, 9, 20.0]]),
                                              np.array([[0, 0, 4, 4], [1, 1, 5, 5], [30, 30, 40, 40.0]])],
                                             [(20, 20), (40, 40)]), {"score_thresh": 0.0})),
    Case("roi_align_forward", _align),
    Case("roi_align_backward", _bwd(roi.roi_align_forward, _align)),
    Case("roi_align", lambda r: ((_x(r), [_rois(r)[:, 1:]], 2), {"convention": "mmdet"})),
    Case("onnx_roi_align", lambda r: ((_x(r), _rois(r)[:, 1:], r.integers(0, 2, 5)),
                                      {"output_height": 2, "output_width": 3, "mode": "max"}),
         box_args={1: "rois"}),
    Case("roi_pool_forward", _pool),
    Case("roi_pool_backward", _bwd(roi.roi_pool_forward, _pool)),
    Case("roi_pool", _pool),
    Case("crop_and_resize_forward", _crop, box_args={1: "boxes"}),
    Case("crop_and_resize_backward", _bwd(roi.crop_and_resize_forward, _crop)),
    Case("crop_and_resize", lambda r: (_crop(r)[0], {"method": "nearest"}), box_args={1: "boxes"}),
    Case("tf_normalized_boxes", lambda r: ((_rois(r)[:, 1:], (40, 60)), {}), box_args={0: "boxes"}),
    Case("tf_crop_and_pool_forward", _tfpool, box_args={1: "boxes"}),
    Case("tf_crop_and_pool_backward", _bwd(roi.tf_crop_and_pool_forward, _tfpool)),
    Case("assign_roi_levels", _level_boxes),
    Case("infer_level_scales", lambda r: (([(8, 12), (4, 6), (2, 3)], [(32, 48)]), {})),
    Case("multiscale_roi_align_forward", _ms),
    Case("multiscale_roi_align_backward", _bwd(roi.multiscale_roi_align_forward, _ms)),
    Case("multiscale_roi_align", lambda r: (_ms(r)[0], {"scales": [0.25, 0.125, 0.0625], "convention": "mmdet"})),
]

BAD = [
    Bad("sample_rois", lambda r: ((_sample_args(r)[0][0], _sample_args(r)[0][1], [np.array([1, 0]), np.zeros(0, int)]),
                                  {}), ValueError, r"`gt_labels\[0\]` must be object classes >= 1"),
    Bad("sample_rois", lambda r: (_sample_args(r)[0], {"positive_fraction": 1.5}), ValueError, r"`positive_fraction`"),
    Bad("class_specific_targets", lambda r: ((np.zeros((2, 4)), np.array([0, 1]), 2), {"background": "middle"}),
        ValueError, r"`background`"),
    Bad("box_head_init", lambda r: ((0, 3), {}), ValueError, r"`in_features` must be >= 1"),
    Bad("box_head_forward", lambda r: ((_head(r)[0][0], np.zeros((2, 13))), {}), ValueError,
        r"flatten to 13 values per RoI but fc6 takes 12"),
    Bad("box_head_backward", lambda r: (((None, None), None), {}), TypeError, r"`cache`"),
    Bad("fastrcnn_loss_forward", lambda r: ((np.zeros((2, 3)), np.zeros((2, 12)), np.array([1, 5]), np.zeros((2, 4))),
                                            {}), ValueError, r"`labels` must lie in \[0, 3\)"),
    Bad("fastrcnn_loss_backward", lambda r: (((1.0, 1.0), None), {}), TypeError, r"`cache`"),
    Bad("fastrcnn_postprocess", lambda r: ((np.zeros((2, 3)), np.zeros((2, 12)), [np.zeros((1, 4))], [(5, 5)]), {}),
        ValueError, r"`proposals` hold 1 RoIs"),
    Bad("filter_proposals", lambda r: (_props(r)[:3] + ([40, 1],), {}), ValueError,
        r"`num_anchors_per_level` must sum to the number of anchors N = 42"),
    Bad("filter_proposals", lambda r: (_props(r), {"nms_thresh": -0.1}), ValueError, r"`nms_thresh`"),
    Bad("filter_proposals", lambda r: (_props(r), {"convention": "onnx"}), ValueError, r"`convention`"),
    Bad("select_proposals", lambda r: (_select(r)[0][:2] + (np.zeros((5, 4)),) + _select(r)[0][3:], {}),
        ValueError, r"`anchors` must have shape"),
    Bad("roi_align", lambda r: ((_x(r), np.array([[0, 1, 1, np.nan, 3]]), 2), {}), ValueError, r"`boxes`.*NaN"),
    Bad("roi_align", lambda r: ((_x(r), np.array([[0, 1, 1, np.inf, 3]]), 2), {}), ValueError, r"`boxes`.*inf"),
    Bad("roi_align", lambda r: ((_x(r), np.array([[2, 1, 1, 2, 3.0]]), 2), {}), ValueError,
        r"`boxes\[:, 0\]` \(the batch index\) must lie in \[0, 2\)"),
    Bad("roi_align", lambda r: ((_x(r), np.array([[0.5, 1, 1, 2, 3.0]]), 2), {}), ValueError,
        r"`boxes\[:, 0\]` \(the batch index\) must hold integers"),
    Bad("roi_align_forward", lambda r: ((_x(r), _rois(r), -1), {}), ValueError, r"`output_size` must be >= 1"),
    Bad("roi_align_forward", lambda r: ((_x(r), _rois(r), 2), {"sampling_ratio": -3}), ValueError,
        r"`sampling_ratio` must be an integer >= -1"),
    Bad("roi_align_forward", lambda r: ((_x(r), _rois(r), 2, 0.0), {}), ValueError, r"`spatial_scale` must be > 0"),
    Bad("roi_align_forward", lambda r: ((_x(r), _rois(r), 2, -0.25), {}), ValueError, r"`spatial_scale` must be > 0"),
    Bad("roi_align_forward", lambda r: ((_x(r)[0], _rois(r), 2), {}), ValueError, r"`features` must be 4-D"),
    Bad("roi_align_forward", lambda r: (("x", _rois(r), 2), {}), TypeError, r"`features`"),
    Bad("roi_align_forward", lambda r: ((_x(r), _rois(r), 2), {"convention": "tf"}), ValueError, r"crop_and_resize"),
    Bad("roi_align_backward", lambda r: ((np.zeros((1, 1, 1, 1)), None), {}), TypeError, r"`cache`"),
    Bad("onnx_roi_align", lambda r: ((_x(r), _rois(r)[:, 1:], np.array([0, 0, 3, 0, 0])), {}), ValueError,
        r"`batch_indices` must lie in \[0, 2\)"),
    Bad("onnx_roi_align", lambda r: ((_x(r), _rois(r)[:, 1:], np.zeros(5, np.int64)), {"opset": 9}), ValueError,
        r"`opset` must be >= 10"),
    Bad("roi_pool", lambda r: ((_x(r), np.array([[0, 1, 1, np.nan, 3]]), 2), {}), ValueError, r"`boxes`.*NaN"),
    Bad("roi_pool", lambda r: ((_x(r), np.array([[5, 1, 1, 2, 3.0]]), 2), {}), ValueError, r"batch index"),
    Bad("roi_pool_forward", lambda r: ((_x(r), _rois(r), (2, 0)), {}), ValueError, r"`output_size\[1\]` must be >= 1"),
    Bad("roi_pool_forward", lambda r: ((_x(r), _rois(r), 2, float("inf")), {}), ValueError,
        r"`spatial_scale` must be finite"),
    Bad("roi_pool_backward", lambda r: ((np.zeros((1, 1, 1, 1)), ()), {}), TypeError, r"`cache`"),
    Bad("crop_and_resize", lambda r: ((_x(r), _crop_boxes(r), np.array([0, 1, 2, 0]), 2), {}), ValueError,
        r"`box_indices` must lie in \[0, 2\)"),
    Bad("crop_and_resize", lambda r: ((_x(r), _crop_boxes(r), np.array([0, 1]), 2), {}), ValueError,
        r"`box_indices` must have shape \(4,\)"),
    Bad("crop_and_resize_forward", lambda r: (_crop(r)[0], {"data_format": "CHWN"}), ValueError, r"`data_format`"),
    Bad("crop_and_resize_backward", lambda r: ((np.zeros((1, 1, 1, 1)), "cache"), {}), TypeError, r"`cache`"),
    Bad("tf_crop_and_pool_forward", lambda r: (_tfpool(r)[0], {"pool_size": 0}), ValueError,
        r"`pool_size` must be >= 1"),
    Bad("tf_crop_and_pool_backward", lambda r: ((np.zeros((1, 1, 1, 1)), None), {}), TypeError, r"`cache`"),
    Bad("tf_normalized_boxes", lambda r: ((_rois(r)[:, 1:], (0, 5)), {}), ValueError, r"`image_size` must be positive"),
    Bad("assign_roi_levels", lambda r: ((np.array([[0, 0, np.nan, 1.0]]),), {}), ValueError, r"`boxes`.*NaN"),
    Bad("assign_roi_levels", lambda r: ((np.zeros((2, 4)),), {"eps_outside": -1.0}), ValueError, r"`eps_outside`"),
    Bad("assign_roi_levels", lambda r: ((np.zeros((2, 4)),), {"plus_one": "yes"}), TypeError, r"`plus_one`"),
    Bad("infer_level_scales", lambda r: (([(0, 4)], [(8, 8)]), {}), ValueError,
        r"`feature_sizes\[0\]\[0\]` must be >= 1"),
    Bad("multiscale_roi_align_forward", lambda r: ((_feats(r), [_rois(r, 2, 1)[:, 1:]], 2), {}), ValueError,
        r"pass `scales`"),
    Bad("multiscale_roi_align_forward", lambda r: (([_x(r), _x(r, (2, 4, 5, 5))], _rois(r), 2), {"scales": [1, 0.5]}),
        ValueError, r"`features\[1\]` must have B = 2 and C = 3"),
    Bad("multiscale_roi_align_backward", lambda r: ((np.zeros((1, 1, 1, 1)), None), {}), TypeError, r"`cache`"),
]

EXEMPT = {
    "RoISamples": "NamedTuple type of sample_rois' result", "BoxHeadOutput": "NamedTuple type",
    "BoxHeadCache": "NamedTuple type", "FastRCNNLoss": "NamedTuple type", "FastRCNNLossCache": "NamedTuple type",
    "FastRCNNLossGrads": "NamedTuple type", "FastRCNNDetections": "NamedTuple type of fastrcnn_postprocess' result",
    "Proposals": "NamedTuple type of filter_proposals' result",
    "RoIAlignCache": "NamedTuple type", "RoIAlignGrads": "NamedTuple type",
    "RoIPoolCache": "NamedTuple type", "RoIPoolGrads": "NamedTuple type",
    "CropAndResizeCache": "NamedTuple type", "CropAndResizeGrads": "NamedTuple type",
    "TFCropAndPoolCache": "NamedTuple type", "TFCropAndPoolGrads": "NamedTuple type",
    "MultiScaleRoIAlignCache": "NamedTuple type", "MultiScaleRoIAlignGrads": "NamedTuple type",
}
