"""Tiny models and a locally trained tokenizer, built from configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "Hello world, this is a test for pruning analysis.",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning is fascinating and neurons are interesting.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "One two three four five six seven eight nine ten.",
    "def add(a, b): return a + b",
] * 20


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (vocab ~300) trained on a tiny corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def tiny_configs(vocab_size: int) -> dict[str, object]:
    """Configs of hidden size 32 and 2 layers for each supported family."""
    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return {
        "tiny-gpt2": GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, initializer_range=0.2, **common),
        "tiny-llama": LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.2, **common,
        ),
        "tiny-gemma3": Gemma3TextConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, query_pre_attn_scalar=8, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=128, initializer_range=0.2, **common,
        ),
        "tiny-neox": GPTNeoXConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=128, initializer_range=0.2, **common,
        ),
        "tiny-opt": OPTConfig(
            hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32,
            max_position_embeddings=128, init_std=0.2, **common,
        ),
    }


ALL_TINY = ["tiny-gpt2", "tiny-llama", "tiny-gemma3", "tiny-neox", "tiny-opt"]
"""Every tiny model, one per supported architecture family."""
NOT_ADDITIVE = frozenset({"tiny-gemma3", "post-norm-opt"})
"""Models whose blocks normalise the MLP output before the residual add, or after it."""
NO_OUTPUT_BIAS = frozenset({"tiny-gemma3"})
"""Models whose MLP output projection cannot get a bias that stock transformers reloads."""


def tiny_model(config) -> torch.nn.Module:
    """A model built from ``config`` with the current seed; Gemma's RMSNorms, which scale by
    ``1 + weight`` and start at weight 0, get random weights so that the ``1 +`` counts."""
    model = AutoModelForCausalLM.from_config(config)
    if config.model_type == "gemma3_text":
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.uniform_(-0.5, 0.5)
    return model


def save_tiny_models(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Save every tiny model with the shared tokenizer under ``folder/<name>``."""
    tokenizer = build_tokenizer()
    paths = {}
    for name, config in tiny_configs(len(tokenizer)).items():
        torch.manual_seed(seed)
        model = tiny_model(config)
        path = folder / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = path
    return paths


def post_norm_opt() -> tuple[object, PreTrainedTokenizerFast]:
    """A tiny OPT (seed 0) that normalises after the residual add, like OPT-350m: its blocks do not
    add their MLP output to the residual stream. Returns the model (eval mode) and its tokenizer."""
    tokenizer = build_tokenizer()
    config = tiny_configs(len(tokenizer))["tiny-opt"]
    config.do_layer_norm_before = False
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer
