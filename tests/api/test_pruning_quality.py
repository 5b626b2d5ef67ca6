"""Issue 16: reproducible evaluation records, plan-time estimates, compensation, sweeps, saved-model trust."""

import hashlib

import pytest
import torch
import transformers

from neuronscope.analysis.block_runs import block_output
from neuronscope.analysis.hooks import ablated_many, captured_activations, forward_hook, hook_count
from neuronscope.analysis.recovery import kl_to_teacher, resolved_precision
from neuronscope.modeling.adapters import adapter_for
from neuronscope.resources.texts import builtin_texts
from neuronscope.services.compression import quality_warnings
from neuronscope.services.evaluation_set import overlapping
from tests.support.compression_app import TEXTS, app, client, data_dir, lm_of, text_sets  # noqa: F401 (fixtures)
from tests.support.jobs_support import hold_jobs_at_step, wait_for_status
from tests.support.tiny_models import ALL_TINY, NO_OUTPUT_BIAS, NOT_ADDITIVE


def post(client, path, body, status=200):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


# -- 1. evaluation you can reproduce -------------------------------------------------------------


def test_the_evaluation_record_names_the_token_ids_and_a_rerun_is_identical(client, app):
    first = post(client, "/api/pruning/evaluate", {})
    second = post(client, "/api/pruning/evaluate", {"ablate": [{"layer_index": 0, "neuron_indices": [1]}]})
    again = post(client, "/api/pruning/evaluate", {})
    record = first["evaluation"]
    assert again["perplexity"] == first["perplexity"] and again["evaluation"] == record == second["evaluation"]

    lm = lm_of(app)
    limit = record["max_length"]
    pieces = []
    for text in text_sets(app).evaluation().texts:
        ids = lm.tokenizer(text)["input_ids"]
        pieces += [ids[i:i + limit] for i in range(0, len(ids), limit) if len(ids[i:i + limit]) >= 2]
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(len(piece).to_bytes(8, "little") + b"".join(i.to_bytes(8, "little") for i in piece))
    assert record["sha256"] == digest.hexdigest()
    assert record["tokens"] == sum(map(len, pieces)) and record["sequences"] == len(pieces)
    assert record["texts"] == len(text_sets(app).evaluation().texts)
    assert (record["corpus"], record["split"]) == ("default", "evaluation") and first["text_source"] == "default:evaluation"
    assert record["dtype"] == "float32" and record["torch"] == torch.__version__
    assert record["transformers"] == transformers.__version__
    assert first["tokens"] == record["tokens"] - record["sequences"]


def test_given_texts_are_recorded_as_such(client):
    body = post(client, "/api/pruning/evaluate", {"texts": TEXTS})
    assert (body["evaluation"]["corpus"], body["evaluation"]["split"], body["evaluation"]["texts"]) == ("texts", None, 3)


def test_calibration_overlapping_evaluation_is_refused_unless_allowed(client, app, data_dir):
    evaluation = text_sets(app).evaluation().texts
    leaked = ["An unrelated sentence about nothing much.", "  " + evaluation[2][:90].replace(" ", "\n ") + " "]
    body = {"sparsity": 0.2, "method": "activation", "texts": leaked}
    response = client.post("/api/pruning/plan", json=body)
    assert response.status_code == 400 and "overlap" in response.get_json()["details"]
    assert "[1]" in response.get_json()["details"]
    assert not (data_dir / "pruning").exists() or not any((data_dir / "pruning").iterdir())
    post(client, "/api/pruning/plan", {**body, "allow_overlap": True})
    post(client, "/api/pruning/plan", {**body, "texts": leaked[:1]})


def test_the_overlap_rule():
    evaluation = ["A paragraph of evaluation text that is long enough to be counted as such, surely."]
    assert overlapping(["a paragraph"], evaluation) == []
    assert overlapping(["x " + evaluation[0] + " y", "A paragraph of evaluation text that is long enough to be counted as"], evaluation) == [0, 1]
    assert overlapping(builtin_texts("calibration"), builtin_texts("evaluation")) == []


# -- 2. plan-time estimates and guardrails; 3. compensation -----------------------------------------


