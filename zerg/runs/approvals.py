"""Tool calls that wait for a person's yes, and the runs that wait with them.

When a round of a run's tool calls holds calls that need approval, the tool
loop stores them ``awaiting_approval`` and parks the run (:func:`park`): it
waits ``awaiting_approval``, holding its thread (no other run of the thread
starts) but no worker and no process, so that nothing is lost while nobody
answers, and no process's end ends it. A person approves or rejects each
call (:func:`decide`); calls nobody decided on by their deadline are rejected
(:func:`expire_overdue`, a scheduler job). Once no call of the run is left
waiting, the run is queued again and handed to this process's pool, whose
worker resumes it: it executes the approved calls and tells the model of the
rejected ones.

A waiting run may also end while it waits: a cancel, or a newer run's
``interrupt`` or ``rollback`` (:func:`end_waiting`). Every end of a run
answers its calls that have no result yet (:func:`close_open_calls`), so the
thread's history never holds a tool call without its ``role: "tool"``
message, which providers refuse. As for every change of a run's status, the
thread's lock is held first (:mod:`zerg.runs.states`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Select
from sqlalchemy import exists
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import conversations
from zerg.db import after_commit
from zerg.db import app_of
from zerg.db import load_row
from zerg.domain_errors import Conflict
from zerg.domain_errors import NotFound
from zerg.models import ID_MAX
from zerg.models import Run
from zerg.models import ThreadMessage
from zerg.models import ToolCall
from zerg.models import utcnow
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs.pool import get_runner
from zerg.runs.states import announce_run
from zerg.runs.states import announce_stream_end
from zerg.runs.states import lock_agent_of
from zerg.runs.states import lock_thread_of
from zerg.runs.states import record_end
from zerg.runs.states import transition
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import ToolCallOut
from zerg.schemas import serialize

WAITING = "awaiting_approval"
# Who decided, when no person did: the deadline passed, or the run ended first.
TIMEOUT = "timeout"
STOPPED = "stopped"
# Who decided, when the person did not say.
ANONYMOUS = "api"
# A call's statuses once it has its outcome; the others still owe one.
OUTCOMES = ("success", "error", "timeout", "rejected", "cancelled")
# What this module's frames say of a call, besides its ``call_id`` (its id).
FRAME_FIELDS = (
    "tool_call_id",
    "round",
    "position",
    "name",
    "function",
    "arguments",
    "status",
    "error",
    "approval_deadline",
    "decided_by",
    "decision_reason",
)

# What a tool message says when a call got no result of its own.
EMPTY_RESULT = "(the tool returned nothing)"

log = logging.getLogger(__name__)


def park(session: Session, run_id: int) -> bool:
    """Make a running run wait for the approval of its calls; False if it was stopped meanwhile.

    The tool loop calls it once the round's calls are stored, those needing
    approval ``awaiting_approval``; its worker then returns. The run loses
    its owner: no process holds a waiting run. A run that ended, or that was
    asked to stop (a cancel, a newer run) before this took the thread's lock,
    is not parked: the loop ends it as stopped. A call stored without an
    ``approval_deadline`` gets one TOOL_APPROVAL_TIMEOUT_SECONDS from now.
    """
    run = lock_thread_of(session, run_id)
    if run is None or run.status != "running" or run.stop_requested is not None:
        return False
    calls = awaiting(session, run_id)
    if not calls:
        raise ValueError(f"run {run_id} has no tool call awaiting approval to wait for")
    parked = transition(session, run_id, ("running",), WAITING, owner=None)
    if parked is None:
        return False
    seconds = app_of(session).config["TOOL_APPROVAL_TIMEOUT_SECONDS"]
    deadline = utcnow() + timedelta(seconds=seconds)
    for call in calls:
        if call.approval_deadline is None:
            call.approval_deadline = deadline
    session.flush()
    for call in calls:
        _announce_call(session, EventType.TOOL_CALL_APPROVAL_REQUIRED, parked, call)
    announce_run(session, parked)
    log.info("run %s awaits approval of %d tool call(s)", run_id, len(calls))
    return True


def awaiting(session: Session, run_id: int) -> list[ToolCall]:
    """Return the run's calls still waiting for a decision, in the order the model asked."""
    statement = (
        select(ToolCall)
        .where(ToolCall.run_id == run_id, ToolCall.status == WAITING)
        .order_by(ToolCall.round, ToolCall.position)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(statement))


def resuming(run: Run) -> bool:
    """Tell whether a run is queued to resume after its calls were decided (it began before)."""
    return run.status == "queued" and run.started_at is not None


