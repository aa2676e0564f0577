"""Branches of refdet.anchors that mutation testing (issue 19, ``python -m mutation run anchors``) found
unpinned: each test here fails on a mutant that the other anchor tests let through.

The loop reference :mod:`refdet.reference.anchors` is the specification the vectorised code is held to
bit for bit (signed zeros and dtype included); hand-worked values pin the branches the reference shares.
"""
import itertools

import numpy as np
import pytest

import refdet
from refdet.anchors import cell as cell_mod
from refdet.reference import anchors as R

from tests._layouts import assert_bits_equal


# ---------------------------------------------------------------------------------------------------
# cell anchors: every knob value x float32/float64 x centre, against the loop reference, bit for bit
# ---------------------------------------------------------------------------------------------------

# 0.5 and 1.0 make signed zeros: torchvision's round(-0.25) = -0.0 (torch.round keeps the sign); with
# plus_one a size-1 square has w - 1 = 0 and the legacy mmdet corner 0 - 0.5 * 0 = +0.0 after centring.
# 33.3 and 250.7 are not float32-exact, so float32 arithmetic differs from float64-then-cast.
_SIZES = (0.5, 1.0, 33.3, 250.7)
_RATIOS = (0.37, 1.0, 2.9)


@pytest.mark.parametrize("rounding", cell_mod.ROUNDINGS)
@pytest.mark.parametrize("ratio_def", cell_mod.RATIO_DEFS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cell_anchors_equal_reference_bits_every_knob(rounding, ratio_def, dtype):
    for order, plus_one, center in itertools.product(cell_mod.ORDERS, (False, True), (0.0, 1.0, 7.5)):
        kw = dict(ratio_def=ratio_def, order=order, rounding=rounding, plus_one=plus_one, center=center)
        got = refdet.cell_anchors(_SIZES, _RATIOS, base_size=16, dtype=dtype, **kw)
        want = R.cell_anchors(_SIZES, _RATIOS, base_size=16.0, dtype=dtype, **kw)
        assert_bits_equal(got, want, f"cell_anchors {kw} {np.dtype(dtype).name}")


def test_cell_anchors_center_shifts_every_rounding_but_legacy():
    """``center`` adds to every corner (not only under mmdet_legacy), including a centre of 1."""
    for rounding in ("none", "torchvision", "pfr"):
        base = refdet.cell_anchors((32, 45), (0.5, 2.0), rounding=rounding, plus_one=rounding == "pfr")
        for c in (1.0, 7.5):
            got = refdet.cell_anchors((32, 45), (0.5, 2.0), rounding=rounding, plus_one=rounding == "pfr",
                                      center=c)
            np.testing.assert_array_equal(got, base + c)


def test_cell_anchor_signed_zeros():
    """torchvision keeps round(-0.25) = -0.0 at centre 0 (nothing is added); mmdet v1's legacy corner of a
    zero-extent anchor is 0 - 0.5 * (1 - 1) = +0.0 (the centre is added before rounding)."""
    tv = refdet.cell_anchors((0.5,), (1.0,))
    assert np.signbit(tv).tolist() == [[True, True, False, False]]
    legacy = refdet.cell_anchors((1.0,), (1.0,), rounding="mmdet_legacy", plus_one=True)
    assert legacy.tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert not np.signbit(legacy).any()


def test_cell_anchors_pfr_ratio_definitions():
    """py-faster-rcnn's rounding with r = w / h is the h / w rounding of 1 / r (TF-style ratios 2 -> 0.5)."""
    wh = refdet.cell_anchors((128, 256), (2.0, 4.0), rounding="pfr", plus_one=True, ratio_def="w_over_h")
    hw = refdet.cell_anchors((128, 256), (0.5, 0.25), convention="caffe")
    np.testing.assert_array_equal(wh, hw)
    # the 2:1 wide box of 16 * 8 = 128: ws = round(sqrt(256 / 0.5)) = 23, hs = round(23 * 0.5) = 12,
    # times 8: 184 x 96, corners -+ (w - 1) / 2
    np.testing.assert_array_equal(wh[0], [-91.5, -47.5, 91.5, 47.5])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_anchors_keep_dtype_every_rounding(dtype):
    for rounding in cell_mod.ROUNDINGS:
        got = refdet.cell_anchors((33.3,), (0.37, 2.9), rounding=rounding, center=3.0, dtype=dtype)
        assert got.dtype == np.dtype(dtype), rounding


@pytest.mark.parametrize("arg, kw", [
    ("base_size", dict(base_size=0)),
    ("ratios", dict(ratios=(0.5, -1.0))),
    ("scales", dict(scales=(8, 0))),
    ("sizes", dict(sizes=(32, -64))),
])
def test_faster_rcnn_anchors_errors_name_the_argument(arg, kw):
    with pytest.raises(ValueError, match=f"^`{arg}`"):
        refdet.faster_rcnn_anchors(**kw)


def test_faster_rcnn_anchors_non_integer_base():
    """A base window of 12.5: w = (12.5 - 1) + 1, centre 0.5 * (w - 1) = 5.75, as generate_anchors."""
    got = refdet.faster_rcnn_anchors(12.5, (1.0,), (2.0,))
    # ws = round(sqrt(12.5**2)) = round(12.5) = 12 (half-to-even), hs = 12; times 2: 24 -> 5.75 -+ 11.5
    np.testing.assert_array_equal(got, [[-5.75, -5.75, 17.25, 17.25]])


# ---------------------------------------------------------------------------------------------------
# grid anchors: float32 shifts rounded once, TF's offset rule, argument names in the errors
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0.0, 0.5, "legacy"])
def test_grid_anchors_float32_equal_reference_bits(offset):
    """Non-representable strides (16.3, 7.1) and fractional cell corners: each centre is computed in
    float64, rounded once to float32, then added in float32 (the loop reference, torchvision's order)."""
    cell = refdet.cell_anchors((33.3, 50.1), (0.37, 2.9), rounding="none", dtype=np.float32)
    got = refdet.grid_anchors(cell, (5, 7), (16.3, 7.1), offset=offset)
    want = R.grid_anchors(cell, (5, 7), (16.3, 7.1), offset=offset)
    assert_bits_equal(got, want)


