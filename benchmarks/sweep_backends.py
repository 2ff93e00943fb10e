"""One sweep's wall time on loky (2 jobs) and on a 2-worker Dask LocalCluster, side by side.

Both run the same grid (``--points`` learning rates of the seed case, ``--epochs`` each)
in this process, alternately, after one warm-up sweep each (loky's workers and the
cluster's workers have imported torch by then; the cluster's start is timed on its own).
Per backend: the best wall time, the points' own seconds (sweep.csv's ``seconds``: the
run and its files, on a worker), and the scheduling overhead per task:

    overhead per task = (wall × workers − Σ points' seconds) / points

the worker time that went to anything but the points' work (dispatch, pickling, sending
the run directories back, idle ends). An empty Dask task's round trip is timed too.

    python benchmarks/sweep_backends.py [--points 8] [--epochs 200] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

WORKERS = 2


def sweep(backend: str, out: Path, points: int, epochs: int) -> tuple[float, float]:
    """Wall seconds of one sweep, and the sum of its points' own seconds."""
    from experiments.tools.sweep import run_sweep

    grid = {"lr": [f"{0.25 * (i + 1):g}" for i in range(points)]}
    t0 = time.perf_counter()
    table = run_sweep("seed", grid, jobs=WORKERS, overrides=[f"epochs={epochs}"], out=out,
                      force=True, backend=backend)
    return time.perf_counter() - t0, float(table["seconds"].sum())


def round_trip(client, n: int = 200) -> float:
    """Seconds per empty task, submitted ``n`` at a time and gathered."""
    t0 = time.perf_counter()
    client.gather(client.map(abs, range(n), pure=False))
    return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    import distributed

    t0 = time.perf_counter()
    with (distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                   dashboard_address=None) as cluster,
          distributed.Client(cluster) as client,
          tempfile.TemporaryDirectory(prefix="handgrad-sweep-bench-") as tmp):
        client.wait_for_workers(WORKERS)
        start = time.perf_counter() - t0
        names = {"loky": f"loky ({WORKERS} jobs)",
                 "dask": f"dask LocalCluster ({WORKERS} workers)"}
        best = {b: (float("inf"), 0.0) for b in names}
        for b in names:   # warm-up: workers started, torch imported
            sweep(b, Path(tmp) / b, args.points, args.epochs)
        for _ in range(args.repeats):   # alternate, so machine noise hits both alike
            for b in names:
                best[b] = min(best[b], sweep(b, Path(tmp) / b, args.points, args.epochs))
        empty = round_trip(client)
    load = os.getloadavg()
    print(f"sweep of the seed case: {args.points} points (lr), epochs={args.epochs}, "
          f"{WORKERS} workers, best of {args.repeats} after a warm-up; load average "
          f"{load[0]:.1f}")
    print(f"{'backend':<32}{'wall s':>8}{'Σ points s':>12}{'overhead per task':>20}")
    for b, label in names.items():
        wall, work = best[b]
        overhead = (wall * WORKERS - work) / args.points
        print(f"{label:<32}{wall:8.2f}{work:12.2f}{overhead * 1e3:17.0f} ms")
    print(f"dask: LocalCluster start {start:.1f} s (once); an empty task {empty * 1e3:.1f} ms "
          f"(200 at once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
