"""``handgrad run``: the manual side against autograd, through the lockstep engine.

The engine (``experiments.core.engine``) steps the two standard sides: the manual one and
the config's MLP as a reference (``experiments.core.reference.from_config``: torch_impl's
network in the one autograd side, ``ReferenceSide``, that a teacher's reference also
trains in). The ``Recorder``
here fills the run's tables at each logged step: the gradient metrics
(``experiments.core.metrics``), the step's rounding bound rel_tol
(``experiments.core.tolerance``), the float64 and finite-difference witnesses, and the
weights after the update (``weight_max_abs_diff``). Metrics go into arrays preallocated
for the logged steps (steps × parameter tensors) and become DataFrames once, at the end.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import manual
from experiments.core import witnesses
from experiments.core.config import ConfigError, RunConfig, replace
from experiments.core.datasets import Dataset, load_dataset
from experiments.core.diagnose import param_kinds
from experiments.core.diagnose_run import diagnose_result
from experiments.core.engine import (
    Lockstep,
    ManualSide,
    Observer,
    Side,
    batches,
    finite,
    to_numpy,
)
from experiments.core.init import InitError, initial_params
from experiments.core.metrics import TINY, Comparison, compare_many
from experiments.core.reference import ReferenceSide, from_config
from experiments.core.schema import (
    GRAD_ENTRIES_MAX_ROWS,
    GRAD_ENTRY_COLUMNS,
    GRAD_INDEX,
    GRAD_METRICS,
    LOSS_COLUMNS,
    LOSS_INDEX,
)
from experiments.core.threads import limited_threads, thread_counts
from experiments.core.tolerance import step_bounds
from experiments.core.verdict import summarize

COL = GRAD_INDEX   # metric -> index in the tables
LCOL = LOSS_INDEX  # loss.csv column -> index in the loss rows
NORMS = [COL["norm_manual"], COL["norm_torch"]]


@dataclass
class RunResult:
    """Everything a run produced; ``experiments.output.rundir.write_run`` puts it on disk."""

    config: RunConfig                 # resolved: sizes filled in from the data
    dataset: Dataset
    loss: pd.DataFrame                # LOSS_COLUMNS, one row per logged step
    grads: pd.DataFrame               # GRAD_COLUMNS, one row per logged step × parameter
    final_grads: pd.DataFrame         # param, row, col, grad_manual, grad_torch, abs_diff
    grad_entries: pd.DataFrame        # GRAD_ENTRY_COLUMNS; empty unless kept (see run_experiment)
    predictions: pd.DataFrame         # the last forward pass of both sides
    summary: pd.DataFrame             # SUMMARY_COLUMNS
    status: str                       # completed | diverged | interrupted
    message: str
    steps_done: int                   # updates completed
    total_steps: int
    seeds: dict = field(default_factory=dict)
    seconds: float = 0.0
    findings: list = field(default_factory=list)   # experiments.core.diagnose.Finding
    side_name: str = "manual"         # the compared side (a learner's file name, say)
    threads: dict = field(default_factory=dict)    # torch and BLAS threads the run used


class Diverged(Exception):
    pass


def resolve(cfg: RunConfig) -> tuple[RunConfig, Dataset]:
    """Load the data and fill in what the config left to it (sizes); check they fit."""
    try:
        data = load_dataset(cfg.dataset, loss=cfg.loss, seed=cfg.seed,
                            standardize=cfg.standardize, target=cfg.target or None,
                            target_kind=cfg.target_kind)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    N, D = data.X.shape
    K = data.n_outputs
    if cfg.sizes:
        if cfg.sizes[0] != D or cfg.sizes[-1] != K:
            raise ConfigError(f"sizes = {list(cfg.sizes)} do not fit dataset {cfg.dataset!r}: "
                              f"it has {D} input features and needs {K} outputs for loss "
                              f"{cfg.loss!r}; use sizes = [{D}, ..., {K}] or set hidden instead")
        sizes = cfg.sizes
    else:
        sizes = (D, *cfg.hidden, K)
    if cfg.batch_size != "full" and cfg.batch_size > N:
        raise ConfigError(f"batch_size = {cfg.batch_size} is larger than dataset "
                          f"{cfg.dataset!r} ({N} examples); use at most {N} or \"full\"")
    try:
        manual.check_spec(sizes, cfg.activation, cfg.resolved_output_activation, cfg.bias,
                          cfg.loss, cfg.dtype)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device = {cfg.device!r} but no CUDA device is available here "
                          f"(torch {torch.__version__}); use device = \"cpu\"")
    if cfg.device.startswith("cuda:") and int(cfg.device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device = {cfg.device!r} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s); use cuda:0 ...")
    _check_memory(sizes, N, cfg)
    return replace(cfg, sizes=tuple(sizes)), data


def _check_memory(sizes, N: int, cfg: RunConfig) -> None:
    """Refuse up front a network the machine cannot hold. A run keeps about 20 float64
    copies of the parameters P (both sides' weights, gradients and optimizer state, the
    metrics' flattened copies, final_grads.csv's rows) and about 12 of the activations
    N·Σ sizes (both forward passes, autograd's saved tensors, the tolerance's magnitudes)."""
    P = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    need = 8 * (20 * P + 12 * N * sum(sizes))
    have = _memory_available()
    if need > have:
        raise ConfigError(f"sizes = {list(sizes)} with {N:,} examples would need about "
                          f"{need / 2**30:,.1f} GiB ({P:,} parameters), more than the "
                          f"{have / 2**30:,.1f} GiB available here; use narrower layers or "
                          f"a smaller batch of data")


def _memory_available() -> int:
    """Bytes of memory available to this process now (Linux MemAvailable), else the total."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


