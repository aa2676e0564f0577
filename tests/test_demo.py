"""`refdet demo` end to end (short runs) and the synthetic dataset."""
import os
import re

import numpy as np
import pytest

from refdet.cli import main
from refdet.demo import run
from refdet.synthetic import make_synthetic_dataset


def test_synthetic_boxes_are_tight_and_inside():
    data = make_synthetic_dataset(20, (48, 40), max_objects=3, min_size=6, max_size=20, noise=0.0, rng=0)
    assert data.images.shape == (20, 3, 48, 40) and data.images.dtype == np.float32
    for img, boxes, labels in zip(data.images, data.boxes, data.labels):
        assert boxes.shape[1] == 4 and len(boxes) == len(labels) >= 1
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 40) and np.all(boxes[:, 3] <= 48)
        assert set(labels.tolist()) <= {0, 1}
        # the last-painted shape is fully visible: its colour differs from the background at its centre
        b = boxes[-1].astype(int)
        cy, cx = (b[1] + b[3]) // 2, (b[0] + b[2]) // 2
        assert not np.allclose(img[:, cy, cx], img[:, 0, 0]) or (cy == 0 and cx == 0)


def test_synthetic_is_reproducible_and_validates():
    a = make_synthetic_dataset(3, rng=5)
    b = make_synthetic_dataset(3, rng=5)
    np.testing.assert_array_equal(a.images, b.images)
    with pytest.raises(ValueError, match="`max_size`"):
        make_synthetic_dataset(1, (16, 16), max_size=32)
    with pytest.raises(TypeError, match="`n_images`"):
        make_synthetic_dataset(1.5)


FIGURES = {"retinanet": {"anchors", "head_layout", "assignment", "nms", "detections", "focal_loss"},
           "rpn": {"anchors", "head_layout", "assignment", "nms", "detections"},
           "ssd": {"anchors", "head_layout", "assignment", "nms", "detections"}}


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_demo_short_run_prints_every_stage_and_writes_its_figures(model, tmp_path, capsys):
    lines = []
    res = run(model, steps=12, batch=4, n_train=16, n_test=4, out=str(tmp_path), write=lines.append)
    text = "\n".join(lines)
    for stage in ("[1] data", "[2] anchors", "[3] network", "[4] label assignment", "[5] training",
                  "[6] inference", "[7] held-out COCO evaluation"):
        assert stage in text
    # the training is summarised, not listed step by step
    assert "12 steps in" in text
    assert re.search(r"loss \(mean of the previous 3 steps\) at step 3: [0-9.]+, 6: [0-9.]+, 9: [0-9.]+, "
                     r"12: [0-9.]+\n", text + "\n")
    assert "step 7" not in text and text.count("\n") < 40
    assert np.isfinite(res["loss_first"]) and np.isfinite(res["loss_last"])
    # progress went to stderr (not a terminal here: plain lines at the 10% marks, not one per step)
    err = capsys.readouterr().err
    train_lines = [ln for ln in err.splitlines() if ln.strip().startswith("training")]
    assert 1 <= len(train_lines) <= 12 and "\r" not in err and train_lines[-1].split()[1] == "12/12"
    pytest.importorskip("matplotlib")
    assert "[8] figures" in text
    written = {os.path.splitext(os.path.basename(f))[0] for f in res["figures"]}
    assert written == FIGURES[model]                   # the focal loss only where the model uses it
    for name in FIGURES[model]:
        assert os.path.getsize(tmp_path / f"{name}.png") > 5000
    assert ("focal_loss.png" in os.listdir(tmp_path)) == (model == "retinanet")


