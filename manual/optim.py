"""Stochastic gradient descent written by hand, with torch.optim.SGD's exact semantics.

For each parameter p with gradient g (torch's documented algorithm, maximize=False):

    g ← g + λ p                              if weight_decay λ ≠ 0 (applied before momentum)
    b ← g                                    on the first step with momentum μ ≠ 0
    b ← μ b + (1 − τ) g                      on later steps (τ = dampening)
    g ← g + μ b  (nesterov)   or   g ← b     if μ ≠ 0
    p ← p − lr g

The first-step rule matters: torch starts the momentum buffer at g itself, undamped,
not at (1 − τ) g.
"""

from __future__ import annotations

from collections.abc import Mapping


class SGD:
    """Plain / momentum / Nesterov SGD over a dict of live parameter arrays (updated in place)."""

    def __init__(
        self,
        params: Mapping,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        # The same checks, in the same words, as torch.optim.SGD.
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.params = params
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        #: key -> momentum buffer b (None until the first step), as torch's state
        self.momentum_buffer: dict = {}

    def step(self, grads: Mapping) -> None:
        """Apply one update to every parameter named in ``grads`` (others are left alone)."""
        for key, g in grads.items():
            p = self.params[key]
            if self.weight_decay != 0:
                g = g + self.weight_decay * p                         # like p
            if self.momentum != 0:
                b = self.momentum_buffer.get(key)
                if b is None:
                    b = g + 0                                         # first step: b = g (a copy)
                else:
                    b = self.momentum * b + (1 - self.dampening) * g  # like p
                self.momentum_buffer[key] = b
                g = g + self.momentum * b if self.nesterov else b     # like p
            p -= self.lr * g                                          # in place, like p
