"""Tests of refdet._nms_engine that pin what mutation testing found unpinned (issue 19).

The engine's pieces called directly on small hand-worked inputs (the paths a real call takes only for
thousands of boxes are forced with the module's tunables, restored by ``monkeypatch``). Each test
takes milliseconds; the differentials against torchvision and the loop references live in
tests/test_nms.py and tests/test_reference_nms.py.
"""
import warnings

import numpy as np
import pytest

from refdet import _nms_engine as engine
from refdet.reference import nms as ref

F32 = np.float32
F64 = np.float64


# ------------------------------------------------------------------------------ threshold as a scalar

def test_cmp_threshold_float64_is_the_threshold():
    t = engine._cmp_threshold(0.1, F64, False, "float64")
    assert type(t) is np.float64 and t == 0.1
    t = engine._cmp_threshold(0.1, np.dtype(F64), True, "working")
    assert type(t) is np.float64 and t == 0.1


def test_cmp_threshold_float32_neighbour_on_the_correct_side():
    below_01 = np.nextafter(F32(0.1), F32(0))       # float32(0.1) = 0.10000000149 > 0.1
    above_07 = np.nextafter(F32(0.7), F32(1))       # float32(0.7) = 0.69999998808 < 0.7
    # x > 0.1 (double)  <=>  x > largest float32 <= 0.1
    t = engine._cmp_threshold(0.1, F32, False, "float64")
    assert type(t) is np.float32 and t == below_01
    assert engine._cmp_threshold(0.1, F32, True, "float64") == F32(0.1)      # already >= 0.1
    assert engine._cmp_threshold(0.7, F32, False, "float64") == F32(0.7)     # already <= 0.7
    t = engine._cmp_threshold(0.7, F32, True, "float64")                    # x >= 0.7 <=> x >= next
    assert type(t) is np.float32 and t == above_07
    # exactly representable: no nudge either way
    assert engine._cmp_threshold(0.5, F32, False, "float64") == F32(0.5)
    assert engine._cmp_threshold(0.5, F32, True, "float64") == F32(0.5)
    # the framework holds the threshold in float32: plain rounding
    assert engine._cmp_threshold(0.1, F32, False, "working") == F32(0.1)
    assert engine._cmp_threshold(0.7, F32, True, "working") == F32(0.7)
    # the promise: for float32 x, (x > t) == (float64(x) > thr)
    x = np.array([below_01, F32(0.1), above_07, F32(0.7)], F32)
    for thr in (0.1, 0.7):
        assert ((x > engine._cmp_threshold(thr, F32, False, "float64")) == (x.astype(F64) > thr)).all()
        assert ((x >= engine._cmp_threshold(thr, F32, True, "float64")) == (x.astype(F64) >= thr)).all()


# ------------------------------------------------------------------------------ prepare

def test_prepare_stacks_corners_and_area():
    b = np.array([[2.0, 1.0, 0.0, 4.0], [0.0, 0.0, 3.0, 2.0]])
    g = engine.prepare(b, "any", 0.5, True, "float64")
    assert g.C.tolist() == [[0, 0], [1, 0], [2, 3], [4, 2], [6, 6]]      # corners sorted per axis
    assert g.kind == "any" and g.inclusive is True and g.thr == 0.5 and g.C.dtype == F64
    g = engine.prepare(b, "any", 0.5, True, "float64", normalize=False)
    assert g.C.tolist() == [[2, 0], [1, 0], [0, 3], [4, 2], [-6, 6]]     # as given (center-point boxes)
    g = engine.prepare(b, "tv", 0.25, False, "float64")
    assert g.C.tolist() == [[2, 0], [1, 0], [0, 3], [4, 2], [-6, 6]] and g.inclusive is False
    g = engine.prepare(b[1:].astype(F32), "plus_one", 0.1, False, "float64")
    assert g.C.dtype == F32 and g.C[:, 0].tolist() == [0, 0, 3, 2, 12]  # (3 + 1) * (2 + 1)
    assert g.thr == np.nextafter(F32(0.1), F32(0))
    # the threshold's side and dtype rule reach _cmp_threshold
    f = _xwin_boxes(F32)
    assert engine.prepare(f, "tv", 0.7, True, "float64").thr == np.nextafter(F32(0.7), F32(1))
    assert engine.prepare(f, "tv", 0.7, False, "float64").thr == F32(0.7)
    assert engine.prepare(f, "tv", 0.1, False, "working").thr == F32(0.1)
    assert engine.prepare(f, "any", 0.1, True, "working").thr == F32(0.1)
    # y flipped too
    g = engine.prepare(np.array([[0.0, 5.0, 2.0, 1.0]]), "any", 0.5, False, "float64")
    assert g.C[:, 0].tolist() == [0, 1, 2, 5, 8]


