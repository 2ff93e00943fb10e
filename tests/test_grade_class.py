"""What a teacher gets back from ``handgrad grade``: points from a rubric, the mistake in
words, integrity flags, feedback.md, the class summary and Gradescope's results.json.

One small class is graded once (``graded``) with planted submissions: a correct file with
``update``, a correct file without, a copy of the first with its names changed, a
transposed W2 (partial credit), two different files that average over the batch (a named
slip), two different files with the same odd slip, σ′ of the activation, a torch autograd
user and a syntax error. An autograd user who hides it from the syntax tree is checked in
this process. Expected points are worked out by hand from the rubric below, never read
back from the code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.core.config import ConfigError
from experiments.teaching.check import check_file, check_function
from experiments.teaching.check.integrity import (
    autograd_uses,
    class_flags,
    code_fingerprint,
    parse_source,
    read_source,
)
from experiments.teaching.grade import rubric as rubrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "learners"

RUBRIC = """\
update_required = true
[points]
gradients = 6
second_call = 2
training = 1
update = 1
"""

TORCH_AUTOGRAD = """\
import torch
CONVENTION = "torch"
def gradients(params, X, Y):
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    a = torch.as_tensor(X)
    for k in sorted(ps):
        a = torch.sigmoid(a @ ps[k].T)
    loss = 0.5 * ((a - torch.as_tensor(Y)) ** 2).sum()
    loss.backward()
    return {k: p.grad.numpy() for k, p in ps.items()}
"""
# the same, with every autograd name built at run time: only the exact 0 error shows it
HIDDEN_AUTOGRAD = TORCH_AUTOGRAD.replace(
    "torch.tensor(v, requires_grad=True)",
    'getattr(torch.tensor(v), "requires" + "_grad_")()').replace(
    "loss.backward()", 'getattr(loss, "back" + "ward")()')
#: a mistake handgrad cannot name (hidden σ′ as a instead of a(1 − a)), written twice
ODD_SLIP = """\
import numpy as np
CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                                   # (N, 4)
    out = sigmoid(hidden @ W2)                                 # (N, 1)
    d2 = (out - Y) * out * (1 - out)                           # (N, 1)
    d1 = (d2 @ W2.T) * hidden                                  # MISTAKE: (1 - hidden) lost
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}
"""
ODD_SLIP_REWRITTEN = """\
import numpy as np
CONVENTION = "W1b1"

def gradients(params, X, Y):
    h = 1 / (1 + np.exp(-(X @ params["W1"])))
    o = 1 / (1 + np.exp(-(h @ params["W2"])))
    e2 = (o - Y) * o * (1 - o)
    gw2 = h.T @ e2
    e1 = (e2 @ params["W2"].T) * h
    return {"W2": gw2, "W1": X.T @ e1}
"""
MEAN_REWRITTEN = """\
import numpy as np
CONVENTION = "W1b1"

def gradients(params, X, Y):
    N = len(X)
    h = 1 / (1 + np.exp(-(X @ params["W1"])))
    o = 1 / (1 + np.exp(-(h @ params["W2"])))
    e2 = (o - Y) * o * (1 - o)
    e1 = (e2 @ params["W2"].T) * h * (1 - h)
    gw2 = h.T @ e2
    gw1 = X.T @ e1
    return {"W2": gw2 / N, "W1": gw1 / N}
