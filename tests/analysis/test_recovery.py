"""Recovery's training windows: every calibration window once before any again, in a seeded order."""

import torch

from neuronscope.analysis.recovery import Recovery, windows


def _sequences() -> list[torch.Tensor]:
    return [torch.arange(0, 23), torch.arange(100, 141)]  # 64 tokens in all


def test_each_window_is_used_once_before_any_is_used_again():
    steps = windows(_sequences(), Recovery(steps=20, learning_rate=1e-3, tokens_per_step=8), limit=512)
    stream = torch.cat(_sequences())
    assert all(w.shape == (1, 8) for w in steps)
    starts = [int((stream == w[0, 0]).nonzero()) for w in steps]
    assert all(start % 8 == 0 for start in starts)
    assert all(torch.equal(w[0], stream[s:s + 8]) for w, s in zip(steps, starts))
    assert sorted(starts[:8]) == list(range(0, 64, 8))
    assert sorted(starts[8:16]) == list(range(0, 64, 8))


def test_the_order_follows_the_seed_and_the_width_the_token_limit():
    def order(seed: int, limit: int = 512) -> list[list[int]]:
        recovery = Recovery(steps=8, learning_rate=1e-3, tokens_per_step=8, seed=seed)
        return [w[0].tolist() for w in windows(_sequences(), recovery, limit)]

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert {len(w) for w in order(3, limit=5)} == {5}
