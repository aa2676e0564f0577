"""``refdet quantize`` and ``refdet demo --quantize``: train the demo RetinaNet, quantize its head, report.

The application layer above :mod:`refdet.quant`: it builds a detector (:mod:`refdet.detector`),
makes synthetic data, calibrates and quantizes the head (:func:`refdet.quant.quantize_retinanet_head`),
runs the integer paths and prints :func:`refdet.quant.format_accuracy_report`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence

import numpy as np

from refdet import _checks
from refdet.apps.progress import Progress
from refdet.detector import Detector, backbone_forward, sgd_momentum_update
from refdet.fpn import fpn_forward
from refdet.heads import retinanet_head_forward
from refdet.quant.affine import dequantize
from refdet.quant.head import _OBSERVERS, _RUN_MODES
from refdet.quant.head import float_head_layers, quantize_retinanet_head, run_fake_quant_head, run_quantized_head
from refdet.quant.report import accuracy_report, format_accuracy_report
from refdet.synthetic import make_synthetic_dataset

__all__ = ["retinanet_features", "quantize_demo", "quantize_command"]


def retinanet_features(det: Detector, params: dict, images: np.ndarray) -> list:
    """The FPN levels a :class:`refdet.detector.Detector` ("retinanet") feeds its head: list of (B, F, H, W)."""
    if det.config.model != "retinanet":
        raise ValueError(f"quantization needs a 'retinanet' detector; got {det.config.model!r}")
    x = _checks.as_nchw(images, "images")
    feats, _ = backbone_forward(params["backbone"], x)
    levels, _ = fpn_forward(params["fpn"], [feats[i] for i in det.in_stages], extra_blocks="p6p7")
    return levels


def _scheme_of(mode):
    return "tflite" if mode in ("tflite", "tflite_single") else "onnx"


def _layer_table(qhead):
    lines = [f"      {'layer':32s} {'x scale':>9s} {'x zp':>5s} {'y scale':>9s} {'y zp':>5s} {'w scale range':>21s} "
             f"{'M range':>21s} {'shift':>9s}",
             f"      {'input (FPN levels)':32s} {'':9s} {'':5s} {float(qhead.input_scale):9.5f} "
             f"{qhead.input_zero_point:5d}"]
    for layer in qhead.cls_layers + qhead.box_layers:
        sh = f"{int(layer.shift.min())}..{int(layer.shift.max())}"
        lines.append(f"      {layer.name:32s} {float(layer.x_scale):9.5f} {layer.x_zero_point:5d} "
                     f"{float(layer.y_scale):9.5f} {layer.y_zero_point:5d} "
                     f"{float(layer.w_scale.min()):9.3e}..{float(layer.w_scale.max()):9.3e} "
                     f"{float(layer.multiplier_double.min()):9.3e}..{float(layer.multiplier_double.max()):9.3e} "
                     f"{sh:>9s}")
    return "\n".join(lines)


def quantize_demo(det: Detector, params: dict, calibration_images: np.ndarray, test, *,
                  modes: Sequence[str] = ("onnxruntime", "tflite"), observer: str = "minmax",
                  write: Callable[[str], object] = print, progress: bool = False) -> dict:
    """Quantize a trained demo RetinaNet's head, run the integer paths, print and return the reports.

    Parameters
    ----------
    det : refdet.detector.Detector ("retinanet")
    params : its trained parameters
    calibration_images : ndarray, shape (B, 3, H, W)
    test : refdet.synthetic.SyntheticBatch
        Held-out images and ground truth for the report (AP change included).
    modes : sequence of run modes (see :func:`run_quantized_head`); each uses the matching scheme
        (tflite modes: the TFLite converter's rounding; the others: onnxruntime's).
    observer : str
    write : callable
    progress : bool
        A progress line on stderr over the integer runs (:mod:`refdet.apps.progress`).

    Returns
    -------
    dict
        column title -> :func:`accuracy_report` dict, plus ``"rounding_only"``: how many final integer
        outputs onnxruntime and TFLite rounding change on one and the same quantized model.
    """
    for m in modes:
        _checks.check_choice(m, "mode", _RUN_MODES)
    calib = retinanet_features(det, params, calibration_images)
    feats = retinanet_features(det, params, test.images)
    float_out, _ = retinanet_head_forward(params["head"], feats)
    float_layers = float_head_layers(params["head"], feats)
    gts = list(zip(test.boxes, test.labels))
    common = dict(image_size=det.image_size, ground_truths=gts)
    write(f"[Q] post-training quantization of the RetinaNet head: int8 per-channel symmetric weights, "
          f"{observer} activation ranges from {len(calibration_images)} calibration images, int32 biases")
    schemes = sorted({_scheme_of(m) for m in modes} | {"onnx"})
    # work items: quantize per scheme, the fake-quant run, one run per mode, the rounding comparison
    with Progress(len(schemes) + len(modes) + 2, "      quantization", unit="runs", enabled=progress) as bar:
        qheads = {}
        for scheme in schemes:
            qheads[scheme] = quantize_retinanet_head(params["head"], calib, scheme=scheme, observer=observer)
            bar.update(status=f"quantized ({scheme} scheme)")
        bar.write("    quantization parameters (scheme onnx; M = s_x s_w / s_y per output channel):", _Writer(write))
        bar.write(_layer_table(qheads["onnx"]), _Writer(write))

        def layer_tensors(inter, qh, deq):
            out = {}
            names = ["input"] + [layer.name for layer in qh.cls_layers + qh.box_layers]
            lay = {layer.name: layer for layer in qh.cls_layers + qh.box_layers}
            for n in names:
                if deq:
                    s, z = ((qh.input_scale, qh.input_zero_point) if n == "input"
                            else (lay[n].y_scale, lay[n].y_zero_point))
                    approx = [dequantize(v, s, z) for v in inter[n]]
                else:
                    approx = inter[n]
                short = n.replace("classification_head", "cls").replace("regression_head", "box")
                out[f"{short}"] = (float_layers[n], approx)
            return out

        reports = {}
        fq = run_fake_quant_head(qheads["onnx"], feats, return_intermediates=True)
        bar.update(status="fake quantization")
        reports["fake-quant (sim)"] = accuracy_report(
            float_out, fq, det.anchors, extra_tensors=layer_tensors(fq.intermediates, qheads["onnx"], False), **common)
        for m in modes:
            qh = qheads[_scheme_of(m)]
            out = run_quantized_head(qh, feats, mode=m, return_intermediates=True)
            bar.update(status=f"int8 {m}")
            reports[f"int8 {m}"] = accuracy_report(float_out, out, det.anchors,
                                                   extra_tensors=layer_tensors(out.intermediates, qh, True), **common)
        # the same quantized model under two runtimes' rounding (reported below)
        qt = qheads["onnx"]
        a = run_quantized_head(qt, feats, mode="onnxruntime")
        b = run_quantized_head(qt, feats, mode="tflite")
        bar.update(status="one model under onnxruntime and tflite rounding")
    write(f"    accuracy on {len(test.images)} held-out images (float32 head = reference; per-layer SQNR on "
          f"the dequantized activations):")
    for line in format_accuracy_report(reports).splitlines():
        write("      " + line)
    # the same quantized model under two runtimes' rounding: what differs is rounding alone
    diffs = [np.abs(x.astype(np.int64) - y.astype(np.int64)) for x, y in zip(a.cls_q + a.bbox_q, b.cls_q + b.bbox_q)]
    n_diff = int(sum(np.count_nonzero(d) for d in diffs))
    n_all = int(sum(d.size for d in diffs))
    max_d = int(max(int(d.max()) for d in diffs))
    write(f"    rounding alone (one onnx-scheme model, onnxruntime vs tflite requantization and input rounding): "
          f"{n_diff} of {n_all} final int8 outputs differ, by at most {max_d} LSB")
    reports["rounding_only"] = {"differing": n_diff, "total": n_all, "max_lsb": max_d}
    # outputs pinned at the ends of the int8 range: the calibration range was exceeded (clipping error)
    sat = {}
    for field, layer, qs in (("cls_logits", qt.cls_layers[-1], a.cls_q), ("bbox_deltas", qt.box_layers[-1], a.bbox_q)):
        n_lo = int(sum(np.count_nonzero(v == layer.qmin) for v in qs))
        n_hi = int(sum(np.count_nonzero(v == layer.qmax) for v in qs))
        sat[field] = {"at_qmin": n_lo, "at_qmax": n_hi, "total": int(sum(v.size for v in qs))}
        lo_v = float(layer.y_scale) * (layer.qmin - layer.y_zero_point)
        hi_v = float(layer.y_scale) * (layer.qmax - layer.y_zero_point)
        write(f"    saturated {field} (onnxruntime): {n_lo} at {layer.qmin} (= {lo_v:.3f}), {n_hi} at {layer.qmax} "
              f"(= {hi_v:.3f}) of {sat[field]['total']}: values beyond the calibrated range are clipped")
    reports["saturation"] = sat
    return reports


class _Writer:
    """A file-like ``write`` for :meth:`Progress.write`: hands whole lines to the caller's ``write``."""

    def __init__(self, write):
        self._write = write

    def write(self, text):
        for line in text.rstrip("\n").split("\n"):
            self._write(line)

    def flush(self):
        """Nothing to flush: :meth:`write` hands every line on at once, nothing is buffered here."""


