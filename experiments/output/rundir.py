"""Writing a run directory: all files land in a temporary folder renamed into place at the end.

    config.toml        the resolved config (every default spelled out)
    provenance.json    versions, BLAS, threads, determinism flag, device, seeds, git commit
    loss.csv, grads.csv, summary.csv, final_grads.csv, predictions.csv
    report.md          what ran, the verdict table, the plots
    *.png              seaborn figures drawn from the CSVs (experiments.output.plots)
    INTERRUPTED        only in a run stopped by Ctrl-C / SIGTERM (its CSVs stop at the last
                       completed step)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tomli_w

from experiments.core.config import ConfigError, RunConfig

if TYPE_CHECKING:   # torch only where a run is written: check_out runs before it is imported
    from experiments.core.runner import RunResult


def default_out(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / cfg.name


#: written into every folder handgrad creates (run, study, gallery, sweep, bench), so that
#: ``--force`` replaces only folders it recognises as its own output
MARKER = ".handgrad"
#: folders written before the marker existed are recognised by these files
_LEGACY = ("provenance.json", "sweep.csv", "bench.csv", "bugs.csv")


def is_handgrad_output(path: Path, legacy: bool = True) -> bool:
    """``path`` is a folder handgrad wrote (its marker, or with ``legacy`` an older output's
    files), or empty."""
    path = Path(path)
    if (path / MARKER).is_file() and not (path / MARKER).is_symlink():
        return True
    if not legacy:
        return not any(path.iterdir())
    if any((path / f).is_file() for f in _LEGACY):
        return True
    if (path / "report.md").is_file() and any(path.glob("*.csv")):
        return True
    return not any(path.iterdir())


def _marker_lines(path: Path) -> list[str]:
    try:
        return (Path(path) / MARKER).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def output_kind(path: Path) -> str | None:
    """The kind in ``path``'s marker (``run``, ``study``, ``bench``, ...); None without one."""
    lines = _marker_lines(path)
    words = lines[0].split() if lines else []
    return words[1] if len(words) == 2 and words[0] == "handgrad" else None


def made_from(path: Path, kind: str, source: str) -> bool:
    """``path`` is a ``kind`` folder whose marker names ``source`` (the input it was made
    from, as ``atomic_folder``'s ``source`` wrote it): a rerun on that input may replace it
    without --force."""
    lines = _marker_lines(path)
    return (bool(source) and output_kind(path) == kind and len(lines) == 2
            and not Path(path).is_symlink() and lines[1] == f"source {json.dumps(source)}")


def check_out(out: Path, force: bool, kind: str = "run", legacy: bool = True) -> None:
    """Refuse, before any work, to overwrite an existing folder without ``force``, to
    replace anything that is not a handgrad output folder, or to write through a link.
    ``kind`` (as the marker's) names the folder in the message: a run directory, a bench
    folder, ...; ``legacy=False``: only a folder with the marker counts as handgrad's (kinds
    that never existed without it: a folder that merely holds a report.md and a .csv may
    be a teacher's own)."""
    out = Path(out)
    noun = "run directory" if kind == "run" else f"{kind} folder"
    exists = out.exists()
    if out.is_symlink():
        raise ConfigError(f"{out} is a symbolic link; handgrad writes only real folders: "
                          f"choose another --out (or --out {out.resolve()})")
    if exists and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another --out")
    if exists and not force:
        raise ConfigError(f"{noun} {out} already exists; pass --force to replace it"
                          + (", --resume to grade only what is new or changed,"
                             if kind == "grade" else "")
                          + " or --out DIR to write elsewhere")
    if exists and not is_handgrad_output(out, legacy):
        raise ConfigError(f"{out} holds files handgrad did not write (no {MARKER} marker); "
                          f"--force replaces only handgrad output folders: choose another --out")
    other = output_kind(out) if exists else None
    if other not in (None, kind):
        raise ConfigError(f"{out} is a handgrad {other} folder, not a {noun}; --force replaces "
                          f"only a folder of its own kind: choose another --out")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot create {noun} {out}: {parent} is not a writable "
                          f"folder; choose another --out")


_TEMP = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")


def clean_stale(parent: Path) -> list[Path]:
    """Remove the temporary folders (``.NAME.tmp-PID``, ``.NAME.old-PID``) that handgrad
    processes killed with SIGKILL left in ``parent``: only ours (marker inside) whose
    process is gone. Returns what was removed."""
    removed = []
    for entry in parent.iterdir() if parent.is_dir() else ():
        m = _TEMP.match(entry.name)
        if not m or entry.is_symlink() or not (entry / MARKER).is_file() or _alive(int(m[1])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, atomically (Linux renameat2
    RENAME_NOREPLACE; elsewhere a check then rename). Raises FileExistsError."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:
        AT_FDCWD, RENAME_NOREPLACE = -100, 1
        if fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "already exists", str(dst))
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(dst))
    if dst.exists() or dst.is_symlink():
        raise FileExistsError(errno.EEXIST, "already exists", str(dst))
    src.rename(dst)


