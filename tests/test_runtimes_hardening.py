"""Regression tests for the fuzz walk's findings in refdet.runtimes and the runtimes' conformance helpers
(issue 15 "Bad input"; the walk of tests/test_fuzz_public.py reaches them through
tests/_runtimes_fuzz_cases.py). Each call below once crashed (MemoryError, ZeroDivisionError, IndexError,
AttributeError, cv2.error, OverflowError), answered NaN for finite inputs, or raised an error that did
not name the argument; now it raises TypeError / ValueError naming it.
"""
import importlib.util

import numpy as np
import pytest

from refdet.runtimes import onnx_runners, opencv, opencv_ssd, openvino, openvino_priors
from refdet.testing import conformance_opencv, conformance_opencv_ssd, conformance_openvino

F = np.float32
RECTS = np.array([[0, 0, 10, 10], [2, 2, 10, 10], [30, 30, 5, 5]], np.int32)
SCORES = np.array([0.9, 0.8, 0.7], F)


def _raises(err, match, fn, *a, **k):
    with pytest.raises(err, match=match):
        fn(*a, **k)


# ---------------------------------------------------------------------------------------------------
# refdet.runtimes.opencv_ssd / opencv
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ar", [0.0, -1.0, -1e-3])
def test_opencv_prior_box_refuses_non_positive_aspect_ratios(ar):
    # was: ZeroDivisionError (1 / 0) or NaN boxes (sqrt of a negative ratio)
    _raises(ValueError, r"`aspect_ratio`.*> 0.*OpenCV", opencv_ssd.prior_box, (2, 2), (20, 20), min_size=[4],
            aspect_ratio=[ar], variance=[0.1])


def test_opencv_prior_box_names_min_size_when_it_passes_max_size():
    _raises(ValueError, r"`max_size`.*`min_size`", opencv_ssd.prior_box, (2, 2), (20, 20), min_size=[1e9],
            max_size=[20.0], variance=[0.1])


def test_opencv_detection_output_names_num_classes_on_a_conf_mismatch():
    pr = np.zeros((2, 8), F)
    _raises(ValueError, r"`conf`.*`num_classes`", opencv_ssd.detection_output, np.zeros((1, 8), F),
            np.zeros((1, 6), F), pr, num_classes=10 ** 9, keep_top_k=2, nms_threshold=0.5)


@pytest.mark.parametrize("size", [(10 ** 9, 4), (4, 2 ** 63 - 1)])
def test_blob_from_image_refuses_huge_sizes_before_allocating(size):
    # was: MemoryError (7 GiB) / numpy's "array is too big"
    img = np.zeros((6, 8, 3), F)
    _raises(ValueError, r"`size`", opencv.blob_from_image, img, 1.0, size)
    _raises(ValueError, r"`size`", opencv.blob_from_image, img, 1.0, size, crop=True)


# ---------------------------------------------------------------------------------------------------
# refdet.runtimes.openvino_priors (also re-exported by refdet.runtimes.openvino)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [openvino_priors.prior_box, openvino_priors.prior_box_clustered])
@pytest.mark.parametrize("shape_arg", ["layer_shape", "image_shape"])
@pytest.mark.parametrize("bad, err", [((None, 2), TypeError), ((np.nan, 2), TypeError), ((0, 2), ValueError),
                                      ((2 ** 63 - 1, 2), ValueError), (3, TypeError)])
def test_openvino_priors_shapes(fn, shape_arg, bad, err):
    kw = dict(layer_shape=(2, 2), image_shape=(16, 16))
    kw[shape_arg] = bad
    extra = dict(min_size=[4.0]) if fn is openvino_priors.prior_box else dict(widths=[4.0], heights=[4.0])
    _raises(err, f"`{shape_arg}", fn, kw["layer_shape"], kw["image_shape"], **extra)


