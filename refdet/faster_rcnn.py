"""Faster R-CNN with an FPN, whole: the two stages composed from refdet's parts, forward and backward.

:class:`refdet.detector.Detector` with ``model="faster_rcnn"`` calls these functions; they read the
detector's geometry (anchors, strides, feature sizes) and configuration and hold no state. One
training step, per batch (torchvision ``models/detection/faster_rcnn.py``, ``rpn.py``,
``roi_heads.py``)::

    images (B, 3, H, W)
      -> backbone (four 3x3 stride-2 conv + ReLU)          refdet.backbone
      -> FPN on strides 4, 8, 16, plus a stride-32 level    refdet.fpn (extra_blocks="maxpool": P2..P5)
      -> RPN head on every level (shared weights)          refdet.heads.rpn_head_forward
         objectness (B, N), deltas (B, N, 4) over N anchors (one size per level, 3 ratios)
         train: rpn_targets (0.7 / 0.3, 256 sampled)     -> rpn_loss (BCE mean + smooth L1 beta 1/9)
      -> proposals: select_proposals (top-k per level, decode, clip, NMS per level at 0.7, top-n)
                                                           refdet.proposals      [constants: no gradient]
         train: sample_rois (gt boxes appended, IoU >= 0.5 fg, at most 25 % fg) refdet.roi_heads
      -> multi-scale RoIAlign over P2..P4 (FPN Eq. 1 level per RoI)           refdet.roi
      -> box head: fc6, fc7 (ReLU), class scores (K + 1), class-specific deltas refdet.box_head
         train: fastrcnn_loss (softmax CE mean + smooth L1 beta 1/9 / sampled RoIs)
         test:  fastrcnn_postprocess (softmax, decode per class, clip, score > thr, NMS per class, top 100)

The loss is the sum of the four terms (torchvision's ``loss_objectness``, ``loss_rpn_box_reg``,
``loss_classifier``, ``loss_box_reg``). Gradients flow from the box head through RoIAlign's backward
into the FPN levels P2..P4, are added to the RPN head's gradients of the same levels, and go down
through the FPN and the backbone. The proposals are **constants**: torchvision detaches them
(``RegionProposalNetwork.forward``: ``proposals = self.box_coder.decode(pred_bbox_deltas.detach(),
anchors)``, "note that we detach the deltas because Faster R-CNN do not backprop through the
proposals"), and so do detectron2 (``find_top_rpn_proposals`` under ``torch.no_grad``) and mmdet
(``rpn_head.predict_by_feat`` on detached scores). The box-head loss therefore has no gradient with
respect to the box coordinates of the RoIs, only with respect to the features pooled inside them.

What differs from torchvision's ``fasterrcnn_resnet50_fpn``, on purpose: the toy backbone stands in
for ResNet-50; the images are 64 pixels, so the anchor sizes (8, 16, 32, 64 at strides 4..32 instead of
32..512), the FPN level rule's canonical box (16 px at level 3 instead of 224 px at level 4), the
proposal counts and the sampled RoIs (32 per image instead of 512) are scaled down; the anchors sit
at the cell centres (``center_offset=0.5``) as in refdet's other detectors. Labels: the detector
takes and returns classes ``0..K-1``; inside, the box head uses torchvision's numbering (0 background,
objects ``1..K``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet.backbone import backbone_backward, backbone_forward, backbone_init
from refdet.box_head import BoxHeadOutput, box_head_backward, box_head_forward, box_head_init
from refdet.fpn import fpn_backward, fpn_forward, fpn_init
from refdet.heads import RPNHeadOutput, flatten_head_output, rpn_head_backward, rpn_head_forward, rpn_head_init
from refdet.heads import unflatten_head_output
from refdet.losses import LossTargets, rpn_loss_backward, rpn_loss_forward
from refdet.proposals import Proposals, select_proposals
from refdet.roi import multiscale_roi_align_backward, multiscale_roi_align_forward
from refdet.roi_heads import RoISamples, fastrcnn_loss_backward, fastrcnn_loss_forward, fastrcnn_postprocess
from refdet.roi_heads import sample_rois
from refdet.targets import rpn_targets

__all__ = ["FasterRCNNAssignment", "FasterRCNNCache", "check_config", "init", "forward", "backward", "assign",
           "proposals", "loss_and_grads", "detect"]

#: the levels RoIAlign pools from: the first three FPN outputs (P2, P3, P4); the stride-32 max-pool
#: level feeds only the RPN (torchvision MultiScaleRoIAlign(featmap_names=['0', '1', '2', '3']) omits 'pool')
NUM_ROI_LEVELS = 3


class FasterRCNNAssignment(NamedTuple):
    """What a training step holds fixed: the RPN's targets, the proposals, the sampled RoIs.

    None of it has a gradient (the targets and the sample are drawn, the proposals are detached), so
    passing it back to :func:`loss_and_grads` makes the loss a smooth function of the parameters:
    what a gradient check needs.

    Attributes
    ----------
    rpn : (LossTargets (B, N), pos_mask (B, N), neg_mask (B, N))
        :func:`refdet.rpn_targets` per image: labels 1 / 0 / -1, encoded deltas, the sampled anchors.
    proposals : refdet.proposals.Proposals
        Per image the training proposals (after NMS and the post-NMS top-n), best first.
    rois : refdet.roi_heads.RoISamples
        Per image the sampled RoIs (gt boxes appended), labels ``0`` background / ``1..K`` objects,
        their regression targets (weights 10, 10, 5, 5).
    """
    rpn: tuple
    proposals: Proposals
    rois: RoISamples


class FasterRCNNCache(NamedTuple):
    """The forward's cache: backbone, FPN and RPN-head caches, the level shapes and the levels."""
    backbone: list
    fpn: object
    rpn_head: object
    level_shapes: list
    levels: list          # the FPN outputs (B, F, H_l, W_l), finest first; the first 3 are pooled


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------

