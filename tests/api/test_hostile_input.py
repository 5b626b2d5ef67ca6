"""Hostile input at the door (issue 14 items 1-3 and 6): invalid Unicode, huge and non-finite numbers,
overlong texts, stored samples that must not poison later requests, the synchronous work budget."""

from __future__ import annotations

import json

import pytest
from tests.support.jobs_support import wait_for_status

from neuronscope.api.long_running import OPERATIONS

TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps over the lazy dog."]
PLAN = {"model_name": "tiny-gpt2", "sparsity": 0.25, "neurons": [{"layer_index": 0, "neuron_indices": [1, 2]}]}

# A body every POST route accepts (or answers with a model-dependent 4xx): the base the bad values go into.
VALID_BODIES = {
    "corpora/<name>/index": {"batch_size": 4},
    "models/switch": {"model_name": "tiny-gpt2"},
    "samples": {"prompt": "A fine prompt"},
    "pruning/impact-analysis": {"layer_index": 0, "neuron_indices": [1], "input_text": TEXTS[0], "ablation": "zero"},
    "pruning/neuron-importance": {"layer_index": 1, "input_texts": TEXTS, "critical_threshold": 0.5},
    "pruning/batch-analysis": {
        "pruning_candidates": [{"layer_index": 0, "neuron_index": 3}], "input_texts": TEXTS, "batch_size": 2,
    },
    "pruning/export": {"type": "impact"},
    "pruning/evaluate": {"texts": TEXTS, "ablate": [{"layer_index": 0, "neuron_indices": [1]}]},
    "pruning/plan": {"sparsity": 0.25, "method": "wanda", "texts": TEXTS, "seed": 3},
    "pruning/sweep": {"methods": ["magnitude"], "sparsities": [0.25], "compensations": ["none"], "texts": TEXTS},
    "pruning/apply": {"output_name": "pruned-x", "plan": PLAN, "evaluate": False},
    "activations/generate": {"prompt": "Hello world"},
    "activations/compare": {"prompt": "Hello world", "ablate": [{"layer_index": 0, "neuron_indices": [1]}], "layer_index": 0, "top_k": 4, "predictions": 2},
    "activations/corpus": {"texts": TEXTS, "batch_size": 2},
    "clusters/generate": {"activation_file": "none.json", "layer_index": 0, "n_clusters": 2},
    "queries/neuron": {"layer_index": 0, "neuron_index": 1, "top_k": 3},
    "queries/cluster": {"cluster_id": 0, "top_k": 3},
    "jobs": {"endpoint": "pruning/evaluate", "body": {"texts": TEXTS}},
}
# Raw JSON that Python's json module parses (so only the server's own checks can refuse it).
BAD_TEXTS = ['"\\ud800"', '"\\udfff"', '"ok \\udc00 then"', '"\\ud83d"', '"nul\\u0000"', '"bell\\u0007"', '"esc\\u001b["']
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", "1" * 400, "-" + "9" * 400, "9223372036854775808"]
EDGE_NUMBERS = ["1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "-0.0", "9223372036854775807", "0"]


def post_raw(client, route: str, body: str, query: str = ""):
    return client.post(f"{url(route)}{query}", data=body.encode(), content_type="application/json")


def with_raw(body: dict, path: tuple, raw: str) -> str:
    """``body`` as JSON with the value at ``path`` replaced by the raw JSON text ``raw``."""
    marker = "__RAW_VALUE__"
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', raw)


def leaves(value, path=()):
    """``(path, value)`` of every scalar inside ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from leaves(child, (*path, i))
    else:
        yield path, value


def assert_refused(response, *words: str):
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {"error", "details"}
    for word in words:
        assert word in body["details"], body["details"]


def url(route: str) -> str:
    """The URL of a route, its path segments filled in."""
    return "/api/" + route.replace("<name>", "default")


def test_every_json_post_route_has_a_valid_body_here():
    json_routes = {
        op.name for op in OPERATIONS.values() if op.method == "POST" and op.request.content_type == "application/json"
    }
    assert json_routes == set(VALID_BODIES)


@pytest.mark.parametrize("route", sorted(VALID_BODIES))
def test_invalid_unicode_and_control_characters_in_any_string_are_400(client, route):
    body = VALID_BODIES[route]
    strings = [path for path, value in leaves(body) if isinstance(value, str)]
    places = strings + [("unknown_field",)]
    for path in places:
        for raw in BAD_TEXTS:
            assert_refused(post_raw(client, route, with_raw(body, path, raw)), "Unicode")
    assert_refused(post_raw(client, route, json.dumps(body)[:-1] + ', "\\ud800": 1}'), "key")
    assert client.get("/api/jobs").get_json()["jobs"] == []
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize("route", sorted(VALID_BODIES))
def test_huge_and_non_finite_numbers_in_any_place_are_400(client, route):
    body = VALID_BODIES[route]
    numbers = [path for path, value in leaves(body) if isinstance(value, (int, float)) and not isinstance(value, bool)]
    for path in numbers + [("unknown_number",)]:
        for raw in BAD_NUMBERS:
            assert_refused(post_raw(client, route, with_raw(body, path, raw)))
    assert client.get("/api/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize("route", ["pruning/neuron-importance", "pruning/plan", "queries/neuron", "pruning/batch-analysis"])
def test_numbers_at_the_float_and_int_limits_never_give_5xx(client, route):
    body = VALID_BODIES[route]
    numbers = [path for path, value in leaves(body) if isinstance(value, (int, float)) and not isinstance(value, bool)]
    for path in numbers:
        for raw in EDGE_NUMBERS:
            response = post_raw(client, route, with_raw(body, path, raw), "?async=false")
            assert response.status_code < 500, (path, raw, response.get_data(as_text=True)[:300])


def test_nan_inside_a_plan_is_refused_before_any_work(client, app):
    models = app.extensions["neuronscope"].settings.resolved_models_dir
    for raw in ["NaN", "Infinity", "1e309", "1" * 400]:
        for key in ("sparsity", "achieved_sparsity", "seed"):
            body = {**VALID_BODIES["pruning/apply"], "plan": {**PLAN, key: "__X__"}}
            for query in ("", "?async=true"):
                text = json.dumps(body).replace('"__X__"', raw)
                assert_refused(post_raw(client, "pruning/apply", text, query), f"plan.{key}")
    assert not (models / "pruned-x").exists()
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_job_bodies_get_the_same_checks_before_anything_is_queued(client):
    for raw in BAD_NUMBERS[:4] + BAD_TEXTS[:3]:
        text = '{"endpoint": "pruning/evaluate", "body": {"texts": ["Hello world"], "ablate": %s}}' % raw
        assert_refused(post_raw(client, "jobs", text))
        text = '{"endpoint": "pruning/neuron-importance", "body": {"layer_index": 0, "input_texts": [%s]}}' % raw
        assert_refused(post_raw(client, "jobs", text))
    assert client.get("/api/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize(
    "route, query",
    [
        ("/api/pruning/candidates", "threshold=1e309"),
        ("/api/pruning/candidates", "threshold=" + "1" * 400),
        ("/api/pruning/candidates", "layer_index=" + "9" * 400),
        ("/api/pruning/candidates", "limit=-" + "9" * 30),
        ("/api/pruning/candidates", "threshold=NaN"),
        ("/api/pruning/weight-analysis", "tolerance=" + "1" * 400),
        ("/api/pruning/weight-analysis", "tolerance=-inf"),
        ("/api/jobs", "status=%00done"),
        ("/api/samples", "index=" + "9" * 400),
        ("/api/samples", "prompt=a%00b"),
    ],
)
def test_query_strings_get_the_same_checks(client, route, query):
    method = client.delete if route == "/api/samples" else client.get
    assert_refused(method(f"{route}?{query}"))


# -- texts over the token limit ------------------------------------------------------------


def combining_accents(chars: int) -> str:
    """'a' followed by combining acute accents: few characters, many tokens."""
    return "a" + "\u0301" * (chars - 1)


def test_a_prompt_over_the_token_limit_is_never_stored(client, app):
    prompt = combining_accents(1501)
    assert len(prompt) <= app.extensions["neuronscope"].settings.max_sample_chars
    assert_refused(client.post("/api/samples", json={"prompt": prompt}), "tokens")
    assert prompt not in client.get("/api/samples").get_json()
    assert client.post("/api/pruning/evaluate", json={"use_samples": True}).status_code == 200


@pytest.mark.parametrize(
    "route, field, as_list",
    [
        ("pruning/impact-analysis", "input_text", False),
        ("pruning/neuron-importance", "input_texts", True),
        ("pruning/batch-analysis", "input_texts", True),
        ("pruning/evaluate", "texts", True),
        ("activations/corpus", "texts", True),
        ("activations/generate", "prompt", False),
        ("activations/compare", "prompt", False),
    ],
)
def test_overlong_texts_are_refused_at_the_door_even_as_jobs(client, route, field, as_list):
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})  # a loaded model: its limit applies
    long_text = combining_accents(400)
    body = {**VALID_BODIES[route], field: [TEXTS[0], long_text] if as_list else long_text}
    query = "?async=true" if OPERATIONS[f"POST {route}"].supports_async else ""
    assert_refused(client.post(f"{url(route)}{query}", json=body), "tokens")
    assert client.get("/api/jobs").get_json()["jobs"] == []


# -- stored samples ------------------------------------------------------------------------


def write_samples(app, raw: str) -> None:
    path = app.extensions["neuronscope"].settings.data_dir / "samples.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(raw, encoding="utf-8")


def test_invalid_stored_samples_are_skipped_and_never_break_later_requests(client, app, caplog):
    good = ["The cat sat on the mat.", "Hello world, this is a test."]
    overlong = combining_accents(300)  # valid Unicode, but over the tiny models' 128 tokens
    write_samples(app, json.dumps([good[0], "\ud800", "", 42, None, "bad\u0000", overlong, good[1]]))
    assert client.get("/api/samples").get_json() == [good[0], overlong, good[1]]
    assert "skipping stored sample" in caplog.text
    for call in (
        lambda: client.post("/api/pruning/evaluate", json={"use_samples": True}),
        lambda: client.post("/api/pruning/plan", json={"sparsity": 0.2, "method": "wanda", "use_samples": True}),
        lambda: client.post("/api/activations/corpus", json={"use_samples": True}),
        lambda: client.get("/api/pruning/candidates?method=wanda"),
        lambda: client.get("/api/pruning/candidates?method=activation"),
    ):
        response = call()
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
    corpus = client.post("/api/activations/corpus", json={"use_samples": True}).get_json()
    assert corpus["texts_received"] == 2  # the overlong one is skipped for this model
    assert "skipping a stored sample" in caplog.text


@pytest.mark.parametrize("raw", ["{not json", '{"a": 1}', "\"text\"", ""])
def test_an_unreadable_sample_file_reads_as_empty(client, app, raw):
    write_samples(app, raw)
    assert client.get("/api/samples").get_json() == []
    assert client.post("/api/samples", json={"prompt": "Fresh start"}).status_code == 201
    assert client.get("/api/samples").get_json() == ["Fresh start"]


def test_samples_can_be_deleted_by_index_or_text(client):
    samples = client.get("/api/samples").get_json()
    first = client.delete("/api/samples?index=0")
    assert first.status_code == 200 and first.get_json() == {"prompt": samples[0], "removed": True, "count": len(samples) - 1}
    by_text = client.delete("/api/samples", query_string={"prompt": f"  {samples[2]} "})
    assert by_text.status_code == 200 and by_text.get_json()["prompt"] == samples[2]
    assert client.get("/api/samples").get_json() == [samples[1], *samples[3:]]
    assert client.delete(f"/api/samples?index={len(samples)}").status_code == 404
    assert client.delete("/api/samples?prompt=never%20stored").status_code == 404
    assert_refused(client.delete("/api/samples"))
    assert_refused(client.delete("/api/samples?index=0&prompt=x"))
    assert_refused(client.delete("/api/samples?index=-1"))
    assert_refused(client.delete("/api/samples?index=abc"))


def test_a_poisoned_sample_file_is_cleaned_by_the_next_write(client, app):
    write_samples(app, json.dumps(["Good one.", "\udfff"]))
    client.post("/api/samples", json={"prompt": "Another"})
    stored = (app.extensions["neuronscope"].settings.data_dir / "samples.json").read_text(encoding="utf-8")
    assert json.loads(stored) == ["Good one.", "Another"]


# -- ?async and the synchronous work budget ------------------------------------------------


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/api/pruning/impact-analysis", VALID_BODIES["pruning/impact-analysis"]),
        ("post", "/api/queries/neuron", VALID_BODIES["queries/neuron"]),
        ("post", "/api/samples", VALID_BODIES["samples"]),
        ("get", "/api/pruning/candidates", None),
        ("get", "/api/health", None),
        ("get", "/api/models", None),
        ("get", "/api/jobs", None),
        ("delete", "/api/cache", None),
    ],
)
def test_async_on_a_route_that_cannot_run_as_a_job_is_400(client, method, path, body):
    call = getattr(client, method)
    kwargs = {"json": body} if body is not None else {}
    assert_refused(call(f"{path}?async=true", **kwargs), "?async=true")
    assert call(f"{path}?async=false", **kwargs).status_code < 400


def test_a_bad_async_value_is_400_everywhere(client):
    assert_refused(client.get("/api/health?async=maybe"))
    assert_refused(client.post("/api/pruning/evaluate?async=2", json={"texts": TEXTS}))


def forward_tokens_of(lm, texts) -> int:
    return sum(len(lm.tokenizer(text)["input_ids"]) for text in texts)


def test_the_estimate_counts_a_forward_pass_from_the_ablated_layer_on_per_neuron(make_app):
    from neuronscope.api.requests import BatchAnalysis, NeuronImportance

    app = make_app()
    svc = app.extensions["neuronscope"]
    with svc.manager.use() as lm:
        tokens = forward_tokens_of(lm, TEXTS)
        n_layers = lm.adapter.n_layers  # 2: an ablation in layer 0 re-runs both blocks, in layer 1 half of them
        first = NeuronImportance.parse({"layer_index": 0, "input_texts": TEXTS}, svc.settings)
        assert first.forward_tokens(lm, svc) == (1 + lm.adapter.d_mlp(0)) * tokens
        one = NeuronImportance.parse({"layer_index": 1, "input_texts": TEXTS}, svc.settings)
        assert one.forward_tokens(lm, svc) == (1 + lm.adapter.d_mlp(1) // n_layers) * tokens
        every = NeuronImportance.parse({"layer_indices": "all", "input_texts": TEXTS}, svc.settings)
        assert every.forward_tokens(lm, svc) == (1 + lm.adapter.d_mlp(0) + lm.adapter.d_mlp(1) // 2) * tokens
        batch = BatchAnalysis.parse(VALID_BODIES["pruning/batch-analysis"], svc.settings)
        assert batch.forward_tokens(lm, svc) == (2 + 1 + 1) * tokens
        assert svc.long_runs.seconds_per_token(lm) > 0


@pytest.mark.parametrize(
    "route, body",
    [
        ("pruning/neuron-importance", VALID_BODIES["pruning/neuron-importance"]),
        ("pruning/batch-analysis", VALID_BODIES["pruning/batch-analysis"]),
        ("pruning/evaluate", {"texts": TEXTS}),
        ("pruning/plan", {"sparsity": 0.25, "method": "taylor", "texts": TEXTS}),
        ("activations/corpus", {"texts": TEXTS}),
    ],
)
def test_synchronous_work_over_the_budget_is_refused_and_runs_as_a_job(make_app, route, body):
    client = make_app(sync_budget_seconds=1e-9, rate_limit_per_minute=0).test_client()
    assert_refused(client.post(url(route), json=body), "?async=true", "NEURONSCOPE_SYNC_BUDGET_SECONDS")
    job = client.post(f"{url(route)}?async=true", json=body)
    assert job.status_code == 202
    assert wait_for_status(client, job.get_json()["job_id"], {"done", "failed"})["status"] == "done"


@pytest.mark.parametrize(
    "route, body, details",
    [
        ("pruning/neuron-importance", {"layer_index": 7, "input_texts": TEXTS}, "layer_index 7 is out of range"),
        ("pruning/neuron-importance", {"layer_indices": [0, 9], "input_texts": TEXTS}, "layer_index 9 is out of range"),
        ("pruning/batch-analysis", {"pruning_candidates": [{"layer_index": 0, "neuron_index": 10**6}], "input_texts": TEXTS},
         "neuron indices [1000000] are out of range"),
        ("pruning/evaluate", {"texts": TEXTS, "ablate": [{"layer_index": 5, "neuron_indices": [1]}]}, "layer_index 5 is out of range"),
        ("pruning/apply", {"output_name": "x", "neurons": [{"layer_index": 3, "neuron_indices": [1]}]}, "layer_index 3 is out of range"),
    ],
)
def test_a_wrong_neuron_is_named_before_the_work_is_budgeted(make_app, route, body, details):
    client = make_app(sync_budget_seconds=1e-9, rate_limit_per_minute=0).test_client()
    response = client.post(url(route), json=body)
    assert_refused(response)
    assert response.get_json()["details"].startswith(details)


def test_cheap_work_is_not_budgeted(make_app):
    client = make_app(sync_budget_seconds=1e-9).test_client()
    assert client.get("/api/pruning/weight-analysis").status_code == 200
    assert client.post("/api/pruning/plan", json={"sparsity": 0.25, "method": "magnitude"}).status_code == 200


def test_job_params_are_the_request_in_api_names(client):
    body = {"layer_index": 1, "input_texts": TEXTS}
    job = client.post("/api/pruning/neuron-importance?async=true", json=body).get_json()
    params = wait_for_status(client, job["job_id"], {"done"})["params"]
    assert params == {
        "layer_index": 1, "input_texts": TEXTS, "method": "ablation", "ablation": "zero", "critical_threshold": None,
    }
    again = client.post("/api/pruning/neuron-importance", json=params)  # params are a valid body
    assert again.status_code == 200 and again.headers["X-NeuronScope-Cache"] == "hit"


def test_the_estimate_counts_the_dense_evaluation_until_it_is_memoized(make_app):
    from neuronscope.api.requests import Plan, Sweep

    svc = make_app().extensions["neuronscope"]
    plan = Plan.parse({"sparsity": 0.25, "method": "magnitude", "estimate": True}, svc.settings)
    sweep = Sweep.parse({"methods": ["magnitude"], "sparsities": [0.1, 0.2, 0.3]}, svc.settings)
    with svc.manager.use() as lm:
        before = plan.forward_tokens(lm, svc), sweep.forward_tokens(lm, svc)
        compression = svc.compression
        compression.dense_loss(lm, compression.sequences(lm, svc.text_sets.evaluation()))
        after = plan.forward_tokens(lm, svc), sweep.forward_tokens(lm, svc)
    evaluation = after[0]  # one pass of the pruned copy over the evaluation set
    assert evaluation > 0 and before == (2 * evaluation, 4 * evaluation) and after == (evaluation, 3 * evaluation)
