"""Other runtimes' detection operators, reproduced in NumPy: OpenCV dnn and OpenVINO (issue 15).

Each module reproduces one runtime's operators exactly as that runtime defines them (its own
box arithmetic, tie rules and threshold comparisons, with the source file named in every
docstring), so that ``refdet verify opencv`` / ``refdet verify openvino`` and the conformance checks
of :mod:`refdet.testing.conformance_runtimes` can compare the runtime op by op and explain a
mismatch by naming the variant. The runtimes themselves are optional (``pip install
'refdet[opencv]'``, ``'refdet[openvino]'``) and are never imported here: these modules need NumPy
only.

:mod:`refdet.runtimes.opencv`
    ``cv2.dnn.NMSBoxes`` (int and float rects), ``NMSBoxesBatched``, ``softNMSBoxes``,
    ``blobFromImage``.
:mod:`refdet.runtimes.openvino`
    OpenVINO opset operators: NonMaxSuppression-9, PriorBox, PriorBoxClustered, FakeQuantize,
    ROIAlign.
"""
from __future__ import annotations
