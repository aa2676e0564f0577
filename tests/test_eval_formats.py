"""refdet.eval in the ecosystem's formats: differential tests against pycocotools, faster-coco-eval
and a loop transcription of the VOC devkit's voc_eval.py; the JSON readers on malformed files; the
`refdet eval` command run as the installed console script.

One random scene is written in every format (refdet's columns in xyxy and xywh, COCO dicts, COCO
JSON files, torchvision per-image dicts, VOC per-image dicts) and every format must give the same
arrays as each other, bit for bit, and as the reference library to 1e-12.
"""
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.eval import average_precision, evaluate_detections
from refdet.eval.formats import detect_format

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATOL = 1e-12


# ---------------------------------------------------------------------------------------------
# a scene, and the scene in every format
# ---------------------------------------------------------------------------------------------

def make_scene(rng, *, n_img=4, n_cls=3, max_gt=6, max_dt=12, grid=True, crowd_frac=0.15, tie_scores=True,
               own_area_frac=0.2, many_dets_image=False):
    """Random images with ground truths and detections, ids deliberately not 0..n-1.

    Boxes are xyxy; on a 4-pixel grid (IoUs that hit thresholds exactly) or continuous. Some images
    are empty, some classes have detections but no ground truth, scores tie when ``tie_scores``;
    ``many_dets_image`` gives one image 100-160 detections (past COCO's maxDets=100).
    """
    image_ids = sorted(rng.choice(np.arange(1, 1000), n_img, replace=False).tolist())
    cat_ids = sorted(rng.choice(np.arange(1, 100), n_cls, replace=False).tolist())

    def box():
        if grid:
            x, y = rng.integers(0, 60, 2) * 4.0
            w, h = rng.integers(1, 40, 2) * 4.0
        else:
            x, y = rng.uniform(0, 240, 2)
            w, h = rng.uniform(0.5, 160, 2)
        return np.array([x, y, x + w, y + h])

    gts, dts = [], []
    for n, img in enumerate(image_ids):
        for _ in range(rng.integers(0, max_gt + 1)):
            b = box()
            wh = b[2:] - b[:2]
            area = float(wh[0] * wh[1]) if rng.random() > own_area_frac else float(rng.uniform(1, 12000))
            gts.append({"image_id": img, "category_id": int(rng.choice(cat_ids)), "xyxy": b,
                        "iscrowd": bool(rng.random() < crowd_frac), "area": area, "id": len(gts) + 1,
                        "difficult": bool(rng.random() < 0.2)})
        nd = rng.integers(100, 161) if (many_dets_image and n == 0) else rng.integers(0, max_dt + 1)
        own = [g for g in gts if g["image_id"] == img]
        for _ in range(nd):
            if own and rng.random() < 0.7:
                g = own[rng.integers(len(own))]
                jit = (rng.integers(-3, 4, 4) * 4.0) if grid else rng.normal(0, 4, 4)
                b = g["xyxy"] + jit
                b[2:] = np.maximum(b[2:], b[:2] + (4.0 if grid else 0.5))
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
            else:
                b, cat = box(), int(rng.choice(cat_ids))
            score = float(rng.integers(0, 5) / 4) if tie_scores else float(rng.random())
            dts.append({"image_id": img, "category_id": cat, "xyxy": b, "score": score})
    return {"image_ids": image_ids, "cat_ids": cat_ids, "gts": gts, "dts": dts}


def _xywh(b):
    # the conversion refdet makes from xyxy: (x1, y1, x2 - x1, y2 - y1) in float64
    return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]


def coco_gt(scene, *, cats=None):
    cats = scene["cat_ids"] if cats is None else cats
    return {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in scene["image_ids"]],
            "categories": [{"id": c, "name": f"class{c}"} for c in cats],
            "annotations": [{"id": g["id"], "image_id": g["image_id"], "category_id": g["category_id"],
                             "bbox": _xywh(g["xyxy"]), "area": g["area"], "iscrowd": int(g["iscrowd"])}
                            for g in scene["gts"]]}


def coco_dt(scene):
    return [{"image_id": d["image_id"], "category_id": d["category_id"], "bbox": _xywh(d["xyxy"]),
             "score": d["score"]} for d in scene["dts"]]


