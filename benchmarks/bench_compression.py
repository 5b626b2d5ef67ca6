"""Pruning for real on the embedded SmolLM2: perplexity by method and sparsity, size and speed-up.

For each scoring method, the MLP neurons are scored once, then 10/20/30 % of every layer's
neurons (scope "layer") are physically removed from a copy of the model, and the copy's
perplexity is measured on (a subset of) the built-in evaluation set. For each sparsity the
smaller model is saved once (safetensors) to measure its size on disk, and its forward pass is
timed against the full model's, alternating the two: median times, and the speed-up as the
median of the per-round ratios; "ideal" is the ratio of projection weights (multiply-adds per token).

    .venv/bin/python benchmarks/bench_compression.py [--eval-texts 12] [--threads 1]

With ``--sweep`` it instead prints the table of ``POST /api/pruning/sweep`` (issue 16): every
method x ``--sparsities`` x ``--compensations`` plan on the whole default evaluation set (never the
calibration texts), with the dense perplexity and the evaluation record's token digest:

    .venv/bin/python benchmarks/bench_compression.py --sweep --methods wanda,activation \
        --sparsities 0.2 --compensations none,bias,reconstruct
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from neuronscope.analysis.evaluation import padded_batches
from neuronscope.analysis.pruning_plan import select_neurons
from neuronscope.analysis.scores import SCORE_METHODS, SCORERS
from neuronscope.analysis.surgery import parameter_count, pruned_copy
from neuronscope.config import EMBEDDED_MODEL_NAME, Settings
from neuronscope.modeling.manager import ModelManager
from neuronscope.resources.texts import builtin_texts
from neuronscope.services.compression import CompressionService
from neuronscope.services.evaluation_set import evaluation_set
from neuronscope.services.samples import SampleService

SPARSITIES = (0.1, 0.2, 0.3)


def forward_seconds(model, batch, repeats: int) -> list[float]:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            times.append(time.perf_counter() - started)
    return times


def speed_up(full, smaller, batch, rounds: int) -> tuple[float, float, float]:
    """Median forward time of each model and the median of per-round ratios (rounds alternate)."""
    full_times, small_times = [], []
    for _ in range(rounds):
        full_times += forward_seconds(full, batch, 1)
        small_times += forward_seconds(smaller, batch, 1)
    ratios = [f / s for f, s in zip(full_times, small_times)]
    return statistics.median(full_times), statistics.median(small_times), statistics.median(ratios)


def matmul_weights(model) -> int:
    """Weights of every projection (LM head included): multiply-adds per token, attention scores aside."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, Conv1D)))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def sweep_table(service: CompressionService, args: argparse.Namespace, started: float) -> None:
    """One sweep, printed as a markdown table with the per-row time."""
    methods, compensations = _names(args.methods), _names(args.compensations)
    sparsities = [float(value) for value in _names(args.sparsities)]

    def progress(fraction: float, step: str) -> None:
        if step.startswith("evaluated") and fraction == 1.0:
            print(f"  [{time.perf_counter() - started:6.0f} s] {step}", flush=True)

    result = service.sweep(methods=methods, sparsities=sparsities, compensations=compensations, progress=progress)
    record = result["evaluation"]
    print(f"model {result['model_name']}; evaluation {record['corpus']}:{record['split']}, {record['texts']} texts, "
          f"{record['tokens']} tokens, sha256 {record['sha256'][:16]}..., {record['dtype']}, torch {record['torch']}, "
          f"transformers {record['transformers']}; calibration {result['calibration']}")
    print(f"dense perplexity {result['dense_perplexity']:.3f}\n")
    print("| method | removed | compensation | perplexity | ratio | parameters after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in result["rows"]:
        print(f"| {row['method']} | {row['sparsity']:.0%} | {row['compensation']} | {row['perplexity']:.3f} "
              f"| x{row['ratio']:.3f} | {row['parameters_after']:,} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-texts", type=int, default=12, help="first N texts of the built-in evaluation set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating forward timings per sparsity")
    parser.add_argument("--methods", default=",".join(SCORE_METHODS), help="comma-separated scoring methods")
    parser.add_argument("--data-dir", default=None, help="data directory (default: NEURONSCOPE_DATA_DIR or data/)")
    parser.add_argument("--sweep", action="store_true", help="print the sweep table instead")
    parser.add_argument("--sparsities", default="0.1,0.2,0.3,0.4", help="comma-separated (with --sweep)")
    parser.add_argument("--compensations", default="none,bias,reconstruct", help="comma-separated (with --sweep)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    settings = Settings.from_env(model=EMBEDDED_MODEL_NAME, offline=True, **overrides)
    manager = ModelManager(settings)
    service = CompressionService(settings, manager, SampleService(settings))
    if args.sweep:
        sweep_table(service, args, started)
        return
    with manager.use() as lm:
        full = lm.model
        evaluation = [lm.tokenizer(t, return_tensors="pt")["input_ids"][0] for t in builtin_texts("evaluation")[: args.eval_texts]]
        calibration, _ = service.calibration(lm, None, False, evaluation=evaluation_set())
        print(f"model {lm.name}: {lm.adapter.n_layers} layers x {lm.adapter.d_mlp(0)} MLP neurons, "
              f"{parameter_count(full):,} parameters; torch threads {torch.get_num_threads()}")
        print(f"evaluation: first {len(evaluation)} built-in evaluation texts, "
              f"{sum(len(s) - 1 for s in evaluation)} predicted tokens; "
              f"calibration: built-in calibration set, {len(calibration.sequences)} pieces, {calibration.tokens} tokens")
        baseline = service.loss(lm, full, evaluation).perplexity
        print(f"full model perplexity {baseline:.3f}  ({time.perf_counter() - started:.0f} s)\n")

        table: dict[str, dict[float, float]] = {}
        plans: dict[float, dict[int, list[int]]] = {}
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            t0 = time.perf_counter()
            scores = SCORERS[method](lm.adapter, calibration)
            score_s = time.perf_counter() - t0
            table[method] = {}
            for sparsity in SPARSITIES:
                removed = select_neurons(scores, sparsity, "layer")
                plans.setdefault(sparsity, removed)
                smaller = pruned_copy(full, removed)
                table[method][sparsity] = service.loss(lm, smaller, evaluation).perplexity
                del smaller
            print(f"{method:>10}: scoring {score_s:5.1f} s, "
                  + "  ".join(f"{int(s * 100)}% ppl {table[method][s]:8.3f}" for s in SPARSITIES)
                  + f"  ({time.perf_counter() - started:.0f} s)")

        print("\n| method | " + " | ".join(f"{int(s * 100)} % removed" for s in SPARSITIES) + " |")
        print("| --- | " + " | ".join("---" for _ in SPARSITIES) + " |")
        print(f"| none (full model) | {baseline:.2f} | {baseline:.2f} | {baseline:.2f} |")
        for method, row in table.items():
            print(f"| {method} | " + " | ".join(f"{row[s]:.2f}" for s in SPARSITIES) + " |")

        batch = next(padded_batches(evaluation[:4], batch_tokens=4 * max(len(s) for s in evaluation[:4])))
        print(f"\nsize and speed (forward of a {tuple(batch.input_ids.shape)} batch, {args.rounds} alternating rounds):")
        print("| removed | parameters | safetensors on disk | full forward | smaller forward | speed-up | ideal (matmul FLOPs) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        with tempfile.TemporaryDirectory(dir=settings.data_dir) as scratch:
            full_dir = Path(scratch) / "full"
            full.save_pretrained(full_dir)
            print(f"| 0 % | {parameter_count(full):,} | {folder_bytes(full_dir) / 1e6:.1f} MB | - | - | 1.00x | 1.00x |")
            for sparsity in SPARSITIES:
                smaller = pruned_copy(full, plans[sparsity])
                out = Path(scratch) / f"p{int(sparsity * 100)}"
                smaller.save_pretrained(out)
                f_s, s_s, ratio = speed_up(full, smaller, batch, args.rounds)
                print(f"| {int(sparsity * 100)} % | {parameter_count(smaller):,} | {folder_bytes(out) / 1e6:.1f} MB "
                      f"| {f_s * 1000:.0f} ms | {s_s * 1000:.0f} ms | {ratio:.2f}x "
                      f"| {matmul_weights(full) / matmul_weights(smaller):.2f}x |")
                del smaller
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
