"""refdet.eval.columns: prepare, groups and pairs against hand-worked values and loops (issue 19).

``pairs`` is run with tiny chunk sizes (``_PAIR_CHUNK`` patched), where every chunk boundary is hit,
and held equal to a loop over (detection, ground truth); whole evaluations must not depend on the
chunk size. ``prepare``'s messages name the entry and what it got.
"""
import numpy as np
import pytest

from refdet.eval import columns as C
from refdet.eval import evaluate_detections


def _cols(gt_boxes, gt_img, gt_lab, dt_boxes, dt_img, dt_lab, scores, **gt_kw):
    gt = {"boxes": np.asarray(gt_boxes, float).reshape(-1, 4), "image_id": np.asarray(gt_img, np.int64),
          "labels": np.asarray(gt_lab, np.int64), **gt_kw}
    dt = {"boxes": np.asarray(dt_boxes, float).reshape(-1, 4), "image_id": np.asarray(dt_img, np.int64),
          "labels": np.asarray(dt_lab, np.int64), "scores": np.asarray(scores, float)}
    return dt, gt


def _scene(seed, n_img=4, n_cls=3, max_gt=7, max_dt=9):
    rng = np.random.default_rng(seed)
    gi, gl, gb, di, dl, db, sc = [], [], [], [], [], [], []
    for img in range(n_img):
        for _ in range(rng.integers(0, max_gt + 1)):
            x, y = rng.integers(0, 20, 2) * 4.0
            gi.append(img * 10 + 3), gl.append(int(rng.integers(n_cls)) * 5 + 1), gb.append([x, y, x + 16, y + 12])
        for _ in range(rng.integers(0, max_dt + 1)):
            x, y = rng.integers(0, 20, 2) * 4.0
            di.append(img * 10 + 3), dl.append(int(rng.integers(n_cls)) * 5 + 1), db.append([x, y, x + 12, y + 16])
            sc.append(rng.integers(0, 4) / 4)
    return _cols(gb, gi, gl, db, di, dl, sc, images=np.arange(n_img) * 10 + 3, classes=np.arange(n_cls) * 5 + 1)


def _loop_pairs(p, dets):
    out = []
    for i in dets:
        for j in range(len(p["gt_img"])):
            if p["gt_img"][j] == p["dt_img"][i] and p["gt_cat"][j] == p["dt_cat"][i]:
                out.append((int(i), j))
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1 << 21])
@pytest.mark.parametrize("seed", range(4))
def test_pairs_equal_a_loop_in_chunks_of_any_size(monkeypatch, size, seed):
    monkeypatch.setattr(C, "_PAIR_CHUNK", size)
    dt, gt = _scene(seed)
    p = C.prepare(dt, gt, "xyxy")
    grp = C.groups(p)
    rng = np.random.default_rng(seed)
    dets = rng.permutation(len(p["dt_score"]))[: rng.integers(0, len(p["dt_score"]) + 1)]
    got, chunks = [], []
    for chunk, pair_det, pair_gt in C.pairs(grp, dets):
        assert len(chunk) >= 1
        chunks.append(chunk)
        # a detection's pairs are contiguous and its ground truths in input order
        assert np.all(np.diff(pair_det) >= 0) and set(pair_det.tolist()) <= set(range(len(chunk)))
        got += [(int(chunk[a]), int(b)) for a, b in zip(pair_det, pair_gt)]
    assert got == _loop_pairs(p, dets)
    # the chunks are consecutive slices of dets, each as many whole detections as fit in `size` pairs
    assert np.array_equal(np.concatenate(chunks) if chunks else np.zeros(0, int), dets)
    count = grp.gt_count[grp.dt_group[dets]]
    lo = 0
    for ch in chunks:
        n = int(count[lo:lo + len(ch)].sum())
        assert n <= size or len(ch) == 1
        if lo + len(ch) < len(dets):  # the next detection would not have fit
            assert n + int(count[lo + len(ch)]) > size
        lo += len(ch)


