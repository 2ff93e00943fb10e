"""``handgrad bench``'s kernels and clocks, deliberately minimal: a timed step is the bare
library calls (``loss_and_gradients(X, Y, native=True)``, the optimiser's ``step``), not
the lockstep engine (benchmarks/runner_overhead.py measures that one's cost).

The GEMM floor, per layer l with a_{l-1} (N, n_in), W_l (n_out, n_in), δ_l (N, n_out):
forward z_l = a_{l-1} W_lᵀ, backward ∂E/∂W_l = δ_lᵀ a_{l-1} and, for l > 1 (∂E/∂X is
unused), ∂E/∂a_{l-1} = δ_l W_l: N·n_in·n_out multiply-adds each, 2 FLOPs per multiply-add.
``count_numpy_calls`` runs one manual-numpy step on an ndarray subclass that counts the
outermost numpy calls (ufuncs, ``@``, in-place updates, reductions, ``where``, ``sum``).
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

import manual
import torch_impl

LR = 0.01        # small: the weights barely move, so timings do not drift with saturation


@dataclass(frozen=True)
class BenchCase:
    """One network and batch: sigmoid everywhere, the given bias mode and loss."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    bias: bool | str = True
    loss: str = "mse"

    @property
    def label(self) -> str:
        return "-".join(map(str, self.sizes))


CASES = (
    BenchCase("worked-2-2-2", (2, 2, 2), 1, "frozen", "half_sse"),  # the classic example
    BenchCase("seed", (3, 4, 1), 4, False, "half_sse"),             # the seed case
    BenchCase("digits", (64, 30, 10), 32),                          # digits' net and batch
    BenchCase("mnist", (784, 100, 10), 256),
    BenchCase("wide-512", (512, 512, 512), 256),
    BenchCase("wide-1024", (1024, 1024, 1024), 1024),
    BenchCase("wide-2048", (2048, 2048, 2048), 2048),
)
CASES_BY_NAME = {c.name: c for c in CASES}


def floor_flops(sizes: Sequence[int], batch: int) -> int:
    """FLOPs of one step's matrix products (module docstring): 2 per multiply-add."""
    per_layer = [batch * n_in * n_out for n_in, n_out in itertools.pairwise(sizes)]
    return 2 * (2 * sum(per_layer) + sum(per_layer[1:]))   # z and ∂E/∂W; ∂E/∂a above layer 1


@dataclass
class Impl:
    """One implementation ready to time: ``step()`` runs one training step."""

    name: str
    device: str
    step: Callable[[], object]
    sync: Callable[[], None] = field(default=lambda: None)
    clock: Callable[[], float] = time.perf_counter
    steps: int = 1                                  # per timed block (``calibrate``)
    times: list[float] = field(default_factory=list)   # seconds per step, one per repeat


def _data(case: BenchCase, dtype: str):
    """The shared init, one batch, and the floor's operands a_l, W_l, δ_l per layer."""
    from experiments.core.init import uniform_params
    rng, N, s = np.random.default_rng(0), case.batch, case.sizes
    params = uniform_params(s, case.bias, rng)
    X = rng.standard_normal((N, s[0])).astype(dtype)                            # (N, D)
    Y = rng.uniform(size=(N, s[-1])).astype(dtype)                              # (N, K)
    rng = np.random.default_rng(1)
    a = [rng.standard_normal((N, n)).astype(dtype) for n in s[:-1]]             # (N, n_in)
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in itertools.pairwise(s)]
    d = [rng.standard_normal((N, n)).astype(dtype) for n in s[1:]]              # (N, n_out)
    return params, X, Y, (a, W, d)


def floor_step(a, W, d):
    """The floor: the same products, in the same layout, as manual.MLP (numpy or torch)."""
    L = len(W)

    def step():
        for l in range(L):
            a[l] @ W[l].T                     # z_{l+1}        (N, n_out)
        for l in range(L - 1, -1, -1):
            d[l].T @ a[l]                     # ∂E/∂W_{l+1}    (n_out, n_in)
            if l > 0:
                d[l] @ W[l]                   # ∂E/∂a_l        (N, n_in)
    return step


