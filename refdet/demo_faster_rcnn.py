"""``refdet demo --model faster-rcnn``: Faster R-CNN with an FPN, stage by stage.

The two stages of :mod:`refdet.faster_rcnn` on the demo's synthetic data: the anchors of each level,
the RPN's label assignment, the proposals before and after NMS, the sampled RoIs and the FPN level
each is pooled from (a histogram), training both stages end to end, the test-time proposals and the
detections, and the held-out COCO AP of the trained model against the untrained one. With matplotlib
it writes ``anchors.png`` (the anchors of one location per level), ``proposals_rois.png``
(:func:`refdet.plots.plot_proposals_rois`: proposals before / after NMS, the sampled RoIs coloured by
their pooled level) and ``detections.png``.

:func:`refdet.demo.run` calls :func:`run_faster_rcnn` after checking its arguments.
"""
from __future__ import annotations

import os
import time

import numpy as np

from refdet import faster_rcnn as FR
from refdet.demo import _DEFAULTS, N_TRAIN, _print, _train, anchor_locations, check_out_folder, evaluate
from refdet.detector import Detector
from refdet.roi import assign_roi_levels
from refdet.synthetic import CLASS_NAMES, make_synthetic_dataset

__all__ = ["run_faster_rcnn", "level_names", "proposal_counts", "pooled_levels"]

#: --show-reference: per stage the refdet.reference functions it prints
_REFERENCES = {"anchors": ("anchors.cell_anchors", "anchors.pyramid_anchors"),
               "assignment": ("matcher.match", "sampler.sample_balanced_indices", "box_coder.encode_boxes"),
               "proposals": ("box_coder.decode_boxes", "nms.nms"),
               "rois": ("roi.roi_level_reference", "roi.roi_align_reference"),
               "training": ("losses.bce_with_logits", "losses.smooth_l1"),
               "inference": ("box_coder.decode_boxes", "nms.batched_nms")}


def level_names(det):
    """``["P2 (stride 4)", ...]``: FPN names (log2 of the stride) of the detector's levels."""
    return [f"P{int(np.log2(s))} (stride {s})" for s in det.strides]


def proposal_counts(det, obj, deltas, *, training):
    """Per image ``(before NMS, after NMS, kept)`` proposal counts and the proposals themselves.

    "Before NMS" is :func:`refdet.faster_rcnn.proposals` with an NMS threshold of 1.0 (IoU > 1 never
    happens: nothing is suppressed) and no post-NMS cut: the top ``pre_nms_top_n`` anchors per level
    that survive clipping and the small-box filter. "After NMS" keeps every box NMS keeps; "kept" is
    the first ``post_nms_top_n`` of them (the proposals the second stage sees).

    Returns ``(counts (B, 3) int, before (Proposals), kept (Proposals))``.
    """
    before = FR.proposals(det, obj, deltas, training=training, nms_thresh=1.0, post_nms_top_n=0)
    after = FR.proposals(det, obj, deltas, training=training, post_nms_top_n=0)
    kept = FR.proposals(det, obj, deltas, training=training)
    counts = np.array([[len(a), len(b), len(c)] for a, b, c in zip(before.boxes, after.boxes, kept.boxes)])
    return counts, before, kept


def pooled_levels(det, boxes):
    """The level index (0 = P2) RoIAlign pools each box from: :func:`refdet.roi.assign_roi_levels` with
    the configuration's canonical box, clamped to the pooled levels."""
    s = det.frcnn
    k_min = int(np.log2(det.strides[0]))
    return assign_roi_levels(np.asarray(boxes, np.float64).reshape(-1, 4), min_level=k_min,
                             max_level=k_min + FR.NUM_ROI_LEVELS - 1, canonical_scale=s["canonical_scale"],
                             canonical_level=s["canonical_level"])


def _histogram(write, det, levels, what):
    names = level_names(det)[:FR.NUM_ROI_LEVELS]
    n = np.bincount(levels, minlength=len(names))
    top = max(1, int(n.max()))
    for name, c in zip(names, n):
        write(f"      {name:15s} {'#' * int(round(30 * c / top)):30s} {c:5d} {what}")


