"""The result cache: hits are identical and skip the work, changed parameters and models miss, LRU bounds."""

from __future__ import annotations

import pytest
from tests.support.jobs_support import WEIGHT_NORMS, add_test_views, wait_for_status

from neuronscope.api.long_running import CACHE_HEADER
from neuronscope.jobs.cache import ResultCache, cache_key
from neuronscope.modeling.fingerprint import weights_fingerprint
from neuronscope.modeling.manager import ModelManager


@pytest.fixture
def cache_app(make_app, calls):
    def factory(**settings):
        app = make_app(**settings)
        add_test_views(app)
        return app

    return factory


def post(client, body, *, query=""):
    return client.post(f"/api/{WEIGHT_NORMS}{query}", json=body)


def test_repeat_is_served_from_the_cache_identically(cache_app, calls):
    client = cache_app().test_client()
    first = post(client, {"layers": [0, 1], "order": 2})
    repeat = post(client, {"order": 2, "layers": [0, 1]})
    assert (first.headers[CACHE_HEADER], repeat.headers[CACHE_HEADER]) == ("miss", "hit")
    assert calls.count == 1
    assert "cached" not in first.get_json() and repeat.get_json().pop("cached") is True
    assert repeat.get_json() == {**first.get_json(), "cached": True}
    assert client.get("/api/cache").get_json()["entries"] == 1


def test_changed_parameter_misses(cache_app, calls):
    client = cache_app().test_client()
    base = post(client, {"layers": [0], "order": 2}).get_json()
    for changed in ({"layers": [0], "order": 1}, {"layers": [1], "order": 2}, {"layers": [0, 1], "order": 2}):
        response = post(client, changed)
        assert response.headers[CACHE_HEADER] == "miss" and "cached" not in response.get_json()
    assert calls.count == 4
    assert post(client, {"layers": [0]}).get_json() == {**base, "cached": True}  # the default order is 2


def test_model_switch_changes_the_key_and_switching_back_hits(cache_app, calls):
    client = cache_app().test_client()
    on_gpt2 = post(client, {"layers": [0]}).get_json()
    client.post("/api/models/switch", json={"model_name": "tiny-llama"})
    on_llama = post(client, {"layers": [0]})
    assert on_llama.headers[CACHE_HEADER] == "miss" and on_llama.get_json() != on_gpt2
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    again = post(client, {"layers": [0]})
    assert again.headers[CACHE_HEADER] == "hit" and again.get_json() == {**on_gpt2, "cached": True}
    assert calls.count == 2


def test_jobs_use_the_cache_too(cache_app, calls):
    client = cache_app().test_client()
    sync = post(client, {"layers": [1]}).get_json()
    job = wait_for_status(client, post(client, {"layers": [1]}, query="?async=true").get_json()["job_id"], {"done"})
    assert job["cached"] is True and job["result"] == {**sync, "cached": True} and calls.count == 1


def test_clearing_the_cache_makes_the_next_call_compute(cache_app, calls):
    client = cache_app().test_client()
    post(client, {"layers": [0]})
    assert client.delete("/api/cache").get_json() == {"cleared": 1}
    assert post(client, {"layers": [0]}).headers[CACHE_HEADER] == "miss" and calls.count == 2


def test_disabled_cache_always_computes(cache_app, calls):
    client = cache_app(cache_entries=0).test_client()
    for _ in range(2):
        assert post(client, {"layers": [0]}).headers[CACHE_HEADER] == "miss"
    assert calls.count == 2


def test_lru_evicts_the_least_recently_used_entry():
    cache = ResultCache(max_entries=2, max_bytes=10_000)
    cache.put("a", {"v": 1})
    cache.put("b", {"v": 2})
    assert cache.get("a") == {"v": 1}
    cache.put("c", {"v": 3})
    assert cache.get("b") is None and cache.get("a") == {"v": 1} and cache.get("c") == {"v": 3}


def test_byte_bound_evicts_and_oversized_results_are_not_kept():
    cache = ResultCache(max_entries=10, max_bytes=30)  # one {"v":"xxxxxxxxxx"} is 18 bytes
    cache.put("a", {"v": "x" * 10})
    cache.put("b", {"v": "y" * 10})
    assert cache.stats()["bytes"] == 18 and cache.get("a") is None and cache.get("b") is not None
    cache.put("big", {"v": "z" * 100})
    assert cache.get("big") is None


def test_hits_are_copies():
    cache = ResultCache(max_entries=2, max_bytes=10_000)
    cache.put("k", {"v": [1, 2]})
    cache.get("k")["v"].append(3)
    assert cache.get("k") == {"v": [1, 2]}


def test_results_that_are_not_strict_json_are_not_cached():
    cache = ResultCache(max_entries=2, max_bytes=10_000)
    cache.put("k", {"v": float("nan")})
    assert cache.get("k") is None


def test_persisted_entries_survive_a_restart_within_bounds(tmp_path):
    folder = tmp_path / "cache"
    first = ResultCache(max_entries=2, max_bytes=10_000, folder=folder)
    for name in ("a", "b", "c"):
        first.put(cache_key("m:1", "e", {"n": name}), {"n": name})
    assert len(list(folder.glob("*.json"))) == 2
    restarted = ResultCache(max_entries=2, max_bytes=10_000, folder=folder)
    assert restarted.get(cache_key("m:1", "e", {"n": "c"})) == {"n": "c"}
    assert restarted.get(cache_key("m:1", "e", {"n": "a"})) is None
    (folder / f"{cache_key('m:1', 'e', {'n': 'b'})}.json").write_text("{not json")
    assert restarted.get(cache_key("m:1", "e", {"n": "b"})) is None


def test_persisted_cache_answers_a_restarted_app(cache_app, calls):
    first = post(cache_app(cache_persist=True).test_client(), {"layers": [0]}).get_json()
    again = post(cache_app(cache_persist=True).test_client(), {"layers": [0]})
    assert again.headers[CACHE_HEADER] == "hit" and again.get_json() == {**first, "cached": True}
    assert calls.count == 1


def test_key_ignores_parameter_order_and_tells_models_apart():
    assert cache_key("m:1", "e", {"a": 1, "b": [2]}) == cache_key("m:1", "e", {"b": [2], "a": 1})
    assert cache_key("m:1", "e", {"a": 1}) != cache_key("m:2", "e", {"a": 1})
    assert cache_key("m:1", "e", {"a": 1}) != cache_key("m:1", "f", {"a": 1})


def test_fingerprint_is_stable_per_weights_and_sees_changes(models_dir, tmp_path):
    from tests.support.settings import make_settings

    loaded = [ModelManager(make_settings(tmp_path / f"d{i}", models_dir, "tiny-llama")).ensure_loaded() for i in range(2)]
    other = ModelManager(make_settings(tmp_path / "d2", models_dir, "tiny-neox")).ensure_loaded()
    prints = [weights_fingerprint(lm.model, lm.tokenizer) for lm in (*loaded, other)]
    assert prints[0] == prints[1] != prints[2]
    loaded[1].adapter.w_out(1).data[0, 0] += 1.0  # element 0 of every tensor is in the sample
    assert weights_fingerprint(loaded[1].model, loaded[1].tokenizer) != prints[0]
