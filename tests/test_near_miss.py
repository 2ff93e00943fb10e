"""The catalogue of examples/learners/: every mistake class named in the learner's words.

Each file of ``CATALOGUE`` is checked through the CLI, as a learner runs it, and the
diagnosis must name its mistake — a near miss as a near miss (float32, finite differences,
all zeros, swapped names, relu′ at 0), a constant with one cause, a shape or type slip
with its one-line fix — and no correct style may get anything but agree. Beside the files,
the same recognisers on mistakes written here (other networks, other conventions), so
that they are built for the mistake and not for one example. docs/check.md shows the
table.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.teaching.check import check_function
from experiments.teaching.check.side import Convention

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
FAST = ["--steps", "2", "--no-plots"]
RELU = ["--set", "activation=relu", "--set", f"init={EXAMPLES / 'relu_kink_init.json'}"]

CATALOGUE = [  # file, config and options, exit code, diagnosis kind ("" = none), words
    ("float32_arrays.py", ["seed"], 1, "float32",
     "your arrays are float32: the maths agrees to float32 precision (rel_err 9e-08); use "
     "float64, or run with `--set dtype=float32`"),
    ("numerical_central.py", ["seed"], 1, "numerical",
     "your gradients look numerical: errors of about 2e-12 everywhere, the size a central "
     "difference (E(w + h) − E(w − h))/2h leaves; a difference quotient is a test of a "
     "gradient, not a gradient: derive ∂E/∂w with backprop"),
    ("numerical_forward.py", ["seed"], 1, "numerical",
     "your gradients look numerical: errors of about 2e-07 everywhere, proportional to h as "
     "a forward difference (E(w + h) − E(w))/h leaves (h ≈ 1e-04)"),
    ("lr_in_gradients.py", ["seed", "--set", "lr=2"], 1, "constant_ratio",
     "your gradients are 2 times autograd's on every parameter (c = 2): you returned "
     "lr·∂E/∂w (lr = 2): gradients() returns the derivative, update() applies lr"),
    ("swapped_weights.py", ["worked-2-2-2"], 1, "swapped",
     "your W1 and W2 are swapped: the gradient you return as W1 is autograd's ∂E/∂W2, and "
     "the one you return as W2 is ∂E/∂W1"),
    ("swapped_weights.py", ["seed"], 2, "",
     "your W1 and W2 are swapped — W1 has W2's shape (4, 1) and W2 has W1's (3, 4)"),
    ("zero_gradient.py", ["seed"], 1, "zero",
     "your W1 gradient is all zeros, where autograd's is not: an array allocated "
     "(np.zeros_like) and never filled in"),
    ("relu_kink.py", ["seed", *RELU], 1, "relu_kink",
     "relu′ at exactly z = 0: your code takes 1, autograd takes 0 (2 entries of z are "
     "exactly 0 here)"),
    ("sign_and_factor_2.py", ["seed"], 1, "constant_ratio",
     "your gradients are −2 times autograd's on every parameter (c = -2): sign flipped and "
     "a factor 2: 2(Y − A) where ∂E/∂A = A − Y"),
    ("bias_keepdims.py", ["xor"], 2, "",
     "['layers.0.bias'] has shape (1, 4); expected (4,) (all: layers.0.weight (4, 2), "
     "layers.0.bias (4,), layers.1.weight (1, 4), layers.1.bias (1,)): drop keepdims"),
    ("bias_not_summed.py", ["xor"], 2, "",
     "['b1'] has shape (4, 4); expected (4,) (all: W1 (2, 4), b1 (4,), W2 (4, 1), b2 (1,)): "
     "sum over the samples (axis 0)"),
    ("update_returns_none.py", ["seed"], 2, "",
     "update(params, grads, lr) returned None; it must return a dict {name: array} with the "
     "keys of params (return the new params"),
    ("update_hardcoded_lr.py", ["seed"], 1, "update",
     "your update of W1 and W2 ignores the learning rate: w − ∂E/∂w (called with lr = 0.5; "
     "use the lr argument, never a number of your own)"),
    ("module_level_test.py", ["seed"], 2, "",   # import_error: the file, line and code
     "NameError: name 'initial_params' is not defined (at module_level_test.py, line 25: "
     "print(gradients(initial_params, training_data, training_labels))"),
    ("onehot_labels.py", ["iris"], 4, "",
     "(for cross_entropy Y holds integer class labels, shape (N,), not one-hot rows (N, K)"),
    ("written_for_biases.py", ["seed"], 2, "",
     "KeyError: 'b1' (your code reads b1: written for a network with biases; `seed` has "
     "none (bias = false))"),
]


def check(capsys, *args) -> tuple[int, str]:
    code = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("name,config,code,kind,words", CATALOGUE,
                         ids=[f"{c[0]}-{c[1][0]}" for c in CATALOGUE])
def test_catalogue_names_each_mistake(tmp_path, capsys, name, config, code, kind, words):
    got, text = check(capsys, EXAMPLES / name, *config, *FAST, "--out", tmp_path / "c")
    assert got == code, text
    words = words.replace("EXAMPLES", str(EXAMPLES))
    assert " ".join(words.split()) in " ".join(text.split()), text
    if code != 2:   # the folder's check.md holds what was printed
        md = (tmp_path / "c" / "check.md").read_text(encoding="utf-8")
        assert " ".join(words.split()) in " ".join(md.split())
    if kind:
        assert f"diagnosis ({kind})," in text
        verdict = next(ln for ln in text.splitlines() if ln.startswith("result:"))
        assert "; or " not in verdict and "K =" not in verdict   # one cause, no K = 1
        if kind in ("float32", "numerical"):   # entries off beyond rounding, not "0 of 4"
            assert "entries off beyond rounding (rel_tol)" in text and " 0 of " not in text
        initial = pd.read_csv(tmp_path / "c" / "initial.csv")
        assert set(initial.loc[initial["verdict"] == "differ", "kind"]) == {kind}


#: the correct styles, each with the configs it is written for (tests/test_check.py runs
#: correct_w1b1, correct_torch and correct_softmax on theirs)
STYLES = {
    "correct_w1b1.py": "per-sample loops, column vectors, own update (W1b1)",
    "correct_torch.py": "vectorised, handgrad's keys (torch)",
    "correct_softmax.py": "softmax cross-entropy, integer labels",
    "correct_cs231n.py": "layer functions returning a cache dict (W1b1)",
    "correct_class.py": "a Network class (torch)",
    "correct_nested_lists.py": "plain Python nested lists, one sample at a time (W1b1)",
    "correct_nielsen.py": "Nielsen's network.py: bias columns, nabla_w sums (torch)",
    "correct_torch_tensors.py": "torch tensors without autograd (W1b1)",
    "correct_deep_einsum.py": "einsum, a list of caches, any depth, frozen bias left out (W1b1)",
    "correct_notebook.ipynb": "a notebook: %magic, data cells, a training loop (W1b1)",
}
MORE_STYLES = [("correct_cs231n.py", "seed"), ("correct_cs231n.py", "xor"),
               ("correct_class.py", "seed"), ("correct_class.py", "xor"),
               ("correct_class.py", "worked-2-2-2"),
               ("correct_nested_lists.py", "seed"), ("correct_nested_lists.py", "xor"),
               ("correct_nielsen.py", "seed"), ("correct_nielsen.py", "xor"),
               pytest.param("correct_torch_tensors.py", "seed",     # its process imports torch
                            marks=pytest.mark.slow),
               ("correct_deep_einsum.py", "xor"), ("correct_deep_einsum.py", "worked-2-2-2"),
               ("correct_notebook.ipynb", "seed")]


def test_ten_correct_styles():
    assert len(STYLES) >= 10
    assert sorted(p.name for p in EXAMPLES.glob("correct_*")) == sorted(STYLES)
    checked = {p.values[0] if hasattr(p, "values") else p[0] for p in MORE_STYLES} | {
        "correct_w1b1.py", "correct_torch.py",
                                           "correct_softmax.py"}
    assert checked == set(STYLES)


@pytest.mark.parametrize("name,config", MORE_STYLES)
def test_more_correct_styles_agree(tmp_path, capsys, name, config):
    code, text = check(capsys, EXAMPLES / name, config, "--steps", "20", "--no-plots",
                       "--out", tmp_path / "c")
    assert code == 0, text
    assert "result: agree (exit 0)" in text
    initial = pd.read_csv(tmp_path / "c" / "initial.csv")
    assert set(initial["verdict"]) <= {"agree", "exact"}


def test_narrow_dtypes_anywhere():
    """float32 or float16 arrays of right maths, either network: named with their dtype."""
    ns: dict = {}
    exec((EXAMPLES / "correct_torch.py").read_text(encoding="utf-8"), ns)
    for dtype, config in ((np.float16, "seed"), (np.float32, "xor")):
        r = check_function(lambda p, X, Y, dt=dtype: {k: v.astype(dt) for k, v in
                                                      ns["gradients"](p, X, Y).items()},
                           config, steps=1)
        name = np.dtype(dtype).name
        assert r.kind == name and r.message.startswith(
            f"your arrays are {name}: the maths agrees to {name} precision"), r.explanation
        assert ("--set dtype=float32" in r.message) == (name == "float32")


def test_float32_file_agrees_under_a_float32_config(tmp_path, capsys):
    """The advice the float32 diagnosis gives works: the same file agrees at dtype=float32."""
    code, text = check(capsys, EXAMPLES / "float32_arrays.py", "seed", "--set",
                       "dtype=float32", *FAST, "--out", tmp_path / "c")
    assert code == 0, text


# -- the same recognisers on mistakes written here ------------------------------------------

def _torch_grads(params, X, Y, f=None, df=None):
    """Correct backprop, torch convention, any depth; sigmoid unless f/df are given."""
    f = f or (lambda z: 1 / (1 + np.exp(-z)))
    df = df or (lambda z, a: a * (1 - a))
    L = sum(k.endswith(".weight") for k in params)
    a, z = [X], []
    for i in range(L):
        z.append(a[-1] @ params[f"layers.{i}.weight"].T + params.get(f"layers.{i}.bias", 0))
        a.append(f(z[-1]))
    grads, delta = {}, (a[L] - Y) * df(z[L - 1], a[L])
    for i in reversed(range(L)):
        grads[f"layers.{i}.weight"] = delta.T @ a[i]
        if f"layers.{i}.bias" in params:
            grads[f"layers.{i}.bias"] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[f"layers.{i}.weight"]) * df(z[i - 1], a[i])
    return grads


def test_swapped_on_a_deeper_network_and_one_way():
    """2-2-2-1 (layers 0 and 1 both 2×2): the two swapped; one gradient in another's place."""
    def swapped(params, X, Y):
        g = _torch_grads(params, X, Y)
        g["layers.0.weight"], g["layers.1.weight"] = g["layers.1.weight"], g["layers.0.weight"]
        return g
    over = ["hidden=[2, 2]", "bias=false"]
    r = check_function(swapped, "xor", overrides=over, steps=2)
    assert r.status == "differ" and r.kind == "swapped", r.explanation
    assert r.message.startswith("your layers.0.weight and layers.1.weight are swapped")

    def misplaced(params, X, Y):
        g = _torch_grads(params, X, Y)
        return {**g, "layers.0.weight": g["layers.1.weight"]}   # a copy-paste slip
    r = check_function(misplaced, "xor", overrides=over, steps=2)
    assert r.kind == "swapped" and r.message.startswith(
        "the gradient you return as layers.0.weight is autograd's ∂E/∂layers.1.weight")


