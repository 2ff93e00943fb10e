"""``handgrad bench``: the time of one training step, every implementation side by side.

One step is forward + backward + update, done exactly as the lockstep runner does it:
``loss_and_gradients(X, Y, native=True)``, then the optimiser's ``step``. Implementations
(column ``impl``), all in one process, on the same shapes, dtype and data:

    manual-numpy     manual.MLP + manual.SGD on numpy (the hand code, default path)
    manual-torch     the same hand code on torch tensors, through the Array API (CPU, CUDA)
    torch-autograd   torch_impl.MLP: torch.nn + autograd + torch.optim.SGD
    floor-numpy      only the matrix products any backprop must do, numpy ``@``
    floor-torch      the same products with torch on the device

The GEMM floor, per layer l with a_{l-1} (N, n_in), W_l (n_out, n_in), δ_l (N, n_out):

    forward    z_l = a_{l-1} W_lᵀ           N·n_in·n_out multiply-adds
    backward   ∂E/∂W_l = δ_lᵀ a_{l-1}       N·n_in·n_out
               ∂E/∂a_{l-1} = δ_l W_l        N·n_in·n_out, layers l > 1 only (∂E/∂X is unused)

FLOPs per step = 2 × those multiply-adds (``floor_flops``).

Timing. Every implementation is built and warmed up first; then each repeat times one
block of steps per implementation (block length calibrated to ``min_time``), the order
rotating from repeat to repeat, so machine noise hits all of them alike. The cyclic
garbage collector is off while timing (as ``timeit``); CUDA blocks are bracketed by
``torch.cuda.synchronize()``. numpy's BLAS and torch's intra-op pool run on ``threads``
threads (default 1: on a shared machine a multi-threaded BLAS or OpenMP region waits at
each barrier for a thread that is not scheduled, and a 10 µs product takes
milliseconds). With one CPU thread the clock is this process's CPU time
(``time.process_time``), which other processes cannot inflate except through the caches
and a shared core; otherwise, and on CUDA, wall-clock time. Reported per implementation:
the median time per step over the repeats, its quartiles and extremes; ``ratio_to_floor``
and ``ratio_to_autograd`` are medians of *paired* ratios — each repeat's block divided by
the same repeat's floor (numpy's for manual-numpy, torch's on the same device for
manual-torch and torch-autograd) or torch-autograd block — so a slow spell that hits a
whole repeat cancels.

Counting numpy calls (``count_numpy_calls``): one manual-numpy step is run on parameter
arrays of an ndarray subclass that counts every ufunc call (operators, ``@``, in-place
updates, reductions) and every other numpy function (``where``, ``sum``) the hand code
makes; calls made inside a counted call are not counted again.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.config import ConfigError
from experiments.core.schema import BENCH_COLUMNS as COLUMNS
from experiments.output.rundir import write_csv

IMPLS = ("manual-numpy", "manual-torch", "torch-autograd", "floor-numpy", "floor-torch")
FLOOR_OF = {"manual-numpy": "floor-numpy", "floor-numpy": "floor-numpy",
            "manual-torch": "floor-torch", "torch-autograd": "floor-torch",
            "floor-torch": "floor-torch"}
LIBRARY = {"manual-numpy": "numpy", "floor-numpy": "numpy", "manual-torch": "torch",
           "torch-autograd": "torch", "floor-torch": "torch"}
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "all")
LR = 0.01        # small: the weights barely move, so timings do not drift with saturation
WIDE = 512       # "wide layers": a hidden width of at least this many units
TARGET_WIDE_RATIO = 1.15   # manual-numpy / floor-numpy on wide layers (the target)

QUICK = {"repeats": 5, "min_time": 0.03}    # --quick: under 2 minutes on 2 busy cores
FULL = {"repeats": 9, "min_time": 0.1}


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

    @property
    def layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def wide(self) -> bool:
        return max(self.sizes[1:-1], default=0) >= WIDE


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
QUICK_CASES = ("worked-2-2-2", "seed", "digits", "mnist", "wide-512", "wide-1024")
TINY_CASES = ("worked-2-2-2", "seed")


@dataclass(frozen=True)
class BenchConfig:
    """What one bench run measures; validated on construction (``ConfigError``)."""

    cases: tuple[str, ...] = tuple(c.name for c in CASES)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = DTYPES
    repeats: int = FULL["repeats"]
    min_time: float = FULL["min_time"]   # seconds per timed block (per impl, per repeat)
    impls: tuple[str, ...] = IMPLS
    threads: int = 1               # numpy's BLAS and torch's intra-op threads; 0 = defaults
    out: str = "bench"

    def __post_init__(self):
        unknown = [c for c in self.cases if c not in CASES_BY_NAME]
        if unknown or not self.cases:
            raise ConfigError(f"--case {unknown or '(none)'}: unknown case; choose from "
                              f"{', '.join(CASES_BY_NAME)}")
        bad = [d for d in self.dtypes if d not in DTYPES]
        if bad or not self.dtypes:
            raise ConfigError(f"--dtype {bad or '(none)'}: choose float32 and/or float64")
        bad = [d for d in self.devices if d not in ("cpu", "cuda")]
        if bad or not self.devices:
            raise ConfigError(f"--device {bad or '(none)'}: choose cpu, cuda or all")
        bad = [i for i in self.impls if i not in IMPLS]
        if bad or not self.impls:
            raise ConfigError(f"unknown impls {bad}; choose from {', '.join(IMPLS)}")
        if self.repeats < 1:
            raise ConfigError(f"--repeats {self.repeats}: must be >= 1")
        if self.threads < 0:
            raise ConfigError(f"--threads {self.threads}: must be >= 1 (0 = library defaults)")
        if not self.min_time > 0:
            raise ConfigError(f"min_time {self.min_time}: must be > 0 seconds")
        if "cuda" in self.devices:
            import torch
            if not torch.cuda.is_available():
                raise ConfigError(f"--device cuda: no CUDA device is available here (torch "
                                  f"{torch.__version__}); use --device cpu")


# ------------------------------------------------------------------------------ FLOPs


def floor_gemms(sizes: Sequence[int], batch: int) -> list[tuple[str, int, int, int]]:
    """The matrix products any backprop step must do: (what, m, k, n) for an (m,k)@(k,n)."""
    gemms = []
    for l, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        gemms.append((f"forward z_{l + 1} = a_{l} W_{l + 1}ᵀ", batch, n_in, n_out))
    for l in range(len(sizes) - 2, -1, -1):
        n_in, n_out = sizes[l], sizes[l + 1]
        gemms.append((f"∂E/∂W_{l + 1} = δ_{l + 1}ᵀ a_{l}", n_out, batch, n_in))
        if l > 0:
            gemms.append((f"∂E/∂a_{l} = δ_{l + 1} W_{l + 1}", batch, n_out, n_in))
    return gemms


def floor_flops(sizes: Sequence[int], batch: int) -> int:
    """FLOPs of one step's matrix products: 2 per multiply-add."""
    return 2 * sum(m * k * n for _, m, k, n in floor_gemms(sizes, batch))


