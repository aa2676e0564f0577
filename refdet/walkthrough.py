"""Teaching walkthroughs printed by the command line.

``refdet anchors [faster-rcnn | retinanet | ssd300] [--image-size H W] [--num-classes K]`` prints, for a
detector preset and an image size, the cell anchors, the anchors of every level, the totals and the
output shapes a head must produce so that its predictions line up with the anchors. The numbers
are computed by :mod:`refdet.anchors` (torchvision's conventions), not typed in. The preset may also
be given as ``--preset NAME``; ``--show-reference`` then prints the readable reference code that
computes the anchors (:mod:`refdet.reference.anchors`, held equal to the fast path by the tests).

Presets (torchvision's settings, which follow the papers):

faster-rcnn
    The original single-level RPN: one stride-16 feature map (VGG16 conv5 / ResNet C4), sizes
    (128, 256, 512) x ratios (0.5, 1, 2) = 9 anchors per location. Default image 800 x 800, whose
    50 x 50 map gives the 22,500 anchors of the seed.
retinanet
    FPN levels P3-P7 (strides 8-128), sizes 32-512 with 3 octave scales (truncated to int, as
    torchvision does) x 3 ratios = 9 per location. Default image 800 x 800: 120,087 anchors.
ssd300
    SSD300: six maps (38, 19, 10, 5, 3, 1) of VGG16 + extras, 4 or 6 default boxes per location,
    8,732 boxes. Default image 300 x 300 (torchvision resizes every image to it).

Feature-map sizes: torchvision pads the batch to a multiple of 32 (``size_divisible=32``) for
Faster R-CNN and RetinaNet; a stride-2 3x3 convolution with padding 1 maps a side ``n`` to
``ceil(n / 2)``, so level ``l`` (stride ``2**l``) has side ``ceil(n / 2**l)`` of the padded side.
SSD300's VGG has floor pooling except pool3 (ceil mode), then extras of stride 2 and two 3x3
valid convolutions.
"""
from __future__ import annotations

import importlib
import inspect

import numpy as np

from refdet import _checks
from refdet.anchors import anchors_inside_image, cell_anchors, octave_sizes, pyramid_anchors, ssd_default_boxes

__all__ = ["PRESETS", "anchors_report", "reference_source", "ANCHOR_REFERENCES"]

PRESETS = {
    "faster-rcnn": (800, 800),
    "retinanet": (800, 800),
    "ssd300": (300, 300),
}

_SSD300 = dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
               scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])


