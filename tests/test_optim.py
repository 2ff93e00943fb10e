"""manual.SGD (the update rule written by hand) vs torch.optim.SGD.

Two levels:
(a) the optimizer alone: both are fed the SAME gradient sequence, so only the update
    rule is compared; the weights may differ only by the rounding of a few operations
    per step, bounded componentwise by a recurrence derived below;
(b) full training of both networks: each side computes its own gradients at its own
    weights, so a difference made at step k is fed back through the Hessian at step k+1;
    the bound grows with the steps through the linearised update matrix (derived below).

Settings that cannot hide a bug: lr = 0.9, 8-10 steps, momentum,
dampening, weight decay and Nesterov in combination.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import manual
import torch_impl
from experiments.core.metrics import TINY, compare
from experiments.core.tolerance import gradient_tolerance, magnitude_gradients

EPS = float(np.finfo(np.float64).eps)   # = 2u: one rounding on EACH of the two sides
LR = 0.9
#: The fixed float64 bound every manual-vs-torch comparison here also holds, beside the
#: derived ones: u ≈ 1.1e-16 and chains of at most ~10^3 rounded operations (10 steps of
#: a 3-5-4-2 network on 13 samples) keep two correct sides within ~1e-13 relative.
F64_REL = 1e-12

#: (momentum, dampening, weight_decay, nesterov): every combination of momentum (0, 0.9),
#: dampening (0, 0.3), weight_decay (0, 0.01), plus Nesterov where torch allows it
CONFIGS = [(m, d, w, False) for m, d, w in itertools.product((0.0, 0.9), (0.0, 0.3), (0.0, 0.01))]
CONFIGS += [(0.9, 0.0, w, True) for w in (0.0, 0.01)]
IDS = [f"mom{m}-damp{d}-wd{w}" + ("-nesterov" if n else "") for m, d, w, n in CONFIGS]


def make_problem(seed=0, sizes=(3, 5, 4, 2), N=13, bias=True):
    """Non-symmetric random weights, non-zero biases, a batch of 13: values that can't hide
    a bug."""
    rng = np.random.default_rng(seed)
    params = {}
    for key, shape in manual.parameter_shapes(sizes, bias).items():
        fan_in = sizes[int(key.split(".")[1])]
        if key.endswith("weight"):
            params[key] = rng.uniform(-1.5, 1.5, shape) / math.sqrt(fan_in)
        else:
            params[key] = rng.uniform(0.1, 0.8, shape) * rng.choice([-1.0, 1.0], shape)
    X = rng.normal(size=(N, sizes[0]))
    Y = rng.uniform(0, 1, size=(N, sizes[-1]))
    return list(sizes), params, X, Y


def torch_params(params: dict) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}


# --- (a) the update rule alone --------------------------------------------------------


def rounding_recurrence(p, b_old, g, e_p, e_b, cfg, first):
    """Componentwise bound on |p_m − p_t| and |b_m − b_t| after one update.

    With u per rounded operation and EACH side's error measured from exact arithmetic,
    the two sides differ by at most the sum of both bounds, hence EPS = 2u per rounding.
    Every rounded operation a ∘ b contributes ≤ u·(|a| + |b|) (this also covers torch's
    fused a + α·b in ``add_(alpha=)``, which rounds once instead of twice). Per step:

        g' = g + λ p              e_g = λ e_p + 2u(|g| + 2λ|p|)          (2 ops)
        b  = g'  (first step)     e_b = e_g                               (a copy)
        b  = μ b + (1 − τ) g'     e_b = μ e_b + (1 − τ) e_g + 2u·2(μ|b| + (1 − τ)|g'|)
        d  = g' + μ b (Nesterov)  e_d = e_g + μ e_b + 2u(|g'| + 2μ|b|)
        d  = b  (momentum)  or g' e_d = e_b  or e_g
        p ← p − lr d              e_p = e_p + lr e_d + 2u(|p| + 2 lr|d|)  (2 ops)

    which is "≤ 4 rounded operations per step", propagated: errors already in p and b are
    carried through the linear update (λ, μ, lr), not restarted each step.
    """
    mom, damp, wd, nest = cfg
    gw = g + wd * p
    e_g = wd * e_p + EPS * (np.abs(g) + 2 * wd * np.abs(p))
    if mom == 0:
        d, e_d, b, e_b = gw, e_g, None, None
    else:
        if first:
            b, e_b = gw, e_g
        else:
            b = mom * b_old + (1 - damp) * gw
            e_b = (mom * e_b + (1 - damp) * e_g
                   + 2 * EPS * (mom * np.abs(b_old) + (1 - damp) * np.abs(gw)))
        if nest:
            d = gw + mom * b
            e_d = e_g + mom * e_b + EPS * (np.abs(gw) + 2 * mom * np.abs(b))
        else:
            d, e_d = b, e_b
    p_new = p - LR * d
    e_p = e_p + LR * e_d + EPS * (np.abs(p) + 2 * LR * np.abs(d))
    return p_new, b, e_p, e_b


def recorded_gradients(steps: int, seed: int = 0):
    """A realistic gradient sequence: manual's own gradients along its plain-SGD path."""
    sizes, params, X, Y = make_problem(seed)
    net = manual.MLP(sizes, params=params)
    opt = manual.SGD(net.param_arrays, lr=LR)
    seq = []
    for _ in range(steps):
        g = net.gradients(X, Y)
        seq.append(g)
        opt.step(g)
    return params, seq


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_update_rule_alone_matches_torch_to_rounding(cfg):
    mom, damp, wd, nest = cfg
    params, seq = recorded_gradients(steps=8)
    pm = {k: v.copy() for k, v in params.items()}
    opt_m = manual.SGD(pm, lr=LR, momentum=mom, dampening=damp, weight_decay=wd, nesterov=nest)
    pt = torch_params(params)
    opt_t = torch.optim.SGD(list(pt.values()), lr=LR, momentum=mom, dampening=damp,
                            weight_decay=wd, nesterov=nest)
    # the exact-arithmetic stand-in for the bound's magnitudes: the manual trajectory
    ref = {k: v.copy() for k, v in params.items()}
    buf = dict.fromkeys(params)
    e_p = {k: np.zeros_like(v) for k, v in params.items()}
    e_b = {k: np.zeros_like(v) for k, v in params.items()}
    worst_eps, worst_ratio = 0.0, 0.0
    for step, grads in enumerate(seq):
        opt_m.step({k: g.copy() for k, g in grads.items()})
        for k, p in pt.items():
            p.grad = torch.tensor(grads[k])
        opt_t.step()
        for k in params:
            ref[k], buf[k], e_p[k], e_b[k] = rounding_recurrence(
                ref[k], buf[k], grads[k], e_p[k], e_b[k], cfg, first=step == 0)
            got_t = pt[k].detach().numpy()
            diff = np.abs(pm[k] - got_t)
            # in units of eps·max|p| (ulps of the largest weight: a weight near 0 has tiny
            # ulps of its own, while its rounding errors are sized by |p| + lr|d|)
            worst_eps = max(worst_eps, float(diff.max() / (EPS * np.abs(got_t).max())))
            worst_ratio = max(worst_ratio, float(np.max(diff / np.maximum(e_p[k], TINY))))
            # derived bound (rounding_recurrence): |p_m − p_t| ≤ e_p componentwise
            assert np.all(diff <= e_p[k]), (
                f"step {step} {k}: |p_m − p_t| = {diff.max():.3e} > bound "
                f"{e_p[k][np.argmax(diff - e_p[k])]:.3e}")
            assert np.linalg.norm(pm[k] - got_t) <= F64_REL * np.linalg.norm(got_t)
            if mom:
                bt = opt_t.state[pt[k]]["momentum_buffer"].numpy()
                db = np.abs(opt_m.momentum_buffer[k] - bt)
                assert np.all(db <= e_b[k]), f"step {step} {k}: buffer diff {db.max():.3e}"
    # the weights really moved (a no-op optimizer on both sides would agree trivially)
    moved = max(np.abs(pm[k] - params[k]).max() for k in params)
    assert moved > 0.05, moved
    print(f"\n[test_optim] {cfg}: worst |p_m − p_t| = {worst_eps:.1f} eps·max|p| "
          f"({worst_ratio:.2f} of the bound) over 8 steps")


