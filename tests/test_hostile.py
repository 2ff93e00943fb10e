"""Hostile inputs and faults around the run folder: each gets one line and exit 2 (or the
documented exit code), leaves nothing half-written, and never replaces what it should not.

Every test here failed before the fix it guards (a traceback, a silent overwrite, a
deleted folder, a lost run, a 3.4 GB predictions.csv).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from experiments import cli
from experiments.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, main
from experiments.core.config import MAX_LAYERS
from experiments.output import rundir

FAST = ["--quiet", "--no-plots"]


def handgrad(*args) -> int:
    return main([str(a) for a in args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("handgrad: error: "), err
    return lines[0]


def nothing_written(root: Path, out: Path) -> None:
    assert not out.exists(), f"{out} was written"
    left = [p for p in root.rglob(".*") if re.search(r"\.(tmp|old)-\d+$", p.name)]
    assert not left, left


# -- bad input: one line, exit 2, nothing written ----------------------------------------

def _npy_header(shape, dtype="<f8") -> bytes:
    """A .npy file's magic and header only: the data it announces is never there."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in members.items():
            z.writestr(name + ".npy", payload)
    return path


def _seed_params() -> dict:
    """The seed experiment's parameter dict (3-4-1, bias = false)."""
    rng = np.random.default_rng(0)
    return {"layers.0.weight": rng.normal(size=(4, 3)), "layers.1.weight": rng.normal(size=(1, 4))}


