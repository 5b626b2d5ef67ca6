"""Neuron pages: one JSON document per (model, corpus, layer, neuron), from the corpus index
(the examples' activation windows included) and the weights (memoised per model identity)."""

from __future__ import annotations

import math

import numpy as np
import torch

from neuronscope.analysis.activations import neuron_activations
from neuronscope.analysis.neuron_stats import HISTOGRAM_EDGES, MAX_TRACKED_TOKENS, MIN_TOKEN_COUNT
from neuronscope.analysis.neuron_view import (
    EXAMPLES, extreme_entries, neuron_activation_rows, output_directions, output_logits, similar_neurons, window,
)
from neuronscope.analysis.scores import layer_magnitude, rank_layer
from neuronscope.analysis.tokens import padding_id, token_strings
from neuronscope.config import Settings
from neuronscope.errors import BadRequest
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.corpora import CorpusService
from neuronscope.services.long_runs import LongRunService
from neuronscope.services.validation import check_layer, check_neurons, encode_texts
from neuronscope.storage.index import ActivationIndex, Hit, NeuronRecord

OUTPUT_TOKENS = 20
SIMILAR = 10
SERVED_BINS = 50
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
INDEX_ENDPOINT = "corpora/index"


def _round(value: float) -> float:
    return round(float(value), 6)


def histogram_view(record: NeuronRecord) -> dict:
    """At most ``SERVED_BINS`` bins: the fixed bins from the first to the last non-empty one, merged
    in runs of equal length when there are more (counts stay exact); the outer edges are clamped
    to the exact minimum and maximum (the overflow bins have infinite edges)."""
    counts = record.histogram
    edges = np.concatenate([[record.minimum], HISTOGRAM_EDGES, [record.maximum]])
    used = np.nonzero(counts)[0]
    first, last = int(used[0]), int(used[-1])
    group = math.ceil((last - first + 1) / SERVED_BINS)
    starts = list(range(first, last + 1, group))
    merged = [int(counts[s : min(s + group, last + 1)].sum()) for s in starts]
    bounds = [edges[s] for s in starts] + [edges[last + 1]]
    bounds = np.clip(bounds, record.minimum, record.maximum)
    return {"edges": [_round(e) for e in bounds], "counts": merged}


def quantile(record: NeuronRecord, q: float) -> float:
    """The ``q`` quantile read from the fixed-bin histogram: linear inside the bin that holds it,
    clamped to the exact minimum and maximum."""
    counts = record.histogram.astype(np.float64)
    edges = np.concatenate([[record.minimum], HISTOGRAM_EDGES, [record.maximum]])
    target = q * counts.sum()
    cumulative = np.cumsum(counts)
    b = int(np.searchsorted(cumulative, target, side="left"))
    below = cumulative[b] - counts[b]
    low, high = max(edges[b], record.minimum), min(edges[b + 1], record.maximum)
    fraction = (target - below) / counts[b] if counts[b] else 0.0
    return float(np.clip(low + fraction * (high - low), record.minimum, record.maximum))


def activation_stats(record: NeuronRecord) -> dict:
    return {
        "tokens": record.count,
        "mean": _round(record.mean),
        "std": _round(math.sqrt(max(record.m2, 0.0) / max(record.count, 1))),
        "fraction_positive": _round(record.positive / max(record.count, 1)),
        "min": _round(record.minimum),
        "max": _round(record.maximum),
        "quantiles": [{"q": q, "value": _round(quantile(record, q))} for q in QUANTILES],
        "histogram": histogram_view(record),
    }


