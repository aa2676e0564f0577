"""Pin of ``cell_anchors`` ``rounding="torchvision"`` against ``"mmdet_legacy"`` (mutation/
convention_coverage.md): with the template centred at 0 the two are one function (round(w / 2) and
round(0 + w / 2)); a non-zero ``center`` tells them apart.
"""
import numpy as np
import pytest

from refdet.anchors.cell import cell_anchors


@pytest.mark.parametrize("rounding, want", [
    # size 25, ratio 1: half size 12.5. torchvision rounds the half sizes (half to even: 12), then
    # centres: [-12, -12, 12, 12] + 7.5. mmdet v1 centres first, then rounds the corners:
    # -12.5 + 7.5 = -5 and 12.5 + 7.5 = 20 (both exact integers). 'none' keeps the halves.
    ("torchvision", [-4.5, -4.5, 19.5, 19.5]),
    ("mmdet_legacy", [-5.0, -5.0, 20.0, 20.0]),
    ("none", [-5.0, -5.0, 20.0, 20.0]),
])
def test_rounding_with_a_centre(rounding, want):
    got = cell_anchors([25.0], [1.0], rounding=rounding, center=7.5)
    assert got.tolist() == [want]


def test_rounding_torchvision_vs_mmdet_legacy_at_centre_0_agree():
    # the same anchors when the centre is 0: the swap can only be seen with a centre
    a = cell_anchors([25.0, 50.0, 33.0], [0.5, 1.0, 2.0], rounding="torchvision")
    b = cell_anchors([25.0, 50.0, 33.0], [0.5, 1.0, 2.0], rounding="mmdet_legacy")
    assert np.array_equal(a, b)


def test_pyramid_tf_ratio_is_width_over_height():
    # TF's aspect ratio is w / h: ratio 2 with size 32 gives w = 32 sqrt 2, h = 32 / sqrt 2 (w / h = 2);
    # torchvision's h / w reading gives the transposed box
    from refdet.anchors.pyramid import pyramid_anchors

    a, _ = pyramid_anchors((64, 64), [(1, 1)], [64], [[32.0]], [[2.0]], convention="tf")
    w, h = a[0, 2] - a[0, 0], a[0, 3] - a[0, 1]
    np.testing.assert_allclose([w, h], [32 * 2 ** 0.5, 32 / 2 ** 0.5], rtol=1e-12)
    b, _ = pyramid_anchors((64, 64), [(1, 1)], [64], [[32.0]], [[2.0]], convention="tf", ratio_def="h_over_w")
    np.testing.assert_allclose([b[0, 2] - b[0, 0], b[0, 3] - b[0, 1]], [h, w], rtol=1e-12)


@pytest.mark.parametrize("rounding, want", [("mmdet_legacy", [-5.0, -5.0, 20.0, 20.0]),
                                            ("torchvision", [-4.5, -4.5, 19.5, 19.5])])
def test_pyramid_rounding_with_a_half_stride_centre(rounding, want):
    # stride 15, centre offset 0.5: the cell centre is 7.5; size 25 as in test_rounding_with_a_centre
    from refdet.anchors.pyramid import pyramid_anchors

    a, _ = pyramid_anchors((30, 30), [(1, 1)], [15], [[25.0]], [[1.0]], convention="mmdet", rounding=rounding,
                           center_offset=0.5)
    assert a.tolist() == [want]
