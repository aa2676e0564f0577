"""
1. Anchor boxes and the RPN head
================================

A region proposal network (Faster R-CNN, Ren et al. 2015) does not predict boxes from nothing: it
starts from a fixed set of **anchor boxes** and, for each one, predicts an *objectness* score and a
small correction (four deltas). This lesson builds the seed detector's anchors with refdet, runs an
RPN head, reads its output layout, and assigns anchors to a ground-truth box with the 0.7 / 0.3
bands of the paper.

The seed: an 800 x 800 image, a backbone of total stride 16, so a 50 x 50 feature map, and at
every location 3 sizes (128, 256, 512 pixels) times 3 aspect ratios (1:2, 1:1, 2:1).
"""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import refdet
from refdet.synthetic import make_synthetic_dataset

# %%
# Cell anchors: 9 templates per location
# --------------------------------------
# An anchor of size :math:`s` and aspect ratio :math:`r = h / w` keeps the area :math:`s^2`:
#
# .. math::
#
#     w = \frac{s}{\sqrt{r}}, \qquad h = s \sqrt{r}, \qquad
#     \text{corners } \left(-\tfrac{w}{2}, -\tfrac{h}{2}, \tfrac{w}{2}, \tfrac{h}{2}\right).
#
# :func:`refdet.cell_anchors` builds the zero-centred templates. torchvision rounds the half sizes
# (half to even), so a 128-pixel 1:2 anchor is 182 x 90, not 181.02 x 90.51. Rows are ordered
# ratio-major (row ``r * S + s``), torchvision's order; ``convention="detectron2"`` gives the
# size-major order.

sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
cell = refdet.cell_anchors(sizes, ratios)
print("cell anchors, shape", cell.shape)
for row, (x1, y1, x2, y2) in enumerate(cell):
    r, s = divmod(row, len(sizes))
    print(f"  row {row}: size {sizes[s]:3d}  h/w {ratios[r]:<3}  ->  {x2 - x1:5.0f} x {y2 - y1:5.0f}"
          f"  area {(x2 - x1) * (y2 - y1):7.0f}  (s^2 = {sizes[s] ** 2})")

# %%
# py-faster-rcnn, where the anchors come from, computes them differently (a 16-pixel base window,
# rounded, then scaled): :func:`refdet.faster_rcnn_anchors` reproduces its table exactly, and the
# two sets differ by a few pixels.

print(refdet.faster_rcnn_anchors()[:3])

# %%
# The picture: one location on an object, every size and ratio, labelled. Colour is the size,
# line style the aspect ratio; the axes are image pixels.

# a synthetic 800 x 800 image (shapes on noise) with three objects of different sizes
batch = make_synthetic_dataset(1, (800, 800), max_objects=3, min_size=50, max_size=320, rng=31)
image = batch.images[0].transpose(1, 2, 0)
image = (image - image.min()) / (image.max() - image.min())
gt = batch.boxes[0].astype(np.float64)
print("ground-truth boxes (xyxy):\n", gt)
stride, H, W = 16, 50, 50

# the feature-map cell whose centre is nearest the centre of the largest object
big = int(np.argmax(refdet.box_area(gt)))
cx, cy = (gt[big, 0] + gt[big, 2]) / 2, (gt[big, 1] + gt[big, 3]) / 2
x_cell, y_cell = int(round(cx / stride)), int(round(cy / stride))
centre = np.array([x_cell * stride, y_cell * stride] * 2, dtype=np.float64)

size_colours = {128: "tab:orange", 256: "tab:cyan", 512: "tab:pink"}
ratio_styles = {0.5: ":", 1.0: "-", 2.0: "--"}
ratio_words = {0.5: "wide", 1.0: "square", 2.0: "tall"}
fig, ax = plt.subplots(figsize=(9.5, 7), layout="constrained")
ax.imshow(image, extent=(0, 800, 800, 0))
ax.add_patch(Rectangle(gt[big, :2], *(gt[big, 2:] - gt[big, :2]), fill=False, ec="lime", lw=3,
                       label="ground truth"))
