"""A cheap fingerprint of a model's weights: with its name, the identity of a loaded model (see ``LoadedModel.identity``)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from neuronscope.modeling.placement import resident_state

# Elements sampled (evenly strided) from each tensor; ~25 ms for the embedded 135M-parameter model.
SAMPLES_PER_TENSOR = 4096


def weights_fingerprint(model: nn.Module, tokenizer: object) -> str:
    """A hex digest of the model's config, every tensor's name, shape and dtype, a strided sample
    of its values, and the tokenizer's size.

    Any change of architecture, shape (pruning), dtype or of weights that touches the sample
    (a different checkpoint, fine-tuning) changes the digest. Hashing every byte would take
    about a second for the embedded model; the sample keeps it to milliseconds.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.config.to_json_string(use_diff=False).encode("utf-8"))
    digest.update(f"{type(tokenizer).__name__}:{len(tokenizer)}".encode("utf-8"))
    for name, tensor in resident_state(model):
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // SAMPLES_PER_TENSOR)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode("utf-8"))
        digest.update(flat[::stride].contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()
