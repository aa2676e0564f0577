"""Tests of refdet.boxes: TV17 golden, conversion round trips, conventions, torchvision differentials."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.boxes import (BOX_FORMATS, box_area, box_convert, boxes_inside_image, clip_boxes_to_image,
                          remove_small_boxes)
from refdet.testing import strategies as rst
from tests.conftest import readonly

F32 = np.float32

# TV17 (SPEC-conventions §11)
TV17 = np.array([[-5, -5, 20, 30], [90, 90, 120, 130], [10, 10, 10.0005, 50]], dtype=F32)


from tests._torchutil import _bits_equal, _torch_ops as _torch  # noqa: E402


# --------------------------------------------------------------------------------------- golden

def test_tv17_clip_and_min_size():
    clipped = clip_boxes_to_image(TV17, (100, 100))
    # x to [0, W], y to [0, H]: -5 -> 0, 120 -> 100, 130 -> 100; the thin box is untouched
    assert clipped.dtype == F32
    np.testing.assert_array_equal(clipped, np.array([[0, 0, 20, 30], [90, 90, 100, 100],
                                                     [10, 10, 10.0005, 50]], F32))
    # float32(10.0005) - 10 = 0.00049972534 (the float32 spacing near 10 is 2**-20 = 9.5e-7)
    assert clipped[2, 2] - clipped[2, 0] == F32(0.00049972534)
    # width 0.0004997 < 1e-3: removed; the other two are kept
    np.testing.assert_array_equal(remove_small_boxes(clipped, 1e-3), [0, 1])


def test_clip_legacy_plus_one():
    # py-faster-rcnn clips x to [0, W - 1] = [0, 99]
    got = clip_boxes_to_image(TV17.astype(float), (100, 100), convention="caffe")
    np.testing.assert_array_equal(got[1], [90, 90, 99, 99])


def test_remove_small_boxes_threshold_exactly_hit():
    b = np.array([[0, 0, 2, 2], [0, 0, 2, 3], [0, 0, 1.5, 3]], dtype=float)
    # torchvision keeps w >= 2 (inclusive); detectron2 and mmdet keep w > 2 (strict)
    np.testing.assert_array_equal(remove_small_boxes(b, 2.0), [0, 1])
    np.testing.assert_array_equal(remove_small_boxes(b, 2.0, convention="detectron2"), [])
    # +1 widths: the 1.5-wide box is 2.5 wide and passes
    np.testing.assert_array_equal(remove_small_boxes(b, 2.0, convention="caffe"), [0, 1, 2])


def test_box_area_conventions():
    b = np.array([[0, 0, 10, 5], [3, 3, 3, 3]], dtype=float)
    np.testing.assert_array_equal(box_area(b), [50, 0])
    np.testing.assert_array_equal(box_area(b, convention="caffe"), [11 * 6, 1])  # a point is 1 pixel


def test_box_area_float16_does_not_overflow():
    b = np.array([[0, 0, 300, 300]], dtype=np.float16)
    got = box_area(b)
    assert got.dtype == F32 and got[0] == 90000  # > 65504 = float16 max


def test_convert_golden():
    b = np.array([[10, 20, 30, 60]], dtype=float)
    np.testing.assert_array_equal(box_convert(b, "xyxy", "xywh"), [[10, 20, 20, 40]])
    # centre ((10 + 30) / 2, (20 + 60) / 2) = (20, 40)
    np.testing.assert_array_equal(box_convert(b, "xyxy", "cxcywh"), [[20, 40, 20, 40]])
    np.testing.assert_array_equal(box_convert(b, "xyxy", "yxyx"), [[20, 10, 60, 30]])


def test_boxes_inside_image_far_edge_strict():
    b = np.array([[0, 0, 100, 50], [0, 0, 99.5, 50], [-1, 0, 10, 10]], dtype=float)
    np.testing.assert_array_equal(boxes_inside_image(b, (50, 100)), [False, False, False])
    np.testing.assert_array_equal(boxes_inside_image(b, (51, 100)), [False, True, False])
    np.testing.assert_array_equal(boxes_inside_image(b, (51, 100), allowed_border=1), [True, True, True])
    np.testing.assert_array_equal(boxes_inside_image(b, (1, 1), allowed_border=-1), [True, True, True])


def test_empty_and_readonly():
    e = np.zeros((0, 4))
    assert box_convert(e, "xyxy", "cxcywh").shape == (0, 4)
    assert box_area(e).shape == (0,)
    assert remove_small_boxes(e, 1.0).dtype == np.int64
    r = readonly(TV17)
    clip_boxes_to_image(r, (100, 100))
    out = box_convert(r, "xyxy", "xyxy")
    assert out is not r and out.flags.writeable


# ---------------------------------------------------------------------------------- properties

@given(rst.box_sets(max_n=20), st.sampled_from(BOX_FORMATS), st.sampled_from([np.float64, F32]))
def test_round_trip_is_exact_on_the_grid(boxes, fmt, dtype):
    # coordinates are multiples of 1/4 below 400: sums, halves and differences are exact in
    # float32 and float64, so the round trip gives the same bits
    b = boxes.astype(dtype)
    there = box_convert(b, "xyxy", fmt)
    assert there.dtype == dtype
    np.testing.assert_array_equal(box_convert(there, fmt, "xyxy"), b)


@given(rst.box_sets(max_n=20, grid=None), st.sampled_from(BOX_FORMATS), st.sampled_from(BOX_FORMATS))
def test_round_trip_any_floats_close(boxes, f1, f2):
    back = box_convert(box_convert(box_convert(boxes, "xyxy", f1), f1, f2), f2, "xyxy")
    np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-12 * (1 + np.abs(boxes).max(initial=0)))


@given(rst.box_sets(max_n=20), rst.image_sizes(max_side=300))
def test_clip_idempotent_and_inside(boxes, size):
    c = clip_boxes_to_image(boxes, size)
    np.testing.assert_array_equal(clip_boxes_to_image(c, size), c)
    assert np.all(c[:, 0::2] >= 0) and np.all(c[:, 0::2] <= size[1])
    assert np.all(c[:, 1::2] >= 0) and np.all(c[:, 1::2] <= size[0])
    assert np.all(box_area(c) <= box_area(boxes) + 0)  # clipping a valid box never grows it


# ---------------------------------------------------------------------- torchvision differentials

_TV_FORMATS = ["xyxy", "xywh", "cxcywh"]  # torchvision has no yxyx


@given(rst.box_sets(max_n=20, dtype=F32), st.sampled_from(_TV_FORMATS), st.sampled_from(_TV_FORMATS))
def test_convert_float32_bit_exact_vs_torchvision(boxes, f1, f2):
    torch, ops = _torch()
    src = box_convert(boxes, "xyxy", f1)
    _bits_equal(box_convert(src, f1, f2), ops.box_convert(torch.from_numpy(src), f1, f2).numpy())


@given(rst.box_sets(max_n=20, grid=None), st.sampled_from(_TV_FORMATS), st.sampled_from(_TV_FORMATS))
def test_convert_float64_vs_torchvision(boxes, f1, f2):
    torch, ops = _torch()
    src = box_convert(boxes, "xyxy", f1)
    _bits_equal(box_convert(src, f1, f2), ops.box_convert(torch.from_numpy(src), f1, f2).numpy())


@given(rst.box_sets(max_n=20, dtype=F32, grid=None))
def test_area_vs_torchvision(boxes):
    torch, ops = _torch()
    _bits_equal(box_area(boxes), ops.box_area(torch.from_numpy(boxes)).numpy())
    b64 = boxes.astype(float)
    _bits_equal(box_area(b64), ops.box_area(torch.from_numpy(b64)).numpy())


@given(rst.box_sets(max_n=20, dtype=F32, low=-50, high=400), rst.image_sizes(max_side=300))
def test_clip_vs_torchvision(boxes, size):
    torch, ops = _torch()
    _bits_equal(clip_boxes_to_image(boxes, size), ops.clip_boxes_to_image(torch.from_numpy(boxes), size).numpy())


@given(rst.box_sets(max_n=20, dtype=F32, grid=0.125), st.sampled_from([0.0, 1e-3, 0.125, 0.25, 1.0, 3.0]))
def test_remove_small_boxes_vs_torchvision(boxes, min_size):
    torch, ops = _torch()
    # the grid makes widths land exactly on the thresholds 0.125, 0.25, 1 and 3 (inclusive test)
    want = ops.remove_small_boxes(torch.from_numpy(boxes), min_size).numpy()
    got = remove_small_boxes(boxes, min_size)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
