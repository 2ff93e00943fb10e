"""Statuses that each mean one thing: what a check ends in when it does not agree or differ,
each with its exit code, as docs/check.md's table lists them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from experiments.teaching.boundary.learner import EXIT_CODES
from experiments.teaching.check.api import check_file

ROOT = Path(__file__).resolve().parents[1]
CORRECT = (ROOT / "examples" / "learners" / "correct_torch.py").read_text(encoding="utf-8")
BIAS_KEYS = ("import numpy as np\nCONVENTION = 'W1b1'\n\ndef gradients(params, X, Y):\n"
             "    return {'W1': np.zeros((3, 4)), 'W2': np.zeros((4, 1)), 'b1': np.zeros(4),"
             " 'b2': np.zeros(1)}\n")

CASES = {   # file -> (source, status, exit code, words in the message)
    "empty.py": ("", "not_a_submission", 2, "defines no function gradients(params, X, Y)"),
    "biases.py": (BIAS_KEYS, "wrong_assignment", 2,
                  "Your code returns W1, W2, b1, b2: written for a network with biases; "
                  "`seed` has none (bias = false)"),
    "syntax.py": ("def gradients(params, X, Y)\n    return {}\n", "import_error", 2,
                  "syntax.py:1: expected ':': def gradients(params, X, Y)"),
    "missing.py": ("import not_installed_xyz\n", "import_error", 2,
                   "missing.py:1: ModuleNotFoundError: No module named 'not_installed_xyz'"),
    "top.py": ("import numpy as np\nx = 1 / 0\n", "import_error", 2,
               "ZeroDivisionError: division by zero (at top.py, line 2: x = 1 / 0)"),
    "listed.py": ("def gradients(params, X, Y):\n    return [0]\n", "bad_output", 2,
                  "returned a list of 1"),
    "exits.py": ("import os\ndef gradients(params, X, Y):\n    os._exit(3)\n", "crashed", 4,
                 "exited with status 3"),
    "prints.py": ("for i in range(2000):\n    print('y' * 10000)\n", "output_limit", 4,
                  "the output limit: its output, and each file it writes, may hold at most "
                  "16 MiB"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_status_says_one_thing(tmp_path, name):
    source, status, code, words = CASES[name]
    (tmp_path / name).write_text(source, encoding="utf-8")
    r = check_file(tmp_path / name, "seed", steps=2, timeout=20, memory_mb=400, helpers=())
    assert (r.status, r.exit_code) == (status, code), r.message
    assert words in r.message, r.message
    assert str(tmp_path) not in r.message   # the learner's names, never the teacher's path


@pytest.mark.slow
def test_timeout_says_how_far_it_got(tmp_path):
    """gradients() hangs from its 8th call on: two calls at the initial point, then the
    training steps; the message counts the steps done, whatever the machine's speed."""
    slow = CORRECT.replace("def gradients(params, X, Y):", (
        "import time\nCALLS = []\n\ndef gradients(params, X, Y):\n"
        "    CALLS.append(1)\n    if len(CALLS) >= 8:\n        time.sleep(600)"))
    (tmp_path / "slow.py").write_text(slow, encoding="utf-8")
    r = check_file(tmp_path / "slow.py", "seed", steps=50, timeout=3, memory_mb=400,
                   helpers=())
    assert (r.status, r.exit_code) == ("timeout", 5), r.message
    m = re.search(r"the initial point agreed; it got through (\d+) of 50 training steps",
                  r.message)
    assert m is not None, r.message
    # calls 1-2: the initial point; call k + 3 is training step k + 1, so 7 calls -> 5 steps
    assert int(m.group(1)) == 5, r.message


def test_a_first_call_that_never_returns(tmp_path):
    """A loop in the very first call: the message says so (never "the initial point
    agreed": nothing was compared), check.md shows no empty table, and a grade's rubric
    gives no part a point, the update part included."""
    from experiments.teaching.check.report import explanation
    from experiments.teaching.grade import rubric as rubrics

    (tmp_path / "loop.py").write_text("def gradients(params, X, Y):\n    while True:\n"
                                      "        pass\n", encoding="utf-8")
    r = check_file(tmp_path / "loop.py", "seed", steps=5, timeout=2, memory_mb=400,
                   helpers=())
    assert (r.status, r.exit_code) == ("timeout", 5), r.message
    assert r.message.endswith("(stopped at the initial point: the first call of "
                              "gradients() did not finish)"), r.message
    text = explanation(r)
    assert "Empty DataFrame" not in text and "nothing to compare" in text
    parts = rubrics.score(r, rubrics.DEFAULT)
    assert [(p.name, p.score) for p in parts] == [
        ("gradients", 0.0), ("second_call", 0.0), ("training", 0.0), ("update", 0.0)]
    assert all("the first call of gradients() did not finish (timeout)" in p.output
               for p in parts)


def test_docs_table_lists_every_status_with_its_exit_code():
    """docs/check.md's status table against ``EXIT_CODES``: the same statuses, the same
    codes (grade-only statuses have no exit code)."""
    text = (ROOT / "docs" / "check.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\d+|—) \|", text, flags=re.MULTILINE)
    documented = {s: int(c) for s, c in rows if c != "—"}
    assert documented == {s: c for s, c in EXIT_CODES.items() if s != "interrupted"}
    assert {s for s, c in rows if c == "—"} == {"grader_error"}
