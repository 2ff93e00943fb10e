"""``--format gradescope``: a submission's results.json, as Gradescope's autograder reads it.

The format is Gradescope's "Autograder Specifications", "Output format"
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a JSON object with
``score``, ``execution_time`` (seconds), ``output``, ``visibility``,
``stdout_visibility`` and ``tests``, each test with ``name``, ``score``, ``max_score``,
``status`` ("passed" / "failed"), ``output`` and ``visibility``. One test per rubric part
(``rubric.PARTS``), so a student sees the points of each; the submission's ``output`` is
its feedback.md. Integrity flags are not written: they are the teacher's.

``examples/gradescope/run_autograder`` runs ``handgrad grade`` on /autograder/submission
and copies this file to /autograder/results/results.json.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Gradescope's visibility values (the specification's "visibility" field)
VISIBILITY = ("hidden", "after_due_date", "after_published", "visible")


def results(parts, seconds: float, feedback: str, visibility: str = "visible") -> dict:
    """The results.json object for one submission (module docstring)."""
    score = round(sum(p.score for p in parts), 3)
    return {
        "score": score,
        "execution_time": round(float(seconds), 3),
        "output": feedback,
        "visibility": visibility,
        "stdout_visibility": "hidden",
        "tests": [{"name": p.name.replace("_", " "), "score": round(p.score, 3),
                   "max_score": round(p.max_score, 3),
                   "status": "passed" if p.score >= p.max_score else "failed",
                   "output": p.output, "visibility": visibility} for p in parts],
    }


def write_results(path: Path, parts, seconds: float, feedback: str) -> None:
    Path(path).write_text(json.dumps(results(parts, seconds, feedback), indent=1,
                                     ensure_ascii=False) + "\n", encoding="utf-8")