def columns(scene, box_format="xyxy"):
    def boxes(rows):
        b = np.array([r["xyxy"] for r in rows], float).reshape(-1, 4)
        return b if box_format == "xyxy" else np.array([_xywh(r) for r in b]).reshape(-1, 4)
    gts, dts = scene["gts"], scene["dts"]
    gt = {"image_id": np.array([g["image_id"] for g in gts], np.int64),
          "labels": np.array([g["category_id"] for g in gts], np.int64), "boxes": boxes(gts),
          "iscrowd": np.array([g["iscrowd"] for g in gts], bool), "area": np.array([g["area"] for g in gts]),
          "images": np.array(scene["image_ids"], np.int64), "classes": np.array(scene["cat_ids"], np.int64)}
    dt = {"image_id": np.array([d["image_id"] for d in dts], np.int64),
          "labels": np.array([d["category_id"] for d in dts], np.int64), "boxes": boxes(dts),
          "scores": np.array([d["score"] for d in dts])}
    return dt, gt


def per_image(scene, *, difficult=False):
    """torchvision / torchmetrics lists (``difficult`` adds the VOC flags), images in id order."""
    gts, dts = [], []
    for img in scene["image_ids"]:
        g = [r for r in scene["gts"] if r["image_id"] == img]
        d = [r for r in scene["dts"] if r["image_id"] == img]
        t = {"boxes": np.array([r["xyxy"] for r in g]).reshape(-1, 4),
             "labels": np.array([r["category_id"] for r in g], np.int64),
             "iscrowd": np.array([r["iscrowd"] for r in g], np.int64),
             "area": np.array([r["area"] for r in g], float)}
        if difficult:
            t["difficult"] = np.array([r["difficult"] for r in g], bool)
        gts.append(t)
        dts.append({"boxes": np.array([r["xyxy"] for r in d]).reshape(-1, 4),
                    "scores": np.array([r["score"] for r in d]),
                    "labels": np.array([r["category_id"] for r in d], np.int64)})
    return dts, gts


def used_classes(scene):
    return sorted({g["category_id"] for g in scene["gts"]} | {d["category_id"] for d in scene["dts"]})


# ---------------------------------------------------------------------------------------------
# the reference libraries
# ---------------------------------------------------------------------------------------------

def run_pycocotools(gt, dt):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        res = coco.loadRes(copy.deepcopy(dt))  # loadRes writes into the dicts
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        start = out.tell()
        ev.summarize()
    return ev, out.getvalue()[start:]


