"""Reliability, tried as a new user would: bad input, faults, divergence, numerics at the
edges, reproducibility, and property-based configs that must run or be refused cleanly.

The guarantees under test (README.md "Commands", exit codes; docs/csv-schema.md):
  * bad input -> exit 2, ONE stderr line ``handgrad: error: ...`` naming the problem, no
    traceback, nothing written (no run directory, no ``.NAME.tmp-*`` folder);
  * Ctrl-C / SIGTERM -> exit 130, and either nothing or a run directory marked
    ``INTERRUPTED`` whose CSVs are whole up to the last completed step;
  * nan/inf on either side -> exit 3, the step and the side recorded, CSVs valid to there;
  * saturation, zero gradients, tiny and huge learning rates -> no warnings, no nan;
  * same config, same machine -> byte-identical loss.csv, grads.csv, summary.csv.

Most runs go in-process through ``experiments.cli.main`` (fast); a few go through a real
``python -m experiments`` subprocess, which is what a user's shell sees.

Bugs found here are fixed; their tests stay as regression tests.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import manual
from experiments.cli import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED, main
from experiments.core.config import load_config
from experiments.core.reference import ReferenceSide

FAST = ["--quiet", "--no-plots"]
METRICS = ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch",
           "weight_max_abs_diff"]          # finite at every completed logged step
#: The fixed bound on a float64 run's manual-vs-autograd rel_err, beside the runner's own
#: verdict: u ≈ 1.1e-16 and chains of at most ~10^3 rounded operations in these tiny runs
#: keep two correct sides within ~1e-13.
F64_REL = 1e-12


def handgrad(*args) -> int:
    return main([str(a) for a in args])


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("handgrad: error: "), err
    return lines[0]


def leftovers(root: Path) -> list[Path]:
    """Temporary run folders (``.NAME.tmp-PID``, ``.NAME.old-PID``) anywhere under root."""
    return [p for p in root.rglob(".*") if re.search(r"\.(tmp|old)-\d+$", p.name)]


def python_m(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def check_csv_whole(path: Path) -> list[dict]:
    """Every record has the header's number of fields, the file ends with a newline (no
    truncated last line), and ``step`` is an integer in every row."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name}: last line truncated"
    rows = list(csv.reader(text.splitlines()))
    header = rows[0]
    for i, row in enumerate(rows[1:], start=2):
        assert len(row) == len(header), f"{path.name} line {i}: {len(row)} != {len(header)}"
    records = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    if "step" in header:
        for r in records:
            assert re.fullmatch(r"\d+", r["step"]), r
    return records


def check_run_csvs(out: Path, n_params: int) -> list[int]:
    """loss.csv steps strictly increasing; grads.csv has each of them once per parameter."""
    loss = check_csv_whole(out / "loss.csv")
    grads = check_csv_whole(out / "grads.csv")
    check_csv_whole(out / "summary.csv")
    steps = [int(r["step"]) for r in loss]
    assert all(a < b for a, b in itertools.pairwise(steps)), steps
    g_steps = [int(r["step"]) for r in grads]
    assert g_steps == [s for s in steps for _ in range(n_params)]
    return steps


# -- bad input -------------------------------------------------------------------------------

@pytest.fixture
def inputs(tmp_path):
    """Bad (and one good) input files a user might hand over, in tmp_path/in."""
    d = tmp_path / "in"
    d.mkdir()
    files = {
        "bad.toml": "lr = = 0.5\n",
        "notes.txt": "train the seed case please\n",
        "unknown_key.toml": 'dataset = "xor"\nlearning_rate = 0.5\n',
        "wrong_type.toml": 'dataset = "xor"\nlr = "fast"\n',
        "empty.csv": "",
        "header_only.csv": "a,b,label\n",
        "nonnumeric.csv": "a,b,label\n1,2,0\n3,four,1\n",
        "nan.csv": "a,b,label\n1,2,0\n3,NaN,1\n",
        "inf.csv": "a,b,label\n1,2,0\n3,4,-inf\n",
        "ragged.csv": "a,b,label\n1,2,0\n3,4\n5,6,1\n",
        "single_class.csv": "a,b,label\n1,2,1\n3,4,1\n5,6,1\n",
        "real.csv": "a,b,label\n1,2,0.5\n3,4,1.5\n5,6,-0.25\n",
        "good.csv": "a,b,label\n1,2,0\n3,4,1\n5,6,1\n7,8,0\n",
    }
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    # explicit weights for the seed case (sizes [3, 4, 1], bias = false)
    (d / "wrong_keys.json").write_text(json.dumps({"w1": np.ones((4, 3)).tolist(),
                                                   "w2": np.ones((1, 4)).tolist()}))
    # the classic mistake: numpy's (in, out) layout instead of torch's (out, in)
    np.savez(d / "transposed.npz", **{"layers.0.weight": np.ones((3, 4)),
                                      "layers.1.weight": np.ones((1, 4))})
    (d / "nan_weights.json").write_text(
        '{"layers.0.weight": [[NaN, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]],'
        ' "layers.1.weight": [[1, 1, 1, 1]]}')
    (d / "list.json").write_text("[1, 2, 3]")
    (d / "broken.json").write_text('{"layers.0.weight": [[1, 2')
    return d


CUDA = torch.cuda.is_available()

