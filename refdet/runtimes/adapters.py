"""``refdet verify opencv`` / ``refdet verify openvino``: each runtime's op behind the signature its
conformance check expects (:mod:`refdet.testing.conformance_runtimes`). The runtimes are imported
only when a factory runs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["opencv_adapters"]


def opencv_adapters():
    """``cv2.dnn`` functions in the signatures of the ``check_opencv_*`` checks."""
    import cv2

    methods = {"linear": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_LINEAR, "gaussian": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN}

    def nms(r, s, st, t, eta, k):
        return np.asarray(cv2.dnn.NMSBoxes(r, s, st, t, eta, k)).ravel()

    def batched(r, s, c, st, t, eta, k):
        return np.asarray(cv2.dnn.NMSBoxesBatched(r, s, np.asarray(c, np.int32), st, t, eta, k)).ravel()

    def soft(r, s, st, t, k, sig, m):
        us, ind = cv2.dnn.softNMSBoxes(r, s, st, t, k, sig, methods[m])
        return np.asarray(ind).ravel(), np.asarray(us, np.float32).ravel()

    return {
        "opencv_nms_boxes": dict(fn=nms),
        "opencv_nms_boxes_batched": dict(fn=batched),
        "opencv_soft_nms_boxes": dict(fn=soft),
        "opencv_blob_from_image": dict(fn=lambda img, sf, size, mean, swap, crop: cv2.dnn.blobFromImage(
            img, sf, size, mean, swap, crop)),
    }
