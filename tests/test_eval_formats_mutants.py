"""refdet.eval.formats: detection, conversion and every refusal, pinned by value and by message (issue 19).

tests/test_eval_formats.py holds the formats equal to each other and to pycocotools on random
scenes; these cases pin the converted columns by hand and each error message whole (the entry it
names and what it got), including the paths random scenes do not take.
"""
import json
import os
import pathlib

import numpy as np
import pytest

from refdet.eval import evaluate_detections
from refdet.eval import formats as F

GT = {"images": [{"id": 4}, {"id": 2}], "categories": [{"id": 7, "name": "cat"}, {"id": 3}],
      "annotations": [{"id": 1, "image_id": 2, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 50, "iscrowd": 1},
                      {"id": 2, "image_id": 4, "category_id": 3, "bbox": [0, 0, 2, 5]}]}
DT = [{"image_id": 4, "category_id": 3, "bbox": [0, 0, 2, 5], "score": 0.5},
      {"image_id": 2, "category_id": 7, "bbox": [1, 1, 1, 1], "score": 1}]


def test_detect_format():
    assert F.detect_format(None, "gt.json") == "coco"
    assert F.detect_format(None, pathlib.Path("gt.json")) == "coco"
    assert F.detect_format(None, {"annotations": []}) == "coco"
    assert F.detect_format(None, {"images": [], "categories": []}) == "coco"
    assert F.detect_format(None, {"boxes": []}) == "refdet"
    assert F.detect_format(None, [{"boxes": []}, {"boxes": [], "difficult": []}]) == "voc"
    assert F.detect_format(None, ({"boxes": []},)) == "torchvision"
    assert F.detect_format(None, []) == "torchvision"
    with pytest.raises(ValueError, match=r"^`ground_truths` is a mapping but neither COCO's \(images, annotations, "
                                         r"categories\) nor refdet's columns \(image_id, boxes, labels\); got keys "
                                         r"\['categories', 'x'\]$"):
        F.detect_format(None, {"categories": [], "x": 1})
    with pytest.raises(ValueError, match=r"got keys \['images'\]$"):
        F.detect_format(None, {"images": []})
    with pytest.raises(TypeError, match=r"^`ground_truths` must be refdet's column mapping, a COCO dict or JSON path, "
                                        r"or a list of per-image dicts \(torchvision, voc\); got list"):
        F.detect_format(None, [{"boxes": []}, 3])
    with pytest.raises(TypeError, match=r"^`ground_truths` must be refdet's column mapping.*; got int 3$"):
        F.detect_format(None, 3)


