"""refdet.runtimes.opencv against cv2.dnn (NMSBoxes, NMSBoxesBatched, softNMSBoxes), its readable loop,
its golden cases, bad input, and the conformance checks of refdet.testing.conformance_runtimes."""
import numpy as np
import pytest
from hypothesis import given

from refdet.runtimes import opencv as O
from refdet.testing import conformance_runtimes as cr
from tests.conftest import readonly

pytest.importorskip("hypothesis")
from refdet.testing import strategies_runtimes as srt  # noqa: E402


def _cv2():
    return pytest.importorskip("cv2")


def _cv_nms(cv2):
    return lambda r, s, st, t, eta, k: np.asarray(cv2.dnn.NMSBoxes(r, s, st, t, eta, k)).ravel()


def _cv_batched(cv2):
    return lambda r, s, c, st, t, eta, k: np.asarray(
        cv2.dnn.NMSBoxesBatched(r, s, np.asarray(c, np.int32), st, t, eta, k)).ravel()


def _cv_soft(cv2):
    methods = {"linear": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_LINEAR, "gaussian": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN}

    def run(r, s, st, t, k, sig, m):
        us, ind = cv2.dnn.softNMSBoxes(r, s, st, t, k, sig, methods[m])
        return np.asarray(ind).ravel(), np.asarray(us, np.float32).ravel()
    return run


# ---------------------------------------------------------------------------------------------------
# differential: hypothesis cases with ties, exact thresholds, zero-area and duplicate rects
# ---------------------------------------------------------------------------------------------------

@given(srt.opencv_nms_cases())
def test_nms_boxes_equals_cv2(case):
    cv2 = _cv2()
    got = O.nms_boxes(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                      eta=case["eta"], top_k=case["top_k"])
    want = _cv_nms(cv2)(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"], case["eta"],
                        case["top_k"])
    np.testing.assert_array_equal(got, want)


@given(srt.opencv_nms_cases(batched=True))
def test_nms_boxes_batched_equals_cv2(case):
    cv2 = _cv2()
    got = O.nms_boxes_batched(case["rects"], case["scores"], case["class_ids"], case["score_threshold"],
                              case["nms_threshold"], eta=case["eta"], top_k=case["top_k"])
    want = _cv_batched(cv2)(case["rects"], case["scores"], case["class_ids"], case["score_threshold"],
                            case["nms_threshold"], case["eta"], case["top_k"])
    np.testing.assert_array_equal(got, want)


@given(srt.opencv_soft_nms_cases())
def test_soft_nms_boxes_equals_cv2_bit_for_bit(case):
    cv2 = _cv2()
    res = O.soft_nms_boxes(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                           top_k=case["top_k"], sigma=case["sigma"], method=case["method"])
    ind, us = _cv_soft(cv2)(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                            case["top_k"], case["sigma"], case["method"])
    np.testing.assert_array_equal(res.indices, ind)
    np.testing.assert_array_equal(res.scores, us)


@given(srt.opencv_nms_cases())
def test_nms_boxes_equals_readable_loop(case):
    got = O.nms_boxes(case["rects"], case["scores"], case["score_threshold"], case["nms_threshold"],
                      eta=case["eta"], top_k=case["top_k"])
    np.testing.assert_array_equal(got, cr.opencv_nms_loop(**case))


@given(srt.opencv_rects(max_n=12), srt.opencv_rects(max_n=12))
def test_rect_overlap_symmetric_and_in_unit_interval(a, b):
    if a.dtype != b.dtype:
        b = b.astype(a.dtype)
    o = O.rect_overlap(a, b)
    assert o.shape == (len(a), len(b)) and o.dtype == np.float32
    np.testing.assert_array_equal(o, O.rect_overlap(b, a).T)
    assert np.all((o >= 0) & (o <= 1))


# ---------------------------------------------------------------------------------------------------
# golden cases (the arithmetic in the comments)
# ---------------------------------------------------------------------------------------------------

def test_zero_area_rects_have_iou_one():
    # Aa + Ab = 0 <= epsilon: jaccardDistance returns 0, so the overlap is 1 and the second rect goes
    r = np.array([[3, 3, 0, 0], [3, 3, 0, 0]])
    assert O.rect_overlap(r, r)[0, 1] == 1.0
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8], 0.0, 0.5), [0])
    # a zero-area rect next to a real one: the areas sum to 16 > 0 and the empty rect intersects nothing
    assert O.rect_overlap(np.array([[3, 3, 0, 0]]), np.array([[0, 0, 4, 4]]))[0, 0] == 0.0


