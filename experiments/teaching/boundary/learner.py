"""The learner's side of the process boundary: load a learner's file, call its functions,
vet what they return, and keep only the learner's own frames of a traceback.

A learner's file defines (and never needs to import handgrad)::

    CONVENTION = "W1b1"                  # optional: "torch" (the default) or "W1b1"
    def gradients(params, X, Y): ...     # -> {name: ∂E/∂param}, the keys and shapes of params
    def update(params, grads, lr): ...   # optional: -> the parameters after one SGD step

This module runs in two places. Run as ``python -I -m experiments.teaching.boundary.learner
FD_IN FD_OUT MEMORY_MB CPU_SECONDS`` it *is* the learner's process: in its working folder
(a fresh copy of the submission and its own helpers, ``process.LearnerProcess``), it limits
its own memory (RLIMIT_AS), CPU time, file size and core dumps, closes its sandbox
(``sandbox.confine``), then answers the parent's messages on two pipes until the parent
closes them. Imported, it serves the Python API, which calls a function object in the
caller's own process. It imports nothing of handgrad's but ``wire`` and ``sandbox``, only
the standard library and numpy, so the learner's process starts fast.

Messages are ``wire`` frames (JSON and raw arrays, never pickle), lists ``[op, *args]``:
``["load", {"file": NAME, "name": SHOWN}]``, ``["bind", X, Y]``,
``["gradients", params, idx]``, ``["update", params, grads, lr]``, ``["autograd"]`` (how
many backward passes torch's autograd ran in the process: ``autograd_watch``). The process
first sends
``["ready", {"missing": [...]}]`` (the sandbox layers it could not apply), then one answer
per message:
    ["ok", value]                 value vetted by ``vet_dict`` (a dict of numpy arrays)
    ["bad", message, status]      bad input (one line), its status (``BAD_STATUSES``): not
                                  Python, no gradients(), a wrong signature, a missing
                                  import, a return value that is not a dict of arrays
    ["raised", traceback]         the learner's code raised: their frames only
Texts are capped at ``TEXT_LIMIT`` characters (a 50 MiB exception message arrives cut).
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
import sys
import traceback
import types
from collections.abc import Mapping
from pathlib import Path

import numpy as np

if __name__ == "__main__":   # the learner's process: import this very checkout's modules
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from experiments.teaching.boundary import autograd_watch, sandbox, wire

CONVENTIONS = ("torch", "W1b1")
SIGNATURES = {"gradients": ("params", "X", "Y"), "update": ("params", "grads", "lr")}
#: handgrad's own packages: their frames are left out of a learner's traceback
_OURS = tuple(str(Path(__file__).resolve().parents[i] / name) for i, name in
              ((2, ""), (3, "manual"), (3, "torch_impl")))
_PYTHON = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


#: each status a check can end in, and ``handgrad check``'s exit code for it: 2 the file
#: cannot be checked as it is (nothing written), 4 its code failed in a call or its process
#: died, 5 it ran past --timeout
EXIT_CODES = {"agree": 0, "differ": 1, "not_a_submission": 2, "wrong_assignment": 2,
              "import_error": 2, "bad_output": 2, "diverged": 3, "crashed": 4,
              "output_limit": 4, "timeout": 5, "interrupted": 130}
#: the statuses a ``["bad", ...]`` answer of the learner's process may carry
BAD_STATUSES = ("not_a_submission", "wrong_assignment", "bad_output", "import_error")


class LearnerError(Exception):
    """Something the learner's code did; ``status`` says what (``EXIT_CODES``), and
    ``exit_code`` what ``handgrad check`` returns for it."""

    status = "crashed"

    def __init__(self, message: str = "", status: str | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


class BadLearner(LearnerError):
    """The file cannot be checked as it is (exit 2): ``not_a_submission`` (not Python, no
    ``gradients``), or, with ``output``, ``bad_output`` (a call returned something that is not
    the expected dict); ``status`` names another (``import_error``, ``wrong_assignment``)."""

    def __init__(self, message: str, output: bool = False, status: str | None = None):
        super().__init__(" ".join(message.split()),   # one line, whatever the learner wrote
                         status or ("bad_output" if output else "not_a_submission"))
        self.output = output


class LearnerRaised(LearnerError):
    """The learner's code raised; the message is their traceback (``import_error`` while
    the file loads, ``crashed`` in a call, ``output_limit`` when a write met the limit)."""


class LearnerCrashed(LearnerError):
    """The learner's process died (a segfault, os._exit, a kill for memory), or was stopped
    for its output (``output_limit``)."""


class LearnerTimeout(LearnerError):
    """The learner's code ran past its time limit; its process was stopped."""

    status = "timeout"


