"""Bounded readers for files that arrive from elsewhere: a size limit checked before anything is read,
JSON parsed only after a scan that refuses deep nesting, and every failure a one-line ``ValueError``
naming the file (and the field inside it).

These are the foundation both :mod:`refdet.eval.formats` (detections and ground truths) and
:mod:`refdet.exchange` (model files and their metadata) read with; they import only the standard
library and NumPy, so that neither of those packages has to import the other.
:mod:`refdet.exchange.files` re-exports them under their old names.

**Depth.** JSON is parsed only after a vectorised scan that refuses nesting deeper than ``max_depth``
(32 for refdet's metadata): a ``ValueError`` naming the file and the field, never a ``RecursionError``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

import numpy as np

__all__ = ["MAX_JSON_DEPTH", "read_bounded", "loads_json", "read_json"]

#: refdet's metadata (refdet.json, the ONNX ``refdet.*`` properties) nests 6 levels deep
MAX_JSON_DEPTH = 32


# ---------------------------------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------------------------------

def read_bounded(path, limit, what):
    """The bytes of the file ``path``, refusing (ValueError) a missing file or one larger than ``limit``
    bytes before anything is read; at most ``limit + 1`` bytes are ever read."""
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path!r} is not a file")
    size = os.path.getsize(path)
    if size > limit:
        raise ValueError(f"{what} {path!r} is {size} bytes, more than the {limit} refdet accepts")
    try:
        with open(path, "rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"{what} {path!r} cannot be read: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------

def _depth_scan(data: bytes):
    """Per byte of ``data``: (is an opening bracket outside strings, is a closing one, is a comma outside
    strings, nesting depth after the byte). Vectorised: a quote is real unless an odd run of
    backslashes precedes it; bytes between an odd and the next even real quote are inside a string."""
    b = np.frombuffer(data, np.uint8)
    idx = np.arange(b.size)
    bs = b == 0x5C
    last_plain = np.maximum.accumulate(np.where(bs, -1, idx))          # last non-backslash at or before i
    run = np.zeros(b.size, np.int64)
    run[1:] = idx[:-1] - last_plain[:-1]                                # backslashes just before i
    real_quote = (b == 0x22) & (run % 2 == 0)
    inside = (np.cumsum(real_quote) % 2).astype(bool)
    opening = ((b == 0x5B) | (b == 0x7B)) & ~inside
    closing = ((b == 0x5D) | (b == 0x7D)) & ~inside
    comma = (b == 0x2C) & ~inside
    depth = np.cumsum(opening.astype(np.int32) - closing.astype(np.int32))
    return b, opening, comma, depth


_KEY_BEFORE = re.compile(rb'"((?:[^"\\]|\\.){0,200})"\s*:\s*$')


def _field_at(data: bytes, pos: int, scan, levels: int = 6) -> str:
    """The field path (``config.programs.classification_head[0]``) of the value opened at byte ``pos``."""
    b, opening, comma, depth = scan
    path = ""
    parent = None
    for d in range(1, min(int(depth[pos]), levels) + 1):
        opens = np.flatnonzero(opening[:pos + 1] & (depth[:pos + 1] == d))
        if not opens.size:
            break
        j = int(opens[-1])
        if parent is not None:
            if b[parent] == 0x7B:      # '{': the key just before the value
                m = _KEY_BEFORE.search(data[max(parent, j - 260):j])
                path += "." + (m.group(1).decode("utf-8", "replace") if m else "?")
            else:                       # '[': the index = commas at this level since the '['
                k = int(np.count_nonzero(comma[parent:j] & (depth[parent:j] == d - 1)))
                path += f"[{k}]"
        parent = j
    if int(depth[pos]) > levels:
        path += "..."
    return path.lstrip(".") or "(top level)"


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def loads_json(data, what: str, *, max_depth: Optional[int] = MAX_JSON_DEPTH, field: str = "") -> Any:
    """Parse JSON ``data`` (bytes or str) from an untrusted file: errors are one-line ``ValueError``.

    ``what`` names the file; ``field`` the place inside it (an ONNX metadata key). Nesting deeper than
    ``max_depth`` is refused by a scan before parsing, naming the field where it happens; ``NaN`` /
    ``Infinity`` are refused; so are integers beyond Python's digit limit and invalid UTF-8.
    """
    where = f"{what}{f' field {field!r}' if field else ''}"
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid UTF-8 text") from None
    data = bytes(data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if max_depth is not None:
        scan = _depth_scan(data)
        deep = np.flatnonzero(scan[3] > max_depth)
        if deep.size:
            pos = int(deep[0])
            raise ValueError(f"{where}: {_field_at(data, pos, scan)!s} nests JSON arrays/objects more than "
                             f"{max_depth} levels deep (at byte {pos})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ValueError(f"{where} nests JSON arrays/objects too deeply") from None
    except ValueError as exc:  # an integer with more digits than Python converts, NaN / Infinity
        raise ValueError(f"{where} cannot be parsed: {exc}") from None


def read_json(path, what: str, max_bytes: int, max_depth: Optional[int] = None) -> Any:
    """Parse the JSON file ``path`` (untrusted): size-bounded, errors as one-line ``ValueError``.

    ``what`` describes the file in messages ("ground-truth file"). With ``max_depth=None`` nesting deeper
    than Python's recursion limit is refused by the parser (``RecursionError``, reported as a ValueError);
    with a number, by a scan before parsing that names the field. Integers beyond Python's digit limit,
    invalid UTF-8 and anything that is not JSON are refused. (The reader of
    :mod:`refdet.eval.formats`, shared.)
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ValueError(f"{what} {p!r} does not exist")
    try:
        data = read_bounded(p, max_bytes, what)
    except OSError as exc:
        raise ValueError(f"{what} {p!r} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # the file grew after its size was checked
        raise ValueError(f"{what} {p!r} is more than the {max_bytes} bytes refdet accepts")
    if max_depth is not None:
        return loads_json(data, f"{what} {p!r}", max_depth=max_depth)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {p!r} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {p!r} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}") from None
    except RecursionError:
        raise ValueError(f"{what} {p!r} nests JSON arrays/objects too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ValueError(f"{what} {p!r} cannot be parsed: {exc}") from None
