"""A config's network and loss in words, as ``handgrad list`` and the check header say them.

The loss is spelled out with its reduction, in manual.losses' notation (A (N, K) the
output, Y the targets, N the batch size, K the outputs): whether E sums or averages over
the batch is what half the derivation slips (a missing 1/N, an extra ½) turn on.

    >>> loss_formula("half_sse")
    'E = ½ Σ_n Σ_k (A − Y)², summed over the batch'
"""

from __future__ import annotations

#: loss -> (E in manual.losses' notation, its reduction over the batch)
FORMULAS = {
    "half_sse": ("E = ½ Σ_n Σ_k (A − Y)²", "summed over the batch"),
    "mse": ("E = (1/(N·K)) Σ_n Σ_k (A − Y)²", "averaged over the batch and the outputs"),
    "bce": ("E = −(1/(N·K)) Σ_n Σ_k [Y log A + (1 − Y) log(1 − A)]",
            "averaged over the batch and the outputs"),
    "cross_entropy": ("E = −(1/N) Σ_n log softmax(A_n)[Y_n], Y_n the integer label of "
                      "sample n", "averaged over the batch"),
}


def loss_formula(loss: str) -> str:
    """The loss ``loss`` (a config's ``loss``) as its formula and its reduction."""
    formula, reduction = FORMULAS[loss]
    return f"{formula}, {reduction}"


def network_text(cfg) -> str:
    """``3-4-1 sigmoid, no biases``: a config's network in words; before the data has filled
    in the sizes (``runner.resolve``), its widths from the inputs D to the outputs K:
    ``D-4-K``."""
    bias = {True: "biases", False: "no biases", "frozen": "frozen biases"}[cfg.bias]
    acts = (cfg.activation if cfg.activation == cfg.resolved_output_activation
            else f"{cfg.activation} hidden, {cfg.resolved_output_activation} output")
    sizes = cfg.sizes or ("D", *cfg.hidden, "K")
    return f"{'-'.join(map(str, sizes))} {acts}, {bias}"