@pytest.mark.parametrize("size", [1, 3])
def test_evaluation_does_not_depend_on_the_chunk_size(monkeypatch, size):
    dt, gt = _scene(11, n_img=3, max_gt=9, max_dt=14)
    gt["difficult"] = np.arange(len(gt["labels"])) % 4 == 0
    ref_coco, ref_voc = evaluate_detections(dt, gt), evaluate_detections(dt, gt, style="voc")
    monkeypatch.setattr(C, "_PAIR_CHUNK", size)
    coco, voc = evaluate_detections(dt, gt), evaluate_detections(dt, gt, style="voc")
    assert np.array_equal(coco.precision, ref_coco.precision) and np.array_equal(coco.stats, ref_coco.stats)
    assert np.array_equal(voc.ap, ref_voc.ap, equal_nan=True)


def test_groups_by_hand():
    # images 5, 9; classes 2, 4 -> positions. gts (img, cls): (9,4) (5,2) (9,4) (5,4); dets (img, cls,
    # score): (5,2,.5) (9,4,.7) (9,4,.7) (5,2,.9) (9,4,.8) (5,4,.1)
    # group keys img * K + cls: gts 3, 0, 3, 1; dets 0, 3, 3, 0, 3, 1 -> groups 0, 1, 2 (keys 0, 1, 3)
    dt, gt = _cols(np.zeros((4, 4)), [9, 5, 9, 5], [4, 2, 4, 4], np.zeros((6, 4)), [5, 9, 9, 5, 9, 5],
                   [2, 4, 4, 2, 4, 4], [.5, .7, .7, .9, .8, .1])
    p = C.prepare(dt, gt, "xyxy")
    assert p["images"].tolist() == [5, 9] and p["classes"].tolist() == [2, 4]
    assert p["gt_img"].tolist() == [1, 0, 1, 0] and p["gt_cat"].tolist() == [1, 0, 1, 1]
    grp = C.groups(p)
    assert grp.gt_sorted.tolist() == [1, 3, 0, 2]  # by group, input order inside
    assert grp.gt_count.tolist() == [1, 1, 2] and grp.gt_start.tolist() == [0, 1, 2]
    assert grp.dt_group.tolist() == [0, 2, 2, 0, 2, 1]
    # group 0: det 3 (.9) then det 0 (.5); group 2: det 4 (.8), then 1 and 2 (.7, input order)
    assert grp.rank.tolist() == [1, 1, 2, 0, 0, 0] and grp.rank.dtype.kind == "i"
    assert grp.dt_order.tolist() == [3, 0, 5, 4, 1, 2]
    # a group with detections but no ground truth, and one with ground truths but no detection
    dt, gt = _cols([[0, 0, 1, 1]], [1], [1], np.zeros((2, 4)), [2, 2], [1, 1], [0.3, 0.6], images=[1, 2])
    grp = C.groups(C.prepare(dt, gt, "xyxy"))
    assert grp.gt_count.tolist() == [1, 0] and grp.gt_start.tolist() == [0, 1]
    assert grp.dt_group.tolist() == [1, 1] and grp.rank.tolist() == [1, 0]


