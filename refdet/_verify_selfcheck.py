"""``refdet verify self``: refdet's self-check (:mod:`refdet.verify` prints it).

Every ``*_forward`` / ``*_backward`` pair found by walking refdet's modules is gradient-checked (float64
central differences; a pair without a registered case is a failure, so a new pair cannot slip
through), and hypothesis invariants are run: IoU symmetric and in [0, 1], the encode/decode round
trip, NMS output unique, sorted, idempotent and every suppressed box explained, matcher codes valid,
balanced-sampler counts; the RoI checks run against the readable loop references.
"""
from __future__ import annotations

import importlib
import math
import pkgutil

import numpy as np

__all__ = ["self_check", "gradcheck_coverage", "GRADCHECK_EXEMPT", "YOLOStepCase"]


def _row(target, report):
    d = report.as_dict()
    d["target"] = target
    return d


# ---------------------------------------------------------------------------------------------------
# self-check: every forward/backward pair gradient-checked, invariants
# ---------------------------------------------------------------------------------------------------

#: pairs whose backward is deliberately not the derivative of the forward (reason shown in the table)
GRADCHECK_EXEMPT = {
    "fake_quant_forward": "straight-through estimator: the backward is by design not the derivative of the "
                          "piecewise-constant forward (tested against torch's fake_quantize in tests/test_quant.py)",
}

_REGISTERED = False


