"""Parameter files (``.npz``) read as untrusted input: no pickle, no allocation beyond what the file holds.

``np.load(path)`` on an ``.npz`` trusts each member's ``.npy`` header: a header claiming shape
``(10**12,)`` makes NumPy allocate that much before it notices the data is missing, and object arrays
would be unpickled (code execution) with ``allow_pickle=True``. :func:`load_params_npz` checks every
member before reading it.
"""
from __future__ import annotations

import os
import re
import zipfile

import numpy as np

from refdet.exchange import _models

__all__ = ["load_params_npz", "save_params_npz", "read_bounded"]

# deflate cannot expand data more than about 1032 : 1
_MAX_RATIO = 1100
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def read_bounded(path, limit, what):
    """The bytes of the file ``path``, refusing (ValueError) a missing file or one larger than ``limit``
    bytes before anything is read; at most ``limit + 1`` bytes are ever read."""
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} is not a file")
    size = os.path.getsize(path)
    if size > limit:
        raise ValueError(f"{what} {path!r} is {size} bytes, more than the {limit} refdet accepts")
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def save_params_npz(params, path):
    """Write a parameter dict as ``.npz`` (``np.savez``; keys are the member names)."""
    arrays = {k: np.asarray(v) for k, v in _models._as_params(params).items()}
    for k, v in arrays.items():
        if not _KEY.fullmatch(k):
            raise ValueError(f"parameter key {k!r} is not a plain name (letters, digits, '_', '.', '-')")
        if v.dtype.hasobject:
            raise TypeError(f"parameter {k!r} is an object array; only numeric arrays are saved")
    np.savez(path, **arrays)
    return path


def load_params_npz(path, *, max_bytes=_models.DEFAULT_MAX_BYTES):
    """Read a parameter dict from an ``.npz`` file written by ``np.savez`` (untrusted input).

    Parameters
    ----------
    path : path
    max_bytes : int
        Largest total of array data accepted.

    Returns
    -------
    dict
        ``{key: array}``.

    Raises
    ------
    ValueError
        Not a zip archive; a member name that is not a plain ``<key>.npy`` (``../../etc/passwd``,
        absolute paths, duplicates); a bad ``.npy`` header; an object (pickled) array; a header whose
        shape and dtype need more bytes than the member holds, or a member larger than the compressed
        file could produce; more than ``max_bytes`` in total.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"parameter file {path!r} does not exist")
    file_size = os.path.getsize(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"parameter file {path!r} is not an .npz (zip) archive: {exc}") from None
    out, total = {}, 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or not _KEY.fullmatch(name[:-4]):
                raise ValueError(f"{path!r}: archive member {name!r} is not a plain '<key>.npy' name "
                                 f"(path traversal and directories are refused)")
            key = name[:-4]
            if key in out:
                raise ValueError(f"{path!r}: member {name!r} appears twice")
            if info.file_size > max(file_size, 1) * _MAX_RATIO:
                raise ValueError(f"{path!r}: member {name!r} claims {info.file_size} bytes, more than a "
                                 f"{file_size}-byte archive can hold")
            total += info.file_size
            if total > max_bytes:
                raise ValueError(f"{path!r}: more than max_bytes={max_bytes} of array data")
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version in ((2, 0), (3, 0)):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                    header_len = fh.tell()
                    if dtype.hasobject:
                        raise ValueError("object arrays (pickled data) are refused")
                    need = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
                    if header_len + need != info.file_size:
                        raise ValueError(f"the header's shape {shape} and dtype {dtype} need {need} bytes but "
                                         f"the member holds {info.file_size - header_len}")
                    data = fh.read(need)
                    if len(data) != need:
                        raise ValueError(f"truncated data ({len(data)} of {need} bytes)")
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ValueError(f"{path!r}: member {name!r} cannot be read: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"{path!r}: member {name!r}: {exc}") from None
            arr = np.frombuffer(data, dtype=dtype)
            arr = arr.reshape(shape, order="F" if fortran else "C")
            out[key] = arr.astype(arr.dtype.newbyteorder("="), order="C")
    return out
