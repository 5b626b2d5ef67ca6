from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.long_running import route
from neuronscope.services import Services

bp = Blueprint("clusters", __name__)


@route(bp, "POST", "clusters/generate", req.GenerateClusters, status=201)
def generate(svc: Services, r: req.GenerateClusters) -> dict:
    return svc.clusters.generate(r.activation_file, r.layer_index, r.n_clusters)


@route(bp, "GET", "clusters/files", req.NoFields)
def list_files(svc: Services, r: req.NoFields) -> dict:
    return svc.clusters.list_files()


@route(bp, "GET", "clusters/<json_file:filename>", req.NoFields)
def read_file(svc: Services, r: req.NoFields, filename: str) -> dict:
    return svc.clusters.read(filename)
