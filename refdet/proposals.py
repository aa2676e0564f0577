"""Region proposals: from RPN objectness and deltas to the few thousand boxes the second stage pools.

Per image, every framework does the same steps in one of two orders::

    rank first (torchvision, detectron2, mmdet)        filter first (py-faster-rcnn, Detectron1 C4)
    ------------------------------------------        ---------------------------------------------
    top pre_nms_top_n anchors per level by score       decode every anchor, clip, drop small boxes
    decode them, clip to the image                     sort all by score, keep pre_nms_top_n
    drop small boxes, drop scores < score_thresh       NMS (+1 pixel IoU, IoU >= 0.7 suppresses)
    NMS within each level (batched over levels)        keep post_nms_top_n
    keep post_nms_top_n (by score, over all levels)

and the details that decide which boxes survive differ (``conventions.describe("filter_proposals")``):

* torchvision ``models/detection/rpn.py`` ``RegionProposalNetwork.filter_proposals``: ``topk`` on the
  raw logits per level (pre 2000 train / 1000 test, per level), sigmoid, ``clip_boxes_to_image``
  (``[0, W]``), ``remove_small_boxes(1e-3)`` (``w >= 1e-3``), ``scores >= score_thresh`` (0.0),
  ``batched_nms`` by level at 0.7 (its coordinate trick when at most 1000 boxes remain), the first
  post_nms_top_n (2000 / 1000) per image. Scores returned: sigmoid probabilities.
* detectron2 ``modeling/proposal_generator/proposal_utils.py`` ``find_top_rpn_proposals``: the same
  per-level ``topk`` (Base-RCNN-FPN: 2000 / 1000 per level), ``Boxes.clip``, ``nonempty(0)``
  (``w > 0`` strict), ``batched_nms`` by level at 0.7, post 1000 / 1000; no score threshold, and the
  scores stay **logits**. (Detectron1 took the post-NMS top-k over the whole training batch;
  detectron2 does it per image, detectron2 issue #459.)
* mmdet ``RPNHead._predict_by_feat_single``: sigmoid first, then per level a descending **sort of the
  probabilities** (``nms_pre`` 2000 / 1000), decode clipped to the image, ``min_bbox_size`` 0
  (strict), mmcv ``batched_nms`` (the coordinate trick below 10000 boxes), ``max_per_img`` 1000.
* py-faster-rcnn ``lib/rpn/proposal_layer.py``: foreground *probabilities* (softmax) of all anchors,
  decode with +1 widths, ``clip_boxes`` to ``[0, W - 1]``, ``_filter_boxes`` keeps ``w + 1 >= 16 *
  im_scale`` (``RPN_MIN_SIZE`` scaled by the image's resize factor ``im_info[2]``), then
  ``argsort()[::-1]`` (ties: the later anchor first), pre 12000 / 6000, NMS with +1 areas at 0.7
  (``IoU >= 0.7`` suppresses), post 2000 / 300.

Ties: refdet ranks equal scores lower anchor index first (a stable sort), except under py-faster-rcnn's
``argsort()[::-1]`` (higher index first). ``torch.topk`` does not define the order of equal logits, so
with ties exactly at the pre-NMS cut torchvision may keep a different one of them.

Dtypes: float32 inputs are ranked, clipped and suppressed in float32, bit-equal to torchvision's
``filter_proposals`` given the same decoded boxes; the sigmoid and the decode's ``exp`` are computed
correctly rounded (torch's SLEEF/MKL differ in the last bit on a few percent of inputs: pass ``exp=``
to :func:`select_proposals` to use another).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.box_coder import decode_boxes
from refdet.boxes import clip_boxes_to_image, remove_small_boxes
from refdet.nms import batched_nms, nms

__all__ = [
    "Proposals",
    "filter_proposals",
    "select_proposals",
    "top_k_per_level",
]

_NMS_PROFILES = ("torchvision", "caffe", "mmdet")


def _pair_check(name):
    """The check of a count knob: an int or a (train, test) pair of ints >= 0 (0: no limit)."""
    def check(value):
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"`{name}` must be an int or a (train, test) pair; got {value!r}")
            a, b = value
        else:
            a = b = value
        return (_checks.check_int(a, f"{name}[train]", low=0), _checks.check_int(b, f"{name}[test]", low=0))
    return check


_check_pair = _pair_check("count")


_KNOBS = {
    "pre_nms_top_n": conventions.option(
        "(train, test) number of anchors ranked before NMS (per level or overall, see top_k_scope); 0: all",
        check=_pair_check("pre_nms_top_n"),
        source="torchvision rpn_pre_nms_top_n_train/test 2000/1000; detectron2 Base-RCNN-FPN PRE_NMS_TOPK "
               "2000/1000; mmdet nms_pre 2000/1000; py-faster-rcnn RPN_PRE_NMS_TOP_N 12000/6000"),
    "post_nms_top_n": conventions.option(
        "(train, test) number of proposals kept after NMS, per image; 0: all", check=_pair_check("post_nms_top_n"),
        source="torchvision 2000/1000; detectron2 POST_NMS_TOPK 1000/1000; mmdet max_per_img 1000; "
               "py-faster-rcnn RPN_POST_NMS_TOP_N 2000/300"),
    "nms_thresh": conventions.number("IoU threshold of the proposal NMS", low=0.0, high=1.0,
                                     source="0.7 everywhere (RPN.NMS_THRESH, rpn_nms_thresh, nms.iou_threshold)"),
    "score_thresh": conventions.number(
        "drop proposals whose score (a sigmoid probability) is below this (score >= thresh kept); None: no threshold",
        low=0.0, high=1.0, allow_none=True, source="torchvision rpn_score_thresh 0.0 ('use >= for Backwards compatibility')"),
    "min_size": conventions.number(
        "smallest width and height kept (py-faster-rcnn: times the image scale)", low=0.0,
        source="torchvision RegionProposalNetwork.min_size 1e-3; detectron2 PROPOSAL_GENERATOR.MIN_SIZE 0; "
               "mmdet min_bbox_size 0; py-faster-rcnn RPN_MIN_SIZE 16"),
    "small_box_rule": conventions.choice(
        ("inclusive", "strict", "plus_one"),
        "'inclusive': w >= min_size (torchvision); 'strict': w > min_size (detectron2 nonempty, mmdet); "
        "'plus_one': w + 1 >= min_size (py-faster-rcnn _filter_boxes)",
        source="torchvision remove_small_boxes; detectron2 Boxes.nonempty; py-faster-rcnn proposal_layer.py"),
    "clip_plus_one": conventions.flag(
        "clip to [0, W - 1] x [0, H - 1] (py-faster-rcnn clip_boxes) instead of [0, W] x [0, H]",
        source="py-faster-rcnn lib/fast_rcnn/bbox_transform.py clip_boxes"),
    "top_k_scope": conventions.choice(
        ("per_level", "all"), "rank anchors within each FPN level or over all anchors at once",
        source="torchvision _get_top_n_idx; detectron2 find_top_rpn_proposals; py-faster-rcnn (one level)"),
    "filter_first": conventions.flag(
        "clip and drop small boxes before ranking (py-faster-rcnn) instead of after the top-k",
        source="py-faster-rcnn proposal_layer.py steps 2-5"),
    "rank_on": conventions.choice(
        ("logit", "score"), "rank on the raw logits (torch.topk) or on the scores (mmdet sorts sigmoids)",
        source="torchvision/detectron2 logits.topk; mmdet cls_score.sigmoid().sort(descending=True)"),
    "score": conventions.choice(
        ("sigmoid", "logit", "probability"),
        "what objectness holds and the proposals' scores are: sigmoid of the logits (torchvision, mmdet), "
        "the logits themselves (detectron2), or given probabilities (py-faster-rcnn's softmax)",
        source="torchvision filter_proposals torch.sigmoid; detectron2 objectness_logits; py-faster-rcnn "
               "rpn_cls_prob"),
    "nms_per_level": conventions.flag(
        "NMS within each level (batched_nms with the level as category) instead of over all proposals",
        source="torchvision/detectron2/mmdet batched_nms(boxes, scores, lvl); py-faster-rcnn nms"),
    "nms_profile": conventions.choice(
        _NMS_PROFILES, "refdet.nms convention of the suppression (caffe: +1 areas, IoU >= thr suppresses, "
                       "ties higher index first)", source="refdet.conventions.describe('nms')"),
    "coordinate_trick": conventions.choice(
        (False, True, "torchvision"),
        "batched NMS by offsetting each level's boxes (torchvision when at most 1000 boxes; mmcv below 10000)",
        source="torchvision ops/boxes.py batched_nms; mmcv ops/nms.py batched_nms split_thr 10000"),
}

conventions.register(
    "filter_proposals",
    {
        "torchvision": dict(pre_nms_top_n=(2000, 1000), post_nms_top_n=(2000, 1000), nms_thresh=0.7,
                            score_thresh=0.0, min_size=1e-3, small_box_rule="inclusive", clip_plus_one=False,
                            top_k_scope="per_level", filter_first=False, rank_on="logit", score="sigmoid",
                            nms_per_level=True, nms_profile="torchvision", coordinate_trick="torchvision"),
        "detectron2": dict(pre_nms_top_n=(2000, 1000), post_nms_top_n=(1000, 1000), nms_thresh=0.7,
                           score_thresh=None, min_size=0.0, small_box_rule="strict", clip_plus_one=False,
                           top_k_scope="per_level", filter_first=False, rank_on="logit", score="logit",
                           nms_per_level=True, nms_profile="torchvision", coordinate_trick="torchvision"),
        "mmdet": dict(pre_nms_top_n=(2000, 1000), post_nms_top_n=(1000, 1000), nms_thresh=0.7,
                      score_thresh=None, min_size=0.0, small_box_rule="strict", clip_plus_one=False,
                      top_k_scope="per_level", filter_first=False, rank_on="score", score="sigmoid",
                      nms_per_level=True, nms_profile="mmdet", coordinate_trick=True),
        "caffe": dict(pre_nms_top_n=(12000, 6000), post_nms_top_n=(2000, 300), nms_thresh=0.7,
                      score_thresh=None, min_size=16.0, small_box_rule="plus_one", clip_plus_one=True,
                      top_k_scope="all", filter_first=True, rank_on="score", score="probability",
                      nms_per_level=False, nms_profile="caffe", coordinate_trick=False),
    },
    knobs=_KNOBS,
    doc="torchvision 0.29 models/detection/rpn.py and faster_rcnn.py defaults; detectron2 "
        "proposal_utils.find_top_rpn_proposals with configs/Base-RCNN-FPN.yaml; mmdet 3.x "
        "rpn_head.py with configs/_base_/models/faster-rcnn_r50_fpn.py; py-faster-rcnn lib/rpn/proposal_layer.py "
        "and lib/fast_rcnn/config.py (Detectron1 generate_proposals follows it).",
)

_DECODE_CONVENTION = {"torchvision": "torchvision", "detectron2": "detectron2", "mmdet": "mmdet",
                      "caffe": "caffe"}


class Proposals(NamedTuple):
    """Proposals per image (lists with one entry per image).

    boxes : list of ndarray (P_i, 4)
        xyxy, clipped, in decreasing score order.
    scores : list of ndarray (P_i,)
        Per the convention's ``score`` (sigmoid probabilities, logits or the given probabilities).
    levels : list of ndarray (P_i,) int64
        FPN level index of each proposal's anchor.
    anchor_indices : list of ndarray (P_i,) int64
        Index of each proposal's anchor in the image's N anchors (to trace a proposal to its anchor).
    """
    boxes: list
    scores: list
    levels: list
    anchor_indices: list


def top_k_per_level(scores: np.ndarray, num_anchors_per_level: Sequence[int], k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores of every level, level by level, each level best first.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        One score (logit) per anchor, levels concatenated.
    num_anchors_per_level : sequence of int
        Sizes of the levels (sum N).
    k : int
        Per level; 0 or more than a level's size: the whole level (torchvision's ``_topk_min``).

    Returns
    -------
    ndarray of int64
        Equal scores: lower index first, including at the cut (``torch.topk`` leaves this unspecified).
    """
    s = _checks.as_float_array(scores, "scores", ndim=1, finite=False)   # NaN ranks as NumPy sorts it
    counts, _ = _levels_of(num_anchors_per_level, len(s))
    k = _checks.check_int(k, "k")
    out, start = [], 0
    for n in counts:
        out.append(start + _top_k(s[start:start + n], k))
        start += n
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _top_k(s, k):
    """The k largest of s, best first, ties lower index first; O(n + k log k)."""
    n = len(s)
    if k <= 0 or k >= n:
        return np.argsort(-s, kind="stable").astype(np.int64)
    part = np.argpartition(-s, k - 1)[:k]
    kth = s[part].min()
    above = np.flatnonzero(s > kth)
    at = np.flatnonzero(s == kth)[:k - len(above)]         # the lowest indices among the tied
    sel = np.sort(np.concatenate([above, at]))
    return sel[np.argsort(-s[sel], kind="stable")].astype(np.int64)


