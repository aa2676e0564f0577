"""refdet.tf_ops.generate_bounding_box_proposals: TF's GenerateBoundingBoxProposals (GPU-only kernel).

TF has no CPU kernel for this op, so it is pinned three ways: worked examples (each step of the
kernel, by hand), a plain loop written from the CUDA source that the vectorised function must equal
on hypothesis inputs (ties, thresholds hit exactly, zero-area boxes, NaN deltas), and a test that
TensorFlow still has no CPU kernel (it fails the day one appears, so a differential test can follow).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refdet.tf_ops import generate_bounding_box_proposals
from refdet.tf_ops.proposals import BBOX_XFORM_CLIP

F = np.float32


def _one(scores, deltas, anchors, info=(100.0, 100.0, 1.0, 0.0, 0.0), **kw):
    """One image, H = 1: scores (W,), deltas (W, 4), anchors (W, 4) -> the op's inputs."""
    s = np.asarray(scores, F).reshape(1, 1, -1, 1)
    d = np.asarray(deltas, F).reshape(1, 1, -1, 4)
    a = np.asarray(anchors, F).reshape(1, -1, 4)
    return generate_bounding_box_proposals(s, d, np.asarray([info], F), a, **kw)


# --------------------------------------------------------------------------------------------------
# worked examples
# --------------------------------------------------------------------------------------------------

def test_decode_worked_example():
    # anchor [y1, x1, y2, x2] = [10, 20, 30, 60]: h = 20, w = 40, centre (20, 40)
    # deltas [dy, dx, dh, dw] = [0.5, -0.25, log 2, 0]: centre (20 + 10, 40 - 10) = (30, 30),
    # size (40, 40) -> [10, 10, 50, 50]
    r = _one([0.9], [[0.5, -0.25, math.log(2.0), 0.0]], [[10, 20, 30, 60]], min_size=0, post_nms_topn=2)
    np.testing.assert_allclose(r.rois[0, 0], [10, 10, 50, 50], rtol=0, atol=2e-5)
    assert r.roi_probabilities[0].tolist() == [pytest.approx(0.9), 0.0]      # padded with zeros
    assert r.rois[0, 1].tolist() == [0, 0, 0, 0] and r.num_valid.tolist() == [1]


def test_dw_clamped_from_above_only_at_log_1000_over_16():
    assert BBOX_XFORM_CLIP == pytest.approx(math.log(1000 / 16), rel=1e-7)
    # a 2 x 2 anchor centred at (50, 50); dh = dw = 10 is clamped: side 2 * 1000 / 16 = 125 -> clipped
    # to the 100 x 100 image; dh = dw = -10 is not clamped from below: side 2 e^-10
    r = _one([0.9, 0.8], [[0, 0, 10, 10], [0, 0, -10, -10]], [[49, 49, 51, 51], [49, 49, 51, 51]],
             min_size=0, nms_threshold=1.0)
    np.testing.assert_allclose(r.rois[0, 0], [0, 0, 100, 100])
    side = 2 * np.exp(F(-10))
    np.testing.assert_allclose(r.rois[0, 1], [50 - side / 2, 50 - side / 2, 50 + side / 2, 50 + side / 2],
                               rtol=1e-6)


def test_clip_to_image_size_not_size_minus_one_and_min_size_inclusive_times_scale():
    anchors = [[-5, -5, 5, 5], [90, 90, 120, 120], [0, 0, 4, 4]]
    r = _one([0.9, 0.8, 0.7], np.zeros((3, 4)), anchors, info=(100, 100, 2.0, 0, 0), min_size=2.5,
             nms_threshold=1.0)
    # box 0 clipped to [0, 0, 5, 5] (side 5 >= 2.5 * 2: kept, the bound hit exactly), box 1 to
    # [90, 90, 100, 100] (the image size, not 99), box 2 has side 4 < 5: filtered
    assert r.num_valid.tolist() == [2]
    np.testing.assert_array_equal(r.rois[0, :2], [[0, 0, 5, 5], [90, 90, 100, 100]])
    np.testing.assert_array_equal(r.roi_probabilities[0, :2], F([0.9, 0.8]))


