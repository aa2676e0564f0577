import numpy as np

from tests.contract import Bad, Case


def _scene(rng):
    gt = {"image_id": np.array([0, 0, 1]), "labels": np.array([1, 2, 1]),
          "boxes": np.array([[0, 0, 10, 10], [5, 5, 30, 40], [2, 2, 8, 9]], float)}
    dt = {"image_id": np.array([0, 1, 1]), "labels": np.array([1, 1, 2]),
          "boxes": np.array([[0, 1, 10, 10], [2, 2, 8, 8], [0, 0, 3, 3]], float),
          "scores": rng.random(3)}
    return dt, gt


def _ap(rng):
    rec = np.sort(rng.random(5))
    return (rec, rng.random(5)), {}


CASES = [
    Case("average_precision", _ap),
    Case("evaluate_detections", lambda r: (_scene(r), {})),
    Case("evaluate_detections", lambda r: (_scene(r), {"style": "voc"})),
]

BAD = [
    Bad("evaluate_detections", lambda r: (_scene(r), {"style": "kitti"}), ValueError, "`style`"),
    Bad("evaluate_detections", lambda r: (("boxes", _scene(r)[1]), {}), TypeError, "`detections`"),
    Bad("evaluate_detections", lambda r: (({**_scene(r)[0], "labels": np.array([1, 1, 9])}, _scene(r)[1]), {}),
        ValueError, "unknown class"),
    Bad("evaluate_detections", lambda r: (({**_scene(r)[0], "scores": np.array([0.5, np.nan, 1])}, _scene(r)[1]),
                                          {}), ValueError, "NaN"),
    Bad("average_precision", lambda r: (([0.1, 0.2], [1.0]), {}), ValueError, "same length"),
]

EXEMPT = {"COCOResult": "result dataclass", "VOCResult": "result dataclass",
          "COCO_AREA_RANGES": "constant"}