def _count_pair(value, name):
    """A (train, test) pair of proposal counts, each an int >= 1."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"`{name}` must be a (train, test) pair of ints >= 1; got {value!r}")
    return tuple(_checks.check_int(v, f"{name}[{i}]", low=1) for i, v in enumerate(value))


def check_config(cfg) -> dict:
    """The Faster R-CNN fields of a :class:`refdet.detector.DetectorConfig`, checked.

    Returns a dict of the validated values; raises ``ValueError`` (``TypeError`` for a wrong kind of
    value) naming the field.
    """
    out = {"rpn_pre_nms_top_n": _count_pair(cfg.rpn_pre_nms_top_n, "rpn_pre_nms_top_n"),
           "rpn_post_nms_top_n": _count_pair(cfg.rpn_post_nms_top_n, "rpn_post_nms_top_n"),
           "rpn_nms_thresh": _checks.check_probability(cfg.rpn_nms_thresh, "rpn_nms_thresh"),
           "rpn_batch_size_per_image": _checks.check_int(cfg.rpn_batch_size_per_image, "rpn_batch_size_per_image",
                                                         low=1),
           "box_batch_size_per_image": _checks.check_int(cfg.box_batch_size_per_image, "box_batch_size_per_image",
                                                         low=1),
           "box_positive_fraction": _checks.check_probability(cfg.box_positive_fraction, "box_positive_fraction"),
           "roi_output_size": _checks.check_int(cfg.roi_output_size, "roi_output_size", low=1),
           "roi_sampling_ratio": _checks.check_int(cfg.roi_sampling_ratio, "roi_sampling_ratio", low=1),
           "canonical_scale": _checks.check_positive(cfg.canonical_scale, "canonical_scale"),
           "canonical_level": _checks.check_int(cfg.canonical_level, "canonical_level"),
           "representation_size": _checks.check_int(cfg.representation_size, "representation_size", low=1),
           "num_classes": _checks.check_int(cfg.num_classes, "num_classes", low=1),
           "fpn_channels": _checks.check_int(cfg.fpn_channels, "fpn_channels", low=1)}
    if len(cfg.backbone_channels) != 4:
        raise ValueError(f"`backbone_channels` must give the 4 backbone stages (strides 2, 4, 8, 16); got "
                         f"{len(cfg.backbone_channels)}")
    for i, r in enumerate(cfg.aspect_ratios):
        _checks.check_positive(r, f"aspect_ratios[{i}]")
    if len(cfg.anchor_sizes) < 4 or any(len(s) != 1 for s in cfg.anchor_sizes[:4]):
        raise ValueError("`anchor_sizes` must give one size for each of the 4 levels (strides 4, 8, 16, 32), as "
                         f"torchvision's ((32,), (64,), ...); got {cfg.anchor_sizes!r}")
    return out


# ---------------------------------------------------------------------------------------------------
# parameters and the first stage
# ---------------------------------------------------------------------------------------------------

def init(det, *, rng=None, dtype=np.float32) -> dict:
    """``{"backbone", "fpn", "rpn", "roi_heads"}``: torchvision's ``state_dict`` keys inside each part.

    Backbone He-normal; FPN as :func:`refdet.fpn_init` (kaiming_uniform a=1, zero bias); RPN head
    normal(0, 0.01), zero bias (torchvision ``RPNHead``); box head ``nn.Linear``'s default uniform
    (torchvision ``TwoMLPHead`` / ``FastRCNNPredictor``).
    """
    rng = _checks.as_rng(rng)
    cfg = det.config
    s = det.frcnn
    params = {"backbone": backbone_init(cfg.backbone_channels, rng=rng, dtype=dtype)}
    in_ch = [cfg.backbone_channels[i] for i in det.in_stages]
    params["fpn"] = fpn_init(in_ch, s["fpn_channels"], extra_blocks="maxpool", rng=rng, dtype=dtype)
    params["rpn"] = rpn_head_init(s["fpn_channels"], det.num_anchors[0], rng=rng, dtype=dtype)
    p = s["roi_output_size"]
    params["roi_heads"] = box_head_init(s["fpn_channels"] * p * p, s["num_classes"] + 1,
                                        representation_size=s["representation_size"], rng=rng, dtype=dtype)
    return params


def forward(det, params, x):
    """images (B, 3, H, W) -> (objectness (B, N, 1), deltas (B, N, 4), FasterRCNNCache): the RPN's
    outputs over every anchor, levels concatenated (anchor order (level, y, x, a))."""
    feats, bcache = backbone_forward(params["backbone"], x)
    levels, fcache = fpn_forward(params["fpn"], [feats[i] for i in det.in_stages], extra_blocks="maxpool")
    out, hcache = rpn_head_forward(params["rpn"], levels)
    obj = flatten_head_output(out.objectness, det.num_anchors)
    deltas = flatten_head_output(out.deltas, det.num_anchors)
    return obj, deltas, FasterRCNNCache(bcache, fcache, hcache, [lv.shape for lv in levels], levels)


def backward(det, dobj, ddeltas, dlevels_roi, cache: FasterRCNNCache) -> dict:
    """Parameter gradients from the RPN outputs' gradients (B, N, 1), (B, N, 4) and the RoI branch's
    gradients of the pooled levels (a list, one (B, F, H_l, W_l) per pooled level; None: zero)."""
    sizes = [s[2:] for s in cache.level_shapes]
    grads = {}
    dc = unflatten_head_output(dobj, det.num_anchors, sizes)
    db = unflatten_head_output(ddeltas, det.num_anchors, sizes)
    grads["rpn"], dlevels = rpn_head_backward(RPNHeadOutput(dc, db), cache.rpn_head)
    dlevels = list(dlevels)
    for i, d in enumerate(dlevels_roi or ()):
        if d is not None:
            dlevels[i] = dlevels[i] + d         # P_i feeds both the RPN head and RoIAlign
    grads["fpn"], dinputs = fpn_backward(dlevels, cache.fpn)
    dfeats = [None] * len(cache.backbone)
    for i, d in zip(det.in_stages, dinputs):
        dfeats[i] = d
    grads["backbone"], _ = backbone_backward(dfeats, cache.backbone)
    return grads


def _counts(det):
    return [h * w * a for (h, w), a in zip(det.feature_sizes, det.num_anchors)]


def proposals(det, obj, deltas, *, training: bool, **overrides) -> Proposals:
    """The RPN's proposals from its outputs (B, N, 1) and (B, N, 4): :func:`refdet.select_proposals`
    under torchvision's profile with the configuration's counts (``overrides``: any of its knobs,
    e.g. ``nms_thresh=1.0`` and ``post_nms_top_n=0`` for the proposals before NMS)."""
    s = det.frcnn
    kw = dict(pre_nms_top_n=s["rpn_pre_nms_top_n"], post_nms_top_n=s["rpn_post_nms_top_n"],
              nms_thresh=s["rpn_nms_thresh"])
    kw.update(overrides)
    b = obj.shape[0]
    return select_proposals(obj[..., 0], deltas, det.anchors, [det.image_size] * b, _counts(det), training=training,
                            convention="torchvision", **kw)


def _pool(det, levels, boxes):
    """Multi-scale RoIAlign of per-image boxes over the pooled levels: (R, F, P, P), cache."""
    s = det.frcnn
    return multiscale_roi_align_forward(levels[:NUM_ROI_LEVELS], boxes, s["roi_output_size"], s["roi_sampling_ratio"],
                                        scales=[1.0 / st for st in det.strides[:NUM_ROI_LEVELS]],
                                        canonical_scale=s["canonical_scale"], canonical_level=s["canonical_level"],
                                        convention="torchvision")


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------

def assign(det, params, x, targets, *, rng=None) -> FasterRCNNAssignment:
    """The step's constants for checked ``targets``: RPN targets, training proposals, sampled RoIs.

    ``rng`` draws the RPN's 256 anchors per image, then the RoI sample (one Generator, in that order).
    """
    rng = _checks.as_rng(rng)
    obj, deltas, _ = forward(det, params, x)
    return _assign(det, obj, deltas, targets, rng)


def _assign(det, obj, deltas, targets, rng):
    s = det.frcnn
    b, n = obj.shape[:2]
    labels = np.empty((b, n), dtype=np.int64)
    tdeltas = np.zeros((b, n, 4), dtype=np.float64)
    pos = np.zeros((b, n), dtype=bool)
    neg = np.zeros((b, n), dtype=bool)
    for i, (gtb, _) in enumerate(targets):       # a loop over images; anchors are vectorised
        t = rpn_targets(det.anchors, gtb, det.image_size, level=det.anchor_level, rng=rng, convention="torchvision",
                        batch_size_per_image=s["rpn_batch_size_per_image"])
        labels[i], tdeltas[i], pos[i], neg[i] = t.labels, t.deltas, t.pos_mask, t.neg_mask
    props = proposals(det, obj, deltas, training=True)
    dt = obj.dtype
    rois = sample_rois(props.boxes, [np.asarray(g, dtype=dt) for g, _ in targets], [lab + 1 for _, lab in targets],
                       rng=rng, convention="torchvision", batch_size_per_image=s["box_batch_size_per_image"],
                       positive_fraction=s["box_positive_fraction"])
    return FasterRCNNAssignment((LossTargets(labels, tdeltas), pos, neg), props, rois)


def _check_assignment(assignment, b, n):
    if not isinstance(assignment, FasterRCNNAssignment):
        raise TypeError(f"`assignment` must be the FasterRCNNAssignment returned by assign(); got "
                        f"{type(assignment).__name__}")
    if assignment.rpn[0].labels.shape != (b, n) or len(assignment.rois.rois) != b:
        raise ValueError(f"`assignment` must be made for {b} images and {n} anchors; got RPN labels of shape "
                         f"{assignment.rpn[0].labels.shape} and {len(assignment.rois.rois)} images of RoIs")


def loss_and_grads(det, params, x, targets, *, rng=None, assignment=None):
    """``(losses, grads, trace_parts)`` of one step on checked ``targets``.

    ``losses``: ``objectness`` and ``rpn_box_regression`` (:func:`refdet.rpn_loss_forward`,
    torchvision: BCE mean over the sampled anchors; smooth L1, beta 1/9, summed over the sampled
    positives and divided by the sampled anchors), ``classification`` and ``box_regression``
    (:func:`refdet.roi_heads.fastrcnn_loss_forward`: softmax cross entropy mean over the sampled
    RoIs; smooth L1, beta 1/9, over the foreground RoIs' own-class deltas divided by the sampled RoIs),
    and ``total``, their sum (what the gradients differentiate). ``trace_parts``: the assignment and
    the level each sampled RoI was pooled from.
    """
    obj, deltas, cache = forward(det, params, x)
    b, n = obj.shape[:2]
    dt = obj.dtype
    if assignment is None:
        assignment = _assign(det, obj, deltas, targets, _checks.as_rng(rng))
    else:
        _check_assignment(assignment, b, n)
    (lt, pos, neg), _, rois = assignment
    one = (np.ones((), dt), np.ones((), dt))
    # first stage: the RPN loss over the sampled anchors
    l_rpn, c_rpn = rpn_loss_forward(obj[..., 0], deltas, LossTargets(lt.labels, lt.deltas.astype(dt)),
                                    pos_mask=pos, neg_mask=neg, convention="torchvision")
    g_rpn = rpn_loss_backward(one, c_rpn)
    # second stage: pool the sampled RoIs, the box head, the Fast R-CNN loss
    pooled, c_pool = _pool(det, cache.levels, [r.astype(dt, copy=False) for r in rois.rois])
    out, c_head = box_head_forward(params["roi_heads"], pooled)
    # background rows' targets are unused by the loss; for an image without objects they encode against
    # torchvision's dummy (0, 0, 0, 0) gt and hold -inf (log 0), which the loss's input check refuses
    tg = [np.where(lab[:, None] > 0, t, 0).astype(dt, copy=False) for lab, t in zip(rois.labels,
                                                                                    rois.regression_targets)]
    l_box, c_box = fastrcnn_loss_forward(out.class_logits, out.box_regression, list(rois.labels), tg,
                                         convention="torchvision")
    g_box = fastrcnn_loss_backward(one, c_box)
    grads_head, dpooled = box_head_backward(BoxHeadOutput(g_box.dclass_logits, g_box.dbox_regression), c_head)
    dlevels = multiscale_roi_align_backward(dpooled, c_pool).dfeatures
    grads = backward(det, g_rpn.dobjectness[..., None].astype(dt), g_rpn.ddeltas.astype(dt), dlevels, cache)
    grads["roi_heads"] = grads_head
    losses = {"objectness": float(l_rpn.objectness), "rpn_box_regression": float(l_rpn.box_regression),
              "classification": float(l_box.classification), "box_regression": float(l_box.box)}
    losses["total"] = float(sum(losses.values()))
    return losses, {k: grads[k] for k in ("backbone", "fpn", "rpn", "roi_heads")}, (assignment, c_pool.levels, cache)


# ---------------------------------------------------------------------------------------------------
# inference
# ---------------------------------------------------------------------------------------------------

def detect(det, params, x, *, score_threshold=0.05, nms_threshold=0.5, detections_per_image=100):
    """Per image ``(boxes (D, 4), scores (D,), labels (D,) in 0..K-1)``.

    Test-time proposals (:func:`proposals` with ``training=False``), RoIAlign, the box head, then
    :func:`refdet.roi_heads.fastrcnn_postprocess` under torchvision's profile in float64: softmax,
    every (RoI, class) pair decoded with its class's deltas (weights 10, 10, 5, 5), clipped, scores
    ``> score_threshold``, boxes smaller than 0.01 px dropped, NMS per class at ``nms_threshold``
    (IoU above it suppresses), the best ``detections_per_image`` by score (0: all).
    """
    score_threshold = _checks.check_probability(score_threshold, "score_threshold")
    nms_threshold = _checks.check_probability(nms_threshold, "nms_threshold")
    detections_per_image = _checks.check_int(detections_per_image, "detections_per_image", low=0)
    obj, deltas, cache = forward(det, params, x)
    props = proposals(det, obj, deltas, training=False)
    dt = obj.dtype
    pooled, _ = _pool(det, cache.levels, [p.astype(dt, copy=False) for p in props.boxes])
    out, _ = box_head_forward(params["roi_heads"], pooled)
    b = x.shape[0]
    d = fastrcnn_postprocess(out.class_logits.astype(np.float64), out.box_regression.astype(np.float64),
                             [p.astype(np.float64) for p in props.boxes], [det.image_size] * b,
                             convention="torchvision", score_thresh=score_threshold, nms_thresh=nms_threshold,
                             detections_per_img=detections_per_image)
    return [(bx, sc, lab - 1) for bx, sc, lab in zip(d.boxes, d.scores, d.labels)]
