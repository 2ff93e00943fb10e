"""The class summary: the flags of every row, the named mistakes counted, the figures
and the class page.

    add_flags(table, paths)   the ``flags`` column (``check.integrity.class_flags``, and
                              ``late`` where the LMS's file name says so)
    rounded(table)            grades.csv's figures to 3 significant digits
    mistake_counts(table)     each named mistake with its number of submissions
    write_summary(folder, …)  mistakes.png (a seaborn bar chart), scores.png (the score
                              histogram) and report.html (grades.md as a page: no network
                              request, prints on A4); returns grades.md's summary lines
"""

from __future__ import annotations

import math
from pathlib import Path

#: the flag of a file the LMS marked late (Canvas's ``name_LATE_ID_ID_file``)
LATE = "late: the LMS marked it LATE"
#: grades.csv's figures written to 3 significant digits
ROUNDED = ("worst_rel_err", "worst_ratio", "seconds", "score", "max_score")
A4_CSS = ("@page { size: A4; margin: 12mm; } @media print { body { max-width: none; "
          "margin: 0; } .table-wrap { overflow: visible; } table { font-size: 8pt; } "
          "td { overflow-wrap: anywhere; } img { max-height: 120mm; } "
          "h2, h3 { break-after: avoid; } tr, figure { break-inside: avoid; } }")


def add_flags(table, paths: dict):
    """``table`` with its ``flags`` column filled; ``paths``: file -> the submission's path
    (its source is parsed, never run; None: no submission). Rows are compared with the
    other students' rows on the same config, and named by student (by file where two
    files are one student's)."""
    from experiments.teaching.check.integrity import class_flags, read_source
    from experiments.teaching.grade.discover import marked_late

    rows = table.to_dict("records")
    sources = {r["file"]: read_source(paths[r["file"]]) if paths.get(r["file"]) else None
               for r in rows}
    students = [r.get("student") or r["file"] for r in {r["file"]: r for r in rows}.values()]
    names = {r["file"]: r["file"] if students.count(r.get("student") or r["file"]) > 1
             else r.get("student") or r["file"] for r in rows}
    flags = [""] * len(rows)
    for config in dict.fromkeys(r.get("config") for r in rows):
        at = [i for i, r in enumerate(rows) if r.get("config") == config]
        for i, f in zip(at, class_flags([rows[i] for i in at], sources, names), strict=True):
            flags[i] = f
    flags = ["; ".join(filter(None, [LATE if marked_late(r["file"]) else "", f]))
             for r, f in zip(rows, flags, strict=True)]
    return table.assign(flags=flags)


def sig3(x) -> str:
    """A figure to 3 significant digits ("" for NaN or empty)."""
    if x is None or x == "" or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{float(x):.3g}"


def rounded(table):
    return table.assign(**{c: table[c].map(sig3) for c in ROUNDED if c in table.columns})


def mistake_counts(table):
    """``mistake``, ``submissions`` (most frequent first; ties by name)."""
    import pandas as pd

    named = table.loc[table["mistake"].astype(str) != "", "mistake"]
    counts = named.value_counts().rename_axis("mistake").reset_index(name="submissions")
    if counts.empty:
        return pd.DataFrame(columns=["mistake", "submissions"])
    return counts.sort_values(["submissions", "mistake"], ascending=[False, True],
                              kind="stable").reset_index(drop=True)


def _mistakes_png(counts, path: Path) -> None:
    import seaborn as sns

    from experiments.output.style import figure, save, style, title

    with style():
        fig, (ax,) = figure(width=7.0, height=0.9 + 0.35 * max(len(counts), 1))
        if counts.empty:
            ax.text(0.5, 0.5, "no named mistakes", ha="center", va="center")
            ax.set_axis_off()
        else:
            sns.barplot(data=counts, y="mistake", x="submissions", ax=ax, color="C3")
            ax.set_ylabel("")
            ax.set_xlabel("submissions")
            ax.xaxis.get_major_locator().set_params(integer=True)
        title(fig, "The class's mistakes")
        save(fig, path)


def _scores_png(table, max_score: float, path: Path) -> None:
    import numpy as np
    import seaborn as sns

    from experiments.output.style import figure, save, style, title

    scores = table["score"].astype(float)
    with style():
        fig, (ax,) = figure(width=6.0, height=3.2)
        top = max(max_score, 1.0)
        if (scores == scores.round()).all() and top <= 40:   # whole points: a bar each
            sns.histplot(x=scores, discrete=True, ax=ax, color="C0")
            ax.set_xlim(-0.6, top + 0.6)
        else:
            sns.histplot(x=scores, bins=np.linspace(0, top, min(int(top), 20) + 1), ax=ax,
                         color="C0")
            ax.set_xlim(0, top)
        ax.set_xlabel(f"score (of {max_score:g})")
        ax.set_ylabel("submissions")
        ax.yaxis.get_major_locator().set_params(integer=True)
        title(fig, f"Scores: {len(scores)} submissions, median {scores.median():.3g}")
        save(fig, path)


def summary_lines(table, rubric) -> list[str]:
    """grades.md's class summary: the scores, the named mistakes with counts, the flags,
    the figures."""
    from experiments.output.report import markdown_table
    from experiments.teaching.grade.report import md_text

    counts = mistake_counts(table)
    scores = table["score"].astype(float)
    flagged = table[table["flags"].astype(str) != ""]
    lines = ["## Class summary", "",
             f"Scores: median {scores.median():.3g} of "
             f"{rubric.total:g}, {int((scores >= rubric.total).sum())} of {len(scores)} "
             f"with full points.", "", "![score histogram](scores.png)", "",
             "### Named mistakes", ""]
    if counts.empty:
        lines += ["No submission made a named mistake.", ""]
    else:
        lines += [markdown_table(counts.assign(mistake=counts["mistake"].map(md_text))), "",
                  "![the class's mistakes](mistakes.png)", ""]
    lines += ["### Flags", "",
              "Hints for a closer look (integrity, and lateness where the LMS marks it), "
              "never used to score (docs/check.md, 'Flags').", ""]
    lines += [f"- {md_text(f)}: {md_text(g)}" for f, g in zip(flagged["file"],
                                                               flagged["flags"],
                                                               strict=True)] or ["None."]
    return [*lines, ""]


def write_summary(folder: Path, table, rubric) -> None:
    """mistakes.png and scores.png into ``folder`` (the grade folder being written)."""
    _mistakes_png(mistake_counts(table), folder / "mistakes.png")
    _scores_png(table, rubric.total, folder / "scores.png")


def write_page(folder: Path, markdown: str) -> None:
    """report.html: grades.md as one page in the project's style, printable on A4."""
    from experiments.output.html import markdown_to_html, page

    body = markdown_to_html(markdown, folder)
    (folder / "report.html").write_text(page("handgrad grade", body, extra_css=A4_CSS),
                                        encoding="utf-8")
