"""Pins of SimOTA's ``candidates`` and ``inf_cost`` values (issue 19 item 2,
mutation/convention_coverage.md): YOLOX main's centre-only prior against YOLOX v0.1 / mmdet's
box-or-centre candidates, and YOLOX's 1e6 against v0.1's 1e5 for a pair outside the prior.
"""
import math

import numpy as np
import pytest

from refdet.yolo.assign import simota_assign

GT = np.array([[0.0, 0.0, 100.0, 100.0]])        # centre (50, 50)
STRIDES = np.full(2, 8.0)


@pytest.mark.parametrize("conv, kw, assigned", [("yolox", {}, False), ("yolox", {"candidates": "center"}, False),
                                                ("yolox", {"candidates": "box_or_center"}, True),
                                                ("paper", {}, True)])
def test_yolox_candidates_are_centre_points_only(conv, kw, assigned):
    # the one point (90, 50) is inside the gt box but 40 px from its centre (> 1.5 * 8 and 2.5 * 8).
    # YOLOX main get_geometry_constraint: anchor_filter = is_in_centers only: no candidate, nothing
    # assigned. v0.1 get_in_boxes_info: in box OR in centre: a candidate (paying inf_cost) and, the
    # only one, the gt's match (dynamic k = max(1, int(IoU)) = 1)
    pts = np.array([[90.0, 50.0]])
    pred = np.array([[0.0, 0.0, 100.0, 50.0]])
    a = simota_assign(np.ones((1, 1)), pred, pts, STRIDES[:1], np.array([0]), GT, convention=conv, **kw)
    assert a.gt_index.tolist() == ([0] if assigned else [-1])


@pytest.mark.parametrize("conv, kw, winner", [("yolox", {}, 0), ("yolox", {"inf_cost": 1e6}, 0),
                                              ("yolox", {"inf_cost": 1e5}, 1), ("paper", {}, 1),
                                              ("paper", {"inf_cost": 1e5}, 1), ("paper", {"inf_cost": 1e6}, 0)])
def test_inf_cost_against_a_costly_point_inside_the_prior(conv, kw, winner):
    # point 0 (50, 50): inside the prior, p = e^-100 for the gt's class: class cost BCE(e^-50, 1) = 50,
    # times cls_weight 1e4 = 5e5. point 1 (90, 50): in the box, outside the centre square (the prior is
    # in box AND in centre): p = 1, class cost 0, plus inf_cost. Both predict [0, 0, 100, 50] (IoU 0.5,
    # 3 * -log(0.5) = 2.08 each); dynamic k = int(0.5 + 0.5) = 1: the cheaper point wins.
    # inf 1e6: 500002.08 < 1000002.08 -> point 0; inf 1e5: 100002.08 < 500002.08 -> point 1
    pts = np.array([[50.0, 50.0], [90.0, 50.0]])
    pred = np.array([[0.0, 0.0, 100.0, 50.0]] * 2)
    scores = np.array([[math.exp(-100.0)], [1.0]])
    a = simota_assign(scores, pred, pts, STRIDES, np.array([0]), GT, convention=conv, cls_weight=1e4,
                      **dict({"candidates": "box_or_center"}, **kw))
    assert (a.gt_index >= 0).nonzero()[0].tolist() == [winner]
