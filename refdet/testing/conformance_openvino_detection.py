"""Conformance checks of OpenVINO's DetectionOutput and Proposal as its CPU plugin runs them (issue 15).

Registered in :data:`refdet.testing.conformance_runtimes.RUNTIME_CHECKS` (``refdet verify openvino``).
"""
from __future__ import annotations

import numpy as np

from refdet.testing.conformance_core import _Runner, _finish, _np

__all__ = ["check_openvino_detection_output", "detection_output_agrees"]


# ---------------------------------------------------------------------------------------------------
# DetectionOutput
# ---------------------------------------------------------------------------------------------------

def detection_output_agrees(case, got_rows, expected_rows):
    """Whether ``got_rows`` (D, 7) is a valid DetectionOutput answer for ``case`` where it differs from
    refdet's ``expected_rows`` only at a tie the plugin leaves unordered.

    At the ``keep_top_k`` cut, detections of different classes with equal score (and prior) are in no
    defined order on the CPU plugin (``std::sort`` of a list gathered in parallel). The answer is valid
    when every image has the expected number of rows, the same scores, the same rows above the cut score,
    rows at the cut score drawn from the uncut detections, and classes in ascending order.
    """
    from refdet.runtimes.openvino_detection import detection_output, detection_output_rows

    ktk = case.get("keep_top_k", -1)
    ktk = ktk if np.ndim(ktk) == 0 else list(ktk)[0]
    if ktk <= 0 or len(got_rows) != len(expected_rows):
        return False
    full = detection_output_rows(detection_output(**dict(case, keep_top_k=-1)))
    for n in np.unique(np.concatenate([got_rows[:, 0], expected_rows[:, 0]])):
        g, e, f = got_rows[got_rows[:, 0] == n], expected_rows[expected_rows[:, 0] == n], full[full[:, 0] == n]
        if len(g) != len(e) or not np.array_equal(np.sort(g[:, 2]), np.sort(e[:, 2])):
            return False
        if np.any(np.diff(g[:, 1]) < 0):
            return False
        cut = e[:, 2].min() if len(e) else np.inf
        above_g, above_e = g[g[:, 2] > cut], e[e[:, 2] > cut]
        if not np.array_equal(above_g[np.lexsort(above_g.T[::-1])], above_e[np.lexsort(above_e.T[::-1])]):
            return False
        fset = {tuple(r) for r in f.tolist()}
        if any(tuple(r) not in fset for r in g[g[:, 2] == cut].tolist()):
            return False
    return True


def _do_variants(case):
    """(description, case) of the usual misreadings of DetectionOutput's attributes."""
    c = dict(case)
    below = lambda v: float(np.nextafter(np.float32(v), np.float32(-np.inf)))  # noqa: E731  (`> below(t)` is `>= t`)
    out = [("scores equal to confidence_threshold kept (>=); the plugin's Caffe style keeps score > threshold",
            dict(c, confidence_threshold=below(c.get("confidence_threshold", 0.0)))),
           ("boxes with overlap equal to nms_threshold suppressed (>=); the plugin suppresses overlap > threshold",
            dict(c, nms_threshold=below(c["nms_threshold"]))),
           ("keep_top_k ignored", dict(c, keep_top_k=-1)),
           ("top_k ignored", dict(c, top_k=-1)),
           ("clip_before_nms read the other way round", dict(c, clip_before_nms=not c.get("clip_before_nms", False))),
           ("clip_after_nms read the other way round", dict(c, clip_after_nms=not c.get("clip_after_nms", False)))]
    ct = str(c.get("code_type", "caffe.PriorBoxParameter.CORNER")).upper()
    out.append(("the other code_type", dict(c, code_type="caffe.PriorBoxParameter.CORNER" if "CENTER" in ct
                                            else "caffe.PriorBoxParameter.CENTER_SIZE")))
    return out


def _do_compare(fn):
    from refdet.runtimes.openvino_detection import detection_output, detection_output_rows

    def compare(case):
        exp = detection_output(**case)
        got = _np(fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()}))
        got = got.astype(np.float32).reshape(1, 1, -1, 7) if got.size % 7 == 0 else got
        if got.shape != exp.shape:
            return np.inf, f"output shape {got.shape}, OpenVINO's shape inference gives {exp.shape}"
        g, e = detection_output_rows(got), detection_output_rows(exp)
        if np.array_equal(g, e):
            return 0.0, None
        if detection_output_agrees(case, g, e):
            return 0.0, None
        err = float(np.max(np.abs(g - e))) if g.shape == e.shape else np.inf
        lines = [f"{len(g)} detections, refdet {len(e)}:", f"  yours  {g.tolist()[:6]}", f"  refdet {e.tolist()[:6]}"]
        for desc, alt in _do_variants(case):
            try:
                a = detection_output_rows(detection_output(**alt))
            except ValueError:
                continue
            if np.array_equal(a, g):
                lines.append(f"  likely cause: {desc}")
                break
        else:
            if g.shape == e.shape and np.array_equal(g[:, :3], e[:, :3]):
                lines.append("  same detections, boxes differ: the decode's float32 order of operations")
        return err, "\n".join(lines)
    return compare


