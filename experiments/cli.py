"""The ``handgrad`` command: a thin layer over importable functions. The library returns
data; this module parses arguments and prints.

Exit codes: 0 success (for ``run``: the sides agree), 1 ``run``: the sides differ (the
loss or any parameter; ``--exit-zero`` keeps 0), 2 bad input (one line on stderr, nothing
written), 3 the run diverged (its run directory is written up to the divergence), 130
interrupted.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

from experiments.core.interrupt import raise_interrupt
from experiments.core.schema import GRAD_ENTRIES_MAX_ROWS

EXIT_DIFFER, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130

#: subcommand -> (the module whose ``register(subparsers, formatter_class, help)`` adds it
#: and sets ``func(args) -> int`` with ``set_defaults``, its one-line help). ``handgrad
#: --help`` lists them from here; only the module of the command being run is imported
#: (torch, pandas and seaborn take seconds to import).
FEATURES: dict[str, tuple[str, str]] = {
    "explain": ("experiments.teaching.explain",
                "the chain rule for each weight, number by number, next to autograd"),
    "bugs": ("experiments.teaching.bugs",
             "a gallery of hand-derivation bugs and their signatures against autograd"),
    "sweep": ("experiments.tools.sweep",
              "run a grid of overrides in parallel, one run directory per point"),
    "bench": ("experiments.tools.bench",
              "time one training step: manual (numpy, torch), autograd, and the GEMM floor"),
    "check": ("experiments.teaching.check.command",
              "check a learner's own backprop against autograd"),
    "grade": ("experiments.teaching.grade.command",
              "check every learner file in a folder; write grades.csv"),
}


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (a missing argument, a bad choice, a word where a number goes)
    as the one line every handgrad error is, exit 2; the usage stays in ``--help``. Options
    are never abbreviated: `--for` must not pass for `--force`, which deletes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"handgrad: error: {one_line(message)}; see "
                                  f"`{self.prog} --help`\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except ``None`` ones (their help text says what happens instead)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``argv``, only the feature module of the command it names is
    imported, and the other feature commands are placeholders that carry their help."""
    command = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    parser = _Parser(
        prog="handgrad", formatter_class=_Formatter,
        description="Train one network twice — hand-derived backprop (manual/) and PyTorch "
                    "autograd (torch_impl/) — in lockstep, and tabulate every difference.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices   # name -> its parser, filled in below

    run = sub.add_parser("run", formatter_class=_Formatter,
                         help="train both sides in lockstep and write a run directory",
                         description="Run a named experiment (see `handgrad list`) or a TOML "
                                     "config; writes config.toml, provenance.json, loss.csv, "
                                     "grads.csv, summary.csv, report.md and plots.")
    run.add_argument("experiment", metavar="NAME|CONFIG.toml")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a config key (repeatable), "
                     "e.g. --set lr=0.5 --set sizes=[2,3,1]")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default: the config's `out`, else runs/NAME)")
    run.add_argument("--force", action="store_true", help="replace an existing run directory")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    run.add_argument("--grad-entries", action=argparse.BooleanOptionalAction, default=None,
                     help="write grad_entries.csv (every gradient entry of both sides at "
                          "every logged step) whatever its size; --no-grad-entries: never "
                          f"(default: when it has at most {GRAD_ENTRIES_MAX_ROWS:,} rows, e.g. the "
                          "seed case)")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true",
                       help="no progress bar, table or lesson: the verdict and status lines")
    shown.add_argument("--progress", action="store_true",
                       help="draw the progress bar on stderr even when it is not a terminal "
                            "(by default only a terminal gets one, so a log captured with "
                            "2>&1 holds no bar)")
    run.add_argument("--quick", action="store_true",
                     help="studies only: a few-second version of the lesson")
    run.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                     help="torch and BLAS threads (default: 1 for small networks, all cores "
                          "for large ones; recorded in provenance.json)")
    run.add_argument("--exit-zero", action="store_true",
                     help="exit 0 even when the verdict is differ (exploratory runs); "
                          "without it a run whose loss or any parameter differs exits 1")

    sub.add_parser("list", help="list the named experiments and studies",
                   formatter_class=_Formatter)

    plot = sub.add_parser("plot", formatter_class=_Formatter,
                          help="re-draw an output folder's figures from its CSVs (a run, a "
                               "study, the bug gallery, a sweep or a bench)")
    plot.add_argument("run_dir", type=Path, metavar="DIR")

    cmp = sub.add_parser("compare", formatter_class=_Formatter,
                         help="two runs side by side (e.g. float32 vs float64)")
    cmp.add_argument("run_a", type=Path, metavar="RUN_A")
    cmp.add_argument("run_b", type=Path, metavar="RUN_B")
    cmp.add_argument("--out", type=Path, default=None,
                     help="folder for the comparison figures (default: compare-A-vs-B next "
                          "to RUN_A)")
    for name, (module, help) in FEATURES.items():
        if argv is None or name == command:
            importlib.import_module(module).register(sub, _Formatter, help)
        else:
            sub.add_parser(name, help=help)
    return parser


