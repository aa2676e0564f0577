"""Observers: estimate an activation's range from calibration data, then its scale and zero point.

Each observer collects statistics batch by batch (``update(x)``) and turns them into
:class:`~refdet.quant.affine.QParams` with :func:`~refdet.quant.affine.qparams_from_minmax` under its
convention (``qparams()``):

* :class:`MinMaxObserver`, :class:`MovingAverageMinMaxObserver`, :class:`PerChannelMinMaxObserver`:
  PyTorch's observers of the same names (onnxruntime ``MinMaxCalibrater``);
* :class:`PercentileObserver`: onnxruntime's histogram percentile calibrator;
* :class:`HistogramObserver`: PyTorch's L2 search over a histogram's ends;
* :class:`MSEObserver`: refdet's grid search for the range of least squared fake-quant error.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from refdet import _checks
from refdet.quant.affine import QUANT_DTYPES, QParams, _qparams_profile, _qrange, qparams_from_minmax

__all__ = [
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "PercentileObserver",
    "HistogramObserver",
    "MSEObserver",
]


class _Observer:
    """Shared plumbing: conventions, qparams, validation of each batch."""

    def __init__(self, *, dtype: str = "int8", symmetric: bool = False, convention="torchvision", **qkw):
        self.dtype = _checks.check_quant_dtype(dtype)
        if not isinstance(symmetric, (bool, np.bool_)):
            raise TypeError(f"`symmetric` must be a bool; got {symmetric!r}")
        self.symmetric = bool(symmetric)
        self.convention = convention
        self._qkw = qkw
        # validate the convention and the overrides now, not at the first qparams() call
        qparams_from_minmax(0.0, 1.0, dtype=self.dtype, symmetric=self.symmetric, convention=convention, **qkw)
        self.min_val = None
        self.max_val = None

    def _batch(self, x):
        xa = _checks.as_array(x, "x")
        xa = xa.astype(_checks.working_dtype(xa.dtype), copy=False)
        _checks.check_finite(xa, "x")
        return xa

    def _range(self):
        if self.min_val is None:
            raise ValueError(f"{type(self).__name__}.qparams(): no data observed yet (call update(x) first)")
        return self.min_val, self.max_val

    def _qrange(self):
        """The (qmin, qmax) the observer's qparams use."""
        narrow = _qparams_profile(self.convention, narrow_range=self._qkw.get("narrow_range"))["narrow_range"]
        return _qrange(self.dtype, narrow, self.symmetric, self._qkw.get("qmin"), self._qkw.get("qmax"))

    def qparams(self) -> QParams:
        """:class:`QParams` for the observed range under the observer's convention."""
        lo, hi = self._range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)

    def __repr__(self):
        return (f"{type(self).__name__}(dtype={self.dtype!r}, symmetric={self.symmetric}, "
                f"convention={self.convention!r}, min_val={self.min_val}, max_val={self.max_val})")


class MinMaxObserver(_Observer):
    """Running minimum and maximum over every batch seen (PyTorch ``MinMaxObserver``, onnxruntime
    ``MinMaxCalibrater``), then :func:`qparams_from_minmax`.

    Parameters
    ----------
    dtype, symmetric, convention, **knobs
        As in :func:`qparams_from_minmax` (knobs: narrow_range, scale_dtype, zero_point_rule,
        tiny_range, qmin, qmax).

    Methods
    -------
    update(x) -> self
        ``x`` : ndarray of float, any shape; NaN/inf rejected; empty batches are ignored.
    qparams() -> QParams
    """

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x)
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self


