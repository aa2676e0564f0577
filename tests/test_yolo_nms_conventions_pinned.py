"""Pin of DIoU-NMS's darknet ``beta=0.6`` (mutation/convention_coverage.md): the distance penalty
(rho^2 / c^2)^beta decides a pair near the threshold.
"""
import math

import numpy as np

from refdet.yolo.nms import diou_nms


def test_darknet_beta_0_6_against_the_papers_1():
    # A = [0, 0, 10, 10], B = [1, 0, 11, 10]: IoU = 90 / 110 = 0.81818; rho^2 = 1, c^2 = 11^2 + 10^2 = 221.
    # beta 0.6: 0.81818 - (1/221)^0.6 = 0.81818 - 0.03922 = 0.77896 < 0.8: B kept.
    # beta 1:   0.81818 - 1/221 = 0.81366 > 0.8: B suppressed.
    iou, d = 90 / 110, 1 / 221
    assert iou - d ** 0.6 < 0.8 < iou - d
    b = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    s = np.array([0.9, 0.8])
    assert diou_nms(b, s, 0.8, convention="darknet").tolist() == [0, 1]
    assert diou_nms(b, s, 0.8, convention="darknet", beta=1.0).tolist() == [0]
    assert diou_nms(b, s, 0.8, convention="paper").tolist() == [0]
    assert diou_nms(b, s, 0.8, convention="paper", beta=0.6).tolist() == [0, 1]
    assert math.isclose(d ** 0.6, 0.0392, rel_tol=1e-2)
