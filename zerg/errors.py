"""One error format for every failure: RFC 9457 problem details."""

from __future__ import annotations

import logging
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
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import WebsocketMismatch

PROBLEM_MIMETYPE = "application/problem+json"
# What a 503 tells clients to wait before retrying when no database connection is free.
RETRY_AFTER_SECONDS = 5

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


class NotFound(APIError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(404, f"{what} {ident} not found")


class Conflict(APIError):
    def __init__(self, detail: str) -> None:
        super().__init__(409, detail)


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


def validation_errors(exc: ValidationError, prefix: str) -> list[dict[str, Any]]:
    """Turn pydantic's errors into ``{loc, msg, type}`` items rooted at body/query."""
    return [
        {"loc": [prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def unprocessable(errors: Iterable[dict[str, Any]]) -> APIError:
    """Return the 422 error for a list of validation errors."""
    return APIError(422, "The request failed validation.", errors=list(errors))


def _handle_api_error(exc: APIError) -> Response:
    return problem(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    # Keep headers such as 405's Allow; the body's type is ours.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    detail = exc.description or HTTPStatus(status).phrase
    if isinstance(exc, WebsocketMismatch):
        detail = "This URL speaks WebSocket only: connect with a websocket client."
    return problem(status, detail, headers=headers)


def unexpected_error(exc: Exception) -> Response:
    """Log an unexpected error under a new request id and answer 500 with that id.

    Flask calls it for whatever a view raises; the fast lane for what fails
    after it has committed, which it can no longer hand to Flask.
    """
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    if isinstance(exc, PoolTimeout):
        # Every connection stayed taken for DATABASE_POOL_TIMEOUT: busy, not broken.
        log.warning("no database connection free in time: %s", exc)
        return problem(
            503,
            "The server has no database connection free; retry in a few seconds.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
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
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, unexpected_error)
