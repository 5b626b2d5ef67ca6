"""The model card (``README.md``) of a saved pruned model, written from its pruning record."""

from __future__ import annotations

from typing import Mapping


def _removed_lines(record: Mapping) -> list[str]:
    kept = {entry["layer_index"]: len(entry["original_indices"]) for entry in record["kept"]}
    removed = {entry["layer_index"]: len(entry["neuron_indices"]) for entry in record["removed"]}
    lines = ["| layer | neurons before | removed | kept |", "|---:|---:|---:|---:|"]
    for layer, count in kept.items():
        lines.append(f"| {layer} | {count + removed.get(layer, 0)} | {removed.get(layer, 0)} | {count} |")
    return lines


def _evaluation_lines(evaluation: Mapping | None) -> list[str]:
    if evaluation is None:
        return ["Not evaluated (the model was saved with `evaluate: false`)."]
    before, after = evaluation["before"]["perplexity"], evaluation["after"]["perplexity"]
    split = f", split `{evaluation['split']}`" if evaluation.get("split") else ""
    return [
        f"- perplexity before: {before:.4f}",
        f"- perplexity after: {after:.4f} (x{after / before:.4f})",
        f"- measured on: corpus `{evaluation['corpus']}`{split}, {evaluation['texts']} texts, "
        f"{evaluation['tokens']} tokens (max length {evaluation['max_length']}), sha256 of the token ids "
        f"`{evaluation['sha256']}`, {evaluation['dtype']}, torch {evaluation['torch']}, "
        f"transformers {evaluation['transformers']}",
    ]


def _recovery_text(recovery: Mapping | None) -> str:
    if not recovery:
        return "none"
    return (
        f"{recovery['steps']} steps of KL distillation toward the source model on calibration text "
        f"({recovery['text_source']}, {recovery['texts_tokens']} tokens) "
        f"({recovery['tokens_per_step']} tokens per step, learning rate {recovery['learning_rate']:g}, "
        f"seed {recovery['seed']}, {recovery['precision']}; KL {recovery['kl_first']:.4f} at the first step, {recovery['kl_last']:.4f} at the last)"
    )


def model_card(name: str, record: Mapping) -> str:
    """Markdown: source model, what was removed and how, compensation, perplexity, parameters."""
    plan = record.get("plan") or {}
    parameters = record["parameters"]
    method = plan.get("method", "neurons given by hand")
    settings = ", ".join(f"{key} {plan[key]}" for key in ("scope", "sparsity", "seed") if key in plan)
    lines = [
        f"# {name}",
        "",
        f"A copy of `{record['source_model']}` with MLP neurons removed by NeuronScope on {record['created_at']}.",
        "",
        "## What was removed",
        "",
        f"- method: {method}" + (f" ({settings})" if settings else ""),
        f"- compensation: {record['compensation']}",
        f"- recovery: {_recovery_text(record.get('recovery'))}",
        "",
        *_removed_lines(record),
        "",
        "`neuronscope_pruning.json` lists the removed neurons and, under `kept`, the original index of",
        "every kept neuron per layer: neuron n of this model is neuron `kept[layer].original_indices[n]`",
        f"of `{record['source_model']}`.",
        "",
        "## Parameters",
        "",
        f"{parameters['before']:,} before, {parameters['after']:,} after "
        f"({parameters['removed']:,} removed, {parameters['reduction']:.2%}).",
        "",
        "## Quality",
        "",
        *_evaluation_lines(record.get("evaluation")),
        "",
    ]
    return "\n".join(lines)