# --------------------------------------------------------------------- implementations


@dataclass
class _Impl:
    name: str
    device: str
    step: Callable[[], object]
    sync: Callable[[], None] = field(default=lambda: None)
    clock: Callable[[], float] = time.perf_counter
    steps: int = 1
    times: list[float] = field(default_factory=list)


def _data(case: BenchCase, dtype: str):
    """Initial parameters and one batch, from one seeded generator (the same for every impl)."""
    from experiments.core.init import uniform_params
    rng = np.random.default_rng(0)
    params = uniform_params(case.sizes, case.bias, rng)
    X = rng.standard_normal((case.batch, case.sizes[0])).astype(dtype)          # (N, D)
    Y = rng.uniform(size=(case.batch, case.sizes[-1])).astype(dtype)            # (N, K)
    return params, X, Y


def _floor_arrays(case: BenchCase, dtype: str):
    """Operands of the floor's products, shaped as in backprop: a_l, W_l, δ_l per layer."""
    rng = np.random.default_rng(1)
    N, s = case.batch, case.sizes
    a = [rng.standard_normal((N, n)).astype(dtype) for n in s[:-1]]             # (N, n_in)
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in itertools.pairwise(s)]
    d = [rng.standard_normal((N, n)).astype(dtype) for n in s[1:]]              # (N, n_out)
    return a, W, d


def _floor_step(a, W, d):
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


def _cuda_sync(device: str) -> Callable[[], None]:
    if device == "cpu":
        return lambda: None
    import torch
    return torch.cuda.synchronize