# (id, argv after `run`, fragments the one error line must contain); {d} = inputs folder
BAD_INPUT = [
    ("unknown-experiment", ["irsi"], ["unknown experiment 'irsi'", "did you mean 'iris'?"]),
    ("unknown-experiment-far", ["zzzzzz"], ["unknown experiment 'zzzzzz'", "handgrad list"]),
    ("config-missing", ["{d}/nope.toml"], ["nope.toml does not exist"]),
    ("config-not-toml", ["{d}/bad.toml"], ["bad.toml is not valid TOML", "line 1"]),
    ("config-text-file", ["{d}/notes.txt"], ["notes.txt is not valid TOML"]),
    ("config-is-a-directory", ["{d}"], ["is a directory, not a file"]),
    ("unknown-key-in-file", ["{d}/unknown_key.toml"],
     ["unknown config key 'learning_rate'", "unknown_key.toml"]),
    ("unknown-key-set", ["seed", "--set", "epoch=3"],
     ["unknown config key 'epoch'", "did you mean 'epochs'?"]),
    ("wrong-type-in-file", ["{d}/wrong_type.toml"],
     ["lr = 'fast'", "expected a number", "wrong_type.toml"]),
    ("wrong-type-int", ["seed", "--set", "epochs=1.5"], ["epochs = 1.5", "an integer"]),
    ("wrong-type-bool", ["seed", "--set", "nesterov=1"], ["nesterov = 1", "true or false"]),
    ("wrong-type-bias", ["seed", "--set", "bias=maybe"], ["bias = 'maybe'", "frozen"]),
    ("wrong-type-sizes", ["seed", "--set", 'sizes=[3,"four",1]'],
     ["sizes = [3, 'four', 1]", "list of integers"]),
    ("lr-zero", ["seed", "--set", "lr=0"], ["lr = 0.0", "must be > 0"]),
    ("lr-negative", ["seed", "--set", "lr=-0.5"], ["lr = -0.5", "must be > 0"]),
    ("lr-inf", ["seed", "--set", "lr=inf"], ["lr = inf", "finite"]),
    ("lr-beyond-float32", ["seed", "--set", "dtype=float32", "--set", "lr=1e300"],
     ["lr = 1e+300", "float32's range", 'dtype = "float64"']),
    ("momentum-negative", ["seed", "--set", "momentum=-0.1"], ["momentum = -0.1", ">= 0"]),
    ("momentum-nan", ["seed", "--set", "momentum=nan"], ["momentum = nan", "finite"]),
    ("nesterov-without-momentum", ["seed", "--set", "nesterov=true"],
     ["nesterov = True", "momentum > 0"]),
    ("batch-zero", ["seed", "--set", "batch_size=0"], ["batch_size = 0", ">= 1"]),
    ("batch-larger-than-data", ["seed", "--set", "batch_size=5"],
     ["batch_size = 5 is larger than dataset 'seed' (4 examples)", "at most 4"]),
    ("zero-width-hidden", ["seed", "--set", "hidden=[4,0]"], ["hidden = [4, 0]", ">= 1"]),
    ("zero-width-sizes", ["seed", "--set", "sizes=[3,0,1]"], ["sizes = [3, 0, 1]", ">= 1"]),
    ("sizes-not-fitting-data", ["seed", "--set", "sizes=[2,4,1]"],
     ["sizes = [2, 4, 1] do not fit dataset 'seed'", "3 input features", "[3, ..., 1]"]),
    ("sizes-wrong-outputs", ["iris", "--set", "sizes=[4,5,1]"],
     ["do not fit dataset 'iris'", "needs 3 outputs"]),
    ("unknown-activation", ["seed", "--set", "activation=softplus"],
     ["activation = 'softplus'", "'sigmoid'"]),
    ("unknown-output-activation", ["seed", "--set", "output_activation=softmax"],
     ["output_activation = 'softmax'"]),
    ("unknown-loss", ["seed", "--set", "loss=hinge"], ["loss = 'hinge'", "'cross_entropy'"]),
    ("unknown-dtype", ["seed", "--set", "dtype=float16"], ["dtype = 'float16'", "'float32'"]),
    ("unknown-device", ["seed", "--set", "device=tpu"], ["device = 'tpu'", "cuda:N"]),
    pytest.param("cuda-where-none", ["seed", "--set", "device=cuda"],
                 ["device = 'cuda' but no CUDA device is available", 'device = "cpu"'],
                 marks=pytest.mark.skipif(CUDA, reason="a CUDA device is present here")),
    ("bce-on-identity-outputs", ["seed", "--set", "loss=bce", "--set",
                                 "output_activation=identity"],
     ["loss = 'bce'", "output_activation = \"sigmoid\""]),
    ("cross-entropy-real-targets", ["seed", "--set", "dataset=worked-2-2-2", "--set",
                                    "loss=cross_entropy"],
     ["cross_entropy needs integer class labels", "'worked-2-2-2'"]),
    ("cross-entropy-real-csv", ["seed", "--set", "dataset=csv:{d}/real.csv", "--set",
                                "loss=cross_entropy"],
     ["cross_entropy needs integer class labels", "column 'label'"]),
    ("bce-targets-outside-0-1", ["seed", "--set", "dataset=csv:{d}/real.csv", "--set",
                                 "loss=bce"],
     ["bce needs targets in [0, 1]", "[-0.25, 1.5]"]),
    ("csv-missing", ["seed", "--set", "dataset=csv:{d}/nope.csv"],
     ["CSV file", "nope.csv does not exist"]),
    ("csv-empty", ["seed", "--set", "dataset=csv:{d}/empty.csv"], ["empty.csv is empty"]),
    ("csv-header-only", ["seed", "--set", "dataset=csv:{d}/header_only.csv"],
     ["header_only.csv has a header but no data rows"]),
    ("csv-non-numeric", ["seed", "--set", "dataset=csv:{d}/nonnumeric.csv"],
     ["non-numeric value 'four'", "column 'b'", "line 3"]),
    ("csv-nan", ["seed", "--set", "dataset=csv:{d}/nan.csv"],
     ["non-finite value 'NaN'", "column 'b'", "line 3"]),
    ("csv-inf", ["seed", "--set", "dataset=csv:{d}/inf.csv"],
     ["non-finite value '-inf'", "column 'label'", "line 3"]),
    ("csv-ragged", ["seed", "--set", "dataset=csv:{d}/ragged.csv"],
     ["ragged rows", "line 3 has 2 fields but the header has 3"]),
    ("csv-missing-target", ["seed", "--set", "dataset=csv:{d}/good.csv", "--set",
                            "target=lable"],
     ["target column 'lable' is not in", "did you mean 'label'?"]),
    ("csv-single-class-bce", ["seed", "--set", "dataset=csv:{d}/single_class.csv", "--set",
                              "loss=bce"],
     ["single class (value 1)", "bce needs at least 2 classes"]),
    ("csv-single-class-ce", ["seed", "--set", "dataset=csv:{d}/single_class.csv", "--set",
                             "loss=cross_entropy"],
     ["single class (value 1)", "cross_entropy needs at least 2 classes"]),
    ("init-missing", ["seed", "--set", "init={d}/nope.json"],
     ["init file", "nope.json does not exist"]),
    ("init-wrong-keys", ["seed", "--set", "init={d}/wrong_keys.json"],
     ["parameter keys do not match sizes [3, 4, 1]", "missing ['layers.0.weight'",
      "unexpected ['w1', 'w2']"]),
    ("init-wrong-shape", ["seed", "--set", "init={d}/transposed.npz"],
     ["layers.0.weight has shape (3, 4), expected (4, 3)"]),
    ("init-nan", ["seed", "--set", "init={d}/nan_weights.json"],
     ["layers.0.weight contains NaN or inf"]),
    ("init-not-an-object", ["seed", "--set", "init={d}/list.json"],
     ["expected a JSON object"]),
    ("init-broken-json", ["seed", "--set", "init={d}/broken.json"],
     ["broken.json: cannot read parameters"]),
]


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("case", "argv", "fragments"), BAD_INPUT,
                         ids=[_case_id(c) for c in BAD_INPUT])
