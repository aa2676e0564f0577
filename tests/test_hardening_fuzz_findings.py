"""Hardening: what the fuzz walk (tests/test_fuzz_public.py) found, one test per fix."""
import numpy as np
import pytest

import refdet
from refdet import quant as Q
from refdet.quant import types as T


def test_top_k_per_level_names_its_arguments():
    s = np.arange(20, dtype=float)
    assert refdet.top_k_per_level(s, [12, 8], 5).tolist() == [11, 10, 9, 8, 7, 19, 18, 17, 16, 15]
    for bad, err, name in [(None, TypeError, "scores"), (np.zeros((20, 1)), ValueError, "scores"),
                           (s > 3, TypeError, "scores")]:
        with pytest.raises(err, match=f"`{name}"):
            refdet.top_k_per_level(bad, [12, 8], 5)
    with pytest.raises(ValueError, match=r"`num_anchors_per_level` must sum to the number of anchors N = 20"):
        refdet.top_k_per_level(s, [12, 9], 5)
    with pytest.raises(TypeError, match=r"`num_anchors_per_level\[0\]` must be an integer"):
        refdet.top_k_per_level(s, [12.5, 7.5], 5)
    with pytest.raises(TypeError, match="`num_anchors_per_level` must be a sequence"):
        refdet.top_k_per_level(s, None, 5)
    with pytest.raises(TypeError, match="`k` must be an integer"):
        refdet.top_k_per_level(s, [12, 8], 1.5)


def test_rpn_head_forward_names_a_missing_box_weight():
    p = refdet.rpn_head_init(4, 3, rng=0)
    p["bbox_pred.weight"] = None          # was IndexError: tuple index out of range
    with pytest.raises(ValueError, match=r"`params\['bbox_pred.weight'\]` must have shape \(4A, C, 1, 1\)"):
        refdet.rpn_head_forward(p, np.zeros((1, 4, 5, 5)))


def test_quantize_linear_blames_axis_and_names_dtype_options():
    x = np.zeros((2, 3, 4, 5), np.float32)
    s = np.full((2, 3, 2, 5), 0.1, np.float32)
    assert Q.quantize_linear(x, s, axis=2, block_size=2).shape == x.shape
    with pytest.raises(ValueError, match=r"`y_scale` must have x's shape .* except along `axis` = 0"):
        Q.quantize_linear(x, s, axis=0, block_size=2)
    with pytest.raises(ValueError, match=r"`block_size` > 0"):
        Q.quantize_linear(x, s, axis=2, block_size=0)
    with pytest.raises(TypeError, match="`saturate` must be a bool"):
        Q.quantize_linear(x, s, axis=2, block_size=2, saturate=np.array([1, 0]))
    with pytest.raises(TypeError, match="`precision` must be a float dtype"):
        Q.quantize_linear(x, s, axis=2, block_size=2, precision=float("nan"))
    with pytest.raises(TypeError, match="`output_dtype` must be a float dtype"):
        Q.dequantize_linear(np.zeros(3, np.uint8), np.float32(0.5), output_dtype=np.array([1.0]))
    with pytest.raises(TypeError, match="`saturate` must be a bool"):
        T.encode_float(np.ones(3), "float8e5m2", saturate=np.array([1, 0]))


def test_unpack_names_shape_without_int64_wrap():
    data = np.zeros(4, np.uint8)
    assert T.unpack(data, "uint2", (4, 4)).shape == (4, 4)
    with pytest.raises(TypeError, match="`shape` must be a tuple of ints"):
        T.unpack(data, "uint2", None)
    # 2**63 * 4 wrapped to 0 elements in int64: the need is computed exactly
    with pytest.raises(ValueError, match=r"must hold ceil\(36893488147419103232 \* 2 / 8\).*for `shape`"):
        T.unpack(data, "uint2", (2 ** 63, 4))


def test_evaluate_names_the_ground_truth_key_for_unknown_ids():
    gts = {"image_id": np.array([5, 5]), "boxes": np.array([[0, 0, 4, 4], [5, 5, 9, 9.0]]), "labels": np.array([1, 2])}
    dts = {"image_id": np.array([0]), "boxes": np.array([[0, 0, 4, 4.0]]), "labels": np.array([1]),
           "scores": np.array([0.9])}
    with pytest.raises(ValueError, match=r"`detections\['image_id'\]` refers to unknown image ids \[0\] "
                                         r"\(the known image ids are those of `ground_truths\['images'\]`"):
        refdet.evaluate_detections(dts, gts)


def test_infer_level_scales_names_feature_sizes():
    with pytest.raises(TypeError, match="`feature_sizes` must be a list"):
        refdet.roi.infer_level_scales(None, [(32, 32)])
    assert refdet.roi.infer_level_scales(np.array([[8, 8], [4, 4]]), [(32, 32)])[0] == [0.25, 0.125]