def test_update_rule_detects_a_wrong_rule():
    """The bound is tight: torch with dampening 0.3 vs manual with 0 is far outside it."""
    params, seq = recorded_gradients(steps=3)
    pm = {k: v.copy() for k, v in params.items()}
    opt_m = manual.SGD(pm, lr=LR, momentum=0.9, dampening=0.0)
    pt = torch_params(params)
    opt_t = torch.optim.SGD(list(pt.values()), lr=LR, momentum=0.9, dampening=0.3)
    for grads in seq:
        opt_m.step(grads)
        for k, p in pt.items():
            p.grad = torch.tensor(grads[k])
        opt_t.step()
    diff = max(np.abs(pm[k] - pt[k].detach().numpy()).max() for k in params)
    assert diff > 1e-3


def test_first_momentum_step_uses_undamped_gradient():
    """torch starts the buffer at b = g (not (1 − τ) g). By hand, lr 0.5, μ 0.9, τ 0.5:
        step 1: b = g0 = 0.5            p = 1 − 0.5·0.5 = 0.75      (0.875 if b = 0.5 g)
        step 2: b = 0.9·0.5 + 0.5·0.25 = 0.575      p = 0.75 − 0.5·0.575 = 0.4625
    """
    g0, g1 = np.array([0.5, -2.0]), np.array([0.25, 1.0])
    p1 = np.array([0.75, 2.0])                       # exact: every operation is exact here
    p2 = np.array([0.4625, 2.0 - 0.5 * (0.9 * -2.0 + 0.5 * 1.0)])   # = [0.4625, 2.65]
    pm = {"w": np.array([1.0, 1.0])}
    opt_m = manual.SGD(pm, lr=0.5, momentum=0.9, dampening=0.5)
    wt = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt_t = torch.optim.SGD([wt], lr=0.5, momentum=0.9, dampening=0.5)
    opt_m.step({"w": g0})
    wt.grad = torch.tensor(g0)
    opt_t.step()
    np.testing.assert_array_equal(pm["w"], p1)                 # exact: 1 − 0.25, 1 + 1
    np.testing.assert_array_equal(wt.detach().numpy(), p1)
    np.testing.assert_array_equal(opt_m.momentum_buffer["w"], g0)
    np.testing.assert_array_equal(opt_t.state[wt]["momentum_buffer"].numpy(), g0)
    assert opt_m.momentum_buffer["w"] is not g0                # a copy, not the caller's g
    opt_m.step({"w": g1})
    wt.grad = torch.tensor(g1)
    opt_t.step()
    # 0.9·0.5 and 0.9·2 are the only inexact products: ≤ 3 roundings of values ≤ 3,
    # i.e. a few ulps of 1
    np.testing.assert_allclose(pm["w"], p2, rtol=0, atol=4 * EPS * 3)
    np.testing.assert_allclose(wt.detach().numpy(), p2, rtol=0, atol=4 * EPS * 3)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"lr": -0.1}, "Invalid learning rate"),
        ({"lr": 0.1, "momentum": -0.9}, "Invalid momentum value"),
        ({"lr": 0.1, "weight_decay": -0.01}, "Invalid weight_decay value"),
        ({"lr": 0.1, "nesterov": True}, "Nesterov momentum requires"),
        ({"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
         "Nesterov momentum requires"),
    ],
)
def test_invalid_settings_raise_like_torch(kwargs, words):
    with pytest.raises(ValueError, match=words) as err_m:
        manual.SGD({"w": np.zeros(2)}, **kwargs)
    with pytest.raises(ValueError, match=words) as err_t:
        torch.optim.SGD([torch.zeros(2, requires_grad=True)], **kwargs)
    assert str(err_m.value) == str(err_t.value)     # manual promises torch's own words


