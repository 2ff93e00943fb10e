"""``handgrad sweep``: one lockstep run per point of a grid of overrides, in parallel (joblib).

    handgrad sweep seed --grid lr=0.5,1.0 --grid dtype=float32,float64 --set epochs=3 --jobs 2

writes, under OUT (default ``sweeps/<config name>``):

    <key1>=<v1>,<key2>=<v2>/   one ordinary run directory per point (experiments.output.rundir),
                               e.g. ``lr=0.5,dtype=float32``; characters outside
                               ``A-Za-z0-9._+-`` in a value become ``-`` (``sizes=2-3-1``)
    sweep.csv                  one row per point, in grid order: SWEEP_COLUMNS, with one
                               column per grid key (its value) after ``point``
    sweep.png                  worst rel_err and final loss per point (seaborn), colour = one key
    INTERRUPTED                only in a sweep stopped by Ctrl-C / SIGTERM: sweep.csv then
                               lists the points completed so far

Points are the Cartesian product of the ``--grid`` values, the first key varying slowest.
Every point is validated (value types, the config's own checks, that it fits its data and
init) before anything is written; a bad key or value is a ``ConfigError`` (exit 2).

Reproducibility: each point is one independent ``run_experiment`` with its own seed, and
every worker runs with one torch and one BLAS thread, so results do not depend on ``--jobs``
or the backend: the CSVs are byte-identical whether the sweep ran with 1 job or N.
A diverged point is a result (status ``diverged``), not a failure of the sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from experiments.core.config import ConfigError, RunConfig, load_config, parse_override, replace
from experiments.core.schema import SWEEP_COLUMNS

__all__ = ["BACKENDS", "SWEEP_COLUMNS", "default_sweep_out", "parse_grid", "plot_sweep",
           "register", "run_sweep"]

BACKENDS = ("loky", "threading", "dask", "ray")
#: sweep.csv columns; the grid keys' columns come right after ``point``.
#: keys the sweep sets itself for every point
NOT_SWEEPABLE = ("name", "description", "out")
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME = 200  # bytes; file systems allow 255 per name


# -- the grid --------------------------------------------------------------------------------

def _split_values(text: str, spec: str) -> list[str]:
    """``0.5,1.0`` -> [``0.5``, ``1.0``]; commas inside [...] or quotes do not split
    (``sizes=[2,3,1],[2,5,1]`` has two values)."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    if any(not v for v in values):
        raise ConfigError(f"--grid {spec!r}: empty value; expected KEY=V1,V2,... "
                          f"e.g. --grid lr=0.5,1.0")
    return values


