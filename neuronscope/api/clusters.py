from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.long_running import file_routes, route
from neuronscope.services import Services

bp = Blueprint("clusters", __name__)


@route(bp, "POST", "clusters/generate", req.GenerateClusters, status=201)
def generate(svc: Services, r: req.GenerateClusters) -> dict:
    return svc.clusters.generate(r.activation_file, r.layer_index, r.n_clusters)


def _assignments(body: dict, path: dict) -> tuple[list[dict], str]:
    """One row per neuron of a cluster file: its cluster."""
    rows = [
        {"layer_index": body["layer_index"], "neuron_index": n, "cluster_id": c["cluster_id"]}
        for c in body["clusters"] for n in c["neuron_indices"]
    ]
    return sorted(rows, key=lambda row: row["neuron_index"]), path["filename"].removesuffix(".json") + ".csv"


file_routes(bp, "clusters", lambda svc: svc.clusters, table=_assignments)