@pytest.mark.parametrize(
    "model_name, compensation",
    [(name, compensation) for name in ("tiny-gpt2", "tiny-llama") for compensation in ("none", "bias")]
    + [("tiny-gemma3", "none"), ("tiny-gemma3", "reconstruct")],
)
def test_the_estimate_is_what_apply_measures(client, data_dir, model_name, compensation):
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.3, "method": "wanda", "estimate": True, "compensation": compensation})
    estimate = plan["estimate"]
    assert plan["compensation"] == compensation and not (data_dir / "models" / "small").exists()
    applied = post(client, "/api/pruning/apply", {"plan": plan, "output_name": "small"}, status=201)
    assert applied["compensation"] == compensation
    assert estimate["perplexity_before"] == pytest.approx(applied["perplexity_before"], rel=1e-6)
    assert estimate["perplexity_after"] == pytest.approx(applied["perplexity_after"], rel=1e-6)
    assert estimate["ratio"] == pytest.approx(applied["ratio"], rel=1e-6)
    assert estimate["evaluation"]["sha256"] == applied["evaluation"]["sha256"]
    assert plan["warnings"] == applied["warnings"]
    assert plan["parameters"] == applied["parameters"]  # the biases a compensation adds (LLaMA: three per layer) included


def calibration_means(lm, texts, layers):
    """Mean activation per neuron over the pieces of the calibration ``texts`` (computed here, independently)."""
    limit = 128
    sums = {layer: 0.0 for layer in layers}
    count = 0
    with captured_activations(lm.adapter, layers) as records:
        for text in texts:
            ids = lm.tokenizer(text, return_tensors="pt")["input_ids"][0]
            for piece in torch.split(ids, limit):
                with torch.no_grad():
                    lm.model(input_ids=piece[None])
                count += len(piece)
                for layer in layers:
                    acts = records[layer].pop()
                    sums[layer] = sums[layer] + acts.reshape(-1, acts.shape[-1]).double().sum(dim=0)
    return {layer: total / count for layer, total in sums.items()}


@pytest.mark.parametrize("model_name", [name for name in ALL_TINY if name not in NO_OUTPUT_BIAS])
def test_bias_compensated_models_load_with_stock_transformers_and_equal_mean_ablation(client, app, data_dir, model_name):
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.25, "method": "activation", "compensation": "bias"})
    applied = post(client, "/api/pruning/apply", {"plan": plan, "output_name": "small", "texts": TEXTS}, status=201)
    assert applied["compensation"] == "bias" and applied["loads_with_transformers"]

    lm = lm_of(app)
    removed = {g["layer_index"]: g["neuron_indices"] for g in plan["neurons"]}
    means = calibration_means(lm, text_sets(app).calibration().texts, list(removed))
    fills = {layer: means[layer][neurons].float() for layer, neurons in removed.items()}
    ids = lm.tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad(), ablated_many(lm.adapter, removed, fills):
        expected = lm.model(input_ids=ids).logits

    stock = transformers.AutoModelForCausalLM.from_pretrained(data_dir / "models" / "small").eval()
    with torch.no_grad():
        torch.testing.assert_close(stock(input_ids=ids).logits, expected, atol=1e-4, rtol=0)
    post(client, "/api/models/switch", {"model_name": "small"})
    served = lm_of(app)
    with torch.no_grad():
        torch.testing.assert_close(served.model(input_ids=ids).logits, expected, atol=1e-4, rtol=0)
    if model_name == "tiny-llama":
        assert stock.config.mlp_bias and all(
            not block.mlp.gate_proj.bias.any() and not block.mlp.up_proj.bias.any()
            for block in stock.model.layers
        )


