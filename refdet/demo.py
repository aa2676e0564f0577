"""``refdet demo``: the whole detection pipeline on synthetic data, stage by stage.

It makes a synthetic dataset (rectangles and ellipses on noise), shows the anchors, the network's
feature maps and the label assignment, trains a small detector with SGD + momentum for about a
minute with a progress line per step, shows the boxes before and after NMS, and evaluates the
trained model against the untrained one on held-out images (COCO AP). With matplotlib installed it
writes figures to ``--out``: the anchors over an image, cross entropy against the focal loss for
gamma in {0, 0.5, 1, 2, 5}, and the detections.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from refdet.detector import Detector, sgd_momentum_update
from refdet.eval import evaluate_detections
from refdet.synthetic import CLASS_NAMES, make_synthetic_dataset

# per model: steps, batch, learning rate, chosen so that the default run takes about a minute or
# less on 2 cores (one BLAS thread). Measured (seed 0, held-out COCO AP / AP50; untrained < 0.001):
# RetinaNet 2000 steps in 53 s: 0.47 / 0.85; RPN 3000 steps in 24 s: 0.41 / 0.75; SSD 1000 steps in
# 13 s: 0.47 / 0.88 (3000 SSD steps at this constant rate scored lower, 0.38 / 0.84).
_DEFAULTS = {"retinanet": (2000, 8, 0.02), "rpn": (3000, 8, 0.05), "ssd": (1000, 8, 0.01),
             "yolo": (600, 8, 0.01)}


def _print(msg=""):
    print(msg, flush=True)


def _coco_inputs(dets, boxes, labels, model):
    gt_img = np.concatenate([np.full(len(b), i) for i, b in enumerate(boxes)]).astype(np.int64)
    gt_lab = np.concatenate(labels).astype(np.int64) if model != "rpn" else np.zeros(len(gt_img), np.int64)
    gt = {"image_id": gt_img, "labels": gt_lab, "boxes": np.concatenate(boxes).astype(np.float64),
          "images": np.arange(len(boxes)), "classes": np.arange(1 if model == "rpn" else len(CLASS_NAMES))}
    dt = {"image_id": np.concatenate([np.full(len(d[0]), i) for i, d in enumerate(dets)]).astype(np.int64),
          "boxes": np.concatenate([d[0] for d in dets]).reshape(-1, 4),
          "scores": np.concatenate([d[1] for d in dets]),
          "labels": np.concatenate([d[2] for d in dets]).astype(np.int64)}
    return dt, gt


def evaluate(det, params, data):
    """COCO evaluation of ``det`` on a SyntheticBatch: (AP, AP50)."""
    dets = det.detect(params, data.images)
    dt, gt = _coco_inputs(dets, data.boxes, data.labels, det.config.model)
    res = evaluate_detections(dt, gt)
    return max(res.stats[0], 0.0), max(res.stats[1], 0.0), dets


def run(model="retinanet", *, seed=0, steps=None, batch=None, lr=None, out="refdet-demo", n_train=512,
        n_test=64, plots=True, write=_print, quantize=False):
    """Run the demo; returns a dict of what it measured (also printed).

    ``quantize=True`` (retinanet only) ends with :func:`refdet.apps.quantize.quantize_demo`: the trained head
    quantized to int8 and its accuracy report (under ``"quantization"`` in the result).
    """
    if model == "yolo":
        return run_yolo(seed=seed, steps=steps, batch=batch, lr=lr, out=out, n_train=n_train, n_test=n_test,
                        plots=plots, write=write)
    d_steps, d_batch, d_lr = _DEFAULTS[model]
    steps = d_steps if steps is None else steps
    batch = d_batch if batch is None else batch
    lr = d_lr if lr is None else lr
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()

    write(f"refdet demo: a {model} detector trained from scratch in NumPy (seed {seed})")
    write("=" * 78)

    # 1. data -------------------------------------------------------------------------------------
    train = make_synthetic_dataset(n_train, rng=rng)
    test = make_synthetic_dataset(n_test, rng=rng)
    n_obj = sum(len(b) for b in train.boxes)
    write(f"[1] data: {n_train} training and {n_test} held-out images, 3 x 64 x 64, "
          f"{n_obj} training objects ({', '.join(CLASS_NAMES)}) on noise")

    # 2. anchors ----------------------------------------------------------------------------------
    det = Detector(model)
    write(f"[2] anchors: {len(det.anchors)} in all, order (level, y, x, anchor)")
    ratios = ", ".join(f"{r:g}" for r in det.config.aspect_ratios)
    for lvl, (fs, st, a) in enumerate(zip(det.feature_sizes, det.strides, det.num_anchors)):
        sizes = ", ".join(f"{v:g}" for v in det.config.anchor_sizes[lvl])
        write(f"      level {lvl}: {fs[0]:2d} x {fs[1]:2d} map, stride {st:2d}, {a} anchors per location "
              f"(size {sizes} px{'' if model == 'ssd' else f', h/w ratios {ratios}'}) -> {fs[0] * fs[1] * a:5d} anchors")

    # 3. network ----------------------------------------------------------------------------------
    params = det.init(rng=rng)
    n_params = sum(v.size for part in params.values() for v in part.values())
    cls, box, cache = det.forward(params, train.images[:batch])
    write(f"[3] network: {n_params:,} parameters ({', '.join(params)})")
    write(f"      backbone stage outputs: {[tuple(c[0].out_shape[1:]) for c in cache[0]]}")
    write(f"      head inputs (levels):   {[tuple(s[1:]) for s in cache[3]]}")
    write(f"      head outputs, flattened one row per anchor: classification {cls.shape}, "
          f"box deltas {box.shape}")

    # 4. assignment -------------------------------------------------------------------------------
    tgts = list(zip(train.boxes[:batch], train.labels[:batch]))
    lt, pm, nm = det.assign(det._check_targets(tgts, batch), rng=rng)
    rule = {"retinanet": "IoU >= 0.5 positive, < 0.4 negative, in between ignored, and each object's best "
                         "anchor positive",
            "rpn": "IoU >= 0.7 positive, < 0.3 negative, each object's best anchor positive, anchors crossing "
                   "the border ignored, then 256 sampled per image (at most half positive)",
            "ssd": "each object's best default box, then IoU >= 0.5 positive, the rest background "
                   "(hard negatives are mined in the loss)"}[model]
    write(f"[4] label assignment ({rule}):")
    write(f"      first batch of {batch}: {int(pm.sum())} positive, {int(nm.sum())} "
          f"negative, {int(pm.size - pm.sum() - nm.sum())} ignored anchors "
          f"({pm.sum() / max(1, batch):.1f} positives per image)")

    # untrained baseline
    ap0, ap50_0, _ = evaluate(det, params, test)

    # 5. training ---------------------------------------------------------------------------------
    write(f"[5] training: {steps} steps of SGD (momentum 0.9, lr {lr}, batch {batch})")
    velocity = None
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = rng.choice(n_train, size=batch, replace=False)
        images = train.images[idx]
        targets = [(train.boxes[i], train.labels[i]) for i in idx]
        # linear warm-up over the first 10% of the steps, then constant
        lr_t = lr * min(1.0, (step + 1) / max(1, steps // 10))
        losses, grads = det.train_step(params, images, targets, rng=rng)
        params, velocity = sgd_momentum_update(params, grads, velocity, lr=lr_t, momentum=0.9,
                                               weight_decay=1e-4, max_grad_norm=10.0)
        history.append(losses["total"])
        parts = "  ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "total")
        write(f"      step {step + 1:4d}/{steps}  loss {losses['total']:.4f}  ({parts})  "
              f"{time.perf_counter() - t0:5.1f}s")
    k = max(1, min(10, len(history) // 4))
    first, last = float(np.mean(history[:k])), float(np.mean(history[-k:]))
    verb = "fell" if last < first else "went"
    write(f"      loss {verb} from {first:.4f} (mean of the first {k} steps) to {last:.4f} (last {k})")

    # 6. inference --------------------------------------------------------------------------------
    cls, box, _ = det.forward(params, test.images[:1])
    logits = cls[0].astype(np.float64)
    if model == "ssd":
        z = np.exp(logits - logits.max(1, keepdims=True))
        n_cand = int(((z / z.sum(1, keepdims=True))[:, 1:] > 0.05).sum())
    else:
        n_cand = int((1 / (1 + np.exp(-logits)) > 0.05).sum())
    dets = det.detect(params, test.images[:1])[0]
    write(f"[6] inference on a held-out image: {n_cand} (anchor, class) scores above 0.05 before NMS, "
          f"{len(dets[0])} boxes after decoding, clipping and class-aware NMS at IoU 0.5")
    for b, s, lab in list(zip(*dets))[:5]:
        name = "object" if model == "rpn" else CLASS_NAMES[int(lab)]
        write(f"      {name:9s} score {s:.3f}  box [{b[0]:5.1f}, {b[1]:5.1f}, {b[2]:5.1f}, {b[3]:5.1f}]")
    gtb = test.boxes[0]
    write(f"      ground truth: {[[round(float(v), 1) for v in g] for g in gtb]}")

    # 7. evaluation --------------------------------------------------------------------------------
    ap1, ap50_1, all_dets = evaluate(det, params, test)
    write(f"[7] held-out COCO evaluation ({n_test} images): untrained AP {ap0:.3f} / AP50 {ap50_0:.3f}  ->  "
          f"trained AP {ap1:.3f} / AP50 {ap50_1:.3f}")

    # 8. figures -----------------------------------------------------------------------------------
    figures = []
    if plots:
        from refdet import plots as P
        if P.have_matplotlib():
            os.makedirs(out, exist_ok=True)
            levels = []
            start = 0
            for fs, a in zip(det.feature_sizes, det.num_anchors):
                n = fs[0] * fs[1] * a
                levels.append(det.anchors[start:start + n])
                start += n
            figures.append(P.plot_anchors(test.images[0], levels, os.path.join(out, "anchors.png"),
                                          gt_boxes=test.boxes[0]))
            figures.append(P.plot_focal_loss(os.path.join(out, "focal_loss.png")))
            gts = [(test.boxes[i], test.labels[i] if model != "rpn" else np.zeros(len(test.boxes[i]), int))
                   for i in range(len(test.boxes))]
            names = ("object",) if model == "rpn" else CLASS_NAMES
            figures.append(P.plot_detections(test.images, all_dets, gts, os.path.join(out, "detections.png"),
                                             class_names=names))
            write(f"[8] figures: {', '.join(figures)}")
        else:
            write("[8] figures: skipped (pip install matplotlib, or the `plot` extra)")
    quant = None
    if quantize:
        from refdet.apps.quantize import quantize_demo
        quant = quantize_demo(det, params, make_synthetic_dataset(32, rng=rng).images, test, write=write)
    total = time.perf_counter() - t_start
    write(f"done in {total:.1f}s")
    result = {"model": model, "steps": steps, "loss_first": first, "loss_last": last, "ap_untrained": ap0,
              "ap50_untrained": ap50_0, "ap_trained": ap1, "ap50_trained": ap50_1, "seconds": total,
              "figures": figures}
    if quantize:
        result["quantization"] = quant
    return result


# ---------------------------------------------------------------------------------------------------
# the anchor-free YOLO's stages (anchor points, task-aligned assignment, DFL decode, ultralytics NMS)
# ---------------------------------------------------------------------------------------------------

# YOLO default (600 steps, batch 8, lr 0.01), measured with the 2-core machine loaded by other jobs,
# seed 0, one BLAS thread: 0.10 s per step at load average 5 (the whole demo 63 s), 0.17 s at load 8
# (training 100 s); held-out COCO AP / AP50 0.691 / 0.945 after 600 steps (0.62 / 0.90 after 300;
# 0.75 / 0.94 after 1000 steps; lr 0.02 gave 0.67 after 600); untrained 0.000 / 0.000.


def _yolo_anchor_stage(det, write):
    write(f"[2] anchor points: {len(det.anchors)} in all (one per cell, no anchor boxes), order (level, y, x); "
          "a point sits at the cell centre (x + 0.5, y + 0.5) * stride")
    start = 0
    for lvl, ((h, w), st) in enumerate(zip(det.feature_sizes, det.strides)):
        p = det.anchors[start:start + h * w]
        write(f"      level {lvl}: {h:2d} x {w:2d} map, stride {st:2d} -> {h * w:4d} points, first "
              f"({p[0, 0]:g}, {p[0, 1]:g}), ({p[1, 0]:g}, {p[1, 1]:g}) ... last ({p[-1, 0]:g}, {p[-1, 1]:g}) px")
        start += h * w


def _yolo_assignment_stage(det, params, images, targets, write):
    """TAL on the untrained predictions; per object of the first image: positives by level."""
    a = det.assign(targets, params=params, images=images)
    write("[4] label assignment: task-aligned (TOOD / ultralytics TaskAlignedAssigner: topk 10, alpha 0.5, "
          "beta 6), recomputed from the detached predictions at every step:")
    write("      a point is a candidate for an object if it lies strictly inside its box; alignment "
          "t = score^0.5 * CIoU^6; the 10 best t per object are positive; a point claimed by two objects "
          "keeps the one it overlaps most; target score = t * max CIoU / max t")
    fg = a.fg_mask
    write(f"      first batch of {len(targets)}: {int(fg.sum())} positive points of {fg.size} "
          f"({fg.sum() / max(1, len(targets)):.1f} per image, {fg.sum() / max(1, sum(len(t[0]) for t in targets)):.1f}"
          " per object)")
    boxes, labels = targets[0]
    ax, ay = det.anchors[:, 0], det.anchors[:, 1]
    for m, (b, lab) in enumerate(zip(boxes, labels)):
        inside = (ax > b[0]) & (ay > b[1]) & (ax < b[2]) & (ay < b[3])
        pos = a.gt_index[0] == m
        per_level = [int((pos & (det.anchor_level == k)).sum()) for k in range(len(det.strides))]
        q = a.quality[0][pos]
        write(f"      image 0, object {m} ({CLASS_NAMES[int(lab)]}, {b[2] - b[0]:.0f} x {b[3] - b[1]:.0f} px): "
              f"{int(inside.sum())} points inside, {int(pos.sum())} positive (by level {per_level}), "
              f"target scores {q.min() if q.size else 0:.3f}..{q.max() if q.size else 0:.3f}")
    return a


def _yolo_inference_stage(det, params, image, gt_boxes, write, score_threshold=0.05, iou_threshold=0.5):
    """Decoded boxes before and after NMS for one held-out image; returns (before, after)."""
    from refdet.boxes import box_convert

    pred = det.yolo_predictions(params, image[None])[0]            # (4 + K, N)
    scores = pred[4:].T
    best = scores.max(axis=1)
    cand = np.flatnonzero(best > score_threshold)
    before = (box_convert(pred[:4, cand].T, "cxcywh", "xyxy"), best[cand], scores[cand].argmax(axis=1))
    after = det.detect(params, image[None], score_threshold=score_threshold, nms_threshold=iou_threshold)[0]
    write(f"[6] inference on a held-out image: {pred.shape[1]} boxes decoded (DFL expectation over "
          f"{det.reg_max} bins per side, dist2bbox, times the stride); {len(cand)} with a class score "
          f"> {score_threshold:g} before NMS; {len(after[0])} after class-aware NMS at IoU {iou_threshold:g} "
          "(ultralytics' class-offset trick)")
    for b, s, lab in list(zip(*after))[:5]:
        write(f"      {CLASS_NAMES[int(lab)]:9s} score {s:.3f}  "
              f"box [{b[0]:5.1f}, {b[1]:5.1f}, {b[2]:5.1f}, {b[3]:5.1f}]")
    write(f"      ground truth: {[[round(float(v), 1) for v in g] for g in gt_boxes]}")
    return before, after


def run_yolo(*, seed=0, steps=None, batch=None, lr=None, out="refdet-demo", n_train=512, n_test=64, plots=True,
             write=_print):
    """``refdet demo --model yolo``: the anchor-free YOLOv8 stage by stage (see :func:`run`)."""
    d_steps, d_batch, d_lr = _DEFAULTS["yolo"]
    steps = d_steps if steps is None else steps
    batch = d_batch if batch is None else batch
    lr = d_lr if lr is None else lr
    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    write(f"refdet demo: an anchor-free YOLO (v8 head, DFL, TAL) trained from scratch in NumPy (seed {seed})")
    write("=" * 78)
    train = make_synthetic_dataset(n_train, rng=rng)
    test = make_synthetic_dataset(n_test, rng=rng)
    n_obj = sum(len(b) for b in train.boxes)
    write(f"[1] data: {n_train} training and {n_test} held-out images, 3 x 64 x 64, "
          f"{n_obj} training objects ({', '.join(CLASS_NAMES)}) on noise")
    det = Detector("yolo")
    _yolo_anchor_stage(det, write)
    params = det.init(rng=rng)
    n_params = sum(v.size for part in params.values() for v in part.values())
    cls, box, cache = det.forward(params, train.images[:batch])
    write(f"[3] network: {n_params:,} parameters ({', '.join(params)})")
    write(f"      backbone stage outputs: {[tuple(c[0].out_shape[1:]) for c in cache[0]]}")
    write(f"      FPN levels (head inputs): {[tuple(s[1:]) for s in cache[3]]}")
    write(f"      v8 head, per level a box branch and a class branch (2 x 3x3 conv + ReLU, then 1x1): "
          f"box logits {box.shape} (4 sides x {det.reg_max} DFL bins per point), class logits {cls.shape}")
    tgts = list(zip(train.boxes[:batch], train.labels[:batch]))
    a0 = _yolo_assignment_stage(det, params, train.images[:batch], tgts, write)
    ap0, ap50_0, _ = evaluate(det, params, test)
    write(f"[5] training: {steps} steps of SGD (momentum 0.9, lr {lr}, batch {batch}); loss = "
          "B * (7.5 CIoU + 0.5 BCE + 1.5 DFL), each normalised by the sum of target scores")
    velocity = None
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        idx = rng.choice(n_train, size=batch, replace=False)
        targets = [(train.boxes[i], train.labels[i]) for i in idx]
        lr_t = lr * min(1.0, (step + 1) / max(1, steps // 10))      # linear warm-up over 10% of the steps
        losses, grads = det.train_step(params, train.images[idx], targets)
        params, velocity = sgd_momentum_update(params, grads, velocity, lr=lr_t, momentum=0.9,
                                               weight_decay=1e-4, max_grad_norm=10.0)
        history.append(losses["total"])
        write(f"      step {step + 1:4d}/{steps}  loss {losses['total']:.4f}  (box {losses['box']:.4f}  "
              f"cls {losses['cls']:.4f}  dfl {losses['dfl']:.4f})  {time.perf_counter() - t0:5.1f}s")
    k = max(1, min(10, len(history) // 4))
    first, last = float(np.mean(history[:k])), float(np.mean(history[-k:]))
    write(f"      loss {'fell' if last < first else 'went'} from {first:.4f} (mean of the first {k} steps) to "
          f"{last:.4f} (last {k})")
    before, _ = _yolo_inference_stage(det, params, test.images[0], test.boxes[0], write)
    ap1, ap50_1, all_dets = evaluate(det, params, test)
    write(f"[7] held-out COCO evaluation ({n_test} images): untrained AP {ap0:.3f} / AP50 {ap50_0:.3f}  ->  "
          f"trained AP {ap1:.3f} / AP50 {ap50_1:.3f}")
    figures = []
    if plots:
        from refdet import plots as P
        if P.have_matplotlib():
            os.makedirs(out, exist_ok=True)
            j = int(np.argmax([len(b) for b in test.boxes]))      # the held-out image with the most objects
            a = det.assign([(test.boxes[j], test.labels[j])], params=params, images=test.images[j:j + 1])
            figures.append(P.plot_yolo_assignment(
                test.images[j], det.anchors, det.anchor_level, test.boxes[j], a.gt_index[0], a.quality[0],
                os.path.join(out, "yolo_assignment.png"),
                title="anchor points (hollow, by level) and the points TAL assigns to each object\n"
                      f"(trained model, held-out image {j}; filled area ~ target score; dashed: ground truth)"))
            gts = [(test.boxes[i], test.labels[i]) for i in range(len(test.boxes))]
            shown = 0.3                       # drawn: score > 0.3 (the evaluation keeps > 0.05)

            def above(d):
                keep = d[1] > shown
                return tuple(v[keep] for v in d)
            figures.append(P.plot_yolo_detections(test.images, above(before), [above(d) for d in all_dets], gts,
                                                  os.path.join(out, "yolo_detections.png"), threshold=shown,
                                                  iou_threshold=0.5, class_names=CLASS_NAMES))
            write(f"[8] figures: {', '.join(figures)}")
        else:
            write("[8] figures: skipped (pip install matplotlib, or the `plot` extra)")
    total = time.perf_counter() - t_start
    write(f"done in {total:.1f}s")
    return {"model": "yolo", "steps": steps, "loss_first": first, "loss_last": last, "ap_untrained": ap0,
            "ap50_untrained": ap50_0, "ap_trained": ap1, "ap50_trained": ap50_1, "seconds": total,
            "figures": figures, "positives_first_batch": int(a0.fg_mask.sum())}


def _demo_args(p):
    p.add_argument("--model", choices=("retinanet", "rpn", "ssd", "yolo"), default="retinanet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: about a minute)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--out", default="refdet-demo", help="folder for the figures")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quantize", action="store_true",
                   help="retinanet: quantize the trained head to int8 and report (see `refdet quantize`)")


def _demo_run(args):
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    if getattr(args, "quantize", False) and args.model != "retinanet":
        raise ValueError(f"--quantize needs --model retinanet; got {args.model}")
    # The demo's matrices are small: one BLAS thread is fastest, and several threads on a busy
    # machine can be tens of times slower (oversubscription). threadpoolctl comes with the `demo` extra.
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(1)
    try:
        run(args.model, seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr, out=args.out,
            plots=not args.no_plots, quantize=getattr(args, "quantize", False))
    finally:
        if limits is not None:
            limits.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(run())
