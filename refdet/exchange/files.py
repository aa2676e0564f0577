"""Model files read as untrusted input: memory budgets, bounded JSON, paths that stay inside their folder,
archives read member by member, and ``.npz`` parameter files without pickle.

A model file arrives from elsewhere (a pull request's export, a downloaded checkpoint). Reading or
running it must never reach outside its folder, execute anything it holds, or allocate far beyond its
size. The rules every reader in :mod:`refdet.exchange` follows live here.

**The memory budget.** Whatever a file's metadata or graph can make refdet (or a runtime refdet starts)
allocate — declared input shapes, graph intermediates, tensors, archive members — is added up from the
declared sizes *before* anything is allocated and must fit the file's budget::

    budget = min(DEFAULT_MAX_BYTES, BUDGET_FLOOR + BUDGET_PER_FILE_BYTE * file bytes)
           = min(2 GiB, 64 MiB + 16 x the size of the files read)

``max_bytes=`` (``--max-bytes`` on the command line) replaces that budget by the caller's number, to
raise it (a large model verified at a large input size) or to lower it. The floor leaves room for the
activations of small models; the factor 16 for a model's activations growing with its weights. Reading
the file itself (its bytes, the parsed protobuf, the loaded tensors) costs a small multiple of its size
on top.

**Depth.** JSON is parsed only after a scan that refuses nesting deeper than ``max_depth`` (32 for
refdet's metadata): a ``ValueError`` naming the file and the field, never a ``RecursionError``.

**Paths.** :func:`path_inside` walks a relative name component by component: no ``..``, no absolute
names, no symbolic link anywhere (a link could point anywhere, and its target can change after a check).

**Archives.** :func:`tar_members` reads a tar (optionally gzip / bz2 / xz compressed) as a stream,
member by member, never ``extractall``: only regular files and folders with plain relative names (no
``..``, absolute names, links, devices, FIFOs or sparse files), no duplicates, at most
``MAX_ARCHIVE_MEMBERS`` members, and declared sizes that a compressed file of that size can hold.

**Parameters.** :func:`load_params_npz` reads ``np.savez`` files without pickle: every member's
``.npy`` header is checked against what the member holds before any data is read.
"""
from __future__ import annotations

import math
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Mapping
from typing import Any, Callable, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from refdet import _checks
from refdet._files import MAX_JSON_DEPTH, loads_json, read_bounded, read_json  # noqa: F401  (re-exported)

__all__ = ["DEFAULT_MAX_BYTES", "BUDGET_FLOOR", "BUDGET_PER_FILE_BYTE", "MAX_JSON_DEPTH", "MAX_ARCHIVE_MEMBERS",
           "Budget", "file_budget", "format_bytes", "read_bounded", "read_json", "loads_json", "path_inside",
           "tar_members", "load_params_npz", "save_params_npz"]

#: the cap of every derived budget (and the largest file read) unless ``max_bytes`` says otherwise
DEFAULT_MAX_BYTES = 1 << 31
#: every file's budget is at least this: room for a small model's inputs and activations
BUDGET_FLOOR = 64 << 20
#: and grows by this many bytes per byte of file read
BUDGET_PER_FILE_BYTE = 16
#: more members than any model archive needs (each costs a TarInfo in memory)
MAX_ARCHIVE_MEMBERS = 1 << 16
# deflate / gzip cannot expand data more than about 1032 : 1 (bz2 and xz can: their members are
# still bounded by max_bytes and the budget)
_MAX_RATIO = 1100
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


# ---------------------------------------------------------------------------------------------------
# budgets
# ---------------------------------------------------------------------------------------------------

def format_bytes(n: int) -> str:
    """``n`` bytes for a message: ``"4.5 GiB"``, ``"15 KiB"``, ``"812 bytes"``."""
    n = int(n)
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} bytes"


