"""A run's tool calls as the tool loop stores them: a round of them, and each result.

A model reply that calls tools is one *round*: the assistant message with
its ``tool_calls`` and one ``tool_calls`` row per call are stored together
(:func:`store_round`); each call then runs with no session held and its
result is stored with the ``role: "tool"`` message that answers it
(:func:`record_result`). A result is stored only over a call still
``running``: whatever ends a run first answers its calls that have none
(:func:`zerg.runs.approvals.close_open_calls`), and a late result is then
dropped, so no call ever has two answers, and none is left without one. The
frame a watcher sees for a call that ended goes out after the commit that
stored it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import conversations
from zerg.db import app_of
from zerg.db import fetch_rows
from zerg.db import load_row
from zerg.models import Run
from zerg.models import ToolCall
from zerg.models import utcnow
from zerg.providers.base import ToolCall as RequestedCall
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import approvals
from zerg.schemas import ThreadMessageCreate
from zerg.tools.registry import BUILTIN_SOURCE
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import ToolResult

_calls = cast(Table, ToolCall.__table__)


@dataclass(frozen=True)
class Call:
    """A stored call about to run: its row's id and what the registry and the frames need."""

    id: int
    run_id: int
    tool_call_id: str
    round: int
    position: int
    name: str
    function: str
    arguments: str


@dataclass(frozen=True)
class Outcome:
    """What running a call gave: the registry's result, when it started, how long it took."""

    result: ToolResult
    started_at: datetime
    duration_ms: int


@dataclass(frozen=True)
class Round:
    """A stored round: the calls to run now, the answers already given, whether any waits.

    ``answers`` are the tool messages (Chat Completions shape) of calls
    answered as they were stored (an unknown function), by position.
    ``waiting``: a call needs a person's approval; the calls in ``runnable``
    then stay ``pending`` and run when the run resumes.
    """

    runnable: list[Call]
    answers: dict[int, dict[str, Any]]
    waiting: bool
    # The reply as the model sees it again: its text and its calls.
    message: dict[str, Any]


