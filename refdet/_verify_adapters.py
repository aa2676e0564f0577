"""The backends ``refdet verify`` runs (:mod:`refdet.verify`): adapters that map each backend's op to
refdet's signature (NumPy in, NumPy out), one factory per target.

A factory returns ``{op: dict(fn=..., [grad=...], [convention=...], [other check options])}``; the
check of :mod:`refdet.testing.conformance` named ``op`` is run with those. torch, torchvision, onnx,
onnxruntime and ultralytics are imported only inside the factories, when their target runs.
:data:`refdet.verify.TARGETS` (the registry) lists the factories.
"""
from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------------------------
# adapters: {op: dict(fn=..., [grad=...], [convention=...], [other check options])}
# ---------------------------------------------------------------------------------------------------

def _torchvision_adapters():
    import torch
    import torchvision
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    torch.set_num_threads(1)
    ops = torchvision.ops

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def match(q):
        if q.shape[1] == 0:      # torchvision raises on 0 anchors; compare the other rules
            return np.zeros(0, np.int64)
        return det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)(T(q)).numpy()

    coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def anchors(image_size, feature_sizes, strides, sizes, aspect_ratios):
        gen = AnchorGenerator(sizes=tuple(tuple(s) for s in sizes),
                              aspect_ratios=tuple(tuple(float(r) for r in a) for a in aspect_ratios))
        h, w = image_size
        images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
        feats = [torch.zeros(1, 1, fh, fw) for fh, fw in feature_sizes]
        return gen(images, feats)[0].numpy()

    def focal(x, t):
        return ops.sigmoid_focal_loss(T(x), T(t), alpha=0.25, gamma=2.0, reduction="none").numpy()

    def focal_grad(x, t, dloss):
        xt = T(x).clone().requires_grad_(True)
        loss = ops.sigmoid_focal_loss(xt, T(t), alpha=0.25, gamma=2.0, reduction="none")
        (loss * T(dloss)).sum().backward()
        return xt.grad.numpy()

    def relu_grad(x, dy):
        xt = T(x).clone().requires_grad_(True)
        (torch.relu(xt) * T(dy)).sum().backward()
        return xt.grad.numpy()

    def conv(x, w, b, *, stride, padding, dilation, groups):
        return torch.nn.functional.conv2d(T(x), T(w), None if b is None else T(b), stride=stride, padding=padding,
                                          dilation=dilation, groups=groups).numpy()

    sampler = det_utils.BalancedPositiveNegativeSampler(256, 0.5)

    def sample(labels):
        pos, neg = sampler([T(labels)])
        return pos[0].numpy().astype(bool), neg[0].numpy().astype(bool)

    return {
        "nms": dict(fn=lambda b, s, t: ops.nms(T(b), T(s), t).numpy()),
        "batched_nms": dict(fn=lambda b, s, i, t: ops.batched_nms(T(b), T(s), T(i), t).numpy()),
        "box_iou": dict(fn=lambda a, b: ops.box_iou(T(a), T(b)).numpy()),
        "generalized_box_iou": dict(fn=lambda a, b: ops.generalized_box_iou(T(a), T(b)).numpy()),
        "match": dict(fn=match),
        "encode_boxes": dict(fn=lambda b, a: coder.encode_single(T(b), T(a)).numpy()),
        "decode_boxes": dict(fn=lambda d, a: coder.decode_single(T(d), T(a)).numpy()),
        "anchors": dict(fn=anchors),
        "focal_loss": dict(fn=focal, grad=focal_grad),
        "relu": dict(fn=lambda x: torch.relu(T(x)).numpy(), grad=relu_grad),
        "conv2d": dict(fn=conv, dtype=np.float64),
        "sample_balanced": dict(fn=sample),
    }


