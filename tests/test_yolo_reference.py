"""The readable loop versions in refdet.reference.yolo, held equal to the vectorised refdet.yolo.

Task-aligned assignment: tests/test_yolo_assign.py::test_tal_equals_reference_loop (indices exact,
quality to 1e-13 relative: NumPy's vectorised pow and Python's libm pow may differ in the last place).
"""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from refdet.reference import yolo as ref
from refdet.testing import strategies_yolo as ys
from refdet.yolo.anchors import make_anchors
from refdet.yolo.decode import dfl_decode_forward


@given(ys.pyramid_grids(max_levels=2, max_cells=4), st.integers(2, 17), st.integers(0, 10 ** 6))
def test_dfl_decode_equals_reference_loop(grid, reg_max, seed):
    ap, s = make_anchors(grid["feature_sizes"], grid["strides"], dtype=np.float64)
    z = np.random.default_rng(seed).standard_normal((ap.shape[0], 4 * reg_max)) * 4
    got, _ = dfl_decode_forward(z[None], ap, s, reg_max=reg_max)
    want = ref.dfl_decode(z, ap, s[:, 0], reg_max=reg_max)
    # the loop sums the expectation left to right, the fast path by a dot product: ulp-level only
    np.testing.assert_allclose(got[0], want, rtol=1e-13, atol=1e-12 * max(grid["image_size"]))


def test_reference_tal_golden_agrees():
    # one point, one gt [0, 0, 24, 8], prediction equal to it, score 1. ultralytics' CIoU adds eps to
    # the heights of the areas but not of the intersection: u = 192 / (2 * 24 * (8 + 1e-7) - 192 + 1e-7)
    # (centres equal, aspect ratios equal: CIoU = IoU); t = 1 * u^6; quality = t * u / (t + 1e-9)
    pts = np.array([[12.0, 4.0]])
    labels, gi, boxes, q = ref.task_aligned_assign(np.array([[[1.0]]]), np.array([[[0.0, 0, 24, 8]]]), pts,
                                                   np.array([[0]]), np.array([[[0.0, 0, 24, 8]]]),
                                                   np.array([[True]]), topk=1, min_side=None)
    assert gi.tolist() == [[0]] and labels.tolist() == [[0]]
    u = 192 / (2 * 24 * (8 + 1e-7) - 192 + 1e-7)
    np.testing.assert_allclose(q, [[u ** 7 / (u ** 6 + 1e-9)]], rtol=1e-14)
