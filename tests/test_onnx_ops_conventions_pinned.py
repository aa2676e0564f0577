"""Pins of the layer-pair convention values (refdet.onnx_ops, refdet.resize) that no other test resolved
(mutation/convention_coverage.md): softmax ``normalize="divide"``, log-softmax
``log_form="log_of_softmax"``, conv-transpose ``output_padding_rule="input_size_consistent"`` (the onnx
profile) and the ONNX Resize ``nearest_mode`` values ``ceil`` and ``round_prefer_ceil``.
"""
import numpy as np
import pytest

from refdet.onnx_ops.conv_transpose import conv_transpose2d_forward
from refdet.onnx_ops.softmax import log_softmax_forward, softmax_forward
from refdet.resize import upsample_nearest_forward

# float32 logits where e * (1 / s) and e / s round apart in the first element (0.27819160 vs 0.27819163)
X32 = np.array([0.34558418, 0.82161814, 0.33043706], np.float32)


@pytest.mark.parametrize("normalize", ["divide", "reciprocal"])
def test_softmax_normalize(normalize):
    e = np.exp(X32 - X32.max())
    s = e.sum(dtype=np.float32)
    want = e / s if normalize == "divide" else e * (np.float32(1) / s)
    assert not np.array_equal(e / s, e * (np.float32(1) / s))  # the input tells them apart
    y, _ = softmax_forward(X32, normalize=normalize)
    assert y.dtype == np.float32 and np.array_equal(y, want)


def test_softmax_divide_is_onnx_reference():
    pytest.importorskip("onnx")
    from onnx import helper, TensorProto
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    ref = ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    got = ref.run(None, {"x": X32})[0]
    assert np.array_equal(softmax_forward(X32, normalize="divide")[0], got)


def test_log_softmax_log_of_softmax_underflows():
    # x - max = -200: exp(-200) underflows to 0 in float32, log(0) = -inf (onnx.reference's log(Softmax));
    # the shifted form gives -200 - log(1 + 0) = -200.
    x = np.array([0.0, -200.0], np.float32)
    assert log_softmax_forward(x, log_form="log_of_softmax")[0].tolist() == [0.0, -np.inf]
    assert log_softmax_forward(x, log_form="shifted")[0].tolist() == [0.0, -200.0]


def test_conv_transpose_onnx_refuses_what_torch_accepts():
    # stride 1, dilation 2, output_padding 1: PyTorch accepts (1 < max(1, 2)); a convolution of the
    # 6 x 6 output (kernel 2, dilation 2) gives 4 rows, not the input's 3: onnxruntime refuses.
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    y, _ = conv_transpose2d_forward(x, w, stride=1, dilation=2, output_padding=1)
    assert y.shape == (1, 1, 6, 6)
    with pytest.raises(ValueError, match="onnxruntime refuses"):
        conv_transpose2d_forward(x, w, stride=1, dilation=2, output_padding=1, convention="onnx")
    # output_padding 0 is consistent: both accept, same values
    a = conv_transpose2d_forward(x, w, stride=1, dilation=2)[0]
    b = conv_transpose2d_forward(x, w, stride=1, dilation=2, convention="onnx")[0]
    assert np.array_equal(a, b)


# ONNX Resize, half_pixel: H 4 -> 2 reads (i + 0.5) * 2 - 0.5 = 0.5, 2.5 (exact halves);
# W 2 -> 4 reads (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clipped to [0, 1]).
SOURCES = {
    "floor": ([0, 2], [0, 0, 0, 1]),
    "ceil": ([1, 3], [0, 1, 1, 1]),
    "round_prefer_floor": ([0, 2], [0, 0, 1, 1]),
    "round_prefer_ceil": ([1, 3], [0, 0, 1, 1]),
}


