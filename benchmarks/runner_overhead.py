"""Lockstep-runner overhead on the seed case, measured side by side in one process.

Prints the bare time of the two implementations' training loops (manual: forward,
backward, hand-written SGD; torch: forward, autograd, torch.optim.SGD), the time of the
runner doing the same steps with metrics, and their ratio (target: <= 1.5x), then the
runner's peak memory growth against the number of steps (target: grows with steps x
parameter tensors, not steps x parameter elements).

    python benchmarks/runner_overhead.py [--steps 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import torch

import manual
import torch_impl
from experiments.core.config import load_config, replace
from experiments.core.init import initial_params
from experiments.core.runner import resolve, run_experiment


def bare_loops(cfg, steps: int) -> tuple[float, float, float]:
    """Seconds for: the manual loop alone, the torch loop alone, both interleaved step by
    step (what lockstep costs before any metric is computed)."""
    cfg, data = resolve(cfg)
    params = initial_params(cfg.init, cfg.sizes, cfg.bias, np.random.default_rng(0), cfg.seed)
    spec = dict(activation=cfg.activation, output_activation=cfg.resolved_output_activation,
                bias=cfg.bias, loss=cfg.loss, dtype=cfg.dtype)
    X, Y = data.X, data.Y

    def sides():
        m = manual.MLP(cfg.sizes, **spec, params=params)
        t = torch_impl.MLP(cfg.sizes, **spec, params=params)
        return m, manual.SGD(m.param_arrays, lr=cfg.lr), t, t.optimizer(lr=cfg.lr)

    m, opt, t, topt = sides()
    Xt, Yt = t.as_input(X), t.as_target(Y)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, g = m.loss_and_gradients(X, Y, native=True)
        opt.step(g)
    t_manual = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        t.loss_and_gradients(Xt, Yt, native=True)
        topt.step()
    t_torch = time.perf_counter() - t0
    m, opt, t, topt = sides()
    t0 = time.perf_counter()
    for _ in range(steps):
        _, g = m.loss_and_gradients(X, Y, native=True)
        opt.step(g)
        t.loss_and_gradients(Xt, Yt, native=True)
        topt.step()
    return t_manual, t_torch, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = load_config("seed")
    cfg = replace(base, epochs=args.steps)
    runs = {f"runner, log_every={base.log_every} (the seed config)": cfg,
            "runner, log_every=1": replace(cfg, log_every=1)}
    best = dict.fromkeys(["manual", "torch", "interleaved", *runs], np.inf)
    for _ in range(args.repeats):   # alternate so machine noise hits every variant alike
        tm, tt, ti = bare_loops(cfg, args.steps)
        times = {"manual": tm, "torch": tt, "interleaved": ti}
        for label, c in runs.items():
            t0 = time.perf_counter()
            run_experiment(c)
            times[label] = time.perf_counter() - t0
        best = {k: min(best[k], times[k]) for k in best}
    bare = best["manual"] + best["torch"]
    us = 1e6 / args.steps
    print(f"seed case, {args.steps} full-batch steps, best of {args.repeats}, 1 torch thread")
    for key in ("manual", "torch"):
        print(f"  bare {key} loop{'':<30} {best[key]:7.3f} s  {best[key] * us:6.1f} us/step")
    print(f"  {'both loops interleaved, no metrics':<40} {best['interleaved']:7.3f} s  "
          f"ratio to bare {best['interleaved'] / bare:.2f}")
    for label in runs:
        print(f"  {label:<40} {best[label]:7.3f} s  ratio to bare {best[label] / bare:.2f}"
              f"  (target <= 1.5)")
    for steps in (args.steps // 10, args.steps):
        gc.collect()
        tracemalloc.start()
        run_experiment(replace(cfg, epochs=steps, log_every=1))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  peak traced memory, {steps:>7} steps logged: {peak / 2**20:7.2f} MiB "
              f"({peak / steps:.0f} B/step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
