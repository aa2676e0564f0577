"""refdet.runtimes.openvino_detectron: OpenVINO's ExperimentalDetectron* operators (opset 6).

Golden cases worked by hand (no OpenVINO needed), bad input, and differential tests against the CPU plugin
(graphs built with NodeFactory("opset6")), skipped when openvino is missing."""
import numpy as np
import pytest

from refdet.runtimes import openvino_detectron as E

pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402

from refdet.testing import conformance_openvino_detectron as cd  # noqa: E402
from refdet.testing import strategies_openvino_detection as sod  # noqa: E402

f32 = np.float32
OPS = {"prior_grid_generator": ("openvino_prior_grid_generator", cd.check_openvino_prior_grid_generator),
       "generate_proposals_single_image": ("openvino_generate_proposals_single_image",
                                           cd.check_openvino_generate_proposals_single_image),
       "detection_output": ("openvino_detectron_detection_output", cd.check_openvino_detectron_detection_output),
       "roi_feature_extractor": ("openvino_detectron_roi_feature_extractor",
                                 cd.check_openvino_detectron_roi_feature_extractor)}


def _ad():
    pytest.importorskip("openvino")
    from refdet.runtimes import openvino_detection_adapters as ad
    return ad


def _same(got, exp):
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, exp):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g.astype(e.dtype), e)


@given(sod.openvino_detectron_cases("prior_grid_generator"))
def test_prior_grid_generator_equals_openvino_cpu(case):
    _same(_ad().openvino_prior_grid_generator(**case), (E.prior_grid_generator(**case),))


@given(sod.openvino_detectron_cases("generate_proposals_single_image"))
def test_generate_proposals_single_image_equals_openvino_cpu(case):
    _same(_ad().openvino_generate_proposals_single_image(**case), E.generate_proposals_single_image(**case)[:2])


@given(sod.openvino_detectron_cases("detection_output"))
def test_detectron_detection_output_equals_openvino_cpu(case):
    _same(tuple(_ad().openvino_detectron_detection_output(**case)), E.detectron_detection_output(**case)[:3])


@given(sod.openvino_detectron_cases("roi_feature_extractor"))
def test_detectron_roi_feature_extractor_equals_openvino_cpu(case):
    _same(tuple(_ad().openvino_detectron_roi_feature_extractor(**case)), E.detectron_roi_feature_extractor(**case))


@pytest.mark.parametrize("op", sorted(OPS))
def test_conformance_passes_for_openvino(op):
    ad = _ad()
    name, check = OPS[op]
    assert check(getattr(ad, name), n_cases=15).ok


