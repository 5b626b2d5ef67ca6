"""Model identity for the result cache: the model's name plus a cheap fingerprint of its weights."""

from __future__ import annotations

import hashlib
import threading
import weakref

import torch
from torch import nn

from neuronscope.modeling.manager import LoadedModel
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


def model_identity(lm: LoadedModel) -> str:
    """``name:fingerprint`` of a loaded model (computes the fingerprint)."""
    return f"{lm.name}:{weights_fingerprint(lm.model, lm.tokenizer)}"


class ModelIdentity:
    """``name:fingerprint`` of a loaded model, computed once per loaded model."""

    def __init__(self):
        self._lock = threading.Lock()
        self._model: weakref.ref | None = None
        self._identity: str | None = None

    def known(self, lm: LoadedModel | None) -> str | None:
        """The identity of ``lm`` if it was computed already (never computes)."""
        with self._lock:
            if lm is not None and self._model is not None and self._model() is lm:
                return self._identity
            return None

    def of(self, lm: LoadedModel) -> str:
        """The identity of ``lm``, computing its fingerprint on first use (hold the model lock)."""
        identity = self.known(lm)
        if identity is None:
            identity = model_identity(lm)
            with self._lock:
                self._model, self._identity = weakref.ref(lm), identity
        return identity