for row, box in enumerate(cell + centre):
    r, s = divmod(row, len(sizes))
    ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, lw=2.2,
                           ec=size_colours[sizes[s]], ls=ratio_styles[ratios[r]],
                           label=f"row {row}: size {sizes[s]}, h/w {ratios[r]:g} ({ratio_words[ratios[r]]})"))
ax.plot(centre[0], centre[1], "w+", ms=14, mew=2)
ax.set_xlim(-200, 1000)
ax.set_ylim(1000, -200)
ax.set_xlabel("x (pixels)")
ax.set_ylabel("y (pixels)")
ax.set_title(f"The 9 anchors of feature-map cell (y={y_cell}, x={x_cell}),\n"
             f"centred at pixel ({centre[0]:.0f}, {centre[1]:.0f}) = 16 x cell index")
ax.add_patch(Rectangle((0, 0), 800, 800, fill=False, ec="k", lw=1))
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=9, title="anchor (colour: size, line: ratio)")

# %%
# Tiling: 22,500 anchors over a 50 x 50 map
# -----------------------------------------
# :func:`refdet.grid_anchors` shifts the 9 templates to every cell: anchor ``a`` of cell
# ``(y, x)`` is ``cell[a] + (16 x, 16 y, 16 x, 16 y)`` and sits in row ``(y * W + x) * A + a``.
# torchvision centres the first cell on pixel (0, 0) (``offset=0``); py-faster-rcnn on (7.5, 7.5).

anchors = refdet.grid_anchors(cell, (H, W), stride)
A = len(cell)
print("anchors:", anchors.shape, "=", H, "x", W, "x", A)
row = (y_cell * W + x_cell) * A + 4            # the 256-pixel square of our cell
print("row", row, "->", anchors[row], "== cell[4] + centre:", np.array_equal(anchors[row], cell[4] + centre))
# py-faster-rcnn trains only on anchors that do not cross the border (allowed_border=0)
inside = refdet.anchors_inside_image(anchors, (800, 800), allowed_border=0)
print(f"{inside.sum()} of {len(anchors)} anchors lie entirely inside the image")

# %%
# The anchor centres form the 50 x 50 grid; the large anchors of border cells reach far outside
# the image (py-faster-rcnn ignores those during training).

fig, ax = plt.subplots(figsize=(6, 6))
centres = anchors[::A, :2] - cell[0, :2]
ax.plot(centres[:, 0], centres[:, 1], ".", ms=2, color="0.4", label="anchor centres (2,500)")
for (yy, xx), colour in (((0, 0), "tab:red"), ((25, 25), "tab:blue"), ((49, 10), "tab:green")):
    for box in anchors[(yy * W + xx) * A:(yy * W + xx + 1) * A]:
        ax.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec=colour, lw=1))
    ax.plot([], [], color=colour, label=f"the 9 anchors of cell (y={yy}, x={xx})")
ax.add_patch(Rectangle((0, 0), 800, 800, fill=False, ec="k", lw=2))
ax.set_xlim(-400, 1200)
ax.set_ylim(1200, -400)
ax.set_aspect("equal")
ax.set_xlabel("x (pixels)")
ax.set_ylabel("y (pixels)")
ax.set_title("22,500 anchors: 9 per cell of a 50 x 50 map, stride 16\n(black square: the 800 x 800 image)")
ax.legend(loc="lower left", fontsize=8)
fig.tight_layout()

# %%
# The RPN head and its output layout
# ----------------------------------
# The head is a 3x3 conv + ReLU shared by all locations, then two 1x1 convs: ``A`` objectness
# logits and ``4A`` deltas per location. For a feature map of shape (B, C, H, W) the outputs are
# (B, A, H, W) and (B, 4A, H, W); channel ``a * 4 + j`` of the deltas is delta ``j``
# (dx, dy, dw, dh) of anchor ``a``. :func:`refdet.flatten_head_output` rearranges them to one row
# per anchor, in the same ``(y, x, a)`` order as the anchors.

