"""Array-namespace plumbing: the hand derivations run on any Array API array.

numpy arrays get plain ``numpy`` (numpy 2 implements the standard itself, and the
module is faster than a wrapper on tiny networks); anything else (torch tensors on CPU
or CUDA, ...) gets its namespace from ``array_api_compat``. Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, to_device


def namespace(*arrays):
    """The Array API namespace of ``arrays`` (``numpy`` itself for numpy arrays)."""
    if all(is_numpy_array(a) for a in arrays):
        return np
    return array_namespace(*arrays)


def to_numpy(x) -> np.ndarray:
    """A numpy copy of any array (device arrays are moved to the host first)."""
    if is_numpy_array(x):
        return np.array(x, copy=True)
    return np.asarray(to_device(x, "cpu")).copy()
