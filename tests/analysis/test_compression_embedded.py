"""Real pruning on the embedded SmolLM2 (slow): removal equals ablation, unequal sizes reload."""

import copy

import pytest
import torch

from neuronscope.analysis.hooks import ablated_many, hook_count
from neuronscope.analysis.pruning_plan import random_scores, select_neurons
from neuronscope.analysis.surgery import pruned_copy
from neuronscope.modeling import loading
from neuronscope.modeling.adapters import adapter_for

pytestmark = pytest.mark.slow
TEXT = "The capital of France is Paris, and the capital of Italy is"


@pytest.fixture(scope="module")
def global_plan(embedded_manager):
    with embedded_manager.use() as lm:
        sizes = {layer: lm.adapter.d_mlp(layer) for layer in range(lm.adapter.n_layers)}
    removed = select_neurons(random_scores(sizes, seed=1), 0.2, "global")
    assert len({len(v) for v in removed.values()}) > 1, "a global plan should leave unequal layer sizes"
    return removed


def test_removal_equals_ablation_exactly_in_float64(embedded_manager, global_plan):
    """In float64 the smaller model matches ablation to rounding; in float32 the different
    summation lengths of the 30 output projections leave differences of a few 1e-4 on logits of ~30."""
    with embedded_manager.use() as lm:
        ids = lm.tokenizer(TEXT, return_tensors="pt")["input_ids"]
        for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 2e-3)):
            model = copy.deepcopy(lm.model).to(dtype)
            with torch.no_grad():
                with ablated_many(adapter_for(model), global_plan):
                    ablated = model(input_ids=ids).logits
                smaller = pruned_copy(model, global_plan)(input_ids=ids).logits
                clean = model(input_ids=ids).logits
            torch.testing.assert_close(smaller, ablated, atol=atol, rtol=0)
            assert (clean - ablated).abs().max() > 1.0
        assert hook_count(lm.model) == 0


def test_unequal_layer_sizes_reload_with_identical_logits(embedded_manager, global_plan, tmp_path):
    with embedded_manager.use() as lm:
        ids = lm.tokenizer(TEXT, return_tensors="pt")["input_ids"]
        pruned = pruned_copy(lm.model, global_plan)
        pruned.save_pretrained(tmp_path / "pruned")
        lm.tokenizer.save_pretrained(tmp_path / "pruned")
    source = loading.ModelSource("pruned", "local", str(tmp_path / "pruned"))
    reloaded, _ = loading.load(source, embedded_manager.settings, torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, pruned(input_ids=ids).logits, atol=0, rtol=0)
    assert reloaded.model.embed_tokens.weight is reloaded.lm_head.weight
