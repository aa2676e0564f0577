"""Hardening of refdet.matcher: thresholds outside [0, 1] refused, the empty-gt error names `iou`."""
import numpy as np
import pytest

import refdet

IOU = np.array([[0.8, 0.2, 0.5], [0.1, 0.6, 0.35]])


@pytest.mark.parametrize("kw,name", [({"high": 1.5}, "high"), ({"low": -0.5}, "low"), ({"high": float("nan")}, "high"),
                                     ({"low": float("inf")}, "low")])
@pytest.mark.parametrize("fn", [refdet.match, refdet.match_details])
def test_match_thresholds_outside_unit_interval_refused(fn, kw, name):
    with pytest.raises(ValueError, match=f"`{name}` must"):
        fn(IOU, **kw)


@pytest.mark.parametrize("v", [-1.5, 1.5, float("inf")])
def test_min_pos_iou_is_minus_inf_or_a_quality(v):
    with pytest.raises(ValueError, match="`min_pos_iou`"):
        refdet.match(IOU, min_pos_iou=v)
    # -inf (no gate, the torchvision profile's value) and [0, 1] are answers
    assert refdet.match(IOU, min_pos_iou=-np.inf).tolist() == refdet.match(IOU).tolist()
    assert refdet.match(IOU, min_pos_iou=0.0).shape == (3,)
    assert refdet.match(IOU, min_pos_iou=-1.0).shape == (3,)      # a GIoU gate


@pytest.mark.parametrize("v", [1.5, -0.5, float("nan")])
def test_ssd_match_threshold_refused(v):
    with pytest.raises(ValueError, match="`threshold` must"):
        refdet.ssd_match(IOU, v)

