#!/usr/bin/env python3
"""Exact whole-layer neuron importance: NeuronScope against TransformerLens' batched sweep, side by side.

Models: a GPT-2-small-shaped model with random weights (``torch.manual_seed(0)``; 12 layers,
d_model 768, d_mlp 3072) at ``--layers`` (default 2 and 8), and the embedded SmolLM2 at
``--embedded-layer`` (default 20). Texts: three fixed token sequences of 4, 9 and 5 tokens
(seeded ids). One torch thread. Each repeat runs every code once, in an order that rotates from
repeat to repeat (so each sees the same load); medians are printed.

- NeuronScope: the code path of ``POST /api/pruning/neuron-importance`` below text encoding
  (``PruningService._sweep_importance``: neuron ranges of ``chunk_neurons`` on the local executor,
  each chunk ``neuron_importance`` with the batch size tuned on the model's memo).
- TransformerLens (from ``benchmarks/requirements-peers.txt``, never a runtime or test
  dependency): what a skilled user writes with ``HookedTransformer``: one ``run_with_cache`` per
  text, then for batches of 64 or 256 neurons the ablated residual ``resid_post - a_n * W_out[n]``
  run through ``model(resid, start_at_layer=L+1, stop_at_layer=n_layers)`` and ``ln_final``.

Printed per layer: median seconds, the ratio to NeuronScope, each code's FLOP-limit multiple
(time / (the sweep's FLOPs counted by ``torch.utils.flop_counter`` / the matmul peak measured
before each repeat)), and the agreement of the scores (Spearman rho, max relative difference).

    pip install --upgrade --target /tmp/tlpeers --no-deps -r benchmarks/requirements-peers.txt   # outside .venv
    PYTHONPATH=.:/tmp/tlpeers .venv/bin/python benchmarks/bench_peers.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForCausalLM, GPT2Config

from bench_setup import add_model_arguments, scratch_settings
from bench_sweeps import sweep_flops
from neuronscope.analysis.progress import no_progress
from neuronscope.executors.local import LocalExecutor
from neuronscope.modeling import loading
from neuronscope.modeling.adapters import adapter_for
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.pruning import PruningService

LENGTHS = (4, 9, 5)
TL_BATCHES = (64, 256)
PEAK_SHAPE = (2048, 768, 3072)


def token_texts(vocab: int) -> list[torch.Tensor]:
    """The three fixed sequences ``[1, seq]`` of :data:`LENGTHS` tokens (seeded ids below ``vocab``)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (1, n), generator=generator) for n in LENGTHS]


def gpt2_small() -> LoadedModel:
    """The GPT-2-small-shaped model with random weights (seed 0), wrapped as a loaded model."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config()).eval()
    source = loading.ModelSource("gpt2-small-random", "local", "random weights, seed 0")
    return LoadedModel("gpt2-small-random", source, model, None, adapter_for(model), torch.device("cpu"))


def neuronscope_sweep(service: PruningService, lm: LoadedModel, texts: list[torch.Tensor], layer: int) -> np.ndarray:
    """Impact scores ``[d_mlp]`` through the API's code path (chunks on the local executor)."""
    per_layer, _ = service._sweep_importance(lm, [layer], texts, "ablation", "zero", no_progress)
    return per_layer[layer].impact_score.numpy()


def transformer_lens_config(config) -> dict:
    """TransformerLens config fields for a GPT-2 or LLaMA-style transformers config (TransformerLens'
    own mapping, built from the loaded model's config: no hub look-up)."""
    if config.model_type == "gpt2":
        return dict(
            n_layers=config.n_layer, d_model=config.n_embd, n_ctx=config.n_positions, d_head=config.n_embd // config.n_head,
            n_heads=config.n_head, d_mlp=4 * config.n_embd, d_vocab=config.vocab_size, act_fn="gelu_new",
            normalization_type="LN", eps=config.layer_norm_epsilon, original_architecture="GPT2LMHeadModel",
        )
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    rope = getattr(config, "rope_parameters", None) or {}
    return dict(
        n_layers=config.num_hidden_layers, d_model=config.hidden_size, n_ctx=config.max_position_embeddings,
        d_head=config.hidden_size // heads, n_heads=heads, n_key_value_heads=kv_heads if kv_heads != heads else None,
        d_mlp=config.intermediate_size, d_vocab=config.vocab_size, act_fn=config.hidden_act, normalization_type="RMS",
        eps=config.rms_norm_eps, positional_embedding_type="rotary", rotary_adjacent_pairs=False,
        rotary_dim=config.hidden_size // heads, rotary_base=rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)),
        final_rms=True, gated_mlp=True, original_architecture="LlamaForCausalLM",
    )


def transformer_lens_model(lm: LoadedModel):
    """The same weights as a TransformerLens ``HookedTransformer``, or ``None`` and the reason it cannot be built."""
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights, convert_llama_weights
    except ImportError as exc:
        return None, f"TransformerLens is not importable ({exc}); install benchmarks/requirements-peers.txt"
    convert = {"gpt2": convert_gpt2_weights, "llama": convert_llama_weights}.get(lm.config.model_type)
    if convert is None:
        return None, f"no TransformerLens weight conversion here for {lm.config.model_type!r}"
    cfg = HookedTransformerConfig(**transformer_lens_config(lm.config), default_prepend_bos=False, device="cpu")
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert(lm.model, cfg), fold_ln=False, center_writing_weights=False, center_unembed=False,
        fold_value_biases=False, refactor_factored_attn_matrices=False,
    )
    return model.eval(), None


