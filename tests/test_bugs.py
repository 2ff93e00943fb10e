"""experiments.teaching.bugs (the bug gallery) and experiments.core.diagnose (automatic diagnosis).

Tolerances: a bug is "detected" when its rel_err exceeds 1e6 × the rounding tolerance
rel_tol = 2γ_m·cond (≈1e-14 here) and 1e-2 in absolute terms — derivation mistakes change
gradients by O(1e-2 … 1), rounding by O(1e-16). Fitted ratios are compared with rtol 1e-12:
c is a ratio of float64 dot products of gradients that differ by an exact constant up to
rounding, so it carries a few ulps of error, far below 1e-12.
"""

from __future__ import annotations

import argparse
import tomllib
import types

import numpy as np
import pandas as pd
import pytest

import manual
from experiments import cli
from experiments.core.config import ConfigError, load_config
from experiments.core.diagnose import (
    Finding,
    bug_tolerance,
    diagnose,
    findings_frame,
    findings_markdown,
    fit_ratio,
    param_kinds,
    ratio_causes,
)
from experiments.core.diagnose_run import diagnose_result, diagnose_run
from experiments.core.runner import run_experiment
from experiments.output.rundir import write_csv, write_run
from experiments.teaching import bugs
from experiments.teaching.bugs import BUGS, CONTROL, buggy_mlp, redraw, register, run_gallery
from experiments.teaching.bugs.mistakes import NEEDS

SIZES = (3, 4, 4, 3)
N, K = 5, 3
M = N * K
STEPS = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXACT = 1e-12    # float64 agreement: rounding stays below this, bugs are O(1e-2 … 1)
#: the one method each bug overrides (literal: a second override must fail this)
OVERRIDES = {"sigma_prime_of_activation": "activation_derivative",
             "missing_output_sigma_prime": "activation_derivative",
             "missing_mean": "loss_gradient", "missing_factor_2": "loss_gradient",
             "transposed_weight_gradient": "weight_gradient",
             "accumulated_gradients": "backward"}


@pytest.fixture(scope="module")
def gallery() -> pd.DataFrame:
    return run_gallery(sizes=SIZES, batch=N, steps=STEPS)


def rows(df, bug, step=None):
    g = df[df["bug"] == bug]
    return g if step is None else g[g["step"] == step]


# -- the gallery ---------------------------------------------------------------------------

def test_gallery_shape(gallery):
    assert list(gallery.columns) == ["bug", "step", "param", "rel_err", "rel_tol",
                                     "max_abs_diff", "cosine", "ratio", "ratio_residual",
                                     "verdict", "diagnosis", "detail"]
    assert list(dict.fromkeys(gallery["bug"])) == [CONTROL, *BUGS]
    assert len(gallery) == (1 + len(BUGS)) * STEPS * 2 * (len(SIZES) - 1)


def test_control_agrees(gallery):
    c = rows(gallery, CONTROL)
    assert (c["verdict"] != "differ").all(), c
    assert (c["diagnosis"] == "agree").all()
    assert (c["rel_err"] <= c["rel_tol"]).all()
    assert (c["rel_err"] <= EXACT).all(), c["rel_err"].max()


@pytest.mark.parametrize("bug", list(BUGS))
def test_every_bug_is_detected(gallery, bug):
    g = rows(gallery, bug)
    worst = g.loc[g["rel_err"].idxmax()]
    assert worst["rel_err"] > 1e-2 and worst["rel_err"] > 1e6 * worst["rel_tol"], worst
    assert (g[g["verdict"] == "differ"]["diagnosis"] != "agree").all()


def test_missing_mean_is_a_constant_ratio_of_M(gallery):
    for step in range(STEPS):
        g = rows(gallery, "missing_mean", step)
        assert (g["diagnosis"] == "constant_ratio").all(), g
        np.testing.assert_allclose(g["ratio"], M, rtol=1e-12)   # mse means over M = N·K
        assert (g["ratio_residual"] < bug_tolerance()).all()
        assert g["detail"].str.contains("every parameter").all()
        assert g["detail"].str.contains(f"M = N·K = {M} elements missing").all()