def run_faster(gt, dt):
    pytest.importorskip("faster_coco_eval")
    from faster_coco_eval import COCO, COCOeval_faster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco = COCO(copy.deepcopy(gt))
        res = coco.loadRes(copy.deepcopy(dt))
        ev = COCOeval_faster(coco, res, "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_same_as(res, ev, what=""):
    np.testing.assert_allclose(res.precision, ev.eval["precision"], rtol=0, atol=ATOL, err_msg=f"precision {what}")
    np.testing.assert_allclose(res.recall, ev.eval["recall"], rtol=0, atol=ATOL, err_msg=f"recall {what}")
    np.testing.assert_allclose(res.scores, ev.eval["scores"], rtol=0, atol=ATOL, err_msg=f"scores {what}")
    np.testing.assert_allclose(res.stats, np.asarray(ev.stats)[:12], rtol=0, atol=ATOL, err_msg=f"stats {what}")


def assert_identical(a, b, what):
    for field in ("stats", "precision", "recall", "scores", "classes"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), f"{what}: {field} differs"


def every_format(scene, folder):
    """{name: COCOResult} of the scene evaluated from each format (classes = the labels used)."""
    scene = dict(scene, cat_ids=used_classes(scene))
    gt, dt = coco_gt(scene), coco_dt(scene)
    gt_path, dt_path = os.path.join(folder, "gt.json"), os.path.join(folder, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)
    out = {"coco": evaluate_detections(dt, gt), "coco-json": evaluate_detections(dt_path, gt_path),
           "refdet-xyxy": evaluate_detections(*columns(scene)),
           "refdet-xywh": evaluate_detections(*columns(scene, "xywh"), box_format="xywh"),
           "torchvision": evaluate_detections(*per_image(scene)),
           "voc-as-coco": evaluate_detections(*per_image(scene, difficult=True), style="coco")}
    return out, gt, dt


# ---------------------------------------------------------------------------------------------
# COCO: every format against pycocotools and faster-coco-eval
# ---------------------------------------------------------------------------------------------

@given(seed=st.integers(0, 2 ** 32 - 1), grid=st.booleans(), ties=st.booleans(),
       n_img=st.integers(1, 6), n_cls=st.integers(1, 4))
def test_every_format_equals_pycocotools(seed, grid, ties, n_img, n_cls):
    pytest.importorskip("pycocotools")
    scene = make_scene(np.random.default_rng(seed), n_img=n_img, n_cls=n_cls, grid=grid, tie_scores=ties)
    if not scene["dts"]:
        return  # pycocotools' loadRes cannot load an empty list (see test_empty_results)
    with tempfile.TemporaryDirectory() as folder:
        results, gt, dt = every_format(scene, folder)
    ev, printed = run_pycocotools(gt, dt)
    for name, res in results.items():
        assert_identical(res, results["coco"], name)
    assert_same_as(results["coco"], ev)
    assert results["coco"].summary() + "\n" == printed


@given(seed=st.integers(0, 2 ** 32 - 1), grid=st.booleans(), ties=st.booleans(),
       n_img=st.integers(1, 6), n_cls=st.integers(1, 4))
def test_every_format_equals_faster_coco_eval(seed, grid, ties, n_img, n_cls):
    pytest.importorskip("faster_coco_eval")
    scene = make_scene(np.random.default_rng(seed), n_img=n_img, n_cls=n_cls, grid=grid, tie_scores=ties)
    with tempfile.TemporaryDirectory() as folder:
        results, gt, dt = every_format(scene, folder)
    ev = run_faster(gt, dt)
    for name, res in results.items():
        assert_identical(res, results["coco"], name)
    assert_same_as(results["coco"], ev)


@pytest.mark.parametrize("seed", range(4))
def test_more_than_100_detections_in_an_image(seed):
    # maxDets=100 truncates per (image, class); many crowds (matched many times) on top
    scene = make_scene(np.random.default_rng(100 + seed), n_img=3, n_cls=2, max_gt=25, crowd_frac=0.3,
                       many_dets_image=True)
    assert max(sum(d["image_id"] == i for d in scene["dts"]) for i in scene["image_ids"]) > 100
    with tempfile.TemporaryDirectory() as folder:
        results, gt, dt = every_format(scene, folder)
    for name, res in results.items():
        assert_identical(res, results["coco"], name)
    for run in (run_pycocotools, run_faster):
        try:
            ev = run(gt, dt)
        except pytest.skip.Exception:
            continue
        assert_same_as(results["coco"], ev[0] if isinstance(ev, tuple) else ev, run.__name__)


def test_categories_and_images_without_boxes():
    # category 7 has no gt and no detection, 8 only a detection; image 50 is empty; image 60 has
    # only a detection. pycocotools keeps precision/recall -1 for 7 and 8 and counts image 60's FP.
    gt = {"images": [{"id": 40}, {"id": 50}, {"id": 60}],
          "categories": [{"id": 3}, {"id": 7}, {"id": 8}],
          "annotations": [{"id": 1, "image_id": 40, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100,
                           "iscrowd": 0}]}
    dt = [{"image_id": 40, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.5},
          {"image_id": 60, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 40, "category_id": 8, "bbox": [0, 0, 10, 10], "score": 0.7}]
    res = evaluate_detections(dt, gt)
    assert res.classes.tolist() == [3, 7, 8]
    assert (res.precision[:, :, 1:] == -1).all() and (res.recall[:, 1:] == -1).all()
    # class 3: FP (0.9) then TP (0.5): precision 1/2 at recall 1 -> AP 0.5 at every threshold
    np.testing.assert_allclose(res.stats[0], 0.5, rtol=0, atol=ATOL)
    for run in (run_pycocotools, run_faster):
        try:
            ev = run(gt, dt)
        except pytest.skip.Exception:
            continue
        assert_same_as(res, ev[0] if isinstance(ev, tuple) else ev, run.__name__)


def test_empty_results():
    # pycocotools' loadRes fails on []; faster-coco-eval evaluates it: AP 0 where defined
    scene = make_scene(np.random.default_rng(5), n_img=3, n_cls=2)
    gt = coco_gt(scene)
    res = evaluate_detections([], gt)
    assert ((res.stats == 0) | (res.stats == -1)).all() and res.stats[0] == 0
    ev = run_faster(gt, [])
    assert_same_as(res, ev)


def test_annotation_id_zero_counts_as_unmatched_like_pycocotools():
    # COCOeval stores the matched gt's id in dtMatches and tests it for nonzero: a match to
    # annotation id 0 is a false positive (and the gt is used up). refdet reproduces it and warns.
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": 0, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                           "iscrowd": 0},
                          {"id": 5, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "area": 100,
                           "iscrowd": 0}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
          {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.7}]
    with pytest.warns(UserWarning, match="annotation id 0"):
        res = evaluate_detections(dt, gt)
    # FP (id 0), FP (gt 0 used up), TP: recall 1/2, precision 1/3
    assert res.recall[0, 0, 0, -1] == 0.5
    for run in (run_pycocotools, run_faster):
        try:
            ev = run(gt, dt)
        except pytest.skip.Exception:
            continue
        assert_same_as(res, ev[0] if isinstance(ev, tuple) else ev, run.__name__)


