"""Tests of refdet.nms and refdet._nms_engine that pin what mutation testing found unpinned (issue 19).

Each test fails on a first-order mutant of a named branch: an argument named in an error message, a
default, a convention branch, an engine path forced on a small input. Small hand-worked inputs only:
each test takes milliseconds. (Differentials and invariants live in tests/test_nms.py.)
"""
import importlib
import re

import numpy as np
import pytest

from refdet import _nms_engine as engine
from refdet import conventions

N = importlib.import_module("refdet.nms")     # refdet.nms is also the function's name in refdet

F32 = np.float32


# ------------------------------------------------------------------------- arguments named in errors

def test_descending_order_names_its_arguments():
    with pytest.raises(ValueError, match=r"^`ties` must be one of 'lowest_index', 'highest_index'; got 'x'$"):
        N.descending_order(np.zeros(3), ties="x")
    with pytest.raises(ValueError, match=r"^`scores` must be 1-D"):
        N.descending_order(np.zeros((3, 2)))


def test_onnx_nms_names_its_arguments():
    b, s = np.zeros((1, 2, 4)), np.zeros((1, 1, 2))
    with pytest.raises(TypeError, match=r"^`boxes` must be an array of real numbers"):
        N.onnx_non_max_suppression(np.array([[["a", "b", "c", "d"]]]), np.zeros((1, 1, 1)), 1)
    with pytest.raises(TypeError, match=r"^`scores` must be an array of real numbers"):
        N.onnx_non_max_suppression(b, np.array([[["a", "b"]]]), 1)
    with pytest.raises(ValueError, match=r"^`scores` must not contain NaN"):
        N.onnx_non_max_suppression(b, np.array([[[0.0, np.nan]]]), 1)
    with pytest.raises(TypeError, match=r"^`max_output_boxes_per_class` must be an integer"):
        N.onnx_non_max_suppression(b, s, "a")
    with pytest.raises(ValueError, match=r"^`iou_threshold` must lie in \[0.0, 1.0\]; got 1.5"):
        N.onnx_non_max_suppression(b, s, 1, 1.5)
    with pytest.raises(TypeError, match=r"^`score_threshold` must be a real number"):
        N.onnx_non_max_suppression(b, s, 1, 0.5, "x")
    with pytest.raises(ValueError, match=r"^`center_point_box` must be <= 1; got 2"):
        N.onnx_non_max_suppression(b, s, 1, 0.5, center_point_box=2)
    with pytest.raises(ValueError, match=r"^`center_point_box` must be >= 0; got -1"):
        N.onnx_non_max_suppression(b, s, 1, 0.5, center_point_box=-1)


