"""One error format for every failure: RFC 9457 problem details."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Iterable
from http import HTTPStatus
from typing import IO
from typing import Any

import click
from flask import Flask
from flask import Response
from flask import json
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

PROBLEM_MIMETYPE = "application/problem+json"
# What a 503 tells clients to wait before retrying while the database is away.
RETRY_AFTER_SECONDS = 5
# SQLite: another writer kept the database past the busy timeout, or the file cannot be opened.
SQLITE_UNAVAILABLE = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN"})
SQLITE_UNAVAILABLE_TEXT = ("database is locked", "unable to open database file")
# PostgreSQL states that say the server or the connection went away, not the statement:
# class 08 (connection exception), admin/crash shutdown, cannot connect now, too many clients.
POSTGRES_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})

log = logging.getLogger(__name__)


class StartupError(click.ClickException):
    """A setting or the database stops zerg from starting; one line says why.

    A click exception, so that every ``flask`` command (Flask builds the app
    inside click) prints it as that line and exits 1, without a traceback;
    ``wsgi.py`` and ``gunicorn.conf.py`` call :meth:`show` the same way.
    """

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"zerg: {self.format_message()}", file=file, err=True)


class APIError(Exception):
    """An error a view raises on purpose; it becomes a problem response."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


class DatabaseUnreachable(Exception):
    """Raised by zerg's own code for a database that cannot be reached: a request gets 503."""


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update(extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers.update(headers or {})
    return response


def validation_errors(exc: ValidationError, prefix: str | None = None) -> list[dict[str, Any]]:
    """Turn pydantic's errors into ``{loc, msg, type}`` items, rooted at ``prefix`` (body, query).

    A validator's own ValueError is the message as the validator wrote it:
    pydantic would put "Value error, " in front of it.
    """
    root = [prefix] if prefix is not None else []
    return [
        {
            "loc": [*root, *error["loc"]],
            "msg": str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]


def unprocessable(errors: Iterable[dict[str, Any]]) -> APIError:
    """Return the 422 error for a list of validation errors."""
    return APIError(422, "The request failed validation.", errors=list(errors))


def api_problem(exc: APIError) -> Response:
    """Answer an error a view raised on purpose."""
    return problem(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)


def http_problem(exc: HTTPException) -> Response:
    """Answer one of werkzeug's HTTP errors (404, 405, ...) as a problem."""
    status = exc.code or 500
    # Keep headers such as 405's Allow; the body's type is ours.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    detail = exc.description or HTTPStatus(status).phrase
    if isinstance(exc, WebsocketMismatch):
        detail = "This URL speaks WebSocket only: connect with a websocket client."
    return problem(status, detail, headers=headers)


def database_unavailable(exc: BaseException) -> bool:
    """Tell whether an error means the database cannot be reached now, rather than a bug.

    A connection that broke (SQLAlchemy marks it invalidated), no connection
    free in the pool in time, SQLite locked past its busy timeout or unable
    to open its file, a PostgreSQL server that refuses or drops connections.
    A statement that fails for what it says (a constraint, a missing table)
    is not an outage.
    """
    if isinstance(exc, PoolTimeout | DatabaseUnreachable):
        return True
    cause: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        cause = exc.orig
    if isinstance(cause, sqlite3.OperationalError):
        name = getattr(cause, "sqlite_errorname", None)
        return name in SQLITE_UNAVAILABLE or str(cause).startswith(SQLITE_UNAVAILABLE_TEXT)
    # psycopg's errors carry the server's SQLSTATE; one raised by the client
    # itself (the connection failed or is closed) has none.
    if not hasattr(cause, "sqlstate"):
        return False
    state: str | None = getattr(cause, "sqlstate", None)
    if state is None:
        kinds = {cls.__name__ for cls in type(cause).__mro__}
        return bool(kinds & {"OperationalError", "InterfaceError"})
    return state.startswith("08") or state in POSTGRES_UNAVAILABLE


def unavailable(exc: BaseException) -> Response:
    """Answer 503 with Retry-After for a database that does not answer; log one line."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    log.warning("database unavailable: %s: %s", type(cause).__name__, first_line)
    # A full pool is busy, not broken: say which, for whoever reads the logs and the body.
    if isinstance(exc, PoolTimeout):
        detail = "The server has no database connection free; retry in a few seconds."
    else:
        detail = "The database is not answering; retry in a few seconds."
    return problem(503, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def unexpected_error(exc: Exception) -> Response:
    """Log an unexpected error under a new request id and answer 500 with that id.

    Flask calls it for whatever a view raises; the fast lane for what fails
    after it has committed, which it can no longer hand to Flask. A database
    that does not answer is no bug: 503, with Retry-After.
    """
    if isinstance(exc, HTTPException):
        return http_problem(exc)
    if database_unavailable(exc):
        return unavailable(exc)
    request_id = uuid.uuid4().hex
    log.exception("unhandled error, request id %s", request_id)
    return problem(
        500,
        f"The server failed to handle the request. Quote request id {request_id}.",
        extra={"request_id": request_id},
        headers={"X-Request-ID": request_id},
    )


def init_app(app: Flask) -> None:
    """Route every error, Flask's own included, through the problem format."""
    app.register_error_handler(APIError, api_problem)
    app.register_error_handler(HTTPException, http_problem)
    app.register_error_handler(Exception, unexpected_error)
