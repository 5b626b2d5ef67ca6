"""Queries of the corpus index: a neuron's or a cluster's top activating tokens, saved as query files."""

from __future__ import annotations

import logging

from typing import Mapping

import numpy as np

from neuronscope.analysis.activations import batched_activations
from neuronscope.analysis.cluster_ranking import NeuronList, rank_cluster_positions
from neuronscope.analysis.tokens import context_snippet, indexable_positions, padding_id
from neuronscope.config import Settings
from neuronscope.errors import BadRequest, Conflict
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.clusters import ClusterService
from neuronscope.services.corpora import DEFAULT_CORPUS, CorpusService
from neuronscope.timestamps import utc_now
from neuronscope.services.validation import check_layer, check_neurons
from neuronscope.storage.files import JsonFolder
from neuronscope.storage.index import ActivationIndex, StoredSource
from neuronscope.storage.names import short_hash, slugify

RESCORE_BATCH = 32


log = logging.getLogger(__name__)


def _nothing_indexed(model: str, corpus: str | None) -> str:
    if corpus is not None:
        return f"Nothing of corpus {corpus!r} is indexed for {model} yet: index it with POST /api/corpora/{corpus}/index."
    return (
        f"Nothing is indexed for {model} yet: index the default corpus with POST /api/corpora/{DEFAULT_CORPUS}/index, "
        'texts with POST /api/activations/corpus {"use_samples": true} or {"texts": [...]}, or generate activation '
        "files with POST /api/activations/generate."
    )


def _token_entry(rank: int, activation: float, source: StoredSource, position: int) -> dict:
    context = context_snippet(source.tokens, position)
    return {
        "rank": rank,
        "token": source.tokens[position],
        "activation": round(float(activation), 6),
        "source": source.label,
        "source_kind": source.kind,
        "text_id": source.name if source.kind == "corpus" else None,
        "position": position,
        "context": context["snippet"],
        "context_parts": {key: context[key] for key in ("before", "token", "after")},
    }


