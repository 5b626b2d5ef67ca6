"""Validation of request values: text that is valid Unicode, and values against the loaded model
(layers, neurons, token limits)."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from neuronscope.analysis.forward import encode
from neuronscope.errors import BadRequest
from neuronscope.modeling.manager import LoadedModel


_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot enter the server, or None: a lone UTF-16 surrogate (not Unicode; cannot be
    encoded as UTF-8) or a control character other than tab, line feed and carriage return."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    code = ord(found.group())
    kind = "a lone UTF-16 surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
    return f"contains {kind} (U+{code:04X}) at position {found.start()}"


def check_layer(lm: LoadedModel, layer: int) -> int:
    """``layer`` if it is a block index of the loaded model, else 400."""
    n_layers = lm.adapter.n_layers
    if not 0 <= layer < n_layers:
        raise BadRequest(f"layer_index {layer} is out of range: {lm.name} has layers 0..{n_layers - 1}")
    return layer


def check_neurons(lm: LoadedModel, layer: int, neurons: Sequence[int]) -> list[int]:
    """``neurons`` if each is a neuron index of ``layer``, else 400."""
    d_mlp = lm.adapter.d_mlp(check_layer(lm, layer))
    bad = [n for n in neurons if not 0 <= n < d_mlp]
    if bad:
        raise BadRequest(f"neuron indices {bad[:10]} are out of range: layer {layer} has neurons 0..{d_mlp - 1}")
    return list(neurons)


def check_groups(lm: LoadedModel, groups: Mapping[int, Sequence[int]]) -> dict[int, list[int]]:
    """``{layer: neurons}`` in layer order, if every layer and neuron index is one of the loaded model's, else 400."""
    return {layer: check_neurons(lm, layer, neurons) for layer, neurons in sorted(groups.items())}


def context_length(lm: LoadedModel) -> int | None:
    """The most positions the model accepts (learned position embeddings fail beyond it), if known."""
    value = getattr(lm.config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def token_limit(lm: LoadedModel, max_tokens: int) -> tuple[int, str]:
    """Tokens allowed per text and what sets the limit: ``max_tokens``, or the model's context when shorter."""
    context = context_length(lm)
    if context is not None and context < max_tokens:
        return context, f"{lm.name}'s context length"
    return max_tokens, "max_input_tokens"


def token_count(lm: LoadedModel, text: str) -> int:
    """Tokens of ``text`` as :func:`encode_texts` encodes it (special tokens included)."""
    return len(lm.tokenizer(text)["input_ids"])


def encode_texts(lm: LoadedModel, texts: Sequence[str], max_tokens: int) -> list[torch.Tensor]:
    """Each text as token ids ``[1, seq]`` on the model's device; 400 if empty, over ``max_tokens``
    or over the model's context length."""
    limit, name = token_limit(lm, max_tokens)
    encoded = []
    for i, text in enumerate(texts):
        ids = encode(lm.tokenizer, text, lm.device)
        if ids.shape[1] == 0:
            raise BadRequest(f"text {i} has no tokens")
        if ids.shape[1] > limit:
            raise BadRequest(f"text {i} has {ids.shape[1]} tokens; the limit is {limit} ({name})")
        encoded.append(ids)
    return encoded
