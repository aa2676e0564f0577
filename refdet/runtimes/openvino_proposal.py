"""OpenVINO ``Proposal`` (opset 4; opset 1 without the second output) as its CPU plugin runs it:
py-faster-rcnn's region proposal layer, and its ``framework="tensorflow"`` variant.

Sources (openvinotoolkit/openvino): ``src/plugins/intel_cpu/src/nodes/proposal.cpp``
(``generate_anchors``, the per-framework switches in the constructor, the image-info checks of
``execute``) and ``src/plugins/intel_cpu/src/nodes/proposal_imp.cpp`` (``enumerate_proposals_cpu``,
the ``std::partial_sort``, ``nms_cpu``, ``retrieve_rois_cpu``). Checked against the plugin in
``tests/test_openvino_detection.py`` and by :mod:`refdet.testing.conformance_openvino_detection`.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from refdet import _checks
from refdet.tf_ops._libm import expf

__all__ = ["ProposalResult", "proposal", "proposal_anchors"]

_F32 = np.float32


class ProposalResult(NamedTuple):
    """Outputs of OpenVINO ``Proposal``-4.

    Attributes
    ----------
    rois : ndarray of float32, shape (B * post_nms_topn, 5)
        ``[image, x1, y1, x2, y2]`` rows, image by image; after an image's last proposal (when it has fewer
        than ``post_nms_topn``) a row whose image is ``-1``, then zero rows.
    probs : ndarray of float32, shape (B * post_nms_topn,)
        The score of each proposal; 0 past the last one (the CPU plugin leaves those uninitialised).
    counts : ndarray of int64, shape (B,)
        Proposals per image (refdet's addition: the valid rows of image ``n`` are
        ``rois[n * post_nms_topn: n * post_nms_topn + counts[n]]``).
    """
    rois: np.ndarray
    probs: np.ndarray
    counts: np.ndarray


def _framework(framework):
    if framework not in ("", "tensorflow"):
        raise ValueError(f"`framework` must be '' (Caffe, py-faster-rcnn) or 'tensorflow' (OpenVINO Proposal's CPU "
                         f"plugin refuses anything else); got {framework!r}")
    tf = framework == "tensorflow"
    # coordinates_offset, initial_clip, shift_anchors, round_ratios, swap_xy (Proposal::Proposal)
    return dict(offset=_F32(0 if tf else 1), initial_clip=tf, shift=tf, round_ratios=not tf, swap_xy=tf)


def _roundf(x):
    """``std::roundf``: half away from zero."""
    return (np.sign(x) * np.floor(np.abs(x) + _F32(0.5))).astype(np.float32)


def proposal_anchors(base_size: int, ratio: Sequence[float], scale: Sequence[float], framework: str = "") -> np.ndarray:
    """The anchors of OpenVINO ``Proposal`` (``generate_anchors`` of the CPU plugin), in float32.

    ::

        ratio_w = roundf(sqrt(base_size^2 / r))      ratio_h = roundf(ratio_w * r)      (Caffe; no rounding in TF)
        half_w  = 0.5 * (ratio_w * s - offset)        half_h  = 0.5 * (ratio_h * s - offset)
        anchor  = (c - half_w, c - half_h, c + half_w, c + half_h),  c = 0.5 * (base_size - offset)

    with ``offset = 1`` (Caffe) or 0 (``"tensorflow"``, whose anchors are also shifted by
    ``-base_size / 2``). Ratio-major: anchor ``a = ratio_index * len(scale) + scale_index``.

    py-faster-rcnn's ``generate_anchors`` (and refdet's ``convention="caffe"`` cell anchors) compute the
    same formula in float64 with ``np.round`` (half to **even**): where ``ratio_w * r`` is ``k + 0.5``
    with ``k`` even they differ, e.g. ``base_size=15``, ``r=0.5``: ``ratio_w = round(sqrt(450)) = 21``,
    ``21 * 0.5 = 10.5``: py-faster-rcnn says 10, OpenVINO 11 (tested). The usual ``base_size=16`` with
    ratios (0.5, 1, 2) agree.

    Parameters
    ----------
    base_size : int >= 1
    ratio, scale : sequence of float > 0
    framework : {"", "tensorflow"}

    Returns
    -------
    ndarray of float32, shape (len(ratio) * len(scale), 4)
        ``[x1, y1, x2, y2]`` relative to the cell's corner.
    """
    fw = _framework(framework)
    bs = _checks.check_int(base_size, "base_size", low=1)
    r = _checks.as_positive_vector(ratio, "ratio").astype(np.float32)
    s = _checks.as_positive_vector(scale, "scale").astype(np.float32)
    off = fw["offset"]
    base_area = _F32(bs * bs)
    with np.errstate(over="ignore"):
        rw = np.sqrt(base_area / r)
        if fw["round_ratios"]:
            rw = _roundf(rw)
            rh = _roundf(rw * r)
        else:
            rh = rw * r
        hw = _F32(0.5) * (rw[:, None] * s[None, :] - off)
        hh = _F32(0.5) * (rh[:, None] * s[None, :] - off)
    c = _F32(0.5) * (_F32(bs) - off)
    a = np.stack([c - hw, c - hh, c + hw, c + hh], axis=-1).reshape(-1, 4).astype(np.float32)
    if fw["shift"]:
        a = a - _F32(bs) * _F32(0.5)
    return a.astype(np.float32)


def _fma(a, b, c):
    """``a * b + c`` with one rounding, as the plugin's AVX2 build contracts it (``-ffp-contract=fast``): the
    float32 product is exact in float64, the sum rounded to float64 then float32 (a double rounding that can
    differ from a true fused multiply-add only when the float64 sum lands exactly halfway between floats32)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def _clamp(v, hi):
    """``std::max<float>(0, std::min<float>(v, hi))``."""
    m = np.where(hi < v, hi, v)
    return np.where(_F32(0) < m, m, _F32(0)).astype(np.float32)