@pytest.mark.parametrize("fn", [openvino_priors.prior_box, openvino_priors.prior_box_clustered])
def test_openvino_priors_refuse_huge_layers_before_allocating(fn):
    extra = dict(min_size=[4.0]) if fn is openvino_priors.prior_box else dict(widths=[4.0], heights=[4.0])
    _raises(ValueError, r"`layer_shape`.*elements", fn, (10 ** 9, 1), (16, 16), **extra)


@pytest.mark.parametrize("kw, err, name", [
    (dict(min_size=None), TypeError, "min_size"),
    (dict(min_size=[4.0], max_size=None), TypeError, "max_size"),
    (dict(min_size=[4.0], aspect_ratio=None), TypeError, "aspect_ratio"),
    (dict(min_size=[4.0], variance=None), TypeError, "variance"),
    (dict(min_size=[4.0], fixed_size=None), TypeError, "fixed_size"),
    (dict(min_size=[-4.0]), ValueError, "min_size"),                 # was: NaN boxes (sqrt(min * max))
    (dict(min_size=[4.0], max_size=[-8.0]), ValueError, "max_size"),
    (dict(min_size=[4.0], aspect_ratio=[-2.0]), ValueError, "aspect_ratio"),
    (dict(min_size=[4.0], flip=np.array([True, False])), TypeError, "flip"),
    (dict(min_size=[4.0], clip=None), TypeError, "clip"),
    (dict(min_size=[4.0], scale_all_sizes=None), TypeError, "scale_all_sizes"),
    (dict(min_size=[4.0], min_max_aspect_ratios_order=np.array([1, 0])), TypeError, "min_max_aspect_ratios_order"),
    (dict(min_size=[], max_size=[8.0]), ValueError, "min_size"),        # the prior-count message names it
    (dict(fixed_size=[4.0], density=[1e5]), ValueError, "layer_shape"),   # refused before its 1e10 loop
])
def test_openvino_prior_box_attributes(kw, err, name):
    _raises(err, f"`{name}", openvino_priors.prior_box, (2, 2), (16, 16), **kw)


def test_openvino_prior_box_clustered_attributes():
    _raises(TypeError, "`widths", openvino_priors.prior_box_clustered, (2, 2), (16, 16), widths=None, heights=[1.0])
    _raises(TypeError, "`clip", openvino_priors.prior_box_clustered, (2, 2), (16, 16), widths=[1.0], heights=[1.0],
            clip=np.array([1, 1]))


# ---------------------------------------------------------------------------------------------------
# refdet.runtimes.openvino (the validation lines only)
# ---------------------------------------------------------------------------------------------------

def _nms_result():
    b = np.array([[[0, 0, 1, 1], [0, 0, 1, 1.01], [2, 2, 3, 3]]], F)
    return openvino.non_max_suppression(b, np.array([[[0.9, 0.8, 0.7]]], F), 3, 0.5, 0.0)


@pytest.mark.parametrize("kw, err, name", [
    (dict(result=None), TypeError, "result"),                           # was: AttributeError
    (dict(num_batches=None), TypeError, "num_batches"),
    (dict(num_classes=-1), ValueError, "num_classes"),
    (dict(num_boxes=np.nan), TypeError, "num_boxes"),
    (dict(num_batches=10 ** 10), ValueError, "num_batches"),            # was: MemoryError (134 GiB)
    (dict(max_output_boxes_per_class=0), ValueError, "max_output_boxes_per_class"),
])
def test_openvino_pad_nms_result(kw, err, name):
    args = dict(result=_nms_result(), num_batches=1, num_classes=1, num_boxes=3, max_output_boxes_per_class=3)
    args.update(kw)
    _raises(err, f"`{name}", openvino.pad_nms_result, **args)


def test_openvino_fake_quantize_names_the_range_that_does_not_broadcast():
    _raises(ValueError, "`input_low`", openvino.fake_quantize, np.zeros((2, 3, 4), F), np.zeros(2, F), 1.0, 0.0, 1.0,
            4)


