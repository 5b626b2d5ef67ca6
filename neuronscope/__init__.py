"""NeuronScope: a REST service for MLP neuron analysis and pruning of Hugging Face language models.

``create_app`` is imported lazily so that light modules (storage, errors) load without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from neuronscope.app import create_app

        return create_app
    raise AttributeError(f"module 'neuronscope' has no attribute {name!r}")
