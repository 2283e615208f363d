"""Liveness and database reachability.

Probes are answered by the fast lane (zerg/api/fastlane.py) before Flask; this
view answers what the lane hands on (HEAD, preflights, requests with an Origin
when CORS is on), with the same body from :func:`report`.
"""

from __future__ import annotations

from functools import cache

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app

from zerg import db
from zerg.api.io import JSON_MIMETYPE
from zerg.api.io import dump_payload
from zerg.runner import get_runner

bp = Blueprint("health", __name__, url_prefix="/health")


def report(app: Flask) -> tuple[int, bytes]:
    """Return the status code and JSON body of a health check of ``app``."""
    instance = get_runner(app).instance_id
    if db.ping(app):
        return 200, _body("ok", "ok", instance)
    return 503, _body("degraded", "unavailable", instance)


@cache  # two bodies per process: probes need not build them again
def _body(status: str, database: str, instance: str) -> bytes:
    return dump_payload({"status": status, "database": database, "instance": instance})


@bp.get("")
def health() -> Response:
    """Report whether the process and its database answer (503 if the database does not)."""
    status, body = report(current_app)
    return Response(body, status=status, mimetype=JSON_MIMETYPE)
