from flask import Blueprint

from neuronscope.api.params import get_str, json_body
from neuronscope.services import services

bp = Blueprint("samples", __name__)


@bp.get("/samples")
def list_samples():
    return services().samples.list()


@bp.post("/samples")
def add_sample():
    svc = services()
    prompt = get_str(json_body(), "prompt", max_chars=svc.settings.max_sample_chars)
    stored, added = svc.samples.add(prompt)
    return {"prompt": stored, "added": added, "count": len(svc.samples.list())}, (201 if added else 200)
