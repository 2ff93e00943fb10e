"""``handgrad check``: a learner's own backprop against autograd, diagnosed.

Every shipped example (examples/learners/) through the CLI with its expected diagnosis
kind and first parameter; every exit code; both conventions; the learner's process
surviving crashes, hangs and memory hogs; the Python API. Runs are a few steps long.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.core.schema import CHECK_COLUMNS, GRADE_COLUMNS
from experiments.teaching.check import check_file, check_function

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
FAST = ["--steps", "2", "--no-plots"]
F64 = 1e-12   # the fixed float64 bound beside the derived rounding tolerance
GOOD = (EXAMPLES / "correct_torch.py").read_text(encoding="utf-8")


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def check(capsys, *args) -> tuple[int, str, str]:
    code = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("handgrad: error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- the shipped examples --------------------------------------------------------------------

EXPECTED = [  # file, config, overrides, kind, first parameter, words of the diagnosis
    ("sigma_prime_of_activation.py", "seed", [], "other", "W2",
     "σ′ taken of the activation: σ(a)(1 − σ(a))"),
    ("mean_over_batch.py", "seed", [], "constant_ratio", "W2",
     "your gradients are 1/N of autograd's on every parameter (c = 0.25, N = 4): you "
     "averaged over the batch where this loss sums"),
    ("missing_factor_2.py", "seed", ["--set", "loss=mse"], "constant_ratio",
     "layers.1.weight", "½ of autograd's on every parameter (c = 0.5): the factor 2 of "
                        "∂(A − Y)²/∂A = 2(A − Y) is missing"),
    ("transposed_weight_gradient.py", "seed", [], "transposed", "W2",
     "your W2 gradient is the transpose of autograd's (shape (1, 4) where W2 is (4, 1))"),
    ("bias_mean.py", "xor", [], "constant_ratio", "layers.1.bias",
     "your layers.0.bias and layers.1.bias gradients are 1/N of autograd's (c = 0.25, N = 4)"
     " while the others agree: you averaged the bias gradient over the batch"),
    ("accumulated.py", "seed", [], "accumulated", "layers.1.weight",
     "They are accumulated across calls, never reset"),
]


@pytest.mark.parametrize("name,config,overrides,kind,first,words", EXPECTED,
                         ids=[e[0] for e in EXPECTED])
def test_example_mistakes_are_diagnosed(tmp_path, capsys, name, config, overrides, kind,
                                        first, words):
    out = tmp_path / "check"
    code, stdout, _ = check(capsys, EXAMPLES / name, config, *overrides, *FAST, "--out", out)
    assert code == 1, stdout
    assert f"diagnosis ({kind}), first parameter that differs: {first}\n" in stdout
    assert words in stdout
    assert ">>> yours:" in stdout or "this is the second" in stdout   # the entry explained
    initial = pd.read_csv(out / "initial.csv")
    assert list(initial.columns) == ["call", "param", "key", "rel_err", "rel_tol",
                                     "fd_rel_err", "max_abs_diff", "ratio", "verdict", "kind"]
    differ = initial[initial["verdict"] == "differ"]
    assert first in set(differ["param"]) and kind in set(differ["kind"])
    assert differ["call"].iloc[0] == ("gradients, 2nd call" if kind == "accumulated"
                                      else "gradients")   # differ at step 0 (its 2nd call)


def test_chain_rule_of_the_worst_entry_is_explains_text(capsys, tmp_path):
    """The printed chain rule is handgrad explain's, for the worst entry, next to theirs."""
    from experiments.teaching.explain import explain, render
    _, stdout, _ = check(capsys, EXAMPLES / "mean_over_batch.py", *FAST, "--out", tmp_path / "c")
    assert ("The chain rule for W2[3,0], as `handgrad explain --param 'W2[3,0]'` prints it"
            in stdout)
    expl = render(explain("seed", param="W2[3,0]"), "text")
    assert "W2[3,0] = layers.1.weight[0,3]" in expl
    term = next(ln for ln in expl.splitlines() if ln.strip().startswith("Σ_n = "))
    assert term in stdout                                       # Σ_n = 0.155968616
    assert ">>> yours: 0.038992154   (expected 0.155968616; yours/autograd = 0.25)" in stdout


