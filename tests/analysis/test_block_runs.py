"""Carrying sequences through the blocks layer by layer equals fresh forward passes of the model as changed."""

import copy
from contextlib import ExitStack

import numpy as np
import pytest
import torch

from neuronscope.analysis.block_runs import LayerRun, block_output, carry, layer_by_layer, passed_through
from neuronscope.modeling.adapters import adapter_for
from neuronscope.analysis.hooks import forward_hook, forward_pre_hook
from tests.support.activation_helpers import captured
from tests.support.tiny_models import ALL_TINY, NOT_ADDITIVE, post_norm_opt

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello world", "One two three four five six"]


@pytest.mark.parametrize("model_name", ALL_TINY)
def test_each_layer_sees_the_model_changed_before_it(shared_managers, model_name):
    lm = shared_managers(model_name).ensure_loaded()
    model = copy.deepcopy(lm.model)
    adapter = adapter_for(model)
    sequences = [lm.tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]
    seen: dict[int, torch.Tensor] = {}

    def between(layer: int, run: LayerRun) -> None:
        seen[layer] = run.acts
        adapter.set_output_weight(layer, adapter.w_out(layer).flip(0))  # changes every later layer (a rescale would not: Gemma normalises the MLP output)

    layers = list(range(adapter.n_layers))
    layer_by_layer(adapter, sequences, layers, between)
    assert sorted(seen) == layers
    fresh = [captured(model, adapter, ids.tolist()) for ids in sequences]  # the model as changed, from scratch
    for layer in layers:
        expected = np.concatenate([per_text[layer] for per_text in fresh])
        assert seen[layer].dtype == torch.float64 and seen[layer].shape == expected.shape
        np.testing.assert_allclose(seen[layer].numpy(), expected, rtol=1e-5, atol=1e-6)
    unchanged = captured(lm.model, lm.adapter, sequences[0].tolist())[-1]
    assert not np.allclose(fresh[0][-1], unchanged, atol=1e-4)  # the test would notice a stale carry


def _count_runs(adapter, calls: list) -> list:
    """Hooks appending ``i`` each time block ``i`` really runs (an MLP input projection is called;
    a block passed through by :func:`passed_through` still calls its pre-hooks, and the additive
    shortcut calls the output projection alone)."""
    first_inputs = [next(iter(adapter.mlp_inputs(i).values())) for i in range(adapter.n_layers)]
    return [module.register_forward_pre_hook(lambda _m, _a, i=i: calls.append(i)) for i, module in enumerate(first_inputs)]


def test_only_the_blocks_up_to_the_last_wanted_layer_run(shared_managers):
    lm = shared_managers("tiny-llama").ensure_loaded()
    calls = []
    handles = _count_runs(lm.adapter, calls)
    try:
        layer_by_layer(lm.adapter, [lm.tokenizer("Hello world", return_tensors="pt")["input_ids"][0]], [0], lambda *_: None)
    finally:
        for handle in handles:
            handle.remove()
    assert set(calls) == {0}


@pytest.mark.parametrize("model_name", ["tiny-gpt2", "tiny-llama"])
def test_a_change_beyond_the_output_projection_is_carried_by_running_the_block_again(shared_managers, model_name):
    lm = shared_managers(model_name).ensure_loaded()
    model = copy.deepcopy(lm.model)
    adapter = adapter_for(model)
    sequences = [lm.tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]

    def between(layer: int, _run: LayerRun) -> None:
        with torch.no_grad():
            for module in adapter.mlp_inputs(layer).values():
                module.weight.mul_(1.5)  # moves the activations: the residual shortcut no longer holds

    last_seen = {}
    layer_by_layer(adapter, sequences, list(range(adapter.n_layers)), between)
    layer_by_layer(adapter, sequences, [adapter.n_layers - 1], lambda layer, run: last_seen.update({layer: run.acts}))
    fresh = [captured(model, adapter, ids.tolist()) for ids in sequences]
    expected = np.concatenate([per_text[-1] for per_text in fresh])
    np.testing.assert_allclose(last_seen[adapter.n_layers - 1].numpy(), expected, rtol=1e-5, atol=1e-6)
    unchanged = captured(lm.model, lm.adapter, sequences[0].tolist())[-1]
    assert not np.allclose(fresh[0][-1], unchanged, atol=1e-4)


def test_an_additive_block_runs_once_per_sequence_plus_one_check(shared_managers):
    lm = shared_managers("tiny-llama").ensure_loaded()
    model = copy.deepcopy(lm.model)
    adapter = adapter_for(model)
    sequences = [lm.tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]
    calls = []
    handles = _count_runs(adapter, calls)
    try:
        layer_by_layer(adapter, sequences, [0, 1], lambda layer, _run: adapter.set_output_weight(layer, adapter.w_out(layer) * 2))
    finally:
        for handle in handles:
            handle.remove()
    # carry() runs no block (it passes them through to record their inputs); each block runs once
    # per sequence to record, plus once on the first sequence to probe that it is additive; block 0
    # runs once more to check the shortcut (not once more per sequence); block 1, the last, is not
    # carried on
    assert calls.count(0) == len(sequences) + 2
    assert calls.count(1) == len(sequences) + 1