class NeuronService:
    def __init__(self, settings: Settings, manager: ModelManager, corpora: CorpusService, long_runs: LongRunService):
        self.settings = settings
        self.manager = manager
        self.corpora = corpora
        self.long_runs = long_runs

    def page(self, layer: int, neuron: int, corpus: str) -> dict:
        """The neuron page (see docs/neurons.md); 400 for a bad layer or neuron, 404 for an unknown corpus.

        While the corpus has nothing indexed for the loaded model (an indexing job may hold the
        model for minutes), the page is built from the weights alone, without waiting for the model.
        """
        self.corpora.get(corpus)
        index = self.corpora.store.index(corpus)
        current = self.manager.peek()
        if current is not None and index.neuron_stats(current.name, layer, neuron) is None:
            check_neurons(current, layer, [neuron])
            return self._build(current, current.known_identity, index, None, layer, neuron, corpus)
        with self.manager.use() as lm:
            check_neurons(lm, layer, [neuron])
            record = index.neuron_stats(lm.name, layer, neuron)
            if record is None:
                return self._build(lm, lm.identity(), index, None, layer, neuron, corpus)
            key = ("neuron-page", corpus, layer, neuron, index.version(lm.name))
            return lm.memo.get(key, lambda: self._build(lm, lm.identity(), index, record, layer, neuron, corpus))

    def search_token(self, token: str, corpus: str, layer: int | None, k: int) -> dict:
        """The neurons with the highest mean activation on ``token`` (a token string or id) over the
        corpus' indexed explore split, from the indexing statistics (no forward pass)."""
        self.corpora.get(corpus)
        with self.manager.use() as lm:
            if layer is not None:
                check_layer(lm, layer)
            token_id = self._token_id(lm, token)
            found = self.corpora.store.index(corpus).token_neurons(lm.name, token_id, None if layer is None else [layer])
        found.sort(key=lambda item: (-item[2], item[0], item[1]))
        result = {
            "model_name": lm.name, "corpus": corpus, "token": lm.tokenizer.decode([token_id]), "token_id": token_id,
            "occurrences": found[0][3] if found else None,
            "neurons": [{"layer": l, "neuron": n, "mean_activation": _round(m)} for l, n, m, _ in found[:k]],
        }
        if not found:
            result["message"] = (
                f"No statistics for this token in corpus {corpus!r} for {lm.name}: only the {MAX_TRACKED_TOKENS} most "
                f"frequent tokens of the indexed explore split, each seen at least {MIN_TOKEN_COUNT} times, are "
                f"searchable (is the corpus indexed for this model? POST /api/corpora/{corpus}/index)."
            )
        return result

    @staticmethod
    def _token_id(lm: LoadedModel, token: str) -> int:
        """``token`` as one token id: a number, or a string the tokenizer encodes to exactly one token; else 400."""
        vocab = lm.adapter.unembedding_weight().shape[0]
        if token.isascii() and token.isdigit():
            if int(token) >= vocab:
                raise BadRequest(f"token id {token} is out of range: the vocabulary has {vocab} tokens")
            return int(token)
        ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = token_strings(lm.tokenizer, ids)
            raise BadRequest(f"{token!r} is {len(ids)} tokens ({pieces[:10]}); search for one token or a token id")
        return int(ids[0])

    def search_text(self, text: str, layer: int | None, k: int) -> dict:
        """Run ``text`` once; per token, the ``k`` neurons (of ``layer``, or of any layer) with the highest activation."""
        with self.manager.use() as lm:
            if layer is not None:
                check_layer(lm, layer)
            ids = encode_texts(lm, [text], self.settings.max_input_tokens)[0]
            layers = neuron_activations(lm.model, lm.adapter, ids)  # per layer [seq, d_mlp]
            chosen = list(range(len(layers))) if layer is None else [layer]
            token_ids = ids[0].tolist()
            tokens = token_strings(lm.tokenizer, token_ids)
        every = torch.cat([layers[l].float().cpu() for l in chosen], dim=1)  # [seq, sum d_mlp]
        best = every.topk(min(k, every.shape[1]), dim=1)  # [seq, k]
        starts = torch.tensor([0, *np.cumsum([layers[l].shape[1] for l in chosen])[:-1].tolist()])
        slot = torch.searchsorted(starts, best.indices, right=True) - 1  # [seq, k]: position in chosen
        found = zip(slot.tolist(), (best.indices - starts[slot]).tolist(), best.values.tolist())
        return {
            "model_name": lm.name,
            "tokens": [
                {
                    "token": token, "token_id": token_id,
                    "neurons": [
                        {"layer": chosen[j], "neuron": n, "activation": _round(v)} for j, n, v in zip(*row)
                    ],
                }
                for (token, token_id), row in zip(zip(tokens, token_ids), found)
            ],
        }

    def activations(self, layer: int, neuron: int, text: str) -> dict:
        """Neuron (layer, neuron)'s activation at every token of ``text``."""
        with self.manager.use() as lm:
            check_neurons(lm, layer, [neuron])
            ids = encode_texts(lm, [text], self.settings.max_input_tokens)[0][0].tolist()
            (acts,) = neuron_activation_rows(lm.model, lm.adapter, layer, neuron, [ids], pad_id=padding_id(lm.tokenizer))
            tokens = token_strings(lm.tokenizer, ids)
        peak = int(np.argmax(acts))
        return {
            "model_name": lm.name, "layer": layer, "neuron": neuron, "tokens": tokens, "token_ids": ids,
            "activations": [_round(a) for a in acts], "max_position": peak, "max_activation": _round(acts[peak]),
        }

    def _build(
        self, lm: LoadedModel, identity: str | None, index: ActivationIndex, record: NeuronRecord | None,
        layer: int, neuron: int, corpus: str,
    ) -> dict:
        tops = index.top(lm.name, layer, neuron, EXAMPLES)
        bottoms = index.top(lm.name, layer, neuron, EXAMPLES, tail="bottom")
        examples = self._examples(lm, layer, neuron, [*tops, *bottoms])
        return {
            "model_name": lm.name,
            "model_identity": identity,
            "corpus": corpus,
            "layer": layer,
            "neuron": neuron,
            "status": self._status(corpus, record),
            "top_examples": examples[: len(tops)],
            "bottom_examples": examples[len(tops):],
            "activation_stats": activation_stats(record) if record is not None else None,
            "input_tokens": self._input_tokens(lm, record),
            "explanation": self._explanation(lm, record),
            "output_tokens": self._output_tokens(lm, layer, neuron),
            "weights": self._weights(lm, layer, neuron),
            "similar_neurons": self._similar(lm, layer, neuron),
        }

    @staticmethod
    def _similar(lm: LoadedModel, layer: int, neuron: int) -> list[dict]:
        """The ``SIMILAR`` neurons with the closest output directions (all directions memoised per model)."""
        directions = lm.memo.get(("output-directions",), lambda: output_directions(lm.adapter))
        return [
            {"layer": other, "neuron": n, "cosine": _round(c)} for other, n, c in similar_neurons(directions, layer, neuron, SIMILAR)
        ]

    def _status(self, corpus: str, record: NeuronRecord | None) -> dict:
        """``indexed``, or ``indexing`` with the running job's progress, or ``not_indexed``."""
        if record is not None:
            return {"state": "indexed"}
        jobs = self.long_runs.jobs
        for job in jobs.recent():
            if job["endpoint"] == INDEX_ENDPOINT and job["status"] in ("queued", "running"):
                if jobs.describe(job["job_id"]).get("params", {}).get("name") == corpus:
                    return {"state": "indexing", "progress": job["progress"], "job_id": job["job_id"]}
        return {"state": "not_indexed"}

    def _examples(self, lm: LoadedModel, layer: int, neuron: int, hits: list[Hit]) -> list[dict]:
        """Each hit's window of at most 32 tokens with the neuron's activation at every token of it:
        the window stored by the indexing pass, else computed (one forward pass per distinct text,
        as far as its last window reaches)."""
        spans = [window(len(hit.source.token_ids), hit.position) for hit in hits]
        missing = [(hit, span) for hit, span in zip(hits, spans) if hit.window is None]
        computed = self._computed_windows(lm, layer, neuron, missing)
        rows = [
            hit.window[: end - start] if hit.window is not None else computed[hit.source.id][start:end]
            for hit, (start, end) in zip(hits, spans)
        ]
        return [
            {
                "text_id": hit.source.name,
                "tokens": hit.source.tokens[start:end],
                "activations": [_round(a) for a in acts],
                "max_position": hit.position - start,
                "max_activation": _round(hit.activation),
            }
            for hit, (start, end), acts in zip(hits, spans, rows)
        ]

    @staticmethod
    def _computed_windows(
        lm: LoadedModel, layer: int, neuron: int, wanted: list[tuple[Hit, tuple[int, int]]]
    ) -> dict[int, np.ndarray]:
        """Per source id of the ``wanted`` hits, the neuron's activations ``[reach]`` up to its last window's end."""
        reach: dict[int, int] = {}
        for hit, (_, end) in wanted:
            reach[hit.source.id] = max(reach.get(hit.source.id, 0), end)
        sources = {hit.source.id: hit.source for hit, _ in wanted}
        texts = list(reach)
        prefixes = [sources[i].token_ids[: reach[i]] for i in texts]
        rows = neuron_activation_rows(lm.model, lm.adapter, layer, neuron, prefixes, pad_id=padding_id(lm.tokenizer))
        return dict(zip(texts, rows))

    @staticmethod
    def _input_tokens(lm: LoadedModel, record: NeuronRecord | None) -> list[dict]:
        if record is None:
            return []
        kept = [(i, m, c) for i, m, c in zip(record.input_ids, record.input_means, record.input_counts) if i >= 0]
        strings = token_strings(lm.tokenizer, [i for i, _, _ in kept]) if kept else []
        return [
            {"token": s, "token_id": i, "mean_activation": _round(m), "count": c}
            for s, (i, m, c) in zip(strings, kept)
        ]

    def _explanation(self, lm: LoadedModel, record: NeuronRecord | None) -> dict | None:
        if record is None:
            return None
        tokens = [t["token"] for t in self._input_tokens(lm, record)[:5]]
        text = "fires on " + ", ".join(repr(t) for t in tokens) if tokens else "no frequent input token"
        return {
            "method": "token lookup: mean activation per token id on the first half, Pearson r on the second half",
            "text": text,
            "score": _round(record.score) if record.score is not None else None,
        }

    @staticmethod
    def _output_tokens(lm: LoadedModel, layer: int, neuron: int) -> dict:
        logits = output_logits(lm.adapter, layer, neuron)  # [vocab]
        promoted, suppressed = extreme_entries(logits, OUTPUT_TOKENS)

        def entries(ids: list[int]) -> list[dict]:
            return [
                {"token": lm.tokenizer.decode([i]), "token_id": i, "value": _round(logits[i])} for i in ids
            ]

        formula = f"W_U · (γ ⊙ {lm.adapter.output_direction_formula})"
        return {"formula": formula, "promoted": entries(promoted), "suppressed": entries(suppressed)}

    @staticmethod
    def _weights(lm: LoadedModel, layer: int, neuron: int) -> dict:
        """The magnitude score (mean |w| over the neuron's weights) and its rank in the layer
        (1 = smallest, as in pruning candidates: ties by neuron index)."""
        scores = layer_magnitude(lm.adapter, layer).detach()  # [d_mlp]
        rank = int(rank_layer(scores, 100.0).ranks[neuron])
        return {
            "output_norm": _round(lm.adapter.w_out(layer)[neuron].detach().float().norm()),
            "methods": {"magnitude": {"score": _round(scores[neuron]), "rank": rank, "of": int(scores.shape[0])}},
        }
