"""The frontend's static files as Flask serves them: page, assets, module graph, no outside URLs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from neuronscope.analysis.impact import HIGH_IMPACT, SAFE_IMPACT
from neuronscope.api.spec import openapi_document

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


def js_option_lists(module: Path) -> dict[str, list]:
    """``export const NAME = [...]`` lists of ``{ value: ... }`` in a module (``...OTHER`` spread
    included), and its numeric constants."""
    text = module.read_text()
    lists: dict[str, list] = {}
    for name, body in re.findall(r"^export const (\w+) = \[\n(.*?)\n\];$", text, flags=re.M | re.S):
        values = []
        for spread, value in re.findall(r"\.\.\.(\w+)|value: '([\w-]+)'", body):
            values += lists[spread] if spread else [value]
        lists[name] = values
    numbers = {name: float(value) for name, value in re.findall(r"^export const (\w+) = ([\d.]+);$", text, flags=re.M)}
    return {**lists, **numbers}


def spec_enum(path: str, method: str, field: str) -> list[str]:
    """The enum of ``field`` (a query parameter or a body property) of an operation in the served spec."""
    document = openapi_document()

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            target = document
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            node = target
        return node

    def find(schema):
        schema = resolve(schema)
        if field in schema.get("properties", {}):
            return resolve(schema["properties"][field])
        for key in ("allOf", "oneOf", "anyOf"):
            for part in schema.get(key, []):
                if (found := find(part)) is not None:
                    return found
        return None

    operation = document["paths"][path][method]
    for parameter in map(resolve, operation.get("parameters", [])):
        if parameter["name"] == field:
            return [v for v in resolve(parameter["schema"])["enum"] if v is not None]
    found = find(operation["requestBody"]["content"]["application/json"]["schema"])
    return [v for v in found["enum"] if v is not None]


def test_the_pages_method_lists_and_impact_guides_are_the_servers():
    options = js_option_lists(STATIC / "js" / "options.js")
    assert options["SCORE_METHODS"] == spec_enum("/api/pruning/candidates", "get", "method")
    assert options["SCORE_METHODS"] == spec_enum("/api/pruning/plan", "post", "method")
    assert options["PLAN_SCOPES"] == spec_enum("/api/pruning/plan", "post", "scope")
    assert options["IMPORTANCE_METHODS"] == spec_enum("/api/pruning/neuron-importance", "post", "method")
    assert (options["SAFE_IMPACT"], options["HIGH_IMPACT"]) == (SAFE_IMPACT, HIGH_IMPACT)


def test_views_query_only_inside_their_own_root():
    """Each view module looks up elements through ``scope(id)`` and only finds its own."""
    page = (STATIC / "index.html").read_text()
    roots = {}
    for module in static_files(".js"):
        if found := re.search(r"scope\('([\w-]+)'\)", module.read_text()):
            roots[module.name] = found.group(1)
    assert {"activations.js", "neuron.js", "weights.js", "pruning.js", "clusters.js"} <= set(roots)
    for name, root in roots.items():
        opening = re.search(rf'<(section|header) id="{root}"', page)
        closing = page.index(f"</{opening.group(1)}>", opening.end())
        inside = set(re.findall(r'id="([\w-]+)"', page[opening.end():closing]))
        wanted = set(re.findall(r"\$\('#([\w-]+)", (STATIC / "js" / name).read_text()))
        assert wanted <= inside, f"{name} looks for {wanted - inside} outside #{root}"
