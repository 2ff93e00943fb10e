"""Gradient-descent lessons: named studies, each several lockstep runs and a lesson.

A study module trains with ``experiments.core.runner`` (so manual and torch are compared at
every logged step of every arm; its per-arm table ends with ``AGREEMENT_COLUMNS``), measures
one phenomenon, and has ``run(quick, folder) -> frames`` (exactly what its CSVs hold),
``figures(frames, folder)`` (drawn from those tables alone) and ``text(frames)`` (the
report). Every arm shares one data set and one init (the same ``seed``) unless the init is
what is studied, and runs ``synced`` unless free vs synced is. ``run_study`` writes:

    config.toml    kind = "study", study = NAME, quick, and the [base] RunConfig
    report.md      what ran, the numbers, what one sees, the figures embedded
    *.csv          deterministic long-form tables (each study's docstring lists them)
    *.png          figures drawn from the CSVs (``redraw`` draws them again)

into ``.NAME.tmp-PID`` next to ``out``, renamed into place at the end (an existing folder is
refused before any work unless ``force``).
"""

from __future__ import annotations

import difflib
import functools
import importlib
from pathlib import Path

from experiments.core.config import ConfigError, RunConfig, read_toml

#: the shared pieces of ``common`` this package re-exports (imported on first use)
_COMMON = ("Replay", "agreement", "flat", "hessian_eigenvalues", "unflat")
__all__ = ["STUDIES", *_COMMON, "lesson", "read_config", "redraw", "run_study"]

#: name -> (module in this package, one-line description). The modules (torch, pandas,
#: seaborn) are imported only when a study runs or is redrawn: `handgrad list` reads this.
REGISTRY = {
    "batch-modes": ("batch_modes",
        "full-batch GD vs mini-batch vs batch 1 on one init: loss per update and per "
        "example, noise, cost per epoch"),
    "learning-rate": ("learning_rate",
        "lr sweep from too small to divergent: slow, good, beyond 2/λ_max (edge, "
        "oscillating), diverged (marked)"),
    "convex-vs-nonconvex": ("convex_vs_nonconvex",
        "logistic regression vs a hidden layer: 1-D/2-D loss slices, GD on a slice, "
        "5 inits -> one minimum vs several"),
    "sparse-features": ("sparse_features",
        "sparse binary inputs: exactly-zero gradients per step, rare features' weights "
        "barely move, by lr and batch"),
    "float32-drift-lesson": ("float32_drift_lesson",
        "float32-drift in free and synced mode: weights part ways, gradients agree to "
        "rounding, vs float64"),
}


def __getattr__(name: str):
    """The shared pieces of ``common`` (``Replay``, ``agreement``, ...) and the study
    modules (``studies.learning_rate``), imported on first use."""
    if name in _COMMON:
        return getattr(importlib.import_module(".common", __name__), name)
    if name in {module for module, _ in REGISTRY.values()}:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_study(name: str, out: str | Path, quick: bool = False, force: bool = False,
              progress: bool = False) -> Path:
    """Run the study ``name`` into the folder ``out``; return ``out``.

    Raises ``ConfigError`` for an unknown name or an existing ``out`` without ``force``
    (before any work is done). torch and BLAS run on one thread: these networks are tiny.
    """
    import tomli_w

    from experiments.core.threads import limited_threads
    from experiments.output.html import write_report_html
    from experiments.output.rundir import atomic_folder, write_csv

    from .common import write_report
    study = _module(name)
    out = Path(out)
    with atomic_folder(out, force, kind="study") as tmp, limited_threads(1):
        frames = study.run(quick, tmp, progress)
        for stem in study.CSVS:
            write_csv(frames[stem], tmp / f"{stem}.csv")
        doc = {"kind": "study", "study": name, "quick": quick,
               "base": study.base(quick).to_dict()}
        (tmp / "config.toml").write_text(
            f"# handgrad study {name!r}: the base config its arms vary (see report.md)\n"
            + tomli_w.dumps(doc), encoding="utf-8")
        write_report(tmp, name, quick, study.text(frames), redraw(tmp))
        write_report_html(tmp)
    return out


#: name -> (one-line description, fn(out, *, quick=False, force=False, progress=False))
STUDIES = {name: (description, functools.partial(run_study, name))
           for name, (_, description) in REGISTRY.items()}


def lesson(folder: str | Path, width: int = 100) -> str:
    """A study's lesson in brief, for the terminal: the "What one sees" section of its
    report.md, each finding wrapped to ``width`` columns under its bullet."""
    import textwrap

    report = (Path(folder) / "report.md").read_text(encoding="utf-8")
    sees = report.split("\n## What one sees\n", 1)[-1].split("\n## ", 1)[0]
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ")
                     for line in sees.strip().splitlines() if line.strip())


def read_config(folder: str | Path) -> tuple[str, bool, RunConfig]:
    """A study folder's config.toml: (study name, quick, base RunConfig)."""
    path = Path(folder) / "config.toml"
    data = read_toml(path)
    if data.get("kind") != "study":
        raise ConfigError(f"{path} is not a study's config (kind = {data.get('kind')!r})")
    _module(data["study"])
    base = {k: tuple(v) if isinstance(v, list) else v for k, v in data["base"].items()}
    return data["study"], data["quick"], RunConfig(**base)


def redraw(folder: str | Path) -> list[str]:
    """Draw a study folder's figures again from its CSVs alone (config.toml names the
    study); return the PNG names."""
    import pandas as pd

    folder = Path(folder)
    study = _module(read_config(folder)[0])
    frames = {stem: pd.read_csv(folder / f"{stem}.csv") for stem in study.CSVS}
    return study.figures(frames, folder)


def _module(name: str):
    """The study's module, imported on first use."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown study {name!r}: {hint}the studies are "
                          f"{', '.join(REGISTRY)}")
    return importlib.import_module(f".{REGISTRY[name][0]}", __name__)
