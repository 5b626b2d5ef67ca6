"""Activation files (generate, list, read slices) and the corpus index."""

from flask import Blueprint

from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.api import requests as req
from neuronscope.api.fields import NoFields
from neuronscope.api.long_running import route
from neuronscope.services import Services

bp = Blueprint("activations", __name__)


@route(bp, "POST", "activations/generate", req.GenerateActivations, status=201)
def generate(svc: Services, r: req.GenerateActivations) -> dict:
    return svc.activations.generate(r.prompt, r.model_name)


@route(bp, "POST", "activations/corpus", req.IndexCorpus, supports_async=True)
def index_corpus(svc: Services, r: req.IndexCorpus, progress: ProgressFn = no_progress) -> dict:
    return svc.activations.index_corpus(r.texts, batch_size=r.batch_size, progress=progress)


@route(bp, "POST", "activations/compare", req.CompareActivations)
def compare(svc: Services, r: req.CompareActivations) -> dict:
    return svc.activations.compare(r.prompt, r.ablate, r.layer_index, r.top_k, r.predictions)


@route(bp, "GET", "activations/files", NoFields)
def list_files(svc: Services, r: NoFields) -> dict:
    return svc.activations.list_files()


@route(bp, "GET", "activations/<json_file:filename>", req.ActivationSlice)
def read_file(svc: Services, r: req.ActivationSlice, filename: str) -> dict:
    return svc.activations.read(filename, list(r.layer) if r.layer is not None else None, r.top_k)
