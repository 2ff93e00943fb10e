"""Multi-layer perceptron with backpropagation derived and written by hand.

Conventions (the same as torch.nn.Linear, so parameter dicts move between the two):
    X        (N, D)        one sample per row
    W_l      (n_l, n_{l-1}) ``layers.{l-1}.weight``;  b_l (n_l,) ``layers.{l-1}.bias``
    z_l      = a_{l-1} W_lᵀ + b_l          (N, n_l)   pre-activation ("net input")
    a_l      = f_l(z_l)                    (N, n_l)   activation ("out"), a_0 = X
    A = a_L  the network output (N, K); the loss E(A, Y) is defined in ``manual.losses``.

Hidden layers use ``activation``, the last layer ``output_activation``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from manual._array import namespace, to_numpy
from manual.activations import ACTIVATIONS
from manual.losses import LOSSES, targets_for

DTYPES = ("float64", "float32")


def parameter_shapes(sizes: Sequence[int], bias) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the parameter dict, exactly as torch's ``state_dict()``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        shapes[f"layers.{i}.weight"] = (n_out, n_in)
        if bias is not False:
            shapes[f"layers.{i}.bias"] = (n_out,)
    return shapes


def check_spec(sizes, activation, output_activation, bias, loss, dtype) -> tuple[int, ...]:
    """Validate the network spec; return ``sizes`` as a tuple. Raises ``ValueError``."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(f"sizes must be a list of layer widths like [3, 4, 1], got {sizes!r}")
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 entries (inputs, outputs), got {list(sizes)}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ValueError(f"every layer width must be an integer >= 1, got {list(sizes)}")
    for key, name in (("activation", activation), ("output_activation", output_activation)):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown {key} {name!r}; choose one of {sorted(ACTIVATIONS)}")
    if not any(bias is mode for mode in (True, False)) and bias != "frozen":
        raise ValueError(f"bias must be True, False or 'frozen', got {bias!r}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    if loss == "bce" and output_activation != "sigmoid":
        raise ValueError(
            f"loss 'bce' needs outputs in [0, 1]: use output_activation='sigmoid', "
            f"not {output_activation!r}"
        )
    if loss == "cross_entropy" and sizes[-1] < 2:
        raise ValueError("loss 'cross_entropy' needs at least 2 outputs (one per class)")
    return tuple(int(s) for s in sizes)


def check_params(params: Mapping, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Exactly the expected keys, each with the expected shape. Raises ``ValueError``."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in shapes if k not in params]
    extra = [k for k in params if k not in shapes]
    if missing or extra:
        raise ValueError(
            f"params keys do not match the network: missing {missing}, unexpected {extra}"
        )
    for key, shape in shapes.items():
        got = tuple(getattr(params[key], "shape", np.shape(params[key])))
        if got != shape:
            raise ValueError(f"params[{key!r}] has shape {got}, expected {shape}")


@dataclass(frozen=True)
class LayerTrace:
    """One layer of a traced ``MLP.backward`` (native arrays; layer l as the keys count)."""

    layer: int
    dA: object        # ∂E/∂a_{l+1}: the error arriving at the layer's output   (N, n_out)
    fprime: object    # f'(z) through the stored activation                     (N, n_out)
    delta: object     # δ = ∂E/∂z = dA ⊙ f'                                      (N, n_out)
    W: object         # a copy of the W that δ went back through                (n_out, n_in)


class MLP:
    """A sigmoid (or tanh/relu/identity) MLP whose gradients are derived by hand.

    >>> net = MLP([3, 4, 1], bias=False, loss="half_sse", params=p)
    >>> net.gradients(X, Y)["layers.0.weight"].shape
    (4, 3)

    ``params`` may hold numpy arrays (the default path) or any other Array API arrays,
    e.g. torch tensors on a GPU: the same hand derivations then run in that namespace.
    Public methods return numpy; ``loss_and_gradients(..., native=True)`` keeps the
    arrays where they are (used by the training loop, which never leaves the device).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "sigmoid",
        output_activation: str | None = None,
        bias: bool | str = True,
        loss: str = "half_sse",
        dtype: str = "float64",
        *,
        params: Mapping,
    ):
        output_activation = activation if output_activation is None else output_activation
        self.sizes = check_spec(sizes, activation, output_activation, bias, loss, dtype)
        self.activation, self.output_activation = activation, output_activation
        self.bias, self.loss_name, self.dtype = bias, loss, dtype
        self.shapes = parameter_shapes(self.sizes, bias)
        check_params(params, self.shapes)
        first = next(iter(params.values()))
        self.xp = namespace(first) if not isinstance(first, (list, tuple, float, int)) else np
        if self.xp is np:
            self.param_arrays = {k: np.array(v, dtype=dtype) for k, v in params.items()}
        else:  # e.g. torch tensors: keep their device, cast to our dtype
            xdtype = getattr(self.xp, dtype)
            self.param_arrays = {k: self.xp.astype(v, xdtype, copy=True) for k, v in params.items()}
        #: keys that gradient descent updates (frozen biases are present but excluded)
        self.trainable = [k for k in self.shapes if not (bias == "frozen" and k.endswith("bias"))]
        L = len(self.sizes) - 1
        self._f = [ACTIVATIONS[activation]] * (L - 1) + [ACTIVATIONS[output_activation]]
        self._loss, self._loss_grad = LOSSES[loss]

    # -- conversions ------------------------------------------------------------------
    def _as_input(self, X):
        """Inputs in the parameters' namespace, dtype and device."""
        W = self.param_arrays["layers.0.weight"]
        if self.xp is np:
            X = np.asarray(X)
            return X if X.dtype == W.dtype else X.astype(W.dtype)
        return self.xp.asarray(X, dtype=W.dtype, device=W.device)

    def _as_target(self, Y):
        W = self.param_arrays["layers.0.weight"]
        if self.loss_name == "cross_entropy" and np.ndim(Y) == 1:  # integer class labels
            if self.xp is np:
                return np.asarray(Y)
            return self.xp.asarray(Y, device=W.device)
        return self._as_input(Y)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """A numpy copy of every parameter (frozen ones included)."""
        return {k: to_numpy(v) for k, v in self.param_arrays.items()}

    def set_params(self, params: Mapping) -> None:
        """Overwrite the parameters in place (values are copied, dtype kept)."""
        check_params(params, self.shapes)
        for k, v in params.items():
            dst = self.param_arrays[k]
            if self.xp is np:
                dst[...] = v
            else:
                dst[...] = self.xp.asarray(v, dtype=dst.dtype, device=dst.device)

    # -- forward ----------------------------------------------------------------------
    def forward_cache(self, X) -> list:
        """Forward pass keeping every activation [a_0 = X, a_1, ..., a_L] for backward.

        z_l = a_{l-1} W_lᵀ + b_l,  a_l = f_l(z_l).  Only a_l is kept: each f'_l is
        written through a_l (see ``manual.activations``), so z_l is not needed later.
        """
        xp, p = self.xp, self.param_arrays
        a = [self._as_input(X)]                           # a_0 = X            (N, D)
        for l, (f, _) in enumerate(self._f):
            z = a[-1] @ p[f"layers.{l}.weight"].T         # z_{l+1}            (N, n_{l+1})
            if self.bias is not False:
                z = z + p[f"layers.{l}.bias"]             # + b_{l+1}          (N, n_{l+1})
            a.append(f(z, xp))                            # a_{l+1} = f(z)     (N, n_{l+1})
        return a

    def forward(self, X) -> np.ndarray:
        """The network output A = a_L, shape (N, K), as numpy."""
        return to_numpy(self.forward_cache(X)[-1])

    def loss(self, X, Y) -> float:
        """E(A, Y) as a Python float (see ``manual.losses`` for each definition)."""
        A = self.forward_cache(X)[-1]                                    # (N, K)
        return float(self.loss_value(A, self.encode_targets(A, Y)))

    # -- backward: the chain rule's factors, one public method each ---------------------
    # ``backward`` chains them; each computes one factor and may be overridden to change
    # that factor alone (the bug gallery injects its mistakes here). ``loss_value`` is the
    # forward pass's last factor, E itself: overriding it changes the loss, not ∂E/∂A.
    # Layer index l counts from 0 as the parameter keys do: layer l holds W =
    # ``layers.{l}.weight``, is fed by a[l] and produces a[l + 1].
    def encode_targets(self, A, Y):
        """Y as the loss sees it: (N, K) like A (integer labels become one-hot)."""
        return targets_for(self.loss_name, A, self._as_target(Y), self.xp)

    def loss_value(self, A, T):
        """E(A, T) for the configured loss and reduction (``manual.losses``)    ()."""
        return self._loss(A, T, self.xp)

    def loss_gradient(self, A, T):
        """∂E/∂A for the configured loss and reduction (``manual.losses``)      (N, K)."""
        return self._loss_grad(A, T, self.xp)

    def activation_derivative(self, l: int, a_out):
        """f'_l(z) = ∂a/∂z of layer l, taken from its stored output a = f_l(z)   (N, n_out)."""
        return self._f[l][1](a_out, self.xp)

    def weight_gradient(self, l: int, delta, a_in):
        """∂E/∂W = δᵀ a_in, summed over the batch       (n_out, n_in) like W."""
        return delta.T @ a_in

    def bias_gradient(self, l: int, delta):
        """∂E/∂b = Σ_n δ[n, :]                          (n_out,) like b."""
        return self.xp.sum(delta, axis=0)

    def input_gradient(self, l: int, delta):
        """∂E/∂a_in = δ W: the error handed to the layer below   (N, n_in)."""
        return delta @ self.param_arrays[f"layers.{l}.weight"]

    def backward(self, a: list, Y, *, trace: list | None = None, after_layer=None) -> dict:
        """Backpropagation: the chain rule, last layer to first.

            δ_L = ∂E/∂A ⊙ f'_L(z_L)                       output delta      (N, n_L)
            δ_l = (δ_{l+1} W_{l+1}) ⊙ f'_l(z_l)           hidden deltas     (N, n_l)
            ∂E/∂W_l = δ_lᵀ a_{l-1}                        (n_l, n_{l-1}) like W_l
            ∂E/∂b_l = Σ_n δ_l[n, :]                       (n_l,)          like b_l

        In the 2-2-2 worked example's words, ∂E/∂w = ∂E/∂out · ∂out/∂net · ∂net/∂w:
        δ is ∂E/∂net, and ∂net/∂w is the activation a_{l-1} feeding that weight.
        ``Y`` may be raw targets or already encoded (N, K) ones.
        Returns native arrays (same namespace/device as the parameters) for the
        trainable parameters only.

        Extension points (documented, for teaching tools): ``trace``, a list, receives one
        ``LayerTrace`` per layer (last first) with ∂E/∂a, f', δ and the W the error went
        back through; ``after_layer(l, grads)`` is called once layer l's gradients are
        known and before δ goes back through its W (an in-place update there gives the
        "sequential" update order).
        """
        A = a[-1]                                                        # (N, K)
        dA = self.loss_gradient(A, self.encode_targets(A, Y))            # ∂E/∂A   (N, K)
        grads = {}
        for l in range(len(self._f) - 1, -1, -1):                        # L-1 ... 0
            fprime = self.activation_derivative(l, a[l + 1])             # (N, n_out)
            delta = dA * fprime                                          # δ = ∂E/∂z (N, n_out)
            grads[f"layers.{l}.weight"] = self.weight_gradient(l, delta, a[l])
            if self.bias is True:
                grads[f"layers.{l}.bias"] = self.bias_gradient(l, delta)
            if after_layer is not None:
                after_layer(l, grads)
            if trace is not None:
                trace.append(LayerTrace(l, dA, fprime, delta,
                                        self.param_arrays[f"layers.{l}.weight"] + 0))
            if l > 0:
                dA = self.input_gradient(l, delta)                       # ∂E/∂a_l  (N, n_in)
        return {k: grads[k] for k in self.trainable}                     # in key order

    def loss_and_gradients(self, X, Y, *, native: bool = False):
        """One forward and one backward pass: ``(E as float, {key: ∂E/∂param})``.

        The forward pass's activations stay in ``self.last_activations`` and its output in
        ``self.last_output`` (native arrays).
        """
        a = self.last_activations = self.forward_cache(X)
        A = self.last_output = a[-1]                                     # (N, K)
        T = self.encode_targets(A, Y)                                    # (N, K) encoded once
        grads = self.backward(a, T)
        E = float(self.loss_value(A, T))
        if not native:
            grads = {k: to_numpy(g) for k, g in grads.items()}
        return E, grads

    def gradients(self, X, Y) -> dict[str, np.ndarray]:
        """∂E/∂param for every trainable parameter, as numpy (same keys and shapes)."""
        return self.loss_and_gradients(X, Y)[1]
