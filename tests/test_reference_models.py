"""Reference models: any model in torch as the lockstep engine's reference side.

* a reference file's own mistakes: one line, exit 2, nothing written;
* one engine: the MLP of a config, built as a Reference, is torch_impl's network (the same
  gradients as torch_impl.MLP called directly), and every command trains against that one
  autograd side (``ReferenceSide``): run, the check against a config or a reference, the
  bug gallery, explain's witness;
* the tolerance: no false alarm on correct code that rounds in its own order, and an error
  of 1e-8 relative in float64 detected on every assignment;
* the learner's names and shapes: renamed keys, a transposed shape named as such;
* the command: ``handgrad check FILE reference.py`` end to end, in the learner's process.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import torch_impl
from experiments.cli import main
from experiments.core.config import ConfigError, load_config
from experiments.core.engine import Lockstep, batches
from experiments.core.reference import ReferenceSide, from_config
from experiments.core.runner import initial_state
from experiments.teaching.reference.check import check_reference
from experiments.teaching.reference.load import load_reference

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "examples" / "assignments"

BASE = '''
import numpy as np
import pandas as pd
import torch

LR, STEPS = 0.5, 3
INTERMEDIATES = ["z"]


def params():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
            "b": torch.zeros(2, dtype=torch.float64, requires_grad=True)}


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)), rng.normal(size=(8, 2))


def loss(params, X, Y):
    z = X @ params["w"] + params["b"]
    return 0.5 * ((z - Y) ** 2).sum(), {"z": z}
'''

LEARNER = '''
def gradients(params, X, Y):
    dz = X @ params["w"] + params["b"] - Y         # (N, 2)
    return {"w": X.T @ dz, "b": dz.sum(axis=0), "z": dz}
'''


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"learner_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules.pop("correct", None)
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


# -- a reference's own mistakes ----------------------------------------------------------------

BROKEN = {
    "a loss that is not scalar": (
        ('0.5 * ((z - Y) ** 2).sum(), {"z": z}', '0.5 * ((z - Y) ** 2), {"z": z}'),
        "returned a tensor of shape (8, 2); it must return a scalar"),
    "a parameter without requires_grad": (
        ('torch.zeros(2, dtype=torch.float64, requires_grad=True)',
         'torch.zeros(2, dtype=torch.float64)'),
        "params()['b'] does not require grad"),
    "non-finite output": (
        ('0.5 * ((z - Y) ** 2).sum(), {"z": z}', '((z - Y) ** 2).sum() * float("nan"), {}'),
        "is nan at the initial weights; it must be finite"),
    "a name clash": (('INTERMEDIATES = ["z"]', 'INTERMEDIATES = ["z"]\nNAMES = {"z": "w"}'),
                     "NAMES gives two things the name 'w'"),
    "an intermediate named like a parameter": (
        ('return 0.5 * ((z - Y) ** 2).sum(), {"z": z}',
         'return 0.5 * ((z - Y) ** 2).sum(), {"z": z, "b": z}'),
        "'b' is both a parameter and an intermediate: give the intermediate another name"),
    "a missing name": (('INTERMEDIATES = ["z"]', 'INTERMEDIATES = ["z", "logits"]'),
                       "INTERMEDIATES names 'logits', which loss(params, X, Y) does not "
                       "return"),
    "no loss": (("def loss(", "def loss_fn("), "defines no loss"),
    "a parameter the loss does not use": (
        ('"b": torch.zeros(2', '"c": torch.zeros(2, dtype=torch.float64, requires_grad=True),'
                               ' "b": torch.zeros(2'),
        "the loss does not use the parameter 'c'"),
    "the teacher's code raises": (('return rng.normal', 'return 1 / 0, rng.normal'),
                                  "data() raised ZeroDivisionError"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_reference_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    (old, new), said = BROKEN[case]
    assert old in BASE
    ref = write(tmp_path, "reference.py", BASE.replace(old, new))
    learner = write(tmp_path, "learner.py", LEARNER)
    if case == "an intermediate named like a parameter":
        ref.write_text(ref.read_text().replace('INTERMEDIATES = ["z"]',
                                               'INTERMEDIATES = ["z", "b"]'))
    code = main(["check", str(learner), str(ref), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("handgrad: error: "), err
    assert said in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists() and out == ""


# -- one engine --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["seed", "xor", "worked-2-2-2"])
def test_a_config_as_a_reference_has_torch_impls_gradients(name):
    """from_config builds the config's network as a Reference: its ReferenceSide gives
    exactly torch_impl.MLP's own gradients (its module, through functional_call)."""
    cfg = load_config(name, ["mode=synced", "momentum=0"])
    ref = from_config(cfg)
    cfg, _, params, _, _ = initial_state(cfg)
    tor = torch_impl.MLP(cfg.sizes, **cfg.spec(), params=params)
    _, want = tor.loss_and_gradients(ref.X, ref.Y)
    _, got, _ = ReferenceSide(ref).gradients_at(None)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_every_command_trains_against_the_one_autograd_side(monkeypatch):
    """One autograd side: ``handgrad run``, the check against a config (its initial point
    and its training), the check against a reference, the bug gallery and explain's
    witness all step a ``ReferenceSide``; the engine has no other (no TorchSide)."""
    from experiments.core import engine
    from experiments.core.runner import run_experiment
    from experiments.teaching.bugs import run_gallery
    from experiments.teaching.check.api import check_function
    from experiments.teaching.explain.model import prepare
    from experiments.teaching.explain.worked import trajectories

    built, references = [], []
    init, lockstep = ReferenceSide.__init__, Lockstep.__init__

    def side(self, ref, name="autograd"):
        built.append(ref.source)
        init(self, ref, name)

    def stepped(self, sides, reference=None, mode="free"):
        references.append(type(reference).__name__)
        lockstep(self, sides, reference, mode)

    monkeypatch.setattr(ReferenceSide, "__init__", side)
    monkeypatch.setattr(Lockstep, "__init__", stepped)
    ok = _module(ROOT / "examples" / "learners" / "correct_torch.py")
    run_experiment(load_config("seed", ["steps=2"]))
    assert built == ["seed"] and references == ["ReferenceSide"]
    assert check_function(ok.gradients, "seed", steps=2).agree
    assert built[1:] == ["mlp", "seed"]            # the initial point, then training
    assert check_reference(ok.gradients, from_config(load_config("seed", ["steps=2"]))).agree
    run_gallery(["missing_mean"], steps=1)
    assert references == ["ReferenceSide"] * 4     # run, check, reference check, bugs
    witness = trajectories(prepare(load_config("worked-2-2-2")), 1)["autograd"]
    assert isinstance(witness.side, ReferenceSide)
    assert not hasattr(engine, "TorchSide")


