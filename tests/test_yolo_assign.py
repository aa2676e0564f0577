"""Tests of refdet.yolo.assign: TAL against ultralytics, SimOTA / ATSS golden vectors worked by hand,
DETR's Hungarian matcher against brute force and torch, the reference loop, bad input.

ultralytics' ``TaskAlignedAssigner.select_topk_candidates`` calls ``torch.topk``, whose order among
equal alignments is unspecified. The tie-rich differential test therefore subclasses the assigner and
replaces that one method by a stable top-k (equal values: lowest index first, refdet's documented
rule); everything else is ultralytics' own code. A second test runs the unmodified assigner on inputs
where no tie can reach the k-th place.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.reference import yolo as ref
from refdet.testing import strategies_yolo as ys
from refdet.yolo import assign as Y
from refdet.yolo.anchors import make_anchors


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def _stable_tal_class():
    """ultralytics' TaskAlignedAssigner with a stable top-k (the only change)."""
    torch = _torch()
    tal = pytest.importorskip("ultralytics.utils.tal")

    class StableTopkTAL(tal.TaskAlignedAssigner):
        def select_topk_candidates(self, metrics, topk_mask=None):
            k = min(self.topk, metrics.shape[-1])
            topk_idxs = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., :k]
            if topk_mask is None:
                topk_mask = (metrics.gather(-1, topk_idxs).max(-1, keepdim=True)[0] > self.eps).expand_as(topk_idxs)
            topk_idxs = topk_idxs.masked_fill(~topk_mask, 0)
            count = torch.zeros(metrics.shape, dtype=torch.int8)
            count.scatter_add_(-1, topk_idxs, torch.ones_like(topk_idxs, dtype=torch.int8))
            count.masked_fill_(count > 1, 0)
            return count

    return StableTopkTAL, tal.TaskAlignedAssigner


def _run_ultra(cls, case, num_classes):
    torch = _torch()
    t = torch.from_numpy
    a = cls(topk=case["topk"], num_classes=num_classes, alpha=case["alpha"], beta=6.0, stride=case["strides"])
    out = a(t(case["pred_scores"]), t(case["pred_boxes"]), t(case["anchor_points"]),
            t(case["gt_labels"][..., None].astype(np.float64)), t(case["gt_boxes"]),
            t(case["gt_mask"][..., None].astype(np.float64)))
    return [o.numpy() for o in out]


def _compare(r, out, K):
    tl, tb, ts, fg, gi = out
    assert np.array_equal(r.fg_mask, fg)
    assert np.array_equal(r.gt_index[fg], gi[fg])
    assert np.array_equal(r.labels[fg], tl[fg])
    np.testing.assert_array_equal(r.boxes[fg], tb[fg])
    np.testing.assert_allclose(Y.target_scores(r, K), ts, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------ TAL vs ultralytics

@given(ys.tal_inputs(ties=True))
def test_tal_matches_ultralytics_with_ties_and_empty_images(case):
    stable, _ = _stable_tal_class()
    K = case["pred_scores"].shape[-1]
    r = Y.task_aligned_assign(case["pred_scores"], case["pred_boxes"], case["anchor_points"], case["gt_labels"],
                              case["gt_boxes"], case["gt_mask"], strides=case["strides"], topk=case["topk"],
                              alpha=case["alpha"])
    _compare(r, _run_ultra(stable, case, K), K)


@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([3, 10, 13]))
def test_tal_matches_unmodified_ultralytics_without_boundary_ties(seed, topk):
    # one ground truth per image and predictions close to it: every candidate pair has a positive,
    # continuous alignment, so no two values meet at the k-th place and torch.topk's order is moot
    _, plain = _stable_tal_class()
    rng = np.random.default_rng(seed)
    ap, s = make_anchors([(8, 8), (4, 4), (2, 2)], [8.0, 16.0, 32.0], dtype=np.float64)
    pts = ap * s
    B, N, K = 2, pts.shape[0], 3
    xy = rng.uniform(0, 40, (B, 1, 2))
    gt = np.concatenate([xy, xy + rng.uniform(4, 24, (B, 1, 2))], -1)
    gt = np.concatenate([gt, np.zeros((B, 1, 4))], axis=1)                      # a padded row
    mask = np.array([[True, False]] * B)
    pb = gt[:, :1] + rng.uniform(-1, 1, (B, N, 4))
    case = dict(pred_scores=rng.uniform(0.05, 1, (B, N, K)), pred_boxes=pb, anchor_points=pts,
                gt_labels=rng.integers(0, K, (B, 2)), gt_boxes=gt, gt_mask=mask, strides=[8.0, 16.0, 32.0],
                topk=topk, alpha=1.0)
    r = Y.task_aligned_assign(case["pred_scores"], pb, pts, case["gt_labels"], gt, mask, strides=case["strides"],
                              topk=topk)
    _compare(r, _run_ultra(plain, case, K), K)


