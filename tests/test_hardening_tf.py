"""Issue 13 hardening of refdet.tf_ops: the fuzz walk reaches every public tf_ops function, and the
bad-argument findings it made there stay fixed (each refused with a TypeError/ValueError naming the
argument, before any huge allocation). TF's own validation decides the ranges:
``iou_threshold`` in [0, 1], ``max_output_size >= 0``, ``score_threshold`` any real
(tensorflow/core/kernels/image/non_max_suppression_op.cc), ``min < max`` before ``Nudge``
(tensorflow/core/kernels/fake_quant_ops_functor.h)."""
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import refdet.tf_ops as T
from tests.fuzz.seeds import all_cases, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F = np.float32


def _tf_public_functions():
    out = {}
    for n in T.__all__:
        v = getattr(T, n)
        if callable(v) and not (inspect.isclass(v) and (issubclass(v, tuple) or issubclass(v, BaseException))):
            out[f"tf_ops.{n}"] = v
    return out


def test_every_tf_ops_function_has_a_fuzz_seed():
    seeded = {id(resolve(c.name)) for c in all_cases()}
    funcs = _tf_public_functions()
    assert len(funcs) >= 16
    missing = sorted(k for k, v in funcs.items() if id(v) not in seeded)
    assert not missing, f"tf_ops functions the fuzz walk does not reach: {missing}"


def test_fuzz_walk_of_tf_ops_is_clean():
    # the same walker as tests/test_fuzz_public.py (memory-capped subprocess), on the tf_ops seeds only
    names = sorted({c.name for c in all_cases() if c.name.startswith("tf_ops.")})
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.runner", "--examples", "2", *names], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["functions"] == len(names) and report["calls"] > 1000, report
    bad = [f"{f['function']}({f['variant']}): {f['problem']}: {f['detail'][:200]}" for f in report["failures"]]
    assert not bad, "\n".join(bad)


def _boxes(n=6):
    r = np.random.default_rng(0)
    xy = r.uniform(0, 10, (n, 2)).astype(F)
    return np.concatenate([xy, xy + r.uniform(1, 5, (n, 2)).astype(F)], axis=1), r.random(n).astype(F)


@pytest.mark.parametrize("bad, err", [(None, TypeError), (1j, TypeError), (np.ones(2), TypeError),
                                      (np.nan, ValueError), ("0.5", TypeError)])
@pytest.mark.parametrize("fn", ["nms", "combined"])
def test_score_threshold_refused_by_name(fn, bad, err):
    b, s = _boxes()
    with pytest.raises(err, match="`score_threshold`"):
        if fn == "nms":
            T.non_max_suppression(b, s, 4, 0.5, bad)
        else:
            T.combined_non_max_suppression(b[None, :, None], s[None, :, None], 3, 4, 0.5, bad)


@pytest.mark.parametrize("thr", [-np.inf, -3.0, 0.0, 2.5, np.inf, np.float32(0.25), np.array(0.1)])
def test_score_threshold_any_real_as_tf(thr):
    # TF sets no range: the answer is the boxes scoring strictly above it
    b, s = _boxes()
    r = T.non_max_suppression(b, s, 6, 1.0, thr)
    assert sorted(r.selected_indices.tolist()) == sorted(np.flatnonzero(s > F(float(thr))).tolist())


def test_huge_sizes_refused_before_allocating():
    b, s = _boxes()
    with pytest.raises(ValueError, match="`max_output_size`"):
        T.non_max_suppression(b, s, 10 ** 12, 0.5, pad_to_max_output_size=True)
    # without padding nothing of that size is made: TF's answer, the boxes that survive
    assert T.non_max_suppression(b, s, 10 ** 12, 0.5).valid_outputs <= len(b)
    with pytest.raises(ValueError, match="`max_total_size`"):
        T.combined_non_max_suppression(b[None, :, None], s[None, :, None], 3, 10 ** 12, 0.5, 0.0)
    img = np.zeros((1, 4, 4, 1), F)
    for fn in (T.resize_bilinear, T.resize_nearest_neighbor):
        with pytest.raises(ValueError, match="`size`"):
            fn(img, (10 ** 9, 10))
    with pytest.raises(ValueError, match="`out_size`"):
        T.resize_source_index(4, 10 ** 12)
    x, w = np.ones((1, 5, 5, 1)), np.ones((2, 2, 1, 1))
    with pytest.raises(ValueError, match="`dilations`"):
        T.conv2d(x, w, 1, "SAME", dilations=10 ** 9)


