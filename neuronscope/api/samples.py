from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.fields import NoFields
from neuronscope.api.long_running import check_token_limits, route
from neuronscope.services import Services

bp = Blueprint("samples", __name__)


@route(bp, "GET", "samples", NoFields)
def list_samples(svc: Services, r: NoFields) -> list[str]:
    return svc.samples.list()


@route(bp, "POST", "samples", req.AddSample)
def add_sample(svc: Services, r: req.AddSample):
    check_token_limits(svc, [r.prompt], load=True)  # a stored sample must fit every later use_samples call
    stored, added = svc.samples.add(r.prompt)
    return {"prompt": stored, "added": added, "count": len(svc.samples.list())}, (201 if added else 200)


@route(bp, "DELETE", "samples", req.DeleteSample)
def delete_sample(svc: Services, r: req.DeleteSample) -> dict:
    removed = svc.samples.delete(index=r.index, prompt=r.prompt)
    return {"prompt": removed, "removed": True, "count": len(svc.samples.list())}
