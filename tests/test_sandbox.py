"""A class of hostile submissions: none of them reaches the grader, a classmate or the teacher.

One folder holds a correct file, a classmate's file, and one file per attack a student may
try on ``handgrad grade`` (docs/check.md, "The learner's process"). The class is graded
once, with ``--jobs 2``, and for every attack four things are asserted:

1. the grader is unaffected: no payload ran in it (a payload would create ``PWNED``), no
   file of the teacher's or the classmate's changed, handgrad's own source is unchanged,
   and the other rows are right (the correct file and the classmate agree);
2. the row has the documented status, and its message says why;
3. no process of the learner's is left (every process whose working folder lies under
   this test's temporary folder is gone);
4. the grading ended within its time budget (each learner's --timeout, plus start-up).

Payloads that would need the sandbox skip, with the reason shown, where the kernel offers
no Landlock ABI >= 6 or no seccomp filter for this architecture; the data-only boundary
(pickle payloads, forged and oversized messages, deadlines) holds everywhere.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

import experiments
from experiments.cli import main
from experiments.teaching.boundary import sandbox

ROOT = Path(__file__).resolve().parents[1]
CORRECT = (ROOT / "examples" / "learners" / "correct_torch.py").read_text(encoding="utf-8")
SANDBOXED = sandbox.landlock_abi() >= 6 and platform.machine() in sandbox._ARCHES
NO_SANDBOX = (f"needs Landlock ABI >= 6 (this kernel: {sandbox.landlock_abi()}) and a seccomp "
              f"filter for {platform.machine()}")
TIMEOUT = 6          # --timeout of each learner, seconds


def _pwn(path) -> str:
    """Source of a class whose unpickling (in whoever loads it) creates ``path``."""
    return (f"class Pwn:\n    def __reduce__(self):\n"
            f"        return (open, ({str(path)!r}, 'w'))\n")


def attacks(teacher: Path, classmate: Path) -> dict[str, tuple[str, str, str, bool]]:
    """file name -> (source, status, words in the message, needs the sandbox)."""
    pwned = teacher / "PWNED"
    src = str(Path(experiments.__file__))
    return {
        # -- code across the boundary: pickle payloads are plain data or refused
        "str_key.py": (CORRECT + _pwn(pwned) + (
            "class Key(str):\n    def __reduce__(self):\n"
            "        return (open, (" + repr(str(pwned)) + ", 'w'))\n"
            "_g = gradients\n"
            "def gradients(params, X, Y):\n"
            "    return {Key(k): v for k, v in _g(params, X, Y).items()}\n"),
            "bad_output", "of type Key", False),
        "convention.py": (CORRECT + (
            "class C(str):\n    def __reduce__(self):\n"
            "        return (open, (" + repr(str(pwned)) + ", 'w'))\n"
            "CONVENTION = C('torch')\n"), "bad_output", "a plain string", False),
        "dtype_meta.py": (CORRECT + _pwn(pwned) + (
            "_g = gradients\n"
            "def gradients(params, X, Y):\n"
            "    t = np.dtype(np.float64, metadata={'x': Pwn()})\n"
            "    return {k: v.astype(t) for k, v in _g(params, X, Y).items()}\n"),
            "agree", "every parameter agrees", False),
        "ndarray_subclass.py": (CORRECT + _pwn(pwned) + (
            "class A(np.ndarray):\n    def __reduce__(self):\n"
            "        return Pwn().__reduce__()\n"
            "_g = gradients\n"
            "def gradients(params, X, Y):\n"
            "    return {k: v.view(A) for k, v in _g(params, X, Y).items()}\n"),
            "agree", "every parameter agrees", False),
        # -- forged, malformed, partial and oversized messages on the pipe
        "garbage.py": ("import os, sys\ndef gradients(params, X, Y):\n"
                       "    os.write(int(sys.argv[2]), b'\\x80\\x04garbage' * 100)\n"
                       "    return {}\n", "bad_output", "malformed answer", False),
        "forged.py": ("import os, sys, struct, json\ndef gradients(params, X, Y):\n"
                      "    h = json.dumps({'msg': ['ok', {'layers.0.weight': 'pickle'}],"
                      " 'arrays': []}).encode()\n"
                      "    os.write(int(sys.argv[2]), b'HGW1' + struct.pack('>I', len(h)) + h)\n"
                      "    import time; time.sleep(60)\n", "bad_output",
                      "not a dict of float arrays", False),
        "huge_header.py": ("import os, sys, struct\ndef gradients(params, X, Y):\n"
                           "    os.write(int(sys.argv[2]), b'HGW1' + struct.pack('>I', 2**31))\n"
                           "    import time; time.sleep(60)\n", "bad_output",
                           "over the limit", False),
        "partial.py": ("import os, sys, struct, time\ndef gradients(params, X, Y):\n"
                       "    os.write(int(sys.argv[2]), b'HGW1' + struct.pack('>I', 100) + b'{')\n"
                       "    time.sleep(600)\n", "timeout", "ran past the time limit", False),
        "huge_reply.py": ("import numpy as np\ndef gradients(params, X, Y):\n"
                          "    return {k: np.zeros(30_000_000) for k in params}\n",
                          "bad_output", "would take more than", False),
        "million_keys.py": ("import numpy as np\ndef gradients(params, X, Y):\n"
                            "    z = np.zeros(1)\n"
                            "    return {f'k{i}': z for i in range(1_000_000)}\n",
                            "bad_output", "with 1000000 keys", False),
        "long_message.py": ("def gradients(params, X, Y):\n"
                            "    raise ValueError('x' * (50 << 20))\n", "crashed",
                            "characters cut", False),
        "endless_print.py": ("def gradients(params, X, Y):\n    while True:\n"
                             "        print('y' * 10000)\n", "output_limit", "at most 16 MiB",
                             False),
        # -- the teacher's files, a classmate, handgrad's own source
        "write_teacher.py": (f"open({str(teacher / 'grades.csv')!r}, 'w').write('forged')\n"
                             + CORRECT, "import_error", "PermissionError", True),
        "read_classmate.py": (f"print(open({str(classmate)!r}).read())\n" + CORRECT,
                              "import_error", "PermissionError", True),
        "delete_classmate.py": (f"import os\nos.remove({str(classmate)!r})\n" + CORRECT,
                                "import_error", "PermissionError", True),
        "import_classmate.py": (f"import sys\nsys.path.insert(0, {str(classmate.parent)!r})\n"
                                f"import {classmate.stem}\n" + CORRECT, "import_error",
                                "No module named 'classmate'", True),
        "uses_json.py": ("import json\n" + CORRECT, "agree", "every parameter agrees", False),
        "patch_handgrad.py": (f"open({src!r}, 'a').write('\\nimport os\\n')\n" + CORRECT,
                              "import_error", "PermissionError", True),
        "environment.py": ("import os\nassert 'HANDGRAD_TEACHER_SECRET' not in os.environ, "
                           "'leaked'\nassert os.environ['HOME'] == os.getcwd()\n"
                           "raise RuntimeError('environment is clean')\n", "import_error",
                           "environment is clean", False),
        "network.py": ("import socket\nsocket.create_connection(('127.0.0.1', 22))\n",
                       "import_error", "PermissionError", True),
        "fill_disk.py": ("import os\nfor i in range(100):\n"
                         "    open(f'f{i}', 'wb').write(os.urandom(8 << 20))\n"
                         "import time; time.sleep(60)\n", "output_limit", "64 MiB", False),
        "symlink_out.py": (f"import os\nos.symlink({str(teacher / 'grades.csv')!r}, 'l')\n"
                           f"open('l', 'w').write('forged')\n" + CORRECT, "import_error",
                           "PermissionError", True),
        "hardlink_out.py": (f"import os\nos.link({str(teacher / 'grades.csv')!r}, 'h')\n"
                            + CORRECT, "import_error", "Error", True),
        "proc_mem.py": ("open(f'/proc/{__import__(\"os\").getppid()}/mem', 'wb')\n",
                        "import_error", "PermissionError", True),
        "exec_shell.py": ("import os\nos.execv('/bin/sh', ['sh', '-c', "
                          f"'sleep 600 & touch {pwned}'])\n", "crashed", "", True),
        "keyboard.py": ("def gradients(params, X, Y):\n    raise KeyboardInterrupt\n",
                        "crashed", "died", False),
        "stray_thread.py": ("import os, sys, threading, time\n"
                            "def spam():\n    while True:\n"
                            "        os.write(int(sys.argv[2]), b'HGW1\\x00\\x00\\x00\\x02[]')\n"
                            "        time.sleep(0.01)\n"
                            "threading.Thread(target=spam, daemon=True).start()\n" + CORRECT,
                            "bad_output", "malformed", False),
        "prlimit_parent.py": ("import os, resource\nresource.prlimit(os.getppid(), "
                              "resource.RLIMIT_CPU, (1, resource.RLIM_INFINITY))\n", "import_error",
                              "PermissionError", True),
        "renice_parent.py": ("import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\n",
                             "import_error", "PermissionError", True),
        "cmdline_parent.py": ("import os\nopen(f'/proc/{os.getppid()}/cmdline').read()\n",
                              "import_error", "PermissionError", True),
        "fallocate_log.py": ("import os\nos.posix_fallocate(1, 0, 200 << 20)\n", "import_error",
                             "Operation not permitted", True),
        "memfd.py": ("import os\nos.memfd_create('m')\n", "import_error", "PermissionError", True),
        "deleted_files.py": ("import os, time\nkeep = []\nfor i in range(6):\n"
                             "    f = open(f'd{i}', 'wb'); f.write(os.urandom(15 << 20))\n"
                             "    f.flush(); os.remove(f'd{i}'); keep.append(f)\n"
                             "time.sleep(60)\n", "output_limit", "the files it holds open", False),
        "pdeathsig.py": ("import ctypes\nif ctypes.CDLL(None).prctl(1, 0) == 0:\n"
                         "    raise RuntimeError('the parent-death signal was reset')\n"
                         "raise RuntimeError('pdeathsig kept')\n", "import_error", "pdeathsig kept",
                         True),
        "formula.py": ("class E(Exception):\n    pass\nE.__module__ = 'builtins'\n"
                       "E.__qualname__ = '=HYPERLINK(\"http://evil.example/\",\"feedback\")'\n"
                       "raise E()\n", "import_error", "'=HYPERLINK", False),
        "ansi.py": ("def gradients(params, X, Y):\n"
                    "    raise RuntimeError('\\x1b[2K\\x1b[1A\\rall agree [regrade](http://evil"
                    ".example/) <script>x</script>')\n", "crashed", "\\x1b[2K\\x1b[1A\\r",
                    False),
        # -- the grader's processes, and processes that outlive the check
        "kill_parent.py": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
                           "import_error", "PermissionError: [Errno 1] Operation not permitted "
                           "(the sandbox refused it", True),
        "term_parent.py": ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n",
                           "import_error", "PermissionError", True),
        "kill_group.py": ("import os, signal\nos.killpg(os.getpgid(os.getppid()), "
                          "signal.SIGKILL)\n", "import_error", "PermissionError", True),
        "kill_all.py": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", "import_error",
                        "PermissionError", True),
        "daemon.py": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                      "    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"
                      + CORRECT, "import_error", "PermissionError", True),
        "plain_fork.py": ("import os, time\nif os.fork() == 0:\n    time.sleep(600)\n"
                          + CORRECT, "import_error", "PermissionError", True),
        "fork_loop.py": ("import os\nwhile True:\n    os.fork()\n", "import_error",
                         "PermissionError", True),
        "subprocess_sh.py": ("import subprocess\nsubprocess.run(['sh', '-c', 'sleep 600 &'])\n"
                             + CORRECT, "import_error", "PermissionError", True),
    }


def _left(root: Path) -> list[int]:
    """Processes whose working folder lies under ``root``."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(str(root)):
                left.append(int(pid))
        except OSError:
            continue
    return left


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The hostile class, graded once: (table, folders, seconds)."""
    root = tmp_path_factory.mktemp("hostile")
    teacher, subs = root / "teacher", root / "subs"
    teacher.mkdir()
    subs.mkdir()
    (teacher / "grades.csv").write_text("the teacher's own\n", encoding="utf-8")
    (subs / "a_correct.py").write_text(CORRECT, encoding="utf-8")
    classmate = subs / "classmate.py"
    classmate.write_text(CORRECT, encoding="utf-8")
    (subs / "json.py").write_text("raise SystemExit('a classmate named json.py')\n",
                                  encoding="utf-8")
    # an attack that needs the sandbox is never run without it: kill(-1) from a teacher's
    # root process would end every process on the machine
    table = {name: a for name, a in attacks(teacher, classmate).items()
             if SANDBOXED or not a[3]}
    for name, (source, *_) in table.items():
        (subs / name).write_text(source, encoding="utf-8")
    src = Path(experiments.__file__)
    before = {p: p.read_bytes() for p in (src, classmate, teacher / "grades.csv")}
    old_tmp = tempfile.tempdir
    tempfile.tempdir = str(root)     # the learners' working folders, to find leftovers
    os.environ["HANDGRAD_TEACHER_SECRET"] = "hunter2"
    t0 = time.monotonic()
    try:
        code = main(["grade", str(subs), "seed", "--steps", "2", "--timeout", str(TIMEOUT),
                     "--memory", "700", "--jobs", "2", "--out", str(root / "out")])
    finally:
        tempfile.tempdir = old_tmp
        del os.environ["HANDGRAD_TEACHER_SECRET"]
    seconds = time.monotonic() - t0
    assert code == 0
    rows = pd.read_csv(root / "out" / "grades.csv", keep_default_na=False).set_index("file")
    return {"rows": rows, "root": root, "teacher": teacher, "before": before,
            "seconds": seconds, "attacks": table, "n": len(table) + 3}


def test_grader_unaffected(graded):
    assert not (graded["teacher"] / "PWNED").exists()          # no payload ran here
    for path, data in graded["before"].items():
        assert path.read_bytes() == data, f"{path} was changed"
    rows = graded["rows"]
    assert len(rows) == graded["n"]                            # every file has its row
    for ok in ("a_correct.py", "classmate.py"):
        assert rows.loc[ok, "status"] == "agree", rows.loc[ok, "message"]
    assert rows.loc["json.py", "status"] == "import_error"     # the classmate named json.py


def test_no_process_left(graded):
    assert _left(graded["root"]) == []


def test_within_budget(graded):
    # each learner at most --timeout of its own time plus its start (a few seconds); with
    # two at a time the whole class is bounded by half the sum, doubled for a loaded machine
    bound = graded["n"] * (TIMEOUT + 5)
    assert graded["seconds"] < bound, (graded["seconds"], bound)


@pytest.mark.parametrize("name", list(attacks(Path("/t"), Path("/s/classmate.py"))))
def test_attack_row(graded, name):
    if name not in graded["attacks"]:
        pytest.skip(NO_SANDBOX)
    _source, status, words, _needs_sandbox = graded["attacks"][name]
    row = graded["rows"].loc[name]
    assert row["status"] == status, (name, row["message"])
    assert words in row["message"], (name, row["message"])
    assert len(row["message"]) < 10_000                        # every message is capped


def test_learner_text_stays_inert(graded):
    """Escape sequences, markdown links and HTML from a learner's message reach no file
    as markup: grades.csv and grades.md hold them escaped, report.html links nothing."""
    out = graded["root"] / "out"
    csv = (out / "grades.csv").read_text(encoding="utf-8")
    md = (out / "grades.md").read_text(encoding="utf-8")
    assert "\x1b" not in csv and "\x1b" not in md and "\r" not in csv
    assert "\\[regrade\\](http://evil.example/) \\<script\\>" in md
    assert "'=HYPERLINK" in csv
    page = (out / "checks" / "ansi" / "report.html").read_text(encoding="utf-8")
    assert "<script>x" not in page and "javascript:" not in page


def test_check_folders_stay_small(graded):
    checks = graded["root"] / "out" / "checks"
    size = sum(p.stat().st_size for p in checks.rglob("*") if p.is_file())
    assert size < 20 << 20, size      # the 50 MiB message and the endless print are capped
    assert (checks / "long_message").is_dir()
    printed = (checks / "endless_print" / "learner_output.txt").read_text(encoding="utf-8")
    assert printed.startswith("[... ") and "the last 64 KiB of the output are kept" in printed


def test_huge_reply_never_read(tmp_path):
    """The parent refuses a 700 MB reply from its size before reading it: `handgrad check`
    stays far below the reply's size (maximum resident set of the whole command)."""
    learner = tmp_path / "huge.py"
    learner.write_text("import numpy as np\ndef gradients(params, X, Y):\n"
                       "    return {k: np.zeros(90_000_000) for k in params}\n",
                       encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "check", str(learner),
                             "--steps", "1", "--memory", "2500", "--out",
                             str(tmp_path / "c")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    assert os.waitstatus_to_exitcode(status) == 2, err
    assert "would take more than" in err
    assert usage.ru_maxrss < 900 << 10, usage.ru_maxrss        # KiB: < 900 MB, not 1.4 GB+


@pytest.mark.parametrize("args, words", [
    (["--timeout", "inf"], "--timeout inf"),
    (["--timeout", "0"], "--timeout 0.0"),
    (["--memory", "0"], "--memory 0"),
    (["--memory", "1e308"], "invalid int value"),
])
def test_limits_range_checked(tmp_path, capsys, args, words):
    f = tmp_path / "ok.py"
    f.write_text(CORRECT, encoding="utf-8")
    try:
        code = main(["check", str(f), *args, "--out", str(tmp_path / "c")])
    except SystemExit as stop:    # argparse's own errors leave through its exit()
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "c").exists()