class Budget(NamedTuple):
    """The memory a file may make refdet allocate.

    Attributes
    ----------
    limit : int
        Bytes.
    file_bytes : int
        Size of the files it was derived from (0 when ``max_bytes`` was given).
    explicit : bool
        ``max_bytes`` was given (the limit is the caller's, not derived).
    what : str
        The file, for messages.
    """
    limit: int
    file_bytes: int
    explicit: bool
    what: str

    def describe(self) -> str:
        if self.explicit:
            return f"its memory budget max_bytes={self.limit}"
        return (f"its memory budget of {format_bytes(self.limit)} ({format_bytes(BUDGET_FLOOR)} + "
                f"{BUDGET_PER_FILE_BYTE} x its {format_bytes(self.file_bytes)}, at most "
                f"{format_bytes(DEFAULT_MAX_BYTES)})")

    def check(self, need: int, detail: str) -> None:
        """``ValueError`` if ``need`` bytes (for ``detail``) exceed the limit, before anything is allocated."""
        if need > self.limit:
            raise ValueError(f"{self.what}: {detail} would need {format_bytes(need)}, more than {self.describe()}; "
                             f"pass max_bytes= (refdet verify-export --max-bytes) to allow more")


def check_max_bytes(max_bytes: Optional[int]) -> Optional[int]:
    """``max_bytes`` is None or an int >= 1 (TypeError / ValueError naming it)."""
    if max_bytes is None:
        return None
    return _checks.check_int(max_bytes, "max_bytes", low=1)


def file_budget(file_bytes: int, max_bytes: Optional[int] = None, what: str = "the file") -> Budget:
    """The :class:`Budget` of ``file_bytes`` bytes of files: ``max_bytes`` if given, else
    ``min(DEFAULT_MAX_BYTES, BUDGET_FLOOR + BUDGET_PER_FILE_BYTE * file_bytes)``."""
    max_bytes = check_max_bytes(max_bytes)
    if max_bytes is not None:
        return Budget(max_bytes, 0, True, what)
    limit = min(DEFAULT_MAX_BYTES, BUDGET_FLOOR + BUDGET_PER_FILE_BYTE * int(file_bytes))
    return Budget(limit, int(file_bytes), False, what)


def largest_file(max_bytes: Optional[int]) -> int:
    """The largest single file read: ``max_bytes`` if given, else :data:`DEFAULT_MAX_BYTES`."""
    max_bytes = check_max_bytes(max_bytes)
    return DEFAULT_MAX_BYTES if max_bytes is None else max_bytes


# ---------------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------------

def path_inside(root: str, rel: str, what: str, *, kind: str = "file") -> str:
    """The path of ``rel`` inside the folder ``root``, refusing anything that could lead elsewhere.

    ``rel`` is split at ``/``; every part must be a plain name (letters, digits, ``_ . -``, not starting
    with ``.``), so ``..``, absolute paths and backslashes are refused. Each component is looked at with
    ``lstat``: a symbolic link anywhere on the way (``graph.nnef -> /etc/passwd``, a linked sub-folder)
    is refused, folders must be folders and the last part a regular file (``kind="file"``).

    Raises
    ------
    ValueError
        Naming ``what`` and ``rel``: an unsafe name, a link, a missing file ("... is missing"), or
        something that is not a regular file.
    """
    parts = rel.split("/")
    if not rel or not all(_PART.fullmatch(p) for p in parts):
        raise ValueError(f"{what}: unsafe name {rel!r} (names must be relative, made of letters, digits, '_', "
                         f"'.', '-' and '/', without '..')")
    cur = os.path.realpath(root)
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            raise ValueError(f"{what}: {rel!r} is missing from {root!r}") from None
        except OSError as exc:
            raise ValueError(f"{what}: {rel!r} in {root!r} cannot be read ({exc.strerror or exc})") from None
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(f"{what}: {'/'.join(parts[:i + 1])!r} in {root!r} is a symbolic link; refdet follows "
                             f"no links in a model folder (one could point outside the folder)")
        last = i == len(parts) - 1
        if not last and not stat.S_ISDIR(st.st_mode):
            raise ValueError(f"{what}: {'/'.join(parts[:i + 1])!r} in {root!r} is not a folder")
        if last and kind == "file" and not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what}: {rel!r} in {root!r} is not a regular file")
    return cur


