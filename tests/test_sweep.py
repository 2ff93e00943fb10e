"""experiments.tools.sweep: a 2×2 grid on the seed experiment (3 epochs = 3 full-batch steps per
point), run once in this process (jobs=1) and once in two loky worker processes (jobs=2);
the two must write byte-identical CSVs. Bad grids must fail before anything is written.

The subcommand is exercised through the module's own ``register`` on a small argparse parser,
and through ``experiments.cli.main``.
"""

from __future__ import annotations

import argparse
import sys
import tomllib

import pandas as pd
import pytest

from experiments import cli
from experiments.core.config import ConfigError
from experiments.tools.sweep import (
    _point_name,
    parse_grid,
    plot_sweep,
    redraw,
    register,
    run_sweep,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID = ["--grid", "lr=0.5,1.0", "--grid", "dtype=float32,float64"]
TINY = ["--set", "epochs=3"]
POINTS = ["lr=0.5,dtype=float32", "lr=0.5,dtype=float64",
          "lr=1.0,dtype=float32", "lr=1.0,dtype=float64"]   # grid order: first key slowest
#: sweep.csv after ``point`` and the grid keys (literal: a schema change must fail here)
AFTER_KEYS = ["status", "final_loss_manual", "final_loss_torch", "worst_rel_err", "worst_ratio",
              "verdict", "steps_done", "seconds", "message", "loss_worst_ratio"]
EXACT = 1e-12    # float64 agreement of the two sides: rounding stays far below


def sweep_cmd(*args) -> int:
    """``handgrad sweep ARGS`` through this module's own ``register``."""
    parser = argparse.ArgumentParser(prog="handgrad")
    register(parser.add_subparsers(dest="command", required=True), argparse.HelpFormatter)
    ns = parser.parse_args(["sweep", *map(str, args)])
    return ns.func(ns)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The same sweep three times: jobs=1 (this process) through the CLI; jobs=2 in two loky
    worker processes and jobs=2 in two threads of this process, through the library."""
    root = tmp_path_factory.mktemp("sweeps")
    seq, par, thr = root / "jobs1", root / "jobs2", root / "threads2"
    assert sweep_cmd("seed", *GRID, *TINY, "--jobs", 1, "--out", seq, "--quiet") == 0
    grid = {"lr": ["0.5", "1.0"], "dtype": ["float32", "float64"]}
    table = run_sweep("seed", grid, jobs=2, overrides=["epochs=3"], out=par)
    run_sweep("seed", grid, jobs=2, overrides=["epochs=3"], out=thr, backend="threading")
    return seq, par, thr, table


def test_writes_one_run_directory_per_point_and_the_table(sweeps):
    seq, _, _, table = sweeps
    assert sorted(p.name for p in seq.iterdir() if p.is_dir()) == POINTS
    for point in POINTS:
        for name in ("config.toml", "provenance.json", "loss.csv", "grads.csv", "summary.csv",
                     "report.md"):
            assert (seq / point / name).is_file(), (point, name)
        assert not list((seq / point).glob("*.png"))          # per-point plots off by default
    csv = pd.read_csv(seq / "sweep.csv")
    assert list(csv.columns) == ["point", "lr", "dtype", *AFTER_KEYS]
    assert list(csv["point"]) == POINTS
    assert list(csv["lr"]) == [0.5, 0.5, 1.0, 1.0]
    assert list(csv["dtype"]) == ["float32", "float64"] * 2
    assert set(csv["status"]) == {"completed"}
    assert set(csv["verdict"]) <= {"exact", "agree"}
    assert (csv[csv["dtype"] == "float64"]["worst_rel_err"] <= EXACT).all(), csv
    assert list(csv["steps_done"]) == [3] * 4
    assert (csv["seconds"] > 0).all()
    # the row repeats the point's own files: final loss and the `all` row of summary.csv
    for row in csv.itertuples():
        loss = pd.read_csv(seq / row.point / "loss.csv")
        summary = pd.read_csv(seq / row.point / "summary.csv").set_index("param")
        assert row.final_loss_manual == loss["loss_manual"].iloc[-1]
        assert row.final_loss_torch == loss["loss_torch"].iloc[-1]
        assert row.worst_rel_err == summary.loc["all", "rel_err"]
        assert row.worst_ratio == summary.loc["all", "worst_ratio"]
    assert (seq / "sweep.png").read_bytes().startswith(PNG_MAGIC)
    assert list(table.columns) == list(csv.columns)
    assert sorted(p.name for p in seq.iterdir() if not p.is_dir()) == [
        ".handgrad", "config.toml", "sweep.csv", "sweep.png"]
    assert sorted(p.name for p in seq.parent.iterdir()) == ["jobs1", "jobs2", "threads2"]


def test_config_toml_round_trip(sweeps, tmp_path):
    """config.toml holds what the sweep ran: running it again rewrites sweep.csv (seconds
    aside) byte for byte."""
    seq = sweeps[0]
    config = tomllib.loads((seq / "config.toml").read_text(encoding="utf-8"))
    assert config == {"kind": "sweep", "experiment": "seed", "set": ["epochs=3"],
                      "grid": {"lr": ["0.5", "1.0"], "dtype": ["float32", "float64"]}}
    run_sweep(config["experiment"], config["grid"], overrides=config["set"],
              out=tmp_path / "again")
    pd.testing.assert_frame_equal(   # as text: every digit
        pd.read_csv(tmp_path / "again" / "sweep.csv", dtype=str).drop(columns="seconds"),
        pd.read_csv(seq / "sweep.csv", dtype=str).drop(columns="seconds"))


def test_redraw_recreates_the_png_from_the_csv(sweeps, tmp_path):
    for name in ("sweep.csv", "config.toml"):
        (tmp_path / name).write_bytes((sweeps[0] / name).read_bytes())
    assert redraw(tmp_path) == [str(tmp_path / "sweep.png")]
    data = (tmp_path / "sweep.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "sweep.csv", "sweep.png"]


def test_interrupted_sweep_keeps_the_points_done(tmp_path):
    """Ctrl-C after the first point: the folder is moved into place with that point, a
    sweep.csv listing it, config.toml and INTERRUPTED; nothing temporary is left."""
    def stop(row, done, total):
        raise KeyboardInterrupt

    out = tmp_path / "sw"
    with pytest.raises(KeyboardInterrupt):
        run_sweep("seed", {"lr": ["0.5", "1.0"]}, overrides=["epochs=2"], out=out,
                  on_point=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw"]
    assert sorted(p.name for p in out.iterdir()) == [".handgrad", "INTERRUPTED", "config.toml",
                                                    "lr=0.5", "sweep.csv"]
    assert list(pd.read_csv(out / "sweep.csv")["point"]) == ["lr=0.5"]
    assert "after 1 of 2 points" in (out / "INTERRUPTED").read_text(encoding="utf-8")


@pytest.mark.parametrize("other", [1, 2], ids=["loky-jobs2", "threading-jobs2"])
def test_results_do_not_depend_on_jobs(sweeps, other):
    seq, par = sweeps[0], sweeps[other]
    a = pd.read_csv(seq / "sweep.csv", dtype=str).drop(columns="seconds")
    b = pd.read_csv(par / "sweep.csv", dtype=str).drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)     # as text: every digit
    for point in POINTS:
        for name in ("loss.csv", "grads.csv", "summary.csv", "final_grads.csv"):
            assert (seq / point / name).read_bytes() == (par / point / name).read_bytes(), \
                (point, name)


def test_diverged_point_is_a_result_and_force_replaces(tmp_path, capsys):
    out = tmp_path / "sw"
    out.mkdir()
    (out / ".handgrad").write_text("handgrad sweep\n")   # an earlier sweep's folder
    (out / "old-file").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        sweep_cmd("seed", "--grid", "activation=identity", "--set", "lr=1e3", "--out", out)
    assert (out / "old-file").is_file()                           # refused: left untouched
    # identity activations at lr 1e3 overflow within a few steps: recorded, not an error
    assert sweep_cmd("seed", "--grid", "activation=identity,sigmoid", "--set", "lr=1e3",
                     "--set", "epochs=8", "--out", out, "--force") == 0
    assert not (out / "old-file").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw"]     # nothing set aside left
    csv = pd.read_csv(out / "sweep.csv")
    assert list(csv["status"]) == ["diverged", "completed"]
    assert csv.loc[0, "steps_done"] < 8 and csv.loc[0, "message"].startswith("diverged at step")
    stdout = capsys.readouterr().out
    assert "[2/2]" in stdout
    assert stdout.rstrip().endswith(f"sweep: 2 points (1 diverged); sweep directory {out}")


@pytest.mark.parametrize("grid, match", [
    (["lrr=0.5,1.0"], "unknown config key 'lrr'.*did you mean 'lr'"),
    (["lr=0.5,fast"], "lr = 'fast'.*expected a number"),
    (["dtype=float32,float16"], "unknown dtype"),           # RunConfig's own check, per point
    (["batch_size=2,8"], "batch_size = 8 is larger than dataset"),  # needs the data
    (["lr"], "expected KEY=V1,V2"),
    (["lr="], "expected KEY=V1,V2"),
    (["=0.5"], "expected KEY=V1,V2"),
    (["lr=0.5,,1.0"], "empty value"),
    (["lr=0.5,"], "empty value"),
    (["lr=0.5", "lr=1.0"], "given twice"),
    (["lr=1,1.0"], "value 1.0 is given twice"),
    (["out=a,b"], "sets out for every point"),
    (["epochs=1,2"], "both in --set and in --grid"),
    ([], "at least one --grid"),
])
def test_bad_grid_fails_before_anything_is_written(tmp_path, grid, match):
    args = [a for g in grid for a in ("--grid", g)]
    with pytest.raises(ConfigError, match=match):
        sweep_cmd("seed", *args, *TINY, "--out", tmp_path / "sw")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"jobs": 0}, "--jobs 0"),
    ({"hue": "dtype"}, "--hue 'dtype' is not a grid key"),
    ({"backend": "spark"}, "choose one of"),
    ({"backend": "ray"}, "choose one of"),      # dropped: no test ran it on a cluster
    ({"grid": {"lr": []}}, "empty value"),
])
def test_bad_arguments_to_run_sweep(tmp_path, kwargs, match):
    kwargs = {"grid": {"lr": ["0.5"]}, **kwargs}
    with pytest.raises(ConfigError, match=match):
        run_sweep("seed", kwargs.pop("grid"), out=tmp_path / "sw", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_missing_cluster_backend_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # as if not installed
    with pytest.raises(ConfigError, match=r"--backend dask needs the dask and distributed "
                                          r"packages: pip install 'handgrad\[dask\]'"):
        run_sweep("seed", {"lr": ["0.5"]}, out=tmp_path / "sw", backend="dask")
    assert list(tmp_path.iterdir()) == []


def test_points_lost_to_dying_workers_are_named_and_nothing_is_written(tmp_path,
                                                                       monkeypatch):
    """Every pool broken by a dying worker: after the retry, the points not done are named
    in one line, and no sweep folder (nor a temporary one) is left."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from experiments.core.backends import TasksLost
    from experiments.tools import sweep

    def dies(*args):
        raise TerminatedWorkerError("a worker died")

    monkeypatch.setattr(sweep, "_run_batch", dies)
    with pytest.raises(TasksLost) as lost:
        run_sweep("seed", {"lr": ["0.5", "1.0"]}, out=tmp_path / "sw", jobs=2)
    assert str(lost.value) == ("2 grid points lost: their worker processes died on every try "
                               "(lr=0.5, lr=1.0); nothing was written: run again")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow   # a new worker process imports torch
def test_a_killed_worker_process_is_replaced_and_its_points_run_again(sweeps, tmp_path,
                                                                      monkeypatch):
    """A loky worker killed mid-sweep (as the OOM killer would): the points not done run
    again in new workers; the sweep's CSVs are those of the sweep in one process."""
    import os
    import signal
    from pathlib import Path

    from experiments.tools import sweep

    batches, killed = [], []
    real = sweep._run_batch
    monkeypatch.setattr(sweep, "_run_batch", lambda p, todo, *a: (batches.append(todo),
                                                                  real(p, todo, *a)))

    def kill_a_worker(row, done, total):
        if not killed:
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
                workers = [int(c) for c in f.read().split() if "LokyProcess" in
                           Path(f"/proc/{c}/cmdline").read_text(errors="replace")]
            os.kill(workers[0], signal.SIGKILL)
            killed.append(workers[0])

    seq, out = sweeps[0], tmp_path / "killed"
    grid = {"lr": ["0.5", "1.0"], "dtype": ["float32", "float64"]}
    run_sweep("seed", grid, jobs=2, overrides=["epochs=3"], out=out, on_point=kill_a_worker)
    assert killed and len(batches) == 2 and len(batches[1]) >= 1, batches
    for point in POINTS:
        for name in ("loss.csv", "grads.csv", "summary.csv"):
            assert (out / point / name).read_bytes() == (seq / point / name).read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv").drop(columns="seconds"),
                                  pd.read_csv(seq / "sweep.csv").drop(columns="seconds"))