def test_tal_float32_matches_ultralytics():
    stable, _ = _stable_tal_class()
    rng = np.random.default_rng(11)
    ap, s = make_anchors([(8, 8), (4, 4), (2, 2)], [8.0, 16.0, 32.0])
    pts = (ap * s).astype(np.float32)
    B, N, K = 3, pts.shape[0], 5
    xy = rng.uniform(0, 48, (B, 4, 2))
    gt = np.concatenate([xy, xy + rng.uniform(2, 30, (B, 4, 2))], -1).astype(np.float32)
    c = rng.uniform(0, 64, (B, N, 2))
    pb = np.concatenate([c - 8, c + rng.uniform(1, 20, (B, N, 2))], -1).astype(np.float32)
    case = dict(pred_scores=rng.random((B, N, K)).astype(np.float32), pred_boxes=pb, anchor_points=pts,
                gt_labels=rng.integers(0, K, (B, 4)), gt_boxes=gt, gt_mask=np.ones((B, 4), bool),
                strides=[8.0, 16.0, 32.0], topk=10, alpha=0.5)
    r = Y.task_aligned_assign(case["pred_scores"], pb, pts, case["gt_labels"], gt, case["gt_mask"],
                              strides=case["strides"], topk=10, alpha=0.5)
    assert r.quality.dtype == np.float32
    tl, tb, ts, fg, gi = _run_ultra(stable, case, K)
    assert np.array_equal(r.fg_mask, fg) and np.array_equal(r.gt_index[fg], gi[fg])
    np.testing.assert_allclose(Y.target_scores(r, K), ts, rtol=1e-5, atol=1e-6)


def test_tal_no_ground_truth():
    r = Y.task_aligned_assign(np.full((2, 5, 3), 0.5), np.zeros((2, 5, 4)), np.zeros((5, 2)),
                              np.zeros((2, 0), np.int64), np.zeros((2, 0, 4)))
    assert np.all(r.gt_index == -1) and np.all(r.labels == 3) and not r.quality.any()


# ------------------------------------------------------------------------------ TAL golden, reference

def test_tal_golden_paper_profile():
    # three points on a row, one ground truth [0, 0, 24, 8] of class 0, overlap = IoU (the paper),
    # alpha = 1, beta = 2, topk = 2, eps = 0 (so the arithmetic is exact):
    #   point 0: score 0.9, pred [0, 0, 8, 8]  -> u = 64 / 192 = 1/3 -> t = 0.9 / 9     = 0.1
    #   point 1: score 0.5, pred [0, 0, 24, 8] -> u = 1            -> t = 0.5
    #   point 2: score 0.8, pred [8, 0, 24, 8] -> u = 2/3          -> t = 0.8 * 4 / 9  = 0.3556
    # top-2: points 1 and 2. quality = t * max u / max t = t * 1 / 0.5: 1.0 and 0.7111
    pts = np.array([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]])
    ps = np.array([[[0.9], [0.5], [0.8]]])
    pb = np.array([[[0, 0, 8, 8], [0, 0, 24, 8], [8, 0, 24, 8]]], dtype=float)
    r = Y.task_aligned_assign(ps, pb, pts, np.array([[0]]), np.array([[[0.0, 0, 24, 8]]]),
                              convention="paper", topk=2, beta=2.0, eps=0.0)
    assert r.gt_index.tolist() == [[-1, 0, 0]]
    np.testing.assert_allclose(r.quality, [[0.0, 1.0, 0.8 * 4 / 9 / 0.5]], rtol=1e-15)


