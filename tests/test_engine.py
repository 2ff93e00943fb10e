"""experiments.core.engine: the Side protocol, the two standard sides (``ManualSide``, and the
autograd side ``reference.ReferenceSide`` of torch_impl's network), ``batches`` and the
``Lockstep`` loop (step order, observer hooks, synced vs free, several sides, stopping).

Real sides are tiny (a 3-4-2 network on 7 samples); the order tests use recording fakes,
so what is checked is the engine's own sequencing, not a network's numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

import manual
import torch_impl
from experiments.core.engine import (
    Lockstep,
    ManualSide,
    Observer,
    Side,
    batches,
)
from experiments.core.reference import ReferenceSide, mlp_reference

SIZES = [3, 4, 2]
SPEC = dict(activation="sigmoid", bias=True, loss="half_sse")
N = 7


def problem(seed: int = 0):
    """Non-symmetric weights, non-zero biases, 7 samples: values that can't hide a bug."""
    rng = np.random.default_rng(seed)
    params = {k: rng.uniform(-1, 1, s) for k, s in manual.parameter_shapes(SIZES, True).items()}
    X = rng.normal(size=(N, SIZES[0]))
    Y = rng.uniform(0, 1, size=(N, SIZES[-1]))
    return params, X, Y


def manual_side(params, X, Y, name="manual", **sgd) -> ManualSide:
    sgd = {"lr": 1.0, **sgd}
    return ManualSide(manual.MLP(SIZES, **SPEC, params=params), sgd, name=name).bind(X, Y)


def torch_side(params, X, Y, name="torch", **sgd) -> ReferenceSide:
    sgd = {"lr": 1.0, **sgd}
    ref = mlp_reference(torch_impl.MLP(SIZES, **SPEC, params=params), X, Y, sgd)
    return ReferenceSide(ref, name=name).bind(X, Y)


def full_batch(steps: int):
    return batches(N, N, False, None, steps)


# -- the Side protocol ---------------------------------------------------------------------

def test_standard_sides_satisfy_the_protocol():
    params, X, Y = problem()
    m, t = manual_side(params, X, Y), torch_side(params, X, Y)
    assert isinstance(m, Side) and isinstance(t, Side)
    assert m.name == "manual" and t.name == "torch"
    assert m.keys == t.keys == ["layers.0.weight", "layers.0.bias", "layers.1.weight",
                                "layers.1.bias"]


class NoLoad:
    """Everything a side has except ``load``."""

    name, keys = "partial", []

    def evaluate(self, idx):
        return 0.0, {}

    def update(self, grads):
        pass

    @property
    def params(self):
        return {}


def test_protocol_check_refuses_what_is_not_a_side():
    # the isinstance checks above mean something only if a non-side fails them
    assert not isinstance(object(), Side)
    assert not isinstance(NoLoad(), Side)


def test_frozen_biases_are_not_side_keys_but_are_params():
    params, X, Y = problem()
    net = manual.MLP(SIZES, **{**SPEC, "bias": "frozen"}, params=params)
    side = ManualSide(net, {"lr": 1.0}).bind(X, Y)
    assert side.keys == ["layers.0.weight", "layers.1.weight"]
    assert set(side.params) == set(params)


def test_evaluate_full_batch_and_rows():
    params, X, Y = problem()
    m, t = manual_side(params, X, Y), torch_side(params, X, Y)
    idx = np.array([5, 0, 3])
    ref = manual.MLP(SIZES, **SPEC, params=params)
    for side in (m, t):
        E, _ = side.evaluate(None)
        assert E == pytest.approx(ref.loss(X, Y), rel=1e-13, abs=0)
        Eb, gb = side.evaluate(idx)
        assert Eb == pytest.approx(ref.loss(X[idx], Y[idx]), rel=1e-13, abs=0)
        assert Eb < E                       # 3 of 7 samples of a summed loss, all terms > 0
        assert list(gb) == side.keys


# -- batches -------------------------------------------------------------------------------