def test_pre_nms_topn_cuts_before_the_size_filter():
    anchors = [[0, 0, 1, 1], [0, 0, 50, 50], [60, 60, 90, 90]]
    # the best-scoring box is too small; with pre_nms_topn = 2 it takes a slot, so only one survives
    r = _one([0.9, 0.8, 0.7], np.zeros((3, 4)), anchors, pre_nms_topn=2, min_size=16)
    assert r.num_valid.tolist() == [1] and r.rois[0, 0].tolist() == [0, 0, 50, 50]
    r = _one([0.9, 0.8, 0.7], np.zeros((3, 4)), anchors, pre_nms_topn=3, min_size=16)
    assert r.num_valid.tolist() == [2]


def test_nms_strict_threshold_and_zero_area_boxes_never_suppress():
    # IoU([0,0,10,10], [0,0,10,5]) = 0.5 exactly: suppressed only when 0.5 > t
    anchors = [[0, 0, 10, 10], [0, 0, 10, 5]]
    assert _one([0.9, 0.8], np.zeros((2, 4)), anchors, min_size=0, nms_threshold=0.5).num_valid[0] == 2
    assert _one([0.9, 0.8], np.zeros((2, 4)), anchors, min_size=0, nms_threshold=0.4999).num_valid[0] == 1
    # a zero-area box (line) is neither suppressed nor suppresses, even at threshold 0
    anchors = [[0, 0, 10, 10], [0, 0, 10, 0], [1, 1, 9, 9]]
    r = _one([0.9, 0.8, 0.7], np.zeros((3, 4)), anchors, min_size=0, nms_threshold=0.0)
    assert r.num_valid.tolist() == [2] and r.rois[0, 1].tolist() == [0, 0, 10, 0]
    # the guard on the *later* box: an inverted box (x2 < x1, area -100, through a negative min_size)
    # would suppress the zero-area one (0 > -100 * 0.5) were it not for area_j == 0
    anchors = [[0, 10, 10, 0], [0, 0, 10, 0]]
    r = _one([0.9, 0.8], np.zeros((2, 4)), anchors, min_size=-100, nms_threshold=0.5)
    assert r.num_valid.tolist() == [2]
    # and on the *earlier* one: the zero-area box first does not suppress the inverted one
    r = _one([0.8, 0.9], np.zeros((2, 4)), anchors, min_size=-100, nms_threshold=0.5)
    assert r.num_valid.tolist() == [2]


def test_equal_scores_keep_flat_hwa_order_and_post_nms_topn():
    anchors = [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]
    r = _one([0.5, 0.5, 0.5], [[0, 0, 0, 0], [0.1, 0, 0, 0], [0, 0, 0, 0]], anchors, min_size=0,
             nms_threshold=0.5, post_nms_topn=1)
    # ties: flat index 0 first; it suppresses 1 (IoU 9 / 11); post_nms_topn = 1 keeps only it
    assert r.num_valid.tolist() == [1] and r.rois[0, 0].tolist() == [0, 0, 10, 10]


def test_nan_delta_as_cuda_fmin_fmax():
    # dw = NaN: fmin(NaN, clip) = clip. dx = NaN: x1, x2 NaN -> fmax(fmin(NaN, W), 0) = W: width 0
    r = _one([0.9, 0.8], [[0, 0, 0, np.nan], [0, np.nan, 0, 0]], [[40, 40, 60, 60], [0, 0, 10, 10]],
             min_size=0, nms_threshold=1.0)
    assert not np.isnan(r.rois).any() and r.num_valid.tolist() == [2]
    np.testing.assert_allclose(r.rois[0, 0], [40, 0, 60, 100])          # width 20 * 62.5, clipped
    np.testing.assert_array_equal(r.rois[0, 1], [0, 100, 10, 100])


