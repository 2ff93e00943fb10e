"""Lockstep-runner overhead on the seed case, measured side by side in one process.

Prints the bare time of the two implementations' training loops (manual: forward,
backward, hand-written SGD; torch: forward, autograd, torch.optim.SGD), the time of the
lockstep engine stepping both with no metrics (``Lockstep.run`` without an observer: the
loop every command trains through), the runner doing the same steps with metrics, and
their ratios to the bare loops (target: <= 1.5x), then the runner's peak memory growth
against the number of steps (target: grows with steps x parameter tensors, not steps x
parameter elements).

    python benchmarks/runner_overhead.py [--steps 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np

from experiments.core.config import load_config, replace
from experiments.core.engine import Lockstep, batches
from experiments.core.runner import initial_state, run_experiment, standard_sides
from experiments.core.threads import limited_threads


def sides(cfg):
    """The runner's two standard sides from the runner's init, bound to the full batch."""
    cfg, data, params, _, _ = initial_state(cfg)
    man, tor = standard_sides(cfg, params)
    X = data.X.astype(cfg.dtype)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(cfg.dtype)
    return man.bind(X, Y), tor.bind(X, Y)


def bare_loops(cfg, steps: int) -> tuple[float, float, float]:
    """Seconds for: the manual loop alone, the torch loop alone (the libraries' own calls,
    nothing around them), and the engine stepping both, full batch, with no observer (what
    lockstep costs before any metric is computed)."""
    man, tor = sides(cfg)
    net, opt, X, Y = man.net, man.opt, man.X, man.Y
    t0 = time.perf_counter()
    for _ in range(steps):
        _, g = net.loss_and_gradients(X, Y, native=True)
        opt.step(g)
    t_manual = time.perf_counter() - t0
    tnet, topt, Xt, Yt = tor.tor, tor.opt, tor.X, tor.Y
    t0 = time.perf_counter()
    for _ in range(steps):
        tnet.loss_and_gradients(Xt, Yt, native=True)
        topt.step()
    t_torch = time.perf_counter() - t0
    man, tor = sides(cfg)
    N = len(man.X)
    t0 = time.perf_counter()
    Lockstep([man], reference=tor).run(batches(N, N, False, None, steps))
    return t_manual, t_torch, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with limited_threads(1):
        _report(args.steps, args.repeats)
    return 0


def _report(steps: int, repeats: int) -> None:
    base = load_config("seed")
    cfg = replace(base, epochs=steps)
    runs = {f"runner, log_every={base.log_every} (the seed config)": cfg,
            "runner, log_every=1": replace(cfg, log_every=1)}
    best = dict.fromkeys(["manual", "torch", "interleaved", *runs], np.inf)
    for _ in range(repeats):   # alternate so machine noise hits every variant alike
        tm, tt, ti = bare_loops(cfg, steps)
        times = {"manual": tm, "torch": tt, "interleaved": ti}
        for label, c in runs.items():
            t0 = time.perf_counter()
            run_experiment(c)
            times[label] = time.perf_counter() - t0
        best = {k: min(best[k], times[k]) for k in best}
    bare = best["manual"] + best["torch"]
    us = 1e6 / steps
    print(f"seed case, {steps} full-batch steps, best of {repeats}, 1 torch thread")
    for key in ("manual", "torch"):
        print(f"  bare {key} loop{'':<30} {best[key]:7.3f} s  {best[key] * us:6.1f} us/step")
    print(f"  {'both loops interleaved, no metrics':<40} {best['interleaved']:7.3f} s  "
          f"ratio to bare {best['interleaved'] / bare:.2f}")
    for label in runs:
        print(f"  {label:<40} {best[label]:7.3f} s  ratio to bare {best[label] / bare:.2f}"
              f"  (target <= 1.5)")
    for n in (steps // 10, steps):
        gc.collect()
        tracemalloc.start()
        run_experiment(replace(cfg, epochs=n, log_every=1))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  peak traced memory, {n:>7} steps logged: {peak / 2**20:7.2f} MiB "
              f"({peak / n:.0f} B/step)")


if __name__ == "__main__":
    raise SystemExit(main())
