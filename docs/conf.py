"""Sphinx configuration: the API reference from the docstrings, the guide pages from docs/*.md.

Built by scripts/test with warnings as errors and nitpicky cross-references:
  python -m sphinx -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The tree's own code, not whichever wsstack is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
# wsstack.speedups is documented from the pure-Python reference implementation,
# whose docstrings are the API's; the C functions' one-line docstrings would make
# the page depend on whether the C modules were built.
os.environ["WSSTACK_NO_SPEEDUPS"] = "1"
# The local extension in _ext/ (see its docstring for the rules it adds).
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

project = "wsstack"
author = "the wsstack authors"
copyright = "the wsstack authors"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
    "myst_parser",
    "wsstack_docs",
]

# The guide pages are Markdown; the reference pages are reStructuredText, since
# autodoc writes reStructuredText that MyST would read as Markdown.
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]

myst_heading_anchors = 3

# Every public name is listed, with its signature, whether it has a docstring or not.
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"

html_theme = "furo"
html_title = "wsstack"

# -n (nitpicky) makes every name in a signature or a base class that does not
# resolve to a documented object a warning, so an undocumented public name of
# ours fails the build. The names below are not ours to document:
nitpick_ignore_regex = [
    # The standard library's (the build has no network for Python's inventory,
    # so they stay plain text): asyncio.Transport, collections.abc.Callable, ...
    (r"py:.*", rf"(?:{'|'.join(sorted(sys.stdlib_module_names))})(?:\..*)?"),
    # uvicorn's classes in wsstack.uvicorn's signatures.
    (r"py:.*", r"uvicorn\..*"),
    # Private names (a leading underscore, in the name or its module), which
    # public signatures may mention but the reference leaves out by design.
    (r"py:.*", r"wsstack(?:\.\w+)*\._\w+(?:\..*)?"),
    # Type variables (routing's H: the handler type each server fills in).
    (r"py:.*", r"wsstack(?:\.\w+)*\.[A-Z]"),
]