def test_swapped_where_the_shapes_are_each_others_transposes():
    """2-4-2, W1b1: W1 (2, 4) and W2 (4, 2) swapped come back with each other's shapes,
    which the convention reads as transposed gradients: still named a swap."""
    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    def gradients(params, X, Y):
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        h = sigmoid(X @ W1 + b1)
        out = sigmoid(h @ W2 + b2)
        d2 = (out - Y) * out * (1 - out)
        d1 = (d2 @ W2.T) * h * (1 - h)
        return {"W1": h.T @ d2, "W2": X.T @ d1, "b1": d1.sum(0), "b2": d2.sum(0)}
    r = check_function(gradients, "worked-2-2-2", convention="W1b1", steps=1,
                       overrides=["hidden=[4]", "init=uniform", "bias=true"])
    assert r.kind == "swapped" and r.message.startswith("your W1 and W2 are swapped")


def test_all_gradients_zero_and_central_differences_elsewhere():
    r = check_function(lambda p, X, Y: {k: np.zeros_like(v) for k, v in p.items()}, "xor",
                       steps=2)
    assert r.kind == "zero" and r.message.startswith("your gradients are all zeros, where")

    def central(params, X, Y, h=1e-4):   # a coarser step, on xor with biases
        def loss(p):
            a = X
            for i in range(2):
                a = 1 / (1 + np.exp(-(a @ p[f"layers.{i}.weight"].T + p[f"layers.{i}.bias"])))
            return 0.5 * np.sum((a - Y) ** 2)
        g = {}
        for k, w in params.items():
            g[k] = np.zeros_like(w)
            for i in np.ndindex(w.shape):
                w0 = w[i]
                w[i] = w0 + h
                up = loss(params)
                w[i] = w0 - h
                g[k][i] = (up - loss(params)) / (2 * h)
                w[i] = w0
        return g
    r = check_function(central, "xor", steps=2)
    assert r.kind == "numerical", r.explanation
    assert "the size a central difference (E(w + h) − E(w − h))/2h leaves" in r.message


