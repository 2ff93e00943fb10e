"""``handgrad check`` and ``handgrad grade``: a learner's own backprop against autograd.

    from experiments.teaching.check import check_function, check_file
    result = check_function(gradients, "seed", convention="W1b1")
    assert result.agree, result.explanation

Modules: ``learner`` (the learner's side of the process boundary: loading, calling,
vetting), ``process`` (the learner's own process, with limits), ``side`` (parameter
conventions and the learner's side of the lockstep engine), ``initial`` (the check at the
initial point), ``mistakes`` and ``diagnosis`` (what went wrong, in the learner's terms),
``api`` (one check, start to end), ``command`` and ``grade`` (the two subcommands).
"""

from __future__ import annotations

__all__ = ["CheckResult", "check_file", "check_function"]


def __getattr__(name):
    # lazy: the learner's process imports learner.py alone, and the CLI imports the
    # subcommands without torch
    if name in __all__:
        from experiments.teaching.check import api
        return getattr(api, name)
    raise AttributeError(name)
