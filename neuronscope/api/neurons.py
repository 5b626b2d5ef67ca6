from flask import Blueprint, request

from neuronscope.api.csv_export import json_or_csv
from neuronscope.api.params import get_int, get_str, query_args
from neuronscope.errors import BadRequest
from neuronscope.services import services
from neuronscope.services.corpora import DEFAULT_CORPUS

bp = Blueprint("neurons", __name__)


def _index(value: str, name: str) -> int:
    """A path segment as a non-negative integer, else 400."""
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _raw_text(key: str, max_chars: int, *, required: bool) -> str | None:
    """Query value ``key`` as given (never parsed as a number); 400 when empty or too long."""
    value = request.args.get(key)
    if value is None and not required:
        return None
    if not value or not value.strip():
        raise BadRequest(f"'{key}' must be a non-empty string")
    if len(value) > max_chars:
        raise BadRequest(f"'{key}' has {len(value)} characters; the limit is {max_chars}")
    return value


@bp.get("/neurons/search")
def search():
    svc = services()
    args = query_args()
    token = _raw_text("token", 200, required=False)
    text = _raw_text("text", svc.settings.max_sample_chars, required=False)
    if (token is None) == (text is None):
        raise BadRequest("give either ?token= (a token or a token id) or ?text=")
    layer = get_int(args, "layer", None, minimum=0)
    if token is not None:
        corpus = get_str(args, "corpus", DEFAULT_CORPUS, max_chars=64)
        return svc.neurons.search_token(token, corpus, layer, get_int(args, "k", 20, minimum=1, maximum=100))
    return svc.neurons.search_text(text, layer, get_int(args, "k", 5, minimum=1, maximum=50))


@bp.get("/neurons/<layer>/<neuron>/activations")
def activations(layer: str, neuron: str):
    text = _raw_text("text", services().settings.max_sample_chars, required=True)
    return services().neurons.activations(_index(layer, "layer"), _index(neuron, "neuron"), text)


@bp.get("/neurons/<layer>/<neuron>")
def neuron_page(layer: str, neuron: str):
    corpus = get_str(query_args(), "corpus", DEFAULT_CORPUS, max_chars=64)
    layer_index, neuron_index = _index(layer, "layer"), _index(neuron, "neuron")
    page = services().neurons.page(layer_index, neuron_index, corpus)
    return json_or_csv(page, _example_rows, f"neuron-{layer_index}-{neuron_index}-{corpus}.csv")


def _example_rows(page: dict) -> list[dict]:
    """One row per example of both tails: tail, rank, text, peak, and the window's tokens."""
    return [
        {
            "tail": tail, "rank": rank, "text_id": e["text_id"], "max_activation": e["max_activation"],
            "max_position": e["max_position"], "token": e["tokens"][e["max_position"]], "window": "".join(e["tokens"]),
        }
        for tail in ("top", "bottom")
        for rank, e in enumerate(page[f"{tail}_examples"], start=1)
    ]
