"""``handgrad explain``: the chain rule written out with numbers, against manual/ and autograd.

Published figures of the 2-2-2 worked example are asserted to the digits they are printed
with: every one of them is rounded (not truncated: truncating out_o1, E_total, ∂E/∂w5,
∂E/∂w1 or w5⁺ would give a different last digit), so a value x reproduces a figure printed
with d decimals when |x − pub| ≤ ½·10^−d.

Which update order gives which figure is what the numbers show (``update_order_table``):
the derivation's figures (∂E/∂w1, w1⁺) are simultaneous, the error after the first step
and the outputs after 10,000 steps are sequential, and the error after 10,000 steps
matches neither order at 10,000 — the simultaneous error after 9,999 updates rounds to it.
"""

from __future__ import annotations

import argparse
import io
import math
import re
import sys

import numpy as np
import pandas as pd
import pytest

import manual
from experiments.core.config import ConfigError, load_config
from experiments.core.tolerance import gradient_tolerance, magnitude_gradients
from experiments.teaching import explain as ex
from experiments.teaching.explain import worked as worked_mod

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
U = np.finfo(np.float64).eps / 2          # unit roundoff of float64
REL = 1e-12                               # fixed float64 agreement bound, beside derived ones


def gamma(m: int) -> float:
    """γ_m = m u / (1 − m u): Higham's bound on the relative error of m rounded operations."""
    return m * U / (1 - m * U)


def published(value: float, text: str) -> bool:
    """x reproduces a rounded published figure printed as ``text``: |x − pub| ≤ ½·10^−d."""
    d = len(text.split(".")[1])
    return abs(value - float(text)) <= 0.5 * 10.0 ** -d


def by_name(expl, name):
    return next(g for g in expl.gradients if g.name == name)


def update_of(expl, name):
    return next(u for u in expl.updates if u.name == name)


@pytest.fixture(scope="module")
def worked():
    return ex.explain(load_config("worked-2-2-2"))


@pytest.fixture(scope="module")
def table_1():
    return ex.update_order_table(1)


# -- the published 2-2-2 numbers ------------------------------------------------------------

def test_worked_example_first_step_is_the_published_one(worked):
    """The derivation's numbers, in the simultaneous order (the explanation's default)."""
    assert worked.order == "simultaneous"
    assert published(worked.out[2][0, 0], "0.75136507")             # out_o1
    assert published(worked.E_total, "0.298371109")
    assert published(by_name(worked, "w5").value, "0.082167041")
    assert published(by_name(worked, "w1").value, "0.000438568")
    assert published(update_of(worked, "w5").w_new, "0.35891648")
    assert published(update_of(worked, "w1").w_new, "0.149780716")
    # the names map onto the state_dict layout: w1 feeds h1 from i1, w7 feeds o2 from h1
    assert (by_name(worked, "w1").key, by_name(worked, "w1").index) == ("layers.0.weight", (0, 0))
    assert (by_name(worked, "w7").key, by_name(worked, "w7").index) == ("layers.1.weight", (1, 0))
    assert by_name(worked, "w7").edge == "h1 → o2"
    # frozen biases are not explained: 8 weights, 8 updates
    assert [g.name for g in worked.gradients] == [f"w{i}" for i in range(1, 9)]


def test_text_output_carries_the_numbers(worked, table_1):
    text = ex.render(worked, "text", table_1)
    assert re.search(r"^ +o1 +1\.10590597 +0\.75136507 +0\.75136507 +0$", text, re.M)
    for snippet in ("E_total = 0.298371109",
                    "= 0.74136507 · 0.186815602 · 0.593269992", "= 0.0821670406",
                    "∂E/∂out_h1 = ∂E/∂out_o1 · ∂out_o1/∂net_o1 · w5 + ∂E/∂out_o2",
                    "0.15 − 0.5 · 0.000438567734", "0.149780716", "0.35891648",
                    "E_total after 1 update"):
        assert snippet in text, snippet