class MovingAverageMinMaxObserver(_Observer):
    """Exponential moving average of each batch's min and max (PyTorch ``MovingAverageMinMaxObserver``).

    The first batch sets the range; after that ``min <- min + c * (batch_min - min)`` and the same for
    max, with ``c = averaging_constant`` (0.01 in PyTorch and onnxruntime). The state is kept in the
    first batch's working dtype (float32 for float32 batches, as PyTorch's buffers).
    """

    def __init__(self, averaging_constant: float = 0.01, **kw):
        self.averaging_constant = _checks.check_probability(averaging_constant, "averaging_constant")
        super().__init__(**kw)

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x)
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = xa.dtype.type(self.averaging_constant)
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)
        return self


class PerChannelMinMaxObserver(_Observer):
    """Running min and max per channel along ``ch_axis`` (PyTorch ``PerChannelMinMaxObserver``).

    Weights are usually observed with ``symmetric=True`` and ``ch_axis=0`` (conv weights
    ``(F, C, KH, KW)``; ONNX ``axis=0``; TFLite CONV_2D ``quantized_dimension=0``).
    ``qparams()`` returns (C,)-shaped scale and zero point.
    """

    def __init__(self, ch_axis: int = 0, **kw):
        self.ch_axis = _checks.check_int(ch_axis, "ch_axis")
        super().__init__(**kw)

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x)
        if xa.ndim == 0:
            raise ValueError("`x` must have a channel axis; got a scalar")
        if not -xa.ndim <= self.ch_axis < xa.ndim:
            raise ValueError(f"`x` of shape {xa.shape} has no axis `ch_axis` = {self.ch_axis}")
        ax = _checks.check_axis(self.ch_axis, xa.ndim, "ch_axis")
        moved = np.moveaxis(xa, ax, 0).reshape(xa.shape[ax], -1)
        if moved.shape[1] == 0:
            return self
        if self.min_val is not None and self.min_val.shape[0] != moved.shape[0]:
            raise ValueError(f"`x` has {moved.shape[0]} channels along axis {ax}; earlier batches had "
                             f"{self.min_val.shape[0]}")
        lo, hi = moved.min(axis=1), moved.max(axis=1)
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else np.maximum(self.max_val, hi)
        return self

    def qparams(self) -> QParams:
        lo, hi = self._range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric, axis=self.ch_axis,
                                   convention=self.convention, **self._qkw)


