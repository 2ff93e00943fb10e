"""The walkthrough notebook runs top to bottom, uses the public API only, and its prose quotes
only numbers that its cells print.

The code cells run in order in one namespace, each as Jupyter runs it: a cell's last
expression is displayed (here: its repr printed) unless the cell ends with ``;``. (Running
through a Jupyter kernel would pull nbclient/ipykernel/zmq into CI; the notebook has no
magics outside comments, so its cells' source is the script exported from it.)
"""

import ast
import contextlib
import io
import json
import os
import re
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest

import experiments

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
INTERNAL = re.compile(r"\bexperiments\.(core|output|teaching|tools)\b")
# A decimal (0.10, 1.7e-09, 1e-7) or a grouped integer (2,000) in prose; not a version
# (2.13.0), not part of a name (w1, float64), a full stop after it allowed.
PROSE_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)"
                          r"(?!\w|[.,]\d)")
ANY_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def cells(kind: str) -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


def run_cell(source: str, name: str, namespace: dict) -> None:
    """exec the cell; display its last expression as Jupyter does (repr, unless ``;``)."""
    tree = ast.parse(source)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) \
            and not source.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, name, "exec"), namespace)
    if last is not None:
        value = eval(compile(last, name, "eval"), namespace)
        if value is not None:
            print(repr(value))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(namespace, printed output, seconds) of one top-to-bottom run, in a temporary folder."""
    matplotlib.use("Agg")
    namespace: dict = {"__name__": "__main__"}
    buffer = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("notebook"))
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer):
            for i, source in enumerate(cells("code")):
                try:
                    run_cell(source, f"walkthrough.ipynb:cell{i}", namespace)
                except Exception as err:  # name the failing cell
                    pytest.fail(f"notebook code cell {i} failed: {err!r}\n{source}")
    finally:
        os.chdir(cwd)
        plt.close("all")
    return namespace, buffer.getvalue(), time.perf_counter() - start


def test_notebook_is_valid_nbformat_4_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["cells"]
    assert all(c["cell_type"] in ("code", "markdown") for c in nb["cells"])
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb["cells"] if c["cell_type"] == "code"), \
        "commit the notebook without outputs: this test is its execution"
    for i, source in enumerate(cells("code")):
        assert not any(line.lstrip().startswith(("%", "!")) for line in source.splitlines()), \
            f"cell {i} uses a magic; keep magics in markdown so the cells run as a script"


def test_notebook_imports_only_the_public_api():
    imported = []   # (module, names) of every import of experiments or a module under it
    for source in cells("code"):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported += [(a.name, []) for a in node.names if a.name.startswith("experiments")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments"):
                imported.append((node.module, [a.name for a in node.names]))
        assert not INTERNAL.search(source), f"internal module named in:\n{source}"
    assert imported, "the notebook should show the public API: from experiments import ..."
    assert {module for module, _ in imported} == {"experiments"}, imported
    names = {n for _, ns in imported for n in ns}
    assert names <= set(experiments.__all__), names - set(experiments.__all__)
    assert {"check_function", "run_experiment", "write_run"} <= names


def test_notebook_runs_top_to_bottom_and_says_what_it_shows(executed):
    namespace, out, elapsed = executed
    print(f"notebook ran in {elapsed:.1f} s")
    assert elapsed < 60, f"the notebook promises well under a minute; it took {elapsed:.0f} s"
    # section 1: the published 2-2-2 figures, both sides, printed and matched
    assert "0.75136507" in out and "0.2983711" in out
    figures = namespace["figures"]
    assert list(figures.index) == ["out_o1", "out_o2", "E_total", "∂E/∂w5", "∂E/∂w1",
                                   "w5 after the step", "w1 after the step"]
    assert figures["match"].all()
    # section 2: manual vs autograd at the rounding level (fixed float64 bound as well)
    assert namespace["exact"] <= 1e-12 and namespace["exact"] < namespace["fd"]
    # section 3: lockstep, both dtypes agree; float64 also under the fixed bound
    summary = namespace["summary"]
    assert set(summary["dtype"]) == {"float64", "float32"}
    assert set(summary["verdict"]) <= {"exact", "agree"}
    assert summary.loc[summary["dtype"] == "float64", "rel_err"].max() <= 1e-12
    # section 4: the learner's function agrees; the mean-over-the-batch variant is caught
    result, wrong = namespace["result"], namespace["wrong"]
    assert result.agree and result.status == "agree" and result.exit_code == 0
    assert result.worst_rel_err <= 1e-12 and result.worst_ratio < 1
    assert not wrong.agree and wrong.status == "differ" and wrong.kind == "constant_ratio"
    assert "averaged over the batch" in wrong.message
    assert result.explanation in out and wrong.explanation in out


def _significant(text: str) -> int:
    mantissa = text.replace(",", "").lower().split("e")[0].replace(".", "")
    return max(len(mantissa.lstrip("0")), 1)


def test_every_number_in_the_prose_is_printed_or_in_the_code(executed):
    """A decimal in a markdown cell must equal, to the digits it shows, a number the code
    cells print or contain: no hard-coded measurement can go stale."""
    _, out, _ = executed
    corpus = {float(m) for m in ANY_NUMBER.findall(out + "\n".join(cells("code")))}
    quoted = [m for text in cells("markdown") for m in PROSE_NUMBER.findall(text)]
    assert "0.05" in quoted and "2,000" in quoted   # the pattern finds what the prose has
    missing = []
    for text in quoted:
        digits, value = _significant(text), float(text.replace(",", ""))
        shown = float(f"{value:.{digits}g}")
        if not any(float(f"{c:.{digits}g}") == shown for c in corpus):
            missing.append(text)
    assert not missing, f"numbers in the notebook's text that no cell prints: {missing}"