def test_onnx_nms_names_bool_and_nonfinite_inputs_and_takes_inf_scores():
    b, s = np.zeros((1, 2, 4)), np.zeros((1, 1, 2))
    with pytest.raises(TypeError, match=r"^`boxes` must be an array of real numbers; got dtype bool"):
        N.onnx_non_max_suppression(b.astype(bool), s, 1)
    with pytest.raises(ValueError, match=r"^`boxes` must not contain NaN or inf; got inf at index \(0, 0, 0\)"):
        N.onnx_non_max_suppression(b + np.inf, s, 1)
    with pytest.raises(TypeError, match=r"^`scores` must be an array of real numbers; got dtype bool"):
        N.onnx_non_max_suppression(b, s.astype(bool), 1)
    # +-inf scores are numbers to sort (only NaN is refused): -inf last, +inf first
    b = np.array([[[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]], dtype=F32)
    got = N.onnx_non_max_suppression(b, np.array([[[-np.inf, np.inf, 0.0]]], F32), 5, 0.5)
    assert got.tolist() == [[0, 0, 1], [0, 0, 2], [0, 0, 0]]


@pytest.mark.parametrize("shape", [(2, 4), (1, 2, 3), (1, 2, 4, 1)])
def test_onnx_nms_boxes_shape_refused(shape):
    with pytest.raises(ValueError, match=r"^`boxes` must have shape \(B, N, 4\); got " + re.escape(str(shape)) + "$"):
        N.onnx_non_max_suppression(np.zeros(shape), np.zeros((1, 1, 2)), 1)


@pytest.mark.parametrize("shape", [(2, 3), (3, 1, 3), (2, 1, 2), (2, 1, 3, 1)])
def test_onnx_nms_scores_shape_refused(shape):
    # boxes (B, N, 4) = (2, 3, 4): the message gives B and N
    msg = r"^`scores` must have shape \(B, C, N\) = \(2, C, 3\) to match `boxes`; got " + re.escape(str(shape)) + "$"
    with pytest.raises(ValueError, match=msg):
        N.onnx_non_max_suppression(np.zeros((2, 3, 4)), np.zeros(shape), 1)


# ------------------------------------------------------------------------- defaults

def test_onnx_nms_defaults_select_nothing_and_suppress_any_overlap():
    # two boxes overlapping with IoU 1/3 and a disjoint third
    b = np.array([[[0, 0, 2, 2], [1, 0, 3, 2], [5, 5, 6, 6]]], dtype=F32)
    s = np.array([[[0.9, 0.8, 0.7]]], dtype=F32)
    # max_output_boxes_per_class defaults to 0 (the ONNX default): nothing is selected
    assert N.onnx_non_max_suppression(b, s).shape == (0, 3)
    # iou_threshold defaults to 0.0: any positive IoU (here 1/3) suppresses
    assert N.onnx_non_max_suppression(b, s, 10)[:, 2].tolist() == [0, 2]
    assert N.onnx_non_max_suppression(b, s, 10, 0.5)[:, 2].tolist() == [0, 1, 2]


# ------------------------------------------------------------------------- batched_nms: the trick

def test_coordinate_trick_offset_is_max_plus_one():
    # boxes.max() = 10: offset = idx * 11 puts the class-1 box [-11,-11,-1,-1] exactly on the class-0
    # box [0,0,10,10] (IoU 1); an offset of 12 would give IoU 81/119 = 0.68, kept at threshold 0.7
    b = np.array([[0, 0, 10, 10], [-11, -11, -1, -1]], F32)
    s = np.array([0.9, 0.8], F32)
    c = np.array([0, 1])
    assert N.batched_nms(b, s, c, 0.7, coordinate_trick=True).tolist() == [0]
    assert N.batched_nms(b, s, c, 0.7, coordinate_trick=np.bool_(True)).tolist() == [0]
    assert N.batched_nms(b, s, c, 0.7, coordinate_trick=np.bool_(False)).tolist() == [0, 1]
    assert N.batched_nms(b, s, c, 0.7).tolist() == [0, 1]


def _trick_rounding_case():
    # boxes.max() = 1e6: class 1 is shifted by 1000001, where float32 spacing is 0.0625, so box 2's
    # x1 = 0.03 + 1000001 rounds onto box 1's: IoU 1 in float32 (suppressed at 0.95), 0.97/1.03 = 0.94 exactly
    b = np.array([[1e6 - 10, 0, 1e6, 10], [0, 0, 1, 1], [0.03, 0, 1.03, 1]], F32)
    return b, np.array([0.7, 0.9, 0.8], F32), np.array([0, 1, 1])


def test_coordinate_trick_is_computed_in_the_boxes_dtype():
    b, s, c = _trick_rounding_case()
    assert N.batched_nms(b, s, c, 0.95, coordinate_trick=True).tolist() == [1, 0]
    assert N.batched_nms(b, s, c, 0.95).tolist() == [1, 2, 0]
    assert N.batched_nms(b.astype(np.float64), s, c, 0.95, coordinate_trick=True).tolist() == [1, 2, 0]


def test_coordinate_trick_rounding_against_torchvision():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    b, s, c = _trick_rounding_case()
    want = tv.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(c), 0.95)
    assert N.batched_nms(b, s, c, 0.95, coordinate_trick="torchvision").tolist() == want.tolist() == [1, 0]


@pytest.mark.parametrize("n, tricked", [(1000, True), (1001, False)])
def test_coordinate_trick_torchvision_up_to_4000_numbers(n, tricked):
    # torchvision uses the trick on the CPU when boxes.numel() <= 4000, i.e. N <= 1000
    b = np.zeros((n, 4), F32)
    b[:, 2:] = 1.0
    b[2:] += (np.arange(2, n, dtype=F32) * 20 + 30)[:, None]    # class-0 boxes, disjoint from all
    b[0] = [0, 0, 10, 10]
    off = b.max() + 1                                            # the trick's offset for class 1
    b[1] = [-off, -off, 10 - off, 10 - off]                      # shifted exactly onto box 0
    s = np.linspace(1.0, 0.5, n).astype(F32)
    c = np.zeros(n, np.int64)
    c[1] = 1
    got = N.batched_nms(b, s, c, 0.5, coordinate_trick="torchvision")
    assert (1 not in got.tolist()) == tricked
    assert len(got) == n - tricked