def _sigmoid(x, exp=None):
    dt = x.dtype
    e = np.exp(-x.astype(np.float64)).astype(dt) if exp is None else np.asarray(exp(-x), dtype=dt)
    with np.errstate(over="ignore"):
        return (dt.type(1) / (dt.type(1) + e)).astype(dt)


def _as_batch(arr, name, last=None):
    a = _checks.as_float_array(arr, name)
    if last is None:
        if a.ndim == 1:
            return a[None], True
        if a.ndim != 2:
            raise ValueError(f"`{name}` must have shape (N,) or (B, N); got {a.shape}")
        return a, False
    if a.ndim == 2 and a.shape[-1] == last:
        return a[None], True
    if a.ndim != 3 or a.shape[-1] != last:
        raise ValueError(f"`{name}` must have shape (N, {last}) or (B, N, {last}); got {a.shape}")
    return a, False


def _image_sizes(image_sizes, B):
    if isinstance(image_sizes, (tuple, list)) and len(image_sizes) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in image_sizes):
        image_sizes = [image_sizes]
    if isinstance(image_sizes, (str, bytes)) or not hasattr(image_sizes, "__len__") or len(image_sizes) != B:
        raise ValueError(f"`image_sizes` must hold one (H, W) per image ({B})")
    return [_checks.check_image_size(s, f"image_sizes[{i}]") for i, s in enumerate(image_sizes)]


