from flask import Blueprint

from neuronscope.api.params import get_int, get_str, json_body
from neuronscope.services import services

bp = Blueprint("queries", __name__)


@bp.post("/queries/neuron")
def query_neuron():
    body = json_body()
    layer_index = get_int(body, "layer_index", minimum=0)
    neuron_index = get_int(body, "neuron_index", minimum=0)
    top_k = get_int(body, "top_k", 10, minimum=1, maximum=services().settings.max_top_k)
    return services().queries.neuron(layer_index, neuron_index, top_k)


@bp.post("/queries/cluster")
def query_cluster():
    body = json_body()
    cluster_id = get_int(body, "cluster_id", minimum=0)
    top_k = get_int(body, "top_k", 10, minimum=1, maximum=services().settings.max_top_k)
    cluster_file = get_str(body, "cluster_file", None, max_chars=200)
    return services().queries.cluster(cluster_id, top_k, cluster_file)


@bp.get("/queries/files")
def list_files():
    return services().queries.list_files()


@bp.get("/queries/<json_file:filename>")
def read_file(filename: str):
    return services().queries.read(filename)
