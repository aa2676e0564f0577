"""``refdet demo``: the whole detection pipeline on synthetic data, stage by stage.

It makes a synthetic dataset (rectangles and ellipses on noise), shows the anchors, the network's
feature maps and the label assignment, trains a small detector with SGD + momentum (one updating
progress line on a terminal, a few plain lines in a log), shows the boxes before and after NMS, and
evaluates the trained model against the untrained one on held-out images (COCO AP). With matplotlib
installed it writes figures to ``--out``:

* ``anchors.png``: the anchors of one location per level, on the cell under an object;
* ``head_layout.png``: what the head's (A*K, H, W) score and (4A, H, W) delta channels mean;
* ``assignment.png``: every anchor's best IoU with the positive / ignored / negative bands and the
  best-match rule, and the labelled anchors over an image;
* ``nms.png``: the best candidates before NMS and the best detections after it;
* ``detections.png``: detections above the score threshold (named in the title) and ground truth;
* ``focal_loss.png`` (RetinaNet only, the model that uses it): cross entropy against the focal loss;
* ``yolo_assignment.png``, ``yolo_detections.png`` (``--model yolo``): the anchor points of every
  level and the points task-aligned assignment makes positive for each object; the decoded boxes
  before NMS and the detections after it (threshold in the title).
* ``anchors.png``, ``proposals_rois.png``, ``detections.png`` (``--model faster-rcnn``,
  :mod:`refdet.demo_faster_rcnn`): the proposals before and after NMS and the sampled RoIs coloured by
  the FPN level RoIAlign pools each from.

``--show-reference`` prints, under each stage, the readable reference code of what it computes
(:mod:`refdet.reference`: the anchor formulas, the matcher, the box coder, the losses, NMS).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from refdet.detector import Detector, sgd_momentum_update
from refdet.eval import evaluate_detections
from refdet.synthetic import CLASS_NAMES, make_synthetic_dataset

# per model: steps, batch, learning rate (one BLAS thread). Measured with seed 0 (NumPy 2.4.6, OpenBLAS
# 0.3.31; held-out COCO AP / AP50; untrained < 0.001): RetinaNet 0.456 / 0.792, RPN 0.413 / 0.751,
# SSD 0.467 / 0.874. Training wall time on a 2-core VM shared with other jobs (load average 5-6):
# RetinaNet 2000 steps 106-189 s, RPN 3000 steps 139 s, SSD 1000 steps 48 s (README: the CPU time).
# YOLO (600 steps, batch 8, lr 0.01), seed 0, one BLAS thread, the same shared VM: 0.10 s per step at
# load average 5 (training 58 s, the whole demo 63 s), 0.17 s at load 8 (training 100 s); held-out COCO
# AP / AP50 0.691 / 0.945 (0.62 / 0.90 after 300 steps; 0.75 / 0.94 after 1000; lr 0.02 gave 0.67 after
# 600); untrained 0.000 / 0.000.
# Faster R-CNN (700 steps, batch 8, lr 0.04; 32 RoIs per image), seed 0, one BLAS thread, the same VM at load
# average 6: training 123 s wall (55 s CPU), the whole demo 131 s; held-out COCO AP / AP50 0.507 / 0.876, untrained
# 0.001 / 0.005 (400 steps at lr 0.02 with 64 RoIs per image: 0.32 / 0.62; 500 at lr 0.04: 0.42 / 0.78).
_DEFAULTS = {"retinanet": (2000, 8, 0.02), "rpn": (3000, 8, 0.05), "ssd": (1000, 8, 0.01), "yolo": (600, 8, 0.01),
             "faster_rcnn": (700, 8, 0.04)}

#: other spellings of a model name (the command line's --model faster-rcnn)
_ALIASES = {"faster-rcnn": "faster_rcnn"}

#: training images the demo draws (the largest --batch)
N_TRAIN = 512

# per model: the assignment rule in words, and its IoU bands (positive >= high, negative < low)
_RULES = {"retinanet": "IoU >= 0.5 positive, < 0.4 negative, in between ignored, and each object's best "
                       "anchor positive",
          "rpn": "IoU >= 0.7 positive, < 0.3 negative, each object's best anchor positive, anchors crossing "
                 "the border ignored, then 256 sampled per image (at most half positive)",
          "ssd": "each object's best default box, then IoU >= 0.5 positive, the rest background "
                 "(hard negatives are mined in the loss)"}
_BANDS = {"retinanet": (0.5, 0.4), "rpn": (0.7, 0.3), "ssd": (0.5, 0.5)}

# per model: (NMS IoU threshold, score threshold, the inference rule in words), as Detector.detect does it
_INFERENCE = {"retinanet": (0.5, 0.05, "scores > 0.05, decoding, clipping and class-aware NMS at IoU 0.5"),
              "rpn": (0.7, 0.0, "the top 1000 logits per level, decoding, clipping and NMS per level at IoU 0.7"),
              "ssd": (0.5, 0.05, "softmax scores > 0.05, decoding, clipping and class-aware NMS at IoU 0.5")}

# the figures each model writes (the focal loss only where the model trains with it)
_FIGURES = {"retinanet": ("anchors", "head_layout", "assignment", "nms", "detections", "focal_loss"),
            "rpn": ("anchors", "head_layout", "assignment", "nms", "detections"),
            "ssd": ("anchors", "head_layout", "assignment", "nms", "detections")}

# --show-reference: per stage and model, the refdet.reference functions ("module.function") it prints
_REFERENCES = {
    "anchors": {"retinanet": ("anchors.cell_anchors", "anchors.pyramid_anchors", "anchors.offset_pixels",
                              "anchors._grid"),
                "rpn": ("anchors.cell_anchors", "anchors.pyramid_anchors", "anchors.offset_pixels", "anchors._grid"),
                "ssd": ("anchors.ssd_shapes", "anchors.ssd_default_boxes")},
    "assignment": {"retinanet": ("matcher.match", "box_coder.encode_boxes"),
                   "rpn": ("matcher.match", "sampler.sample_balanced_indices", "box_coder.encode_boxes"),
                   "ssd": ("matcher.ssd_match", "box_coder.encode_boxes")},
    "training": {"retinanet": ("losses.sigmoid_focal_loss", "losses.sigmoid_focal_loss_grad", "losses.smooth_l1"),
                 "rpn": ("losses.bce_with_logits", "losses.smooth_l1"),
                 "ssd": ("losses.smooth_l1",)},
    "inference": {"retinanet": ("box_coder.decode_boxes", "nms.nms", "nms.batched_nms"),
                  "rpn": ("box_coder.decode_boxes", "nms.nms", "nms.batched_nms"),
                  "ssd": ("box_coder.decode_boxes", "nms.nms", "nms.batched_nms")},
}


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
    """COCO evaluation of ``det`` on a SyntheticBatch: (AP, AP50, detections per image)."""
    dets = det.detect(params, data.images)
    dt, gt = _coco_inputs(dets, data.boxes, data.labels, det.config.model)
    res = evaluate_detections(dt, gt)
    return max(res.stats[0], 0.0), max(res.stats[1], 0.0), dets


def check_out_folder(out, name="`out`"):
    """Make sure the figures can be written to the folder ``out`` (created if missing) before any work:
    a ValueError naming ``name`` for an existing file or a folder that cannot be created."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{name} {out!r} exists and is not a folder (the figures go into a folder; "
                         f"give another name, or --no-plots)")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name} {out!r}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"{name} {out!r}: the folder is not writable")


