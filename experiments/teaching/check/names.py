"""A check's training run in the learner's names: the one place where handgrad's keys
become the learner's in what ``handgrad check`` writes.

The engine trains and records in handgrad's keys (``layers.{i}.weight``, shape (out, in));
a learner in the W1b1 convention wrote ``W{i+1}`` of shape (in, out). ``learner_view``
returns the run with every ``param`` column (grads.csv, summary.csv, final_grads.csv,
grad_entries.csv) and every finding in the learner's names (``side.Convention``), and the
``row``, ``col`` of an entry as the learner's array indexes it (swapped for a transposed
weight), so the training CSVs, plots and report of a check folder speak as the file
does. ``handgrad run``'s results are untouched: only a check's copy is renamed.
"""

from __future__ import annotations

import dataclasses
import re

_KEY = re.compile(r"layers\.\d+\.(?:weight|bias)")


def learner_view(run, conv):
    """A copy of ``run`` (``runner.RunResult``) in ``conv``'s (``side.Convention``) names."""
    if all(name == key for key, (name, _) in conv.names.items()):
        return run                                  # torch convention: the keys are the names

    def name(p):
        return conv.name_of(p) if p in conv.names else p

    def text(s: str) -> str:
        return _KEY.sub(lambda m: name(m.group(0)), s)

    def frame(df):
        if "param" not in df.columns or df.empty:
            return df
        out = df.copy()
        if {"row", "col"} <= set(df.columns):       # an entry: the learner's array's index
            flip = df["param"].map(lambda p: p in conv.names and conv.names[p][1])
            out.loc[flip, "row"], out.loc[flip, "col"] = df.loc[flip, "col"], df.loc[flip, "row"]
        out["param"] = df["param"].map(name)
        return out

    findings = [dataclasses.replace(f, params=tuple(name(p) for p in f.params),
                                    detail=text(f.detail)) for f in run.findings]
    return dataclasses.replace(
        run, grads=frame(run.grads), summary=frame(run.summary),
        final_grads=frame(run.final_grads), grad_entries=frame(run.grad_entries),
        findings=findings, message=text(run.message))
