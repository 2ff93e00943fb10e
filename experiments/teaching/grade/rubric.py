"""Points: a rubric (a small TOML file) read, and a check's result scored with it.

A rubric gives points per part of the check (``api.check_file``; the names are the
parts' in grades.csv, feedback.md and Gradescope's results.json)::

    update_required = false   # false: a file without update() earns the update points
                              # (handgrad's own SGD trains it); true: it earns none
    [points]
    gradients = 4        # at the initial point, shared among the parameters: each
                         # parameter that agrees with autograd earns its share
    second_call = 2      # the next call, at the weights after one step, agrees too
    training = 3         # every parameter agrees over the whole lockstep training run
    update = 1           # update(params, grads, lr) agrees with torch.optim.SGD's step

``DEFAULT`` is that rubric. A part the check did not reach (the second call after a
first call that differs, the update after gradients that differ, everything after a file
that could not be run) earns 0 and says why. The score depends on the result alone,
never on an integrity flag. Every status the check can give is scored by those parts,
so a status handgrad adds later scores 0 until the check reaches a part.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from experiments.core.config import ConfigError

#: the parts, in the order a check reaches them
PARTS = ("gradients", "second_call", "training", "update")
DEFAULT_TEXT = """\
# handgrad's default rubric: 10 points
update_required = false   # false: a file without update() earns the update points

[points]
gradients = 4      # at the initial point, shared among the parameters
second_call = 2    # the next call, at the weights after one step
training = 3       # every parameter agrees over the whole training run
update = 1         # update(params, grads, lr) against torch.optim.SGD's step
"""


@dataclass(frozen=True)
class Rubric:
    points: dict           # part -> points (PARTS order)
    update_required: bool = False
    source: str = "handgrad's default"   # where it came from, for the reports

    @property
    def total(self) -> float:
        return float(sum(self.points.values()))

    def describe(self) -> str:
        """One line for grades.md's header."""
        parts = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in self.points.items())
        return (f"rubric {self.source} ({parts}; {self.total:g} points; update() "
                f"{'required' if self.update_required else 'optional'})")

    def to_dict(self) -> dict:
        return {"points": dict(self.points), "update_required": self.update_required}


@dataclass(frozen=True)
class Part:
    """One part of a submission's score, with what decided it (a short line)."""
    name: str
    score: float
    max_score: float
    output: str


