"""Recovery after pruning: a short distillation of the pruned model toward the dense one (KL on next-token distributions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neuronscope.analysis.progress import ProgressFn, no_progress


PRECISIONS = ("auto", "float32", "bfloat16")
"""How recovery's forward and backward passes compute: ``bfloat16`` is autocast (bfloat16 matmuls,
float32 weights, optimiser state and loss); ``auto`` is ``bfloat16`` where the device multiplies
bfloat16 natively, else ``float32``."""


@dataclass(frozen=True)
class Recovery:
    """``steps`` AdamW steps, the learning rate falling linearly from ``learning_rate`` towards 0
    (the last step at ``learning_rate / steps``), each on one window of ``tokens_per_step``
    consecutive calibration tokens (at most the token limit), windows drawn with ``seed``, computed
    in ``precision`` (one of :data:`PRECISIONS`)."""

    steps: int
    learning_rate: float
    tokens_per_step: int
    seed: int = 0
    precision: str = "auto"


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs that support it)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolved_precision(precision: str, device: torch.device) -> str:
    """``float32`` or ``bfloat16`` for ``precision`` (``auto`` resolved for ``device``)."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(device) else "float32"


def kl_to_teacher(student: nn.Module, teacher: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean over the positions of ``ids`` ``[1, seq]`` of KL(teacher || student) of the next-token distributions."""
    with torch.no_grad():
        target = F.log_softmax(teacher(input_ids=ids, use_cache=False).logits.float(), dim=-1)
    log_probs = F.log_softmax(student(input_ids=ids, use_cache=False).logits.float(), dim=-1)
    return F.kl_div(log_probs.flatten(0, 1), target.flatten(0, 1), log_target=True, reduction="batchmean")


def windows(sequences: Sequence[torch.Tensor], recovery: Recovery, limit: int) -> list[torch.Tensor]:
    """The ``[1, w]`` token windows of every step: the concatenated ``sequences`` cut into consecutive
    windows of ``w`` tokens, visited in an order drawn with ``recovery.seed``.

    Every window is used once before any is used again, so a run sees as many distinct tokens as
    the texts hold (a new order for each further pass).
    """
    stream = torch.cat([seq.cpu() for seq in sequences])
    width = max(2, min(recovery.tokens_per_step, limit, len(stream)))
    count = len(stream) // width
    generator = torch.Generator().manual_seed(recovery.seed)
    order: list[int] = []
    while len(order) < recovery.steps:
        order.extend(torch.randperm(count, generator=generator).tolist())
    device = sequences[0].device
    return [stream[i * width:(i + 1) * width][None].to(device) for i in order[: recovery.steps]]


def recover(
    student: nn.Module,
    teacher: nn.Module,
    sequences: Sequence[torch.Tensor],
    recovery: Recovery,
    limit: int,
    progress: ProgressFn = no_progress,
) -> dict:
    """Train every parameter of ``student`` in place to match ``teacher`` on calibration ``sequences``
    (1-D token ids each); returns ``{steps, tokens_per_step, learning_rate, seed, precision, kl_first,
    kl_last}`` (KL per step, nats; ``precision`` resolved).

    The student stays in eval mode (no dropout), so the run is deterministic under ``recovery.seed``
    on one device; ``progress`` is called every step (a
    cancelled job stops there). ``teacher`` is only read.
    """
    batches = windows(sequences, recovery, limit)
    device = next(student.parameters()).device
    precision = resolved_precision(recovery.precision, device)
    parameters = [p for p in student.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=recovery.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / len(batches))
    losses = []
    try:
        for step, ids in enumerate(batches):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                loss = kl_to_teacher(student, teacher, ids)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            progress((step + 1) / len(batches), f"recovery step {step + 1}/{len(batches)}: KL {losses[-1]:.4f}")
    finally:
        optimizer.zero_grad(set_to_none=True)
        for parameter in parameters:
            parameter.requires_grad_(False)
    return {
        "steps": len(batches),
        "tokens_per_step": batches[0].shape[1] if batches else 0,
        "learning_rate": recovery.learning_rate,
        "seed": recovery.seed,
        "precision": precision,
        "kl_first": losses[0] if losses else None,
        "kl_last": losses[-1] if losses else None,
    }
