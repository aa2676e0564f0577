"""The whole Faster R-CNN training step as a gradient-check case (``refdet verify self``,
:func:`refdet.testing.gradcheck_all`), registered when this module is imported: the self-check
(:mod:`refdet._verify_selfcheck`) imports it, as it registers the YOLO step. (It sits above
:mod:`refdet.detector`, which it builds the case with, so :mod:`refdet.faster_rcnn` does not import it.)
"""
from __future__ import annotations

import numpy as np

from refdet._gradcheck_registry import register_gradcheck


class FasterRCNNStepCase:
    """``forward(params, images) -> (loss, grads)`` of a tiny float64 Faster R-CNN (32 x 32 images, two
    per batch) with its :class:`refdet.faster_rcnn.FasterRCNNAssignment` (RPN targets, proposals,
    sampled RoIs) held at the one drawn at the unperturbed parameters: the proposals are constants
    (torchvision detaches them), so the loss is then a smooth function of every parameter.
    ``backward(dloss, grads)`` returns ``dloss * grads``."""
    NAME = "faster_rcnn detector train step (fixed proposals and RoI sample)"

    def __init__(self, det=None, targets=None):
        self.det, self.targets, self.assignment = det, targets, None

    def make(self, rng):
        from refdet.detector import Detector

        if self.det is None:
            self.det = Detector("faster_rcnn", image_size=(32, 32), backbone_channels=(3, 4, 4, 4), fpn_channels=4,
                                anchor_sizes=((4,), (8,), (16,), (32,)), rpn_pre_nms_top_n=(60, 40),
                                rpn_post_nms_top_n=(20, 15), rpn_batch_size_per_image=32, box_batch_size_per_image=8,
                                roi_output_size=2, representation_size=6, canonical_scale=8.0, canonical_level=3)
            self.targets = [(np.array([[2.0, 3, 20, 25], [10, 12, 30, 28]]), np.array([1, 0])),
                            (np.array([[5.0, 6, 18, 14]]), np.array([0]))]
        params = self.det.init(rng=rng, dtype=np.float64)
        for part in params.values():                 # nonzero biases: ReLU inputs off the kink at 0
            for k, v in part.items():
                if k.endswith("bias"):
                    part[k] = v + 0.1 * rng.standard_normal(v.shape)
        images = rng.standard_normal((len(self.targets), 3) + self.det.image_size)
        self.assignment = self.det.assign(self.targets, rng=rng, params=params, images=images)
        return (params, images), {}

    def __call__(self, params, images):
        losses, grads = self.det.train_step(params, images, self.targets, assignment=self.assignment)
        return np.asarray(losses["total"]), grads

    @staticmethod
    def backward(dloss, grads):
        g = float(np.asarray(dloss))
        return {part: {k: v * g for k, v in d.items()} for part, d in grads.items()}, None


_CASE = FasterRCNNStepCase()
register_gradcheck(FasterRCNNStepCase.NAME, _CASE, _CASE.backward, _CASE.make, wrt=["params"], max_elements=1,
                   rtol=1e-5, atol=1e-8)
