"""One check of a learner's backprop, start to end, as a Python API.

    from experiments.teaching.check import check_function, check_file
    result = check_function(gradients, "seed", convention="W1b1")    # a function object
    result = check_file("my_backprop.py", "xor", timeout=30)         # a file, in its own process
    assert result.agree, result.explanation

A check (``run_check``) is three things:

1. the initial point (``initial.check_initial``): the learner's gradients against
   autograd and finite differences, a second call, and the learner's ``update``;
2. training: the learner's side (``side.LearnerSide``) in lockstep with torch for the
   config's steps, through the one engine (``experiments.core.runner.run_experiment`` with
   ``side=``): the run's metrics, rounding tolerance, diagnosis, CSVs and report;
3. the verdict and its diagnosis in the learner's terms: a near miss named as such
   (``near_miss``) before any formula is blamed (``diagnosis``, ``mistakes``), with the
   chain rule of one wrong entry (``report``); a failure gets a one-line hint where its
   usual cause is not in its message (``_hint``).

Statuses, each meaning one thing, and ``handgrad check``'s exit codes
(``learner.EXIT_CODES``, docs/check.md): agree 0, differ 1; not_a_submission,
wrong_assignment, import_error and bad_output 2 (the file cannot be checked as it is);
diverged 3; crashed and output_limit 4 (the learner's code failed in a call, or its
process died); timeout 5.
``check_function`` calls the function in this process (no time or memory limit: a hang is
a hang; ``isolated=True`` checks the function's file instead); ``check_file`` runs the file
in its own limited process (``process``).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.core.config import ConfigError, RunConfig, load_config, parse_override, replace
from experiments.core.diagnose import param_kinds
from experiments.core.runner import RunResult, resolve, run_experiment
from experiments.teaching.boundary.learner import EXIT_CODES, BadLearner, Learner, LearnerError
from experiments.teaching.check import diagnosis, mistakes, near_miss
from experiments.teaching.check.initial import Initial, check_initial
from experiments.teaching.check.side import Convention, side_factory


@dataclass
class CheckResult:
    """What a check found. ``agree`` and ``explanation`` are what a test asserts on."""

    file: str                         # the learner's file name (or function name)
    status: str                       # a key of learner.EXIT_CODES
    exit_code: int
    message: str                      # one line
    kind: str = ""                    # diagnose's kind at first_param ("agree" when agreeing)
    first_param: str = ""             # the learner's name of the first differing parameter
    worst_rel_err: float = math.nan
    worst_ratio: float = math.nan     # worst rel_err / rel_tol
    seconds: float = 0.0
    config: RunConfig | None = None   # resolved
    convention: str = ""
    initial: Initial | None = None
    run: RunResult | None = None
    sentences: list[str] = field(default_factory=list)   # the diagnosis, learner's terms
    details: str = ""                 # the learner's traceback, or a crash's last lines
    where: str = ""                   # " (at FILE, line N: CODE)": the learner's last frame
    output: str = ""                  # what the learner's code printed (its own process)
    sandbox_missing: list[str] = field(default_factory=list)   # layers not applied here
    sha256: str = ""                  # of the file's bytes that ran (check_file)
    mode: str = ""                    # "the whole file" or "definitions only" (check_file)
    notes: list[str] = field(default_factory=list)   # what of the file was left out
    has_update: bool = False          # the learner defines update(params, grads, lr)
    autograd_runs: int = 0            # backward passes torch ran in its process (check_file)
    explanation: str = ""             # everything, as `handgrad check` prints it

    @property
    def agree(self) -> bool:
        return self.status == "agree"


def resolve_config(config: str | RunConfig, overrides=(), steps: int | None = None
                   ) -> RunConfig:
    """A named experiment or TOML path (trained in ``synced`` mode unless an override says
    otherwise) or a RunConfig as given; ``steps`` replaces the config's length."""
    if isinstance(config, RunConfig):
        cfg = replace(config, **dict(parse_override(o) for o in overrides))
    else:
        cfg = load_config(config, ["mode=synced", *overrides])
    if steps is not None:
        if steps < 1:
            raise ConfigError(f"--steps {steps}: the number of training steps must be >= 1")
        cfg = replace(cfg, steps=steps)
    return replace(cfg, manual_backend="numpy")   # the learner's side is numpy