def parse_grid(specs: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """``["lr=0.5,1.0", "dtype=float32,float64"]`` -> {"lr": ["0.5", "1.0"], ...}.

    Only the syntax is checked here; ``run_sweep`` checks keys and value types."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... e.g. --grid lr=0.5,1.0")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one "
                              f"--grid {key}=V1,V2,...")
        grid[key] = _split_values(raw, spec)
    return grid


def _safe_value(raw: str) -> str:
    """A value as it may appear in a directory name: ``[2,3,1]`` -> ``2-3-1``."""
    return _SAFE.sub("-", raw.strip("[]\"' ")).strip("-")


def _point_name(items: list[tuple[str, str]]) -> str:
    name = ",".join(f"{k}={_safe_value(v)}" for k, v in items)
    if len(name.encode()) > _MAX_NAME:  # keep it unique and within the file system's limit
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = name.encode()[:_MAX_NAME - 11].decode(errors="ignore") + "~" + digest
    return name


def _cell(value):
    """A grid value as a sweep.csv cell: lists as ``[2, 3, 1]``, booleans as TOML writes them."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return str(list(value))
    return value


def _check_grid(grid: dict[str, list[str]], set_keys: set[str]) -> dict[str, list]:
    """Parse every value of every key (types checked); return key -> canonical values."""
    if not grid:
        raise ConfigError("sweep needs at least one --grid KEY=V1,V2,... e.g. --grid lr=0.5,1.0")
    parsed = {}
    for key, raws in grid.items():
        if not raws or any(not str(r).strip() for r in raws):
            raise ConfigError(f"--grid {key}: empty value; expected KEY=V1,V2,...")
        values = []
        for raw in raws:
            k, value = parse_override(f"{key}={raw}")   # unknown key / wrong type -> ConfigError
            values.append(value)
        if k in NOT_SWEEPABLE:
            raise ConfigError(f"--grid {key}: the sweep sets {key} for every point itself; "
                              f"sweep over other keys")
        if k in set_keys:
            raise ConfigError(f"{key} is given both in --set and in --grid; keep one")
        seen = [v for i, v in enumerate(values) if v in values[:i]]
        if seen:
            raise ConfigError(f"--grid {key}: value {_cell(seen[0])!r} is given twice")
        parsed[key] = values
    return parsed


def _check_point(cfg: RunConfig) -> None:
    """What the runner would refuse at its start: data that does not fit, a bad init."""
    from experiments.core.init import InitError, initial_params
    from experiments.core.runner import resolve

    resolved, _ = resolve(cfg)
    try:
        initial_params(resolved.init, resolved.sizes, resolved.bias,
                       np.random.default_rng(0), resolved.seed)
    except InitError as err:
        raise ConfigError(str(err)) from None


# -- one point (runs in a worker) ------------------------------------------------------------

def _run_point(index: int, cfg: RunConfig, run_dir: str, plots: bool) -> dict:
    """Run one point and write its run directory; return a small summary (no DataFrames)."""
    import torch

    from experiments.core.runner import run_experiment
    from experiments.output.rundir import write_run

    # One torch thread and one BLAS thread per worker: N jobs on N cores would otherwise each
    # start a thread per core and oversubscribe the machine; and a fixed thread count keeps
    # the results independent of --jobs. (In-process runs restore the caller's count after.)
    torch.set_num_threads(1)
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        result = run_experiment(cfg)
        if result.status == "interrupted":  # Ctrl-C reached this worker: stop the sweep
            raise KeyboardInterrupt
        write_run(result, Path(run_dir), plots=plots)
    seconds = time.perf_counter() - start
    last = result.loss.iloc[-1] if len(result.loss) else None
    worst = result.summary[result.summary["param"] == "all"]
    worst = worst.iloc[0] if len(worst) else None
    return {
        "index": index,
        "status": result.status,
        "final_loss_manual": float(last["loss_manual"]) if last is not None else np.nan,
        "final_loss_torch": float(last["loss_torch"]) if last is not None else np.nan,
        "worst_rel_err": float(worst["rel_err"]) if worst is not None else np.nan,
        "worst_ratio": float(worst["worst_ratio"]) if worst is not None else np.nan,
        "verdict": str(worst["verdict"]) if worst is not None else "",
        "steps_done": int(result.steps_done),
        "seconds": round(seconds, 3),
        "message": result.message,
    }


# -- the sweep -------------------------------------------------------------------------------

def default_sweep_out(cfg: RunConfig) -> Path:
    return Path("sweeps") / cfg.name


@contextlib.contextmanager
def _parallel_backend(name: str | None):
    """joblib's backend for the sweep; None keeps whatever ``joblib.parallel_config`` the
    caller has active (loky when none)."""
    import joblib

    if name is None:
        yield
        return
    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: choose one of {list(BACKENDS)}")
    client = None
    if name == "dask":
        try:
            from distributed import Client, get_client
        except ImportError:
            raise ConfigError("--backend dask needs the dask and distributed packages: "
                              "pip install 'dask[distributed]'") from None
        try:
            get_client()                 # a Client the caller already made
        except ValueError:
            # Client() connects to $DASK_SCHEDULER_ADDRESS if set, else starts a local cluster
            client = Client()
    elif name == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError:
            raise ConfigError("--backend ray needs ray: pip install 'ray[default]'") from None
        register_ray()                   # ray connects to $RAY_ADDRESS if set, else starts locally
    try:
        with joblib.parallel_config(backend=name):
            yield
    finally:
        if client is not None:
            client.close()


def _parallel(jobs: int):
    """Results as points finish where the backend can (any order: rows are sorted by point
    afterwards), else all at the end (ray's backend, built on multiprocessing.Pool)."""
    import joblib
    try:
        return joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")
    except ValueError:
        return joblib.Parallel(n_jobs=jobs)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_csv(tmp, index=False, lineterminator="\n")   # shortest round-trip floats, as rundir
    os.replace(tmp, path)


def run_sweep(config_source: str, grid: dict[str, list[str]], *, jobs: int = 1,
              overrides: list[str] | tuple[str, ...] = (), out: str | Path | None = None,
              force: bool = False, backend: str | None = None, plots: bool = False,
              hue: str | None = None,
              on_point: Callable[[dict, int, int], None] | None = None) -> pd.DataFrame:
    """Run every point of ``grid`` (key -> values as written on the command line) and
    return the sweep.csv table (one row per point, grid order).

    ``overrides`` are ``key=value`` applied to every point before its grid values; ``jobs``
    is joblib's ``n_jobs`` (-1: all cores); ``backend`` one of BACKENDS, or None to use the
    caller's ``joblib.parallel_config`` (default loky); ``plots`` draws each point's figures
    too; ``hue`` is the grid key coloured in sweep.png (default: the last key);
    ``on_point(row, done, total)`` is called as points finish.
    """
    # -- validate everything before anything runs or is written
    if jobs == 0 or isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ConfigError(f"--jobs {jobs!r}: use a number of parallel jobs >= 1 (or -1: all "
                          f"cores, as joblib's n_jobs)")
    base = load_config(config_source, overrides)
    set_keys = {parse_override(o)[0] for o in overrides}
    grid = {k.strip(): [str(v) for v in vs] for k, vs in grid.items()}
    parsed = _check_grid(grid, set_keys)
    keys = list(grid)
    if hue is not None and hue not in keys:
        raise ConfigError(f"--hue {hue!r} is not a grid key; choose one of {keys}")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose one of {list(BACKENDS)}")
    out = Path(out) if out is not None else default_sweep_out(base)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another --out")
    if out.exists() and not force:
        raise ConfigError(f"sweep directory {out} already exists; pass --force to replace it "
                          f"or --out DIR to write elsewhere")

    points, names = [], {}
    for combo in itertools.product(*(range(len(grid[k])) for k in keys)):
        raw = [(k, grid[k][i]) for k, i in zip(keys, combo, strict=True)]
        name = _point_name(raw)
        if name in names:
            raise ConfigError(f"grid points {names[name]} and {[f'{k}={v}' for k, v in raw]} "
                              f"both map to directory name {name!r}; change one value")
        names[name] = [f"{k}={v}" for k, v in raw]
        cfg = load_config(config_source, [*overrides, *(f"{k}={v}" for k, v in raw)])
        cfg = replace(cfg, name=f"{base.name} {name}", out=str(out / name))
        _check_point(cfg)
        values = {k: _cell(parsed[k][i]) for k, i in zip(keys, combo, strict=True)}
        points.append((name, values, cfg))

    # -- run
    with _parallel_backend(backend):
        old = None
        if force and out.exists():   # set aside; removed only once the new sweep is complete
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        out.mkdir(parents=True)
        root = out.resolve()   # workers (other processes, maybe other hosts) get absolute paths
        rows: dict[int, dict] = {}
        torch_threads = _torch_threads()
        # Points run in this process too (jobs=1, threading): one torch and one BLAS thread
        # here as in every worker process, restored afterwards.
        limits = threadpool_limits(limits=1)
        _torch_threads(1)
        try:
            from joblib import delayed
            results = _parallel(jobs)(
                delayed(_run_point)(i, cfg, str(root / name), plots)
                for i, (name, _, cfg) in enumerate(points))
            try:
                for summary in results:
                    i = summary.pop("index")
                    rows[i] = {"point": points[i][0], **points[i][1], **summary}
                    if on_point is not None:
                        on_point(rows[i], len(rows), len(points))
            finally:
                close = getattr(results, "close", None)
                if close is not None:      # a generator: stops the workers still running
                    close()
        except KeyboardInterrupt:
            _write_csv(_table(rows, keys), out / "sweep.csv")
            (out / "INTERRUPTED").write_text(
                f"interrupted after {len(rows)} of {len(points)} points; sweep.csv lists "
                f"those completed\n", encoding="utf-8")
            raise
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)   # never leave a half-written sweep
            if old is not None:
                old.rename(out)                      # and give back the one it replaced
            raise
        finally:
            _torch_threads(torch_threads)
            limits.restore_original_limits()
    table = _table(rows, keys)
    _write_csv(table, out / "sweep.csv")
    plot_sweep(table, keys, out / "sweep.png", hue=hue)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return table


