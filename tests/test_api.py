"""The public Python API: ``from experiments import ...`` gives exactly these names, each the
object its defining module holds, loaded only when first used."""

import importlib
import subprocess
import sys

import pytest

import experiments

# name -> defining module, written out here (not read from the package): a name added,
# dropped, renamed or re-pointed fails this test until the list and the docs are updated.
PUBLIC = [
    ("RunConfig", "experiments.core.config"),
    ("ConfigError", "experiments.core.config"),
    ("load_config", "experiments.core.config"),
    ("initial_params", "experiments.core.init"),
    ("worked_example_params", "experiments.core.init"),
    ("run_experiment", "experiments.core.runner"),
    ("RunResult", "experiments.core.runner"),
    ("write_run", "experiments.output.rundir"),
    ("diagnose", "experiments.core.diagnose"),
    ("diagnose_run", "experiments.core.diagnose_run"),
    ("explain", "experiments.teaching.explain"),
    ("render", "experiments.teaching.explain"),
    ("check_function", "experiments.teaching.check.api"),
    ("check_file", "experiments.teaching.check.api"),
    ("CheckResult", "experiments.teaching.check.api"),
    ("load_reference", "experiments.teaching.reference.load"),
    ("check_reference", "experiments.teaching.reference.check"),
    ("check_reference_file", "experiments.teaching.reference.check"),
    ("run_study", "experiments.teaching.studies"),
    ("run_sweep", "experiments.tools.sweep"),
]


def test_all_is_the_pinned_list_in_order():
    assert experiments.__all__ == [name for name, _ in PUBLIC]


@pytest.mark.parametrize(("name", "home"), PUBLIC)
def test_each_name_is_the_defining_modules_object(name, home):
    assert getattr(experiments, name) is getattr(importlib.import_module(home), name)


def test_star_import_and_dir_give_the_public_names():
    namespace: dict = {}
    exec("from experiments import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == {name for name, _ in PUBLIC}
    assert {name for name, _ in PUBLIC} <= set(dir(experiments))


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'run_experimnet'"):
        experiments.run_experimnet  # noqa: B018
    with pytest.raises(ImportError):
        exec("from experiments import Lockstep", {})   # internal: experiments.core.engine


def test_import_is_lazy():
    """``import experiments`` (which ``handgrad`` does first) loads none of the API's modules;
    the first use of a name loads its module."""
    code = ("import sys, experiments\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('experiments.')"
            " or m in ('torch', 'pandas'))\n"
            "print(loaded)\n"
            "experiments.load_config\n"
            "print('experiments.core.config' in sys.modules, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "True False"]