def test_tal_claimed_twice_all_zero_overlaps_goes_to_gt0():
    # one point inside two ground truths, both select it, and the prediction overlaps neither
    # (CIoU clamped to 0). ultralytics' overlaps.max(1) then returns index 0 -- and with beta = 0 the
    # alignments are the scores, so both select it: the point is assigned to gt 0 with quality 0
    pts = np.array([[30.0, 30.0]])
    gt = np.array([[[20.0, 20, 40, 40], [25.0, 25, 35, 35]]])
    r = Y.task_aligned_assign(np.array([[[0.5, 0.7]]]), np.array([[[100.0, 100, 101, 101]]]), pts,
                              np.array([[1, 0]]), gt, topk=1, beta=0.0, min_side=None)
    assert r.gt_index.tolist() == [[0]] and r.labels.tolist() == [[1]]


@given(ys.tal_inputs(ties=True))
def test_tal_equals_reference_loop(case):
    r = Y.task_aligned_assign(case["pred_scores"], case["pred_boxes"], case["anchor_points"], case["gt_labels"],
                              case["gt_boxes"], case["gt_mask"], strides=case["strides"], topk=case["topk"],
                              alpha=case["alpha"])
    labels, gi, boxes, q = ref.task_aligned_assign(case["pred_scores"], case["pred_boxes"], case["anchor_points"],
                                                   case["gt_labels"], case["gt_boxes"], case["gt_mask"],
                                                   topk=case["topk"], alpha=case["alpha"], min_side=16.0)
    assert np.array_equal(r.gt_index, gi) and np.array_equal(r.labels, labels)
    np.testing.assert_array_equal(r.boxes, boxes)
    # u^6 and s^alpha: NumPy's vectorised pow and Python's libm pow may differ in the last place
    np.testing.assert_allclose(r.quality, q, rtol=1e-13, atol=0)


def test_tal_readonly_and_layout_independent():
    rng = np.random.default_rng(2)
    ap, s = make_anchors([(4, 4), (2, 2)], [8.0, 16.0], dtype=np.float64)
    pts = ap * s
    ps = np.round(rng.random((2, pts.shape[0], 3)), 1)
    c = rng.uniform(0, 32, (2, pts.shape[0], 2))
    pb = np.round(np.concatenate([c - 5, c + 5], -1))
    gt = np.array([[[0.0, 0, 20, 20], [10, 10, 30, 30]], [[5.0, 5, 25, 15], [0, 0, 0, 0]]])
    lab = np.array([[0, 2], [1, 0]])
    mask = np.array([[True, True], [True, False]])
    base = Y.task_aligned_assign(ps, pb, pts, lab, gt, mask, strides=[8.0, 16.0])
    ro = [np.array(a) for a in (ps, pb, pts, gt)]
    for a in ro:
        a.setflags(write=False)
    big = np.zeros((2, 2 * pts.shape[0], 4))
    big[:, ::2] = pb                                                             # a strided view
    other = Y.task_aligned_assign(np.asfortranarray(ro[0]), big[:, ::2], ro[2], lab, ro[3], mask,
                                  strides=[8.0, 16.0])
    for x, y in zip(base, other):
        np.testing.assert_array_equal(x, y)


