"""Branches of refdet.anchors.ssd that mutation testing (issue 19, ``python -m mutation run anchors.ssd``)
found unpinned: SSD default boxes under every knob, bit for bit against the loop reference
:func:`refdet.reference.anchors.ssd_default_boxes`, the scale rules worked by hand, the errors.
"""
import numpy as np
import pytest

import refdet
from refdet.reference import anchors as R

from tests._layouts import assert_bits_equal


# ---------------------------------------------------------------------------------------------------
# SSD default boxes: every knob against the loop reference, bit for bit
# ---------------------------------------------------------------------------------------------------

_SSD_IMG = (300, 240)                                   # not square: W and H scalings differ
_SSD_FS = [(5, 4), (3, 3), (1, 2)]
_SSD_AR = [[2.0], [2.0, 1.0, 3.0], [0.5]]


@pytest.mark.parametrize("layout", ["pairs", "tf"])
@pytest.mark.parametrize("clip_mode", ["wh", "corners"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ssd_default_boxes_equal_reference_bits_every_knob(layout, clip_mode, dtype):
    scales = [0.1, 0.37, 0.81, 1.13]                    # 1.13 > 1: the wh clip acts on the last level
    for clip, size_reference, skip, reduce_lowest, steps, normalized, interp in [
            (True, "image", False, False, None, False, 1.0),
            (True, "min_side", True, True, [7.3, 60, 300], True, 2.0),
            (False, "min_side", True, False, None, False, 0.0),
            (False, "image", False, True, [8, 16, 150], True, 1.0)]:
        kw = dict(steps=steps, clip=clip, clip_mode=clip_mode, size_reference=size_reference,
                  normalized=normalized, dtype=dtype)
        shape = dict(layout=layout, skip_unit_ratio=skip, reduce_lowest=reduce_lowest,
                     interpolated_ratio=interp)
        got = refdet.ssd_default_boxes(_SSD_IMG, _SSD_FS, scales=scales, aspect_ratios=_SSD_AR, **kw, **shape)
        want = R.ssd_default_boxes(_SSD_IMG, _SSD_FS, scales, _SSD_AR, **kw, **shape)
        assert_bits_equal(got, want, f"{kw} {shape}")
        yx = refdet.ssd_default_boxes(_SSD_IMG, _SSD_FS, scales=scales, aspect_ratios=_SSD_AR, box_format="yxyx",
                                      **kw, **shape)
        assert_bits_equal(yx, want[:, [1, 0, 3, 2]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ssd_default_boxes_pixel_sizes_equal_reference_bits(dtype):
    """Caffe PriorBox pixel sizes (with and without max sizes) and a cell offset other than 0.5."""
    mins, maxs = [30.0, 61.5, 111.0], [61.5, 111.0, 162.0]
    for mx in (maxs, None):
        for clip_mode in ("wh", "corners"):
            got = refdet.ssd_default_boxes(_SSD_IMG, _SSD_FS, aspect_ratios=_SSD_AR, min_sizes=mins, max_sizes=mx,
                                           clip_mode=clip_mode, offset=0.25, dtype=dtype, convention="caffe")
            want = R.ssd_default_boxes(_SSD_IMG, _SSD_FS, None, _SSD_AR, min_sizes=mins, max_sizes=mx,
                                       clip_mode=clip_mode, offset=0.25, dtype=dtype, skip_unit_ratio=True)
            assert_bits_equal(got, want, f"max_sizes={mx} {clip_mode}")


def test_ssd_scale_rules_by_hand():
    """scales=None: the linear rule min + (max - min) * k / (L - 1) then 1.0; one level [min, max]; L
    scales get 1.0 appended; the percent rule uses the pixel sizes of ssd_sizes_from_ratios."""
    lin = [0.2 + 0.7 * k / 2.0 for k in range(3)] + [1.0]              # 0.2, 0.55, 0.9, 1.0
    got = refdet.ssd_default_boxes((100, 100), [2, 2, 1], aspect_ratios=[[], [], []], normalized=True, clip=False)
    want = R.ssd_default_boxes((100, 100), [(2, 2), (2, 2), (1, 1)], lin, [[], [], []], normalized=True, clip=False)
    assert_bits_equal(got, want)
    one = refdet.ssd_default_boxes((100, 100), [1], aspect_ratios=[[]], normalized=True, clip=False,
                                   min_ratio=0.3, max_ratio=0.6)
    s = (0.3 * 0.6) ** 0.5
    np.testing.assert_allclose(one, [[0.35, 0.35, 0.65, 0.65], [0.5 - s / 2, 0.5 - s / 2, 0.5 + s / 2, 0.5 + s / 2]],
                               rtol=0, atol=1e-15)
    short = refdet.ssd_default_boxes((100, 100), [1, 1], scales=[0.3, 0.6], aspect_ratios=[[], []], normalized=True,
                                     clip=False)
    np.testing.assert_allclose(short[3], [0.5 - 0.6 ** 0.5 / 2] * 2 + [0.5 + 0.6 ** 0.5 / 2] * 2, atol=1e-15)
    # percent rule, 3 levels of a 200 x 300 image (D = min side 200): lo 20, hi 90, step 70
    mins, maxs = refdet.ssd_sizes_from_ratios(200, 3, 0.2, 0.9)
    assert (mins, maxs) == ([20, 40, 180], [40, 180, 320])
    pc = refdet.ssd_default_boxes((200, 300), [1, 1, 1], aspect_ratios=[[], [], []], convention="caffe", clip=False)
    px = refdet.ssd_default_boxes((200, 300), [1, 1, 1], aspect_ratios=[[], [], []], convention="caffe", clip=False,
                                  min_sizes=mins, max_sizes=maxs)
    assert_bits_equal(pc, px)


def test_ssd_sizes_from_ratios_by_hand():
    assert refdet.ssd_sizes_from_ratios(300, 6, 0.2, 0.9) == ([30, 60, 111, 162, 213, 264],
                                                              [60, 111, 162, 213, 264, 315])
    assert refdet.ssd_sizes_from_ratios(300, 6, 0.15, 0.9) == ([21, 45, 99, 153, 207, 261],
                                                               [45, 99, 153, 207, 261, 315])
    # int(0.29 * 100) = 28 (mmdet's int), 4 levels: step (90 - 28) // 2 = 31 -> 28, 59, 90
    assert refdet.ssd_sizes_from_ratios(512, 4, 0.29, 0.9) == ([512 * 14 // 100, 143, 302, 460],
                                                               [143, 302, 460, 619])
    with pytest.raises(ValueError, match=r"^`num_levels` = 5 needs `max_ratio` - `min_ratio` of at least 3 percent"):
        refdet.ssd_sizes_from_ratios(300, 5, 0.2, 0.22)
    # lo 20, hi 31, step 11 // 4 = 2: range(20, 32, 2) has 6 entries, so 7 levels, not 6
    with pytest.raises(ValueError, match=r"^the percent rule gives 7 levels for ratios \(0\.2, 0\.31\), not "
                                         r"`num_levels` = 6$"):
        refdet.ssd_sizes_from_ratios(300, 6, 0.2, 0.31)
    for arg, kw in [("input_size", dict(input_size=0)), ("num_levels", dict(num_levels=2)),
                    ("min_ratio", dict(min_ratio=1.5)), ("max_ratio", dict(max_ratio=-0.1))]:
        args = dict(input_size=300, num_levels=6, min_ratio=0.2, max_ratio=0.9)
        args.update(kw)
        with pytest.raises(ValueError, match=f"^`{arg}`"):
            refdet.ssd_sizes_from_ratios(**args)


@pytest.mark.parametrize("kw, err, msg", [
    (dict(aspect_ratios="2"), TypeError, r"^`aspect_ratios` must be a list of per-level lists of numbers; got str$"),
    (dict(aspect_ratios=[[2.0]]), ValueError, r"^`aspect_ratios` must have one entry per feature map \(2\); got 1$"),
    (dict(aspect_ratios=[[2.0], [-1.0]]), ValueError, r"^`aspect_ratios\[1\]` must be positive"),
    (dict(aspect_ratios=[2.0, -1.0]), ValueError, r"^`aspect_ratios` must be positive"),
    (dict(steps=[8]), ValueError, r"^`steps` must have one entry per feature map \(2\); got 1$"),
    (dict(steps=[8, 0]), ValueError, r"^`steps` must be positive"),
    (dict(scales=[0.1, 0.2, 0.3, 0.4]), ValueError, r"^`scales` must have 3 \(or 2\) entries for 2 feature maps; "
                                                    r"got 4$"),
    (dict(min_sizes=[30]), ValueError, r"^`min_sizes` must have one entry per feature map \(2\); got 1$"),
    (dict(min_sizes=[30, 60], max_sizes=[60]), ValueError,
     r"^`max_sizes` must have one entry per feature map \(2\); got 1$"),
    (dict(clip=1), TypeError, r"^`clip` must be a bool; got 1$"),
    (dict(box_format="xywh"), ValueError, r"`box_format`"),
    (dict(offset="half"), TypeError, r"^`offset` must be a real number"),
    (dict(interpolated_ratio=None), TypeError, r"^`interpolated_ratio` must be a real number"),
    (dict(min_ratio="0.2"), TypeError, r"^`min_ratio` must be a real number"),
    (dict(max_ratio=None), TypeError, r"^`max_ratio` must be a real number"),
    (dict(normalized=1), TypeError, r"`normalized`"),
])
def test_ssd_default_boxes_errors_name_the_argument(kw, err, msg):
    args = dict(aspect_ratios=[[2.0], [2.0]])
    args.update(kw)
    with pytest.raises(err, match=msg):
        refdet.ssd_default_boxes((300, 300), [3, 2], **args)


def test_ssd_default_boxes_allocation_cap():
    """4 boxes per cell (square, s', wide, tall) on 3 x 3 and 2 x 2: 36 + 16 = 52 boxes, 208 elements."""
    kw = dict(aspect_ratios=[[2.0], [2.0]], scales=[0.2, 0.5, 0.8])
    assert refdet.ssd_default_boxes((300, 300), [3, 2], max_elements=208, **kw).shape == (52, 4)
    with pytest.raises(ValueError, match=r"^`feature_sizes` asks for 208 elements \(default boxes x 4 coordinates "
                                         r"up to level 1, "):
        refdet.ssd_default_boxes((300, 300), [3, 2], max_elements=207, **kw)


def test_ssd_flat_empty_ratio_list_is_every_levels():
    """A flat (even empty) ratio list is every level's: [] gives the two squares per cell only."""
    kw = dict(scales=[0.2, 0.5, 0.8])
    np.testing.assert_array_equal(refdet.ssd_default_boxes((300, 300), [3, 2], aspect_ratios=[], **kw),
                                  refdet.ssd_default_boxes((300, 300), [3, 2], aspect_ratios=[[], []], **kw))
    assert refdet.ssd_default_boxes((300, 300), [3, 2], aspect_ratios=[], **kw).shape == ((9 + 4) * 2, 4)


def test_ssd_percent_rule_arguments():
    """size_rule='percent' under any profile; the percent rule's own min_ratio / max_ratio (not 0.9)."""
    kw = dict(aspect_ratios=[[], [], []], clip=False)
    pc = refdet.ssd_default_boxes((200, 300), [1, 1, 1], size_rule="percent", min_ratio=0.15, max_ratio=0.95, **kw)
    mins, maxs = refdet.ssd_sizes_from_ratios(200, 3, 0.15, 0.95)
    px = refdet.ssd_default_boxes((200, 300), [1, 1, 1], min_sizes=mins, max_sizes=maxs, **kw)
    assert_bits_equal(pc, px)
    lin = refdet.ssd_default_boxes((200, 300), [1, 1, 1], min_ratio=0.15, max_ratio=0.95, **kw)
    assert not np.array_equal(lin, pc)
    for arg in ("min_ratio", "max_ratio"):
        with pytest.raises(ValueError, match=f"^`{arg}`"):
            refdet.ssd_default_boxes((200, 300), [1, 1, 1], convention="caffe", **{arg: 1.5}, **kw)
    for arg in ("min_sizes", "max_sizes"):
        sizes = dict(min_sizes=[20, 40, 60], max_sizes=[40, 60, 80])
        sizes[arg] = [20, -40, 60]
        with pytest.raises(ValueError, match=f"^`{arg}` must be positive"):
            refdet.ssd_default_boxes((200, 300), [1, 1, 1], **sizes, **kw)
    with pytest.raises(ValueError, match="^`scales` must be positive"):
        refdet.ssd_default_boxes((200, 300), [1, 1, 1], scales=[0.2, 0.4, -0.6, 0.8], **kw)


def test_ssd_sizes_from_ratios_edges():
    assert refdet.ssd_sizes_from_ratios(300, 6) == ([30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315])
    assert refdet.ssd_sizes_from_ratios(1, 3, 0.2, 0.9) == ([0, 0, 0], [0, 0, 1])          # input_size 1 is valid
    # int(0.905 * 100) = 90 (not 91): lo 20, hi 90, step 70
    assert refdet.ssd_sizes_from_ratios(300, 3, 0.2, 0.905) == ([30, 60, 270], [60, 270, 480])
    # a step of exactly 1 percent is allowed
    assert refdet.ssd_sizes_from_ratios(100, 5, 0.2, 0.23) == ([10, 20, 21, 22, 23], [20, 21, 22, 23, 24])
    # hi - lo + 1 a multiple of the step: r stops at hi, maxs has as many entries as mins
    assert refdet.ssd_sizes_from_ratios(100, 4, 0.2, 0.25) == ([10, 20, 22, 24], [20, 22, 24, 26])


def test_caffe_skips_a_unit_ratio_within_1e_6():
    kw = dict(scales=[0.2, 0.5], convention="caffe", clip=False)
    n = [len(refdet.ssd_default_boxes((300, 300), [1], aspect_ratios=[[2.0, r]], **kw)) for r in
         (1.0, 1.0 + 5e-7, 1.0 - 5e-7, 1.0 + 2e-6, 1.0 - 2e-6)]
    assert n == [4, 4, 4, 6, 6]
