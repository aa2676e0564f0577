"""Pins of the resize convention values (issue 19 item 2, mutation/convention_coverage.md):

* ``resize``: ``runtime='onnxruntime'`` (the spec's output length ``L`` in ``align_corners``) against
  onnx.reference (the unrounded ``s * n``);
* ``resize_linear_forward``: ``half_pixel_symmetric`` (opset 19) and the ONNX scale rule (divide by
  the float32 ``L / n``) against torch's (multiply by ``n / L``);
* ``upsample_nearest`` with ``mode='onnx'``: ``asymmetric`` against ``align_corners``, ``half_pixel``
  against ``pytorch_half_pixel`` (they part only for an output of length 1).

Goldens worked by hand from onnxruntime's ``upsamplebase.h`` ``get_original_coordinate``; the same
inputs run through onnxruntime (and onnx.reference) where installed.
"""
import numpy as np
import pytest

from refdet.onnx_ops.resize import resize, resize_linear_forward
from refdet.resize import upsample_nearest_forward

F = np.float32


def _ort_resize(x, scales=None, sizes=None, **attrs):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    inits, inputs = [], ["x", "", ""]
    if scales is not None:
        inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [len(scales)], list(scales)))
        inputs[2] = "scales"
    else:
        inits.append(helper.make_tensor("sizes", TensorProto.INT64, [len(sizes)], list(sizes)))
        inputs.append("sizes")
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_operatorsetid("", 19)])
    m.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0], m


# ------------------------------------------------------------------------------------------ resize

X4 = np.array([[0.0, 1.0, 2.0, 3.0]], F)          # 2-D: onnxruntime has no 1-D linear kernel


@pytest.mark.parametrize("kw", [{}, {"runtime": "onnxruntime"}])
def test_resize_onnxruntime_align_corners_divides_by_the_output_length(kw):
    # scales 0.6 on 4 pixels: L = int(0.6 * 4) = 2; onnxruntime: x = i * (4 - 1) / (L - 1) = 0, 3
    y = resize(X4, scales=[1.0, 0.6], mode="linear", coordinate_transformation_mode="align_corners", **kw)
    assert y.tolist() == [[0.0, 3.0]]


def test_resize_onnx_reference_divides_by_the_unrounded_length():
    # onnx.reference: i * 3 / (0.6 * 4 - 1) = 0, 2.142857...
    y = resize(X4, scales=[1.0, 0.6], mode="linear", coordinate_transformation_mode="align_corners",
               runtime="onnx_reference")
    np.testing.assert_allclose(y, [[0.0, 3 / 1.4]], rtol=1e-6)


def test_resize_runtimes_goldens_are_the_runtimes():
    got, m = _ort_resize(X4, scales=[1.0, 0.6], mode="linear", coordinate_transformation_mode="align_corners")
    assert got.tolist() == [[0.0, 3.0]]
    from onnx.reference import ReferenceEvaluator

    np.testing.assert_allclose(ReferenceEvaluator(m).run(None, {"x": X4})[0], [[0.0, 3 / 1.4]], rtol=1e-6)


# ----------------------------------------------------------------------------- resize_linear_forward

X5 = np.arange(5, dtype=F).reshape(1, 1, 1, 5)


@pytest.mark.parametrize("conv", ["onnx", "torchvision"])
def test_half_pixel_symmetric_centres_a_rounded_output(conv):
    # W 5 -> floor(5 * 0.5) = 2 (s * n = 2.5 != L): offset n/2 (1 - L / (s n)) = 2.5 * 0.2 = 0.5, so
    # x = 0.5 + (i + 0.5) / 0.5 - 0.5 = 1, 3. half_pixel: 0.5, 2.5; asymmetric 0, 2; align_corners 0, 4
    y, _ = resize_linear_forward(X5, scale_factor=(1.0, 0.5), convention=conv,
                                 coordinate_transformation_mode="half_pixel_symmetric")
    assert y.ravel().tolist() == [1.0, 3.0]
    hp, _ = resize_linear_forward(X5, scale_factor=(1.0, 0.5), convention=conv)
    assert hp.ravel().tolist() == [0.5, 2.5]


