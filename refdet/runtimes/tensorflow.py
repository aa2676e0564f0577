"""TensorFlow's kernels behind the signatures of :mod:`refdet.testing.conformance_tf`
(``refdet verify tensorflow``; the ``tensorflow`` extra, ``tensorflow-cpu``).

TF is imported when :func:`adapters` is called, never at import time. Each adapter calls the raw
operator (``tf.raw_ops.NonMaxSuppressionV3`` ...), so that the kernel under test is exactly the one
named, with no Python wrapper in between; TF runs single-threaded (1 intra-op, 1 inter-op thread).

oneDNN: TF's x86 wheels swap some kernels for oneDNN ones unless ``TF_ENABLE_ONEDNN_OPTS=0``; for
``QuantizeV2`` that changes the answer (see :mod:`refdet.tf_ops.quant`). :func:`require` sets the
variable to 0 when it is unset and TF is not imported yet, so that the reference kernels are the
ones compared; :func:`onednn_enabled` says what the running TF does.
"""
from __future__ import annotations

import numpy as np

__all__ = ["MISSING", "require", "adapters", "onednn_enabled"]

_ONEDNN = None

#: the one-line message when TF is not installed
MISSING = "refdet verify tensorflow needs tensorflow: pip install 'refdet[tensorflow]'"


def require():
    """Import and return ``tensorflow`` (single-threaded), or raise ``ValueError(MISSING)``."""
    import importlib.util
    import os

    if importlib.util.find_spec("tensorflow") is None:
        raise ValueError(MISSING)
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    global _ONEDNN
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if _ONEDNN is None:           # what the environment said when TF was (or is now) imported
        _ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:        # already initialised by the caller: keep its setting
        pass
    return tf


def onednn_enabled() -> bool:
    """Whether the imported TF runs oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS`` not "0" when
    :func:`require` first ran; TF reads the variable once, at its import)."""
    require()
    return bool(_ONEDNN)


def adapters():
    """``{op: dict(fn=...)}`` for every TF check of :data:`refdet.testing.conformance_tf.TF_CHECKS`."""
    tf = require()
    raw = tf.raw_ops

    def f32(a):
        return tf.constant(np.ascontiguousarray(a, dtype=np.float32))

    def nms(b, s, k, thr, sthr):
        return raw.NonMaxSuppressionV3(boxes=f32(b), scores=f32(s), max_output_size=int(k),
                                       iou_threshold=np.float32(thr), score_threshold=np.float32(sthr)).numpy()

    def soft(b, s, k, thr, sthr, sigma):
        i, sc, _ = raw.NonMaxSuppressionV5(boxes=f32(b), scores=f32(s), max_output_size=int(k),
                                           iou_threshold=np.float32(thr), score_threshold=np.float32(sthr),
                                           soft_nms_sigma=np.float32(sigma), pad_to_max_output_size=False)
        return i.numpy(), sc.numpy()

    def combined(b, s, kpc, total, thr, sthr, pad, clip):
        out = raw.CombinedNonMaxSuppression(boxes=f32(b), scores=f32(s), max_output_size_per_class=int(kpc),
                                            max_total_size=int(total), iou_threshold=np.float32(thr),
                                            score_threshold=np.float32(sthr), pad_per_class=bool(pad),
                                            clip_boxes=bool(clip))
        return tuple(v.numpy() for v in out)

    def crop(img, b, idx, cs, method, ev):
        return raw.CropAndResize(image=f32(img), boxes=f32(b), box_ind=np.asarray(idx, np.int32),
                                 crop_size=list(cs), method=method, extrapolation_value=float(ev)).numpy()

    def crop_grad(img, b, idx, cs, method, ev, dy):
        it, bt = f32(img), f32(b)
        with tf.GradientTape() as tape:
            tape.watch([it, bt])
            out = tf.image.crop_and_resize(it, bt, np.asarray(idx, np.int32), list(cs), method=method,
                                           extrapolation_value=float(ev))
            loss = tf.reduce_sum(out * f32(dy))
        gi, gb = tape.gradient(loss, [it, bt])
        return gi.numpy(), gb.numpy()

    def resize(x, size, method, ac, hp):
        op = raw.ResizeBilinear if method == "bilinear" else raw.ResizeNearestNeighbor
        return op(images=f32(x), size=list(size), align_corners=bool(ac), half_pixel_centers=bool(hp)).numpy()

    def fake_quant(x, mn, mx, nb, nr):
        return raw.FakeQuantWithMinMaxVars(inputs=f32(x), min=np.float32(mn), max=np.float32(mx), num_bits=int(nb),
                                           narrow_range=bool(nr)).numpy()

    def fake_quant_grad(dy, x, mn, mx, nb, nr):
        out = raw.FakeQuantWithMinMaxVarsGradient(gradients=f32(dy), inputs=f32(x), min=np.float32(mn),
                                                  max=np.float32(mx), num_bits=int(nb), narrow_range=bool(nr))
        return tuple(v.numpy() for v in out)

    qtypes = {"quint8": tf.quint8, "qint8": tf.qint8, "quint16": tf.quint16, "qint16": tf.qint16}

    def quantize(x, mn, mx, T, mode, round_mode, narrow_range):
        o = raw.QuantizeV2(input=f32(x), min_range=np.float32(mn), max_range=np.float32(mx), T=qtypes[T], mode=mode,
                           round_mode=round_mode, narrow_range=bool(narrow_range))
        return o.output.numpy(), o.output_min.numpy(), o.output_max.numpy()

    def conv(x, w, s, pad, d):
        return tf.nn.conv2d(tf.constant(x), tf.constant(w), strides=[1, *s, 1], padding=pad,
                            dilations=[1, *d, 1]).numpy()

    def conv_grad(x, w, s, pad, d, dy):
        xt, wt = tf.constant(x), tf.constant(w)
        with tf.GradientTape() as tape:
            tape.watch([xt, wt])
            loss = tf.reduce_sum(tf.nn.conv2d(xt, wt, strides=[1, *s, 1], padding=pad, dilations=[1, *d, 1])
                                 * tf.constant(dy))
        return tuple(v.numpy() for v in tape.gradient(loss, [xt, wt]))

    def sce(t, z):
        return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(t), logits=tf.constant(z)).numpy()

    def sce_grad(t, z, dl):
        zt = tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch(zt)
            loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.constant(t), logits=zt)
                                 * tf.constant(dl))
        return tape.gradient(loss, zt).numpy()

    return {
        "tf_conv2d": dict(fn=conv, grad=conv_grad),
        "tf_sigmoid_cross_entropy": dict(fn=sce, grad=sce_grad),
        "tf_fake_quant": dict(fn=fake_quant, grad=fake_quant_grad),
        "tf_quantize": dict(fn=quantize),
        "tf_crop_and_resize": dict(fn=crop, grad=crop_grad),
        "tf_resize": dict(fn=resize),
        "tf_non_max_suppression": dict(fn=nms),
        "tf_soft_nms": dict(fn=soft),
        "tf_combined_nms": dict(fn=combined),
    }
