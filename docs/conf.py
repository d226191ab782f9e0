"""Sphinx configuration of the pgm_control documentation (build: ``python docs/build.py``).

The API reference is generated from the docstrings, recursively over the three installed
packages (``pgm_control``, ``pgm_control.models``, ``pgm_control.guides``): a new module
appears without an edit here. The notebooks are rendered from ``docs/notebooks/``, where
``docs/build.py`` writes the executed copies of ``notebooks/*.ipynb`` (they are not executed
again here: ``nb_execution_mode = "off"``).
"""

import re

import pgm_control

project = "pgm_control"
author = "pgm_control contributors"
copyright = "2026, pgm_control contributors"
release = version = pgm_control.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "figures", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# --- API reference: one page per module, found by walking the packages
autosummary_generate = True
autosummary_imported_members = False
# every object is documented once, in the module that defines it (not where it is re-exported)
autodoc_default_options = {"members": True, "ignore-module-all": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- notebooks: executed once by docs/build.py (CI's notebook run), rendered as they are
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# --- HTML
html_theme = "furo"
html_title = f"pgm_control {version}"
html_static_path = []


# --- docstrings are written for Jupyter's `?` first: p(a|s), |ΔV| and |r|/α are plain text,
# not reStructuredText substitutions. Escape a "|" outside ``literals`` unless it starts a line
# (a line block or a grid table), so the docstrings need no markup to render.
_LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(line: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith("|") or stripped.startswith("+-") or "|" not in line:
        return line
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else re.sub(r"(?<!\\)\|", r"\\|", p) for i, p in enumerate(parts))


def _process_docstring(app, what, name, obj, options, lines):
    out, literal_indent = [], None  # inside a literal block (after "::"): text as it is
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                out.append(line)
                continue
            literal_indent = None
        out.append(line if line.lstrip().startswith(">>>") else _escape_bars(line))
        if line.rstrip().endswith("::"):
            literal_indent = indent
    lines[:] = out


def _skip_member(app, what, name, obj, skip, options):
    # a NamedTuple field is documented from its annotation; skip the generated property too
    doc = getattr(obj, "__doc__", None) or ""
    if doc.startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-skip-member", _skip_member)