MAX_METRIC_BYTES = 4 * 2**30   # refuse runs whose metric tables alone would pass 4 GiB


def _logged_steps(total: int, log_every: int, fd_every: int, n_params: int) -> np.ndarray:
    """Steps 0, every log_every-th, every fd_every-th and the last, in order."""
    n = total // log_every + (total // fd_every if fd_every else 0) + 1
    if n * (n_params * len(GRAD_METRICS) + len(LOSS_COLUMNS)) * 8 > MAX_METRIC_BYTES:
        raise ConfigError(f"{total} steps logged every {log_every} would need more than "
                          f"{MAX_METRIC_BYTES // 2**30} GiB of metrics; raise log_every "
                          f"(e.g. --set log_every={max(1, total // 1_000_000)}) or run fewer steps")
    steps = np.arange(0, total, log_every, dtype=np.int64)
    if fd_every:
        steps = np.union1d(steps, np.arange(0, total, fd_every, dtype=np.int64))
    return np.union1d(steps, [total - 1])


def initial_state(cfg: RunConfig):
    """``(cfg, data, params, order_rng, seeds)``: the resolved config and data, the one
    initial parameter dict and the batch-order generator. One ``SeedSequence(seed)``
    spawns two streams, init and batch order, so a different batch size never changes
    the init. The runner, ``explain`` and the studies' replay all start from here."""
    cfg, data = resolve(cfg)
    init_seq, order_seq = np.random.SeedSequence(cfg.seed).spawn(2)
    try:
        params = initial_params(cfg.init, cfg.sizes, cfg.bias,
                                np.random.default_rng(init_seq), cfg.seed)
    except InitError as err:
        raise ConfigError(str(err)) from None
    seeds = {"seed": cfg.seed, "init_entropy": str(init_seq.entropy),
             "init_spawn_key": list(init_seq.spawn_key),
             "order_spawn_key": list(order_seq.spawn_key)}
    return cfg, data, params, np.random.default_rng(order_seq), seeds


def run_experiment(cfg: RunConfig, *, progress: bool = False, side=None,
                   threads: int | None = None, grad_entries: bool | None = None) -> RunResult:
    """Train both sides in lockstep as ``cfg`` says; never raises for divergence/interrupt.

    ``grad_entries``: keep every gradient entry of both sides at every logged step
    (``RunResult.grad_entries``, grad_entries.csv): True always, False never, None (the
    default) when that is at most ``GRAD_ENTRIES_MAX_ROWS`` rows.

    ``side``, when given, is a callable ``(cfg, params) -> Side`` whose side takes the
    manual side's place (its columns are the ``*_manual`` ones): e.g. a learner's own
    backprop. It needs ``bind(X, Y)``, ``arrays`` and ``last_output`` as ``ManualSide``.
    ``threads``: torch and BLAS threads for the run (None: ``auto_threads``).
    numpy's overflow/invalid warnings are silenced for the run: a non-finite loss or
    gradient is detected and reported as divergence instead (status "diverged").
    """
    with np.errstate(all="ignore"):
        return _run(cfg, progress, side, threads, grad_entries)


