"""The ridge refit of ``reconstruct`` against an independent least-squares solve, and its sums."""

import pytest
import torch

from neuronscope.analysis.compensation import Moments, RidgeProblem


def test_each_ridge_solution_equals_the_augmented_least_squares_solution():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=generator, dtype=torch.float64) + 3.0
    y = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    w0 = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    problem = RidgeProblem.of(Moments.of(x, y), w0)
    for ridge in (0.0, 0.5, 40.0):
        weight, offset = problem.solve(ridge)
        # minimise ||[x, 1] [W; c] - y||^2 + ridge ||W - w0||^2 as one stacked least-squares problem
        design = torch.cat([torch.cat([x, torch.ones(200, 1, dtype=x.dtype)], dim=1),
                            torch.cat([ridge ** 0.5 * torch.eye(12, dtype=x.dtype), torch.zeros(12, 1, dtype=x.dtype)], dim=1)])
        target = torch.cat([y, ridge ** 0.5 * w0])
        solution = torch.linalg.lstsq(design, target).solution
        torch.testing.assert_close(weight, solution[:12], rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(offset, solution[12], rtol=1e-8, atol=1e-9)
    centred = x - x.mean(dim=0)
    assert problem.mean_eigenvalue == pytest.approx(float((centred * centred).sum()) / 12, rel=1e-12)


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
