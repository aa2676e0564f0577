"""Tests of refdet.matcher that pin what mutation testing found unpinned (issue 19).

The public wrappers :func:`match`, :func:`match_details` and :func:`ssd_match` are mutated since the
engine's fix for ``@conventions.documented`` functions: every keyword they pass on (each convention
override, the thresholds, the flags) is held here by a hand-worked matrix on which that keyword
changes the answer. Small inputs only: each test takes milliseconds. (Differentials against
torchvision and the loop references live in tests/test_matcher.py.)

The worked matrix of the module docstring (high 0.7, low 0.3)::

    anchors:        0     1     2     3     4     5
    gt 0          0.10  0.60  0.60  0.20  0.00  0.75
    gt 1          0.50  0.60  0.10  0.29  0.00  0.30
    best gt          0     0     0     1     0     0
    best IoU      0.50  0.60  0.60  0.29  0.00  0.75
    thresholds      -2    -2    -2    -1    -1     0

gt 0's best anchor is 5 (already positive); gt 1's best IoU 0.60 is reached by anchor 1 only.
"""
import re

import numpy as np
import pytest

from refdet import conventions
from refdet.matcher import MatchResult, match, match_details, ssd_match

W = np.array([[0.10, 0.60, 0.60, 0.20, 0.00, 0.75],
              [0.50, 0.60, 0.10, 0.29, 0.00, 0.30]])


def _details_matches(q, **kw):
    r = match_details(q, **kw)
    assert isinstance(r, MatchResult)
    return r.matches


MATCHERS = [pytest.param(match, id="match"), pytest.param(_details_matches, id="match_details")]


def test_match_returns_an_array_and_match_details_a_result():
    got = match(W)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.tolist() == [-2, 0, -2, -1, -1, 0]
    r = match_details(W)
    assert isinstance(r, MatchResult)
    assert r.matches.tolist() == [-2, 0, -2, -1, -1, 0]
    assert r.labels.tolist() == [-1, 1, -1, 0, 0, 1]
    assert r.gt_inds.tolist() == [-1, 1, -1, 0, 0, 1]
    assert r.matched_gt.tolist() == [1, 0, 0, 1, 0, 0]
    assert r.forced.tolist() == [False, True, False, False, False, True]
    assert r.max_iou.tolist() == [0.5, 0.6, 0.6, 0.29, 0.0, 0.75]
    assert r.gt_max_iou.tolist() == [0.75, 0.6]


@pytest.mark.parametrize("fn", MATCHERS)
def test_every_keyword_reaches_the_matcher(fn):
    base = [-2, 0, -2, -1, -1, 0]
    assert fn(W).tolist() == base
    # the profile: mmdet forces anchor 1 to gt 1 (the gt that promotes it)
    assert fn(W, convention="mmdet").tolist() == [-2, 1, -2, -1, -1, 0]
    assert fn(W, convention=conventions.resolve("match", "mmdet")).tolist() == [-2, 1, -2, -1, -1, 0]
    assert fn(W, low_quality="all_ties_forcing_gt_last_wins").tolist() == [-2, 1, -2, -1, -1, 0]
    assert fn(W, low_quality="off").tolist() == [-2, -2, -2, -1, -1, 0]
    assert fn(W, allow_low_quality_matches=False).tolist() == [-2, -2, -2, -1, -1, 0]
    assert fn(W, allow_low_quality_matches=np.bool_(False)).tolist() == [-2, -2, -2, -1, -1, 0]
    # gt 1's best 0.6 fails a 0.65 gate (gt 0's 0.75 passes, its anchor 5 is positive anyway)
    assert fn(W, min_pos_iou=0.65).tolist() == [-2, -2, -2, -1, -1, 0]
    assert fn(W, min_pos_iou=0.6).tolist() == base                     # 0.6 >= 0.6: gate passed
    # thresholds passed on: high 0.6 makes anchors 1 and 2 positive; low 0.55 makes anchor 0 negative
    assert fn(W, high=0.6).tolist() == [-2, 0, 0, -1, -1, 0]
    assert fn(W, low=0.55).tolist() == [-1, 0, -2, -1, -1, 0]
    # strict positives: 0.75 > 0.75 fails, so anchor 5 is ignored... then promoted back by gt 0
    assert fn(W, high=0.75, positive_strict=True, allow_low_quality_matches=False).tolist() == \
        [-2, -2, -2, -1, -1, -2]
    assert fn(W, high=0.75, allow_low_quality_matches=False).tolist() == [-2, -2, -2, -1, -1, 0]
    # neg_floor 0.1: anchor 4 (0.00) is below the floor, so ignored; anchor 3 (0.29) stays negative
    assert fn(W, neg_floor=0.1).tolist() == [-2, 0, -2, -1, -2, 0]
    assert fn(W, neg_floor=0.0).tolist() == base                       # 0.00 >= 0: a negative


