#!/usr/bin/env python3
"""Pruning analysis speed, side by side in one process, on the embedded SmolLM2 and a GPT-2-small
shape (random weights from ``GPT2Config()``):

(a) weight analysis vs a straightforward loop over parameters (numpy per statistic), and vs a
    per-element Python loop (extrapolated from a sample);
(b) exact neuron importance of a whole layer (3 short texts) vs the straightforward loop (one
    hook + one full forward per neuron per text, extrapolated from a subset of neurons) and vs
    the attribution estimate, with the FLOPs the exact sweep must do (counted by
    ``torch.utils.flop_counter``) over a matmul peak measured right before each exact run;
(c) impact-analysis latency vs one forward pass;
for each torch thread count given. Medians over ``--repeats``; ours and its baseline run
back to back in every repeat, so both see the same machine load (printed).

Usage: python benchmarks/bench_pruning.py [--threads 1 2] [--repeats 3] [--models embedded gpt2-small]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, GPT2Config

from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated
from neuronscope.analysis.ablation_engine import (
    ablated_final_hidden,
    ablation_sweep,
    clean_run,
    mlp_output_is_additive,
)
from neuronscope.analysis.attribution import attribution_importance
from neuronscope.analysis.importance import neuron_importance
from neuronscope.analysis.weights import WEIGHT_MODULES, analyze_weights
from neuronscope.config import Settings
from neuronscope.modeling.adapters import adapter_for
from neuronscope.modeling.manager import ModelManager

TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog", "Machine learning is fascinating"]
IMPACT_TEXT = "Hello world, this is a test for pruning analysis."


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_peak(d_model: int, d_mlp: int, repeats: int = 7) -> float:
    """Best median GFLOP/s over the model's MLP GEMM shape (4096 rows) and a 2048^3 GEMM."""
    best = 0.0
    for m, k, n in ((4096, d_model, d_mlp), (4096, d_mlp, d_model), (2048, 2048, 2048)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        seconds = median([timed(lambda: a @ b) for _ in range(repeats)])
        best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


# -- (a) weights -----------------------------------------------------------------------------


def weights_numpy_loop(model: torch.nn.Module) -> dict:
    """The straightforward version: every module's parameters to numpy, one pass per statistic."""
    rows = []
    for name, module in model.named_modules():
        if not isinstance(module, WEIGHT_MODULES):
            continue
        values = np.concatenate([p.detach().numpy().astype(np.float64).ravel() for p in module.parameters(recurse=False)])
        magnitude = np.abs(values)
        rows.append({
            "layer_name": name, "total": values.size, "nonzero": int(np.count_nonzero(values)),
            "mean": magnitude.mean(), "std": magnitude.std(), "min": magnitude.min(), "max": magnitude.max(),
            "l1": magnitude.sum(), "l2": float(np.sqrt(np.sum(values**2))),
        })
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(np.count_nonzero(p.detach().numpy())) for p in model.parameters())
    return {"rows": rows, "total": total, "nonzero": nonzero}


def python_loop_seconds_per_element(model: torch.nn.Module, sample: int = 200_000) -> float:
    """A per-element Python loop over ``sample`` weights (count, sum, sum of squares, min, max)."""
    values = next(model.parameters()).detach().reshape(-1)[:sample].tolist()

    def loop():
        count = nonzero = 0
        total = squares = 0.0
        low, high = float("inf"), 0.0
        for x in values:
            m = abs(x)
            count += 1
            nonzero += x != 0.0
            total += m
            squares += x * x
            low, high = min(low, m), max(high, m)

    return timed(loop) / len(values)


# -- (b) importance ----------------------------------------------------------------------------


def loop_seconds_per_neuron(adapter, texts: list[torch.Tensor], layer: int, neurons: int) -> float:
    """The straightforward loop: one hook + one full forward per neuron per text (impact metric included)."""
    clean = [run(adapter.model, ids).final_hidden for ids in texts]
    started = time.perf_counter()
    for n in range(neurons):
        with ablated(adapter, layer, [n]):
            ratios = [(run(adapter.model, ids).final_hidden - h).norm(dim=-1) / h.norm(dim=-1) for ids, h in zip(texts, clean)]
        torch.cat(ratios).mean()
    return (time.perf_counter() - started) / neurons


def flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def importance_flops(adapter, texts: list[torch.Tensor], layer: int) -> tuple[int, int]:
    """(FLOPs the exact sweep must do: d_mlp rows through ``layer``'s output projection and the blocks after it,
    total including its two full forwards per text)."""
    downstream = 0
    for ids in texts:
        clean = clean_run(adapter, ids, layer, mlp_layers=[layer])
        additive = mlp_output_is_additive(adapter, clean, layer)
        keep = {layer: torch.ones(1, adapter.d_mlp(layer))}
        downstream += flops(lambda: ablated_final_hidden(adapter, clean, layer, keep, None, additive))
    forwards = sum(flops(lambda: run(adapter.model, ids)) for ids in texts)
    rows = adapter.d_mlp(layer)
    return downstream * rows, downstream * rows + 2 * forwards