def test_ignore_field_is_overwritten_by_iscrowd_as_in_pycocotools():
    scene = make_scene(np.random.default_rng(11), n_img=3, n_cls=2)
    gt, dt = coco_gt(scene), coco_dt(scene)
    flagged = copy.deepcopy(gt)
    for k, a in enumerate(flagged["annotations"]):
        a["ignore"] = int(k % 2 == 0)
    assert_identical(evaluate_detections(dt, flagged), evaluate_detections(dt, gt), "ignore")
    if dt:
        ev, _ = run_pycocotools(flagged, dt)
        assert_same_as(evaluate_detections(dt, flagged), ev)


def test_missing_area_and_iscrowd_default_to_box_area_and_zero():
    scene = make_scene(np.random.default_rng(12), n_img=3, n_cls=2, own_area_frac=0.0, crowd_frac=0.0)
    gt, dt = coco_gt(scene), coco_dt(scene)
    bare = copy.deepcopy(gt)
    for a in bare["annotations"]:
        del a["area"], a["iscrowd"]
    assert_identical(evaluate_detections(dt, bare), evaluate_detections(dt, gt), "defaults")


def test_string_image_ids_and_integral_float_ids():
    scene = make_scene(np.random.default_rng(13), n_img=4, n_cls=2)
    gt, dt = coco_gt(scene), coco_dt(scene)
    # zero-padded strings sort as the integers do
    sgt, sdt = copy.deepcopy(gt), copy.deepcopy(dt)
    for r in sgt["images"]:
        r["id"] = f"{r['id']:06d}"
    for r in sgt["annotations"] + sdt:
        r["image_id"] = f"{r['image_id']:06d}"
        r["category_id"] = float(r["category_id"])
    assert_identical(evaluate_detections(sdt, sgt), evaluate_detections(dt, gt), "string ids")


def test_ap_per_class_is_detectron2s_mean():
    scene = make_scene(np.random.default_rng(14), n_img=5, n_cls=3)
    res = evaluate_detections(coco_dt(scene), coco_gt(scene))
    for k in range(len(res.classes)):
        p = res.precision[:, :, k, 0, -1]  # detectron2 _derive_coco_results
        p = p[p > -1]
        want = np.mean(p) if p.size else float("nan")
        np.testing.assert_allclose(res.ap_per_class()[k], want, rtol=0, atol=ATOL, equal_nan=True)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    scene = make_scene(np.random.default_rng(15), n_img=3, n_cls=2)
    dts, gts = per_image(scene)
    tdts = [{k: torch.tensor(v, requires_grad=(k == "scores")) for k, v in d.items()} for d in dts]
    tgts = [{k: torch.tensor(v) for k, v in g.items()} for g in gts]
    assert_identical(evaluate_detections(tdts, tgts), evaluate_detections(dts, gts), "tensors")


