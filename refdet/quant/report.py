"""What quantization did to a RetinaNet head: SQNR, logit and box drift, detection agreement, COCO AP.

:func:`accuracy_report` compares float and quantized head outputs (:func:`refdet.quant.head.run_quantized_head`
or any other ``(cls_logits, bbox_deltas)`` pair): SQNR per tensor (:func:`sqnr_db`), logit error,
scores that cross the score threshold, top-k overlap, IoU drift of decoded boxes, detection agreement
after NMS and, with ground truth, the change in COCO AP. :func:`format_accuracy_report` lays several
reports side by side.
"""
from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from refdet import _checks
from refdet import heads as _heads
from refdet.box_coder import decode_boxes
from refdet.eval import evaluate_detections
from refdet.iou import box_iou, box_iou_paired
from refdet.postprocess import postprocess_detections

__all__ = ["sqnr_db", "accuracy_report", "format_accuracy_report"]


def sqnr_db(reference: Union[np.ndarray, Sequence[np.ndarray]],
            approximation: Union[np.ndarray, Sequence[np.ndarray]]) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x**2 / sum (x - x_hat)**2)`` in dB (float64).

    Parameters
    ----------
    reference, approximation : ndarray (same shape) or lists of them (concatenated)

    Returns
    -------
    float
        ``inf`` when the approximation is exact (including both empty); ``-inf`` for a zero
        reference with a nonzero error.
    """
    def cat(v, name):
        if isinstance(v, (list, tuple)):
            return np.concatenate([_checks.as_float_array(t, f"{name}[{i}]", dtype=np.float64).ravel()
                                   for i, t in enumerate(v)]) if len(v) else np.zeros(0)
        return _checks.as_float_array(v, name, dtype=np.float64).ravel()
    x = cat(reference, "reference")
    y = cat(approximation, "approximation")
    if x.shape != y.shape:
        raise ValueError(f"`reference` and `approximation` must have the same size; got {x.size} and {y.size}")
    sig = float(np.dot(x, x))
    noise = float(np.dot(x - y, x - y))
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _flat_levels(out, a, what, field):
    """(B, A*C, H, W) per level -> list per level of (B, H*W*A, C); or (B, N, C) -> [that]."""
    v = out
    if isinstance(v, (list, tuple)):
        levels = []
        for i, t in enumerate(v):
            t = _checks.as_float_array(t, f"{what}.{field}[{i}]")
            if t.ndim != 4 or t.shape[1] % a:
                raise ValueError(f"`{what}.{field}[{i}]` must have shape (B, A*C, H, W) with A = {a}; got {t.shape}")
            levels.append(_heads.flatten_head_output(t, a))
        return levels
    t = _checks.as_float_array(v, f"{what}.{field}")
    if t.ndim == 4:
        return [_heads.flatten_head_output(t, a)]
    if t.ndim != 3:
        raise ValueError(f"`{what}.{field}` must be (B, N, C) or per-level (B, A*C, H, W) maps; got {t.shape}")
    return [t]


def _outputs(out, what, num_anchors):
    if not (isinstance(out, tuple) and len(out) >= 2):
        raise TypeError(f"`{what}` must be a (cls_logits, bbox_deltas) pair (e.g. a RetinaNetHeadOutput or "
                        f"QuantizedHeadOutput); got {type(out).__name__}")
    cls, box = out[0], out[1]
    if num_anchors is None:
        b0 = box[0] if isinstance(box, (list, tuple)) else box
        b0 = np.asarray(b0)
        num_anchors = b0.shape[1] // 4 if b0.ndim == 4 else 1
    return _flat_levels(cls, num_anchors, what, "cls_logits"), _flat_levels(box, num_anchors, what, "bbox_deltas")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # no overflow warning for large |x|


def _match(fd, qd, iou_threshold):
    """Greedy one-to-one matching of quantized to float detections of the same class.

    Quantized detections in order (highest score first, as NMS returns them) each take the unmatched
    float detection of its class with the highest IoU, if that IoU >= ``iou_threshold`` (ties: the
    lower float index). Returns (matched pairs (qi, fi), their IoUs).
    """
    if len(fd.boxes) == 0 or len(qd.boxes) == 0:
        return [], []
    iou = box_iou(qd.boxes.astype(np.float64), fd.boxes.astype(np.float64))   # (Q, F)
    iou = np.where(qd.labels[:, None] == fd.labels[None, :], iou, -1.0)
    taken = np.zeros(len(fd.boxes), dtype=bool)
    pairs, ious = [], []
    for i in range(len(qd.boxes)):                      # loop over kept detections
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            taken[j] = True
            pairs.append((i, j))
            ious.append(float(row[j]))
    return pairs, ious


def _coco_columns(dets, ground_truths, num_classes):
    n = len(dets)
    gt_b = [np.asarray(g[0], np.float64).reshape(-1, 4) for g in ground_truths]
    gt_l = [np.asarray(g[1], np.int64).reshape(-1) for g in ground_truths]
    gt = {"image_id": np.concatenate([np.full(len(b), i, np.int64) for i, b in enumerate(gt_b)]),
          "labels": np.concatenate(gt_l) if gt_l else np.zeros(0, np.int64),
          "boxes": np.concatenate(gt_b) if gt_b else np.zeros((0, 4)),
          "images": np.arange(n), "classes": np.arange(num_classes)}
    dt = {"image_id": np.concatenate([np.full(len(d.boxes), i, np.int64) for i, d in enumerate(dets)]),
          "boxes": np.concatenate([np.asarray(d.boxes, np.float64).reshape(-1, 4) for d in dets]),
          "scores": np.concatenate([np.asarray(d.scores, np.float64) for d in dets]),
          "labels": np.concatenate([np.asarray(d.labels, np.int64) for d in dets])}
    return dt, gt


def accuracy_report(float_outputs: tuple, quant_outputs: tuple, anchors, *, image_size: Tuple[int, int],
                    num_anchors: Optional[int] = None, score_threshold: float = 0.05, nms_threshold: float = 0.5,
                    match_iou: float = 0.5, topk: Sequence[int] = (100, 1000), topk_candidates: int = 1000,
                    detections_per_image: int = 100, min_size: float = 1e-2,
                    box_weights: Tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                    ground_truths: Optional[list] = None, extra_tensors: Optional[dict] = None) -> dict:
    """What quantization did to a RetinaNet head's outputs and detections.

    Parameters
    ----------
    float_outputs, quant_outputs : (cls_logits, bbox_deltas) pairs
        Either per-level lists of raw maps (B, A*K, H, W) / (B, 4A, H, W) (what
        :func:`refdet.heads.retinanet_head_forward` and :func:`run_quantized_head` return), or
        flattened (B, N, K) / (B, N, 4) arrays (one level). Anchors are flattened ``(level, y, x, a)``.
    anchors : ndarray, shape (N, 4), or list per level of (N_l, 4); xyxy
    image_size : (H, W)
        For clipping the decoded boxes.
    num_anchors : int, optional
        A; default from the box maps' channels (4A).
    score_threshold : float
        Detection score threshold (strict ``>``, torchvision), also the threshold of the crossing count.
    nms_threshold, topk_candidates, detections_per_image, min_size, box_weights
        Post-processing, :func:`refdet.postprocess.postprocess_detections` (``style="retinanet"``); the
        defaults are :meth:`refdet.detector.Detector.detect`'s.
    match_iou : float
        A quantized detection agrees with a float one of the same class when IoU >= ``match_iou``.
    topk : tuple of int
        k for the top-k anchor overlap (of (anchor, class) scores, per image).
    ground_truths : list of B (boxes (M, 4), labels (M,)), optional
        With it, COCO AP / AP50 of both detection sets (:func:`refdet.eval.evaluate_detections`).
    extra_tensors : dict, optional
        ``name -> (reference, approximation)``: more tensors to report the SQNR of (e.g. every layer).

    Returns
    -------
    dict
        ``sqnr_db`` {tensor: dB} (``cls_logits``, ``bbox_deltas``, ``cls_logits/L<i>`` per level, and
        ``extra_tensors``); ``logit_error`` {max, mean} and ``delta_error`` {max, mean} (absolute);
        ``threshold_crossings`` {count, up, down, total, fraction} over (anchor, class) pairs, where
        ``up`` = below or at the threshold in float, above it quantized; ``topk_overlap`` {k: mean
        fraction of the float top-k among the quantized top-k}; ``box_iou`` {mean, mean_drift = 1 -
        mean, min, candidates_mean, num_candidates} of float vs quantized decoded boxes per anchor
        (candidates: anchors with a float score above the threshold); ``detections`` {float, quant,
        matched, precision, recall, matched_mean_iou, matched_mean_score_diff}; ``ap`` {float, quant,
        delta, ap50_float, ap50_quant, ap50_delta} or None.

    Notes
    -----
    Precision = matched / #quantized detections, recall = matched / #float detections, summed over
    images; an empty side counts as 1.0 (nothing to disagree with). A mean over nothing is NaN ("not
    applicable", a documented answer): ``box_iou.candidates_mean`` without a candidate anchor,
    ``detections.matched_mean_iou`` and ``matched_mean_score_diff`` without a matched detection.

    Anchors must have positive widths and heights (a ValueError names the level and row otherwise):
    the deltas are decoded against them.
    """
    fc, fb = _outputs(float_outputs, "float_outputs", num_anchors)
    qc, qb = _outputs(quant_outputs, "quant_outputs", num_anchors)
    if len(fc) != len(qc) or any(a.shape != b.shape for a, b in zip(fc + fb, qc + qb)):
        raise ValueError("`float_outputs` and `quant_outputs` must have the same levels and shapes; got "
                         f"{[t.shape for t in fc + fb]} and {[t.shape for t in qc + qb]}")
    sizes = [t.shape[1] for t in fc]
    # a list of per-level (N_l, 4) arrays, or one (N, 4) array (also as a list of rows)
    if isinstance(anchors, (list, tuple)) and len(anchors) and all(
            isinstance(a, np.ndarray) and a.ndim == 2 or isinstance(a, (list, tuple)) and len(a) and
            all(isinstance(r, (list, tuple, np.ndarray)) for r in a) for a in anchors):
        anc = [_checks.as_boxes(a, f"anchors[{i}]") for i, a in enumerate(anchors)]
        if [len(a) for a in anc] != sizes:
            raise ValueError(f"`anchors` must have {sizes} anchors per level; got {[len(a) for a in anc]}")
    else:
        allb = _checks.as_boxes(anchors, "anchors")
        if len(allb) != sum(sizes):
            raise ValueError(f"`anchors` must have one row per anchor ({sum(sizes)}); got {len(allb)}")
        anc = np.split(allb, np.cumsum(sizes)[:-1])
    for i, a in enumerate(anc):
        bad = ~((a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1]))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"`anchors` level {i} row {j} has a width or height <= 0: {a[j].tolist()} (the deltas "
                             f"are decoded against it)")
    _checks.check_image_size(image_size)
    thr = _checks.check_unit_threshold(score_threshold, "score_threshold",
                                       source="the scores it filters are sigmoid probabilities")
    mi = _checks.check_probability(match_iou, "match_iou")
    topk = _checks.check_sequence(topk, "topk", "a list of ints")
    ks = tuple(_checks.check_int(k, f"topk[{i}]", low=1) for i, k in enumerate(topk))
    _checks.check_weights4(box_weights, "box_weights")
    if ground_truths is not None:
        ground_truths = _checks.check_sequence(ground_truths, "ground_truths", "a list of (boxes, labels) per image")
        for i, gt in enumerate(ground_truths):
            if not isinstance(gt, (list, tuple)) or len(gt) != 2:
                raise TypeError(f"`ground_truths[{i}]` must be a (boxes, labels) pair; got {_checks._describe(gt)}")
    if extra_tensors is not None and not isinstance(extra_tensors, dict):
        raise TypeError(f"`extra_tensors` must be a dict name -> (reference, approximation); got "
                        f"{_checks._describe(extra_tensors)}")

    F = np.concatenate([t.astype(np.float64) for t in fc], axis=1)       # (B, N, K)
    Q = np.concatenate([t.astype(np.float64) for t in qc], axis=1)
    FB = np.concatenate([t.astype(np.float64) for t in fb], axis=1)      # (B, N, 4)
    QB = np.concatenate([t.astype(np.float64) for t in qb], axis=1)
    B, N, K = F.shape

    sq = {"cls_logits": sqnr_db(F, Q), "bbox_deltas": sqnr_db(FB, QB)}
    if len(fc) > 1:
        for i in range(len(fc)):
            sq[f"cls_logits/L{i}"] = sqnr_db(fc[i], qc[i])
            sq[f"bbox_deltas/L{i}"] = sqnr_db(fb[i], qb[i])
    for name, (r, a) in (extra_tensors or {}).items():
        sq[name] = sqnr_db(r, a)

    def err(a, b):
        d = np.abs(a - b)
        return {"max": float(d.max()) if d.size else 0.0, "mean": float(d.mean()) if d.size else 0.0}

    sf, sqs = _sigmoid(F), _sigmoid(Q)
    above_f, above_q = sf > thr, sqs > thr
    up = int(np.count_nonzero(~above_f & above_q))
    down = int(np.count_nonzero(above_f & ~above_q))
    total = int(F.size)
    crossings = {"count": up + down, "up": up, "down": down, "total": total,
                 "fraction": (up + down) / total if total else 0.0}

    overlap = {}
    fs, qs = sf.reshape(B, -1), sqs.reshape(B, -1)
    for k in ks:
        kk = min(k, fs.shape[1])
        if kk == 0:
            overlap[k] = 1.0
            continue
        # stable descending order: ties go to the lower (anchor, class) index
        tf = np.argsort(-fs, axis=1, kind="stable")[:, :kk]
        tq = np.argsort(-qs, axis=1, kind="stable")[:, :kk]
        inter = [np.intersect1d(tf[i], tq[i]).size for i in range(B)]   # loop over images
        overlap[k] = float(np.mean(inter) / kk) if B else 1.0

    allanc = np.concatenate(anc).astype(np.float64)                      # (N, 4)
    A_rep = np.broadcast_to(allanc, (B, N, 4)).reshape(-1, 4)
    bf = decode_boxes(FB.reshape(-1, 4), A_rep, weights=box_weights)
    bq = decode_boxes(QB.reshape(-1, 4), A_rep, weights=box_weights)
    iou = box_iou_paired(bf, bq)
    cand = above_f.any(axis=2).reshape(-1)
    iou_stats = {"mean": float(iou.mean()) if iou.size else 1.0,
                 "mean_drift": float(1.0 - iou.mean()) if iou.size else 0.0,
                 "min": float(iou.min()) if iou.size else 1.0,
                 "candidates_mean": float(iou[cand].mean()) if cand.any() else float("nan"),
                 "num_candidates": int(cand.sum())}

    def post(cls_levels, box_levels, i):
        return postprocess_detections([c[i] for c in cls_levels], [b[i] for b in box_levels], anc, image_size,
                                      style="retinanet", score_threshold=thr, topk_candidates=topk_candidates,
                                      nms_threshold=nms_threshold, detections_per_image=detections_per_image,
                                      min_size=min_size, weights=box_weights)

    fdets = [post(fc, fb, i) for i in range(B)]                         # loop over images
    qdets = [post(qc, qb, i) for i in range(B)]
    n_f = sum(len(d.boxes) for d in fdets)
    n_q = sum(len(d.boxes) for d in qdets)
    matched, ious, sdiff = 0, [], []
    for fd, qd in zip(fdets, qdets):
        pairs, pi = _match(fd, qd, mi)
        matched += len(pairs)
        ious += pi
        sdiff += [abs(float(qd.scores[a]) - float(fd.scores[b])) for a, b in pairs]
    detections = {"float": n_f, "quant": n_q, "matched": matched,
                  "precision": matched / n_q if n_q else 1.0, "recall": matched / n_f if n_f else 1.0,
                  "matched_mean_iou": float(np.mean(ious)) if ious else float("nan"),
                  "matched_mean_score_diff": float(np.mean(sdiff)) if sdiff else float("nan")}

    ap = None
    if ground_truths is not None:
        if len(ground_truths) != B:
            raise ValueError(f"`ground_truths` must have one (boxes, labels) pair per image ({B}); got "
                             f"{len(ground_truths)}")
        res = []
        for dets in (fdets, qdets):
            dt, gt = _coco_columns(dets, ground_truths, K)
            stats = evaluate_detections(dt, gt).stats
            res.append((max(float(stats[0]), 0.0), max(float(stats[1]), 0.0)))
        ap = {"float": res[0][0], "quant": res[1][0], "delta": res[1][0] - res[0][0],
              "ap50_float": res[0][1], "ap50_quant": res[1][1], "ap50_delta": res[1][1] - res[0][1]}

    return {"sqnr_db": sq, "logit_error": err(F, Q), "delta_error": err(FB, QB), "score_threshold": thr,
            "threshold_crossings": crossings, "topk_overlap": overlap, "box_iou": iou_stats,
            "detections": detections, "ap": ap}


def _fmt(v, spec):
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return format(v, spec)


def format_accuracy_report(reports: dict) -> str:
    """A readable table of several reports side by side.

    Parameters
    ----------
    reports : dict
        column title (e.g. ``"int8 onnxruntime"``) -> a dict from :func:`accuracy_report`.

    Returns
    -------
    str
    """
    if not isinstance(reports, dict) or not reports:
        raise TypeError("`reports` must be a non-empty dict: column title -> accuracy_report(...) dict")
    cols = list(reports)
    for c in cols:
        if not isinstance(reports[c], dict):
            raise TypeError(f"`reports[{c!r}]` must be a dict from accuracy_report(...); got "
                            f"{type(reports[c]).__name__}")
    first = reports[cols[0]]                 # its entries name the rows (a later column may lack some: "-")
    for key, kind in (("sqnr_db", dict), ("topk_overlap", dict), ("score_threshold", numbers.Real)):
        if not isinstance(first.get(key), kind):
            raise ValueError(f"`reports[{cols[0]!r}]` must be a dict from accuracy_report(...) (the first column "
                             f"names the rows); its {key!r} entry is {type(first.get(key)).__name__}")
    rows = []

    def add(label, get, spec):
        vals = []
        for c in cols:
            try:
                v = get(reports[c])
            except (KeyError, TypeError, IndexError):
                v = None
            vals.append("-" if v is None else _fmt(v, spec))
        rows.append((label, vals))

    for name in first["sqnr_db"]:
        add(f"SQNR {name} (dB)", lambda r, n=name: r["sqnr_db"][n], ".2f")
    add("max |logit error|", lambda r: r["logit_error"]["max"], ".4f")
    add("mean |logit error|", lambda r: r["logit_error"]["mean"], ".5f")
    add("max |delta error|", lambda r: r["delta_error"]["max"], ".4f")
    add("mean |delta error|", lambda r: r["delta_error"]["mean"], ".5f")
    thr = first["score_threshold"]
    add(f"scores crossing {thr:g} (count)", lambda r: r["threshold_crossings"]["count"], "d")
    add("  up / down", lambda r: f"{r['threshold_crossings']['up']} / {r['threshold_crossings']['down']}", "s")
    add("  fraction of (anchor, class)", lambda r: r["threshold_crossings"]["fraction"], ".2e")
    for k in first["topk_overlap"]:
        add(f"top-{k} score overlap", lambda r, k=k: r["topk_overlap"][k], ".4f")
    add("decoded box IoU, mean (all anchors)", lambda r: r["box_iou"]["mean"], ".5f")
    add("  IoU drift 1 - mean", lambda r: r["box_iou"]["mean_drift"], ".2e")
    add("  min IoU", lambda r: r["box_iou"]["min"], ".4f")
    add("  mean IoU, score candidates", lambda r: r["box_iou"]["candidates_mean"], ".5f")
    add("detections float / quantized", lambda r: f"{r['detections']['float']} / {r['detections']['quant']}", "s")
    add("  matched (same class, IoU >= 0.5)", lambda r: r["detections"]["matched"], "d")
    add("  precision vs float", lambda r: r["detections"]["precision"], ".4f")
    add("  recall vs float", lambda r: r["detections"]["recall"], ".4f")
    add("  matched mean IoU", lambda r: r["detections"]["matched_mean_iou"], ".4f")
    add("  matched mean |score diff|", lambda r: r["detections"]["matched_mean_score_diff"], ".5f")
    add("COCO AP float -> quantized", lambda r: f"{r['ap']['float']:.4f} -> {r['ap']['quant']:.4f}", "s")
    add("  AP change", lambda r: r["ap"]["delta"], "+.4f")
    add("  AP50 change", lambda r: r["ap"]["ap50_delta"], "+.4f")

    w0 = max(len(r[0]) for r in rows)
    ws = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join([" " * w0] + [c.rjust(w) for c, w in zip(cols, ws)])]
    lines.append("-" * len(lines[0]))
    for label, vals in rows:
        lines.append("  ".join([label.ljust(w0)] + [v.rjust(w) for v, w in zip(vals, ws)]))
    return "\n".join(lines)

