#!/usr/bin/env python3
"""Corpus indexing and neuron queries: batched vs one-text-at-a-time indexing, query latency.

One run prints, side by side:
  * indexing throughput (real tokens/s) of ``POST /api/activations/corpus``'s service with
    ``batch_size=1`` (one forward pass per text) and with ``--batch-size``, on the same texts,
    each into a fresh index, repeated and reported as medians, with their ratio;
  * the latency of ``POST /api/queries/neuron`` (end to end through the Flask app, query file
    written) and of the index lookup alone, over ``--queries`` random neurons, once ``--texts``
    texts are indexed.

The texts are paragraphs of the Python standard library's docstrings (varied English prose,
available offline, the same on every machine with the same Python).

    .venv/bin/python benchmarks/bench_queries.py            # embedded SmolLM2, 1,000 texts
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from neuronscope import create_app
from neuronscope.analysis.activations import forward_padded, pad_right
from neuronscope.analysis.max_activating import length_batches
from neuronscope.analysis.tokens import padding_id
from bench_setup import add_model_arguments, scratch_settings
from neuronscope.modeling.manager import ModelManager

MODULES = (
    "os json collections itertools functools pathlib re string textwrap datetime random statistics math shutil "
    "subprocess threading queue socket http.client urllib.parse email.message csv sqlite3 logging argparse "
    "unittest typing dataclasses heapq bisect decimal fractions zipfile tarfile gzip hashlib hmac secrets uuid "
    "calendar time io tempfile glob fnmatch difflib pprint enum contextlib asyncio concurrent.futures "
    "multiprocessing xml.etree.ElementTree html base64 struct copy pickle shelve configparser platform locale"
).split()


def docstring_corpus(count: int) -> list[str]:
    """``count`` distinct docstring paragraphs of 60-300 characters, in a fixed order."""
    texts: dict[str, None] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for obj in [module, *(getattr(module, attr) for attr in sorted(dir(module)) if not attr.startswith("_"))]:
            if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
                continue
            for paragraph in (inspect.getdoc(obj) or "").split("\n\n"):
                paragraph = " ".join(paragraph.split())
                if 60 <= len(paragraph) <= 300 and not paragraph.startswith((">>>", "-", "*", "|")):
                    texts[paragraph] = None
                if len(texts) == count:
                    return list(texts)
    raise SystemExit(f"only {len(texts)} docstring paragraphs found; ask for fewer texts")


def make_app(manager: ModelManager, root: Path):
    """A fresh app (empty data dir, empty index) on the shared, already loaded manager.

    The per-client rate limit is off: the benchmark sends its queries back to back.
    """
    overrides = {"data_dir": Path(tempfile.mkdtemp(dir=root)), "rate_limit_per_minute": 0}
    settings = manager.settings.with_overrides(overrides)
    return create_app(settings, manager=manager)


def index_throughput(manager: ModelManager, root: Path, texts: list[str], batch_size: int) -> tuple[float, float, int]:
    """(tokens/s, seconds, tokens) of indexing ``texts`` into a fresh index."""
    service = make_app(manager, root).extensions["neuronscope"].activations
    result = service.index_corpus(texts, batch_size=batch_size)
    return result["tokens_indexed"] / result["seconds"], result["seconds"], result["tokens_indexed"]


def forward_passes(lm, sequences: list[list[int]], batch_size: int) -> None:
    """The backbone's forward passes alone over ``sequences`` (no hooks, no index), in the
    indexer's length batches: the ceiling of what batching can give the indexer."""
    for members in length_batches([len(seq) for seq in sequences], batch_size):
        ids, mask = pad_right([sequences[i] for i in members], padding_id(lm.tokenizer), lm.device)
        forward_padded(lm.model, ids, mask)


