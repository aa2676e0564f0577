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
import io
import json
import math
import os
import re
import struct
import tarfile
import tempfile
from typing import NamedTuple, Optional

import numpy as np

from refdet import _checks
from refdet.exchange import _models, _nnef_graph
from refdet.exchange import files as _files

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

#: graph.nnef and refdet.json are at most this large (refdet's largest export, an FPN + RetinaNet head
#: with GroupNorm on 5 levels, writes a 60 KB graph and a 10 KB refdet.json)
_GRAPH_MAX_BYTES = 4 << 20
_JSON_MAX_BYTES = 1 << 20


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


def read_nnef_tensor(file, *, return_quantization=False, max_bytes=_files.DEFAULT_MAX_BYTES):
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
    return _read_tensor(file, None, return_quantization=return_quantization, max_bytes=max_bytes)


def _read_tensor(file, where, *, return_quantization=False, max_bytes=_files.DEFAULT_MAX_BYTES):
    """:func:`read_nnef_tensor`, with ``where`` naming the file in messages (default: its path)."""
    if isinstance(file, (bytes, bytearray, memoryview)):
        fh, where = io.BytesIO(bytes(file)), where or "NNEF tensor bytes"
        own = False
    elif isinstance(file, (str, os.PathLike)):
        where = where or repr(os.fspath(file))
        if not os.path.isfile(file):
            raise ValueError(f"NNEF tensor file {where} does not exist")
        try:
            fh = open(file, "rb")
        except OSError as exc:
            raise ValueError(f"NNEF tensor file {where} cannot be read ({exc.strerror or exc})") from None
        own = True
    else:
        fh, where, own = file, where or "NNEF tensor file", False
    try:
        try:
            start = fh.tell()
            fh.seek(0, os.SEEK_END)
            size = fh.tell() - start
            fh.seek(start)
        except (AttributeError, OSError):
            raise TypeError("`file` must be a path, bytes or a seekable binary file") from None
        if size > max_bytes:
            raise ValueError(f"{where} is {size} bytes, more than max_bytes={max_bytes}")
        header = fh.read(NNEF_HEADER_SIZE)
        shape, count, bits, item, dtype, need = _parse_header(header, size, where)
        if item == _BOOL:
            u8 = _files.read_array(fh.read, np.uint8, need, where)
            flat = np.unpackbits(u8, count=count).astype(bool) if bits == 1 else (u8 != 0)
            arr = flat.reshape(shape)
        else:
            arr = _files.read_array(fh.read, dtype, count, where).reshape(shape)
    finally:
        if own:
            fh.close()
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
# reading (untrusted folders and archives)
# ---------------------------------------------------------------------------------------------------

_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")


def _is_archive(path):
    return str(path).lower().endswith(_ARCHIVE_SUFFIXES)


def _text(data, what, name):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: {name} is not UTF-8 text ({exc})") from None


def _check_label(label, what):
    if not _LABEL.fullmatch(label) or any(p.startswith(".") for p in label.split("/")):
        raise ValueError(f"{what}: unsafe tensor label {label!r} in graph.nnef (labels must be relative names of "
                         f"letters, digits, '_', '.', '-' and '/', without '..')")
    return label


