"""refdet.testing.conformance, compare_floats, compare_anchors: wrong implementations are caught and
the cause is named; honest independent implementations pass."""
import numpy as np
import pytest

import refdet
from refdet.testing import conformance as C
from refdet.testing import (assert_allclose_ulp, assert_anchors_equal, explain_anchor_difference,
                            explain_float_difference, ulp_distance)
from tests import wrong_impls as W

N = 12  # hypothesis cases per check: the golden cases carry most of the weight, keep the suite fast


# ---------------------------------------------------------------------------------------------------
# item 4: each deliberately wrong implementation is caught, and the explanation names the cause
# ---------------------------------------------------------------------------------------------------

WRONG = [
    # (check, wrong implementation, extra kwargs, substrings the explanation must contain)
    (C.check_nms, W.wrong_nms_inclusive, {}, ["inclusive=True", "EXACTLY", ">="]),
    (C.check_nms, W.wrong_nms_unstable_ties, {}, ["ties='highest_index'", "EQUAL scores"]),
    (C.check_box_iou, W.wrong_box_iou_plus_one, {}, ["plus_one=True", "x2 - x1 + 1"]),
    (C.check_decode, W.wrong_decode_no_clamp, {}, ["clamp_mode='none'", "log(1000/16)"]),
    (C.check_focal_loss, W.wrong_focal_no_alpha, {}, ["alpha=-1", "no alpha weighting"]),
    (C.check_relu, W.right_relu, {"grad": W.wrong_relu_grad_at_zero}, ["x == 0 exactly", "ReLU'(0) = 1"]),
    (C.check_anchors, W.wrong_anchors_off_by_one, {}, ["one whole stride", "off-by-one cell index",
                                                       "level 0, location (y=0, x=0), anchor a=0"]),
]


@pytest.mark.parametrize("check,fn,kw,words", WRONG, ids=lambda v: getattr(v, "__name__", None))
def test_wrong_implementation_caught_and_cause_named(check, fn, kw, words):
    with pytest.raises(AssertionError) as info:
        check(fn, n_cases=N, **kw)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from:\n{msg}"
    rep = check(fn, n_cases=N, raise_on_failure=False, **kw)
    assert not rep.ok and rep.agreeing < rep.cases and rep.worst_error > 0
    assert rep.first_mismatch.startswith("golden case")          # the golden cases catch every one of them


RIGHT = [
    (C.check_nms, W.right_nms, {}),
    (C.check_box_iou, W.right_box_iou, {}),
    (C.check_decode, W.right_decode, {}),
    (C.check_focal_loss, W.right_focal, {}),
    (C.check_relu, W.right_relu, {"grad": W.right_relu_grad}),
    (C.check_anchors, W.right_anchors, {}),
]


@pytest.mark.parametrize("check,fn,kw", RIGHT, ids=lambda v: getattr(v, "__name__", None))
def test_independent_correct_implementations_pass(check, fn, kw):
    rep = check(fn, n_cases=N, **kw)
    assert rep.ok and rep.cases > N // 2 and rep.agreeing == rep.cases


def test_refdet_against_itself_every_check():
    from refdet import losses as L

    reps = [
        C.check_batched_nms(lambda b, s, i, t: refdet.batched_nms(b, s, i, t), n_cases=N),
        C.check_generalized_box_iou(lambda a, b: refdet.generalized_box_iou(a, b), n_cases=N),
        C.check_match(lambda q: refdet.match(q), n_cases=N),
        C.check_match(lambda q: refdet.match(q, high=0.5, low=0.4, convention="detectron2"), high=0.5, low=0.4,
                      convention="detectron2", n_cases=N),
        *C.check_encode_decode(lambda b, a: refdet.encode_boxes(b, a, weights=(10, 10, 5, 5)),
                               lambda d, a: refdet.decode_boxes(d, a, weights=(10, 10, 5, 5)),
                               weights=(10, 10, 5, 5), n_cases=N),
        C.check_focal_loss(lambda x, t: L.sigmoid_focal_loss_forward(x, t, alpha=0.5, gamma=1.0)[0],
                           grad=lambda x, t, d: L.sigmoid_focal_loss_backward(
                               d, L.sigmoid_focal_loss_forward(x, t, alpha=0.5, gamma=1.0)[1]).dlogits,
                           alpha=0.5, gamma=1.0, n_cases=N),
        C.check_conv2d(lambda x, w, b, **k: refdet.conv2d_forward(x, w, b, **k)[0], n_cases=N),
        C.check_sample_balanced(lambda lab: refdet.sample_balanced(lab, rng=0), n_cases=N),
        C.check_nms(lambda b, s, t: refdet.nms(b, s, t, convention="onnx"), convention="onnx", n_cases=N),
    ]
    for r in reps:
        assert r.ok, str(r)


