"""Pins of ``decode_boxes_forward``'s convention values (issue 19 item 2,
mutation/convention_coverage.md): mmdet's midpoint centre and detectron2's float32 decode, on the
forward that IoU losses differentiate through (its own registry entry, so its own pins).
"""
import numpy as np
import pytest

from refdet.box_coder import decode_boxes, decode_boxes_backward, decode_boxes_forward
from tests.test_box_coder_conventions_pinned import _mmdet_delta2bbox32

F32 = np.float32


@pytest.mark.parametrize("center", [None, "midpoint"])
def test_forward_mmdet_centre_is_the_midpoint(center):
    # a float32 RoI whose centres (x1 + x2) * 0.5 and x1 + 0.5 * w round apart; exp(0) = 1 exactly,
    # so the transcription's bits are mmdet's
    rois = np.array([[0.25722128, 0.01007567, 0.9188966, 0.7526967]], F32)
    d = np.array([[0.5, -0.25, 0.0, 0.0]], F32)
    stds = (0.1, 0.1, 0.2, 0.2)
    want = _mmdet_delta2bbox32(rois, d, stds)
    got, cache = decode_boxes_forward(d, rois, weights=stds, convention="mmdet", center=center)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    other, _ = decode_boxes_forward(d, rois, weights=stds, convention="mmdet", center="half_width")
    assert not np.array_equal(other, want)
    # the cache's anchor sizes are the same either way (the centre does not enter the backward)
    assert cache.widths.tolist() == [[rois[0, 2] - rois[0, 0]]]


def test_forward_detectron2_decodes_float64_deltas_in_float32():
    # detectron2 Box2BoxTransform.apply_deltas: deltas.float(), boxes.to(deltas.dtype): float64 codes
    # give the float32 answer (the same bits as decoding the float32-cast codes and anchors)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (6, 2))
    anchors = np.concatenate([xy, xy + rng.uniform(1, 50, (6, 2))], 1)
    d = rng.normal(0, 1, (6, 4))
    got, cache = decode_boxes_forward(d, anchors, weights=(10, 10, 5, 5), convention="detectron2")
    assert got.dtype == F32 and cache.pred_w.dtype == F32
    want = decode_boxes(d.astype(F32), anchors.astype(F32), weights=(10, 10, 5, 5))
    np.testing.assert_array_equal(got, want)
    g = decode_boxes_backward(np.ones((6, 4)), cache).ddeltas
    assert g.dtype == F32
    off, _ = decode_boxes_forward(d, anchors, weights=(10, 10, 5, 5), convention="detectron2", float32_deltas=False)
    assert off.dtype == np.float64