def _torch_threads(n: int | None = None) -> int:
    """Get (and with ``n``, restore) torch's thread count: an in-process point sets it to 1."""
    import torch
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _table(rows: dict[int, dict], keys: list[str]) -> pd.DataFrame:
    columns = [SWEEP_COLUMNS[0], *keys, *SWEEP_COLUMNS[1:]]
    return pd.DataFrame([rows[i] for i in sorted(rows)], columns=columns)


# -- figure ----------------------------------------------------------------------------------

def plot_sweep(table: pd.DataFrame, keys: list[str], path: str | Path,
               hue: str | None = None) -> Path:
    """sweep.png: worst rel_err, worst_ratio and final manual loss per point (log axes where
    every value is positive); colour = ``hue``
    (default the last grid key), x = the other keys' values. Diverged points whose value is
    not finite are left out, and the panel title says how many; an exact 0 (bit-identical
    run) is drawn at a floor a decade below the smallest non-zero value, marked in the title."""
    import seaborn as sns
    from matplotlib.figure import Figure

    path = Path(path)
    hue = hue or keys[-1]
    others = [k for k in keys if k != hue]
    data = table.copy()
    data["hue"] = data[hue].astype(str)
    data["x"] = (data[others].astype(str).apply(
        lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1)
        if others else data["hue"])
    x_order = list(dict.fromkeys(data["x"]))
    hue_order = list(dict.fromkeys(data["hue"]))
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order)), strict=True))
    width = min(4.0 + 0.6 * len(x_order), 16.0)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        fig = Figure(figsize=(3 * width, 4.5), layout="constrained")
        axes = fig.subplots(1, 3)
        panels = [("worst_rel_err",
                   "worst rel_err over the run\n‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂)"),
                  ("worst_ratio", "worst_ratio = rel_err / tolerance\n(> 1: verdict differ)"),
                  ("final_loss_manual", "final loss, manual side\n(last logged step)")]
        for ax, (col, title) in zip(axes, panels, strict=True):
            values = data[col].to_numpy(dtype=float)
            finite = np.isfinite(values)
            positive = values[finite & (values > 0)]
            notes = []
            if (~finite).any():
                notes.append(f"{int((~finite).sum())} point(s) not finite (diverged), not shown")
            zero = finite & (values == 0)
            floor = 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else 1e-18
            if zero.any():
                notes.append(f"{int(zero.sum())} exactly 0 (bit-identical), drawn at {floor:.0e}")
                ax.axhline(floor, color="0.5", linestyle=":", linewidth=1)
            shown = data[finite].assign(**{col: np.where(values[finite] == 0, floor,
                                                         values[finite])})
            if len(shown):
                sns.pointplot(data=shown, x="x", y=col, hue="hue", order=x_order,
                              hue_order=hue_order, palette=palette, dodge=0.3 if others else False,
                              linestyle="none", marker="o", errorbar=None, ax=ax)
            if len(shown) and (shown[col] > 0).all():
                ax.set_yscale("log")
            if col == "worst_ratio":
                ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
            ax.set_title(title + "".join(f"\n{n}" for n in notes), fontsize=10)
            ax.set_xlabel(",".join(others) if others else hue)
            ax.set_ylabel(col + (", log scale" if ax.get_yscale() == "log" else ""))
            ax.tick_params(axis="x", labelrotation=30 if len(x_order) > 3 else 0)
            if ax.get_legend() is not None:   # one legend, on the first panel
                if ax is axes[0]:
                    ax.get_legend().set_title(hue)
                else:
                    ax.get_legend().remove()
        fig.suptitle(f"Sweep over {', '.join(keys)}: {len(table)} points")
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


