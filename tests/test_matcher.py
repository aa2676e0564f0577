"""Tests of refdet.matcher: TV8 goldens, loop references of each framework, torchvision differentials."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refdet import match, match_details, ssd_match
from refdet.matcher import LOW_QUALITY_MODES
from refdet.testing import strategies as rst
from tests.conftest import readonly

# --------------------------------------------------------------------------------------------------
# Plain-loop references, transcribed from each framework's code (slow, readable; for teaching and as
# an independent check of the vectorised matcher). All return torchvision's encoding.
# --------------------------------------------------------------------------------------------------


def _first_argmax(values):
    """Index of the first maximum; NaN counts as the largest value (torch.max / np.argmax)."""
    best = 0
    for k in range(1, len(values)):
        vb, vk = values[best], values[k]
        if np.isnan(vb):
            break
        if np.isnan(vk) or vk > vb:
            best = k
    return best


def ref_torchvision(q, high, low, allow_low_quality):
    """torchvision Matcher.__call__ + set_low_quality_matches_ (_utils.py 357-416), as loops."""
    m, n = q.shape
    all_matches = [_first_argmax(q[:, j]) for j in range(n)]
    vals = [q[all_matches[j], j] for j in range(n)]
    out = []
    for j in range(n):
        if vals[j] < low:
            out.append(-1)
        elif low <= vals[j] < high:
            out.append(-2)
        else:                                       # >= high, or NaN (fails both tests)
            out.append(all_matches[j])
    if allow_low_quality:
        for i in range(m):
            best = q[i, _first_argmax(q[i])]
            for j in range(n):
                if q[i, j] == best:                 # all ties; NaN == NaN is False
                    out[j] = all_matches[j]         # the anchor's own argmax gt
    return np.array(out, dtype=np.int64)


def ref_mmdet(q, pos_thr, neg_thr, min_pos_iou, gt_max_assign_all=True, match_low_quality=True):
    """mmdet MaxIoUAssigner.assign_wrt_overlaps (v3.3.0, 242-320); returns 1-based gt_inds."""
    m, n = q.shape
    gt_inds = [-1] * n
    argmax = [_first_argmax(q[:, j]) for j in range(n)]
    max_ov = [q[argmax[j], j] for j in range(n)]
    for j in range(n):
        if 0 <= max_ov[j] < neg_thr:
            gt_inds[j] = 0
    for j in range(n):
        if max_ov[j] >= pos_thr:
            gt_inds[j] = argmax[j] + 1
    if match_low_quality:
        for i in range(m):
            jbest = _first_argmax(q[i])
            if q[i, jbest] >= min_pos_iou:
                if gt_max_assign_all:
                    for j in range(n):
                        if q[i, j] == q[i, jbest]:
                            gt_inds[j] = i + 1       # the promoting gt; later gts overwrite
                else:
                    gt_inds[jbest] = i + 1
    return np.array(gt_inds, dtype=np.int64)


def mmdet_to_torchvision(gt_inds):
    return np.where(gt_inds > 0, gt_inds - 1, np.where(gt_inds == 0, -1, -2))


def ref_tf(q, matched, unmatched, force):
    """TF ArgMaxMatcher._match (positive >= matched, negative < unmatched, force_match_for_each_row)."""
    m, n = q.shape
    out = []
    for j in range(n):
        a = _first_argmax(q[:, j])
        v = q[a, j]
        out.append(-1 if v < unmatched else (-2 if v < matched else a))
    if force:
        forced_by = [_first_argmax(q[i]) for i in range(m)]
        for j in range(n):
            rows = [i for i in range(m) if forced_by[i] == j]
            if rows:
                out[j] = rows[0]                     # argmax over the one-hot column: lowest gt
    return np.array(out, dtype=np.int64)


def ref_background_after(q, high, low):
    """Detectron1 RetinaNet labelling (roi_data/retinanet.py): fg first, then bg overwrites."""
    m, n = q.shape
    argmax = [_first_argmax(q[:, j]) for j in range(n)]
    vals = [q[argmax[j], j] for j in range(n)]
    out = [-2] * n
    for i in range(m):
        best = max(q[i])
        for j in range(n):
            if q[i, j] == best:
                out[j] = argmax[j]
    for j in range(n):
        if vals[j] >= high:
            out[j] = argmax[j]
    for j in range(n):
        if vals[j] < low:
            out[j] = -1
    return np.array(out, dtype=np.int64)


def ref_pfr_rpn(q):
    """py-faster-rcnn anchor_target_layer.py 135-154 (RPN_CLOBBER_POSITIVES=False): labels, targets gt."""
    m, n = q.shape
    argmax = [int(np.argmax(q[:, j])) for j in range(n)]
    max_ov = [q[argmax[j], j] for j in range(n)]
    gt_max = [q[i].max() for i in range(m)]
    gt_argmax = [j for i in range(m) for j in range(n) if q[i, j] == gt_max[i]]
    labels = [-1] * n
    for j in range(n):
        if max_ov[j] < 0.3:
            labels[j] = 0
    for j in gt_argmax:
        labels[j] = 1
    for j in range(n):
        if max_ov[j] >= 0.7:
            labels[j] = 1
    return np.array(labels), np.array(argmax)


def ref_caffe_ssd(q, threshold, eps=1e-6):
    """Caffe SSD MatchBBox: BIPARTITE (greedy, strict >) then PER_PREDICTION (>= threshold)."""
    m, n = q.shape
    overlaps = {i: {j: q[j, i] for j in range(m) if q[j, i] > eps} for i in range(n)}
    overlaps = {i: d for i, d in overlaps.items() if d}
    match = [-1] * n
    pool = list(range(m))
    while pool:
        max_idx, max_gt, max_ov = -1, -1, -1.0
        for i in sorted(overlaps):
            if match[i] != -1:
                continue
            for j in pool:
                if j in overlaps[i] and overlaps[i][j] > max_ov:
                    max_idx, max_gt, max_ov = i, j, overlaps[i][j]
        if max_idx == -1:
            break
        match[max_idx] = max_gt
        pool.remove(max_gt)
    for i in sorted(overlaps):
        if match[i] != -1:
            continue
        best, best_ov = -1, -1.0
        for j in range(m):
            if j in overlaps[i] and overlaps[i][j] >= threshold and overlaps[i][j] > best_ov:
                best, best_ov = j, overlaps[i][j]
        if best != -1:
            match[i] = best
    return np.array(match, dtype=np.int64)


def ref_torchvision_ssd(q, threshold):
    """torchvision SSDMatcher: Matcher(t, t, False), then matches[argmax_row] = gt, last gt wins."""
    out = ref_torchvision(q, threshold, threshold, False)
    for i in range(q.shape[0] if q.shape[1] else 0):
        out[_first_argmax(q[i])] = i
    return out


# --------------------------------------------------------------------------------------------------
# TV8 goldens
# --------------------------------------------------------------------------------------------------

# TV8a: rows = gts, columns = anchors.
TV8A = np.array([[0.10, 0.60, 0.60, 0.20, 0.00, 0.75],
                 [0.50, 0.60, 0.10, 0.29, 0.00, 0.30]])
# best gt per anchor (first on ties): [1, 0, 0, 1, 0, 0]; best IoU [0.5, 0.6, 0.6, 0.29, 0, 0.75]
# thresholds 0.7/0.3: 0.5, 0.6, 0.6 are in [0.3, 0.7) -> -2; 0.29, 0 < 0.3 -> -1; 0.75 -> gt 0.
# gt 0's best is 0.75 (anchor 5, already positive); gt 1's best is 0.60 at anchor 1 only.


def test_tv8a_torchvision_without_low_quality():
    assert match(TV8A, allow_low_quality_matches=False).tolist() == [-2, -2, -2, -1, -1, 0]


def test_tv8a_torchvision_low_quality_regresses_to_argmax_gt():
    # anchor 1 is promoted by gt 1 but keeps its own argmax gt 0 (tie 0.6 == 0.6 -> first row)
    assert match(TV8A).tolist() == [-2, 0, -2, -1, -1, 0]
    assert match(TV8A, low_quality="all_ties_argmax_gt").tolist() == [-2, 0, -2, -1, -1, 0]


def test_tv8a_detectron2_labels_and_matches():
    d = match_details(TV8A, convention="detectron2")
    assert d.labels.tolist() == [-1, 1, -1, 0, 0, 1]
    assert d.matched_gt.tolist() == [1, 0, 0, 1, 0, 0]


def test_tv8a_py_faster_rcnn():
    d = match_details(TV8A, convention="caffe")
    labels, gt = ref_pfr_rpn(TV8A)
    assert d.labels.tolist() == labels.tolist() == [-1, 1, -1, 0, 0, 1]
    assert d.matched_gt[1] == gt[1] == 0                  # anchor 1 regresses to gt 0


def test_tv8a_mmdet_forcing_gt():
    # mmdet RPN MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3): gt 1 (best 0.6 >= 0.3) takes anchor 1
    d = match_details(TV8A, convention="mmdet")
    assert d.gt_inds.tolist() == [-1, 2, -1, 0, 0, 1]
    assert d.matches.tolist() == [-2, 1, -2, -1, -1, 0]
    assert ref_mmdet(TV8A, 0.7, 0.3, 0.3).tolist() == [-1, 2, -1, 0, 0, 1]


def test_tv8a_tf_force_match():
    assert match(TV8A, convention="tf").tolist() == [-2, 1, -2, -1, -1, 0]
    assert ref_tf(TV8A, 0.7, 0.3, True).tolist() == [-2, 1, -2, -1, -1, 0]


# TV8b (derived here, held back in the SPEC): gt 1 is a point box that overlaps no anchor.
#   gts     = [[0, 0, 10, 10], [50, 50, 50, 50]]
#   anchors = [[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40]]
#   gt 0: IoU 100/100 = 1, 100/200 = 0.5, 100/400 = 0.25, 0;  gt 1: area 0 -> IoU 0 with all.
TV8B_GTS = np.array([[0, 0, 10, 10], [50, 50, 50, 50]], dtype=np.float64)
TV8B_ANCHORS = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 20, 20], [30, 30, 40, 40]], dtype=np.float64)
TV8B = np.array([[1.0, 0.5, 0.25, 0.0],
                 [0.0, 0.0, 0.0, 0.0]])

TV8B_EXPECTED = [
    # torchvision 0.7/0.3: base [0, -2, -1, -1]; gt 1's best IoU is 0, tied by all 4 anchors, which
    # are all promoted and regress to their argmax gt 0 (a tie of zeros in anchor 3 -> first row).
    ("torchvision", {}, [0, 0, 0, 0]),
    ("detectron2", {}, [0, 0, 0, 0]),
    ("caffe", {}, [0, 0, 0, 0]),
    ("paper", {}, [0, 0, 0, 0]),
    # mmdet RPN (min_pos_iou 0.3): gt 1's best 0 < 0.3 promotes nothing.
    ("mmdet", {}, [0, -2, -1, -1]),
    # mmdet RetinaNet 0.5/0.4, min_pos_iou 0: base [0, 0, -1, -1]; gt 1 (0 >= 0) takes all 4 anchors,
    # stealing anchor 0 (IoU 1.0 with gt 0).
    ("mmdet", {"high": 0.5, "low": 0.4, "min_pos_iou": 0.0}, [1, 1, 1, 1]),
    # TF: gt 0 forces anchor 0, gt 1 forces argmax of a zero row = anchor 0; lower gt wins.
    ("tf", {}, [0, -2, -1, -1]),
    # Detectron1 RetinaNet 0.5/0.4: all promoted to gt 0, then IoU < 0.4 rewritten to background.
    ("caffe", {"high": 0.5, "low": 0.4, "background_after": True}, [0, 0, -1, -1]),
]


@pytest.mark.parametrize("convention,kw,expected", TV8B_EXPECTED, ids=lambda v: str(v))
def test_tv8b_degenerate_gt(convention, kw, expected):
    assert match(TV8B, convention=convention, **kw).tolist() == expected


def test_tv8b_loop_references_agree():
    assert ref_torchvision(TV8B, 0.7, 0.3, True).tolist() == [0, 0, 0, 0]
    assert mmdet_to_torchvision(ref_mmdet(TV8B, 0.5, 0.4, 0.0)).tolist() == [1, 1, 1, 1]
    assert mmdet_to_torchvision(ref_mmdet(TV8B, 0.7, 0.3, 0.3)).tolist() == [0, -2, -1, -1]
    assert ref_tf(TV8B, 0.7, 0.3, True).tolist() == [0, -2, -1, -1]
    assert ref_background_after(TV8B, 0.5, 0.4).tolist() == [0, 0, -1, -1]


def test_tv8b_ssd():
    # torchvision SSDMatcher(0.5): base [0, 0, -1, -1]; gt 0 and gt 1 both claim anchor 0 (argmax of
    # a zero row is 0); the later gt wins, so the point box steals anchor 0.
    assert ssd_match(TV8B).tolist() == [1, 0, -1, -1]
    # Caffe: overlaps must be > 1e-6, so gt 1 has no candidate; bipartite pairs (anchor 0, gt 0);
    # per-prediction: anchor 1 has 0.5 >= 0.5 -> gt 0.
    assert ssd_match(TV8B, convention="caffe").tolist() == [0, 0, -1, -1]
    assert ref_caffe_ssd(TV8B, 0.5).tolist() == [0, 0, -1, -1]


def test_tv8b_against_torchvision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher, SSDMatcher
    from torchvision.ops import box_iou as tv_box_iou
    torch.set_num_threads(1)
    q = tv_box_iou(torch.from_numpy(TV8B_GTS), torch.from_numpy(TV8B_ANCHORS))
    np.testing.assert_array_equal(q.numpy(), TV8B)
    assert Matcher(0.7, 0.3, True)(q).tolist() == match(TV8B).tolist() == [0, 0, 0, 0]
    assert SSDMatcher(0.5)(q).tolist() == ssd_match(TV8B).tolist() == [1, 0, -1, -1]
    from refdet.iou import box_iou
    np.testing.assert_array_equal(box_iou(TV8B_GTS, TV8B_ANCHORS), TV8B)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tv8c_threshold_equality(dtype):
    # >= 0.7 positive, exactly 0.3 is in the ignore band, one step below 0.3 negative
    q = np.array([[0.7, 0.3, 0.2999999, 0.6999999]], dtype=dtype)
    assert match(q, allow_low_quality_matches=False).tolist() == [0, -2, -1, -2]
    # the paper's "higher than 0.7": exactly 0.7 is not positive
    assert match(q, allow_low_quality_matches=False, convention="paper").tolist() == [-2, -2, -1, -2]


def test_tv8c_against_torchvision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    for dt in (torch.float32, torch.float64):
        q = torch.tensor([[0.7, 0.3, 0.2999999, 0.6999999]], dtype=dt)
        assert Matcher(0.7, 0.3, False)(q).tolist() == [0, -2, -1, -2]


TV8D_S = np.array([[0.40, 0.10, 0.40], [0.45, 0.20, 0.05]])
TV8D_S2 = np.array([[0.30, 0.30, 0.10], [0.10, 0.20, 0.60]])


def test_tv8d_ssd_matcher():
    # both gts' best anchor is 0; the later gt wins; gt 0 ends unmatched
    assert ssd_match(TV8D_S).tolist() == [1, -1, -1]
    # row tie 0.30 == 0.30 -> first anchor
    assert ssd_match(TV8D_S2).tolist() == [0, -1, 1]
    # TF / first_wins: gt 0 keeps anchor 0
    assert ssd_match(TV8D_S, convention="tf").tolist() == [0, -1, -1]


def test_tv8d_caffe_greedy_bipartite():
    # (anchor 0, gt 1, 0.45) first, then gt 0 takes its best remaining anchor 2 (0.40)
    assert ssd_match(TV8D_S, convention="caffe").tolist() == [1, -1, 0]
    assert ref_caffe_ssd(TV8D_S, 0.5).tolist() == [1, -1, 0]


def test_tv8d_against_torchvision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import SSDMatcher
    assert SSDMatcher(0.5)(torch.tensor(TV8D_S)).tolist() == [1, -1, -1]
    assert SSDMatcher(0.5)(torch.tensor(TV8D_S2)).tolist() == [0, -1, 1]


def test_tv8e_empty_gt_policies():
    empty = np.zeros((0, 5))
    with pytest.raises(ValueError, match="^No ground-truth boxes available for one of the images during training$"):
        match(empty)
    with pytest.raises(ValueError, match="No ground-truth boxes available"):
        match(empty, convention="caffe")
    assert match(empty, convention="detectron2").tolist() == [-1] * 5
    assert match(empty, convention="mmdet").tolist() == [-1] * 5
    assert match(empty, convention="tf").tolist() == [-1] * 5
    assert match(empty, empty_gt="all_ignore").tolist() == [-2] * 5
    assert ssd_match(empty, convention="caffe").tolist() == [-2] * 5      # no negatives mined
    with pytest.raises(ValueError, match="No ground-truth boxes available"):
        ssd_match(empty)
    d = match_details(empty, convention="detectron2")
    assert d.labels.tolist() == [0] * 5 and d.matched_gt.tolist() == [0] * 5   # detectron2 77-87
    assert d.gt_inds.tolist() == [0] * 5                                         # mmdet 261-274


def test_tv8e_against_torchvision():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    with pytest.raises(ValueError) as exc:
        Matcher(0.7, 0.3, True)(torch.zeros(0, 5))
    with pytest.raises(ValueError) as ours:
        match(np.zeros((0, 5)))
    assert str(exc.value) == str(ours.value)


def test_no_anchors_gives_empty():
    assert match(np.zeros((3, 0))).shape == (0,)
    assert ssd_match(np.zeros((3, 0))).dtype == np.int64


def test_match_details_encodings_consistent():
    d = match_details(TV8A, convention="mmdet")
    assert d.forced.tolist() == [False, True, False, False, False, True]
    np.testing.assert_array_equal(d.max_iou, [0.5, 0.6, 0.6, 0.29, 0.0, 0.75])
    np.testing.assert_array_equal(d.gt_max_iou, [0.75, 0.6])
    assert d.matched_gt.tolist() == [1, 1, 0, 1, 0, 0]       # anchor 1 -> forcing gt 1


def test_float32_compares_in_float32():
    # float32(0.7) = 0.699999988..., below the float64 0.7; compared in float32 it is exactly 0.7
    q = np.array([[np.float32(0.7)]], dtype=np.float32)
    assert match(q, allow_low_quality_matches=False).tolist() == [0]
    assert match(q.astype(np.float64), allow_low_quality_matches=False).tolist() == [-2]


def test_readonly_input_not_modified():
    q = readonly(TV8A)
    for c in ("torchvision", "mmdet", "tf", "detectron2", "caffe", "paper"):
        match(q, convention=c)
        match_details(q, convention=c)
    ssd_match(q, convention="caffe")
    np.testing.assert_array_equal(q, TV8A)


def test_nan_rejected_unless_allowed():
    q = TV8A.copy()
    q[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"`iou`.*NaN.*\(1, 3\)"):
        match(q)
    # torch semantics: NaN is the max of column 3 (matched to gt 1, "positive"); row 1's max is NaN,
    # so gt 1 promotes nothing and anchor 1 stays in the ignore band
    assert match(q, allow_nan=True).tolist() == [-2, -2, -2, 1, -1, 0]


# --------------------------------------------------------------------------------------------------
# Properties and differential tests on IoU matrices with ties and exact thresholds
# --------------------------------------------------------------------------------------------------

_PAIRS = st.sampled_from([(0.7, 0.3), (0.5, 0.4), (0.5, 0.5), (0.4, 0.3), (0.7, 0.7)])


@given(q=st.one_of(rst.iou_matrices(dtype=np.float64), rst.iou_matrices(dtype=np.float32)),
       hl=_PAIRS, allow=st.booleans())
def test_against_torchvision_matcher(q, hl, allow):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    torch.set_num_threads(1)
    high, low = hl
    ours = match(q, high=high, low=low, allow_low_quality_matches=allow)
    if q.shape[1] == 0:
        assert ours.shape == (0,)
        return
    theirs = Matcher(high, low, allow)(torch.from_numpy(q.copy())).numpy()
    np.testing.assert_array_equal(ours, theirs)


@given(q=rst.iou_matrices(dtype=np.float32, min_n=1, allow_nan=True), allow=st.booleans())
def test_nan_semantics_against_torchvision(q, allow):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    theirs = Matcher(0.7, 0.3, allow)(torch.from_numpy(q.copy())).numpy()
    np.testing.assert_array_equal(match(q, allow_low_quality_matches=allow, allow_nan=True), theirs)


@given(q=rst.iou_matrices(min_n=0), t=st.sampled_from([0.5, 0.3, 0.7]))
def test_against_torchvision_ssd_matcher(q, t):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import SSDMatcher
    ours = ssd_match(q, t)
    np.testing.assert_array_equal(ours, ref_torchvision_ssd(q, t))
    if q.shape[1]:
        np.testing.assert_array_equal(ours, SSDMatcher(t)(torch.from_numpy(q.copy())).numpy())


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS, allow=st.booleans())
def test_equals_torchvision_loop_reference(q, hl, allow):
    high, low = hl
    np.testing.assert_array_equal(match(q, high=high, low=low, allow_low_quality_matches=allow),
                                  ref_torchvision(q, high, low, allow))


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS, min_pos=st.sampled_from([0.0, 0.3, 0.5]), assign_all=st.booleans())
def test_equals_mmdet_loop_reference(q, hl, min_pos, assign_all):
    high, low = hl
    mode = "all_ties_forcing_gt_last_wins" if assign_all else "first_forcing_gt_last_wins"
    d = match_details(q, high=high, low=low, convention="mmdet", min_pos_iou=min_pos, low_quality=mode)
    np.testing.assert_array_equal(d.gt_inds, ref_mmdet(q, high, low, min_pos, assign_all))


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS, force=st.booleans())
def test_equals_tf_loop_reference(q, hl, force):
    high, low = hl
    np.testing.assert_array_equal(match(q, high=high, low=low, convention="tf", allow_low_quality_matches=force),
                                  ref_tf(q, high, low, force))


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS)
def test_equals_background_after_loop_reference(q, hl):
    high, low = hl
    np.testing.assert_array_equal(match(q, high=high, low=low, convention="caffe", background_after=True),
                                  ref_background_after(q, high, low))


@given(q=rst.iou_matrices(min_n=1))
def test_equals_py_faster_rcnn_loop_reference(q):
    d = match_details(q, convention="caffe")
    labels, argmax = ref_pfr_rpn(q)
    np.testing.assert_array_equal(d.labels, labels)
    np.testing.assert_array_equal(d.matched_gt, argmax)


@given(q=rst.iou_matrices(min_n=1), t=st.sampled_from([0.5, 0.3, 0.7]))
def test_equals_caffe_ssd_loop_reference(q, t):
    np.testing.assert_array_equal(ssd_match(q, t, convention="caffe"), ref_caffe_ssd(q, t))


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS, mode=st.sampled_from(LOW_QUALITY_MODES),
       strict=st.booleans())
def test_invariants(q, hl, mode, strict):
    high, low = hl
    d = match_details(q, high=high, low=low, low_quality=mode, positive_strict=strict)
    m, n = q.shape
    vals = q.max(axis=0)
    assert d.matches.dtype == np.int64 and d.matches.shape == (n,)
    assert ((d.matches >= -2) & (d.matches < m)).all()
    # every anchor not picked by the low-quality step is labelled by its best IoU alone
    free = ~d.forced
    pos = vals > high if strict else vals >= high
    np.testing.assert_array_equal(d.matches[free & pos], q.argmax(axis=0)[free & pos])
    assert (d.matches[free & (vals < low)] == -1).all()
    assert (d.matches[free & ~pos & (vals >= low)] == -2).all()
    # the low-quality step only ever adds positives
    assert (d.matches[d.forced] >= 0).all()
    if mode == "off":
        assert not d.forced.any()
    elif mode.startswith("all_ties"):
        # every gt's best anchor(s) are positive
        for i in range(m):
            assert (d.matches[q[i] == q[i].max()] >= 0).all()
    # the encodings agree
    np.testing.assert_array_equal(d.labels, np.select([d.matches >= 0, d.matches == -1], [1, 0], -1))
    np.testing.assert_array_equal(d.gt_inds, np.select([d.matches >= 0, d.matches == -1], [d.matches + 1, 0], -1))
    np.testing.assert_array_equal(match(q, high=high, low=low, low_quality=mode, positive_strict=strict), d.matches)


@given(q=rst.iou_matrices(min_n=1, max_n=30))
def test_caffe_bipartite_is_one_to_one(q):
    from refdet.matcher import _greedy_bipartite
    b = _greedy_bipartite(q, 1e-6)
    used = b[b >= 0]
    assert np.unique(used).size == used.size              # two gts never share a prior
    # a gt is left out only if no free prior overlaps it
    for g in set(range(q.shape[0])) - set(used.tolist()):
        assert not (q[g][b < 0] > 1e-6).any()


def test_large_matrix_paths_agree_with_small_paths():
    # > N/8 positives takes the row-by-row argmax; the gather path must give the same answer
    g = np.random.default_rng(3)
    q = np.round(g.random((7, 4000)), 2).astype(np.float32)
    ours = match(q, high=0.5, low=0.5, allow_low_quality_matches=False)
    want = np.where(q.max(0) >= np.float32(0.5), q.argmax(0), -1)
    np.testing.assert_array_equal(ours, want)
    np.testing.assert_array_equal(match(q), ref_torchvision(q, np.float32(0.7), np.float32(0.3), True))


# --------------------------------------------------------------------------------------------------
# refdet.testing comparators
# --------------------------------------------------------------------------------------------------

def test_assert_matches_equal_explains_the_low_quality_divergence():
    from refdet.testing import assert_matches_equal
    assert_matches_equal(match(TV8A), [-2, 0, -2, -1, -1, 0], TV8A)          # equal: no error
    with pytest.raises(AssertionError) as exc:
        assert_matches_equal(match(TV8A), match(TV8A, convention="mmdet"), TV8A, names=("tv", "mmdet"))
    msg = str(exc.value)
    assert "first at anchor 1: tv[1] = 0 (gt 0), mmdet[1] = 1 (gt 1)" in msg
    assert "gt 0: 0.6, gt 1: 0.6" in msg
    assert "a tie: the first gt wins the argmax" in msg
    assert "best anchor (incl. ties) of gt(s) [1]" in msg
    assert "mmdet equals refdet's match(convention='mmdet')" in msg
    assert "tv equals refdet's match(convention='torchvision')" in msg


def test_assert_matches_equal_names_exact_thresholds():
    from refdet.testing import assert_matches_equal
    q = np.array([[0.7, 0.3, 0.2999999, 0.6999999]], dtype=np.float32)
    with pytest.raises(AssertionError, match=r"(?s)exactly `high` = 0.7.*expected equals refdet's "
                                             r"match\(convention='paper'\)"):
        assert_matches_equal(match(q, allow_low_quality_matches=False),
                             match(q, allow_low_quality_matches=False, convention="paper"), q,
                             allow_low_quality_matches=False)


def test_assert_matches_equal_ssd_and_shapes():
    from refdet.testing import assert_matches_equal
    with pytest.raises(AssertionError, match=r"(?s)first at anchor 2: matches\[2\] = -1.*expected equals refdet's ssd_match\(convention='caffe'\)"):
        assert_matches_equal(ssd_match(TV8D_S), ssd_match(TV8D_S, convention="caffe"), TV8D_S, kind="ssd")
    with pytest.raises(AssertionError, match="shape"):
        assert_matches_equal([0, 1], [0, 1, 2], np.zeros((2, 2)))


@given(q=rst.iou_matrices(min_n=1), mode=st.sampled_from(LOW_QUALITY_MODES))
def test_assert_matches_equal_always_finds_the_mode(q, mode):
    from refdet.testing import match_variants
    got = match(q, low_quality=mode)
    # every result of a listed mode is recognised among the variants
    assert any(np.array_equal(v, got) for v in match_variants(q).values())


def test_assert_sample_valid():
    from refdet import sample_balanced
    from refdet.testing import assert_sample_valid
    lab = np.array([1, 1, 1, 0, 0, -1, 0, 1])
    pos, neg = sample_balanced(lab, 4, 0.5, rng=0)
    assert_sample_valid(lab, pos, neg, 4, 0.5)
    with pytest.raises(AssertionError, match="anchor 5 is a sampled negative but its label is -1"):
        bad = neg.copy()
        bad[5] = True
        assert_sample_valid(lab, pos, bad, 4, 0.5)
    with pytest.raises(AssertionError, match=r"1 positives sampled; expected min\(#pos = 4, int\(4 \* 0.5\)\) = 2"):
        p1 = np.zeros(8, bool)
        p1[0] = True
        assert_sample_valid(lab, p1, neg, 4, 0.5)


@given(q=rst.iou_matrices(min_n=1), hl=_PAIRS)
def test_negative_qualities_giou_like(q, hl):
    """Qualities in [-1, 1] (GIoU): mmdet leaves a negative best quality ignored, torchvision negative."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from torchvision.models.detection._utils import Matcher
    high, low = hl
    g = 2 * q - 1                                          # exact for the grid values
    d = match_details(g, high=high, low=low, convention="mmdet", min_pos_iou=-1.0)
    np.testing.assert_array_equal(d.gt_inds, ref_mmdet(g, high, low, -1.0))
    np.testing.assert_array_equal(match(g, high=high, low=low),
                                  Matcher(high, low, True)(torch.from_numpy(g.copy())).numpy())


