"""``refdet verify opencv`` / ``refdet verify openvino``: each runtime's op behind the signature its
conformance check expects (:mod:`refdet.testing.conformance_runtimes`). The runtimes are imported
only when a factory runs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["opencv_adapters", "opencv_layer", "openvino_adapters", "openvino_runner"]


def opencv_adapters():
    """``cv2.dnn`` functions in the signatures of the ``check_opencv_*`` checks."""
    import importlib.util

    import cv2

    methods = {"linear": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_LINEAR, "gaussian": cv2.dnn.SOFT_NMSMETHOD_SOFTNMS_GAUSSIAN}

    def nms(r, s, st, t, eta, k):
        return np.asarray(cv2.dnn.NMSBoxes(r, s, st, t, eta, k)).ravel()

    def batched(r, s, c, st, t, eta, k):
        return np.asarray(cv2.dnn.NMSBoxesBatched(r, s, np.asarray(c, np.int32), st, t, eta, k)).ravel()

    def soft(r, s, st, t, k, sig, m):
        us, ind = cv2.dnn.softNMSBoxes(r, s, st, t, k, sig, methods[m])
        return np.asarray(ind).ravel(), np.asarray(us, np.float32).ravel()

    ops = {
        "opencv_nms_boxes": dict(fn=nms),
        "opencv_nms_boxes_batched": dict(fn=batched),
        "opencv_soft_nms_boxes": dict(fn=soft),
        "opencv_blob_from_image": dict(fn=lambda img, sf, size, mean, swap, crop: cv2.dnn.blobFromImage(
            img, sf, size, mean, swap, crop)),
    }
    if importlib.util.find_spec("onnx") is None:         # the SSD layers are reached through the ONNX importer
        return ops
    return {
        **ops,
        "opencv_prior_box": dict(fn=lambda layer_shape, image_shape, attrs: opencv_layer(
            "PriorBox", [np.zeros((1, 1, *layer_shape), np.float32), np.zeros((1, 1, *image_shape), np.float32)],
            attrs)[0]),
        "opencv_detection_output": dict(fn=lambda loc, conf, priors, attrs: opencv_layer(
            "DetectionOutput", [loc, conf, priors], attrs)[0, 0]),
    }


def opencv_layer(op_type, inputs, attrs):
    """Run OpenCV dnn's own layer ``op_type`` (``"PriorBox"``, ``"DetectionOutput"``: Caffe's layers) on
    float32 ``inputs`` with the layer parameters ``attrs`` (prototxt field -> value; bools as 0/1).

    OpenCV 5.x has no Caffe importer; its ONNX importer builds a node whose ``op_type`` is a registered
    layer name with the node's attributes as the layer's parameters, which is how the layer is reached
    here (OpenCV 4.x does the same). Needs ``onnx`` to write the one-node model.
    """
    from refdet import _checks

    if not isinstance(op_type, str) or not op_type.isidentifier():
        raise ValueError(f"`op_type` must be the name of an OpenCV dnn layer (\"PriorBox\"); got {op_type!r}")
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"`inputs` must be a non-empty list of arrays; got {type(inputs).__name__}")
    arrays = [np.ascontiguousarray(_checks.as_float_array(a, f"inputs[{i}]", finite=False, dtype=np.float32))
              for i, a in enumerate(inputs)]
    if not isinstance(attrs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in attrs):
        raise TypeError(f"`attrs` must be a dict of parameter name -> value; got {type(attrs).__name__}")
    conv = {}
    for k, v in attrs.items():
        if isinstance(v, (bool, np.bool_)):
            conv[k] = int(v)
        elif isinstance(v, str):
            conv[k] = v
        elif isinstance(v, (int, float, np.integer, np.floating)):
            conv[k] = v.item() if isinstance(v, np.generic) else v
        else:
            a = np.asarray(v) if isinstance(v, (list, tuple, np.ndarray)) else None
            if a is None or a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iuf":
                raise TypeError(f"`attrs['{k}']` must be a bool, a number, a string or a non-empty list of numbers; "
                                f"got {v!r}")
            conv[k] = a.tolist()
    import cv2
    from onnx import TensorProto, helper

    names = [f"in{i}" for i in range(len(arrays))]
    node = helper.make_node(op_type, names, ["out"], domain="refdet.opencv", **conv)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in zip(names, arrays)]
    graph = helper.make_graph([node], "refdet_opencv_layer", ins,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("refdet.opencv", 1)])
    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
        for n, a in zip(names, arrays):
            net.setInput(a, n)
        return np.asarray(net.forward())
    except cv2.error as exc:                            # which argument OpenCV objects to, it does not say
        msg = " ".join(str(exc).split())[-300:]
        raise ValueError(f"OpenCV dnn cannot build or run the layer `op_type` {op_type!r} with these `attrs` on "
                         f"these `inputs`: {msg}") from None


# ---------------------------------------------------------------------------------------------------
# OpenVINO: one-op models built with the opset API, compiled for the CPU plugin
# ---------------------------------------------------------------------------------------------------

class _OVRunner:
    """Compile ``build(*parameters) -> node or outputs`` for given input shapes/dtypes on "CPU" (f32
    inference precision) and run it. Compiled models are cached by (key, shapes, dtypes)."""

    def __init__(self):
        import openvino as ov

        self.ov = ov
        self.core = ov.Core()
        self.cache = {}

    def run(self, key, build, inputs):
        ov = self.ov
        import openvino.opset9 as ops

        sig = (key, tuple((np.asarray(a).shape, np.asarray(a).dtype.str) for a in inputs))
        compiled = self.cache.get(sig)
        if compiled is None:
            params = [ops.parameter(list(np.asarray(a).shape), np.asarray(a).dtype) for a in inputs]
            node = build(*params)
            outs = node.outputs() if hasattr(node, "outputs") else node
            # f32: on CPUs with native bf16 the plugin's default inference precision is bf16, which rounds
            # e.g. ROIPooling's RoI coordinates to 8 significant bits (sample positions off by 0.02 px)
            compiled = self.core.compile_model(ov.Model(outs, params), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            if len(self.cache) > 256:
                self.cache.clear()
            self.cache[sig] = compiled
        res = compiled([np.ascontiguousarray(a) for a in inputs])
        return [np.asarray(res[o]) for o in compiled.outputs]


_RUNNER = None


def openvino_runner():
    """The shared :class:`_OVRunner` (imports openvino on first use)."""
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = _OVRunner()
    return _RUNNER


def openvino_nms(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold, soft_nms_sigma,
                 box_encoding="corner", sort_result_descending=True):
    """OpenVINO NonMaxSuppression-9 on the CPU plugin -> (selected_indices int64, selected_scores, valid)."""
    import openvino.opset9 as ops

    def build(b, s):
        return ops.non_max_suppression(
            b, s, np.array(max_output_boxes_per_class, np.int64), np.array(iou_threshold, np.float32),
            np.array(score_threshold, np.float32), np.array(soft_nms_sigma, np.float32), box_encoding=box_encoding,
            sort_result_descending=bool(sort_result_descending), output_type="i64")
    key = ("nms", int(max_output_boxes_per_class), float(iou_threshold), float(score_threshold),
           float(soft_nms_sigma), box_encoding, bool(sort_result_descending))
    ind, sc, valid = openvino_runner().run(key, build, [np.asarray(boxes, np.float32), np.asarray(scores, np.float32)])
    return ind.astype(np.int64), sc.astype(np.float32), int(np.asarray(valid).ravel()[0])


def openvino_adapters():
    """OpenVINO opset-9 operators on the CPU plugin in the signatures of the ``check_openvino_*`` checks."""
    openvino_runner()
    return {
        "openvino_nms": dict(fn=openvino_nms),
        "openvino_prior_box": dict(fn=openvino_prior_box),
        "openvino_prior_box_clustered": dict(fn=lambda ls, im, attrs: openvino_prior_box(ls, im, attrs, clustered=True)),
        "openvino_fake_quantize": dict(fn=openvino_fake_quantize),
        "openvino_roi_align": dict(fn=openvino_roi_align),
        "openvino_roi_pooling": dict(fn=openvino_roi_pooling),
        "openvino_interpolate": dict(fn=openvino_interpolate),
    }


def openvino_prior_box(layer_shape, image_shape, attrs, *, clustered=False, constant=True):
    """OpenVINO PriorBox (opset 8) / PriorBoxClustered on the CPU plugin. ``constant=True`` feeds the shapes
    as constants (the op is folded at compile time, as in every real model); False as parameters (the
    CPU plugin's own node)."""
    import openvino as ov
    import openvino.opset9 as ops

    if clustered:
        # the opset1 docstring names the attributes widths / heights / step_widths / step_heights, but the node
        # reads width / height / step_w / step_h and silently ignores the documented names (zero priors)
        names = {"widths": "width", "heights": "height", "step_widths": "step_w", "step_heights": "step_h"}
        attrs = {names.get(k, k): v for k, v in attrs.items()}
    ls = np.asarray(layer_shape, np.int64)
    im = np.asarray(image_shape, np.int64)
    fn = ops.prior_box_clustered if clustered else ops.prior_box
    r = openvino_runner()
    if constant:
        node = fn(ops.constant(ls), ops.constant(im), dict(attrs))
        compiled = r.core.compile_model(ov.Model(node.outputs(), []), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.asarray(compiled([])[compiled.outputs[0]])
    key = ("prior_box_clustered" if clustered else "prior_box", repr(sorted(attrs.items())))
    return r.run(key, lambda a, b: fn(a, b, dict(attrs)), [ls, im])[0]


def openvino_fake_quantize(x, input_low, input_high, output_low, output_high, levels):
    """OpenVINO FakeQuantize on the CPU plugin (float32; ranges as constants, f32 inference precision)."""
    import openvino as ov
    import openvino.opset9 as ops

    r = openvino_runner()
    x = np.asarray(x, np.float32)
    p = ops.parameter(list(x.shape), np.float32)
    cs = [ops.constant(np.asarray(v, np.float32)) for v in (input_low, input_high, output_low, output_high)]
    node = ops.fake_quantize(p, *cs, int(levels))
    compiled = r.core.compile_model(ov.Model(node.outputs(), [p]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled([x])[compiled.outputs[0]])


def openvino_roi_align(features, rois, batch_indices, pooled_h, pooled_w, sampling_ratio, spatial_scale, mode,
                       aligned_mode):
    """OpenVINO ROIAlign-9 on the CPU plugin (f32)."""
    import openvino.opset9 as ops

    def build(x, r, b):
        return ops.roi_align(x, r, b, int(pooled_h), int(pooled_w), int(sampling_ratio), float(spatial_scale), mode,
                             aligned_mode)
    key = ("roi_align", int(pooled_h), int(pooled_w), int(sampling_ratio), float(spatial_scale), mode, aligned_mode)
    return openvino_runner().run(key, build, [np.asarray(features, np.float32), np.asarray(rois, np.float32),
                                             np.asarray(batch_indices, np.int32)])[0]



def openvino_roi_pooling(features, rois, output_size, spatial_scale, method):
    """OpenVINO ROIPooling on the CPU plugin (f32)."""
    import openvino.opset9 as ops

    key = ("roi_pooling", tuple(int(v) for v in output_size), float(spatial_scale), method)
    return openvino_runner().run(key, lambda x, r: ops.roi_pooling(x, r, [int(v) for v in output_size],
                                                                   float(spatial_scale), method),
                                 [np.asarray(features, np.float32), np.asarray(rois, np.float32)])[0]


def openvino_interpolate(x, sizes, axes, mode, coordinate_transformation_mode, nearest_mode, cube_coeff=-0.75):
    """OpenVINO Interpolate-11 (``shape_calculation_mode="sizes"``) on the CPU plugin (f32)."""
    import openvino.opset11 as o11

    def build(p):
        return o11.interpolate(p, np.array(sizes, np.int64), mode, "sizes", axes=np.array(axes, np.int64),
                               coordinate_transformation_mode=coordinate_transformation_mode,
                               nearest_mode=nearest_mode, cube_coeff=float(cube_coeff))
    key = ("interpolate", tuple(int(v) for v in sizes), tuple(int(v) for v in axes), mode,
           coordinate_transformation_mode, nearest_mode, float(cube_coeff))
    return openvino_runner().run(key, build, [np.asarray(x, np.float32)])[0]