C = 32                                           # a narrow backbone keeps this example fast
params = refdet.rpn_head_init(C, A, rng=0)
features = np.random.default_rng(0).standard_normal((1, C, H, W))
out, _ = refdet.rpn_head_forward(params, features)
print("objectness:", out.objectness.shape, "  deltas:", out.deltas.shape)
obj_rows = refdet.flatten_head_output(out.objectness, A)
delta_rows = refdet.flatten_head_output(out.deltas, A)
print("per anchor:", obj_rows.shape, delta_rows.shape,
      " per location:", refdet.flatten_head_output(out.deltas, A, per_location=True).shape)
y, x, a = 17, 30, 5
print("anchor (y=17, x=30, a=5): row", (y * W + x) * A + a, " deltas",
      np.array_equal(delta_rows[0, (y * W + x) * A + a], out.deltas[0, a * 4:a * 4 + 4, y, x]))

# %%
# The picture of the layout: the 36 delta channels of one location, grouped by anchor, and where
# each lands in the flattened (22500, 4) array.

fig, ax = plt.subplots(figsize=(10, 3.2))
cmap = plt.get_cmap("tab10")
for ch in range(4 * A):
    a_, j = divmod(ch, 4)
    ax.add_patch(Rectangle((ch, 1.6), 0.95, 0.9, color=cmap(a_), alpha=0.55 + 0.1 * j))
    ax.text(ch + 0.47, 2.05, ("dx", "dy", "dw", "dh")[j], ha="center", va="center", fontsize=6.5)
    ax.text(ch + 0.47, 2.75, str(ch), ha="center", va="center", fontsize=6, color="0.3")
for a_ in range(A):
    ax.text(4 * a_ + 1.95, 1.35, f"anchor {a_}", ha="center", va="top", fontsize=7, color=cmap(a_))
    ax.add_patch(Rectangle((4 * a_ + 0.5, -0.3), 3, 0.8, color=cmap(a_), alpha=0.6))
    ax.text(4 * a_ + 2.0, 0.1, f"r0 + {a_}", ha="center", va="center", fontsize=8)
    ax.annotate("", xy=(4 * a_ + 2.0, 0.55), xytext=(4 * a_ + 2.0, 1.05),
                arrowprops=dict(arrowstyle="->", color=cmap(a_)))
ax.text(-0.5, 2.05, "deltas[b, :, y, x]\n(4A = 36 channels)", ha="right", va="center", fontsize=8)
ax.text(-0.5, 0.1, "rows of the flattened\n(H*W*A, 4) array,\nr0 = (y*W + x)*A", ha="right", va="center", fontsize=8)
ax.set_xlim(-8, 36.5)
ax.set_ylim(-0.6, 3.1)
ax.axis("off")
ax.set_title("RPN regression output: channel a*4 + j is delta j (dx, dy, dw, dh) of anchor a; "
             "objectness: channel a (A = 9 channels)", fontsize=9)
fig.tight_layout()

# %%
# Assigning anchors to ground truth: the 0.7 / 0.3 bands
# ------------------------------------------------------
# Each anchor is compared with every ground-truth box by IoU. With the best IoU of an anchor over
# the ground truths, :func:`refdet.match` labels it
#
# * **positive** when the best IoU is :math:`\geq 0.7`,
# * **negative** when it is :math:`< 0.3`,
# * **ignored** in between (it takes no part in the loss),
#
# and then applies the *best-match rule*: for each ground truth, the anchor(s) with the highest IoU
# become positive even below 0.7, so that no object is left without an anchor.

iou = refdet.box_iou(gt, anchors)                 # (M, N): ground truths x anchors
details = refdet.match_details(iou, high=0.7, low=0.3)
m = details.matches
promoted = details.forced & (details.max_iou < 0.7)
print("positive:", int((m >= 0).sum()), " negative:", int((m == -1).sum()),
      " ignored:", int((m == -2).sum()), " promoted by the best-match rule:", int(promoted.sum()))
print("best IoU of each ground truth over all anchors:", np.round(details.gt_max_iou, 3))
small = int(np.argmin(details.gt_max_iou))
print(f"the small object (ground truth {small}) lies inside {int(promoted.sum())} anchors of size 128 "
      f"with exactly the same IoU {details.gt_max_iou[small]:.3f}: torchvision promotes every tied anchor")