def test_batches_epochs_and_short_last_batch():
    # 10 samples in batches of 4: 3 steps per epoch, sizes 4, 4, 2; 7 steps stop mid-epoch
    got = list(batches(10, 4, False, None, 7))
    assert [s for s, _, _ in got] == list(range(7))
    assert [e for _, e, _ in got] == [0, 0, 0, 1, 1, 1, 2]
    assert [len(i) for _, _, i in got] == [4, 4, 2, 4, 4, 2, 4]
    np.testing.assert_array_equal(np.concatenate([i for _, _, i in got[:3]]), np.arange(10))
    np.testing.assert_array_equal(got[3][2], [0, 1, 2, 3])    # no shuffle: the same walk


def test_batches_reshuffle_from_the_order_rng_at_each_epoch():
    got = list(batches(10, 4, True, np.random.default_rng(5), 9))
    want_rng = np.random.default_rng(5)
    for epoch in range(3):
        perm = want_rng.permutation(10)                        # one draw per epoch start
        idx = np.concatenate([i for _, e, i in got if e == epoch])
        np.testing.assert_array_equal(idx, perm)
    epochs = [np.concatenate([i for _, e, i in got if e == k]) for k in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])           # 1 in 10! to be equal


def test_batches_full_batch_is_none_and_one_step_an_epoch():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    got = list(batches(5, 5, True, rng, 3))
    assert got == [(0, 0, None), (1, 1, None), (2, 2, None)]
    assert list(batches(5, 8, False, None, 2)) == [(0, 0, None), (1, 1, None)]   # B > N
    assert rng.bit_generator.state == state                  # full batch draws nothing


def test_batches_without_shuffle_never_touch_the_rng():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    list(batches(10, 3, False, rng, 12))
    assert rng.bit_generator.state == state


# -- Lockstep: order and hooks ---------------------------------------------------------------

class Recording:
    """A fake side: returns (step-tagged) loss and gradients, records every call in ``log``."""

    def __init__(self, name, log):
        self.name, self.keys, self.log = name, ["w"], log
        self.w = np.zeros(1)
        self.evaluations = 0

    def evaluate(self, idx):
        self.log.append(("evaluate", self.name, None if idx is None else idx.tolist()))
        self.evaluations += 1
        return float(self.evaluations), {"w": np.array([self.evaluations])}

    def update(self, grads):
        self.log.append(("update", self.name, int(grads["w"][0])))
        self.w = self.w - grads["w"]

    @property
    def params(self):
        return {"w": self.w.copy()}

    def load(self, other):
        self.log.append(("load", self.name, other.name))
        self.w = other.params["w"].copy()


class RecordingObserver(Observer):
    def __init__(self, log):
        self.log = log

    def compare(self, step, epoch, idx, ref, evals):
        self.log.append(("compare", step, epoch, ref, [E for E, _ in evals]))

    def updated(self, step):
        self.log.append(("updated", step))


class Progress:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_synced_step_order_and_hooks():
    log: list = []
    a, b, ref = Recording("a", log), Recording("b", log), Recording("ref", log)
    bar = Progress()
    done = Lockstep([a, b], reference=ref, mode="synced").run(
        batches(4, 2, False, None, 2), RecordingObserver(log), bar)
    assert done == 2 and bar.n == 2
    step0 = [("evaluate", "a", [0, 1]), ("evaluate", "b", [0, 1]), ("evaluate", "ref", [0, 1]),
             ("compare", 0, 0, (1.0, {"w": np.array([1])}), [1.0, 1.0]),
             ("update", "a", 1), ("update", "b", 1), ("update", "ref", 1),
             ("updated", 0),
             ("load", "a", "ref"), ("load", "b", "ref")]
    assert len(log) == 2 * len(step0)
    for got, want in zip(log[:len(step0)], step0, strict=True):
        assert repr(got) == repr(want)
    assert [x[:2] for x in log[len(step0):]] == [
        ("evaluate", "a"), ("evaluate", "b"), ("evaluate", "ref"), ("compare", 1),
        ("update", "a"), ("update", "b"), ("update", "ref"), ("updated", 1),
        ("load", "a"), ("load", "b")]
    assert log[len(step0) + 3][2] == 0                       # step 1 is still epoch 0


def test_free_mode_never_loads_and_runs_without_a_reference():
    log: list = []
    a = Recording("a", log)
    done = Lockstep([a]).run(full_batch(3), RecordingObserver(log))
    assert done == 3
    assert [x[0] for x in log] == ["evaluate", "compare", "update", "updated"] * 3
    assert all(x[3] is None for x in log if x[0] == "compare")     # no reference evaluation