def test_conformance_names_a_wrong_threshold():
    def inclusive(**k):
        t = k["score_threshold"]
        k["score_threshold"] = float(np.nextafter(f32(t), f32(-1))) if t > 0 else t
        return E.detectron_detection_output(**k)[:3]
    rep = cd.check_openvino_detectron_detection_output(inclusive, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "keeps score > threshold" in rep.first_mismatch

    def swapped(**k):
        return E.prior_grid_generator(**dict(k, stride_x=k["stride_y"], stride_y=k["stride_x"]))
    rep = cd.check_openvino_prior_grid_generator(swapped, n_cases=0, raise_on_failure=False)
    assert not rep.ok and "swapped" in rep.first_mismatch


# ---------------------------------------------------------------------------------------------------
# golden cases worked by hand
# ---------------------------------------------------------------------------------------------------

def test_prior_grid_generator_by_hand():
    # 2 x 3 map on a 16 x 24 image: steps 8, 8; cell (1, 2) centre (20, 12)
    g = E.prior_grid_generator(np.array([[-8, -4, 8, 4]], f32), (1, 1, 2, 3), (1, 3, 16, 24))
    assert g.shape == (6, 4)
    np.testing.assert_array_equal(g[5], [12, 8, 28, 16])
    # explicit strides win; not flattened: (H, W, A, 4)
    g = E.prior_grid_generator(np.zeros((2, 4), f32), (1, 1, 2, 3), (1, 3, 16, 24), stride_x=2, stride_y=4,
                               flatten=False)
    assert g.shape == (2, 3, 2, 4)
    np.testing.assert_array_equal(g[1, 2, 1], [5, 6, 5, 6])
    # h x w must have the feature map's cell count (the plugin overflows its buffer otherwise)
    with pytest.raises(ValueError, match="`h` x `w`.*OpenVINO"):
        E.prior_grid_generator(np.zeros((1, 4), f32), (1, 1, 2, 3), (1, 3, 16, 24), h=4, w=4)


def _gpsi(**kw):
    anchors = E.prior_grid_generator(np.array([[-8, -8, 8, 8]], f32), (1, 1, 2, 4), (1, 3, 16, 32))
    case = dict(im_info=np.array([16, 32, 1], f32), anchors=anchors, deltas=np.zeros((4, 2, 4), f32),
                scores=np.arange(8, dtype=f32).reshape(1, 2, 4) / 8, min_size=0.0, nms_threshold=0.9,
                pre_nms_count=8, post_nms_count=10)
    case.update(kw)
    return E.generate_proposals_single_image(**case)


def test_generate_proposals_decode_clip_and_offsets_by_hand():
    rois, scores, n = _gpsi()
    assert n == 8
    # best score 7/8 is cell (1, 3): anchor [20, 4, 36, 20] (+1 widths: 17), zero deltas give [20, 4, 36, 20]
    # and x1 clipped to W - 1 = 31, y1 to H - 1 = 15
    np.testing.assert_array_equal(rois[0], [20, 4, 31, 15])
    assert scores[0] == f32(7 / 8)
    # two cells of a 1 x 2 map (stride 8, image 8 x 16): anchors [-4, -4, 12, 12] and [4, -4, 20, 12] decode to
    # themselves and clip to [0, 0, 12, 7] and [4, 0, 15, 7]. The NMS uses +0 sides: IoU 56 / (84 + 77 - 56)
    # = 0.533 (with Detectron's +1 sides it would be 72 / 128 = 0.5625)
    two = dict(im_info=np.array([8, 16, 1], f32),
               anchors=E.prior_grid_generator(np.array([[-8, -8, 8, 8]], f32), (1, 1, 1, 2), (1, 3, 8, 16)),
               deltas=np.zeros((4, 1, 2), f32), scores=np.array([[[0.9, 0.8]]], f32), min_size=0.0,
               pre_nms_count=8, post_nms_count=10)
    out = E.generate_proposals_single_image(**two, nms_threshold=0.55)
    np.testing.assert_array_equal(out[0][:2], [[0, 0, 12, 7], [4, 0, 15, 7]])
    assert out[2] == 2
    assert E.generate_proposals_single_image(**two, nms_threshold=0.52)[2] == 1
    assert E.generate_proposals_single_image(**two, nms_threshold=float(f32(56) / f32(105)))[2] == 2   # strict
    # a huge dw is capped at log(1000 / 16): exp(4.135) * 17 = 1062.5 wide before clipping
    d = np.zeros((4, 2, 4), f32)
    d[2] = 50.0
    rois, _, _ = _gpsi(deltas=d)
    np.testing.assert_array_equal(rois[0, [0, 2]], [0, 31])
    # min_size above every (clipped) box: scores 0, boxes kept in the heap's order
    assert not _gpsi(min_size=40.0)[1].any()


def _eddo(**kw):
    rois = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [5, 5, 5, 9]], f32)
    case = dict(rois=rois, deltas=np.zeros((4, 12), f32),
                scores=np.array([[0.1, 0.9, 0.2], [0.1, 0.8, 0.7], [0.2, 0.5, 0.5], [0.0, 0.9, 0.9]], f32),
                im_info=np.array([[100, 100, 1]], f32), score_threshold=0.05, nms_threshold=0.5, num_classes=3,
                post_nms_count=100, max_detections_per_image=100)
    case.update(kw)
    return E.detectron_detection_output(**case)


