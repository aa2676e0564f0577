"""refdet.runtimes.openvino_detection: OpenVINO DetectionOutput and Proposal.

Golden cases worked by hand (no OpenVINO needed), bad input, and the differential tests against the
CPU plugin (graphs built with the opset-8 / opset-4 Python API), skipped when openvino is missing."""
import numpy as np
import pytest

from refdet.runtimes import openvino_detection as D

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402

from refdet.testing import strategies_openvino_detection as sod  # noqa: E402
from refdet.testing.conformance_openvino_detection import (  # noqa: E402
    check_openvino_detection_output, detection_output_agrees)

f32 = np.float32


def _below(t):
    """The float32 just below ``t`` (``> below(t)`` is ``>= t``), or ``t`` itself at 0 (thresholds stay in [0, 1])."""
    return float(np.nextafter(f32(t), f32(-1))) if t > 0 else float(t)


def _ov():
    pytest.importorskip("openvino")
    from refdet.runtimes import openvino_detection_adapters as ad
    return ad


# ---------------------------------------------------------------------------------------------------
# DetectionOutput: against the CPU plugin
# ---------------------------------------------------------------------------------------------------

@given(sod.openvino_detection_output_cases())
def test_detection_output_equals_openvino_cpu(case):
    ad = _ov()
    exp = D.detection_output(**case)
    got = ad.openvino_detection_output(**case)
    assert got.shape == exp.shape
    g, e = D.detection_output_rows(got), D.detection_output_rows(exp)
    # bit for bit, except detections of different classes tied in score and prior at the keep_top_k cut
    assert np.array_equal(g, e) or detection_output_agrees(case, g, e), (g, e)


@given(sod.openvino_detection_output_cases(max_priors=4))
def test_detection_output_opset1_is_opset8(case):
    ad = _ov()
    a = ad.openvino_detection_output(**case, opset=1)
    b = ad.openvino_detection_output(**case)
    g, e = D.detection_output_rows(a), D.detection_output_rows(b)
    assert a.shape == b.shape and (np.array_equal(g, e) or detection_output_agrees(case, g, e))