def cmd_list() -> int:
    from experiments.core.config import load_config, named_experiments
    from experiments.core.loss_formula import loss_formula, network_text
    from experiments.teaching.studies import STUDIES
    for name in named_experiments():
        cfg = load_config(name)
        first = " ".join(cfg.description.split()).split(". ")[0].rstrip(".")
        print(f"{name:<22} {first}")
        print(f"{'':<22} network {network_text(cfg)}; loss {cfg.loss}: "
              f"{loss_formula(cfg.loss)}")
    print("\nstudies (several runs and a lesson; `handgrad run NAME [--quick]`):")
    for name, (description, _) in STUDIES.items():
        print(f"{name:<22} {description}")
    return 0


def one_line(text: str) -> str:
    """An error message as one line: newlines (from a path, say) shown as \\n."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _progress(args) -> bool:
    """Draw tqdm's bar? On request (``--progress``), else only when stderr is a terminal:
    the bar redraws its line with carriage returns, which a file or a notebook's captured
    output keeps as clutter glued to the table on stdout."""
    return args.progress or (not args.quiet and sys.stderr.isatty())


def _verdict_line(result) -> str:
    """The verdict in one line (what ``--quiet`` keeps): the ``all`` row of summary.csv
    and the worst loss difference."""
    s = result.summary
    if s.empty or "all" not in set(s["param"]):
        return "verdict: none (no step was logged)"
    a = s[s["param"] == "all"].iloc[0]
    loss = (f"; worst |E_manual - E_torch| {result.loss['abs_diff'].max():.3g}"
            if not result.loss.empty else "")
    return (f"verdict: {a['verdict']} over {len(result.loss)} logged steps (worst rel_err "
            f"{a['rel_err']:.3g} = {a['worst_ratio']:.3g}·rel_tol at step "
            f"{a['worst_step']}{loss})")


def _print_verdict(result) -> None:
    """The predictions, the verdict table with its legend, the diagnosis and the loss gap."""
    import pandas as pd

    from experiments.core.diagnose import format_findings
    from experiments.core.tolerance import gradient_tolerance, loss_tolerance
    from experiments.output.report import predictions_text

    preds = predictions_text(result)
    if preds:
        print(preds)
    cols = ["param", "worst_step", "rel_err", "worst_ratio", "update_ratio", "drift_ratio",
            "max_abs_diff", "verdict"]
    c = result.config
    N = len(result.dataset.X) if c.batch_size == "full" else c.batch_size
    base = gradient_tolerance(c.dtype, c.sizes, N)
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 120):
        print(f"\nVerdict over {len(result.loss)} logged steps ({c.dtype}, mode {c.mode}). "
              f"rel_err and worst_ratio = rel_err / rel_tol are the worst step's, the\n"
              f"gradient code at the same weights, with rel_tol = 2γ_m·cond = "
              f"{base:.2g}·cond (docs/tolerance.md); update_ratio: each SGD step against\n"
              f"torch.optim.SGD's (≤ 1 agrees); drift_ratio: the sides at their own weights "
              f"(free mode: includes drift); max_abs_diff: over all steps.\n"
              f"loss: E's rel_diff = |E_m − E_t| / max |E| at the same weights, with rel_tol = "
              f"2γ_m_E·cond = {loss_tolerance(c.dtype, c.sizes, N):.2g}·cond (m_E: the sum "
              f"over N·K);\nall: every parameter together, its verdict the run's (the loss's "
              f"included).")
        print(result.summary[cols].to_string(index=False))
    print("diagnosis:\n" + format_findings(result.findings))
    if not result.loss.empty:
        print(f"loss: worst |E_manual - E_torch| = {result.loss['abs_diff'].max():.3g} "
              f"(relative {result.loss['rel_diff'].max():.3g})")


def cmd_run(args) -> int:
    from experiments.core.config import ConfigError, load_config, named_experiments, replace
    from experiments.core.runner import run_experiment
    from experiments.core.verdict import run_verdict
    from experiments.output.rundir import check_out, default_out, write_run
    from experiments.teaching.studies import STUDIES, run_study
    if args.experiment in STUDIES:
        if args.overrides:
            raise ConfigError(f"{args.experiment} is a study (several runs); --set does not "
                              f"apply to it")
        out = args.out or Path("runs") / args.experiment
        from experiments.teaching.studies import lesson
        path = run_study(args.experiment, out, quick=args.quick, force=args.force,
                         progress=_progress(args))
        if not args.quiet:
            print(lesson(path))
        print(f"study written: {path / 'report.md'}")
        return 0
    close = difflib.get_close_matches(args.experiment, list(STUDIES), n=1, cutoff=0.8)
    if close and args.experiment not in named_experiments() and not Path(args.experiment).exists():
        raise ConfigError(f"unknown experiment {args.experiment!r}: did you mean the study "
                          f"{close[0]!r}? see `handgrad list`")
    if args.quick:
        raise ConfigError(f"--quick applies to studies only ({', '.join(STUDIES)}); for a "
                          f"short run of {args.experiment!r} use --set epochs=N or --set steps=N")
    cfg = load_config(args.experiment, args.overrides)
    if args.out is not None:
        cfg = replace(cfg, out=str(args.out))
    out = default_out(cfg)
    check_out(out, args.force)
    result = run_experiment(cfg, progress=_progress(args), threads=args.threads,
                            grad_entries=args.grad_entries)
    write_run(result, out, force=args.force, plots=not args.no_plots)
    if args.quiet:
        print(_verdict_line(result))
    else:
        _print_verdict(result)
    print(f"{result.status}: {result.message}; run directory {out}")
    if result.status == "diverged":
        print(f"handgrad: {result.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if run_verdict(result.summary) == "differ" and not args.exit_zero:
        print(f"handgrad: the sides differ ({differing(result.summary)}); see "
              f"{out / 'report.md'} (--exit-zero exits 0)", file=sys.stderr)
        return EXIT_DIFFER
    return 0


def differing(summary) -> str:
    """The summary rows that differ, named: ``loss, layers.1.weight``."""
    rows = summary[(summary["verdict"] == "differ") & (summary["param"] != "all")]
    return ", ".join(rows["param"])


def _require_run_dir(path: Path) -> None:
    from experiments.core.config import ConfigError
    missing = [f for f in ("loss.csv", "grads.csv", "summary.csv") if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"{path} is not a complete handgrad run directory (no "
                          f"{', '.join(missing)}); create one with "
                          f"`handgrad run NAME --out {path}`")


#: output folders other than runs, by config.toml's ``kind``: the module whose
#: ``redraw(folder)`` draws the figures again from the folder's CSVs
REDRAW = {"study": "experiments.teaching.studies", "bugs": "experiments.teaching.bugs",
          "sweep": "experiments.tools.sweep", "bench": "experiments.tools.bench"}


def cmd_plot(args) -> int:
    """Redraw any handgrad output folder's figures from its CSVs."""
    import tomllib

    from experiments.core.config import ConfigError
    folder = args.run_dir
    cfg = folder / "config.toml"
    kind = tomllib.loads(cfg.read_text(encoding="utf-8")).get("kind", "run") \
        if cfg.is_file() else "run"
    if kind == "run":
        from experiments.output.plots import plot_run
        _require_run_dir(folder)
        paths = plot_run(folder)
    elif kind in REDRAW:
        paths = importlib.import_module(REDRAW[kind]).redraw(folder)
    else:
        raise ConfigError(f"{cfg} names kind {kind!r}, which handgrad cannot plot; it plots "
                          f"runs and {', '.join(REDRAW)} folders")
    for path in paths:
        print(folder / Path(path).name)
    return 0


