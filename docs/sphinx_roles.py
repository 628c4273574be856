"""A Griffe extension for the documentation site: the Sphinx roles the docstrings use
(``:func:`name```, ``:class:`~pkg.mod.Name```) are shown as inline code, as Sphinx shows them
(a leading ``~`` keeps the last component)."""
from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|data|meth|attr|mod|obj|exc|const):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``text`` with every Sphinx role replaced by inline code of its target."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
