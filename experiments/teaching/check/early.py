"""The learner's process, started while handgrad imports torch.

Before `handgrad check` can compare anything it imports torch and pandas, and torch's
first ``torch.optim.SGD`` imports ``torch._dynamo``: seconds of one core
(docs/performance.md). The learner's own process (``boundary.process.LearnerProcess``)
needs a fraction of a second to start Python and numpy, enter its sandbox and load the
file. On two or more cores the two can run side by side:

    early = start_early(path, "seed", steps=50, out=out)     # None: no early start
    from experiments.teaching.check.api import check_file   # torch, pandas meanwhile
    result = check_file(path, "seed", steps=50, out=out, early=early)

``start_early`` first checks what would refuse the check before anything runs (the
config, the limits, the check folder, as ``api.check_file`` does): where one of them
fails it starts nothing and returns None, and ``check_file`` then says what is wrong. Else
it constructs the ``LearnerProcess`` in a thread, whose waits on the process's pipes leave
the interpreter to the imports. ``EarlyLearner.open`` hands that process over when it is
asked for the same file with the same limits, and otherwise closes it and starts a fresh
one, so an early start never changes what is checked. One not handed over is closed at
exit at the latest.

On one core nothing overlaps, and the learner's loading (counted against its --timeout)
would wait for handgrad's imports: no early start there. This module imports neither torch
nor pandas (tests/test_iterate.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path


def own_helpers(path: str | Path) -> list[Path]:
    """The learner's own modules it may import: the other ``.py`` files of its folder
    (regular files, no links)."""
    path = Path(path)
    return sorted(p for p in path.parent.glob("*.py") if p.name != path.name
                  and p.is_file() and not p.is_symlink())


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def start_early(path: str | Path, config="seed", *, overrides=(), steps: int | None = None,
                timeout: float = 60.0, memory_mb: int = 1024, out: str | Path | None = None,
                force: bool = False, follow: bool = True, definitions_only: bool = False
                ) -> EarlyLearner | None:
    """The learner's process for ``check_file(path, config, ...)`` with these arguments
    (``config`` a name or a TOML path, as on the command line), starting in a thread; None
    (nothing started) on one core, or where ``check_file`` would refuse the arguments
    before running anything."""
    from experiments.core.config import ConfigError, load_config
    from experiments.output.rundir import check_out, made_from
    from experiments.teaching.boundary.process import check_limits

    if cores() < 2 or not isinstance(config, str) or (steps is not None and steps < 1):
        return None
    try:
        load_config(config, ["mode=synced", *overrides])    # a named config or a TOML file
        check_limits(timeout, memory_mb)
        if out is not None:
            check_out(Path(out), force or made_from(Path(out), "check",
                                                    str(Path(path).resolve())),
                      "check", legacy=False)
    except ConfigError:
        return None
    return EarlyLearner(path, timeout=timeout, memory_mb=memory_mb, helpers=own_helpers(path),
                        follow=follow, definitions_only=definitions_only)


class EarlyLearner:
    """A ``LearnerProcess(path, **limits)`` being constructed in a thread (module
    docstring)."""

    def __init__(self, path: str | Path, **limits):
        self.asked = (Path(path), limits)
        self._learner = self._error = None
        self._taken = False
        self._started = threading.Event()
        threading.Thread(target=self._start, daemon=True, name="handgrad-early-learner").start()
        atexit.register(self.close)

    def _start(self) -> None:
        from experiments.teaching.boundary.process import LearnerProcess

        try:
            self._learner = LearnerProcess(self.asked[0], **self.asked[1])
        except BaseException as err:   # a LearnerError is the check's result: raised in open
            self._error = err
            return
        finally:
            self._started.set()
        # The learner's process asks for SIGKILL when its parent ends (PR_SET_PDEATHSIG),
        # and its parent is this thread, the one that started it: the thread lives until
        # the process has ended (waiting without reaping it: process.py reaps it).
        try:
            os.waitid(os.P_PID, self._learner.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:   # already reaped
            pass

    def open(self, path: str | Path, **limits):
        """``LearnerProcess(path, **limits)``: the one started early when these are the
        arguments it was started with (or the LearnerError its start raised), else a fresh
        one. Once only: a second call starts a fresh one too."""
        from experiments.teaching.boundary.process import LearnerProcess

        if self._taken or (Path(path), limits) != self.asked:
            self.close()
            return LearnerProcess(path, **limits)
        self._started.wait()
        self._taken = True
        atexit.unregister(self.close)
        if self._error is not None:
            raise self._error
        return self._learner

    def close(self) -> None:
        """Stop the process if it was not handed over (waits for its start to end)."""
        if self._taken:
            return
        self._started.wait()
        self._taken = True
        atexit.unregister(self.close)
        if self._learner is not None:
            self._learner.close()
