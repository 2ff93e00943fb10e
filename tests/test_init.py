"""experiments.core.init: the one shared initialisation (the seed script's legacy-rand and
the worked example's published weights are pinned in test_reference_cases; bad files
through the CLI in test_reliability)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments.core.init import InitError, initial_params, load_params_file, uniform_params

SIZES = (3, 5, 2)


def test_uniform_is_torch_linear_default_in_state_dict_layout():
    p = uniform_params(SIZES, True, np.random.default_rng(0))
    assert list(p) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert p["layers.0.weight"].shape == (5, 3) and p["layers.1.bias"].shape == (2,)
    for key, fan_in in (("layers.0", 3), ("layers.1", 5)):
        bound = 1 / math.sqrt(fan_in)                  # U(−1/√fan_in, 1/√fan_in)
        for part in ("weight", "bias"):
            v = p[f"{key}.{part}"]
            assert np.all(np.abs(v) < bound), (key, part)
    # a larger draw fills the interval (so the bound above is not met by chance)
    w = uniform_params((400, 1), False, np.random.default_rng(1))["layers.0.weight"]
    assert w.max() > 0.9 / 20 and w.min() < -0.9 / 20


def test_uniform_comes_from_the_generator_only():
    a = initial_params("uniform", SIZES, True, np.random.default_rng(7), 0)
    b = initial_params("uniform", SIZES, True, np.random.default_rng(7), 99)   # seed unused
    c = initial_params("uniform", SIZES, True, np.random.default_rng(8), 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["layers.0.weight"], c["layers.0.weight"])


def test_parameter_files_npz_and_json(tmp_path):
    p = uniform_params(SIZES, False, np.random.default_rng(0))
    np.savez(tmp_path / "p.npz", **p)
    (tmp_path / "p.json").write_text(json.dumps({k: v.tolist() for k, v in p.items()}))
    for name in ("p.npz", "p.json"):
        got = initial_params(str(tmp_path / name), SIZES, False, np.random.default_rng(0), 0)
        assert list(got) == list(p)
        for k in p:
            np.testing.assert_array_equal(got[k], p[k])     # JSON floats round-trip exactly
    (tmp_path / "p.txt").write_text("{}")
    with pytest.raises(InitError, match=r"unknown format; use \.npz or \.json"):
        load_params_file(tmp_path / "p.txt")


def test_unknown_scheme_suggests_the_closest():
    with pytest.raises(InitError, match="unknown init 'unifrom': did you mean 'uniform'"):
        initial_params("unifrom", SIZES, True, np.random.default_rng(0), 0)


def test_legacy_rand_seed_range():
    with pytest.raises(InitError, match=r"needs seed in \[0, 2\*\*32\)"):
        initial_params("legacy-rand", SIZES, False, np.random.default_rng(0), 2**32)
