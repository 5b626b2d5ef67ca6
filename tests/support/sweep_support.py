"""Comparing sweep results across executors and chunkings."""

from __future__ import annotations

import numpy as np

from neuronscope.storage.index import ActivationIndex

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "Neurons fire on some tokens and stay quiet on others.",
    "One, two, three, four, five.",
]
SCORE_FIELDS = ("activation_magnitude", "activation_variance", "impact_score", "mean_change", "max_change")


def assert_same_scores(got: list[dict], expected: list[dict], atol: float = 1e-6) -> None:
    """Importance rows equal: same neurons in the same order, every number within ``atol``."""
    assert [(r["layer_index"], r["neuron_index"]) for r in got] == [(r["layer_index"], r["neuron_index"]) for r in expected]
    for field in SCORE_FIELDS:
        if field in expected[0]:
            np.testing.assert_allclose([r[field] for r in got], [r[field] for r in expected], rtol=0, atol=atol, err_msg=field)


def index_contents(index: ActivationIndex, model: str, layer_sizes: list[int]) -> dict:
    """Every neuron's stored top list as (activation, source name, position) triples."""
    return {
        (layer, neuron): [(hit.activation, hit.source.name, hit.position) for hit in index.top(model, layer, neuron, index.depth)]
        for layer, size in enumerate(layer_sizes)
        for neuron in range(size)
    }


def assert_same_index(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, hits in expected.items():
        assert [(name, pos) for _, name, pos in got[key]] == [(name, pos) for _, name, pos in hits], key
        np.testing.assert_allclose([a for a, _, _ in got[key]], [a for a, _, _ in hits], rtol=0, atol=1e-6)
