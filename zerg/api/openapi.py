"""The OpenAPI 3.1 document (``GET /api/openapi.json``) and a page to try it (``GET /api/docs``).

Why a small generator of our own rather than spectree or flask-openapi3: the
views already validate with pydantic through ``zerg.api.io`` and answer errors
through ``zerg.errors``; both libraries want to own that (their own decorators,
their own validation-error format, flask-openapi3 even its own Flask subclass),
so adopting one would mean rewriting every view and the problem+json format
the API promises. What the document needs from them is only the JSON Schema of
our models, and pydantic already produces that for JSON Schema 2020-12, the
dialect OpenAPI 3.1 uses.

So the document is assembled from what serves the API: the routes of
``app.url_map``, each view's ``@operation`` (``zerg.api.operations``) and
docstring, the schemas pydantic generates (``zerg.api.openapi_schemas``), and
the prose of ``zerg.api.openapi_description``. A route without ``@operation``
makes the build fail, so the document cannot drift from the routes.

The document describes the app as configured: the bearer scheme and its 401
answers appear only when ``API_TOKEN`` is set, and the development-only admin
routes only where they are registered. Both routes here sit behind the token
like every other ``/api`` route but health (see ``zerg.auth``): the document is
not secret, but one rule with one exception is easier to trust than a list.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import render_template
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from zerg import idempotency
from zerg import schemas as s
from zerg.api import websocket
from zerg.api.idempotency import HEADER
from zerg.api.idempotency import KEY_PATTERN
from zerg.api.idempotency import REPLAYED_HEADER
from zerg.api.idempotency import takes_key
from zerg.api.openapi_description import PROBLEMS
from zerg.api.openapi_description import TAGS
from zerg.api.openapi_description import description
from zerg.api.openapi_schemas import REF_TEMPLATE
from zerg.api.openapi_schemas import component_schemas
from zerg.api.openapi_schemas import path_parameters
from zerg.api.openapi_schemas import query_parameters
from zerg.api.operations import HTML
from zerg.api.operations import JSON
from zerg.api.operations import Operation
from zerg.api.operations import Reply
from zerg.api.operations import operation
from zerg.api.operations import operation_of
from zerg.auth import OPEN_PATHS
from zerg.errors import PROBLEM_MIMETYPE
from zerg.origins import UNSAFE_METHODS
from zerg.providers import get_providers
from zerg.web import secure_page

EXTENSION_KEY = "zerg.openapi"
PATH_PARAM = re.compile(r"{(\w+)}")
FLASK_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
METHODS = ("GET", "PUT", "PATCH", "POST", "DELETE")
# The docs page's Swagger UI, vendored under zerg/web/static (see its vendor/README.md).
SWAGGER_UI = "vendor/swagger-ui-dist-5.35.0"

bp = Blueprint("openapi", __name__)


@dataclass(frozen=True)
class Route:
    """One method on one path of the app, and its view's ``@operation``."""

    method: str
    path: str  # in OpenAPI's form: /api/agents/{agent_id}
    operation_id: str
    view: Callable[..., Any]
    op: Operation


def routes_of(app: Flask) -> list[Route]:
    """List every HTTP route under /api (not the websocket), with what its view says of it."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or rule.websocket:
            continue
        view = app.view_functions[rule.endpoint]
        described = operation_of(view)
        if described is None:
            raise LookupError(f"{rule.endpoint} ({rule.rule}) has no @operation to document it")
        methods = [method for method in METHODS if method in (rule.methods or ())]
        name = rule.endpoint.rpartition(".")[2]
        for method in methods:
            # The view's name, with the method when it serves several (PUT and PATCH).
            op_id = f"{name}_{method.lower()}" if len(methods) > 1 else name
            path = FLASK_PARAM.sub(r"{\1}", rule.rule)
            found.append(Route(method, path, op_id, view, described))
    return found


def _models(routes: list[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the document names: requests as validated, responses as serialised."""
    requests: list[type[BaseModel]] = []
    responses: list[type[BaseModel]] = [s.Problem, s.ValidationProblem, s.ServerProblem]
    for route in routes:
        if route.op.body is not None:
            requests.append(route.op.body)
        replies = (route.op.reply, *route.op.also)
        responses += [reply.model for reply in replies if reply.model is not None]
    requests += [schema for schema, _ in websocket.HANDLERS.values()]
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation") for model in requests
    ]
    pairs += [(model, "serialization") for model in responses]
    return list(dict.fromkeys(pairs))