def standard_sides(cfg: RunConfig, data: Dataset, params: dict
                   ) -> tuple[ManualSide, ReferenceSide]:
    """manual.MLP + manual.SGD (on numpy, or on torch tensors on ``cfg.device`` for the
    torch backend) and the config as a reference (torch_impl.MLP + torch.optim.SGD, on
    ``cfg.device``), both from ``params``, on the resolved config's ``data``."""
    tor = ReferenceSide(from_config(cfg, data, params), name="torch")
    if cfg.manual_backend == "torch":   # the same hand code, on torch tensors on `device`
        device = torch.device(cfg.device)
        params = {k: torch.as_tensor(v, device=device) for k, v in params.items()}
    man = manual.MLP(cfg.sizes, **cfg.spec(), params=params)
    return ManualSide(man, cfg.sgd), tor


def auto_threads(sizes, batch: int) -> int:
    """One thread for small networks, all cores for large ones. A step of a small network
    is a few microseconds of arithmetic: extra threads only add synchronisation, and on a
    loaded machine they wait for each other (a backward pass took 28 ms instead of 0.06 ms
    on 2 busy cores). Large layers (over 2²² multiply-adds per layer and step) gain from
    threads."""
    work = max(batch * a * b for a, b in itertools.pairwise(sizes))
    return 1 if work < 2**22 else (os.cpu_count() or 1)


def _run(cfg: RunConfig, progress: bool, side, threads: int | None,
         entries: bool | None) -> RunResult:
    t_start = time.perf_counter()
    cfg, data, params, order_rng, seeds = initial_state(cfg)
    N = data.X.shape[0]
    n = threads or auto_threads(cfg.sizes, N if cfg.batch_size == "full" else cfg.batch_size)
    with limited_threads(n):
        return _train(cfg, data, params, order_rng, seeds, progress, side, t_start, entries)


def _train(cfg, data, params, order_rng, seeds, progress, side, t_start,
           entries: bool | None = None) -> RunResult:
    man, tor = standard_sides(cfg, data, params)
    if side is not None:
        man = side(cfg, params)
    # Data, converted once: numpy in the run dtype for manual/numpy, tensors for torch.
    X = data.X.astype(cfg.dtype)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(cfg.dtype)
    tor.bind(X, Y)
    man.bind(*((tor.X, tor.Y) if cfg.manual_backend == "torch" else (X, Y)))
    N = X.shape[0]
    B = N if cfg.batch_size == "full" else cfg.batch_size
    total = cfg.steps if cfg.steps else cfg.epochs * math.ceil(N / B)
    assert man.keys == tor.keys, (man.keys, tor.keys)
    logged = _logged_steps(total, cfg.log_every, cfg.fd_every, len(man.keys))
    n_entries = sum(int(np.prod(tor.arrays[k].shape)) for k in man.keys)
    keep = entries if entries is not None else len(logged) * n_entries <= GRAD_ENTRIES_MAX_ROWS
    rec = Recorder(cfg, data, man, tor, logged, entries=keep)
    engine = Lockstep([man], reference=tor, mode=cfg.mode)
    status, message = "completed", ""
    bar = _progress(total, cfg.name, progress)
    try:
        engine.run(batches(N, B, cfg.shuffle, order_rng, total), rec, bar)
        if not (finite(man.arrays) and finite(tor.arrays)):  # the last update
            raise Diverged(_divergence_message(total, man, tor, False, False, None, cfg.lr))
    except Diverged as err:
        status, message = "diverged", str(err)
    except KeyboardInterrupt:
        # A step cut off mid-way never reached the recorder's row count: the tables end at
        # the last completed logged step.
        status, message = "interrupted", f"interrupted during step {engine.step}"
    finally:
        bar.close()
    steps_done = engine.step
    row = rec.row
    loss_df, grads_df = _frames(rec.loss_rows[:row], rec.grad_rows[:row], man.keys)
    summary = summarize(grads_df, man.keys, loss_df)
    final = _final_grads(rec.last_g, man.keys) if rec.last_g else pd.DataFrame()
    every = (_grad_entries(rec.entries[:row], loss_df, rec.index) if rec.entries is not None
             else pd.DataFrame())
    # After an interrupt the two sides' last forward passes may belong to different steps.
    preds = (_predictions(man, tor) if row and status != "interrupted"
             else pd.DataFrame())
    result = RunResult(config=cfg, dataset=data, loss=loss_df, grads=grads_df,
                       final_grads=final, grad_entries=every, predictions=preds,
                       summary=summary, status=status,
                       message=message or f"{steps_done} steps completed",
                       steps_done=steps_done, total_steps=total, seeds=seeds,
                       seconds=time.perf_counter() - t_start, side_name=man.name,
                       threads=thread_counts())
    # The automatic diagnosis (constant ratio, transposed, one layer, ...) of every run.
    result.findings = diagnose_result(result)
    kinds = param_kinds(result.findings, [*man.keys, "loss"])
    summary["diagnosis"] = summary["param"].map(kinds).fillna(
        " + ".join(sorted({k for k in kinds.values() if k != "agree"})) or "agree")
    return result


