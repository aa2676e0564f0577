"""
2. FPN and pyramid anchors
==========================

One stride-16 map serves large objects well and small ones badly: a 30-pixel object covers two
cells. A **Feature Pyramid Network** (Lin et al. 2017) gives the detector several maps, from
stride 8 (fine, for small objects) to stride 128 (coarse, for large ones), each with the same
number of channels, and **pyramid anchors** put small anchors on the fine maps and large anchors
on the coarse ones. This lesson runs an FPN on a synthetic image, builds RetinaNet's anchors on
P3-P7 and shows which level each object is assigned to.
"""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import refdet
from refdet.detector import backbone_forward, backbone_init
from refdet.synthetic import make_synthetic_dataset

# %%
# Backbone maps C3-C5 and the top-down pathway
# --------------------------------------------
# A backbone halves the resolution at every stage. With five stride-2 stages on a 512 x 512 image,
# C3, C4 and C5 have strides 8, 16 and 32. The FPN turns them into P3-P5 and adds P6 and P7:
#
# .. math::
#
#     M_5 = L_5(C_5), \qquad M_i = L_i(C_i) + \mathrm{up}_2(M_{i+1}), \qquad P_i = O_i(M_i),
#
#     P_6 = \mathrm{conv}^{3\times3}_{s=2}(C_5), \qquad P_7 = \mathrm{conv}^{3\times3}_{s=2}(\mathrm{relu}(P_6)),
#
# where :math:`L_i` is a 1x1 "lateral" conv to F channels, :math:`\mathrm{up}_2` nearest-neighbour
# upsampling and :math:`O_i` a 3x3 conv. The weights here are random (no training): the lesson is
# in the shapes and in what each level sees.

batch = make_synthetic_dataset(1, (512, 512), max_objects=3, min_size=24, max_size=300, noise=0.1, rng=36)
x = batch.images                                         # (1, 3, 512, 512) float32
gt, gt_labels = batch.boxes[0].astype(np.float64), batch.labels[0]

bb = backbone_init(channels=(8, 16, 32, 48, 64), rng=0)  # five 3x3 stride-2 conv + ReLU stages
feats, _ = backbone_forward(bb, x)
C3, C4, C5 = feats[2:]
for name, f in zip(("C3", "C4", "C5"), (C3, C4, C5)):
    print(f"{name}: {f.shape}  stride {512 // f.shape[-1]}")

F = 16
fpn_params = refdet.fpn_init([C3.shape[1], C4.shape[1], C5.shape[1]], F, extra_blocks="p6p7", rng=0)
P, _ = refdet.fpn_forward(fpn_params, [C3, C4, C5], extra_blocks="p6p7")
names = ["P3", "P4", "P5", "P6", "P7"]
for name, p in zip(names, P):
    print(f"{name}: {p.shape}  stride {512 // p.shape[-1]}")

# %%
# What each level sees: the mean absolute activation of every map, drawn over the same 512-pixel
# square. The same F = 16 channels describe ever larger neighbourhoods.

fig, axes = plt.subplots(1, 6, figsize=(15, 3.2), layout="constrained")
img = x[0].transpose(1, 2, 0)
axes[0].imshow((img - img.min()) / (img.max() - img.min()), extent=(0, 512, 512, 0))
axes[0].set_title("image 512 x 512")
for ax, name, p in zip(axes[1:], names, P):
    ax.imshow(np.abs(p[0]).mean(0), extent=(0, 512, 512, 0), cmap="magma")
    ax.set_title(f"{name}: {p.shape[-2]} x {p.shape[-1]}, stride {512 // p.shape[-1]}")
for ax in axes:
    for b in gt:
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec="lime", lw=1))
    ax.set_xticks([0, 256, 512])
    ax.set_yticks([0, 256, 512])
axes[0].set_ylabel("y (pixels)")
fig.supxlabel("x (pixels); green: the ground-truth boxes")

# %%
# Pyramid anchors: RetinaNet on P3-P7
# -----------------------------------
# RetinaNet puts anchors of base size :math:`32 \cdot 2^{l-3}` on level :math:`P_l`, each with
# three *octave scales* :math:`2^{0}, 2^{1/3}, 2^{2/3}` and three aspect ratios: A = 9 anchors per
# location, as in the RPN, but now the sizes grow with the stride. torchvision truncates the octave
# sizes to integers (:func:`refdet.octave_sizes`); detectron2 keeps floats.

base = (32, 64, 128, 256, 512)
ratios = (0.5, 1.0, 2.0)
print("torchvision:", refdet.octave_sizes(base, 3))
print("detectron2: ", [tuple(round(s, 2) for s in lv) for lv in refdet.octave_sizes(base, 3, convention="detectron2")])