@pytest.mark.parametrize("model,present,absent", [
    ("retinanet", ["matcher.match", "box_coder.encode_boxes", "losses.sigmoid_focal_loss", "nms.nms",
                   "box_coder.decode_boxes", "anchors.cell_anchors", "anchors._grid"], ["sampler", "ssd_match"]),
    ("rpn", ["matcher.match", "sampler.sample_balanced_indices", "losses.bce_with_logits", "nms.batched_nms"],
     ["sigmoid_focal_loss"]),
    ("ssd", ["matcher.ssd_match", "anchors.ssd_default_boxes", "losses.smooth_l1"], ["sigmoid_focal_loss",
                                                                                    "def cell_anchors"]),
])
def test_demo_show_reference_prints_each_stage_reference(model, present, absent):
    import importlib
    import inspect
    lines = []
    run(model, steps=1, batch=2, n_train=8, n_test=2, plots=False, show_reference=True, progress=False,
        write=lines.append)
    text = "\n".join(ln[len("      | "):] if ln.startswith("      | ") else ln for ln in lines)
    for name in present:
        mod, fn = name.rsplit(".", 1)
        src = inspect.getsource(getattr(importlib.import_module(f"refdet.reference.{mod}"), fn)).rstrip()
        assert src in text, name
    for word in absent:
        assert word not in text
    # each reference sits under its stage: the matcher after [4], NMS after [6]
    assert text.index("[4] label assignment") < text.index("def match" if model != "ssd" else "def ssd_match") \
        < text.index("[5] training")
    assert text.index("[6] inference") < text.index("def nms(") < text.index("[7]")
    quiet = []
    run(model, steps=1, batch=2, n_train=8, n_test=2, plots=False, progress=False, write=quiet.append)
    assert not any(ln.startswith("      | ") for ln in quiet)


