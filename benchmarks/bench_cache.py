#!/usr/bin/env python3
"""A cached repeat of POST /api/pruning/neuron-importance against the first call, on the embedded model.

Runs in-process through the Flask test client (no network): the first call computes (cache
miss), then the same request is repeated ``--repeats`` times (cache hits, median reported), a
request with one changed parameter misses again, and the cached request is also run as a
background job (submit + poll until done). Prints the timings side by side with ratios.

Usage: python benchmarks/bench_cache.py [--layer 29] [--repeats 20] [--data-dir /tmp/ns-embedded-data]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from neuronscope import create_app
from neuronscope.config import EMBEDDED_MODEL_NAME, PROJECT_ROOT, Settings
from neuronscope.modeling.fingerprint import weights_fingerprint

TEXTS = [
    "Hello world, this is a test for pruning analysis.",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning is fascinating.",
]
ENDPOINT = "/api/pruning/neuron-importance"


def timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def post(client, body: dict, query: str = ""):
    response = client.post(ENDPOINT + query, json=body)
    assert response.status_code in (200, 202), response.get_json()
    return response


def run_as_job(client, body: dict) -> dict:
    job_id = post(client, body, "?async=true").get_json()["job_id"]
    while True:
        job = client.get(f"/api/jobs/{job_id}").get_json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=29)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--data-dir", default=os.environ.get("NEURONSCOPE_DATA_DIR", str(PROJECT_ROOT / "data")))
    args = parser.parse_args()

    settings = Settings.from_env(model=EMBEDDED_MODEL_NAME, data_dir=args.data_dir, offline=True, rate_limit_per_minute=0)
    app = create_app(settings)
    client = app.test_client()
    load_s, lm = timed(app.extensions["neuronscope"].manager.ensure_loaded)
    fingerprint_s, _ = timed(lambda: weights_fingerprint(lm.model, lm.tokenizer))

    body = {"layer_index": args.layer, "input_texts": TEXTS}
    first_s, first = timed(lambda: post(client, body))
    assert first.headers["X-NeuronScope-Cache"] == "miss"
    hits = []
    for _ in range(args.repeats):
        seconds, repeat = timed(lambda: post(client, body))
        assert repeat.headers["X-NeuronScope-Cache"] == "hit"
        assert repeat.get_json() == {**first.get_json(), "cached": True}
        hits.append(seconds)
    changed_s, changed = timed(lambda: post(client, {**body, "input_texts": TEXTS[:2]}))
    assert changed.headers["X-NeuronScope-Cache"] == "miss"
    job_s, job = timed(lambda: run_as_job(client, body))
    assert job["cached"] is True and job["result"] == {**first.get_json(), "cached": True}

    hit_s = statistics.median(hits)
    d_mlp = len(first.get_json()["importance_scores"])
    print(f"embedded {EMBEDDED_MODEL_NAME}, layer {args.layer} ({d_mlp} neurons), {len(TEXTS)} texts, "
          f"torch threads {torch.get_num_threads()}")
    print(f"model load {load_s:.2f} s; weights fingerprint {fingerprint_s * 1000:.1f} ms (once per loaded model)")
    print(f"{'request':<44}{'seconds':>10}{'first / this':>14}")
    rows = [
        ("first call (miss: computes)", first_s),
        (f"cached repeat (hit, median of {args.repeats})", hit_s),
        ("one parameter changed (miss: computes)", changed_s),
        ("cached repeat as a job (submit + poll)", job_s),
    ]
    for label, seconds in rows:
        print(f"{label:<44}{seconds:>10.4f}{first_s / seconds:>14.1f}")
    print(f"speed-up of a cached repeat: {first_s / hit_s:.0f}x (min hit {min(hits) * 1000:.2f} ms, "
          f"max {max(hits) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
