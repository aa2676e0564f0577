"""Reading ONNX files refdet exported, as untrusted input: the file size-bounded before parsing, the
``refdet.*`` metadata parsed with a depth limit and checked against the graph, every initializer's
stored data checked against its declared extents before it is converted.

The public readers (:func:`read_onnx`, :func:`onnx_config`, :func:`load_onnx_params`,
:func:`load_quantized_head`) are importable from :mod:`refdet.exchange.onnx`.
"""
from __future__ import annotations

import os

from refdet.exchange import _models, _onnx_check
from refdet.exchange import files as _files
from refdet.exchange._onnx_graphs import _import_onnx

__all__ = ["read_onnx", "onnx_config", "load_onnx_params", "load_quantized_head"]


# ---------------------------------------------------------------------------------------------------
# reading (untrusted files)
# ---------------------------------------------------------------------------------------------------

#: the ``refdet.*`` metadata values are JSON of at most this many bytes (a model with 10,000 parameters
#: lists their names in about 400 KB)
_JSON_MAX_BYTES = 1 << 20


def _source(model_or_path, max_bytes=None):
    """(ModelProto, what, size): the model, how messages name it, and its size in bytes (the budget's base).

    Files larger than ``max_bytes`` (default :data:`refdet.exchange.files.DEFAULT_MAX_BYTES`) are refused
    before they are read; so is anything that does not parse as an ONNX protobuf, initializers stored as
    external data (their location is a path a hostile file could point anywhere, e.g.
    ``../../etc/passwd``) and sparse initializers.
    """
    onnx = _import_onnx()
    limit = _files.largest_file(max_bytes)
    if isinstance(model_or_path, onnx.ModelProto):
        mp, what = model_or_path, "the ONNX model"
        size = mp.ByteSize()
    elif isinstance(model_or_path, (bytes, bytearray, memoryview)):
        data, what = bytes(model_or_path), "the ONNX bytes"
        mp = None
    elif isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        what = f"ONNX file {path!r}"
        if not os.path.exists(path):
            raise ValueError(f"{what} is missing (no such file)")
        data = _files.read_bounded(path, limit, "ONNX file")
        mp = None
    else:
        raise TypeError(f"`model_or_path` must be an onnx.ModelProto, bytes or a path; got "
                        f"{type(model_or_path).__name__}")
    if mp is None:
        size = len(data)
        if size > limit:
            raise ValueError(f"{what} is {size} bytes, more than max_bytes={limit}")
        mp = onnx.ModelProto()
        try:
            mp.ParseFromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise ValueError(f"{what} is not a valid ONNX model (protobuf parse failed: {_one_line(exc)})") from None
        del data
    if not mp.HasField("graph"):
        raise ValueError(f"{what} is not a valid ONNX model (no graph)")
    for t in mp.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            raise ValueError(f"{what}: initializer {t.name!r} refers to external data, which refdet does not "
                             f"follow (a file path taken from an untrusted model)")
    if len(mp.graph.sparse_initializer):
        raise ValueError(f"{what}: sparse initializers are refused (refdet writes none)")
    return mp, what, size


def read_onnx(model_or_path, *, max_bytes=None):
    """Load an ONNX model safely: a ``ModelProto``, bytes, or a path.

    Refuses (``ValueError``) a missing file, files larger than ``max_bytes`` (default 2 GiB), anything
    that does not parse as an ONNX protobuf, and initializers stored as external data (their location
    is a path that a hostile file could point anywhere, e.g. ``../../etc/passwd``); nothing is read
    besides the one file.
    """
    return _source(model_or_path, max_bytes)[0]


_one_line = _onnx_check._one_line
_check_tensor = _onnx_check._check_tensor
_tensor_to_array = _onnx_check._tensor_to_array


def _metadata(mp, what):
    props = {}
    for p in mp.metadata_props:
        if p.key.startswith("refdet.") and p.key in props:
            raise ValueError(f"{what}: metadata {p.key!r} appears twice")
        props[p.key] = p.value
    return props


