"""The update-order comparison and the 2-2-2 worked example's published figures.

Both orders (and autograd + torch.optim.SGD as witness) train on the explained batch as
sides of the lockstep engine, in free mode: ``ManualSide`` is the simultaneous order (the
runner's), ``SequentialSide`` the sequential one (``SequentialMLP``: backward updates as it
goes), the config's MLP as a reference (``ReferenceSide`` of ``mlp_reference``: autograd +
torch.optim.SGD) the witness. A ``Recorder`` keeps E and the outputs after k = 0 …
steps updates; ``update_order_table`` checks each published figure against each order.

What it shows (``--steps 10000``): ∂E/∂w1 = 0.000438568 and w1⁺ = 0.149780716 are
simultaneous; E after one update, 0.291027924, and the outputs after 10,000, 0.015912196
and 0.984065734, are sequential (simultaneous: 0.291027774, 0.015913620, 0.984064274); E
after 10,000, 0.0000351085, is neither order's at 10,000 (3.51019e-05 / 3.50848e-05) but
the simultaneous E after 9,999 updates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import manual
from experiments.core.config import ConfigError, RunConfig, load_config
from experiments.core.engine import Lockstep, ManualSide, Observer, batches, to_numpy
from experiments.core.reference import ReferenceSide, mlp_reference
from experiments.core.schema import UPDATE_ORDER_COLUMNS as TABLE_COLUMNS
from experiments.core.threads import limited_threads

from .model import Problem, SequentialMLP, plain, prepare

KEEP_OUTPUTS = 2_000_000   # (steps + 1)·N·K output values at most, kept for every step


@dataclass(frozen=True)
class Published:
    figure: str
    text: str                      # as printed in the worked example
    step: int                      # updates made before the quantity is measured
    quantity: str                  # E | out | grad | param
    where: tuple = ()              # out: (n, k); grad/param: (key, index)

    @property
    def digits(self) -> int:
        return len(self.text.split(".")[1])

    @property
    def value(self) -> float:
        return float(self.text)

    def matches(self, x) -> np.bool_ | np.ndarray:
        """Every published figure is rounded, not truncated (checked: truncating out_o1,
        E_total, ∂E/∂w5, ∂E/∂w1 or w5⁺ would fail), so |x − pub| ≤ ½·10^−digits; ``x`` a
        value (a numpy bool back) or an array of them (NaN never matches)."""
        return np.abs(np.asarray(x) - self.value) <= 0.5 * 10.0 ** -self.digits


#: The published figures of the 2-2-2 worked example (inputs 0.05, 0.10; targets 0.01, 0.99).
PUBLISHED = (
    Published("out_o1 (first forward pass)", "0.75136507", 0, "out", (0, 0)),
    Published("E_total (first forward pass)", "0.298371109", 0, "E"),
    Published("∂E/∂w5 (first backward pass)", "0.082167041", 0, "grad",
              ("layers.1.weight", (0, 0))),
    Published("∂E/∂w1 (first backward pass)", "0.000438568", 0, "grad",
              ("layers.0.weight", (0, 0))),
    Published("w5⁺ after 1 update", "0.35891648", 1, "param", ("layers.1.weight", (0, 0))),
    Published("w1⁺ after 1 update", "0.149780716", 1, "param", ("layers.0.weight", (0, 0))),
    Published("E_total after 1 update", "0.291027924", 1, "E"),
    Published("out_o1 after 10,000 updates", "0.015912196", 10_000, "out", (0, 0)),
    Published("out_o2 after 10,000 updates", "0.984065734", 10_000, "out", (0, 1)),
    Published("E_total after 10,000 updates", "0.0000351085", 10_000, "E"),
)


@dataclass
class Trajectory:
    """One side's training on the explained batch (filled by ``Recorder``)."""

    side: object
    keep: range | set              # the steps whose outputs are kept
    E: np.ndarray                  # (steps + 1,) E after k = 0 … steps updates
    out: dict = field(default_factory=dict)   # k -> (N, K) outputs after k updates
    grads0: dict | None = None     # the gradients the first update used
    params1: dict | None = None    # the weights after 1 update
    final: dict | None = None      # the weights after all updates

    def record(self, step: int, E: float, out) -> None:
        self.E[step] = E
        if step in self.keep:
            self.out[step] = to_numpy(out).copy()

    def record_final(self, steps: int, X, Y) -> None:
        """E and the outputs after the last update: one more forward pass (the manual
        sides' own; the witness's an evaluation, whose gradients no update uses)."""
        if isinstance(self.side, ManualSide):
            net = self.side.net
            self.record(steps, net.loss(X, Y), net.forward(X))
        else:
            E, _ = self.side.evaluate(None)
            self.record(steps, E, self.side.last_output)
        self.final = self.side.params


class SequentialSide(ManualSide):
    """A ``SequentialMLP`` as an engine side: its backward (in ``evaluate``) has already
    updated every layer, so ``update`` has nothing left to do."""

    def update(self, grads) -> None:
        pass