def test_zero_lr_is_valid_and_frozen_keys_are_left_alone():
    w = np.array([1.0, 2.0])
    manual.SGD({"w": w}, lr=0.0).step({"w": np.ones(2)})
    np.testing.assert_array_equal(w, [1.0, 2.0])
    p = {"w": np.array([1.0]), "b": np.array([0.35])}
    manual.SGD(p, lr=0.5, weight_decay=0.1, momentum=0.9).step({"w": np.array([1.0])})
    assert p["b"][0] == 0.35                       # not in grads: not updated, no decay


# --- (b) full training ----------------------------------------------------------------


def hessian(tor: torch_impl.MLP, X, Y) -> np.ndarray:
    """∇²E over the trainable parameters (flattened in key order), by torch autograd."""
    names = list(tor.trainable)
    shapes = [tor.trainable[k].shape for k in names]
    flat0 = torch.cat([tor.trainable[k].detach().reshape(-1) for k in names])
    fixed = {k: v.detach() for k, v in tor.module.named_parameters() if k not in tor.trainable}
    x, y = tor.as_input(X), tor.as_target(Y)

    def E(flat):
        ps, off = dict(fixed), 0
        for k, s in zip(names, shapes, strict=True):
            ps[k] = flat[off:off + s.numel()].reshape(s)
            off += s.numel()
        return tor.criterion(torch.func.functional_call(tor.module, ps, (x,)), y)

    return torch.autograd.functional.hessian(E, flat0).numpy()