def _refuse_update(cfg: RunConfig, learner) -> None:
    extra = {k: getattr(cfg, k) for k in ("momentum", "weight_decay", "dampening")
             if getattr(cfg, k)}
    if learner.has_update and (extra or cfg.nesterov):
        said = ", ".join(f"{k} = {v:g}" for k, v in extra.items()) or "nesterov = true"
        raise BadLearner(f"{learner.name} defines update(params, grads, lr), which is checked "
                         f"against plain SGD only, and this config has {said}: add --set "
                         f"momentum=0 --set weight_decay=0, or remove update() to train with "
                         f"handgrad's own SGD", status="wrong_assignment")


def run_check(learner, cfg: RunConfig, notes=(), mode: str = "") -> CheckResult:
    """The three parts of the module docstring with a loaded learner (``learner.Learner``
    or ``process.LearnerProcess``); the learner's failures become the result's status."""
    from experiments.teaching.check.report import explanation

    t0 = time.perf_counter()
    init = run = None
    cfg = resolve(cfg)[0]    # sizes filled in from the data, for every report
    side = side_factory(learner)
    try:
        _refuse_update(cfg, learner)
        init = check_initial(cfg, learner)
        if not init.shape_transposed:   # a transposed-shape gradient cannot train
            run = run_experiment(cfg, side=side)
        result = _judged(learner.name, init, run)
    except LearnerError as err:
        result = failed(learner.name, err)
        result.initial = init if init is not None else getattr(err, "initial", None)
        said = result.message[:len(result.message) - len(result.where)]
        network = _network_hint(said, learner.convention, cfg)
        if network:   # it reads the parameters of another network: another assignment
            result.status, said = "wrong_assignment", said.rstrip() + network
        else:
            hint = _hint(said, learner.convention, cfg)
            said = said.rstrip() + hint if hint else said
        if result.status == "timeout":
            said += _progress(result.initial, side.made, cfg)
        result.message = said + result.where
        result.exit_code = EXIT_CODES[result.status]
    result.config = init.config if init is not None else cfg
    result.convention = learner.convention
    result.has_update = bool(learner.has_update)
    result.seconds = time.perf_counter() - t0
    result.notes, result.mode = list(notes), mode
    result.explanation = explanation(result)
    return result


def _progress(init: Initial | None, sides: list, cfg: RunConfig) -> str:
    """How far a check got before the time limit stopped it."""
    if init is None or not (init.table["call"] == "gradients").any():
        return " (stopped at the initial point: the first call of gradients() did not finish)"
    verdict = "differed" if init.differs else "agreed"
    if not sides:
        return f" (stopped after the initial point, which {verdict})"
    return (f" (the initial point {verdict}; it got through {sides[0].steps_done} of "
            f"{cfg.steps or 'the'} training steps)")


def failed(name: str, err: LearnerError) -> CheckResult:
    """The result of a learner that could not be checked to the end; its explanation is
    the message alone until ``run_check`` writes the whole text. A traceback becomes its
    last line and the learner's last frame: `` (at FILE, line N: CODE)``."""
    text = str(err)
    lines = text.splitlines() or [""]
    message = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    where = ""
    frames = list(re.finditer(r'^  File "(.+)", line (\d+)[^\n]*(?:\n    (\S[^\n]*))?', text,
                              flags=re.MULTILINE))
    if lines[0].startswith("Traceback") and frames:   # the learner's last frame
        file, line, code = frames[-1].groups()
        cell = re.fullmatch(r".*, (cell \d+)", file)
        code = f": {code.strip()}" if code and code.strip() else ""
        where = f" (at {cell.group(1) if cell else Path(file).name}, line {line}{code})"
        message += where
    return CheckResult(name, err.status, err.exit_code, message, where=where,
                       details=text if len(lines) > 1 else "", explanation=message)


