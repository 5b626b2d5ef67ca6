"""The six /api/pruning endpoints: parse and validate the request, call the pruning service."""

from flask import Blueprint

from neuronscope.api.csv_export import csv_response, json_or_csv, wants_csv
from neuronscope.api.params import (
    get_float,
    get_int,
    get_int_list,
    get_list,
    get_str,
    get_str_list,
    json_body,
    query_args,
)
from neuronscope.api.long_running import long_operation, run_long
from neuronscope.errors import BadRequest
from neuronscope.services import Services, services
from neuronscope.services.long_runs import Work
from neuronscope.services.pruning import ABLATION_KINDS, EXPORT_FILES, IMPORTANCE_METHODS, SCORE_METHODS

bp = Blueprint("pruning", __name__)

MAX_LAYERS = 1024


@long_operation("pruning/weight-analysis", cacheable=True)
def _weight_analysis(svc: Services, args: dict) -> tuple[dict, Work]:
    tolerance = get_float(args, "tolerance", 0.0, minimum=0.0)
    return {"tolerance": tolerance}, lambda progress: svc.pruning.weight_analysis(tolerance=tolerance, progress=progress)


@bp.get("/pruning/weight-analysis")
def weight_analysis():
    return run_long("pruning/weight-analysis", query_args())


@bp.get("/pruning/candidates")
def candidates():
    args = query_args()
    body = services().pruning.candidates(
        threshold=get_float(args, "threshold", 10.0, minimum=0.0, maximum=100.0),
        method=get_str(args, "method", "magnitude", choices=SCORE_METHODS),
        layer_index=get_int(args, "layer_index", None, minimum=0),
        limit=get_int(args, "limit", None, minimum=1),
        offset=get_int(args, "offset", 0, minimum=0),
    )
    return json_or_csv(body, lambda b: b["candidates"], f"candidates-{body['method']}.csv")


@bp.post("/pruning/impact-analysis")
def impact_analysis():
    svc = services()
    body = json_body()
    return svc.pruning.impact_analysis(
        layer=get_int(body, "layer_index", minimum=0),
        neurons=get_int_list(body, "neuron_indices", max_items=svc.settings.max_neurons_per_request),
        text=get_str(body, "input_text"),
        ablation=get_str(body, "ablation", "zero", choices=ABLATION_KINDS),
    )


@long_operation("pruning/neuron-importance", cacheable=True)
def _neuron_importance(svc: Services, body: dict) -> tuple[dict, Work]:
    params = {
        "layers": _importance_layers(body),
        "texts": get_str_list(body, "input_texts", max_items=svc.settings.max_texts),
        "method": get_str(body, "method", "ablation", choices=IMPORTANCE_METHODS),
        "ablation": get_str(body, "ablation", "zero", choices=ABLATION_KINDS),
        "critical_threshold": get_float(body, "critical_threshold", None, minimum=0.0),
    }
    return params, lambda progress: svc.pruning.neuron_importance(**params, progress=progress)


@bp.post("/pruning/neuron-importance")
def neuron_importance():
    as_csv = wants_csv()
    response = run_long("pruning/neuron-importance", json_body())
    if response[1] != 200 or not as_csv:
        return response
    return csv_response(response[0]["importance_scores"], f"importance-{response[0]['method']}.csv")


@long_operation("pruning/batch-analysis", cacheable=True)
def _batch_analysis(svc: Services, body: dict) -> tuple[dict, Work]:
    items = get_list(body, "pruning_candidates", max_items=svc.settings.max_neurons_per_request)
    params = {
        "candidates": [_candidate(item, i) for i, item in enumerate(items)],
        "texts": get_str_list(body, "input_texts", max_items=svc.settings.max_texts),
        "batch_size": get_int(body, "batch_size", 10, minimum=1, maximum=svc.settings.max_batch_size),
        "ablation": get_str(body, "ablation", "zero", choices=ABLATION_KINDS),
    }
    return params, lambda progress: svc.pruning.batch_analysis(**params, progress=progress)


@bp.post("/pruning/batch-analysis")
def batch_analysis():
    return run_long("pruning/batch-analysis", json_body())


@bp.post("/pruning/export")
def export():
    kind = get_str(json_body(), "type", choices=tuple(EXPORT_FILES))
    return services().pruning.export(kind)


def _importance_layers(body: dict) -> int | list[int] | str:
    """Exactly one of ``layer_index`` (one layer) and ``layer_indices`` (a list, or ``"all"``)."""
    if ("layer_index" in body) == ("layer_indices" in body):
        raise BadRequest("give exactly one of 'layer_index' (one layer) and 'layer_indices' (a list, or \"all\")")
    if "layer_index" in body:
        return get_int(body, "layer_index", minimum=0)
    if body["layer_indices"] == "all":
        return "all"
    if isinstance(body["layer_indices"], str):
        raise BadRequest("'layer_indices' must be a list of layer indices or \"all\"")
    return get_int_list(body, "layer_indices", max_items=MAX_LAYERS)


def _candidate(item: object, i: int) -> tuple[int, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"'pruning_candidates[{i}]' must be an object with layer_index and neuron_index")
    try:
        return get_int(item, "layer_index", minimum=0), get_int(item, "neuron_index", minimum=0)
    except BadRequest as exc:
        raise BadRequest(f"pruning_candidates[{i}]: {exc.details}") from exc