class PercentileObserver(_Observer):
    """Histogram percentile calibration with onnxruntime's semantics (``calibrate.py``,
    ``HistogramCollector`` + ``compute_percentile``).

    * ``symmetric=True``: a histogram of ``|x|`` with ``num_bins`` bins over ``[min|x|, max|x|]``
      (extended by whole bins when a later batch exceeds it); the threshold is the bin edge where the
      CDF first reaches ``percentile / 100`` (``np.searchsorted``, left); range ``[-t, t]``.
    * ``symmetric=False``: a histogram of ``x`` over ``[-m, m]``, ``m = max|x|`` (re-binned
      on growth by whole old-width bins on both sides); ``(100 - percentile) / 200`` is cut from each
      side.

    Either threshold is then clipped to the observed min and max. The default ``convention`` is
    ``"onnx"``, because this is onnxruntime's calibrator (PyTorch has no percentile observer).
    """

    def __init__(self, percentile: float = 99.999, num_bins: int = 2048, *, convention="onnx", **kw):
        self.percentile = _checks.check_probability(percentile, "percentile", 0.0, 100.0)
        self.num_bins = _checks.check_int(num_bins, "num_bins", low=1)
        _checks.check_allocation(self.num_bins, 8, "histogram bins", name="num_bins")
        super().__init__(convention=convention, **kw)
        self.hist = None
        self.edges = None
        self.threshold = None

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.symmetric:
            ab = np.abs(xa)
            if self.hist is None:
                hist, edges = np.histogram(ab, bins=self.num_bins)
                self.hist, self.edges = hist, edges.astype(ab.dtype)
            else:
                edges = self.edges
                amax = ab.max()
                if amax > edges[-1]:
                    width = edges[1] - edges[0]
                    # np.arange may add a bin past the one holding amax, exactly as onnxruntime does
                    edges = np.hstack((edges, np.arange(edges[-1] + width, amax + width, width)))
                hist, edges = np.histogram(ab, bins=edges)
                hist[: len(self.hist)] += self.hist
                self.hist, self.edges = hist, edges.astype(ab.dtype)
        else:
            t = np.asarray(max(abs(lo), abs(hi)), dtype=xa.dtype)
            if self.hist is None:
                self.hist, self.edges = np.histogram(xa, self.num_bins, range=(-t, t))
                self.threshold = t
            elif t <= self.threshold:
                h, _ = np.histogram(xa, len(self.hist), range=(-self.threshold, self.threshold))
                self.hist = h + self.hist
            elif self.threshold == 0:
                h, e = np.histogram(xa, len(self.hist), range=(-t, t))
                self.hist, self.edges, self.threshold = h + self.hist, e, t
            else:
                nb = len(self.hist)
                stride = 2 * self.threshold / nb
                half = int((t - self.threshold) // stride + 1)
                new_t = half * stride + self.threshold
                h, e = np.histogram(xa, nb + 2 * half, range=(-new_t, new_t))
                h[half: nb + half] += self.hist
                self.hist, self.edges, self.threshold = h, e, new_t
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self

    def thresholds(self) -> Tuple[float, float]:
        """(lower, upper) clipping range chosen by the percentile rule (before widening to contain 0)."""
        self._range()
        cdf = np.cumsum(self.hist / self.hist.sum())
        if self.symmetric:
            i = np.searchsorted(cdf, self.percentile / 100.0)
            lo, hi = -self.edges[i], self.edges[i]
        else:
            cut = (100.0 - self.percentile) / 200.0
            lo, hi = self.edges[np.searchsorted(cdf, cut)], self.edges[np.searchsorted(cdf, 1.0 - cut)]
        lo = self.min_val if lo < self.min_val else lo
        hi = self.max_val if hi > self.max_val else hi
        return lo, hi

    def qparams(self) -> QParams:
        lo, hi = self.thresholds()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)


def _histc(x, bins, lo, hi):
    """``torch.histc``: bins of equal width over [lo, hi]; x == hi goes to the last bin; outside dropped.

    The bin index is ``int((x - lo) / (hi - lo) * bins)`` in x's dtype (ATen HistogramKernel.cpp,
    linear interpolation).
    """
    if hi == lo:  # torch widens a zero-width range by 1 on each side
        lo, hi = lo - 1, hi + 1
    inside = (x >= lo) & (x <= hi)
    v = x[inside]
    t = x.dtype.type
    pos = ((v - t(lo)) / (t(hi) - t(lo)) * t(bins)).astype(np.int64)
    pos = np.minimum(pos, bins - 1)
    return np.bincount(pos, minlength=bins).astype(np.float64)