def _hint(message: str, convention: str, cfg: RunConfig) -> str:
    """One line more for a failure whose usual cause the message alone does not say."""
    return (_convention_hint(message, convention, cfg) or _update_hint(message)
            or _labels_hint(message, cfg))


def _network_hint(message: str, convention: str, cfg: RunConfig) -> str:
    """A KeyError on a parameter name of this convention that another network has (biases
    on a config without, another depth): the file was written for another config."""
    m = re.match(r"KeyError: '(W\d+|b\d+|layers\.\d+\.(?:weight|bias))'$", message)
    if m is None or m.group(1).startswith("layers") != (convention == "torch"):
        return ""
    hint = Convention(convention, cfg.sizes, cfg.bias).network_hint(
        [m.group(1)], "reads", f"`{cfg.name}`")
    return f" ({hint[2].lower()}{hint[3:]})" if hint else ""


def _convention_hint(message: str, convention: str, cfg: RunConfig) -> str:
    """A KeyError on a parameter name of the other convention: say which one params is in."""
    m = re.match(r"KeyError: '(W\d+|b\d+|layers\.\d+\.(?:weight|bias))'$", message)
    if m is None or m.group(1).startswith("layers") == (convention == "torch"):
        return ""
    other = "torch" if convention == "W1b1" else "W1b1"
    return (f" (params is in the {convention} convention, and your code reads "
            f"{m.group(1)!r}, a name of the {other} convention: put CONVENTION = "
            f"\"{other}\" at the top of the file)")


def _update_hint(message: str) -> str:
    """update() returning None: it changed params in place and returned nothing."""
    if message.startswith("update(params, grads, lr) returned None"):
        return (" (return the new params: `return {name: params[name] - lr * grads[name] "
                "for name in params}`, or `return params` after changing it in place)")
    return ""


def _labels_hint(message: str, cfg: RunConfig) -> str:
    """cross_entropy code that took Y for one-hot rows (N, K) where it holds labels (N,)."""
    if cfg.loss != "cross_entropy" or not re.search(
            r"broadcast|too many indices|shape|IndexError", message):
        return ""
    return (f" (for cross_entropy Y holds integer class labels, shape (N,), not one-hot rows "
            f"(N, K): one-hot them with np.eye({cfg.sizes[-1]})[Y], or index P[np.arange(N), "
            f"Y])")


def _judged(name: str, init: Initial, run: RunResult | None) -> CheckResult:
    """Agree, differ or diverged, with the diagnosis of the first differing parameter.
    ``run`` is None only after a transposed-shape gradient, which differs at the initial
    point."""
    conv = init.convention
    keys = list(init.autograd)
    worst = _worst(init, run)
    if init.differs:
        table = init.table[init.table["call"] == init.call]
        differ = list(table.loc[table["verdict"] == "differ", "key"])
        findings, yours = init.findings, init.yours
    elif run.status == "diverged":
        message = run.message.replace("the manual side", "your side")
        return CheckResult(name, "diverged", 3, message, run=run, initial=init, **worst)
    else:
        rows = run.summary[run.summary["param"].isin(keys)]
        differ = list(rows.loc[rows["verdict"] == "differ", "param"])
        findings, yours = run.findings, {}
    if not differ:   # the initial point agreed, so the run is there
        message = (f"every parameter agrees with autograd at the initial point and over "
                   f"{run.steps_done} training steps (worst rel_err "
                   f"{worst['worst_rel_err']:.2g}, {worst['worst_ratio']:.2g} of the rounding "
                   f"tolerance)")
        if run.status == "interrupted":   # Ctrl-C: as handgrad run
            return CheckResult(name, "interrupted", 130, run.message, run=run, initial=init,
                               **worst)
        return CheckResult(name, "agree", 0, message, "agree", run=run, initial=init, **worst)
    first = diagnosis.first_param(differ, keys)
    kind = "update" if init.call == "update" else param_kinds(findings, keys)[first]
    near = near_miss.recognise(init, init.dtypes) if init.call == "gradients" else None
    if near is not None:   # no derivation mistake: its one sentence says all there is
        kind, sentences = near[0], [near[1]]
        rows = (init.table["call"] == init.call) & (init.table["verdict"] == "differ")
        init.table.loc[rows, "kind"] = kind                       # initial.csv says the same
    else:
        sentences = _sentences(init, findings, yours, first)
    return CheckResult(name, "differ", 1, sentences[0], kind, conv.name_of(first), run=run,
                       initial=init, sentences=sentences, **worst)


