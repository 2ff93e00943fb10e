"""Notebooks as submissions: their code cells run as one module in the sandboxed learner's
process, IPython's own lines left out and named, errors pointing at the cell and line."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
from learner_notebooks import notebook

from experiments.cli import main
from experiments.teaching.boundary.notebook import definitions_only, notebook_cells

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
CORRECT = (EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8")
LOOP = ("X = np.random.rand(4, 3); Y = np.random.rand(4, 1)\n"
        "params = {'W1': np.random.rand(3, 4), 'W2': np.random.rand(4, 1)}\n"
        "for i in range(10000):\n"
        "    g = gradients(params, X, Y)\n"
        "    params = {k: params[k] - 0.1 * g[k] for k in params}\n"
        "display(params)\n")


def test_cells_keep_their_numbers_and_lines():
    text = nbformat.writes(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\n!pip install x"),
        nbformat.v4.new_code_cell("%%time\nx = 1"),
        nbformat.v4.new_code_cell("if True:\n    %timeit 1\nA = 2"),
        nbformat.v4.new_code_cell("%%bash\nls -l")]))
    cells, notes = notebook_cells(text, "hw.ipynb")
    assert [label for label, _ in cells] == ["hw.ipynb, cell 2", "hw.ipynb, cell 3",
                                             "hw.ipynb, cell 4"]
    assert cells[0][1] == "pass\nimport numpy as np\npass"       # line numbers unchanged
    assert cells[1][1] == "\nx = 1"       # %%time's cell is Python the kernel runs: kept
    assert cells[2][1] == "if True:\n    pass\nA = 2"            # a block stays a block
    assert notes == ["cell 2, line 1: %matplotlib inline", "cell 2, line 3: !pip install x",
                     "cell 3, line 1: %%time (the cell's code runs, once)",
                     "cell 4, line 2: %timeit 1",
                     "cell 5: the cell magic %%bash (the whole cell)"]


def test_definitions_only_keeps_what_a_check_needs():
    source = ('"""doc"""\nimport numpy as np\nCONVENTION = "W1b1"\nlr = [0.5, 1]\n'
              "def gradients(params, X, Y):\n    return {}\n"
              "for i in range(3):\n    print(i)\nW = np.zeros(3)\nprint('hi')\n")
    [(_, kept)], notes = definitions_only([("hw.py", source)])
    lines = kept.split("\n")
    assert lines[:6] == source.split("\n")[:6]                    # untouched, same lines
    assert lines[6:10] == ["pass", "", "pass", "pass"]
    assert notes == ["lines 7-8: a for loop (--definitions-only)",
                     "line 9: an assignment computed at run time (--definitions-only)",
                     "line 10: an expression (--definitions-only)"]


def test_check_a_notebook_with_magics_and_a_training_loop(tmp_path, capsys):
    nb = notebook(tmp_path / "hw.ipynb", "%matplotlib inline\nimport numpy as np",
                  "!pip install numpy", CORRECT, "%%time\nprint('slow')", LOOP,
                  "%%time\nlosses = [0.5, 0.25]",       # a training loop under %%time ...
                  "assert losses[-1] < losses[0]")       # ... whose names the next cell uses
    assert main(["check", str(nb), "--steps", "3", "--no-plots", "--out",
                 str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "ran: the whole file; left out: 4 lines of IPython or top-level code" in out
    assert "  - cell 2, line 1: %matplotlib inline" in out
    assert "  - cell 5, line 1: %%time (the cell's code runs, once)" in out
    assert "result: agree (exit 0)" in out
    assert main(["check", str(nb), "--steps", "3", "--no-plots", "--definitions-only",
                 "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "ran: definitions only" in out
    assert "  - cell 6, lines 3-5: a for loop (--definitions-only)" in out


def test_an_error_names_the_cell_and_line(tmp_path, capsys):
    nb = notebook(tmp_path / "broken.ipynb", "import numpy as np", CORRECT,
                  "a = 1\nb = 2\nundefined_name + 1")
    assert main(["check", str(nb), "--steps", "2", "--no-plots", "--out",
                 str(tmp_path / "c")]) == 2                 # import_error: bad input
    err = capsys.readouterr().err
    assert ("NameError: name 'undefined_name' is not defined (at cell 4, line 3: "
            "undefined_name + 1)") in err
    bad = notebook(tmp_path / "syntax.ipynb", "import numpy as np", "def f(:\n    pass")
    assert main(["check", str(bad), "--out", str(tmp_path / "s")]) == 2
    assert "syntax.ipynb, cell 3:1: " in capsys.readouterr().err


def test_grade_a_class_with_notebooks(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    notebook(subs / "alice.ipynb", "%matplotlib inline", CORRECT, LOOP)
    (subs / "bob.py").write_text(CORRECT, encoding="utf-8")
    assert main(["grade", str(subs), "--steps", "2", "--definitions-only", "--out",
                 str(tmp_path / "g")]) == 0
    rows = pd.read_csv(tmp_path / "g" / "grades.csv", keep_default_na=False)
    assert list(zip(rows["file"], rows["status"], strict=True)) == [
        ("alice.ipynb", "agree"), ("bob.py", "agree")]
    assert "definitions only" in (tmp_path / "g" / "grades.md").read_text(encoding="utf-8")