def test_prepare_values():
    # yxyx boxes; explicit images/classes with extra ids; area, iscrowd, ignore, difficult, annotation_id
    dt, gt = _cols([[1, 2, 5, 10], [0, 0, 4, 4]], [7, 3], [2, 2], [[2, 1, 6, 3]], [3], [2], [0.5],
                   images=[9, 3, 7, 3], classes=[8, 2], area=[11.0, 12.0], iscrowd=[0, 2],
                   ignore=np.array([True, False]), difficult=[1, 0], annotation_id=[0, 5])
    p = C.prepare(dt, gt, "yxyx")
    assert p["images"].tolist() == [3, 7, 9] and p["classes"].tolist() == [2, 8]
    assert p["gt_img"].tolist() == [1, 0] and p["dt_img"].tolist() == [0]
    assert p["gt_cat"].tolist() == [0, 0] and p["dt_cat"].tolist() == [0]
    assert p["gt_xyxy"].tolist() == [[2, 1, 10, 5], [0, 0, 4, 4]]
    assert p["gt_xywh"].tolist() == [[2, 1, 8, 4], [0, 0, 4, 4]]
    assert p["dt_xyxy"].tolist() == [[1, 2, 3, 6]] and p["dt_xywh"].tolist() == [[1, 2, 2, 4]]
    assert p["gt_area"].tolist() == [11.0, 12.0] and p["gt_area"].dtype == np.float64
    for key, want in (("gt_crowd", [False, True]), ("gt_ignore", [True, False]),
                      ("gt_difficult", [True, False]), ("gt_zero_id", [True, False])):
        assert p[key].dtype == bool and p[key].tolist() == want, key
    assert p["dt_score"].tolist() == [0.5] and p["dt_score"].dtype == np.float64
    # defaults: ids present, area w * h of the xywh box, no flags, no zero id
    for fmt, box in (("xyxy", [1, 2, 5, 10]), ("xywh", [1, 2, 4, 8]), ("cxcywh", [3, 6, 4, 8])):
        dt, gt = _cols([box], [4], [6], [box], [4], [6], [1.0])
        p = C.prepare(dt, gt, fmt)
        assert p["images"].tolist() == [4] and p["classes"].tolist() == [6]
        assert p["gt_xywh"].tolist() == [[1, 2, 4, 8]] and p["gt_xyxy"].tolist() == [[1, 2, 5, 10]], fmt
        assert p["dt_xywh"].tolist() == [[1, 2, 4, 8]] and p["dt_xyxy"].tolist() == [[1, 2, 5, 10]], fmt
        assert p["gt_area"].tolist() == [32.0]
        for key in ("gt_crowd", "gt_ignore", "gt_difficult", "gt_zero_id"):
            assert p[key].dtype == bool and p[key].tolist() == [False], key


def test_prepare_does_not_write_to_its_input():
    dt, gt = _cols([[0, 0, 4, 4]], [1], [1], [[0, 0, 4, 4]], [1], [1], [1.0])
    for d in (dt, gt):
        for v in d.values():
            v.setflags(write=False)
    for fmt in ("xyxy", "xywh"):
        p = C.prepare(dt, gt, fmt)
        p["gt_area"]  # read-only inputs are fine
    assert dt["boxes"].tolist() == [[0, 0, 4, 4]]


