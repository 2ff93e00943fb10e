"""``handgrad grade DIR [NAME|CONFIG.toml] --out grades.csv``: every learner's file, checked.

For teachers. Each ``*.py`` in DIR is checked like ``handgrad check`` does (``api.check_file``:
its own process, its own time and memory limits), and becomes one row of grades.csv
(``GRADE_COLUMNS``): file, status (agree, differ, error, timeout, bad_output, diverged),
diagnosis (diagnose's kind at the first differing parameter), first_param (in the file's
own names), worst_rel_err, worst_ratio, seconds and a one-line message. A submission that
crashes, hangs or exhausts its memory is a row like any other; it never stops the grading.

Next to grades.csv (``--out``)::

    grades.csv       one row per submission, in file-name order
    grades.md        the counts per status and diagnosis, and the table
    grades/NAME/     each submission's check folder (none for a file that could not be
                     loaded: its row says why); the training runs are written without plots

``--jobs N`` checks N submissions at once (joblib); each uses one torch and one BLAS
thread, so the rows do not depend on N (their ``seconds`` aside).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from experiments.teaching.check.command import add_limits


def register(subparsers, formatter_class=argparse.HelpFormatter, help: str = "") -> None:
    """Add ``handgrad grade`` (experiments.cli's feature-module protocol)."""
    p = subparsers.add_parser(
        "grade", formatter_class=formatter_class,
        help=help,
        description="Check every *.py in DIR as `handgrad check` does, each in its own "
                    "process with its own limits, and write grades.csv (one row per "
                    "submission), grades.md and one check folder per submission next to "
                    "it (grades/NAME/).\n\n  handgrad grade submissions/ seed --out "
                    "grades.csv --timeout 20 --jobs 2")
    p.add_argument("folder", type=Path, metavar="DIR")
    add_limits(p)
    p.add_argument("--out", type=Path, required=True, metavar="grades.csv",
                   help="the grades table; grades.md and grades/ go next to it")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="submissions checked at once")
    p.set_defaults(func=cmd_grade)


def grade_one(path: Path, cfg, out: Path, timeout: float, memory_mb: int) -> dict:
    """One submission's row; handgrad's own failures become rows too."""
    from experiments.core.threads import limited_threads
    from experiments.teaching.check.api import CheckResult, check_file

    t0 = time.perf_counter()
    try:
        with limited_threads(1):
            r = check_file(path, cfg, timeout=timeout, memory_mb=memory_mb, out=out,
                           plots=False)
    except Exception as err:   # one submission never stops the grading
        r = CheckResult(path.name, "error", 4, f"handgrad failed on this file: "
                        f"{type(err).__name__}: {err}", seconds=time.perf_counter() - t0)
    return {"file": path.name, "status": r.status, "diagnosis": r.kind,
            "first_param": r.first_param, "worst_rel_err": r.worst_rel_err,
            "worst_ratio": r.worst_ratio, "seconds": round(r.seconds, 3),
            "message": r.message}


def _submissions(folder: Path) -> list[Path]:
    from experiments.core.config import ConfigError
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the folder of the learners' .py "
                          f"files")
    files = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not files:
        raise ConfigError(f"{folder} holds no .py files to grade")
    return files


def grade_folder(folder: Path, config="seed", *, out: Path, overrides=(), steps=None,
                 timeout: float = 60.0, memory_mb: int = 1024, jobs: int = 1,
                 force: bool = False, progress=None):
    """Check every submission (module docstring); return the grades table. ``progress``
    is called with each row as it is done. Bad arguments raise ``ConfigError`` before
    anything is written."""
    import joblib
    import pandas as pd

    from experiments.core.config import ConfigError
    from experiments.core.schema import GRADE_COLUMNS
    from experiments.output.rundir import atomic_folder, check_out
    from experiments.teaching.check.api import resolve_config

    files = _submissions(folder)
    cfg = resolve_config(config, overrides, steps)
    out = Path(out)
    if out.suffix != ".csv":
        raise ConfigError(f"--out {out}: give the grades table's path, ending in .csv")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give a number of submissions checked at once >= 1")
    for path in (out, out.with_suffix(".md")):
        if path.exists() and not force:
            raise ConfigError(f"{path} already exists; pass --force to replace it")
    checks = out.with_suffix("")
    check_out(checks, force, "grade")
    rows = []
    with atomic_folder(checks, force, kind="grade") as tmp:
        # in file order, each row as soon as it and the ones before it are done (jobs=1:
        # one after the other in this process)
        done = joblib.Parallel(n_jobs=jobs, return_as="generator")(
            joblib.delayed(grade_one)(p, cfg, tmp / p.stem, timeout, memory_mb) for p in files)
        for row in done:
            rows.append(row)
            if progress is not None:
                progress(row, len(rows), len(files))
    table = pd.DataFrame(rows, columns=GRADE_COLUMNS)
    _write_atomic(out, table.to_csv(index=False, lineterminator="\n"))
    _write_atomic(out.with_suffix(".md"), grades_markdown(table, folder, cfg, checks))
    return table


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def grades_markdown(table, folder: Path, cfg, checks: Path) -> str:
    from experiments.output.report import markdown_table

    counts = table.groupby(["status", "diagnosis"], dropna=False).size().reset_index(
        name="submissions")
    return "\n".join([
        f"# handgrad grade: {folder}", "",
        f"{len(table)} submissions checked against autograd on `{cfg.name}` (sizes "
        f"{'-'.join(map(str, cfg.sizes)) if cfg.sizes else 'from the data'}, {cfg.loss}, "
        f"mode {cfg.mode}); each one's check folder is under `{checks.name}/`.", "",
        "## Counts", "", markdown_table(counts), "",
        "## Submissions", "", markdown_table(table), ""])


def _line(row: dict, done: int, total: int) -> None:
    what = row["status"] + (f" ({row['diagnosis']}, {row['first_param']})"
                            if row["status"] == "differ" else "")
    print(f"[{done}/{total}] {row['file']}: {what}", flush=True)


def cmd_grade(args) -> int:
    table = grade_folder(args.folder, args.experiment, out=args.out, overrides=args.overrides,
                         steps=args.steps, timeout=args.timeout, memory_mb=args.memory,
                         jobs=args.jobs, force=args.force, progress=_line)
    counts = table["status"].value_counts()
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"wrote {args.out}, {args.out.with_suffix('.md')} and {args.out.with_suffix('')}/")
    return 0
