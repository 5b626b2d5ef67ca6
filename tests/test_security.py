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