def test_the_mlp_checks_through_the_reference_path_in_the_one_engine():
    """The seed case's correct learner file, checked against the seed config built as a
    Reference: it agrees (trained in engine.Lockstep, the one loop), and its 1/N mistake is
    named as a constant ratio."""
    ref = from_config(load_config("seed", ["steps=50"]))
    assert ref.steps == 50
    ok = _module(ROOT / "examples" / "learners" / "correct_torch.py")
    assert check_reference(ok.gradients, ref).status == "agree"
    bad = _module(ROOT / "examples" / "learners" / "bias_mean.py")
    mean = check_reference(lambda p, X, Y: {k: v / len(X) for k, v in ok.gradients(p, X, Y)
                                            .items()}, ref)
    assert mean.status == "differ" and mean.kind == "constant_ratio", mean.explanation
    assert "an extra 1/N (N = 4" in mean.message
    assert bad.gradients   # the gallery's file loads as a module
    with pytest.raises(ConfigError, match=r"iris: momentum = 0\.9; a learner is checked "
                                          r"against a reference that trains with plain SGD"):
        check_reference(ok.gradients, from_config(load_config("iris")))


def test_reference_side_trains_like_torch_optim_sgd_in_lockstep():
    """Two ReferenceSides of one reference, stepped by the engine in free mode, stay
    bit-identical (same batches, same SGD), and both moved."""
    ref = load_reference(ASSIGNMENTS / "softmax" / "reference.py")
    a, b = ReferenceSide(ref), ReferenceSide(ref)
    Lockstep([a], reference=b).run(batches(ref.N, 8, True, np.random.default_rng(0), 6))
    for k in ref.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        assert not np.array_equal(a.params[k], ref.params[k])


# -- the tolerance -----------------------------------------------------------------------------

def _correct(assignment: str):
    return _module(ASSIGNMENTS / assignment / "correct.py").gradients


@pytest.mark.parametrize("assignment", ["logistic", "softmax", "batchnorm", "makemore",
                                        "conv", "rnn"])
def test_an_error_of_1e_8_relative_is_detected_in_float64(assignment):
    """float64: a correct file's gradient of one parameter times (1 + 1e-8) differs —
    every tolerance here is below 1e-8 — and the unchanged file agrees (no false alarm)."""
    ref = load_reference(ASSIGNMENTS / assignment / "reference.py", steps=2)
    good = _correct(assignment)
    key = max(ref.params, key=lambda k: ref.params[k].size)   # a gradient far from zero

    def off(params, X, Y):
        g = good(params, X, Y)
        return {**g, key: g[key] * (1 + 1e-8)}

    assert check_reference(good, ref).status == "agree"
    result = check_reference(off, ref)
    assert result.status == "differ" and result.first_param == key, result.explanation


