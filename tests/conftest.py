"""Shared fixtures: tiny models saved once per session, apps on fresh data directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neuronscope import create_app
from neuronscope.api.long_running import LONG_OPERATIONS
from neuronscope.config import EMBEDDED_MODEL_NAME, Settings
from neuronscope.modeling.manager import ModelManager
from tests.support.jobs_support import GATED, WEIGHT_NORMS, Calls, Gate, gated_operation, stop_jobs, weight_norms_operation
from tests.support.settings import make_settings
from tests.support.tiny_models import save_tiny_models


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run several times faster on one thread when the 2 cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_tiny_models(folder)
    return folder


@pytest.fixture(scope="session")
def shared_managers(models_dir, tmp_path_factory):
    """One manager per tiny model, loaded once, shared by every test (read-only use)."""
    managers = {}

    def get(model: str) -> ModelManager:
        if model not in managers:
            settings = make_settings(tmp_path_factory.mktemp("shared-data"), models_dir, model)
            managers[model] = ModelManager(settings)
            managers[model].ensure_loaded()
        return managers[model]

    return get


@pytest.fixture(params=["tiny-gpt2", "tiny-llama"])
def model_name(request) -> str:
    return request.param


@pytest.fixture
def make_app(models_dir, tmp_path):
    """``make_app(model=..., **settings)``: an app on a fresh data dir with its own manager; its jobs
    are cancelled at the end of the test, so none runs on into the next one."""
    apps = []

    def factory(model: str = "tiny-gpt2", **overrides):
        folder = overrides.pop("models_dir", models_dir)
        apps.append(create_app(make_settings(tmp_path / "data", folder, model, **overrides)))
        return apps[-1]

    yield factory
    stop_jobs(apps)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def loaded(shared_managers, model_name):
    """The shared LoadedModel for the parametrised tiny model."""
    return shared_managers(model_name).ensure_loaded()


@pytest.fixture(scope="session")
def embedded_manager() -> ModelManager:
    """The embedded SmolLM2, loaded once; its converted cache lives in the project's data dir."""
    settings = Settings.from_env(model=EMBEDDED_MODEL_NAME, data_dir=Path(__file__).parent.parent / "data", offline=True)
    manager = ModelManager(settings)
    manager.ensure_loaded()
    return manager


@pytest.fixture
def calls(monkeypatch) -> Calls:
    """A test-only long operation (weight norms of a layer) registered for one test; counts its runs."""
    calls = Calls()
    monkeypatch.setitem(LONG_OPERATIONS, WEIGHT_NORMS, weight_norms_operation(calls))
    return calls


@pytest.fixture
def gate(monkeypatch):
    """A test-only long operation that waits at each step until the test opens the gate."""
    gate = Gate()
    monkeypatch.setitem(LONG_OPERATIONS, GATED, gated_operation(gate))
    yield gate
    gate.open_all()


@pytest.fixture
def run_waitress():
    """``run_waitress(server)``: runs a waitress server (``create_server(..., port=0)``) on a thread
    until the test ends; returns its ``host:port``."""
    import threading

    running = []

    def start(server) -> str:
        def loop():
            try:
                server.run()
            except OSError:  # the socket was closed from the test thread at teardown
                pass

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"127.0.0.1:{server.effective_port}"

    yield start
    for server, thread in running:
        server.close()
        thread.join(timeout=5)
