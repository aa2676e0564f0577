"""Tests for refdet.eval: hand-worked goldens, properties, and pycocotools / voc_eval differentials."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet.eval import average_precision, evaluate_detections
from tests._eval_records import dt_record as _dt
from tests._eval_records import gt_record as _gt


# ---------------------------------------------------------------------------------------------
# average_precision goldens
# ---------------------------------------------------------------------------------------------

def test_average_precision_one_gt_found_second():
    # two detections, the second finds the only gt: recall (0, 1), precision (0, 1/2)
    rec, prec = np.array([0.0, 1.0]), np.array([0.0, 0.5])
    # voc2010: envelope (0, .5, .5, 0) with sentinels; recall rises 0 -> 1 once, at precision .5
    assert average_precision(rec, prec, method="voc2010") == 0.5
    # voc2007: every t in 0, .1, ..., 1 sees max precision at recall >= t of .5 -> 11 * .5 / 11
    assert average_precision(rec, prec, method="voc2007") == pytest.approx(0.5, abs=1e-15)
    # coco101: envelope (.5, .5); searchsorted(rec, t, 'left') is 0 for t = 0 and 1 for t > 0
    assert average_precision(rec, prec, method="coco101") == 0.5


def test_average_precision_half_recall():
    # 2 gts; detections TP, FP, TP: recall (.5, .5, 1), precision (1, .5, 2/3)
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    # voc2010: envelope (1, 2/3, 2/3): 0.5 * 1 + 0.5 * 2/3 = 0.8333...
    assert average_precision(rec, prec, method="voc2010") == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)
    # voc2007: t = 0..0.5 (6 points) -> 1; t = 0.6..1.0 (5 points) -> 2/3; (6 + 10/3) / 11
    assert average_precision(rec, prec, method="voc2007") == pytest.approx((6 + 5 * 2 / 3) / 11, abs=1e-15)
    # coco101: t = 0..0.5 (51 thresholds) read index 0 (envelope 1); t = 0.51..1 (50) read index 2 (2/3)
    assert average_precision(rec, prec, method="coco101") == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-15)


def test_average_precision_validates():
    with pytest.raises(ValueError, match="`method`"):
        average_precision([0.5], [1.0], method="voc2012")
    with pytest.raises(ValueError, match="same length"):
        average_precision([0.5, 1.0], [1.0])


# ---------------------------------------------------------------------------------------------
# evaluate_detections goldens
# ---------------------------------------------------------------------------------------------

def test_coco_perfect_detection_is_one():
    gt = _gt([[0, 0, 50, 50], [60, 60, 200, 200]], [1, 1], [7, 7])
    dt = _dt([[0, 0, 50, 50], [60, 60, 200, 200]], [0.9, 0.8], [1, 1], [7, 7])
    res = evaluate_detections(dt, gt)
    # AP = 1 everywhere; the 50x50 box is medium (2500 in [32², 96²]), the 140x140 one large,
    # there is no small box -> AP small and AR small are -1
    # (precision is tp / (tp + fp + eps) with eps = np.spacing(1), as in COCOeval: 1 - 2.2e-16)
    np.testing.assert_allclose(res.stats[[0, 1, 2, 4, 5]], 1.0, rtol=0, atol=1e-15)
    assert res.stats[3] == -1.0 and res.stats[9] == -1.0
    # AR@1: one detection per image -> recall 1/2 in "all"
    assert res.stats[6] == 0.5
    assert res.stats[8] == 1.0


def test_coco_tie_goes_to_later_gt_and_threshold_is_inclusive():
    # det 1 [0,0,10,10] vs gt A [0,0,10,20] (IoU 100/200 = .5) and gt B [0,-10,10,10] (IoU .5):
    # both hit 0.5 exactly (>= counts) and the tie goes to the LATER gt, B. det 2 [0,5,10,20]
    # overlaps A with IoU 150/200 = .75 and B with 50/300 = .17, so it can only take A: recall 1.
    # (Had det 1 taken A, det 2 would find nothing: recall 1/2.) At 0.55 only det 2 matches.
    gt = _gt([[0, 0, 10, 20], [0, -10, 10, 10]], [1, 1], [1, 1])
    dt = _dt([[0, 0, 10, 10], [0, 5, 10, 20]], [0.9, 0.8], [1, 1], [1, 1])
    res = evaluate_detections(dt, gt, iou_thresholds=[0.5, 0.55])
    assert res.recall[0, 0, 0, -1] == 1.0
    assert res.recall[1, 0, 0, -1] == 0.5


def test_voc_difficult_and_duplicate():
    # one normal gt, one difficult gt; detections: hit normal (tp), duplicate of it (fp),
    # hit difficult (ignored): precision (1, .5), recall (1, 1) -> AP 1
    gt = _gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0], [0, 0], difficult=np.array([False, True]))
    dt = _dt([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 0, 0], [0, 0, 0])
    res = evaluate_detections(dt, gt, style="voc")
    np.testing.assert_array_equal(res.recall[0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(res.precision[0], [1.0, 0.5, 0.5])
    assert res.ap[0] == 1.0


def test_unknown_image_and_class_rejected():
    gt = _gt([[0, 0, 10, 10]], [1], [1])
    with pytest.raises(ValueError, match="image_id.*unknown image"):
        evaluate_detections(_dt([[0, 0, 5, 5]], [0.5], [1], [2]), gt)
    with pytest.raises(ValueError, match="labels.*unknown class"):
        evaluate_detections(_dt([[0, 0, 5, 5]], [0.5], [3], [1]), gt)
    with pytest.raises(ValueError, match="scores.*NaN"):
        evaluate_detections(_dt([[0, 0, 5, 5]], [np.nan], [1], [1]), gt)
    with pytest.raises(ValueError, match="boxes"):
        evaluate_detections({"boxes": np.zeros((1, 5)), "scores": [1.0], "labels": [1], "image_id": [1]}, gt)


def test_empty_detections():
    gt = _gt([[0, 0, 10, 10]], [1], [1])
    res = evaluate_detections(_dt(np.zeros((0, 4)), [], [], []), gt)
    assert res.stats[0] == 0.0
    res = evaluate_detections(_dt(np.zeros((0, 4)), [], [], []), gt, style="voc")
    assert res.ap[0] == 0.0


# ---------------------------------------------------------------------------------------------
# differential: pycocotools COCOeval
# ---------------------------------------------------------------------------------------------

def _random_scene(rng, n_img, n_cls, max_gt, max_dt, grid=4.0, crowd_frac=0.1):
    gts, dts = [], []
    for img in range(n_img):
        ng = rng.integers(0, max_gt + 1)
        for _ in range(ng):
            x, y = rng.integers(0, 60, 2) * grid
            w, h = rng.integers(1, 40, 2) * grid
            gts.append((img, rng.integers(0, n_cls), [x, y, w, h], rng.random() < crowd_frac))
        nd = rng.integers(0, max_dt + 1)
        for _ in range(nd):
            if gts and rng.random() < 0.6:
                g = gts[rng.integers(len(gts))][2]
                jit = rng.integers(-3, 4, 4) * grid
                x, y = g[0] + jit[0], g[1] + jit[1]
                w, h = max(grid, g[2] + jit[2]), max(grid, g[3] + jit[3])
            else:
                x, y = rng.integers(0, 60, 2) * grid
                w, h = rng.integers(1, 40, 2) * grid
            score = rng.integers(0, 5) / 4  # few distinct scores: ties on purpose
            dts.append((img, rng.integers(0, n_cls), [x, y, w, h], score))
    return gts, dts


def _pycoco(gts, dts, n_img, n_cls):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib, io

    ds = {"images": [{"id": i} for i in range(n_img)],
          "categories": [{"id": c} for c in range(n_cls)],
          "annotations": [{"id": k + 1, "image_id": int(i), "category_id": int(c), "bbox": list(map(float, b)),
                           "area": float(b[2] * b[3]), "iscrowd": int(cr)} for k, (i, c, b, cr) in enumerate(gts)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ds
        coco.createIndex()
        res = coco.loadRes([{"image_id": int(i), "category_id": int(c), "bbox": list(map(float, b)),
                             "score": float(s)} for i, c, b, s in dts]) if dts else None
        if res is None:
            return None
        ev = COCOeval(coco, res, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _refdet_inputs(gts, dts, n_img, n_cls):
    gt = {"image_id": np.array([g[0] for g in gts], np.int64),
          "labels": np.array([g[1] for g in gts], np.int64),
          "boxes": np.array([g[2] for g in gts], float).reshape(-1, 4),
          "iscrowd": np.array([g[3] for g in gts], bool),
          "images": np.arange(n_img), "classes": np.arange(n_cls)}
    dt = {"image_id": np.array([d[0] for d in dts], np.int64),
          "labels": np.array([d[1] for d in dts], np.int64),
          "boxes": np.array([d[2] for d in dts], float).reshape(-1, 4),
          "scores": np.array([d[3] for d in dts], float)}
    return dt, gt


@settings(max_examples=25)
@given(seed=st.integers(0, 2 ** 31 - 1), n_img=st.integers(1, 6), n_cls=st.integers(1, 3))
def test_matches_pycocotools(seed, n_img, n_cls):
    rng = np.random.default_rng(seed)
    gts, dts = _random_scene(rng, n_img, n_cls, max_gt=6, max_dt=12)
    ev = _pycoco(gts, dts, n_img, n_cls)
    if ev is None:
        return
    dt, gt = _refdet_inputs(gts, dts, n_img, n_cls)
    res = evaluate_detections(dt, gt, box_format="xywh")
    np.testing.assert_allclose(res.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.recall, ev.eval["recall"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.scores, ev.eval["scores"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.stats, ev.stats, rtol=0, atol=1e-12)


def test_matches_pycocotools_many_dets_per_image():
    # more than 100 detections in an image: the maxDets truncation matters
    rng = np.random.default_rng(3)
    gts, dts = _random_scene(rng, 2, 2, max_gt=30, max_dt=160, crowd_frac=0.2)
    ev = _pycoco(gts, dts, 2, 2)
    dt, gt = _refdet_inputs(gts, dts, 2, 2)
    res = evaluate_detections(dt, gt, box_format="xywh")
    np.testing.assert_allclose(res.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.stats, ev.stats, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# differential: the VOC devkit's voc_eval, written out as a loop (a slow teaching reference)
# ---------------------------------------------------------------------------------------------

def _voc_eval_loop(dt, gt, cls, thr=0.5, use_07=False):
    """py-faster-rcnn's lib/datasets/voc_eval.py for one class, as a plain loop (stable sort)."""
    recs = {}
    for i in np.unique(gt["image_id"]):
        m = (gt["image_id"] == i) & (gt["labels"] == cls)
        recs[i] = {"bbox": gt["boxes"][m], "difficult": gt["difficult"][m],
                   "det": [False] * int(m.sum())}
    npos = sum(int((~r["difficult"]).sum()) for r in recs.values())
    m = dt["labels"] == cls
    ids, conf, bb = dt["image_id"][m], dt["scores"][m], dt["boxes"][m]
    order = np.argsort(-conf, kind="stable")
    ids, bb = ids[order], bb[order]
    tp = np.zeros(len(ids))
    fp = np.zeros(len(ids))
    for d in range(len(ids)):
        r = recs.get(ids[d], {"bbox": np.zeros((0, 4)), "difficult": np.zeros(0, bool), "det": []})
        b = bb[d]
        ovmax = -np.inf
        g = r["bbox"]
        if g.size > 0:
            ixmin = np.maximum(g[:, 0], b[0]); iymin = np.maximum(g[:, 1], b[1])
            ixmax = np.minimum(g[:, 2], b[2]); iymax = np.minimum(g[:, 3], b[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0); ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = ((b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
                   + (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0) - inters)
            ov = inters / uni
            ovmax = np.max(ov); jmax = np.argmax(ov)
        if ovmax > thr:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0; r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp); tp = np.cumsum(tp)
    with np.errstate(divide="ignore", invalid="ignore"):  # npos = 0: the devkit's division by zero
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec


@settings(max_examples=25)
@given(seed=st.integers(0, 2 ** 31 - 1), use_07=st.booleans())
def test_voc_matches_devkit_loop(seed, use_07):
    rng = np.random.default_rng(seed)
    gts, dts = _random_scene(rng, 4, 2, max_gt=5, max_dt=10, crowd_frac=0.0)
    if not dts or not gts:
        return
    dt, gt = _refdet_inputs(gts, dts, 4, 2)
    # xywh -> xyxy for VOC (inclusive pixel boxes)
    for d in (dt, gt):
        d["boxes"] = np.concatenate([d["boxes"][:, :2], d["boxes"][:, :2] + d["boxes"][:, 2:]], axis=1)
    gt["difficult"] = rng.random(len(gt["labels"])) < 0.2
    method = "voc2007" if use_07 else "voc2010"
    res = evaluate_detections(dt, gt, style="voc", method=method)
    for k, cls in enumerate(res.classes):
        rec, prec = _voc_eval_loop(dt, gt, cls)
        np.testing.assert_array_equal(res.recall[k], rec)
        np.testing.assert_array_equal(res.precision[k], prec)
        if np.isfinite(rec).all() and len(rec):
            assert res.ap[k] == average_precision(rec, prec, method=method)


# ---------------------------------------------------------------------------------------------
# the fast read-out against its reference, custom parameters, the summary text
# ---------------------------------------------------------------------------------------------

@given(seed=st.integers(0, 2 ** 32 - 1), npig=st.integers(1, 40), nd=st.integers(0, 60), rows=st.integers(1, 5))
def test_readout_equals_interp101_per_curve(seed, npig, nd, rows):
    # coco._readout reads T curves at once with integer searchsorted; the reference is
    # curves.interp101 on rc = tp / npig, pr = tp / (tp + fp + eps), one curve at a time
    from refdet.eval.coco import _readout
    from refdet.eval.curves import interp101, recall_thresholds
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, (rows, nd))  # 0 fp, 1 tp, 2 ignored (neither)
    tp_inc = kind == 1
    for r in range(rows):  # at most npig true positives per curve
        over = np.flatnonzero(tp_inc[r])[npig:]
        tp_inc[r, over] = False
    tp = np.cumsum(tp_inc, axis=1)
    fp = np.cumsum(kind == 0, axis=1)
    sc = np.sort(rng.random(nd))[::-1]
    n = np.full(rows, npig)
    q, ss, last = _readout(tp, fp, n, sc, {})
    for r in range(rows):
        rc = tp[r].astype(float) / npig
        pr = tp[r] / (fp[r] + tp[r] + np.spacing(1))
        np.testing.assert_array_equal(q[r], interp101(rc, pr))
        inds = np.searchsorted(rc, recall_thresholds(), side="left")
        np.testing.assert_array_equal(ss[r], np.where(inds < nd, sc[np.minimum(inds, max(nd - 1, 0))] if nd else 0, 0))
        assert last[r] == (rc[-1] if nd else 0.0)


