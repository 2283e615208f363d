"""Runs: history, status, and cancelling."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from sqlalchemy import select

from zerg import events
from zerg.api.io import get_or_404
from zerg.api.io import paginate
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_json
from zerg.api.io import respond_list
from zerg.db import get_db
from zerg.errors import Conflict
from zerg.models import Run
from zerg.models import utcnow
from zerg.runner import ACTIVE
from zerg.runner import get_runner
from zerg.schemas import RunOut
from zerg.schemas import RunQuery
from zerg.schemas import serialize

bp = Blueprint("runs", __name__, url_prefix="/runs")


@bp.get("")
def list_runs() -> Response:
    """List runs, newest first, optionally of one agent, thread or status."""
    query = parse_query(RunQuery)
    statement = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
    if query.agent_id is not None:
        statement = statement.where(Run.agent_id == query.agent_id)
    if query.thread_id is not None:
        statement = statement.where(Run.thread_id == query.thread_id)
    if query.status is not None:
        statement = statement.where(Run.status == query.status)
    return respond_list(RunOut, list(get_db().scalars(paginate(statement, query))))


@bp.get("/<int:run_id>")
def get_run(run_id: int) -> Response:
    """Return one run."""
    return respond(RunOut, get_or_404(get_db(), Run, run_id, "Run"))


@bp.post("/<int:run_id>/cancel")
def cancel_run(run_id: int) -> Response:
    """Cancel a run: a queued one at once (200), a running one when its stream stops (202)."""
    session = get_db()
    run = get_or_404(session, Run, run_id, "Run")
    if run.status not in ACTIVE:
        raise Conflict(f"Run {run_id} has already finished ({run.status}).")
    if run.status == "queued":
        run.status, run.finished_at = "cancelled", utcnow()
        run.error = "cancelled before it started"
        session.commit()
        payload = serialize(RunOut, run)
        events.publish(events.run_updated(payload))
        return respond_json(payload)
    if not get_runner().cancel(run_id):
        raise Conflict(f"Run {run_id} is running in another process; cancel it there.")
    return respond_json(serialize(RunOut, run), 202)