def forward_throughput(lm, texts: list[str], batch_size: int) -> float:
    """Real tokens/s of :func:`forward_passes` over ``texts``."""
    sequences = [lm.tokenizer(text)["input_ids"] for text in texts]
    started = time.perf_counter()
    forward_passes(lm, sequences, batch_size)
    return sum(len(seq) for seq in sequences) / (time.perf_counter() - started)


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def p95_ms(samples: list[float]) -> float:
    return 1000 * sorted(samples)[int(0.95 * (len(samples) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--texts", type=int, default=1000, help="texts indexed before timing queries")
    parser.add_argument("--speed-texts", type=int, default=200, help="texts indexed per throughput run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadier on a shared machine)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    settings = scratch_settings(args)
    root = settings.data_dir
    manager = ModelManager(settings)
    lm = manager.ensure_loaded()
    texts = docstring_corpus(max(args.texts, args.speed_texts))
    speed_texts = texts[: args.speed_texts]
    print(f"model {lm.name} on {lm.device}, torch threads {torch.get_num_threads()}, "
          f"{lm.adapter.n_layers} layers x {lm.adapter.d_mlp(0)} neurons")

    index_throughput(manager, root, speed_texts[:8], args.batch_size)  # warm-up
    runs: dict[int, list[tuple[float, float, int]]] = {1: [], args.batch_size: []}
    for _ in range(args.repeats):
        for batch_size in runs:
            runs[batch_size].append(index_throughput(manager, root, speed_texts, batch_size))
    one, batched = (statistics.median(r[0] for r in runs[b]) for b in runs)
    tokens = runs[1][0][2]
    forwards: dict[int, list[float]] = {1: [], args.batch_size: []}
    for _ in range(args.repeats):
        for batch_size in forwards:
            forwards[batch_size].append(forward_throughput(lm, speed_texts, batch_size))
    forward_one, forward_batched = (statistics.median(forwards[b]) for b in forwards)

    app = make_app(manager, root)
    services = app.extensions["neuronscope"]
    started = time.perf_counter()
    full = services.activations.index_corpus(texts[: args.texts], batch_size=args.batch_size)
    full_seconds = time.perf_counter() - started

    client = app.test_client()
    rng = random.Random(0)
    picks = [(layer, rng.randrange(lm.adapter.d_mlp(layer))) for layer in (rng.randrange(lm.adapter.n_layers) for _ in range(args.queries))]
    client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 0, "top_k": args.top_k})  # warm-up
    endpoint, lookup = [], []
    for layer, neuron in picks:
        started = time.perf_counter()
        response = client.post("/api/queries/neuron", json={"layer_index": layer, "neuron_index": neuron, "top_k": args.top_k})
        endpoint.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json["count"] == args.top_k, response.json
        started = time.perf_counter()
        services.queries.index.top(lm.name, layer, neuron, args.top_k)
        lookup.append(time.perf_counter() - started)
    db_bytes = services.queries.index.path.stat().st_size

    print()
    print(f"Indexing {len(speed_texts)} texts ({tokens} tokens), median of {args.repeats} runs, each into a fresh index:")
    print(f"  {'one text per forward (batch_size=1)':<40} {one:>10.1f} tokens/s")
    print(f"  {f'batched (batch_size={args.batch_size})':<40} {batched:>10.1f} tokens/s")
    print(f"  {'speed-up':<40} {batched / one:>10.2f} x")
    print("  forward passes alone (no hooks, no index), the ceiling of that speed-up:")
    print(f"  {'one text per forward':<40} {forward_one:>10.1f} tokens/s")
    print(f"  {f'batched (batch_size={args.batch_size})':<40} {forward_batched:>10.1f} tokens/s")
    print(f"  {'speed-up':<40} {forward_batched / forward_one:>10.2f} x")
    print()
    print(f"Index of {full['index']['sources']} texts ({full['index']['tokens']} tokens) built in {full_seconds:.1f} s "
          f"({full['tokens_per_second']:.0f} tokens/s); SQLite file {db_bytes / 2**20:.1f} MiB")
    print(f"Neuron queries (top_k={args.top_k}, {args.queries} random neurons):")
    print(f"  {'POST /api/queries/neuron (end to end)':<40} median {median_ms(endpoint):6.2f} ms   p95 {p95_ms(endpoint):6.2f} ms")
    print(f"  {'index lookup alone':<40} median {median_ms(lookup):6.2f} ms   p95 {p95_ms(lookup):6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
