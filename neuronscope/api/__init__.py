"""Thin blueprints, one per area of the API contract."""

from flask import Flask

from neuronscope.api import compression, health, models, samples, spec

BLUEPRINTS = (health.bp, models.bp, samples.bp, spec.bp, compression.bp)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix="/api")
