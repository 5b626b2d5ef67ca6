"""Service layer: validation against the loaded model, orchestration, files.

One :class:`Services` container per app, reachable from views with :func:`services`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager
from neuronscope.services.models import ModelService
from neuronscope.services.pruning import PruningService
from neuronscope.services.samples import SampleService


@dataclass
class Services:
    settings: Settings
    manager: ModelManager
    models: ModelService
    samples: SampleService
    pruning: PruningService


def build_services(settings: Settings, manager: ModelManager) -> Services:
    """Wire every service over one model manager."""
    samples = SampleService(settings)
    return Services(
        settings=settings,
        manager=manager,
        models=ModelService(settings, manager),
        samples=samples,
        pruning=PruningService(settings, manager, samples),
    )


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions["neuronscope"]
