import numpy as np

from tests.contract import Bad, Case


def _scene(rng):
    gt = {"image_id": np.array([0, 0, 1]), "labels": np.array([1, 2, 1]),
          "boxes": np.array([[0, 0, 10, 10], [5, 5, 30, 40], [2, 2, 8, 9]], float)}
    dt = {"image_id": np.array([0, 1, 1]), "labels": np.array([1, 1, 2]),
          "boxes": np.array([[0, 1, 10, 10], [2, 2, 8, 8], [0, 0, 3, 3]], float),
          "scores": rng.random(3)}
    return dt, gt


def _coco(rng):
    gt = {"images": [{"id": 3}, {"id": 4}], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
          "annotations": [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [0.0, 0.0, 10.0, 10.0], "area": 100.0,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 4, "category_id": 2, "bbox": [5.0, 5.0, 20.0, 30.0], "area": 600.0,
                           "iscrowd": 1}]}
    dt = [{"image_id": 3, "category_id": 1, "bbox": [0.0, 1.0, 10.0, 9.0], "score": float(rng.random())},
          {"image_id": 4, "category_id": 2, "bbox": [5.0, 5.0, 10.0, 10.0], "score": float(rng.random())}]
    return dt, gt


def _per_image(rng, difficult=False):
    gt = [{"boxes": np.array([[0, 0, 10, 10], [5, 5, 30, 40]], float), "labels": np.array([1, 2])},
          {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}]
    if difficult:
        gt[0]["difficult"], gt[1]["difficult"] = np.array([False, True]), np.zeros(0, bool)
    dt = [{"boxes": np.array([[0, 1, 10, 10]], float), "scores": rng.random(1), "labels": np.array([1])},
          {"boxes": np.array([[2, 2, 8, 8]], float), "scores": rng.random(1), "labels": np.array([2])}]
    return dt, gt


def _ap(rng):
    rec = np.sort(rng.random(5))
    return (rec, rng.random(5)), {}


CASES = [
    Case("average_precision", _ap),
    Case("average_precision", lambda r: (_per_image(r), {})),
    Case("evaluate_detections", lambda r: (_scene(r), {})),
    Case("evaluate_detections", lambda r: (_scene(r), {"style": "voc"})),
    Case("evaluate_detections", lambda r: (_coco(r), {})),
    Case("evaluate_detections", lambda r: (_per_image(r), {})),
    Case("evaluate_detections", lambda r: (_per_image(r, difficult=True), {})),
]

BAD = [
    Bad("evaluate_detections", lambda r: (_scene(r), {"style": "kitti"}), ValueError, "`style`"),
    Bad("evaluate_detections", lambda r: (_scene(r), {"format": "kitti"}), ValueError, "`format`"),
    Bad("evaluate_detections", lambda r: (("boxes", _scene(r)[1]), {}), TypeError, "`detections`"),
    Bad("evaluate_detections", lambda r: (({**_scene(r)[0], "labels": np.array([1, 1, 9])}, _scene(r)[1]), {}),
        ValueError, "unknown class"),
    Bad("evaluate_detections", lambda r: (({**_scene(r)[0], "scores": np.array([0.5, np.nan, 1])}, _scene(r)[1]),
                                          {}), ValueError, "NaN"),
    Bad("evaluate_detections", lambda r: (([{**_coco(r)[0][0], "bbox": [0, 0, 1]}], _coco(r)[1]), {}),
        ValueError, r"`detections\[0\]\['bbox'\]`"),
    Bad("evaluate_detections", lambda r: ((_per_image(r)[0][:1], _per_image(r)[1]), {}),
        ValueError, "one dict per image"),
    Bad("evaluate_detections", lambda r: (([{**_per_image(r)[0][0], "scores": np.ones(3)}] + _per_image(r)[0][1:],
                                           _per_image(r)[1]), {}), ValueError, r"`detections\[0\]\['scores'\]`"),
    Bad("average_precision", lambda r: (([0.1, 0.2], [1.0]), {}), ValueError, "same length"),
    Bad("average_precision", lambda r: (([0.1], [1.0]), {"method": "voc2012"}), ValueError, "`method`"),
]

EXEMPT = {"COCOResult": "result dataclass", "VOCResult": "result dataclass",
          "COCO_AREA_RANGES": "constant"}
