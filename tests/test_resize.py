"""Tests of refdet.resize (nearest-neighbour resizing): golden indices, gradient checks, and
differentials against torch (bit-exact) and onnxruntime's Resize."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refdet import layers, resize
from refdet.resize import (onnx_resize_nearest_source_index, upsample_nearest_backward, upsample_nearest_forward,
                           upsample_nearest_source_index)
from refdet.testing import check_gradients
from refdet.testing import strategies as rst


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def test_names_stay_importable_from_layers():
    # moved out of refdet.layers; the old import path gives the same objects
    import refdet
    # the top level keeps the ops users call; cache/gradient types and constants stay in the module
    for name in resize.__all__:
        if name.endswith(("Cache", "Grads", "Candidate")) or name.isupper():
            assert not hasattr(refdet, name), name
            continue
        assert getattr(layers, name) is getattr(resize, name) is getattr(refdet, name)


def test_tv16_upsample_3x3_to_5x5():
    # SPEC TV16. nearest: src = floor(dst * 3/5) for dst = 0..4 -> floor(0, .6, 1.2, 1.8, 2.4) = [0,0,1,1,2]
    # nearest-exact: floor((dst + .5) * 3/5) = floor(.3, .9, 1.5, 2.1, 2.7) = [0,0,1,2,2]
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    y, _ = upsample_nearest_forward(x, size=(5, 5), mode="nearest")
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5], [3, 3, 4, 4, 5],
                                            [6, 6, 7, 7, 8]])
    y, _ = upsample_nearest_forward(x, size=5, mode="nearest-exact")
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 1, 2, 2], [0, 0, 1, 2, 2], [3, 3, 4, 5, 5], [6, 6, 7, 8, 8],
                                            [6, 6, 7, 8, 8]])


def test_upsample_source_index_odd_fpn_sizes():
    # 13 -> 25 (an 800-px image's P5 -> P4 on a 25-row map): floor(dst * 13/25); dst = 24 -> floor(12.48) = 12
    r = upsample_nearest_source_index(13, 25)
    assert r[0] == 0 and r[24] == 12 and np.all(np.diff(r) >= 0) and set(r) == set(range(13))
    # dst = 13: 13 * 0.52 = 6.76 -> 6; nearest-exact: 13.5 * 0.52 = 7.02 -> 7
    assert r[13] == 6 and upsample_nearest_source_index(13, 25, mode="nearest-exact")[13] == 7
    # out == 2 * in is special-cased (dst >> 1), out == in copies
    np.testing.assert_array_equal(upsample_nearest_source_index(38, 76), np.arange(76) // 2)
    np.testing.assert_array_equal(upsample_nearest_source_index(7, 7), np.arange(7))
    # scale_factor: the index uses 1 / scale_factor, not in / out (2 -> floor(2 * 2.1) = 4 rows)
    y, c = upsample_nearest_forward(np.zeros((1, 1, 2, 3)), scale_factor=(2.1, 1))
    assert y.shape == (1, 1, 4, 3)


@settings(max_examples=30)
@given(x=rst.feature_maps(max_side=7), ho=st.integers(1, 15), wo=st.integers(1, 15),
       mode=st.sampled_from(["nearest", "nearest-exact"]))
def test_upsample_gradcheck_and_adjoint(x, ho, wo, mode):
    check_gradients(upsample_nearest_forward, upsample_nearest_backward, (x,),
                    kwargs={"size": (ho, wo), "mode": mode}, rng=0)
    # adjointness: <U x, v> = <x, U^T v> exactly in float64 for small integers
    y, cache = upsample_nearest_forward(np.round(x), size=(ho, wo), mode=mode)
    v = np.arange(y.size, dtype=np.float64).reshape(y.shape) % 7
    assert np.sum(y * v) == np.sum(np.round(x) * upsample_nearest_backward(v, cache).dx)


def test_upsample_rejects_bad_arguments():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="exactly one of `size` and `scale_factor`"):
        upsample_nearest_forward(x)
    with pytest.raises(ValueError, match="exactly one of `size` and `scale_factor`"):
        upsample_nearest_forward(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="`mode`"):
        upsample_nearest_forward(x, size=4, mode="bilinear")
    with pytest.raises(ValueError, match="`size`"):
        upsample_nearest_forward(x, size=(4, 4, 4))
    with pytest.raises(ValueError, match="`scale_factor`"):
        upsample_nearest_forward(x, scale_factor=0.1)
    with pytest.raises(ValueError, match="`x` must be 4-D"):
        upsample_nearest_forward(np.zeros((3, 3)), size=4)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_upsample_index_rule_matches_torch_exhaustively(mode):
    torch = _torch()
    F = torch.nn.functional
    # float32 maps: every in <= 48, out <= 3 * in + 1, plus the brief's odd FPN sizes
    for n_in in list(range(1, 49)) + [100]:
        x = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in, 1).expand(1, 1, n_in, 2).contiguous()
        for n_out in list(range(1, 3 * n_in + 2)) + ([25] if n_in == 13 else []) + ([75] if n_in == 38 else []):
            t = F.interpolate(x, size=(n_out, 2), mode=mode)[0, 0, :, 0].numpy().astype(np.int64)
            np.testing.assert_array_equal(upsample_nearest_source_index(n_in, n_out, mode=mode), t,
                                          err_msg=f"{n_in} -> {n_out} {mode}")
    for n_in in range(1, 40):
        x = torch.arange(n_in, dtype=torch.float32).view(1, 1, n_in, 1).expand(1, 1, n_in, 2).contiguous()
        for sf in (0.5, 0.7, 1.3, 1.5, 2.0, 2.1, 2.5, 3.0, 1 / 3, 1.9999):
            if int(np.floor(n_in * sf)) < 1:
                continue
            t = F.interpolate(x, scale_factor=(sf, 1), mode=mode)[0, 0, :, 0].numpy().astype(np.int64)
            y, c = upsample_nearest_forward(np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in, 1) * np.ones(2),
                                            scale_factor=(sf, 1), mode=mode)
            np.testing.assert_array_equal(c.rows, t, err_msg=f"{n_in} x {sf} {mode}")


@settings(max_examples=40)
@given(x=rst.feature_maps(max_side=9), ho=st.integers(1, 20), wo=st.integers(1, 20),
       mode=st.sampled_from(["nearest", "nearest-exact"]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_upsample_matches_torch_bit_exact(x, ho, wo, mode, dtype, seed):
    torch = _torch()
    x = x.astype(dtype)
    if dtype == np.float64 and mode == "nearest-exact":
        dtype = np.float32  # float64 torch computes nearest-exact indices in double (see the docstring)
        x = x.astype(dtype)
    y, cache = upsample_nearest_forward(x, size=(ho, wo), mode=mode)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, size=(ho, wo), mode=mode)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    # the backward adds in torch's order: bit-exact in float32 too
    np.testing.assert_array_equal(upsample_nearest_backward(dy, cache).dx, tx.grad.numpy())


def test_onnx_resize_spec_cases():
    # SPEC-quant-exchange §5/§6.3: 13 -> 25 with the ONNX default (half_pixel, round_prefer_floor):
    # output 13: x = (13 + .5) * 13/25 - .5 = 6.52 -> 7, while PyTorch nearest reads floor(13 * .52) = 6
    onnx_rows = onnx_resize_nearest_source_index(13, 25)
    np.testing.assert_array_equal(onnx_rows, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11,
                                              12, 12])
    y, _ = upsample_nearest_forward(np.arange(13.0).reshape(1, 1, 13, 1), size=(25, 1), convention="onnx")
    np.testing.assert_array_equal(y.ravel(), onnx_rows)
    # asymmetric + floor is PyTorch's nearest, for the odd FPN sizes too
    for n_in, n_out in ((13, 25), (5, 7), (38, 75), (10, 15)):
        np.testing.assert_array_equal(
            onnx_resize_nearest_source_index(n_in, n_out, coordinate_transformation_mode="asymmetric",
                                             nearest_mode="floor"),
            upsample_nearest_source_index(n_in, n_out))
    # integer scale 2: half_pixel maps dst to dst/2 - 1/4 (rounds to dst // 2 either way) and asymmetric
    # to dst/2 (floor, or a tie rounded down) -> dst // 2, PyTorch's map. Not every pair does:
    # asymmetric + round_prefer_ceil sends dst = 1 (0.5) to 1, half_pixel + floor sends dst = 2 (0.75) to 0.
    for ctm, nm in (("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
                    ("pytorch_half_pixel", "round_prefer_floor"), ("asymmetric", "floor"),
                    ("asymmetric", "round_prefer_floor")):
        np.testing.assert_array_equal(
            onnx_resize_nearest_source_index(13, 26, coordinate_transformation_mode=ctm, nearest_mode=nm),
            np.arange(26) // 2, err_msg=f"{ctm} {nm}")
    assert onnx_resize_nearest_source_index(13, 26, coordinate_transformation_mode="asymmetric",
                                            nearest_mode="round_prefer_ceil")[1] == 1
    assert onnx_resize_nearest_source_index(13, 26, coordinate_transformation_mode="half_pixel",
                                            nearest_mode="floor")[2] == 0
    # explicit knobs override the profile; a bad knob names itself
    y2, _ = upsample_nearest_forward(np.arange(13.0).reshape(1, 1, 13, 1), size=(25, 1), convention="onnx",
                                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    np.testing.assert_array_equal(y2.ravel(), upsample_nearest_source_index(13, 25))
    with pytest.raises(ValueError, match="`nearest_mode`"):
        upsample_nearest_forward(np.zeros((1, 1, 2, 2)), size=3, mode="onnx", nearest_mode="round")
    with pytest.raises(ValueError, match="`convention`"):
        upsample_nearest_forward(np.zeros((1, 1, 2, 2)), size=3, convention="keras")


def _ort_resize_rows(ort, n_in, n_out, ctm, nm, scale=None):
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, n_in, 1])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    if scale is None:
        init = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, n_out, 1])
        node = helper.make_node("Resize", ["X", "", "", "sizes"], ["Y"], mode="nearest",
                                coordinate_transformation_mode=ctm, nearest_mode=nm)
    else:
        init = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, 1])
        node = helper.make_node("Resize", ["X", "", "scales"], ["Y"], mode="nearest",
                                coordinate_transformation_mode=ctm, nearest_mode=nm)
    model = helper.make_model(helper.make_graph([node], "resize", [x], [y], initializer=[init]),
                              opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": np.arange(n_in, dtype=np.float32).reshape(1, 1, n_in, 1)})[0].ravel().astype(np.int64)


def _boundary(n_in, n_out, ctm, scale=None):
    """Positions whose exact source coordinate is an integer or a half-integer (float32 may land on
    either side of it; ONNX Runtime and refdet can round such positions differently)."""
    from fractions import Fraction
    s = Fraction(n_out, n_in) if scale is None else Fraction(np.float32(scale).item())
    out = []
    for d in range(n_out):
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            x = (d + Fraction(1, 2)) / s - Fraction(1, 2)
        elif ctm == "tf_half_pixel_for_nn":
            x = (d + Fraction(1, 2)) / s
        elif ctm == "asymmetric":
            x = d / s
        else:
            x = Fraction(d * (n_in - 1), n_out - 1) if n_out > 1 else Fraction(0)
        out.append((2 * x).denominator == 1)
    return np.array(out, dtype=bool)


@pytest.mark.parametrize("ctm", ["half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn",
                                 "align_corners"])
def test_onnx_resize_matches_onnxruntime(ctm):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    checked = 0
    for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        for n_in in range(1, 12):
            for n_out in range(1, 2 * n_in + 3):
                ref = _ort_resize_rows(ort, n_in, n_out, ctm, nm)
                mine = onnx_resize_nearest_source_index(n_in, n_out, coordinate_transformation_mode=ctm,
                                                        nearest_mode=nm)
                # asymmetric/floor (PyTorch's nearest) agrees everywhere, boundaries included
                keep = np.ones(n_out, bool) if (ctm, nm) == ("asymmetric", "floor") else ~_boundary(n_in, n_out, ctm)
                np.testing.assert_array_equal(mine[keep], ref[keep], err_msg=f"{n_in} -> {n_out} {ctm} {nm}")
                checked += int(keep.sum())
    # with `scales`: output floor(in * scale), coordinates from the given scale
    for n_in, scale in ((5, 1.5), (7, 2.0), (10, 1.5), (9, 0.5), (13, 1.9)):
        ref = _ort_resize_rows(ort, n_in, None, ctm, "round_prefer_floor", scale=scale)
        y, c = upsample_nearest_forward(np.zeros((1, 1, n_in, 1)), scale_factor=(scale, 1.0), mode="onnx",
                                        coordinate_transformation_mode=ctm, nearest_mode="round_prefer_floor")
        assert len(c.rows) == len(ref)
        keep = ~_boundary(n_in, len(ref), ctm, scale=scale)
        np.testing.assert_array_equal(c.rows[keep], ref[keep], err_msg=f"{n_in} x {scale} {ctm}")
    assert checked > 300


def test_upsample_recompute_scale_factor_and_dtypes_match_torch():
    torch = _torch()
    F = torch.nn.functional
    for n_in in range(1, 30):
        x = np.arange(n_in * 2, dtype=np.float32).reshape(1, 1, n_in, 2)
        for sf in (0.45, 1.3, 1.5, 1.9999, 2.1, 2.5):
            if int(np.floor(n_in * sf)) < 1:
                continue
            for mode in ("nearest", "nearest-exact"):
                t = F.interpolate(torch.tensor(x), scale_factor=(sf, 1.0), mode=mode, recompute_scale_factor=True)
                y, _ = upsample_nearest_forward(x, scale_factor=(sf, 1.0), mode=mode, recompute_scale_factor=True)
                np.testing.assert_array_equal(y, t.numpy(), err_msg=f"{n_in} x {sf} {mode}")
    # float16 is computed (and returned) in float32, integers in float64
    y16, c16 = upsample_nearest_forward(np.ones((1, 1, 2, 2), np.float16), size=3)
    assert y16.dtype == np.float32 and upsample_nearest_backward(np.ones((1, 1, 3, 3)), c16).dx.dtype == np.float32
    yi, _ = upsample_nearest_forward(np.arange(4, dtype=np.int32).reshape(1, 1, 2, 2), size=4)
    assert yi.dtype == np.float64 and yi[0, 0, 3, 3] == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_upsample_exact_x2_backward_bit_exact_vs_torch(dtype):
    # the x2 fast path of the backward (FPN's case) adds each 2 x 2 block in torch's order
    torch = _torch()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    y, cache = upsample_nearest_forward(x, size=(10, 14))
    dy = rng.standard_normal(y.shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.interpolate(tx, size=(10, 14), mode="nearest").backward(torch.tensor(dy))
    np.testing.assert_array_equal(upsample_nearest_backward(dy, cache).dx, tx.grad.numpy())


# memory layout: C, Fortran, strided, reversed and read-only inputs give the same bits

from tests import _layouts  # noqa: E402
from tests.contract import resize as _contract  # noqa: E402


@pytest.mark.parametrize("case", _contract.CASES, ids=lambda c: c.name)
def test_bits_do_not_depend_on_memory_layout(case):
    _layouts.assert_layout_independent(getattr(resize, case.name), case.make)
