"""The learner's names everywhere: explain takes and speaks the W1b1 names (W_l of shape
(in, out), the transpose of handgrad's layers.{l-1}.weight), and a check folder's
training CSVs, report and chain-rule block use the file's own names and layout.

The references are independent of the naming code: autograd's gradient of the torch key
(torch_impl), the engine's own ``w1b1`` column of grad_entries.csv, and the transpose
relation W_l = layers.{l-1}.weightᵀ written out by hand.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import torch_impl
from experiments.cli import main
from experiments.core.config import ConfigError, load_config
from experiments.teaching.explain import convention_of, explain, prepare

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "learners"


@pytest.fixture(scope="module")
def seed_autograd():
    prob = prepare(load_config("seed"))
    cfg = prob.config
    return torch_impl.MLP(cfg.sizes, **cfg.spec(), params=prob.params).loss_and_gradients(
        prob.X, prob.Y)[1]


def test_explain_takes_w1b1_names(seed_autograd):
    e = explain("seed", "W1[0,1]")                  # input 0 -> hidden unit 1
    [g] = e.gradients
    assert (g.key, g.index, g.name, e.convention) == ("layers.0.weight", (1, 0), "W1[0,1]",
                                                      "W1b1")
    # float64, a sum of 4 products: the hand chain rule agrees with autograd to rounding
    assert g.value == pytest.approx(float(seed_autograd["layers.0.weight"][1, 0]), rel=1e-12)
    symbols = " ".join(f.symbol for f in g.factors)
    assert "a1[1]" in symbols and "z1[1]" in symbols and "out[" not in symbols
    whole = explain("seed", "W2")                   # (4, 1) in the learner's layout
    assert [g.name for g in whole.gradients] == ["W2[0,0]", "W2[1,0]", "W2[2,0]", "W2[3,0]"]
    assert [g.index for g in whole.gradients] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    torch_named = explain("seed", "layers.0.weight[1,0]", convention="W1b1")
    assert torch_named.gradients[0].name == "W1[0,1]"
    assert explain("seed", "layers.0.weight[1,0]").gradients[0].name == "layers.0.weight[1,0]"
    assert explain("xor", "b1[2]").gradients[0].key == "layers.0.bias"


def test_explain_tables_name_units_in_the_learners_terms(capsys):
    # W1[0,1] feeds unit 1 of a1 from input 0: the tables and the edge use a_l, as the
    # chain rule's symbols do, and no "layer l, unit j"
    assert main(["explain", "seed", "--param", "W1[0,1]"]) == 0
    out = capsys.readouterr().out
    forward = out.split("Forward pass")[1].split("Error")[0]
    rows = [line.split()[1] for line in forward.splitlines()[3:] if line[:3].strip().isdigit()]
    assert rows[:8] == ["a0[0]", "a0[1]", "a0[2]", "a1[0]", "a1[1]", "a1[2]", "a1[3]",
                        "a2[0]"]
    assert "z_l[j] = net" in forward
    assert "W1[0,1] = layers.0.weight[1,0]   (a0[0] → a1[1])" in out
    assert "unit" not in out.split("Error")[1].split("Gradients")[0]
    assert "layer 1, unit" not in out
    # handgrad's own names stay in the torch convention
    assert explain("seed", "layers.0.weight[1,0]").neurons[1][0] == "layer 1, unit 0"


@pytest.mark.parametrize("param,words", [
    ("W1[1,4]", "index [1,4] is out of range for W1 of shape (3, 4)"),
    ("W3[0,0]", "no parameter 'W3' in this network; it has W1 (3, 4), W2 (4, 1)"),
    ("W1[0]", "W1 has shape (3, 4) and takes 2 indices, e.g. W1[0,0]"),
    ("V1[0,0]", "expected KEY[i,j] like layers.1.weight[0,0] or W2[0,0]"),
])
def test_explain_w1b1_names_refused_in_the_learners_terms(param, words):
    with pytest.raises(ConfigError, match=None) as err:
        explain("seed", param)
    assert words in str(err.value)


def test_cli_explain_param_and_convention_from_a_file(tmp_path, capsys):
    assert main(["explain", "seed", "--param", "W1[0,1]"]) == 0
    out = capsys.readouterr().out
    assert "W1[0,1] = layers.0.weight[1,0]" in out
    # CONVENTION read from the file's syntax tree: the file is never run
    f = tmp_path / "mine.py"
    f.write_text('raise SystemExit("ran")\nCONVENTION = "W1b1"\n', encoding="utf-8")
    assert convention_of(str(f)) == "W1b1"
    assert convention_of(str(EXAMPLES / "correct_torch.py")) == "torch"
    assert main(["explain", "seed", "--param", "layers.1.weight[0,3]", "--convention",
                 str(f)]) == 0
    assert "W2[3,0] = layers.1.weight[0,3]" in capsys.readouterr().out
    bad = tmp_path / "bad.py"
    bad.write_text('CONVENTION = "W1B1"\n', encoding="utf-8")
    assert main(["explain", "seed", "--convention", str(bad)]) == 2
    assert "CONVENTION = 'W1B1'; use one of ['torch', 'W1b1']" in capsys.readouterr().err


def test_check_folder_in_the_learners_names(tmp_path, capsys):
    out = tmp_path / "c"
    # correct W1b1 maths checked against mse: a factor 2 everywhere, so a chain rule is shown
    code = main(["check", str(EXAMPLES / "correct_w1b1.py"), "seed", "--set", "loss=mse",
                 "--steps", "2", "--no-plots", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert ("The chain rule for W2[3,0], as `handgrad explain --param 'W2[3,0]'` prints it "
            "for this config:") in text
    assert "∂E/∂a2[0] · ∂a2[0]/∂z2[0]" in text
    t = out / "training"
    for csv in ("grads.csv", "summary.csv", "final_grads.csv", "grad_entries.csv"):
        params = set(pd.read_csv(t / csv)["param"])
        assert params - {"all", "loss"} == {"W1", "W2"}, csv
    entries = pd.read_csv(t / "grad_entries.csv")     # row, col index the learner's W
    assert (entries["w1b1"] == [f"{p}[{r},{c}]" for p, r, c in
                                zip(entries["param"], entries["row"], entries["col"],
                                    strict=True)]).all()
    final = pd.read_csv(t / "final_grads.csv")
    assert final.groupby("param")[["row", "col"]].max().to_dict("index") == {
        "W1": {"row": 2, "col": 3}, "W2": {"row": 3, "col": 0}}   # (3, 4) and (4, 1)
    report = (t / "report.md").read_text(encoding="utf-8")
    assert "`W1`, `W2`" in report and "layers." not in report
    # the torch convention keeps handgrad's keys
    torch_file = tmp_path / "t.py"
    shutil.copy(EXAMPLES / "correct_torch.py", torch_file)
    assert main(["check", str(torch_file), "seed", "--steps", "1", "--no-plots", "--out",
                 str(tmp_path / "t")]) == 0
    summary = pd.read_csv(tmp_path / "t" / "training" / "summary.csv")
    assert set(summary["param"]) == {"layers.0.weight", "layers.1.weight", "loss", "all"}


def test_html_page_selects_by_the_learners_names():
    from experiments.teaching.explain.html import explain_steps, render_html
    runs = explain_steps(load_config("seed"), None, "simultaneous", 1, "W1b1")
    page = render_html(runs, "simultaneous")
    # one selectable entry per weight, named as the learner's (in, out) arrays index them
    names = re.findall(r'data-param="([^"]*)"', page)
    assert sorted(set(names)) == sorted([f"W1[{i},{j}]" for i in range(3) for j in range(4)]
                                        + [f"W2[{j},0]" for j in range(4)])