def test_bias_compensation_keeps_the_layer_mean_output(app):
    """Only layer 0 pruned (its inputs are the dense ones): the mean MLP output over the calibration
    tokens equals the dense one (the removed neurons' mean contribution is in the bias)."""
    svc = app.extensions["neuronscope"].compression
    with svc.manager.use() as lm:
        inputs, _ = svc.calibration(lm, None, False, evaluation=svc.text_sets.evaluation())
        removed = {0: list(range(0, lm.adapter.d_mlp(0), 3))}
        pruned, report = svc.compressed(lm, removed, "bias", inputs)
        outputs = {}
        for name, model in (("dense", lm.model), ("pruned", pruned)):
            module = adapter_for(model).mlp_output(0)
            seen = []
            with forward_hook(module, lambda _m, _a, out: seen.append(out.reshape(-1, out.shape[-1]).double())):
                for seq in inputs.sequences:
                    with torch.no_grad():
                        model(input_ids=seq[None])
            outputs[name] = torch.cat(seen).mean(dim=0)
    assert report == [{"layer_index": 0, "used": "bias"}]
    torch.testing.assert_close(outputs["pruned"], outputs["dense"], atol=1e-5, rtol=0)
    assert (outputs["dense"] - outputs["pruned"]).abs().max() < (outputs["dense"]).abs().max()


def layer_output_error(lm, model, sequences, layer):
    """Mean squared difference of ``model``'s block output (the residual stream) at ``layer`` from
    the dense model's, over ``sequences``."""
    outs = {}
    for name, m in (("dense", lm.model), ("other", model)):
        seen = []
        with forward_hook(adapter_for(m).blocks()[layer], lambda _m, _a, out: seen.append(block_output(out)[0].double())):
            for seq in sequences:
                with torch.no_grad():
                    m(input_ids=seq[None])
        outs[name] = torch.cat(seen)
    return float((outs["dense"] - outs["other"]).square().mean())


@pytest.mark.parametrize("model_name", ALL_TINY)
def test_reconstruct_beats_none_on_held_out_tokens(app, model_name):
    """Where the architecture has no output bias (Gemma) the refit has no offset and competes with ``none``."""
    baseline = "none" if model_name in NO_OUTPUT_BIAS else "bias"
    svc = app.extensions["neuronscope"].compression
    with svc.manager.use() as lm:
        inputs, _ = svc.calibration(lm, None, False, evaluation=svc.text_sets.evaluation())
        held_out = svc.sequences(lm, svc.text_sets.evaluation()).sequences[:6]
        removed = {layer: list(range(1, lm.adapter.d_mlp(layer), 4)) for layer in range(lm.adapter.n_layers)}
        errors = {}
        for compensation in dict.fromkeys(("none", baseline, "reconstruct")):
            pruned, report = svc.compressed(lm, removed, compensation, inputs)
            errors[compensation] = layer_output_error(lm, pruned, held_out, lm.adapter.n_layers - 1)
    assert errors["reconstruct"] < errors["none"]
    assert {r["used"] for r in report} <= {baseline, "reconstruct"} and len(report) == lm.adapter.n_layers
    assert "reconstruct" in {r["used"] for r in report}
    target = "mlp_output" if model_name in NOT_ADDITIVE else "block_output"
    assert {r["target"] for r in report} == {target}
    assert all(r["held_out_error"]["reconstruct"] < r["held_out_error"][baseline] for r in report if r["used"] == "reconstruct")


@pytest.mark.parametrize("model_name", ["tiny-gemma3"])
def test_without_an_output_bias_bias_is_refused_and_reconstruct_saves_a_stock_model(client, app, data_dir, model_name):
    before = sorted(p.name for p in (data_dir / "models").iterdir())
    for path, body in [
        ("/api/pruning/plan", {"sparsity": 0.25, "method": "activation", "compensation": "bias"}),
        ("/api/pruning/sweep", {"methods": ["magnitude"], "sparsities": [0.25], "compensations": ["none", "bias"]}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 400 and "bias" in response.get_json()["details"], path
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.25, "method": "activation"})
    response = client.post("/api/pruning/apply", json={"plan": plan, "output_name": "small", "compensation": "bias"})
    assert response.status_code == 400 and "bias" in response.get_json()["details"]
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == before

    plan = post(client, "/api/pruning/plan", {"sparsity": 0.25, "method": "activation", "compensation": "reconstruct"})
    applied = post(client, "/api/pruning/apply", {"plan": plan, "output_name": "small", "texts": TEXTS}, status=201)
    assert applied["compensation"] == "reconstruct" and applied["loads_with_transformers"]
    assert "reconstruct" in {layer["used"] for layer in applied["compensation_layers"]}
    stock = transformers.AutoModelForCausalLM.from_pretrained(data_dir / "models" / "small").eval()
    assert all(block.mlp.down_proj.bias is None for block in stock.model.layers)
    post(client, "/api/models/switch", {"model_name": "small"})
    ids = lm_of(app).tokenizer(TEXTS[1], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(stock(input_ids=ids).logits, lm_of(app).model(input_ids=ids).logits, atol=1e-5, rtol=0)


def test_warnings_and_the_ratio_limit(client, data_dir):
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.9, "method": "random", "estimate": True})
    ratio = plan["estimate"]["ratio"]
    assert plan["warnings"] == quality_warnings(ratio)
    response = client.post("/api/pruning/apply", json={"plan": plan, "output_name": "small", "max_perplexity_ratio": ratio * 0.99})
    assert response.status_code == 409 and "max_perplexity_ratio" in response.get_json()["details"]
    assert not (data_dir / "models" / "small").exists()
    limit = ratio * 1.01
    applied = post(client, "/api/pruning/apply", {"plan": plan, "output_name": "small", "max_perplexity_ratio": limit}, status=201)
    assert applied["ratio"] == pytest.approx(ratio, rel=1e-6) and applied["warnings"] == plan["warnings"]


