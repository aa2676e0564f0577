"""TF image kernels: ResizeBilinear / ResizeNearestNeighbor (refdet.tf_ops.image) and CropAndResize
(refdet.roi.crop) -- golden cases without TF, then differential tests against TensorFlow."""
import os

import numpy as np
import pytest
from hypothesis import given

from refdet.roi.crop import crop_and_resize_backward, crop_and_resize_forward
from refdet.testing import conformance_tf
from refdet.testing.strategies_tf import tf_crop_cases, tf_resize_cases
from refdet.tf_ops import resize_bilinear, resize_nearest_neighbor, resize_source_index

F = np.float32


def test_resize_source_index_golden():
    # 4 -> 8, half pixel: src = (i + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, ...: lower clamps to 0, lerp 0.75
    lo, hi, lerp = resize_source_index(4, 8, half_pixel_centers=True)
    assert lo.tolist() == [0, 0, 0, 1, 1, 2, 2, 3] and hi.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    assert lerp.tolist() == [0.75, 0.25, 0.75, 0.25, 0.75, 0.25, 0.75, 0.25]
    # align corners 3 -> 5: scale (3 - 1) / (5 - 1) = 0.5, src = 0, 0.5, 1, 1.5, 2
    lo, hi, lerp = resize_source_index(3, 5, align_corners=True)
    assert lo.tolist() == [0, 0, 1, 1, 2] and lerp.tolist() == [0, 0.5, 0, 0.5, 0]
    # nearest legacy 3 -> 5: floor(i * 0.6) = 0, 0, 1, 1, 2; align corners roundf(i * 0.5): 0, 1 (0.5 up), 1, 2, 2
    assert resize_source_index(3, 5, method="nearest").tolist() == [0, 0, 1, 1, 2]
    assert resize_source_index(3, 5, method="nearest", align_corners=True).tolist() == [0, 1, 1, 2, 2]
    # nearest half pixel 2 -> 4: floor((i + 0.5) * 0.5) = 0, 0, 1, 1 (no -0.5: HalfPixelScalerForNN)
    assert resize_source_index(2, 4, method="nearest", half_pixel_centers=True).tolist() == [0, 0, 1, 1]


def test_resize_bilinear_golden():
    x = np.array([0, 4], F).reshape(1, 1, 2, 1)
    # legacy 2 -> 4: src = 0, 0.5, 1, 1.5 -> 0, 2, 4, 4 (the last column clamps)
    assert resize_bilinear(x, (1, 4)).ravel().tolist() == [0, 2, 4, 4]
    # half pixel: src = -0.25, 0.25, 0.75, 1.25 -> 0, 1, 3, 4
    assert resize_bilinear(x, (1, 4), half_pixel_centers=True).ravel().tolist() == [0, 1, 3, 4]
    # align corners 2 -> 3: 0, 2, 4
    assert resize_bilinear(x, (1, 3), align_corners=True).ravel().tolist() == [0, 2, 4]
    assert resize_bilinear(x.astype(np.float64), (1, 3)).dtype == np.float64
    assert resize_nearest_neighbor(x.astype(np.int32), (1, 3)).dtype == np.int32


@pytest.mark.parametrize("call, match", [
    (lambda: resize_bilinear(np.zeros((1, 2, 2, 1)), 3, align_corners=True, half_pixel_centers=True),
     r"half_pixel_centers=True.*align_corners=False.*TensorFlow's ResizeBilinear"),
    (lambda: resize_nearest_neighbor(np.zeros((1, 2, 2, 1)), 3, align_corners=True, half_pixel_centers=True),
     "half_pixel_centers"),
    (lambda: resize_bilinear(np.zeros((2, 2, 1)), 3), "images"),
    (lambda: resize_bilinear(np.zeros((1, 2, 2, 1)), 0), "size"),
    (lambda: resize_bilinear(np.zeros((1, 2, 2, 1)), 3, align_corners="yes"), "align_corners"),
])
def test_resize_bad_input(call, match):
    with pytest.raises((TypeError, ValueError), match=match):
        call()


@given(tf_resize_cases())
def test_resize_layout_independent(case):
    x, size, m, ac, hp = case
    f = resize_bilinear if m == "bilinear" else resize_nearest_neighbor
    xf = np.asfortranarray(x)
    xf.setflags(write=False)
    assert f(xf, size, align_corners=ac, half_pixel_centers=hp).tobytes() == \
        f(x, size, align_corners=ac, half_pixel_centers=hp).tobytes()


