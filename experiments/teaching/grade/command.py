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
                    "sandboxed process with its own limits, on each config given, and write "
                    "one grade folder: grades.csv (one row per submission and config), "
                    "grades.md, not_graded.csv (every other file, with the reason) and "
                    "checks/NAME/, replaced together. --steps defaults to the config's, at "
                    "most 200.\n\n  handgrad grade submissions/ seed --out grades/week3 "
                    "--timeout 20 --jobs 2\n  handgrad grade lms-export/ --config seed "
                    "--config worked-2-2-2")
    p.add_argument("folder", type=Path, metavar="DIR")
    add_limits(p)
    p.add_argument("--out", type=Path, default=None, metavar="FOLDER",
                   help="the grade folder (default: grades/DIR's name)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="submissions checked at once")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of the grade folder at --out whose file is unchanged "
                        "(after an interrupt) and grade the rest")
    p.set_defaults(func=cmd_grade)


def _line(row: dict, done: int, total: int) -> None:
    from experiments.teaching.grade.discover import shown

    what = row["status"] + (f" ({row['diagnosis']}, {row['first_param']})"
                            if row["status"] == "differ" else "")
    print(f"[{done}/{total}] {shown(row['file'])} ({row['config']}): {what}", flush=True)


def cmd_grade(args) -> int:
    from experiments.teaching.grade.discover import shown
    from experiments.teaching.grade.folder import grade_folder
    from experiments.teaching.grade.report import UNSANDBOXED

    grades = grade_folder(args.folder, configs_of(args), out=args.out,
                          overrides=args.overrides, steps=args.steps, timeout=args.timeout,
                          memory_mb=args.memory, jobs=args.jobs, force=args.force,
                          resume=args.resume, definitions_only=args.definitions_only,
                          progress=_line)
    for s in grades.skipped:
        print(f"not graded: {shown(s.name)}: {s.why}")
    if grades.sandbox_missing:
        print(f"handgrad: {UNSANDBOXED}{'; '.join(grades.sandbox_missing)}", file=sys.stderr)
    counts = grades.table["status"].value_counts()
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"grade folder: {grades.out} (grades.csv, grades.md, not_graded.csv, checks/)")
    return 0