def _ceil_div(n, k):
    return -(-int(n) // int(k))


def _pad32(n):
    return _ceil_div(n, 32) * 32


def _n(x):
    return f"{int(x):,}"


def _cell_table(cell, sizes, ratios, indent="    "):
    """Rows 'a  size  ratio  x1 y1 x2 y2  w x h' of ratio-major cell anchors."""
    lines = [f"{indent}{'a':>2}  {'size':>5}  {'ratio':>5}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}   w x h"]
    S = len(sizes)
    for a, box in enumerate(cell):
        r, s = ratios[a // S], sizes[a % S]
        w, h = box[2] - box[0], box[3] - box[1]
        lines.append(f"{indent}{a:>2}  {s:>5g}  {r:>5g}  " + " ".join(f"{v:>7g}" for v in box)
                     + f"   {w:g} x {h:g}")
    return lines


def _shape(*dims):
    return "(" + ", ".join(str(int(d)) for d in dims) + ")"


def _faster_rcnn(image_size, num_classes):
    H, W = image_size
    ph, pw = _pad32(H), _pad32(W)
    fh, fw = _ceil_div(ph, 16), _ceil_div(pw, 16)
    sizes, ratios = (128, 256, 512), (0.5, 1.0, 2.0)
    cell = cell_anchors(sizes, ratios)
    anc, _ = pyramid_anchors((ph, pw), [(fh, fw)], None, sizes, ratios)
    A = len(cell)
    sy, sx = ph // fh, pw // fw
    L = fh * fw
    out = [
        f"Faster R-CNN region proposal network (RPN), image {H} x {W}",
        "",
        f"torchvision pads the batch to a multiple of 32: {ph} x {pw}. The backbone (VGG16 conv5 or",
        f"ResNet C4) has stride 16, so the RPN sees one feature map of {fh} x {fw} cells.",
        "",
        f"Step 1. Cell anchors: {len(sizes)} sizes x {len(ratios)} aspect ratios = {A} templates centred on (0, 0).",
        "  The ratio is h / w and each template keeps the area size^2: w = size / sqrt(r), h = size * sqrt(r).",
        "  torchvision then rounds the half sizes to integers (half-to-even), so widths are even:",
    ]
    out += _cell_table(cell, sizes, ratios)
    out += [
        "",
        f"Step 2. Tile: copy the {A} templates to every cell. The stride is image // feature = "
        f"{ph} // {fh} = {sy}" + ("" if sy == sx else f" (y) and {pw} // {fw} = {sx} (x)") + ";",
        "  torchvision centres the first cell on pixel (0, 0) (offset 0).",
        f"  {fh} x {fw} locations x {A} anchors = {_n(len(anc))} anchors, in row (y * {fw} + x) * {A} + a.",
        f"  Location (y=0, x=1) holds rows {A}..{2 * A - 1}: the templates shifted by ({sx}, 0), e.g. "
        f"{anc[A].astype(int).tolist()}.",
        "",
        "Step 3. What the RPN head must output (a 3x3 conv, then two 1x1 convs):",
        f"  objectness: A = {A} channels     -> {_shape(1, A, fh, fw)} -> per location {_shape(L, A)}"
        f" -> per anchor {_shape(L * A, 1)}",
        f"  box deltas: 4A = {4 * A} channels   -> {_shape(1, 4 * A, fh, fw)} -> per location {_shape(L, 4 * A)}"
        f" -> per anchor {_shape(L * A, 4)}",
        "  Channel a*4 + c at (y, x) is coordinate c (dx, dy, dw, dh) of anchor (y * W + x) * A + a:",
        "  the flattening order of the head output must be the anchors' order.",
        "",
        "The same anchors in py-faster-rcnn (convention=\"caffe\"): +1 pixel boxes, ws = round(sqrt(256 / r)),",
        "hs = round(ws * r) on a 16-pixel base, centred on 7.5 = (16 - 1) / 2. Its first anchor is",
    ]
    pfr, _ = pyramid_anchors((ph, pw), [(fh, fw)], [16], sizes, ratios, convention="caffe")
    inside = anchors_inside_image(pfr, (H, W), convention="caffe")
    pw0, ph0 = pfr[0, 2] - pfr[0, 0] + 1, pfr[0, 3] - pfr[0, 1] + 1      # +1 pixel widths
    out += [
        f"  {pfr[0].astype(int).tolist()} ({pw0:g} x {ph0:g} pixels, area {_n(pw0 * ph0)}, "
        f"not {sizes[0]}^2 = {_n(sizes[0] ** 2)}).",
        f"  py-faster-rcnn trains the RPN only on anchors inside the image (allowed_border=0): "
        f"{_n(inside.sum())} of {_n(len(pfr))};",
        "  torchvision and detectron2 keep all of them.",
    ]
    return out


def _retinanet(image_size, num_classes):
    H, W = image_size
    ph, pw = _pad32(H), _pad32(W)
    fs = [(_ceil_div(ph, 2 ** l), _ceil_div(pw, 2 ** l)) for l in range(3, 8)]
    for l in range(1, 5):   # P4.. come from the previous level by ceil(n / 2)
        fs[l] = (_ceil_div(fs[l - 1][0], 2), _ceil_div(fs[l - 1][1], 2))
    base = [32, 64, 128, 256, 512]
    ratios = (0.5, 1.0, 2.0)
    sizes = octave_sizes(base, 3)
    anc, lvl = pyramid_anchors((ph, pw), fs, None, base, ratios, scales_per_octave=3)
    A = len(sizes[0]) * len(ratios)
    K = num_classes
    out = [
        f"RetinaNet (FPN levels P3-P7), image {H} x {W}",
        "",
        f"torchvision pads the batch to a multiple of 32: {ph} x {pw}. Level P_l has stride 2^l; every",
        "stride-2 convolution maps a side n to ceil(n / 2).",
        "",
        "Step 1. Cell anchors: each level has one base size (32 at P3 ... 512 at P7) times 3 octave scales",
        "  2^0, 2^(1/3), 2^(2/3) (torchvision truncates them to int: 32, 40, 50) times 3 ratios = 9 per location.",
        "  P3's templates:",
    ]
    out += _cell_table(cell_anchors(sizes[0], ratios), sizes[0], ratios)
    out += ["", "Step 2. Tile every level (stride = padded image // feature, integer division, as torchvision):",
            f"    {'level':<5} {'map':>9} {'stride':>7} {'sizes':<16} {'anchors':>9}"]
    total = 0
    for l, ((h, w), s) in enumerate(zip(fs, sizes)):
        n = int((lvl == l).sum())
        total += n
        st = f"{ph // h}" if ph // h == pw // w else f"{ph // h}x{pw // w}"
        out.append(f"    P{l + 3:<4} {f'{h} x {w}':>9} {st:>7} {str(tuple(int(v) for v in s)):<16} {_n(n):>9}"
                   f"  = {h} * {w} * {A}")
    out += [f"    {'total':<5} {'':>9} {'':>7} {'':<16} {_n(total):>9}", ""]
    odd = [(l + 3, ph // h if ph // h == pw // w else f"{ph // h} (y) x {pw // w} (x)")
           for l, (h, w) in enumerate(fs) if ph // h != 2 ** (l + 3) or pw // w != 2 ** (l + 3)]
    if odd:
        out += ["  Note: torchvision derives strides as image // feature, so " +
                ", ".join(f"P{l} gets {s}" for l, s in odd) + " instead of a power of 2",
                "  (a map of side ceil(n / 2^l) does not divide the image exactly).", ""]
    out += [
        f"Step 3. What the heads must output, per level (K = {K} classes, sigmoid per class):",
        f"    {'level':<5} {'classification':>22} {'regression':>18}",
    ]
    for l, (h, w) in enumerate(fs):
        out.append(f"    P{l + 3:<4} {_shape(h * w, K * A):>22} {_shape(h * w, 4 * A):>18}")
    out += [
        f"  ({K} x {A} = {K * A} and 4 x {A} = {4 * A} channels per location.) Concatenated per anchor:",
        f"  classification {_shape(total, K)}, regression {_shape(total, 4)}.",
    ]
    return out


def _ssd_maps(H, W):
    """VGG16 + SSD extras as torchvision builds them: feature sides for an H x W input."""
    def side(n):
        n = n // 2                  # pool1 (floor)
        n = n // 2                  # pool2 (floor)
        n = _ceil_div(n, 2)         # pool3 (ceil_mode=True)
        f1 = n                      # conv4_3
        f2 = f1 // 2                # pool4; pool5 is 3x3 stride 1 pad 1; conv6 (dilated) and conv7 keep it
        f3 = (f2 + 2 - 3) // 2 + 1  # conv8_2: 3x3 stride 2 pad 1
        f4 = (f3 + 2 - 3) // 2 + 1  # conv9_2
        f5 = f4 - 2                 # conv10_2: 3x3 valid
        f6 = f5 - 2                 # conv11_2: 3x3 valid
        return [f1, f2, f3, f4, f5, f6]
    hs, ws = side(int(H)), side(int(W))
    if min(hs + ws) <= 0:
        raise ValueError(f"`image_size` {H} x {W} is too small for SSD300's layers (feature sides {hs} x {ws})")
    return list(zip(hs, ws))


def _ssd300(image_size, num_classes):
    H, W = image_size
    fs = _ssd_maps(H, W)
    boxes = ssd_default_boxes((H, W), fs, **_SSD300)
    per = [2 + 2 * len(r) for r in _SSD300["aspect_ratios"]]
    K = num_classes
    sc = _SSD300["scales"]
    out = [
        f"SSD300, input {H} x {W} (torchvision resizes every image to the network input)",
        "",
        "Step 1. Default boxes per location on map k: a square of scale s_k, a square of",
        "  sqrt(s_k * s_k+1), and a wide and a tall box for every extra ratio a (w = s sqrt(a), h = s / sqrt(a)).",
        "  Scales are fractions of the image: " + ", ".join(f"{s:g}" for s in sc) + ".",
        "",
        "Step 2. Tile every map: cell centres at (i + 0.5) * step pixels (steps " +
        ", ".join(str(s) for s in _SSD300["steps"]) + "):",
        f"    {'map':>9} {'step':>5} {'scale':>6} {'ratios':<8} {'per loc':>7} {'boxes':>7}",
    ]
    total = 0
    for k, ((h, w), a) in enumerate(zip(fs, per)):
        n = h * w * a
        total += n
        out.append(f"    {f'{h} x {w}':>9} {_SSD300['steps'][k]:>5} {sc[k]:>6g} "
                   f"{str(_SSD300['aspect_ratios'][k]):<8} {a:>7} {_n(n):>7}  = {h} * {w} * {a}")
    out += [
        f"    {'total':>9} {'':>5} {'':>6} {'':<8} {'':>7} {_n(total):>7}",
        "",
    ]
    if (H, W) != (300, 300):
        cover = [(h, w, s) for (h, w), s in zip(fs, _SSD300["steps"]) if (h - 0.5) * s > H or (w - 0.5) * s > W]
        out += ["  Note: the steps and scales are SSD300's (torchvision keeps them for any input size)."]
        if cover:
            out += ["  Here the last cell centres fall outside the image on the "
                    + ", ".join(f"{h} x {w}" for h, w, _ in cover) + " map(s): steps and maps disagree.", ""]
        else:
            out += [""]
    out += [
        f"  The first box: {np.round(boxes[0], 4).tolist()} (a {sc[0] * W:g}-pixel square centred at "
        f"({(boxes[0, 0] + boxes[0, 2]) / 2:g}, {(boxes[0, 1] + boxes[0, 3]) / 2:g})).",
        "  torchvision clips each (w, h) pair to the image (clip=True) but not the corners.",
        "",
        f"Step 3. What the heads must output, per map (K = {K} classes including background, softmax):",
        f"    {'map':>9} {'confidence':>16} {'location':>12}",
    ]
    for (h, w), a in zip(fs, per):
        out.append(f"    {f'{h} x {w}':>9} {_shape(h * w, K * a):>16} {_shape(h * w, 4 * a):>12}")
    out += [f"  Concatenated per box: confidence {_shape(total, K)}, location {_shape(total, 4)}."]
    assert total == len(boxes)
    return out


_BUILDERS = {"faster-rcnn": _faster_rcnn, "retinanet": _retinanet, "ssd300": _ssd300}


def anchors_report(preset="faster-rcnn", image_size=None, *, num_classes=91):
    """A lesson on the anchors of a detector preset, as text.

    Parameters
    ----------
    preset : {"faster-rcnn", "retinanet", "ssd300"}
    image_size : (H, W) of ints, optional
        Default: the preset's (800 x 800, 800 x 800, 300 x 300).
    num_classes : int
        For the head shapes (torchvision's COCO models use 91).

    Returns
    -------
    str
        Cell anchors, anchors per level, totals and the head output shapes, e.g. for the default
        Faster R-CNN: a 50 x 50 map, 22,500 anchors, objectness (2500, 9), deltas (2500, 36), per
        anchor (22500, 4).
    """
    _checks.check_choice(preset, "preset", tuple(_BUILDERS))
    if image_size is None:
        image_size = PRESETS[preset]
    h, w = _checks.check_image_size(image_size)
    h = _checks.check_int(h, "image_size[H]", low=1)
    w = _checks.check_int(w, "image_size[W]", low=1)
    k = _checks.check_int(num_classes, "num_classes", low=1, high=_checks.MAX_CLASSES)
    # the anchors of an (H, W) image: about H * W / 16 * 9 rows at the finest level; refuse a size whose
    # anchors pass the allocation cap before any builder starts
    _checks.check_allocation(h * w * 9 * 4, 8, "anchors x 4 coordinates at stride 4 (an upper bound)",
                             name="image_size")
    return "\n".join(_BUILDERS[preset]((h, w), k)) + "\n"


# ---- the reference code behind the lesson ------------------------------------------------------------

#: per preset, the readable reference functions (refdet/reference/anchors.py) that compute its anchors
ANCHOR_REFERENCES = {
    "faster-rcnn": ("anchors.cell_anchors", "anchors.grid_anchors", "anchors.offset_pixels", "anchors._grid"),
    "retinanet": ("anchors.octave_sizes", "anchors.cell_anchors", "anchors.pyramid_anchors",
                  "anchors.offset_pixels", "anchors._grid"),
    "ssd300": ("anchors.ssd_shapes", "anchors.ssd_default_boxes"),
}


def reference_source(*names: str) -> str:
    """The source code of functions of :mod:`refdet.reference`, each under a header naming its file.

    Parameters
    ----------
    *names : str
        ``"module.function"`` inside ``refdet.reference``, e.g. ``"anchors.cell_anchors"``,
        ``"matcher.match"``, ``"nms.nms"``.

    Returns
    -------
    str
        ``# refdet/reference/anchors.py, line 56: cell_anchors`` then the function's source
        (:func:`inspect.getsource`), for each name, separated by blank lines.
    """
    parts = []
    for name in names:
        if not isinstance(name, str) or "." not in name:
            raise ValueError(f"`names` must be 'module.function' strings inside refdet.reference; got {name!r}")
        mod, _, fn = name.rpartition(".")
        try:
            module = importlib.import_module(f"refdet.reference.{mod}")
        except ImportError:
            raise ValueError(f"no module refdet.reference.{mod} (from {name!r})") from None
        obj = getattr(module, fn, None)
        if obj is None or not callable(obj):
            raise ValueError(f"refdet.reference.{mod} has no function {fn!r}")
        lines, start = inspect.getsourcelines(obj)
        parts.append(f"# refdet/reference/{mod.replace('.', '/')}.py, line {start}: {fn}\n" + "".join(lines).rstrip())
    return "\n\n".join(parts) + "\n"


# ---- command-line glue (refdet.cli COMMANDS["anchors"]) --------------------------------------------

def _anchors_args(p):
    from refdet.apps.args import int_range
    choices = sorted(_BUILDERS)
    p.add_argument("preset", nargs="?", default=None, choices=choices,
                   help="detector preset: " + ", ".join(choices) + " (default: faster-rcnn)")
    p.add_argument("--preset", dest="preset_option", default=None, choices=choices, metavar="PRESET",
                   help="the same as the positional PRESET (either form works)")
    p.add_argument("--image-size", nargs=2, type=int_range(1), metavar=("H", "W"),
                   help="image height and width (default: 800 800 for faster-rcnn and retinanet, "
                        "300 300 for ssd300)")
    p.add_argument("--num-classes", type=int_range(1), default=91,
                   help="classes for the head shapes (default 91, COCO)")
    p.add_argument("--show-reference", action="store_true",
                   help="also print the reference code (refdet/reference/anchors.py) that computes these anchors")


def _anchors_run(args):
    preset = args.preset
    if args.preset_option is not None:
        if preset is not None and preset != args.preset_option:
            raise ValueError(f"two presets given: {preset} and --preset {args.preset_option}; give one")
        preset = args.preset_option
    preset = preset or "faster-rcnn"
    size = tuple(args.image_size) if args.image_size else None
    print(anchors_report(preset, size, num_classes=args.num_classes), end="")
    if args.show_reference:
        names = ANCHOR_REFERENCES[preset]
        print()
        print(f"The reference code that computes these anchors ({', '.join(names)}; the fast path in")
        print("refdet/anchors/ is held equal to it by tests/test_reference_geometry.py):")
        print()
        print(reference_source(*names), end="")
    return 0
