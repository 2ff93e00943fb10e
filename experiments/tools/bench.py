"""``handgrad bench``: the time of one training step, every implementation side by side.

In one process, on one set of shapes, dtype and data (kernels: ``bench_timing``):
manual-numpy (manual.MLP + manual.SGD), manual-torch (the same hand code on torch tensors,
CPU or CUDA), torch-autograd (torch_impl + torch.optim.SGD) and each library's GEMM floor
(floor-numpy, floor-torch: only the matrix products any backprop must do). Each repeat
times one calibrated block per implementation, the order rotating so that machine noise
hits all alike, on ``threads`` BLAS and torch threads (default 1: on a shared machine a
multi-threaded region waits at each barrier for a thread that is not scheduled).
``ratio_to_floor``, ``ratio_to_autograd``: medians of ratios *paired* by repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
import torch

from experiments.core.config import ConfigError
from experiments.core.schema import BENCH_COLUMNS as COLUMNS
from experiments.core.threads import limited_threads, thread_counts
from experiments.output.rundir import atomic_folder, check_out, signals_deferred, write_csv
from experiments.tools import bench_timing as kt

IMPLS = ("manual-numpy", "manual-torch", "torch-autograd", "floor-numpy", "floor-torch")
LIBRARY = {i: "numpy" if i.endswith("numpy") else "torch" for i in IMPLS}   # floor-LIBRARY
DTYPES = ("float32", "float64")
WIDE = 512                 # "wide layers": a hidden width of at least this many units
TARGET_WIDE_RATIO = 1.15   # manual-numpy / floor-numpy on wide layers (docs/performance.md)
QUICK = {"repeats": 5, "min_time": 0.03}    # --quick: under 2 minutes on 2 busy cores
FULL = {"repeats": 9, "min_time": 0.1}
QUICK_CASES = ("worked-2-2-2", "seed", "digits", "mnist", "wide-512", "wide-1024")
TINY_CASES = ("worked-2-2-2", "seed")


@dataclass(frozen=True)
class BenchConfig:
    """What one bench run measures; validated on construction (``ConfigError``)."""

    cases: tuple[str, ...] = tuple(c.name for c in kt.CASES)
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = DTYPES
    repeats: int = FULL["repeats"]
    min_time: float = FULL["min_time"]   # seconds per timed block (per impl, per repeat)
    impls: tuple[str, ...] = IMPLS
    threads: int = 1               # numpy's BLAS and torch's intra-op threads; 0 = defaults
    out: str = "bench"

    def __post_init__(self):
        for flag, what, values, allowed in (
                ("--case", "case", self.cases, kt.CASES_BY_NAME),
                ("--dtype", "dtype", self.dtypes, DTYPES),
                ("--device", "device", self.devices, ("cpu", "cuda")),
                ("impls", "impl", self.impls, IMPLS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"{flag} {bad or '(none)'}: unknown {what}; choose from "
                                  f"{', '.join(allowed)}")
        if self.repeats < 1:
            raise ConfigError(f"--repeats {self.repeats}: must be >= 1")
        if self.threads < 0:
            raise ConfigError(f"--threads {self.threads}: must be >= 0 "
                              f"(0 = the libraries' defaults)")
        if not self.min_time > 0:
            raise ConfigError(f"min_time {self.min_time}: must be > 0 seconds")
        if "cuda" in self.devices and not torch.cuda.is_available():
            raise ConfigError(f"--device cuda: no CUDA device is available here (torch "
                              f"{torch.__version__}); use --device cpu")


def run_bench(cfg: BenchConfig = BenchConfig(),
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Time every (case, dtype, device, impl) of ``cfg``; one row each, columns ``COLUMNS``."""
    rows = []
    with limited_threads(cfg.threads) if cfg.threads else contextlib.nullcontext():
        counts = thread_counts()
        threads = {"torch": counts["torch"], "numpy": next(iter(counts["blas"].values()), 1)}
        for case, dtype in itertools.product((kt.CASES_BY_NAME[n] for n in cfg.cases), cfg.dtypes):
            impls, case_rows = _bench_case(case, dtype, cfg, threads)
            rows += case_rows
            if progress:
                progress(f"{case.name} ({case.label}, batch {case.batch}) {dtype}: " + ", ".join(
                    f"{i.name}{'' if i.device == 'cpu' else '/' + i.device} "
                    f"{_fmt_time(float(np.median(i.times)))}" for i in impls))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _bench_case(case: kt.BenchCase, dtype: str, cfg: BenchConfig,
                threads: dict[str, int]) -> tuple[list[kt.Impl], list[dict]]:
    """Build, calibrate and time each implementation of ``cfg`` on ``case``, interleaved,
    and the unit cost of one numpy call; return them and their bench.csv rows."""
    impls = [kt.build(impl, device, case, dtype) for device in cfg.devices for impl in cfg.impls
             if LIBRARY[impl] == "torch" or device == "cpu"]
    # the cyclic garbage collector off while timing (as timeit); one collection before, since
    # a full collection costs ~0.3 s once torch and pandas are loaded
    gc.collect()
    gc.disable()
    try:
        for impl in impls:
            impl.clock = kt.clock_for(impl.device, cfg.threads)
            impl.steps = kt.calibrate(impl, cfg.min_time)
        for r in range(cfg.repeats):   # rotate the order: each impl takes every position
            k = r % len(impls)
            for impl in impls[k:] + impls[:k]:
                impl.times.append(kt.block(impl, impl.steps))
        call_s = kt.numpy_call_seconds(case, dtype, clock=kt.clock_for("cpu", cfg.threads))
    finally:
        gc.enable()
    calls = kt.count_numpy_calls(case, dtype)
    flops = kt.floor_flops(case.sizes, case.batch)
    times = {(i.name, i.device): np.asarray(i.times) for i in impls}
    nan = np.full(cfg.repeats, np.nan)
    rows = []
    for impl in impls:
        t = times[impl.name, impl.device]
        to_floor = t / times.get((f"floor-{LIBRARY[impl.name]}", impl.device), nan)  # paired
        to_autograd = t / times.get(("torch-autograd", impl.device), nan)
        q25, med, q75 = np.quantile(t, [0.25, 0.5, 0.75])
        manual_np = impl.name == "manual-numpy"
        rows.append({
            "case": case.name, "impl": impl.name, "library": LIBRARY[impl.name],
            "device": impl.device, "dtype": dtype, "batch": case.batch, "sizes": case.label,
            "flops": flops, "seconds_per_step": med, "seconds_q25": q25, "seconds_q75": q75,
            "seconds_min": t.min(), "seconds_max": t.max(), "us_per_step": med * 1e6,
            "gflops_per_s": flops / med / 1e9, "ratio_to_floor": np.median(to_floor),
            "ratio_to_floor_q25": np.quantile(to_floor, 0.25),
            "ratio_to_floor_q75": np.quantile(to_floor, 0.75),
            "ratio_to_autograd": np.median(to_autograd),
            "numpy_calls_per_step": calls if manual_np else np.nan,
            "numpy_calls_per_layer": calls / (len(case.sizes) - 1) if manual_np else np.nan,
            "numpy_call_us": call_s * 1e6 if manual_np else np.nan, "repeats": cfg.repeats,
            "steps_per_repeat": impl.steps, "threads": threads[LIBRARY[impl.name]],
            "clock": "process" if impl.clock is time.process_time else "wall"})
    return impls, rows


