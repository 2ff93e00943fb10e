"""``handgrad sweep``: one lockstep run per point of a grid of overrides, in parallel (joblib).

    handgrad sweep seed --grid lr=0.5,1.0 --grid dtype=float32,float64 --set epochs=3 --jobs 2

writes OUT (default ``sweeps/<config name>``) at once (``rundir.atomic_folder``):
    <key1>=<v1>,<key2>=<v2>/   one run directory per point, e.g. ``lr=0.5,dtype=float32``
                               (characters outside ``A-Za-z0-9._+-`` become ``-``)
    sweep.csv                  one row per point, in grid order: SWEEP_COLUMNS, with one
                               column per grid key (its value) after ``point``
    sweep.png                  worst rel_err and final loss per point, colour = one key
    config.toml                kind = "sweep", the experiment, --set, the grid, --hue
    INTERRUPTED                only after Ctrl-C / SIGTERM: sweep.csv lists the points done

Points are the Cartesian product of the ``--grid`` values, the first key varying slowest,
each validated (types, the config's checks, its data and init) before anything is written.
Each point is one independent ``run_experiment`` with its own seed, on one torch and one
BLAS thread, so the CSVs are byte-identical with 1 job or N, on any backend. A diverged
point is a result (status ``diverged``), not a failure of the sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import shutil
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from experiments.core import backends
from experiments.core.config import ConfigError, RunConfig, load_config, parse_override, replace
from experiments.core.runner import initial_state, run_experiment
from experiments.core.schema import SWEEP_COLUMNS
from experiments.core.threads import limited_threads
from experiments.output.rundir import atomic_folder, check_out, write_csv, write_run

BACKENDS = ("loky", "threading", "dask")
NOT_SWEEPABLE = ("name", "description", "out")   # the sweep sets these for every point
_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME = 200  # bytes; file systems allow 255 per name
WORKER_DEATHS = 2   # pools broken by a dying worker before the points left are lost


def _split_values(text: str) -> list[str]:
    """``0.5,1.0`` -> [``0.5``, ``1.0``]; commas inside [...] or quotes do not split
    (``sizes=[2,3,1],[2,5,1]`` has two values)."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote or ch in "\"'":                      # open, stay inside or close a quote
            quote = "" if ch == quote else quote or ch
        elif ch in "[]":
            depth += 1 if ch == "[" else -1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values   # an empty one is refused by _check_grid


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
        grid[key] = _split_values(raw)
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
    if isinstance(value, bool | tuple):
        return str(value).lower() if isinstance(value, bool) else str(list(value))
    return value


def _check_grid(grid: dict[str, list[str]], set_keys: set[str]) -> dict[str, list]:
    """Parse every value of every key (types checked); return key -> canonical values."""
    if not grid:
        raise ConfigError("sweep needs at least one --grid KEY=V1,V2,... e.g. --grid lr=0.5,1.0")
    parsed = {}
    for key, raws in grid.items():
        if not raws or any(not str(r).strip() for r in raws):
            raise ConfigError(f"--grid {key}: empty value; expected KEY=V1,V2,...")
        values = [parse_override(f"{key}={raw}")[1] for raw in raws]   # ConfigError if bad
        if key in NOT_SWEEPABLE:
            raise ConfigError(f"--grid {key}: the sweep sets {key} for every point itself; "
                              f"sweep over other keys")
        if key in set_keys:
            raise ConfigError(f"{key} is given both in --set and in --grid; keep one")
        if seen := [v for i, v in enumerate(values) if v in values[:i]]:
            raise ConfigError(f"--grid {key}: value {_cell(seen[0])!r} is given twice")
        parsed[key] = values
    return parsed