def test_demo_cli(tmp_path, capsys):
    assert main(["demo", "--steps", "1", "--batch", "2", "--no-plots", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "refdet demo" in out and "[7]" in out
    with pytest.raises(SystemExit) as e:
        main(["demo", "--steps", "0"])
    assert e.value.code == 2 and "--steps: must be an integer >= 1; got 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# what the figures show, computed by the demo (refdet.plots only draws it)
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_anchor_locations_are_one_location_per_level_on_the_point(model):
    from refdet.demo import anchor_locations
    from refdet.detector import Detector
    det = Detector(model)
    point = (21.0, 45.5)
    levels = anchor_locations(det, point)
    assert len(levels) == len(det.feature_sizes)
    for lv, s, a in zip(levels, det.strides, det.num_anchors):
        b = lv["anchors"]
        assert b.shape == (a, 4) and np.array_equal(b, det.anchors[lv["rows"]])
        centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        assert np.allclose(centres, centres[0])            # ONE location: a common centre
        y, x = lv["cell"]
        # the cell (stride x stride pixels) holds the point and its centre is the anchors' centre
        assert x * s <= point[0] < (x + 1) * s and y * s <= point[1] < (y + 1) * s
        assert np.allclose(centres[0], ((x + 0.5) * s, (y + 0.5) * s))


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_assignment_categories_agree_with_the_bands_and_the_detector(model):
    from refdet.demo import _BANDS, assignment_categories
    from refdet.detector import Detector
    from refdet.iou import box_iou
    det = Detector(model)
    data = make_synthetic_dataset(12, rng=0)       # holds best matches for every model
    tgts = det._check_targets(list(zip(data.boxes, data.labels)), 12)
    high, low = _BANDS[model]
    cats = assignment_categories(det, tgts)
    lt, pm, nm = det.assign(tgts, rng=0)
    n_best = 0
    for i, ((best, cat), (gtb, _)) in enumerate(zip(cats, tgts)):
        q = box_iou(gtb, det.anchors)
        np.testing.assert_array_equal(best, q.max(0))
        assert set(np.unique(cat)) <= {"negative", "ignored", "positive", "best match", "outside"}
        assert np.all(best[cat == "positive"] >= high)
        assert np.all(best[cat == "negative"] < low)
        assert np.all((best[cat == "ignored"] >= low) & (best[cat == "ignored"] < high))
        bm = np.flatnonzero(cat == "best match")
        n_best += len(bm)
        assert np.all(best[bm] < high)
        # a best match is some object's best anchor (up to ties); the RPN matches inside anchors only
        qm = np.where(cat == "outside", -np.inf, q)
        assert all(np.isclose(q[:, j], qm.max(1)).any() for j in bm)
        if model != "rpn":   # the detector's own labels (the RPN's are sampled afterwards)
            np.testing.assert_array_equal(pm[i], np.isin(cat, ["positive", "best match"]))
            np.testing.assert_array_equal(nm[i], cat == "negative")
        else:                # sampled positives and negatives come from the assigned ones
            assert np.all(np.isin(cat[pm[i]], ["positive", "best match"])) and np.all(cat[nm[i]] == "negative")
            assert "outside" in set(cat)
    assert n_best > 0


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_candidates_before_nms_hold_what_nms_keeps(model):
    from refdet.demo import candidates_before_nms, head_maps
    from refdet.detector import Detector
    from refdet.iou import box_iou
    det = Detector(model)
    params = det.init(rng=0)
    img = make_synthetic_dataset(1, rng=1).images[0]
    (bb, bs, bl), (ab, as_, al) = candidates_before_nms(det, params, img)
    assert len(ab) <= len(bb) and np.all(np.diff(bs) <= 0) and np.all(np.diff(as_) <= 0)
    # every kept box is one of the candidates (same box, score, label)
    for b, s, lab in zip(ab, as_, al):
        hit = np.flatnonzero((np.abs(bb - b).max(1) == 0) & (bs == s) & (bl == lab))
        assert hit.size >= 1
    # the first of what detect returns is what NMS keeps first
    d = det.detect(params, img[None])[0]
    np.testing.assert_array_equal(d[0], ab[:len(d[0])])
    scores, deltas = head_maps(det, params, img, 0)
    a, (fh, fw) = det.num_anchors[0], det.feature_sizes[0]
    k = 1 if model == "rpn" else det.config.num_classes + (model == "ssd")
    assert scores.shape == (a * k, fh, fw) and deltas.shape == (4 * a, fh, fw)
    assert np.all((scores >= 0) & (scores <= 1))
    # channel 4a + c at (y, x) is row (y * W + x) * A + a of the flattened deltas
    cls, box, _ = det.forward(params, img[None])
    y, x, aa, c = fh - 1, 1, a - 1, 2
    assert deltas[4 * aa + c, y, x] == np.float64(box[0, (y * fw + x) * a + aa, c])
    if len(ab) > 1:
        assert np.all(box_iou(ab[:1], ab[1:])[0][al[1:] == al[0]] <= (0.7 if model == "rpn" else 0.5))


def test_yolo_demo_short_run_prints_every_stage(tmp_path):
    lines = []
    res = run("yolo", steps=4, batch=4, n_train=16, n_test=4, out=str(tmp_path), write=lines.append,
              progress=False, show_reference=True)
    text = "\n".join(lines)
    for stage in ("[1] data", "[2] anchor points: 336 in all", "level 0: 16 x 16 map, stride  4", "[3] network",
                  "[4] label assignment: task-aligned", "image 0, object 0", "positive (by level",
                  "[5] training", "[6] inference", "before NMS", "after class-aware NMS",
                  "[7] held-out COCO evaluation", "untrained AP"):
        assert stage in text, stage
    assert "4 steps in" in text and "loss (mean of the previous" in text
    assert res["model"] == "yolo" and np.isfinite(res["loss_first"]) and res["positives_first_batch"] > 0
    assert 0 <= res["ap_untrained"] <= 1 and 0 <= res["ap_trained"] <= 1 and res["train_seconds"] > 0
    assert "refdet/reference/yolo.py" in text and "def task_aligned_assign" in text and "def dfl_decode" in text
    with pytest.raises(ValueError, match="`quantize`"):
        run("yolo", steps=1, quantize=True, plots=False, write=lines.append, progress=False)
    pytest.importorskip("matplotlib")
    for name in ("yolo_assignment.png", "yolo_detections.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_yolo_demo_cli(tmp_path, capsys):
    assert main(["demo", "--model", "yolo", "--steps", "1", "--batch", "2", "--no-plots", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "anchor-free YOLO" in out and "[7]" in out and "[8]" not in out


# ---------------------------------------------------------------------------------------------------
# Faster R-CNN (refdet.demo_faster_rcnn)
# ---------------------------------------------------------------------------------------------------

def test_faster_rcnn_demo_short_run_prints_every_stage(tmp_path):
    lines = []
    res = run("faster-rcnn", steps=3, batch=2, n_train=8, n_test=2, out=str(tmp_path), write=lines.append,
              progress=False, show_reference=True)
    text = "\n".join(lines)
    for stage in ("[1] data", "[2] anchors: 1020 in all", "P2 (stride 4)   16 x 16 map, 3 anchors per location",
                  "P5 (stride 32)   2 x  2 map", "[3] network", "box head: RoIAlign 5 x 5 x 32",
                  "[4] first stage", "RPN targets", "before NMS; NMS per level at IoU 0.7", "[5] second stage",
                  "the level each RoI is pooled from", "[6] training", "[7] inference", "box head: softmax",
                  "[8] held-out COCO evaluation", "untrained AP"):
        assert stage in text, stage
    assert "3 steps in" in text and "loss (mean of the previous" in text
    assert res["model"] == "faster_rcnn" and np.isfinite(res["loss_first"]) and res["rpn_positives_first_batch"] > 0
    c = res["proposal_counts_first_batch"]
    assert c.shape == (2, 3) and np.all(c[:, 0] >= c[:, 1]) and np.all(c[:, 1] >= c[:, 2]) and np.all(c[:, 2] == 150)
    # the histogram counts every sampled RoI (32 per image), and its bars are printed with the counts
    assert res["roi_levels_first_batch"].sum() == 2 * 32
    for name, n in zip(("P2 (stride 4)", "P3 (stride 8)", "P4 (stride 16)"), res["roi_levels_first_batch"]):
        assert re.search(re.escape(name) + r"\s+#*\s+" + f"{n} RoIs", text), name
    # each reference sits under its stage
    assert text.index("[5] second stage") < text.index("def roi_level_reference") < text.index("[6] training")
    assert text.index("[4] first stage") < text.index("def match") < text.index("[5] second stage")
    assert 0 <= res["ap_untrained"] <= 1 and 0 <= res["ap_trained"] <= 1
    with pytest.raises(ValueError, match="`quantize`"):
        run("faster_rcnn", steps=1, quantize=True, plots=False, write=lines.append, progress=False)
    pytest.importorskip("matplotlib")
    assert "[9] figures" in text
    assert {os.path.basename(f) for f in res["figures"]} == {"anchors.png", "proposals_rois.png", "detections.png"}
    for name in ("anchors.png", "proposals_rois.png", "detections.png"):
        assert os.path.getsize(tmp_path / name) > 5000


def test_faster_rcnn_demo_levels_and_counts_are_the_detectors():
    # the demo's histogram is the level the detector's step pooled each sampled RoI from, and its
    # proposal counts are select_proposals' with the configuration's numbers
    from refdet.demo_faster_rcnn import pooled_levels, proposal_counts
    from refdet.detector import Detector
    from refdet.iou import box_iou

    det = Detector("faster-rcnn")
    params = det.init(rng=0)
    data = make_synthetic_dataset(3, rng=1)
    targets = list(zip(data.boxes, data.labels))
    _, _, trace = det.loss_and_grads(params, data.images, targets, rng=0)
    np.testing.assert_array_equal(pooled_levels(det, np.concatenate(trace.assignment.rois.rois)), trace.roi_levels)
    obj, deltas, _ = det.forward(params, data.images)
    counts, before, kept = proposal_counts(det, obj, deltas, training=True)
    for i in range(3):
        np.testing.assert_array_equal(kept.boxes[i], trace.assignment.proposals.boxes[i])
        assert counts[i, 2] == len(kept.boxes[i]) <= 150 and counts[i, 0] == len(before.boxes[i])
        # before NMS: per level at most 300, nothing suppressed, so overlaps above 0.7 remain
        assert np.all(np.bincount(before.levels[i]) <= 300)
        q = box_iou(before.boxes[i], before.boxes[i])
        same = before.levels[i][:, None] == before.levels[i][None, :]
        assert (q[same & ~np.eye(len(q), dtype=bool)] > 0.7).any()


def test_proposals_rois_figure_names_its_counts():
    pytest.importorskip("matplotlib")
    from refdet.plots import proposals_rois_figure

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 40, (30, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(4, 20, (30, 2))], 1)
    fig = proposals_rois_figure(np.zeros((3, 64, 64)), (boxes, np.linspace(1, 0, 30)), (boxes[:12], np.arange(12) % 4),
                                (boxes[:8], np.arange(8) < 3, np.arange(8) % 3),
                                level_names=["P2 (stride 4)", "P3 (stride 8)", "P4 (stride 16)", "P5 (stride 32)"],
                                pooled_levels=3)
    titles = [ax.get_title() for ax in fig.axes]
    assert "the best 30 of 30" in titles[0] and "12 kept" in titles[1] and "8 sampled RoIs (3 foreground" in titles[2]
    bars = fig.axes[3].patches
    assert len(bars) == 6                               # background and foreground bars of 3 pooled levels
    # levels of the 8 RoIs: 0 1 2 0 1 2 0 1, the first 3 foreground: background 2, 2, 1 and foreground 1, 1, 1
    assert [float(b.get_height()) for b in bars] == [2, 2, 1, 1, 1, 1]
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_faster_rcnn_demo_cli(tmp_path, capsys):
    assert main(["demo", "--model", "faster-rcnn", "--steps", "1", "--batch", "2", "--no-plots", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Faster R-CNN" in out and "[8] held-out" in out