class QueryService:
    def __init__(
        self, settings: Settings, manager: ModelManager, index: ActivationIndex, clusters: ClusterService, corpora: CorpusService
    ):
        self.settings = settings
        self.manager = manager
        self.index = index
        self.clusters = clusters
        self.corpora = corpora
        self.files = JsonFolder(settings.data_dir / "queries", "query")

    def _chosen_index(self, model: str, corpus: str | None) -> tuple[ActivationIndex, str | None]:
        """The index a query reads and its corpus: ``corpus``'s (404 when there is no such corpus);
        without one, the index of texts and activation files when it holds anything for ``model``,
        else the default corpus' when that does (what the server indexes after its first start)."""
        if corpus is not None:
            self.corpora.get(corpus)
            return self.corpora.store.index(corpus), corpus
        if not self.index.stats(model)["sources"] and self.corpora.store.has_index(DEFAULT_CORPUS):
            default = self.corpora.store.index(DEFAULT_CORPUS)
            if default.stats(model)["sources"]:
                return default, DEFAULT_CORPUS
        return self.index, None

    @staticmethod
    def _check_top_k(index: ActivationIndex, top_k: int) -> None:
        if top_k > index.depth:
            raise BadRequest(f"top_k must be <= {index.depth}: the index keeps the top {index.depth} positions per neuron")

    def neuron(self, layer: int, neuron: int, top_k: int, corpus: str | None = None) -> dict:
        """The ``top_k`` indexed token positions with the highest activation of neuron (layer, neuron),
        from ``corpus``'s index or the default choice of :meth:`_chosen_index`."""
        # A query reads only the model's name and sizes, so it does not wait for a running analysis.
        lm = self.manager.peek() or self.manager.ensure_loaded()
        index, corpus = self._chosen_index(lm.name, corpus)
        self._check_top_k(index, top_k)
        check_neurons(lm, layer, [neuron])
        hits = index.top(lm.name, layer, neuron, top_k)
        result = {
            "query": {"type": "neuron", "layer_index": layer, "neuron_index": neuron, "top_k": top_k, "corpus": corpus},
            "model_name": lm.name,
            "top_tokens": [_token_entry(rank, h.activation, h.source, h.position) for rank, h in enumerate(hits, 1)],
            "index": {**index.stats(lm.name), "corpus": corpus},
        }
        within = f"-{corpus}" if corpus is not None else ""
        model = f"{slugify(lm.name, fallback='model')}-{short_hash(lm.name, corpus or '', length=8)}"
        name = f"neuron-{model}{within}-layer{layer}-neuron{neuron}-top{top_k}.json"
        return self._save(name, result)

    def cluster(self, cluster_id: int, top_k: int, cluster_file: str | None = None, corpus: str | None = None) -> dict:
        """The ``top_k`` indexed token positions with the highest mean activation of a cluster's neurons.

        Uses the latest cluster file when ``cluster_file`` is None, and the index chosen as for
        :meth:`neuron`. Needs the cluster's model loaded (409 otherwise): candidates from the index
        are rescored exactly by forward passes.
        """
        name = cluster_file or self.clusters.latest()
        data = self.clusters.read(name)
        if not 0 <= cluster_id < data["n_clusters"]:
            raise BadRequest(f"cluster_id {cluster_id} is out of range: {name} has clusters 0..{data['n_clusters'] - 1}")
        layer = data["layer_index"]
        members = [n for n, label in enumerate(data["assignments"]) if label == cluster_id]
        if not members:
            raise BadRequest(f"cluster {cluster_id} of {name} has no neurons")
        with self.manager.use() as lm:
            if lm.name != data["model_name"]:
                raise Conflict(f"{name} was computed on {data['model_name']}, but {lm.name} is loaded: switch models first")
            index, corpus = self._chosen_index(lm.name, corpus)
            self._check_top_k(index, top_k)
            check_neurons(lm, check_layer(lm, layer), members)
            result = {
                "query": {"type": "cluster", "cluster_file": name, "cluster_id": cluster_id, "top_k": top_k, "corpus": corpus},
                "model_name": lm.name,
                "layer_index": layer,
                "cluster_size": len(members),
                **self._rank_cluster(lm, index, layer, members, top_k),
                "index": {**index.stats(lm.name), "corpus": corpus},
            }
        stem = name.removesuffix(".json")
        within = f"-{corpus}" if corpus is not None else ""
        return self._save(f"cluster-{stem}{within}-cluster{cluster_id}-top{top_k}.json", result)

    def _rank_cluster(self, lm: LoadedModel, index: ActivationIndex, layer: int, members: list[int], top_k: int) -> dict:
        stored = index.neuron_lists(lm.name, layer, members)
        if not stored:
            return {"top_tokens": [], "exact": True}
        lists = [
            NeuronList(rows.values, rows.sources, rows.positions, full=len(rows.values) >= index.depth)
            for rows in (stored[n] for n in members if n in stored)
        ]
        seen: dict[int, StoredSource] = {}

        def score(ids: list[int]) -> Mapping[int, np.ndarray]:
            sources = index.sources(ids)
            seen.update(sources)
            order = [sources[i] for i in ids]
            acts = batched_activations(
                lm.model, lm.adapter, [s.token_ids for s in order], [layer],
                pad_id=padding_id(lm.tokenizer), batch_size=RESCORE_BATCH,
            )
            scores = {}
            for source, per_layer in zip(order, acts):
                mean = per_layer[layer][:, members].mean(dim=1).double().cpu().numpy()  # [len]
                mean[~np.asarray(indexable_positions(lm.tokenizer, source.token_ids))] = np.nan
                scores[source.id] = mean
            return scores

        ranking = rank_cluster_positions(lists, score, top_k, indexed_sources=index.stats(lm.name)["sources"])
        return {
            "top_tokens": [
                _token_entry(rank, item.score, seen[item.source], item.position)
                for rank, item in enumerate(ranking.top, 1)
            ],
            "exact": ranking.exact,
            "candidates": ranking.candidates,
            "sources_rescored": ranking.sources_rescored,
        }

    def _save(self, name: str, result: dict) -> dict:
        result = {**result, "count": len(result["top_tokens"]), "created_at": utc_now()}
        if result["index"]["sources"] == 0:
            result["message"] = _nothing_indexed(result["model_name"], result["index"]["corpus"])
        try:
            self.files.write(name, result)
        except OSError:
            log.exception("could not save the query file %s; answering without it", name)
            return {**result, "saved": False}
        return {"filename": name, "saved": True, **result}

    def list_files(self) -> dict:
        files = self.files.list()
        return {"files": files, "count": len(files)}

    def read(self, name: str) -> dict:
        return {"filename": name, **self.files.read(name)}