def test_quality_warnings():
    assert quality_warnings(1.2) == []
    assert quality_warnings(1.6)[0].startswith("large loss of quality")
    assert quality_warnings(12)[0].startswith("this plan breaks the model")


BAD_BODIES = [
    ("/api/pruning/plan", {"sparsity": 0.2, "method": "wanda", "compensation": "magic"}),
    ("/api/pruning/plan", {"sparsity": 0.2, "method": "wanda", "estimate": "yes"}),
    ("/api/pruning/plan", {"sparsity": 0.2, "method": "wanda", "allow_overlap": 1}),
    ("/api/pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x", "compensation": "magic"}),
    ("/api/pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x", "max_perplexity_ratio": -1}),
    ("/api/pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x", "max_perplexity_ratio": 2, "evaluate": False}),
    ("/api/pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x", "calibration_texts": []}),
]


BAD_PLAN_SETTINGS = [("compensation", "Bias"), ("method", "bogus"), ("scope", "weird"), ("sparsity", "lots"), ("sparsity", 0.99), ("seed", -5)]


@pytest.mark.parametrize("field,value", BAD_PLAN_SETTINGS)
def test_apply_checks_the_settings_a_plan_records(client, data_dir, field, value):
    plan = {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "method": "magnitude", field: value}
    response = client.post("/api/pruning/apply", json={"plan": plan, "output_name": "x", "evaluate": False})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["details"].startswith(f"plan: '{field}' must")
    assert not (data_dir / "models" / "x").exists()


@pytest.mark.parametrize("path,body", BAD_BODIES)
def test_bad_inputs_are_400(client, data_dir, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error", "details"}
    assert not (data_dir / "models" / "x").exists()


# -- 4. the sweep ---------------------------------------------------------------------------------


def test_the_sweep_rows_equal_the_plan_estimates(client, app):
    body = {"methods": ["magnitude", "activation"], "sparsities": [0.1, 0.4], "compensations": ["none", "bias", "reconstruct"]}
    sweep = post(client, "/api/pruning/sweep", body)
    assert len(sweep["rows"]) == 12 and sweep["evaluation"] == post(client, "/api/pruning/evaluate", {})["evaluation"]
    assert sweep["dense_perplexity"] == post(client, "/api/pruning/evaluate", {})["perplexity"]
    for row in sweep["rows"][::3] + [sweep["rows"][-1]]:
        plan = post(client, "/api/pruning/plan", {
            "method": row["method"], "sparsity": row["sparsity"], "compensation": row["compensation"], "estimate": True,
        })
        assert plan["estimate"]["perplexity_after"] == row["perplexity"]
        assert plan["estimate"]["ratio"] == row["ratio"] == pytest.approx(row["perplexity"] / sweep["dense_perplexity"])
        assert plan["parameters"]["after"] == row["parameters_after"]
    cached = client.post("/api/pruning/sweep", json=body)
    assert cached.get_json() == {**sweep, "cached": True}


def test_the_progress_of_a_sweep_gives_the_dense_evaluation_the_share_of_a_row(app, monkeypatch):
    compression = app.extensions["neuronscope"].compression
    reported: list[float] = []
    at_each_evaluation: list[float] = []
    measure = compression.loss

    def loss(*args, **kwargs):
        at_each_evaluation.append(reported[-1] if reported else 0.0)
        return measure(*args, **kwargs)

    monkeypatch.setattr(compression, "loss", loss)
    compression.sweep(methods=["magnitude"], sparsities=[0.1], progress=lambda fraction, step: reported.append(fraction))
    dense, pruned = at_each_evaluation
    assert dense == 0.0 and pruned >= 0.5 and reported == sorted(reported) and reported[-1] == 1.0


def test_evaluate_reads_the_dense_loss_a_plan_estimate_measured(client, app, monkeypatch):
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.1, "method": "magnitude", "estimate": True})
    compression = app.extensions["neuronscope"].compression
    monkeypatch.setattr(compression, "loss", lambda *args, **kwargs: pytest.fail("the dense model was evaluated again"))
    assert compression.evaluate()["perplexity"] == plan["estimate"]["perplexity_before"]


