"""Pins of the box decoder's convention values the coverage run's tests did not catch
(mutation/convention_coverage.md): TF's weights as divisors ('multiply_after' against 'divide'), mmdet's
midpoint centre, and the one equivalence: decoding under 'multiply' and 'multiply_after' is one function
(both divide the delta by the weight; the two differ only in encode's rounding order).
"""
import numpy as np
import pytest

from refdet.box_coder import decode_boxes, decode_boxes_backward, decode_boxes_forward

F32 = np.float32


@pytest.mark.parametrize("weight_mode, want", [
    # TF faster_rcnn_box_coder decode (deltas in (ty, tx, th, tw) order): ty / 10 * ha + yc_a.
    # anchor [0, 0, 10, 20] (xyxy): w 10, h 20, centre (5, 10); deltas (1, 2, 0, 0), weights (10, 10, 5, 5):
    # cy = 10 + 0.1 * 20 = 12, cx = 5 + 0.2 * 10 = 7: box [2, 2, 12, 22]. As stds ('divide') the deltas
    # are multiplied: cy = 10 + 10 * 20 = 210, cx = 5 + 20 * 10 = 205: [200, 200, 210, 220].
    (None, [2.0, 2.0, 12.0, 22.0]), ("multiply_after", [2.0, 2.0, 12.0, 22.0]),
    ("divide", [200.0, 200.0, 210.0, 220.0])])
def test_tf_decode_weights_divide_the_deltas(weight_mode, want):
    got = decode_boxes(np.array([[1.0, 2.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 10.0, 20.0]]),
                       weights=(10.0, 10.0, 5.0, 5.0), convention="tf", weight_mode=weight_mode)
    assert got.tolist() == [want]


def _mmdet_delta2bbox32(rois, deltas, stds):
    """mmdet v3 delta2bbox (DeltaXYWHBBoxCoder) in float32, zero means, torch's order of operations."""
    dxy = deltas[:, :2] * np.array(stds[:2], F32)
    dwh = deltas[:, 2:] * np.array(stds[2:], F32)
    pxy = (rois[:, :2] + rois[:, 2:]) * F32(0.5)
    pwh = rois[:, 2:] - rois[:, :2]
    gxy = pxy + pwh * dxy
    gwh = pwh * np.exp(dwh)
    return np.concatenate([gxy - gwh * F32(0.5), gxy + gwh * F32(0.5)], axis=1)


def test_mmdet_decode_centre_is_the_midpoint():
    # float32 RoI whose centres (x1 + x2) * 0.5 and x1 + 0.5 * w round apart (the y1 corner differs
    # by 32 ulp); exp(0) = 1 exactly, so the transcription's bits are mmdet's
    rois = np.array([[0.25722128, 0.01007567, 0.9188966, 0.7526967]], F32)
    d = np.array([[0.5, -0.25, 0.0, 0.0]], F32)
    stds = (0.1, 0.1, 0.2, 0.2)
    want = _mmdet_delta2bbox32(rois, d, stds)
    got = decode_boxes(d, rois, weights=stds, convention="mmdet")
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    other = decode_boxes(d, rois, weights=stds, convention="mmdet", center="half_width")
    assert not np.array_equal(other, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_multiply_and_multiply_after_are_one_function(dtype):
    # torchvision decodes d / w then scales by the anchor; TF divides the same way: the forward and
    # the backward are bit-identical under the two modes, for every profile they are set in
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 100, (200, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(1, 50, (200, 2))], 1).astype(dtype)
    deltas = rng.normal(0, 2, (200, 8)).astype(dtype)
    dy = rng.normal(0, 1, (200, 8)).astype(dtype)
    for conv in ("torchvision", "tf", "paper"):
        outs = []
        for mode in ("multiply", "multiply_after"):
            kw = dict(weights=(10.0, 5.0, 2.5, 1.5), convention=conv, weight_mode=mode)
            y = decode_boxes(deltas, anchors, **kw)
            fy, cache = decode_boxes_forward(deltas, anchors, **kw)
            outs.append((y, fy, decode_boxes_backward(dy, cache)))
        (y1, f1, g1), (y2, f2, g2) = outs
        assert np.array_equal(y1, y2) and np.array_equal(f1, f2)
        for a, b in zip(g1, g2):
            assert np.array_equal(np.asarray(a), np.asarray(b))