# ------------------------------------------------------------------------- ONNX operator details

def test_onnx_nms_negative_max_output_selects_nothing():
    b = np.array([[[0, 0, 1, 1]]], F32)
    s = np.array([[[0.5]]], F32)
    assert N.onnx_non_max_suppression(b, s, -3, 0.5).shape == (0, 3)
    assert N.onnx_non_max_suppression(b, s, 1, 0.5).tolist() == [[0, 0, 0]]


def test_onnx_nms_center_point_boxes_are_not_corner_sorted():
    # center_point_box=1: corners c -+ w/2 without sorting (onnxruntime). A negative width gives
    # x1 > x2, a negative area, and such a pair never suppresses; the same boxes with |w| suppress.
    neg = np.array([[[5, 5, -4, 4], [5, 5, -4, 4]]], F32)
    s = np.array([[[0.9, 0.8]]], F32)
    assert N.onnx_non_max_suppression(neg, s, 10, 0.5, center_point_box=1)[:, 2].tolist() == [0, 1]
    assert N.onnx_non_max_suppression(np.abs(neg), s, 10, 0.5, center_point_box=1)[:, 2].tolist() == [0]
    # corner boxes (center_point_box=0) are min/max-sorted: a flipped twin suppresses
    flipped = np.array([[[0, 0, 4, 4], [4, 4, 0, 0]]], F32)
    assert N.onnx_non_max_suppression(flipped, s, 10, 0.5)[:, 2].tolist() == [0]


def test_onnx_nms_center_point_conversion_halves_width_and_height():
    # box 0: centre (10, 10), 8 x 4 -> [6, 8, 14, 12]; box 1 [6, 8, 10, 12] overlaps it with
    # IoU 16/32 = 0.5 (kept at 0.5, suppressed at 0.49); box 2 [14, 12, 18, 16] touches box 0's corner
    b = np.array([[[10, 10, 8, 4], [8, 10, 4, 4], [16, 14, 4, 4]]], F32)
    s = np.array([[[0.9, 0.8, 0.7]]], F32)
    assert N.onnx_non_max_suppression(b, s, 10, 0.5, center_point_box=1)[:, 2].tolist() == [0, 1, 2]
    assert N.onnx_non_max_suppression(b, s, 10, 0.49, center_point_box=1)[:, 2].tolist() == [0, 2]


@pytest.mark.parametrize("axis", [0, 1])
def test_onnx_nms_center_point_conversion_per_axis(axis):
    # along `axis`: box 0 spans [8, 12], box 1 [10, 14] (centres 10 and 12, size 4); the other axis
    # [8, 12] for both: IoU = 4 * 2 / (16 + 16 - 8) = 1/3, kept at 0.5 (halving the size is the
    # conversion: doubling it instead would give 24 / 40 = 0.6)
    b = np.array([[[10, 10, 4, 4], [10, 10, 4, 4]]], F32)
    b[0, 1, axis] = 12
    s = np.array([[[0.9, 0.8]]], F32)
    assert N.onnx_non_max_suppression(b, s, 10, 0.5, center_point_box=1)[:, 2].tolist() == [0, 1]
    assert N.onnx_non_max_suppression(b, s, 10, 0.33, center_point_box=1)[:, 2].tolist() == [0]


def test_onnx_nms_threshold_is_float32_and_ties_go_to_the_lower_index():
    # float32 IoU 2/6 = 0.33333334 meets the threshold 1/3 as float32(1/3) = 0.33333334: not '>',
    # kept (onnxruntime holds the threshold in a float tensor); torchvision's double threshold suppresses
    b = np.array([[[0, 0, 2, 2], [1, 0, 3, 2]]], F32)
    s = np.array([[[0.9, 0.8]]], F32)
    assert N.onnx_non_max_suppression(b, s, 10, 1 / 3)[:, 2].tolist() == [0, 1]
    assert N.nms(b[0], s[0, 0], 1 / 3).tolist() == [0]
    # equal scores: the lower box index is selected first; at IoU exactly 0.5, '>' keeps both
    b = np.array([[[0, 0, 4, 2], [0, 0, 4, 4], [0, 0, 4, 4]]], F32)
    s = np.array([[[0.5, 0.5, 0.5]]], F32)
    assert N.onnx_non_max_suppression(b, s, 10, 0.5)[:, 2].tolist() == [0, 1]


