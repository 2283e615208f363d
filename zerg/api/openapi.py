"""The OpenAPI 3.1 document (``GET /api/openapi.json``) and a page showing it (``GET /api/docs``).

Why a small generator of our own rather than spectree or flask-openapi3: the
views already validate with pydantic through ``zerg.api.io`` and answer errors
through ``zerg.errors``; both libraries want to own that (their own decorators,
their own validation-error format, flask-openapi3 even its own Flask subclass),
so adopting one would mean rewriting every view and the problem+json format
the API promises. What the document needs from them is only the JSON Schema of
our models, and pydantic already produces that for JSON Schema 2020-12, the
dialect OpenAPI 3.1 uses. So this module keeps a declarative table of the
operations next to the code, takes every schema from the pydantic models
themselves (``models_json_schema``), the path-id schema from ``schemas.Id``,
the descriptions from the views' docstrings and the websocket frames from
``zerg.api.websocket.HANDLERS``, and ``tests/test_openapi.py`` fails when a route of
``app.url_map`` and an operation of this table do not match one to one. The
document cannot drift from the models or from the routes without a test saying so.

The document describes the app as configured: the bearer scheme and its 401
answers appear only when ``API_TOKEN`` is set, and the development-only reset
route only in development. Both routes here sit behind the token like every
other ``/api`` route but health (see ``zerg.auth``): the document is not
secret, but one rule with one exception is easier to trust than a list.
"""

from __future__ import annotations

import copy
import html
import inspect
import json
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any
from typing import Literal

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import render_template_string
from flask import request
from pydantic import BaseModel
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from pydantic.json_schema import models_json_schema

from zerg import idempotency
from zerg import schemas as s
from zerg.api import websocket
from zerg.api.idempotency import KEY_PATTERN
from zerg.api.idempotency import REPLAYED_HEADER
from zerg.api.idempotency import takes_key
from zerg.auth import OPEN_PATHS
from zerg.errors import PROBLEM_MIMETYPE
from zerg.errors import unprocessable
from zerg.origins import UNSAFE_METHODS
from zerg.providers import get_providers

EXTENSION_KEY = "zerg.openapi"
REF_TEMPLATE = "#/components/schemas/{model}"
JSON = "application/json"
HTML = "text/html"
PATH_PARAM = re.compile(r"{(\w+)}")

bp = Blueprint("openapi", __name__)


@dataclass(frozen=True)
class Reply:
    """One documented answer of an operation (not its generic errors, which are derived)."""

    status: int
    description: str
    model: type[BaseModel] | None = None  # None: no body (204) or a non-model body
    many: bool = False  # a JSON array of ``model``
    problem: bool = False  # an application/problem+json body
    media_type: str = JSON


@dataclass(frozen=True)
class Operation:
    """One method on one path, and what the spec says about it.

    The generic errors are derived rather than listed, so they cannot be
    forgotten: 404 for a path with an id, 400/413/415 for a JSON body, 422
    everywhere (an unknown query parameter), 401 when a token is configured,
    403 for the unsafe methods (a cross-site request), 503 for those that use
    the database, 500 everywhere.
    """

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    endpoint: str  # the Flask endpoint: its view's docstring is the description
    tag: str
    summary: str
    reply: Reply
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    also: tuple[Reply, ...] = ()
    environments: frozenset[str] | None = None  # None: in every environment
    database: bool = True  # False: answers without the database (so never 503)


def ok(model: type[BaseModel], description: str = "OK", *, many: bool = False) -> Reply:
    return Reply(200, description, model, many)


def created(model: type[BaseModel]) -> Reply:
    return Reply(201, "Created: the new resource.", model)


def started(description: str) -> Reply:
    return Reply(202, description, s.RunOut)


def conflict(description: str) -> Reply:
    return Reply(409, description, s.Problem, problem=True)


def missing(description: str) -> Reply:
    """A 404 for an id named in the body (a path id's 404 is derived)."""
    return Reply(404, description, s.Problem, problem=True)


DELETED = Reply(204, "Deleted; no body.")
AGENT_RUNNING = conflict("A status was sent while one of the agent's runs executes.")