def test_the_sweep_takes_the_obs_method(client):
    sweep = post(client, "/api/pruning/sweep", {"methods": ["obs"], "sparsities": [0.25], "compensations": ["none", "reconstruct"]})
    assert [(row["method"], row["compensation"]) for row in sweep["rows"]] == [("obs", "none"), ("obs", "reconstruct")]
    assert sweep["calibration"] is not None
    plan = post(client, "/api/pruning/plan", {"method": "obs", "sparsity": 0.25, "compensation": "reconstruct", "estimate": True})
    assert plan["estimate"]["perplexity_after"] == sweep["rows"][1]["perplexity"]


@pytest.mark.parametrize("body", [
    {"methods": [], "sparsities": [0.1]},
    {"methods": ["wanda"], "sparsities": []},
    {"methods": ["wanda"], "sparsities": [0.1], "compensations": []},
    {"methods": ["wanda"], "sparsities": [0.1], "compensations": ["magic"]},
    {"methods": ["magic"], "sparsities": [0.1]},
    {"methods": ["wanda"], "sparsities": [0.96]},
    {"methods": ["wanda"], "sparsities": [-0.1]},
    {"methods": ["wanda"], "sparsities": ["0.1"]},
    {"methods": ["wanda"], "sparsities": [0.1, 0.1]},
    {"methods": ["wanda", "wanda"], "sparsities": [0.1]},
    {"methods": "wanda", "sparsities": [0.1]},
    {"sparsities": [0.1]},
    {"methods": ["wanda"], "sparsities": [0.1], "scope": "everywhere"},
])
def test_bad_sweeps_are_400(client, body):
    response = client.post("/api/pruning/sweep", json=body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error", "details"}


# -- 5. saved models: model card and the kept -> original mapping ---------------------------------


def test_saved_models_have_a_card_and_trace_kept_neurons_to_the_original(client, app, data_dir, model_name):
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.25, "method": "wanda", "scope": "global", "compensation": "bias"})
    applied = post(client, "/api/pruning/apply", {"plan": plan, "output_name": "small"}, status=201)
    info = post_get(client, "/api/models/small")
    record = info["pruning"]
    assert record["source_model"] == model_name and record["compensation"] == "bias"
    assert record["evaluation"]["sha256"] == applied["evaluation"]["sha256"]
    assert record["parameters"] == applied["parameters"]
    assert post_get(client, f"/api/models/{model_name}")["pruning"] is None

    dense = lm_of(app)
    removed = {g["layer_index"]: set(g["neuron_indices"]) for g in plan["neurons"]}
    for entry in record["kept"]:
        layer, original = entry["layer_index"], entry["original_indices"]
        expected = [n for n in range(dense.adapter.d_mlp(layer)) if n not in removed.get(layer, set())]
        assert original == expected and len(original) == applied["mlp_sizes"][layer]
    layer = record["kept"][0]["layer_index"]
    dense_rows = dense.adapter.w_in(layer)
    post(client, "/api/models/switch", {"model_name": "small"})
    small = lm_of(app)
    for role, rows in small.adapter.w_in(layer).items():
        torch.testing.assert_close(rows, dense_rows[role][record["kept"][0]["original_indices"]])

    card = (data_dir / "models" / "small" / "README.md").read_text()
    assert f"A copy of `{model_name}`" in card and "- method: wanda (scope global, sparsity 0.25)" in card
    assert "- compensation: bias" in card and f"{applied['parameters']['after']:,} after" in card
    assert f"{applied['perplexity_after']:.4f}" in card and applied["evaluation"]["sha256"] in card


