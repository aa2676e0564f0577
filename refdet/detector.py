"""Whole detectors composed only from refdet's own parts: backbone -> (FPN) -> head -> targets -> loss,
and back again, by hand.

Five detectors share one small convolutional backbone (:mod:`refdet.backbone`):

* ``"rpn"``: the Faster R-CNN region proposal network (Ren et al. 2015): one feature map, the seed's
  9 anchors per location (3 sizes x 3 aspect ratios), objectness + box regression, 256 anchors
  sampled per image (at most half positive), ``rpn_targets``'s 0.7 / 0.3 rule.
* ``"retinanet"``: RetinaNet (Lin et al. 2017): an FPN with five levels (P3-P7 in the paper's
  naming: three from the backbone, P6 and P7 by stride-2 convolutions), the classification and box
  subnets, the focal loss over every non-ignored anchor and a box loss over the positives.
* ``"ssd"``: SSD (Liu et al. 2016): default boxes on three backbone maps, one 3x3 conv pair per map,
  softmax cross entropy with 3:1 hard-negative mining and smooth L1.
* ``"yolo"``: an anchor-free YOLOv8 (ultralytics): an FPN with three levels (strides 4, 8, 16; no
  extra levels), one anchor *point* per cell at its centre (:func:`refdet.yolo.make_anchors`), the
  decoupled v8 head (:mod:`refdet.heads.yolo`: a box branch of DFL logits, ``reg_max`` bins per side,
  and a class branch, per level), task-aligned assignment recomputed from the detached predictions at
  every step, the v8 loss (CIoU + DFL + BCE, :func:`refdet.yolo.v8_detection_loss_forward`), and at
  inference the DFL decode and ultralytics' ``non_max_suppression``
  (:func:`refdet.yolo.yolo_non_max_suppression`). What differs from a real YOLOv8, on purpose: the
  toy backbone and refdet's top-down FPN stand in for CSPDarknet and the PAN neck; the head's convs
  are conv + bias + ReLU (no BatchNorm, no SiLU: :mod:`refdet.heads.yolo`); strides and ``reg_max``
  (8 bins) are scaled to the 64-pixel images; the class-bias prior uses the image side for 640.
  The step is gradient-checked in float64 (``refdet.verify.YOLOStepCase``) and equals torch autograd
  through the same network with ultralytics' own ``v8DetectionLoss`` (tests/test_detector.py).
* ``"faster_rcnn"``: Faster R-CNN with an FPN (Ren et al. 2015, Lin et al. 2017), both stages:
  the FPN (strides 4-16 plus a max-pooled stride-32 level), the RPN head on every level, the
  proposals (:mod:`refdet.proposals`), the sampled RoIs (:mod:`refdet.roi_heads`), multi-scale
  RoIAlign (:mod:`refdet.roi`) and the two-FC box head (:mod:`refdet.box_head`), trained end to end
  with the RPN loss plus the Fast R-CNN loss; the proposals are constants, as in torchvision
  (:mod:`refdet.faster_rcnn` composes it and says what is scaled down).

The API is the same for each::

    det = Detector("retinanet")                       # configuration only, no hidden state
    params = det.init(rng=0)                          # nested dict of arrays
    losses, grads = det.train_step(params, images, targets)
    params, velocity = sgd_momentum_update(params, grads, velocity, lr=0.01)
    boxes, scores, labels = det.detect(params, images)[0]   # per image

``images`` is (B, 3, H, W); ``targets`` is a list of B ``(boxes (M, 4) xyxy, labels (M,))`` pairs.

The backbone is four 3x3 stride-2 conv + ReLU stages (strides 2, 4, 8, 16): a toy stand-in for a
ResNet's C2..C5 sized for 64-pixel images, so that the demo trains on two CPU cores in a minute. The
images are 64 pixels instead of the papers' 600-800, so every stride and anchor size is scaled down
by the same factor; the structure (levels, anchors per location, heads, losses) is the papers'.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from refdet import _checks
from refdet import faster_rcnn as _frcnn
from refdet import layers
from refdet.anchors import pyramid_anchors, ssd_default_boxes
from refdet.backbone import _check_backbone, backbone_backward, backbone_forward, backbone_init
from refdet.box_coder import decode_boxes
from refdet.boxes import clip_boxes_to_image
from refdet.fpn import fpn_backward, fpn_forward, fpn_init
from refdet.heads import (flatten_head_output, retinanet_head_backward, retinanet_head_forward,
                          retinanet_head_init, rpn_head_backward, rpn_head_forward, rpn_head_init,
                          ssd_head_backward, ssd_head_forward, ssd_head_init, unflatten_head_output,
                          RetinaNetHeadOutput, RPNHeadOutput, SSDHeadOutput)
from refdet.losses import (LossTargets, multibox_loss_backward, multibox_loss_forward, retinanet_loss_backward,
                           retinanet_loss_forward, rpn_loss_backward, rpn_loss_forward)
from refdet.nms import batched_nms
from refdet.postprocess import postprocess_detections
from refdet.targets import retinanet_targets, rpn_targets, ssd_targets
from refdet.heads.yolo import YOLOHeadOutput, yolo_head_backward, yolo_head_forward, yolo_head_init
from refdet.yolo._common import sigmoid as yolo_sigmoid
from refdet.yolo.anchors import make_anchors
from refdet.yolo.assign import Assignment, task_aligned_assign
from refdet.yolo.decode import dfl_decode_forward
from refdet.yolo.detector_losses import v8_detection_loss_backward, v8_detection_loss_forward
from refdet.yolo.nms import yolo_non_max_suppression

__all__ = ["DetectorConfig", "Detector", "Trace", "sgd_momentum_update", "backbone_init", "backbone_forward",
           "backbone_backward"]

MODELS = ("retinanet", "rpn", "ssd", "yolo", "faster_rcnn")

#: other spellings accepted for a model name (the command line's ``--model faster-rcnn``)
ALIASES = {"faster-rcnn": "faster_rcnn"}

#: the v8 loss's task-aligned assigner settings (ultralytics ``v8DetectionLoss``: topk 10, alpha 0.5,
#: beta 6 -- not the assigner's own defaults 13 / 1.0)
YOLO_TAL = dict(topk=10, alpha=0.5, beta=6.0)


class DetectorConfig(NamedTuple):
    """Everything that defines a detector (the parameters are separate).

    Attributes
    ----------
    model : {"retinanet", "rpn", "ssd", "yolo", "faster_rcnn"}
    image_size : (H, W) the network input size
    num_classes : K foreground classes (the RPN has one: "object")
    backbone_channels : channels of the four backbone stages (strides 2, 4, 8, 16)
    fpn_channels : F, channels of the FPN levels and of the heads (RetinaNet)
    head_convs : 3x3 conv + ReLU layers in each RetinaNet subnet (the paper: 4)
    anchor_sizes : per level, the anchor sizes (pixels)
    aspect_ratios : h/w ratios of the anchors at every location
    reg_max : YOLO only: DFL bins per box side (ultralytics 16; the demo's small objects need 8)

    The fields below are Faster R-CNN's (:mod:`refdet.faster_rcnn`; torchvision's defaults in brackets,
    for 800-pixel images):

    rpn_pre_nms_top_n : (train, test) anchors ranked per level before the proposal NMS [2000, 1000]
    rpn_post_nms_top_n : (train, test) proposals kept per image after it [2000, 1000]
    rpn_nms_thresh : IoU of the proposal NMS (per level) [0.7]
    rpn_batch_size_per_image : anchors sampled per image for the RPN loss, at most half positive [256]
    box_batch_size_per_image : RoIs sampled per image for the box head [512]
    box_positive_fraction : largest foreground share of the sampled RoIs [0.25]
    roi_output_size : RoIAlign output P x P [7]
    roi_sampling_ratio : RoIAlign samples per bin side [2]
    canonical_scale, canonical_level : FPN Eq. 1: a RoI of this size (sqrt of its area) is pooled
        from this level, one level finer per halving [224, 4]
    representation_size : width of the box head's fc6 and fc7 [1024]
    """
    model: str = "retinanet"
    image_size: tuple = (64, 64)
    num_classes: int = 2
    backbone_channels: tuple = (16, 32, 48, 64)
    fpn_channels: int = 32
    head_convs: int = 2
    anchor_sizes: tuple = ((12,), (24,), (48,), (96,), (192,))
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    reg_max: int = 16
    rpn_pre_nms_top_n: tuple = (2000, 1000)
    rpn_post_nms_top_n: tuple = (2000, 1000)
    rpn_nms_thresh: float = 0.7
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    roi_output_size: int = 7
    roi_sampling_ratio: int = 2
    canonical_scale: float = 224.0
    canonical_level: int = 4
    representation_size: int = 1024


def _default_config(model):
    if model == "rpn":
        # the seed's single level: 3 sizes x 3 ratios = 9 anchors per location, on the stride-8 map
        return DetectorConfig(model="rpn", num_classes=1, anchor_sizes=((12, 20, 32),))
    if model == "ssd":
        return DetectorConfig(model="ssd", anchor_sizes=((10, 16), (20, 32), (40, 60)))
    if model == "yolo":
        # 8 bins: a side reaches 7 cells, 28 px at stride 4 (the objects are 10-32 px)
        return DetectorConfig(model="yolo", reg_max=8)
    if model == "faster_rcnn":
        # scaled to 64-pixel images with 10-32 px objects: one anchor size per level (2 x the stride), a
        # 16 px RoI pooled from P3 (stride 8), few proposals and 32 RoIs per image, a narrow box head
        return DetectorConfig(model="faster_rcnn", anchor_sizes=((8,), (16,), (32,), (64,)),
                              rpn_pre_nms_top_n=(300, 150), rpn_post_nms_top_n=(150, 75),
                              box_batch_size_per_image=32, roi_output_size=5, canonical_scale=16.0,
                              canonical_level=3, representation_size=256)
    return DetectorConfig(model="retinanet")


class Trace(NamedTuple):
    """What a train step saw on its way (for the demo's stage-by-stage printout)."""
    feature_shapes: list
    anchors_per_level: list
    num_positive: int
    num_negative: int
    num_ignored: int
    assignment: object = None      # YOLO: the TAL Assignment of the step (refdet.yolo.Assignment);
    #                                Faster R-CNN: the refdet.faster_rcnn.FasterRCNNAssignment
    loss_cache: object = None      # YOLO: the v8 loss's cache (for a check that freezes CIoU's alpha)
    roi_levels: object = None      # Faster R-CNN: (R,) the FPN level index each sampled RoI was pooled from


# ----------------------------------------------------------------------------------------------
# SGD with momentum
# ----------------------------------------------------------------------------------------------

def _tree_map(f, *trees):
    t0 = trees[0]
    if isinstance(t0, dict):
        return {k: _tree_map(f, *(t[k] for t in trees)) for k in t0}
    return f(*trees)


def _checked_tree(tree, like, name):
    """A nested dict of finite float arrays; with ``like``, the same keys and shapes as ``like``."""
    if isinstance(tree, dict):
        if like is not None:
            if not isinstance(like, dict) or set(tree) != set(like):
                extra = sorted(map(str, set(tree) - set(like or {})))
                missing = sorted(map(str, set(like or {}) - set(tree)))
                raise ValueError(f"`{name}` must have the keys of `params`; missing {missing}, unexpected {extra}")
        return {k: _checked_tree(v, None if like is None else like[k], f"{name}['{k}']") for k, v in tree.items()}
    if like is not None and isinstance(like, dict):
        raise TypeError(f"`{name}` must be a dict like `params`; got {_checks._describe(tree)}")
    arr = _checks.as_float_array(tree, name)
    if like is not None and arr.shape != like.shape:
        raise ValueError(f"`{name}` must have the shape of `params` {like.shape}; got {arr.shape}")
    return arr


def sgd_momentum_update(params, grads, velocity=None, *, lr=0.01, momentum=0.9, weight_decay=0.0,
                        max_grad_norm=None):
    """One step of SGD with momentum, PyTorch's formulation (returns new dicts; nothing is modified).

    ``v <- momentum * v + (g + weight_decay * p)``; ``p <- p - lr * v`` (torch.optim.SGD with
    dampening 0, nesterov False). With ``max_grad_norm`` the gradients are first scaled so that
    their global L2 norm is at most that value (``torch.nn.utils.clip_grad_norm_``).

    Returns
    -------
    params, velocity : nested dicts shaped like ``params``
    """
    lr = _checks.check_positive(lr, "lr")
    mom = _checks.check_probability(momentum, "momentum")
    wd = _checks.check_positive(weight_decay, "weight_decay", strict=False)
    params = _checked_tree(params, None, "params")
    grads = _checked_tree(grads, params, "grads")
    if max_grad_norm is not None:
        max_grad_norm = _checks.check_positive(max_grad_norm, "max_grad_norm")
    if velocity is None:
        velocity = _tree_map(np.zeros_like, params)
    else:
        velocity = _checked_tree(velocity, params, "velocity")
    scale = 1.0
    if max_grad_norm is not None:
        leaves = []
        _tree_map(lambda g: leaves.append(float(np.sum(np.square(g, dtype=np.float64)))), grads)
        norm = math.sqrt(sum(leaves))
        if norm > max_grad_norm:
            scale = max_grad_norm / (norm + 1e-6)

    def step_v(p, g, v):
        return (mom * v + (scale * g + wd * p)).astype(p.dtype)

    new_v = _tree_map(step_v, params, grads, velocity)
    new_p = _tree_map(lambda p, v: (p - lr * v).astype(p.dtype), params, new_v)
    return new_p, new_v


# ----------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------

class Detector:
    """A detector's configuration and its pure functions (no state changes after construction).

    Parameters
    ----------
    model : {"retinanet", "rpn", "ssd", "yolo", "faster_rcnn"} or DetectorConfig
        ``"faster-rcnn"`` is accepted for ``"faster_rcnn"``.
    **overrides : fields of :class:`DetectorConfig`
    """

    def __init__(self, model="retinanet", **overrides):
        if isinstance(model, DetectorConfig):
            cfg = model._replace(**overrides)
        else:
            model = ALIASES.get(model, model) if isinstance(model, str) else model
            _checks.check_choice(model, "model", MODELS)
            cfg = _default_config(model)._replace(**overrides)
        if isinstance(cfg.model, str) and cfg.model in ALIASES:
            cfg = cfg._replace(model=ALIASES[cfg.model])
        _checks.check_choice(cfg.model, "model", MODELS)
        self.config = cfg
        h, w = (int(v) for v in _checks.check_image_size(cfg.image_size))
        self.image_size = (h, w)
        n_stages = len(cfg.backbone_channels)
        sizes = [(h, w)]
        for _ in range(n_stages):  # 3x3 stride-2 pad-1 convs: floor((n - 1) / 2) + 1
            sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))
        self.stage_sizes = sizes[1:]
        if cfg.model == "retinanet":
            # backbone stages 1..3 (strides 4, 8, 16) feed the FPN; P6, P7 by stride-2 convs from C5
            self.in_stages = [1, 2, 3]
            f = list(self.stage_sizes[1:])
            for _ in range(2):
                f.append(((f[-1][0] - 1) // 2 + 1, (f[-1][1] - 1) // 2 + 1))
            self.feature_sizes = f
            self.strides = [4, 8, 16, 32, 64]
        elif cfg.model == "rpn":
            self.in_stages = [2]
            self.feature_sizes = [self.stage_sizes[2]]
            self.strides = [8]
        elif cfg.model == "faster_rcnn":
            # stages 1..3 (strides 4, 8, 16) feed the FPN; a stride-32 level by max-pooling P4 (the RPN's
            # only: RoIAlign pools the first three), torchvision's LastLevelMaxPool
            self.frcnn = _frcnn.check_config(cfg)
            self.in_stages = [1, 2, 3]
            f = list(self.stage_sizes[1:])
            f.append(((f[-1][0] - 1) // 2 + 1, (f[-1][1] - 1) // 2 + 1))    # max_pool2d(kernel 1, stride 2)
            self.feature_sizes = f
            self.strides = [4, 8, 16, 32]
        elif cfg.model == "yolo":
            # ultralytics' P3-P5 scaled to 64-pixel images: backbone stages 1..3 (strides 4, 8, 16)
            # feed the FPN; no extra levels
            self.in_stages = [1, 2, 3]
            self.feature_sizes = list(self.stage_sizes[1:])
            self.strides = [4, 8, 16]
        else:
            self.in_stages = [1, 2, 3]
            self.feature_sizes = list(self.stage_sizes[1:])
            self.strides = [4, 8, 16]
        if cfg.model == "yolo":
            self.reg_max = _checks.check_int(cfg.reg_max, "reg_max", low=1)
            # one anchor point per cell, at its centre, in grid units; N = sum_l H_l W_l
            pts, st = make_anchors(self.feature_sizes, self.strides, dtype=np.float64, image_size=self.image_size)
            self.anchor_points_grid = pts                       # (N, 2) grid units (the loss's)
            self.stride_tensor = st                             # (N, 1)
            self.anchors = pts * st                             # (N, 2) pixels: (x + 0.5) * stride
            self.anchor_level = np.repeat(np.arange(len(self.strides)), [h * w for h, w in self.feature_sizes])
            self.num_anchors = [1] * len(self.feature_sizes)
            return
        if len(cfg.anchor_sizes) < len(self.feature_sizes):
            raise ValueError(f"`anchor_sizes` must give one entry per level ({len(self.feature_sizes)}); "
                             f"got {len(cfg.anchor_sizes)}")
        anchor_sizes = [tuple(s) for s in cfg.anchor_sizes[:len(self.feature_sizes)]]
        if cfg.model == "ssd":
            self.anchors = self._ssd_boxes(anchor_sizes)
            self.num_anchors = [2 + 2 * 1] * len(self.feature_sizes)
        else:
            self.anchors, self.anchor_level = pyramid_anchors(
                self.image_size, self.feature_sizes, self.strides, anchor_sizes,
                list(cfg.aspect_ratios), center_offset=0.5)
            self.num_anchors = [len(s) * len(cfg.aspect_ratios) for s in anchor_sizes]

    # -- anchors --------------------------------------------------------------------------------
    def _ssd_boxes(self, anchor_sizes):
        # Caffe PriorBox style: min size square, sqrt(min*max) square, then ratio 2 and 1/2
        h, w = self.image_size
        scales = [s[0] / w for s in anchor_sizes] + [anchor_sizes[-1][-1] / w]
        boxes = ssd_default_boxes(self.image_size, self.feature_sizes, scales=scales,
                                  aspect_ratios=[[2]] * len(self.feature_sizes), steps=self.strides, clip=True)
        return np.asarray(boxes, dtype=np.float64)

    # -- parameters ------------------------------------------------------------------------------
    def init(self, *, rng=None, dtype=np.float32):
        """Fresh parameters: ``{"backbone": ..., "fpn": ..., "head": ...}`` (the RPN and SSD have no FPN;
        Faster R-CNN: ``{"backbone", "fpn", "rpn", "roi_heads"}``, :func:`refdet.faster_rcnn.init`)."""
        rng = _checks.as_rng(rng)
        dtype = _checks.check_float_dtype(dtype)
        cfg = self.config
        if cfg.model == "faster_rcnn":
            return _frcnn.init(self, rng=rng, dtype=dtype)
        # only the stages that feed a level (the RPN reads stage 2 and does not need stage 3)
        used = cfg.backbone_channels[:max(self.in_stages) + 1]
        params = {"backbone": backbone_init(used, rng=rng, dtype=dtype)}
        in_ch = [cfg.backbone_channels[i] for i in self.in_stages]
        if cfg.model == "retinanet":
            params["fpn"] = fpn_init(in_ch, cfg.fpn_channels, extra_blocks="p6p7", rng=rng, dtype=dtype)
            params["head"] = retinanet_head_init(cfg.fpn_channels, self.num_anchors[0], cfg.num_classes, rng=rng,
                                                 num_convs=cfg.head_convs, dtype=dtype)
        elif cfg.model == "rpn":
            params["head"] = rpn_head_init(in_ch[0], self.num_anchors[0], rng=rng, dtype=dtype)
        elif cfg.model == "yolo":
            params["fpn"] = fpn_init(in_ch, cfg.fpn_channels, extra_blocks="none", rng=rng, dtype=dtype)
            params["head"] = yolo_head_init(cfg.fpn_channels, cfg.num_classes, num_levels=len(self.strides),
                                            reg_max=self.reg_max, strides=self.strides,
                                            image_size=max(self.image_size), rng=rng, dtype=dtype)
        else:
            params["head"] = ssd_head_init(in_ch, self.num_anchors, cfg.num_classes + 1, rng=rng, dtype=dtype)
        return params

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, params, images):
        """images (B, 3, H, W) -> (cls (B, N, K'), box (B, N, 4), cache).

        ``box`` holds the box deltas of an anchor, or for ``"yolo"`` the (B, N, 4 * reg_max) DFL
        logits of an anchor point (side-major). ``"faster_rcnn"``: the RPN's objectness (B, N, 1) and
        deltas over every anchor (the first stage; :func:`refdet.faster_rcnn.forward`), and a
        :class:`refdet.faster_rcnn.FasterRCNNCache` that also holds the FPN levels."""
        x = self._images(images)
        cfg = self.config
        if cfg.model == "faster_rcnn":
            return _frcnn.forward(self, params, x)
        self._check_params(params)
        feats, bcache = backbone_forward(params["backbone"], x)
        inputs = [feats[i] for i in self.in_stages]
        fcache = None
        if cfg.model == "retinanet":
            levels, fcache = fpn_forward(params["fpn"], inputs, extra_blocks="p6p7")
            out, hcache = retinanet_head_forward(params["head"], levels)
            cls = flatten_head_output(out.cls_logits, self.num_anchors)
            box = flatten_head_output(out.bbox_deltas, self.num_anchors)
        elif cfg.model == "yolo":
            levels, fcache = fpn_forward(params["fpn"], inputs, extra_blocks="none")
            out, hcache = yolo_head_forward(params["head"], levels)
            cls = flatten_head_output(out.cls, 1)              # (B, N, K): ultralytics preds["scores"].T
            box = flatten_head_output(out.box, 1)              # (B, N, 4 reg_max): preds["boxes"].T
        elif cfg.model == "rpn":
            levels = inputs
            out, hcache = rpn_head_forward(params["head"], levels[0])
            cls = flatten_head_output(out.objectness, self.num_anchors[0])
            box = flatten_head_output(out.deltas, self.num_anchors[0])
        else:
            levels = inputs
            out, hcache = ssd_head_forward(params["head"], levels)
            cls = flatten_head_output(out.cls_logits, self.num_anchors)
            box = flatten_head_output(out.bbox_deltas, self.num_anchors)
        cache = (bcache, fcache, hcache, [lv.shape for lv in levels])
        return cls, box, cache

    def _images(self, images):
        x = _checks.as_nchw(images, "images")
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"`images` must have shape (B, 3, {self.image_size[0]}, {self.image_size[1]}); "
                             f"got {x.shape}")
        return x

    def backward(self, dcls, dbox, cache):
        """Gradients of the parameters from the gradients of the flattened head outputs.

        ``"faster_rcnn"``: of the RPN outputs only (no ``"roi_heads"`` entry); the whole step's
        gradients come from :meth:`loss_and_grads`."""
        cfg = self.config
        if cfg.model == "faster_rcnn":
            return _frcnn.backward(self, dcls, dbox, None, cache)
        bcache, fcache, hcache, shapes = cache
        sizes = [s[2:] for s in shapes]
        grads = {}
        if cfg.model == "retinanet":
            dc = unflatten_head_output(dcls, self.num_anchors, sizes)
            db = unflatten_head_output(dbox, self.num_anchors, sizes)
            grads["head"], dlevels = retinanet_head_backward(RetinaNetHeadOutput(dc, db), hcache)
            grads["fpn"], dinputs = fpn_backward(dlevels, fcache)
        elif cfg.model == "yolo":
            dc = unflatten_head_output(dcls, 1, sizes)
            db = unflatten_head_output(dbox, 1, sizes)
            grads["head"], dlevels = yolo_head_backward(YOLOHeadOutput(db, dc), hcache)
            grads["fpn"], dinputs = fpn_backward(dlevels, fcache)
        elif cfg.model == "rpn":
            dc = unflatten_head_output(dcls, self.num_anchors[0], sizes[0])
            db = unflatten_head_output(dbox, self.num_anchors[0], sizes[0])
            grads["head"], dfeat = rpn_head_backward(RPNHeadOutput(dc, db), hcache)
            dinputs = [dfeat]
        else:
            dc = unflatten_head_output(dcls, self.num_anchors, sizes)
            db = unflatten_head_output(dbox, self.num_anchors, sizes)
            grads["head"], dinputs = ssd_head_backward(SSDHeadOutput(dc, db), hcache)
        dfeats = [None] * len(bcache)
        for i, d in zip(self.in_stages, dinputs):
            dfeats[i] = d
        grads["backbone"], _ = backbone_backward(dfeats, bcache)
        return grads

    # -- targets ---------------------------------------------------------------------------------
    def _check_params(self, params):
        """``{"backbone", "head"}`` (+ ``"fpn"`` for RetinaNet and YOLO) dicts, as :meth:`init` returns."""
        want = ("backbone", "fpn", "head") if self.config.model in ("retinanet", "yolo") else ("backbone", "head")
        if not isinstance(params, dict):
            raise TypeError(f"`params` must be the dict init() returns (keys {want}); got {_checks._describe(params)}")
        missing = [k for k in want if k not in params]
        extra = [k for k in params if k not in want]
        if missing or extra:
            raise ValueError(f"`params` must have the keys {want}; missing {missing}, unexpected {extra}")
        for k in want:
            if not isinstance(params[k], dict):
                raise TypeError(f"`params['{k}']` must be a dict of arrays; got {_checks._describe(params[k])}")
        _check_backbone(params["backbone"], "params['backbone']")

    def _check_targets(self, targets, b):
        if not isinstance(targets, (list, tuple)) or len(targets) != b:
            raise ValueError(f"`targets` must be a list of {b} (boxes, labels) pairs; got "
                             f"{type(targets).__name__} of length {len(targets) if hasattr(targets, '__len__') else '?'}")
        out = []
        k = self.config.num_classes
        for i, t in enumerate(targets):
            if not isinstance(t, (list, tuple)) or len(t) != 2:
                raise TypeError(f"`targets[{i}]` must be a (boxes, labels) pair; got {_checks._describe(t)}")
            bx = _checks.as_boxes(t[0], f"targets[{i}] boxes", dtype=np.float64)
            # the RPN is class-agnostic: any class id is an "object"
            high = None if self.config.model == "rpn" else k - 1
            lb = _checks.as_int_labels(t[1], f"targets[{i}] labels", n=len(bx), low=0, high=high)
            out.append((bx, lb))
        return out

    def _pad_targets(self, targets, dtype):
        """Checked (boxes, labels) pairs -> padded ``(labels (B, M), boxes (B, M, 4), mask (B, M))``."""
        b = len(targets)
        m = max([len(t[0]) for t in targets] + [0])
        labels = np.zeros((b, m), np.int64)
        boxes = np.zeros((b, m, 4), dtype)
        mask = np.zeros((b, m), bool)
        for i, (bx, lb) in enumerate(targets):
            labels[i, :len(lb)] = lb
            boxes[i, :len(bx)] = bx
            mask[i, :len(bx)] = True
        return labels, boxes, mask

    def _yolo_assign(self, cls, box, targets):
        """TAL on detached predictions (cls (B, N, K) logits, box (B, N, 4R) DFL logits)."""
        dt = cls.dtype
        gl, gb, gm = self._pad_targets(targets, dt)
        ap = self.anchor_points_grid.astype(dt)
        st = self.stride_tensor.astype(dt)
        pbox, _ = dfl_decode_forward(box, ap, reg_max=self.reg_max, out_fmt="xyxy")     # grid units
        scores, _ = yolo_sigmoid(cls)                  # the v8 loss's own sigmoid: the same bits
        return task_aligned_assign(scores, pbox * st, ap * st, gl, gb, gm, strides=self.strides,
                                   convention="ultralytics", **YOLO_TAL)

    def assign(self, targets, *, rng=None, params=None, images=None):
        """Per-anchor training targets for a batch, from :mod:`refdet.targets` (:mod:`refdet.yolo`).

        ``"yolo"``: task-aligned assignment depends on the predictions, so ``params`` and ``images``
        are required; returns the :class:`refdet.yolo.Assignment` (B, N) that the v8 loss computes
        from the detached predictions (ultralytics ``v8DetectionLoss``: ``TaskAlignedAssigner(topk=10,
        alpha=0.5, beta=6)`` on ``sigmoid(scores)``, the DFL-decoded boxes and the anchor points in
        pixels; the strict centre-in-box test after enlarging boxes smaller than ``strides[1]``).
        The other models:

        Returns ``(LossTargets(labels (B, N), deltas (B, N, 4)), pos_mask (B, N), neg_mask (B, N))``
        in the encoding the model's loss reads:

        * RetinaNet (``retinanet_targets``): 0.5 / 0.4 with low-quality matches (torchvision);
          labels = class of the matched gt, ``K`` background, -1 ignored (between the thresholds).
        * RPN (``rpn_targets``): 0.7 / 0.3 with low-quality matches, anchors crossing the border
          ignored (``allowed_border=0``, py-faster-rcnn), 256 anchors sampled per image with at most
          128 positives; labels 1 / 0 / -1 and the sampled masks.
        * SSD (``ssd_targets``): 0.5 plus the best default box of every gt (torchvision
          SSDMatcher); labels 1 + class, 0 background; deltas with weights (10, 10, 5, 5).

        ``"faster_rcnn"``: needs ``params`` and ``images`` too (the proposals come from the RPN's
        outputs); returns the :class:`refdet.faster_rcnn.FasterRCNNAssignment` of the step: the RPN
        targets as above (torchvision: every anchor takes part, 256 sampled per image), the training
        proposals and the sampled RoIs (:func:`refdet.roi_heads.sample_rois`, gt boxes appended,
        IoU >= 0.5 foreground, at most 25 % of ``box_batch_size_per_image``). ``rng`` draws both samples.
        """
        cfg = self.config
        rng = _checks.as_rng(rng)
        if cfg.model == "faster_rcnn":
            if params is None or images is None:
                raise ValueError("model 'faster_rcnn' samples RoIs from its proposals: pass `params` and `images`")
            x = self._images(images)
            return _frcnn.assign(self, params, x, self._check_targets(targets, x.shape[0]), rng=rng)
        if cfg.model == "yolo":
            if params is None or images is None:
                raise ValueError("model 'yolo' assigns targets from its predictions: pass `params` and `images`")
            x = _checks.as_nchw(images, "images")
            cls, box, _ = self.forward(params, x)
            return self._yolo_assign(cls, box, self._check_targets(targets, x.shape[0]))
        n = len(self.anchors)
        targets = _checks.check_sequence(targets, "targets", "a list of (boxes, labels) pairs")
        targets = self._check_targets(targets, len(targets))
        b = len(targets)
        labels = np.empty((b, n), dtype=np.int64)
        deltas = np.zeros((b, n, 4), dtype=np.float64)
        pos_mask = np.zeros((b, n), dtype=bool)
        neg_mask = np.zeros((b, n), dtype=bool)
        for i, (gtb, gtl) in enumerate(targets):  # a loop over images; anchors are vectorised
            if cfg.model == "retinanet":
                t = retinanet_targets(self.anchors, gtb, gtl, cfg.num_classes, level=self.anchor_level)
                labels[i] = t.labels
                deltas[i] = t.deltas
                pos_mask[i] = t.foreground
                neg_mask[i] = t.valid & ~t.foreground
            elif cfg.model == "rpn":
                t = rpn_targets(self.anchors, gtb, self.image_size, level=self.anchor_level, rng=rng,
                                allowed_border=0)
                labels[i] = t.labels
                deltas[i] = t.deltas
                pos_mask[i] = t.pos_mask
                neg_mask[i] = t.neg_mask
            else:
                t = ssd_targets(self.anchors, gtb, gtl + 1)
                labels[i] = t.labels
                deltas[i] = t.deltas
                pos_mask[i] = t.foreground
                neg_mask[i] = t.labels == 0
        return LossTargets(labels, deltas), pos_mask, neg_mask

    # -- training ---------------------------------------------------------------------------------
    def loss_and_grads(self, params, images, targets, *, rng=None, assignment=None):
        """(losses dict, grads, Trace). ``losses["total"]`` is what the gradients differentiate.

        ``assignment``: the result of :meth:`assign` for these targets, to skip recomputing it (the
        targets do not depend on the parameters, so a training loop may assign each image once).
        ``"yolo"``: the targets *do* depend on the parameters (task-aligned assignment of the detached
        predictions, every step); an ``assignment`` (:class:`refdet.yolo.Assignment`) holds them
        fixed, as a gradient check must. Its losses are ultralytics' items ``box``, ``cls``, ``dfl``
        (after the gains 7.5, 0.5, 1.5) and ``total = B * (box + cls + dfl)``, the quantity
        ultralytics backpropagates; the Trace carries the step's assignment and the loss cache.
        ``"faster_rcnn"``: :func:`refdet.faster_rcnn.loss_and_grads`: losses ``objectness``,
        ``rpn_box_regression``, ``classification``, ``box_regression`` and their sum ``total``;
        ``assignment`` (a :class:`refdet.faster_rcnn.FasterRCNNAssignment`) holds the RPN targets, the
        proposals and the sampled RoIs fixed; the Trace carries the step's assignment and the FPN level
        each sampled RoI was pooled from.
        """
        x = self._images(images)
        if self.config.model == "yolo":
            return self._yolo_loss_and_grads(params, x, targets, assignment)
        if self.config.model == "faster_rcnn":
            return self._frcnn_loss_and_grads(params, x, targets, rng, assignment)
        if assignment is None:
            tgt = self._check_targets(targets, x.shape[0])
            lt, pos_mask, neg_mask = self.assign(tgt, rng=rng)
        else:
            if not isinstance(assignment, tuple) or len(assignment) != 3:
                raise TypeError("`assignment` must be the (LossTargets, pos_mask, neg_mask) returned by assign()")
            lt, pos_mask, neg_mask = assignment
            if lt.labels.shape != (x.shape[0], len(self.anchors)):
                raise ValueError(f"`assignment` labels must have shape ({x.shape[0]}, {len(self.anchors)}); "
                                 f"got {lt.labels.shape}")
        cls, box, cache = self.forward(params, x)
        dt = cls.dtype
        lt = LossTargets(lt.labels, lt.deltas.astype(dt))
        cfg = self.config
        if cfg.model == "retinanet":
            l, lc = retinanet_loss_forward(cls, box, lt)
            g = retinanet_loss_backward((np.ones((), dt), np.ones((), dt)), lc)
            dcls, dbox = g.dcls_logits, g.dbox_deltas
            losses = {"classification": float(l.classification), "box_regression": float(l.box_regression)}
        elif cfg.model == "rpn":
            l, lc = rpn_loss_forward(cls[..., 0], box, lt, pos_mask=pos_mask, neg_mask=neg_mask)
            g = rpn_loss_backward((np.ones((), dt), np.ones((), dt)), lc)
            dcls, dbox = g.dobjectness[..., None], g.ddeltas
            losses = {"objectness": float(l.objectness), "box_regression": float(l.box_regression)}
        else:
            l, lc = multibox_loss_forward(cls, box, lt)
            g = multibox_loss_backward((np.ones((), dt), np.ones((), dt)), lc)
            dcls, dbox = g.dconf_logits, g.dloc_deltas
            losses = {"classification": float(l.classification), "box_regression": float(l.box_regression)}
        losses["total"] = float(sum(losses.values()))
        grads = self.backward(dcls.astype(dt), dbox.astype(dt), cache)
        trace = Trace(feature_shapes=cache[3], anchors_per_level=[int(np.prod(s)) * a for s, a in
                                                                 zip(self.feature_sizes, self.num_anchors)],
                      num_positive=int(pos_mask.sum()), num_negative=int(neg_mask.sum()),
                      num_ignored=int(pos_mask.size - pos_mask.sum() - neg_mask.sum()))
        return losses, grads, trace

    def _frcnn_loss_and_grads(self, params, x, targets, rng, assignment):
        tgt = self._check_targets(targets, x.shape[0])
        losses, grads, (a, roi_levels, cache) = _frcnn.loss_and_grads(self, params, x, tgt, rng=rng,
                                                                      assignment=assignment)
        _, pos, neg = a.rpn
        trace = Trace(feature_shapes=cache.level_shapes, anchors_per_level=_frcnn._counts(self),
                      num_positive=int(pos.sum()), num_negative=int(neg.sum()),
                      num_ignored=int(pos.size - pos.sum() - neg.sum()), assignment=a, roi_levels=roi_levels)
        return losses, grads, trace

    def _yolo_loss_and_grads(self, params, x, targets, assignment):
        tgt = self._check_targets(targets, x.shape[0])
        if assignment is not None and not isinstance(assignment, Assignment):
            raise TypeError(f"`assignment` must be the refdet.yolo.Assignment returned by assign(); got "
                            f"{type(assignment).__name__}")
        cls, box, cache = self.forward(params, x)
        dt = cls.dtype
        gl, gb, gm = self._pad_targets(tgt, dt)
        loss, lc = v8_detection_loss_forward(box, cls, self.anchor_points_grid.astype(dt),
                                             self.stride_tensor.astype(dt), gl, gb, gm, reg_max=self.reg_max,
                                             strides=self.strides, image_size=self.image_size,
                                             assignment=assignment, **YOLO_TAL)
        g = v8_detection_loss_backward(np.ones((), dt), lc)
        grads = self.backward(g.dpred_scores.astype(dt), g.dpred_dist.astype(dt), cache)
        a = lc.parts["assignment"]
        n_pos = int(a.fg_mask.sum())
        losses = {"box": float(loss.box), "cls": float(loss.cls), "dfl": float(loss.dfl), "total": float(loss.loss)}
        trace = Trace(feature_shapes=cache[3], anchors_per_level=[h * w for h, w in self.feature_sizes],
                      num_positive=n_pos, num_negative=int(a.fg_mask.size) - n_pos, num_ignored=0,
                      assignment=a, loss_cache=lc)
        return losses, grads, trace

    def train_step(self, params, images, targets, *, rng=None, assignment=None):
        """Forward, targets, loss and backward for one batch: ``(losses, grads)``.

        ``assignment`` (optional): precomputed :meth:`assign` output for ``targets``.
        """
        losses, grads, _ = self.loss_and_grads(params, images, targets, rng=rng, assignment=assignment)
        return losses, grads

    # -- inference --------------------------------------------------------------------------------
    def detect(self, params, images, *, score_threshold=0.05, nms_threshold=0.5, topk_candidates=1000,
               detections_per_image=100):
        """Detections per image: a list of ``(boxes (D, 4), scores (D,), labels (D,))``.

        RetinaNet and RPN: :func:`refdet.postprocess.postprocess_detections` (torchvision's inference: per
        level the top ``topk_candidates`` scores above ``score_threshold``, decode against the
        anchors, clip to the image, class-aware NMS at ``nms_threshold`` — for the RPN NMS per level
        at 0.7 and an inclusive score threshold of 0 — and the first ``detections_per_image``).
        SSD (torchvision ``SSD.postprocess_detections``): softmax over the K + 1 classes, per class
        the top ``topk_candidates`` scores above ``score_threshold``, decode with weights
        (10, 10, 5, 5), clip, class-aware NMS.
        YOLO: :meth:`yolo_predictions` (ultralytics ``Detect`` inference output), then
        :func:`refdet.yolo.yolo_non_max_suppression` (``conf_thres = score_threshold`` strict,
        ``iou_thres = nms_threshold``, ``max_nms = topk_candidates``, ``max_det =
        detections_per_image``; class-aware by the ``max_wh`` offset trick), then the boxes clipped to
        the image (ultralytics' predictor does so in ``scale_boxes``).
        Faster R-CNN: :func:`refdet.faster_rcnn.detect` (test-time proposals, RoIAlign, the box head,
        torchvision's ``postprocess_detections``; ``topk_candidates`` is not used: the configuration's
        ``rpn_pre_nms_top_n`` / ``rpn_post_nms_top_n`` play its part).
        """
        # every option checked, whichever model uses it (the RPN keeps torchvision's own thresholds)
        score_threshold = _checks.check_unit_threshold(score_threshold, "score_threshold",
                                                       source="the scores are probabilities")
        nms_threshold = _checks.check_unit_threshold(nms_threshold, "nms_threshold")
        topk_candidates = _checks.check_int(topk_candidates, "topk_candidates", low=0)
        detections_per_image = _checks.check_int(detections_per_image, "detections_per_image", low=0)
        cfg = self.config
        if cfg.model == "faster_rcnn":
            return _frcnn.detect(self, params, self._images(images), score_threshold=score_threshold,
                                 nms_threshold=nms_threshold, detections_per_image=detections_per_image)
        if cfg.model == "yolo":
            return self._yolo_detect(params, images, score_threshold, nms_threshold, topk_candidates,
                                     detections_per_image)
        cls, box, _ = self.forward(params, images)
        out = []
        counts = [h * w * a for (h, w), a in zip(self.feature_sizes, self.num_anchors)]
        cuts = np.cumsum(counts)[:-1]
        anchors = np.split(self.anchors, cuts)
        for i in range(cls.shape[0]):
            logits = cls[i].astype(np.float64)
            deltas = box[i].astype(np.float64)
            if cfg.model != "ssd":
                kw = dict(score_threshold=score_threshold, nms_threshold=nms_threshold) \
                    if cfg.model == "retinanet" else {}
                d = postprocess_detections(np.split(logits, cuts), np.split(deltas, cuts), anchors,
                                           self.image_size, style=cfg.model, topk_candidates=topk_candidates,
                                           detections_per_image=detections_per_image, **kw)
                out.append((d.boxes, d.scores, d.labels))
                continue
            z = logits - logits.max(axis=1, keepdims=True)
            p = np.exp(z)
            scores = (p / p.sum(axis=1, keepdims=True))[:, 1:]  # (N, K) without the background
            k = scores.shape[1]
            flat = scores.ravel()  # flat index anchor * K + class
            cand = np.flatnonzero(flat > score_threshold)
            label = cand % k
            # per class the top-k candidates (stable: lower index first on ties)
            order = np.lexsort((-flat[cand], label))
            cand, label = cand[order], label[order]
            rank = np.arange(len(cand)) - np.searchsorted(label, label)
            keep = rank < topk_candidates
            cand, label = cand[keep], label[keep]
            a = cand // k
            boxes = clip_boxes_to_image(decode_boxes(deltas[a], self.anchors[a], weights=(10, 10, 5, 5)),
                                        self.image_size)
            sc = flat[cand]
            keep = batched_nms(boxes, sc, label, nms_threshold)[:detections_per_image]
            out.append((boxes[keep], sc[keep], label[keep]))
        return out

    # -- YOLO inference ----------------------------------------------------------------------------
    def yolo_predictions(self, params, images):
        """ultralytics ``Detect`` inference output ``(B, 4 + K, N)``: per anchor point the DFL-decoded
        box ``(cx, cy, w, h)`` in pixels and the class probabilities ``sigmoid(logits)`` (float64).

        ``dist2bbox(DFL(box logits), anchor_points, xywh=True) * strides``
        (:func:`refdet.yolo.dfl_decode_forward`), concatenated with the scores on the channel axis.
        """
        if self.config.model != "yolo":
            raise ValueError(f"yolo_predictions needs model 'yolo'; this detector is {self.config.model!r}")
        cls, box, _ = self.forward(params, images)
        cls, box = cls.astype(np.float64), box.astype(np.float64)
        boxes, _ = dfl_decode_forward(box, self.anchor_points_grid, self.stride_tensor, reg_max=self.reg_max,
                                      out_fmt="cxcywh")
        scores = layers.sigmoid_forward(cls)[0]
        return np.concatenate([boxes, scores], axis=-1).transpose(0, 2, 1)

    def _yolo_detect(self, params, images, score_threshold, nms_threshold, topk_candidates, detections_per_image):
        pred = self.yolo_predictions(params, images)
        rows = yolo_non_max_suppression(pred, score_threshold, nms_threshold, max_det=detections_per_image,
                                        nc=self.config.num_classes, max_nms=topk_candidates,
                                        convention="ultralytics")
        out = []
        for r in rows:
            boxes = clip_boxes_to_image(r[:, :4], self.image_size)
            out.append((boxes, r[:, 4].copy(), r[:, 5].astype(np.int64)))
        return out
