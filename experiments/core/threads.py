"""Thread counts for torch and BLAS. handgrad's networks are small: a second thread buys
nothing on them, and on a loaded machine thread contention made a training step about 20×
slower in a measurement here (benchmarks/runner_overhead.py measures with one thread)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def limited_threads(n: int = 1) -> Iterator[None]:
    """torch's intra-op threads and every BLAS pool (threadpoolctl) at ``n`` for the block,
    restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def thread_counts() -> dict:
    """What the process runs with now: torch's intra-op threads and each BLAS pool's."""
    import torch
    from threadpoolctl import threadpool_info

    return {"torch": torch.get_num_threads(),
            "blas": {i.get("internal_api", i["prefix"]): i["num_threads"]
                     for i in threadpool_info() if i.get("user_api") == "blas"}}