def test_iou_one_third_rounds_down():
    # IoU = 50 / 150; 1.f - (float)(1 - 1/3) = 0.3333333 (float32(1/3) = 0.33333334)
    r = np.array([[0, 0, 10, 10], [5, 0, 10, 10]])
    o = O.rect_overlap(r, r)[0, 1]
    assert o == np.nextafter(np.float32(1 / 3), np.float32(0))
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8], 0.0, float(o)), [0, 1])


def test_top_k_truncates_candidates_not_output():
    # candidates sorted: 0, 1, 2; top_k=2 keeps 0 and 1 as candidates; 1 is suppressed by 0 (IoU 0.9)
    r = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [30, 30, 5, 5]])
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8, 0.7], 0.0, 0.5, top_k=2), [0])
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8, 0.7], 0.0, 0.5), [0, 2])


def test_eta_shrinks_threshold_after_each_keep_while_above_half():
    # IoU(0, 1) = 40 / 100 = 0.4. thr 0.6 * eta 0.5 = 0.3 after rect 0 is kept: rect 1 goes
    r = np.array([[0, 0, 10, 10], [0, 0, 10, 4], [40, 0, 5, 5]])
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8, 0.7], 0.0, 0.6, eta=0.5), [0, 2])
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8, 0.7], 0.0, 0.6), [0, 1, 2])
    # thr 0.5 is not > 0.5: eta never applies
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.8, 0.7], 0.0, 0.5, eta=0.5), [0, 1, 2])


def test_score_threshold_is_strict_and_nan_never_a_candidate():
    r = np.array([[0, 0, 2, 2], [5, 5, 2, 2], [9, 9, 2, 2]])
    np.testing.assert_array_equal(O.nms_boxes(r, [0.9, 0.5, np.nan], 0.5, 0.5), [0])


def test_float_rects_are_rect2d_and_int_rects_are_rect():
    # [0.4, 0, 1, 1] vs [0, 0, 1, 1]: IoU 0.6 / 1.4 = 0.43 as doubles; the int rects are identical
    rf = np.array([[0.4, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(O.nms_boxes(rf, [0.9, 0.8], 0.0, 0.5), [0, 1])
    np.testing.assert_array_equal(O.nms_boxes(rf.astype(int), [0.9, 0.8], 0.0, 0.5), [0])


def test_batched_offset_trick_crosses_classes_with_negative_coordinates():
    # max_coord = 10, offset of class 1 = 11: [-11, -11, 10, 10] moves onto [0, 0, 10, 10]
    r = np.array([[0, 0, 10, 10], [-11, -11, 10, 10]])
    np.testing.assert_array_equal(O.nms_boxes_batched(r, [0.9, 0.8], [0, 1], 0.0, 0.5), [0])


def test_soft_nms_linear_and_gaussian_weights():
    r = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [40, 40, 4, 4]])
    lin = O.soft_nms_boxes(r, [0.9, 0.8, 0.1], 0.05, 0.3, method="linear")
    np.testing.assert_array_equal(lin.indices, [0, 1, 2])
    assert lin.scores[1] == np.float32(0.8) * np.float32(0.5)          # IoU 0.5 > 0.3: times 1 - 0.5
    g = O.soft_nms_boxes(r, [0.9, 0.8, 0.1], 0.0, 0.3, method="gaussian", sigma=0.5)
    assert g.scores[1] == np.float32(0.8) * np.float32(np.exp(-0.25 / 0.5))
    # the first maximum below the threshold stops the loop, even the very first one
    assert len(O.soft_nms_boxes(r, [0.4, 0.3, 0.2], 0.5, 0.3).indices) == 0


# ---------------------------------------------------------------------------------------------------
# bad input, memory layout
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, word", [(dict(score_threshold=-0.1), "score_threshold"),
                                      (dict(nms_threshold=-0.1), "nms_threshold"), (dict(eta=0.0), "eta")])
def test_bad_arguments_name_argument_and_opencv(kw, word):
    args = dict(score_threshold=0.0, nms_threshold=0.5)
    args.update({k: v for k, v in kw.items() if k != "eta"})
    with pytest.raises(ValueError, match=f"{word}.*OpenCV"):
        O.nms_boxes(np.zeros((1, 4), int), [0.5], args["score_threshold"], args["nms_threshold"],
                    eta=kw.get("eta", 1.0))