def test_each_side_updates_with_its_own_gradients():
    log: list = []
    a, ref = Recording("a", log), Recording("ref", log)
    a.evaluations = 10                                   # a's gradients: 11, 12; ref's: 1, 2
    Lockstep([a], reference=ref, mode="free").run(full_batch(2))
    assert [x for x in log if x[0] == "update"] == [
        ("update", "a", 11), ("update", "ref", 1), ("update", "a", 12), ("update", "ref", 2)]


def test_bad_mode_and_synced_without_reference_are_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        Lockstep([], mode="lockstep")
    with pytest.raises(ValueError, match="synced mode needs a reference"):
        Lockstep([Recording("a", [])], mode="synced")


# -- Lockstep: synced really syncs, free does not --------------------------------------------

class StateAtEachStep(Observer):
    """At each step's compare (before any update): every side's weights and momentum
    buffers against the reference's, as the largest absolute difference."""

    def __init__(self, sides, ref):
        self.sides, self.ref, self.weight_gap, self.buffer_gap = sides, ref, [], []

    def compare(self, step, epoch, idx, ref, evals):
        rp = self.ref.params
        self.weight_gap.append(max(np.abs(s.params[k] - rp[k]).max()
                                   for s in self.sides for k in rp))
        gaps = []
        for s in self.sides:
            for k in self.ref.keys:
                mine, theirs = s.momentum_buffer(k), self.ref.momentum_buffer(k)
                assert (mine is None) == (theirs is None), (step, k)
                if mine is not None:
                    gaps.append(np.abs(mine - theirs.numpy()).max())
        self.buffer_gap.append(max(gaps) if gaps else None)


def lr_mismatch(mode: str, steps: int = 4):
    """Two manual sides with the WRONG learning rates (0.5 and 2) against the torch reference
    (lr 1), momentum 0.9 everywhere: left alone, their weights leave the reference's at the
    first update, and their momentum buffers from the second."""
    params, X, Y = problem(1)
    sides = [manual_side(params, X, Y, "slow", lr=0.5, momentum=0.9),
             manual_side(params, X, Y, "fast", lr=2.0, momentum=0.9)]
    ref = torch_side(params, X, Y, lr=1.0, momentum=0.9)
    obs = StateAtEachStep(sides, ref)
    Lockstep(sides, reference=ref, mode=mode).run(full_batch(steps), obs)
    return sides, ref, obs


def test_synced_loads_the_reference_weights_and_momentum_buffers_after_each_step():
    sides, ref, obs = lr_mismatch("synced")
    # every step starts from the reference's weights and buffers, bit for bit
    assert obs.weight_gap == [0.0] * 4
    assert obs.buffer_gap == [None, 0.0, 0.0, 0.0]
    for s in sides:
        for k, v in ref.params.items():
            np.testing.assert_array_equal(s.params[k], v)
            np.testing.assert_array_equal(s.momentum_buffer(k),
                                          ref.momentum_buffer(k).numpy())
            # a copy: the reference's in-place optimizer must not write into the side
            assert not np.shares_memory(s.momentum_buffer(k), ref.momentum_buffer(k).numpy())
            assert not np.shares_memory(s.arrays[k], ref.arrays[k].numpy())


def train(side, steps: int) -> None:
    for _ in range(steps):
        side.update(side.evaluate(None)[1])


def max_rel(a: dict, b: dict) -> float:
    return max(np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k]) for k in b)


@pytest.mark.parametrize("sgd", [dict(momentum=0.9), dict(momentum=0.5, dampening=0.3),
                                 dict(momentum=0.9, nesterov=True, weight_decay=0.01)])
