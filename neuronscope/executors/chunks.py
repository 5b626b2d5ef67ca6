"""Splitting analyses into chunks, and merging the chunks' results back into one answer."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from neuronscope.analysis.importance import LayerImportance
from neuronscope.analysis.max_activating import IndexPass, TopList
from neuronscope.analysis.neuron_view import EXAMPLES
from neuronscope.executors.work import NeuronRange, TextBatch


def neuron_ranges(layer_sizes: dict[int, int], size: int) -> list[NeuronRange]:
    """Each layer of ``layer_sizes`` (layer -> d_mlp) cut into ranges of at most ``size`` neurons."""
    return [
        NeuronRange(layer, start, min(start + size, d_mlp))
        for layer, d_mlp in layer_sizes.items()
        for start in range(0, d_mlp, size)
    ]


def merge_importance(ranges: Sequence[NeuronRange], parts: Sequence[dict[str, np.ndarray]]) -> dict[int, LayerImportance]:
    """Per layer, the importance fields of its ranges concatenated in neuron order."""
    by_layer: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for chunk, part in zip(ranges, parts):
        by_layer.setdefault(chunk.layer, []).append((chunk.start, part))
    merged = {}
    for layer, pieces in by_layer.items():
        pieces.sort(key=lambda piece: piece[0])
        fields = pieces[0][1].keys()
        merged[layer] = LayerImportance(
            **{name: torch.from_numpy(np.concatenate([part[name] for _, part in pieces])) for name in fields}
        )
    return merged


def text_batches(sequences: Sequence[Sequence[int]], indexable: Sequence[Sequence[bool]], size: int) -> list[TextBatch]:
    """The corpus cut into batches of at most ``size`` texts of similar length (less padding)."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    return [
        TextBatch(
            indices=tuple(members),
            sequences=tuple(tuple(sequences[i]) for i in members),
            indexable=tuple(tuple(indexable[i]) for i in members),
        )
        for members in (order[start : start + size] for start in range(0, len(order), size))
    ]


def merge_passes(total: IndexPass | None, part: IndexPass, depth: int) -> IndexPass:
    """``total`` (None at first) with one more chunk's :class:`IndexPass` merged in, exactly."""
    if total is None:
        return part
    return IndexPass(
        tops=merge_tops([total.tops, part.tops], depth),
        bottoms=merge_tops([total.bottoms, part.bottoms], depth),
        stats=[a.merged(b) for a, b in zip(total.stats, part.stats)],
        tokens=[a.merged(b) for a, b in zip(total.tokens, part.tokens)] if total.tokens is not None else None,
    )


def merge_tops(parts: Sequence[Sequence[TopList]], depth: int) -> list[TopList]:
    """Per layer, the ``depth`` best positions of every neuron over all parts, best first (with the
    first ``EXAMPLES`` windows when every part has windows).

    ``parts``: one list of per-layer :class:`TopList` per chunk (sequence indices already global).
    The sort is stable, so within a part no entry moves ahead of one that was ahead of it, and
    the first ``EXAMPLES`` of the merged list come from the parts' first ``EXAMPLES``.
    """
    merged = []
    for layer_parts in zip(*parts):
        values = np.concatenate([top.values for top in layer_parts], axis=1)  # [d_mlp, sum k]
        best = np.argsort(-values, axis=1, kind="stable")[:, :depth]  # [d_mlp, <=depth]

        def pick(field: str) -> np.ndarray:
            return np.take_along_axis(np.concatenate([getattr(top, field) for top in layer_parts], axis=1), best, axis=1)

        merged.append(
            TopList(
                values=pick("values"), sequences=pick("sequences"), positions=pick("positions"),
                windows=_merged_windows(layer_parts, best) if all(top.windows is not None for top in layer_parts) else None,
            )
        )
    return merged


def _merged_windows(layer_parts: Sequence[TopList], best: np.ndarray) -> np.ndarray:
    """``[d_mlp, min(k, EXAMPLES), WINDOW]``: the windows of the merged list's first entries
    (``best`` ``[d_mlp, k]`` indexes the parts' entries side by side)."""
    joined = np.concatenate([top.padded_windows() for top in layer_parts], axis=1)  # [d_mlp, sum k, WINDOW]
    return np.take_along_axis(joined, best[:, :EXAMPLES, None], axis=1)
