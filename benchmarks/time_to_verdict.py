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

    python benchmarks/time_to_verdict.py [--repeats 5] [--file F] [--steps 50] [--no-plots]
"""

from __future__ import annotations

import argparse
import os
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


def handgrad() -> list[str]:
    """The console script next to this interpreter, else ``python -m experiments``."""
    script = Path(sys.executable).parent / "handgrad"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "experiments"]


def time_check(args, out: Path) -> tuple[float, float]:
    """(seconds to the verdict line, seconds to the end) of one `handgrad check`."""
    cmd = [*handgrad(), "check", str(args.file), "seed", "--steps", str(args.steps),
           "--out", str(out)] + (["--no-plots"] if args.no_plots else [])
    t0 = time.perf_counter()
    verdict = None
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        for line in proc.stdout:
            if verdict is None and line.startswith("result: "):
                verdict = time.perf_counter() - t0
    end = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or verdict is None:
        raise SystemExit(f"handgrad check exited {proc.returncode} without a verdict: {cmd}")
    return verdict, end


def time_python(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--file", type=Path, default=LEARNER)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    rows = {"verdict": [], "end": [], "cli": [], "torch": []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            v, e = time_check(args, Path(tmp) / f"c{i}")
            rows["verdict"].append(v)
            rows["end"].append(e)
            rows["cli"].append(time_python("import experiments.cli"))
            rows["torch"].append(time_python(FLOOR))
    load_after = os.getloadavg()[0]
    names = {"verdict": f"check {args.file.name} seed --steps {args.steps}: to the verdict",
             "end": "... to the end (folder written" + (", no plots)" if args.no_plots
                                                        else ", with figures)"),
             "cli": "python -c 'import experiments.cli'",
             "torch": "import torch and one SGD step (the floor)"}
    print(f"wall seconds, best and median of {args.repeats}, interleaved; 1-minute load "
          f"average {load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} CPUs")
    for key, label in names.items():
        print(f"  {label:<62} {min(rows[key]):6.2f} {statistics.median(rows[key]):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