def test_anchor_layouts_and_batch():
    rng = np.random.default_rng(0)
    s = rng.random((2, 3, 4, 2)).astype(F)
    d = (rng.standard_normal((2, 3, 4, 8)) * 0.2).astype(F)
    a = np.sort(rng.random((3, 4, 2, 4)) * 60, axis=-1).astype(F)[..., [0, 1, 2, 3]]
    a = np.concatenate([np.minimum(a[..., :2], a[..., 2:]), np.maximum(a[..., :2], a[..., 2:]) + 5], -1)
    info = np.array([[64, 64, 1, 0, 0], [50, 70, 0.5, 0, 0]], F)
    r1 = generate_bounding_box_proposals(s, d, info, a.reshape(3, 4, 8), min_size=4, post_nms_topn=7)
    r2 = generate_bounding_box_proposals(s, d, info, a.reshape(-1, 4), min_size=4, post_nms_topn=7)
    for x, y in zip(r1, r2):
        np.testing.assert_array_equal(x, y)
    # images are independent: image 1 alone gives the same rows
    r3 = generate_bounding_box_proposals(s[1:], d[1:], info[1:], a.reshape(-1, 4), min_size=4, post_nms_topn=7)
    np.testing.assert_array_equal(r1.rois[1], r3.rois[0])
    assert r1.rois.shape == (2, 7, 4) and r1.roi_probabilities.shape == (2, 7) and r1.rois.dtype == F


# --------------------------------------------------------------------------------------------------
# the vectorised function against a loop written from the CUDA source
# --------------------------------------------------------------------------------------------------

def _loop(scores, deltas, info, anchors, thr, pre, min_size, post):
    """GenerateBoundingBoxProposals for one image, one box at a time (float64, readable)."""
    k = len(scores)
    order = sorted(range(k), key=lambda i: -scores[i])[:min(k, pre)]       # sorted() is stable
    clip = math.log(1000 / 16)
    h, w, scale = info[0], info[1], info[2]
    cand = []
    for i in order:
        y1, x1, y2, x2 = anchors[i]
        dy, dx, dh, dw = deltas[i]
        dw, dh = min(dw, clip), min(dh, clip)
        bw, bh = x2 - x1, y2 - y1
        cx, cy = x1 + 0.5 * bw + bw * dx, y1 + 0.5 * bh + bh * dy
        pw, ph = bw * math.exp(dw), bh * math.exp(dh)
        box = [min(max(cy - 0.5 * ph, 0), h), min(max(cx - 0.5 * pw, 0), w),
               min(max(cy + 0.5 * ph, 0), h), min(max(cx + 0.5 * pw, 0), w)]
        if min(box[2] - box[0], box[3] - box[1]) >= min_size * scale:
            cand.append((box, scores[i]))
    kept = []
    for box, sc in cand:
        area = (box[2] - box[0]) * (box[3] - box[1])
        drop = False
        for kb, _ in kept:
            ka = (kb[2] - kb[0]) * (kb[3] - kb[1])
            inter = max(min(kb[2], box[2]) - max(kb[0], box[0]), 0) * max(min(kb[3], box[3]) - max(kb[1], box[1]), 0)
            if ka != 0 and area != 0 and inter > (ka + area - inter) * thr:
                drop = True
                break
        if not drop:
            kept.append((box, sc))
        if len(kept) == post:
            break
    return kept


@settings(deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2 ** 31 - 1),
       st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.integers(1, 30), st.sampled_from([0.0, 2.0, 5.0, -20.0]),
       st.integers(1, 12))