# One row per method and path; tests/test_openapi.py matches it against app.url_map.
# fmt: off
OPERATIONS: tuple[Operation, ...] = (
    # agents
    Operation("GET", "/api/agents", "api.agents.list_agents", "agents", "List agents",
              ok(s.AgentOut, "Agents, oldest first.", many=True), query=s.AgentQuery),
    Operation("POST", "/api/agents", "api.agents.create_agent", "agents", "Create an agent",
              created(s.AgentOut), body=s.AgentCreate),
    Operation("GET", "/api/agents/{agent_id}", "api.agents.get_agent", "agents", "Get an agent",
              ok(s.AgentOut)),
    Operation("PUT", "/api/agents/{agent_id}", "api.agents.update_agent", "agents",
              "Update an agent (the fields sent)", ok(s.AgentOut), body=s.AgentUpdate,
              also=(AGENT_RUNNING,)),
    Operation("PATCH", "/api/agents/{agent_id}", "api.agents.update_agent", "agents",
              "Update an agent (the fields sent)", ok(s.AgentOut), body=s.AgentUpdate,
              also=(AGENT_RUNNING,)),
    Operation("DELETE", "/api/agents/{agent_id}", "api.agents.delete_agent", "agents",
              "Delete an agent", DELETED),
    Operation("POST", "/api/agents/{agent_id}/run", "api.agents.run_agent", "agents",
              "Run an agent's task instructions",
              started("Accepted: the run, queued in a new thread of the agent's."),
              also=(conflict("The agent has no task instructions to run."),)),
    Operation("GET", "/api/agents/{agent_id}/messages", "api.agents.list_agent_messages",
              "agents", "List an agent's messages",
              ok(s.AgentMessageOut, "Messages, oldest first.", many=True), query=s.Page),
    Operation("POST", "/api/agents/{agent_id}/messages", "api.agents.create_agent_message",
              "agents", "Add a message to an agent", created(s.AgentMessageOut),
              body=s.AgentMessageCreate),
    # threads
    Operation("GET", "/api/threads", "api.threads.list_threads", "threads", "List threads",
              ok(s.ThreadOut, "Threads, oldest first.", many=True), query=s.ThreadQuery),
    Operation("POST", "/api/threads", "api.threads.create_thread", "threads", "Start a thread",
              created(s.ThreadOut), body=s.ThreadCreate,
              also=(missing("No agent has the body's `agent_id`."),)),
    Operation("GET", "/api/threads/{thread_id}", "api.threads.get_thread", "threads",
              "Get a thread", ok(s.ThreadOut)),
    Operation("PUT", "/api/threads/{thread_id}", "api.threads.update_thread", "threads",
              "Update a thread (the fields sent)", ok(s.ThreadOut), body=s.ThreadUpdate),
    Operation("PATCH", "/api/threads/{thread_id}", "api.threads.update_thread", "threads",
              "Update a thread (the fields sent)", ok(s.ThreadOut), body=s.ThreadUpdate),
    Operation("DELETE", "/api/threads/{thread_id}", "api.threads.delete_thread", "threads",
              "Delete a thread", DELETED),
    Operation("POST", "/api/threads/{thread_id}/run", "api.threads.run_thread", "threads",
              "Answer a thread's unanswered messages",
              started("Accepted: the run, queued (behind or instead of an active run, as "
                      "`multitask_strategy` says)."),
              body=s.ThreadRunCreate, body_required=False,
              also=(conflict("A run of this thread is active and `multitask_strategy` is "
                             "`reject`, or no message awaits an answer."),)),
    Operation("GET", "/api/threads/{thread_id}/messages", "api.threads.list_thread_messages",
              "threads", "List a thread's messages",
              ok(s.ThreadMessageOut, "Messages, oldest first.", many=True), query=s.Page),
    Operation("POST", "/api/threads/{thread_id}/messages", "api.threads.create_thread_message",
              "threads", "Add a message to a thread", created(s.ThreadMessageOut),
              body=s.ThreadMessageCreate),
    # runs
    Operation("GET", "/api/runs", "api.runs.list_runs", "runs", "List runs",
              ok(s.RunOut, "Runs, newest first.", many=True), query=s.RunQuery),
    Operation("GET", "/api/runs/{run_id}", "api.runs.get_run", "runs", "Get a run",
              ok(s.RunOut)),
    Operation("POST", "/api/runs/{run_id}/cancel", "api.runs.cancel_run", "runs",
              "Cancel a run", ok(s.RunOut, "The run was queued and is now cancelled."),
              also=(started("Accepted: the running run stops at its next streamed piece."),
                    conflict("The run has already finished."))),
    # schedules
    Operation("GET", "/api/schedules/preview", "api.schedules.preview", "schedules",
              "Preview a schedule",
              ok(s.SchedulePreviewOut, "The next fire times and a description."),
              query=s.SchedulePreviewQuery, database=False),
    # websocket
    Operation("POST", "/api/ws/tickets", "api.tickets.issue_ticket", "websocket",
              "Get a ticket for one websocket connection",
              Reply(201, "Created: connect to `/api/ws?ticket=<ticket>` within `expires_in` "
                    "seconds; the ticket lets one connection in.", s.WsTicketOut)),
    # the rest
    Operation("GET", "/api/models", "api.models.list_models", "models",
              "List the models agents may name",
              ok(s.ModelOut, "Every model the configured providers offer.", many=True),
              database=False),
    Operation("GET", "/api/health", "api.health.health", "health", "Check health",
              ok(s.HealthOut, "The process and its database answer (the event bus may not)."),
              also=(Reply(503, "The database does not answer (with `Retry-After`).",
                          s.HealthOut),)),
    Operation("POST", "/api/admin/reset-database", "api.admin.reset_database", "admin",
              "Drop and recreate every table (development only)", ok(s.ResetOut),
              environments=frozenset({"development"})),
    Operation("GET", "/api/admin/stats", "api.admin.stats", "admin",
              "This process's pool, threads, websockets and runs (development only)",
              ok(s.StatsOut), environments=frozenset({"development"}), database=False),
    Operation("GET", "/api/openapi.json", "api.openapi.openapi_json", "docs",
              "This OpenAPI document", Reply(200, "The OpenAPI 3.1 document."), database=False),
    Operation("GET", "/api/docs", "api.openapi.docs", "docs", "This API's documentation page",
              Reply(200, "An HTML page rendering this document.", media_type=HTML),
              database=False),
)
# fmt: on