def test_detectron_detection_output_by_hand():
    d = _eddo()
    # RoI 3 is empty (x2 - x1 = 0): never detected although it scores 0.9. Zero deltas give back each RoI.
    # Class 1: RoIs 0 (0.9), 1 (0.8; IoU with +1 sides 110 / 132 = 0.83 > 0.5: suppressed), 2 (0.5)
    # class 2: RoIs 1 (0.7), 2 (0.5), 0 (0.2; suppressed by RoI 1)
    assert d.count == 4
    np.testing.assert_array_equal(d.classes[:4], [1, 1, 2, 2])
    np.testing.assert_array_equal(d.scores[:4], f32([0.9, 0.5, 0.7, 0.5]))
    np.testing.assert_array_equal(d.boxes[2], [1, 0, 11, 10])
    # max_detections_per_image 3: score-ordered across classes; (0.5, RoI 2) in classes 1 and 2 tie
    d = _eddo(max_detections_per_image=3)
    np.testing.assert_array_equal(d.scores, f32([0.9, 0.7, 0.5]))
    assert d.count == 3 and d.classes[2] in (1, 2)
    # a score equal to the threshold is dropped (strict)
    assert _eddo(score_threshold=0.5).count == 2
    # boxes are clamped at 0 only: a shift left by 2 widths stays at x1 = 0, and x2 is not clipped to the image
    dl = np.zeros((4, 12), f32)
    dl[2, 4] = -10 * 3.0                                      # class 1, RoI 2: dx = -3 widths
    dl[0, 4] = 10 * 20.0
    d = _eddo(deltas=dl, score_threshold=0.6)
    np.testing.assert_array_equal(d.boxes[0], [220, 0, 230, 10])


def test_roi_levels_and_extractor_by_hand():
    r = np.array([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 10, 10], [3, 3, 3, 9]], f32)
    # sqrt(area) = 224 -> level 2; 112 -> 1; 448 -> 3 (clamped to 2 with three levels); 10 -> 0; empty -> 3
    np.testing.assert_array_equal(E.detectron_roi_levels(r, 3), [2, 1, 2, 0, 3])
    feats = [np.arange(16, dtype=f32).reshape(1, 1, 4, 4)]
    out, back = E.detectron_roi_feature_extractor(np.array([[0, 0, 2, 2], [1, 1, 1, 1]], f32), feats, output_size=1,
                                                  sampling_ratio=1, pyramid_scales=[1])
    # RoI [0, 0, 2, 2] at scale 1, one sample at its centre (1, 1): value 5; the empty RoI gets 0
    np.testing.assert_array_equal(out[:, 0, 0, 0], [5, 0])
    np.testing.assert_array_equal(back, [[0, 0, 2, 2], [1, 1, 1, 1]])
    # aligned: the sample moves by -0.5 pixel to (0.5, 0.5): (0 + 1 + 4 + 5) / 4 = 2.5
    out, _ = E.detectron_roi_feature_extractor(np.array([[0, 0, 2, 2]], f32), feats, output_size=1, sampling_ratio=1,
                                               pyramid_scales=[1], aligned=True)
    assert out[0, 0, 0, 0] == 2.5


