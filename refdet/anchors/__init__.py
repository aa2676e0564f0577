"""Anchors: cell anchors, grid anchors, feature-pyramid anchors and SSD default boxes.

One module per part: :mod:`refdet.anchors.cell` (templates), :mod:`refdet.anchors.grid` (tiling),
:mod:`refdet.anchors.pyramid` (levels, octaves, the border filter), :mod:`refdet.anchors.ssd` (SSD
default boxes). Every public name is importable from here and from ``refdet``. The readable versions
(loops and formulas, held bit-equal to these by tests) are in :mod:`refdet.reference.anchors`.

Every anchor-based detector does the same two things:

1. **Cell anchors** (:func:`cell_anchors`): ``A`` template boxes centred on the origin, one per
   (size, aspect ratio) pair. Aspect ratio ``r = h / w`` (torchvision, detectron2, mmdet,
   py-faster-rcnn) keeps the area at ``size**2``: ``w = size / sqrt(r)``, ``h = size * sqrt(r)``.
2. **Tiling** (:func:`grid_anchors`): the templates are copied to every cell of an ``H x W`` feature
   map whose cells are ``stride`` pixels apart. Flattened order is **location-major, anchor-minor**:
   row ``(y * W + x) * A + a``, so that a head's ``(A * C, H, W)`` output reshaped to ``(H*W*A, C)``
   lines up with the anchors. :func:`pyramid_anchors` concatenates levels, giving the order
   ``(level, y, x, a)``.

The frameworks disagree on the details (SPEC-conventions §2); each is an explicit keyword here and
the ``convention=`` profile only sets the defaults:

============  =========  ============  ==============================  ========  ==================
profile       ratio      order         rounding                        plus_one  centre of cell 0
============  =========  ============  ==============================  ========  ==================
torchvision   h / w      ratio-major   half sizes, half-to-even        no        0
detectron2    h / w      size-major    none                            no        0 (cfg OFFSET=0.0)
mmdet         h / w      ratio-major   none                            no        0 (center_offset)
caffe         h / w      ratio-major   py-faster-rcnn ws/hs rounding   yes       (stride - 1) / 2
tf            w / h      ratio-major   none                            no        stride/2 if the
                                                                                  image divides
============  =========  ============  ==============================  ========  ==================

``print(refdet.conventions.describe("pyramid_anchors"))`` prints the same table from the registry
(``tests/test_anchors.py`` holds this one equal to it).

Sources: torchvision 0.29.1 ``models/detection/anchor_utils.py`` 58-133; detectron2
``modeling/anchor_generator.py`` 39-55, 181-216; mmdet v3 ``prior_generators/anchor_generator.py``
161-300 and ``LegacyAnchorGenerator`` 641-740; py-faster-rcnn ``lib/rpn/generate_anchors.py`` 37-97 and
``anchor_target_layer.py`` 93-115; Detectron1 ``detectron/modeling/generate_anchors.py``; TF OD API
``anchor_generators/grid_anchor_generator.py`` and ``multiple_grid_anchor_generator.py``; issues
pytorch/vision#1765, facebookresearch/detectron2#378, open-mmlab/mmdetection#1870,
facebookresearch/Detectron#227.

Dtypes: anchors are made from Python numbers, so the output dtype is the keyword ``dtype``
(float64 by default, the oracle answer). ``dtype=np.float32`` computes in float32 in torchvision's
order of operations, so the result equals ``AnchorGenerator`` / ``DefaultBoxGenerator`` bit for bit.
"""
from refdet.anchors.cell import ORDERS, RATIO_DEFS, ROUNDINGS, cell_anchors, faster_rcnn_anchors
from refdet.anchors.grid import grid_anchors
from refdet.anchors.pyramid import CENTER_OFFSETS, anchors_inside_image, octave_sizes, pyramid_anchors
from refdet.anchors.ssd import SSD_LAYOUTS, ssd_default_boxes, ssd_sizes_from_ratios

__all__ = [
    "cell_anchors",
    "grid_anchors",
    "faster_rcnn_anchors",
    "octave_sizes",
    "pyramid_anchors",
    "anchors_inside_image",
    "ssd_sizes_from_ratios",
    "ssd_default_boxes",
]
