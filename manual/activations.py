"""Activation functions and their derivatives, by hand.

Each derivative is written in terms of the *stored activation* a = f(z), which is what
the forward pass keeps (it is also how autograd's sigmoid/tanh backward works):

    sigmoid   σ(z) = 1 / (1 + e^{-z})     σ'(z) = a (1 − a)
    tanh      tanh(z)                     tanh'(z) = 1 − a²
    relu      max(z, 0)                   relu'(z) = 1 if a > 0 else 0   (0 at z = 0)
    identity  z                           1

All functions take the array namespace ``xp`` so they run on numpy or torch tensors.
"""

from __future__ import annotations


def sigmoid(z, xp):
    """Numerically stable σ(z): never evaluates e^{+|z|}, so no overflow at |z| = 1e4.

    With e = e^{−|z|} ∈ [0, 1]:  σ(z) = 1/(1+e) for z ≥ 0,  e/(1+e) for z < 0, written
    branch-free as max(sign z, e) / (1+e): the numerator is 1 for z > 0 (e ≤ 1), e for
    z < 0 (e > 0 > −1), and 1 = e at z = ±0. (A ``where`` over both branches costs numpy
    a branch per element, more than the exp itself on wide layers.)
    Saturates to exactly 1.0 / 0.0 (e underflows to 0 silently) instead of inf/inf.
    """
    # The textbook 1 / (1 + e^{−z}), split by the sign of z so no exp can overflow:
    e = xp.exp(-xp.abs(z))                        # (N, n)  in [0, 1], cannot overflow
    return xp.maximum(xp.sign(z), e) / (1 + e)    # (N, n)  1/(1+e) if z ≥ 0, e/(1+e) if z < 0


def sigmoid_prime(a, xp):
    """σ'(z) = σ(z)(1 − σ(z)), taken from the stored activation a = σ(z)."""
    return a * (1 - a)                            # (N, n)


def tanh(z, xp):
    """tanh(z) = (e^z − e^{−z}) / (e^z + e^{−z})."""
    return xp.tanh(z)                             # (N, n)


def tanh_prime(a, xp):
    """tanh'(z) = 1 − tanh²(z), from the stored activation a = tanh(z)."""
    return 1 - a * a                              # (N, n)


def relu(z, xp):
    """max(z, 0)."""
    return xp.maximum(z, xp.zeros_like(z))        # (N, n)


def relu_prime(a, xp):
    """relu'(z) = 1 where a > 0 else 0 (the subgradient 0 at z = 0, as torch uses)."""
    return xp.astype(a > 0, a.dtype)              # (N, n)


def identity(z, xp):
    """z itself (a linear unit)."""
    return z                                      # (N, n)


def identity_prime(a, xp):
    return xp.ones_like(a)                        # (N, n)


#: name -> (f(z), f'(z) expressed through a = f(z))
ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_prime),
    "tanh": (tanh, tanh_prime),
    "relu": (relu, relu_prime),
    "identity": (identity, identity_prime),
}
