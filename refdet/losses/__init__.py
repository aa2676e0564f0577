"""Detection losses as forward/backward pairs: cross entropy, focal, smooth L1, IoU losses and the
composed RPN / RetinaNet / SSD (MultiBox) losses with every framework's normalisation.

The package has three parts:

* :mod:`refdet.losses.elementwise`: BCE with logits, softmax cross entropy, the sigmoid and softmax
  focal losses, smooth L1 and L1.
* :mod:`refdet.losses.box`: the GIoU / DIoU / CIoU losses of matched box pairs.
* :mod:`refdet.losses.detector`: the composed RPN, RetinaNet and SSD (MultiBox) losses, each with
  its framework's normaliser.

Every public name is importable from ``refdet.losses`` (and from ``refdet``). The readable versions
of the element-wise losses (BCE, smooth L1, the focal loss and its gradient as the paper's terms) are
in :mod:`refdet.reference.losses`; the box losses are ``1 - value`` of :mod:`refdet.iou`'s paired
family, whose formulas per pair are in :mod:`refdet.reference.iou`.

Every loss has the CS231n shape::

    loss, cache = sigmoid_focal_loss_forward(logits, targets, alpha=0.25, gamma=2.0)
    grads = sigmoid_focal_loss_backward(dloss, cache)      # FocalGrads(dlogits)

``dloss`` has the shape of ``loss`` (a scalar for ``reduction="mean"``/``"sum"``, the elementwise
shape for ``"none"``). The gradients are NamedTuples with one field per differentiable input; the
caches are NamedTuples too. Nothing is stored between calls: detectron2's EMA loss normaliser is
passed in and returned explicitly (:func:`retinanet_loss_forward`).

Dtypes: float64 in -> float64 math (the oracle answer); float32 in -> float32 math in torch's order
of operations (``(1 - t) * x - log_sigmoid(x)`` for BCE, torchvision's ``ce * (1 - p_t) ** gamma``
for focal loss, ``(C - U) / (C + eps)`` for GIoU ...). Element values then agree with torch float32
to a few ulp, not bit for bit: torch evaluates ``exp``/``log1p`` with SLEEF, NumPy with its own SIMD
kernels, and the two round differently in the last place for ~15 % of inputs. float16 is computed
in float32; integer inputs become float64.

Kinks (documented subgradients, the same as PyTorch autograd):

* ``|d|`` at ``d = 0`` (L1, and smooth L1 with ``beta = 0``): gradient 0.
* ``max(a, b)`` / ``min(a, b)`` with ``a == b`` (box corners in the IoU losses): the gradient is
  split in halves between ``a`` and ``b`` (``torch.maximum``'s backward).
* the intersection of two boxes that only touch: torchvision masks ``iw > 0 and ih > 0``; mmdet
  clamps ``iw`` and ``ih`` at 0, and torch's ``clamp`` backward passes the gradient only strictly
  inside the range, so at ``iw == 0`` the gradient is 0 in both (checked against autograd). The same
  strict rule applies to mmdet's CIoU clamp to [-1, 1].
* hard-negative mining and the IoU > 0.5 gate of mmdet's CIoU are selections, not functions: they are
  held fixed in the backward pass (as torch's ``no_grad``/indexing does).

Sources: torchvision 0.29 ``ops/focal_loss.py``, ``ops/giou_loss.py``, ``ops/diou_loss.py``,
``ops/ciou_loss.py``, ``models/detection/{rpn,retinanet,ssd}.py``; detectron2 ``layers/losses.py``,
``modeling/proposal_generator/rpn.py``, ``modeling/meta_arch/retinanet.py``; mmdet v3
``models/losses/{iou_loss,focal_loss}.py``, ``structures/bbox/bbox_overlaps.py``,
``models/dense_heads/ssd_head.py``; ssd.pytorch ``layers/modules/multibox_loss.py``; Detectron1
``roi_data/retinanet.py``; the Faster R-CNN, SSD, RetinaNet, GIoU and DIoU/CIoU papers.
"""
from __future__ import annotations

from refdet.losses._reduction import REDUCTIONS
from refdet.losses.box import (BoxLossCache, BoxLossGrads, ciou_loss_backward, ciou_loss_forward,
                               diou_loss_backward, diou_loss_forward, giou_loss_backward, giou_loss_forward)
from refdet.losses.detector import (LossTargets, MultiBoxLoss, MultiBoxLossCache, MultiBoxLossGrads, RetinaNetLoss,
                                    RetinaNetLossCache, RetinaNetLossGrads, RPNLoss, RPNLossCache, RPNLossGrads,
                                    multibox_loss_backward, multibox_loss_forward, retinanet_loss_backward,
                                    retinanet_loss_forward, rpn_loss_backward, rpn_loss_forward)
from refdet.losses.elementwise import (BCECache, CECache, FocalCache, LogitGrads, RegressionCache, RegressionGrads,
                                       SoftmaxFocalCache, bce_with_logits_backward, bce_with_logits_forward,
                                       l1_backward, l1_forward, sigmoid_focal_loss_backward,
                                       sigmoid_focal_loss_forward, smooth_l1_backward, smooth_l1_forward,
                                       softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                                       softmax_focal_loss_backward, softmax_focal_loss_forward)

__all__ = [
    "REDUCTIONS",
    "bce_with_logits_forward", "bce_with_logits_backward",
    "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "sigmoid_focal_loss_forward", "sigmoid_focal_loss_backward",
    "softmax_focal_loss_forward", "softmax_focal_loss_backward",
    "smooth_l1_forward", "smooth_l1_backward",
    "l1_forward", "l1_backward",
    "giou_loss_forward", "giou_loss_backward",
    "diou_loss_forward", "diou_loss_backward",
    "ciou_loss_forward", "ciou_loss_backward",
    "rpn_loss_forward", "rpn_loss_backward",
    "retinanet_loss_forward", "retinanet_loss_backward",
    "multibox_loss_forward", "multibox_loss_backward",
    "LossTargets", "RPNLoss", "RetinaNetLoss", "MultiBoxLoss",
    "LogitGrads", "RegressionGrads", "BoxLossGrads", "RPNLossGrads", "RetinaNetLossGrads", "MultiBoxLossGrads",
]