def run_faster_rcnn(*, seed=0, steps=None, batch=None, lr=None, out="refdet-demo", n_train=N_TRAIN, n_test=64,
                    plots=True, write=_print, show_reference=False, progress=True):
    """Run the Faster R-CNN demo; returns the result dict of :func:`refdet.demo.run` plus
    ``"rpn_positives_first_batch"``, ``"proposal_counts_first_batch"`` (B, 3) and
    ``"roi_levels_first_batch"`` (the RoIs pooled per level)."""
    from refdet import _checks

    d_steps, d_batch, d_lr = _DEFAULTS["faster_rcnn"]
    n_train = _checks.check_int(n_train, "n_train", low=1)
    steps = _checks.check_int(d_steps if steps is None else steps, "steps", low=1)
    batch = _checks.check_int(d_batch if batch is None else batch, "batch", low=1, high=n_train)
    lr = d_lr if lr is None else lr
    if plots:
        from refdet import plots as P
        plots = P.have_matplotlib()
        if plots:
            check_out_folder(out)

    def reference(stage):
        if show_reference:
            from refdet.walkthrough import reference_source
            names = _REFERENCES[stage]
            write(f"      reference code of this stage ({', '.join(names)}):")
            for line in reference_source(*names).splitlines():
                write("      | " + line)

    rng = np.random.default_rng(seed)
    t_start = time.perf_counter()
    write(f"refdet demo: Faster R-CNN (FPN, RPN, multi-scale RoIAlign, box head) trained from scratch in NumPy "
          f"(seed {seed})")
    write("=" * 78)
    train = make_synthetic_dataset(n_train, rng=rng)
    test = make_synthetic_dataset(n_test, rng=rng)
    n_obj = sum(len(b) for b in train.boxes)
    write(f"[1] data: {n_train} training and {n_test} held-out images, 3 x 64 x 64, "
          f"{n_obj} training objects ({', '.join(CLASS_NAMES)}) on noise")

    # 2. anchors ---------------------------------------------------------------------------------
    det = Detector("faster_rcnn")
    s = det.frcnn
    names = level_names(det)
    ratios = ", ".join(f"{r:g}" for r in det.config.aspect_ratios)
    write(f"[2] anchors: {len(det.anchors)} in all, order (level, y, x, anchor); one size per level, h/w ratios "
          f"{ratios}")
    for lvl, ((h, w), a) in enumerate(zip(det.feature_sizes, det.num_anchors)):
        write(f"      {names[lvl]:15s} {h:2d} x {w:2d} map, {a} anchors per location (size "
              f"{det.config.anchor_sizes[lvl][0]:g} px) -> {h * w * a:5d} anchors")
    reference("anchors")

    # 3. network ---------------------------------------------------------------------------------
    params = det.init(rng=rng)
    n_params = {k: sum(v.size for v in part.values()) for k, part in params.items()}
    obj, deltas, cache = det.forward(params, train.images[:batch])
    p = s["roi_output_size"]
    write(f"[3] network: {sum(n_params.values()):,} parameters ("
          + ", ".join(f"{k} {v:,}" for k, v in n_params.items()) + ")")
    write(f"      backbone stage outputs: {[tuple(c[0].out_shape[1:]) for c in cache.backbone]}")
    write(f"      FPN levels: {[tuple(sh[1:]) for sh in cache.level_shapes]} ({names[-1].split()[0]} = max-pool of "
          f"{names[-2].split()[0]}, for the RPN only)")
    write(f"      RPN head (shared 3x3 conv + ReLU, 1x1 objectness, 1x1 deltas) on every level, flattened: "
          f"objectness {obj.shape}, deltas {deltas.shape}")
    write(f"      box head: RoIAlign {p} x {p} x {s['fpn_channels']} = {s['fpn_channels'] * p * p} -> fc6 "
          f"{s['representation_size']} -> fc7 {s['representation_size']} -> {s['num_classes'] + 1} class scores "
          f"(background first) and {4 * (s['num_classes'] + 1)} class-specific deltas")

    # 4. the first stage on the first batch ------------------------------------------------------
    tgts = list(zip(train.boxes[:batch], train.labels[:batch]))
    a0 = det.assign(tgts, rng=np.random.default_rng(seed), params=params, images=train.images[:batch])
    (_, pm, nm), _, rois0 = a0
    write(f"[4] first stage (untrained), first batch of {batch}:")
    write("      RPN targets (torchvision): IoU >= 0.7 positive, < 0.3 negative, each object's best anchor "
          f"positive; {s['rpn_batch_size_per_image']} sampled per image, at most half positive: "
          f"{int(pm.sum())} positive, {int(nm.sum())} negative, {int(pm.size - pm.sum() - nm.sum())} not sampled")
    reference("assignment")
    counts0, _, _ = proposal_counts(det, obj, deltas, training=True)
    pre, post = s["rpn_pre_nms_top_n"][0], s["rpn_post_nms_top_n"][0]
    mean = counts0.mean(axis=0)
    write(f"      proposals per image (training counts): the top {pre} logits per level, decoded and clipped -> "
          f"{mean[0]:.0f} before NMS; NMS per level at IoU {s['rpn_nms_thresh']:g} -> {mean[1]:.0f}; "
          f"the best {post} kept -> {mean[2]:.0f} (mean over the batch; proposals carry no gradient)")
    reference("proposals")

    # 5. the second stage's RoIs -----------------------------------------------------------------
    fg = np.concatenate(rois0.labels) > 0
    write(f"[5] second stage: RoIs = proposals + the {sum(len(b) for b, _ in tgts)} ground-truth boxes; IoU >= 0.5 "
          f"foreground, the rest background; {s['box_batch_size_per_image']} sampled per image, at most "
          f"{s['box_batch_size_per_image'] // 4} foreground: {int(fg.sum())} foreground, {int((~fg).sum())} "
          "background")
    roi_levels0 = pooled_levels(det, np.concatenate(rois0.rois))
    write(f"      the level each RoI is pooled from (FPN Eq. 1: k = floor({s['canonical_level']} + "
          f"log2(sqrt(wh) / {s['canonical_scale']:g})), clamped to P2..P{1 + FR.NUM_ROI_LEVELS}), "
          f"then RoIAlign {p} x {p}, sampling ratio {s['roi_sampling_ratio']}:")
    _histogram(write, det, roi_levels0, "RoIs")
    reference("rois")
    ap0, ap50_0, _ = evaluate(det, params, test)

    # 6. training --------------------------------------------------------------------------------
    write(f"[6] training: {steps} steps of SGD (momentum 0.9, lr {lr:g}, batch {batch}); loss = RPN objectness "
          "BCE + RPN smooth L1 + box-head cross entropy + box-head smooth L1 (torchvision's four terms)")
    reference("training")
    params, first, last, t_train = _train(det, params, train, n_train, steps=steps, batch=batch, lr=lr, rng=rng,
                                          progress=progress, write=write)

    # 7. inference on a held-out image -----------------------------------------------------------
    j = int(np.argmax([len(b) for b in test.boxes]))              # the held-out image with the most objects
    obj, deltas, _ = det.forward(params, test.images[j:j + 1])
    counts, before, kept = proposal_counts(det, obj, deltas, training=False)
    dets = det.detect(params, test.images[j:j + 1])[0]
    write(f"[7] inference on held-out image {j}: the top {s['rpn_pre_nms_top_n'][1]} logits per level -> "
          f"{counts[0, 0]} proposals before NMS, {counts[0, 1]} after, the best {counts[0, 2]} kept; pooled from:")
    _histogram(write, det, pooled_levels(det, kept.boxes[0]), "proposals")
    write(f"      box head: softmax, a box per class, clip, scores > 0.05, NMS per class at IoU 0.5 -> "
          f"{len(dets[0])} detections")
    for b, sc, lab in list(zip(*dets))[:5]:
        write(f"      {CLASS_NAMES[int(lab)]:9s} score {sc:.3f}  box [{b[0]:5.1f}, {b[1]:5.1f}, {b[2]:5.1f}, "
              f"{b[3]:5.1f}]")
    write(f"      ground truth: {[[round(float(v), 1) for v in g] for g in test.boxes[j]]}")
    reference("inference")

    # 8. evaluation ------------------------------------------------------------------------------
    ap1, ap50_1, all_dets = evaluate(det, params, test)
    write(f"[8] held-out COCO evaluation ({n_test} images): untrained AP {ap0:.3f} / AP50 {ap50_0:.3f}  ->  "
          f"trained AP {ap1:.3f} / AP50 {ap50_1:.3f}")

    # 9. figures ---------------------------------------------------------------------------------
    figures = []
    if plots:
        figures = _figures(det, params, test, j, before, kept, all_dets, out, seed)
        write(f"[9] figures in {out}/: {', '.join(os.path.basename(f) for f in figures)}")
    total = time.perf_counter() - t_start
    write(f"done in {total:.1f}s")
    return {"model": "faster_rcnn", "steps": steps, "loss_first": first, "loss_last": last, "ap_untrained": ap0,
            "ap50_untrained": ap50_0, "ap_trained": ap1, "ap50_trained": ap50_1, "seconds": total,
            "train_seconds": t_train, "figures": figures, "rpn_positives_first_batch": int(pm.sum()),
            "proposal_counts_first_batch": counts0, "roi_levels_first_batch": np.bincount(roi_levels0,
                                                                                         minlength=FR.NUM_ROI_LEVELS)}