def test_tal_bad_input():
    pts = np.zeros((3, 2))
    good = dict(pred_scores=np.full((1, 3, 2), 0.5), pred_boxes=np.zeros((1, 3, 4)), anchor_points=pts,
                gt_labels=np.array([[1]]), gt_boxes=np.array([[[0.0, 0, 5, 5]]]))
    bad = dict(good, pred_scores=np.full((1, 3, 2), np.nan))
    with pytest.raises(ValueError, match="`pred_scores`.*NaN"):
        Y.task_aligned_assign(**bad)
    with pytest.raises(ValueError, match="`gt_boxes`.*NaN"):
        Y.task_aligned_assign(**dict(good, gt_boxes=np.array([[[0.0, np.nan, 5, 5]]])))
    with pytest.raises(ValueError, match="`gt_labels`.*\\[0, 2\\)"):
        Y.task_aligned_assign(**dict(good, gt_labels=np.array([[2]])))
    with pytest.raises(ValueError, match="`pred_boxes`.*\\(B, N, 4\\)"):
        Y.task_aligned_assign(**dict(good, pred_boxes=np.zeros((1, 4, 4))))
    with pytest.raises(ValueError, match="`topk`"):
        Y.task_aligned_assign(**good, topk=0)
    with pytest.raises(ValueError, match="`convention`"):
        Y.task_aligned_assign(**good, convention="torchvision")


# ------------------------------------------------------------------------------ SimOTA

def _simota_case(second_pred_iou_one):
    # stride-8 points (4, 4), (12, 4) and a far one; gt [0, 0, 16, 8] class 0 (one class).
    # both near points are inside the box and within 2.5 strides of its centre (8, 4).
    pts = np.array([[4.0, 4.0], [12.0, 4.0], [100.0, 100.0]])
    strides = np.full(3, 8.0)
    pb = np.array([[0.0, 0, 16, 8], [0.0, 0, 8, 8], [96.0, 96, 104, 104]])
    if second_pred_iou_one:
        pb[1] = [0.0, 0, 16, 8]
    ps = np.array([[0.81], [0.25], [0.5]])
    return ps, pb, pts, strides


def test_simota_golden_dynamic_k_1():
    # costs (paper profile): cls = BCE(sqrt p, 1) = -ln sqrt p; iou = -ln(IoU + 1e-8)
    #   point 0: -ln 0.9 = 0.1054, IoU 1 -> cost 0.1054
    #   point 1: -ln 0.5 = 0.6931, IoU 64 / 128 = 0.5 -> + 3 * 0.6931 -> cost 2.7726
    # dynamic k = int(1 + 0.5) = 1 -> point 0 only; quality = its IoU, 1
    ps, pb, pts, strides = _simota_case(False)
    r = Y.simota_assign(ps, pb, pts, strides, np.array([0]), np.array([[0.0, 0, 16, 8]]), convention="paper")
    assert r.gt_index.tolist() == [0, -1, -1] and r.labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(r.quality, [1.0, 0, 0])


def test_simota_golden_dynamic_k_2_and_claimed_twice():
    # both predictions now overlap the gt fully: dynamic k = int(1 + 1) = 2 -> both points
    ps, pb, pts, strides = _simota_case(True)
    r = Y.simota_assign(ps, pb, pts, strides, np.array([0]), np.array([[0.0, 0, 16, 8]]), convention="paper")
    assert r.gt_index.tolist() == [0, 0, -1]
    # a second, identical ground truth: both take the same points at the same costs; each point
    # claimed twice keeps the cheapest, the first minimum -> ground truth 0 for both
    r = Y.simota_assign(ps, pb, pts, strides, np.array([0, 0]), np.array([[0.0, 0, 16, 8]] * 2), convention="paper")
    assert r.gt_index.tolist() == [0, 0, -1]


def test_simota_centre_prior_strict_and_profiles():
    # a point exactly on the border of the 1.5-stride square (YOLOX main) is outside (strict >)
    # gt centre (20, 20); square half side 1.5 * 8 = 12: x in (8, 32). Point x = 8 -> out; 8.5 -> in
    g = np.array([[16.0, 16, 24, 24]])
    pb = np.tile([[16.0, 16, 24, 24]], (2, 1))
    r = Y.simota_assign(np.full((2, 1), 0.5), pb, np.array([[8.0, 20], [8.5, 20]]), np.full(2, 8.0),
                        np.array([0]), g, convention="yolox")
    assert r.gt_index.tolist() == [-1, 0]
    np.testing.assert_array_equal(Y.simota_assign(np.zeros((0, 1)), np.zeros((0, 4)), np.zeros((0, 2)), np.zeros(0),
                                                  np.array([0]), g).gt_index, np.zeros(0))
    r = Y.simota_assign(np.full((2, 1), 0.5), pb, np.array([[8.0, 20], [8.5, 20]]), np.full(2, 8.0),
                        np.zeros(0, np.int64), np.zeros((0, 4)))
    assert r.gt_index.tolist() == [-1, -1]


