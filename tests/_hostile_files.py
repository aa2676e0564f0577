"""Hostile model files, and a worker that opens them in a subprocess with its memory capped.

Shared by ``test_hardening_files.py`` (one test per reported class) and ``test_fuzz_files.py`` (the file half
of the fuzz suite). A *case* is a JSON-able dict::

    {"id": "onnx/conv-pads-30000", "loader": "verify_onnx", "path": "/tmp/.../m.onnx",
     "kwargs": {...}, "budget": 67174400}

:func:`run_cases` starts ONE subprocess for a whole batch (imports cost seconds). The worker warms up on
good models (imports, one onnxruntime session, one nnef.Session), records the interpreter's baseline
``ru_maxrss``, caps its address space with ``resource.setrlimit(RLIMIT_AS, ...)`` (so a regression that
allocates gigabytes fails with MemoryError instead of swapping), then opens the cases in increasing budget
order and prints one JSON line per case: the outcome, the exception's class and message, the peak RSS so
far and the time taken. ``ru_maxrss`` is a high-water mark: with the cases sorted by budget, a case that
breaks its budget is caught at that case, not blamed on a later one.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bytes the address-space cap leaves above the warmed-up interpreter's peak and the batch's largest budget
AS_SLACK = 512 << 20


def budget_of(*paths, max_bytes=None):
    """The budget refdet promises for files totalling these sizes (refdet.exchange.files' formula)."""
    from refdet.exchange.files import file_budget

    total = 0
    for p in paths:
        if os.path.isdir(p) and not os.path.islink(p):
            for dirpath, _, names in os.walk(p):
                total += sum(os.lstat(os.path.join(dirpath, n)).st_size for n in names)
        elif os.path.lexists(p):
            total += os.lstat(p).st_size
    return file_budget(total, max_bytes).limit


def case(cid, loader, path, budget=None, expect=None, match=None, **kwargs):
    """A case: ``loader(path, **kwargs)``; ``expect="error"``: it must be refused; ``match``: words the
    error must contain."""
    return {"id": cid, "loader": loader, "path": os.fspath(path), "kwargs": kwargs, "expect": expect,
            "match": match,
            "budget": budget if budget is not None else budget_of(path, max_bytes=kwargs.get("max_bytes"))}


# ---------------------------------------------------------------------------------------------------
# the parent side
# ---------------------------------------------------------------------------------------------------

def run_cases(cases, warmup, *, timeout=600):
    """Open every case in one capped subprocess; ``(baseline_bytes, {id: record})``.

    ``warmup`` is a list of (loader, path, kwargs) run before the baseline is taken. Raises
    AssertionError if the worker dies (the message names the case it was on).
    """
    cases = sorted(cases, key=lambda c: c["budget"])
    spec = {"warmup": warmup, "cases": cases}
    boot = f"import sys; sys.path.insert(0, {ROOT!r}); from tests._hostile_files import worker; worker()"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", boot], input=json.dumps(spec), capture_output=True, text=True,
                          timeout=timeout, env=env)
    recs, baseline = {}, None
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "baseline" in r:
            baseline = r["baseline"]
        else:
            recs[r["id"]] = r
    if proc.returncode != 0 or baseline is None or len(recs) != len(cases):
        done = len(recs)
        at = cases[done]["id"] if done < len(cases) else "(after the last case)"
        raise AssertionError(f"the worker died (exit {proc.returncode}) on case {at!r} after {done} cases:\n"
                             f"{proc.stderr[-3000:]}")
    return baseline, recs


