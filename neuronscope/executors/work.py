"""The chunk functions: what a worker computes for one chunk, given the model and a sweep's shared inputs.

They run in the server process (local executor) and in Ray actors alike, so both paths compute
each chunk with the same code on the same token ids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np
import torch

from neuronscope.analysis.attribution import attribution_importance
from neuronscope.analysis.importance import neuron_importance
from neuronscope.analysis.max_activating import IndexPass, TopList, index_pass, max_activating
from neuronscope.analysis.neuron_stats import token_rows
from neuronscope.analysis.progress import ProgressFn
from neuronscope.modeling.manager import LoadedModel


@dataclass(frozen=True)
class NeuronRange:
    """Neurons ``start..stop-1`` of block ``layer``."""

    layer: int
    start: int
    stop: int


@dataclass(frozen=True)
class TextBatch:
    """Some texts of a corpus: their indices in it, token ids and indexable flags."""

    indices: tuple[int, ...]
    sequences: tuple[tuple[int, ...], ...]
    indexable: tuple[tuple[bool, ...], ...]


def _as_inputs(sequences: list[list[int]], device: torch.device) -> list[torch.Tensor]:
    """Token id lists as ``[1, seq]`` tensors on ``device``."""
    return [torch.tensor([ids], dtype=torch.long, device=device) for ids in sequences]


def importance_chunk(lm: LoadedModel, shared: Mapping[str, Any], chunk: NeuronRange, progress: ProgressFn) -> dict[str, np.ndarray]:
    """Importance of the neurons of ``chunk``: arrays ``[stop - start]`` by field of
    :class:`~neuronscope.analysis.importance.LayerImportance` (absent fields left out).

    ``shared``: ``texts`` (token id lists), ``method`` (``ablation`` or ``attribution``; an
    attribution chunk covers its whole layer), ``ablation`` (``zero`` or ``mean``).
    """
    texts = _as_inputs(shared["texts"], lm.device)
    if shared["method"] == "ablation":
        neurons = range(chunk.start, chunk.stop)
        store = lm.memo.get(("ablation-engine",), dict)  # tuned batch sizes, the last clean runs
        result = neuron_importance(
            lm.adapter, texts, chunk.layer, neurons=neurons, ablation=shared["ablation"], store=store, progress=progress
        )
    else:
        result = attribution_importance(lm.adapter, texts, chunk.layer, ablation=shared["ablation"], progress=progress)
    fields = vars(result)
    return {name: value.cpu().numpy() for name, value in fields.items() if value is not None}


def corpus_chunk(lm: LoadedModel, shared: Mapping[str, Any], chunk: TextBatch, progress: ProgressFn) -> list[TopList]:
    """Top positions per neuron of every layer over the texts of ``chunk``, their sequence
    indices counted over the whole corpus. ``shared``: ``pad_id``, ``depth``, ``batch_size``."""
    tops = max_activating(
        lm.model, lm.adapter, chunk.sequences, chunk.indexable,
        pad_id=shared["pad_id"], depth=shared["depth"], batch_size=shared["batch_size"], progress=progress,
    )
    indices = np.asarray(chunk.indices)
    return [replace(top, sequences=indices[top.sequences]) for top in tops]


def index_chunk(lm: LoadedModel, shared: Mapping[str, Any], chunk: TextBatch, progress: ProgressFn) -> IndexPass:
    """:func:`corpus_chunk` with the bottom lists, statistics and per-token sums of an indexing pass.
    ``shared`` also holds ``tracked`` (the tracked token ids, ascending) and ``halves`` (per corpus text, 0 or 1)."""
    tracked = np.asarray(shared["tracked"], dtype=np.int64)
    result = index_pass(
        lm.model, lm.adapter, chunk.sequences, chunk.indexable,
        pad_id=shared["pad_id"], depth=shared["depth"], batch_size=shared["batch_size"],
        rows=[token_rows(seq, tracked) for seq in chunk.sequences],
        halves=[shared["halves"][i] for i in chunk.indices], token_rows=len(tracked) + 1, progress=progress,
    )
    indices = np.asarray(chunk.indices)
    return replace(
        result,
        tops=[replace(top, sequences=indices[top.sequences]) for top in result.tops],
        bottoms=[replace(top, sequences=indices[top.sequences]) for top in result.bottoms],
    )


ChunkFunction = Callable[[LoadedModel, Mapping[str, Any], Any, ProgressFn], Any]

CHUNK_FUNCTIONS: dict[str, ChunkFunction] = {"importance": importance_chunk, "corpus": corpus_chunk, "index": index_chunk}


def run_chunk(lm: LoadedModel, kind: str, shared: Mapping[str, Any], chunk: Any, progress: ProgressFn) -> Any:
    """Compute one chunk of a sweep of ``kind`` with the loaded model ``lm``."""
    return CHUNK_FUNCTIONS[kind](lm, shared, chunk, progress)
