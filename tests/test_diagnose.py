"""experiments.core.diagnose: its numbers (bug level, least-squares ratio), the findings of
a run's frames (final gradients, onsets, drift), run directories, and the presentation.

``diagnose()`` on synthetic gradient dicts and on the bug gallery's real runs is exercised
in test_bugs.py, next to the bugs it names.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import manual
from experiments.core.diagnose import (
    Finding,
    bug_tolerance,
    findings_frame,
    findings_markdown,
    fit_ratio,
    format_findings,
    param_kinds,
    ratio_causes,
)
from experiments.core.diagnose_run import diagnose_frames, diagnose_run

SIZES = (3, 4, 2)
KEYS = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]


@pytest.fixture
def grads() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {k: rng.normal(size=s) for k, s in manual.parameter_shapes(SIZES, True).items()}


def final_frame(gm: dict, gt: dict, seed: int = 0) -> pd.DataFrame:
    """final_grads.csv's layout (param, row, col, grad_manual, grad_torch, abs_diff), built
    here element by element, rows shuffled: the reader must not rely on their order."""
    rows = []
    for k in gm:
        m2, t2 = np.atleast_2d(gm[k].T).T, np.atleast_2d(gt[k].T).T     # bias (out,) -> (out, 1)
        for r in range(m2.shape[0]):
            for c in range(m2.shape[1]):
                rows.append((k, r, c, m2[r, c], t2[r, c], abs(m2[r, c] - t2[r, c])))
    df = pd.DataFrame(rows, columns=["param", "row", "col", "grad_manual", "grad_torch",
                                     "abs_diff"])
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def grads_frame(rel: dict[str, list[float]], tol: float = 1e-14,
                drift: float = 0.0) -> pd.DataFrame:
    """grads.csv rows for logged steps 0, 1, ...: rel_err per parameter per step."""
    rows = []
    n = len(next(iter(rel.values())))
    for step in range(n):
        for k, errs in rel.items():
            rows.append({"step": step, "epoch": step, "param": k, "rel_err": errs[step],
                         "rel_tol": tol, "weight_max_abs_diff": drift * step})
    return pd.DataFrame(rows)


def ones_final() -> pd.DataFrame:
    """final_grads.csv of two equal, all-ones gradients (the onsets come from grads.csv)."""
    g = {k: np.ones(s) for k, s in manual.parameter_shapes(SIZES, True).items()}
    return final_frame(g, g)


# -- numbers ---------------------------------------------------------------------------------

def test_bug_tolerance_is_root_u():
    assert bug_tolerance("float64") == math.sqrt(2.0**-53)      # ≈ 1.05e-8
    assert bug_tolerance("float32") == 2.0**-12                 # √(2^-24)
    assert bug_tolerance() == bug_tolerance("float64")


def test_fit_ratio_against_least_squares_by_hand():
    # m = 2t + r with r ⟂ t: c = ⟨m, t⟩/⟨t, t⟩ = 2 exactly, residual ‖r‖/‖m‖
    t = np.array([1.0, 2.0, 0.0])
    r = np.array([2.0, -1.0, 2.0])                    # ⟨r, t⟩ = 0, ‖r‖ = 3
    m = 2 * t + r                                     # (4, 3, 2), ‖m‖ = √29
    c, res = fit_ratio(m, t)
    assert c == 2.0
    assert res == pytest.approx(3 / math.sqrt(29), rel=1e-15, abs=0)


def test_fit_ratio_with_a_zero_reference():
    c, res = fit_ratio(np.array([1.0, -2.0]), np.zeros(2))
    assert math.isnan(c) and res == 1.0                # nothing of m is explained


def test_ratio_causes_name_the_reduction_constants():
    assert ratio_causes(2.0)[0].startswith("an extra factor 2")
    # 1/6 = 1/M, and also ½ · 1/K: every match is named, the simplest first
    assert ratio_causes(1 / 6, batch=2, outputs=3) == [
        "an extra 1/M (M = N·K = 6: mean where the loss sums)",
        "the factor 2 of the squared error missing (∂(A − Y)²/∂A = 2(A − Y)) and an extra "
        "1/K (K = 3)"]
    assert ratio_causes(3.0, batch=5, outputs=3) == [
        "the 1/K of a mean over the outputs missing (K = 3)"]
    assert ratio_causes(math.nan) == [] and ratio_causes(1.0) == []
    assert ratio_causes(2.0 * (1 + 1e-6)) == []                   # outside tol = 1e-8


# -- findings from a run's frames --------------------------------------------------------------

def test_no_final_gradients_is_one_other_finding():
    for empty in (None, pd.DataFrame()):
        fs = diagnose_frames(empty)
        assert [f.kind for f in fs] == ["other"]
        assert "no final gradients" in fs[0].detail


def test_final_grads_frame_is_read_back_into_arrays(grads):
    # whatever the row order, the frame's elements land where they came from: a factor 2
    # in one bias (and nothing else) is found as exactly that
    gm = {**grads, "layers.1.bias": 2 * grads["layers.1.bias"]}
    fs = diagnose_frames(final_frame(gm, grads), batch=5)
    assert [f.kind for f in fs] == ["constant_ratio"]
    assert fs[0].params == ("layers.1.bias",)
    assert fs[0].numbers["c"] == pytest.approx(2, rel=1e-12, abs=0)
    fs = diagnose_frames(final_frame(grads, grads, seed=1))
    assert [f.kind for f in fs] == ["agree"] and set(fs[0].params) == set(KEYS)


def test_rel_tol_comes_from_the_last_logged_step(grads):
    rng = np.random.default_rng(0)
    noisy = {k: g * (1 + 1e-15 * rng.normal(size=g.shape)) for k, g in grads.items()}
    final = final_frame(noisy, grads)
    # no grads frame: only the bug level decides -> agree
    assert [f.kind for f in diagnose_frames(final)] == ["agree"]
    # the last step's rel_tol (1e-18) is below the noise, an earlier step's (1) is not used
    g = grads_frame({k: [0.0, 0.0] for k in KEYS})
    g.loc[g["step"] == 0, "rel_tol"] = 1.0
    g.loc[g["step"] == 1, "rel_tol"] = 1e-18
    kinds = [f.kind for f in diagnose_frames(final, g)]
    assert kinds == ["rounding"]


def test_onsets_group_parameters_by_first_step():
    rel = {"layers.0.weight": [0, 0, 1e-3, 1e-3],     # from step 2, to the end
           "layers.0.bias": [0, 0, 1e-3, 0],          # step 2 only: agrees again at the end
           "layers.1.weight": [1e-13, 1e-13, 1e-13, 1e-13],   # from step 0, rounding level
           "layers.1.bias": [0, 0, 0, 0]}
    onsets = [f for f in diagnose_frames(ones_final(), grads_frame(rel)) if f.kind == "onset"]
    assert [f.numbers["step"] for f in onsets] == [0, 2]
    first, second = onsets
    assert first.params == ("layers.1.weight",)
    assert "at rounding level" in first.detail
    assert "every earlier logged step agreed" not in first.detail    # step 0 is the first
    assert second.params == ("layers.0.weight", "layers.0.bias")
    assert "at bug level" in second.detail
    assert "every earlier logged step agreed" in second.detail
    assert "layers.0.bias agrees again at the last logged step" in second.detail
    assert second.numbers["rel_err"] == 1e-3 and second.numbers["rel_tol"] == 1e-14


def test_drift_is_listed_first_in_free_runs_only():
    rel = {k: [0, 1e-2, 1e-2] for k in KEYS}              # bug level from step 1 of 0..2
    g = grads_frame(rel, drift=0.25)
    free = diagnose_frames(ones_final(), g, mode="free")
    assert free[0].kind == "drift" and free[0].params == tuple(KEYS)
    assert free[0].numbers == {"step": 1, "weight_max_abs_diff": 0.5}
    assert "rerun with --set mode=synced" in free[0].detail
    synced = diagnose_frames(ones_final(), g, mode="synced")
    assert "drift" not in [f.kind for f in synced]
    # an onset at rounding level, or one only at the last step, is no drift
    assert "drift" not in [f.kind for f in diagnose_frames(
        ones_final(), grads_frame({k: [0, 1e-12, 1e-12] for k in KEYS}), mode="free")]
    assert "drift" not in [f.kind for f in diagnose_frames(
        ones_final(), grads_frame({k: [0, 0, 1e-2] for k in KEYS}), mode="free")]


def loss_frame(E_t: list[float], E_m: list[float], tol: float = 1e-14) -> pd.DataFrame:
    """loss.csv rows for logged steps 0, 1, ...: the manual loss code (synced: the sides'
    own losses) against torch's, each step held to ``tol``."""
    E_t, E_m = np.asarray(E_t, float), np.asarray(E_m, float)
    rel = np.abs(E_m - E_t) / np.maximum(np.abs(E_m), np.abs(E_t))
    return pd.DataFrame({"step": range(len(E_t)), "epoch": range(len(E_t)), "loss_manual": E_m,
                         "loss_torch": E_t, "abs_diff": np.abs(E_m - E_t), "rel_diff": rel,
                         "examples_seen": 4, "rel_tol": tol, "probe_loss": E_m,
                         "loss_rel_diff": rel, "loss_rel_tol": tol})


