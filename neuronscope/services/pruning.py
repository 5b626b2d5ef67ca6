"""Pruning analysis: validation against the loaded model, orchestration, caches and exports.

Every analysis holds the model (``manager.use()``) from validation to the last number, so a
switch never happens under it. Weight analyses and neuron scores are memoized on the loaded
model (``LoadedModel.memo``, gone with it);
the impact / importance / batch results run since start are kept (the last
:data:`HISTORY_LIMIT`, holding at most :data:`HISTORY_ROWS` per-neuron rows in all, so a few
whole-model sweeps cannot fill the memory) for ``export {"type": "impact"}``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Sequence

import torch

from neuronscope.analysis.ablation_engine import Ablation, ablation_sweep
from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.impact import ABLATIONS, HIGH_IMPACT, SAFE_IMPACT
from neuronscope.analysis.importance import LayerImportance, critical_mask
from neuronscope.analysis.moments import activation_moments
from neuronscope.analysis.progress import ProgressFn, no_progress, scaled
from neuronscope.analysis.scores import CALIBRATED_METHODS, SCORE_METHODS, rank_layer  # noqa: F401 - SCORE_METHODS: the API's choices
from neuronscope.analysis.weights import analyze_weights
from neuronscope.config import Settings
from neuronscope.errors import BadRequest
from neuronscope.executors import Executor, Sweep, SweepStats
from neuronscope.executors.chunks import merge_importance, neuron_ranges
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.calibration import calibration, neuron_scores
from neuronscope.services.samples import SampleService
from neuronscope.services.validation import check_layer, check_neurons, encode_texts, token_limit
from neuronscope.storage.files import JsonFolder
from neuronscope.timestamps import utc_now

IMPORTANCE_METHODS = ("ablation", "attribution")
ABLATION_KINDS = ABLATIONS
EXPORT_FILES = {"weight": "weight_analysis.json", "impact": "impact_analysis.json"}
HISTORY_LIMIT = 100
HISTORY_ROWS = 200_000
DEFAULT_THRESHOLD = 10.0


class PruningService:
    def __init__(self, settings: Settings, manager: ModelManager, samples: SampleService, executor: Executor):
        self.settings = settings
        self.manager = manager
        self.samples = samples
        self.executor = executor
        self.exports = JsonFolder(settings.data_dir / "pruning", "pruning export")
        self._history: deque[dict] = deque(maxlen=HISTORY_LIMIT)
        self._history_lock = threading.Lock()

    # -- memoized on the loaded model (only touched while the model is held) -------------

    def _weight_report(self, lm: LoadedModel, tolerance: float, progress: ProgressFn) -> dict:
        return lm.memo.get(("weight-analysis", tolerance), lambda: analyze_weights(lm.adapter, tolerance, progress))

    def _calibration_texts(self) -> list[str]:
        return self.samples.list()[: self.settings.max_texts]

    def _neuron_scores(self, lm: LoadedModel, method: str, progress: ProgressFn) -> dict[int, torch.Tensor]:
        """Per-layer scores ``[d_mlp]`` by ``method``; calibrated methods read the stored samples."""
        inputs = Calibration()
        if method in CALIBRATED_METHODS:
            inputs = calibration(lm, self._calibration_texts(), self.settings.max_input_tokens)
        return neuron_scores(lm, method, inputs, progress)

    def _remember(self, analysis: str, model: str, request: dict, result: dict) -> None:
        """Keep a result for the impact export, dropping the oldest beyond the entry and row limits."""
        entry = {"analysis": analysis, "model_name": model, "created_at": utc_now(), "request": request, "result": result}
        with self._history_lock:
            self._history.append(entry)
            while len(self._history) > 1 and sum(_rows(e["result"]) for e in self._history) > HISTORY_ROWS:
                self._history.popleft()

    # -- endpoints -----------------------------------------------------------------------

    def weight_analysis(self, tolerance: float = 0.0, progress: ProgressFn = no_progress) -> dict:
        """Weight statistics of the loaded model (cached per model and tolerance)."""
        with self.manager.use() as lm:
            return {**self._weight_report(lm, tolerance, progress), "model_name": lm.name}

    def candidates(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        method: str = "magnitude",
        layer_index: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Neurons whose score is at most their layer's ``threshold``-th percentile."""
        with self.manager.use() as lm:
            return self._candidates(lm, threshold, method, layer_index, limit, offset, progress)

    def _candidates(
        self,
        lm: LoadedModel,
        threshold: float,
        method: str,
        layer_index: int | None,
        limit: int | None,
        offset: int,
        progress: ProgressFn,
    ) -> dict:
        layers = [check_layer(lm, layer_index)] if layer_index is not None else list(range(lm.adapter.n_layers))
        magnitudes = self._neuron_scores(lm, "magnitude", no_progress)
        scores = self._neuron_scores(lm, method, progress)
        rows, summaries = [], []
        for layer in layers:
            ranking = rank_layer(scores[layer], threshold)
            chosen = torch.nonzero(ranking.is_candidate).flatten()
            chosen = chosen[torch.argsort(ranking.ranks[chosen])].tolist()
            magnitude, score = magnitudes[layer].tolist(), scores[layer].tolist()
            ranks, safety = ranking.ranks.tolist(), ranking.pruning_score.tolist()
            rows.extend(
                {
                    "layer_index": layer,
                    "neuron_index": n,
                    "weight_magnitude": magnitude[n],
                    "weight_rank": ranks[n],
                    "is_pruning_candidate": True,
                    "pruning_score": safety[n],
                    "score": score[n],
                }
                for n in chosen
            )
            summaries.append(
                {"layer_index": layer, "total_neurons": len(score), "cutoff": ranking.cutoff, "candidates": len(chosen)}
            )
        end = None if limit is None else offset + limit
        return {
            "candidates": rows[offset:end],
            "total_candidates": len(rows),
            "threshold_percentile": threshold,
            "method": method,
            "layer_index": layer_index,
            "offset": offset,
            "limit": limit,
            "layers": summaries,
            "calibration_texts": len(self._calibration_texts()) if method in CALIBRATED_METHODS else 0,
            "model_name": lm.name,
        }

    def impact_analysis(
        self, layer: int, neurons: Sequence[int], text: str, ablation: str = "zero", progress: ProgressFn = no_progress
    ) -> dict:
        """Ablate ``neurons`` of ``layer`` together on ``text``."""
        with self.manager.use() as lm:
            check_neurons(lm, layer, neurons)
            ids = encode_texts(lm, [text], self.settings.max_input_tokens)
            totals = ablation_sweep(lm.adapter, ids, [{layer: list(neurons)}], ablation=ablation, with_logits=True, progress=progress)
            metrics = totals.results()[0]
            result = {
                "impact_score": metrics["impact_score"],
                "mean_change": metrics["mean_change"],
                "max_change": metrics["max_change"],
                "affected_neurons": list(neurons),
                "safe_to_prune": metrics["safe_to_prune"],
                "impact_level": metrics["impact_level"],
                "kl_divergence": metrics["kl_divergence"],
                "loss_delta": metrics["loss_delta"],
                "layer_index": layer,
                "ablation": ablation,
                "tokens": ids[0].shape[1],
                "model_name": lm.name,
            }
            request = {"layer_index": layer, "neuron_indices": list(neurons), "input_text": text, "ablation": ablation}
            self._remember("impact-analysis", lm.name, request, result)
            return result

    def neuron_importance(
        self,
        layers: int | Sequence[int] | str,
        texts: Sequence[str],
        method: str = "ablation",
        ablation: str = "zero",
        critical_threshold: float | None = None,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Every neuron of one layer (``layers`` an int) or of several (a list, or ``"all"``)
        ablated on its own (``ablation``) or estimated (``attribution``).

        The work is split into neuron ranges of ``chunk_neurons`` (a whole layer per chunk for
        attribution) run on the configured executor; critical neurons are chosen per layer.
        """
        with self.manager.use() as lm:
            chosen = self._importance_layers(lm, layers)
            ids = encode_texts(lm, texts, self.settings.max_input_tokens)
            per_layer, stats = self._sweep_importance(lm, chosen, ids, method, ablation, progress)
            critical = {n: critical_mask(per_layer[n].impact_score, critical_threshold) for n in chosen}
            result = {
                "importance_scores": [row for n in chosen for row in _importance_rows(n, per_layer[n], critical[n])],
                "total_neurons": sum(lm.adapter.d_mlp(n) for n in chosen),
                "critical_neurons": sum(int(critical[n].sum()) for n in chosen),
                **({"layer_index": layers} if isinstance(layers, int) else {"layer_indices": chosen}),
                "layers": [
                    {"layer_index": n, "total_neurons": lm.adapter.d_mlp(n), "critical_neurons": int(critical[n].sum())}
                    for n in chosen
                ],
                "method": method,
                "ablation": ablation,
                "critical_rule": (
                    f"impact_score >= {critical_threshold}"
                    if critical_threshold is not None
                    else "top quartile of each layer: the ceil(n/4) largest impact scores"
                ),
                "tokens": sum(i.shape[1] for i in ids),
                "executor": stats.as_dict(),
                "model_name": lm.name,
            }
            request = {
                **({"layer_index": layers} if isinstance(layers, int) else {"layer_indices": layers}),
                "input_texts": list(texts), "method": method,
                "ablation": ablation, "critical_threshold": critical_threshold,
            }
            self._remember("neuron-importance", lm.name, request, result)
            return result

    @staticmethod
    def _importance_layers(lm: LoadedModel, layers: int | Sequence[int] | str) -> list[int]:
        """The layers asked for, checked against the model."""
        if layers == "all":
            return list(range(lm.adapter.n_layers))
        return [check_layer(lm, n) for n in ([layers] if isinstance(layers, int) else layers)]

    def _sweep_importance(
        self, lm: LoadedModel, layers: list[int], ids: list[torch.Tensor], method: str, ablation: str, progress: ProgressFn
    ) -> tuple[dict[int, LayerImportance], SweepStats]:
        """Per-layer importance computed chunk by chunk on the executor."""
        size = self.settings.chunk_neurons if method == "ablation" else max(lm.adapter.d_mlp(n) for n in layers)
        ranges = neuron_ranges({n: lm.adapter.d_mlp(n) for n in layers}, size)
        shared = {"texts": [i[0].tolist() for i in ids], "method": method, "ablation": ablation}
        parts, stats = self.executor.run(lm, Sweep("importance", shared, ranges), progress, self.manager.let_waiting_run)
        return merge_importance(ranges, parts), stats

    def batch_analysis(
        self,
        candidates: Sequence[tuple[int, int]],
        texts: Sequence[str],
        batch_size: int = 10,
        ablation: str = "zero",
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Each candidate's impact alone, then the lowest-impact ones ablated together (k = 1..batch_size)."""
        with self.manager.use() as lm:
            self._check_candidates(lm, candidates)
            ids = encode_texts(lm, texts, self.settings.max_input_tokens)
            layers = sorted({layer for layer, _ in candidates})
            moments = activation_moments(lm.adapter, ids, layers) if ablation == "mean" else None
            sweep = dict(ablation=ablation, with_logits=True, moments=moments)
            singles = [{layer: [neuron]} for layer, neuron in candidates]
            individual = ablation_sweep(lm.adapter, ids, singles, **sweep, progress=scaled(progress, 0.0, 0.5)).results()
            order = sorted(range(len(candidates)), key=lambda i: individual[i]["impact_score"])
            k_max = min(batch_size, len(candidates))
            prefixes = [_group([candidates[i] for i in order[:k]]) for k in range(1, k_max + 1)]
            curve = ablation_sweep(lm.adapter, ids, prefixes, **sweep, progress=scaled(progress, 0.5, 1.0)).results()
            impacts = [
                {"layer_index": layer, "neuron_index": neuron, **metrics}
                for (layer, neuron), metrics in zip(candidates, individual)
            ]
            ablated_together = [{"layer_index": candidates[i][0], "neuron_index": candidates[i][1]} for i in order[:k_max]]
            result = {
                "individual_impacts": impacts,
                "cumulative_impact": {**curve[-1], "count": k_max, "neurons": ablated_together},
                "recommendations": _recommendations(impacts, curve),
                "cumulative_curve": [
                    {"k": k, **metrics, "added": added}
                    for k, (added, metrics) in enumerate(zip(ablated_together, curve), start=1)
                ],
                "batch_size": batch_size,
                "ablation": ablation,
                "tokens": sum(i.shape[1] for i in ids),
                "model_name": lm.name,
            }
            request = {
                "pruning_candidates": [{"layer_index": layer, "neuron_index": n} for layer, n in candidates],
                "input_texts": list(texts), "batch_size": batch_size, "ablation": ablation,
            }
            self._remember("batch-analysis", lm.name, request, result)
            return result

    @staticmethod
    def _check_candidates(lm: LoadedModel, candidates: Sequence[tuple[int, int]]) -> None:
        seen = set()
        for i, (layer, neuron) in enumerate(candidates):
            if (layer, neuron) in seen:
                raise BadRequest(f"pruning_candidates[{i}] repeats layer {layer} neuron {neuron}")
            seen.add((layer, neuron))
            check_neurons(lm, layer, [neuron])

    def export(self, kind: str) -> dict:
        """Write the weight analysis + candidates, or the analyses run since start, under ``data/pruning/``."""
        if kind == "weight":
            with self.manager.use() as lm:
                data = {
                    "type": kind,
                    "model_name": lm.name,
                    "created_at": utc_now(),
                    "weight_analysis": self._weight_report(lm, 0.0, no_progress),
                    "candidates": self._candidates(lm, DEFAULT_THRESHOLD, "magnitude", None, None, 0, no_progress),
                }
            count = 1
        else:
            with self._history_lock:
                analyses = list(self._history)
            data = {"type": kind, "created_at": utc_now(), "count": len(analyses), "analyses": analyses}
            count = len(analyses)
        path = self.exports.write(EXPORT_FILES[kind], data)
        noun = "Weight analysis" if kind == "weight" else f"Impact analyses ({count})"
        file_path = path.relative_to(self.settings.data_dir).as_posix()
        return {"message": f"{noun} exported successfully", "file_path": file_path, "type": kind, "count": count}


def _rows(result: dict) -> int:
    """Per-neuron rows held by an analysis result."""
    return len(result.get("importance_scores", ())) + len(result.get("individual_impacts", ()))


def _group(neurons: Sequence[tuple[int, int]]) -> Ablation:
    grouped: dict[int, list[int]] = {}
    for layer, neuron in neurons:
        grouped.setdefault(layer, []).append(neuron)
    return grouped


def _importance_rows(layer: int, importance: LayerImportance, critical: torch.Tensor) -> list[dict]:
    columns: dict[str, Any] = {
        "activation_magnitude": importance.activation_magnitude.tolist(),
        "activation_variance": importance.activation_variance.tolist(),
        "impact_score": importance.impact_score.tolist(),
    }
    if importance.mean_change is not None:
        columns["mean_change"] = importance.mean_change.tolist()
        columns["max_change"] = importance.max_change.tolist()
    flags = critical.tolist()
    return [
        {"layer_index": layer, "neuron_index": n, **{k: v[n] for k, v in columns.items()}, "is_critical": flags[n]}
        for n in range(len(flags))
    ]


def _recommendations(impacts: list[dict], curve: list[dict]) -> dict:
    """Counts by individual impact; the largest k whose k lowest-impact candidates together stay safe."""
    safe = sum(item["impact_score"] < SAFE_IMPACT for item in impacts)
    fitting = [k for k, metrics in enumerate(curve, start=1) if metrics["impact_score"] < SAFE_IMPACT]
    return {
        "safe_to_prune": safe,
        "risky_to_prune": len(impacts) - safe,
        "suggested_batch_size": max(fitting, default=0),
        "high_impact_neurons": [item for item in impacts if item["impact_score"] >= HIGH_IMPACT],
    }
