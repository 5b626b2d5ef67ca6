"""Removal, evaluation, Taylor scores and plans, each checked against an independent computation."""

import math

import pytest
import torch

from neuronscope.analysis.evaluation import next_token_loss, padded_batches
from neuronscope.analysis.hooks import ablated_many, forward_pre_hook, hook_count
from neuronscope.analysis.pruning_plan import random_scores, select_global, select_per_layer
from neuronscope.analysis.surgery import parameter_count, parameters_per_neuron, pruned_copy
from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.taylor import taylor_scores
from neuronscope.modeling.adapters import adapter_for
from tests.support.tiny_models import ALL_TINY

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world",
    "The capital of France is Paris. The capital of Italy is Rome. Machine learning is fascinating.",
    "def add(a, b): return a + b",
    "One two three",
]


def sequences_of(lm):
    return [lm.tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]


def some_neurons(adapter, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        layer: sorted(torch.randperm(adapter.d_mlp(layer), generator=generator)[: 5 + 7 * layer].tolist())
        for layer in range(adapter.n_layers)
    }


@pytest.fixture(params=ALL_TINY)
def any_loaded(request, shared_managers):
    return shared_managers(request.param).ensure_loaded()


def test_removal_equals_ablation(any_loaded):
    """The physically smaller model gives the logits of the full model with those neurons ablated."""
    model, adapter = any_loaded.model, any_loaded.adapter
    removed = some_neurons(adapter)
    batch = next(padded_batches(sequences_of(any_loaded)))
    with torch.no_grad():
        with ablated_many(adapter, removed):
            ablated = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        clean = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        pruned = pruned_copy(model, removed)
        smaller = pruned(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(smaller, ablated, atol=1e-4, rtol=0)
    assert (clean - ablated).abs().max() > 1e-3, "the ablation must change the output for the test to mean anything"
    sizes = [adapter_for(pruned).d_mlp(layer) for layer in range(adapter.n_layers)]
    assert sizes == [adapter.d_mlp(layer) - len(removed[layer]) for layer in range(adapter.n_layers)]
    assert hook_count(model) == 0


def test_removal_leaves_the_original_untouched(any_loaded):
    model = any_loaded.model
    state = {key: value.clone() for key, value in model.state_dict().items()}
    config = model.config.to_dict()
    pruned_copy(model, some_neurons(any_loaded.adapter))
    assert model.config.to_dict() == config
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_parameter_accounting_matches_the_smaller_model(any_loaded):
    adapter = any_loaded.adapter
    removed = some_neurons(adapter, seed=3)
    predicted = sum(len(neurons) * parameters_per_neuron(adapter, layer) for layer, neurons in removed.items())
    pruned = pruned_copy(any_loaded.model, removed)
    assert parameter_count(any_loaded.model) - parameter_count(pruned) == predicted


def test_uniform_sizes_go_into_the_config_attribute(loaded):
    adapter = loaded.adapter
    removed = {layer: list(range(0, 10 * (layer + 1), layer + 1)) for layer in range(adapter.n_layers)}
    pruned = pruned_copy(loaded.model, removed)
    assert getattr(pruned.config, adapter.mlp_size_attr) == adapter.d_mlp(0) - 10
    assert not hasattr(pruned.config, "neuronscope_mlp_sizes")


def hf_summed_loss(model, sequence):
    """Summed next-token loss of one unpadded sequence, from transformers' own ``labels`` loss."""
    with torch.no_grad():
        mean = model(input_ids=sequence[None], labels=sequence[None]).loss
    return mean.item() * (len(sequence) - 1)


@pytest.mark.parametrize("batch_tokens", [16, 64, 4096])
def test_batched_loss_equals_one_text_at_a_time(loaded, batch_tokens):
    sequences = sequences_of(loaded)
    report = next_token_loss(loaded.model, sequences, batch_tokens=batch_tokens, pad_id=0)
    expected_total = sum(hf_summed_loss(loaded.model, seq) for seq in sequences)
    assert report.tokens == sum(len(seq) - 1 for seq in sequences)
    assert report.texts == len(sequences)
    assert report.total_loss == pytest.approx(expected_total, rel=1e-5)
    assert report.perplexity == pytest.approx(math.exp(expected_total / report.tokens), rel=1e-5)


def test_padding_token_does_not_matter(loaded):
    sequences = sequences_of(loaded)
    first = next_token_loss(loaded.model, sequences, pad_id=0)
    second = next_token_loss(loaded.model, sequences, pad_id=7)
    assert first.total_loss == pytest.approx(second.total_loss, rel=1e-6)


def test_ablated_loss_equals_zeroed_output_rows(loaded):
    """Evaluation with hook ablation equals an unbatched loop on a model whose W_out rows are zeroed."""
    adapter, model = loaded.adapter, loaded.model
    removed = some_neurons(adapter, seed=1)
    sequences = sequences_of(loaded)
    report = next_token_loss(model, sequences, adapter=adapter, ablate=removed, batch_tokens=64)
    assert hook_count(model) == 0
    zeroed = pruned_copy(model, {})
    zeroed_adapter = adapter_for(zeroed)
    with torch.no_grad():
        for layer, neurons in removed.items():
            zeroed_adapter.w_out(layer)[neurons] = 0.0
    expected = sum(hf_summed_loss(zeroed, seq) for seq in sequences)
    assert report.total_loss == pytest.approx(expected, rel=1e-5)
    assert report.total_loss != pytest.approx(next_token_loss(model, sequences).total_loss, rel=1e-4)


def leaf_taylor(model, adapter, sequences):
    """Reference: per layer and text, replace the activations by a leaf tensor and differentiate."""
    totals = {layer: torch.zeros(adapter.d_mlp(layer), dtype=torch.float64) for layer in range(adapter.n_layers)}
    tokens = 0
    for seq in sequences:
        tokens += len(seq)
        for layer in totals:
            leaf = {}

            def substitute(_module, args):
                leaf["a"] = args[0].detach().requires_grad_(True)
                return (leaf["a"],)

            with forward_pre_hook(adapter.mlp_output(layer), substitute):
                loss = model(input_ids=seq[None], labels=seq[None]).loss * (len(seq) - 1)
            (grad,) = torch.autograd.grad(loss, [leaf["a"]])
            totals[layer] += (leaf["a"] * grad).abs().sum(dim=(0, 1)).double()
    return {layer: (total / tokens).float() for layer, total in totals.items()}


def test_taylor_scores_equal_a_leaf_gradient_reference(loaded):
    model, adapter = loaded.model, loaded.adapter
    sequences = sequences_of(loaded)
    scores = taylor_scores(adapter, Calibration(tuple(sequences)), batch_tokens=48)
    expected = leaf_taylor(model, adapter, sequences)
    for layer in expected:
        torch.testing.assert_close(scores[layer], expected[layer], rtol=1e-4, atol=1e-7)
        assert scores[layer].max() > 0
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_taylor_works_without_parameter_gradients(loaded):
    model, adapter = loaded.model, loaded.adapter
    sequences = sequences_of(loaded)[:2]
    reference = taylor_scores(adapter, Calibration(tuple(sequences)))
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        frozen = taylor_scores(adapter, Calibration(tuple(sequences)))
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
    for layer in reference:
        torch.testing.assert_close(frozen[layer], reference[layer])


SIZES = {0: 100, 1: 37, 2: 64, 3: 1536}


def synthetic_scores(seed=0):
    generator = torch.Generator().manual_seed(seed)
    scores = {layer: torch.rand(size, generator=generator) * (layer + 1) for layer, size in SIZES.items()}
    scores[2] = scores[2] * 1e-3  # a layer whose scores are all tiny: global plans must still keep one
    return scores


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.25, 0.5, 0.73, 0.95])
def test_per_layer_plans_remove_exactly_the_fraction_of_each_layer(sparsity):
    scores = synthetic_scores()
    chosen = select_per_layer(scores, sparsity)
    for layer, size in SIZES.items():
        removed = chosen.get(layer, [])
        assert len(removed) == min(math.floor(sparsity * size + 0.5), size - 1)
        assert len(set(removed)) == len(removed)
        kept = sorted(set(range(size)) - set(removed))
        if removed:
            assert scores[layer][removed].max() <= scores[layer][kept].min()


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.3, 0.5, 0.95])
def test_global_plans_remove_exactly_the_fraction_of_all_neurons(sparsity):
    scores = synthetic_scores(seed=2)
    chosen = select_global(scores, sparsity)
    total = sum(SIZES.values())
    assert sum(len(v) for v in chosen.values()) == math.floor(sparsity * total + 0.5)
    for layer, size in SIZES.items():
        assert len(chosen.get(layer, [])) < size
    removed_scores = torch.cat([scores[layer][idx] for layer, idx in chosen.items()]) if chosen else torch.zeros(0)
    kept_scores = []
    for layer, size in SIZES.items():
        kept = sorted(set(range(size)) - set(chosen.get(layer, [])) - {int(scores[layer].argmax())})
        kept_scores.append(scores[layer][kept])
    if len(removed_scores):
        assert removed_scores.max() <= torch.cat(kept_scores).min()


def test_random_scores_are_seeded():
    first, again, other = random_scores(SIZES, 5), random_scores(SIZES, 5), random_scores(SIZES, 6)
    assert all(torch.equal(first[layer], again[layer]) for layer in SIZES)
    assert not torch.equal(first[0], other[0])
    assert [len(first[layer]) for layer in SIZES] == list(SIZES.values())
