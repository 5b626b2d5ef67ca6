#!/usr/bin/env python3
"""Neuron pages: indexing throughput of the default corpus vs the forward-only ceiling, and the
latency of the neuron page and of search over HTTP.

One run prints:
  * real tokens per wall second and per CPU second of this process (steady on a shared machine
    with one torch thread) of the forward passes alone (no hooks; the indexer's length batches)
    and of indexing the same explore texts of the default corpus with both tails, the
    statistics, the per-token sums and the example windows (``POST /api/corpora/{name}/index``'s
    path), and of the top-only index (``POST /api/activations/corpus``'s path), runs alternated,
    medians of ``--repeats``, with their ratios;
  * the projected time of indexing the whole explore split at that speed (first start);
  * p50/p95 of ``GET /api/neurons/{layer}/{neuron}`` over HTTP (waitress) on random neurons,
    the first view of each and a repeat (memoised), and of
    ``GET /api/neurons/search?token=`` and ``?text=``.

The HTTP part runs at the server's own torch threads (torch's default) unless ``--serve-threads``
says otherwise; ``--reuse DIR`` times only the HTTP part, on the index an earlier run left in its
data dir (printed at its start).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_neurons.py --texts 300
    PYTHONPATH=. .venv/bin/python benchmarks/bench_neurons.py --texts 0 --repeats 1 --kinds ceiling full
    PYTHONPATH=. .venv/bin/python benchmarks/bench_neurons.py --reuse /tmp/nsb-... --searches 100
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import torch
from waitress.server import create_server

from bench_queries import forward_passes, median_ms, p95_ms
from bench_setup import add_model_arguments, scratch_settings
from neuronscope import create_app
from neuronscope.analysis.forward import encode
from neuronscope.config import Settings
from neuronscope.corpora.texts import MAX_TEXT_TOKENS
from neuronscope.services.corpora import DEFAULT_CORPUS


KINDS = {
    "ceiling": "forward passes alone (ceiling)",
    "full": "both tails + statistics + token sums",
    "top": "top list only (activations/corpus)",
}


def timed(run) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of ``run()``. With one torch thread the CPU
    time is what the work cost, whatever else the shared machine runs meanwhile."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def index_run(svc, lm, names: list[str], encoded: list[list[int]], batch_size: int, full: bool, corpus: str | None = None) -> None:
    """Index ``encoded`` into the empty index of ``corpus`` (default: a fresh scratch one)
    (``POST /api/corpora/{name}/index``'s path with ``full``, ``POST /api/activations/corpus``'s without)."""
    index = svc.corpora.store.index(corpus or f"bench-{time.monotonic_ns()}")
    svc.activations.index_sequences(lm, index, names, encoded, batch_size, lambda f, s: None, full=full)


def serve(app) -> str:
    """Serve ``app`` with waitress on a free port in a daemon thread (it ends with the process); its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200, response.status
        json.loads(response.read())
    return time.perf_counter() - started


def time_indexing(svc, lm, texts: list[dict], explore: list[dict], kinds: list[str], args: argparse.Namespace) -> None:
    """Time the indexing ``kinds`` over ``texts``, alternated, and print tokens/s against the ceiling;
    the last full run fills the default corpus' index, which the HTTP part then reads."""
    encoded = [encode(lm.tokenizer, t["text"])[0, :MAX_TEXT_TOKENS].tolist() for t in texts]
    names = [str(t["id"]) for t in texts]
    tokens = sum(len(ids) for ids in encoded)
    runs = {
        "ceiling": lambda last: forward_passes(lm, encoded, args.batch_size),
        "full": lambda last: index_run(svc, lm, names, encoded, args.batch_size, True, DEFAULT_CORPUS if last else None),
        "top": lambda last: index_run(svc, lm, names, encoded, args.batch_size, False),
    }
    times: dict[str, list[tuple[float, float]]] = {KINDS[kind]: [] for kind in kinds}
    with svc.manager.use():
        forward_passes(lm, encoded[:8], args.batch_size)  # warm-up
        for repeat in range(args.repeats):  # alternated, so load changes hit every kind alike
            for kind in kinds:
                times[KINDS[kind]].append(timed(lambda: runs[kind](repeat == args.repeats - 1)))
    print(f"indexing {tokens} tokens, batch_size {args.batch_size} (median of {args.repeats}; tokens per wall second | per CPU second):")
    ceiling = None
    for name, samples in times.items():
        wall = tokens / statistics.median(w for w, _ in samples)
        cpu = tokens / statistics.median(c for _, c in samples)
        ceiling = ceiling or (wall, cpu)
        print(f"  {name:<40} {wall:8.1f} | {cpu:8.1f} tokens/s   {wall / ceiling[0]:6.1%} | {cpu / ceiling[1]:6.1%} of the ceiling")
    explore_tokens = sum(min(len(encode(lm.tokenizer, t["text"])[0]), MAX_TEXT_TOKENS) for t in explore)
    full = tokens / statistics.median(w for w, _ in times[KINDS["full"]])
    print(f"  whole explore split: {explore_tokens} tokens, about {explore_tokens / full / 60:.1f} min at that wall speed")