def _quantize_args(p):
    from refdet.apps.args import int_range
    p.add_argument("--seed", type=int_range(0), default=0)
    p.add_argument("--steps", type=int_range(0), default=400, help="training steps before quantizing (default "
                   "400, about half a minute)")
    p.add_argument("--mode", nargs="+", choices=_RUN_MODES, default=["onnxruntime", "tflite"],
                   help="integer-path runtimes to reproduce (default: onnxruntime tflite)")
    p.add_argument("--observer", choices=tuple(_OBSERVERS), default="minmax")
    p.add_argument("--n-train", type=int_range(1), default=512)
    p.add_argument("--n-calib", type=int_range(1), default=32, help="calibration images (fresh synthetic ones)")
    p.add_argument("--n-test", type=int_range(1), default=64, help="held-out images for the report")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def _single_thread():
    """Limit BLAS to one thread when threadpoolctl is installed: small matmuls on a shared machine run
    many times faster single-threaded (no effect on results)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(1)


def quantize_command(*, seed: int = 0, steps: int = 400, modes: Sequence[str] = ("onnxruntime", "tflite"),
                     observer: str = "minmax", n_train: int = 512, n_calib: int = 32, n_test: int = 64,
                     batch: int = 8, lr: float = 0.02, write: Callable[[str], object] = print,
                     progress: bool = True) -> dict:
    """Train the demo RetinaNet briefly, quantize its head and report (``refdet quantize``).

    ``progress``: a progress line for the training steps on stderr (:mod:`refdet.apps.progress`).
    """

    steps = _checks.check_int(steps, "steps", low=0)
    for name, v in (("n_train", n_train), ("n_calib", n_calib), ("n_test", n_test)):
        _checks.check_int(v, name, low=1)
    batch = min(_checks.check_int(batch, "batch", low=1), n_train)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with _single_thread():
        train = make_synthetic_dataset(n_train, rng=rng)
        calib = make_synthetic_dataset(n_calib, rng=rng)
        test = make_synthetic_dataset(n_test, rng=rng)
        det = Detector("retinanet")
        params = det.init(rng=rng)
        write(f"refdet quantize: train the demo RetinaNet for {steps} steps (seed {seed}), then quantize its head")
        velocity = None
        losses = None
        t_train = time.perf_counter()
        with Progress(steps, "      training", unit="steps", enabled=progress) as bar:
            for step in range(steps):
                idx = rng.choice(n_train, size=batch, replace=False)
                lr_t = lr * min(1.0, (step + 1) / max(1, steps // 10))
                losses, grads = det.train_step(params, train.images[idx],
                                               [(train.boxes[i], train.labels[i]) for i in idx], rng=rng)
                params, velocity = sgd_momentum_update(params, grads, velocity, lr=lr_t, momentum=0.9,
                                                       weight_decay=1e-4, max_grad_norm=10.0)
                bar.update(status=f"loss {losses['total']:.4f}")
        if losses is not None:
            write(f"      {steps} steps in {time.perf_counter() - t_train:.1f}s, last loss {losses['total']:.4f}")
        reports = quantize_demo(det, params, calib.images, test, modes=tuple(modes), observer=observer, write=write,
                                progress=progress)
    write(f"done in {time.perf_counter() - t0:.1f}s")
    return reports


def _quantize_run(args):
    quantize_command(seed=args.seed, steps=args.steps, modes=tuple(args.mode), observer=args.observer,
                     n_train=args.n_train, n_calib=args.n_calib, n_test=args.n_test, progress=not args.quiet)
    return 0