class Recorder(Observer):
    """The runner's metrics: preallocated rows for the logged steps (``schema``'s columns),
    filled from the engine's hooks. ``compare`` also detects divergence (a non-finite loss
    at any step, a non-finite gradient at a logged one) and raises ``Diverged``."""

    def __init__(self, cfg: RunConfig, data: Dataset, man: ManualSide, tor: ReferenceSide,
                 logged: np.ndarray, entries: bool = False):
        self.cfg, self.data, self.man, self.tor, self.logged = cfg, data, man, tor, logged
        self.keys = man.keys
        P = len(self.keys)
        self.loss_rows = np.full((len(logged), len(LOSS_COLUMNS)), np.nan)
        self.grad_rows = np.full((len(logged), P, len(GRAD_METRICS)), np.nan)
        #: every gradient entry, both sides: (logged steps, 2, entries), grad_entries.csv
        self.index = _entry_index({k: tuple(tor.arrays[k].shape) for k in self.keys})
        self.entries = (np.full((len(logged), 2, len(self.index)), np.nan) if entries
                        else None)
        self.row, self.examples, self.last_g = 0, 0, {}
        self.w_starts = np.cumsum([0] + [int(np.prod(tor.arrays[k].shape))
                                         for k in self.keys[:-1]])
        self.ref = None
        if cfg.dtype == "float32":  # float64 reference: the manual code in float64 (numpy)
            self.ref = manual.MLP(cfg.sizes, **cfg.spec(dtype="float64"), params=man.params)
        T = data.Y
        if T.ndim == 1:  # integer labels -> one-hot, for the magnitude bound
            T = (T[:, None] == np.arange(cfg.sizes[-1])[None, :]).astype(np.float64)
        self.T_all = T
        # numpy views of the torch weights (updated in place by the optimizer; CPU only)
        self.t_np = ({k: v.numpy() for k, v in tor.arrays.items()}
                     if tor.device.type == "cpu" else None)
        self.is_logged = False
        self.probe, self.update_check = None, witnesses.UpdateCheck(self)

    def compare(self, step, epoch, idx, ref, evals) -> None:
        (Em, gm), (Et, gt) = evals[0], ref
        self.examples += self.data.X.shape[0] if idx is None else len(idx)
        self.is_logged = self.row < len(self.logged) and self.logged[self.row] == step
        bad_m, bad_t = not math.isfinite(Em), not math.isfinite(Et)
        if not (self.is_logged or bad_m or bad_t):
            return
        row, lrow, cfg = self.grad_rows[self.row], self.loss_rows[self.row], self.cfg
        lrow[:LCOL["rel_tol"]] = (step, epoch, Em, Et, abs(Em - Et),
                                  abs(Em - Et) / max(abs(Em), abs(Et), TINY), self.examples)
        g_np = {k: (to_numpy(gm[k]), to_numpy(gt[k])) for k in self.keys}
        if self.entries is not None:
            for side in (0, 1):
                self.entries[self.row, side] = np.concatenate([g[side].reshape(-1)
                                                               for g in g_np.values()])
        metrics = compare_many([g[0] for g in g_np.values()], [g[1] for g in g_np.values()])
        for name in Comparison._fields:
            row[:, COL[name]] = [getattr(m, name) for m in metrics]
        # rel_tol = 2γ_m · cond, cond = ‖G̃‖ / ‖g‖ ≥ 1 (experiments.core.tolerance), from
        # the manual forward pass at the compared side's weights; the loss's 2γ_{m_E} ·
        # max(1, Ẽ / |E|) from the same pass
        net = getattr(self.man, "net", None)
        if isinstance(net, manual.MLP):
            acts = net.last_activations
        else:   # another kind of side: a manual probe at its weights
            net = manual.MLP(cfg.sizes, **cfg.spec(), params=self.man.params)
            acts = net.forward_cache(self.batch64(idx)[0].astype(cfg.dtype))
        acts = [to_numpy(x) for x in acts]
        w_np = {k: to_numpy(v) for k, v in net.param_arrays.items()}
        row[:, COL["rel_tol"]], lrow[LCOL["rel_tol"]] = step_bounds(
            net, w_np, acts, self.targets64(idx), metrics, cfg.dtype, losses=(Em, Et))
        witnesses.same_weights(self, row, lrow, g_np, idx)
        if self.ref is not None:
            witnesses.float64_reference(self, row, g_np, idx)
        if cfg.fd_every and step % cfg.fd_every == 0:
            witnesses.finite_differences(self, row, g_np, idx)
        if self.is_logged:
            self.update_check.before(g_np)
        if not (bad_m or bad_t) and math.isfinite(sum(m.norm_manual + m.norm_torch
                                                      for m in metrics)):
            self.last_g = g_np   # the last finite gradients, for final_grads.csv
            return
        self.row += 1
        raise Diverged(_divergence_message(step, self.man, self.tor, bad_m, bad_t,
                                           row[:, NORMS], cfg.lr))

    def updated(self, step) -> None:
        if not self.is_logged:
            return
        # weight_max_abs_diff after the update, all tensors in one pass
        keys, man = self.keys, self.man
        wm = np.concatenate([to_numpy(man.arrays[k]).reshape(-1) for k in keys])
        wt = np.concatenate([(self.t_np[k] if self.t_np is not None
                              else to_numpy(self.tor.arrays[k])).reshape(-1) for k in keys])
        row = self.grad_rows[self.row]
        row[:, COL["weight_max_abs_diff"]] = np.maximum.reduceat(np.abs(wm - wt),
                                                                 self.w_starts)  # (P,)
        row[:, COL["weight_max_abs"]] = np.maximum.reduceat(np.abs(wt), self.w_starts)
        self.update_check.after(row)
        self.row += 1

    def batch64(self, idx):
        """The step's rows of the data set, float64 (integer labels as they are)."""
        X64, Y64 = self.data.X, self.data.Y
        return (X64, Y64) if idx is None else (X64[idx], Y64[idx])

    def targets64(self, idx):
        """The step's targets as the loss sees them (N, K), float64: for the bound."""
        return self.T_all if idx is None else self.T_all[idx]


