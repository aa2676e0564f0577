"""Benchmark harness: refdet against torchvision/torch (same process, 1 thread, medians) and against
the machine's limit (memory bandwidth floor, or GEMM throughput for convolutions).

Each ``benchmarks/bench_<area>.py`` defines ``BENCHMARKS``: a list of :class:`Bench`. Run them all with
``python -m benchmarks.run`` (or name areas: ``python -m benchmarks.run iou nms``).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass
class Bench:
    """One measurement.

    name : what is measured, e.g. "box_iou 120000x100 float32"
    setup : () -> state (built once, not timed)
    refdet : (state) -> anything; the refdet call
    other : (state) -> anything; the reference implementation's call (None if not installed)
    other_name : what ``other`` is ("torchvision.ops.box_iou")
    target : the ratio refdet/other to reach (from the issue), or None
    floor_bytes : (state) -> bytes that must at least be read + written (for the bandwidth floor)
    floor_flops : (state) -> (flops, dtype) for a GEMM-throughput floor
    """
    name: str
    setup: Callable
    refdet: Callable
    other: Optional[Callable] = None
    other_name: str = ""
    target: Optional[float] = None
    floor_bytes: Optional[Callable] = None
    floor_flops: Optional[Callable] = None
    repeat: int = 7
    extra: dict = field(default_factory=dict)


def limit_threads():
    """One thread for BLAS (threadpoolctl) and torch; returns the threadpoolctl context (keep it)."""
    ctx = None
    try:
        from threadpoolctl import threadpool_limits
        ctx = threadpool_limits(limits=1)
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass
    return ctx


def median_time(fn, state, repeat=7, min_time=0.05):
    """Median wall time of ``fn(state)`` over ``repeat`` runs (each run looped to last >= min_time)."""
    fn(state)  # warm-up
    t0 = time.perf_counter()
    fn(state)
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-9)))
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(number):
            fn(state)
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times))


_BW = None
_GEMM = {}


def memory_bandwidth():
    """Bytes per second of a large NumPy copy (read + write counted), 1 thread: the machine's limit."""
    global _BW
    if _BW is None:
        a = np.ones(32 * 1024 * 1024, dtype=np.float64)  # 256 MiB
        b = np.empty_like(a)
        t = median_time(lambda s: np.copyto(b, a), None, repeat=5)
        _BW = 2 * a.nbytes / t
    return _BW


def gemm_flops_per_second(dtype):
    """FLOP/s of a square GEMM in ``dtype`` on 1 thread."""
    dtype = np.dtype(dtype)
    if dtype not in _GEMM:
        n = 1024
        a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
        t = median_time(lambda s: a @ a, None, repeat=5)
        _GEMM[dtype] = 2 * n ** 3 / t
    return _GEMM[dtype]


def run(benches, *, out=print):
    """Measure and print a table; returns a list of result dicts."""
    ctx = limit_threads()  # noqa: F841 (keeps the limit alive)
    rows = []
    header = f"{'benchmark':52s} {'refdet ms':>10s} {'other ms':>10s} {'ratio':>7s} {'target':>7s} {'floor ms':>9s} {'x floor':>8s}  other"
    out(header)
    out("-" * len(header))
    for b in benches:
        state = b.setup()
        if b.other is None:
            t_ref, t_oth = median_time(b.refdet, state, b.repeat), None
        else:
            # interleaved (refdet, other, refdet, other, ...) so that drift in the machine's speed
            # affects both sides alike; medians of each
            ref_t, oth_t = [], []
            for _ in range(b.repeat):
                ref_t.append(median_time(b.refdet, state, 1))
                oth_t.append(median_time(b.other, state, 1))
            t_ref, t_oth = float(np.median(ref_t)), float(np.median(oth_t))
        floor = None
        if b.floor_bytes is not None:
            floor = b.floor_bytes(state) / memory_bandwidth()
        elif b.floor_flops is not None:
            flops, dt = b.floor_flops(state)
            floor = flops / gemm_flops_per_second(dt)
        ratio = t_ref / t_oth if t_oth else None
        ok = "" if (ratio is None or b.target is None) else (" ok" if ratio <= b.target else " MISS")
        out(f"{b.name:52s} {t_ref*1e3:10.3f} {(t_oth*1e3 if t_oth else float('nan')):10.3f} "
            f"{(ratio if ratio else float('nan')):7.2f} {(b.target if b.target else float('nan')):7.2f} "
            f"{(floor*1e3 if floor else float('nan')):9.3f} {(t_ref/floor if floor else float('nan')):8.2f}  "
            f"{b.other_name}{ok}")
        rows.append(dict(name=b.name, refdet_s=t_ref, other_s=t_oth, ratio=ratio, target=b.target,
                         floor_s=floor, other=b.other_name))
        del state
        gc.collect()
    return rows


def torch_or_none():
    try:
        import torch
        return torch
    except ImportError:
        return None


def torchvision_or_none():
    try:
        import torchvision
        return torchvision
    except ImportError:
        return None
