"""
5. Int8 quantization
====================

To run a detector on a phone or an accelerator, its weights and activations are stored as 8-bit
integers and its convolutions accumulate in 32-bit integers. Every framework uses the same *affine*
map between reals and integers, but they differ in how they round, and those differences decide
which integer comes out when a value falls on a tie. This lesson walks through the map, the
rounding modes, the requantization of a conv accumulator, and a whole quantized conv compared with
its float original.
"""
import matplotlib.pyplot as plt
import numpy as np

import refdet

# %%
# The affine map
# --------------
# A real value :math:`x` is stored as an integer :math:`q` with a *scale* :math:`s > 0` and a
# *zero point* :math:`z` (the integer that stands for 0.0):
#
# .. math::
#
#     q = \mathrm{clamp}\!\left(\mathrm{round}\!\left(\frac{x}{s}\right) + z,\ q_{\min},\ q_{\max}\right),
#     \qquad \hat{x} = s\,(q - z).
#
# :func:`refdet.qparams_from_minmax` picks :math:`s, z` from an observed range (widened to contain
# 0 so that zero padding is exact), :func:`refdet.quantize` and :func:`refdet.dequantize` apply
# the map.

qp = refdet.qparams_from_minmax(-1.0, 3.0, dtype="uint8", convention="onnx")
print(f"range [-1, 3] as uint8: scale {float(qp.scale):.6f} (= 4 / 255), zero point {int(qp.zero_point)}")
x = np.linspace(-2.0, 4.5, 2001, dtype=np.float32)
q = refdet.quantize(x, qp.scale, qp.zero_point, dtype="uint8", convention="onnx")
x_hat = refdet.dequantize(q, qp.scale, qp.zero_point)
print("0.0 ->", refdet.quantize(np.float32(0), qp.scale, qp.zero_point, dtype="uint8", convention="onnx"),
      "-> back to", refdet.dequantize(refdet.quantize(np.float32(0), qp.scale, qp.zero_point, dtype="uint8",
                                                         convention="onnx"), qp.scale, qp.zero_point))
inside = (x >= -1) & (x <= 3)
print(f"largest error inside the range: {np.abs(x_hat - x)[inside].max():.6f} (s / 2 = {float(qp.scale) / 2:.6f})")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
ax0.plot(x, x, color="0.6", lw=1, label="x")
ax0.plot(x, x_hat, color="tab:blue", lw=1.5, label=r"$\hat{x} = s\,(q - z)$")
ax0.axvspan(-1, 3, color="tab:green", alpha=0.08, label="the calibrated range [-1, 3]")
ax0.set_xlabel("x")
ax0.set_ylabel("value")
ax0.set_title("quantize then dequantize: a staircase, clamped outside the range")
ax0.legend()
zoom = (x > 0.9) & (x < 1.1)
ax1.step(x[zoom], q[zoom], where="post", color="tab:blue")
ax1.set_xlabel("x")
ax1.set_ylabel("q (uint8)")
ax1.set_title(f"zoom: one step every s = {float(qp.scale):.4f}")
for k in np.unique(q[zoom]):
    ax1.axvline(float(qp.scale) * (k - 0.5 - int(qp.zero_point)), color="0.8", lw=0.8, zorder=0)

# %%
# Rounding modes: the ties decide
# -------------------------------
# ONNX and PyTorch round half to even (``np.rint``), TFLite's reference kernels round half away
# from zero (``std::round``), TF's fake quantization rounds half up (``floor(v + 0.5)``). They agree
# except exactly on the ties :math:`k + 1/2`, and a quantizer meets ties more often than one might
# think: every value that is an odd multiple of :math:`s/2`.

v = np.arange(-2.5, 2.51, 0.5)
print("       v: " + " ".join(f"{a:5.1f}" for a in v))
for name, f in (("half_even", refdet.round_half_even), ("half_away", refdet.round_half_away),
                ("half_up", refdet.round_half_up)):
    print(f"{name:>9}: " + " ".join(f"{a:5.0f}" for a in f(v)))

ties = (np.arange(-20, 20) + 0.5).astype(np.float32) * np.float32(0.02)   # x / s lands on k + 1/2
for cv in ("onnx", "tf"):
    print(f"quantize(k + 1/2 ties, convention={cv!r}):",
          refdet.quantize(ties[18:23], np.float32(0.02), 0, convention=cv).tolist())

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
u = np.linspace(-3, 3, 1201)
for off, (name, f, c) in enumerate((("half to even (ONNX, PyTorch)", refdet.round_half_even, "tab:blue"),
                                     ("half away from zero (TFLite reference)", refdet.round_half_away, "tab:orange"),
                                     ("half up (TF fake quant)", refdet.round_half_up, "tab:green"))):
    ax.step(u, f(u) + 0.12 * (off - 1), where="mid", color=c, lw=1.8, label=name)
    at_ties = np.arange(-2.5, 2.6, 1.0)
    ax.plot(at_ties, f(at_ties) + 0.12 * (off - 1), "o", color=c, ms=5)