def _run_point(index: int, cfg: RunConfig, run_dir: str, plots: bool) -> dict:
    """Run one point and write its run directory ``run_dir``; return a small summary (no
    DataFrames)."""
    # One torch and one BLAS thread per worker: N jobs do not oversubscribe N cores, and a
    # fixed thread count keeps the results independent of --jobs.
    start = time.perf_counter()
    with limited_threads(1):
        result = run_experiment(cfg, threads=1)
        if result.status == "interrupted":  # Ctrl-C reached this worker: stop the sweep
            raise KeyboardInterrupt
        write_run(result, Path(run_dir), plots=plots)
    last = result.loss.iloc[-1] if len(result.loss) else {}
    summary = result.summary.set_index("param")
    worst = summary.reindex(["all"]).iloc[0]   # NaN when no row
    return {"index": index, "status": result.status,
            "final_loss_manual": float(last.get("loss_manual", np.nan)),
            "final_loss_torch": float(last.get("loss_torch", np.nan)),
            "worst_rel_err": float(worst["rel_err"]), "worst_ratio": float(worst["worst_ratio"]),
            "verdict": worst["verdict"] if isinstance(worst["verdict"], str) else "",
            "steps_done": int(result.steps_done),
            "seconds": round(time.perf_counter() - start, 3),
            "message": result.message,
            "loss_worst_ratio": float(summary.reindex(["loss"]).iloc[0]["worst_ratio"])}


def _run_point_packed(index: int, cfg: RunConfig, plots: bool) -> tuple[dict, list]:
    """``_run_point`` on a Dask worker: the run directory is written to the worker's own
    disk and comes back as data (``backends.pack``) for this process to write."""
    with backends.scratch_folder() as tmp:
        summary = _run_point(index, cfg, str(tmp / "point"), plots)
        return summary, backends.pack(tmp / "point")


def default_sweep_out(cfg: RunConfig) -> Path:
    return Path("sweeps") / cfg.name


@contextlib.contextmanager
def _parallel_backend(name: str | None, scheduler: str | None, jobs: int):
    """Where the points run; yields a Dask Client for ``dask`` (``backends.dask_client``:
    the caller's, else ``scheduler`` / $DASK_SCHEDULER_ADDRESS, else a local cluster of
    ``jobs`` workers), else None: joblib's ``name`` backend on this machine, and None keeps
    whatever ``joblib.parallel_config`` the caller has active (loky when none)."""
    import joblib

    if name == "dask":
        with backends.dask_client(scheduler, jobs) as client:
            yield client
    elif name is None:
        yield None
    else:
        with joblib.parallel_config(backend=name):
            yield None


def _points(config_source: str, overrides, grid: dict, parsed: dict, base_name: str,
            out: Path) -> list[tuple[str, dict, RunConfig]]:
    """Every point in grid order, checked: (directory name, {key: sweep.csv cell}, config)."""
    keys, points, names = list(grid), [], {}
    for combo in itertools.product(*(range(len(grid[k])) for k in keys)):
        raw = [(k, grid[k][i]) for k, i in zip(keys, combo, strict=True)]
        name = _point_name(raw)
        if name in names:
            raise ConfigError(f"grid points {names[name]} and {[f'{k}={v}' for k, v in raw]} "
                              f"both map to directory name {name!r}; change one value")
        names[name] = [f"{k}={v}" for k, v in raw]
        cfg = load_config(config_source, [*overrides, *(f"{k}={v}" for k, v in raw)])
        cfg = replace(cfg, name=f"{base_name} {name}", out=str(out / name))
        initial_state(cfg)   # what the runner refuses at its start (data, init): now
        values = {k: _cell(parsed[k][i]) for k, i in zip(keys, combo, strict=True)}
        points.append((name, values, cfg))
    return points


