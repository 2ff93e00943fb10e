"""``handgrad check``: one learner's own backprop against autograd.

    from experiments.teaching.check import check_function, check_file
    result = check_function(gradients, "seed", convention="W1b1")
    assert result.agree, result.explanation

Modules: ``side`` (parameter conventions and the learner's side of the lockstep engine),
``initial`` (the check at the initial point), ``near_miss`` (no derivation mistake:
float32, finite differences, all zeros, swapped names, relu′ at 0), ``mistakes`` and
``diagnosis`` (what went wrong, in the learner's terms), ``in_words`` (that mistake in a
few words, for a table), ``integrity`` (flags read from the source's syntax tree and the
returned arrays, never running them), ``api`` (one check, start to end), ``early`` (the
learner's process started before torch is imported), ``command`` (the subcommand). The
learner's own process is ``experiments.teaching.boundary``; a class's grading is
``experiments.teaching.grade``.
"""

from __future__ import annotations

__all__ = ["CheckResult", "check_file", "check_function"]


def __getattr__(name):
    # lazy: the CLI imports the subcommand without torch
    if name in __all__:
        from experiments.teaching.check import api
        return getattr(api, name)
    raise AttributeError(name)
