"""Run configuration: one frozen dataclass, named experiments as TOML, ``--set`` overrides.

A config is validated when it is constructed; every error is a ``ConfigError`` whose
message names the key, the bad value, where it came from and what would be accepted.
Checks that need the data (batch larger than the data set, sizes that do not fit it)
happen when the runner loads the data, with the same error type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import tomllib
from dataclasses import dataclass, fields
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import manual
import manual.network

ACTIVATIONS = tuple(manual.ACTIVATIONS)   # the shared vocabulary, from the contract
LOSSES = tuple(manual.LOSSES)
DTYPES = manual.network.DTYPES
MODES = ("free", "synced")
BACKENDS = ("numpy", "torch")
TARGET_KINDS = ("auto", "class", "value")
MAX_LAYERS = 64              # deeper nets teach nothing more, and one figure panel per
                             # parameter would not fit in memory (1000 layers: about 23 GB)
MAX_TOML_BYTES = 1_000_000   # a config is a few hundred bytes
#: values in messages: deep or long ones cut, so a message stays one readable line
_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxstring, _SHOW.maxother = 3, 8, 60, 60
FLOAT32_MAX = 3.4028234663852886e38   # numpy.finfo(numpy.float32).max


class ConfigError(ValueError):
    """A config that cannot run: the message says which key, what is wrong, what to do."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one lockstep run needs. ``""`` / ``0`` mean "derive it" where noted."""

    name: str = "custom"             # label used in reports and the default output folder
    description: str = ""
    # -- data
    dataset: str = "seed"            # see `handgrad list`; csv:PATH for your own file
    target: str = ""                 # csv target column ("" = the last column)
    target_kind: str = "auto"        # csv target: class, value, or auto (value for half_sse
    #                                  and mse, class for bce and cross_entropy)
    standardize: bool = False        # features to zero mean, unit variance
    # -- network (the shared spec)
    sizes: tuple[int, ...] = ()      # full widths incl. inputs/outputs; () = from hidden + data
    hidden: tuple[int, ...] = (4,)   # hidden widths, used when sizes is ()
    activation: str = "sigmoid"
    output_activation: str = ""      # "" = same as activation
    bias: bool | str = True          # true, false or "frozen"
    loss: str = "half_sse"
    dtype: str = "float64"
    device: str = "cpu"              # cpu, cuda, cuda:N (torch side; manual too with backend torch)
    manual_backend: str = "numpy"    # numpy, or torch: the same hand code on torch tensors
    init: str = "uniform"            # uniform, legacy-rand, worked-2-2-2, or a .npz/.json path
    # -- optimiser (torch.optim.SGD's arguments, implemented by hand on the manual side)
    lr: float = 0.1
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    # -- schedule
    batch_size: int | str = "full"   # "full" or a number of examples per step
    epochs: int = 1
    steps: int = 0                   # > 0: stop after this many updates instead
    shuffle: bool = True             # reshuffle each epoch (mini-batches only)
    seed: int = 0
    # -- what to record
    mode: str = "synced"             # synced: manual reset to torch's weights after each step,
    #                                  so the verdict judges the gradient code; free: each
    #                                  side its own weights (rounding drift accumulates)
    fd_every: int = 0                # finite-difference witness every k steps (0 = off)
    log_every: int = 1               # record metrics every k steps (first and last always)
    out: str = ""                    # run directory ("" = runs/NAME)

    def __post_init__(self):
        for f in fields(self):   # the same type checks as TOML files and --set
            object.__setattr__(self, f.name,
                               _coerce(f.name, getattr(self, f.name), "RunConfig(...)"))
        errors = [*_choice_errors(self), *_number_errors(self)]
        if errors:
            raise ConfigError(errors[0])

    @property
    def resolved_output_activation(self) -> str:
        return self.output_activation or self.activation

    def spec(self, **changes) -> dict[str, Any]:
        """The network spec both MLPs take after ``sizes`` (``manual.MLP(sizes, **spec)``);
        ``changes`` override entries, e.g. ``spec(dtype="float64")``."""
        return {"activation": self.activation,
                "output_activation": self.resolved_output_activation,
                "bias": self.bias, "loss": self.loss, "dtype": self.dtype, **changes}

    @property
    def sgd(self) -> dict[str, Any]:
        """torch.optim.SGD's arguments (and manual.SGD's: the same names)."""
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}

    def to_dict(self) -> dict[str, Any]:
        """Every field, defaults spelled out, TOML-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}


def _bad(c: RunConfig, key: str, msg: str) -> str:
    value = getattr(c, key)   # tuples shown as the TOML lists the user wrote
    return f"{key} = {list(value) if isinstance(value, tuple) else value!r}: {msg}"


def _choice_errors(c: RunConfig):
    """The keys that name a choice, and the network's shape."""
    bad = partial(_bad, c)
    if c.activation not in ACTIVATIONS:
        yield bad("activation", f"unknown activation; choose one of {list(ACTIVATIONS)}")
    if c.output_activation and c.output_activation not in ACTIVATIONS:
        yield bad("output_activation",
                  f"unknown activation; choose one of {list(ACTIVATIONS)} (or \"\" = activation)")
    if c.loss not in LOSSES:
        yield bad("loss", f"unknown loss; choose one of {list(LOSSES)}")
    if c.dtype not in DTYPES:
        yield bad("dtype", f"unknown dtype; choose one of {list(DTYPES)}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", c.device):
        yield bad("device", "choose cpu, cuda or cuda:N")
    if c.manual_backend not in BACKENDS:
        yield bad("manual_backend", f"choose one of {list(BACKENDS)}")
    if c.mode not in MODES:
        yield bad("mode", f"choose one of {list(MODES)}")
    if not (c.bias is True or c.bias is False or c.bias == "frozen"):
        yield bad("bias", "choose true, false or \"frozen\"")
    if c.loss == "bce" and c.resolved_output_activation != "sigmoid":
        yield bad("loss", "bce needs outputs in [0, 1]: set output_activation = \"sigmoid\"")
    if c.sizes and (len(c.sizes) < 2 or min(c.sizes) < 1):
        yield bad("sizes", "needs at least 2 widths, each >= 1, e.g. [3, 4, 1]")
    if c.hidden and min(c.hidden) < 1:
        yield bad("hidden", "every hidden width must be >= 1 (use [] for no hidden layer)")
    for key in ("sizes", "hidden"):
        if len(getattr(c, key)) > MAX_LAYERS + 1:
            yield (f"{key} has {len(getattr(c, key))} entries: handgrad trains at most "
                   f"{MAX_LAYERS} layers; use fewer")
    if c.target_kind not in TARGET_KINDS:
        yield bad("target_kind", f"choose one of {list(TARGET_KINDS)}")