def run_sweep(config_source: str, grid: dict[str, list[str]], *, jobs: int = 1,
              overrides: list[str] | tuple[str, ...] = (), out: str | Path | None = None,
              force: bool = False, backend: str | None = None, plots: bool = False,
              hue: str | None = None, scheduler: str | None = None,
              on_point: Callable[[dict, int, int], None] | None = None) -> pd.DataFrame:
    """Run every point of ``grid`` (key -> values as on the command line); return sweep.csv's
    table. ``overrides``: ``key=value`` for every point; ``jobs``: joblib's ``n_jobs`` (on
    dask: the local cluster's workers); ``backend``: one of BACKENDS, or None for the
    caller's ``joblib.parallel_config``; ``scheduler``: the Dask scheduler's address
    (``backends.dask_client``); ``plots``: each point's figures; ``on_point(row, done,
    total)`` as points finish. Points lost to dying Dask workers raise
    ``backends.TasksLost`` and nothing is written."""
    # -- validate everything before anything runs or is written (points: _points)
    if jobs == 0 or isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ConfigError(f"--jobs {jobs!r}: use a number of parallel jobs >= 1 (or -1: all "
                          f"cores, as joblib's n_jobs)")
    base = load_config(config_source, overrides)
    grid = {k.strip(): [str(v) for v in vs] for k, vs in grid.items()}
    parsed = _check_grid(grid, {parse_override(o)[0] for o in overrides})
    keys = list(grid)
    if hue is not None and hue not in keys:
        raise ConfigError(f"--hue {hue!r} is not a grid key; choose one of {keys}")
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: choose one of {list(BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ConfigError(f"--scheduler {scheduler}: a Dask scheduler's address goes with "
                          f"--backend dask")
    out = Path(out) if out is not None else default_sweep_out(base)
    check_out(out, force, "sweep")
    points = _points(config_source, overrides, grid, parsed, base.name, out)
    # -- run, into a folder renamed into place at the end, also when interrupted (with the
    # points done so far: sweep.csv lists those, and an INTERRUPTED file says so)
    config = {"kind": "sweep", "experiment": config_source, "set": list(overrides),
              "grid": grid, **({"hue": hue} if hue else {})}
    rows: dict[int, dict] = {}
    # Points also run in this process (jobs=1, threading): one torch and one BLAS thread here
    # too, so that the workers' own limits restore to 1 while other points still run.
    with (_parallel_backend(backend, scheduler, jobs) as client, limited_threads(1),
          atomic_folder(out, force, kind="sweep", keep=(KeyboardInterrupt,)) as tmp):
        (tmp / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        root = tmp.resolve()   # workers (maybe on other hosts) get absolute paths
        try:
            if client is not None:
                _run_points_dask(client, points, root, plots, rows, on_point)
            else:
                _run_points(points, jobs, root, plots, rows, on_point)
        except KeyboardInterrupt:
            (tmp / "INTERRUPTED").write_text(
                f"interrupted after {len(rows)} of {len(points)} points; sweep.csv lists "
                f"those completed\n", encoding="utf-8")
            raise
        finally:
            table = pd.DataFrame([rows[i] for i in sorted(rows)],   # the keys after "point"
                                 columns=[SWEEP_COLUMNS[0], *keys, *SWEEP_COLUMNS[1:]])
            write_csv(table, tmp / "sweep.csv")
        plot_sweep(table, keys, tmp / "sweep.png", hue=hue)
    return table


def _run_points(points: list, jobs: int, root: Path, plots: bool, rows: dict,
                on_point) -> None:
    """Run every point with joblib, filling ``rows`` (index -> sweep.csv row) as they finish.
    A worker process that dies (killed, out of memory) is replaced and the points not done
    run again; after ``WORKER_DEATHS`` such failures the points still missing are
    ``backends.TasksLost``."""
    from concurrent.futures.process import BrokenProcessPool

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    for _ in range(WORKER_DEATHS):
        todo = [i for i in range(len(points)) if i not in rows]
        for i in todo:   # what a dead worker may have left of its point (our own folder)
            shutil.rmtree(root / points[i][0], ignore_errors=True)
        try:
            _run_batch(points, todo, jobs, root, plots, rows, on_point)
            return
        except (TerminatedWorkerError, BrokenProcessPool):
            continue
    raise backends.TasksLost("grid points", [points[i][0] for i in range(len(points))
                                             if i not in rows], workers="worker processes")


def _run_batch(points: list, todo: list[int], jobs: int, root: Path, plots: bool, rows: dict,
               on_point) -> None:
    """``_run_points`` for the points ``todo``."""
    import joblib
    try:   # results as points finish where the backend can (rows are sorted afterwards)
        parallel = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")
    except ValueError:   # else all at the end (a backend without unordered results)
        parallel = joblib.Parallel(n_jobs=jobs)
    results = parallel(joblib.delayed(_run_point)(i, points[i][2], str(root / points[i][0]),
                                                  plots) for i in todo)
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


def _run_points_dask(client, points: list, root: Path, plots: bool, rows: dict,
                     on_point) -> None:
    """``_run_points`` on a Dask cluster: each point one task, its run directory sent back
    as data and written here under ``root``."""
    def done(i: int, result) -> None:
        summary, files = result
        summary.pop("index")
        backends.unpack(files, root / points[i][0])
        rows[i] = {"point": points[i][0], **points[i][1], **summary}
        if on_point is not None:
            on_point(rows[i], len(rows), len(points))

    lost = backends.run_on_dask(client, _run_point_packed,
                                [(i, cfg, plots) for i, (_, _, cfg) in enumerate(points)],
                                [name for name, _, _ in points], on_result=done,
                                prefix="handgrad-sweep")
    if lost:
        raise backends.TasksLost("grid points", [points[i][0] for i in lost])


PANELS = (("worst_rel_err", "worst rel_err over the run\n‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂)"),
          ("worst_ratio", "worst_ratio = rel_err / tolerance\n(> 1: verdict differ)"),
          ("final_loss_manual", "final loss, manual side\n(last logged step)"))


def plot_sweep(table: pd.DataFrame, keys: list[str], path: str | Path,
               hue: str | None = None) -> Path:
    """sweep.png: ``PANELS`` per point, colour = ``hue`` (default the last grid key), x =
    the other keys' values (``_panel``: what is left out or moved, and log axes)."""
    import seaborn as sns

    from experiments.output.style import figure, save, style

    hue = hue or keys[-1]
    others = [k for k in keys if k != hue]
    data = table.assign(hue=table[hue].astype(str))
    data["x"] = (data[others].astype(str).apply(
        lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1) if others else data["hue"])
    order, hue_order = list(dict.fromkeys(data["x"])), list(dict.fromkeys(data["hue"]))
    palette = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order)), strict=True))
    with style():
        fig, axes = figure(3, min(4.0 + 0.6 * len(order), 16.0), 4.5)
        for ax, (col, title) in zip(axes, PANELS, strict=True):
            _panel(ax, data, col, title, order=order, hue_order=hue_order, palette=palette,
                   dodge=0.3 if others else False)
            ax.set_xlabel(",".join(others) if others else hue)
            ax.tick_params(axis="x", labelrotation=30 if len(order) > 3 else 0)
            if ax.get_legend() is not None:   # one legend, on the first panel
                (ax.get_legend().set_title(hue) if ax is axes[0] else ax.get_legend().remove())
        fig.suptitle(f"Sweep over {', '.join(keys)}: {len(table)} points")
        save(fig, path)
    return Path(path)