def _reply(reply: Reply) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.status == 204:
        return answer
    if reply.model is not None:
        schema: dict[str, Any] = {"$ref": REF_TEMPLATE.format(model=reply.model.__name__)}
        if reply.many:
            schema = {"type": "array", "items": schema}
    else:
        schema = {"type": "string"} if reply.media_type == HTML else {"type": "object"}
    media_type = PROBLEM_MIMETYPE if reply.problem else reply.media_type
    answer["content"] = {media_type: {"schema": schema}}
    return answer


# Which path or query parameter a response model's ``id`` fills.
ID_PARAMETERS: dict[type[BaseModel], str] = {
    s.AgentOut: "agent_id",
    s.ThreadOut: "thread_id",
    s.RunOut: "run_id",
    s.AgentMessageOut: "message_id",
    s.ThreadMessageOut: "message_id",
    s.ThreadMessageSentOut: "message_id",
    s.McpServerOut: "server_id",
}

# What the Location header of a create names, by the model it answers with.
LOCATIONS: dict[type[BaseModel], str] = {
    s.AgentOut: "`/api/agents/{id}`: the new agent.",
    s.ThreadOut: "`/api/threads/{id}`: the new thread.",
    s.AgentMessageOut: "`/api/agents/{agent_id}/messages/{id}`: the new message.",
    s.ThreadMessageOut: "`/api/threads/{thread_id}/messages/{id}`: the new message.",
    s.ThreadMessageSentOut: "`/api/threads/{thread_id}/messages/{id}`: the new message.",
    s.RunOut: "`/api/runs/{id}`: the queued run, to follow until it ends.",
    s.WsTicketOut: "`/api/ws?ticket={ticket}`: the websocket URL that redeems the ticket.",
    s.McpServerOut: "`/api/mcp-servers/{id}`: the new MCP server.",
}


def _location(route: Route) -> dict[str, Any]:
    """Document the Location header of the operation's success, if it creates something."""
    reply = route.op.reply
    if route.method != "POST" or reply.status not in (201, 202) or reply.model is None:
        return {}
    return {
        "Location": {
            "description": LOCATIONS[reply.model] + " Sent again with a replayed response.",
            "required": True,
            "schema": {"type": "string", "format": "uri-reference"},
        }
    }


def _links(routes: list[Route], reply: Reply) -> dict[str, Any]:
    """Link a resource just created (201/202) to every operation that takes one of its ids.

    The new resource's ``id`` fills the parameter named for it (``agent_id``
    for an agent), and its own ``*_id`` fields the parameters of that name
    (a thread's ``agent_id``, a run's ``thread_id``), so a client, or a
    stateful fuzzer, can chain real ids from one call to the next.
    """
    if reply.status not in (201, 202) or reply.model not in ID_PARAMETERS:
        return {}
    fields = {ID_PARAMETERS[reply.model]: "$response.body#/id"}
    for name in reply.model.model_fields:
        if name.endswith("_id"):
            fields.setdefault(name, f"$response.body#/{name}")
    links: dict[str, Any] = {}
    for target in routes:
        path_ids = PATH_PARAM.findall(target.path)
        query = target.op.query
        query_ids = set(query.model_fields) if query is not None else set()
        if path_ids and set(path_ids) <= set(fields):
            parameters = {f"path.{name}": fields[name] for name in path_ids}
        elif not path_ids and query_ids & set(fields) and target.method == "GET":
            parameters = {f"query.{name}": fields[name] for name in sorted(query_ids & set(fields))}
        else:
            continue
        links[target.operation_id] = {
            "operationId": target.operation_id,
            "parameters": parameters,
        }
    return links


def _problem_ref(status: int) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{PROBLEMS[status][0]}"}


KEY_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the first request with a key runs and its response is "
        "kept; a repeat with the same key, path and body gets that response again "
        f"(`{REPLAYED_HEADER}: true`) and changes nothing. Keys are scoped to the token."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "pattern": f"^{KEY_PATTERN.pattern}$",
    },
}
KEY_ERRORS = {
    400: "The Idempotency-Key header is empty, too long or not printable ASCII.",
    409: "A request with this Idempotency-Key is still being processed.",
    422: "This Idempotency-Key was first used with another path or body.",
}