def test_openvino_roi_align_and_roi_pooling_name_their_arguments():
    x = np.zeros((2, 3, 8, 8), F)
    rois = np.array([[0, 0, 4, 4], [1, 1, 5, 5]], F)
    _raises(ValueError, "`rois`", openvino.roi_align, x, np.array([[0, np.nan, 4, 4]], F), np.array([0]), 2, 2)
    _raises(ValueError, "`batch_indices`", openvino.roi_align, x[:1], rois, np.array([0, 1]), 2, 2)
    _raises(ValueError, "`batch_indices`|`features`", openvino.roi_align, x[:0], rois, np.array([0, 0]), 2, 2)
    _raises(ValueError, "`pooled_h`", openvino.roi_align, x, rois, np.array([0, 1]), 10 ** 9, 2)
    _raises(ValueError, "`sampling_ratio`", openvino.roi_align, x, rois, np.array([0, 1]), 2, 2,
            sampling_ratio=2 ** 63 - 1)                                # was: OverflowError
    r5 = np.array([[0, 0, 0, 4, 4], [1, 1, 1, 5, 5]], F)
    _raises(ValueError, "`rois`", openvino.roi_pooling, x, np.array([[0, np.inf, 0, 4, 4]], F), (2, 2))
    _raises(ValueError, "`rois.*`features`", openvino.roi_pooling, x[:1], r5, (2, 2))


def test_openvino_interpolate_names_its_own_arguments():
    x = np.zeros((1, 2, 4, 5), F)
    _raises(ValueError, "`cube_coeff`", openvino.interpolate, x, [6, 3], None, [2, 3], mode="cubic",
            cube_coeff=np.nan)
    _raises(ValueError, "`axes`", openvino.interpolate, x, [3, 6, 3], None, [0, 2, 3], mode="linear_onnx")


# ---------------------------------------------------------------------------------------------------
# the conformance helpers
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, err, name", [
    (dict(rects=RECTS[:0]), ValueError, "scores"),                      # was: IndexError
    (dict(scores=None), TypeError, "scores"),
    (dict(score_threshold=np.nan), ValueError, "score_threshold"),     # was: accepted
    (dict(nms_threshold=1j), TypeError, "nms_threshold"),
    (dict(eta=None), TypeError, "eta"),
    (dict(eta=np.nan), ValueError, "eta"),
    (dict(top_k=0.5), TypeError, "top_k"),
    (dict(inclusive=np.array([1, 0])), TypeError, "inclusive"),
    (dict(iou="plus-one"), ValueError, "iou"),
])
def test_opencv_nms_loop_validates(kw, err, name):
    args = dict(rects=RECTS, scores=SCORES, score_threshold=0.1, nms_threshold=0.5)
    args.update(kw)
    _raises(err, f"`{name}", conformance_opencv.opencv_nms_loop, **args)


def test_opencv_nms_loop_still_equals_nms_boxes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = np.concatenate([rng.integers(0, 20, (9, 2)), rng.integers(1, 10, (9, 2))], axis=1).astype(np.int32)
        s = (rng.integers(0, 5, 9) / 4).astype(F)
        np.testing.assert_array_equal(conformance_opencv.opencv_nms_loop(r, s, 0.2, 0.4, 0.9, 3),
                                      opencv.nms_boxes(r, s, 0.2, 0.4, eta=0.9, top_k=3))


def test_detection_output_order_defined_validates():
    loc, conf = np.zeros((1, 8), F), np.zeros((1, 4), F)
    pr = np.zeros((2, 8), F)
    f = conformance_opencv_ssd.detection_output_order_defined
    _raises(TypeError, "`attrs`", f, loc, conf, pr, [1, 2])
    _raises(ValueError, "`attrs`", f, loc, conf, pr, {"num_classes": 2})
    _raises(TypeError, "`loc`", f, None, conf, pr, dict(num_classes=2, keep_top_k=2, nms_threshold=0.5))   # IndexError
    _raises(ValueError, "`attrs`", f, loc, conf, pr, dict(num_classes=-1, keep_top_k=2, nms_threshold=0.5))
    assert f(loc, conf, pr, dict(num_classes=2, keep_top_k=2, nms_threshold=0.5)) is True