@pytest.mark.parametrize("fn", MATCHERS)
def test_background_after_and_empty_gt_reach_the_matcher(fn):
    q = np.array([[0.2, 0.1]])            # the gt's best anchor 0 lies below low: promoted, then
    assert fn(q).tolist() == [0, -1]      # (Detectron1) written back to background
    assert fn(q, background_after=True).tolist() == [-1, -1]
    e = np.zeros((0, 2))
    with pytest.raises(ValueError, match=r"^No ground-truth boxes available for one of the images during training$"):
        fn(e)
    assert fn(e, empty_gt="all_ignore").tolist() == [-2, -2]
    assert fn(e, empty_gt="all_negative").tolist() == [-1, -1]
    assert fn(e, convention="detectron2").tolist() == [-1, -1]


@pytest.mark.parametrize("fn", MATCHERS)
def test_allow_nan_reaches_the_matcher(fn):
    q = np.array([[np.nan, 0.1], [0.2, 0.1]])
    with pytest.raises(ValueError, match=r"`iou` must not contain NaN"):
        fn(q)
    # NaN is torch's largest value: anchor 0 is positive for gt 0; gt 1's best 0.2 is anchor 0 ...
    assert fn(q, allow_nan=True).tolist() == [0, -1]


def test_threshold_errors_give_the_range_source():
    src = r"\(an IoU lies in \[0, 1\]; a threshold outside cannot mean more than 0 or 1 does\)"
    with pytest.raises(ValueError, match=r"^`high` must lie in \[0, 1\] " + src + "; got 1.5$"):
        match(W, high=1.5)
    with pytest.raises(ValueError, match=r"^`low` must lie in \[0, 1\] " + src + "; got -0.5$"):
        match_details(W, low=-0.5)
    with pytest.raises(ValueError, match=r"^`threshold` must lie in \[0, 1\] " + src + "; got 1.5$"):
        ssd_match(W, 1.5)


def test_quality_matrix_shape_and_kind_named():
    with pytest.raises(ValueError, match=r"^`iou` must be 2-D with shape \(M, N\) \(ground truths x anchors\); "
                                         r"got shape \(3,\)$"):
        ssd_match(np.zeros(3))
    with pytest.raises(ValueError, match=r"^`iou` must be 2-D"):
        match_details(np.zeros((1, 2, 3)))
    with pytest.raises(TypeError, match=r"`iou`"):
        match(np.array([["a"]]))


# ------------------------------------------------------------------------------------------ ssd_match

S = np.array([[0.40, 0.10, 0.40],
              [0.45, 0.20, 0.05]])
# best prior: gt 0 -> prior 0 (first of the 0.40 tie), gt 1 -> prior 0; threshold 0.5 makes nothing
# positive on its own. Caffe's greedy step: 0.45 (gt 1, prior 0) first, then gt 0 takes prior 2.


def test_ssd_match_every_keyword_reaches_the_matcher():
    assert ssd_match(S).tolist() == [1, -1, -1]                              # last gt wins prior 0
    assert ssd_match(S, prematch="first_wins").tolist() == [0, -1, -1]
    assert ssd_match(S, convention="tf").tolist() == [0, -1, -1]
    assert ssd_match(S, convention=conventions.resolve("ssd_match", "tf")).tolist() == [0, -1, -1]
    assert ssd_match(S, prematch="greedy_bipartite").tolist() == [1, -1, 0]
    assert ssd_match(S, convention="caffe").tolist() == [1, -1, 0]
    assert ssd_match(S, prematch="off").tolist() == [-1, -1, -1]
    # the threshold: 0.4 makes prior 2 positive for gt 0 and prior 0 for gt 1 (0.45)
    assert ssd_match(S, 0.4, prematch="off").tolist() == [1, -1, 0]
    assert ssd_match(S, 0.4).tolist() == [1, -1, 0]
    assert ssd_match(S, threshold=0.45, prematch="off").tolist() == [1, -1, -1]            # 0.45 >= 0.45
    assert ssd_match(S, threshold=0.45, prematch="off", positive_strict=True).tolist() == [-1, -1, -1]
    assert ssd_match(S, threshold=0.45, prematch="off", convention="paper").tolist() == [-1, -1, -1]


