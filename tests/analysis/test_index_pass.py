"""An indexing pass (both tails, statistics, per-token sums) against an independent capture of
every activation: sorts, numpy statistics and a direct lookup-explanation computation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from neuronscope.analysis.max_activating import index_pass
from neuronscope.analysis.neuron_view import WINDOW, neuron_activation_rows, window
from neuronscope.analysis.neuron_stats import (
    HISTOGRAM_EDGES, MAGNITUDE_EDGES, N_BINS, RunningStats, token_rows, token_view, tracked_tokens,
)
from neuronscope.executors.chunks import merge_passes

from tests.support.activation_helpers import captured
from tests.support.tiny_models import CORPUS as TRAINING_CORPUS

TEXTS = [*dict.fromkeys(TRAINING_CORPUS), "Paris and Rome, the fox and the dog.", "two three four five"]
DEPTH = 6


def reference_bins(values: np.ndarray) -> np.ndarray:
    """Bins by comparison with the edges: sign bit clear in [e_i, e_i+1), set in (-e_i+1, -e_i]."""
    half = len(MAGNITUDE_EDGES)
    k = np.array([sum(abs(float(v)) >= e for e in MAGNITUDE_EDGES) for v in values])
    return np.where(np.signbit(values), half - k, half - 1 + k)


def test_histogram_bins_are_exact_at_the_edges():
    edges = HISTOGRAM_EDGES.astype(np.float32)
    below = np.nextafter(edges, np.float32(-np.inf))
    above = np.nextafter(edges, np.float32(np.inf))
    values = np.concatenate([edges, below, above, np.float32([0.0, -0.0, 1e-30, -1e-30, 600, -600, 3e38])]).astype(np.float32)
    stats = RunningStats(1, "cpu")
    stats.update(torch.from_numpy(values[:, None].copy()))
    result = stats.result(values.min(keepdims=True), values.max(keepdims=True))
    np.testing.assert_array_equal(result.histogram[0], np.bincount(reference_bins(values), minlength=N_BINS))
    assert result.positive[0] == (values > 0).sum()


@pytest.fixture
def corpus(loaded):
    sequences = [loaded.tokenizer(t)["input_ids"] for t in TEXTS]
    flags = [[p != 1 for p in range(len(s))] for s in sequences]  # leave one position out of every text
    tracked = tracked_tokens(sequences, limit=12)
    halves = [0 if i < len(sequences) / 2 else 1 for i in range(len(sequences))]
    acts = [captured(loaded.model, loaded.adapter, s) for s in sequences]
    return sequences, flags, tracked, halves, acts


def run_pass(loaded, sequences, flags, tracked, halves, batch_size):
    return index_pass(
        loaded.model, loaded.adapter, sequences, flags, pad_id=0, depth=DEPTH, batch_size=batch_size,
        rows=[token_rows(s, tracked) for s in sequences], halves=halves, token_rows=len(tracked) + 1,
    )


def test_both_tails_and_statistics_equal_a_full_scan(loaded, corpus):
    sequences, flags, tracked, halves, acts = corpus
    result = run_pass(loaded, sequences, flags, tracked, halves, batch_size=1)  # unpadded: the same arithmetic as the capture
    for layer in range(loaded.adapter.n_layers):
        every = np.concatenate([a[layer][np.array(f)] for a, f in zip(acts, flags)])  # [tokens, d_mlp]
        top, bottom, stats = result.tops[layer], result.bottoms[layer], result.stats[layer]
        np.testing.assert_allclose(top.values, -np.sort(-every, axis=0)[:DEPTH].T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(-bottom.values, np.sort(every, axis=0)[:DEPTH].T, rtol=1e-4, atol=1e-5)
        for tail, sign in ((top, 1), (bottom, -1)):
            at_refs = np.array([
                [acts[seq][layer][pos, n] for seq, pos in zip(tail.sequences[n], tail.positions[n])]
                for n in range(every.shape[1])
            ])
            np.testing.assert_allclose(sign * tail.values, at_refs, rtol=1e-4, atol=1e-5)
            assert not (tail.positions == 1).any()
        assert (stats.count == len(every)).all()
        np.testing.assert_allclose(stats.mean, every.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.sqrt(stats.m2 / stats.count), every.astype(np.float64).std(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(stats.positive, (every > 0).sum(axis=0))
        np.testing.assert_allclose(stats.minimum, every.min(axis=0), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(stats.maximum, every.max(axis=0), rtol=1e-6, atol=1e-7)
        expected = np.stack([np.bincount(reference_bins(every[:, n]), minlength=N_BINS) for n in range(every.shape[1])])
        np.testing.assert_array_equal(stats.histogram, expected)


def test_merged_chunks_equal_one_pass(loaded, corpus):
    sequences, flags, tracked, halves, _ = corpus
    whole = run_pass(loaded, sequences, flags, tracked, halves, batch_size=len(sequences))
    cut = 3
    first = run_pass(loaded, sequences[:cut], flags[:cut], tracked, halves[:cut], batch_size=2)
    second = run_pass(loaded, sequences[cut:], flags[cut:], tracked, halves[cut:], batch_size=2)
    second_global = type(second)(
        tops=[type(t)(t.values, t.sequences + cut, t.positions) for t in second.tops],
        bottoms=[type(t)(t.values, t.sequences + cut, t.positions) for t in second.bottoms],
        stats=second.stats, tokens=second.tokens,
    )
    merged = merge_passes(merge_passes(None, first, DEPTH), second_global, DEPTH)
    for layer in range(loaded.adapter.n_layers):
        np.testing.assert_allclose(merged.tops[layer].values, whole.tops[layer].values, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(merged.bottoms[layer].values, whole.bottoms[layer].values, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(merged.stats[layer].mean, whole.stats[layer].mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(merged.stats[layer].m2, whole.stats[layer].m2, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(merged.stats[layer].histogram, whole.stats[layer].histogram)
        np.testing.assert_allclose(merged.tokens[layer].sums, whole.tokens[layer].sums, rtol=1e-4, atol=1e-4)


def test_lookup_explanation_and_input_tokens_equal_a_direct_computation(loaded, corpus):
    sequences, flags, tracked, halves, acts = corpus
    result = run_pass(loaded, sequences, flags, tracked, halves, batch_size=4)
    for layer in range(loaded.adapter.n_layers):
        ids = {h: np.concatenate([np.array(s)[np.array(f)] for s, f, hh in zip(sequences, flags, halves) if hh == h]) for h in (0, 1)}
        values = {h: np.concatenate([a[layer][np.array(f)] for a, f, hh in zip(acts, flags, halves) if hh == h]) for h in (0, 1)}
        pooled = {h: np.where(np.isin(ids[h], tracked), ids[h], -1) for h in (0, 1)}  # untracked ids share one entry
        view = token_view(result.tokens[layer], tracked, k=5, min_count=3)
        for n in range(values[0].shape[1]):
            table = {t: values[0][pooled[0] == t, n].mean() for t in np.unique(pooled[0])}
            simulated = np.array([table.get(t, values[0][:, n].mean()) for t in pooled[1]])
            expected = np.corrcoef(simulated, values[1][:, n])[0, 1]
            assert view.score[n] == pytest.approx(expected, abs=1e-4)
            all_ids = np.concatenate([ids[0], ids[1]])
            all_values = np.concatenate([values[0][:, n], values[1][:, n]])
            means = {t: all_values[all_ids == t].mean() for t in tracked if (all_ids == t).sum() >= 3}
            best = sorted(means, key=lambda t: (-means[t], t))[:5]
            assert view.input_ids[n][: len(best)].tolist() == best
            np.testing.assert_allclose(view.input_means[n][: len(best)], [means[t] for t in best], rtol=1e-4, atol=1e-5)
            assert view.input_counts[n][: len(best)].tolist() == [int((all_ids == t).sum()) for t in best]


def assert_windows_match(tail, sign, acts, layer, lengths):
    """Every entry's window equals the capture over :func:`window`'s span of its position, NaN after."""
    assert tail.windows is not None and tail.windows.shape == tail.values.shape + (WINDOW,)
    for n in range(tail.values.shape[0]):
        for k, (seq, pos) in enumerate(zip(tail.sequences[n], tail.positions[n])):
            start, end = window(lengths[seq], pos)
            row = tail.windows[n, k]
            np.testing.assert_allclose(row[: end - start], acts[seq][layer][start:end, n], rtol=1e-4, atol=1e-5)
            assert np.isnan(row[end - start :]).all()
            assert row[pos - start] == pytest.approx(sign * tail.values[n, k], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_windows_of_both_tails_equal_the_capture_also_after_merging_chunks(loaded, corpus, batch_size):
    """Long texts too (windows cut on both sides), with DEPTH entries per neuron from every text."""
    sequences, flags, tracked, halves, acts = corpus
    long = [loaded.tokenizer(" ".join(TEXTS[i : i + 4]))["input_ids"] for i in (0, 4)]  # 60-100 tokens
    sequences, flags = [*sequences, *long], [*flags, *([True] * len(s) for s in long)]
    halves, acts = [*halves, 1, 1], [*acts, *(captured(loaded.model, loaded.adapter, s) for s in long)]
    lengths = [len(s) for s in sequences]
    assert max(lengths) > 60
    cut = 3
    first = run_pass(loaded, sequences[:cut], flags[:cut], tracked, halves[:cut], batch_size=batch_size)
    second = run_pass(loaded, sequences[cut:], flags[cut:], tracked, halves[cut:], batch_size=batch_size)
    shifted = replace(
        second,
        tops=[replace(t, sequences=t.sequences + cut) for t in second.tops],
        bottoms=[replace(t, sequences=t.sequences + cut) for t in second.bottoms],
    )
    merged = merge_passes(merge_passes(None, first, DEPTH), shifted, DEPTH)
    assert any((t.positions > WINDOW).any() for t in merged.tops + merged.bottoms)  # windows starting inside a text
    for layer in range(loaded.adapter.n_layers):
        assert_windows_match(merged.tops[layer], 1, acts, layer, lengths)
        assert_windows_match(merged.bottoms[layer], -1, acts, layer, lengths)


@pytest.mark.parametrize("name", ["tiny-neox", "tiny-opt"])
def test_index_pass_and_windows_on_neox_and_opt(shared_managers, name):
    """OPT hooks its MLP activations flat (``[batch * seq, d_mlp]``): tails and windows still equal the capture."""
    lm = shared_managers(name).ensure_loaded()
    sequences = [lm.tokenizer(t)["input_ids"] for t in TEXTS]
    flags = [[True] * len(s) for s in sequences]
    acts = [captured(lm.model, lm.adapter, s) for s in sequences]
    result = index_pass(lm.model, lm.adapter, sequences, flags, pad_id=0, depth=DEPTH, batch_size=3)
    for layer in range(lm.adapter.n_layers):
        every = np.concatenate([a[layer] for a in acts])
        np.testing.assert_allclose(result.tops[layer].values, -np.sort(-every, axis=0)[:DEPTH].T, rtol=1e-4, atol=1e-5)
        assert_windows_match(result.tops[layer], 1, acts, layer, [len(s) for s in sequences])
        assert_windows_match(result.bottoms[layer], -1, acts, layer, [len(s) for s in sequences])
        rows = neuron_activation_rows(lm.model, lm.adapter, layer, 5, sequences[:3], pad_id=0)  # the pages' fallback
        for row, a in zip(rows, acts):
            np.testing.assert_allclose(row, a[layer][:, 5], rtol=1e-4, atol=1e-5)