def test_torchmetrics_boxes_in_other_formats():
    scene = make_scene(np.random.default_rng(16), n_img=3, n_cls=2)
    dts, gts = per_image(scene)
    for d in dts + gts:
        b = d["boxes"]
        d["boxes"] = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    assert_identical(evaluate_detections(dts, gts, box_format="xywh"), evaluate_detections(*per_image(scene)),
                     "xywh")


def test_average_precision_of_every_format():
    scene = make_scene(np.random.default_rng(17), n_img=4, n_cls=2)
    scene = dict(scene, cat_ids=used_classes(scene))
    want = evaluate_detections(coco_dt(scene), coco_gt(scene)).stats[0]
    for dt, gt in ((coco_dt(scene), coco_gt(scene)), columns(scene), per_image(scene)):
        assert average_precision(dt, gt) == want
    dts, gts = per_image(scene, difficult=True)
    assert average_precision(dts, gts) == evaluate_detections(dts, gts).map
    assert average_precision(dts, gts, method="coco101") == want


def test_format_detection_and_naming():
    scene = make_scene(np.random.default_rng(18), n_img=2, n_cls=2)
    assert detect_format(coco_dt(scene), coco_gt(scene)) == "coco"
    assert detect_format("dt.json", "gt.json") == "coco"
    assert detect_format(*columns(scene)) == "refdet"
    assert detect_format(*per_image(scene)) == "torchvision"
    assert detect_format(*per_image(scene, difficult=True)) == "voc"
    with pytest.raises(TypeError, match="ground_truths"):
        evaluate_detections(coco_dt(scene), coco_gt(scene), format="torchvision")
    with pytest.raises(TypeError, match="ground_truths"):
        evaluate_detections(*per_image(scene), format="refdet")
    with pytest.raises(ValueError, match="`format`"):
        evaluate_detections(*per_image(scene), format="kitti")
    with pytest.raises(ValueError, match="box_format"):
        evaluate_detections(coco_dt(scene), coco_gt(scene), box_format="xyxy")
    with pytest.raises(ValueError, match="ground_truths"):
        evaluate_detections({}, {"foo": 1})


def test_inputs_are_not_modified():
    scene = make_scene(np.random.default_rng(19), n_img=3, n_cls=2)
    inputs = [(coco_dt(scene), coco_gt(scene)), per_image(scene), per_image(scene, difficult=True)]
    for dt, gt in inputs:
        before = copy.deepcopy((dt, gt))
        evaluate_detections(dt, gt)
        assert repr(before) == repr((dt, gt))


# ---------------------------------------------------------------------------------------------
# COCO input errors: one ValueError naming the file (or argument) and the field
# ---------------------------------------------------------------------------------------------

GOOD_GT = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
                            "iscrowd": 0}]}
GOOD_DT = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}]


def _bad_dt(**change):
    d = copy.deepcopy(GOOD_DT)
    d[0].update(change)
    return d


def _bad_ann(**change):
    g = copy.deepcopy(GOOD_GT)
    g["annotations"][0].update(change)
    return g


