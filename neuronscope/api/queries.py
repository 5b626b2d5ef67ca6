from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.long_running import file_routes, route
from neuronscope.services import Services

bp = Blueprint("queries", __name__)


@route(bp, "POST", "queries/neuron", req.QueryNeuron)
def query_neuron(svc: Services, r: req.QueryNeuron) -> dict:
    return svc.queries.neuron(r.layer_index, r.neuron_index, r.top_k, r.corpus)


@route(bp, "POST", "queries/cluster", req.QueryCluster)
def query_cluster(svc: Services, r: req.QueryCluster) -> dict:
    return svc.queries.cluster(r.cluster_id, r.top_k, r.cluster_file, r.corpus)


file_routes(bp, "queries", lambda svc: svc.queries)
