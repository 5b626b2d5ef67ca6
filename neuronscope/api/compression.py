"""Real pruning: evaluate perplexity, plan, apply (remove neurons and save a smaller model)."""

from __future__ import annotations

from flask import Blueprint

from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.api import requests as req
from neuronscope.api.long_running import route
from neuronscope.services import Services

bp = Blueprint("compression", __name__)


@route(bp, "POST", "pruning/evaluate", req.Evaluate, cacheable=True, supports_async=True)
def evaluate(svc: Services, r: req.Evaluate, progress: ProgressFn = no_progress) -> dict:
    return svc.compression.evaluate(texts=r.texts, use_samples=r.use_samples, ablate=r.ablate, progress=progress)


@route(bp, "POST", "pruning/plan", req.Plan, cacheable=True, supports_async=True)
def plan(svc: Services, r: req.Plan, progress: ProgressFn = no_progress) -> dict:
    return svc.compression.plan(
        sparsity=r.sparsity,
        method=r.method,
        scope=r.scope,
        seed=r.seed,
        texts=r.texts,
        use_samples=r.use_samples,
        compensation=r.compensation,
        estimate=r.estimate,
        allow_overlap=r.allow_overlap,
        progress=progress,
    )


@route(bp, "POST", "pruning/apply", req.Apply, supports_async=True, status=201)
def apply(svc: Services, r: req.Apply, progress: ProgressFn = no_progress) -> dict:
    return svc.compression.apply(
        neurons=r.removed,
        output_name=r.output_name,
        plan_model=r.plan.model_name if r.plan is not None else None,
        plan_info=r.plan.info if r.plan is not None else None,
        texts=r.texts,
        use_samples=r.use_samples,
        evaluate=r.evaluate,
        compensation=r.chosen_compensation,
        calibration_texts=r.calibration_texts,
        allow_overlap=r.allow_overlap,
        max_perplexity_ratio=r.max_perplexity_ratio,
        recovery=r.recovery,
        progress=progress,
    )


@route(bp, "POST", "pruning/sweep", req.Sweep, cacheable=True, supports_async=True)
def sweep(svc: Services, r: req.Sweep, progress: ProgressFn = no_progress) -> dict:
    return svc.compression.sweep(
        methods=r.methods,
        sparsities=r.sparsities,
        compensations=r.compensations,
        scope=r.scope,
        seed=r.seed,
        texts=r.texts,
        use_samples=r.use_samples,
        allow_overlap=r.allow_overlap,
        progress=progress,
    )