def build(impl: str, device: str, case: BenchCase, dtype: str, view=None) -> Impl:
    """``impl`` (bench.IMPLS) for ``case`` on ``device``, built from the shared init
    (``view``: an ndarray subclass manual-numpy's parameters are viewed as)."""
    params, X, Y, floor = _data(case, dtype)
    sync = torch.cuda.synchronize if device != "cpu" else lambda: None
    to = functools.partial(torch.as_tensor, device=device)
    if impl.startswith("floor"):
        return Impl(impl, device, floor_step(*(floor if impl == "floor-numpy" else
                                               [[to(x) for x in f] for f in floor])), sync)
    spec = dict(activation="sigmoid", bias=case.bias, loss=case.loss, dtype=dtype)
    if impl == "torch-autograd":
        tnet = torch_impl.MLP(case.sizes, **spec, params=params, device=device)
        topt = tnet.optimizer(lr=LR)
        Xt, Yt = tnet.as_input(X), tnet.as_target(Y)

        def autograd_step():
            tnet.loss_and_gradients(Xt, Yt, native=True)
            topt.step()
        return Impl(impl, device, autograd_step, sync)
    if impl == "manual-torch":   # the same hand code on tensors (manual.MLP casts the dtype)
        params, X, Y = {k: to(v) for k, v in params.items()}, to(X), to(Y)
    net = manual.MLP(case.sizes, **spec, params=params)
    if view is not None:
        net.param_arrays = {k: v.view(view) for k, v in net.param_arrays.items()}
    opt = manual.SGD(net.param_arrays, lr=LR)

    def manual_step():
        _, g = net.loss_and_gradients(X, Y, native=True)
        opt.step(g)
    return Impl(impl, device, manual_step, sync)


def block(impl: Impl, n: int) -> float:
    """Seconds per step over ``n`` consecutive steps (device synchronised)."""
    step, sync, clock = impl.step, impl.sync, impl.clock
    sync()
    t0 = clock()
    for _ in range(n):
        step()
    sync()
    return (clock() - t0) / n


def clock_for(device: str, threads: int) -> Callable[[], float]:
    """This process's CPU time on one CPU thread (other processes cannot inflate it), else
    wall time (several threads would add up their spinning; a GPU works while we wait)."""
    return time.process_time if device == "cpu" and threads == 1 else time.perf_counter


def calibrate(impl: Impl, min_time: float) -> int:
    """Steps per block so that one block lasts about ``min_time`` (this also warms up)."""
    impl.step()
    n = 1
    while True:
        per_step = block(impl, n)
        if per_step * n >= min_time / 10 or n >= 1 << 20:
            return max(1, math.ceil(min_time / per_step))
        n *= 10


class Counted(np.ndarray):
    """An ndarray that counts the numpy calls made on it (outermost calls only)."""

    calls = 0
    _depth = 0

    @classmethod
    def _count(cls, call):
        cls.calls += cls._depth == 0
        cls._depth += 1
        try:
            result = call()
        finally:
            cls._depth -= 1
        return result.view(Counted) if isinstance(result, np.ndarray) else result

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        def base(x):
            return x.view(np.ndarray) if isinstance(x, Counted) else x
        inputs = tuple(base(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(base(x) for x in kwargs["out"])
        return self._count(lambda: getattr(ufunc, method)(*inputs, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        return self._count(lambda: super(Counted, self).__array_function__(func, types, args,
                                                                           kwargs))


def count_numpy_calls(case: BenchCase, dtype: str = "float64") -> int:
    """numpy calls one manual-numpy step makes (forward, backward, loss value, SGD update)."""
    step = build("manual-numpy", "cpu", case, dtype, view=Counted).step
    Counted.calls = 0
    step()
    return Counted.calls


def numpy_call_seconds(case: BenchCase, dtype: str, repeats: int = 7,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """One elementwise numpy call (``a * b``) on a (batch, n_1) array: the unit cost of a
    numpy call at this case's hidden-layer size (median of ``repeats`` timed blocks)."""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((case.batch, case.sizes[1])).astype(dtype) for _ in range(2))
    impl = Impl("numpy-call", "cpu", lambda: a * b, clock=clock)
    n = calibrate(impl, 0.01)
    return float(np.median([block(impl, n) for _ in range(repeats)]))