def _build(impl: str, device: str, case: BenchCase, dtype: str) -> _Impl:
    import manual
    spec = dict(activation="sigmoid", bias=case.bias, loss=case.loss, dtype=dtype)
    params, X, Y = _data(case, dtype)
    if impl == "manual-numpy":
        net = manual.MLP(case.sizes, **spec, params=params)
        opt = manual.SGD(net.param_arrays, lr=LR)

        def step():
            _, g = net.loss_and_gradients(X, Y, native=True)
            opt.step(g)
        return _Impl(impl, "cpu", step)
    if impl == "floor-numpy":
        return _Impl(impl, "cpu", _floor_step(*_floor_arrays(case, dtype)))

    import torch

    import torch_impl
    tdtype = getattr(torch, dtype)
    sync = _cuda_sync(device)
    if impl == "manual-torch":
        net = manual.MLP(case.sizes, **spec, params={
            k: torch.as_tensor(v, dtype=tdtype, device=device) for k, v in params.items()})
        opt = manual.SGD(net.param_arrays, lr=LR)
        Xt, Yt = (torch.as_tensor(v, device=device) for v in (X, Y))

        def step():
            _, g = net.loss_and_gradients(Xt, Yt, native=True)
            opt.step(g)
        return _Impl(impl, device, step, sync)
    if impl == "torch-autograd":
        tnet = torch_impl.MLP(case.sizes, **spec, params=params, device=device)
        topt = tnet.optimizer(lr=LR)
        Xt, Yt = tnet.as_input(X), tnet.as_target(Y)

        def step():
            tnet.loss_and_gradients(Xt, Yt, native=True)
            topt.step()
        return _Impl(impl, device, step, sync)
    assert impl == "floor-torch", impl
    a, W, d = (
        [torch.as_tensor(x, device=device) for x in group] for group in _floor_arrays(case, dtype)
    )
    return _Impl(impl, device, _floor_step(a, W, d), sync)


def _block(impl: _Impl, n: int) -> float:
    """Seconds per step over ``n`` consecutive steps (device synchronised)."""
    step, sync, clock = impl.step, impl.sync, impl.clock
    sync()
    t0 = clock()
    for _ in range(n):
        step()
    sync()
    return (clock() - t0) / n


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector off while timing (as ``timeit``); one collection
    before, since a full collection costs ~0.3 s once torch and pandas are loaded."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _clock(device: str, threads: int) -> Callable[[], float]:
    """CPU time of this process when it computes on one CPU thread: what other processes
    on a shared machine take cannot inflate it. Wall-clock time otherwise (several threads
    would add up their spinning; a GPU works while the CPU waits)."""
    return time.process_time if device == "cpu" and threads == 1 else time.perf_counter


def _calibrate(impl: _Impl, min_time: float) -> int:
    """Steps per block so that one block lasts about ``min_time`` (this also warms up)."""
    impl.step()
    n = 1
    while True:
        per_step = _block(impl, n)
        if per_step * n >= min_time / 10 or n >= 1 << 20:
            return max(1, math.ceil(min_time / per_step))
        n *= 10


# ---------------------------------------------------------------------- numpy counting


class _Counted(np.ndarray):
    """An ndarray that counts the numpy calls made on it (outermost calls only)."""

    calls = 0
    _depth = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        def base(x):
            return x.view(np.ndarray) if isinstance(x, _Counted) else x
        inputs = tuple(base(x) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(base(x) for x in kwargs["out"])
        _Counted.calls += _Counted._depth == 0
        _Counted._depth += 1
        try:
            result = getattr(ufunc, method)(*inputs, **kwargs)
        finally:
            _Counted._depth -= 1
        return result.view(_Counted) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func, types, args, kwargs):
        _Counted.calls += _Counted._depth == 0
        _Counted._depth += 1
        try:
            result = super().__array_function__(func, types, args, kwargs)
        finally:
            _Counted._depth -= 1
        return result.view(_Counted) if isinstance(result, np.ndarray) else result


def count_numpy_calls(case: BenchCase, dtype: str = "float64") -> int:
    """numpy calls one manual-numpy step makes (forward, backward, loss value, SGD update)."""
    import manual
    params, X, Y = _data(case, dtype)
    net = manual.MLP(case.sizes, activation="sigmoid", bias=case.bias, loss=case.loss,
                     dtype=dtype, params=params)
    net.param_arrays = {k: v.view(_Counted) for k, v in net.param_arrays.items()}
    opt = manual.SGD(net.param_arrays, lr=LR)
    _Counted.calls = 0
    _, g = net.loss_and_gradients(X, Y, native=True)
    opt.step(g)
    return _Counted.calls