def _sentences(init: Initial, findings, yours, first: str) -> list[str]:
    """The diagnosis in the learner's terms, the finding about ``first`` first, then a
    recognised named mistake."""
    conv = init.convention
    keys = list(init.autograd)
    ordered = sorted((f for f in findings if f.kind not in ("agree",)),
                     key=lambda f: first not in f.params)
    out = [diagnosis.translate(f, conv, init.config, len(init.X), keys, yours)
           for f in ordered]
    if init.call == "gradients":   # a named mistake says more than the shape of the error
        named = mistakes.recognise(init.config, init.weights, init.X, init.Y, init.yours,
                                   init.autograd)
        if named is not None:
            out.insert(0, f"your gradients are exactly what backprop gives with {named}")
    return out or ["your gradients differ from autograd's"]


def _worst(init: Initial, run: RunResult | None) -> dict:
    t = init.table
    rel = [float(t["rel_err"].max())] if t["rel_err"].notna().any() else []
    ratio = [float((t["rel_err"] / t["rel_tol"]).max())] if rel else []
    if init.shape_transposed:   # the right numbers in the wrong places are not a small error
        rel.append(math.inf)
        ratio.append(math.inf)
    if run is not None and not run.summary.empty:
        row = run.summary[run.summary["param"] == "all"]
        rel += [float(row["rel_err"].iloc[0])]
        ratio += [float(row["worst_ratio"].iloc[0])]
    return {"worst_rel_err": float(np.nanmax(rel)) if rel else math.nan,
            "worst_ratio": float(np.nanmax(ratio)) if ratio else math.nan}


def check_function(gradients, config: str | RunConfig = "seed", *, update=None,
                   convention: str = "torch", overrides=(), steps: int | None = None,
                   isolated: bool = False, timeout: float = 60.0, memory_mb: int = 1024
                   ) -> CheckResult:
    """Check a learner's ``gradients(params, X, Y)`` (and ``update(params, grads, lr)``)
    function objects, in this process, on ``config`` (a named experiment, a TOML path or a
    RunConfig) with ``overrides`` (``"key=value"``) for ``steps`` training steps (default:
    the config's). Nothing is written. Bad input is a result too (status
    ``not_a_submission``, ``bad_output``..., exit_code 2); a bad config raises
    ``ConfigError``.

    In this process the function shares this process's state: a module-level cache or
    counter it keeps carries over from one test to the next, and nothing limits its time
    or memory. ``isolated=True`` checks the ``.py`` file the function was defined in
    instead, as ``check_file`` does (a fresh sandboxed process with ``timeout`` and
    ``memory_mb``; the file's own ``gradients``, ``update`` and ``CONVENTION``): a function
    defined in a notebook cell or the interpreter has no such file and raises
    ``ConfigError`` (pass the notebook to ``check_file``)."""
    if isolated:
        return check_file(module_file(gradients, update, convention), config,
                          overrides=overrides, steps=steps, timeout=timeout,
                          memory_mb=memory_mb)
    cfg = resolve_config(config, overrides, steps)
    name = getattr(gradients, "__name__", "gradients")
    try:
        learner = Learner(gradients, update, convention, name)
    except LearnerError as err:
        return failed(name, err)
    return run_check(learner, cfg)