# -- tracebacks --------------------------------------------------------------------------

def _theirs(filename: str) -> bool:
    """A frame of the learner's code: neither handgrad's nor Python's installation."""
    f = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not f.startswith(_OURS) and not f.startswith(_PYTHON)


TEXT_LIMIT = 8 << 10      # characters of one message or traceback that cross
_LINE_LIMIT = 500         # characters of one line of it


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def cap_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters: each line to ``_LINE_LIMIT``, then the
    last lines kept (a traceback's end says what was raised); the cut is said. Control
    characters (a terminal's escape sequences, a carriage return) are shown escaped."""
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    if len(text) <= limit and all(len(line) <= _LINE_LIMIT for line in text.split("\n")):
        return text
    lines = [line if len(line) <= _LINE_LIMIT else
             f"{line[:_LINE_LIMIT]} [... {len(line) - _LINE_LIMIT} characters cut]"
             for line in text.split("\n")]
    kept, size = [], 0
    for line in reversed(lines):
        if size + len(line) + 1 > limit - 80:
            kept.append(f"[... {len(lines) - len(kept)} earlier lines cut: "
                        f"messages are capped at {limit} characters]")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))


def learner_traceback(err: BaseException) -> str:
    """``err``'s traceback with the learner's frames only (all frames if none is theirs),
    capped at ``TEXT_LIMIT`` characters."""
    frames = traceback.extract_tb(err.__traceback__)
    kept = [f for f in frames if _theirs(f.filename)] or frames[-1:]
    try:
        last = traceback.format_exception_only(type(err), err)
    except Exception:   # a learner's exception whose __str__ raises
        last = [f"{type(err).__name__}: <its message could not be read>\n"]
    return cap_text("".join(["Traceback (most recent call last):\n",
                             *traceback.format_list(kept), *last]).rstrip("\n"))


# -- loading -------------------------------------------------------------------------------

def source_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a learner's file (one line), or None."""
    if not path.is_file():
        return f"{path}: no such file"
    if path.suffix.lower() not in (".py", ".ipynb"):
        return f"{path} is not a Python file: handgrad check takes a .py or .ipynb file"
    return None


def _compile(source: bytes | str, shown: str):
    """The code object of a learner's file (or notebook cell), or ``BadLearner`` naming the
    learner's line. Its lines are registered under ``shown`` so that a traceback quotes
    them."""
    name = Path(shown).name   # the learner's own name for it, never the teacher's path
    try:
        text = source.decode("utf-8-sig") if isinstance(source, bytes) else source
        code = compile(text, shown, "exec", dont_inherit=True)
    except UnicodeDecodeError:
        raise BadLearner(f"{name} is not Python: it is not UTF-8 text") from None
    except SyntaxError as err:
        if err.lineno is None:   # NUL bytes (Python 3.12+ says so with a SyntaxError)
            raise BadLearner(f"{name} is not Python ({err.msg})") from None
        line = (err.text or "").strip()
        raise BadLearner(f"{name}:{err.lineno}: {err.msg}" + (f": {line}" if line else ""),
                         status="import_error") from None
    except ValueError as err:   # NUL bytes: a binary file
        raise BadLearner(f"{name} is not Python ({err})") from None
    linecache.cache[shown] = (len(text), None, text.splitlines(True), shown)
    return code