def test_update_order_after_one_step(table_1):
    assert list(table_1.columns) == ["figure", "published", "digits", "step", "simultaneous",
                                     "sequential", "autograd_sgd", "matches", "note"]
    t = table_1.set_index("figure")
    # both orders share the forward pass and the output layer's step
    for fig in ("out_o1 (first forward pass)", "E_total (first forward pass)",
                "∂E/∂w5 (first backward pass)", "w5⁺ after 1 update"):
        assert t.loc[fig, "matches"] == "both", fig
    # the derivation (hidden delta through the old w5, w7) is simultaneous ...
    assert t.loc["∂E/∂w1 (first backward pass)", "matches"] == "simultaneous"
    assert t.loc["w1⁺ after 1 update", "matches"] == "simultaneous"
    # ... but the published error after the first step comes from the sequential order
    row = t.loc["E_total after 1 update"]
    assert row["matches"] == "sequential"
    assert published(row["sequential"], "0.291027924")
    assert not published(row["simultaneous"], "0.291027924")
    assert abs(row["simultaneous"] - 0.291027774) < 5e-10
    # autograd + SGD are the simultaneous order: equal to rounding, sequential is not
    assert abs(row["autograd_sgd"] - row["simultaneous"]) <= 4 * U
    drift = t.loc["max |w − w_autograd| after 1 update"]
    assert drift["simultaneous"] <= 4 * U
    assert drift["sequential"] > 1e-5          # O(lr·Δw): 0.5 · 7.4e-5 on w1, not rounding
    # the 10,000-step figures wait for --steps
    assert t.loc["E_total after 10,000 updates", "matches"] == ""
    notes = " ".join(ex.update_order_notes(table_1))
    assert "mixes the two orders" in notes and "--steps 10000" in notes


def test_update_order_after_10000_steps():
    """The 10,000-step figures (numpy only; the autograd witness is tested at few steps)."""
    t = ex.update_order_table(10_000, witness=False).set_index("figure")
    for fig, text in (("out_o1 after 10,000 updates", "0.015912196"),
                      ("out_o2 after 10,000 updates", "0.984065734")):
        assert t.loc[fig, "matches"] == "sequential", fig
        assert published(t.loc[fig, "sequential"], text)
    e = t.loc["E_total after 10,000 updates"]
    # Neither order gives the published error at 10,000 (simultaneous 3.51019e-05,
    # sequential 3.50848e-05); the simultaneous error after 9,999 updates rounds to it.
    assert e["matches"] == "neither"
    assert not published(e["simultaneous"], "0.0000351085")
    assert not published(e["sequential"], "0.0000351085")
    assert e["note"].startswith("simultaneous after 9,999 updates gives 0.0000351085")
    assert t.loc["E_total after 1 update", "matches"] == "sequential"


def test_sequential_explanation_goes_through_the_new_output_weights():
    expl = ex.explain("worked-2-2-2", ["w1", "w5"], order="sequential")
    w1, w5 = by_name(expl, "w1"), by_name(expl, "w5")
    sim = ex.explain("worked-2-2-2", ["w1", "w5"])
    assert w5.value == by_name(sim, "w5").value            # output layer: orders agree
    # hidden: δ_h through W2⁺ = W2 − lr ∂E/∂W2, recomputed here with plain numpy
    p = ex.prepare(load_config("worked-2-2-2")).params
    X, T = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    h = 1 / (1 + np.exp(-(X @ p["layers.0.weight"].T + 0.35)))
    o = 1 / (1 + np.exp(-(h @ p["layers.1.weight"].T + 0.60)))
    d_o = (o - T) * o * (1 - o)
    W2_new = p["layers.1.weight"] - 0.5 * d_o.T @ h
    want = ((d_o @ W2_new) * h * (1 - h))[0, 0] * X[0, 0]
    assert w1.value == pytest.approx(want, rel=1e-14, abs=0)
    assert [f.symbol for f in w1.upstream[0].factors][-1] == "w5⁺"
    assert abs(update_of(expl, "w1").w_new - 0.149817639) <= 0.5e-9   # 0.15 − 0.5·0.000364723
    assert abs(w1.diff) > 7e-5                              # against autograd: not rounding


