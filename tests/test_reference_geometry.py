"""Fast == reference for the geometry family: box coder, anchors, SSD default boxes, matchers, sampler.

The references (``refdet/reference/{box_coder,anchors,matcher,sampler}.py``) are loops and formulas in
the fast paths' order of operations, so every float comparison here is **bit-equal** (0 ULP; NaN equal
to NaN, and the sign of zero compared too); indices and labels are exact. Inputs hit ties, thresholds
exactly and one ulp past, the clamp exactly and one ulp past, empty and degenerate sets, and every
convention profile.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refdet
from refdet import conventions
from refdet.reference import anchors as ra
from refdet.reference import box_coder as rb
from refdet.reference import matcher as rm
from refdet.reference import sampler as rs
from refdet.testing import strategies as rst

#: Largest distance in units in the last place allowed between fast and reference: they follow the
#: same order of operations, so none.
MAX_ULP = 0


def _ordered(x):
    """Floats mapped to integers in the same order, one step per representable value (-0.0 < +0.0)."""
    ii = np.int64 if x.dtype == np.float64 else np.int32
    i = x.view(ii).astype(np.int64)
    mag = i & np.int64(np.iinfo(ii).max)
    return np.where(i < 0, -mag - 1, mag)


def assert_bits_equal(fast, ref):
    """Same shape, dtype and bits (every NaN counts as equal to every NaN): at most MAX_ULP apart."""
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.shape == ref.shape, (fast.shape, ref.shape)
    assert fast.dtype == ref.dtype, (fast.dtype, ref.dtype)
    nan_f, nan_r = np.isnan(fast), np.isnan(ref)
    np.testing.assert_array_equal(nan_f, nan_r)
    a, b = _ordered(fast[~nan_f]).astype(np.float64), _ordered(ref[~nan_r]).astype(np.float64)
    ulp = np.abs(a - b).max(initial=0)
    assert ulp <= MAX_ULP, f"fast and reference differ by {ulp:g} ulp (bound {MAX_ULP})"


def test_bits_helper_can_fail():
    with pytest.raises(AssertionError):
        assert_bits_equal(np.array([0.0]), np.array([-0.0]))
    with pytest.raises(AssertionError):
        assert_bits_equal(np.array([1.0], np.float32), np.array([np.nextafter(np.float32(1), 2)]))
    assert_bits_equal(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))


# --------------------------------------------------------------------------------------------------
# box coder
# --------------------------------------------------------------------------------------------------

_CODER_PROFILES = sorted(conventions.describe("encode_boxes"))
_WEIGHTS = st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.1, 0.1, 0.2, 0.2),
                            (2.5, 0.75, 1.0 / 3.0, 7.0)])
_MEANS = st.sampled_from([None, (0.0, 0.0, 0.0, 0.0), (0.5, -0.25, 0.125, 0.0)])


@st.composite
def _box_pairs(draw, dtype):
    n = draw(st.integers(0, 12))
    kw = dict(min_n=n, max_n=n, dtype=np.float64)
    g = draw(rst.box_sets(**kw))
    a = draw(rst.box_sets(**kw))
    return g.astype(dtype), a.astype(dtype)


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), conv=st.sampled_from(_CODER_PROFILES),
       weights=_WEIGHTS, means=_MEANS)
def test_encode_equals_reference(data, dtype, conv, weights, means):
    g, a = data.draw(_box_pairs(dtype))
    knobs = dict(conventions.resolve("encode_boxes", conv))
    if data.draw(st.booleans()):          # knob combinations no profile has
        knobs["center"] = data.draw(st.sampled_from(["half_width", "midpoint"]))
        knobs["plus_one"] = data.draw(st.booleans())
    try:
        fast = refdet.encode_boxes(g, a, weights=weights, means=means, convention=conv, **knobs)
    except ValueError as e:
        # a flipped or zero-size box is refused (tests/test_hardening_box_coder.py): only where the
        # reference's code would not be finite (its division by zero, its log of a negative ratio)
        assert "`anchors` row" in str(e) or "`boxes` row" in str(e), e
        with np.errstate(all="ignore"):
            assert not np.isfinite(rb.encode_boxes(g, a, weights=weights, means=means, **knobs)).all()
        return
    assert_bits_equal(fast, rb.encode_boxes(g, a, weights=weights, means=means, **knobs))


def _delta_pool(dtype):
    t = np.dtype(dtype).type
    c = t(rb.DEFAULT_CLAMP)
    special = [c, -c, np.nextafter(c, t(np.inf)), np.nextafter(c, t(0)), t(10), t(-10), t(0)]
    return st.one_of(st.sampled_from([float(v) for v in special]),
                     st.integers(-64, 64).map(lambda k: k / 16), st.floats(-6, 6, width=32))


@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), conv=st.sampled_from(_CODER_PROFILES),
       weights=_WEIGHTS, means=_MEANS, k=st.integers(1, 3), clamp=st.sampled_from([rb.DEFAULT_CLAMP, 1.0, -2.0]))
def test_decode_equals_reference(data, dtype, conv, weights, means, k, clamp):
    _, a = data.draw(_box_pairs(dtype))
    d = data.draw(hnp.arrays(np.float64, (len(a), 4 * k), elements=_delta_pool(dtype))).astype(dtype)
    knobs = dict(conventions.resolve("decode_boxes", conv))
    if data.draw(st.booleans()):
        knobs["clamp_mode"] = data.draw(st.sampled_from(["max", "symmetric", "none"]))
        knobs["x2_minus_one"] = data.draw(st.booleans())
    fast = refdet.decode_boxes(d, a, weights=weights, means=means, clamp=clamp, convention=conv, **knobs)
    ref = rb.decode_boxes(d, a, weights=weights, means=means, clamp=clamp, **knobs)
    assert_bits_equal(fast, ref)
    fast2, _ = refdet.decode_boxes_forward(d, a, weights=weights, means=means, clamp=clamp, convention=conv,
                                           **knobs)
    assert_bits_equal(fast2, ref)


def test_decode_reference_clamp_golden():
    # TV9: anchor [0, 0, 10, 10], deltas [0, 0, 10, 10] clamp to w = 10 * 1000 / 16 = 625 -> [-307.5, 317.5]
    out = rb.decode_boxes(np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 10]]))
    np.testing.assert_allclose(out, [[-307.5, -307.5, 317.5, 317.5]], rtol=1e-12)


# --------------------------------------------------------------------------------------------------
# anchors
# --------------------------------------------------------------------------------------------------

_CELL_KNOBS = st.fixed_dictionaries({
    "ratio_def": st.sampled_from(["h_over_w", "w_over_h"]),
    "order": st.sampled_from(["ratio_major", "size_major"]),
    "rounding": st.sampled_from(["none", "torchvision", "pfr", "mmdet_legacy"]),
    "plus_one": st.booleans(),
})
_SIZES = st.lists(st.one_of(st.integers(1, 700).map(float), st.floats(1.0, 700.0)), min_size=1, max_size=4)


@given(sizes=_SIZES, ratios=rst.anchor_ratios(), dtype=st.sampled_from([np.float32, np.float64]),
       profile=st.sampled_from(sorted(conventions.describe("cell_anchors"))), free=st.booleans(),
       knobs=_CELL_KNOBS, base=st.sampled_from([16.0, 8.0, 4.0, 19.0, 33.0]),
       center=st.sampled_from([0.0, 7.5, 3.0, 0.25]))
def test_cell_anchors_equal_reference(sizes, ratios, dtype, profile, free, knobs, base, center):
    if not free:
        knobs = dict(conventions.resolve("cell_anchors", profile))
    fast = refdet.cell_anchors(sizes, ratios, convention=profile, base_size=base, center=center, dtype=dtype,
                               **knobs)
    ref = ra.cell_anchors(sizes, ratios, base_size=base, center=center, dtype=dtype, **knobs)
    assert_bits_equal(fast, ref)


@given(base=st.sampled_from([16, 8, 32, 19, 4]), ratios=rst.anchor_ratios(),
       scales=st.lists(st.sampled_from([1.0, 2.0, 8.0, 16.0, 32.0, 0.5, 2 ** (1 / 3)]), min_size=1, max_size=4))
def test_faster_rcnn_anchors_equal_generate_anchors(base, ratios, scales):
    assert_bits_equal(refdet.faster_rcnn_anchors(base, ratios, scales), ra.generate_anchors(base, ratios, scales))


def test_generate_anchors_tv1():
    # SPEC TV1: py-faster-rcnn's printed nine anchors
    want = [[-84, -40, 99, 55], [-176, -88, 191, 103], [-360, -184, 375, 199],
            [-56, -56, 71, 71], [-120, -120, 135, 135], [-248, -248, 263, 263],
            [-36, -80, 51, 95], [-80, -168, 95, 183], [-168, -344, 183, 359]]
    np.testing.assert_array_equal(ra.generate_anchors(), want)


@given(cell=hnp.arrays(np.float64, (3, 4), elements=st.integers(-64, 64).map(lambda v: v / 4)),
       dtype=st.sampled_from([np.float32, np.float64]), fs=st.tuples(st.integers(0, 7), st.integers(0, 7)),
       stride=st.tuples(st.sampled_from([1.0, 8.0, 16.0, 33.0, 12.5]), st.sampled_from([1.0, 8.0, 16.0, 19.0])),
       offset=st.sampled_from([0.0, 0.5, "legacy", 0.3]))
def test_grid_anchors_equal_reference(cell, dtype, fs, stride, offset):
    c = cell.astype(dtype)
    assert_bits_equal(refdet.grid_anchors(c, fs, stride, offset=offset), ra.grid_anchors(c, fs, stride, offset=offset))


_PYRAMID_PROFILES = sorted(conventions.describe("pyramid_anchors"))


@given(cfg=rst.anchor_configs(), dtype=st.sampled_from([np.float32, np.float64]),
       profile=st.sampled_from(_PYRAMID_PROFILES), free=st.booleans(), knobs=_CELL_KNOBS,
       offset=st.sampled_from([0.0, 0.5, "legacy", "tf_divisible"]), with_base=st.booleans())
def test_pyramid_anchors_equal_reference(cfg, dtype, profile, free, knobs, offset, with_base):
    s = dict(conventions.resolve("pyramid_anchors", profile))
    if free:
        s.update(knobs, center_offset=offset)
    L = len(cfg["feature_sizes"])
    strides = cfg["strides"]
    base = [float(v) for v in strides] if (with_base and strides is not None) else None
    if s["rounding"] == "pfr" and strides is None and base is None:
        # 'pfr' needs a square stride: image // feature must agree on both axes
        img_h, img_w = cfg["image_size"]
        assume(all(img_h // h == img_w // w for h, w in cfg["feature_sizes"]))
    try:
        fast, lvl = refdet.pyramid_anchors(cfg["image_size"], cfg["feature_sizes"], strides, cfg["sizes"],
                                           cfg["aspect_ratios"], convention=profile, base_sizes=base, dtype=dtype,
                                           **{k: v for k, v in s.items() if k != "octave_truncate"})
    except ValueError as e:       # mmdet's legacy rounding with TF's per-axis centres: refused
        assert s["rounding"] == "mmdet_legacy" and "needs equal x/y offsets" in str(e)
        assume(False)
    ref_strides = None if strides is None else [(float(v), float(v)) for v in strides]
    ref, ref_lvl = ra.pyramid_anchors(cfg["image_size"], cfg["feature_sizes"], ref_strides, cfg["sizes"],
                                      cfg["aspect_ratios"], base_sizes=base, dtype=dtype,
                                      **{k: v for k, v in s.items() if k != "octave_truncate"})
    assert_bits_equal(fast, ref)
    np.testing.assert_array_equal(lvl, ref_lvl)
    assert len(np.unique(lvl)) <= L


@given(base=st.lists(st.sampled_from([32.0, 64.0, 128.0, 256.0, 512.0, 50.0]), min_size=1, max_size=5),
       n=st.integers(1, 4), truncate=st.booleans())
def test_octave_sizes_equal_reference(base, n, truncate):
    assert refdet.octave_sizes(base, n, truncate=truncate) == [tuple(r) for r in ra.octave_sizes(base, n, truncate)]


_SSD_PROFILES = sorted(conventions.describe("ssd_default_boxes"))


@given(cfg=rst.ssd_configs(), dtype=st.sampled_from([np.float32, np.float64]), profile=st.sampled_from(_SSD_PROFILES),
       offset=st.sampled_from([0.5, 0.0]), normalized=st.booleans(), pixel=st.booleans(),
       interp=st.sampled_from([1.0, 0.0, 2.0]))
def test_ssd_default_boxes_equal_reference(cfg, dtype, profile, offset, normalized, pixel, interp):
    s = dict(conventions.resolve("ssd_default_boxes", profile))
    L = len(cfg["feature_sizes"])
    kw = dict(aspect_ratios=cfg["aspect_ratios"], steps=cfg.get("steps"), clip=cfg["clip"], offset=offset,
              normalized=normalized, dtype=dtype)
    shape_knobs = dict(layout=s["layout"], skip_unit_ratio=s["skip_unit_ratio"], reduce_lowest=s["reduce_lowest"],
                       interpolated_ratio=interp)
    if pixel:                                    # Caffe PriorBox min/max pixel sizes
        mins = [8.0 * (k + 1) for k in range(L)]
        maxs = [8.0 * (k + 2) for k in range(L)]
        fast = refdet.ssd_default_boxes(cfg["image_size"], cfg["feature_sizes"], convention=profile,
                                        min_sizes=mins, max_sizes=maxs, interpolated_ratio=interp, **kw)
        ref = ra.ssd_default_boxes(cfg["image_size"], cfg["feature_sizes"], None, min_sizes=mins, max_sizes=maxs,
                                   clip_mode=s["clip_mode"], size_reference=s["size_reference"], **kw, **shape_knobs)
    else:
        scales = cfg.get("scales") or [0.1 + 0.8 * k / max(L, 1) for k in range(L + 1)]
        fast = refdet.ssd_default_boxes(cfg["image_size"], cfg["feature_sizes"], convention=profile, scales=scales,
                                        interpolated_ratio=interp, **kw)
        ref = ra.ssd_default_boxes(cfg["image_size"], cfg["feature_sizes"], scales, clip_mode=s["clip_mode"],
                                   size_reference=s["size_reference"], **kw, **shape_knobs)
    assert_bits_equal(fast, ref)


def test_ssd_reference_ssd300_count_and_corners():
    # SPEC TV7: 8732 boxes; the first one [-6.5, -6.5, 14.5, 14.5] (float32)
    fs = [(f, f) for f in (38, 19, 10, 5, 3, 1)]
    out = ra.ssd_default_boxes((300, 300), fs, [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                               [[2], [2, 3], [2, 3], [2, 3], [2], [2]], steps=[8, 16, 32, 64, 100, 300],
                               dtype=np.float32)
    assert out.shape == (8732, 4)
    np.testing.assert_allclose(out[0], [-6.5, -6.5, 14.5, 14.5], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# matchers
# --------------------------------------------------------------------------------------------------

_PAIRS = st.sampled_from([(0.7, 0.3), (0.5, 0.4), (0.5, 0.5), (0.4, 0.3), (0.7, 0.7), (0.3, 0.3)])
_MATCH_PROFILES = sorted(conventions.describe("match"))
_MATRICES = st.one_of(rst.iou_matrices(dtype=np.float64), rst.iou_matrices(dtype=np.float32),
                      rst.iou_matrices(dtype=np.float32, allow_nan=True))


def _giou_like(q):
    """Shift a [0, 1] matrix to [-1, 1] (GIoU-like qualities, for mmdet's negative floor)."""
    return (q * q.dtype.type(2) - q.dtype.type(1)).astype(q.dtype)


@given(q=_MATRICES, hl=_PAIRS, profile=st.sampled_from(_MATCH_PROFILES), allow=st.booleans(), free=st.booleans(),
       mode=st.sampled_from(refdet.matcher.LOW_QUALITY_MODES), strict=st.booleans(), after=st.booleans(),
       min_pos=st.sampled_from([-math.inf, 0.0, 0.3, 0.5]), floor=st.sampled_from([-math.inf, 0.0]),
       giou=st.booleans())
def test_match_equals_reference(q, hl, profile, allow, free, mode, strict, after, min_pos, floor, giou):
    if giou:
        q = _giou_like(q)
    s = dict(conventions.resolve("match", profile))
    if free:
        s.update(low_quality=mode, positive_strict=strict, background_after=after, min_pos_iou=min_pos,
                 neg_floor=floor)
    high, low = hl
    fast = refdet.match(q, high=high, low=low, allow_low_quality_matches=allow, allow_nan=True, **s)
    ref = rm.match(q, high, low, allow, **s)
    np.testing.assert_array_equal(fast, ref)
    details = refdet.match_details(q, high=high, low=low, allow_low_quality_matches=allow, allow_nan=True, **s)
    np.testing.assert_array_equal(details.matches, ref)


@pytest.mark.parametrize("policy", refdet.matcher.EMPTY_GT_POLICIES)
@pytest.mark.parametrize("n", [0, 5])
def test_match_empty_gt_equals_reference(policy, n):
    q = np.zeros((0, n))
    if policy == "raise":
        for f in (lambda: refdet.match(q, empty_gt=policy), lambda: rm.match(q, empty_gt=policy),
                  lambda: refdet.ssd_match(q, empty_gt=policy), lambda: rm.ssd_match(q, empty_gt=policy)):
            with pytest.raises(ValueError, match="No ground-truth boxes"):
                f()
        return
    np.testing.assert_array_equal(refdet.match(q, empty_gt=policy), rm.match(q, empty_gt=policy))
    np.testing.assert_array_equal(refdet.ssd_match(q, empty_gt=policy), rm.ssd_match(q, empty_gt=policy))


def test_match_reference_tv8():
    # SPEC TV8a/c, worked in the module docstring of refdet.matcher
    m = np.array([[0.10, 0.60, 0.60, 0.20, 0.00, 0.75], [0.50, 0.60, 0.10, 0.29, 0.00, 0.30]])
    assert rm.match(m, 0.7, 0.3, False).tolist() == [-2, -2, -2, -1, -1, 0]
    assert rm.match(m, 0.7, 0.3, True).tolist() == [-2, 0, -2, -1, -1, 0]
    assert rm.match(m, 0.7, 0.3, True, low_quality="all_ties_forcing_gt_last_wins",
                    min_pos_iou=0.3).tolist() == [-2, 1, -2, -1, -1, 0]
    assert rm.match(np.array([[0.7, 0.3, 0.2999999, 0.6999999]]), 0.7, 0.3, False).tolist() == [0, -2, -1, -2]


_SSD_MATCH_PROFILES = sorted(conventions.describe("ssd_match"))


@given(q=st.one_of(rst.iou_matrices(dtype=np.float64), rst.iou_matrices(dtype=np.float32)),
       t=st.sampled_from([0.5, 0.3, 0.7, 0.4]), profile=st.sampled_from(_SSD_MATCH_PROFILES), free=st.booleans(),
       prematch=st.sampled_from(refdet.matcher.SSD_PREMATCH_MODES), strict=st.booleans(),
       eps=st.sampled_from([-math.inf, 1e-6, 0.3]))
def test_ssd_match_equals_reference(q, t, profile, free, prematch, strict, eps):
    s = dict(conventions.resolve("ssd_match", profile))
    if free:
        s.update(prematch=prematch, positive_strict=strict, candidate_eps=eps)
    np.testing.assert_array_equal(refdet.ssd_match(q, t, **s), rm.ssd_match(q, t, **s))


def test_ssd_match_reference_tv8d():
    s = np.array([[0.40, 0.10, 0.40], [0.45, 0.20, 0.05]])
    assert rm.ssd_match(s).tolist() == [1, -1, -1]
    assert rm.ssd_match(s, prematch="greedy_bipartite", candidate_eps=1e-6).tolist() == [1, -1, 0]
    assert rm.ssd_match(np.array([[0.30, 0.30, 0.10], [0.10, 0.20, 0.60]])).tolist() == [0, -1, 1]


# --------------------------------------------------------------------------------------------------
# sampler
# --------------------------------------------------------------------------------------------------

@given(labels=rst.sampler_labels(classes=3), batch=st.sampled_from([0, 1, 7, 64, 256, 512]),
       frac=st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.0 / 3.0]), seed=st.integers(0, 2 ** 32 - 1))
def test_sampler_equals_reference(labels, batch, frac, seed):
    pos, neg = refdet.sample_balanced_indices(labels, batch, frac, rng=seed)
    rpos, rneg = rs.sample_balanced_indices(labels, batch, frac, rng=seed)
    assert pos.tolist() == rpos and neg.tolist() == rneg
    # a Generator passed in is consumed the same way (two permutations, positives first)
    g1, g2 = np.random.default_rng(seed), np.random.default_rng(seed)
    m_fast = refdet.sample_balanced(labels, batch, frac, rng=g1)
    m_ref = rs.sample_balanced(labels, batch, frac, rng=g2)
    for x, y in zip(m_fast, m_ref):
        np.testing.assert_array_equal(x, y)
    assert g1.integers(1 << 62) == g2.integers(1 << 62)