def decide(
    session: Session,
    run_id: int,
    call_id: int,
    *,
    approve: bool,
    reason: str | None = None,
    by: str | None = None,
) -> ToolCall:
    """Approve or reject a call of a waiting run; once none waits, queue the run to resume.

    ``call_id`` is the call's own id (``ToolCall.id``). Deciding as the call
    was decided already changes nothing and returns it (a retry, also after
    the run went on); deciding the other way raises Conflict, and so does
    deciding on a call that never awaited approval or on a run that no longer
    waits. Raises NotFound for no such run, or no such call of it. A rejected
    call is announced as failed; an approved one waits ``pending`` for the
    resumed run to execute it.
    """
    run = lock_thread_of(session, run_id) if run_id <= ID_MAX else None
    if run is None:
        raise NotFound("Run", run_id)
    call = load_row(session, ToolCall, call_id)
    if call.run_id != run_id:
        raise NotFound("ToolCall", call_id)
    wanted = "approved" if approve else "rejected"
    if call.status != WAITING:
        earlier = decision_of(call)
        if earlier == wanted:
            return call
        if earlier is None:
            raise Conflict(f"Tool call {call_id} does not await approval (it is {call.status}).")
        raise Conflict(
            f"Tool call {call_id} was already {earlier} (by {call.decided_by}); "
            f"it cannot be {wanted} now."
        )
    if run.status != WAITING:
        raise Conflict(f"Run {run_id} is not awaiting approval (it is {run.status}).")
    decided = _record(session, run, call, approve, reason, by or ANONYMOUS)
    if decided is None:
        raise Conflict(f"Tool call {call_id} was decided meanwhile; ask again.")
    _resume_if_decided(session, run)
    return decided


def decision_of(call: ToolCall) -> str | None:
    """Say how a call was decided: ``approved``, ``rejected``, or None if it never was."""
    if call.decided_at is None:
        return None
    return "rejected" if call.status == "rejected" else "approved"


def has_overdue(session: Session, now: datetime) -> bool:
    """Tell whether :func:`expire_overdue` has work, reading only."""
    return session.scalar(select(exists(_overdue(now)))) is True


def expire_overdue(session: Session, now: datetime) -> int:
    """Reject the calls still waiting past their deadline; return how many.

    The model is told through its resumed run, as of any rejected call. The
    threads are locked in id order, the order every ender keeps.
    """
    found = session.execute(select(Run.thread_id, Run.id).where(Run.id.in_(_overdue(now))))
    seconds = app_of(session).config["TOOL_APPROVAL_TIMEOUT_SECONDS"]
    reason = f"no decision within {seconds:g} seconds (TOOL_APPROVAL_TIMEOUT_SECONDS)"
    rejected = 0
    for _thread_id, run_id in sorted((row[0], row[1]) for row in found):
        run = lock_thread_of(session, run_id)
        if run is None or run.status != WAITING:
            continue
        for call in awaiting(session, run_id):
            deadline = call.approval_deadline
            if deadline is not None and deadline <= now:
                if _record(session, run, call, False, reason, TIMEOUT) is not None:
                    rejected += 1
        _resume_if_decided(session, run)
    if rejected:
        log.info("rejected %d tool call(s) that nobody decided on in time", rejected)
    return rejected


def _overdue(now: datetime) -> Select[int]:
    """The ids of the waiting runs with a call whose deadline has passed."""
    return (
        select(ToolCall.run_id)
        .join(Run, Run.id == ToolCall.run_id)
        .where(
            ToolCall.status == WAITING,
            ToolCall.approval_deadline <= now,
            Run.status == WAITING,
        )
    )


