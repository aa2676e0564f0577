"""refdet.quant.head's "tflite" mode against LiteRT's reference kernels, end to end.

The quantized RetinaNet head (TFLite scheme) is written as one ``.tflite`` model (QUANTIZE -> int8
CONV_2D chain with fused RELU -> DEQUANTIZE per branch; tests/_tflite_models.py, nnef-tools' writer,
no TensorFlow) and run with ``OpResolverType.BUILTIN_REF``. Every layer's int8 output and the two
dequantized float32 outputs must equal ``run_quantized_head(mode="tflite")`` exactly (no tolerance:
integers bit for bit, and DEQUANTIZE is one float32 product ``scale * (q - zp)`` in both).
"""
import numpy as np
import pytest

from refdet import quant as QH
from refdet.heads import retinanet_head_init


def _head(seed, c=8, a=3, k=2, depth=2, std=0.15):
    r = np.random.default_rng(seed)
    p = retinanet_head_init(c, a, k, rng=r, num_convs=depth, dtype=np.float32)
    for key in p:  # larger weights and nonzero biases than the init, so every layer does something
        if key.endswith("weight"):
            p[key] = (r.standard_normal(p[key].shape) * std).astype(np.float32)
        elif "conv" in key:
            p[key] = (r.standard_normal(p[key].shape) * 0.1).astype(np.float32)
    return p


def _feats(seed, c=8, b=2, sizes=(8, 4, 2, 1)):
    r = np.random.default_rng(seed)
    return [(r.standard_normal((b, c, s, s)) * 1.5 + 0.3).astype(np.float32) for s in sizes]


@pytest.mark.parametrize("seed,depth,observer", [(0, 2, "minmax"), (1, 3, "histogram"), (2, 1, "minmax")])
def test_quantized_head_tflite_mode_matches_litert_reference_end_to_end(seed, depth, observer):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("nnef_tools")
    from tests import _tflite_models as T

    qh = QH.quantize_retinanet_head(_head(seed, depth=depth), [_feats(10 + seed), _feats(20 + seed)],
                                    scheme="tflite", observer=observer)
    feats = _feats(30 + seed, b=2, sizes=(10, 5, 3, 1))
    # inputs at exact QUANTIZE ties (x / s = k + 0.5), where half-away and RNE differ
    s = np.float32(qh.input_scale)
    tie = ((np.arange(feats[0][0].size) % 41 - 20) + 0.5).astype(np.float32) * s
    feats[0][0] = tie.reshape(feats[0][0].shape)
    assert np.sum(feats[0][0] / s % 1 == 0.5) > 100
    ours = QH.run_quantized_head(qh, feats, mode="tflite", return_intermediates=True)
    n = 0
    for lvl, f in enumerate(feats):
        x = np.ascontiguousarray(f.transpose(0, 2, 3, 1))                          # NCHW -> NHWC
        model, names = T.quantized_head_model(qh, x.shape)
        got = T.run_reference_outputs(model, x)
        for name in names:
            if name.endswith(".float"):
                mine = ours.cls_logits[lvl] if name.startswith("classification") else ours.bbox_deltas[lvl]
            else:
                mine = ours.intermediates[name][lvl]
            mine = mine.transpose(0, 2, 3, 1)
            ref = got[name]
            assert ref.dtype == mine.dtype and ref.shape == mine.shape, (name, ref.dtype, mine.dtype)
            bad = int(np.sum(ref != mine))
            assert bad == 0, f"level {lvl}, {name}: {bad} of {ref.size} values differ from LiteRT BUILTIN_REF"
            n += ref.size
    assert n > 5000
