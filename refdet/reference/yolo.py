"""Reference (loop) versions of the YOLO family's task-aligned assignment and DFL decode.

These read like the papers and like ultralytics' code, one ground truth and one anchor at a time.
``tests/test_yolo_reference.py`` holds them equal to the vectorised ``refdet.yolo`` functions
(bit for bit for the assignment, to a few ulp for the decode). Float64 only; no validation.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["task_aligned_assign", "dfl_decode"]


def _ciou(b1, b2, eps=1e-7):
    """ultralytics ``bbox_iou(b1, b2, xywh=False, CIoU=True)`` for two boxes (floats)."""
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1] + eps
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1] + eps
    inter = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0.0) * max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0.0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = max(b1[2], b2[2]) - min(b1[0], b2[0])
    ch = max(b1[3], b2[3]) - min(b1[1], b2[1])
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2[0] + b2[2] - b1[0] - b1[2]) ** 2 + (b2[1] + b2[3] - b1[1] - b1[3]) ** 2) / 4
    v = (4 / math.pi ** 2) * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (1 - iou + v + eps)
    return iou - (rho2 / c2 + v * alpha)


def task_aligned_assign(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, *,
                        topk=13, alpha=1.0, beta=6.0, eps=1e-9, min_side=16.0):
    """The TOOD assignment as ultralytics runs it, written as loops over images and ground truths.

    Returns ``(labels, gt_index, boxes, quality)`` like ``refdet.yolo.task_aligned_assign`` (labels
    ``K`` and gt_index ``-1`` for background). ``min_side=None`` skips the enlargement of small
    boxes. Equal alignments: the lowest anchor index first (a stable sort).
    """
    B, N, K = pred_scores.shape
    M = gt_boxes.shape[1]
    labels = np.full((B, N), K, np.int64)
    gt_index = np.full((B, N), -1, np.int64)
    boxes = np.zeros((B, N, 4))
    quality = np.zeros((B, N))
    for b in range(B):
        align = np.zeros((M, N))
        over = np.zeros((M, N))
        pos = np.zeros((M, N), bool)
        for m in range(M):
            if not gt_mask[b, m]:
                continue
            x1, y1, x2, y2 = gt_boxes[b, m]
            if min_side is not None:               # ultralytics: tiny sides grow to stride[1]
                cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
                w, h = (min_side if w < min_side else w), (min_side if h < min_side else h)
                x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            for a in range(N):
                ax, ay = anchor_points[a]
                if ax - x1 > eps and ay - y1 > eps and x2 - ax > eps and y2 - ay > eps:
                    s = pred_scores[b, a, gt_labels[b, m]]
                    u = max(_ciou(gt_boxes[b, m], pred_boxes[b, a]), 0.0)
                    over[m, a] = u
                    align[m, a] = s ** alpha * u ** beta
                    pos[m, a] = True                     # in the box; top-k below
            # the top-k alignments over the whole row (zeros outside the box), stable
            chosen = np.argsort(-align[m], kind="stable")[:topk]
            keep = np.zeros(N, bool)
            keep[chosen] = True
            pos[m] &= keep
        for a in range(N):
            claimed = np.nonzero(pos[:, a])[0]
            if len(claimed) > 1:                          # keep the largest overlap over all gts
                best = int(np.argmax(over[:, a]))
                pos[:, a] = False
                pos[best, a] = True
        for m in range(M):
            members = np.nonzero(pos[m])[0]
            if len(members) == 0:
                continue
            t_max = max(align[m, a] for a in members)
            u_max = max(over[m, a] for a in members)
            for a in members:
                gt_index[b, a] = m
                labels[b, a] = gt_labels[b, m]
                boxes[b, a] = gt_boxes[b, m]
                quality[b, a] = align[m, a] * u_max / (t_max + eps)
    return labels, gt_index, boxes, quality


def dfl_decode(logits, anchor_points, stride, reg_max=16):
    """ultralytics' inference decode, one anchor and one side at a time.

    ``logits`` (N, 4 * reg_max) side-major; returns (N, 4) boxes ``(cx, cy, w, h)`` in pixels:
    softmax over the bins, expectation ``sum_j j p_j``, ``x1 = ax - l``, ``x2 = ax + r``, centre and
    size, times the stride.
    """
    N = logits.shape[0]
    out = np.zeros((N, 4))
    for a in range(N):
        d = []
        for side in range(4):
            z = logits[a, side * reg_max:(side + 1) * reg_max]
            e = [math.exp(v - max(z)) for v in z]
            total = sum(e)
            d.append(sum(j * e[j] / total for j in range(reg_max)))
        ax, ay = anchor_points[a]
        x1, y1, x2, y2 = ax - d[0], ay - d[1], ax + d[2], ay + d[3]
        out[a] = [(x1 + x2) / 2 * stride[a], (y1 + y2) / 2 * stride[a], (x2 - x1) * stride[a], (y2 - y1) * stride[a]]
    return out
