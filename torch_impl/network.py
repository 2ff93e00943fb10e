"""The same MLP as a torch.nn.Module: gradients by autograd, updates by torch.optim.SGD.

``layers.{i}`` are ``torch.nn.Linear`` modules, so ``state_dict()`` keys and shapes are
the shared parameter dict's. Losses are torch's own modules (``MSELoss``, ``BCELoss``,
``CrossEntropyLoss``), with ½·Σ(ŷ − y)² for ``half_sse``. Never imports ``manual``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


class HalfSSELoss(nn.Module):
    """E = ½ Σ_n Σ_k (ŷ − y)²: summed over the batch, not averaged."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * nn.functional.mse_loss(output, target, reduction="sum")


LOSSES = {
    "half_sse": HalfSSELoss,
    "mse": nn.MSELoss,              # mean over all N·K elements (torch's default reduction)
    "bce": nn.BCELoss,              # mean over all N·K elements, on sigmoid outputs
    "cross_entropy": nn.CrossEntropyLoss,  # log-softmax + NLL, mean over N
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _check_spec(sizes, activation, output_activation, bias, loss, dtype) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
        raise ValueError(f"sizes must list at least 2 layer widths like [3, 4, 1], got {sizes!r}")
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"every layer width must be an integer >= 1, got {list(sizes)}")
    for key, name in (("activation", activation), ("output_activation", output_activation)):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown {key} {name!r}; choose one of {sorted(ACTIVATIONS)}")
    if not (bias is True or bias is False or bias == "frozen"):
        raise ValueError(f"bias must be True, False or 'frozen', got {bias!r}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    if loss == "bce" and output_activation != "sigmoid":
        raise ValueError("loss 'bce' needs output_activation='sigmoid' (outputs in [0, 1])")
    if loss == "cross_entropy" and sizes[-1] < 2:
        raise ValueError("loss 'cross_entropy' needs at least 2 outputs (one per class)")
    return tuple(int(s) for s in sizes)


class Network(nn.Module):
    """``layers`` = [Linear, f, Linear, f, ..., Linear, f_out]; state_dict keys layers.{i}.*"""

    def __init__(self, sizes, activation, output_activation, bias):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out, bias=bias is not False)
            for n_in, n_out in itertools.pairwise(sizes)
        )
        L = len(self.layers)
        self.activations = nn.ModuleList(
            ACTIVATIONS[activation if i < L - 1 else output_activation]() for i in range(L)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, f in zip(self.layers, self.activations, strict=True):
            x = f(linear(x))
        return x


class MLP:
    """The shared Python API over a ``Network``: numpy in, numpy out, autograd inside.

    ``device`` is any torch device string ("cpu", "cuda", "cuda:1").
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
        device: str = "cpu",
    ):
        output_activation = activation if output_activation is None else output_activation
        self.sizes = _check_spec(sizes, activation, output_activation, bias, loss, dtype)
        self.activation, self.output_activation = activation, output_activation
        self.bias, self.loss_name, self.dtype = bias, loss, dtype
        self.device = torch.device(device)
        self.torch_dtype = DTYPES[dtype]
        self.module = Network(self.sizes, activation, output_activation, bias).to(
            device=self.device, dtype=self.torch_dtype
        )
        self.set_params(params)
        if bias == "frozen":
            for layer in self.module.layers:
                layer.bias.requires_grad_(False)
        self.criterion = LOSSES[loss]()
        #: the parameters autograd differentiates and the optimizer updates, by key
        self.trainable = {k: v for k, v in self.module.named_parameters() if v.requires_grad}

    def set_params(self, params: Mapping) -> None:
        """Copy a shared parameter dict into the module (strict: keys and shapes must match)."""
        if not isinstance(params, Mapping):
            raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
        state = self.module.state_dict()
        missing = [k for k in state if k not in params]
        extra = [k for k in params if k not in state]
        if missing or extra:
            raise ValueError(
                f"params keys do not match the network: missing {missing}, unexpected {extra}"
            )
        with torch.no_grad():
            for key, dst in state.items():
                src = torch.as_tensor(np.asarray(params[key]) if not torch.is_tensor(params[key])
                                      else params[key])
                if tuple(src.shape) != tuple(dst.shape):
                    raise ValueError(
                        f"params[{key!r}] has shape {tuple(src.shape)}, expected {tuple(dst.shape)}"
                    )
                dst.copy_(src)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """A numpy copy of every parameter, keyed as ``state_dict()``."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}

    def as_input(self, X) -> torch.Tensor:
        return torch.as_tensor(X, dtype=self.torch_dtype, device=self.device)

    def as_target(self, Y) -> torch.Tensor:
        if self.loss_name == "cross_entropy" and np.ndim(Y) == 1:   # class indices
            return torch.as_tensor(Y, dtype=torch.long, device=self.device)
        return self.as_input(Y)

    def forward(self, X) -> np.ndarray:
        with torch.no_grad():
            return self.module(self.as_input(X)).cpu().numpy()

    def loss(self, X, Y) -> float:
        with torch.no_grad():
            return float(self.criterion(self.module(self.as_input(X)), self.as_target(Y)))

    def loss_and_gradients(self, X, Y, *, native: bool = False):
        """Forward, ``loss.backward()``; returns ``(E, {key: .grad})`` (grads reset first).

        The output of that forward pass stays in ``self.last_output`` (a detached tensor).
        """
        for p in self.trainable.values():
            p.grad = None
        out = self.module(self.as_input(X))
        self.last_output = out.detach()
        E = self.criterion(out, self.as_target(Y))
        E.backward()
        grads = {k: p.grad for k, p in self.trainable.items()}
        if not native:
            grads = {k: g.detach().cpu().numpy().copy() for k, g in grads.items()}
        return float(E.detach()), grads

    def gradients(self, X, Y) -> dict[str, np.ndarray]:
        return self.loss_and_gradients(X, Y)[1]

    def optimizer(self, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                  weight_decay: float = 0.0, nesterov: bool = False) -> torch.optim.SGD:
        """``torch.optim.SGD`` over the trainable parameters (frozen biases excluded)."""
        return torch.optim.SGD(list(self.trainable.values()), lr=lr, momentum=momentum,
                               dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
