"""A learner's notebook, or file, as the cells its process runs: IPython's own lines left out.

Runs in handgrad's process, before the learner's: the notebook is read with nbformat
(JSON validated against the notebook schema; nothing in it runs here), and its code cells
become ``(label, source)`` pairs, ``label`` being ``"NAME, cell N"`` (N counts every cell,
markdown included, as the notebook shows them), so that a traceback says ``File
"hw.ipynb, cell 7", line 3``. IPython's own syntax neither fails nor runs: a line magic
(``%matplotlib inline``), a shell line (``!pip install ...``) and a cell magic's line are
left out, each named in ``notes``; a line keeps its number (a ``pass`` takes its place). A
cell under ``%%time``, ``%%timeit``, ``%%capture`` or ``%%prun`` is Python the kernel runs,
and runs (once); any other cell magic's cell (``%%bash``, ``%%writefile``) is left out whole.

``definitions_only`` keeps, per cell, the statements a check needs — imports, function and
class definitions, and assignments of literals (``CONVENTION = "W1b1"``, ``lr = 0.5``) —
decided on the syntax tree; the rest (a training loop, a plot, a print) is left out and
counted in ``notes``. It serves a notebook whose top-level cells train for minutes.
"""

from __future__ import annotations

import ast
import re

_IPYTHON = re.compile(r"^(\s*)[%!]")     # a line magic or a shell line
#: cell magics whose cell is Python run in the kernel itself: the cell is kept, its magic
#: line left out (``%%time`` around a training loop); any other cell magic's cell is not
#: Python of the notebook's (a shell script, a file written, HTML) and is left out whole
PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun")
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
         ast.Pass)
_WHAT = {ast.For: "a for loop", ast.While: "a while loop", ast.Expr: "an expression",
         ast.Assign: "an assignment computed at run time", ast.If: "an if block",
         ast.With: "a with block", ast.Try: "a try block"}


def notebook_cells(text: str, shown: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The code cells of the notebook ``text`` and the IPython lines left out; a notebook
    nbformat cannot read raises ``ValueError`` with one line saying why."""
    import nbformat

    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:   # nbformat's own errors: JSON, schema, version
        raise ValueError(f"{shown} is not a notebook nbformat can read "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    cells, notes = [], []
    for n, cell in enumerate(nb.cells, 1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        first = source.lstrip().split("\n", 1)[0]
        lines = source.split("\n")
        if first.startswith("%%"):
            magic = first.split()[0]
            if magic[2:] not in PYTHON_CELL_MAGICS:   # %%bash, %%writefile, %%html, ...
                notes.append(f"cell {n}: the cell magic {magic} (the whole cell)")
                continue
            at = next(i for i, line in enumerate(lines) if line.strip())
            lines[at] = ""   # its own line; the cell's code runs, once, as in the kernel
            notes.append(f"cell {n}, line {at + 1}: {first.strip()[:80]} (the cell's code "
                         f"runs, once)")
        for i, line in enumerate(lines):
            m = _IPYTHON.match(line)
            if m:
                notes.append(f"cell {n}, line {i + 1}: {line.strip()[:80]}")
                lines[i] = f"{m.group(1)}pass"
        cells.append((f"{shown}, cell {n}", "\n".join(lines)))
    return cells, notes


def _literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _kept(stmt: ast.stmt) -> bool:
    if isinstance(stmt, _KEPT):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True   # a docstring
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        return stmt.value is not None and _literal(stmt.value)
    return False


def definitions_only(cells: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """``cells`` with only imports, definitions and literal assignments kept (module
    docstring); each left-out run of statements is noted. A cell that does not parse is
    kept whole, so that its syntax error is reported where it is."""
    out, notes = [], []
    for label, source in cells:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            out.append((label, source))
            continue
        lines = source.split("\n")
        for stmt in tree.body:
            if _kept(stmt):
                continue
            first, last = stmt.lineno, stmt.end_lineno or stmt.lineno
            indent = re.match(r"\s*", lines[first - 1]).group()
            lines[first - 1] = f"{indent}pass"
            for i in range(first, last):
                lines[i] = ""
            cell = label.rsplit(", ", 1)[1] + ", " if ", cell " in label else ""
            what = _WHAT.get(type(stmt), f"a {type(stmt).__name__.lower()} statement")
            notes.append(f"{cell}line{'s' if last > first else ''} "
                         f"{first}{f'-{last}' if last > first else ''}: {what} "
                         f"(--definitions-only)")
        out.append((label, "\n".join(lines)))
    return out, notes
