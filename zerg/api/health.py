"""Liveness and database reachability."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import db
from zerg.api.io import respond_json
from zerg.errors import RETRY_AFTER_SECONDS
from zerg.runs.pool import get_runner

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("")
def health() -> Response:
    """Report whether the process and its database answer (503 if the database does not)."""
    reachable = db.ping(db.get_db())
    body = {
        "status": "ok" if reachable else "degraded",
        "database": "ok" if reachable else "unavailable",
        # Which serving process answered: the id it stamps on the runs it owns.
        "instance": get_runner().instance_id,
    }
    response = respond_json(body, 200 if reachable else 503)
    if not reachable:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
