"""Sphinx cross-reference roles in docstrings, shown as plain code in the site.

The docstrings are numpydoc and cite other objects the Sphinx way
(``:func:`npdl.io.save_json```, ``:class:`~npdl.solver.Solver```). mkdocstrings renders
the numpydoc sections but leaves the role's name in the text (``:func:<code>...``); this
MkDocs hook drops the role and a leading ``~`` (Sphinx's "last part only"), leaving the
code span.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj|py:\w+):(<code>)~?")


def on_page_content(html: str, **kwargs) -> str:
    """MkDocs hook: ``:role:<code>~x</code>`` -> ``<code>x</code>``."""
    return ROLE.sub(r"\1", html)
