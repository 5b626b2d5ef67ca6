"""Corpora: list, upload, delete, and index one for the loaded model."""

from flask import Blueprint

from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.api import requests as req
from neuronscope.api.fields import NoFields
from neuronscope.api.long_running import route
from neuronscope.api.params import uploaded_file
from neuronscope.services import Services

bp = Blueprint("corpora", __name__)


@route(bp, "GET", "corpora", NoFields)
def list_corpora(svc: Services, r: NoFields) -> dict:
    return svc.corpora.list()


@route(bp, "POST", "corpora", req.UploadCorpus, status=201)
def upload_corpus(svc: Services, r: req.UploadCorpus) -> dict:
    filename, data = uploaded_file("file")
    return svc.corpora.upload(r.name or filename.rsplit(".", 1)[0], filename, data)


@route(bp, "DELETE", "corpora/<name>", NoFields)
def delete_corpus(svc: Services, r: NoFields, name: str) -> dict:
    return svc.corpora.delete(name)


@route(bp, "POST", "corpora/<name>/index", req.IndexNamedCorpus, supports_async=True, job="corpora/index")
def index_corpus(svc: Services, r: req.IndexNamedCorpus, progress: ProgressFn = no_progress) -> dict:
    return svc.corpora.index(r.name, batch_size=r.batch_size, progress=progress)
