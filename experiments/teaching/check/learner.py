"""The learner's side of the process boundary: load a learner's file, call its functions,
vet what they return, and keep only the learner's own frames of a traceback.

A learner's file defines (and never needs to import handgrad)::

    CONVENTION = "W1b1"                  # optional: "torch" (the default) or "W1b1"
    def gradients(params, X, Y): ...     # -> {name: ∂E/∂param}, the keys and shapes of params
    def update(params, grads, lr): ...   # optional: -> the parameters after one SGD step

This module runs in two places. Run as a script it *is* the learner's process::

    python learner.py FD_IN FD_OUT MEMORY_MB CPU_SECONDS

it limits its own memory (RLIMIT_AS), CPU time, file size and core dumps first, then
answers the parent's messages on two pipes until the parent closes them
(``experiments.teaching.check.process`` is the parent's end). Imported, it serves the
Python API, which calls a function object in the caller's own process. It imports nothing
from handgrad, only the standard library and numpy, so the learner's process starts fast.

Messages are tuples ``(op, *args)``: ``("load", path)``, ``("bind", X, Y)``,
``("gradients", params, idx)``, ``("update", params, grads, lr)``. Every answer is one of
    ("ok", value)                 value vetted by ``vet_dict`` (a dict of numpy arrays)
    ("bad", message, is_output)   bad input (one line): not Python, no gradients(), a wrong
                                  signature, a missing import, a return value that is not a
                                  dict of arrays
    ("raised", traceback)         the learner's code raised: their frames only
"""

from __future__ import annotations

import inspect
import sys
import traceback
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

CONVENTIONS = ("torch", "W1b1")
SIGNATURES = {"gradients": ("params", "X", "Y"), "update": ("params", "grads", "lr")}
#: handgrad's own packages: their frames are left out of a learner's traceback
_OURS = tuple(str(Path(__file__).resolve().parents[i] / name) for i, name in
              ((2, ""), (3, "manual"), (3, "torch_impl")))
_PYTHON = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


class LearnerError(Exception):
    """Something the learner's code did; ``status`` and ``exit_code`` say what for
    ``handgrad check`` (exit codes: 2 bad input, 4 the learner's code failed, 5 timeout)."""

    status, exit_code = "error", 4


class BadLearner(LearnerError):
    """Bad input: the file cannot be used as it is (exit 2). ``output``: the file loaded but
    a call returned something that is not the expected dict (grades.csv's ``bad_output``)."""

    exit_code = 2

    def __init__(self, message: str, output: bool = False):
        super().__init__(" ".join(message.split()))   # one line, whatever the learner wrote
        self.output = output
        self.status = "bad_output" if output else "error"


class LearnerRaised(LearnerError):
    """The learner's code raised; the message is their traceback."""


class LearnerCrashed(LearnerError):
    """The learner's process died (a segfault, os._exit, a kill for memory)."""


class LearnerTimeout(LearnerError):
    """The learner's code ran past its time limit; its process was stopped."""

    status, exit_code = "timeout", 5


# -- tracebacks --------------------------------------------------------------------------

def _theirs(filename: str) -> bool:
    """A frame of the learner's code: neither handgrad's nor Python's installation."""
    f = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not f.startswith(_OURS) and not f.startswith(_PYTHON)


def learner_traceback(err: BaseException) -> str:
    """``err``'s traceback with the learner's frames only (all frames if none is theirs)."""
    frames = traceback.extract_tb(err.__traceback__)
    kept = [f for f in frames if _theirs(f.filename)] or frames[-1:]
    return "".join(["Traceback (most recent call last):\n", *traceback.format_list(kept),
                    *traceback.format_exception_only(type(err), err)]).rstrip("\n")


# -- loading -------------------------------------------------------------------------------

def _compile(path: Path):
    """The file's code object, or ``BadLearner`` naming the learner's line."""
    try:
        source = path.read_bytes().decode("utf-8")
        return compile(source, str(path), "exec")
    except UnicodeDecodeError:
        raise BadLearner(f"{path} is not Python: it is not UTF-8 text") from None
    except SyntaxError as err:
        if err.lineno is None:   # NUL bytes (Python 3.12+ says so with a SyntaxError)
            raise BadLearner(f"{path} is not Python ({err.msg})") from None
        line = (err.text or "").strip()
        raise BadLearner(f"{path}:{err.lineno}: {err.msg}" + (f": {line}" if line else "")
                         ) from None
    except ValueError as err:   # NUL bytes: a binary file
        raise BadLearner(f"{path} is not Python ({err})") from None


def load_file(path: str | Path) -> Learner:
    """Import a learner's file as a fresh module and take its functions from it."""
    path = Path(path)
    if not path.is_file():
        raise BadLearner(f"{path}: no such file")
    if path.suffix == ".ipynb":
        raise BadLearner(f"{path} is a notebook: export its code as a .py file (jupyter "
                         f"nbconvert --to script) or check the function from the notebook "
                         f"with experiments.teaching.check.check_function")
    if path.suffix != ".py":
        raise BadLearner(f"{path} is not a Python file: handgrad check takes a .py file")
    code = _compile(path)
    folder = str(path.resolve().parent)
    if folder not in sys.path:   # the learner's own helper modules import from its folder
        sys.path.insert(0, folder)
    module = types.ModuleType("learner")
    module.__file__ = str(path.resolve())
    sys.modules["learner"] = module   # what dataclasses or pickle inside the file look up
    try:
        exec(code, module.__dict__)
    except ImportError as err:
        line = traceback.extract_tb(err.__traceback__)[-1].lineno
        raise BadLearner(f"{path}:{line}: {type(err).__name__}: {err} (install it, or "
                         f"remove the import)") from None
    except (Exception, SystemExit) as err:
        raise LearnerRaised(learner_traceback(err)) from None
    return Learner(getattr(module, "gradients", None), getattr(module, "update", None),
                   getattr(module, "CONVENTION", "torch"), path.name)


