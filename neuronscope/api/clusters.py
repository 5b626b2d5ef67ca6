from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.long_running import file_routes, route
from neuronscope.services import Services

bp = Blueprint("clusters", __name__)


@route(bp, "POST", "clusters/generate", req.GenerateClusters, status=201)
def generate(svc: Services, r: req.GenerateClusters) -> dict:
    return svc.clusters.generate(r.activation_file, r.layer_index, r.n_clusters)


file_routes(bp, "clusters", lambda svc: svc.clusters)
