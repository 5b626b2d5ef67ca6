from flask import Blueprint, request

from neuronscope.api.long_running import long_operation, run_long
from neuronscope.api.params import get_int, get_str, json_body
from neuronscope.errors import BadRequest, UnsupportedMediaType
from neuronscope.services import Services, services
from neuronscope.services.long_runs import Work

bp = Blueprint("corpora", __name__)


@bp.get("/corpora")
def list_corpora():
    return services().corpora.list()


@bp.post("/corpora")
def upload_corpus():
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("upload a corpus as multipart/form-data with a 'file' part (and optionally 'name')")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest("the multipart body needs a 'file' part with a file name")
    filename = upload.filename
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise BadRequest(f"{filename!r} is not a plain file name")
    name = request.form.get("name") or filename.rsplit(".", 1)[0]
    return services().corpora.upload(name, filename, upload.read()), 201


@bp.delete("/corpora/<name>")
def delete_corpus(name: str):
    return services().corpora.delete(name)


@long_operation("corpora/index", cacheable=False)
def _index_corpus(svc: Services, body: dict) -> tuple[dict, Work]:
    corpus = get_str(body, "corpus", max_chars=64)
    svc.corpora.get(corpus)
    batch_size = get_int(body, "batch_size", 32, minimum=1, maximum=svc.settings.max_batch_size)
    params = {"corpus": corpus, "batch_size": batch_size}
    return params, lambda progress: svc.corpora.index(corpus, batch_size=batch_size, progress=progress)


@bp.post("/corpora/<name>/index")
def index_corpus(name: str):
    body = json_body() if request.get_data() else {}  # the body is optional
    return run_long("corpora/index", {**body, "corpus": name})