def test_no_false_alarm_on_code_that_rounds_in_its_own_order():
    """Softmax regression one sample at a time, with log-sum-exp written out and the
    weights' gradient accumulated in float64 loops: it agrees over every step."""
    ref = load_reference(ASSIGNMENTS / "softmax" / "reference.py")

    def one_at_a_time(params, X, Y):
        W, b = params["W"], params["b"]
        dW, db, dlogits = np.zeros_like(W), np.zeros_like(b), []
        for x, y in zip(X, Y, strict=True):
            z = x @ W + b
            p = np.exp(z - np.log(np.sum(np.exp(z))))
            p[y] -= 1
            p /= len(X)
            dW += np.outer(x, p)
            db += p
            dlogits.append(p)
        return {"W": dW, "b": db, "logits": np.array(dlogits)}

    result = check_reference(one_at_a_time, ref)
    assert result.status == "agree", result.explanation
    assert result.worst_rel_err < 1e-13


# -- names and shapes --------------------------------------------------------------------------

def test_names_rename_keys_and_a_transposed_shape_is_named(tmp_path):
    ref = load_reference(write(tmp_path, "reference.py", BASE.replace(
        'INTERMEDIATES = ["z"]', 'INTERMEDIATES = ["z"]\nNAMES = {"w": "W1", "z": "dz"}')))

    def renamed(params, X, Y):
        dz = X @ params["W1"] + params["b"] - Y
        return {"W1": X.T @ dz, "b": dz.sum(axis=0), "dz": dz}

    assert check_reference(renamed, ref).status == "agree"

    def transposed(params, X, Y):
        g = renamed(params, X, Y)
        return {**g, "W1": g["W1"].T}

    bad = check_reference(transposed, ref)
    assert (bad.status, bad.exit_code) == ("bad_output", 2)
    assert bad.message == ("gradients(params, X, Y)['W1'] has shape (2, 3); expected (3, 2), "
                           "the transpose of W1's: return ∂E/∂W1 with W1's own shape")
    missing = check_reference(lambda p, X, Y: {"b": renamed(p, X, Y)["b"]}, ref)
    assert missing.exit_code == 2 and "(missing ['W1'])" in missing.message
    assert "expected W1 (3, 2), b (2,), and optionally dz" in missing.message


def test_mini_batches_and_the_learners_update(tmp_path):
    """BATCH_SIZE: each step's rows reach the learner; its update() is checked against
    SGD's and trains its side; a wrong learning rate in it is named."""
    ref = load_reference(write(tmp_path, "reference.py", BASE.replace(
        "LR, STEPS = 0.5, 3", "LR, STEPS = 0.05, 6\nBATCH_SIZE = 3")))
    learner = _module(write(tmp_path, "learner.py", LEARNER))

    def update(params, grads, lr):
        return {k: params[k] - lr * grads[k] for k in params}

    assert check_reference(learner.gradients, ref, update=update).status == "agree"
    twice = check_reference(learner.gradients, ref,
                            update=lambda p, g, lr: update(p, g, 2 * lr))
    assert twice.status == "differ" and twice.kind == "update", twice.explanation
    assert "2 times as far as SGD's" in twice.message


# -- the command -------------------------------------------------------------------------------

