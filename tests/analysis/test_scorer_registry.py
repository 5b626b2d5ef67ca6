"""The scorer registry: one signature for every method, and each entry equal to its own definition."""

import pytest
import torch

from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.pruning_plan import random_scores
from neuronscope.analysis.scores import CALIBRATED_METHODS, SCORE_METHODS, SCORERS

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello world", "One two three four five."]


def calibration_of(lm, seed=0):
    return Calibration(tuple(lm.tokenizer(t, return_tensors="pt")["input_ids"][0] for t in TEXTS), pad_id=0, seed=seed)


def test_the_method_list_is_the_registry():
    assert SCORE_METHODS == ("magnitude", "wanda", "activation", "taylor", "obs", "random")
    assert CALIBRATED_METHODS == {"wanda", "activation", "taylor", "obs"}


@pytest.mark.parametrize("method", SCORE_METHODS)
def test_every_scorer_takes_the_same_inputs_and_scores_every_neuron(loaded, method):
    steps = []
    scores = SCORERS[method](loaded.adapter, calibration_of(loaded), lambda fraction, step: steps.append(fraction))
    assert sorted(scores) == list(range(loaded.adapter.n_layers))
    for layer, values in scores.items():
        assert values.shape == (loaded.adapter.d_mlp(layer),)
        assert torch.isfinite(values).all()
    assert all(0.0 <= f <= 1.0 for f in steps)


def test_random_reads_only_the_seed(loaded):
    sizes = {layer: loaded.adapter.d_mlp(layer) for layer in range(loaded.adapter.n_layers)}
    scorer = SCORERS["random"]
    got = scorer(loaded.adapter, Calibration(seed=7))
    for layer, values in random_scores(sizes, 7).items():
        torch.testing.assert_close(got[layer], values)
    assert scorer.key(calibration_of(loaded, seed=7)) == scorer.key(Calibration(seed=7))
    assert scorer.key(Calibration(seed=8)) != scorer.key(Calibration(seed=7))


def test_calibrated_keys_follow_the_token_ids(loaded):
    wanda, magnitude = SCORERS["wanda"], SCORERS["magnitude"]
    same, other = calibration_of(loaded), Calibration(calibration_of(loaded).sequences[:2])
    assert wanda.key(same) == wanda.key(calibration_of(loaded))
    assert wanda.key(same) != wanda.key(other)
    assert magnitude.key(same) == magnitude.key(other) == magnitude.key(Calibration())
