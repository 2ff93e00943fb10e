"""The lockstep runner: one init, one batch order, both sides stepped side by side.

Per step s (0-based), on the mini-batch chosen for that step:
    1. each side evaluates its loss and gradients at its current weights;
    2. if s is logged, the metrics compare those gradients (``experiments.core.metrics``);
    3. each side applies its own SGD update (manual.SGD by hand, torch.optim.SGD);
    4. if s is logged, ``weight_max_abs_diff`` compares the weights after the update;
    5. ``synced`` mode then copies the torch side's weights (and momentum buffers) into
       the manual side, so the next step's gradients are evaluated at the same point.

Metrics go into arrays preallocated for the logged steps (steps × parameter tensors),
and become DataFrames once, at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

import manual
import torch_impl
from experiments.core.config import ConfigError, RunConfig, replace
from experiments.core.datasets import Dataset, load_dataset
from experiments.core.diagnose import diagnose_result, param_kinds
from experiments.core.init import InitError, initial_params
from experiments.core.metrics import TINY, compare_many, rel_err, step_tolerances

LOSS_COLUMNS = ["step", "epoch", "loss_manual", "loss_torch", "abs_diff", "rel_diff",
                "examples_seen"]
GRAD_METRICS = ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch",
                "weight_max_abs_diff", "fd_rel_err", "ref_rel_err_manual", "ref_rel_err_torch",
                "rel_tol"]
GRAD_COLUMNS = ["step", "epoch", "param", *GRAD_METRICS]
COL = {name: i for i, name in enumerate(GRAD_METRICS)}   # metric -> index in the tables
assert GRAD_METRICS[:5] == ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch"]
NORMS = slice(COL["norm_manual"], COL["norm_torch"] + 1)
SUMMARY_COLUMNS = ["param", "max_abs_diff", "rel_err", "worst_step", "min_cosine",
                   "weight_max_abs_diff", "fd_rel_err", "tolerance", "verdict", "worst_ratio"]


@dataclass
class RunResult:
    """Everything a run produced; ``experiments.output.rundir.write_run`` puts it on disk."""

    config: RunConfig                 # resolved: sizes filled in from the data
    dataset: Dataset
    loss: pd.DataFrame                # LOSS_COLUMNS, one row per logged step
    grads: pd.DataFrame               # GRAD_COLUMNS, one row per logged step × parameter
    final_grads: pd.DataFrame         # param, row, col, grad_manual, grad_torch, abs_diff
    predictions: pd.DataFrame         # the last forward pass of both sides
    summary: pd.DataFrame             # SUMMARY_COLUMNS
    status: str                       # completed | diverged | interrupted
    message: str
    steps_done: int                   # updates completed
    total_steps: int
    seeds: dict = field(default_factory=dict)
    seconds: float = 0.0
    findings: list = field(default_factory=list)   # experiments.core.diagnose.Finding


class Diverged(Exception):
    pass


def _to_numpy(x) -> np.ndarray:
    """A numpy view (CPU) or copy (device) of a numpy array or torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()


def resolve(cfg: RunConfig) -> tuple[RunConfig, Dataset]:
    """Load the data and fill in what the config left to it (sizes); check they fit."""
    try:
        data = load_dataset(cfg.dataset, loss=cfg.loss, seed=cfg.seed,
                            standardize=cfg.standardize, target=cfg.target or None)
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
    return replace(cfg, sizes=tuple(sizes)), data


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


def batches(N: int, B: int, shuffle: bool, order_rng, total: int):
    """Yield ``(step, epoch, idx)`` for ``total`` steps: ``idx`` is None for the full batch,
    else the step's slice of this epoch's order (reshuffled from ``order_rng`` at each
    epoch start when ``shuffle``; the last batch of an epoch may be smaller)."""
    per_epoch = math.ceil(N / B)
    order = np.arange(N)
    for step in range(total):
        pos = step % per_epoch
        if B >= N:
            yield step, step // per_epoch, None
            continue
        if pos == 0 and shuffle:
            order = order_rng.permutation(N)
        yield step, step // per_epoch, order[pos * B:(pos + 1) * B]


def run_experiment(cfg: RunConfig, *, progress: bool = False) -> RunResult:
    """Train both sides in lockstep as ``cfg`` says; never raises for divergence/interrupt.

    numpy's overflow/invalid warnings are silenced for the run: a non-finite loss or
    gradient is detected and reported as divergence instead (status "diverged").
    """
    with np.errstate(all="ignore"):
        return _run(cfg, progress)