def test_detection_output_conformance_passes_for_openvino_and_names_a_wrong_threshold():
    ad = _ov()
    assert check_openvino_detection_output(ad.openvino_detection_output, n_cases=40).ok

    def inclusive_nms(**k):
        k["nms_threshold"] = _below(k["nms_threshold"])
        return D.detection_output(**k)
    rep = check_openvino_detection_output(inclusive_nms, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "suppresses overlap > threshold" in rep.first_mismatch

    def inclusive_conf(**k):
        k["confidence_threshold"] = _below(k.get("confidence_threshold", 0.0))
        return D.detection_output(**k)
    rep = check_openvino_detection_output(inclusive_conf, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "keeps score > threshold" in rep.first_mismatch


# ---------------------------------------------------------------------------------------------------
# DetectionOutput: golden cases worked by hand
# ---------------------------------------------------------------------------------------------------

def _pri(*boxes, var=(1, 1, 1, 1)):
    b = np.array(boxes, f32).ravel()
    return np.stack([b, np.tile(np.array(var, f32), len(boxes))])[None]


def _run(loc, conf, pri, **kw):
    kw.setdefault("nms_threshold", 0.5)
    kw.setdefault("normalized", True)
    return D.detection_output(np.array(loc, f32), np.array(conf, f32), pri, **kw)


def test_corner_decode_adds_variance_times_delta():
    # prior (0.1, 0.2, 0.5, 0.6), variances (0.1, 0.1, 0.2, 0.2), deltas (1, -1, 0.5, 0.5)
    out = _run([[1, -1, 0.5, 0.5]], [[0.3, 0.7]], _pri([0.1, 0.2, 0.5, 0.6], var=(0.1, 0.1, 0.2, 0.2)))
    r = D.detection_output_rows(out)
    want = [f32(0.1) + f32(0.1) * f32(1), f32(0.2) + f32(0.1) * f32(-1), f32(0.5) + f32(0.2) * f32(0.5),
            f32(0.6) + f32(0.2) * f32(0.5)]
    np.testing.assert_array_equal(r, [[0, 1, f32(0.7), *want]])
    np.testing.assert_allclose(r[0, 3:], [0.2, 0.1, 0.6, 0.7], atol=1e-7)


def test_center_size_decode_by_hand():
    # prior (0, 0, 0.5, 0.5): centre 0.25, size 0.5; variances (0.1, 0.1, 0.2, 0.2); deltas (1, 0, 0, ln 2 / 0.2)
    # cx = 0.1 * 1 * 0.5 + 0.25 = 0.3, w = 0.5; cy = 0.25, h = exp(ln 2) * 0.5 = 1.0
    dh = float(np.log(2) / 0.2)
    r = D.detection_output_rows(_run([[1, 0, 0, dh]], [[0, 1]], _pri([0, 0, 0.5, 0.5], var=(0.1, 0.1, 0.2, 0.2)),
                                     code_type="caffe.PriorBoxParameter.CENTER_SIZE"))
    np.testing.assert_allclose(r[0, 3:], [0.05, -0.25, 0.55, 0.75], atol=1e-6)
    # variance encoded in target: no variances, exp(delta) directly; the short name is accepted too
    r2 = D.detection_output_rows(_run([[0.2, 0, np.log(2), 0]], [[0, 1]], _pri([0, 0, 0.5, 0.5])[:, :1],
                                      code_type="center_size", variance_encoded_in_target=True))
    np.testing.assert_allclose(r2[0, 3:], [-0.15, 0.0, 0.85, 0.5], atol=1e-6)


def test_thresholds_strict_and_ties_by_prior_index():
    # priors 0 and 1 overlap by 1/3; prior 2 is apart. Class 1 scores 0.5, 0.5, 0.4 (a tie)
    pri = _pri([0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5], [0.6, 0.6, 0.9, 0.9])
    conf = [[0, 0.5, 0, 0.5, 0, 0.4]]
    loc = np.zeros((1, 12))
    rows = D.detection_output_rows(_run(loc, conf, pri, nms_threshold=0.3))
    # tie 0.5 / 0.5: prior 0 first; prior 1 overlaps it by 1/3 > 0.3 and goes; prior 2 stays
    np.testing.assert_array_equal(rows[:, 2], f32([0.5, 0.4]))
    np.testing.assert_array_equal(rows[:, 3], f32([0, 0.6]))
    # an overlap equal to the threshold is kept (strict >); a score equal to the threshold is dropped (strict >)
    third = float(f32(0.125) / f32(0.375))
    assert len(D.detection_output_rows(_run(loc, conf, pri, nms_threshold=third))) == 3
    assert len(D.detection_output_rows(_run(loc, conf, pri, confidence_threshold=0.4))) == 2
    # MXNet style reads the confidence threshold inclusively (>=)
    assert len(D.detection_output_rows(_run(loc, conf, pri, confidence_threshold=0.4, decrease_label_id=True,
                                            nms_threshold=third))) == 3


def test_keep_top_k_is_global_and_output_grouped_by_class():
    # two classes, three apart priors; scores: class 1 (0.9, 0.2, 0.5), class 2 (0.6, 0.8, 0.1)
    pri = _pri([0, 0, 0.1, 0.1], [0.3, 0.3, 0.4, 0.4], [0.6, 0.6, 0.7, 0.7])
    conf = [[0, 0.9, 0.6, 0, 0.2, 0.8, 0, 0.5, 0.1]]
    out = _run(np.zeros((1, 12)), conf, pri, keep_top_k=3)
    assert out.shape == (1, 1, 3, 7)                        # B * keep_top_k rows, no end marker room
    rows = out[0, 0]
    # the best three overall are 0.9 (c1), 0.8 (c2), 0.6 (c2): reported class 1 first, then class 2
    np.testing.assert_array_equal(rows[:, 1], [1, 2, 2])
    np.testing.assert_array_equal(rows[:, 2], f32([0.9, 0.8, 0.6]))
    # top_k limits each class before NMS; decrease_label_id reports classes from 0 and lets each prior vote once
    rows = D.detection_output_rows(_run(np.zeros((1, 12)), conf, pri, top_k=1))
    np.testing.assert_array_equal(rows[:, 1:3], f32([[1, 0.9], [2, 0.8]]))
    rows = D.detection_output_rows(_run(np.zeros((1, 12)), conf, pri, decrease_label_id=True))
    np.testing.assert_array_equal(rows[:, 1:3], f32([[0, 0.9], [0, 0.5], [1, 0.8]]))


def test_output_shape_and_end_marker():
    pri = _pri([0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1])
    conf = [[0.5, 0.5, 0.2, 0.0]]
    out = _run(np.zeros((1, 8)), conf, pri)
    assert out.shape == (1, 1, 4, 7)                        # B * K * P
    np.testing.assert_array_equal(out[0, 0, 1], [-1, 0, 0, 0, 0, 0, 0])
    assert _run(np.zeros((1, 8)), conf, pri, top_k=1).shape == (1, 1, 2, 7)  # B * top_k * K
    # background -1: class 0 is a class too
    assert len(D.detection_output_rows(_run(np.zeros((1, 8)), conf, pri, background_label_id=-1))) == 3
    # nothing above the threshold: the first row is the end marker
    empty = _run(np.zeros((1, 8)), conf, pri, confidence_threshold=0.9)
    assert empty[0, 0, 0, 0] == -1 and len(D.detection_output_rows(empty)) == 0


def test_pixel_priors_end_at_minus_one_and_divide_by_image_size():
    pri = np.array([[[0, 0, 0, 10, 5, -1, 0, 0, 20, 10], [1] * 10]], f32)
    rows = D.detection_output_rows(_run(np.zeros((1, 8)), [[0, 0.5, 0, 0.9]], pri, normalized=False,
                                        input_height=10, input_width=20))
    # prior 1 lies past the -1 marker: ignored although it scores 0.9
    np.testing.assert_array_equal(rows, f32([[0, 1, 0.5, 0, 0, 0.5, 0.5]]))


def test_clip_before_and_after_nms():
    pri = _pri([0, 0, 0.5, 0.5])
    loc = [[-0.25, 0, 0.75, 0]]
    rows = D.detection_output_rows(_run(loc, [[0, 1]], pri))
    np.testing.assert_array_equal(rows[0, 3:], f32([-0.25, 0, 1.25, 0.5]))
    for kw in (dict(clip_after_nms=True), dict(clip_before_nms=True)):
        np.testing.assert_array_equal(D.detection_output_rows(_run(loc, [[0, 1]], pri, **kw))[0, 3:],
                                      f32([0, 0, 1, 0.5]))


def test_arm_objectness_turns_a_prior_into_background():
    pri = _pri([0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1])
    conf = [[0.1, 0.9, 0.2, 0.8]]
    arm_conf = np.array([[0.9, 0.1, 0.1, 0.9]], f32)         # prior 0 objectness 0.1, prior 1 0.9
    arm_loc = np.array([[0.1, 0.1, 0.1, 0.1, 0, 0, 0, 0]], f32)
    rows = D.detection_output_rows(_run(np.zeros((1, 8)), conf, pri, arm_confidence=arm_conf, arm_location=arm_loc,
                                        objectness_score=0.5))
    np.testing.assert_array_equal(rows[:, 2:], f32([[0.8, 0.5, 0.5, 1, 1]]))
    # objectness above the bar: both priors; prior 0 decoded twice (ARM deltas, then `location` zeros)
    rows = D.detection_output_rows(_run(np.zeros((1, 8)), conf, pri, arm_confidence=arm_conf, arm_location=arm_loc,
                                        objectness_score=0.05))
    np.testing.assert_array_equal(rows[:, 3:], f32([[0.1, 0.1, 0.6, 0.6], [0.5, 0.5, 1, 1]]))


def test_share_location_false_uses_each_class_deltas():
    pri = _pri([0, 0, 0.5, 0.5])
    loc = [[0, 0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2]]   # (P=1, K=3, 4); class 0 is background
    rows = D.detection_output_rows(_run(loc, [[0.1, 0.6, 0.3]], pri, share_location=False))
    np.testing.assert_allclose(rows[:, 3], [0.1, 0.2], atol=1e-7)


def test_inputs_untouched_and_layout_independent():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(2, 24)).astype(f32)
    conf = rng.random((2, 18)).astype(f32)
    pri = rng.random((1, 2, 24)).astype(f32)
    copies = [a.copy() for a in (loc, conf, pri)]
    a = D.detection_output(loc, conf, pri, nms_threshold=0.4, code_type="caffe.PriorBoxParameter.CENTER_SIZE",
                           normalized=True)
    for x, c in zip((loc, conf, pri), copies):
        np.testing.assert_array_equal(x, c)
    b = D.detection_output(np.asfortranarray(loc), conf[:, ::-1][:, ::-1], pri.copy(order="F"), nms_threshold=0.4,
                           code_type="caffe.PriorBoxParameter.CENTER_SIZE", normalized=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kw, words", [
    (dict(code_type="caffe.PriorBoxParameter.CORNER_SIZE"), ["code_type", "OpenVINO"]),
    (dict(code_type=3), ["code_type"]),
    (dict(decrease_label_id=True, background_label_id=1), ["decrease_label_id", "OpenVINO"]),
    (dict(top_k=-2), ["top_k"]),
    (dict(keep_top_k=-2), ["keep_top_k"]),
    (dict(keep_top_k=[]), ["keep_top_k"]),
    (dict(share_location="yes"), ["share_location"]),
    (dict(input_height=0), ["input_height"]),
    (dict(nms_threshold=float("nan")), ["nms_threshold"]),
    (dict(nms_threshold=1.5), ["nms_threshold", "OpenVINO"]),
    (dict(confidence_threshold=-0.1), ["confidence_threshold"]),
    (dict(arm_confidence=np.zeros((1, 4), f32)), ["arm_confidence", "OpenVINO"]),
    (dict(location=np.zeros((1, 12), f32)), ["location"]),
    (dict(confidence=np.zeros((1, 5), f32)), ["confidence"]),
    (dict(priors=np.zeros((1, 1, 8), f32)), ["priors", "OpenVINO"]),
    (dict(priors=np.zeros((1, 2, 7), f32)), ["priors"]),
    (dict(location=np.full((1, 8), np.nan, f32)), ["location"]),
    (dict(confidence=np.zeros((1, 4), bool)), ["confidence"]),
])
def test_detection_output_bad_input(kw, words):
    args = dict(location=np.zeros((1, 8), f32), confidence=np.zeros((1, 4), f32), priors=_pri([0, 0, 1, 1], [0, 0, 1, 1]),
                nms_threshold=0.5, normalized=True)
    args.update(kw)
    with pytest.raises((TypeError, ValueError)) as ei:
        D.detection_output(**args)
    for w in words:
        assert w in str(ei.value)