def test_missing_factor_2_is_a_constant_ratio_of_one_half(gallery):
    g = rows(gallery, "missing_factor_2")
    assert (g["diagnosis"] == "constant_ratio").all()
    np.testing.assert_allclose(g["ratio"], 0.5, rtol=1e-12)
    assert g["detail"].str.contains("factor 2 of the squared error missing").all()
    assert not g["detail"].str.contains("1/K").any()   # K = 3: the ½ names one cause


def test_transposed_weight_gradient(gallery):
    g = rows(gallery, "transposed_weight_gradient", 0).set_index("param")
    for key in g.index:
        want = "transposed" if key.endswith("weight") else "agree"
        assert g.loc[key, "diagnosis"] == want, (key, g.loc[key])
        assert key.endswith("weight") or g.loc[key, "rel_err"] <= EXACT, g.loc[key]
    assert "reshaped" in g.loc["layers.0.weight", "detail"]       # (4, 3): non-square
    assert "reshaped" not in g.loc["layers.1.weight", "detail"]   # (4, 4): plain transpose


def test_sigma_prime_of_activation_enters_at_last_hidden_delta(gallery):
    g = rows(gallery, "sigma_prime_of_activation", 0).set_index("param")
    for key in g.index:
        want = "agree" if key.startswith("layers.2.") else "layer_confined"
        assert g.loc[key, "diagnosis"] == want, (key, g.loc[key])
        assert want != "agree" or g.loc[key, "rel_err"] <= EXACT, g.loc[key]
    assert "enters at layers.1's delta" in g.loc["layers.0.weight", "detail"]


def test_missing_output_sigma_prime_enters_at_output(gallery):
    g = rows(gallery, "missing_output_sigma_prime", 0)
    assert (g["verdict"] == "differ").all()         # every layer, from the output down
    assert (g["diagnosis"] == "other").all()
    assert g["detail"].str.contains(r"enters at the output delta \(layers\.2").all()
    assert (g["ratio"] > 3.5).all()                 # 1/σ′ ≥ 4 elementwise: c ≈ 4
    assert (g["ratio_residual"] > bug_tolerance()).all()   # ... but not a constant


def test_accumulated_gradients_show_from_step_1(gallery):
    g0 = rows(gallery, "accumulated_gradients", 0)
    assert (g0["verdict"] != "differ").all() and (g0["diagnosis"] == "agree").all()
    assert (g0["rel_err"] <= EXACT).all(), g0["rel_err"].max()
    for step in range(1, STEPS):
        g = rows(gallery, "accumulated_gradients", step)
        assert (g["verdict"] == "differ").all()
        assert (g["diagnosis"] == "accumulated").all()


def test_gallery_table_and_details(gallery):
    table = bugs.gallery_table(gallery).set_index("bug")
    assert table.loc[CONTROL, "from_step"] == "-"
    assert table.loc[CONTROL, "diagnosis"] == "agree"
    assert table.loc["accumulated_gradients", "from_step"] == 1
    assert table.loc["missing_mean", "W0"] == "15"
    assert table.loc["transposed_weight_gradient", "b0"] == "="
    text = "\n".join(bugs.gallery_details(gallery))
    for name in BUGS:
        assert name in text


def test_free_mode_runs(gallery):
    free = run_gallery(["missing_factor_2"], sizes=SIZES, batch=N, steps=2, mode="free")
    # step 0 is at the shared init in both modes
    pd.testing.assert_frame_equal(rows(free, "missing_factor_2", 0).reset_index(drop=True),
                                  rows(gallery, "missing_factor_2", 0).reset_index(drop=True))
    assert (rows(free, CONTROL)["verdict"] != "differ").all()
    assert (rows(free, CONTROL)["rel_err"] <= EXACT).all()


@pytest.mark.parametrize("mode", ["synced", "free"])
def test_each_side_is_independent_of_the_others(gallery, mode):
    """One torch reference serves every side: its trajectory, and so each bug's rows, are
    bit for bit those of a gallery run with that bug alone."""
    full = gallery if mode == "synced" else run_gallery(sizes=SIZES, batch=N, steps=STEPS,
                                                        mode=mode)
    for bug in ("accumulated_gradients", "missing_output_sigma_prime"):
        alone = run_gallery([bug], sizes=SIZES, batch=N, steps=STEPS, mode=mode)
        for name in (CONTROL, bug):
            pd.testing.assert_frame_equal(rows(alone, name).reset_index(drop=True),
                                          rows(full, name).reset_index(drop=True),
                                          check_exact=True)