def post_get(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- 6. recovery ----------------------------------------------------------------------------------


def kl_on(dense, folder, texts):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return sum(float(kl_to_teacher(model, dense, dense_ids)) for dense_ids in texts) / len(texts)


def short_calibration_texts():
    """The built-in calibration text in pieces of 20 words (given texts must fit the tiny models' context)."""
    words = " ".join(builtin_texts("calibration")).split()
    return [" ".join(words[i:i + 20]) for i in range(0, len(words), 20)]


def test_recovery_reduces_kl_and_is_deterministic_under_a_seed(client, app, data_dir):
    neurons = [{"layer_index": layer, "neuron_indices": list(range(0, 64, 2))} for layer in (0, 1)]
    recovery = {"steps": 12, "learning_rate": 3e-3, "tokens_per_step": 48, "seed": 5}
    given = {"neurons": neurons, "texts": TEXTS, "calibration_texts": short_calibration_texts()}
    post(client, "/api/pruning/apply", {**given, "output_name": "plain"}, status=201)
    runs = [
        post(client, "/api/pruning/apply", {**given, "output_name": name, "recovery": {**recovery, "seed": seed}}, status=201)
        for name, seed in (("a", 5), ("b", 5), ("c", 6))
    ]
    assert runs[0]["recovery"] == runs[1]["recovery"] != runs[2]["recovery"]
    assert runs[0]["recovery"]["steps"] == 12 and runs[0]["recovery"]["tokens_per_step"] == 48
    models = data_dir / "models"
    assert (models / "a" / "model.safetensors").read_bytes() == (models / "b" / "model.safetensors").read_bytes()
    assert (models / "a" / "model.safetensors").read_bytes() != (models / "c" / "model.safetensors").read_bytes()
    lm = lm_of(app)
    held_out = [lm.tokenizer(text, return_tensors="pt")["input_ids"] for text in TEXTS]
    assert kl_on(lm.model, models / "a", held_out) < kl_on(lm.model, models / "plain", held_out)
    assert runs[0]["perplexity_after"] < post_get(client, "/api/models/plain")["pruning"]["evaluation"]["after"]["perplexity"]
    assert "12 steps of KL distillation" in (models / "a" / "README.md").read_text()
    assert post_get(client, "/api/models/a")["pruning"]["recovery"] == runs[0]["recovery"]
    assert runs[0]["recovery"]["precision"] == resolved_precision("auto", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_recovery_in_either_precision_reduces_kl_and_says_which(client, app, data_dir, precision):
    neurons = [{"layer_index": layer, "neuron_indices": list(range(0, 64, 2))} for layer in (0, 1)]
    recovery = {"steps": 12, "learning_rate": 3e-3, "tokens_per_step": 48, "precision": precision}
    given = {"neurons": neurons, "texts": TEXTS, "calibration_texts": short_calibration_texts()}
    post(client, "/api/pruning/apply", {**given, "output_name": "plain"}, status=201)
    applied = post(client, "/api/pruning/apply", {**given, "output_name": "a", "recovery": recovery}, status=201)
    assert applied["recovery"]["precision"] == precision
    assert f"{precision}; KL" in (data_dir / "models" / "a" / "README.md").read_text()
    lm = lm_of(app)
    held_out = [lm.tokenizer(text, return_tensors="pt")["input_ids"] for text in TEXTS]
    assert kl_on(lm.model, data_dir / "models" / "a", held_out) < kl_on(lm.model, data_dir / "models" / "plain", held_out)


def test_auto_precision_is_bfloat16_only_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    assert resolved_precision("float32", cpu) == "float32" and resolved_precision("bfloat16", cpu) == "bfloat16"
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolved_precision("auto", cpu) == ("bfloat16" if native else "float32")


def test_recovery_trains_on_the_whole_calibration_split_never_on_evaluation_text(client, app, data_dir):
    sets = text_sets(app)
    lm = lm_of(app)
    recovery_texts, calibration_texts = sets.recovery().texts, sets.calibration().texts
    assert len(recovery_texts) > len(calibration_texts) and recovery_texts[: len(calibration_texts)] == calibration_texts
    lengths = [len(lm.tokenizer(text)["input_ids"]) for text in recovery_texts]
    tokens = sum(n - (n % 128 == 1) for n in lengths)  # pieces of the 128-token context, a 1-token rest dropped
    neurons = [{"layer_index": 0, "neuron_indices": [1, 2, 3]}]
    recovery = {"steps": 2, "learning_rate": 1e-3, "tokens_per_step": 32}
    body = {"neurons": neurons, "texts": TEXTS, "output_name": "r", "recovery": recovery}
    applied = post(client, "/api/pruning/apply", body, status=201)
    assert applied["recovery"]["text_source"] == "default:calibration"
    assert applied["recovery"]["texts_tokens"] == tokens
    assert f"default:calibration, {tokens} tokens" in (data_dir / "models" / "r" / "README.md").read_text()
    late = next(t for t in reversed(recovery_texts) if len(lm.tokenizer(t)["input_ids"]) < 100)  # evaluation texts must fit
    assert late not in calibration_texts
    refused = client.post("/api/pruning/apply", json={**body, "texts": [late, *TEXTS], "output_name": "s"})
    assert refused.status_code == 400 and "overlap" in refused.get_json()["details"]
    assert not (data_dir / "models" / "s").exists()
    allowed = {**body, "texts": [late, *TEXTS], "output_name": "s", "allow_overlap": True}
    assert post(client, "/api/pruning/apply", allowed, status=201)["recovery"]["texts_tokens"] == tokens


@pytest.mark.parametrize("recovery", [
    {"steps": -1, "learning_rate": 1e-3, "tokens_per_step": 32},
    {"steps": 0, "learning_rate": 1e-3, "tokens_per_step": 32},
    {"steps": 2, "learning_rate": 0, "tokens_per_step": 32},
    {"steps": 2, "learning_rate": 1e-3, "tokens_per_step": 1},
    {"steps": 2, "learning_rate": 1e-3},
    {"steps": 2, "learning_rate": 1e-3, "tokens_per_step": 32, "epochs": 3},
    {"steps": 2, "learning_rate": 1e-3, "tokens_per_step": 32, "precision": "float16"},
    [2, 1e-3, 32],
])
def test_bad_recovery_is_400(client, data_dir, recovery):
    body = {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x", "recovery": recovery}
    response = client.post("/api/pruning/apply", json=body)
    assert response.status_code == 400, response.get_json()
    assert not (data_dir / "models" / "x").exists()


def test_a_recovery_cancelled_mid_way_writes_nothing_and_leaves_the_model_unchanged(client, app, data_dir, monkeypatch):
    """The job is held at its second recovery step, cancelled there, then let go."""
    held = hold_jobs_at_step(monkeypatch, 2, lambda step: step.startswith("recovery step"))
    lm = lm_of(app)
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
    text_sets(app)
    models = sorted(p.name for p in (data_dir / "models").iterdir())
    body = {
        "neurons": [{"layer_index": 0, "neuron_indices": [1, 2, 3]}], "output_name": "small", "texts": TEXTS,
        "recovery": {"steps": 6, "learning_rate": 1e-3, "tokens_per_step": 32},
    }
    job_id = post(client, "/api/pruning/apply?async=true", body, status=202)["job_id"]
    assert held.paused.wait(timeout=60)
    assert client.delete(f"/api/jobs/{job_id}").get_json()["cancel_requested"] is True
    held.resume.set()
    job = wait_for_status(client, job_id, {"cancelled"})
    assert len(held.steps) == 2 and "result" not in job
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == models
    assert hook_count(lm.model) == 0
    with torch.no_grad():
        torch.testing.assert_close(lm.model(input_ids=ids).logits, before, atol=0, rtol=0)