def test_bad_input_one_line_exit_2_nothing_written(case, argv, fragments, inputs, tmp_path,
                                                   capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)         # runs/NAME, the default out, would land here
    before = sorted(p.name for p in inputs.iterdir())
    argv = [a.replace("{d}", str(inputs)) for a in argv]
    fragments = [f.replace("{d}", str(inputs)) for f in fragments]
    out = tmp_path / "runs" / "r"
    code = handgrad("run", *argv, "--out", out, *FAST)
    captured = capsys.readouterr()
    assert code == EXIT_BAD_INPUT, captured
    line = one_error_line(captured.err)
    for f in fragments:
        assert f in line, f"{f!r} not in {line!r}"
    assert captured.out == ""
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert sorted(p.name for p in inputs.iterdir()) == before
    assert leftovers(tmp_path) == []


REAL_PROCESS_BAD_INPUT = [
    (["sed"], "unknown experiment 'sed': did you mean 'seed'?"),
    (["seed", "--set", "dataset=csv:{d}/ragged.csv"], "line 3 has 2 fields"),
    (["seed", "--set", "init={d}/transposed.npz"], "has shape (3, 4), expected (4, 3)"),
]


def test_bad_input_and_refusal_to_overwrite_through_real_processes(inputs, tmp_path):
    """What a shell sees (python -m experiments): the three bad inputs and an attempt to
    run into an existing run directory, as four processes at once (they are independent)."""
    existing = tmp_path / "existing"
    assert handgrad("run", "xor", "--set", "steps=2", "--out", existing, *FAST) == 0
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    jobs = [([a.replace("{d}", str(inputs)) for a in argv] + ["--out", f"runs/r{i}"], frag)
            for i, (argv, frag) in enumerate(REAL_PROCESS_BAD_INPUT)]
    jobs.append((["xor", "--set", "steps=5", "--set", "lr=2", "--out", str(existing), *FAST],
                 f"run directory {existing} already exists; pass --force"))
    procs = [subprocess.Popen([sys.executable, "-m", "experiments", "run", *argv],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for argv, _ in jobs]
    for proc, (argv, fragment) in zip(procs, jobs, strict=True):
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == EXIT_BAD_INPUT, (argv, stdout, stderr)
        assert fragment in one_error_line(stderr), argv
        assert "Warning" not in stderr and stdout == "", argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "in"]
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before   # untouched
    assert leftovers(tmp_path) == []


# -- faults: interrupts ------------------------------------------------------------------------

def _wait_until_training(proc: subprocess.Popen, timeout: float = 90) -> bytes:
    """Read the progress bar on stderr until it shows completed steps."""
    buf, t0 = b"", time.monotonic()
    fd = proc.stderr.fileno()
    while time.monotonic() - t0 < timeout:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            if re.search(rb"\| *[1-9]\d*/200000 ", buf):
                return buf
    raise AssertionError(f"no training progress after {timeout} s: {buf[-500:]!r}")