def test_relu_kink_needs_an_exact_zero():
    """relu′ as (z >= 0) on a relu network: named where some z is exactly 0 (the init file),
    and at random weights, where no z is 0, the file agrees: nothing to name."""
    relu = (lambda z: np.maximum(z, 0), lambda z, a: (z >= 0).astype(float))
    kink = EXAMPLES / "relu_kink_init.json"
    over = ["activation=relu", "bias=false"]
    r = check_function(lambda p, X, Y: _torch_grads(p, X, Y, *relu), "seed",
                       overrides=[*over, f"init={kink}"], steps=2)
    assert r.kind == "relu_kink" and "(2 entries of z are exactly 0 here)" in r.message
    r = check_function(lambda p, X, Y: _torch_grads(p, X, Y, *relu), "seed",
                       overrides=over, steps=2)
    assert r.agree, r.explanation


def test_lr_named_only_when_c_is_lr():
    """c = lr ≠ 1 names lr; at lr = 1 a factor 2 is the loss's, and lr is not mentioned."""
    def doubled(params, X, Y):
        return {k: 2 * v for k, v in _torch_grads(params, X, Y).items()}
    r = check_function(doubled, "seed", overrides=["lr=2"], steps=2)
    assert "you returned lr·∂E/∂w (lr = 2)" in r.message
    r = check_function(doubled, "seed", steps=2)
    assert "lr" not in r.message and "an extra factor 2" in r.message

    def scaled(params, X, Y):   # no simple name: one sentence, and no K on one output
        return {k: 1.5 * v for k, v in _torch_grads(params, X, Y).items()}
    r = check_function(scaled, "seed", steps=2)
    assert r.message == ("your gradients are 1.5 times autograd's on every parameter (c = 1.5):"
                         " c is none of 2, ½, N, their products or lr: look for another "
                         "constant (a hand-written scale)")


