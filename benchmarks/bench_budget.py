#!/usr/bin/env python3
"""The synchronous work budget's estimate against the real time of the same requests.

For each request: the estimate the server makes before a synchronous call (forward-pass tokens x
the model's measured seconds per token), then the call itself through the Flask test client
(budget and cache off), and their ratio (> 1: the estimate is larger than the work).

    python benchmarks/bench_budget.py [--model smollm2-135m-instruct] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_setup import add_model_arguments, scratch_settings

from neuronscope import create_app
from neuronscope.api.long_running import LONG_OPERATIONS

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello world, this is a test of neuron importance."]


def requests(last: int) -> list[tuple[str, str, dict]]:
    return [
        ("neuron-importance, last layer, 2 short texts", "pruning/neuron-importance", {"layer_index": last, "input_texts": TEXTS}),
        ("neuron-importance, middle layer, 2 short texts", "pruning/neuron-importance",
         {"layer_index": last // 2, "input_texts": TEXTS}),
        ("neuron-importance attribution, last layer", "pruning/neuron-importance",
         {"layer_index": last, "input_texts": TEXTS, "method": "attribution"}),
        ("batch-analysis, 20 candidates", "pruning/batch-analysis",
         {"pruning_candidates": [{"layer_index": last, "neuron_index": n} for n in range(20)], "input_texts": TEXTS}),
        ("evaluate, 2 short texts", "pruning/evaluate", {"texts": TEXTS}),
        ("evaluate, built-in texts (512-token chunks)", "pruning/evaluate", {}),
        ("plan wanda, built-in calibration texts", "pruning/plan", {"sparsity": 0.2, "method": "wanda"}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    app = create_app(scratch_settings(args, cache_entries=0, rate_limit_per_minute=0, sync_budget_seconds=1e12))
    svc = app.extensions["neuronscope"]
    client = app.test_client()
    with svc.manager.use() as lm:
        per_token = svc.long_runs.seconds_per_token(lm)
        last = lm.adapter.n_layers - 1
    print(f"{args.model}: {per_token * 1000:.3f} ms per token (probe), budget default 60 s")
    print(f"{'request':48} {'estimate s':>10} {'actual s':>9} {'estimate/actual':>15}")
    for label, name, body in requests(last):
        operation = LONG_OPERATIONS[name]
        with svc.manager.use() as lm:
            estimate = operation.parse(svc, body).forward_tokens(lm, svc) * per_token
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            response = client.post(f"/api/{name}", json=body)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_json()
        actual = statistics.median(times)
        print(f"{label:48} {estimate:10.2f} {actual:9.2f} {estimate / actual:15.2f}")


if __name__ == "__main__":
    main()
