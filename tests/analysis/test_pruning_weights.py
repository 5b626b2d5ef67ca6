"""Weight statistics against numpy on the raw tensors; unique parameter counting."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from neuronscope.analysis.weights import analyze_weights
from neuronscope.modeling.adapters import adapter_for


def _sparsified(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy with ~20% exact zeros and ~10% tiny (1e-4) entries in every parameter."""
    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in copied.parameters():
            u = torch.rand(param.shape, generator=generator)
            param[u < 0.2] = 0.0
            param[(u >= 0.2) & (u < 0.3)] = 1e-4
    return copied


def _unique_tensors(model: torch.nn.Module) -> list[np.ndarray]:
    """Every parameter once, told apart by storage address (independent of torch's own de-duplication)."""
    by_address = {p.data_ptr(): p for _, p in model.named_parameters(remove_duplicate=False)}
    return [p.detach().numpy().astype(np.float64).ravel() for p in by_address.values()]


@pytest.mark.parametrize("tolerance", [0.0, 1e-3])
def test_module_stats_equal_numpy(loaded, tolerance):
    model = _sparsified(loaded.model)
    report = analyze_weights(adapter_for(model), tolerance)
    assert report["layer_stats"], "no weight-bearing modules found"
    for row in report["layer_stats"]:
        module = model.get_submodule(row["layer_name"])
        values = np.concatenate([p.detach().numpy().astype(np.float64).ravel() for p in module.parameters(recurse=False)])
        magnitude = np.abs(values)
        nonzero = int(np.sum(magnitude > tolerance))
        assert row["total_parameters"] == values.size
        assert row["non_zero_parameters"] == nonzero
        assert row["sparsity"] == pytest.approx(1 - nonzero / values.size, abs=1e-12)
        assert row["mean_magnitude"] == pytest.approx(magnitude.mean(), rel=1e-5)
        assert row["std_magnitude"] == pytest.approx(magnitude.std(), rel=1e-4)
        assert row["min_magnitude"] == pytest.approx(magnitude.min(), abs=1e-12)
        assert row["max_magnitude"] == pytest.approx(magnitude.max(), rel=1e-6)
        assert row["l1_norm"] == pytest.approx(magnitude.sum(), rel=1e-5)
        assert row["l2_norm"] == pytest.approx(np.sqrt(np.sum(values**2)), rel=1e-5)
        assert report["layer_sparsity"][row["layer_name"]] == {
            "sparsity": row["sparsity"],
            "total_params": row["total_parameters"],
            "non_zero_params": row["non_zero_parameters"],
        }


def test_totals_count_every_unique_parameter_once(loaded):
    model = _sparsified(loaded.model, seed=1)
    report = analyze_weights(adapter_for(model))
    tensors = _unique_tensors(model)
    total = sum(t.size for t in tensors)
    nonzero = sum(int(np.count_nonzero(t)) for t in tensors)
    assert report["total_parameters"] == total
    assert report["non_zero_parameters"] == nonzero
    assert report["overall_sparsity"] == pytest.approx(1 - nonzero / total, abs=1e-12)


def test_layer_index_is_the_block_or_none(loaded):
    report = analyze_weights(loaded.adapter)
    blocks = loaded.adapter.blocks()
    for row in report["layer_stats"]:
        module = loaded.model.get_submodule(row["layer_name"])
        inside = [i for i, block in enumerate(blocks) if any(m is module for m in block.modules())]
        assert row["layer_index"] == (inside[0] if inside else None)


def test_tied_weights_counted_once(shared_managers):
    lm = shared_managers("tiny-gpt2").ensure_loaded()
    assert lm.model.lm_head.weight is lm.model.transformer.wte.weight, "the tiny GPT-2 should tie its embeddings"
    report = analyze_weights(lm.adapter)
    with_duplicates = sum(p.numel() for _, p in lm.model.named_parameters(remove_duplicate=False))
    assert report["total_parameters"] == with_duplicates - lm.model.lm_head.weight.numel()
    rows = {row["layer_name"]: row for row in report["layer_stats"]}
    assert rows["lm_head"]["tied_to"] == "transformer.wte"
    assert "tied_to" not in rows["transformer.wte"]


@pytest.mark.slow
def test_gpt2_small_shape_has_124439808_parameters():
    """Marked slow: allocates the 124M-parameter GPT-2 small shape (a few seconds on a busy 2-core box)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(GPT2Config())
    model.to_empty(device="cpu")
    model.tie_weights()
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(0.5)
    report = analyze_weights(adapter_for(model))
    assert report["total_parameters"] == 124439808
    assert report["non_zero_parameters"] == 124439808
