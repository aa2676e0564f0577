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

import contextlib
import json
import math
import os
import re
import struct
import tarfile
import tempfile

import numpy as np

from refdet import _checks
from refdet.exchange import _models

__all__ = ["export_nnef", "load_nnef", "verify_nnef", "run_nnef", "nnef_config", "read_nnef_tensor",
           "write_nnef_tensor", "NNEF_HEADER_SIZE"]

NNEF_HEADER_SIZE = 128
_MAGIC = b"\x4e\xef"
_FLOAT, _UINT, _QUINT, _QINT, _INT, _BOOL = range(6)
_HEADER = struct.Struct("<2sBBII8III19I")   # 2 + 1 + 1 + 4 + 4 + 32 + 4 + 4 + 76 = 128 bytes
assert _HEADER.size == NNEF_HEADER_SIZE

_TO_NNEF = {"f2": (_FLOAT, 16), "f4": (_FLOAT, 32), "f8": (_FLOAT, 64),
            "i1": (_INT, 8), "i2": (_INT, 16), "i4": (_INT, 32), "i8": (_INT, 64),
            "u1": (_UINT, 8), "u2": (_UINT, 16), "u4": (_UINT, 32), "u8": (_UINT, 64)}
_FROM_NNEF = {(_FLOAT, 16): "<f2", (_FLOAT, 32): "<f4", (_FLOAT, 64): "<f8"}
for _bits, _c in ((8, "1"), (16, "2"), (32, "4"), (64, "8")):
    _FROM_NNEF[(_INT, _bits)] = _FROM_NNEF[(_QINT, _bits)] = "<i" + _c
    _FROM_NNEF[(_UINT, _bits)] = _FROM_NNEF[(_QUINT, _bits)] = "<u" + _c
del _bits, _c

_GRAPH_MAX_BYTES = 64 << 20
_JSON_MAX_BYTES = 16 << 20


# ---------------------------------------------------------------------------------------------------
# .dat tensor files
# ---------------------------------------------------------------------------------------------------

