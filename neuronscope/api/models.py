from flask import Blueprint

from neuronscope.api import requests as req
from neuronscope.api.fields import NoFields
from neuronscope.api.long_running import route
from neuronscope.services import Services

bp = Blueprint("models", __name__)


@route(bp, "GET", "models", NoFields)
def list_models(svc: Services, r: NoFields) -> dict:
    return svc.models.list_models()


@route(bp, "GET", "models/memory", NoFields)
def memory(svc: Services, r: NoFields) -> dict:
    return svc.models.memory()


@route(bp, "POST", "models/switch", req.SwitchModel)
def switch(svc: Services, r: req.SwitchModel) -> dict:
    return svc.models.switch(r.model_name)


@route(bp, "GET", "models/<model_name:model_name>", NoFields)
def model_info(svc: Services, r: NoFields, model_name: str) -> dict:
    return svc.models.model_info(model_name)


@route(bp, "DELETE", "models/<model_name:model_name>", NoFields)
def delete_model(svc: Services, r: NoFields, model_name: str) -> dict:
    return svc.models.delete(model_name)