def _do_golden():
    f = np.float32
    # two normalized priors 0.5 apart that overlap by IoU 1/3, one foreground class, CORNER with unit variances
    pri = np.array([[[0, 0, 0.5, 0.5, 0.25, 0, 0.75, 0.5], [1] * 8]], f)
    base = dict(location=np.zeros((1, 8), f), confidence=np.array([[0.1, 0.9, 0.2, 0.8]], f), priors=pri,
                nms_threshold=0.5, keep_top_k=-1, top_k=-1, background_label_id=0, normalized=True)
    center = dict(base, code_type="caffe.PriorBoxParameter.CENTER_SIZE",
                  location=np.array([[0.1, -0.1, 0.2, 0.0, 0, 0, 0, 0]], f), variance_encoded_in_target=True,
                  priors=pri[:, :1])
    return [
        ("two overlapping priors kept (IoU 1/3 <= 0.5)", base),
        ("overlap above nms_threshold suppresses", dict(base, nms_threshold=0.25)),
        ("overlap equal to nms_threshold (1/3 as float32) is kept", dict(base, nms_threshold=float(f(1) / f(3)))),
        ("score equal to confidence_threshold is dropped", dict(base, confidence_threshold=0.8)),
        ("keep_top_k 1", dict(base, keep_top_k=1)),
        ("top_k 1", dict(base, top_k=1)),
        ("CENTER_SIZE, variance encoded in target", center),
        ("decrease_label_id (MXNet)", dict(base, decrease_label_id=True)),
        ("no background (-1): class 0 too", dict(base, background_label_id=-1)),
        ("pixel priors with an end marker", dict(base, normalized=False, input_height=10, input_width=20,
                                                 priors=np.array([[[0, 0, 0, 10, 5, -1, 0, 0, 0, 0],
                                                                   [1] * 10]], f))),
        ("clip after NMS", dict(base, location=np.array([[-0.2, 0, 0.7, 0, 0, 0, 0, 0]], f), clip_after_nms=True)),
    ]


