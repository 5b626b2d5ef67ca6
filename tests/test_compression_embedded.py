"""Real pruning on the embedded SmolLM2 (slow): removal equals ablation, unequal sizes reload."""

import pytest
import torch

from neuronscope.analysis.hooks import ablated_many, hook_count
from neuronscope.analysis.pruning_plan import random_scores, select_neurons
from neuronscope.analysis.surgery import pruned_copy
from neuronscope.modeling import loading

pytestmark = pytest.mark.slow


def test_global_removal_equals_ablation_and_reloads(embedded_manager, tmp_path):
    with embedded_manager.use() as lm:
        adapter = lm.adapter
        sizes = {layer: adapter.d_mlp(layer) for layer in range(adapter.n_layers)}
        removed = select_neurons(random_scores(sizes, seed=1), 0.2, "global")
        assert len({len(v) for v in removed.values()}) > 1, "a global plan should leave unequal layer sizes"
        ids = lm.tokenizer("The capital of France is Paris, and the capital of Italy is", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            with ablated_many(adapter, removed):
                ablated = lm.model(input_ids=ids).logits
            pruned = pruned_copy(lm.model, removed)
            smaller = pruned(input_ids=ids).logits
        torch.testing.assert_close(smaller, ablated, atol=1e-4, rtol=0)
        assert hook_count(lm.model) == 0

        pruned.save_pretrained(tmp_path / "pruned")
        lm.tokenizer.save_pretrained(tmp_path / "pruned")
        source = loading.ModelSource("pruned", "local", str(tmp_path / "pruned"))
        reloaded, _ = loading.load(source, embedded_manager.settings, torch.device("cpu"))
        with torch.no_grad():
            torch.testing.assert_close(reloaded(input_ids=ids).logits, smaller, atol=0, rtol=0)