TAGS = {
    "agents": "Agents: instructions, a model, an optional cron schedule.",
    "threads": "Conversations with one agent, and their messages.",
    "runs": "Executions of an agent on a thread: history, status, cancelling.",
    "schedules": "What a cron expression means in a time zone, before an agent runs on it.",
    "websocket": "Tickets that let a browser open `/api/ws` without the token in its URL.",
    "models": "The models the configured providers offer.",
    "health": "Liveness, database and event bus reachability (never needs the token).",
    "admin": "Development tooling; absent outside ENVIRONMENT=development.",
    "docs": "This document and the page that renders it.",
}

# The generic problem answers, shared through components/responses.
PROBLEMS: dict[int, tuple[str, str, type[BaseModel], dict[str, str]]] = {
    400: ("BadRequest", "The body is empty or not JSON.", s.Problem, {}),
    401: (
        "Unauthorized",
        "The bearer token is missing or wrong.",
        s.Problem,
        {"WWW-Authenticate": 'Always `Bearer realm="zerg"`.'},
    ),
    403: (
        "Forbidden",
        "A cross-site request: its `Origin` is neither this server's nor in CORS_ORIGINS, "
        "or the browser marked it `Sec-Fetch-Site: cross-site`.",
        s.Problem,
        {},
    ),
    404: ("NotFound", "No resource has the id in the path.", s.Problem, {}),
    405: (
        "MethodNotAllowed",
        "The path exists but not with this method.",
        s.Problem,
        {"Allow": "The methods the path accepts."},
    ),
    413: ("ContentTooLarge", "The body is over MAX_CONTENT_LENGTH.", s.Problem, {}),
    415: (
        "UnsupportedMediaType",
        "The body is not sent as `application/json` (a charset parameter is fine).",
        s.Problem,
        {},
    ),
    422: (
        "UnprocessableContent",
        "The JSON or the query failed validation; `errors` says where and why.",
        s.ValidationProblem,
        {},
    ),
    500: (
        "InternalServerError",
        "Something failed unexpectedly; nothing was written. Quote `request_id`.",
        s.ServerProblem,
        {"X-Request-ID": "The same request id as in the body."},
    ),
    503: (
        "ServiceUnavailable",
        "The database does not answer; retry later.",
        s.Problem,
        {"Retry-After": "Seconds to wait before retrying."},
    ),
}


def accepted_query(endpoint: str) -> frozenset[str]:
    """The query parameters an endpoint takes: its operations' query models, or the websocket's."""
    if endpoint == websocket.ENDPOINT:
        return websocket.QUERY_PARAMETERS
    return frozenset(
        name
        for op in OPERATIONS
        if op.endpoint == endpoint and op.query is not None
        for name in op.query.model_fields
    )


def refuse_unknown_query() -> None:
    """Refuse (422) a query parameter this document does not list for the route.

    Views with a query model refuse extras themselves; this hook covers every
    route, item routes and POSTs included, so one added later cannot forget.
    """
    if request.url_rule is None or request.method == "OPTIONS":
        return
    unknown = sorted(set(request.args) - accepted_query(request.endpoint or ""))
    if unknown:
        raise unprocessable(
            {
                "loc": ["query", name],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            }
            for name in unknown
        )


def operation_id(op: Operation) -> str:
    """The view's name, with the method when one view serves several (PUT and PATCH)."""
    view = op.endpoint.rpartition(".")[2]
    shared = sum(other.endpoint == op.endpoint for other in OPERATIONS) > 1
    return f"{view}_{op.method.lower()}" if shared else view


