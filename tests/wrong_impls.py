"""Deliberately wrong (and matching correct) implementations for the conformance tests.

Each ``wrong_*`` function carries one classic bug; the conformance checks must catch it and name it.
The ``right_*`` twins are written independently of refdet (plain loops / textbook formulas) and must
pass: they show the checks do not flag honest implementations.
"""
import math

import numpy as np


# --------------------------------------------------------------------------------------------- NMS

def _greedy_nms(boxes, scores, thr, *, inclusive=False, order=None):
    b = np.asarray(boxes, dtype=np.float64) if boxes.dtype == np.float64 else np.asarray(boxes, np.float32)
    f = b.dtype.type
    if order is None:
        order = np.argsort(-scores, kind="stable")
    keep = []
    suppressed = np.zeros(len(b), bool)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        w = np.maximum(f(0), np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]))
        h = np.maximum(f(0), np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (area[i] + area - inter)
        hit = iou >= thr if inclusive else iou > thr
        suppressed |= hit
    return np.array(keep, dtype=np.int64)


def right_nms(boxes, scores, thr):
    return _greedy_nms(boxes, scores, thr)


def wrong_nms_inclusive(boxes, scores, thr):
    """Bug: suppresses when IoU >= threshold (torchvision: IoU > threshold)."""
    return _greedy_nms(boxes, scores, thr, inclusive=True)


def wrong_nms_unstable_ties(boxes, scores, thr):
    """Bug: ``argsort(scores)[::-1]`` visits equal scores highest index first."""
    return _greedy_nms(boxes, scores, thr, order=np.argsort(scores, kind="stable")[::-1])


# --------------------------------------------------------------------------------------------- IoU

def _iou(a, b, plus_one=False):
    f = a.dtype.type if a.dtype in (np.float32, np.float64) else np.float64
    one = f(1) if plus_one else f(0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + one, f(0), None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def right_box_iou(a, b):
    return _iou(a, b)


def wrong_box_iou_plus_one(a, b):
    """Bug: legacy +1 pixel widths in areas and intersections."""
    return _iou(a, b, plus_one=True)


# --------------------------------------------------------------------------------------------- box coder

def _decode(deltas, anchors, clamp=True):
    f = deltas.dtype.type
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    cx = anchors[:, 0] + f(0.5) * w
    cy = anchors[:, 1] + f(0.5) * h
    dx, dy, dw, dh = deltas.T
    if clamp:
        lim = f(math.log(1000.0 / 16))
        dw = np.minimum(dw, lim)
        dh = np.minimum(dh, lim)
    pcx = dx * w + cx
    pcy = dy * h + cy
    pw = np.exp(dw) * w
    ph = np.exp(dh) * h
    c_to_c_w = f(0.5) * pw
    c_to_c_h = f(0.5) * ph
    return np.stack([pcx - c_to_c_w, pcy - c_to_c_h, pcx + c_to_c_w, pcy + c_to_c_h], axis=1)


def right_decode(deltas, anchors):
    return _decode(deltas, anchors)


def wrong_decode_no_clamp(deltas, anchors):
    """Bug: dw, dh are not clamped at log(1000 / 16) before exp."""
    return _decode(deltas, anchors, clamp=False)


# --------------------------------------------------------------------------------------------- focal loss

def _focal(x, t, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-x))
    ce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))       # stable BCE with logits
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def right_focal(x, t):
    return _focal(x, t)


def wrong_focal_no_alpha(x, t):
    """Bug: the alpha_t weighting is left out."""
    return _focal(x, t, alpha=-1)


# --------------------------------------------------------------------------------------------- relu

def right_relu(x):
    return np.maximum(x, 0)


def right_relu_grad(x, dy):
    return np.where(x > 0, dy, 0.0)


def wrong_relu_grad_at_zero(x, dy):
    """Bug: ReLU'(0) = 1 (``x >= 0``)."""
    return np.where(x >= 0, dy, 0.0)


# --------------------------------------------------------------------------------------------- anchors

def _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, shift_start=0):
    out = []
    for (fh, fw), s, sz, ar in zip(feature_sizes, strides, sizes, aspect_ratios):
        sz = np.asarray(sz, dtype=np.float64)
        ar = np.asarray(ar, dtype=np.float64)
        hr = np.sqrt(ar)
        wr = 1 / hr
        ws = (wr[:, None] * sz[None, :]).ravel()                     # ratio-major (torchvision)
        hs = (hr[:, None] * sz[None, :]).ravel()
        cell = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)     # half-to-even, like torch.round
        xs = (np.arange(fw) + shift_start) * s
        ys = (np.arange(fh) + shift_start) * s
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], axis=1)
        out.append((shifts[:, None, :] + cell[None]).reshape(-1, 4))
    return np.concatenate(out) if out else np.zeros((0, 4))


