"""Active learning: the pool rows most worth a human's time, one literal table of strategies.

Every strategy returns distinct picks: a row whose embedding is within `dup_threshold` cosine
similarity of a labelled row or of an earlier pick is never returned, so a budget is not spent
twice on the same question. Plain functions over arrays; embeddings are L2-normalized vectors.

- margin:  smallest gap between the two most probable classes (uncertainty sampling)
- entropy: highest predictive entropy
- kcenter: greedy k-center (Sener & Savarese 2018): each pick is the row farthest from everything
           labelled or picked so far; needs no model, so it also serves a cold start
- hybrid:  diverse mini-batch (Zhdanov 2019): the `CANDIDATES` x budget lowest-margin rows, grouped
           by k-means weighted by uncertainty into budget clusters, one pick per cluster (the row
           nearest its centre), so a batch is uncertain without being spent on the few confusable
           pairs margin alone keeps returning to
- random:  the baseline every strategy has to beat
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from frugalml.errors import FrugalError

CANDIDATES = 5  # hybrid clusters the 5 x budget most uncertain rows (chosen on BANKING77)
DEFAULT_STRATEGY = "hybrid"  # the fewest labels to the goal on BANKING77 (bench/labelling.py, (d))
CHUNK = 2048  # rows per similarity block: bounds memory at CHUNK x n_labelled floats


@dataclass(frozen=True)
class Strategy:
    name: str
    description: str
    needs_model: bool
    select: Callable[..., np.ndarray]


def suggest(
    strategy: str,
    x_pool: np.ndarray,
    budget: int,
    proba: np.ndarray | None = None,
    x_labelled: np.ndarray | None = None,
    dup_threshold: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Indices into `x_pool` of up to `budget` rows to label, best first.

    `proba` (pool class probabilities from a model trained on the labelled rows) is required by
    the uncertainty strategies; `x_labelled` holds the embeddings of rows already labelled. Fewer
    than `budget` come back only when every remaining row is a near-duplicate.
    """
    chosen = get_strategy(strategy)
    if budget < 1:
        raise FrugalError(f"budget must be at least 1, got {budget}")
    if chosen.needs_model and proba is None:
        raise FrugalError(
            f"strategy {strategy!r} ranks by model uncertainty: it needs labelled rows "
            "(or use 'kcenter' for a cold start)"
        )
    x_pool = _normalized(x_pool)
    x_labelled = _normalized(x_labelled) if x_labelled is not None and len(x_labelled) else None
    return chosen.select(
        x_pool=x_pool,
        budget=budget,
        proba=proba,
        x_labelled=x_labelled,
        dup_threshold=dup_threshold,
        rng=np.random.default_rng(seed),
    )


def margin_scores(proba: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability: small means the model hesitates between two classes."""
    top = np.sort(proba, axis=1)
    return top[:, -1] - top[:, -2]


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    return -(proba * np.log(np.clip(proba, 1e-12, None))).sum(axis=1)


def max_similarity(x: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    """For each row of `x`, its highest cosine similarity to any row of `others` (-1 if none)."""
    if others is None or len(others) == 0:
        return np.full(len(x), -1.0)
    return np.concatenate([(x[i : i + CHUNK] @ others.T).max(axis=1) for i in range(0, len(x), CHUNK)])


def take_distinct(
    order: np.ndarray,
    x_pool: np.ndarray,
    budget: int,
    x_labelled: np.ndarray | None,
    dup_threshold: float,
) -> np.ndarray:
    """The first `budget` rows of `order` that are no near-duplicate of a labelled row or a pick."""
    picked: list[int] = []
    for start in range(0, len(order), CHUNK):
        block = order[start : start + CHUNK]
        block = block[max_similarity(x_pool[block], x_labelled) < dup_threshold]
        for row in block:
            if picked and (x_pool[picked] @ x_pool[row]).max() >= dup_threshold:
                continue
            picked.append(int(row))
            if len(picked) == budget:
                return np.array(picked)
    return np.array(picked, dtype=int)


def kcenter_greedy(
    x_pool: np.ndarray, budget: int, x_labelled: np.ndarray | None, dup_threshold: float
) -> np.ndarray:
    """Farthest-first traversal in cosine distance, starting from the labelled rows.

    With nothing labelled, the first pick is the most typical row (closest to the pool's mean).
    """
    distance = 1.0 - max_similarity(x_pool, x_labelled)  # 2.0, the most there is, with nothing labelled
    if x_labelled is None:  # so the typical row, set above every other, is the first pick
        distance[int(np.argmax(x_pool @ x_pool.mean(axis=0)))] = np.inf
    picked: list[int] = []
    while len(picked) < budget:
        row = int(np.argmax(distance))
        if distance[row] <= 1.0 - dup_threshold:
            break  # everything left is a near-duplicate of something labelled or picked
        picked.append(row)
        distance = np.minimum(distance, 1.0 - x_pool @ x_pool[row])
    return np.array(picked, dtype=int)


def _margin(x_pool, budget, proba, x_labelled, dup_threshold, rng) -> np.ndarray:
    return take_distinct(
        np.argsort(margin_scores(proba), kind="stable"), x_pool, budget, x_labelled, dup_threshold
    )


def _entropy(x_pool, budget, proba, x_labelled, dup_threshold, rng) -> np.ndarray:
    order = np.argsort(-entropy_scores(proba), kind="stable")
    return take_distinct(order, x_pool, budget, x_labelled, dup_threshold)


def _random(x_pool, budget, proba, x_labelled, dup_threshold, rng) -> np.ndarray:
    return take_distinct(rng.permutation(len(x_pool)), x_pool, budget, x_labelled, dup_threshold)


def _kcenter(x_pool, budget, proba, x_labelled, dup_threshold, rng) -> np.ndarray:
    return kcenter_greedy(x_pool, budget, x_labelled, dup_threshold)


def _hybrid(x_pool, budget, proba, x_labelled, dup_threshold, rng) -> np.ndarray:
    if proba is None:  # cold start: no model yet, so diversity alone
        return kcenter_greedy(x_pool, budget, x_labelled, dup_threshold)
    margins = margin_scores(proba)
    order = np.argsort(margins, kind="stable")
    candidates = take_distinct(order, x_pool, CANDIDATES * budget, x_labelled, dup_threshold)
    if len(candidates) <= budget:
        return candidates
    uncertainty = np.clip(1.0 - margins[candidates], 1e-6, None)  # k-means weights must not all be 0
    picked = candidates[centre_rows(x_pool[candidates], uncertainty, budget, int(rng.integers(2**31)))]
    return picked[np.argsort(margins[picked], kind="stable")]  # most uncertain first


def centre_rows(x: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of the rows nearest each centre of a weighted k-means with `k` clusters, no row twice."""
    # Imported here: sklearn takes over a second to load, and every `frugalml` command imports this module.
    from sklearn.cluster import KMeans

    distance = KMeans(k, n_init=1, random_state=seed).fit(x, sample_weight=weights).transform(x)
    taken = np.zeros(len(x), dtype=bool)
    rows = []
    for centre in range(k):
        row = int(np.argmin(np.where(taken, np.inf, distance[:, centre])))
        taken[row] = True
        rows.append(row)
    return np.array(rows)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("margin", "smallest top-1 minus top-2 probability", True, _margin),
        Strategy("entropy", "highest predictive entropy", True, _entropy),
        Strategy("kcenter", "farthest from everything labelled (diversity only)", False, _kcenter),
        Strategy("hybrid", "uncertain rows, one per cluster (k-means)", False, _hybrid),
        Strategy("random", "uniform sample (baseline)", False, _random),
    ]
}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise FrugalError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