def load_file(path: str | Path, shown: str | None = None) -> Learner:
    """Import a learner's file as a fresh module and take its functions from it; its folder
    goes on ``sys.path`` for its helper modules. ``shown``: its name in messages."""
    path = Path(path)
    shown = shown or str(path)
    problem = source_problem(path)
    if problem is not None:
        raise BadLearner(problem.replace(str(path), shown, 1))
    folder = str(path.resolve().parent)
    if folder not in sys.path:   # the learner's own helper modules import from its folder
        sys.path.insert(0, folder)
    if path.suffix.lower() == ".ipynb":
        from experiments.teaching.boundary.notebook import notebook_cells
        try:
            cells, _ = notebook_cells(path.read_bytes().decode("utf-8-sig"), shown)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadLearner(str(err)) from None
        return load_cells(cells, shown, str(path.resolve()))
    return load_cells([(shown, path.read_bytes())], shown, str(path.resolve()))


def load_cells(cells, shown: str, file: str | None = None) -> Learner:
    """Run ``cells`` — ``(label, source)`` pairs: one file's source, or a notebook's code
    cells (``notebook.notebook_cells``) — in order as one fresh module, and take the
    learner's functions from it; an error names the cell's label and line."""
    module = types.ModuleType("learner")
    module.__file__ = file or shown
    if len(cells) > 1 or (cells and cells[0][0] != shown):   # a notebook: IPython's display
        module.__dict__["display"] = print
    sys.modules["learner"] = module   # what dataclasses or pickle inside the file look up
    for label, source in cells:
        code = _compile(source, label)
        try:
            exec(code, module.__dict__)
        except ImportError as err:
            line = traceback.extract_tb(err.__traceback__)[-1].lineno
            raise BadLearner(cap_text(f"{Path(label).name}:{line}: {type(err).__name__}: {err} "
                                      f"(install it, or remove the import)"),
                             status="import_error") from None
        except (Exception, SystemExit) as err:
            raise LearnerRaised(learner_traceback(err), "import_error") from None
    return Learner(getattr(module, "gradients", None), getattr(module, "update", None),
                   getattr(module, "CONVENTION", "torch"), Path(shown).name)


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
                         f"{len(args)} arguments: {wanted}", output=True) from None


# -- return values --------------------------------------------------------------------------

def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


MAX_KEYS = 10_000   # keys of a returned dict: a network has far fewer parameters


def vet_dict(value, what: str) -> dict[str, np.ndarray]:
    """A learner's return value as ``{str: numeric numpy array}``, or ``BadLearner``.

    Arrays keep a float dtype (float32 stays float32); bools and integers become float64;
    torch tensors are detached to numpy. Keys and shapes are checked by the caller, which
    knows the network (``experiments.teaching.check.side.Convention``).
    """
    if not isinstance(value, Mapping):
        raise BadLearner(f"{what} returned {_describe(value)}; it must return a dict "
                         f"{{name: array}} with the keys of params", output=True)
    if len(value) > MAX_KEYS:
        raise BadLearner(f"{what} returned a dict with {len(value)} keys; it must hold the "
                         f"keys of params", output=True)
    out = {}
    for k, v in value.items():
        if type(k) is not str:   # exactly str: a subclass could carry behaviour of its own
            raise BadLearner(f"{what} returned a dict with the key {_safe_repr(k)} of type "
                             f"{type(k).__name__}; the keys are the parameter names of "
                             f"params (plain str)", output=True)
        if hasattr(v, "detach") and hasattr(v, "cpu"):   # a torch tensor
            v = v.detach().cpu().numpy()
        try:
            a = np.asarray(v) if v is not None else None
        except (ValueError, TypeError):
            a = None
        if a is None or a.dtype.kind not in "biuf" or a.dtype.names is not None:
            raise BadLearner(f"{what}[{k[:80]!r}] is {_describe(v)}, not an array of "
                             f"numbers", output=True)
        # plain float16/32/64 cross as they are (a float32 answer stays float32); other
        # numbers (bool, int, longdouble, a dtype with metadata) as float64
        if a.dtype.str not in ("<f2", "<f4", "<f8") or a.dtype.metadata:
            a = a.astype(np.float64)
        out[k] = a
    return out