def right_anchors(image_size, feature_sizes, strides, sizes, aspect_ratios):
    return _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios)


def wrong_anchors_off_by_one(image_size, feature_sizes, strides, sizes, aspect_ratios):
    """Bug: the grid shifts start at cell 1 (``arange(1, W + 1) * stride``)."""
    return _anchors(image_size, feature_sizes, strides, sizes, aspect_ratios, shift_start=1)


# --------------------------------------------------------------------------------------------- RoIAlign

def _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, *, shift=True,
               fixed_ratio=None, swap_xy=False):
    """torchvision's RoIAlign kernel written from its description (one RoI at a time, samples as arrays)."""
    x = np.asarray(features)
    f = x.dtype.type
    B, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW), x.dtype)
    scale = f(spatial_scale)
    for k, roi in enumerate(np.asarray(rois, x.dtype)):
        b = int(roi[0])
        c1, r1, c2, r2 = (roi[2], roi[1], roi[4], roi[3]) if swap_xy else (roi[1], roi[2], roi[3], roi[4])
        off = f(0.5) if (aligned and shift) else f(0)
        x1, y1, x2, y2 = c1 * scale - off, r1 * scale - off, c2 * scale - off, r2 * scale - off
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, f(1)), max(rh, f(1))
        bh, bw = rh / f(PH), rw / f(PW)
        sr = fixed_ratio if fixed_ratio is not None else sampling_ratio
        gh = sr if sr > 0 else int(math.ceil(rh / f(PH)))
        gw = sr if sr > 0 else int(math.ceil(rw / f(PW)))
        count = f(max(gh * gw, 1))
        if gh <= 0 or gw <= 0:
            continue
        ys = y1 + np.arange(PH, dtype=f)[:, None] * bh + (np.arange(gh, dtype=f)[None, :] + f(0.5)) * bh / f(gh)
        xs = x1 + np.arange(PW, dtype=f)[:, None] * bw + (np.arange(gw, dtype=f)[None, :] + f(0.5)) * bw / f(gw)

        def axis(v, n):
            valid = (v >= -1) & (v <= n)
            v = np.maximum(v, f(0))
            lo = np.floor(v).astype(np.int64)
            top = lo >= n - 1
            lo = np.where(top, n - 1, lo)
            hi = np.where(top, n - 1, lo + 1)
            v = np.where(top, lo.astype(f), v)
            frac = (v - lo).astype(f)
            return lo, hi, frac, (f(1) - frac).astype(f), valid
        yl, yh, ly, hy, vy = axis(ys, H)
        xl, xh, lx, hx, vx = axis(xs, W)
        img = x[b]                                         # (C, H, W)
        g = lambda a, c: img[:, a[:, :, None, None], c[None, None, :, :]]   # (C, PH, gh, PW, gw)
        w = lambda a, c: a[:, :, None, None] * c[None, None, :, :]
        val = (w(hy, hx) * g(yl, xl) + w(hy, lx) * g(yl, xh) + w(ly, hx) * g(yh, xl) + w(ly, lx) * g(yh, xh))
        val = val * (vy[:, :, None, None] & vx[None, None, :, :])
        out[k] = (val.sum(axis=(2, 4)) / count).astype(x.dtype)
    return out


