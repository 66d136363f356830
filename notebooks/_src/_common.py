"""Shared by the notebook generators: cell constructors and the writer (kernel python3, no outputs)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

md, code = new_markdown_cell, new_code_cell


def write_notebook(cells: list, name: str) -> Path:
    """Write ``cells`` as ``notebooks/<name>`` with the venv's ``python3`` kernel; return the path."""
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    out = Path(__file__).resolve().parent.parent / name
    nbformat.write(nb, out)
    print("wrote", out)
    return out
