"""GET /api/models, GET /api/models/{name} and a switch's answer are each built from one snapshot
of the current model, so a switch in between can never make one response contradict itself."""

import itertools

import pytest


@pytest.fixture
def flicker(app, monkeypatch):
    manager = app.extensions["neuronscope"].manager
    loaded = manager.ensure_loaded()
    states = itertools.cycle([loaded, None, loaded])
    monkeypatch.setattr(manager, "peek", lambda: next(states))
    monkeypatch.setattr(type(manager), "current_name", property(lambda self: next(states) and "tiny-gpt2"))
    return loaded


def _consistent(body: dict) -> None:
    marked = [name for name, info in body["models"].items() if info["loaded"]]
    current = body["current_model"]
    assert marked == ([current] if current is not None else [])
    if current is not None:
        assert "intermediate_size" in body["models"][current]


def test_model_list_is_one_snapshot(client, flicker):
    for _ in range(6):
        _consistent(client.get("/api/models").get_json())


def test_model_details_are_one_snapshot(client, flicker):
    for _ in range(6):
        info = client.get("/api/models/tiny-gpt2").get_json()
        assert info["loaded"] == ("intermediate_size" in info)
