"""Malformed requests against every endpoint: always a 4xx JSON error, never a 5xx, server still healthy."""

import pytest

JSON = "application/json"
BAD_BODIES = {
    "empty body": (b"", JSON),
    "form body": (b"layer_index=0&input_text=hi", "application/x-www-form-urlencoded"),
    "plain text": (b'{"prompt": "hi"}', "text/plain"),
    "truncated JSON": (b'{"prompt": "hi"', JSON),
    "JSON array": (b'["prompt"]', JSON),
    "JSON null": (b"null", JSON),
    "JSON string": (b'"prompt"', JSON),
    "JSON number": (b"42", JSON),
    "invalid UTF-8": (b'{"prompt": "\xff\xfe"}', JSON),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, JSON),
    "oversized": (b'{"prompt": "' + b"x" * 2_000_000 + b'"}', JSON),
    "NaN literal alone": (b"NaN", JSON),
    # valid JSON that Python's json module parses: refused by the body-wide checks, whatever the route
    "lone surrogates in every text field": (
        b'{"prompt": "\\ud800", "texts": ["\\udfff"], "input_text": "\\ud800", "input_texts": ["a\\udc00"],'
        b' "model_name": "\\ud83d", "output_name": "x\\ud800", "endpoint": "\\udfff", "type": "\\ud800"}',
        JSON,
    ),
    "control character": (b'{"prompt": "a\\u0000b", "texts": ["\\u001b"], "type": "\\u0007"}', JSON),
    "NaN nested in a plan": (b'{"output_name": "x", "plan": {"sparsity": NaN, "neurons": []}, "sparsity": NaN}', JSON),
    "Infinity everywhere": (b'{"sparsity": Infinity, "tolerance": -Infinity, "layer_index": Infinity}', JSON),
    "1e309": (b'{"sparsity": 1e309, "threshold": 1e309, "critical_threshold": -1e309, "top_k": 1e309}', JSON),
    "400-digit integer": (
        b'{"sparsity": ' + b"1" * 400 + b', "layer_index": ' + b"9" * 400 + b', "cluster_id": -' + b"9" * 400 + b"}",
        JSON,
    ),
}
BAD_QUERIES = {
    "/api/pruning/candidates": ["threshold=abc", "threshold=-5", "threshold=101", "threshold=nan", "limit=0",
                                "layer_index=-1", "layer_index=1.5", "offset=-2", "method=unknown", "layer_index=99"],
    "/api/pruning/weight-analysis": ["tolerance=-1", "tolerance=abc", "tolerance=inf", "tolerance=1e309",
                                     "tolerance=" + "1" * 400, "tolerance=nan", "async=maybe"],
    "/api/jobs": ["status=%00", "status=done%ED%A0%80", "async=true"],
}
BAD_ACTIVATION_QUERIES = ["layer=x", "top_k=0", "top_k=abc", "layer=999", "layer=-1"]


def post_routes(app) -> list[str]:
    return sorted(r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/") and "POST" in r.methods)


def assert_client_error(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {"error", "details"}
    assert "Traceback" not in body["details"]


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_every_post_endpoint_refuses_malformed_bodies(client, kind):
    data, content_type = BAD_BODIES[kind]
    routes = post_routes(client.application)
    assert len(routes) >= 14
    for route in routes:
        assert_client_error(client.post(route, data=data, content_type=content_type))
    assert client.get("/api/health").status_code == 200


def test_get_endpoints_refuse_bad_query_values(client):
    for route, queries in BAD_QUERIES.items():
        for query in queries:
            assert_client_error(client.get(f"{route}?{query}"))
    activation = client.post("/api/activations/generate", json={"prompt": "Hello world"}).get_json()["filename"]
    for query in BAD_ACTIVATION_QUERIES:
        assert_client_error(client.get(f"/api/activations/{activation}?{query}"))
    assert client.get("/api/health").status_code == 200


@pytest.mark.parametrize(
    "path, body, details",
    [
        ("/api/pruning/plan", b"null", "the request body must be a JSON object"),
        ("/api/pruning/plan", b"{nope", "the request body is not valid JSON"),
        ("/api/pruning/plan", b'{"sparsity": "0.1", "method": "magnitude"}', "'sparsity' must be a number, got a string '0.1'"),
        ("/api/pruning/plan", b'{"sparsity": true, "method": "magnitude"}', "'sparsity' must be a number, got a boolean True"),
        ("/api/pruning/apply", b'{"output_name": "x", "neurons": [{"layer_index": 1}]}',
         "neurons[0]: 'neuron_indices' is required"),
        ("/api/pruning/apply", b'{"output_name": "x", "plan": {"neurons": [], "sparsity": 0}}', "the plan removes no neuron"),
    ],
)
def test_errors_say_what_is_wrong_and_where(client, path, body, details):
    response = client.post(path, data=body, content_type=JSON)
    assert_client_error(response)
    assert response.get_json()["details"].startswith(details)


LOOSE_NUMBERS = ["2_3", "%2B3", "%203%20", "%D9%A3", "3.0", "0x3", "3%00"]


@pytest.mark.parametrize("raw", LOOSE_NUMBERS)
def test_query_numbers_must_be_written_as_json_writes_them(client, raw):
    before = client.get("/api/samples").get_json()
    assert_client_error(client.delete(f"/api/samples?index={raw}"))
    assert client.get("/api/samples").get_json() == before
    assert_client_error(client.get(f"/api/pruning/candidates?layer_index={raw}"))
    if raw != "3.0":
        assert_client_error(client.get(f"/api/pruning/candidates?threshold=1{raw}"))


def test_query_numbers_written_as_json_are_read(client):
    body = client.get("/api/pruning/candidates?layer_index=1&threshold=1e1&limit=3").get_json()
    assert body["layer_index"] == 1 and body["threshold_percentile"] == 10.0
    assert client.get("/api/pruning/candidates?layer_index=-1").status_code == 400


@pytest.mark.parametrize(
    "query, details",
    [
        ("index=1&index=2", "'index' is given 2 times"),
        ("prompt=%ED%A0%80", "the query string is not valid UTF-8"),
        ("prompt=%C3", "the query string is not valid UTF-8"),
    ],
)
def test_a_repeated_argument_or_invalid_utf8_changes_nothing(client, query, details):
    before = client.get("/api/samples").get_json()
    response = client.delete(f"/api/samples?{query}")
    assert_client_error(response)
    assert response.get_json()["details"].startswith(details)
    assert client.get("/api/samples").get_json() == before


@pytest.mark.parametrize(
    "query", ["async=true&async=false", "format=csv&format=json", "async=true&format=csv"]
)
def test_async_and_format_are_given_once_and_csv_is_not_a_job(client, query):
    response = client.post(f"/api/pruning/neuron-importance?{query}", json={"layer_index": 0, "input_texts": ["hi there"]})
    assert_client_error(response)
    assert client.get("/api/jobs").get_json()["jobs"] == []
