"""Service layer: validation against the loaded model, orchestration, files.

One :class:`Services` container per app, reachable from views with :func:`services`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from neuronscope.config import Settings
from neuronscope.modeling.manager import ModelManager
from neuronscope.services.long_runs import LongRunService
from neuronscope.services.models import ModelService
from neuronscope.services.samples import SampleService


@dataclass
class Services:
    settings: Settings
    manager: ModelManager
    models: ModelService
    samples: SampleService
    long_runs: LongRunService


def build_services(settings: Settings, manager: ModelManager) -> Services:
    """Wire every service over one model manager."""
    return Services(
        settings=settings,
        manager=manager,
        models=ModelService(settings, manager),
        samples=SampleService(settings),
        long_runs=LongRunService(settings, manager),
    )


def services() -> Services:
    """The services of the current app."""
    return current_app.extensions["neuronscope"]
