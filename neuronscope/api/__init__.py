"""Thin blueprints, one per area of the API contract."""

from flask import Flask

from neuronscope.api import activations, clusters, health, jobs, models, pruning, queries, samples, spec

BLUEPRINTS = (
    health.bp, models.bp, samples.bp, spec.bp, pruning.bp, activations.bp, clusters.bp, queries.bp, jobs.bp,
)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix="/api")
