"""Central finite differences: an independent witness for any gradient.

    ∂E/∂θ_i ≈ (E(θ + h e_i) − E(θ − h e_i)) / 2h

Truncation error is O(h²·E'''), rounding error O(ε·|E|/h); h = 1e-6 in float64 balances
the two near ε^(1/3), so expect about 1e-7 relative agreement for smooth losses (worse
next to a relu kink, which a finite step can straddle).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from manual.network import MLP


def finite_difference_gradients(
    net: MLP, X, Y, keys: Iterable[str] | None = None, h: float = 1e-6
) -> dict[str, np.ndarray]:
    """Central-difference ∂E/∂param in float64 for ``keys`` (default: every trainable one).

    Works on a float64 numpy copy of ``net``; ``net`` itself is not modified. One loop
    over parameter *elements* is inherent here (two loss evaluations each).
    """
    probe = MLP(net.sizes, net.activation, net.output_activation, net.bias, net.loss_name,
                "float64", params=net.params)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y) if np.ndim(Y) == 1 and net.loss_name == "cross_entropy" else \
        np.asarray(Y, dtype=np.float64)
    keys = list(probe.trainable if keys is None else keys)
    unknown = [k for k in keys if k not in probe.shapes]
    if unknown:
        raise ValueError(f"unknown parameter keys {unknown}; the network has {list(probe.shapes)}")
    out = {}
    for key in keys:
        theta = probe.param_arrays[key]           # live array: perturbed in place, restored
        g = np.empty_like(theta)
        for idx in np.ndindex(theta.shape):
            orig = theta[idx]
            theta[idx] = orig + h
            e_plus = probe.loss(X, Y)
            theta[idx] = orig - h
            e_minus = probe.loss(X, Y)
            theta[idx] = orig
            g[idx] = (e_plus - e_minus) / (2 * h)
        out[key] = g
    return out
