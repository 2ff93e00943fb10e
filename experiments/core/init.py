"""The one shared initialisation: a parameter dict made once, then copied into both sides.

Schemes (config key ``init``):
    uniform       W, b ~ U(−1/√fan_in, 1/√fan_in), torch.nn.Linear's default, drawn from
                  the run's ``numpy.random.Generator``.
    legacy-rand   the seed script's weights: ``np.random.seed(seed)``, then per layer
                  ``np.random.rand(n_in, n_out)`` laid out (in, out) — its transpose is
                  ``layers.{i}.weight``; biases 0. Uses a private ``RandomState(seed)``,
                  which yields the same stream as the global seed without touching it.
    worked-2-2-2  the classic worked example's published weights and biases.
    PATH          a ``.npz`` or ``.json`` file holding the parameter dict itself.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from pathlib import Path

import numpy as np

from experiments.core.config import file_problem
from manual.network import parameter_shapes

SCHEMES = ("uniform", "legacy-rand", "worked-2-2-2")


class InitError(ValueError):
    """A parameter file or scheme that cannot initialise the requested network."""


def uniform_params(sizes, bias, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """torch.nn.Linear's default distribution, drawn from ``rng`` layer by layer."""
    params = {}
    for key, shape in parameter_shapes(sizes, bias).items():
        fan_in = sizes[int(key.split(".")[1])]
        bound = 1.0 / np.sqrt(fan_in)
        params[key] = rng.uniform(-bound, bound, size=shape)
    return params


def legacy_rand_params(sizes, bias, seed: int) -> dict[str, np.ndarray]:
    """``np.random.seed(seed); np.random.rand(n_in, n_out)`` per layer, as the seed script."""
    if not 0 <= seed < 2**32:
        raise InitError(f"init 'legacy-rand' needs seed in [0, 2**32), got {seed} "
                        f"(numpy's legacy RandomState)")
    legacy = np.random.RandomState(seed)  # same stream as np.random.seed(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        params[f"layers.{i}.weight"] = legacy.rand(n_in, n_out).T.copy()  # (out, in)
        if bias is not False:
            params[f"layers.{i}.bias"] = np.zeros(n_out)
    return params


def worked_example_params(bias=True) -> dict[str, np.ndarray]:
    """w1..w8 = 0.15 ... 0.55; hidden bias 0.35, output bias 0.60 (a 2-2-2 network).

    w1, w2 feed h1 from i1, i2; w3, w4 feed h2; w5, w6 feed o1 from h1, h2; w7, w8 feed o2.
    As (out, in) matrices: layers.0.weight = [[w1, w2], [w3, w4]], and so on.
    """
    params = {
        "layers.0.weight": np.array([[0.15, 0.20], [0.25, 0.30]]),
        "layers.0.bias": np.array([0.35, 0.35]),
        "layers.1.weight": np.array([[0.40, 0.45], [0.50, 0.55]]),
        "layers.1.bias": np.array([0.60, 0.60]),
    }
    if bias is False:
        del params["layers.0.bias"], params["layers.1.bias"]
    return params


def load_params_file(path: str | Path, expected: dict | None = None) -> dict[str, np.ndarray]:
    """A parameter dict from ``.npz`` (arrays by key) or ``.json`` ({key: nested lists}).

    With ``expected`` ({key: shape}) a ``.npz`` is checked from its array headers before
    any data is read (an extra or oversized array is never loaded), and a ``.json`` file may
    hold at most about 64 bytes per expected number."""
    path = Path(path)
    n = sum(int(np.prod(s)) for s in expected.values()) if expected else 10**7
    problem = file_problem(path, MAX_NPZ_HEADER_SLACK + 64 * n)
    if problem:
        raise InitError(f"init file {path} {problem}; give a .npz or .json parameter file")
    try:
        if path.suffix == ".npz":
            return _read_npz(path, expected)
        if path.suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise InitError(f"{path}: expected a JSON object {{key: nested list}}")
            return {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    except InitError:
        raise
    except RecursionError:
        raise InitError(f"{path}: nested too deeply to be a parameter file (a weight is a "
                        f"list of lists)") from None
    except (ValueError, OSError, TypeError, OverflowError, zipfile.BadZipFile,
            KeyError, UnicodeDecodeError) as err:
        raise InitError(f"{path}: cannot read parameters ({_first_line(err)})") from None
    raise InitError(f"init file {path}: unknown format; use .npz or .json")


MAX_NPZ_HEADER_SLACK = 1_000_000    # bytes a file may hold beyond its numbers


def _read_npz(path: Path, expected: dict | None) -> dict[str, np.ndarray]:
    """Check every member's header (name, real dtype, shape) before loading any data."""
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            key = member.removesuffix(".npy")
            if expected is not None and key not in expected:
                raise InitError(f"{path}: unexpected array {key!r}; a parameter file holds "
                                f"exactly {sorted(expected)}")
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f)
            if dtype.kind not in "fiu":
                raise InitError(f"{path}: {key} has dtype {dtype}; parameters must be real "
                                f"numbers (float or int)")
            if expected is not None and tuple(shape) != tuple(expected[key]):
                raise InitError(f"{path}: {key} has shape {tuple(shape)}, expected "
                                f"{tuple(expected[key])}")
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k], dtype=np.float64) for k in data.files}


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def initial_params(scheme: str, sizes, bias, rng: np.random.Generator, seed: int):
    """The run's initial parameter dict, checked against the network's keys and shapes."""
    if scheme == "uniform":
        params = uniform_params(sizes, bias, rng)
    elif scheme == "legacy-rand":
        params = legacy_rand_params(sizes, bias, seed)
    elif scheme == "worked-2-2-2":
        params = worked_example_params(bias)
    elif Path(scheme).suffix in (".npz", ".json") or Path(scheme).exists():
        params = load_params_file(scheme, parameter_shapes(sizes, bias))
    else:
        import difflib
        close = difflib.get_close_matches(scheme, SCHEMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InitError(f"unknown init {scheme!r}: {hint}use one of {list(SCHEMES)} or a path "
                        f"to a .npz/.json parameter file")
    expected = parameter_shapes(sizes, bias)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    where = f"init {scheme!r}"
    if missing or extra:
        raise InitError(f"{where}: parameter keys do not match sizes {list(sizes)}, bias={bias}: "
                        f"missing {missing}, unexpected {extra}")
    for key, shape in expected.items():
        if params[key].shape != shape:
            raise InitError(f"{where}: {key} has shape {params[key].shape}, expected {shape} "
                            f"for sizes {list(sizes)}")
        if not np.all(np.isfinite(params[key])):
            raise InitError(f"{where}: {key} contains NaN or inf")
    return {k: params[k] for k in expected}