def _register_selfcheck_cases():
    """Gradient-check cases for every non-layer pair (the layers register theirs in refdet.testing.gradcheck)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from refdet import _faster_rcnn_gradcheck  # noqa: F401  (registers the whole Faster R-CNN step)
    from refdet import box_coder as BC
    from refdet import detector as D
    from refdet import fpn as FP
    from refdet import heads as H
    from refdet import losses as L
    from refdet.testing.gradcheck import register_gradcheck as reg

    small = dict(max_elements=12, rtol=1e-5, atol=1e-7)

    def boxes(rng, n):
        xy = rng.uniform(0, 10, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(1, 6, (n, 2))], 1)

    def logits_targets(r):
        x = r.standard_normal((4, 3)) * 3
        return x, (r.random((4, 3)) < 0.4).astype(float)

    reg("decode_boxes", BC.decode_boxes_forward, BC.decode_boxes_backward,
        lambda r: ((r.normal(0, 0.5, (5, 4)), boxes(r, 5)), {}), wrt=["deltas"])
    reg("bce_with_logits", L.bce_with_logits_forward, L.bce_with_logits_backward,
        lambda r: (logits_targets(r), {}), wrt=["logits"])
    reg("sigmoid_focal_loss", L.sigmoid_focal_loss_forward, L.sigmoid_focal_loss_backward,
        lambda r: (logits_targets(r), {"reduction": "sum"}), wrt=["logits"])

    def labelled(r):
        x = r.standard_normal((5, 4)) * 2
        y = r.integers(0, 4, 5)
        y[1] = -1
        return (x, y), {}
    reg("softmax_cross_entropy", L.softmax_cross_entropy_forward, L.softmax_cross_entropy_backward, labelled)
    reg("softmax_focal_loss", L.softmax_focal_loss_forward, L.softmax_focal_loss_backward, labelled)

    def regression(beta):
        def make(r):
            p = r.standard_normal((4, 4))
            t = p + r.choice([-1, 1], (4, 4)) * r.uniform(0.05, 0.3, (4, 4))   # |d| away from 0 and beta
            return (p, t), ({"beta": beta} if beta is not None else {"reduction": "sum"})
        return make
    reg("smooth_l1", L.smooth_l1_forward, L.smooth_l1_backward, regression(1.0))
    reg("l1", L.l1_forward, L.l1_backward, regression(None))
    for kind in ("giou", "diou"):
        reg(f"{kind}_loss", getattr(L, f"{kind}_loss_forward"), getattr(L, f"{kind}_loss_backward"),
            lambda r: ((boxes(r, 6), boxes(r, 6)), {"reduction": "mean", "eps": 1e-3}))

    def ciou_frozen(pred_boxes, target_boxes, **kw):
        # CIoU's alpha is a constant in the backward pass (computed under no_grad): freeze it at the
        # point of evaluation so that the central differences see the same function
        loss, c = L.ciou_loss_forward(pred_boxes, target_boxes, **{**kw, "reduction": "none"})
        alpha0 = ciou_frozen.alpha0
        return loss + (alpha0 - c.iou.alpha) * c.iou.v, c

    def ciou_make(r):
        p, g = boxes(r, 5), boxes(r, 5)
        ciou_frozen.alpha0 = L.ciou_loss_forward(p, g, eps=1e-3)[1].iou.alpha
        return (p, g), {"eps": 1e-3}
    reg("ciou_loss (alpha frozen)", ciou_frozen, L.ciou_loss_backward, ciou_make)

    from refdet import iou as IO
    for kind in ("box_iou", "generalized_box_iou", "distance_box_iou"):
        reg(f"{kind}_paired", getattr(IO, f"{kind}_paired_forward"), getattr(IO, f"{kind}_paired_backward"),
            lambda r: ((boxes(r, 6), boxes(r, 6)), {}))

    def ciou_paired_frozen(boxes1, boxes2, **kw):
        value, c = IO.complete_box_iou_paired_forward(boxes1, boxes2, **kw)
        return value - (ciou_paired_frozen.alpha0 - c.alpha) * c.v, c      # alpha held at alpha0

    def ciou_paired_make(r):
        p, g = boxes(r, 5), boxes(r, 5)
        ciou_paired_frozen.alpha0 = IO.complete_box_iou_paired_forward(p, g)[1].alpha
        return (p, g), {}
    reg("complete_box_iou_paired (alpha frozen)", ciou_paired_frozen, IO.complete_box_iou_paired_backward,
        ciou_paired_make)

    def composed(kind):
        def make(r):
            B, N, K = 2, 6, 3
            td = r.standard_normal((B, N, 4))
            dl = td + r.choice([-1, 1], (B, N, 4)) * r.uniform(0.2, 0.8, (B, N, 4))
            if kind == "rpn":
                return (r.standard_normal((B, N)), dl, L.LossTargets(r.integers(-1, 2, (B, N)), td)), {}
            if kind == "retinanet":
                return (r.standard_normal((B, N, K)) * 2, dl, L.LossTargets(r.integers(-1, K + 1, (B, N)), td)), {}
            lab = np.where(r.random((B, N)) < 0.3, r.integers(1, K, (B, N)), 0)
            lab[:, 0] = 1
            return (r.standard_normal((B, N, K)) * 2, dl, L.LossTargets(lab, td)), {}
        return make
    reg("rpn_loss", L.rpn_loss_forward, L.rpn_loss_backward, composed("rpn"), wrt=["objectness", "deltas"])
    reg("retinanet_loss", L.retinanet_loss_forward, L.retinanet_loss_backward, composed("retinanet"),
        wrt=["cls_logits", "box_deltas"])
    reg("multibox_loss", L.multibox_loss_forward, L.multibox_loss_backward, composed("multibox"),
        wrt=["conf_logits", "loc_deltas"])

    def jitter(p, r):
        # move away from the initialisation (zero biases put ReLU inputs on the kink)
        return {k: v + 0.3 * r.standard_normal(v.shape) for k, v in p.items()}
    reg("rpn_head", H.rpn_head_forward, H.rpn_head_backward,
        lambda r: ((jitter(H.rpn_head_init(2, 2, rng=1), r), r.standard_normal((1, 2, 3, 3))), {}), **small)
    reg("retinanet_head", H.retinanet_head_forward, H.retinanet_head_backward,
        lambda r: ((jitter(H.retinanet_head_init(2, 2, 2, rng=1, num_convs=1), r),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 2, 2, 2))]), {}), **small)
    reg("ssd_head", H.ssd_head_forward, H.ssd_head_backward,
        lambda r: ((H.ssd_head_init([2, 2], [2, 1], 3, rng=1),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 2, 2, 1))]), {}), **small)
    reg("fpn", FP.fpn_forward, FP.fpn_backward,
        lambda r: ((jitter(FP.fpn_init([2, 3], 2, rng=1, extra_blocks="maxpool"), r),
                    [r.standard_normal((1, 2, 4, 4)), r.standard_normal((1, 3, 2, 2))]), {"extra_blocks": "maxpool"}),
        **small)
    reg("backbone", D.backbone_forward, D.backbone_backward,
        lambda r: ((jitter(D.backbone_init((2, 2, 2, 2), in_channels=1, rng=1, dtype=np.float64), r),
                    r.standard_normal((1, 1, 16, 16))), {}), wrt=("params",), **small)  # no image gradient

    from refdet.heads import yolo as HY
    reg("yolo_head", HY.yolo_head_forward, HY.yolo_head_backward,
        lambda r: ((jitter(HY.yolo_head_init([2, 3], 2, reg_max=2, strides=[8, 16], image_size=32, rng=1), r),
                    [r.standard_normal((1, 2, 3, 3)), r.standard_normal((1, 3, 2, 2))]), {}), **small)
    step = YOLOStepCase()
    reg(YOLOStepCase.NAME, step, step.backward, step.make, wrt=("params",), max_elements=3, rtol=1e-5, atol=1e-7)


class YOLOStepCase:
    """The whole YOLO training step as a forward/backward pair for the gradient-check registry.

    ``forward(params, images) -> (loss, grads)`` runs :meth:`refdet.detector.Detector.loss_and_grads`
    of a tiny float64 ``"yolo"`` detector (32 x 32 images, 2 per batch); ``backward(dloss, grads)``
    returns ``dloss * grads``. What the frameworks compute under ``no_grad`` is held at its value at
    the unperturbed parameters, so that the central differences see the function the backward pass
    differentiates: the task-aligned assignment (a fixed :class:`refdet.yolo.Assignment`) and CIoU's
    ``alpha`` (the checked loss is ``total + sum((alpha - alpha0) * d total / d alpha)``, equal to
    ``total`` at the point of evaluation, with the derivative the closed-form backward uses).
    """
    NAME = "yolo detector train step (fixed TAL targets, frozen CIoU alpha)"

    def __init__(self, det=None, targets=None):
        self.det, self.targets = det, targets
        self.assignment = self.alpha0 = None

    def make(self, rng):
        from refdet.detector import Detector

        if self.det is None:
            self.det = Detector("yolo", image_size=(32, 32), backbone_channels=(3, 4, 4, 4), fpn_channels=4,
                                reg_max=3)
            self.targets = [(np.array([[2.0, 3, 20, 25], [10, 12, 30, 28]]), np.array([1, 0])),
                            (np.array([[5.0, 6, 18, 14]]), np.array([0]))]
        params = self.det.init(rng=rng, dtype=np.float64)
        for part in params.values():                 # zero biases: move ReLU inputs off the kink
            for k, v in part.items():
                if k.endswith("bias"):
                    part[k] = v + 0.1 * rng.standard_normal(v.shape)
        images = rng.standard_normal((len(self.targets), 3) + self.det.image_size)
        _, _, trace = self.det.loss_and_grads(params, images, self.targets)
        self.assignment = trace.assignment
        self.alpha0 = None
        return (params, images), {}

    def _correction(self, cache):
        from refdet.yolo._gradcheck_cases import _v8_correction

        alphas, terms = _v8_correction(cache)
        if self.alpha0 is None:
            self.alpha0 = [a.copy() for a in alphas]
        return sum(float(((a - a0) * t).sum()) for a, a0, t in zip(alphas, self.alpha0, terms))

    def __call__(self, params, images):
        losses, grads, trace = self.det.loss_and_grads(params, images, self.targets, assignment=self.assignment)
        return np.asarray(losses["total"] + self._correction(trace.loss_cache)), grads

    @staticmethod
    def backward(dloss, grads):
        g = float(np.asarray(dloss))
        return {part: {k: v * g for k, v in d.items()} for part, d in grads.items()}, None


def _walk_pairs():
    """``{name: forward}`` for every public ``*_forward`` with a ``*_backward`` in refdet's modules."""
    import refdet

    pairs = {}
    for info in pkgutil.walk_packages(refdet.__path__, "refdet."):
        name = info.name
        if name.endswith("__main__") or ".testing" in name or name.endswith(".cli") or ".exchange" in name:
            continue
        try:
            mod = importlib.import_module(name)
        except Exception:  # an optional module that does not import here is not refdet's self
            continue
        for attr in dir(mod):
            if not attr.endswith("_forward") or attr.startswith("_"):
                continue
            f = getattr(mod, attr)
            if callable(f) and getattr(f, "__module__", None) == name and \
                    callable(getattr(mod, attr[:-len("_forward")] + "_backward", None)):
                pairs[f"{name}.{attr}"] = f
    return pairs


