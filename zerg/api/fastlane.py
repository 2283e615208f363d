"""The fast lane: the hottest requests' ordinary case, answered in front of Flask.

Flask's request machinery (request and app contexts, URL adapter, session
interface, response object, hooks) costs more than the work of a health
probe, of reading one agent or of adding one message: on one gunicorn worker a
one-route Flask app reaches 0.60 of a bare WSGI app's requests/s, which left
no room for the database work in those routes (bench/README.md). So a WSGI
middleware answers these three when they are ordinary:

- ``GET /api/health``;
- ``GET /api/agents/{id}`` for an agent that exists;
- ``POST /api/threads/{id}/messages`` with a valid body, to a thread that exists.

Everything else goes to Flask untouched, and so does anything the lane is not
sure of: a token that does not match (Flask answers 401), an Origin when CORS
is on (Flask adds the headers), an id it would have to interpret, a body it
cannot validate or that is too large, a row that is not there (Flask answers
the problem document). A request the lane hands on has had nothing written,
so Flask answering it from scratch is always safe; an error inside the lane's
work is handed on the same way, and Flask meets it again and answers 500 with
its request id. Only a failure after a commit (publishing the new message's
event) cannot be handed on: the lane answers it with the same 500 problem.

The work itself is shared with the Flask views (``report``, ``AGENT``,
``add_message``), so the two cannot drift apart; ``tests/test_fastlane.py``
sends the same requests with the lane on and off. ``FAST_LANE=false`` turns
it off.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from collections.abc import Iterable
from functools import cache
from http import HTTPStatus
from typing import Any

from flask import Flask
from pydantic import ValidationError

from zerg import auth
from zerg.api import agents
from zerg.api import health
from zerg.api import threads
from zerg.api.io import JSON_MIMETYPE
from zerg.api.io import dump
from zerg.api.io import dump_payload
from zerg.errors import unexpected_error
from zerg.schemas import ID_MAX
from zerg.schemas import AgentOut
from zerg.schemas import ThreadMessageCreate
from zerg.statements import reading
from zerg.statements import writing

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Answer = tuple[int, bytes]


HEALTH_PATHS = frozenset({"/api/health", "/api/health/"})


@cache
def _status_line(status: int) -> str:
    """Spell a status line as werkzeug does ("201 CREATED")."""
    return f"{status} {HTTPStatus(status).phrase.upper()}"


def _id(segment: str) -> int | None:
    """Read a path id the way only one spelling can mean it; None means "ask Flask"."""
    if segment.isascii() and segment.isdigit() and segment[0] != "0" and len(segment) <= 19:
        ident = int(segment)
        return ident if ident <= ID_MAX else None
    return None


class FastLane:
    """WSGI middleware that answers a few hot requests' ordinary case before Flask."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.token: str | None = app.config["API_TOKEN"] or None
        self.cors = bool(app.config["CORS_ORIGINS"])
        self.max_body: int | None = app.config["MAX_CONTENT_LENGTH"]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            answer = self.answer(environ)
        except Exception as exc:  # only after a commit: anything earlier goes to Flask
            return unexpected_error(exc)(environ, start_response)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        status, body = answer
        start_response(
            _status_line(status),
            [("Content-Type", JSON_MIMETYPE), ("Content-Length", str(len(body)))],
        )
        return [body]

    def answer(self, environ: dict[str, Any]) -> Answer | None:
        """Answer the request, or return None to hand it to Flask."""
        if self.cors and "HTTP_ORIGIN" in environ:
            return None
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
        if method == "GET" and path in HEALTH_PATHS:
            return health.report(self.app)
        parts = path.split("/")
        if parts[-1] == "" and len(parts) > 2:  # Flask answers "/x/" as "/x"
            parts.pop()
        if method == "GET" and len(parts) == 4 and parts[:3] == ["", "api", "agents"]:
            agent_id = _id(parts[3])
            if agent_id is not None and self._authorised(environ):
                return self._get_agent(agent_id)
        elif (
            method == "POST"
            and len(parts) == 5
            and parts[:3] == ["", "api", "threads"]
            and parts[4] == "messages"
        ):
            thread_id = _id(parts[3])
            if thread_id is not None and self._authorised(environ):
                return self._add_message(environ, thread_id)
        return None

    def _authorised(self, environ: dict[str, Any]) -> bool:
        if self.token is None:
            return True
        given = auth.bearer_token(environ.get("HTTP_AUTHORIZATION", ""))
        return auth.token_matches(given, self.token)

    def _get_agent(self, agent_id: int) -> Answer | None:
        try:
            with reading(self.app) as connection:
                row = agents.AGENT.first(connection, id=agent_id)
        except Exception:
            log.debug("fast lane: handing GET agent %s to Flask", agent_id, exc_info=True)
            return None
        return None if row is None else (200, dump(AgentOut, row))

    def _add_message(self, environ: dict[str, Any], thread_id: int) -> Answer | None:
        raw = self._read_body(environ)
        if raw is None:
            return None
        try:
            body = ThreadMessageCreate.model_validate_json(raw)
        except ValidationError:
            return None
        try:
            with writing(self.app) as connection:
                row = threads.add_message(connection, thread_id, body)
        except Exception:
            log.debug("fast lane: handing POST to thread %s to Flask", thread_id, exc_info=True)
            return None
        if row is None:  # no such thread: nothing was written
            return None
        return 201, dump_payload(threads.announce_message(row, self.app))

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """Read a body of declared, allowed length, leaving a copy for Flask; None if not."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None  # chunked or absent: Flask decides
        if length < 0 or (self.max_body is not None and length > self.max_body):
            return None
        raw: bytes = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        return raw


def init_app(app: Flask) -> None:
    """Put the fast lane in front of the app's WSGI pipeline (unless FAST_LANE is off)."""
    if app.config["FAST_LANE"]:
        app.wsgi_app = FastLane(app, app.wsgi_app)  # type: ignore[method-assign]
