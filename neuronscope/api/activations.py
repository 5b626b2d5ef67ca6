from flask import Blueprint

from neuronscope.api.params import get_bool, get_int, get_str, get_str_list, json_body, query_args, query_int_list
from neuronscope.api.long_running import long_operation, run_long
from neuronscope.errors import BadRequest
from neuronscope.services import Services, services
from neuronscope.services.long_runs import Work

bp = Blueprint("activations", __name__)


@bp.post("/activations/generate")
def generate():
    body = json_body()
    prompt = get_str(body, "prompt")
    model_name = get_str(body, "model_name", None, max_chars=200)
    return services().activations.generate(prompt, model_name), 201


@long_operation("activations/corpus", cacheable=False)
def _index_corpus(svc: Services, body: dict) -> tuple[dict, Work]:
    use_samples = get_bool(body, "use_samples", False)
    texts = get_str_list(body, "texts", None, max_items=svc.settings.max_corpus_texts)
    if use_samples == (texts is not None):
        raise BadRequest("send either 'texts' (a list of strings) or 'use_samples': true")
    batch_size = get_int(body, "batch_size", 32, minimum=1, maximum=svc.settings.max_batch_size)
    params = {"texts": texts, "use_samples": use_samples, "batch_size": batch_size}
    return params, lambda progress: svc.activations.index_corpus(texts, batch_size=batch_size, progress=progress)


@bp.post("/activations/corpus")
def index_corpus():
    return run_long("activations/corpus", json_body())


@bp.get("/activations/files")
def list_files():
    return services().activations.list_files()


@bp.get("/activations/<json_file:filename>")
def read_file(filename: str):
    svc = services()
    layers = query_int_list("layer", max_items=svc.settings.max_neurons_per_request)
    top_k = get_int(query_args(), "top_k", None, minimum=1, maximum=svc.settings.max_neurons_per_request)
    return svc.activations.read(filename, layers, top_k)
