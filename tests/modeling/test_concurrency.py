"""8 clients x 10 mixed requests on the real multi-threaded WSGI server, a model switch in the middle."""

import json
import threading
import urllib.request

import pytest
from waitress.server import create_server

from neuronscope.analysis.hooks import hook_count

TEXTS = ["Hello world, this is a test for pruning analysis.", "The quick brown fox jumps over the lazy dog."]
MODELS = ("tiny-gpt2", "tiny-llama")


def request_for(client: int, i: int) -> tuple[str, dict]:
    if i % 3 == 2:
        return "/api/pruning/neuron-importance", {"layer_index": 1, "input_texts": [TEXTS[client % 2]]}
    neurons = [(client * 7 + i) % 60, (client * 3 + 2 * i) % 60 + 1]
    return "/api/pruning/impact-analysis", {"layer_index": i % 2, "neuron_indices": sorted(set(neurons)),
                                            "input_text": TEXTS[(client + i) % 2]}


def post(base: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def live(make_app, run_waitress):
    app = make_app(rate_limit_per_minute=0, max_queued=64, cache_entries=0)  # compute every request
    return app, "http://" + run_waitress(create_server(app, host="127.0.0.1", port=0, threads=8))


def test_concurrent_results_equal_serial_results_across_a_switch(live):
    app, base = live
    requests = {(c, i): request_for(c, i) for c in range(8) for i in range(10)}
    reference = {}
    for model in MODELS:
        assert post(base, "/api/models/switch", {"model_name": model})[0] == 200
        for key, (path, body) in requests.items():
            status, result = post(base, path, body)
            assert status == 200, result
            reference[(model, key)] = result
    post(base, "/api/models/switch", {"model_name": MODELS[0]})

    results, errors = {}, []

    def client(c: int) -> None:
        for i in range(10):
            if c == 0 and i == 5:
                status, body = post(base, "/api/models/switch", {"model_name": MODELS[1]})
                if status != 200:
                    errors.append(body)
            path, body = requests[(c, i)]
            status, result = post(base, path, body)
            if status != 200:
                errors.append(result)
            results[(c, i)] = result

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    models_seen = {result["model_name"] for result in results.values()}
    assert models_seen == set(MODELS)
    for key, result in results.items():
        assert result == reference[(result["model_name"], key)]
    manager = app.extensions["neuronscope"].manager
    assert manager.current_name == MODELS[1]
    assert hook_count(manager.peek().model) == 0
