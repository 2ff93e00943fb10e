"""handgrad's framework side: torch.nn + autograd + torch.optim.SGD. Never imports manual."""

from torch_impl.network import ACTIVATIONS, LOSSES, MLP, HalfSSELoss, Network

__all__ = ["ACTIVATIONS", "LOSSES", "MLP", "HalfSSELoss", "Network"]