def test_composite_constants_have_one_short_cause():
    from experiments.teaching.check.diagnosis import _composite, ratio_symbols
    assert ratio_symbols(-2, 4, 1, 1e-6) == ["−2"]
    assert _composite("−2", "half_sse", 1) == ("sign flipped and a factor 2: 2(Y − A) where "
                                               "∂E/∂A = A − Y")
    assert _composite("−1/N", "mse", 1) == ("sign flipped and divided by N: 2(Y − A)/N² where "
                                            "∂E/∂A = 2(A − Y)/N")
    assert _composite("2", "mse", 3) == "a factor 2: 4(A − Y)/M where ∂E/∂A = 2(A − Y)/M"


def test_shape_and_network_hints():
    """The hints, from the convention alone: any layer, either convention."""
    conv = Convention("torch", (2, 3, 2), True)
    value = {"layers.0.weight": np.zeros((3, 2)), "layers.0.bias": np.zeros((5, 3)),
             "layers.1.weight": np.zeros((2, 3)), "layers.1.bias": np.zeros((1, 2))}
    assert conv.shape_hint("layers.0.bias", value, batch=5).startswith(
        ": sum over the samples (axis 0)")
    assert conv.shape_hint("layers.1.bias", value).startswith(": drop keepdims")
    w1b1 = Convention("W1b1", (3, 4, 1), False)
    assert "written for a network with biases; `seed` has none" in w1b1.network_hint(
        ["W1", "W2", "b1", "b2"], config="`seed`")
    assert "written for a network without biases" in Convention(
        "W1b1", (2, 4, 1), True).network_hint(["W1", "W2"])
    assert "W3: written for another network" in w1b1.network_hint(["W1", "W2", "W3"])
    assert Convention("torch", (2, 4, 1), True).network_hint(["W1", "W2", "b1", "b2"]) == ""


def test_learner_file_written_for_another_depth(tmp_path, capsys):
    path = tmp_path / "deep.py"
    path.write_text(textwrap.dedent("""
        CONVENTION = "W1b1"
        def gradients(params, X, Y):
            return {"W3": params["W3"]}
    """), encoding="utf-8")
    code, text = check(capsys, path, "seed", *FAST, "--out", tmp_path / "c")
    assert code == 2                                   # wrong_assignment: bad input
    assert "your code reads W3: written for another network; `seed` (3-4-1) has W1 (3, 4), " \
           "W2 (4, 1)" in text
