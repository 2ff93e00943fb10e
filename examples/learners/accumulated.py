"""A classic mistake: gradients accumulated across calls, never reset.

The running sums live outside the function (as ``.grad`` does in a framework) and each call
adds this batch's gradient to them, so the second call returns the first call's gradient
plus its own. Each call must start from zero. Seed case (no biases), handgrad's own
convention, any depth.

    handgrad check examples/learners/accumulated.py seed
"""

import numpy as np

running = {}   # MISTAKE: state kept between calls


def gradients(params, X, Y):
    depth = len(params)                                        # weights only: no biases
    outs = [X]
    for i in range(depth):                                     # out_i = σ(out_{i-1} W_iᵀ)
        outs.append(1 / (1 + np.exp(-(outs[-1] @ params[f"layers.{i}.weight"].T))))
    err = (outs[-1] - Y) * outs[-1] * (1 - outs[-1])           # δ at the output (N, 1)
    for i in range(depth - 1, -1, -1):
        key = f"layers.{i}.weight"
        running[key] = running.get(key, 0) + err.T @ outs[i]   # MISTAKE: += without a reset
        err = (err @ params[key]) * outs[i] * (1 - outs[i])    # δ one layer down
    return {key: g.copy() for key, g in running.items()}
