"""The parent's end of the learner's process: a learner file run where it cannot hurt handgrad.

``LearnerProcess(path)`` starts ``learner.py`` as a script in a new process and speaks to
it over two pipes (``multiprocessing.connection.Connection``: pickled tuples, numpy arrays
included). It offers what ``learner.Learner`` offers in-process — ``bind``, ``gradients``,
``update`` — so the learner's side (``side.LearnerSide``) cannot tell the two apart, and
``output`` and ``close`` besides. The process gets

* a memory limit (RLIMIT_AS, ``memory_mb``): a hog meets MemoryError in its own code;
* a time limit: ``timeout`` seconds of waiting for the learner's answers in all (its loading
  included), after which its process group is killed; RLIMIT_CPU backs this up;
* a fresh working folder (a temporary directory as cwd), one BLAS thread, no core dumps;
* its own stdout/stderr in a file (capped at 16 MiB), read back by ``output``.

A crash (segfault, ``os._exit``), a hang or memory exhaustion surfaces here as
``LearnerCrashed`` / ``LearnerTimeout`` / ``LearnerRaised``: handgrad itself carries on.
The data is sent once (``bind``); each step sends the parameters and the batch's row
indices and receives the gradients (benchmarks/check_overhead.py measures the cost).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from experiments.teaching.check.learner import (
    BadLearner,
    LearnerCrashed,
    LearnerRaised,
    LearnerTimeout,
)

SCRIPT = Path(__file__).with_name("learner.py")
STARTUP_SECONDS = 60.0      # for Python and numpy to start, not counted in the learner's time
OUTPUT_TAIL = 64 << 10      # bytes of the learner's output kept for the report
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class LearnerProcess:
    """A learner's file loaded in its own process, with limits (module docstring)."""

    def __init__(self, path: str | Path, *, timeout: float = 60.0, memory_mb: int = 1024):
        self.path, self.timeout = Path(path), float(timeout)
        self.budget = self.timeout       # seconds of the learner's time left
        self.name = self.path.name
        self._tmp = tempfile.TemporaryDirectory(prefix="handgrad-learner-")
        work = Path(self._tmp.name) / "work"
        work.mkdir()
        self._log_path = Path(self._tmp.name) / "output.txt"
        to_child, from_child = os.pipe(), os.pipe()     # (read end, write end) each
        env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
        cpu = math.ceil(self.timeout) + int(STARTUP_SECONDS)
        with open(self._log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), str(to_child[0]), str(from_child[1]),
                 str(int(memory_mb)), str(cpu)],
                pass_fds=(to_child[0], from_child[1]), cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)   # its own process group: killed as a whole
        os.close(to_child[0])
        os.close(from_child[1])
        self._send = Connection(to_child[1], readable=False)
        self._recv = Connection(from_child[0], writable=False)
        self.memory_mb = memory_mb
        try:
            self._wait("starting", STARTUP_SECONDS, counted=False)
            info = self._ask(("load", str(self.path.resolve())), f"loading {self.name}")
        except BadLearner as err:   # the path as the user gave it, not the resolved one
            self.close()
            raise BadLearner(str(err).replace(str(self.path.resolve()), str(self.path)),
                             err.output) from None
        except BaseException:
            self.close()
            raise
        self.convention, self.has_update = info["convention"], info["has_update"]

    # -- the Learner interface ---------------------------------------------------------------
    def bind(self, X, Y) -> None:
        self._ask(("bind", X, Y), "receiving the data")

    def gradients(self, params: dict, idx) -> dict:
        return self._ask(("gradients", params, idx), "gradients(params, X, Y)")

    def update(self, params: dict, grads: dict, lr: float) -> dict:
        return self._ask(("update", params, grads, lr), "update(params, grads, lr)")

    def output(self) -> str:
        """The last 64 KiB of what the learner's code printed (stdout and stderr)."""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - OUTPUT_TAIL))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> str:
        """Stop the process (closing the pipe ends its loop; a stuck one is killed), remove
        its folder; return its output."""
        for conn in (self._send, self._recv):
            conn.close()
        self._reap(2)
        out = self.output()
        self._tmp.cleanup()
        return out

    def __enter__(self) -> LearnerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the pipe ------------------------------------------------------------------------------
    def _kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def _reap(self, seconds: float) -> None:
        """Wait ``seconds`` for the process to end by itself, then kill it."""
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self._kill()

    def _wait(self, what: str, seconds: float, counted: bool = True):
        """The next message, within ``seconds``; a timeout kills the process."""
        t0 = time.monotonic()
        if not self._recv.poll(max(seconds, 0.0)):
            self._kill()
            if not counted:
                raise LearnerCrashed(f"the learner's process did not start within "
                                     f"{seconds:g} s")
            raise LearnerTimeout(f"{what} ran past the time limit (--timeout "
                                 f"{self.timeout:g} s of the learner's code in all); its "
                                 f"process was stopped")
        try:
            msg = self._recv.recv()
        except (EOFError, OSError):
            raise self._crashed(what) from None
        if counted:
            self.budget -= time.monotonic() - t0
        return msg

    def _ask(self, msg: tuple, what: str):
        try:
            self._send.send(msg)
        except (BrokenPipeError, OSError):
            raise self._crashed(what) from None
        reply = self._wait(what, self.budget)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "bad":
            raise BadLearner(reply[1], output=reply[2])
        text = reply[1]
        if "MemoryError" in text.rsplit("\n", 1)[-1]:   # numpy's _ArrayMemoryError too
            text += f" (the learner's process may use at most {self.memory_mb} MiB: --memory)"
        raise LearnerRaised(text)

    def _crashed(self, what: str) -> LearnerCrashed:
        """Why the process is gone, with the learner's last printed lines."""
        self._reap(5)
        rc = self.proc.returncode
        if rc is not None and rc < 0:
            sig = signal.Signals(-rc)
            why = f"killed by signal {-rc} ({sig.name}: {signal.strsignal(sig)})"
            if sig == signal.SIGKILL:
                why += f"; a memory limit of {self.memory_mb} MiB (--memory) applies"
        else:
            why = f"exited with status {rc} (os._exit or a fatal error in its code)"
        tail = [line for line in self.output().splitlines()[-12:] if line.strip()]
        text = f"the learner's process died during {what}: {why}"
        return LearnerCrashed(text + ("\n" + "\n".join(tail) if tail else ""))
