"""Fixtures of the compression tests: an app whose default models directory (``data/models``) holds a
copy of the parametrised tiny model, so saved models stay in the test's own folder.

Import the fixtures by name into a test module (``from tests.support.compression_app import app, client, data_dir``).
"""

import shutil

import pytest

from neuronscope import create_app
from neuronscope.config import Settings

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a test for pruning analysis.",
    "One two three four five six seven eight nine ten.",
]


@pytest.fixture
def data_dir(tmp_path, models_dir, model_name):
    """A data directory whose ``models/`` holds a copy of the tiny model (the default models dir)."""
    data = tmp_path / "data"
    shutil.copytree(models_dir / model_name, data / "models" / model_name)
    return data


@pytest.fixture
def app(data_dir, model_name):
    return create_app(Settings.from_env(data_dir=data_dir, model=model_name, offline=True, rate_limit_per_minute=0))


@pytest.fixture
def client(app):
    return app.test_client()


def lm_of(app):
    return app.extensions["neuronscope"].manager.ensure_loaded()


def text_sets(app):
    """The app's default evaluation and calibration sets (:class:`~neuronscope.services.evaluation_set.DefaultSets`).

    Their first use builds the default corpus' cache (``data/corpora/default.json``), as loading a
    model fills its cache: a test that snapshots the data directory reads them first.
    """
    sets = app.extensions["neuronscope"].text_sets
    sets.evaluation()
    return sets
