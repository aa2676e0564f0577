"""Tests of refdet.boxes that pin what mutation testing found unpinned (issue 19): every argument
named in its error, every convention knob as an override, each format and each side of the image
separately. Hand-worked values; each test takes milliseconds."""
import numpy as np
import pytest

from refdet.boxes import box_area, box_convert, boxes_inside_image, clip_boxes_to_image, remove_small_boxes

F32 = np.float32
B = np.array([[0, 0, 2, 2.0]])


# ------------------------------------------------------------------------- arguments named in errors

def test_arguments_named_in_errors():
    fmts = "'xyxy', 'xywh', 'cxcywh', 'yxyx'"
    with pytest.raises(ValueError, match=rf"^`in_fmt` must be one of {fmts}; got 'x'$"):
        box_convert(B, "x", "xyxy")
    with pytest.raises(ValueError, match=rf"^`out_fmt` must be one of {fmts}; got 'q'$"):
        box_convert(B, "xyxy", "q")
    bool_boxes = r"^`boxes` must be an array of real numbers; got dtype bool"
    for f in (lambda b: box_convert(b, "xyxy", "xywh"), box_area, lambda b: clip_boxes_to_image(b, (3, 3)),
              lambda b: remove_small_boxes(b, 1.0), lambda b: boxes_inside_image(b, (3, 3))):
        with pytest.raises(TypeError, match=bool_boxes):
            f(B.astype(bool))
    with pytest.raises(TypeError, match=r"^box_area: `plus_one` must be a bool; got str 'x'$"):
        box_area(B, plus_one="x")
    with pytest.raises(TypeError, match=r"^clip_boxes_to_image: `plus_one` must be a bool; got str 'x'$"):
        clip_boxes_to_image(B, (3, 3), plus_one="x")
    with pytest.raises(ValueError, match=r"^`image_size` must be positive; got \(0, 3\)$"):
        clip_boxes_to_image(B, (0, 3))
    with pytest.raises(TypeError, match=r"^`min_size` must be a real number; got str 'a'$"):
        remove_small_boxes(B, "a")
    with pytest.raises(TypeError, match=r"^remove_small_boxes: `strict` must be a bool; got str 'x'$"):
        remove_small_boxes(B, 1.0, strict="x")
    with pytest.raises(TypeError, match=r"^remove_small_boxes: `plus_one` must be a bool; got str 'x'$"):
        remove_small_boxes(B, 1.0, plus_one="x")
    with pytest.raises(ValueError, match=r"^`image_size` must be a pair \(H, W\); got 1 values$"):
        boxes_inside_image(B, (3,))
    with pytest.raises(TypeError, match=r"^`allowed_border` must be a real number; got str 'x'$"):
        boxes_inside_image(B, (3, 3), allowed_border="x")


# ------------------------------------------------------------------------- conversions, one by one

# one box in every format: x1=1, y1=2, x2=7, y2=12 -> w=6, h=10, centre (4, 7)
FORMS = {"xyxy": [1, 2, 7, 12], "xywh": [1, 2, 6, 10], "cxcywh": [4, 7, 6, 10], "yxyx": [2, 1, 12, 7]}


@pytest.mark.parametrize("dtype", [np.float64, F32])
@pytest.mark.parametrize("src", sorted(FORMS))
@pytest.mark.parametrize("dst", sorted(FORMS))
def test_every_conversion_golden(src, dst, dtype):
    b = np.array([FORMS[src]], dtype)
    got = box_convert(b, src, dst)
    assert got.dtype == dtype
    assert got.tolist() == [FORMS[dst]]
    assert not np.shares_memory(got, b)


def test_same_format_is_a_copy():
    b = np.array([[1, 2, 7, 12.0]])
    for f in FORMS:
        out = box_convert(b, f, f)
        out[0, 0] = -1
        assert b[0, 0] == 1


# ------------------------------------------------------------------------- area, clip, small, inside

def test_box_area_override_and_axes():
    b = np.array([[1, 2, 7, 12.0]])                         # 6 x 10
    assert box_area(b).tolist() == [60]
    assert box_area(b, plus_one=True).tolist() == [77]      # 7 x 11
    assert box_area(b, convention="caffe", plus_one=False).tolist() == [60]
    assert box_area(b.astype(F32), plus_one=True).dtype == F32


