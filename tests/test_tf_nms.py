"""refdet.tf_ops NMS: TF's NonMaxSuppressionV3/V4/V5 and CombinedNonMaxSuppression.

The first half needs only NumPy (golden cases, the two paths held equal, the libstdc++ and glibc
transliterations); the differential tests at the end run TensorFlow (``pytest.importorskip``) on
hypothesis inputs with tied scores, thresholds hit exactly, zero-area and flipped boxes, empty sets.
"""
import math

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet import conventions
from refdet.nms import nms
from refdet.testing import conformance, conformance_tf
from refdet.testing.strategies_tf import tf_combined_nms_cases, tf_nms_cases
from refdet.tf_ops import _libstdcxx as cxx
from refdet.tf_ops import combined_non_max_suppression, non_max_suppression, tf_iou
from refdet.tf_ops._libm import expf
from refdet.tf_ops.nms import _soft_loop

F = np.float32


# --------------------------------------------------------------------------------------------------
# golden cases
# --------------------------------------------------------------------------------------------------

def test_hard_nms_golden():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 0, 10, 6], [20, 20, 30, 30]], F)
    s = np.array([0.9, 0.8, 0.7, 0.7], F)
    # IoU(0, 1) = 50/100 = 0.5: not > 0.5, kept; IoU(0, 2) = 0.6 > 0.5: dropped
    r = non_max_suppression(b, s, 10, 0.5)
    assert r.selected_indices.tolist() == [0, 1, 3] and r.valid_outputs == 3
    np.testing.assert_array_equal(r.selected_scores, s[[0, 1, 3]])
    # score_threshold 0.7 is strict: the two 0.7 boxes are no candidates
    assert non_max_suppression(b, s, 10, 0.5, 0.7).selected_indices.tolist() == [0, 1]
    # V4 padding: index 0 and score 0 up to max_output_size, valid_outputs counts the real ones
    r = non_max_suppression(b, s, 5, 0.5, 0.7, pad_to_max_output_size=True)
    assert r.selected_indices.tolist() == [0, 1, 0, 0, 0] and r.valid_outputs == 2
    assert r.selected_scores.tolist() == [s[0], s[1], 0, 0, 0]
    # max_output_size cuts the greedy list (prefix)
    assert non_max_suppression(b, s, 2, 0.5).selected_indices.tolist() == [0, 1]


def test_hard_nms_degenerate_and_flipped_boxes():
    # zero-area boxes have IoU 0 with everything: never suppress, even identical ones at threshold 0
    b = np.array([[3, 3, 3, 3], [3, 3, 3, 3], [0, 0, 4, 4], [4, 4, 0, 0]], F)
    s = np.array([0.9, 0.8, 0.7, 0.6], F)
    # box 3 is box 2 with its corners swapped: IoU 1 > 0.5
    assert non_max_suppression(b, s, 10, 0.5).selected_indices.tolist() == [0, 1, 2]
    assert non_max_suppression(b, s, 10, 0.0).selected_indices.tolist() == [0, 1, 2]


def test_nan_scores_are_never_candidates():
    b = np.array([[0, 0, 1, 1], [5, 5, 6, 6]], F)
    s = np.array([np.nan, 0.5], F)
    assert non_max_suppression(b, s, 5).selected_indices.tolist() == [1]


def test_soft_nms_golden():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], F)
    s = np.array([0.9, 0.8, 0.6], F)
    r = non_max_suppression(b, s, 10, 0.3, 0.0, soft_nms_sigma=0.5)
    # IoU(0, 1) = 0.5 > iou_threshold but TF's soft mode has no hard cut:
    # 0.8 * exp(-0.5 * 0.25 / 0.5) = 0.8 * exp(-0.25) = 0.62304..., selected after box 2 (0.6)? no: 0.623 > 0.6
    assert r.selected_indices.tolist() == [0, 1, 2]
    assert r.selected_scores[1] == F(F(0.8) * expf(F(-0.5) / F(0.5) * F(0.5) * F(0.5)))
    assert math.isclose(float(r.selected_scores[1]), 0.8 * math.exp(-0.25), rel_tol=1e-6)
    # the paper's exp(-iou^2 / sigma) = exp(-0.5): 0.485 < 0.6, so box 2 comes second
    r = non_max_suppression(b, s, 10, 0.3, 0.0, soft_nms_sigma=0.5, gaussian_denominator="sigma")
    assert r.selected_indices.tolist() == [0, 2, 1]
    # a decayed score <= score_threshold is dropped (inclusive), the initial filter is strict
    thr = float(F(0.8) * expf(F(-0.25)))
    assert non_max_suppression(b, s, 10, 0.3, thr, soft_nms_sigma=0.5).selected_indices.tolist() == [0]
    assert non_max_suppression(b, s, 10, 0.3, thr, soft_nms_sigma=0.5,
                               score_cut="strict").selected_indices.tolist() == [0, 1]