# ------------------------------------------------------------------------------ ATSS

def _line_anchors():
    # level 0: 8 x 8 anchors centred at x = 4, 12, 20, 28 (y = 4); level 1: 16 x 16 at (8, 8), (24, 8)
    lvl0 = np.array([[8.0 * i, 0, 8.0 * i + 8, 8] for i in range(4)])
    lvl1 = np.array([[0.0, 0, 16, 16], [16.0, 0, 32, 16]])
    return np.concatenate([lvl0, lvl1]), [4, 2]


def test_atss_golden_threshold_hit_exactly():
    # gt = anchor 0 = [0, 0, 8, 8]; topk = 1 per level: anchor 0 (distance 0) and anchor 4
    # (distance |(4, 4) - (8, 8)| = 5.66). IoUs 1 and 64 / 256 = 0.25: mean 0.625.
    #   ddof = 0: std = 0.375, threshold 1.0 -> anchor 0 passes (IoU >= 1.0, inclusive, exactly)
    #   ddof = 1: std = 0.530, threshold 1.155 -> nothing passes
    anchors, nl = _line_anchors()
    g = np.array([[0.0, 0, 8, 8]])
    r = Y.atss_assign(anchors, nl, np.array([2]), g, num_classes=3, topk=1, ddof=0)
    assert r.gt_index.tolist() == [0, -1, -1, -1, -1, -1] and r.labels[0] == 2 and r.quality[0] == 1.0
    r = Y.atss_assign(anchors, nl, np.array([2]), g, num_classes=3, topk=1, ddof=1)
    assert np.all(r.gt_index == -1) and np.all(r.labels == 3)


def test_atss_golden_claimed_twice_takes_highest_iou():
    # level 0 only, topk = 2, ddof = 0.
    # gt A = [0, 0, 8, 8]: candidates anchor 0 (IoU 1), anchor 1 (IoU 0): threshold 0.5 + 0.5 = 1.0 -> a0
    # gt B = [0, 0, 8, 7]: IoU(a0) = 56 / 64 = 0.875, a1 0: threshold 0.4375 + 0.4375 = 0.875 -> a0;
    #   a0's centre (4, 4) is inside B with margin min(4, 4, 4, 3) = 3 > 0.01
    # a0 claimed by both: the larger IoU (A) wins
    anchors, nl = _line_anchors()
    g = np.array([[0.0, 0, 8, 7], [0.0, 0, 8, 8]])
    r = Y.atss_assign(anchors[:4], [4], np.array([0, 1]), g, num_classes=2, topk=2, ddof=0)
    assert r.gt_index.tolist() == [1, -1, -1, -1]
    r = Y.atss_assign(anchors[:4], [4], np.array([0]), g[:1], num_classes=2, topk=2, ddof=0)
    assert r.gt_index.tolist() == [0, -1, -1, -1] and r.quality[0] == 0.875


def test_atss_centre_margin_and_empty():
    anchors, nl = _line_anchors()
    # gt [0, 0, 8, 4.005]: anchor 0's centre y = 4 is inside by 0.005 < 0.01 -> not positive
    r = Y.atss_assign(anchors, nl, np.array([0]), np.array([[0.0, 0, 8, 4.005]]), num_classes=1, topk=1, ddof=0)
    assert r.gt_index[0] == -1
    r = Y.atss_assign(anchors, nl, np.zeros(0, np.int64), np.zeros((0, 4)), num_classes=1)
    assert np.all(r.gt_index == -1)
    with pytest.raises(ValueError, match="`num_level_anchors`"):
        Y.atss_assign(anchors, [4, 3], np.array([0]), np.array([[0.0, 0, 8, 8]]), num_classes=1)


