"""experiments.output.compare: ``first_difference`` between two runs' tables (the CLI's
``handgrad compare`` end to end is test_cli's)."""

from __future__ import annotations

import math

import pandas as pd

from experiments.output.compare import first_difference

A = pd.DataFrame({"step": [0, 1, 2, 3], "param": ["w"] * 4,
                  "loss": [1.0, 0.5, math.nan, 0.25], "other": [9, 9, 9, 9]})


def test_identical_tables_have_no_difference():
    assert first_difference(A, A.copy(), ["step"], ["loss"]) is None    # nan equals nan


def test_first_differing_common_row():
    b = A.copy()
    b.loc[3, "loss"] = 0.125
    b.loc[1, "other"] = 0                       # not a compared column
    row = first_difference(A, b, ["step"], ["loss"])
    assert row["step"] == 3 and row["loss_a"] == 0.25 and row["loss_b"] == 0.125
    b.loc[2, "loss"] = 7.0                      # nan on one side only is a difference
    assert first_difference(A, b, ["step"], ["loss"])["step"] == 2


def test_only_common_rows_are_compared():
    b = A[A["step"] >= 2].assign(step=lambda d: d["step"] + 10)    # no common step
    assert first_difference(A, b, ["step"], ["loss"]) is None
    b = A.iloc[[0, 1]].copy()                                        # a shorter run
    assert first_difference(A, b, ["step", "param"], ["loss", "other"]) is None
