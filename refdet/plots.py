"""Figures for the demo and for teaching (matplotlib, imported lazily; the ``plot`` extra).

Every function writes one PNG and returns its path. Nothing here is needed by the library.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["have_matplotlib", "plot_anchors", "plot_focal_loss", "plot_detections", "focal_loss_curve"]


def have_matplotlib():
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


def _show_image(ax, image):
    """(3, H, W) float image in roughly [-1, 1] -> imshow."""
    img = np.transpose(np.asarray(image, dtype=np.float64), (1, 2, 0))
    img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    ax.imshow(img, interpolation="nearest")


def _box(ax, b, color, lw=1.0, ls="-", alpha=1.0):
    import matplotlib.patches as patches
    ax.add_patch(patches.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   edgecolor=color, linewidth=lw, linestyle=ls, alpha=alpha))


def plot_anchors(image, anchors_per_level, path, *, location=None, gt_boxes=None, title=None):
    """The cell anchors of every level drawn at one location of an image (default: its centre)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    _show_image(ax, image)
    h, w = np.asarray(image).shape[1:]
    colours = plt.cm.viridis(np.linspace(0, 1, max(1, len(anchors_per_level))))
    cy, cx = location if location is not None else (h / 2, w / 2)
    for lvl, (anchors, col) in enumerate(zip(anchors_per_level, colours)):
        a = np.asarray(anchors)
        centres = np.stack([(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2], 1)
        d = np.abs(centres[:, 0] - cx) + np.abs(centres[:, 1] - cy)
        c0 = centres[np.argmin(d)]  # one location: the first of the nearest anchor centres
        nearest = a[np.all(centres == c0, axis=1)]
        for b in nearest:
            _box(ax, b, col, lw=1.2)
        ax.plot([], [], color=col, label=f"level {lvl}: {len(nearest)} anchors")
    for b in (gt_boxes if gt_boxes is not None else []):
        _box(ax, b, "red", lw=2, ls="--")
    ax.set_xlim(-w * 0.5, w * 1.5)
    ax.set_ylim(h * 1.5, -h * 0.5)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title or "anchors at one location (red dashed: ground truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def focal_loss_curve(p_t, gamma):
    """FL(p_t) = -(1 - p_t)^gamma * log(p_t): the curve of Fig. 1 of the Focal Loss paper (alpha = 1)."""
    p_t = np.asarray(p_t, dtype=np.float64)
    return -((1.0 - p_t) ** gamma) * np.log(p_t)


def plot_focal_loss(path, gammas=(0, 0.5, 1, 2, 5)):
    """Cross entropy (gamma = 0) against focal loss for several gammas, as Fig. 1 of the paper."""
    plt = _plt()
    p = np.linspace(0.001, 1.0, 500)
    fig, ax = plt.subplots(figsize=(6, 4))
    for g in gammas:
        label = f"γ = {g}" + (" (cross entropy)" if g == 0 else "")
        ax.plot(p, focal_loss_curve(p, g), label=label)
    ax.axvspan(0.6, 1.0, color="grey", alpha=0.15)
    ax.text(0.62, 4.2, "well-classified\nexamples", fontsize=8)
    ax.set_xlabel("probability of the ground-truth class, p_t")
    ax.set_ylabel("loss")
    ax.set_ylim(0, 5)
    ax.set_title("Focal loss down-weights easy examples")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_detections(images, detections, gts, path, *, class_names=None, max_images=6, score_min=0.3):
    """Detections (solid, with score) and ground truth (dashed) on a row of images."""
    plt = _plt()
    n = min(max_images, len(images))
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9))
    axes = np.atleast_1d(axes)
    cols = ("tab:orange", "tab:cyan", "tab:green", "tab:purple")
    for i in range(n):
        ax = axes[i]
        _show_image(ax, images[i])
        gb, gl = gts[i]
        for b, lab in zip(gb, gl):
            _box(ax, b, cols[int(lab) % len(cols)], lw=1.0, ls="--")
        boxes, scores, labels = detections[i]
        for b, s, lab in zip(boxes, scores, labels):
            if s < score_min:
                continue
            _box(ax, b, cols[int(lab) % len(cols)], lw=1.6)
            name = class_names[int(lab)] if class_names else str(int(lab))
            ax.text(b[0], b[1] - 1, f"{name} {s:.2f}", fontsize=6, color="white",
                    bbox=dict(facecolor=cols[int(lab) % len(cols)], alpha=0.7, pad=0.5, lw=0))
        ax.set_axis_off()
    fig.suptitle("detections (solid) and ground truth (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------
# YOLO (anchor points, task-aligned assignment, detections before and after NMS)
# ---------------------------------------------------------------------------------------------------

__all__ += ["plot_yolo_assignment", "plot_yolo_detections"]

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
    ax.imshow(np.zeros(np.asarray(image).shape[1:]), cmap="gray", alpha=0.45, vmin=0, vmax=1)   # dim it
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
        _box(ax, b, c, lw=1.8, ls="--")
        sel = gi == m
        if sel.any():
            qm = q[sel] / max(float(q[sel].max()), 1e-12)
            ax.scatter(pts[sel, 0], pts[sel, 1], s=25 + 90 * qm, color=c, edgecolors="black", linewidths=0.6,
                       label=f"object {m}: {int(sel.sum())} positive points")
    h, w = np.asarray(image).shape[1:]
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    leg = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=2, fontsize=7, facecolor="0.35",
                    labelcolor="white")
    leg.get_frame().set_linewidth(0)
    ax.set_title(title or "anchor points (hollow) and the points TAL assigns to each object\n"
                 "(filled, area ~ target quality; dashed: ground truth)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
            _box(ax, b, cols[int(lab) % len(cols)], lw=1.0, ls="--")
        for b, s, lab in zip(*dets):
            _box(ax, b, cols[int(lab) % len(cols)], lw=lw, alpha=0.35 if lw < 1 else 1.0)
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