def test_inputs_untouched():
    a = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], f32)
    s = np.array([[0.1, 0.9], [0.2, 0.8]], f32)
    d = np.ones((2, 8), f32)
    copies = [x.copy() for x in (a, s, d)]
    E.detectron_detection_output(a, d, s, np.array([[100, 100, 1]], f32), score_threshold=0.0, nms_threshold=0.5,
                                 num_classes=2, post_nms_count=10, max_detections_per_image=10)
    for x, c in zip((a, s, d), copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize("fn, kw, words", [
    (E.prior_grid_generator, dict(priors=np.zeros((1, 3), f32), feature_shape=(1, 1, 2, 2), image_shape=(1, 3, 8, 8)),
     ["priors"]),
    (E.prior_grid_generator, dict(priors=np.zeros((1, 4), f32), feature_shape=(1, 2, 2), image_shape=(1, 3, 8, 8)),
     ["feature_shape", "OpenVINO"]),
    (E.prior_grid_generator, dict(priors=np.zeros((1, 4), f32), feature_shape=(1, 1, 2, 2), image_shape=(1, 3, 8, 8),
                                  stride_x=-1.0), ["stride_x"]),
    (E.generate_proposals_single_image, dict(im_info=np.zeros(2, f32), anchors=np.zeros((4, 4), f32),
                                             deltas=np.zeros((4, 2, 2), f32), scores=np.zeros((1, 2, 2), f32),
                                             min_size=0, nms_threshold=0.5, pre_nms_count=4, post_nms_count=4),
     ["im_info"]),
    (E.generate_proposals_single_image, dict(im_info=np.ones(3, f32), anchors=np.zeros((4, 4), f32),
                                             deltas=np.zeros((8, 2, 2), f32), scores=np.zeros((1, 2, 2), f32),
                                             min_size=0, nms_threshold=0.5, pre_nms_count=4, post_nms_count=4),
     ["deltas", "OpenVINO"]),
    (E.generate_proposals_single_image, dict(im_info=np.ones(3, f32), anchors=np.zeros((4, 4), f32),
                                             deltas=np.zeros((4, 2, 2), f32), scores=np.zeros((1, 2, 2), f32),
                                             min_size=0, nms_threshold=0.5, pre_nms_count=0, post_nms_count=4),
     ["pre_nms_count"]),
    (E.detectron_detection_output, dict(rois=np.zeros((2, 4), f32), deltas=np.zeros((2, 8), f32),
                                        scores=np.zeros((2, 3), f32), im_info=np.ones((1, 3), f32), score_threshold=0,
                                        nms_threshold=0.5, num_classes=2, post_nms_count=1,
                                        max_detections_per_image=1), ["scores", "OpenVINO"]),
    (E.detectron_detection_output, dict(rois=np.zeros((2, 4), f32), deltas=np.zeros((2, 8), f32),
                                        scores=np.zeros((2, 2), f32), im_info=np.ones((1, 3), f32), score_threshold=0,
                                        nms_threshold=0.5, num_classes=2, post_nms_count=1,
                                        max_detections_per_image=1, deltas_weights=[1, 0, 1, 1]),
     ["deltas_weights", "OpenVINO"]),
    (E.detectron_detection_output, dict(rois=np.zeros((2, 4), f32), deltas=np.zeros((2, 8), f32),
                                        scores=np.zeros((2, 2), f32), im_info=np.ones((1, 3), f32), score_threshold=0,
                                        nms_threshold=0.5, num_classes=2, post_nms_count=1,
                                        max_detections_per_image=0), ["max_detections_per_image"]),
    (E.detectron_roi_feature_extractor, dict(rois=np.zeros((1, 4), f32), features=[], output_size=1,
                                             sampling_ratio=0, pyramid_scales=[]), ["features", "OpenVINO"]),
    (E.detectron_roi_feature_extractor, dict(rois=np.zeros((1, 4), f32), features=[np.zeros((1, 1, 2, 2), f32)],
                                             output_size=1, sampling_ratio=0, pyramid_scales=[4, 8]),
     ["pyramid_scales"]),
    (E.detectron_roi_feature_extractor, dict(rois=np.zeros((1, 4), f32), features=[np.zeros((2, 1, 2, 2), f32)],
                                             output_size=1, sampling_ratio=0, pyramid_scales=[4]),
     ["features", "OpenVINO"]),
    (E.detectron_roi_feature_extractor, dict(rois=np.zeros((1, 4), f32), features=[np.zeros((1, 1, 2, 2), f32)],
                                             output_size=0, sampling_ratio=0, pyramid_scales=[4]), ["output_size"]),
])
def test_bad_input(fn, kw, words):
    with pytest.raises((TypeError, ValueError)) as ei:
        fn(**kw)
    for w in words:
        assert w in str(ei.value)


def test_roi_feature_extractor_clamps_aligned_rois_to_one_pixel():
    # aligned RoI [2, 2, 2.5, 2.5] at scale 1: start 1.5, size 0.5 clamped to 1 (Caffe2's "malformed RoI" rule in
    # both modes), one sample at 1.5 + 0.5 = 2.0: feature (2, 2) = 10. detectron2's ROIAlign(aligned=True) does not
    # clamp: its sample at 1.75 gives 8.75
    feats = [np.arange(16, dtype=f32).reshape(1, 1, 4, 4)]
    out, _ = E.detectron_roi_feature_extractor(np.array([[2, 2, 2.5, 2.5]], f32), feats, output_size=1,
                                               sampling_ratio=1, pyramid_scales=[1], aligned=True)
    assert out[0, 0, 0, 0] == 10
    from refdet.roi import roi_align
    d2 = roi_align(feats[0], np.array([[0, 2, 2, 2.5, 2.5]], f32), (1, 1), 1.0, 1, True)
    assert d2[0, 0, 0, 0] == 8.75