@torch.no_grad()
def transformer_lens_sweep(model, texts: list[torch.Tensor], layer: int, batch: int) -> np.ndarray:
    """Impact scores ``[d_mlp]``: mean over tokens of ``||dh|| / ||h||`` after ``ln_final``, batched residual ablation."""
    n_layers = model.cfg.n_layers
    post, acts_name = f"blocks.{layer}.hook_resid_post", f"blocks.{layer}.mlp.hook_post"
    w_out = model.W_out[layer]  # [d_mlp, d_model]
    d_mlp = w_out.shape[0]
    ratio_sum, tokens = torch.zeros(d_mlp, dtype=torch.float64), 0
    for ids in texts:
        _, cache = model.run_with_cache(ids, names_filter=lambda name: name in (post, acts_name))
        resid, acts = cache[post], cache[acts_name][0]  # [1, seq, d_model], [seq, d_mlp]
        clean = model.ln_final(model(resid, start_at_layer=layer + 1, stop_at_layer=n_layers))[0]
        for start in range(0, d_mlp, batch):
            n = torch.arange(start, min(start + batch, d_mlp))
            ablated = resid - acts.T[n].unsqueeze(-1) * w_out[n].unsqueeze(1)  # [b, seq, d_model]
            final = model.ln_final(model(ablated, start_at_layer=layer + 1, stop_at_layer=n_layers))
            ratio_sum[n] += ((final - clean).norm(dim=-1) / clean.norm(dim=-1)).sum(dim=-1).double()
        tokens += ids.shape[1]
    return (ratio_sum / tokens).numpy()


def matmul_peak() -> float:
    """FLOP/s of a ``[2048, 768] @ [768, 3072]`` float32 matmul at one thread, best of 5."""
    m, k, n = PEAK_SHAPE
    a, b = torch.randn(m, k), torch.randn(k, n)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * m * k * n / best


def timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    scores = fn()
    return time.perf_counter() - started, scores


def compare(title: str, lm: LoadedModel, service: PruningService, tl_model, tl_reason: str | None, layer: int, repeats: int) -> None:
    texts = token_texts(lm.config.vocab_size)
    flops = sweep_flops(lm, texts, [layer])
    codes: dict[str, Callable[[], np.ndarray]] = {"NeuronScope": lambda: neuronscope_sweep(service, lm, texts, layer)}
    if tl_model is not None:
        for size in TL_BATCHES:
            codes[f"TL batched {size}"] = lambda size=size: transformer_lens_sweep(tl_model, texts, layer, size)
    times: dict[str, list[float]] = {name: [] for name in codes}
    limits: dict[str, list[float]] = {name: [] for name in codes}
    scores: dict[str, np.ndarray] = {}
    names = list(codes)
    for r in range(repeats):
        peak = matmul_peak()
        for name in names[r % len(names):] + names[: r % len(names)]:
            seconds, scores[name] = timed(codes[name])
            times[name].append(seconds)
            limits[name].append(seconds / (flops / peak))
        print(f"  repeat {r + 1}: peak {peak / 1e9:.0f} GFLOP/s; " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in names), flush=True)
    ns = statistics.median(times["NeuronScope"])
    print(f"\n{title}, layer {layer}: {lm.adapter.d_mlp(layer)} ablations over {sum(LENGTHS)} tokens, "
          f"{flops / 1e12:.3f} TFLOP, medians of {repeats}")
    print(f"{'code':<16} {'median s':>9} {'vs NeuronScope':>15} {'x FLOP limit':>13} {'Spearman':>12} {'max rel diff':>13}")
    for name in names:
        median = statistics.median(times[name])
        rho = spearmanr(scores[name], scores["NeuronScope"]).statistic
        rel = np.abs(scores[name] - scores["NeuronScope"]).max() / np.abs(scores["NeuronScope"]).max()
        print(f"{name:<16} {median:>9.1f} {median / ns:>14.2f}x {statistics.median(limits[name]):>13.2f} "
              f"{rho:>12.8f} {rel:>13.1e}")
    if tl_model is None:
        print(f"TransformerLens not run: {tl_reason}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--layers", nargs="*", type=int, default=[8, 2], help="layers of the GPT-2-shaped model")
    parser.add_argument("--embedded-layer", type=int, default=20, help="layer of the embedded model (-1: skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = scratch_settings(args)
    service = PruningService(settings, None, None, LocalExecutor())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; chunks of {settings.chunk_neurons} neurons")

    gpt2 = gpt2_small()
    tl_model, reason = transformer_lens_model(gpt2)
    for layer in args.layers:
        compare("GPT-2-small shape (random, seed 0)", gpt2, service, tl_model, reason, layer, args.repeats)
    if args.embedded_layer >= 0:
        embedded = ModelManager(settings).ensure_loaded()
        tl_embedded, reason = transformer_lens_model(embedded)
        compare(f"embedded {embedded.name}", embedded, service, tl_embedded, reason, args.embedded_layer, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