def _number_errors(c: RunConfig):
    """torch.optim.SGD's arguments and the schedule: the ranges torch and the loop accept."""
    bad = partial(_bad, c)
    for key in ("lr", "momentum", "dampening", "weight_decay"):
        if not math.isfinite(getattr(c, key)):
            yield bad(key, "must be a finite number")
    if c.dtype == "float32":   # torch.optim.SGD refuses scalars it cannot hold in float32
        for key in ("lr", "weight_decay"):
            if abs(getattr(c, key)) > FLOAT32_MAX:
                yield bad(key, f"beyond float32's range (max {FLOAT32_MAX:.4g}), which a "
                               f"float32 run needs; use a smaller value or dtype = \"float64\"")
    if not c.lr > 0:
        yield bad("lr", "the learning rate must be > 0")
    if c.momentum < 0:
        yield bad("momentum", "must be >= 0")
    if not 0 <= c.dampening <= 1:
        yield bad("dampening", "must be in [0, 1]")
    if c.weight_decay < 0:
        yield bad("weight_decay", "must be >= 0")
    if c.nesterov and (c.momentum <= 0 or c.dampening != 0):
        yield bad("nesterov", "Nesterov needs momentum > 0 and dampening = 0 (as torch.optim.SGD)")
    if c.batch_size != "full" and (isinstance(c.batch_size, str) or c.batch_size < 1):
        yield bad("batch_size", "use \"full\" or a number of examples >= 1")
    if c.epochs < 1:
        yield bad("epochs", "must be >= 1")
    if c.steps < 0:
        yield bad("steps", "must be >= 0 (0 = run the given epochs)")
    if c.fd_every < 0:
        yield bad("fd_every", "must be >= 0 (0 = off)")
    if c.log_every < 1:
        yield bad("log_every", "must be >= 1")
    if c.seed < 0:
        yield bad("seed", "must be >= 0")
    for key in ("epochs", "steps", "fd_every", "log_every"):   # step counts stay in int64
        if getattr(c, key) > MAX_COUNT:
            yield bad(key, f"must be at most {MAX_COUNT:.0e} (a trillion steps take years)")
    if c.seed >= 2**63:
        yield bad("seed", "must be < 2**63 (numpy's and torch's seeds are 64-bit)")