def test_neg_floor_golden():
    # best qualities -0.2, 0.1, 0.8: torchvision -> [-1, -1, 0]; mmdet (0 <= q < 0.3) -> [-2, -1, 0]
    assert match([[-0.2, 0.1, 0.8]], allow_low_quality_matches=False).tolist() == [-1, -1, 0]
    assert match([[-0.2, 0.1, 0.8]], convention="mmdet").tolist() == [-2, -1, 0]


# ------------------------------------------------------------------ pinned by mutation testing

def test_match_details_labels_and_gt_inds_are_int64():
    q = np.array([[0.9, 0.5, 0.1], [0.2, 0.6, 0.75]])
    r = match_details(q, high=0.7, low=0.3, allow_low_quality_matches=False)
    assert r.labels.dtype == np.int64 and r.gt_inds.dtype == np.int64 and r.matches.dtype == np.int64
    # anchor 0 -> gt 0 (0.9), anchor 1 between (0.6), anchor 2 -> gt 1 (0.75)
    assert r.matches.tolist() == [0, -2, 1] and r.labels.tolist() == [1, -1, 1] and r.gt_inds.tolist() == [1, -1, 2]
    np.testing.assert_array_equal(r.gt_max_iou, [0.9, 0.75])   # computed even without the low-quality step
    np.testing.assert_array_equal(r.max_iou, [0.9, 0.6, 0.75])


