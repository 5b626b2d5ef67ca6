"""The pruning engine on the embedded SmolLM2 (real weights, rotary attention, 30 blocks). Slow.

Set NEURONSCOPE_DATA_DIR to a shared folder (e.g. /tmp/ns-embedded-data) to reuse the converted model.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from tests.support.pruning_reference import outputs, reference_metrics, zeroed_copy

from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated, hook_count
from neuronscope.analysis.ablation_engine import ablation_sweep
from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager

pytestmark = pytest.mark.slow

TEXTS = ["The capital of France is Paris.", "Machine learning is fascinating"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    data_dir = os.environ.get("NEURONSCOPE_DATA_DIR") or tmp_path_factory.mktemp("embedded-data")
    return ModelManager(Settings.from_env(data_dir=data_dir, offline=True)).ensure_loaded()


def test_impact_metrics_equal_zeroed_weights(embedded):
    ids = [encode(embedded.tokenizer, t) for t in TEXTS]
    ablation = {20: [3, 100, 1000, 1535]}
    got = ablation_sweep(embedded.adapter, ids, [ablation], with_logits=True).results()[0]
    pruned = zeroed_copy(embedded.model, embedded.adapter, ablation)
    expected = reference_metrics(outputs(embedded.model, ids), outputs(pruned, ids), ids)
    for key in ("impact_score", "mean_change", "max_change", "kl_divergence", "loss_delta"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5, rel=1e-5), key
    assert hook_count(embedded.model) == 0


def test_batched_sweep_equals_one_at_a_time_loop(embedded):
    ids = [encode(embedded.tokenizer, t) for t in TEXTS]
    layer, neurons = 20, [0, 7, 512, 1200, 1535]
    got = ablation_sweep(embedded.adapter, ids, [{layer: [n]} for n in neurons]).impact_scores().numpy()
    clean = [run(embedded.model, t).final_hidden for t in ids]
    expected = []
    for n in neurons:
        with ablated(embedded.adapter, layer, [n]):
            ratios = [((run(embedded.model, t).final_hidden - h).norm(dim=-1) / h.norm(dim=-1)) for t, h in zip(ids, clean)]
        expected.append(float(np.concatenate([r.numpy() for r in ratios]).mean()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
