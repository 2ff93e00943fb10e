"""A class's grading, start to end: every submission checked, one grade folder written.

``grade_folder(DIR, config, out=OUT)`` checks each submission that ``discover`` finds in
DIR (a file, or one student's folder with its helpers) as ``handgrad check`` does
(``api.check_file``: its own sandboxed process, its own time and memory limits), on each
config given (``GRADE_STEPS`` training steps at most unless ``steps`` says), and writes one
folder, replaced as a whole (``rundir.atomic_folder``, marker ``handgrad grade``)::

    OUT/grades.csv       one row per submission and config, in file-name order
                         (GRADE_COLUMNS)
    OUT/grades.md        the settings, counts per status and diagnosis, the table, and the
                         entries that were not graded with their reasons
    OUT/not_graded.csv   those entries: name, why
    OUT/checks/SLOT/     each submission's check folder (none for a file that could not be
                         loaded: its row says why); training runs are written without plots;
                         with several configs, SLOT/CONFIG/
    OUT/INTERRUPTED      only after Ctrl-C / SIGTERM: grades.csv holds the rows done

The folder is put in place once every row is done, so every learner process of the run is
gone by then (each check closes its own). ``resume=True`` keeps the rows of an earlier
folder at OUT whose file is unchanged (same sha256), by file and config, and grades the
rest. ``jobs`` > 1
checks that many submissions at once (joblib's loky workers, one torch and one BLAS
thread each, so the rows do not depend on it). A worker that dies is replaced; the
submission it was checking is tried again, and after a second death its row says
``grader_error: the grading worker died``. handgrad's own failures are ``grader_error``
rows, never the learner's fault.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from experiments.core.config import ConfigError
from experiments.teaching.grade.discover import NotGraded, Submission, discover, shown

#: what a grade folder may hold: ``--force`` and ``--resume`` refuse a folder with more
OWN_FILES = frozenset({".handgrad", "grades.csv", "grades.md", "not_graded.csv", "checks",
                       "settings.json", "INTERRUPTED", "mistakes.png", "scores.png",
                       "report.html"})
WORKER_DEATHS = 2     # deaths of the worker checking one submission before it is a row
BACKENDS = ("loky", "dask")   # where the submissions are checked (``_grade_all``)
#: training steps a grading runs by default (at most; ``--steps`` sets them): the diagnosis is
#: made at the initial point and the second call, and 200 lockstep steps show a drift, while
#: the seed config's 10,000 would take a class of 300 most of an hour
GRADE_STEPS = 200


def sha256(path: Path) -> str:
    from experiments.teaching.boundary.process import read_capped
    try:
        return hashlib.sha256(read_capped(path, follow=False)).hexdigest()
    except Exception:   # unreadable or too large: check_file says why in the row
        return ""


@functools.cache
def warm() -> None:
    """Once per grading process, what a first check would otherwise load inside its own
    timing: torch, pandas, and torch.optim.SGD's first use (which imports torch._dynamo).
    Without it the first row of each worker read about 3 s against 0.7 s for the rest,
    and sorting by ``seconds`` pointed at whoever came first."""
    import pandas  # noqa: F401
    import torch

    p = torch.zeros(1, requires_grad=True)
    p.sum().backward()
    torch.optim.SGD([p], lr=0.0).step()


def grade_one(sub: Submission, cfg, out: Path, timeout: float, memory_mb: int,
              definitions_only: bool = False, rubric=None, fmt: str = "csv") -> dict:
    """One submission's row on ``cfg`` (a config, or a ``ReferenceFile``); handgrad's own
    failures become ``grader_error`` rows."""
    from experiments.core.threads import limited_threads
    from experiments.teaching.check.api import CheckResult, check_file
    from experiments.teaching.check.integrity import ran_flag
    from experiments.teaching.grade.per_submission import extras
    from experiments.teaching.reference.check import check_reference_file
    from experiments.teaching.reference.load import ReferenceFile

    if sub.path is None:   # a student's folder without a single submission in it
        r = CheckResult(sub.file, "not_a_submission", 2, sub.problem)
    else:
        warm()
        t0 = time.perf_counter()
        try:
            with limited_threads(1):
                # helpers: the student's own folder's modules only (in a flat folder every
                # other file is a classmate's); never a link (a file swapped for one)
                if isinstance(cfg, ReferenceFile):   # a teacher's model in torch
                    r = check_reference_file(sub.path, cfg.load(), timeout=timeout,
                                             memory_mb=memory_mb, out=out, plots=False,
                                             helpers=sub.helpers, follow=False,
                                             definitions_only=definitions_only)
                else:
                    r = check_file(sub.path, cfg, timeout=timeout, memory_mb=memory_mb,
                                   out=out, plots=False, helpers=sub.helpers, follow=False,
                                   definitions_only=definitions_only)
        except Exception as err:   # one submission never stops the grading
            r = CheckResult(sub.file, "grader_error", 4, f"handgrad failed on this file "
                            f"(not the learner's fault): {type(err).__name__}: {err}",
                            seconds=time.perf_counter() - t0)
    return {"student": sub.student, "file": sub.file, "config": cfg.name,
            "status": r.status, "diagnosis": r.kind,
            "first_param": r.first_param, "worst_rel_err": r.worst_rel_err,
            "worst_ratio": r.worst_ratio, "seconds": round(r.seconds, 3),
            "message": r.message,
            "sha256": r.sha256 or (sha256(sub.path) if sub.path is not None else ""),
            "flags": ran_flag(r.autograd_runs), "_sandbox": r.sandbox_missing,
            **extras(r, out, rubric, fmt, sub.student)}


def grader_error_row(sub: Submission, cfg, message: str, sha: str | None = None) -> dict:
    """The row of a submission handgrad could not grade on ``cfg`` (not the learner's
    fault)."""
    if sha is None:
        sha = sha256(sub.path) if sub.path is not None else ""
    return {"student": sub.student, "file": sub.file, "config": cfg.name,
            "status": "grader_error", "diagnosis": "", "first_param": "",
            "worst_rel_err": float("nan"), "worst_ratio": float("nan"), "seconds": 0.0,
            "score": 0.0, "message": message, "sha256": sha, "_sandbox": []}


def _died(sub: Submission, cfg) -> dict:
    return grader_error_row(sub, cfg, f"the grading worker died {WORKER_DEATHS} times while "
                            f"checking this file; it was not graded (not the learner's "
                            f"fault: rerun with --resume)")


def _grade_all(pending: list[tuple], run, jobs: int, rows: dict, progress, total: int,
               backend: str = "loky", scheduler: str | None = None) -> str:
    """Fill ``rows`` ((file, config) -> row) for ``pending`` (submission, config) pairs,
    replacing workers that die; on ``backend="dask"``, one task per pair on a Dask cluster
    (``remote``). Returns where they ran, for grades.md."""
    if backend == "dask":
        from experiments.teaching.grade.remote import grade_on_dask
        return grade_on_dask(pending, run.keywords, jobs, rows, progress, total, scheduler)
    import joblib
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    deaths: dict[tuple, int] = {}
    pending = list(pending)
    while pending:
        batch = list(pending)   # joblib reads its tasks lazily: never the list that shrinks
        results = joblib.Parallel(n_jobs=jobs, return_as="generator")(
            joblib.delayed(run)(sub, cfg) for sub, cfg in batch)
        try:
            for (sub, cfg), row in zip(batch, results, strict=False):
                rows[sub.file, cfg.name] = row
                pending.remove((sub, cfg))
                if progress is not None:
                    progress(row, len(rows), total)
        except (TerminatedWorkerError, BrokenProcessPool):
            # results come in order, so the first one missing was being checked when its
            # worker died (perhaps beside another: that one is simply tried again)
            sub, cfg = pending[0]
            key = (sub.file, cfg.name)
            deaths[key] = deaths.get(key, 0) + 1
            if deaths[key] >= WORKER_DEATHS:
                rows[key] = _died(sub, cfg)
                pending.remove((sub, cfg))
                if progress is not None:
                    progress(rows[key], len(rows), total)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
    return f"--jobs {jobs} on this machine"


def check_places(folder: Path, out: Path) -> None:
    """Refuse an ``out`` that is the submissions folder, inside it, or holds it: a
    ``--force`` there would replace the submissions."""
    f, o = folder.resolve(), out.resolve()
    where = ("is" if o == f else "lies inside" if f in o.parents else
             "holds" if o in f.parents else None)
    if where is not None:
        raise ConfigError(f"--out {out} {where} the submissions folder {folder}; choose a "
                          f"folder outside it (e.g. --out grades/{f.name})")


def check_own_files(out: Path) -> None:
    """A grade folder to be replaced holds only what handgrad wrote into one."""
    if out.is_dir():
        extra = sorted(p.name for p in out.iterdir() if p.name not in OWN_FILES)
        if extra:
            names = ", ".join(shown(n) for n in extra[:3]) + (" ..." if len(extra) > 3 else "")
            raise ConfigError(f"{out} holds files a grade folder does not ({names}); --force "
                              f"replaces only what handgrad wrote: choose another --out")


def grading_config(config, overrides=(), steps: int | None = None):
    """``config`` resolved for grading: ``steps`` training steps, or by default the config's
    own, at most ``GRADE_STEPS``. A reference file (``is_reference``) is loaded and vetted
    once, here, as a ``ReferenceFile``: a broken one fails before any grading."""
    import math

    from experiments.core.runner import resolve
    from experiments.teaching.check.api import resolve_config
    from experiments.teaching.reference.load import ReferenceFile, is_reference

    if is_reference(config):   # a teacher's model in torch
        if overrides:
            raise ConfigError(f"--set {overrides[0]}: --set changes a config; a reference "
                              f"file sets LR, STEPS and BATCH_SIZE itself")
        ref = ReferenceFile.vetted(config, steps)
        return ReferenceFile.vetted(config, GRADE_STEPS) if steps is None \
            and ref.steps > GRADE_STEPS else ref
    cfg = resolve_config(config, overrides, steps)
    if steps is None:
        N = len(resolve(cfg)[1].X)
        B = N if cfg.batch_size == "full" else cfg.batch_size
        total = cfg.steps if cfg.steps else cfg.epochs * math.ceil(N / B)
        if total > GRADE_STEPS:
            cfg = resolve_config(cfg, (), GRADE_STEPS)
    return cfg


def grading_settings(cfgs, timeout: float, memory_mb: int, definitions_only: bool,
                     rubric=None, fmt: str = "csv") -> dict:
    """What a row's grade depends on besides the file: kept in settings.json, and compared
    on ``--resume``."""
    from experiments.teaching.grade.report import version
    from experiments.teaching.grade.rubric import DEFAULT

    return {"configs": [c.to_dict() for c in cfgs], "timeout": timeout, "memory_mb": memory_mb,
            "definitions_only": definitions_only, "handgrad": version(),
            "rubric": (rubric or DEFAULT).to_dict(), "format": fmt}


def kept_rows(out: Path, subs: list[Submission], settings: dict) -> dict[tuple, dict]:
    """The rows of the grade folder at ``out`` to keep on ``--resume``, by (file, config):
    graded to the end with the same ``settings``, and the file still there with the same
    sha256."""
    import pandas as pd

    try:
        before = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if before != json.loads(json.dumps(settings)):
        changed = sorted(k for k in settings if not isinstance(before, dict)
                         or before.get(k) != json.loads(json.dumps(settings[k])))
        said = f"{', '.join(changed)} changed" if changed else "none recorded"
        raise ConfigError(f"--resume: {out} was graded with other settings ({said}); grade "
                          f"again with --force, or resume with the same configs, --set, "
                          f"--steps, --timeout, --memory, --rubric and --format")
    csv = out / "grades.csv"
    if not csv.is_file():
        return {}
    try:
        table = pd.read_csv(csv, keep_default_na=False, dtype={
            "sha256": str, "grad_sha256": str, "file": str, "student": str, "config": str})
    except (ValueError, OSError) as err:
        raise ConfigError(f"--resume: {csv} cannot be read ({err}); grade again with "
                          f"--force") from None
    if not {"sha256", "file", "config"} <= set(table.columns):
        raise ConfigError(f"--resume: {csv} was written by an older handgrad (no sha256 or "
                          f"config column); grade again with --force")
    now = {s.file: s for s in subs}
    rows = {}
    for row in table.to_dict("records"):
        sub = now.get(row["file"])
        if sub is not None and sub.path is not None \
                and row["status"] not in ("grader_error", "interrupted") \
                and row["sha256"] and row["sha256"] == sha256(sub.path):
            for col in ("worst_rel_err", "worst_ratio", "score", "max_score"):
                row[col] = float(row[col]) if row[col] != "" else float("nan")
            rows[row["file"], row["config"]] = {**row, "_sandbox": []}
    return rows


def grade_folder(folder: Path, config="seed", *, out: Path | None = None, overrides=(),
                 steps=None, timeout: float = 60.0, memory_mb: int = 1024, jobs: int = 1,
                 force: bool = False, resume: bool = False, definitions_only: bool = False,
                 progress=None, backend: str = "loky", scheduler: str | None = None,
                 rubric=None, fmt: str = "csv"):
    """Grade every submission in ``folder`` (module docstring) on ``config`` — a name, a
    TOML path, a RunConfig, a reference file, or a list of them: one row per submission
    and config — and return ``Grades``. ``progress(row, done, total)`` is called as rows
    are done. ``backend``: ``loky`` (this machine) or ``dask`` (``remote``: the cluster at
    ``scheduler``, else at $DASK_SCHEDULER_ADDRESS, else a local one of ``jobs``
    workers). Bad arguments raise ``ConfigError`` before anything runs or is written."""
    import pandas as pd

    from experiments.core.schema import GRADE_COLUMNS
    from experiments.output.rundir import atomic_folder, check_out
    from experiments.teaching.boundary.process import check_limits
    from experiments.teaching.grade import rubric as rubrics
    from experiments.teaching.grade.archive import is_archive, unpacked
    from experiments.teaching.grade.report import grades_markdown

    folder = Path(folder)
    archive = is_archive(folder)
    if not (folder.is_file() if archive else folder.is_dir()):
        raise ConfigError(f"{folder} is not a {'file' if archive else 'folder'}; give the "
                          f"folder of the learners' submissions (.py or .ipynb files, or one "
                          f"folder per student) or the LMS's .zip of them")
    out = Path(out) if out is not None else Path("grades") / (
        folder.stem if archive else folder.resolve().name)
    if out.suffix.lower() == ".csv":
        raise ConfigError(f"--out {out}: give the grade folder (grades.csv, grades.md and "
                          f"the check folders go inside it, replaced together), e.g. "
                          f"--out {out.with_suffix('')}")
    check_places(folder, out)
    check_limits(timeout, memory_mb)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give a number of submissions checked at once >= 1")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose one of {list(BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ConfigError(f"--scheduler {scheduler}: a Dask scheduler's address goes with "
                          f"--backend dask")
    configs = list(config) if isinstance(config, (list, tuple)) else [config]
    if not configs:
        raise ConfigError("give at least one config (a name or a TOML file) to grade on")
    cfgs = [grading_config(c, overrides, steps) for c in configs]
    names = [c.name for c in cfgs]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"--config: {', '.join(twice)} given twice (configs are told "
                          f"apart by their name); give each config once")
    rubric = rubric if isinstance(rubric, rubrics.Rubric) else rubrics.load(rubric)
    if fmt not in ("csv", "gradescope"):
        raise ConfigError(f"--format {fmt}: give csv or gradescope")
    with contextlib.ExitStack() as stack:   # an archive: unpacked for the grading only
        root, left_out = stack.enter_context(unpacked(folder)) if archive else (folder, [])
        subs, skipped = discover(root)
        skipped = left_out + skipped
        if not subs:
            raise ConfigError(f"{folder} holds no .py or .ipynb files and no folders to grade"
                              + (f" ({len(skipped)} other entries, e.g. {shown(skipped[0].name)}"
                                 f": {skipped[0].why})" if skipped else ""))
        check_out(out, force or resume, "grade", legacy=False)
        check_own_files(out)
        recorded = grading_settings(cfgs, timeout, memory_mb, definitions_only, rubric, fmt)
        kept = kept_rows(out, subs, recorded) if resume and out.exists() else {}
        rows: dict[tuple, dict] = dict(kept)
        jobs_list = [(s, c) for s in subs for c in cfgs]
        pending = [(s, c) for s, c in jobs_list if (s.file, c.name) not in kept]
        several = len(cfgs) > 1
        interrupted = False
        with atomic_folder(out, force or resume, kind="grade", keep=(KeyboardInterrupt,),
                           legacy=False) as tmp:
            checks = tmp / "checks"
            checks.mkdir()
            for sub, cfg in jobs_list:   # the kept rows' check folders come along
                where = _check_folder(Path("checks"), sub, cfg, several)
                old = out / where
                if (sub.file, cfg.name) in kept and old.is_dir() and not old.is_symlink():
                    shutil.copytree(old, tmp / where, symlinks=True)
            run = functools.partial(_grade_sub, checks=checks.resolve(), several=several,
                                    timeout=timeout, memory_mb=memory_mb,
                                    definitions_only=definitions_only, rubric=rubric, fmt=fmt)
            where_run = "on Dask" if backend == "dask" else f"--jobs {jobs} on this machine"
            try:
                where_run = _grade_all(pending, run, jobs, rows, progress, len(jobs_list),
                                       backend, scheduler)
            except KeyboardInterrupt:
                interrupted = True
                (tmp / "INTERRUPTED").write_text(
                    f"interrupted after {len(rows)} of {len(jobs_list)} rows; grades.csv "
                    f"lists those graded: `handgrad grade ... --resume` grades the rest\n",
                    encoding="utf-8")
                raise
            finally:
                missing = sorted({m for r in rows.values() for m in r.pop("_sandbox", [])})
                table = pd.DataFrame([rows[s.file, c.name] for s, c in jobs_list
                                      if (s.file, c.name) in rows], columns=GRADE_COLUMNS)
                table = class_columns(table, {s.file: s.path for s in subs}, rubric)
                settings = {"config": cfgs[0], "configs": cfgs, "steps": cfgs[0].steps,
                            "timeout": timeout, "definitions_only": definitions_only,
                            "memory_mb": memory_mb, "jobs": jobs, "where": where_run,
                            "resumed": len(kept),
                            "interrupted": interrupted, "sandbox_missing": missing,
                            "rubric": rubric}
                _write(tmp, table, skipped, folder, settings, grades_markdown)
                (tmp / "settings.json").write_text(json.dumps(recorded, indent=1) + "\n",
                                                   encoding="utf-8")
        return Grades(table, skipped, out, missing)


def _check_folder(checks: Path, sub: Submission, cfg, several: bool) -> Path:
    """A row's check folder: checks/SLOT, or checks/SLOT/CONFIG when grading on several."""
    return checks / sub.slot / re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.name) if several \
        else checks / sub.slot


