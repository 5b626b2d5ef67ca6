"""POST /api/activations/compare: the same prompt on the model and on the pruned model, against independent runs."""

from __future__ import annotations

import pytest
import torch

from neuronscope.analysis.surgery import pruned_copy

PROMPT = "The capital of France is Paris. The quick brown fox jumps over the lazy dog."


@pytest.fixture(params=["tiny-gpt2", "tiny-llama"])
def served(request, make_app):
    app = make_app(request.param)
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    return app.test_client(), lm


def plain_run(model, ids: list[int], layer: int, adapter) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities ``[seq, vocab]`` and the layer's activations ``[seq, d_mlp(layer)]`` by a plain pre-hook."""
    seen = {}
    handle = adapter.mlp_output(layer).register_forward_pre_hook(lambda _m, args: seen.update(acts=args[0][0].detach().clone()))
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    finally:
        handle.remove()
    return torch.log_softmax(logits, dim=-1), seen["acts"]


def test_both_sides_equal_the_model_and_its_pruned_copy(served):
    from neuronscope.modeling.adapters import adapter_for

    client, lm = served
    d_mlp = lm.adapter.d_mlp(0)
    removed = {0: list(range(0, d_mlp, 3)), 1: [1, 2, 5]}
    ablate = [{"layer_index": layer, "neuron_indices": neurons} for layer, neurons in removed.items()]
    answer = client.post("/api/activations/compare", json={"prompt": PROMPT, "ablate": ablate, "layer_index": 1, "top_k": 6, "predictions": 3})
    assert answer.status_code == 200, answer.json
    body = answer.json
    ids = lm.tokenizer(PROMPT)["input_ids"]
    assert body["token_ids"] == ids and len(body["tokens"]) == len(ids)
    assert body["ablated_neurons"] == sum(len(n) for n in removed.values())

    original, original_acts = plain_run(lm.model, ids, 1, lm.adapter)
    pruned_model = pruned_copy(lm.model, removed)
    pruned, _ = plain_run(pruned_model, ids, 1, adapter_for(pruned_model))

    peak = original_acts.abs().max(dim=0).values
    chosen = sorted(range(len(peak)), key=lambda n: (-peak[n].item(), n))[:6]
    assert [n["neuron_index"] for n in body["original"]["neurons"]] == chosen
    assert [n["neuron_index"] for n in body["pruned"]["neurons"]] == chosen
    for n in body["original"]["neurons"]:
        assert n["activations"] == pytest.approx(original_acts[:, n["neuron_index"]].tolist(), abs=1e-5)
    for n in body["pruned"]["neurons"]:
        if n["neuron_index"] in removed[1]:
            assert n["activations"] == [0.0] * len(ids)

    for side, log_probs in (("original", original), ("pruned", pruned)):
        for position, shown in enumerate(body[side]["predictions"]):
            best = log_probs[position].topk(3)
            assert [p["token_id"] for p in shown] == best.indices.tolist()
            assert [p["probability"] for p in shown] == pytest.approx(best.values.exp().tolist(), abs=1e-5)
            assert [p["token"] for p in shown] == [lm.tokenizer.decode([i]) for i in best.indices.tolist()]
    kl = (original.exp() * (original - pruned)).sum(dim=-1)
    assert body["kl_divergence"] == pytest.approx(kl.tolist(), abs=1e-5)
    assert body["mean_kl_divergence"] == pytest.approx(kl.mean().item(), abs=1e-5)
    agree = (original.argmax(-1) == pruned.argmax(-1)).double().mean().item()
    assert body["top1_agreement"] == pytest.approx(agree, abs=1e-6)
    assert max(body["kl_divergence"]) > 0


def test_a_layer_before_the_removed_neurons_is_unchanged(served):
    client, _ = served
    body = client.post("/api/activations/compare", json={
        "prompt": PROMPT, "ablate": [{"layer_index": 1, "neuron_indices": [0]}], "layer_index": 0,
    }).json
    assert [n["activations"] for n in body["pruned"]["neurons"]] == [n["activations"] for n in body["original"]["neurons"]]
    assert len(body["original"]["neurons"]) == 16 and len(body["original"]["predictions"][0]) == 5


@pytest.mark.parametrize("change, fragment", [
    ({"layer_index": 99}, "layer_index 99 is out of range"),
    ({"ablate": [{"layer_index": 0, "neuron_indices": [10 ** 6]}]}, "out of range"),
    ({"ablate": [{"layer_index": 42, "neuron_indices": [0]}]}, "out of range"),
    ({"predictions": 21}, "predictions"),
    ({"ablate": None}, "ablate"),
    ({"prompt": ""}, "prompt"),
])
def test_bad_requests_are_400(served, change, fragment):
    client, _ = served
    body = {"prompt": PROMPT, "ablate": [{"layer_index": 0, "neuron_indices": [1]}], "layer_index": 0, **change}
    answer = client.post("/api/activations/compare", json=body)
    assert answer.status_code == 400 and fragment in answer.json["details"] + answer.json["error"], answer.json
