"""Figures that teach the stages of a detector (matplotlib, imported lazily; the ``plot`` extra).

Each figure has a ``*_figure`` function that returns the matplotlib ``Figure`` (so that tests can read
its titles, labels and legends) and a ``plot_*`` function that writes it to a PNG and returns the path.
The numbers come from the caller (the demo computes them with refdet); nothing here is needed by the
library.

==========================  ===========================================================================
``anchors_figure``          the anchors of ONE location per level, on the cell under an object: every size
                            and ratio drawn and labelled (w x h in pixels), axes in pixels
``head_layout_figure``      what the head's channels mean: (A*K, H, W) scores and (4A, H, W) deltas, the
                            values at one cell as an (A, K) and an (A, 4) table, the channel maps
``assignment_figure``       the max IoU of every anchor with the bands (negative / ignored / positive)
                            shaded and the best-match rule marked; the labelled anchors over an image
``nms_figure``              the top candidates before NMS and the top detections after it
``detections_figure``       detections above a score threshold (named in the title) and ground truth
``focal_loss_figure``       cross entropy against the focal loss (only for a model that uses it)
``proposals_rois_figure``   Faster R-CNN: proposals before and after NMS, the sampled RoIs coloured by the
                            FPN level RoIAlign pools each from, and the RoIs per level
==========================  ===========================================================================
"""
from __future__ import annotations

import os
import textwrap
from typing import Optional, Sequence

import numpy as np

from refdet import _checks

__all__ = ["have_matplotlib", "anchors_figure", "plot_anchors", "anchor_label", "head_layout_figure",
           "plot_head_layout", "assignment_figure", "plot_assignment", "nms_figure", "plot_nms",
           "detections_figure", "plot_detections", "focal_loss_curve", "focal_loss_figure", "plot_focal_loss",
           "ANCHOR_COLOURS"]

#: colours of the anchors at one location (Okabe-Ito: distinguishable, also with colour blindness)
ANCHOR_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
_CLASS_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#0072B2")
_GT = dict(edgecolor="black", linewidth=1.8, linestyle=(0, (4, 2)))
_BAND = {"negative": "#0072B2", "ignored": "#999999", "positive": "#009E73", "best match": "#CC79A7",
         "outside": "#E69F00"}


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, dpi=110):
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")   # "tight": legends below the axes are kept
    _plt().close(fig)
    return path


def _show_image(ax, image, *, faded=False):
    """(3, H, W) float image -> imshow in pixel coordinates (extent 0..W, 0..H, y down).

    ``faded``: blended half-way to white, so that the boxes drawn over it stand out.
    """
    img = np.transpose(np.asarray(image, dtype=np.float64), (1, 2, 0))
    img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    h, w = img.shape[:2]
    if faded:
        img = 0.45 + 0.55 * img
    ax.imshow(img, extent=(0, w, h, 0), interpolation="nearest")
    return h, w


def _rect(ax, b, **kw):
    import matplotlib.patches as patches
    kw.setdefault("fill", False)
    p = patches.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], **kw)
    ax.add_patch(p)
    return p


def _gt_boxes(ax, boxes, label="ground truth"):
    """Ground truth: black dashed over a white outline, visible on any background."""
    import matplotlib.patheffects as pe
    for i, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        p = _rect(ax, b, **_GT, label=label if i == 0 else None, zorder=5, gid="ground truth")
        p.set_path_effects([pe.withStroke(linewidth=3.2, foreground="white")])


def _pixel_axes(ax):
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")


def _fmt(v):
    return f"{v:.3g}" if abs(v - round(v)) > 1e-6 else f"{int(round(v))}"


def anchor_label(box) -> str:
    """``"16x8 px, h/w 0.5"``: an anchor's width x height in pixels and its aspect ratio h / w."""
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    ratio = h / w if w > 0 else float("inf")
    return f"{_fmt(w)}x{_fmt(h)} px, h/w {ratio:.2g}"


# ---------------------------------------------------------------------------------------------------
# anchors at one location
# ---------------------------------------------------------------------------------------------------

