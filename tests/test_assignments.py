"""Every shipped assignment (examples/assignments/): the correct file agrees with autograd at
float64 precision, and each classic mistake is detected and named (or its first wrong
intermediate is). Checked in this process (``check_reference``): the learner's process is
tested once in tests/test_reference_models.py; here only the diagnosis is.

rel_err ≤ 1e-12 for every gradient whose exact value is not zero. Two are zero in exact
arithmetic, so autograd's is rounding noise there and rel_err is noise over noise (up to
about 2): makemore's b1 (a bias before a batchnorm, whose mean removes it) and its
logit_maxes (the max subtracted for a stable softmax changes nothing). Those are held to
the absolute bound instead (experiments.core.reference: ‖yours − autograd‖ within 100×
autograd's own rounding noise), which the check's verdict applies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.core.metrics import rel_err
from experiments.core.reference import ReferenceSide
from experiments.teaching.reference.check import check_reference
from experiments.teaching.reference.load import load_reference

ROOT = Path(__file__).resolve().parents[1] / "examples" / "assignments"
ASSIGNMENTS = ["logistic", "softmax", "batchnorm", "makemore", "conv", "rnn"]
ZERO_IN_EXACT_ARITHMETIC = {"makemore": {"b1", "logit_maxes"}}

#: file -> (kind, the learner's name the result points at, words the diagnosis must say)
MISTAKES = {
    "logistic/sum_not_mean.py": ("constant_ratio", "b", "16 times autograd's",
                                 "1/N of the loss's mean over the batch is missing"),
    "logistic/sign_flipped.py": ("constant_ratio", "b", "-1 times autograd's",
                                 "the sign is flipped"),
    "softmax/onehot_missing.py": ("other", "b", "first wrong intermediate on the way back "
                                  "from the loss is logits", "∂E/∂logits"),
    "softmax/transposed_dW.py": ("transposed", "W", "your W gradient is autograd's "
                                 "transposed", "square"),
    "batchnorm/no_batch_statistics.py": ("other", "W", "first wrong intermediate on the way "
                                         "back from the loss is h:", "∂E/∂h"),
    "batchnorm/dgamma_without_xhat.py": ("other", "gamma", "your gradient of gamma differs",
                                         "every intermediate you returned agrees"),
    "makemore/bessel_missing.py": ("other", "W1", "first wrong intermediate on the way back "
                                   "from the loss is bndiff2", "Bessel's correction"),
    "makemore/tanh_of_preactivation.py": ("other", "bnbias", "first wrong intermediate on "
                                          "the way back from the loss is hpreact",
                                          "every one after it in the forward pass agrees"),
    "makemore/dC_assigned.py": ("other", "C", "your gradient of C differs",
                                "every intermediate you returned agrees"),
    "conv/flipped_kernel.py": ("other", "w", "reversed along axes 2 and 3",
                               "a kernel flipped"),
    "conv/bias_mean.py": ("constant_ratio", "b", "0.0277778 times autograd's on b",
                          "an extra 1/36"),
    "rnn/truncated.py": ("other", "bh", "first wrong intermediate on the way back from the "
                         "loss is h4", "all zeros"),
    "rnn/whh_transposed.py": ("transposed", "Whh", "your Whh gradient is autograd's "
                              "transposed", "other order"),
}


def _module(rel: str):
    """A learner's file imported as its own module (its folder first on the path, for the
    helper ``correct`` a mistake file may import)."""
    path = ROOT / rel
    sys.path.insert(0, str(path.parent))
    sys.modules.pop("correct", None)
    try:
        spec = importlib.util.spec_from_file_location(f"learner_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


@pytest.fixture(scope="module")
def refs():
    return {a: load_reference(ROOT / a / "reference.py") for a in ASSIGNMENTS}


def test_every_assignment_has_a_reference_a_correct_file_and_two_mistakes():
    for a in ASSIGNMENTS:
        files = {p.name for p in (ROOT / a).glob("*.py")}
        assert {"reference.py", "correct.py"} <= files, a
        assert sum(1 for m in MISTAKES if m.startswith(a + "/")) >= 2, a
        assert files - {"reference.py", "correct.py"} == {
            m.split("/")[1] for m in MISTAKES if m.startswith(a + "/")}, a


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_correct_file_agrees_at_float64_precision(refs, assignment):
    ref = refs[assignment]
    mod = _module(f"{assignment}/correct.py")
    result = check_reference(mod.gradients, ref)
    assert result.status == "agree", result.explanation
    # an independent look at the initial point: every gradient and intermediate returned,
    # against autograd's, rel_err ≤ 1e-12 where the exact value is not zero
    side = ReferenceSide(ref)
    _, g, inter = side.gradients_at(None)
    yours = mod.gradients({k: v.copy() for k, v in ref.params.items()}, ref.X.copy(),
                          ref.Y.copy())
    noise = ZERO_IN_EXACT_ARITHMETIC.get(assignment, set())
    for k, want in {**g, **inter}.items():
        if k in yours and k not in noise:
            assert rel_err(np.asarray(yours[k], np.float64), want) <= 1e-12, k
    assert set(inter) <= set(yours), "the correct file returns every intermediate"
    assert result.worst_ratio < 1


@pytest.mark.parametrize("rel", sorted(MISTAKES))
def test_each_mistake_is_detected_and_named(refs, rel):
    kind, first, *words = MISTAKES[rel]
    result = check_reference(_module(rel).gradients, refs[rel.split("/")[0]])
    assert (result.status, result.exit_code) == ("differ", 1), result.explanation
    assert (result.kind, result.first_param) == (kind, first), result.explanation
    said = " ".join(result.sentences)
    for w in words:
        assert w in said, (w, said)


def test_the_docs_show_the_logistic_reference_as_it_is():
    """docs/references.md's 'about 20 lines' are examples/assignments/logistic/reference.py."""
    doc = (ROOT.parents[1] / "docs" / "references.md").read_text(encoding="utf-8")
    shown = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert shown == (ROOT / "logistic" / "reference.py").read_text(encoding="utf-8")
    assert len(shown.splitlines()) <= 30
