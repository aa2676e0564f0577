"""
3. SSD default boxes and hard negative mining
=============================================

SSD (Liu et al. 2016) predicts classes and box offsets directly on six feature maps, from 38 x 38
down to 1 x 1, with a fixed set of **default boxes** per cell. It has no proposal stage, so one
image gives thousands of background boxes for a handful of objects; SSD keeps the classification
loss from drowning in easy background by **hard negative mining**: only the negatives with the
largest loss, at most three per positive, enter the loss. This lesson builds SSD300's 8,732
default boxes, matches them to objects and mines the negatives.
"""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import refdet
from refdet.synthetic import make_synthetic_dataset

# %%
# Default boxes: one scale per map
# --------------------------------
# Map :math:`k` of :math:`m` gets a scale, linear between :math:`s_{\min} = 0.2` and
# :math:`s_{\max} = 0.9` of the image,
#
# .. math::
#
#     s_k = s_{\min} + \frac{s_{\max} - s_{\min}}{m - 1}(k - 1), \qquad
#     w = s_k\sqrt{a}, \quad h = \frac{s_k}{\sqrt{a}},
#
# one box per aspect ratio :math:`a \in \{1, 2, 1/2\}` (plus :math:`3, 1/3` on the middle maps) and
# an extra square of side :math:`\sqrt{s_k s_{k+1}}`, centred on each cell. torchvision's SSD300
# uses scales 0.07, 0.15, ..., 1.05 and explicit steps (8, 16, 32, 64, 100, 300 pixels).

feature_sizes = [38, 19, 10, 5, 3, 1]
aspect_ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
steps = [8, 16, 32, 64, 100, 300]
scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]      # torchvision's ssd300_vgg16
priors = refdet.ssd_default_boxes((300, 300), feature_sizes, aspect_ratios=aspect_ratios, steps=steps,
                                  scales=scales)
per_cell = [2 + 2 * len(a) for a in aspect_ratios]
counts = [f * f * a for f, a in zip(feature_sizes, per_cell)]
level = np.repeat(np.arange(6), counts)
print("default boxes:", priors.shape, "=", " + ".join(f"{f}x{f}x{a}" for f, a in zip(feature_sizes, per_cell)))

# %%
# The boxes of one cell on every map (the cell nearest the image centre), on a 300 x 300 image:

batch = make_synthetic_dataset(1, (300, 300), max_objects=3, min_size=30, max_size=150, noise=0.15, rng=71)
img = batch.images[0].transpose(1, 2, 0)
img = (img - img.min()) / (img.max() - img.min())
gt = batch.boxes[0].astype(np.float64)
gt_labels = batch.labels[0] + 1                    # SSD: class 0 is background

fig, axes = plt.subplots(1, 6, figsize=(17, 3.6), layout="constrained", sharey=True)
starts = np.concatenate([[0], np.cumsum(counts)])
for k, ax in enumerate(axes):
    f, A = feature_sizes[k], per_cell[k]
    y = x = f // 2
    boxes = priors[starts[k] + (y * f + x) * A: starts[k] + (y * f + x + 1) * A]
    ax.imshow(img, extent=(0, 300, 300, 0), alpha=0.5)
    cy, cx = (np.mgrid[0:f, 0:f] + 0.5) * steps[k]
    ax.plot(cx.ravel(), cy.ravel(), ".", color="k", ms=2 if f > 10 else 5)
    for i, b in enumerate(boxes):
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, lw=1.8,
                               ec="tab:red" if i < 2 else "tab:blue"))
    ax.set_xlim(-10, 310)
    ax.set_ylim(310, -10)
    ax.set_title(f"{f} x {f} map: {A} boxes/cell\nside {boxes[0, 2] - boxes[0, 0]:.0f} px (s_k = {(boxes[0, 2] - boxes[0, 0]) / 300:.2f})",
                 fontsize=9)
    ax.set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
fig.suptitle("SSD300 default boxes of the centre cell of each map (red: the two squares, blue: the "
             "ratio boxes; dots: cell centres; the boxes are clipped to the image)")

# %%
# Matching: every object claims its best box, then IoU >= 0.5
# -----------------------------------------------------------
# :func:`refdet.ssd_match` first gives each ground truth its best default box (even below 0.5),
# then makes every other box positive for its best ground truth when that IoU is at least 0.5.
# There is no ignore band: everything else is background. :func:`refdet.ssd_targets` adds the
# class labels and the encoded offsets (with SSD's variances 0.1, 0.1, 0.2, 0.2).

t = refdet.ssd_targets(priors, gt, gt_labels)
fg = t.foreground
print("positives:", int(fg.sum()), "of", len(priors), " per object:", np.bincount(t.matched[fg], minlength=len(gt)).tolist())
print("positives per map:", np.bincount(level[fg], minlength=6).tolist())

