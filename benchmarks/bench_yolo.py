"""YOLO family: refdet.yolo against ultralytics 8.4 (same process, 1 thread, float32).

Issue 16 targets, each at most 1x ultralytics on the CPU:

* ``task_aligned_assign``: 8400 anchor points (a 640 x 640 image at strides 8, 16, 32) x 50 ground
  truths x 80 classes, batch 8, against ``TaskAlignedAssigner(topk=10, alpha=0.5, beta=6)`` (the
  v8 loss's settings);
* ``yolo_non_max_suppression``: 8400 candidates x 80 classes, one image (``conf 0.25``, ``iou 0.7``,
  the predictor's defaults), against ``ultralytics.utils.nms.non_max_suppression``;
* DFL decode of 8400 x 4 x 16 logits (softmax, expectation, ``dist2bbox``, times the stride) against
  ultralytics' inference path ``dist2bbox(DFL(box), anchors, xywh=True) * strides``.

Each side gets its native layout of the same numbers (ultralytics channels-first tensors, refdet
channels-last arrays), and the results are checked equal once at setup (the assigner against
ultralytics with a stable top-k: ``torch.topk``'s order among equal values is unspecified).
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none
from refdet.yolo.anchors import make_anchors
from refdet.yolo.assign import target_scores, task_aligned_assign
from refdet.yolo.decode import dfl_decode_forward
from refdet.yolo.nms import yolo_non_max_suppression

_SIZES, _STRIDES = [(80, 80), (40, 40), (20, 20)], [8.0, 16.0, 32.0]


def _ultra(module):
    try:
        import importlib
        return importlib.import_module(f"ultralytics.{module}")
    except ImportError:
        return None


_HAVE = torch_or_none() is not None and _ultra("utils.tal") is not None


# ------------------------------------------------------------------------------------------ TAL

def _tal_setup(B=8, M=50, K=80):
    def setup():
        rng = np.random.default_rng(0)
        ap, st = make_anchors(_SIZES, _STRIDES)
        pts = (ap * st).astype(np.float32)
        N = pts.shape[0]
        xy = rng.uniform(0, 560, (B, M, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 200, (B, M, 2))], -1).clip(0, 640).astype(np.float32)
        mask = np.ones((B, M), bool)
        mask[:, M - 10:] = rng.random((B, 10)) < 0.5                       # some padded rows
        gt[~mask] = 0
        lab = rng.integers(0, K, (B, M))
        c = pts[None] + rng.normal(0, 8, (B, N, 2))
        wh = np.exp(rng.normal(3.5, 0.8, (B, N, 2)))
        pb = np.concatenate([c - wh / 2, c + wh / 2], -1).astype(np.float32)
        ps = (1 / (1 + np.exp(-rng.normal(-3, 2, (B, N, K))))).astype(np.float32)
        state = dict(ps=ps, pb=pb, pts=pts, lab=lab, gt=gt, mask=mask, K=K)
        if _HAVE:
            import torch
            tal = _ultra("utils.tal")
            state["ultra"] = tal.TaskAlignedAssigner(topk=10, num_classes=K, alpha=0.5, beta=6.0, stride=_STRIDES)
            state["t"] = [torch.from_numpy(v) for v in (ps, pb, pts, lab[..., None].astype(np.float32), gt,
                                                         mask[..., None].astype(np.float32))]

            class Stable(tal.TaskAlignedAssigner):
                def select_topk_candidates(self, metrics, topk_mask=None):
                    idx = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., :self.topk]
                    idx = idx.masked_fill(~topk_mask, 0)
                    cnt = torch.zeros(metrics.shape, dtype=torch.int8)
                    cnt.scatter_add_(-1, idx, torch.ones_like(idx, dtype=torch.int8))
                    return cnt.masked_fill_(cnt > 1, 0)

            _, _, ts, fg, _ = Stable(topk=10, num_classes=K, alpha=0.5, beta=6.0, stride=_STRIDES)(*state["t"])
            got = _tal(state)
            assert np.array_equal(got.fg_mask, fg.numpy()), "refdet and ultralytics TAL disagree"
            np.testing.assert_allclose(target_scores(got, K), ts.numpy(), rtol=1e-4, atol=1e-5)
        return state
    return setup


def _tal(s):
    return task_aligned_assign(s["ps"], s["pb"], s["pts"], s["lab"], s["gt"], s["mask"], strides=_STRIDES,
                               topk=10, alpha=0.5)


def _tal_ultra(s):
    return s["ultra"](*s["t"])


# ------------------------------------------------------------------------------------------ NMS

def _nms_setup(K=80):
    def setup():
        rng = np.random.default_rng(1)
        ap, st = make_anchors(_SIZES, _STRIDES)
        N = ap.shape[0]
        c = ap * st + rng.normal(0, 4, (N, 2))
        wh = np.exp(rng.normal(3.5, 0.7, (N, 2)))
        sc = 1 / (1 + np.exp(-rng.normal(-2.5, 1.5, (N, K))))
        pred = np.concatenate([c, wh, sc], 1).T[None].astype(np.float32).copy()      # (1, 84, 8400)
        state = dict(pred=pred)
        if _HAVE:
            import torch
            import torchvision  # noqa: F401 (ultralytics uses torchvision.ops.nms once it is imported)
            state["t"] = torch.from_numpy(pred)
            ref = _ultra("utils.nms").non_max_suppression(state["t"], 0.25, 0.7)[0].numpy()
            got = _nms(state)[0]
            assert np.array_equal(ref, got), "refdet and ultralytics NMS disagree"
            state["n_cand"] = int((pred[0, 4:].max(0) > 0.25).sum())
        return state
    return setup


def _nms(s):
    return yolo_non_max_suppression(s["pred"], 0.25, 0.7)


def _nms_ultra(s):
    return _ultra("utils.nms").non_max_suppression(s["t"], 0.25, 0.7)


# ------------------------------------------------------------------------------------------ DFL

def _dfl_setup(R=16):
    def setup():
        rng = np.random.default_rng(2)
        ap, st = make_anchors(_SIZES, _STRIDES)
        N = ap.shape[0]
        z = (rng.standard_normal((1, N, 4 * R)) * 3).astype(np.float32)
        state = dict(z=z, ap=ap, st=st)
        if _HAVE:
            import torch
            block = _ultra("nn.modules.block")
            state["dfl"] = block.DFL(R)
            state["box"] = torch.from_numpy(np.ascontiguousarray(z.transpose(0, 2, 1)))  # (1, 64, N)
            state["anc"] = torch.from_numpy(np.ascontiguousarray(ap.T))[None]
            state["str"] = torch.from_numpy(np.ascontiguousarray(st.T))
            ref = _dfl_ultra(state).numpy().transpose(0, 2, 1)
            got = _dfl(state)
            # float32: the coordinates are differences of terms up to stride * (cells + reg_max)
            assert np.max(np.abs(got - ref)) <= 1e-6 * np.max(np.abs(ref)), "DFL decodes disagree"
        return state
    return setup


def _dfl(s):
    return dfl_decode_forward(s["z"], s["ap"], s["st"])[0]


def _dfl_ultra(s):
    import torch
    tal = _ultra("utils.tal")
    with torch.no_grad():
        return tal.dist2bbox(s["dfl"](s["box"]), s["anc"], xywh=True, dim=1) * s["str"]


BENCHMARKS = [
    Bench("task_aligned_assign 8x8400x50 gts x80 cls f32", _tal_setup(), _tal, _tal_ultra if _HAVE else None,
          "ultralytics TaskAlignedAssigner", target=1.0, repeat=5),
    Bench("yolo_non_max_suppression 8400 x 80 cls f32", _nms_setup(), _nms, _nms_ultra if _HAVE else None,
          "ultralytics non_max_suppression", target=1.0),
    Bench("dfl decode 8400 x 4 x 16 f32", _dfl_setup(), _dfl, _dfl_ultra if _HAVE else None,
          "ultralytics DFL + dist2bbox", target=1.0),
]
