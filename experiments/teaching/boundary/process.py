"""The parent's end of the learner's process: a learner's file run where it cannot hurt handgrad.

``LearnerProcess(path)`` copies the learner's file (and, where given, its own helper
modules) into a fresh working folder, starts ``learner.py`` there in a new process with a
minimal environment, and speaks to it over two pipes in ``wire`` frames (JSON and raw
arrays: data, never code). It offers what ``learner.Learner`` offers in-process —
``bind``, ``gradients``, ``update`` — so the learner's side (``side.LearnerSide``) cannot
tell the two apart, and ``output`` and ``close`` besides. The process gets

* the operating system's sandbox (``sandbox``: Landlock, seccomp, no capabilities): it
  reads only the Python installation and its working folder, writes only there, opens no
  socket, starts no process, signals nothing outside itself; ``sandbox_missing`` lists
  the layers this machine could not apply;
* a memory limit (RLIMIT_AS, ``memory_mb``): a hog meets MemoryError in its own code;
* a time limit: ``timeout`` seconds of the learner's answers in all (its loading
  included), each answer read whole against that deadline, after which its process group
  is killed; RLIMIT_CPU backs this up;
* an environment of its own (PATH, LANG, HOME and TMPDIR in the working folder, one BLAS
  thread), no core dumps, at most 16 MiB of output and 16 MiB a file, and a working folder
  watched for size (``WORK_LIMIT``, ``WORK_ENTRIES``);
* replies read with a size limit known before reading: a malformed, forged or oversized
  reply is the learner's ``bad_output``, never handgrad's failure.

A crash (segfault, ``os._exit``), a hang or memory exhaustion surfaces here as
``LearnerCrashed`` / ``LearnerTimeout`` / ``LearnerRaised``: handgrad itself carries on.
When ``close`` returns, the process and anything in its process group are gone. The data
is sent once (``bind``); each step sends the parameters and the batch's row indices and
receives the gradients (benchmarks/check_overhead.py measures the cost).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from experiments.teaching.boundary import wire
from experiments.teaching.boundary.learner import (
    BAD_STATUSES,
    CONVENTIONS,
    OUTPUT_LIMIT,
    BadLearner,
    LearnerCrashed,
    LearnerError,
    LearnerRaised,
    LearnerTimeout,
    cap_text,
    source_problem,
)

SCRIPT = Path(__file__).with_name("learner.py")
STARTUP_SECONDS = 60.0      # for Python and numpy to start, not counted in the learner's time
OUTPUT_TAIL = 64 << 10      # bytes of the learner's output kept for the report
FILE_LIMIT = 4 << 20        # bytes of one file copied in (a learner's file or a helper)
NOTEBOOK_LIMIT = 64 << 20   # bytes of a notebook (its outputs' images included)
HELPER_LIMIT = 200          # helper modules copied in at most
WORK_LIMIT = 64 << 20       # bytes the learner may keep in its working folder
WORK_ENTRIES = 10_000       # files and folders it may make there
WATCH_SECONDS = 0.5         # how often the working folder is measured
REPLY_SLACK = 16 << 20      # bytes a reply may hold beyond 4x what was asked for
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.py", re.IGNORECASE)   # fullmatch


def read_capped(path: Path, limit: int = FILE_LIMIT, follow: bool = True) -> bytes:
    """A regular file's bytes, at most ``limit``; never blocks on a FIFO or a device;
    ``follow=False``: a symbolic link is refused (a file swapped for one after it was
    found)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow:
            raise BadLearner(f"{path} is a symbolic link (not followed)") from None
        raise BadLearner(f"{path}: cannot be read ({err.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadLearner(f"{path} is not a regular file")
        chunks, size = [], 0
        while size <= limit:
            more = os.read(fd, limit + 1 - size)
            if not more:
                break
            chunks.append(more)
            size += len(more)
    finally:
        os.close(fd)
    if size > limit:
        raise BadLearner(f"{path} is larger than {limit >> 20} MiB: not a learner's file")
    return b"".join(chunks)


MAX_TIMEOUT = 7 * 24 * 3600   # seconds: a week (RLIMIT_CPU and the deadlines stay finite)
MIN_MEMORY_MB, MAX_MEMORY_MB = 256, 1 << 20   # Python and numpy need about 150 MiB to start


def check_limits(timeout: float, memory_mb: int) -> None:
    """``--timeout`` and ``--memory`` in range, or ``ValueError``'s project form, one line."""
    from experiments.core.config import ConfigError

    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout)
            and 0 < timeout <= MAX_TIMEOUT):
        raise ConfigError(f"--timeout {timeout}: give the seconds the learner's code may take "
                          f"in all, > 0 and at most {MAX_TIMEOUT} (a week)")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) \
            or not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise ConfigError(f"--memory {memory_mb}: give the learner's address space in MiB, "
                          f"from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}")