@pytest.mark.parametrize("change,err,match", [
    (lambda dt, gt: (dt, gt.pop("boxes")), ValueError,
     r"^`ground_truths` must have a 'boxes' entry; got keys \['image_id', 'labels'\]$"),
    (lambda dt, gt: (dt.pop("scores"), gt), ValueError,
     r"^`detections` must have a 'scores' entry; got keys \['boxes', 'image_id', 'labels'\]$"),
    (lambda dt, gt: (dt.pop("image_id"), gt), ValueError, r"^`detections` must have a 'image_id' entry"),
    (lambda dt, gt: (dt.pop("labels"), gt), ValueError, r"^`detections` must have a 'labels' entry"),
    (lambda dt, gt: (dt.pop("boxes"), gt), ValueError, r"^`detections` must have a 'boxes' entry"),
    (lambda dt, gt: (dt, gt.pop("image_id")), ValueError, r"^`ground_truths` must have a 'image_id' entry"),
    (lambda dt, gt: (dt, gt.pop("labels")), ValueError, r"^`ground_truths` must have a 'labels' entry"),
    (lambda dt, gt: (dt, gt.update(iscrowd=[0, 1, 0])), ValueError,
     r"^`ground_truths\['iscrowd'\]` must have shape \(2,\); got \(3,\)$"),
    (lambda dt, gt: (dt, gt.update(difficult=[[0, 1]])), ValueError,
     r"^`ground_truths\['difficult'\]` must have shape \(2,\); got \(1, 2\)$"),
    (lambda dt, gt: (dt, gt.update(ignore=["a", "b"])), TypeError, r"`ground_truths\['ignore'\]`"),
    (lambda dt, gt: (dt, gt.update(area=[1.0])), ValueError,
     r"^`ground_truths\['area'\]` must have shape \(2,\); got \(1,\)$"),
    (lambda dt, gt: (dt, gt.update(area=[1.0, np.inf])), ValueError, r"`ground_truths\['area'\]`"),
    (lambda dt, gt: (dt, gt.update(annotation_id=[1])), ValueError, r"`ground_truths\['annotation_id'\]`"),
    (lambda dt, gt: (dt, gt.update(images=[1.5])), TypeError, r"`ground_truths\['images'\]`"),
    (lambda dt, gt: (dt, gt.update(classes=[1.5])), TypeError, r"`ground_truths\['classes'\]`"),
    (lambda dt, gt: (dt, gt.update(images=[2])), ValueError,
     r"^`detections\['image_id'\]` refers to unknown image ids \[1\] \(the known image ids are those of "
     r"`ground_truths\['images'\]`, else `ground_truths\['image_id'\]`\)$"),
    (lambda dt, gt: (dt, gt.update(classes=[1, 3])), ValueError,
     r"^`detections\['labels'\]` refers to unknown class ids \[2\] \(the known class ids are those of "
     r"`ground_truths\['classes'\]`, else `ground_truths\['labels'\]`\)$"),
    (lambda dt, gt: (dt.update(image_id=np.array([1, 1])), gt.update(images=[2, 4, 3])), ValueError,
     r"^`detections\['image_id'\]` refers to unknown image ids \[1\] "),
    (lambda dt, gt: (dt.update(image_id=np.array([2, 2])), gt.update(images=[2])), ValueError,
     r"^`ground_truths\['image_id'\]` refers to unknown image ids \[1\] "),
    (lambda dt, gt: (dt.update(labels=np.array([2, 2])), gt.update(classes=[2])), ValueError,
     r"^`ground_truths\['labels'\]` refers to unknown class ids \[1\] "),
])
def test_prepare_names_the_bad_entry(change, err, match):
    dt, gt = _cols([[0, 0, 4, 4], [1, 1, 5, 5]], [1, 1], [1, 2], [[0, 0, 4, 4], [1, 1, 5, 5]], [1, 1], [1, 2],
                   [0.5, 0.6])
    change(dt, gt)
    with pytest.raises(err, match=match):
        C.prepare(dt, gt, "xyxy")


def test_prepare_rejects_other_objects_and_box_formats():
    dt, gt = _cols([[0, 0, 4, 4]], [1], [1], [[0, 0, 4, 4]], [1], [1], [1.0])
    with pytest.raises(TypeError, match=r"^`detections` must be a mapping of columns \(image_id, boxes, \.\.\.\); "
                                        r"got list$"):
        C.prepare([dt], gt, "xyxy")
    with pytest.raises(TypeError, match=r"^`ground_truths` must be a mapping of columns .*; got tuple$"):
        C.prepare(dt, (gt,), "xyxy")
    with pytest.raises(ValueError, match="`box_format`"):
        C.prepare(dt, gt, "xyxy2")
    # the only unknown ids listed are the first five
    dt2 = dict(dt, image_id=np.arange(10, 17), boxes=np.zeros((7, 4)), labels=np.ones(7, np.int64),
               scores=np.ones(7))
    with pytest.raises(ValueError, match=r"unknown image ids \[10, 11, 12, 13, 14\] "):
        C.prepare(dt2, gt, "xyxy")


