"""
4. Cross entropy against focal loss
===================================

A dense detector scores ~100,000 anchors per image and only a few dozen of them cover an object.
Almost all anchors are *easy negatives*: the model already gives them a background probability
near 1. Each contributes a small cross entropy, but there are so many that together they dominate
the loss and its gradient. The **focal loss** (Lin et al. 2017, RetinaNet) multiplies the cross
entropy by :math:`(1 - p_t)^\\gamma`, which silences the examples the model already gets right.
This lesson computes both with refdet, plots them for
:math:`\\gamma \\in \\{0, 0.5, 1, 2, 5\\}`, and looks at their gradients.
"""
import matplotlib.pyplot as plt
import numpy as np

import refdet
from refdet.testing import check_gradients

# %%
# The formula
# -----------
# With :math:`p = \sigma(x)` the predicted probability of the class and :math:`t \in \{0, 1\}` the
# label, :math:`p_t` is the probability given to the right answer:
#
# .. math::
#
#     p_t = \begin{cases} p & t = 1 \\ 1 - p & t = 0 \end{cases}, \qquad
#     \mathrm{CE}(p_t) = -\log p_t, \qquad
#     \mathrm{FL}(p_t) = -\alpha_t (1 - p_t)^\gamma \log p_t .
#
# :math:`\gamma = 0` is the cross entropy. :func:`refdet.sigmoid_focal_loss_forward` computes it
# from the logits, term by term in torchvision's order (``alpha=None`` switches the
# :math:`\alpha_t` weighting off, as torchvision's ``alpha=-1``).

gammas = (0, 0.5, 1, 2, 5)
p_t = np.linspace(0.001, 0.999, 999)
x = np.log(p_t / (1 - p_t))                   # the logit that gives p = p_t, for a positive (t = 1)
t = np.ones_like(x)
curves = {g: refdet.sigmoid_focal_loss_forward(x, t, alpha=None, gamma=g)[0] for g in gammas}

for g in gammas:
    i = np.searchsorted(p_t, 0.9)
    print(f"gamma {g:<3}: loss at p_t = 0.9 is {curves[g][i]:.3e} = {curves[g][i] / curves[0][i]:.3e} x the "
          f"cross entropy  ((1 - 0.9)^gamma = {0.1 ** g:.3e})")

# %%
# The picture of the paper's figure 1: the loss as a function of :math:`p_t`. For
# :math:`p_t > 0.6` (well-classified examples) the focal loss is tiny; for badly classified ones
# (:math:`p_t` small) it is almost the cross entropy.

fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
colours = plt.get_cmap("plasma")(np.linspace(0, 0.85, len(gammas)))
for g, c in zip(gammas, colours):
    ax.plot(p_t, curves[g], color=c, lw=2.2, label=f"γ = {g}" + ("  (cross entropy)" if g == 0 else ""))
ax.axvspan(0.6, 1.0, color="tab:green", alpha=0.1)
ax.text(0.8, 3.6, "well-classified\nexamples", ha="center", fontsize=10, color="tab:green")
ax.set_xlim(0, 1)
ax.set_ylim(0, 5)
ax.set_xlabel("probability of the ground-truth class  $p_t$")
ax.set_ylabel("loss")
ax.set_title(r"$\mathrm{FL}(p_t) = -(1 - p_t)^\gamma \log p_t$   (α off)")
ax.legend()

# %%
# What it does to an image's loss
# -------------------------------
# Take one image's anchors: 100,000 easy negatives at :math:`p_t = 0.99`, 1,000 harder negatives at
# :math:`p_t = 0.7` and 50 positives the model still misses (:math:`p_t = 0.2`). Which group owns
# the loss?

groups = {"easy negatives (100,000 at p_t 0.99)": (100_000, 0.99, 0.0),
          "hard negatives (1,000 at p_t 0.7)": (1_000, 0.7, 0.0),
          "positives (50 at p_t 0.2)": (50, 0.2, 1.0)}
share = np.zeros((len(gammas), len(groups)))
for gi, g in enumerate(gammas):
    totals = []
    for n, pt, target in groups.values():
        p = pt if target == 1 else 1 - pt                     # the predicted foreground probability
        loss, _ = refdet.sigmoid_focal_loss_forward(np.array([np.log(p / (1 - p))]), np.array([target]),
                                                    alpha=None, gamma=g)
        totals.append(n * loss[0])
    share[gi] = np.array(totals) / np.sum(totals)
    print(f"gamma {g:<3}: " + ", ".join(f"{k.split(' (')[0]} {100 * v:5.1f}%" for k, v in zip(groups, share[gi])))

fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
left = np.zeros(len(gammas))
for (name, _), col, c in zip(groups.items(), share.T, ("0.7", "tab:orange", "tab:blue")):
    ax.barh([f"γ = {g}" for g in gammas], col, left=left, color=c, label=name)
    left += col
ax.invert_yaxis()
ax.set_xlim(0, 1)
ax.set_xlabel("share of the total loss of the image")
ax.set_title("Who owns the loss: cross entropy (γ = 0) is spent on easy negatives")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)

# %%
# The gradient
# ------------
# What training feels is the gradient with respect to the logit. For a positive (t = 1), with
# :math:`p = \sigma(x)`:
#
# .. math::
#
#     \frac{\partial \mathrm{FL}}{\partial x} = (1 - p)^\gamma\left(\gamma\, p \log p - (1 - p)\right)
#
# (:math:`\gamma = 0` gives :math:`p - 1`, the cross-entropy gradient). refdet's backward pass
# (:func:`refdet.sigmoid_focal_loss_backward`) computes it term by term, with the limits handled
# where :math:`1 - p` rounds to 0; here it is checked against float64 central differences with
# :func:`refdet.testing.check_gradients`.

xs = np.linspace(-6, 8, 561)
fig, ax = plt.subplots(figsize=(7.5, 4.6), layout="constrained")
for g, c in zip(gammas, colours):
    _, cache = refdet.sigmoid_focal_loss_forward(xs, np.ones_like(xs), alpha=None, gamma=g)
    d = refdet.sigmoid_focal_loss_backward(np.ones_like(xs), cache).dlogits
    p = 1 / (1 + np.exp(-xs))
    closed = (1 - p) ** g * (g * p * np.log(p) - (1 - p))
    assert np.allclose(d, closed, rtol=1e-12, atol=1e-15)
    ax.plot(xs, -d, color=c, lw=2.2, label=f"γ = {g}")
ax.set_xlabel("logit x of a positive example (p = σ(x))")
ax.set_ylabel(r"$-\partial\,\mathrm{loss} / \partial x$  (the push towards the right answer)")
ax.set_title("The focal loss stops pushing once an example is classified well")
ax.axvline(0, color="k", lw=0.5)
ax.legend()

for g in gammas:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, size=(64, 4))
    targets = (rng.random((64, 4)) < 0.2).astype(float)
    report = check_gradients(refdet.sigmoid_focal_loss_forward, refdet.sigmoid_focal_loss_backward,
                             (logits, targets), kwargs=dict(alpha=0.25, gamma=g), wrt=["logits"], rng=0)
    print(f"gamma {g:<3}: gradient check ok = {report.ok}")

# %%
# In RetinaNet the loss is summed over all anchors and classes and divided by the number of
# foreground anchors, with :math:`\alpha = 0.25` on the positives and :math:`\gamma = 2`;
# :func:`refdet.retinanet_loss_forward` does exactly that (and reproduces each framework's
# normaliser, see :doc:`/conventions/retinanet_loss`).
