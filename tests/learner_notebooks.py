"""A learner's notebook for the tests (imported by them, never collected): a markdown
title cell, then the given code cells, written with nbformat as Jupyter would."""

from __future__ import annotations

from pathlib import Path

import nbformat


def notebook(path: Path, *code: str) -> Path:
    """Write a notebook of ``code`` cells (after a markdown title) to ``path``, its folders
    made as needed; return ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Backprop by hand")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in code]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
