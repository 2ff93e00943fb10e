"""Whether torch's autograd ran in the learner's process: the runtime half of the
``autograd`` integrity flag (its other half reads the source: ``check.integrity``).

Every backward pass torch runs — ``Tensor.backward()``, ``torch.autograd.grad``,
``torch.func.grad`` and ``vjp`` (which call ``torch.autograd.grad``) — goes through
``torch.autograd.graph._engine_run_backward``. ``install()`` puts a finder first on
``sys.meta_path`` that, when the learner's code first imports ``torch.autograd.graph``
(and ``torch.autograd``, which imports that name from it), wraps the function in a counter;
``runs()`` is the count. Nothing is imported here: a learner who never imports torch pays
nothing, and torch is never loaded for them.

It is a hint for the teacher, never a proof: the learner's code runs in the same process
and could undo the wrapper (the source flag and the exact-0 flag stand beside it).
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder

WATCHED = ("torch.autograd.graph", "torch.autograd")   # graph first: __init__ imports from it
_runs = 0


def runs() -> int:
    """Backward passes torch's autograd engine ran in this process since ``install``."""
    return _runs


def _counted(fn):
    def counted(*args, **kwargs):
        global _runs
        _runs += 1
        return fn(*args, **kwargs)
    counted.handgrad_counted = True
    return counted


def _wrap(module) -> None:
    fn = getattr(module, "_engine_run_backward", None)
    if callable(fn) and not getattr(fn, "handgrad_counted", False):
        module._engine_run_backward = _counted(fn)


class _Watch(MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the finders after it, and has the
    module wrapped once its loader has run it."""

    def find_spec(self, name, path, target=None):
        if name not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module):
            run(module)
            _wrap(module)

        loader.exec_module = exec_module   # this module's own loader instance
        return spec


def install() -> None:
    """Watch from now on (the learner's process, before the learner's code is loaded)."""
    if not any(isinstance(f, _Watch) for f in sys.meta_path):
        sys.meta_path.insert(0, _Watch())
    for name in WATCHED:   # already imported (not in the learner's process): wrap now
        if name in sys.modules:
            _wrap(sys.modules[name])
