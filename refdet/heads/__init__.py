"""Detection heads (RPN, RetinaNet, SSD) as forward/backward pairs, composed from :mod:`refdet.layers`.

A head turns feature maps ``(B, C, H, W)`` into per-location predictions: for every location and
every one of its ``A`` anchors, ``K`` class logits and 4 box deltas, stored in the channels::

    (B, A*K, H, W)      channel  a*K + k      (anchor-major; box deltas: a*4 + j, j = dx, dy, dw, dh)

:func:`flatten_head_output` turns that into one row per anchor, in the order of the anchors of
:func:`refdet.grid_anchors` (``(y, x, a)``: row ``(y*W + x)*A + a``), which is torchvision's
``permute_and_flatten``, detectron2's ``permute_to_N_HWA_K`` and mmdet's ``permute(0, 2, 3, 1)``.

Parameters are plain ``dict``\\ s of arrays whose keys are **torchvision's ``state_dict`` keys**, so a
torchvision head is copied with ``{k: v.detach().numpy() for k, v in head.state_dict().items()}``.
Every forward takes one map (B, C, H, W) or a list of maps (one per pyramid level); RPN and
RetinaNet heads share their weights across levels (parameter gradients are summed over levels), the
SSD head has one pair of convolutions per level. Outputs and input gradients have the same structure
as the features (one array, or a list).

Dtypes: float64 features -> float64 math; float32 features -> float32 math (parameters are cast to
the features' working dtype); float16 is computed in float32. ReLU'(0) = 0 (the subgradient PyTorch
uses). Results do not depend on the memory layout of features, parameters or gradients (the layers
bring their operands to C order).

The package follows the seams of the code:

* :mod:`refdet.heads._common`: the cache, the op-list interpreter that runs any head's program
  forward and backward over levels, feature validation, initialisers;
* :mod:`refdet.heads.rpn`, :mod:`refdet.heads.retinanet`, :mod:`refdet.heads.ssd`: one head each,
  its init, its parameter layout, its program;
* :mod:`refdet.heads.layout`: channels <-> one row per anchor.

Every public name is importable from here (``from refdet.heads import rpn_head_forward``), from
``refdet`` and from its module.

Sources: torchvision 0.29 ``models/detection/rpn.py`` (``RPNHead``), ``retinanet.py``
(``RetinaNetClassificationHead``/``RetinaNetRegressionHead``), ``ssd.py`` (``SSDHead``, ``_xavier_init``);
detectron2 ``StandardRPNHead``, ``RetinaNetHead``; mmdet ``RPNHead``, ``RetinaHead``, ``SSDHead``;
py-faster-rcnn ``models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt`` (``rpn_cls_score``).
"""
from __future__ import annotations

from refdet.heads._common import HeadCache
from refdet.heads.layout import flatten_head_output, unflatten_head_output
from refdet.heads.retinanet import (RETINANET_PRIOR_BIAS, RetinaNetHeadOutput, _retinanet_layout,  # noqa: F401
                                    retinanet_head_backward, retinanet_head_forward, retinanet_head_init)
from refdet.heads.rpn import (RPNHeadOutput, _rpn_layout, rpn_head_backward, rpn_head_forward,  # noqa: F401
                              rpn_head_init)
from refdet.heads.ssd import SSDHeadOutput, ssd_head_backward, ssd_head_forward, ssd_head_init

# (_rpn_layout and _retinanet_layout stay reachable as refdet.heads._*: refdet.exchange and
# refdet.quant_head read a head's parameter layout through them)

__all__ = [
    "RPNHeadOutput",
    "RetinaNetHeadOutput",
    "SSDHeadOutput",
    "HeadCache",
    "RETINANET_PRIOR_BIAS",
    "rpn_head_init",
    "rpn_head_forward",
    "rpn_head_backward",
    "retinanet_head_init",
    "retinanet_head_forward",
    "retinanet_head_backward",
    "ssd_head_init",
    "ssd_head_forward",
    "ssd_head_backward",
    "flatten_head_output",
    "unflatten_head_output",
]
