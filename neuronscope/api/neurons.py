from flask import Blueprint

from neuronscope.api.params import get_str, query_args
from neuronscope.errors import BadRequest
from neuronscope.services import services
from neuronscope.services.corpora import DEFAULT_CORPUS

bp = Blueprint("neurons", __name__)


def _index(value: str, name: str) -> int:
    """A path segment as a non-negative integer, else 400."""
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise BadRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


@bp.get("/neurons/<layer>/<neuron>")
def neuron_page(layer: str, neuron: str):
    corpus = get_str(query_args(), "corpus", DEFAULT_CORPUS, max_chars=64)
    return services().neurons.page(_index(layer, "layer"), _index(neuron, "neuron"), corpus)
