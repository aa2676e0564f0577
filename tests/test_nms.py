"""Tests of refdet.nms: TV11/TV12 goldens, the speed engine's paths against the readable reference,
hypothesis invariants, memory layout, and differentials against torchvision, onnxruntime and
onnx.reference. (fast == reference on hypothesis inputs: tests/test_reference_nms.py; post-processing:
tests/test_postprocess.py.)"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import _nms_engine as engine
from refdet import batched_nms, conventions, descending_order, nms, onnx_non_max_suppression, soft_nms
from refdet.reference import nms as ref
from refdet.testing import assert_nms_equal, explain_nms_difference
from refdet.testing import strategies as rst
from tests._layouts import check_layout_independent
from tests.conftest import readonly

F32 = np.float32


def iou32(a, b):
    return rst._iou32(np.asarray(a), np.asarray(b))


def ref_nms(b, s, thr, **kw):
    """The reference loop under the profile ``kw`` selects (``convention=`` plus knob overrides)."""
    p = conventions.resolve("nms", kw.pop("convention", "torchvision"), **kw)
    return ref.nms(b, s, thr, **p)


# ------------------------------------------------------------------------------------- TV11 goldens

def test_tv11_equal_scores_identical_boxes():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30],
                  [1, 0, 11, 10]], dtype=F32)
    s = np.array([.9, .9, .9, .8, .8, .95], dtype=F32)
    # box 5 (0.95) first; IoU(5, 0) = 9*10 / (100 + 100 - 90) = 90/110 > 0.5 suppresses 0, 1, 2;
    # then 3 (lowest index of the 0.8 tie) suppresses its twin 4
    assert nms(b, s, 0.5).tolist() == [5, 3]
    # ONNX (same boxes read as yxyx) agrees
    got = onnx_non_max_suppression(b[None], s[None, None], 100, 0.5)
    assert got[:, 2].tolist() == [5, 3]
    # py-faster-rcnn order (highest index first) keeps the twin 4 instead of 3
    assert nms(b, s, 0.5, ties="highest_index").tolist() == [5, 4]


def test_tv11_disjoint_all_equal():
    x = np.arange(40, dtype=F32)[:, None] * 20
    b = np.concatenate([x, x * 0, x + 10, x * 0 + 10], axis=1)
    # 40 disjoint boxes with score 0.5: nothing suppressed, stable order = index order
    assert nms(b, np.full(40, 0.5, F32), 0.5).tolist() == list(range(40))
    assert nms(b, np.full(40, 0.5, F32), 0.5, ties="highest_index").tolist() == list(range(39, -1, -1))


def test_tv11_three_identical_boxes_tie():
    b = np.tile(np.array([[0, 0, 10, 10]], F32), (3, 1))
    s = np.full(3, 0.5, F32)
    assert nms(b, s, 0.5).tolist() == [0]                                # torchvision / ORT
    assert nms(b, s, 0.5, convention="caffe").tolist() == [2]            # py-faster-rcnn argsort()[::-1]


def test_tv11_groups_of_three_shuffled(rng):
    # groups of 3 identical boxes, equal scores, shuffled: the lowest index of each group survives
    for n_groups in (1, 7, 100, 1000):
        base = np.arange(n_groups, dtype=F32)[:, None] * 20
        g = np.repeat(np.concatenate([base, base, base + 10, base + 10], axis=1), 3, axis=0)
        perm = rng.permutation(len(g))
        b = g[perm]
        s = np.full(len(b), 0.5, F32)
        keep = nms(b, s, 0.5)
        group_of = perm // 3
        expect = np.array(sorted(np.flatnonzero(group_of == k).min() for k in range(n_groups)))
        assert keep.tolist() == expect.tolist()
        hi = nms(b, s, 0.5, ties="highest_index")
        expect_hi = np.array(sorted((np.flatnonzero(group_of == k).max() for k in range(n_groups)),
                                    reverse=True))
        assert hi.tolist() == expect_hi.tolist()


def test_tv11_iou_exactly_half():
    b = np.array([[0, 0, 4, 4], [0, 0, 4, 2]], F32)
    s = np.array([.9, .8], F32)
    # I = 4*2 = 8, U = 16 + 8 - 8 = 16, IoU = 0.5 exactly: '>' keeps both, '>=' suppresses
    assert nms(b, s, 0.5).tolist() == [0, 1]
    assert nms(b, s, 0.5, inclusive=True, plus_one=False).tolist() == [0]
    # +1 widths: I = 5*3 = 15, U = 25 + 15 - 15 = 25: IoU 0.6 > 0.5 anyway
    assert nms(b, s, 0.5, convention="caffe").tolist() == [0]
    assert nms(b, s, 0.5, plus_one=True).tolist() == [0]


def test_tv11_iou_exactly_float32_third():
    b = np.array([[0, 0, 4, 1], [2, 0, 6, 1]], F32)
    s = np.array([.9, .8], F32)
    t = float(F32(1 / 3))
    # I = 2, U = 4 + 4 - 2 = 6, IoU = float32(2/6) == float32(1/3): not > t
    assert F32(2) / F32(6) == F32(1 / 3)
    assert nms(b, s, t).tolist() == [0, 1]
    # the double 1/3 lies below float32(1/3) = 0.3333333432674408: float32 IoU > 1/3 suppresses
    assert float(F32(1 / 3)) > 1 / 3
    assert nms(b, s, 1 / 3).tolist() == [0]
    # ONNX holds the threshold in float32: float32(1/3) == IoU, kept
    assert nms(b, s, 1 / 3, convention="onnx").tolist() == [0, 1]
    # float64 boxes: IoU = 1/3 (double) exactly equals the double threshold
    assert nms(b.astype(np.float64), s, 1 / 3).tolist() == [0, 1]


def test_tv11_onnx_score_threshold_and_max_output():
    b = np.array([[[0, 0, 1, 1], [2, 2, 3, 3]]], F32)
    s = np.array([[[0.5, 0.6]]], F32)
    # score 0.5 is not > 0.5: dropped
    assert onnx_non_max_suppression(b, s, 10, 0.5, 0.5).tolist() == [[0, 0, 1]]
    assert onnx_non_max_suppression(b, s, 0, 0.5).shape == (0, 3)
    assert onnx_non_max_suppression(b, s, 0, 0.5).dtype == np.int64
    assert onnx_non_max_suppression(b, s, 1, 0.5).tolist() == [[0, 0, 1]]


def test_tv11_onnx_center_point_box():
    # (cx, cy, w, h): [2,2,4,4] -> [0,0,4,4]; [2,1,4,2] -> [0,0,4,2]: IoU 8/16 = 0.5 > 0.49
    b = np.array([[[2, 2, 4, 4], [2, 1, 4, 2]]], F32)
    s = np.array([[[0.9, 0.8]]], F32)
    assert onnx_non_max_suppression(b, s, 10, 0.49, center_point_box=1).tolist() == [[0, 0, 0]]
    assert onnx_non_max_suppression(b, s, 10, 0.5, center_point_box=1).tolist() == [[0, 0, 0], [0, 0, 1]]


def test_tv11_flipped_corners():
    b = np.array([[4, 4, 0, 0], [0, 0, 4, 2]], F32)
    s = np.array([.9, .8], F32)
    # ONNX sorts corners: [0,0,4,4] vs [0,0,4,2] -> IoU 0.5 > 0.4
    assert onnx_non_max_suppression(b[None], s[None, None], 10, 0.4)[:, 2].tolist() == [0]
    assert nms(b, s, 0.4, convention="onnx").tolist() == [0]
    # torchvision: the flipped box has area (-4)(-4) = 16 but intersection 0 -> IoU 0, both kept
    assert nms(b, s, 0.4).tolist() == [0, 1]


def test_tv11_zero_area_twins_and_nan():
    z = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], F32)
    # 0/0 = NaN never suppresses (torchvision); ONNX skips degenerate pairs
    assert nms(z, np.array([.9, .8], F32), 0.5).tolist() == [0, 1]
    assert nms(z, np.array([.9, .8], F32), 0.5, convention="onnx").tolist() == [0, 1]
    # NaN score sorts first (torch.sort) and suppresses the identical boxes
    b = np.tile(np.array([[0, 0, 10, 10]], F32), (3, 1))
    s = np.array([0.5, np.nan, 0.7], F32)
    assert nms(b, s, 0.5).tolist() == [1]
    with pytest.raises(ValueError, match="`scores`.*NaN"):
        nms(b, s, 0.5, nan_scores="reject")
    with pytest.raises(ValueError, match="`scores`.*NaN"):
        nms(b, s, 0.5, convention="onnx")


def test_tv11_batched():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], F32)
    s = np.array([.9, .8, .7, .6], F32)
    c = np.array([0, 0, 1, 1])
    # IoU(0, 1) = 81 / (100 + 100 - 81) = 0.68 > 0.5: 1 suppressed within class 0; box 2 is class 1
    assert batched_nms(b, s, c, 0.5).tolist() == [0, 2, 3]
    assert batched_nms(b, s, c, 0.5, coordinate_trick=True).tolist() == [0, 2, 3]
    assert nms(b, s, 0.5).tolist() == [0, 3]


# ------------------------------------------------------------------------------------- TV12 derived

def test_tv12_coordinate_trick_negative_coordinates():
    # boxes.max() = 10, offset = idx * (10 + 1): the class-1 box [-11,-11,-1,-1] + 11 = [0,0,10,10],
    # identical to the class-0 box -> IoU 1 -> suppressed by the trick; exact per-class keeps both.
    b = np.array([[0, 0, 10, 10], [-11, -11, -1, -1]], F32)
    s = np.array([0.9, 0.8], F32)
    c = np.array([0, 1])
    assert batched_nms(b, s, c, 0.5, coordinate_trick=True).tolist() == [0]
    assert batched_nms(b, s, c, 0.5, coordinate_trick="torchvision").tolist() == [0]   # N <= 1000
    assert batched_nms(b, s, c, 0.5).tolist() == [0, 1]


def test_tv12_against_torchvision():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    b = torch.tensor([[0, 0, 10, 10], [-11, -11, -1, -1]], dtype=torch.float32)
    s = torch.tensor([0.9, 0.8])
    c = torch.tensor([0, 1])
    assert tv.ops.batched_nms(b, s, c, 0.5).tolist() == [0]
    from torchvision.ops.boxes import _batched_nms_vanilla
    assert _batched_nms_vanilla(b, s, c, 0.5).tolist() == [0, 1]


# ------------------------------------------------------------------------------------- TV-N1 (ONNX)

TVN1_BOXES = np.array([[[0, 0, 4, 4],      # 0
                        [0, 0, 4, 2],      # 1: IoU with 0 = 8/16 = 0.5 exactly
                        [5, 5, 5, 5],      # 2: zero area
                        [5, 5, 5, 5],      # 3: zero area, identical to 2
                        [0, 0, 4, 4]]],    # 4: identical to 0
                      dtype=F32)
TVN1_SCORES = np.array([[[0.9, 0.8, 0.7, 0.7, 0.9],
                         [0.1, 0.2, 0.3, 0.3, 0.2]]], dtype=F32)
# class 0 (no score filter at 0.15 matters): visit 0, 4 (tie -> lower index first), 1, 2, 3.
#   0 selected; 4: IoU 1 > 0.5 suppressed; 1: IoU 0.5 is not > 0.5, selected; 2, 3: zero area never
#   suppress or get suppressed, selected.
# class 1: score > 0.15 drops box 0; visit 2, 3 (tie), 1, 4 (tie 0.2: 1 before 4); all selected
#   (1 vs 4: IoU 0.5 not > 0.5; zero-area pairs never suppress).
TVN1_EXPECTED = [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 0, 3], [0, 1, 2], [0, 1, 3], [0, 1, 1], [0, 1, 4]]


def test_tvn1_onnx_golden():
    got = onnx_non_max_suppression(TVN1_BOXES, TVN1_SCORES, 10, 0.5, 0.15)
    assert got.tolist() == TVN1_EXPECTED
    # at most 2 per class: the first two selections of each class
    assert onnx_non_max_suppression(TVN1_BOXES, TVN1_SCORES, 2, 0.5, 0.15).tolist() == \
        [TVN1_EXPECTED[i] for i in (0, 1, 4, 5)]


def test_tvn1_against_onnxruntime_and_reference():
    pytest.importorskip("onnxruntime")
    feeds = {"boxes": TVN1_BOXES, "scores": TVN1_SCORES, "max_out": np.array([10], np.int64),
             "iou": np.array([0.5], F32), "score_thr": np.array([0.15], F32)}
    assert _ort_run(feeds, True, 0).tolist() == TVN1_EXPECTED
    from onnx.reference import ReferenceEvaluator
    assert ReferenceEvaluator(_nms_model(True, 0)).run(None, feeds)[0].tolist() == TVN1_EXPECTED


# ------------------------------------------------------------------------------------- other goldens

def test_float16_computed_in_float32():
    b = np.array([[0, 0, 300, 300], [0, 0, 300, 150], [0, 0, 300, 149.9]], np.float16)
    s = np.array([0.9, 0.8, 0.7], np.float16)
    # 300 * 300 = 90000 overflows float16 (max 65504); in float32: IoU(0, 1) = 45000/90000 = 0.5,
    # not > 0.5, kept; box 2 (149.9 is 149.875 in float16): IoU(0, 2) = 44962.5/90000 < 0.5, but
    # IoU(1, 2) = 149.875/150 > 0.5, suppressed by box 1
    assert nms(b, s, 0.5).tolist() == [0, 1]
    assert nms(b, s, 0.5).tolist() == nms(b.astype(F32), s.astype(F32), 0.5).tolist()

def test_empty_and_readonly():
    e = np.zeros((0, 4), F32)
    assert nms(e, np.zeros(0, F32), 0.5).dtype == np.int64
    assert nms(e, np.zeros(0, F32), 0.5).shape == (0,)
    assert batched_nms(e, np.zeros(0), np.zeros(0, int), 0.5).shape == (0,)
    assert batched_nms(e, np.zeros(0), np.zeros(0, int), 0.5, coordinate_trick=True).shape == (0,)
    r = soft_nms(e, np.zeros(0))
    assert r.indices.shape == (0,) and r.scores.shape == (0,)
    assert onnx_non_max_suppression(np.zeros((2, 0, 4), F32), np.zeros((2, 3, 0), F32), 5).shape == (0, 3)
    b, s = readonly(np.array([[0, 0, 2, 2], [0, 0, 2, 1.9]]), np.array([0.3, 0.9]))
    assert nms(b, s, 0.5).tolist() == [1]


def test_batched_any_integer_categories():
    # categories are compared for equality only: huge and negative ids work on the exact path
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], np.float64)
    s = np.array([0.9, 0.8, 0.7])
    assert batched_nms(b, s, np.array([2 ** 62, 2 ** 62, -2 ** 62]), 0.5).tolist() == [0, 2]
    assert batched_nms(b, s, np.array([-1, -1, -1]), 0.5).tolist() == [0]


def test_thresholds_outside_unit_interval():
    b = np.array([[0, 0, 2, 2], [0, 0, 2, 1], [5, 5, 6, 6]], np.float64)
    s = np.array([0.9, 0.8, 0.7])
    # IoU <= 1 always: threshold 1 keeps everything; a threshold outside [0, 1] is refused (ONNX
    # NonMaxSuppression defines [0, 1]; tests/test_hardening_nms.py), the readable loop still shows what
    # it would do (disjoint boxes have IoU 0 > -0.1)
    assert nms(b, s, 1.0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="`iou_threshold` must lie in"):
        nms(b, s, -0.1)
    assert nms(b, s, 0.0).tolist() == [0, 2]                              # 0 > 0 is false
    assert nms(b, s, 0.0, inclusive=True).tolist() == [0]                 # py-faster-rcnn: 0 >= 0
    assert ref.nms(b, s, -0.1).tolist() == [0]


def test_soft_nms_linear_golden():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], np.float64)
    s = np.array([0.9, 0.8, 0.7])
    # IoU(0, 1) = 50/100 = 0.5 > 0.3: s1 = 0.8 * (1 - 0.5) = 0.4; box 2 disjoint: unchanged
    r = soft_nms(b, s, method="linear", iou_threshold=0.3)
    assert r.indices.tolist() == [0, 2, 1]
    np.testing.assert_allclose(r.scores, [0.9, 0.7, 0.4], rtol=0, atol=1e-15)
    # IoU exactly at the threshold: '>' (Detectron1-style, torchvision profile) no decay, '>=' (mmcv) decays
    r = soft_nms(b, s, method="linear", iou_threshold=0.5)
    assert r.scores.tolist() == [0.9, 0.8, 0.7]
    r = soft_nms(b, s, method="linear", iou_threshold=0.5, convention="mmdet")
    assert r.indices.tolist() == [0, 2, 1] and r.scores[2] == 0.4


def test_soft_nms_gaussian_golden():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float64)
    s = np.array([0.9, 0.8])
    # paper / mmcv: 0.8 * exp(-0.5^2 / 0.5) = 0.8 * exp(-0.5) = 0.485225...
    r = soft_nms(b, s, sigma=0.5)
    np.testing.assert_allclose(r.scores, [0.9, 0.8 * math.exp(-0.5)], rtol=1e-15)
    # TF: exp(-0.5 * 0.25 / 0.5) = exp(-0.25); and IoU 0.5 > 0.3 is hard-suppressed in the tf profile
    r = soft_nms(b, s, sigma=0.5, gaussian_denominator="2sigma")
    np.testing.assert_allclose(r.scores, [0.9, 0.8 * math.exp(-0.25)], rtol=1e-15)
    assert soft_nms(b, s, sigma=0.5, convention="tf").indices.tolist() == [0]
    # +1 widths (Detectron1): I = 11 * 6 = 66, U = 121 + 66 - 66 = 121, IoU = 6/11
    r = soft_nms(b, s, sigma=0.5, convention="caffe")
    np.testing.assert_allclose(r.scores[1], 0.8 * math.exp(-(6 / 11) ** 2 / 0.5), rtol=1e-15)


def test_soft_nms_discard_rules():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float64)
    s = np.array([0.9, 0.5, 0.0005])
    # mmcv: every remaining box below 0.001 is dropped in the first pass (box 2, disjoint);
    # box 1: IoU 1, 0.5 * exp(-2) = 0.0677 survives
    r = soft_nms(b, s, convention="mmdet")
    assert r.indices.tolist() == [0, 1]
    # Detectron1 tests only overlapping boxes against the threshold: box 2 stays
    r = soft_nms(b, s, convention="caffe")
    assert r.indices.tolist() == [0, 1, 2]
    # hard (mmcv "naive"): greedy NMS with '>='
    assert soft_nms(b, s, method="hard", iou_threshold=0.5, convention="mmdet").indices.tolist() == [0]


def test_soft_nms_swap_with_last_reorders_ties():
    # box 1 is dropped and replaced by the last box (3), which then precedes box 2 in the working
    # array: with scores 2 and 3 tied, box 3 is selected first (the C loops' order, not index order)
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [30, 0, 40, 10], [60, 0, 70, 10]], np.float64)
    s = np.array([0.9, 0.001, 0.5, 0.5])
    r = soft_nms(b, s, method="linear", iou_threshold=0.3, convention="mmdet")
    want = ref.soft_nms(b, s, method="linear", iou_threshold=0.3, **conventions.resolve("soft_nms", "mmdet"))
    assert r.indices.tolist() == want[0].tolist() == [0, 3, 2]




# ------------------------------------------------------------------------------------- comparator

def test_assert_nms_equal_explains():
    b = np.array([[0, 0, 4, 4], [0, 0, 4, 2], [0, 0, 4, 4]], F32)
    s = np.array([.9, .8, .9], F32)
    expected = nms(b, s, 0.5)                       # [0, 1]
    assert_nms_equal(expected, [0, 1], b, s, iou_threshold=0.5)
    with pytest.raises(AssertionError) as e:
        assert_nms_equal([0], expected, b, s, iou_threshold=0.5)
    msg = str(e.value)
    assert "position 1" in msg and "box 1" in msg and "EXACTLY" in msg and "IoU >= thr" in msg
    with pytest.raises(AssertionError) as e:
        assert_nms_equal([2, 1], expected, b, s, iou_threshold=0.5)
    msg = str(e.value)
    assert "EQUAL scores" in msg and "highest index first" in msg
    msg = explain_nms_difference([1, 0], [0, 1], b, s)
    assert "ORDER" in msg and "not sorted" in msg
    assert explain_nms_difference([0, 1], np.array([0, 1]), b, s) is None


# ------------------------------------------------------------------------------------- engine paths

KNOBS = [dict(), dict(inclusive=True), dict(ties="highest_index"), dict(plus_one=True),
         dict(convention="caffe"), dict(corner_order="any"), dict(convention="onnx")]


@given(rst.nms_inputs(min_n=5, max_n=60, flipped=True), st.sampled_from(KNOBS), st.integers(1, 8))
def test_block_walk_and_sweep_paths_agree(data, kw, block):
    """Force small blocks and the sparse sweep (usually only used for thousands of boxes)."""
    b, s, thr = data
    want = ref_nms(b, s, thr, **kw)
    saved = engine.BLOCK, engine.SWEEP_MIN, engine.TILE, engine.CHUNK, engine.ROUNDS
    try:
        engine.BLOCK, engine.TILE = block, 0            # small blocks, row-by-row suppression
        assert_nms_equal(nms(b, s, thr, **kw), want, b, s, iou_threshold=thr)
        p = conventions.resolve("nms", kw.get("convention", "torchvision"),
                                **{k: v for k, v in kw.items() if k != "convention"})
        if engine.sweep_allowed(thr, p.inclusive):
            order = descending_order(s, ties=p.ties)
            kind = "any" if p.corner_order == "any" else "plus_one" if p.plus_one else "tv"
            g = engine.prepare(b[order], kind, thr, p.inclusive, p.threshold_dtype)
            engine.CHUNK, engine.ROUNDS = 3, block % 3      # tiny chunks; few rounds -> walk finishes
            assert_nms_equal(order[engine.sweep(g)], want, b, s, iou_threshold=thr)
            groups = (np.arange(len(b)) % 3)[order]
            swept = np.sort(engine.sweep(g, groups))
            per = np.sort(np.concatenate([engine.walk(g, seg) for seg in engine.segments(groups)]))
            assert swept.tolist() == per.tolist()
    finally:
        engine.BLOCK, engine.SWEEP_MIN, engine.TILE, engine.CHUNK, engine.ROUNDS = saved


def test_large_inputs_take_the_sweep(rng):
    """Spread boxes, most kept, N > SWEEP_MIN: the walk hands over to the sweep, whose answer equals
    the block walk alone (itself held equal to the reference on small inputs above; torchvision on
    large ones below)."""
    n = engine.SWEEP_MIN + 700
    xy = rng.integers(0, 1500, size=(n, 2)).astype(F32)
    b = np.concatenate([xy, xy + rng.integers(1, 30, size=(n, 2)).astype(F32)], axis=1)
    s = (rng.integers(0, 200, size=n) / 200).astype(F32)
    called = []
    real = engine.sweep
    try:
        engine.sweep = lambda *a, **k: called.append(1) or real(*a, **k)
        got = nms(b, s, 0.3)
    finally:
        engine.sweep = real
    assert called, "the sweep path was not taken"
    order = descending_order(s)
    walked = order[engine.walk(engine.prepare(b[order], "tv", 0.3, False, "float64"), switch=False)]
    assert_nms_equal(got, walked, b, s, iou_threshold=0.3)


# ------------------------------------------------------------------------------------- properties

@given(rst.nms_inputs(nan=False), st.sampled_from([F32, np.float64]))
def test_invariants(data, dtype):
    b, s, thr = data
    b, s = b.astype(dtype), s.astype(dtype)
    keep = nms(b, s, thr)
    assert keep.dtype == np.int64
    assert len(set(keep.tolist())) == len(keep)                               # unique
    assert np.all(np.diff(s[keep].astype(np.float64)) <= 0)                   # sorted by score
    # idempotent: NMS of the survivors keeps them all, in the same order
    assert keep[nms(b[keep], s[keep], thr)].tolist() == keep.tolist()
    # no kept pair above the threshold (in the order of the walk: earlier suppresses later)
    for a in range(len(keep)):
        for c in range(a + 1, len(keep)):
            assert not float(iou32(b[keep[a]], b[keep[c]]) if dtype == F32 else
                             _iou64(b[keep[a]], b[keep[c]])) > thr
    # every suppressed box is explained by a kept box with a score >= its own and IoU > thr
    kept = set(keep.tolist())
    for i in range(len(b)):
        if i in kept:
            continue
        ious = [float(iou32(b[i], b[k]) if dtype == F32 else _iou64(b[i], b[k])) for k in keep
                if s[k] >= s[i]]
        assert any(v > thr for v in ious), f"box {i} suppressed without a reason"


def _iou64(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    with np.errstate(all="ignore"):
        return np.float64(inter) / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@given(rst.nms_inputs(nan=False), st.randoms(use_true_random=False))
def test_permutation_equivariant(data, rnd):
    b, s, thr = data
    perm = np.array(rnd.sample(range(len(b)), len(b)), dtype=np.int64)
    keep = nms(b, s, thr)
    keep_p = nms(b[perm], s[perm], thr)
    if len(np.unique(s)) == len(s):
        assert perm[keep_p].tolist() == keep.tolist()
    else:
        # with tied scores the tie order follows the index, so the kept set may differ; it is still
        # the greedy answer for the permuted order: compare with the reference loop
        assert keep_p.tolist() == ref.nms(b[perm], s[perm], thr).tolist()


@given(rst.threshold_box_pairs())
def test_threshold_pairs_decide_as_constructed(pair):
    boxes, t = pair
    iou = iou32(boxes[0], boxes[1])
    got = nms(boxes.astype(F32), np.array([0.9, 0.8], F32), t)
    assert got.tolist() == ([0] if float(iou) > t else [0, 1])
    got = nms(boxes.astype(F32), np.array([0.9, 0.8], F32), t, inclusive=True)
    assert got.tolist() == ([0] if float(iou) >= t else [0, 1])



@given(rst.nms_inputs(max_n=20), st.randoms(use_true_random=False))
def test_soft_nms_hard_is_greedy_nms(data, rnd):
    b, _, thr = data
    b = b.astype(np.float64)
    s = 1.0 + np.array(rnd.sample(range(len(b)), len(b)), dtype=np.float64)   # distinct, >= 1
    thr = max(thr, 0.05)
    r = soft_nms(b, s, method="hard", iou_threshold=thr, score_threshold=0.5)
    # strict '>' hard decay: a suppressed score becomes 0 < 0.5 and is dropped; the survivors are the
    # greedy NMS set in greedy order, scores untouched
    keep = nms(b, s, thr)
    assert r.indices.tolist() == keep.tolist()
    assert r.scores.tolist() == s[keep].tolist()


# ------------------------------------------------------------------------------------- torchvision

@pytest.fixture(scope="module")
def tv():
    torch = pytest.importorskip("torch")
    tvm = pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    return torch, tvm


@given(data=rst.nms_inputs(max_n=40), dtype=st.sampled_from([F32, np.float64]))
def test_torchvision_nms_exact(tv, data, dtype):
    torch, tvm = tv
    b, s, thr = data
    b, s = b.astype(dtype), s.astype(dtype)
    ref = tvm.ops.nms(torch.from_numpy(b), torch.from_numpy(s), thr).numpy()
    assert_nms_equal(nms(b, s, thr), ref, b, s, iou_threshold=thr)


@given(data=rst.nms_inputs(max_n=40, nan=True))
def test_torchvision_nms_nan_scores(tv, data):
    torch, tvm = tv
    b, s, thr = data
    ref = tvm.ops.nms(torch.from_numpy(b), torch.from_numpy(s), thr).numpy()
    assert_nms_equal(nms(b, s, thr), ref, b, s, iou_threshold=thr)


def test_torchvision_nms_large(tv, rng):
    torch, tvm = tv
    # thousands of boxes on a grid (ties in coordinates and scores): block walk and sweep both run
    for n, spread, thr in ((3000, 2000, 0.5), (6000, 4000, 0.3), (3000, 200, 0.7)):
        xy = rng.integers(0, spread, size=(n, 2)).astype(F32)
        wh = rng.integers(1, 40, size=(n, 2)).astype(F32)
        b = np.concatenate([xy, xy + wh], axis=1)
        s = (rng.integers(0, 50, size=n) / 50).astype(F32)
        ref = tvm.ops.nms(torch.from_numpy(b), torch.from_numpy(s), thr).numpy()
        assert_nms_equal(nms(b, s, thr), ref, b, s, iou_threshold=thr)


@given(data=rst.nms_inputs(max_n=40), ncls=st.integers(1, 4))
def test_torchvision_batched_exact(tv, data, ncls):
    torch, tvm = tv
    b, s, thr = data
    c = (np.arange(len(b)) * 5 % ncls).astype(np.int64)
    tb, ts, tc = torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c)
    # N <= 1000: torchvision takes the coordinate trick, offsets rounded in float32 included
    ref = tvm.ops.batched_nms(tb, ts, tc, thr).numpy()
    assert_nms_equal(batched_nms(b, s, c, thr, coordinate_trick="torchvision"), ref, b, s, iou_threshold=thr)
    # the per-class path equals torchvision's vanilla loop up to the order of equal scores (its final
    # sort is not stable): same set, same score sequence
    from torchvision.ops.boxes import _batched_nms_vanilla
    van = _batched_nms_vanilla(tb, ts, tc, thr).numpy()
    got = batched_nms(b, s, c, thr)
    assert sorted(got.tolist()) == sorted(van.tolist())
    assert s[got].tolist() == s[van].tolist()


def test_torchvision_batched_trick_rounding(tv, rng):
    """Arbitrary float32 coordinates, negative and large class ids: the offsets round the shifted
    coordinates, and coordinate_trick="torchvision" must round them the same way."""
    torch, tvm = tv
    for _ in range(40):
        n = int(rng.integers(1, 200))
        xy = rng.uniform(-50, 3000, size=(n, 2))
        b = np.concatenate([xy, xy + rng.uniform(0.1, 300, size=(n, 2))], axis=1).astype(F32)
        s = rng.random(n).astype(F32)
        c = rng.integers(-3, 90, n)
        thr = float(rng.choice([0.3, 0.5, 0.7]))
        ref = tvm.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), thr).numpy()
        assert_nms_equal(batched_nms(b, s, c, thr, coordinate_trick="torchvision"), ref, b, s)


def test_torchvision_batched_large(tv, rng):
    torch, tvm = tv
    n = 4000
    xy = rng.uniform(0, 600, size=(n, 2)).astype(F32)
    b = np.concatenate([xy, xy + rng.uniform(5, 80, size=(n, 2)).astype(F32)], axis=1)
    s = rng.random(n).astype(F32)
    c = rng.integers(0, 80, n)
    ref = tvm.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), 0.5).numpy()
    got = batched_nms(b, s, c, 0.5, coordinate_trick="torchvision")
    assert sorted(got.tolist()) == sorted(ref.tolist()) and s[got].tolist() == s[ref].tolist()


# ------------------------------------------------------------------------------------- ONNX

def _nms_model(with_score_threshold=True, center_point_box=0):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", "N", 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", "C", "N"]),
              helper.make_tensor_value_info("max_out", TensorProto.INT64, [1]),
              helper.make_tensor_value_info("iou", TensorProto.FLOAT, [1])]
    names = ["boxes", "scores", "max_out", "iou"]
    if with_score_threshold:
        inputs.append(helper.make_tensor_value_info("score_thr", TensorProto.FLOAT, [1]))
        names.append("score_thr")
    node = helper.make_node("NonMaxSuppression", names, ["selected"], center_point_box=center_point_box)
    out = helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3])
    graph = helper.make_graph([node], "nms", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


_ORT_SESSIONS = {}


def _ort_run(feeds, with_st, cpb):
    ort = pytest.importorskip("onnxruntime")
    key = (with_st, cpb)
    if key not in _ORT_SESSIONS:
        _ORT_SESSIONS[key] = ort.InferenceSession(_nms_model(with_st, cpb).SerializeToString(),
                                                  providers=["CPUExecutionProvider"])
    return _ORT_SESSIONS[key].run(None, feeds)[0]


@st.composite
def onnx_cases(draw):
    nb = draw(st.integers(1, 2))
    nc = draw(st.integers(1, 3))
    b, _, thr = draw(rst.nms_inputs(max_n=20, flipped=True))
    n = len(b)
    boxes = np.stack([b] + [b[::-1].copy() if draw(st.booleans()) else b for _ in range(nb - 1)])
    scores = np.stack([np.stack([draw(rst.tied_scores(n)) for _ in range(nc)]) for _ in range(nb)])
    thr = float(min(max(thr, 0.0), 1.0))
    max_out = draw(st.sampled_from([0, 1, 2, 5, 1000]))
    st_thr = draw(st.sampled_from([None, 0.0, 0.25, 0.5, float(scores.flat[0]) if scores.size else 0.5]))
    cpb = draw(st.integers(0, 1))
    if cpb:
        # (cx, cy, w, h) from the boxes, sometimes with negative sizes
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        boxes = np.stack([np.stack([cx, cy, w, h], axis=1)] * nb)
    return boxes.astype(F32), scores.astype(F32), max_out, thr, st_thr, cpb


@given(onnx_cases())
def test_onnxruntime_exact(case):
    boxes, scores, max_out, thr, st_thr, cpb = case
    feeds = {"boxes": boxes, "scores": scores, "max_out": np.array([max_out], np.int64),
             "iou": np.array([thr], F32)}
    if st_thr is not None:
        feeds["score_thr"] = np.array([st_thr], F32)
    ref = _ort_run(feeds, st_thr is not None, cpb)
    got = onnx_non_max_suppression(boxes, scores, max_out, thr, st_thr, center_point_box=cpb)
    assert got.dtype == np.int64
    assert got.reshape(-1, 3).tolist() == ref.reshape(-1, 3).tolist()


@given(onnx_cases())
@settings(max_examples=25)
def test_onnx_reference_exact(case):
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator
    boxes, scores, max_out, thr, st_thr, cpb = case
    st_thr = 0.0 if st_thr is None else st_thr      # the reference fails when optional inputs are omitted
    feeds = {"boxes": boxes, "scores": scores, "max_out": np.array([max_out], np.int64),
             "iou": np.array([thr], F32), "score_thr": np.array([st_thr], F32)}
    ref = ReferenceEvaluator(_nms_model(True, cpb)).run(None, feeds)[0]
    got = onnx_non_max_suppression(boxes, scores, max_out, thr, st_thr, center_point_box=cpb)
    assert got.reshape(-1, 3).tolist() == np.asarray(ref).reshape(-1, 3).tolist()


@given(rst.nms_inputs(max_n=30, flipped=True))
def test_nms_onnx_convention_equals_onnxruntime(data):
    b, s, thr = data
    thr = float(min(max(thr, 0.0), 1.0))
    feeds = {"boxes": b[None], "scores": s[None, None], "max_out": np.array([10 ** 6], np.int64),
             "iou": np.array([thr], F32)}
    ref = _ort_run(feeds, False, 0)[:, 2]
    assert_nms_equal(nms(b, s, thr, convention="onnx"), ref, b, s, iou_threshold=thr)


# ------------------------------------------------------------------------------------- memory layout

@given(rst.nms_inputs(max_n=25, nan=True), st.sampled_from([F32, np.float64]))
def test_nms_layout_independent(data, dtype):
    b, s, thr = data
    for conv in ("torchvision", "caffe"):
        check_layout_independent(nms, (b.astype(dtype), s.astype(dtype), thr), {"convention": conv})
    finite = np.nan_to_num(s).astype(dtype)
    check_layout_independent(nms, (b.astype(dtype), finite, thr), {"convention": "onnx"})


@given(rst.nms_inputs(max_n=25), st.sampled_from([F32, np.float64]), st.sampled_from([False, True]))
def test_batched_nms_layout_independent(data, dtype, trick):
    b, s, thr = data
    c = (np.arange(len(b)) * 7 % 3).astype(np.int64)
    check_layout_independent(batched_nms, (b.astype(dtype), s.astype(dtype), c, thr),
                             {"coordinate_trick": trick})


@given(rst.nms_inputs(max_n=20), st.sampled_from(["linear", "gaussian"]), st.sampled_from(["mmdet", "caffe"]))
def test_soft_nms_layout_independent(data, method, conv):
    b, s, _ = data
    check_layout_independent(soft_nms, (b, np.abs(s)),
                             {"method": method, "convention": conv, "score_threshold": 0.05})


@given(rst.nms_inputs(max_n=20, flipped=True), st.integers(0, 1))
def test_onnx_layout_independent(data, cpb):
    b, s, thr = data
    boxes = np.stack([b, b[::-1]])                               # (2, N, 4)
    scores = np.stack([np.stack([s, s[::-1]])] * 2)              # (2, 2, N)
    check_layout_independent(onnx_non_max_suppression, (boxes, scores, 5, min(max(thr, 0.0), 1.0), 0.1),
                             {"center_point_box": cpb})


@given(rst.tied_scores(30, nan=True, dtype=F32), st.sampled_from(["lowest_index", "highest_index"]))
def test_descending_order_layout_independent(s, ties):
    check_layout_independent(descending_order, (s,), {"ties": ties})
    check_layout_independent(descending_order, (s.astype(np.float64),), {"ties": ties})
