"""Where independent tasks run: on this machine, or on a Dask cluster.

``handgrad sweep`` (one task per grid point) and ``handgrad grade`` (one task per
submission) hand their tasks to ``run_on_dask`` with ``--backend dask``; on ``loky`` they
keep joblib's worker processes on this machine. On Dask:

* the cluster is the Client the caller already has open, else the scheduler at
  ``--scheduler ADDRESS`` or ``$DASK_SCHEDULER_ADDRESS``, else a ``LocalCluster`` of
  ``jobs`` worker processes with one thread each, started here and closed at the end
  (``dask_client``);
* a worker need not share this machine's disk: what a task needs travels with it as data
  (a configuration, a learner's file as bytes), and what it writes comes back as data
  (``pack`` on the worker, ``unpack`` here), so only this process writes the output folder;
* a task whose worker dies is run again on another worker, by the scheduler
  (``distributed.scheduler.allowed-failures`` deaths, 3 by default); a task lost beyond
  that is reported by its name (``run_on_dask`` returns them), never left out silently.

Nothing here knows what a task does; handgrad runs the same code in a task as locally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from experiments.core.config import ConfigError

SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
CONNECT_SECONDS = 30     # to reach a scheduler given by address
INSTALL = "pip install 'handgrad[dask]' (or: pip install dask distributed)"


class TasksLost(RuntimeError):
    """Tasks whose workers died more often than they are retried."""

    def __init__(self, what: str, names: Sequence[str], workers: str = "Dask workers"):
        self.names = list(names)
        shown = ", ".join(self.names[:5]) + (" ..." if len(self.names) > 5 else "")
        super().__init__(f"{len(self.names)} {what} lost: their {workers} died on every "
                         f"try ({shown}); nothing was written: run again")


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to join: ``scheduler`` if given, else ``$DASK_SCHEDULER_ADDRESS``, else
    None (a local cluster)."""
    return scheduler or os.environ.get(SCHEDULER_VARIABLE) or None


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(f"--backend dask needs the dask and distributed packages: "
                          f"{INSTALL}") from None
    return distributed


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1) -> Iterator:
    """A ``distributed.Client``: the caller's own if one is open (and no ``scheduler`` is
    named), else one joined to ``scheduler_address(scheduler)``, else a ``LocalCluster`` of
    ``workers`` processes with one thread each. What this made is closed at the end."""
    distributed = _distributed()
    existing = None
    if scheduler is None:
        with contextlib.suppress(ValueError):   # ValueError: no Client open
            existing = distributed.get_client()
    if existing is not None:                     # the caller's own: left open
        yield existing
        return
    address = scheduler_address(scheduler)
    if address is not None:
        try:
            client = distributed.Client(address, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({type(err).__name__}"
                              f": {err}); start it (dask scheduler) or point --scheduler / "
                              f"${SCHEDULER_VARIABLE} at a running one") from None
        with client:
            yield client
        return
    if workers < 1:
        workers = os.cpu_count() or 1
    with (distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL)
          as cluster,
          distributed.Client(cluster) as client):
        yield client


def describe_client(client) -> str:
    """Where a ``dask_client`` runs its tasks, for a report: a local cluster of N workers
    on this machine, or the scheduler at an address and its N workers."""
    workers = len(client.scheduler_info().get("workers", {}))
    if type(getattr(client, "cluster", None)).__name__ == "LocalCluster":
        return f"on Dask: a local cluster of {workers} workers on this machine"
    return f"on Dask: the scheduler at {client.scheduler.address} ({workers} workers)"


def run_on_dask(client, fn: Callable, tasks: Sequence[tuple], names: Sequence[str], *,
                on_result: Callable[[int, object], None], prefix: str = "handgrad") -> list[int]:
    """Run ``fn(*tasks[i])`` for every i on the cluster, calling ``on_result(i, result)``
    here as each finishes; return the indices of the tasks lost to dying workers (the
    scheduler has retried those). An exception ``fn`` raises is raised here. Each task's
    key starts with ``prefix`` and its name, so the scheduler's dashboard and logs name it.
    Leaving early (an exception, Ctrl-C) cancels the tasks still pending."""
    distributed = _distributed()
    from distributed.scheduler import KilledWorker

    token = os.urandom(4).hex()
    futures = {client.submit(fn, *task, key=f"{prefix}-{name}-{token}", pure=False,
                             retries=0): i
               for i, (task, name) in enumerate(zip(tasks, names, strict=True))}
    lost = []
    try:
        for future in distributed.as_completed(list(futures)):
            i = futures[future]
            if future.status == "error" and isinstance(future.exception(), KilledWorker):
                lost.append(i)
                continue
            on_result(i, future.result())
            future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])
    return sorted(lost)


def pack(folder: Path) -> list[tuple[str, bytes | None]]:
    """A folder as data: (relative POSIX path, bytes) per file, (path, None) per folder, in
    walking order. A link is refused: handgrad writes none."""
    folder = Path(folder)
    items: list[tuple[str, bytes | None]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        base = Path(root)
        for name in [*dirs, *sorted(files)]:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                raise OSError(f"{path}: a symbolic link in a task's output folder")
            items.append((rel, None if path.is_dir() else path.read_bytes()))
    return items


def unpack(items: list[tuple[str, bytes | None]], dest: Path) -> None:
    """Write ``pack``'s data under ``dest`` (created); a path that would leave ``dest`` is
    refused."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in items:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise OSError(f"{rel!r}: a task's output path outside its folder")
        path = dest.joinpath(*parts)
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


@contextlib.contextmanager
def scratch_folder(prefix: str = "handgrad-task-") -> Iterator[Path]:
    """A fresh temporary folder on the worker's own disk, removed at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def add_scheduler_option(parser) -> None:
    """``--scheduler ADDRESS``, as ``sweep`` and ``grade`` take it."""
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="the Dask scheduler to use with --backend dask, e.g. "
                             "tcp://10.0.0.5:8786")
