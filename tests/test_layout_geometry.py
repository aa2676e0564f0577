"""Bits independent of memory layout: every public function of boxes, anchors, box_coder, matcher,
sampler and targets gives bit-identical results for C-ordered, Fortran-ordered, strided (also
negative strides) and read-only views of the same values (issue 12, item 5)."""
import numpy as np
import pytest

import refdet
from tests._layouts import LAYOUTS as _LAYOUTS
from tests._layouts import layout

# --------------------------------------------------------------------------------------------------
# layouts of one array (same values, other memory)
# --------------------------------------------------------------------------------------------------


def _layout(kind):
    return lambda x: layout(x, kind)


LAYOUTS = {kind: _layout(kind) for kind in _LAYOUTS}
_c, _f, _strided, _reversed, _readonly = (LAYOUTS[k] for k in _LAYOUTS)


def _apply(obj, f):
    if isinstance(obj, np.ndarray):
        return f(obj)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_apply(o, f) for o in obj)
    if isinstance(obj, list):
        return [_apply(o, f) for o in obj]
    if isinstance(obj, dict):
        return {k: _apply(v, f) for k, v in obj.items()}
    return obj


def _same_bits(a, b, path="result"):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.shape == b.shape and a.dtype == b.dtype, (path, a.shape, b.shape, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            nan = np.isnan(a)
            np.testing.assert_array_equal(nan, np.isnan(b), err_msg=path)
            ui = {2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
            np.testing.assert_array_equal(np.where(nan, 0, a).view(ui), np.where(nan, 0, b).view(ui), err_msg=path)
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
        return
    if isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_bits(x, y, f"{path}[{getattr(a, '_fields', range(len(a)))[i]}]")
        return
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same_bits(a[k], b[k], f"{path}[{k!r}]")
        return
    if isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
        return
    assert type(a) is type(b) and a == b, (path, a, b)


# --------------------------------------------------------------------------------------------------
# one call per public function (arrays in every argument that takes one)
# --------------------------------------------------------------------------------------------------


def _boxes(g, n, dtype=np.float64, lo=-20.0, hi=80.0, degenerate=True):
    xy = g.uniform(lo, hi, size=(n, 2))
    wh = g.uniform(0, 40, size=(n, 2))
    if degenerate:
        wh[:2] = 0                                          # points: zero width and height
    return np.concatenate([xy, xy + wh], axis=1).astype(dtype)


def _iou(g, m, n, dtype):
    return np.round(g.uniform(0, 1, size=(m, n)), 1).astype(dtype)    # ties and exact thresholds


def _decode_cache(g):
    _, cache = refdet.decode_boxes_forward(g.normal(size=(7, 8)).astype(np.float32), _boxes(g, 7, np.float32),
                                           weights=(10, 10, 5, 5))
    return cache


def _cases():
    g = np.random.default_rng(0)
    f32 = np.float32
    lab = g.choice([-1, 0, 1, 2], size=300, p=[0.2, 0.5, 0.2, 0.1])
    gts = _boxes(g, 4, lo=0, hi=50, degenerate=False)   # SSD's matcher refuses the NaN IoU of two points
    cache = _decode_cache(g)
    c = [
        ("box_convert", (_boxes(g, 9), "xyxy", "cxcywh"), {}),
        ("box_convert", (_boxes(g, 9, f32), "xywh", "xyxy"), {}),
        ("box_area", (_boxes(g, 9, f32),), {}),
        ("box_area", (_boxes(g, 9),), {"convention": "caffe"}),
        ("clip_boxes_to_image", (_boxes(g, 9), (50, 60)), {}),
        ("remove_small_boxes", (_boxes(g, 9, f32), 1.0), {}),
        ("boxes_inside_image", (_boxes(g, 9), (50, 60)), {"allowed_border": 0}),
        ("cell_anchors", (np.array([32.0, 45.0, 64.0]), np.array([0.5, 1.0, 2.0])), {"dtype": f32}),
        ("cell_anchors", (np.array([32.0, 64.0]), np.array([0.5, 1.0, 2.0])), {"convention": "caffe"}),
        ("grid_anchors", (refdet.cell_anchors([32, 64], [0.5, 1, 2]), (5, 7), 16), {"offset": 0.5}),
        ("faster_rcnn_anchors", (16, np.array([0.5, 1.0, 2.0]), np.array([8.0, 16.0, 32.0])), {}),
        ("octave_sizes", (np.array([32.0, 64.0]), 3), {}),
        ("pyramid_anchors", ((64, 96), [(8, 12), (4, 6)], None, np.array([32.0, 64.0]), np.array([0.5, 1.0, 2.0])),
         {"dtype": f32}),
        ("pyramid_anchors", ((64, 96), [(8, 12)], [8], np.array([[24.0, 32.0]]), np.array([0.5, 1.0])),
         {"convention": "caffe"}),
        ("anchors_inside_image", (_boxes(g, 9), (60, 70)), {"allowed_border": 0}),
        ("ssd_sizes_from_ratios", (300, 6, 0.2, 0.9), {}),
        ("ssd_default_boxes", ((300, 300), [(10, 10), (5, 5)]),
         {"aspect_ratios": [np.array([2.0]), np.array([2.0, 3.0])], "scales": np.array([0.2, 0.4, 0.6]),
          "steps": np.array([30.0, 60.0]), "dtype": f32}),
        # reference boxes of zero size are refused (a caller error, tests/test_hardening_box_coder.py)
        ("encode_boxes", (_boxes(g, 9, f32, lo=1), _boxes(g, 9, f32, lo=1, degenerate=False)),
         {"weights": (10, 10, 5, 5)}),
        ("encode_boxes", (_boxes(g, 9), _boxes(g, 9, degenerate=False)),
         {"convention": "mmdet", "weights": np.array([.1, .1, .2, .2])}),
        ("decode_boxes", (g.normal(size=(9, 8)).astype(f32), _boxes(g, 9, f32)), {}),
        ("decode_boxes", (g.normal(size=(9, 4)) * 5, _boxes(g, 9)), {"convention": "tf"}),
        ("decode_boxes_forward", (g.normal(size=(9, 4)).astype(f32), _boxes(g, 9, f32)), {}),
        ("decode_boxes_backward", (g.normal(size=(7, 8)).astype(f32), cache), {}),
        ("match", (_iou(g, 5, 40, f32),), {}),
        ("match", (_iou(g, 5, 40, np.float64),), {"convention": "mmdet"}),
        ("match_details", (_iou(g, 5, 40, f32),), {"convention": "tf"}),
        ("ssd_match", (_iou(g, 5, 40, f32), 0.5), {}),
        ("ssd_match", (_iou(g, 5, 40, np.float64), 0.5), {"convention": "caffe"}),
        ("sample_balanced", (lab.astype(f32), 64, 0.25), {"rng": 3}),
        ("sample_balanced", (lab,), {"permutation": (g.permutation(int((lab >= 1).sum())),
                                                     g.permutation(int((lab == 0).sum())))}),
        ("sample_balanced_indices", (lab,), {"rng": 1}),
        ("sample_labels", (lab,), {"rng": 2}),
        ("sample_counts", (20, 1000), {}),
        ("rpn_targets", (_boxes(g, 60, f32, lo=0, degenerate=False), gts.astype(f32), (64, 64)),
         {"rng": 0, "level": np.arange(60) % 3}),
        ("rpn_targets", (_boxes(g, 60, lo=0), gts, (64, 64)), {"convention": "caffe", "sample": False}),
        ("retinanet_targets", (_boxes(g, 60, lo=0, degenerate=False), gts, np.array([0, 2, 1, 1]), 3), {"convention": "mmdet"}),
        ("ssd_targets", (_boxes(g, 60, f32, lo=0, degenerate=False), gts.astype(f32), np.array([1, 2, 3, 1])), {}),
        ("ssd_targets", (_boxes(g, 60, lo=0, degenerate=False), gts, np.array([1, 2, 3, 1])), {"convention": "caffe"}),
    ]
    return c


CASES = _cases()
_MODULES = ("boxes", "anchors", "box_coder", "matcher", "sampler", "targets")


def test_every_public_function_of_the_geometry_modules_has_a_layout_case():
    import importlib
    covered = {name for name, _, _ in CASES}
    missing = []
    for mod in _MODULES:
        m = importlib.import_module(f"refdet.{mod}")
        for name in m.__all__:
            obj = getattr(m, name)
            if callable(obj) and not isinstance(obj, type) and name not in covered:
                missing.append(f"{mod}.{name}")
    assert not missing, missing


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("layout", [k for k in LAYOUTS if k != "C"])
def test_layout_does_not_change_bits(case, layout):
    name, args, kwargs = case
    f = getattr(refdet, name)
    base = f(*_apply(args, _c), **_apply(kwargs, _c))
    other = f(*_apply(args, LAYOUTS[layout]), **_apply(kwargs, LAYOUTS[layout]))
    _same_bits(base, other, name)


def test_layouts_really_differ():
    x = np.arange(12.0).reshape(3, 4)
    assert _f(x).flags.f_contiguous and not _f(x).flags.c_contiguous
    assert not _strided(x).flags.c_contiguous and not _strided(x).flags.f_contiguous
    assert _reversed(x).strides[0] < 0
    assert not _readonly(x).flags.writeable
    for f in LAYOUTS.values():
        np.testing.assert_array_equal(f(x), x)


def test_same_bits_can_fail():
    one = np.ones(3, np.float32)
    with pytest.raises(AssertionError):
        _same_bits(one, np.nextafter(one, np.float32(2)))
    with pytest.raises(AssertionError):
        _same_bits(np.zeros(2), -np.zeros(2))
    with pytest.raises(AssertionError):
        _same_bits((one, 1), (one, 2))
    _same_bits((one, np.array([np.nan])), (one.copy(), np.array([np.nan])))
