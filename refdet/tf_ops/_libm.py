"""The C library arithmetic TF's CPU kernels call, where NumPy's own differs in the last bit.

``expf``: glibc's single-precision ``exp`` (``sysdeps/ieee754/flt-32/e_expf.c`` with the table of
``e_exp2f_data.c``, glibc >= 2.27: the libm TF's Linux wheels call through ``std::exp(float)``). It is
not correctly rounded (0.502 ulp), and NumPy's float32 ``exp`` (SIMD) and a double ``exp`` rounded to
float32 each differ from it on a few inputs in 10^4, enough to move a soft-NMS score by an ulp. The
algorithm, in double: ``x N / ln 2 = k + r`` (N = 32), ``2^(k/N)`` from the table,
``2^(r/N) ~ 1 + C2 r + C1 r^2 + C0 r^3``, one rounding to float at the end. This is the build without
fused multiply-adds; glibc's FMA build (chosen at run time on CPUs with FMA) rounds differently on a
few inputs in 10^5 (glibc's own comment: "Wrong count: 170635 ... with fma" out of 2^32); on the
machines refdet was tested on both agreed with ``libm.expf`` on 20000 arguments in [-20, 0].
"""
from __future__ import annotations

import numpy as np

_TAB = np.array([
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540,
], dtype=np.uint64)            # tab[i] = bits(2^(i/32)) - (i << 47)
_N = 32
_INV_LN2_N = float.fromhex("0x1.71547652b82fep+0") * _N
_C = (float.fromhex("0x1.c6af84b912394p-5") / _N / _N / _N, float.fromhex("0x1.ebfce50fac4f3p-3") / _N / _N,
      float.fromhex("0x1.62e42ff0c52d6p-1") / _N)
_SHIFT = float.fromhex("0x1.8p+52")            # adding it rounds z to an integer held in the low bits
_UFLOW = float.fromhex("-0x1.9fe368p6")        # log(2^-150): below it expf returns 0
_OFLOW = float.fromhex("0x1.62e42ep6")         # log(2^128)


def expf(x: np.ndarray) -> np.ndarray:
    """glibc ``expf`` of a float32 array (elementwise, float32 result); see the module docstring."""
    x = np.asarray(x, dtype=np.float32)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        z = _INV_LN2_N * xd
        kd = z + _SHIFT
        ki = kd.view(np.uint64)
        kd = kd - _SHIFT
        r = z - kd
        t = _TAB[ki % np.uint64(_N)] + (ki << np.uint64(47))
        s = t.view(np.float64)
        zz = _C[0] * r + _C[1]
        r2 = r * r
        y = _C[2] * r + 1.0
        y = zz * r2 + y
        y = (y * s).astype(np.float32)
    y = np.where(xd < _UFLOW, np.float32(0), y)
    y = np.where(xd > _OFLOW, np.float32(np.inf), y)
    return np.where(np.isnan(x), x, y).astype(np.float32)