def _figures(det, params, test, j, before, kept, all_dets, out, seed):
    """anchors.png, proposals_rois.png (trained model, held-out image j), detections.png."""
    from refdet import plots as P

    img, gtb = test.images[j], np.asarray(test.boxes[j], np.float64)
    paths = []
    m = int(np.argmax((gtb[:, 2] - gtb[:, 0]) * (gtb[:, 3] - gtb[:, 1])))
    levels = anchor_locations(det, ((gtb[m, 0] + gtb[m, 2]) / 2, (gtb[m, 1] + gtb[m, 3]) / 2))
    for lv, name in zip(levels, level_names(det)):
        lv["name"] = name
    paths.append(P.plot_anchors(img, levels, os.path.join(out, "anchors.png"), gt_boxes=gtb, title=(
        "Faster R-CNN: the anchors of ONE location per level, on the cell under the centre of the largest "
        f"object (dashed: ground truth; grey frame: the {det.image_size[1]}x{det.image_size[0]} image)")))
    # the sampled RoIs of this image as the trained model's training step would draw them
    a = det.assign([(test.boxes[j], test.labels[j])], rng=seed, params=params, images=test.images[j:j + 1])
    rois, labels = a.rois.rois[0], a.rois.labels[0]
    paths.append(P.plot_proposals_rois(
        img, (before.boxes[0], before.scores[0]), (kept.boxes[0], kept.levels[0]),
        (rois, labels > 0, pooled_levels(det, rois)), os.path.join(out, "proposals_rois.png"),
        level_names=level_names(det), pooled_levels=FR.NUM_ROI_LEVELS, gt_boxes=gtb,
        nms_threshold=det.frcnn["rpn_nms_thresh"],
        title=f"Faster R-CNN (trained), held-out image {j}: test-time proposals, and the RoIs a training step "
              "samples from the training-time proposals"))
    gts = [(test.boxes[i], test.labels[i]) for i in range(len(test.boxes))]
    paths.append(P.plot_detections(test.images, all_dets, gts, os.path.join(out, "detections.png"),
                                   class_names=CLASS_NAMES, score_threshold=0.3, max_per_image=5,
                                   title="Faster R-CNN (trained), held-out images"))
    return paths
