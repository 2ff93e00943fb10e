"""experiments.output.rundir: the run directory — its files, all or nothing on disk
(``atomic_folder``), exact CSVs (``write_csv``), and byte-identical reruns.
Column names and order are test_schema's; what the numbers mean is test_runner's.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from experiments.core.config import ConfigError, load_config
from experiments.core.runner import run_experiment
from experiments.output.rundir import atomic_folder, check_out, write_csv, write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(name: str, *overrides: str):
    return run_experiment(load_config(name, list(overrides)))


def hidden_entries(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def small_result():
    return run("seed", "steps=5", "log_every=1", "dtype=float32")


# -- what a run directory holds ----------------------------------------------------------------

def test_run_directory_contents(iris_run):
    r, out = iris_run
    assert sorted(p.name for p in out.iterdir()) == sorted([
        ".handgrad", "config.toml", "provenance.json", "loss.csv", "grads.csv", "summary.csv",
        "final_grads.csv", "grad_entries.csv", "predictions.csv", "diagnosis.csv",
        "report.md", "report.html"])  # plots=False; a small network: grad_entries.csv
    # the resolved config (sizes filled in from the data) re-loads to the same RunConfig
    assert load_config(str(out / "config.toml")) == r.config
    assert r.config.sizes == (4, 4, 3)
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["status"] == "completed" and prov["steps_done"] == 10
    assert prov["torch"] == torch.__version__ and prov["numpy"] == np.__version__


def test_csvs_read_back_bit_for_bit(iris_run):
    # shortest-repr floats: pandas' default parser reads every value back exactly
    r, out = iris_run
    for name, frame in (("loss.csv", r.loss), ("grads.csv", r.grads),
                        ("summary.csv", r.summary), ("final_grads.csv", r.final_grads),
                        ("predictions.csv", r.predictions)):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), frame, check_dtype=False,
                                      check_exact=True, obj=name)
    loss = pd.read_csv(out / "loss.csv")
    assert loss["step"].dtype.kind == "i" and loss["epoch"].dtype.kind == "i"


def test_write_csv_is_exact_and_plain(tmp_path):
    df = pd.DataFrame({"step": [0, 1], "x": [0.1, 1 / 3], "s": ["a", "b c"]})
    write_csv(df, tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_bytes()
    assert text == b"step,x,s\n0,0.1,a\n1,0.3333333333333333,b c\n"   # no index, \n, repr


def test_same_config_gives_byte_identical_files(tmp_path):
    overrides = ["batch_size=32", "epochs=2", "steps=0", "log_every=2", "fd_every=3",
                 "momentum=0.9", "nesterov=true", "weight_decay=0.01", "seed=3"]
    a = write_run(run("iris", *overrides), tmp_path / "a", plots=False)
    b = write_run(run("iris", *overrides), tmp_path / "b", plots=False)
    names = sorted(p.name for p in a.glob("*.csv"))
    assert names == ["diagnosis.csv", "final_grads.csv", "grad_entries.csv", "grads.csv",
                     "loss.csv", "predictions.csv", "summary.csv"]
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # config.toml's comment header names its own path ("Re-run with: handgrad run a/..."):
    # everything below it must match byte for byte.
    def body(p):
        return [x for x in p.read_bytes().splitlines() if not x.startswith(b"#")]
    assert body(a / "config.toml") == body(b / "config.toml")


def test_plots_are_written_and_linked(small_result, tmp_path):
    out = write_run(small_result, tmp_path / "run")     # float32: every figure applies
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["loss.png", "grad_diff.png", "weight_drift.png", "grad_heatmap.png",
                           "grad_entry.png", "float64_reference.png"])
    report = (out / "report.md").read_text(encoding="utf-8")
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
        assert f"]({name})" in report, name


# -- all or nothing ------------------------------------------------------------------------------

def test_atomic_folder_fills_a_hidden_folder_then_renames_it(tmp_path):
    out = tmp_path / "run"
    with atomic_folder(out, force=False) as tmp:
        assert tmp == tmp_path / f".run.tmp-{os.getpid()}" and tmp.is_dir()
        assert not out.exists()                          # nothing visible while writing
        (tmp / "a.txt").write_text("a", encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (out / "a.txt").read_text(encoding="utf-8") == "a"


def test_atomic_folder_removes_its_folder_on_any_exception(tmp_path):
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc), atomic_folder(tmp_path / "run", force=False) as tmp:
            (tmp / "half.csv").write_text("step\n", encoding="utf-8")
            raise exc
        assert list(tmp_path.iterdir()) == []


def test_check_out_refuses_a_file_on_the_way(tmp_path):
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"notes\.txt is not a writable folder"):
        check_out(tmp_path / "notes.txt" / "a" / "run", force=False)
    check_out(tmp_path / "a" / "b" / "run", force=False)     # missing parents are fine


def test_check_out_names_the_kind_of_folder(tmp_path):
    with atomic_folder(tmp_path / "b", False, kind="bench"):
        pass
    with pytest.raises(ConfigError, match=r"^bench folder .*/b already exists; pass --force"):
        check_out(tmp_path / "b", False, "bench")
    with pytest.raises(ConfigError, match=r"^run directory .*/b already exists"):
        check_out(tmp_path / "b", False)


def test_force_replaces_only_a_folder_of_the_same_kind(tmp_path):
    """`bench --force --out STUDY` must not delete a study (nor a run a sweep of runs)."""
    with atomic_folder(tmp_path / "s", False, kind="study") as tmp:
        (tmp / "keep.csv").write_text("x\n")
    for kind in ("run", "bench", "sweep"):
        with pytest.raises(ConfigError, match=r"is a handgrad study folder, not a"):
            check_out(tmp_path / "s", True, kind)
        with pytest.raises(ConfigError, match=r"is a handgrad study folder"):
            with atomic_folder(tmp_path / "s", True, kind=kind):
                pass
    assert (tmp_path / "s" / "keep.csv").read_text() == "x\n"
    with atomic_folder(tmp_path / "s", True, kind="study") as tmp:   # its own kind: replaced
        pass
    assert not (tmp_path / "s" / "keep.csv").exists()


def test_write_run_refuses_existing_dir(small_result, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"already exists.*--force"):
        write_run(small_result, out, plots=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert hidden_entries(tmp_path) == []


def test_write_run_refuses_a_file(small_result, tmp_path):
    out = tmp_path / "run"
    out.write_text("not a dir", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a directory"):
        write_run(small_result, out, force=True, plots=False)
    assert out.read_text(encoding="utf-8") == "not a dir"


def test_write_run_force_replaces(small_result, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".handgrad").write_text("handgrad run\n")   # an earlier handgrad output
    (out / "old.txt").write_text("old", encoding="utf-8")
    write_run(small_result, out, force=True, plots=False)
    names = {p.name for p in out.iterdir()}
    assert "old.txt" not in names and "loss.csv" in names
    assert hidden_entries(tmp_path) == []               # no .run.tmp-* / .run.old-* left
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_write_run_creates_parents(small_result, tmp_path):
    out = write_run(small_result, tmp_path / "a" / "b" / "run", plots=False)
    assert (out / "loss.csv").is_file()
    assert hidden_entries(out.parent) == []


def failing_plots(monkeypatch):
    import experiments.output.plots

    def boom(run_dir):
        raise RuntimeError("plotting failed")
    monkeypatch.setattr(experiments.output.plots, "plot_run", boom)


def test_failure_while_writing_leaves_nothing(small_result, tmp_path, monkeypatch):
    failing_plots(monkeypatch)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_run(small_result, tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_replacing_keeps_the_old_run(small_result, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".handgrad").write_text("handgrad run\n")   # an earlier handgrad output
    (out / "old.txt").write_text("old", encoding="utf-8")
    failing_plots(monkeypatch)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_run(small_result, out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert sorted(p.name for p in out.iterdir()) == [".handgrad", "old.txt"]