def parse(text: str, where: str) -> Rubric:
    """A rubric from TOML text; a malformed one raises ``ConfigError`` in one line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--rubric {where}: not valid TOML ({err}); see docs/check.md, "
                          f"'Points'") from None
    extra = sorted(set(data) - {"points", "update_required"})
    if extra:
        raise ConfigError(f"--rubric {where}: unknown key {extra[0]!r}; a rubric holds "
                          f"[points] and update_required (docs/check.md, 'Points')")
    points = data.get("points", {})
    if not isinstance(points, dict):
        raise ConfigError(f"--rubric {where}: points must be a table, [points] with "
                          f"{', '.join(PARTS)}")
    unknown = sorted(set(points) - set(PARTS))
    if unknown:
        raise ConfigError(f"--rubric {where}: unknown part {unknown[0]!r} in [points]; the "
                          f"parts are {', '.join(PARTS)}")
    out = {}
    for part in PARTS:
        value = points.get(part, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value < 0:
            raise ConfigError(f"--rubric {where}: points.{part} = {value!r}; give a number "
                              f">= 0")
        out[part] = float(value)
    if sum(out.values()) <= 0:
        raise ConfigError(f"--rubric {where}: every part has 0 points; give at least one "
                          f"part points > 0")
    required = data.get("update_required", False)
    if not isinstance(required, bool):
        raise ConfigError(f"--rubric {where}: update_required = {required!r}; give true or "
                          f"false")
    return Rubric(out, required, where)


DEFAULT = parse(DEFAULT_TEXT, "handgrad's default")


def load(path: str | Path | None) -> Rubric:
    """The rubric at ``path`` (None: ``DEFAULT``); a bad file raises ``ConfigError``."""
    if path is None:
        return DEFAULT
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise ConfigError(f"--rubric {path}: cannot be read ({why}); give a TOML file like "
                          f"docs/check.md's") from None
    return parse(text, path.name)


#: a verdict is "exact" (bit-identical), "agree" (within rounding) or "differ"
def _rows(init, call: str):
    t = init.table
    return t[t["call"] == call] if init is not None else t.iloc[0:0]


def score(result, rubric: Rubric) -> list[Part]:
    """The parts of ``result`` (an ``api.CheckResult``) with their points."""
    pts = rubric.points
    init = result.initial
    not_run = f"not checked: {result.status}"
    if init is None:
        return [Part(p, 0.0, pts[p], not_run) for p in PARTS]
    parts = []
    first = _rows(init, "gradients")
    n, ok = len(first), int((first["verdict"] != "differ").sum())
    if n == 0:   # the first call never returned (it raised, looped, read other keys)
        return [Part(p, 0.0, pts[p], f"not checked: the first call of gradients() did not "
                     f"finish ({result.status})") for p in PARTS]
    wrong = [p for p, v in zip(first["param"], first["verdict"], strict=True) if v == "differ"]
    parts.append(Part("gradients", pts["gradients"] * ok / n if n else 0.0, pts["gradients"],
                      f"{ok} of {n} parameters agree with autograd at the initial point"
                      + (f" ({', '.join(wrong)} differ{'s' if len(wrong) == 1 else ''})"
                         if wrong else "")))
    second = _rows(init, "gradients, 2nd call")
    if second.empty:
        parts.append(Part("second_call", 0.0, pts["second_call"],
                          "not checked: the first call differs"))
    else:
        good = bool((second["verdict"] != "differ").all())
        parts.append(Part("second_call", pts["second_call"] * good, pts["second_call"],
                          "the second call agrees" if good else
                          "the second call differs (state kept between calls)"))
    run = result.run
    if run is None:
        parts.append(Part("training", 0.0, pts["training"], "not checked: no training run"
                          + (f" ({result.status})" if result.status not in ("agree", "differ")
                             else "")))
    else:
        rows = run.summary[run.summary["param"].isin(list(init.autograd))]
        good = (run.status == "completed" and not rows.empty
                and bool((rows["verdict"] != "differ").all()))
        parts.append(Part("training", pts["training"] * good, pts["training"],
                          f"every parameter agrees over {run.steps_done} training steps"
                          if good else f"training {run.status} after {run.steps_done} of "
                          f"{run.total_steps} steps" if run.status != "completed" else
                          f"training differs from autograd over {run.steps_done} steps"))
    update = _rows(init, "update")
    if not update.empty:
        good = bool((update["verdict"] != "differ").all())
        parts.append(Part("update", pts["update"] * good, pts["update"],
                          "update() agrees with torch.optim.SGD's step" if good else
                          "update() differs from torch.optim.SGD's step"))
    elif init.differs:
        parts.append(Part("update", 0.0, pts["update"], "not checked: the gradients differ"))
    elif getattr(result, "has_update", False):
        parts.append(Part("update", 0.0, pts["update"], f"update() failed: {result.status}"
                          if result.status not in ("agree", "differ") else "not checked"))
    else:
        parts.append(Part("update", 0.0 if rubric.update_required else pts["update"],
                          pts["update"], "no update() defined" + (
                              " (the rubric requires one)" if rubric.update_required else
                              " (handgrad's SGD trains it; the rubric does not require one)")))
    return parts


def total(parts: list[Part]) -> tuple[float, float]:
    """``(score, max_score)``, rounded to 3 decimals (a share of 4 points over 3
    parameters is 1.333...)."""
    return (round(sum(p.score for p in parts), 3), round(sum(p.max_score for p in parts), 3))