def _levels_of(num_anchors_per_level, N):
    if isinstance(num_anchors_per_level, (str, bytes)) or not hasattr(num_anchors_per_level, "__len__"):
        raise TypeError("`num_anchors_per_level` must be a sequence of ints (anchors of each level)")
    counts = [_checks.check_int(n, f"num_anchors_per_level[{i}]", low=0) for i, n in enumerate(num_anchors_per_level)]
    if sum(counts) != N:
        raise ValueError(f"`num_anchors_per_level` must sum to the number of anchors N = {N}; got {sum(counts)}")
    return counts, np.repeat(np.arange(len(counts)), counts).astype(np.int64)


def _resolve(convention, overrides):
    if isinstance(convention, str) and convention not in conventions.describe("filter_proposals"):
        raise ValueError(f"`convention` must be one of 'torchvision', 'detectron2', 'mmdet', 'caffe' for "
                         f"filter_proposals; got {convention!r}")
    return conventions.resolve("filter_proposals", convention, **overrides)


def _select(s, objectness, counts, level, image_size, image_scale, training, boxes_of, exp):
    """One image: indices of the kept anchors and their boxes and scores, per profile ``s``."""
    pre = s.pre_nms_top_n[0 if training else 1]
    post = s.post_nms_top_n[0 if training else 1]
    N = len(objectness)
    score = None
    if s.rank_on == "logit":
        rank = objectness
    else:                                   # mmdet sigmoids every anchor and sorts the probabilities
        score = rank = objectness if s.score != "sigmoid" else _sigmoid(objectness, exp)
    if s.filter_first:
        cand = np.arange(N, dtype=np.int64)
    elif s.top_k_scope == "per_level":
        cand = top_k_per_level(rank, counts, pre)
    else:
        cand = _top_k(rank, pre)
    b = clip_boxes_to_image(boxes_of(cand), image_size, plus_one=s.clip_plus_one)
    if score is not None:
        sc = score[cand]
    else:                                   # torchvision: sigmoid of the top-k logits only
        sc = _sigmoid(objectness[cand], exp) if s.score == "sigmoid" else objectness[cand]
    m = s.min_size * (image_scale if s.small_box_rule == "plus_one" else 1.0)
    keep = remove_small_boxes(b, m, plus_one=s.small_box_rule == "plus_one", strict=s.small_box_rule == "strict")
    cand, b, sc = cand[keep], b[keep], sc[keep]
    if s.score_thresh is not None:
        keep = np.flatnonzero(sc >= sc.dtype.type(s.score_thresh))
        cand, b, sc = cand[keep], b[keep], sc[keep]
    if s.filter_first:
        # py-faster-rcnn: order = scores.ravel().argsort()[::-1]; order[:pre_nms_topN]
        order = np.argsort(rank[cand], kind="stable")[::-1]
        if pre > 0:
            order = order[:pre]
        cand, b, sc = cand[order], b[order], sc[order]
    if s.nms_per_level:
        trick = s.coordinate_trick
        if trick == "torchvision":
            trick = b.size <= 4000                      # torchvision's CPU rule (boxes.numel() <= 4000)
        if not trick and s.nms_profile == "torchvision" and len(b) > _FAST_NMS_MIN and s.nms_thresh >= 0.3:
            keep = _grouped_nms(b, sc, level[cand], s.nms_thresh)
        else:
            keep = batched_nms(b, sc, level[cand], s.nms_thresh, convention=s.nms_profile, coordinate_trick=trick)
    else:
        keep = nms(b, sc, s.nms_thresh, convention=s.nms_profile)
    if post > 0:
        keep = keep[:post]
    return cand[keep], b[keep], sc[keep]


