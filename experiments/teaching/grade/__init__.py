"""``handgrad grade``: a class's submissions, each checked as ``handgrad check`` does.

Modules: ``discover`` (which files of the submissions folder are graded, whose they are —
a flat file, one folder per student, LMS download names — and why the others are not),
``folder`` (grading them all into one grade folder, resumable, surviving a dead worker),
``rubric`` (points), ``per_submission`` (what each submission gets besides its row: points,
the mistake in words, ``feedback`` and ``gradescope``'s results.json), ``summary`` (flags,
the class's mistakes, figures and report.html), ``report`` (grades.md), ``command`` (the
subcommand). Each submission runs in its own sandboxed process
(``experiments.teaching.boundary``).
"""