def test_walk_of_no_positions():
    g = engine.prepare(_chain(3), "tv", 0.3, False, "float64")
    for allow in (True, False):
        got = engine.walk(g, np.zeros(0, np.int64), allow_sweep=allow)
        assert got.dtype == np.int64 and got.shape == (0,)


# ------------------------------------------------------------------------------ the pair test

def _pair(a, b, kind, thr, inclusive, dtype=F64):
    g = engine.prepare(np.array([a, b], dtype), kind, thr, inclusive, "float64")
    got = engine._suppress(g.C[:, :1], g.C[:, 1:], kind, g.thr, inclusive)
    assert got.shape == (1,)
    return bool(got[0])


def test_suppress_iou_exactly_at_the_threshold():
    a, b = [0, 0, 2, 1], [1, 0, 3, 1]           # inter 1, union 3: IoU 1/3 exactly as computed
    iou = 1.0 / 3.0
    for kind in ("tv", "any"):
        assert _pair(a, b, kind, iou, True) and not _pair(a, b, kind, iou, False)
        assert _pair(a, b, kind, 0.33, False) and not _pair(a, b, kind, 0.34, True)
    a, b = [0, 0, 1, 1], [1, 0, 2, 1]           # +1 widths: inter 1 * 2, union 4 + 4 - 2: IoU 1/3
    assert _pair(a, b, "plus_one", iou, True) and not _pair(a, b, "plus_one", iou, False)
    # touching continuous boxes: IoU 0, which only an inclusive threshold 0 reaches
    assert _pair(a, b, "tv", 0.0, True) and not _pair(a, b, "tv", 0.0, False)


def test_suppress_height_matters_as_much_as_width():
    a = [0, 0, 2, 2]
    assert not _pair(a, [0, 1, 2, 3], "tv", 0.5, False)          # IoU 2 / 6
    assert _pair(a, [0, 1, 2, 3], "tv", 0.3, False)
    assert not _pair(a, [0, 2, 2, 4], "tv", 0.0, False)          # touching in y
    assert not _pair(a, [0, 3, 2, 5], "tv", 0.0, False)          # apart in y (clamped, not negative)
    assert not _pair(a, [3, 0, 5, 2], "tv", 0.0, False)          # apart in x
    assert not _pair(a, [3, 3, 5, 5], "tv", 0.0, False)          # apart in both: w * h > 0 unclamped
    assert _pair(a, [0, 2, 2, 4], "plus_one", 0.1, False)        # +1: a row of pixels shared
    assert _pair(a, [2, 0, 4, 2], "plus_one", 0.1, False)        # +1: a column shared
    assert not _pair(a, [0, 3, 2, 5], "plus_one", 0.0, False)
    assert not _pair(a, [3, 0, 5, 2], "plus_one", 0.0, False)


def test_suppress_onnx_guards():
    # "any": no overlap never suppresses, not even at threshold 0 inclusive
    assert not _pair([0, 0, 1, 1], [1, 0, 2, 1], "any", 0.0, True)
    assert not _pair([0, 0, 1, 1], [0, 1, 1, 2], "any", 0.0, True)
    assert _pair([0, 0, 2, 2], [1, 1, 3, 3], "any", 0.0, True)
    # a zero-area box: never suppresses nor is suppressed under "any"; continuous: 0 / area = 0
    assert not _pair([0, 0, 2, 2], [1, 1, 1, 2], "any", 0.0, True)
    assert _pair([0, 0, 2, 2], [1, 1, 1, 2], "tv", 0.0, True)
    # an intersection whose area underflows to 0 in float32 (1e-30 * 1e-30): onnxruntime's
    # `intersection_area <= 0` guard refuses it; the continuous kinds see IoU 0 / 2 = 0 >= 0
    a, b = [0, 0, 1, 1], [-1, -1, 1e-30, 1e-30]
    assert not _pair(a, b, "any", 0.0, True, F32)
    assert _pair(a, b, "tv", 0.0, True, F32)
    assert _pair(a, b, "any", 0.0, True, F64)                       # 1e-60 > 0 in float64
    # a 0.5-wide overlap: suppresses (the guards test > 0, not >= 1)
    assert _pair([0, 0, 1, 1], [0.5, 0, 1.5, 1], "any", 0.3, False)
    assert _pair([0, 0, 1, 1], [0, 0.5, 1, 1.5], "any", 0.3, False)
    assert _pair([0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], "any", 0.9, False)  # areas 0.25: guards > 0
    # two identical zero-area boxes: 0 / 0 = NaN fails every comparison
    assert not _pair([1, 1, 1, 1], [1, 1, 1, 1], "tv", 0.0, True)
    assert not _pair([1, 1, 1, 1], [1, 1, 1, 1], "any", 0.0, True)


