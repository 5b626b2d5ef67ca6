"""The ridge refit of ``reconstruct`` against an independent least-squares solve, and its sums."""

import pytest
import torch

from neuronscope.analysis.compensation import Moments, RidgeProblem, compensate, dense_layers, reconstruct_layer
from neuronscope.analysis.moments import CENTRING_FLOOR
from neuronscope.analysis.hooks import forward_hook
from neuronscope.analysis.surgery import kept_neurons, pruned_copy
from neuronscope.modeling.adapters import adapter_for
from tests.support.pruning_reference import alike_tokens
from tests.support.tiny_models import CORPUS, post_norm_opt


def test_each_ridge_solution_equals_the_augmented_least_squares_solution():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=generator, dtype=torch.float64) + 3.0
    y = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    w0 = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    problem = RidgeProblem.of(Moments.of(x, y - x @ w0))  # the change from w0 that reproduces y
    for ridge in (0.0, 0.5, 40.0):
        change, offset = problem.solve(ridge)
        weight = w0 + change
        # minimise ||[x, 1] [W; c] - y||^2 + ridge ||W - w0||^2 as one stacked least-squares problem
        design = torch.cat([torch.cat([x, torch.ones(200, 1, dtype=x.dtype)], dim=1),
                            torch.cat([ridge ** 0.5 * torch.eye(12, dtype=x.dtype), torch.zeros(12, 1, dtype=x.dtype)], dim=1)])
        target = torch.cat([y, ridge ** 0.5 * w0])
        solution = torch.linalg.lstsq(design, target).solution
        torch.testing.assert_close(weight, solution[:12], rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(offset, solution[12], rtol=1e-8, atol=1e-9)
    centred = x - x.mean(dim=0)
    assert problem.scale == pytest.approx(float((centred * centred).sum()) / 12, rel=1e-12)


def test_moments_add_up_and_give_the_directly_computed_error():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(90, 7, generator=generator, dtype=torch.float64) * 2.0 + 1.5
    y = torch.randn(90, 4, generator=generator, dtype=torch.float64) - 0.5
    weight = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    offset = torch.randn(4, generator=generator, dtype=torch.float64)
    whole, first, rest = Moments.of(x, y), Moments.of(x[:30], y[:30]), Moments.of(x[30:], y[30:])
    joined = first + rest
    assert joined.count == whole.count == 90
    for field in ("x_sum", "y_sum", "xx", "xy"):
        torch.testing.assert_close(getattr(joined, field), getattr(whole, field), rtol=1e-12, atol=1e-12)
    direct = float((x @ weight + offset - y).square().mean())
    assert whole.mean_squared_error(weight, offset) == pytest.approx(direct, rel=1e-10)
    assert whole.mean_squared_error(weight, offset) > 0


def _mlp_outputs(adapter, sequences, layer: int) -> torch.Tensor:
    seen = []
    with forward_hook(adapter.mlp_output(layer), lambda _m, _a, out: seen.append(out.reshape(-1, out.shape[-1]).double())):
        for ids in sequences:
            with torch.no_grad():
                adapter.model(input_ids=ids[None])
    return torch.cat(seen)


def test_reconstruct_reproduces_the_mlp_output_where_the_block_does_not_add_it():
    model, tokenizer = post_norm_opt()
    dense = adapter_for(model)
    texts = CORPUS[:40]
    sequences = [tokenizer(text, return_tensors="pt")["input_ids"][0] for text in texts[::2]]
    held_out = [tokenizer(text, return_tensors="pt")["input_ids"][0] for text in texts[1::2]]
    removed = {layer: list(range(0, dense.d_mlp(layer), 3)) for layer in range(dense.n_layers)}
    kept = {layer: kept_neurons(dense.d_mlp(layer), neurons) for layer, neurons in removed.items()}
    layers = dense_layers(dense, sequences, range(dense.n_layers), with_outputs=True)
    assert not any(layer.residual for layer in layers.values())
    errors = {}
    for compensation in ("none", "reconstruct"):
        pruned = adapter_for(pruned_copy(model, removed))
        report = compensate(dense, pruned, removed, kept, compensation, sequences, layers)
        last = dense.n_layers - 1
        errors[compensation] = float((_mlp_outputs(dense, held_out, last) - _mlp_outputs(pruned, held_out, last)).square().mean())
    assert {r["target"] for r in report if r["used"] == "reconstruct"} == {"mlp_output"}
    assert errors["reconstruct"] < errors["none"]


def test_a_refit_on_tokens_whose_activations_are_all_alike_solves_and_reports():
    x = alike_tokens()
    error = torch.randn(9, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    report, change, offset = reconstruct_layer(x, error, torch.zeros(8, dtype=torch.float64))
    assert report["used"] in ("bias", "reconstruct")
    assert change is None or bool(torch.isfinite(change).all() and torch.isfinite(offset).all())
    problem = RidgeProblem.of(Moments.of(x, error))
    uncentred_scale = float(x.square().sum()) / 64
    assert problem.scale == pytest.approx(CENTRING_FLOOR * uncentred_scale, rel=1e-6)