def operations_for(app: Flask) -> list[Operation]:
    """The operations this app serves (the admin ones only in development)."""
    environment = app.config["ENVIRONMENT"]
    return [op for op in OPERATIONS if op.environments is None or environment in op.environments]


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the document names: requests as validated, responses as serialised."""
    requests: list[type[BaseModel]] = []
    responses: list[type[BaseModel]] = [s.Problem, s.ValidationProblem, s.ServerProblem]
    for op in OPERATIONS:
        if op.body is not None:
            requests.append(op.body)
        responses += [reply.model for reply in (op.reply, *op.also) if reply.model is not None]
    requests += [schema for schema, _ in websocket.HANDLERS.values()]
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation") for model in requests
    ]
    pairs += [(model, "serialization") for model in responses]
    return list(dict.fromkeys(pairs))


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``null`` branch of an ``anyOf``, keeping the field's title and description."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    rest = [branch for branch in branches if branch != {"type": "null"}]
    outer = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**outer, **rest[0]} if len(rest) == 1 else {**outer, "anyOf": rest}


def _model_ids(app: Flask) -> list[str]:
    return [model.id for model in get_providers(app).models()]


def _component_schemas(model_ids: list[str]) -> dict[str, Any]:
    """The components, straight from pydantic, plus what its schema cannot say.

    A PUT/PATCH body (``schemas.Partial``) refuses ``null`` for the fields in
    ``NOT_NULL`` in a validator, and an absent field means "unchanged", not
    ``null``; pydantic's schema shows neither, so both are written in here.
    An agent's ``model`` must be one the configured providers offer, and
    request text may not hold NUL (``schemas.Storable``): both are checked by
    code, and written in here too.
    """
    _, top = models_json_schema(_models(), ref_template=REF_TEMPLATE)
    components: dict[str, Any] = top["$defs"]
    for model, mode in _models():
        if mode == "validation" and issubclass(model, s.Storable):
            _storable(components[model.__name__])
        if isinstance(model, type) and issubclass(model, s.Partial):
            properties = components[model.__name__]["properties"]
            for name, schema in properties.items():
                schema.pop("default", None)
                if name in model.NOT_NULL:
                    properties[name] = _without_null(schema)
    for model in (s.AgentCreate, s.AgentUpdate):
        choice = components[model.__name__]["properties"]["model"]
        for branch in choice.get("anyOf", [choice]):
            if branch.get("type") == "string":
                branch["enum"] = model_ids
    components[STORABLE_JSON] = _storable_json()
    return dict(sorted(components.items()))


# Text without NUL: what ``schemas.Storable`` lets through (PostgreSQL stores no NUL).
NO_NUL = "^[^\\u0000]*$"
STORABLE_JSON = "StorableJSON"


def _storable_json() -> dict[str, Any]:
    """Any JSON value a request may carry inside an object: no NUL in any text, keys included."""
    ref = {"$ref": REF_TEMPLATE.format(model=STORABLE_JSON)}
    return {
        "description": "Any JSON value, but no text (keys included) may contain NUL.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": ref},
            {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": ref},
        ],
    }


def _storable(schema: Any) -> None:
    """Say in a request schema what ``schemas.Storable`` refuses: NUL in any text.

    Free-form objects (``config``, ``agent_state``, ``metadata``) are checked
    to any depth, so their values are described by the recursive ``StorableJSON``.
    """
    if isinstance(schema, list):
        for item in schema:
            _storable(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and not {"pattern", "enum", "const"} & set(schema):
        schema["pattern"] = NO_NUL
    if schema.get("type") == "object" and schema.get("additionalProperties") is True:
        schema["propertyNames"] = {"pattern": NO_NUL}
        schema["additionalProperties"] = {"$ref": REF_TEMPLATE.format(model=STORABLE_JSON)}
    for key in ("properties", "$defs"):
        for value in schema.get(key, {}).values():
            _storable(value)
    for key in ("items", "anyOf", "oneOf", "allOf", "else", "then", "if"):
        _storable(schema.get(key))


def _query_parameters(model: type[BaseModel], page_cap: int) -> list[dict[str, Any]]:
    """One query parameter per field; a query value is absent or text, never ``null``."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    notes = {
        "skip": "How many items to pass over.",
        "limit": f"The most items to return; more than {page_cap} returns {page_cap}.",
    }
    parameters = []
    for name, field in schema["properties"].items():
        field = _without_null(field)
        field.pop("title", None)
        description = field.pop("description", None) or notes.get(name)
        if description is None and name.endswith("_id"):
            description = f"Only those of this {name.removesuffix('_id')}."
        if description is None and name == "status":
            description = "Only those with this status."
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": field}
        parameter["required"] = name in required
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _path_parameters(path: str) -> list[dict[str, Any]]:
    id_schema = TypeAdapter(s.Id).json_schema()
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"The {name.removesuffix('_id')}'s id.",
            "schema": id_schema,
            "example": 1,
        }
        for name in PATH_PARAM.findall(path)
    ]


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
}


