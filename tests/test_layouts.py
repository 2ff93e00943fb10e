"""A class as an LMS hands it in: Canvas and Moodle download names, one folder per student,
notebooks, helpers, copies, a file for another config, non-submissions — every file found
either a row with its status and student, or a "not graded" line with its reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from learner_notebooks import notebook

from experiments.cli import main
from experiments.teaching.grade.discover import discover, marked_late, student_of, top_level_names

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
CORRECT = (EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8")
MEAN = (EXAMPLES / "mean_over_batch.py").read_text(encoding="utf-8")
BIASES = (EXAMPLES / "written_for_biases.py").read_text(encoding="utf-8")
# correct_w1b1.py with its sigmoid in a helper module of its own
HELPED = CORRECT.replace("import numpy as np", "import numpy as np\nfrom mathutil import sig",
                         1)
LOOP = ("X = np.random.rand(4, 3); Y = np.random.rand(4, 1)\n"
        "params = {'W1': np.random.rand(3, 4), 'W2': np.random.rand(4, 1)}\n"
        "for i in range(10 ** 8):\n"
        "    params = {k: params[k] - 0.1 * v for k, v in gradients(params, X, Y).items()}\n")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# row -> (student, status, words in the message)
ROWS = {
    "Ann Lee_101_assignsubmission_file_/hw3.ipynb": ("Ann Lee", "agree", "every parameter"),
    "Bob Ray_102_assignsubmission_file_/backprop.py": ("Bob Ray", "agree", "every parameter"),
    "carol/": ("carol", "not_a_submission", "2 files in carol/ define gradients (a.py, b.py)"),
    "dan/": ("dan", "not_a_submission", "dan/ holds no .py file or .ipynb notebook"),
    "doejane_LATE_2345_6789_hw3.py": ("doejane", "differ", "1/N"),
    "erin/hw3.py": ("erin", "wrong_assignment",
                    "your code reads b1: written for a network with biases; `seed` has none"),
    "frank/src/hw3.py": ("frank", "import_error", "No module named 'not_installed_xyz'"),
    # Bob's helper is his alone: importing it from another student's folder fails
    "hank/hw3.py": ("hank", "import_error", "No module named 'mathutil'"),
    # a link is never followed, so ivan's folder holds no file of his
    "ivan/": ("ivan", "not_a_submission", "ivan/ holds no .py file or .ipynb notebook (1 "
              "other entry, e.g. ivan/hw3.py: a symbolic link (never followed"),
    "gina/hw3.py": ("gina", "crashed", "RuntimeError: todo (at hw3.py, line 3: raise "
                                       "RuntimeError('todo'))"),
    "smithjohn_1234_5678_hw3.py": ("smithjohn", "agree", "every parameter"),
    "smithjane_1240_9999_hw3.py": ("smithjane", "agree", "every parameter"),
    "utils.py": ("utils", "not_a_submission", "defines no function gradients"),
}
# row -> (score of the default rubric's 10, mistake, flags): every row's class columns.
# 10: agrees everywhere (no update() asked: its point is given); 0: its gradients never
# agreed, or the first call never returned (erin's KeyError, gina's raise), or it never ran.
CLASS_COLUMNS = {
    "Ann Lee_101_assignsubmission_file_/hw3.ipynb": (10, "", ""),   # notebook: other code
    "Bob Ray_102_assignsubmission_file_/backprop.py": (10, "", "same_code: hank"),
    "carol/": (0, "", ""),
    "dan/": (0, "", ""),
    "doejane_LATE_2345_6789_hw3.py": (0, "averaged over the batch",
                                      "late: the LMS marked it LATE"),
    "erin/hw3.py": (0, "", ""),
    "frank/src/hw3.py": (0, "", ""),
    "gina/hw3.py": (0, "", ""),
    "hank/hw3.py": (0, "", "same_code: Bob Ray"),   # Bob's code, without Bob's helper
    "ivan/": (0, "", ""),
    "smithjane_1240_9999_hw3.py": (10, "", "same_code: smithjohn"),   # named by student
    "smithjohn_1234_5678_hw3.py": (10, "", "same_code: smithjane"),
    "utils.py": (0, "", ""),
}
NOT_GRADED = {
    "Ann Lee_101_assignsubmission_file_/.ipynb_checkpoints/": "duplicate: Jupyter's checkpoints",
    "Bob Ray_102_assignsubmission_file_/mathutil.py": "not a submission: a helper module of "
    "Bob Ray_102_assignsubmission_file_/backprop.py (importable by it alone)",
    "Bob Ray_102_assignsubmission_file_/backprop (1).py": "duplicate: the same bytes as "
    "Bob Ray_102_assignsubmission_file_/backprop.py",
    "carol/notes.txt": "not Python",
    "erin/README.md": "not Python",
    "erin/link.py": "a symbolic link (never followed",
    "frank/src/__pycache__/": "not Python source: compiled Python",
    "frank/notes.py": "not a submission: defines no gradients (and, in another folder than "
                      "the submission's, is not its helper)",
    "Ann Lee_101_assignsubmission_file_/scratch.ipynb": "not a submission: defines no "
                                                        "gradients",
    "grades.xlsx": "not Python",
}


@pytest.fixture
def lms_export(tmp_path) -> Path:
    """The class of ``ROWS`` and ``NOT_GRADED``, built as small files."""
    d = tmp_path / "export"
    ann = d / "Ann Lee_101_assignsubmission_file_"   # a notebook: magics and a long loop
    notebook(ann / "hw3.ipynb", "%matplotlib inline\nimport numpy as np", CORRECT, LOOP)
    notebook(ann / ".ipynb_checkpoints" / "hw3-checkpoint.ipynb", CORRECT)
    bob = d / "Bob Ray_102_assignsubmission_file_"   # a helper module, and a re-upload
    write(bob / "backprop.py", HELPED)
    write(bob / "backprop (1).py", HELPED)
    write(bob / "mathutil.py", "import numpy as np\n\ndef sig(x):\n"
                               "    return 1 / (1 + np.exp(-x))\n")
    write(d / "carol" / "a.py", CORRECT)             # two different candidates
    write(d / "carol" / "b.py", MEAN)
    write(d / "carol" / "notes.txt", "draft\n")
    (d / "dan").mkdir()                              # an empty folder
    write(d / "doejane_LATE_2345_6789_hw3.py", MEAN)  # Canvas, late
    write(d / "erin" / "hw3.py", BIASES)             # written for a network with biases
    write(d / "erin" / "README.md", "# hw3\n")
    (d / "erin" / "link.py").symlink_to(d / "smithjohn_1234_5678_hw3.py")
    write(d / "hank" / "hw3.py", HELPED)
    (d / "ivan").mkdir()
    (d / "ivan" / "hw3.py").symlink_to(d / "smithjohn_1234_5678_hw3.py")
    write(d / "frank" / "src" / "hw3.py", "import not_installed_xyz\n" + CORRECT)
    write(d / "frank" / "src" / "__pycache__" / "hw3.cpython-311.pyc", "\0")
    write(d / "frank" / "notes.py", "x = 1\n")
    notebook(ann / "scratch.ipynb", "import numpy as np\nnp.ones(3)")
    write(d / "gina" / "hw3.py", "def gradients(params, X, Y):\n    x = 1\n"
                                 "    raise RuntimeError('todo')\n")
    write(d / "smithjohn_1234_5678_hw3.py", CORRECT)  # Canvas
    write(d / "smithjane_1240_9999_hw3.py", CORRECT)   # a copy of it
    write(d / "utils.py", "def sig(x):\n    return x\n")   # a helper handed in flat
    write(d / "grades.xlsx", "not a spreadsheet\n")
    return d


def test_lms_names_give_the_student():
    # Canvas: name_USERID_ATTACHMENTID_file (late: name_LATE_...); Moodle: Full
    # Name_ID_assignsubmission_file_ (a folder) or ..._file_hw.py (a file)
    assert student_of("smithjohn_1234_5678_hw3.py") == "smithjohn"
    assert student_of("doejane_LATE_2345_6789_hw3-1.py") == "doejane"
    assert marked_late("doejane_LATE_2345_6789_hw3-1.py")
    assert marked_late("sub/doejane_LATE_2345_6789_hw3.py")
    assert not marked_late("doejane_2345_6789_hw3-1.py")
    assert not marked_late("LATE_2345_6789_hw3.py")       # no name before it: not Canvas's
    assert not marked_late("Ann Lee_101_assignsubmission_file_/LATE.py")
    assert student_of("Ann Lee_101_assignsubmission_file_") == "Ann Lee"
    assert student_of("Ann Lee_101_assignsubmission_file_hw3.ipynb") == "Ann Lee"
    assert student_of("alice") == "alice"
    assert student_of("alice.PY") == "alice"


def test_gradients_found_on_the_syntax_tree_without_running(tmp_path):
    write(tmp_path / "a.py", "import os\nos.remove('x')\nfrom m import gradients as g\n"
                             "gradients = g\nclass C: pass\n")
    write(tmp_path / "b.py", "def gradients(params, X, Y)\n")
    notebook(tmp_path / "c.ipynb", "%matplotlib inline\ndef gradients(p, X, Y):\n    pass",
             "broken(")
    assert top_level_names(tmp_path / "a.py") == {"os", "g", "gradients", "C"}
    assert top_level_names(tmp_path / "b.py") is None            # does not parse
    assert top_level_names(tmp_path / "c.ipynb") == {"gradients"}


def test_discover_sorts_every_file(lms_export):
    subs, skipped = discover(lms_export)
    assert sorted(s.file for s in subs) == sorted(ROWS)
    assert {s.file: s.student for s in subs} == {f: r[0] for f, r in ROWS.items()}
    bob = next(s for s in subs if s.student == "Bob Ray")
    assert [p.name for p in bob.helpers] == ["mathutil.py"]
    assert all(not s.helpers for s in subs if s.student != "Bob Ray")
    why = {s.name: s.why for s in skipped}
    assert sorted(why) == sorted(NOT_GRADED)   # carol's two candidates: named in her row
    for name, words in NOT_GRADED.items():
        assert words in why[name], (name, why[name])


@pytest.mark.slow
def test_grade_an_lms_export(tmp_path, lms_export, capsys):
    out = tmp_path / "grades"
    assert main(["grade", str(lms_export), "--steps", "2", "--out", str(out), "--timeout",
                 "10", "--memory", "400", "--jobs", "2", "--definitions-only"]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("file")
    assert list(table.index) == sorted(ROWS)                      # file-name order
    assert sorted(CLASS_COLUMNS) == sorted(ROWS)
    for file, (student, status, words) in ROWS.items():
        row = table.loc[file]
        assert (row["student"], row["status"], row["config"]) == (student, status, "seed"), file
        assert words in row["message"], (file, row["message"])
        assert (row["score"], row["max_score"], row["mistake"], row["flags"]) == \
            (*CLASS_COLUMNS[file][:1], 10, *CLASS_COLUMNS[file][1:]), file
    not_graded = pd.read_csv(out / "not_graded.csv").set_index("name")["why"]
    for name, words in NOT_GRADED.items():
        assert words in not_graded[name]
    md = (out / "grades.md").read_text(encoding="utf-8")
    assert "| Ann Lee |" in md and "| wrong_assignment |" in md
    assert (out / "checks" / "Ann_Lee" / "check.md").is_file()   # the student's slot
    # a Moodle file is called hw3.ipynb: the feedback names whose it is
    assert (out / "checks" / "Ann_Lee" / "feedback.md").read_text(encoding="utf-8") \
        .startswith("# Feedback on hw3.ipynb (Ann Lee): 10 of 10 points\n")
    assert (out / "checks" / "smithjohn_1234_5678_hw3" / "feedback.md").read_text(
        encoding="utf-8").startswith("# Feedback on smithjohn_1234_5678_hw3.py: 10 of 10")


@pytest.mark.slow
def test_several_configs_a_row_each(tmp_path, capsys):
    d = tmp_path / "subs"
    write(d / "erin.py", BIASES)
    out = tmp_path / "grades"
    assert main(["grade", str(d), "--config", "seed", "--config", "xor", "--steps", "2",
                 "--out", str(out), "--timeout", "10", "--memory", "400"]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(zip(table["config"], table["status"], strict=True)) == [
        ("seed", "wrong_assignment"), ("xor", "agree")]
    assert (out / "checks" / "erin" / "xor" / "check.md").is_file()
    assert list(table["flags"]) == ["", ""]   # a file is never its own copy on another config
    md = (out / "grades.md").read_text(encoding="utf-8")
    assert "config `seed` (sizes 3-4-1" in md and "config `xor` (sizes 2-" in md
    assert "| seed | wrong_assignment |  | 1 |" in md and "| xor | agree | agree | 1 |" in md
    capsys.readouterr()
    # check: one result per config, the highest exit code (2: the seed one cannot run)
    code = main(["check", str(d / "erin.py"), "--config", "seed", "--config", "xor",
                 "--steps", "2", "--no-plots", "--out", str(tmp_path / "c")])
    text = capsys.readouterr().out
    assert code == 2
    assert "== seed: wrong_assignment (exit 2)" in text and "== xor: agree (exit 0)" in text
    assert (tmp_path / "c" / "xor" / "check.md").is_file()
    assert not (tmp_path / "c" / "seed").exists()                  # exit 2: nothing written


def test_a_config_given_twice_is_refused(tmp_path, capsys):
    write(tmp_path / "subs" / "a.py", CORRECT)
    assert main(["grade", str(tmp_path / "subs"), "seed", "--config", "seed",
                 "--out", str(tmp_path / "g")]) == 2
    assert "seed given twice" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