def propagation(Hk, cfg, first):
    """Linearised update of the difference state [Δp; Δb] and the gradient-rounding input ρ.

    The two sides' gradients differ by Δg = K Δp + ρ, K = ∇²E + λI (first order) and ρ the
    gradient rounding (≤ 2γ_m·cond·‖g‖). Then, exactly as the update rule:
        Δb' = Δg (first step)   or   μ Δb + (1 − τ) Δg
        Δd  = Δg + μ Δb' (Nesterov),   Δb',   or Δg (no momentum)
        Δp' = Δp − lr Δd
    Returns (M, R) with [Δp'; Δb'] = M [Δp; Δb] + R ρ.
    """
    mom, damp, wd, nest = cfg
    P = len(Hk)
    I, Z = np.eye(P), np.zeros((P, P))
    K = Hk + wd * I
    if mom == 0:
        Bp, Bb, Br = Z, Z, Z                          # no buffer
        Dp, Db, Dr = K, Z, I
    else:
        c = 1.0 if first else 1 - damp
        Bp, Bb, Br = c * K, (Z if first else mom * I), c * I
        if nest:
            Dp, Db, Dr = K + mom * Bp, mom * Bb, I + mom * Br
        else:
            Dp, Db, Dr = Bp, Bb, Br
    M = np.block([[I - LR * Dp, -LR * Db], [Bp, Bb]])
    R = np.vstack([-LR * Dr, Br])
    return M, R


#: (hidden activation, output activation, loss, bias, optimizer config)
TRAIN_CASES = [
    ("sigmoid", "sigmoid", "half_sse", True, (0.0, 0.0, 0.0, False)),
    ("sigmoid", "sigmoid", "half_sse", "frozen", (0.9, 0.0, 0.0, False)),
    ("tanh", "tanh", "mse", True, (0.9, 0.3, 0.01, False)),
    ("sigmoid", "sigmoid", "bce", True, (0.9, 0.0, 0.01, True)),
    ("relu", "identity", "mse", False, (0.9, 0.3, 0.0, False)),
]


@pytest.mark.parametrize(("act", "out", "loss", "bias", "cfg"), TRAIN_CASES,
                         ids=[f"{a}-{o}-{lo}-bias{b}-{c}" for a, o, lo, b, c in TRAIN_CASES])