def test_row_hits_equals_the_pair_test():
    rng = np.random.default_rng(7)
    for kind in ("tv", "plus_one", "any"):
        for inclusive, thr in ((False, 0.0), (False, 0.3), (True, 0.3), (True, 0.5)):
            xy = rng.integers(0, 12, size=(40, 2)).astype(F64)
            b = np.concatenate([xy, xy + rng.integers(0, 5, size=(40, 2))], axis=1)
            g = engine.prepare(b, kind, thr, inclusive, "float64")
            assert engine.sweep_allowed(thr, inclusive)
            for i in range(0, 40, 7):
                want = np.flatnonzero(engine._suppress(g.C[:, i], g.C, kind, g.thr, inclusive))
                got = engine._row_hits(g.C[:, i], g.C, kind, g.thr, inclusive)
                assert got.tolist() == want.tolist(), (kind, inclusive, thr, i)


def test_row_hits_onnx_guards_and_nothing_to_hit():
    # the intersection's area underflows to 0 in float32: onnxruntime's guard refuses the pair at
    # threshold 0 (inclusive), the continuous arithmetic does not (IoU 0 >= 0)
    C = engine.prepare(np.array([[0, 0, 1, 1], [-1, -1, 1e-30, 1e-30], [0.5, 0.5, 2, 2]], F32),
                       "any", 0.0, True, "float64").C
    assert engine._row_hits(C[:, 0], C[:, 1:], "any", F32(0), True).tolist() == [1]
    assert engine._row_hits(C[:, 0], C[:, 1:], "tv", F32(0), True).tolist() == [0, 1]
    for kind in ("tv", "plus_one", "any"):
        got = engine._row_hits(C[:, 0], C[:, :0], kind, F32(0.5), False)
        assert got.shape == (0,) and got.dtype == np.int64


def test_row_hits_touching_boxes():
    C = engine.prepare(np.array([[0, 0, 1, 1], [1, 0, 2, 1], [0, 1, 1, 2], [0.5, 0, 1.5, 1]], F64),
                       "plus_one", 0.0, False, "float64").C
    # +1 widths: the touching boxes share a column / a row of pixels
    assert engine._row_hits(C[:, 0], C, "plus_one", 0.0, False).tolist() == [0, 1, 2, 3]
    C = engine.prepare(np.array([[0, 0, 1, 1], [1, 0, 2, 1], [0, 1, 1, 2], [0.5, 0, 1.5, 1]], F64),
                       "tv", 0.0, False, "float64").C
    assert engine._row_hits(C[:, 0], C, "tv", 0.0, False).tolist() == [0, 3]
    assert engine._row_hits(C[:, 0], C, "tv", 1 / 3, True).tolist() == [0, 3]
    assert engine._row_hits(C[:, 0], C, "tv", 1 / 3, False).tolist() == [0]
    assert engine._row_hits(C[:, 1], C[:, 2:3], "tv", 0.0, False).size == 0
    assert engine._row_hits(C[:, 0], C, "any", 0.0, True).tolist() == [0, 3]


# ------------------------------------------------------------------------------ resolution in a block

def test_resolve_dense_chain_and_self_pairs():
    # 0 suppresses 1, 1 suppresses 2: greedy keeps 0 and 2 (1 is gone before it could act)
    M = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], bool)        # diagonal: a box overlaps itself
    assert engine._resolve_dense(M).tolist() == [True, False, True]
    # only a < b counts: the lower triangle is ignored
    assert engine._resolve_dense(M | M.T).tolist() == [True, False, True]
    # adjacent and distant pairs both count
    M = np.zeros((4, 4), bool)
    M[0, 2] = M[2, 3] = M[1, 3] = True
    assert engine._resolve_dense(M).tolist() == [True, True, False, False]
    assert engine._resolve_dense(np.zeros((3, 3), bool)).tolist() == [True, True, True]
    # a long alternating chain: 0 > 1 > 2 > 3 > 4 > 5
    M = np.eye(6, k=1, dtype=bool)
    assert engine._resolve_dense(M).tolist() == [True, False, True, False, True, False]


# ------------------------------------------------------------------------------ soft-NMS passes

SOFT = dict(method="linear", sigma=0.5, iou_threshold=0.3, score_threshold=0.001, inclusive=False,
            plus_one=False, gaussian_denominator="sigma", discard="overlapping", hard_above_threshold=False)


