"""examples/otter/tests/backprop.py, the Otter-Grader test file, run as Otter runs it: each
``@test_case`` called with its arguments looked up in the notebook's environment (``env``:
all of it). Otter itself is not installed here: ``otter.test_files.test_case`` is stood in
for by a decorator that records each case, as Otter's does; the assertions are handgrad's."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = ROOT / "examples" / "otter" / "tests" / "backprop.py"
LEARNERS = ROOT / "examples" / "learners"


@pytest.fixture
def otter_file(monkeypatch):
    """The test file's module and its cases [(function, points, hidden)], in file order."""
    cases = []

    def test_case(points=None, hidden=False, success_message=None, failure_message=None):
        def record(fn):
            cases.append((fn, points, hidden))
            return fn
        return record

    otter = types.ModuleType("otter")
    test_files = types.ModuleType("otter.test_files")
    test_files.test_case = test_case
    otter.test_files = test_files
    monkeypatch.setitem(sys.modules, "otter", otter)
    monkeypatch.setitem(sys.modules, "otter.test_files", test_files)
    spec = importlib.util.spec_from_file_location("otter_backprop", TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, cases


def notebook_env(name: str) -> dict:
    """A learner file's globals, as a notebook's kernel holds them after running it."""
    env: dict = {}
    exec(compile((LEARNERS / name).read_text(encoding="utf-8"), name, "exec"), env)
    return env


def run_cases(cases, env) -> dict[str, str]:
    """Each case called as Otter calls it; name -> "" (passed) or its failure message."""
    results = {}
    for fn, _, _ in cases:
        args = [env if p == "env" else env[p] for p in inspect.signature(fn).parameters]
        try:
            fn(*args)
            results[fn.__name__] = ""
        except AssertionError as err:
            results[fn.__name__] = str(err)
    return results


def test_the_file_is_in_otters_exception_based_format(otter_file):
    module, cases = otter_file
    assert module.OK_FORMAT is False and module.name == "backprop"
    assert [fn.__name__ for fn, _, _ in cases] == [
        "test_gradients_at_the_initial_point", "test_training_in_lockstep", "test_update"]
    assert sum(points for _, points, _ in cases) == module.points == 10   # the rubric's 10
    assert not any(hidden for _, _, hidden in cases)


@pytest.mark.parametrize("learner", ["correct_w1b1.py", "correct_torch.py"])
def test_a_correct_notebook_passes_every_case(otter_file, learner):
    _, cases = otter_file
    assert run_cases(cases, notebook_env(learner)) == {
        "test_gradients_at_the_initial_point": "", "test_training_in_lockstep": "",
        "test_update": ""}


def test_a_mistake_fails_with_handgrads_explanation(otter_file):
    _, cases = otter_file
    results = run_cases(cases, notebook_env("mean_over_batch.py"))
    assert "you averaged over the batch where this loss sums" in \
        results["test_gradients_at_the_initial_point"]
    assert results["test_training_in_lockstep"]     # fails too: the same gradients train


def test_a_wrong_update_fails_only_its_case(otter_file):
    _, cases = otter_file
    env = notebook_env("correct_w1b1.py")
    env["update"] = lambda params, grads, lr: {k: params[k] + lr * grads[k] for k in params}
    results = run_cases(cases, env)
    assert results["test_gradients_at_the_initial_point"] == ""
    assert results["test_update"] and "update" in results["test_update"]
