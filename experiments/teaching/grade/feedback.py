"""feedback.md: what a learner gets back, short enough to paste into an LMS comment.

    # Feedback on mean_over_batch.py: 0 of 10 points
    What is right: ...
    Fix this first: <the diagnosis's first sentence, in the learner's names>
    The chain rule for one wrong entry: ∂E/∂w = Σ_n …   yours …
    Points: one line per rubric part

Everything is taken from the check (``api.CheckResult``): the diagnosis's sentences, and
the chain rule ``check.report.chain_rule`` quotes from ``handgrad explain``. Integrity
flags are the teacher's and never appear here. The text is for the learner alone: their
own messages are left as they are, not escaped, to paste as plain text.
"""

from __future__ import annotations

from experiments.teaching.grade.rubric import Part

#: a status that is not a verdict, in the learner's words (docs/check.md's statuses)
STATUS_WORDS = {"not_a_submission": "no gradients(params, X, Y) to check",
                "wrong_assignment": "written for another network",
                "import_error": "the file failed to load",
                "bad_output": "a call returned the wrong form",
                "crashed": "your code failed in a call",
                "output_limit": "your code printed too much",
                "timeout": "your code ran out of time",
                "diverged": "training diverged",
                "grader_error": "handgrad could not check it (not your fault)"}
_KEPT = ("∂E/∂w =", "Σ_n =", ">>> yours:", "w⁺ =", "w - lr", "w − lr")


def _right(result, parts: list[Part]) -> str:
    good = [p for p in parts if p.score > 0 and p.score == p.max_score]
    init = result.initial
    if result.status == "agree":
        return "every gradient agrees with autograd, at the initial point and over training."
    if init is not None:
        first = init.table[init.table["call"] == "gradients"]
        ok = [p for p, v in zip(first["param"], first["verdict"], strict=True) if v != "differ"]
        if ok and len(ok) < len(first):
            return (f"your {', '.join(ok)} gradient{'s agree' if len(ok) > 1 else ' agrees'} "
                    f"with autograd at the initial point.")
    if good:
        return "; ".join(p.output for p in good) + "."
    return "the file ran, and your function was called." if init is not None else \
        "nothing could be checked yet (see below)."


def _chain(result) -> list[str]:
    """The few lines of the chain rule for the worst wrong entry (none for a near miss or
    a failure)."""
    from experiments.teaching.check.report import chain_rule, entries

    init = result.initial
    if (result.status != "differ" or init is None or not init.differs
            or init.call != "gradients" or not result.first_param):
        return []
    key = init.convention.keys.get(result.first_param)
    if key is None:
        return []
    try:
        _, worst = entries(init, key)
        lines = chain_rule(init, key, worst)
    except Exception:   # explain could not say it here: the feedback goes without it
        return []
    kept = [line.strip() for line in lines[1:] if line.strip().startswith(_KEPT)]
    return [lines[0].split(", as `")[0] + ":", *(f"    {k}" for k in kept)] if kept else []


def feedback_markdown(result, parts: list[Part], score: float, max_score: float,
                      student: str = "") -> str:
    """feedback.md for one submission (module docstring); ``student`` is named in the title
    where the file's name does not say whose it is (``hw3.py``, Alice Jones)."""
    cfg = result.config
    whose = f" ({student})" if student and student not in result.file else ""
    lines = [f"# Feedback on {result.file}{whose}: {score:g} of {max_score:g} points", ""]
    if cfg is not None:
        lines += [f"Your code was checked against PyTorch's autograd on `{cfg.name}` (sizes "
                  f"{'-'.join(map(str, cfg.sizes))}, {cfg.loss}).", ""]
    lines += [f"**What is right:** {_right(result, parts)}", ""]
    if result.status == "differ":
        fix = result.sentences[0] if result.sentences else result.message
        lines += [f"**Fix this first:** {fix}", ""]
        chain = _chain(result)
        if chain:
            lines += [chain[0], "", *chain[1:], ""]
    elif result.status != "agree":
        why = STATUS_WORDS.get(result.status)
        lines += [f"**Fix this first** ({f'{why}: ' if why else ''}{result.status}): "
                  f"{result.message}", ""]
    lines += ["**Points:**", ""]
    lines += [f"- {p.name.replace('_', ' ')}: {p.score:.3g} of {p.max_score:g} ({p.output})"
              for p in parts]
    return "\n".join(lines) + "\n"
