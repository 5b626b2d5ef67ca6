"""Activation capture against independent computations; readable tokens; batched equals unbatched."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from neuronscope.analysis.activations import batched_activations, neuron_activations
from neuronscope.analysis.forward import encode
from neuronscope.analysis.tokens import context_snippet, token_strings

from tests.support.activation_helpers import projection_hooks
from tests.support.tiny_models import ALL_TINY

TEXTS = [
    "Hello world, this is a test for pruning analysis.",
    "The quick brown fox",
    "One two three four five six seven eight nine ten.",
    "Machine",
    "The capital of France is Paris. The capital of Italy is Rome.",
]


def mlp_hidden_by_formula(loaded, layer: int, text: str) -> torch.Tensor:
    """The MLP's hidden activations ``[seq, d_mlp]`` recomputed from the MLP's input, per family."""
    blocks = loaded.model.transformer.h if loaded.adapter.family == "gpt2" else loaded.model.model.layers
    mlp = blocks[layer].mlp
    seen = []
    handle = mlp.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            loaded.model(encode(loaded.tokenizer, text))
    finally:
        handle.remove()
    x = seen[0][0]
    with torch.no_grad():
        if loaded.adapter.family == "gpt2":
            return mlp.act(mlp.c_fc(x))
        return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)


def test_capture_equals_independent_mlp_computation(loaded):
    for text in TEXTS[:3]:
        captured = neuron_activations(loaded.model, loaded.adapter, encode(loaded.tokenizer, text))
        assert len(captured) == loaded.adapter.n_layers
        for layer, acts in enumerate(captured):
            expected = mlp_hidden_by_formula(loaded, layer, text)
            assert acts.shape == expected.shape == (len(loaded.tokenizer(text)["input_ids"]), loaded.adapter.d_mlp(layer))
            torch.testing.assert_close(acts, expected, rtol=1e-5, atol=1e-6)
    assert projection_hooks(loaded.adapter) == 0


@pytest.mark.parametrize("model_name", ["tiny-neox", "tiny-opt"])
def test_capture_has_one_row_per_token_for_every_architecture(loaded):
    """OPT flattens a block's hidden states to ``[tokens, d]``: a text's capture is still ``[seq, d_mlp]``."""
    ids = encode(loaded.tokenizer, TEXTS[0])
    captured = neuron_activations(loaded.model, loaded.adapter, ids)
    for layer, acts in enumerate(captured):
        seen = []
        module = loaded.adapter.mlp_output(layer)
        handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().reshape(-1, args[0].shape[-1])))
        try:
            with torch.no_grad():
                loaded.model(input_ids=ids)
        finally:
            handle.remove()
        assert acts.shape == (ids.shape[1], loaded.adapter.d_mlp(layer))
        torch.testing.assert_close(acts, seen[0], rtol=0, atol=0)


@pytest.mark.parametrize("model_name", ALL_TINY)
def test_batched_activations_equal_unbatched(loaded):
    sequences = [loaded.tokenizer(t)["input_ids"] for t in TEXTS]
    assert len({len(s) for s in sequences}) > 2, "texts of different lengths exercise the padding"
    layers = list(range(loaded.adapter.n_layers))
    batched = batched_activations(loaded.model, loaded.adapter, sequences, layers, pad_id=0, batch_size=3)
    for seq, got in zip(sequences, batched):
        alone = neuron_activations(loaded.model, loaded.adapter, torch.tensor([seq]))
        for layer in layers:
            torch.testing.assert_close(got[layer], alone[layer], rtol=1e-4, atol=1e-5)
    assert projection_hooks(loaded.adapter) == 0


@pytest.mark.parametrize(
    "text",
    ["Hello world, this is a test.", "  leading spaces and\nnewlines\tand tabs", "café naïve 🙂 déjà vu", "a+b=c; x*y"],
)
def test_byte_level_tokens_read_back_to_the_text(shared_managers, text):
    tokenizer = shared_managers("tiny-gpt2").ensure_loaded().tokenizer
    ids = tokenizer(text)["input_ids"]
    tokens = token_strings(tokenizer, ids)
    assert len(tokens) == len(ids)
    assert "".join(tokens).replace("\ufffd", "") == text
    assert not any("Ġ" in t or "Ċ" in t for t in tokens)
    assert all(tokens), "no token is shown as an empty string"


def test_word_initial_spaces_are_kept(shared_managers):
    tokenizer = shared_managers("tiny-gpt2").ensure_loaded().tokenizer
    ids = tokenizer("The quick brown fox")["input_ids"]
    raw = tokenizer.convert_ids_to_tokens(ids)
    tokens = token_strings(tokenizer, ids)
    assert [t.replace("Ġ", " ") for t in raw] == tokens


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer ("▁" marks spaces), as LLaMA-2 and Mistral use."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TEXTS * 10, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


def test_metaspace_tokens_read_back_to_the_text():
    tokenizer = metaspace_tokenizer()
    text = "The capital of Italy is Rome. Machine learning is fascinating"
    ids = tokenizer(text)["input_ids"]
    tokens = token_strings(tokenizer, ids)
    assert "".join(tokens) == text
    assert not any("▁" in t for t in tokens)
    assert any(t.startswith(" ") for t in tokens[1:])


def test_context_snippet_marks_the_token():
    tokens = ["The", " quick", " brown", " fox", " jumps"]
    snippet = context_snippet(tokens, 2, before=1, after=1)
    assert snippet == {"before": " quick", "token": " brown", "after": " fox", "snippet": " quick[[ brown]] fox"}
