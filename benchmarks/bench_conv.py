"""Convolution: refdet.conv2d_forward + conv2d_backward vs torch (same process, 1 thread).

Issue target: a 3x3, 256 -> 256 channel convolution (padding 1) on a 1 x 256 x 100 x 100 map (an FPN
P3 level), forward + backward (dx, dw, db):

* float32: at most 1.3x torch's CPU time (``F.conv2d`` forward + autograd backward);
* float64: within 1.5x of the time a float64 GEMM of the same FLOPs takes (``floor_flops``: the
  forward and the two backward products are each 2 * F * C*KH*KW * Ho*Wo FLOPs, 3 GEMMs in all).

Also reported: forward alone in float32 (the inference path), and the float64 pair against torch.

refdet's time is three BLAS GEMMs (forward, dw, dx) plus two im2col copies and a 9-tap col2im, so the
float32 ratio is set by NumPy's BLAS. On this machine (AMD EPYC with AVX-512) NumPy's OpenBLAS 0.3.31
detects the core as "Haswell" and runs its AVX2 sgemm, about 2x slower than torch's oneDNN
convolution; run ``OPENBLAS_CORETYPE=SkylakeX python -m benchmarks.run conv`` to use OpenBLAS's
AVX-512 kernels (the ratio then drops from ~1.8 to ~1.0). Check which kernel is in use with
``threadpoolctl.threadpool_info()`` (``architecture``).
"""
import numpy as np

from benchmarks._harness import Bench, torch_or_none
from refdet.layers import conv2d_backward, conv2d_forward

_B, _C, _F, _H, _W, _K = 1, 256, 256, 100, 100, 3


def _setup(dtype):
    def setup():
        rng = np.random.default_rng(0)
        s = {"x": rng.standard_normal((_B, _C, _H, _W)).astype(dtype),
             "w": (rng.standard_normal((_F, _C, _K, _K)) * 0.02).astype(dtype),
             "b": rng.standard_normal(_F).astype(dtype)}
        s["dy"] = rng.standard_normal((_B, _F, _H, _W)).astype(dtype)
        torch = torch_or_none()
        if torch is not None:
            s["tx"] = torch.tensor(s["x"], requires_grad=True)
            s["tw"] = torch.tensor(s["w"], requires_grad=True)
            s["tb"] = torch.tensor(s["b"], requires_grad=True)
            s["tdy"] = torch.tensor(s["dy"])
        return s
    return setup


def _refdet_fwd_bwd(s):
    y, cache = conv2d_forward(s["x"], s["w"], s["b"], padding=1)
    return conv2d_backward(s["dy"], cache)


def _refdet_fwd(s):
    return conv2d_forward(s["x"], s["w"], s["b"], padding=1)[0]


def _torch_fwd_bwd(s):
    import torch
    s["tx"].grad = s["tw"].grad = s["tb"].grad = None
    y = torch.nn.functional.conv2d(s["tx"], s["tw"], s["tb"], padding=1)
    y.backward(s["tdy"])
    return s["tx"].grad


def _torch_fwd(s):
    import torch
    with torch.no_grad():
        return torch.nn.functional.conv2d(s["tx"], s["tw"], s["tb"], padding=1)


def _flops(n_gemms):
    def f(s):
        return 2.0 * _F * (_C * _K * _K) * (_H * _W) * _B * n_gemms, s["x"].dtype
    return f


_have_torch = torch_or_none() is not None

BENCHMARKS = [
    Bench("conv2d 3x3 256->256 1x256x100x100 fwd+bwd float32", _setup(np.float32), _refdet_fwd_bwd,
          other=_torch_fwd_bwd if _have_torch else None, other_name="torch conv2d + autograd", target=1.3,
          floor_flops=_flops(3), repeat=5),
    Bench("conv2d 3x3 256->256 1x256x100x100 fwd+bwd float64", _setup(np.float64), _refdet_fwd_bwd,
          other=_torch_fwd_bwd if _have_torch else None, other_name="torch conv2d + autograd (float64)",
          floor_flops=_flops(3), repeat=5, extra={"floor_target": 1.5}),
    Bench("conv2d 3x3 256->256 1x256x100x100 forward float32", _setup(np.float32), _refdet_fwd,
          other=_torch_fwd if _have_torch else None, other_name="torch conv2d (no_grad)",
          floor_flops=_flops(1), repeat=5),
]