def test_full_training_trajectories_track(act, out, loss, bias, cfg):
    """Both networks, each with its own gradients and optimizer, 10 steps at lr 0.9.

    Bound on x_k = ‖[Δp_k; Δb_k]‖₂ (the weight and buffer differences), first order:
        x_{k+1} ≤ ‖M_k‖₂ x_k + ‖R_k‖₂ ‖ρ_k‖₂ + ‖r_k‖₂
    with M_k, R_k from ``propagation`` at the current Hessian, ρ_k the gradient-rounding
    bound of test_agreement (2γ_m·cond·max‖g‖ per tensor) and r_k the update's own
    rounding (``rounding_recurrence`` with no incoming error). ‖M_k‖ ≥ 1 in general, so
    the bound grows with k: a rounding difference made early is amplified by the
    curvature along the way. Second-order terms are O(x²‖∇³E‖) ≈ 1e-28: negligible.
    """
    mom, damp, wd, nest = cfg
    sizes, params, X, Y = make_problem(seed=11, sizes=(3, 5, 4, 2), N=13, bias=bias)
    spec = dict(sizes=sizes, activation=act, output_activation=out, bias=bias, loss=loss)
    man = manual.MLP(**spec, params=params)
    tor = torch_impl.MLP(**spec, params=params)
    keys = man.trainable
    opt_m = manual.SGD(man.param_arrays, lr=LR, momentum=mom, dampening=damp,
                       weight_decay=wd, nesterov=nest)
    opt_t = tor.optimizer(lr=LR, momentum=mom, dampening=damp, weight_decay=wd, nesterov=nest)
    base = gradient_tolerance("float64", sizes, len(X))
    x = 0.0
    for step in range(10):
        first = step == 0
        _, gm = man.loss_and_gradients(X, Y)
        _, gt = tor.loss_and_gradients(X, Y)
        acts = [np.asarray(a) for a in man.last_activations]
        G = magnitude_gradients(man, man.params, acts, Y)
        rho = 0.0
        for k in keys:
            _, rel, _, nm, nt = compare(gm[k], gt[k])
            assert rel <= F64_REL, f"step {step} {k}: gradient rel_err {rel:.3e}"
            rho += (base * max(G[k], nm, nt)) ** 2      # 2γ_m·cond·‖g‖ = 2γ_m·max(‖G̃‖, ‖g‖)
        rho = math.sqrt(rho)
        M, R = propagation(hessian(tor, X, Y), cfg, first)
        # update rounding of this step alone (no incoming error)
        r2 = 0.0
        for k in keys:
            p = man.param_arrays[k]
            b_old = opt_m.momentum_buffer.get(k)
            z = np.zeros_like(p)
            _, _, e_p, e_b = rounding_recurrence(p, b_old, gm[k], z, z, cfg, first)
            r2 += float(np.sum(e_p**2)) + (float(np.sum(e_b**2)) if e_b is not None else 0.0)
        x = np.linalg.norm(M, 2) * x + np.linalg.norm(R, 2) * rho + math.sqrt(r2)
        opt_m.step(gm)
        opt_t.step()
        wm = np.concatenate([man.param_arrays[k].ravel() for k in keys])
        wt = np.concatenate([tor.trainable[k].detach().numpy().ravel() for k in keys])
        dw = float(np.linalg.norm(wm - wt))
        assert dw <= x, f"step {step}: ‖w_m − w_t‖ = {dw:.3e} > derived bound {x:.3e}"
        assert dw <= F64_REL * np.linalg.norm(wt), f"step {step}: ‖w_m − w_t‖ = {dw:.3e}"
        if mom:
            bm = np.concatenate([opt_m.momentum_buffer[k].ravel() for k in keys])
            bt = np.concatenate([opt_t.state[tor.trainable[k]]["momentum_buffer"].numpy().ravel()
                                 for k in keys])
            assert float(np.linalg.norm(bm - bt)) <= x, f"step {step}: buffers"
    print(f"\n[test_optim] training {act}/{loss}/bias={bias}/{cfg}: ‖w_m − w_t‖ = {dw:.2e}, "
          f"bound {x:.2e} after 10 steps")
    # the bound still has teeth after 10 steps (a real bug moves weights by ~lr·‖g‖ ≈ 0.1)
    assert x <= 1e-8 * np.linalg.norm(wm), f"bound grew to {x:.3e}: test would be vacuous"
    assert np.linalg.norm(wm - np.concatenate([params[k].ravel() for k in keys])) > 0.05
    if bias == "frozen":
        for side in (man.params, tor.params):
            np.testing.assert_array_equal(side["layers.0.bias"], params["layers.0.bias"])
