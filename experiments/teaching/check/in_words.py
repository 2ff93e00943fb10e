"""A check's mistake in a few words, for a table column: "averaged over the batch",
"σ′ taken of the activation, at every layer", "the W2 gradient transposed".

The words are cut from the diagnosis's own sentences (``diagnosis``, ``mistakes``,
``near_miss``): the cause a sentence names, without its explanation, so the column and
the check's text never disagree. ``""`` for a result that does not differ (its status
says what happened).
"""

from __future__ import annotations

import math
import re

from experiments.teaching.check import diagnosis

_NAMED = "your gradients are exactly what backprop gives with "
_LONGEST = 80   # characters of a near miss's lead clause kept


def clause(text: str) -> str:
    """The lead of a sentence: up to its first ":", ";" or " (" (and a final ", at …"
    layer phrase kept), without a leading "you"/"your"."""
    layers = re.search(r", at (every layer|the hidden layers|the output layer)$", text)
    lead = re.split(r": |; | \(| — ", text, maxsplit=1)[0].strip()
    lead = re.sub(r"^(you|your) ", "", lead)
    lead = re.sub(r" where this loss (sums|averages)$", "", lead)
    if layers and not lead.endswith(layers.group(0)):
        lead += layers.group(0)
    return lead if len(lead) <= _LONGEST else lead[:_LONGEST - 1].rstrip() + "…"


def _finding(result):
    """The finding the diagnosis leads with: the one about the first differing parameter."""
    init = result.initial
    findings = init.findings if init.differs else (result.run.findings if result.run else [])
    key = init.convention.keys.get(result.first_param, result.first_param)
    return next((f for f in findings if key in f.params), findings[0] if findings else None)


def _ratio(f, result) -> str:
    init = result.initial
    cfg, conv = init.config, init.convention
    c = f.numbers["c"]
    if cfg.lr != 1 and math.isfinite(c) and abs(c / cfg.lr - 1) <= 1e-6:
        return f"lr·∂E/∂w returned (lr = {cfg.lr:g})"
    keys = list(init.autograd)
    sentence = diagnosis.translate(f, conv, cfg, len(init.X), keys, init.yours)
    cause = sentence.split("): ", 1)[-1]
    if cause.startswith("a factor in these parameters' own formulas; "):
        cause = cause.split("; ", 1)[1]
    words = clause(cause)
    if set(f.params) != set(keys):
        words = f"{', '.join(conv.name_of(k) for k in f.params)}: {words}"
    return words


#: kinds whose cause handgrad names exactly (diagnosis, near_miss): a classic slip, made the
#: same way by many learners, to the last digit on a small network
NAMED_KINDS = frozenset({"transposed", "accumulated", "update", "zero", "swapped", "float32",
                         "float16", "numerical", "relu_kink"})


def is_named(result) -> bool:
    """Whether ``result``'s mistake is one handgrad names exactly (a recomputed named
    mistake, a near miss, a transpose, a constant ratio with a known cause), as opposed
    to a mistake it can only locate."""
    if result.status != "differ":
        return False
    first = result.sentences[0] if result.sentences else result.message
    if first.startswith(_NAMED) or result.kind in NAMED_KINDS:
        return True
    return result.kind == "constant_ratio" and "c is none of" not in first


def mistake_words(result) -> str:
    """The mistake of ``result`` (an ``api.CheckResult``) in a few words ("" if none)."""
    if result.status != "differ" or result.initial is None:
        return ""
    first = result.sentences[0] if result.sentences else result.message
    if first.startswith(_NAMED):                     # mistakes.recognise, recomputed
        return clause(first[len(_NAMED):])
    kind = result.kind
    f = _finding(result)
    name = result.first_param
    if kind == "constant_ratio" and f is not None and "c" in f.numbers:
        return _ratio(f, result)
    if kind == "transposed":
        return f"the {name} gradient transposed"
    if kind == "accumulated":
        return "gradients accumulated across calls"
    if kind == "layer_confined":
        return (f"a mistake entering at {name}'s layer (its δ)" if f is not None
                and "enters_at" in f.numbers else f"{name}'s own formula")
    if kind == "other" and f is not None and "enters_at" in f.numbers:
        return "a mistake at the output delta (∂E/∂A or the output f′)"
    if kind == "update":
        return clause(first)
    return clause(first)   # a near miss (near_miss's lead clause) or diagnose's own words