# ---------------------------------------------------------------------------------------------------
# archives
# ---------------------------------------------------------------------------------------------------

def _archive_errors():
    errs = [tarfile.TarError, OSError, EOFError]   # bz2 errors arrive as OSError
    try:
        import lzma
        errs.append(lzma.LZMAError)
    except ImportError:  # pragma: no cover - Python built without lzma
        pass
    try:
        import zlib
        errs.append(zlib.error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


_ARCHIVE_ERRORS = _archive_errors()


def _decompressed(path: str, what: str):
    """``path`` opened for reading, decompressed (gzip, bzip2, xz: told by the magic bytes) or as is.

    The standard library's decompressing readers return at most what is asked for and hold a bounded
    buffer; tarfile's own ``"r|gz"`` stream decompresses 10 KB of input at a time *whole*, which a gzip
    bomb turns into 10 MB, copied several times per read.
    """
    import bz2
    import gzip
    import lzma

    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic[:2] == b"\x1f\x8b":
            return gzip.open(path, "rb")
        if magic[:3] == b"BZh":
            return bz2.open(path, "rb")
        if magic == b"\xfd7zXZ\x00":
            return lzma.open(path, "rb")
        return open(path, "rb")
    except OSError as exc:
        raise ValueError(f"{what} cannot be read ({exc.strerror or exc})") from None


def member_name(info: tarfile.TarInfo) -> str:
    """A member's name without a leading ``./`` and trailing ``/``."""
    name = info.name
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def tar_members(path: str, what: str, *, budget: Budget,
                wanted: Callable[[str], bool]) -> Iterator[Tuple[str, tarfile.TarInfo, Any]]:
    """Stream the members of the tar archive ``path``, checking each, and yield the wanted ones.

    Every member is checked, wanted or not: a regular file or a folder (links, devices, FIFOs and sparse
    files are refused), a plain relative name (no ``..``, no absolute path, no ``\\``), not seen before,
    at most :data:`MAX_ARCHIVE_MEMBERS` members, and declared sizes that add up to what a compressed
    file of that size can hold. Files for which ``wanted(name)`` is true are yielded as
    ``(name, info, file object)`` to be read right away (the stream moves on); their sizes together
    must fit ``budget``. Others are skipped (read past, never stored).

    Raises
    ------
    ValueError
        Naming ``what`` (which names the archive) and the member.
    """
    size = os.path.getsize(path)
    seen, count, scanned, kept = set(), 0, 0, 0
    raw = _decompressed(path, what)
    try:
        tf = tarfile.open(fileobj=raw, mode="r|")
    except _ARCHIVE_ERRORS as exc:
        raw.close()
        raise ValueError(f"{what} is not a readable tar archive: {exc}") from None
    with raw, tf:
        while True:
            try:
                info = tf.next()
            except _ARCHIVE_ERRORS as exc:
                raise ValueError(f"{what} is a corrupt archive ({exc})") from None
            if info is None:
                break
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                raise ValueError(f"{what} holds more than {MAX_ARCHIVE_MEMBERS} members")
            tf.members = []   # the stream keeps no list of what it has read
            name = member_name(info)
            if info.isdir() and (name in ("", ".") or _safe_member(name)):
                continue
            if not info.isfile() or info.issparse():
                raise ValueError(f"{what}: archive member {info.name!r} is a link, device or other "
                                 f"special file (refused: only regular files and folders)")
            if not _safe_member(name):
                raise ValueError(f"{what}: unsafe archive member name {info.name!r} (absolute, '..' "
                                 f"or odd characters)")
            if name in seen:
                raise ValueError(f"{what}: archive member {name!r} appears twice")
            seen.add(name)
            scanned += info.size
            if scanned > max(size, 1) * _MAX_RATIO:
                raise ValueError(f"{what}: archive members claim {format_bytes(scanned)}, more than "
                                 f"a {format_bytes(size)} archive can hold")
            if not wanted(name):
                _skip(tf, info, what)
                continue
            kept += info.size
            budget.check(kept, f"the archive members it needs ({name!r} and those before)")
            try:
                fh = tf.extractfile(info)
            except _ARCHIVE_ERRORS as exc:
                raise ValueError(f"{what}: member {info.name!r} cannot be read ({exc})") from None
            yield name, info, fh


_CHUNK = 1 << 20


def _skip(tf, info, what):
    """Read past an unwanted member in large chunks. (tarfile's own skip reads a compressed stream 10 KB at a
    time and copies what each chunk decompressed to every time: quadratic on a gzip bomb.)"""
    if info.size <= 1 << 16:
        return
    try:
        fh = tf.extractfile(info)
        while fh.read(_CHUNK):
            pass
    except _ARCHIVE_ERRORS as exc:
        raise ValueError(f"{what}: member {info.name!r} cannot be read ({exc})") from None


def _safe_member(name: str) -> bool:
    return bool(name) and all(_PART.fullmatch(p) for p in name.split("/"))


def copy_member(fh, info: tarfile.TarInfo, dest: str, what: str, chunk: int = _CHUNK) -> None:
    """Copy one streamed archive member to the new file ``dest`` in chunks, checking its length."""
    done = 0
    try:
        with open(dest, "xb") as out:
            while done < info.size:
                buf = fh.read(min(chunk, info.size - done))
                if not buf:
                    break
                out.write(buf)
                done += len(buf)
    except OSError as exc:
        raise ValueError(f"{what}: member {info.name!r} cannot be read or written ({exc})") from None
    except _ARCHIVE_ERRORS as exc:
        raise ValueError(f"{what}: member {info.name!r} cannot be read or written ({exc})") from None
    if done != info.size:
        raise ValueError(f"{what}: member {info.name!r} is truncated ({done} of {info.size} bytes)")


def read_member(fh, info: tarfile.TarInfo, limit: int, what: str) -> bytes:
    """The bytes of one streamed archive member of at most ``limit`` bytes."""
    if info.size > limit:
        raise ValueError(f"{what}: member {info.name!r} is {info.size} bytes, more than the {limit} refdet accepts")
    try:
        data = fh.read(info.size)
    except _ARCHIVE_ERRORS as exc:
        raise ValueError(f"{what}: member {info.name!r} cannot be read ({exc})") from None
    if len(data) != info.size:
        raise ValueError(f"{what}: member {info.name!r} is truncated ({len(data)} of {info.size} bytes)")
    return data


# ---------------------------------------------------------------------------------------------------
# .npz parameter files
# ---------------------------------------------------------------------------------------------------

def _as_params(params, name="params"):
    """``params`` as ``{str: ndarray}`` (TypeError naming ``name`` for anything else)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"`{name}` must be a dict of arrays (state_dict keys); got {type(params).__name__}")
    out = {}
    for k, v in params.items():
        if not isinstance(k, str):
            raise TypeError(f"`{name}` keys must be strings; got {k!r}")
        out[k] = _checks.as_array(v, f"{name}[{k!r}]")
    return out


def save_params_npz(params, path):
    """Write a parameter dict as ``.npz`` (``np.savez``; keys are the member names)."""
    arrays = {k: np.asarray(v) for k, v in _as_params(params).items()}
    for k, v in arrays.items():
        if not _KEY.fullmatch(k):
            raise ValueError(f"parameter key {k!r} is not a plain name (letters, digits, '_', '.', '-')")
        if v.dtype.hasobject:
            raise TypeError(f"parameter {k!r} is an object array; only numeric arrays are saved")
    np.savez(path, **arrays)
    return path


def read_array(read, dtype, count: int, what: str) -> np.ndarray:
    """``count`` items of ``dtype`` read with ``read(n)`` straight into a new native-order array, in chunks:
    the data is held once (``np.frombuffer`` + ``astype`` would hold it twice). ``ValueError`` naming
    ``what`` when the stream ends early."""
    dt = np.dtype(dtype)
    out = np.empty(int(count), dt.newbyteorder("=") if dt.byteorder not in ("|", "=") else dt)
    view = memoryview(out.reshape(-1).view(np.uint8))
    n, pos = out.nbytes, 0
    while pos < n:
        chunk = read(min(_CHUNK, n - pos))
        if not chunk:
            break
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != n:
        raise ValueError(f"{what}: truncated data ({pos} of {n} bytes)")
    if not dt.isnative:
        out.byteswap(inplace=True)
    return out


def _npy_header(fh):
    """(shape, fortran, dtype) of a ``.npy`` stream. NumPy parses the header dict with
    ``ast.literal_eval`` (literals only, nothing is run); whatever it raises on a malformed one
    (``SyntaxError``, ``tokenize.TokenError``, ...) becomes a ValueError."""
    version = np.lib.format.read_magic(fh)
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, TypeError):
        raise
    except (OSError, EOFError, zipfile.BadZipFile):
        raise
    except Exception as exc:   # noqa: BLE001 - SyntaxError, tokenize.TokenError, MemoryError-free parse errors
        raise ValueError(f"a malformed .npy header ({type(exc).__name__}: {exc})") from None
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) or len(shape) > 32:
        raise ValueError(f"the .npy header's shape {str(shape)[:60]} is not a shape")
    return shape, fortran, dtype


def load_params_npz(path, *, max_bytes: Optional[int] = None) -> dict:
    """Read a parameter dict from an ``.npz`` file written by ``np.savez`` (untrusted input).

    Parameters
    ----------
    path : path
    max_bytes : int, optional
        The memory budget: the largest total of array data accepted. Default: derived from the file's
        size (``64 MiB + 16 x`` its bytes, at most 2 GiB; a compressed member can claim 1000 times
        its compressed size).

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
        file could produce; more than the budget in total.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"parameter file {path!r} does not exist")
    file_size = os.path.getsize(path)
    budget = file_budget(file_size, max_bytes, f"parameter file {path!r}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"parameter file {path!r} is not an .npz (zip) archive: {exc}") from None
    out, total = {}, 0
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise ValueError(f"parameter file {path!r} holds more than {MAX_ARCHIVE_MEMBERS} members")
        for info in infos:
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
            if budget.explicit and total > budget.limit:
                raise ValueError(f"{path!r}: more than max_bytes={budget.limit} of array data")
            budget.check(total, f"its arrays ({len(out) + 1} members so far)")
            try:
                with zf.open(info) as fh:
                    shape, fortran, dtype = _npy_header(fh)
                    header_len = fh.tell()
                    if dtype.hasobject:
                        raise ValueError("object arrays (pickled data) are refused")
                    count = math.prod(shape)
                    need = count * dtype.itemsize
                    if header_len + need != info.file_size:
                        raise ValueError(f"the header's shape {shape} and dtype {dtype} need {need} bytes but "
                                         f"the member holds {info.file_size - header_len}")
                    if fortran and len(shape) > 1:     # a C-ordered copy of it is made below
                        budget.check(total + need, f"its arrays (a C-ordered copy of {name!r})")
                    arr = read_array(fh.read, dtype, count, "the member")
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ValueError(f"{path!r}: member {name!r} cannot be read: {exc}") from None
            except (ValueError, TypeError, SyntaxError) as exc:   # numpy's header parser: ast.literal_eval
                raise ValueError(f"{path!r}: member {name!r}: {exc}") from None
            arr = arr.reshape(shape, order="F" if fortran else "C")
            out[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")   # (0-d arrays stay 0-d)
    return out
