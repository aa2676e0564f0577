"""Sphinx extension for refdet's site: pages generated from the library itself at build time.

* ``conventions/``: one page per op of the convention registry, written from
  :func:`refdet.conventions.describe` and :func:`refdet.conventions.table_rst` (never copied by
  hand), plus an index of every op and the profiles it defines.
* ``api/``: one page per public module (autosummary table + autodoc members), found by walking the
  package, so a module added to refdet appears without editing the docs.
* The ``Conventions`` section that :func:`refdet.conventions.documented` appends to a docstring is
  not one of numpydoc's sections: it is lifted out before numpydoc parses the docstring and put back,
  as a rubric, after numpydoc has rendered it.

Generated files are rewritten only when their text changes (so incremental builds stay incremental)
and are listed in .gitignore.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

# Modules that are the command line and the demo (the "apps" layer of ARCHITECTURE.md): they are
# documented by the README and `refdet --help`, not as an API.
APP_MODULES = {"refdet.__main__", "refdet.cli", "refdet.demo", "refdet.demo_faster_rcnn", "refdet.walkthrough",
               "refdet.plots",
               "refdet.apps", "refdet.apps.eval_cmd", "refdet.apps.quantize", "refdet.exchange.cli"}

# The layers of ARCHITECTURE.md, bottom up, for the API index (first matching prefix wins).
LAYERS = [
    ("Foundation: the convention registry", ("refdet.conventions",)),
    ("Geometry: boxes, IoU, anchors, box coding", ("refdet.boxes", "refdet.iou", "refdet.anchors",
                                                   "refdet.box_coder")),
    ("Suppression", ("refdet.nms", "refdet.postprocess")),
    ("Assignment", ("refdet.matcher", "refdet.sampler", "refdet.targets", "refdet.roi", "refdet.roi_heads",
                    "refdet.proposals")),
    ("Training: layers, FPN, heads, losses", ("refdet.layers", "refdet.resize", "refdet.fpn",
                                              "refdet.heads", "refdet.box_head", "refdet.backbone",
                                              "refdet.losses")),
    ("Quantization", ("refdet.quant",)),
    ("Exchange (ONNX, NNEF)", ("refdet.exchange",)),
    ("Detectors and data", ("refdet.detector", "refdet.faster_rcnn", "refdet.synthetic")),
    ("YOLO family", ("refdet.yolo",)),
    ("Evaluation", ("refdet.eval",)),
    ("Readable references", ("refdet.reference",)),
    ("Testing other implementations", ("refdet.testing", "refdet.verify")),
]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _prune(outdir: Path, keep: set) -> None:
    """Delete generated pages of a previous build that this build no longer writes (a module or an op
    that was renamed or removed), so that they do not linger outside every toctree."""
    for f in outdir.glob("*.rst"):
        if f.name not in keep:
            f.unlink()


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def public_modules() -> list:
    """Every public module of refdet (no ``_private`` component, not an app), sorted."""
    import refdet

    names = ["refdet"]
    for m in pkgutil.walk_packages(refdet.__path__, "refdet."):
        if any(part.startswith("_") for part in m.name.split(".")):
            continue
        if m.name in APP_MODULES or m.name.startswith("refdet.apps."):
            continue
        names.append(m.name)
    return sorted(names)


def _members(modname: str) -> list:
    """Public functions and classes defined in ``modname`` (its ``__all__`` if it has one), and those its
    ``__all__`` re-exports from a private module (``refdet.exchange._onnx_read``: documented where users
    import them)."""
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None)
    listed = set(names or ())
    if names is None:
        names = [n for n in vars(mod) if not n.startswith("_")]
    out = []
    for n in names:
        obj = getattr(mod, n, None)
        owner = getattr(obj, "__module__", None) or ""
        # a module (not a package: those only gather) re-exporting from a private module above or beside it
        private_owner = (owner.startswith("refdet.") and any(p.startswith("_") for p in owner.split("."))
                         and not hasattr(mod, "__path__") and modname.startswith(owner.rsplit(".", 1)[0] + "."))
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and (owner == modname or (n in listed and private_owner)):
            out.append(n)
    def line(n):
        try:
            return inspect.getsourcelines(getattr(mod, n))[1]
        except (OSError, TypeError):
            return 0
    return sorted(out, key=lambda n: (line(n), n))         # the module's own order, as a reader meets it


def _convention_functions() -> dict:
    """``{op: ["refdet.module.function", ...]}`` for every function decorated with ``documented``."""
    found = {}
    for modname in public_modules():
        mod = importlib.import_module(modname)
        for n, obj in vars(mod).items():
            op = getattr(obj, "__convention_op__", None)
            if op is not None and callable(obj) and getattr(obj, "__module__", None) == modname:
                found.setdefault(op, []).append(f"{modname}.{n}")
    return {op: sorted(set(v)) for op, v in found.items()}


# ---- convention pages -----------------------------------------------------------------------------

def write_convention_pages(outdir: Path) -> int:
    from refdet import conventions

    funcs = _convention_functions()
    ops = conventions.ops()
    index = [
        ".. This file is generated by docs/_ext/refdet_docs.py from refdet.conventions; do not edit.",
        "",
        _title("Convention tables"),
        "Every op whose behaviour differs between frameworks takes ``convention=`` (default",
        "``\"torchvision\"``) and one keyword per *knob*. A profile only sets defaults: an explicit",
        "keyword always wins. These pages are generated at build time from the registry in",
        ":mod:`refdet.conventions` (the same text ``refdet describe OP`` prints), so they cannot",
        "drift from the code.",
        "",
        ".. code-block:: python",
        "",
        "    from refdet import conventions",
        "    print(conventions.describe(\"nms\"))          # the table as text",
        "    s = conventions.resolve(\"nms\", \"caffe\", plus_one=False)   # a frozen Profile",
        "",
        "Which profiles define each op (a missing profile means the framework has no such op,",
        "and asking for it raises ``ValueError``):",
        "",
    ]
    profiles = list(conventions.PROFILES) + list(conventions.YOLO_PROFILES)
    rows = []
    for op in ops:
        table = conventions.describe(op)
        marks = ["x" if p in table else "" for p in profiles]
        rows.append([f":doc:`{op}`", str(len(table.options))] + marks)
    head = ["op", "knobs"] + profiles
    index += [".. list-table::", "   :header-rows: 1", "   :class: refdet-profile-matrix", ""]
    for r in [head] + rows:
        index.append("   * - " + r[0])
        index += [f"     - {c}" for c in r[1:]]
    index += ["", ".. toctree::", "   :hidden:", ""] + [f"   {op}" for op in ops] + [""]
    _write(outdir / "index.rst", "\n".join(index))

    for op in ops:
        table = conventions.describe(op)
        page = [
            ".. This file is generated by docs/_ext/refdet_docs.py from refdet.conventions; do not edit.",
            "",
            _title(op),
        ]
        where = funcs.get(op, [])
        if where:
            page += ["Documented on " + ", ".join(f":func:`~{f}`" for f in where) + "."
                     " Profiles: " + ", ".join(f"``{p}``" for p in table) + ".", ""]
        else:
            page += ["Profiles: " + ", ".join(f"``{p}``" for p in table) + ".", ""]
        page += [_title("Knobs and what each profile sets", "-"), conventions.table_rst(op), ""]
        if table.doc:
            # free text written for help() and `refdet describe`: shown as it is written
            page += [_title("Sources", "-"), "::", ""]
            page += ["    " + ln if ln.strip() else "" for ln in table.doc.strip().splitlines()] + [""]
        page += [_title("As text", "-"),
                 f"What ``print(refdet.conventions.describe({op!r}))`` and ``refdet describe {op}`` show:",
                 "", ".. code-block:: text", ""]
        page += ["    " + ln if ln else "" for ln in str(table).splitlines()]
        page.append("")
        _write(outdir / f"{op}.rst", "\n".join(page))
    _prune(outdir, {"index.rst"} | {f"{op}.rst" for op in ops})
    return len(ops)


# ---- API pages ------------------------------------------------------------------------------------

def write_api_pages(outdir: Path) -> int:
    import refdet

    mods = public_modules()
    for modname in mods:
        page = [".. This file is generated by docs/_ext/refdet_docs.py; do not edit.", "",
                _title(f"``{modname}``"), f".. automodule:: {modname}", ""]
        if modname == "refdet":
            # the top-level namespace: every re-exported name, linked to the module that owns it
            page += ["The top-level names, each defined in (and documented with) its module:", "",
                     ".. list-table::", "   :header-rows: 1", "", "   * - name", "     - module"]
            for n in refdet.__all__:
                obj = getattr(refdet, n)
                owner = getattr(obj, "__module__", "refdet")
                role = "class" if inspect.isclass(obj) else "func"
                page += [f"   * - :{role}:`~{owner}.{n}`", f"     - :mod:`{owner}`"]
            page.append("")
        else:
            members = _members(modname)
            subs = [m for m in mods if m.startswith(modname + ".") and m.count(".") == modname.count(".") + 1]
            if subs:
                page += ["Submodules:", "", ".. toctree::", "   :maxdepth: 1", ""]
                page += [f"   {s}" for s in subs] + [""]
            if members:
                page += [".. currentmodule:: " + modname, "", ".. autosummary::", ""]
                page += [f"   {n}" for n in members] + [""]
                for n in members:
                    obj = getattr(importlib.import_module(modname), n)
                    if inspect.isclass(obj) and issubclass(obj, tuple):
                        # a NamedTuple: its fields are the docstring's Attributes section
                        page += [f".. autoclass:: {n}", ""]
                    elif inspect.isclass(obj):
                        page += [f".. autoclass:: {n}", "   :members:", ""]
                    else:
                        page += [f".. autofunction:: {n}", ""]
        _write(outdir / f"{modname}.rst", "\n".join(page))

    top = [m for m in mods if m == "refdet" or m.count(".") == 1]
    index = [".. This file is generated by docs/_ext/refdet_docs.py; do not edit.", "",
             _title("API reference"),
             "Generated from the docstrings (numpydoc). Every public function is also importable from",
             "``refdet`` directly (see :mod:`refdet`); the YOLO family from ``refdet.yolo``.",
             "Layers from the bottom up, as in :doc:`../architecture`.", "",
             ".. toctree::", "   :maxdepth: 1", "", "   refdet", ""]
    placed = {"refdet"}
    for title, prefixes in LAYERS:
        these = [m for m in top if m not in placed and any(m == p or m.startswith(p + ".") for p in prefixes)]
        if not these:
            continue
        placed.update(these)
        index += [_title(title, "-"), ".. toctree::", "   :maxdepth: 1", ""] + [f"   {m}" for m in these] + [""]
    rest = [m for m in top if m not in placed]
    if rest:
        index += [_title("Other modules", "-"), ".. toctree::", "   :maxdepth: 1", ""] + [f"   {m}" for m in rest] + [""]
    _write(outdir / "index.rst", "\n".join(index))
    _prune(outdir, {"index.rst"} | {f"{m}.rst" for m in mods})
    return len(mods)


# ---- the "Conventions" docstring section ------------------------------------------------------------

_LIFTED = {}


def _lift_conventions(app, what, name, obj, options, lines):
    """Before numpydoc: cut the appended ``Conventions`` section out of ``lines`` (kept for later)."""
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Conventions" and set(lines[i + 1].strip()) == {"-"}:
            body = lines[i + 2:]
            del lines[i:]
            _LIFTED[(what, name)] = body
            return


def _restore_conventions(app, what, name, obj, options, lines):
    """After numpydoc: append the lifted section as a rubric, with a link to the op's page."""
    body = _LIFTED.pop((what, name), None)
    if body is None:
        return
    op = getattr(obj, "__convention_op__", None)
    lines += ["", ".. rubric:: Conventions", ""]
    if op:
        lines += [f"Generated from the convention registry (also on the page :doc:`/conventions/{op}`).", ""]
    lines += body


def _generate(app):
    src = Path(app.srcdir)
    n_ops = write_convention_pages(src / "conventions")
    n_mods = write_api_pages(src / "api")
    print(f"refdet_docs: {n_ops} convention pages, {n_mods} API module pages")


def setup(app):
    app.connect("builder-inited", _generate)
    # numpydoc's mangle_docstrings listens with the default priority (500)
    app.connect("autodoc-process-docstring", _lift_conventions, priority=100)
    app.connect("autodoc-process-docstring", _restore_conventions, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