def test_conformance_names_the_flag():
    def legacy(x, size, m, ac, hp):
        return resize_bilinear(x, size) if m == "bilinear" else resize_nearest_neighbor(x, size)
    rep = conformance_tf.check_tf_resize(legacy, n_cases=10, raise_on_failure=False)
    assert not rep.ok and "align_corners=False, half_pixel_centers=False" in rep.first_mismatch

    def xy_order(img, b, idx, cs, m, ev):
        return crop_and_resize_forward(img, b[:, [1, 0, 3, 2]], idx, cs, method=m, extrapolation_value=ev,
                                       data_format="NHWC")[0]
    rep = conformance_tf.check_tf_crop_and_resize(xy_order, n_cases=10, raise_on_failure=False)
    assert not rep.ok and "[x1, y1, x2, y2]" in rep.first_mismatch


def test_conformance_accepts_refdet_crop_with_gradients():
    def fn(img, b, idx, cs, m, ev):
        return crop_and_resize_forward(img, b, idx, cs, method=m, extrapolation_value=ev, data_format="NHWC")[0]

    def grad(img, b, idx, cs, m, ev, dy):
        _, cache = crop_and_resize_forward(img, b, idx, cs, method=m, extrapolation_value=ev, data_format="NHWC")
        return crop_and_resize_backward(dy, cache)
    assert conformance_tf.check_tf_crop_and_resize(fn, grad=grad, n_cases=15).ok


# --------------------------------------------------------------------------------------------------
# differential tests against TensorFlow
# --------------------------------------------------------------------------------------------------

def _tf():
    # TF reads TF_ENABLE_ONEDNN_OPTS once, at import: the reference kernels, not oneDNN's
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    pytest.importorskip("tensorflow")
    from refdet.runtimes.tensorflow import require
    return require()


@given(tf_resize_cases())
def test_resize_equals_tensorflow(case):
    tf = _tf()
    x, size, m, ac, hp = case
    op = tf.raw_ops.ResizeBilinear if m == "bilinear" else tf.raw_ops.ResizeNearestNeighbor
    want = op(images=x, size=list(size), align_corners=ac, half_pixel_centers=hp).numpy()
    f = resize_bilinear if m == "bilinear" else resize_nearest_neighbor
    got = f(x, size, align_corners=ac, half_pixel_centers=hp)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_resize_tf2_api_is_half_pixel():
    tf = _tf()
    x = np.random.default_rng(0).standard_normal((1, 5, 3, 2)).astype(F)
    want = tf.image.resize(x, (7, 4), method="bilinear").numpy()
    assert want.tobytes() == resize_bilinear(x, (7, 4), half_pixel_centers=True).tobytes()
    want = tf.image.resize(x, (7, 4), method="nearest").numpy()
    assert want.tobytes() == resize_nearest_neighbor(x, (7, 4), half_pixel_centers=True).tobytes()


@given(tf_crop_cases())
def test_crop_and_resize_and_gradients_equal_tensorflow(case):
    tf = _tf()
    img, b, idx, cs, m, ev = case
    it, bt = tf.constant(img), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([it, bt])
        out = tf.image.crop_and_resize(it, bt, idx, list(cs), method=m, extrapolation_value=ev)
        dy = np.random.default_rng(1).standard_normal(out.shape).astype(F)
        loss = tf.reduce_sum(out * dy)
    gi, gb = tape.gradient(loss, [it, bt])
    y, cache = crop_and_resize_forward(img, b, idx, cs, method=m, extrapolation_value=ev, data_format="NHWC")
    g = crop_and_resize_backward(dy, cache)
    assert y.tobytes() == out.numpy().tobytes()
    assert g.dimage.tobytes() == gi.numpy().tobytes()
    assert g.dboxes.tobytes() == gb.numpy().tobytes()


def test_verify_tensorflow_image_ops_agree():
    _tf()
    from refdet.verify import run_target
    rows = run_target("tensorflow", ops=["tf_crop_and_resize", "tf_resize"], n_cases=10)
    assert len(rows) == 2 and all(r["ok"] for r in rows), rows