def _problem(sizes, loss, seed=1):
    from experiments.core.init import uniform_params
    rng = np.random.default_rng(seed)
    p = uniform_params(sizes, True, rng)
    X = rng.normal(size=(6, sizes[0]))
    Y = rng.uniform(0.1, 0.9, size=(6, sizes[-1]))
    return p, X, Y


def test_each_bug_overrides_exactly_one_method():
    assert list(BUGS) == list(OVERRIDES)
    for name, cls in BUGS.items():
        assert cls.__bases__ == (manual.MLP,), name
        methods = [k for k, v in vars(cls).items() if isinstance(v, types.FunctionType)]
        assert methods == [OVERRIDES[name]], (name, methods)
    assert type(buggy_mlp(CONTROL, SIZES, params=_problem(SIZES, "mse")[0])) is manual.MLP


@pytest.mark.parametrize("name", list(BUGS))
def test_the_bug_is_its_one_method(name):
    """With the overridden method put back, a bug's network is manual.MLP bit for bit (over
    two steps: the accumulated bug's state shows at the second); with it, it differs."""
    method = OVERRIDES[name]
    undone = type("Undone", (BUGS[name],), {method: getattr(manual.MLP, method)})
    for loss, sizes in (("mse", SIZES), ("half_sse", (2, 3, 1)), ("bce", (3, 5, 2))):
        p, X, Y = _problem(sizes, loss)
        nets = [cls(sizes, loss=loss, params=p) for cls in (manual.MLP, undone, BUGS[name])]
        for _ in range(2):
            want, got, bugged = (net.gradients(X, Y) for net in nets)
            for k in want:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{loss} {k}")
        if loss == "mse":    # every bug is a mistake for this network
            assert any(not np.array_equal(bugged[k], want[k]) for k in want), name


def test_buggy_mlp_rejects_bad_bugs():
    p = _problem(SIZES, "mse")[0]
    with pytest.raises(ValueError, match="unknown bug"):
        buggy_mlp("nope", SIZES, params=p)
    with pytest.raises(ValueError, match="use loss='mse'"):
        buggy_mlp("missing_mean", SIZES, loss="half_sse", params=p)
    with pytest.raises(ValueError, match="use activation='sigmoid'"):
        buggy_mlp("sigma_prime_of_activation", SIZES, activation="tanh", params=p)
    assert set(NEEDS) <= set(BUGS)
    with pytest.raises(ValueError, match="unknown bug"):
        run_gallery(["nope"])


# -- diagnose() on synthetic gradients -----------------------------------------------------

@pytest.fixture
def grads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.normal(size=s) for k, s in manual.parameter_shapes(SIZES, True).items()}


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def test_identical_agrees(grads):
    f = only(diagnose(grads, grads))
    assert f.kind == "agree" and f.params == tuple(grads)


def test_rounding_noise_agrees_without_a_tolerance(grads):
    rng = np.random.default_rng(0)
    noisy = {k: g * (1 + 1e-15 * rng.normal(size=g.shape)) for k, g in grads.items()}
    assert only(diagnose(noisy, grads)).kind == "agree"
    # held to a tighter rounding tolerance, the same noise is "rounding", not a bug
    f = only(diagnose(noisy, grads, rel_tol=1e-17))
    assert f.kind == "rounding" and set(f.params) == set(grads)


def test_scaled_everywhere_is_one_constant_ratio(grads):
    f = only(diagnose({k: 2 * g for k, g in grads.items()}, grads, batch=N))
    assert f.kind == "constant_ratio" and f.params == tuple(grads)
    assert f.numbers["c"] == pytest.approx(2, rel=1e-12)
    assert "every parameter" in f.detail and "extra factor 2" in f.detail
    f = only(diagnose({k: g / N for k, g in grads.items()}, grads, batch=N))
    assert f.numbers["c"] == pytest.approx(1 / N, rel=1e-12)
    assert "an extra 1/N (N = 5" in f.detail
    f = only(diagnose({k: N * g for k, g in grads.items()}, grads, batch=N))
    assert "the 1/N of a mean over the batch missing" in f.detail