def test_bad_input_types_and_shapes():
    with pytest.raises(ValueError, match="rects"):
        O.nms_boxes(np.zeros((2, 5)), [0.1, 0.2], 0.0, 0.5)
    with pytest.raises(ValueError, match="scores"):
        O.nms_boxes(np.zeros((2, 4)), [0.1], 0.0, 0.5)
    with pytest.raises(TypeError, match="softNMSBoxes"):
        O.soft_nms_boxes(np.zeros((1, 4)), [0.1], 0.0, 0.5)
    with pytest.raises(ValueError, match="sigma.*OpenCV"):
        O.soft_nms_boxes(np.zeros((1, 4), int), [0.1], 0.0, 0.5, sigma=0.0)
    with pytest.raises(ValueError, match="int32"):
        O.nms_boxes(np.array([[0, 0, 2 ** 20, 2 ** 20]]), [0.1], 0.0, 0.5)
    with pytest.raises(ValueError, match="scores"):
        O.soft_nms_boxes(np.zeros((1, 4), int), [np.nan], 0.0, 0.5)


def test_layout_and_read_only_inputs_give_identical_results():
    rng = np.random.default_rng(0)
    r = np.concatenate([rng.integers(0, 20, (30, 2)), rng.integers(1, 10, (30, 2))], 1)
    s = rng.random(30).astype(np.float32)
    base = O.nms_boxes(r, s, 0.1, 0.4, eta=0.9)
    ro_r, ro_s = readonly(r, s)
    np.testing.assert_array_equal(O.nms_boxes(ro_r, ro_s, 0.1, 0.4, eta=0.9), base)
    np.testing.assert_array_equal(O.nms_boxes(np.asfortranarray(r), s[::-1][::-1], 0.1, 0.4, eta=0.9), base)
    wide = np.zeros((30, 8), r.dtype)
    wide[:, ::2] = r
    np.testing.assert_array_equal(O.nms_boxes(wide[:, ::2], s, 0.1, 0.4, eta=0.9), base)
    soft = O.soft_nms_boxes(ro_r, ro_s, 0.1, 0.4)
    np.testing.assert_array_equal(O.soft_nms_boxes(np.asfortranarray(r), s, 0.1, 0.4).scores, soft.scores)


# ---------------------------------------------------------------------------------------------------
# conformance checks: cv2 passes, wrong implementations are explained
# ---------------------------------------------------------------------------------------------------

def test_conformance_cv2_passes():
    cv2 = _cv2()
    assert cr.check_opencv_nms_boxes(_cv_nms(cv2), n_cases=60).ok
    assert cr.check_opencv_nms_boxes_batched(_cv_batched(cv2), n_cases=60).ok
    assert cr.check_opencv_soft_nms_boxes(_cv_soft(cv2), n_cases=60).ok


@pytest.mark.parametrize("knobs, phrase", [
    (dict(iou="plus_one"), "+1 widths"),
    (dict(zero_area="nan"), "zero-area"),
    (dict(top_k_on="output"), "top_k applied to the kept boxes"),
    (dict(eta_rule="ignored"), "eta ignored"),
    (dict(score_rule=">="), "score threshold inclusive"),
    (dict(iou="float32"), "float32"),
])
def test_conformance_names_the_variant(knobs, phrase):
    def wrong(r, s, st, t, eta, k):
        return cr.opencv_nms_loop(r, s, st, t, eta, k, **knobs)
    rep = cr.check_opencv_nms_boxes(wrong, n_cases=150, raise_on_failure=False)
    assert not rep.ok
    assert phrase in rep.first_mismatch, rep.first_mismatch


