"""API key, Host-header check, rate limits, the model queue, and model-name safety."""

import threading
import time
from contextlib import contextmanager

import pytest

from neuronscope.errors import ServiceBusy


def test_api_key_guards_everything_but_health(make_app):
    client = make_app(api_key="s3cret").test_client()
    assert client.get("/api/health").status_code == 200
    denied = client.get("/api/samples")
    assert denied.status_code == 401 and set(denied.get_json()) == {"error", "details"}
    assert client.get("/api/samples", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/api/samples", headers={"X-API-Key": "s3cret"}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5001", "127.0.0.1.evil.example"])
def test_foreign_host_header_is_refused_on_localhost(client, host):
    response = client.get("/api/health", headers={"Host": host})
    assert response.status_code == 403 and "Host" in response.get_json()["details"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:5001", "localhost:5001", "[::1]:5001"])
def test_loopback_host_headers_pass(client, host):
    assert client.get("/api/health", headers={"Host": host}).status_code == 200


def test_extra_allowed_hosts(make_app):
    client = make_app(allowed_hosts=("lab-box.internal",)).test_client()
    assert client.get("/api/health", headers={"Host": "lab-box.internal:5001"}).status_code == 200


def test_expensive_routes_are_rate_limited(make_app):
    client = make_app(rate_limit_per_minute=3).test_client()
    codes = [client.post("/api/models/switch", json={"model_name": "tiny-gpt2"}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    assert int(limited.headers["Retry-After"]) >= 1 and set(limited.get_json()) == {"error", "details"}
    assert all(client.get("/api/samples").status_code == 200 for _ in range(10))


@contextmanager
def model_held_elsewhere(manager):
    """Another thread holds the model until the block ends."""
    manager.ensure_loaded()
    release, started = threading.Event(), threading.Event()

    def hold():
        with manager.use():
            started.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait(5)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_queue_full_answers_503_with_retry_after(make_app):
    app = make_app(max_queued=1, queue_timeout=30)
    manager = app.extensions["neuronscope"].manager

    def wait_for_model():
        with manager.use():
            pass

    with model_held_elsewhere(manager):
        waiter = threading.Thread(target=wait_for_model)
        waiter.start()
        deadline = time.monotonic() + 5
        while manager._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ServiceBusy) as info:
            with manager.use():
                pass
        response = app.test_client().post("/api/models/switch", json={"model_name": "tiny-llama"})
    waiter.join()
    assert info.value.headers["Retry-After"]
    assert response.status_code == 503 and "Retry-After" in response.headers


def test_waiting_too_long_answers_503(make_app):
    app = make_app(queue_timeout=0.2)
    manager = app.extensions["neuronscope"].manager
    with model_held_elsewhere(manager):
        response = app.test_client().post("/api/models/switch", json={"model_name": "tiny-llama"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert manager.current_name == "tiny-gpt2"


def test_switch_waits_for_a_running_analysis(make_app):
    app = make_app()
    manager = app.extensions["neuronscope"].manager
    seen = []
    started = threading.Event()

    def analysis():
        with manager.use() as lm:
            started.set()
            time.sleep(0.3)
            seen.append(manager.current_name == lm.name == "tiny-gpt2")

    worker = threading.Thread(target=analysis)
    worker.start()
    started.wait(5)
    assert app.test_client().post("/api/models/switch", json={"model_name": "tiny-llama"}).status_code == 200
    worker.join()
    assert seen == [True] and manager.current_name == "tiny-llama"


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../models/x", "..\\x", "C:\\models", "a/b/c", "x\x00y", "~root/x", "gpt2\n", ".", "a" * 201]
)
def test_model_names_never_reach_the_filesystem(client, name):
    assert client.post("/api/models/switch", json={"model_name": name}).status_code == 400


def test_symlinked_model_folder_is_not_loaded(make_app, models_dir, tmp_path):
    linked = tmp_path / "linked-models"
    linked.mkdir()
    (linked / "outside-model").symlink_to(models_dir / "tiny-gpt2")
    app = make_app(models_dir=linked)
    response = app.test_client().post("/api/models/switch", json={"model_name": "outside-model"})
    assert response.status_code == 404


CORS_PROBES = [
    ("GET", "/api/health", None),
    ("POST", "/api/samples", {"prompt": "from a foreign page"}),
    ("POST", "/api/models/switch", {"model_name": "tiny-gpt2"}),
    ("DELETE", "/api/cache", None),
]


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:5001", "null", "http://localhost:3000"])
@pytest.mark.parametrize("method,path,body", CORS_PROBES)
def test_by_default_no_origin_gets_cors_headers(client, origin, method, path, body):
    response = client.open(path, method=method, json=body, headers={"Origin": origin})
    assert not any(h.lower().startswith("access-control-") for h in response.headers.keys())
    preflight = client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method})
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers.keys())


def test_listed_origins_and_only_those_get_cors_headers(make_app):
    client = make_app(cors_origins=("http://localhost:3000",)).test_client()
    allowed = client.post("/api/samples", json={"prompt": "x"}, headers={"Origin": "http://localhost:3000"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    for origin in ("https://evil.example", "http://localhost:3001", "http://localhost:3000.evil.example"):
        response = client.get("/api/health", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers


def test_rate_limiter_keys_are_route_templates_and_bounded(make_app):
    app = make_app(rate_limit_per_minute=1_000)
    client = app.test_client()
    limiter = app.extensions["neuronscope_rate_limiter"]
    for i in range(300):
        client.post(f"/api/unknown-{i}", json={})
        client.post(f"/api/pruning/nothing/{i}", json={})
        client.get(f"/api/pruning/candidates-{i}")
        client.head(f"/api/pruning/x{i}")
    assert len(limiter) <= 3  # one key per method for all unmatched paths of one client


def test_rate_limiter_forgets_least_recently_used_keys():
    from neuronscope.security import RateLimiter

    limiter = RateLimiter(per_minute=5, max_keys=100)
    for client in range(1_000):
        limiter.check(f"10.0.{client // 256}.{client % 256}", "POST /api/x")
    assert len(limiter) == 100


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_head_is_counted_as_get(make_app, method):
    client = make_app(rate_limit_per_minute=2).test_client()
    path = "/api/pruning/candidates?method=magnitude&top_k=1"
    first = [client.open(path, method=m).status_code for m in ("GET", method)]
    assert 429 not in first
    assert client.open(path, method="HEAD" if method == "GET" else "GET").status_code == 429


@pytest.mark.parametrize("header", ["X-Big", "Accept-Language", "User-Agent"])
def test_oversized_headers_get_a_json_431(make_app, header):
    client = make_app(max_header_bytes=4096).test_client()
    response = client.get("/api/health", headers={header: "a" * 5000})
    assert response.status_code == 431 and set(response.get_json()) == {"error", "details"}
    long_query = client.get("/api/samples?" + "q=" + "b" * 5000)
    assert long_query.status_code == 431 and long_query.is_json
    assert client.get("/api/health", headers={header: "a" * 1000}).status_code == 200