def test_tf_divisible_offset_of_a_one_pixel_side():
    """TF MultiscaleGridAnchorGenerator: offset stride / 2 when the side divides by the stride *or is 1*."""
    anc, _ = refdet.pyramid_anchors((1, 32), [(1, 2)], [16], [(8,)], [1.0], convention="tf")
    np.testing.assert_array_equal(anc, [[4.0, 4.0, 12.0, 12.0], [20.0, 4.0, 28.0, 12.0]])
    anc, _ = refdet.pyramid_anchors((2, 30), [(1, 2)], [16], [(8,)], [1.0], convention="tf")
    np.testing.assert_array_equal(anc, [[-4.0, -4.0, 4.0, 4.0], [12.0, -4.0, 20.0, 4.0]])


def test_grid_anchors_errors_name_the_argument():
    cell = refdet.cell_anchors((32,), (0.5, 1.0, 2.0))
    with pytest.raises(ValueError, match=r"^`offset` 'tf_divisible' needs the image size \(use pyramid_anchors\)$"):
        refdet.grid_anchors(cell, 4, 16, offset="tf_divisible")
    with pytest.raises(ValueError, match=r"^`offset` must be a number, 'legacy' or 'tf_divisible'; got 'centre'$"):
        refdet.grid_anchors(cell, 4, 16, offset="centre")
    with pytest.raises(TypeError, match="^`offset` must be a real number"):
        refdet.grid_anchors(cell, 4, 16, offset=[0.5])
    with pytest.raises(ValueError, match="^`cell` must have shape"):
        refdet.grid_anchors(cell[:, :3], 4, 16)
    with pytest.raises(ValueError, match=r"^`feature_size\[0\]` must be an int or an \(H, W\) pair"):
        refdet.grid_anchors(cell, (4, 4, 4), 16)


def test_grid_anchors_allocation_cap_counts_every_coordinate():
    cell = refdet.cell_anchors((32,), (0.5, 1.0, 2.0))                  # A = 3
    assert refdet.grid_anchors(cell, (10, 20), 16, max_elements=2400).shape == (600, 4)
    msg = r"^`feature_size` asks for 2,400 elements \(10 x 20 cells x 3 anchors x 4 coordinates, "
    with pytest.raises(ValueError, match=msg):
        refdet.grid_anchors(cell, (10, 20), 16, max_elements=2399)


# ---------------------------------------------------------------------------------------------------
# pyramid anchors: the per-level argument grammar and the centre-offset option, named in every error
# ---------------------------------------------------------------------------------------------------

def _pyr(**kw):
    args = dict(image_size=(64, 64), feature_sizes=[(4, 4), (2, 2)], strides=[16, 32], sizes=[[32], [64]],
                aspect_ratios=[1.0])
    args.update(kw)
    return refdet.pyramid_anchors(**args)


@pytest.mark.parametrize("kw, err, msg", [
    (dict(center_offset="middle"), ValueError,
     r"`center_offset` must be a number or one of 'legacy', 'tf_divisible'; got 'middle'"),
    (dict(center_offset=[0.5]), TypeError, r"`center_offset` must be a real number"),
    (dict(sizes=True), TypeError, r"^`sizes` must be a list of numbers or of per-level lists; got bool$"),
    (dict(sizes="32"), TypeError, r"^`sizes` must be a list of numbers or of per-level lists; got str$"),
    (dict(sizes=-32.0), ValueError, r"^`sizes` must be positive"),
    (dict(sizes=[]), ValueError, r"^`sizes` must not be empty"),
    (dict(sizes=[[32], [64], [128]]), ValueError, r"^`sizes` must have one entry per feature map \(2\); got 3$"),
    (dict(sizes=[[32], [-64]]), ValueError, r"^`sizes\[1\]` must be positive"),
    (dict(aspect_ratios=[[1.0], [0.0]]), ValueError, r"^`aspect_ratios\[1\]` must be positive"),
])
def test_pyramid_anchors_errors_name_the_argument(kw, err, msg):
    with pytest.raises(err, match=msg):
        _pyr(**kw)


def test_pyramid_anchors_scalar_size_is_every_levels_size():
    """A single number is one size shared by every level (as [[s], [s]])."""
    got, lvl = _pyr(sizes=np.float64(32.0))
    want, _ = _pyr(sizes=[[32], [32]])
    np.testing.assert_array_equal(got, want)
    assert np.bincount(lvl).tolist() == [16, 4]

