"""`refdet demo` end to end (short runs) and the synthetic dataset."""
import os

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


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_demo_short_run_prints_every_stage(model, tmp_path, capsys):
    lines = []
    res = run(model, steps=3, batch=4, n_train=16, n_test=4, out=str(tmp_path), write=lines.append)
    text = "\n".join(lines)
    for stage in ("[1] data", "[2] anchors", "[3] network", "[4] label assignment", "[5] training",
                  "[6] inference", "[7] held-out COCO evaluation"):
        assert stage in text
    assert text.count("step ") >= 3
    assert np.isfinite(res["loss_first"]) and np.isfinite(res["loss_last"])
    pytest.importorskip("matplotlib")
    for name in ("anchors.png", "focal_loss.png", "detections.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_demo_cli(tmp_path, capsys):
    assert main(["demo", "--steps", "1", "--batch", "2", "--no-plots", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "refdet demo" in out and "[7]" in out
    assert main(["demo", "--steps", "0"]) == 2


def test_yolo_demo_short_run_prints_every_stage(tmp_path):
    lines = []
    res = run("yolo", steps=4, batch=4, n_train=16, n_test=4, out=str(tmp_path), write=lines.append)
    text = "\n".join(lines)
    for stage in ("[1] data", "[2] anchor points: 336 in all", "level 0: 16 x 16 map, stride  4", "[3] network",
                  "[4] label assignment: task-aligned", "image 0, object 0", "positive (by level",
                  "[5] training", "[6] inference", "before NMS", "after class-aware NMS",
                  "[7] held-out COCO evaluation", "untrained AP"):
        assert stage in text, stage
    assert text.count("step ") >= 4 and "box " in text and "dfl " in text
    assert res["model"] == "yolo" and np.isfinite(res["loss_first"]) and res["positives_first_batch"] > 0
    assert 0 <= res["ap_untrained"] <= 1 and 0 <= res["ap_trained"] <= 1
    pytest.importorskip("matplotlib")
    for name in ("yolo_assignment.png", "yolo_detections.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_yolo_demo_cli(tmp_path, capsys):
    assert main(["demo", "--model", "yolo", "--steps", "1", "--batch", "2", "--no-plots", "--out",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "anchor-free YOLO" in out and "[7]" in out and "[8]" not in out