def numpy_call_seconds(case: BenchCase, dtype: str, repeats: int = 7,
                       clock: Callable[[], float] = time.perf_counter) -> float:
    """One elementwise numpy call (``a * b``) on a (batch, n_1) array: the unit cost of a
    numpy call at this case's hidden-layer size (median of ``repeats`` timed blocks)."""
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((case.batch, case.sizes[1])).astype(dtype) for _ in range(2))
    impl = _Impl("numpy-call", "cpu", lambda: a * b, clock=clock)
    n = _calibrate(impl, 0.01)
    return float(np.median([_block(impl, n) for _ in range(repeats)]))


# --------------------------------------------------------------------------- the bench


def _threads() -> dict[str, int]:
    from threadpoolctl import threadpool_info
    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    out = {"numpy": blas[0] if blas else 1}
    try:
        import torch
        out["torch"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return out


@contextlib.contextmanager
def thread_limit(threads: int):
    """numpy's BLAS and torch's intra-op pool limited to ``threads`` (0: leave as they are).

    One thread by default: on a shared machine a multi-threaded BLAS or OpenMP region
    waits at every barrier for a thread that is not scheduled, and a 10 µs product can
    take milliseconds. The previous settings are restored on exit.
    """
    if threads == 0:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def run_bench(cfg: BenchConfig = BenchConfig(),
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Time every (case, dtype, device, impl) of ``cfg``; one row each, columns ``COLUMNS``."""
    rows = []
    with thread_limit(cfg.threads):
        threads = _threads()
        for name in cfg.cases:
            for dtype in cfg.dtypes:
                rows += _bench_case(CASES_BY_NAME[name], dtype, cfg, threads, progress)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _bench_case(case: BenchCase, dtype: str, cfg: BenchConfig, threads: dict[str, int],
                progress: Callable[[str], None] | None) -> list[dict]:
    impls = [_build(impl, device, case, dtype) for device in cfg.devices for impl in cfg.impls
             if LIBRARY[impl] == "torch" or device == "cpu"]
    with _no_gc():
        for impl in impls:
            impl.clock = _clock(impl.device, cfg.threads)
            impl.steps = _calibrate(impl, cfg.min_time)
        for r in range(cfg.repeats):   # rotate the order: each impl takes every position
            k = r % len(impls)
            for impl in impls[k:] + impls[:k]:
                impl.times.append(_block(impl, impl.steps))
        call_s = numpy_call_seconds(case, dtype, clock=_clock("cpu", cfg.threads))
    calls = count_numpy_calls(case, dtype)
    flops = floor_flops(case.sizes, case.batch)
    times = {(i.name, i.device): np.asarray(i.times) for i in impls}
    nan = np.full(cfg.repeats, np.nan)
    rows = []
    for impl in impls:
        t = times[impl.name, impl.device]
        to_floor = t / times.get((FLOOR_OF[impl.name], impl.device), nan)    # paired
        to_autograd = t / times.get(("torch-autograd", impl.device), nan)
        q25, med, q75 = np.quantile(t, [0.25, 0.5, 0.75])
        manual_np = impl.name == "manual-numpy"
        rows.append({
            "case": case.name, "impl": impl.name, "library": LIBRARY[impl.name],
            "device": impl.device, "dtype": dtype, "batch": case.batch,
            "sizes": case.label, "flops": flops, "seconds_per_step": med,
            "seconds_q25": q25, "seconds_q75": q75, "seconds_min": t.min(),
            "seconds_max": t.max(), "us_per_step": med * 1e6,
            "gflops_per_s": flops / med / 1e9,
            "ratio_to_floor": np.median(to_floor),
            "ratio_to_floor_q25": np.quantile(to_floor, 0.25),
            "ratio_to_floor_q75": np.quantile(to_floor, 0.75),
            "ratio_to_autograd": np.median(to_autograd),
            "numpy_calls_per_step": calls if manual_np else np.nan,
            "numpy_calls_per_layer": calls / case.layers if manual_np else np.nan,
            "numpy_call_us": call_s * 1e6 if manual_np else np.nan,
            "repeats": cfg.repeats, "steps_per_repeat": impl.steps,
            "threads": threads.get(LIBRARY[impl.name], 1),
            "clock": "process" if impl.clock is time.process_time else "wall",
        })
    if progress:
        progress(f"{case.name} ({case.label}, batch {case.batch}) {dtype}: " + ", ".join(
            f"{i.name}{'' if i.device == 'cpu' else '/' + i.device} "
            f"{_fmt_time(float(np.median(i.times)))}" for i in impls))
    return rows


# ---------------------------------------------------------------------------- outputs


def targets(df: pd.DataFrame) -> pd.DataFrame:
    """The issue's targets, read from one bench run (manual-numpy rows on the CPU).

    wide layers (a hidden width >= 512): ``ratio_to_floor`` <= 1.15 and
    ``ratio_to_autograd`` <= 1. Tiny networks (2-2-2, seed): µs per step against what its
    numpy calls alone cost (calls counted, unit cost measured); ``met`` is None there.
    """
    rows = []
    for r in df[(df.impl == "manual-numpy") & (df.device == "cpu")].itertuples():
        if CASES_BY_NAME[r.case].wide:
            rows.append({"case": r.case, "dtype": r.dtype, "check": "ratio_to_floor",
                         "value": r.ratio_to_floor, "target": f"<= {TARGET_WIDE_RATIO}",
                         "met": bool(r.ratio_to_floor <= TARGET_WIDE_RATIO)})
            if not math.isnan(r.ratio_to_autograd):
                rows.append({"case": r.case, "dtype": r.dtype, "check": "ratio_to_autograd",
                             "value": r.ratio_to_autograd, "target": "<= 1",
                             "met": bool(r.ratio_to_autograd <= 1)})
        if r.case in TINY_CASES:
            calls_us = r.numpy_calls_per_step * r.numpy_call_us
            rows.append({"case": r.case, "dtype": r.dtype, "check": "us_per_step",
                         "value": r.us_per_step,
                         "target": f"{r.numpy_calls_per_step:.0f} numpy calls "
                                   f"({r.numpy_calls_per_layer:.1f}/layer) x "
                                   f"{r.numpy_call_us:.2f} us = {calls_us:.1f} us",
                         "met": None})
    return pd.DataFrame(rows, columns=["case", "dtype", "check", "value", "target", "met"])


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def _fmt_ratio(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.2f}x"


def format_table(df: pd.DataFrame) -> str:
    """The printed table: one line per (case, dtype, device, impl)."""
    show = pd.DataFrame({
        "case": df.case, "sizes": df.sizes, "batch": df.batch, "dtype": df.dtype,
        "device": df.device, "impl": df.impl,
        "time/step": df.seconds_per_step.map(_fmt_time),
        "IQR": ((df.seconds_q75 - df.seconds_q25) / df.seconds_per_step).map(
            lambda v: f"{100 * v:.0f}%"),
        "GFLOP/s": df.gflops_per_s.map(lambda v: f"{v:.3g}"),
        "/floor": df.ratio_to_floor.map(_fmt_ratio),
        "/autograd": df.ratio_to_autograd.map(_fmt_ratio),
    })
    return show.to_string(index=False)


def format_targets(checks: pd.DataFrame) -> str:
    met = checks.met.map(lambda m: "info" if m is None else "yes" if m else "NO")
    value = [f"{v:.1f}" if c == "us_per_step" else f"{v:.3f}"
             for c, v in zip(checks.check, checks.value, strict=True)]
    return checks.assign(value=value, met=met).to_string(index=False)


def plot_bench(df: pd.DataFrame, path: str | Path) -> Path:
    """Time per step against FLOPs per step, log-log: one panel per device and dtype, one
    line per implementation (bars: quartiles over the repeats), the GEMM floors dashed and
    dotted, each case's network written under the numpy floor."""
    import seaborn as sns
    from matplotlib.figure import Figure

    panels = sorted({(d, t) for d, t in zip(df.device, df.dtype, strict=True)})
    colors = dict(zip(IMPLS, sns.color_palette("colorblind", len(IMPLS)), strict=True))
    styles = {"floor-numpy": (0, (4, 2)), "floor-torch": (0, (1, 1.5))}
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig = Figure(figsize=(5.0 * len(panels), 4.4), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, (device, dtype) in zip(axes, panels, strict=True):
            sub = df[(df.device == device) & (df.dtype == dtype)]
            for impl in IMPLS:
                d = sub[sub.impl == impl].sort_values("flops")
                if d.empty:
                    continue
                floor = impl in styles
                yerr = np.vstack([d.seconds_per_step - d.seconds_q25,
                                  d.seconds_q75 - d.seconds_per_step])
                ax.errorbar(d.flops, d.seconds_per_step, yerr=yerr, label=impl,
                            color="0.25" if floor else colors[impl],
                            linestyle=styles.get(impl, "-"), marker="" if floor else "o",
                            markersize=4, capsize=2)
            lowest = sub.sort_values("seconds_per_step").drop_duplicates("case")
            for r in lowest.itertuples():
                ax.annotate(r.sizes, (r.flops, r.seconds_per_step), xytext=(0, -10),
                            textcoords="offset points", ha="center", va="top", fontsize=6,
                            rotation=30, color="0.35")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{device}, {dtype}")
            ax.set_xlabel("FLOPs per step (2 x GEMM multiply-adds)")
        axes[0].set_ylabel("seconds per step (median; bars: quartiles)")
        axes[0].legend(loc="upper left", fontsize=7)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def write_bench(df: pd.DataFrame, out: str | Path) -> tuple[Path, Path]:
    """bench.csv and bench.png in ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "bench.csv"
    write_csv(df, csv)   # shortest round-trip floats, as every handgrad CSV
    return csv, plot_bench(df, out / "bench.png")


# -------------------------------------------------------------------------------- CLI


def register(subparsers, formatter_class) -> None:
    """Add the ``bench`` subcommand (``experiments.cli`` calls this)."""
    p = subparsers.add_parser(
        "bench", formatter_class=formatter_class,
        help="time one training step: manual (numpy, torch), autograd, and the GEMM floor",
        description="Time one training step (forward + backward + update), side by side in "
                    "one process:\nmanual on numpy, manual on torch tensors (CPU, CUDA), "
                    "torch autograd + torch.optim.SGD,\nand the GEMM floor (only the matrix "
                    "products any backprop must do) of numpy and torch.\nWrites bench.csv and "
                    "bench.png into --out; prints the table and the targets.\n\nCases:\n" +
                    "\n".join(f"  {c.name:<13} {c.label}, batch {c.batch}" for c in CASES))
    p.add_argument("--quick", action="store_true",
                   help=f"cases {', '.join(QUICK_CASES)}; {QUICK['repeats']} repeats of "
                        f"{QUICK['min_time']} s blocks (under 2 minutes on 2 busy cores)")
    p.add_argument("--device", default="all", metavar="{cpu,cuda,all}",
                   help="all = cpu, plus cuda when torch.cuda.is_available()")
    p.add_argument("--dtype", nargs="+", default=list(DTYPES), metavar="{float32,float64}",
                   help="one or both")
    p.add_argument("--case", action="append", default=None, metavar="NAME",
                   help="run only this case (repeatable); default: all, or the quick ones")
    p.add_argument("--repeats", default=None, metavar="N",
                   help=f"timed blocks per implementation (default: {FULL['repeats']}, "
                        f"{QUICK['repeats']} with --quick)")
    p.add_argument("--threads", default="1", metavar="N",
                   help="numpy BLAS and torch intra-op threads; 0 = the libraries' defaults")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for the results")
    p.set_defaults(func=main_from_args)


def _int_option(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} {text!r}: expected an integer") from None


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The validated ``BenchConfig`` for parsed arguments (``ConfigError`` if bad)."""
    if args.device not in DEVICES:
        raise ConfigError(f"--device {args.device!r}: choose cpu, cuda or all")
    if args.device == "all":
        import torch
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    else:
        devices = (args.device,)
    mode = QUICK if args.quick else FULL
    repeats = mode["repeats"] if args.repeats is None else _int_option("--repeats",
                                                                         args.repeats)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: exists and is not a folder; give a folder")
    cases = tuple(args.case) if args.case else (
        QUICK_CASES if args.quick else tuple(CASES_BY_NAME))
    return BenchConfig(cases=cases, devices=devices, dtypes=tuple(dict.fromkeys(args.dtype)),
                       repeats=repeats, min_time=mode["min_time"],
                       threads=_int_option("--threads", args.threads), out=str(args.out))


def main_from_args(args: argparse.Namespace) -> int:
    """``handgrad bench``: measure, write bench.csv + bench.png, print the table."""
    cfg = config_from_args(args)
    df = run_bench(cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    csv, png = write_bench(df, cfg.out)
    print(format_table(df))
    checks = targets(df)
    if not checks.empty:
        print("\nTargets (manual-numpy on the CPU):")
        print(format_targets(checks))
    print(f"\nwrote {csv} and {png}")
    return 0
