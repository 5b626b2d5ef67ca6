"""The OpenAPI document matches the registered routes, and property-based fuzzing finds no 5xx."""

import re
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.jobs_support import stop_jobs

from neuronscope.api.spec import openapi_document

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def registered_api_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {(method, path) for method in rule.methods & METHODS}
    return routes


def documented_routes() -> set[tuple[str, str]]:
    paths = openapi_document()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops if method.upper() in METHODS}


def test_every_route_is_documented_and_every_documented_route_exists(app):
    assert registered_api_routes(app) == documented_routes()


def test_spec_is_served(client):
    body = client.get("/api/openapi.json").get_json()
    assert body["openapi"].startswith("3.") and "/api/health" in body["paths"]


@pytest.fixture(scope="module")
def fuzz_app(models_dir, tmp_path_factory):
    from tests.support.settings import make_settings

    from neuronscope import create_app

    data_dir = tmp_path_factory.mktemp("fuzz-data")
    fuzz_models = data_dir / "models"  # its own copy: fuzzed /api/pruning/apply calls save models here
    shutil.copytree(models_dir / "tiny-gpt2", fuzz_models / "tiny-gpt2")
    # jobs fuzzed with ?async=true pile up behind each other: never refuse one for a full queue
    settings = make_settings(data_dir, fuzz_models, rate_limit_per_minute=0, max_queued_jobs=100_000)
    app = create_app(settings)
    yield app
    stop_jobs([app])


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_server_error_and_conform(case):
    """All checks; schemathesis.toml lets model-dependent 400s answer schema-valid data."""
    case.call_and_validate()