def test_detection_output_rows_bad_input():
    with pytest.raises(ValueError, match="`out`"):
        D.detection_output_rows(np.zeros((1, 4, 7)))


# ---------------------------------------------------------------------------------------------------
# Proposal
# ---------------------------------------------------------------------------------------------------

from refdet.runtimes import openvino_proposal as PR  # noqa: E402
from refdet.testing.conformance_openvino_detection import check_openvino_proposal  # noqa: E402


@given(sod.openvino_proposal_cases())
def test_proposal_equals_openvino_cpu(case):
    ad = _ov()
    exp = PR.proposal(**case)
    rois, probs = ad.openvino_proposal(**case)
    post = case["post_nms_topn"]
    assert rois.shape == exp.rois.shape
    for n, m in enumerate(exp.counts):
        np.testing.assert_array_equal(rois[n * post: n * post + m], exp.rois[n * post: n * post + m])
        np.testing.assert_array_equal(probs[n * post: n * post + m], exp.probs[n * post: n * post + m])
        if m < post:
            assert rois[n * post + m, 0] == -1


def test_proposal_conformance_passes_for_openvino_and_names_a_wrong_threshold():
    ad = _ov()
    assert check_openvino_proposal(ad.openvino_proposal, n_cases=30).ok

    def inclusive(**k):
        k["nms_thresh"] = _below(k["nms_thresh"])
        r = PR.proposal(**k)
        return r.rois, r.probs
    rep = check_openvino_proposal(inclusive, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "nms_thresh < IoU" in rep.first_mismatch
    # zero deltas, stride 1: [0, 0, 4, 4] and [1, 0, 5, 4] (+1 sides: 25 each, 20 shared): IoU 20 / 30
    case = _pr_case(class_probs=_scores([0.9, 0.8, 0, 0]), pre_nms_topn=2)
    third2 = float(f32(20) / f32(30))
    assert PR.proposal(**dict(case, nms_thresh=third2)).counts[0] == 2          # not > : both kept
    assert PR.proposal(**dict(case, nms_thresh=float(np.nextafter(f32(third2), f32(0))))).counts[0] == 1


def test_proposal_anchors_caffe_and_tensorflow():
    # base 16, ratio 1, scale 1: Caffe [0, 0, 15, 15] (+1 widths), TF [-8, -8, 8, 8] (shifted by -base / 2)
    np.testing.assert_array_equal(PR.proposal_anchors(16, [1], [1]), f32([[0, 0, 15, 15]]))
    np.testing.assert_array_equal(PR.proposal_anchors(16, [1], [1], "tensorflow"), f32([[-8, -8, 8, 8]]))
    # py-faster-rcnn's classic anchors for base 16, ratios (0.5, 1, 2), scale 8: ratio-major
    a = PR.proposal_anchors(16, [0.5, 1, 2], [8])
    np.testing.assert_array_equal(a, f32([[-84, -40, 99, 55], [-56, -56, 71, 71], [-36, -80, 51, 95]]))
    # roundf (half away from zero): base 15, ratio 0.5: ratio_w = round(sqrt(450)) = 21, ratio_h = roundf(10.5) = 11
    a = PR.proposal_anchors(15, [0.5], [1])[0]
    assert a[3] - a[1] + 1 == 11 and a[2] - a[0] + 1 == 21      # py-faster-rcnn's np.round says 10


def _scores(fg):
    fg = np.asarray(fg, f32).reshape(1, 1, 2, 2)
    return np.concatenate([np.zeros_like(fg), fg], axis=1)


def _pr_case(**kw):
    case = dict(class_probs=_scores([0.9, 0.8, 0.7, 0.6]), bbox_deltas=np.zeros((1, 4, 2, 2), f32),
                image_shape=np.array([40, 40, 1], f32), base_size=4, pre_nms_topn=100, post_nms_topn=10, nms_thresh=0.7,
                feat_stride=1, min_size=1, ratio=[1.0], scale=[1.0])
    case.update(kw)
    return case


def test_proposal_golden_decode_and_filters():
    # anchor [0, 0, 3, 3]; cells at stride 10 are apart. Delta (dx=0.5, dw=ln 2) on cell (0, 0):
    # w = 4, ctr = 0 + 0.5 * 4 = 2 -> 2 + 0.5 * 4 = 4; new w = 8 -> x0 = 4 - 4 = 0, x1 = 8
    d = np.zeros((1, 4, 2, 2), f32)
    d[0, 0, 0, 0], d[0, 2, 0, 0] = 0.5, np.log(2)
    r = PR.proposal(**_pr_case(bbox_deltas=d, feat_stride=10))
    np.testing.assert_allclose(r.rois[0], [0, 0, 0, 8, 4], atol=1e-6)   # y: [0, 4]: no -1 on x1
    np.testing.assert_array_equal(r.probs[:4], f32([0.9, 0.8, 0.7, 0.6]))
    np.testing.assert_array_equal(r.rois[4], [-1, 0, 0, 0, 0])            # end marker after 4 proposals
    # min_size 6 (> the decoded 5-px boxes [0, 4] + 1): scores become 0 but the boxes stay (py-faster-rcnn drops them)
    r = PR.proposal(**_pr_case(feat_stride=10, min_size=6))
    assert PR.proposal(**_pr_case(feat_stride=10, min_size=5)).probs[:4].all()      # 5 <= 5 passes
    assert r.counts[0] == 4 and not r.probs[:4].any()
    # clip before NMS to [0, W - 1]; normalize divides by W, H
    r = PR.proposal(**_pr_case(feat_stride=10, image_shape=np.array([12, 12, 1], f32), normalize=True))
    np.testing.assert_allclose(r.rois[3, 1:], np.array([10, 10, 11, 11]) / 12, atol=1e-7)


def test_proposal_ties_follow_the_heap_not_the_index():
    # four equal scores: std::partial_sort's heap order, not 0, 1, 2, 3
    r = PR.proposal(**_pr_case(class_probs=_scores([0.5] * 4), feat_stride=10, pre_nms_topn=3))
    order = PR._partial_sort(np.full(4, 0.5, f32), 3)
    np.testing.assert_array_equal(r.rois[:3, 1], f32(np.array([0, 10, 0, 10])[order]))
    assert r.counts[0] == 3
    # no ties: plain descending order
    np.testing.assert_array_equal(PR._partial_sort(f32([0.1, 0.4, 0.3, 0.2]), 3), [1, 2, 3])


def test_proposal_inputs_untouched_and_layout_independent():
    rng = np.random.default_rng(1)
    case = _pr_case(class_probs=rng.random((1, 2, 2, 2)).astype(f32),
                    bbox_deltas=rng.normal(size=(1, 4, 2, 2)).astype(f32) * 0.3)
    copies = {k: v.copy() for k, v in case.items() if isinstance(v, np.ndarray)}
    a = PR.proposal(**case)
    for k, v in copies.items():
        np.testing.assert_array_equal(case[k], v)
    b = PR.proposal(**dict(case, class_probs=np.asfortranarray(case["class_probs"]),
                           bbox_deltas=case["bbox_deltas"][:, ::-1][:, ::-1]))
    np.testing.assert_array_equal(a.rois, b.rois)


@pytest.mark.parametrize("kw, words", [
    (dict(framework="caffe"), ["framework", "OpenVINO"]),
    (dict(min_size=0), ["min_size", "OpenVINO"]),
    (dict(nms_thresh=0.0), ["nms_thresh", "OpenVINO"]),
    (dict(nms_thresh=1.5), ["nms_thresh", "OpenVINO"]),
    (dict(feat_stride=2 ** 40), ["feat_stride"]),
    (dict(base_size=0), ["base_size"]),
    (dict(ratio=[]), ["ratio"]),
    (dict(scale=[-1.0]), ["scale"]),
    (dict(pre_nms_topn=0), ["pre_nms_topn"]),
    (dict(image_shape=np.array([0, 40, 1], f32)), ["image_shape", "OpenVINO"]),
    (dict(image_shape=np.array([40, 40, -1], f32)), ["image_shape", "OpenVINO"]),
    (dict(image_shape=np.array([40, 40], f32)), ["image_shape"]),
    (dict(class_probs=np.zeros((1, 3, 2, 2), f32)), ["class_probs", "OpenVINO"]),
    (dict(bbox_deltas=np.zeros((1, 4, 2, 3), f32)), ["bbox_deltas"]),
    (dict(clip_before_nms="no"), ["clip_before_nms"]),
    (dict(box_size_scale=0.0), ["box_size_scale"]),
])
def test_proposal_bad_input(kw, words):
    with pytest.raises((TypeError, ValueError)) as ei:
        PR.proposal(**_pr_case(**kw))
    for w in words:
        assert w in str(ei.value)


def test_proposal_adapter_refuses_the_crashing_sizes():
    ad = _ov()
    with pytest.raises(RuntimeError, match="segmentation fault"):
        ad.openvino_proposal(**_pr_case(pre_nms_topn=4))