def _onnx_node_runner(kind):
    """``run(node_type, inputs: list of (name, array), attrs) -> first output`` for ``kind``."""
    import onnx
    from onnx import TensorProto, helper

    dtypes = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
              np.dtype(np.int64): TensorProto.INT64}

    def run(op_type, inputs, attrs, out_type):
        ins = [helper.make_tensor_value_info(n, dtypes[a.dtype], list(a.shape)) for n, a in inputs]
        node = helper.make_node(op_type, [n for n, _ in inputs], ["y"], **attrs)
        graph = helper.make_graph([node], "refdet_verify", ins, [helper.make_tensor_value_info("y", out_type, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        model.ir_version = min(model.ir_version, 9)
        feed = {n: a for n, a in inputs}
        if kind == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            return sess.run(None, feed)[0]
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, feed)[0]

    return run, onnx, dtypes


def _onnx_adapters(kind):
    run, onnx, dtypes = _onnx_node_runner(kind)
    from onnx import TensorProto

    def nms(b, s, thr):
        n = len(b)
        if n == 0:
            return np.zeros(0, np.int64)
        out = run("NonMaxSuppression", [("boxes", b.astype(np.float32)[None]),
                                        ("scores", s.astype(np.float32)[None, None]),
                                        ("max_output", np.array([n], np.int64)),
                                        ("iou_threshold", np.array([thr], np.float32))], {}, TensorProto.INT64)
        return np.asarray(out)[:, 2]

    def relu(x):
        return run("Relu", [("x", x)], {}, dtypes[x.dtype])

    def conv(x, w, b, *, stride, padding, dilation, groups):
        def pair(v):
            return list(v) if isinstance(v, (tuple, list)) else [v, v]
        p = pair(padding)
        ins = [("x", x), ("w", w)] + ([("b", b)] if b is not None else [])
        return run("Conv", ins, dict(strides=pair(stride), pads=[p[0], p[1], p[0], p[1]], dilations=pair(dilation),
                                     group=groups), dtypes[x.dtype])

    return {
        "nms": dict(fn=nms, convention="onnx"),
        "relu": dict(fn=relu),
        "conv2d": dict(fn=conv, dtype=np.float32),
    }


def _ultralytics_adapters():
    """ultralytics' own functions behind refdet's signatures (the YOLO conformance checks).

    One change, stated where it is made: ``TaskAlignedAssigner.select_topk_candidates`` calls
    ``torch.topk``, whose order among equal alignments is unspecified (on the CPU it follows the
    partition, not the index); the adapter replaces that one method by a stable sort (lowest index
    first among equals, refdet's documented rule). Everything else is ultralytics' code.
    """
    import torch
    import torchvision  # noqa: F401  (ultralytics' NMS calls torchvision.ops.nms when torchvision is imported,
    #                    as in every ultralytics run; its TorchNMS fallback sorts with an unstable argsort)
    from ultralytics.nn.modules.block import DFL
    from ultralytics.utils import loss as uloss
    from ultralytics.utils import nms as unms
    from ultralytics.utils import tal

    torch.set_num_threads(1)

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    class StableTopkTAL(tal.TaskAlignedAssigner):
        def select_topk_candidates(self, metrics, topk_mask=None):
            k = min(self.topk, metrics.shape[-1])
            topk_idxs = torch.sort(metrics, dim=-1, descending=True, stable=True).indices[..., :k]
            if topk_mask is None:
                topk_mask = (metrics.gather(-1, topk_idxs).max(-1, keepdim=True)[0] > self.eps).expand_as(topk_idxs)
            topk_idxs = topk_idxs.masked_fill(~topk_mask, 0)
            count = torch.zeros(metrics.shape, dtype=torch.int8)
            count.scatter_add_(-1, topk_idxs, torch.ones_like(topk_idxs, dtype=torch.int8))
            count.masked_fill_(count > 1, 0)
            return count

    def make_anchors(sizes, strides):
        feats = [torch.zeros(1, 1, h, w, dtype=torch.float64) for h, w in sizes]
        p, st = tal.make_anchors(feats, torch.tensor(strides, dtype=torch.float64), 0.5)
        return p.numpy(), st.numpy()

    def dfl_decode(z, ap, st):
        r = z.shape[-1] // 4
        box = T(z).permute(0, 2, 1)                                    # (B, 4 R, N): Detect's layout
        dfl = DFL(r).to(box.dtype) if r > 1 else torch.nn.Identity()
        with torch.no_grad():
            out = tal.dist2bbox(dfl(box), T(ap).T.unsqueeze(0), xywh=True, dim=1) * T(st).T
        return out.numpy().transpose(0, 2, 1)

    def assign(ps, pb, ap, gl, gb, gm, *, strides, topk, alpha, beta):
        a = StableTopkTAL(topk=topk, num_classes=ps.shape[-1], alpha=alpha, beta=beta, stride=list(strides))
        out = a(T(ps), T(pb), T(ap), T(gl[..., None].astype(ps.dtype)), T(gb.astype(ps.dtype)),
                T(gm[..., None].astype(ps.dtype)))
        return tuple(o.numpy() for o in out)

    def nms(p, conf, iou):
        return [r.numpy() for r in unms.non_max_suppression(T(p), conf, iou)]

    def dfl_loss(z, y, dloss=None):
        zt = T(z).clone().requires_grad_(dloss is not None)
        out = uloss.DFLoss(z.shape[-1])(zt, T(y).clone().view(-1, 1)).view(-1)   # one distribution per row
        if dloss is None:
            return out.detach().numpy()
        (out * T(dloss)).sum().backward()
        return zt.grad.numpy()

    def vfl(z, q, lab, dloss=None):
        # VarifocalLoss reduces (mean over axis 1, then sum): one element per call gives the elementwise loss
        crit = uloss.VarifocalLoss()
        out = np.zeros(z.shape)
        for idx in np.ndindex(z.shape):
            zt = T(np.asarray(z[idx]).reshape(1, 1)).clone().requires_grad_(dloss is not None)
            v = crit(zt, T(np.asarray(q[idx], z.dtype).reshape(1, 1)), T(np.asarray(lab[idx], z.dtype).reshape(1, 1)))
            if dloss is None:
                out[idx] = float(v)
            else:
                v.backward()
                out[idx] = float(zt.grad) * float(dloss[idx])
        return out

    return {
        "make_anchors": dict(fn=make_anchors),
        "dfl_decode": dict(fn=dfl_decode),
        "task_aligned_assign": dict(fn=assign),
        "yolo_nms": dict(fn=nms),
        "distribution_focal_loss": dict(fn=dfl_loss, grad=lambda z, y, d: dfl_loss(z, y, d)),
        # ultralytics computes the BCE in float32 (pred_score.float()): float32 cases only
        "varifocal_loss": dict(fn=vfl, grad=lambda z, q, lab, d: vfl(z, q, lab, d), dtypes=(np.float32,)),
    }


# --- RoI operators, FPN levels, proposal selection (issue 14): adapters chained onto the targets above ---

def _torchvision_roi_adapters():
    """torchvision's ``ops.roi_align`` / ``ops.roi_pool``, ``poolers.LevelMapper`` (P2-P5) and
    ``RegionProposalNetwork.filter_proposals`` (test mode, its default counts) in refdet's signatures."""
    import torch
    import torchvision
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    from torchvision.ops.poolers import LevelMapper

    torch.set_num_threads(1)
    ops = torchvision.ops

    def T(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
        return ops.roi_align(T(x), T(rois), output_size, spatial_scale, sampling_ratio, aligned).numpy()

    def roi_pool(x, rois, output_size, spatial_scale):
        return ops.roi_pool(T(x), T(rois), output_size, spatial_scale).numpy()

    mapper = LevelMapper(2, 5)

    def levels(boxes):
        return mapper([T(boxes)]).numpy()

    rpn = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), 0.7, 0.3, 256, 0.5,
                                dict(training=2000, testing=1000), dict(training=2000, testing=1000), 0.7,
                                score_thresh=0.0).eval()

    def proposals(p, o, image_sizes, counts):
        with torch.no_grad():
            b, s = rpn.filter_proposals(T(p), T(o), [tuple(v) for v in image_sizes], list(counts))
        return [v.numpy() for v in b], [v.numpy() for v in s]

    return {
        "roi_align": dict(fn=roi_align),
        "roi_pool": dict(fn=roi_pool),
        "assign_roi_levels": dict(fn=levels),
        "filter_proposals": dict(fn=proposals),
    }


def _onnx_roi_adapters(kind):
    """ONNX ``RoiAlign`` (opset 19: ``coordinate_transformation_mode`` half_pixel for ``aligned=True``,
    output_half_pixel for ``aligned=False``; ``sampling_ratio`` 0 = adaptive) run by ``kind``."""
    run, _, dtypes = _onnx_node_runner(kind)

    def roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned):
        attrs = dict(output_height=int(output_size[0]), output_width=int(output_size[1]),
                     sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=float(spatial_scale), mode="avg",
                     coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")
        return run("RoiAlign", [("X", x), ("rois", np.ascontiguousarray(rois[:, 1:])),
                                ("batch_indices", rois[:, 0].astype(np.int64))], attrs, dtypes[x.dtype])

    # the float attribute spatial_scale is float32 in the model: only scales exact in float32 compare
    return {"roi_align": dict(fn=roi_align, convention="onnx", spatial_scales=(1.0, 0.5, 0.25, 0.125))}
