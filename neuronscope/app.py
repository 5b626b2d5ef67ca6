"""The Flask application factory."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from flask import Flask
from flask_cors import CORS

from neuronscope.api import register_blueprints
from neuronscope.config import Settings
from neuronscope.errors import register_error_handlers
from neuronscope.modeling.manager import ModelManager
from neuronscope.security import install_guards
from neuronscope.services import build_services
from neuronscope.storage.leftovers import atomic_write_folders, remove_stale_temporaries
from neuronscope.web import bp as web_blueprint


def create_app(config: Settings | Mapping[str, Any] | None = None, manager: ModelManager | None = None) -> Flask:
    """Build the Flask app.

    ``config`` is a :class:`Settings` or a mapping of settings fields that override the
    environment. ``manager`` lets several apps share one loaded model (tests do).
    No model is loaded here: the manager loads lazily. CORS headers are sent only to the
    origins in ``settings.cors_origins`` (none by default: the frontend is same-origin). Old
    temporaries left by interrupted atomic writes are removed first.
    """
    settings = config if isinstance(config, Settings) else Settings.from_env(**dict(config or {}))
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    remove_stale_temporaries(atomic_write_folders(settings))
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=settings.max_request_bytes, JSON_SORT_KEYS=False, DEBUG=False)
    app.extensions["neuronscope"] = build_services(settings, manager or ModelManager(settings))
    if settings.cors_origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origins)}},
            supports_credentials=False,
            send_wildcard=settings.cors_origins == ("*",),
        )
    register_error_handlers(app)
    install_guards(app, settings)
    register_blueprints(app)
    app.register_blueprint(web_blueprint)
    return app