def test_scaled_one_parameter(grads):
    man = {**grads, "layers.1.bias": 3 * grads["layers.1.bias"]}
    f = only(diagnose(man, grads, batch=N))
    assert f.kind == "constant_ratio" and f.params == ("layers.1.bias",)
    assert f.numbers["c"] == pytest.approx(3, rel=1e-12)
    assert "K = 3" in f.detail                         # 3 is K here: named as a cause
    assert param_kinds([f], grads)["layers.0.weight"] == "agree"


@pytest.mark.parametrize("key", ["layers.1.weight", "layers.0.weight"])
def test_transposed(grads, key):
    g = grads[key]
    man = {**grads, key: g.T.reshape(g.shape)}   # square: g.T; (4, 3): reshaped transpose
    f = only(diagnose(man, grads))
    assert f.kind == "transposed" and f.params == (key,)
    assert ("reshaped" in f.detail) == (g.shape[0] != g.shape[1])


def test_transposed_shape(grads):
    man = {**grads, "layers.0.weight": grads["layers.0.weight"].T}   # (3, 4), not reshaped
    f = only(diagnose(man, grads))
    assert f.kind == "transposed" and "transposed shape" in f.detail


def test_one_layer_perturbed(grads):
    rng = np.random.default_rng(3)
    man = {k: g + (0.1 * rng.normal(size=g.shape) if k.startswith("layers.1.") else 0)
           for k, g in grads.items()}
    f = only(diagnose(man, grads))
    assert f.kind == "layer_confined" and f.numbers["layer"] == 1
    assert set(f.params) == {"layers.1.weight", "layers.1.bias"}
    assert "own gradient formula" in f.detail


def test_layers_below_perturbed_enter_at_a_delta(grads):
    rng = np.random.default_rng(4)
    man = {k: g + (0.1 * rng.normal(size=g.shape) if not k.startswith("layers.2.") else 0)
           for k, g in grads.items()}
    f = only(diagnose(man, grads))
    assert f.kind == "layer_confined" and f.numbers["enters_at"] == 1
    assert "enters at layers.1's delta" in f.detail


def test_every_layer_perturbed(grads):
    rng = np.random.default_rng(5)
    man = {k: g + 0.5 * rng.normal(size=g.shape) for k, g in grads.items()}
    f = only(diagnose(man, grads))
    assert f.kind == "other" and f.numbers["enters_at"] == 2
    assert "output delta" in f.detail


def test_accumulated(grads):
    rng = np.random.default_rng(6)
    prev = {k: rng.normal(size=g.shape) for k, g in grads.items()}
    man = {k: g + prev[k] for k, g in grads.items()}
    assert only(diagnose(man, grads)).kind == "other"               # without the history
    f = only(diagnose(man, grads, previous=prev))
    assert f.kind == "accumulated" and f.params == tuple(grads)


def test_non_finite_and_mismatched_keys(grads):
    man = {**grads, "layers.2.bias": np.full(K, np.nan)}
    fs = diagnose(man, grads)
    assert [f.kind for f in fs] == ["other"] and "non-finite" in fs[0].detail
    with pytest.raises(ValueError, match="different keys"):
        diagnose({"layers.0.weight": grads["layers.0.weight"]}, grads)


def test_fit_ratio_and_causes():
    g = np.arange(1.0, 7.0).reshape(2, 3)
    assert fit_ratio(4 * g, g) == (4.0, 0.0)
    c, res = fit_ratio(np.zeros(3), np.zeros(3))
    assert np.isnan(c) and res == 0
    assert ratio_causes(0.5)[0].startswith("the factor 2 of the squared error missing")
    assert ratio_causes(-1.0) == ["the sign flipped (Y − A instead of A − Y)"]
    assert any("M = N·K = 15" in t for t in ratio_causes(15.0, batch=5, outputs=3))
    assert ratio_causes(1.7, batch=5, outputs=3) == []