#: a log y axis only when the positive values span at least this factor (two decades); below
#: it a log axis stretches a 0.32–0.47 spread, or rounding noise, into an apparent effect
LOG_SPAN = 100.0


def _panel(ax, data: pd.DataFrame, col: str, title: str, **plot) -> None:
    """One column per point. Non-finite (diverged) values are left out. Log y only when the
    positive values span ``LOG_SPAN`` or more, exact zeros (bit-identical) then drawn a
    decade below the smallest non-zero one; otherwise linear from 0, so differences at
    rounding level stay flat, with the relative spread written. The title says all this."""
    import seaborn as sns

    values = data[col].to_numpy(dtype=float)
    finite = np.isfinite(values)
    v = values[finite]                                   # what is drawn
    positive = v[v > 0]
    zero = v == 0
    log = positive.size > 1 and positive.max() >= LOG_SPAN * positive.min()
    floor = 10.0 ** (np.floor(np.log10(positive.min())) - 1) if log else 0.0
    notes = []
    if (~finite).any():
        notes.append(f"{int((~finite).sum())} point(s) not finite (diverged), not shown")
    if zero.any():
        notes.append(f"{int(zero.sum())} exactly 0 (bit-identical)"
                     + (f", drawn at {floor:.0e}" if log else ""))
        if log:
            ax.axhline(floor, color="0.5", linestyle=":", linewidth=1)
    if v.size and not log:
        top = np.abs(v).max()
        spread = (v.max() - v.min()) / top if top > 0 else 0.0
        notes.append(f"relative spread (max − min)/max = {spread:.2g}")
    shown = data[finite].assign(**{col: np.where(zero, floor, v)})
    if len(shown):
        sns.pointplot(data=shown, x="x", y=col, hue="hue", linestyle="none", marker="o",
                      errorbar=None, ax=ax, **plot)
    if col == "worst_ratio":
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    if log:
        ax.set_yscale("log")
    elif v.size and v.min() >= 0:
        # from 0 with headroom: equal values at rounding level are not zoomed into a slope
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.05 * v.max()))
        ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(title + "".join(f"\n{n}" for n in notes), fontsize=10)
    ax.set_ylabel(col + (", log scale" if log else ""))