def test_soft_nms_detectron1_drops_only_overlapping_boxes():
    # box 1 touches box 0 (w = 0): not overlapping, so Detectron1 keeps its low score; "any" drops it
    b = np.array([[0, 0, 1, 1], [1, 0, 2, 1]], F64)
    s = np.array([0.9, 0.0001])
    ind, sc = engine.soft_nms_passes(b, s, **SOFT)
    assert ind.tolist() == [0, 1] and sc.tolist() == [0.9, 0.0001]
    ind, sc = engine.soft_nms_passes(b, s, **dict(SOFT, discard="any"))
    assert ind.tolist() == [0] and sc.tolist() == [0.9]
    # touching in y only
    b = np.array([[0, 0, 1, 1], [0, 1, 1, 2]], F64)
    assert engine.soft_nms_passes(b, s, **SOFT)[0].tolist() == [0, 1]
    # overlapping by 0.5 x 0.5 (less than 1 either way): overlapping, decayed and dropped
    for b in ([[0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5]], [[0, 0, 1, 1], [0.5, 0, 1.5, 0.5]],
              [[0, 0, 1, 1], [0, 0.5, 0.5, 1.5]]):
        ind, sc = engine.soft_nms_passes(np.array(b, F64), s, **SOFT)
        assert ind.tolist() == [0] and sc.tolist() == [0.9], b
    # overlapping (IoU 1/7 < 0.3: weight 1) with a score above the threshold: kept, not decayed
    ind, sc = engine.soft_nms_passes(np.array([[0, 0, 1, 1], [0.5, 0.5, 1.5, 1.5]], F64), np.array([0.9, 0.5]), **SOFT)
    assert ind.tolist() == [0, 1] and sc.tolist() == [0.9, 0.5]


# ------------------------------------------------------------------------------ processing order

# NaN (either sign) first, then +inf, 0.5 twice, -0.0 ties 0.0, then the negatives, -inf last
S_TIES = [0.5, -0.0, 0.0, np.nan, -1.0, 0.5, -np.nan, -2.0, np.inf, -np.inf]
LOWEST = [3, 6, 8, 0, 5, 1, 2, 4, 7, 9]
HIGHEST = [6, 3, 8, 5, 0, 2, 1, 4, 7, 9]


@pytest.mark.parametrize("dtype", [np.float16, F32, F64])
def test_descending_ties_nan_signed_zero(dtype):
    s = np.array(S_TIES, dtype)
    assert np.signbit(s[6]) and np.isnan(s[6]) and np.signbit(s[1])
    for ties, want in (("lowest_index", LOWEST), ("highest_index", HIGHEST)):
        got = engine.descending(s, ties)
        assert got.dtype == np.int64 and got.tolist() == want, (dtype, ties)


def test_descending_float32_keys_keep_tiny_differences():
    # adding 0.0 maps -0.0 to +0.0 and must not move anything else: 1e-8 < 2e-8, both far below 1
    s = np.array([1e-8, 2e-8, -1e-8, -2e-8, 3e-38, 0.0], F32)
    assert engine.descending(s, "lowest_index").tolist() == [1, 0, 4, 5, 2, 3]
    assert engine.descending(s, "highest_index").tolist() == [1, 0, 4, 5, 2, 3]
    assert engine.descending(s[::-1], "lowest_index").tolist() == [4, 5, 1, 0, 3, 2]


def test_descending_float64_is_not_rounded_to_float32():
    s = np.array([1.0, 1.0 + 1e-12, 1.0 - 1e-12])
    assert engine.descending(s, "lowest_index").tolist() == [1, 0, 2]
    assert engine.descending(s, "highest_index").tolist() == [1, 0, 2]


def test_descending_without_ties():
    s = np.array([0.3, 0.9, 0.1, -0.2])
    assert engine.descending(s, "lowest_index").tolist() == [1, 0, 2, 3]
    assert engine.descending(s, "highest_index").tolist() == [1, 0, 2, 3]
    # one NaN, no ties: NaN first in both
    s = np.array([0.3, np.nan, 0.1])
    assert engine.descending(s, "lowest_index").tolist() == [1, 0, 2]
    assert engine.descending(s, "highest_index").tolist() == [1, 0, 2]
    s = np.array([np.nan, 0.3, 0.1])
    assert engine.descending(s, "lowest_index").tolist() == [0, 1, 2]
    assert engine.descending(s, "highest_index").tolist() == [0, 1, 2]
    # two equal scores only at the start of the ranking
    s = np.array([0.1, 0.9, 0.9])
    assert engine.descending(s, "lowest_index").tolist() == [1, 2, 0]
    assert engine.descending(s, "highest_index").tolist() == [2, 1, 0]


