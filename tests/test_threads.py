"""experiments.core.threads: ``limited_threads`` sets torch's and every BLAS pool's thread
count for a block and restores them after, also when the block raises."""

from __future__ import annotations

import pytest
import torch

from experiments.core.threads import limited_threads, thread_counts


@pytest.fixture
def two_threads():
    """Start from 2 torch threads, so a limit of 1 is a visible change."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield thread_counts()
    torch.set_num_threads(before)


def test_limit_inside_and_restore_after(two_threads):
    assert two_threads["torch"] == 2
    assert two_threads["blas"], "no BLAS pool found: the limit below would check nothing"
    with limited_threads(1):
        inside = thread_counts()
        assert inside["torch"] == 1
        assert set(inside["blas"].values()) == {1}
    assert thread_counts() == two_threads


def test_restored_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError, match="inside"), limited_threads(1):
        raise RuntimeError("inside")
    assert thread_counts() == two_threads
