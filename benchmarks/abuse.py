#!/usr/bin/env python3
"""The hostile client (issue 14): starts run_api_server.py on 127.0.0.1 and attacks it.

1. ``--per-endpoint`` malformed requests to every operation of docs/openapi.yaml: lone UTF-16
   surrogates (escaped and as raw bytes), 400-digit numbers, NaN/Infinity, oversized bodies,
   wrong types, wrong content types, hostile path and query values;
2. ``--streams`` job event streams opened at once (half of them dropped without closing) while
   /api/health is polled and a queue of jobs runs;
3. ``--flood`` requests to unique unknown paths (GET, POST, HEAD) while the server's RSS is sampled.

Prints requests tried, 5xx count (by operation), max/p99 health latency and RSS growth. Loopback
only, every loop bounded. The rate limit is set out of reach (``NEURONSCOPE_RATE_LIMIT=10^9``) so every
request reaches the handlers while the limiter still keeps its per-route windows. Not part of ``make test``.

Model: the embedded SmolLM2 by default; for speed on small machines, tiny test models:

    python -c "from tests.tiny_models import save_tiny_models; from pathlib import Path; save_tiny_models(Path('/tmp/ns-tiny'))"
    python benchmarks/abuse.py --models-dir /tmp/ns-tiny --model tiny-llama
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
METHODS = ("get", "post", "delete")
HUGE = "9" * 400

SURROGATE_ESCAPED = '"\\ud800"'
HOSTILE_VALUES = [  # JSON text of one field value
    SURROGATE_ESCAPED, '"a\\udfffb"', '"\\ud83d"', HUGE, "-" + HUGE, f"{HUGE}.5", "1e400", "-1e400",
    "NaN", "Infinity", "-Infinity", "null", "true", '"7"', "[1, [2, [3]]]", '{"a": 1}', "[]", '""',
    '"' + "\u0301" * 1500 + '"', "-1", "0", "2147483648", '"../../etc/passwd"', '"/etc/passwd"',
]
RAW_BODIES = [  # whole bodies, not valid JSON objects
    b'{"prompt": "\xed\xa0\x80"}', b"\xff\xfe\x00", b"[1, 2, 3]", b'"just a string"', b"null", b"{",
    b'{"a": NaN}', b"{}", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"{" + b'"k": 1, ' * 10 + b'"k": 2}',
]
TEXT = "Hello world, the quick brown fox."
VALID_BODIES = {  # a valid body per POST operation: the malformed ones replace one field at a time
    "/api/samples": {"prompt": TEXT},
    "/api/pruning/impact-analysis": {"layer_index": 0, "neuron_indices": [0, 1], "input_text": TEXT, "ablation": "zero"},
    "/api/pruning/neuron-importance": {"layer_index": 0, "input_texts": [TEXT], "critical_threshold": 0.1},
    "/api/pruning/batch-analysis": {"pruning_candidates": [{"layer_index": 0, "neuron_index": 0}], "input_texts": [TEXT],
                                    "batch_size": 4},
    "/api/pruning/export": {"type": "weight"},
    "/api/activations/generate": {"prompt": TEXT},
    "/api/activations/corpus": {"texts": [TEXT], "batch_size": 4},
    "/api/queries/neuron": {"layer_index": 0, "neuron_index": 0, "top_k": 5},
    "/api/pruning/evaluate": {"texts": [TEXT], "ablate": [{"layer_index": 0, "neuron_indices": [0]}]},
    "/api/pruning/plan": {"sparsity": 0.1, "method": "magnitude", "scope": "layer", "seed": 0, "texts": [TEXT]},
    "/api/pruning/apply": {"output_name": "abuse-out", "neurons": [{"layer_index": 0, "neuron_indices": [0]}],
                           "evaluate": True, "texts": [TEXT]},
    "/api/jobs": {"endpoint": "pruning/neuron-importance", "body": {"layer_index": 0, "input_texts": [TEXT]}},
}
PATH_VALUES = ["%ED%A0%80", HUGE, "..%2F..%2Fetc%2Fpasswd", "NaN", "x" * 300, "%00", "a.json", "%2e%2e"]
QUERY_VALUES = ["%ED%A0%80", HUGE, "1e400", "NaN", "-Infinity", "%00", "[]", "x" * 3000]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HOST": HOST, "PORT": str(port), "NEURONSCOPE_DATA_DIR": str(data_dir),
           "NEURONSCOPE_MODEL": args.model, "NEURONSCOPE_OFFLINE": "1", "NEURONSCOPE_RATE_LIMIT": "1000000000",
           "NEURONSCOPE_TORCH_THREADS": "1"}
    if args.models_dir:
        env["NEURONSCOPE_MODELS_DIR"] = str(args.models_dir)
    log = open(data_dir.parent / "server.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_api_server.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/api/health")[0] == 200:
                return proc
        except OSError:
            if proc.poll() is not None:
                break
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the server did not start; see {data_dir.parent / 'server.log'}")


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 120.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def operations() -> list[tuple[str, str, list[str]]]:
    """(method, path template, body field names) of every documented operation."""
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    found = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in METHODS and not path.endswith("/events"):
                schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                found.append((method.upper(), path, list(schema.get("properties", {})) or ["value"]))
    return found


def malformed(method: str, path: str, fields: list[str], n: int):
    """Up to ``n`` hostile (path, body, headers) variants for one operation."""
    variants = []
    templated = re.sub(r"\{[^}]+\}", "{}", path)
    concrete = templated.format(*["x"] * templated.count("{}"))
    for value in PATH_VALUES if "{}" in templated else []:
        variants.append((templated.format(*[value] * templated.count("{}")), None, {}))
    for value in QUERY_VALUES:
        variants.append((f"{concrete}?top_k={value}&threshold={value}&layer_index={value}&method={value}", None, {}))
    if method in ("POST", "DELETE"):
        base = VALID_BODIES.get(path, {})
        for field in base:
            rest = json.dumps({k: v for k, v in base.items() if k != field})[1:-1]
            for value in HOSTILE_VALUES:
                variants.append((concrete, f'{{{rest}{", " if rest else ""}"{field}": {value}}}'.encode(), {}))
        for i, value in enumerate(HOSTILE_VALUES):
            variants.append((concrete, f'{{"{fields[i % len(fields)]}": {value}}}'.encode(), {}))
        variants += [(concrete, body, {}) for body in RAW_BODIES]
        variants.append((concrete, b'{"pad": "' + b"a" * 1_200_000 + b'"}', {}))
        variants.append((concrete, b'{"x": 1}', {"Content-Type": "text/plain"}))
    variants.append((concrete, None, {"X-Big": "h" * 40_000}))
    return variants[:n] if n else variants


def attack_endpoints(port: int, per_endpoint: int) -> tuple[int, Counter]:
    tried, failures = 0, Counter()
    for method, path, fields in operations():
        for target, body, headers in malformed(method, path, fields, per_endpoint):
            try:
                status, _ = request(port, method, target, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                status = f"no answer ({type(exc).__name__})"
            tried += 1
            if not isinstance(status, int) or status >= 500:
                failures[f"{method} {path} -> {status}"] += 1
    return tried, failures


def failed_jobs_with_500(port: int) -> int:
    """Jobs the malformed requests started that failed with an internal error (a 500 in disguise)."""
    jobs = json.loads(request(port, "GET", "/api/jobs?status=failed")[1])["jobs"]
    details = [json.loads(request(port, "GET", f"/api/jobs/{job['job_id']}")[1]) for job in jobs]
    return sum(1 for job in details if job.get("error", {}).get("status", 0) >= 500)


def aftermath(port: int) -> dict[str, int]:
    """Statuses of requests that read what the attack may have stored (samples)."""
    checks = [("POST", "/api/pruning/evaluate", b'{"use_samples": true}'),
              ("GET", "/api/pruning/candidates?method=wanda", None),
              ("GET", "/api/pruning/candidates?method=activation", None),
              ("POST", "/api/activations/corpus", b'{"use_samples": true}')]
    return {f"{method} {path}": request(port, method, path, body)[0] for method, path, body in checks}


def poll_health(port: int, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            request(port, "GET", "/api/health", timeout=30)
        except OSError:
            pass
        latencies.append(time.perf_counter() - started)
        time.sleep(0.05)


def open_stream(port: int, job_id: str) -> tuple[socket.socket, int]:
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    head = sock.recv(64).split(b"\r\n", 1)[0].split()
    return sock, int(head[1]) if len(head) > 1 else 0


def attack_streams(port: int, n_streams: int, texts: list[str]) -> dict:
    """Queue a corpus indexing and 15 analyses behind it, open ``n_streams`` streams on the last job
    (dropping every other one at once), and poll /api/health until that job ends."""
    corpus = [f"{texts[0]} Sentence number {i} of the hostile corpus." for i in range(10_000)]
    submissions = [("/api/activations/corpus?async=true", {"texts": corpus})]
    submissions += [("/api/pruning/neuron-importance?async=true", {"layer_indices": "all", "input_texts": texts})] * 15
    job_ids = []
    for path, body in submissions:
        status, answer = request(port, "POST", path, json.dumps(body).encode())
        if status == 202:
            job_ids.append(json.loads(answer)["job_id"])
    latencies: list[float] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll_health, args=(port, stop, latencies))
    poller.start()
    started = time.perf_counter()
    statuses, socks = Counter(), []
    for i in range(n_streams):
        sock, status = open_stream(port, job_ids[-1])
        statuses[status] += 1
        (socks.append(sock) if i % 2 else sock.close())
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status, answer = request(port, "GET", f"/api/jobs/{job_ids[-1]}")
        if json.loads(answer)["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    window = time.perf_counter() - started
    stop.set()
    poller.join()
    for sock in socks:
        sock.close()
    latencies.sort()
    return {"jobs": len(job_ids), "stream_answers": dict(statuses), "window_s": window, "health_polls": len(latencies),
            "health_max_s": latencies[-1], "health_p99_s": latencies[int(0.99 * (len(latencies) - 1))],
            "health_median_s": statistics.median(latencies)}


def flood(port: int, pid: int, count: int, workers: int = 8) -> dict:
    """``count`` requests to unique unknown paths; RSS after a warm-up and at the end."""
    process = psutil.Process(pid)

    def hit(i: int) -> int:
        method = ("GET", "POST", "HEAD")[i % 3]
        return request(port, method, f"/api/flood-{i}/x{i * 7919}", b"{}" if method == "POST" else None, timeout=30)[0]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(hit, range(count, count + 2_000)))  # warm-up: allocator and caches settle
        before = process.memory_info().rss
        samples = []
        codes = Counter()
        for start in range(0, count, 1_000):
            codes.update(pool.map(hit, range(start, min(count, start + 1_000))))
            samples.append(process.memory_info().rss)
    return {"requests": count, "statuses": dict(codes), "rss_before_mb": before / 2**20,
            "rss_after_mb": samples[-1] / 2**20, "rss_growth_mb": (samples[-1] - before) / 2**20,
            "rss_peak_growth_mb": (max(samples) - before) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--per-endpoint", type=int, default=0, help="malformed requests per operation (0 = every variant)")
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--flood", type=int, default=30_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ns-abuse-"))
    port = free_port()
    proc = start_server(args, root / "data", port)
    try:
        started = time.perf_counter()
        tried, failures = attack_endpoints(port, args.per_endpoint)
        print(f"malformed requests: {tried} tried in {time.perf_counter() - started:.0f} s, "
              f"{sum(failures.values())} 5xx or unanswered")
        for what, n in sorted(failures.items()):
            print(f"  {n:4d} x {what}")
        print(f"jobs failed with a 500 inside: {failed_jobs_with_500(port)}")
        print("after the attack (stored samples must not break later requests):", json.dumps(aftermath(port)))
        texts = ["The quick brown fox jumps over the lazy dog."] * 8
        streams = attack_streams(port, args.streams, texts)
        print("streams:", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in streams.items()}))
        flooded = flood(port, proc.pid, args.flood)
        print("flood:", json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in flooded.items()}))
        print(f"health after everything: {request(port, 'GET', '/api/health')[0]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"server log: {root / 'server.log'}")


if __name__ == "__main__":
    main()
