"""``handgrad grade DIR [NAME|CONFIG.toml] [--config ...] [--out FOLDER]``: every learner's
submission, checked.

For teachers. The library (``folder.grade_folder``) does the work and returns the table;
this module parses the arguments and prints a line per submission as it is graded, then
the counts (bad input: one line, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.core import backends
from experiments.teaching.check.command import add_limits, configs_of


def register(subparsers, formatter_class=argparse.HelpFormatter, help: str = "") -> None:
    """Add ``handgrad grade`` (experiments.cli's feature-module protocol)."""
    p = subparsers.add_parser(
        "grade", formatter_class=formatter_class,
        help=help,
        description="Check every submission in DIR as `handgrad check` does — each .py or "
                    ".ipynb file directly in DIR, and in each folder of DIR (one per "
                    "student, as Canvas, Moodle or Gradescope download them) the file that "
                    "defines gradients, its other .py files its helpers — each in its own "
                    "sandboxed process with its own limits, on each config or reference "
                    "given, and write one grade folder: grades.csv (one row per submission "
                    "and config, with points, the mistake in words and flags), "
                    "grades.md and report.html (the class summary), not_graded.csv (every "
                    "other file, with the reason) and checks/NAME/ (with feedback.md), "
                    "replaced together. --steps defaults to the config's, at most 200."
                    "\n\n  handgrad grade submissions/ seed --out grades/week3 "
                    "--timeout 20 --jobs 2\n  handgrad grade lms-export/ --config seed "
                    "--config worked-2-2-2")
    p.add_argument("folder", type=Path, metavar="DIR|ARCHIVE.zip",
                   help="the submissions: a folder, or the LMS's zip of them (unpacked "
                        "safely into a temporary folder)")
    add_limits(p, steps="the config's, at most 200")   # folder.GRADE_STEPS (a test checks)
    p.add_argument("--out", type=Path, default=None, metavar="FOLDER",
                   help="the grade folder (default: grades/DIR's name)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="submissions checked at once (on dask: the local cluster's workers)")
    p.add_argument("--backend", choices=("loky", "dask"), default="loky",
                   help="loky: worker processes on this machine; dask: one task per "
                        "submission on a Dask cluster (--scheduler, else "
                        "$DASK_SCHEDULER_ADDRESS, else a local cluster of --jobs workers)")
    backends.add_scheduler_option(p)
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of the grade folder at --out whose file is unchanged "
                        "(after an interrupt) and grade the rest")
    p.add_argument("--rubric", type=Path, default=None, metavar="FILE.toml",
                   help="points per part of the check (default: 4 gradients, 2 second call, "
                        "3 training, 1 update; docs/check.md, 'Points')")
    p.add_argument("--format", choices=("csv", "gradescope"), default="csv", dest="fmt",
                   help="gradescope: also a Gradescope results.json in each check folder")
    p.set_defaults(func=cmd_grade)


def _line(row: dict, done: int, total: int) -> None:
    from experiments.teaching.grade.discover import shown

    what = row["status"] + (f" ({row.get('mistake') or row['diagnosis']}, "
                            f"{row['first_param']})" if row["status"] == "differ" else "") \
        + (f", {row['score']:g}/{row['max_score']:g} points" if "max_score" in row else "")
    print(f"[{done}/{total}] {shown(row['file'])} ({row['config']}): {what}", flush=True)


def cmd_grade(args) -> int:
    from experiments.teaching.grade.discover import shown
    from experiments.teaching.grade.folder import grade_folder
    from experiments.teaching.grade.report import UNSANDBOXED

    grades = grade_folder(args.folder, configs_of(args), out=args.out,
                          overrides=args.overrides, steps=args.steps, timeout=args.timeout,
                          memory_mb=args.memory, jobs=args.jobs, force=args.force,
                          resume=args.resume, definitions_only=args.definitions_only,
                          progress=_line, backend=args.backend, scheduler=args.scheduler,
                          rubric=args.rubric, fmt=args.fmt)
    for s in grades.skipped:
        print(f"not graded: {shown(s.name)}: {s.why}")
    if grades.sandbox_missing:
        print(f"handgrad: {UNSANDBOXED}{'; '.join(grades.sandbox_missing)}", file=sys.stderr)
    counts = grades.table["status"].value_counts()
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"grade folder: {grades.out} (grades.csv, grades.md, report.html, not_graded.csv, "
          f"checks/NAME/feedback.md)")
    return 0
