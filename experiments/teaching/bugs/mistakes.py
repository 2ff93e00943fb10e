"""The gallery's hand-derivation mistakes: ``manual.MLP`` with ONE method overridden each.

``manual.MLP.backward`` chains public factors (``loss_gradient``, ``activation_derivative``,
``weight_gradient``, ...); each bug below overrides one of them, or wraps ``backward``
itself, and inherits everything else, so the bug is exactly the lines shown. A class's
docstring gives the mistake (first paragraph) and the signature it leaves against autograd.
"""

from __future__ import annotations

import manual
from manual.activations import sigmoid, sigmoid_prime

CONTROL = "control"   # the unmodified manual.MLP, run beside the bugs


class SigmaPrimeOfActivation(manual.MLP):
    """hidden layers' σ′ taken of the activation: σ′(a) = σ(a)(1 − σ(a)) instead of
    a(1 − a) (a σ′(z)-style helper handed the stored a)

    Layers below the output differ, no constant ratio: layer_confined, entering at the last
    hidden layer's delta."""

    def activation_derivative(self, l, a_out):
        if l == len(self.sizes) - 2:                                     # the output layer
            return super().activation_derivative(l, a_out)
        return sigmoid_prime(sigmoid(a_out, self.xp), self.xp)   # BUG: σ′(a)  (N, n_out)


class MissingOutputSigmaPrime(manual.MLP):
    """output delta δ_L = ∂E/∂A, the factor σ′(z_L) = A(1 − A) missing

    Every layer differs from step 0, no constant ratio: the error enters at the output."""

    def activation_derivative(self, l, a_out):
        if l < len(self.sizes) - 2:                                      # hidden layers
            return super().activation_derivative(l, a_out)
        return self.xp.ones_like(a_out)                  # BUG: f′(z_L) left out (N, K)


class MissingMean(manual.MLP):
    """mse's 1/M missing: ∂E/∂A = 2(A − Y) instead of 2(A − Y)/M, M = N·K

    constant_ratio c = M = N·K on every parameter."""

    def loss_gradient(self, A, T):
        return 2 * (A - T)                               # BUG: no 1/M            (N, K)


class MissingFactor2(manual.MLP):
    """mse's factor 2 missing: ∂E/∂A = (A − Y)/M instead of 2(A − Y)/M

    constant_ratio c = 1/2 on every parameter."""

    def loss_gradient(self, A, T):
        return (A - T) / (A.shape[0] * A.shape[1])       # BUG: no 2              (N, K)


class TransposedWeightGradient(manual.MLP):
    """∂E/∂W computed as a_{l-1}ᵀ δ (in, out) and reshaped to (out, in): a plain transpose
    for square layers, scrambled entries for non-square ones

    transposed on every weight with both dimensions > 1; biases agree."""

    def weight_gradient(self, l, delta, a_in):
        # BUG: a_inᵀ δ is (n_in, n_out); reshaped into W's (n_out, n_in) the error hides
        return self.xp.reshape(a_in.T @ delta, (delta.shape[1], a_in.shape[1]))


class AccumulatedGradients(manual.MLP):
    """gradients summed across steps instead of reset (+= without zeroing)

    Agree at step 0, differ from step 1: accumulated."""

    def backward(self, a, Y, **hooks):
        grads = super().backward(a, Y, **hooks)
        total = getattr(self, "total", None)             # BUG: += across steps, never reset
        self.total = grads if total is None else {k: total[k] + grads[k] for k in grads}
        return {k: v + 0 for k, v in self.total.items()}         # copies, like a fresh pass


#: name -> the bugged network, in the gallery's order
BUGS: dict[str, type[manual.MLP]] = {
    "sigma_prime_of_activation": SigmaPrimeOfActivation,
    "missing_output_sigma_prime": MissingOutputSigmaPrime,
    "missing_mean": MissingMean,
    "missing_factor_2": MissingFactor2,
    "transposed_weight_gradient": TransposedWeightGradient,
    "accumulated_gradients": AccumulatedGradients,
}
#: the networks a bug is a mistake for: (attribute, value)
NEEDS = {"sigma_prime_of_activation": ("activation", "sigmoid"),
         "missing_mean": ("loss_name", "mse"), "missing_factor_2": ("loss_name", "mse")}


def what(bug: str) -> str:
    """The mistake in one line: the first paragraph of the bug's class docstring."""
    if bug not in BUGS:
        return "unmodified manual.MLP"
    return " ".join(BUGS[bug].__doc__.split("\n\n")[0].split())


def buggy_mlp(bug: str, *args, **kwargs) -> manual.MLP:
    """``manual.MLP(*args, **kwargs)`` with ``bug`` injected (``CONTROL``: unmodified).
    ``ValueError`` for an unknown bug or a network it is not a mistake for."""
    if bug != CONTROL and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; choose one of {sorted(BUGS)}")
    net = BUGS.get(bug, manual.MLP)(*args, **kwargs)
    attr, want = NEEDS.get(bug, (None, None))
    if attr and getattr(net, attr) != want:
        raise ValueError(f"bug {bug!r} is a mistake in {want}'s derivation; use "
                         f"{attr.removesuffix('_name')}={want!r}")
    return net