# %%
# Hard negative mining
# --------------------
# With :math:`N` positives, the confidence loss keeps the positives' cross entropy and the
# :math:`3N` negatives whose background cross entropy :math:`-\log p_0` is largest:
#
# .. math::
#
#     L_{conf} = -\sum_{i \in Pos} \log p_i^{c_i} - \sum_{i \in \mathrm{top}_{3N}(Neg)} \log p_i^{0},
#     \qquad L = \frac{1}{N}\left(L_{conf} + L_{loc}\right).
#
# To see what gets mined we need scores. The ones below are made up to behave like a detector in
# training: confident about background far from the objects, unsure on boxes that partly overlap
# an object (and noisy everywhere).

rng = np.random.default_rng(0)
K = 3                                                  # background + 2 classes
iou = refdet.box_iou(gt, priors).max(axis=0)           # (N,) best overlap of each default box
conf = rng.normal(0.0, 0.6, size=(len(priors), K))
conf[:, 0] += 3.0 - 6.0 * iou                          # background logit falls as the overlap grows
loc = rng.normal(0.0, 0.1, size=(len(priors), 4))
losses, cache = refdet.multibox_loss_forward(conf[None], loc[None],
                                             refdet.LossTargets(t.labels[None], t.deltas[None]))
mined = cache.negatives[0]
print(f"positives {int(fg.sum())}, mined negatives {int(mined.sum())} (= 3 x positives), "
      f"of {int((~fg).sum())} negatives")
print(f"classification loss {float(losses.classification):.4f}, box regression loss "
      f"{float(losses.box_regression):.4f} (both divided by N = {int(fg.sum())})")

# %%
# Left: the background cross entropy of every negative, sorted, and the cut after the 3N hardest.
# Right: which boxes those are. The mined negatives sit around and between the objects, where the
# scores are confused; the thousands of easy boxes on empty background do not contribute.

ce_bg = -np.log(cache.probs[0][:, 0])
neg_ce = np.sort(ce_bg[~fg])[::-1]
n_mined = int(mined.sum())
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
rank = np.arange(1, len(neg_ce) + 1)
ax0.plot(rank[:n_mined], neg_ce[:n_mined], color="tab:red", lw=2.5, label=f"mined: the {n_mined} hardest")
ax0.plot(rank[n_mined:], neg_ce[n_mined:], color="0.6", lw=2.5, label="not used by the loss")
ax0.axvline(n_mined, color="k", ls="--", lw=1)
ax0.text(n_mined * 1.15, neg_ce[0], f"cut: 3 x {int(fg.sum())} positives", fontsize=9, va="top")
ax0.set_xscale("log")
ax0.set_yscale("log")
ax0.set_xlabel("rank of the negative by its loss (log axis)")
ax0.set_ylabel("background cross entropy  -log p_0")
ax0.set_title(f"the {len(neg_ce)} negative default boxes, hardest first")
ax0.legend(loc="lower left")

# right: every default box as its centre; the hardest 12 negatives also as boxes
ctr = (priors[:, :2] + priors[:, 2:]) / 2
ax1.imshow(img, extent=(0, 300, 300, 0))
ax1.plot(*ctr[mined].T, "x", color="tab:red", ms=5, label=f"centre of a mined negative ({n_mined})")
ax1.plot(*ctr[fg].T, "o", color="tab:green", ms=4, mfc="none", label=f"centre of a positive ({int(fg.sum())})")
hardest = np.flatnonzero(~fg)[np.argsort(-ce_bg[~fg], kind="stable")[:12]]
for b in priors[hardest]:
    ax1.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec="tab:red", lw=1.2, ls="--"))
for b in gt:
    ax1.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec="lime", lw=3))
ax1.plot([], [], color="tab:red", ls="--", label="the 12 hardest negatives")
ax1.plot([], [], color="lime", lw=3, label="ground truth")
ax1.set_xlim(-20, 320)
ax1.set_ylim(320, -20)
ax1.set_xlabel("x (pixels)")
ax1.set_ylabel("y (pixels)")
ax1.set_title("which default boxes the confidence loss sees")
ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)

# %%
# Frameworks differ at the edge: when :math:`3N` exceeds the number of negatives, torchvision's
# ranking also counts some positives' loss a second time, Caffe and mmdet cap the count at the
# negatives, ssd.pytorch at P - 1 (``mining_cap``, see :doc:`/conventions/multibox_loss`). With
# plenty of negatives, as here, they agree:

for cv in ("torchvision", "caffe", "mmdet"):
    l_cv, c_cv = refdet.multibox_loss_forward(conf[None], loc[None],
                                              refdet.LossTargets(t.labels[None], t.deltas[None]), convention=cv)
    print(f"{cv:12s} classification {float(l_cv.classification):.6f}  mined {int(c_cv.negatives.sum())}")