def gradcheck_coverage():
    """``(covered, missing, exempt)``: forward names (module.function) with / without a gradient-check
    case in :func:`refdet.testing.gradcheck_all`'s registry, and the exempted ones."""
    from refdet.testing import gradcheck as G

    _register_selfcheck_cases()
    if not G._LAYER_CASES_REGISTERED:
        G._LAYER_CASES_REGISTERED = True
        G._register_layer_cases()
    forwards = {v[0] for v in G._CASES.values()}
    names = {getattr(v[0], "__name__", "") for v in G._CASES.values()}
    covered, missing, exempt = [], [], []
    for qual, f in _walk_pairs().items():
        short = qual.rsplit(".", 1)[1]
        if short in GRADCHECK_EXEMPT:
            exempt.append(qual)
        elif f in forwards or short in names or short.replace("_forward", "") in {n for n in G._CASES} \
                or any(k.startswith(short.replace("_forward", "")) for k in G._CASES):
            covered.append(qual)
        else:
            missing.append(qual)
    return covered, missing, exempt


def _invariant_rows(n_cases, seed, progress):
    from hypothesis import strategies as st

    import refdet
    from refdet.testing.compare_match import assert_sample_valid
    from refdet.testing.conformance import _Runner
    from refdet.testing import strategies as rst

    def iou_inv(case):
        a, b = case
        q = refdet.box_iou(a, b, convention="detectron2")          # guarded: no NaN
        qt = refdet.box_iou(b, a, convention="detectron2")
        if not np.array_equal(q, qt.T):
            return 1.0, "box_iou(a, b) != box_iou(b, a).T"
        if q.size and (q.min() < 0 or q.max() > 1):
            return 1.0, f"IoU outside [0, 1]: {q.min()}, {q.max()}"
        return 0.0, None

    def coder_inv(case):
        b, a = case
        back = refdet.decode_boxes(refdet.encode_boxes(b, a), a, clamp=1e6)
        tol = 1e-9 * max(1.0, float(np.abs(b).max()) if b.size else 1.0)
        if not np.allclose(back, b, rtol=0, atol=tol):
            i = int(np.argmax(np.abs(back - b).max(axis=1)))
            return float(np.abs(back - b).max()), f"decode(encode(b, a), a) != b at row {i}: {back[i]} vs {b[i]}"
        return 0.0, None

    def nms_inv(case):
        b, s, thr = case
        keep = refdet.nms(b, s, thr)
        if len(set(keep.tolist())) != len(keep):
            return 1.0, "duplicate indices"
        if np.any(np.diff(s[keep]) > 0):
            return 1.0, "kept boxes not sorted by decreasing score"
        if not np.array_equal(keep[refdet.nms(b[keep], s[keep], thr)], keep):
            return 1.0, "NMS is not idempotent"
        q = refdet.box_iou(b[keep], b[keep])
        np.fill_diagonal(q, 0)
        if np.any(q > thr):
            return 1.0, "two kept boxes overlap above the threshold"
        return 0.0, None

    def match_inv(q):
        m = refdet.match(q)
        if not np.all((m >= -2) & (m < q.shape[0])):
            return 1.0, f"match codes outside -2..M-1: {np.unique(m)}"
        return 0.0, None

    def sampler_inv(labels):
        pos, neg = refdet.sample_balanced(labels, rng=seed)
        assert_sample_valid(labels, pos, neg)
        return 0.0, None

    @st.composite
    def pairs(draw):
        return draw(rst.box_sets(max_n=8)), draw(rst.box_sets(max_n=8))

    rows = []
    for name, fn, strat in (
            ("invariant: IoU symmetric, in [0, 1]", iou_inv, pairs()),
            ("invariant: decode(encode(b)) == b", coder_inv, rst.aligned_box_sets(max_n=8, min_size=0.5)),
            ("invariant: NMS unique, sorted, idempotent", nms_inv, rst.nms_inputs(max_n=20)),
            ("invariant: match codes", match_inv, rst.iou_matrices()),
            ("invariant: balanced sampler counts", sampler_inv, rst.sampler_labels(max_n=300))):
        cb = None if progress is None else (lambda rep, name=name: progress(f"self {name}: {rep.cases} cases"))
        r = _Runner(name, "violations", "-", fn, cb)
        rows.append(_row("self", r.run([], strat, n_cases, seed)))
    return rows


