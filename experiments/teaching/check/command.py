"""``handgrad check FILE.py [NAME|CONFIG.toml]``: a learner's own backprop against autograd.

The library (``api.check_file``) returns a ``CheckResult``; this module parses the
arguments, prints its explanation and returns its exit code (``DESCRIPTION``'s last lines;
bad input: one line, nothing written).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

DESCRIPTION = """\
Check a learner's own backpropagation: FILE.py (or a notebook, FILE.ipynb) defines
gradients(params, X, Y) -> dict (and optionally update(params, grads, lr) -> dict, and
CONVENTION = "torch" or "W1b1").
handgrad compares its gradients with autograd and central differences at the initial
point, trains it in lockstep with torch (synced mode) for the config's steps, and, where
they differ, says how in the file's own names: which entries, the likely mistake, and the
chain rule for one wrong entry with numbers. The file runs in its own process with a time
and memory limit. Prints the verdict, then writes a check folder (check.md, initial.csv,
training/ as `handgrad run` writes it); a rerun on the same file replaces its own folder,
any other folder needs --force.

  handgrad check examples/learners/correct_w1b1.py
  handgrad check my_backprop.py xor --steps 100
  handgrad check examples/learners/missing_factor_2.py seed --set loss=mse

exit codes (the status in brackets, docs/check.md): 0 agree; 1 differ; 2 the file cannot be
checked as it is (not_a_submission, import_error, wrong_assignment, bad_output); 3
diverged; 4 the learner's code failed in a call or its process died (crashed,
output_limit); 5 ran past --timeout (timeout).
With several --config, one result each and the highest code."""


def add_limits(p: argparse.ArgumentParser, steps: str = "the config's") -> None:
    """The options ``check`` and ``grade`` share; ``steps``: the default --steps' help
    states."""
    p.add_argument("experiment", nargs="?", default=None,
                   metavar="NAME|CONFIG.toml|REFERENCE.py",
                   help="a named experiment (see `handgrad list`), a TOML config, or a "
                        "reference file: a model in torch (docs/references.md) "
                        "(default: seed)")
    p.add_argument("--config", dest="configs", action="append", default=None,
                   metavar="NAME|CONFIG.toml|REFERENCE.py",
                   help="a config or reference to check on (repeatable: each gives its "
                        "own result)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help=f"training steps (default: {steps})")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="time the learner's code may take in all (its process is stopped "
                        "after)")
    p.add_argument("--memory", type=int, default=1024, metavar="MB",
                   help="address space of the learner's process (RLIMIT_AS)")
    p.add_argument("--definitions-only", action="store_true",
                   help="run only the file's imports, definitions and literal assignments "
                        "(a notebook's training loops left out)")
    p.add_argument("--force", action="store_true", help="replace existing output")


def configs_of(args) -> list[str]:
    """The configs asked for: the positional one, then each ``--config`` (default seed)."""
    return ([args.experiment] if args.experiment else []) + (args.configs or []) or ["seed"]


def register(subparsers, formatter_class=argparse.HelpFormatter, help: str = "") -> None:
    """Add ``handgrad check`` (experiments.cli's feature-module protocol)."""
    p = subparsers.add_parser("check", formatter_class=formatter_class, help=help,
                              description=DESCRIPTION)
    p.add_argument("file", type=Path, metavar="FILE.py|FILE.ipynb")
    add_limits(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="check folder (default: checks/FILE)")
    p.add_argument("--no-plots", action="store_true", help="skip the training run's PNGs")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from experiments.core.config import ConfigError
    from experiments.core.interrupt import raise_interrupt
    from experiments.teaching.check.early import start_early

    out = args.out or Path("checks") / args.file.stem
    configs = configs_of(args)
    # one config: the learner's process starts on the other core while torch and pandas
    # are imported (a reference file, whose name ends in .py, is loaded with torch first)
    early = start_early(args.file, configs[0], overrides=args.overrides, steps=args.steps,
                        timeout=args.timeout, memory_mb=args.memory, out=out,
                        force=args.force, definitions_only=args.definitions_only) \
        if len(configs) == 1 and not configs[0].lower().endswith(".py") else None
    from experiments.teaching.check.api import check_file, resolve_config
    from experiments.teaching.reference.check import check_reference_file
    from experiments.teaching.reference.load import is_reference

    if args.overrides and any(is_reference(c) for c in configs):
        raise ConfigError(f"--set {args.overrides[0]}: --set changes a config; a reference "
                          f"file sets LR, STEPS and BATCH_SIZE itself")
    names = [Path(c).stem if is_reference(c) else   # all valid before any is checked
             resolve_config(c, args.overrides, args.steps).name for c in configs]
    if len(set(names)) < len(names):
        raise ConfigError(f"--config: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
                          f" given twice; give each config once")
    signal.signal(signal.SIGTERM, raise_interrupt)
    codes = []
    for config, name in zip(configs, names, strict=True):
        where = out / name if len(configs) > 1 else out   # several: one folder each

        def announce(result, name=name):   # the verdict first; reports and figures after
            if len(configs) > 1:
                print(f"== {name}: {result.status} (exit {result.exit_code})")
            print(result.explanation, flush=True)

        if is_reference(config):   # a teacher's model in torch
            result = check_reference_file(args.file, config, steps=args.steps,
                                          timeout=args.timeout, memory_mb=args.memory,
                                          out=where, force=args.force,
                                          plots=not args.no_plots,
                                          definitions_only=args.definitions_only)
            if result.exit_code != 2:
                announce(result)
        else:
            result = check_file(args.file, config, overrides=args.overrides,
                                steps=args.steps, timeout=args.timeout,
                                memory_mb=args.memory, out=where, force=args.force,
                                plots=not args.no_plots,
                                definitions_only=args.definitions_only, announce=announce,
                                early=early)
        codes.append(result.exit_code)
        if result.exit_code == 2:
            if len(configs) == 1:
                raise ConfigError(result.message)      # one line on stderr, nothing written
            print(f"== {name}: {result.status} (exit 2)\n{result.message}")
        else:
            print(f"check folder: {where}")
        if result.sandbox_missing:
            print(f"handgrad: your code ran without a filesystem sandbox: "
                  f"{'; '.join(result.sandbox_missing)}", file=sys.stderr)
        if result.exit_code not in (0, 1):
            print(f"handgrad: {result.status}: {result.message}", file=sys.stderr)
    return max(codes)   # several configs: the worst
