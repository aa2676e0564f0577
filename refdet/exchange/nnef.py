"""Export refdet heads and FPNs to NNEF (Khronos), read them back, and run them in ``nnef.Session``.

An NNEF model is a folder: ``graph.nnef`` (text: one ``external`` per input, one ``variable`` per
parameter, then the operations) and one ``<label>.dat`` binary file per variable. refdet writes and
reads the ``.dat`` files with its **own** code (NumPy only; SPEC-quant-exchange §7.2), checked
against ``nnef.read_tensor`` / ``nnef.write_tensor`` in the tests. The header is 128 bytes,
little-endian::

    offset  size  field
    0       2     magic 0x4E 0xEF
    2       2     version major, minor = 1, 0
    4       4     data_length in bytes = ceil(count * bits / 8)
    8       4     rank (<= 8)
    12      32    extents[8] (uint32; entries past the rank are 0)
    44      4     bits_per_item (float 16/32/64; int 8..64; bool 1 or 8)
    48      4     item_type: 0 float, 1 uint, 2 quint, 3 qint, 4 int, 5 bool (upper 16 bits: vendor)
    52      76    reserved[19] (zero)
    128     ...   data, row-major (bool bit-packed, most significant bit first)

refdet also writes ``refdet.json`` beside the graph: the model's config, the input shapes and the
refdet shape of every parameter (NNEF's conv bias is ``[1, C]``, refdet's ``(C,)``), so that
:func:`load_nnef` returns exactly the exported parameters and :func:`verify_nnef` knows what to compute.

NNEF needs static shapes, so the export takes the input sizes. The graph (NNEF 1.0 standard
fragments):

* ``conv(x, w, b, padding = [(p, p), (p, p)], stride = [s, s])``, ``relu``, ``add``, ``mul``;
* GroupNorm written out as ``reshape`` / ``mean_reduce`` / ``sqrt`` in refdet's order;
* head layout ``reshape(transpose(x, axes = [0, 2, 3, 1]), shape = [B, -1, C])`` (row
  ``(y*W + x)*A + a``), levels joined with ``concat(..., axis = 1)``;
* FPN upsampling: NNEF has ``nearest_upsample`` with **integer factors only**. refdet computes
  PyTorch's source-index map of each axis (:func:`refdet.resize.upsample_nearest_source_index`) and
  writes ``nearest_upsample(factor = [fh, fw])`` followed, when the lateral is smaller, by a
  ``slice`` to its size, **only if** that reproduces the map exactly. That covers every stride-2
  pyramid: ``out = 2 * in`` and ``out = 2 * in - 1`` (13 -> 25: ``floor(dst * 13 / 25) = dst // 2``
  for every ``dst < 25``). Other size pairs raise ``ValueError`` (use ONNX, whose ``Resize`` takes
  the lateral's size);
* the ``"maxpool"`` extra level is ``max_pool(size = [1, 1, 1, 1], stride = [1, 1, 2, 2],
  border = 'ignore')``.

``nnef.Session`` needs ``lowered = ["nearest_upsample"]``. Post-processing is not exportable (NNEF has
no NonMaxSuppression). No ``graph.quant`` is written: the quantized head (:mod:`refdet.quant.head`) goes to
ONNX as QDQ; NNEF's quantization is an annotation of float tensors that ``nnef.Session`` does not execute.
"""
from __future__ import annotations

import json
import math
import os
import tarfile
import tempfile

import numpy as np

from refdet import _checks
from refdet.exchange import _model_reference, _models, _nnef_graph
from refdet.exchange import files as _files
# the files on disk (.dat tensors; model folders and archives read as untrusted input) live beside this module
from refdet.exchange._nnef_files import (NNEF_HEADER_SIZE, _config, _is_archive, _load_params,  # noqa: F401
                                         _open_model, load_nnef, nnef_config, read_nnef_tensor, write_nnef_tensor)

__all__ = ["export_nnef", "load_nnef", "verify_nnef", "run_nnef", "nnef_config", "read_nnef_tensor",
           "write_nnef_tensor", "NNEF_HEADER_SIZE"]

# ---------------------------------------------------------------------------------------------------
# graph text
# ---------------------------------------------------------------------------------------------------

def _fmt_list(v):
    return "[" + ", ".join(str(int(x)) for x in v) + "]"


