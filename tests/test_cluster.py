"""Sweeps and grading on a real Dask cluster: a ``distributed.LocalCluster`` of 2 worker
processes (one thread each), shared by this module's tests.

Each test proves that its tasks ran in the cluster's workers, not here: the scheduler's
task stream (``distributed.get_task_stream``) must list every task, by its key, on one of
the cluster's workers. A backend that quietly fell back to local execution leaves that
stream empty and fails. The results are compared with the same work done locally (loky):
the sweep's CSVs byte for byte, the grade's rows cell for cell (timing columns aside).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import dask
import distributed
import pandas as pd
import pytest

from experiments.cli import main
from experiments.core import backends
from experiments.core.config import ConfigError
from experiments.tools.sweep import run_sweep

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"
GRID = {"lr": ["0.5", "1.0"], "dtype": ["float32", "float64"]}
TINY = ["epochs=3"]
TIMING = ["seconds"]     # the only columns allowed to differ between two runs

pytestmark = pytest.mark.slow   # a cluster's start and its workers' first imports: seconds


@pytest.fixture(scope="module")
def client():
    """2 worker processes; a task whose worker dies is retried once (the second death makes
    it lost), so the fault tests are short."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def ran_on_workers(client, stream, prefix: str) -> list[str]:
    """The keys of the tasks named ``prefix...`` that finished on the cluster's workers."""
    workers = set(client.scheduler_info()["workers"])
    done = [t for t in stream.data if str(t["key"]).startswith(prefix)
            and any(s.get("action") == "compute" for s in t.get("startstops", ()))]
    assert {t["worker"] for t in done} <= workers, (done, workers)
    return [str(t["key"]) for t in done]


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".png"}


# --- the sweep ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loky_sweep(tmp_path_factory) -> Path:
    """The 4-point sweep on loky, written as ``sw`` in a folder of its own: every sweep
    here writes ``sw`` in its own folder, so that the paths the runs record are the same."""
    root = tmp_path_factory.mktemp("loky")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_sweep("seed", GRID, jobs=1, overrides=TINY, out="sw", backend="loky")
    finally:
        os.chdir(cwd)
    return root / "sw"


def test_sweep_on_the_cluster_equals_loky(client, loky_sweep, tmp_path, monkeypatch):
    """A 4-point sweep on the cluster writes the same files as on loky: every CSV and run
    config byte for byte (sweep.csv's ``seconds`` aside), the run directories sent back as
    data from the workers."""
    local, remote = loky_sweep, tmp_path / "sw"
    monkeypatch.chdir(tmp_path)
    with distributed.get_task_stream(client) as stream:
        table = run_sweep("seed", GRID, jobs=2, overrides=TINY, out="sw", backend="dask")
    keys = ran_on_workers(client, stream, "handgrad-sweep-")
    assert sorted(k.rsplit("-", 1)[0] for k in keys) == sorted(
        f"handgrad-sweep-lr={lr},dtype={d}" for lr in GRID["lr"] for d in GRID["dtype"])
    assert len(table) == 4
    a, b = files(local), files(remote)
    assert sorted(a) == sorted(b) and len(a) > 20, sorted(b)
    # every CSV and config byte for byte; provenance.json and the reports hold the time
    exact = [n for n in a if n.endswith((".csv", ".toml")) and n != "sweep.csv"]
    assert len(exact) == 1 + 4 * 8, exact     # config.toml; per point its own and 7 CSVs
    assert [n for n in exact if a[n] != b[n]] == []
    pd.testing.assert_frame_equal(   # as text: every digit
        pd.read_csv(local / "sweep.csv", dtype=str).drop(columns=TIMING),
        pd.read_csv(remote / "sweep.csv", dtype=str).drop(columns=TIMING))


# --- grading -----------------------------------------------------------------------------

CLASS = {   # file -> (content, status): None = a file of examples/learners
    "a_correct.py": ("correct_w1b1.py", "agree"),
    "b_mean.py": ("mean_over_batch.py", "differ"),
    "c_syntax.py": ("def gradients(params, X, Y)\n    return {}\n", "import_error"),
    "d_crash.py": ("import os\ndef gradients(params, X, Y):\n    os._exit(7)\n", "crashed"),
    "e_loop.py": ("def gradients(params, X, Y):\n    while True:\n        pass\n", "timeout"),
    "f_raises.py": ("def gradients(params, X, Y):\n    raise RuntimeError('todo')\n", "crashed"),
    # one student's folder: the submission imports its own helper, which travels with it
    "g_student/main.py": ("from helper import backprop\nCONVENTION = 'W1b1'\n\n\n"
                          "def gradients(params, X, Y):\n    return backprop(params, X, Y)\n",
                          "agree"),
}
HELPERS = {"g_student/helper.py": "correct_w1b1.py"}   # its gradients renamed backprop
LIMITS = ["--steps", "2", "--timeout", "2", "--memory", "400"]


