"""Length grouping of a batch (the padding-vs-calls trade-off) and its use by the predictors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from frugalml.runtime.grouping import grid_groups, padding_groups


def _cost(lengths, groups, overhead):
    return sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)


def _best_cost(lengths, max_rows, overhead):
    """Brute force over every way to cut the sorted lengths into contiguous groups."""
    ordered = sorted(lengths)
    n = len(ordered)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        parts = [ordered[a:b] for a, b in itertools.pairwise(bounds)]
        if all(len(p) <= max_rows for p in parts):
            best = min(best, sum(overhead + len(p) * max(p) for p in parts))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_groups_partition_the_rows_and_are_optimal(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, size=9).tolist()
    groups = padding_groups(lengths, max_rows=4, call_overhead=20)
    assert sorted(np.concatenate(groups).tolist()) == list(range(9))
    assert all(len(g) <= 4 for g in groups)
    assert _cost(lengths, groups, 20) == _best_cost(lengths, 4, 20)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("groups", [1, 2, 3])
def test_grid_groups_are_the_least_area_cut(seed, groups):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, size=8).tolist()
    parts = grid_groups(lengths, groups)
    assert len(parts) == groups and all(len(part) for part in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(8))
    # Least total grid area over every cut into at most `groups` groups (none is better with fewer).
    ordered = sorted(lengths)
    best = min(
        sum(len(part) * max(part) for part in (ordered[a:b] for a, b in itertools.pairwise((0, *cuts, 8))))
        for cuts in itertools.combinations(range(1, 8), groups - 1)
    )
    assert _cost(lengths, parts, 0) == best


def test_grid_groups_leave_the_last_groups_empty_when_rows_are_few():
    parts = grid_groups([7, 3], 4)
    assert [part.tolist() for part in parts] == [[1], [0], [], []]
    assert [part.tolist() for part in grid_groups([], 2)] == [[], []]


def test_overhead_decides_between_padding_and_calls():
    lengths = [5, 5, 6, 30, 31]
    assert len(padding_groups(lengths, 64, call_overhead=1e9)) == 1  # calls dear: one padded call
    free_calls = padding_groups(lengths, 64, call_overhead=0)
    assert [sorted(lengths[i] for i in g) for g in free_calls] == [[5, 5], [6], [30], [31]]
    split = padding_groups(lengths, 64, call_overhead=20)  # 3 x 25 padding saved > one more call
    assert [sorted(lengths[i] for i in g) for g in split] == [[5, 5, 6], [30, 31]]