def right_roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def wrong_roi_align_no_half_pixel(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: ``aligned=True`` keeps the size rule but forgets the -0.5 pixel shift."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, shift=False)


def wrong_roi_align_fixed_ratio(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: always samples 2 x 2 points per bin (the paper's figure), ignoring the adaptive grid."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, fixed_ratio=2)


def wrong_roi_align_yx_boxes(features, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """Bug: reads the RoI as (batch, y1, x1, y2, x2) (TF's box order)."""
    return _roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned, swap_xy=True)


# --------------------------------------------------------------------------------------------- RoI pool

def _c_round(v):
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _roi_pool(features, rois, output_size, spatial_scale, *, round_first=False):
    x = np.asarray(features)
    f = x.dtype.type
    B, C, H, W = x.shape
    PH, PW = output_size
    out = np.zeros((len(rois), C, PH, PW), x.dtype)
    for k, roi in enumerate(np.asarray(rois, x.dtype)):
        b = int(roi[0])
        if round_first:
            x1, y1, x2, y2 = (_c_round(float(_c_round(float(v)) * f(spatial_scale))) for v in roi[1:])
        else:
            x1, y1, x2, y2 = (_c_round(float(v * f(spatial_scale))) for v in roi[1:])
        rw, rh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bh, bw = f(rh) / f(PH), f(rw) / f(PW)
        for i in range(PH):
            hs = min(max(int(math.floor(f(i) * bh)) + y1, 0), H)
            he = min(max(int(math.ceil(f(i + 1) * bh)) + y1, 0), H)
            for j in range(PW):
                ws = min(max(int(math.floor(f(j) * bw)) + x1, 0), W)
                we = min(max(int(math.ceil(f(j + 1) * bw)) + x1, 0), W)
                if he > hs and we > ws:
                    out[k, :, i, j] = x[b, :, hs:he, ws:we].max(axis=(1, 2))
    return out


def right_roi_pool(features, rois, output_size, spatial_scale):
    return _roi_pool(features, rois, output_size, spatial_scale)


def wrong_roi_pool_round_first(features, rois, output_size, spatial_scale):
    """Bug: rounds the image coordinates to whole pixels, then scales (torchvision: round(x * scale))."""
    return _roi_pool(features, rois, output_size, spatial_scale, round_first=True)


# --------------------------------------------------------------------------------------------- FPN levels

def _levels(boxes, eps):
    b = np.asarray(boxes)
    f = b.dtype.type
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        k = np.floor(f(4) + np.log2(s / f(224)) + f(eps))
    return (np.clip(np.nan_to_num(k, nan=2), 2, 5) - 2).astype(np.int64)


def right_levels(boxes):
    """torchvision LevelMapper: floor(4 + log2(sqrt(area) / 224) + 1e-6), clamped to [2, 5]."""
    return _levels(boxes, 1e-6)


def wrong_levels_no_eps(boxes):
    """Bug: no eps: a RoI one ulp under 224 x 224 lands on P3 instead of P4."""
    return _levels(boxes, 0.0)


# =============================================================================================== YOLO
# Written from the papers / ultralytics' code as plain loops, without refdet.

def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


# --------------------------------------------------------------------------------------------- anchor points

def _make_anchors(feature_sizes, strides, offset=0.5):
    pts, st = [], []
    for (h, w), s in zip(feature_sizes, strides):
        for y in range(h):
            for x in range(w):
                pts.append((x + offset, y + offset))
                st.append(s)
    return np.array(pts, dtype=np.float64).reshape(-1, 2), np.array(st, dtype=np.float64).reshape(-1, 1)


def right_make_anchors(feature_sizes, strides):
    return _make_anchors(feature_sizes, strides)


def wrong_make_anchors_no_offset(feature_sizes, strides):
    """Bug: points at the grid (the cell's corner), not at grid + 0.5."""
    return _make_anchors(feature_sizes, strides, offset=0.0)


# --------------------------------------------------------------------------------------------- DFL decode

def _dfl_decode(logits, anchor_points, stride_tensor, bins=None):
    z = np.asarray(logits, dtype=np.float64)
    b, n, c = z.shape
    r = c // 4
    proj = np.arange(r, dtype=np.float64) if bins is None else bins(r)
    out = np.zeros((b, n, 4))
    for i in range(b):
        for j in range(n):
            d = []
            for side in range(4):
                zz = z[i, j, side * r:(side + 1) * r]
                if r == 1:
                    d.append(zz[0])
                    continue
                e = np.exp(zz - zz.max())
                d.append(float((e / e.sum()) @ proj))
            ax, ay = anchor_points[j]
            x1, y1, x2, y2 = ax - d[0], ay - d[1], ax + d[2], ay + d[3]
            s = float(np.asarray(stride_tensor).reshape(-1)[j])
            out[i, j] = [(x1 + x2) / 2 * s, (y1 + y2) / 2 * s, (x2 - x1) * s, (y2 - y1) * s]
    return out


def right_dfl_decode(logits, anchor_points, stride_tensor):
    return _dfl_decode(logits, anchor_points, stride_tensor)


def wrong_dfl_bins_0_to_reg_max(logits, anchor_points, stride_tensor):
    """Bug: the projection spans 0..reg_max (linspace(0, reg_max, reg_max)), not 0..reg_max - 1."""
    return _dfl_decode(logits, anchor_points, stride_tensor, bins=lambda r: np.linspace(0, r, r))


# --------------------------------------------------------------------------------------------- YOLOv5 decode

def _v5_decode(t, anchors, stride, centre="v5"):
    t = np.asarray(t, dtype=np.float64)
    sy, sx = (stride if isinstance(stride, (tuple, list)) else (stride, stride))
    out = np.zeros(t.shape)
    bsz, a_n, h, w, _ = t.shape
    for b in range(bsz):
        for a in range(a_n):
            for y in range(h):
                for x in range(w):
                    tx, ty, tw, th = t[b, a, y, x]
                    if centre == "v5":
                        cx, cy = 2 * _sig(tx) - 0.5 + x, 2 * _sig(ty) - 0.5 + y
                    else:
                        cx, cy = _sig(tx) + x, _sig(ty) + y
                    out[b, a, y, x] = [cx * sx, cy * sy, (2 * _sig(tw)) ** 2 * anchors[a][0],
                                       (2 * _sig(th)) ** 2 * anchors[a][1]]
    return out


def right_yolov5_decode(t, anchors, stride):
    return _v5_decode(t, anchors, stride)


def wrong_yolov5_decode_v3_centre(t, anchors, stride):
    """Bug: the centre decoded the YOLOv3 way, sigmoid(t) + c, instead of 2 sigmoid(t) - 0.5 + c."""
    return _v5_decode(t, anchors, stride, centre="v3")


# --------------------------------------------------------------------------------------------- TAL

def _ciou(b1, b2, eps=1e-7):
    """ultralytics bbox_iou(box1, box2, xywh=False, CIoU=True) for two xyxy boxes."""
    w1, h1 = b1[2] - b1[0], b1[3] - b1[1] + eps
    w2, h2 = b2[2] - b2[0], b2[3] - b2[1] + eps
    inter = max(min(b1[2], b2[2]) - max(b1[0], b2[0]), 0) * max(min(b1[3], b2[3]) - max(b1[1], b2[1]), 0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = max(b1[2], b2[2]) - min(b1[0], b2[0])
    ch = max(b1[3], b2[3]) - min(b1[1], b2[1])
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2[0] + b2[2] - b1[0] - b1[2]) ** 2 + (b2[1] + b2[3] - b1[1] - b1[3]) ** 2) / 4
    v = (4 / math.pi ** 2) * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    alpha = v / (1 - iou + v + eps)
    return iou - (rho2 / c2 + v * alpha)


def _tal(pred_scores, pred_boxes, anchor_points, gt_labels, gt_boxes, gt_mask, *, strides, topk, alpha, beta,
         resolve="overlap", eps=1e-9):
    B, N, K = pred_scores.shape
    M = gt_boxes.shape[1]
    side = strides[1] if len(strides) > 1 else strides[0]
    fg = np.zeros((B, N), bool)
    gidx = np.zeros((B, N), np.int64)
    labels = np.zeros((B, N), np.int64)
    tboxes = np.zeros((B, N, 4))
    tscores = np.zeros((B, N, K))
    for b in range(B):
        t = np.zeros((M, N))
        u = np.zeros((M, N))
        pos = np.zeros((M, N), bool)
        inside = np.zeros((M, N), bool)
        for m in range(M):
            if not gt_mask[b, m]:
                continue
            x1, y1, x2, y2 = (float(v) for v in gt_boxes[b, m])
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            w, h = max(w, side), max(h, side)                    # small boxes enlarged about the centre
            ex1, ey1, ex2, ey2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            for a in range(N):
                ax, ay = anchor_points[a]
                if min(ax - ex1, ay - ey1, ex2 - ax, ey2 - ay) > eps:     # strictly inside
                    inside[m, a] = True
                    u[m, a] = max(_ciou(gt_boxes[b, m], pred_boxes[b, a]), 0.0)
                    t[m, a] = pred_scores[b, a, gt_labels[b, m]] ** alpha * u[m, a] ** beta
            # the top-k alignments over ALL points (zeros included, lowest index first among equals);
            # those inside the box are positive -- also with alignment 0
            for a in sorted(range(N), key=lambda a: (-t[m, a], a))[:min(topk, N)]:
                pos[m, a] = inside[m, a]
        for a in range(N):
            claim = [m for m in range(M) if pos[m, a]]
            if len(claim) > 1:
                if resolve == "overlap":
                    col = u[:, a]
                    keep = int(np.argmax(col)) if col.max() > 0 else 0
                else:                                            # the bug: the lowest index
                    keep = min(claim)
                for m in range(M):
                    pos[m, a] = m == keep
        for m in range(M):
            sel = np.flatnonzero(pos[m])
            if not sel.size:
                continue
            mt, mu = t[m, sel].max(), u[m, sel].max()
            for a in sel:
                fg[b, a] = True
                gidx[b, a] = m
                labels[b, a] = gt_labels[b, m]
                tboxes[b, a] = gt_boxes[b, m]
                tscores[b, a, gt_labels[b, m]] = t[m, a] * mu / (mt + eps)
    return labels, tboxes, tscores, fg, gidx            # ultralytics' order


def right_tal(*args, **kw):
    return _tal(*args, **kw)


def wrong_tal_lowest_index(*args, **kw):
    """Bug: a point selected by several ground truths keeps the lowest-index one, not the one it overlaps most."""
    return _tal(*args, **kw, resolve="lowest_index")


# --------------------------------------------------------------------------------------------- ultralytics NMS

def _yolo_nms(prediction, conf_thres, iou_thres, agnostic=False, max_wh=7680.0, max_det=300):
    p = np.asarray(prediction)
    f = p.dtype.type
    out = []
    for img in p:
        x = img.T                                                # (N, 4 + K)
        rows = []
        for i, r in enumerate(x):
            k = int(np.argmax(r[4:]))
            if r[4 + k] > conf_thres:
                cx, cy, w, h = r[:4]
                rows.append([cx - w / f(2), cy - h / f(2), cx + w / f(2), cy + h / f(2), r[4 + k], f(k)])
        rows = np.array(rows, dtype=p.dtype).reshape(-1, 6)
        order = np.argsort(-rows[:, 4], kind="stable")
        rows = rows[order]
        boxes = rows[:, :4] + rows[:, 5:6] * (f(0) if agnostic else f(max_wh))
        keep, dead = [], np.zeros(len(rows), bool)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for i in range(len(rows)):
            if dead[i]:
                continue
            keep.append(i)
            for j in range(i + 1, len(rows)):
                iw = max(f(0), min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
                ih = max(f(0), min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
                inter = iw * ih
                # torchvision's nms: the IoU in the boxes' dtype, compared with the threshold as a double
                thr = iou_thres if isinstance(iou_thres, np.float32) else float(iou_thres)
                if (inter / (area[i] + area[j] - inter) if isinstance(thr, np.float32)
                        else float(inter / (area[i] + area[j] - inter))) > thr:
                    dead[j] = True
        out.append(rows[keep][:max_det])
    return out


def right_yolo_nms(prediction, conf_thres, iou_thres):
    return _yolo_nms(prediction, conf_thres, iou_thres)


def wrong_yolo_nms_agnostic(prediction, conf_thres, iou_thres):
    """Bug: one NMS over all classes (the max_wh class offset is missing)."""
    return _yolo_nms(prediction, conf_thres, iou_thres, agnostic=True)


# --------------------------------------------------------------------------------------------- GFL losses

def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _dfl(logits, targets, swap=False):
    z = np.asarray(logits, dtype=np.float64)
    r = z.shape[-1]
    out = np.zeros(z.shape[0])
    for i in range(z.shape[0]):
        y = min(max(float(targets[i]), 0.0), r - 1 - 0.01)
        left = int(math.floor(y))
        wl = left + 1 - y
        wr = 1 - wl
        if swap:
            wl, wr = wr, wl
        lp = _log_softmax(z[i])
        out[i] = -(lp[left] * wl + lp[left + 1] * wr)
    return out


def right_dfl(logits, targets):
    return _dfl(logits, targets)


def wrong_dfl_swapped_weights(logits, targets):
    """Bug: the left bin gets weight y - y_l and the right one y_r - y (swapped)."""
    return _dfl(logits, targets, swap=True)


def _vfl(logits, targets, labels, alpha=0.75, gamma=2.0, pos_weight="q"):
    z = np.asarray(logits, dtype=np.float64)
    q = np.asarray(targets, dtype=np.float64)
    p = _sig(z)
    bce = np.maximum(z, 0) - z * q + np.log1p(np.exp(-np.abs(z)))
    w = np.where(np.asarray(labels, bool), q if pos_weight == "q" else 1.0, alpha * p ** gamma)
    return w * bce


def right_vfl(logits, targets, labels):
    return _vfl(logits, targets, labels)


def wrong_vfl_unweighted_positives(logits, targets, labels):
    """Bug: positives are weighted by 1 instead of their IoU-aware target q."""
    return _vfl(logits, targets, labels, pos_weight="1")


def _qfl(logits, targets, beta=2.0):
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return np.abs(y - _sig(z)) ** beta * bce


def right_qfl(logits, targets):
    return _qfl(logits, targets)


def wrong_qfl_no_modulation(logits, targets):
    """Bug: the modulating factor |y - sigmoid(z)|^beta is left out (plain BCE against the soft target)."""
    return _qfl(logits, targets, beta=0.0)


def wrong_yolo_nms_float32_threshold(prediction, conf_thres, iou_thres):
    """Bug (a subtle one): the IoU compared with float32(iou_thres); torchvision compares with the double."""
    return _yolo_nms(prediction, conf_thres, np.float32(iou_thres))