def test_handgrad_check_with_a_reference_file_end_to_end(tmp_path, capsys):
    """The learner's file runs in its own process (importing its folder's correct.py); the
    first wrong intermediate is printed and the check folder written: CSVs, the training
    figure and report.html, as a config check's (none of the figure with --no-plots)."""
    out = tmp_path / "check"
    code = main(["check", str(ASSIGNMENTS / "makemore" / "tanh_of_preactivation.py"),
                 str(ASSIGNMENTS / "makemore" / "reference.py"), "--steps", "2",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    assert "the first wrong intermediate on the way back from the loss is hpreact" in printed
    assert "  hpreact         wrong" in printed and "  h               close" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        ".handgrad", "check.md", "initial.csv", "initial.png", "intermediates.csv",
        "report.html", "steps.csv"]                 # differs at the initial point: no training
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "handgrad check: tanh_of_preactivation.py against makemore" in page
    assert "<strong>differ</strong> (exit 1)" in page and "data:image/png;base64," in page
    assert "the first wrong intermediate on the way back from the loss is hpreact" in page
    code = main(["check", str(ASSIGNMENTS / "makemore" / "dC_assigned.py"),
                 str(ASSIGNMENTS / "makemore" / "reference.py"), "--steps", "2",
                 "--out", str(tmp_path / "c2"), "--no-plots"])
    assert code == 1 and "your gradient of C differs" in capsys.readouterr().out
    assert (tmp_path / "c2" / "report.html").is_file()
    assert not list((tmp_path / "c2").glob("*.png"))
    code = main(["check", str(ASSIGNMENTS / "rnn" / "correct.py"),
                 str(ASSIGNMENTS / "rnn" / "reference.py"), "--out", str(tmp_path / "c3")])
    assert code == 0 and "rnn/correct.py" not in capsys.readouterr().err
    assert {"initial.png", "steps.png", "report.html"} <= {p.name for p in
                                                           (tmp_path / "c3").iterdir()}
    assert torch.get_num_threads() >= 1


def test_a_teacher_checks_against_a_reference_from_python(tmp_path):
    """The public API (docs/references.md, "From Python"): load a reference once, check
    function objects in this process and a learner's file in its own process, with the
    check folder `handgrad check FILE reference.py --out` writes."""
    from experiments import check_reference as check_fn
    from experiments import check_reference_file
    from experiments import load_reference as load

    folder = ASSIGNMENTS / "logistic"
    ref = load(folder / "reference.py", steps=3)
    assert ref.steps == 3 and list(ref.params) == ["w", "b"] and ref.intermediates == ["z"]
    assert check_fn(_module(folder / "correct.py").gradients, ref).agree
    flipped = check_fn(_module(folder / "sign_flipped.py").gradients, ref)
    assert (flipped.status, flipped.exit_code) == ("differ", 1)
    assert "the sign is flipped" in flipped.message, flipped.message
    out = tmp_path / "check"
    result = check_reference_file(folder / "sum_not_mean.py", folder / "reference.py",
                                  steps=3, out=out)
    assert (result.status, result.kind) == ("differ", "constant_ratio"), result.explanation
    assert result.sha256 and "sum_not_mean.py" in result.file
    assert {"check.md", "initial.csv", "steps.csv"} <= {p.name for p in out.iterdir()}
    assert check_reference_file(folder / "correct.py", ref).agree   # a loaded Reference too


@pytest.mark.slow   # three learner processes: about 7 s on 2 busy cores
def test_handgrad_grade_with_a_reference_file(tmp_path, capsys):
    """grade DIR reference.py: a row per submission with the check's status, diagnosis
    and first parameter; grades.md names the reference; --set is refused in one line."""
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("correct.py", "transposed_dW.py"):
        (subs / name).write_bytes((ASSIGNMENTS / "softmax" / name).read_bytes())
    write(subs, "partial.py", 'def gradients(params, X, Y):\n    return {"W": params["W"]}\n')
    ref = str(ASSIGNMENTS / "softmax" / "reference.py")
    out = tmp_path / "grades"
    assert main(["grade", str(subs), ref, "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(out / "grades.csv")
    assert table[["file", "status", "diagnosis", "first_param"]].fillna("").values.tolist() == [
        ["correct.py", "agree", "agree", ""], ["partial.py", "bad_output", "", ""],
        ["transposed_dW.py", "differ", "transposed", "W"]]
    md = (out / "grades.md").read_text(encoding="utf-8")
    assert "reference `softmax` (reference.py: W (3, 3), b (3,); N = 24, lr 0.5, float64), " \
           "2 training steps" in md
    assert main(["grade", str(subs), ref, "--set", "lr=1", "--out", str(tmp_path / "g2")]) == 2
    assert "--set changes a config" in capsys.readouterr().err
    assert not (tmp_path / "g2").exists()


def test_a_reference_that_diverges_in_training_is_diverged_exit_3(tmp_path):
    ref = load_reference(write(tmp_path, "reference.py", BASE.replace(
        "LR, STEPS = 0.5, 3", "LR, STEPS = 1e3, 40")))
    learner = _module(write(tmp_path, "learner.py", LEARNER))
    result = check_reference(learner.gradients, ref)
    assert (result.status, result.exit_code) == ("diverged", 3), result.explanation
    assert "the reference's training diverged (LR = 1000 too large" in result.message


def test_gradients_that_accumulate_across_calls_are_named(tmp_path):
    """The second call (after one SGD step) returns autograd's gradient plus the first
    call's: accumulation, said in the learner's names."""
    ref = load_reference(write(tmp_path, "reference.py", BASE))
    good = _module(write(tmp_path, "learner.py", LEARNER)).gradients
    total = {}

    def accumulating(params, X, Y):
        for k, v in good(params, X, Y).items():
            total[k] = total.get(k, 0) + v
        return {k: v.copy() for k, v in total.items()}

    result = check_reference(accumulating, ref)
    assert (result.status, result.kind) == ("differ", "accumulated"), result.explanation
    assert result.message.startswith("your gradients keep growing from call to call")
