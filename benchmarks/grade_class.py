"""How long `handgrad grade` takes for a class: N copies of a correct seed submission.

Each copy is checked in its own sandboxed learner process (experiments.teaching.boundary),
so the figure is dominated by that process's start and the lockstep training. Each
``--jobs`` value given is timed in the same run, alternately (``--jobs 1 2``: whether two
workers beat one on this machine). With ``--baseline TREE`` the same class is graded,
alternately, by another checkout of handgrad too (e.g. the commit before a change, ``git
worktree add /tmp/base HEAD~5``): all run as subprocesses with the same Python, so the
figures are measured side by side. The load average before and after is printed: on a
shared machine it says how far to trust the digits.

    python benchmarks/grade_class.py [--submissions 300] [--steps N] [--jobs 1 2]
                                     [--repeats 1] [--baseline TREE]

``--steps`` left out: grade's own default. An older checkout whose ``grade`` still takes
``--out FILE.csv`` is called that way.
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


def grade(tree: Path, folder: Path, out: Path, steps: int | None, jobs: int) -> float:
    """Wall seconds of one `handgrad grade` of ``folder`` by the checkout ``tree``."""
    help_text = subprocess.run([sys.executable, "-m", "experiments.cli", "grade", "--help"],
                               cwd=tree, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(tree)}).stdout
    target = out.with_suffix(".csv") if "grades.csv" in help_text.split("--out")[1][:40] \
        else out
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "grade", str(folder),
                           "seed", *(["--steps", str(steps)] if steps else []), "--jobs",
                           str(jobs), "--out", str(target), "--force"], cwd=tree,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{tree}: grade failed ({done.returncode}): {done.stderr[-400:]}")
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=300)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline", type=Path, default=None, metavar="TREE")
    args = ap.parse_args(argv)
    trees = {"this checkout": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    runs = [(name, jobs) for name in trees for jobs in args.jobs]
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="handgrad-class-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        for i in range(args.submissions):
            shutil.copy(LEARNER, folder / f"student_{i:03d}.py")
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):   # alternate, so machine noise hits all alike
            for name, jobs in runs:
                out = Path(tmp) / f"out-{name.replace(' ', '-')}-{jobs}"
                best[name, jobs] = min(best[name, jobs],
                                       grade(trees[name], folder, out, args.steps, jobs))
    after = os.getloadavg()
    print(f"{args.submissions} seed submissions (correct_torch.py), "
          f"{f'--steps {args.steps}' if args.steps else 'grade default --steps'}, "
          f"best of {args.repeats}, {os.cpu_count()} cores; 1-minute load average "
          f"{before[0]:.1f} before, {after[0]:.1f} after")
    for (name, jobs), seconds in best.items():
        print(f"{name:<16}--jobs {jobs:<3}{seconds:8.1f} s   "
              f"{seconds / args.submissions * 1e3:7.0f} ms per submission")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