def _with_key(responses: dict[str, Any], success: str) -> None:
    """Document what the Idempotency-Key header adds to an operation's answers."""
    responses[success].setdefault("headers", {})[REPLAYED_HEADER] = {
        "description": "`true` when this is the stored response to an earlier request "
        "with the same Idempotency-Key, sent again; absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    }
    components = _problem_responses()
    for status, text in KEY_ERRORS.items():
        answer = responses.get(str(status))
        if answer is None:
            model = s.ValidationProblem if status == 422 else s.Problem
            answer = _reply(Reply(status, "", model, problem=True))
        elif "$ref" in answer:
            answer = copy.deepcopy(components[PROBLEMS[status][0]])
        answer["description"] = " ".join(filter(None, (answer["description"], text)))
        responses[str(status)] = answer


def _operation(app: Flask, routes: list[Route], route: Route, secured: bool) -> dict[str, Any]:
    op = route.op
    parameters = path_parameters(PATH_PARAM.findall(route.path))
    if op.query is not None:
        parameters += query_parameters(op.query, app.config["MAX_PAGE_SIZE"])
    responses: dict[str, Any] = {}
    for reply in sorted((op.reply, *op.also), key=lambda reply: reply.status):
        responses[str(reply.status)] = _reply(reply)
        links = _links(routes, reply)
        if links:
            responses[str(reply.status)]["links"] = links
    location = _location(route)
    if location:
        responses[str(op.reply.status)]["headers"] = location
    # Unknown query parameters are refused on every route.
    errors = {422, 500}
    if secured and route.path not in OPEN_PATHS:
        errors.add(401)
    if PATH_PARAM.search(route.path):
        errors.add(404)
    if op.body is not None:
        errors |= {400, 413, 415}
    if route.method in UNSAFE_METHODS:
        errors.add(403)
    if op.database:
        errors.add(503)
    for status in sorted(errors):
        responses.setdefault(str(status), _problem_ref(status))
    if takes_key(route.view):
        parameters.append(KEY_PARAMETER)
        _with_key(responses, str(op.reply.status))
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
        "description": inspect.cleandoc(route.view.__doc__ or ""),
    }
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {JSON: {"schema": {"$ref": REF_TEMPLATE.format(model=op.body.__name__)}}},
        }
    operation["responses"] = dict(sorted(responses.items()))
    if secured and route.path in OPEN_PATHS:
        operation["security"] = []
    return operation


def _problem_responses() -> dict[str, Any]:
    responses = {}
    for name, text, model, headers in PROBLEMS.values():
        response: dict[str, Any] = {
            "description": text,
            "content": {
                PROBLEM_MIMETYPE: {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}
            },
        }
        if headers:
            response["headers"] = {
                header: {"description": text, "schema": {"type": "string"}}
                for header, text in headers.items()
            }
        responses[name] = response
    return responses


def build_spec(app: Flask) -> dict[str, Any]:
    """Build the document for ``app`` as it is configured."""
    secured = bool(app.config["API_TOKEN"])
    routes = routes_of(app)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            app, routes, route, secured
        )
    used_tags = {route.op.tag for route in routes}
    model_ids = [model.id for model in get_providers(app).models()]
    page_cap, ttl = app.config["MAX_PAGE_SIZE"], app.config["IDEMPOTENCY_TTL_SECONDS"]
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "zerg",
            "version": _version(),
            "summary": "Backend of an AI-agent platform: agents, threads, runs.",
            "description": description(secured, page_cap, ttl),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": tag, "description": text} for tag, text in TAGS.items() if tag in used_tags
        ],
        "paths": paths,
        "components": {
            "schemas": component_schemas(_models(routes), model_ids, app.config["MCP_ALLOW_STDIO"]),
            "responses": _problem_responses(),
        },
    }
    if secured:
        spec["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "The server's API_TOKEN.",
            }
        }
        spec["security"] = [{"bearerAuth": []}]
    return spec


def _version() -> str:
    try:
        return metadata.version("zerg")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def get_spec(app: Flask | None = None) -> tuple[dict[str, Any], str]:
    """Return the current (or given) app's document and its text, built once and kept."""
    target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    cached: tuple[dict[str, Any], str] | None = target.extensions.get(EXTENSION_KEY)
    if cached is None:
        spec = build_spec(target)
        cached = (spec, json.dumps(spec, indent=1))
        target.extensions[EXTENSION_KEY] = cached
    return cached


@bp.get("/openapi.json")
@operation("docs", "This OpenAPI document", Reply(200, "The OpenAPI 3.1 document."), database=False)
def openapi_json() -> Response:
    """Serve the OpenAPI 3.1 document of this API, generated from the code that serves it."""
    return Response(get_spec()[1], mimetype=JSON)


@bp.get("/docs")
@operation(
    "docs",
    "This API's documentation page",
    Reply(200, "An HTML page rendering this document.", media_type=HTML),
    database=False,
)
def docs() -> Response:
    """Show the OpenAPI document as a page to browse and try, fetching nothing from elsewhere."""
    page = render_template("web/api_docs.html", spec=get_spec()[0], swagger_ui=SWAGGER_UI)
    return secure_page(Response(page, mimetype=HTML))