def test_combined_nms_golden():
    b = np.array([[[[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.25]], [[0.5, 0.5, 1.5, 1.5]]]], F)     # (1, 3, 1, 4)
    s = np.array([[[0.9, 0.1], [0.8, 0.8], [0.7, 0.95]]], F)                                  # (1, 3, 2)
    r = combined_non_max_suppression(b, s, 2, 5, 0.5)
    # class 0: boxes 0, 1 (IoU 0.5 not > 0.5) -- limited to 2 per class; class 1: boxes 2, 1
    assert r.nmsed_scores.tolist() == [[F(0.95), F(0.9), F(0.8), F(0.8), 0]]
    assert r.nmsed_classes.tolist() == [[1, 0, 0, 1, 0]]
    assert r.valid_detections.tolist() == [4]
    # box 2 clipped to [0, 1]
    assert r.nmsed_boxes[0, 0].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert combined_non_max_suppression(b, s, 2, 5, 0.5, clip_boxes=False).nmsed_boxes[0, 0].tolist() == \
        [0.5, 0.5, 1.5, 1.5]
    # pad_per_class: P = min(max_total_size, 2 * 2) = 4 rows instead of 5
    assert combined_non_max_suppression(b, s, 2, 5, 0.5, pad_per_class=True).nmsed_scores.shape == (1, 4)


def test_combined_nms_tie_order_is_libstdcxx():
    # 20 equal scores in one class: the score-only heap does not pop them in index order
    b = np.zeros((1, 20, 1, 4), F)
    b[0, :, 0] = [[i, 0, i + 1, 1] for i in range(20)]
    s = np.full((1, 20, 1), 0.5, F)
    heap = combined_non_max_suppression(b / 32, s, 20, 20, 0.5, clip_boxes=False)
    ordered = combined_non_max_suppression(b / 32, s, 20, 20, 0.5, clip_boxes=False, class_queue="lowest_index",
                                           merge_sort="stable")
    assert np.array_equal(ordered.nmsed_boxes[0, :, 0] * 32, np.arange(20))
    assert not np.array_equal(heap.nmsed_boxes, ordered.nmsed_boxes)
    assert sorted(heap.nmsed_boxes[0, :, 0].tolist()) == sorted(ordered.nmsed_boxes[0, :, 0].tolist())


# --------------------------------------------------------------------------------------------------
# two paths, one answer; transliterations
# --------------------------------------------------------------------------------------------------

@given(tf_nms_cases(soft=False))
def test_hard_fast_path_equals_the_kernel_loop(case):
    b, s, k, thr, sthr, _ = case
    fast = non_max_suppression(b, s, k, thr, sthr)
    p = conventions.resolve("tf_non_max_suppression", "tf")
    sel, sc = _soft_loop(b, s, k, F(thr), F(sthr), F(0), p)
    assert np.array_equal(fast.selected_indices, sel)
    assert np.array_equal(fast.selected_scores, sc)
    # and hard TF NMS is refdet.nms(convention="tf") on the candidates, truncated
    c = np.flatnonzero(s > F(sthr))
    assert np.array_equal(fast.selected_indices, c[nms(b[c], s[c], thr, convention="tf")][:k])


@given(tf_nms_cases())
def test_float64_input_gives_the_float64_answer_and_is_layout_independent(case):
    b, s, k, thr, sthr, sigma = case
    r64 = non_max_suppression(b.astype(np.float64), s.astype(np.float64), k, thr, sthr, soft_nms_sigma=sigma)
    assert r64.selected_scores.dtype == np.float64
    bf = np.asfortranarray(b)
    bf.setflags(write=False)
    s_strided = np.repeat(s, 2)[::2]
    r1 = non_max_suppression(bf, s_strided, k, thr, sthr, soft_nms_sigma=sigma)
    r2 = non_max_suppression(b, s, k, thr, sthr, soft_nms_sigma=sigma)
    assert np.array_equal(r1.selected_indices, r2.selected_indices)
    assert r1.selected_scores.tobytes() == r2.selected_scores.tobytes()