def _divergence_message(step, man, tor, bad_m, bad_t, norms, lr) -> str:
    """Which side diverged first, and at which step.

    Checked where a non-finite value is first seen (a loss every step, gradients at logged
    steps): if a side's *weights* are already non-finite there, the update of the step
    before made them so (an unlogged non-finite gradient, or an overflowing update), and
    that earlier step is reported. No per-step weight check is needed for this.
    """
    w_m, w_t = not finite(man.arrays), not finite(tor.arrays)
    if w_m or w_t:
        step, bad_m, bad_t, what = step - 1, w_m, w_t, "its update made the weights non-finite"
    else:
        if not (bad_m or bad_t):
            bad_m = not np.all(np.isfinite(norms[:, 0]))
            bad_t = not np.all(np.isfinite(norms[:, 1]))
        what = "a non-finite loss or gradient"
    side = "both sides" if bad_m and bad_t else ("the manual side" if bad_m else "the torch side")
    return f"diverged at step {step}: {side} first ({what}; lr = {lr})"


def _frames(loss_rows, grad_rows, keys) -> tuple[pd.DataFrame, pd.DataFrame]:
    loss = pd.DataFrame(loss_rows, columns=LOSS_COLUMNS)
    for c in ("step", "epoch", "examples_seen"):
        loss[c] = loss[c].astype(np.int64)
    n, P, _ = grad_rows.shape
    grads = pd.DataFrame(grad_rows.reshape(n * P, len(GRAD_METRICS)), columns=GRAD_METRICS)
    grads.insert(0, "param", np.tile(np.array(keys, dtype=object), n))
    grads.insert(0, "epoch", np.repeat(loss["epoch"].to_numpy(), P))
    grads.insert(0, "step", np.repeat(loss["step"].to_numpy(), P))
    return loss, grads


