"""Activation files (generate, list, read slices) and indexing of texts into the corpus index."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Mapping, Sequence

import numpy as np
import torch

from neuronscope.analysis.activations import layer_summary, neuron_activations
from neuronscope.analysis.compare import Side, kl_per_position, original_and_ablated
from neuronscope.analysis.max_activating import TopList, top_from_activations
from neuronscope.analysis.neuron_stats import token_view, tracked_tokens
from neuronscope.analysis.progress import ProgressFn, no_progress, scaled
from neuronscope.analysis.tokens import indexable_positions, padding_id, token_strings
from neuronscope.config import Settings
from neuronscope.errors import BadRequest, Conflict
from neuronscope.executors import Executor, Sweep, SweepStats
from neuronscope.executors.chunks import merge_passes, merge_tops, text_batches
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.samples import SampleService
from neuronscope.timestamps import utc_now
from neuronscope.services.validation import check_groups, check_layer, encode_texts
from neuronscope.storage.activation_files import ActivationStore
from neuronscope.storage.index import ActivationIndex, NewSource
from neuronscope.storage.names import activation_filename

log = logging.getLogger(__name__)

SERVED_DECIMALS = 6


def _rounded(values: np.ndarray) -> list[float]:
    return np.round(values.astype(np.float64), SERVED_DECIMALS).tolist()


class ActivationService:
    def __init__(
        self, settings: Settings, manager: ModelManager, index: ActivationIndex, samples: SampleService, executor: Executor
    ):
        self.settings = settings
        self.executor = executor
        self.manager = manager
        self.index = index
        self.samples = samples
        self.store = ActivationStore(settings.data_dir / "activations")

    def generate(self, prompt: str, model_name: str | None = None) -> dict:
        """Capture every neuron's activation at every token of ``prompt``, save and index it.

        A ``model_name`` other than the loaded model's is switched to first (4xx/503 when it
        cannot be loaded; the previous model then keeps serving).
        """
        if model_name is not None:
            self.manager.switch(model_name)
        with self.manager.use() as lm:
            if model_name is not None and lm.name != model_name:
                raise Conflict(f"another request switched the model to {lm.name!r}; retry")
            ids = encode_texts(lm, [prompt], self.settings.max_input_tokens)[0]
            layers = neuron_activations(lm.model, lm.adapter, ids)
            token_ids = ids[0].tolist()
            tokens = token_strings(lm.tokenizer, token_ids)
            name = activation_filename(prompt, lm.name)
            meta = {
                "prompt": prompt,
                "model_name": lm.name,
                "created_at": utc_now(),
                "tokens": tokens,
                "token_ids": token_ids,
                "n_tokens": len(token_ids),
                "n_layers": len(layers),
                "neurons_per_layer": [acts.shape[1] for acts in layers],
                "storage": {"format": "npz", "dtype": "float32", "arrays": "layer_<L>: [tokens, neurons]"},
            }
            self.store.save(name, meta, [acts.cpu().numpy() for acts in layers])
            newly_indexed = self._index_file(lm, name, token_ids, tokens, layers)
            log.info("saved the activations of %d tokens on %s as %s", len(token_ids), lm.name, name)
        summary = [{"layer_index": i, **layer_summary(acts, tokens)} for i, acts in enumerate(layers)]
        return {
            "message": f"Activations of {len(tokens)} tokens on {len(layers)} layers saved as {name}",
            "filename": name,
            **{key: meta[key] for key in ("prompt", "model_name", "created_at", "tokens", "n_tokens", "n_layers")},
            "neurons_per_layer": meta["neurons_per_layer"],
            "indexed": newly_indexed,
            "summary": summary,
        }

    def _index_file(self, lm: LoadedModel, name: str, token_ids: list[int], tokens: list[str], layers: list[torch.Tensor]) -> bool:
        """Add a new activation file's top positions to the index; False when it was indexed before."""
        if self.index.indexed_names(lm.name, "file", [name]):
            return False
        indexable = torch.as_tensor(indexable_positions(lm.tokenizer, token_ids))
        tops = top_from_activations(layers, indexable, self.index.depth)
        self.index.add(lm.name, [NewSource("file", name, token_ids, tokens)], tops)
        return True

    def _top_positions(
        self, lm: LoadedModel, sequences: list[list[int]], batch_size: int, progress: ProgressFn
    ) -> tuple[list[TopList], SweepStats]:
        """The top positions per neuron of every layer over ``sequences``, in chunks of
        ``chunk_texts`` texts on the executor (waiting requests run between chunks), merged."""
        indexable = [indexable_positions(lm.tokenizer, ids) for ids in sequences]
        chunks = text_batches(sequences, indexable, self.settings.chunk_texts)
        shared = {"pad_id": padding_id(lm.tokenizer), "depth": self.index.depth, "batch_size": batch_size}
        parts, stats = self.executor.run(lm, Sweep("corpus", shared, chunks), progress, self.manager.let_waiting_run)
        return merge_tops(parts, self.index.depth), stats

    def _index_pass(
        self, lm: LoadedModel, sequences: list[list[int]], depth: int, batch_size: int, progress: ProgressFn
    ) -> tuple[dict, SweepStats]:
        """Both tails, statistics and token view of every layer over ``sequences``: chunks of
        ``chunk_texts`` texts run on the executor one at a time and are merged as they come (the
        per-token sums of a chunk are large). Between chunks, requests waiting for the model run
        first (:meth:`ModelManager.let_waiting_run`). The first half of the texts (in order) is half 0 of
        the lookup explanation, the rest half 1."""
        indexable = [indexable_positions(lm.tokenizer, ids) for ids in sequences]
        chunks = text_batches(sequences, indexable, self.settings.chunk_texts)
        tracked = tracked_tokens(sequences)
        halves = [0 if i < len(sequences) / 2 else 1 for i in range(len(sequences))]
        shared = {
            "pad_id": padding_id(lm.tokenizer), "depth": depth, "batch_size": batch_size,
            "tracked": tracked.tolist(), "halves": halves,
        }
        total, stats = None, SweepStats(self.executor.name, workers=1, chunks=len(chunks))
        for number, chunk in enumerate(chunks):
            if number:
                self.manager.let_waiting_run()
            within = scaled(progress, number / len(chunks), (number + 1) / len(chunks))
            (part,), chunk_stats = self.executor.run(lm, Sweep("index", shared, [chunk]), within)
            stats.chunks_done += chunk_stats.chunks_done
            stats.retried_chunks += chunk_stats.retried_chunks
            total = merge_passes(total, part, depth)
        views = [token_view(sums, tracked) for sums in total.tokens]
        return {"tops": total.tops, "bottoms": total.bottoms, "stats": total.stats, "views": views}, stats

    def list_files(self) -> dict:
        files = self.store.list()
        return {"files": files, "count": len(files)}

    def read(self, name: str, layers: Sequence[int] | None = None, top_k: int | None = None) -> dict:
        """The documented JSON of file ``name``, optionally only ``layers`` and per layer the
        ``top_k`` neurons with the largest |activation| (largest first)."""
        meta = self.store.meta(name)
        n_layers = meta["n_layers"]
        chosen = list(range(n_layers)) if layers is None else list(layers)
        bad = [layer for layer in chosen if not 0 <= layer < n_layers]
        if bad:
            raise BadRequest(f"layers {bad} are out of range: {name} has layers 0..{n_layers - 1}")
        neurons = [min(meta["neurons_per_layer"][layer], top_k or meta["neurons_per_layer"][layer]) for layer in chosen]
        values = meta["n_tokens"] * sum(neurons)
        if values > self.settings.max_served_values:
            raise BadRequest(
                f"this slice has {values} values; the limit is {self.settings.max_served_values} "
                "(max_served_values): ask for fewer layers (?layer=) or neurons (?top_k=)"
            )
        arrays = self.store.layers(name, chosen)
        return {
            "filename": name,
            **{key: meta[key] for key in ("prompt", "model_name", "created_at", "tokens", "n_tokens", "n_layers")},
            "neurons_per_layer": meta["neurons_per_layer"],
            "slice": {"layers": chosen if layers is not None else "all", "top_k": top_k},
            "layers": [self._layer_json(layer, arrays[layer], top_k) for layer in chosen],
        }

    @staticmethod
    def _layer_json(layer: int, acts: np.ndarray, top_k: int | None) -> dict:
        """``acts`` ``[tokens, neurons]`` as ``{layer_index, neurons: [{neuron_index, activations}]}``."""
        if top_k is None:
            neurons = range(acts.shape[1])
        else:
            peak = np.abs(acts).max(axis=0)  # [neurons]
            neurons = np.argsort(-peak, kind="stable")[:top_k].tolist()
        return {
            "layer_index": layer,
            "neurons": [{"neuron_index": int(n), "activations": _rounded(acts[:, n])} for n in neurons],
        }

    def compare(
        self, prompt: str, ablate: Mapping[int, Sequence[int]], layer: int, top_k: int, predictions: int
    ) -> dict:
        """``prompt`` on the loaded model and with ``ablate``'s neurons set to 0 (the pruned model
        without compensation, by hooks): ``layer``'s ``top_k`` neurons by the original's largest
        |activation|, both sides' activations of those neurons and their ``predictions`` most likely
        next tokens at every position, and the KL divergence between the two distributions there."""
        with self.manager.use() as lm:
            check_layer(lm, layer)
            removed = check_groups(lm, ablate)
            ids = encode_texts(lm, [prompt], self.settings.max_input_tokens)[0]
            original, pruned = original_and_ablated(lm.model, lm.adapter, ids, layer, removed)
            token_ids = ids[0].tolist()
            tokens = token_strings(lm.tokenizer, token_ids)
            sides = {name: self._side(lm, side, predictions) for name, side in (("original", original), ("pruned", pruned))}
        peak = original.activations.abs().max(dim=0).values  # [d_mlp]
        neurons = peak.argsort(descending=True, stable=True)[:top_k].tolist()
        kl = kl_per_position(original.log_probs, pruned.log_probs)  # [seq]
        for name, side in (("original", original), ("pruned", pruned)):
            sides[name]["neurons"] = [
                {"neuron_index": n, "activations": _rounded(side.activations[:, n].numpy())} for n in neurons
            ]
        top1 = original.log_probs.argmax(dim=-1) == pruned.log_probs.argmax(dim=-1)  # [seq]
        return {
            "model_name": lm.name,
            "prompt": prompt,
            "tokens": tokens,
            "token_ids": token_ids,
            "layer_index": layer,
            "ablated_neurons": sum(len(neurons) for neurons in removed.values()),
            **sides,
            "kl_divergence": _rounded(kl.numpy()),
            "mean_kl_divergence": round(float(kl.double().mean()), SERVED_DECIMALS),
            "top1_agreement": round(float(top1.double().mean()), SERVED_DECIMALS),
        }

    @staticmethod
    def _side(lm: LoadedModel, side: Side, k: int) -> dict:
        """The ``k`` most likely next tokens at every position of one side, with their probabilities."""
        best = side.log_probs.topk(min(k, side.log_probs.shape[1]), dim=-1)
        return {
            "predictions": [
                [
                    {"token": lm.tokenizer.decode([i]), "token_id": i, "probability": round(float(np.exp(v)), SERVED_DECIMALS)}
                    for v, i in zip(values, indices)
                ]
                for values, indices in zip(best.values.tolist(), best.indices.tolist())
            ]
        }

    def index_corpus(
        self, texts: Sequence[str] | None, *, batch_size: int, progress: ProgressFn = no_progress
    ) -> dict:
        """Index ``texts`` (the stored samples that fit the token limit when None) into the corpus index, in padded batches.

        Texts already indexed for the loaded model (same token ids) are skipped.
        """
        with self.manager.use() as lm:
            texts = list(self.samples.fitting(lm, self.settings.max_input_tokens) if texts is None else texts)
            encoded = [ids[0].tolist() for ids in encode_texts(lm, texts, self.settings.max_input_tokens)]
            names = [hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()[:24] for ids in encoded]
            return {**self.index_sequences(lm, self.index, names, encoded, batch_size, progress), "texts_received": len(texts)}

    def index_sequences(
        self, lm: LoadedModel, index: ActivationIndex, names: Sequence[str], encoded: Sequence[list[int]],
        batch_size: int, progress: ProgressFn, *, full: bool = False,
    ) -> dict:
        """Add the texts ``encoded`` (token ids), named ``names``, to ``index`` for ``lm``, skipping the
        names already there (so indexing the same texts again is a no-op); the caller holds the model.

        ``full``: also both tails, the statistics and the token view (:meth:`_index_pass`).
        """
        known = index.indexed_names(lm.name, "corpus", names)
        fresh = {name: ids for name, ids in zip(names, encoded) if name not in known}
        sequences = list(fresh.values())
        started = time.perf_counter()
        stats = None
        if sequences:
            scaled = _logged(lambda f, step: progress(0.9 * f, step))
            sources = [NewSource("corpus", name, ids, token_strings(lm.tokenizer, ids)) for name, ids in fresh.items()]
            if full:
                extra, stats = self._index_pass(lm, sequences, index.depth, batch_size, scaled)
                index.add(lm.name, sources, extra.pop("tops"), **extra)
            else:
                tops, stats = self._top_positions(lm, sequences, batch_size, scaled)
                index.add(lm.name, sources, tops)
        seconds = time.perf_counter() - started
        progress(1.0, "merged into the index")
        tokens = sum(len(ids) for ids in sequences)
        log.info("indexed %d texts (%d tokens) of %s in %.2f s", len(sequences), tokens, lm.name, seconds)
        return {
            "message": f"Indexed {len(sequences)} new texts ({tokens} tokens) for {lm.name}",
            "model_name": lm.name,
            "texts_received": len(names),
            "texts_indexed": len(sequences),
            "texts_skipped": len(names) - len(sequences),
            "tokens_indexed": tokens,
            "batch_size": batch_size,
            "seconds": round(seconds, 4),
            "tokens_per_second": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
            "executor": stats.as_dict() if stats else None,
            "index": index.stats(lm.name),
        }


def _logged(progress: ProgressFn) -> ProgressFn:
    """``progress`` that also logs each step."""

    def report(fraction: float, step: str) -> None:
        log.info("corpus indexing %3.0f%%: %s", 100 * fraction, step)
        progress(fraction, step)

    return report