E_TORCH = [0.9, 0.7, 0.4, 0.2]
AGREE = {k: [0, 0, 0, 0] for k in KEYS}


def loss_findings(E_m, rel=AGREE, **kw) -> list:
    return [f for f in diagnose_frames(ones_final(), grads_frame(rel), batch=4,
                                       loss=loss_frame(E_TORCH, E_m, **kw)) if "loss" in f.params]


def test_a_loss_off_while_the_gradients_agree_is_said_so_with_its_ratio():
    # E_manual = E_torch / K at every step (K = 2, SIZES' outputs: from predictions here)
    preds = pd.DataFrame({"sample": [0, 0], "output": [0, 1], "manual": 0.5, "torch": 0.5,
                          "abs_diff": 0.0})
    found = [f for f in diagnose_frames(ones_final(), grads_frame(AGREE), batch=4,
                                        loss=loss_frame(E_TORCH, np.divide(E_TORCH, 2)),
                                        predictions=preds) if "loss" in f.params]
    assert [f.kind for f in found] == ["loss_only", "constant_ratio"]
    assert found[0].detail.startswith("your loss value is off, your gradients are right: the "
                                      "mistake is in the loss formula, not in backprop")
    assert found[0].numbers == {"rel_err": 0.5, "step": 0}
    assert found[1].numbers["c"] == 0.5 and found[1].numbers["residual"] < 1e-15
    # c = ½ = 1/K: named in the gradients' words (ratio_causes)
    assert "likely: an extra 1/K (K = 2); or the factor 2 of the squared error missing" in \
        found[1].detail
    assert param_kinds(found, ["loss"]) == {"loss": "loss_only"}


