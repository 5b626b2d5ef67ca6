"""Smoke test of every /api/pruning endpoint, end to end, in seconds: in-process on the tiny GPT-2
and tiny LLaMA (Flask test client), once directly and once with the long endpoints as background
jobs. The same checks run against a live server with ``python scripts/smoke.py --url ...``.
"""

from __future__ import annotations

import json

from scripts.smoke import as_jobs, run_checks


def test_every_pruning_endpoint_end_to_end(make_app, model_name):
    from neuronscope.analysis.hooks import hook_count

    app = make_app(model_name)
    client = app.test_client()

    def call(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        response = client.open(path, method=method, json=body)
        return response.status_code, response.get_json()

    run_checks(call)
    assert hook_count(app.extensions["neuronscope"].manager.ensure_loaded().model) == 0


def test_every_pruning_endpoint_as_jobs(make_app, model_name):
    from neuronscope.analysis.hooks import hook_count

    app = make_app(model_name, cache_entries=0)
    client = app.test_client()
    submitted = []

    def call(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        response = client.open(path, method=method, json=body)
        if response.status_code == 202:
            submitted.append(response.get_json()["job_id"])
        return response.status_code, response.get_json()

    def follow(events_path: str) -> dict:
        stream = client.get(events_path).get_data(as_text=True)
        return json.loads([line for line in stream.splitlines() if line.startswith("data: ")][-1][len("data: "):])

    run_checks(as_jobs(call, follow))
    assert len(submitted) == 4  # weight analysis, neuron importance twice, batch analysis
    assert hook_count(app.extensions["neuronscope"].manager.ensure_loaded().model) == 0