class Recorder(Observer):
    """Per side: E and outputs before each update, the first update's gradients, the
    weights after it."""

    def __init__(self, trajs: list[Trajectory]):
        self.trajs = trajs

    def compare(self, step, epoch, idx, ref, evals) -> None:
        for t, (E, grads) in zip(self.trajs, evals, strict=True):
            t.record(step, E, t.side.last_output)
            if step == 0:
                t.grads0 = {k: to_numpy(g).copy() for k, g in grads.items()}

    def updated(self, step: int) -> None:
        for t in self.trajs if step == 0 else ():
            t.params1 = t.side.params


def trajectories(prob: Problem, steps: int, witness: bool = True) -> dict[str, Trajectory]:
    """Plain gradient descent on the explained batch for ``steps`` updates, by the engine:
    {"simultaneous", "sequential"[, "autograd"]: Trajectory}."""
    import torch_impl

    cfg, (N, K) = prob.config, prob.T.shape
    nets = [manual.MLP(cfg.sizes, **cfg.spec(), params=prob.params),
            SequentialMLP(cfg.sizes, cfg.lr, **cfg.spec(), params=prob.params)]
    sides = [ManualSide(nets[0], cfg.sgd, "simultaneous"),
             SequentialSide(nets[1], cfg.sgd, "sequential")]
    if witness:
        tor = torch_impl.MLP(cfg.sizes, **cfg.spec(), params=prob.params)
        sides.append(ReferenceSide(mlp_reference(tor, prob.X, prob.Y, cfg.sgd, name=cfg.name,
                                                 steps=steps), "autograd"))
    # outputs of every step when they fit (the search note scans them); the witness keeps
    # the steps its table column reads in any case
    every = range(steps + 1) if (steps + 1) * N * K <= KEEP_OUTPUTS else range(0)
    record = {0, 1, steps} | {p.step for p in PUBLISHED if p.step <= steps}
    trajs = [Trajectory(side, every if i < 2 else set(every) | record, np.empty(steps + 1))
             for i, side in enumerate(sides)]
    with limited_threads(1):   # a few hundred flops per step: extra threads only add overhead
        for side in sides:
            side.bind(prob.X, prob.Y)
        Lockstep(sides, mode="free").run(batches(N, N, False, None, steps), Recorder(trajs))
        for t in trajs:        # after the last update: one more forward pass
            t.record_final(steps, prob.X, prob.Y)
    return {t.side.name: t for t in trajs}


def _value(traj: Trajectory | None, fig: Published) -> float:
    """The figure's quantity in one trajectory (NaN where it was not computed)."""
    if traj is None or fig.step >= len(traj.E):
        return math.nan
    if fig.quantity == "E":
        return float(traj.E[fig.step])
    if fig.quantity == "out":
        out = traj.out.get(fig.step)
        return math.nan if out is None else float(out[fig.where])
    key, ix = fig.where
    return float((traj.grads0 if fig.quantity == "grad" else traj.params1)[key][ix])


def update_order_table(steps: int = 1, cfg: RunConfig | str | None = None, *,
                       witness: bool = True) -> pd.DataFrame:
    """Train the simultaneous and the sequential order (and autograd + torch.optim.SGD when
    ``witness``) for ``steps`` updates on the explained batch; one row per figure.

    Columns ``TABLE_COLUMNS``: the published value (NaN for rows that have none) with its
    decimals, the step it is measured at, each order's value, autograd's, which order
    matches to the published digits (simultaneous | sequential | both | neither), and a
    note (for "neither": the step at which an order does give the published value)."""
    if cfg is None or isinstance(cfg, str):
        cfg = load_config(cfg or "worked-2-2-2")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps {steps!r}: the number of updates must be an integer >= 1")
    prob = prepare(cfg)
    if not plain(prob.config):
        raise ConfigError(f"the update-order comparison is for plain gradient descent; this "
                          f"config has momentum = {prob.config.momentum}, weight_decay = "
                          f"{prob.config.weight_decay}: add --set momentum=0 --set "
                          f"weight_decay=0")
    trajs = trajectories(prob, steps, witness)
    sim, seq, tor = trajs["simultaneous"], trajs["sequential"], trajs.get("autograd")
    if prob.worked:
        rows = [_figure_row(fig, sim, seq, tor, steps) for fig in PUBLISHED]
    else:
        rows = [[f"E_total after {_updates(k)}", math.nan, 0, k, float(sim.E[k]),
                 float(seq.E[k]), float(tor.E[k]) if tor else math.nan, "", ""]
                for k in sorted({1, steps})]
    if tor is not None:   # how far each order's weights are from torch.optim.SGD's
        keys = list(sim.grads0)
        checkpoints = [(1, sim.params1, seq.params1, tor.params1)]
        if steps > 1:
            checkpoints.append((steps, sim.final, seq.final, tor.final))
        rows += [[f"max |w − w_autograd| after {_updates(k)}", math.nan, 0, k,
                  _max_diff(ps, pt, keys), _max_diff(pq, pt, keys), math.nan, "",
                  "weights against torch.optim.SGD's"] for k, ps, pq, pt in checkpoints]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.attrs.update(worked=prob.worked, worked_diffs=prob.worked_diffs, steps=steps,
                       config=prob.config.name)
    return table