# --------------------------------------------------------------------------------------------------
# per-level NMS of many proposals at a high threshold: a sparse exact greedy (speed path)
# --------------------------------------------------------------------------------------------------

#: proposal sets at least this large use :func:`_grouped_nms` (held equal to refdet.batched_nms by tests)
_FAST_NMS_MIN = 1000


def _grouped_nms(boxes, scores, groups, thr):
    """``batched_nms(boxes, scores, groups, thr)`` (torchvision profile, exact per group), fast when few
    pairs overlap: the case of RPN proposals at IoU 0.7.

    1. Visit order: scores descending, ties lower index first (torchvision's stable sort).
    2. Candidate pairs: ``IoU > thr`` needs the intersection width above ``thr * max(w_i, w_j)``, so
       ``|x1_i - x1_j| < (1 - thr) * max(w_i, w_j)`` (and the same in y); pairs of one group within that
       window (plus a 1 % margin for rounding) are found by a sort on x1 and two ``searchsorted``.
    3. Their IoU, exactly as torchvision's CPU kernel computes it (float32 ``inter / ((area_i + area_j)
       - inter)`` with ``i`` the earlier box, compared with the double threshold): the suppression edges.
    4. Greedy on that sparse graph: a box is kept when every box that could suppress it is suppressed,
       suppressed when one of them is kept; resolved in rounds, the rare long chains one box at a time.

    Returns the kept indices in visiting order (as :func:`refdet.nms.batched_nms`).
    """
    n = len(boxes)
    dt = boxes.dtype
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    g = groups[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = x2 - x1, y2 - y1
    area = w * h
    ok = (w > 0) & (h > 0)                      # a degenerate box has no intersection with anything
    c = (1.0 - thr) * 1.01 + 1e-6
    # sort positions by (group, x1); a float64 key keeps groups apart
    span = float(np.abs(b[ok]).max()) * 4 + 1.0 if ok.any() else 1.0
    key = g.astype(np.float64) * span + x1.astype(np.float64)
    srt = np.argsort(key, kind="stable")
    srt = srt[ok[srt]]
    ks = key[srt]
    wf = w[srt].astype(np.float64)
    # forward window (partner to the right, w_i >= w_j) and backward window (w_j > w_i)
    hi = np.searchsorted(ks, ks + c * wf, side="right")
    lo = np.searchsorted(ks, ks - c * wf, side="left")
    m = len(srt)
    cnt_f = hi - np.arange(1, m + 1)
    cnt_b = np.arange(m) - lo
    a_f = np.repeat(np.arange(m), cnt_f)
    b_f = _ranges(np.arange(1, m + 1), cnt_f)
    a_b = np.repeat(np.arange(m), cnt_b)
    b_b = _ranges(lo, cnt_b)
    sel_f = wf[a_f] >= wf[b_f]
    sel_b = wf[a_b] > wf[b_b]
    pa = srt[np.concatenate([a_f[sel_f], a_b[sel_b]])]
    pb = srt[np.concatenate([b_f[sel_f], b_b[sel_b]])]
    near = np.abs(y1[pa].astype(np.float64) - y1[pb]) < c * np.maximum(h[pa], h[pb]).astype(np.float64)
    pa, pb = pa[near], pb[near]
    i, j = np.minimum(pa, pb), np.maximum(pa, pb)          # i visited first (positions in visiting order)
    ww = np.maximum(dt.type(0), np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]))
    hh = np.maximum(dt.type(0), np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]))
    inter = ww * hh
    with np.errstate(invalid="ignore", divide="ignore"):
        ovr = inter / (area[i] + area[j] - inter)
    hit = ovr.astype(np.float64) > thr
    src, dst = i[hit], j[hit]
    state = np.zeros(n, dtype=np.int8)          # 0 undecided, 1 kept, 2 suppressed
    for _ in range(64):
        undecided = state == 0
        if not undecided.any():
            break
        live = state[src] != 2
        blocked = np.bincount(dst[live], minlength=n) > 0
        state[undecided & ~blocked] = 1
        killed = np.bincount(dst[state[src] == 1], minlength=n) > 0
        state[(state == 0) & killed] = 2
    rest = np.flatnonzero(state == 0)
    if len(rest):                               # long chains: one box at a time, in visiting order
        by_dst = np.argsort(dst, kind="stable")
        starts = np.searchsorted(dst[by_dst], np.arange(n + 1))
        for p in rest:
            srcs = src[by_dst[starts[p]:starts[p + 1]]]
            state[p] = 2 if (state[srcs] == 1).any() else 1
    return order[np.flatnonzero(state == 1)].astype(np.int64)


