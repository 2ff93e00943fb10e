"""Slips in check/ and explain/ that the rest of the suite let through, each with a test
that fails on it.

1. ``diagnosis.first_param`` ranking a layer's bias before its weight.
2. The update diagnosis reading an update that ignores lr (c = 1/lr) through c/lr instead
   of c·lr, so it is named "some factor" or "lr twice".
3. The learner's ``update`` called with lr = 1 instead of the config's lr (at the initial
   point or in training); and an ``update`` that hard-codes lr = 1 passing on a config
   whose lr is 1.
4. A traced backward pass (explain's chain rule) keeping the live weight array instead of
   a copy, so a later update changes the recorded numbers.

The expected values are independent of the code under test: the backprop order is the
definition (output layer first, weight before bias), the learning rates are the ones the
test passes, and the traced W is compared with a copy taken before the update.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual
from experiments.teaching.check import check_function
from experiments.teaching.check.diagnosis import first_param

# -- 1. first_param: output layer first, each layer's weight before its bias ------------------

KEYS = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]


@pytest.mark.parametrize("differing,first", [
    (["layers.1.bias", "layers.1.weight"], "layers.1.weight"),
    (["layers.1.weight", "layers.1.bias"], "layers.1.weight"),
    (KEYS, "layers.1.weight"),
    (["layers.0.bias", "layers.0.weight"], "layers.0.weight"),
    (["layers.0.weight", "layers.1.bias"], "layers.1.bias"),
    ([], ""),
])
def test_first_param_weight_before_bias(differing, first):
    for keys in (KEYS, KEYS[::-1]):      # the answer cannot come from the keys' order
        assert first_param(differing, keys) == first


# -- 2 and 3. the learner's update and its lr ------------------------------------------------

def _gradients(params, X, Y):
    """Correct torch-convention gradients of the seed network (3-4-1, no biases, ½SSE)."""
    W0, W1 = params["layers.0.weight"], params["layers.1.weight"]
    a1 = 1 / (1 + np.exp(-(X @ W0.T)))                  # (N, 4)
    A = 1 / (1 + np.exp(-(a1 @ W1.T)))                  # (N, 1)
    d1 = (A - Y) * A * (1 - A)                          # (N, 1)
    d0 = (d1 @ W1) * a1 * (1 - a1)                      # (N, 4)
    return {"layers.0.weight": d0.T @ X, "layers.1.weight": d1.T @ a1}


def _stepper(step):
    """An update(params, grads, lr) whose step size is ``step(lr)``."""
    def update(params, grads, lr):
        return {k: params[k] - step(lr) * grads[k] for k in params}
    return update


@pytest.mark.parametrize("lr,step,words", [
    (0.5, lambda lr: 1.0, "ignores the learning rate: w − ∂E/∂w (called with lr = 0.5"),
    (4.0, lambda lr: 1.0, "ignores the learning rate: w − ∂E/∂w (called with lr = 4"),
    (0.5, lambda lr: lr * lr, "applies the learning rate twice: w − lr²·∂E/∂w (called with "
                              "lr = 0.5)"),
    (1.0, lambda lr: 1.0, "ignores the learning rate: w − ∂E/∂w (called with lr = 0.5"),
])
def test_update_lr_slips_named(lr, step, words):
    r = check_function(_gradients, "seed", update=_stepper(step), overrides=[f"lr={lr}"],
                       steps=1)
    assert (r.status, r.kind) == ("differ", "update"), r.explanation
    assert words in r.message, r.message


def test_update_called_with_the_configs_lr():
    seen = []

    def update(params, grads, lr):
        seen.append(lr)
        return {k: params[k] - lr * grads[k] for k in params}

    r = check_function(_gradients, "seed", update=update, overrides=["lr=0.3"], steps=3)
    assert r.agree, r.explanation
    # the initial point: the config's lr, then its half; then one call per training step
    assert seen == [0.3, 0.15, 0.3, 0.3, 0.3]


# -- 4. the traced backward pass keeps copies ---------------------------------------------------

@pytest.mark.parametrize("order", ["simultaneous", "sequential"])
def test_trace_keeps_a_copy_of_the_weights(order):
    rng = np.random.default_rng(0)
    sizes = (3, 4, 2)
    params = {"layers.0.weight": rng.normal(size=(4, 3)), "layers.0.bias": rng.normal(size=4),
              "layers.1.weight": rng.normal(size=(2, 4)), "layers.1.bias": rng.normal(size=2)}
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    if order == "sequential":
        from experiments.teaching.explain.model import SequentialMLP
        net = SequentialMLP(sizes, 0.5, params=params)
    else:
        net = manual.MLP(sizes, params=params)
    trace: list[manual.LayerTrace] = []
    grads = net.backward(net.forward_cache(X), Y, trace=trace)
    recorded = [t.W.copy() for t in trace]
    manual.SGD(net.param_arrays, lr=0.5).step(grads)       # a later update, in place
    for t, before in zip(trace, recorded, strict=True):
        assert t.W is not net.param_arrays[f"layers.{t.layer}.weight"]
        np.testing.assert_array_equal(t.W, before)