class HistogramObserver(_Observer):
    """PyTorch's ``HistogramObserver``: a ``bins``-bin histogram and an L2 search over its ends.

    ``update`` builds a ``torch.histc``-style histogram over the running [min, max]; when the range
    grows, the old histogram is split into ``upsample_rate`` sub-bins whose centres are re-assigned to the
    new bins (``_upscale_histogram``). ``qparams`` runs ``_non_linear_param_search``: it moves the left or
    the right end inward, one 1e-5 CDF step at a time (the side that would discard more bins goes
    first), and stops as soon as the L2 error of quantizing the histogram mass into
    ``2**bits`` destination bins (uniform density inside each source bin,
    ``norm = density * (end**3 - begin**3) / 3``) grows. The chosen [min, max] then goes through
    :func:`qparams_from_minmax`.

    PyTorch keeps the histogram in float32 and refdet in float64, so a near-equal pair of errors can
    break the other way: the chosen range may differ by a bin in rare cases (the tests compare within
    one bin width).
    """

    def __init__(self, bins: int = 2048, upsample_rate: int = 16, **kw):
        self.bins = _checks.check_int(bins, "bins", low=1)
        self.upsample_rate = _checks.check_int(upsample_rate, "upsample_rate", low=1)
        # the L2 search upsamples the histogram: bins * upsample_rate elements
        _checks.check_allocation(self.bins * self.upsample_rate, 8, "upsampled histogram bins",
                                 name="bins` and `upsample_rate")
        super().__init__(**kw)
        self.histogram = None

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        lo, hi = xa.min(), xa.max()
        if self.histogram is None:
            self.min_val, self.max_val = lo, hi
            self.histogram = _histc(xa, self.bins, lo, hi)
            return self
        new_lo, new_hi = min(self.min_val, lo), max(self.max_val, hi)
        upd = _histc(xa, self.bins, new_lo, new_hi)
        if new_lo == self.min_val and new_hi == self.max_val:
            self.histogram = self.histogram + upd
            return self
        if self.min_val == self.max_val:
            old = _histc(np.asarray([self.min_val]), self.bins, new_lo, new_hi) * self.histogram.sum()
        else:
            old = self._upscale(new_lo, new_hi)
        self.histogram = upd + old
        self.min_val, self.max_val = new_lo, new_hi
        return self

    def _upscale(self, new_lo, new_hi):
        r = self.upsample_rate
        h = np.repeat(self.histogram, r) / r
        lo, hi = float(self.min_val), float(self.max_val)
        size = (hi - lo) / (self.bins * r)
        mids = np.linspace(lo, hi, self.bins * r + 1)[:-1] + 0.5 * size
        bounds = np.linspace(float(new_lo), float(new_hi), self.bins + 1)
        idx = np.searchsorted(bounds, mids, side="right") - 1  # torch.bucketize(right=True) - 1
        idx = np.clip(idx, 0, self.bins - 1)
        return np.bincount(idx, weights=h, minlength=self.bins)

    def _quant_error(self, start, end, dst_nbins):
        """L2 error of quantizing bins [start, end] into ``dst_nbins`` equal bins (uniform density)."""
        bw = (float(self.max_val) - float(self.min_val)) / self.bins
        dw = bw * (end - start + 1) / dst_nbins
        if dw == 0.0:
            return 0.0
        src = np.arange(self.bins)
        begin = (src - start) * bw
        endv = begin + bw
        db = np.clip(np.floor(begin / dw), 0, dst_nbins - 1)
        de = np.clip(np.floor(endv / dw), 0, dst_nbins - 1)
        density = self.histogram / bw

        def norm(b, e):  # integral of x**2 over [b, e], times the density
            return density * (e ** 3 - b ** 3) / 3

        total = norm(begin - (db + 0.5) * dw, np.full(self.bins, dw / 2))
        total = total + (de - db - 1) * norm(-dw / 2, dw / 2)
        total = total + norm(-dw / 2, endv - (de * dw + dw / 2))
        return float(total.sum())

    def search_range(self) -> Tuple[float, float]:
        """The (min, max) chosen by the L2 search (PyTorch ``_non_linear_param_search``)."""
        self._range()
        dst_nbins = 2 ** int(np.log2(QUANT_DTYPES[self.dtype][1] - QUANT_DTYPES[self.dtype][0] + 1))
        bw = (self.max_val - self.min_val) / self.bins
        total = self.histogram.sum()
        csum = np.cumsum(self.histogram)
        step, alpha, beta = 1e-5, 0.0, 1.0
        start, end = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            na, nb = alpha + step, beta - step
            # torch: `while l < end and cSum[l] < na*total: l += 1` (cSum is non-decreasing)
            l_ = min(start + int(np.searchsorted(csum[start:end], na * total, side="left")), end)
            # torch: `while r > start and cSum[r] > nb*total: r -= 1`
            r_ = start + int(np.searchsorted(csum[start + 1:end + 1], nb * total, side="right"))
            ns, ne = start, end
            if (l_ - start) > (end - r_):
                ns = l_
                alpha = na
            else:
                ne = r_
                beta = nb
            if ns == start and ne == end:
                continue
            err = self._quant_error(ns, ne, dst_nbins)
            if err > norm_min:
                break
            norm_min = err
            start, end = ns, ne
        return self.min_val + bw * start, self.min_val + bw * (end + 1)

    def qparams(self) -> QParams:
        lo, hi = self.search_range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)


