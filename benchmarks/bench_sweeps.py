#!/usr/bin/env python3
"""Whole-model neuron-importance sweep: local executor vs Ray with 1 and 2 workers, side by side.

For each configuration, one sweep of every neuron of ``--layers`` (default: all) ablated on its
own over ``--text``, in chunks of ``--chunk-neurons``, through the pruning service exactly as
``POST /api/pruning/neuron-importance {"layer_indices": "all"}`` runs it. Printed per
configuration: wall time, ablations/s, the speed-up over the first configuration, the sustained
GFLOP/s (the sweep's FLOPs counted by ``torch.utils.flop_counter`` on a sample of chunks), and the
largest difference of any impact score from the first configuration's.

Ray pools are started (workers load the model) by a warm-up sweep of one layer before timing,
reported apart: a pool is started once per model and then serves every sweep.

    .venv/bin/python benchmarks/bench_sweeps.py                   # embedded SmolLM2, every layer
    .venv/bin/python benchmarks/bench_sweeps.py --layers 0 1 --configs local-1 ray-2
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from neuronscope import create_app
from neuronscope.analysis.importance import neuron_importance
from neuronscope.config import Settings
from bench_setup import add_model_arguments, scratch_settings
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.validation import encode_texts

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
FLOP_SAMPLE_NEURONS = 8


def sweep_flops(lm: LoadedModel, ids: list[torch.Tensor], layers: list[int]) -> float:
    """FLOPs of the whole sweep: per layer, counted on ``FLOP_SAMPLE_NEURONS`` neurons (a chunk's
    fixed part, the clean run, is counted once per chunk of ``chunk_neurons``; the sample's
    per-neuron part is scaled to the layer's width)."""
    total = 0.0
    for layer in layers:
        counts = []
        for neurons in (range(1), range(1 + FLOP_SAMPLE_NEURONS)):
            with FlopCounterMode(display=False) as counter:
                neuron_importance(lm.adapter, ids, layer, neurons=neurons)
            counts.append(counter.get_total_flops())
        per_neuron = (counts[1] - counts[0]) / FLOP_SAMPLE_NEURONS
        total += per_neuron * lm.adapter.d_mlp(layer) + (counts[0] - per_neuron)
    return total


def run_config(config: str, base: Settings, manager: ModelManager, layers: list[int], texts: list[str]) -> dict:
    """One sweep on ``config`` (``local-<threads>`` or ``ray-<workers>``)."""
    kind, count = config.split("-")
    overrides = {"executor": kind}
    if kind == "ray":
        overrides.update(ray_workers=int(count), ray_cpus_per_worker=1)
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(int(count))
    svc = create_app(base.with_overrides(overrides), manager=manager).extensions["neuronscope"]
    try:
        started = time.perf_counter()
        if kind == "ray":
            svc.pruning.neuron_importance(layers[-1], texts)
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        result = svc.pruning.neuron_importance(layers, texts)
        seconds = time.perf_counter() - started
    finally:
        svc.executor.shutdown()
    scores = np.array([row["impact_score"] for row in result["importance_scores"]])
    return {"config": config, "seconds": seconds, "start_s": start_s, "scores": scores, "stats": result["executor"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--layers", nargs="*", type=int, help="layers to sweep (default: all)")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--chunk-neurons", type=int, default=256)
    parser.add_argument("--configs", nargs="+", default=["local-1", "local-2", "ray-1", "ray-2"])
    args = parser.parse_args(argv)

    base = scratch_settings(args, chunk_neurons=args.chunk_neurons)
    manager = ModelManager(base)
    lm = manager.ensure_loaded()
    layers = args.layers if args.layers else list(range(lm.adapter.n_layers))
    texts = [args.text]
    ids = encode_texts(lm, texts, base.max_input_tokens)
    torch.set_num_threads(1)
    flops = sweep_flops(lm, ids, layers)
    ablations = sum(lm.adapter.d_mlp(layer) for layer in layers)
    print(f"model {lm.name}: {len(layers)} layers, {ablations} ablations over {ids[0].shape[1]} tokens, "
          f"chunks of {args.chunk_neurons} neurons; {flops / 1e12:.2f} TFLOP for the sweep "
          f"({flops / ablations / ids[0].shape[1] / 1e6:.1f} MFLOP per ablation per token)")

    runs = [run_config(config, base, manager, layers, texts) for config in args.configs]
    first = runs[0]
    print()
    print(f"{'configuration':<14} {'workers':>7} {'chunks':>6} {'wall s':>8} {'ablations/s':>12} {'vs first':>9} "
          f"{'GFLOP/s':>8} {'pool start s':>13} {'max |diff|':>11}")
    for run in runs:
        stats = run["stats"]
        print(f"{run['config']:<14} {stats['workers']:>7} {stats['chunks']:>6} {run['seconds']:>8.1f} "
              f"{ablations / run['seconds']:>12.1f} {first['seconds'] / run['seconds']:>8.2f}x "
              f"{flops / run['seconds'] / 1e9:>8.1f} {run['start_s']:>13.1f} "
              f"{np.abs(run['scores'] - first['scores']).max():>11.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
