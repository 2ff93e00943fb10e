"""Lockstep-runner overhead on the seed case, measured side by side in one process.

Prints the bare time of the two implementations' training loops (manual: forward,
backward, hand-written SGD; torch: forward, autograd, torch.optim.SGD), the time of the
lockstep engine stepping both with no metrics (``Lockstep.run`` without an observer: the
loop every command trains through), the runner doing the same steps with metrics, and
their ratios to the bare loops (target: <= 1.5x), each in wall and CPU seconds with the
load average seen (the machine may be shared), then the runner's peak memory growth
against the number of steps (target: grows with steps x parameter tensors, not steps x
parameter elements).

    python benchmarks/runner_overhead.py [--steps 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

import numpy as np

import torch_impl
from experiments.core.config import load_config, replace
from experiments.core.engine import Lockstep, batches
from experiments.core.runner import initial_state, run_experiment, standard_sides
from experiments.core.threads import limited_threads


def sides(cfg):
    """The runner's two standard sides from the runner's init, bound to the full batch, and
    torch_impl's network at that init (the bare torch loop's)."""
    cfg, data, params, _, _ = initial_state(cfg)
    man, tor = standard_sides(cfg, data, params)
    X = data.X.astype(cfg.dtype)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(cfg.dtype)
    net = torch_impl.MLP(cfg.sizes, **cfg.spec(), params=params, device=cfg.device)
    return man.bind(X, Y), tor.bind(X, Y), net


class Clock:
    """Wall and CPU seconds of one block (``with Clock() as c: ...; c.wall, c.cpu``). On a
    shared machine the wall time includes waiting for a core; the CPU time (one torch
    thread, so one core) does not."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def bare_loops(cfg, steps: int) -> tuple[Clock, Clock, Clock]:
    """Clocks of: the manual loop alone, the torch loop alone (the libraries' own calls,
    nothing around them), and the engine stepping both, full batch, with no observer (what
    lockstep costs before any metric is computed)."""
    man, tor, tnet = sides(cfg)
    net, opt, X, Y = man.net, man.opt, man.X, man.Y
    with Clock() as c_manual:
        for _ in range(steps):
            _, g = net.loss_and_gradients(X, Y, native=True)
            opt.step(g)
    topt, Xt, Yt = tnet.optimizer(**cfg.sgd), tor.X, tor.Y
    with Clock() as c_torch:
        for _ in range(steps):
            tnet.loss_and_gradients(Xt, Yt, native=True)
            topt.step()
    man, tor, _ = sides(cfg)
    N = len(man.X)
    with Clock() as c_engine:
        Lockstep([man], reference=tor).run(batches(N, N, False, None, steps))
    return c_manual, c_torch, c_engine


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
    labels = ["manual", "torch", "interleaved", *runs]
    wall, cpu = dict.fromkeys(labels, np.inf), dict.fromkeys(labels, np.inf)
    load = [os.getloadavg()[0]]
    for _ in range(repeats):   # alternate so machine noise hits every variant alike
        clocks = dict(zip(labels, bare_loops(cfg, steps), strict=False))
        for label, c in runs.items():
            with Clock() as clocks[label]:
                run_experiment(c)
        wall = {k: min(wall[k], clocks[k].wall) for k in labels}
        cpu = {k: min(cpu[k], clocks[k].cpu) for k in labels}
        load.append(os.getloadavg()[0])
    print(f"seed case, {steps} full-batch steps, best of {repeats}, 1 torch thread; "
          f"1-minute load average {min(load):.2f}-{max(load):.2f} on {os.cpu_count()} cores")
    print(f"  {'':<40} {'wall':>8} {'ratio':>6}  {'cpu':>8} {'ratio':>6}")
    for times in (wall, cpu):
        times["bare"] = times["manual"] + times["torch"]
    us = 1e6 / steps
    for key in labels:
        if key in ("manual", "torch"):   # the bare loops: their time per step
            print(f"  bare {key + ' loop':<35} {wall[key]:7.3f}s {'':>6}  {cpu[key]:7.3f}s "
                  f"{'':>6}  {cpu[key] * us:.1f} us/step (cpu)")
            continue
        name = "both loops interleaved, no metrics" if key == "interleaved" else key
        print(f"  {name:<40} {wall[key]:7.3f}s {wall[key] / wall['bare']:5.2f}x  "
              f"{cpu[key]:7.3f}s {cpu[key] / cpu['bare']:5.2f}x"
              f"{'  (target <= 1.5)' if key in runs else ''}")
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