def test_sequential_first_step_by_hand_and_published():
    """The sequential side of the update-order comparison (manual.MLP.backward with the
    after_layer update), one step, against plain numpy written here and the published
    figures; the simultaneous side against manual.MLP.gradients + manual.SGD."""
    prob = ex.prepare(load_config("worked-2-2-2"))
    trajs = worked_mod.trajectories(prob, 1, witness=False)
    seq, sim = trajs["sequential"], trajs["simultaneous"]
    p, lr = prob.params, 0.5
    X, T = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    h = 1 / (1 + np.exp(-(X @ p["layers.0.weight"].T + 0.35)))
    o = 1 / (1 + np.exp(-(h @ p["layers.1.weight"].T + 0.60)))
    d_o = (o - T) * o * (1 - o)
    W2 = p["layers.1.weight"] - lr * d_o.T @ h                 # output layer first ...
    d_h = (d_o @ W2) * h * (1 - h)                             # ... then δ_h through the new W2
    W1 = p["layers.0.weight"] - lr * d_h.T @ X
    for key, want in (("layers.1.weight", W2), ("layers.0.weight", W1)):
        np.testing.assert_allclose(seq.params1[key], want, rtol=1e-14, atol=0, err_msg=key)
    np.testing.assert_allclose(seq.grads0["layers.0.weight"], d_h.T @ X, rtol=1e-13, atol=0)
    h1 = 1 / (1 + np.exp(-(X @ W1.T + 0.35)))
    o1 = 1 / (1 + np.exp(-(h1 @ W2.T + 0.60)))
    E1 = 0.5 * float(np.sum((o1 - T) ** 2))
    assert seq.E[1] == pytest.approx(E1, rel=1e-13, abs=0)
    assert published(seq.E[1], "0.291027924")                 # E_total after 1 update
    assert published(seq.params1["layers.1.weight"][0, 0], "0.35891648")   # w5⁺
    assert abs(seq.params1["layers.0.weight"][0, 0] - 0.149817639) <= 0.5e-9   # w1⁺
    # the simultaneous side is manual.MLP.gradients + manual.SGD, bit for bit
    c = prob.config
    net = manual.MLP(c.sizes, **c.spec(), params=p)
    g = net.gradients(prob.X, prob.Y)
    stepped = {k: v.copy() for k, v in p.items()}
    manual.SGD(stepped, lr=lr).step(g)
    for key in g:
        assert np.array_equal(sim.grads0[key], g[key]), key
        assert np.array_equal(sim.params1[key], stepped[key]), key
    assert sim.E[0] == seq.E[0] == net.loss(prob.X, prob.Y)


def test_sequential_explanation_gradients_are_manuals_in_the_output_layer():
    """Sequential: the output layer's gradient is manual.MLP.gradients' bit for bit (no
    weight has moved yet when it is computed); the hidden layer's is not."""
    cfg = load_config("xor")                       # trainable biases, N = 4
    expl = ex.explain(cfg, order="sequential")
    c, prob = expl.config, expl.problem
    want = manual.MLP(c.sizes, **c.spec(), params=prob.params).gradients(prob.X, prob.Y)
    last = len(c.sizes) - 2
    for key in want:
        same = np.array_equal(expl.grads_all[key], want[key])
        assert same == key.startswith(f"layers.{last}."), key


# -- the explanation is manual's arithmetic ------------------------------------------------