def _ranges(starts, counts):
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    offs = np.repeat(starts - (ends - counts), counts)
    return np.arange(total) + offs


@conventions.documented("filter_proposals")
def filter_proposals(proposals: np.ndarray, objectness: np.ndarray, image_sizes, num_anchors_per_level,
                     *, training: bool = False, image_scales=None, convention="torchvision",
                     pre_nms_top_n=None, post_nms_top_n=None, nms_thresh: Optional[float] = None,
                     score_thresh: Optional[float] = None, min_size: Optional[float] = None,
                     small_box_rule: Optional[str] = None, clip_plus_one: Optional[bool] = None,
                     top_k_scope: Optional[str] = None, filter_first: Optional[bool] = None,
                     rank_on: Optional[str] = None, score: Optional[str] = None,
                     nms_per_level: Optional[bool] = None, nms_profile: Optional[str] = None,
                     coordinate_trick=None) -> Proposals:
    """Select proposals from decoded boxes, per image (torchvision's ``filter_proposals`` signature).

    Parameters
    ----------
    proposals : ndarray, shape (B, N, 4) or (N, 4)
        Decoded xyxy boxes of every anchor, levels concatenated (refdet's anchor order).
    objectness : ndarray, shape (B, N) or (N,)
        One logit per anchor (``score="probability"`` profiles: the foreground probability).
    image_sizes : list of B (H, W), or one (H, W)
        Sizes of the resized images (the clip window).
    num_anchors_per_level : sequence of int
        Anchors per FPN level (sum N).
    training : bool
        Selects the train or test counts of ``pre_nms_top_n`` / ``post_nms_top_n``.
    image_scales : sequence of float, optional
        py-faster-rcnn's ``im_info[2]`` (resize factor) per image: multiplies ``min_size`` under the
        ``plus_one`` small-box rule. Default 1.
    convention : str or conventions.Profile
        ``"torchvision"``, ``"detectron2"``, ``"mmdet"`` or ``"caffe"`` (table below).
    pre_nms_top_n, post_nms_top_n, nms_thresh, score_thresh, min_size, small_box_rule, clip_plus_one,
    top_k_scope, filter_first, rank_on, score, nms_per_level, nms_profile, coordinate_trick
        Override single knobs of the table (``pre_nms_top_n=(2000, 1000)`` or one int for both,
        ``nms_thresh=0.6``, ...); None keeps the profile's value.

    Returns
    -------
    Proposals
        Per image: boxes, scores, level indices and anchor indices, best first.
    """
    s = _resolve(convention, dict(pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n, nms_thresh=nms_thresh,
                         score_thresh=score_thresh, min_size=min_size, small_box_rule=small_box_rule,
                         clip_plus_one=clip_plus_one, top_k_scope=top_k_scope, filter_first=filter_first,
                         rank_on=rank_on, score=score, nms_per_level=nms_per_level, nms_profile=nms_profile,
                         coordinate_trick=coordinate_trick))
    _check_training(training)
    P, _ = _as_batch(proposals, "proposals", last=4)
    O, _ = _as_batch(objectness, "objectness")
    if O.shape != P.shape[:2]:
        raise ValueError(f"`objectness` must have shape {P.shape[:2]} (one per proposal); got {O.shape}")
    O = O.astype(P.dtype, copy=False) if O.dtype != P.dtype else O
    B, N = O.shape
    sizes = _image_sizes(image_sizes, B)
    scales = _scales(image_scales, B)
    counts, level = _levels_of(num_anchors_per_level, N)
    out = Proposals([], [], [], [])
    for i in range(B):                                  # images are independent
        idx, b, sc = _select(s, O[i], counts, level, sizes[i], scales[i], bool(training),
                             lambda c, i=i: P[i][c], None)
        _append(out, idx, b, sc, level)
    return out