def targets(df: pd.DataFrame) -> pd.DataFrame:
    """The performance targets (docs/performance.md), from one bench run (manual-numpy, CPU).

    wide layers (a hidden width >= 512): ``ratio_to_floor`` <= 1.15 and
    ``ratio_to_autograd`` <= 1. Tiny networks (2-2-2, seed): µs per step against what its
    numpy calls alone cost (calls counted, unit cost measured); ``met`` is None there.
    """
    rows = []
    for r in df[(df.impl == "manual-numpy") & (df.device == "cpu")].itertuples():
        if max(kt.CASES_BY_NAME[r.case].sizes[1:-1], default=0) >= WIDE:
            rows.append((r.case, r.dtype, "ratio_to_floor", r.ratio_to_floor,
                         f"<= {TARGET_WIDE_RATIO}", bool(r.ratio_to_floor <= TARGET_WIDE_RATIO)))
            if not math.isnan(r.ratio_to_autograd):
                rows.append((r.case, r.dtype, "ratio_to_autograd", r.ratio_to_autograd, "<= 1",
                             bool(r.ratio_to_autograd <= 1)))
        if r.case in TINY_CASES:
            rows.append((r.case, r.dtype, "us_per_step", r.us_per_step,
                         f"{r.numpy_calls_per_step:.0f} numpy calls ({r.numpy_calls_per_layer:.1f}"
                         f"/layer) x {r.numpy_call_us:.2f} us = "
                         f"{r.numpy_calls_per_step * r.numpy_call_us:.1f} us", None))
    return pd.DataFrame(rows, columns=["case", "dtype", "check", "value", "target", "met"])


