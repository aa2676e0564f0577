"""SSD's ``PriorBox`` and ``DetectionOutput`` layers as OpenCV dnn runs them, reproduced in float32.

OpenCV implements both Caffe-SSD layers itself (``modules/dnn/src/layers/prior_box_layer.cpp``,
``detection_output_layer.cpp``, with the NMS of ``modules/dnn/src/nms.inl.hpp``). OpenCV 4.x reaches
them through ``readNetFromCaffe``; OpenCV 5.x has no Caffe importer, and the layers are reached
through the ONNX importer, which builds any node whose ``op_type`` is a registered layer name
(``PriorBox``, ``DetectionOutput``) with the node's attributes as the layer's parameters (the
prototxt fields). ``tests/test_opencv_ssd.py`` checks both functions here against ``cv2`` that way.

Where OpenCV agrees and differs with Caffe (weiliu89/caffe ``src/caffe/layers/prior_box_layer.cpp``,
``detection_output_layer.cpp``, ``src/caffe/util/bbox_util.cpp``) and with refdet's
:func:`refdet.anchors.ssd_default_boxes` under ``convention="caffe"``:

PriorBox
    * Same boxes per cell, in Caffe's order: for each ``min_size`` the ``min x min`` square, the
      ``sqrt(min * max)`` square, then ``min * sqrt(ar) x min / sqrt(ar)`` per aspect ratio
      (``PriorBoxLayerImpl`` constructor: ``_boxWidths.push_back``). The ratio list is Caffe's: a
      ratio within 1e-6 of 1 or of an earlier entry (flipped ones included) is dropped, ``flip`` adds
      ``1 / ar`` right after ``ar`` (``getAspectRatios``). refdet's ``"caffe"`` profile drops the unit
      ratio (``skip_unit_ratio``) but neither dedupes repeated ratios nor honours ``flip=False``.
    * **clip defaults to true** in OpenCV (``_clip = getParameter<bool>(params, "clip", 0, false,
      true)``); Caffe's ``PriorBoxParameter.clip`` defaults to false. A prototxt without ``clip``
      gives clipped priors in OpenCV, unclipped in Caffe.
    * ``variance`` is required (``CV_Assert(varianceParameterRetrieved)``; Caffe defaults to 0.1);
      each value must be > 0; one value or four.
    * Arithmetic all in float32: ``(center_x - width * 0.5f) / imgWidth`` (``addPrior``) with
      ``center_x = (w + offset) * step`` and ``step = (float)imageWidth / layerWidth`` when not given.
      Caffe computes ``(center_x - box_width / 2.) / img_width`` in double and rounds once, refdet
      computes ``(j + offset) / (W / step)`` then scales: the three agree to a few float32 ulps
      (``tests/test_opencv_ssd.py`` holds refdet within 1e-6 of this function), not bit for bit.
    * OpenCV-only parameters: ``width``/``height`` lists (explicit box sizes, like
      PriorBoxClustered; no ``min_size``/``max_size``/``aspect_ratio`` then), ``offset_h``/``offset_w``
      (every box repeated at each of two offsets), ``normalized_bbox=false`` (pixel corners with
      ``xmax = cx + w/2 - 1``, the legacy ``+1`` convention; ``clip`` then still clamps to [0, 1]).
      ``img_size``/``img_h``/``img_w`` are Caffe's; OpenCV ignores them and reads the image size
      from the second input (checked in the tests).
    * Output ``(1, 2, H * W * P * 4)``: row 0 the corners, row 1 the variances (this function returns
      the ``(2, H * W * P * 4)`` part, like :func:`refdet.runtimes.openvino.prior_box`).

DetectionOutput
    * Decoding (``DecodeBBox``): CORNER adds ``variance * loc`` to the prior corners; CENTER_SIZE
      takes the prior centre as ``xmin + width * .5`` where Caffe's ``bbox_util.cpp`` takes
      ``(xmin + xmax) / 2.`` (float32 results may differ by an ulp), adds ``+1`` to the prior width
      when ``normalized_bbox`` is false (Caffe never does) and accepts zero-width priors (Caffe
      ``CHECK_GT(prior_width, 0)`` aborts). ``exp`` is C's ``expf`` (glibc's algorithm reproduced: it
      is not correctly rounded, and ``float32(exp(double))`` differs in about 6 of 10^4 arguments).
    * Box size ``BBoxSize``: 0 when ``xmax < xmin`` or ``ymax < ymin``, else ``w * h``
      (``normalized_bbox``) or ``(w + 1) * (h + 1)``; overlap ``JaccardOverlap``: 0 unless the
      intersection's size is > 0, else ``inter / (size1 + size2 - inter)``, float32.
    * Per class (the background label skipped) the NMS of ``NMSFast_``: scores ``> confidence_threshold``
      (strict), ``std::stable_sort`` by descending score (ties: lower prior index first), ``top_k``
      candidates, then greedy with ``keep = overlap <= nms_threshold`` (a box at exactly the threshold
      survives). With a single non-background class NMS stops after ``keep_top_k`` boxes.
    * ``keep_top_k`` over all classes of an image when more boxes survive: the best by score.
    * **Output order**: OpenCV sorts every image's detections by descending score
      (``outputDetections_``: ``std::sort`` unless ``group_by_classes``); Caffe writes them class by
      class (label ascending, each class in NMS order), which ``group_by_classes=True`` reproduces.
      ``std::sort`` and ``std::partial_sort`` are not stable: among equal scores the order (and, at
      the ``keep_top_k`` cut, the choice) is libstdc++'s. It equals a stable sort when at most 16
      items are sorted and ``keep_top_k * 8`` exceeds the surviving count (insertion sort); this
      function always sorts stably.
    * Output ``(1, 1, B * keep_top_k, 7)`` rows ``[image, label, score, xmin, ymin, xmax, ymax]``,
      images one after the other, zero rows after the last detection.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from refdet import _checks

__all__ = ["prior_box", "detection_output", "DetectionOutputResult", "CODE_TYPES"]

_F32 = np.float32
#: DetectionOutput ``code_type`` values (``getCodeType``: any other string is CORNER in OpenCV; refused here)
CODE_TYPES = ("CORNER", "CENTER_SIZE")


def _bad(attr, msg):
    return ValueError(f"`{attr}`: {msg} (OpenCV dnn)")


def _floats(v, name, *, positive=False):
    """A flat list of finite floats rounded to float32 (OpenCV's ``DictValue::get<float>``)."""
    arr = np.atleast_1d(_checks.as_array(v, name))
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must hold numbers; got booleans")
    if arr.ndim != 1:
        raise _bad(name, f"must be a flat list of numbers; got shape {arr.shape}")
    arr = arr.astype(np.float64)
    _checks.check_finite(arr, name)
    f = arr.astype(np.float32)
    if positive and f.size and (f <= 0).any():
        raise _bad(name, f"every value must be > 0 (CV_Assert); got {float(f[f <= 0][0])}")
    return f


def _hw(shape, name):
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 2:
        raise TypeError(f"`{name}` must be a pair (H, W) of ints; got {shape!r}")
    return tuple(_checks.check_int(v, f"{name}[{i}]", low=1) for i, v in enumerate(shape))


def _aspect_ratios(ars, flip):
    """``getAspectRatios``: drop |ar - 1| < 1e-6 (float) and |ar - earlier| < 1e-6; ``1./ar`` after each."""
    out = []
    for a in ars:
        exists = abs(a - _F32(1)) < _F32(1e-6)
        exists = exists or any(abs(float(a) - float(e)) < 1e-6 for e in out)
        if not exists:
            out.append(_F32(a))
            if flip:
                out.append(_F32(1.0 / float(a)))                 # 1./aspectRatio in double, stored as float
    return out


def prior_box(layer_shape: Tuple[int, int], image_shape: Tuple[int, int], *, variance: Sequence[float],
              min_size: Sequence[float] = (), max_size: Sequence[float] = (), aspect_ratio: Sequence[float] = (),
              flip: bool = True, clip: bool = True, step: Optional[float] = None, step_h: Optional[float] = None,
              step_w: Optional[float] = None, offset: Optional[float] = None, offset_h: Sequence[float] = (),
              offset_w: Sequence[float] = (), width: Sequence[float] = (), height: Sequence[float] = (),
              normalized_bbox: bool = True, max_elements: Optional[int] = None) -> np.ndarray:
    """OpenCV dnn's ``PriorBox`` layer (Caffe SSD's default boxes), float32, bit for bit.

    Per cell ``(h, w)`` (row-major), per box size ``i``, per offset ``j``: the prior centred at
    ``((w + offset_w[j]) * step_w, (h + offset_h[j]) * step_h)``. Box sizes: ``width``/``height``
    when given, else for each ``min_size[k]`` the square ``min``, the square ``sqrt(min * max[k])``
    (with ``max_size``), then ``min * sqrt(ar)`` by ``min / sqrt(ar)`` for each aspect ratio (see the
    module docstring for the ratio list and how Caffe and refdet differ).

    Parameters
    ----------
    layer_shape : (H, W)
        The feature map's size (OpenCV's first input).
    image_shape : (IH, IW)
        The image's size (second input).
    variance : sequence of 0, 1 or 4 floats > 0
        Row 1 of the output (empty: 0.1). OpenCV requires the parameter.
    min_size, max_size : sequences of float
        Pixel sizes; ``max_size`` has one value per ``min_size``, each larger.
    aspect_ratio : sequence of float
    flip, clip : bool
        ``clip`` (OpenCV default True) clamps every output coordinate to [0, 1].
    step, step_h, step_w : float, optional
        Pixels between centres (``step`` or both ``step_h`` and ``step_w``, > 0); default
        ``IW / W`` and ``IH / H`` in float32.
    offset : float, optional
        Centre offset in cells (default 0.5); or ``offset_h`` and ``offset_w``, lists of one or two
        values each (every box is repeated at each offset pair).
    width, height : sequences of float
        Explicit box sizes (no ``min_size``, ``max_size`` or ``aspect_ratio`` then).
    normalized_bbox : bool
        True: corners divided by the image size; False: pixels with ``xmax = cx + w/2 - 1``.
    max_elements : int, optional
        Cap on the output size (default :data:`refdet._checks.MAX_ELEMENTS`).

    Returns
    -------
    ndarray of float32, shape (2, H * W * P * 4)
        Row 0 ``[xmin, ymin, xmax, ymax]`` of every prior, order ``(h, w, box, offset)``; row 1 the
        variances (one value repeated, or the four values tiled).

    Raises
    ------
    ValueError
        For every parameter combination OpenCV refuses (``CV_Assert``) or mishandles, naming the
        parameter: more than two offsets (OpenCV allocates ``2 * (n - 1)`` priors per box and writes
        ``n``), an empty offset list, ``step`` together with ``step_h``/``step_w``, ...

    Examples
    --------
    A 1 x 1 map on a 100 x 100 image, min size 20, max size 60, aspect ratio 2 (flipped): the 20
    square, the sqrt(20 * 60) = 34.64 square, a 28.28 x 14.14 and a 14.14 x 28.28 box.

    >>> pb = prior_box((1, 1), (100, 100), min_size=[20], max_size=[60], aspect_ratio=[2], variance=[0.1])
    >>> pb[0].reshape(-1, 4).round(4)
    array([[0.4   , 0.4   , 0.6   , 0.6   ],
           [0.3268, 0.3268, 0.6732, 0.6732],
           [0.3586, 0.4293, 0.6414, 0.5707],
           [0.4293, 0.3586, 0.5707, 0.6414]], dtype=float32)
    """
    H, W = _hw(layer_shape, "layer_shape")
    IH, IW = _hw(image_shape, "image_shape")
    flip = _checks.check_bool(flip, "flip")
    clip = _checks.check_bool(clip, "clip")
    normalized_bbox = _checks.check_bool(normalized_bbox, "normalized_bbox")
    mins = _floats(min_size, "min_size")
    maxs = _floats(max_size, "max_size")
    ars = _floats(aspect_ratio, "aspect_ratio", positive=True)    # OpenCV would take sqrt(ar) and 1 / ar
    widths, heights = _floats(width, "width"), _floats(height, "height")
    var = _floats(variance, "variance", positive=True)
    if var.size not in (0, 1, 4):
        raise _bad("variance", f"must hold 1 or 4 values (CV_Assert(varianceSize == 4)); got {var.size}")
    if len(widths) != len(heights):
        raise _bad("width", f"`width` and `height` must have the same length; got {len(widths)} and {len(heights)}")
    if len(maxs) and len(maxs) != len(mins):
        raise _bad("max_size", f"must have one value per `min_size` ({len(mins)}); got {len(maxs)}")
    if len(maxs) and not (mins < maxs).all():
        raise _bad("max_size", "every `max_size` must be larger than its `min_size` "
                               "(CV_Assert(_minSize[i] < _maxSize[i]))")
    if len(widths):
        if len(ars) or len(mins) or len(maxs):
            raise _bad("width", "explicit width/height exclude min_size, max_size and aspect_ratio")
        bw, bh = list(widths), list(heights)
    else:
        if not len(mins):
            raise _bad("min_size", "is required (with at least one value) when width/height are not given")
        if (mins <= 0).any():
            raise _bad("min_size", f"every value must be > 0 (CV_Assert(minSize > 0)); got {float(mins[mins <= 0][0])}")
        ratios = _aspect_ratios(ars, flip)
        bw, bh = [], []
        for k, m in enumerate(mins):
            bw.append(m)
            bh.append(m)
            if len(maxs):
                s = np.sqrt(m * maxs[k], dtype=np.float32)     # sqrt(minSize * _maxSize[i]) in float
                bw.append(s)
                bh.append(s)
            for a in ratios:
                r = np.sqrt(a, dtype=np.float32)
                bw.append(m * r)
                bh.append(m / r)
    if step is not None and (step_h is not None or step_w is not None):
        raise _bad("step", "give `step` or `step_h` and `step_w`, not both (CV_Assert(!params.has(\"step\")))")
    if (step_h is None) != (step_w is None):
        raise _bad("step_h" if step_h is None else "step_w", "`step_h` and `step_w` are required together")
    if step is not None:
        sy = sx = _F32(_checks.check_positive(step, "step"))
    elif step_h is not None:
        sy, sx = _F32(_checks.check_positive(step_h, "step_h")), _F32(_checks.check_positive(step_w, "step_w"))
    else:
        sy, sx = _F32(IH) / _F32(H), _F32(IW) / _F32(W)            # finalize(): (float)imageHeight / layerHeight
    oy, ox = _floats(offset_h, "offset_h"), _floats(offset_w, "offset_w")
    if len(oy) or len(ox):
        if offset is not None:
            raise _bad("offset", "give `offset` or `offset_h` and `offset_w`, not both")
        if len(oy) != len(ox):
            raise _bad("offset_h", f"`offset_h` and `offset_w` must have the same length; got {len(oy)} and {len(ox)}")
        if len(oy) > 2:
            raise _bad("offset_h", f"more than two offsets: OpenCV allocates 2 * (n - 1) priors per box but writes n "
                                   f"(got n = {len(oy)})")
    else:
        o = _F32(0.5 if offset is None else _checks.check_real(offset, "offset"))
        oy = ox = np.array([o], np.float32)
    P, J = len(bw), len(oy)
    _checks.check_allocation(2 * H * W * P * J * 4, 4, "priors x 4 coordinates x 2 rows", name="layer_shape",
                             limit=max_elements)
    bw = np.array(bw, np.float32)
    bh = np.array(bh, np.float32)
    cx = (np.arange(W, dtype=np.float32)[:, None] + ox[None, :]) * sx     # (W, J)
    cy = (np.arange(H, dtype=np.float32)[:, None] + oy[None, :]) * sy     # (H, J)
    hw, hh = bw * _F32(0.5), bh * _F32(0.5)                              # (P,)
    out = np.empty((H, W, P, J, 4), np.float32)
    cxb, cyb = cx[None, :, None, :], cy[:, None, None, :]                  # (1, W, 1, J), (H, 1, 1, J)
    hwb, hhb = hw[None, None, :, None], hh[None, None, :, None]          # (1, 1, P, 1)
    if normalized_bbox:
        fw, fh = _F32(IW), _F32(IH)
        out[..., 0] = (cxb - hwb) / fw
        out[..., 1] = (cyb - hhb) / fh
        out[..., 2] = (cxb + hwb) / fw
        out[..., 3] = (cyb + hhb) / fh
    else:
        one = _F32(1)
        out[..., 0] = cxb - hwb
        out[..., 1] = cyb - hhb
        out[..., 2] = (cxb + hwb) - one
        out[..., 3] = (cyb + hhb) - one
    coords = out.reshape(-1)
    if clip:
        coords = np.minimum(np.maximum(coords, _F32(0)), _F32(1))
    vrow = np.tile(var if var.size == 4 else np.repeat(var if var.size else np.float32([0.1]), 4), H * W * P * J)
    return np.stack([coords, vrow.astype(np.float32)])


# --------------------------------------------------------------------------------------------------
# DetectionOutput
# --------------------------------------------------------------------------------------------------

class DetectionOutputResult(NamedTuple):
    """``detections``: (B * keep_top_k, 7) float32 rows ``[image, label, score, xmin, ymin, xmax, ymax]``,
    zero after the first ``count`` rows (OpenCV's output without its two leading axes)."""
    detections: np.ndarray
    count: int


def _bbox_size(x1, y1, x2, y2, normalized):
    """``BBoxSize``: 0 for an inverted box, else ``w * h`` or ``(w + 1) * (h + 1)`` in float32."""
    w, h = x2 - x1, y2 - y1
    if not normalized:
        w, h = w + _F32(1), h + _F32(1)
    return np.where((x2 < x1) | (y2 < y1), _F32(0), w * h).astype(np.float32)


# glibc's expf (sysdeps/ieee754/flt-32/e_expf.c, from ARM's optimized-routines): what OpenCV's Linux
# builds call for exp(float). It is not correctly rounded (error < 0.502 ulp): float32(exp(double)) differs
# from it for about 6 in 10^4 arguments, so the algorithm is reproduced (double arithmetic, a 32-entry
# table of 2^(i/32), a cubic); tests/test_opencv_ssd.py holds it equal to the C library's expf.
_EXPF_N = 32
_EXPF_TAB = None
_EXPF_C = (float.fromhex("0x1.c6af84b912394p-5") / 32 ** 3, float.fromhex("0x1.ebfce50fac4f3p-3") / 32 ** 2,
           float.fromhex("0x1.62e42ff0c52d6p-1") / 32)
_EXPF_SHIFT = float.fromhex("0x1.8p+52")
_EXPF_INVLN2N = float.fromhex("0x1.71547652b82fep+0") * 32


def _expf_table():
    """``tab[i] = asuint64(2^(i/32)) - (i << 47)`` with 2^(i/32) correctly rounded (computed in decimal)."""
    global _EXPF_TAB
    if _EXPF_TAB is None:
        from decimal import Decimal, localcontext

        with localcontext() as ctx:
            ctx.prec = 60
            vals = [float(Decimal(2) ** (Decimal(i) / _EXPF_N)) for i in range(_EXPF_N)]
        _EXPF_TAB = np.array(vals, np.float64).view(np.uint64) - (np.arange(_EXPF_N, dtype=np.uint64) << np.uint64(47))
    return _EXPF_TAB


def _expf(x):
    """glibc's ``expf`` of a float32 array, bit for bit (finite inputs; overflow to inf, underflow to 0)."""
    x = np.asarray(x, np.float32)
    xd = x.astype(np.float64)
    with np.errstate(all="ignore"):
        z = _EXPF_INVLN2N * xd                                           # x * N / ln 2 = k + r
        kd = z + _EXPF_SHIFT                                             # round to int (ties to even)
        ki = kd.view(np.uint64)
        kd = kd - _EXPF_SHIFT
        r = z - kd
        t = _expf_table()[ki % np.uint64(_EXPF_N)] + (ki << np.uint64(47))  # 2^(k/N) as bits
        s = t.view(np.float64)
        c0, c1, c2 = _EXPF_C
        y = (c0 * r + c1) * (r * r) + (c2 * r + 1.0)
        y = (y * s).astype(np.float32)
    y = np.where(x > np.float32(float.fromhex("0x1.62e42ep6")), np.float32(np.inf), y)      # overflow
    return np.where(x < np.float32(-float.fromhex("0x1.9fe368p6")), np.float32(0), y).astype(np.float32)


def _decode(loc, pri, var, code_type, normalized, clip_bounds, center="opencv"):
    """``DecodeBBox`` for (P, 4) float32 predictions -> (P, 4) corners and (P,) sizes.

    ``center="caffe"`` (for the conformance check's explanations): Caffe's ``(xmin + xmax) / 2``.
    """
    b = loc if var is None else var * loc                                 # prior_variance[0] * bbox.xmin
    if code_type == "CORNER":
        d = pri + b
    else:
        pw = pri[:, 2] - pri[:, 0]
        ph = pri[:, 3] - pri[:, 1]
        if not normalized:
            pw, ph = pw + _F32(1), ph + _F32(1)
        if center == "caffe":
            pcx = (pri[:, 0] + pri[:, 2]) * _F32(0.5)
            pcy = (pri[:, 1] + pri[:, 3]) * _F32(0.5)
        else:
            pcx = pri[:, 0] + pw * _F32(0.5)                             # xmin + width * .5 (not (x1 + x2) / 2)
            pcy = pri[:, 1] + ph * _F32(0.5)
        cx = b[:, 0] * pw + pcx
        cy = b[:, 1] * ph + pcy
        with np.errstate(over="ignore"):
            dw = _expf(b[:, 2]) * pw                                     # exp(float): expf, float product
            dh = _expf(b[:, 3]) * ph
        hw, hh = dw * _F32(0.5), dh * _F32(0.5)
        d = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    if clip_bounds is not None:
        xmax, ymax = clip_bounds
        lo = _F32(0)
        d = np.stack([np.maximum(np.minimum(d[:, 0], xmax), lo), np.maximum(np.minimum(d[:, 1], ymax), lo),
                      np.maximum(np.minimum(d[:, 2], xmax), lo), np.maximum(np.minimum(d[:, 3], ymax), lo)], axis=1)
    d = d.astype(np.float32)
    return d, _bbox_size(d[:, 0], d[:, 1], d[:, 2], d[:, 3], normalized)


def _nms_fast(boxes, sizes, scores, conf_thr, nms_thr, top_k, limit, normalized, inclusive_score=False):
    """``NMSFast_`` with ``JaccardOverlap``: kept prior indices in selection order."""
    cand = np.flatnonzero(scores >= conf_thr if inclusive_score else scores > conf_thr)
    cand = cand[np.argsort(-scores[cand], kind="stable")]               # std::stable_sort, descending
    if 0 < top_k < len(cand):
        cand = cand[:top_k]
    keep = []
    for i in cand:
        if keep:
            k = np.asarray(keep)
            ix1 = np.maximum(boxes[i, 0], boxes[k, 0])
            iy1 = np.maximum(boxes[i, 1], boxes[k, 1])
            ix2 = np.minimum(boxes[i, 2], boxes[k, 2])
            iy2 = np.minimum(boxes[i, 3], boxes[k, 3])
            inter = _bbox_size(ix1, iy1, ix2, iy2, normalized)
            with np.errstate(all="ignore"):
                ov = np.where(inter > 0, inter / ((sizes[i] + sizes[k]) - inter), _F32(0))
            if not (ov <= nms_thr).all():                                # keep = overlap <= threshold
                continue
        keep.append(int(i))
        if len(keep) >= limit:
            break
    return keep


def _as_input(x, name, b=None):
    arr = _checks.as_array(x, name)
    if arr.dtype.kind == "b":
        raise TypeError(f"`{name}` must hold numbers; got booleans")
    if arr.ndim < 1:
        raise ValueError(f"`{name}` must have a batch axis; got a scalar")
    arr = arr.astype(np.float32).reshape(arr.shape[0], int(np.prod(arr.shape[1:], dtype=np.int64)))
    _checks.check_finite(arr, name)
    if b is not None and arr.shape[0] != b:
        raise ValueError(f"`{name}` must have the batch size of `loc` ({b}); got {arr.shape[0]}")
    return arr


def detection_output(loc, conf, priors, *, num_classes: int, keep_top_k: int, nms_threshold: float,
                     share_location: bool = True, background_label_id: int = 0, top_k: int = -1,
                     code_type: str = "CORNER", variance_encoded_in_target: bool = False,
                     confidence_threshold: float = 0.0, normalized_bbox: bool = True, clip: bool = False,
                     image_shape: Optional[Tuple[int, int]] = None, loc_pred_transposed: bool = False,
                     group_by_classes: bool = False) -> DetectionOutputResult:
    r"""OpenCV dnn's ``DetectionOutput`` layer (Caffe SSD's decoding + per-class NMS + keep_top_k).

    Parameters
    ----------
    loc : ndarray, shape (B, P * L * 4)
        Box regressions (any shape whose trailing axes flatten to that), L = 1 with
        ``share_location`` else ``num_classes``; per prior ``L`` groups of ``(x1, y1, x2, y2)``
        (``(y1, x1, y2, x2)`` with ``loc_pred_transposed``).
    conf : ndarray, shape (B, P * C)
        Scores as given (OpenCV applies no softmax), prior-major.
    priors : ndarray, shape (2, P * 4) or (1, 2, P * 4)
        :func:`prior_box` output (corners, variances); one row with ``variance_encoded_in_target``.
    num_classes, keep_top_k : int
        ``keep_top_k >= 1`` (OpenCV sizes its output ``B * keep_top_k``; 0 corrupts its heap, -1 gives
        a 1 x 1 output).
    nms_threshold : float > 0
        Keep a box whose overlap with every kept box is ``<=`` this.
    share_location : bool
    background_label_id : int
        Skipped class (-1: none; not with ``share_location``, where OpenCV fails to find its boxes).
    top_k : int
        Candidates per class after sorting (``<= 0``: all).
    code_type : {"CORNER", "CENTER_SIZE"}
    variance_encoded_in_target, normalized_bbox, clip, loc_pred_transposed, group_by_classes : bool
        ``clip`` clamps decoded corners to [0, 1] (``normalized_bbox``) or to
        ``[0, image_shape - 1]`` (``image_shape`` (IH, IW) required then).
    confidence_threshold : float
        Strict: a score equal to it is dropped.

    Returns
    -------
    DetectionOutputResult
        ``detections`` (B * keep_top_k, 7) float32 and ``count``.

    Examples
    --------
    Two priors, one foreground class (label 1), CORNER offsets of zero: the two boxes overlap with
    IoU 0.25 / 0.75 = 1/3 <= 0.45, so both are kept, best score first.

    >>> pri = np.array([[0, 0, .5, .5, .25, 0, .75, .5], [.1] * 8], np.float32)
    >>> conf = np.array([[.9, .1, .2, .8]], np.float32)          # prior 0: (bg .9, fg .1); prior 1: (.2, .8)
    >>> r = detection_output(np.zeros((1, 8)), conf, pri, num_classes=2, keep_top_k=3, nms_threshold=0.45)
    >>> r.count, r.detections[:2].tolist()
    (2, [[0.0, 1.0, 0.800000011920929, 0.25, 0.0, 0.75, 0.5], [0.0, 1.0, 0.10000000149011612, 0.0, 0.0, 0.5, 0.5]])
    """
    return _detection_output(loc, conf, priors, num_classes=num_classes, keep_top_k=keep_top_k,
                             nms_threshold=nms_threshold, share_location=share_location,
                             background_label_id=background_label_id, top_k=top_k, code_type=code_type,
                             variance_encoded_in_target=variance_encoded_in_target,
                             confidence_threshold=confidence_threshold, normalized_bbox=normalized_bbox, clip=clip,
                             image_shape=image_shape, loc_pred_transposed=loc_pred_transposed,
                             group_by_classes=group_by_classes)


def _detection_output(loc, conf, priors, *, num_classes, keep_top_k, nms_threshold, share_location,
                      background_label_id, top_k, code_type, variance_encoded_in_target, confidence_threshold,
                      normalized_bbox, clip, image_shape, loc_pred_transposed, group_by_classes, center="opencv",
                      inclusive_score=False):
    """:func:`detection_output` with the two variants the conformance check names (Caffe's prior centre,
    an inclusive confidence threshold)."""
    nc = _checks.check_int(num_classes, "num_classes", low=1, high=_checks.MAX_CLASSES)
    ktk = _checks.check_int(keep_top_k, "keep_top_k", high=2 ** 31 - 1)
    if ktk < 1:
        raise _bad("keep_top_k", f"must be >= 1: OpenCV sizes its output B * keep_top_k (0 corrupts its heap, -1 "
                                 f"gives a 1 x 1 output); got {ktk}")
    thr = _checks.check_real(nms_threshold, "nms_threshold")
    if not thr > 0:
        raise _bad("nms_threshold", f"must be > 0 (CV_Assert(_nmsThreshold > 0.)); got {thr}")
    share = _checks.check_bool(share_location, "share_location")
    bg = _checks.check_int(background_label_id, "background_label_id", low=-2 ** 31, high=2 ** 31 - 1)
    tk = _checks.check_int(top_k, "top_k", low=-2 ** 31, high=2 ** 31 - 1)
    _checks.check_choice(code_type, "code_type", CODE_TYPES)
    venc = _checks.check_bool(variance_encoded_in_target, "variance_encoded_in_target")
    cthr = _F32(_checks.check_real(confidence_threshold, "confidence_threshold"))
    normalized = _checks.check_bool(normalized_bbox, "normalized_bbox")
    clip = _checks.check_bool(clip, "clip")
    transposed = _checks.check_bool(loc_pred_transposed, "loc_pred_transposed")
    grouped = _checks.check_bool(group_by_classes, "group_by_classes")
    if share and bg == -1:
        raise _bad("background_label_id", "-1 with share_location: OpenCV stores the shared boxes under label -1, "
                                          "skips them as background and then cannot find them")
    clip_bounds = None
    if clip:
        if normalized:
            clip_bounds = (_F32(1), _F32(1))
        else:
            if image_shape is None:
                raise _bad("image_shape", "clip with normalized_bbox=False needs the image size (OpenCV's 4th input)")
            ih, iw = _hw(image_shape, "image_shape")
            clip_bounds = (_F32(iw - 1), _F32(ih - 1))

    lc = _as_input(loc, "loc")
    B = lc.shape[0]
    cf = _as_input(conf, "conf", B)
    pr = _checks.as_array(priors, "priors")
    if pr.dtype.kind == "b":
        raise TypeError("`priors` must hold numbers; got booleans")
    rows = 1 if venc else 2
    if pr.ndim == 3 and pr.shape[0] == 1:
        pr = pr[0]
    if pr.ndim != 2 or pr.shape[0] != rows or pr.shape[1] % 4:
        raise _bad("priors", f"must have shape ({rows}, P * 4) or (1, {rows}, P * 4) with variance_encoded_in_target="
                             f"{venc}; got {np.shape(priors)}")
    pr = pr.astype(np.float32)
    _checks.check_finite(pr, "priors")
    P = pr.shape[1] // 4
    L = 1 if share else nc
    if lc.shape[1] != P * L * 4:
        raise _bad("loc", f"must hold P * {L} * 4 = {P * L * 4} values per image for the {P} priors of `priors` "
                          f"(L = 1 with `share_location`, else `num_classes`); got {lc.shape[1]}")
    if cf.shape[1] != P * nc:
        raise _bad("conf", f"must hold P * `num_classes` = {P * nc} values per image for the {P} priors of `priors`; "
                           f"got {cf.shape[1]}")
    _checks.check_allocation(B * ktk * 7, 4, "detection rows x 7", name="keep_top_k", keyword=False)
    pri = pr[0].reshape(P, 4)
    var = None if venc else pr[1].reshape(P, 4)
    target = nc - (1 if 0 <= bg < nc else 0)
    limit = ktk if target == 1 else 2 ** 63
    nms_t = _F32(thr)

    out = np.zeros((B * ktk, 7), np.float32)
    count = 0
    for i in range(B):
        lp = lc[i].reshape(P, L, 4)
        if transposed:
            lp = lp[..., [1, 0, 3, 2]]
        scores = cf[i].reshape(P, nc)
        decoded = {}
        for c in range(L):
            label = -1 if share else c
            if label == bg:
                continue
            decoded[label] = _decode(lp[:, c], pri, var, code_type, normalized, clip_bounds, center)
        picked = []                                                       # (label, prior index), label order
        for c in range(nc):
            if c == bg:
                continue
            boxes, sizes = decoded[-1 if share else c]
            picked += [(c, j) for j in _nms_fast(boxes, sizes, scores[:, c], cthr, nms_t, tk, limit, normalized,
                                                 inclusive_score)]
        if len(picked) > ktk:
            sc = np.array([scores[j, c] for c, j in picked], np.float32)
            best = np.argsort(-sc, kind="stable")[:ktk]
            per = {}
            for t in best:                                               # newIndices[label].push_back(idx)
                per.setdefault(picked[t][0], []).append(picked[t][1])
            picked = [(c, j) for c in sorted(per) for j in per[c]]
        if not picked:
            continue
        sc = np.array([scores[j, c] for c, j in picked], np.float32)
        order = np.arange(len(picked)) if grouped else np.argsort(-sc, kind="stable")
        for r, t in enumerate(order):
            c, j = picked[t]
            boxes = decoded[-1 if share else c][0]
            out[count + r] = [i, c, sc[t], *boxes[j]]
        count += len(picked)
    return DetectionOutputResult(out, count)
