"""NNEF on disk, read as untrusted input: the ``.dat`` tensor files (the 128-byte header and the data)
and a model folder or archive (``graph.nnef``, ``refdet.json``, one ``.dat`` per variable) opened with
every size, name and path checked before anything is allocated or extracted.

The public names (:func:`read_nnef_tensor`, :func:`write_nnef_tensor`, :func:`load_nnef`,
:func:`nnef_config`, ``NNEF_HEADER_SIZE``) are importable from :mod:`refdet.exchange.nnef`.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
import tempfile
from typing import NamedTuple, Optional

import numpy as np

from refdet.exchange import _models, _nnef_graph
from refdet.exchange import files as _files

__all__ = ["load_nnef", "nnef_config", "read_nnef_tensor", "write_nnef_tensor", "NNEF_HEADER_SIZE"]


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