@pytest.mark.parametrize("name,config", [("correct_w1b1.py", "seed"),
                                         ("correct_torch.py", "seed"),
                                         ("correct_torch.py", "xor"),
                                         ("correct_torch.py", "worked-2-2-2"),
                                         ("correct_softmax.py", "iris")])
def test_correct_examples_agree(tmp_path, capsys, name, config):
    out = tmp_path / "check"
    code, stdout, err = check(capsys, EXAMPLES / name, config, "--steps", "20", "--no-plots",
                              "--out", out)
    assert code == 0, stdout + err
    assert "result: agree (exit 0)" in stdout
    initial = pd.read_csv(out / "initial.csv")
    grads = initial[initial["call"] != "update"]
    assert (grads["rel_err"] <= F64).all() and (grads["rel_err"] <= grads["rel_tol"]).all()
    summary = pd.read_csv(out / "training" / "summary.csv")
    assert (summary["rel_err"] <= F64).all() and (summary["verdict"] != "differ").all()
    report = (out / "training" / "report.md").read_text(encoding="utf-8")
    assert f"compared side `{name}`" in report
    assert "## Diagnosis" in report and (out / "check.md").is_file()


def test_named_experiments_no_false_alarms():
    """The loop-by-sample, column-vector learner and the vectorised ones agree for longer
    runs on the named experiments (in-process: no process start per run; iris is above,
    and the full-length runs of every named experiment are in docs/check.md)."""
    from experiments.teaching.boundary.learner import load_file
    from experiments.teaching.check.api import resolve_config, run_check
    for name, config, steps in [("correct_w1b1.py", "seed", 150), ("correct_torch.py", "xor", 150),
                                ("correct_torch.py", "worked-2-2-2", 150)]:
        r = run_check(load_file(EXAMPLES / name), resolve_config(config, steps=steps))
        assert r.agree, r.explanation
        assert r.worst_rel_err <= F64 and r.worst_ratio <= 1, (name, config, r.message)


# -- conventions ------------------------------------------------------------------------------

W1B1_BIAS = """
    import numpy as np
    CONVENTION = "W1b1"
    def gradients(params, X, Y):
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        h = 1 / (1 + np.exp(-(X @ W1 + b1)))
        out = 1 / (1 + np.exp(-(h @ W2 + b2)))
        d2 = (out - Y) * out * (1 - out)
        d1 = (d2 @ W2.T) * h * (1 - h)
        return {"W1": X.T @ d1, "b1": d1.sum(0), "W2": h.T @ d2, "b2": d2.sum(0)}
"""


def test_w1b1_with_biases_agrees(tmp_path, capsys):
    path = write(tmp_path, "w1b1_bias.py", W1B1_BIAS)
    code, stdout, _ = check(capsys, path, "xor", *FAST, "--out", tmp_path / "c")
    assert code == 0, stdout
    assert "(convention W1b1)" in stdout and "\n   b2 " in stdout


def test_square_transpose_same_shape(tmp_path, capsys):
    """worked-2-2-2: square weights, so a transposed gradient has the right shape."""
    path = write(tmp_path, "square.py", """
        import numpy as np
        def gradients(params, X, Y):
            W0, b0 = params["layers.0.weight"], params["layers.0.bias"]
            W1, b1 = params["layers.1.weight"], params["layers.1.bias"]
            h = 1 / (1 + np.exp(-(X @ W0.T + b0)))
            A = 1 / (1 + np.exp(-(h @ W1.T + b1)))
            d1 = (A - Y) * A * (1 - A)
            d0 = (d1 @ W1) * h * (1 - h)
            return {"layers.0.weight": d0.T @ X, "layers.1.weight": h.T @ d1}
    """)
    code, stdout, _ = check(capsys, path, "worked-2-2-2", *FAST, "--out", tmp_path / "c")
    assert code == 1
    assert "diagnosis (transposed), first parameter that differs: layers.1.weight" in stdout
    assert "layers.1.weight is square, so the shape could not show it" in stdout


