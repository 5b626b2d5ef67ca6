"""Health, models, samples and the error format, through the Flask test client."""

import json

import pytest
from tests.support.tiny_models import ALL_TINY

from neuronscope.config import EMBEDDED_MODEL_NAME
from neuronscope.modeling import loading
from neuronscope.services.samples import starter_samples

MODEL_FIELDS = {
    "name": str, "family": str, "layers": int, "hidden_size": int, "num_attention_heads": int,
    "description": str, "recommended": bool, "size_category": str,
}


def assert_json_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "details"}
    assert isinstance(body["error"], str) and isinstance(body["details"], str)
    assert "Traceback" not in body["details"]


def test_health_reports_model_state(client):
    body = client.get("/api/health").get_json()
    assert body["status"] == "healthy" and body["message"] == "NeuronScope API server is running"
    assert body["model_ready"] is False and body["model_name"] is None
    client.post("/api/models/switch", json={"model_name": "tiny-llama"})
    body = client.get("/api/health").get_json()
    assert body["model_ready"] is True and body["model_name"] == "tiny-llama"


def test_models_list_has_documented_fields_and_availability(client):
    body = client.get("/api/models").get_json()
    models = body["models"]
    for name in (EMBEDDED_MODEL_NAME, "gpt2", "distilgpt2", "gpt2-medium", "gpt2-large", "gpt2-xl",
                 "EleutherAI/pythia-70m", "tiny-gpt2", "tiny-llama"):
        info = models[name]
        for field, kind in MODEL_FIELDS.items():
            assert isinstance(info[field], kind), (name, field)
        assert info["availability"] in {"embedded", "local", "cached", "hub", "unavailable"}
    assert models[EMBEDDED_MODEL_NAME]["availability"] == "embedded"
    assert models["tiny-gpt2"]["availability"] == "local"
    assert models["gpt2"]["availability"] == "unavailable"  # offline and not cached
    assert models["gpt2"]["layers"] == 12 and models["gpt2"]["hidden_size"] == 768


@pytest.mark.parametrize("reachable, expected", [(False, "unavailable"), (True, "hub")])
def test_a_hub_model_is_unavailable_when_the_hub_does_not_answer_even_outside_offline_mode(
    make_app, monkeypatch, reachable, expected
):
    checks = []
    monkeypatch.setattr(loading, "_last_hub_check", None)
    monkeypatch.setattr(loading, "hub_reachable", lambda: checks.append(1) or reachable)
    client = make_app(offline=False).test_client()
    models = client.get("/api/models").get_json()["models"]
    assert models["gpt2"]["availability"] == models["EleutherAI/pythia-70m"]["availability"] == expected
    assert client.get("/api/models/gpt2").get_json()["availability"] == expected
    assert len(checks) == 1  # one check serves the whole list and the next request


def test_model_info_by_name_and_hub_id(client):
    info = client.get("/api/models/gpt2").get_json()
    assert info["name"] == "gpt2" and info["size_category"] == "small"
    assert client.get("/api/models/EleutherAI/pythia-70m").get_json()["family"] == "gpt_neox"
    local = client.get("/api/models/tiny-llama").get_json()
    assert (local["family"], local["layers"], local["hidden_size"]) == ("llama", 2, 32)


@pytest.mark.parametrize("name", ALL_TINY)
def test_a_local_model_counts_its_parameters_before_it_is_loaded(make_app, name):
    client = make_app("tiny-gpt2").test_client()
    stored = client.get(f"/api/models/{name}").get_json()
    assert client.post("/api/models/switch", json={"model_name": name}).status_code == 200
    live = client.get(f"/api/models/{name}").get_json()
    assert live["loaded"] is True and stored["parameters"] == live["parameters"] > 0
    assert stored["size_category"] == "small"


