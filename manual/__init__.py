"""handgrad's hand-derived side: forward, backward and SGD written out by hand.

Never imports torch. Runs on numpy by default; the same code runs on any Array API
array (e.g. torch tensors on CPU or CUDA) handed to it as parameters.
"""

from manual.activations import ACTIVATIONS
from manual.gradcheck import finite_difference_gradients
from manual.losses import LOSSES
from manual.network import MLP, LayerTrace, check_params, check_spec, parameter_shapes
from manual.optim import SGD

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "MLP",
    "SGD",
    "LayerTrace",
    "check_params",
    "check_spec",
    "finite_difference_gradients",
    "parameter_shapes",
]
