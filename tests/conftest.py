"""Fixtures shared by the runner, run-directory and schema tests."""

from __future__ import annotations

import pytest

from experiments.core.config import load_config
from experiments.core.runner import run_experiment
from experiments.output.rundir import write_run


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory):
    """``(result, run directory)`` of a small mini-batch run, written without plots: iris,
    batch 32 (5 steps per epoch, the last batch 22), 2 epochs, momentum 0.9, float64,
    logged every 4 steps -> steps 0, 4, 8, 9."""
    r = run_experiment(load_config("iris", [
        "hidden=[4]", "batch_size=32", "epochs=2", "steps=0", "log_every=4", "fd_every=0",
        "momentum=0.9", "dtype=float64"]))
    return r, write_run(r, tmp_path_factory.mktemp("iris") / "iris", plots=False)