def test_clip_each_axis_to_its_own_side():
    b = np.array([[-3, -4, 50, 60], [5, 6, 7, 8]], F32)
    # (H, W) = (20, 30): x in [0, 30], y in [0, 20]
    got = clip_boxes_to_image(b, (20, 30))
    assert got.dtype == F32 and got.tolist() == [[0, 0, 30, 20], [5, 6, 7, 8]]
    # legacy: x in [0, 29], y in [0, 19]
    assert clip_boxes_to_image(b, (20, 30), plus_one=True).tolist() == [[0, 0, 29, 19], [5, 6, 7, 8]]
    assert clip_boxes_to_image(b, (20, 30), convention="caffe").tolist() == [[0, 0, 29, 19], [5, 6, 7, 8]]
    assert clip_boxes_to_image(b, (20, 30), convention="caffe", plus_one=False).tolist() == [[0, 0, 30, 20],
                                                                                             [5, 6, 7, 8]]


def test_remove_small_boxes_each_axis_and_each_override():
    # widths/heights: box 0 is 2 x 3, box 1 3 x 2, box 2 3 x 3
    b = np.array([[0, 0, 2, 3], [0, 0, 3, 2], [0, 0, 3, 3.0]])
    assert remove_small_boxes(b, 2.0).tolist() == [0, 1, 2]                  # >= 2 on both axes
    assert remove_small_boxes(b, 2.5).tolist() == [2]                        # each axis tested
    assert remove_small_boxes(b, 2.0, strict=True).tolist() == [2]           # > 2
    assert remove_small_boxes(b, 3.0, plus_one=True).tolist() == [0, 1, 2]   # 3 x 4, 4 x 3, 4 x 4
    assert remove_small_boxes(b, 3.0, plus_one=True, strict=True).tolist() == [2]
    assert remove_small_boxes(b, 3.5, plus_one=True).tolist() == [2]
    assert remove_small_boxes(b, 2.0, convention="detectron2", strict=False).tolist() == [0, 1, 2]
    assert remove_small_boxes(b, 3.0, convention="caffe", plus_one=False).tolist() == [2]
    assert remove_small_boxes(b, 2.0).dtype == np.int64


def test_remove_small_boxes_compares_in_the_boxes_dtype():
    # float32(0.7) = 0.69999999 < 0.7: torch compares the float32 width with float32(0.7) and keeps it
    b = np.array([[0, 0, 0.7, 0.7]], F32)
    assert remove_small_boxes(b, 0.7).tolist() == [0]
    # the same width in float64 is compared with the double 0.7, and falls short
    assert remove_small_boxes(b.astype(np.float64), 0.7).tolist() == []
    assert remove_small_boxes(b.astype(np.float64), float(F32(0.7))).tolist() == [0]


@pytest.mark.parametrize("side, shift", [(0, [-0.5, 0, 0, 0]), (1, [0, -0.5, 0, 0]), (2, [0, 0, 0.5, 0]),
                                         (3, [0, 0, 0, 0.5])])
def test_inside_image_each_side(side, shift):
    # image (H, W) = (10, 20); the box [0, 0, 19.5, 9.5] is inside; moving one side out by 0.5
    base = np.array([0, 0, 19.5, 9.5])
    b = np.array([base, base + shift])
    assert boxes_inside_image(b, (10, 20)).tolist() == [True, False]
    # a border of 0.5: x1 = -0.5 is inside (>=), x2 = 20 is inside (20 < 20 + 0.5) (y likewise)
    assert boxes_inside_image(b, (10, 20), allowed_border=0.5).tolist() == [True, True]
    # a border of 0.25: x1 = -0.5 < -0.25 is out; x2 = 20 < 20.25 is in
    assert boxes_inside_image(b, (10, 20), allowed_border=0.25).tolist() == [True, side >= 2]
    # the far edge is strict: ending exactly on W + border is outside
    on = np.array([[0, 0, 20, 9], [0, 0, 19, 10]])
    assert boxes_inside_image(on, (10, 20)).tolist() == [False, False]
    for border in (None, -1, 0.0):
        got = boxes_inside_image(on, (10, 20), allowed_border=border)
        assert got.dtype == bool and got.shape == (2,)
        assert got.tolist() == [border is not None and border < 0 or border is None] * 2