def _chat_call(call: RequestedCall) -> dict[str, Any]:
    """A requested call as an assistant message's ``tool_calls`` entry."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def store_round(
    session: Session,
    *,
    run_id: int,
    thread_id: int,
    round_: int,
    text: str,
    requested: Sequence[RequestedCall],
    registry: ToolRegistry,
) -> Round:
    """Store a reply that calls tools: its message, one row per call; return what runs now.

    A call of a function the run does not offer is answered at once with an
    error the model can read. A call of a tool that requires approval waits
    ``awaiting_approval`` until its deadline; while any does, the round's
    other calls wait ``pending``. Otherwise they are stored ``running``.
    """
    calls = [_chat_call(call) for call in requested]
    reply = ThreadMessageCreate(role="assistant", content=text, tool_calls=calls)
    conversations.add_message(session, thread_id, reply, processed=True, run_id=run_id)
    now = utcnow()
    timeout = app_of(session).config["TOOL_APPROVAL_TIMEOUT_SECONDS"]
    tools = [registry.get(call.name) for call in requested]
    waiting = any(tool is not None and tool.requires_approval for tool in tools)
    rows: list[ToolCall] = []
    for position, (call, tool) in enumerate(zip(requested, tools, strict=True)):
        entry = registry.entry_for(call.name) if tool is not None else call.name
        row = ToolCall(
            run_id=run_id,
            tool_call_id=call.id,
            round=round_,
            position=position,
            name=entry[:255],
            function=call.name[:64],
            source=(tool.source if tool is not None else BUILTIN_SOURCE)[:255],
            arguments=call.arguments,
            requires_approval=tool is not None and tool.requires_approval,
        )
        if tool is None:
            row.status, row.error = "error", f"unknown tool {call.name!r}"
            row.started_at = row.finished_at = now
            row.duration_ms = 0
        elif tool.requires_approval:
            row.status = "awaiting_approval"
            row.approval_deadline = now + timedelta(seconds=timeout)
        elif waiting:
            row.status = "pending"
        else:
            row.status, row.started_at = "running", now
        rows.append(row)
    session.add_all(rows)
    session.flush()
    answers: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.status == "error":
            answers[row.position] = _answer(session, thread_id, row, row.error or "", "error")
    runnable = [_call_of(row) for row in rows if row.status in ("running", "pending")]
    return Round(
        runnable=runnable if not waiting else [],
        answers=answers,
        waiting=waiting,
        message={"role": "assistant", "content": text or None, "tool_calls": calls},
    )


def record_result(
    session: Session, thread_id: int, call: Call, outcome: Outcome
) -> dict[str, Any] | None:
    """Store a call's result and its tool message; return the message, or None if it had ended.

    A call something else ended first (the run's end cancelled it) keeps
    that end: its late result is dropped.
    """
    result = outcome.result
    status = "timeout" if result.timed_out else "error" if result.is_error else "success"
    values: dict[str, Any] = {
        "status": status,
        "truncated": result.truncated,
        "started_at": outcome.started_at,
        "finished_at": utcnow(),
        "duration_ms": outcome.duration_ms,
    }
    values["error" if result.is_error else "result"] = result.content
    statement = (
        update(ToolCall)
        .where(ToolCall.id == call.id, ToolCall.status == "running")
        .values(**values)
        .returning(ToolCall)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    row = session.scalars(statement).one_or_none()
    if row is None:
        return None
    return _answer(session, thread_id, row, result.content, status)


def start_pending(session: Session, run_id: int) -> list[Call]:
    """Mark a resumed run's approved calls (``pending``) running; return them to run."""
    statement = (
        update(ToolCall)
        .where(ToolCall.run_id == run_id, ToolCall.status == "pending")
        .values(status="running", started_at=utcnow())
        .returning(ToolCall)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    rows = sorted(session.scalars(statement), key=lambda row: (row.round, row.position))
    return [_call_of(row) for row in rows]


def last_round(session: Session, run_id: int) -> int:
    """The number of the run's last round of calls; 0 if it made none."""
    statement = select(func.max(ToolCall.round)).where(ToolCall.run_id == run_id)
    return int(session.scalar(statement) or 0)


def used_ids(session: Session, run_id: int) -> set[str]:
    """The ids of the calls the run has made."""
    return set(session.scalars(select(ToolCall.tool_call_id).where(ToolCall.run_id == run_id)))


def answer_rejected(session: Session, run_id: int, thread_id: int) -> None:
    """Write the tool message of each rejected call that has none yet, saying who and why.

    A resumed run tells its model this way of the calls a person (or the
    approval timeout) refused, in :func:`approvals.answer_text`'s words.
    """
    statement = (
        select(ToolCall)
        .where(
            ToolCall.run_id == run_id,
            ToolCall.status == "rejected",
            ToolCall.tool_call_id.not_in(approvals.answered_ids(run_id)),
        )
        .order_by(ToolCall.round, ToolCall.position)
    )
    for row in session.scalars(statement):
        message = approvals.tool_message(row, approvals.answer_text(row))
        conversations.add_message(session, thread_id, message, processed=True, run_id=run_id)


def list_calls(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Read a run's calls in the order the model made them, or raise NotFound for no such run."""
    load_row(session, Run, run_id)
    statement = (
        select(_calls)
        .where(_calls.c.run_id == run_id)
        .order_by(_calls.c.round, _calls.c.position, _calls.c.id)
    )
    return fetch_rows(session, statement)


def _call_of(row: ToolCall) -> Call:
    return Call(
        id=row.id,
        run_id=row.run_id,
        tool_call_id=row.tool_call_id,
        round=row.round,
        position=row.position,
        name=row.name,
        function=row.function,
        arguments=row.arguments,
    )


def _answer(
    session: Session, thread_id: int, row: ToolCall, content: str, status: str
) -> dict[str, Any]:
    """Store a call's tool message and announce how it ended; return the message for the model."""
    message = approvals.tool_message(row, content)
    conversations.add_message(session, thread_id, message, processed=True, run_id=row.run_id)
    if status == "success":
        frame = approvals.call_frame(
            EventType.TOOL_CALL_COMPLETED,
            thread_id,
            row,
            result=row.result,
            truncated=row.truncated,
            duration_ms=row.duration_ms,
        )
    else:
        kind = EventType.TOOL_CALL_FAILED
        frame = approvals.call_frame(kind, thread_id, row, duration_ms=row.duration_ms)
    events.announce(session, frame)
    return {
        "role": "tool",
        "tool_call_id": row.tool_call_id,
        "name": row.function,
        "content": message.content,
    }
