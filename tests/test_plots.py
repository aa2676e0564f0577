"""refdet.plots: what each figure says (titles, labels, legends) and that nothing it lists is drawn out of view.

The figures are built by the ``*_figure`` functions (matplotlib Figures) and inspected; the demo test
(tests/test_demo.py) writes every PNG of every model.
"""
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from refdet import plots as P  # noqa: E402
from refdet.demo import anchor_locations  # noqa: E402
from refdet.detector import Detector  # noqa: E402
from refdet.synthetic import make_synthetic_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return make_synthetic_dataset(3, rng=7)


def _texts(fig):
    out = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
        leg = ax.get_legend()
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return out


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_anchor_label():
    assert P.anchor_label([-8, -4, 8, 4]) == "16x8 px, h/w 0.5"
    assert P.anchor_label([0, 0, 14.142, 7.071]) == "14.1x7.07 px, h/w 0.5"
    assert P.anchor_label([2, 2, 34, 34]) == "32x32 px, h/w 1"


@pytest.mark.parametrize("model", ["retinanet", "rpn", "ssd"])
def test_anchors_figure_one_location_every_anchor_labelled_and_in_view(model, data):
    det = Detector(model)
    gt = np.asarray(data.boxes[0], np.float64)
    centre = ((gt[0, 0] + gt[0, 2]) / 2, (gt[0, 1] + gt[0, 3]) / 2)
    levels = anchor_locations(det, centre)
    fig = P.anchors_figure(data.images[0], levels, gt_boxes=gt)
    assert len(fig.axes) == len(levels)
    for ax, lv in zip(fig.axes, levels):
        assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)"
        y, x = lv["cell"]
        assert f"stride {lv['stride']}" in ax.get_title() and f"cell (y={y}, x={x})" in ax.get_title()
        labels = _legend(ax)
        # every anchor of the location in the legend, with its size and ratio
        for a, b in enumerate(lv["anchors"]):
            assert f"a={a}: {P.anchor_label(b)}" in labels
        # every drawn anchor is inside the plotted area (nothing listed is out of view)
        x0, x1 = sorted(ax.get_xlim())
        y0, y1 = sorted(ax.get_ylim())
        drawn = [p for p in ax.patches if isinstance(p, Rectangle) and str(p.get_label()).startswith("a=")]
        assert len(drawn) == len(lv["anchors"])
        for p in drawn:
            bx, by = p.get_x(), p.get_y()
            assert x0 <= bx and bx + p.get_width() <= x1 and y0 <= by and by + p.get_height() <= y1
        # the anchors are told apart: distinct (colour, line style) pairs
        styles = {(tuple(p.get_edgecolor()), str(p.get_linestyle())) for p in drawn}
        assert len(styles) == len(drawn)
        # y grows downwards, as in the image
        assert ax.get_ylim()[0] > ax.get_ylim()[1]
    assert "ONE location" in fig._suptitle.get_text() or "one location" in fig._suptitle.get_text()


def test_head_layout_figure_names_the_channels(data):
    rng = np.random.default_rng(0)
    A, K, H, W = 9, 1, 8, 8
    scores = rng.random((A * K, H, W))
    deltas = rng.standard_normal((4 * A, H, W))
    labels = [f"anchor {a}" for a in range(A)]
    fig = P.head_layout_figure(data.images[0], scores=scores, deltas=deltas, cell=(5, 2), stride=8,
                               anchor_labels=labels, class_names=("object",), score_name="objectness")
    text = "\n".join(_texts(fig))
    assert "objectness: (A, H, W) = (9, 8, 8)" in text and "(4A, H, W) = (36, 8, 8)" in text
    assert "channel 4a + c" in text
    # the (A, 4) table: entry (a, c) is channel 4a + c at the cell, with its value
    table_ax = [ax for ax in fig.axes if "box deltas" in ax.get_title()][0]
    cells = {t.get_text().split("\n")[0]: t.get_text().split("\n")[1] for t in table_ax.texts}
    for a, c in ((0, 0), (2, 1), (8, 3)):
        assert cells[f"ch {4 * a + c}"] == f"{deltas[4 * a + c, 5, 2]:+.2f}"
    # rows of the flattened output: (y * W + x) * A + a = (5 * 8 + 2) * 9 = 378..386
    assert "= 378..386" in text
    # several classes: channel a*K + k
    fig = P.head_layout_figure(data.images[0], scores=rng.random((3 * 2, 4, 4)), deltas=deltas[:12, :4, :4],
                               cell=(0, 3), stride=16, anchor_labels=labels[:3], class_names=("a", "b"))
    text = "\n".join(_texts(fig))
    assert "(A*K, H, W) = (3*2, 4, 4)" in text and "channel a*K + k" in text and "a=2, b" in text
    with pytest.raises(ValueError, match="`scores`"):
        P.head_layout_figure(data.images[0], scores=scores[:5], deltas=deltas, cell=(0, 0), stride=8,
                             anchor_labels=labels, class_names=("object",))


