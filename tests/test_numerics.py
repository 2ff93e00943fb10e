"""Numerical edges and input validation, on both sides.

- the stable sigmoid: no overflow warning, exact saturation, symmetry, agreement with
  torch.sigmoid to a derived number of roundings;
- bce at outputs of exactly 0 and 1: torch.nn.BCELoss's clamps, finite loss and gradients;
- a bad network spec or parameter dict: ValueError with a message naming the problem;
- the two implementations stay independent witnesses (no cross imports).
"""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import manual
import torch_impl
from experiments.core.metrics import TINY, compare
from experiments.core.tolerance import gradient_tolerance, magnitude_gradients
from manual.activations import sigmoid
from manual.losses import bce, bce_grad

ROOT = Path(__file__).resolve().parents[1]
EPS64 = float(np.finfo(np.float64).eps)

# --- stable sigmoid ------------------------------------------------------------------------


def test_sigmoid_no_overflow_warning_and_exact_saturation():
    z = np.array([1e4, -1e4, 800.0, -800.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # any RuntimeWarning (overflow) fails
        s = sigmoid(z, np)
        np.testing.assert_array_equal(1 / (1 + np.exp(-z[:1])), [1.0])   # +z is harmless
    assert s[0] == 1.0 and s[1] == 0.0            # exactly, not 1 − 1e-16 or 1e-300
    assert s[2] == 1.0 and s[3] == 0.0
    assert s[4] == 0.5
    assert np.all(np.isfinite(s))
    # the naive formula does warn at −1e4 (so the test above can tell the difference)
    with warnings.catch_warnings(), pytest.raises(RuntimeWarning):
        warnings.simplefilter("error")
        1 / (1 + np.exp(-z[1:2]))


def test_network_with_huge_preactivations_runs_without_warnings():
    p = {"layers.0.weight": np.array([[1e4, -1e4]]), "layers.0.bias": np.array([0.5])}
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = manual.MLP([2, 1], bias=True, loss="half_sse", params=p).forward(X)
    np.testing.assert_array_equal(A, [[1.0], [0.0]])


def test_sigmoid_symmetry():
    """σ(−z) = 1 − σ(z) to rounding. For z ≥ 0 both come from the same e = e^{−z} and the
    same rounded s = 1 + e: σ(z) = 1/s, σ(−z) = e/s, and s − 1 = e + δ with |δ| ≤ u·s.
    So |σ(−z) − (1 − σ(z))| ≤ u (from δ/s) + u (division) + u (the subtraction) = 3u."""
    z = np.linspace(-40.0, 40.0, 80001)
    diff = np.abs(sigmoid(-z, np) - (1 - sigmoid(z, np)))
    assert diff.max() <= 1.5 * EPS64, diff.max() / EPS64
    assert np.all(sigmoid(z, np)[z > 0] > 0.5) and np.all(sigmoid(z, np)[z < 0] < 0.5)


@pytest.mark.parametrize(("dtype", "zmax"), [(np.float64, 700.0), (np.float32, 80.0)])
def test_sigmoid_matches_torch_within_derived_roundings(dtype, zmax):
    """Each side evaluates e^x (≤ 1 ulp, i.e. ≤ ε relative), one addition and one division
    (≤ u = ε/2 each): ≤ 2ε relative from the exact σ, so the two differ by ≤ 4ε relative.
    (Measured: ≈ 2ε, i.e. up to 4 ulp of the result, both dtypes; "1-2 ulp" does not
    hold for torch's vectorised exp.) The range keeps results normal (no subnormals)."""
    z = np.linspace(-zmax, zmax, 400001).astype(dtype)
    a = sigmoid(z, np)
    t = torch.sigmoid(torch.from_numpy(z)).numpy()
    assert a.dtype == t.dtype == dtype
    eps = float(np.finfo(dtype).eps)
    rel = np.abs(a.astype(np.float64) - t) / np.maximum(np.abs(a), np.abs(t)).astype(np.float64)
    assert rel.max() <= 4 * eps, f"worst {rel.max() / eps:.2f} eps at z = {z[rel.argmax()]}"


# --- bce at the edges ----------------------------------------------------------------------


def test_bce_at_exact_zero_and_one_matches_torch_clamps():
    """torch.nn.BCELoss clamps each log at −100 and the backward denominator A(1 − A) at
    its ``constexpr float EPSILON = 1e-12`` (aten/src/ATen/native/Loss.cpp): the float32
    value 9.99999996e-13, also for float64 tensors."""
    A = np.array([[0.0, 1.0], [0.5, 1.0]])
    Y = np.array([[1.0, 0.0], [0.5, 1.0]])
    M = A.size
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no log(0) / divide warnings
        E = float(bce(A, Y, np))
        dA = bce_grad(A, Y, np)
    # by hand: A=0,Y=1 → −log 0 → 100;  A=1,Y=0 → 100;  A=Y=½ → log 2;  A=Y=1 → 0
    assert E == pytest.approx((100 + 100 + math.log(2) + 0) / M, rel=4 * EPS64)
    assert np.all(np.isfinite(dA))
    At = torch.tensor(A, requires_grad=True)
    Et = torch.nn.BCELoss()(At, torch.tensor(Y))
    Et.backward()
    # the same few operations on each side, ≤ 3 roundings each at these values
    assert abs(E - Et.item()) <= 4 * EPS64 * abs(E)
    np.testing.assert_allclose(dA, At.grad.numpy(), rtol=4 * EPS64, atol=0)
    clamp = float(np.float32(1e-12))                               # torch's EPSILON
    assert dA[0, 0] == pytest.approx(-1 / clamp / M, rel=4 * EPS64)    # (0 − 1)/ε/M
    assert dA[0, 1] == pytest.approx(1 / clamp / M, rel=4 * EPS64)     # (1 − 0)/ε/M
    # the single-element figure from the issue: A=0, Y=1 gives E = 100/M with M = 1
    assert float(bce(np.zeros((1, 1)), np.ones((1, 1)), np)) == 100.0


def test_saturated_network_gives_finite_equal_loss_and_gradients():
    """Huge weights: hidden sigmoids are exactly 0/1 (|z| > 745: e^{−|z|} underflows), so
    are most outputs; output unit 1 sits at z ≈ −50 (A ≈ 2e-22) against target 1."""
    p = {
        "layers.0.weight": np.array([[1000.0, -500.0], [-800.0, 300.0]]),
        "layers.0.bias": np.array([0.5, -0.25]),
        "layers.1.weight": np.array([[800.0, -900.0], [-50.5, 1000.0]]),
        "layers.1.bias": np.array([0.3, 0.5]),
    }
    X = np.array([[1.0, -1.0], [-1.0, 1.0], [2.0, 1.0]])
    Y = np.array([[1.0, 1.0], [1.0, 0.0], [0.5, 1.0]])
    spec = dict(sizes=[2, 2, 2], activation="sigmoid", bias=True, loss="bce")
    man = manual.MLP(**spec, params=p)
    tor = torch_impl.MLP(**spec, params=p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Em, gm = man.loss_and_gradients(X, Y)
    Et, gt = tor.loss_and_gradients(X, Y)
    A = man.forward(X)
    assert set(np.unique(man.last_activations[1])) == {0.0, 1.0}     # hidden: exact 0/1
    assert np.sum((A == 0.0) | (A == 1.0)) >= 3 and 0 < A[0, 1] < 1e-20
    assert math.isfinite(Em) and math.isfinite(Et) and Em > 30       # clamped, not inf
    assert all(np.all(np.isfinite(g)) for g in [*gm.values(), *gt.values()])
    assert np.any(gm["layers.1.weight"] != 0)                         # not trivially zero
    base = gradient_tolerance("float64", spec["sizes"], len(X))
    # loss: a sum of non-negative terms (100s and logs); 2γ_m as in test_agreement
    assert abs(Em - Et) <= base * abs(Em), (Em, Et)
    G = magnitude_gradients(man, man.params, [np.asarray(a) for a in man.last_activations], Y)
    for key in gm:
        mad, rel, _, nm, nt = compare(gm[key], gt[key])
        # the derived pair bound 2γ_m·cond of test_agreement (cond 1 for bit-identical
        # gradients: saturated entries are exactly 0 on both sides, ‖G̃‖/tiny would overflow)...
        cond = 1.0 if mad == 0 else max(1.0, G[key] / max(nm, nt, TINY))
        assert rel <= base * cond, (key, rel)
        # ... and the fixed float64 one, independent of the tolerance code: u ≈ 1.1e-16
        # and chains of at most ~10^3 rounded operations give ≲ 1e-13
        assert rel <= 1e-12, (key, rel)
    # Tighter, for the output layer: its inputs are exact 0/1, its only non-zero entries
    # come from two same-sign terms (samples 0 and 2, unit 1) through the clamped bce
    # denominator, so there is no cancellation: the plain 2γ_m holds. (With a 1e-12 clamp
    # instead of torch's float32 1e-12 this was 4.0e-9.)
    for key in ("layers.1.weight", "layers.1.bias"):
        rel = compare(gm[key], gt[key])[1]
        assert rel <= base, f"{key}: rel_err {rel:.3e} > 2γ_m = {base:.3e}"


# --- bad specs -------------------------------------------------------------------------------

SIDES = [manual.MLP, torch_impl.MLP]
GOOD = dict(sizes=[3, 4, 2], activation="sigmoid", bias=True, loss="half_sse")


def good_params(sizes=(3, 4, 2), bias=True):
    rng = np.random.default_rng(0)
    return {k: rng.uniform(-1, 1, s) for k, s in manual.parameter_shapes(sizes, bias).items()}


BAD_SPECS = [
    ("unknown activation", dict(activation="swish"), r"unknown activation 'swish'"),
    ("unknown output act", dict(output_activation="softmax"),
     r"unknown output_activation 'softmax'"),
    ("unknown loss", dict(loss="hinge"), r"unknown loss 'hinge'"),
    ("unknown dtype", dict(dtype="float16"), r"unknown dtype 'float16'"),
    ("one size", dict(sizes=[3]), r"sizes .*at least 2"),
    ("no sizes", dict(sizes=[]), r"sizes .*at least 2"),
    ("sizes not a list", dict(sizes="342"), r"sizes must"),
    ("zero width", dict(sizes=[3, 0, 2]), r"integer >= 1"),
    ("negative width", dict(sizes=[3, -4, 2]), r"integer >= 1"),
    ("non-integer width", dict(sizes=[3, 2.5, 2]), r"integer >= 1"),
    ("bool width", dict(sizes=[3, True, 2]), r"integer >= 1"),
    ("bias maybe", dict(bias="maybe"), r"bias must be True, False or 'frozen', got 'maybe'"),
    ("bias 1", dict(bias=1), r"bias must be True, False or 'frozen'"),
    ("bce non-sigmoid", dict(loss="bce", activation="tanh"), r"'bce' needs .*sigmoid"),
    ("bce identity out", dict(loss="bce", output_activation="identity"),
     r"'bce' needs .*sigmoid"),
    ("ce one output", dict(loss="cross_entropy", sizes=[3, 4, 1]), r"at least 2 outputs"),
]


@pytest.mark.parametrize("side", SIDES, ids=["manual", "torch"])
@pytest.mark.parametrize(("what", "change", "words"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_a_clear_value_error(side, what, change, words):
    spec = {**GOOD, **change}
    sizes = spec["sizes"]
    try:   # params that would fit, where the sizes allow it (so only the spec is wrong)
        params = good_params(tuple(int(s) for s in sizes), spec["bias"])
    except (TypeError, ValueError):
        params = good_params()
    with pytest.raises(ValueError, match=words):
        side(**spec, params=params)


def test_the_good_spec_is_accepted():
    """The baseline of the table above is valid (so each row fails for its own reason)."""
    for side in SIDES:
        side(**GOOD, params=good_params())


BAD_PARAMS = [
    ("missing key", lambda p: {k: v for k, v in p.items() if k != "layers.1.bias"},
     r"missing \['layers.1.bias'\]"),
    ("extra key", lambda p: {**p, "layers.2.weight": np.zeros((2, 2))},
     r"unexpected \['layers.2.weight'\]"),
    ("wrong shape", lambda p: {**p, "layers.0.weight": p["layers.0.weight"].T},
     r"params\['layers.0.weight'\] has shape \(3, 4\), expected \(4, 3\)"),
    ("bias given for bias=False", None, r"unexpected \['layers.0.bias', 'layers.1.bias'\]"),
    ("not a dict", lambda p: list(p.values()), r"params must be a dict"),
]


@pytest.mark.parametrize("side", SIDES, ids=["manual", "torch"])
@pytest.mark.parametrize(("what", "mutate", "words"), BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_params_are_a_clear_value_error(side, what, mutate, words):
    if mutate is None:
        spec, params = {**GOOD, "bias": False}, good_params()
    else:
        spec, params = GOOD, mutate(good_params())
    with pytest.raises(ValueError, match=words):
        side(**spec, params=params)


# --- independence of the two witnesses -------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_manual_never_imports_torch():
    r = _python(
        "import sys, numpy as np, manual\n"
        "assert 'torch' not in sys.modules, 'import manual pulled in torch'\n"
        "p = {'layers.0.weight': np.ones((2, 3)), 'layers.0.bias': np.ones(2)}\n"
        "net = manual.MLP([3, 2], params=p)\n"
        "g = net.gradients(np.ones((4, 3)), np.zeros((4, 2)))\n"
        "manual.SGD(net.param_arrays, lr=0.1, momentum=0.9).step(g)\n"
        "assert 'torch' not in sys.modules, 'using manual on numpy pulled in torch'\n"
    )
    assert r.returncode == 0, r.stderr


def test_torch_impl_never_imports_manual():
    r = _python("import sys, torch_impl\n"
                "assert 'manual' not in sys.modules, [m for m in sys.modules if 'manual' in m]\n")
    assert r.returncode == 0, r.stderr


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_source_has_no_cross_imports():
    manual_files = sorted((ROOT / "manual").glob("*.py"))
    torch_files = sorted((ROOT / "torch_impl").glob("*.py"))
    assert manual_files and torch_files
    for f in manual_files:
        text = f.read_text()
        assert "import torch" not in text, f
        assert not {"torch", "torch_impl"} & _imported_modules(f), f
    for f in torch_files:
        # the docstrings say "never imports manual", so look at import statements, not words
        assert not re.search(r"^\s*(import|from)\s+manual\b", f.read_text(), re.M), f
        assert "manual" not in _imported_modules(f), f
        assert "experiments" not in _imported_modules(f), f


#: experiments' layers, bottom first (docs/design.md, "Dependency direction"): a module may
#: import its own layer and those below, never one above. tools may import teaching
#: (regenerate runs the studies), so it sits one above it.
LAYERS = {"core": 0, "output": 1, "teaching": 2, "tools": 3}


def _layer(module: str) -> int | None:
    """``experiments.core.x`` -> 0; the package's API (``experiments``), ``cli`` and
    ``__main__`` -> the top (4); a module outside experiments -> None."""
    parts = module.split(".")
    if parts[0] != "experiments":
        return None
    return LAYERS.get(parts[1], 4) if len(parts) > 1 else 4


def test_experiments_imports_only_run_downwards():
    """Every import statement in experiments/, including those inside functions (the lazy
    ones are where an upward import hides), names a layer at or below its own."""
    upward = []
    for f in sorted((ROOT / "experiments").rglob("*.py")):
        module = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        own = _layer(module)
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue                # relative imports stay inside one package
            upward += [f"{module}:{node.lineno} imports {n}" for n in names
                       if (_layer(n) or 0) > own]
    assert not upward, "imports that run back up: " + "; ".join(upward)


def test_bce_loss_of_small_outputs_matches_torch():
    A = np.array([[1e-4, 1e-8, 1e-10, 1e-13]])
    T = np.zeros_like(A)
    Em = float(bce(A, T, np))
    Et = torch.nn.BCELoss()(torch.tensor(A), torch.tensor(T)).item()
    # a sum of 4 positive terms, each −log1p(−A) correctly rounded to ≤ 1 ulp by libm:
    # a few ε relative; 8ε leaves room
    assert abs(Em - Et) <= 8 * EPS64 * Et, abs(Em - Et) / Et
