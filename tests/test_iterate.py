"""Iterating on a learner's file: a rerun of `handgrad check` replaces its own folder
without --force (the folder's marker names the file that made it), any other folder still
needs --force, and the verdict is printed before the folder is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.core.config import ConfigError
from experiments.teaching.check import check_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
FAST = ["--steps", "1", "--no-plots"]


def test_rerun_replaces_its_own_folder_only(tmp_path, capsys):
    mine = tmp_path / "mine.py"
    shutil.copy(EXAMPLES / "correct_w1b1.py", mine)
    other = tmp_path / "other.py"
    shutil.copy(EXAMPLES / "correct_w1b1.py", other)
    out = tmp_path / "checks" / "mine"
    assert main(["check", str(mine), *FAST, "--out", str(out)]) == 0
    marker = (out / ".handgrad").read_text(encoding="utf-8").splitlines()
    assert marker == ["handgrad check", f"source {json.dumps(str(mine.resolve()))}"]
    (out / "stale.txt").write_text("from the first check")
    capsys.readouterr()
    # the same file again, no --force: replaced
    assert main(["check", str(mine), *FAST, "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists() and (out / "check.md").is_file()
    # another file into that folder: refused, one line, the folder untouched
    (out / "stale.txt").write_text("kept")
    assert main(["check", str(other), *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"check folder {out} already exists; pass --force" in err
    assert (out / "stale.txt").read_text() == "kept"
    # ... and a run folder, or one whose marker names no file, too
    (out / ".handgrad").write_text("handgrad check\n")
    assert main(["check", str(mine), *FAST, "--out", str(out)]) == 2
    run = tmp_path / "run"
    run.mkdir()
    (run / ".handgrad").write_text(f"handgrad run\nsource {json.dumps(str(mine.resolve()))}\n")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        check_file(mine, "seed", steps=1, out=run, plots=False)


def test_verdict_printed_before_the_folder_is_written(tmp_path, capsys, monkeypatch):
    from experiments.teaching.check import report
    seen = []
    real = report.write_check

    def spy(result, out, **kw):
        seen.append((out.exists(), capsys.readouterr().out))
        return real(result, out, **kw)
    monkeypatch.setattr(report, "write_check", spy)
    out = tmp_path / "c"
    assert main(["check", str(EXAMPLES / "missing_factor_2.py"), *FAST, "--out",
                 str(out)]) == 1
    [(existed, printed)] = seen
    assert not existed
    assert "result: differ (exit 1)" in printed
    assert "check folder:" in capsys.readouterr().out     # the path last, once written


@pytest.mark.slow
def test_nothing_for_figures_is_imported_before_the_verdict(tmp_path):
    """In a fresh interpreter: when the verdict is printed, neither matplotlib nor seaborn
    has been imported (they are for the folder's figures, drawn after it; --no-plots only
    to keep the test short)."""
    code = "\n".join([
        "import sys",
        "from experiments.cli import main",
        "from experiments.teaching.check import report",
        "real = report.write_check",
        "def spy(*a, **k):",
        "    print('loaded:', sorted(m for m in ('matplotlib', 'seaborn') if m in sys.modules))",
        "    return real(*a, **k)",
        "report.write_check = spy",
        f"sys.exit(main(['check', {str(EXAMPLES / 'correct_w1b1.py')!r}, '--steps', '2', "
        f"'--no-plots', '--out', {str(tmp_path / 'c')!r}]))"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout
    assert (tmp_path / "c" / "check.md").is_file()                # written, after


def test_learner_started_before_torch_is_imported(tmp_path):
    """In a fresh interpreter: ``start_early`` checks the arguments and starts the learner's
    process without importing torch or pandas, and ``check_file`` checks with that very
    process (so it starts on the other core while torch is imported)."""
    out = tmp_path / "c"
    code = "\n".join([
        "import sys",
        "from experiments.teaching.check.early import start_early",
        f"early = start_early({str(EXAMPLES / 'correct_w1b1.py')!r}, 'seed', steps=1, "
        f"out={str(out)!r})",
        "print('before:', sorted(m for m in ('torch', 'pandas') if m in sys.modules))",
        "from experiments.teaching.check.api import check_file",
        "from experiments.teaching.boundary import process",
        "opened = []",
        "real = early.open",
        "def spy(*a, **k):",
        "    opened.append(real(*a, **k))",
        "    return opened[-1]",
        "early.open = spy",
        f"r = check_file({str(EXAMPLES / 'correct_w1b1.py')!r}, 'seed', steps=1, "
        f"out={str(out)!r}, plots=False, early=early)",
        "print('status:', r.status, r.convention)",
        "print('the early process:', opened[0] is early._learner, "
        "opened[0].proc.returncode is not None)"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "before: []" in proc.stdout
    assert "status: agree W1b1" in proc.stdout          # checked to the end, then closed
    assert "the early process: True True" in proc.stdout
    assert (out / "check.md").is_file()


def test_early_start_only_for_what_check_file_would_run(tmp_path, monkeypatch):
    from experiments.teaching.check import early as early_mod
    from experiments.teaching.check.early import own_helpers, start_early

    learner = EXAMPLES / "correct_w1b1.py"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "theirs.txt").write_text("not handgrad's")
    # refused arguments start nothing: check_file says what is wrong
    assert start_early(learner, "no-such-config") is None
    assert start_early(learner, "seed", steps=0) is None
    assert start_early(learner, "seed", timeout=-1) is None
    assert start_early(learner, "seed", out=taken) is None
    assert start_early(learner, "reference.py") is None   # a teacher's reference file
    monkeypatch.setattr(early_mod, "cores", lambda: 1)               # nothing to overlap
    assert start_early(learner, "seed") is None
    monkeypatch.undo()
    # asked for other limits: the early process is closed and a fresh one started
    early = start_early(learner, "seed", timeout=30.0)
    limits = dict(memory_mb=1024, helpers=own_helpers(learner), follow=True,
                  definitions_only=False)
    fresh = early.open(learner, timeout=20.0, **limits)
    try:
        assert fresh is not early._learner and early._learner.proc.returncode is not None
        assert fresh.proc.returncode is None and fresh.convention == "W1b1"
    finally:
        fresh.close()
    # a file that does not load: its LearnerError comes out of open, as from LearnerProcess
    bad = tmp_path / "bad.py"
    bad.write_text("print(training_data)\ndef gradients(params, X, Y):\n    return {}\n")
    early = start_early(bad, "seed")
    with pytest.raises(Exception, match="NameError: name 'training_data'"):
        early.open(bad, timeout=60.0, **{**limits, "helpers": own_helpers(bad)})
    early.close()                                     # handed over: nothing more to close