def test_a_loss_ratio_beside_differing_gradients_is_no_loss_only():
    rel = {**AGREE, "layers.1.weight": [0.5] * 4}
    assert [f.kind for f in loss_findings(np.multiply(E_TORCH, 2), rel)] == ["constant_ratio"]
    # no constant ratio either: "other"
    found = loss_findings(np.add(E_TORCH, [0.1, 0.3, 0.0, 0.2]), rel)
    assert [f.kind for f in found] == ["other"] and found[0].numbers["step"] == 0


def test_a_loss_off_by_no_constant_is_still_loss_only():
    found = loss_findings(np.add(E_TORCH, [0.0, 0.3, 0.1, 0.2]))
    assert [f.kind for f in found] == ["loss_only"] and found[0].numbers["step"] == 1


def test_a_loss_past_its_bound_below_the_bug_level_is_rounding():
    found = loss_findings(np.multiply(E_TORCH, 1 + 1e-12))      # rel 1e-12: 1e-14 < · < √u
    assert [f.kind for f in found] == ["rounding"] and "not a mistake" in found[0].detail
    assert loss_findings(np.multiply(E_TORCH, 1 + 1e-12), tol=1e-11) == []   # within it


def test_a_loss_csv_without_the_bound_is_not_diagnosed():
    # a run directory written before the loss was judged: its loss.csv has no rel_tol columns
    old = loss_frame(E_TORCH, np.multiply(E_TORCH, 2)).iloc[:, :7]
    findings = diagnose_frames(ones_final(), grads_frame(AGREE), loss=old)
    assert not [f for f in findings if "loss" in f.params and f.kind != "stuck"]