def test_a_local_model_without_readable_safetensors_has_no_parameter_count(make_app, models_dir, tmp_path):
    folder = tmp_path / "models" / "odd"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text((models_dir / "tiny-llama" / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    client = make_app(models_dir=tmp_path / "models").test_client()
    info = client.get("/api/models/odd").get_json()
    assert (info["parameters"], info["size_category"], info["layers"]) == (0, "unknown", 2)


@pytest.mark.parametrize("name", ["nope-model", "org/unknown"])
def test_unknown_model_info_is_404(client, name):
    assert_json_error(client.get(f"/api/models/{name}"), 404)


@pytest.mark.parametrize("name", ["..", "a/../b", "a/b/c", "%2e%2e", "x" * 300])
def test_path_like_model_names_are_refused(client, name):
    assert client.get(f"/api/models/{name}").status_code in {400, 404}
    response = client.post("/api/models/switch", json={"model_name": name})
    assert response.status_code == 400


def test_switch_returns_documented_fields(client):
    body = client.post("/api/models/switch", json={"model_name": "tiny-llama"}).get_json()
    assert body["message"] == "Successfully switched to tiny-llama"
    assert body["current_model"] == "tiny-llama"
    assert body["model_info"]["family"] == "llama" and body["model_info"]["loaded"] is True
    assert body["memory_usage"]["model_memory"] > 0


@pytest.mark.parametrize(("name", "status"), [("gpt2", 503), ("someone/missing-model", 404), ("not-a-local-folder", 404)])
def test_failed_switch_keeps_the_previous_model_serving(client, name, status):
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    response = client.post("/api/models/switch", json={"model_name": name})
    assert_json_error(response, status)
    assert client.get("/api/health").get_json()["model_name"] == "tiny-gpt2"
    assert client.get("/api/models/memory").get_json()["current_model"] == "tiny-gpt2"


@pytest.mark.parametrize(
    "body", [{}, {"model_name": 3}, {"model_name": ""}, {"model_name": ["gpt2"]}, {"model": "gpt2"}]
)
def test_switch_bad_bodies(client, body):
    assert_json_error(client.post("/api/models/switch", json=body), 400)


def test_switch_needs_json(client):
    assert_json_error(client.post("/api/models/switch", data="model_name=gpt2",
                                  content_type="application/x-www-form-urlencoded"), 415)
    assert_json_error(client.post("/api/models/switch", data="{not json", content_type="application/json"), 400)
    assert_json_error(client.post("/api/models/switch", json=["gpt2"]), 400)


def test_memory_report(client):
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    body = client.get("/api/models/memory").get_json()
    for field in ("total_memory", "used_memory", "available_memory", "model_memory", "process_rss"):
        assert isinstance(body[field], int) and body[field] >= 0
    assert body["used_memory"] + body["available_memory"] == body["total_memory"]
    assert body["model_memory"] > 0


def test_samples_start_with_the_starter_set(client):
    samples = client.get("/api/samples").get_json()
    assert samples == starter_samples() and len(samples) >= 10


def test_add_sample_persists_atomically_and_ignores_duplicates(client, app):
    data_dir = app.extensions["neuronscope"].settings.data_dir
    response = client.post("/api/samples", json={"prompt": "  A brand new prompt  "})
    assert response.status_code == 201
    assert response.get_json()["prompt"] == "A brand new prompt"
    again = client.post("/api/samples", json={"prompt": "A brand new prompt"})
    assert again.status_code == 200 and again.get_json()["added"] is False
    stored = json.loads((data_dir / "samples.json").read_text())
    assert stored.count("A brand new prompt") == 1 and stored[: len(starter_samples())] == starter_samples()
    assert not [p.name for p in data_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": "   "}, {"prompt": 5}, {"prompt": "x" * 5000}])
def test_bad_samples_are_refused_and_nothing_written(client, app, body):
    assert_json_error(client.post("/api/samples", json=body), 400)
    assert not (app.extensions["neuronscope"].settings.data_dir / "samples.json").exists()


def test_unknown_route_and_wrong_method_are_json(client):
    assert_json_error(client.get("/api/does-not-exist"), 404)
    assert_json_error(client.delete("/api/health"), 405)


def test_too_large_body_is_413(make_app):
    client = make_app(max_request_bytes=100).test_client()
    assert_json_error(client.post("/api/samples", json={"prompt": "x" * 500}), 413)


def test_unexpected_exception_is_a_json_500_without_internals(app):
    @app.get("/api/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/api/boom")
    assert_json_error(response, 500)
    assert "secret" not in response.get_data(as_text=True)


def test_cors_opened_to_any_origin_never_allows_credentials(make_app):
    client = make_app(cors_origins=("*",)).test_client()
    response = client.get("/api/health", headers={"Origin": "http://frontend.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_no_model_is_loaded_by_create_app(app):
    assert app.extensions["neuronscope"].manager.peek() is None
