"""Top token positions by a cluster's mean activation, found from its neurons' top lists.

The index keeps only each neuron's top ``depth`` positions, so a cluster's mean activation at a
position is known only after recomputing it. The candidates are the positions in any member's
list; a position missing from member n's full list has an activation of at most n's lowest listed
value (its floor), which bounds every candidate's mean from above, and bounds every position in
no list by the mean of the floors. Sources are rescored in the order of their best bound until
the k-th exact score beats every remaining bound (a threshold algorithm); the answer is then the
exact top k over everything indexed, or the exact top k among the candidates when some position
in no list could still score higher.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class NeuronList:
    """One member neuron's top list: ``values``, ``sources``, ``positions`` ``[<=depth]``, best first."""

    values: np.ndarray
    sources: np.ndarray
    positions: np.ndarray
    full: bool

    @property
    def floor(self) -> float:
        """Upper bound of the neuron's activation at any position outside its list."""
        return float(self.values.min()) if self.full and len(self.values) else -np.inf


@dataclass(frozen=True)
class RankedPosition:
    score: float
    source: int
    position: int


@dataclass(frozen=True)
class ClusterRanking:
    """Result: the ``top`` positions by exact mean activation, best first.

    ``exact``: no indexed position outside ``top`` scores higher than its last entry.
    ``outside_bound``: bound of the mean at positions in no member's list.
    """

    top: list[RankedPosition]
    exact: bool
    outside_bound: float
    candidates: int
    sources_rescored: int


def candidate_bounds(lists: Sequence[NeuronList]) -> dict[tuple[int, int], float]:
    """Upper bound of the cluster's mean activation at each listed ``(source, position)``."""
    floors = np.array([member.floor for member in lists])
    excess: dict[tuple[int, int], float] = {}
    for member, floor in zip(lists, floors):
        for value, source, position in zip(member.values, member.sources, member.positions):
            key = (int(source), int(position))
            excess[key] = excess.get(key, 0.0) + (float(value) - floor if np.isfinite(floor) else float(value))
    base = floors[np.isfinite(floors)].sum()
    return {key: (base + extra) / len(lists) for key, extra in excess.items()}


def rank_cluster_positions(
    lists: Sequence[NeuronList],
    score_sources: Callable[[list[int]], Mapping[int, np.ndarray]],
    top_k: int,
    *,
    indexed_sources: int,
    chunk: int = 32,
    max_sources: int = 1024,
) -> ClusterRanking:
    """Exact top-``top_k`` positions by the cluster's mean activation (see the module docstring).

    ``score_sources(ids)`` returns, per source id, the exact mean activation of the cluster at every
    position ``[len]`` (NaN where a position is not indexable). ``indexed_sources`` counts all
    sources indexed for the model; at most ``max_sources`` are rescored.
    """
    bounds = candidate_bounds(lists)
    outside = float(np.mean([member.floor for member in lists]))
    best_by_source: dict[int, float] = {}
    for (source, _), bound in bounds.items():
        best_by_source[source] = max(bound, best_by_source.get(source, -np.inf))
    order = sorted(best_by_source, key=lambda s: (-best_by_source[s], s))
    heap: list[tuple[float, int, int]] = []  # min-heap of (score, -source, -position): ties favour early positions
    done = 0
    while done < len(order) and done < max_sources:
        batch = order[done : min(done + chunk, max_sources, len(order))]
        for source, scores in score_sources(batch).items():
            for position, score in enumerate(scores.tolist()):
                if not np.isnan(score):
                    item = (score, -source, -position)
                    (heapq.heappush if len(heap) < top_k else heapq.heappushpop)(heap, item)
        done += len(batch)
        kth = heap[0][0] if len(heap) == top_k else -np.inf
        if done < len(order) and kth >= best_by_source[order[done]]:
            break
    kth = heap[0][0] if len(heap) == top_k else -np.inf
    remaining = best_by_source[order[done]] if done < len(order) else -np.inf
    exact = done == indexed_sources or kth >= max(remaining, outside)
    top = [RankedPosition(score, -source, -position) for score, source, position in sorted(heap, reverse=True)]
    return ClusterRanking(top, exact, outside, len(bounds), done)