def check_records(cases, baseline, recs, *, slack=0):
    """Failures (strings) of the fuzz contract: only ValueError / TypeError, naming the file; peak memory
    within baseline + budget (+ ``slack``); a runtime never fails for lack of memory."""
    bad, high = [], baseline
    for c in sorted(cases, key=lambda c: c["budget"]):      # the order they ran in
        r = recs[c["id"]]
        name = os.path.basename(c["path"].rstrip("/")) or c["path"]
        if r["outcome"] == "error":
            if r["type"] not in ("ValueError", "TypeError"):
                bad.append(f"{c['id']}: {r['type']}: {r['message'][:300]}\n{r.get('traceback', '')[-1500:]}")
            elif name not in r["message"]:
                bad.append(f"{c['id']}: the message does not name the file {name!r}: {r['message'][:300]}")
            elif any(w in r["message"].lower() for w in ("bad_alloc", "bad allocation", "failed to allocate",
                                                          "out of memory", "memoryerror")):
                bad.append(f"{c['id']}: a runtime ran out of memory: {r['message'][:300]}")
        elif c.get("expect") == "error":
            bad.append(f"{c['id']}: accepted a file that must be refused")
        if c.get("match") and (r["outcome"] != "error" or c["match"] not in r["message"]):
            bad.append(f"{c['id']}: expected an error mentioning {c['match']!r}; got {r['outcome']}: "
                       f"{r.get('message', '')[:300]}")
        peak = r["maxrss"] - baseline
        # ru_maxrss is a high-water mark: only a case that raised it can have broken its budget
        if r["maxrss"] > high and peak > c["budget"] + slack:
            bad.append(f"{c['id']}: peak memory grew by {peak >> 20} MiB, more than its budget of "
                       f"{c['budget'] >> 20} MiB")
        high = max(high, r["maxrss"])
    return bad


# ---------------------------------------------------------------------------------------------------
# the worker
# ---------------------------------------------------------------------------------------------------

def _maxrss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # kilobytes on Linux


def _vm_peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def _call(loader, path, kw):
    import numpy as np

    kw = dict(kw)
    feeds = kw.pop("feeds", None)
    if feeds is not None:
        feeds = {k: np.zeros(tuple(v), np.float32) for k, v in feeds.items()}
    if loader in ("load_onnx_params", "onnx_config", "load_quantized_head", "verify_onnx", "run_onnx", "read_onnx"):
        from refdet.exchange import onnx as rx
        if loader == "verify_onnx":
            return rx.verify_onnx(path, **kw)
        if loader == "run_onnx":
            return rx.run_onnx(path, feeds, **kw)
        return getattr(rx, loader)(path, **kw)
    if loader in ("load_nnef", "nnef_config", "verify_nnef", "run_nnef", "read_nnef_tensor"):
        from refdet.exchange import nnef as rn
        if loader == "run_nnef":
            return rn.run_nnef(path, feeds, **kw)
        return getattr(rn, loader)(path, **kw)
    if loader == "load_params_npz":
        from refdet.exchange.files import load_params_npz
        return load_params_npz(path, **kw)
    raise ValueError(f"unknown loader {loader!r}")


def worker():
    import resource
    import time
    import traceback

    spec = json.load(sys.stdin)
    import numpy  # noqa: F401

    import refdet  # noqa: F401
    from refdet.exchange import files, nnef, onnx  # noqa: F401
    for loader, path, kw in spec["warmup"]:
        _call(loader, path, kw)
    baseline = _maxrss()
    top = max([c["budget"] for c in spec["cases"]] or [0])
    limit = _vm_peak() + top + AS_SLACK
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(json.dumps({"baseline": baseline, "as_limit": limit}), flush=True)
    for c in spec["cases"]:
        t0 = time.perf_counter()
        rec = {"id": c["id"]}
        try:
            out = _call(c["loader"], c["path"], c["kwargs"])
            rec.update(outcome="ok", result=type(out).__name__)
        except Exception as exc:  # noqa: BLE001 - the point is to see every kind
            rec.update(outcome="error", type=type(exc).__name__, message=str(exc)[:4000])
            if not isinstance(exc, (ValueError, TypeError)):
                rec["traceback"] = traceback.format_exc()[-4000:]
        rec.update(maxrss=_maxrss(), seconds=round(time.perf_counter() - t0, 3))
        print(json.dumps(rec), flush=True)


# ---------------------------------------------------------------------------------------------------
# building blocks of hostile files
# ---------------------------------------------------------------------------------------------------