def test_sigint_and_sigterm_mid_training_leave_a_marked_consistent_run(tmp_path):
    """Ctrl-C and SIGTERM, each sent to a real ``python -m experiments`` process once its
    progress bar shows training steps (``--progress``: stderr is a pipe here; both processes
    run at once, to halve the wait)."""
    sigs = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "experiments", "run", "seed", "--set", "epochs=200000",
         "--out", str(tmp_path / name), "--no-plots", "--progress"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in sigs}
    outputs = {}
    try:
        early = {}
        for name, proc in procs.items():
            early[name] = _wait_until_training(proc)
            time.sleep(0.3)
            proc.send_signal(sigs[name])
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=120)
            outputs[name] = (proc.returncode, stdout.decode(), (early[name] + stderr).decode())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert leftovers(tmp_path) == []
    for name, (code, stdout, stderr) in outputs.items():
        assert code == EXIT_INTERRUPTED, (name, stdout, stderr[-2000:])
        assert "Traceback" not in stderr and "Warning" not in stderr, (name, stderr[-2000:])
        # the signal came after the progress bar showed a completed step, so step 0 (logged)
        # is kept: the run directory must be there
        out = tmp_path / name
        assert out.is_dir(), (name, stdout, stderr[-2000:])
        assert (out / "INTERRUPTED").read_text(encoding="utf-8").startswith("interrupted")
        steps = check_run_csvs(out, n_params=2)
        assert steps and steps[0] == 0 and steps[-1] < 200000, name
        assert all(b - a == 10 for a, b in itertools.pairwise(steps)), name  # log_every 10
        assert "interrupted: interrupted during step" in stdout, name
        prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
        assert prov["status"] == "interrupted", name
        loss = pd.read_csv(out / "loss.csv")
        assert np.isfinite(loss[["loss_manual", "loss_torch"]].to_numpy()).all(), name


def _interrupt_at_call(monkeypatch, n: int):
    """Make the torch side's n-th evaluate call raise KeyboardInterrupt."""
    original = ReferenceSide.evaluate
    calls = {"n": 0}

    def patched(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)
    monkeypatch.setattr(ReferenceSide, "evaluate", patched)


def test_interrupt_in_process_keeps_whole_steps(tmp_path, monkeypatch, capsys):
    _interrupt_at_call(monkeypatch, 38)          # during step 37, after logged step 35
    out = tmp_path / "D"
    code = handgrad("run", "seed", "--set", "steps=100", "--set", "log_every=5", "--out",
                    out, *FAST)
    assert code == EXIT_INTERRUPTED
    status = capsys.readouterr().out.splitlines()[-1]       # after --quiet's verdict line
    assert status.startswith("interrupted: interrupted during step 37")
    assert (out / "INTERRUPTED").is_file()
    assert check_run_csvs(out, n_params=2) == [0, 5, 10, 15, 20, 25, 30, 35]
    grads = pd.read_csv(out / "grads.csv")
    assert np.isfinite(grads[METRICS].to_numpy()).all()
    assert leftovers(tmp_path) == []


def test_interrupt_before_the_first_step(tmp_path, monkeypatch, capsys):
    _interrupt_at_call(monkeypatch, 1)
    out = tmp_path / "D"
    assert handgrad("run", "seed", "--set", "steps=10", "--out", out, *FAST) == EXIT_INTERRUPTED
    assert "Traceback" not in capsys.readouterr().err
    # the run directory is written, marked, with CSVs that hold their headers only
    assert (out / "INTERRUPTED").is_file()
    assert check_run_csvs(out, n_params=2) == []
    assert not (out / "final_grads.csv").exists() and not (out / "predictions.csv").exists()
    assert leftovers(tmp_path) == []


def test_interrupt_while_writing_leaves_nothing(tmp_path, monkeypatch, capsys):
    import experiments.output.rundir as rundir

    original, calls = rundir.write_csv, {"n": 0}

    def interrupted_write(df, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(df, path)
    monkeypatch.setattr(rundir, "write_csv", interrupted_write)
    out = tmp_path / "D"
    assert handgrad("run", "xor", "--set", "steps=3", "--out", out, *FAST) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "handgrad: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_writes_no_predictions(tmp_path, monkeypatch, capsys):
    # Interrupted inside step 37, after the manual side's forward pass but before torch's:
    # the two sides' last forward passes belong to different steps, so no predictions are
    # written (rather than ones labelled with a step they do not come from).
    _interrupt_at_call(monkeypatch, 38)
    out = tmp_path / "D"
    assert handgrad("run", "seed", "--set", "steps=100", "--set", "log_every=5", "--out",
                    out, "--no-plots") == EXIT_INTERRUPTED
    assert "Last forward pass" not in capsys.readouterr().out
    assert not (out / "predictions.csv").exists()
    assert "## Predictions" not in (out / "report.md").read_text(encoding="utf-8")


# -- divergence --------------------------------------------------------------------------------

def _poison(monkeypatch, cls, at_call: int, *, loss: bool):
    """``cls.loss_and_gradients`` (the torch side's: ``ReferenceSide.evaluate``) returns a
    nan loss (loss=True) or, with a finite loss, an inf gradient entry (loss=False) on its
    ``at_call``-th call."""
    method = "evaluate" if cls is ReferenceSide else "loss_and_gradients"
    original = getattr(cls, method)
    calls = {"n": 0}

    def patched(self, *args, **kwargs):
        E, g = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] != at_call:
            return E, g
        if loss:
            return math.nan, g
        g = dict(g)
        k = next(iter(g))
        bad = g[k].clone() if isinstance(g[k], torch.Tensor) else g[k].copy()
        bad.reshape(-1)[0] = math.inf
        g[k] = bad
        return E, g
    monkeypatch.setattr(cls, method, patched)


