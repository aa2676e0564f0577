"""Seeds of the fuzz walk (tests/test_fuzz_public.py) for refdet.runtimes and the runtimes' conformance
checks: one valid call of every public function of ``refdet.runtimes.{opencv, opencv_ssd, openvino,
openvino_priors, adapters, onnx_runners, tensorflow}`` and of ``refdet.testing.conformance_{opencv,
opencv_ssd, openvino, runtimes}`` (names as :func:`tests.fuzz.seeds.resolve` reads them).

The conformance checks are seeded with refdet's own reproductions as the implementation under test
(2 hypothesis cases); the adapters and runners that need an installed runtime are seeded only when it
is installed (``cv2``, ``openvino``, ``onnx``); :data:`LEFT_OUT` names what is not walked and why.
"""
import importlib.util

import numpy as np

import refdet.runtimes.adapters  # noqa: F401  (makes the modules reachable as attributes)
import refdet.runtimes.onnx_runners  # noqa: F401
import refdet.runtimes.opencv  # noqa: F401
import refdet.runtimes.opencv_ssd  # noqa: F401
import refdet.runtimes.openvino  # noqa: F401
import refdet.runtimes.openvino_priors  # noqa: F401
import refdet.runtimes.tensorflow  # noqa: F401
import refdet.testing.conformance_opencv  # noqa: F401
import refdet.testing.conformance_opencv_ssd  # noqa: F401
import refdet.testing.conformance_openvino  # noqa: F401
import refdet.testing.conformance_runtimes  # noqa: F401
from refdet.runtimes import opencv as CV
from refdet.runtimes import opencv_ssd as SSD
from refdet.runtimes import openvino as OV
from tests.contract import Case

F = np.float32
HAVE = {m: importlib.util.find_spec(m) is not None for m in ("cv2", "openvino", "onnx", "tensorflow")}


def _rects(r, n=8, integer=True):
    xy = r.integers(0, 20, (n, 2))
    wh = r.integers(1, 12, (n, 2))
    out = np.concatenate([xy, wh], axis=1)
    return out.astype(np.int32) if integer else out.astype(np.float64) + r.random((n, 4))


def _scores(r, n=8):
    return (r.integers(0, 8, n) / 8).astype(F)


def _corners(r, n=6, scale=1.0):
    a = np.sort(r.random((n, 2, 2)) * scale, axis=1)
    return a.reshape(n, 4)[:, [0, 2, 1, 3]].astype(F)


def _ssd_inputs(r, P=5, C=3):
    pr = np.stack([_corners(r, P).ravel(), np.tile(F([0.1, 0.1, 0.2, 0.2]), P)])[None]
    return (r.standard_normal((2, P * 4)) * 0.3).astype(F), r.random((2, P * C)).astype(F), pr


# -- refdet's reproductions in the signatures of the conformance checks ------------------------------------

def _cv_nms(r, s, st, t, eta, k):
    return CV.nms_boxes(r, s, st, t, eta=eta, top_k=k)


def _cv_batched(r, s, c, st, t, eta, k):
    return CV.nms_boxes_batched(r, s, c, st, t, eta=eta, top_k=k)


def _cv_soft(r, s, st, t, k, sig, m):
    res = CV.soft_nms_boxes(r, s, st, t, top_k=k, sigma=sig, method=m)
    return res.indices, res.scores


def _cv_blob(img, sf, size, mean, swap, crop):
    return CV.blob_from_image(img, sf, size, mean, swap, crop)


def _cv_prior_box(ls, im, attrs):
    return SSD.prior_box(ls, im, **attrs)


def _cv_detection_output(loc, conf, pri, attrs):
    from refdet.testing.conformance_opencv_ssd import _do_kwargs

    return SSD.detection_output(loc, conf, pri, **_do_kwargs(attrs)).detections


def _ov_nms(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold, soft_nms_sigma,
            box_encoding="corner", sort_result_descending=True):
    r = OV.non_max_suppression(boxes, scores, max_output_boxes_per_class, iou_threshold, score_threshold,
                               soft_nms_sigma, box_encoding=box_encoding, sort_result_descending=sort_result_descending)
    return r.selected_indices, r.selected_scores, r.valid_outputs


def _ov_prior_box(ls, im, attrs):
    return OV.prior_box(ls, im, **attrs)


def _ov_prior_box_clustered(ls, im, attrs):
    return OV.prior_box_clustered(ls, im, **attrs)


