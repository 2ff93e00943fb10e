"""What each submission gets besides its check folder, made where its check ran (the
grading worker, which holds the ``CheckResult``):

    row columns   score, max_score (``rubric``), mistake (``check.in_words``), grad_sha256
                  (the wrong gradients' fingerprint, for the same_mistake flag; only for a
                  mistake handgrad cannot name, ``in_words.is_named``)
    feedback.md   in its check folder (``feedback``)
    results.json  in its check folder, with ``--format gradescope`` (``gradescope``)

A file that could not be loaded has no check folder from ``check``; one is made for its
feedback.
"""

from __future__ import annotations

from pathlib import Path

from experiments.teaching.grade import rubric as rubrics

FORMATS = ("csv", "gradescope")


def extras(result, out: Path, rubric=None, fmt: str = "csv", student: str = "") -> dict:
    """The row's extra columns; feedback.md (and results.json) written into ``out``;
    ``student``: whose it is, in feedback.md's title."""
    rubric = rubric or rubrics.DEFAULT
    try:
        return _extras(result, Path(out), rubric, fmt, student)
    except Exception as err:   # handgrad's own failure: the row stays, unscored, and says so
        return {**failed_extras(rubric), "mistake": f"(handgrad could not score this row: "
                f"{type(err).__name__}: {err})"}


def _extras(result, out: Path, rubric, fmt: str, student: str = "") -> dict:
    from experiments.teaching.check.in_words import is_named, mistake_words
    from experiments.teaching.check.integrity import gradients_fingerprint
    from experiments.teaching.grade.feedback import feedback_markdown
    from experiments.teaching.grade.gradescope import write_results

    parts = rubrics.score(result, rubric)
    score, max_score = rubrics.total(parts)
    init = result.initial
    # same_mistake is for a mistake handgrad cannot name: a named classic slip (1/N, a
    # transpose, σ′ of the activation) comes out to the same digits from different code
    wrong = (gradients_fingerprint(init.yours) if result.status == "differ" and init
             is not None and init.call.startswith("gradients") and not is_named(result)
             else "")
    text = feedback_markdown(result, parts, score, max_score, student)
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback.md").write_text(text, encoding="utf-8")
    if fmt == "gradescope":
        write_results(out / "results.json", parts, result.seconds, text)
    return {"score": score, "max_score": max_score, "mistake": mistake_words(result),
            "grad_sha256": wrong}


def failed_extras(rubric=None) -> dict:
    """The extra columns of a row handgrad could not grade (a grader_error)."""
    rubric = rubric or rubrics.DEFAULT
    return {"score": 0.0, "max_score": rubric.total, "mistake": "", "grad_sha256": ""}