def _run(cfg: RunConfig, progress: bool) -> RunResult:
    t_start = time.perf_counter()
    cfg, data, params, order_rng, seeds = initial_state(cfg)

    spec = dict(activation=cfg.activation, output_activation=cfg.resolved_output_activation,
                bias=cfg.bias, loss=cfg.loss, dtype=cfg.dtype)
    device = torch.device(cfg.device)
    tor = torch_impl.MLP(cfg.sizes, **spec, params=params, device=cfg.device)
    if cfg.manual_backend == "torch":   # the same hand code, on torch tensors on `device`
        man = manual.MLP(cfg.sizes, **spec, params={
            k: torch.as_tensor(v, device=device) for k, v in params.items()})
    else:
        man = manual.MLP(cfg.sizes, **spec, params=params)
    sgd = dict(lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
               weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    opt_m = manual.SGD(man.param_arrays, **sgd)
    opt_t = tor.optimizer(**sgd)

    # Data, converted once: numpy in the run dtype for manual/numpy, tensors for torch.
    np_dtype = np.dtype(cfg.dtype)
    X = data.X.astype(np_dtype)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(np_dtype)
    Xt, Yt = tor.as_input(X), tor.as_target(Y)
    Xm, Ym = (Xt, Yt) if cfg.manual_backend == "torch" else (X, Y)
    N = X.shape[0]
    B = N if cfg.batch_size == "full" else cfg.batch_size
    steps_per_epoch = math.ceil(N / B)
    total = cfg.steps if cfg.steps else cfg.epochs * steps_per_epoch

    keys = list(tor.trainable)
    assert keys == man.trainable, (keys, man.trainable)
    w_starts = np.cumsum([0] + [int(np.prod(man.shapes[k])) for k in keys[:-1]])
    t_params = {k: v.detach() for k, v in tor.module.state_dict().items()}
    # numpy views of the torch weights (updated in place by the optimizer; CPU only)
    t_np = {k: v.numpy() for k, v in t_params.items()} if device.type == "cpu" else None
    logged = _logged_steps(total, cfg.log_every, cfg.fd_every, len(keys))
    n_log = len(logged)
    loss_rows = np.full((n_log, len(LOSS_COLUMNS)), np.nan)
    grad_rows = np.full((n_log, len(keys), len(GRAD_METRICS)), np.nan)
    ref = None
    if cfg.dtype == "float32":  # float64 reference: the manual code in float64 (numpy)
        ref = manual.MLP(cfg.sizes, **{**spec, "dtype": "float64"}, params=params)
    T_all = data.Y
    if data.Y.ndim == 1:  # integer labels -> one-hot, for the magnitude bound
        T_all = (data.Y[:, None] == np.arange(cfg.sizes[-1])[None, :]).astype(np.float64)

    status, message, row, step = "completed", "", 0, 0
    last_g: dict = {}
    examples = 0
    bar = _progress(total, cfg.name, progress)
    try:
        for step, epoch, idx in batches(N, B, cfg.shuffle, order_rng, total):
            if idx is None:
                xm, ym, xt, yt = Xm, Ym, Xt, Yt
            else:
                it = torch.as_tensor(idx, device=device)
                xt, yt = Xt[it], Yt[it]
                xm, ym = (xt, yt) if cfg.manual_backend == "torch" else (X[idx], Y[idx])
            examples += N if idx is None else len(idx)

            Em, gm = man.loss_and_gradients(xm, ym, native=True)
            try:
                Et, gt = tor.loss_and_gradients(xt, yt, native=True)
            except RuntimeError:
                # torch.nn.BCELoss refuses NaN outputs instead of returning NaN: with
                # non-finite weights that is divergence, anything else is a real error
                if _finite(t_params):
                    raise
                Et, gt = math.nan, {k: torch.full_like(v, math.nan)
                                    for k, v in tor.trainable.items()}
            is_logged = row < n_log and logged[row] == step
            bad_m, bad_t = not math.isfinite(Em), not math.isfinite(Et)
            if is_logged or bad_m or bad_t:
                loss_rows[row] = (step, epoch, Em, Et, abs(Em - Et),
                                  abs(Em - Et) / max(abs(Em), abs(Et), TINY), examples)
                g_np = {k: (_to_numpy(gm[k]), _to_numpy(gt[k])) for k in keys}
                metrics = compare_many([g[0] for g in g_np.values()],
                                       [g[1] for g in g_np.values()])     # (P, 5)
                grad_rows[row, :, :5] = metrics   # compare_many's five, in GRAD_METRICS order
                # rel_tol = 2γ_m · cond, cond = ‖G̃‖ / ‖g‖ ≥ 1 (experiments.core.metrics)
                acts = [_to_numpy(x) for x in man.last_activations]
                w_np = {k: _to_numpy(v) for k, v in man.param_arrays.items()}
                grad_rows[row, :, COL["rel_tol"]] = step_tolerances(
                    man, w_np, acts, T_all if idx is None else T_all[idx], metrics, cfg.dtype)
                if ref is not None:
                    _reference(grad_rows[row], ref, man, tor, keys, g_np, data.X, data.Y, idx,
                               cfg.mode)
                if cfg.fd_every and step % cfg.fd_every == 0:
                    _finite_differences(grad_rows[row], man, tor, keys, g_np, data.X, data.Y, idx)
                if not (bad_m or bad_t) and math.isfinite(sum(m[3] + m[4] for m in metrics)):
                    last_g = g_np   # the last finite gradients, for final_grads.csv
                else:
                    row += 1
                    raise Diverged(_divergence_message(step, man, t_params, bad_m, bad_t,
                                                       grad_rows[row - 1, :, NORMS], cfg.lr))
            opt_m.step(gm)
            opt_t.step()
            if is_logged:   # weight_max_abs_diff after the update, all tensors in one pass
                wm = np.concatenate([_to_numpy(man.param_arrays[k]).reshape(-1) for k in keys])
                wt = np.concatenate([(t_np[k] if t_np is not None else _to_numpy(t_params[k]))
                                     .reshape(-1) for k in keys])
                drift = np.maximum.reduceat(np.abs(wm - wt), w_starts)    # (P,)
                grad_rows[row, :, COL["weight_max_abs_diff"]] = drift
                row += 1
            if cfg.mode == "synced":
                _sync(man, opt_m, tor, opt_t, t_params, keys)
            bar.update(1)
        step = total
        if not (_finite(man.param_arrays) and _finite(t_params)):  # the last update
            raise Diverged(_divergence_message(total, man, t_params, False, False, None,
                                               cfg.lr))
    except Diverged as err:
        status, message = "diverged", str(err)
    except KeyboardInterrupt:
        # A step cut off mid-way never reached `row += 1`: the tables end at the last
        # completed logged step.
        status, message = "interrupted", f"interrupted during step {step}"
    finally:
        bar.close()
    steps_done = step
    seconds = time.perf_counter() - t_start

    loss_df, grads_df = _frames(loss_rows[:row], grad_rows[:row], keys)
    summary = summarize(grads_df, keys)
    final = _final_grads(last_g, keys) if last_g else pd.DataFrame()
    # After an interrupt the two sides' last forward passes may belong to different steps.
    preds = _predictions(man, tor) if row and status != "interrupted" else pd.DataFrame()
    if not message:
        message = f"{steps_done} steps completed"
    result = RunResult(config=cfg, dataset=data, loss=loss_df, grads=grads_df, final_grads=final,
                     predictions=preds, summary=summary, status=status, message=message,
                     steps_done=steps_done, total_steps=total,
                     seeds=seeds,
                     seconds=seconds)
    # The automatic diagnosis (constant ratio, transposed, one layer, ...) of every run.
    result.findings = diagnose_result(result)
    kinds = param_kinds(result.findings, keys)
    summary["diagnosis"] = summary["param"].map(kinds).fillna(
        " + ".join(sorted({kinds[k] for k in keys if kinds[k] != "agree"})) or "agree")
    return result


def _finite(arrays) -> bool:
    return all(math.isfinite(float(_to_numpy(v).sum())) for v in arrays.values())


def _divergence_message(step, man, t_params, bad_m, bad_t, norms, lr) -> str:
    """Which side diverged first, and at which step.

    Checked where a non-finite value is first seen (a loss every step, gradients at logged
    steps): if a side's *weights* are already non-finite there, the update of the step
    before made them so (an unlogged non-finite gradient, or an overflowing update), and
    that earlier step is reported. No per-step weight check is needed for this.
    """
    w_m, w_t = not _finite(man.param_arrays), not _finite(t_params)
    if w_m or w_t:
        step, bad_m, bad_t, what = step - 1, w_m, w_t, "its update made the weights non-finite"
    else:
        if not (bad_m or bad_t):
            bad_m = not np.all(np.isfinite(norms[:, 0]))
            bad_t = not np.all(np.isfinite(norms[:, 1]))
        what = "a non-finite loss or gradient"
    side = "both sides" if bad_m and bad_t else ("the manual side" if bad_m else "the torch side")
    return f"diverged at step {step}: {side} first ({what}; lr = {lr})"


def _sync(man, opt_m, tor, opt_t, t_params, keys) -> None:
    """Reset the manual side to the torch side's weights and momentum buffers."""
    for k, v in t_params.items():
        dst = man.param_arrays[k]
        dst[...] = _to_numpy(v) if isinstance(dst, np.ndarray) else v
    for k in keys:
        buf = opt_t.state.get(tor.trainable[k], {}).get("momentum_buffer")
        if buf is not None:
            b = man.param_arrays[k]
            opt_m.momentum_buffer[k] = (_to_numpy(buf).copy() if isinstance(b, np.ndarray)
                                        else buf.clone())


def _reference(rows, ref, man, tor, keys, g_np, X64, Y64, idx, mode) -> None:
    """float32 runs: rel_err of each side's gradient to a float64 one at that side's weights."""
    xb = X64 if idx is None else X64[idx]
    yb = Y64 if idx is None else Y64[idx]
    ref.set_params(tor.params)
    g_ref_t = ref.gradients(xb, yb)
    if mode != "synced":
        ref.set_params(man.params)
        g_ref_m = ref.gradients(xb, yb)
    else:
        g_ref_m = g_ref_t
    for j, k in enumerate(keys):
        rows[j, COL["ref_rel_err_manual"]] = rel_err(g_np[k][0], g_ref_m[k])
        rows[j, COL["ref_rel_err_torch"]] = rel_err(g_np[k][1], g_ref_t[k])


def _finite_differences(rows, man, tor, keys, g_np, X64, Y64, idx) -> None:
    """fd_rel_err: the worse side's rel_err to central differences (float64) at the torch
    side's weights (the two sides' weights differ by rounding, far below the FD error)."""
    xb = X64 if idx is None else X64[idx]
    yb = Y64 if idx is None else Y64[idx]
    probe = manual.MLP(tor.sizes, tor.activation, tor.output_activation, tor.bias,
                       tor.loss_name, "float64", params=tor.params)
    fd = manual.finite_difference_gradients(probe, xb, yb)
    for j, k in enumerate(keys):
        rows[j, COL["fd_rel_err"]] = max(rel_err(g_np[k][0], fd[k]), rel_err(g_np[k][1], fd[k]))


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


def summarize(grads: pd.DataFrame, keys) -> pd.DataFrame:
    """Worst values per parameter over the logged steps, a verdict, and an ``all`` row.

    The worst step is the one where rel_err comes closest to (or goes furthest past) that
    step's own tolerance ``rel_tol``; ``worst_ratio`` = rel_err / rel_tol there, and the
    ``tolerance`` column is that step's rel_tol. A step where either side's gradient is
    non-finite (the divergence step) is left out: the run's status reports it.
    """
    rows = []
    finite = grads[np.isfinite(grads["norm_manual"]) & np.isfinite(grads["norm_torch"])]
    for k in [*keys, "all"]:
        g = finite if k == "all" else finite[finite["param"] == k]
        if g.empty:
            continue
        ratio = (g["rel_err"] / g["rel_tol"]).fillna(np.inf)
        worst = ratio.idxmax()
        mad, r = g["max_abs_diff"].max(), float(ratio.max())
        v = "exact" if mad == 0 else ("agree" if r <= 1 else "differ")
        rows.append([k, mad, g["rel_err"].max(), int(g.loc[worst, "step"]), g["cosine"].min(),
                     g["weight_max_abs_diff"].max(), g["fd_rel_err"].max(),
                     g.loc[worst, "rel_tol"], v, r])
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _final_grads(g_np, keys) -> pd.DataFrame:
    """Element by element, the gradients of the last logged step where both were finite."""
    parts = []
    for k in keys:
        a = g_np[k][0].astype(np.float64)
        b = g_np[k][1].astype(np.float64)
        a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
        r, c = np.indices(a2.shape)
        parts.append(pd.DataFrame({"param": k, "row": r.ravel(), "col": c.ravel(),
                                   "grad_manual": a2.ravel(), "grad_torch": b2.ravel(),
                                   "abs_diff": np.abs(a2 - b2).ravel()}))
    return pd.concat(parts, ignore_index=True)


def _predictions(man, tor) -> pd.DataFrame:
    """The last forward pass of both sides (made before the last update), long form."""
    a = _to_numpy(man.last_output).astype(np.float64)
    b = _to_numpy(tor.last_output).astype(np.float64)
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