def a_class(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, (content, _) in CLASS.items():
        (folder / name).parent.mkdir(exist_ok=True)
        if content.endswith(".py") and "\n" not in content:
            shutil.copy(EXAMPLES / content, folder / name)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    for name, example in HELPERS.items():
        source = (EXAMPLES / example).read_text(encoding="utf-8")
        (folder / name).write_text(source.replace("def gradients(", "def backprop("),
                                   encoding="utf-8")
    return folder


def grades(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "grades.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def local_grade(tmp_path_factory):
    """The class graded on this machine (loky; one job: this process starts the learners'
    processes)."""
    root = tmp_path_factory.mktemp("local")
    folder = a_class(root / "class")
    assert main(["grade", str(folder), "seed", *LIMITS, "--jobs", "1",
                 "--out", str(root / "grades")]) == 0
    table = grades(root / "grades")
    assert list(table["status"]) == [status for _, status in CLASS.values()], table
    return folder, root / "grades"


def test_grade_on_the_cluster_equals_local(client, local_grade, tmp_path, capsys):
    """The same class on the cluster: one task per submission, each on a worker, the
    learner's file sent as bytes and its check folder sent back; the rows equal the local
    grade's cell for cell (``seconds`` aside), the check folders hold the same files."""
    folder, here = local_grade
    out = tmp_path / "grades"
    with distributed.get_task_stream(client) as stream:
        code = main(["grade", str(folder), "seed", *LIMITS, "--backend", "dask",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    # grades.md says where: the client here is the caller's own, on a local cluster
    assert "on Dask: a local cluster of 2 workers on this machine, " in \
        (out / "grades.md").read_text("utf-8")
    keys = ran_on_workers(client, stream, "handgrad-grade-")
    assert sorted(k.rsplit("-", 1)[0] for k in keys) == [
        f"handgrad-grade-{Path(n).parts[0].removesuffix('.py')}" for n in CLASS]
    pd.testing.assert_frame_equal(grades(out).drop(columns=TIMING),
                                  grades(here).drop(columns=TIMING))
    assert sorted(p.relative_to(out).as_posix() for p in (out / "checks").rglob("*")) == \
        sorted(p.relative_to(here).as_posix() for p in (here / "checks").rglob("*"))
    a, b = files(here / "checks"), files(out / "checks")
    csvs = [n for n in a if n.endswith(".csv")]
    assert csvs and [n for n in csvs if a[n] != b[n]] == []


# --- choosing the cluster ----------------------------------------------------------------

def test_sweep_joins_the_scheduler_named_by_address(client, tmp_path, capsys):
    """``--scheduler ADDRESS``: handgrad makes its own Client to that scheduler (as on a
    cluster of machines), the points run on its workers, and that Client is closed after."""
    address = client.scheduler.address
    with distributed.get_task_stream(client) as stream:
        code = main(["sweep", "seed", "--grid", "lr=0.5,1.0", "--set", "epochs=1",
                     "--backend", "dask", "--scheduler", address, "--out", str(tmp_path / "sw"),
                     "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(ran_on_workers(client, stream, "handgrad-sweep-lr=")) == 2
    assert len(pd.read_csv(tmp_path / "sw" / "sweep.csv")) == 2
    clients = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))
    assert len([c for c in clients if c != "fire-and-forget"]) == 1, clients   # ours only


def test_grade_on_a_named_scheduler_says_so_in_grades_md(client, tmp_path, capsys):
    """``--scheduler ADDRESS``: grades.md names that scheduler and its workers (``--jobs``,
    which sizes only a local cluster, is not shown)."""
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(EXAMPLES / "correct_torch.py", folder / "a.py")
    address = client.scheduler.address
    assert main(["grade", str(folder), "seed", *LIMITS, "--backend", "dask", "--scheduler",
                 address, "--jobs", "7", "--out", str(tmp_path / "g")]) == 0, \
        capsys.readouterr().err
    md = (tmp_path / "g" / "grades.md").read_text("utf-8")
    (settings,) = [line for line in md.splitlines() if "--timeout" in line]
    assert f"on Dask: the scheduler at {address} (2 workers), " in settings
    assert "--jobs" not in settings


def kill_a_worker_when_busy(client, prefix: str) -> tuple[threading.Thread, list]:
    """A thread that SIGKILLs the worker process that holds the first task named
    ``prefix...`` (as the OOM killer would); the list gets the killed pid."""
    pids = client.run(os.getpid)            # worker address -> its process id
    killed: list[int] = []

    def watch():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                if any(str(k).startswith(prefix) for k in keys) and worker in pids:
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(pids[worker])
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


# --- faults ------------------------------------------------------------------------------

def test_sweep_survives_a_killed_worker(client, loky_sweep, tmp_path, monkeypatch):
    """A worker killed while it runs a point: the scheduler runs that point again on
    another worker; the sweep finishes with every point, its CSVs those of loky. (A grade
    goes through the same ``backends.run_on_dask``; its lost tasks: below.)"""
    monkeypatch.chdir(tmp_path)
    thread, killed = kill_a_worker_when_busy(client, "handgrad-sweep-")
    run_sweep("seed", GRID, jobs=2, overrides=TINY, out="sw", backend="dask")
    thread.join()
    assert killed, "no worker was seen running a point"
    a, b = files(loky_sweep), files(tmp_path / "sw")
    assert sorted(a) == sorted(b)
    assert [n for n in a if n.endswith(".csv") and n != "sweep.csv" and a[n] != b[n]] == []
    pd.testing.assert_frame_equal(
        pd.read_csv(loky_sweep / "sweep.csv", dtype=str).drop(columns=TIMING),
        pd.read_csv(tmp_path / "sw" / "sweep.csv", dtype=str).drop(columns=TIMING))


def test_a_task_that_kills_every_worker_is_reported_lost(client):
    """A task whose worker dies on every try (here it ends its worker process) is retried
    by the scheduler, then returned as lost; the other tasks' results all arrive."""
    got = {}
    lost = backends.run_on_dask(client, os._exit, [(3,), (4,)], ["dies", "dies-too"],
                                on_result=got.__setitem__, prefix="handgrad-test")
    assert lost == [0, 1] and got == {}
    lost = backends.run_on_dask(client, abs, [(-1,), (-2,)], ["one", "two"],
                                on_result=got.__setitem__, prefix="handgrad-test")
    assert lost == [] and got == {0: 1, 1: 2}
    message = str(backends.TasksLost("grid points", ["lr=0.5", "lr=1.0"]))
    assert message == ("2 grid points lost: their Dask workers died on every try (lr=0.5, "
                       "lr=1.0); nothing was written: run again")


def test_lost_points_are_named_in_one_line_and_nothing_is_written(client, tmp_path,
                                                                    monkeypatch, capsys):
    """Points lost beyond the scheduler's retries: one line names them, exit 1, and no
    sweep folder (nor a temporary one) is left."""
    def all_lost(client, fn, tasks, names, **kwargs):
        return list(range(len(tasks)))

    monkeypatch.setattr(backends, "run_on_dask", all_lost)
    code = main(["sweep", "seed", "--grid", "lr=0.5,1.0", "--set", "epochs=1",
                 "--backend", "dask", "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == 1
    assert err == ("handgrad: error: 2 grid points lost: their Dask workers died on every "
                   "try (lr=0.5, lr=1.0); nothing was written: run again\n")
    assert list(tmp_path.iterdir()) == []


def test_lost_submissions_are_rows_that_say_so(client, local_grade, tmp_path, monkeypatch):
    """Submissions lost beyond the scheduler's retries (as ``run_on_dask`` reports them:
    tested above) are ``grader_error`` rows that say so, with the file's sha256, so that
    ``--resume`` grades them again: every file has its row."""
    def all_lost(client, fn, tasks, names, **kwargs):
        return list(range(len(tasks)))

    folder, here = local_grade
    monkeypatch.setattr(backends, "run_on_dask", all_lost)
    assert main(["grade", str(folder), "seed", *LIMITS, "--backend", "dask",
                 "--out", str(tmp_path / "g")]) == 0
    table = grades(tmp_path / "g")
    assert list(table["file"]) == list(CLASS)
    assert set(table["status"]) == {"grader_error"}
    assert table["message"].str.startswith("the Dask workers checking this file died on "
                                           "every try").all(), table["message"]
    assert list(table["sha256"]) == list(grades(here)["sha256"])


def test_unreachable_scheduler_is_one_line_and_nothing_is_written(tmp_path, monkeypatch,
                                                                   capsys):
    """$DASK_SCHEDULER_ADDRESS (or --scheduler) naming no scheduler: one line, exit 2."""
    monkeypatch.setattr(backends, "CONNECT_SECONDS", 1)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")
    assert backends.scheduler_address() == "tcp://127.0.0.1:9"
    assert backends.scheduler_address("tcp://h:1") == "tcp://h:1"   # the option first
    with pytest.raises(ConfigError, match=re.escape(
            "cannot reach the Dask scheduler at tcp://127.0.0.1:9")), \
            backends.dask_client("tcp://127.0.0.1:9"):
        pass
    folder = a_class(tmp_path / "class")
    for cmd in (["sweep", "seed", "--grid", "lr=0.5"], ["grade", str(folder)]):
        code = main([*cmd, "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9",
                     "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class"]


def test_scheduler_without_dask_backend_is_refused(tmp_path, capsys):
    folder = a_class(tmp_path / "class")
    for cmd in (["grade", str(folder)], ["sweep", "seed", "--grid", "lr=0.5"]):
        code = main([*cmd, "--scheduler", "tcp://h:1", "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err == ("handgrad: error: --scheduler tcp://h:1: a Dask "
                                     "scheduler's address goes with --backend dask\n"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class"]
