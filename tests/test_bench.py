"""``handgrad bench``: a tiny timed run (one small case, 2 repeats of ~2 ms blocks), the floor's
FLOP count worked out by hand, the numpy-call counter, the CLI's one-line errors.

The timings themselves are not asserted beyond "positive and finite": they depend on the
machine. What is asserted is the schema, the pairing of ratios, and the arithmetic.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import signal
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch

import experiments.cli as cli
from experiments.core.config import ConfigError
from experiments.tools.bench import (
    IMPLS,
    BenchConfig,
    format_table,
    redraw,
    run_bench,
    targets,
    write_bench,
)
from experiments.tools.bench_timing import (
    CASES_BY_NAME,
    Counted,
    count_numpy_calls,
    floor_flops,
    floor_step,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: bench.csv's columns (literal: a change to the schema must fail here)
COLUMNS = ["case", "impl", "library", "device", "dtype", "batch", "sizes", "flops",
           "seconds_per_step", "seconds_q25", "seconds_q75", "seconds_min", "seconds_max",
           "us_per_step", "gflops_per_s", "ratio_to_floor", "ratio_to_floor_q25",
           "ratio_to_floor_q75", "ratio_to_autograd", "numpy_calls_per_step",
           "numpy_calls_per_layer", "numpy_call_us", "repeats", "steps_per_repeat", "threads",
           "clock"]
TINY = BenchConfig(cases=("seed",), devices=("cpu",), dtypes=("float32", "float64"),
                   repeats=2, min_time=0.002)


@pytest.fixture(scope="module")
def tiny() -> pd.DataFrame:
    return run_bench(TINY)


def handgrad(monkeypatch, *args) -> int:
    """``experiments.cli.main``, the real entry point."""
    return cli.main([str(a) for a in args])


# ------------------------------------------------------------------------ tiny run


def test_tiny_run_has_the_schema_and_positive_times(tiny):
    assert list(tiny.columns) == COLUMNS
    assert len(tiny) == 2 * len(IMPLS)                      # 2 dtypes x 5 implementations
    assert set(tiny.impl) == set(IMPLS)
    assert set(tiny.dtype) == {"float32", "float64"}
    assert (tiny.device == "cpu").all() and (tiny.sizes == "3-4-1").all()
    assert (tiny.batch == 4).all() and (tiny.flops == 288).all()
    for col in ("seconds_per_step", "seconds_min", "seconds_max", "us_per_step",
                "gflops_per_s", "ratio_to_floor", "ratio_to_autograd"):
        assert np.isfinite(tiny[col]).all() and (tiny[col] > 0).all(), col
    assert (tiny.seconds_min <= tiny.seconds_q25).all()
    assert (tiny.seconds_q25 <= tiny.seconds_per_step).all()
    assert (tiny.seconds_per_step <= tiny.seconds_q75).all()
    assert (tiny.seconds_q75 <= tiny.seconds_max).all()
    # a floor divided by itself, repeat by repeat, is exactly 1
    floors = tiny[tiny.impl.str.startswith("floor")]
    assert (floors.ratio_to_floor == 1.0).all()
    assert (tiny[tiny.impl == "torch-autograd"].ratio_to_autograd == 1.0).all()
    assert (tiny.repeats == 2).all() and (tiny.steps_per_repeat >= 1).all()
    assert (tiny.clock == "process").all() and (tiny.threads == 1).all()


def test_numpy_call_columns_only_on_manual_numpy(tiny):
    man = tiny[tiny.impl == "manual-numpy"]
    assert (man.numpy_calls_per_step >= 5).all()            # at least its 5 matrix products
    assert (man.numpy_calls_per_layer == man.numpy_calls_per_step / 2).all()
    assert (man.numpy_call_us > 0).all()
    assert tiny[tiny.impl != "manual-numpy"].numpy_calls_per_step.isna().all()


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    csv, png = write_bench(tiny, dataclasses.replace(TINY, out=str(out)))
    assert (csv, png) == (out / "bench.csv", out / "bench.png")
    return out


def test_write_bench_writes_csv_config_and_png(tiny, folder):
    assert sorted(p.name for p in folder.iterdir()) == [".handgrad", "bench.csv", "bench.png",
                                                        "config.toml"]
    assert (folder / ".handgrad").read_text() == "handgrad bench\n"
    back = pd.read_csv(folder / "bench.csv")
    assert list(back.columns) == COLUMNS and len(back) == len(tiny)
    data = (folder / "bench.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_config_toml_round_trip(folder):
    saved = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    assert saved == {"kind": "bench", "cases": ["seed"], "devices": ["cpu"],
                     "dtypes": ["float32", "float64"], "repeats": 2, "min_time": 0.002,
                     "impls": list(IMPLS), "threads": 1, "out": str(folder)}
    del saved["kind"]
    again = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    assert again == dataclasses.replace(TINY, out=str(folder))


def test_redraw_recreates_the_png_from_the_csv(folder, tmp_path):
    (tmp_path / "bench.csv").write_bytes((folder / "bench.csv").read_bytes())
    assert redraw(tmp_path) == [str(tmp_path / "bench.png")]
    data = (tmp_path / "bench.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.csv", "bench.png"]


def test_table_and_targets_read_the_rows(tiny):
    table = format_table(tiny)
    assert len(table.splitlines()) == len(tiny) + 1
    checks = targets(tiny)
    assert list(checks.check) == ["us_per_step", "us_per_step"]   # seed is a tiny case
    assert checks.met.isna().all() and "numpy calls" in checks.target.iloc[0]


def test_targets_on_wide_layers():
    rows = pd.DataFrame({
        "case": ["wide-512", "wide-512"], "impl": ["manual-numpy"] * 2,
        "device": ["cpu"] * 2, "dtype": ["float32", "float64"],
        "ratio_to_floor": [1.10, 1.20], "ratio_to_autograd": [0.9, float("nan")],
        "us_per_step": [1.0, 1.0], "numpy_calls_per_step": [np.nan] * 2,
        "numpy_calls_per_layer": [np.nan] * 2, "numpy_call_us": [np.nan] * 2})
    checks = targets(rows)
    assert list(zip(checks.dtype, checks.check, checks.met, strict=True)) == [
        ("float32", "ratio_to_floor", True), ("float32", "ratio_to_autograd", True),
        ("float64", "ratio_to_floor", False)]


# ------------------------------------------------------------------------- the floor


def test_floor_flops_by_hand():
    # seed case 3-4-1, batch 4: forward 4·3·4 + 4·4·1 = 64 multiply-adds; ∂E/∂W the same
    # 64; ∂E/∂a_1 = δ_2 W_2 is 4·1·4 = 16 (no ∂E/∂X). 144 multiply-adds = 288 FLOPs.
    assert floor_flops([3, 4, 1], 4) == 288
    # 2-2-2, one sample: 4 + 4 forward, 4 + 4 weight gradients, 4 for ∂E/∂a_1 -> 40
    assert floor_flops([2, 2, 2], 1) == 40
    # 784-100-10, batch 256: 256·(784·100 + 100·10)·2 + 256·100·10 multiply-adds
    assert floor_flops([784, 100, 10], 256) == 2 * (256 * 79_400 * 2 + 256 * 1000)


def test_floor_step_does_exactly_the_counted_products():
    """Three layers: 3 forward products, 3 weight gradients, 2 input gradients (no ∂E/∂X),
    as many multiply-adds as floor_flops counts."""
    rng = np.random.default_rng(0)
    sizes, N = (5, 4, 3, 2), 7
    a = [rng.standard_normal((N, n)).view(Counted) for n in sizes[:-1]]
    W = [rng.standard_normal((o, i)).view(Counted) for i, o in itertools.pairwise(sizes)]
    d = [rng.standard_normal((N, n)).view(Counted) for n in sizes[1:]]
    Counted.calls = 0
    floor_step(a, W, d)()
    assert Counted.calls == 8
    # multiply-adds: 7·(5·4 + 4·3 + 3·2) forward, the same for ∂E/∂W, 7·(4·3 + 3·2) for ∂E/∂a
    assert floor_flops(sizes, N) == 2 * (2 * 7 * 38 + 7 * 18)


def test_counter_counts_outermost_numpy_calls_once():
    x = np.ones((3, 2)).view(Counted)
    Counted.calls = 0
    y = np.where(x > 0, x * 2, 1 + x)          # >, *, +, where: 4 calls
    np.sum(y, axis=0)                          # 1 call (its inner add.reduce is not counted)
    y -= 1                                     # in place: 1 call
    assert Counted.calls == 6
    assert count_numpy_calls(CASES_BY_NAME["seed"]) >= 5


@pytest.mark.parametrize("threads", [1, 0])
def test_threads_are_limited_for_the_run_and_restored(threads):
    before = torch.get_num_threads()
    df = run_bench(BenchConfig(cases=("worked-2-2-2",), dtypes=("float64",), repeats=1,
                               min_time=0.001, impls=("floor-torch",), threads=threads))
    assert list(df.threads) == [1 if threads else before]
    assert list(df.clock) == ["process" if threads == 1 else "wall"]
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------------- CLI


def test_cli_quick_tiny_case(monkeypatch, capsys, tmp_path):
    out = tmp_path / "b"
    assert handgrad(monkeypatch, "bench", "--quick", "--case", "worked-2-2-2", "--dtype",
                    "float64", "--device", "cpu", "--repeats", "1", "--out", out) == 0
    printed = capsys.readouterr().out
    assert "manual-numpy" in printed and "floor-numpy" in printed and "Targets" in printed
    assert (out / "bench.csv").is_file() and (out / "bench.png").is_file()


def test_cli_help_shows_defaults(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        handgrad(monkeypatch, "bench", "--help")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "(default: bench)" in text and "(default: all)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cli_cuda_without_cuda_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    out = tmp_path / "never"
    assert handgrad(monkeypatch, "bench", "--device", "cuda", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("handgrad: error: --device cuda: ")
    assert "no CUDA device" in err and "--device cpu" in err
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--dtype", "float16"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--repeats", "0"], "--repeats"),
    (["--repeats", "two"], "--repeats"),
    (["--threads", "-1"], "--threads"),
    (["--case", "nope"], "unknown case"),
])
def test_cli_bad_options_are_one_line_exit_2(monkeypatch, capsys, tmp_path, args, words):
    out = tmp_path / "never"
    assert handgrad(monkeypatch, "bench", *args, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("handgrad: error: ") and words in err
    assert not out.exists()


def test_a_bad_option_is_named_before_an_existing_folder(monkeypatch, capsys, tmp_path, tiny):
    """The option's own error comes first: told to pass --force, then about --repeats
    only after that, is two rounds for one mistake."""
    out = tmp_path / "b"
    write_bench(tiny, dataclasses.replace(TINY, out=str(out)))
    for args, words in ((["--repeats", "0"], "--repeats 0: must be >= 1"),
                        (["--threads", "-1"], "--threads -1: must be >= 0")):
        assert handgrad(monkeypatch, "bench", *args, "--out", out) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_out_that_is_a_file_is_refused(monkeypatch, capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert handgrad(monkeypatch, "bench", "--out", f) == 2
    assert "not a directory" in capsys.readouterr().err


def test_existing_folder_is_refused_before_timing_and_replaced_with_force(
        monkeypatch, capsys, tmp_path, tiny):
    """As every handgrad output folder: refused without --force before any timing (one
    line, folder untouched); with --force the new folder replaces it whole."""
    out = tmp_path / "b"
    write_bench(tiny, dataclasses.replace(TINY, out=str(out)))
    before = (out / "bench.csv").read_bytes()
    monkeypatch.setattr("experiments.tools.bench.run_bench",
                        lambda *a, **k: pytest.fail("timed before refusing the folder"))
    assert handgrad(monkeypatch, "bench", "--case", "seed", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --force" in err
    assert (out / "bench.csv").read_bytes() == before
    with pytest.raises(ConfigError, match="already exists"):
        write_bench(tiny, dataclasses.replace(TINY, out=str(out)))
    write_bench(tiny.head(1), dataclasses.replace(TINY, out=str(out)), force=True)
    assert len(pd.read_csv(out / "bench.csv")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]      # no temporaries left


def test_a_signal_while_bench_writes_keeps_the_finished_folder(monkeypatch, tmp_path, tiny):
    """SIGTERM during the write (the timing is over): the folder is finished, then exit
    130, as for a run."""
    import experiments.tools.bench as bench
    real, sent = bench.write_csv, []

    def write_then_signal(df, path):
        real(df, path)
        sent.append(path.name)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: tiny)
    monkeypatch.setattr(bench, "write_csv", write_then_signal)
    out = tmp_path / "b"
    assert handgrad(monkeypatch, "bench", "--case", "seed", "--out", out) == cli.EXIT_INTERRUPTED
    assert sent == ["bench.csv"]
    assert sorted(p.name for p in out.iterdir()) == [".handgrad", "bench.csv", "bench.png",
                                                     "config.toml"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_a_folder_handgrad_did_not_write_is_never_replaced(monkeypatch, capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert handgrad(monkeypatch, "bench", "--case", "seed", "--out", out, "--force") == 2
    assert "did not write" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep"


def test_config_validates_on_construction():
    with pytest.raises(ConfigError, match="min_time"):
        BenchConfig(min_time=0)
    with pytest.raises(ConfigError, match="unknown impl"):
        BenchConfig(impls=("manual-jax",))


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_tiny_run_on_cuda():
    df = run_bench(BenchConfig(cases=("seed",), devices=("cuda",), dtypes=("float32",),
                               repeats=2, min_time=0.002))
    assert set(df.impl) == {"manual-torch", "torch-autograd", "floor-torch"}
    assert (df.device == "cuda").all() and (df.clock == "wall").all()
    assert (df.seconds_per_step > 0).all() and (df.ratio_to_floor > 0).all()
    assert all(math.isfinite(v) for v in df.ratio_to_autograd)
