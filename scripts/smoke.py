#!/usr/bin/env python3
"""Smoke test of every /api/pruning endpoint of a live server, end to end, in seconds, with the
standard library only:

    python scripts/smoke.py --url http://127.0.0.1:5001 [--jobs]

(on the embedded model about 10 s: the heavy endpoints use the last layer and short texts).
With ``--jobs`` the long endpoints run as background jobs, followed live over Server-Sent
Events with a progress bar each. ``tests/test_pruning_quick.py`` runs the same checks in-process
on the tiny models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Callable

Call = Callable[[str, str, dict | None], tuple[int, dict]]
Follow = Callable[[str], dict]

LONG_ENDPOINTS = ("/api/pruning/weight-analysis", "/api/pruning/neuron-importance", "/api/pruning/batch-analysis")
FINISHED = ("done", "failed", "cancelled")


def run_checks(call: Call, log: Callable[[str], None] = lambda line: None) -> None:
    """Exercise every pruning endpoint through ``call(method, path, body)``; raise AssertionError on failure."""

    def timed(method: str, path: str, body: dict | None = None, expect: int = 200) -> dict:
        started = time.perf_counter()
        status, data = call(method, path, body)
        assert status == expect, f"{method} {path}: status {status}, expected {expect}: {data}"
        log(f"{status} {method} {path} ({time.perf_counter() - started:.2f} s)")
        return data

    weights = timed("GET", "/api/pruning/weight-analysis")
    assert weights["total_parameters"] >= weights["non_zero_parameters"] > 0
    assert 0.0 <= weights["overall_sparsity"] <= 1.0 and weights["layer_stats"]
    for row in weights["layer_stats"]:
        assert row["layer_name"] in weights["layer_sparsity"]
        assert 0.0 <= row["min_magnitude"] <= row["mean_magnitude"] <= row["max_magnitude"]

    found = timed("GET", "/api/pruning/candidates?threshold=10.0")
    assert found["threshold_percentile"] == 10.0 and found["total_candidates"] == len(found["candidates"])
    layers = found["layers"]
    last, d_mlp = layers[-1]["layer_index"], layers[-1]["total_neurons"]
    for item in found["candidates"]:
        assert item["is_pruning_candidate"] and 0.0 <= item["pruning_score"] <= 1.0 and item["weight_rank"] >= 1
    page = timed("GET", f"/api/pruning/candidates?method=magnitude&layer_index={last}&limit=3&offset=1")
    assert len(page["candidates"]) <= 3 and all(c["layer_index"] == last for c in page["candidates"])

    text = "Hello world, this is a test for pruning analysis."
    impact = timed(
        "POST", "/api/pruning/impact-analysis", {"layer_index": last, "neuron_indices": [0, 1, 2], "input_text": text}
    )
    assert impact["affected_neurons"] == [0, 1, 2] and impact["safe_to_prune"] == (impact["impact_score"] < 0.1)
    assert impact["max_change"] >= impact["mean_change"] >= 0.0 and impact["kl_divergence"] >= 0.0

    importance = timed("POST", "/api/pruning/neuron-importance", {"layer_index": last, "input_texts": ["Hello world"]})
    assert importance["total_neurons"] == d_mlp == len(importance["importance_scores"])
    assert importance["critical_neurons"] == sum(s["is_critical"] for s in importance["importance_scores"])
    fast = timed(
        "POST", "/api/pruning/neuron-importance",
        {"layer_index": last, "input_texts": ["Hello world"], "method": "attribution"},
    )
    assert fast["method"] == "attribution" and len(fast["importance_scores"]) == d_mlp

    batch = timed(
        "POST", "/api/pruning/batch-analysis",
        {
            "pruning_candidates": [{"layer_index": last, "neuron_index": n} for n in (0, 1, 2)],
            "input_texts": ["Hello world", "Test input"],
            "batch_size": 2,
        },
    )
    assert len(batch["individual_impacts"]) == 3 and len(batch["cumulative_curve"]) == 2
    recommendations = batch["recommendations"]
    assert recommendations["safe_to_prune"] + recommendations["risky_to_prune"] == 3
    assert 0 <= recommendations["suggested_batch_size"] <= 2

    for kind in ("weight", "impact"):
        exported = timed("POST", "/api/pruning/export", {"type": kind})
        assert exported["file_path"].endswith(".json") and "exported" in exported["message"]

    error = timed("GET", "/api/pruning/candidates?threshold=150", expect=400)
    assert set(error) == {"error", "details"}


def as_jobs(call: Call, follow: Follow) -> Call:
    """``call`` that runs the long endpoints as background jobs (``?async=true``) and answers with
    each job's outcome, as the synchronous call would have: ``follow(events_path)`` waits for the
    job's final state."""

    def job_call(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        if path.split("?")[0] not in LONG_ENDPOINTS:
            return call(method, path, body)
        status, accepted = call(method, path + ("&" if "?" in path else "?") + "async=true", body)
        if status != 202:
            return status, accepted
        job = follow(accepted["events"])
        assert job["status"] != "cancelled", f"job {job['job_id']} ({path}) was cancelled"
        if job["status"] == "done":
            return 200, job["result"]
        return job["error"]["status"], {"error": job["error"]["error"], "details": job["error"]["details"]}

    return job_call


def _progress_bar(view: dict, width: int = 30) -> str:
    filled = round(width * view["progress"])
    eta = f", about {view['eta_seconds']:.0f} s left" if view.get("eta_seconds") else ""
    return f"  [{'#' * filled}{'.' * (width - filled)}] {100 * view['progress']:3.0f}% {view['step'][:40]}{eta}"


def _http_follower(base_url: str, timeout: float) -> Follow:
    """Reads a job's Server-Sent Events, drawing a progress bar on stderr, until its final state."""

    def follow(events_path: str) -> dict:
        view: dict = {}
        with urllib.request.urlopen(base_url.rstrip("/") + events_path, timeout=timeout) as response:
            for raw in response:
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith("data: "):
                    view = json.loads(line[len("data: "):])
                    sys.stderr.write("\r" + _progress_bar(view).ljust(100))
                    sys.stderr.flush()
        sys.stderr.write("\n")
        if view.get("status") not in FINISHED:
            raise OSError(f"the event stream of {events_path} ended before the job did")
        return view

    return follow


def _http_caller(base_url: str, timeout: float) -> Call:
    def call(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke-test every /api/pruning endpoint of a live NeuronScope server.")
    parser.add_argument("--url", default="http://127.0.0.1:5001", help="server base URL (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request (default %(default)s)")
    parser.add_argument("--jobs", action="store_true", help="run the long endpoints as background jobs, with progress bars")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    call = _http_caller(args.url, args.timeout)
    if args.jobs:
        call = as_jobs(call, _http_follower(args.url, args.timeout))
    try:
        run_checks(call, log=print)
    except (AssertionError, OSError) as exc:
        print(f"FAILED: {exc}")
        return 1
    print(f"all pruning endpoints OK in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