def _outputs(model, adapter, ids: torch.Tensor, residual: bool) -> list[np.ndarray]:
    """Per layer ``[seq, d_model]`` from a plain forward pass: each block's output (``residual``) or
    its MLP output projection's output."""
    seen: dict[int, np.ndarray] = {}
    modules = adapter.blocks() if residual else [adapter.mlp_output(layer) for layer in range(adapter.n_layers)]

    def keep(layer: int):
        return lambda _m, _a, out: seen.__setitem__(layer, block_output(out).reshape(len(ids), -1).numpy().copy())

    with torch.no_grad(), ExitStack() as stack:
        for layer, module in enumerate(modules):
            stack.enter_context(forward_hook(module, keep(layer)))
        model(input_ids=ids[None])
    return [seen[layer] for layer in range(adapter.n_layers)]


@pytest.mark.parametrize("model_name", [*ALL_TINY, "post-norm-opt"])
def test_the_layer_output_is_the_block_output_where_the_mlp_output_is_added_to_the_residual(shared_managers, model_name):
    if model_name == "post-norm-opt":
        model, tokenizer = post_norm_opt()
    else:
        lm = shared_managers(model_name).ensure_loaded()
        model, tokenizer = lm.model, lm.tokenizer
    adapter = adapter_for(model)
    sequences = [tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]
    runs: dict[int, LayerRun] = {}
    layer_by_layer(adapter, sequences, list(range(adapter.n_layers)), lambda layer, run: runs.update({layer: run}))
    residual = model_name not in NOT_ADDITIVE
    fresh = [_outputs(model, adapter, ids, residual) for ids in sequences]
    for layer, run in runs.items():
        assert run.residual is residual
        expected = np.concatenate([per_text[layer] for per_text in fresh])
        assert run.output.dtype == torch.float32 and run.output.shape == expected.shape
        np.testing.assert_allclose(run.output.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_reading_carry_equals_a_changing_one_without_running_any_block_again(shared_managers):
    lm = shared_managers("tiny-llama").ensure_loaded()
    sequences = [lm.tokenizer(text, return_tensors="pt")["input_ids"][0] for text in TEXTS]
    layers = list(range(lm.adapter.n_layers))
    read: dict[int, LayerRun] = {}
    carried: dict[int, LayerRun] = {}
    calls = []
    handles = _count_runs(lm.adapter, calls)
    try:
        layer_by_layer(lm.adapter, sequences, layers, lambda layer, run: read.update({layer: run}), changes=False)
    finally:
        for handle in handles:
            handle.remove()
    layer_by_layer(lm.adapter, sequences, layers, lambda layer, run: carried.update({layer: run}))
    for layer in layers:
        torch.testing.assert_close(read[layer].acts, carried[layer].acts, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(read[layer].output, carried[layer].output, rtol=1e-5, atol=1e-5)
    # (the changing carry adds float32 rounding through its shortcut, ~1e-6)
    # block 0: the recording run of each sequence and the additivity probe; no shortcut check
    assert calls.count(0) == len(sequences) + 1


@pytest.mark.parametrize("model_name", ALL_TINY)
def test_carry_records_the_inputs_a_real_forward_gives_without_running_a_block(shared_managers, model_name):
    lm = shared_managers(model_name).ensure_loaded()
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"][0]
    real: list[tuple] = []
    with ExitStack() as stack:
        for block in lm.adapter.blocks():
            stack.enter_context(forward_pre_hook(block, lambda _m, args, kwargs: real.append((args, kwargs)), with_kwargs=True))
        with torch.no_grad():
            lm.model(input_ids=ids[None], use_cache=False)
    calls = []
    handles = _count_runs(lm.adapter, calls)
    try:
        carried = carry(lm.adapter, ids, lm.adapter.n_layers - 1)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []
    first_args, first_kwargs = real[0]
    torch.testing.assert_close(carried.hidden, first_args[0] if first_args else first_kwargs["hidden_states"])
    assert len(carried.inputs) == lm.adapter.n_layers
    for (args, kwargs), (kept_args, kept_kwargs) in zip(real, carried.inputs):
        assert len(kept_args) == len(args) and all(
            _same(a, b) for a, b in zip(kept_args[1:], args[1:])
        )
        assert set(kept_kwargs) == set(kwargs) - {"hidden_states"}
        assert all(_same(kept_kwargs[key], kwargs[key]) for key in kept_kwargs)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a is b or a == b


def test_passed_through_blocks_get_their_own_forward_back(shared_managers):
    lm = shared_managers("tiny-llama").ensure_loaded()
    model = copy.deepcopy(lm.model)
    blocks = adapter_for(model).blocks()
    wrapped = blocks[1].forward

    def instance_forward(*args, **kwargs):  # as accelerate installs one with a device map
        return wrapped(*args, **kwargs)

    blocks[1].forward = instance_forward
    hidden = torch.randn(1, 3, model.config.hidden_size)
    with pytest.raises(RuntimeError), passed_through(blocks):
        assert blocks[0](hidden) is hidden and blocks[1](hidden) is hidden
        raise RuntimeError("leaving the block by an error")
    assert "forward" not in blocks[0].__dict__ and blocks[1].forward is instance_forward