def test_descending_integers_and_sizes():
    s = np.array([1, 3, 3, 2])
    got = engine.descending(s, "lowest_index")
    assert got.dtype == np.int64 and got.tolist() == [1, 2, 3, 0]
    assert engine.descending(s, "highest_index").tolist() == [2, 1, 3, 0]
    for dtype in (np.float16, F32, F64, np.int64):
        for n in (0, 1):
            got = engine.descending(np.ones(n, dtype), "highest_index")
            assert got.dtype == np.int64 and got.tolist() == list(range(n))
    assert engine.descending(np.array([0.5, 0.5]), "highest_index").tolist() == [1, 0]
    assert engine.descending(np.array([0.5, 0.5], F32), "highest_index").tolist() == [1, 0]


# ------------------------------------------------------------------------------ greedy, walk, sweep

def test_sweep_allowed_truth_table():
    assert engine.sweep_allowed(0.0, False) is True          # IoU 0 > 0 fails
    assert engine.sweep_allowed(0.0, True) is False          # IoU 0 >= 0 holds: disjoint boxes suppress
    assert engine.sweep_allowed(0.5, True) is True
    assert engine.sweep_allowed(1e-9, True) is True


def test_segments_groups_positions_by_value():
    got = engine.segments(np.array([2, 0, 2, 1, 0, 2]))
    assert [x.tolist() for x in got] == [[1, 4], [3], [0, 2, 5]]
    assert [x.tolist() for x in engine.segments(np.array([5]))] == [[0]]


DISJOINT = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [10, 0, 11, 1], [0, 10, 1, 11]], F64)


@pytest.mark.parametrize("groups", [None, np.array([0, 0, 1, 1])])
def test_greedy_threshold_zero_inclusive(groups):
    # IoU 0 >= 0: under the continuous kinds the first box of each group suppresses every other box
    # of it, overlapping or not; the ONNX guards never let disjoint boxes suppress
    first = [0] if groups is None else [0, 2]
    for kind in ("tv", "plus_one"):
        got = engine.greedy(DISJOINT, 0.0, kind=kind, inclusive=True, threshold_dtype="float64", groups=groups)
        assert np.sort(got).tolist() == first, kind
    got = engine.greedy(DISJOINT, 0.0, kind="any", inclusive=True, threshold_dtype="float64", groups=groups)
    assert np.sort(got).tolist() == [0, 1, 2, 3]
    got = engine.greedy(DISJOINT, 0.0, kind="tv", inclusive=False, threshold_dtype="float64", groups=groups)
    assert np.sort(got).tolist() == [0, 1, 2, 3]


def test_greedy_empty():
    for groups in (None, np.zeros(0, np.int64)):
        got = engine.greedy(np.zeros((0, 4)), 0.5, kind="tv", inclusive=False, threshold_dtype="float64",
                            groups=groups)
        assert got.dtype == np.int64 and got.shape == (0,)


def _chain(n, dtype=F64):
    """n boxes along x, each overlapping the next by a third (IoU 1/3 = 1 / (2 + 2 - 1)) and no other."""
    x = np.arange(n, dtype=dtype)
    return np.stack([x, np.zeros(n, dtype), x + 2, np.ones(n, dtype)], axis=1)


def _with_dups(n):
    """A chain, then a copy of it shifted by a tenth (IoU > 0.8 with its original), visited after."""
    b = _chain(n)
    d = b.copy()
    d[:, [0, 2]] += 0.1
    return np.concatenate([b, d])


@pytest.mark.parametrize("block, tile", [(1, 0), (2, 0), (3, 0), (64, 0), (2, 1 << 15), (64, 1 << 15)])
@pytest.mark.parametrize("thr, inclusive", [(0.3, False), (1 / 3, True), (1 / 3, False), (0.0, True)])
def test_walk_forced_paths_equal_the_loop_reference(monkeypatch, block, tile, thr, inclusive):
    monkeypatch.setattr(engine, "BLOCK", block)
    monkeypatch.setattr(engine, "TILE", tile)
    for kind, plus_one in (("tv", False), ("plus_one", True)):
        for b in (_chain(9), _with_dups(7), _with_dups(7)[::-1].copy()):
            s = np.linspace(1, 0.1, len(b))           # already in processing order
            want = ref.nms(b, s, thr, inclusive=inclusive, plus_one=plus_one)
            ok = engine.sweep_allowed(thr, inclusive)
            g = engine.prepare(b, kind, thr, inclusive, "float64")
            assert engine.walk(g, allow_sweep=ok).tolist() == list(want), (kind, b.shape)
            got = engine.greedy(b, thr, kind=kind, inclusive=inclusive, threshold_dtype="float64")
            assert got.tolist() == list(want)
            if ok:
                pos = np.arange(1, len(b), 2)
                want_odd = pos[ref.nms(b[pos], s[pos], thr, inclusive=inclusive, plus_one=plus_one)]
                assert engine.walk(g, pos).tolist() == want_odd.tolist()