# %%
# Left: the best IoU of every anchor, with the three bands. Right: for every feature-map cell,
# the best label among its 9 anchors (a dot at the cell centre), the positive anchors, and the
# anchor the best-match rule promoted for the small object (its best IoU is below 0.3: without
# the rule this object would have no positive anchor at all).

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 6.4), layout="constrained")
best = details.max_iou
bins = np.linspace(0, 1, 41)
for lo, hi, colour, text in ((0, 0.3, "tab:red", "negative: IoU < 0.3"),
                             (0.3, 0.7, "tab:orange", "ignored: 0.3 <= IoU < 0.7"),
                             (0.7, 1.01, "tab:green", "positive: IoU >= 0.7")):
    sel = (best >= lo) & (best < hi) & (best > 0)
    n_band = int(((best >= lo) & (best < hi)).sum())
    ax0.hist(best[sel], bins=bins, color=colour, alpha=0.8, label=f"{text}  ({n_band} anchors)")
for k, i in enumerate(np.flatnonzero(promoted)):
    ax0.axvline(best[i], color="tab:blue", lw=2, ls="--",
                label="promoted by the best-match rule" if k == 0 else None)
ax0.set_yscale("log")
ax0.set_xlabel("best IoU of an anchor with any ground truth")
ax0.set_ylabel("anchors (log scale)")
ax0.set_title(f"{len(anchors)} anchors ({int((best == 0).sum())} overlap nothing and are not drawn)")
ax0.legend(fontsize=8, loc="upper right")

ax1.imshow(image, extent=(0, 800, 800, 0))
cell_best = m.reshape(H * W, A).max(axis=1)      # per cell: positive > ignored (-2 < -1) ...
status = np.where(cell_best >= 0, 2, np.where((m.reshape(H * W, A) == -2).any(axis=1), 1, 0))
grid = np.stack(np.meshgrid(np.arange(W) * stride, np.arange(H) * stride), -1).reshape(-1, 2)
for code, colour, text in ((1, "tab:orange", "cell with an ignored anchor"),
                           (2, "tab:green", "cell with a positive anchor")):
    ax1.plot(*grid[status == code].T, "o", ms=3, color=colour, label=text)
for box in anchors[m >= 0]:
    ax1.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec="tab:green", lw=1.2))
for box in anchors[promoted]:
    ax1.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec="tab:blue", lw=2.5, ls="--"))
for box in gt:
    ax1.add_patch(Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec="lime", lw=2.5))
ax1.plot([], [], color="tab:green", label="positive anchor (IoU >= 0.7)")
ax1.plot([], [], color="tab:blue", ls="--", lw=2.5, label=f"promoted: the {int(promoted.sum())} tied best anchors of the small object")
ax1.plot([], [], color="lime", lw=2.5, label="ground truth")
ax1.set_xlim(-50, 850)
ax1.set_ylim(850, -50)
ax1.set_xlabel("x (pixels)")
ax1.set_ylabel("y (pixels)")
ax1.set_title("positive and ignored anchors (unmarked cells: all 9 negative)")
ax1.legend(fontsize=8, loc="upper right", framealpha=0.95)

# %%
# Training targets: a balanced sample of 256
# ------------------------------------------
# :func:`refdet.rpn_targets` puts it together for one image: match, then a random sample of at
# most 256 anchors with at most half positives (``rng`` makes it reproducible), and the regression
# targets ``encode_boxes(matched ground truth, anchor)`` for the positives:
#
# .. math::
#
#     t_x = \frac{x - x_a}{w_a},\quad t_y = \frac{y - y_a}{h_a},\quad
#     t_w = \log\frac{w}{w_a},\quad t_h = \log\frac{h}{h_a}.

t = refdet.rpn_targets(anchors, gt, (800, 800), rng=0)
print("sampled positives:", int(t.pos_mask.sum()), " sampled negatives:", int(t.neg_mask.sum()))
pos = np.flatnonzero(t.pos_mask)
print("deltas of the first positives:\n", np.round(t.deltas[pos[:3]], 3))
back = refdet.decode_boxes(t.deltas[pos], anchors[pos])
print("decode(encode(gt)) == matched gt:", np.allclose(back, gt[t.matched[pos]]))