def write_nnef_tensor(file, array, *, quantized=False):
    """Write one NNEF tensor file (128-byte header + data).

    Parameters
    ----------
    file : path or binary file object
    array : ndarray
        float16/32/64, int8..64, uint8..64 or bool (bit-packed, 1 bit per item), rank <= 8.
    quantized : bool
        Mark an integer tensor as quantized (item type qint / quint; the parameters belong in
        ``graph.quant``).
    """
    arr = np.asarray(array)
    if arr.ndim > 8:
        raise ValueError(f"NNEF tensors have rank <= 8; got shape {arr.shape}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"NNEF extents are uint32; got shape {arr.shape}")
    if arr.dtype == np.bool_:
        if quantized:
            raise ValueError("a bool tensor cannot be quantized")
        item, bits = _BOOL, 1
        data = np.packbits(arr.reshape(-1)).tobytes()
    else:
        key = arr.dtype.kind + str(arr.dtype.itemsize)
        if key not in _TO_NNEF:
            raise TypeError(f"`array` dtype {arr.dtype} has no NNEF item type")
        item, bits = _TO_NNEF[key]
        if quantized:
            if item == _FLOAT:
                raise ValueError(f"only integer tensors can be marked quantized; got {arr.dtype}")
            item = _QINT if item == _INT else _QUINT
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    extents = list(arr.shape) + [0] * (8 - arr.ndim)
    header = _HEADER.pack(_MAGIC, 1, 0, len(data), arr.ndim, *extents, bits, item, *([0] * 19))
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as fh:
            fh.write(header)
            fh.write(data)
    else:
        file.write(header)
        file.write(data)


def _parse_header(header, size, where):
    if len(header) < NNEF_HEADER_SIZE:
        raise ValueError(f"{where}: truncated NNEF tensor file ({len(header)} bytes; the header alone is 128)")
    magic, major, minor, data_length, rank, *rest = _HEADER.unpack(header[:NNEF_HEADER_SIZE])
    extents, bits, item, reserved = rest[:8], rest[8], rest[9], rest[10:]
    if magic != _MAGIC:
        raise ValueError(f"{where}: not an NNEF tensor file (magic {magic.hex()} instead of 4eef)")
    if (major, minor) != (1, 0):
        raise ValueError(f"{where}: unsupported NNEF tensor file version {major}.{minor} (only 1.0)")
    if rank > 8:
        raise ValueError(f"{where}: rank {rank} exceeds NNEF's maximum of 8")
    if any(extents[rank:]):
        raise ValueError(f"{where}: extents past the rank must be 0; got {list(extents)} for rank {rank}")
    if item >> 16:
        raise ValueError(f"{where}: vendor-defined item type {item:#x} is not supported")
    if item == _BOOL:
        if bits not in (1, 8):
            raise ValueError(f"{where}: bool tensors have 1 or 8 bits per item; got {bits}")
        dtype = None
    else:
        if item == _UINT and reserved[0] != 0:   # nnef/binary.py: old files marked signed ints this way
            item = _INT
        dtype = _FROM_NNEF.get((item, bits))
        if dtype is None:
            raise ValueError(f"{where}: unsupported item type {item} with {bits} bits per item")
    shape = tuple(int(e) for e in extents[:rank])
    count = 1
    for e in shape:
        count *= e                              # Python int: no overflow
    need = (count * bits + 7) // 8
    if data_length != need:
        raise ValueError(f"{where}: header says {data_length} data bytes but extents {list(shape)} x {bits} bits "
                         f"need {need}")
    if size != NNEF_HEADER_SIZE + need:
        what = "truncated" if size < NNEF_HEADER_SIZE + need else "has trailing bytes"
        raise ValueError(f"{where}: file {what}: {size} bytes, the header promises {NNEF_HEADER_SIZE + need}")
    return shape, count, bits, item, dtype, need


def read_nnef_tensor(file, *, return_quantization=False, max_bytes=_models.DEFAULT_MAX_BYTES):
    """Read one NNEF tensor file with refdet's own reader (no dependency).

    Every header field is checked, and the data length implied by the extents is compared with the
    file's actual size **before** anything is allocated: a hostile header cannot make refdet allocate
    more than the file holds. ``ValueError`` on any inconsistency.

    Parameters
    ----------
    file : path, bytes, or binary file object (seekable)
    return_quantization : bool
        Also return whether the item type is quantized (qint / quint).
    max_bytes : int
        Largest file accepted.

    Returns
    -------
    array : ndarray (native byte order)
    quantized : bool, only with ``return_quantization``
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        raw = bytes(file)
        header, size, where = raw[:NNEF_HEADER_SIZE], len(raw), "NNEF tensor bytes"
        body = lambda n: raw[NNEF_HEADER_SIZE:NNEF_HEADER_SIZE + n]  # noqa: E731
        fh = None
    else:
        if isinstance(file, (str, os.PathLike)):
            where = repr(os.fspath(file))
            if not os.path.isfile(file):
                raise ValueError(f"NNEF tensor file {where} does not exist")
            fh = open(file, "rb")
        else:
            fh, where = file, "NNEF tensor file"
        try:
            start = fh.tell()
            fh.seek(0, os.SEEK_END)
            size = fh.tell() - start
            fh.seek(start)
        except (AttributeError, OSError):
            raise TypeError("`file` must be a path, bytes or a seekable binary file") from None
        header = fh.read(NNEF_HEADER_SIZE)
        body = fh.read
    try:
        if size > max_bytes:
            raise ValueError(f"{where} is {size} bytes, more than max_bytes={max_bytes}")
        shape, count, bits, item, dtype, need = _parse_header(header, size, where)
        data = body(need)
        if len(data) != need:
            raise ValueError(f"{where}: truncated data ({len(data)} of {need} bytes)")
    finally:
        if fh is not None and isinstance(file, (str, os.PathLike)):
            fh.close()
    if item == _BOOL:
        u8 = np.frombuffer(data, np.uint8)
        flat = np.unpackbits(u8, count=count).astype(bool) if bits == 1 else (u8 != 0)
        arr = flat.reshape(shape)
    else:
        arr = np.frombuffer(data, dtype=np.dtype(dtype), count=count).reshape(shape)
        arr = arr.astype(arr.dtype.newbyteorder("="))   # a writable native copy
    if return_quantization:
        return arr, item in (_QINT, _QUINT)
    return arr


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
# reading (untrusted folders)
# ---------------------------------------------------------------------------------------------------

_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
_VARIABLE = re.compile(r"variable\s*(?:<\s*\w+\s*>)?\s*\(([^()]*)\)")
_SHAPE_ARG = re.compile(r"\bshape\s*=\s*\[([^\]]*)\]")
_LABEL_ARG = re.compile(r"\blabel\s*=\s*(['\"])(.*?)\1")


def _read_small(path, limit, what):
    from refdet.exchange.files import read_bounded
    data = read_bounded(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path!r} is not UTF-8 text ({exc})") from None


def _safe_path(folder, label):
    """``folder/label.dat`` if ``label`` is a plain relative name that stays inside ``folder``."""
    if not _LABEL.fullmatch(label):
        raise ValueError(f"unsafe tensor label {label!r} in graph.nnef (labels must be relative names of "
                         f"letters, digits, '_', '.', '-' and '/', without '..')")
    root = os.path.realpath(folder)
    path = os.path.realpath(os.path.join(root, label + ".dat"))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"tensor label {label!r} points outside the model folder")
    return path


def _variables(text):
    """[(label, shape)] of every ``variable`` in graph.nnef text (comments stripped)."""
    body = re.sub(r"#[^\n]*", "", text)
    if not re.match(r"\s*version\s+1\.\d+\s*;", body):
        raise ValueError("graph.nnef does not start with 'version 1.x;'")
    out = []
    for m in _VARIABLE.finditer(body):
        args = m.group(1)
        s, lab = _SHAPE_ARG.search(args), _LABEL_ARG.search(args)
        if s is None or lab is None:
            raise ValueError(f"graph.nnef: variable without shape or label: {m.group(0)[:80]!r}")
        try:
            shape = tuple(int(v) for v in s.group(1).split(",") if v.strip())
        except ValueError:
            raise ValueError(f"graph.nnef: variable shape is not a list of integers: {s.group(0)!r}") from None
        if any(d < 0 for d in shape) or len(shape) > 8:
            raise ValueError(f"graph.nnef: invalid variable shape {list(shape)}")
        out.append((lab.group(2), shape))
    return out


def _meta(folder):
    path = os.path.join(folder, "refdet.json")
    if not os.path.exists(path):
        return None
    try:
        meta = json.loads(_read_small(path, _JSON_MAX_BYTES, "refdet.json"))
    except ValueError as exc:
        raise ValueError(f"refdet.json in {folder!r} is not valid: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("param_shapes", {}), dict):
        raise ValueError(f"refdet.json in {folder!r} is not a refdet model description")
    return meta


_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
# gzip cannot expand data more than about 1032 : 1
_MAX_RATIO = 1100


def _is_archive(path):
    return str(path).lower().endswith(_ARCHIVE_SUFFIXES)


@contextlib.contextmanager
def _as_folder(path, max_bytes=_models.DEFAULT_MAX_BYTES):
    """A model folder for ``path``: the folder itself, or a ``.nnef.tgz`` / ``.tar`` archive unpacked
    member by member into a fresh temporary folder after checking every member.

    Archive members must be regular files or folders with plain relative names (no absolute path, no
    ``..``, no links or devices); their total size is capped by ``max_bytes`` and by what the
    compressed file can hold, and only ``graph.nnef``, ``graph.quant``, ``refdet.json`` and ``.dat``
    files are written out. The archive may hold the model at its root or in one top-level folder.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        yield path
        return
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is neither an NNEF model folder nor an archive")
    if not _is_archive(path):
        raise ValueError(f"{path!r} is not a folder nor a .tgz / .tar.gz / .tar archive")
    size = os.path.getsize(path)
    try:
        tf = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{path!r} is not a readable tar archive: {exc}") from None
    with tf, tempfile.TemporaryDirectory(prefix="refdet_nnef_") as tmp:
        root = os.path.realpath(tmp)
        total = 0
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ValueError(f"{path!r}: corrupt archive ({exc})") from None
        names = [m.name[2:] if m.name.startswith("./") else m.name for m in members]
        prefix = ""
        if "graph.nnef" not in names:
            tops = [n[:-len("graph.nnef")] for n in names if n.endswith("/graph.nnef") and n.count("/") == 1]
            if len(tops) != 1:
                raise ValueError(f"{path!r}: no graph.nnef at the archive's root or in one top-level folder")
            prefix = tops[0]
        for m, name in zip(members, names):
            if name in ("", ".") or (m.isdir() and _LABEL.fullmatch(name.rstrip("/"))):
                continue
            if not m.isfile():
                raise ValueError(f"{path!r}: archive member {m.name!r} is a link or special file (refused)")
            if not _LABEL.fullmatch(name):
                raise ValueError(f"{path!r}: unsafe archive member name {m.name!r} (absolute, '..' or odd "
                                 f"characters)")
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
            if rel not in ("graph.nnef", "graph.quant", "refdet.json") and not rel.endswith(".dat"):
                continue
            total += m.size
            if total > max_bytes or total > max(size, 1) * _MAX_RATIO:
                raise ValueError(f"{path!r}: archive members claim {total} bytes, more than max_bytes={max_bytes} "
                                 f"or what a {size}-byte archive can hold")
            dest = os.path.realpath(os.path.join(root, rel))
            if os.path.commonpath([root, dest]) != root:
                raise ValueError(f"{path!r}: archive member {m.name!r} points outside the model")
            try:
                src = tf.extractfile(m)
                data = src.read(m.size + 1) if src is not None else b""
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ValueError(f"{path!r}: member {m.name!r} cannot be read ({exc})") from None
            if len(data) != m.size:
                raise ValueError(f"{path!r}: member {m.name!r} is truncated ({len(data)} of {m.size} bytes)")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "xb") as fh:
                fh.write(data)
        yield tmp


