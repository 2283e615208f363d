"""Liveness and database reachability."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import db
from zerg.api.io import respond
from zerg.runner import get_runner
from zerg.schemas import HealthOut

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("")
def health() -> Response:
    """Report whether the process and its database answer (503 if the database does not)."""
    instance = get_runner().instance_id
    if db.ping():
        return respond(HealthOut, {"status": "ok", "database": "ok", "instance": instance})
    body = {"status": "degraded", "database": "unavailable", "instance": instance}
    return respond(HealthOut, body, 503)
