"""Datasets by name, with targets encoded for the chosen loss.

Conventions: X is (N, D) float64, C-contiguous, one row per sample. Everything is offline
and deterministic given ``seed``; generated sets draw from ``np.random.default_rng(seed)``
(sklearn's generators get an int derived from it), never from global random state.
``standardize=True`` shifts each feature column to mean 0 and scales it to std 1
(population std, ddof=0); constant columns are only centred (set to 0), never divided by 0.
Targets are never standardized.

Targets are either class labels (the class datasets; a CSV target whose values are all
integers, when ``target_kind`` is "class", or "auto" under bce or cross_entropy: re-indexed
0..C-1 in sorted order of the distinct values, at most MAX_CLASSES) or real values
(worked-2-2-2; any other CSV target: under half_sse and mse whole numbers such as prices
or counts stay values unless target_kind = "class"). ``loss`` fixes how they are encoded:

    targets        loss                 Y                          n_outputs (K)
    C = 2 classes  half_sse, mse, bce   labels as float64 (N, 1)   1
    C > 2 classes  half_sse, mse, bce   one-hot float64 (N, C)     C
    C ≥ 2 classes  cross_entropy        int64 labels (N,)          C
    real values    half_sse, mse        float64 (N, K); CSV K = 1  K
    real values    bce                  as above, only if all in [0, 1]
    real values    cross_entropy        DataError: needs integer class labels

A single class is a DataError under bce and cross_entropy; under half_sse/mse a target with
one distinct value is taken as real-valued (its raw value, shape (N, 1)).
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.config import file_problem

LOSSES = ("half_sse", "mse", "bce", "cross_entropy")
CLASSIFICATION_LOSSES = ("bce", "cross_entropy")


MAX_CLASSES = 1000            # one output unit per class: beyond this it is not a class
MAX_CSV_BYTES = 2 * 2**30     # the whole file is parsed in memory


class DataError(ValueError):
    """Bad data: the message names the file or dataset, what is wrong, and what to do."""


@dataclass(frozen=True)
class Dataset:
    name: str            # "iris", "csv:/path/file.csv", ...
    X: np.ndarray        # (N, D) float64, C-contiguous
    Y: np.ndarray        # (N,) int64 labels for cross_entropy, else (N, K) float64
    n_outputs: int       # K, the network's output width implied by data + loss
    description: str     # one line


# Each loader: seed -> (X (N, D), y, real) with y (N,) integer labels 0..C-1 when
# real is False, or (N, K) real-valued targets when real is True.
Loader = Callable[[int], tuple[np.ndarray, np.ndarray, bool]]


def _seed_set(seed: int):
    X = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]])   # (4, 3)
    return X, np.array([0, 1, 1, 0]), False


def _worked(seed: int):
    return np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]]), True   # (1, 2), (1, 2)


def _xor(seed: int):
    return np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0]), False


def _sklearn_bundled(fn_name: str) -> Loader:
    def load(seed: int):
        import sklearn.datasets  # imported here: `handgrad list` should not pay for it

        X, y = getattr(sklearn.datasets, fn_name)(return_X_y=True)
        return X, y, False
    return load


def _sklearn_state(seed: int) -> int:
    # sklearn wants random_state < 2**32; default_rng accepts any non-negative seed.
    return int(np.random.default_rng(seed).integers(2**32))


def _moons(seed: int):
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=200, noise=0.1, random_state=_sklearn_state(seed))
    return X, y, False


def _circles(seed: int):
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=200, noise=0.05, factor=0.5,
                        random_state=_sklearn_state(seed))
    return X, y, False


# Fixed rule for `sparse` (independent of seed): common features 0, 1 push towards class 1,
# feature 4 against; the rare features 9, 14, 19 decide whenever they appear.
_SPARSE_W = np.zeros(20)
_SPARSE_W[[0, 1, 4, 9, 14, 19]] = [1.0, 1.0, -1.5, 2.0, 2.0, 3.0]


def _sparse(seed: int):
    rng = np.random.default_rng(seed)
    p = np.geomspace(0.3, 0.02, 20)                               # (D,) P(feature j = 1)
    X = (rng.random((200, 20)) < p).astype(np.float64)           # (N, D) ~11% ones
    y = (X @ _SPARSE_W > 0.5).astype(np.int64)                   # (N,) about 45% class 1
    flip = rng.random(200) < 0.05                                 # (N,) 5% label noise
    return X, np.where(flip, 1 - y, y), False


_BUILTIN: dict[str, tuple[Loader, str]] = {
    "seed": (_seed_set, "the seed notebook's 4x3 binary inputs (3rd column constant 1), "
                        "2 classes"),
    "worked-2-2-2": (_worked, "the classic 2-2-2 worked example: one input [0.05, 0.10], "
                              "real targets [0.01, 0.99]"),
    "xor": (_xor, "the XOR truth table, 4x2, 2 classes"),
    "iris": (_sklearn_bundled("load_iris"), "sklearn iris, 150x4, 3 classes"),
    "breast_cancer": (_sklearn_bundled("load_breast_cancer"),
                      "sklearn breast cancer Wisconsin, 569x30, 2 classes "
                      "(also 'breast-cancer')"),
    "digits": (_sklearn_bundled("load_digits"),
               "sklearn 8x8 digits, 1797x64 pixels 0..16, 10 classes"),
    "moons": (_moons, "sklearn make_moons, 200x2, noise 0.1, 2 classes, seeded"),
    "circles": (_circles, "sklearn make_circles, 200x2, noise 0.05, factor 0.5, 2 classes, "
                          "seeded"),
    "sparse": (_sparse, "synthetic sparse binary features, 200x20 (P(1) from 0.3 down to "
                        "0.02), fixed sparse linear rule + 5% label noise, 2 classes, seeded"),
}
_ALIASES = {"breast-cancer": "breast_cancer"}

DATASETS: dict[str, str] = {name: desc for name, (_, desc) in _BUILTIN.items()}
DATASETS["csv:PATH"] = ("your CSV file with a header row and numeric cells; the target is "
                        "the last column unless `target` names another")


def load_dataset(name: str, *, loss: str, seed: int, standardize: bool = False,
                 target: str | None = None, target_kind: str = "auto") -> Dataset:
    """The dataset ``name`` with targets encoded for ``loss`` (see the module docstring).
    ``target_kind`` (csv only): "class", "value", or "auto" — a value for the regression
    losses half_sse and mse, a class label for bce and cross_entropy."""
    if loss not in LOSSES:
        raise DataError(f"unknown loss {loss!r} for dataset {name!r}; "
                        f"use one of {', '.join(LOSSES)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r} "
                        f"(loading dataset {name!r})")
    if name.startswith("csv:"):
        path = name[len("csv:"):]
        if not path:
            raise DataError("dataset 'csv:' needs a path after the colon, "
                            "e.g. csv:data/train.csv")
        X, y, target = _read_csv(path, target)
        where = f"column {target!r} of {path}"
        whole = np.array_equal(y, np.round(y))                   # y (N,)
        if target_kind == "class" and not whole:
            raise DataError(f"target_kind = \"class\" but {where} holds non-integer values; "
                            f"use target_kind = \"value\"")
        regression = loss in ("half_sse", "mse")
        real = not whole or target_kind == "value" or (target_kind == "auto" and regression)
        Y, K, what = _encode(y[:, None] if real else y, loss, where, real)
        description = (f"{path}: {X.shape[0]} rows, {X.shape[1]} features, "
                       f"target {target!r} ({what})")
    else:
        key = _ALIASES.get(name, name)
        if key not in _BUILTIN:
            choices = [*_BUILTIN, *_ALIASES, "csv:PATH"]
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(f"unknown dataset {name!r}; {hint}available: {', '.join(choices)}")
        if target is not None:
            raise DataError(f"target={target!r} applies only to csv:PATH datasets, "
                            f"not to {key!r}; leave it unset")
        loader, description = _BUILTIN[key]
        name = key
        X, y, real = loader(int(seed))
        Y, K, _ = _encode(y, loss, f"dataset {key!r}", real)
    X = np.asarray(X, dtype=np.float64)         # (N, D)
    if standardize:
        X = _standardize(X)
    return Dataset(name=name, X=np.ascontiguousarray(X), Y=np.ascontiguousarray(Y),
                   n_outputs=K, description=description)


def _encode(y: np.ndarray, loss: str, where: str, real: bool):
    """(Y, n_outputs, short text) for ``loss``: y (N,) integer labels or (N, K) real values."""
    if not real:
        classes, labels = np.unique(y, return_inverse=True)     # labels (N,) in 0..C-1
        C = len(classes)
        if C > MAX_CLASSES:
            raise DataError(f"{where} has {C:,} distinct values: more than {MAX_CLASSES} "
                            f"classes (one output each); if it is a quantity, set "
                            f"target_kind = \"value\" and use half_sse or mse")
        if C >= 2:
            what = f"{C} classes"
            if loss == "cross_entropy":
                return labels.astype(np.int64), C, what          # (N,)
            if C == 2:
                return labels.astype(np.float64)[:, None], 1, what   # (N, 1)
            return np.eye(C)[labels], C, what                    # (N, C) one-hot
        if loss in CLASSIFICATION_LOSSES:
            raise DataError(f"{where} has a single class (value {classes[0]:g}); {loss} needs "
                            f"at least 2 classes: add rows of another class, or use "
                            f"half_sse or mse")
        y = y.astype(np.float64)[:, None]       # (N, 1) one value: taken as real-valued
    y = np.asarray(y, dtype=np.float64)         # (N, K)
    if loss == "cross_entropy":
        raise DataError(f"cross_entropy needs integer class labels in {where}, which holds "
                        f"real values; use half_sse, mse or bce")
    if loss == "bce" and (y.min() < 0 or y.max() > 1):
        raise DataError(f"bce needs targets in [0, 1], but {where} has values in "
                        f"[{y.min():g}, {y.max():g}]; rescale them or use half_sse or mse")
    return y, y.shape[1], "real-valued"


def _standardize(X: np.ndarray) -> np.ndarray:
    """Each column to mean 0, std 1 (ddof=0); constant columns become exactly 0."""
    constant = X.max(axis=0) == X.min(axis=0)                    # (D,) exact test
    # Scale each column by a power of two first: exact, so the result is the textbook
    # one, but sums of values near 1e308 can no longer overflow to inf.
    _, e = np.frexp(np.abs(X).max(axis=0))                        # (D,) max|x| < 2**e
    X = np.ldexp(X, -e)                                           # (N, D) |x| < 1
    mu = X.mean(axis=0)                                           # (D,)
    sd = np.where(constant, 1.0, X.std(axis=0))                  # (D,) never 0
    Z = (X - mu) / sd                                             # (N, D)
    Z[:, constant] = 0.0   # X − mean(X) can leave rounding dust in a constant column
    return Z


def _short(text: str, limit: int = 40) -> str:
    """repr of a cell or name, cut to ``limit`` characters, so a message stays one line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _columns(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(_short(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _records(path: str) -> tuple[list[list[str]], list[int]]:
    """The CSV's non-blank records and the line each ends on (one clear error if unreadable)."""
    file = Path(path)
    what = file_problem(file, MAX_CSV_BYTES)
    if what:
        raise DataError(f"CSV file {path} {what}; give the path of a .csv file, "
                        f"as csv:PATH")
    rows, lines = [], []
    try:
        with file.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                if len(row) > 1 or (row and row[0].strip()):     # skip blank lines
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"CSV file {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                        f"save it as UTF-8 CSV") from None
    except (csv.Error, OSError) as e:
        raise DataError(f"cannot read CSV file {path}: {e}; check that it is a "
                        f"comma-separated text file") from None
    return rows, lines


def _read_csv(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """X (N, D) float64, y (N,) float64 and the target's name from a CSV with a header row.

    Tokenised with the csv module rather than pandas.read_csv: pandas pads short rows with
    empty cells, silently drops the extra fields when every row is long, and counts
    whitespace-only lines as rows, so it cannot say which *line* is wrong. Cells are
    converted with pandas.to_numeric.
    """
    rows, lines = _records(path)
    if not rows:
        raise DataError(f"CSV file {path} is empty; it needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    data, lines = rows[1:], lines[1:]
    for j, h in enumerate(header):
        if not h:
            raise DataError(f"column {j + 1} of the header of {path} has no name; "
                            f"name every column")
        if h in header[:j]:
            raise DataError(f"column name {_short(h)} appears twice in the header of {path}; "
                            f"column names must be unique")
    if all(_is_number(h) for h in header):
        raise DataError(f"the first row of {path} is all numbers, so it has no header row; "
                        f"add a header row naming the columns")
    for row, line in zip(data, lines, strict=True):
        if len(row) != len(header):
            raise DataError(f"ragged rows in {path}: line {line} has {len(row)} fields but "
                            f"the header has {len(header)}; make every row as wide as the "
                            f"header")
    if not data:
        raise DataError(f"CSV file {path} has a header but no data rows; add at least 2 rows")
    if len(data) < 2:
        raise DataError(f"CSV file {path} has only 1 data row; it needs at least 2")

    target = header[-1] if target is None else target
    if target not in header:
        close = difflib.get_close_matches(target, header, n=1)
        hint = f"did you mean {_short(close[0])}? " if close else ""
        raise DataError(f"target column {_short(target)} is not in {path}; {hint}"
                        f"columns are: {_columns(header)}")
    if len(header) < 2:
        raise DataError(f"CSV file {path} has only the target column {_short(target)}; "
                        f"it needs at least one feature column")

    cells = pd.DataFrame(data, columns=header)                   # (N, D + 1) strings
    values = cells.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)   # (N, D + 1)
    bad = np.argwhere(~np.isfinite(values))                      # row-major: first bad row
    if len(bad):
        i, j = bad[0]
        cell = data[i][j]
        if not cell.strip():
            problem = "missing value"
        elif _is_number(cell):
            problem = f"non-finite value {_short(cell)} (NaN or inf)"
        else:
            problem = f"non-numeric value {_short(cell)}"
        raise DataError(f"{problem} in column {_short(header[j])} of {path}, line "
                        f"{lines[i]}; every cell must be a finite number")
    t = header.index(target)
    X = np.delete(values, t, axis=1)                             # (N, D)
    return X, values[:, t].copy(), target                       # (N, D), (N,)


def _is_number(text: str) -> bool:
    """Whether pandas reads ``text`` as a number, NaN and ±inf included."""
    value = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
    return not np.isnan(value) or text.strip().lower() in ("nan", "+nan", "-nan")