def test_coco_conversion_by_hand():
    conv = F.convert(DT, GT, "coco", None)
    gt, dt = conv.ground_truths, conv.detections
    assert conv.box_format == "xywh"
    # images sorted [2, 4] -> positions; categories sorted [3, 7]; names in that order, the id where none
    assert conv.class_names == ("3", "cat")
    assert gt["images"].tolist() == [0, 1] and gt["classes"].tolist() == [3, 7]
    assert gt["image_id"].tolist() == [0, 1] and gt["labels"].tolist() == [7, 3]
    assert gt["boxes"].tolist() == [[1, 2, 3, 4], [0, 0, 2, 5]] and gt["boxes"].dtype == np.float64
    assert gt["area"].tolist() == [50.0, 10.0]  # missing: w * h
    assert gt["iscrowd"].tolist() == [True, False] and gt["iscrowd"].dtype == bool
    assert gt["annotation_id"].tolist() == [1, 2]
    assert dt["image_id"].tolist() == [1, 0] and dt["labels"].tolist() == [3, 7]
    assert dt["boxes"].tolist() == [[0, 0, 2, 5], [1, 1, 1, 1]] and dt["scores"].tolist() == [0.5, 1.0]
    assert dt["scores"].dtype == np.float64
    # no annotation ids at all: no annotation_id column; booleans accepted for iscrowd
    bare = {**GT, "annotations": [{k: v for k, v in a.items() if k != "id"} for a in GT["annotations"]]}
    bare["annotations"][0]["iscrowd"] = True
    conv = F.convert(DT, bare, "coco", "xywh")
    assert "annotation_id" not in conv.ground_truths
    assert conv.ground_truths["iscrowd"].tolist() == [True, False]
    # the first name of a repeated category id is kept
    two = {**GT, "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}, {"id": 3, "name": "c"}]}
    assert F.convert(DT, two, "coco", None).class_names == ("a", "b")
    # no annotations list: every image and category still counts
    conv = F.convert([], {"images": [{"id": 1}], "categories": [{"id": 5}]}, "coco", None)
    assert conv.ground_truths["boxes"].shape == (0, 4) and conv.detections["boxes"].shape == (0, 4)
    assert conv.ground_truths["classes"].tolist() == [5] and conv.detections["scores"].shape == (0,)


def test_string_image_ids():
    gt = {"images": [{"id": "b"}, {"id": "a"}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": "b", "category_id": 1, "bbox": [0, 0, 1, 1]}]}
    conv = F.convert([{"image_id": "a", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}], gt, "coco", None)
    assert conv.ground_truths["image_id"].tolist() == [1] and conv.detections["image_id"].tolist() == [0]
    with pytest.raises(ValueError, match=r"^`detections\[0\]\['image_id'\]` is a number but the ground truths' image "
                                         r"ids are strings$"):
        F.convert([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}], gt, "coco", None)
    with pytest.raises(ValueError, match=r"^`detections\[0\]\['image_id'\]` is a string but the ground truths' image "
                                         r"ids are numbers$"):
        F.convert([{"image_id": "a", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}], GT, "coco", None)
    with pytest.raises(ValueError, match=r"^`ground_truths\['images'\]\[1\]\['id'\]` must be a string id like the "
                                         r"others; got 2$"):
        F.convert([], {**gt, "images": [{"id": "b"}, {"id": 2}]}, "coco", None)


def _coco_err(dt, gt, match, err=ValueError):
    with pytest.raises(err, match=match):
        F.convert(dt, gt, "coco", None)


def _ann(**change):
    a = dict(GT["annotations"][1], **change)
    return {**GT, "annotations": [GT["annotations"][0], {k: v for k, v in a.items() if v is not None}]}


def _res(**change):
    r = dict(DT[1], **change)
    return [DT[0], {k: v for k, v in r.items() if v is not None}]


@pytest.mark.parametrize("dt,gt,match", [
    (DT, [1], r"^`ground_truths` must be a COCO dataset object \(images, annotations, categories\); got list"),
    (DT, {"categories": []}, r"^`ground_truths` has no 'images' list \(a COCO ground-truth dataset needs images, "
                             r"annotations and categories\)$"),
    (DT, {"images": []}, r"^`ground_truths` has no 'categories' list"),
    (DT, {**GT, "images": {"id": 1}}, r"^`ground_truths\['images'\]` must be a list of objects; got dict"),
    (DT, {**GT, "categories": [{"id": 1}, 5]}, r"^`ground_truths\['categories'\]\[1\]` must be an object \(dict\); "
                                               r"got int 5$"),
    (DT, {**GT, "annotations": [GT["annotations"][0], "x"]}, r"^`ground_truths\['annotations'\]\[1\]` must be an "
                                                             r"object"),
    (DT, {**GT, "images": [{"id": 4}, {"name": 2}]}, r"^`ground_truths\['images'\]\[1\]` has no 'id' entry$"),
    (DT, {**GT, "categories": [{"id": 7}, {"id": "3"}]}, r"^`ground_truths\['categories'\]\[1\]\['id'\]` must be an "
                                                         r"integer id; got '3'$"),
    (DT, _ann(category_id=1.5), r"^`ground_truths\['annotations'\]\[1\]\['category_id'\]` must be an integer id; "
                                r"got 1.5$"),
    (DT, _ann(category_id=False), r"\['category_id'\]` must be an integer id; got False$"),
    (DT, _ann(category_id=2 ** 70), r"^`ground_truths\['annotations'\]\[1\]\['category_id'\]` does not fit in 64 "
                                    r"bits; got 1180591620717411303424$"),
    (DT, _ann(category_id=-2 ** 63 - 1), r"\[1\]\['category_id'\]` does not fit in 64 bits; got -9223372036854775809$"),
    (DT, _ann(image_id=None), r"^`ground_truths\['annotations'\]\[1\]` has no 'image_id' entry$"),
    (DT, _ann(bbox=[0, 0, 1]), r"^`ground_truths\['annotations'\]\[1\]\['bbox'\]` must be a list of 4 numbers; got "
                               r"list \[0, 0, 1\]$"),
    (DT, _ann(bbox=(0, 0, 1, "1")), r"\[1\]\['bbox'\]` must be a list of 4 numbers; got tuple"),
    (DT, _ann(bbox=7), r"\[1\]\['bbox'\]` must be a list of 4 numbers; got int 7$"),
    (DT, _ann(bbox=[0, 0, 1, float("inf")]), r"^`ground_truths\['annotations'\]\[1\]\['bbox'\]` must be finite; "
                                             r"got \[0, 0, 1, inf\]$"),
    (DT, _ann(area=float("nan")), r"^`ground_truths\['annotations'\]\[1\]\['area'\]` must be finite; got nan$"),
    (DT, {**GT, "annotations": [dict(a, area=True) for a in GT["annotations"]]},
     r"^`ground_truths\['annotations'\]\[0\]\['area'\]` must be a number; got bool True$"),
    (DT, _ann(iscrowd="no"), r"^`ground_truths\['annotations'\]\[1\]\['iscrowd'\]` must be a number; got str 'no'$"),
    (DT, _ann(image_id=9), r"^`ground_truths\['annotations'\]\[1\]\['image_id'\]` = 9 is not among the image ids$"),
    (DT, _ann(category_id=9), r"^`ground_truths\['annotations'\]\[1\]\['category_id'\]` = 9 is not among the "
                              r"category ids$"),
    (DT, _ann(id=None), r"^`ground_truths\['annotations'\]\[1\]` has no 'id' entry$"),
    (DT, _ann(id=1), r"^`ground_truths\['annotations'\]\[1\]\['id'\]` repeats annotation id 1 of "
                     r"\['annotations'\]\[0\] \(pycocotools would evaluate one of them twice\)$"),
    (DT, _ann(id=1.5), r"^`ground_truths\['annotations'\]\[1\]\['id'\]` must be an integer id; got 1.5$"),
    ({"image_id": 4}, GT, r"^`detections` must be a COCO results list \(objects with image_id, category_id, bbox, "
                          r"score\); got dict"),
    (_res(score=None), GT, r"^`detections\[1\]` has no 'score' entry$"),
    (_res(score="1"), GT, r"^`detections\[1\]\['score'\]` must be a number; got str '1'$"),
    (_res(score=2 ** 70), GT, r"^`detections\[\*\]\['score'\]` must be a number in every entry$"),
    (_res(bbox=[[0, 0, 1, 1]]), GT, r"^`detections\[1\]\['bbox'\]` must be a list of 4 numbers"),
    (_res(image_id=5), GT, r"^`detections\[1\]\['image_id'\]` = 5 is not among the ground truths' image ids$"),
    (_res(category_id=5), GT, r"^`detections\[1\]\['category_id'\]` = 5 is not among the ground truths' category "
                              r"ids$"),
    (_res(category_id="7"), GT, r"^`detections\[1\]\['category_id'\]` must be an integer id; got '7'$"),
])
def test_coco_refusals(dt, gt, match):
    _coco_err(dt, gt, match)


def test_ids_and_numbers_helpers():
    where = F._Where("x", False)
    assert F._ids([], where, "", "id", allow_str=True).dtype == np.int64
    assert F._ids([1.0, np.int32(2), 3], where, "", "id", allow_str=False).tolist() == [1, 2, 3]
    assert F._ids(["b", "a"], where, "", "id", allow_str=True).tolist() == ["b", "a"]
    assert F._ids([2 ** 63 - 1, -2 ** 63], where, "", "id", allow_str=False).tolist() == [2 ** 63 - 1, -2 ** 63]
    with pytest.raises(ValueError, match=r"^`x\[0\]\['id'\]` must be an integer id; got 'a'$"):
        F._ids(["a"], where, "", "id", allow_str=False)
    with pytest.raises(ValueError, match=r"^`x\[1\]\['id'\]` does not fit in 64 bits; got 9223372036854775808$"):
        F._ids([1, 2 ** 63], where, "", "id", allow_str=False)
    assert F._numbers([], where, "", "bbox", width=4).shape == (0, 4)
    assert F._numbers([], where, "", "score").shape == (0,)
    assert F._numbers([True, False], where, "", "iscrowd", allow_bool=True).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"^`x\[0\]\['iscrowd'\]` must be a number; got bool True$"):
        F._numbers([True, False], where, "", "iscrowd")
    # a file is named without backquotes
    fw = F._Where("gt.json", True)
    assert fw("['a']") == "gt.json['a']" and fw() == "gt.json" and where() == "`x`"
    with pytest.raises(ValueError, match=r"^gt\.json\[1\]\['s'\] must be finite; got inf$"):
        F._numbers([1.0, float("inf")], fw, "", "s")
    # empty known ids: every id is unknown
    with pytest.raises(ValueError, match=r"^`x\[0\]\['image_id'\]` = 3 is not among the image ids$"):
        F._lookup(np.array([3]), np.zeros(0, np.int64), where, "", "image_id", "image")
    assert F._lookup(np.zeros(0, np.int64), np.array(["a"]), where, "", "k", "image").tolist() == []
    assert F._lookup(np.array([5, 1], np.int32), np.array([1, 5], np.int64), where, "", "k", "w").tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"^`x\[1\]\['k'\]` = 7 is not among the w ids$"):
        F._lookup(np.array([1, 7]), np.array([1, 5]), where, "", "k", "w")
    with pytest.raises(ValueError, match=r"^`x\[0\]\['k'\]` = 0 is not among the w ids$"):
        F._lookup(np.array([0]), np.array([1, 5]), where, "", "k", "w")