def _figure_row(fig: Published, sim: Trajectory, seq: Trajectory, tor, steps: int) -> list:
    vs, vq = _value(sim, fig), _value(seq, fig)
    if fig.step > steps:
        match, note = "", f"run with --steps {fig.step} to compute"
    else:
        ms, mq = bool(fig.matches(vs)), bool(fig.matches(vq))
        match = {(True, True): "both", (True, False): "simultaneous",
                 (False, True): "sequential"}.get((ms, mq), "neither")
        note = _search_note(fig, sim, seq) if match == "neither" else ""
        if fig.step == 0 and fig.quantity != "grad":
            note = "before any update: the order cannot matter yet"
    return [fig.figure, fig.value, fig.digits, fig.step, vs, vq, _value(tor, fig), match, note]


def _updates(k: int) -> str:
    return f"{k:,} update" if k == 1 else f"{k:,} updates"


def _max_diff(p: dict, q: dict, keys) -> float:
    return max(float(np.max(np.abs(p[k] - q[k]))) for k in keys)


def _search_note(fig: Published, sim: Trajectory, seq: Trajectory) -> str:
    """For a figure no order reproduces at its step: the nearest step where one does."""
    found = []
    for order, traj in (("simultaneous", sim), ("sequential", seq)):
        if fig.quantity == "E":
            series = traj.E
        elif fig.quantity == "out" and len(traj.out) == len(traj.E):
            series = np.array([traj.out[k][fig.where] for k in range(len(traj.E))])
        else:
            continue
        hits = np.flatnonzero(fig.matches(series))
        if hits.size:
            k = int(hits[np.argmin(np.abs(hits - fig.step))])
            found.append((abs(k - fig.step), order, k, float(series[k])))
    if not found:
        return "no step of either order gives it"
    _, order, k, v = min(found)
    return f"{order} after {k:,} updates gives {v:.{fig.digits + 2}f}"


def update_order_notes(table: pd.DataFrame) -> list[str]:
    """What the table shows, in sentences computed from it (never assumed)."""
    notes = []
    if table.attrs.get("worked_diffs"):   # set only for a 2-2-2 that is not the example
        notes.append("The published figures belong to the 2-2-2 worked example with its "
                     "settings; this config differs in: "
                     f"{', '.join(table.attrs['worked_diffs'])} — none are compared.")
    pub = table[table["published"].notna()]
    sim_only, seq_only, both, neither = (list(pub.loc[pub["matches"] == kind, "figure"]) for kind
                                         in ("simultaneous", "sequential", "both", "neither"))
    if both:
        notes.append(f"Both orders give: {'; '.join(both)} (the orders differ only once a "
                     f"hidden delta has gone through an updated weight).")
    if sim_only:
        notes.append(f"Only the simultaneous order gives: {'; '.join(sim_only)}.")
    if seq_only:
        notes.append(f"Only the sequential order gives: {'; '.join(seq_only)}.")
    for r in pub[pub["matches"] == "neither"].itertuples(index=False):
        notes.append(f"Neither order gives {r.figure} at step {r.step:,}; {r.note}.")
    if sim_only and seq_only:
        notes.append(
            "So the published text mixes the two orders: "
            f"{'; '.join(sim_only)} follow the simultaneous order (the derivation), while "
            f"{'; '.join(seq_only)} come from a sequential implementation"
            + (f"; {'; '.join(neither)} matches neither order at its stated step."
               if neither else "."))
    pending = pub[pub["matches"] == ""]   # measured after more steps than were run
    if not pending.empty:
        notes.append(f"Not computed at --steps {table.attrs.get('steps')}: "
                     f"{'; '.join(pending['figure'])} (use --steps "
                     f"{int(pending['step'].max())}).")
    drift = table[table["figure"].str.startswith("max |w")]
    if not drift.empty:
        first, last = drift.iloc[0], drift.iloc[-1]

        def size(x):
            return "0 (bit-identical)" if x == 0 else f"{x:.2g} (rounding)"

        later = ("" if int(last["step"]) == 1 else
                 f"; after {int(last['step']):,} updates: {size(last['simultaneous'])} against "
                 f"{last['sequential']:.2g}")
        notes.append(
            "autograd + torch.optim.SGD compute every gradient at the weights the step starts "
            "from, then update: the simultaneous order. After 1 update its weights differ from "
            f"the simultaneous hand update by {size(first['simultaneous'])} and from the "
            f"sequential one by {first['sequential']:.2g}{later}. The sequential difference is "
            "O(lr·Δw), not rounding: its hidden deltas went through output weights already "
            "moved by lr·∂E/∂w, so a sequential hand implementation parts from autograd in "
            "the first step (below the output layer), and everywhere after.")
    return notes
