"""Neuron pages: what one neuron reads and writes, its examples on a corpus, search, and a test box."""

from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.long_running import route
from neuronscope.errors import BadRequest
from neuronscope.services import Services

bp = Blueprint("neurons", __name__)

TOKEN_RESULTS, TEXT_RESULTS = 20, 5
"""Default ``k`` of a token search (neurons) and of a text search (neurons per token)."""


def _index(value: str, name: str) -> int:
    """A path segment as a non-negative integer, else 400."""
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _example_rows(page: dict, path: dict) -> tuple[list[dict], str]:
    """One row per example of both tails: tail, rank, text, peak, and the window's tokens."""
    rows = [
        {
            "tail": tail, "rank": rank, "text_id": e["text_id"], "max_activation": e["max_activation"],
            "max_position": e["max_position"], "token": e["tokens"][e["max_position"]], "window": "".join(e["tokens"]),
        }
        for tail in ("top", "bottom")
        for rank, e in enumerate(page[f"{tail}_examples"], start=1)
    ]
    return rows, f"neuron-{page['layer']}-{page['neuron']}-{page['corpus']}.csv"


@route(bp, "GET", "neurons/search", req.NeuronSearch)
def search(svc: Services, r: req.NeuronSearch) -> dict:
    if r.token is not None:
        return svc.neurons.search_token(r.token, r.corpus, r.layer, r.k or TOKEN_RESULTS)
    return svc.neurons.search_text(r.text, r.layer, r.k or TEXT_RESULTS)


@route(bp, "GET", "neurons/<layer>/<neuron>/activations", req.NeuronActivations)
def activations(svc: Services, r: req.NeuronActivations, layer: str, neuron: str) -> dict:
    return svc.neurons.activations(_index(layer, "layer"), _index(neuron, "neuron"), r.text)


@route(bp, "GET", "neurons/<layer>/<neuron>", req.NeuronPage, table=_example_rows)
def neuron_page(svc: Services, r: req.NeuronPage, layer: str, neuron: str) -> dict:
    return svc.neurons.page(_index(layer, "layer"), _index(neuron, "neuron"), r.corpus)
