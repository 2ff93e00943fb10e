"""experiments.output.report: the markdown table and the printed predictions (what report.md
contains for real runs is checked in test_rundir and test_cli)."""

from __future__ import annotations

import math
import re

import pandas as pd

from experiments.core.config import load_config
from experiments.core.runner import run_experiment
from experiments.output.report import markdown_table, predictions_text


def test_markdown_table():
    df = pd.DataFrame({"param": ["w", "all"], "rel_err": [1.23456e-15, math.nan],
                       "worst_step": [3, 10], "verdict": ["agree", "exact"]})
    assert markdown_table(df) == (
        "| param | rel_err | worst_step | verdict |\n"
        "|---|---|---|---|\n"
        "| w | 1.23e-15 | 3 | agree |\n"
        "| all |  | 10 | exact |")


def test_markdown_table_escapes_pipes_in_cells():
    """A ``|`` inside a cell (``max |w − w_t|``) must not open a new column."""
    df = pd.DataFrame({"figure": ["max |w − w_t|"], "a|b": [1.0]})
    text = markdown_table(df)
    assert text == ("| figure | a\\|b |\n"
                    "|---|---|\n"
                    "| max \\|w − w_t\\| | 1 |")
    for line in text.splitlines():                  # every row has 2 cells, as the header
        assert len(re.split(r"(?<!\\)\|", line.strip()[1:-1])) == 2, line


def test_predictions_text_full_batch_only():
    r = run_experiment(load_config("seed", ["steps=3"]))
    text = predictions_text(r)
    assert text.startswith("Last forward pass (at step 2, i.e. made before update 3, with "
                           "the weights after 2 updates):\nmanual:\n[[")
    assert text.count("\n [") == 2 * 3                # 4 rows per side: 3 continuation lines
    r = run_experiment(load_config("seed", ["steps=3", "batch_size=2"]))
    assert predictions_text(r) is None                 # a mini-batch: no sample ids printed
