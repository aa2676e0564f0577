"""Fast == reference for the NMS family: refdet.nms (the speed engine) against refdet.reference.nms
(the whiteboard loops), on hypothesis inputs built to hit every rule: tied scores, IoUs exactly on
the threshold and one ulp either side (in the boxes' dtype), NaN scores where the convention defines
them, empty sets, degenerate, flipped and duplicate boxes, float16/float32/float64, every convention
profile and every knob override.

Indices must be exactly equal. Soft-NMS scores must be bit-equal (a 0-ULP bound): both sides run the
same IEEE operations in the same order in the same dtype, and NumPy's ``exp`` of one element is the
same function as its ``exp`` over an array."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from refdet import batched_nms, conventions, descending_order, nms, onnx_non_max_suppression, soft_nms
from refdet.reference import nms as ref
from refdet.testing import assert_nms_equal, ulp_distance
from refdet.testing import strategies as rst

F16, F32, F64 = np.float16, np.float32, np.float64
SOFT_ULP_BOUND = 0          # soft-NMS scores: bit-equal (see the module docstring)


def _working(dtype):
    return F32 if dtype in (F16, F32) else F64


@st.composite
def threshold_near_a_pair(draw, b, thr):
    """``thr``, or the IoU of a drawn pair of ``b`` computed in the boxes' working dtype: exactly, one
    ulp of that dtype above or below it, or one float64 ulp above or below it (a double threshold
    that float32 cannot hold: where torchvision's double comparison and a float32 one differ)."""
    mode = draw(st.sampled_from(["given", "at", "above", "below", "double_above", "double_below"]))
    if mode == "given" or len(b) < 2:
        return thr
    i = draw(st.integers(0, len(b) - 1))
    j = (i + draw(st.integers(1, len(b) - 1))) % len(b)          # another box
    w = b.astype(_working(b.dtype))
    iou = ref.pair_iou(w[i], w[j])
    if not np.isfinite(iou):
        return thr
    if mode in ("above", "below"):
        iou = np.nextafter(iou, iou.dtype.type(np.inf if mode == "above" else -np.inf))
    elif mode != "at":
        iou = np.nextafter(np.float64(iou), np.inf if mode == "double_above" else -np.inf)
    # a flipped box's IoU can leave [0, 1]; the public functions refuse such thresholds
    return float(iou) if 0.0 <= iou <= 1.0 else thr


@st.composite
def nms_cases(draw, *, dtypes=(F32, F64), nan=False, flipped=True, max_n=30):
    """``(boxes, scores, iou_threshold)`` in one of ``dtypes``."""
    dtype = draw(st.sampled_from(dtypes))
    b, s, thr = draw(rst.nms_inputs(max_n=max_n, nan=nan, flipped=flipped, dtype=F64))
    b, s = b.astype(dtype), s.astype(dtype)
    return b, s, draw(threshold_near_a_pair(b, thr))


def _profile(draw, op, profiles):
    """A convention profile of ``op`` with some knobs overridden by declared values."""
    table = conventions.describe(op)
    name = draw(st.sampled_from(profiles or list(table)))
    over = {}
    for knob, opt in table.options.items():
        if opt.kind in ("flag", "choice") and draw(st.integers(0, 3)) == 0:
            over[knob] = draw(st.sampled_from((False, True) if opt.kind == "flag" else opt.allowed))
    p = conventions.resolve(op, name, **over)
    if "corner_order" in p and p.corner_order == "any" and p.plus_one:   # undefined combination
        p = p.replace(plus_one=False)
    return p


profiles = st.composite(_profile)


# ------------------------------------------------------------------------------------- greedy NMS

@given(nms_cases(dtypes=(F16, F32, F64), nan=True), profiles("nms", None))
def test_nms_equals_reference(case, p):
    b, s, thr = case
    if p.nan_scores == "reject" and np.isnan(s).any():
        with pytest.raises(ValueError, match="`scores`.*NaN"):
            nms(b, s, thr, convention=p)
        with pytest.raises(ValueError, match="`scores`"):
            ref.nms(b, s, thr, **p)
        return
    assert_nms_equal(nms(b, s, thr, convention=p), ref.nms(b, s, thr, **p), b, s, iou_threshold=thr)


@given(rst.threshold_box_pairs())
def test_nms_exact_threshold_pairs(pair):
    """Two boxes whose float32 IoU sits exactly on the threshold or one float32 ulp from it, the
    threshold also moved by one float64 ulp (a double float32 cannot hold); every comparison rule."""
    boxes, t32 = pair
    for t in (t32, float(np.nextafter(t32, -np.inf)), float(np.nextafter(t32, np.inf))):
        for dtype in (F32, F64):
            b, s = boxes.astype(dtype), np.array([0.9, 0.8], dtype)
            for inclusive in (False, True):
                for threshold_dtype in ("float64", "working"):
                    p = conventions.resolve("nms", "torchvision", inclusive=inclusive,
                                            threshold_dtype=threshold_dtype)
                    assert nms(b, s, t, convention=p).tolist() == ref.nms(b, s, t, **p).tolist(), (t, p)


def test_nms_empty_and_single():
    for dtype in (F32, F64):
        e = np.zeros((0, 4), dtype)
        assert nms(e, np.zeros(0, dtype), 0.5).tolist() == ref.nms(e, np.zeros(0, dtype), 0.5).tolist() == []
        one = np.array([[1, 2, 3, 4]], dtype)
        s1 = np.ones(1, dtype)
        assert nms(one, s1, 0.5).tolist() == ref.nms(one, s1, 0.5).tolist() == [0]


@given(rst.tied_scores(40, nan=True, dtype=F64), st.sampled_from([F16, F32, F64]),
       st.sampled_from(["lowest_index", "highest_index"]))
def test_descending_order_equals_reference(s, dtype, ties):
    s = s.astype(dtype)
    s[::7] = -s[::7]                      # -0.0 next to 0.0, negatives
    assert descending_order(s, ties=ties).tolist() == ref.visiting_order(s, ties)


# ------------------------------------------------------------------------------------- class-aware NMS

@given(nms_cases(nan=True), profiles("batched_nms", None), st.integers(1, 4), st.booleans())
def test_batched_nms_equals_reference(case, p, ncls, negative_ids):
    b, s, thr = case
    assume(not (p.nan_scores == "reject" and np.isnan(s).any()))
    c = (np.arange(len(b)) * 5 % ncls).astype(np.int64) - (2 if negative_ids else 0)
    got = batched_nms(b, s, c, thr, convention=p)
    assert_nms_equal(got, ref.batched_nms(b, s, c, thr, **p), b, s, iou_threshold=thr)


# ------------------------------------------------------------------------------------- Soft-NMS

@given(nms_cases(max_n=20), profiles("soft_nms", None), st.sampled_from(["linear", "gaussian", "hard"]),
       st.one_of(st.sampled_from([0.5, 2.0]), st.integers(16_000, 10 ** 6).map(lambda k: k / 333_331)),
       st.sampled_from([0.001, 0.05, 0.3]),
       st.sampled_from([None, F32, F64]))
def test_soft_nms_equals_reference(case, p, method, sigma, score_threshold, score_dtype):
    b, s, thr = case
    if score_dtype is not None:
        s = s.astype(score_dtype)                 # mixed dtypes: the wider one is the working dtype
    kw = dict(method=method, sigma=sigma, iou_threshold=thr, score_threshold=score_threshold)
    got = soft_nms(b, s, convention=p, **kw)
    ind, sc = ref.soft_nms(b, s, **kw, **p)
    assert got.indices.tolist() == ind.tolist()
    assert got.scores.dtype == sc.dtype == np.result_type(_working(b.dtype), _working(s.dtype))
    ulps = ulp_distance(got.scores, sc) if len(sc) else np.zeros(0)
    same_nan = np.array_equal(np.isnan(got.scores), np.isnan(sc))
    assert same_nan and np.nanmax(ulps, initial=0) <= SOFT_ULP_BOUND, \
        f"soft-NMS scores differ by {np.nanmax(ulps, initial=0)} ulp:\n{got.scores}\n{sc}"
    if SOFT_ULP_BOUND == 0:
        assert got.scores.tobytes() == sc.tobytes()          # bit-equal, signed zeros included


# ------------------------------------------------------------------------------------- ONNX

@st.composite
def onnx_cases(draw):
    nb, nc = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    b, s, thr = draw(nms_cases(max_n=20))
    dtype, n = b.dtype, len(b)
    boxes = np.stack([b] + [b[::-1].copy() if draw(st.booleans()) else b for _ in range(nb - 1)])
    scores = np.stack([np.stack([draw(rst.tied_scores(n)) for _ in range(nc)]) for _ in range(nb)])
    scores = scores.astype(dtype)
    cpb = draw(st.integers(0, 1))
    if cpb:
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        boxes = np.stack([np.stack([cx, cy, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)] * nb)
    thr = float(min(max(thr, 0.0), 1.0))
    max_out = draw(st.sampled_from([0, -1, 1, 2, 5, 1000]))
    st_thr = draw(st.sampled_from([None, 0.0, 0.25, float(scores.flat[0]) if scores.size else 0.5]))
    return boxes.astype(dtype), scores, max_out, thr, st_thr, cpb


@given(onnx_cases())
def test_onnx_non_max_suppression_equals_reference(case):
    boxes, scores, max_out, thr, st_thr, cpb = case
    got = onnx_non_max_suppression(boxes, scores, max_out, thr, st_thr, center_point_box=cpb)
    want = ref.onnx_non_max_suppression(boxes, scores, max_out, thr, st_thr, center_point_box=cpb)
    assert got.dtype == want.dtype == np.int64
    assert got.tolist() == want.tolist()


# ------------------------------------------------------------------------------------- the reference itself

@given(nms_cases(max_n=25, flipped=False))
def test_reference_equals_torchvision(case):
    """The reference loop is credible on its own: it equals torchvision.ops.nms directly."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    b, s, thr = case
    want = tv.ops.nms(torch.from_numpy(b), torch.from_numpy(s), thr).numpy()
    assert_nms_equal(ref.nms(b, s, thr), want, b, s, iou_threshold=thr)
