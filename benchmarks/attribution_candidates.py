#!/usr/bin/env python3
"""Which fast estimate of a neuron's impact_score agrees best with exact ablation?

For each layer given, runs the exact batched ablation of every neuron (the ``ablation`` method
of ``POST /api/pruning/neuron-importance``) and compares each candidate estimate with it by
Spearman's rank correlation over the layer's neurons. Every candidate costs at most one forward
and one (batched) backward per text:

- ``activation``: mean |a_n| (no weights at all), a floor.
- ``grad_x_act``: |sum_t a_n,t * dLoss/da_n,t|, the first-order change of the next-token loss.
- ``jl_rms``: random-projection (Johnson-Lindenstrauss) estimate of the first-order
  sqrt(mean_t (||dh_t|| / ||h_t||)^2): Gaussian probes of the normalised final states, one
  batched backward.
- ``direct``: mean_t |a_n,t| * ||W_out,n||, the neuron's direct write to the residual stream.
- ``direct_final_norm``: that write pushed through the final norm's Jacobian at each token,
  relative to ||h_t||: mean_t |a_n,t| ||J_t W_out,n|| / ||h_t||.
- ``attribution`` (what the API ships): ``direct_final_norm`` rescaled by ``jl_rms`` over the
  direct path's own RMS (see ``attribution_importance``).

Usage: python benchmarks/attribution_candidates.py [--layers 5 20 28] [--probes 32] [--texts ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from scipy.stats import spearmanr

from neuronscope.analysis.forward import encode
from neuronscope.analysis.attribution import (
    attribution_importance,
    final_norm_push,
    forward_with_grad,
)
from neuronscope.analysis.importance import neuron_importance
from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager

DEFAULT_TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog", "Machine learning is fascinating"]


def grad_x_act(adapter, texts, layer, probes):
    total = torch.zeros(adapter.d_mlp(layer), dtype=torch.float64)
    for ids in texts:
        if ids.shape[1] < 2:
            continue
        traced = forward_with_grad(adapter, layer, ids)
        with torch.enable_grad():
            logits = adapter.unembed()(traced.final_hidden)
            loss = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:])
            (grad,) = torch.autograd.grad(loss, traced.acts)
        total += (traced.acts.detach() * grad)[0].sum(dim=0).double()
    return total.abs()


def jl_rms(adapter, texts, layer, probes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    squares, tokens = 0.0, 0
    for ids in texts:
        traced = forward_with_grad(adapter, layer, ids)
        with torch.enable_grad():
            normed = traced.final_hidden / traced.final_hidden.norm(dim=-1, keepdim=True).detach()
            u = torch.randn(probes, *normed.shape, generator=generator)
            (grads,) = torch.autograd.grad(normed, traced.acts, u, is_grads_batched=True)
        squares = squares + (grads[:, 0] * -traced.acts.detach()[0]).sum(dim=1).square().mean(dim=0)
        tokens += ids.shape[1]
    return (squares / tokens).sqrt()


def activation(adapter, texts, layer, probes):
    return attribution_importance(adapter, texts, layer, probes=1).activation_magnitude


def direct(adapter, texts, layer, probes):
    return activation(adapter, texts, layer, probes) * adapter.w_out(layer).detach().norm(dim=1).double()


def direct_final_norm(adapter, texts, layer, probes):
    total, tokens = 0.0, 0
    for ids in texts:
        traced = forward_with_grad(adapter, layer, ids)
        push = final_norm_push(adapter, traced.last_block.detach(), adapter.w_out(layer).detach())
        h_norm = traced.final_hidden.detach().norm(dim=-1, keepdim=True)
        total = total + (traced.acts.detach()[0].abs() * push / h_norm).sum(dim=0)
        tokens += ids.shape[1]
    return total / tokens


def attribution(adapter, texts, layer, probes):
    return attribution_importance(adapter, texts, layer, probes=probes).impact_score


CANDIDATES = {
    "activation": activation,
    "grad_x_act": grad_x_act,
    "jl_rms": jl_rms,
    "direct": direct,
    "direct_final_norm": direct_final_norm,
    "attribution": attribution,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[5, 20, 28])
    parser.add_argument("--texts", nargs="+", default=DEFAULT_TEXTS)
    parser.add_argument("--probes", type=int, default=32, help="random projections for jl_rms and attribution")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=os.environ.get("NEURONSCOPE_DATA_DIR", "/tmp/ns-embedded-data"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = ModelManager(Settings.from_env(data_dir=args.data_dir, offline=True)).ensure_loaded()
    texts = [encode(lm.tokenizer, text) for text in args.texts]
    print(f"model {lm.name}, {len(texts)} texts, {sum(t.shape[1] for t in texts)} tokens, probes {args.probes}")
    print("Spearman rho of each estimate against exact ablation over the layer's neurons (estimate seconds):")
    print(f"{'layer':>5}  " + "  ".join(f"{name:>19}" for name in CANDIDATES))
    for layer in args.layers:
        started = time.perf_counter()
        exact = neuron_importance(lm.adapter, texts, layer).impact_score.numpy()
        exact_s = time.perf_counter() - started
        cells = []
        for candidate in CANDIDATES.values():
            started = time.perf_counter()
            estimate = torch.as_tensor(candidate(lm.adapter, texts, layer, args.probes)).detach().double().numpy()
            cells.append(f"{spearmanr(exact, estimate).statistic:.3f} ({time.perf_counter() - started:4.1f}s)")
        print(f"{layer:>5}  " + "  ".join(f"{cell:>19}" for cell in cells) + f"   exact: {exact_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