def test_conformance_batched_names_per_class_nms():
    def per_class(r, s, c, st, t, eta, k):
        return cr._per_class_nms(dict(rects=r, scores=s, class_ids=c, score_threshold=st, nms_threshold=t, eta=eta,
                                      top_k=k))
    rep = cr.check_opencv_nms_boxes_batched(per_class, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "exact per-class NMS" in rep.first_mismatch


def test_conformance_soft_names_tf_gaussian():
    def tf_like(r, s, st, t, k, sig, m):
        res = O.soft_nms_boxes(r, s, st, t, top_k=k, sigma=2 * sig, method=m)
        return res.indices, res.scores
    rep = cr.check_opencv_soft_nms_boxes(tf_like, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "differs" in rep.first_mismatch


# ---------------------------------------------------------------------------------------------------
# blobFromImage
# ---------------------------------------------------------------------------------------------------

@given(srt.opencv_blob_cases())
def test_blob_from_image_equals_cv2(case):
    cv2 = _cv2()
    got = O.blob_from_image(**case)
    want = cv2.dnn.blobFromImage(case["image"], case["scalefactor"], case["size"], case["mean"], case["swap_rb"],
                                 case["crop"])
    assert got.shape == want.shape and got.dtype == np.float32
    resized = case["size"] is not None and tuple(case["size"]) != case["image"].shape[1::-1]
    if not resized:
        np.testing.assert_array_equal(got, want)            # bit for bit
    else:
        tol = 16 * np.finfo(np.float32).eps * max(float(np.abs(want).max(initial=1.0)),
                                                  255 * case["scalefactor"])
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_blob_mean_is_in_output_channel_order():
    # one BGR pixel (10, 20, 30); swapRB: blob channels are (30, 20, 10), minus mean (1, 2, 3), times 0.5
    blob = O.blob_from_image(np.array([[[10, 20, 30]]], np.uint8), 0.5, mean=(1, 2, 3), swap_rb=True)
    np.testing.assert_array_equal(blob[0, :, 0, 0], [14.5, 9.0, 3.5])


def test_blob_crop_takes_the_centre_window():
    # 4 x 8 image to 4 x 4 with crop: factor max(4/8, 4/4) = 1, no resize, window x 2..5
    img = np.arange(4 * 8, dtype=np.float32).reshape(4, 8)
    np.testing.assert_array_equal(O.blob_from_image(img, size=(4, 4), crop=True)[0, 0], img[:, 2:6])


def test_blob_bad_input():
    with pytest.raises(ValueError, match="uint8.*fixed-point"):
        O.blob_from_image(np.zeros((4, 4, 3), np.uint8), size=(8, 8))
    with pytest.raises(ValueError, match="float32.*OpenCV"):
        O.blob_from_image(np.zeros((4, 4, 3), np.float64))
    with pytest.raises(ValueError, match="image"):
        O.blob_from_image(np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="mean"):
        O.blob_from_image(np.zeros((4, 4, 3), np.float32), mean=(1, 2, 3, 4, 5))


def test_blob_conformance_passes_for_cv2_and_names_mean_order():
    cv2 = _cv2()
    assert cr.check_opencv_blob_from_image(lambda *a: cv2.dnn.blobFromImage(*a), n_cases=40).ok

    def bgr_mean(img, sf, size, mean, swap, crop):
        m = list(mean) + [0.0] * (4 - len(mean))
        return cv2.dnn.blobFromImage(img, sf, size, (m[2], m[1], m[0], m[3]) if swap else tuple(m), swap, crop)
    rep = cr.check_opencv_blob_from_image(bgr_mean, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "mean applied in the input (BGR) order" in rep.first_mismatch


def test_verify_opencv_target_runs_every_op():
    _cv2()
    from refdet.verify import run_target
    rows = run_target("opencv", n_cases=5)
    assert {r["op"] for r in rows} == {"opencv_nms_boxes", "opencv_nms_boxes_batched", "opencv_soft_nms_boxes",
                                        "opencv_blob_from_image", "opencv_prior_box", "opencv_detection_output"}
    assert all(r["ok"] for r in rows), [r["first_mismatch"] for r in rows if not r["ok"]]


def test_verify_op_with_a_users_callable(tmp_path, monkeypatch, capsys):
    _cv2()
    from refdet.cli import main
    (tmp_path / "my_cv_nms.py").write_text(
        "import numpy as np\nimport cv2\n\n"
        "def nms(r, s, st, t, eta, k):\n"
        "    return np.asarray(cv2.dnn.NMSBoxes(r, s, st, t, eta, k)).ravel()\n\n"
        "def nms_ge(r, s, st, t, eta, k):\n"
        "    from refdet.testing.conformance_runtimes import opencv_nms_loop\n"
        "    return opencv_nms_loop(r, s, st, t, eta, k, inclusive=True)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["verify", "--op", "opencv_nms_boxes", "my_cv_nms:nms", "--cases", "10", "--quiet"]) == 0
    assert main(["verify", "--op", "opencv_nms_boxes", "my_cv_nms:nms_ge", "--cases", "10", "--quiet"]) == 1
    assert "IoU >= threshold" in capsys.readouterr().out