def test_more_wrong_implementations():
    # a matcher using '>' for the positive threshold: the explanation points at the exact threshold
    rep = C.check_match(lambda q: refdet.match(q, positive_strict=True), n_cases=N, raise_on_failure=False)
    assert not rep.ok and "exactly `high`" in rep.first_mismatch and "positive_strict=True" in rep.first_mismatch
    # a sampler that ignores the positive fraction
    def greedy(labels):
        pos = labels >= 1
        return pos, (labels == 0) & (np.cumsum(labels == 0) <= 256 - pos.sum())
    rep = C.check_sample_balanced(greedy, n_cases=N, raise_on_failure=False)
    assert not rep.ok and "positives sampled; expected min(#pos" in rep.first_mismatch
    # true convolution (flipped kernel) instead of cross-correlation
    rep = C.check_conv2d(lambda x, w, b, **k: refdet.conv2d_forward(x, w[:, :, ::-1, ::-1].copy(), b, **k)[0],
                         n_cases=0, raise_on_failure=False)
    assert not rep.ok and "flips the kernel" in rep.first_mismatch
    # an encoder computing float32 boxes in float64 and rounding: within a few ULPs, so it agrees
    rep = C.check_encode(lambda b, a: refdet.encode_boxes(b.astype(np.float64), a.astype(np.float64)).astype(b.dtype),
                         n_cases=N, raise_on_failure=False)
    assert rep.cases > 0
    # an implementation that crashes is a disagreement, with the exception in the explanation
    def crash(b, s, t):
        raise RuntimeError("kernel launch failed")
    rep = C.check_nms(crash, n_cases=0, raise_on_failure=False)
    assert rep.agreeing == 0 and "RuntimeError: kernel launch failed" in rep.first_mismatch


def test_reports_are_deterministic_and_count_cases():
    a = C.check_nms(W.wrong_nms_inclusive, n_cases=N, seed=3, raise_on_failure=False)
    b = C.check_nms(W.wrong_nms_inclusive, n_cases=N, seed=3, raise_on_failure=False)
    assert (a.cases, a.agreeing, a.worst_error, a.failures) == (b.cases, b.agreeing, b.worst_error, b.failures)
    golden = C.check_nms(W.right_nms, n_cases=0)
    assert golden.cases == 8 and golden.ok                          # the 8 golden NMS cases
    assert "8/8 cases agree" in str(golden)
    d = a.as_dict()
    assert d["op"] == "nms" and d["ok"] is False and d["unit"] == "positions"


def test_tensor_outputs_are_accepted():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rep = C.check_box_iou(lambda a, b: torch.from_numpy(refdet.box_iou(a, b)), n_cases=3)
    assert rep.ok


# ---------------------------------------------------------------------------------------------------
# compare_floats
# ---------------------------------------------------------------------------------------------------

def test_ulp_distance_golden():
    one = np.float32(1)
    assert ulp_distance(np.nextafter(one, np.float32(2)), one) == 1
    assert ulp_distance(np.float32(-0.0), np.float32(0.0)) == 0
    # the smallest subnormals either side of 0 are 2 ULPs apart (-tiny, 0, +tiny)
    tiny = np.nextafter(np.float32(0), np.float32(1))
    assert ulp_distance(-tiny, tiny) == 2
    assert ulp_distance(1.0, 1.0 + 2 ** -52) == 1                 # float64
    assert ulp_distance(np.nan, np.nan) == 0 and ulp_distance(np.nan, 1.0) == np.inf
    # 1.5 and 1.25 in float32: (1.5 - 1.25) / 2**-23 = 2**21 ULPs
    assert ulp_distance(np.float32(1.5), np.float32(1.25)) == 2 ** 21


