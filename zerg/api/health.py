"""Liveness and database reachability, answered in front of Flask.

Load balancers probe ``GET /api/health`` several times a second per process,
and the answer never depends on the request: so a WSGI middleware answers it
before Flask builds a request context (which costs more than the probe itself:
see bench/README.md). The blueprint view stays for what the middleware hands
on: HEAD, preflights and, when CORS is on, requests that carry an Origin (the
CORS hook adds its headers there). Both give the same body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app

from zerg import db
from zerg.runner import get_runner

bp = Blueprint("health", __name__, url_prefix="/health")

PATH = "/api/health"
JSON_MIMETYPE = "application/json"
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def report(app: Flask) -> tuple[int, bytes]:
    """Return the status code and JSON body of a health check of ``app``."""
    instance = get_runner(app).instance_id
    if db.ping(app):
        return 200, _body("ok", "ok", instance)
    return 503, _body("degraded", "unavailable", instance)


def _body(status: str, database: str, instance: str) -> bytes:
    payload = {"status": status, "database": database, "instance": instance}
    return json.dumps(payload, separators=(",", ":")).encode()


@bp.get("")
def health() -> Response:
    """Report whether the process and its database answer (503 if the database does not)."""
    status, body = report(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(body, status=status, mimetype=JSON_MIMETYPE)


class HealthProbe:
    """WSGI middleware that answers plain ``GET /api/health`` without entering Flask."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        # With CORS on, a browser's probe needs the CORS hook's headers.
        self.pass_origin = bool(app.config["CORS_ORIGINS"])

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "GET"
            or (self.pass_origin and "HTTP_ORIGIN" in environ)
        ):
            return self.wsgi_app(environ, start_response)
        status, body = report(self.app)
        start_response(
            "200 OK" if status == 200 else "503 Service Unavailable",
            [("Content-Type", JSON_MIMETYPE), ("Content-Length", str(len(body)))],
        )
        return [body]


def init_app(app: Flask) -> None:
    """Put the health probe in front of the app's WSGI pipeline."""
    app.wsgi_app = HealthProbe(app, app.wsgi_app)  # type: ignore[method-assign]
