"""The OpenAPI document and the docs page: valid, complete, and unable to drift.

The document is generated from the routes Flask serves, the ``@operation``
on each view and the pydantic models; these tests hold it to those routes
(both ways), the errors to what the views really answer, and the page
to what a browser without internet can show. ``tests/test_fuzz.py`` then
checks the server against the document with schemathesis.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.conftest import AppFactory
from zerg import schemas
from zerg.api.openapi import build_spec
from zerg.api.openapi import routes_of
from zerg.api.websocket import HANDLERS
from zerg.auth import OPEN_PATHS
from zerg.web import CONTENT_SECURITY_POLICY

TOKEN = "s3cret-token"
# The operations that answer without the database, so never 503.
WITHOUT_DATABASE = {"/api/models", "/api/openapi.json", "/api/docs", "/api/schedules/preview"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
PROBLEM = "application/problem+json"


def spec_of(app: Flask) -> dict[str, Any]:
    response = app.test_client().get(
        "/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec: dict[str, Any] = response.get_json()
    return spec


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def routes(app: Flask) -> dict[tuple[str, str], str]:
    """(method, OpenAPI path) → endpoint for every HTTP route under /api (not the websocket)."""
    found = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.websocket:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found[(method, path)] = rule.endpoint
    return found


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part]
    return node


@pytest.fixture(params=["testing", "development"])
def any_app(request: pytest.FixtureRequest, make_app: AppFactory) -> Flask:
    """The app in each environment (development adds the admin route)."""
    return make_app(ENVIRONMENT=request.param)


@pytest.fixture
def secured(make_app: AppFactory) -> Flask:
    return make_app(API_TOKEN=TOKEN)


def test_the_document_is_valid_openapi_3_1(any_app: Flask) -> None:
    spec = spec_of(any_app)
    assert spec["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(spec).validate()


def test_every_route_is_an_operation_and_every_operation_a_route(any_app: Flask) -> None:
    """Every route of the url map is documented, from its own view."""
    spec = spec_of(any_app)
    served = routes(any_app)
    documented = {(method, path) for method, path, _ in operations(spec)}
    assert documented == set(served)
    for route in routes_of(any_app):
        assert any_app.view_functions[served[(route.method, route.path)]] is route.view


def test_a_route_without_an_operation_stops_the_document(make_app: AppFactory) -> None:
    """A new view must say what it is: the build names it rather than leaving it out."""
    app = make_app()
    app.add_url_rule("/api/undocumented", "undocumented", lambda: "")
    with pytest.raises(LookupError, match="undocumented"):
        build_spec(app)


def test_the_admin_route_is_documented_only_where_it_exists(make_app: AppFactory) -> None:
    assert "/api/admin/reset-database" in spec_of(make_app(ENVIRONMENT="development"))["paths"]
    assert "/api/admin/reset-database" not in spec_of(make_app())["paths"]


def test_the_served_document_is_the_generated_one(app: Flask, client: FlaskClient) -> None:
    assert spec_of(app) == build_spec(app)
    # Built once per app, then served as is.
    assert client.get("/api/openapi.json").data == client.get("/api/openapi.json").data


def test_operation_ids_are_unique_and_descriptions_come_from_the_views(app: Flask) -> None:
    spec = spec_of(app)
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    for route in routes_of(app):
        description = spec["paths"][route.path][route.method.lower()]["description"]
        assert description == inspect.cleandoc(route.view.__doc__ or ""), route


def test_every_reference_resolves_and_every_schema_is_pydantics(app: Flask) -> None:
    spec = spec_of(app)
    for ref in set(refs(spec)):
        assert resolve(spec, ref) is not None
    components = spec["components"]["schemas"]
    for name in ("AgentOut", "ThreadOut", "RunOut", "ThreadMessageOut", "HealthOut"):
        model: type[BaseModel] = getattr(schemas, name)
        assert set(components[name]["properties"]) == set(model.model_fields), name
    for model in (schemas.AgentCreate, schemas.ThreadCreate, schemas.ThreadMessagePost):
        assert components[model.__name__]["additionalProperties"] is False


def test_partial_updates_refuse_null_where_the_server_does(app: Flask) -> None:
    """PUT/PATCH bodies: ``null`` only for nullable columns; no defaults (absent = unchanged)."""
    components = spec_of(app)["components"]["schemas"]
    for model in (schemas.AgentUpdate, schemas.ThreadUpdate):
        properties = components[model.__name__]["properties"]
        assert "required" not in components[model.__name__]
        for name, field in properties.items():
            assert "default" not in field, (model.__name__, name)
            allows_null = {"type": "null"} in field.get("anyOf", [])
            assert allows_null == (name not in model.NOT_NULL), (model.__name__, name)


def test_every_operation_lists_the_errors_it_can_answer(app: Flask) -> None:
    spec = spec_of(app)
    for method, path, operation in operations(spec):
        statuses = set(operation["responses"])
        assert "500" in statuses, (method, path)
        assert "401" not in statuses  # no token configured
        has_path_id = "{" in path
        has_body = "requestBody" in operation
        assert ("404" in statuses) >= has_path_id, (method, path)
        assert {"400", "413", "415"} <= statuses or not has_body, (method, path)
        # Every route refuses unknown query parameters.
        assert "422" in statuses, (method, path)
        # A cross-site write is refused; a route that uses the database may find it away.
        assert ("403" in statuses) == (method in {"POST", "PUT", "PATCH", "DELETE"}), path
        assert "503" in statuses or path in WITHOUT_DATABASE, (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and (status, path) != ("503", "/api/health"):
                response = resolve(spec, response["$ref"]) if "$ref" in response else response
                assert set(response["content"]) == {PROBLEM}, (method, path, status)
    assert set(spec["paths"]["/api/threads/{thread_id}/run"]["post"]["responses"]) >= {
        "202",
        "409",
    }
    # A status sent while the agent runs is refused (schemathesis's stateful phase found it).
    for method in ("put", "patch"):
        assert "409" in spec["paths"]["/api/agents/{agent_id}"][method]["responses"]
    assert spec["paths"]["/api/agents/{agent_id}"]["delete"]["responses"]["204"].keys() == {
        "description"
    }


def test_the_problem_shapes_are_those_the_server_sends(
    app: Flask, client: FlaskClient, secured: Flask, make_bare_app: AppFactory, tmp_path: Path
) -> None:
    """Real error bodies, one per status, validate against the documented problem models."""
    app.add_url_rule("/api/explode", "explode", lambda: 1 / 0)
    (tmp_path / "gone").mkdir()
    away = make_bare_app(f"sqlite:///{tmp_path / 'gone' / 'zerg.sqlite'}").test_client()
    (tmp_path / "gone").rmdir()
    assert client.post("/api/agents", json={"name": "a"}).status_code == 201
    answers = {
        400: client.post("/api/agents", data="{not json", content_type="application/json"),
        404: client.get("/api/agents/999"),
        405: client.delete("/api/agents"),
        409: client.post("/api/agents/1/run"),  # no task instructions
        413: client.post("/api/agents", data="x" * (app.config["MAX_CONTENT_LENGTH"] + 1)),
        415: client.post("/api/agents", data='{"name": "a"}', content_type="text/plain"),
        422: client.post("/api/agents", json={"name": ""}),
        500: client.get("/api/explode"),
        401: secured.test_client().get("/api/agents"),
        403: client.post(
            "/api/agents", json={"name": "a"}, headers={"Origin": "https://x.example"}
        ),
        503: away.get("/api/agents"),
    }
    documented = spec_of(secured)["components"]["responses"]
    models = {422: schemas.ValidationProblem, 500: schemas.ServerProblem}
    for status, response in answers.items():
        assert response.status_code == status, (status, response.data)
        assert response.mimetype == PROBLEM
        body = response.get_json()
        model = models.get(status, schemas.Problem)
        model.model_validate(body)
        assert set(body) <= set(model.model_fields), status
    assert {"BadRequest", "Unauthorized", "NotFound", "MethodNotAllowed"} <= set(documented)
    assert {"ContentTooLarge", "UnsupportedMediaType", "UnprocessableContent"} <= set(documented)
    assert {"Forbidden", "InternalServerError", "ServiceUnavailable"} <= set(documented)
    assert "Retry-After" in documented["ServiceUnavailable"]["headers"]


def test_with_a_token_the_document_says_so_and_needs_it_too(secured: Flask) -> None:
    """The docs routes follow the one rule of zerg.auth: every /api route but health."""
    client = secured.test_client()
    for path in ("/api/openapi.json", "/api/docs"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    spec = spec_of(secured)
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]
    for method, path, operation in operations(spec):
        if path in OPEN_PATHS:
            assert operation["security"] == [] and "401" not in operation["responses"]
        else:
            assert "401" in operation["responses"], (method, path)


def test_without_a_token_no_security_is_claimed(app: Flask) -> None:
    spec = spec_of(app)
    assert "security" not in spec and "securitySchemes" not in spec["components"]


def test_the_websocket_is_described_not_offered_as_an_operation(app: Flask) -> None:
    spec = spec_of(app)
    assert "/api/ws" not in spec["paths"]
    description = spec["info"]["description"]
    assert "/api/ws" in description
    for kind, (model, _) in HANDLERS.items():
        assert f"`{kind}`" in description
        assert model.__name__ in spec["components"]["schemas"]


def test_the_docs_page_embeds_the_document_and_fetches_nothing_from_elsewhere(
    app: Flask, client: FlaskClient
) -> None:
    """The page is Swagger UI (vendored) over the document it carries, under the UI's CSP.

    tests/test_browser.py drives it: every operation shows and "Try it out" answers.
    """
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    page = response.get_data(as_text=True)
    [document] = re.findall(
        r'<script type="application/json" id="openapi-document">(.*?)</script>', page, re.S
    )
    assert json.loads(document) == spec_of(app)
    # Every script is a file of this server (the CSP would refuse any other) or that data.
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert len(scripts) == 3
    for attributes in scripts:
        assert 'type="application/json"' in attributes or 'src="/assets/' in attributes
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page):
        with client.get(asset) as served:
            assert served.status_code == 200, asset
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    # Text from the document cannot close the data block or open a tag.
    assert "<text>" not in page and "</script>" not in document


# The document also caps a schedule at 100 characters.
@given(st.from_regex(schemas.CRON_PATTERN, fullmatch=True).filter(lambda text: len(text) <= 100))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_every_schedule_the_document_allows_is_accepted(expression: str) -> None:
    """The pattern is a promise: what matches it parses and fires (no 31 February)."""
    assert schemas.AgentCreate.model_validate({"name": "a", "schedule": expression}).schedule


def test_whole_floats_are_ids_as_json_schema_says(client: FlaskClient) -> None:
    client.post("/api/agents", json={"name": "a"})
    assert client.post("/api/threads", json={"agent_id": 1.0}).status_code == 201
    for wrong in (1.5, "1", True):
        response = client.post("/api/threads", json={"agent_id": wrong})
        assert response.status_code == 422, wrong


def test_nul_and_unoffered_models_are_in_the_document(app: Flask) -> None:
    components = spec_of(app)["components"]["schemas"]
    assert components["AgentCreate"]["properties"]["name"]["pattern"] == schemas.NAME_PATTERN
    state = components["ThreadUpdate"]["properties"]["agent_state"]["anyOf"][0]
    assert state["propertyNames"] == {"pattern": "^[^\\u0000]*$"}
    model = components["AgentCreate"]["properties"]["model"]["anyOf"][0]
    assert model["enum"] == ["offline"]
    config = components["AgentCreate"]["properties"]["config"]["anyOf"][0]
    assert config["additionalProperties"] == {"$ref": "#/components/schemas/StorableJSON"}


def test_each_create_links_to_the_operations_that_use_its_ids(app: Flask) -> None:
    spec = spec_of(app)
    by_id = {op["operationId"]: (path, op) for _method, path, op in operations(spec)}
    linked: set[str] = set()
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                assert status in ("201", "202"), (method, path)
                target_path, target = by_id[link["operationId"]]
                wanted = {f"path.{p}" for p in re.findall(r"{(\w+)}", target_path)}
                assert wanted <= set(link["parameters"]), (name, link)
                linked.add(link["operationId"])
    create_agent = spec["paths"]["/api/agents"]["post"]["responses"]["201"]["links"]
    assert create_agent["get_agent"]["parameters"] == {"path.agent_id": "$response.body#/id"}
    assert create_agent["list_threads"]["parameters"] == {"query.agent_id": "$response.body#/id"}
    run = spec["paths"]["/api/threads/{thread_id}/run"]["post"]["responses"]["202"]["links"]
    assert run["cancel_run"]["parameters"] == {"path.run_id": "$response.body#/id"}
    # Every operation that takes an id in its path is reachable from a create,
    # but a tool call's: its run makes it, and the run's list of calls names it.
    needs_id = {
        op["operationId"]
        for _m, path, op in operations(spec)
        if "{" in path and "{call_id}" not in path
    }
    assert needs_id <= linked