def test_expf_matches_the_c_library():
    ctypes = pytest.importorskip("ctypes")
    try:
        libm = ctypes.CDLL("libm.so.6")
    except OSError:
        pytest.skip("no glibc libm")
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = [ctypes.c_float]
    x = -np.random.default_rng(0).uniform(0, 110, 5000).astype(F)
    x = np.concatenate([x, F([0, -0.0, -1e-30, -87.5, -103.9, -104.0, -np.inf])])
    want = np.array([libm.expf(float(v)) for v in x], F)
    got = expf(x)
    assert got.tobytes() == want.tobytes()
    # a double exp rounded to float differs somewhere: the transliteration is needed
    assert not np.array_equal(np.exp(x.astype(np.float64)).astype(F)[:5000], want[:5000])


@given(st.lists(st.integers(0, 4), max_size=60))
def test_libstdcxx_sort_sorts_and_is_stable_up_to_16(keys):
    items = [(k, i) for i, k in enumerate(keys)]
    a = list(items)
    cxx.sort(a, lambda u, v: u[0] < v[0])
    assert [u[0] for u in a] == sorted(keys)
    assert sorted(a) == sorted(items)
    if len(a) <= 16:
        assert a == sorted(items)


@given(st.lists(st.integers(0, 3), max_size=40))
def test_libstdcxx_heap_pops_in_score_order(keys):
    h = []
    for i, k in enumerate(keys):
        cxx.push_heap(h, (k, i), lambda u, v: u[0] < v[0])
    out = [cxx.pop_heap(h, lambda u, v: u[0] < v[0]) for _ in keys]
    assert [u[0] for u in out] == sorted(keys, reverse=True)
    assert sorted(out) == sorted((k, i) for i, k in enumerate(keys))


def test_tf_iou_guards():
    a = np.array([0, 0, 2, 2], F)
    bs = np.array([[0, 0, 2, 2], [2, 2, 0, 0], [1, 1, 1, 3], [2, 0, 4, 2], [0, 0, 1, 2]], F)
    assert tf_iou(a, bs).tolist() == [1.0, 1.0, 0.0, 0.0, 0.5]


# --------------------------------------------------------------------------------------------------
# bad input, conventions, conformance wiring
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(2), 3, 1.5), "iou_threshold"),
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(2), -1), "max_output_size"),
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(2), 3, soft_nms_sigma=-0.1), "soft_nms_sigma"),
    (lambda: non_max_suppression(np.zeros((2, 3)), np.zeros(2), 3), "boxes"),
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(3), 3), "scores"),
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(2), 3, score_threshold=np.nan), "score_threshold"),
    (lambda: non_max_suppression(np.zeros((2, 4)), np.zeros(2), 3, score_cut="sometimes"), "score_cut"),
    (lambda: combined_non_max_suppression(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 2)), 1, 1), "q = 1 or q = K"),
    (lambda: combined_non_max_suppression(np.zeros((1, 2, 1, 4)), np.zeros((1, 3, 2)), 1, 1), "scores"),
    (lambda: combined_non_max_suppression(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 2)), 0, 1),
     "max_output_size_per_class"),
    (lambda: combined_non_max_suppression(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 2)), 1, 0), "max_total_size"),
    (lambda: combined_non_max_suppression(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 2)), 1, 1, 0.5,
                                          clip_boxes="yes"), "clip_boxes"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_inputs_are_not_written():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], F)
    s = np.array([0.9, 0.8], F)
    b.setflags(write=False)
    s.setflags(write=False)
    non_max_suppression(b, s, 5, 0.3, soft_nms_sigma=0.5)
    combined_non_max_suppression(b[None, :, None], s[None, :, None], 2, 2)


def test_conventions_tables_registered():
    for op in ("tf_non_max_suppression", "tf_combined_non_max_suppression"):
        assert "tf" in str(conventions.describe(op))
    assert soft_nms_profile_has_no_hard_cut()


def soft_nms_profile_has_no_hard_cut():
    return conventions.resolve("soft_nms", "tf").hard_above_threshold is False


def test_checks_listed_for_verify():
    for op in ("tf_non_max_suppression", "tf_soft_nms", "tf_combined_nms"):
        assert conformance.CHECKS[op] is conformance_tf.TF_CHECKS[op]


