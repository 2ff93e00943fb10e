"""``handgrad grade``: a folder of learners' files, each checked in its own limited process.

One folder mixes every outcome — agreeing, a classic mistake, a syntax error, a crash, a
segfault, a memory hog, an infinite loop, a list returned, an exception — and the grading
goes through all of them, one row each.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"

SUBMISSIONS = {   # file -> (content, status, diagnosis, first_param, words in the message)
    "a_correct.py": (None, "agree", "agree", "", "every parameter agrees"),
    "b_mean.py": (None, "differ", "constant_ratio", "W2", "1/N of autograd's"),
    "c_syntax.py": ("def gradients(params, X, Y)\n    return {}\n", "import_error", "", "",
                    "c_syntax.py:1:"),
    "d_exit.py": ("import os\ndef gradients(params, X, Y):\n    os._exit(7)\n", "crashed", "",
                  "", "exited with status 7"),
    "e_segfault.py": ("import ctypes\ndef gradients(params, X, Y):\n"
                      "    return ctypes.string_at(0)\n", "crashed", "", "", "SIGSEGV"),
    "f_hog.py": ("import numpy as np\ndef gradients(params, X, Y):\n    h = []\n"
                 "    while True:\n        h.append(np.ones(20_000_000))\n", "crashed", "", "",
                 "MemoryError"),
    "g_loop.py": ("def gradients(params, X, Y):\n    while True:\n        pass\n", "timeout",
                  "", "", "ran past the time limit"),
    "h_list.py": ("def gradients(params, X, Y):\n    return [0]\n", "bad_output", "", "",
                  "returned a list of 1"),
    "i_raises.py": ("def gradients(params, X, Y):\n    raise RuntimeError('todo')\n", "crashed",
                    "", "", "RuntimeError: todo"),
}


@pytest.fixture
def submissions(tmp_path) -> Path:
    folder = tmp_path / "submissions"
    folder.mkdir()
    shutil.copy(EXAMPLES / "correct_w1b1.py", folder / "a_correct.py")
    shutil.copy(EXAMPLES / "mean_over_batch.py", folder / "b_mean.py")
    for name, (content, *_) in SUBMISSIONS.items():
        if content is not None:
            (folder / name).write_text(content, encoding="utf-8")
    (folder / "notes.txt").write_text("not a submission\n", encoding="utf-8")
    return folder


def test_grade_mixed_folder(tmp_path, submissions, capsys):
    out = tmp_path / "grades"
    code = main(["grade", str(submissions), "seed", "--steps", "2", "--out", str(out),
                 "--timeout", "2", "--memory", "400", "--jobs", "2"])
    assert code == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(table.columns) == ["student", "file", "config", "status", "score",
                                   "max_score", "diagnosis", "mistake", "first_param",
                                   "worst_rel_err", "worst_ratio", "seconds", "message",
                                   "flags", "sha256", "grad_sha256"]
    assert list(table["student"]) == [f[:-3] for f in SUBMISSIONS]   # a flat file's name
    assert set(table["config"]) == {"seed"}
    assert list(table["file"]) == list(SUBMISSIONS)          # every .py, in name order
    for row in table.itertuples():
        _, status, kind, first, words = SUBMISSIONS[row.file]
        assert (row.status, row.diagnosis, row.first_param) == (status, kind, first), row
        assert words in row.message, row
    agree = table[table["status"] == "agree"]
    assert float(agree["worst_rel_err"].iloc[0]) <= 1e-12        # fixed float64 bound
    assert math.isclose(float(table.loc[1, "worst_rel_err"]), 0.75, rel_tol=1e-12)
    assert {p.name for p in out.iterdir()} == {".handgrad", "grades.csv", "grades.md",
                                               "not_graded.csv", "checks", "settings.json",
                                               "mistakes.png", "scores.png", "report.html"}
    checks = out / "checks"
    written = {p.name for p in checks.iterdir()}
    # a folder for every submission: a full check folder for every file that loaded, the
    # feedback alone for the syntax error and the bad output
    assert written == {Path(f).stem for f in SUBMISSIONS}
    assert {p.name for p in (checks / "c_syntax").iterdir()} == {"feedback.md"}
    assert (checks / "a_correct" / "check.md").is_file()
    assert (checks / "b_mean" / "training" / "summary.csv").is_file()
    assert not list((checks / "b_mean" / "training").glob("*.png"))   # grade skips plots
    md = (out / "grades.md").read_text(encoding="utf-8")
    assert "9 submissions checked against autograd; config `seed` (sizes 3-4-1" in md
    assert ("2 training steps), --timeout 2 s, --memory 400 MiB, --jobs 2 on this machine, "
            "whole files run, "
            "handgrad ") in md
    assert "| differ | constant_ratio | 1 |" in md
    assert "- notes.txt: not Python: not a .py file or .ipynb notebook" in md   # all listed
    assert "without a filesystem sandbox" not in md
    stdout = capsys.readouterr().out
    assert "[2/9] b_mean.py (seed): differ (averaged over the batch, W2), 0/10 points" \
        in stdout
    assert "not graded: notes.txt: not Python: not a .py file or .ipynb notebook" in stdout


def test_grade_sequential_and_refusals(tmp_path, capsys):
    folder = tmp_path / "two"
    folder.mkdir()
    shutil.copy(EXAMPLES / "correct_torch.py", folder / "ok.py")
    shutil.copy(EXAMPLES / "accumulated.py", folder / "acc.py")
    out = tmp_path / "g"
    assert main(["grade", str(folder), "--steps", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(zip(table["file"], table["status"], table["diagnosis"], strict=True)) == [
        ("acc.py", "differ", "accumulated"), ("ok.py", "agree", "agree")]
    capsys.readouterr()
    # existing output, a missing folder, a folder without .py files, a bad --out
    assert main(["grade", str(folder), "--out", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["grade", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no .py or .ipynb files and no folders" in capsys.readouterr().err
    assert main(["grade", str(folder), "--out", str(tmp_path / "x.csv")]) == 2
    assert "give the grade folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.csv").exists()


def slow_class(tmp_path: Path, seconds: float) -> Path:
    """Four correct submissions whose gradients() each sleeps ``seconds``."""
    folder = tmp_path / "subs"
    folder.mkdir()
    slow = EXAMPLES.joinpath("correct_torch.py").read_text(encoding="utf-8").replace(
        "def gradients(params, X, Y):", "import time\n\ndef gradients(params, X, Y):\n"
        f"    time.sleep({seconds})")
    for i in range(4):
        (folder / f"s{i}.py").write_text(slow, encoding="utf-8")
    return folder


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def test_worker_killed_midway(tmp_path):
    """A grading worker killed while it checks a submission (as the OOM killer would):
    the run goes on, the submission is tried again in a new worker, every row is there,
    exit 0 and no traceback."""
    import signal
    import subprocess
    import sys
    import time

    folder = slow_class(tmp_path, 0.5)
    out = tmp_path / "g"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "grade", str(folder),
                             "--steps", "2", "--jobs", "2", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        # a loky worker that has started a learner's process: kill it mid-check
        for worker in _children(proc.pid):
            if any("teaching.boundary.learner" in open(f"/proc/{c}/cmdline").read()
                   for c in _children(worker) if os.path.exists(f"/proc/{c}/cmdline")):
                os.kill(worker, signal.SIGKILL)
                killed = worker
                break
        time.sleep(0.05)
    _stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "no worker was seen checking a submission"
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(table["file"]) == [f"s{i}.py" for i in range(4)]
    assert set(table["status"]) <= {"agree", "grader_error"}, table
    assert (table["status"] == "agree").sum() >= 3, table


def test_interrupt_then_resume(tmp_path):
    """SIGTERM mid-grading: exit 130, the grade folder in place with the rows done and an
    INTERRUPTED file; `--resume` keeps those rows and grades the rest."""
    import signal
    import subprocess
    import sys

    folder = slow_class(tmp_path, 0.3)
    out = tmp_path / "g"
    cmd = [sys.executable, "-m", "experiments.cli", "grade", str(folder), "--steps", "2",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()                 # "[1/4] s0.py (seed): agree"
    assert first.startswith("[1/4] s0.py (seed): agree"), first
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (out / "INTERRUPTED").is_file()
    done = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert 1 <= len(done) < 4 and set(done["status"]) == {"agree"}
    assert "Interrupted" in (out / "grades.md").read_text(encoding="utf-8")
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    table = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(table["file"]) == [f"s{i}.py" for i in range(4)]
    assert set(table["status"]) == {"agree"}
    assert list(table["seconds"][:len(done)]) == list(done["seconds"])   # kept, not redone
    assert not (out / "INTERRUPTED").exists()


def test_grader_failure_is_not_the_learners(tmp_path, monkeypatch):
    """handgrad's own MemoryError while checking a file is a grader_error row."""
    from experiments.teaching.check import api

    def broken(*args, **kwargs):
        raise MemoryError("the grader ran out of memory")

    monkeypatch.setattr(api, "check_file", broken)
    folder = tmp_path / "subs"
    folder.mkdir()
    shutil.copy(EXAMPLES / "correct_torch.py", folder / "ok.py")
    assert main(["grade", str(folder), "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    row = pd.read_csv(tmp_path / "g" / "grades.csv", keep_default_na=False).iloc[0]
    assert row["status"] == "grader_error"
    assert "not the learner's fault" in row["message"] and "MemoryError" in row["message"]


@pytest.mark.slow
def test_the_first_row_is_timed_like_the_others(tmp_path):
    """``seconds`` is the submission's own time: in a fresh grading process the first check
    used to carry torch's and torch.optim.SGD's first loading (2.5 s against 0.33 s for
    the others, at --steps 2), so sorting by it pointed at whoever came first. Four copies
    of one correct file, one worker: the first may not take 3 times the slowest of the
    other three (a margin for the noise of a loaded machine; the loading made it 7.6)."""
    import subprocess
    import sys

    folder = tmp_path / "class"
    folder.mkdir()
    for i in range(4):
        shutil.copy(EXAMPLES / "correct_torch.py", folder / f"s{i}.py")
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "grade", str(folder),
                           "seed", "--steps", "2", "--jobs", "1", "--out",
                           str(tmp_path / "g")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seconds = pd.read_csv(tmp_path / "g" / "grades.csv")["seconds"].tolist()
    assert len(seconds) == 4
    assert seconds[0] < 3 * max(seconds[1:]), seconds


def test_grade_help_gives_the_steps_cap(capsys):
    """`grade --help` states --steps' real default, the cap ``GRADE_STEPS`` included (the
    parser's text is a literal: importing the grading module would slow every start)."""
    from experiments.teaching.grade.folder import GRADE_STEPS

    with pytest.raises(SystemExit):
        main(["grade", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"training steps (default: the config's, at most {GRADE_STEPS})" in text
    assert f"--steps defaults to the config's, at most {GRADE_STEPS}." in text