@pytest.mark.parametrize("name, overrides", [
    ("worked-2-2-2", []),
    ("seed", []),
    ("xor", []),                                    # trainable biases, N = 4
    ("xor", ["hidden=[3, 2]", "activation=tanh", "output_activation=sigmoid", "loss=bce"]),
    ("iris", []),                                   # cross-entropy on logits, first batch of 16
])
def test_products_equal_manual_and_autograd(name, overrides):
    cfg = load_config(name, overrides)
    expl = ex.explain(cfg)
    c, prob = expl.config, expl.problem
    assert c.dtype == "float64"                     # the fixed bounds REL are float64's
    net = manual.MLP(c.sizes, c.activation, c.resolved_output_activation, c.bias, c.loss,
                     c.dtype, params=prob.params)
    want = net.gradients(prob.X, prob.Y)
    N = expl.n_samples
    # the explanation's gradients ARE manual's: the same backward pass, traced
    assert list(expl.grads_all) == list(want)
    for key, g in want.items():
        assert np.array_equal(expl.grads_all[key], g), key
    assert expl.E_total == net.loss(prob.X, prob.Y)
    assert {g.key for g in expl.gradients} == set(want)
    for g in expl.gradients:
        # The explanation multiplies the same rounded factors manual does, per sample, and
        # sums the N products with np.sum; manual sums them inside δᵀ a (BLAS). Each sum of
        # N products is within γ_N Σ_n |p_n| of the exact sum of those products (Higham
        # §3.1: one rounding per product and per addition), so the two differ by at most
        # 2 γ_N Σ_n |p_n|.
        scale = float(np.sum(np.abs(g.products)))
        err = abs(g.value - want[g.key][g.index])
        assert err <= 2 * gamma(N) * scale, (g.name, err, scale)
        assert err <= REL * scale, (g.name, err, scale)
        # the written-out product is the product of the factors shown, sample by sample
        f = np.prod([fac.values for fac in g.factors], axis=0)
        np.testing.assert_allclose(g.products, f, rtol=2 * gamma(3), atol=0)
        # ∂E/∂out_h shown as Σ of its terms: δ W (BLAS) vs the terms added one by one,
        # K terms, each within γ_K of exact
        if g.upstream:
            terms = np.stack([u.values for u in g.upstream])          # (K, N)
            bound = np.abs(terms).sum(axis=0)
            err_h = np.abs(terms.sum(axis=0) - g.factors[0].values)
            assert np.all(err_h <= 2 * gamma(len(g.upstream)) * bound)
            assert np.all(err_h <= REL * bound)
    # Against autograd, norm-wise per tensor: ‖g_m − g_t‖ ≤ 2 γ_m ‖G̃‖ with G̃ the gradient
    # recomputed from magnitudes (experiments.core.tolerance; docs/tolerance.md).
    acts = net.forward_cache(prob.X)
    G = magnitude_gradients(net, net.params, acts, prob.T)
    base = gradient_tolerance(c.dtype, c.sizes, N)
    for key in want:
        entries = [g for g in expl.gradients if g.key == key]
        diff = math.sqrt(sum(g.diff ** 2 for g in entries))
        assert diff <= base * G[key], (key, diff, base * G[key])
        assert diff <= REL * np.linalg.norm(want[key]), (key, diff)
    # The update, next to torch.optim.SGD's first step (plain: no config here has weight
    # decay or Nesterov). Each side computes fl(w − fl(lr·g)): one rounding of lr·g and one
    # of the difference, so |w⁺_m − w⁺_t| ≤ lr·|g_m − g_t| + 2u(lr·|g| + |w⁺|) (+ O(u²)).
    for u in expl.updates:
        g = by_name(expl, u.name)
        tol = c.lr * abs(g.diff) + 2 * U * (c.lr * abs(g.value) + abs(u.w_new)) * (1 + 1e-9)
        assert abs(u.diff) <= tol, (u.name, u.diff, tol)
        assert abs(u.diff) <= REL * abs(u.w_new), (u.name, u.diff)
    # The error terms are each element's share of E: they add up to it (K·N terms summed
    # once more: within γ_{NK} Σ|terms| of manual's E, which sums before scaling).
    terms = expl.error_terms
    err = abs(float(terms.sum()) - expl.E_total)
    assert err <= 2 * gamma(terms.size) * float(np.abs(terms).sum()) + 4 * U * abs(expl.E_total)
    assert err <= REL * float(np.abs(terms).sum())
    # E against torch's loss module: each element's term takes at most 4 roundings per side
    # (log or difference, product, scale) and the M = N·K terms M − 1 additions
    err_t = abs(expl.E_total - expl.E_autograd)
    assert err_t <= 2 * gamma(terms.size + 4) * float(np.abs(terms).sum()), err_t
    assert err_t <= REL * abs(expl.E_total), err_t
    if c.loss == "half_sse":                       # ½ (target − out)², written independently
        assert np.array_equal(terms, 0.5 * (prob.T - expl.out[-1]) ** 2)