# libstdc++'s std::partial_sort (heap select, then sort_heap) with `comp(a, b) = a > b`: the plugin's sort is
# not stable, so the order of tied scores is this algorithm's (reproduced for bit-exact ties)

def _adjust_heap(a, key, hole, length, value):
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if key[a[child]] > key[a[child - 1]]:
            child -= 1
        a[hole] = a[child]
        hole = child
    if length % 2 == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        a[hole] = a[child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and key[a[parent]] > key[value]:
        a[hole] = a[parent]
        hole = parent
        parent = (hole - 1) // 2
    a[hole] = value


def _partial_sort(key, k):
    """Indices of the first ``k`` elements after ``std::partial_sort(v, v + k, v + n, greater)`` of ``key``
    (an array of floats, or a list of tuples compared lexicographically)."""
    n = len(key)
    if k == 0:
        return np.zeros(0, np.int64)
    if isinstance(key, np.ndarray):                            # floats (a list of tuples goes to the heap)
        srt = np.sort(key)[::-1]
        stop = min(k + 1, n)
        if not np.any(srt[1:stop] == srt[:stop - 1]):          # no tie inside the top k or at the cut: unique order
            return np.argsort(-key.astype(np.float64), kind="stable")[:k]
        key = key.tolist()
    a = list(range(n))
    if k > 1:                                                  # make_heap(first, middle)
        parent = (k - 2) // 2
        while True:
            _adjust_heap(a, key, parent, k, a[parent])
            if parent == 0:
                break
            parent -= 1
    for i in range(k, n):                                      # __heap_select
        if key[a[i]] > key[a[0]]:
            v = a[i]
            a[i] = a[0]
            _adjust_heap(a, key, 0, k, v)
    last = k
    while last > 1:                                            # __sort_heap
        last -= 1
        v = a[last]
        a[last] = a[0]
        _adjust_heap(a, key, 0, last, v)
    return np.asarray(a[:k], np.int64)


def _nms(b, thr, off, max_out):
    """``nms_cpu``: greedy over boxes already in order; ``tail`` dies when ``thr < IoU`` (strict) with a kept box.
    IoU 0 unless ``x0i <= x1j and y0i <= y1j and x0j <= x1i and y0j <= y1i``; sides ``x1 - x0 + offset``."""
    x0, y0, x1, y1 = b.T
    n = len(b)
    dead = np.zeros(n, bool)
    keep = []
    for i in range(n):
        if dead[i]:
            continue
        keep.append(i)
        if len(keep) == max_out:
            break
        t = np.arange(i + 1, n)
        if not t.size:
            continue
        over = (x0[i] <= x1[t]) & (y0[i] <= y1[t]) & (x0[t] <= x1[i]) & (y0[t] <= y1[i])
        ix0, iy0 = np.where(x0[i] < x0[t], x0[t], x0[i]), np.where(y0[i] < y0[t], y0[t], y0[i])
        ix1, iy1 = np.where(x1[t] < x1[i], x1[t], x1[i]), np.where(y1[t] < y1[i], y1[t], y1[i])
        w = np.maximum(_F32(0), ix1 - ix0 + off)
        h = np.maximum(_F32(0), iy1 - iy0 + off)
        area = w * h
        a_area = (x1[i] - x0[i] + off) * (y1[i] - y0[i] + off)
        b_area = (x1[t] - x0[t] + off) * (y1[t] - y0[t] + off)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            res = area / (a_area + b_area - area)
        dead[t] |= over & (thr < res)
    return np.asarray(keep, np.int64)


def proposal(class_probs: np.ndarray, bbox_deltas: np.ndarray, image_shape: np.ndarray, *, base_size: int,
             pre_nms_topn: int, post_nms_topn: int, nms_thresh: float, feat_stride: int, min_size: int,
             ratio: Sequence[float], scale: Sequence[float], clip_before_nms: bool = True,
             clip_after_nms: bool = False, normalize: bool = False, box_size_scale: float = 1.0,
             box_coordinate_scale: float = 1.0, framework: str = "") -> ProposalResult:
    """OpenVINO ``Proposal`` (opset 4) on the CPU plugin: anchors, decode, min-size filter, top-k, NMS.

    Per image, every anchor ``a`` of every cell ``(h, w)`` (proposal order ``(h, w, a)``; ``A = len(ratio) *
    len(scale)`` anchors of :func:`proposal_anchors`) gives, in float32 (``enumerate_proposals_cpu``)::

        x = w * feat_stride, y = h * feat_stride          ("tensorflow": x = h * stride, y = w * stride)
        x0 = x + anchor_x1  ...                          ("tensorflow": then clamped to [0, W], [0, H])
        ww = x1 - x0 + offset;  ctr_x = x0 + 0.5 * ww
        pred_ctr_x = dx * ww + ctr_x;  pred_w = exp(dw) * ww    (dx = delta / box_coordinate_scale,
        x0 = pred_ctr_x - 0.5 * pred_w;  x1 = pred_ctr_x + 0.5 * pred_w       dw = delta / box_size_scale)
        clip_before_nms: x0, x1 clamped to [0, W - offset], y0, y1 to [0, H - offset]
        score = fg_score if (x1 - x0 + offset >= min_size * scale_w and y1 - y0 + offset >= min_size * scale_h)
                else 0 (times the score: -0.0 for a negative one)

    ``offset`` is 1 for Caffe (``framework=""``: py-faster-rcnn's ``+1`` widths) and 0 for ``"tensorflow"``,
    where ``H, W`` also swap (``image_shape[1], image_shape[0]``): the TF layout's boxes come out as ``[y, x]``.
    Then the ``pre_nms_topn`` best scores (``std::partial_sort`` with ``>``: not stable; tied scores come in
    the order of libstdc++'s heap select + heap sort, reproduced here), greedy NMS in that order (a box dies
    when ``nms_thresh < IoU``, **strict**, IoU with ``+offset`` sides and 0 unless the boxes touch or overlap),
    at most ``post_nms_topn`` kept; ``clip_after_nms`` clamps to ``[0, W]`` / ``[0, H]`` (no offset) and
    ``normalize`` divides by ``W`` / ``H``.

    Parameters
    ----------
    class_probs : ndarray, shape (B, 2 * A, H, W)
        Background scores in channels ``[0, A)``, foreground in ``[A, 2A)`` (only those are read).
    bbox_deltas : ndarray, shape (B, 4 * A, H, W)
        ``(dx, dy, dw, dh)`` of anchor ``a`` in channels ``4a .. 4a + 3``.
    image_shape : ndarray, shape (3,) or (4,)
        ``[height, width, scale_h(, scale_w)]`` (``scale_w = scale_h`` when 3 values); height and width
        positive and normal, scales finite and ``>= 0`` (the plugin refuses anything else at run time).
    base_size, pre_nms_topn, post_nms_topn, feat_stride, min_size : int
    nms_thresh : float in (0, 1]
    ratio, scale : sequence of float
    clip_before_nms, clip_after_nms, normalize : bool
    box_size_scale, box_coordinate_scale : float
    framework : {"", "tensorflow"}

    Returns
    -------
    ProposalResult(rois (B * post_nms_topn, 5), probs (B * post_nms_topn,), counts (B,))

    Notes
    -----
    Where refdet's own pieces differ: :func:`refdet.proposals` (torchvision / detectron2) decode with
    ``+0`` widths, filter small boxes out (rather than zeroing their score) and sort stably;
    :func:`proposal_anchors` rounds half away from zero (py-faster-rcnn: half to even).
    """
    fw = _framework(framework)
    cp = _checks.as_float_array(class_probs, "class_probs", ndim=4).astype(np.float32)
    bd = _checks.as_float_array(bbox_deltas, "bbox_deltas", ndim=4).astype(np.float32)
    info = _checks.as_float_array(image_shape, "image_shape", ndim=1, finite=False).astype(np.float32)
    anchors = proposal_anchors(base_size, ratio, scale, framework)
    A = len(anchors)
    B, _, H, W = cp.shape
    if cp.shape[1] != 2 * A:
        raise ValueError(f"`class_probs` must have 2 * A = {2 * A} channels (A = len(ratio) * len(scale), OpenVINO "
                         f"Proposal); got shape {cp.shape}")
    if bd.shape != (B, 4 * A, H, W):
        raise ValueError(f"`bbox_deltas` must have shape {(B, 4 * A, H, W)}; got {bd.shape}")
    if info.shape[0] not in (3, 4):
        raise ValueError(f"`image_shape` must hold 3 or 4 values [height, width, scale_h(, scale_w)]; got {info.shape}")
    ih, iw = info[0], info[1]
    if not (np.isfinite(ih) and np.isfinite(iw) and ih >= np.finfo(np.float32).tiny and iw >= np.finfo(np.float32).tiny):
        raise ValueError(f"`image_shape` height and width must be positive normal numbers (OpenVINO Proposal); got "
                         f"{info.tolist()}")
    sh = info[2]
    sw = info[3] if info.shape[0] == 4 else sh
    if not (np.isfinite(sh) and np.isfinite(sw) and sh >= 0 and sw >= 0):
        raise ValueError(f"`image_shape` scales must be finite and >= 0 (OpenVINO Proposal); got {info.tolist()}")
    pre = _checks.check_int(pre_nms_topn, "pre_nms_topn", low=1)
    post = _checks.check_int(post_nms_topn, "post_nms_topn", low=1)
    stride = _checks.check_int(feat_stride, "feat_stride", low=1, high=2 ** 31 - 1)   # a C++ int
    msz = _checks.check_int(min_size, "min_size")
    if msz < 1:
        raise ValueError(f"`min_size` must be >= 1 (OpenVINO Proposal's opset API refuses 0); got {msz}")
    thr = _checks.check_real(nms_thresh, "nms_thresh")
    if not 0 < thr <= 1:
        raise ValueError(f"`nms_thresh` must lie in (0, 1] (OpenVINO Proposal's opset API refuses 0; an IoU "
                         f"threshold above 1 can only act as 1: refdet refuses it as a likely mix-up); got {thr}")
    thr = _F32(thr)
    bss = _F32(_checks.check_positive(box_size_scale, "box_size_scale"))
    bcs = _F32(_checks.check_positive(box_coordinate_scale, "box_coordinate_scale"))
    for name, v in (("clip_before_nms", clip_before_nms), ("clip_after_nms", clip_after_nms),
                    ("normalize", normalize)):
        _checks.check_bool(v, name)
    _checks.check_allocation(B * post * 5, 4, "Proposal rois", name="post_nms_topn", keyword=False)
    off = fw["offset"]
    img_h, img_w = (iw, ih) if fw["swap_xy"] else (ih, iw)
    min_h, min_w = _F32(msz) * sh, _F32(msz) * sw
    hh, ww_ = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    if fw["swap_xy"]:
        hh, ww_ = ww_, hh
    gx = (ww_ * stride).astype(np.float32).reshape(-1, 1)               # (H*W, 1): proposal order (h, w, a)
    gy = (hh * stride).astype(np.float32).reshape(-1, 1)
    rois = np.zeros((B * post, 5), np.float32)
    probs = np.zeros(B * post, np.float32)
    counts = np.zeros(B, np.int64)
    half = _F32(0.5)
    for n in range(B):
        score = cp[n, A:].reshape(A, H * W).T                            # (H*W, A)
        d = bd[n].reshape(A, 4, H * W).transpose(2, 0, 1)                # (H*W, A, 4)
        dx, dy = d[..., 0] / bcs, d[..., 1] / bcs
        dw, dh = d[..., 2] / bss, d[..., 3] / bss
        x0, y0 = gx + anchors[:, 0], gy + anchors[:, 1]
        x1, y1 = gx + anchors[:, 2], gy + anchors[:, 3]
        if fw["initial_clip"]:
            x0, y0, x1, y1 = _clamp(x0, img_w), _clamp(y0, img_h), _clamp(x1, img_w), _clamp(y1, img_h)
        with np.errstate(over="ignore", invalid="ignore"):
            bw, bh = x1 - x0 + off, y1 - y0 + off
            cx, cy = x0 + half * bw, y0 + half * bh
            pcx, pcy = _fma(dx, bw, cx), _fma(dy, bh, cy)
            pw = expf(dw) * bw                                    # std::exp(float): glibc's expf
            ph = expf(dh) * bh
            x0, y0 = pcx - half * pw, pcy - half * ph
            x1, y1 = pcx + half * pw, pcy + half * ph
            if clip_before_nms:
                x0, x1 = _clamp(x0, img_w - off), _clamp(x1, img_w - off)
                y0, y1 = _clamp(y0, img_h - off), _clamp(y1, img_h - off)
            ok = (min_w <= x1 - x0 + off) & (min_h <= y1 - y0 + off)
        sc = (ok.astype(np.float32) * score).astype(np.float32).ravel()
        boxes = np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4).astype(np.float32)
        k = min(len(sc), pre)
        order = _partial_sort(sc, k)
        keep = order[_nms(boxes[order], thr, off, post)]
        b = boxes[keep]
        if clip_after_nms:
            b = np.stack([_clamp(b[:, 0], img_w), _clamp(b[:, 1], img_h), _clamp(b[:, 2], img_w),
                          _clamp(b[:, 3], img_h)], axis=1)
        if normalize:
            b = b / np.array([img_w, img_h, img_w, img_h], np.float32)
        m = len(keep)
        counts[n] = m
        rois[n * post: n * post + m, 0] = n
        rois[n * post: n * post + m, 1:] = b
        probs[n * post: n * post + m] = sc[keep]
        if m < post:
            rois[n * post + m, 0] = -1
    return ProposalResult(rois, probs, counts)
