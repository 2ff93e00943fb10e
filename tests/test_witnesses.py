"""experiments.core.witnesses: the update check judges every trainable tensor on its own.

The check replays each logged step with torch.optim.SGD's update function on the manual
side's weights, gradients and momentum buffers, all tensors in one flat pass: a mistake in
one tensor's update must be flagged at that tensor and nowhere else, and a correct update
must pass in float64 and float32 alike.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual
from experiments.core.config import load_config
from experiments.core.runner import run_experiment

#: biases on (four tensors), every SGD term on: weight decay, momentum, dampening-free Nesterov
FULL_SGD = ("bias=true", "steps=12", "log_every=1", "momentum=0.9", "nesterov=true",
            "weight_decay=0.05", "mode=synced")
SKIPPED = "layers.0.bias"


def _no_weight_decay_on_one_tensor(self, grads):
    """manual.SGD's step with weight decay left out for SKIPPED only."""
    real_wd = self.weight_decay
    for key, g in grads.items():
        self.weight_decay = 0.0 if key == SKIPPED else real_wd
        REAL_STEP(self, {key: g})
    self.weight_decay = real_wd


REAL_STEP = manual.SGD.step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_correct_update_passes_in_every_tensor(dtype):
    r = run_experiment(load_config("seed", [*FULL_SGD, f"dtype={dtype}"]))
    g = r.grads
    assert set(g["param"]) == {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                               "layers.1.bias"}
    assert (g["update_max_abs_diff"] <= g["update_tol"]).all(), g
    if dtype == "float64":   # a fixed bound beside the derived one
        assert (g["update_max_abs_diff"] <= 1e-12 * np.maximum(g["weight_max_abs"], 1)).all()


def test_a_mistake_in_one_tensor_is_flagged_there_only(monkeypatch):
    monkeypatch.setattr(manual.SGD, "step", _no_weight_decay_on_one_tensor)
    r = run_experiment(load_config("seed", list(FULL_SGD)))
    g = r.grads.set_index("param")
    ratio = g["update_max_abs_diff"] / g["update_tol"]
    # the biases start at 0, so weight decay on them matters from step 1 on
    skipped = ratio.loc[SKIPPED][g.loc[SKIPPED, "step"] >= 1]
    assert len(skipped) == 11 and (skipped > 1e6).all(), skipped
    others = g.drop(index=SKIPPED)
    assert (others["update_max_abs_diff"] <= others["update_tol"]).all(), others
    assert (others["update_max_abs_diff"] <= 1e-12 * np.maximum(others["weight_max_abs"], 1)
            ).all()
