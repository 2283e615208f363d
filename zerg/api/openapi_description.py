"""The prose of the OpenAPI document: its tags, its generic errors, and its description.

Kept apart from the generator because it is text, not logic; what it says of
the websocket is generated from ``zerg.api.websocket.HANDLERS``, so a new
frame type cannot go unmentioned.
"""

from __future__ import annotations

from pydantic import BaseModel

from zerg import schemas as s
from zerg.api import websocket
from zerg.api.idempotency import REPLAYED_HEADER

TAGS = {
    "agents": "Agents: instructions, a model, an optional cron schedule.",
    "threads": "Conversations with one agent, and their messages.",
    "tools": "The tools agents may be given: built-in ones and MCP servers' (`GET /api/tools`).",
    "mcp-servers": "MCP servers whose tools agents may call; `env` and `headers` are write-only.",
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
        "The database does not answer, or the server is starting as many runs as it may; "
        "retry later.",
        s.Problem,
        {"Retry-After": "Seconds to wait before retrying."},
    ),
}


def websocket_section() -> str:
    """Describe the websocket protocol, which OpenAPI cannot, from its handlers."""
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
before the next one's `stream_start`. A run's tool calls stream between them,
each frame naming the call (`thread_id`, `run_id`, `tool_call_id`, the model's id
for it, `name`, the agent's tool entry, and `function`, the name the model saw):
`tool_call_started` (with `round` and `position`) on the call's first piece,
`tool_call_arguments_delta` (`arguments`: the next piece of its JSON text),
`tool_call_approval_required` when it waits for a person (`call_id`,
`arguments`, `approval_deadline`), then `tool_call_completed` (`call_id`,
`status` `success`, `result`, `truncated`, `duration_ms`) or `tool_call_failed`
(`call_id`, `status` `error`, `timeout`, `rejected` or `cancelled`, `error`);
`GET /api/runs/{{id}}/tool-calls` lists them as stored. Event relays `{{"type": ...,
"data": ...}}` for `agent_created`, `agent_updated`, `agent_deleted`,
`thread_created`, `thread_updated`, `thread_deleted` and `run_updated`, each with
an `event_id`. A bad frame gets `{{"type": "error", "message_id": ..., "error":
<text>, "details": <object or null>}}` and the connection stays open; a client
too slow to read its queue is dropped.
"""


def description(secured: bool, page_cap: int, ttl: int) -> str:
    """Write the document's description for the app as configured."""
    token = (
        "This server requires it: every route but `/api/health` (this document and "
        "`/api/docs` included) needs `Authorization: Bearer <token>`."
        if secured
        else "This server has no token configured, so every route is open."
    )
    return f"""zerg's HTTP API: agents, the threads in which you talk to them, and the
runs that answer. JSON in and out, under `/api`.

## Creating

A `201` names what it created in its `Location` header (a path); a run's `202`
names the run, which `GET /api/runs/{{id}}` follows until it ends.

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
(`ServerProblem`). 503: the database does not answer, or (for a request that
queues a run) the server is starting as many runs as it may; retry after the
`Retry-After` seconds. A refused request writes nothing.

## Retrying safely

The `POST`s that create something (an agent, a thread, a message, a run), and the
decisions on a run's tool calls, take an `Idempotency-Key` header (1 to 255
printable ASCII characters; the IETF draft of that name). The first request with
a key runs, and its response, if a success, is kept with the key for {ttl}
seconds, in the same transaction as the work. A retry with the same key,
path and body gets that response again (its `Location` too) with
`{REPLAYED_HEADER}: true`, and changes
nothing. The same key with another path or body: 422. A retry while the first is
still being processed: 409 (retry later). An error response is not kept: the work
rolled back, so a retry runs again. Keys are scoped to the bearer token.

## Authentication

When `API_TOKEN` is set, requests need `Authorization: Bearer <token>`. {token}

{websocket_section()}"""