# ------------------------------------------------------------------------------ Hungarian

@given(st.integers(1, 5), st.integers(0, 5), st.integers(0, 10 ** 6))
def test_hungarian_is_optimal_against_brute_force(Q, M, seed):
    rng = np.random.default_rng(seed)
    K = 3
    z = rng.standard_normal((Q, K + 1))
    pb = np.concatenate([rng.uniform(0.2, 0.8, (Q, 2)), rng.uniform(0.05, 0.4, (Q, 2))], 1)
    g = np.concatenate([rng.uniform(0.2, 0.8, (M, 2)), rng.uniform(0.05, 0.4, (M, 2))], 1)
    lab = rng.integers(0, K, M)
    r = Y.hungarian_match(z, pb, lab, g)
    n = min(Q, M)
    assert len(r.query_index) == n and np.all(np.diff(r.query_index) > 0)
    if n:
        best = min(sum(r.cost[q, m] for q, m in zip(qs, ms))
                   for qs in itertools.combinations(range(Q), n) for ms in itertools.permutations(range(M), n))
        assert abs(r.cost[r.query_index, r.gt_index].sum() - best) < 1e-12
    assert np.array_equal(r.assignment.gt_index >= 0, np.isin(np.arange(Q), r.query_index))
    assert np.all(r.assignment.labels[r.assignment.gt_index < 0] == K)


def test_hungarian_cost_matches_detr_formula_in_torch():
    torch = _torch()
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(4)
    z = rng.standard_normal((6, 4))
    pb = np.concatenate([rng.uniform(0.2, 0.8, (6, 2)), rng.uniform(0.05, 0.4, (6, 2))], 1)
    g = np.concatenate([rng.uniform(0.2, 0.8, (3, 2)), rng.uniform(0.05, 0.4, (3, 2))], 1)
    lab = np.array([2, 0, 2])
    # DETR models/matcher.py HungarianMatcher.forward (one image)
    out_prob = torch.tensor(z).softmax(-1)
    cost_class = -out_prob[:, torch.tensor(lab)]
    cost_bbox = torch.cdist(torch.tensor(pb), torch.tensor(g), p=1)
    xyxy = lambda b: torch.cat([b[:, :2] - 0.5 * b[:, 2:], b[:, :2] + 0.5 * b[:, 2:]], 1)  # noqa: E731
    cost_giou = -tv.ops.generalized_box_iou(xyxy(torch.tensor(pb)), xyxy(torch.tensor(g)))
    C = (5 * cost_bbox + 1 * cost_class + 2 * cost_giou).numpy()
    r = Y.hungarian_match(z, pb, lab, g)
    np.testing.assert_allclose(r.cost, C, rtol=1e-12, atol=1e-12)
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(C)
    assert r.query_index.tolist() == rows.tolist() and r.gt_index.tolist() == cols.tolist()


def test_hungarian_empty_and_bad_input():
    r = Y.hungarian_match(np.zeros((3, 2)), np.full((3, 4), 0.2), np.zeros(0, np.int64), np.zeros((0, 4)))
    assert r.query_index.size == 0 and np.all(r.assignment.labels == 1)
    with pytest.raises(ValueError, match="`gt_labels`"):
        Y.hungarian_match(np.zeros((3, 2)), np.full((3, 4), 0.2), np.array([1]), np.full((1, 4), 0.2))
    with pytest.raises(ValueError, match="`cost_class`.*all be 0"):
        Y.hungarian_match(np.zeros((3, 2)), np.full((3, 4), 0.2), np.array([0]), np.full((1, 4), 0.2),
                          cost_class=0, cost_bbox=0, cost_giou=0)


def test_target_scores():
    a = Y.Assignment(np.array([1, 3, 0]), np.array([0, -1, 1]), np.zeros((3, 4)), np.array([0.5, 0.0, 0.25]))
    np.testing.assert_array_equal(Y.target_scores(a, 3), [[0, 0.5, 0], [0, 0, 0], [0.25, 0, 0]])
    assert a.fg_mask.tolist() == [True, False, True]