# -- command line ----------------------------------------------------------------------------

def register(subparsers, formatter_class) -> None:
    """Add ``handgrad sweep`` to the CLI (see experiments.cli.FEATURE_MODULES)."""
    p = subparsers.add_parser(
        "sweep", formatter_class=formatter_class,
        help="run a grid of overrides in parallel, one run directory per point",
        description="Run the Cartesian product of the --grid values, each point a full "
                    "lockstep run, in parallel\nwith joblib. Writes OUT/<key>=<value>,.../ "
                    "(one run directory per point), sweep.csv\n(one row per point) and "
                    "sweep.png. Every point is checked before any runs. Results do not\n"
                    "depend on --jobs: every worker uses one torch and one BLAS thread.")
    p.add_argument("experiment", metavar="NAME|CONFIG.toml")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one key to sweep (repeatable; points are the product), "
                        "e.g. --grid lr=0.5,1.0 --grid sizes=[3,4,1],[3,8,1]")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a key for every point (repeatable)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="points run in parallel (joblib n_jobs; -1 = all cores)")
    p.add_argument("--backend", choices=BACKENDS, default="loky",
                   help="joblib backend; dask uses the scheduler at $DASK_SCHEDULER_ADDRESS "
                        "(else a local cluster), ray the cluster at $RAY_ADDRESS (else local)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="sweep directory (default: sweeps/NAME)")
    p.add_argument("--force", action="store_true", help="replace an existing sweep directory")
    p.add_argument("--plots", action="store_true", help="also draw each point's figures")
    p.add_argument("--hue", default=None, metavar="KEY",
                   help="grid key coloured in sweep.png (default: the last --grid key)")
    p.add_argument("--quiet", action="store_true", help="no line per point, no table")
    p.set_defaults(func=cmd_sweep)


def _progress_line(row: dict, done: int, total: int) -> None:
    print(f"[{done}/{total}] {row['point']}: {row['status']}, {row['verdict'] or '-'}, "
          f"{row['seconds']:.1f} s", flush=True)


def cmd_sweep(args) -> int:
    from experiments.cli import raise_interrupt
    grid = parse_grid(args.grid)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # SIGTERM ends it like Ctrl-C
    try:
        table = run_sweep(args.experiment, grid, jobs=args.jobs, overrides=args.overrides,
                          out=args.out, force=args.force, backend=args.backend,
                          plots=args.plots, hue=args.hue,
                          on_point=None if args.quiet else _progress_line)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = args.out or default_sweep_out(load_config(args.experiment, args.overrides))
    if not args.quiet:
        cols = ["point", "status", "final_loss_manual", "worst_rel_err", "worst_ratio",
                "verdict", "seconds"]
        with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 120,
                               "display.max_colwidth", 60):
            print(table[cols].to_string(index=False))
    diverged = int((table["status"] == "diverged").sum())
    print(f"sweep: {len(table)} points ({diverged} diverged); sweep directory {out}")
    return 0