def nnef_header(extents, *, data_length=None, bits=32, item=0, rank=None, magic=b"\x4e\xef", version=(1, 0),
                reserved0=0):
    """A raw 128-byte NNEF tensor header with any field set (refdet's writer never writes a bad one)."""
    ext = list(extents)[:8] + [0] * (8 - min(len(extents), 8))
    rank = len(extents) if rank is None else rank
    if data_length is None:
        count = 1
        for e in extents:
            count *= e
        data_length = (count * bits + 7) // 8
    return struct.pack("<2sBBII8III19I", magic, version[0], version[1], data_length & 0xFFFFFFFF, rank & 0xFFFFFFFF,
                       *[e & 0xFFFFFFFF for e in ext], bits & 0xFFFFFFFF, item & 0xFFFFFFFF, reserved0,
                       *([0] * 18))


class Zeros(io.RawIOBase):
    """A readable stream of ``n`` zero bytes (archive bombs without holding them in memory)."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def write_tar(path, members, *, mode="w:gz", compresslevel=1):
    """``members``: (name, payload, kind[, extra]) with kind "file" (payload bytes or an int: that many
    zero bytes, streamed), "dir", "sym", "hard", "chr", "fifo", "blk"; "size-lie" writes a header that
    claims ``extra`` bytes for a short payload (the archive ends early)."""
    kw = {"compresslevel": compresslevel} if mode.endswith("gz") else {}
    with open(path, "wb") as raw:
        with tarfile.open(fileobj=raw, mode=mode, **kw) as tf:
            for m in members:
                name, payload, kind = m[0], m[1], m[2]
                info = tarfile.TarInfo(name)
                if kind == "file":
                    if isinstance(payload, int):
                        info.size = payload
                        tf.addfile(info, io.BufferedReader(Zeros(payload), 1 << 20))
                    else:
                        info.size = len(payload)
                        tf.addfile(info, io.BytesIO(payload))
                elif kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tf.addfile(info)
                elif kind in ("sym", "hard"):
                    info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                    info.linkname = payload
                    tf.addfile(info)
                elif kind in ("chr", "blk", "fifo"):
                    info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                    info.devmajor, info.devminor = 1, 3
                    tf.addfile(info)
                elif kind == "size-lie":   # a header claiming m[3] bytes, then the short payload, then the end
                    info.size = m[3]
                    tf.fileobj.write(info.tobuf(tf.format, tf.encoding, tf.errors))
                    tf.fileobj.write(payload)
    return path


def write_zip(path, members, *, compression=zipfile.ZIP_STORED):
    """``members``: (name, bytes) or (name, (prefix bytes, n)): the prefix then n zero bytes, streamed."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            if isinstance(data, tuple):
                prefix, n = data
                info = zipfile.ZipInfo(name)
                info.compress_type = compression
                with zf.open(info, "w", force_zip64=True) as fh:
                    fh.write(prefix)
                    for k in range(0, n, 1 << 22):
                        fh.write(bytes(min(1 << 22, n - k)))
            else:
                zf.writestr(name, data)
    return path


def npy_bytes(arr=None, header=None, body=b""):
    import numpy as np

    buf = io.BytesIO()
    if header is None:
        np.lib.format.write_array(buf, arr, allow_pickle=True)   # (writing a hostile file on purpose)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(body)
    return buf.getvalue()


def set_metadata(mp, key, value):
    for p in mp.metadata_props:
        if p.key == key:
            p.value = value
            return mp
    mp.metadata_props.add(key=key, value=value)
    return mp


def set_attr(node, name, value):
    import onnx

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(name, value))
    return node


def first(mp, op_type, k=0):
    nodes = [n for n in mp.graph.node if n.op_type == op_type]
    return nodes[k] if len(nodes) > k else None


def replace_input_with_const(mp, node, index, array, name="_hostile_const"):
    """Make input ``index`` of ``node`` a new initializer holding ``array``."""
    import onnx

    name = f"{name}_{len(mp.graph.initializer)}"
    mp.graph.initializer.append(onnx.numpy_helper.from_array(array, name))
    while len(node.input) <= index:
        node.input.append("")
    node.input[index] = name
    return mp