def test_ground_truths_keep_input_order_in_large_groups():
    # 60 gts over 3 (image, class) groups in random order: inside each group the input order (a
    # stable sort: COCOeval and voc_eval go down an image's gts in annotation order); NumPy's default
    # argsort is not stable on arrays this long (here np.argsort(img) differs from `want`)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 3, 60)
    dt, gt = _cols(np.zeros((60, 4)), img, np.ones(60), np.zeros((0, 4)), [], [], [])
    grp = C.groups(C.prepare(dt, gt, "xyxy"))
    want = np.concatenate([np.flatnonzero(img == i) for i in range(3)])
    assert grp.gt_sorted.tolist() == want.tolist()
    assert grp.gt_count.tolist() == [int((img == i).sum()) for i in range(3)]


@pytest.mark.parametrize("change,err,match", [
    (lambda dt, gt: gt.update(boxes=np.zeros((2, 5))), ValueError, r"^`ground_truths\['boxes'\]` must have shape"),
    (lambda dt, gt: dt.update(boxes=np.zeros((2, 3))), ValueError, r"^`detections\['boxes'\]` must have shape"),
    (lambda dt, gt: gt.update(boxes=np.full((2, 4), np.nan)), ValueError, r"^`ground_truths\['boxes'\]`"),
    (lambda dt, gt: gt.update(image_id=np.array([1])), ValueError, r"^`ground_truths\['image_id'\]` must have length 2"),
    (lambda dt, gt: gt.update(labels=np.array([1, 2, 3])), ValueError, r"^`ground_truths\['labels'\]` must have length 2"),
    (lambda dt, gt: dt.update(image_id=np.array([1])), ValueError, r"^`detections\['image_id'\]` must have length 2"),
    (lambda dt, gt: dt.update(labels=np.array([1.0, 2.0])), TypeError, r"^`detections\['labels'\]` must be an integer"),
    (lambda dt, gt: dt.update(scores=np.array([0.5])), ValueError, r"^`detections\['scores'\]` must have length 2"),
    (lambda dt, gt: dt.update(scores=np.array([0.5, np.nan])), ValueError, r"^`detections\['scores'\]`"),
    (lambda dt, gt: gt.update(images=[[1]]), ValueError, r"^`ground_truths\['images'\]`"),
    (lambda dt, gt: gt.update(classes=[[1, 2]]), ValueError, r"^`ground_truths\['classes'\]`"),
    (lambda dt, gt: gt.update(annotation_id=[1.0, 2.0]), TypeError, r"^`ground_truths\['annotation_id'\]`"),
    (lambda dt, gt: gt.update(area=[[1.0, 2.0]]), ValueError, r"^`ground_truths\['area'\]`"),
])
def test_prepare_names_each_column(change, err, match):
    dt, gt = _cols([[0, 0, 4, 4], [1, 1, 5, 5]], [1, 1], [1, 2], [[0, 0, 4, 4], [1, 1, 5, 5]], [1, 1], [1, 2],
                   [0.5, 0.6])
    change(dt, gt)
    with pytest.raises(err, match=match):
        C.prepare(dt, gt, "xyxy")


@pytest.mark.parametrize("fmt", ["xyxy", "xywh"])
def test_prepare_works_in_float64(fmt):
    # float32 and integer inputs become float64 columns (the oracle's precision), scores too
    dt, gt = _cols([[0, 0, 4, 4]], [1], [1], [[0, 0, 4, 4]], [1], [1], [0.5])
    gt["boxes"] = np.array([[0.1, 0.2, 4.3, 4.4]], np.float32)
    dt["boxes"] = np.array([[0, 0, 4, 4]], np.int32)
    dt["scores"] = np.array([0.3], np.float32)
    gt["area"] = np.array([3.1], np.float32)
    p = C.prepare(dt, gt, fmt)
    for key in ("gt_xyxy", "gt_xywh", "dt_xyxy", "dt_xywh", "dt_score", "gt_area"):
        assert p[key].dtype == np.float64, key
    assert p["gt_xyxy" if fmt == "xyxy" else "gt_xywh"].tolist() == gt["boxes"].astype(np.float64).tolist()
    assert p["dt_score"].tolist() == [float(np.float32(0.3))] and p["gt_area"].tolist() == [float(np.float32(3.1))]