def test_coco_paths_and_box_format(tmp_path):
    gp, dp = os.path.join(tmp_path, "gt.json"), os.path.join(tmp_path, "dt.json")
    for path, obj in ((gp, GT), (dp, DT)):
        with open(path, "w") as f:
            json.dump(obj, f)
    want = F.convert(DT, GT, "coco", None)
    for d, g in ((dp, gp), (pathlib.Path(dp), pathlib.Path(gp)), (DT, gp), (dp, GT)):
        conv = F.convert(d, g, "coco", "xywh")
        for key in ("boxes", "image_id", "labels", "scores"):
            assert np.array_equal(conv.detections[key], want.detections[key])
        for key in ("boxes", "area", "iscrowd", "annotation_id"):
            assert np.array_equal(conv.ground_truths[key], want.ground_truths[key])
    with pytest.raises(ValueError, match=r"^`box_format` must be 'xywh' \(or None\) for COCO input, whose boxes are "
                                         r"\[x, y, w, h\]; got 'xyxy'$"):
        F.convert(DT, GT, "coco", "xyxy")
    # a file's errors name the file
    bad = os.path.join(tmp_path, "bad.json")
    with open(bad, "w") as f:
        json.dump([{"image_id": 4, "category_id": 3, "bbox": [0, 0, 1], "score": 1}], f)
    with pytest.raises(ValueError, match=r"^" + bad.replace("\\", r"\\").replace(".", r"\.") +
                       r"\[0\]\['bbox'\] must be a list of 4 numbers"):
        F.convert(bad, GT, "coco", None)
    with pytest.raises(ValueError, match=r"^`detections`: results file '.*nosuch\.json' does not exist"):
        F.convert(os.path.join(tmp_path, "nosuch.json"), GT, "coco", None)
    with pytest.raises(ValueError, match=r"^`ground_truths`: ground-truth file '.*gt\.json' is \d+ bytes, more than"):
        F.convert(dp, gp, "coco", None, max_json_bytes=5)
    with pytest.raises(ValueError, match=r"^`detections`: results file '.*dt\.json' is \d+ bytes, more than"):
        F.convert(dp, GT, "coco", None, max_json_bytes=5)


