"""
6. Exchange through ONNX and NNEF
=================================

A model trained in one framework is deployed with another runtime, so the network travels as a
file: ONNX (a protobuf graph of standard operators, run by onnxruntime and ``onnx.reference``) or
NNEF (a textual graph plus one binary ``.dat`` file per tensor, run by ``nnef.Session``). An
exported file is only as good as its agreement with the original, so refdet exports its heads and
then *runs* the file in every runtime installed and compares each output with its own forward
pass. This lesson exports a RetinaNet head both ways, looks inside the files, reads the weights
back and measures the agreement.

The ONNX part needs the ``onnx`` package (the ``onnx`` extra; running also needs
``onnxruntime``), the NNEF runtime comparison the ``nnef`` package. NNEF writing and reading is
refdet's own code (NumPy only). The sections below run what is installed and say what is not.
"""
import importlib.util
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch

import refdet
from refdet.exchange import export_nnef, load_nnef, read_nnef_tensor

HAVE_ONNX = importlib.util.find_spec("onnx") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_NNEF = importlib.util.find_spec("nnef") is not None
print(f"onnx installed: {HAVE_ONNX}, onnxruntime: {HAVE_ORT}, nnef: {HAVE_NNEF}")

# %%
# The model: a small RetinaNet head
# ---------------------------------
# Two 3x3 conv + ReLU layers per subnet, then the class logits (A x K channels) and the box
# deltas (4A channels), flattened to one row per anchor. Parameters are float32 arrays keyed by
# torchvision's ``state_dict`` names, so a torchvision checkpoint converted to NumPy exports the
# same way.

C, A, K = 8, 3, 4
params = refdet.retinanet_head_init(C, A, K, rng=0, num_convs=2)
# the initialisation (std 0.01) makes every output nearly constant: spread the weights as training would
rng = np.random.default_rng(0)
params = {k: (v + rng.normal(0, 0.15, v.shape)).astype(np.float32) for k, v in params.items()}
for k, v in params.items():
    print(f"  {k:42s} {v.shape}")
features = np.random.default_rng(1).standard_normal((1, C, 13, 9)).astype(np.float32)
ref, _ = refdet.retinanet_head_forward(params, features)
ref_cls = refdet.flatten_head_output(ref.cls_logits, A)
ref_box = refdet.flatten_head_output(ref.bbox_deltas, A)
print("refdet outputs (rows = 13 x 9 x 3 anchors):", ref_cls.shape, ref_box.shape)

# %%
# ONNX: export, look inside, read back
# ------------------------------------
# :func:`refdet.exchange.export_onnx` writes the graph with ``onnx.helper`` (opset 19 here),
# checks it with ``onnx.checker`` (``full_check``), and records what refdet computes in the
# model's metadata. The graph is the head's arithmetic, operator by operator.

if HAVE_ONNX:
    from refdet.exchange import export_onnx, load_onnx_params
    from refdet.exchange.onnx import onnx_config, run_onnx, verify_onnx

    model = export_onnx(params, model="retinanet_head", opset=19)
    print("inputs:", [i.name for i in model.graph.input], " outputs:", [o.name for o in model.graph.output])
    print("operators:", [n.op_type for n in model.graph.node])
    print("recorded config:", {k: v for k, v in onnx_config(model).items() if k != "programs"})
    back = load_onnx_params(model)
    print("parameters read back bit for bit:", all(np.array_equal(back[k], params[k]) for k in params))
else:
    model = None
    print("onnx is not installed: pip install 'refdet[onnx]' to run this section")

# %%
# The graph drawn from the file: each box is a node of ``model.graph.node`` (its operator and the
# name of its output), the two subnets side by side.

if model is not None:
    nodes = list(model.graph.node)
    producers = {o: n for n in nodes for o in n.output}

    def branch_of(node):
        """Follow the first input upwards until the graph input: which subnet a node belongs to."""
        seen = node
        while True:
            src = producers.get(seen.input[0])
            if src is None:
                return "cls" if "classification" in seen.input[1] else "box"
            seen = src

    fig, ax = plt.subplots(figsize=(8, 6.5), layout="constrained")
    rows = {"cls": 0, "box": 0}
    for n in nodes:
        b = branch_of(n)
        col = 0 if b == "cls" else 1
        y = -rows[b]
        rows[b] += 1
        colour = {"Conv": "tab:blue", "Relu": "tab:orange", "Transpose": "tab:green",
                  "Reshape": "tab:green", "Identity": "0.6"}.get(n.op_type, "tab:red")
        ax.add_patch(FancyBboxPatch((col * 3.2, y - 0.35), 2.6, 0.7, boxstyle="round,pad=0.05",
                                    fc=colour, alpha=0.35, ec=colour))
        ax.text(col * 3.2 + 1.3, y, f"{n.op_type}\n-> {n.output[0]}", ha="center", va="center", fontsize=8)
        if rows[b] > 1:
            ax.annotate("", xy=(col * 3.2 + 1.3, y + 0.37), xytext=(col * 3.2 + 1.3, y + 0.63),
                        arrowprops=dict(arrowstyle="->", color="0.3"))
    ax.text(1.3, 0.9, "features (N, 8, H, W)\nclassification subnet", ha="center", fontsize=9, weight="bold")
    ax.text(4.5, 0.9, "features (N, 8, H, W)\nregression subnet", ha="center", fontsize=9, weight="bold")
    ax.set_xlim(-0.3, 6.1)
    ax.set_ylim(-max(rows.values()) + 0.3, 1.6)
    ax.axis("off")
    ax.set_title("The exported ONNX graph (read back from the ModelProto): conv, ReLU, then the\n"
                 "NCHW -> (N, H*W*A, K) rearrangement of flatten_head_output as Transpose + Reshape", fontsize=10)