def test_wrong_convention_names_the_fix(tmp_path, capsys):
    """Reading W1 from torch-convention params raises (exit 4); returning W1b1 names is bad
    output (exit 2): both messages say which CONVENTION line fixes it."""
    path = write(tmp_path, "no_convention.py", W1B1_BIAS.replace('CONVENTION = "W1b1"', ""))
    code, _, err = check(capsys, path, "xor", *FAST, "--out", tmp_path / "c")
    assert code == 4
    assert "KeyError: 'W1' (params is in the torch convention" in err
    assert 'put CONVENTION = "W1b1" at the top of the file' in err
    path = write(tmp_path, "renamed.py", GOOD.replace("return grads", """\
    names = {"layers.0.weight": "W1", "layers.0.bias": "b1", "layers.1.weight": "W2",
             "layers.1.bias": "b2"}
    return {names[k]: g.T if g.ndim == 2 else g for k, g in grads.items()}"""))
    code, _, err = check(capsys, path, "xor", *FAST, "--out", tmp_path / "d")
    assert code == 2
    line = one_line(err)
    assert "expected layers.0.weight (4, 2), layers.0.bias (4,)" in line
    assert 'put CONVENTION = "W1b1" at the top of the file' in line
    assert not (tmp_path / "d").exists()


# -- the learner's update -------------------------------------------------------------------

UPDATE = """
    import numpy as np
    def gradients(params, X, Y):
        W0, W1 = params["layers.0.weight"], params["layers.1.weight"]
        a1 = 1 / (1 + np.exp(-(X @ W0.T)))
        A = 1 / (1 + np.exp(-(a1 @ W1.T)))
        d1 = (A - Y) * A * (1 - A)
        d0 = (d1 @ W1) * a1 * (1 - a1)
        return {"layers.0.weight": d0.T @ X, "layers.1.weight": d1.T @ a1}
    def update(params, grads, lr):
        return {k: params[k] SIGN lr * grads[k] for k in params}
"""


def test_update_checked_against_sgd(tmp_path, capsys):
    good = write(tmp_path, "good.py", UPDATE.replace("SIGN", "-"))
    code, stdout, _ = check(capsys, good, *FAST, "--out", tmp_path / "g")
    assert code == 0
    rows = pd.read_csv(tmp_path / "g" / "initial.csv").query("call == 'update'")
    assert len(rows) == 2 and (rows["rel_err"] <= F64).all()
    bad = write(tmp_path, "uphill.py", UPDATE.replace("SIGN", "+"))
    code, stdout, _ = check(capsys, bad, *FAST, "--out", tmp_path / "b")
    assert code == 1
    assert "diagnosis (update), first parameter that differs: layers.1.weight" in stdout
    assert "your update of layers.0.weight and layers.1.weight moves uphill" in stdout


def test_update_refused_with_momentum(tmp_path, capsys):
    good = write(tmp_path, "good.py", UPDATE.replace("SIGN", "-"))
    code, _, err = check(capsys, good, "--set", "momentum=0.9", *FAST, "--out", tmp_path / "c")
    assert code == 2
    assert "checked against plain SGD only, and this config has momentum = 0.9" in one_line(err)


# -- bad input: exit 2, one line, nothing written ----------------------------------------------