def test_walk_alternating_chain_golden(monkeypatch):
    # 0 > 1 > 2 > ...: greedy keeps every other box, whatever the block size
    g = engine.prepare(_chain(10), "tv", 0.3, False, "float64")
    for block in (1, 2, 3, 5, 64):
        monkeypatch.setattr(engine, "BLOCK", block)
        for tile in (0, 1 << 15):
            monkeypatch.setattr(engine, "TILE", tile)
            assert engine.walk(g).tolist() == [0, 2, 4, 6, 8]
            assert engine.walk(g, allow_sweep=False).tolist() == [0, 2, 4, 6, 8]


def _xwin_boxes(dtype=F64):
    # x-extents: b0 [0, 2], b1 [5, 6], b2 [1, 3], b3 [2, 4]; sorted by x1: b0, b2, b3, b1
    return np.array([[0, 0, 2, 1], [5, 0, 6, 1], [1, 0, 3, 1], [2, 0, 4, 1]], dtype)


def test_x_window_golden():
    C = engine.prepare(_xwin_boxes(), "tv", 0.5, False, "float64").C
    xs, cnt = engine._x_window(C, "tv")
    # b0 reaches b2 and b3 (x1 2 <= x2 2), b2 reaches b3, b3 and b1 reach nothing after them
    assert xs.tolist() == [0, 2, 3, 1] and cnt.tolist() == [2, 1, 0, 0]
    # +1 widths: b3 (x2 4 + 1) reaches b1 (x1 5)
    xs, cnt = engine._x_window(C, "plus_one")
    assert xs.tolist() == [0, 2, 3, 1] and cnt.tolist() == [2, 1, 1, 0]
    # groups: b2 alone in its group; the window stops at a group boundary
    for groups in ([0, 0, 1, 0], [7, 7, 9, 7], [-(10 ** 15), -(10 ** 15), 10 ** 15, -(10 ** 15)]):
        xs, cnt = engine._x_window(C, "tv", np.array(groups))
        assert xs.tolist() == [0, 3, 1, 2] and cnt.tolist() == [1, 0, 0, 0], groups
    xs, cnt = engine._x_window(C, "tv", np.array([1, 1, 0, 1]))
    assert xs.tolist() == [2, 0, 3, 1] and cnt.tolist() == [0, 1, 0, 0]
    # float32 coordinates: x2 compared exactly (through ranks)
    C = engine.prepare(np.array([[0, 0, 1e-7, 1], [1e-7, 0, 1, 1], [2e-7, 0, 1, 1]], F32),
                       "tv", 0.5, False, "float64").C
    assert engine._x_window(C, "tv")[1].tolist() == [1, 1, 0]


_SWEEP_CASES = []


def _sweep_cases():
    """(kind, boxes, thr, inclusive, groups, kept, kept per group): the loop reference, computed once."""
    if not _SWEEP_CASES:
        for kind, plus_one in (("tv", False), ("plus_one", True), ("any", False)):
            for b in (_chain(9), _with_dups(7), _with_dups(7)[::-1].copy(), _xwin_boxes()):
                for thr, inclusive in ((0.3, False), (1 / 3, True), (1 / 3, False), (0.0, False)):
                    s = np.linspace(1, 0.1, len(b))                 # already in processing order
                    kw = dict(inclusive=inclusive, plus_one=plus_one)
                    if kind == "any":
                        kw = dict(inclusive=inclusive, corner_order="any")
                    groups = np.arange(len(b)) % 2
                    _SWEEP_CASES.append((kind, b, thr, inclusive, groups, sorted(ref.nms(b, s, thr, **kw)),
                                         sorted(ref.batched_nms(b, s, groups, thr, **kw))))
    return _SWEEP_CASES


@pytest.mark.parametrize("rounds, chunk", [(0, 1 << 18), (1, 1), (2, 5), (12, 2), (12, 1 << 18)])
def test_sweep_equals_the_loop_reference(monkeypatch, rounds, chunk):
    monkeypatch.setattr(engine, "ROUNDS", rounds)
    monkeypatch.setattr(engine, "CHUNK", chunk)
    for kind, b, thr, inclusive, groups, want, want_groups in _sweep_cases():
        g = engine.prepare(b, kind, thr, inclusive, "float64")
        assert engine.sweep(g).tolist() == want, (kind, thr, inclusive, len(b))
        assert engine.sweep(g, groups).tolist() == want_groups, (kind, thr, inclusive, len(b))
        got = engine.greedy(b, thr, kind=kind, inclusive=inclusive, threshold_dtype="float64", groups=groups)
        assert sorted(got.tolist()) == want_groups