def test_fake_quantize_tolerance_validates():
    case = dict(x=np.ones(3, F), input_low=F(0), input_high=F(2), output_low=F(0), output_high=F(1), levels=4)
    f = conformance_openvino.fake_quantize_tolerance
    _raises(TypeError, "`case`", f, None, np.ones(3))
    _raises(ValueError, "`case`.*x", f, {k: v for k, v in case.items() if k != "x"}, np.ones(3))   # was: KeyError
    _raises(TypeError, "`case\\['output_low'\\]`", f, dict(case, output_low=None), np.ones(3))     # was: NaN
    _raises(ValueError, "`case\\['levels'\\]`", f, dict(case, levels=1), np.ones(3))
    assert f(case, np.ones(3)).shape == (3,)


# ---------------------------------------------------------------------------------------------------
# refdet.runtimes.adapters.opencv_layer, refdet.runtimes.onnx_runners
# ---------------------------------------------------------------------------------------------------

def _need(*mods):
    for m in mods:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed")


def test_opencv_layer_validates_and_names_what_opencv_refuses():
    _need("cv2", "onnx")
    from refdet.runtimes.adapters import opencv_layer

    ins = [np.zeros((1, 1, 2, 2), F), np.zeros((1, 1, 20, 20), F)]
    attrs = {"min_size": [4.0], "variance": [0.1]}
    _raises(ValueError, "`op_type`", opencv_layer, "", ins, attrs)
    _raises(ValueError, "`op_type`", opencv_layer, None, ins, attrs)
    _raises(ValueError, "`op_type`", opencv_layer, "NoSuchLayer", ins, attrs)          # was: cv2.error
    _raises(TypeError, "`inputs`", opencv_layer, "PriorBox", None, attrs)
    _raises(TypeError, "`inputs`", opencv_layer, "PriorBox", [], attrs)
    _raises(TypeError, r"`inputs\[0\]`", opencv_layer, "PriorBox", ["s", ins[1]], attrs)
    _raises(ValueError, "`inputs`", opencv_layer, "PriorBox", ins[:1], attrs)          # was: cv2.error
    _raises(TypeError, "`attrs`", opencv_layer, "PriorBox", ins, None)                  # was: AttributeError
    _raises(TypeError, r"`attrs\['min_size'\]`", opencv_layer, "PriorBox", ins, dict(attrs, min_size=[]))
    out = opencv_layer("PriorBox", ins, attrs)
    np.testing.assert_array_equal(out[0], opencv_ssd.prior_box((2, 2), (20, 20), min_size=[4.0], variance=[0.1]))


def _relu_model():
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


@pytest.mark.parametrize("runtime", ["openvino", "opencv"])
def test_onnx_runners_validate_and_name_their_arguments(runtime):
    _need("onnx", {"openvino": "openvino", "opencv": "cv2"}[runtime])
    run = onnx_runners.RUNNERS[runtime]
    model = _relu_model()
    x = {"x": np.array([[-1, 0, 1], [2, -2, 3]], F)}
    _raises(TypeError, "`model_bytes`", run, None, x, ["y"])
    _raises(TypeError, "`model_bytes`", run, "model.onnx", x, ["y"])
    _raises(TypeError, "`feeds`", run, model, [1, 2], ["y"])
    _raises(TypeError, "`names`", run, model, x, None)
    _raises(TypeError, "`names`", run, model, x, "y")
    with pytest.raises(onnx_runners.RuntimeCannotRun, match="`model_bytes`"):
        run(b"not a model", x, ["y"])
    with pytest.raises((ValueError, onnx_runners.RuntimeCannotRun), match="`feeds`"):
        run(model, {}, ["y"])
    with pytest.raises(onnx_runners.RuntimeCannotRun, match="`names`"):
        run(model, x, ["z"])
    np.testing.assert_array_equal(run(model, x, ["y"])["y"], np.maximum(x["x"], 0))
