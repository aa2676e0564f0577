import numpy as np

from tests.contract import Bad, Case


def _params(r, c=4, a=1, k=2):
    from refdet.heads import retinanet_head_init
    p = retinanet_head_init(c, a, k, rng=1, num_convs=1, dtype=np.float32)
    return {key: (v + r.standard_normal(v.shape).astype(np.float32) * 0.2) for key, v in p.items()}


def _feats(r, c=4):
    return [r.standard_normal((1, c, s, s)).astype(np.float32) for s in (4, 2)]


def _qhead(r):
    from refdet.quant import quantize_retinanet_head
    return quantize_retinanet_head(_params(np.random.default_rng(9)), _feats(np.random.default_rng(8)))


def _anchors(n, size=4.0):
    xy = np.stack([np.arange(n) % 4 * 5.0, np.arange(n) // 4 * 5.0], 1)
    return np.concatenate([xy, xy + size], 1)


def _report(r):
    n = 20  # 16 + 4 anchors over the two levels, A = 1
    fl = (r.standard_normal((1, n, 2)) * 3, r.standard_normal((1, n, 4)) * 0.1)
    ql = (fl[0] + 0.01, fl[1] - 0.01)
    return (fl, ql, _anchors(n)), {"image_size": (24, 24), "ground_truths": [(_anchors(2), np.array([0, 1]))]}


CASES = [
    Case("quantize_retinanet_head", lambda r: ((_params(r), _feats(r)), {"scheme": "tflite"})),
    Case("make_quantized_conv", lambda r: (("conv", r.integers(-127, 128, (3, 2, 3, 3)).astype(np.int8),
                                            r.uniform(0.01, 0.1, 3).astype(np.float32),
                                            r.integers(-500, 500, 3).astype(np.int32), 0.05, -3, 0.1, -128),
                                           {"relu": True})),
    Case("run_quantized_head", lambda r: ((_qhead(r), _feats(r)), {"mode": "tflite", "return_intermediates": True})),
    Case("run_fake_quant_head", lambda r: ((_qhead(r), _feats(r)), {})),
    Case("float_head_layers", lambda r: ((_params(r), _feats(r)), {})),
    Case("sqnr_db", lambda r: ((r.standard_normal(10), r.standard_normal(10)), {})),
    Case("accuracy_report", _report, box_args={2: "anchors"}),
]

BAD = [
    Bad("quantize_retinanet_head", lambda r: ((_params(r), _feats(r)), {"scheme": "trt"}), ValueError, "`scheme`"),
    Bad("quantize_retinanet_head", lambda r: ((_params(r), [np.zeros((1, 3, 2, 2), np.float32)]), {}), ValueError,
        "channels"),
    Bad("run_quantized_head", lambda r: ((_qhead(r), _feats(r)), {"mode": "tensorrt"}), ValueError, "`mode`"),
    Bad("run_quantized_head", lambda r: (({}, _feats(r)), {}), TypeError, "`qhead`"),
    Bad("run_fake_quant_head", lambda r: ((None, _feats(r)), {}), TypeError, "`qhead`"),
    Bad("float_head_layers", lambda r: ((_params(r), [np.full((1, 4, 2, 2), np.nan, np.float32)]), {}), ValueError,
        "`features\\[0\\]`.*NaN"),
    Bad("sqnr_db", lambda r: ((np.ones(3), np.ones(4)), {}), ValueError, "same size"),
    Bad("accuracy_report", lambda r: ((_report(r)[0][0], _report(r)[0][1], _anchors(20)), {"image_size": (0, 5)}),
        ValueError, "`image_size`"),
    Bad("accuracy_report", lambda r: ((_report(r)[0][0], _report(r)[0][1], _anchors(20)),
                                      {"image_size": (24, 24), "match_iou": 1.5}), ValueError, "`match_iou`"),
    Bad("make_quantized_conv", lambda r: (("c", np.zeros((2, 1, 3, 3), np.int8), np.ones(2), np.zeros(3, np.int32),
                                           0.1, 0, 0.1, 0), {"relu": False}), ValueError, "`bias`"),
    Bad("make_quantized_conv", lambda r: (("c", np.zeros((2, 1, 3, 3), np.int8), np.ones(2), np.zeros(2, np.int32),
                                           0.1, 0, 0.1, 0), {"relu": 1}), TypeError, "`relu`"),
    Bad("quantize_retinanet_head", lambda r: ((_params(r), None), {}), ValueError, "`calibration_features`"),
    Bad("quantize_retinanet_head", lambda r: ((_params(r), None), {"activation_qparams": {"nope": (1.0, 0)}}),
        ValueError, "unknown tensors"),
    Bad("format_accuracy_report", lambda r: (({},), {}), TypeError, "`reports`"),
]

EXEMPT = {
    "QuantizedConv": "a NamedTuple of one quantized layer's integers and scales",
    "QuantizedHead": "a NamedTuple returned by quantize_retinanet_head",
    "QuantizedHeadOutput": "a NamedTuple of the quantized head's outputs",
    "format_accuracy_report": "formats accuracy_report dicts as text (no arrays in)",
}