def check_openvino_detection_output(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against OpenVINO DetectionOutput-8 on the CPU plugin
    (:func:`refdet.runtimes.openvino_detection.detection_output`).

    ``fn(location, confidence, priors, **attributes)`` (OpenVINO's attribute names as keywords, plus
    ``arm_confidence`` / ``arm_location`` in the 5-input cases) ``-> (1, 1, R, 7)``. Rows exact (bit for
    bit); at a tie the plugin leaves unordered (:func:`detection_output_agrees`) any valid order passes.
    """
    from refdet.testing import strategies_openvino_detection as sod

    r = _Runner("openvino_detection_output", "abs", "openvino", _do_compare(fn), progress)
    return _finish(r.run(_do_golden(), sod.openvino_detection_output_cases(), n_cases, seed), raise_on_failure)


# ---------------------------------------------------------------------------------------------------
# Proposal
# ---------------------------------------------------------------------------------------------------

def _pr_valid(rois, probs, counts, post):
    out_r, out_p = [], []
    for n, m in enumerate(counts):
        out_r.append(rois[n * post: n * post + m])
        out_p.append(probs[n * post: n * post + m])
    return np.concatenate(out_r), np.concatenate(out_p)


def _pr_compare(fn):
    from refdet.runtimes.openvino_proposal import proposal

    def compare(case):
        exp = proposal(**case)
        got = fn(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in case.items()})
        gr, gp = _np(got[0]).astype(np.float32).reshape(-1, 5), _np(got[1]).astype(np.float32).ravel()
        if gr.shape != exp.rois.shape:
            return np.inf, f"rois shape {gr.shape}, OpenVINO's is {exp.rois.shape}"
        post = case["post_nms_topn"]
        er, ep = _pr_valid(exp.rois, exp.probs, exp.counts, post)
        got_counts = []
        for n in range(len(exp.counts)):
            block = gr[n * post:(n + 1) * post, 0]
            end = np.flatnonzero(block == -1)
            got_counts.append(int(end[0]) if end.size else post)
        g_r, g_p = _pr_valid(gr, gp, got_counts, post)
        if np.array_equal(g_r, er) and np.array_equal(g_p, ep):
            return 0.0, None
        err = float(np.max(np.abs(g_r - er))) if g_r.shape == er.shape else np.inf
        lines = [f"{len(g_r)} proposals, refdet {len(er)}:", f"  yours  {g_r.tolist()[:4]}", f"  refdet {er.tolist()[:4]}"]
        below = float(np.nextafter(np.float32(case["nms_thresh"]), np.float32(-np.inf)))
        for desc, alt in [("IoU equal to nms_thresh suppressed (>=); the plugin suppresses nms_thresh < IoU",
                           dict(case, nms_thresh=below)),
                          ("clip_before_nms read the other way round", dict(case, clip_before_nms=not case["clip_before_nms"])),
                          ("clip_after_nms read the other way round", dict(case, clip_after_nms=not case["clip_after_nms"])),
                          ("the other framework ('' is Caffe's +1 widths; 'tensorflow' 0 and swapped axes)",
                           dict(case, framework="" if case["framework"] == "tensorflow" else "tensorflow"))]:
            try:
                a = proposal(**alt)
            except ValueError:
                continue
            if np.array_equal(_pr_valid(a.rois, a.probs, a.counts, post)[0], g_r):
                lines.append(f"  likely cause: {desc}")
                break
        else:
            if g_r.shape == er.shape and np.max(np.abs(g_r - er)) < 1e-3:
                lines.append("  boxes within float32 rounding: the decode's order of operations (the plugin fuses "
                             "dx * w + ctr_x into one multiply-add)")
        return err, "\n".join(lines)
    return compare


def _pr_golden():
    f = np.float32
    # one anchor (base 16, ratio 1, scale 1: [0, 0, 15, 15]) on a 3 x 3 map with stride 16, zero deltas
    base = dict(class_probs=np.concatenate([np.zeros((1, 1, 3, 3), f), np.arange(9, dtype=f).reshape(1, 1, 3, 3) / 10],
                                           axis=1),
                bbox_deltas=np.zeros((1, 4, 3, 3), f), image_shape=np.array([48, 48, 1], f), base_size=16,
                pre_nms_topn=9, post_nms_topn=10, nms_thresh=0.7, feat_stride=16, min_size=1, ratio=[1.0], scale=[1.0],
                clip_before_nms=True, clip_after_nms=False, normalize=False, box_size_scale=1.0,
                box_coordinate_scale=1.0, framework="")
    ties = dict(base, class_probs=np.concatenate([np.zeros((1, 1, 3, 3), f), np.full((1, 1, 3, 3), 0.5, f)], axis=1))
    # stride 1: the boxes [0, 0, 4, 4] and [1, 0, 5, 4] of cells (0, 0) and (0, 1) overlap by IoU 20 / 30 (+1 sides)
    fg = np.zeros((1, 1, 2, 4), f)
    fg[0, 0, 0, :2] = 0.9, 0.8
    touch = dict(base, class_probs=np.concatenate([np.zeros_like(fg), fg], axis=1), bbox_deltas=np.zeros((1, 4, 2, 4), f),
                 feat_stride=1, pre_nms_topn=8, base_size=4, nms_thresh=float(f(20) / f(30)))
    return [
        ("disjoint anchors, all kept", base),
        ("IoU equal to nms_thresh is kept", touch),
        ("post_nms_topn 2", dict(base, post_nms_topn=2)),
        ("min_size above the anchors: scores zeroed", dict(base, min_size=17)),
        ("tied scores: the heap's order", ties),
        ("tensorflow framework", dict(base, framework="tensorflow")),
        ("normalize and clip after NMS", dict(base, normalize=True, clip_after_nms=True,
                                              bbox_deltas=np.full((1, 4, 3, 3), 0.5, f))),
    ]


def check_openvino_proposal(fn, *, n_cases=60, seed=0, raise_on_failure=True, progress=None):
    """Check ``fn`` against OpenVINO Proposal-4 on the CPU plugin (:func:`refdet.runtimes.openvino_proposal.proposal`).

    ``fn(class_probs, bbox_deltas, image_shape, **attributes) -> (rois (B * post_nms_topn, 5), probs)``.
    Each image's rows up to its ``-1`` end marker, bit for bit.
    """
    from refdet.testing import strategies_openvino_detection as sod

    r = _Runner("openvino_proposal", "abs", "openvino", _pr_compare(fn), progress)
    return _finish(r.run(_pr_golden(), sod.openvino_proposal_cases(), n_cases, seed), raise_on_failure)


__all__ += ["check_openvino_proposal"]