@given(q=rst.iou_matrices(dtype=np.float32, min_n=1, allow_nan=True), hl=_PAIRS, force=st.booleans())
def test_nan_tf_equals_loop_reference(q, hl, force):
    # TF's forced match takes each row's argmax (NaN counts as the largest, like np.argmax); a gt whose
    # row holds a NaN forces the NaN's anchor
    high, low = hl
    got = match(q, high=high, low=low, convention="tf", allow_low_quality_matches=force, allow_nan=True)
    np.testing.assert_array_equal(got, ref_tf(q, high, low, force))


def test_nan_row_forces_its_first_nan():
    # gt 1's row max is NaN at anchor 1: it still forces anchor 1 (its argmax), over column 1's own gt 0
    q = np.array([[np.nan, np.nan], [0.1, np.nan]])
    assert match(q, convention="tf", allow_nan=True).tolist() == [0, 1] == ref_tf(q, 0.7, 0.3, True).tolist()


def test_caffe_candidate_eps_is_strict():
    # Caffe's BIPARTITE and PER_PREDICTION steps take overlaps > 1e-6: exactly 1e-6 is not a candidate
    q = np.array([[1e-6, 0.0], [0.0, 0.3]])
    assert ssd_match(q, 0.5, convention="caffe").tolist() == [-1, 1]
    assert ssd_match(q, 0.5, convention="caffe", candidate_eps=0.0).tolist() == [0, 1]
    # the threshold step too: at threshold 1e-6 with eps 1e-6 the prior stays unmatched
    q = np.array([[1e-6, 0.0]])
    assert ssd_match(q, 1e-6, convention="caffe", prematch="off").tolist() == [-1, -1]
    assert ssd_match(q, 1e-6, convention="caffe", prematch="off", candidate_eps=0.0).tolist() == [0, -1]


