"""RoI operators: RoIAlign, RoI pooling, TF's crop_and_resize, FPN level assignment, multi-scale pooling.

Submodules (every public name is also importable from ``refdet.roi`` and from ``refdet``):

* :mod:`refdet.roi.align`  RoIAlign (torchvision, detectron2, mmcv, ONNX RoiAlign and its evaluators)
* :mod:`refdet.roi.pool`   RoI max pooling (torchvision / Caffe Fast R-CNN)
* :mod:`refdet.roi.crop`   TF ``crop_and_resize`` and the TF Object Detection API's crop-then-max-pool
* :mod:`refdet.roi.levels` which FPN level a RoI is pooled from, and multi-scale RoIAlign

Every operator is a forward/backward pair (``*_forward -> (out, cache)``, ``*_backward(dout, cache)``)
plus a plain function. The readable loop versions are in :mod:`refdet.reference.roi`.
"""
from refdet.roi import align as _align
from refdet.roi import crop as _crop
from refdet.roi import levels as _levels
from refdet.roi import pool as _pool
from refdet.roi.align import *  # noqa: F401,F403
from refdet.roi.crop import *  # noqa: F401,F403
from refdet.roi.levels import *  # noqa: F401,F403
from refdet.roi.pool import *  # noqa: F401,F403

__all__ = list(_align.__all__) + list(_pool.__all__) + list(_crop.__all__) + list(_levels.__all__)

from refdet.roi import _gradchecks  # noqa: E402,F401  (registers the RoI gradient checks)
