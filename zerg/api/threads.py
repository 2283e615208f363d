"""Threads (conversations with one agent) and their messages."""

from __future__ import annotations

from typing import Any
from typing import cast

from flask import Blueprint
from flask import Flask
from flask import Response
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import events
from zerg.api.agents import load_agent
from zerg.api.io import get_or_404
from zerg.api.io import no_content
from zerg.api.io import page_params
from zerg.api.io import paginate
from zerg.api.io import parse_body
from zerg.api.io import parse_query
from zerg.api.io import read_or_404
from zerg.api.io import respond
from zerg.api.io import respond_json
from zerg.api.io import respond_list
from zerg.db import get_db
from zerg.errors import NotFound
from zerg.events import EventType
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.models import utcnow
from zerg.runner import get_runner
from zerg.runner import queue_thread_run
from zerg.schemas import ID_MAX
from zerg.schemas import Page
from zerg.schemas import RunOut
from zerg.schemas import ThreadCreate
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import ThreadMessageOut
from zerg.schemas import ThreadOut
from zerg.schemas import ThreadQuery
from zerg.schemas import ThreadUpdate
from zerg.schemas import serialize
from zerg.statements import Connection
from zerg.statements import Statement
from zerg.statements import page_of
from zerg.statements import reading
from zerg.statements import row_by_id
from zerg.statements import writing

bp = Blueprint("threads", __name__, url_prefix="/threads")

_threads, _messages = cast(Table, Thread.__table__), cast(Table, ThreadMessage.__table__)
TOUCH_THREAD = Statement(
    update(_threads)
    .where(_threads.c.id == bindparam("thread_id"))
    .values(updated_at=bindparam("now"))
    .returning(_threads.c.id)
)
THREAD = row_by_id(_threads)
THREAD_MESSAGES_PAGE = page_of(
    select(_messages)
    .where(_messages.c.thread_id == bindparam("thread_id"))
    .order_by(_messages.c.timestamp, _messages.c.id)
)
INSERT_MESSAGE = Statement(
    insert(_messages)
    .values({column.key: bindparam(column.key) for column in _messages.c if column.key != "id"})
    .returning(_messages.c.id)
)


def load_thread(session: Session, thread_id: int, *, lock: bool = False) -> Thread:
    """Load a thread or raise a 404 problem.

    ``lock`` takes the thread's row lock (PostgreSQL; SQLite's write
    transactions are serial anyway). Adding a message or starting a run locks
    it, and so does a run when it finishes and looks for messages still
    unanswered: in whichever order they commit, one of them sees the other,
    so a message that lands as a run ends is never left unanswered.
    """
    return get_or_404(session, Thread, thread_id, "Thread", lock=lock)


@bp.get("")
def list_threads() -> Response:
    """List threads in creation order, optionally of one agent."""
    query = parse_query(ThreadQuery)
    statement = select(Thread).order_by(Thread.created_at, Thread.id)
    if query.agent_id is not None:
        statement = statement.where(Thread.agent_id == query.agent_id)
    return respond_list(ThreadOut, list(get_db().scalars(paginate(statement, query))))


@bp.post("")
def create_thread() -> Response:
    """Start a thread with an agent."""
    body = parse_body(ThreadCreate)
    session = get_db()
    load_agent(session, body.agent_id)
    thread = Thread(**body.model_dump())
    session.add(thread)
    session.commit()
    payload = serialize(ThreadOut, thread)
    events.publish(events.thread_event(EventType.THREAD_CREATED, payload))
    return respond_json(payload, 201)


@bp.get("/<int:thread_id>")
def get_thread(thread_id: int) -> Response:
    """Return one thread."""
    with reading() as connection:
        return respond(ThreadOut, read_or_404(connection, THREAD, thread_id, "Thread"))


@bp.route("/<int:thread_id>", methods=["PUT", "PATCH"])
def update_thread(thread_id: int) -> Response:
    """Change the fields sent and leave the others as they are."""
    body = parse_body(ThreadUpdate)
    session = get_db()
    thread = load_thread(session, thread_id)
    for field, value in body.changes().items():
        setattr(thread, field, value)
    session.commit()
    payload = serialize(ThreadOut, thread)
    events.publish(events.thread_event(EventType.THREAD_UPDATED, payload))
    return respond_json(payload)


@bp.delete("/<int:thread_id>")
def delete_thread(thread_id: int) -> Response:
    """Delete a thread with its messages."""
    session = get_db()
    thread = load_thread(session, thread_id)
    payload = serialize(ThreadOut, thread)
    session.delete(thread)
    session.commit()
    events.publish(events.thread_event(EventType.THREAD_DELETED, payload))
    return no_content()


@bp.post("/<int:thread_id>/run")
def run_thread(thread_id: int) -> Response:
    """Run the thread's agent on its unanswered messages (202; 409 if one is active)."""
    session = get_db()
    runner = get_runner()
    thread = load_thread(session, thread_id, lock=True)
    run = queue_thread_run(session, thread, "api", runner.instance_id)
    session.commit()
    payload = serialize(RunOut, run)
    events.publish(events.run_updated(payload))
    runner.submit(run.id)
    return respond_json(payload, 202)


@bp.get("/<int:thread_id>/messages")
def list_thread_messages(thread_id: int) -> Response:
    """List a thread's messages, oldest first."""
    params = page_params(parse_query(Page))
    with reading() as connection:
        read_or_404(connection, THREAD, thread_id, "Thread")
        rows = THREAD_MESSAGES_PAGE.all(connection, thread_id=thread_id, **params)
    return respond_list(ThreadMessageOut, rows)


def add_message(
    connection: Connection, thread_id: int, body: ThreadMessageCreate
) -> dict[str, Any] | None:
    """Write a message to a thread, in the caller's transaction; None if there is no such thread.

    The hottest write, so it skips the session: one UPDATE finds the thread,
    stamps it and takes its row lock (see :func:`load_thread`), one INSERT
    writes the message and hands back its id.
    """
    if thread_id > ID_MAX:
        return None
    now = utcnow()
    if TOUCH_THREAD.first(connection, thread_id=thread_id, now=now) is None:
        return None
    values = {
        "thread_id": thread_id,
        "processed": False,
        "partial": False,
        "timestamp": now,
        **body.model_dump(),
    }
    inserted = INSERT_MESSAGE.first(connection, **values)
    # Every column but the id is what was just bound: no need to read it back.
    return None if inserted is None else {"id": inserted["id"], **values}


def announce_message(row: dict[str, Any], app: Flask | None = None) -> dict[str, Any]:
    """Publish a committed message to its thread's watchers; return the payload sent."""
    payload = serialize(ThreadMessageOut, row)
    events.publish(events.thread_message_created(payload), app)
    return payload


@bp.post("/<int:thread_id>/messages")
def create_thread_message(thread_id: int) -> Response:
    """Add a message to a thread (the fast lane answers most of these first)."""
    body = parse_body(ThreadMessageCreate)
    with writing() as connection:
        row = add_message(connection, thread_id, body)
    if row is None:
        raise NotFound("Thread", thread_id)
    return respond_json(announce_message(row), 201)