def test_param_kinds_first_finding_wins_and_onsets_are_ignored():
    fs = [Finding("onset", ("a",), "x", {"step": 0}),
          Finding("constant_ratio", ("a", "b"), "x"),
          Finding("transposed", ("b",), "x")]
    assert param_kinds(fs, ["a", "b", "c"]) == {"a": "constant_ratio", "b": "constant_ratio",
                                                "c": "agree"}


# -- run directories -------------------------------------------------------------------------

def test_a_folder_without_grads_csv_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a handgrad run directory"):
        diagnose_run(tmp_path)


def test_run_folder_batch_comes_from_predictions(tmp_path, grads):
    # manual = reference / 5: named as "an extra 1/N (N = 5" only if N is known; the run
    # folder's predictions.csv has 5 samples, config.toml says batch "full"
    gm = {k: g / 5 for k, g in grads.items()}
    final_frame(gm, grads).to_csv(tmp_path / "final_grads.csv", index=False)
    grads_frame({k: [1.0] for k in KEYS}, tol=1e-14).to_csv(tmp_path / "grads.csv", index=False)
    (tmp_path / "config.toml").write_text('dtype = "float64"\nbatch_size = "full"\n'
                                          'mode = "synced"\n', encoding="utf-8")
    fs = diagnose_run(tmp_path)
    assert fs[0].kind == "constant_ratio" and "1/N" not in fs[0].detail
    pd.DataFrame({"sample": [0, 0, 1, 2, 3, 4], "output": [0, 1, 0, 0, 0, 0]}).to_csv(
        tmp_path / "predictions.csv", index=False)
    fs = diagnose_run(tmp_path)
    assert fs[0].kind == "constant_ratio" and "an extra 1/N (N = 5" in fs[0].detail


# -- presentation ----------------------------------------------------------------------------

FINDINGS = [Finding("constant_ratio", ("layers.0.weight", "layers.1.bias"), "c = 2",
                    {"c": 2.0, "residual": 1e-17, "rel_err": 0.5}),
            Finding("other", (), "nothing to name", {})]


def test_findings_frame_columns_and_missing_numbers():
    df = findings_frame(FINDINGS)
    assert list(df.columns) == ["kind", "params", "detail", "c", "residual", "rel_err",
                                "layer", "enters_at", "step"]
    assert list(df["params"]) == ["layers.0.weight layers.1.bias", ""]
    assert df.loc[0, "c"] == 2.0 and df.loc[0, "rel_err"] == 0.5
    assert df.loc[[0, 1], ["layer", "enters_at", "step"]].isna().all().all()
    assert df.loc[1, ["c", "residual", "rel_err"]].isna().all()


def test_text_and_markdown():
    assert format_findings(FINDINGS) == ("- constant_ratio [layers.0.weight, layers.1.bias]: "
                                         "c = 2\n- other []: nothing to name")
    assert findings_markdown(FINDINGS) == (
        "- **constant_ratio** `layers.0.weight`, `layers.1.bias`: c = 2\n"
        "- **other**: nothing to name")
    assert findings_markdown([]) == "- nothing to diagnose"
