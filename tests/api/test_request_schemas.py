"""docs/openapi.yaml describes exactly the typed requests of the code, field by field, with the code's enums."""

import re

import pytest

from neuronscope.api.long_running import OPERATIONS
from neuronscope.api.requests import JOB_STATUSES
from neuronscope.api.spec import openapi_document

COMPARED = ("type", "enum", "minimum", "maximum", "$ref", "required")
NESTED = ("items", "properties", "oneOf")


def spec_path(name: str) -> str:
    return "/api/" + re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", name)


def resolve(schema: dict) -> dict:
    """``allOf: [one schema]`` (how the spec adds ``nullable`` to a $ref) as that schema."""
    if set(schema) & {"allOf"} and len(schema["allOf"]) == 1:
        return {**{k: v for k, v in schema.items() if k != "allOf"}, **schema["allOf"][0]}
    return schema


def essentials(schema: dict) -> dict:
    """What must agree: types, enums (without the null of a nullable field), bounds, refs, nesting."""
    schema = resolve(schema)
    out = {key: schema[key] for key in COMPARED if key in schema}
    if "enum" in out:
        out["enum"] = sorted(value for value in out["enum"] if value is not None)
    if "required" in out:
        out["required"] = sorted(out["required"])
    for key in NESTED:
        if key == "properties" and key in schema:
            out[key] = {name: essentials(value) for name, value in schema[key].items()}
        elif key == "items" and key in schema:
            out[key] = essentials(schema[key])
        elif key == "oneOf" and key in schema:
            out[key] = [essentials(value) for value in schema[key]]
    return out


def documented_request(operation) -> dict:
    """The spec's request of an operation as one object schema: its body (JSON, or an upload's form
    fields without the file parts the view reads), or its query parameters; plus the path parameters
    the request declares as fields."""
    spec = openapi_document()["paths"][spec_path(operation.name)][operation.method.lower()]
    parameters = [p for p in spec.get("parameters", []) if "$ref" not in p]
    fields = set(operation.request.field_names())
    path = [p for p in parameters if p["in"] == "path" and p["name"] in fields]
    if operation.method == "POST":
        body = spec["requestBody"]["content"][operation.request.content_type]["schema"]
        properties = {k: v for k, v in body.get("properties", {}).items() if v.get("format") != "binary"}
        required = [k for k in body.get("required", []) if k in properties]
    else:
        query = [p for p in parameters if p["in"] == "query"]
        properties = {p["name"]: p["schema"] for p in query}
        required = [p["name"] for p in query if p.get("required")]
    return {
        "type": "object",
        "properties": {**properties, **{p["name"]: p["schema"] for p in path}},
        "required": required + [p["name"] for p in path],
    }


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_spec_request_matches_the_request_type_field_by_field(name):
    operation = OPERATIONS[name]
    code = operation.request.json_schema()
    documented = documented_request(operation)
    assert set(code["properties"]) == set(documented["properties"]), "fields in code vs in docs/openapi.yaml"
    assert sorted(code.get("required", [])) == sorted(documented["required"]), "required fields"
    for field, schema in code["properties"].items():
        assert essentials(schema) == essentials(documented["properties"][field]), f"{name}: field {field!r}"


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_async_parameter_is_documented_exactly_where_the_route_runs_as_a_job(name):
    operation = OPERATIONS[name]
    spec = openapi_document()["paths"][spec_path(operation.name)][operation.method.lower()]
    refs = [p.get("$ref") for p in spec.get("parameters", [])]
    assert ("#/components/parameters/Async" in refs) == operation.supports_async
    assert ("202" in spec["responses"]) == (operation.supports_async or name == "POST jobs")


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_format_parameter_is_documented_exactly_where_the_route_has_a_table(name):
    operation = OPERATIONS[name]
    spec = openapi_document()["paths"][spec_path(operation.name)][operation.method.lower()]
    refs = [p.get("$ref") for p in spec.get("parameters", [])]
    assert ("#/components/parameters/Format" in refs) == (operation.table is not None)


def test_routes_without_a_request_type_document_no_body_and_no_query():
    declared = {(spec_path(op.name), op.method.lower()) for op in OPERATIONS.values()}
    for path, methods in openapi_document()["paths"].items():
        for method, spec in methods.items():
            if (path, method) in declared:
                continue
            assert "requestBody" not in spec, (method, path)
            assert not [p for p in spec.get("parameters", []) if p.get("in") == "query"], (method, path)


def test_job_status_enums_in_the_spec_are_the_codes():
    schemas = openapi_document()["components"]["schemas"]
    for name in ("Job", "JobAccepted"):
        assert schemas[name]["properties"]["status"]["enum"] == list(JOB_STATUSES)


def test_a_field_missing_from_the_spec_fails_the_comparison():
    """The comparison is not vacuous: a request with one more field than its spec does not match."""
    from dataclasses import dataclass

    from neuronscope.api.fields import integer
    from neuronscope.api.requests import QueryNeuron

    @dataclass(frozen=True, kw_only=True)
    class Wider(QueryNeuron):
        extra: int = integer(default=0)

    documented = documented_request(OPERATIONS["POST queries/neuron"])
    assert set(Wider.json_schema()["properties"]) != set(documented["properties"])
    assert set(QueryNeuron.json_schema()["properties"]) == set(documented["properties"])