# -- report ------------------------------------------------------------------------------------


def bench_model(name: str, adapter, texts: list[torch.Tensor], impact_ids: torch.Tensor, layer: int, args) -> None:
    model = adapter.model
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n## {name}: {n_params / 1e6:.1f} M parameters, layer {layer} of {adapter.n_layers}, d_mlp {adapter.d_mlp(layer)}, "
          f"{sum(t.shape[1] for t in texts)} tokens in {len(texts)} texts")

    ours, loop = [], []
    for _ in range(args.repeats):
        ours.append(timed(lambda: analyze_weights(adapter)))
        loop.append(timed(lambda: weights_numpy_loop(model)))
    per_element = python_loop_seconds_per_element(model) * n_params
    print(f"(a) weight analysis     ours {median(ours):7.3f} s | per-parameter numpy loop {median(loop):7.3f} s "
          f"({median(loop) / median(ours):5.1f}x) | per-element Python loop ~{per_element:7.0f} s "
          f"({per_element / median(ours):7.0f}x, extrapolated)")

    must, total = importance_flops(adapter, texts, layer)
    exact, attribution, loop_neuron, peaks = [], [], [], []
    for _ in range(args.repeats):
        peaks.append(matmul_peak(adapter.d_model, adapter.d_mlp(layer)))  # paired with this repeat's exact run
        exact.append(timed(lambda: neuron_importance(adapter, texts, layer)))
        loop_neuron.append(loop_seconds_per_neuron(adapter, texts, layer, args.loop_neurons))
        attribution.append(timed(lambda: attribution_importance(adapter, texts, layer)))
    loop_layer = median(loop_neuron) * adapter.d_mlp(layer)
    over_limit = median([seconds * peak_r * 1e9 / must for seconds, peak_r in zip(exact, peaks)])
    print(f"(b) importance, layer   exact {median(exact):7.2f} s | straightforward loop ~{loop_layer:7.1f} s "
          f"({median(loop_neuron):.3f} s/neuron x {adapter.d_mlp(layer)}, from {args.loop_neurons}) -> "
          f"{loop_layer / median(exact):5.1f}x | attribution {median(attribution):6.2f} s -> {loop_layer / median(attribution):6.0f}x")
    print(f"    FLOPs: downstream (the limit) {must / 1e12:.3f} TFLOP, with the two forwards per text {total / 1e12:.3f} TFLOP; "
          f"matmul peak per repeat {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s; FLOP limit at the median peak "
          f"{must / median(peaks) / 1e9:6.2f} s; exact = {over_limit:4.2f}x the limit (median of repeats, each against its own peak); "
          f"achieved {total / median(exact) / 1e9:6.1f} GFLOP/s")

    ids = [impact_ids]
    forward, impact_0, impact_l = [], [], []
    for _ in range(max(args.repeats, 5)):
        forward.append(timed(lambda: run(model, impact_ids)))
        impact_0.append(timed(lambda: ablation_sweep(adapter, ids, [{0: [0, 1, 2]}], with_logits=True)))
        impact_l.append(timed(lambda: ablation_sweep(adapter, ids, [{layer: [0, 1, 2]}], with_logits=True)))
    print(f"(c) impact analysis     one forward {1000 * median(forward):6.1f} ms | impact at layer 0 "
          f"{1000 * median(impact_0):6.1f} ms ({median(impact_0) / median(forward):4.2f}x) | at layer {layer} "
          f"{1000 * median(impact_l):6.1f} ms ({median(impact_l) / median(forward):4.2f}x)")


def gpt2_small() -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(GPT2Config()).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-neurons", type=int, default=16, help="neurons timed in the straightforward loop")
    parser.add_argument("--models", nargs="+", default=["embedded", "gpt2-small"], choices=["embedded", "gpt2-small"])
    parser.add_argument("--data-dir", default=os.environ.get("NEURONSCOPE_DATA_DIR", "/tmp/ns-embedded-data"))
    args = parser.parse_args()
    lm = ModelManager(Settings.from_env(data_dir=args.data_dir, offline=True)).ensure_loaded()
    texts = [encode(lm.tokenizer, t) for t in TEXTS]  # GPT-2's vocabulary is larger: the same ids are valid there
    impact_ids = encode(lm.tokenizer, IMPACT_TEXT)
    models = {"embedded": (f"{lm.name} (embedded)", lm.adapter, 20)}
    if "gpt2-small" in args.models:
        models["gpt2-small"] = ("GPT-2 small shape (random weights)", adapter_for(gpt2_small()), 8)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average at start {os.getloadavg()}")
    print(f"command: python benchmarks/bench_pruning.py {' '.join(sys.argv[1:])}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for key in args.models:
            name, adapter, layer = models[key]
            print(f"\n# threads={threads}, load average {os.getloadavg()}")
            bench_model(name, adapter, texts, impact_ids, layer, args)
    print(f"\nload average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
