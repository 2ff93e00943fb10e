"""experiments.core.metrics: compare_many / Comparison, rel_err, verdict.

Each metric is checked against an independent computation with numpy's own norms
(np.linalg.norm, np.dot), following the definitions in README.md ("Run directory and CSV
schema") and docs/csv-schema.md:

    max_abs_diff = max |g_m − g_t|
    rel_err      = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂, tiny)
    cosine       = ⟨g_m, g_t⟩ / (‖g_m‖₂ ‖g_t‖₂)

The two computations sum in different orders; over at most a few hundred entries their
results differ by a few ulps, so rtol = 1e-13 (≈ 450 u) is a fixed bound that still
tells a 2-norm from a max-norm, a max from a min, or a missing square root by O(1).
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from experiments.core.metrics import (
    TINY,
    VERDICTS,
    Comparison,
    compare,
    compare_many,
    rel_err,
    verdict,
)

#: huge and tiny gradients are part of the contract: numpy's overflow warnings from the
#: fast path (measured again rescaled) must not reach a user's terminal
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

#: float64 metrics of tensors of up to n = 1,920 entries (``pairs``): reduceat sums the n
#: squares in sequence, worst case n·u ≈ 2e-13 relative, but independent roundings add up
#: like √n·u ≈ 5e-15 (Higham & Mary 2019, the probabilistic bound tolerance.py cites too);
#: the square root, the division and d = g_m − g_t add a few u, numpy's pairwise norm
#: (the reference) about log2(n)·u. 1e-13 sits some 20 times above the probabilistic bound.
RTOL = 1e-13


def independent(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return (float(np.max(np.abs(a - b))), float(np.linalg.norm(a - b) / max(na, nb, TINY)),
            float(np.dot(a, b) / (na * nb)), float(na), float(nb))


def pairs(seed: int = 0):
    """Gradient-like pairs of several shapes; the second of each is NOT a small perturbation
    of the first (rel_err of order 1), and their norms differ, so max(‖a‖, ‖b‖) matters."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (4,), (1, 4), (1,), (30, 64)]
    gm = [rng.normal(size=s) for s in shapes]
    gt = [3.0 * g + rng.normal(size=g.shape) for g in gm]
    return gm, gt


def test_fields_are_the_grads_csv_names_in_order():
    assert Comparison._fields == ("max_abs_diff", "rel_err", "cosine", "norm_manual",
                                  "norm_torch")


def test_every_metric_matches_an_independent_computation():
    gm, gt = pairs()
    got = compare_many(gm, gt)
    assert len(got) == len(gm)
    for c, a, b in zip(got, gm, gt, strict=True):
        assert isinstance(c, Comparison)
        np.testing.assert_allclose(c, independent(a, b), rtol=RTOL, atol=0)
        assert c.max_abs_diff == np.max(np.abs(a - b))          # one subtraction: exact


def test_rel_err_is_the_2_norm_over_the_larger_norm():
    # by hand: a − b = (−3, −4): ‖a − b‖ = 5, ‖a‖ = 5, ‖b‖ = 10 -> 5/10 (the smaller
    # norm would give 1)
    a, b = np.array([3.0, 4.0]), np.array([6.0, 8.0])
    assert compare(a, b).rel_err == 0.5 and compare(b, a).rel_err == 0.5
    # a − b = (−1, 1, 1, 1): ‖a − b‖ = 2 = ‖a‖ = ‖b‖ -> 1 (max-norms would give 1/2)
    a, b = np.ones(4), np.array([2.0, 0.0, 0.0, 0.0])
    assert compare(a, b).rel_err == 1.0
    # ‖a − b‖ = 9 over the larger norm 10 (over ‖a‖ it would be 9)
    a, b = np.array([1.0, 0.0]), np.array([10.0, 0.0])
    assert compare(a, b).rel_err == pytest.approx(0.9, rel=RTOL, abs=0)
    assert rel_err(a, b) == compare(a, b).rel_err


def test_cosine_of_parallel_orthogonal_and_opposite():
    a = np.array([[1.0, 2.0], [3.0, -4.0]])
    assert compare(a, 2.5 * a).cosine == pytest.approx(1.0, rel=RTOL, abs=0)
    assert compare(a, -a).cosine == pytest.approx(-1.0, rel=RTOL, abs=0)
    assert compare(np.array([1.0, 0.0]), np.array([0.0, 5.0])).cosine == 0.0
    # an identical pair is exactly 1 (the max_abs_diff == 0 path), not 1 − ulp
    assert compare(a, a) == Comparison(0.0, 0.0, 1.0, math.sqrt(30.0), math.sqrt(30.0))