def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def format_table(df: pd.DataFrame) -> str:
    """The printed table: one line per (case, dtype, device, impl)."""
    return pd.DataFrame({
        "case": df.case, "sizes": df.sizes, "batch": df.batch, "dtype": df.dtype,
        "device": df.device, "impl": df.impl,
        "time/step": df.seconds_per_step.map(_fmt_time),
        "IQR": ((df.seconds_q75 - df.seconds_q25) / df.seconds_per_step).map(
            lambda v: f"{100 * v:.0f}%"),
        "GFLOP/s": df.gflops_per_s.map(lambda v: f"{v:.3g}"),
        **{name: df[col].map(lambda v: "" if math.isnan(v) else f"{v:.2f}x")
           for name, col in (("/floor", "ratio_to_floor"), ("/autograd", "ratio_to_autograd"))},
    }).to_string(index=False)


def format_targets(checks: pd.DataFrame) -> str:
    met = checks.met.map(lambda m: "info" if m is None else "yes" if m else "NO")
    value = [f"{v:.1f}" if c == "us_per_step" else f"{v:.3f}"
             for c, v in zip(checks.check, checks.value, strict=True)]
    return checks.assign(value=value, met=met).to_string(index=False)


def plot_bench(df: pd.DataFrame, path: str | Path) -> Path:
    """Time per step against FLOPs per step, log-log: one panel per device and dtype, one
    line per implementation (bars: quartiles over the repeats), the GEMM floors dashed and
    dotted, each case's network written under its fastest point."""
    import seaborn as sns

    from experiments.output.style import figure, save, style

    panels = sorted({(d, t) for d, t in zip(df.device, df.dtype, strict=True)})
    colors = dict(zip(IMPLS, sns.color_palette("colorblind", len(IMPLS)), strict=True))
    floors = {"floor-numpy": (0, (4, 2)), "floor-torch": (0, (1, 1.5))}
    with style():
        fig, axes = figure(len(panels), 5.0, 4.4, sharey=True)
        for ax, (device, dtype) in zip(axes, panels, strict=True):
            sub = df[(df.device == device) & (df.dtype == dtype)]
            for impl in [i for i in IMPLS if (sub.impl == i).any()]:
                d = sub[sub.impl == impl].sort_values("flops")
                ax.errorbar(d.flops, d.seconds_per_step, label=impl, markersize=4, capsize=2,
                            yerr=np.vstack([d.seconds_per_step - d.seconds_q25,
                                            d.seconds_q75 - d.seconds_per_step]),
                            color="0.25" if impl in floors else colors[impl],
                            linestyle=floors.get(impl, "-"), marker="" if impl in floors else "o")
            for r in sub.sort_values("seconds_per_step").drop_duplicates("case").itertuples():
                ax.annotate(r.sizes, (r.flops, r.seconds_per_step), xytext=(0, -10),
                            textcoords="offset points", ha="center", va="top", fontsize=6,
                            rotation=30, color="0.35")
            ax.set(xscale="log", yscale="log", title=f"{device}, {dtype}",
                   xlabel="FLOPs per step (2 x GEMM multiply-adds)")
        axes[0].set_ylabel("seconds per step (median; bars: quartiles)")
        axes[0].legend(loc="upper left", fontsize=7)
        save(fig, path, tight=False)
    return Path(path)