def _metadata_json(props, key, what):
    value = props[key]
    if len(value) > _JSON_MAX_BYTES:
        raise ValueError(f"{what}: metadata {key!r} is {len(value)} characters, more than the {_JSON_MAX_BYTES} "
                         f"refdet accepts")
    return _files.loads_json(value, f"{what} metadata", field=key)


def _config(mp, what):
    props = _metadata(mp, what)
    if "refdet.config" not in props:
        raise ValueError(f"{what} was not exported by refdet (no 'refdet.config' metadata)")
    cfg = _metadata_json(props, "refdet.config", what)
    _models.check_file_config(cfg, f"{what} metadata 'refdet.config'")
    inits = {t.name for t in mp.graph.initializer}
    ins = [i for i in mp.graph.input if i.name not in inits]
    if cfg["model"] not in ("postprocess", "yolo_postprocess"):
        dims = [i.type.tensor_type.shape.dim[1].dim_value if len(i.type.tensor_type.shape.dim) == 4 else None
                for i in ins]
        if dims != cfg["in_channels"]:
            raise ValueError(f"{what}: metadata 'refdet.config' says in_channels {cfg['in_channels']} but the graph's "
                             f"inputs have {dims}")
    if [i.name for i in ins] != _models.input_names(cfg):
        raise ValueError(f"{what}: the graph's inputs {[i.name for i in ins][:8]} are not the "
                         f"{_models.input_names(cfg)} of a {cfg['model']!r}")
    return cfg


def onnx_config(model_or_path, *, max_bytes=None):
    """The refdet config recorded in a model exported by :func:`export_onnx` (a dict), or ``ValueError``."""
    mp, what, _ = _source(model_or_path, max_bytes)
    return _config(mp, what)


def _params(onnx, mp, what):
    inits = {}
    for t in mp.graph.initializer:
        if t.name in inits:
            raise ValueError(f"{what}: initializer {t.name!r} appears twice")
        inits[t.name] = t
    props = _metadata(mp, what)
    keys = list(inits)
    if "refdet.params" in props:
        keys = _metadata_json(props, "refdet.params", what)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{what}: metadata 'refdet.params' must be a list of names")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{what}: metadata 'refdet.params' lists a name twice")
        missing = [k for k in keys if k not in inits]
        if missing:
            raise ValueError(f"{what}: the model lists parameters {missing[:3]} that are not initializers")
    return {k: _tensor_to_array(onnx, inits[k], what) for k in keys}


def load_onnx_params(model_or_path, *, max_bytes=None):
    """The parameters stored in an ONNX model, as a dict of NumPy arrays.

    Parameters
    ----------
    model_or_path : onnx.ModelProto, bytes or path
    max_bytes : int, optional
        Largest file accepted (default 2 GiB). The arrays are never larger than the data the file
        stores (each initializer's length is checked against its extents first).

    Returns
    -------
    dict
        For a model from :func:`export_onnx`: exactly the exported parameters under their refdet keys
        (float32, bit-identical; ``max_output_boxes_per_class`` int64), listed in the ``refdet.params``
        metadata. For another model: every initializer by name.
    """
    onnx = _import_onnx()
    mp, what, _ = _source(model_or_path, max_bytes)
    return _params(onnx, mp, what)


def load_quantized_head(model_or_path, *, max_bytes=None):
    """The :class:`refdet.quant.QuantizedHead` stored in a ``"quantized_retinanet_head"`` export.

    Integers, scales and zero points come from the initializers; the requantization multipliers are
    recomputed with :func:`refdet.quant.quantize_retinanet_head`'s formulas, so the result equals
    the head that was exported. ``max_bytes``: largest file accepted (default 2 GiB).
    """
    onnx = _import_onnx()
    mp, what, _ = _source(model_or_path, max_bytes)
    cfg = _config(mp, what)
    if cfg["model"] != "quantized_retinanet_head":
        raise ValueError(f"{what} is a {cfg['model']!r}, not a 'quantized_retinanet_head'")
    params = _params(onnx, mp, what)
    try:
        return _models.qhead_from_params(cfg, params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: {_one_line(exc)}") from None
