"""Impact of ablating neurons, measured on final hidden states and next-token distributions.

For one set of ablated neurons, with ``dh_t = h_t(ablated) - h_t(clean)`` at every token ``t``
of every text (``h`` = the final hidden state, the LM head's input):

- ``impact_score`` = mean over t of ``||dh_t||_2 / ||h_t||_2``
- ``mean_change`` = mean of ``|dh|`` over all tokens and hidden dims; ``max_change`` = max ``|dh|``
- ``kl_divergence`` = mean over t of ``KL(p_clean,t || p_ablated,t)``, next-token distributions
  at every position (the last one included)
- ``loss_delta`` = mean next-token cross-entropy ablated minus clean, over the positions that
  have a next token (``None`` when no text has two tokens)

Ablation replaces the neuron's activation by 0 (``zero``) or by its mean over the given texts'
tokens (``mean``). The running sums below pool every text, then :meth:`ImpactTotals.results`
divides once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

ABLATIONS = ("zero", "mean")
SAFE_IMPACT = 0.1
HIGH_IMPACT = 0.3
_TINY = 1e-12


def impact_level(score: float) -> str:
    """``safe`` below 0.1, ``moderate`` up to 0.3, ``high`` above (the contract's guidelines)."""
    if score < SAFE_IMPACT:
        return "safe"
    return "moderate" if score <= HIGH_IMPACT else "high"


@dataclass(frozen=True)
class HiddenChange:
    """Per-ablation sums over one text: ``ratio_sum``, ``abs_sum``, ``max_abs`` are ``[rows]``."""

    ratio_sum: torch.Tensor
    abs_sum: torch.Tensor
    max_abs: torch.Tensor


def hidden_change(clean: torch.Tensor, ablated: torch.Tensor) -> HiddenChange:
    """Compare ``ablated`` ``[rows, seq, d_model]`` with ``clean`` ``[seq, d_model]``."""
    delta = ablated - clean
    ratio = delta.norm(dim=-1) / clean.norm(dim=-1).clamp_min(_TINY)  # [rows, seq]
    magnitude = delta.abs()
    return HiddenChange(
        ratio_sum=ratio.sum(dim=-1).double(),
        abs_sum=magnitude.sum(dim=(1, 2)).double(),
        max_abs=magnitude.amax(dim=(1, 2)).double(),
    )


def next_token_targets(ids: torch.Tensor) -> torch.Tensor:
    """Targets ``[seq - 1]`` of the positions ``0..seq-2`` of ``ids`` ``[1, seq]``."""
    return ids[0, 1:]


def cross_entropy_sum(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy: ``log_probs`` ``[..., seq, vocab]``, ``targets`` ``[seq - 1]`` -> ``[...]``."""
    picked = log_probs[..., :-1, :].gather(-1, targets.expand(*log_probs.shape[:-2], -1).unsqueeze(-1))
    return -picked.squeeze(-1).sum(dim=-1).double()


def logit_change(clean_log_probs: torch.Tensor, ablated_logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed KL over positions and summed cross-entropy, each ``[rows]``.

    ``clean_log_probs`` ``[seq, vocab]``, ``ablated_logits`` ``[rows, seq, vocab]``, ``targets`` ``[seq - 1]``.
    """
    log_q = torch.log_softmax(ablated_logits, dim=-1)
    kl = (clean_log_probs.exp() * (clean_log_probs - log_q)).sum(dim=-1)  # [rows, seq]
    return kl.sum(dim=-1).double(), cross_entropy_sum(log_q, targets)


@dataclass
class ImpactTotals:
    """Running sums of the impact metrics of ``rows`` ablations, pooled over texts."""

    rows: int
    with_logits: bool
    tokens: int = 0
    elements: int = 0
    targets: int = 0
    clean_cross_entropy: float = 0.0
    ratio_sum: torch.Tensor = field(init=False)
    abs_sum: torch.Tensor = field(init=False)
    max_abs: torch.Tensor = field(init=False)
    kl_sum: torch.Tensor = field(init=False)
    cross_entropy: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        for name in ("ratio_sum", "abs_sum", "max_abs", "kl_sum", "cross_entropy"):
            setattr(self, name, torch.zeros(self.rows, dtype=torch.float64))

    def add_text(self, final_hidden: torch.Tensor, log_probs: torch.Tensor | None, ids: torch.Tensor) -> None:
        """Count one clean text: ``final_hidden`` ``[seq, d_model]``, ``log_probs`` ``[seq, vocab]``, ``ids`` ``[1, seq]``."""
        seq, d_model = final_hidden.shape
        self.tokens += seq
        self.elements += seq * d_model
        self.targets += seq - 1
        if log_probs is not None:
            self.clean_cross_entropy += float(cross_entropy_sum(log_probs, next_token_targets(ids)))

    def add_hidden(self, rows: torch.Tensor, change: HiddenChange) -> None:
        """Add one text's :class:`HiddenChange` for the ablations ``rows`` (unique indices)."""
        self.ratio_sum[rows] += change.ratio_sum.cpu()
        self.abs_sum[rows] += change.abs_sum.cpu()
        self.max_abs[rows] = torch.maximum(self.max_abs[rows], change.max_abs.cpu())

    def add_logits(self, rows: torch.Tensor, kl_sum: torch.Tensor, cross_entropy: torch.Tensor) -> None:
        """Add one text's summed KL and cross-entropy ``[len(rows)]`` for the ablations ``rows``."""
        self.kl_sum[rows] += kl_sum.cpu()
        self.cross_entropy[rows] += cross_entropy.cpu()

    def impact_scores(self) -> torch.Tensor:
        """``impact_score`` of every ablation ``[rows]``."""
        return self.ratio_sum / self.tokens

    def results(self) -> list[dict]:
        """The metrics of every ablation, in row order."""
        impact = self.impact_scores().tolist()
        mean_change = (self.abs_sum / self.elements).tolist()
        max_change = self.max_abs.tolist()
        kl = (self.kl_sum / self.tokens).tolist()
        loss = ((self.cross_entropy - self.clean_cross_entropy) / self.targets).tolist() if self.targets else None
        out = []
        for r in range(self.rows):
            metrics = {
                "impact_score": impact[r],
                "mean_change": mean_change[r],
                "max_change": max_change[r],
                "safe_to_prune": impact[r] < SAFE_IMPACT,
                "impact_level": impact_level(impact[r]),
            }
            if self.with_logits:
                metrics["kl_divergence"] = kl[r]
                metrics["loss_delta"] = loss[r] if loss is not None else None
            out.append(metrics)
        return out