def write_bench(df: pd.DataFrame, cfg: BenchConfig, force: bool = False) -> tuple[Path, Path]:
    """bench.csv, config.toml (``kind = "bench"`` and ``cfg``) and bench.png, written into
    the folder ``cfg.out`` at once (``rundir.atomic_folder``: an existing handgrad folder is
    replaced only with ``force``); returns the CSV's and the PNG's final paths."""
    out = Path(cfg.out)
    with signals_deferred(), atomic_folder(out, force, kind="bench") as tmp:   # as write_run
        write_csv(df, tmp / "bench.csv")   # shortest round-trip floats, as every handgrad CSV
        (tmp / "config.toml").write_text(
            tomli_w.dumps({"kind": "bench", **dataclasses.asdict(cfg)}), encoding="utf-8")
        plot_bench(df, tmp / "bench.png")
    return out / "bench.csv", out / "bench.png"


def redraw(folder: str | Path) -> list[str]:
    """Redraw bench.png from the folder's bench.csv; return the path written."""
    return [str(plot_bench(pd.read_csv(Path(folder) / "bench.csv"), Path(folder) / "bench.png"))]


def register(subparsers, formatter_class=argparse.HelpFormatter, help: str = "") -> None:
    """Add the ``bench`` subcommand (``experiments.cli`` calls this)."""
    p = subparsers.add_parser(
        "bench", formatter_class=formatter_class,
        help=help,
        description="Time one training step (forward + backward + update) in one process: "
                    "manual on numpy and on torch tensors (CPU, CUDA),\ntorch autograd + "
                    "torch.optim.SGD, and the GEMM floor (only the matrix products any backprop "
                    "must do)\nof numpy and torch. Writes bench.csv, config.toml and bench.png "
                    "into --out; prints the table and the targets.\n\nCases:\n" +
                    "\n".join(f"  {c.name:<13} {c.label}, batch {c.batch}" for c in kt.CASES))
    p.add_argument("--quick", action="store_true",
                   help=f"cases {', '.join(QUICK_CASES)}; {QUICK['repeats']} repeats of "
                        f"{QUICK['min_time']} s blocks (under 2 minutes on 2 busy cores)")
    p.add_argument("--device", default="all", metavar="{cpu,cuda,all}",
                   help="all = cpu, plus cuda when torch.cuda.is_available()")
    p.add_argument("--dtype", nargs="+", default=list(DTYPES), metavar="{float32,float64}",
                   help="one or both")
    p.add_argument("--case", action="append", default=None, metavar="NAME",
                   help="run only this case (repeatable); default: all, or the quick ones")
    p.add_argument("--repeats", default=None, metavar="N",
                   help=f"timed blocks per implementation (default: {FULL['repeats']}, "
                        f"{QUICK['repeats']} with --quick)")
    p.add_argument("--threads", default="1", metavar="N",
                   help="numpy BLAS and torch intra-op threads; 0 = the libraries' defaults")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for the results")
    p.add_argument("--force", action="store_true", help="replace an existing bench folder")
    p.set_defaults(func=main_from_args)


def _int_option(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} {text!r}: expected an integer") from None


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The validated ``BenchConfig`` for parsed arguments (``ConfigError`` if bad)."""
    if args.device not in ("cpu", "cuda", "all"):
        raise ConfigError(f"--device {args.device!r}: choose cpu, cuda or all")
    devices = ((args.device,) if args.device != "all" else
               ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    mode = QUICK if args.quick else FULL
    repeats = mode["repeats"] if args.repeats is None else _int_option("--repeats", args.repeats)
    cases = tuple(args.case) if args.case else (
        QUICK_CASES if args.quick else tuple(kt.CASES_BY_NAME))
    cfg = BenchConfig(cases=cases, devices=devices, dtypes=tuple(dict.fromkeys(args.dtype)),
                      repeats=repeats, min_time=mode["min_time"],
                      threads=_int_option("--threads", args.threads), out=str(args.out))
    check_out(args.out, args.force, "bench")   # after the options, before minutes of timing
    return cfg


def main_from_args(args: argparse.Namespace) -> int:
    """``handgrad bench``: measure, write bench.csv + bench.png, print the table."""
    cfg = config_from_args(args)
    df = run_bench(cfg, progress=lambda line: print(line, file=sys.stderr, flush=True))
    csv, png = write_bench(df, cfg, force=args.force)
    print(format_table(df))
    checks = targets(df)
    if not checks.empty:
        print("\nTargets (manual-numpy on the CPU):")
        print(format_targets(checks))
    print(f"\nwrote {csv}, {png} and {csv.parent / 'config.toml'}")
    return 0
