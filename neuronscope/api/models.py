from flask import Blueprint

from neuronscope.api.params import get_str, json_body
from neuronscope.services import services

bp = Blueprint("models", __name__)


@bp.get("/models")
def list_models():
    return services().models.list_models()


@bp.get("/models/memory")
def memory():
    return services().models.memory()


@bp.post("/models/switch")
def switch():
    name = get_str(json_body(), "model_name", max_chars=200)
    return services().models.switch(name)


@bp.get("/models/<model_name:model_name>")
def model_info(model_name: str):
    return services().models.model_info(model_name)


@bp.delete("/models/<model_name:model_name>")
def delete_model(model_name: str):
    return services().models.delete(model_name)