# %%
# Running the file: onnxruntime and onnx.reference against refdet
# ---------------------------------------------------------------
# :func:`refdet.exchange.onnx.run_onnx` runs the model; :func:`refdet.exchange.onnx.verify_onnx`
# does so in every installed runtime on random inputs and compares output by output. float32
# convolutions sum in a different order in each runtime, so agreement is to float32 rounding,
# not bit for bit.

diffs = {}
if model is not None and HAVE_ORT:
    got = run_onnx(model, {"features": features}, runtime="onnxruntime")
    diffs["onnxruntime"] = (np.abs(got["cls_logits"] - ref_cls).max() / np.abs(ref_cls).max(),
                            np.abs(got["bbox_deltas"] - ref_box).max() / np.abs(ref_box).max())
    print(verify_onnx(model))
if model is not None:
    got = run_onnx(model, {"features": features}, runtime="onnx.reference")
    diffs["onnx.reference"] = (np.abs(got["cls_logits"] - ref_cls).max() / np.abs(ref_cls).max(),
                               np.abs(got["bbox_deltas"] - ref_box).max() / np.abs(ref_box).max())
if model is not None and not HAVE_ORT:
    print("onnxruntime is not installed: only onnx.reference was run")

# %%
# NNEF: a text graph and one file per tensor
# ------------------------------------------
# :func:`refdet.exchange.export_nnef` writes ``graph.nnef`` (the same operations in NNEF's
# syntax, with static input shapes) and a ``.dat`` file per parameter: a 128-byte header (magic,
# version, rank, extents, bits per item, item type) then the raw little-endian data. refdet
# writes and reads them itself, so this part needs no optional package.

folder = export_nnef(params, os.path.join(tempfile.mkdtemp(), "retinanet_head"), height=13, width=9)
print(sorted(os.listdir(folder))[:4], "...", len(os.listdir(folder)), "files")
with open(os.path.join(folder, "graph.nnef")) as f:
    text = f.read().splitlines()
print("\n".join(text[:12]))
with open(os.path.join(folder, "classification_head.cls_logits.weight.dat"), "rb") as f:
    header = f.read(128)
print("header bytes 0-11:", header[:12].hex(" "), "(magic 4E EF, version 1.0, data length, rank)")
w = read_nnef_tensor(os.path.join(folder, "classification_head.cls_logits.weight.dat"))
print("read back:", w.shape, w.dtype, np.array_equal(w, params["classification_head.cls_logits.weight"]))
loaded = load_nnef(folder)
print("every parameter read back bit for bit:", all(np.array_equal(loaded[k], params[k]) for k in params))

# %%
# If the ``nnef`` package is installed, the folder is also parsed by it and run in
# ``nnef.Session`` (its C++ interpreter) and compared with refdet.

if HAVE_NNEF:
    from refdet.exchange.nnef import run_nnef, verify_nnef

    got = run_nnef(folder, {"features": features})
    diffs["nnef.Session"] = (np.abs(got["cls_logits"] - ref_cls).max() / np.abs(ref_cls).max(),
                             np.abs(got["bbox_deltas"] - ref_box).max() / np.abs(ref_box).max())
    print(verify_nnef(folder))
else:
    print("nnef is not installed: pip install 'refdet[nnef]' to run the NNEF interpreter")

# %%
# The agreement, runtime by runtime: the largest difference from refdet's float32 forward pass on
# the same input, relative to the largest output (float32 has a relative spacing of 1.2e-7).

if diffs:
    fig, ax = plt.subplots(figsize=(7.5, 3.8), layout="constrained")
    names = list(diffs)
    pos = np.arange(len(names))
    floor = 1e-12                                          # a difference of exactly 0 drawn at the floor
    ax.bar(pos - 0.18, [max(d[0], floor) for d in diffs.values()], 0.36, label="cls_logits", color="tab:blue")
    ax.bar(pos + 0.18, [max(d[1], floor) for d in diffs.values()], 0.36, label="bbox_deltas", color="tab:orange")
    ax.axhline(np.finfo(np.float32).eps, color="k", ls="--", lw=1, label="float32 epsilon (1.2e-7)")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1e-4)
    ax.set_xticks(pos, names)
    ax.set_ylabel("max |runtime - refdet| / max |refdet|")
    ax.set_title("The exported head in each runtime vs refdet (a bar at 1e-12: identical)")
    ax.legend(fontsize=8, loc="upper left")