@pytest.mark.parametrize("dt,gt,match", [
    (_bad_dt(bbox=[0, 0, 10]), GOOD_GT, r"`detections\[0\]\['bbox'\]` must be a list of 4 numbers"),
    (_bad_dt(bbox=[0, 0, "10", 10]), GOOD_GT, r"`detections\[0\]\['bbox'\]` must be a list of 4 numbers"),
    (_bad_dt(bbox=[0, 0, float("nan"), 10]), GOOD_GT, r"`detections\[0\]\['bbox'\]` must be finite"),
    (_bad_dt(score="high"), GOOD_GT, r"`detections\[0\]\['score'\]` must be a number"),
    (_bad_dt(image_id=3), GOOD_GT, r"`detections\[0\]\['image_id'\]` = 3 is not among"),
    (_bad_dt(category_id=2), GOOD_GT, r"`detections\[0\]\['category_id'\]` = 2 is not among"),
    (_bad_dt(image_id=True), GOOD_GT, r"`detections\[0\]\['image_id'\]` must be an integer"),
    (_bad_dt(image_id=2 ** 70), GOOD_GT, r"does not fit in 64 bits"),
    ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], GOOD_GT, r"`detections\[0\]` has no 'category_id'"),
    ([5], GOOD_GT, r"`detections\[0\]` must be an object"),
    ({"a": 1}, GOOD_GT, r"`detections` must be a COCO results list"),
    (GOOD_DT, _bad_ann(bbox=[0, 0, 10, 10, 3]), r"`ground_truths\['annotations'\]\[0\]\['bbox'\]`"),
    (GOOD_DT, _bad_ann(image_id=9), r"`ground_truths\['annotations'\]\[0\]\['image_id'\]` = 9 is not among"),
    (GOOD_DT, _bad_ann(area="big"), r"`ground_truths\['annotations'\]\[0\]\['area'\]` must be a number"),
    (GOOD_DT, {"images": [], "annotations": []}, r"`ground_truths` has no 'categories'"),
    (GOOD_DT, {**GOOD_GT, "annotations": GOOD_GT["annotations"] * 2}, r"repeats annotation id 1"),
])
def test_malformed_coco_input_names_the_field(dt, gt, match):
    with pytest.raises(ValueError, match=match):
        evaluate_detections(dt, gt, format="coco")


def _write(folder, name, content):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    return path


def test_malformed_json_files_name_the_file(tmp_path):
    folder = str(tmp_path)
    gt = _write(folder, "gt.json", json.dumps(GOOD_GT))
    cases = {
        "syntax.json": ('[{"image_id": 1,}]', r"syntax\.json' is not valid JSON: .* line 1 column"),
        "deep.json": ("[" * 200000 + "]" * 200000, r"deep\.json' nests JSON arrays/objects too deeply"),
        "bytes.json": (b"\xff\xfe\x00garbage", r"bytes\.json' is not UTF-8"),
        "digits.json": ("[" + "9" * 100000 + "]", r"digits\.json' cannot be parsed"),
        "field.json": (json.dumps(_bad_dt(bbox=[1, 2])), r"field\.json\[0\]\['bbox'\] must be a list of 4"),
        "object.json": (json.dumps({"image_id": 1}), r"object\.json must be a COCO results list"),
    }
    for name, (content, match) in cases.items():
        path = _write(folder, name, content)
        with pytest.raises(ValueError, match=match):
            evaluate_detections(path, gt)
    with pytest.raises(ValueError, match=r"results file '.*nosuch\.json' does not exist"):
        evaluate_detections(os.path.join(folder, "nosuch.json"), gt)
    big = _write(folder, "big.json", json.dumps(GOOD_DT))
    with pytest.raises(ValueError, match=r"big\.json' is \d+ bytes, more than the 10"):
        evaluate_detections(big, GOOD_GT, max_json_bytes=10)
    bad_gt = _write(folder, "badgt.json", json.dumps(_bad_ann(bbox=[0, 0, None, 1])))
    with pytest.raises(ValueError, match=r"badgt\.json\['annotations'\]\[0\]\['bbox'\]"):
        evaluate_detections(GOOD_DT, bad_gt)


# ---------------------------------------------------------------------------------------------
# VOC: per-image dicts against a loop transcription of voc_eval.py
# ---------------------------------------------------------------------------------------------

