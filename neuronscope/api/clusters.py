from flask import Blueprint

from neuronscope.api.csv_export import json_or_csv
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
    body = services().clusters.read(filename)
    return json_or_csv(body, _assignments, filename.removesuffix(".json") + ".csv")


def _assignments(body: dict) -> list[dict]:
    """One row per neuron: its cluster."""
    rows = [
        {"layer_index": body["layer_index"], "neuron_index": n, "cluster_id": c["cluster_id"]}
        for c in body["clusters"] for n in c["neuron_indices"]
    ]
    return sorted(rows, key=lambda row: row["neuron_index"])