def test_ssd_match_candidate_eps():
    q = np.array([[0.0, 0.0], [0.0, 0.3]])
    # no filter: gt 0 claims its first best prior 0 (IoU 0), gt 1 claims prior 1
    assert ssd_match(q).tolist() == [0, 1]
    # only IoUs > 0 can be matched: gt 0 claims nothing
    assert ssd_match(q, candidate_eps=0.0).tolist() == [-1, 1]
    assert ssd_match(q, candidate_eps=0.0, prematch="first_wins").tolist() == [-1, 1]
    assert ssd_match(q, candidate_eps=0.0, prematch="greedy_bipartite").tolist() == [-1, 1]
    assert ssd_match(q, candidate_eps=0.3).tolist() == [-1, -1]                   # 0.3 > 0.3 fails
    assert ssd_match(q, candidate_eps=0.29).tolist() == [-1, 1]
    # the filter also applies to the threshold step: 0.3 >= 0.3 passes only without it
    assert ssd_match(q, 0.3, prematch="off").tolist() == [-1, 1]
    assert ssd_match(q, 0.3, prematch="off", candidate_eps=0.3).tolist() == [-1, -1]
    assert ssd_match(q, 0.0, prematch="off", candidate_eps=0.0).tolist() == [-1, 1]
    assert ssd_match(q, 0.0, prematch="off").tolist() == [0, 1]


def test_ssd_match_empty_inputs():
    e = np.zeros((0, 3))
    with pytest.raises(ValueError, match=r"^No ground-truth boxes available for one of the images during training$"):
        ssd_match(e)
    assert ssd_match(e, empty_gt="all_negative").tolist() == [-1, -1, -1]
    assert ssd_match(e, empty_gt="all_ignore").tolist() == [-2, -2, -2]
    assert ssd_match(e, convention="caffe").tolist() == [-2, -2, -2]
    assert ssd_match(e, convention="mmdet").dtype == np.int64
    for conv in ("torchvision", "caffe", "tf"):
        got = ssd_match(np.zeros((2, 0)), convention=conv)
        assert got.shape == (0,) and got.dtype == np.int64
    # one gt, one prior: not an empty case
    assert ssd_match(np.array([[0.1]])).tolist() == [0]
    assert ssd_match(np.array([[0.1]]), prematch="off").tolist() == [-1]