BAD = [
    ("missing.py", None, "missing.py: no such file"),
    ("binary.py", b"\x00\x01\x02", "is not Python"),
    ("notes.txt", "x = 1\n", "is not a Python file"),
    ("syntax.py", "def gradients(params X, Y):\n    return {}\n",
     "syntax.py:1: invalid syntax"),
    ("imports.py", "import no_such_module_here\n",
     "imports.py:1: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("nofunc.py", "def gradient(params, X, Y):\n    return {}\n",
     "nofunc.py defines no function gradients(params, X, Y)"),
    ("signature.py", "def gradients(params, X):\n    return {}\n",
     "gradients(params, X) has the wrong signature; it must take 3 arguments"),
    ("returns_list.py", "def gradients(params, X, Y):\n    return [1, 2]\n",
     "gradients(params, X, Y) returned a list of 2; it must return a dict"),
    ("holds_none.py", "def gradients(params, X, Y):\n    return {k: None for k in params}\n",
     "gradients(params, X, Y)['layers.0.weight'] is None, not an array of numbers"),
    ("wrong_keys.py", "def gradients(params, X, Y):\n    return {'w': 0}\n",
     "returned the keys ['w'] (missing ['layers.0.weight', 'layers.1.weight']) (unexpected "
     "['w']); expected layers.0.weight (4, 3), layers.1.weight (1, 4)"),
    ("wrong_shape.py", "import numpy as np\ndef gradients(params, X, Y):\n"
                       "    return {k: np.zeros(3) for k in params}\n",
     "['layers.0.weight'] has shape (3,); expected (4, 3)"),
    ("nan.py", GOOD.replace("return grads", "grads['layers.1.weight'][0, 0] = float('nan')\n"
                                             "    return grads"),
     "['layers.1.weight'] holds NaN or inf in 1 of 4 entries"),
]