def time_http(app, lm, texts: list[dict], args: argparse.Namespace) -> None:
    """p50/p95 of neuron pages (first view, repeat) and of both searches over HTTP."""
    base = serve(app)
    rng = random.Random(0)
    neurons = [(rng.randrange(lm.adapter.n_layers), rng.randrange(lm.adapter.d_mlp(0))) for _ in range(args.pages)]
    first = [timed_get(f"{base}/api/neurons/{layer}/{neuron}") for layer, neuron in neurons]
    again = [timed_get(f"{base}/api/neurons/{layer}/{neuron}") for layer, neuron in neurons]
    words = [w for t in texts[:50] for w in t["text"].split()][:400]
    tokens = [timed_get(f"{base}/api/neurons/search?token={urllib.parse.quote(rng.choice(['the', ' the', ' of', ' a', ' is', ' and', ' to', ' in']))}")
              for _ in range(args.searches)]
    text_searches = [timed_get(f"{base}/api/neurons/search?text={urllib.parse.quote(' '.join(rng.sample(words, 12)))}")
                     for _ in range(args.searches)]
    print(f"over HTTP (waitress, one client, {torch.get_num_threads()} torch threads):")
    for name, samples in (
        ("neuron page, first view", first), ("neuron page, repeat (memoised)", again),
        ("search ?token=", tokens), ("search ?text= (12 words)", text_searches),
    ):
        print(f"  {name:<44} p50 {median_ms(samples):8.1f} ms   p95 {p95_ms(samples):8.1f} ms   ({len(samples)} requests)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--texts", type=int, default=300, help="explore texts indexed (0 = the whole split)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while indexing (1 is steadier on a shared machine)")
    parser.add_argument("--serve-threads", type=int, default=0,
                        help="torch CPU threads while serving the HTTP requests (0: torch's default, as the server runs)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="indexing passes to time (ceiling first)")
    parser.add_argument("--reuse", type=Path, help="the data dir of an earlier run (printed at its start): time only the HTTP part on its index")
    args = parser.parse_args(argv)
    if "full" not in args.kinds:
        parser.error("--kinds needs full (the HTTP part reads its index)")

    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    settings = (
        Settings.from_env(data_dir=args.reuse, model=args.model, offline=True, rate_limit_per_minute=0)
        if args.reuse else scratch_settings(args, rate_limit_per_minute=0)
    )
    app = create_app(settings)
    svc = app.extensions["neuronscope"]
    lm = svc.manager.ensure_loaded()
    explore = [t for t in svc.corpora.get(DEFAULT_CORPUS)["texts"] if t["split"] == "explore"]
    texts = explore[: args.texts] if args.texts else explore
    print(f"model {lm.name} on {lm.device}, data dir {settings.data_dir}, {lm.adapter.n_layers} layers x "
          f"{lm.adapter.d_mlp(0)} neurons; {len(texts)} of {len(explore)} explore texts")
    if not args.reuse:
        print(f"indexing at {torch.get_num_threads()} torch threads")
        time_indexing(svc, lm, texts, explore, [kind for kind in KINDS if kind in args.kinds], args)
    torch.set_num_threads(args.serve_threads or default_threads)
    time_http(app, lm, texts, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
