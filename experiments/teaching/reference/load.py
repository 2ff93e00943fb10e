"""Loading a teacher's reference file: plain Python that defines a model in torch.

    import numpy as np, torch

    LR, STEPS = 0.5, 20                  # plain SGD; BATCH_SIZE = 8 for mini-batches
    INTERMEDIATES = ["logits"]           # optional: intermediates a learner may return
    NAMES = {"W": "weights"}             # optional: the learner's names for some keys

    def params():                        # -> {name: tensor with requires_grad=True}
        g = torch.Generator().manual_seed(0)
        return {"W": torch.randn(3, 2, generator=g, dtype=torch.float64,
                                 requires_grad=True), ...}

    def data():                          # -> (X, Y): arrays with one sample per row
        ...

    def loss(params, X, Y):              # -> E (torch scalar), or (E, {name: tensor})
        logits = X @ params["W"]
        return F.cross_entropy(logits, Y), {"logits": logits}

The file is the teacher's code: it runs in handgrad's process. Each mistake in it is
``ReferenceError`` (a ``ConfigError``: one line, exit 2, nothing written): a name the
file must define and does not, a parameter without ``requires_grad``, data or
parameters that are not finite, a loss that is not a finite scalar, a parameter the loss
does not use, an intermediate it does not return, two names for one thing.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.core.reference import (
    DTYPES,
    Reference,
    ReferenceError,
    ReferenceSide,
    row_invariant,
)
from experiments.core.threads import limited_threads


def is_reference(spec) -> bool:
    """Whether check's or grade's NAME|CONFIG.toml argument names a reference file."""
    return str(spec).lower().endswith(".py")


def load_reference(path: str | Path, steps: int | None = None) -> Reference:
    """The Reference a file defines, vetted (module docstring); ``steps`` replaces STEPS."""
    with limited_threads(1):   # small tensors: a second thread only contends
        return _load(Path(path), steps)


def _load(path: Path, steps: int | None) -> Reference:
    if not path.is_file():
        raise ReferenceError(f"{path}: no such reference file (a .py file defining params, "
                             f"data, loss, LR and STEPS)")
    mod = _run(path)
    src = path.name

    def need(name: str, what: str):
        if not hasattr(mod, name):
            raise ReferenceError(f"{src} defines no {name}: a reference file defines {what}")
        return getattr(mod, name)

    make_params = need("params", "params() -> {name: tensor with requires_grad=True}")
    make_data = need("data", "data() -> (X, Y)")
    loss = need("loss", "loss(params, X, Y) -> a torch scalar")
    lr, n = need("LR", "LR, the learning rate"), need("STEPS", "STEPS, the training steps")
    for name, fn in (("params", make_params), ("data", make_data), ("loss", loss)):
        if not callable(fn):
            raise ReferenceError(f"{src}: {name} is {type(fn).__name__}; it must be a function")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and lr > 0):
        raise ReferenceError(f"{src}: LR = {lr!r}; it must be a positive number")
    steps = n if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ReferenceError(f"{src}: STEPS = {steps!r}; it must be an integer >= 1")
    dtype = getattr(mod, "DTYPE", "float64")
    if dtype not in DTYPES:
        raise ReferenceError(f"{src}: DTYPE = {dtype!r}; use one of {list(DTYPES)}")
    params = _params(_call(make_params, f"{src}: params()"), src, dtype)
    X, Y = _data(_call(make_data, f"{src}: data()"), src, dtype)
    batch = getattr(mod, "BATCH_SIZE", None)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch < 1):
        raise ReferenceError(f"{src}: BATCH_SIZE = {batch!r}; it must be an integer >= 1 "
                             f"(or None for the full batch)")
    batch = None if batch is None or batch >= len(X) else batch
    inter = getattr(mod, "INTERMEDIATES", None)
    names = getattr(mod, "NAMES", {})
    shown = path.parent.name if path.stem == "reference" else path.stem
    ref = Reference(getattr(mod, "NAME", shown), params, X, Y, _guarded(loss, src),
                    float(lr), steps, batch, [], {}, dtype, src)
    side = ReferenceSide(ref)
    ref.forward(side.tensors, side.X, side.Y, finite=True)       # a finite scalar
    out = ref.loss(side.tensors, side.X, side.Y)
    returned = out[1] if isinstance(out, tuple) and len(out) == 2 and isinstance(
        out[1], dict) else {}
    ref.intermediates = _intermediates(inter, list(returned), list(params), src)
    ref.names = _names(names, list(params) + ref.intermediates, src)
    _, grads, _ = side.gradients_at(None)                         # every parameter used
    bad = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
    if bad:
        raise ReferenceError(f"{src}: autograd's gradient of {bad[0]!r} is not finite at the "
                             f"initial weights (check the init and the data)")
    ref.row_invariant = row_invariant(ref)
    return ref


def _run(path: Path):
    """Execute the file as a module of its own (its folder importable while it loads)."""
    name = f"handgrad_reference_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as err:
        raise ReferenceError(f"{path.name}:{err.lineno}: {err.msg}") from None
    except Exception as err:
        raise ReferenceError(f"{path.name}: {_where(err, path)}{type(err).__name__}: "
                             f"{err}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return mod


def _where(err: BaseException, path: Path | None = None) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if path is None or Path(f.filename) == path] or frames[-1:]
    return f"line {own[-1].lineno}: " if own else ""


def _call(fn, what: str):
    try:
        return fn()
    except ReferenceError:
        raise
    except Exception as err:
        raise ReferenceError(f"{what} raised {type(err).__name__}: {err} "
                             f"({_where(err).rstrip(': ')})") from None


def _guarded(loss, src: str):
    """``loss`` with an exception of the teacher's code said in one line."""
    def call(params, X, Y):
        try:
            return loss(params, X, Y)
        except ReferenceError:
            raise
        except Exception as err:
            raise ReferenceError(f"{src}: loss(params, X, Y) raised {type(err).__name__}: "
                                 f"{err} ({_where(err).rstrip(': ')})") from None
    return call