def test_format_accuracy_report_names_malformed_columns():
    with pytest.raises(TypeError, match=r"`reports\['b'\]` must be a dict from accuracy_report"):
        refdet.quant.format_accuracy_report({"a": {"sqnr_db": {}, "topk_overlap": {}, "score_threshold": 0.05},
                                             "b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"`reports\['a'\]` must be a dict from accuracy_report.*'sqnr_db'"):
        refdet.quant.format_accuracy_report({"a": {}})


@pytest.mark.parametrize("check", ["check_roi_align", "check_assign_roi_levels", "check_filter_proposals"])
def test_conformance_checks_name_a_bad_convention(check):
    from refdet.testing import conformance as C

    with pytest.raises(TypeError, match="`convention` must be a profile name"):   # was AttributeError
        getattr(C, check)(lambda *a: None, convention=None, n_cases=0)


def test_conformance_options_named():
    from refdet.testing import conformance as C

    with pytest.raises(TypeError, match="`raise_on_failure` must be a bool"):
        C.check_encode_decode(refdet.encode_boxes, refdet.decode_boxes, n_cases=0, raise_on_failure=np.ones(2))
    with pytest.raises(TypeError, match="`alpha` must be a real number"):
        C.check_varifocal_loss(lambda *a: None, alpha=None, n_cases=0)
    with pytest.raises(ValueError, match="`gamma` must be finite"):
        C.check_varifocal_loss(lambda *a: None, gamma=float("nan"), n_cases=0)


def test_anchor_location_names_row_and_sizes():
    from refdet.testing.compare_anchors import anchor_location

    assert anchor_location(17, [(4, 4), (2, 2)], 3) == (0, 1, 1, 2)
    with pytest.raises(ValueError, match=r"`row` 60 is past the last anchor \(60 anchors"):   # was IndexError
        anchor_location(60, [(4, 4), (2, 2)], 3)
    with pytest.raises(TypeError, match="`row` must be an integer"):
        anchor_location(1.5, [(4, 4)], 3)
    with pytest.raises(TypeError, match="`feature_sizes` must be a list"):
        anchor_location(1, None, 3)
    with pytest.raises(ValueError, match="`num_anchors` must have one entry per feature map"):
        anchor_location(1, [(4, 4)], [3, 3])


def test_float_variants_names_its_arguments():
    from refdet.testing.compare_floats import float_variants

    b = np.array([[0, 0, 4, 4.0], [1, 1, 5, 6.0]])
    assert float_variants("box_iou", (b, b))
    with pytest.raises(ValueError, match="`op` must name a public refdet function"):   # was AttributeError
        float_variants("bogus", (b, b))
    with pytest.raises(TypeError, match="`op` must be a refdet op name"):
        float_variants(None, (b, b))
    with pytest.raises(TypeError, match="`args` must be a tuple"):
        float_variants("box_iou", None)
    with pytest.raises(TypeError, match="`kwargs` must be a dict"):
        float_variants("box_iou", (b, b), "x")
    with pytest.raises(TypeError, match=r"`extra\[0\]` must be a \(description, overrides dict\) pair"):
        float_variants("box_iou", (b, b), extra=["ab"])


def test_conv2d_int_overflow_names_the_zero_points():
    x, w = np.zeros((1, 2, 4, 4), np.int64), np.zeros((3, 2, 3, 3), np.int64)
    with pytest.raises(ValueError, match=r"the accumulator of \(`x` - `x_zero_point`\) times \(`w` - `w_zero_point`\) "
                                         r"over 18 terms can reach"):
        Q.conv2d_int(x, w, x_zero_point=2 ** 31, w_zero_point=2 ** 32)
    with pytest.raises(ValueError, match="`method` 'float32' cannot be exact"):
        Q.conv2d_int(x, w, x_zero_point=10 ** 5, w_zero_point=10 ** 5, method="float32")


def test_roi_output_size_refused_even_without_rois():
    x = np.zeros((1, 2, 8, 8))
    with pytest.raises(ValueError, match="`output_size` asks for"):      # was NumPy's "array is too big"
        refdet.roi.roi_pool(x, np.zeros((0, 5)), (10 ** 9, 10 ** 9))
    with pytest.raises(ValueError, match="`output_size` asks for"):
        refdet.roi.roi_align(x, np.zeros((0, 5)), (10 ** 9, 10 ** 9))
    assert refdet.roi.roi_pool(x, np.zeros((0, 5)), (2, 2)).shape == (0, 2, 2, 2)


def test_rpn_targets_checks_thresholds_without_anchors():
    with pytest.raises(ValueError, match="`low` must lie in"):
        refdet.rpn_targets(np.zeros((0, 4)), np.array([[0, 0, 4, 4.0]]), (8, 8), low=-1.0, rng=0)
    with pytest.raises(ValueError, match="`high` must lie in"):
        refdet.rpn_targets(np.array([[0, 0, 4, 4.0]]), np.zeros((0, 4)), (8, 8), high=1.5, rng=0)


def test_roi_levels_bounded_to_representable_strides():
    b = np.array([[0, 0, 32, 32.0]])
    with pytest.raises(ValueError, match="`min_level` must be <= 1023"):       # was OverflowError
        refdet.roi.assign_roi_levels(b, min_level=2 ** 63, max_level=2 ** 63)
    # 32 px: k = floor(4 + log2(32 / 224)) = 1, counted from min_level -3
    assert refdet.roi.assign_roi_levels(b, min_level=-3, max_level=1023).tolist() == [4]