def _check_function(fn, name: str, where: str) -> None:
    """``fn`` is a function that accepts ``SIGNATURES[name]`` positionally."""
    args = SIGNATURES[name]
    wanted = f"{name}({', '.join(args)})"
    if fn is None:
        raise BadLearner(f"{where} defines no function {wanted}")
    if not callable(fn):
        raise BadLearner(f"{where}: {name} is a {type(fn).__name__}, not a function {wanted}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):   # a builtin without a signature: try it
        return
    try:
        sig.bind(*args)
    except TypeError:
        raise BadLearner(f"{where}: {name}{sig} has the wrong signature; it must take "
                         f"{len(args)} arguments: {wanted}") from None


# -- return values --------------------------------------------------------------------------

def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def vet_dict(value, what: str) -> dict[str, np.ndarray]:
    """A learner's return value as ``{str: numeric numpy array}``, or ``BadLearner``.

    Arrays keep a float dtype (float32 stays float32); bools and integers become float64;
    torch tensors are detached to numpy. Keys and shapes are checked by the caller, which
    knows the network (``experiments.teaching.check.side.Convention``).
    """
    if not isinstance(value, Mapping):
        raise BadLearner(f"{what} returned {_describe(value)}; it must return a dict "
                         f"{{name: array}} with the keys of params", output=True)
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise BadLearner(f"{what} returned a dict with the key {k!r}; the keys are the "
                             f"parameter names of params", output=True)
        if hasattr(v, "detach") and hasattr(v, "cpu"):   # a torch tensor
            v = v.detach().cpu().numpy()
        try:
            a = np.asarray(v) if v is not None else None
        except (ValueError, TypeError):
            a = None
        if a is None or a.dtype.kind not in "biuf":
            raise BadLearner(f"{what}[{k!r}] is {_describe(v)}, not an array of numbers",
                             output=True)
        out[k] = a if a.dtype.kind == "f" else a.astype(np.float64)
    return out


# -- the learner -----------------------------------------------------------------------------

class Learner:
    """A learner's functions, called in this process: ``bind`` the data once, then
    ``gradients(params, idx)`` on its rows ``idx`` (None: all) and ``update``."""

    def __init__(self, gradients, update=None, convention: str = "torch",
                 name: str = "gradients"):
        _check_function(gradients, "gradients", name)
        if update is not None:
            _check_function(update, "update", name)
        if convention not in CONVENTIONS:
            raise BadLearner(f"{name}: CONVENTION = {convention!r}; use one of "
                             f"{list(CONVENTIONS)}")
        self.gradients_fn, self.update_fn = gradients, update
        self.convention, self.name = convention, name
        self.X = self.Y = None

    @property
    def has_update(self) -> bool:
        return self.update_fn is not None

    def bind(self, X, Y) -> None:
        self.X, self.Y = X, Y

    def _call(self, fn, what: str, *args) -> dict[str, np.ndarray]:
        try:
            out = fn(*args)
        except (Exception, SystemExit) as err:
            raise LearnerRaised(learner_traceback(err)) from None
        return vet_dict(out, what)

    def gradients(self, params: dict, idx) -> dict[str, np.ndarray]:
        # copies: a learner that scales X in place must not change the data for the next call
        X = self.X.copy() if idx is None else self.X[idx]
        Y = self.Y.copy() if idx is None else self.Y[idx]
        return self._call(self.gradients_fn, "gradients(params, X, Y)", params, X, Y)

    def update(self, params: dict, grads: dict, lr: float) -> dict[str, np.ndarray]:
        return self._call(self.update_fn, "update(params, grads, lr)", params, grads, lr)


# -- the learner's process -------------------------------------------------------------------

def _limit(memory_mb: int, cpu_seconds: int) -> None:
    """Resource limits of this process (soft = hard, so the learner cannot raise them)."""
    import resource

    memory = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:   # die with the parent (Linux): a learner stuck in a loop must not outlive handgrad
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


OUTPUT_LIMIT = 16 << 20   # bytes the learner may print (or write to files)


def _answer(learner: Learner | None, msg: tuple):
    """One reply; the parent (``process.LearnerProcess``) sends ``load`` first, and stops
    the process when loading fails."""
    op, *args = msg
    try:
        if op == "load":
            learner = load_file(args[0])
            return learner, ("ok", {"convention": learner.convention,
                                    "has_update": learner.has_update})
        return learner, ("ok", getattr(learner, op)(*args))   # bind, gradients, update
    except BadLearner as err:
        return learner, ("bad", str(err), err.output)
    except LearnerRaised as err:
        return learner, ("raised", str(err))


def serve(fd_in: int, fd_out: int) -> None:
    """Answer the parent's messages until it closes the pipe."""
    from multiprocessing.connection import Connection

    conn_in = Connection(fd_in, writable=False)
    conn_out = Connection(fd_out, readable=False)
    conn_out.send(("ready",))
    learner = None
    while True:
        try:
            msg = conn_in.recv()
        except EOFError:
            return
        learner, reply = _answer(learner, msg)
        conn_out.send(reply)


def main(argv: list[str]) -> None:
    fd_in, fd_out, memory_mb, cpu_seconds = (int(a) for a in argv)
    _limit(memory_mb, cpu_seconds)
    import faulthandler
    faulthandler.enable()   # a segfault prints the Python stack (the learner's line) first
    sys.path.pop(0)         # this script's folder: the learner's takes its place on load
    serve(fd_in, fd_out)


if __name__ == "__main__":
    main(sys.argv[1:])
