"""Two rules of the API reference that autodoc alone does not keep.

* Every option is documented: each field of a dataclass in ``wsstack.options``
  must be named (as ``name`` in double backquotes) in its class docstring, which
  is where the options are described, together and with their reasons. A new
  field without a sentence there is a warning, which fails the build.
* ``Bases: object`` is left out: it is true of every class and says nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

OPTIONS_MODULE = "wsstack.options"


def check_options_documented(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    if what != "class" or getattr(obj, "__module__", None) != OPTIONS_MODULE or not dataclasses.is_dataclass(obj):
        return
    text = "\n".join(lines)
    for field in dataclasses.fields(obj):
        if f"``{field.name}``" not in text:
            logger.warning(
                "%s.%s is not described in the class docstring", name, field.name, type="wsstack", subtype="option"
            )


def drop_object_base(app: Sphinx, doctree: nodes.document) -> None:
    # autodoc writes the line even for no bases, so it goes from the doctree.
    for paragraph in list(doctree.findall(nodes.paragraph)):
        if paragraph.astext() == "Bases: object":
            paragraph.parent.remove(paragraph)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-docstring", check_options_documented)
    app.connect("doctree-read", drop_object_base)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