def test_presentation(grads):
    fs = diagnose({k: 2 * g for k, g in grads.items()}, grads)
    frame = findings_frame(fs)
    assert list(frame["kind"]) == ["constant_ratio"] and frame["c"].iloc[0] == pytest.approx(2)
    assert findings_markdown(fs).startswith("- **constant_ratio** `layers.0.weight`")
    assert str(fs[0]).startswith("constant_ratio [layers.0.weight,")


# -- diagnose_run on real run directories ----------------------------------------------------

def _run_dir(tmp_path, monkeypatch, bug, name, mode="synced"):
    """A real runner run (seed data, mse) with the manual side replaced by a bug."""
    if bug is not None:
        monkeypatch.setattr(manual, "MLP", BUGS[bug])
    cfg = load_config("seed", ["epochs=4", "loss=\"mse\"", f"mode=\"{mode}\"", "log_every=1"])
    result = run_experiment(cfg)
    out = write_run(result, tmp_path / name, plots=False)
    return result, out


def test_diagnose_run_correct(tmp_path, monkeypatch):
    result, out = _run_dir(tmp_path, monkeypatch, None, "ok")
    fs = diagnose_run(out)
    assert [f.kind for f in fs] == ["agree"], fs
    assert diagnose_result(result) == fs
    assert (result.summary["rel_err"] <= EXACT).all(), result.summary


def test_diagnose_run_missing_factor_2(tmp_path, monkeypatch):
    result, out = _run_dir(tmp_path, monkeypatch, "missing_factor_2", "half")
    fs = diagnose_run(out)
    assert [f.kind for f in fs] == ["constant_ratio", "onset"], fs
    assert fs[0].numbers["c"] == pytest.approx(0.5, rel=1e-12)
    assert fs[1].numbers["step"] == 0 and set(fs[1].params) == set(result.grads["param"])
    assert diagnose_result(result) == fs


def test_diagnose_run_free_mode_warns_of_drift(tmp_path, monkeypatch):
    _, out = _run_dir(tmp_path, monkeypatch, "missing_output_sigma_prime", "free", "free")
    fs = diagnose_run(out)
    assert fs[0].kind == "drift" and fs[0].numbers["step"] == 0, fs   # listed first
    assert "mode=synced" in fs[0].detail
    _, out = _run_dir(tmp_path, monkeypatch, "missing_output_sigma_prime", "synced")
    fs = diagnose_run(out)
    assert [f.kind for f in fs] == ["other", "onset"], fs
    assert fs[0].numbers["enters_at"] == 1           # seed net 3-4-1: layers.1 is the output


def test_diagnose_run_accumulated_onset(tmp_path, monkeypatch):
    _, out = _run_dir(tmp_path, monkeypatch, "accumulated_gradients", "acc")
    fs = diagnose_run(out)
    assert fs[-1].kind == "onset" and fs[-1].numbers["step"] == 1
    assert "every earlier logged step agreed" in fs[-1].detail
    assert fs[0].kind != "agree"


# -- CLI and the gallery folder ---------------------------------------------------------------

