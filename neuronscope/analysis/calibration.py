"""The calibration value every neuron scorer takes (token ids, padding id, seed), and the pass over it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from neuronscope.analysis.forward import run
from neuronscope.analysis.progress import ProgressFn, no_progress


@dataclass(frozen=True)
class Calibration:
    """What a scorer may read besides the weights.

    ``sequences``: token ids ``[seq]`` (1-D) on the model's input device, each within the model's
    token limit (``services/calibration.py`` makes them: one rule for every caller); ``pad_id``
    pads batches (taylor); ``seed`` seeds the random baseline.
    """

    sequences: tuple[torch.Tensor, ...] = ()
    pad_id: int = 0
    seed: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(seq) for seq in self.sequences)

    def digest(self) -> str:
        """A hex digest of the token ids and ``pad_id`` (the memo key of calibrated scores)."""
        digest = hashlib.blake2b(f"{self.pad_id}".encode(), digest_size=16)
        for seq in self.sequences:
            digest.update(len(seq).to_bytes(8, "little"))
            digest.update(seq.detach().to(torch.int64).cpu().numpy().tobytes())
        return digest.hexdigest()


@torch.no_grad()
def run_calibration(model: nn.Module, calibration: Calibration, progress: ProgressFn = no_progress) -> int:
    """Forward every calibration sequence once, one at a time (hooks collect what they need);
    returns the number of tokens seen."""
    count = len(calibration.sequences)
    for i, seq in enumerate(calibration.sequences):
        run(model, seq[None])
        progress((i + 1) / count, f"calibration text {i + 1}/{count}")
    return calibration.tokens