def test_caffe_bipartite_ties_lowest_prior_then_lowest_gt():
    # all four overlaps tie: gt 0 takes prior 0 (lowest prior, then lowest gt), gt 1 the next prior
    q = np.full((2, 2), 0.5)
    assert ssd_match(q, 0.9, convention="caffe").tolist() == [0, 1]
    q = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1], [0.2, 0.5, 0.5]])
    assert ssd_match(q, 0.9, convention="caffe").tolist() == [0, 1, 2]


def test_thresholds_named_in_errors():
    q = np.array([[0.5]])
    with pytest.raises(TypeError, match="`high` must be a real number"):
        match(q, high="0.7")
    with pytest.raises(TypeError, match="`low` must be a real number"):
        match(q, low=None)
    with pytest.raises(ValueError, match=r"`low` must be <= `high`; got low=0.8, high=0.7"):
        match(q, high=0.7, low=0.8)
    with pytest.raises(TypeError, match="`threshold` must be a real number"):
        ssd_match(q, "0.5")
    with pytest.raises(ValueError, match=r"`iou` must be 2-D"):
        match(np.zeros(3))


def test_flags_named_in_errors_and_empty_details_dtypes():
    q = np.array([[0.5]])
    with pytest.raises(TypeError, match=r"`allow_low_quality_matches` must be a bool; got str 'yes'"):
        match(q, allow_low_quality_matches="yes")
    with pytest.raises(TypeError, match=r"`allow_nan` must be a bool; got int 1"):
        match(q, allow_nan=1)
    # no gts: every encoding has its documented dtype
    r = match_details(np.zeros((0, 3)), convention="detectron2")
    assert r.matches.tolist() == [-1, -1, -1] and r.matched_gt.tolist() == [0, 0, 0]
    for name in ("matches", "labels", "matched_gt", "gt_inds"):
        assert getattr(r, name).dtype == np.int64, name
    assert r.forced.dtype == bool and r.max_iou.dtype == np.float64 and r.gt_max_iou.shape == (0,)
    r = match_details(np.zeros((0, 3), np.float32), convention="detectron2")
    assert r.max_iou.dtype == np.float32 and r.gt_max_iou.dtype == np.float32
    r = match_details(np.zeros((2, 0), np.float32))
    assert r.max_iou.dtype == np.float32 and r.gt_max_iou.dtype == np.float32
    r = match_details(np.zeros((2, 0)))
    assert r.matched_gt.dtype == np.int64 and r.gt_max_iou.tolist() == [-np.inf, -np.inf]
    for name, dt in (("matches", np.int64), ("labels", np.int64), ("matched_gt", np.int64), ("gt_inds", np.int64),
                     ("max_iou", np.float64), ("forced", bool)):
        assert getattr(r, name).shape == (0,) and getattr(r, name).dtype == dt, name
    assert match(np.zeros((2, 0))).dtype == np.int64


def test_column_argmax_row_loop_visits_every_gt():
    # many positive columns take the row-by-row path of the column argmax: each gt row is visited
    q = np.array([[0.1, 0.2, 0.6], [0.9, 0.8, 0.1], [0.3, 0.1, 0.7], [0.2, 0.85, 0.0]])
    assert match(q, high=0.5, low=0.3, allow_low_quality_matches=False).tolist() == [1, 3, 2]