@pytest.mark.parametrize(("cls", "loss", "log_every", "side"), [
    (manual.MLP, True, 5, "the manual side"),         # nan loss at an unlogged step
    (ReferenceSide, True, 5, "the torch side"),
    (manual.MLP, False, 1, "the manual side"),        # inf gradient, finite loss
    (ReferenceSide, False, 1, "the torch side"),
], ids=["manual-loss", "torch-loss", "manual-grad", "torch-grad"])
def test_one_sided_divergence_names_the_side_and_step(cls, loss, log_every, side, tmp_path,
                                                      monkeypatch, capsys):
    _poison(monkeypatch, cls, at_call=8, loss=loss)  # step 7
    out = tmp_path / "D"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = handgrad("run", "seed", "--set", "steps=20", "--set", f"log_every={log_every}",
                        "--out", out, *FAST)
    captured = capsys.readouterr()
    assert code == EXIT_DIVERGED
    assert captured.err == (f"handgrad: diverged at step 7: {side} first (a non-finite "
                            f"loss or gradient; lr = 1.0)\n")
    steps = check_run_csvs(out, n_params=2)
    assert steps[-1] == 7 and steps[:-1] == list(range(0, 7, log_every))
    loss_df = pd.read_csv(out / "loss.csv")
    assert np.isfinite(loss_df.iloc[:-1][["loss_manual", "loss_torch"]].to_numpy()).all()
    grads = pd.read_csv(out / "grads.csv")
    assert np.isfinite(grads[grads["step"] < 7][METRICS].to_numpy()).all()
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["status"] == "diverged" and prov["steps_done"] == 7
    assert f"step 7: {side}" in prov["message"]
    assert "diverged" in (out / "report.md").read_text(encoding="utf-8")


def test_non_finite_gradient_at_an_unlogged_step_is_caught_at_that_step(tmp_path,
                                                                       monkeypatch, capsys):
    _poison(monkeypatch, manual.MLP, at_call=8, loss=False)
    code = handgrad("run", "seed", "--set", "steps=20", "--set", "log_every=5", "--out",
                    tmp_path / "D", *FAST)
    assert code == EXIT_DIVERGED
    assert "diverged at step 7: the manual side" in capsys.readouterr().err


@pytest.fixture
def blowup_init(tmp_path):
    """Weights 100 on an identity network: ‖g‖ ~ 1e8, so lr 1e307 overflows the update."""
    path = tmp_path / "w100.json"
    path.write_text(json.dumps({"layers.0.weight": np.full((4, 3), 100.0).tolist(),
                                "layers.1.weight": np.full((1, 4), 100.0).tolist()}))
    return path


def test_non_finite_weights_after_the_last_update_are_divergence(blowup_init, tmp_path,
                                                                 capsys):
    out = tmp_path / "D"
    code = handgrad("run", "seed", "--set", "steps=1", "--set", "lr=1e307", "--set",
                    "activation=identity", "--set", f"init={blowup_init}", "--out", out, *FAST)
    assert code == EXIT_DIVERGED, capsys.readouterr()
    assert "diverged at step 0: both sides" in capsys.readouterr().err


def test_diverged_run_keeps_the_summary_to_finite_steps(blowup_init, tmp_path, capsys):
    out = tmp_path / "D"
    code = handgrad("run", "seed", "--set", "steps=2", "--set", "lr=1e307", "--set",
                    "activation=identity", "--set", f"init={blowup_init}", "--out", out, *FAST)
    assert code == EXIT_DIVERGED
    # step 0's update overflows the weights; step 1's loss is where it shows: step 0 is named
    assert "diverged at step 0: both sides" in capsys.readouterr().err
    assert check_run_csvs(out, n_params=2) == [0, 1]
    summary = pd.read_csv(out / "summary.csv").set_index("param")
    assert (summary["worst_step"] == 0).all()
    assert np.isfinite(summary[["max_abs_diff", "rel_err"]].to_numpy()).all()
    # (the loss row has no cosine: a gradient's column)
    assert np.isfinite(summary.drop("loss")["min_cosine"]).all()


