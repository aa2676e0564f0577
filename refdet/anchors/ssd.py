"""SSD default boxes (priors): per level, a few (w, h) shapes centred on every cell.

The paper (Liu et al. 2016, section 2.2): level ``k`` of ``m`` has scale
``s_k = s_min + (s_max - s_min) * k / (m - 1)``, boxes ``s_k * sqrt(a)`` by ``s_k / sqrt(a)`` per
aspect ratio ``a = w / h`` and an extra square ``sqrt(s_k * s_{k+1})``, centred at
``((j + 0.5) / f_k, (i + 0.5) / f_k)``. The frameworks' layouts, clipping and size rules are knobs
(table generated from the registry). The readable version is
:func:`refdet.reference.anchors.ssd_default_boxes`.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import DTypeLike

from refdet import _checks
from refdet import conventions

__all__ = ["SSD_LAYOUTS", "ssd_sizes_from_ratios", "ssd_default_boxes"]

Convention = Union[str, conventions.Profile]

#: Default-box layouts per cell: torchvision/Caffe/mmdet pairs, or TF's one box per listed ratio.
SSD_LAYOUTS = ("pairs", "tf")

conventions.register(
    "ssd_default_boxes",
    {
        "torchvision": {"layout": "pairs", "clip_mode": "wh", "reduce_lowest": False, "skip_unit_ratio": False,
                        "size_rule": "linear", "size_reference": "image"},
        "paper": {"layout": "pairs", "clip_mode": "wh", "reduce_lowest": False, "skip_unit_ratio": False,
                  "size_rule": "linear", "size_reference": "image"},
        "caffe": {"layout": "pairs", "clip_mode": "corners", "reduce_lowest": False, "skip_unit_ratio": True,
                  "size_rule": "percent", "size_reference": "image"},
        "mmdet": {"layout": "pairs", "clip_mode": "corners", "reduce_lowest": False, "skip_unit_ratio": False,
                  "size_rule": "percent", "size_reference": "image"},
        "tf": {"layout": "tf", "clip_mode": "corners", "reduce_lowest": True, "skip_unit_ratio": False,
               "size_rule": "linear", "size_reference": "min_side"},
    },
    knobs={
        "layout": conventions.choice(
            SSD_LAYOUTS, "'pairs': per cell [s, s], [s', s'], then (wide, tall) for each ratio; 'tf': one box "
                         "per listed ratio, then the interpolated sqrt(s * s_next) box",
            source="torchvision anchor_utils.py DefaultBoxGenerator._generate_wh_pairs; Caffe "
                   "prior_box_layer.cpp (flip); TF multiple_grid_anchor_generator.py create_ssd_anchors"),
        "clip_mode": conventions.choice(
            ("wh", "corners"), "with clip=True: 'wh' clamps the relative (w, h) to [0, 1]; 'corners' "
                               "clips the normalised corners to [0, 1]",
            source="torchvision DefaultBoxGenerator (clamp of wh); Caffe PriorBox clip; TF clip_window"),
        "reduce_lowest": conventions.flag(
            "layer 0 gets (0.1, 1), (s, 2), (s, 0.5) only",
            source="TF create_ssd_anchors reduce_boxes_in_lowest_layer"),
        "skip_unit_ratio": conventions.flag(
            "skip a listed ratio equal to 1 (the square is already there)",
            source="Caffe prior_box_layer.cpp LayerSetUp (already_exist)"),
        "size_rule": conventions.choice(
            ("linear", "percent"), "scales=None: 'linear' s_k = min + (max - min) * k / (m - 1) plus 1.0; "
                                   "'percent' the integer-percent pixel sizes",
            source="SSD paper eq. 4, torchvision DefaultBoxGenerator, TF; Caffe examples/ssd/ssd_pascal.py "
                   "and mmdet SSDAnchorGenerator (percent)"),
        "size_reference": conventions.choice(
            ("image", "min_side"), "'image': relative w times W, h times H; 'min_side': both times min(H, W)",
            source="torchvision DefaultBoxGenerator (image); TF create_ssd_anchors (min_side)"),
    },
    doc="torchvision DefaultBoxGenerator (anchor_utils.py 136-268); SSD paper section 2.2; Caffe PriorBox "
        "(weiliu89/caffe prior_box_layer.cpp, ssd_pascal.py); mmdet SSDAnchorGenerator (498-640); TF "
        "create_ssd_anchors (multiple_grid_anchor_generator.py). Caffe/mmdet/TF clip only when asked "
        "(PriorBox clip, TF clip_window); pass clip=False for their defaults.",
)


def ssd_sizes_from_ratios(input_size: int, num_levels: int, min_ratio: float = 0.2,
                          max_ratio: float = 0.9) -> Tuple[List[int], List[int]]:
    """Caffe SSD's (``ssd_pascal.py``) and mmdet's ``SSDAnchorGenerator`` pixel min/max sizes.

    ``lo = int(100 * min_ratio)``, ``hi = int(100 * max_ratio)``, ``step = (hi - lo) // (L - 2)``; for
    ``r in range(lo, hi + 1, step)``: ``min = int(D * r / 100)``, ``max = int(D * (r + step) / 100)``;
    the first (conv4_3) level is prepended with ``(lo // 2)%`` and ``lo%`` of ``D``.

    SSD300 VOC (0.2, 0.9): min ``[30, 60, 111, 162, 213, 264]``, max ``[60, 111, 162, 213, 264, 315]``.
    SSD300 COCO (0.15, 0.9): min ``[21, 45, 99, 153, 207, 261]``, max ``[45, 99, 153, 207, 261, 315]``
    (= torchvision's SSD300 scales times 300).

    Returns
    -------
    (min_sizes, max_sizes) : two lists of ``num_levels`` ints
    """
    d = _checks.check_int(input_size, "input_size", low=1)
    L = _checks.check_int(num_levels, "num_levels", low=3)
    lo_r = _checks.check_probability(min_ratio, "min_ratio")
    hi_r = _checks.check_probability(max_ratio, "max_ratio")
    lo, hi = int(lo_r * 100), int(hi_r * 100)          # int() as mmdet does: int(0.29*100) = 28
    step = (hi - lo) // (L - 2)
    if step <= 0:
        raise ValueError(f"`num_levels` = {L} needs `max_ratio` - `min_ratio` of at least {L - 2} percent (one "
                         f"percent step per level); got min_ratio={min_ratio}, max_ratio={max_ratio}")
    mins = [d * r // 100 for r in range(lo, hi + 1, step)]
    maxs = [d * (r + step) // 100 for r in range(lo, hi + 1, step)]
    if len(mins) != L - 1:
        raise ValueError(f"the percent rule gives {len(mins) + 1} levels for ratios ({min_ratio}, {max_ratio}), "
                         f"not `num_levels` = {L}")
    return [d * (lo // 2) // 100] + mins, [d * lo // 100] + maxs


def _ssd_specs(k, s_k, s_next, ratios_k, s, interpolated_ratio):
    """(A_k, 2) float64 relative (w, h) pairs of level k; Python float math like torchvision.

    ``s_next`` is the next level's scale (None: no interpolated square, Caffe without max sizes).
    """
    if s["layout"] == "pairs":
        pairs = [[s_k, s_k]]
        if s_next is not None:
            s_prime = math.sqrt(s_k * s_next)
            pairs.append([s_prime, s_prime])
        for ar in ratios_k:
            # Caffe: fabs(ar - 1) < 1e-6; |ar - 1| is never exactly 1e-6 (not a multiple of 2**-53), so <= is the same
            if s["skip_unit_ratio"] and np.isclose(ar, 1.0, rtol=0.0, atol=1e-6):
                continue
            sq = math.sqrt(ar)
            w, h = s_k * sq, s_k / sq
            pairs.extend([[w, h], [h, w]])                 # wide first, then tall
        return pairs
    # TF create_ssd_anchors: one box per (scale, ratio) spec, ratio = w / h
    if k == 0 and s["reduce_lowest"]:
        specs = [(0.1, 1.0), (s_k, 2.0), (s_k, 0.5)]
    else:
        specs = [(s_k, ar) for ar in ratios_k]
        if interpolated_ratio > 0 and s_next is not None:
            specs.append((math.sqrt(s_k * s_next), interpolated_ratio))
    return [[sc * math.sqrt(ar), sc / math.sqrt(ar)] for sc, ar in specs]


@conventions.documented("ssd_default_boxes")
def ssd_default_boxes(image_size: Tuple[int, int], feature_sizes: Sequence, *,
                      scales: Optional[Sequence[float]] = None, min_ratio: float = 0.2, max_ratio: float = 0.9,
                      aspect_ratios: Sequence, steps: Optional[Sequence[float]] = None, clip: bool = True,
                      convention: Convention = "torchvision", layout: Optional[str] = None,
                      clip_mode: Optional[str] = None, reduce_lowest: Optional[bool] = None,
                      skip_unit_ratio: Optional[bool] = None, size_rule: Optional[str] = None,
                      size_reference: Optional[str] = None, min_sizes: Optional[Sequence[float]] = None,
                      max_sizes: Optional[Sequence[float]] = None, interpolated_ratio: float = 1.0,
                      offset: float = 0.5, normalized: bool = False, box_format: str = "xyxy",
                      dtype: DTypeLike = np.float64, max_elements: Optional[int] = None) -> np.ndarray:
    """SSD default boxes (priors) for every feature map, in pixels.

    Reference: :func:`refdet.reference.anchors.ssd_default_boxes` (the per-level loops of
    torchvision's ``DefaultBoxGenerator``); tests hold the two bit-equal under every convention.

    The paper (Liu et al. 2016, §2.2): level ``k`` of ``m`` has scale
    ``s_k = s_min + (s_max - s_min) * k / (m - 1)`` (relative to the image), boxes of width
    ``s_k * sqrt(a)`` and height ``s_k / sqrt(a)`` for each aspect ratio ``a`` (``w / h``), an extra
    square of side ``s'_k = sqrt(s_k * s_{k+1})``, centred at ``((j + 0.5) / f_k, (i + 0.5) / f_k)``.

    With the torchvision profile (``DefaultBoxGenerator``): per cell ``[s_k, s_k]``,
    ``[s'_k, s'_k]``, then for each listed ratio ``a`` the wide box and the tall box, so
    ``A_k = 2 + 2 * len(aspect_ratios[k])``; ``scales`` defaults to the linear rule plus an appended
    1.0 (for the last ``s'``); ``steps[k]`` (pixels) replaces ``f_k`` by ``image / steps[k]``;
    ``clip`` clamps the relative (w, h) to [0, 1] (not the corners); output
    ``(c -+ wh/2) * (W, H)``. SSD300: maps 38, 19, 10, 5, 3, 1, ratios ``[[2], [2, 3], [2, 3],
    [2, 3], [2], [2]]``, scales ``[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]``, steps
    ``[8, 16, 32, 64, 100, 300]`` -> 8732 boxes.

    Parameters
    ----------
    image_size : (H, W)
    feature_sizes : list of L ints or (H_k, W_k) pairs
    scales : list of L + 1 (or L: 1.0 is appended, as TF does) floats, optional
        Relative scales. Default: ``size_rule``.
    min_ratio, max_ratio : float
        ``s_min``, ``s_max`` of the linear rule (paper 0.2, 0.9; torchvision's class default
        ``min_ratio`` is 0.15, SSDlite uses 0.2, 0.95); percent rule: see :func:`ssd_sizes_from_ratios`.
        With one level the linear rule gives ``[min_ratio, max_ratio]`` (torchvision).
    aspect_ratios : list of L lists (or one flat list for every level)
        ``w / h``. Layout ``"pairs"``: each ``a`` adds the ``a`` and ``1/a`` boxes (Caffe ``flip``).
        Layout ``"tf"``: each listed ratio is one box (TF default ``(1, 2, 3, 1/2, 1/3)``).
    steps : list of L floats, optional
        Pixels between cell centres (torchvision ``steps``, Caffe ``step``); default ``image / f_k``.
    clip : bool
        Clip (``clip_mode``) the boxes.
    convention : {"torchvision", "paper", "caffe", "mmdet", "tf"}
    layout, clip_mode, reduce_lowest, skip_unit_ratio, size_rule, size_reference : optional
        Knobs, see ``refdet.conventions.describe("ssd_default_boxes")``.
    min_sizes, max_sizes : list of L floats, optional
        Caffe ``PriorBox`` pixel sizes (replace ``scales``): squares of ``min`` and ``sqrt(min*max)``
        pixels, ratio boxes ``min * sqrt(a)`` by ``min / sqrt(a)``.
    interpolated_ratio : float
        TF layout: the ratio of the extra ``sqrt(s_k s_{k+1})`` box (0 drops it).
    offset : float
        Centre of cell ``i`` at ``(i + offset) / f_k`` (0.5 everywhere).
    normalized : bool
        Return coordinates in [0, 1] units of the image instead of pixels (TF, Caffe priors).
    box_format : {"xyxy", "yxyx"}
        ``"yxyx"`` for TF's ``[ymin, xmin, ymax, xmax]``.
    dtype : float64 or float32
        float32 reproduces ``DefaultBoxGenerator`` bit for bit.
    max_elements : int, optional
        Cap on the elements of the result (``sum_k H_k * W_k * A_k * 4``), default
        :data:`refdet._checks.MAX_ELEMENTS` (2**28): more is a ValueError naming ``feature_sizes``
        before the level that would pass it is allocated.

    Returns
    -------
    ndarray, shape (sum_k H_k * W_k * A_k, 4)
        Order ``(level, y, x, a)``.

    Examples
    --------
    SSD300 as torchvision builds it (``ssd300_vgg16``): 8732 boxes; the first cell's four boxes are
    the 21-pixel square, the sqrt(0.07 * 0.15) square and the 2:1 and 1:2 boxes, centred at (4, 4).

    >>> boxes = ssd_default_boxes((300, 300), [38, 19, 10, 5, 3, 1],
    ...                           aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    ...                           steps=[8, 16, 32, 64, 100, 300],
    ...                           scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05])
    >>> boxes.shape
    (8732, 4)
    >>> boxes[:4].round(3)
    array([[ -6.5  ,  -6.5  ,  14.5  ,  14.5  ],
           [-11.37 , -11.37 ,  19.37 ,  19.37 ],
           [-10.849,  -3.425,  18.849,  11.425],
           [ -3.425, -10.849,  11.425,  18.849]])
    """
    s = conventions.resolve("ssd_default_boxes", convention, layout=layout, clip_mode=clip_mode,
                            reduce_lowest=reduce_lowest, skip_unit_ratio=skip_unit_ratio,
                            size_rule=size_rule, size_reference=size_reference)
    _checks.check_choice(box_format, "box_format", ("xyxy", "yxyx"))
    img_h, img_w = _checks.check_image_size(image_size)
    fs = _checks.as_feature_sizes(feature_sizes)
    L = len(fs)
    dt = _checks.check_float_dtype(dtype)
    off = _checks.check_real(offset, "offset")
    interp = _checks.check_real(interpolated_ratio, "interpolated_ratio")
    if not isinstance(clip, (bool, np.bool_)):
        raise TypeError(f"`clip` must be a bool; got {clip!r}")
    normalized = _checks.check_bool(normalized, "normalized")
    # checked even when `scales` makes them unused; a ratio above 1 (a box larger than the image) is
    # allowed, as torchvision's DefaultBoxGenerator allows it (clip=True cuts it back)
    min_r = _checks.check_real(min_ratio, "min_ratio")
    max_r = _checks.check_real(max_ratio, "max_ratio")

    ratios = _ssd_ratios(aspect_ratios, L)
    ratios = [r.tolist() for r in ratios]

    if steps is not None:
        stp = _checks.as_positive_vector(steps, "steps")
        if len(stp) != L:
            raise ValueError(f"`steps` must have one entry per feature map ({L}); got {len(stp)}")

    # --- scales: relative per axis (sx for widths, sy for heights), or absolute pixels -------------
    pixel_sizes = min_sizes is not None
    if not pixel_sizes and scales is None and s["size_rule"] == "percent":
        lo = _checks.check_probability(min_ratio, "min_ratio")
        hi = _checks.check_probability(max_ratio, "max_ratio")
        min_sizes, max_sizes = ssd_sizes_from_ratios(int(min(img_h, img_w)), L, lo, hi)
        pixel_sizes = True
    if pixel_sizes:
        mn = _checks.as_positive_vector(min_sizes, "min_sizes")
        if len(mn) != L:
            raise ValueError(f"`min_sizes` must have one entry per feature map ({L}); got {len(mn)}")
        if max_sizes is not None:
            mx = _checks.as_positive_vector(max_sizes, "max_sizes")
            if len(mx) != L:
                raise ValueError(f"`max_sizes` must have one entry per feature map ({L}); got {len(mx)}")
            # s'_k = sqrt(min_k * max_k): written as the scale list's "next" entry per level
            sc = [(float(a), float(b)) for a, b in zip(mn, mx)]
        else:
            sc = [(float(a), None) for a in mn]
    else:
        if scales is not None:
            sv = _checks.as_positive_vector(scales, "scales").tolist()
            if len(sv) == L:
                sv = sv + [1.0]                       # TF: `scales += [1.0]`, used only for the last s'
            elif len(sv) != L + 1:
                raise ValueError(f"`scales` must have {L + 1} (or {L}) entries for {L} feature maps; "
                                 f"got {len(sv)}")
        else:
            lo, hi = min_r, max_r
            if L > 1:
                sv = [lo + (hi - lo) * k / (L - 1.0) for k in range(L)] + [1.0]
            else:
                sv = [lo, hi]
        sc = [(sv[k], sv[k + 1]) for k in range(L)]

    parts = []
    total = 0
    H, W = dt.type(img_h), dt.type(img_w)
    for k, (fh, fw) in enumerate(fs):
        s_k, s_next = sc[k]
        pairs = _ssd_specs(k, s_k, s_next, ratios[k], s, interp)
        wh64 = np.array(pairs).reshape(len(pairs), 2)        # Python floats: float64 (0 pairs: shape (0, 2))
        if pixel_sizes:
            wh64 = wh64 / np.array([float(img_w), float(img_h)])          # Caffe: box_width / img_width
        elif s["size_reference"] == "min_side":
            m = float(min(img_h, img_w))
            wh64 = wh64 * np.array([m / float(img_w), m / float(img_h)])
        wh = wh64.astype(dt)                          # torchvision: torch.as_tensor(pairs, float32)
        if clip and s["clip_mode"] == "wh":
            wh = np.minimum(wh, 1)                    # clamp(0, 1): w, h > 0, so only the upper bound acts
        if steps is not None:
            x_f, y_f = float(img_w) / float(stp[k]), float(img_h) / float(stp[k])
        else:
            x_f, y_f = float(fw), float(fh)
        total += fh * fw * len(wh) * 4
        _checks.check_allocation(total, dt.itemsize, f"default boxes x 4 coordinates up to level {k}",
                                 name="feature_sizes", limit=max_elements)
        # torchvision: ((arange(f) + 0.5) / x_f_k).to(float32): float32 arithmetic, x_f_k rounded first
        cx = (np.arange(fw, dtype=dt) + dt.type(off)) / dt.type(x_f)     # (W_k,)
        cy = (np.arange(fh, dtype=dt) + dt.type(off)) / dt.type(y_f)     # (H_k,)
        A = len(wh)
        half = dt.type(0.5) * wh                                        # (A, 2)
        box = np.empty((fh, fw, A, 4), dtype=dt)
        np.subtract(cx[None, :, None], half[None, None, :, 0], out=box[..., 0])
        np.subtract(cy[:, None, None], half[None, None, :, 1], out=box[..., 1])
        np.add(cx[None, :, None], half[None, None, :, 0], out=box[..., 2])
        np.add(cy[:, None, None], half[None, None, :, 1], out=box[..., 3])
        box = box.reshape(fh * fw * A, 4)
        if clip and s["clip_mode"] == "corners":
            box = np.clip(box, 0, 1)
        if not normalized:
            box = box * np.array([W, H, W, H])                          # torchvision: (c -+ wh/2) * [W, H]
        parts.append(box)
    out = np.concatenate(parts)                       # L >= 1: as_feature_sizes refuses an empty list
    if box_format == "yxyx":
        out = out[:, [1, 0, 3, 2]]
    return out


def _ssd_ratios(x, L):
    """SSD aspect ratios: L per-level lists (a level may list none) or one flat list for every level."""
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__"):
        raise TypeError(f"`aspect_ratios` must be a list of per-level lists of numbers; got {type(x).__name__}")
    nested = len(x) > 0 and all(hasattr(v, "__len__") and not isinstance(v, (str, bytes)) for v in x)
    if nested:
        if len(x) != L:
            raise ValueError(f"`aspect_ratios` must have one entry per feature map ({L}); got {len(x)}")
        return [_checks.as_positive_vector(v, f"aspect_ratios[{i}]", allow_empty=True) for i, v in enumerate(x)]
    return [_checks.as_positive_vector(x, "aspect_ratios", allow_empty=True)] * L