@pytest.mark.parametrize("name,content,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_nothing_written(tmp_path, capsys, name, content, words):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = check(capsys, path, *FAST, "--out", out)
    assert code == 2, stdout + err
    assert words in one_line(err)
    if name == "syntax.py":                     # the learner's own line
        assert one_line(err).endswith(": def gradients(params X, Y):")
    assert not out.exists() and stdout == ""


def test_bad_config_and_existing_out(tmp_path, capsys):
    code, _, err = check(capsys, EXAMPLES / "correct_torch.py", "nosuch", "--out", tmp_path / "a")
    assert code == 2 and "unknown experiment 'nosuch'" in one_line(err)
    (tmp_path / "b").mkdir()
    code, _, err = check(capsys, EXAMPLES / "correct_torch.py", "--out", tmp_path / "b")
    assert code == 2 and "already exists; pass --force" in one_line(err)


# -- the learner's code fails: exits 3, 4, 5 ----------------------------------------------------

def test_diverged_exit_3(tmp_path, capsys):
    path = write(tmp_path, "blows_up.py", GOOD.replace("    return grads", """\
    global CALLS
    CALLS = globals().get("CALLS", 0) + 1
    if CALLS > 2:   # agree at the initial point, then a step to infinity
        grads = {k: g * 1e308 * 1e308 for k, g in grads.items()}   # inf: non-finite
    return grads"""))
    code, stdout, err = check(capsys, path, "--steps", "5", "--no-plots", "--out", tmp_path / "c")
    assert code == 3, stdout + err
    assert "diverged at step 0: your side first" in stdout
    assert (tmp_path / "c" / "training" / "summary.csv").is_file()


def test_raised_shows_their_frames(tmp_path, capsys):
    path = write(tmp_path, "raises.py", """
        def helper(x):
            return x / 0

        def gradients(params, X, Y):
            return helper(1)
    """)
    code, stdout, err = check(capsys, path, *FAST, "--out", tmp_path / "c")
    assert code == 4
    assert f'File "{path}", line 6, in gradients' in stdout
    assert f'File "{path}", line 3, in helper' in stdout
    assert "ZeroDivisionError: division by zero" in stdout and "ZeroDivisionError" in err
    assert "experiments" not in stdout.split("Traceback")[1].split("result:")[0]
    assert (tmp_path / "c" / "check.md").is_file()


def test_header_of_a_file_that_did_not_load(tmp_path, capsys):
    # module-level code that fails: CONVENTION was never read, and the header says so in
    # words, not with a "?"
    path = write(tmp_path, "loads_badly.py", """
        CONVENTION = "W1b1"
        print(training_data)

        def gradients(params, X, Y):
            return {}
    """)
    # an import_error is bad input to the command line (one line, exit 2, nothing
    # written); the Python API's explanation carries the header
    code, _, err = check(capsys, path, *FAST, "--out", tmp_path / "c")
    assert code == 2 and "NameError: name 'training_data' is not defined" in err
    assert not (tmp_path / "c").exists()
    r = check_file(path, "seed", steps=2)
    assert (r.status, r.exit_code) == ("import_error", 2)
    head = r.explanation.splitlines()[0]
    assert head.startswith("handgrad check: loads_badly.py (convention not read: the file "
                           "did not load) against autograd on seed"), head
    assert "?" not in head


@pytest.mark.parametrize("body,words", [
    ("import os\ndef gradients(params, X, Y):\n    os._exit(3)\n",
     "died during gradients(params, X, Y): exited with status 3"),
    ("import ctypes\ndef gradients(params, X, Y):\n    return ctypes.string_at(0)\n",
     "killed by signal 11 (SIGSEGV"),
], ids=["os_exit", "segfault"])
def test_crash_exit_4(tmp_path, capsys, body, words):
    path = write(tmp_path, "crash.py", body)
    code, stdout, _ = check(capsys, path, *FAST, "--out", tmp_path / "c")
    assert code == 4
    assert words in stdout


def test_memory_hog_exit_4(tmp_path, capsys):
    path = write(tmp_path, "hog.py", """
        import numpy as np
        def gradients(params, X, Y):
            hoard = []
            while True:
                hoard.append(np.ones(20_000_000))
    """)
    code, stdout, _ = check(capsys, path, *FAST, "--memory", "400", "--out", tmp_path / "c")
    assert code == 4
    assert "MemoryError" in stdout and "at most 400 MiB" in stdout
    assert 'line 6, in gradients' in stdout


def test_infinite_loop_timeout_exit_5(tmp_path, capsys):
    import time
    path = write(tmp_path, "loop.py", "def gradients(params, X, Y):\n    while True:\n"
                                      "        pass\n")
    t0 = time.perf_counter()
    code, stdout, err = check(capsys, path, *FAST, "--timeout", "1", "--out", tmp_path / "c")
    assert code == 5
    assert time.perf_counter() - t0 < 20
    assert "ran past the time limit (--timeout 1 s" in stdout and "timeout" in err


# -- the Python API -------------------------------------------------------------------------------

def test_api_function_objects():
    ns: dict = {}
    exec((EXAMPLES / "correct_w1b1.py").read_text(encoding="utf-8"), ns)
    result = check_function(ns["gradients"], "seed", update=ns["update"], convention="W1b1",
                            steps=3)
    assert result.agree, result.explanation
    assert result.exit_code == 0 and result.worst_rel_err <= F64

    def halved(params, X, Y):
        return {k: v / 2 for k, v in ns["gradients"](params, X, Y).items()}
    result = check_function(halved, "seed", convention="W1b1", steps=3)
    assert not result.agree and result.kind == "constant_ratio"
    assert "your gradients are ½ of autograd's on every parameter" in result.explanation


def test_api_failures_are_results():
    def raises(params, X, Y):
        raise ValueError("not yet")
    r = check_function(raises, "seed", steps=2)
    assert (r.status, r.exit_code) == ("crashed", 4)
    assert "ValueError: not yet" in r.explanation and "in raises" in r.explanation
    r = check_function(lambda params: {}, "seed")
    assert (r.status, r.exit_code) == ("bad_output", 2) and "wrong signature" in r.message
    r = check_function(lambda p, X, Y: None, "seed", steps=2)
    assert (r.status, r.exit_code) == ("bad_output", 2)


def test_check_file_api(tmp_path):
    r = check_file(EXAMPLES / "mean_over_batch.py", "seed", steps=2, plots=False,
                   out=tmp_path / "c")
    assert (r.status, r.kind, r.first_param) == ("differ", "constant_ratio", "W2")
    assert math.isclose(r.worst_rel_err, 0.75, rel_tol=1e-12)
    assert r.initial.table["ratio"].tolist() == pytest.approx([0.25, 0.25], rel=1e-12)
    assert np.isfinite(r.worst_ratio) and r.worst_ratio > 1e12


def test_schema_columns():
    assert CHECK_COLUMNS == ["call", "param", "key", "rel_err", "rel_tol", "fd_rel_err",
                             "max_abs_diff", "ratio", "verdict", "kind"]
    assert GRADE_COLUMNS == ["student", "file", "config", "status", "score", "max_score",
                             "diagnosis", "mistake", "first_param", "worst_rel_err",
                             "worst_ratio", "seconds", "message", "flags", "sha256",
                             "grad_sha256"]


def test_layer_confined_and_named_mistake():
    """σ′ of the activation in the hidden layer only: the output layer agrees, the error
    enters at W1's delta (layer_confined), and the mistake is named."""
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def gradients(params, X, Y):
        W1, W2 = params["W1"], params["W2"]
        hidden = sigmoid(X @ W1)
        out = sigmoid(hidden @ W2)
        d2 = (out - Y) * out * (1 - out)
        d1 = (d2 @ W2.T) * sigmoid(hidden) * (1 - sigmoid(hidden))   # σ′(a), not a(1 − a)
        return {"W1": X.T @ d1, "W2": hidden.T @ d2}

    r = check_function(gradients, "seed", convention="W1b1", steps=2)
    assert (r.status, r.kind, r.first_param) == ("differ", "layer_confined", "W1")
    assert r.message.startswith("your gradients are exactly what backprop gives with σ′ "
                                "taken of the activation")
    assert r.message.endswith("at the hidden layers")
    assert ("W1 differs while the layers above agree: the mistake enters at W1's layer, in "
            "δ1 = (δ2 · W2ᵀ) ⊙ f′(z)") in r.explanation
    assert "W1[" in r.explanation and ">>> yours:" in r.explanation


def test_difference_found_in_training():
    """Right at the initial point (both calls), wrong from the third call on: the
    training's diagnosis speaks, in the learner's names."""
    ns: dict = {}
    exec(GOOD, ns)
    calls = []

    def gradients(params, X, Y):
        calls.append(1)
        g = ns["gradients"](params, X, Y)
        return g if len(calls) <= 2 else {k: 1.5 * v for k, v in g.items()}

    r = check_function(gradients, "seed", steps=3)
    assert (r.status, r.exit_code, r.kind, r.first_param) == (
        "differ", 1, "constant_ratio", "layers.1.weight")
    assert (r.initial.table["verdict"] != "differ").all()
    assert "your gradients are 1.5 times autograd's on every parameter" in r.message


def test_helper_module_next_to_the_file(tmp_path, capsys):
    """`handgrad check` copies the other .py files of the learner's folder into its working
    folder: a helper module imports; `grade` copies none (they are classmates')."""
    write(tmp_path, "mynet.py", GOOD)
    f = write(tmp_path, "main.py", "from mynet import gradients\n")
    assert main(["check", str(f), *FAST, "--out", str(tmp_path / "c")]) == 0
    assert "agree" in capsys.readouterr().out
    assert main(["grade", str(tmp_path), "--steps", "2", "--out",
                 str(tmp_path.parent / f"{tmp_path.name}-g")]) == 0
    table = pd.read_csv(tmp_path.parent / f"{tmp_path.name}-g" / "grades.csv",
                        keep_default_na=False).set_index("file")
    assert table.loc["mynet.py", "status"] == "agree"
    assert table.loc["main.py", "status"] == "import_error"
    assert "No module named 'mynet'" in table.loc["main.py", "message"]
