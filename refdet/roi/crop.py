"""TF ``crop_and_resize`` and the TF Object Detection API's crop-then-max-pool RoI features.

TensorFlow has no RoIAlign. Its Faster R-CNN (``research/object_detection/meta_architectures/
faster_rcnn_meta_arch.py``, ``_compute_second_stage_input_feature_maps``) crops every proposal with
``tf.image.crop_and_resize`` to ``initial_crop_size = 14`` and then max-pools 2 x 2 with stride 2
(``maxpool_kernel_size``, ``maxpool_stride``) to 7 x 7.

``crop_and_resize`` (``tensorflow/core/kernels/image/crop_and_resize_op.cc``) takes boxes
**normalised** to ``[0, 1]`` and ordered ``[y1, x1, y2, x2]``, and maps the box *corners* onto pixel
*centres*: crop row ``y`` of ``CH`` reads image row ::

    in_y = y1 * (H - 1) + y * (y2 - y1) * (H - 1) / (CH - 1)        (CH > 1)
    in_y = 0.5 * (y1 + y2) * (H - 1)                                (CH == 1)

so the first and last crop rows sit exactly on the box edges (an "align corners" mapping: a box
``[0, 0, 1, 1]`` resamples the whole image with its corner pixels kept), unlike RoIAlign, whose
samples sit inside the bins. ``in_y < 0`` or ``in_y > H - 1`` gives ``extrapolation_value`` for the
whole row; otherwise ``"bilinear"`` interpolates between ``floor(in_y)`` and ``ceil(in_y)``
(``top + (bottom - top) * y_lerp``, after the same along x) and ``"nearest"`` reads ``roundf(in_y)``
(halves away from zero). The TF OD API normalises pixel boxes by multiplying with ``1 / height`` and
``1 / width`` of the *image* (``box_list_ops.to_normalized_coordinates``), while ``(H - 1)`` is the
*feature map's*: see :func:`tf_normalized_boxes`.

Gradients follow TF's registered gradient (``image_grad.py``, ``_CropAndResizeGrad``): the image gets
``CropAndResizeGradImage`` (bilinear: the four corner weights; nearest: the chosen pixel) and the
boxes always get ``CropAndResizeGradBoxes``, the *bilinear* derivative, even for ``"nearest"``
("we still approximate grad1 using the gradient derived from bilinear sampling").

Dtypes: float32 follows the kernel's float32 expressions (``(y2 - y1) * (H - 1) / (CH - 1)``, the
lerps, and for the box gradient its own ``height_ratio = (H - 1) / (CH - 1)``); TF always computes in
float32, float64 here is the oracle. TF is not installed with refdet's extras, so these order-of-
operation details are checked against golden vectors worked by hand, not against TF itself.
The readable version is :func:`refdet.reference.roi.crop_and_resize_reference`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet import layers as _layers
from refdet.roi import _common
from refdet.roi.pool import c_round

__all__ = [
    "CropAndResizeCache",
    "CropAndResizeGrads",
    "crop_and_resize_forward",
    "crop_and_resize_backward",
    "crop_and_resize",
    "tf_normalized_boxes",
    "TFCropAndPoolCache",
    "TFCropAndPoolGrads",
    "tf_crop_and_pool_forward",
    "tf_crop_and_pool_backward",
]

CROP_METHODS = ("bilinear", "nearest")
DATA_FORMATS = ("NCHW", "NHWC")


class CropAndResizeCache(NamedTuple):
    """What :func:`crop_and_resize_backward` needs."""
    image_nhwc: np.ndarray      # (B, H, W, C) working dtype (copy)
    boxes: np.ndarray           # (K, 4) normalised y1, x1, y2, x2
    box_indices: np.ndarray     # (K,) int64
    crop_size: tuple            # (CH, CW)
    method: str
    data_format: str


class CropAndResizeGrads(NamedTuple):
    """Gradients of :func:`crop_and_resize_forward`."""
    dimage: np.ndarray          # shaped like the image (data_format)
    dboxes: np.ndarray          # (K, 4)


class _Lines(NamedTuple):
    pos: np.ndarray             # (K, N) in_y or in_x
    valid: np.ndarray           # (K, N) bool
    lo: np.ndarray              # (K, N) int64 floor (0 where invalid)
    hi: np.ndarray              # ceil
    lerp: np.ndarray            # pos - lo
    near: np.ndarray            # roundf(pos)


def _lines(a, b, n, size, dt, *, ratio_form=False):
    """Crop line coordinates along one axis (K, n): the kernel's ``in_y`` and its split.

    ``ratio_form`` uses the box-gradient kernel's ``(b - a) * ((size - 1) / (n - 1))`` scale instead of
    the forward's ``(b - a) * (size - 1) / (n - 1)``.
    """
    m = dt.type(size - 1)
    i = np.arange(n, dtype=dt)[None]                                       # (1, n)
    if n > 1:
        if ratio_form:
            scale = (b - a) * (m / dt.type(n - 1))
        else:
            scale = (b - a) * m / dt.type(n - 1)
        pos = a[:, None] * m + i * scale[:, None]
    else:
        # `0.5 * (y1 + y2) * (image_height - 1)`: the sum in float, the rest in double, then float
        pos = (0.5 * (a + b).astype(np.float64) * (size - 1)).astype(dt)[:, None]
    valid = (pos >= 0) & (pos <= m)
    p = np.where(valid, pos, dt.type(0))
    lo = np.floor(p).astype(np.int64)
    hi = np.ceil(p).astype(np.int64)
    lerp = p - lo.astype(dt)
    near = c_round(p).astype(np.int64)
    return _Lines(pos, valid, lo, hi, lerp, near)


def _prepare(image, boxes, box_indices, crop_size, method, extrapolation_value, data_format):
    _checks.check_choice(method, "method", CROP_METHODS)
    _checks.check_choice(data_format, "data_format", DATA_FORMATS)
    img = _common.as_features(image, "image")
    nhwc = img if data_format == "NHWC" else img.transpose(0, 2, 3, 1)
    dt = img.dtype
    b = _checks.as_boxes(boxes, "boxes", dtype=dt)
    idx = _common.as_batch_indices(box_indices, len(b), nhwc.shape[0], "box_indices")
    crop_size = _common.check_output_size(crop_size, "crop_size")
    _common.check_outputs(len(b), nhwc.shape[3], crop_size[0], crop_size[1], dt.itemsize, name="crop_size")
    extrapolation_value = _checks.check_real(extrapolation_value, "extrapolation_value")
    return np.ascontiguousarray(nhwc), b, idx, crop_size, extrapolation_value


def crop_and_resize_forward(image: np.ndarray, boxes: np.ndarray, box_indices: np.ndarray, crop_size, *,
                            method: str = "bilinear", extrapolation_value: float = 0.0,
                            data_format: str = "NCHW") -> Tuple[np.ndarray, CropAndResizeCache]:
    """``tf.image.crop_and_resize`` forward pass.

    Parameters
    ----------
    image : ndarray, shape (B, C, H, W) (or (B, H, W, C) with ``data_format="NHWC"``, TF's layout)
    boxes : ndarray, shape (K, 4)
        Normalised ``[y1, x1, y2, x2]`` (see the module docstring); ``y1 > y2`` flips the crop;
        values outside [0, 1] extrapolate.
    box_indices : ndarray of int, shape (K,)
        Image of each box, in ``[0, B)``.
    crop_size : int or (int, int)
        ``(CH, CW)``, each >= 1.
    method : {"bilinear", "nearest"}
    extrapolation_value : float
        Value of crop pixels that fall outside the image (TF default 0).
    data_format : {"NCHW", "NHWC"}
        Layout of ``image`` and of the result.

    Returns
    -------
    crops : ndarray, shape (K, C, CH, CW) (or (K, CH, CW, C) for NHWC)
    cache : CropAndResizeCache
    """
    nhwc, b, idx, (CH, CW), extra = _prepare(image, boxes, box_indices, crop_size, method,
                                             extrapolation_value, data_format)
    B, H, W, C = nhwc.shape
    dt = nhwc.dtype
    K = len(b)
    out = np.empty((K, CH, CW, C), dtype=dt)
    if K:
        ly = _lines(b[:, 0], b[:, 2], CH, H, dt)
        lx = _lines(b[:, 1], b[:, 3], CW, W, dt)
        rows = nhwc.reshape(B * H * W, C)
        base = (idx * (H * W))[:, None, None]
        valid = (ly.valid[:, :, None] & lx.valid[:, None, :])[..., None]            # (K, CH, CW, 1)
        if method == "bilinear":
            def corner(yy, xx):
                return rows[base + yy[:, :, None] * W + xx[:, None, :]]             # (K, CH, CW, C)
            tl, tr = corner(ly.lo, lx.lo), corner(ly.lo, lx.hi)
            bl, br = corner(ly.hi, lx.lo), corner(ly.hi, lx.hi)
            xl = lx.lerp[:, None, :, None]
            yl = ly.lerp[:, :, None, None]
            top = tl + (tr - tl) * xl
            bottom = bl + (br - bl) * xl
            val = top + (bottom - top) * yl
        else:
            val = rows[base + ly.near[:, :, None] * W + lx.near[:, None, :]]
        np.copyto(out, np.where(valid, val, dt.type(extra)))
    cache = CropAndResizeCache(nhwc.copy(), b.copy(), idx.copy(), (CH, CW), method, data_format)
    if data_format == "NCHW":
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out, cache


def crop_and_resize_backward(dout: np.ndarray, cache: CropAndResizeCache) -> CropAndResizeGrads:
    """Gradients of :func:`crop_and_resize_forward` (TF's ``CropAndResizeGradImage`` and ``...GradBoxes``).

    Parameters
    ----------
    dout : ndarray, shape of the crops
    cache : CropAndResizeCache

    Returns
    -------
    CropAndResizeGrads
        ``dimage``: bilinear: ``(1 - x_lerp) * (1 - y_lerp) * g`` etc. added to the four corners in the
        kernel's order (box, row, column; top-left, top-right, bottom-left, bottom-right); nearest: ``g``
        to the chosen pixel. Extrapolated crop pixels send nothing. ``dboxes`` ``(K, 4)``: the bilinear
        derivative of ``in_y``/``in_x`` times the image gradient at the sample, summed over valid crop
        pixels and channels in that order (for both methods, as TF). At an integer ``in_y`` the floor
        and ceil coincide and the image gradient there is taken as 0 (TF's choice).
    """
    cache = _common.check_cache(cache, CropAndResizeCache)
    nhwc = cache.image_nhwc
    B, H, W, C = nhwc.shape
    dt = nhwc.dtype
    CH, CW = cache.crop_size
    K = len(cache.boxes)
    shape = (K, C, CH, CW) if cache.data_format == "NCHW" else (K, CH, CW, C)
    g = _common.as_upstream(dout, shape, dt)
    if cache.data_format == "NCHW":
        g = g.transpose(0, 2, 3, 1)
    g = np.ascontiguousarray(g)                                                   # (K, CH, CW, C)
    dimg = np.zeros((B * H * W, C), dtype=dt)
    dboxes = np.zeros((K, 4), dtype=dt)
    if K and C:
        b = cache.boxes
        ly = _lines(b[:, 0], b[:, 2], CH, H, dt)
        lx = _lines(b[:, 1], b[:, 3], CW, W, dt)
        base = (cache.box_indices * (H * W))[:, None, None]
        valid = ly.valid[:, :, None] & lx.valid[:, None, :]                       # (K, CH, CW)
        gr = g.reshape(K * CH * CW, C)
        one = dt.type(1)
        if cache.method == "bilinear":
            yl = np.broadcast_to(ly.lerp[:, :, None], valid.shape)
            xl = np.broadcast_to(lx.lerp[:, None, :], valid.shape)
            ylo, yhi = ly.lo[:, :, None] * W, ly.hi[:, :, None] * W
            xlo, xhi = lx.lo[:, None, :], lx.hi[:, None, :]
            dest = np.stack(np.broadcast_arrays(base + ylo + xlo, base + ylo + xhi,
                                                base + yhi + xlo, base + yhi + xhi), axis=-1)  # (K, CH, CW, 4)
            src = np.broadcast_to(np.arange(K * CH * CW).reshape(K, CH, CW, 1), dest.shape)
            corner = np.broadcast_to(np.arange(4), dest.shape)
            keep = np.broadcast_to(valid[..., None], dest.shape)
            dest_k, src_k, corner_k = dest[keep], src[keep], corner[keep]
            yl_k = np.broadcast_to(yl[..., None], dest.shape)[keep]
            xl_k = np.broadcast_to(xl[..., None], dest.shape)[keep]

            def values(i):
                gy = gr[src_k[i]]
                c = corner_k[i]
                # dtop = (1 - y_lerp) * g, dbottom = y_lerp * g; then (1 - x_lerp) * d or x_lerp * d
                wy = np.where(c < 2, one - yl_k[i], yl_k[i])[:, None]
                wx = np.where(c % 2 == 0, one - xl_k[i], xl_k[i])[:, None]
                return wx * (wy * gy)
            _common.ordered_scatter_add(dimg, dest_k, values)
        else:
            dest = base + ly.near[:, :, None] * W + lx.near[:, None, :]
            src = np.arange(K * CH * CW).reshape(K, CH, CW)
            dest_k, src_k = dest[valid], src[valid]
            _common.ordered_scatter_add(dimg, dest_k, lambda i: gr[src_k[i]])
        dboxes = _box_grads(nhwc, b, cache.box_indices, g, CH, CW)
    dimage = dimg.reshape(B, H, W, C)
    if cache.data_format == "NCHW":
        dimage = np.ascontiguousarray(dimage.transpose(0, 3, 1, 2))
    return CropAndResizeGrads(dimage, dboxes)


def _box_grads(nhwc, b, idx, g, CH, CW):
    """TF ``CropAndResizeBackpropBoxes``: sums over (row, column, channel) in that order."""
    B, H, W, C = nhwc.shape
    dt = nhwc.dtype
    K = len(b)
    ly = _lines(b[:, 0], b[:, 2], CH, H, dt, ratio_form=True)
    lx = _lines(b[:, 1], b[:, 3], CW, W, dt, ratio_form=True)
    rows = nhwc.reshape(B * H * W, C)
    base = (idx * (H * W))[:, None, None]

    def corner(yy, xx):
        return rows[base + yy[:, :, None] * W + xx[:, None, :]]                     # (K, CH, CW, C)
    tl, tr = corner(ly.lo, lx.lo), corner(ly.lo, lx.hi)
    bl, br = corner(ly.hi, lx.lo), corner(ly.hi, lx.hi)
    one = dt.type(1)
    xl = lx.lerp[:, None, :, None]
    yl = ly.lerp[:, :, None, None]
    grad_y = ((one - xl) * (bl - tl) + xl * (br - tr)) * g                          # image_grad_y *= top_grad
    grad_x = ((one - yl) * (tr - tl) + yl * (br - bl)) * g
    valid = (ly.valid[:, :, None] & lx.valid[:, None, :])[..., None]
    zero = dt.type(0)
    grad_y = np.where(valid, grad_y, zero)
    grad_x = np.where(valid, grad_x, zero)
    if CH > 1:
        ratio = dt.type(H - 1) / dt.type(CH - 1)
        yy = np.arange(CH, dtype=dt)[None, :, None, None] * ratio
        d_y1 = grad_y * (dt.type(H - 1) - yy)
        d_y2 = grad_y * yy
    else:
        d_y1 = d_y2 = (grad_y * 0.5 * (H - 1)).astype(dt)
    if CW > 1:
        ratio = dt.type(W - 1) / dt.type(CW - 1)
        xx = np.arange(CW, dtype=dt)[None, None, :, None] * ratio
        d_x1 = grad_x * (dt.type(W - 1) - xx)
        d_x2 = grad_x * xx
    else:
        d_x1 = d_x2 = (grad_x * 0.5 * (W - 1)).astype(dt)

    def seq_sum(t):                       # `grads_boxes(b, j) += ...` one term at a time
        flat = t.reshape(K, -1)
        return np.add.accumulate(flat, axis=1)[:, -1] if flat.shape[1] else np.zeros(K, dt)
    return np.stack([seq_sum(d_y1), seq_sum(d_x1), seq_sum(d_y2), seq_sum(d_x2)], axis=1).astype(dt)


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, box_indices: np.ndarray, crop_size, *,
                    method: str = "bilinear", extrapolation_value: float = 0.0,
                    data_format: str = "NCHW") -> np.ndarray:
    """``tf.image.crop_and_resize``: :func:`crop_and_resize_forward` without the cache.

    Returns
    -------
    ndarray, shape (K, C, CH, CW) (or (K, CH, CW, C) for NHWC)
    """
    return crop_and_resize_forward(image, boxes, box_indices, crop_size, method=method,
                                   extrapolation_value=extrapolation_value, data_format=data_format)[0]


def tf_normalized_boxes(boxes: np.ndarray, image_size) -> np.ndarray:
    """Pixel ``xyxy`` boxes to the normalised ``[y1, x1, y2, x2]`` that ``crop_and_resize`` takes.

    As the TF OD API's ``box_list_ops.to_normalized_coordinates``: coordinates multiplied by
    ``1 / height`` and ``1 / width`` (the reciprocal computed first, in the boxes' dtype).

    Parameters
    ----------
    boxes : ndarray, shape (K, 4)
        ``x1, y1, x2, y2`` in pixels.
    image_size : (H, W)
        The (resized, padded) image size the boxes live in.

    Returns
    -------
    ndarray, shape (K, 4)
    """
    b = _checks.as_boxes(boxes, "boxes")
    h, w = _checks.check_image_size(image_size)
    dt = b.dtype
    ry = dt.type(1) / dt.type(h)
    rx = dt.type(1) / dt.type(w)
    return np.stack([b[:, 1] * ry, b[:, 0] * rx, b[:, 3] * ry, b[:, 2] * rx], axis=1)


class TFCropAndPoolCache(NamedTuple):
    """What :func:`tf_crop_and_pool_backward` needs."""
    crop: CropAndResizeCache
    pool: object                 # refdet.layers.MaxPool2dCache
    data_format: str


class TFCropAndPoolGrads(NamedTuple):
    """Gradients of :func:`tf_crop_and_pool_forward`."""
    dfeatures: np.ndarray        # shaped like the features (data_format)
    dboxes: np.ndarray           # (K, 4)


def tf_crop_and_pool_forward(features: np.ndarray, boxes: np.ndarray, box_indices: np.ndarray, *,
                             crop_size: int = 14, pool_size: int = 2, pool_stride: Optional[int] = None,
                             method: str = "bilinear", data_format: str = "NCHW"
                             ) -> Tuple[np.ndarray, TFCropAndPoolCache]:
    """The TF OD API's second-stage input: ``crop_and_resize`` to ``crop_size``, then a VALID max pool.

    Parameters
    ----------
    features : ndarray, shape (B, C, H, W) (or NHWC)
    boxes : ndarray, shape (K, 4)
        Normalised ``[y1, x1, y2, x2]`` (:func:`tf_normalized_boxes`).
    box_indices : ndarray of int, shape (K,)
    crop_size : int or (int, int)
        ``initial_crop_size`` (14 in every Faster R-CNN config of the TF OD API).
    pool_size, pool_stride : int
        ``maxpool_kernel_size`` and ``maxpool_stride`` (2 and 2; stride defaults to the size). The
        pool is ``slim.max_pool2d(padding='VALID')``: floor output size, first maximum wins a tie.
    method, data_format
        As for :func:`crop_and_resize_forward`.

    Returns
    -------
    out : ndarray, shape (K, C, 7, 7) for the defaults (or NHWC)
    cache : TFCropAndPoolCache
    """
    _checks.check_choice(data_format, "data_format", DATA_FORMATS)
    _common.as_features(features, "features")      # named here, not as crop_and_resize's `image`
    k = _checks.check_int(pool_size, "pool_size", low=1)
    st = k if pool_stride is None else _checks.check_int(pool_stride, "pool_stride", low=1)
    ch, cw = _common.check_output_size(crop_size, "crop_size")
    if k > min(ch, cw):
        raise ValueError(f"`pool_size` = {k} must fit in the crop (`crop_size` {(ch, cw)}): the pool is VALID")
    crops, ccache = crop_and_resize_forward(features, boxes, box_indices, crop_size, method=method,
                                            data_format=data_format)
    x = crops if data_format == "NCHW" else crops.transpose(0, 3, 1, 2)
    y, pcache = _layers.max_pool2d_forward(x, k, stride=st)
    if data_format == "NHWC":
        y = np.ascontiguousarray(y.transpose(0, 2, 3, 1))
    return y, TFCropAndPoolCache(ccache, pcache, data_format)


def tf_crop_and_pool_backward(dout: np.ndarray, cache: TFCropAndPoolCache) -> TFCropAndPoolGrads:
    """Gradients of :func:`tf_crop_and_pool_forward`: max-pool backward, then crop_and_resize's.

    Returns
    -------
    TFCropAndPoolGrads
        ``dfeatures`` and ``dboxes`` (K, 4).
    """
    cache = _common.check_cache(cache, TFCropAndPoolCache)
    d = _checks.as_nchw(dout, "dout")     # named here, not as max_pool2d_backward's `dy`
    want = tuple(cache.pool.indices.shape)        # (K, C, PH, PW)
    if cache.data_format == "NHWC":
        d = d.transpose(0, 3, 1, 2)
    if d.shape != want:
        shown = want if cache.data_format == "NCHW" else (want[0], want[2], want[3], want[1])
        raise ValueError(f"`dout` must have the output's shape {shown}; got {np.shape(dout)}")
    dcrop = _layers.max_pool2d_backward(d, cache.pool).dx
    if cache.data_format == "NHWC":
        dcrop = dcrop.transpose(0, 2, 3, 1)
    grads = crop_and_resize_backward(dcrop, cache.crop)
    return TFCropAndPoolGrads(grads.dimage, grads.dboxes)
