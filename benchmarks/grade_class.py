"""How long `handgrad grade` takes for a class: N copies of a correct seed submission.

Each copy is checked in its own sandboxed learner process (experiments.teaching.boundary),
so the figure is dominated by that process's start and the lockstep training. With
``--baseline TREE`` the same class is graded, alternately, by another checkout of handgrad
(e.g. the commit before a change, ``git worktree add /tmp/base HEAD~5``): both run as
subprocesses with the same Python, so the two figures are measured side by side.

    python benchmarks/grade_class.py [--submissions 300] [--steps 200] [--jobs 2]
                                     [--repeats 1] [--baseline TREE]

An older checkout whose ``grade`` still takes ``--out FILE.csv`` is called that way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEARNER = ROOT / "examples" / "learners" / "correct_torch.py"


def grade(tree: Path, folder: Path, out: Path, steps: int, jobs: int) -> float:
    """Wall seconds of one `handgrad grade` of ``folder`` by the checkout ``tree``."""
    help_text = subprocess.run([sys.executable, "-m", "experiments.cli", "grade", "--help"],
                               cwd=tree, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    target = out.with_suffix(".csv") if "grades.csv" in help_text.split("--out")[1][:40] \
        else out
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "grade", str(folder),
                           "seed", "--steps", str(steps), "--jobs", str(jobs), "--out",
                           str(target), "--force"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{tree}: grade failed ({done.returncode}): {done.stderr[-400:]}")
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=300)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline", type=Path, default=None, metavar="TREE")
    args = ap.parse_args(argv)
    trees = {"this checkout": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory(prefix="handgrad-class-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        for i in range(args.submissions):
            shutil.copy(LEARNER, folder / f"student_{i:03d}.py")
        best = dict.fromkeys(trees, float("inf"))
        for _ in range(args.repeats):   # alternate, so machine noise hits both alike
            for name, tree in trees.items():
                out = Path(tmp) / f"out-{name.replace(' ', '-')}"
                best[name] = min(best[name], grade(tree, folder, out, args.steps, args.jobs))
    load = os.getloadavg()
    print(f"{args.submissions} seed submissions (correct_torch.py), --steps {args.steps}, "
          f"--jobs {args.jobs}, best of {args.repeats}; load average {load[0]:.1f}")
    for name, seconds in best.items():
        print(f"{name:<16}{seconds:8.1f} s   {seconds / args.submissions * 1e3:7.0f} ms per "
              f"submission")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