def _hostile_init(kind: str, tmp: Path) -> Path:
    if kind == "deep-json":
        p = tmp / "deep.json"
        p.write_text('{"layers.0.weight": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif kind == "huge-int-json":
        p = tmp / "bigint.json"
        p.write_text(json.dumps({k: v.tolist() for k, v in _seed_params().items()})
                     .replace("[[", "[[" + "9" * 400 + ", ", 1))
    elif kind == "npz-claims-1e12":
        members = {k: _array_bytes(v) for k, v in _seed_params().items()}
        members["layers.0.weight"] = _npy_header((10**6, 10**6))
        p = _write_npz(tmp / "claims.npz", members)
    elif kind == "npz-extra-array":   # announces 2 GiB; refused by its name, never read
        members = {k: _array_bytes(v) for k, v in _seed_params().items()}
        members["optimizer_state"] = _npy_header((2**28,))
        p = _write_npz(tmp / "extra.npz", members)
    elif kind == "npz-complex":
        params = _seed_params()
        params["layers.0.weight"] = params["layers.0.weight"] * (1 + 1j)
        p = tmp / "complex.npz"
        np.savez(p, **params)
    elif kind == "directory":
        p = tmp / "a_folder.npz"
        p.mkdir()
    else:
        raise AssertionError(kind)
    return p


def _array_bytes(a: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("kind, says", [
    ("deep-json", "nested too deeply"),
    ("huge-int-json", "cannot read parameters"),
    ("npz-claims-1e12", "has shape (1000000, 1000000), expected (4, 3)"),
    ("npz-extra-array", "unexpected array 'optimizer_state'"),
    ("npz-complex", "dtype complex128"),
    ("directory", "is a directory"),
])
def test_hostile_init_files(kind, says, tmp_path, capsys):
    path = _hostile_init(kind, tmp_path)
    out = tmp_path / "run"
    assert handgrad("run", "seed", "--set", f"init={path}", "--out", out, *FAST) == 2
    assert says in one_error_line(capsys)
    nothing_written(tmp_path, out)


def test_valid_npz_init_still_loads(tmp_path):
    """The header checks refuse only what is wrong: a correct file runs."""
    p = tmp_path / "ok.npz"
    np.savez(p, **_seed_params())
    assert handgrad("run", "seed", "--set", f"init={p}", "--set", "steps=2",
                    "--out", tmp_path / "run", *FAST) == 0


def test_deeply_nested_sizes_in_toml(tmp_path, capsys):
    cfg = tmp_path / "deep.toml"
    cfg.write_text("sizes = " + "[" * 5000 + "]" * 5000 + "\n")
    assert handgrad("run", cfg, "--out", tmp_path / "run", *FAST) == 2
    assert "nested too deeply" in one_error_line(capsys)
    assert handgrad("run", "seed", "--set", "sizes=" + "[" * 5000 + "]" * 5000,
                    "--out", tmp_path / "run", *FAST) == 2
    assert "nested too deeply" in one_error_line(capsys)
    nothing_written(tmp_path, tmp_path / "run")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir"])
def test_csv_that_is_not_a_regular_file(special, tmp_path, capsys):
    if special == "fifo":
        path = tmp_path / "pipe.csv"
        os.mkfifo(path)
    elif special == "dir":
        path = tmp_path / "folder.csv"
        path.mkdir()
    else:
        path = Path(special)
        if not path.exists():
            pytest.skip("no /dev/zero on this system")
    assert handgrad("run", "seed", "--set", f"dataset=csv:{path}", "--out",
                    tmp_path / "run", *FAST) == 2
    line = one_error_line(capsys)
    assert "does not exist" not in line
    assert ("is a directory" if special == "dir" else "not a regular file") in line


def test_too_many_layers_is_refused_at_once(tmp_path, capsys):
    hidden = "[" + ",".join(["1"] * (MAX_LAYERS + 1)) + "]"
    assert handgrad("run", "seed", "--set", f"hidden={hidden}", "--out", tmp_path / "r",
                    *FAST) == 2
    assert f"at most {MAX_LAYERS} layers" in one_error_line(capsys)


def test_the_deepest_allowed_net_draws_a_bounded_heatmap():
    """MAX_LAYERS layers give 2·MAX_LAYERS parameters; the final-step heatmap draws at
    most HEATMAP_PANELS of them (128 panels took 10 GB to draw), the largest differences."""
    import pandas as pd

    from experiments.output import heatmap

    n = 2 * MAX_LAYERS
    final = pd.DataFrame([{"param": f"layers.{i}.weight", "row": r, "col": c,
                           "abs_diff": float(i + 1) * 1e-16}
                          for i in range(n) for r in range(2) for c in range(2)])
    fig = heatmap.heatmap_figure(final)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("layers.")]
    assert len(panels) == heatmap.HEATMAP_PANELS
    assert {ax.get_title().split()[0] for ax in panels} == {
        f"layers.{i}.weight" for i in range(n - heatmap.HEATMAP_PANELS, n)}
    assert f"the {heatmap.HEATMAP_PANELS} of {n} parameters" in fig._suptitle.get_text()


@pytest.mark.parametrize("value, words", [
    ("1" * 5000, "4300 digits"),                    # Python's int conversion limit
    (str(10**20), "at most 1e+12"),                 # np.arange of the logged steps overflowed
])
def test_huge_step_counts_are_one_line(tmp_path, capsys, value, words):
    assert handgrad("run", "seed", "--set", f"epochs={value}", "--out", tmp_path / "r",
                    *FAST) == 2
    assert words in one_error_line(capsys)
    cfg = tmp_path / "big.toml"
    cfg.write_text(f"epochs = {value}\n", encoding="utf-8")
    assert handgrad("run", cfg, "--out", tmp_path / "r", *FAST) == 2
    assert words in one_error_line(capsys)
    nothing_written(tmp_path, tmp_path / "r")


def test_network_too_large_for_memory_is_refused_up_front(tmp_path, capsys):
    assert handgrad("run", "seed", "--set", "sizes=[3,100000,100000,1]", "--out",
                    tmp_path / "r", *FAST) == 2
    line = one_error_line(capsys)
    assert "10,000,600,001 parameters" in line and "GiB" in line


# -- whole-number CSV targets ----------------------------------------------------------------

def _counts_csv(tmp: Path, distinct: int, n: int = 2000) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    y = rng.permutation(np.arange(n) % distinct) * 7 + 100      # prices: whole numbers
    path = tmp / "prices.csv"
    path.write_text("a,b,price\n" + "".join(f"{float(a)!r},{float(b)!r},{int(t)}\n"
                                            for (a, b), t in zip(x, y, strict=True)))
    return path


def test_whole_number_target_is_a_value_under_regression_losses(tmp_path):
    from experiments.core.datasets import load_dataset
    path = _counts_csv(tmp_path, distinct=2000)
    data = load_dataset(f"csv:{path}", loss="mse", seed=0)
    assert data.n_outputs == 1 and data.Y.shape == (2000, 1)
    assert data.Y.min() == 100 and data.Y.max() == 100 + 7 * 1999   # the raw values
    explicit = load_dataset(f"csv:{path}", loss="mse", seed=0, target_kind="value")
    np.testing.assert_array_equal(explicit.Y, data.Y)


def test_more_than_1000_classes_is_refused(tmp_path, capsys):
    path = _counts_csv(tmp_path, distinct=2000)
    out = tmp_path / "run"
    assert handgrad("run", "seed", "--set", f"dataset=csv:{path}", "--set",
                    "loss=cross_entropy", "--out", out, *FAST) == 2
    assert "2,000 distinct values: more than 1000 classes" in one_error_line(capsys)
    assert handgrad("run", "seed", "--set", f"dataset=csv:{path}", "--set",
                    "target_kind=class", "--out", out, *FAST) == 2
    one_error_line(capsys)
    nothing_written(tmp_path, out)


def test_target_kind_class_keeps_few_classes(tmp_path):
    from experiments.core.datasets import load_dataset
    path = _counts_csv(tmp_path, distinct=3, n=30)
    data = load_dataset(f"csv:{path}", loss="half_sse", seed=0, target_kind="class")
    assert data.n_outputs == 3 and data.Y.shape == (30, 3)        # one-hot
    assert load_dataset(f"csv:{path}", loss="half_sse", seed=0).n_outputs == 1


# -- the run folder: races and fault windows -------------------------------------------------

def test_two_runs_to_one_folder_never_both_succeed(tmp_path):
    out = tmp_path / "same"
    cmd = [sys.executable, "-m", "experiments", "run", "seed", "--set", "epochs=300",
           "--out", str(out), *FAST]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes.count(0) == 1, results
    assert all(rc == EXIT_BAD_INPUT for rc in codes if rc), results
    for rc, err in results:
        if rc:
            assert len(err.splitlines()) == 1, err
            assert "already exists" in err or "written by another process" in err, err
    assert (out / "summary.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _a_run_folder(path, text):
    with rundir.atomic_folder(path, force=False) as tmp:
        (tmp / "who.txt").write_text(text)


def test_force_writer_whose_old_folder_was_set_aside_by_another(tmp_path, monkeypatch):
    """Two --force writers: the other moved the old folder away between this one's check
    and its rename. This one just puts its folder in place (no raw FileNotFoundError)."""
    out = tmp_path / "out"
    _a_run_folder(out, "old")
    real, calls = rundir.check_out, []

    def check_then_vanish(path, force, kind="run", legacy=True):
        real(path, force, kind, legacy)
        calls.append(kind)
        if len(calls) == 2:   # the check just before the swap: the other writer moves it
            path.rename(tmp_path / ".elsewhere")
    monkeypatch.setattr(rundir, "check_out", check_then_vanish)
    with rundir.atomic_folder(out, force=True) as tmp:
        (tmp / "who.txt").write_text("new")
    assert (out / "who.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".elsewhere", "out"]


def test_force_writer_beaten_to_the_rename_discards_its_output_and_the_old(tmp_path,
                                                                          monkeypatch):
    """This --force writer set the old folder aside, then another process's folder landed
    at ``out``: one line says so, theirs stays, and no .old or .tmp folder is left."""
    out = tmp_path / "out"
    _a_run_folder(out, "old")
    real = rundir._rename_noreplace

    def beaten(src, dst):
        dst.mkdir()
        (dst / "who.txt").write_text("theirs")
        real(src, dst)
    monkeypatch.setattr(rundir, "_rename_noreplace", beaten)
    from experiments.core.config import ConfigError
    with pytest.raises(ConfigError, match=r"written by another process.*output was discarded"):
        with rundir.atomic_folder(out, force=True) as tmp:
            (tmp / "who.txt").write_text("mine")
    assert (out / "who.txt").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_folder_never_replaces_a_folder_created_meanwhile(tmp_path):
    from experiments.core.config import ConfigError
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="written by another process"):
        with rundir.atomic_folder(out, force=False) as tmp:
            (tmp / "mine.txt").write_text("mine")
            out.mkdir()                              # another run got there first
            (out / "theirs.txt").write_text("theirs")
    assert (out / "theirs.txt").read_text() == "theirs"
    assert not (out / "mine.txt").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_force_onto_a_symlink_is_refused(tmp_path, capsys):
    real = tmp_path / "real"
    assert handgrad("run", "seed", "--set", "steps=2", "--out", real, *FAST) == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    capsys.readouterr()
    assert handgrad("run", "seed", "--set", "steps=2", "--out", link, "--force", *FAST) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert link.is_symlink() and (real / "summary.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_force_never_deletes_a_folder_handgrad_did_not_write(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\chapter{Years of work}")
    assert handgrad("run", "seed", "--set", "steps=2", "--out", thesis, "--force", *FAST) == 2
    assert "did not write" in one_error_line(capsys)
    assert (thesis / "thesis.tex").read_text() == "\\chapter{Years of work}"


def test_force_replaces_a_handgrad_folder(tmp_path):
    out = tmp_path / "run"
    assert handgrad("run", "seed", "--set", "steps=2", "--out", out, *FAST) == 0
    assert (out / rundir.MARKER).is_file()
    assert handgrad("run", "seed", "--set", "steps=3", "--out", out, "--force", *FAST) == 0
    assert tomllib.loads((out / "config.toml").read_text())["steps"] == 3


def test_a_signal_while_files_are_written_keeps_the_finished_run(tmp_path, monkeypatch):
    """SIGTERM (and Ctrl-C) arriving during the write: the write finishes, then exit 130."""
    real = rundir.write_csv
    sent = []

    def write_then_signal(df, path):
        real(df, path)
        if not sent:
            sent.append(path.name)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(rundir, "write_csv", write_then_signal)
    out = tmp_path / "run"
    assert handgrad("run", "seed", "--set", "steps=5", "--out", out, *FAST) == EXIT_INTERRUPTED
    assert sent == ["loss.csv"]
    for name in ("config.toml", "loss.csv", "grads.csv", "summary.csv", "report.md"):
        assert (out / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stale_temporaries_of_killed_runs_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".old-run.tmp-{dead}"
    stale.mkdir()
    (stale / rundir.MARKER).write_text("handgrad run\n")
    foreign = tmp_path / f".notes.tmp-{dead}"       # no marker: not ours, left alone
    foreign.mkdir()
    alive = tmp_path / f".other.tmp-{os.getpid()}"   # a live process's: left alone
    alive.mkdir()
    (alive / rundir.MARKER).write_text("handgrad run\n")
    assert handgrad("run", "seed", "--set", "steps=2", "--out", tmp_path / "run", *FAST) == 0
    assert not stale.exists() and foreign.exists() and alive.exists()


def test_newline_in_out_cannot_inject_into_config_toml(tmp_path, capsys):
    out = tmp_path / "a\nlr = 99\nb"
    assert handgrad("run", "seed", "--set", "steps=2", "--out", out, *FAST) == 0
    cfg = tomllib.loads((out / "config.toml").read_text())
    assert cfg["lr"] == 1.0 and cfg["out"] == str(out)
    assert handgrad("run", out / "config.toml", "--out", tmp_path / "again", *FAST) == 0


def test_error_messages_are_one_line_even_with_newlines_in_paths(tmp_path, capsys):
    bad = tmp_path / "x\ny.toml"
    bad.write_text("lr = = 1\n")
    assert handgrad("run", bad, *FAST) == 2
    assert "not valid TOML" in one_error_line(capsys)


def test_sigterm_while_the_parser_imports_exits_130(monkeypatch, capsys):
    """A signal before any run starts: exit 130, one line, no traceback."""
    real = cli.build_parser

    def slow_parser(argv=None):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(argv)

    monkeypatch.setattr(cli, "build_parser", slow_parser)
    assert main(["list"]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip() == "handgrad: interrupted"


def test_ctrl_c_while_the_parser_imports_exits_130(monkeypatch, capsys):
    def interrupted(argv=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["list"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "handgrad: interrupted"


# -- threads ----------------------------------------------------------------------------------

def test_small_networks_run_on_one_thread_and_provenance_says_so(tmp_path):
    import torch
    before = torch.get_num_threads()
    out = tmp_path / "run"
    assert handgrad("run", "seed", "--set", "steps=2", "--out", out, *FAST) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["threads"]["torch"] == 1
    assert all(n == 1 for n in prov["threads"]["blas"].values())
    assert torch.get_num_threads() == before          # restored after the run
    assert handgrad("run", "seed", "--set", "steps=2", "--out", tmp_path / "two",
                    "--threads", "2", *FAST) == 0
    prov = json.loads((tmp_path / "two" / "provenance.json").read_text())
    assert prov["threads"]["torch"] == 2


def test_threads_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        handgrad("run", "seed", "--threads", "0", "--out", tmp_path / "r")
    assert exc.value.code == 2
    assert "expected a whole number >= 1" in capsys.readouterr().err
