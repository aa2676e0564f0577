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


# ----------------------------------------------------------------------------------------- encode

from refdet.box_coder import encode_boxes  # noqa: E402


@pytest.mark.parametrize("kw, want", [
    # anchor [0, 0, 10, 20] (w 10, h 20, centre (5, 10)), gt [2, 2, 12, 22] (same size, centre (7, 12)),
    # weights (10, 10, 5, 5): dx = 10 * 2 / 10 = 2, dy = 10 * 2 / 20 = 1, dw = dh = 5 log 1 = 0
    ({}, [2.0, 1.0, 0.0, 0.0]),
    ({"order": "yx"}, [1.0, 2.0, 0.0, 0.0]),                     # TF's (ty, tx, th, tw)
    ({"weight_mode": "divide"}, [0.02, 0.01, 0.0, 0.0]),         # stds: (2 / 10) / 10, (2 / 20) / 10
])
def test_encode_golden(kw, want):
    got = encode_boxes(np.array([[2.0, 2.0, 12.0, 22.0]]), np.array([[0.0, 0.0, 10.0, 20.0]]),
                       weights=(10.0, 10.0, 5.0, 5.0), **kw)
    np.testing.assert_allclose(got, [want], rtol=1e-15, atol=0)


def test_encode_eps_adds_to_the_sizes():
    # torchvision adds nothing (eps 0): dx = 2 exactly; TF adds 1e-8 to every size: 10 * 2 / (10 + 1e-8)
    a, g = np.array([[0.0, 0.0, 10.0, 20.0]]), np.array([[2.0, 2.0, 12.0, 22.0]])
    assert encode_boxes(g, a, weights=(10.0, 10.0, 5.0, 5.0))[0, 0] == 2.0
    got = encode_boxes(g, a, weights=(10.0, 10.0, 5.0, 5.0), eps=1e-8)[0, 0]
    assert got != 2.0 and abs(got - 20 / (10 + 1e-8)) < 1e-15


def _encode32(g, a, w, after):
    """torchvision encode_boxes (wx * (gx - ax) / aw) or TF's faster_rcnn_box_coder ((gx - ax) / aw * wx),
    float32, half-width centres, eps 0, dx and dy only."""
    f = np.float32
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    ax, ay = a[:, 0] + f(0.5) * aw, a[:, 1] + f(0.5) * ah
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    gx, gy = g[:, 0] + f(0.5) * gw, g[:, 1] + f(0.5) * gh
    if after:
        return np.stack([(gx - ax) / aw * f(w[0]), (gy - ay) / ah * f(w[1])], 1)
    return np.stack([f(w[0]) * (gx - ax) / aw, f(w[1]) * (gy - ay) / ah], 1)


def test_encode_multiply_vs_multiply_after_bits():
    # float32 pair where the two orders round apart (dx: -0.10516448 vs -0.10516447)
    a = np.array([[13.748468, 32.87165, 82.49062, 66.00249]], F32)
    g = np.array([[13.074777, 34.564625, 81.71847, 67.33433]], F32)
    w = (10.0, 10.0, 5.0, 5.0)
    for mode, after in (("multiply", False), ("multiply_after", True)):
        want = _encode32(g, a, w, after)
        got = encode_boxes(g, a, weights=w, weight_mode=mode)[:, :2]
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert not np.array_equal(_encode32(g, a, w, True), _encode32(g, a, w, False))
