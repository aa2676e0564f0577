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



# ---------------------------------------------------------------------------------------------------
# the public functions' own arguments (cell_anchors, pyramid_anchors, octave_sizes, anchors_inside_image)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, err, msg", [
    (dict(sizes=(32, -1)), ValueError, r"^`sizes` must be positive"),
    (dict(aspect_ratios=(0.5, 0.0)), ValueError, r"^`aspect_ratios` must be positive"),
    (dict(dtype=np.int32), TypeError, r"^`dtype` must be a floating dtype"),
    (dict(base_size=0), ValueError, r"^`base_size` must be > 0"),
    (dict(center="0"), TypeError, r"^`center` must be a real number"),
    (dict(convention="nope"), ValueError, r"nope"),
    (dict(rounding="floor"), ValueError, r"rounding"),
])
def test_cell_anchors_errors_name_the_argument(kw, err, msg):
    args = dict(sizes=(32,), aspect_ratios=(1.0,))
    args.update(kw)
    with pytest.raises(err, match=msg):
        refdet.cell_anchors(**args)


def test_cell_anchors_defaults_are_torchvision_at_zero():
    """The defaults: torchvision's knobs, centre 0, float64; base_size 16 for the pfr rounding."""
    got = refdet.cell_anchors((33.3,), (0.37, 2.9))
    assert_bits_equal(got, R.cell_anchors((33.3,), (0.37, 2.9)))
    pfr = refdet.cell_anchors((100,), (0.5,), convention="caffe")
    assert_bits_equal(pfr, R.cell_anchors((100,), (0.5,), rounding="pfr", plus_one=True, base_size=16.0))
    assert not np.array_equal(pfr, refdet.cell_anchors((100,), (0.5,), convention="caffe", base_size=17))


_PYR_CASES = [
    # (image, feature sizes, strides, sizes, ratios, base_sizes)
    ((100, 130), [(3, 4), (2, 2)], None, [[32, 45.5], [64]], [[0.5, 1.0], [2.0]], None),
    ((64, 80), [(4, 5), (2, 3)], [(16, 16), (32, 27.5)], [[32], [64, 90]], [0.37, 2.9], None),
    ((64, 64), [(4, 4), (2, 2)], [16, 32], [[32], [64]], [0.5, 1.0], [12.0, 20.0]),
    ((32, 48), [(2, 3)], [16], [24.4, 40], [0.5, 1.0, 2.0], None),
]