def module_file(gradients, update=None, convention: str = "torch") -> Path:
    """The ``.py`` file that defines ``gradients`` (for ``check_function(isolated=True)``);
    ``ConfigError`` where there is none, or where the file would check something else."""
    import inspect

    name = getattr(gradients, "__name__", repr(gradients))
    try:
        source = inspect.getsourcefile(gradients)
    except TypeError:
        source = None
    path = Path(source) if source else None
    if path is None or path.suffix != ".py" or not path.is_file() \
            or path.parent.name.startswith("ipykernel_"):
        raise ConfigError(f"check_function(isolated=True): {name} was not defined in a .py "
                          f"file ({source or 'no source file'}: a notebook cell or the "
                          f"interpreter); pass the file or notebook to check_file(PATH)")
    if name != "gradients":
        raise ConfigError(f"check_function(isolated=True): {name} is not named gradients; "
                          f"the isolated check runs {path.name}'s own gradients(params, X, Y)")
    if update is not None and getattr(update, "__name__", "") != "update":
        raise ConfigError(f"check_function(isolated=True): {update.__name__} is not named "
                          f"update; the isolated check runs {path.name}'s own update()")
    if convention != "torch":
        raise ConfigError(f"check_function(isolated=True, convention={convention!r}): the "
                          f"isolated check reads CONVENTION from {path.name} itself; put "
                          f"CONVENTION = {convention!r} in the file and leave convention out")
    return path


def check_file(path: str | Path, config: str | RunConfig = "seed", *, overrides=(),
               steps: int | None = None, timeout: float = 60.0, memory_mb: int = 1024,
               out: str | Path | None = None, force: bool = False, plots: bool = True,
               helpers=None, follow: bool = True, definitions_only: bool = False,
               announce=None, early=None) -> CheckResult:
    """Check a learner's file in its own sandboxed process (``timeout`` seconds of its code
    in all, ``memory_mb`` of address space; ``helpers``: its own modules it may import,
    by default the other ``.py`` files of its folder — pass ``()`` where those are a
    classmate's); ``follow=False``: the file must not be a symbolic link. A notebook
    (``.ipynb``) runs its code cells, IPython's own lines left out; ``definitions_only``
    keeps imports, definitions and literal assignments (``boundary.notebook``).
    With ``out``, the check folder is written there (``report.write_check``) unless the
    input was bad, after ``announce(result)`` (the CLI prints the verdict there, before
    the reports and figures). A bad config, limits out of range (``process.check_limits``)
    or an existing ``out`` without ``force`` raise ``ConfigError`` before anything runs;
    the check folder of an earlier check of this same file (its marker names the file) is
    replaced without ``force``. ``early``: the learner's process as ``early.start_early``
    started it for these arguments, before torch was imported (used only if it matches)."""
    from experiments.output.rundir import check_out, made_from
    from experiments.teaching.boundary.process import LearnerProcess, check_limits
    from experiments.teaching.check.early import own_helpers
    from experiments.teaching.check.report import write_check

    cfg = resolve_config(config, overrides, steps)
    check_limits(timeout, memory_mb)
    source = str(Path(path).resolve())
    if out is not None:
        force = force or made_from(Path(out), "check", source)
        check_out(Path(out), force, "check", legacy=False)
    if helpers is None:
        helpers = own_helpers(path)
    t0 = time.perf_counter()
    try:
        learner = (early.open if early is not None else LearnerProcess)(
            path, timeout=timeout, memory_mb=memory_mb, helpers=helpers, follow=follow,
            definitions_only=definitions_only)
    except LearnerError as err:           # at load time: the file's own traceback too
        from experiments.teaching.check.report import explanation
        result = failed(Path(path).name, err)
        result.seconds, result.config = time.perf_counter() - t0, resolve(cfg)[0]
        result.explanation = explanation(result)
    else:
        try:
            result = run_check(learner, cfg, learner.notes, learner.mode)
            result.autograd_runs = learner.autograd_runs() or 0
        finally:
            output = learner.close()
        result.output, result.seconds = output, time.perf_counter() - t0
        result.sandbox_missing, result.sha256 = learner.sandbox_missing, learner.sha256
    if out is not None and result.exit_code != 2:
        if announce is not None:
            announce(result)
        write_check(result, Path(out), force=force, plots=plots, source=source)
    return result