def test_sweep_of_nothing_and_of_no_pairs():
    g = engine.prepare(np.zeros((0, 4)), "tv", 0.5, False, "float64")
    assert engine.sweep(g).tolist() == []
    g = engine.prepare(DISJOINT, "tv", 0.5, False, "float64")
    assert engine.sweep(g).tolist() == [0, 1, 2, 3]
    assert engine.sweep(g, np.zeros(4, np.int64)).tolist() == [0, 1, 2, 3]


def test_soft_nms_nan_scores_from_zero_area_twins():
    # two identical zero-area boxes (1 and 3): the Gaussian decay of one by the other is
    # exp(-(0/0)^2 / sigma) = NaN. The C scan `if (max < sc[pos])` never picks a NaN and keeps a NaN
    # already in slot i: at i = 2 the slots hold 0.6, NaN, 0.7 and box 4 (0.7) is selected.
    P = [20, 20, 20, 20]
    b = np.array([[0, 0, 10, 10], P, [50, 50, 60, 60], P, [70, 70, 80, 80]], F64)
    s = np.array([0.9, 0.85, 0.6, 0.8, 0.7])
    kw = dict(SOFT, method="gaussian", discard="any")
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # the 0 / 0 IoU is documented: no RuntimeWarning
        ind, sc = engine.soft_nms_passes(b, s, **kw)
    assert ind.tolist() == [0, 1, 4, 3, 2]
    np.testing.assert_array_equal(sc, [0.9, 0.85, 0.7, np.nan, 0.6])
    want = ref.soft_nms(b, s, **{k: v for k, v in kw.items()})
    assert ind.tolist() == want[0].tolist()
    # a NaN in slot i stays there (box 3 after box 1)
    ind, sc = engine.soft_nms_passes(b[[0, 1, 3]], s[[0, 1, 2]], **kw)
    assert ind.tolist() == [0, 1, 2] and np.isnan(sc[2])


def test_soft_nms_single_box_and_swap():
    ind, sc = engine.soft_nms_passes(np.array([[0, 0, 1, 1]], F64), np.array([0.4]), **SOFT)
    assert ind.tolist() == [0] and sc.tolist() == [0.4]
    # lower score first: the scan swaps the maximum into slot 0
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], F64)
    ind, sc = engine.soft_nms_passes(b, np.array([0.7, 0.8, 0.9]), **dict(SOFT, discard="any"))
    assert ind.tolist() == [2, 1, 0]
    np.testing.assert_allclose(sc, [0.9, 0.8, 0.7 * 0.5], rtol=1e-15)   # IoU(1, 0) = 50 / 100


@pytest.mark.parametrize("dtype", [np.float16, F32, F64, np.int64])
def test_descending_is_stable_on_many_ties(dtype):
    # NumPy's default argsort is not stable beyond a few elements: every tie rule must be applied
    rng = np.random.default_rng(3)
    s = rng.integers(-3, 4, size=3000).astype(dtype)
    low = np.argsort(-s.astype(F64), kind="stable")
    assert engine.descending(s, "lowest_index").tolist() == low.tolist()
    high = np.argsort(s.astype(F64), kind="stable")[::-1]
    assert engine.descending(s, "highest_index").tolist() == high.tolist()


def test_descending_float32_neighbours_are_not_merged():
    for x in (F32(0.5), F32(1e-30), F32(-0.25), F32(3e38)):
        up = np.nextafter(x, F32(np.inf))
        for s in (np.array([x, up]), np.array([x, x, up, up])[::2]):
            assert engine.descending(s, "lowest_index").tolist() == [1, 0], x
            assert engine.descending(s, "highest_index").tolist() == [1, 0], x


def test_single_box_everywhere():
    b = np.array([[0, 0, 1, 1]], F64)
    for kind in ("tv", "plus_one", "any"):
        g = engine.prepare(b, kind, 0.5, False, "float64")
        assert engine.sweep(g).tolist() == [0]
        assert engine.sweep(g, np.zeros(1, np.int64)).tolist() == [0]
        assert engine.walk(g).tolist() == [0]
        assert engine.walk(g, np.array([0])).tolist() == [0]
        got = engine.greedy(b, 0.5, kind=kind, inclusive=False, threshold_dtype="float64",
                            groups=np.zeros(1, np.int64))
        assert got.dtype == np.int64 and got.tolist() == [0]
        assert engine.greedy(b, 0.0, kind=kind, inclusive=True, threshold_dtype="float64").tolist() == [0]
    xs, cnt = engine._x_window(engine.prepare(b, "tv", 0.5, False, "float64").C, "tv")
    assert xs.tolist() == [0] and cnt.tolist() == [0]