@pytest.mark.parametrize("box, boxes, name", [
    (None, np.zeros((2, 4)), "box"), (np.zeros(3), np.zeros((2, 4)), "box"),
    (np.zeros((1, 4)), np.zeros((2, 4)), "box"),
    (np.zeros(4, bool), np.zeros((2, 4)), "box"), (np.zeros(4, object), np.zeros((2, 4)), "box"),
    (np.zeros(4), np.zeros(4), "boxes"), (np.zeros(4), np.zeros((2, 3)), "boxes"), (np.zeros(4), "abcd", "boxes")])
def test_tf_iou_validates_its_boxes(box, boxes, name):
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        T.tf_iou(box, boxes)


def test_tf_iou_valid_answer_unchanged():
    b, _ = _boxes()
    got = T.tf_iou(b[0], b)
    assert got.dtype == np.float32 and got[0] == 1.0
    assert np.array_equal(T.tf_iou(b[0].astype(np.float64), b.astype(np.float64))[0], 1.0)


def test_conv_errors_name_tf_arguments():
    x, w = np.ones((1, 5, 6, 2)), np.ones((3, 2, 2, 3))
    x_nan = x.copy()
    x_nan[0, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="`input`"):
        T.conv2d(x_nan, w, 1, "SAME")
    with pytest.raises(TypeError, match="`filters`"):
        T.conv2d(x, w.astype(bool), 1, "SAME")
    with pytest.raises(ValueError, match="`filters`"):
        T.conv2d(x, np.ones((0, 2, 2, 3)), 1, "SAME")
    with pytest.raises(ValueError, match="`dy`.*`strides`"):
        T.conv2d_backprop(x, w, np.ones((1, 3, 3, 3)), 1, "SAME")
    with pytest.raises(ValueError, match="`dy`"):
        T.conv2d_backprop(x, w, np.ones((1, 5, 6)), 1, "SAME")


def test_sigmoid_ce_grad_dloss_validated():
    z, x = np.full((2, 3), 0.5), np.ones((2, 3))
    with pytest.raises(TypeError, match="`dloss`"):
        T.sigmoid_cross_entropy_with_logits_grad(z, x, None)
    with pytest.raises(ValueError, match="`dloss`"):
        T.sigmoid_cross_entropy_with_logits_grad(z, x, np.ones((2, 4)))
    a = T.sigmoid_cross_entropy_with_logits_grad(z, x, 2.0)
    assert np.array_equal(a, T.sigmoid_cross_entropy_with_logits_grad(z, x, np.full((2, 3), 2.0)))


@pytest.mark.parametrize("args, name", [((np.nan, 1.0, 0, 255), "min_value"), ((0.0, np.inf, 0, 255), "max_value"),
                                        ((None, 1.0, 0, 255), "min_value"), ((1.0, 1.0, 0, 255), "min_value"),
                                        ((0.0, 1.0, 0.5, 255), "quant_min"), ((0.0, 1.0, 0, 0), "quant_min"),
                                        ((0.0, 1e39, 0, 255), "max_value"), ((0.0, 1.0, 0, np.ones(2)), "quant_max")])
def test_nudge_refuses_by_name(args, name):
    with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
        T.nudge(*args)


def test_nudge_valid_answer():
    nmin, nmax, scale, inv = T.nudge(-1.0, 1.0, 0, 255)
    assert scale == F(2.0) / F(255) and nmin <= 0 <= nmax and all(v.dtype == F for v in (nmin, nmax, scale, inv))


def test_quant_errors_name_the_argument():
    x = np.ones((2, 3), F)
    with pytest.raises(TypeError, match="`legacy`"):
        T.fake_quant_with_min_max_vars(x, -1.0, 1.0, legacy=np.ones(2, bool))
    with pytest.raises(TypeError, match="`min`"):
        T.fake_quant_with_min_max_args(x, 1j, 1.0)
    with pytest.raises(TypeError, match="`min_range`.*`axis`"):
        T.quantize_v2(x, np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="`axis`"):
        T.quantize_v2(x, 0.0, 1.0, axis=1)
    with pytest.raises(ValueError, match="`axis`"):
        T.quantize_v2(x, np.zeros(3), np.ones(3), axis=0)


@pytest.mark.parametrize("kw, name", [({"in_size": None}, "in_size"), ({"out_size": "8"}, "out_size"),
                                      ({"out_size": np.ones(2, int)}, "out_size"), ({"dtype": "bogus"}, "dtype"),
                                      ({"dtype": bool}, "dtype"), ({"align_corners": np.ones(2)}, "align_corners"),
                                      ({"align_corners": True, "half_pixel_centers": True}, "half_pixel_centers")])
def test_resize_source_index_validates(kw, name):
    args = {"in_size": 5, "out_size": 8, **kw}
    with pytest.raises((TypeError, ValueError), match=f"`{name}"):
        T.resize_source_index(args.pop("in_size"), args.pop("out_size"), **args)