def test_zero_conventions():
    z = np.zeros((2, 3))
    # both zero: same direction by convention, no difference
    assert compare(z, z) == Comparison(0.0, 0.0, 1.0, 0.0, 0.0)
    # one side zero: the whole of the other is the difference, no common direction
    g = np.array([[0.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    assert compare(g, z) == Comparison(2.0, 1.0, 0.0, 2.0, 0.0)
    assert compare(z, g) == Comparison(2.0, 1.0, 0.0, 0.0, 2.0)


def exact(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    """The five metrics in 60-digit decimal arithmetic: every float64 converts exactly and
    no square under- or overflows, so this is the reference for tiny and huge gradients
    (float64's own norms square those to 0 or inf)."""
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emin, ctx.Emax = 60, -99999, 99999
        a = [decimal.Decimal(float(x)) for x in np.ravel(a)]
        b = [decimal.Decimal(float(x)) for x in np.ravel(b)]
        na = sum(x * x for x in a).sqrt()
        nb = sum(x * x for x in b).sqrt()
        nd = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)).sqrt()
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        mad = max(abs(x - y) for x, y in zip(a, b, strict=True))
        return (float(mad), float(nd / max(na, nb)), float(dot / (na * nb)), float(na),
                float(nb))


@pytest.mark.parametrize("scale", [1e-160, 1e-200, 1e-300, 1e-310, 1e160, 1e200, 1e300])
def test_tiny_and_huge_gradients_match_exact_arithmetic(scale):
    # below √tiny ≈ 1.5e-154 the squares underflow to 0 (norms 0, rel_err 0, cosine 1);
    # above ~1.3e154 they overflow to inf (rel_err nan): the metrics must not care where
    # the gradients sit in float64's range
    gm, gt = pairs(5)
    gm, gt = [scale * g for g in gm], [scale * g for g in gt]
    got = compare_many(gm, gt)
    for c, a, b in zip(got, gm, gt, strict=True):
        # 1e-310 is subnormal: its entries carry fewer bits, but the metrics of the
        # subnormal inputs as given are still exact to a few ulps
        np.testing.assert_allclose(c, exact(a, b), rtol=RTOL, atol=0)


def test_extremes_within_one_tensor_and_between_sides():
    # one side 1e200, the other 1e-200: each side's norm right, rel_err ≈ 1, cosine exact
    a = np.array([3e200, -4e200, 1e180])
    b = np.array([1e-200, 2e-200, -2e-200])
    np.testing.assert_allclose(compare(a, b), exact(a, b), rtol=RTOL, atol=0)
    # normal-range gradients differing by a tiny amount: ‖d‖² underflows on its own
    a = np.array([1e-140, -3e-141])
    b = a + np.array([1e-156, 7e-157])
    np.testing.assert_allclose(compare(a, b), exact(a, b), rtol=RTOL, atol=0)
    # the smallest subnormal against zero: the whole of it is the difference
    assert compare(np.array([5e-324]), np.array([0.0])) == Comparison(5e-324, 1.0, 0.0,
                                                                      5e-324, 0.0)
    # identical tiny gradients: exact, with their true norms
    t = np.array([3e-170, 4e-170])
    assert compare(t, t) == Comparison(0.0, 0.0, 1.0, 5e-170, 5e-170)


def test_rescaling_one_segment_leaves_its_neighbours_bit_for_bit():
    # a tiny tensor beside normal ones: the normal ones read exactly what they read alone
    gm, gt = pairs(6)
    alone = compare_many(gm, gt)
    tiny_m, tiny_t = 1e-170 * gm[0], 1e-170 * gt[0]
    got = compare_many([*gm, tiny_m], [*gt, tiny_t])
    assert got[:-1] == alone
    np.testing.assert_allclose(got[-1], exact(tiny_m, tiny_t), rtol=RTOL, atol=0)


def test_norms_beyond_float64_overflow_to_inf_not_nan():
    big = np.full(4, 1e308)             # ‖·‖ = 2e308 > the largest float64
    c = compare(big, 0.5 * big)
    assert c.norm_manual == math.inf and c.norm_torch == pytest.approx(1e308, rel=RTOL)
    assert c.rel_err == pytest.approx(0.5, rel=RTOL) and c.cosine == pytest.approx(1.0,
                                                                                    rel=RTOL)


def test_a_difference_that_overflows_is_measured():
    # 1e308 − (−1e308) = 2e308 is beyond float64: the norms, rel_err and cosine are not
    a, b = np.array([1e308, 1.0]), np.array([-1e308, 1.0])
    c = compare(a, b)
    assert c.max_abs_diff == math.inf                       # the entry itself: no float64
    _, rel, cos, na, nb = exact(a, b)
    assert (c.rel_err, c.cosine) == (pytest.approx(rel, rel=RTOL), pytest.approx(cos, rel=RTOL))
    assert (c.norm_manual, c.norm_torch) == (pytest.approx(na, rel=RTOL),
                                             pytest.approx(nb, rel=RTOL))
    assert c.rel_err == pytest.approx(2.0, rel=RTOL) and c.cosine == pytest.approx(-1.0, rel=RTOL)


@pytest.mark.parametrize("a, b", [([1.0, 0.0], [1.0, 1e-200]),
                                  ([1e-140, 0.0], [1e-140, 1e-300]),
                                  ([3e250, -2e250], [3e250, -2e250 + 1e100])])
def test_a_difference_far_below_the_gradients_is_measured(a, b):
    # ‖d‖ / ‖g‖ under √tiny: d is scaled by its own magnitude, not the gradients'
    a, b = np.array(a), np.array(b)
    np.testing.assert_allclose(compare(a, b), exact(a, b), rtol=RTOL, atol=0)


def test_a_nan_side_reads_nan_everywhere_and_every_metric_is_a_float():
    for a, b in (([math.nan], [0.0]), ([math.nan, 1.0], [1.0, 1.0])):
        c = compare(np.array(a), np.array(b))
        assert all(type(x) is float for x in c), c
        assert math.isnan(c.rel_err) and math.isnan(c.cosine) and math.isnan(c.norm_manual)


def test_a_finite_side_keeps_its_norm_beside_an_infinite_one():
    c = compare(np.array([math.inf, 1.0]), np.array([1e300, 1e300]))
    assert c.norm_manual == math.inf
    assert c.norm_torch == pytest.approx(math.sqrt(2) * 1e300, rel=RTOL)


def test_non_finite_gradients_propagate():
    c = compare(np.array([math.nan, 1.0]), np.array([1.0, 1.0]))
    assert math.isnan(c.max_abs_diff) and math.isnan(c.norm_manual) and math.isnan(c.rel_err)
    c = compare(np.array([math.inf, 1.0]), np.array([1.0, 1.0]))
    assert c.max_abs_diff == math.inf and c.norm_manual == math.inf


def test_segments_do_not_leak_into_each_other():
    # one tensor equal, its neighbours not: the equal one must still read exactly 0 / 1
    rng = np.random.default_rng(3)
    same = rng.normal(size=(3, 3))
    gm = [rng.normal(size=5), same, rng.normal(size=2)]
    gt = [rng.normal(size=5), same.copy(), rng.normal(size=2)]
    got = compare_many(gm, gt)
    assert got[1] == Comparison(0.0, 0.0, 1.0, got[1].norm_manual, got[1].norm_torch)
    assert got[1].norm_manual == pytest.approx(np.linalg.norm(same), rel=RTOL, abs=0)
    for i in (0, 2):
        np.testing.assert_allclose(got[i], independent(gm[i], gt[i]), rtol=RTOL, atol=0)


def test_float32_inputs_are_measured_exactly_in_float64():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 5)).astype(np.float32)
    b = (a + np.float32(1e-3) * rng.normal(size=a.shape).astype(np.float32)).astype(np.float32)
    got = compare(a, b)
    assert all(isinstance(x, float) for x in got)
    np.testing.assert_allclose(got, independent(a.astype(np.float64), b.astype(np.float64)),
                               rtol=RTOL, atol=0)
    # the float32 difference itself would round: the float64 one is exact for float32 inputs
    assert got.max_abs_diff == float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def test_empty_tensor_is_refused():
    with pytest.raises(ValueError, match="empty gradient tensor"):
        compare_many([np.ones(2), np.ones(0)], [np.ones(2), np.ones(0)])


def test_verdict_boundaries():
    assert VERDICTS == ("exact", "agree", "differ")
    assert verdict(0.0, 0.0, 1e-15) == "exact"
    assert verdict(0.0, 5.0, 1e-15) == "exact"           # bit-identical wins over anything
    assert verdict(1e-17, 1e-15, 1e-15) == "agree"        # at the tolerance: agree
    assert verdict(1e-17, 1.0000001e-15, 1e-15) == "differ"
    assert verdict(1e-17, math.nan, 1e-15) == "differ"    # nan never agrees