# -- typing of values from TOML and --set --------------------------------------------

MAX_COUNT = 10**12


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check ``value`` against the field's type; return it in canonical form."""
    kind = FIELD_TYPES[key]

    def fail(expected):
        return ConfigError(f"{key} = {_SHOW.repr(value)} ({where}): expected {expected}, "
                           f"got {type(value).__name__}")

    if kind == "str":
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if kind == "tuple[int, ...]":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in value
        ):
            raise fail("a list of integers like [4, 3]")
        return tuple(value)
    if kind == "bool | str":
        if isinstance(value, bool) or value == "frozen":
            return value
        raise fail('true, false or "frozen"')
    if kind == "int | str":
        if value == "full" or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise fail('"full" or an integer')
    raise AssertionError(f"untyped field {key}: {kind}")


def _unknown_key(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELD_TYPES, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(FIELD_TYPES)}"
    return ConfigError(f"unknown config key {key!r} ({where}){hint}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with value read as TOML (``lr=0.5``, ``sizes=[2,2,2]``, ``bias=false``)
    or, failing that, as a bare string (``dataset=iris``)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. --set lr=0.5")
    if key not in FIELD_TYPES:
        raise _unknown_key(key, f"--set {text}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise ConfigError(f"--set {key}=...: the value is nested too deeply; a config value "
                          f"is a number, a string or a flat list") from None
    except ValueError as err:   # Python's 4300-digit limit on integer conversion
        raise ConfigError(f"--set {key}=...: the number cannot be read "
                          f"({_first_clause(err)}); a config's numbers are far smaller"
                          ) from None
    if FIELD_TYPES[key] == "str" and not isinstance(value, str):
        value = raw   # text keys take the text as typed: --set target=2020
    return key, _coerce(key, value, f"--set {text}")


# -- named experiments and files --------------------------------------------------------

def named_experiments() -> dict[str, Path]:
    """Name -> TOML file for every experiment shipped in ``experiments/configs``."""
    folder = resources.files("experiments") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".toml")}


def file_problem(path: Path, limit: int) -> str | None:
    """Why ``path`` cannot be read as an input file, or None: missing, a folder, not a
    regular file (a FIFO or a device such as /dev/zero would never end), or over
    ``limit`` bytes."""
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a directory, not a file"
    if not path.is_file():
        return "is not a regular file (a FIFO, device or socket)"
    if path.stat().st_size > limit:
        return f"is {path.stat().st_size:,} bytes, over the {limit:,}-byte limit"
    return None


def read_toml(path: Path) -> dict[str, Any]:
    problem = file_problem(path, MAX_TOML_BYTES)
    if problem:
        raise ConfigError(f"config file {path} {problem}; give a named experiment "
                          f"(see `handgrad list`) or a path to a .toml file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to be a handgrad config; "
                          f"a config holds numbers, strings and flat lists") from None
    except ValueError as err:   # Python's 4300-digit limit on integer conversion
        raise ConfigError(f"{path}: a number in it cannot be read ({_first_clause(err)}); "
                          f"a config's numbers are far smaller") from None


def _first_clause(err: Exception) -> str:
    return str(err).split(";")[0]


def load_config(source: str, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A ``RunConfig`` from a named experiment or a TOML path, then ``key=value`` overrides."""
    named = named_experiments()
    if source in named:
        path, data = named[source], read_toml(named[source])
        data.setdefault("name", source)
    elif source.endswith(".toml") or Path(source).exists():
        path = Path(source)
        data = read_toml(path)
        data.setdefault("name", path.stem)
    else:
        close = difflib.get_close_matches(source, named, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown experiment {source!r}: {hint}see `handgrad list` for the "
                          f"named experiments, or give a path to a .toml file")
    values = {}
    for key, value in data.items():
        if key not in FIELD_TYPES:
            raise _unknown_key(key, f"in {path}")
        values[key] = _coerce(key, value, f"in {path}")
    for text in overrides:
        key, value = parse_override(text)
        values[key] = value
    try:
        return RunConfig(**values)
    except ConfigError as err:
        raise ConfigError(f"{err} (from {path}{' with --set' if overrides else ''})") from None


def replace(cfg: RunConfig, **changes) -> RunConfig:
    """A copy with ``changes``, validated again."""
    return dataclasses.replace(cfg, **changes)
