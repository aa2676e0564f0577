"""Pins of py-faster-rcnn's ``sample_rois`` values (issue 19 item 2, mutation/convention_coverage.md):
``TRAIN.BATCH_SIZE`` 128 RoIs per image and the target stds ``BBOX_NORMALIZE_STDS`` (0.1, 0.1, 0.2, 0.2)
that the regression targets are divided by (mmdet's ``target_stds`` too).
"""
import numpy as np
import pytest

from refdet.roi_heads import sample_rois


@pytest.mark.parametrize("kw, n", [({}, 128), ({"batch_size_per_image": 128}, 128),
                                   ({"batch_size_per_image": 512}, 301)])
def test_caffe_samples_128_rois(kw, n):
    # 300 proposals [0, 0, 100, 30] against the gt [0, 0, 100, 100]: +1 IoU 101 * 31 / 101**2 = 0.307,
    # in [BG_THRESH_LO 0.1, BG_THRESH_HI 0.5): background. The appended gt is the one foreground.
    # py-faster-rcnn _sample_rois: fg 1 (quota round(0.25 * 128) = 32), bg = 128 - 1 = 127
    props = np.tile([[0.0, 0.0, 100.0, 30.0]], (300, 1))
    gt = np.array([[0.0, 0.0, 100.0, 100.0]])
    r = sample_rois([props], [gt], [np.array([1])], convention="caffe", rng=0, **kw)
    assert len(r.rois[0]) == n
    assert int((r.labels[0] == 1).sum()) == 1 and int((r.labels[0] == 0).sum()) == n - 1


@pytest.mark.parametrize("conv, kw, dx", [("caffe", {}, -1.0), ("mmdet", {}, (4.5 - 5.5) / 9 / 0.1),
                                          ("caffe", {"box_weights": (10.0, 10.0, 5.0, 5.0)}, -0.01)])
def test_regression_targets_are_divided_by_the_stds(conv, kw, dx):
    # proposal [1, 0, 10, 9] against the gt [0, 0, 9, 9]. py-faster-rcnn (+1 widths): widths 10, centres
    # 6 and 5: (5 - 6) / 10 = -0.1, divided by the std 0.1: -1.0 (stds 10: -0.01). mmdet (no +1): widths
    # 9, centres 5.5 and 4.5: -1 / 9 / 0.1 = -1.111...
    props = np.array([[1.0, 0.0, 10.0, 9.0]])
    gt = np.array([[0.0, 0.0, 9.0, 9.0]])
    extra = {"num_classes": 2} if conv == "mmdet" else {}
    labels = np.array([0 if conv == "mmdet" else 1])
    r = sample_rois([props], [gt], [labels], convention=conv, rng=0, **kw, **extra)
    row = [i for i, b in enumerate(r.rois[0].tolist()) if b == [1.0, 0.0, 10.0, 9.0]]
    assert len(row) == 1
    np.testing.assert_allclose(r.regression_targets[0][row[0]], [dx, 0.0, 0.0, 0.0], rtol=1e-14, atol=1e-15)
