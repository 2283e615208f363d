"""Runs: history, status, cancelling, and deciding on the tool calls a run waits on."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint
from flask import Response

from zerg.api.idempotency import idempotent
from zerg.api.io import commit
from zerg.api.io import page_params
from zerg.api.io import parse_optional_body
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_rows
from zerg.api.operations import ViewT
from zerg.api.operations import conflict
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.api.operations import started
from zerg.db import get_db
from zerg.runs import approvals
from zerg.runs import domain as runs
from zerg.schemas import RunOut
from zerg.schemas import RunQuery
from zerg.schemas import ToolCallDecision
from zerg.schemas import ToolCallOut

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


def decision(summary: str, answer: str) -> Callable[[ViewT], ViewT]:
    """Describe a view deciding on a call the run awaits approval of."""
    return operation(
        "runs",
        summary,
        ok(ToolCallOut, answer),
        body=ToolCallDecision,
        body_required=False,
        also=(
            conflict(
                "The call was decided the other way already, never awaited approval, "
                "or its run no longer awaits approval."
            ),
        ),
    )


@bp.post("/<int:run_id>/tool-calls/<int:call_id>/approve")
@decision(
    "Approve a tool call the run awaits approval of",
    "The call, approved (`pending`, or further on if the run went on).",
)
@idempotent
def approve_tool_call(run_id: int, call_id: int) -> Response:
    """Approve a call (``call_id``: the call's ``id``); once none waits, the run resumes.

    Approving a call approved before answers it unchanged. The optional body
    gives a ``reason`` and who decided (``by``, recorded as ``decided_by``).
    """
    return _decide(run_id, call_id, approve=True)


@bp.post("/<int:run_id>/tool-calls/<int:call_id>/reject")
@decision(
    "Reject a tool call the run awaits approval of",
    "The call, `rejected`; the model is told, with the reason.",
)
@idempotent
def reject_tool_call(run_id: int, call_id: int) -> Response:
    """Reject a call (``call_id``: the call's ``id``); once none waits, the run resumes.

    The model is told ``rejected by a person: <reason>``. Rejecting a call
    rejected before answers it unchanged.
    """
    return _decide(run_id, call_id, approve=False)


def _decide(run_id: int, call_id: int, *, approve: bool) -> Response:
    body = parse_optional_body(ToolCallDecision)
    session = get_db(write=True)
    call = approvals.decide(
        session, run_id, call_id, approve=approve, reason=body.reason, by=body.by
    )
    return commit(respond(ToolCallOut, call))
