"""Tests of refdet.anchors: golden vectors (SPEC-conventions TV1-TV7, TV18), properties, and
differential tests against torchvision's AnchorGenerator and DefaultBoxGenerator (float32, bit for bit).
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refdet
from refdet import anchors as A
from refdet.testing import strategies as rst


# ---------------------------------------------------------------------------------------------------
# a slow loop reference: py-faster-rcnn generate_anchors.py, written out the way the original is
# ---------------------------------------------------------------------------------------------------

def _pfr_generate_anchors_loop(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """py-faster-rcnn lib/rpn/generate_anchors.py, one anchor at a time (numpy float64, np.round)."""
    def whctrs(a):
        w = a[2] - a[0] + 1
        h = a[3] - a[1] + 1
        return w, h, a[0] + 0.5 * (w - 1), a[1] + 0.5 * (h - 1)

    def mk(w, h, xc, yc):
        return [xc - 0.5 * (w - 1), yc - 0.5 * (h - 1), xc + 0.5 * (w - 1), yc + 0.5 * (h - 1)]

    base = np.array([1.0, 1.0, base_size, base_size]) - 1
    w, h, xc, yc = whctrs(base)
    size = w * h
    out = []
    for r in ratios:                                          # _ratio_enum
        ws = np.round(np.sqrt(size / np.float64(r)))
        hs = np.round(ws * np.float64(r))
        ra = mk(ws, hs, xc, yc)
        for s in scales:                                      # _scale_enum
            rw, rh, rx, ry = whctrs(ra)
            out.append(mk(rw * np.float64(s), rh * np.float64(s), rx, ry))
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# TV1, TV2: py-faster-rcnn / Detectron1
# ---------------------------------------------------------------------------------------------------

def test_tv1_py_faster_rcnn_generate_anchors():
    # base window [0, 0, 15, 15]: w = h = 16, centre 7.5, size = 256.
    # ratio 0.5: ws = round(sqrt(512)) = round(22.627) = 23, hs = round(11.5) = 12 (half-to-even!)
    #   scale 8: 184 x 96 -> x 7.5 -+ 91.5 = [-84, 99], y 7.5 -+ 47.5 = [-40, 55]
    # ratio 1:   ws = hs = 16; scale 8: 128 -> 7.5 -+ 63.5 = [-56, 71]
    # ratio 2:   ws = round(sqrt(128)) = round(11.31) = 11, hs = 22; scale 8: 88 x 176 -> [-36, -80, 51, 95]
    expected = np.array([
        [-84., -40., 99., 55.],
        [-176., -88., 191., 103.],
        [-360., -184., 375., 199.],
        [-56., -56., 71., 71.],
        [-120., -120., 135., 135.],
        [-248., -248., 263., 263.],
        [-36., -80., 51., 95.],
        [-80., -168., 95., 183.],
        [-168., -344., 183., 359.]])
    got = refdet.faster_rcnn_anchors()
    assert got.dtype == np.float64 and got.shape == (9, 4)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, _pfr_generate_anchors_loop())
    # areas (+1 pixels) are not 128^2 for ratios 0.5 and 2: 184*96 = 17664, 88*176 = 15488 (Detectron#227)
    w = got[:, 2] - got[:, 0] + 1
    h = got[:, 3] - got[:, 1] + 1
    assert (w * h)[[0, 3, 6]].tolist() == [17664.0, 16384.0, 15488.0]


def test_tv2_detectron1_generate_anchors():
    # Detectron1 generate_anchors(stride=16, sizes=(32,...,512), ratios): base 16, scales = sizes / 16
    # ratio 0.5 (ws 23, hs 12), scale 2: 46 x 24 -> x 7.5 -+ 22.5 = [-15, 30], y 7.5 -+ 11.5 = [-4, 19]
    # ratio 1 (16 x 16), scale 2: 32 -> 7.5 -+ 15.5 = [-8, 23]
    # ratio 2 (11 x 22), scale 2: 22 x 44 -> x 7.5 -+ 10.5 = [-3, 18], y 7.5 -+ 21.5 = [-14, 29]
    expected = np.array([
        [-15, -4, 30, 19], [-38, -16, 53, 31], [-84, -40, 99, 55], [-176, -88, 191, 103],
        [-360, -184, 375, 199],
        [-8, -8, 23, 23], [-24, -24, 39, 39], [-56, -56, 71, 71], [-120, -120, 135, 135],
        [-248, -248, 263, 263],
        [-3, -14, 18, 29], [-14, -36, 29, 51], [-36, -80, 51, 95], [-80, -168, 95, 183],
        [-168, -344, 183, 359]], dtype=np.float64)
    sizes = np.array([32, 64, 128, 256, 512], dtype=float)
    got = refdet.faster_rcnn_anchors(16, (0.5, 1, 2), sizes / 16)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, _pfr_generate_anchors_loop(16, (0.5, 1, 2), sizes / 16))
    np.testing.assert_array_equal(refdet.faster_rcnn_anchors(16, sizes=sizes), expected)
    # the same anchors as refdet's "caffe" cell anchors (centred on 0) moved to the 7.5 centre
    cell = refdet.cell_anchors(sizes, (0.5, 1, 2), convention="caffe", base_size=16)
    np.testing.assert_array_equal(cell + 7.5, expected)
    # and as the first cell of the caffe pyramid: legacy centre (16 - 1) / 2 = 7.5, shifts x * 16
    anc, lvl = refdet.pyramid_anchors((32, 32), [(2, 2)], [16], [tuple(sizes)], (0.5, 1, 2), convention="caffe")
    np.testing.assert_array_equal(anc[:15], expected)
    np.testing.assert_array_equal(anc[15:30], expected + [16, 0, 16, 0])


@given(base=st.sampled_from([4, 8, 16, 32, 64, 7, 10.5]),
       ratios=rst.anchor_ratios(),
       scales=st.lists(st.one_of(st.sampled_from([0.5, 1, 2, 8, 16, 32]), st.floats(0.1, 64)),
                       min_size=1, max_size=4))
def test_faster_rcnn_anchors_equals_loop_reference(base, ratios, scales):
    got = refdet.faster_rcnn_anchors(base, ratios, scales)
    np.testing.assert_array_equal(got, _pfr_generate_anchors_loop(base, ratios, scales))
    # caffe cell anchors are the same boxes re-centred on 0 (exact: c + (-h) == c - h in IEEE)
    cell = refdet.cell_anchors(np.asarray(scales, float) * base, ratios, convention="caffe", base_size=base)
    ref = _pfr_generate_anchors_loop(base, ratios, np.asarray(scales, float) * base / base)
    np.testing.assert_allclose(cell + (base - 1) / 2, ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))


# ---------------------------------------------------------------------------------------------------
# TV3, TV4: torchvision
# ---------------------------------------------------------------------------------------------------

def test_tv3_torchvision_cell_anchors():
    # ratio 0.5: h_ratio = sqrt(0.5) = 0.7071, w_ratio = 1.4142; size 128: w = 181.02, h = 90.51,
    # half sizes 90.51 -> 91 and 45.25 -> 45.
    np.testing.assert_array_equal(refdet.cell_anchors((128, 256, 512), (0.5, 1, 2)), [
        [-91., -45., 91., 45.], [-181., -91., 181., 91.], [-362., -181., 362., 181.],
        [-64., -64., 64., 64.], [-128., -128., 128., 128.], [-256., -256., 256., 256.],
        [-45., -91., 45., 91.], [-91., -181., 91., 181.], [-181., -362., 181., 362.]])
    np.testing.assert_array_equal(refdet.cell_anchors((32,), (0.5, 1, 2)),
                                  [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    # ratio-major: row r * len(sizes) + s
    np.testing.assert_array_equal(refdet.cell_anchors((32, 64), (0.5, 1, 2)), [
        [-23, -11, 23, 11], [-45, -23, 45, 23], [-16, -16, 16, 16], [-32, -32, 32, 32],
        [-11, -23, 11, 23], [-23, -45, 23, 45]])
    # RetinaNet P3: octave sizes int(32 * 2**(1/3)) = int(40.3) = 40, int(32 * 2**(2/3)) = int(50.8) = 50
    assert refdet.octave_sizes([32])[0] == (32.0, 40.0, 50.0)
    p3 = refdet.cell_anchors(refdet.octave_sizes([32])[0], (0.5, 1, 2))
    np.testing.assert_array_equal(p3, [
        [-23, -11, 23, 11], [-28, -14, 28, 14], [-35, -18, 35, 18],
        [-16, -16, 16, 16], [-20, -20, 20, 20], [-25, -25, 25, 25],
        [-11, -23, 11, 23], [-14, -28, 14, 28], [-18, -35, 18, 35]])
    # before rounding: 32 * sqrt(2) / 2 = 22.627417, 50 / sqrt(2) / 2 = 17.677670
    raw = refdet.cell_anchors((32, 40, 50), (0.5, 1, 2), rounding="none")
    np.testing.assert_allclose(raw[[0, 2, 8], 0], [-22.627417, -35.355339, -17.677670], atol=1e-6)
    # half-to-even on the half sizes: 25 / 2 = 12.5 -> 12, 27 / 2 = 13.5 -> 14
    np.testing.assert_array_equal(refdet.cell_anchors((25, 27), (1,)), [[-12, -12, 12, 12], [-14, -14, 14, 14]])
    assert refdet.octave_sizes([64, 128, 256, 512]) == [(64, 80, 101), (128, 161, 203), (256, 322, 406),
                                                        (512, 645, 812)]


def test_tv4_torchvision_grid_anchors():
    # 64 x 64 image, 2 x 2 map: stride 64 // 2 = 32, offset 0: centres (0, 0), (32, 0), (0, 32), (32, 32)
    anc, lvl = refdet.pyramid_anchors((64, 64), [(2, 2)], None, (32,), (1,))
    np.testing.assert_array_equal(anc, [[-16, -16, 16, 16], [16, -16, 48, 16], [-16, 16, 16, 48], [16, 16, 48, 48]])
    assert lvl.dtype == np.int64 and lvl.tolist() == [0] * 4
    # 100 x 100 image, 3 x 3 map: stride 100 // 3 = 33 (floor), centres 0, 33, 66
    anc, _ = refdet.pyramid_anchors((100, 100), [(3, 3)], None, (32,), (1,))
    np.testing.assert_array_equal(anc, [
        [-16, -16, 16, 16], [17, -16, 49, 16], [50, -16, 82, 16],
        [-16, 17, 16, 49], [17, 17, 49, 49], [50, 17, 82, 49],
        [-16, 50, 16, 82], [17, 50, 49, 82], [50, 50, 82, 82]])
    # grid_anchors gives the same from the cell
    np.testing.assert_array_equal(refdet.grid_anchors(refdet.cell_anchors((32,), (1,)), (3, 3), 33), anc)


def test_seed_rpn_numbers():
    # the seed: one 50 x 50 map of stride 16 (800 x 800 image), 3 sizes x 3 ratios = 9 per location
    anc, lvl = refdet.pyramid_anchors((800, 800), [(50, 50)], [16], (128, 256, 512), (0.5, 1, 2))
    assert anc.shape == (22500, 4) and lvl.shape == (22500,)
    # location (y=1, x=2) holds rows (1 * 50 + 2) * 9 .. + 9, shifted by (32, 16)
    cell = refdet.cell_anchors((128, 256, 512), (0.5, 1, 2))
    np.testing.assert_array_equal(anc[52 * 9:53 * 9], cell + [32, 16, 32, 16])
    # py-faster-rcnn's allowed_border=0 keeps only anchors fully inside: the 128 x 128 square at centre
    # (x, y) = (7.5 + 16 j, ...) is inside iff 7.5 + 16 j - 63.5 >= 0 and 7.5 + 16 j + 63.5 < 800
    pfr, _ = refdet.pyramid_anchors((800, 800), [(50, 50)], [16], (128, 256, 512), (0.5, 1, 2), convention="caffe")
    inside = refdet.anchors_inside_image(pfr, (800, 800), convention="caffe")
    assert inside.dtype == bool and inside.shape == (22500,)
    sq128 = inside.reshape(50, 50, 9)[:, :, 3]
    j_ok = [(7.5 + 16 * j - 63.5 >= 0) and (7.5 + 16 * j + 63.5 < 800) for j in range(50)]
    np.testing.assert_array_equal(sq128, np.outer(j_ok, j_ok))
    assert refdet.anchors_inside_image(pfr, (800, 800)).all()          # torchvision keeps every anchor


# ---------------------------------------------------------------------------------------------------
# TV5, TV6: detectron2 and mmdet (derived)
# ---------------------------------------------------------------------------------------------------

def test_tv5_detectron2_size_major():
    # w = sqrt(32^2 / 0.5) = 45.254834, h = 0.5 * w = 22.627417; corners -+ w/2
    got = refdet.cell_anchors((32, 64), (0.5, 1, 2), convention="detectron2", dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [
        [-22.627417, -11.313708, 22.627417, 11.313708],
        [-16.000000, -16.000000, 16.000000, 16.000000],
        [-11.313708, -22.627417, 11.313708, 22.627417],
        [-45.254833, -22.627417, 45.254833, 22.627417],
        [-32.000000, -32.000000, 32.000000, 32.000000],
        [-22.627417, -45.254833, 22.627417, 45.254833]], rtol=0, atol=2e-6)  # 6 printed decimals
    p3 = refdet.octave_sizes([32], convention="detectron2")[0]          # 32, 40.317474, 50.796834
    np.testing.assert_allclose(p3, [32, 40.317474, 50.796834], atol=1e-6)
    got = refdet.cell_anchors(p3, (0.5, 1, 2), convention="detectron2")
    np.testing.assert_allclose(got, [
        [-22.627417, -11.313708, 22.627417, 11.313708], [-16, -16, 16, 16],
        [-11.313708, -22.627417, 11.313708, 22.627417],
        [-28.508759, -14.254379, 28.508759, 14.254379], [-20.158737, -20.158737, 20.158737, 20.158737],
        [-14.254379, -28.508759, 14.254379, 28.508759],
        [-35.918785, -17.959393, 35.918785, 17.959393], [-25.398417, -25.398417, 25.398417, 25.398417],
        [-17.959393, -35.918785, 17.959393, 35.918785]], rtol=0, atol=2e-6)
    # OFFSET = 0.5 moves every centre to (x + 0.5) * stride
    a0, _ = refdet.pyramid_anchors((16, 16), [(2, 2)], [8], [p3], (0.5, 1, 2), convention="detectron2")
    a5, _ = refdet.pyramid_anchors((16, 16), [(2, 2)], [8], [p3], (0.5, 1, 2), convention="detectron2",
                                   center_offset=0.5)
    np.testing.assert_allclose(a5 - a0, np.full_like(a0, 4.0), rtol=0, atol=1e-13)  # float sums, ~1 ulp


def test_tv6_mmdet():
    p3 = refdet.octave_sizes([32], convention="mmdet")[0]
    d2 = refdet.cell_anchors(p3, (0.5, 1, 2), convention="detectron2")
    mm = refdet.cell_anchors(p3, (0.5, 1, 2), convention="mmdet")
    np.testing.assert_array_equal(mm, d2[[0, 3, 6, 1, 4, 7, 2, 5, 8]])   # ratio-major permutation
    # mmdet docstring: AnchorGenerator([16], [1.], [1.], [9]) on a 2 x 2 grid: size 9 -> -+4.5
    anc, _ = refdet.pyramid_anchors((32, 32), [(2, 2)], [16], [9], [1.0], convention="mmdet")
    np.testing.assert_array_equal(anc, [[-4.5, -4.5, 4.5, 4.5], [11.5, -4.5, 20.5, 4.5],
                                        [-4.5, 11.5, 4.5, 20.5], [11.5, 11.5, 20.5, 20.5]])
    # LegacyAnchorGenerator([16], [1.], [1.], [9], center_offset=0.5): centre 0.5 * (9 - 1) = 4,
    # corners round(4 -+ 0.5 * (9 - 1)) = [0, 8]
    anc, _ = refdet.pyramid_anchors((32, 32), [(2, 2)], [16], [9], [1.0], convention="mmdet",
                                    rounding="mmdet_legacy", plus_one=True, center_offset="legacy",
                                    base_sizes=[9])
    np.testing.assert_array_equal(anc, [[0, 0, 8, 8], [16, 0, 24, 8], [0, 16, 8, 24], [16, 16, 24, 24]])
    # legacy rounding depends on the centre: size 8 at centre 7.5: 7.5 -+ 3.5 = 4, 11 exactly;
    # size 9 at 7.5: 7.5 -+ 4 = 3.5 -> 4 and 11.5 -> 12 (half-to-even)
    c = refdet.cell_anchors((9,), (1.0,), rounding="mmdet_legacy", plus_one=True, center=7.5)
    np.testing.assert_array_equal(c, [[4, 4, 12, 12]])


# ---------------------------------------------------------------------------------------------------
# TV7 and friends: SSD default boxes
# ---------------------------------------------------------------------------------------------------

_SSD300 = dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
               scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])


def test_tv7_torchvision_ssd300():
    b = refdet.ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1], dtype=np.float32, **_SSD300)
    # 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4 = 5776 + 2166 + 600 + 150 + 36 + 4 = 8732
    assert b.shape == (8732, 4) and b.dtype == np.float32
    # first cell of conv4_3: centre (0 + 0.5) / (300 / 8) * 300 = 4; square 0.07 * 300 = 21 -> 4 -+ 10.5;
    # s' = sqrt(0.07 * 0.15) = 0.102470 -> 4 -+ 15.370; ratio 2: w = 0.07 * sqrt 2 = 0.098995
    np.testing.assert_allclose(b[:4], [
        [-6.5, -6.5, 14.5, 14.5],
        [-11.370427, -11.370427, 19.370426, 19.370426],
        [-10.849242, -3.424621, 18.849241, 11.424622],
        [-3.424621, -10.849242, 11.424622, 18.849241]], rtol=0, atol=2e-6)
    # last 6: the single 1 x 1 cell of the last level, centre 150; 0.87 * sqrt 2 = 1.230366 is clipped
    # to 1 (the (w, h) pair, not the corners): 150 -+ 150 = [0, 300]; 0.87 / sqrt 2 * 300 = 184.55
    np.testing.assert_allclose(b[-6:], [
        [103.628891, 176.814438, 396.371094, 323.185547],
        [176.814438, 103.628891, 323.185547, 396.371094],
        [19.5, 19.5, 280.5, 280.5],
        [6.634212, 6.634212, 293.365784, 293.365784],
        [0.0, 57.722569, 300.0, 242.277435],
        [57.722569, 0.0, 242.277435, 300.0]], rtol=0, atol=2e-5)
    # without clip the wide box sticks out: 150 -+ 0.5 * 1.230366 * 300 = 150 -+ 184.55
    nc = refdet.ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1], clip=False, **_SSD300)
    np.testing.assert_allclose(nc[-2, [0, 2]], [150 - 0.5 * 0.87 * math.sqrt(2) * 300,
                                                150 + 0.5 * 0.87 * math.sqrt(2) * 300], rtol=1e-12)


def test_tv7_wh_pairs_per_level():
    # one 1 x 1 map per level, no clip, normalised: each box is centred at 0.5 and its size is the
    # relative (w, h) pair of TV7 (s_k, s'_k = sqrt(s_k s_k+1), then (s sqrt a, s / sqrt a), (h, w))
    b = refdet.ssd_default_boxes((300, 300), [1] * 6, clip=False, normalized=True,
                                 aspect_ratios=_SSD300["aspect_ratios"], scales=_SSD300["scales"])
    wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    expected = [
        [[0.07, 0.07], [0.102470, 0.102470], [0.098995, 0.049497], [0.049497, 0.098995]],
        [[0.15, 0.15], [0.222486, 0.222486], [0.212132, 0.106066], [0.106066, 0.212132], [0.259808, 0.086603],
         [0.086603, 0.259808]],
        [[0.33, 0.33], [0.410244, 0.410244], [0.466690, 0.233345], [0.233345, 0.466690], [0.571577, 0.190526],
         [0.190526, 0.571577]],
        [[0.51, 0.51], [0.593212, 0.593212], [0.721249, 0.360624], [0.360624, 0.721249], [0.883346, 0.294449],
         [0.294449, 0.883346]],
        [[0.69, 0.69], [0.774790, 0.774790], [0.975807, 0.487904], [0.487904, 0.975807]],
        [[0.87, 0.87], [0.955772, 0.955772], [1.230366, 0.615183], [0.615183, 1.230366]]]
    np.testing.assert_allclose(wh, np.concatenate([np.array(e) for e in expected]), rtol=0, atol=1e-6)
    assert [len(e) for e in expected] == [4, 6, 6, 6, 4, 4]


def test_ssd_scale_rules():
    # SSDlite: min 0.2, max 0.95, 6 maps: 0.2 + 0.75 k / 5 -> 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, then 1.0.
    # A 1 x 1 map's first box is the centred square of side s_k, the second sqrt(s_k s_{k+1}).
    b = refdet.ssd_default_boxes((1, 1), [1] * 6, min_ratio=0.2, max_ratio=0.95,
                                 aspect_ratios=[[]] * 6, normalized=True)
    w = (b[:, 2] - b[:, 0]).reshape(6, 2)
    np.testing.assert_allclose(w[:, 0], [0.2, 0.35, 0.5, 0.65, 0.8, 0.95], atol=1e-12)
    np.testing.assert_allclose(w[:, 1], np.sqrt([0.2 * 0.35, 0.35 * 0.5, 0.5 * 0.65, 0.65 * 0.8,
                                                 0.8 * 0.95, 0.95 * 1.0]), atol=1e-12)
    # Caffe ssd_pascal.py / mmdet: integer percent steps (20 + 17k)% of 300, conv4_3 gets 10% / 20%
    assert refdet.ssd_sizes_from_ratios(300, 6, 0.2, 0.9) == ([30, 60, 111, 162, 213, 264],
                                                             [60, 111, 162, 213, 264, 315])
    # COCO (0.15, 0.9): the torchvision SSD300 scales times 300
    assert refdet.ssd_sizes_from_ratios(300, 6, 0.15, 0.9) == ([21, 45, 99, 153, 207, 261],
                                                              [45, 99, 153, 207, 261, 315])


def test_caffe_priorbox_equals_torchvision_on_square_image():
    # Caffe PriorBox with pixel min/max sizes = torchvision with scales = sizes / 300 (square image):
    # same order (min square, sqrt(min max) square, wide, tall), offset 0.5, same steps.
    mn, mx = refdet.ssd_sizes_from_ratios(300, 6, 0.15, 0.9)
    caffe = refdet.ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1], convention="caffe", clip=False,
                                     aspect_ratios=_SSD300["aspect_ratios"], steps=_SSD300["steps"],
                                     min_sizes=mn, max_sizes=mx)
    tv = refdet.ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1], clip=False, **_SSD300)
    np.testing.assert_allclose(caffe, tv, rtol=0, atol=1e-9)
    # percent rule by default under "caffe": the VOC sizes 30..315
    voc = refdet.ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1], convention="caffe",
                                   aspect_ratios=_SSD300["aspect_ratios"], steps=_SSD300["steps"])
    assert voc.shape == (8732, 4)
    np.testing.assert_allclose(voc[0], [0, 0, 4 + 15, 4 + 15])      # 30 px square at (4, 4), corners clipped


def test_tf_create_ssd_anchors_layout():
    # TF create_ssd_anchors defaults: 6 layers, scales 0.2 + 0.75 k / 5 (+ 1.0), ratios (1, 2, 3, 1/2,
    # 1/3) + interpolated square; layer 0 reduced to (0.1, 1), (0.2, 2), (0.2, 0.5): 3 boxes.
    fs = [19, 10, 5, 3, 2, 1]
    b = refdet.ssd_default_boxes((300, 300), fs, min_ratio=0.2, max_ratio=0.95, convention="tf", clip=False,
                                 aspect_ratios=(1.0, 2.0, 3.0, 0.5, 1.0 / 3), normalized=True,
                                 box_format="yxyx")
    assert b.shape == (19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4)
    c = 0.5 / 19
    # yxyx: [cy - h/2, cx - w/2, cy + h/2, cx + w/2]; ratio 2 = w / h: w = 0.2 sqrt 2, h = 0.2 / sqrt 2
    np.testing.assert_allclose(b[:3], [
        [c - 0.05, c - 0.05, c + 0.05, c + 0.05],
        [c - 0.1 / math.sqrt(2), c - 0.1 * math.sqrt(2), c + 0.1 / math.sqrt(2), c + 0.1 * math.sqrt(2)],
        [c - 0.1 * math.sqrt(2), c - 0.1 / math.sqrt(2), c + 0.1 * math.sqrt(2), c + 0.1 / math.sqrt(2)]],
        atol=1e-7)  # TF's float32 stride/offset arithmetic differs from ours by < 1e-7
    # layer 1's sixth box is the interpolated square sqrt(0.35 * 0.5)
    start = 19 * 19 * 3
    side = b[start + 5, 3] - b[start + 5, 1]
    assert side == pytest.approx(math.sqrt(0.35 * 0.5), abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# TV18: TF GridAnchorGenerator
# ---------------------------------------------------------------------------------------------------

def test_tv18_tf_grid_anchor_generator():
    # base [10, 10], scales [0.5, 1, 2] -> sizes 5, 10, 20; ratio 1; stride 19, offset 0; 2 x 2; yxyx.
    # cell (y=0, x=1): centre (0, 19): scale 0.5 -> [-2.5, 16.5, 2.5, 21.5]
    anc, _ = refdet.pyramid_anchors((38, 38), [(2, 2)], [19], [(5, 10, 20)], [1.0], convention="tf",
                                    center_offset=0.0)
    yxyx = refdet.box_convert(anc, "xyxy", "yxyx")
    np.testing.assert_array_equal(yxyx, [
        [-2.5, -2.5, 2.5, 2.5], [-5, -5, 5, 5], [-10, -10, 10, 10],
        [-2.5, 16.5, 2.5, 21.5], [-5, 14, 5, 24], [-10, 9, 10, 29],
        [16.5, -2.5, 21.5, 2.5], [14, -5, 24, 5], [9, -10, 29, 10],
        [16.5, 16.5, 21.5, 21.5], [14, 14, 24, 24], [9, 9, 29, 29]])
    # the TF default for a pyramid: stride / 2 only when the image side divides by the stride
    a, _ = refdet.pyramid_anchors((38, 40), [(2, 2)], [19], [(5,)], [1.0], convention="tf")
    assert refdet.box_convert(a, "xyxy", "cxcywh")[0, :2].tolist() == [0.0, 9.5]   # x: 40 % 19 != 0


def test_ratio_definitions():
    # h/w: ratio 2 is tall; w/h (TF): ratio 2 is wide. Both keep the area s^2.
    tall = refdet.cell_anchors((10,), (2.0,), rounding="none")
    wide = refdet.cell_anchors((10,), (2.0,), convention="tf")
    wt, ht = tall[0, 2] - tall[0, 0], tall[0, 3] - tall[0, 1]
    ww, hw = wide[0, 2] - wide[0, 0], wide[0, 3] - wide[0, 1]
    assert ht / wt == pytest.approx(2.0) and ww / hw == pytest.approx(2.0)
    assert wt * ht == pytest.approx(100.0) and ww * hw == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------

@given(cfg=rst.anchor_configs(), conv=st.sampled_from(["torchvision", "detectron2", "mmdet", "caffe", "tf"]),
       off=st.sampled_from([None, 0.0, 0.5, "legacy"]))
def test_pyramid_layout_properties(cfg, conv, off):
    anc, lvl = refdet.pyramid_anchors(**cfg, convention=conv, center_offset=off)
    counts = [h * w * len(s) * len(r) for (h, w), s, r in zip(cfg["feature_sizes"], cfg["sizes"],
                                                                cfg["aspect_ratios"])]
    assert anc.shape == (sum(counts), 4) and lvl.shape == (sum(counts),)
    assert lvl.dtype == np.int64 and np.array_equal(lvl, np.repeat(np.arange(len(counts)), counts))
    start = 0
    for l, ((h, w), s, r, stride) in enumerate(zip(cfg["feature_sizes"], cfg["sizes"], cfg["aspect_ratios"],
                                                   cfg["strides"])):
        block = anc[start:start + counts[l]].reshape(h, w, len(s) * len(r), 4)     # (y, x, a, 4)
        start += counts[l]
        scale = max(1.0, np.abs(block).max())
        # every anchor of a location has the same centre, on the grid: (x * stride + o, y * stride + o)
        cx = (block[..., 0] + block[..., 2]) / 2
        cy = (block[..., 1] + block[..., 3]) / 2
        kw = dict(rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(cx - cx[:, :, :1], 0, **kw)
        np.testing.assert_allclose(cy - cy[:, :, :1], 0, **kw)
        # neighbours differ by exactly one stride (translation), in x and in y
        np.testing.assert_allclose(np.diff(block, axis=1), np.broadcast_to([stride, 0, stride, 0], block[:, 1:].shape),
                                   **kw)
        np.testing.assert_allclose(np.diff(block, axis=0), np.broadcast_to([0, stride, 0, stride], block[1:].shape),
                                   **kw)
        # the first location is the cell anchors shifted by the offset
        cell = refdet.cell_anchors(s, r, convention=conv, base_size=stride)
        o = {None: {"caffe": (stride - 1) / 2, "tf": None}.get(conv, 0.0), 0.0: 0.0, 0.5: stride / 2,
             "legacy": (stride - 1) / 2}[off]
        if o is not None:
            np.testing.assert_allclose(block[0, 0], cell + o, **kw)


@given(sizes=st.lists(st.floats(1, 600), min_size=1, max_size=4), ratios=rst.anchor_ratios(),
       conv=st.sampled_from(["torchvision", "detectron2", "mmdet", "tf"]))
def test_cell_anchor_properties(sizes, ratios, conv):
    c = refdet.cell_anchors(sizes, ratios, convention=conv)
    assert c.shape == (len(sizes) * len(ratios), 4)
    np.testing.assert_array_equal(c[:, :2], -c[:, 2:])              # centred on 0, symmetric
    w, h = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    s = np.asarray(sizes)
    r = np.asarray(ratios)
    if conv == "detectron2":
        s_rows, r_rows = np.repeat(s, len(r)), np.tile(r, len(s))   # size-major
    else:
        s_rows, r_rows = np.tile(s, len(r)), np.repeat(r, len(s))   # ratio-major
    if conv == "torchvision":
        # half sizes rounded to integers: off by at most 0.5 per side, widths even
        assert np.all(np.abs(w - s_rows / np.sqrt(r_rows)) <= 1.0 + 1e-9)
        np.testing.assert_array_equal(np.mod(w, 2), 0)
    else:
        np.testing.assert_allclose(w * h, s_rows ** 2, rtol=1e-12)  # the area is size^2
        ratio = h / w if conv != "tf" else w / h
        np.testing.assert_allclose(ratio, r_rows, rtol=1e-12)
    # size-major is a permutation of ratio-major
    rm = refdet.cell_anchors(sizes, ratios, convention=conv, order="ratio_major")
    sm = refdet.cell_anchors(sizes, ratios, convention=conv, order="size_major")
    perm = (np.arange(len(r))[None, :] * len(s) + np.arange(len(s))[:, None]).reshape(-1)
    np.testing.assert_array_equal(sm, rm[perm])


@given(cfg=rst.ssd_configs())
def test_ssd_count_and_centres(cfg):
    b = refdet.ssd_default_boxes(**cfg)
    per = [2 + 2 * len(r) for r in cfg["aspect_ratios"]]
    counts = [h * w * a for (h, w), a in zip(cfg["feature_sizes"], per)]
    assert b.shape == (sum(counts), 4)
    H, W = cfg["image_size"]
    start = 0
    for k, ((h, w), a) in enumerate(zip(cfg["feature_sizes"], per)):
        block = b[start:start + counts[k]].reshape(h, w, a, 4)
        start += counts[k]
        cx = (block[..., 0] + block[..., 2]) / 2                     # (h, w, a)
        x_f = W / cfg["steps"][k] if "steps" in cfg else w
        np.testing.assert_allclose(cx, np.broadcast_to(((np.arange(w) + 0.5) / x_f * W)[None, :, None], cx.shape),
                                   rtol=1e-12, atol=1e-9)
        if cfg["clip"]:
            bw = block[..., 2] - block[..., 0]
            assert np.all(bw <= W * (1 + 1e-12))                    # the (w, h) pair is clipped to <= 1


# ---------------------------------------------------------------------------------------------------
# differential: torchvision
# ---------------------------------------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    torch.set_num_threads(1)
    return torch


@given(cfg=rst.anchor_configs(strides=False))
def test_anchor_generator_matches_torchvision_float32(cfg):
    torch = _torch()
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    H, W = cfg["image_size"]
    gen = AnchorGenerator(tuple(cfg["sizes"]), tuple(cfg["aspect_ratios"]))
    images = ImageList(torch.zeros(1, 3, H, W), [(H, W)])
    feats = [torch.zeros(1, 1, h, w) for h, w in cfg["feature_sizes"]]
    expected = gen(images, feats)[0].numpy()
    got, lvl = refdet.pyramid_anchors(**cfg, dtype=np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)                    # bit for bit
    # float64 feature maps: torchvision computes the cell anchors in float32 and casts them, then adds
    # the int32 shifts in float64; every value is an integer, so refdet's float32 result cast agrees.
    feats64 = [f.double() for f in feats]
    np.testing.assert_array_equal(got.astype(np.float64), gen(images, feats64)[0].numpy())


def test_retinanet_anchor_generator_matches_torchvision():
    torch = _torch()
    from torchvision.models.detection.retinanet import _default_anchorgen
    from torchvision.models.detection.image_list import ImageList
    fs = [(100, 100), (50, 50), (25, 25), (13, 13), (7, 7)]
    expected = _default_anchorgen()(ImageList(torch.zeros(1, 3, 800, 800), [(800, 800)]),
                                    [torch.zeros(1, 1, h, w) for h, w in fs])[0].numpy()
    got, lvl = refdet.pyramid_anchors((800, 800), fs, None, [32, 64, 128, 256, 512], (0.5, 1.0, 2.0),
                                      scales_per_octave=3, dtype=np.float32)
    assert got.shape == (120087, 4)                                 # (10000+2500+625+169+49) * 9
    np.testing.assert_array_equal(got, expected)
    # 800 // 13 = 61 and 800 // 7 = 114: torchvision's P6/P7 strides are not 64/128
    np.testing.assert_array_equal(got[lvl == 3][9, [0, 2]] - got[lvl == 3][0, [0, 2]], [61, 61])
    # float64: the same numbers (every value is an integer, exact in both)
    np.testing.assert_array_equal(refdet.pyramid_anchors((800, 800), fs, None, [32, 64, 128, 256, 512],
                                                         (0.5, 1.0, 2.0), scales_per_octave=3)[0], expected)


@given(cfg=rst.ssd_configs())
def test_default_box_generator_matches_torchvision_float32(cfg):
    torch = _torch()
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList
    H, W = cfg["image_size"]
    kw = {k: cfg[k] for k in ("scales", "min_ratio", "max_ratio", "steps", "clip") if k in cfg}
    gen = DefaultBoxGenerator(cfg["aspect_ratios"], **kw)
    feats = [torch.zeros(1, 1, h, w) for h, w in cfg["feature_sizes"]]
    expected = gen(ImageList(torch.zeros(1, 3, H, W), [(H, W)]), feats)[0].numpy()
    got = refdet.ssd_default_boxes(cfg["image_size"], cfg["feature_sizes"], dtype=np.float32, **kw,
                                   aspect_ratios=cfg["aspect_ratios"])
    np.testing.assert_array_equal(got, expected)                    # bit for bit


def test_ssd300_matches_torchvision_model_anchors():
    torch = _torch()
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList
    gen = DefaultBoxGenerator(**_SSD300)
    fs = [38, 19, 10, 5, 3, 1]
    expected = gen(ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)]),
                   [torch.zeros(1, 1, f, f) for f in fs])[0].numpy()
    got = refdet.ssd_default_boxes((300, 300), fs, dtype=np.float32, **_SSD300)
    np.testing.assert_array_equal(got, expected)
    # float64 oracle agrees to float32 rounding of coordinates up to 300 (ulp 3e-5)
    np.testing.assert_allclose(refdet.ssd_default_boxes((300, 300), fs, **_SSD300), expected, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------------

def test_empty_feature_map_gives_no_anchors():
    anc, lvl = refdet.pyramid_anchors((64, 64), [(0, 4), (2, 2)], [16, 32], [(32,), (64,)], (1.0,))
    assert anc.shape == (4, 4) and lvl.tolist() == [1] * 4
    assert refdet.grid_anchors(refdet.cell_anchors((8,), (1,)), (0, 0), 4).shape == (0, 4)
    assert refdet.ssd_default_boxes((30, 30), [(0, 3)], aspect_ratios=[[2]]).shape == (0, 4)


def test_float32_input_cell_keeps_dtype_and_inputs_untouched():
    cell = refdet.cell_anchors((32,), (0.5, 1, 2), dtype=np.float32)
    cell.setflags(write=False)
    g = refdet.grid_anchors(cell, (2, 3), (8, 16), offset=0.5)
    assert g.dtype == np.float32 and g.shape == (18, 4)
    # anisotropic stride: x moves by 16, y by 8; offset 0.5 -> first centre (8, 4)
    np.testing.assert_array_equal(g[:3], cell + [8, 4, 8, 4])
    np.testing.assert_array_equal(g[3:6], cell + [24, 4, 24, 4])
    np.testing.assert_array_equal(g[9:12], cell + [8, 12, 8, 12])


def test_convention_tables_registered():
    for op in ("cell_anchors", "pyramid_anchors", "octave_sizes", "anchors_inside_image", "ssd_default_boxes"):
        assert op in refdet.conventions.ops()
    assert "size_major" in str(refdet.conventions.describe("pyramid_anchors"))
    with pytest.raises(ValueError, match="`convention`"):
        refdet.cell_anchors((32,), (1,), convention="paper")


# ---------------------------------------------------------------------------------------------------
# the hand-written table of refdet.anchors' docstring agrees with the registry
# ---------------------------------------------------------------------------------------------------

def test_module_docstring_table_matches_the_registry():
    from refdet import conventions
    words = {"ratio": {"h / w": "h_over_w", "w / h": "w_over_h"},
             "order": {"ratio-major": "ratio_major", "size-major": "size_major"},
             "rounding": {"half sizes, half-to-even": "torchvision", "none": "none",
                          "py-faster-rcnn ws/hs rounding": "pfr"},
             "plus_one": {"no": False, "yes": True}}
    offsets = {"0": 0.0, "(stride - 1) / 2": "legacy", "stride/2 if the": "tf_divisible"}
    lines = A.__doc__.splitlines()
    start = [i for i, ln in enumerate(lines) if ln.startswith("profile ")][0]
    header = lines[start]
    cols = [header.index(c) for c in ("ratio", "order", "rounding", "plus_one", "centre")]
    table = conventions.describe("pyramid_anchors")
    seen = set()
    for ln in lines[start + 2:]:
        if ln.startswith("====="):
            break
        name = ln[:cols[0]].strip()
        if not name:
            continue                                   # a continuation line
        cells = [ln[a:b].strip() for a, b in zip(cols, cols[1:] + [None])]
        p = table[name]
        assert words["ratio"][cells[0]] == p["ratio_def"], name
        assert words["order"][cells[1]] == p["order"], name
        assert words["rounding"][cells[2]] == p["rounding"], name
        assert words["plus_one"][cells[3]] == p["plus_one"], name
        centre = cells[4].split(" (")[0]
        assert offsets[centre] == p["center_offset"], name
        seen.add(name)
    assert seen == set(table)


def test_geometry_convention_knobs_are_declared():
    # every knob of the geometry ops is a declared Option (type, allowed values, meaning, source), and
    # the public function carries the generated table
    from refdet import conventions
    ops = {"box_area": refdet.box_area, "clip_boxes_to_image": refdet.clip_boxes_to_image,
           "remove_small_boxes": refdet.remove_small_boxes, "cell_anchors": refdet.cell_anchors,
           "pyramid_anchors": refdet.pyramid_anchors, "octave_sizes": refdet.octave_sizes,
           "anchors_inside_image": refdet.anchors_inside_image, "ssd_default_boxes": refdet.ssd_default_boxes,
           "encode_boxes": refdet.encode_boxes, "decode_boxes": refdet.decode_boxes,
           "decode_boxes_forward": refdet.decode_boxes_forward, "match": refdet.match,
           "ssd_match": refdet.ssd_match, "rpn_targets": refdet.rpn_targets,
           "retinanet_targets": refdet.retinanet_targets, "ssd_targets": refdet.ssd_targets}
    for op, fn in ops.items():
        table = conventions.describe(op)
        for knob, opt in table.options.items():
            assert opt.kind != "legacy", f"{op}.{knob} is an undeclared string knob"
            assert opt.source, f"{op}.{knob} names no source"
        assert fn.__convention_op__ == op
        assert "Conventions\n    -----------" in fn.__doc__
        for knob in table.options:
            assert f"``{knob}``" in fn.__doc__
