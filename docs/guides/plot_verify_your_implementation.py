"""
Verify your implementation
==========================

refdet's main job is to check *other* implementations: your NMS, your matcher, your box coder,
your focal loss, or a framework's. This guide shows the four ways to do it, from the quickest to
the most thorough, each on a small NMS written here with a classic bug (``>=`` instead of ``>``):

1. ``refdet verify`` from the shell: one command, a table, a non-zero exit status on any
   disagreement;
2. ``refdet.testing.conformance.check_<op>`` inside your own pytest suite;
3. the comparators (``assert_nms_equal``, ``assert_allclose_ulp``, ``assert_matches_equal``, ...)
   when you already have two results and want to know *why* they differ;
4. hypothesis strategies (``refdet.testing.strategies``) for your own property tests, and
   ``check_gradients`` for your backward passes.

Every code cell below runs when the documentation is built; the output shown is what it printed.
"""
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

import refdet
from refdet.testing import conformance

# %%
# The implementation under test
# -----------------------------
# A greedy NMS as many projects write it. It sorts by score (stable, so tied scores keep their
# index order, like torchvision), keeps the best box, drops every box that overlaps it, repeats.
# The bug: it drops a box when ``IoU >= threshold``; torchvision (and refdet's default profile)
# drops it only when ``IoU > threshold``. The two agree until an IoU lands *exactly* on the
# threshold, which real data does (a box half the height of another, threshold 0.5).

MY_NMS = textwrap.dedent('''
    import numpy as np

    def nms(boxes, scores, iou_threshold, inclusive=True, dtype=np.float64):
        """Greedy NMS: my project's version (inclusive=True is the bug)."""
        boxes = np.asarray(boxes, dtype=dtype)
        order = np.argsort(-np.asarray(scores), kind="stable")
        x1, y1, x2, y2 = boxes.T
        area = (x2 - x1) * (y2 - y1)
        keep, suppressed = [], np.zeros(len(boxes), dtype=bool)
        for i in order:
            if suppressed[i]:
                continue
            keep.append(i)
            w = np.clip(np.minimum(x2[i], x2) - np.maximum(x1[i], x1), 0, None)
            h = np.clip(np.minimum(y2[i], y2) - np.maximum(y1[i], y1), 0, None)
            inter = w * h
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = inter / (area[i] + area - inter)       # 0 / 0 = NaN never suppresses
            suppressed |= (iou >= iou_threshold) if inclusive else (iou > iou_threshold)
        return np.array(keep, dtype=np.int64)

    def nms_strict(boxes, scores, iou_threshold):
        """The comparison fixed, the arithmetic still float64."""
        return nms(boxes, scores, iou_threshold, inclusive=False)

    def nms_fixed(boxes, scores, iou_threshold):
        """Both fixed: '>' and the IoU computed in the boxes' own dtype, as torchvision does."""
        return nms(boxes, scores, iou_threshold, inclusive=False, dtype=np.asarray(boxes).dtype)
''')
workdir = tempfile.mkdtemp()
with open(os.path.join(workdir, "myops.py"), "w") as f:
    f.write(MY_NMS)
sys.path.insert(0, workdir)
import myops  # noqa: E402  (the module written just above)

# %%
# 1. From the shell: ``refdet verify``
# ------------------------------------
# Point ``refdet verify`` at a callable as ``module:function`` and name the op it implements.
# It runs the op's golden edge cases and then hypothesis-generated cases with a fixed seed (every
# run checks the same cases; ``--cases`` sets how many, 100 by default for a function), and
# prints one row per op; the exit status is 1 if anything disagrees. The command lines are::
#
#     refdet verify --op nms myops:nms                  # your function
#     refdet verify --op nms myops:nms --convention caffe
#     refdet verify torchvision                         # a framework (also onnxruntime, onnx-reference)
#     refdet verify                                     # refdet's self-check + every installed backend
#     refdet verify --op focal_loss mypkg.losses:focal --grad mypkg.losses:focal_grad --json
#
# Here it is run (``python -m refdet`` is the same program as ``refdet``):