def test_onnx_nms_rows_name_batch_and_class():
    # two images, two classes: rows [batch, class, box], grouped by batch then class
    b = np.array([[[0, 0, 2, 2], [0, 0, 2, 1.9]], [[0, 0, 2, 2], [5, 5, 6, 6]]], F32)
    s = np.array([[[0.9, 0.8], [0.1, 0.2]], [[0.3, 0.4], [0.6, 0.5]]], F32)
    got = N.onnx_non_max_suppression(b, s, 10, 0.5)
    assert got.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert got.dtype == np.int64
    # at most one per (batch, class)
    got = N.onnx_non_max_suppression(b, s, 1, 0.5)
    assert got.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]


# ------------------------------------------------------------------------- nms / batched / soft: errors

B2 = np.array([[0, 0, 4, 4], [0, 0, 4, 2.0]])       # IoU 8/16 = 0.5 exactly
S2 = np.array([0.9, 0.8])


def test_nms_names_its_arguments():
    with pytest.raises(ValueError, match=r"^`scores` must have length 2 \(one per box of `boxes`\); got length 1$"):
        N.nms(B2, S2[:1], 0.5)
    with pytest.raises(TypeError, match=r"^`boxes` must be an array of real numbers; got dtype bool"):
        N.nms(B2.astype(bool), S2, 0.5)
    with pytest.raises(TypeError, match=r"^`iou_threshold` must be a real number; got str 'x'$"):
        N.nms(B2, S2, "x")
    with pytest.raises(ValueError, match=r"^`scores` must not contain NaN; got nan at index \(0,\)$"):
        N.nms(B2, np.array([np.nan, 1.0]), 0.5, nan_scores="reject")
    with pytest.raises(ValueError, match=r"^`plus_one=True` is not defined with `corner_order='any'` "
                                         r"\(ONNX/TF boxes are continuous\)$"):
        N.nms(B2, S2, 0.5, corner_order="any", plus_one=True)
    with pytest.raises(ValueError, match=r"^nms: `ties` must be one of 'lowest_index', 'highest_index'; got 'x'$"):
        N.nms(B2, S2, 0.5, ties="x")


def test_batched_nms_names_its_arguments():
    c = np.array([0, 1])
    with pytest.raises(TypeError, match=r"^`idxs` must be an integer array; got dtype float64$"):
        N.batched_nms(B2, S2, np.array([0.5, 1.0]), 0.5)
    with pytest.raises(ValueError, match=r"^`idxs` must have length 2; got length 1$"):
        N.batched_nms(B2, S2, np.array([0]), 0.5)
    with pytest.raises(ValueError, match=r"^`scores` must have length 2 \(one per box of `boxes`\); got length 1$"):
        N.batched_nms(B2, S2[:1], c, 0.5)
    with pytest.raises(TypeError, match=r"^`boxes` must be an array of real numbers; got dtype bool"):
        N.batched_nms(B2.astype(bool), S2, c, 0.5)
    with pytest.raises(TypeError, match=r"^`iou_threshold` must be a real number; got str 'x'$"):
        N.batched_nms(B2, S2, c, "x")
    with pytest.raises(ValueError, match=r"^batched_nms: `coordinate_trick` must be one of False, True, 'torchvision'"):
        N.batched_nms(B2, S2, c, 0.5, coordinate_trick="yes")
    with pytest.raises(ValueError, match=r"^`scores` must not contain NaN; got nan at index \(0,\)$"):
        N.batched_nms(B2, np.array([np.nan, 1.0]), c, 0.5, nan_scores="reject")
    with pytest.raises(ValueError, match=r"^`plus_one=True` is not defined with `corner_order='any'`"):
        N.batched_nms(B2, S2, c, 0.5, corner_order="any", plus_one=True)