def test_assignment_figure_shows_the_bands_and_the_best_match_rule(data):
    iou = np.array([0.0, 0.1, 0.29, 0.3, 0.5, 0.69, 0.7, 0.9, 0.65])
    cat = np.array(["negative"] * 3 + ["ignored"] * 3 + ["positive"] * 2 + ["best match"])
    anchors = np.array([[0, 0, 10, 10]] * 9, np.float64)
    fig = P.assignment_figure(iou, cat, high=0.7, low=0.3, image=data.images[0], anchors=anchors,
                              image_category=cat, image_max_iou=iou, gt_boxes=data.boxes[0], n_images=1,
                              rule="IoU >= 0.7 positive")
    hist = fig.axes[0]
    labels = _legend(hist)
    assert "negative (IoU < 0.3): 3" in labels and "ignored (0.3 <= IoU < 0.7): 3" in labels
    assert "positive (IoU >= 0.7): 2" in labels and "positive by the best-match rule: 1" in labels
    texts = [t.get_text() for t in hist.texts]
    assert "IoU 0.3 " in texts and " IoU 0.7" in texts
    assert any("best-match rule: 1 anchor below 0.7 made positive" in t for t in texts)
    # the three bands shaded: [0, 0.3), [0.3, 0.7), [0.7, 1]
    spans = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6), p.get_gid()) for p in hist.patches
                   if str(p.get_gid()).startswith("band"))
    assert spans == [(0.0, 0.3, "band: negative"), (0.3, 0.7, "band: ignored"), (0.7, 1.0, "band: positive")]
    assert "IoU >= 0.7 positive" in "\n".join(_texts(fig))
    # SSD: no ignored band
    fig = P.assignment_figure(iou[:3], np.array(["negative", "negative", "positive"]), high=0.5, low=0.5)
    assert not any("ignored" in t for t in _legend(fig.axes[0]))
    assert [p.get_gid() for p in fig.axes[0].patches if str(p.get_gid()).startswith("band")] == [
        "band: negative", "band: positive"]


def test_nms_figure_titles_name_the_thresholds_and_counts(data):
    rng = np.random.default_rng(1)
    b = np.sort(rng.random((30, 4)) * 64, axis=1)[:, [0, 1, 2, 3]]
    b = np.stack([b[:, 0], b[:, 1], b[:, 0] + 10, b[:, 1] + 10], 1)
    s = np.sort(rng.random(30))[::-1]
    before = (b, s, np.zeros(30, int))
    after = (b[:10], s[:10], np.zeros(10, int))
    fig = P.nms_figure(data.images[0], before, after, gt_boxes=data.boxes[0], nms_threshold=0.5,
                       score_threshold=0.05, class_names=("thing",), scope="of the same class")
    left, right = fig.axes
    assert "the 20 best of 30 candidate boxes" in left.get_title() and "score > 0.05" in left.get_title()
    assert "after NMS at IoU 0.5: the 5 best of 10 kept" in right.get_title()
    assert "of the same class by IoU > 0.5" in right.get_title()
    kept = _legend(right)
    assert kept[:5] == [f"{r + 1}: thing {v:.2f}" for r, v in enumerate(s[:5])] and kept[-1] == "ground truth"
    # numbered tags 1..5 on the kept boxes, none on the candidates
    assert sorted(t.get_text() for t in right.texts) == ["1", "2", "3", "4", "5"] and not left.texts


def test_detections_figure_title_has_the_threshold_and_at_most_k_boxes(data):
    n = len(data.images)
    dets = [(np.array([[5, 5, 20, 20], [6, 6, 21, 21], [30, 30, 40, 40]], np.float64),
             np.array([0.9, 0.5, 0.2]), np.array([0, 1, 0])) for _ in range(n)]
    gts = list(zip(data.boxes, data.labels))
    fig = P.detections_figure(data.images, dets, gts, score_threshold=0.3, max_per_image=1,
                              class_names=("rectangle", "ellipse"), what="proposals", title="RPN")
    assert fig._suptitle.get_text().startswith("RPN: proposals with score >= 0.3 (at most 1 per image")
    for ax in fig.axes:
        assert ax.get_xlabel() == "1: rectangle 0.90"
        assert len([p for p in ax.patches if p.get_gid() == "detection"]) == 1
        assert len([p for p in ax.patches if p.get_gid() == "ground truth"]) == len(gts[fig.axes.index(ax)][0])
    fig = P.detections_figure(data.images, dets, gts, score_threshold=0.45)
    assert "score >= 0.45" in fig._suptitle.get_text()
    assert fig.axes[0].get_xlabel() == "1: 0 0.90\n2: 1 0.50"


def test_focal_loss_figure_marks_the_models_gamma():
    fig = P.focal_loss_figure(used_gamma=2.0, used_alpha=0.25)
    labels = _legend(fig.axes[0])
    assert "γ = 0 (cross entropy)" in labels
    assert any(t.startswith("γ = 2 (this model") and "α = 0.25" in t for t in labels)
    # (1 - 0.9)^2 = 0.01: the focal loss of an easy example is 100x smaller
    assert any("100x less" in t.get_text() for t in fig.axes[0].texts)
    np.testing.assert_allclose(P.focal_loss_curve(0.9, 2), 0.01 * -np.log(0.9))


def test_plot_functions_write_png(tmp_path, data):
    path = P.plot_focal_loss(tmp_path / "sub" / "f.png")
    assert (tmp_path / "sub" / "f.png").stat().st_size > 5000 and str(path).endswith("f.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