feature_sizes = [p.shape[-2:] for p in P]
strides = [512 // p.shape[-1] for p in P]
anchors, level = refdet.pyramid_anchors((512, 512), feature_sizes, strides, list(base), ratios,
                                        scales_per_octave=3)
print(f"{len(anchors)} anchors, rows ordered (level, y, x, a):")
for lv, (name, (h, w), s) in enumerate(zip(names, feature_sizes, strides)):
    print(f"  {name}: {h:3d} x {w:<3d} x 9 = {int((level == lv).sum()):6d}   stride {s:3d}   "
          f"sizes {refdet.octave_sizes(base, 3)[lv]}")

# %%
# The seed's numbers for an 800 x 800 input (maps 100, 50, 25, 13, 7):

a800, l800 = refdet.pyramid_anchors((800, 800), [100, 50, 25, 13, 7], None, list(base), ratios,
                                    scales_per_octave=3)
print(len(a800), "anchors:", np.bincount(l800).tolist())

# %%
# The anchors of one location on every level: the cell nearest the image centre, its 9 anchors
# and the neighbouring cell centres (dots, one stride apart). Each panel is zoomed to the level's
# anchors: the picture is the same on every level, only the axes (pixels) double each time.

colours = ["tab:orange", "tab:red", "magenta", "cyan", "gold"]   # P3 .. P7
octaves = refdet.octave_sizes(base, 3)
fig, axes = plt.subplots(1, 5, figsize=(17, 4), layout="constrained")
for lv, ax in enumerate(axes):
    s = strides[lv]
    h, w = feature_sizes[lv]
    yy, xx = h // 2, w // 2
    first = np.flatnonzero(level == lv)[0]              # rows are (level, y, x, a)
    loc = anchors[first + (yy * w + xx) * 9: first + (yy * w + xx + 1) * 9]
    ax.imshow((img - img.min()) / (img.max() - img.min()), extent=(0, 512, 512, 0))
    gy, gx = np.mgrid[0:h, 0:w]
    ax.plot(gx.ravel() * s, gy.ravel() * s, ".", color="w", ms=3)
    for b in loc:
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec=colours[lv], lw=2))
    ax.plot(xx * s, yy * s, "r+", ms=12, mew=2)
    half = 0.75 * octaves[lv][-1] * np.sqrt(2)          # the widest anchor, with a margin
    ax.set_xlim(xx * s - half, xx * s + half)
    ax.set_ylim(yy * s + half, yy * s - half)
    ax.add_patch(Rectangle((0, 0), 512, 512, fill=False, ec="k", lw=1.5))
    ax.set_facecolor("0.9")
    ax.set_title(f"{names[lv]}: stride {s}, sizes {', '.join(str(int(v)) for v in octaves[lv])}", fontsize=10)
    ax.set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
fig.suptitle("The 9 anchors (3 octave sizes x 3 ratios) of the location nearest the image centre "
             "(red +) on each level; dots: cell centres; black: the 512 x 512 image border")

# %%
# Which level learns which object
# -------------------------------
# :func:`refdet.retinanet_targets` matches all levels' anchors at once (IoU >= 0.5 foreground,
# < 0.4 background, in between ignored) and reports the level of every foreground anchor. Objects
# end up on the level whose anchor sizes match theirs: the scale assignment comes from the anchors
# alone.

t = refdet.retinanet_targets(anchors, gt, gt_labels, num_classes=2, level=level)
sizes_px = np.sqrt(refdet.box_area(gt))
for g in range(len(gt)):
    levels_g = level[t.matched == g]
    print(f"object {g}: sqrt(area) = {sizes_px[g]:5.1f} px -> {len(levels_g)} foreground anchors on "
          + ", ".join(f"{names[v]} ({int((levels_g == v).sum())})" for v in np.unique(levels_g)))

fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
ax.imshow((img - img.min()) / (img.max() - img.min()), extent=(0, 512, 512, 0))
for g, b in enumerate(gt):
    ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec="lime", lw=2.5))
    ax.text(b[0], b[1] - 6, f"object {g}", color="lime", fontsize=9, weight="bold")
for lv in range(5):
    for b in anchors[(t.matched >= 0) & (level == lv)]:
        ax.add_patch(Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec=colours[lv], lw=1))
    ax.plot([], [], color=colours[lv], label=f"foreground anchor on {names[lv]} "
                                             f"({int(((t.matched >= 0) & (level == lv)).sum())})")
ax.set_xlim(-60, 572)
ax.set_ylim(572, -60)
ax.set_xlabel("x (pixels)")
ax.set_ylabel("y (pixels)")
ax.set_title("foreground anchors (IoU >= 0.5) coloured by level")
fig.legend(loc="outside right upper", fontsize=9)

# %%
# The head on every level
# -----------------------
# RetinaNet runs the same head (shared weights) on each level: (B, A*K, H, W) class logits and
# (B, 4A, H, W) deltas per level. :func:`refdet.flatten_head_output` concatenates the levels in the
# anchors' ``(level, y, x, a)`` order, so row ``i`` of the logits belongs to ``anchors[i]``.

K = 2
head = refdet.retinanet_head_init(F, 9, K, rng=0, num_convs=1)
out, _ = refdet.retinanet_head_forward(head, P, num_groups=4)
for name, c, d in zip(names, out.cls_logits, out.bbox_deltas):
    print(f"{name}: cls {c.shape}  box {d.shape}")
logits = refdet.flatten_head_output(out.cls_logits, 9)
print("flattened:", logits.shape, "== (1, number of anchors, K):", logits.shape[1] == len(anchors))
