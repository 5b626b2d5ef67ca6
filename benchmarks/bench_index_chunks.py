#!/usr/bin/env python3
"""Corpus indexing by chunk size: the cost of pausing more often.

Between two chunks of ``NEURONSCOPE_CHUNK_TEXTS`` texts an indexing job lets waiting requests use
the model, so smaller chunks mean shorter waits for them. This times the same full index (both
tails, statistics, per-token sums: ``POST /api/corpora/{name}/index``'s path) of the first
``--texts`` explore texts of the default corpus with each chunk size, on a fresh index each time,
sizes alternated within each round, and prints each size's median and its ratio to the first size.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_index_chunks.py --texts 384 --chunks 256 64 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager
from neuronscope.services import build_services
from neuronscope.storage.index import ActivationIndex


def index_once(chunk_texts: int, texts: int, batch_size: int) -> tuple[float, dict]:
    """Seconds to index the first ``texts`` explore texts with chunks of ``chunk_texts``, and the result."""
    settings = Settings.from_env(offline=True, chunk_texts=chunk_texts)
    svc = build_services(settings, ModelManager(settings))
    chosen = [t for t in svc.corpora.get("default")["texts"] if t["split"] == "explore"][:texts]
    with svc.manager.use() as lm, tempfile.TemporaryDirectory() as scratch:
        cap = svc.corpora.token_cap(lm)
        encoded = [lm.tokenizer(t["text"])["input_ids"][:cap] for t in chosen]
        index = ActivationIndex(Path(scratch) / "index.sqlite3", settings.index_depth)
        started = time.perf_counter()
        result = svc.activations.index_sequences(
            lm, index, [str(t["id"]) for t in chosen], encoded, batch_size, lambda *_: None, full=True
        )
        return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=512, help="first N explore texts of the default corpus")
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 64], help="chunk sizes (texts) to compare")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each size once per round")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[int, list[float]] = {size: [] for size in args.chunks}
    for round_number in range(args.rounds):
        for size in args.chunks:
            seconds, result = index_once(size, args.texts, args.batch_size)
            times[size].append(seconds)
            print(f"round {round_number + 1}, chunks of {size:>4} texts: {seconds:6.1f} s "
                  f"({result['executor']['chunks']} chunks, {result['tokens_indexed']} tokens)", flush=True)
    first = statistics.median(times[args.chunks[0]])
    for size in args.chunks:
        median = statistics.median(times[size])
        print(f"chunks of {size:>4} texts: median {median:6.1f} s, {median / first:.3f}x chunks of {args.chunks[0]}")


if __name__ == "__main__":
    main()