def test_cli_main_bad_grid_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    code = cli.main(["sweep", "seed", "--grid", "lr=0.5,fast", "--out", str(tmp_path / "sw")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert len(err.splitlines()) == 1 and err.startswith("handgrad: error: lr = 'fast'"), err
    assert list(tmp_path.iterdir()) == []


def test_parse_grid_and_point_names():
    assert parse_grid(["sizes=[3,4,1],[3,8,1]", "init=\"a,b.json\",uniform", "lr= 0.5 , 1"]) == {
        "sizes": ["[3,4,1]", "[3,8,1]"], "init": ['"a,b.json"', "uniform"], "lr": ["0.5", "1"]}
    assert _point_name([("sizes", "[3,4,1]"), ("init", '"w/x y.npz"')]) == \
        "sizes=3-4-1,init=w-x-y.npz"
    long = _point_name([("dataset", "csv:" + "d" * 300)])
    assert len(long.encode()) <= 200


def _sweep_figure(monkeypatch, tmp_path, loss, ratio, rel_err):
    """plot_sweep on a hand-made table (one grid key, lr); return the figure it saved."""
    from experiments.output import style
    figures = []
    real = style.save
    monkeypatch.setattr(style, "save", lambda fig, path, *a, **k: (figures.append(fig),
                                                                    real(fig, path, *a, **k)))
    n = len(loss)
    table = pd.DataFrame({"point": [f"lr={i}" for i in range(n)], "lr": [str(i) for i in range(n)],
                          "status": "completed", "final_loss_manual": loss,
                          "final_loss_torch": loss, "worst_rel_err": rel_err,
                          "worst_ratio": ratio, "verdict": "agree", "steps_done": 3,
                          "seconds": 0.1, "message": ""})
    plot_sweep(table, ["lr"], tmp_path / "sweep.png")
    (fig,) = figures
    return {ax.get_ylabel().split(",")[0]: ax for ax in fig.axes}


def test_sweep_axes_are_linear_under_a_decade_and_log_over_several(monkeypatch, tmp_path):
    axes = _sweep_figure(monkeypatch, tmp_path, loss=[0.32, 0.41, 0.47],
                         ratio=[0.32, 0.38, 0.47], rel_err=[2e-16, 5e-15, 3e-13])
    assert axes["final_loss_manual"].get_yscale() == "linear"
    assert axes["worst_ratio"].get_yscale() == "linear"
    assert axes["worst_rel_err"].get_yscale() == "log"      # 3 decades
    # the relative spread is written on the panel
    assert "spread" in axes["final_loss_manual"].get_title()


def test_sweep_differences_at_rounding_level_look_flat(monkeypatch, tmp_path):
    loss = [0.4, 0.4 * (1 + 2e-16), 0.4 * (1 + 6e-16)]
    axes = _sweep_figure(monkeypatch, tmp_path, loss=loss, ratio=[0.32, 0.38, 0.47],
                         rel_err=[2e-16, 5e-15, 3e-13])
    ax = axes["final_loss_manual"]
    assert ax.get_yscale() == "linear"
    low, high = ax.get_ylim()
    # the points span under 1% of the axis (not zoomed in to fill it with rounding noise)
    assert (max(loss) - min(loss)) / (high - low) < 0.01, (low, high)