def self_check(*, n_cases=30, seed=0, progress=None):
    """refdet's self-check rows: every gradient check and every invariant (see the module docstring)."""
    from refdet.testing.gradcheck import gradcheck_all

    _register_selfcheck_cases()
    rows = []
    covered, missing, exempt = gradcheck_coverage()
    if progress:
        progress("self: gradient checks")
    results = gradcheck_all(rng=seed, out=(lambda line: progress("self gradcheck " + line)) if progress else None)
    for name, rep in results.items():
        w = rep.worst
        err = 0.0 if w is None else w.rel_error
        rows.append(dict(target="self", op=f"gradcheck: {name}", cases=1, agreeing=int(rep.ok), worst_error=err,
                         unit="rel", convention="-", ok=rep.ok, first_mismatch=None if rep.ok else str(rep)))
    for qual in missing:
        rows.append(dict(target="self", op=f"gradcheck: {qual}", cases=1, agreeing=0, worst_error=math.inf,
                         unit="", convention="-", ok=False,
                         first_mismatch=f"{qual} has a backward but no registered gradient-check case "
                                        "(refdet.testing.register_gradcheck)"))
    for qual in exempt:
        rows.append(dict(target="self", op=f"gradcheck: {qual}", cases=0, agreeing=0, worst_error=0.0, unit="",
                         convention="-", ok=True, skipped=GRADCHECK_EXEMPT[qual.rsplit('.', 1)[1]],
                         first_mismatch=None))
    rows += _invariant_rows(n_cases, seed, progress)
    rows += _roi_self_rows(n_cases, seed, progress)
    return rows


def _roi_self_rows(n_cases, seed, progress):
    """The RoI conformance checks run on refdet's readable loop references (refdet.reference.roi)."""
    from refdet.reference.roi import roi_align_reference, roi_level_reference, roi_pool_reference
    from refdet.testing.conformance import check_assign_roi_levels, check_roi_align, check_roi_pool

    def levels(boxes):
        return np.array([roi_level_reference(b, eps_outside=1e-6) for b in boxes], np.int64)

    rows = []
    for name, check, fn in (
            ("roi_align vs loop reference", check_roi_align,
             lambda x, r, size, scale, sr, al: roi_align_reference(x, r, size, scale, sr, al)),
            ("roi_pool vs loop reference", check_roi_pool,
             lambda x, r, size, scale: roi_pool_reference(x, r, size, scale)[0]),
            ("assign_roi_levels vs loop reference", check_assign_roi_levels, levels)):
        cb = None if progress is None else (lambda rep, name=name: progress(f"self {name}: {rep.cases} cases"))
        rep = check(fn, n_cases=n_cases, seed=seed, raise_on_failure=False, progress=cb)
        rep.op = name
        rows.append(_row("self", rep))
    return rows
