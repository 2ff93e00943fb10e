"""What the learner's process boundary costs per training step, on the seed case.

``handgrad check`` runs a learner's file in its own process (experiments.teaching.check.
process) and trains it in lockstep with torch through the runner. This script trains the
same learner file (examples/learners/correct_torch.py) both ways in one run — its
functions called in this process, and through the process boundary — and prints the time
per step of each, side by side, and their difference: the boundary's cost (target: about
1 ms per step or less). Then the bare round trip of one gradients() call both ways.

    python benchmarks/check_overhead.py [--steps 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from experiments.core.config import load_config, replace
from experiments.core.runner import run_experiment
from experiments.core.threads import limited_threads
from experiments.teaching.boundary.learner import load_file
from experiments.teaching.boundary.process import LearnerProcess
from experiments.teaching.check.side import side_factory

LEARNER = Path(__file__).resolve().parents[1] / "examples" / "learners" / "correct_torch.py"


def per_step(cfg, learner, steps: int) -> float:
    """Seconds per step of ``handgrad check``'s training part with ``learner``."""
    t0 = time.perf_counter()
    run = run_experiment(cfg, side=side_factory(learner))
    assert run.status == "completed" and run.steps_done == steps, run.message
    return (time.perf_counter() - t0) / steps


def round_trip(learner, calls: int = 2000) -> float:
    """Seconds per bare gradients() call (the seed batch, full)."""
    rng = np.random.default_rng(0)
    X, Y = rng.random((4, 3)), rng.random((4, 1))
    params = {"layers.0.weight": rng.random((4, 3)), "layers.1.weight": rng.random((1, 4))}
    learner.bind(X, Y)
    t0 = time.perf_counter()
    for _ in range(calls):
        learner.gradients(params, None)
    return (time.perf_counter() - t0) / calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    cfg = replace(load_config("seed", ["mode=synced"]), steps=args.steps)
    inproc = load_file(LEARNER)
    best = {"in-process": np.inf, "own process": np.inf, "runner alone": np.inf}
    with limited_threads(1), LearnerProcess(LEARNER, timeout=3600) as proc:
        for _ in range(args.repeats):   # alternate, so machine noise hits every variant alike
            best["in-process"] = min(best["in-process"], per_step(cfg, inproc, args.steps))
            best["own process"] = min(best["own process"], per_step(cfg, proc, args.steps))
            t0 = time.perf_counter()
            run_experiment(cfg)
            best["runner alone"] = min(best["runner alone"],
                                       (time.perf_counter() - t0) / args.steps)
        trips = {name: min(round_trip(lrn) for _ in range(args.repeats))
                 for name, lrn in (("in-process", inproc), ("own process", proc))}
    ms = 1e3
    print(f"seed case (3-4-1, N = 4, synced), {args.steps} steps, best of {args.repeats}, "
          f"1 thread; learner {LEARNER.name}")
    print(f"{'':<34}{'in-process':>12}{'own process':>13}{'boundary':>10}")
    print(f"{'check training, ms per step':<34}{best['in-process'] * ms:>12.3f}"
          f"{best['own process'] * ms:>13.3f}"
          f"{(best['own process'] - best['in-process']) * ms:>10.3f}")
    print(f"{'one gradients() call, ms':<34}{trips['in-process'] * ms:>12.3f}"
          f"{trips['own process'] * ms:>13.3f}"
          f"{(trips['own process'] - trips['in-process']) * ms:>10.3f}")
    print(f"(handgrad run seed's runner alone, manual side: {best['runner alone'] * ms:.3f} "
          f"ms per step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
