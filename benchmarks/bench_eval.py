"""COCO evaluation: refdet.evaluate_detections vs pycocotools COCOeval.evaluate() + accumulate().

Issue target: 5,000 images x 20 detections at most 1x pycocotools' time.
"""
import contextlib
import io

import numpy as np

from benchmarks._harness import Bench
from refdet.eval import evaluate_detections

N_IMG, N_DET, N_GT, N_CLS = 5000, 20, 7, 10


def _setup():
    rng = np.random.default_rng(0)
    gi = np.repeat(np.arange(N_IMG), N_GT)
    g_xy = rng.uniform(0, 400, (len(gi), 2))
    g_wh = rng.uniform(4, 200, (len(gi), 2))
    g_lab = rng.integers(0, N_CLS, len(gi))
    di = np.repeat(np.arange(N_IMG), N_DET)
    src = rng.integers(0, len(gi), len(di))
    d_xy = g_xy[src] + rng.normal(0, 6, (len(di), 2))
    d_wh = np.maximum(g_wh[src] + rng.normal(0, 6, (len(di), 2)), 1)
    d_lab = np.where(rng.random(len(di)) < 0.8, g_lab[src], rng.integers(0, N_CLS, len(di)))
    d_lab = np.where(gi[src] == di, d_lab, rng.integers(0, N_CLS, len(di)))
    scores = np.round(rng.random(len(di)), 3)
    gt = {"image_id": gi, "labels": g_lab, "boxes": np.concatenate([g_xy, g_wh], 1),
          "images": np.arange(N_IMG), "classes": np.arange(N_CLS)}
    dt = {"image_id": di, "labels": d_lab, "boxes": np.concatenate([d_xy, d_wh], 1), "scores": scores}
    state = {"gt": gt, "dt": dt}
    try:
        from pycocotools.coco import COCO
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = {"images": [{"id": int(i)} for i in range(N_IMG)],
                            "categories": [{"id": int(c)} for c in range(N_CLS)],
                            "annotations": [{"id": k + 1, "image_id": int(i), "category_id": int(c),
                                             "bbox": b.tolist(), "area": float(b[2] * b[3]), "iscrowd": 0}
                                            for k, (i, c, b) in enumerate(zip(gi, g_lab, gt["boxes"]))]}
            coco.createIndex()
            res = coco.loadRes([{"image_id": int(i), "category_id": int(c), "bbox": b.tolist(),
                                 "score": float(s)} for i, c, b, s in zip(di, d_lab, dt["boxes"], scores)])
        state["coco"] = (coco, res)
    except ImportError:
        pass
    return state


def _refdet(s):
    return evaluate_detections(s["dt"], s["gt"], box_format="xywh")


def _pycoco(s):
    from pycocotools.cocoeval import COCOeval
    coco, res = s["coco"]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
    return ev


def _have_pycoco():
    try:
        import pycocotools  # noqa: F401
        return True
    except ImportError:
        return False


BENCHMARKS = [
    Bench(f"COCO eval {N_IMG} images x {N_DET} dets", _setup, _refdet,
          other=_pycoco if _have_pycoco() else None, other_name="pycocotools evaluate+accumulate",
          target=1.0, repeat=3),
]