class _Tensor:
    """Stands for a CPU torch tensor: detach().cpu().numpy()."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_per_image_conversion_by_hand():
    dts = [{"boxes": _Tensor([[0, 0, 2, 4]]), "scores": _Tensor([0.5]), "labels": _Tensor([3])},
           {"boxes": np.zeros((0, 4)), "scores": [], "labels": np.zeros(0, np.int64)},
           {"boxes": [[1, 1, 2, 2], [0, 0, 1, 1]], "scores": [0.1, 0.2], "labels": [9, 3]}]
    gts = [{"boxes": _Tensor([[0, 0, 2, 2], [1, 1, 3, 5]]), "labels": _Tensor([3, 4]),
            "iscrowd": _Tensor([0, 1]), "area": _Tensor([7.0, 8.0]), "difficult": [True, False],
            "ignore": [False, True], "image_id": 99},
           {"boxes": [[0, 0, 1, 1]], "labels": [3]},
           {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}]
    conv = F.convert(dts, gts, "voc", None)
    gt, dt = conv.ground_truths, conv.detections
    assert conv.box_format == "xyxy" and conv.class_names == ()
    assert gt["image_id"].tolist() == [0, 0, 1] and gt["images"].tolist() == [0, 1, 2]
    assert gt["boxes"].tolist() == [[0, 0, 2, 2], [1, 1, 3, 5], [0, 0, 1, 1]]
    assert gt["labels"].tolist() == [3, 4, 3] and gt["labels"].dtype == np.int64
    assert gt["iscrowd"].tolist() == [False, True, False] and gt["iscrowd"].dtype == bool
    assert gt["difficult"].tolist() == [True, False, False] and gt["ignore"].tolist() == [False, True, False]
    # image 1 has no area entry: its box's area (1 x 1)
    assert gt["area"].tolist() == [7.0, 8.0, 1.0]
    assert gt["classes"].tolist() == [3, 4, 9]  # ground truths' and detections' labels
    assert dt["image_id"].tolist() == [0, 2, 2] and dt["labels"].tolist() == [3, 9, 3]
    assert dt["boxes"].tolist() == [[0, 0, 2, 4], [1, 1, 2, 2], [0, 0, 1, 1]]
    assert dt["scores"].tolist() == [0.5, 0.1, 0.2] and dt["scores"].dtype == np.float64
    # no area anywhere: no area column (the columns default to box areas)
    conv = F.convert(dts, [{k: v for k, v in g.items() if k != "area"} for g in gts], "torchvision", "xyxy")
    assert "area" not in conv.ground_truths
    # area from the boxes in the format given: xywh [1, 1, 3, 5] is 3 x 5
    conv = F.convert(dts[:2], [{"boxes": [[0, 0, 2, 2]], "labels": [3], "area": [6.0]},
                               {"boxes": [[1, 1, 3, 5]], "labels": [3]}], "torchvision", "xywh")
    assert conv.ground_truths["area"].tolist() == [6.0, 15.0] and conv.box_format == "xywh"
    conv = F.convert(dts[:2], [{"boxes": [[0, 0, 2, 2]], "labels": [3], "area": [6.0]},
                               {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], "torchvision", "cxcywh")
    assert conv.ground_truths["area"].tolist() == [6.0]
    # no images at all
    conv = F.convert([], [], "torchvision", None)
    assert conv.ground_truths["boxes"].shape == (0, 4) and conv.detections["boxes"].shape == (0, 4)
    assert conv.ground_truths["labels"].dtype == np.int64 and conv.detections["scores"].shape == (0,)
    assert conv.ground_truths["iscrowd"].dtype == bool and conv.ground_truths["images"].tolist() == []


@pytest.mark.parametrize("dts,gts,err,match", [
    ({"boxes": []}, [], TypeError, r"^`detections` must be a list of per-image dicts \(boxes, scores, labels\) like "
                                   r"`ground_truths`; got dict"),
    ([{"boxes": []}, 3], [{}, {}], TypeError, r"^`detections` must be a list of per-image dicts"),
    ([], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError, r"^`detections` and `ground_truths` must have one dict per image "
                                                    r"each; got 0 and 1$"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": []}], ValueError,
     r"^`ground_truths\[0\]` must have a 'labels' entry; got keys \['boxes'\]$"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"labels": []}], ValueError,
     r"^`ground_truths\[0\]` must have a 'boxes' entry; got keys \['labels'\]$"),
    ([{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError,
     r"^`detections\[0\]` must have a 'scores' entry; got keys \['boxes', 'labels'\]$"),
    ([{"scores": [], "labels": []}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError,
     r"^`detections\[0\]` must have a 'boxes' entry"),
    ([{"boxes": [], "scores": []}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError,
     r"^`detections\[0\]` must have a 'labels' entry"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1], "iscrowd": [0, 0]}],
     ValueError, r"^`ground_truths\[0\]\['iscrowd'\]` must have shape \(1,\); got \(2,\)$"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1], "difficult": [[1]]}],
     ValueError, r"^`ground_truths\[0\]\['difficult'\]` must have shape \(1,\); got \(1, 1\)$"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1], "ignore": ["y"]}],
     TypeError, r"^`ground_truths\[0\]\['ignore'\]`"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1], "area": [1.0, 2.0]}],
     ValueError, r"^`ground_truths\[0\]\['area'\]` must have shape \(1,\); got \(2,\)$"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1], "area": [[1.0]]}],
     ValueError, r"^`ground_truths\[0\]\['area'\]` must be 1-D"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1]], "labels": [1]}], ValueError,
     r"`ground_truths\[0\]\['boxes'\]`"),
    ([{"boxes": [], "scores": [], "labels": []}], [{"boxes": [[0, 0, 1, 1]], "labels": [1, 2]}], ValueError,
     r"`ground_truths\[0\]\['labels'\]`"),
    ([{"boxes": [[0, 0, 1]], "scores": [1], "labels": [1]}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError,
     r"`detections\[0\]\['boxes'\]`"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [1, 2], "labels": [1]}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], ValueError,
     r"`detections\[0\]\['scores'\]`"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [1], "labels": [1.5]}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}], TypeError,
     r"`detections\[0\]\['labels'\]`"),
    ([{"boxes": [[0, 0, 1, 1]], "scores": [1], "labels": [1, 2]}], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}],
     ValueError, r"^`detections\[0\]\['labels'\]` must have length 1"),
])
def test_per_image_refusals(dts, gts, err, match):
    with pytest.raises(err, match=match):
        F.convert(dts, gts, "torchvision", None)


def test_per_image_box_format_and_ground_truth_type():
    with pytest.raises(ValueError, match=r"^`box_format` must be one of .*; got 'xxyy'$"):
        F.convert([], [], "voc", "xxyy")
    with pytest.raises(TypeError, match=r"^`ground_truths` must be a list of per-image dicts \(boxes, labels, \.\.\.\) "
                                        r"for format='voc'; got dict"):
        F.convert([], {"boxes": []}, "voc", None)
    with pytest.raises(TypeError, match=r"for format='torchvision'; got list"):
        F.convert([], [{"boxes": []}, 1], "torchvision", None)


def test_refdet_columns_pass_through():
    dt, gt = {"boxes": np.zeros((0, 4))}, {"boxes": np.zeros((0, 4))}
    conv = F.convert(dt, gt, "refdet", None)
    assert conv.detections is dt and conv.ground_truths is gt and conv.box_format == "xyxy" and conv.class_names == ()
    assert F.convert(dt, gt, "refdet", "cxcywh").box_format == "cxcywh"


def test_read_json(tmp_path):
    path = os.path.join(tmp_path, "a.json")
    with open(path, "w") as f:
        f.write('{"a": [1, 2]}')
    assert F.read_json(path, "a file") == {"a": [1, 2]}
    assert F.read_json(pathlib.Path(path), "a file", max_bytes=13) == {"a": [1, 2]}
    with pytest.raises(ValueError, match=r"^a file '.*a\.json' is 13 bytes, more than the 12"):
        F.read_json(path, "a file", max_bytes=12)
    assert F.DEFAULT_MAX_JSON_BYTES == 1 << 30


def test_evaluate_reads_each_format():
    # the converted scene evaluates the same through evaluate_detections from per-image dicts
    dts = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [1]}]
    gts = [{"boxes": [[0, 0, 10, 10]], "labels": [1], "difficult": [False]}]
    assert evaluate_detections(dts, gts).ap.tolist() == [1.0]


def test_records_may_be_any_mapping_and_arrays_need_all_three_tensor_methods():
    import types
    gt = {**GT, "annotations": [types.MappingProxyType(a) for a in GT["annotations"]]}
    dt = [types.MappingProxyType(r) for r in DT]
    conv = F.convert(dt, gt, "coco", None)
    assert conv.ground_truths["boxes"].tolist() == [[1, 2, 3, 4], [0, 0, 2, 5]]

    class HalfTensor(np.ndarray):
        """An array with ``cpu`` and ``numpy`` methods but no ``detach``: not taken for a tensor."""

        def cpu(self):
            raise AssertionError("not a tensor")

        def numpy(self):
            raise AssertionError("not a tensor")

    boxes = np.array([[0.0, 0, 2, 2]]).view(HalfTensor)
    assert F._np(boxes) is boxes
    conv = F.convert([{"boxes": boxes, "scores": [1.0], "labels": [1]}], [{"boxes": boxes, "labels": [1]}],
                     "torchvision", None)
    assert conv.ground_truths["boxes"].tolist() == [[0, 0, 2, 2]]
    t = _Tensor([1, 2])
    assert F._np(t) is t.a


def test_numbers_slow_path_and_unsigned_ids():
    where = F._Where("x", False)
    # mixed entries take the per-entry path: a bool is allowed only for iscrowd-like fields
    with pytest.raises(ValueError, match=r"^`x\[1\]\['c'\]` must be a number; got str 'a'$"):
        F._numbers([True, "a"], where, "", "c", allow_bool=True)
    with pytest.raises(ValueError, match=r"^`x\[0\]\['c'\]` must be a number; got bool True$"):
        F._numbers([True, "a"], where, "", "c")
    with pytest.raises(ValueError, match=r"^`x\[1\]\['b'\]` must be a list of 2 numbers; got list \[1, 2, 3\]$"):
        F._numbers([[1, 2], [1, 2, 3]], where, "", "b", width=2)
    # unsigned and signed integer ids look each other up
    assert F._lookup(np.array([5, 1], np.uint64), np.array([1, 5]), where, "", "k", "w").tolist() == [1, 0]
    assert F._lookup(np.array([5]), np.array([1, 5], np.uint32), where, "", "k", "w").tolist() == [1]
    # strings against strings
    assert F._lookup(np.array(["b"]), np.array(["a", "b"]), where, "", "k", "w").tolist() == [1]
    with pytest.raises(ValueError, match=r"^`x\[0\]\['k'\]` = 'c' is not among the w ids$"):
        F._lookup(np.array(["c"]), np.array(["a", "b"]), where, "", "k", "w")


def test_per_image_columns_are_float64_int64_and_bool():
    # integer and float32 inputs, no empty image (whose float64 zeros would hide the dtype)
    dts = [{"boxes": np.array([[0, 0, 2, 2]], np.int32), "scores": np.array([0.5], np.float32), "labels": [1]}]
    gts = [{"boxes": np.array([[0, 0, 2, 2]], np.int32), "labels": np.array([1], np.int32),
            "area": np.array([4.5], np.float32), "iscrowd": np.array([2]), "difficult": np.array([0.5])}]
    conv = F.convert(dts, gts, "voc", None)
    gt, dt = conv.ground_truths, conv.detections
    assert gt["boxes"].dtype == np.float64 and dt["boxes"].dtype == np.float64 and dt["scores"].dtype == np.float64
    assert gt["area"].dtype == np.float64 and gt["area"].tolist() == [4.5]
    assert gt["labels"].dtype == np.int64 and dt["labels"].dtype == np.int64
    for key in ("iscrowd", "difficult", "ignore"):
        assert gt[key].dtype == bool, key
    assert gt["iscrowd"].tolist() == [True] and gt["difficult"].tolist() == [True] and gt["ignore"].tolist() == [False]


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh", "yxyx"])
def test_per_image_box_formats_and_areas_of_empty_images(fmt):
    gts = [{"boxes": [[0, 0, 2, 4]], "labels": [1], "area": [3.0]}, {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)},
           {"boxes": [[1, 1, 2, 6]], "labels": [1]}]
    dts = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}] * 3
    conv = F.convert(dts, gts, "torchvision", fmt)
    assert conv.box_format == fmt
    # the third image's area from its box read in `fmt`: xyxy 1 x 5, xywh 2 x 6, cxcywh 2 x 6, yxyx 5 x 1
    assert conv.ground_truths["area"].tolist() == [3.0, {"xyxy": 5.0, "yxyx": 5.0}.get(fmt, 12.0)]
