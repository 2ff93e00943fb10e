"""SIGTERM ends handgrad the way Ctrl-C does.

The handler lives in ``core`` so that every layer above it — the CLI, the learner check
(``teaching/check/command.py``) and the sweep (``tools/sweep.py``) — imports it downwards:
no module imports from a layer above its own (docs/design.md, "Dependency direction").
"""

from __future__ import annotations


def raise_interrupt(signum, frame):
    """Signal handler: raise ``KeyboardInterrupt`` where the main thread is, so SIGTERM
    unwinds a run through the same ``except KeyboardInterrupt`` and ``finally`` blocks as
    Ctrl-C (exit 130, a run stopped mid-training marked ``INTERRUPTED``)."""
    raise KeyboardInterrupt
