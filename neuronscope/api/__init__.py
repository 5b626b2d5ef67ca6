"""Thin blueprints, one per area of the API contract."""

from flask import Flask

from neuronscope.api import activations, clusters, compression, corpora, health, jobs, models, neurons, pruning, queries, samples, spec
from neuronscope.api.converters import register_converters
from neuronscope.api.long_running import check_query_string

BLUEPRINTS = (
    health.bp, models.bp, samples.bp, spec.bp, pruning.bp, activations.bp, clusters.bp, queries.bp,
    compression.bp, jobs.bp, corpora.bp, neurons.bp,
)


def register_blueprints(app: Flask) -> None:
    register_converters(app)
    app.before_request(check_query_string)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix="/api")
