"""COCO evaluation: refdet.evaluate_detections vs pycocotools and faster-coco-eval (evaluate + accumulate).

Issue 17 targets, 5,000 images x 20 detections (7 ground truths an image, 10 classes, scores
rounded to 3 digits so that ties occur): at most 0.2x pycocotools' time and at most 1x
faster-coco-eval's (its per-image matching and accumulation are C++; its IoUs are computed per
(image, class) pair in Python). Both libraries are timed from already-built ``COCO`` objects
(``evaluate()`` + ``accumulate()``, without ``loadRes``); refdet is timed from its columns and,
separately, from pycocotools' dicts (the conversion of 100,000 result dicts included).
"""
import contextlib
import copy
import io

import numpy as np

from benchmarks._harness import Bench
from refdet.eval import evaluate_detections

N_IMG, N_DET, N_GT, N_CLS = 5000, 20, 7, 10


def _scene():
    rng = np.random.default_rng(0)
    gi = np.repeat(np.arange(N_IMG), N_GT)
    g_xy = rng.uniform(0, 400, (len(gi), 2))
    g_wh = rng.uniform(4, 200, (len(gi), 2))
    g_lab = rng.integers(0, N_CLS, len(gi))
    di = np.repeat(np.arange(N_IMG), N_DET)
    # each detection is a jittered copy of a ground truth of its own image (several per object: the
    # duplicates NMS leaves), with the right class 80% of the time; a fifth are random boxes
    src = di * N_GT + rng.integers(0, N_GT, len(di))
    d_xy = g_xy[src] + rng.normal(0, 6, (len(di), 2))
    d_wh = np.maximum(g_wh[src] * np.exp(rng.normal(0, 0.1, (len(di), 2))), 1)
    stray = rng.random(len(di)) < 0.2
    d_xy[stray] = rng.uniform(0, 400, (stray.sum(), 2))
    d_lab = np.where(rng.random(len(di)) < 0.8, g_lab[src], rng.integers(0, N_CLS, len(di)))
    scores = np.round(rng.random(len(di)), 3)
    gt = {"image_id": gi, "labels": g_lab, "boxes": np.concatenate([g_xy, g_wh], 1),
          "images": np.arange(N_IMG), "classes": np.arange(N_CLS)}
    dt = {"image_id": di, "labels": d_lab, "boxes": np.concatenate([d_xy, d_wh], 1), "scores": scores}
    coco_gt = {"images": [{"id": int(i)} for i in range(N_IMG)],
               "categories": [{"id": int(c)} for c in range(N_CLS)],
               "annotations": [{"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": b.tolist(),
                                "area": float(b[2] * b[3]), "iscrowd": 0}
                               for k, (i, c, b) in enumerate(zip(gi, g_lab, gt["boxes"]))]}
    coco_dt = [{"image_id": int(i), "category_id": int(c), "bbox": b.tolist(), "score": float(s)}
               for i, c, b, s in zip(di, d_lab, dt["boxes"], scores)]
    return {"gt": gt, "dt": dt, "coco_gt": coco_gt, "coco_dt": coco_dt}


def _setup_pycocotools():
    s = _scene()
    try:
        from pycocotools.coco import COCO
    except ImportError:
        return s
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(s["coco_gt"])
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(s["coco_dt"]))
    s["pycocotools"] = (coco, res)
    return s


def _setup_faster():
    s = _scene()
    try:
        from faster_coco_eval import COCO
    except ImportError:
        return s
    coco = COCO(copy.deepcopy(s["coco_gt"]))
    s["faster"] = (coco, coco.loadRes(copy.deepcopy(s["coco_dt"])))
    return s


def _refdet_columns(s):
    return evaluate_detections(s["dt"], s["gt"], box_format="xywh")


def _refdet_coco(s):
    return evaluate_detections(s["coco_dt"], s["coco_gt"])


def _pycocotools(s):
    from pycocotools.cocoeval import COCOeval
    coco, res = s["pycocotools"]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
    return ev


def _faster(s):
    from faster_coco_eval import COCOeval_faster
    coco, res = s["faster"]
    ev = COCOeval_faster(coco, res, "bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    return ev


def _have(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


_PY, _FAST = _have("pycocotools"), _have("faster_coco_eval")
_NAME = f"COCO eval {N_IMG} img x {N_DET} dets"

BENCHMARKS = [
    Bench(f"{_NAME} (columns)", _setup_pycocotools, _refdet_columns,
          other=_pycocotools if _PY else None, other_name="pycocotools evaluate+accumulate",
          target=0.2, repeat=3),
    Bench(f"{_NAME} (columns)", _setup_faster, _refdet_columns,
          other=_faster if _FAST else None, other_name="faster-coco-eval evaluate+accumulate",
          target=1.0, repeat=5),
    Bench(f"{_NAME} (COCO dicts)", _setup_faster, _refdet_coco,
          other=_faster if _FAST else None, other_name="faster-coco-eval evaluate+accumulate",
          target=1.0, repeat=5),
]
