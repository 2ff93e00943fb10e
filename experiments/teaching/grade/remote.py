"""A class graded on a Dask cluster (``handgrad grade --backend dask``).

Each submission is one task. What travels to the worker: the submission's bytes (read
here, never a link followed), its file name and check-folder name, the configuration and
the limits. On the worker, the file is written into a fresh folder of the worker's own
disk and checked by the same ``grade_one`` as locally: the learner's code runs in its own
process with the same sandbox (Landlock and seccomp, which the worker's kernel must offer:
else the row's report names the missing layer, as locally), time and memory limits. What
comes back: the row and the check folder as data (``backends.pack``), written here into
the grade folder. The worker's folder is named in the row and the check folder as the
submissions folder here, so the rows are those of a local grade (``seconds`` aside).

A task whose worker dies is run again on another worker by the scheduler; one lost beyond
its retries becomes a ``grader_error`` row that says so (nothing is left out silently).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from experiments.core import backends
from experiments.teaching.grade.discover import Submission


def grade_packed(sub: Submission, source: bytes, helpers: list, shown_folder: str, cfg,
                 timeout: float, memory_mb: int, definitions_only: bool, rubric=None,
                 fmt: str = "csv") -> tuple[dict, list]:
    """On the worker: ``grade_one`` on ``source`` written under ``sub``'s file name, beside
    its ``helpers`` ((name, bytes) pairs); the row and the check folder (as data), the
    worker's own folder named as ``shown_folder``."""
    from experiments.teaching.grade.folder import grade_one

    with backends.scratch_folder("handgrad-grade-") as tmp:
        folder = tmp / "submission"
        folder.mkdir()
        path = folder / sub.path.name
        path.write_bytes(source)
        for name, data in helpers:
            (folder / name).write_bytes(data)
        here = replace(sub, path=path, helpers=tuple(folder / name for name, _ in helpers))
        row = grade_one(here, cfg, tmp / "check", timeout, memory_mb, definitions_only,
                        rubric, fmt)
        files = backends.pack(tmp / "check") if (tmp / "check").is_dir() else []
    here, there = str(folder), shown_folder
    row = {k: v.replace(here, there) if isinstance(v, str) else v for k, v in row.items()}
    files = [(rel, data if data is None else data.replace(here.encode(), there.encode()))
             for rel, data in files]
    return row, files


def _lost(sub: Submission, cfg, sha: str) -> dict:
    from experiments.teaching.grade.folder import grader_error_row
    return grader_error_row(sub, cfg, "the Dask workers checking this file died on every "
                            "try the scheduler allows; it was not graded (not the learner's "
                            "fault: rerun with --resume)", sha)


def grade_on_dask(pending: list[tuple], settings: dict, workers: int, rows: dict,
                  progress, total: int, scheduler: str | None = None) -> str:
    """Fill ``rows`` ((file, config) -> row) for ``pending`` (submission, config) pairs on a
    Dask cluster (``backends.dask_client``: ``scheduler``, $DASK_SCHEDULER_ADDRESS, else a
    local cluster of ``workers``). ``settings``: ``checks`` (the grade folder's checks/,
    here), ``several``, ``timeout``, ``memory_mb``, ``definitions_only``, ``rubric``,
    ``fmt``. A submission that cannot be read here (or a folder with none) is graded here
    (``grade_one`` says why in its row, without starting a process). Returns where the
    cluster was (``backends.describe_client``)."""
    from experiments.teaching.boundary.learner import BadLearner
    from experiments.teaching.boundary.process import (
        FILE_LIMIT,
        HELPER_LIMIT,
        NOTEBOOK_LIMIT,
        read_capped,
    )
    from experiments.teaching.grade.folder import _check_folder, grade_one, sha256

    checks: Path = settings["checks"]
    limits = (settings["timeout"], settings["memory_mb"], settings["definitions_only"],
              settings["rubric"], settings["fmt"])

    def done(sub: Submission, cfg, row: dict) -> None:
        rows[sub.file, cfg.name] = row
        if progress is not None:
            progress(row, len(rows), total)

    tasks, pairs = [], []
    for sub, cfg in pending:
        where = _check_folder(checks, sub, cfg, settings["several"])
        try:
            if sub.path is None:
                raise BadLearner(sub.problem)
            limit = NOTEBOOK_LIMIT if sub.path.suffix.lower() == ".ipynb" else FILE_LIMIT
            source = read_capped(sub.path, limit, follow=False)
            helpers = [(h.name, read_capped(h, follow=False))
                       for h in list(sub.helpers)[:HELPER_LIMIT]]
        except BadLearner:
            done(sub, cfg, grade_one(sub, cfg, where, *limits))
            continue
        tasks.append((sub, source, helpers, str(sub.path.parent), cfg, *limits))
        pairs.append((sub, cfg, where))

    def finished(i: int, result) -> None:
        row, files = result
        sub, cfg, where = pairs[i]
        if files:
            backends.unpack(files, where)
        done(sub, cfg, row)

    with backends.dask_client(scheduler, workers) as client:
        where_run = backends.describe_client(client)
        lost = backends.run_on_dask(client, grade_packed, tasks,
                                    [f"{s.slot}-{c.name}" if settings["several"]
                                     else s.slot for s, c, _ in pairs],
                                    on_result=finished, prefix="handgrad-grade")
    for i in lost:
        sub, cfg, _ = pairs[i]
        done(sub, cfg, _lost(sub, cfg, sha256(sub.path)))
    return where_run