def minimal_env(work: Path) -> dict[str, str]:
    """The learner's whole environment: nothing of the teacher's but the library path."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work),
           "TMPDIR": str(work), "MPLBACKEND": "Agg",
           "MPLCONFIGDIR": str(work / ".matplotlib"), **dict.fromkeys(THREAD_VARS, "1")}
    if "LD_LIBRARY_PATH" in os.environ:   # some Python builds need it to start
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return env


def _cells(source: bytes, shown: str, notebook: bool, definitions: bool):
    """The (label, source) cells the learner's process runs, and the notes on what was
    left out (``notebook``)."""
    from experiments.teaching.boundary.notebook import definitions_only, notebook_cells

    try:
        text = source.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadLearner(f"{shown} is not Python: it is not UTF-8 text") from None
    notes = []
    if notebook:
        try:
            cells, notes = notebook_cells(text, shown)
        except ValueError as err:
            raise BadLearner(str(err)) from None
    else:
        cells = [(shown, text)]
    if definitions:
        cells, dropped = definitions_only(cells)
        notes += dropped
    return cells, notes


def _nbytes(*values) -> int:
    return sum(getattr(a, "nbytes", 0) for v in values
               for a in (v.values() if isinstance(v, dict) else [v]))


class LearnerProcess:
    """A learner's file loaded in its own sandboxed process, with limits (module docstring).
    ``helpers``: the learner's own other modules, importable by it (never a classmate's);
    ``follow=False``: the file itself must not be a symbolic link."""

    def __init__(self, path: str | Path, *, timeout: float = 60.0, memory_mb: int = 1024,
                 helpers=(), follow: bool = True, definitions_only: bool = False):
        self.path, self.timeout = Path(path), float(timeout)
        self.budget = self.timeout       # seconds of the learner's time left
        self.name = self.path.name
        self.memory_mb = memory_mb
        self.proc = None
        self.stopped_why = ""            # why the watchdog stopped the process
        self.sandbox_missing: list[str] = []
        problem = source_problem(self.path)
        if problem is not None:
            raise BadLearner(problem)
        notebook = self.path.suffix.lower() == ".ipynb"
        source = read_capped(self.path, NOTEBOOK_LIMIT if notebook else FILE_LIMIT,
                             follow=follow)
        self.sha256 = hashlib.sha256(source).hexdigest()   # of the bytes that run
        self.cells, self.notes = _cells(source, str(self.path), notebook, definitions_only)
        self.mode = "definitions only" if definitions_only else "the whole file"
        self._tmp = tempfile.TemporaryDirectory(prefix="handgrad-learner-")
        self._log_path = Path(self._tmp.name) / "output.txt"
        self._watching = threading.Event()
        self._lock = threading.Lock()    # the watchdog's kill against the reaping
        try:
            self._start(source, helpers)
        except BaseException:
            self.close()
            raise

    def _start(self, source: bytes, helpers) -> None:
        """Copy the files in, start the process, and load the learner's cells in it."""
        self.work = work = Path(self._tmp.name) / "work"
        work.mkdir()
        copied = {}
        for helper in list(helpers)[:HELPER_LIMIT]:
            helper = Path(helper)
            if helper.name != self.name and _SAFE_NAME.fullmatch(helper.name):
                copied[helper.name] = read_capped(helper)
        if self.path.suffix.lower() == ".py":   # importable by its helpers, as on its disk
            copied[self.name if _SAFE_NAME.fullmatch(self.name) else "submission.py"] = source
        for name, data in copied.items():
            (work / name).write_bytes(data)
        to_child, from_child = os.pipe(), os.pipe()     # (read end, write end) each
        self._out_fd, self._in_fd = to_child[1], from_child[0]
        cpu = math.ceil(self.timeout) + int(STARTUP_SECONDS)
        try:
            with open(self._log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-B", "-m", "experiments.teaching.boundary.learner",
                     str(to_child[0]), str(from_child[1]), str(int(self.memory_mb)),
                     str(cpu)],
                    pass_fds=(to_child[0], from_child[1]), cwd=work, env=minimal_env(work),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)   # its own process group: killed as a whole
        finally:
            os.close(to_child[0])
            os.close(from_child[1])
        os.set_blocking(self._out_fd, False)
        os.set_blocking(self._in_fd, False)
        self._reader = wire.Reader(self._in_fd)
        self._watching.set()
        threading.Thread(target=self._watch, daemon=True,
                         name=f"handgrad-watch-{self.proc.pid}").start()
        ready = self._wait("starting", STARTUP_SECONDS, counted=False)
        if (type(ready) is not list or len(ready) != 2 or ready[0] != "ready"
                or type(ready[1]) is not dict or type(ready[1].get("missing")) is not list):
            raise self._malformed("starting", "its first message is not 'ready'")
        self.sandbox_missing = [cap_text(str(m), 300) for m in ready[1]["missing"][:10]]
        try:
            info = self._ask(["load", {"cells": self.cells, "name": str(self.path)}],
                             f"loading {self.name}")
        except LearnerRaised as err:   # raised at its top level: it cannot be imported
            if err.status == "crashed":
                err.status = "import_error"
            raise
        if (type(info) is not dict or set(info) != {"convention", "has_update"}
                or type(info["convention"]) is not str
                or info["convention"] not in CONVENTIONS
                or type(info["has_update"]) is not bool):
            raise self._malformed(f"loading {self.name}",
                                  "the answer is not {convention, has_update}")
        self.convention, self.has_update = info["convention"], info["has_update"]

    # -- the Learner interface ---------------------------------------------------------------
    def bind(self, X, Y) -> None:
        self._ask(["bind", X, Y], "receiving the data", expect=None)

    def gradients(self, params: dict, idx) -> dict:
        return self._ask(["gradients", params, idx], "gradients(params, X, Y)",
                         expect=_nbytes(params))

    def update(self, params: dict, grads: dict, lr: float) -> dict:
        return self._ask(["update", params, grads, float(lr)], "update(params, grads, lr)",
                         expect=_nbytes(params))

    def autograd_runs(self) -> int | None:
        """Backward passes torch's autograd ran in the learner's process so far
        (``autograd_watch``); None when the process cannot say (stopped, out of time)."""
        if self.proc is None or self._out_fd is None or self.budget <= 0 or self._exited():
            return None
        try:
            runs = self._ask(["autograd"], "counting autograd's backward passes", expect=None)
        except LearnerError:
            return None
        return runs if type(runs) is int and runs >= 0 else None

    def output(self) -> str:
        """The last 64 KiB of what the learner's code printed (stdout and stderr); a cut
        says so on its first line."""
        try:
            with open(self._log_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - OUTPUT_TAIL))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        if size > OUTPUT_TAIL:
            text = (f"[... {size - OUTPUT_TAIL} earlier bytes cut: the last {OUTPUT_TAIL >> 10} "
                    f"KiB of the output are kept]\n" + text)
        return text

    def close(self) -> str:
        """Stop the process (closing the pipe ends its loop; a stuck one is killed) and
        everything in its process group, remove its folder; return its output."""
        self._watching.clear()
        for fd in ("_out_fd", "_in_fd"):
            if getattr(self, fd, None) is not None:
                os.close(getattr(self, fd))
                setattr(self, fd, None)
        if self.proc is not None:
            self._reap(2)
        out = self.output()
        self._tmp.cleanup()
        return out

    def __enter__(self) -> LearnerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the process -----------------------------------------------------------------------------
    def _exited(self) -> bool:
        """Whether the process has ended, without reaping it: while it is a zombie its pid,
        and so its process group's id, cannot be reused."""
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _kill(self) -> None:
        """SIGKILL its process group (while the leader is unreaped, see ``_exited``), then
        reap the leader."""
        with self._lock:
            if self.proc.returncode is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.proc.wait()

    def _reap(self, seconds: float) -> None:
        """Give the process ``seconds`` to end by itself, then kill what is left of its
        group either way (a fork that outlived its leader included)."""
        deadline = time.monotonic() + seconds
        while self.proc.returncode is None and not self._exited() \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        self._kill()

    def _watch(self) -> None:
        """Every ``WATCH_SECONDS``: stop the process when its working folder grows past
        ``WORK_LIMIT`` bytes or ``WORK_ENTRIES`` entries."""
        while self._watching.is_set():
            time.sleep(WATCH_SECONDS)
            why = _over_limit(self.work, self.proc.pid)
            with self._lock:
                if why and self._watching.is_set() and self.proc.returncode is None:
                    self.stopped_why = why
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    return

    # -- the pipe ------------------------------------------------------------------------------
    def _wait(self, what: str, seconds: float, counted: bool = True, max_payload: int = 0):
        """The next message, read whole within ``seconds``; a timeout kills the process."""
        t0 = time.monotonic()
        try:
            msg = self._reader.read(t0 + max(seconds, 0.0), max_payload=max_payload)
        except wire.WireTimeout:
            self._kill()
            if not counted:
                raise LearnerCrashed(f"the learner's process did not start within "
                                     f"{seconds:g} s") from None
            raise LearnerTimeout(f"{what} ran past the time limit (--timeout "
                                 f"{self.timeout:g} s of the learner's code in all); its "
                                 f"process was stopped") from None
        except wire.WireClosed:
            raise self._crashed(what) from None
        except wire.WireError as err:
            raise self._malformed(what, str(err)) from None
        if counted:
            self.budget -= time.monotonic() - t0
        return msg

    def _ask(self, msg: list, what: str, expect: int | None = 0):
        """Send ``msg`` and read the answer within the time left; ``expect``: the bytes of
        arrays the answer should hold (it may hold 4x that plus ``REPLY_SLACK``)."""
        t0 = time.monotonic()
        try:
            wire.write_all(self._out_fd, wire.encode(msg), t0 + max(self.budget, 0.0))
        except wire.WireClosed:
            raise self._crashed(what) from None
        except wire.WireTimeout:   # it stopped reading: its time is what it took
            self.budget = 0.0
        self.budget -= time.monotonic() - t0
        limit = 4 * expect + REPLY_SLACK if expect else REPLY_SLACK if expect is None else 0
        reply = self._wait(what, self.budget, max_payload=limit)
        if type(reply) is not list or not reply or reply[0] not in ("ok", "bad", "raised"):
            raise self._malformed(what, "the answer is not ['ok' | 'bad' | 'raised', ...]")
        if reply[0] == "ok" and len(reply) == 2:
            return self._vetted(reply[1], what) if expect else reply[1]
        if reply[0] == "bad" and len(reply) == 3 and type(reply[1]) is str \
                and type(reply[2]) is str and reply[2] in BAD_STATUSES:
            raise BadLearner(self._theirs(reply[1]), status=reply[2])
        if reply[0] != "raised" or len(reply) != 2 or type(reply[1]) is not str:
            raise self._malformed(what, f"a {reply[0]!r} answer of the wrong form")
        text = self._theirs(reply[1])
        last = text.rsplit("\n", 1)[-1]
        status = None
        if "MemoryError" in last:   # numpy's _ArrayMemoryError too
            text += f" (the learner's process may use at most {self.memory_mb} MiB: --memory)"
        elif "[Errno 27] File too large" in last:   # RLIMIT_FSIZE (Python ignores SIGXFSZ)
            text += (f" (the output limit: its output, and each file it writes, may hold at "
                     f"most {OUTPUT_LIMIT >> 20} MiB)")
            status = "output_limit"
        elif last.startswith("PermissionError") and not self.sandbox_missing:
            text += (" (the sandbox refused it: a learner's code may read and write only its "
                     "own folder, and may not start processes, open sockets or signal other "
                     "processes)")
        raise LearnerRaised(text, status)

    def _vetted(self, value, what: str) -> dict:
        """An ``ok`` answer to gradients/update: a dict of float arrays (as ``vet_dict``
        makes them in the learner's process), or malformed."""
        import numpy as np

        if type(value) is not dict or not all(
                type(v) is np.ndarray and v.dtype.kind == "f" for v in value.values()):
            raise self._malformed(what, "the answer is not a dict of float arrays")
        return value

    def _theirs(self, text: str) -> str:
        """A message from the learner's process, capped, its working folder named as the
        learner's own."""
        return cap_text(text).replace(f"{self.work}/", f"{self.path.parent}/")

    def _malformed(self, what: str, why: str) -> BadLearner:
        self._kill()
        return BadLearner(f"the learner's process sent a malformed answer during {what} "
                          f"({why}); its process was stopped", output=True)

    def _crashed(self, what: str) -> LearnerCrashed:
        """Why the process is gone, with the learner's last printed lines."""
        self._reap(5)
        rc = self.proc.returncode
        status = "output_limit" if self.stopped_why or rc == -signal.SIGXFSZ else None
        if self.stopped_why:
            why = f"stopped: {self.stopped_why}"
        elif rc is not None and rc < 0:
            sig = signal.Signals(-rc)
            why = f"killed by signal {-rc} ({sig.name}: {signal.strsignal(sig)})"
            if sig == signal.SIGKILL:
                why += f"; a memory limit of {self.memory_mb} MiB (--memory) applies"
            elif sig == signal.SIGXFSZ:
                why += (f"; its output, and each file it writes, may hold at most "
                        f"{OUTPUT_LIMIT >> 20} MiB")
        else:
            why = f"exited with status {rc} (os._exit or a fatal error in its code)"
        tail = [line for line in self.output().splitlines()[-12:] if line.strip()]
        text = f"the learner's process died during {what}: {why}"
        return LearnerCrashed(cap_text(text + ("\n" + "\n".join(tail) if tail else "")),
                              status)


def _open_files(pid: int, work: Path) -> int:
    """Bytes held by the regular files process ``pid`` has open outside ``work``'s tree:
    its output log, files it deleted but keeps open, a memfd."""
    size = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(link)
            st = os.stat(link)   # the open file itself, deleted or not
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and (target.endswith(" (deleted)") or
                                         not target.startswith(f"{work}/")):
            size += st.st_blocks * 512
    return size


def _over_limit(work: Path, pid: int | None = None) -> str:
    """Why ``work`` (and the files process ``pid`` holds open) is over its limits, or ''."""
    size = _open_files(pid, work) if pid is not None else 0
    entries = 0
    stack = [str(work)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    if entries > WORK_ENTRIES:
                        return (f"it made more than {WORK_ENTRIES} files and folders in its "
                                f"working folder (the limit)")
                    st = entry.stat(follow_symlinks=False)
                    size += st.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
        if size > WORK_LIMIT:
            break
    if size > WORK_LIMIT:
        return (f"it wrote more than {WORK_LIMIT >> 20} MiB into its working folder and "
                f"the files it holds open (the limit)")
    return ""