def cmd_compare(args) -> int:
    from experiments.output.compare import compare_runs
    _require_run_dir(args.run_a)
    _require_run_dir(args.run_b)
    out = args.out or args.run_a.parent / f"compare-{args.run_a.name}-vs-{args.run_b.name}"
    report = compare_runs(args.run_a, args.run_b, out)
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    # From the first instruction on, SIGTERM ends handgrad as Ctrl-C does (exit 130, no
    # traceback), also while the parser imports the feature modules.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        return _dispatch(argv)
    except KeyboardInterrupt:
        print("handgrad: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(argv: list[str] | None) -> int:
    from experiments.core.config import ConfigError
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:   # named by the command's own parser, which lists the options it has
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "plot":
            return cmd_plot(args)
        if args.command == "compare":
            return cmd_compare(args)
        return args.func(args)
    except ConfigError as err:
        print(f"handgrad: error: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `handgrad list | head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (OSError, ValueError) as err:   # BrokenPipeError is an OSError: caught above
        # unreadable or malformed files handed to plot/compare (CSV, TOML), unwritable paths
        import tomllib

        import pandas as pd
        if not isinstance(err, (OSError, tomllib.TOMLDecodeError, pd.errors.ParserError,
                                pd.errors.EmptyDataError)):
            raise
        print(f"handgrad: error: {type(err).__name__}: {one_line(str(err))}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
