"""Other runtimes' detection operators: OpenCV dnn and OpenVINO reproduced in NumPy, and the adapters
that run an installed runtime's operators behind refdet's signatures (issue 15).

The reproductions reproduce each runtime's operators exactly as that runtime defines them (its own
box arithmetic, tie rules and threshold comparisons, with the source file named in every
docstring), so that ``refdet verify opencv`` / ``refdet verify openvino`` / ``refdet verify
tensorflow`` and the conformance checks of :mod:`refdet.testing.conformance_runtimes` and
:mod:`refdet.testing.conformance_tf` can compare the runtime op by op and explain a mismatch by
naming the variant. The runtimes themselves are optional (``pip install 'refdet[opencv]'``,
``'refdet[openvino]'``, ``'refdet[tensorflow]'``) and are imported only when an adapter is built;
the core never imports them.

:mod:`refdet.runtimes.opencv`
    ``cv2.dnn.NMSBoxes`` (int and float rects), ``NMSBoxesBatched``, ``softNMSBoxes``,
    ``blobFromImage``.
:mod:`refdet.runtimes.opencv_ssd`
    SSD's ``PriorBox`` and ``DetectionOutput`` layers as OpenCV dnn runs them.
:mod:`refdet.runtimes.openvino`
    OpenVINO opset operators: NonMaxSuppression-9, PriorBox, PriorBoxClustered, FakeQuantize,
    ROIAlign, ROIPooling, Interpolate.
:mod:`refdet.runtimes.openvino_priors`
    PriorBox and PriorBoxClustered (re-exported by :mod:`refdet.runtimes.openvino`).
:mod:`refdet.runtimes.openvino_detection`
    OpenVINO's Caffe-era detection operators: DetectionOutput (opset 8 / 1),
    ``detection_output`` and ``detection_output_rows``; their CPU-plugin adapters are in
    :mod:`refdet.runtimes.openvino_detection_adapters`.
:mod:`refdet.runtimes.openvino_proposal`
    OpenVINO Proposal (opset 4, py-faster-rcnn's layer and its "tensorflow" variant): ``proposal``,
    ``proposal_anchors``, ``ProposalResult``.
:mod:`refdet.runtimes.openvino_detectron`
    OpenVINO's ExperimentalDetectron* operators (opset 6): ``prior_grid_generator``,
    ``generate_proposals_single_image``, ``detectron_detection_output``, ``detectron_roi_feature_extractor``,
    ``detectron_roi_levels``.
:mod:`refdet.runtimes.openvino_pillow`
    Interpolate's ``bilinear_pillow`` / ``bicubic_pillow`` (what the CPU plugin computes: float32
    taps, fused multiply-adds, ``a = -0.5`` built in), used by ``openvino.interpolate``.
:mod:`refdet.runtimes.tensorflow`
    adapters calling TensorFlow's raw ops (TF's kernels are reproduced in :mod:`refdet.tf_ops`).
"""
from __future__ import annotations