@pytest.mark.parametrize("mode", sorted(SOURCES))
def test_onnx_resize_nearest_modes(mode):
    x = np.arange(8.0).reshape(1, 1, 4, 2)
    rows, cols = SOURCES[mode]
    y, _ = upsample_nearest_forward(x, size=(2, 4), convention="onnx", nearest_mode=mode)
    assert np.array_equal(y[0, 0], x[0, 0][np.ix_(rows, cols)])


# LeakyRelu's three formulas differ only in the sign of a zero output; with a negative (or -0.0)
# alpha they show: x = +0, -0, -1.
#   torch (x > 0 ? x : x * a):                   a = -0.5: -0, +0, 0.5     a = -0.0: -0, +0, +0
#   onnxruntime (x >= 0 ? x : a * x):            a = -0.5: +0, -0, 0.5     a = -0.0: +0, -0, +0
#   onnx.reference (x * (x > 0 ? 1 : 0 - (0 - 1) * a)), 0 - (0 - 1) * -0.0 = 0 - (-0.0) = +0:
#                                                a = -0.5: -0, +0, 0.5     a = -0.0: +0, -0, -0
_ZEROS = np.array([0.0, -0.0, -1.0], np.float32)
_SIGNS = {("torch", -0.5): [True, False, False], ("onnxruntime", -0.5): [False, True, False],
          ("onnx_reference", -0.5): [True, False, False], ("torch", -0.0): [True, False, False],
          ("onnxruntime", -0.0): [False, True, False], ("onnx_reference", -0.0): [False, True, True]}


@pytest.mark.parametrize("runtime, alpha", sorted(_SIGNS))
def test_leaky_relu_runtimes_sign_of_zero(runtime, alpha):
    from refdet.onnx_ops.activations import leaky_relu

    y = leaky_relu(_ZEROS, alpha=alpha, runtime=runtime)
    assert np.signbit(y).tolist() == _SIGNS[(runtime, alpha)]
    assert abs(float(y[2])) == abs(alpha)


@pytest.mark.parametrize("alpha", [-0.5, -0.0])
def test_leaky_relu_torch_runtime_is_torch(alpha):
    torch = pytest.importorskip("torch")
    from refdet.onnx_ops.activations import leaky_relu

    want = torch.nn.functional.leaky_relu(torch.from_numpy(_ZEROS), alpha).numpy()
    got = leaky_relu(_ZEROS, alpha=alpha, runtime="torch", convention="torchvision")
    assert np.signbit(got).tolist() == np.signbit(want).tolist() and np.array_equal(got, want)


# ONNX Resize linear on x = [0, 1, 2] (the value is the coordinate): W 3 -> 2 reads
#   align_corners j (3 - 1) / (2 - 1) = 0, 2; half_pixel and pytorch_half_pixel (j + 0.5) 1.5 - 0.5 = 0.25,
#   1.75; asymmetric j 1.5 = 0, 1.5. W 3 -> 1: align_corners and pytorch_half_pixel 0 (output size 1),
#   half_pixel 0.5 * 3 - 0.5 = 1, asymmetric 0.
_CTM = {"align_corners": ([0.0, 2.0], [0.0]), "half_pixel": ([0.25, 1.75], [1.0]),
        "pytorch_half_pixel": ([0.25, 1.75], [0.0]), "asymmetric": ([0.0, 1.5], [0.0])}


@pytest.mark.parametrize("mode", sorted(_CTM))
def test_resize_linear_coordinate_modes(mode):
    from refdet.onnx_ops.resize import resize_linear_forward

    x = np.array([[[[0.0, 1.0, 2.0]]]])
    two, one = _CTM[mode]
    y2, _ = resize_linear_forward(x, size=(1, 2), convention="onnx", coordinate_transformation_mode=mode)
    y1, _ = resize_linear_forward(x, size=(1, 1), convention="onnx", coordinate_transformation_mode=mode)
    # (onnxruntime computes the scale and coordinates in float32: 0.24999998, 1.4999999)
    np.testing.assert_allclose(y2[0, 0, 0], two, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y1[0, 0, 0], one, rtol=1e-6, atol=1e-6)