def test_custom_parameters_and_summary_match_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib, io
    rng = np.random.default_rng(7)
    gts, dts = _random_scene(rng, 4, 2, max_gt=8, max_dt=30, crowd_frac=0.2)
    dt, gt = _refdet_inputs(gts, dts, 4, 2)
    iou = np.array([0.5, 0.6, 0.75])
    areas = (("all", 0.0, 1e10), ("small", 0.0, 40.0 ** 2), ("medium", 40.0 ** 2, 80.0 ** 2),
             ("large", 80.0 ** 2, 1e10))
    for md in ((1, 10, 100), (1, 5, 20), (2, 50)):
        res = evaluate_detections(dt, gt, box_format="xywh", iou_thresholds=iou, area_ranges=areas, max_dets=md)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            coco = COCO()
            coco.dataset = {"images": [{"id": i} for i in range(4)], "categories": [{"id": c} for c in range(2)],
                            "annotations": [{"id": k + 1, "image_id": int(i), "category_id": int(c),
                                             "bbox": list(map(float, b)), "area": float(b[2] * b[3]),
                                             "iscrowd": int(cr)} for k, (i, c, b, cr) in enumerate(gts)]}
            coco.createIndex()
            ev = COCOeval(coco, coco.loadRes([{"image_id": int(i), "category_id": int(c), "bbox": list(map(float, b)),
                                                "score": float(s)} for i, c, b, s in dts]), "bbox")
            ev.params.iouThrs = iou
            ev.params.areaRng = [[lo, hi] for _, lo, hi in areas]
            ev.params.maxDets = list(md) + [md[-1]] * (3 - len(md))  # pycocotools needs three
            ev.evaluate()
            ev.accumulate()
            start = out.tell()
            ev.summarize()
        if len(md) == 3:
            np.testing.assert_allclose(res.precision, ev.eval["precision"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(res.recall, ev.eval["recall"], rtol=0, atol=1e-12)
            assert res.summary() + "\n" == out.getvalue()[start:]
        np.testing.assert_allclose(res.stats, ev.stats, rtol=0, atol=1e-12)


def test_voc_nan_overlaps_follow_the_devkit():
    # gt 0 = [50, 0, 39, 9] is inverted: +1-pixel area (39 - 50 + 1) * (9 - 0 + 1) = -100. The
    # detection [0, 0, 9, 9] (area 100) does not intersect it, so the union is 100 - 100 - 0 = 0 and
    # the overlap 0 / 0 = NaN. voc_eval's np.max is then NaN and `ovmax > ovthresh` is False: a false
    # positive, although gt 1 = [0, 0, 9, 9] matches the detection exactly. The second detection
    # [20, 0, 29, 9] (union 100 + (-100) - 0 = 0 again) is a false positive for the same reason.
    gt = _gt([[50, 0, 39, 9], [0, 0, 9, 9]], [0, 0], [0, 0], difficult=np.array([False, False]))
    dt = _dt([[0, 0, 9, 9], [20, 0, 29, 9]], [0.9, 0.8], [0, 0], [0, 0])
    with np.errstate(invalid="ignore"):
        rec, prec = _voc_eval_loop(dt, gt, 0)
    res = evaluate_detections(dt, gt, style="voc")
    np.testing.assert_array_equal(rec, [0.0, 0.0])  # the devkit's answer, NaN included
    np.testing.assert_array_equal(res.recall[0], rec)
    np.testing.assert_array_equal(res.precision[0], prec)


def test_ap_per_class_rejects_unknown_selections():
    gt = _gt([[0, 0, 50, 50]], [1], [7])
    res = evaluate_detections(_dt([[0, 0, 50, 50]], [0.9], [1], [7]), gt)
    np.testing.assert_allclose(res.ap_per_class(), [1.0], atol=1e-15)
    with pytest.raises(ValueError, match="`area`"):
        res.ap_per_class(area="huge")
    with pytest.raises(ValueError, match="`iou_threshold`"):
        res.ap_per_class(iou_threshold=0.3)
    with pytest.raises(ValueError, match="`max_det`"):
        res.ap_per_class(max_det=7)
