"""refdet.eval.curves against the benchmarks' own code, copied here from their sources (issue 19).

``_devkit_voc_ap`` is ``voc_ap`` of the VOC devkit's ``voc_eval.py`` (py-faster-rcnn
``lib/datasets/voc_eval.py``), ``_cocoeval_readout`` the precision read-out of pycocotools
``COCOeval.accumulate``; both line for line. Curves are drawn with recalls on the grids the methods
read (multiples of 0.1 and 0.01, hit exactly), ties, and repeated recalls.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refdet.eval import average_precision
from refdet.eval import curves as C


def _devkit_voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def _cocoeval_readout(rc, pr):
    rec_thrs = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
    nd = len(rc)
    q = np.zeros((len(rec_thrs),))
    pr = pr.tolist()
    q = q.tolist()
    for i in range(nd - 1, 0, -1):
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    inds = np.searchsorted(rc, rec_thrs, side='left')
    try:
        for ri, pi in enumerate(inds):
            q[ri] = pr[pi]
    except IndexError:
        pass
    return np.array(q)


_GRID = st.sampled_from([k / 10 for k in range(11)] + [k / 100 for k in range(101)] + [0.0, 1.0])
_VALUE = st.one_of(_GRID, st.floats(0.0, 1.0, allow_nan=False))
# outside [0, 1] and unsorted: what average_precision accepts; the benchmarks' code computes something
# defined for it, and refdet must compute the same
_WILD = st.one_of(_GRID, st.floats(-0.5, 1.5, allow_nan=False))


@st.composite
def _curves(draw):
    n = draw(st.integers(0, 12))
    wild = draw(st.booleans())
    value = _WILD if wild else _VALUE
    rec = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    prec = np.array(draw(st.lists(value, min_size=n, max_size=n)), dtype=np.float64)
    if not (wild and draw(st.booleans())):
        rec = np.sort(rec)
    return rec, prec


@given(_curves())
def test_curve_ap_is_the_devkit_and_cocoeval_code(curve):
    rec, prec = curve
    assert C.curve_ap(rec, prec, "voc2010") == float(_devkit_voc_ap(rec, prec))
    assert C.curve_ap(rec, prec, "voc2007") == float(_devkit_voc_ap(rec, prec, use_07_metric=True))
    q = _cocoeval_readout(rec, prec)
    np.testing.assert_array_equal(C.interp101(rec, prec), q)
    assert C.curve_ap(rec, prec, "coco101") == float(np.mean(q))


def test_unsorted_recall_and_recall_above_one_follow_the_devkit():
    # zero-width and backward steps are summed as the devkit sums them (its i = where mrec changes)
    rec = np.array([0.5, 0.0, 0.5])
    prec = np.array([1.0, 0.5, 0.25])
    assert C.curve_ap(rec, prec, "voc2010") == float(_devkit_voc_ap(rec, prec))
    assert C.curve_ap(rec, prec, "voc2010") == pytest.approx(0.5 * 1.0 - 0.5 * 0.5 + 0.5 * 0.25, abs=1e-15)
    # the 11-point grid stops at 1.0, whatever the recall reaches
    rec, prec = np.array([1.5]), np.array([1.0])
    assert C.curve_ap(rec, prec, "voc2007") == float(_devkit_voc_ap(rec, prec, use_07_metric=True))
    assert C.curve_ap(rec, prec, "voc2007") == pytest.approx(1.0, abs=1e-15)


def test_thresholds_hit_exactly():
    # voc2007 reads max precision where rec >= t (inclusive); coco101 reads at searchsorted side="left",
    # i.e. the first recall >= the threshold (inclusive too)
    rec = np.array([0.3, 0.6, 1.0])
    prec = np.array([1.0, 0.5, 0.25])
    # the devkit's grid np.arange(0, 1.1, 0.1) holds 0.30000000000000004 and 0.6000000000000001, just
    # above the recalls 0.3 and 0.6: those two points read the next precision (an exact grid would
    # give (4 + 3 * 0.5 + 4 * 0.25) / 11)
    assert C.curve_ap(rec, prec, "voc2007") == pytest.approx((3 * 1.0 + 3 * 0.5 + 5 * 0.25) / 11, abs=1e-15)
    q = C.interp101(rec, prec)
    assert q[30] == 1.0 and q[31] == 0.5 and q[60] == 0.5 and q[61] == 0.25 and q[100] == 0.25
    # voc2010: the envelope times the recall steps 0.3, 0.3, 0.4
    assert C.curve_ap(rec, prec, "voc2010") == pytest.approx(0.3 + 0.15 + 0.1, abs=1e-15)


def test_curve_past_its_end_reads_zero_and_an_empty_curve_is_zero():
    q = C.interp101(np.array([0.5]), np.array([0.8]))
    assert q[:51].tolist() == [0.8] * 51 and q[51:].tolist() == [0.0] * 50
    assert C.interp101(np.zeros(0), np.zeros(0)).tolist() == [0.0] * 101
    for method in C.CURVE_METHODS:
        assert C.curve_ap(np.zeros(0), np.zeros(0), method) == 0.0


def test_envelope_is_taken_from_the_right():
    # a later higher precision lifts the earlier ones (interpolated precision), never the later ones
    rec = np.array([0.25, 0.5, 0.75])
    prec = np.array([0.2, 0.6, 0.4])
    assert C.interp101(rec, prec)[:51].tolist() == [0.6] * 51
    assert C.interp101(rec, prec)[51:76].tolist() == [0.4] * 25
    assert C.curve_ap(rec, prec, "voc2010") == pytest.approx(0.5 * 0.6 + 0.25 * 0.4, abs=1e-15)


def test_threshold_grids_are_cocoeval_bit_for_bit():
    r = C.recall_thresholds()
    assert r.shape == (101,) and r[0] == 0.0 and r[-1] == 1.0
    np.testing.assert_array_equal(r, np.linspace(.0, 1.00, 101, endpoint=True))
    t = C.iou_thresholds()
    assert t.shape == (10,) and t[0] == 0.5 and t[-1] == 0.95
    assert t[5] == 0.75
    np.testing.assert_array_equal(t, np.linspace(.5, 0.95, 10, endpoint=True))


def test_validate_curve_names_its_arguments():
    rec, prec = C.validate_curve(np.array([0, 1], dtype=np.float32), np.array([1, 0], dtype=np.float32))
    assert rec.dtype == np.float64 and prec.dtype == np.float64
    with pytest.raises(ValueError, match="`recall` must be 1-D"):
        C.validate_curve([[0.5]], [1.0])
    with pytest.raises(ValueError, match="`precision` must be 1-D"):
        C.validate_curve([0.5], [[1.0]])
    with pytest.raises(ValueError, match="`recall` and `precision`"):
        C.validate_curve([0.5, 1.0], [1.0])
    with pytest.raises(ValueError, match="`precision`"):
        average_precision([0.5], [np.nan])
