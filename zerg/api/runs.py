"""Runs: history, status, and cancelling."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg.api.io import page_params
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_rows
from zerg.api.operations import conflict
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.api.operations import started
from zerg.db import get_db
from zerg.runs import domain as runs
from zerg.schemas import RunOut
from zerg.schemas import RunQuery

bp = Blueprint("runs", __name__, url_prefix="/runs")


@bp.get("")
@operation("runs", "List runs", ok(RunOut, "Runs, newest first.", many=True), query=RunQuery)
def list_runs() -> Response:
    """List runs, newest first, optionally of one agent, thread or status, or matching ``q``."""
    query = parse_query(RunQuery)
    skip, limit = page_params(query)
    rows = runs.list_runs(
        get_db(),
        agent_id=query.agent_id,
        thread_id=query.thread_id,
        status=query.status,
        trigger=query.trigger,
        q=query.q,
        skip=skip,
        limit=limit,
    )
    return respond_rows(RunOut, rows)


@bp.get("/<int:run_id>")
@operation("runs", "Get a run", ok(RunOut))
def get_run(run_id: int) -> Response:
    """Return one run."""
    return respond(RunOut, runs.load_run(get_db(), run_id))


@bp.post("/<int:run_id>/cancel")
@operation(
    "runs",
    "Cancel a run",
    ok(RunOut, "The run was queued and is now cancelled."),
    also=(
        started("Accepted: the running run stops at its next streamed piece."),
        conflict("The run has already finished."),
    ),
)
def cancel_run(run_id: int) -> Response:
    """Cancel a run: a queued one at once (200), a running one when its stream stops (202)."""
    session = get_db(write=True)
    run, over = runs.cancel_run(session, run_id)
    session.commit()
    return respond(RunOut, run, 200 if over else 202)