def _safe_repr(value) -> str:
    try:
        return cap_text(repr(value), 80)
    except Exception:
        return "<unprintable>"


# -- the learner -----------------------------------------------------------------------------

class Learner:
    """A learner's functions, called in this process: ``bind`` the data once, then
    ``gradients(params, idx)`` on its rows ``idx`` (None: all) and ``update``."""

    def __init__(self, gradients, update=None, convention: str = "torch",
                 name: str = "gradients"):
        _check_function(gradients, "gradients", name)
        if update is not None:
            _check_function(update, "update", name)
        if type(convention) is not str or convention not in CONVENTIONS:
            raise BadLearner(f"{name}: CONVENTION = {_safe_repr(convention)}; use one of "
                             f"{list(CONVENTIONS)} (a plain string)", output=True)
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

OUTPUT_LIMIT = 16 << 20   # bytes the learner may print, or write to any one file


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    """Resource limits of this process (soft = hard, so the learner cannot raise them)."""
    import resource

    memory = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    try:   # die with the parent (Linux): a learner stuck in a loop must not outlive handgrad
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _answer(learner: Learner | None, msg):
    """One reply; the parent (``process.LearnerProcess``) sends ``load`` first, and stops
    the process when loading fails."""
    op, *args = msg
    try:
        if op == "load":
            learner = load_cells([tuple(c) for c in args[0]["cells"]], args[0]["name"])
            return learner, ["ok", {"convention": learner.convention,
                                    "has_update": learner.has_update}]
        if op == "bind":
            return learner, ["ok", learner.bind(*args)]
        if op in ("gradients", "update"):
            return learner, ["ok", getattr(learner, op)(*args)]
        if op == "autograd":
            return learner, ["ok", autograd_watch.runs()]
        raise BadLearner(f"unknown request {op!r}")
    except BadLearner as err:
        return learner, ["bad", cap_text(str(err)), err.status]
    except LearnerRaised as err:
        return learner, ["raised", cap_text(str(err))]


def serve(fd_in: int, fd_out: int, missing: list[str]) -> None:
    """Answer the parent's messages until it closes the pipe."""
    reader = wire.Reader(fd_in)
    wire.write_all(fd_out, wire.encode(["ready", {"missing": missing}]))
    learner = None
    while True:
        try:   # the parent's data: arrays as large as the data set, a notebook's cells
            msg = reader.read(max_payload=1 << 40, max_header=1 << 30)
        except wire.WireClosed:
            return
        learner, reply = _answer(learner, msg)
        try:
            frame = wire.encode(reply)
        except (TypeError, ValueError, MemoryError) as err:   # cannot cross: say so
            frame = wire.encode(["bad", f"the answer cannot be sent: {err}", True])
        wire.write_all(fd_out, frame)


def main(argv: list[str]) -> None:
    fd_in, fd_out, memory_mb, cpu_seconds = (int(a) for a in argv)
    _limit(memory_mb, cpu_seconds)
    import faulthandler
    faulthandler.enable()   # a segfault prints the Python stack (the learner's line) first
    work = str(Path.cwd())
    python = tuple(sandbox.python_paths())
    # imports: the working folder (the submission and its helpers), then the installation;
    # nothing of the teacher's (an editable install's source folder, the current folder)
    sys.path[:] = [work] + [p for p in sys.path
                            if p and sandbox.inside(os.path.realpath(p), python)]
    missing = sandbox.confine(work)
    autograd_watch.install()   # before the learner's code: its torch imports are watched
    serve(fd_in, fd_out, missing)
    os._exit(0)   # the parent closed the pipe: threads the learner started end here too


if __name__ == "__main__":
    main(sys.argv[1:])