def test_a_torch_side_takes_the_momentum_buffers_it_loads(sgd):
    # a manual side 3 steps into momentum training, a torch side trained on its own for 5
    # steps at another learning rate (other weights, other buffers): after the load both
    # take the same next steps; with the weights alone torch would step on its own buffers
    params, X, Y = problem(2)
    m = manual_side(params, X, Y, lr=1.0, **sgd)
    t = torch_side(params, X, Y, lr=0.3, **sgd)
    train(m, 3)
    train(t, 5)
    t.load(m)
    t.opt.param_groups[0]["lr"] = 1.0
    for k in m.keys:
        np.testing.assert_array_equal(t.momentum_buffer(k).numpy(), m.momentum_buffer(k))
        # a copy: the manual side's next update must not write into torch's state
        assert not np.shares_memory(t.momentum_buffer(k).numpy(), m.momentum_buffer(k))
    train(m, 4)
    train(t, 4)
    assert max_rel(t.params, m.params) <= 1e-12       # float64, 4 steps after the load


def test_a_buffer_absent_on_the_source_is_absent_after_the_load():
    # the source never stepped: the loaded side's next step is torch's (and manual's) first
    # step again, b = g, not a continuation of the buffers it had
    params, X, Y = problem(3)
    for fresh, trained in [(manual_side(params, X, Y, momentum=0.9),
                            torch_side(params, X, Y, momentum=0.9)),
                           (torch_side(params, X, Y, momentum=0.9),
                            manual_side(params, X, Y, momentum=0.9))]:
        train(trained, 3)
        trained.load(fresh)
        assert all(trained.momentum_buffer(k) is None for k in trained.keys)
        train(trained, 2)
        train(fresh, 2)
        assert max_rel(trained.params, fresh.params) <= 1e-12


def test_free_mode_leaves_each_side_on_its_own_weights():
    sides, _, obs = lr_mismatch("free")
    assert obs.weight_gap[0] == 0.0                       # the one shared init
    assert all(gap > 1e-3 for gap in obs.weight_gap[1:]), obs.weight_gap
    assert obs.buffer_gap[0] is None and all(gap > 1e-3 for gap in obs.buffer_gap[2:])
    slow, fast = (s.params for s in sides)
    assert max(np.abs(slow[k] - fast[k]).max() for k in slow) > 1e-2


def test_several_sides_are_each_compared_with_the_one_reference():
    params, X, Y = problem(2)
    sides = [manual_side(params, X, Y, "m1"), manual_side(params, X, Y, "m2", lr=0.5)]
    ref = torch_side(params, X, Y)
    seen = []

    class Evals(Observer):
        def compare(self, step, epoch, idx, r, evals):
            seen.append((r, evals))

    Lockstep(sides, reference=ref, mode="synced").run(full_batch(3), Evals())
    assert len(seen) == 3
    for r, evals in seen:
        assert len(evals) == 2
        for E, g in evals:                              # synced: all at the same weights
            # float64, 7 samples through a 3-4-2 net: a few dozen roundings per value,
            # u ≈ 1.1e-16, so 1e-12 relative is a fixed bound far above rounding
            assert abs(E - r[0]) <= 1e-12 * abs(r[0])
            for k in sides[0].keys:
                ref_g = r[1][k].numpy()
                assert np.linalg.norm(g[k] - ref_g) <= 1e-12 * np.linalg.norm(ref_g)


# -- Lockstep: stopping ----------------------------------------------------------------------

class StopAt(Observer):
    def __init__(self, step):
        self.stop, self.updates = step, 0

    def compare(self, step, epoch, idx, ref, evals):
        if step == self.stop:
            raise RuntimeError(f"stop at {step}")

    def updated(self, step):
        self.updates += 1


def test_step_tells_where_an_exception_stopped_the_run():
    log: list = []
    a = Recording("a", log)
    engine = Lockstep([a])
    obs = StopAt(3)
    with pytest.raises(RuntimeError, match="stop at 3"):
        engine.run(full_batch(10), obs)
    assert engine.step == 3 and obs.updates == 3          # steps 0, 1, 2 completed
    assert [x for x in log if x[0] == "update"] == [("update", "a", i) for i in (1, 2, 3)]


def test_step_after_a_side_raises_and_after_a_full_run():
    params, X, Y = problem()
    side = manual_side(params, X, Y)
    original = side.evaluate
    calls = {"n": 0}

    def failing(idx):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(idx)
    side.evaluate = failing
    engine = Lockstep([side])
    with pytest.raises(KeyboardInterrupt):
        engine.run(full_batch(10))
    assert engine.step == 4
    engine = Lockstep([manual_side(params, X, Y)])
    assert engine.run(full_batch(6)) == 6 and engine.step == 6