def nnef_config(folder):
    """The refdet config of a folder written by :func:`export_nnef` (from its ``refdet.json``)."""
    if _is_archive(folder) and not os.path.isdir(folder):
        with _as_folder(folder) as f:
            return nnef_config(f)
    meta = _meta(os.fspath(folder))
    if meta is None or not isinstance(meta.get("config"), dict) or meta["config"].get("model") not in _models.MODELS:
        raise ValueError(f"{os.fspath(folder)!r} was not exported by refdet (no usable refdet.json)")
    cfg = _models.check_file_config(meta["config"], "refdet.json")
    shapes = meta.get("input_shapes")
    if (not isinstance(shapes, list) or len(shapes) != len(cfg["in_channels"])
            or not all(isinstance(sh, list) and len(sh) == 4 and all(isinstance(d, int) and d >= 1 for d in sh)
                       and sh[1] == c and math.prod(sh) <= 1 << 28 for sh, c in zip(shapes, cfg["in_channels"]))):
        raise ValueError("refdet.json: 'input_shapes' must list one [B, C, H, W] per input (C as in the config, "
                         "at most 2**28 values)")
    return cfg


def load_nnef(folder, *, max_bytes=_models.DEFAULT_MAX_BYTES):
    """The parameters of an NNEF model folder, read by refdet's own parser and tensor reader.

    Reads ``graph.nnef`` (only the ``variable`` declarations: shape and label), then each
    ``<label>.dat``. Labels must be plain relative names inside the folder (``'../../etc/passwd'`` is a
    ``ValueError``), every tensor file is checked against its declared shape, and the total is capped
    by ``max_bytes``. Nothing in the folder is executed.

    Parameters
    ----------
    folder : path
        A model folder, or a ``.nnef.tgz`` / ``.tar.gz`` / ``.tar`` archive of one (``nnef_tools``
        ``--compress``); an archive is checked member by member (plain names only, no links, sizes
        capped) and unpacked into a temporary folder.
    max_bytes : int
        Largest total tensor data accepted.

    Returns
    -------
    dict
        ``{label: array}``. For a folder written by :func:`export_nnef` the labels are refdet's
        parameter keys and the arrays have refdet's shapes again (``refdet.json``): exactly the exported
        (float32) parameters.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        if _is_archive(folder):
            with _as_folder(folder, max_bytes) as f:
                return load_nnef(f, max_bytes=max_bytes)
        raise ValueError(f"`folder` {folder!r} is not a directory (nor a .tgz / .tar archive)")
    text = _read_small(os.path.join(folder, "graph.nnef"), _GRAPH_MAX_BYTES, "graph.nnef")
    variables = _variables(text)
    meta = _meta(folder)
    shapes = (meta or {}).get("param_shapes", {})
    out, total = {}, 0
    for label, shape in variables:
        if label in out:
            raise ValueError(f"graph.nnef declares the label {label!r} twice")
        path = _safe_path(folder, label)
        size = os.path.getsize(path) if os.path.isfile(path) else None
        if size is None:
            raise ValueError(f"tensor file for label {label!r} is missing")
        total += size
        if total > max_bytes:
            raise ValueError(f"the model's tensor files exceed max_bytes={max_bytes}")
        arr = read_nnef_tensor(path, max_bytes=max_bytes)
        if arr.shape != shape:
            raise ValueError(f"tensor {label!r} has shape {list(arr.shape)} but graph.nnef declares {list(shape)}")
        want = shapes.get(label)
        if want is not None:
            if (not isinstance(want, list) or not all(isinstance(d, int) and d >= 0 for d in want)
                    or int(np.prod(want)) != arr.size):
                raise ValueError(f"refdet.json gives tensor {label!r} the shape {want}, which does not fit "
                                 f"its {arr.size} values")
            arr = arr.reshape(want)
        out[label] = arr
    return out


# ---------------------------------------------------------------------------------------------------
# running and verifying
# ---------------------------------------------------------------------------------------------------

def _import_nnef():
    try:
        import nnef
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("running NNEF models needs the optional package 'nnef' (pip install nnef)") from exc
    return nnef


#: every operation export_nnef writes; run_nnef / verify_nnef refuse graphs with others
_EMITTED_OPS = frozenset({"external", "variable", "conv", "relu", "add", "sub", "mul", "div", "sqrt", "mean_reduce",
                          "reshape", "transpose", "concat", "nearest_upsample", "slice", "max_pool", "copy"})


def _check_ops(folder):
    text = re.sub(r"#[^\n]*", "", _read_small(os.path.join(folder, "graph.nnef"), _GRAPH_MAX_BYTES, "graph.nnef"))
    if re.search(r"\b(fragment|extension)\b", text):
        raise ValueError("graph.nnef defines fragments or extensions; refdet runs only its own operation set")
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("graph.nnef has no graph body")
    ops = set(re.findall(r"\b([A-Za-z_]\w*)\s*(?:<[^<>()]*>)?\s*\(", text[start:end]))
    foreign = sorted(ops - _EMITTED_OPS)
    if foreign:
        raise ValueError(f"graph.nnef uses operations refdet never emits ({foreign}); refdet runs only graphs made "
                         f"of its own operation set")


def run_nnef(folder, inputs):
    """Run an NNEF folder in ``nnef.Session`` (``lowered=["nearest_upsample"]``); ``{output: array}``.

    The folder is first read with :func:`load_nnef` (labels, sizes) and its operations are checked
    against the set :func:`export_nnef` writes, so that an unsafe folder is refused before the C++
    runtime opens any file.
    """
    nnef = _import_nnef()
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        with _as_folder(folder) as f:
            return run_nnef(f, inputs)
    load_nnef(folder)
    _check_ops(folder)
    graph = nnef.load_graph(folder, lowered=["nearest_upsample"])
    feeds = []
    for name in graph.inputs:
        if name not in inputs:
            raise ValueError(f"`inputs` is missing {name!r} (the graph's inputs are {list(graph.inputs)})")
        feeds.append(np.ascontiguousarray(inputs[name], dtype=np.float32))
    with nnef.Session(folder, lowered=["nearest_upsample"]) as sess:
        res = sess(*feeds)
    if isinstance(res, dict):
        return {k: np.asarray(v) for k, v in res.items()}
    return dict(zip(graph.outputs, (np.asarray(r) for r in res)))


def verify_nnef(folder, inputs=None, *, atol=1e-5, rtol=1e-5, rng=0):
    """Validate an exported NNEF folder with the ``nnef`` parser and compare ``nnef.Session`` with refdet.

    Parameters
    ----------
    folder : path
        Written by :func:`export_nnef`.
    inputs : dict, optional
        Default: random N(0, 1) maps of the exported static shapes, from ``rng``.
    atol, rtol : float
        As in :func:`refdet.exchange.verify_onnx` (``max |diff| <= atol + rtol * max |refdet|``).

    Returns
    -------
    Report
        Rows for ``nnef.Session``; ``report.skipped`` says so if the ``nnef`` package is missing. A
        parser or shape-inference failure raises ``ValueError``.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        with _as_folder(folder) as f:
            return verify_nnef(f, inputs, atol=atol, rtol=rtol, rng=rng)
    cfg = nnef_config(folder)
    meta = _meta(folder)
    params = load_nnef(folder)
    _check_ops(folder)
    if inputs is None:
        r = _checks.as_rng(rng)
        inputs = {name: r.standard_normal(tuple(shape)).astype(np.float32)
                  for name, shape in zip(_models.input_names(cfg), meta["input_shapes"])}
    want = _models.reference_outputs(cfg, params, inputs)
    try:
        nnef = _import_nnef()
    except ImportError as exc:
        return _models.Report([], {"nnef.Session": f"not installed ({exc})"})
    try:
        graph = nnef.load_graph(folder, lowered=["nearest_upsample"])
        nnef.infer_shapes(graph)
    except nnef.Error as exc:
        raise ValueError(f"the nnef parser rejects {folder!r}: {exc}") from None
    got = run_nnef(folder, inputs)
    rows = [_models.compare(name, "nnef.Session", got[name], w, atol=atol, rtol=rtol) for name, w in want.items()]
    return _models.Report(rows, {})
