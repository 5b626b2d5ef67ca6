"""The frontend's static files as Flask serves them: page, assets, module graph, no outside URLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

STATIC = Path(__file__).resolve().parents[2] / "neuronscope" / "web" / "static"
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def static_files(suffix: str) -> list[Path]:
    return sorted(STATIC.rglob(f"*{suffix}"))


def test_index_is_served_at_root_with_a_strict_content_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b'<script type="module" src="static/js/app.js">' in response.data
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe" not in policy


def test_every_asset_the_page_references_is_served(client):
    html = client.get("/").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', html)
    assert {"static/style.css", "static/js/app.js"} <= set(assets)
    for asset in assets:
        response = client.get(f"/{asset}")
        assert response.status_code == 200, asset
        assert response.mimetype in {"text/css", "text/javascript", "application/javascript"}, asset


def test_every_module_import_resolves_to_a_served_file(client):
    modules = static_files(".js")
    assert modules
    for module in modules:
        for target in re.findall(r"""^import .* from '(\.[^']+)';$""", module.read_text(), flags=re.M):
            path = (module.parent / target).resolve()
            assert path.is_file(), f"{module.name} imports missing {target}"
            url = "/static/" + path.relative_to(STATIC).as_posix()
            assert client.get(url).status_code == 200, url


def test_the_page_loads_nothing_from_outside_its_origin():
    for path in [*static_files(".html"), *static_files(".js"), *static_files(".css")]:
        text = path.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s'\"`)]*", text)) - {SVG_NAMESPACE}
        assert not urls, f"{path.name} refers to {urls}"
        assert "@import" not in text and "<script>" not in text and " style=" not in text, path.name


def test_every_api_path_the_page_calls_is_a_route_of_the_app(app):
    """Catches a typo in an endpoint name and an endpoint the page needs that is not served."""
    adapter = app.url_map.bind("localhost")
    calls = set()
    for module in static_files(".js"):
        calls |= set(re.findall(r"""\bapi\(\s*[`'"]([^`'"]+)[`'"]""", module.read_text()))
    assert len(calls) >= 10
    for call in sorted(calls):
        path = "/api/" + re.sub(r"\$\{[^}]+\}", "x.json", call)
        try:
            adapter.match(path, method="GET")
        except MethodNotAllowed:
            pass
        except NotFound:
            pytest.fail(f"the page calls {path}, which the app does not serve")


def test_unknown_static_file_is_a_json_404_and_the_api_is_unchanged(client):
    response = client.get("/static/../neuronscope/config.py")
    assert response.status_code == 404 and response.is_json
    missing = client.get("/static/nope.js")
    assert missing.status_code == 404 and set(missing.get_json()) == {"error", "details"}
    assert client.get("/api/health").get_json()["status"] == "healthy"
    assert "Content-Security-Policy" not in client.get("/api/health").headers
