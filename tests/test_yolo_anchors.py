"""Tests of refdet.yolo.anchors: dimension clusters, YOLOv5 autoanchor, anchor order, anchor points.

Golden values carry their arithmetic; ``make_anchors`` is compared bit for bit with ultralytics; the
autoanchor metric with YOLOv5's ``check_anchors.metric`` (ultralytics 8.x no longer ships autoanchor,
so the six lines of YOLOv5 v7.0 ``utils/autoanchor.py`` are transcribed in torch below, cited).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.testing import strategies_yolo as ys
from refdet.yolo import anchors as A


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


# --------------------------------------------------------------------------------------------- wh_iou

def test_wh_iou_golden():
    # (10, 20) vs (20, 10), centre-aligned: inter = 10 * 10 = 100, union = 200 + 200 - 100 = 300
    got = A.wh_iou(np.array([[10.0, 20.0]]), np.array([[20.0, 10.0], [10.0, 20.0], [0.0, 0.0]]))
    np.testing.assert_allclose(got, [[100 / 300, 1.0, 0.0]], rtol=1e-15)


def test_wh_iou_zero_area_pair_is_zero_not_nan():
    assert A.wh_iou(np.zeros((1, 2)), np.zeros((1, 2)))[0, 0] == 0.0


# ---------------------------------------------------------------------------------- dimension clusters

def test_dimension_clusters_golden_two_groups():
    # two obvious groups: {(10, 10), (11, 9)} -> mean (10.5, 9.5); {(100, 50), (98, 52)} -> (99, 51).
    wh = np.array([[10, 10], [11, 9], [100, 50], [98, 52]], dtype=float)
    for seed in range(6):       # every initial pair converges (two small seeds: (100, 50) first joins (10, 10))
        r = A.dimension_clusters(wh, 2, rng=seed)
        np.testing.assert_allclose(r.anchors, [[10.5, 9.5], [99.0, 51.0]], rtol=1e-15)
        assert r.assignment.tolist() == [0, 0, 1, 1]
    # mean best IoU: (10, 10) vs (10.5, 9.5): inter 10 * 9.5 = 95, union 100 + 99.75 - 95 = 104.75
    ious = A.wh_iou(wh, r.anchors).max(axis=1)
    assert abs(ious[0] - 95 / 104.75) < 1e-15
    assert abs(r.mean_iou - ious.mean()) < 1e-15


def test_dimension_clusters_deterministic_under_rng_and_sorted():
    wh = np.random.default_rng(0).uniform(2, 300, size=(200, 2))
    a = A.dimension_clusters(wh, 5, rng=7)
    b = A.dimension_clusters(wh, 5, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.anchors, b.anchors)
    area = a.anchors.prod(axis=1)
    assert np.all(np.diff(area) >= 0)
    # converged: each box sits with its best centroid (largest IoU, first on ties)
    assert np.array_equal(a.assignment, np.argmax(A.wh_iou(wh, a.anchors), axis=1))


@given(ys.box_sizes(min_n=3, max_n=30), st.integers(1, 3), st.integers(0, 100))
def test_dimension_clusters_properties(wh, k, seed):
    k = min(k, np.unique(wh, axis=0).shape[0])
    r = A.dimension_clusters(wh, k, rng=seed)
    assert r.anchors.shape == (k, 2) and np.all(r.anchors > 0)
    assert 0 < r.mean_iou <= 1
    assert np.array_equal(r.assignment, np.argmax(A.wh_iou(wh, r.anchors), axis=1)) or r.iterations == 300


def test_dimension_clusters_bad_input():
    with pytest.raises(ValueError, match="`k`"):
        A.dimension_clusters(np.ones((3, 2)), 2)             # one distinct size only
    with pytest.raises(ValueError, match="`wh`.*positive"):
        A.dimension_clusters(np.array([[1.0, 0.0]]), 1)
    with pytest.raises(ValueError, match="`wh`.*NaN"):
        A.dimension_clusters(np.array([[1.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="`center`"):
        A.dimension_clusters(np.array([[1.0, 2.0]]), 1, center="mode")


# -------------------------------------------------------------------------------------- autoanchor

def test_autoanchor_metric_golden_threshold_is_strict():
    # box (10, 20) vs anchor (10, 10): r = (1, 2) -> min(r, 1/r) = (1, 0.5) -> x = 0.5
    #                  vs anchor (40, 80): r = (0.25, 0.25) -> x = 0.25 (exactly 1/thr: NOT above)
    # box (40, 40) vs (10, 10): r = (4, 4) -> 0.25 (not above); vs (40, 80): (1, 0.5) -> 0.5
    fit = A.autoanchor_metric(np.array([[10.0, 20.0], [40.0, 40.0]]), np.array([[10.0, 10.0], [40.0, 80.0]]))
    np.testing.assert_array_equal(fit.ratio, [[0.5, 0.25], [0.25, 0.5]])
    assert fit.aat == 1.0 and fit.bpr == 1.0
    assert A.anchor_fitness(np.array([[10.0, 20.0], [40.0, 40.0]]), np.array([[10.0, 10.0], [40.0, 80.0]])) == 0.5
    # a box only matched at exactly the threshold counts for nothing
    fit = A.autoanchor_metric(np.array([[40.0, 40.0]]), np.array([[10.0, 10.0]]))
    assert fit.bpr == 0.0 and fit.aat == 0.0


def _yolov5_metric(torch, wh, k, thr):
    """YOLOv5 v7.0 utils/autoanchor.py check_anchors.metric, transcribed (the reference)."""
    r = wh[:, None] / k[None]
    x = torch.min(r, 1 / r).min(2)[0]  # ratio metric
    best = x.max(1)[0]  # best_x
    aat = (x > 1 / thr).float().sum(1).mean()  # anchors above threshold
    bpr = (best > 1 / thr).float().mean()  # best possible recall
    return bpr, aat


@given(ys.box_sizes(min_n=1, max_n=60, high=400.0, grid=0.5), ys.box_sizes(min_n=1, max_n=9, high=400.0),
       st.sampled_from([2.0, 3.0, 4.0, 5.5]))
def test_autoanchor_metric_matches_yolov5_float32(wh, k, thr):
    torch = _torch()
    try:  # a future ultralytics may ship autoanchor again: prefer it
        from ultralytics.utils.autoanchor import check_anchors  # noqa: F401
    except ImportError:
        pass
    w32, k32 = wh.astype(np.float32), k.astype(np.float32)
    bpr, aat = _yolov5_metric(torch, torch.from_numpy(w32), torch.from_numpy(k32), thr)
    fit = A.autoanchor_metric(w32, k32, thr=thr)
    assert fit.bpr == float(bpr)
    assert abs(fit.aat - float(aat)) <= 1e-6 * max(1.0, float(aat))


def test_kmean_anchors_deterministic_and_improving():
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal([20, 30], 4, (100, 2)), rng.normal([120, 80], 15, (100, 2)),
                         rng.normal([300, 350], 40, (100, 2))])
    wh = np.abs(wh) + 1
    a = A.kmean_anchors(wh, 6, gen=200, rng=1)
    b = A.kmean_anchors(wh, 6, gen=200, rng=1)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    assert a.kmeans_ok
    assert np.all(np.diff(a.anchors.prod(axis=1)) >= 0) and np.all(a.anchors >= 2.0)
    # the evolution only accepts strict improvements
    assert a.fitness >= A.anchor_fitness(wh[(wh >= 2).any(axis=1)], a.initial)
    assert abs(a.fitness - A.anchor_fitness(wh, a.anchors)) < 1e-12
    assert a.bpr == A.autoanchor_metric(wh, a.anchors).bpr and a.bpr > 0.9


def test_kmean_anchors_random_init_fallback():
    # a single distinct size: zero spread, k-means cannot run -> YOLOv5's random initialisation
    wh = np.full((20, 2), 30.0)
    r = A.kmean_anchors(wh, 3, gen=50, rng=0, img_size=64)
    assert not r.kmeans_ok
    assert np.all(r.initial <= 64) and r.anchors.shape == (3, 2)


def test_kmean_anchors_bad_input():
    with pytest.raises(ValueError, match="`wh`.*at least n"):
        A.kmean_anchors(np.full((2, 2), 10.0), 3)
    with pytest.raises(ValueError, match="`thr`"):
        A.kmean_anchors(np.full((5, 2), 10.0), 2, thr=1.0)


# ---------------------------------------------------------------------------------- anchor order

def test_check_anchor_order_golden():
    # mean areas per level: 100 * 100 = 10000, then 10 * 10 = 100: decreasing while strides increase
    big_first = np.array([[[100.0, 100.0]], [[10.0, 10.0]]])
    out, flipped = A.check_anchor_order(big_first, [8, 32])
    assert flipped and out.tolist() == [[[10.0, 10.0]], [[100.0, 100.0]]]
    out, flipped = A.check_anchor_order(out, [8, 32])
    assert not flipped
    # equal first and last areas (da = 0): left as given
    eq = np.array([[[10.0, 10.0]], [[5.0, 20.0]]])
    assert not A.check_anchor_order(eq, [8, 32])[1]
    # never writes into its input
    assert big_first[0, 0, 0] == 100.0


def test_check_anchor_order_bad_input():
    with pytest.raises(ValueError, match="`strides`"):
        A.check_anchor_order(np.ones((2, 3, 2)), [8, 16, 32])
    with pytest.raises(ValueError, match="`anchors`"):
        A.check_anchor_order(-np.ones((2, 3, 2)), [8, 16])


# ---------------------------------------------------------------------------------- anchor points

def test_make_anchors_golden():
    # 2 x 3 map, stride 8: points (x + 0.5, y + 0.5), row-major
    p, s = A.make_anchors([(2, 3)], [8])
    assert p.dtype == np.float32
    assert p.tolist() == [[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]]
    assert s.shape == (6, 1) and np.all(s == 8)
    p0, _ = A.make_anchors([(1, 2)], [8], grid_cell_offset=0.0)      # YOLOX's grid
    assert p0.tolist() == [[0.0, 0.0], [1.0, 0.0]]


@given(ys.pyramid_grids(), st.sampled_from([np.float32, np.float64]), st.sampled_from([0.0, 0.5]))
def test_make_anchors_matches_ultralytics(grid, dtype, offset):
    torch = _torch()
    tal = pytest.importorskip("ultralytics.utils.tal")
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    feats = [torch.zeros(1, 1, h, w, dtype=tdt) for h, w in grid["feature_sizes"]]
    ref_p, ref_s = tal.make_anchors(feats, torch.tensor(grid["strides"]), offset)
    p, s = A.make_anchors(grid["feature_sizes"], grid["strides"], grid_cell_offset=offset, dtype=dtype,
                          image_size=grid["image_size"])
    assert p.dtype == ref_p.numpy().dtype
    np.testing.assert_array_equal(p, ref_p.numpy())
    np.testing.assert_array_equal(s, ref_s.numpy())


def test_make_anchors_bad_input():
    with pytest.raises(ValueError, match="`strides`.*one stride per feature map"):
        A.make_anchors([(4, 4), (2, 2)], [8])
    with pytest.raises(ValueError, match=r"`feature_sizes\[1\]`.*does not match image_size"):
        A.make_anchors([(8, 8), (3, 3)], [8, 16], image_size=(64, 64))
    with pytest.raises(ValueError, match="`strides`.*positive"):
        A.make_anchors([(4, 4)], [0])
    with pytest.raises(TypeError, match="`dtype`"):
        A.make_anchors([(4, 4)], [8], dtype=np.int32)
