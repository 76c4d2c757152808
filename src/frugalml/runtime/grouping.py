"""Split a batch into length groups, each padded to its longest row.

`padding_groups`: each group is one model call. A call costs a fixed overhead plus work
proportional to rows x padded width; sorting by length and cutting where the padding saved
outweighs one more call's overhead is an exact dynamic programme over the sorted lengths
(O(n * max_rows)), cheap next to the model itself.

`grid_groups`: a fixed number of groups inside one packed call (frugalml.runtime.packed), each an
attention grid of rows x longest; the cuts that make the grids' total area least, by the same
kind of programme (O(groups * n^2)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def padding_groups(lengths: Sequence[int], max_rows: int, call_overhead: float) -> list[np.ndarray]:
    """Row-index groups that minimise sum(call_overhead + rows * longest) over the groups.

    `call_overhead` is one call's fixed cost in token units (how many padded tokens one extra
    call is worth). Groups are contiguous in length order and hold at most `max_rows` rows.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    width = np.asarray(lengths, dtype=np.float64)[order]
    n = len(width)
    best = np.zeros(n + 1)  # best[j]: cost of the first j sorted rows
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_rows), end)
        costs = best[starts] + call_overhead + (end - starts) * width[end - 1]
        choice = int(costs.argmin())
        best[end], cut[end] = costs[choice], starts[choice]
    groups = []
    end = n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def grid_groups(lengths: Sequence[int] | np.ndarray, groups: int) -> list[np.ndarray]:
    """`groups` row-index groups, contiguous in length order, that minimise sum(rows * longest).

    Every group holds a row where there are rows enough; the last groups are empty otherwise.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    width = np.asarray(lengths, dtype=np.float64)[order]
    n, used = len(width), min(groups, len(width))
    best = np.full((used + 1, n + 1), np.inf)  # best[g, j]: the first j sorted rows in g groups
    best[0, 0] = 0.0
    cut = np.zeros((used + 1, n + 1), dtype=np.int64)
    for group in range(1, used + 1):
        for end in range(group, n + 1):
            starts = np.arange(group - 1, end)
            costs = best[group - 1, starts] + (end - starts) * width[end - 1]
            choice = int(costs.argmin())
            best[group, end], cut[group, end] = costs[choice], starts[choice]
    parts = []
    end = n
    for group in range(used, 0, -1):
        parts.append(order[cut[group, end] : end])
        end = int(cut[group, end])
    return parts[::-1] + [order[:0]] * (groups - used)