def test_soft_nms_names_its_arguments():
    with pytest.raises(ValueError, match=r"^`method` must be one of 'gaussian', 'linear', 'hard'; got 'x'$"):
        N.soft_nms(B2, S2, method="x")
    with pytest.raises(ValueError, match=r"^`scores` must have length 2 \(one per box of `boxes`\); got length 1$"):
        N.soft_nms(B2, S2[:1])
    with pytest.raises(ValueError, match=r"^`scores` must not contain NaN; got nan at index \(0,\)$"):
        N.soft_nms(B2, np.array([np.nan, 1.0]))
    with pytest.raises(TypeError, match=r"^`boxes` must be an array of real numbers; got dtype bool"):
        N.soft_nms(B2.astype(bool), S2)
    with pytest.raises(ValueError, match=r"^`sigma` must be > 0; got 0.0$"):
        N.soft_nms(B2, S2, sigma=0)
    with pytest.raises(ValueError, match=r"^`iou_threshold` must lie in \[0, 1\]"):
        N.soft_nms(B2, S2, iou_threshold=2)
    with pytest.raises(TypeError, match=r"^`score_threshold` must be a real number; got str 'a'$"):
        N.soft_nms(B2, S2, score_threshold="a")
    with pytest.raises(TypeError, match=r"^soft_nms: `inclusive` must be a bool; got str 'x'$"):
        N.soft_nms(B2, S2, inclusive="x")


# ------------------------------------------------------------------------- every knob as an override

def test_nms_each_knob_override_reaches_the_answer():
    # inclusive: IoU exactly 0.5 is kept under '>' and suppressed under '>='
    assert N.nms(B2, S2, 0.5).tolist() == [0, 1]
    assert N.nms(B2, S2, 0.5, inclusive=True).tolist() == [0]
    # ties: identical boxes with equal scores
    twins, eq = np.array([[0, 0, 1, 1.0]] * 2), np.array([0.5, 0.5])
    assert N.nms(twins, eq, 0.5).tolist() == [0]
    assert N.nms(twins, eq, 0.5, ties="highest_index").tolist() == [1]
    # nan_scores: NaN first (torch.sort) or refused
    assert N.nms(np.array([[0, 0, 1, 1], [5, 5, 6, 6.0]]), np.array([0.5, np.nan]), 0.5).tolist() == [1, 0]
    with pytest.raises(ValueError, match="NaN"):
        N.nms(B2, np.array([0.5, np.nan]), 0.5, nan_scores="reject")
    # plus_one: touching unit boxes [0,0,1,1] and [1,0,2,1] overlap by one pixel column: I = 1 * 2,
    # areas 4, IoU 2/6 = 1/3 > 0.3; continuous boxes do not overlap
    touch = np.array([[0, 0, 1, 1], [1, 0, 2, 1.0]])
    assert N.nms(touch, S2, 0.3).tolist() == [0, 1]
    assert N.nms(touch, S2, 0.3, plus_one=True).tolist() == [0]
    # corner_order: a flipped twin has IoU 0 as given (negative widths) and IoU 1 once sorted
    flip = np.array([[0, 0, 4, 4], [4, 4, 0, 0.0]])
    assert N.nms(flip, S2, 0.5).tolist() == [0, 1]
    assert N.nms(flip, S2, 0.5, corner_order="any").tolist() == [0]
    # threshold_dtype: float32 IoU 2/6 rounds to 0.33333334 > 1/3 (double), == float32(1/3)
    third = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], F32)
    assert N.nms(third, S2.astype(F32), 1 / 3).tolist() == [0]
    assert N.nms(third, S2.astype(F32), 1 / 3, threshold_dtype="working").tolist() == [0, 1]


