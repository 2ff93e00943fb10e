"""handgrad's experiments: configs, datasets, the lockstep runner, metrics, reports, CLI.

The names below are the public Python API — what a script or notebook imports; the modules
under ``experiments.core``, ``.output``, ``.teaching`` and ``.tools`` are internal and may
move (docs/design.md, "Python API")::

    from experiments import load_config, run_experiment, write_run
    cfg = load_config("seed", ["epochs=2000", "dtype=float32"])   # as `--set` on the CLI
    run = run_experiment(cfg)        # RunResult: .loss, .grads, .summary as DataFrames
    write_run(run, "runs/seed32")    # the run directory `handgrad run` writes

Each name is imported on first use (PEP 562 ``__getattr__``): ``import experiments`` and
``handgrad --help`` do not pay for torch, pandas or the modules a script never touches.
"""

#: public name -> the module that defines it; the order of __all__
_HOMES = {
    # configuration and initialisation
    "RunConfig": "experiments.core.config",
    "ConfigError": "experiments.core.config",
    "load_config": "experiments.core.config",
    "initial_params": "experiments.core.init",
    "worked_example_params": "experiments.core.init",
    # one lockstep run, its run directory, its diagnosis
    "run_experiment": "experiments.core.runner",
    "RunResult": "experiments.core.runner",
    "write_run": "experiments.output.rundir",
    "diagnose": "experiments.core.diagnose",
    "diagnose_run": "experiments.core.diagnose_run",
    # teaching: one step by hand, a learner's own backprop, the lessons
    "explain": "experiments.teaching.explain",
    "render": "experiments.teaching.explain",
    "check_function": "experiments.teaching.check.api",
    "check_file": "experiments.teaching.check.api",
    "CheckResult": "experiments.teaching.check.api",
    # teaching: a learner's gradients against a teacher's model in torch
    "load_reference": "experiments.teaching.reference.load",
    "check_reference": "experiments.teaching.reference.check",
    "check_reference_file": "experiments.teaching.reference.check",
    "run_study": "experiments.teaching.studies",
    # many runs
    "run_sweep": "experiments.tools.sweep",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'experiments' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value   # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