def _entry_index(shapes: dict[str, tuple]) -> pd.DataFrame:
    """One row per gradient entry, in the order of the parameters' flattened arrays:
    ``param``, ``row``, ``col`` ((out, in) for a weight, (out, 0) for a bias) and ``w1b1``,
    the same entry in the course notebooks' naming, where W{i+1} = layers.{i}.weightᵀ
    (so its index is (in, out)) and b{i+1} = layers.{i}.bias."""
    parts = []
    for k, shape in shapes.items():
        r, c = np.indices((shape[0], int(np.prod(shape[1:]))))     # (out, in) or (out, 1)
        r, c = r.ravel(), c.ravel()
        layer, kind = k.split(".")[1:] if k.startswith("layers.") else ("", k)
        if kind == "weight":
            names = [f"W{int(layer) + 1}[{j},{i}]" for i, j in zip(r, c, strict=True)]
        elif kind == "bias":
            names = [f"b{int(layer) + 1}[{i}]" for i in r]
        else:
            names = [""] * r.size
        parts.append(pd.DataFrame({"param": k, "row": r, "col": c, "w1b1": names}))
    return pd.concat(parts, ignore_index=True)


def _final_grads(g_np, keys) -> pd.DataFrame:
    """Element by element, the gradients of the last logged step where both were finite."""
    index = _entry_index({k: g_np[k][0].shape for k in keys})
    a, b = (np.concatenate([g_np[k][side].astype(np.float64).reshape(-1) for k in keys])
            for side in (0, 1))
    return index.drop(columns="w1b1").assign(grad_manual=a, grad_torch=b,
                                             abs_diff=np.abs(a - b))


def _grad_entries(entries: np.ndarray, loss: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """grad_entries.csv: ``entries`` (logged steps, 2, E) as one row per step × entry."""
    n, _, E = entries.shape
    frame = pd.DataFrame({"step": np.repeat(loss["step"].to_numpy(), E),
                          "epoch": np.repeat(loss["epoch"].to_numpy(), E)})
    for c in ("param", "row", "col", "w1b1"):
        frame[c] = np.tile(index[c].to_numpy(), n)
    frame["grad_manual"] = entries[:, 0].ravel()
    frame["grad_torch"] = entries[:, 1].ravel()
    frame["abs_diff"] = np.abs(frame["grad_manual"] - frame["grad_torch"])
    return frame[GRAD_ENTRY_COLUMNS]


def _predictions(man: Side, tor: ReferenceSide) -> pd.DataFrame:
    """The last forward pass of both sides (made before the last update), long form."""
    a = to_numpy(man.last_output).astype(np.float64)
    b = to_numpy(tor.last_output).astype(np.float64)
    r, c = np.indices(a.shape)
    return pd.DataFrame({"sample": r.ravel(), "output": c.ravel(), "manual": a.ravel(),
                         "torch": b.ravel(), "abs_diff": np.abs(a - b).ravel()})


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, name: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=name, unit="step", mininterval=0.25, leave=False)