def test_seed_config_works():
    expl = ex.explain("seed")
    assert expl.config.sizes == (3, 4, 1) and expl.n_samples == 4
    assert len(expl.gradients) == 16                       # 12 + 4 weights, no biases
    g = by_name(expl, "layers.0.weight[1,2]")
    assert g.edge == "layer 0, unit 2 → layer 1, unit 1"
    text = ex.render(expl, "text", ex.update_order_table(1, "seed"))
    assert "summed over the batch of 4 samples" in text
    assert "n=3:" in text and "Σ_n = " in text
    assert "published" in text                              # the table's header, no figures
    assert "O(lr·Δw)" in text


# -- formats ----------------------------------------------------------------------------

def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table in ``text`` as rows of cells; checks the delimiter row."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            rows = [[c.strip() for c in row.strip("|").split(" | ")] for row in block]
            assert set(block[1].replace("|", "")) == {"-"}, block[:2]
            ncol = len(rows[0])
            assert all(len(r) == ncol for r in rows[2:]), block
            tables.append([rows[0], *rows[2:]])
            block = []
    return tables


def test_markdown_parses(worked, table_1):
    text = ex.render(worked, "markdown", table_1)
    assert text.startswith("# handgrad explain: worked-2-2-2")
    tables = markdown_tables(text)
    heads = [t[0] for t in tables]
    assert ["neuron", "net", "out", "autograd out", "max diff"] in heads
    assert heads.count(["term", "product", "value", "autograd", "diff"]) == 8   # w1 … w8
    order = next(t for t in tables if t[0][0] == "figure")
    rows = {r[0]: r for r in order[1:]}
    assert rows["E_total after 1 update"][1] == "0.291027924"
    assert rows["E_total after 1 update"][-1] == "sequential"
    # every table is preceded by a blank line (GitHub does not let a table interrupt a
    # paragraph)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and not lines[i - 1].startswith("|"):
            assert lines[i - 1] == "", lines[i - 1]


def test_csv_parses(worked, table_1):
    df = pd.read_csv(io.StringIO(ex.render(worked, "csv", table_1)))
    assert list(df.columns) == ["section", "param", "term", "value", "autograd", "diff"]
    assert set(df["section"]) == {"forward", "error", "gradient", "update", "update_order"}
    for col in ("value", "autograd", "diff"):
        assert pd.api.types.is_float_dtype(df[col]), col
    final = df[(df["section"] == "gradient") & (df["term"] == "∂E/∂w5")].iloc[0]
    assert final["value"] == by_name(worked, "w5").value          # exact round trip
    assert final["diff"] == final["value"] - final["autograd"]
    upd = df[(df["section"] == "update") & (df["param"] == "w1") & (df["term"] == "w⁺")]
    assert published(float(upd["value"].iloc[0]), "0.149780716")


# -- figure -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["worked-2-2-2", "seed"])
def test_figure_is_written(tmp_path, name):
    path = ex.draw_network(ex.explain(name), tmp_path / f"{name}.png")
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000


# -- bad input and the CLI path ------------------------------------------------------------

