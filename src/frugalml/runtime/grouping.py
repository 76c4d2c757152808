"""Split a batch into length groups: each group is one model call, padded to its longest row.

A model call costs a fixed overhead plus work proportional to rows x padded width. Sorting by
length and cutting where the padding saved outweighs one more call's overhead is an exact dynamic
programme over the sorted lengths (O(n * max_rows)), cheap next to the model itself.
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