def _params(value, src: str, dtype: str) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or not value:
        raise ReferenceError(f"{src}: params() returned {type(value).__name__}; it must "
                             f"return a non-empty dict {{name: tensor}}")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ReferenceError(f"{src}: params() has the key {k!r}; names are non-empty "
                                 f"strings")
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ReferenceError(f"{src}: params()[{k!r}] is {type(v).__name__}; it must be "
                                 f"a floating-point torch tensor")
        if not v.requires_grad:
            raise ReferenceError(f"{src}: params()[{k!r}] does not require grad: create it "
                                 f"with requires_grad=True (or call .requires_grad_())")
        a = v.detach().cpu().numpy().astype(dtype)
        if not np.all(np.isfinite(a)):
            raise ReferenceError(f"{src}: params()[{k!r}] holds NaN or inf")
        out[k] = a
    return out


def _data(value, src: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ReferenceError(f"{src}: data() must return a pair (X, Y)")
    arrays = []
    for what, v in zip("XY", value, strict=True):
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        a = np.asarray(v)
        if a.dtype.kind not in "biuf" or a.ndim == 0:
            raise ReferenceError(f"{src}: data()'s {what} is not an array of numbers with one "
                                 f"sample per row")
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            if not np.all(np.isfinite(a)):
                raise ReferenceError(f"{src}: data()'s {what} holds NaN or inf in "
                                     f"{int(np.sum(~np.isfinite(a)))} entries")
        else:
            a = a.astype(np.int64)
        arrays.append(np.ascontiguousarray(a))
    X, Y = arrays
    if len(X) != len(Y):
        raise ReferenceError(f"{src}: data()'s X has {len(X)} rows and Y {len(Y)}; one "
                             f"sample per row in both")
    return X, Y


def _intermediates(listed, returned: list[str], params: list[str], src: str) -> list[str]:
    names = returned if listed is None else listed
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ReferenceError(f"{src}: INTERMEDIATES must be a list of names")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ReferenceError(f"{src}: INTERMEDIATES names {twice!r} twice")
    clash = [n for n in names if n in params]
    if clash:
        raise ReferenceError(f"{src}: {clash[0]!r} is both a parameter and an intermediate: "
                             f"give the intermediate another name")
    missing = [n for n in names if n not in returned]
    if missing:
        raise ReferenceError(f"{src}: INTERMEDIATES names {missing[0]!r}, which "
                             f"loss(params, X, Y) does not return (it returns {returned})")
    return list(names)


def _names(names, known: list[str], src: str) -> dict[str, str]:
    if not isinstance(names, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in names.items()):
        raise ReferenceError(f"{src}: NAMES must be a dict {{reference name: learner's name}}")
    unknown = [k for k in names if k not in known]
    if unknown:
        raise ReferenceError(f"{src}: NAMES renames {unknown[0]!r}, which is neither a "
                             f"parameter nor an intermediate ({', '.join(known)})")
    shown = [names.get(k, k) for k in known]
    twice = next((n for n in shown if shown.count(n) > 1), None)
    if twice is not None:
        raise ReferenceError(f"{src}: NAMES gives two things the name {twice!r}: each "
                             f"parameter and intermediate needs a name of its own")
    return dict(names)


@dataclass(frozen=True)
class ReferenceFile:
    """A reference file as grading passes it around: its path, the steps and the SHA-256
    of its bytes, picklable (a grading worker loads it once: ``load``). ``summary`` is
    what grades.md and settings.json say of it; ``--resume`` compares ``to_dict``."""

    path: str
    steps: int
    sha256: str
    summary: str

    @classmethod
    def vetted(cls, path, steps: int | None = None) -> ReferenceFile:
        """Load and vet the file once, here: a broken reference fails before any grading."""
        ref = load_reference(path, steps)
        data = Path(path).read_bytes()
        shapes = ", ".join(f"{ref.learner_name(k)} {tuple(v.shape)}"
                           for k, v in ref.params.items())
        summary = (f"reference `{ref.name}` ({Path(path).name}: {shapes}; N = {ref.N}, "
                   f"lr {ref.lr:g}, {ref.dtype})")
        return cls(str(Path(path).resolve()), ref.steps, hashlib.sha256(data).hexdigest(),
                   summary)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def load(self) -> Reference:
        return _cached(self.path, self.steps, self.sha256)

    def to_dict(self) -> dict:
        return {"reference": self.path, "sha256": self.sha256, "steps": self.steps}


@functools.lru_cache(maxsize=4)
def _cached(path: str, steps: int, sha256: str) -> Reference:
    return load_reference(path, steps)