def redraw(folder: str | Path) -> list[str]:
    """Redraw sweep.png from sweep.csv (grid keys and hue: config.toml); return its path."""
    config = tomllib.loads((Path(folder) / "config.toml").read_text(encoding="utf-8"))
    keys = list(config["grid"])   # read as written, so the legend shows the same values
    table = pd.read_csv(Path(folder) / "sweep.csv", dtype={k: str for k in keys})
    return [str(plot_sweep(table, keys, Path(folder) / "sweep.png", hue=config.get("hue")))]


def register(subparsers, formatter_class, help: str = "") -> None:
    """Add ``handgrad sweep`` to the CLI (see experiments.cli.FEATURES)."""
    p = subparsers.add_parser(
        "sweep", formatter_class=formatter_class,
        help=help,
        description="Run the Cartesian product of the --grid values, each point a full "
                    "lockstep run, in parallel\nwith joblib. Writes OUT/<key>=<value>,.../ "
                    "(one run directory per point), sweep.csv\n(one row per point), sweep.png "
                    "and config.toml. Every point is checked before any runs. Results do\n"
                    "not depend on --jobs: every worker uses one torch and one BLAS thread.")
    p.add_argument("experiment", metavar="NAME|CONFIG.toml")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of one key to sweep (repeatable; points are the product), "
                        "e.g. --grid lr=0.5,1.0 --grid sizes=[3,4,1],[3,8,1]")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a key for every point (repeatable)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="points run in parallel (joblib n_jobs; -1 = all cores)")
    p.add_argument("--backend", choices=BACKENDS, default="loky",
                   help="loky and threading: joblib on this machine; dask: a Dask cluster "
                        "(--scheduler, else $DASK_SCHEDULER_ADDRESS, else a local cluster "
                        "of --jobs worker processes)")
    backends.add_scheduler_option(p)
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
    from experiments.core.interrupt import raise_interrupt
    grid = parse_grid(args.grid)
    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # SIGTERM ends it like Ctrl-C
    try:
        table = run_sweep(args.experiment, grid, jobs=args.jobs, overrides=args.overrides,
                          out=args.out, force=args.force, backend=args.backend,
                          plots=args.plots, hue=args.hue, scheduler=args.scheduler,
                          on_point=None if args.quiet else _progress_line)
    except backends.TasksLost as err:
        print(f"handgrad: error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = args.out or default_sweep_out(load_config(args.experiment, args.overrides))
    if not args.quiet:
        cols = ["point", "status", "final_loss_manual", "worst_rel_err", "worst_ratio",
                "loss_worst_ratio", "verdict", "seconds"]
        with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 120,
                               "display.max_colwidth", 60):
            print(table[cols].to_string(index=False))
    diverged = int((table["status"] == "diverged").sum())
    differ = int((table["verdict"] == "differ").sum())
    print(f"sweep: {len(table)} points ({diverged} diverged"
          + (f", {differ} differ" if differ else "") + f"); sweep directory {out}")
    return 0
