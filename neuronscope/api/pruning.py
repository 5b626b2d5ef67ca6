"""The six /api/pruning analysis endpoints: a typed request each, handed to the pruning service."""

from flask import Blueprint

from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.api import requests as req
from neuronscope.api.long_running import route
from neuronscope.services import Services

bp = Blueprint("pruning", __name__)


@route(bp, "GET", "pruning/weight-analysis", req.WeightAnalysis, cacheable=True, supports_async=True)
def weight_analysis(svc: Services, r: req.WeightAnalysis, progress: ProgressFn = no_progress) -> dict:
    return svc.pruning.weight_analysis(tolerance=r.tolerance, progress=progress)


def _candidate_rows(body: dict, path: dict) -> tuple[list[dict], str]:
    return body["candidates"], f"candidates-{body['method']}.csv"


def _importance_rows(body: dict, path: dict) -> tuple[list[dict], str]:
    return body["importance_scores"], f"importance-{body['method']}.csv"


@route(bp, "GET", "pruning/candidates", req.Candidates, table=_candidate_rows)
def candidates(svc: Services, r: req.Candidates) -> dict:
    return svc.pruning.candidates(
        threshold=r.threshold, method=r.method, layer_index=r.layer_index, limit=r.limit, offset=r.offset
    )


@route(bp, "POST", "pruning/impact-analysis", req.ImpactAnalysis)
def impact_analysis(svc: Services, r: req.ImpactAnalysis) -> dict:
    return svc.pruning.impact_analysis(
        layer=r.layer_index, neurons=list(r.neuron_indices), text=r.input_text, ablation=r.ablation
    )


@route(
    bp, "POST", "pruning/neuron-importance", req.NeuronImportance, cacheable=True, supports_async=True,
    table=_importance_rows,
)
def neuron_importance(svc: Services, r: req.NeuronImportance, progress: ProgressFn = no_progress) -> dict:
    return svc.pruning.neuron_importance(
        layers=r.layers,
        texts=list(r.input_texts),
        method=r.method,
        ablation=r.ablation,
        critical_threshold=r.critical_threshold,
        progress=progress,
    )


@route(bp, "POST", "pruning/batch-analysis", req.BatchAnalysis, cacheable=True, supports_async=True)
def batch_analysis(svc: Services, r: req.BatchAnalysis, progress: ProgressFn = no_progress) -> dict:
    return svc.pruning.batch_analysis(
        candidates=list(r.pruning_candidates),
        texts=list(r.input_texts),
        batch_size=r.batch_size,
        ablation=r.ablation,
        progress=progress,
    )


@route(bp, "POST", "pruning/export", req.Export)
def export(svc: Services, r: req.Export) -> dict:
    return svc.pruning.export(r.type)
