"""The loss spelled out: one formula with its reduction for every loss handgrad supports,
shown by `handgrad list` and in the check header.

The texts are pinned literally, and each reduction word is checked against the loss
itself (manual.losses, which test_agreement holds to torch's): a loss summed over the batch
doubles when every sample appears twice, an average does not; one averaged over the
outputs too is unchanged when every output column appears twice.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual
from experiments.cli import main
from experiments.core.config import load_config
from experiments.core.loss_formula import loss_formula, network_text
from experiments.teaching.check import check_function

PINNED = {
    "half_sse": "E = ½ Σ_n Σ_k (A − Y)², summed over the batch",
    "mse": "E = (1/(N·K)) Σ_n Σ_k (A − Y)², averaged over the batch and the outputs",
    "bce": "E = −(1/(N·K)) Σ_n Σ_k [Y log A + (1 − Y) log(1 − A)], averaged over the batch "
           "and the outputs",
    "cross_entropy": "E = −(1/N) Σ_n log softmax(A_n)[Y_n], Y_n the integer label of sample "
                     "n, averaged over the batch",
}


def test_every_loss_has_its_formula():
    assert sorted(manual.LOSSES) == sorted(PINNED) == ["bce", "cross_entropy", "half_sse", "mse"]
    for loss, text in PINNED.items():
        assert loss_formula(loss) == text


@pytest.mark.parametrize("loss", sorted(PINNED))
def test_reduction_words_match_the_loss(loss):
    rng = np.random.default_rng(1)
    E_of, _ = manual.LOSSES[loss]
    A = rng.uniform(0.1, 0.9, size=(5, 3))                               # (N, K)
    T = (np.eye(3)[rng.integers(0, 3, 5)] if loss == "cross_entropy"
         else rng.uniform(0, 1, size=(5, 3)))                            # (N, K)
    E = float(E_of(A, T, np))
    twice_n = float(E_of(np.vstack([A, A]), np.vstack([T, T]), np))     # every sample twice
    summed = "summed over the batch" in loss_formula(loss)
    # one sum or mean of 5 or 10 terms: agreement to a few ulps of E
    assert twice_n == pytest.approx(2 * E if summed else E, rel=1e-14)
    if loss != "cross_entropy":                                          # softmax couples k
        twice_k = float(E_of(np.hstack([A, A]), np.hstack([T, T]), np))
        over_k = "averaged over the batch and the outputs" in loss_formula(loss)
        assert twice_k == pytest.approx(E if over_k else 2 * E, rel=1e-14)


def test_list_and_check_header_spell_it_out(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    seed = out.index(next(ln for ln in out if ln.startswith("seed ")))
    assert out[seed + 1].split() == ("network D-4-K sigmoid, no biases; loss half_sse: "
                                     + PINNED["half_sse"]).split()
    assert network_text(load_config("iris")) == "D-8-K sigmoid hidden, identity output, biases"

    def gradients(params, X, Y):   # wrong on purpose: the header is printed anyway
        return {k: np.zeros_like(v) for k, v in params.items()}
    r = check_function(gradients, "seed", steps=1)
    assert r.explanation.splitlines()[:2] == [
        "handgrad check: gradients (convention torch) against autograd on seed: sizes "
        "3-4-1 sigmoid, no biases, half_sse, float64",
        "loss: " + PINNED["half_sse"]]
