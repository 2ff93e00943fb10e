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

from pathlib import Path

from experiments.core import backends
from experiments.teaching.grade.discover import Submission


def grade_packed(name: str, slot: str, source: bytes, shown_folder: str, cfg, timeout: float,
                 memory_mb: int, definitions_only: bool, rubric=None,
                 fmt: str = "csv") -> tuple[dict, list]:
    """On the worker: ``grade_one`` on ``source`` written as ``name``; the row and the check
    folder (as data), the worker's own folder named as ``shown_folder``."""
    from experiments.teaching.grade.folder import grade_one

    with backends.scratch_folder("handgrad-grade-") as tmp:
        folder = tmp / "submission"
        folder.mkdir()
        path = folder / name
        path.write_bytes(source)
        row = grade_one(Submission(path, slot), cfg, tmp / "check", timeout, memory_mb,
                        definitions_only, rubric, fmt)
        files = backends.pack(tmp / "check") if (tmp / "check").is_dir() else []
    here, there = str(folder), shown_folder
    row = {k: v.replace(here, there) if isinstance(v, str) else v for k, v in row.items()}
    files = [(rel, data if data is None else data.replace(here.encode(), there.encode()))
             for rel, data in files]
    return row, files


def _lost(sub: Submission, sha: str) -> dict:
    from experiments.teaching.grade.folder import grader_error_row
    return grader_error_row(sub, "the Dask workers checking this file died on every try the "
                            "scheduler allows; it was not graded (not the learner's fault: "
                            "rerun with --resume)", sha)


def grade_on_dask(pending: list[Submission], settings: dict, workers: int, rows: dict,
                  progress, total: int, scheduler: str | None = None) -> None:
    """Fill ``rows`` (name -> row) for ``pending`` on a Dask cluster (``backends.dask_client``:
    ``scheduler``, $DASK_SCHEDULER_ADDRESS, else a local cluster of ``workers``).
    ``settings``: ``cfg``, ``checks`` (the grade folder's checks/, here), ``timeout``,
    ``memory_mb``, ``definitions_only``, ``rubric``, ``fmt``. A file that cannot be read
    here is graded here (``grade_one`` says why in its row, without starting a process)."""
    from experiments.teaching.boundary.learner import BadLearner
    from experiments.teaching.boundary.process import FILE_LIMIT, NOTEBOOK_LIMIT, read_capped
    from experiments.teaching.grade.folder import grade_one, sha256

    checks: Path = settings["checks"]
    limits = (settings["cfg"], settings["timeout"], settings["memory_mb"],
              settings["definitions_only"], settings["rubric"], settings["fmt"])

    def done(sub: Submission, row: dict) -> None:
        rows[sub.path.name] = row
        if progress is not None:
            progress(row, len(rows), total)

    tasks, subs = [], []
    for sub in pending:
        limit = NOTEBOOK_LIMIT if sub.path.suffix.lower() == ".ipynb" else FILE_LIMIT
        try:
            source = read_capped(sub.path, limit, follow=False)
        except BadLearner:
            done(sub, grade_one(sub, limits[0], checks / sub.slot, *limits[1:]))
            continue
        tasks.append((sub.path.name, sub.slot, source, str(sub.path.parent), *limits))
        subs.append(sub)

    def finished(i: int, result) -> None:
        row, files = result
        if files:
            backends.unpack(files, checks / subs[i].slot)
        done(subs[i], row)

    with backends.dask_client(scheduler, workers) as client:
        lost = backends.run_on_dask(client, grade_packed, tasks, [s.slot for s in subs],
                                    on_result=finished, prefix="handgrad-grade")
    for i in lost:
        done(subs[i], _lost(subs[i], sha256(subs[i].path)))