def bugs_cmd(*args) -> int:
    """``handgrad bugs ARGS`` through this module's own ``register``."""
    parser = argparse.ArgumentParser(prog="handgrad")
    register(parser.add_subparsers(dest="command", required=True), argparse.HelpFormatter)
    ns = parser.parse_args(["bugs", *map(str, args)])
    return ns.func(ns)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A gallery folder written by the CLI (2 steps, free mode, a non-default seed)."""
    out = tmp_path_factory.mktemp("bugs") / "gallery"
    assert bugs_cmd("--out", out, "--steps", 2, "--mode", "free", "--seed", 3) == 0
    return out


def test_cli_writes_the_folder(folder, capsys):
    assert sorted(p.name for p in folder.iterdir()) == [".handgrad", "bugs.csv", "bugs.png",
                                                         "config.toml", "report.html"]
    df = pd.read_csv(folder / "bugs.csv")
    assert list(df.columns) == ["bug", "step", "param", "rel_err", "rel_tol", "max_abs_diff",
                                "cosine", "ratio", "ratio_residual", "verdict", "diagnosis",
                                "detail"]
    assert list(dict.fromkeys(df["bug"])) == [CONTROL, *BUGS] and set(df["step"]) == {0, 1}
    assert (folder / "bugs.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["gallery"]   # no tmp left


def test_cli_prints_the_table(tmp_path, capsys):
    assert bugs_cmd("--out", tmp_path / "g", "--steps", 2, "--no-plots") == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert any(line.split()[:2] == [CONTROL, "-"] and line.endswith("agree") for line in lines)
    for name in BUGS:
        assert name in stdout
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == [".handgrad", "bugs.csv",
                                                             "config.toml", "report.html"]


def test_config_toml_round_trip(folder, tmp_path):
    """config.toml holds run_gallery's arguments: re-running them rewrites bugs.csv byte for
    byte."""
    config = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    assert config == {"kind": "bugs", "bugs": list(BUGS), "sizes": [3, 4, 4, 3], "batch": 5,
                      "steps": 2, "lr": 1.0, "seed": 3, "mode": "free"}
    del config["kind"]
    write_csv(run_gallery(**config), tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == (folder / "bugs.csv").read_bytes()


def test_redraw_recreates_the_png_from_the_csv(folder, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "bugs.csv").write_bytes((folder / "bugs.csv").read_bytes())
    assert redraw(copy) == [str(copy / "bugs.png")]
    data = (copy / "bugs.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert sorted(p.name for p in copy.iterdir()) == ["bugs.csv", "bugs.png"]


def test_existing_folder_needs_force(folder, tmp_path):
    out = tmp_path / "g"
    out.mkdir()
    (out / ".handgrad").write_text("handgrad bugs\n")   # an earlier gallery's folder
    (out / "old-file").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        bugs_cmd("--out", out, "--steps", 2, "--no-plots")
    assert sorted(p.name for p in out.iterdir()) == [".handgrad", "old-file"]   # untouched
    assert bugs_cmd("--out", out, "--steps", 2, "--no-plots", "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == [".handgrad", "bugs.csv", "config.toml",
                                                     "report.html"]


def test_cli_bad_input_through_main(tmp_path, monkeypatch, capsys):
    out = tmp_path / "never"
    for bad in (["--steps", "1"], ["--sizes", "3,4"], ["--sizes", "a,b"], ["--batch", "1"],
                ["--lr", "0"]):
        assert cli.main(["bugs", "--out", str(out), *bad]) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("handgrad: error: --"), err
    assert not out.exists()


def test_the_figure_shows_the_step_and_the_ratios_of_the_table(gallery, monkeypatch,
                                                                tmp_path):
    from experiments.output import style
    figures = []
    real = style.save
    monkeypatch.setattr(style, "save", lambda fig, path, *a, **k: (figures.append(fig),
                                                                    real(fig, path, *a, **k)))
    bugs.plot_gallery(gallery, tmp_path / "bugs.png")
    (fig,) = figures
    ax = fig.axes[0]
    table = bugs.gallery_table(gallery).set_index("bug")
    # the table's step per bug: its first differing step, the last step where none differs
    steps = {b: (STEPS - 1 if s == "-" else int(s)) for b, s in table["from_step"].items()}
    title = ax.get_title()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert [r.split()[0] for r in rows] == list(table.index)
    for row, (bug, step) in zip(rows, steps.items(), strict=True):
        assert f"step {step}" in row, (row, step)
        assert f"step {step}" in title, (bug, step, title)
    # the text in each cell is the table's cell: '=' (or '0': bit-identical) where it
    # agrees, the same fitted c where it differs (or the name of a kind c cannot describe)
    columns = [t.get_text() for t in ax.get_xticklabels()]
    cells = {(round(t.get_position()[1] - 0.5), round(t.get_position()[0] - 0.5)): t.get_text()
             for t in ax.texts}
    for i, bug in enumerate(table.index):
        for j, key in enumerate(columns):
            want, got = table.loc[bug, bugs.short_name(key)], cells[(i, j)]
            if want == "=":
                assert got in ("=", "0"), (bug, key, got)
            else:
                assert got in (f"c={want}", "transposed", "Σ steps"), (bug, key, want, got)