class MSEObserver(_Observer):
    """Grid search for the clipping range that minimises the squared fake-quant error (refdet's own
    definition; PyTorch core has no MSE observer).

    Candidate ranges shrink the observed one (widened to contain 0): ``[k/K * min, k/K * max]`` for
    ``k = 1..K`` (``K = num_grid``, 100); with ``symmetric=True`` ``[-a_k, a_k]``,
    ``a_k = k/K * max|x|``. Each is turned into qparams with :func:`qparams_from_minmax` and scored by
    ``sum((x - fake_quant(x))**2)`` over every value seen; the lowest error wins and ties go to the
    **larger** range (larger ``k``). The observer keeps every value it has seen (float64), so its
    memory grows with the calibration set.
    """

    def __init__(self, num_grid: int = 100, **kw):
        self.num_grid = _checks.check_int(num_grid, "num_grid", low=1)
        _checks.check_allocation(self.num_grid, 8, "candidate ranges", name="num_grid")
        super().__init__(**kw)
        self._data = []

    def update(self, x: np.ndarray) -> "_Observer":
        xa = self._batch(x).ravel()
        if xa.size == 0:
            return self
        self._data.append(xa.astype(np.float64))
        lo, hi = xa.min(), xa.max()
        self.min_val = lo if self.min_val is None else min(self.min_val, lo)
        self.max_val = hi if self.max_val is None else max(self.max_val, hi)
        return self

    def _candidates(self):
        """(K,) lower and upper ends of the candidate ranges k = 1..K."""
        lo, hi = self._range()
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if self.symmetric:  # SPEC: alpha_k = absmax * k / K, range [-alpha_k, alpha_k]
            lo, hi = -max(-lo, hi), max(-lo, hi)
        f = np.arange(1, self.num_grid + 1, dtype=np.float64) / self.num_grid
        return lo * f, hi * f

    def errors(self) -> np.ndarray:
        """(K,) squared fake-quant errors of the candidate ranges k = 1..K."""
        self._range()
        data = np.concatenate(self._data)
        K = self.num_grid
        los, his = self._candidates()
        qp = qparams_from_minmax(los, his, dtype=self.dtype, symmetric=self.symmetric, axis=0,
                                 convention=self.convention, **self._qkw)
        qlo, qhi = self._qrange()
        s = qp.scale.astype(np.float64)[:, None]
        z = qp.zero_point.astype(np.float64)[:, None]
        out = np.empty(K)
        for i0 in range(0, K, 8):  # chunks of candidates bound the (8, N) temporaries
            sl = slice(i0, i0 + 8)
            q = np.clip(np.rint(data[None, :] / s[sl]) + z[sl], qlo, qhi)
            out[sl] = (((q - z[sl]) * s[sl] - data[None, :]) ** 2).sum(axis=1)
        return out

    def search_range(self) -> Tuple[float, float]:
        """The chosen (min, max): lowest error, ties to the larger range."""
        err = np.asarray(self.errors())
        k = len(err) - 1 - int(np.argmin(err[::-1]))  # the last (largest) index among the minima
        los, his = self._candidates()
        return float(los[k]), float(his[k])

    def qparams(self) -> QParams:
        lo, hi = self.search_range()
        return qparams_from_minmax(lo, hi, dtype=self.dtype, symmetric=self.symmetric,
                                   convention=self.convention, **self._qkw)
