"""Liveness, database reachability, and whether events reach their watchers."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import db
from zerg.api.io import respond_json
from zerg.errors import RETRY_AFTER_SECONDS
from zerg.realtime import events
from zerg.runs.pool import get_runner

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("")
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