def voc_ap(rec, prec, use_07_metric=False):
    """voc_eval.py's voc_ap, verbatim."""
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def voc_eval(recs, detlines, imagenames, classname, ovthresh=0.5, use_07_metric=False, stable=True):
    """voc_eval.py (py-faster-rcnn lib/datasets/voc_eval.py) with the files replaced by their content.

    recs: {imagename: [{"name", "bbox" [x1, y1, x2, y2], "difficult"}]} (parse_rec's output);
    detlines: the class's detection file split in lines, [imagename, score, x1, y1, x2, y2].
    ``stable=False`` is the devkit's own ``np.argsort(-confidence)`` (quicksort: the order among
    equal scores is unspecified); ``stable=True`` breaks ties in file order, as refdet does.
    """
    class_recs = {}
    npos = 0
    for imagename in imagenames:
        R = [obj for obj in recs[imagename] if obj['name'] == classname]
        bbox = np.array([x['bbox'] for x in R])
        difficult = np.array([x['difficult'] for x in R]).astype(bool)
        det = [False] * len(R)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {'bbox': bbox, 'difficult': difficult, 'det': det}

    image_ids = [x[0] for x in detlines]
    confidence = np.array([float(x[1]) for x in detlines])
    BB = np.array([[float(z) for z in x[2:]] for x in detlines]).reshape(-1, 4)

    sorted_ind = np.argsort(-confidence, kind="stable" if stable else None)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]

    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R['bbox'].astype(float)

        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1., 0.)
            ih = np.maximum(iymax - iymin + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) *
                   (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)

        if ovmax > ovthresh:
            if not R['difficult'][jmax]:
                if not R['det'][jmax]:
                    tp[d] = 1.
                    R['det'][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.

    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):  # npos = 0: the devkit's division by zero
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = voc_ap(rec, prec, use_07_metric)
    return rec, prec, ap


def voc_files(scene):
    """The scene as voc_eval reads it: annotations per image, detection lines per class."""
    recs = {str(i): [{"name": str(g["category_id"]), "bbox": g["xyxy"].tolist(), "difficult": int(g["difficult"])}
                     for g in scene["gts"] if g["image_id"] == i] for i in scene["image_ids"]}
    lines = {}
    for img in scene["image_ids"]:  # per_image() lists detections image by image
        for d in scene["dts"]:
            if d["image_id"] == img:
                lines.setdefault(str(d["category_id"]), []).append([str(img), d["score"], *d["xyxy"].tolist()])
    return recs, lines


@given(seed=st.integers(0, 2 ** 32 - 1), use_07=st.booleans(), grid=st.booleans(), ties=st.booleans(),
       thr=st.sampled_from([0.5, 0.3, 0.7]))
def test_voc_per_image_dicts_equal_voc_eval(seed, use_07, grid, ties, thr):
    scene = make_scene(np.random.default_rng(seed), n_img=5, n_cls=3, grid=grid, tie_scores=ties)
    dts, gts = per_image(scene, difficult=True)
    res = evaluate_detections(dts, gts, method="voc2007" if use_07 else "voc2010", iou_threshold=thr)
    assert res.classes.tolist() == used_classes(scene)
    recs, lines = voc_files(scene)
    names = [str(i) for i in scene["image_ids"]]
    for k, c in enumerate(res.classes.tolist()):
        rec, prec, ap = voc_eval(recs, lines.get(str(c), []), names, str(c), ovthresh=thr, use_07_metric=use_07)
        np.testing.assert_array_equal(res.recall[k], rec)
        np.testing.assert_array_equal(res.precision[k], prec)
        if np.isnan(res.ap[k]):  # no non-difficult ground truth: the devkit divides by zero
            assert not any(g["category_id"] == c and not g["difficult"] for g in scene["gts"])
        else:
            np.testing.assert_allclose(res.ap[k], ap, rtol=0, atol=ATOL)
    assert res.map == pytest.approx(np.nanmean(res.ap), abs=ATOL) if not np.isnan(res.ap).all() else np.isnan(res.map)


@pytest.mark.parametrize("seed", range(6))
def test_voc_equals_verbatim_voc_eval_with_distinct_scores(seed):
    # with distinct scores the devkit's unstable argsort has one answer: compare with it verbatim
    scene = make_scene(np.random.default_rng(200 + seed), n_img=6, n_cls=2, tie_scores=False, max_dt=30)
    dts, gts = per_image(scene, difficult=True)
    recs, lines = voc_files(scene)
    names = [str(i) for i in scene["image_ids"]]
    for use_07 in (False, True):
        res = evaluate_detections(dts, gts, method="voc2007" if use_07 else "voc2010")
        for k, c in enumerate(res.classes.tolist()):
            rec, prec, ap = voc_eval(recs, lines.get(str(c), []), names, str(c), use_07_metric=use_07, stable=False)
            np.testing.assert_array_equal(res.precision[k], prec)
            if not np.isnan(res.ap[k]):
                np.testing.assert_allclose(res.ap[k], ap, rtol=0, atol=ATOL)


