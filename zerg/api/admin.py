"""Development tooling. Registered only when ENVIRONMENT=development."""

from __future__ import annotations

import re
import threading
from collections import Counter

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify

from zerg import db
from zerg import migrate
from zerg.api.io import respond
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.realtime.hub import get_hub
from zerg.runs.pool import get_runner
from zerg.schemas import ResetOut
from zerg.schemas import StatsOut

bp = Blueprint("admin", __name__, url_prefix="/admin")

# "zerg-ws-writer-3f2a", "zerg-run_0", "ThreadPoolExecutor-0_12" -> their kind.
_THREAD_SUFFIX = re.compile(r"([-_][0-9a-f]+)+$")


@bp.post("/reset-database")
@operation("admin", "Drop and recreate every table (development only)", ok(ResetOut))
def reset_database() -> Response:
    """Drop every table and migrate an empty database to head."""
    migrate.reset(current_app)
    return jsonify(message="Database reset: all tables dropped and recreated.")


@bp.get("/stats")
@operation(
    "admin",
    "This process's pool, threads, websockets and runs (development only)",
    ok(StatsOut),
    database=False,
)
def stats() -> Response:
    """Report this process's connections, threads, websockets and runs.

    What a load test checks once the load stops: nothing checked out of the
    pool, no websocket writer or run thread left over. Threads are counted by
    kind (their name without its number); gunicorn's own request threads
    ("ThreadPoolExecutor") stay once started, up to its ``threads`` setting.
    """
    checked_out, connections = db.pool_stats()
    kinds = Counter(_THREAD_SUFFIX.sub("", thread.name) for thread in threading.enumerate())
    body = {
        "pool": {"checked_out": checked_out, "open": connections},
        "threads": {"total": sum(kinds.values()), "by_kind": dict(sorted(kinds.items()))},
        "websockets": get_hub().stats(),
        "runs_in_flight": get_runner().in_flight(),
    }
    return respond(StatsOut, body)