"""


def renamed(text: str) -> str:
    """A copy with its names and comments changed (a classmate's 'own' version)."""
    for a, b in (("dW1", "grad_a"), ("dW2", "grad_b"), ("hidden", "h"), ("d1", "e1"),
                 ("d2", "e2"), ("sigmoid", "logistic")):
        text = text.replace(a, b)
    return "# my own work\n" + "\n".join(line.split("#")[0].rstrip()
                                         for line in text.splitlines()) + "\n"


#: file -> (status, score, mistake words, flags that must appear)
EXPECTED = {
    "alice.py": ("agree", 10, "", ["same_code: gina"]),
    # a named classic slip, from different code: equal digits, and no flag
    "bob.py": ("differ", 0, "averaged over the batch", []),
    "carol.py": ("differ", 0, "σ′ taken of the activation, at every layer", []),
    # W1 agrees (3 of 6 gradient points), then nothing more is reached
    "dan.py": ("differ", 3, "the W2 gradient transposed", []),
    "erin.py": ("differ", 0, "averaged over the batch", []),
    # an odd slip handgrad can only locate, from different code: same_mistake, both ways
    "kate.py": ("differ", 3, "a mistake entering at W1's layer (its δ)", ["same_mistake: liam"]),
    "liam.py": ("differ", 3, "a mistake entering at W1's layer (its δ)", ["same_mistake: kate"]),
    # correct, no update() where the rubric requires one: 10 − 1
    "frank.py": ("agree", 9, "", ["autograd: requires_grad= (line 4), .backward( (line 9)"]),
    "gina.py": ("agree", 10, "", ["same_code: alice"]),
    "hank.py": ("import_error", 0, "", []),
    # right gradients (both calls: 6 + 2), then update() returns None: the check stops
    "mia.py": ("bad_output", 8, "", []),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("class")
    subs = base / "submissions"
    subs.mkdir()
    good = (EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8")
    files = {"alice.py": good, "gina.py": renamed(good),
             "bob.py": (EXAMPLES / "mean_over_batch.py").read_text(encoding="utf-8"),
             "erin.py": MEAN_REWRITTEN,
             "carol.py": (EXAMPLES / "sigma_prime_of_activation.py").read_text("utf-8"),
             "dan.py": (EXAMPLES / "transposed_weight_gradient.py").read_text("utf-8"),
             "frank.py": TORCH_AUTOGRAD, "kate.py": ODD_SLIP, "liam.py": ODD_SLIP_REWRITTEN,
             "hank.py": "def gradients(params, X, Y)\n    return {}\n",
             "mia.py": (EXAMPLES / "update_returns_none.py").read_text(encoding="utf-8")}
    for name, text in files.items():
        (subs / name).write_text(text, encoding="utf-8")
    (base / "rubric.toml").write_text(RUBRIC, encoding="utf-8")
    out = base / "grades"
    assert main(["grade", str(subs), "seed", "--steps", "2", "--out", str(out), "--jobs", "1",
                 "--timeout", "20", "--rubric", str(base / "rubric.toml"),
                 "--format", "gradescope"]) == 0
    return out


def test_rows_scores_mistakes_flags(graded):
    table = pd.read_csv(graded / "grades.csv", keep_default_na=False).set_index("file")
    assert list(table.index) == sorted(EXPECTED)
    for file, (status, score, mistake, flags) in EXPECTED.items():
        row = table.loc[file]
        assert (row["status"], float(row["score"]), float(row["max_score"]), row["mistake"]) \
            == (status, score, 10.0, mistake), file
        for flag in flags:
            assert flag in row["flags"], (file, row["flags"])
    # a copy is flagged both ways and only as a copy; different code with the same wrong
    # numbers is same_mistake, not same_code; correct, original files carry no flag
    assert table.loc["bob.py", "flags"] == table.loc["erin.py", "flags"] == ""
    assert table.loc["bob.py", "grad_sha256"] == ""             # named: not compared
    assert "same_code" not in table.loc["kate.py", "flags"]
    assert table.loc["carol.py", "flags"] == table.loc["dan.py", "flags"] == ""
    assert "autograd" not in table.loc["alice.py", "flags"]
    # figures to 3 significant digits: 0.75 stays, 1.59e+13-like ratios are short
    assert float(table.loc["bob.py", "worst_rel_err"]) == 0.75
    text = pd.read_csv(graded / "grades.csv", dtype=str, keep_default_na=False)
    for col in ("score", "worst_rel_err", "worst_ratio", "seconds"):
        assert all(v == f"{float(v):.3g}" for v in text[col] if v != ""), col


def test_feedback_md(graded):
    text = (graded / "checks" / "dan" / "feedback.md").read_text(encoding="utf-8")
    assert text.startswith("# Feedback on dan.py: 3 of 10 points\n")
    assert "**What is right:** your W1 gradient agrees with autograd at the initial point." \
        in text
    assert "**Fix this first:** your W2 gradient is the transpose of autograd's" in text
    assert "The chain rule for W2[" in text and "∂E/∂w = Σ_n" in text and ">>> yours:" in text
    assert "- gradients: 3 of 6 (1 of 2 parameters agree" in text
    assert "same_" not in text and "autograd:" not in text        # flags are the teacher's
    assert len(text) < 2000                                       # pastes into a comment
    hank = (graded / "checks" / "hank" / "feedback.md").read_text(encoding="utf-8")
    assert "**Fix this first** (the file failed to load: import_error): " in hank \
        and "expected ':'" in hank
    mia = (graded / "checks" / "mia" / "feedback.md").read_text(encoding="utf-8")
    assert "- update: 0 of 1 (update() failed: bad_output)" in mia
    assert "- gradients: 6 of 6 (2 of 2 parameters agree" in mia
    frank = (graded / "checks" / "frank" / "feedback.md").read_text(encoding="utf-8")
    assert "- update: 0 of 1 (no update() defined (the rubric requires one))" in frank


def test_grades_md_and_class_page(graded):
    md = (graded / "grades.md").read_text(encoding="utf-8")
    assert "rubric rubric.toml (gradients 6, second call 2, training 1, update 1; 10 points; " \
        "update() required)" in md
    assert "config `seed` (sizes 3-4-1, sigmoid/sigmoid, loss half_sse" in md
    assert "2 training steps), --timeout 20 s" in md and "handgrad " in md
    assert "| averaged over the batch | 2 |" in md
    assert "| the W2 gradient transposed | 1 |" in md
    assert "| σ′ taken of the activation, at every layer | 1 |" in md
    assert "- frank.py: autograd: requires\\_grad= (line 4)" in md
    assert "2 of 11 with full points" in md         # alice, gina; frank lacks update()
    for png in ("mistakes.png", "scores.png"):
        assert (graded / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (graded / "report.html").read_text(encoding="utf-8")
    assert "@page { size: A4" in html and "data:image/png;base64," in html
    assert "averaged over the batch" in html
    # no network request: no external source, stylesheet or script
    assert 'src="http' not in html and "<link" not in html and "<script src" not in html
    assert "url(" not in html and "@import" not in html


# Gradescope's "Output format" (https://gradescope-autograders.readthedocs.io/en/latest/
# specs/): the top-level keys and tests[]' keys it documents, with their JSON types
GRADESCOPE_TOP = {"score": (int, float), "execution_time": (int, float), "output": str,
                  "output_format": str, "test_output_format": str, "test_name_format": str,
                  "visibility": str, "stdout_visibility": str, "extra_data": dict,
                  "tests": list, "leaderboard": list}
GRADESCOPE_TEST = {"score": (int, float), "max_score": (int, float), "status": str,
                   "name": str, "name_format": str, "number": str, "output": str,
                   "output_format": str, "tags": list, "visibility": str, "extra_data": dict}
GRADESCOPE_VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def validate_gradescope(data: dict) -> None:
    assert isinstance(data, dict)
    for key, value in data.items():
        assert key in GRADESCOPE_TOP, key
        assert isinstance(value, GRADESCOPE_TOP[key]) and not isinstance(value, bool), key
    assert "score" in data or all("score" in t for t in data.get("tests", []))
    for key in ("visibility", "stdout_visibility"):
        assert data.get(key, "visible") in GRADESCOPE_VISIBILITY
    for test in data.get("tests", []):
        for key, value in test.items():
            assert key in GRADESCOPE_TEST, key
            assert isinstance(value, GRADESCOPE_TEST[key]) and not isinstance(value, bool)
        assert test.get("status", "passed") in ("passed", "failed")
        assert test.get("visibility", "visible") in GRADESCOPE_VISIBILITY


def test_gradescope_results_json(graded):
    for slot in ("alice", "dan", "hank"):
        data = json.loads((graded / "checks" / slot / "results.json").read_text("utf-8"))
        validate_gradescope(data)
        assert [t["name"] for t in data["tests"]] == ["gradients", "second call", "training",
                                                      "update"]
        assert sum(t["max_score"] for t in data["tests"]) == 10
        assert data["score"] == sum(t["score"] for t in data["tests"])
    dan = json.loads((graded / "checks" / "dan" / "results.json").read_text("utf-8"))
    assert dan["score"] == 3 and dan["tests"][0]["status"] == "failed"
    assert dan["output"].startswith("# Feedback on dan.py: 3 of 10 points")


@pytest.mark.slow
def test_run_autograder_example(tmp_path):
    """examples/gradescope/run_autograder, with AUTOGRADER pointing at a folder laid out
    as Gradescope's /autograder."""
    (tmp_path / "submission").mkdir()
    (tmp_path / "source").mkdir()
    shutil.copy(EXAMPLES / "mean_over_batch.py", tmp_path / "submission" / "hw3.py")
    (tmp_path / "submission" / "notes.py").write_text("x = 1\n", encoding="utf-8")
    env = {**os.environ, "AUTOGRADER": str(tmp_path), "STEPS": "2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(ROOT / "examples" / "gradescope" / "run_autograder")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    validate_gradescope(data)
    assert data["score"] == 0 and "averaged over the batch" in data["output"]


@pytest.mark.parametrize("text, words", [
    ("[points\n", "not valid TOML"),
    ("[points]\ngradient = 4\n", "unknown part 'gradient'"),
    ("[points]\ntraining = -1\n", "points.training = -1; give a number >= 0"),
    ("[points]\ntraining = 'three'\n", "points.training = 'three'"),
    ("update_required = 1\n[points]\ntraining = 1\n", "update_required = 1; give true or"),
    ("[points]\ngradients = 0\n", "every part has 0 points"),
    ("bonus = 2\n", "unknown key 'bonus'"),
])
def test_malformed_rubric_one_line_exit_2_nothing_written(tmp_path, capsys, text, words):
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(EXAMPLES / "correct_torch.py", subs / "a.py")
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    assert main(["grade", str(subs), "--rubric", str(bad), "--out",
                 str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "bad.toml" in err, err
    assert not (tmp_path / "g").exists()


def test_default_rubric_is_documented():
    """docs/check.md shows the default rubric, and it parses to DEFAULT."""
    doc = (ROOT / "docs" / "check.md").read_text(encoding="utf-8")
    assert rubrics.DEFAULT_TEXT in doc
    assert rubrics.DEFAULT.points == {"gradients": 4.0, "second_call": 2.0, "training": 3.0,
                                      "update": 1.0}
    assert rubrics.DEFAULT.total == 10 and not rubrics.DEFAULT.update_required


# -- the syntax tree, read and never run -----------------------------------------------------

def test_autograd_read_from_the_syntax_tree():
    uses = autograd_uses(parse_source(b"import tensorflow as tf\nfrom jax import grad\n"
                                      b"import torch.func as tf2\n"
                                      b"def g(f):\n    with tf.GradientTape() as t:\n"
                                      b"        return grad(f), torch.autograd.grad(f)\n"))
    assert uses == ["jax.grad (line 2)", "torch.func (line 3)",
                    "tensorflow.GradientTape (line 5)", "torch.autograd.grad (line 6)"]
    # a hand-written network's own backward() is no autograd
    own = b"class Net:\n    def backward(self, d):\n        return d\nNet().backward(1)\n"
    assert autograd_uses(parse_source(own)) == []
    assert autograd_uses(parse_source(
        (EXAMPLES / "correct_torch.py").read_bytes())) == []


def test_same_code_ignores_names_comments_and_docstrings():
    a = parse_source(b'def f(x, y):\n    """Doc."""\n    z = x + y  # sum\n    return z * 2\n')
    b = parse_source(b"def g(p, q):\n    r = p + q\n\n    return r * 2\n")
    c = parse_source(b"def g(p, q):\n    r = p - q\n    return r * 2\n")
    assert code_fingerprint(a) == code_fingerprint(b) != code_fingerprint(c)
    assert code_fingerprint(c) != code_fingerprint(parse_source(b"def g(p, q):\n"
                                                                b"    r = p - q\n"
                                                                b"    return r * 3\n"))


@pytest.mark.parametrize("data", [
    b"x = " + b"-" * 200_000 + b"1",                  # deeper than the parser's stack
    b"x = " + b"(" * 5_000 + b")" * 5_000,            # too many nested parentheses
    b"x = " + b"+".join([b"1"] * 50_000),             # a deep left-leaning tree
    b"\xff\xfe\x00garbage",                            # not UTF-8
    b"x = 1\n" * 300_000,                              # larger than SOURCE_LIMIT
    b"def f(:\n",                                      # not Python
])
def test_hostile_sources_get_no_flags_and_no_crash(data):
    tree = parse_source(data)
    assert autograd_uses(tree) == [] and isinstance(code_fingerprint(tree), str)


def test_deep_but_parseable_tree_is_fingerprinted_without_recursion():
    """Nesting that ast.parse accepts but a recursive walk would overflow on."""
    tree = parse_source(b"x = " + b"[" * 190 + b"]" * 190 + b"\n")
    assert tree is not None and len(code_fingerprint(tree)) == 16


# -- check_file and check_function for Otter-Grader and nbgrader ------------------------------

def test_check_file_reads_convention_and_reports_the_file():
    r = check_file(EXAMPLES / "correct_w1b1.py", "seed", steps=2)
    assert (r.status, r.file, r.convention) == ("agree", "correct_w1b1.py", "W1b1")


STATEFUL = '''\
import numpy as np
CONVENTION = "W1b1"
CALLS = []          # module state: survives between tests run in one process


def gradients(params, X, Y):
    CALLS.append(1)
    sig = lambda z: 1 / (1 + np.exp(-z))
    h = sig(X @ params["W1"])
    o = sig(h @ params["W2"])
    d2 = (o - Y) * o * (1 - o)
    d1 = (d2 @ params["W2"].T) * h * (1 - h)
    scale = 1.0 if len(CALLS) <= 3 else 2.0      # wrong from the 4th call in this process
    return {"W1": scale * X.T @ d1, "W2": scale * h.T @ d2}
'''


def test_check_function_in_process_keeps_state_isolated_does_not(tmp_path, monkeypatch):
    (tmp_path / "stateful_hw.py").write_text(STATEFUL, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import stateful_hw  # the test's own file, trusted: imported as Otter's test would

    first = check_function(stateful_hw.gradients, "seed", convention="W1b1", steps=1)
    again = check_function(stateful_hw.gradients, "seed", convention="W1b1", steps=1)
    assert (first.status, again.status) == ("agree", "differ")   # the state carried over
    for _ in range(2):
        r = check_function(stateful_hw.gradients, "seed", steps=1, isolated=True, timeout=20)
        assert (r.status, r.file, r.convention) == ("agree", "stateful_hw.py", "W1b1")
    with pytest.raises(ConfigError, match=r"reads CONVENTION from stateful_hw\.py itself"):
        check_function(stateful_hw.gradients, "seed", convention="W1b1", isolated=True)
    with pytest.raises(ConfigError, match=r"not defined in a \.py file"):
        check_function(eval("lambda p, X, Y: p"), "seed", isolated=True)


def test_exact_zero_error_raises_the_autograd_flag():
    """Autograd hidden from the syntax tree (every name built at run time): its gradients
    are torch's own, bit for bit, and that alone raises the flag."""
    ns: dict = {}
    exec(HIDDEN_AUTOGRAD, ns)   # the test's own code, trusted
    r = check_function(ns["gradients"], "seed", steps=2)
    assert r.status == "agree" and r.worst_rel_err == 0.0
    tree = parse_source(HIDDEN_AUTOGRAD.encode())
    assert autograd_uses(tree) == []
    hand = check_function(_hand_written(), "seed", convention="W1b1", steps=2)
    assert hand.status == "agree" and hand.worst_rel_err > 0     # rounds differently
    rows = [{"file": "ivan.py", "status": r.status, "worst_rel_err": r.worst_rel_err},
            {"file": "amy.py", "status": hand.status, "worst_rel_err": hand.worst_rel_err}]
    assert class_flags(rows, {"ivan.py": tree, "amy.py": None}) == [
        "autograd: an error of exactly 0 on every entry", ""]


def _hand_written():
    ns: dict = {}
    exec((EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8"), ns)
    return ns["gradients"]


def test_a_notebook_is_read_cell_by_cell_without_running(tmp_path):
    """A notebook's code cells are read with nbformat, IPython's lines left out: the flags
    see the code a check runs."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# HW 3"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport torch"),
        nbformat.v4.new_code_cell("def gradients(params, X, Y):\n    loss.backward()\n")])
    path = tmp_path / "hw3.ipynb"
    nbformat.write(nb, path)
    assert autograd_uses(read_source(path)) == [".backward( (cell 3, line 2)"]
    # the magic line became `pass`, the cells joined in order
    assert code_fingerprint(parse_source(b"pass\nimport torch\ndef gradients(params, X, Y):"
                                         b"\n    loss.backward()\n")) \
        == code_fingerprint(read_source(path))


def test_autograd_run_in_the_learners_process_raises_the_flag(tmp_path):
    """The runtime half of the autograd flag: the learner's process counts torch's backward
    passes (``boundary.autograd_watch``), so autograd hidden from the syntax tree is named as
    having run — and torch used without autograd is not."""
    from experiments.teaching.check.integrity import RAN

    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ivan.py").write_text(HIDDEN_AUTOGRAD, encoding="utf-8")
    shutil.copy(EXAMPLES / "correct_torch_tensors.py", subs / "tess.py")   # no autograd
    ivan = check_file(subs / "ivan.py", "seed", steps=2, timeout=60)
    tess = check_file(subs / "tess.py", "seed", steps=2, timeout=60)
    # one backward pass per gradients() call: the initial point's two calls, the second
    # call, the training steps and the reversed-batch witness all call it; at least 3
    assert ivan.status == "agree" and ivan.autograd_runs >= 3
    assert tess.status == "agree" and tess.autograd_runs == 0
    out = tmp_path / "g"
    assert main(["grade", str(subs), "seed", "--steps", "2", "--out", str(out),
                 "--timeout", "60"]) == 0
    table = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("file")
    assert table.loc["ivan.py", "flags"] == \
        f"{RAN} ({ivan.autograd_runs} backward passes)"   # not the weaker exact-0 hint
    assert table.loc["tess.py", "flags"] == ""
    # --resume keeps the kept row's runtime flag (the learner's process is not rerun)
    assert main(["grade", str(subs), "seed", "--steps", "2", "--out", str(out),
                 "--timeout", "60", "--resume"]) == 0
    again = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("file")
    assert again.loc["ivan.py", "flags"] == table.loc["ivan.py", "flags"]


def test_the_watch_counts_every_route_to_the_backward_engine():
    """``autograd_watch`` in a fresh interpreter, as the learner's process installs it
    before the learner's code imports torch: .backward(), torch.autograd.grad and
    torch.func.grad each count; tensor arithmetic without autograd does not."""
    code = (
        "from experiments.teaching.boundary import autograd_watch as w\n"
        "w.install()\n"
        "import torch\n"
        "x = torch.ones(3) * 2; n0 = w.runs()\n"
        "p = torch.ones(3, requires_grad=True); (p * p).sum().backward(); n1 = w.runs()\n"
        "torch.autograd.grad((p ** 3).sum(), p); n2 = w.runs()\n"
        "torch.func.grad(lambda t: (t ** 2).sum())(torch.ones(2)); n3 = w.runs()\n"
        "print(n0, n1, n2, n3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "2", "3"]