@contextlib.contextmanager
def atomic_folder(out: Path, force: bool, kind: str = "run",
                  keep: tuple[type[BaseException], ...] = (), legacy: bool = True,
                  source: str = ""):
    """Yield a fresh temporary folder next to ``out``; when the block ends without an
    exception it is renamed to ``out``, otherwise removed: nothing is ever half-written.

    The final rename never replaces a folder another process created meanwhile (two runs
    to one ``--out``: the second fails with one line). With ``force`` an existing handgrad
    folder is set aside and removed only after the new one is in place. ``kind`` goes
    into the folder's marker file. After an exception of a ``keep`` type (e.g. a sweep's
    KeyboardInterrupt) the folder, with what the block wrote so far, is still put in place
    before the exception goes on. Stale temporaries of killed runs are cleaned first.
    ``legacy``: as ``check_out``'s. ``source``: the input the folder is made from (a
    learner's file), recorded on the marker's second line for ``made_from``."""
    out = Path(out)
    check_out(out, force, kind, legacy)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / MARKER).write_text(f"handgrad {kind}\n"
                              + (f"source {json.dumps(source)}\n" if source else ""),
                              encoding="utf-8")
    try:
        try:
            yield tmp
        except keep:
            _into_place(tmp, out, force, kind, legacy)
            raise
        _into_place(tmp, out, force, kind, legacy)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _into_place(tmp: Path, out: Path, force: bool, kind: str, legacy: bool = True) -> None:
    """Rename ``tmp`` to ``out`` without ever replacing a folder another process made."""
    old = None
    if force and out.exists():   # set the old folder aside, then swap
        check_out(out, force, kind, legacy)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        try:
            out.rename(old)
        except FileNotFoundError:   # another --force writer set it aside first
            old = None
    try:
        _rename_noreplace(tmp, out)
    except FileExistsError:
        # Another process put its folder at ``out`` meanwhile; ours is discarded. A folder
        # this one had set aside was to be replaced anyway (--force): it goes too.
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise ConfigError(f"{out} was written by another process while this one worked; "
                          f"its folder stays and this one's output was discarded: rerun "
                          f"with --out elsewhere (or --force)") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while files are written: the write finishes, then the
    signal takes effect as KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {sig: signal.signal(sig, lambda s, f: got.append(s))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt


def write_csv(df, path: Path) -> None:
    # Floats are written with Python's shortest round-trip repr: exact and deterministic.
    df.to_csv(path, index=False, lineterminator="\n")


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(result: RunResult) -> dict:
    """What is needed to explain a difference between two machines' runs."""
    from importlib.metadata import version

    import pandas
    import torch
    from threadpoolctl import threadpool_info

    cfg = result.config
    dev = torch.device(cfg.device)
    return {
        "handgrad_commit": _git_commit(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": result.status,
        "message": result.message,
        "steps_done": result.steps_done,
        "total_steps": result.total_steps,
        "seconds": round(result.seconds, 3),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "pandas": pandas.__version__,
        "scikit_learn": version("scikit-learn"),   # read, not imported (it is large)
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "num_threads",
                                           "threading_layer", "architecture", "filepath")}
                 for lib in threadpool_info()],
        "threads": result.threads,   # what the run used (torch, each BLAS pool)
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "torch_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch_mkl": torch.backends.mkl.is_available(),
        "device": cfg.device,
        "device_name": (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                        else platform.processor() or platform.machine()),
        "manual_backend": cfg.manual_backend,
        "seeds": result.seeds,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                            "CUBLAS_WORKSPACE_CONFIG") if k in os.environ},
    }


def write_run(result: RunResult, out: Path, *, force: bool = False, plots: bool = True) -> Path:
    """Write every file into ``.NAME.tmp-PID`` next to ``out``, then rename it into place."""
    from experiments.output.html import write_report_html
    from experiments.output.report import write_report

    out = Path(out)
    with signals_deferred(), atomic_folder(out, force) as tmp:
        cfg = result.config
        header = ("# handgrad resolved config: every default spelled out.\n"
                  "# Re-run with: handgrad run PATH/TO/THIS/config.toml --out NEW_DIR\n")
        (tmp / "config.toml").write_text(header + tomli_w.dumps(cfg.to_dict()), encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps(provenance(result), indent=2) + "\n",
                                             encoding="utf-8")
        write_csv(result.loss, tmp / "loss.csv")
        write_csv(result.grads, tmp / "grads.csv")
        write_csv(result.summary, tmp / "summary.csv")
        if not result.final_grads.empty:
            write_csv(result.final_grads, tmp / "final_grads.csv")
        if not result.grad_entries.empty:
            write_csv(result.grad_entries, tmp / "grad_entries.csv")
        if not result.predictions.empty:
            write_csv(result.predictions, tmp / "predictions.csv")
        from experiments.core.diagnose import findings_frame
        write_csv(findings_frame(result.findings), tmp / "diagnosis.csv")
        if result.status == "interrupted":
            (tmp / "INTERRUPTED").write_text(result.message + "\n", encoding="utf-8")
        figures = []
        if plots and not result.loss.empty:
            from experiments.output.plots import plot_run
            figures = plot_run(tmp)
        write_report(result, tmp, [Path(f).name for f in figures])
        write_report_html(tmp)
    return out