class _Text(_models.ProgramEmitter):
    """Builds graph.nnef, tracking every tensor's static shape."""

    def __init__(self, batch):
        self.lines, self.vars, self.shapes, self.labels = [], {}, {}, {}
        self.n = 0
        self.batch = batch
        self.prefix = ""

    def tmp(self, hint="t"):
        self.n += 1
        return f"{hint}{self.n}"

    def emit(self, name, expr, shape):
        self.lines.append(f"    {name} = {expr};")
        self.shapes[name] = tuple(int(s) for s in shape)
        return name

    def variable(self, key, arr, nnef_shape=None):
        label = self.prefix + key
        if label in self.labels:
            return self.labels[label]
        shape = tuple(nnef_shape or arr.shape)
        name = self.emit(self.tmp("v"), f"variable<scalar>(shape = {_fmt_list(shape)}, label = '{label}')", shape)
        self.vars[label] = (np.asarray(arr, np.float32).reshape(shape), tuple(arr.shape))
        self.labels[label] = name
        return name

    def conv(self, x, wkey, bkey, params, *, pad, stride=1):
        w = params[wkey]
        f, c, kh, kw = w.shape
        wn = self.variable(wkey, w)
        bn = self.variable(bkey, params[bkey], (1, f)) if bkey is not None else "0.0"
        b_, _, h, wd = self.shapes[x]
        ho = (h + 2 * pad - kh) // stride + 1
        wo = (wd + 2 * pad - kw) // stride + 1
        return self.emit(self.tmp("conv"), f"conv({x}, {wn}, {bn}, padding = [({pad}, {pad}), ({pad}, {pad})], "
                                           f"stride = [{stride}, {stride}], dilation = [1, 1])", (b_, f, ho, wo))

    def unary(self, op, x, **attrs):
        a = "".join(f", {k} = {v}" for k, v in attrs.items())
        return self.emit(self.tmp(op[:4]), f"{op}({x}{a})", self.shapes[x])

    def binary(self, op, x, y, shape=None):
        return self.emit(self.tmp(op), f"{op}({x}, {y})", shape or self.shapes[x])

    def group_norm(self, x, gkey, bkey, params, groups, eps):
        b_, c, h, w = self.shapes[x]
        n = (c // groups) * h * w
        r = self.emit(self.tmp("gn"), f"reshape({x}, shape = [{b_}, {groups}, {n}])", (b_, groups, n))
        mu = self.emit(self.tmp("gn_mean"), f"mean_reduce({r}, axes = [2])", (b_, groups, 1))
        xc = self.binary("sub", r, mu)
        var = self.emit(self.tmp("gn_var"), f"mean_reduce(mul({xc}, {xc}), axes = [2])", (b_, groups, 1))
        eps_text = np.format_float_positional(float(eps))
        rstd = self.emit(self.tmp("gn_rstd"), f"div(1.0, sqrt(add({var}, {eps_text})))", (b_, groups, 1))
        xhat = self.emit(self.tmp("gn_xhat"), f"reshape(mul({xc}, {rstd}), shape = {_fmt_list((b_, c, h, w))})",
                         (b_, c, h, w))
        g = self.variable(gkey, params[gkey], (1, c))
        bb = self.variable(bkey, params[bkey], (1, c))
        g4 = self.emit(self.tmp("gamma"), f"reshape({g}, shape = [1, {c}, 1, 1])", (1, c, 1, 1))
        b4 = self.emit(self.tmp("beta"), f"reshape({bb}, shape = [1, {c}, 1, 1])", (1, c, 1, 1))
        return self.binary("add", self.binary("mul", xhat, g4), b4)

    def relu(self, x):
        return self.unary("relu", x)

    def flatten(self, x, c):
        b_, ac, h, w = self.shapes[x]
        t = self.emit(self.tmp("nhwc"), f"transpose({x}, axes = [0, 2, 3, 1])", (b_, h, w, ac))
        return self.emit(self.tmp("rows"), f"reshape({t}, shape = [{b_}, {h * w * ac // c}, {c}])",
                         (b_, h * w * ac // c, c))

    def flatten_class_major(self, x, a, c):
        b_, ac, h, w = self.shapes[x]
        r = self.emit(self.tmp("cm"), f"reshape({x}, shape = [{b_}, {c}, {a}, {h * w}])", (b_, c, a, h * w))
        t = self.emit(self.tmp("cmt"), f"transpose({r}, axes = [0, 3, 2, 1])", (b_, h * w, a, c))
        return self.emit(self.tmp("rows"), f"reshape({t}, shape = [{b_}, {h * w * a}, {c}])", (b_, h * w * a, c))

    def concat(self, xs):
        if len(xs) == 1:
            return xs[0]
        shp = list(self.shapes[xs[0]])
        shp[1] = sum(self.shapes[x][1] for x in xs)
        return self.emit(self.tmp("cat"), f"concat([{', '.join(xs)}], axis = 1)", shp)

    def upsample_to(self, m, out_hw, mode, scale_factor=None):
        from refdet.resize import upsample_nearest_source_index

        b_, c, h, w = self.shapes[m]
        factors = []
        for n_in, n_out in ((h, out_hw[0]), (w, out_hw[1])):
            src = upsample_nearest_source_index(n_in, n_out, mode=mode, scale_factor=scale_factor)
            dst = np.arange(n_out)
            f = next((f for f in range(1, 9) if f * n_in >= n_out and np.array_equal(src, dst // f)), None)
            if f is None:
                raise ValueError(
                    f"NNEF cannot express this FPN upsampling: {n_in} -> {n_out} ({mode}) is not an integer-factor "
                    f"nearest upsample followed by a crop (NNEF's nearest_upsample takes integer factors); "
                    f"export to ONNX instead, whose Resize takes the lateral's size")
            factors.append(f)
        x = m
        if factors != [1, 1]:
            x = self.emit(self.tmp("up"), f"nearest_upsample({m}, factor = {_fmt_list(factors)})",
                          (b_, c, h * factors[0], w * factors[1]))
        if self.shapes[x][2:] != tuple(out_hw):
            x = self.emit(self.tmp("crop"), f"slice({x}, axes = [2, 3], begin = [0, 0], end = {_fmt_list(out_hw)})",
                          (b_, c) + tuple(out_hw))
        return x


def _rpn_text(t, cfg, params, xs):
    trunk = []
    for i in range(cfg["conv_depth"]):
        trunk += [("conv", f"conv.{i}.0.weight", f"conv.{i}.0.bias", 1), ("relu",)]
    obj, dlt = [], []
    for x in xs:
        h = t.program(trunk, x, params, 1, 0.0)
        o = t.conv(h, "cls_logits.weight", "cls_logits.bias", params, pad=0)
        d = t.conv(h, "bbox_pred.weight", "bbox_pred.bias", params, pad=0)
        obj.append(t.flatten(o, 1) if cfg["objectness"] == "sigmoid"
                   else t.flatten_class_major(o, cfg["num_anchors"], 2))
        dlt.append(t.flatten(d, 4))
    return [t.concat(obj), t.concat(dlt)]


def _retinanet_text(t, hc, params, xs):
    progs = {h: [tuple(op) for op in ops] for h, ops in hc["programs"].items()}
    cls, box = [], []
    for x in xs:
        cls.append(t.flatten(t.program(progs["classification_head"], x, params, hc["num_groups"], hc["eps"]),
                             hc["num_classes"]))
        box.append(t.flatten(t.program(progs["regression_head"], x, params, hc["num_groups"], hc["eps"]), 4))
    return [t.concat(cls), t.concat(box)]


def _fpn_text(t, fc, params, xs):
    s = fc["settings"]
    L = len(xs)
    outs = [None] * L
    m = t.conv(xs[L - 1], f"inner_blocks.{L - 1}.0.weight", f"inner_blocks.{L - 1}.0.bias", params, pad=0)
    top_lateral = m
    outs[L - 1] = t.conv(m, f"layer_blocks.{L - 1}.0.weight", f"layer_blocks.{L - 1}.0.bias", params, pad=1)
    for i in range(L - 2, -1, -1):
        lat = t.conv(xs[i], f"inner_blocks.{i}.0.weight", f"inner_blocks.{i}.0.bias", params, pad=0)
        out_hw = t.shapes[lat][2:]
        if s["upsample"] == "x2":
            if out_hw != (2 * t.shapes[m][2], 2 * t.shapes[m][3]):
                raise ValueError(f"upsample='x2' needs every map twice the size of the next; level {i} is "
                                 f"{out_hw}, level {i + 1} is {t.shapes[m][2:]}")
            up = t.upsample_to(m, out_hw, s["upsample_mode"], scale_factor=2)
        else:
            up = t.upsample_to(m, out_hw, s["upsample_mode"])
        m = t.binary("add", lat, up)
        if s["fuse"] == "avg":
            m = t.emit(t.tmp("avg"), f"mul({m}, 0.5)", t.shapes[m])
        outs[i] = t.conv(m, f"layer_blocks.{i}.0.weight", f"layer_blocks.{i}.0.bias", params, pad=1)
    extra = []
    if s["extra_blocks"] == "maxpool":
        b_, c, h, w = t.shapes[outs[L - 1]]
        extra.append(t.emit(t.tmp("pool"), f"max_pool({outs[L - 1]}, size = [1, 1, 1, 1], stride = [1, 1, 2, 2], "
                                           f"padding = [(0, 0), (0, 0), (0, 0), (0, 0)], border = 'ignore')",
                            (b_, c, (h + 1) // 2, (w + 1) // 2)))
    elif s["extra_blocks"] == "p6p7":
        x = {"c5": xs[L - 1], "p5": outs[L - 1], "lateral": top_lateral}[s["p6p7_input"]]
        p6 = t.conv(x, "extra_blocks.p6.weight", "extra_blocks.p6.bias", params, pad=1, stride=2)
        x7 = t.unary("relu", p6) if s["relu_before_p7"] else p6
        extra += [p6, t.conv(x7, "extra_blocks.p7.weight", "extra_blocks.p7.bias", params, pad=1, stride=2)]
    return outs + extra


def export_nnef(params, folder, *, model="retinanet_head", input_sizes=None, batch=1, height=13, width=9,
                num_levels=1, extra_blocks=None, convention="torchvision", upsample=None, upsample_mode=None,
                fuse=None, p6p7_input=None, relu_before_p7=None, num_groups=32, eps=1e-5, overwrite=False):
    """Write a refdet head / FPN / FPN + head as an NNEF model folder.

    Parameters
    ----------
    params : dict of arrays
        As for :func:`refdet.exchange.export_onnx` (``"postprocess"`` is not exportable to NNEF: it has
        no NonMaxSuppression).
    folder : path
        Created if missing; must be empty unless ``overwrite``. A name ending in ``.tgz`` /
        ``.tar.gz`` / ``.tar`` writes an archive of the folder instead (``nnef_tools``' ``.nnef.tgz``).
    model : {"rpn_head", "retinanet_head", "fpn", "fpn_retinanet_head"}
    input_sizes : list of (H, W), optional
        Static size of each input map; default :func:`refdet.exchange._models.level_sizes` of
        ``(height, width)`` (each next level ``ceil(/2)``, 13 x 9 -> 7 x 5 -> 4 x 3).
    batch : int
    num_levels, extra_blocks, convention, upsample, upsample_mode, fuse, p6p7_input, relu_before_p7,
    num_groups, eps
        As for :func:`refdet.exchange.export_onnx`.

    Returns
    -------
    str
        The folder (``graph.nnef``, ``<label>.dat`` per parameter with the parameter's key as label,
        ``refdet.json``).
    """
    model = _models.check_model(model)
    if model in ("postprocess", "yolo_postprocess"):
        raise ValueError(f"model={model!r} cannot be exported to NNEF: NNEF 1.0 has no NonMaxSuppression "
                         "(export it to ONNX)")
    if model == "quantized_retinanet_head":
        raise ValueError("model='quantized_retinanet_head' is exported to ONNX (QDQ) only: refdet writes no NNEF "
                         "graph.quant, and nnef.Session would not run the integer path")
    knobs = dict(upsample=upsample, upsample_mode=upsample_mode, fuse=fuse, p6p7_input=p6p7_input,
                 relu_before_p7=relu_before_p7)
    cfg, p = _models.make_config(model, params, num_levels=num_levels, extra_blocks=extra_blocks,
                                 convention=convention, fpn_knobs=knobs, num_groups=num_groups, eps=eps)
    b = _checks.check_int(batch, "batch", low=1)
    n_in = len(cfg["in_channels"])
    if input_sizes is None:
        sizes = _models.level_sizes(_checks.check_int(height, "height", low=1),
                                    _checks.check_int(width, "width", low=1), n_in)
    else:
        sizes = [_checks.check_pair(s, f"input_sizes[{i}]", low=1) for i, s in enumerate(input_sizes)]
        if len(sizes) != n_in:
            raise ValueError(f"`input_sizes` must give {n_in} (H, W) pairs; got {len(sizes)}")
    t = _Text(b)
    names = _models.input_names(cfg)
    in_shapes = []
    for name, c, (h, w) in zip(names, cfg["in_channels"], sizes):
        in_shapes.append([b, c, int(h), int(w)])
        t.emit(name, f"external<scalar>(shape = {_fmt_list(in_shapes[-1])})", in_shapes[-1])
    if model == "rpn_head":
        outs = _rpn_text(t, cfg, p, names)
    elif model == "retinanet_head":
        outs = _retinanet_text(t, cfg, p, names)
    elif model == "fpn":
        outs = _fpn_text(t, cfg, p, names)
    else:
        t.prefix = _models.FPN_PREFIX
        outs = _fpn_text(t, cfg["fpn"], _models.split_prefixed(p, _models.FPN_PREFIX), names)
        t.prefix = _models.HEAD_PREFIX
        outs = _retinanet_text(t, cfg["head"], _models.split_prefixed(p, _models.HEAD_PREFIX), outs)
        t.prefix = ""
    onames = _models.output_names(cfg)
    for src, dst in zip(outs, onames):
        t.emit(dst, f"copy({src})", t.shapes[src])
    folder = os.fspath(folder)
    if _is_archive(folder):
        if os.path.exists(folder) and not overwrite:
            raise ValueError(f"{folder!r} exists (pass overwrite=True)")
        with tempfile.TemporaryDirectory(prefix="refdet_nnef_") as tmp:
            _write_model(tmp, t, names, onames, model, cfg, in_shapes)
            mode = "w" if folder.lower().endswith(".tar") else "w:gz"
            with tarfile.open(folder, mode) as tf:
                for name in sorted(os.listdir(tmp)):
                    tf.add(os.path.join(tmp, name), arcname=name)
        return folder
    os.makedirs(folder, exist_ok=True)
    if os.listdir(folder) and not overwrite:
        raise ValueError(f"`folder` {folder!r} is not empty (pass overwrite=True)")
    _write_model(folder, t, names, onames, model, cfg, in_shapes)
    return folder


def _write_model(folder, t, names, onames, model, cfg, in_shapes):
    text = ["version 1.0;", "", f"# refdet {_version()}: {model}",
            f"graph refdet_{model}( {', '.join(names)} ) -> ( {', '.join(onames)} )", "{"]
    text += t.lines + ["}", ""]
    with open(os.path.join(folder, "graph.nnef"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(text))
    for label, (arr, _) in t.vars.items():
        write_nnef_tensor(os.path.join(folder, label + ".dat"), arr)
    meta = {"refdet": _version(), "config": cfg, "input_shapes": in_shapes,
            "output_shapes": [list(t.shapes[o]) for o in onames],
            "param_shapes": {label: list(shape) for label, (_, shape) in t.vars.items()}}
    with open(os.path.join(folder, "refdet.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)


def _version():
    from refdet import __version__
    return __version__


# ---------------------------------------------------------------------------------------------------
# running and verifying
# ---------------------------------------------------------------------------------------------------

def _import_nnef():
    try:
        import nnef
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("running NNEF models needs the optional package 'nnef' (pip install 'refdet[nnef]')") \
            from exc
    return nnef


#: every operation export_nnef writes; run_nnef / verify_nnef refuse graphs with others
_EMITTED_OPS = _nnef_graph.OPERATIONS


def _one_line(exc, limit=300):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _vet(m, shapes, params=None):
    """Refuse what nnef.Session must not see; the bytes of the graph's tensors at input ``shapes``."""
    if m.has_quant:
        raise ValueError(f"{m.what} has a graph.quant; refdet writes none and runs only its own float graphs")
    var_shapes = {label: shape for label, shape, _ in m.variables}
    _, total = _nnef_graph.check_graph(m.graph, m.budget, external_shapes=shapes, variable_shapes=var_shapes,
                                       what=f"{m.what}: graph.nnef")
    return total


def _session(nnef, m, inputs):
    graph_inputs = list(m.graph.inputs)
    feeds = []
    for name in graph_inputs:
        if name not in inputs:
            raise ValueError(f"`inputs` is missing {name!r} (the graph's inputs are {graph_inputs})")
        feeds.append(np.ascontiguousarray(inputs[name], dtype=np.float32))
    try:
        graph = nnef.load_graph(m.folder, lowered=["nearest_upsample"])
        nnef.infer_shapes(graph)
    except MemoryError:
        raise
    except Exception as exc:   # nnef.Error, and whatever else the parser raises
        raise ValueError(f"the nnef parser rejects {m.what}: {_one_line(exc)}") from None
    try:
        with nnef.Session(m.folder, lowered=["nearest_upsample"]) as sess:
            res = sess(*feeds)
    except MemoryError:
        raise
    except Exception as exc:
        raise ValueError(f"nnef.Session cannot run {m.what}: {_one_line(exc)}") from None
    if isinstance(res, dict):
        return {k: np.asarray(v) for k, v in res.items()}
    return dict(zip(graph.outputs, (np.asarray(r) for r in res)))


def run_nnef(folder, inputs, *, max_bytes=None):
    """Run an NNEF folder (or archive) in ``nnef.Session`` (``lowered=["nearest_upsample"]``);
    ``{output: array}``.

    The model is read as in :func:`load_nnef` and vetted before the C++ runtime opens any file: only
    the operations :func:`export_nnef` writes, every argument checked and every tensor's shape computed
    from ``inputs``' shapes (:func:`refdet.exchange._nnef_graph.check_graph`), the total within the
    budget (``max_bytes``, default derived from the files' sizes). A runtime failure is a ``ValueError``
    naming the model.
    """
    nnef = _import_nnef()
    if not isinstance(inputs, dict):
        raise TypeError(f"`inputs` must be a dict of arrays by input name; got {type(inputs).__name__}")
    inputs = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
    with _open_model(folder, max_bytes) as m:
        _load_params(m)
        _vet(m, {k: v.shape for k, v in inputs.items()})
        return _session(nnef, m, inputs)


def verify_nnef(folder, inputs=None, *, atol=1e-5, rtol=1e-5, rng=0, max_bytes=None):
    """Validate an exported NNEF folder with the ``nnef`` parser and compare ``nnef.Session`` with refdet.

    Parameters
    ----------
    folder : path
        Written by :func:`export_nnef` (a folder or an archive).
    inputs : dict, optional
        Default: random N(0, 1) maps of the exported static shapes (``refdet.json``), from ``rng``.
    atol, rtol : float
        As in :func:`refdet.exchange.verify_onnx` (``max |diff| <= atol + rtol * max |refdet|``).
    max_bytes : int, optional
        The memory budget: the graph's tensors at the input shapes plus refdet's own computation of
        the same outputs must fit. Default ``64 MiB + 16 x`` the size of the files read, at most 2 GiB.
        A 15 KB folder whose ``refdet.json`` declares 1 x 8 x 5792 x 5792 inputs is refused before any
        input is made.

    The folder is vetted before any runtime sees it, as in :func:`run_nnef`.

    Returns
    -------
    Report
        Rows for ``nnef.Session``; ``report.skipped`` says so if the ``nnef`` package is missing. A
        parser or shape-inference failure raises ``ValueError``.
    """
    with _open_model(folder, max_bytes) as m:
        cfg = _config(m)
        params = _load_params(m)
        if inputs is None:
            shapes = dict(zip(_models.input_names(cfg), (tuple(s) for s in m.meta["input_shapes"])))
        else:
            if not isinstance(inputs, dict):
                raise TypeError(f"`inputs` must be a dict of arrays by input name; got {type(inputs).__name__}")
            inputs = {k: _checks.as_array(v, f"inputs[{k!r}]") for k, v in inputs.items()}
            shapes = {k: v.shape for k, v in inputs.items()}
        m.budget.check(4 * sum(math.prod(s) for s in shapes.values()), "its inputs")
        graph_bytes = _vet(m, shapes)
        try:
            ref = _model_reference.reference_work_bytes(cfg, params, shapes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{m.what}: refdet cannot compute this model: {_one_line(exc)}") from None
        m.budget.check(graph_bytes + ref, f"running graph.nnef ({_files.format_bytes(graph_bytes)}) and refdet's "
                                          f"own computation ({_files.format_bytes(ref)})")
        if inputs is None:
            r = _checks.as_rng(rng)
            inputs = {name: r.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
        try:
            want = _model_reference.reference_outputs(cfg, params, inputs)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{m.what}: refdet cannot compute this model: {_one_line(exc)}") from None
        try:
            nnef = _import_nnef()
        except ImportError as exc:
            return _models.Report([], {"nnef.Session": f"not installed ({exc})"})
        got = _session(nnef, m, inputs)
        rows = []
        for name, w in want.items():
            if name not in got:
                raise ValueError(f"{m.what} has no output {name!r}")
            rows.append(_models.compare(name, "nnef.Session", got[name], w, atol=atol, rtol=rtol))
        return _models.Report(rows, {})
