"""Sphinx configuration of refdet's documentation site.

Build (from the repository root; the README's command)::

    python3 -m venv .venv && .venv/bin/pip install -q -e '.[docs]' \
        && .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

Generated at build time (never edit, never commit): ``docs/auto_examples/`` (the tutorials, run by
sphinx-gallery), ``docs/conventions/`` and ``docs/api/`` (written by ``_ext/refdet_docs.py`` from
the convention registry and the package's modules).
"""
import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))        # this checkout's refdet, before any installed one
sys.path.insert(0, str(HERE / "_ext"))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import refdet  # noqa: E402

project = "refdet"
author = "the refdet authors"
copyright = "refdet authors, MIT licence"
version = release = refdet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "refdet_docs",
]

smartquotes = False                 # code values in tables stay as written ('first', not ‘first’)
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_templates", "tutorials", "guides",
                    "auto_*/*.ipynb", "auto_*/*.py", "auto_*/*.zip", "auto_*/*.md5", "auto_*/*.json"]
templates_path = ["_templates"]
suppress_warnings = []

# ---- autodoc / autosummary / numpydoc ----
autosummary_generate = False          # the API pages are written by refdet_docs (one per module)
autodoc_member_order = "bysource"
autodoc_typehints = "none"            # the numpydoc Parameters sections carry the types and shapes
autodoc_default_options = {"show-inheritance": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# ---- sphinx-gallery: one tutorial per seed stage, run at build time ----
sphinx_gallery_conf = {
    "examples_dirs": ["tutorials", "guides"],
    "gallery_dirs": ["auto_examples", "auto_guides"],
    "filename_pattern": r"/plot_",      # every tutorial is run
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "plot_gallery": "True",
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "min_reported_time": 0,
}

# ---- HTML ----
html_theme = "pydata_sphinx_theme"
html_title = f"refdet {release}"
html_static_path = []
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}

# matplotlib's font cache message and similar import-time chatter are not warnings of the docs
warnings.filterwarnings("ignore", message="Matplotlib is building the font cache")
# numpydoc parses each docstring more than once (signature, summary tables); refdet_docs lifts the
# "Conventions" section that refdet.conventions.documented appends before the rendering parse and
# puts it back as a rubric, so numpydoc's "Unknown section Conventions" note is expected elsewhere.
warnings.filterwarnings("ignore", message="Unknown section Conventions")