def test_diverged_run_with_plots_prints_no_warnings(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = handgrad("run", "iris", "--set", "standardize=true", "--set",
                        "activation=relu", "--set", "output_activation=identity", "--set",
                        "loss=mse", "--set", "lr=1e6", "--set", "batch_size=full", "--set",
                        "steps=50", "--set", "log_every=10", "--out", tmp_path / "D",
                        "--quiet")
    assert code == EXIT_DIVERGED


# -- numerics at the edges ------------------------------------------------------------------

def run_quietly(*args, plots: bool = False) -> int:
    """``handgrad run ...`` in-process with every warning an error (``-W error``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return handgrad("run", *args, "--quiet", *([] if plots else ["--no-plots"]))


def finite_metrics(out: Path) -> pd.DataFrame:
    """No nan anywhere (no 0·inf); rel_tol finite wherever a gradient is non-zero. Where
    both are exactly 0 the step is ``exact`` whatever its tolerance, and rel_tol =
    2γ_m·‖G̃‖/tiny may be inf (reported as an observation, not a failure). A float64 run
    also holds the fixed bound F64_REL."""
    grads = pd.read_csv(out / "grads.csv")
    assert np.isfinite(grads[METRICS].to_numpy()).all(), grads[METRICS]
    assert (grads["rel_tol"] > 0).all(), grads["rel_tol"]           # nan fails this too
    nonzero = (grads["norm_manual"] > 0) | (grads["norm_torch"] > 0)
    assert np.isfinite(grads.loc[nonzero, "rel_tol"]).all(), grads[nonzero]
    loss = pd.read_csv(out / "loss.csv")
    assert np.isfinite(loss.drop(columns=["step", "epoch"]).to_numpy()).all(), loss
    if load_config(str(out / "config.toml")).dtype == "float64":
        assert (grads["rel_err"] <= F64_REL).all(), grads.loc[grads["rel_err"].idxmax()]
    return grads


SATURATING = {                                    # seed case, |z| up to 3e4 in layer 0
    "layers.0.weight": [[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4], [5e3, 5e3, -1e4],
                        [1e4, 1e4, 1e4]],
    "layers.1.weight": [[1e4, -1e4, 1e4, -1e4]],
}


@pytest.mark.parametrize(("extra", "plots"), [
    (["loss=half_sse"], True),
    (["loss=bce"], False),
    (["loss=mse", "dtype=float32"], False),
], ids=["half_sse-plots", "bce", "mse-float32"])
def test_saturated_sigmoids(extra, plots, tmp_path):
    init = tmp_path / "saturating.json"
    init.write_text(json.dumps(SATURATING))
    sets = [x for e in ["steps=3", f"init={init}", *extra] for x in ("--set", e)]
    out = tmp_path / "D"
    assert run_quietly("seed", *sets, "--out", out, plots=plots) == 0
    grads = finite_metrics(out)
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["verdict"] != "differ").all(), summary
    both_zero = (grads["norm_manual"] == 0) & (grads["norm_torch"] == 0)
    assert both_zero.any()             # saturation: σ' = 0 exactly somewhere
    assert (grads.loc[both_zero, "rel_err"] == 0).all()
    assert (grads.loc[both_zero, "cosine"] == 1).all()
    if plots:
        assert list(out.glob("*.png"))


def test_dead_relu_zero_gradients(tmp_path):
    init = tmp_path / "dead.json"                 # every hidden pre-activation < 0
    init.write_text(json.dumps({"layers.0.weight": [[-1.0, -2.0, -1.5]] * 4,
                                "layers.0.bias": [-5.0, -4.0, -3.0, -2.0],
                                "layers.1.weight": [[0.5, -0.5, 0.25, 1.0]],
                                "layers.1.bias": [0.1]}))
    out = tmp_path / "D"
    assert run_quietly("seed", "--set", "steps=3", "--set", "activation=relu", "--set",
                       "output_activation=sigmoid", "--set", "bias=true", "--set",
                       f"init={init}", "--out", out, plots=True) == 0
    grads = finite_metrics(out)
    dead = grads[grads["param"] != "layers.1.bias"]
    assert (dead[["norm_manual", "norm_torch", "max_abs_diff", "rel_err"]] == 0).all().all()
    assert (dead["cosine"] == 1).all()
    live = grads[grads["param"] == "layers.1.bias"]
    assert (live["norm_manual"] > 0).all()
    summary = pd.read_csv(out / "summary.csv").set_index("param")
    assert summary.loc["layers.0.weight", "verdict"] == "exact"
    assert summary.loc["all", "verdict"] != "differ"


@pytest.mark.parametrize("args", [
    ["dataset=sparse", "activation=relu", "output_activation=sigmoid", "batch_size=7"],
    ["lr=1e-12"],
    ["lr=1e300"],
    ["lr=1e300", "loss=bce"],
    ["lr=1e300", "loss=cross_entropy"],
    ["lr=1e300", "activation=relu", "output_activation=sigmoid", "loss=bce"],
], ids=["sparse-relu", "lr-1e-12", "lr-1e300", "lr-1e300-bce", "lr-1e300-ce",
        "lr-1e300-relu"])
def test_edge_learning_rates_and_sparse_inputs(args, tmp_path):
    # lr 1e300 saturates every sigmoid (or kills every relu) after one update: the
    # gradients become exact zeros or stay finite, so all six runs complete
    sets = [x for e in ["steps=3", *args] for x in ("--set", e)]
    out = tmp_path / "D"
    assert run_quietly("seed", *sets, "--out", out) == 0
    finite_metrics(out)
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["verdict"] != "differ").all(), summary


def test_float64_bit_identical_zero_gradients_never_differ(tmp_path):
    # found by the property test below: weights ~1e297 after one update at lr 1e300
    out = tmp_path / "D"
    assert run_quietly("xor", "--set", "dataset=seed", "--set", "hidden=[2,2]", "--set",
                       "bias=true", "--set", "init=uniform", "--set", "seed=0", "--set",
                       "lr=1e300", "--set", "steps=2", "--set", "log_every=1",
                       "--out", out) == 0
    grads = pd.read_csv(out / "grads.csv")
    last = grads[grads["step"] == 1]
    assert (last["max_abs_diff"] == 0).all()          # bit-identical zero gradients...
    assert not grads["rel_tol"].isna().any()          # ...held to a defined tolerance
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["verdict"] != "differ").all(), summary


def test_tiny_learning_rate_barely_moves_the_weights(tmp_path):
    out = tmp_path / "D"
    assert run_quietly("seed", "--set", "steps=3", "--set", "lr=1e-12", "--set",
                       "log_every=1", "--out", out) == 0
    loss = pd.read_csv(out / "loss.csv")
    assert loss["loss_manual"].nunique() <= 3
    assert abs(loss["loss_manual"].iloc[-1] - loss["loss_manual"].iloc[0]) < 1e-10


# -- reproducibility -----------------------------------------------------------------------------

MINI_BATCH = ["iris", "--set", "epochs=3", "--set", "batch_size=16", "--set", "shuffle=true",
              "--set", "momentum=0.9", "--set", "seed=7", "--set", "log_every=1"]


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """The same mini-batch config run twice: once in a fresh process, once in this one."""
    root = tmp_path_factory.mktemp("twins")
    proc = python_m("run", *MINI_BATCH, "--out", root / "a", *FAST, cwd=root)
    assert proc.returncode == 0, proc
    assert handgrad("run", *MINI_BATCH, "--out", root / "b", *FAST) == 0
    return root / "a", root / "b"


def test_same_config_same_machine_byte_identical(twin_runs):
    a, b = twin_runs
    for name in ("loss.csv", "grads.csv", "summary.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    loss = pd.read_csv(a / "loss.csv")
    assert len(loss) == 3 * math.ceil(150 / 16)            # log_every 1, 10 steps an epoch


def test_provenance_records_what_explains_a_difference(twin_runs):
    a, _ = twin_runs
    prov = json.loads((a / "provenance.json").read_text(encoding="utf-8"))
    for key in ("python", "numpy", "torch", "pandas", "scikit_learn", "platform"):
        assert isinstance(prov[key], str) and prov[key], key
    assert prov["torch"] == torch.__version__ and prov["numpy"] == np.__version__
    assert isinstance(prov["blas"], list) and prov["blas"]
    assert all("num_threads" in lib and "internal_api" in lib for lib in prov["blas"])
    assert isinstance(prov["torch_num_threads"], int) and prov["torch_num_threads"] >= 1
    assert isinstance(prov["torch_deterministic_algorithms"], bool)
    assert prov["seeds"]["seed"] == 7
    assert {"init_entropy", "init_spawn_key", "order_spawn_key"} <= set(prov["seeds"])
    assert prov["device"] == "cpu" and prov["status"] == "completed"


def test_compare_identical_runs_says_identical(twin_runs, tmp_path, capsys):
    a, b = twin_runs
    capsys.readouterr()
    assert handgrad("compare", a, b, "--out", tmp_path / "cmp") == 0
    report = capsys.readouterr().out
    assert "config differences: none" in report
    assert "identical losses and gradient metrics at all 30 common logged steps" in report
    assert "first differ" not in report


def test_compare_dtype_runs_differ_at_step_0(tmp_path, capsys):
    for dtype in ("float64", "float32"):
        assert handgrad("run", "xor", "--set", "steps=3", "--set", f"dtype={dtype}",
                        "--out", tmp_path / dtype, *FAST) == 0
    capsys.readouterr()
    assert handgrad("compare", tmp_path / "float64", tmp_path / "float32", "--out",
                    tmp_path / "cmp") == 0
    report = capsys.readouterr().out
    assert "dtype: 'float64' -> 'float32'" in report
    assert "losses first differ at step 0" in report
    assert "gradient metrics first differ at step 0" in report


# -- robustness: property-based configs ------------------------------------------------------

CSV_DATA = {   # 5 rows, 3 features: class labels, or real targets in [0, 1]
    "classes": "x1,x2,x3,y\n0.5,1,-2,0\n1.5,0,3,1\n-1,2,0.25,1\n2,-1,1,0\n0,0,1,1\n",
    "real": "x1,x2,x3,y\n0.5,1,-2,0.25\n1.5,0,3,1\n-1,2,0.25,0.5\n2,-1,1,0\n0,0,1,0.75\n",
}


def mostly(valid: list[str], invalid: list[str]) -> st.SearchStrategy[str]:
    """About 1 time in 10 a value the config must refuse, else a valid one (the marker
    sits mid-range: hypothesis favours the ends of an integer range)."""
    return st.integers(0, 9).flatmap(
        lambda i: st.sampled_from(invalid if i == 4 else valid))


@st.composite
def configs(draw):
    dataset = draw(st.sampled_from(["seed", "xor", "worked-2-2-2", "moons", "sparse",
                                    "csv:classes", "csv:real"]))
    hidden = draw(st.lists(st.integers(1, 5), max_size=2))
    if hidden and draw(st.integers(0, 7)) == 0:
        hidden[-1] = 0                                          # a zero-width layer
    loss = draw(st.sampled_from(["half_sse", "mse", "bce", "cross_entropy"]))
    out_act = ["", "sigmoid", "identity", "tanh", "relu"]
    dtype = draw(st.sampled_from(["float64", "float32"]))
    big_lr = "1e300" if dtype == "float64" else "1e30"       # float32 refuses > 3.4e38
    momentum = draw(mostly(["0", "0.9", "0.5"], ["-0.1"]))
    dampening = draw(st.sampled_from(["0", "0", "0.5"]))
    nesterov_ok = momentum not in ("0", "-0.1") and dampening == "0"
    sets = {
        "dataset": dataset,
        "hidden": "[" + ",".join(map(str, hidden)) + "]",
        "activation": draw(st.sampled_from(["sigmoid", "tanh", "relu", "identity"])),
        "output_activation": '"{}"'.format(draw(
            mostly(["sigmoid"], out_act) if loss == "bce" else st.sampled_from(out_act))),
        "loss": loss,
        "bias": draw(st.sampled_from(["true", "false", "frozen"])),
        "init": draw(st.sampled_from(["uniform", "legacy-rand"])),
        "dtype": dtype,
        "batch_size": draw(mostly(["full", "1", "2", "3", "7"], ["0", "500"])),
        "lr": draw(mostly(["1e-12", "0.001", "0.1", "1.0", "10.0", "1e4", "1e8", big_lr],
                          ["0", "-1"])),
        "steps": str(draw(st.integers(1, 3))),
        "log_every": "1",
        "mode": draw(st.sampled_from(["free", "synced"])),
        "seed": str(draw(st.integers(0, 3))),
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": draw(st.sampled_from(["0", "0.01"])),
        "nesterov": draw(st.sampled_from(["false", "true"]) if nesterov_ok
                         else mostly(["false"], ["true"])),
    }
    return sets


EXAMPLES = 60


@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(sets=configs())
def any_config_runs_and_agrees_or_is_refused_cleanly(root: Path, capsys, cases: dict, sets):
    """One property example: ``handgrad run`` with these ``--set``s exits 0, 2 or 3, with
    one clean error line for 2, valid CSVs otherwise, and a float64 run that completes
    agrees (verdict and the fixed F64_REL). ``cases`` counts what was tried."""
    cases["tried"] += 1
    case = root / f"case{cases['tried']}"
    case.mkdir()
    if sets["dataset"].startswith("csv:"):
        (case / "data.csv").write_text(CSV_DATA[sets["dataset"][4:]], encoding="utf-8")
        sets = {**sets, "dataset": f"csv:{case / 'data.csv'}"}
    argv = ["run", "xor"]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    out = case / "run"
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main([*argv, "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code in (0, EXIT_BAD_INPUT, EXIT_DIVERGED), (code, err)
    cases["exit"][code] += 1
    assert "Traceback" not in err
    assert leftovers(case) == []
    if code == EXIT_BAD_INPUT:
        line = one_error_line(err)
        what = re.sub(r"[\s=(:].*", "", line.removeprefix("handgrad: error: "))
        cases["errors"][what] = cases["errors"].get(what, 0) + 1
        assert not out.exists()
        return
    if code == EXIT_DIVERGED:
        assert re.fullmatch(r"handgrad: diverged at step \d+: .*\n", err), err
    else:
        assert err == ""
    grads = pd.read_csv(out / "grads.csv")
    check_run_csvs(out, n_params=len(grads["param"].unique()))
    if code == 0 and sets["dtype"] == "float64":
        summary = pd.read_csv(out / "summary.csv").set_index("param")
        assert summary.loc["all", "verdict"] != "differ", " ".join(argv)
        # the fixed float64 bound where the gradient is well conditioned (rel_tol = 2γ_m·cond
        # below 1e-13, cond up to about 15); an ill-conditioned step (a gradient that nearly
        # cancels, e.g. rel_tol 2e-10 with rel_err 1.4e-12 seen on a tanh output) is held
        # by the derived bound through the verdict above
        well = grads["rel_tol"] <= 1e-13
        assert (grads.loc[well, "rel_err"] <= F64_REL).all(), " ".join(argv)
        cases["float64_completed"] += 1


def test_any_config_runs_and_agrees_or_is_refused_cleanly(tmp_path, capsys):
    """The property above over EXAMPLES random configs (unseeded: new ones each run), then
    what they covered: every example ran to its end, and both completed runs and refusals
    were among them (about 1 field in 10 is drawn invalid, so a refusal-free sample of 60
    has probability < 1e-10). ``-s`` prints the tally."""
    cases = {"tried": 0, "exit": {0: 0, 2: 0, 3: 0}, "errors": {}, "float64_completed": 0}
    any_config_runs_and_agrees_or_is_refused_cleanly(tmp_path, capsys, cases)
    assert cases["tried"] == EXAMPLES, cases
    assert cases["exit"][0] > 0 and cases["exit"][EXIT_BAD_INPUT] > 0, cases
    assert cases["float64_completed"] > 0, cases


def test_bce_with_overflowed_weights_is_divergence_not_a_crash(tmp_path, capsys):
    # Found by the property test: after an overflowing update the outputs are NaN, which
    # torch.nn.BCELoss refuses with a RuntimeError instead of returning NaN.
    code = handgrad("run", "seed", "--set", "hidden=[]", "--set", "loss=bce", "--set",
                    "bias=true", "--set", "init=uniform", "--set", "lr=1e300", "--set",
                    "steps=3", "--set", "log_every=1", "--set", "mode=free", "--set",
                    "weight_decay=0.01", "--out", tmp_path / "D", *FAST)
    assert code == EXIT_DIVERGED
    assert "diverged at step 1: both sides" in capsys.readouterr().err