def test_voc_style_on_coco_input_and_columns_agree():
    scene = make_scene(np.random.default_rng(21), n_img=4, n_cls=2)
    scene = dict(scene, cat_ids=used_classes(scene))
    dts, gts = per_image(scene)
    a = evaluate_detections(dts, gts, style="voc")
    b = evaluate_detections(coco_dt(scene), coco_gt(scene), style="voc")
    c = evaluate_detections(*columns(scene), style="voc")
    for other in (b, c):
        np.testing.assert_array_equal(a.ap, other.ap)


# ---------------------------------------------------------------------------------------------
# the `refdet eval` command, run as the installed console script and as `python -m refdet`
# ---------------------------------------------------------------------------------------------

def _commands():
    cmds = [[sys.executable, "-m", "refdet"]]
    script = shutil.which("refdet", path=os.path.dirname(sys.executable))
    if script:
        cmds.append([script])
    return cmds


def _run(cmd, *args, cwd=None):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd + ["eval", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    scene = make_scene(np.random.default_rng(31), n_img=5, n_cls=3)
    folder = tmp_path_factory.mktemp("cli")
    gt, dt = coco_gt(scene), coco_dt(scene)
    gt_path, dt_path = str(folder / "gt.json"), str(folder / "results.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)
    return gt_path, dt_path, gt, dt


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: os.path.basename(c[-1]))
def test_cli_prints_pycocotools_summary(cmd, coco_files):
    gt_path, dt_path, gt, dt = coco_files
    out = _run(cmd, gt_path, dt_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    want = evaluate_detections(dt, gt).summary() + "\n"
    assert out.stdout == want
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        return
    _, printed = run_pycocotools(gt, dt)
    assert out.stdout == printed


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: os.path.basename(c[-1]))
def test_cli_json_and_per_category(cmd, coco_files):
    gt_path, dt_path, gt, dt = coco_files
    res = evaluate_detections(dt, gt)
    out = _run(cmd, gt_path, dt_path, "--json", "--iou-type", "bbox")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert [got["stats"][n] for n in res.stat_names] == res.stats.tolist()
    ap = res.ap_per_class()
    assert [c["id"] for c in got["per_category"]] == res.classes.tolist()
    for c, a in zip(got["per_category"], ap):
        assert (c["AP"] is None) if np.isnan(a) else (c["AP"] == a)
    out = _run(cmd, gt_path, dt_path, "--per-category")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[:12] == res.summary().splitlines()
    for c in gt["categories"]:
        assert any(line.split()[:2] == [str(c["id"]), c["name"]] for line in lines[12:])


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: os.path.basename(c[-1]))
def test_cli_errors_are_one_line_with_status_2(cmd, coco_files, tmp_path):
    gt_path, dt_path, gt, _ = coco_files
    bad = _bad_dt(bbox=[1, 2, 3], image_id=gt["images"][0]["id"], category_id=gt["categories"][0]["id"])
    bad_field = _write(str(tmp_path), "field.json", json.dumps(bad))
    syntax = _write(str(tmp_path), "syntax.json", "[{]")
    cases = [((gt_path, str(tmp_path / "missing.json")), "missing.json' does not exist"),
             ((gt_path, bad_field), "field.json[0]['bbox'] must be a list of 4 numbers"),
             ((gt_path, syntax), "syntax.json' is not valid JSON"),
             ((dt_path, gt_path), "must be a COCO dataset object"),
             ((gt_path, dt_path, "--iou-type", "segm"), "--iou-type 'segm' is not supported")]
    for args, text in cases:
        out = _run(cmd, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stdout == ""
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("refdet eval: error: ") and text in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_cli_warning_is_one_line(tmp_path):
    gt = _write(str(tmp_path), "gt.json", json.dumps(_bad_ann(id=0)))
    dt = _write(str(tmp_path), "dt.json", json.dumps(GOOD_DT))
    out = _run(_commands()[0], gt, dt)
    assert out.returncode == 0
    assert out.stderr.startswith("refdet eval: warning: a ground truth with annotation id 0")
    assert len(out.stderr.strip().splitlines()) == 1
