"""Pins of ``batched_nms`` convention values that the tests the coverage run tried did not catch
(mutation/convention_coverage.md): ``nan_scores``, ``corner_order``, ``threshold_dtype`` and the
coordinate trick's ``True`` vs ``"torchvision"`` (which differ only above 1000 boxes).
"""
import numpy as np
import pytest

from refdet.nms import batched_nms

F32 = np.float32


def test_nan_scores_first_and_reject():
    # torch.sort puts NaN above every number: the NaN box is visited first and suppresses box 0
    # (IoU 1 > 0.5); ONNX/TF leave NaN undefined: refdet refuses it
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], F32)
    s = np.array([0.9, np.nan], F32)
    c = np.array([0, 0])
    assert batched_nms(b, s, c, 0.5).tolist() == [1]
    assert batched_nms(b, s, c, 0.5, nan_scores="first", convention="onnx").tolist() == [1]
    for kw in ({"convention": "onnx"}, {"nan_scores": "reject"}):
        with pytest.raises(ValueError, match="NaN|nan"):
            batched_nms(b, s, c, 0.5, **kw)


def test_corner_order_any_reads_a_flipped_box():
    # ONNX: any diagonal is a box: [10, 10, 0, 0] is [0, 0, 10, 10], IoU 1: suppressed. As given
    # (torchvision) its width is -10: I = max(0, min(10, 0) - max(0, 10)) = 0: IoU 0, kept.
    b = np.array([[0, 0, 10, 10], [10, 10, 0, 0]], F32)
    s = np.array([0.9, 0.8], F32)
    c = np.array([0, 0])
    assert batched_nms(b, s, c, 0.5, convention="onnx").tolist() == [0]
    assert batched_nms(b, s, c, 0.5, convention="onnx", corner_order="as_given").tolist() == [0, 1]
    assert batched_nms(b, s, c, 0.5).tolist() == [0, 1]
    assert batched_nms(b, s, c, 0.5, corner_order="any").tolist() == [0]


@pytest.mark.parametrize("conv, override, kept", [
    ("torchvision", None, [0]), ("torchvision", "working", [0, 1]),
    ("onnx", None, [0, 1]), ("onnx", "float64", [0])])
def test_threshold_dtype(conv, override, kept):
    # float32 IoU of [0, 0, 10, 10] and [0, 0, 10, 1]: 10 / 100 = float32(0.1) = 0.10000000149...
    # torchvision compares it with the double 0.1: greater, suppressed. ONNX rounds the threshold to
    # float32 first: 0.1f > 0.1f is false, kept.
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 1]], F32)
    s = np.array([0.9, 0.8], F32)
    got = batched_nms(b, s, np.array([0, 0]), 0.1, convention=conv, threshold_dtype=override)
    assert got.tolist() == kept


def test_coordinate_trick_true_vs_torchvision_above_1000_boxes():
    # TV12: boxes.max() = 10, offset idx * 11: the class-1 box [-11, -11, -1, -1] lands on the
    # class-0 box [0, 0, 10, 10]: the trick suppresses it. 1000 filler boxes (class 2, inside
    # [2, 3]) make 1002 boxes, numel 4008 > 4000: torchvision's rule takes the exact per-class path.
    b = np.array([[0, 0, 10, 10], [-11, -11, -1, -1]] + [[2, 2, 3, 3]] * 1000, F32)
    s = np.array([0.9, 0.8] + [0.1] * 1000, F32)
    c = np.array([0, 1] + [2] * 1000)
    assert 1 not in batched_nms(b, s, c, 0.5, coordinate_trick=True).tolist()
    assert 1 in batched_nms(b, s, c, 0.5, coordinate_trick="torchvision").tolist()
    assert 1 in batched_nms(b, s, c, 0.5, coordinate_trick=False).tolist()
    # at 1000 boxes or fewer the two agree (the trick)
    assert 1 not in batched_nms(b[:1000], s[:1000], c[:1000], 0.5, coordinate_trick="torchvision").tolist()