def anchors_figure(image, levels: Sequence[dict], *, gt_boxes=None, title: Optional[str] = None):
    """The anchors of one location per level, drawn over the image, one panel per level.

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
    levels : list of dict, one per level, with keys
        ``anchors`` (A, 4) xyxy pixels: the anchors of ONE location (they share a centre);
        ``name`` (e.g. ``"P3"``), ``stride`` (int), ``map`` ((H_l, W_l)), ``cell`` ((y, x));
        optional ``labels`` (A strings; default :func:`anchor_label`).
    gt_boxes : ndarray, shape (M, 4), optional
        Drawn dashed (the object the location was chosen on, and any others).
    title : str, optional

    Every anchor is inside its panel's axes (the limits are the union of the image and the anchors)
    and listed in the panel's legend; the cell (``stride x stride`` pixels) is shaded and its centre
    marked.
    """
    plt = _plt()
    n = len(levels)
    single = n == 1   # one level (the RPN): a large panel, the legend on its right
    fig, axes = plt.subplots(1, n, figsize=(9.5, 6.2) if single else (3.3 * n + 0.4, 4.9), squeeze=False,
                             layout="constrained")    # room for the (wrapped) suptitle
    h, w = np.asarray(image).shape[1:]
    for ax, lv in zip(axes[0], levels):
        a = np.asarray(lv["anchors"], dtype=np.float64).reshape(-1, 4)
        _show_image(ax, image, faded=True)
        _rect(ax, (0, 0, w, h), edgecolor="0.35", linewidth=0.8)          # the image border
        s = lv["stride"]
        y, x = lv["cell"]
        cx, cy = (a[:, 0] + a[:, 2]).mean() / 2, (a[:, 1] + a[:, 3]).mean() / 2
        _rect(ax, (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), fill=True, facecolor="#F0E442", alpha=0.45,
              edgecolor="none", label=f"its cell ({s}x{s} px)")
        ax.plot([cx], [cy], marker="+", color="black", markersize=9, mew=1.5, linestyle="none",
                label=f"centre ({_fmt(cx)}, {_fmt(cy)})")
        if gt_boxes is not None:
            _gt_boxes(ax, gt_boxes)
        labels = lv.get("labels") or [anchor_label(b) for b in a]
        styles = ("-", "--", ":", "-.")
        n_sizes = max(1, int(lv.get("sizes", 1)))
        for i, (b, text) in enumerate(zip(a, labels)):
            col = ANCHOR_COLOURS[(i // n_sizes) % len(ANCHOR_COLOURS)]
            _rect(ax, b, edgecolor=col, linewidth=1.8, linestyle=styles[(i % n_sizes) % len(styles)],
                  label=f"a={i}: {text}", zorder=4)
        # square limits holding the image and every anchor: equal panels, square pixels
        lo = np.minimum(a[:, :2].min(0), 0.0)
        hi = np.maximum(a[:, 2:].max(0), (w, h))
        half = 0.54 * (hi - lo).max()
        c = (lo + hi) / 2
        ax.set_xlim(c[0] - half, c[0] + half)
        ax.set_ylim(c[1] + half, c[1] - half)                              # y down, as in the image
        ax.set_aspect("equal")
        fh, fw = lv["map"]
        ax.set_title(f"{lv['name']}: {fh}x{fw} map, stride {s}\none location: cell (y={y}, x={x})", fontsize=9)
        _pixel_axes(ax)
        ax.tick_params(labelsize=7)
        if single:
            ax.legend(loc="center left", bbox_to_anchor=(1.03, 0.5), fontsize=9, frameon=False)
        else:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, frameon=False, ncol=1)
    text = title or (f"Anchors at one location of each level, on the cell under an object's centre (dashed: "
                     f"ground truth; grey frame: the {w}x{h} image)")
    fig.suptitle(textwrap.fill(text, 95 if single else int(40 * n)), fontsize=10)
    return fig


def plot_anchors(image, levels, path, **kw) -> str:
    """Write :func:`anchors_figure` to ``path`` (PNG); returns ``path``."""
    return _save(anchors_figure(image, levels, **kw), path)


# ---------------------------------------------------------------------------------------------------
# head output layout
# ---------------------------------------------------------------------------------------------------

def head_layout_figure(image, *, scores, deltas, cell, stride, anchor_labels, class_names, score_name="score",
                       level_name="level 0", row_offset=0, max_maps=12, title=None):
    """What the channels of a dense head mean, at one level.

    Parameters
    ----------
    image : ndarray, shape (3, H_img, W_img)
    scores : ndarray, shape (A*K, H, W)
        The classification output after the sigmoid (or softmax): channel ``a*K + k`` is the score of
        class ``k`` for anchor ``a`` at each location.
    deltas : ndarray, shape (4*A, H, W)
        Channel ``4*a + c`` is coordinate ``c`` (dx, dy, dw, dh) of anchor ``a``.
    cell : (y, x)
        The location whose values are tabulated.
    stride : int
    anchor_labels : list of A str
    class_names : list of K str
    score_name : str
        "objectness" (RPN), "class score" ...
    level_name : str
    row_offset : int
        Rows of the levels before this one, for the flattened row index.
    """
    plt = _plt()
    from matplotlib.gridspec import GridSpec

    scores = np.asarray(scores, dtype=np.float64)
    deltas = np.asarray(deltas, dtype=np.float64)
    A = len(anchor_labels)
    K = len(class_names)
    if scores.shape[0] != A * K or deltas.shape[0] != 4 * A or scores.shape[1:] != deltas.shape[1:]:
        raise ValueError(f"`scores` must be (A*K, H, W) and `deltas` (4A, H, W) with A = {A}, K = {K}; got "
                         f"{scores.shape} and {deltas.shape}")
    fh, fw = scores.shape[1:]
    y, x = cell
    n_maps = min(max_maps, A * K)
    fig = plt.figure(figsize=(13, 7.6))
    gs = GridSpec(2, 3, figure=fig, height_ratios=[1.9, 1], width_ratios=[1, 1.05, 1.25])
    # (a) the grid of locations over the image
    ax = fig.add_subplot(gs[0, 0])
    ih, iw = _show_image(ax, image, faded=True)
    for i in range(fw + 1):
        ax.axvline(i * stride, color="0.3", linewidth=0.4)
    for j in range(fh + 1):
        ax.axhline(j * stride, color="0.3", linewidth=0.4)
    _rect(ax, (x * stride, y * stride, (x + 1) * stride, (y + 1) * stride), edgecolor="#D55E00", linewidth=2.2,
          label=f"cell (y={y}, x={x})")
    ax.set_xlim(0, iw)
    ax.set_ylim(ih, 0)
    _pixel_axes(ax)
    ax.set_title(f"{level_name}: {fh}x{fw} locations, stride {stride}\none cell = one column of both outputs",
                 fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)

    # (b) scores at the cell: an (A, K) table, entry [a, k] = channel a*K + k
    ax = fig.add_subplot(gs[0, 1])
    table = scores[:, y, x].reshape(A, K)
    ax.imshow(table, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for a in range(A):
        for k in range(K):
            v = table[a, k]
            ax.text(k, a, f"ch {a * K + k}\n{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    ax.set_xticks(range(K))
    ax.set_xticklabels(class_names, fontsize=8)
    ax.set_yticks(range(A))
    ax.set_yticklabels([f"a={a}: {t}" for a, t in enumerate(anchor_labels)], fontsize=7)
    if K == 1:
        ax.set_title(f"{score_name}: (A, H, W) = ({A}, {fh}, {fw})\n"
                     f"channel a at (y, x) = the {score_name} of anchor a", fontsize=9)
    else:
        ax.set_xlabel("class k")
        ax.set_title(f"{score_name}: (A*K, H, W) = ({A}*{K}, {fh}, {fw})\n"
                     f"channel a*K + k at (y, x) = class k of anchor a", fontsize=9)

    # (c) deltas at the cell: an (A, 4) table, entry [a, c] = channel 4a + c
    ax = fig.add_subplot(gs[0, 2])
    table = deltas[:, y, x].reshape(A, 4)
    lim = max(1e-6, float(np.abs(table).max()))
    ax.imshow(table, cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
    for a in range(A):
        for c in range(4):
            ax.text(c, a, f"ch {4 * a + c}\n{table[a, c]:+.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(4))
    ax.set_xticklabels(["dx", "dy", "dw", "dh"], fontsize=8)
    ax.set_yticks(range(A))
    ax.set_yticklabels([f"a={a}" for a in range(A)], fontsize=7)
    ax.set_xlabel("coordinate c")
    ax.set_title(f"box deltas: (4A, H, W) = ({4 * A}, {fh}, {fw})\n"
                 f"channel 4a + c at (y, x) = coordinate c of anchor a", fontsize=9)

    # bottom: the score channels as maps over (H, W), the cell marked
    sub = gs[1, :].subgridspec(1, n_maps, wspace=0.15)
    for ch in range(n_maps):
        ax = fig.add_subplot(sub[0, ch])
        ax.imshow(scores[ch], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.add_patch(__import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="#D55E00", linewidth=1.5))
        a, k = divmod(ch, K)
        ax.set_title(f"ch {ch}\na={a}" + (f", {class_names[k]}" if K > 1 else ""), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    more = "" if n_maps == A * K else f" (the first {n_maps} of {A * K})"
    first = row_offset + (y * fw + x) * A
    offset = f"{row_offset} + " if row_offset else ""
    fig.text(0.5, 0.015, f"Bottom: each score channel is a map over the {fh}x{fw} locations{more} (dark 0, bright "
             f"1; the cell outlined). Flattened to "
             f"one row per anchor in the order (y, x, a), the anchors' own order, the cell's anchors are rows "
             f"{offset}(y*W + x)*A + a = {offset}({y}*{fw} + {x})*{A} + a = {first}..{first + A - 1}.",
             ha="center", fontsize=8, wrap=True)
    fig.suptitle(title or "What the head outputs mean", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


def plot_head_layout(image, path, **kw) -> str:
    """Write :func:`head_layout_figure` to ``path``; returns ``path``."""
    return _save(head_layout_figure(image, **kw), path)


# ---------------------------------------------------------------------------------------------------
# label assignment: the IoU bands
# ---------------------------------------------------------------------------------------------------

def assignment_figure(max_iou, category, *, high, low, image=None, anchors=None, image_category=None,
                      image_max_iou=None, gt_boxes=None, n_images=1, rule=None, title=None):
    """The label of every anchor from its best IoU with the ground truth.

    Parameters
    ----------
    max_iou : ndarray, shape (N,)
        For each anchor (of every image in the batch) its largest IoU with a ground-truth box.
    category : ndarray of str, shape (N,)
        ``"negative"``, ``"ignored"``, ``"positive"``, ``"best match"`` (positive by the best-match
        rule although below ``high``) or ``"outside"`` (ignored because it crosses the image border).
    high, low : float
        Positive at ``IoU >= high``; negative at ``IoU < low``; in between ignored (``low == high``:
        no ignored band, as SSD).
    image, anchors, image_category, image_max_iou, gt_boxes : optional
        One image, its anchors (N_i, 4), their categories and max IoU, and its ground truth: the right
        panel draws the positive, best-match and ignored anchors over it.
    n_images : int
        Images behind ``max_iou`` (for the title).
    rule : str, optional
        The rule in words (shown under the histogram).
    """
    plt = _plt()
    max_iou = np.asarray(max_iou, dtype=np.float64)
    category = np.asarray(category)
    right = image is not None
    fig, axes = plt.subplots(1, 2 if right else 1, figsize=(12.5 if right else 7, 5.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1.35, 1]} if right else None)
    ax = axes[0, 0]
    ax.axvspan(0, low, color=_BAND["negative"], alpha=0.10, lw=0, gid="band: negative")
    if high > low:
        ax.axvspan(low, high, color=_BAND["ignored"], alpha=0.22, lw=0, gid="band: ignored")
    ax.axvspan(high, 1.0, color=_BAND["positive"], alpha=0.12, lw=0, gid="band: positive")
    bins = np.linspace(0, 1, 51)
    order = ["negative", "outside", "ignored", "best match", "positive"]
    names = {"negative": f"negative (IoU < {low:g})", "ignored": f"ignored ({low:g} <= IoU < {high:g})",
             "positive": f"positive (IoU >= {high:g})", "best match": "positive by the best-match rule",
             "outside": "ignored: crosses the image border"}
    data, cols, labels = [], [], []
    for c in order:
        sel = category == c
        if sel.any():
            data.append(max_iou[sel])
            cols.append(_BAND[c])
            labels.append(f"{names[c]}: {int(sel.sum()):,}")
    if data:
        ax.hist(data, bins=bins, stacked=True, color=cols, label=labels, log=True)
    ax.axvline(low, color="black", linewidth=1)
    if high > low:
        ax.axvline(high, color="black", linewidth=1)
    top = ax.get_ylim()[1]
    ax.text(low, top, f"IoU {low:g} " if high > low else f" IoU {low:g}", va="bottom",
            ha="right" if high > low else "center", fontsize=8, fontweight="bold")
    if high > low:
        ax.text(high, top, f" IoU {high:g}", va="bottom", ha="left", fontsize=8, fontweight="bold")
    promoted = max_iou[category == "best match"]
    if len(promoted):   # a handful of anchors: a stacked bar one anchor high would be invisible
        lo_y = ax.get_ylim()[0]
        ax.plot(promoted, np.full(len(promoted), lo_y * 1.25), linestyle="none", marker="^", markersize=9,
                color=_BAND["best match"], markeredgecolor="black", zorder=6, clip_on=False)
        ax.annotate(f"best-match rule: {len(promoted)} anchor{'s' if len(promoted) != 1 else ''} below "
                    f"{high:g} made positive\n(each object's best anchor)", xy=(float(promoted.min()), lo_y * 1.6),
                    xytext=(0.52, 0.55), textcoords="axes fraction", fontsize=8, color="black",
                    arrowprops=dict(arrowstyle="->", color=_BAND["best match"]),
                    bbox=dict(facecolor="white", alpha=0.85, edgecolor=_BAND["best match"]))
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU of the anchor with its best-matching ground truth")
    ax.set_ylabel("anchors (log scale)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False, ncol=2)
    ax.set_title(title or f"Label assignment: {len(max_iou):,} anchors of {n_images} image"
                 f"{'s' if n_images != 1 else ''} by their best IoU", fontsize=10, pad=16)
    if right:
        ax = axes[0, 1]
        ih, iw = _show_image(ax, image, faded=True)
        a = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
        cat = np.asarray(image_category)
        shown = []
        for c, style in (("ignored", dict(linewidth=0.9, linestyle=":", edgecolor="#555555")),
                         ("positive", dict(linewidth=1.4)), ("best match", dict(linewidth=2.2))):
            style.setdefault("edgecolor", _BAND[c])
            sel = np.flatnonzero(cat == c)
            for i, j in enumerate(sel):
                _rect(ax, a[j], label=f"{c}: {len(sel)}" if i == 0 else None, zorder=4, **style)
            if len(sel):
                shown.append(a[sel])
        if gt_boxes is not None:
            _gt_boxes(ax, gt_boxes)
        box = np.concatenate(shown + [np.array([[0, 0, iw, ih]], dtype=np.float64)])
        pad = 2
        ax.set_xlim(min(0, box[:, 0].min()) - pad, max(iw, box[:, 2].max()) + pad)
        ax.set_ylim(max(ih, box[:, 3].max()) + pad, min(0, box[:, 1].min()) - pad)
        _rect(ax, (0, 0, iw, ih), edgecolor="0.35", linewidth=0.8)
        _pixel_axes(ax)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False, ncol=2)
        n_neg, n_out = int(np.sum(cat == "negative")), int(np.sum(cat == "outside"))
        hidden = f"{n_neg:,} negatives" + (f" and {n_out:,} border-crossing anchors" if n_out else "")
        kinds = ["positive"] + (["ignored"] if high > low or np.any(cat == "ignored") else [])
        ax.set_title(f"one image: its {' and '.join(kinds)} anchors\n({hidden} not drawn)", fontsize=10)
    fig.tight_layout()
    if rule:
        fig.text(0.01, -0.02, textwrap.fill(rule, 170 if right else 95), fontsize=8, va="top", ha="left")
    return fig


def plot_assignment(max_iou, category, path, **kw) -> str:
    """Write :func:`assignment_figure` to ``path``; returns ``path``."""
    return _save(assignment_figure(max_iou, category, **kw), path)


# ---------------------------------------------------------------------------------------------------
# before and after NMS
# ---------------------------------------------------------------------------------------------------

def nms_figure(image, before, after, *, gt_boxes=None, nms_threshold, score_threshold, n_before_total=None,
               n_after_total=None, class_names=None, top_before=20, top_after=5, what="candidate boxes",
               score_compare=">", scope="", title=None):
    """The best ``top_before`` boxes before NMS and the best ``top_after`` after it, side by side.

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
    before, after : (boxes (D, 4), scores (D,), labels (D,))
        Highest score first (as NMS returns them).
    nms_threshold, score_threshold : float
        Named in the titles.
    score_compare : {">", ">="}
        How the candidates were thresholded (torchvision's RPN keeps ``score >= 0``).
    scope : str
        Which boxes compete, e.g. ``"of the same class"`` (class-aware NMS) or ``"of the same level"``.
    n_before_total, n_after_total : int, optional
        How many boxes there are in all (default: the lengths).

    The kept boxes carry their rank as a tag ("1" = best) and are listed with class and score in the
    legend; box colours encode the score on one scale for both panels.
    """
    plt = _plt()
    import matplotlib.lines as mlines
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 6.2))
    cmap = plt.cm.plasma
    all_scores = np.concatenate([np.asarray(before[1], np.float64)[:top_before],
                                 np.asarray(after[1], np.float64)[:top_after]])
    smin, smax = (float(all_scores.min()), float(all_scores.max())) if len(all_scores) else (0.0, 1.0)
    handles = []
    for ax, (boxes, scores, labels), top, stage in ((axes[0], before, top_before, "before"),
                                                    (axes[1], after, top_after, "after")):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[:top]
        scores = np.asarray(scores, dtype=np.float64)[:top]
        labels = np.asarray(labels)[:top]
        ih, iw = _show_image(ax, image, faded=True)
        if gt_boxes is not None:
            _gt_boxes(ax, gt_boxes)
        for r, (b, s, lab) in reversed(list(enumerate(zip(boxes, scores, labels)))):  # best drawn last
            col = cmap(0.85 * (s - smin) / max(smax - smin, 1e-12))
            _rect(ax, b, edgecolor=col, linewidth=2.2 if stage == "after" else 1.0, zorder=4)
            if stage == "after":
                # the rank as a tag in a corner; class and score in the legend
                _tag(ax, b, r, col)
                name = f"{class_names[int(lab)]} " if class_names else ""
                handles.append((r, mlines.Line2D([], [], color=col, linewidth=2.2, label=f"{r + 1}: {name}{s:.2f}")))
        ax.set_xlim(0, iw)
        ax.set_ylim(ih, 0)
        _pixel_axes(ax)
    nb = len(before[1]) if n_before_total is None else n_before_total
    na = len(after[1]) if n_after_total is None else n_after_total
    axes[0].set_title(f"before NMS: the {min(top_before, nb)} best of {nb:,} {what}\n"
                      f"(score {score_compare} {score_threshold:g}; colour: score, bright = high)", fontsize=10)
    axes[1].set_title(f"after NMS at IoU {nms_threshold:g}: the {min(top_after, na)} best of {na:,} kept\n"
                      f"(a box overlapping a better one{' ' + scope if scope else ''} by IoU > {nms_threshold:g} "
                      f"is removed)", fontsize=10)
    gt = mlines.Line2D([], [], color="black", linestyle=(0, (4, 2)), linewidth=1.8, label="ground truth")
    axes[0].legend(handles=[gt], loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=9, frameon=False)
    axes[1].legend(handles=[h for _, h in sorted(handles, key=lambda t: t[0])] + [gt], loc="upper center",
                   bbox_to_anchor=(0.5, -0.12), fontsize=9, frameon=False, ncol=3,
                   title="kept: rank, class, score")
    fig.suptitle(title or "Non-maximum suppression", fontsize=11)
    fig.tight_layout()
    return fig


def plot_nms(image, before, after, path, **kw) -> str:
    """Write :func:`nms_figure` to ``path``; returns ``path``."""
    return _save(nms_figure(image, before, after, **kw), path)


# ---------------------------------------------------------------------------------------------------
# detections
# ---------------------------------------------------------------------------------------------------

def _tag(ax, b, r, col):
    """A numbered tag (rank r + 1) in one of the box's corners, staggered by rank so that the tags of boxes
    with a common corner do not cover each other."""
    cx, cy = ((b[0], b[1]), (b[2], b[1]), (b[0], b[3]), (b[2], b[3]))[r % 4]
    ax.text(cx, cy, f"{r + 1}", fontsize=8, ha="center", va="center", color="white", fontweight="bold", zorder=7,
            bbox=dict(boxstyle="circle,pad=0.15", facecolor=col, edgecolor="white", linewidth=0.8))


def detections_figure(images, detections, gts, *, score_threshold=0.3, max_per_image=5, class_names=None,
                      max_images=6, what="detections", title=None):
    """Detections with ``score >= score_threshold`` (at most ``max_per_image``, best first; solid, colour =
    class, a numbered tag) and the ground truth (black dashed, drawn on top) on a row of images; under
    each image the list "rank: class score". The threshold is always in the title (``title`` is put in front).
    ``what``: "detections", or "proposals" for an RPN."""
    plt = _plt()
    n = min(max_images, len(images))
    fig, axes = plt.subplots(1, n, figsize=(2.9 * n, 4.1), squeeze=False)
    for i in range(n):
        ax = axes[0, i]
        ih, iw = _show_image(ax, images[i])
        boxes, scores, labels = detections[i]
        keep = np.flatnonzero(np.asarray(scores) >= score_threshold)[:max_per_image]
        lines = []
        for r, j in enumerate(keep):
            b, sc, lab = boxes[j], float(scores[j]), int(labels[j])
            col = _CLASS_COLOURS[lab % len(_CLASS_COLOURS)]
            _rect(ax, b, edgecolor=col, linewidth=1.8, zorder=4, gid="detection")
            _tag(ax, b, r, col)
            name = class_names[lab] if class_names else str(lab)
            lines.append(f"{r + 1}: {name} {sc:.2f}")
        _gt_boxes(ax, gts[i][0])
        ax.set_xlim(0, iw)
        ax.set_ylim(ih, 0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"image {i}: {len(gts[i][0])} object{'s' if len(gts[i][0]) != 1 else ''}", fontsize=8)
        ax.set_xlabel("\n".join(lines) if lines else "(no detection above the threshold)", fontsize=8,
                      loc="left")
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}{what} with score >= {score_threshold:g} (at most {max_per_image} per image; solid, "
                 f"colour = class, numbered by score) and ground truth (black dashed)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_detections(images, detections, gts, path, **kw) -> str:
    """Write :func:`detections_figure` to ``path``; returns ``path``."""
    return _save(detections_figure(images, detections, gts, **kw), path)


# ---------------------------------------------------------------------------------------------------
# cross entropy vs focal loss
# ---------------------------------------------------------------------------------------------------

def focal_loss_curve(p_t, gamma):
    """FL(p_t) = -(1 - p_t)^gamma * log(p_t): the curve of Fig. 1 of the Focal Loss paper (alpha = 1)."""
    p = _checks.as_float_array(p_t, "p_t", dtype=np.float64)
    if p.size and (p.min() <= 0 or p.max() > 1):
        raise ValueError(f"`p_t` must lie in (0, 1] (log(0) is -inf); got range [{p.min()}, {p.max()}]")
    g = _checks.check_positive(gamma, "gamma", strict=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -((1.0 - p) ** g) * np.log(p)


def focal_loss_figure(gammas=(0, 0.5, 1, 2, 5), *, used_gamma=2.0, used_alpha=0.25, title=None):
    """Cross entropy (gamma = 0) against the focal loss for several gammas (Fig. 1 of the paper), the
    model's gamma drawn thick."""
    plt = _plt()
    p = np.linspace(0.001, 1.0, 500)
    fig, ax = plt.subplots(figsize=(6.4, 4.3))
    for g, col in zip(gammas, ANCHOR_COLOURS):
        label = f"γ = {g:g}" + (" (cross entropy)" if g == 0 else "") + \
            (f" (this model; drawn without its α = {used_alpha:g})" if used_gamma is not None and g == used_gamma
             else "")
        ax.plot(p, focal_loss_curve(p, g), label=label, color=col,
                linewidth=2.6 if used_gamma is not None and g == used_gamma else 1.3)
    if used_gamma:
        # how much less an easy example (p_t = 0.9) weighs: (1 - 0.9)^gamma
        ce, fl = focal_loss_curve(0.9, 0), focal_loss_curve(0.9, used_gamma)
        ax.annotate(f"at p_t = 0.9: CE {ce:.3f}, focal (γ = {used_gamma:g}) {fl:.4f},\n{ce / fl:.0f}x less",
                    xy=(0.9, float(fl)), xytext=(0.24, 2.55), fontsize=8,
                    arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.axvspan(0.6, 1.0, color="grey", alpha=0.15)
    ax.text(0.62, 3.15, "well-classified\nexamples (p_t > 0.6)", fontsize=8)
    ax.set_xlabel("probability of the ground-truth class, p_t")
    ax.set_ylabel("loss  -(1 - p_t)^γ log(p_t)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.set_title(title or "Focal loss down-weights the easy examples (Lin et al. 2017, Fig. 1)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_focal_loss(path, gammas=(0, 0.5, 1, 2, 5), **kw) -> str:
    """Write :func:`focal_loss_figure` to ``path``; returns ``path``."""
    return _save(focal_loss_figure(gammas, **kw), path)


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------
# YOLO (anchor points, task-aligned assignment, detections before and after NMS)
# ---------------------------------------------------------------------------------------------------

__all__ += ["plot_yolo_assignment", "plot_yolo_detections"]


def _yolo_box(ax, b, color, lw=1.0, ls="-", alpha=1.0):
    _rect(ax, b, edgecolor=color, linewidth=lw, linestyle=ls, alpha=alpha)


def plot_yolo_assignment(image, anchor_points, anchor_level, gt_boxes, gt_index, quality, path, *, title=None):
    """Every anchor point of every level over an image, and the points task-aligned assignment made
    positive for each ground truth (one colour per object, marker area growing with the target
    quality); ground-truth boxes dashed.

    Parameters
    ----------
    image : (3, H, W)
    anchor_points : (N, 2) pixels (x, y)
    anchor_level : (N,) int, the level of each point
    gt_boxes : (M, 4) xyxy
    gt_index : (N,) int, the assigned ground truth of each point (-1 background)
    quality : (N,) the target score of each point
    """
    plt = _plt()
    pts = np.asarray(anchor_points, dtype=np.float64)
    lvl = np.asarray(anchor_level)
    gi = np.asarray(gt_index)
    q = np.asarray(quality, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.6, 5.6))
    _show_image(ax, image)
    h, w = np.asarray(image).shape[1:]
    ax.imshow(np.zeros((h, w)), cmap="gray", alpha=0.45, vmin=0, vmax=1, extent=(0, w, h, 0))    # dim it
    n_lv = int(lvl.max()) + 1 if lvl.size else 0
    marks = ("o", "s", "D", "^", "v")
    level_cols = ("white", "yellow", "cyan", "magenta", "lime")
    for k in range(n_lv):
        p = pts[lvl == k]
        ax.scatter(p[:, 0], p[:, 1], s=8 + 14 * k, facecolors="none", edgecolors=level_cols[k % len(level_cols)],
                   linewidths=0.9, marker=marks[k % len(marks)], label=f"level {k}: {len(p)} points")
    cols = plt.cm.tab10(np.arange(10))
    for m, b in enumerate(np.asarray(gt_boxes, dtype=np.float64)):
        c = cols[m % 10]
        _yolo_box(ax, b, c, lw=1.8, ls="--")
        sel = gi == m
        if sel.any():
            qm = q[sel] / max(float(q[sel].max()), 1e-12)
            ax.scatter(pts[sel, 0], pts[sel, 1], s=25 + 90 * qm, color=c, edgecolors="black", linewidths=0.6,
                       label=f"object {m}: {int(sel.sum())} positive points")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    leg = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=2, fontsize=7, facecolor="0.35",
                    labelcolor="white")
    leg.get_frame().set_linewidth(0)
    ax.set_title(title or "anchor points (hollow) and the points TAL assigns to each object\n"
                 "(filled, area ~ target quality; dashed: ground truth)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


def plot_yolo_detections(images, before, after, gts, path, *, threshold, iou_threshold, class_names=None,
                         max_images=4):
    """Decoded boxes above the score threshold before NMS (first image) and the detections after
    NMS (first ``max_images`` images); the thresholds are in the title.

    ``before``: ``(boxes (n, 4), scores (n,), labels (n,))`` of the first image; ``after``: per image
    ``(boxes, scores, labels)``; ``gts``: per image ``(boxes, labels)``.
    """
    plt = _plt()
    n = min(max_images, len(images))
    fig, axes = plt.subplots(1, n + 1, figsize=(2.7 * (n + 1), 3.2))
    axes = np.atleast_1d(axes)
    cols = ("tab:orange", "tab:cyan", "tab:green", "tab:purple")

    def draw(ax, img, dets, gt, lw, label_text):
        _show_image(ax, img)
        for b, lab in zip(*gt):
            _yolo_box(ax, b, cols[int(lab) % len(cols)], lw=1.0, ls="--")
        for b, s, lab in zip(*dets):
            _yolo_box(ax, b, cols[int(lab) % len(cols)], lw=lw, alpha=0.35 if lw < 1 else 1.0)
            if label_text:
                name = class_names[int(lab)] if class_names else str(int(lab))
                ax.text(b[0], b[1] - 1, f"{name} {s:.2f}", fontsize=6, color="white",
                        bbox=dict(facecolor=cols[int(lab) % len(cols)], alpha=0.7, pad=0.5, lw=0))
        ax.set_axis_off()

    draw(axes[0], images[0], before, gts[0], 0.6, False)
    axes[0].set_title(f"image 0 before NMS: {len(before[0])} boxes", fontsize=8)
    for i in range(n):
        draw(axes[i + 1], images[i], after[i], gts[i], 1.6, True)
        axes[i + 1].set_title(f"image {i} after NMS: {len(after[i][0])}", fontsize=8)
    fig.suptitle(f"YOLO detections: score > {threshold:g}, class-aware NMS at IoU {iou_threshold:g} "
                 "(solid: detections, dashed: ground truth)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi=120)


# ---------------------------------------------------------------------------------------------------
# Faster R-CNN (proposals before and after NMS, the sampled RoIs and the level each is pooled from)
# ---------------------------------------------------------------------------------------------------

__all__ += ["proposals_rois_figure", "plot_proposals_rois"]

_LEVEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00")


def proposals_rois_figure(image, before, after, rois, *, level_names, pooled_levels=None, gt_boxes=None,
                          nms_threshold=0.7, top_before=150, title=None):
    """Faster R-CNN's two stages over one image, in four panels.

    1. the best ``top_before`` proposals before NMS (thin);
    2. the proposals after NMS, coloured by the level of the anchor each came from;
    3. the sampled RoIs, coloured by the FPN level RoIAlign pools each from (solid: foreground,
       dotted: background);
    4. how many sampled RoIs each level pools (foreground and background stacked).

    Parameters
    ----------
    image : ndarray, shape (3, H, W)
    before : (boxes (n, 4), scores (n,)), best first
    after : (boxes (m, 4), levels (m,) int), the anchor level of each proposal
    rois : (boxes (r, 4), foreground (r,) bool, levels (r,) int), the pooled level of each RoI
    level_names : names of the levels by index (``"P2 (stride 4)"``, ...)
    pooled_levels : how many of the levels RoIAlign pools from (the first ones; default all)
    """
    plt = _plt()
    import matplotlib.lines as mlines
    fig, axes = plt.subplots(1, 4, figsize=(15.5, 4.6), gridspec_kw=dict(width_ratios=(1, 1, 1, 0.8)))
    nb = len(before[0])
    rb, fg, rl = (np.asarray(v) for v in rois)

    def panel(ax):
        ih, iw = _show_image(ax, image, faded=True)
        if gt_boxes is not None:
            _gt_boxes(ax, gt_boxes)
        ax.set_xlim(0, iw)
        ax.set_ylim(ih, 0)
        _pixel_axes(ax)

    panel(axes[0])
    for b in np.asarray(before[0], np.float64).reshape(-1, 4)[:top_before][::-1]:
        _rect(axes[0], b, edgecolor="#333333", linewidth=0.5, alpha=0.45)
    axes[0].set_title(f"proposals before NMS: the best {min(nb, top_before)} of {nb}", fontsize=9)
    panel(axes[1])
    ab, al = np.asarray(after[0], np.float64).reshape(-1, 4), np.asarray(after[1])
    for b, lv in zip(ab[::-1], al[::-1]):
        _rect(axes[1], b, edgecolor=_LEVEL_COLOURS[int(lv) % 5], linewidth=0.9, alpha=0.8)
    axes[1].set_title(f"after NMS per level at IoU {nms_threshold:g}: {len(ab)} kept\n(colour: the anchor's level)",
                      fontsize=9)
    panel(axes[2])
    for b, f, lv in sorted(zip(rb, fg, rl), key=lambda t: bool(t[1])):     # foreground drawn last
        _rect(axes[2], b, edgecolor=_LEVEL_COLOURS[int(lv) % 5], linewidth=1.6 if f else 0.8,
              linestyle="-" if f else ":", zorder=4 if f else 3)
    axes[2].set_title(f"{len(rb)} sampled RoIs ({int(fg.sum())} foreground, solid)\n(colour: the level RoIAlign "
                      "pools from)", fontsize=9)
    ax = axes[3]
    k = np.arange(len(level_names) if pooled_levels is None else pooled_levels)
    n_fg = np.bincount(rl[fg], minlength=len(k))[:len(k)]
    n_bg = np.bincount(rl[~fg], minlength=len(k))[:len(k)]
    ax.bar(k, n_bg, color=[_LEVEL_COLOURS[i % 5] for i in k], alpha=0.45, label="background")
    ax.bar(k, n_fg, bottom=n_bg, color=[_LEVEL_COLOURS[i % 5] for i in k], label="foreground")
    ax.set_xticks(k, [level_names[i].replace(" (", "\n(") for i in k], fontsize=8)
    ax.set_ylabel("sampled RoIs")
    ax.set_title("RoIs pooled per level\n(faded: background)", fontsize=9)
    handles = [mlines.Line2D([], [], color=_LEVEL_COLOURS[i % 5], linewidth=2, label=n)
               for i, n in enumerate(level_names)]
    handles.append(mlines.Line2D([], [], color="black", linestyle=(0, (4, 2)), linewidth=1.8, label="ground truth"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or "Faster R-CNN: proposals and the RoIs pooled from them", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_proposals_rois(image, before, after, rois, path, **kw) -> str:
    """Write :func:`proposals_rois_figure` to ``path``; returns ``path``."""
    return _save(proposals_rois_figure(image, before, after, rois, **kw), path)