def test_ssd_match_refuses_nan_and_inf():
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN"):
        ssd_match(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got inf"):
        ssd_match(np.array([[0.1, np.inf]]))


def test_ssd_match_float32_compares_in_float32():
    # float32(0.7) > 0.7: a float32 IoU equal to float32(0.7) passes a 0.7 threshold compared in float32
    q = np.array([[np.float32(0.7)]], np.float32)
    assert ssd_match(q, 0.7, prematch="off").tolist() == [0]
    assert ssd_match(q.astype(np.float64), 0.7000001, prematch="off").tolist() == [-1]


# ------------------------------------------------------------------------------------------ knob checks

@pytest.mark.parametrize("knob", ["min_pos_iou", "neg_floor"])
def test_quality_knobs_accept_minus_inf_and_minus_one_to_one(knob):
    q = np.array([[-0.5, 0.2]])
    for v in (-np.inf, -1.0, 0.0, 1.0):
        assert match(q, **{knob: v}).shape == (2,)
    # neg_floor -1 and -inf: the -0.5 anchor is negative; 1.0 (floor above low) ignores both anchors
    if knob == "neg_floor":
        assert match(q, neg_floor=-1.0, allow_low_quality_matches=False).tolist() == [-1, -1]
        assert match(q, neg_floor=1.0, allow_low_quality_matches=False).tolist() == [-2, -2]
    else:
        assert match(q, min_pos_iou=-1.0).tolist() == [-1, 0]
        assert match(q, min_pos_iou=1.0).tolist() == [-1, -1]       # 0.2 < 1: gated out
    what = "(no gate)" if knob == "min_pos_iou" else "(no floor)"
    for v in (-1.5, -2.0, -1.0000001):
        with pytest.raises(ValueError, match=r"^`" + knob + r"` must be -inf " + re.escape(what) + r" or lie in "
                                             r"\[-1, 1\].*; got " + re.escape(str(v)) + "$"):
            match(q, **{knob: v})
    for v in (1.5, 1.0000001, np.inf, np.nan):
        with pytest.raises(ValueError, match=knob):
            match(q, **{knob: v})


def test_ssd_match_strict_threshold_still_matches_above_it():
    q = np.array([[0.6, 0.5], [0.2, 0.55]])
    got = ssd_match(q, 0.5, prematch="off", positive_strict=True)
    assert got.dtype == np.int64 and got.tolist() == [0, 1]
    assert ssd_match(q, 0.55, prematch="off", positive_strict=True).tolist() == [0, -1]
    assert ssd_match(q, 0.55, prematch="off").tolist() == [0, 1]


@pytest.mark.parametrize("conv", ["torchvision", "tf", "caffe", "paper"])
@pytest.mark.parametrize("prematch", [None, "off"])
def test_ssd_match_returns_int64(conv, prematch):
    got = ssd_match(S, 0.4, convention=conv, prematch=prematch)
    assert got.dtype == np.int64 and got.shape == (3,)


def test_ssd_match_minus_inf_overlaps():
    # -inf is accepted and never passes a threshold; without candidate_eps a gt whose every overlap is
    # -inf still claims its first best prior (torchvision: argmax of the row), with Caffe's filter not
    q = np.array([[-np.inf, -np.inf, -np.inf], [0.1, 0.2, -np.inf]])
    assert ssd_match(q).tolist() == [0, 1, -1]
    assert ssd_match(q, prematch="first_wins").tolist() == [0, 1, -1]
    assert ssd_match(q, candidate_eps=-1.0).tolist() == [-1, 1, -1]
    assert ssd_match(q, convention="caffe").tolist() == [-1, 1, -1]
    assert ssd_match(q, 0.0, prematch="off").tolist() == [1, 1, -1]


# ------------------------------------------------------------------------------------------ values

def test_nan_and_inf_errors_name_the_first_offending_element():
    # -inf is a value (it never matches); NaN only with allow_nan; +inf never
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got nan at index \(0, 1\)$"):
        match(np.array([[-np.inf, np.nan, np.inf]]))
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got inf at index \(0, 2\)$"):
        match(np.array([[-np.inf, np.nan, np.inf]]), allow_nan=True)
    # a NaN column maximum hides the column's +inf from np.max: still refused
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got inf at index \(1, 0\)$"):
        match_details(np.array([[np.nan], [np.inf]]), allow_nan=True)
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got inf at index \(1, 1\)$"):
        match(np.array([[0.5, np.nan, 0.2], [0.1, np.inf, 0.3]]), allow_nan=True)
    with pytest.raises(ValueError, match=r"^`iou` must not contain NaN or inf; got inf at index \(0, 0\)$"):
        ssd_match(np.array([[np.inf, -np.inf]]))
    assert match(np.array([[-np.inf, 0.8]]), allow_nan=True).tolist() == [-1, 0]
    assert match(np.array([[-np.inf, 0.8]])).tolist() == [-1, 0]


def test_nan_columns_among_many_take_the_first_nan_row():
    # every column positive (high 0.05), so the column argmax takes all three: column 0's first NaN
    # is in row 1, as torch.max(dim=0) reports it
    q = np.array([[0.1, 0.9, 0.2], [np.nan, 0.1, 0.3], [np.nan, 0.2, 0.1]])
    assert match(q, high=0.05, low=0.05, allow_nan=True, allow_low_quality_matches=False).tolist() == [1, 0, 1]
    q = np.array([[0.1, 0.9, 0.2], [0.2, 0.1, np.nan]])
    assert match(q, high=0.05, low=0.05, allow_nan=True).tolist() == [1, 0, 1]