def test_teacher_files_safe(tmp_path, capsys):
    """``--out`` on or around the submissions folder, and ``--force`` over a folder
    handgrad did not write, are refused before any grading; nothing is touched."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.py").write_text(CORRECT, encoding="utf-8")
    (subs / "report.md").write_text("mine\n", encoding="utf-8")
    (subs / "marks.csv").write_text("mine\n", encoding="utf-8")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for out, words in [(subs, "is the submissions folder"),
                       (subs / "grades", "lies inside the submissions folder"),
                       (tmp_path, "holds the submissions folder"),
                       (tmp_path / "subs.csv", "give the grade folder"),
                       (mine, "handgrad did not write")]:
        assert main(["grade", str(subs), "--out", str(out), "--force"]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_force_and_resume_need_own_files(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(ROOT / "examples" / "learners" / "correct_torch.py", subs / "a.py")
    shutil.copy(ROOT / "examples" / "learners" / "accumulated.py", subs / "b.py")
    out = tmp_path / "g"
    assert main(["grade", str(subs), "--steps", "2", "--out", str(out)]) == 0
    first = pd.read_csv(out / "grades.csv", keep_default_na=False)
    # resume keeps the unchanged file's row and grades the changed one again
    (subs / "b.py").write_text(CORRECT, encoding="utf-8")
    assert main(["grade", str(subs), "--steps", "2", "--out", str(out), "--resume"]) == 0
    second = pd.read_csv(out / "grades.csv", keep_default_na=False)
    assert list(second["status"]) == ["agree", "agree"]
    assert second.loc[0, "seconds"] == first.loc[0, "seconds"]   # kept, not re-graded
    assert "1 rows were kept" in (out / "grades.md").read_text(encoding="utf-8")
    assert (out / "checks" / "a" / "check.md").is_file()
    # resuming with other settings would keep rows graded under the old ones: refused
    capsys.readouterr()
    assert main(["grade", str(subs), "--steps", "2", "--out", str(out), "--resume",
                 "--set", "activation=tanh"]) == 2
    assert "was graded with other settings (configs changed)" in capsys.readouterr().err
    # a file of the teacher's inside the grade folder: --force refuses to replace it
    (out / "teacher_notes.txt").write_text("mine\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["grade", str(subs), "--steps", "2", "--out", str(out), "--force"]) == 2
    assert "teacher_notes.txt" in capsys.readouterr().err
    assert (out / "teacher_notes.txt").read_text(encoding="utf-8") == "mine\n"


def test_odd_names_each_get_a_row_or_a_reason(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "UPPER.PY").write_text(CORRECT, encoding="utf-8")
    (subs / ".handgrad.py").write_text(CORRECT, encoding="utf-8")
    (subs / "bom.py").write_bytes(b"\xef\xbb\xbf" + CORRECT.encode())
    (subs / "new\nline.py").write_text(CORRECT, encoding="utf-8")
    os.mkfifo(subs / "fifo.py")
    (subs / "null.py").symlink_to("/dev/null")
    (subs / "nb.ipynb").write_text("{}", encoding="utf-8")      # a notebook: graded
    (subs / "student2").mkdir()                                # a student's empty folder
    assert main(["grade", str(subs), "--steps", "2", "--out", str(tmp_path / "g")]) == 0
    rows = pd.read_csv(tmp_path / "g" / "grades.csv", keep_default_na=False)
    assert sorted(zip(rows["file"], rows["status"], strict=True)) == [
        (".handgrad.py", "agree"), ("UPPER.PY", "agree"), ("bom.py", "agree"),
        ("nb.ipynb", "not_a_submission"), ("new\nline.py", "agree"),
        ("student2/", "not_a_submission")]
    assert "is not a notebook nbformat can read" in rows.set_index("file").loc[
        "nb.ipynb", "message"]
    skipped = pd.read_csv(tmp_path / "g" / "not_graded.csv", keep_default_na=False)
    why = dict(zip(skipped["name"], skipped["why"], strict=True))
    assert set(why) == {"fifo.py", "null.py"}
    assert why["fifo.py"].startswith("a FIFO") and why["null.py"].startswith("a symbolic")
    out = capsys.readouterr().out
    assert "new\\nline.py (seed): agree" in out                 # one line, escaped
    assert "not graded: fifo.py: a FIFO, not a regular file" in out
    checks = {p.name for p in (tmp_path / "g" / "checks").iterdir()}
    # one check folder per row, none clashing with the marker
    assert checks == {"handgrad", "UPPER", "bom", "nb", "new_line", "student2"}
    # (the unreadable notebook's and the empty folder's hold their feedback alone: nothing
    # could be loaded)
    for slot in ("nb", "student2"):
        assert {p.name for p in (tmp_path / "g" / "checks" / slot).iterdir()} == {"feedback.md"}


def test_missing_layers_are_named(tmp_path):
    """On a kernel without Landlock the other layers still apply, and what is missing is
    said in one phrase (a sacrificial process confines itself with Landlock switched off)."""
    code = ("import os, sys; from experiments.teaching.boundary import sandbox as s; "
            "s.landlock_abi = lambda: 0; print(s.confine(sys.argv[1])); "
            "import os\ntry:\n    os.fork(); print('forked')\nexcept PermissionError:\n"
            "    print('no fork')")
    if not SANDBOXED:
        pytest.skip(NO_SANDBOX)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert "the kernel offers no Landlock" in done.stdout, done.stderr
    assert "no fork" in done.stdout


def test_grades_md_says_when_the_sandbox_was_missing():
    from experiments.core.config import load_config
    from experiments.teaching.grade.report import UNSANDBOXED, grades_markdown

    table = pd.DataFrame([{"file": "a.py", "status": "agree", "diagnosis": "agree",
                           "message": "fine", "sha256": "x"}])
    settings = {"config": load_config("seed"), "steps": 2, "timeout": 1.0, "memory_mb": 512,
                "jobs": 1, "resumed": 0, "interrupted": False,
                "sandbox_missing": ["the kernel offers no Landlock"]}
    md = grades_markdown(table, [], Path("subs"), settings)
    assert f"{UNSANDBOXED}the kernel offers no Landlock" in md
    assert UNSANDBOXED not in grades_markdown(table, [], Path("subs"),
                                              {**settings, "sandbox_missing": []})


def test_a_file_swapped_for_a_link_is_not_read(tmp_path):
    """grade reads a submission without following a link: a file replaced by a link to a
    root-only file between discovery and its check is refused, not read."""
    from experiments.teaching.boundary.learner import BadLearner
    from experiments.teaching.boundary.process import LearnerProcess

    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n", encoding="utf-8")
    link = tmp_path / "z_mine.py"
    link.symlink_to(secret)
    with pytest.raises(BadLearner, match="is a symbolic link") as err:
        LearnerProcess(link, follow=False)
    assert "hash" not in str(err.value)