def _record(
    session: Session, run: Run, call: ToolCall, approve: bool, reason: str | None, by: str
) -> ToolCall | None:
    """Store a decision on a waiting call; None if it was not waiting any more."""
    now = utcnow()
    values: dict[str, object] = {"decided_by": by, "decided_at": now, "decision_reason": reason}
    if approve:
        values["status"] = "pending"
    else:
        values |= {"status": "rejected", "finished_at": now}
    statement = (
        update(ToolCall)
        .where(ToolCall.id == call.id, ToolCall.status == WAITING)
        .values(**values)
        .returning(ToolCall)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    decided: ToolCall | None = session.scalars(statement).one_or_none()
    if decided is not None and not approve:
        decided.error = answer_text(decided)
        session.flush()
        _announce_call(session, EventType.TOOL_CALL_FAILED, run, decided)
    return decided


def _resume_if_decided(session: Session, run: Run) -> None:
    """Queue a waiting run with no call left to decide, and hand it to this process's pool."""
    if awaiting(session, run.id):
        return
    runner = get_runner(app_of(session))
    resumed = transition(session, run.id, (WAITING,), "queued", owner=runner.instance_id)
    if resumed is None:
        return
    announce_run(session, resumed)
    after_commit(session, partial(runner.submit, resumed.id))
    log.info("run %s: every tool call decided; queued to resume", run.id)


def end_waiting(
    session: Session,
    run: Run,
    status: str,
    error: str,
    *,
    stop: str,
    discard: bool = False,
) -> bool:
    """End a run awaiting approval at once (no worker holds it); False if it was not waiting.

    The caller holds the thread's lock and starts what follows (the thread's
    next run, a follow-up). ``stop`` is recorded as the run's
    ``stop_requested``: what ended it (``cancel``, ``interrupt``,
    ``rollback``). With ``discard`` (a rollback) the messages the run wrote
    are removed; otherwise each of its unanswered calls gets its ``role:
    "tool"`` message, and what it wrote stays.
    """
    lock_agent_of(session, run)
    now = utcnow()
    values: dict[str, object] = {"finished_at": now, "error": error, "stop_requested": stop}
    if run.started_at is not None:
        values["duration_ms"] = int((now - run.started_at).total_seconds() * 1000)
    ended = transition(session, run.id, (WAITING,), status, **values)
    if ended is None:
        return False
    end_stream(session, ended, error, discard=discard)
    announce_run(session, ended)
    record_end(session, ended)
    log.info("run %s ended %s while awaiting approval: %s", ended.id, ended.status, error)
    return True


def end_stream(session: Session, run: Run, error: str, *, discard: bool) -> None:
    """Finish what an ended run that had begun, and no worker holds, leaves open.

    With ``discard`` (a rollback) the messages it wrote are removed; its
    calls without a result are answered either way (:func:`close_open_calls`),
    then its watchers see its stream end.
    """
    removed = conversations.delete_run_messages(session, run.id) if discard else 0
    close_open_calls(session, run, error)
    announce_stream_end(session, run.thread_id, run.id, run.status, error, discarded=bool(removed))


def close_open_calls(session: Session, run: Run, reason: str) -> int:
    """Answer each call of an ended run that has no result message yet; return how many.

    A call still awaiting approval is rejected (decided by ``stopped``), one
    approved or running is cancelled, both for ``reason``; one decided or
    finished keeps its outcome. Each gets its ``role: "tool"`` message, so
    that the history the run leaves is one a provider accepts, unless the
    run's messages were removed (a rollback): then there is nothing to
    answer, and only the calls' statuses change. Safe to call on any end:
    calls already answered are left alone.
    """
    statement = (
        select(ToolCall)
        .where(ToolCall.run_id == run.id, ToolCall.tool_call_id.not_in(answered_ids(run.id)))
        .order_by(ToolCall.round, ToolCall.position)
        .execution_options(populate_existing=True)
    )
    calls = list(session.scalars(statement))
    if not calls:
        return 0
    wrote = select(exists().where(ThreadMessage.run_id == run.id))
    kept = session.scalar(wrote) is True
    now = utcnow()
    changed: list[ToolCall] = []
    for call in calls:
        if call.status == WAITING:
            call.status, call.decided_by, call.decided_at = "rejected", STOPPED, now
            call.decision_reason = reason
            call.error = answer_text(call)
        elif call.status not in OUTCOMES:
            call.status, call.error = "cancelled", f"cancelled: {reason}"
        else:
            continue
        call.finished_at = now
        changed.append(call)
    session.flush()
    for call in changed:
        _announce_call(session, EventType.TOOL_CALL_FAILED, run, call)
    for call in calls if kept else ():
        message = tool_message(call, answer_text(call))
        conversations.add_message(session, run.thread_id, message, processed=True, run_id=run.id)
    return len(calls)


def answered_ids(run_id: int) -> Select[str | None]:
    """The ids of the run's calls that have their ``role: "tool"`` message, as a subquery.

    NULLs are left out: one in a ``NOT IN`` list would make it match nothing.
    """
    return select(ThreadMessage.tool_call_id).where(
        ThreadMessage.run_id == run_id,
        ThreadMessage.role == "tool",
        ThreadMessage.tool_call_id.is_not(None),
    )


def tool_message(call: ToolCall, content: str) -> ThreadMessageCreate:
    """The ``role: "tool"`` message that answers a call, saying so when it has nothing to say."""
    return ThreadMessageCreate(
        role="tool",
        content=content or EMPTY_RESULT,
        tool_call_id=call.tool_call_id,
        name=call.function or None,
    )


def answer_text(call: ToolCall) -> str:
    """Write what the model is told of a call that did not run, or of its outcome.

    A rejection says who refused and why: ``rejected by a person: <reason>``,
    or ``rejected: <reason>`` when nobody decided in time or the run ended
    first. The tool loop tells the model of its resumed run's rejected calls
    in these words too.
    """
    if call.status == "rejected":
        if call.decided_by in (TIMEOUT, STOPPED):
            return f"rejected: {call.decision_reason}"
        return f"rejected by a person: {call.decision_reason or 'no reason given'}"
    if call.status == "cancelled":
        return call.error or "cancelled: the run ended first"
    if call.status == "success":
        return call.result or ""
    return f"{call.status}: {call.error or 'no result'}"


def call_frame(kind: EventType, thread_id: int, call: ToolCall, **extra: Any) -> events.Event:
    """A frame about a stored call, named as every tool-call frame is, with ``extra`` fields."""
    data = serialize(ToolCallOut, call)
    fields = {name: data[name] for name in FRAME_FIELDS}
    return events.stream_event(kind, thread_id, call.run_id, call_id=data["id"], **fields, **extra)


def _announce_call(session: Session, kind: EventType, run: Run, call: ToolCall) -> None:
    """Announce a call's new state on its thread's stream."""
    events.announce(session, call_frame(kind, run.thread_id, call))
