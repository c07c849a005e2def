"""How to install an optional part of finsent, said the same way everywhere.

finsent is installed from its checkout (it is not on PyPI: ``pip install 'finsent[...]'`` would look for
another project of that name), through the pinned set ``constraints.txt``, as the README does.
"""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (``mpnet``, ``onnx``, ``serve``, ``ray``, ``gpu``, ``tracking``)."""
    return f"pip install -c constraints.txt -e '.[{extra}]' (in finsent's folder)"
