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
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tomli_w
import torch

from experiments.core.config import ConfigError, RunConfig
from experiments.core.runner import RunResult


def default_out(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / cfg.name


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, to overwrite an existing run directory without ``force``."""
    if out.exists() and not force:
        raise ConfigError(f"run directory {out} already exists; pass --force to replace it "
                          f"or --out DIR to write elsewhere")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another --out")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot create run directory {out}: {parent} is not a writable "
                          f"folder; choose another --out")


@contextlib.contextmanager
def atomic_folder(out: Path, force: bool, keep: tuple[type[BaseException], ...] = ()):
    """Yield a fresh temporary folder next to ``out``; when the block ends without an
    exception it is renamed to ``out`` (an existing ``out``, allowed by ``force``, is set
    aside and removed only then), otherwise removed: nothing is ever half-written. After
    an exception of a ``keep`` type (e.g. a sweep's KeyboardInterrupt) the folder, with what
    the block wrote so far, is still renamed into place before the exception goes on."""
    out = Path(out)
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        try:
            yield tmp
        except keep:
            _into_place(tmp, out)
            raise
        _into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _into_place(tmp: Path, out: Path) -> None:
    if out.exists():  # --force: swap, then remove the old folder
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


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


def write_run(result: RunResult, out: Path, *, force: bool = False, plots: bool = True,
              final: Path | None = None) -> Path:
    """Write every file into ``.NAME.tmp-PID`` next to ``out``, then rename it into place.
    ``final``: where ``out`` will be found in the end, for config.toml's re-run line, when
    ``out`` lies in a folder that is itself renamed into place later (a sweep's points)."""
    from experiments.output.report import write_report

    out = Path(out)
    with atomic_folder(out, force) as tmp:
        cfg = result.config
        header = (f"# handgrad resolved config for run {cfg.name!r}: every default spelled out.\n"
                  f"# Re-run with: handgrad run {(final or out) / 'config.toml'} --out NEW_DIR\n")
        (tmp / "config.toml").write_text(header + tomli_w.dumps(cfg.to_dict()), encoding="utf-8")
        (tmp / "provenance.json").write_text(json.dumps(provenance(result), indent=2) + "\n",
                                             encoding="utf-8")
        write_csv(result.loss, tmp / "loss.csv")
        write_csv(result.grads, tmp / "grads.csv")
        write_csv(result.summary, tmp / "summary.csv")
        if not result.final_grads.empty:
            write_csv(result.final_grads, tmp / "final_grads.csv")
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
    return out