def _check_training(training):
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"`training` must be a bool; got {type(training).__name__} {training!r}")


def _scales(image_scales, B):
    if image_scales is None:
        return [1.0] * B
    if np.ndim(image_scales) == 0:
        image_scales = [image_scales] * B
    if len(image_scales) != B:
        raise ValueError(f"`image_scales` must hold one scale per image ({B}); got {len(image_scales)}")
    return [_checks.check_positive(v, f"image_scales[{i}]") for i, v in enumerate(image_scales)]


def _append(out, idx, b, sc, level):
    out.boxes.append(b)
    out.scores.append(sc)
    out.levels.append(level[idx])
    out.anchor_indices.append(idx)


@conventions.documented("filter_proposals")
def select_proposals(objectness: np.ndarray, deltas: np.ndarray, anchors: np.ndarray, image_sizes,
                     num_anchors_per_level, *, training: bool = False, image_scales=None,
                     weights=(1.0, 1.0, 1.0, 1.0), clamp: float = math.log(1000.0 / 16), exp=None,
                     convention="torchvision", pre_nms_top_n=None, post_nms_top_n=None,
                     nms_thresh: Optional[float] = None, score_thresh: Optional[float] = None, min_size: Optional[float] = None,
                     small_box_rule: Optional[str] = None, clip_plus_one: Optional[bool] = None,
                     top_k_scope: Optional[str] = None, filter_first: Optional[bool] = None,
                     rank_on: Optional[str] = None, score: Optional[str] = None,
                     nms_per_level: Optional[bool] = None, nms_profile: Optional[str] = None,
                     coordinate_trick=None) -> Proposals:
    """RPN outputs to proposals: decode, then :func:`filter_proposals` (the RPN's inference step).

    Only the anchors that can survive are decoded: the top ``pre_nms_top_n`` of each level for the
    rank-first profiles (decoding is per anchor, so the boxes are the same bits torchvision computes
    for all of them), every anchor for py-faster-rcnn.

    Parameters
    ----------
    objectness : ndarray, shape (B, N) or (N,)
        Logits (or foreground probabilities under ``score="probability"``), anchor order ``(level, y, x, a)``
        (:func:`refdet.flatten_head_output` of each level, concatenated).
    deltas : ndarray, shape (B, N, 4) or (N, 4)
        ``(dx, dy, dw, dh)`` per anchor.
    anchors : ndarray, shape (N, 4) (shared) or (B, N, 4)
    image_sizes, num_anchors_per_level, training, image_scales, convention, and the knob keywords
        As for :func:`filter_proposals`.
    weights, clamp : box coder settings
        ``(1, 1, 1, 1)`` and ``log(1000 / 16)`` for every RPN; the decode follows the convention's
        box coder (py-faster-rcnn: +1 widths; detectron2: float32).
    exp : callable, optional
        Elementwise exponential for the decode and the sigmoid (default: correctly rounded).

    Returns
    -------
    Proposals
    """
    s = _resolve(convention, dict(pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n, nms_thresh=nms_thresh,
                         score_thresh=score_thresh, min_size=min_size, small_box_rule=small_box_rule,
                         clip_plus_one=clip_plus_one, top_k_scope=top_k_scope, filter_first=filter_first,
                         rank_on=rank_on, score=score, nms_per_level=nms_per_level, nms_profile=nms_profile,
                         coordinate_trick=coordinate_trick))
    _check_training(training)
    O, _ = _as_batch(objectness, "objectness")
    D, _ = _as_batch(deltas, "deltas", last=4)
    B, N = O.shape
    if D.shape[:2] != (B, N):
        raise ValueError(f"`deltas` must have shape ({B}, {N}, 4) (or ({N}, 4) for one image); got {D.shape}")
    A = _checks.as_float_array(anchors, "anchors")
    if A.shape == (N, 4):
        A = np.broadcast_to(A, (B, N, 4))
    elif A.shape != (B, N, 4):
        raise ValueError(f"`anchors` must have shape ({N}, 4) or ({B}, {N}, 4); got {A.shape}")
    dt = np.result_type(O.dtype, D.dtype)
    O, D = O.astype(dt, copy=False), D.astype(dt, copy=False)
    sizes = _image_sizes(image_sizes, B)
    scales = _scales(image_scales, B)
    counts, level = _levels_of(num_anchors_per_level, N)
    coder = _DECODE_CONVENTION.get(s.name, "torchvision")
    out = Proposals([], [], [], [])
    for i in range(B):
        def boxes_of(c, i=i):
            return decode_boxes(D[i][c], A[i][c], weights=weights, clamp=clamp, convention=coder, exp=exp)
        idx, b, sc = _select(s, O[i], counts, level, sizes[i], scales[i], bool(training), boxes_of, exp)
        _append(out, idx, b, sc, level)
    return out
