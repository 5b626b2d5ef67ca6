"""``GET /api/openapi.json``: the OpenAPI document kept in docs/openapi.yaml."""

from functools import lru_cache

import yaml
from flask import Blueprint

from neuronscope.config import PROJECT_ROOT

bp = Blueprint("spec", __name__)
SPEC_PATH = PROJECT_ROOT / "docs" / "openapi.yaml"


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    """The parsed specification (read once)."""
    with open(SPEC_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@bp.get("/openapi.json")
def openapi():
    return openapi_document()