env = dict(os.environ, PYTHONPATH=os.pathsep.join([workdir, os.path.dirname(os.path.dirname(refdet.__file__))]))
run = subprocess.run([sys.executable, "-m", "refdet", "verify", "--op", "nms", "myops:nms", "--cases", "25", "--quiet"],
                     cwd=workdir, env=env, capture_output=True, text=True)
print(run.stdout)
print("exit status:", run.returncode)

# %%
# The first mismatch is explained: which case (a golden one, "IoU exactly at the threshold"),
# what each side kept, the IoU that decided it, and the refdet setting that reproduces your result
# (``inclusive=True``: suppress when IoU >= threshold, the py-faster-rcnn behaviour). Fix the
# comparison and run it again:

run = subprocess.run([sys.executable, "-m", "refdet", "verify", "--op", "nms", "myops:nms_strict", "--cases", "25", "--quiet"],
                     cwd=workdir, env=env, capture_output=True, text=True)
print(run.stdout)
print("exit status:", run.returncode)

# %%
# Fewer cases disagree, and the report shows the second, subtler bug: the boxes are float32, the
# threshold is the float32 IoU of a pair, and this NMS computes the IoU in float64, where it comes
# out a hair *above* the threshold ("also reproduced by: float64 math rounded to float32").
# torchvision computes the IoU in the boxes' dtype, and so does refdet's default profile. Compute
# in the input dtype as well, and every case agrees:

run = subprocess.run([sys.executable, "-m", "refdet", "verify", "--op", "nms", "myops:nms_fixed", "--cases", "25", "--quiet"],
                     cwd=workdir, env=env, capture_output=True, text=True)
print(run.stdout)
print("exit status:", run.returncode)

# %%
# If your implementation *should* behave like py-faster-rcnn, say so: ``--convention caffe``
# compares with refdet's Caffe profile instead (``>=``, highest index first on ties, +1 pixel
# widths), and then the ``+1`` widths are what differs.

# %%
# 2. Inside your test suite: ``conformance.check_<op>``
# ------------------------------------------------------
# The same checks as Python functions. In a test file::
#
#     from refdet.testing import conformance
#     from myproject.ops import nms
#
#     def test_nms_matches_torchvision_semantics():
#         conformance.check_nms(nms)        # raises AssertionError with the explanation
#
# ``check_nms`` returns a :class:`~refdet.testing.conformance_core.ConformanceReport` when everything
# agrees; with ``raise_on_failure=False`` it returns the report instead of raising, which is
# handy in a notebook:

report = conformance.check_nms(myops.nms_fixed, n_cases=40)
print(report)
report = conformance.check_nms(myops.nms, n_cases=40, raise_on_failure=False)
print(f"cases {report.cases}, agreeing {report.agreeing}, worst error {report.worst_error} {report.unit}")
print(report.first_mismatch.splitlines()[0])

# %%
# The checks that exist, and what each expects from your function (NumPy arrays in; NumPy arrays,
# lists or torch tensors out):

for name in conformance.__all__:
    if name.startswith("check_"):
        doc = getattr(conformance, name).__doc__.strip().splitlines()[0].split(" against")[0]
        print(f"{name:26s} {doc.replace('``', '')}")

# %%
# 3. Comparators: two results in hand, why do they differ?
# --------------------------------------------------------
# When you already have your output and refdet's (or torchvision's), the comparators raise an
# ``AssertionError`` whose message is the diagnosis. :func:`refdet.testing.assert_nms_equal` on the
# exact-threshold case:

from refdet.testing import assert_allclose_ulp, assert_matches_equal, assert_nms_equal  # noqa: E402

boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], dtype=np.float32)
scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
try:
    assert_nms_equal(myops.nms(boxes, scores, 0.5), refdet.nms(boxes, scores, 0.5), boxes, scores,
                     iou_threshold=0.5)
except AssertionError as e:
    print(e)

# %%
# :func:`refdet.testing.assert_allclose_ulp` compares floating results in units in the last place
# and, given the op and its arguments, searches refdet's conventions and knobs for the one that
# reproduces yours. An IoU computed with the legacy "+1" pixel widths:

a = np.array([[0, 0, 10, 10], [2, 2, 8, 9]], dtype=np.float32)
b = np.array([[5, 5, 15, 15]], dtype=np.float32)
theirs = refdet.box_iou(a, b, plus_one=True)          # stands in for another library's output
try:
    assert_allclose_ulp(theirs, refdet.box_iou(a, b), op="box_iou", args=(a, b))
except AssertionError as e:
    print(e)

# %%
# :func:`refdet.testing.assert_matches_equal` for anchor-to-ground-truth matching: here a matcher
# that makes positives with ``IoU > 0.7`` instead of ``>= 0.7`` (the paper's wording, not the code):

iou = np.array([[0.7, 0.2, 0.75], [0.1, 0.65, 0.3]])
strict = refdet.match(iou, positive_strict=True, allow_low_quality_matches=False)
try:
    assert_matches_equal(strict, refdet.match(iou, allow_low_quality_matches=False), iou,
                         allow_low_quality_matches=False)
except AssertionError as e:
    print(e)

# %%
# 4. Your own property tests: hypothesis strategies
# -------------------------------------------------
# ``refdet.testing.strategies`` generates the inputs where implementations disagree: boxes on a
# coarse grid (identical and degenerate boxes occur), scores with ties, pairs whose IoU is exactly
# a threshold or one float32 ulp from it, IoU matrices with every kind of tie, logits, feature
# maps, anchor configurations. A property test of your NMS against refdet's, run here directly
# (pytest would collect it the same way):

from hypothesis import given, settings  # noqa: E402
from refdet.testing import strategies as rst  # noqa: E402


@settings(max_examples=100, derandomize=True, database=None)
@given(rst.nms_inputs(max_n=25))
def test_my_nms_agrees_with_refdet(inputs):
    boxes, scores, threshold = inputs
    assert_nms_equal(myops.nms_fixed(boxes, scores, threshold), refdet.nms(boxes, scores, threshold),
                     boxes, scores, iou_threshold=threshold)


test_my_nms_agrees_with_refdet()
print("100 generated cases: the fixed NMS agrees with refdet on all of them")


@settings(max_examples=100, derandomize=True, database=None, report_multiple_bugs=False)
@given(rst.threshold_box_pairs(offset=0))
def test_the_buggy_nms_on_exact_thresholds(pair):
    boxes, threshold = pair
    scores = np.array([0.9, 0.8])
    assert_nms_equal(myops.nms(boxes, scores, threshold), refdet.nms(boxes, scores, threshold),
                     boxes, scores, iou_threshold=threshold)


try:
    test_the_buggy_nms_on_exact_thresholds()
except AssertionError as e:
    print("hypothesis found it:", str(e).splitlines()[0])

# %%
# Backward passes: ``check_gradients``
# ------------------------------------
# For a hand-written backward, :func:`refdet.testing.check_gradients` compares your analytic
# gradient with float64 central differences of your forward. The contract is refdet's
# ``forward(*inputs) -> (out, cache)``, ``backward(dout, cache) -> gradients``. A smooth L1 loss
# whose backward forgets to divide by ``beta`` in the quadratic zone:


def smooth_l1_forward(x, beta=0.5):
    ax = np.abs(x)
    out = np.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)
    return out, (x, beta)


def smooth_l1_backward_buggy(dout, cache):
    x, beta = cache
    return (dout * np.where(np.abs(x) < beta, x, np.sign(x)),)      # should be x / beta


def smooth_l1_backward(dout, cache):
    x, beta = cache
    return (dout * np.where(np.abs(x) < beta, x / beta, np.sign(x)),)


from refdet.testing import check_gradients  # noqa: E402

x = np.random.default_rng(0).uniform(-2, 2, size=50)
x = x[np.abs(np.abs(x) - 0.5) > 1e-3]                 # stay away from the kink at |x| = beta
print(check_gradients(smooth_l1_forward, smooth_l1_backward, (x,), rng=0))
print(check_gradients(smooth_l1_forward, smooth_l1_backward_buggy, (x,), rng=0, raise_on_failure=False))

# %%
# refdet checks its own backward passes the same way: ``refdet gradcheck`` runs every registered
# one, and the test suite holds each against torch autograd where torch has the op.
