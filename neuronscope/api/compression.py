"""Real pruning: evaluate perplexity, plan, apply (remove neurons and save a smaller model)."""

from __future__ import annotations

from flask import Blueprint

from neuronscope.api.params import (
    get_bool,
    get_float,
    get_int,
    get_int_list,
    get_list,
    get_str,
    get_str_list,
    json_body,
)
from neuronscope.api.long_running import long_operation, run_long
from neuronscope.errors import BadRequest
from neuronscope.services import Services, services
from neuronscope.services.compression import check_output_name, check_plan_request
from neuronscope.services.long_runs import Work

bp = Blueprint("compression", __name__)


def _texts(body: dict) -> dict:
    """The optional ``texts`` / ``use_samples`` pair shared by the three endpoints."""
    settings = services().settings
    texts = get_str_list(body, "texts", None, max_items=settings.max_texts)
    use_samples = get_bool(body, "use_samples", False)
    if texts is not None and use_samples:
        raise BadRequest("give either 'texts' or 'use_samples', not both")
    return {"texts": texts, "use_samples": use_samples}


def _neuron_groups(source: dict, key: str, *, required: bool) -> dict[int, list[int]] | None:
    """``[{"layer_index": L, "neuron_indices": [...]}, ...]`` as ``{L: [...]}`` (each layer once)."""
    if not required and source.get(key) is None:
        return None
    limit = services().settings.max_neurons_per_request
    items = get_list(source, key, max_items=limit)
    groups: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"'{key}[{i}]' must be an object with 'layer_index' and 'neuron_indices'")
        layer = get_int(item, "layer_index", minimum=0)
        if layer in groups:
            raise BadRequest(f"'{key}' lists layer {layer} more than once")
        groups[layer] = get_int_list(item, "neuron_indices", max_items=limit)
        if min(groups[layer]) < 0:
            raise BadRequest(f"'{key}[{i}].neuron_indices' must be >= 0")
    return groups


def _samples_in_key(svc: Services, params: dict) -> dict:
    """The cache key of a call with ``use_samples`` also holds the samples it will use."""
    return {**params, "samples": svc.samples.list()[: svc.settings.max_texts]} if params["use_samples"] else params


@long_operation("pruning/evaluate", cacheable=True)
def _evaluate(svc: Services, body: dict) -> tuple[dict, Work]:
    params = {"ablate": _neuron_groups(body, "ablate", required=False), **_texts(body)}
    return _samples_in_key(svc, params), lambda progress: svc.compression.evaluate(**params, progress=progress)


@bp.post("/pruning/evaluate")
def evaluate():
    return run_long("pruning/evaluate", json_body())


@long_operation("pruning/plan", cacheable=True)
def _plan(svc: Services, body: dict) -> tuple[dict, Work]:
    params = {
        "sparsity": get_float(body, "sparsity"),
        "method": get_str(body, "method", max_chars=40),
        "scope": get_str(body, "scope", "layer", max_chars=40),
        "seed": get_int(body, "seed", 0, minimum=0, maximum=2**63 - 1),
        **_texts(body),
    }
    check_plan_request(params["sparsity"], params["method"], params["scope"])
    return _samples_in_key(svc, params), lambda progress: svc.compression.plan(**params, progress=progress)


@bp.post("/pruning/plan")
def plan():
    return run_long("pruning/plan", json_body())


@long_operation("pruning/apply", cacheable=False, status=201)
def _apply(svc: Services, body: dict) -> tuple[dict, Work]:
    plan = body.get("plan")
    if (plan is None) == (body.get("neurons") is None):
        raise BadRequest("give exactly one of 'plan' (an object returned by /api/pruning/plan) or 'neurons'")
    if plan is not None and not isinstance(plan, dict):
        raise BadRequest("'plan' must be the object returned by /api/pruning/plan")
    params = {
        "neurons": _neuron_groups(plan if plan is not None else body, "neurons", required=True),
        "output_name": get_str(body, "output_name", max_chars=200),
        "plan_model": get_str(plan, "model_name", None, max_chars=200) if plan is not None else None,
        "plan_info": plan,
        "evaluate": get_bool(body, "evaluate", True),
        **_texts(body),
    }
    check_output_name(params["output_name"])
    return params, lambda progress: svc.compression.apply(**params, progress=progress)


@bp.post("/pruning/apply")
def apply():
    return run_long("pruning/apply", json_body())
