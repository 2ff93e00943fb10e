"""An Otter-Grader test file for the 3-4-1 backprop assignment (Otter's exception-based
format: ``OK_FORMAT = False``, one ``@test_case`` per part, its arguments looked up by name
in the notebook's global environment; ``env`` is the whole of it).

Each case runs handgrad's check on the notebook's own ``gradients`` (and ``update``), in
the notebook's kernel, against autograd on the ``seed`` config; a failing case's message is
handgrad's explanation, in the learner's names. The points follow handgrad's default
rubric (docs/check.md, "Points"). Put this file in the assignment's ``tests/`` folder; the
autograder's environment needs handgrad installed (``pip install handgrad``, with torch).
"""

from otter.test_files import test_case

OK_FORMAT = False

name = "backprop"
points = 10


def _check(env, steps: int, update=None):
    from experiments import check_function

    return check_function(env["gradients"], "seed", update=update, steps=steps,
                          convention=env.get("CONVENTION", "torch"))


@test_case(points=6, hidden=False)
def test_gradients_at_the_initial_point(env):
    """gradients() against autograd at the initial point and at the next call."""
    r = _check(env, steps=1)
    assert r.agree, r.explanation


@test_case(points=3, hidden=False)
def test_training_in_lockstep(env):
    """200 steps of SGD on your gradients, in lockstep with torch.optim.SGD."""
    r = _check(env, steps=200)
    assert r.agree, r.explanation


@test_case(points=1, hidden=False)
def test_update(env):
    """update(params, grads, lr) against torch.optim.SGD's step (if the notebook has one)."""
    if "update" in env:
        r = _check(env, steps=10, update=env["update"])
        assert r.agree, r.explanation
