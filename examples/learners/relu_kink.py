"""A subtle one: relu′ written as ``z >= 0``, which takes 1 at exactly z = 0.

relu has no derivative at 0; autograd (torch.relu's backward) takes 0 there, and so must a
hand derivation that is to agree with it: relu′(z) = (z > 0). It only shows where some z
is exactly 0, which random weights almost never give — relu_kink_init.json puts a hidden
unit with weights (0.5, −0.5, 0) on the seed inputs, so z = 0 for the two samples with
x1 = x2. The seed case with relu layers, handgrad's own convention:

    handgrad check examples/learners/relu_kink.py seed --set activation=relu \
        --set init=examples/learners/relu_kink_init.json
"""

import numpy as np


def gradients(params, X, Y):
    W0, W1 = params["layers.0.weight"], params["layers.1.weight"]   # (4, 3), (1, 4)
    z1 = X @ W0.T                                  # (N, 4)
    a1 = np.maximum(z1, 0)                         # (N, 4)
    z2 = a1 @ W1.T                                 # (N, 1)
    A = np.maximum(z2, 0)                          # (N, 1)
    d2 = (A - Y) * (z2 >= 0)                       # MISTAKE: relu′(0) taken as 1
    d1 = (d2 @ W1) * (z1 >= 0)                     # MISTAKE: relu′(0) taken as 1
    return {"layers.0.weight": d1.T @ X, "layers.1.weight": d2.T @ a1}