ax.set_xlabel("v = x / s")
ax.set_ylabel("round(v)  (curves offset by 0.12 to be seen)")
ax.set_title("Three rounding rules: equal everywhere except on the ties (dots)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)

# %%
# Requantization: from the int32 accumulator to int8
# --------------------------------------------------
# A quantized conv sums integer products into an int32 accumulator ``acc``. Its real value is
# :math:`s_x s_w\,\mathrm{acc}`; to store it with the output's scale :math:`s_y` it is multiplied by
# :math:`M = s_x s_w / s_y` and rounded:
#
# .. math::
#
#     q_y = \mathrm{clamp}\left(\mathrm{round}(\mathrm{acc} \cdot M) + z_y,\ -128,\ 127\right).
#
# TFLite never touches a float here: :func:`refdet.quantize_multiplier` writes :math:`M` as a Q31
# integer and a shift, and the product is rounded twice (gemmlowp's ``SaturatingRoundingDoubling
# HighMul`` then ``RoundingDivideByPOT``). onnxruntime multiplies in float32. :func:`refdet.requantize`
# has each runtime's arithmetic, bit for bit.
#
# The double rounding is visible: with :math:`M = q \cdot 2^{-31} \cdot 2^{-6}` the product is
# first rounded to a multiple of :math:`2^{-6}`, and a value just below a half (within
# :math:`2^{-7}`) lands exactly on the tie, which the second rounding sends away from zero.
# TFLite builds with ``TFLITE_SINGLE_ROUNDING`` (``mode="tflite_single"``) round once.

M = 0.0123456789
print("quantize_multiplier(M):", refdet.quantize_multiplier(M), "=",
      refdet.quantize_multiplier(M).multiplier * 2.0 ** (refdet.quantize_multiplier(M).shift - 31))
acc = np.arange(-200_000, 200_001, dtype=np.int64)
modes = ("tflite", "tflite_single", "onnxruntime", "onnx_reference", "float_rne")
outs = {m: refdet.requantize(acc, M, 0, mode=m, qmin=-(2 ** 15), qmax=2 ** 15 - 1) for m in modes}
exact = np.floor(acc * M + 0.5)                    # acc * M is never a tie in float64 here
for m in modes:
    print(f"{m:>14}: differs from round-to-nearest of the exact product on "
          f"{int((outs[m] != exact).sum())} of {acc.size} accumulators")
off = np.flatnonzero(outs["tflite"] != exact)[:3]
for a in acc[off]:
    print(f"  acc {a}: exact product {a * M:.6f}, tflite {outs['tflite'][a + 200_000]}, nearest {exact[a + 200_000]:.0f}")

fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
diff_counts = [int((outs[m] != exact).sum()) for m in modes]
ax.bar(modes, diff_counts, color=["tab:orange", "tab:orange", "tab:blue", "tab:blue", "tab:green"])
for i, n in enumerate(diff_counts):
    ax.text(i, n, str(n), ha="center", va="bottom")
ax.set_ylabel("accumulators off by one")
ax.set_title(f"requantize(acc, M = {M}), every acc in [-200000, 200000]:\n"
             "results that differ from rounding the exact product (orange: TFLite, blue: ONNX)", fontsize=10)

# %%
# A quantized conv against the float conv
# ---------------------------------------
# Now the whole layer, as an ONNX ``QLinearConv``: the activations as uint8 (per tensor, from
# their range), the weights as int8 (symmetric, per output channel), the bias as int32 in units
# of :math:`s_x s_{w,f}`, the output requantized to uint8 with a scale calibrated on the float
# output. :func:`refdet.qlinear_conv` computes it as onnxruntime does.

rng = np.random.default_rng(0)
xf = np.maximum(rng.normal(0.3, 1.0, size=(1, 8, 20, 20)), 0).astype(np.float32)   # post-ReLU activations
wf = (rng.normal(0, 0.2, size=(16, 8, 3, 3))).astype(np.float32)
bf = rng.normal(0, 0.1, size=16).astype(np.float32)
y_float, _ = refdet.conv2d_forward(xf, wf, bf, padding=1)

xq_p = refdet.qparams_from_minmax(xf.min(), xf.max(), dtype="uint8", convention="onnx")
xq = refdet.quantize(xf, xq_p.scale, xq_p.zero_point, dtype="uint8", convention="onnx")
wq = refdet.quantize_weights(wf, axis=0, convention="onnx")
bq = refdet.quantize_bias(bf, xq_p.scale, wq.scale)
yq_p = refdet.qparams_from_minmax(y_float.min(), y_float.max(), dtype="uint8", convention="onnx")
yq = refdet.qlinear_conv(xq, xq_p.scale, xq_p.zero_point, wq.q, wq.scale, wq.zero_point,
                         yq_p.scale, np.uint8(yq_p.zero_point), bq.q, padding=1)
y_hat = refdet.dequantize(yq, yq_p.scale, yq_p.zero_point)
err_lsb = (y_hat - y_float) / float(yq_p.scale)
print(f"output scale {float(yq_p.scale):.5f}, zero point {int(yq_p.zero_point)}")
print(f"SQNR {refdet.sqnr_db(y_float, y_hat):.1f} dB; error within {np.abs(err_lsb).max():.2f} output steps")

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
ax0.plot(y_float.ravel(), y_hat.ravel(), ".", ms=1.5, alpha=0.4)
lim = [y_float.min(), y_float.max()]
ax0.plot(lim, lim, color="k", lw=0.8)
ax0.set_xlabel("float conv output")
ax0.set_ylabel("int8 conv output, dequantized")
ax0.set_title(f"QLinearConv vs float: SQNR {refdet.sqnr_db(y_float, y_hat):.1f} dB")
ax1.hist(err_lsb.ravel(), bins=np.linspace(-1.5, 1.5, 61), color="tab:blue")
ax1.set_xlabel("error in output steps (s_y)")
ax1.set_ylabel("outputs")
ax1.set_title("most of the error is the final rounding (|error| <= 0.5 step)\n"
              "plus the rounding of the inputs and weights")
