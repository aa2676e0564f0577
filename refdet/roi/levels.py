"""Which FPN level a RoI is pooled from, and multi-scale RoIAlign (torchvision ``MultiScaleRoIAlign``).

FPN (Lin et al. 2017, Eq. 1) pools a RoI of size ``w x h`` (image pixels) from level ::

    k = floor(k0 + log2(sqrt(w * h) / 224))         k0 = 4: a 224 x 224 RoI (an ImageNet crop) -> P4

clamped to the pyramid's ``[k_min, k_max]`` (P2-P5 in Faster R-CNN). The frameworks differ in where a
small constant goes, which decides the level of RoIs whose size sits exactly on a boundary
(``112, 224, 448``) in float32:

===========  ==========================================================  =====================================
framework    formula (s = sqrt(area))                                    source
===========  ==========================================================  =====================================
torchvision  ``floor((4 + log2(s / 224)) + 1e-6)``                       ``ops/poolers.py`` LevelMapper
detectron2   ``floor(4 + log2(s / 224 + 1e-8))``                         ``modeling/poolers.py``
                                                                         ``assign_boxes_to_levels``
mmdet        ``floor(log2(s / 56 + 1e-6))`` (0-based; ``finest_scale``)  ``SingleRoIExtractor.map_roi_levels``
Detectron1   ``floor(4 + log2(s / 224 + 1e-6))``, ``+1`` box widths      ``detectron/modeling/FPN.py``
                                                                         ``map_rois_to_fpn_levels``
FPN paper    ``floor(4 + log2(s / 224))``                                Eq. 1
===========  ==========================================================  =====================================

torchvision's ``1e-6`` after the logarithm pulls a RoI of size ``224 * (1 - 7e-7)`` into level 4;
detectron2's ``1e-8`` inside is below float32's resolution near 1 and does nothing there. A RoI with a
negative width or height has a NaN size: every framework compares its level with each level index and
finds none, so its pooled features stay 0; :func:`assign_roi_levels` returns -1 for it.

torchvision infers the levels from the feature sizes (``_setup_scales``): each map's scale is
``2 ** round(log2(H_l / H_image))`` (float32, rounding halves to even) where ``H_image`` is the
largest image height of the batch, and ``k_min = -log2(scale of the first map)``:
:func:`infer_level_scales`. detectron2 and mmdet are given the strides.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from refdet import _checks
from refdet import conventions
from refdet.roi import _common
from refdet.roi.align import roi_align_backward, roi_align_forward

__all__ = [
    "assign_roi_levels",
    "infer_level_scales",
    "MultiScaleRoIAlignCache",
    "MultiScaleRoIAlignGrads",
    "multiscale_roi_align_forward",
    "multiscale_roi_align_backward",
    "multiscale_roi_align",
]

_LEVEL_PROFILES = {
    "torchvision": {"canonical_scale": 224.0, "canonical_level": 4, "eps_inside": 0.0, "eps_outside": 1e-6,
                    "plus_one": False},
    "detectron2": {"canonical_scale": 224.0, "canonical_level": 4, "eps_inside": 1e-8, "eps_outside": 0.0,
                   "plus_one": False},
    "mmdet": {"canonical_scale": 56.0, "canonical_level": None, "eps_inside": 1e-6, "eps_outside": 0.0,
              "plus_one": False},
    "caffe": {"canonical_scale": 224.0, "canonical_level": 4, "eps_inside": 1e-6, "eps_outside": 0.0,
              "plus_one": True},
    "onnx": {"canonical_scale": 224.0, "canonical_level": 4, "eps_inside": 0.0, "eps_outside": 1e-6,
             "plus_one": False},
    "paper": {"canonical_scale": 224.0, "canonical_level": 4, "eps_inside": 0.0, "eps_outside": 0.0,
              "plus_one": False},
}

_LEVEL_KNOBS = {
    "canonical_scale": conventions.number(
        "RoI size (sqrt of area) pooled from canonical_level; mmdet's finest_scale (56) when canonical_level is None",
        low=0.0, source="torchvision MultiScaleRoIAlign canonical_scale=224; detectron2 ROIPooler "
                        "canonical_box_size=224; mmdet SingleRoIExtractor finest_scale=56"),
    "canonical_level": conventions.integer(
        "level of a RoI of canonical_scale (k0); None: mmdet's rule floor(log2(s / finest_scale)) counted "
        "from the finest level", allow_none=True,
        source="FPN paper Eq. 1 k0=4; torchvision canonical_level=4; detectron2 canonical_level=4"),
    "eps_inside": conventions.number(
        "added to s / canonical_scale inside the log2", low=0.0,
        source="detectron2 poolers.py 1e-8; mmdet map_roi_levels 1e-6; Detectron1 map_rois_to_fpn_levels 1e-6"),
    "eps_outside": conventions.number(
        "added after the log2, before the floor", low=0.0, source="torchvision poolers.py LevelMapper eps=1e-6"),
    "plus_one": conventions.flag(
        "box widths x2 - x1 + 1 (the legacy pixel convention) in the area",
        source="Detectron1 utils/boxes.py boxes_area"),
}

conventions.register(
    "assign_roi_levels", _LEVEL_PROFILES, knobs=_LEVEL_KNOBS,
    doc="ONNX: torchvision's exported graph computes LevelMapper's formula. TF OD API: ops.fpn_feature_levels "
        "(normalised boxes, image_ratio) is not modelled, so the op raises for 'tf'.")

_MS_PROFILES = {
    "torchvision": dict(_LEVEL_PROFILES["torchvision"], sampling_ratio=2, aligned=False),
    "detectron2": dict(_LEVEL_PROFILES["detectron2"], sampling_ratio=0, aligned=True),
    "mmdet": dict(_LEVEL_PROFILES["mmdet"], sampling_ratio=0, aligned=True),
    "caffe": dict(_LEVEL_PROFILES["caffe"], sampling_ratio=2, aligned=False),
    "onnx": dict(_LEVEL_PROFILES["onnx"], sampling_ratio=2, aligned=False),
    "paper": dict(_LEVEL_PROFILES["paper"], sampling_ratio=2, aligned=False),
}

conventions.register(
    "multiscale_roi_align", _MS_PROFILES,
    knobs=dict(_LEVEL_KNOBS,
               sampling_ratio=conventions.integer(
                   "RoIAlign sample points per bin and axis (-1, 0: adaptive)", low=-1,
                   source="torchvision faster_rcnn.py MultiScaleRoIAlign(sampling_ratio=2); detectron2 "
                          "POOLER_SAMPLING_RATIO 0; mmdet RoIAlign sampling_ratio=0; Detectron1 FPN configs "
                          "ROI_XFORM_SAMPLING_RATIO 2"),
               aligned=conventions.flag(
                   "RoIAlign half-pixel shift",
                   source="torchvision aligned=False; detectron2 ROIAlignV2; mmcv RoIAlign aligned=True")),
    doc="The level rule of assign_roi_levels plus the RoIAlign settings of each framework's box head. "
        "ONNX: an exported torchvision model (RoiAlign output_half_pixel, sampling_ratio 2).",
)


def _boxes_xyxy(boxes, name="boxes"):
    """(N, 4) xyxy from an (N, 4) array, an (N, 5) RoI array or a list of (L_i, 4) arrays."""
    if isinstance(boxes, (list, tuple)) and len(boxes) and all(
            isinstance(b, np.ndarray) or (isinstance(b, (list, tuple)) and (len(b) == 0 or
                                                                             isinstance(b[0], (list, tuple))))
            for b in boxes):
        parts = [_checks.as_boxes(b, f"{name}[{i}]") for i, b in enumerate(boxes)]
        dt = np.result_type(*[p.dtype for p in parts])
        return np.concatenate([p.astype(dt) for p in parts], axis=0)
    arr = _checks.as_array(boxes, name)
    if arr.ndim == 2 and arr.shape[1] == 5:
        return _checks.as_boxes(arr[:, 1:], name)
    return _checks.as_boxes(arr, name)


def _resolve_levels(convention, **kw):
    if isinstance(convention, str) and convention == "tf":
        raise ValueError("`convention` 'tf' has no level-assignment table (the TF OD API's fpn_feature_levels "
                         "works on normalised boxes); pick 'torchvision', 'detectron2', 'mmdet', 'caffe', "
                         "'onnx' or 'paper'")
    return conventions.resolve("assign_roi_levels", convention, **kw)


@conventions.documented("assign_roi_levels")
def assign_roi_levels(boxes, *, min_level: int = 2, max_level: int = 5, convention="torchvision",
                      canonical_scale: Optional[float] = None, canonical_level: Optional[int] = None,
                      eps_inside: Optional[float] = None, eps_outside: Optional[float] = None,
                      plus_one: Optional[bool] = None) -> np.ndarray:
    """The pyramid level each RoI is pooled from, as an index counted from ``min_level``.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), or (N, 5) RoIs, or list of (L_i, 4) arrays (concatenated)
        ``x1, y1, x2, y2`` in image pixels. Float32 boxes are computed in float32 (area, sqrt,
        division, log2, additions in the framework's order), float64 in float64.
    min_level, max_level : int
        ``k_min`` and ``k_max``: the levels of the first and last feature map (P2-P5: 2, 5).
    convention : str or conventions.Profile
        Framework rule (table below); the keywords override single knobs.

    Returns
    -------
    ndarray of int64, shape (N,)
        ``clip(k, k_min, k_max) - k_min`` in ``[0, max_level - min_level]``; -1 for a RoI with a NaN
        size (negative area), which no framework pools. A zero-area RoI goes to ``min_level``
        (``log2(0) = -inf``).
    """
    s = _resolve_levels(convention, canonical_scale=canonical_scale, canonical_level=canonical_level,
                        eps_inside=eps_inside, eps_outside=eps_outside, plus_one=plus_one)
    # a level k is a stride of 2**k: float64 holds 2**k for |k| <= 1023 (larger ones would overflow int64)
    kmin = _checks.check_int(min_level, "min_level", low=-_MAX_LEVEL, high=_MAX_LEVEL)
    kmax = _checks.check_int(max_level, "max_level", low=-_MAX_LEVEL, high=_MAX_LEVEL)
    if kmax < kmin:
        raise ValueError(f"`max_level` must be >= `min_level`; got {kmax} < {kmin}")
    b = _boxes_xyxy(boxes)
    return _levels(b, kmin, kmax, s)


#: the largest |level|: a stride of 2**1023 is the largest power of two a float64 holds
_MAX_LEVEL = 1023


def _levels(b, kmin, kmax, s):
    dt = b.dtype
    if s.canonical_scale <= 0:
        raise ValueError(f"`canonical_scale` must be > 0; got {s.canonical_scale}")
    with np.errstate(invalid="ignore", divide="ignore"):
        w = b[:, 2] - b[:, 0]
        h = b[:, 3] - b[:, 1]
        if s.plus_one:
            w = w + dt.type(1)
            h = h + dt.type(1)
        size = np.sqrt(w * h)
        r = size / dt.type(s.canonical_scale)
        if s.eps_inside:
            r = r + dt.type(s.eps_inside)
        lg = np.log2(r)
        if s.canonical_level is not None:
            lg = dt.type(s.canonical_level) + lg
            lo, hi = kmin, kmax
        else:                                   # mmdet: already counted from the finest level
            lo, hi = 0, kmax - kmin
        if s.eps_outside:
            lg = lg + dt.type(s.eps_outside)
        k = np.floor(lg)
    nan = np.isnan(k)
    k = np.clip(np.where(nan, lo, k), lo, hi).astype(np.int64)
    if s.canonical_level is not None:
        k = k - kmin
    k[nan] = -1
    return k


def infer_level_scales(feature_sizes, image_sizes) -> Tuple[List[float], int, int]:
    """torchvision's ``_setup_scales``: each feature map's scale and the pyramid's level range.

    Parameters
    ----------
    feature_sizes : list of (H_l, W_l) (or feature arrays or shapes (B, C, H_l, W_l))
        One entry per pooled level, finest first.
    image_sizes : list of (h, w)
        The images' sizes before the backbone (after resizing, before padding).

    Returns
    -------
    scales : list of float
        ``2 ** round(log2(H_l / max_h))`` per level: the log computed in float32 on the float32 ratio,
        rounded half to even (``torch.tensor(approx_scale).log2().round()``); only the height is used.
    k_min, k_max : int
        ``int(-log2(scales[0]))`` and ``int(-log2(scales[-1]))``.
    """
    sizes = []
    if isinstance(feature_sizes, np.ndarray) and feature_sizes.ndim == 2:
        feature_sizes = list(feature_sizes)
    for i, f in enumerate(_checks.check_sequence(feature_sizes, "feature_sizes", "a list of (H, W) pairs or "
                                                                                 "feature arrays")):
        if isinstance(f, np.ndarray) and f.ndim == 4:
            f = f.shape[2:]
        elif hasattr(f, "__len__") and not isinstance(f, (str, bytes)) and len(f) == 4:
            f = tuple(f)[2:]                      # a (B, C, H, W) shape
        if not hasattr(f, "__len__") or len(f) != 2:
            raise ValueError(f"`feature_sizes[{i}]` must be an (H, W) pair or a (B, C, H, W) array")
        sizes.append((_checks.check_int(f[0], f"feature_sizes[{i}][0]", low=1),
                      _checks.check_int(f[1], f"feature_sizes[{i}][1]", low=1)))
    if not sizes:
        raise ValueError("`feature_sizes` must name at least one feature map")
    if isinstance(image_sizes, (str, bytes)) or not hasattr(image_sizes, "__len__") or len(image_sizes) == 0:
        raise ValueError("`image_sizes` must be a non-empty list of (h, w) pairs (torchvision: "
                         "'images list should not be empty')")
    imgs = [_checks.check_image_size(s, f"image_sizes[{i}]") for i, s in enumerate(image_sizes)]
    max_h = max(s[0] for s in imgs)
    scales = []
    for h, _w in sizes:
        approx = np.float32(float(h) / float(max_h))
        scales.append(float(2.0 ** float(np.round(np.log2(approx)))))
    kmin = int(-np.log2(np.float32(scales[0])))
    kmax = int(-np.log2(np.float32(scales[-1])))
    return scales, kmin, kmax


class MultiScaleRoIAlignCache(NamedTuple):
    """What :func:`multiscale_roi_align_backward` needs."""
    levels: np.ndarray             # (K,) int64 level index per RoI (-1: none)
    level_caches: tuple            # one RoIAlignCache (or None: no RoI) per level
    level_rows: tuple              # one int64 array of RoI rows per level
    feature_shapes: tuple
    output_shape: tuple            # (K, C, PH, PW)
    dtype: np.dtype


class MultiScaleRoIAlignGrads(NamedTuple):
    """Gradients of :func:`multiscale_roi_align_forward`: one array per feature level."""
    dfeatures: list


def _as_feature_list(features):
    if isinstance(features, np.ndarray):
        raise TypeError("`features` must be a list of (B, C, H_l, W_l) arrays, one per level (a dict's "
                        "values in featmap_names order); got one ndarray")
    if isinstance(features, dict):
        features = list(features.values())
    if not isinstance(features, (list, tuple)) or len(features) == 0:
        raise TypeError(f"`features` must be a non-empty list of (B, C, H_l, W_l) arrays; got "
                        f"{type(features).__name__}")
    fs = [_common.as_features(f, f"features[{i}]") for i, f in enumerate(features)]
    B, C = fs[0].shape[:2]
    for i, f in enumerate(fs):
        if f.shape[:2] != (B, C):
            raise ValueError(f"`features[{i}]` must have B = {B} and C = {C} like features[0]; got shape {f.shape}")
    dt = np.result_type(*[f.dtype for f in fs])
    return [f.astype(dt, copy=False) for f in fs]


@conventions.documented("multiscale_roi_align")
def multiscale_roi_align_forward(features: Sequence[np.ndarray], boxes, output_size=7,
                                 sampling_ratio: Optional[int] = None, *, image_sizes=None,
                                 scales: Optional[Sequence[float]] = None, min_level: Optional[int] = None,
                                 aligned: Optional[bool] = None, convention="torchvision",
                                 canonical_scale: Optional[float] = None, canonical_level: Optional[int] = None,
                                 eps_inside: Optional[float] = None, eps_outside: Optional[float] = None,
                                 plus_one: Optional[bool] = None
                                 ) -> Tuple[np.ndarray, MultiScaleRoIAlignCache]:
    """Multi-scale RoIAlign (torchvision ``ops.MultiScaleRoIAlign``, detectron2 ``ROIPooler``, mmdet
    ``SingleRoIExtractor``): assign each RoI a level, RoIAlign it there.

    Parameters
    ----------
    features : list of ndarray, each (B, C, H_l, W_l)
        The pooled levels, finest first (torchvision: ``featmap_names`` ``['0', '1', '2', '3']`` = P2-P5).
    boxes : list of B arrays (L_i, 4), or ndarray (K, 5)
        Boxes in image pixels, per image (or RoIs with their batch index).
    output_size : int or (int, int)
    sampling_ratio : int, optional
        Default: the convention's (torchvision 2).
    image_sizes : list of (h, w), optional
        Needed when ``scales`` is None: the scales are then inferred as torchvision does
        (:func:`infer_level_scales`).
    scales : list of float, optional
        ``spatial_scale`` per level (``1 / stride``; detectron2 and mmdet are given them).
    min_level : int, optional
        The level of ``features[0]``; default ``-log2(scales[0])``.
    aligned : bool, optional
        Default: the convention's.
    convention : str or conventions.Profile
        Level rule and RoIAlign settings (table below); the level keywords override single knobs.

    Returns
    -------
    out : ndarray, shape (K, C, PH, PW)
        RoIs in the order of ``boxes``; a RoI with no level (NaN size) is 0. With a single level every
        RoI is pooled from it (torchvision skips the level mapper).
    cache : MultiScaleRoIAlignCache
        ``cache.levels`` holds the level index of every RoI.
    """
    s = conventions.resolve("multiscale_roi_align", convention, canonical_scale=canonical_scale,
                            canonical_level=canonical_level, eps_inside=eps_inside, eps_outside=eps_outside,
                            plus_one=plus_one, sampling_ratio=sampling_ratio, aligned=aligned)
    fs = _as_feature_list(features)
    output_size = _common.check_output_size(output_size)
    B, C = fs[0].shape[:2]
    dt = fs[0].dtype
    rois, batch = _common.as_rois(boxes, B, dt)
    if scales is None:
        if image_sizes is None:
            raise ValueError("pass `scales` (spatial_scale per level) or `image_sizes` (to infer them as "
                             "torchvision does)")
        scales, kmin, _ = infer_level_scales([f.shape[2:] for f in fs], image_sizes)
    else:
        if isinstance(scales, (str, bytes)) or not hasattr(scales, "__len__") or len(scales) != len(fs):
            raise ValueError(f"`scales` must give one spatial_scale per feature level ({len(fs)})")
        scales = [_common.check_spatial_scale(v, f"scales[{i}]") for i, v in enumerate(scales)]
        kmin = int(round(-np.log2(scales[0])))
    if min_level is not None:
        kmin = _checks.check_int(min_level, "min_level", low=-_MAX_LEVEL, high=_MAX_LEVEL)
    kmax = kmin + len(fs) - 1
    K = len(rois)
    if len(fs) == 1:
        levels = np.zeros(K, dtype=np.int64)
    else:
        # the level knobs of the caller's profile as they are: passed to resolve as overrides, a None
        # (mmdet's canonical_level) would mean "keep the named profile's value" and be lost
        levels = _levels(rois[:, 1:], kmin, kmax, conventions.Profile(
            "assign_roi_levels", s.name, {k: s[k] for k in _LEVEL_KNOBS}, s.overridden & set(_LEVEL_KNOBS)))
    PH, PW = output_size
    _common.check_outputs(K, C, PH, PW, dt.itemsize)
    out = np.zeros((K, C, PH, PW), dtype=dt)
    caches, rows_per_level = [], []
    for lvl, (f, sc) in enumerate(zip(fs, scales)):
        rows = np.flatnonzero(levels == lvl)
        rows_per_level.append(rows)
        if len(rows) == 0:
            caches.append(None)
            continue
        try:
            y, c = roi_align_forward(f, rois[rows], output_size, sc, s.sampling_ratio, s.aligned, convention=s.name)
        except ValueError as exc:  # say which of our arguments chose the level's scale
            raise ValueError(f"{exc} (the RoIs of level {lvl}: `boxes`, `scales[{lvl}]` = {sc})") from exc
        out[rows] = y
        caches.append(c)
    cache = MultiScaleRoIAlignCache(levels, tuple(caches), tuple(rows_per_level), tuple(f.shape for f in fs),
                                    (K, C, PH, PW), dt)
    return out, cache


def multiscale_roi_align_backward(dout: np.ndarray, cache: MultiScaleRoIAlignCache) -> MultiScaleRoIAlignGrads:
    """Gradients of :func:`multiscale_roi_align_forward`: each level's RoIAlign backward on its RoIs.

    Returns
    -------
    MultiScaleRoIAlignGrads
        ``dfeatures``: a list with one (B, C, H_l, W_l) array per level.
    """
    cache = _common.check_cache(cache, MultiScaleRoIAlignCache)
    d = _common.as_upstream(dout, cache.output_shape, cache.dtype)
    grads = []
    for shape, c, rows in zip(cache.feature_shapes, cache.level_caches, cache.level_rows):
        if c is None:
            grads.append(np.zeros(shape, dtype=cache.dtype))
        else:
            grads.append(roi_align_backward(d[rows], c).dfeatures)
    return MultiScaleRoIAlignGrads(grads)


@conventions.documented("multiscale_roi_align")
def multiscale_roi_align(features: Sequence[np.ndarray], boxes, output_size=7, sampling_ratio: Optional[int] = None,
                         *, image_sizes=None, scales: Optional[Sequence[float]] = None,
                         min_level: Optional[int] = None, aligned: Optional[bool] = None, convention="torchvision",
                         canonical_scale: Optional[float] = None, canonical_level: Optional[int] = None,
                         eps_inside: Optional[float] = None, eps_outside: Optional[float] = None,
                         plus_one: Optional[bool] = None) -> np.ndarray:
    """Multi-scale RoIAlign: :func:`multiscale_roi_align_forward` without the cache (same arguments).

    Returns
    -------
    ndarray, shape (K, C, PH, PW)
    """
    return multiscale_roi_align_forward(features, boxes, output_size, sampling_ratio, image_sizes=image_sizes,
                                        scales=scales, min_level=min_level, aligned=aligned, convention=convention,
                                        canonical_scale=canonical_scale, canonical_level=canonical_level,
                                        eps_inside=eps_inside, eps_outside=eps_outside, plus_one=plus_one)[0]
