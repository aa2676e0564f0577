"""Ground-truth and detection records for the eval tests (the columns `evaluate_detections` reads)."""
import numpy as np


def gt_record(boxes, labels, image_id, **kw):
    """Ground truths: boxes (N, 4), labels and image ids (N,), plus any extra columns in ``kw``."""
    d = {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels, np.int64),
         "image_id": np.asarray(image_id, np.int64)}
    d.update(kw)
    return d


def dt_record(boxes, scores, labels, image_id):
    """Detections: boxes (N, 4), scores, labels and image ids (N,)."""
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "scores": np.asarray(scores, float),
            "labels": np.asarray(labels, np.int64), "image_id": np.asarray(image_id, np.int64)}
