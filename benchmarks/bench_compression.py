"""Pruning for real on the embedded SmolLM2: perplexity by method and sparsity, size and speed-up.

For each scoring method, the MLP neurons are scored once, then 10/20/30 % of every layer's
neurons (scope "layer") are physically removed from a copy of the model, and the copy's
perplexity is measured on the first ``--eval-texts`` texts of the default evaluation set. For each sparsity the
smaller model is saved once (safetensors) to measure its size on disk, and its forward pass is
timed against the full model's, alternating the two: median times, and the speed-up as the
median of the per-round ratios; "ideal" is the ratio of projection weights (multiply-adds per token).

    .venv/bin/python benchmarks/bench_compression.py [--eval-texts 12] [--threads 1]

With ``--sweep`` it instead prints the table of ``POST /api/pruning/sweep`` (issue 16): every
method x ``--sparsities`` x ``--compensations`` plan on the whole default evaluation set (never the
calibration texts), with the dense perplexity and the evaluation record's token digest:

    .venv/bin/python benchmarks/bench_compression.py --sweep --methods wanda,activation \
        --sparsities 0.2 --compensations none,bias,reconstruct

With ``--apply METHOD:SPARSITY:COMPENSATION`` it makes that plan with ``estimate: true`` and applies
it (``POST /api/pruning/apply``, with ``--recovery-steps`` > 0 a recovery), saving into a temporary
models folder, and prints the estimate, the measured perplexities and the times: the estimate's
cost relative to one evaluation pass, and the apply's CPU time by phase (compensation, recovery, evaluation).
``--calibration-texts N`` calibrates that plan on the first N texts of the default calibration split.
``--obs-damping`` runs the ``obs`` scorer with another damping of its H (this process only).

The services are built as the API builds them (``build_services``), so the same code path runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from neuronscope.analysis.evaluation import padded_batches
from neuronscope.analysis.pruning_plan import select_neurons
from neuronscope.analysis.scores import SCORE_METHODS, SCORERS, Scorer
from neuronscope.analysis.surgeon import OBS_DAMPING, obs_scores
from neuronscope.analysis.surgery import parameter_count, pruned_copy
from neuronscope.config import EMBEDDED_MODEL_NAME, Settings
from neuronscope.analysis.recovery import PRECISIONS, Recovery
from neuronscope.modeling.manager import ModelManager
from neuronscope.services import build_services
from neuronscope.services.compression import CompressionService

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
    """The sweep, printed as a markdown table row by row: one ``service.sweep`` call per sparsity and
    method, in the order given (the dense evaluation, scores and compensation statistics are memoized
    on the loaded model, so this costs what one call does, and a stopped run keeps its rows)."""
    methods, compensations = _names(args.methods), _names(args.compensations)
    sparsities = [float(value) for value in _names(args.sparsities)]
    header = False
    for sparsity in sparsities:
        for method in methods:
            result = service.sweep(methods=[method], sparsities=[sparsity], compensations=compensations)
            if not header:
                record = result["evaluation"]
                print(f"model {result['model_name']}; evaluation {record['corpus']}:{record['split']}, {record['texts']} texts, "
                      f"{record['tokens']} tokens, sha256 {record['sha256'][:16]}..., {record['dtype']}, torch {record['torch']}, "
                      f"transformers {record['transformers']}; calibration {result['calibration']}")
                print(f"dense perplexity {result['dense_perplexity']:.3f}\n")
                print("| method | removed | compensation | perplexity | ratio | parameters after | at |")
                print("| --- | --- | --- | --- | --- | --- | --- |")
                header = True
            for row in result["rows"]:
                print(f"| {row['method']} | {row['sparsity']:.0%} | {row['compensation']} | {row['perplexity']:.3f} "
                      f"| x{row['ratio']:.3f} | {row['parameters_after']:,} | {time.perf_counter() - started:.0f} s |", flush=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def apply_row(service: CompressionService, args: argparse.Namespace) -> None:
    """Plan one row with its estimate, time it against one evaluation pass, and apply it (with recovery)."""
    method, sparsity, compensation = args.apply.split(":")
    texts = service.text_sets.calibration().texts[: args.calibration_texts] if args.calibration_texts else None
    with service.manager.use() as lm:
        measured = service.sequences(lm, service.text_sets.evaluation())
        t0, cpu0 = time.perf_counter(), time.process_time()
        dense = service.dense_loss(lm, measured)
        one_pass, one_pass_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        service.plan(sparsity=float(sparsity), method=method, compensation=compensation, texts=texts)
    t0, cpu0 = time.perf_counter(), time.process_time()
    estimate_phases = PhaseClock()
    plan = service.plan(
        sparsity=float(sparsity), method=method, compensation=compensation, texts=texts, estimate=True, progress=estimate_phases
    )
    estimate_s, estimate_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    estimate = plan["estimate"]
    print(f"calibration {plan['calibration']}")
    print(f"evaluation {measured.record['corpus']}:{measured.record['split']}, {measured.record['tokens']} tokens, "
          f"sha256 {measured.record['sha256'][:16]}...; dense perplexity {dense.perplexity:.3f}; "
          f"one evaluation pass {one_pass:.0f} s wall, {one_pass_cpu:.0f} s CPU")
    print(f"estimate {method} {float(sparsity):.0%} {compensation}: perplexity {estimate['perplexity_after']:.3f} "
          f"(x{estimate['ratio']:.3f}) in {estimate_s:.0f} s wall, {estimate_cpu:.0f} s CPU = {estimate_s / one_pass:.2f}x "
          f"(wall), {estimate_cpu / one_pass_cpu:.2f}x (CPU) one evaluation pass "
          "(the scores memoized by a first plan without estimate; the compensation's dense statistics are computed in the estimate); "
          "CPU s by progress phase " + ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in estimate_phases.cpu.items()))
    recovery = None
    if args.recovery_steps:
        recovery = Recovery(
            steps=args.recovery_steps, learning_rate=args.learning_rate, tokens_per_step=args.tokens_per_step,
            precision=args.recovery_precision,
        )
    cpu0, t0 = time.process_time(), time.perf_counter()
    phases = PhaseClock()
    applied = service.apply(
        neurons={g["layer_index"]: g["neuron_indices"] for g in plan["neurons"]}, output_name="bench-applied",
        plan_info=plan, compensation=compensation, recovery=recovery, calibration_texts=texts, progress=phases,
    )
    print(f"apply{' with recovery ' + str(applied['recovery']) if recovery else ''}: perplexity "
          f"{applied['perplexity_before']:.3f} -> {applied['perplexity_after']:.3f} (x{applied['ratio']:.3f}); "
          f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU; CPU s by progress phase "
          + ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in phases.cpu.items()))


class PhaseClock:
    """A progress callback that charges the CPU time since its previous call to the phase named by the
    first word of this call's message (``recovery step 3/150: ...`` -> ``recovery``)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.last = time.process_time()

    def __call__(self, _fraction: float, message: str) -> None:
        now = time.process_time()
        phase = message.split()[0] if message else "?"
        self.cpu[phase] = self.cpu.get(phase, 0.0) + now - self.last
        self.last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-texts", type=int, default=12, help="first N texts of the default evaluation set")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--rounds", type=int, default=9, help="alternating forward timings per sparsity")
    parser.add_argument("--methods", default=",".join(SCORE_METHODS), help="comma-separated scoring methods")
    parser.add_argument("--model", default=EMBEDDED_MODEL_NAME, help="model name (e.g. gemma-3-270m once installed)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: NEURONSCOPE_DATA_DIR or data/)")
    parser.add_argument("--sweep", action="store_true", help="print the sweep table instead")
    parser.add_argument("--sparsities", default="0.1,0.2,0.3,0.4", help="comma-separated (with --sweep)")
    parser.add_argument("--compensations", default="none,bias,reconstruct", help="comma-separated (with --sweep)")
    parser.add_argument("--apply", default=None, help="METHOD:SPARSITY:COMPENSATION: estimate and apply that plan")
    parser.add_argument("--recovery-steps", type=int, default=0, help="recovery steps on --apply (0: none)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="recovery learning rate")
    parser.add_argument("--tokens-per-step", type=int, default=256, help="recovery tokens per step")
    parser.add_argument("--recovery-precision", default="auto", choices=PRECISIONS, help="recovery precision")
    parser.add_argument("--calibration-texts", type=int, default=0,
                        help="with --apply: calibrate on the first N texts of the default calibration split (0: all of it)")
    parser.add_argument("--obs-damping", type=float, default=None,
                        help=f"obs damping instead of {OBS_DAMPING} (replaces the registry's obs entry in this process only)")
    args = parser.parse_args()
    if args.obs_damping is not None:
        SCORERS["obs"] = Scorer(partial(obs_scores, damping=args.obs_damping), calibrated=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    if args.apply:
        overrides["models_dir"] = Path(tempfile.mkdtemp(prefix="bench-models-"))
    settings = Settings.from_env(model=args.model, offline=True, **overrides)
    manager = ModelManager(settings)
    service = build_services(settings, manager).compression
    if args.sweep:
        sweep_table(service, args, started)
        return
    if args.apply:
        apply_row(service, args)
        return
    with manager.use() as lm:
        full = lm.model
        default = service.text_sets.evaluation()
        evaluation = [lm.tokenizer(t, return_tensors="pt")["input_ids"][0] for t in default.texts[: args.eval_texts]]
        calibration, source = service.calibration(lm, None, False, evaluation=default)
        print(f"model {lm.name}: {lm.adapter.n_layers} layers x {lm.adapter.d_mlp(0)} MLP neurons, "
              f"{parameter_count(full):,} parameters; torch threads {torch.get_num_threads()}")
        print(f"evaluation: first {len(evaluation)} texts of {default.source}, "
              f"{sum(len(s) - 1 for s in evaluation)} predicted tokens; "
              f"calibration: {source}, {len(calibration.sequences)} pieces, {calibration.tokens} tokens")
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
