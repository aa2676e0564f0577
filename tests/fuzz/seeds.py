"""Valid calls of every public function: the seeds the fuzz suite varies one argument at a time.

The contract cases of ``tests/contract/*.py`` are reused as they are; :data:`EXTRA` adds the public
names the contract does not walk: ``refdet.testing`` (comparators, ``ulp_distance``, ``match_variants``),
the conformance checks, the observers' methods, the detector, the synthetic data set and the
walkthrough. A name is resolved from ``refdet``: ``"box_iou"``, ``"yolo.make_anchors"``,
``"testing.assert_nms_equal"``, ``"MinMaxObserver.update"`` (a method: its first argument, the
instance, is made fresh for every call and never varied).

:data:`SKIPPED` lists the public namespaces the walk leaves out, each with its reason.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import numpy as np

import refdet
import refdet.detector  # noqa: F401  (makes refdet.detector resolvable)
import refdet.synthetic  # noqa: F401
import refdet.testing
import refdet.testing.conformance  # noqa: F401
import refdet.walkthrough  # noqa: F401
import refdet.plots  # noqa: F401
import refdet.runtimes.openvino_detection  # noqa: F401  (the OpenVINO reproductions of issue 15)
import refdet.runtimes.openvino_detectron  # noqa: F401
import refdet.runtimes.openvino_proposal  # noqa: F401
from tests import wrong_impls as _W
from tests.contract import Case


class FuzzCase(Case):
    """A seed with a restriction: ``only`` names the parameters the walk varies (the others stay as
    given); used where one call is expensive (a conformance run) and the interesting arguments are few."""

    def __init__(self, name, make, only=(), fn=None):
        super().__init__(name, make)
        self.only = tuple(only)
        self.fn = fn        # the function itself, for names outside refdet (the runner's self-test)

SKIPPED = {
    "refdet.exchange (export/load/verify of ONNX and NNEF)": "files: walked by the hostile-file suite",
    "refdet.cli, refdet.exchange.cli": "command line: tested by the command-line error tests",
    "refdet.verify (run_target, self_check, verify)": "runs the conformance checks (walked here) on "
                                                      "named targets that need torch/onnxruntime",
    "refdet.testing.strategies": "hypothesis strategies: values, not functions of arrays",
    "refdet.testing.gradcheck_all, register_gradcheck": "walk or change the process-wide gradcheck "
                                                        "registry (check_gradients is walked)",
    "refdet.plots.plot_*": "write image files through matplotlib (focal_loss_curve is walked)",
    "refdet.reference": "the readable loops: no validation by design, held equal to the fast paths",
    "refdet.runtimes.adapters.{opencv,openvino}_adapters, openvino_runner, refdet.runtimes.tensorflow":
        "argument-less factories of closures over an installed runtime (refdet verify runs them); "
        "tests/_runtimes_fuzz_cases.py LEFT_OUT",
}


# Public names kept out of the top level (low-level helpers, observers) are found in these modules,
# in order (the same list as tests/test_contract.py).
MODULE_NAMESPACES = ("refdet.quant", "refdet.layers", "refdet.resize", "refdet.matcher", "refdet.losses",
                     "refdet.iou", "refdet.box_coder", "refdet.fpn", "refdet.heads", "refdet.eval")


def resolve(name):
    """``refdet.<name>``; dotted names reach into subpackages, classes and methods."""
    obj = refdet
    if "." not in name and not hasattr(refdet, name):
        for m in MODULE_NAMESPACES:
            mod = importlib.import_module(m)
            if name in getattr(mod, "__all__", ()):
                return getattr(mod, name)
    for part in name.split("."):
        if not hasattr(obj, part) and isinstance(obj, type(refdet)):
            importlib.import_module(f"{obj.__name__}.{part}")
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------------------------------------------
# seeds for what the contract does not cover
# ---------------------------------------------------------------------------------------------------

def _boxes(rng, n=6, scale=50.0):
    xy = rng.uniform(0, scale, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(2, scale / 2, (n, 2))], axis=1)


def _nms_case(rng):
    b, s = _boxes(rng, 8), rng.random(8)
    keep = refdet.nms(b, s, 0.5)
    return (keep.copy(), keep, b, s), {"iou_threshold": 0.5}


def _match_case(rng):
    iou = rng.random((3, 7))
    m = refdet.match(iou, high=0.7, low=0.3, allow_low_quality_matches=True)
    return (m.copy(), m, iou), {"high": 0.7, "low": 0.3}


def _sample_case(rng):
    labels = rng.integers(-1, 2, 40)
    pos, neg = refdet.sample_balanced(labels, 16, 0.5, rng=0)
    return (labels, pos, neg, 16, 0.5), {}


_ANCH_CFG = dict(feature_sizes=[(4, 4), (2, 2)], strides=[8, 16])


def _anchor_case(rng):
    a, _ = refdet.pyramid_anchors((32, 32), [(4, 4), (2, 2)], [8, 16], [(16.0,), (32.0,)], [0.5, 1.0, 2.0])
    return (a.copy(), a), dict(_ANCH_CFG, num_anchors=3)


def _gradcheck_case(rng):
    x = rng.standard_normal((2, 3)) + 0.05
    return (refdet.relu_forward, refdet.relu_backward, (x,)), {"rng": 0}


def _conv_impl(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    return refdet.conv2d_forward(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)[0]


def _focal(logits, targets, *, alpha=0.25, gamma=2.0, reduction="none"):
    return refdet.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction=reduction)


def _conf(impl, n_cases=2, **kw):
    return lambda r: ((impl,), dict(n_cases=n_cases, seed=0, raise_on_failure=False, **kw))


def _sampler(labels):
    # the sampler under test draws with a fixed seed: a report that depends on the draw is then the
    # same for the same call (refdet's own check must be deterministic, not the implementation)
    return refdet.sample_balanced(labels, 256, 0.5, rng=0)


def _filter_proposals(p, o, s, c):
    r = refdet.filter_proposals(p, o, s, c)
    return r.boxes, r.scores


def _yolov3_decode(t, anchors, stride):
    from refdet.yolo import decode as D
    return D.yolov3_decode_forward(t, anchors, stride)[0]


def _yolox_decode(t, stride):
    from refdet.yolo import decode as D
    return D.yolox_decode_forward(t, stride)[0]


def _format_report(rng):
    from tests.contract.quant_head import _report

    args, kwargs = _report(rng)
    rep = refdet.quant.accuracy_report(*args, **kwargs)
    return ({"int8": rep, "int8 again": rep},), {}


_CONF_ONLY = ("fn", "encode", "decode", "grad", "n_cases", "seed", "raise_on_failure", "progress", "convention",
              "max_ulps", "atol", "alpha", "gamma", "high", "low", "batch_size_per_image", "positive_fraction",
              "weights", "dtype")


def _observer(cls, x_shape=(2, 3, 4), **kw):
    def make(rng):
        return (getattr(refdet.quant, cls)(**kw), rng.standard_normal(x_shape)), {}
    return make


def _observer_qp(cls, **kw):
    def make(rng):
        o = getattr(refdet.quant, cls)(**kw)
        o.update(rng.standard_normal((2, 3, 4)))
        return (o,), {}
    return make


def _det(model="retinanet"):
    return refdet.detector.Detector(model, image_size=(32, 32), num_classes=2, backbone_channels=(4, 4, 4, 4),
                                    fpn_channels=4, head_convs=1)


def _det_forward(rng):
    d = _det()
    p = d.init(rng=0, dtype=np.float64)
    return (d, p, rng.standard_normal((1, 3, 32, 32))), {}


def _det_targets(rng):
    return [(np.array([[2.0, 3.0, 20.0, 25.0]]), np.array([1]))]


def _det_assign(rng):
    return (_det(), _det_targets(rng)), {"rng": 0}


def _det_loss(rng):
    d = _det()
    p = d.init(rng=0, dtype=np.float64)
    return (d, p, rng.standard_normal((1, 3, 32, 32)), _det_targets(rng)), {"rng": 0}


def _det_detect(rng):
    d = _det()
    p = d.init(rng=0, dtype=np.float64)
    return (d, p, rng.standard_normal((1, 3, 32, 32))), {"score_threshold": 0.05, "nms_threshold": 0.5}


def _backbone(rng):
    p = refdet.detector.backbone_init((4, 4), in_channels=3, rng=0, dtype=np.float64)
    return (p, rng.standard_normal((1, 3, 16, 16))), {}


def _backbone_bwd(rng):
    p = refdet.detector.backbone_init((4, 4), in_channels=3, rng=0, dtype=np.float64)
    feats, caches = refdet.detector.backbone_forward(p, rng.standard_normal((1, 3, 16, 16)))
    return ([rng.standard_normal(f.shape) for f in feats], caches), {}


def _sgd(rng):
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    grads = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    return (params, grads), {"lr": 0.1, "momentum": 0.9}


EXTRA = [
    Case("testing.assert_nms_equal", _nms_case),
    Case("testing.explain_nms_difference", _nms_case),
    Case("testing.assert_matches_equal", _match_case),
    Case("testing.match_variants", lambda r: ((r.random((3, 7)),), {"high": 0.7, "low": 0.3})),
    Case("testing.assert_sample_valid", _sample_case),
    Case("testing.assert_anchors_equal", _anchor_case),
    Case("testing.explain_anchor_difference", _anchor_case),
    Case("testing.assert_allclose_ulp", lambda r: ((np.float32([1.0, 2.0, 3.0]), np.float32([1.0, 2.0, 3.0])),
                                                   {"max_ulps": 4})),
    Case("testing.explain_float_difference", lambda r: ((np.float32([1.0, 2.5]), np.float32([1.0, 2.5])),
                                                        {"max_ulps": 2})),
    Case("testing.compare_anchors.anchor_location", lambda r: ((17, [(4, 4), (2, 2)], 3), {})),
    Case("testing.compare_floats.float_variants",
         lambda r: (("box_iou", (_boxes(r, 4), _boxes(r, 3))), {"convention": "torchvision"})),
    Case("testing.ulp_distance", lambda r: ((r.standard_normal(5), r.standard_normal(5)), {})),
    Case("testing.check_gradients", _gradcheck_case),
    FuzzCase("testing.conformance.check_nms", _conf(refdet.nms), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_batched_nms", _conf(refdet.batched_nms), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_box_iou", _conf(refdet.box_iou), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_generalized_box_iou", _conf(refdet.generalized_box_iou), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_match", _conf(refdet.match), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_encode", _conf(refdet.encode_boxes), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_decode", _conf(refdet.decode_boxes), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_anchors", _conf(refdet.pyramid_anchors), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_focal_loss", _conf(_focal), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_relu", _conf(lambda x: refdet.relu_forward(x)[0]), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_conv2d", _conf(_conv_impl), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_sample_balanced", _conf(_sampler), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_encode_decode",
             lambda r: ((refdet.encode_boxes, refdet.decode_boxes), dict(n_cases=2, seed=0, raise_on_failure=False)),
             only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_roi_align", _conf(_W.right_roi_align), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_roi_pool", _conf(_W.right_roi_pool), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_assign_roi_levels", _conf(_W.right_levels), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_filter_proposals", _conf(_filter_proposals, n_cases=1), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_make_anchors", _conf(_W.right_make_anchors), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_dfl_decode", _conf(_W.right_dfl_decode), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_yolo_decode", _conf(_W.right_yolov5_decode), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_yolov5_decode", _conf(_W.right_yolov5_decode), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_yolov3_decode", _conf(_yolov3_decode), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_yolox_decode", _conf(_yolox_decode), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_task_aligned_assign", _conf(_W.right_tal), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_yolo_nms", _conf(_W.right_yolo_nms), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_distribution_focal_loss", _conf(_W.right_dfl), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_varifocal_loss", _conf(_W.right_vfl), only=_CONF_ONLY),
    FuzzCase("testing.conformance.check_quality_focal_loss", _conf(_W.right_qfl), only=_CONF_ONLY),
    Case("quant.format_accuracy_report", _format_report),
    Case("quant.MinMaxObserver", lambda r: ((), {"dtype": "uint8", "symmetric": False})),
    Case("quant.MovingAverageMinMaxObserver", lambda r: ((0.05,), {"dtype": "int8"})),
    Case("quant.PerChannelMinMaxObserver", lambda r: ((1,), {"dtype": "int8", "symmetric": True})),
    Case("quant.PercentileObserver", lambda r: ((99.9, 256), {})),
    Case("quant.HistogramObserver", lambda r: ((128, 4), {})),
    Case("quant.MSEObserver", lambda r: ((20,), {})),
    Case("quant.MinMaxObserver.update", _observer("MinMaxObserver")),
    Case("quant.MovingAverageMinMaxObserver.update", _observer("MovingAverageMinMaxObserver")),
    Case("quant.PerChannelMinMaxObserver.update", _observer("PerChannelMinMaxObserver", ch_axis=1)),
    Case("quant.PercentileObserver.update", _observer("PercentileObserver", num_bins=64)),
    Case("quant.HistogramObserver.update", _observer("HistogramObserver", bins=64, upsample_rate=4)),
    Case("quant.MSEObserver.update", _observer("MSEObserver", num_grid=10)),
    Case("quant.MinMaxObserver.qparams", _observer_qp("MinMaxObserver")),
    Case("quant.HistogramObserver.qparams", _observer_qp("HistogramObserver", bins=64, upsample_rate=4)),
    Case("quant.MSEObserver.qparams", _observer_qp("MSEObserver", num_grid=10)),
    Case("quant.PercentileObserver.qparams", _observer_qp("PercentileObserver", num_bins=64)),
    Case("detector.Detector", lambda r: (("retinanet",), dict(image_size=(32, 32), num_classes=2,
                                                              backbone_channels=(4, 4, 4, 4), fpn_channels=4,
                                                              head_convs=1))),
    Case("detector.Detector.init", lambda r: ((_det("rpn"),), {"rng": 0, "dtype": np.float64})),
    Case("detector.Detector.forward", _det_forward),
    Case("detector.Detector.assign", _det_assign),
    Case("detector.Detector.loss_and_grads", _det_loss),
    Case("detector.Detector.detect", _det_detect),
    Case("detector.backbone_init", lambda r: (((4, 8),), {"in_channels": 3, "rng": 0, "dtype": np.float64})),
    Case("detector.backbone_forward", _backbone),
    Case("detector.backbone_backward", _backbone_bwd),
    Case("synthetic.make_synthetic_dataset", lambda r: ((2, (32, 32)), {"max_objects": 2, "min_size": 4,
                                                                        "max_size": 12, "rng": 0})),
    Case("walkthrough.anchors_report", lambda r: (("retinanet", (64, 64)), {"num_classes": 5})),
    Case("plots.focal_loss_curve", lambda r: ((np.linspace(0.01, 0.99, 7), 2.0), {})),
]


def _ov_do(r):
    pri = np.stack([np.array([0, 0, 0.5, 0.5, 0.25, 0, 0.75, 0.5, 0.5, 0.5, 1, 1]), np.full(12, 0.1)])[None]
    return ((r.normal(size=(1, 12)) * 0.1, r.random((1, 9)), pri),
            dict(nms_threshold=0.5, keep_top_k=2, top_k=-1, code_type="caffe.PriorBoxParameter.CENTER_SIZE",
                 normalized=True))


def _ov_proposal(r):
    return ((r.random((1, 2, 3, 4)), r.normal(size=(1, 4, 3, 4)) * 0.1, np.array([48.0, 64.0, 1.0])),
            dict(base_size=16, pre_nms_topn=10, post_nms_topn=5, nms_thresh=0.7, feat_stride=16, min_size=1,
                 ratio=[1.0], scale=[1.0]))


def _ov_gpsi(r):
    from refdet.runtimes.openvino_detectron import prior_grid_generator

    anchors = prior_grid_generator(np.array([[-8.0, -8, 8, 8]]), (1, 1, 2, 3), (1, 3, 16, 24))
    return ((np.array([16.0, 24.0, 1.0]), anchors, r.normal(size=(4, 2, 3)) * 0.1, r.random((1, 2, 3))),
            dict(min_size=0.0, nms_threshold=0.7, pre_nms_count=6, post_nms_count=4))


def _ov_eddo(r):
    return ((_boxes(r, 4), r.normal(size=(4, 12)) * 0.1, r.random((4, 3)), np.array([[64.0, 64.0, 1.0]])),
            dict(score_threshold=0.05, nms_threshold=0.5, num_classes=3, post_nms_count=10,
                 max_detections_per_image=5))


EXTRA += [
    Case("runtimes.openvino_detection.detection_output", _ov_do),
    Case("runtimes.openvino_detection.detection_output_rows", lambda r: ((refdet.runtimes.openvino_detection.detection_output(
        *_ov_do(r)[0], **_ov_do(r)[1]),), {})),
    Case("runtimes.openvino_proposal.proposal", _ov_proposal),
    Case("runtimes.openvino_proposal.proposal_anchors", lambda r: ((16, [0.5, 1.0, 2.0], [8.0]), {})),
    Case("runtimes.openvino_detectron.prior_grid_generator",
         lambda r: ((r.normal(size=(2, 4)) * 8, (1, 2, 3, 4), (1, 3, 24, 32)), {})),
    Case("runtimes.openvino_detectron.generate_proposals_single_image", _ov_gpsi),
    Case("runtimes.openvino_detectron.detectron_detection_output", _ov_eddo),
    Case("runtimes.openvino_detectron.detectron_roi_levels", lambda r: ((_boxes(r, 5, 300.0), 3), {})),
    *[__import__("tests._runtimes_fuzz_cases", fromlist=["_fuzz_case"])._fuzz_case(f"testing.conformance_runtimes.{n}", f)
      for n, f in (("check_openvino_detection_output", lambda **k: refdet.runtimes.openvino_detection.detection_output(**k)),
                   ("check_openvino_proposal", lambda **k: refdet.runtimes.openvino_proposal.proposal(**k)[:2]),
                   ("check_openvino_prior_grid_generator",
                    lambda **k: refdet.runtimes.openvino_detectron.prior_grid_generator(**k)),
                   ("check_openvino_generate_proposals_single_image",
                    lambda **k: refdet.runtimes.openvino_detectron.generate_proposals_single_image(**k)[:2]),
                   ("check_openvino_detectron_detection_output",
                    lambda **k: refdet.runtimes.openvino_detectron.detectron_detection_output(**k)[:3]),
                   ("check_openvino_detectron_roi_feature_extractor",
                    lambda **k: refdet.runtimes.openvino_detectron.detectron_roi_feature_extractor(**k)))],
    Case("runtimes.openvino_detectron.detectron_roi_feature_extractor",
         lambda r: ((_boxes(r, 3, 60.0), [r.normal(size=(1, 2, 8, 8)), r.normal(size=(1, 2, 4, 4))]),
                    dict(output_size=2, sampling_ratio=2, pyramid_scales=[4, 8]))),
]


#: the ml_dtypes conversions need the optional package (the onnx extra installs it)
HAVE_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None
if HAVE_ML_DTYPES:
    EXTRA += [
        Case("quant.types.as_ml_dtypes", lambda r: ((r.integers(-8, 8, 7), "int4"), {})),
        Case("quant.types.from_ml_dtypes",
             lambda r: ((refdet.quant.types.as_ml_dtypes(r.integers(0, 256, 5), "float8e4m3fn"),), {})),
    ]


def contract_cases():
    import tests.contract as pkg

    mods = [importlib.import_module(f"tests.contract.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)]
    return [c for m in mods for c in getattr(m, "CASES", [])]


def tf_cases():
    """The contract cases of :mod:`refdet.tf_ops` (``tests/_tf_contract_cases.py``: kept outside
    ``tests/contract/`` because ``tests/test_tf_contract.py`` runs them; walked here all the same)."""
    from tests._tf_contract_cases import CASES

    return list(CASES)


def runtimes_cases():
    """The seeds of :mod:`refdet.runtimes` and the runtimes' conformance checks
    (``tests/_runtimes_fuzz_cases.py``)."""
    from tests._runtimes_fuzz_cases import cases

    return cases()


def all_cases():
    """Every seed: the contract's cases, the tf_ops cases, the runtimes' cases, then :data:`EXTRA`."""
    return contract_cases() + tf_cases() + runtimes_cases() + list(EXTRA)
