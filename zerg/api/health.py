"""Liveness, database reachability, and whether events reach their watchers."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import db
from zerg.api.io import respond_json
from zerg.api.operations import Reply
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.errors import RETRY_AFTER_SECONDS
from zerg.realtime import events
from zerg.runs.pool import get_runner
from zerg.schemas import HealthOut

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("")
@operation(
    "health",
    "Check health",
    ok(HealthOut, "The process and its database answer (the event bus may not)."),
    also=(Reply(503, "The database does not answer (with `Retry-After`).", HealthOut),),
)
def health() -> Response:
    """Report whether the process, its database and its event bus answer.

    Only the database fails the check (503): without the bus, requests and
    runs still work and their events wait for it, so a load balancer must
    not take every worker out of service for a Redis outage.
    """
    reachable = db.ping(db.get_db())
    events_ok = events.get_bus().available()
    body = {
        "status": "ok" if reachable and events_ok else "degraded",
        "database": "ok" if reachable else "unavailable",
        "events": "ok" if events_ok else "unavailable",
        # Which serving process answered: the id it stamps on the runs it owns.
        "instance": get_runner().instance_id,
    }
    response = respond_json(body, 200 if reachable else 503)
    if not reachable:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