# float32 W 3 -> 7 by sizes: onnxruntime's x = (i + 0.5) / float32(7 / 3) - 0.5 rounds differently
# from torch's (i + 0.5) * float32(3 / 7) - 0.5 at i = 1, 2; onnxruntime's outputs:
X3 = (np.arange(3, dtype=F) * F(1.37) + F(0.11)).reshape(1, 1, 1, 3)
ORT_3_TO_7 = [0.10999999940395355, 0.30571436882019043, 0.8928573131561279, 1.4800000190734863, 2.067142963409424,
              2.6542856693267822, 2.8499999046325684]


@pytest.mark.parametrize("kw", [{}, {"scale_rule": "onnx"}])
def test_onnx_scale_rule_divides_by_the_float32_scale(kw):
    y, _ = resize_linear_forward(X3, size=(1, 7), convention="onnx", **kw)
    assert y.ravel().tolist() == ORT_3_TO_7
    t, _ = resize_linear_forward(X3, size=(1, 7), convention="onnx", scale_rule="torch")
    assert t.ravel().tolist() != ORT_3_TO_7


def test_resize_linear_goldens_are_onnxruntimes():
    got, _ = _ort_resize(X3, sizes=[1, 1, 1, 7], mode="linear", coordinate_transformation_mode="half_pixel")
    assert got.ravel().tolist() == ORT_3_TO_7
    got, _ = _ort_resize(X5, scales=[1.0, 1.0, 1.0, 0.5], mode="linear",
                         coordinate_transformation_mode="half_pixel_symmetric")
    assert got.ravel().tolist() == [1.0, 3.0]


# ---------------------------------------------------------------------------------- upsample_nearest

def _nearest(in_w, out_w, ctm, nearest_mode=None):
    x = np.arange(in_w, dtype=F).reshape(1, 1, 1, in_w)
    y, _ = upsample_nearest_forward(x, size=(1, out_w), convention="onnx", coordinate_transformation_mode=ctm,
                                    nearest_mode=nearest_mode)
    return y.ravel().tolist()


def test_onnx_asymmetric_against_align_corners():
    # W 3 -> 5, round_prefer_floor. asymmetric x = i * 3 / 5: 0, 0.6, 1.2, 1.8, 2.4 -> 0, 1, 1, 2, 2;
    # align_corners x = i * 2 / 4: 0, 0.5, 1, 1.5, 2 -> 0, 0, 1, 1, 2 (halves go down)
    assert _nearest(3, 5, "asymmetric") == [0.0, 1.0, 1.0, 2.0, 2.0]
    assert _nearest(3, 5, "align_corners") == [0.0, 0.0, 1.0, 1.0, 2.0]


def test_onnx_half_pixel_against_pytorch_half_pixel_on_one_output():
    # W 3 -> 1: half_pixel x = 0.5 * 3 - 0.5 = 1 (the centre); pytorch_half_pixel: 0 when L == 1
    assert _nearest(3, 1, None) == [1.0]
    assert _nearest(3, 1, "half_pixel") == [1.0]
    assert _nearest(3, 1, "pytorch_half_pixel") == [0.0]


@pytest.mark.parametrize("in_w, out_w, ctm, want", [(3, 5, "asymmetric", [0, 1, 1, 2, 2]),
                                                    (3, 5, "align_corners", [0, 0, 1, 1, 2]),
                                                    (3, 1, "half_pixel", [1]), (3, 1, "pytorch_half_pixel", [0])])
def test_nearest_goldens_are_onnxruntimes(in_w, out_w, ctm, want):
    x = np.arange(in_w, dtype=F).reshape(1, 1, 1, in_w)
    got, _ = _ort_resize(x, sizes=[1, 1, 1, out_w], mode="nearest", coordinate_transformation_mode=ctm,
                         nearest_mode="round_prefer_floor")
    assert got.ravel().tolist() == [float(v) for v in want]