def _links(app: Flask, reply: Reply) -> dict[str, Any]:
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
    for target in operations_for(app):
        path_ids = PATH_PARAM.findall(target.path)
        query_ids = set(target.query.model_fields) if target.query is not None else set()
        if path_ids and set(path_ids) <= set(fields):
            parameters = {f"path.{name}": fields[name] for name in path_ids}
        elif not path_ids and query_ids & set(fields) and target.method == "GET":
            parameters = {f"query.{name}": fields[name] for name in sorted(query_ids & set(fields))}
        else:
            continue
        links[operation_id(target)] = {
            "operationId": operation_id(target),
            "parameters": parameters,
        }
    return links


def _problem_ref(status: int) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{PROBLEMS[status][0]}"}


KEY_PARAMETER: dict[str, Any] = {
    "name": idempotency.HEADER,
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
    responses[success]["headers"] = {
        REPLAYED_HEADER: {
            "description": "`true` when this is the stored response to an earlier request "
            "with the same Idempotency-Key, sent again; absent otherwise.",
            "schema": {"type": "string", "enum": ["true"]},
        }
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


def _operation(app: Flask, op: Operation, secured: bool) -> dict[str, Any]:
    view = app.view_functions.get(op.endpoint)
    description = inspect.cleandoc(view.__doc__ or "") if view is not None else ""
    parameters = _path_parameters(op.path)
    if op.query is not None:
        parameters += _query_parameters(op.query, app.config["MAX_PAGE_SIZE"])
    responses: dict[str, Any] = {}
    for reply in sorted((op.reply, *op.also), key=lambda reply: reply.status):
        responses[str(reply.status)] = _reply(reply)
        links = _links(app, reply)
        if links:
            responses[str(reply.status)]["links"] = links
    # Unknown query parameters are refused on every route.
    errors = {422, 500}
    if secured and op.path not in OPEN_PATHS:
        errors.add(401)
    if PATH_PARAM.search(op.path):
        errors.add(404)
    if op.body is not None:
        errors |= {400, 413, 415}
    if op.method in UNSAFE_METHODS:
        errors.add(403)
    if op.database:
        errors.add(503)
    for status in sorted(errors):
        responses.setdefault(str(status), _problem_ref(status))
    if takes_key(view):
        parameters.append(KEY_PARAMETER)
        _with_key(responses, str(op.reply.status))
    operation: dict[str, Any] = {
        "operationId": operation_id(op),
        "tags": [op.tag],
        "summary": op.summary,
        "description": description,
    }
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {JSON: {"schema": {"$ref": REF_TEMPLATE.format(model=op.body.__name__)}}},
        }
    operation["responses"] = dict(sorted(responses.items()))
    if secured and op.path in OPEN_PATHS:
        operation["security"] = []
    return operation


def _problem_responses() -> dict[str, Any]:
    responses = {}
    for name, description, model, headers in PROBLEMS.values():
        response: dict[str, Any] = {
            "description": description,
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


def _websocket_section() -> str:
    """The websocket protocol, which OpenAPI cannot describe, generated from its handlers."""
    rows = "\n".join(
        f"| `{kind}` | `{schema.__name__}` |" for kind, (schema, _) in websocket.HANDLERS.items()
    )
    return f"""## Websocket: `/api/ws`

OpenAPI cannot describe a websocket, so it is described here rather than as an
operation. Connect with a websocket client to `/api/ws`; `?initial_topics=thread:1,agents`
subscribes at once and `?last_event_id=<id>` replays what a reconnecting client
missed. With a token configured, send `Authorization: Bearer <token>` on the
handshake, or (a browser, which cannot) connect with `?ticket=<ticket>` from
`POST /api/ws/tickets`: a ticket lets one connection in within `expires_in`
seconds. `?token=` is refused (401), since a URL is written to access logs. A
handshake whose `Origin` is neither the server's nor in CORS_ORIGINS is refused
(403) before the upgrade.

Frames are JSON text objects with a `type`; a request may carry a `message_id`,
which its direct reply echoes. Client frames, and the schema of each (in
`components/schemas`; unknown fields are ignored):

| type | schema |
|---|---|
{rows}

The server answers `pong`, `thread_history` (`thread_id`, the oldest {websocket.HISTORY_LIMIT}
`messages`), `agent_state` (`data`: the agent), `subscribed`,
`unsubscribe_success` and `message_sent` (`thread_id`, the stored `message` with
its `metadata`, and `run_id`, null if a run of the thread was already active and
`multitask_strategy` was `reject`; a `send_message` repeated with the same
`idempotency_key` stores nothing and gets the first `message_sent` again, with
its own `message_id` and `"replayed": true`), and then sends as things change:
`thread_message` (`thread_id`, `message`), `stream_start`, `stream_chunk`
(`content`) and `stream_end` (with `thread_id`, `run_id`, `status`, `error`, and
`discarded`, true when what was streamed was removed by a `rollback` rather than
stored); a thread's runs stream one at a time, so one run's `stream_end` comes
before the next one's `stream_start`. Event relays `{{"type": ...,
"data": ...}}` for `agent_created`, `agent_updated`, `agent_deleted`,
`thread_created`, `thread_updated`, `thread_deleted` and `run_updated`, each with
an `event_id`. A bad frame gets `{{"type": "error", "message_id": ..., "error":
<text>, "details": <object or null>}}` and the connection stays open; a client
too slow to read its queue is dropped.
"""


def _description(secured: bool, page_cap: int, ttl: int) -> str:
    token = (
        "This server requires it: every route but `/api/health` (this document and "
        "`/api/docs` included) needs `Authorization: Bearer <token>`."
        if secured
        else "This server has no token configured, so every route is open."
    )
    return f"""zerg's HTTP API: agents, the threads in which you talk to them, and the
runs that answer. JSON in and out, under `/api`.

## Lists

Collections take `skip` and `limit` (default 100, at most {page_cap}) and return
arrays in a stable order. Unknown query parameters and request fields are refused
(422) rather than ignored. `PUT` and `PATCH` change only the fields sent; `null`
clears a nullable field. Timestamps are UTC with an offset.

## Errors

Every error is an RFC 9457 problem (`application/problem+json`, schema `Problem`):
`type`, `title`, `status`, `detail`. 400: the body is not JSON (or the `Host` is
not one the server answers for, TRUSTED_HOSTS). 401: the token is
missing or wrong. 403: a cross-site `POST`, `PUT`, `PATCH` or `DELETE`, whose
`Origin` is neither the server's nor in CORS_ORIGINS (clients that send no
`Origin` are not refused). 404: no such resource (or no such path). 405: the path does not
take this method (an `Allow` header lists those it takes). 409: the resource's
state forbids it. 413: the body is over the size limit. 415: the body is not
sent as `application/json`. 422: validation failed,
with `errors`, a list of `{{loc, msg, type}}` (`ValidationProblem`). 500: an
unexpected failure, with a `request_id` and nothing of its internals
(`ServerProblem`). 503: the database does not answer; retry after the
`Retry-After` seconds. A refused request writes nothing.

## Retrying safely

The `POST`s that create something (an agent, a thread, a message, a run) take an
`Idempotency-Key` header (1 to 255 printable ASCII characters; the IETF draft of that
name). The first request with a key runs, and its response, if a success, is kept
with the key for {ttl} seconds, in the same transaction as the work. A retry with the same key,
path and body gets that response again with `{REPLAYED_HEADER}: true`, and changes
nothing. The same key with another path or body: 422. A retry while the first is
still being processed: 409 (retry later). An error response is not kept: the work
rolled back, so a retry runs again. Keys are scoped to the bearer token.

## Authentication

When `API_TOKEN` is set, requests need `Authorization: Bearer <token>`. {token}

{_websocket_section()}"""


def build_spec(app: Flask) -> dict[str, Any]:
    """Build the document for ``app`` as it is configured."""
    secured = bool(app.config["API_TOKEN"])
    page_cap = app.config["MAX_PAGE_SIZE"]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations_for(app):
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(app, op, secured)
    used_tags = dict.fromkeys(op.tag for op in operations_for(app))
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "zerg",
            "version": _version(),
            "summary": "Backend of an AI-agent platform: agents, threads, runs.",
            "description": _description(secured, page_cap, app.config["IDEMPOTENCY_TTL_SECONDS"]),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [{"name": tag, "description": TAGS[tag]} for tag in used_tags],
        "paths": paths,
        "components": {
            "schemas": _component_schemas(_model_ids(app)),
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


def get_spec(app: Flask | None = None) -> dict[str, Any]:
    """Return the current (or given) app's document, built once and kept."""
    target = app if app is not None else current_app._get_current_object()  # type: ignore[attr-defined]
    cached: tuple[dict[str, Any], str] | None = target.extensions.get(EXTENSION_KEY)
    if cached is None:
        spec = build_spec(target)
        cached = (spec, json.dumps(spec, indent=1))
        target.extensions[EXTENSION_KEY] = cached
    return cached[0]


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI 3.1 document of this API, generated from the code that serves it."""
    get_spec()
    text: str = current_app.extensions[EXTENSION_KEY][1]
    return Response(text, mimetype=JSON)


@bp.get("/docs")
def docs() -> Response:
    """Show the OpenAPI document as a page, rendered here: no script, no CDN, works offline."""
    page = render_template_string(DOCS_TEMPLATE, **_docs_context(get_spec()))
    return Response(page, mimetype=HTML)


# ---------------------------------------------------------------------------
# The docs page: the document turned into plain HTML on the server.


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref", "")
    return ref.rpartition("/")[2] if isinstance(ref, str) and ref else None


def describe(schema: dict[str, Any]) -> str:
    """Say in a few words what a schema accepts, as HTML (component names link)."""
    name = _ref_name(schema)
    if name is not None:
        return f'<a href="#schema-{html.escape(name)}">{html.escape(name)}</a>'
    if "anyOf" in schema:
        return " or ".join(describe(branch) for branch in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"<code>{html.escape(json.dumps(v))}</code>" for v in schema["enum"])
    if "const" in schema:
        return f"<code>{html.escape(json.dumps(schema['const']))}</code>"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {describe(schema.get('items', {}))}"
    words = [html.escape(str(kind))]
    if "format" in schema:
        words.append(f"({html.escape(schema['format'])})")
    for low, high, unit in (
        ("minLength", "maxLength", " chars"),
        ("minItems", "maxItems", " items"),
        ("minimum", "maximum", ""),
    ):
        if low in schema and high in schema:
            words.append(f"{schema[low]}–{schema[high]}{unit}")
        elif low in schema:
            words.append(f"≥ {schema[low]}{unit}")
        elif high in schema:
            words.append(f"≤ {schema[high]}{unit}")
    return " ".join(words)


def _fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    rows = []
    for name, field in schema.get("properties", {}).items():
        default = field.get("default")
        rows.append(
            {
                "name": name,
                "type": describe(field),
                "required": name in required,
                "default": None if "default" not in field else json.dumps(default),
                "description": inline(field.get("description", "")),
            }
        )
    return rows


def inline(text: str) -> str:
    """Escape text for HTML, turning `code` spans into <code> and schema names into links."""
    escaped = re.sub(r"``?([^`]+)``?", r"<code>\1</code>", html.escape(text))
    link = r'<a href="#schema-\1"><code>\1</code></a>'
    return re.sub(r"<code>([A-Z][a-z]\w*)</code>", link, escaped)


def _markdown(text: str) -> str:
    """Render the little Markdown the description uses: headings, tables, paragraphs, code."""
    out: list[str] = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("## "):
            out.append(f"<h3>{inline(lines[0][3:])}</h3>")
            lines = lines[1:]
            if not lines:
                continue
        if lines[0].startswith("|"):
            cells = [[inline(c.strip()) for c in line.strip("|").split("|")] for line in lines]
            head, body = cells[0], cells[2:]  # cells[1] is the |---| line
            rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
            heads = "".join(f"<th>{c}</th>" for c in head)
            out.append(f"<table><tr>{heads}</tr>{rows}</table>")
        else:
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _docs_context(spec: dict[str, Any]) -> dict[str, Any]:
    components = spec["components"]
    sections: dict[str, list[dict[str, Any]]] = {tag["name"]: [] for tag in spec["tags"]}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            responses = []
            for status, response in operation["responses"].items():
                name = _ref_name(response)
                if name is not None:
                    response = components["responses"][name]
                content: dict[str, Any] = response.get("content", {})
                media_types: list[tuple[str, dict[str, Any]]] = list(content.items())
                media_type, media = media_types[0] if media_types else ("", {})
                responses.append(
                    {
                        "status": status,
                        "description": inline(response["description"]),
                        "media_type": media_type,
                        "type": describe(media["schema"]) if media else "",
                    }
                )
            body = operation.get("requestBody", {}).get("content", {}).get(JSON)
            sections[operation["tags"][0]].append(
                {
                    "id": operation["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "summary": operation["summary"],
                    "description": inline(operation["description"]),
                    "parameters": [
                        {
                            **parameter,
                            "type": describe(parameter["schema"]),
                            "description": inline(parameter.get("description", "")),
                        }
                        for parameter in operation.get("parameters", [])
                    ],
                    "body": describe(body["schema"]) if body else None,
                    "responses": responses,
                }
            )
    schemas = [
        {
            "name": name,
            "description": inline(schema.get("description", "")),
            "fields": _fields(schema),
            "closed": schema.get("additionalProperties") is False,
        }
        for name, schema in components["schemas"].items()
    ]
    return {
        "info": spec["info"],
        "description": _markdown(spec["info"]["description"]),
        "tags": {tag["name"]: tag["description"] for tag in spec["tags"]},
        "sections": sections,
        "schemas": schemas,
        "secured": "security" in spec,
    }


DOCS_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ info.title }} API {{ info.version }}</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #222; }
  nav { position: fixed; top: 0; bottom: 0; width: 17rem; overflow-y: auto;
        padding: 1rem; background: #f5f5f7; border-right: 1px solid #ddd; font-size: 12px; }
  nav a { display: block; color: #333; text-decoration: none; padding: 1px 0;
          white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  nav h4 { margin: 1rem 0 .25rem; text-transform: uppercase; color: #777; }
  main { margin-left: 19rem; padding: 1rem 2rem 4rem; max-width: 60rem; }
  code { background: #f0f0f3; padding: 0 .25em; border-radius: 3px; }
  table { border-collapse: collapse; margin: .5rem 0; width: 100%; }
  th, td { text-align: left; border-bottom: 1px solid #e4e4e8; padding: .25rem .5rem;
           vertical-align: top; }
  th { font-weight: 600; background: #fafafa; }
  .op { border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; padding: .5rem 1rem; }
  .method { display: inline-block; min-width: 4.5em; font-weight: 700; font-family: monospace; }
  .GET { color: #0a6; } .POST { color: #06c; } .PUT, .PATCH { color: #b60; }
  .DELETE { color: #c22; }
  .path { font-family: monospace; font-size: 16px; }
  .muted { color: #777; }
</style>
</head>
<body>
<nav>
  <strong>{{ info.title }} {{ info.version }}</strong>
  <a href="openapi.json">openapi.json</a>
  {% for tag, ops in sections.items() %}
  <h4>{{ tag }}</h4>
  {% for op in ops %}<a href="#op-{{ op.id }}"><span class="method {{ op.method }}">{{
    op.method }}</span> {{ op.path.removeprefix('/api') or '/' }}</a>{% endfor %}
  {% endfor %}
  <h4>schemas</h4>
  {% for schema in schemas %}<a href="#schema-{{ schema.name }}">{{ schema.name }}</a>{% endfor %}
</nav>
<main>
<h1>{{ info.title }} API <small class="muted">{{ info.version }}, OpenAPI 3.1</small></h1>
<p>{{ info.summary }} The machine-readable document is
  <a href="openapi.json"><code>/api/openapi.json</code></a>.</p>
{{ description | safe }}
{% for tag, ops in sections.items() %}
<h2 id="tag-{{ tag }}">{{ tag }}</h2>
<p class="muted">{{ tags[tag] }}</p>
{% for op in ops %}
<section class="op" id="op-{{ op.id }}">
  <div><span class="method {{ op.method }}">{{ op.method }}</span>
    <span class="path">{{ op.path }}</span> — {{ op.summary }}</div>
  {% if op.description %}<p>{{ op.description | safe }}</p>{% endif %}
  {% if op.parameters %}
  <table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>
  {% for p in op.parameters %}<tr><td><code>{{ p.name }}</code>{% if p.required %} *{% endif
    %}</td><td>{{ p["in"] }}</td><td>{{ p.type | safe }}{% if "default" in p.schema %}, default
    <code>{{ p.schema.default }}</code>{% endif %}</td><td>{{ p.description | safe }}</td></tr>
  {% endfor %}</table>{% endif %}
  {% if op.body %}<p>Body (<code>application/json</code>): {{ op.body | safe }}</p>{% endif %}
  <table><tr><th>status</th><th>meaning</th><th>body</th></tr>
  {% for r in op.responses %}<tr><td>{{ r.status }}</td><td>{{ r.description | safe }}</td>
    <td>{{ r.type | safe }}{% if r.media_type %} <span class="muted">({{ r.media_type
    }})</span>{% endif %}</td></tr>
  {% endfor %}</table>
</section>
{% endfor %}
{% endfor %}
<h2>Schemas</h2>
{% for schema in schemas %}
<section class="op" id="schema-{{ schema.name }}">
  <strong>{{ schema.name }}</strong>{% if schema.closed %}
  <span class="muted">(no other fields accepted)</span>{% endif %}
  {% if schema.description %}<p>{{ schema.description | safe }}</p>{% endif %}
  <table><tr><th>field</th><th>type</th><th>default</th><th>description</th></tr>
  {% for f in schema.fields %}<tr><td><code>{{ f.name }}</code>{% if f.required %} *{% endif
    %}</td><td>{{ f.type | safe }}</td><td>{% if f.default is not none %}<code>{{ f.default
    }}</code>{% endif %}</td><td>{{ f.description | safe }}</td></tr>
  {% endfor %}</table>
</section>
{% endfor %}
<p class="muted">* required{% if secured %}. Every operation but health needs
  <code>Authorization: Bearer &lt;token&gt;</code>{% endif %}.</p>
</main>
</body>
</html>
"""