def test_batched_nms_each_knob_override_reaches_the_answer():
    one = np.zeros(2, np.int64)
    assert N.batched_nms(B2, S2, one, 0.5).tolist() == [0, 1]
    assert N.batched_nms(B2, S2, one, 0.5, inclusive=True).tolist() == [0]
    twins, eq = np.array([[0, 0, 1, 1.0]] * 2), np.array([0.5, 0.5])
    assert N.batched_nms(twins, eq, one, 0.5).tolist() == [0]
    assert N.batched_nms(twins, eq, one, 0.5, ties="highest_index").tolist() == [1]
    assert N.batched_nms(np.array([[0, 0, 1, 1], [5, 5, 6, 6.0]]), np.array([0.5, np.nan]), one, 0.5).tolist() == [1, 0]
    with pytest.raises(ValueError, match="NaN"):
        N.batched_nms(B2, np.array([0.5, np.nan]), one, 0.5, nan_scores="reject")
    touch = np.array([[0, 0, 1, 1], [1, 0, 2, 1.0]])
    assert N.batched_nms(touch, S2, one, 0.3).tolist() == [0, 1]
    assert N.batched_nms(touch, S2, one, 0.3, plus_one=True).tolist() == [0]
    flip = np.array([[0, 0, 4, 4], [4, 4, 0, 0.0]])
    assert N.batched_nms(flip, S2, one, 0.5).tolist() == [0, 1]
    assert N.batched_nms(flip, S2, one, 0.5, corner_order="any").tolist() == [0]
    third = np.array([[0, 0, 2, 2], [1, 0, 3, 2]], F32)
    assert N.batched_nms(third, S2.astype(F32), one, 1 / 3).tolist() == [0]
    assert N.batched_nms(third, S2.astype(F32), one, 1 / 3, threshold_dtype="working").tolist() == [0, 1]
    # the same knobs through the coordinate trick
    assert N.batched_nms(B2, S2, one, 0.5, coordinate_trick=True, inclusive=True).tolist() == [0]
    assert N.batched_nms(flip, S2, one, 0.5, coordinate_trick=True, corner_order="any").tolist() == [0]
    # empty input: the empty order, int64
    e = N.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), 0.5)
    assert e.shape == (0,) and e.dtype == np.int64


def test_soft_nms_defaults_and_each_knob_override():
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60]], np.float64)     # IoU(0, 1) = 0.5
    s = np.array([0.9, 0.8, 0.0005])
    # defaults: Gaussian, sigma 0.5 (0.8 exp(-0.25/0.5)), score_threshold 0.001 drops box 2 (never
    # decayed, but tested against the threshold in the first pass: discard="any")
    r = N.soft_nms(b, s)
    assert r.indices.tolist() == [0, 1]
    np.testing.assert_allclose(r.scores, [0.9, 0.8 * np.exp(-0.5)], rtol=1e-15)
    # default iou_threshold 0.3 (linear: 0.5 > 0.3 decays to 0.8 * 0.5)
    assert N.soft_nms(b, s, method="linear").scores.tolist() == [0.9, 0.4]
    assert N.soft_nms(b, s, method="linear", iou_threshold=0.5).scores.tolist() == [0.9, 0.8]
    assert N.soft_nms(b, s, method="linear", iou_threshold=0.5, inclusive=True).scores.tolist() == [0.9, 0.4]
    # plus_one: IoU = 66/121 = 6/11
    r = N.soft_nms(b, s, plus_one=True)
    np.testing.assert_allclose(r.scores[1], 0.8 * np.exp(-(6 / 11) ** 2 / 0.5), rtol=1e-15)
    r = N.soft_nms(b, s, gaussian_denominator="2sigma")
    np.testing.assert_allclose(r.scores[1], 0.8 * np.exp(-0.25), rtol=1e-15)
    # discard="overlapping": the disjoint box below the threshold stays
    assert N.soft_nms(b, s, discard="overlapping").indices.tolist() == [0, 1, 2]
    # hard_above_threshold: IoU 0.5 > 0.3 cuts box 1
    assert N.soft_nms(b, s, hard_above_threshold=True).indices.tolist() == [0]
    # the working dtype: float32 only if both are float32
    assert N.soft_nms(b.astype(F32), s.astype(F32)).scores.dtype == F32
    assert N.soft_nms(b.astype(F32), s).scores.dtype == np.float64
    assert N.soft_nms(b, s.astype(F32)).scores.dtype == np.float64


@pytest.mark.parametrize("bshape, sshape", [((0, 2, 4), (0, 3, 2)), ((1, 2, 4), (1, 0, 2)), ((1, 0, 4), (1, 2, 0))])
def test_onnx_nms_no_batch_class_or_box_gives_an_empty_int64_table(bshape, sshape):
    got = N.onnx_non_max_suppression(np.zeros(bshape, F32), np.zeros(sshape, F32), 5, 0.5)
    assert got.shape == (0, 3) and got.dtype == np.int64
