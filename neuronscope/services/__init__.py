"""Service layer: validation against the loaded model, orchestration, files.

One :class:`Services` container per app, reachable from views with :func:`services`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from neuronscope.config import Settings
from neuronscope.executors import Executor, build_executor
from neuronscope.modeling.manager import ModelManager
from neuronscope.services.activations import ActivationService
from neuronscope.services.clusters import ClusterService
from neuronscope.services.compression import CompressionService
from neuronscope.services.corpora import DEFAULT_CORPUS, CorpusService
from neuronscope.services.evaluation_set import DefaultSets
from neuronscope.services.long_runs import LongRunService
from neuronscope.services.models import ModelService
from neuronscope.services.neurons import NeuronService
from neuronscope.services.pruning import PruningService
from neuronscope.services.queries import QueryService
from neuronscope.services.samples import SampleService
from neuronscope.storage.index import ActivationIndex


@dataclass
class Services:
    settings: Settings
    manager: ModelManager
    executor: Executor
    models: ModelService
    samples: SampleService
    pruning: PruningService
    activations: ActivationService
    clusters: ClusterService
    queries: QueryService
    compression: CompressionService
    corpora: CorpusService
    text_sets: DefaultSets
    neurons: NeuronService
    long_runs: LongRunService


def build_services(settings: Settings, manager: ModelManager) -> Services:
    """Wire every service over one model manager."""
    samples = SampleService(settings)
    index = ActivationIndex(settings.data_dir / "activation_index.sqlite3", settings.index_depth)
    executor = build_executor(settings)
    activations = ActivationService(settings, manager, index, samples, executor)
    clusters = ClusterService(settings, activations.store)
    corpora = CorpusService(settings, manager, activations)
    long_runs = LongRunService(settings, manager)
    text_sets = DefaultSets(DEFAULT_CORPUS, lambda: corpora.get(DEFAULT_CORPUS)["texts"], settings.calibration_words)
    return Services(
        settings=settings,
        manager=manager,
        executor=executor,
        models=ModelService(settings, manager),
        samples=samples,
        pruning=PruningService(settings, manager, samples, executor),
        activations=activations,
        clusters=clusters,
        queries=QueryService(settings, manager, index, clusters, corpora),
        compression=CompressionService(settings, manager, samples, text_sets),
        corpora=corpora,
        text_sets=text_sets,
        neurons=NeuronService(settings, manager, corpora, long_runs),
        long_runs=long_runs,
    )


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions["neuronscope"]