def _conf(impl, n_cases=2):
    return lambda r: ((impl,), dict(n_cases=n_cases, seed=0, raise_on_failure=False))


def _onnx_relu():
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([node], "relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def _run_model(r):
    return (_onnx_relu(), {"x": r.standard_normal((2, 3)).astype(F)}, ["y"]), {}


_CONF_ONLY = ("fn", "n_cases", "seed", "raise_on_failure", "progress")

CASES = [
    Case("runtimes.opencv.rect_overlap", lambda r: ((_rects(r, 4), _rects(r, 3)), {})),
    Case("runtimes.opencv.nms_boxes", lambda r: ((_rects(r), _scores(r), 0.2, 0.4), {"eta": 0.9, "top_k": 5})),
    Case("runtimes.opencv.nms_boxes", lambda r: ((_rects(r, integer=False), _scores(r), 0.0, 0.5), {})),
    Case("runtimes.opencv.nms_boxes_batched", lambda r: ((_rects(r), _scores(r), r.integers(0, 3, 8), 0.1, 0.5),
                                                         {"top_k": 6})),
    Case("runtimes.opencv.soft_nms_boxes", lambda r: ((_rects(r), _scores(r), 0.1, 0.3),
                                                      {"sigma": 0.5, "method": "gaussian", "top_k": 4})),
    Case("runtimes.opencv.blob_from_image", lambda r: ((r.integers(0, 256, (6, 8, 3)).astype(F), 0.5, (5, 4),
                                                        (1.0, 2.0, 3.0), True, True), {})),
    Case("runtimes.opencv_ssd.prior_box", lambda r: (((3, 4), (60, 80)), dict(min_size=[10.0, 20.0],
                                                                             max_size=[20.0, 40.0],
                                                                             aspect_ratio=[2.0], step=16.0,
                                                                             variance=[0.1, 0.1, 0.2, 0.2]))),
    Case("runtimes.opencv_ssd.prior_box", lambda r: (((2, 2), (40, 40)), dict(width=[8.0, 12.0], height=[10.0, 6.0],
                                                                             offset_h=[0.0, 0.5],
                                                                             offset_w=[0.5, 0.0],
                                                                             normalized_bbox=False,
                                                                             variance=[0.1]))),
    Case("runtimes.opencv_ssd.detection_output", lambda r: (_ssd_inputs(r), dict(num_classes=3, keep_top_k=6,
                                                                                 nms_threshold=0.45,
                                                                                 code_type="CENTER_SIZE",
                                                                                 confidence_threshold=0.2,
                                                                                 top_k=4))),
    Case("runtimes.openvino.non_max_suppression",
         lambda r: ((_corners(r, 6)[None], r.random((1, 2, 6)).astype(F), 3, 0.5, 0.1, 0.0), {})),
    Case("runtimes.openvino.non_max_suppression",
         lambda r: ((_corners(r, 6)[None], r.random((1, 2, 6)).astype(F), 3, 0.5, 0.1, 0.5),
                    {"box_encoding": "center", "sort_result_descending": False})),
    Case("runtimes.openvino.pad_nms_result",
         lambda r: ((OV.non_max_suppression(_corners(r, 6)[None], r.random((1, 2, 6)).astype(F), 3, 0.5, 0.1), 1, 2,
                     6, 3), {})),
    Case("runtimes.openvino.prior_box", lambda r: (((2, 3), (40, 60)), dict(min_size=[8.0], max_size=[16.0],
                                                                           aspect_ratio=[2.0], flip=True, clip=True,
                                                                           step=16.0, offset=0.5,
                                                                           variance=[0.1, 0.1, 0.2, 0.2]))),
    Case("runtimes.openvino.prior_box_clustered", lambda r: (((2, 3), (40, 60)), dict(widths=[8.0, 12.0],
                                                                                     heights=[10.0, 6.0],
                                                                                     step=16.0, offset=0.5))),
    Case("runtimes.openvino.fake_quantize", lambda r: ((r.standard_normal((2, 3, 4)).astype(F), -1.0, 1.0, -2.0, 2.0,
                                                        255), {})),
    Case("runtimes.openvino.roi_align",
         lambda r: ((r.standard_normal((2, 3, 8, 8)).astype(F), _corners(r, 4, 7.0), np.array([0, 1, 1, 0]), 2, 2),
                    {"sampling_ratio": 2, "spatial_scale": 1.0})),
    Case("runtimes.openvino.roi_pooling",
         lambda r: ((r.standard_normal((2, 3, 8, 8)).astype(F),
                     np.concatenate([np.array([[0], [1], [1]], F), _corners(r, 3, 7.0)], axis=1), (2, 2)),
                    {"spatial_scale": 1.0, "method": "max"})),
    Case("runtimes.openvino.interpolate", lambda r: ((r.standard_normal((1, 2, 4, 5)).astype(F), [6, 3], None, [2, 3]),
                                                     {"mode": "linear_onnx"})),
    Case("runtimes.openvino_priors.prior_box", lambda r: (((2, 2), (32, 32)), dict(min_size=[8.0],
                                                                                  aspect_ratio=[2.0, 3.0],
                                                                                  flip=True))),
    Case("runtimes.openvino_priors.prior_box_clustered", lambda r: (((2, 2), (32, 32)), dict(widths=[4.0],
                                                                                            heights=[6.0]))),
    Case("testing.conformance_opencv.opencv_nms_loop", lambda r: ((_rects(r), _scores(r), 0.1, 0.5), {"eta": 0.9})),
    Case("testing.conformance_opencv_ssd.detection_output_order_defined",
         lambda r: (_ssd_inputs(r) + (dict(num_classes=3, keep_top_k=4, nms_threshold=0.5),), {})),
    Case("testing.conformance_openvino.fake_quantize_tolerance",
         lambda r: ((dict(x=r.standard_normal(5).astype(F), input_low=F(-1), input_high=F(1), output_low=F(-1),
                          output_high=F(1), levels=255), r.standard_normal(5).astype(F)), {})),
]

_CHECKS = [
    ("testing.conformance_runtimes.check_opencv_nms_boxes", _cv_nms),
    ("testing.conformance_runtimes.check_opencv_nms_boxes_batched", _cv_batched),
    ("testing.conformance_runtimes.check_opencv_soft_nms_boxes", _cv_soft),
    ("testing.conformance_runtimes.check_opencv_blob_from_image", _cv_blob),
    ("testing.conformance_runtimes.check_opencv_prior_box", _cv_prior_box),
    ("testing.conformance_runtimes.check_opencv_detection_output", _cv_detection_output),
    ("testing.conformance_runtimes.check_openvino_nms", _ov_nms),
    ("testing.conformance_runtimes.check_openvino_prior_box", _ov_prior_box),
    ("testing.conformance_runtimes.check_openvino_prior_box_clustered", _ov_prior_box_clustered),
    ("testing.conformance_runtimes.check_openvino_fake_quantize", OV.fake_quantize),
    ("testing.conformance_runtimes.check_openvino_roi_align", OV.roi_align),
    ("testing.conformance_runtimes.check_openvino_roi_pooling", OV.roi_pooling),
    ("testing.conformance_runtimes.check_openvino_interpolate", OV.interpolate),
]


def _fuzz_case(name, impl):
    from tests.fuzz.seeds import FuzzCase

    return FuzzCase(name, _conf(impl), only=_CONF_ONLY)


def cases():
    """The seeds (the runtime-backed ones only where the runtime is installed)."""
    out = list(CASES) + [_fuzz_case(n, f) for n, f in _CHECKS]
    if HAVE["cv2"]:
        if HAVE["onnx"]:
            out += [Case("runtimes.adapters.opencv_layer",
                         lambda r: (("PriorBox", [np.zeros((1, 1, 2, 2), F), np.zeros((1, 1, 20, 20), F)],
                                     {"min_size": [4.0], "variance": [0.1]}), {})),
                    Case("runtimes.onnx_runners.run_opencv", _run_model)]
    return out


#: public names of the runtimes the walk leaves out: factories without arguments, whose answers are
#: fresh closures over an installed runtime (nothing to vary; ``refdet verify`` runs them); run_openvino,
#: because OpenVINO's CPU plugin cannot always start its threads under the walk's 2 GiB address-space
#: cap ("Resource temporarily unavailable"; tests/test_runtimes_hardening.py holds its validation); and
#: the OpenCV callers when cv2 or onnx is not installed
LEFT_OUT = {"runtimes.adapters.opencv_adapters", "runtimes.adapters.openvino_adapters",
            "runtimes.adapters.openvino_runner", "runtimes.tensorflow.require", "runtimes.tensorflow.adapters",
            "runtimes.tensorflow.onednn_enabled", "runtimes.onnx_runners.run_openvino"}
if not (HAVE["cv2"] and HAVE["onnx"]):
    LEFT_OUT |= {"runtimes.adapters.opencv_layer", "runtimes.onnx_runners.run_opencv"}