@pytest.mark.parametrize("case", range(len(_PYR_CASES)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pyramid_anchors_equal_reference_bits_every_knob(case, dtype):
    img, fs, strides, sizes, ratios, base_sizes = _PYR_CASES[case]
    L = len(fs)
    per_size = sizes if isinstance(sizes[0], list) else [sizes] * L if L > 1 else [sizes]
    per_ratio = ratios if isinstance(ratios[0], list) else [ratios] * L
    ref_strides = None if strides is None else [s if isinstance(s, tuple) else (s, s) for s in strides]
    for rounding, plus_one, offset, ratio_def, order in [
            ("torchvision", False, 0.0, "h_over_w", "ratio_major"), ("none", False, 0.5, "w_over_h", "size_major"),
            ("none", True, "legacy", "h_over_w", "ratio_major"), ("mmdet_legacy", True, "legacy", "h_over_w",
                                                                   "ratio_major"),
            ("torchvision", False, "tf_divisible", "w_over_h", "size_major"), ("mmdet_legacy", False, 0.25,
                                                                             "w_over_h", "size_major"),
            ("pfr", True, "legacy", "h_over_w", "ratio_major")]:
        kw = dict(rounding=rounding, plus_one=plus_one, center_offset=offset, ratio_def=ratio_def, order=order)
        derived = ref_strides or [(img[0] // h, img[1] // w) for h, w in fs]
        if any(a != b for a, b in derived) and rounding in ("pfr", "mmdet_legacy") and base_sizes is None:
            with pytest.raises(ValueError, match=r"^rounding '(pfr|mmdet_legacy)' needs (a square stride|equal x/y)"):
                refdet.pyramid_anchors(img, fs, strides, sizes, ratios, dtype=dtype, **kw)
            continue
        got, lvl = refdet.pyramid_anchors(img, fs, strides, sizes, ratios, base_sizes=base_sizes, dtype=dtype, **kw)
        want, wlvl = R.pyramid_anchors(img, fs, ref_strides, per_size, per_ratio, base_sizes=base_sizes,
                                       dtype=dtype, **kw)
        assert_bits_equal((got, lvl), (want, wlvl), f"case {case} {kw}")


def test_pyramid_anchors_derived_strides_and_octaves():
    """strides=None: image // feature per axis (100 // 3 = 33); scales_per_octave: the octave sizes of
    each level's base size, truncated under torchvision, floats under detectron2."""
    a, _ = refdet.pyramid_anchors((100, 100), [(3, 3)], None, [10], [1.0])
    np.testing.assert_array_equal(a[:3, 0], [-5.0, 28.0, 61.0])
    for conv, trunc in (("torchvision", True), ("detectron2", False)):
        got, lvl = refdet.pyramid_anchors((64, 64), [(2, 2), (1, 1)], [32, 64], [32, 64], [1.0], convention=conv,
                                          scales_per_octave=3, center_offset=0.0, rounding="none")
        sizes = R.octave_sizes([32, 64], 3, truncate=trunc)
        want, _ = R.pyramid_anchors((64, 64), [(2, 2), (1, 1)], [(32, 32), (64, 64)], sizes, [[1.0], [1.0]],
                                    rounding="none", order=refdet.conventions.resolve("pyramid_anchors", conv).order)
        assert_bits_equal(got, want, conv)
        assert np.bincount(lvl).tolist() == [12, 3]
    got, _ = refdet.pyramid_anchors((64, 64), [(1, 1)], [64], [32], [1.0], scales_per_octave=3,
                                    octave_truncate=False, rounding="none")
    np.testing.assert_allclose(got[:, 2] * 2, [32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)], rtol=1e-15)


@pytest.mark.parametrize("kw, err, msg", [
    (dict(feature_sizes=[(0, 4)], strides=None, sizes=[32]), ValueError,
     r"^`strides` cannot be derived from an empty feature map \(feature_sizes\[0\] = \(0, 4\)\); pass strides$"),
    (dict(strides=[16]), ValueError, r"^`strides` must have one entry per feature map \(2\); got 1$"),
    (dict(strides=[16, -32]), ValueError, r"^`strides\[1\]` must be > 0"),
    (dict(strides="16"), TypeError, r"^`strides\[0\]` must be a real number; got str '16'$"),
    (dict(sizes=[32, 64, 128]), ValueError, r"^`sizes` must have one entry per feature map \(2\) or be per-level "
                                            r"lists; got 3 sizes$"),
    (dict(sizes=[32], scales_per_octave=3), ValueError,
     r"^with `scales_per_octave`, `sizes` must hold one base size per level \(2\); got 1$"),
    (dict(sizes=[32, -64], scales_per_octave=3), ValueError, r"^`sizes` must be positive"),
    (dict(base_sizes=[16]), ValueError, r"^`base_sizes` must have one entry per feature map \(2\); got 1$"),
    (dict(base_sizes=[16, 0]), ValueError, r"^`base_sizes` must be positive"),
    (dict(aspect_ratios=[0.5, -1.0]), ValueError, r"^`aspect_ratios` must be positive"),
    (dict(image_size=(64,)), ValueError, r"^`image_size` must be a pair"),
    (dict(dtype=np.int64), TypeError, r"^`dtype` must be a floating dtype"),
    (dict(strides=[(16, 8), (32, 32)], rounding="pfr"), ValueError,
     r"^rounding 'pfr' needs a square stride or `base_sizes`; level 0 has strides \(16\.0, 8\.0\)$"),
    (dict(strides=[(16, 8), (32, 32)], rounding="mmdet_legacy"), ValueError,
     r"^rounding 'mmdet_legacy' needs equal x/y offsets; level 0 has \(7\.5, 3\.5\)$"),
])
def test_pyramid_anchors_more_errors_name_the_argument(kw, err, msg):
    args = dict(image_size=(64, 64), feature_sizes=[(4, 4), (2, 2)], strides=[16, 32], sizes=[32, 64],
                aspect_ratios=[1.0], center_offset="legacy")
    args.update(kw)
    with pytest.raises(err, match=msg):
        refdet.pyramid_anchors(**args)


def test_pyramid_anchors_allocation_cap():
    kw = dict(image_size=(64, 64), feature_sizes=[(4, 4), (2, 2)], strides=[16, 32], sizes=[[32], [64]],
              aspect_ratios=[0.5, 2.0])
    assert refdet.pyramid_anchors(**kw, max_elements=160)[0].shape == (40, 4)       # (16 + 4) * 2 anchors
    with pytest.raises(ValueError, match=r"^`feature_sizes` asks for 160 elements \(40 anchors x 4 coordinates, "):
        refdet.pyramid_anchors(**kw, max_elements=159)


def test_octave_sizes_rules_and_errors():
    assert refdet.octave_sizes([32, 64]) == [(32.0, 40.0, 50.0), (64.0, 80.0, 101.0)]
    assert refdet.octave_sizes([32], 2, convention="detectron2") == [(32.0, 32 * 2 ** 0.5)]
    assert refdet.octave_sizes([32], 2, truncate=True, convention="detectron2") == [(32.0, 45.0)]
    assert refdet.octave_sizes([32], 1) == [(32.0,)]
    with pytest.raises(ValueError, match=r"^`base_sizes` must be positive"):
        refdet.octave_sizes([32, 0])
    with pytest.raises(ValueError, match=r"^`scales_per_octave` must be >= 1"):
        refdet.octave_sizes([32], 0)
    assert len(refdet.octave_sizes([32, 64], 3, max_elements=6)) == 2
    with pytest.raises(ValueError, match=r"^`scales_per_octave` asks for 6 elements \(2 base sizes x 3 octave sizes, "):
        refdet.octave_sizes([32, 64], 3, max_elements=5)


def test_anchors_inside_image_profiles_and_override():
    a = np.array([[0, 0, 10, 10], [-1, 0, 10, 10], [0, 0, 32, 10], [-4, -3, 34, 34]], dtype=float)
    assert refdet.anchors_inside_image(a, (32, 32)).tolist() == [True] * 4
    assert refdet.anchors_inside_image(a, (32, 32), convention="caffe").tolist() == [True, False, False, False]
    assert refdet.anchors_inside_image(a, (32, 32), allowed_border=3).tolist() == [True, True, True, False]
    assert refdet.anchors_inside_image(a, (32, 32), convention="caffe", allowed_border=-1).tolist() == [True] * 4
    with pytest.raises(ValueError, match=r"^`anchors` must have shape"):
        refdet.anchors_inside_image(a[:, :3], (32, 32))


def test_pyramid_flat_sizes_one_per_level_and_octave_cap():
    kw = dict(image_size=(64, 64), feature_sizes=[(4, 4), (2, 2)], strides=[16, 32], aspect_ratios=[0.5, 2.0])
    flat, _ = refdet.pyramid_anchors(sizes=[32, 64], **kw)
    nested, _ = refdet.pyramid_anchors(sizes=[[32], [64]], **kw)
    assert_bits_equal(flat, nested)
    with pytest.raises(ValueError, match=r"^`scales_per_octave` asks for 6 elements \(2 base sizes x 3 octave sizes, "
                                         r"48 bytes\)"):
        refdet.pyramid_anchors(sizes=[32, 64], scales_per_octave=3, max_elements=5, **kw)
