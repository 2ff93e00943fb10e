"""Fixtures shared by the runner, run-directory and schema tests, and how ``pytest -n 2``
hands the tests to its two xdist workers.

xdist's default (``--dist load``) deals the tests out one by one, so a module-scoped
fixture is built on both workers, and again each time a worker comes back to its module
(test_studies.py's five studies were built three or four times a run). Here, with plain
``-n N`` (``--dist load``), a module that defines a module-scoped fixture goes to one
worker as a whole, in collection order; every other test is still handed out on its own.
The collection puts the tests marked ``slow`` first (the docs run in order, minutes in one
test), then those whole modules, then the rest: the long, indivisible pieces start first
and the many short tests fill in at the end. Neither changes what any test does; without
``-n`` only the order changes.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from experiments.core.config import load_config
from experiments.core.runner import run_experiment
from experiments.output.rundir import write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory):
    """``(result, run directory)`` of a small mini-batch run, written without plots: iris,
    batch 32 (5 steps per epoch, the last batch 22), 2 epochs, momentum 0.9, float64,
    logged every 4 steps -> steps 0, 4, 8, 9."""
    r = run_experiment(load_config("iris", [
        "hidden=[4]", "batch_size=32", "epochs=2", "steps=0", "log_every=4", "fd_every=0",
        "momentum=0.9", "dtype=float64"]))
    return r, write_run(r, tmp_path_factory.mktemp("iris") / "iris", plots=False)


# -- the order of the tests, and xdist's workers ------------------------------------------

@functools.cache
def shares_a_fixture(module: str) -> bool:
    """Whether the test module ``module`` (a path from the root) defines a module-scoped
    fixture. Read from its text: xdist's controller, which deals the tests out, sees only
    their node ids, never the collected tests."""
    try:
        text = (ROOT / module).read_text(encoding="utf-8")
    except OSError:          # node ids from another root (--rootdir): xdist's own dealing
        return False
    return re.search(r"""scope\s*=\s*["']module["']""", text) is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    # a module that shares a fixture moves as one piece: slow if any of its tests is
    slow_modules = {module(i) for i in items if i.get_closest_marker("slow") is not None
                    and shares_a_fixture(module(i))}

    def later(item: pytest.Item) -> tuple[bool, bool]:
        shared = shares_a_fixture(module(item))
        slow = module(item) in slow_modules if shared else \
            item.get_closest_marker("slow") is not None
        return not slow, not shared
    items.sort(key=later)                                   # stable: else as collected


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist load`` (what ``-n N`` means): a module that shares a fixture is one piece
    of work, any other test is one; handed out in collection order."""
    if config.getoption("dist") != "load":
        return None                               # --dist loadscope, worksteal ...: xdist's
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        # _split_scope is LoadScopeScheduling's hook for a test's scope (pytest-xdist 3.8;
        # loadscopereorder, below, is 3.8's too: pyproject asks for >= 3.8)
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if shares_a_fixture(module) else nodeid

    config.option.loadscopereorder = False     # the collection's order, not by size
    return SharedFixtureScheduling(config, log)
