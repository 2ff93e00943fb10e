"""Integrity flags: hints for the teacher, shown and never used to score.

    autograd      the submission's source calls an automatic differentiation system
                  (``autograd_uses``: torch.autograd, torch.func, ``.backward(``,
                  ``requires_grad``, jax.grad, tf.GradientTape, HIPS autograd …), or its
                  gradients agree with autograd with an error of exactly 0 on every entry
                  (hand-written backprop rounds differently from torch's kernels)
    same_code     its normalised syntax tree (``code_fingerprint``: identifiers renamed in
                  order of appearance, docstrings dropped; comments and layout are not in
                  the tree) equals another submission's
    same_mistake  its wrong gradients equal another submission's to all digits
                  (``gradients_fingerprint``: a hash of the arrays' bytes), for a mistake
                  handgrad cannot name: a named classic slip (1/N, a transpose, σ′ of the
                  activation) comes out to the same digits from different code

The source is read in the grader's process as text and parsed with ``ast.parse`` only:
never imported, compiled or run. A file too large, not UTF-8, not valid Python or
nested too deeply to parse gets no source flags (``parse_source`` returns None) and
never stops the grading. A notebook's code cells are read with nbformat, IPython's own
lines left out, as ``check`` runs them (``boundary.notebook``).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import numpy as np

#: the largest source read for the flags (as large as a submission may be)
SOURCE_LIMIT = 1_000_000
#: dotted names (after import aliases are resolved) that mean automatic differentiation
AUTODIFF = ("torch.autograd", "torch.func", "functorch", "jax.grad", "jax.value_and_grad",
            "jax.vjp", "jax.jvp", "jax.jacfwd", "jax.jacrev", "jax.hessian",
            "tensorflow.GradientTape", "autograd.grad", "autograd.elementwise_grad",
            "autograd.value_and_grad", "autograd.jacobian", "mxnet.autograd")
SHOWN_USES = 3


def parse_source(data: bytes, notebook: bool = False, name: str = "") -> ast.Module | None:
    """The syntax tree of a submission's bytes (None: too large, not text, not Python, too
    deep). Never raises."""
    try:
        if len(data) > SOURCE_LIMIT:
            return None
        text = data.decode("utf-8-sig")
        if notebook:
            from experiments.teaching.boundary.notebook import notebook_cells
            cells, _ = notebook_cells(text, name or "notebook")
            text = "\n".join(code for _, code in cells)
            starts, line = [], 1
            for cell, code in cells:
                starts.append((line, cell.rsplit(", ", 1)[-1]))
                line += code.count("\n") + 1
            tree = ast.parse(text)
            tree.cells = starts   # (first line, "cell N"): where autograd_uses points
            return tree
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeDecodeError):
        return None
    except Exception:   # nbformat's own errors: a notebook that cannot be read
        return None


def read_source(path: Path) -> ast.Module | None:
    """``parse_source`` of the file at ``path`` (a regular file, read to SOURCE_LIMIT)."""
    from experiments.teaching.boundary.process import read_capped
    try:
        data = read_capped(Path(path), limit=SOURCE_LIMIT, follow=False)
    except Exception:
        return None
    return parse_source(data, Path(path).suffix.lower() == ".ipynb", Path(path).name)


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of an Attribute/Name chain ("" for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as (``tf`` -> ``tensorflow``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _autodiff(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in AUTODIFF)


def autograd_uses(tree: ast.Module | None) -> list[str]:
    """Where the source calls automatic differentiation: ``"torch.autograd.grad (line
    7)"``, first few; [] for None. ``.backward(`` counts only in a file that defines no
    ``backward`` of its own (a hand-written network class often does)."""
    if tree is None:
        return []
    aliases = _aliases(tree)
    own_backward = any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                       and n.name == "backward" for n in ast.walk(tree))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        what = ""
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [f"{node.module}.{a.name}" for a in node.names] if node.module else [])
            what = next((m for m in mods if _autodiff(m)), "")
        elif isinstance(node, ast.Attribute | ast.Name):
            name = _dotted(node)
            head, _, rest = name.partition(".")
            full = aliases.get(head, head) + (f".{rest}" if rest else "")
            if (head in aliases or "." in name) and _autodiff(full):
                what = full
            elif isinstance(node, ast.Attribute) and node.attr in ("requires_grad",
                                                                   "requires_grad_"):
                what = f".{node.attr}"
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "backward" \
                    and not own_backward:
                what = ".backward("
            elif any(k.arg == "requires_grad" for k in node.keywords):
                what = "requires_grad="
        if what:
            found.append((what, getattr(node, "lineno", 0)))
    # the longest name at a line says it all (torch.autograd.grad, not torch.autograd too);
    # then each name once, where it first appears
    kept = [(w, n) for w, n in sorted(set(found), key=lambda wn: (wn[1], wn[0]))
            if not any(o != w and o.startswith(w) and m == n for o, m in found)]
    seen: set[str] = set()
    kept = [(w, n) for w, n in kept if not (w in seen or seen.add(w))]
    return [f"{w} ({_where(tree, n)})" for w, n in kept]


def _where(tree: ast.Module, line: int) -> str:
    """``line 7``, or in a notebook ``cell 3, line 2``."""
    cells = getattr(tree, "cells", None)
    if not cells:
        return f"line {line}"
    first, cell = max((c for c in cells if c[0] <= line), default=cells[0])
    return f"{cell}, line {line - first + 1}"


_RENAMED = {ast.Name: "id", ast.arg: "arg", ast.FunctionDef: "name",
            ast.AsyncFunctionDef: "name", ast.ClassDef: "name", ast.alias: "asname"}


def _docstring(node: ast.AST) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def code_fingerprint(tree: ast.Module | None) -> str:
    """A hash of the normalised tree: node types and constants, every identifier a learner
    chose (names, arguments, functions, classes, import aliases) renamed in order of first
    appearance, string statements (docstrings) dropped. "" for None. Iterative, so a deep
    tree cannot overflow the stack."""
    if tree is None:
        return ""
    names: dict[str, str] = {}
    out: list[str] = []
    stack: list = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
            continue
        kind = type(node)
        out.append(kind.__name__)
        for field, value in reversed(list(ast.iter_fields(node))):
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.append(")")
                stack.extend(v if isinstance(v, ast.AST) else repr(v)
                             for v in reversed(value) if not _docstring(v))
                stack.append(f"{field}(")
            elif field in ("lineno", "col_offset", "end_lineno", "end_col_offset",
                           "type_comment", "ctx"):
                continue
            elif _RENAMED.get(kind) == field and isinstance(value, str):
                stack.append(names.setdefault(value, f"v{len(names)}"))
            else:
                stack.append(repr(value))
    return hashlib.sha256("\x1f".join(out).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def gradients_fingerprint(arrays: dict) -> str:
    """A hash of gradient arrays (key, shape, dtype and bytes of each, in key order): equal
    for equal values to all digits."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


