from flask import Blueprint

from neuronscope.api.params import get_int, get_str, json_body
from neuronscope.services import services

bp = Blueprint("clusters", __name__)


@bp.post("/clusters/generate")
def generate():
    body = json_body()
    activation_file = get_str(body, "activation_file", max_chars=200)
    layer_index = get_int(body, "layer_index", minimum=0)
    n_clusters = get_int(body, "n_clusters", minimum=2, maximum=services().settings.max_clusters)
    return services().clusters.generate(activation_file, layer_index, n_clusters), 201


@bp.get("/clusters/files")
def list_files():
    return services().clusters.list_files()


@bp.get("/clusters/<json_file:filename>")
def read_file(filename: str):
    return services().clusters.read(filename)