def test_float_difference_names_float64_math():
    rng = np.random.default_rng(0)
    xy = rng.uniform(1000, 3000, (40, 2)).astype(np.float32)
    a = np.concatenate([xy, xy + rng.uniform(1, 900, (40, 2)).astype(np.float32)], 1)
    b = a[::-1] + np.float32(0.37)
    ref32 = refdet.box_iou(a, b)
    via64 = refdet.box_iou(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    assert not np.array_equal(ref32, via64)                     # float32 order of operations shows
    msg = explain_float_difference(via64, ref32, max_ulps=0, op="box_iou", args=(a, b))
    assert "float64 math rounded to float32" in msg
    assert_allclose_ulp(via64, ref32, max_ulps=64)               # but only by a few ULPs


def test_float_difference_nan_and_guard():
    a = np.array([[3.0, 3, 3, 3]])
    guarded = refdet.box_iou(a, a, convention="detectron2")      # 0
    msg = explain_float_difference(guarded, refdet.box_iou(a, a), op="box_iou", args=(a, a))
    assert "only refdet is NaN" not in msg and "only expected is NaN" in msg
    assert "guard=" in msg
    with pytest.raises(AssertionError, match="shape"):
        assert_allclose_ulp(np.zeros(3), np.zeros(4))


# ---------------------------------------------------------------------------------------------------
# compare_anchors
# ---------------------------------------------------------------------------------------------------

CFG = dict(image_size=(64, 96), feature_sizes=[(8, 12), (4, 6)], strides=[8, 16], sizes=[(32,), (64,)],
           aspect_ratios=[(0.5, 1.0, 2.0)] * 2)


def test_anchor_location_names_level_y_x_a():
    e, _ = refdet.pyramid_anchors(**CFG)
    a = e.copy()
    # level 1 starts at row 8*12*3 = 288; (y=2, x=5, a=1) is row 288 + (2*6 + 5)*3 + 1 = 340
    a[340, 0] += 0.25
    msg = explain_anchor_difference(a, e, feature_sizes=CFG["feature_sizes"], strides=CFG["strides"])
    assert "level 1, location (y=2, x=5), anchor a=1 (row 340)" in msg
    assert "0.25" in msg


def test_anchor_half_stride_offset_named_with_convention():
    e, _ = refdet.pyramid_anchors(**CFG)
    half, _ = refdet.pyramid_anchors(**CFG, center_offset=0.5)
    with pytest.raises(AssertionError) as info:
        assert_anchors_equal(half, e, feature_sizes=CFG["feature_sizes"], strides=CFG["strides"], config=CFG)
    msg = str(info.value)
    assert "half the stride 8" in msg and "half the stride 16" in msg and "center_offset=0.5" in msg


def test_anchor_order_and_count_differences():
    e, _ = refdet.pyramid_anchors(**CFG)
    perm = e.reshape(-1, 3, 4)[:, ::-1].reshape(-1, 4)            # cell anchors reversed
    msg = explain_anchor_difference(perm, e, feature_sizes=CFG["feature_sizes"])
    assert "different ORDER" in msg and "is expected at level 0, (y=0, x=0), a=2" in msg
    msg = explain_anchor_difference(e[:-3], e, feature_sizes=CFG["feature_sizes"])
    assert "anchor counts differ" in msg
    pix, _ = refdet.pyramid_anchors(**CFG, plus_one=True)
    msg = explain_anchor_difference(pix, e, feature_sizes=CFG["feature_sizes"], strides=CFG["strides"])
    assert msg is not None and "level 0" in msg
    assert explain_anchor_difference(e.copy(), e) is None


# ---------------------------------------------------------------------------------------------------
# strategies added for the conformance checks
# ---------------------------------------------------------------------------------------------------

def test_new_strategies():
    from hypothesis import given, settings
    from refdet.testing import strategies as rst

    @settings(max_examples=15, deadline=None)
    @given(rst.overlapping_box_sets(), rst.divisible_anchor_configs())
    def run(bs, cfg):
        b, s = bs
        assert b.shape == (len(s), 4) and np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
        for (h, w), st_ in zip(cfg["feature_sizes"], cfg["strides"]):
            assert cfg["image_size"][0] // h == st_ and cfg["image_size"][1] // w == st_
        anchors, _ = refdet.pyramid_anchors(**cfg)
        assert len(anchors) == sum(h * w * len(sz) * len(r) for (h, w), sz, r in
                                   zip(cfg["feature_sizes"], cfg["sizes"], cfg["aspect_ratios"]))
    run()


# ---------------------------------------------------------------------------------------------------
# issue 14: RoIAlign, RoI pooling, FPN level assignment, proposal selection
# ---------------------------------------------------------------------------------------------------

WRONG_ROI = [
    (C.check_roi_align, W.wrong_roi_align_no_half_pixel, ["aligned=False: no half-pixel shift", "aligned=True"]),
    (C.check_roi_align, W.wrong_roi_align_fixed_ratio, ["sampling ratio adaptive vs fixed", "fixed 2 x 2 grid"]),
    (C.check_roi_align, W.wrong_roi_align_yx_boxes, ["box given as (y1, x1, y2, x2)"]),
    (C.check_roi_pool, W.wrong_roi_pool_round_first, ["spatial_scale applied after rounding"]),
    (C.check_assign_roi_levels, W.wrong_levels_no_eps, ["RoI assigned to level 3 instead of 4: canonical size or eps",
                                                         "likely cause: no eps"]),
]


@pytest.mark.parametrize("check,fn,words", WRONG_ROI, ids=lambda v: getattr(v, "__name__", None))
def test_wrong_roi_implementation_caught_and_cause_named(check, fn, words):
    with pytest.raises(AssertionError) as info:
        check(fn, n_cases=N)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from:\n{msg}"
    rep = check(fn, n_cases=N, raise_on_failure=False)
    assert not rep.ok and rep.worst_error > 0
    assert rep.first_mismatch.startswith("golden case")          # the golden cases catch each bug


def test_the_first_matching_cause_is_the_one_named():
    # the no-shift bug is only reproduced by the aligned variant: no other cause is listed before it
    rep = C.check_roi_align(W.wrong_roi_align_no_half_pixel, n_cases=0, raise_on_failure=False)
    assert rep.first_mismatch.count("likely cause") == 1
    assert "sampling ratio" not in rep.first_mismatch.split("likely cause")[1]


RIGHT_ROI = [
    (C.check_roi_align, W.right_roi_align),
    (C.check_roi_pool, W.right_roi_pool),
    (C.check_assign_roi_levels, W.right_levels),
]


@pytest.mark.parametrize("check,fn", RIGHT_ROI, ids=lambda v: getattr(v, "__name__", None))
def test_independent_correct_roi_implementations_pass(check, fn):
    rep = check(fn, n_cases=N)
    assert rep.ok and rep.cases > N and rep.agreeing == rep.cases


def test_roi_checks_on_refdet_itself_and_other_conventions():
    from refdet.proposals import filter_proposals
    from refdet.roi import assign_roi_levels, roi_align

    reps = [
        C.check_roi_align(lambda x, r, *a: roi_align(x, r, *a, convention="detectron2"), convention="detectron2",
                          n_cases=N),
        C.check_assign_roi_levels(lambda b: assign_roi_levels(b, convention="mmdet"), convention="mmdet", n_cases=N),
        C.check_filter_proposals(lambda p, o, s, c: (lambda r: (r.boxes, r.scores))(
            filter_proposals(p, o, s, c, convention="detectron2")), convention="detectron2", n_cases=4),
    ]
    for r in reps:
        assert r.ok, str(r)


def test_level_rule_of_another_framework_is_named():
    # detectron2's rule (eps 1e-8 inside the log2) checked against torchvision's (1e-6 after it): a RoI one
    # ulp under 224 x 224 goes to P3; the eps knobs come first, the whole detectron2 rule also reproduces it
    from refdet.roi import assign_roi_levels

    rep = C.check_assign_roi_levels(lambda b: assign_roi_levels(b, convention="detectron2"), n_cases=N,
                                    raise_on_failure=False)
    assert not rep.ok and "RoI assigned to level 3 instead of 4" in rep.first_mismatch
    assert "likely cause: no eps instead of eps_inside=0, eps_outside=1e-06" in rep.first_mismatch
    assert "detectron2's level rule" in rep.first_mismatch
    # a canonical size of 256 instead of 224 moves the 224 x 224 RoI to P3 too
    rep = C.check_assign_roi_levels(lambda b: assign_roi_levels(b, canonical_scale=256.0), n_cases=0,
                                    raise_on_failure=False)
    assert "RoI assigned to level 3 instead of 4" in rep.first_mismatch
    assert "canonical size 256 instead of 224" in rep.first_mismatch


def test_wrong_proposal_selection_is_named():
    from refdet.proposals import filter_proposals

    def global_nms(p, o, s, c):
        r = filter_proposals(p, o, s, c, nms_per_level=False)
        return r.boxes, r.scores
    rep = C.check_filter_proposals(global_nms, n_cases=0, raise_on_failure=False)
    assert not rep.ok and rep.first_mismatch.startswith("golden case")
    assert "likely cause: NMS over all proposals instead of per level" in rep.first_mismatch
    assert "first difference at rank" in rep.first_mismatch

    def logit_scores(p, o, s, c):
        r = filter_proposals(p, o, s, c, score="logit")
        return r.boxes, r.scores
    rep = C.check_filter_proposals(logit_scores, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "likely cause: scores returned as logit" in rep.first_mismatch


def test_roi_checks_are_in_the_registry_and_golden_counts():
    for op in ("roi_align", "roi_pool", "assign_roi_levels", "filter_proposals"):
        assert op in C.CHECKS and C.CHECKS[op].__name__ in C.__all__
    assert C.check_roi_align(W.right_roi_align, n_cases=0).cases == 14
    assert C.check_roi_pool(W.right_roi_pool, n_cases=0).cases == 8


def test_roi_align_check_accepts_tensor_outputs():
    torch = pytest.importorskip("torch")
    rep = C.check_roi_align(lambda *a: torch.from_numpy(W.right_roi_align(*a)), n_cases=2)
    assert rep.ok


# the YOLO family (issue 16): each wrong implementation caught with its cause named
# ---------------------------------------------------------------------------------------------------

YOLO_WRONG = [
    (C.check_make_anchors, W.wrong_make_anchors_no_offset, {},
     ["anchor points at grid (x, y), expected grid + 0.5", "level 0, cell (y=0, x=0)"]),
    (C.check_dfl_decode, W.wrong_dfl_bins_0_to_reg_max, {},
     ["DFL bins 0..reg_max", "expected 0..reg_max-1"]),
    (C.check_yolov5_decode, W.wrong_yolov5_decode_v3_centre, {},
     ["centre decoded as σ(t) + c, expected 2σ(t) − 0.5 + c", "the size agrees"]),
    (C.check_task_aligned_assign, W.wrong_tal_lowest_index, {},
     ["tie between two boxes for one anchor resolved by the lower index (gt 0) instead of the higher IoU (gt 1",
      "top-13 of ground truths [0, 1]"]),
    (C.check_yolo_nms, W.wrong_yolo_nms_agnostic, {}, ["class-agnostic NMS", "max_wh"]),
    (C.check_yolo_nms, W.wrong_yolo_nms_float32_threshold, {},
     ["compared with float32(iou_thres) = 0.30000001192092896", "float64 threshold 0.3", "suppresses"]),
    (C.check_distribution_focal_loss, W.wrong_dfl_swapped_weights, {}, ["weights swapped"]),
    (C.check_varifocal_loss, W.wrong_vfl_unweighted_positives, {},
     ["positives weighted by 1, expected by their target q"]),
    (C.check_quality_focal_loss, W.wrong_qfl_no_modulation, {}, ["no modulating factor"]),
]


@pytest.mark.parametrize("check,fn,kw,words", YOLO_WRONG, ids=lambda v: getattr(v, "__name__", None))
def test_wrong_yolo_implementation_caught_and_cause_named(check, fn, kw, words):
    with pytest.raises(AssertionError) as info:
        check(fn, n_cases=N, **kw)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from:\n{msg}"
    rep = check(fn, n_cases=N, raise_on_failure=False, **kw)
    assert not rep.ok and rep.worst_error > 0 and rep.first_mismatch.startswith("golden case")


YOLO_RIGHT = [
    (C.check_make_anchors, W.right_make_anchors, {}),
    (C.check_dfl_decode, W.right_dfl_decode, {}),
    (C.check_yolov5_decode, W.right_yolov5_decode, {}),
    (C.check_task_aligned_assign, W.right_tal, {}),
    (C.check_yolo_nms, W.right_yolo_nms, {}),
    (C.check_distribution_focal_loss, W.right_dfl, {}),
    (C.check_varifocal_loss, W.right_vfl, {}),
    (C.check_quality_focal_loss, W.right_qfl, {}),
]


@pytest.mark.parametrize("check,fn,kw", YOLO_RIGHT, ids=lambda v: getattr(v, "__name__", None))
def test_independent_correct_yolo_implementations_pass(check, fn, kw):
    rep = check(fn, n_cases=N, **kw)
    assert rep.ok and rep.cases > N // 2


def test_yolo_checks_explain_other_classic_bugs():
    import math

    from refdet.yolo import decode as D
    from refdet.yolo import make_anchors, task_aligned_assign, yolo_non_max_suppression
    from refdet.yolo import losses as L

    # anchor points in pixels, and in (y, x) columns
    rep = C.check_make_anchors(lambda s, st: make_anchors(s, st, dtype=np.float64)[0] * make_anchors(s, st)[1],
                               n_cases=0, raise_on_failure=False)
    assert "in pixels" in rep.first_mismatch and "expected grid units" in rep.first_mismatch
    rep = C.check_make_anchors(lambda s, st: make_anchors(s, st, dtype=np.float64)[0][:, ::-1], n_cases=0,
                               raise_on_failure=False)
    assert "columns (y, x), expected (x, y)" in rep.first_mismatch
    # DFL: bins 1..reg_max, bin-major logits, xyxy output, no stride
    def dfl(fix):
        def f(z, a, s):
            r = z.shape[-1] // 4
            return fix(z, a, s, r)
        return f
    cases = [
        (lambda z, a, s, r: D.dfl_decode_forward(z, a, s, reg_max=r)[0] + np.where(r > 1, 1.0, 0.0)
         * np.array([0, 0, 2, 2]) * s[None], "bins 1..reg_max"),
        (lambda z, a, s, r: D.dfl_decode_forward(z.reshape(*z.shape[:2], r, 4).swapaxes(-1, -2).reshape(z.shape),
                                                 a, s, reg_max=r)[0], "bin-major"),
        (lambda z, a, s, r: D.dfl_decode_forward(z, a, s, reg_max=r, out_fmt="xyxy")[0],
         "output xyxy, expected cxcywh"),
        (lambda z, a, s, r: D.dfl_decode_forward(z, a, reg_max=r)[0], "not multiplied by the stride"),
    ]
    for fix, words in cases:
        rep = C.check_dfl_decode(dfl(fix), n_cases=0, raise_on_failure=False)
        assert not rep.ok and words in rep.first_mismatch, (words, rep.first_mismatch)
    # YOLOv3 centre with YOLOv5's size; YOLOX without the stride on the centre
    rep = C.check_yolov3_decode(lambda t, a, s: D.yolov5_decode_forward(t, a, s)[0], n_cases=0, raise_on_failure=False)
    assert "centre decoded as 2σ(t) − 0.5 + c, expected σ(t) + c" in rep.first_mismatch
    assert "size decoded as (2σ(t))²·p, expected p·exp(t)" in rep.first_mismatch
    rep = C.check_yolox_decode(lambda t, s: D.yolox_decode_forward(t, s)[0] / np.array([*np.broadcast_to(s, 2)[::-1],
                                                                                           1, 1]),
                               n_cases=0, raise_on_failure=False)
    assert "centre decoded as t + c in grid units (not times the stride)" in rep.first_mismatch
    # scale_x_y: a YOLOv4 decode checked as plain YOLOv3
    rep = C.check_yolov3_decode(lambda t, a, s: D.yolov3_decode_forward(t, a, s, scale_x_y=1.1)[0], n_cases=0,
                                raise_on_failure=False)
    assert "YOLOv4 scale_x_y = 1.1" in rep.first_mismatch
    # TAL with plain IoU, without the small-box enlargement, with the target scores normalised to 1
    rep = C.check_task_aligned_assign(lambda *a, **k: task_aligned_assign(*a, **k, overlap="iou"), n_cases=N,
                                      raise_on_failure=False)
    assert not rep.ok and "overlap='iou'" in rep.first_mismatch
    rep = C.check_task_aligned_assign(lambda *a, **k: task_aligned_assign(*a, **k, convention="paper", overlap="ciou"),
                                      n_cases=0, raise_on_failure=False)
    assert "min_side=None" in rep.first_mismatch and "box smaller than strides[1]" in rep.first_mismatch

    def unit_scores(*a, **k):
        r = task_aligned_assign(*a, **k)
        q = r.quality.copy()
        for b in range(q.shape[0]):
            for m in np.unique(r.gt_index[b][r.gt_index[b] >= 0]):
                sel = r.gt_index[b] == m
                if q[b, sel].max() > 0:
                    q[b, sel] = q[b, sel] / q[b, sel].max()
        return r._replace(quality=q)
    rep = C.check_task_aligned_assign(unit_scores, n_cases=N, raise_on_failure=False)
    assert not rep.ok and "normalised to 1" in rep.first_mismatch
    # a point on the border counted inside (>= instead of >)
    def inclusive(ps, pb, ap, gl, gb, gm, **k):
        r = task_aligned_assign(ps, pb, ap, gl, gb + np.array([-1e-6, -1e-6, 1e-6, 1e-6]) * gm[..., None], gm, **k)
        own = np.take_along_axis(gb, np.maximum(r.gt_index, 0)[..., None], axis=1)        # the gt's own box
        return r._replace(boxes=np.where(r.fg_mask[..., None], own, 0.0))
    rep = C.check_task_aligned_assign(inclusive, n_cases=0, raise_on_failure=False)
    assert "ON the border" in rep.first_mismatch and "strictly inside" in rep.first_mismatch
    # NMS: >= at the thresholds, boxes read as xyxy
    rep = C.check_yolo_nms(lambda p, c, i: yolo_non_max_suppression(p, float(np.nextafter(np.float32(c), -1)), i),
                           n_cases=0, raise_on_failure=False)
    assert "score >= conf_thres kept, expected strictly > 0.25" in rep.first_mismatch
    rep = C.check_yolo_nms(lambda p, c, i: yolo_non_max_suppression(p, c, float(np.nextafter(np.float32(i), -1))),
                           n_cases=0, raise_on_failure=False)
    assert "suppressed at IoU >= iou_thres" in rep.first_mismatch

    from refdet.testing.conformance_yolo import _xyxy_as_xywh

    def as_xyxy(p, c, i):             # the box channels taken as corners: ultralytics' xywh2xyxy skipped
        return yolo_non_max_suppression(_xyxy_as_xywh(p), c, i)
    rep = C.check_yolo_nms(as_xyxy, n_cases=0, raise_on_failure=False)
    assert "boxes read as (x1, y1, x2, y2)" in rep.first_mismatch
    # VFL: the weight detached in the gradient
    def vfl_grad_detached(z, q, lab, d):
        p = 1 / (1 + np.exp(-z))
        return np.where(lab, q, 0.75 * p ** 2) * (p - q) * d
    rep = C.check_varifocal_loss(W.right_vfl, grad=vfl_grad_detached, n_cases=0, raise_on_failure=False)
    assert "detached" in rep.first_mismatch
    # DFL gradient: torch-free closed form of the right loss agrees; reg_max 1 decoders too
    rep = C.check_distribution_focal_loss(
        W.right_dfl,
        grad=lambda z, y, d: L.distribution_focal_loss_backward(d, L.distribution_focal_loss_forward(z, y)[1]).dlogits,
        n_cases=N)
    assert rep.ok
    assert math.isfinite(rep.worst_error)


def test_yolo_checks_accept_torch_outputs_and_count_cases():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from refdet.yolo import make_anchors

    rep = C.check_make_anchors(lambda s, st: tuple(torch.from_numpy(v) for v in make_anchors(s, st)), n_cases=5)
    assert rep.ok and rep.cases == 3 + 5                        # three golden cases
    assert set(C.YOLO_CHECKS) <= set(C.CHECKS)


def test_yolo_strategies():
    from hypothesis import given, settings
    from refdet.testing import strategies_yolo as ys

    @settings(max_examples=10, deadline=None)
    @given(ys.anchor_points(max_levels=2, max_cells=4), ys.tal_inputs(ties=True))
    def run(pts, case):
        p, s, g = pts
        assert p.shape == (s.shape[0], 2) and np.all(p / s[:, None] % 1 == 0.5)
        assert case["gt_boxes"].shape[:2] == case["gt_mask"].shape
    run()


def test_conformance_modules_import_in_either_order():
    # refdet.testing.conformance lists the YOLO checks by importing conformance_yolo at its end; the
    # YOLO module must import cleanly on its own too (doctest collection imports it first)
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for first in ("refdet.testing.conformance_yolo", "refdet.testing.conformance"):
        code = (f"import {first}\nfrom refdet.testing import conformance as C, conformance_yolo as Y\n"
                "assert C.CHECKS['yolo_nms'] is Y.check_yolo_nms and C.check_yolo_nms is Y.check_yolo_nms")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