#: the start of the flag a grade row gets where torch's autograd ran in the learner's
#: process (``boundary.autograd_watch``); ``add_flags`` keeps it when it recomputes the rest
RAN = "autograd: ran in the learner's process"


def ran_flag(runs: int) -> str:
    """The row's runtime autograd flag ("" when autograd never ran)."""
    return f"{RAN} ({runs} backward pass{'es' if runs != 1 else ''})" if runs else ""


def class_flags(rows: list[dict], sources: dict, names: dict | None = None) -> list[str]:
    """Each row's flags ("; "-joined, "" for none), in row order. ``rows``: grade rows with
    ``file``, ``status``, ``worst_rel_err``, ``grad_sha256`` and ``flags`` (a ``ran_flag``
    already there is kept), one per file; ``sources``:
    file -> its syntax tree (None when unreadable); ``names``: file -> how a flag names it
    (default: the file)."""
    names = names or {}
    prints = {r["file"]: code_fingerprint(sources.get(r["file"])) for r in rows}
    flags = []
    for r in rows:
        mine = []
        uses = autograd_uses(sources.get(r["file"]))
        ran = [f for f in str(r.get("flags") or "").split("; ") if f.startswith(RAN)]
        if uses:
            mine.append(f"autograd: {', '.join(uses[:SHOWN_USES])}")
        elif ran:   # no use in the source, yet autograd ran: a use the source hides
            mine.append(ran[0])
        elif r["status"] == "agree" and r["worst_rel_err"] == 0:
            mine.append("autograd: an error of exactly 0 on every entry")
        same = [names.get(o["file"], o["file"]) for o in rows
                if o["file"] != r["file"] and prints[r["file"]]
                and prints[o["file"]] == prints[r["file"]]]
        if same:
            mine.append(f"same_code: {', '.join(same[:SHOWN_USES])}"
                        + (f" and {len(same) - SHOWN_USES} more" if len(same) > SHOWN_USES
                           else ""))
        wrong = r.get("grad_sha256") or ""
        twins = [names.get(o["file"], o["file"]) for o in rows
                 if o["file"] != r["file"] and wrong and o.get("grad_sha256") == wrong]
        if twins:
            mine.append(f"same_mistake: {', '.join(twins[:SHOWN_USES])}"
                        + (f" and {len(twins) - SHOWN_USES} more" if len(twins) > SHOWN_USES
                           else ""))
        flags.append("; ".join(mine))
    return flags