def test_equals_the_loop_float64(h, w, a, seed, thr, pre, min_size, post):
    rng = np.random.default_rng(seed)
    # scores on a coarse grid (ties), integer anchors (exact IoU thresholds), some zero-area anchors
    s = rng.integers(0, 4, (1, h, w, a)).astype(np.float64) / 4
    d = np.round(rng.standard_normal((1, h, w, 4 * a)) * 0.3, 1)
    lo = rng.integers(0, 20, (h * w * a, 2)).astype(np.float64)
    anc = np.concatenate([lo, lo + rng.integers(-3, 12, (h * w * a, 2))], 1)   # some inverted
    info = np.array([[24.0, 30.0, rng.choice([0.5, 1.0]), 0, 0]])
    r = generate_bounding_box_proposals(s, d, info, anc, nms_threshold=thr, pre_nms_topn=pre,
                                        min_size=min_size, post_nms_topn=post)
    kept = _loop(s.ravel(), d.reshape(-1, 4), info[0], anc, thr, pre, min_size, post)
    assert r.num_valid[0] == len(kept)
    if kept:
        np.testing.assert_allclose(r.rois[0, :len(kept)], [b for b, _ in kept], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(r.roi_probabilities[0, :len(kept)], [p for _, p in kept])
    assert not r.rois[0, len(kept):].any() and not r.roi_probabilities[0, len(kept):].any()


@given(hnp.arrays(np.float32, (1, 2, 2, 4), elements=st.floats(-2, 2, width=32)))
def test_float32_close_to_float64_and_layout_independent(d8):
    s = np.arange(8, dtype=F).reshape(1, 2, 2, 2)[..., ::-1] / 8
    d = np.concatenate([d8, d8[..., ::-1]], -1)
    anc = np.tile(np.array([[2, 2, 12, 14], [5, 1, 9, 20]], F), (4, 1))
    info = np.array([[30, 30, 1, 0, 0]], F)
    r32 = generate_bounding_box_proposals(s, d, info, anc, min_size=0, nms_threshold=0.6)
    r64 = generate_bounding_box_proposals(s.astype(float), d.astype(float), info, anc.astype(float),
                                          min_size=0, nms_threshold=0.6)
    assert r32.rois.dtype == F and r64.rois.dtype == np.float64
    if (r32.num_valid == r64.num_valid).all():
        np.testing.assert_allclose(r32.rois, r64.rois, rtol=1e-5, atol=1e-4)
    rf = generate_bounding_box_proposals(np.asfortranarray(s), d[..., ::1].copy(order="F"), info,
                                         anc[::-1][::-1], min_size=0, nms_threshold=0.6)
    for x, y in zip(r32, rf):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------------------
# bad input, and inputs left alone
# --------------------------------------------------------------------------------------------------

def test_bad_input_is_named():
    s, d = np.zeros((1, 1, 2, 1), F), np.zeros((1, 1, 2, 4), F)
    a, info = np.zeros((2, 4), F), np.array([[10, 10, 1, 0, 0]], F)
    with pytest.raises(ValueError, match="bbox_deltas"):
        generate_bounding_box_proposals(s, d[..., :3], info, a)
    with pytest.raises(ValueError, match="anchors"):
        generate_bounding_box_proposals(s, d, info, np.zeros((3, 4), F))
    with pytest.raises(ValueError, match="image_info"):
        generate_bounding_box_proposals(s, d, info[:, :2], a)
    with pytest.raises(ValueError, match="scores.*NaN"):
        generate_bounding_box_proposals(np.full_like(s, np.nan), d, info, a)
    with pytest.raises(ValueError, match="nms_threshold.*TensorFlow"):
        generate_bounding_box_proposals(s, d, info, a, nms_threshold=1.5)
    with pytest.raises(ValueError, match="pre_nms_topn"):
        generate_bounding_box_proposals(s, d, info, a, pre_nms_topn=0)
    with pytest.raises(ValueError, match="post_nms_topn"):
        generate_bounding_box_proposals(s, d, info, a, post_nms_topn=0)
    with pytest.raises(TypeError, match="min_size"):
        generate_bounding_box_proposals(s, d, info, a, min_size="16")
    with pytest.raises(ValueError, match="post_nms_topn"):
        generate_bounding_box_proposals(s, d, info, a, post_nms_topn=2 ** 40)


def test_inputs_not_modified():
    rng = np.random.default_rng(1)
    s, d = rng.random((1, 2, 2, 1)).astype(F), rng.random((1, 2, 2, 4)).astype(F)
    a = np.array([[0, 0, 5, 5]] * 4, F)
    info = np.array([[10, 10, 1, 0, 0]], F)
    before = [x.copy() for x in (s, d, a, info)]
    for x in (s, d, a, info):
        x.setflags(write=False)
    generate_bounding_box_proposals(s, d, info, a, min_size=0)
    for x, y in zip((s, d, a, info), before):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------------------
# TensorFlow: still no CPU kernel
# --------------------------------------------------------------------------------------------------

def test_tensorflow_still_has_no_cpu_kernel():
    tf = pytest.importorskip("tensorflow")
    s, d = np.zeros((1, 1, 2, 1), F), np.zeros((1, 1, 2, 4), F)
    a, info = np.zeros((1, 2, 4), F), np.array([[10, 10, 1, 0, 0]], F)
    with tf.device("/CPU:0"):
        # the day this stops raising, TF has a CPU kernel: add the differential test against it
        with pytest.raises(tf.errors.NotFoundError, match="GenerateBoundingBoxProposals"):
            tf.image.generate_bounding_box_proposals(s, d, info, a)