def test_soft_nms_hard_cut_is_strictly_above_the_threshold():
    # IoU(0, 1) = 50 / 100 = 0.5 exactly: "exceeds iou_threshold" is false at 0.5, so box 1 keeps
    # its Gaussian weight; at 0.49 it is cut
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], F64)
    s = np.array([0.9, 0.8])
    kw = dict(SOFT, method="gaussian", discard="any", hard_above_threshold=True, iou_threshold=0.5)
    ind, sc = engine.soft_nms_passes(b, s, **kw)
    assert ind.tolist() == [0, 1]
    np.testing.assert_allclose(sc, [0.9, 0.8 * np.exp(-0.5)], rtol=1e-15)
    ind, sc = engine.soft_nms_passes(b, s, **dict(kw, iou_threshold=0.49))
    assert ind.tolist() == [0]
    want = ref.soft_nms(b, s, **dict(kw, iou_threshold=0.5))
    assert want[0].tolist() == [0, 1]


def test_zero_area_twins_raise_no_warning():
    # 0 / 0 IoU (NaN: no suppression) is the engine's documented answer, given silently
    b = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [5, 5, 6, 6]], F32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in ("tv", "plus_one", "any"):
            for thr, inc in ((0.5, False), (0.0, True)):
                g = engine.prepare(b, kind, thr, inc, "float64")
                engine._suppress(g.C[:, :, None], g.C[:, None, :], kind, g.thr, inc)
                engine.walk(g, allow_sweep=engine.sweep_allowed(thr, inc) or kind == "any")
                engine.greedy(b, thr, kind=kind, inclusive=inc, threshold_dtype="float64",
                              groups=np.array([0, 0, 1, 1]))
        assert engine.greedy(b[:2], 0.5, kind="tv", inclusive=False, threshold_dtype="float64").tolist() == [0, 1]


def test_pair_test_equals_onnxruntime_guards_on_a_grid():
    # every pair of boxes on a small grid, flipped corners and center-point boxes (normalize=False,
    # negative widths) included: the pair test equals the loop transcription of SuppressByIOU
    v = np.array([0.0, 0.5, 1.0, 2.0], F32)
    b = np.array([[x1, y1, x2, y2] for x1 in v for y1 in v for x2 in v for y2 in v], F32)[::5]
    for normalize in (True, False):
        C = engine.prepare(b, "any", 0.0, True, "float64", normalize=normalize).C
        for thr, inclusive in ((F32(0.0), True), (F32(0.25), False), (F32(1 / 3), True)):
            got = engine._suppress(C[:, :, None], C[:, None, :], "any", thr, inclusive)
            bb = C[:4].T
            for i in range(len(b)):
                for j in range(len(b)):
                    iou = ref.guarded_iou(bb[i], bb[j])
                    want = iou is not None and bool(iou >= thr if inclusive else iou > thr)
                    assert got[i, j] == want, (normalize, thr, bb[i], bb[j])


@pytest.mark.parametrize("discard", ["any", "overlapping"])
def test_soft_nms_score_exactly_at_the_threshold_is_kept(discard):
    # the C loops drop `sc < min_score`: a score equal to it stays (disjoint: weight 1; overlapping
    # below the IoU threshold: linear weight 1 too)
    b = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [5, 0, 15, 10]], F64)       # box 2: IoU 1/3 with 0
    s = np.array([0.9, 0.001, 0.001])
    kw = dict(SOFT, discard=discard, iou_threshold=0.5)
    ind, sc = engine.soft_nms_passes(b, s, **kw)
    assert ind.tolist() == [0, 1, 2] and sc.tolist() == [0.9, 0.001, 0.001]
    ind, sc = engine.soft_nms_passes(b, s, **dict(kw, score_threshold=0.0010000001))
    assert ind.tolist() == ([0, 1] if discard == "overlapping" else [0])


def test_sweep_window_widens_by_one_for_plus_one_widths():
    # +1 widths: [0, 1] and [1.5, 2.5] share half a pixel column (w = 1 - 1.5 + 1), IoU 1/7 > 0.1;
    # the continuous boxes do not touch at all
    b = np.array([[0, 0, 1, 1], [1.5, 0, 2.5, 1]], F64)
    g = engine.prepare(b, "plus_one", 0.1, False, "float64")
    assert engine.sweep(g).tolist() == [0]
    assert engine.sweep(g, np.zeros(2, np.int64)).tolist() == [0]
    assert engine.greedy(b, 0.1, kind="plus_one", inclusive=False, threshold_dtype="float64",
                         groups=np.zeros(2, np.int64)).tolist() == [0]
    g = engine.prepare(b, "tv", 0.0, False, "float64")
    assert engine.sweep(g).tolist() == [0, 1]
