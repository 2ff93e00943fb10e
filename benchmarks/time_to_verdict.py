"""How long a learner waits for `handgrad check`'s verdict, next to the import floor.

Runs, in fresh processes and interleaved (so a change in the machine's load hits each
alike), ``repeats`` times each:

    verdict     `handgrad check FILE seed --steps 50`: wall seconds from the start until
                the verdict line (``result: ...``) is on stdout, and until the process ends
                (the check folder written: reports, CSVs and, unless --no-plots, figures)
    cli         `python -c "import experiments.cli"`: the command line's own start-up
    torch       `python -c "import torch"` and one torch.optim.SGD step: the floor no check
                can go below (autograd and torch.optim.SGD are the reference; SGD's first
                use imports torch._dynamo, seconds of it under load)

and prints each one's best and median with the 1-minute load average before and after
(`os.getloadavg`): on a shared machine the figures are only as good as the load is low.
Beside the wall figures of a whole process, its CPU seconds (user + system, with every
process it waited for: the learner's too), best and median: what the load changes less,
and for the floor the seconds no check can go below on this processor.
``--compare DIR`` times the same check from another checkout of handgrad too (a `git
worktree` of an earlier commit, say), interleaved with this one, both as
``python -m experiments``.

    python benchmarks/time_to_verdict.py [--repeats 5] [--file F] [--steps 50] [--no-plots]
                                         [--compare DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEARNER = ROOT / "examples" / "learners" / "correct_w1b1.py"
FLOOR = ("import torch; p = torch.zeros(3, requires_grad=True); p.sum().backward(); "
         "torch.optim.SGD([p], lr=1.0).step()")


def handgrad(root: Path | None) -> list[str]:
    """The console script next to this interpreter, else (or for another checkout ``root``)
    ``python -m experiments``."""
    script = Path(sys.executable).parent / "handgrad"
    if root is None and script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "experiments"]


def children_cpu() -> float:
    """CPU seconds of the processes waited for so far (and of those they waited for)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_check(args, out: Path, root: Path | None = None) -> tuple[float, float, float]:
    """(seconds to the verdict line, seconds to the end, CPU seconds) of one `handgrad
    check`, from this checkout or from ``root``."""
    cmd = [*handgrad(root or (ROOT if args.compare else None)), "check",
           str(args.file.resolve()), "seed", "--steps", str(args.steps), "--out", str(out)]
    cmd += ["--no-plots"] if args.no_plots else []
    cpu0, t0 = children_cpu(), time.perf_counter()
    verdict = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                          cwd=root or ROOT) as proc:
        for line in proc.stdout:
            if verdict is None and line.startswith("result: "):
                verdict = time.perf_counter() - t0
    end = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or verdict is None:
        raise SystemExit(f"handgrad check exited {proc.returncode} without a verdict: {cmd}")
    return verdict, end, children_cpu() - cpu0


def time_python(code: str) -> tuple[float, float]:
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t0, children_cpu() - cpu0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--file", type=Path, default=LEARNER)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--compare", type=Path, default=None, metavar="DIR",
                   help="another checkout of handgrad to time the same check from")
    args = p.parse_args(argv)
    keys = ["verdict", "end", "cli", "torch"] + (["verdict_b", "end_b"] if args.compare else [])
    rows = {k: [] for k in keys}
    cpu = {k: [] for k in ("end", "cli", "torch", "end_b")}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            v, e, c = time_check(args, Path(tmp) / f"c{i}")
            rows["verdict"].append(v)
            rows["end"].append(e)
            cpu["end"].append(c)
            if args.compare:
                v, e, c = time_check(args, Path(tmp) / f"b{i}", args.compare.resolve())
                rows["verdict_b"].append(v)
                rows["end_b"].append(e)
                cpu["end_b"].append(c)
            for key, code in (("cli", "import experiments.cli"), ("torch", FLOOR)):
                w, c = time_python(code)
                rows[key].append(w)
                cpu[key].append(c)
    load_after = os.getloadavg()[0]
    end = "... to the end (folder written" + (", no plots)" if args.no_plots
                                              else ", with figures)")
    names = {"verdict": f"check {args.file.name} seed --steps {args.steps}: to the verdict",
             "end": end,
             "verdict_b": f"the same from {args.compare}: to the verdict",
             "end_b": end,
             "cli": "python -c 'import experiments.cli'",
             "torch": "import torch and one SGD step (the floor)"}
    order = ["verdict", "end", "verdict_b", "end_b", "cli", "torch"]
    print(f"seconds, best and median of {args.repeats}, interleaved; 1-minute load "
          f"average {load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} CPUs")
    print(f"  {'':<62} wall: best median   CPU: best median")
    for key in (k for k in order if k in rows):
        c = (f"{min(cpu[key]):9.2f} {statistics.median(cpu[key]):6.2f}" if key in cpu
             else "")
        print(f"  {names[key]:<62} {min(rows[key]):9.2f} {statistics.median(rows[key]):6.2f}"
              f"  {c:>18}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