def _grade_sub(sub: Submission, cfg, checks: Path, several: bool, timeout: float,
               memory_mb: int, definitions_only: bool, rubric=None, fmt: str = "csv") -> dict:
    return grade_one(sub, cfg, _check_folder(checks, sub, cfg, several), timeout, memory_mb,
                     definitions_only, rubric, fmt)


def class_columns(table, paths: dict, rubric):
    """The columns made from the whole class: flags (and the points of a row the grading
    could not score). ``paths``: file -> the submission's path (None: no submission)."""
    from experiments.teaching.grade.summary import add_flags

    table = table.assign(score=table["score"].fillna(0.0),
                         max_score=table["max_score"].fillna(rubric.total),
                         mistake=table["mistake"].astype(object).fillna(""),
                         grad_sha256=table["grad_sha256"].astype(object).fillna(""))
    return add_flags(table, paths)


def inert(cell):
    """A learner's text as a spreadsheet shows it, never as a formula: a cell starting with
    = + - @ or a tab gets a leading apostrophe (OWASP's advice for CSV injection)."""
    return f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t",
                                                                 "\r") else cell


def _write(tmp: Path, table, skipped: list[NotGraded], folder: Path, settings: dict,
           grades_markdown) -> None:
    import pandas as pd

    from experiments.output.rundir import write_csv
    from experiments.teaching.grade.summary import rounded, write_page, write_summary

    write_csv(rounded(table).assign(student=table["student"].map(inert),
                                    file=table["file"].map(inert),
                                    message=table["message"].map(inert),
                                    mistake=table["mistake"].map(inert),
                                    flags=table["flags"].map(inert)),
              tmp / "grades.csv")
    write_csv(pd.DataFrame([(inert(s.name), s.why) for s in skipped], columns=["name", "why"]),
              tmp / "not_graded.csv")
    markdown = grades_markdown(table, skipped, folder, settings)
    (tmp / "grades.md").write_text(markdown, encoding="utf-8")
    if not table.empty:
        write_summary(tmp, table, settings["rubric"])
    write_page(tmp, markdown)


class Grades:
    """What ``grade_folder`` returns: the table, the entries not graded, where it went, and
    the sandbox layers this machine could not apply (empty: all held)."""

    def __init__(self, table, skipped, out: Path, sandbox_missing: list[str]):
        self.table, self.skipped, self.out = table, skipped, out
        self.sandbox_missing = sandbox_missing