@pytest.mark.parametrize("param, words", [
    ("layers.1.weight[2,0]", "out of range for layers.1.weight of shape (2, 2)"),
    ("layers.1.weight[0]", "takes 2 indices, e.g. layers.1.weight[0,0]"),
    ("layers.3.weight[0,0]", "no parameter 'layers.3.weight'"),
    ("layers.0.bias[0]", "frozen"),
    ("weights[0,0]", "expected KEY[i,j] like layers.1.weight[0,0]"),
    ("layers.1.weight[a,b]", "must be integers"),
    ("w9", "w1 … w8"),
])
def test_bad_param_is_a_config_error(param, words):
    with pytest.raises(ConfigError) as err:
        ex.explain("worked-2-2-2", param)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_too_many_parameters_suggest_param():
    with pytest.raises(ConfigError, match=r"2260 parameters .* --param"):
        ex.explain("digits")
    expl = ex.explain("digits", "layers.1.weight[3,7]")          # one entry is fine
    assert [g.name for g in expl.gradients] == ["layers.1.weight[3,7]"]


def cli(*argv: str) -> int:
    """The subcommand through a parser built from ``register``, errors mapped as cli.main."""
    parser = argparse.ArgumentParser(prog="handgrad")
    ex.register(parser.add_subparsers(dest="command", required=True),
                argparse.ArgumentDefaultsHelpFormatter)
    args = parser.parse_args(["explain", *argv])
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"handgrad: error: {err}", file=sys.stderr)
        return 2


def test_cli_text_default(capsys):
    assert cli("--param", "w5") == 0
    out = capsys.readouterr().out
    assert out.startswith("worked-2-2-2: sizes 2-2-2")
    assert "∂E/∂w5 = ∂E/∂out_o1 · ∂out_o1/∂net_o1 · ∂net_o1/∂w5" in out
    assert "Update order: simultaneous vs sequential, 1 update(s)" in out


def test_cli_csv_to_file_and_figure(tmp_path, capsys):
    out, fig = tmp_path / "w.csv", tmp_path / "w.png"
    assert cli("--format", "csv", "--out", str(out), "--figure", str(fig), "--steps", "2",
               "--param", "layers.1.weight[0,0]", "--update-order", "sequential") == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {out}", f"wrote {fig}"]
    df = pd.read_csv(out)
    assert set(df[df["section"] == "gradient"]["param"]) == {"w5"}
    assert fig.read_bytes().startswith(PNG_MAGIC)


def test_cli_markdown_with_set(capsys):
    assert cli("seed", "--set", "lr=0.5", "--format", "markdown",
               "--param", "layers.1.weight") == 0
    text = capsys.readouterr().out
    assert "lr 0.5" in text
    assert len(markdown_tables(text)) == 1 + 1 + 4 + 1 + 1    # fwd, error, 4 params, update, order


@pytest.mark.parametrize("argv, words", [
    (["--param", "layers.9.weight[0,0]"], "no parameter 'layers.9.weight'"),
    (["--steps", "0"], "--steps 0"),
    (["nope"], "unknown experiment 'nope'"),
    (["--figure", "/nonexistent/dir/x.png"], "does not exist"),
    (["--out", "/"], "--out / is a folder; give a file name in it, e.g. /explain.html"),
    (["--figure", "/"], "--figure / is a folder; give a file name in it, e.g. /net.png"),
    (["iris", "--update-order", "sequential"], "plain gradient descent"),
])
def test_cli_bad_input_exits_2_with_one_line(capsys, argv, words):
    assert cli(*argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("handgrad: error: ") and words in lines[0]


def test_through_cli_main(monkeypatch, capsys):
    """The real entry point."""
    from experiments import cli as cli_module
    assert cli_module.main(["explain", "--param", "w9"]) == cli_module.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("handgrad: error: --param 'w9'")
    assert cli_module.main(["explain", "--param", "w8", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(df.loc[df["section"] == "gradient", "param"]) == {"w8"}
    with pytest.raises(SystemExit) as help_exit:
        cli_module.main(["explain", "--help"])
    assert help_exit.value.code == 0
    assert "--update-order {simultaneous,sequential}" in capsys.readouterr().out
