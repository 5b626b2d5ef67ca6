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
from neuronscope.errors import BadRequest
from neuronscope.services import services

bp = Blueprint("compression", __name__)


def _texts(body: dict) -> dict:
    """The optional ``texts`` / ``use_samples`` pair shared by the three endpoints."""
    settings = services().settings
    return {
        "texts": get_str_list(body, "texts", None, max_items=settings.max_texts),
        "use_samples": get_bool(body, "use_samples", False),
    }


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
    return groups


@bp.post("/pruning/evaluate")
def evaluate():
    body = json_body()
    return services().compression.evaluate(ablate=_neuron_groups(body, "ablate", required=False), **_texts(body))


@bp.post("/pruning/plan")
def plan():
    body = json_body()
    return services().compression.plan(
        sparsity=get_float(body, "sparsity"),
        method=get_str(body, "method", max_chars=40),
        scope=get_str(body, "scope", "layer", max_chars=40),
        seed=get_int(body, "seed", 0, minimum=0, maximum=2**63 - 1),
        **_texts(body),
    )


@bp.post("/pruning/apply")
def apply():
    body = json_body()
    plan = body.get("plan")
    if (plan is None) == (body.get("neurons") is None):
        raise BadRequest("give exactly one of 'plan' (an object returned by /api/pruning/plan) or 'neurons'")
    if plan is not None and not isinstance(plan, dict):
        raise BadRequest("'plan' must be the object returned by /api/pruning/plan")
    neurons = _neuron_groups(plan if plan is not None else body, "neurons", required=True)
    return services().compression.apply(
        neurons=neurons,
        output_name=get_str(body, "output_name", max_chars=200),
        plan_model=get_str(plan, "model_name", None, max_chars=200) if plan is not None else None,
        plan_info=plan,
        evaluate=get_bool(body, "evaluate", True),
        **_texts(body),
    ), 201