def test_conformance_accepts_refdet_and_names_wrong_variants():
    ok = conformance_tf.check_tf_non_max_suppression(
        lambda b, s, k, t, st: non_max_suppression(b, s, k, t, st).selected_indices, n_cases=15)
    assert ok.ok
    rep = conformance_tf.check_tf_non_max_suppression(
        lambda b, s, k, t, st: non_max_suppression(b, s, k, t, st, ties="highest_index").selected_indices,
        n_cases=15, raise_on_failure=False)
    assert not rep.ok and "highest_index" in rep.first_mismatch

    def paper(b, s, k, t, st, sig):
        r = non_max_suppression(b, s, k, t, st, soft_nms_sigma=sig, gaussian_denominator="sigma")
        return r.selected_indices, r.selected_scores
    rep = conformance_tf.check_tf_soft_nms(paper, n_cases=10, raise_on_failure=False)
    assert not rep.ok and "gaussian_denominator='sigma'" in rep.first_mismatch

    def unclipped(b, s, kpc, tot, t, st, pad, clip):
        return combined_non_max_suppression(b, s, kpc, tot, t, st, pad_per_class=pad, clip_boxes=False)
    rep = conformance_tf.check_tf_combined_nms(unclipped, n_cases=10, raise_on_failure=False)
    assert not rep.ok and "clip_boxes" in rep.first_mismatch


# --------------------------------------------------------------------------------------------------
# differential tests against TensorFlow
# --------------------------------------------------------------------------------------------------

def _tf():
    # TF reads TF_ENABLE_ONEDNN_OPTS once, at import: the reference kernels, not oneDNN's
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    pytest.importorskip("tensorflow")
    from refdet.runtimes.tensorflow import require
    return require()


@given(tf_nms_cases(), st.booleans())
def test_nms_v4_v5_equal_tensorflow(case, pad):
    tf = _tf()
    b, s, k, thr, sthr, sigma = case
    i, sc, nv = tf.raw_ops.NonMaxSuppressionV5(boxes=b, scores=s, max_output_size=k, iou_threshold=F(thr),
                                               score_threshold=F(sthr), soft_nms_sigma=F(sigma),
                                               pad_to_max_output_size=pad)
    r = non_max_suppression(b, s, k, thr, sthr, soft_nms_sigma=sigma, pad_to_max_output_size=pad)
    assert r.selected_indices.tolist() == i.numpy().tolist()
    assert r.selected_scores.tobytes() == sc.numpy().tobytes()          # bit for bit
    assert r.valid_outputs == int(nv)
    if sigma == 0:
        i3 = tf.raw_ops.NonMaxSuppressionV3(boxes=b, scores=s, max_output_size=k, iou_threshold=F(thr),
                                            score_threshold=F(sthr))
        assert r.selected_indices[:r.valid_outputs].tolist() == i3.numpy().tolist()


@given(tf_combined_nms_cases())
def test_combined_nms_equals_tensorflow(case):
    tf = _tf()
    b, s, kpc, total, thr, sthr, pad, clip = case
    out = tf.image.combined_non_max_suppression(b, s, kpc, total, thr, sthr, pad_per_class=pad, clip_boxes=clip)
    r = combined_non_max_suppression(b, s, kpc, total, thr, sthr, pad_per_class=pad, clip_boxes=clip)
    for got, want in zip(out, r):
        got = got.numpy()
        assert got.shape == want.shape
        assert np.array_equal(got, want.astype(got.dtype))


def test_soft_nms_tf_profile_agrees_with_tensorflow_on_the_weight():
    # the refdet.soft_nms "tf" profile (eager decay, no hard cut) selects what TF selects here
    from refdet.nms import soft_nms
    tf = _tf()
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 5], [20, 20, 30, 30]], F)
    s = np.array([0.9, 0.8, 0.7, 0.6], F)
    i, sc = tf.image.non_max_suppression_with_scores(b, s, 10, iou_threshold=0.3, score_threshold=0.0,
                                                     soft_nms_sigma=0.5)
    r = soft_nms(b, s, sigma=0.5, iou_threshold=0.3, score_threshold=0.0, convention="tf")
    assert r.indices.tolist() == i.numpy().tolist()
    np.testing.assert_allclose(r.scores, sc.numpy(), rtol=4e-7)


def test_verify_tensorflow_target_agrees():
    _tf()
    from refdet.verify import run_target
    rows = run_target("tensorflow", n_cases=10)
    assert {r["op"] for r in rows} >= {"tf_non_max_suppression", "tf_soft_nms", "tf_combined_nms"}
    assert all(r["ok"] for r in rows), [r["first_mismatch"] for r in rows if not r["ok"]]