def _show_reference(write, stage, model):
    """Print the reference code of ``stage`` (refdet/reference/*.py), indented under the stage."""
    from refdet.walkthrough import reference_source
    names = _REFERENCES[stage].get(model, ())
    if not names:
        return
    write(f"      reference code of this stage ({', '.join(names)}):")
    for line in reference_source(*names).splitlines():
        write("      | " + line)


# ---------------------------------------------------------------------------------------------------
# what the figures show, computed with refdet (kept apart from the drawing in refdet.plots)
# ---------------------------------------------------------------------------------------------------

def _level_slices(det):
    """Row ranges of the levels in the flattened anchors: [(start, stop), ...]."""
    out, start = [], 0
    for (fh, fw), a in zip(det.feature_sizes, det.num_anchors):
        out.append((start, start + fh * fw * a))
        start += fh * fw * a
    return out


def anchor_locations(det, point):
    """Per level, the anchors of the one location whose cell holds ``point`` ((x, y) pixels).

    Returns a list of dicts for :func:`refdet.plots.anchors_figure`: ``anchors`` (A, 4), ``name``,
    ``stride``, ``map``, ``cell`` (y, x), ``rows`` (their rows in ``det.anchors``), ``sizes`` (sizes per
    ratio, to tell them apart by line style). Rows are ``start + (y * W + x) * A + a`` (order (y, x, a)).
    """
    px, py = point
    out = []
    for lvl, ((fh, fw), s, a, (start, _)) in enumerate(zip(det.feature_sizes, det.strides, det.num_anchors,
                                                          _level_slices(det))):
        x = int(min(fw - 1, max(0, px // s)))
        y = int(min(fh - 1, max(0, py // s)))
        r0 = start + (y * fw + x) * a
        sizes = 1 if det.config.model == "ssd" else len(det.config.anchor_sizes[lvl])
        out.append(dict(anchors=det.anchors[r0:r0 + a], name=f"level {lvl}", stride=int(s), map=(fh, fw),
                        cell=(y, x), rows=np.arange(r0, r0 + a), sizes=sizes))
    return out


def assignment_categories(det, targets, lt=None, pos_mask=None, neg_mask=None):
    """Per image: (max IoU of each anchor with the ground truth (N,), its category (N,) of str).

    Categories come from the detector's own assignment (:meth:`Detector.assign`; for the RPN
    :func:`refdet.rpn_targets` without the sampling): ``"positive"``, ``"best match"`` (positive with
    a max IoU below the positive threshold: the best-match rule), ``"negative"``, ``"ignored"`` and, for
    the RPN, ``"outside"`` (ignored for crossing the image border).
    """
    from refdet.iou import box_iou
    from refdet.targets import rpn_targets

    model = det.config.model
    high, _ = _BANDS[model]
    if model != "rpn" and pos_mask is None:
        lt, pos_mask, neg_mask = det.assign(targets)
    out = []
    for i, (gtb, _) in enumerate(targets):
        q = box_iou(np.asarray(gtb, np.float64).reshape(-1, 4), det.anchors)       # (M, N)
        best = q.max(axis=0) if len(q) else np.zeros(len(det.anchors))
        cat = np.full(len(det.anchors), "ignored", dtype=object)
        if model == "rpn":
            t = rpn_targets(det.anchors, gtb, det.image_size, level=det.anchor_level, allowed_border=0,
                            sample=False)
            pos, neg = t.assigned == 1, t.assigned == 0
            cat[~t.inside] = "outside"
        else:
            pos, neg = pos_mask[i], neg_mask[i]
        cat[neg] = "negative"
        cat[pos] = "positive"
        cat[pos & (best < high)] = "best match"
        out.append((best, cat.astype(str)))
    return out


def candidates_before_nms(det, params, image):
    """One image's boxes just before NMS (highest score first) and after it, as ``Detector.detect`` makes
    them: ``(before, after)``, each ``(boxes, scores, labels)``.

    "Before" is the same pipeline with an NMS threshold of 1.0, which suppresses nothing (a box is
    removed when its IoU with a better one is > the threshold, and IoU <= 1). Neither is cut to
    ``detections_per_image``: "after" is everything NMS keeps, in order.
    """
    model = det.config.model
    everything = 10 ** 9
    if model != "rpn":
        before = det.detect(params, image[None], nms_threshold=1.0, detections_per_image=everything)[0]
        after = det.detect(params, image[None], detections_per_image=everything)[0]
        return before, after
    from refdet.postprocess import postprocess_detections
    cls, box, _ = det.forward(params, image[None])
    cuts = [s for s, _ in _level_slices(det)][1:]
    levels = (np.split(cls[0].astype(np.float64), cuts), np.split(box[0].astype(np.float64), cuts),
              np.split(det.anchors, cuts), det.image_size)
    out = [postprocess_detections(*levels, style="rpn", nms_threshold=thr, detections_per_image=everything)
           for thr in (1.0, _INFERENCE["rpn"][0])]
    return tuple((d.boxes, d.scores, d.labels) for d in out)


def head_maps(det, params, image, level=0):
    """The head's outputs for one image at ``level`` as the head lays them out: (scores (A*K', H, W) as
    probabilities, deltas (4A, H, W)); K' = K (sigmoid; RPN: 1) or K + 1 (SSD: softmax with background)."""
    from refdet.heads import unflatten_head_output
    cls, box, _ = det.forward(params, image[None])
    r0, r1 = _level_slices(det)[level]
    logits = cls[0, r0:r1].astype(np.float64)
    if det.config.model == "ssd":
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        prob = z / z.sum(axis=1, keepdims=True)
    else:
        prob = 1.0 / (1.0 + np.exp(-logits))
    a, size = det.num_anchors[level], det.feature_sizes[level]
    return (unflatten_head_output(prob, a, size), unflatten_head_output(box[0, r0:r1].astype(np.float64), a, size))


def _figures(det, params, model, test, all_dets, batch_targets, assignment, out, done=None):
    """Write the model's figures into ``out``; returns their paths. ``done(path)`` after each one."""
    from refdet import plots as P
    from refdet.plots import anchor_label

    img, gtb = test.images[0], np.asarray(test.boxes[0], np.float64)
    names = ("object",) if model == "rpn" else CLASS_NAMES
    paths = []
    wanted = _FIGURES.get(model, ("detections",))       # a model without a row: its detections only
    levels = None
    if {"anchors", "head_layout"} & set(wanted):
        # the object the anchors are drawn on: the largest in the first held-out image
        k = int(np.argmax((gtb[:, 2] - gtb[:, 0]) * (gtb[:, 3] - gtb[:, 1])))
        levels = anchor_locations(det, ((gtb[k, 0] + gtb[k, 2]) / 2, (gtb[k, 1] + gtb[k, 3]) / 2))
    kind = {"retinanet": "RetinaNet", "rpn": "RPN", "ssd": "SSD"}.get(model, model)
    for fig in wanted:
        path = os.path.join(out, f"{fig}.png")
        if fig == "anchors":
            what = "default boxes" if model == "ssd" else "anchors"
            paths.append(P.plot_anchors(img, levels, path, gt_boxes=gtb, title=(
                f"{kind}: the {what} of ONE location per level, on the cell under the centre of the "
                f"largest object (dashed: ground truth; grey frame: the {det.image_size[1]}x{det.image_size[0]} "
                f"image)")))
        elif fig == "head_layout":
            scores, deltas = head_maps(det, params, img, 0)
            lv = levels[0]
            cls_names = ("object",) if model == "rpn" else (("background",) + CLASS_NAMES if model == "ssd"
                                                            else CLASS_NAMES)
            score_name = {"rpn": "objectness", "retinanet": "class scores (sigmoid)",
                          "ssd": "class scores (softmax)"}[model]
            one = len(levels) == 1
            paths.append(P.plot_head_layout(
                img, path, scores=scores, deltas=deltas, cell=lv["cell"], stride=lv["stride"],
                anchor_labels=[anchor_label(b) for b in lv["anchors"]], class_names=cls_names,
                score_name=score_name, level_name="the one level" if one else f"level 0 of {len(levels)}",
                title=f"{kind} head{'' if one else ' at level 0'} (trained), for the first held-out image"))
        elif fig == "assignment":
            high, low = _BANDS[model]
            max_iou = np.concatenate([m for m, _ in assignment])
            cats = np.concatenate([c for _, c in assignment])
            paths.append(P.plot_assignment(
                max_iou, cats, path, high=high, low=low, image=batch_targets[0][0], anchors=det.anchors,
                image_category=assignment[0][1], image_max_iou=assignment[0][0], gt_boxes=batch_targets[0][1],
                n_images=len(assignment), rule=f"{kind}: {_RULES[model]}."))
        elif fig == "nms":
            # the held-out image with the most objects (the first of them): overlaps to suppress
            i = int(np.argmax([len(b) for b in test.boxes]))
            before, after = candidates_before_nms(det, params, test.images[i])
            thr, sthr, _ = _INFERENCE[model]
            cmp = ">=" if model == "rpn" else ">"
            paths.append(P.plot_nms(test.images[i], before, after, path, gt_boxes=test.boxes[i], nms_threshold=thr,
                                    score_threshold=sthr, score_compare=cmp, class_names=names,
                                    scope="of the same level" if model == "rpn" else "of the same class",
                                    what="proposals" if model == "rpn" else "candidate boxes",
                                    title=f"{kind}: NMS on held-out image {i}"))
        elif fig == "detections":
            gts = [(test.boxes[i], test.labels[i] if model != "rpn" else np.zeros(len(test.boxes[i]), int))
                   for i in range(len(test.boxes))]
            paths.append(P.plot_detections(test.images, all_dets, gts, path, class_names=names,
                                           score_threshold=0.3, max_per_image=5,
                                           what="proposals" if model == "rpn" else "detections",
                                           title=f"{kind} (trained), held-out images"))
        elif fig == "focal_loss":
            paths.append(P.plot_focal_loss(path, used_gamma=2.0, used_alpha=0.25))
        if done is not None:
            done(paths[-1])
    return paths


# ---------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------


def _train(det, params, train, n_train, *, steps, batch, lr, rng, progress, write, step_rng=True):
    """The demos' training loop: ``steps`` of SGD with momentum 0.9 on random batches of ``train``
    (linear warm-up over the first 10% of the steps, then constant), then the loss summary lines.
    ``step_rng``: hand ``rng`` to ``det.train_step`` (the models that sample use it).
    Returns ``(params, first, last, seconds)``: the trained parameters, the mean loss of the first and
    last few steps, and the wall time."""
    from refdet.apps.progress import Progress    # the apps layer, imported when a demo runs

    velocity = None
    history = []
    t0 = time.perf_counter()
    with Progress(steps, "      training", unit="steps", enabled=progress) as bar:
        for step in range(steps):
            idx = rng.choice(n_train, size=batch, replace=False)
            targets = [(train.boxes[i], train.labels[i]) for i in idx]
            lr_t = lr * min(1.0, (step + 1) / max(1, steps // 10))      # linear warm-up over 10% of the steps
            kw = {"rng": rng} if step_rng else {}
            losses, grads = det.train_step(params, train.images[idx], targets, **kw)
            params, velocity = sgd_momentum_update(params, grads, velocity, lr=lr_t, momentum=0.9,
                                                   weight_decay=1e-4, max_grad_norm=10.0)
            history.append(losses["total"])
            parts = "  ".join(f"{k} {v:.4f}" for k, v in losses.items() if k != "total")
            bar.update(status=f"loss {losses['total']:.4f} ({parts})")
    t_train = time.perf_counter() - t0
    k = max(1, min(10, len(history) // 4))
    first, last = float(np.mean(history[:k])), float(np.mean(history[-k:]))
    write(f"      {steps} steps in {t_train:.1f}s ({steps / max(t_train, 1e-9):.1f} steps/s)")
    marks = sorted({min(steps, max(k, round(steps * f))) for f in (0, 0.25, 0.5, 0.75, 1.0)})
    write("      loss (mean of the previous " + f"{k} steps) at step " +
          ", ".join(f"{m}: {np.mean(history[m - k:m]):.4f}" for m in marks))
    write(f"      loss {'fell' if last < first else 'went'} from {first:.4f} (mean of the first {k} steps) to "
          f"{last:.4f} (last {k})")
    return params, first, last, t_train

def run(model="retinanet", *, seed=0, steps=None, batch=None, lr=None, out="refdet-demo", n_train=N_TRAIN,
        n_test=64, plots=True, write=_print, quantize=False, show_reference=False, progress=True):
    """Run the demo; returns a dict of what it measured (also printed).

    ``quantize=True`` (retinanet only) ends with :func:`refdet.apps.quantize.quantize_demo`: the trained head
    quantized to int8 and its accuracy report (under ``"quantization"`` in the result).
    ``show_reference``: print the reference code of each stage. ``progress``: the training progress
    line on stderr (:class:`refdet.apps.progress.Progress`).
    """
    from refdet import _checks
    from refdet.apps.progress import Progress

    model = _ALIASES.get(model, model) if isinstance(model, str) else model
    _checks.check_choice(model, "model", tuple(_DEFAULTS))
    d_steps, d_batch, d_lr = _DEFAULTS[model]
    n_train = _checks.check_int(n_train, "n_train", low=1)
    steps = _checks.check_int(d_steps if steps is None else steps, "steps", low=1)
    batch = _checks.check_int(d_batch if batch is None else batch, "batch", low=1, high=n_train)
    lr = d_lr if lr is None else lr
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"`lr` must be a finite number > 0; got {lr!r}")
    if plots:
        from refdet import plots as P
        if not P.have_matplotlib():
            write("note: matplotlib is not installed, so the demo runs as with --no-plots "
                  "(for the figures: pip install 'refdet[demo]')")
            plots = False
        else:
            check_out_folder(out)   # before any work: a bad --out fails now, not after training
    if model in ("yolo", "faster_rcnn") and quantize:
        raise ValueError(f"`quantize` needs model 'retinanet'; got {model!r}")
    if model == "faster_rcnn":
        from refdet.demo_faster_rcnn import run_faster_rcnn
        return run_faster_rcnn(seed=seed, steps=steps, batch=batch, lr=lr, out=out, n_train=n_train, n_test=n_test,
                               plots=plots, write=write, show_reference=show_reference, progress=progress)
    if model == "yolo":
        return run_yolo(seed=seed, steps=steps, batch=batch, lr=lr, out=out, n_train=n_train, n_test=n_test,
                        plots=plots, write=write, show_reference=show_reference, progress=progress)
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
        shape = "" if model == "ssd" else f", h/w ratios {ratios}"
        write(f"      level {lvl}: {fs[0]:2d} x {fs[1]:2d} map, stride {st:2d}, {a} anchors per location "
              f"(size {sizes} px{shape}) -> {fs[0] * fs[1] * a:5d} anchors")
    if show_reference:
        _show_reference(write, "anchors", model)

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
    tgts = det._check_targets(list(zip(train.boxes[:batch], train.labels[:batch])), batch)
    lt, pm, nm = det.assign(tgts, rng=rng)
    write(f"[4] label assignment ({_RULES.get(model, 'see refdet.detector.Detector.assign')}):")
    write(f"      first batch of {batch}: {int(pm.sum())} positive, {int(nm.sum())} "
          f"negative, {int(pm.size - pm.sum() - nm.sum())} ignored anchors "
          f"({pm.sum() / max(1, batch):.1f} positives per image)")
    if show_reference:
        _show_reference(write, "assignment", model)

    # untrained baseline
    ap0, ap50_0, _ = evaluate(det, params, test)

    # 5. training ---------------------------------------------------------------------------------
    write(f"[5] training: {steps} steps of SGD (momentum 0.9, lr {lr:g}, batch {batch})")
    if show_reference:
        _show_reference(write, "training", model)
    params, first, last, t_train = _train(det, params, train, n_train, steps=steps, batch=batch, lr=lr, rng=rng,
                                          progress=progress, write=write)

    # 6. inference --------------------------------------------------------------------------------
    cls, box, _ = det.forward(params, test.images[:1])
    logits = cls[0].astype(np.float64)
    if model == "ssd":
        z = np.exp(logits - logits.max(1, keepdims=True))
        n_cand = int(((z / z.sum(1, keepdims=True))[:, 1:] > 0.05).sum())
    else:
        n_cand = int((1 / (1 + np.exp(-logits)) > 0.05).sum())
    dets = det.detect(params, test.images[:1])[0]
    write(f"[6] inference on a held-out image: {n_cand} (anchor, class) scores above 0.05; "
          f"{len(dets[0])} boxes after {_INFERENCE.get(model, (0, 0, 'decoding and NMS'))[2]}")
    for b, s, lab in list(zip(*dets))[:5]:
        name = "object" if model == "rpn" else CLASS_NAMES[int(lab)]
        write(f"      {name:9s} score {s:.3f}  box [{b[0]:5.1f}, {b[1]:5.1f}, {b[2]:5.1f}, {b[3]:5.1f}]")
    gtb = test.boxes[0]
    write(f"      ground truth: {[[round(float(v), 1) for v in g] for g in gtb]}")
    if show_reference:
        _show_reference(write, "inference", model)

    # 7. evaluation --------------------------------------------------------------------------------
    ap1, ap50_1, all_dets = evaluate(det, params, test)
    write(f"[7] held-out COCO evaluation ({n_test} images): untrained AP {ap0:.3f} / AP50 {ap50_0:.3f}  ->  "
          f"trained AP {ap1:.3f} / AP50 {ap50_1:.3f}")

    # 8. figures -----------------------------------------------------------------------------------
    figures = []
    if plots:
        first_batch = [(train.images[i], train.boxes[i]) for i in range(batch)]
        wanted = _FIGURES.get(model, ("detections",))
        assignment = assignment_categories(det, tgts, lt, pm, nm) if "assignment" in wanted else None
        with Progress(len(wanted), "      figures", unit="figures", enabled=progress) as bar:
            figures = _figures(det, params, model, test, all_dets, first_batch, assignment, out,
                               done=lambda path: bar.update(status=os.path.basename(path)))
        write(f"[8] figures in {out}/: {', '.join(os.path.basename(f) for f in figures)}")
    quant = None
    if quantize:
        from refdet.apps.quantize import quantize_demo
        quant = quantize_demo(det, params, make_synthetic_dataset(32, rng=rng).images, test, write=write)
    total = time.perf_counter() - t_start
    write(f"done in {total:.1f}s")
    result = {"model": model, "steps": steps, "loss_first": first, "loss_last": last, "ap_untrained": ap0,
              "ap50_untrained": ap50_0, "ap_trained": ap1, "ap50_trained": ap50_1, "seconds": total,
              "train_seconds": t_train, "figures": figures}
    if quantize:
        result["quantization"] = quant
    return result


# ---------------------------------------------------------------------------------------------------
# the anchor-free YOLO's stages (anchor points, task-aligned assignment, DFL decode, ultralytics NMS)
# ---------------------------------------------------------------------------------------------------

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


#: --show-reference for the YOLO: per stage the refdet.reference functions it prints
_YOLO_REFERENCES = {"assignment": ("yolo.task_aligned_assign",), "training": ("losses.bce_with_logits",),
                    "inference": ("yolo.dfl_decode", "nms.nms")}


def run_yolo(*, seed=0, steps=None, batch=None, lr=None, out="refdet-demo", n_train=N_TRAIN, n_test=64, plots=True,
             write=_print, show_reference=False, progress=True):
    """``refdet demo --model yolo``: the anchor-free YOLOv8 stage by stage (:func:`run` with
    ``model="yolo"`` calls it after checking the arguments; it returns the same result dict, plus
    ``"positives_first_batch"``)."""
    from refdet import _checks

    d_steps, d_batch, d_lr = _DEFAULTS["yolo"]
    n_train = _checks.check_int(n_train, "n_train", low=1)
    steps = _checks.check_int(d_steps if steps is None else steps, "steps", low=1)
    batch = _checks.check_int(d_batch if batch is None else batch, "batch", low=1, high=n_train)
    lr = d_lr if lr is None else lr
    if plots:
        from refdet import plots as P
        plots = P.have_matplotlib()                     # (run() has said so already when it is missing)
        if plots:
            check_out_folder(out)

    def reference(stage):
        if show_reference:
            names = _YOLO_REFERENCES.get(stage, ())
            from refdet.walkthrough import reference_source
            write(f"      reference code of this stage ({', '.join(names)}):")
            for line in reference_source(*names).splitlines():
                write("      | " + line)

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
    reference("assignment")
    ap0, ap50_0, _ = evaluate(det, params, test)
    write(f"[5] training: {steps} steps of SGD (momentum 0.9, lr {lr:g}, batch {batch}); loss = "
          "B * (7.5 CIoU + 0.5 BCE + 1.5 DFL), each normalised by the sum of target scores")
    reference("training")
    params, first, last, t_train = _train(det, params, train, n_train, steps=steps, batch=batch, lr=lr, rng=rng,
                                          progress=progress, write=write, step_rng=False)
    before, _ = _yolo_inference_stage(det, params, test.images[0], test.boxes[0], write)
    reference("inference")
    ap1, ap50_1, all_dets = evaluate(det, params, test)
    write(f"[7] held-out COCO evaluation ({n_test} images): untrained AP {ap0:.3f} / AP50 {ap50_0:.3f}  ->  "
          f"trained AP {ap1:.3f} / AP50 {ap50_1:.3f}")
    figures = []
    if plots:
        from refdet import plots as P
        j = int(np.argmax([len(b) for b in test.boxes]))      # the held-out image with the most objects
        a = det.assign([(test.boxes[j], test.labels[j])], params=params, images=test.images[j:j + 1])
        figures.append(P.plot_yolo_assignment(
            test.images[j], det.anchors, det.anchor_level, test.boxes[j], a.gt_index[0], a.quality[0],
            os.path.join(out, "yolo_assignment.png"),
            title="anchor points (hollow, by level) and the points TAL assigns to each object\n"
                  f"(trained model, held-out image {j}; filled area ~ target score; dashed: ground truth)"))
        gts = [(test.boxes[i], test.labels[i]) for i in range(len(test.boxes))]
        shown = 0.3                           # drawn: score > 0.3 (the evaluation keeps > 0.05)

        def above(d):
            keep = d[1] > shown
            return tuple(v[keep] for v in d)
        figures.append(P.plot_yolo_detections(test.images, above(before), [above(d) for d in all_dets], gts,
                                              os.path.join(out, "yolo_detections.png"), threshold=shown,
                                              iou_threshold=0.5, class_names=CLASS_NAMES))
        write(f"[8] figures in {out}/: {', '.join(os.path.basename(f) for f in figures)}")
    total = time.perf_counter() - t_start
    write(f"done in {total:.1f}s")
    return {"model": "yolo", "steps": steps, "loss_first": first, "loss_last": last, "ap_untrained": ap0,
            "ap50_untrained": ap50_0, "ap_trained": ap1, "ap50_trained": ap50_1, "seconds": total,
            "train_seconds": t_train, "figures": figures, "positives_first_batch": int(a0.fg_mask.sum())}


# ---- command-line glue (refdet.cli COMMANDS["demo"]) ------------------------------------------------

def _demo_args(p):
    from refdet.apps.args import float_range, int_range
    p.add_argument("--model", choices=tuple(_DEFAULTS) + tuple(_ALIASES), default="retinanet",
                   help="the detector to train (default retinanet; faster-rcnn = faster_rcnn)")
    p.add_argument("--seed", type=int_range(0), default=0, help="seed of the data, the weights and the batches")
    p.add_argument("--steps", type=int_range(1), default=None, help="training steps (default: "
                   + ", ".join(f"{m} {v[0]}" for m, v in _DEFAULTS.items()) + ")")
    p.add_argument("--batch", type=int_range(1, N_TRAIN), default=None,
                   help=f"images per step, 1..{N_TRAIN} (default 8)")
    p.add_argument("--lr", type=float_range(0.0, low_open=True), default=None,
                   help="learning rate after the warm-up (default: " +
                        ", ".join(f"{m} {v[2]:g}" for m, v in _DEFAULTS.items()) + ")")
    p.add_argument("--out", default="refdet-demo", help="folder for the figures (created; default refdet-demo)")
    p.add_argument("--no-plots", action="store_true", help="no figures (matplotlib not needed)")
    p.add_argument("--quantize", action="store_true",
                   help="retinanet: quantize the trained head to int8 and report (see `refdet quantize`)")
    p.add_argument("--show-reference", action="store_true",
                   help="print the reference code (refdet/reference/*.py) under each stage it explains")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _demo_run(args):
    if getattr(args, "quantize", False) and args.model != "retinanet":
        raise ValueError(f"--quantize needs --model retinanet; got {args.model}")
    if not args.no_plots:
        from refdet import plots as P
        if P.have_matplotlib():
            check_out_folder(args.out, "--out")
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
            plots=not args.no_plots, quantize=getattr(args, "quantize", False),
            show_reference=args.show_reference, progress=not args.quiet)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(run())