def _parse_meta(data, what):
    if data is None:
        return None
    meta = _files.loads_json(data, f"{what}: refdet.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("param_shapes", {}), dict):
        raise ValueError(f"{what}: refdet.json is not a refdet model description")
    return meta


class _Model(NamedTuple):
    folder: str         # the model's own folder, or a temporary one holding the archive's members
    what: str           # how messages name it ("NNEF model '/x/m'")
    graph: _nnef_graph.Graph
    variables: list     # [(label, declared shape, line)]
    meta: Optional[dict]
    budget: _files.Budget
    dat: dict           # label -> path of its .dat file
    has_quant: bool


@contextlib.contextmanager
def _open_model(path, max_bytes=None):
    """The model at ``path`` (a folder, or a ``.tgz`` / ``.tar.gz`` / ``.tar`` archive of one), read as
    untrusted input: every file reached through :func:`refdet.exchange.files.path_inside` (no links, no
    ``..``), ``graph.nnef`` parsed by refdet's own parser, the ``.dat`` files of its variables located, and
    the budget derived from the sizes read. An archive is streamed twice, never extracted whole: once
    for ``graph.nnef`` and ``refdet.json``, then for the ``.dat`` files the graph references (nothing
    else is written out; their total must fit the budget of the archive's size).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`folder` must be a path; got {type(path).__name__}")
    path = os.fspath(path)
    _files.check_max_bytes(max_bytes)
    if os.path.isdir(path):
        what = f"NNEF model {path!r}"
        gpath = _files.path_inside(path, "graph.nnef", what)
        text = _text(_files.read_bounded(gpath, _GRAPH_MAX_BYTES, f"{what}: graph.nnef"), what, "graph.nnef")
        graph = _nnef_graph.parse_graph(text, f"{what}: graph.nnef")
        meta_data = None
        if os.path.lexists(os.path.join(path, "refdet.json")):
            jpath = _files.path_inside(path, "refdet.json", what)
            meta_data = _files.read_bounded(jpath, _JSON_MAX_BYTES, f"{what}: refdet.json")
        meta = _parse_meta(meta_data, what)
        variables = _nnef_graph.variables(graph, f"{what}: graph.nnef")
        dat = {}
        for label, _, _ in variables:
            dat[_check_label(label, what)] = _files.path_inside(path, label + ".dat", f"{what}: tensor file for label")
        size = len(text) + len(meta_data or b"") + sum(os.path.getsize(p) for p in dat.values())
        yield _Model(path, what, graph, variables, meta, _files.file_budget(size, max_bytes, what), dat,
                     os.path.lexists(os.path.join(path, "graph.quant")))
        return
    if not os.path.exists(path):
        raise ValueError(f"NNEF model {path!r} is missing (no such folder or archive)")
    if not _is_archive(path) or not os.path.isfile(path):
        raise ValueError(f"{path!r} is neither an NNEF model folder nor a .tgz / .tar.gz / .tar archive")
    what = f"NNEF archive {path!r}"
    budget = _files.file_budget(os.path.getsize(path), max_bytes, what)
    found, quant = {}, []

    def head(name):
        base = name.rsplit("/", 1)[-1]
        if name.count("/") > 1 or base not in ("graph.nnef", "refdet.json", "graph.quant"):
            return False
        if base == "graph.quant":
            quant.append(name)
            return False
        return True

    for name, info, fh in _files.tar_members(path, what, budget=budget, wanted=head):
        limit = _GRAPH_MAX_BYTES if name.endswith("graph.nnef") else _JSON_MAX_BYTES
        found[name] = _files.read_member(fh, info, limit, what)
    graphs = [n for n in found if n.endswith("graph.nnef")]
    if "graph.nnef" in found:
        prefix = ""
    elif len(graphs) == 1:
        prefix = graphs[0][:-len("graph.nnef")]
    else:
        raise ValueError(f"{what}: no graph.nnef at the archive's root or in one top-level folder")
    text = _text(found[prefix + "graph.nnef"], what, "graph.nnef")
    graph = _nnef_graph.parse_graph(text, f"{what}: graph.nnef")
    meta_data = found.get(prefix + "refdet.json")
    meta = _parse_meta(meta_data, what)
    variables = _nnef_graph.variables(graph, f"{what}: graph.nnef")
    needed = {prefix + _check_label(label, what) + ".dat": label for label, _, _ in variables}
    with tempfile.TemporaryDirectory(prefix="refdet_nnef_") as tmp:
        with open(os.path.join(tmp, "graph.nnef"), "w", encoding="utf-8") as fh:
            fh.write(text)
        if meta_data is not None:
            with open(os.path.join(tmp, "refdet.json"), "wb") as fh:
                fh.write(meta_data)
        dat = {}
        for name, info, fh in _files.tar_members(path, what, budget=budget, wanted=needed.__contains__):
            label = needed[name]
            dest = os.path.join(tmp, *(label + ".dat").split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _files.copy_member(fh, info, dest, what)
            dat[label] = dest
            if len(dat) == len(needed):     # every member was checked in the first pass
                break
        missing = [lab for lab in needed.values() if lab not in dat]
        if missing:
            raise ValueError(f"{what}: the tensor file for label {missing[0]!r} is missing from the archive")
        yield _Model(tmp, what, graph, variables, meta, budget, dat, bool(quant))


def _load_params(m):
    shapes = (m.meta or {}).get("param_shapes", {})
    out, total = {}, 0
    for label, shape, line in m.variables:
        if label in out:
            raise ValueError(f"{m.what}: graph.nnef declares the label {label!r} twice")
        path = m.dat[label]
        total += os.path.getsize(path)
        m.budget.check(total, f"its tensor files (up to {label!r})")
        arr = _read_tensor(path, f"{m.what}: the tensor file of label {label!r}",
                           max_bytes=_files.largest_file(m.budget.limit if m.budget.explicit else None))
        if arr.shape != shape:
            raise ValueError(f"{m.what}: tensor {label!r} has shape {list(arr.shape)} but graph.nnef declares "
                             f"{list(shape)}")
        want = shapes.get(label)
        if want is not None:
            if (not isinstance(want, list) or len(want) > 8
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in want)
                    or math.prod(want) != arr.size):
                raise ValueError(f"{m.what}: refdet.json gives tensor {label!r} the shape {str(want)[:60]}, which does "
                                 f"not fit its {arr.size} values")
            arr = arr.reshape(want)
        out[label] = arr
    return out


def _config(m):
    meta = m.meta
    if meta is None or not isinstance(meta.get("config"), dict) or meta["config"].get("model") not in _models.MODELS:
        raise ValueError(f"{m.what} was not exported by refdet (no usable refdet.json)")
    cfg = _models.check_file_config(meta["config"], f"{m.what}: refdet.json 'config'")
    if cfg["model"] in ("postprocess", "quantized_retinanet_head"):
        raise ValueError(f"{m.what}: refdet.json names a {cfg['model']!r}, which refdet never exports to NNEF")
    shapes = meta.get("input_shapes")
    if (not isinstance(shapes, list) or len(shapes) != len(cfg["in_channels"])
            or not all(isinstance(sh, list) and len(sh) == 4
                       and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 40 for d in sh)
                       and sh[1] == c for sh, c in zip(shapes, cfg["in_channels"]))):
        raise ValueError(f"{m.what}: refdet.json 'input_shapes' must list one [B, C, H, W] per input (C as in the "
                         f"config); got {str(shapes)[:80]}")
    return cfg


def nnef_config(folder, *, max_bytes=None):
    """The refdet config of a folder (or archive) written by :func:`export_nnef` (from its ``refdet.json``)."""
    with _open_model(folder, max_bytes) as m:
        return _config(m)


def load_nnef(folder, *, max_bytes=None):
    """The parameters of an NNEF model folder, read by refdet's own parser and tensor reader.

    Reads ``graph.nnef`` (refdet's parser: the ``variable`` declarations give shape and label), then
    each ``<label>.dat``. Nothing in the folder is executed and nothing outside it is read: labels must
    be plain relative names (``'../../etc/passwd'`` is a ``ValueError``), no file or folder on the way
    may be a symbolic link (``graph.nnef``, ``refdet.json`` and the ``.dat`` files included), and every
    tensor file is checked against its declared shape.

    Parameters
    ----------
    folder : path
        A model folder, or a ``.nnef.tgz`` / ``.tar.gz`` / ``.tar`` archive of one (``nnef_tools``
        ``--compress``). An archive is streamed member by member, never extracted whole: every member
        must be a regular file or folder with a plain relative name (no ``..``, absolute names, links
        or devices), and only the ``.dat`` files the graph references are written out, into a
        temporary folder.
    max_bytes : int, optional
        The memory budget: the largest total of tensor data accepted. Default: ``64 MiB + 16 x`` the
        size of the files read (of the archive, for an archive), at most 2 GiB
        (:mod:`refdet.exchange.files`).

    Returns
    -------
    dict
        ``{label: array}``. For a folder written by :func:`export_nnef` the labels are refdet's
        parameter keys and the arrays have refdet's shapes again (``refdet.json``): exactly the exported
        (float32) parameters.
    """
    with _open_model(folder, max_bytes) as m:
        return _load_params(m)


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
            ref = _models.reference_work_bytes(cfg, params, shapes)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{m.what}: refdet cannot compute this model: {_one_line(exc)}") from None
        m.budget.check(graph_bytes + ref, f"running graph.nnef ({_files.format_bytes(graph_bytes)}) and refdet's "
                                          f"own computation ({_files.format_bytes(ref)})")
        if inputs is None:
            r = _checks.as_rng(rng)
            inputs = {name: r.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
        try:
            want = _models.reference_outputs(cfg, params, inputs)
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
