"""Threads and their messages: every change to them, and the reads more than one caller needs.

A message reaches a thread in one way only, :func:`add_message`, whoever
sends it: a REST client, a websocket client, a run storing its reply, an
agent's task. So every message gets the same row, the same ``updated_at`` on
its thread and the same ``thread_message`` event. As everywhere in the
domain, the caller commits; events go out after its commit.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import exists
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg.db import LIKE_ESCAPE
from zerg.db import fetch_rows
from zerg.db import like_pattern
from zerg.db import load_row
from zerg.db import read_row
from zerg.domain_errors import NotFound
from zerg.models import ID_MAX
from zerg.models import Agent
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.models import utcnow
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import ThreadMessageOut
from zerg.schemas import ThreadOut
from zerg.schemas import ThreadUpdate
from zerg.schemas import dump_row
from zerg.schemas import serialize

_threads = cast(Table, Thread.__table__)
_messages = cast(Table, ThreadMessage.__table__)

THREAD_EXISTS = select(exists().where(_threads.c.id == bindparam("id")))
THREAD_MESSAGES_PAGE = (
    select(_messages)
    .where(_messages.c.thread_id == bindparam("thread_id"))
    .order_by(_messages.c.timestamp, _messages.c.id)
    .offset(bindparam("skip"))
    .limit(bindparam("limit"))
)
NEWEST_THREAD_MESSAGES = (
    select(_messages)
    .where(_messages.c.thread_id == bindparam("thread_id"))
    .order_by(_messages.c.timestamp.desc(), _messages.c.id.desc())
    .limit(bindparam("limit"))
)
# Finds the thread and takes its row lock (on SQLite, a write session already
# holds the database's write lock from its first statement).
LOCK_THREAD = select(_threads.c.id).where(_threads.c.id == bindparam("thread_id")).with_for_update()
TOUCH_THREAD = (
    update(_threads)
    .where(_threads.c.id == bindparam("thread_id"))
    .values(updated_at=bindparam("now"))
)
INSERT_MESSAGE = insert(_messages).returning(_messages.c.id)
# What search_messages finds: an agent's own messages containing a text,
# ignoring case (ILIKE on PostgreSQL; lower() LIKE lower() on SQLite, which
# folds ASCII letters only), newest first. Tool results are left out: they
# would echo earlier searches back.
SEARCH_MESSAGES = (
    select(
        _messages.c.id.label("message_id"),
        _messages.c.thread_id,
        _threads.c.title.label("thread_title"),
        _messages.c.role,
        _messages.c.content,
        _messages.c.timestamp,
    )
    .join(_threads, _threads.c.id == _messages.c.thread_id)
    .where(
        _threads.c.agent_id == bindparam("agent_id"),
        _messages.c.role != "tool",
        _messages.c.content.ilike(bindparam("pattern"), escape=LIKE_ESCAPE),
    )
    .order_by(_messages.c.timestamp.desc(), _messages.c.id.desc())
    .limit(bindparam("limit"))
)
# How much of a long message a search result shows around the match.
SNIPPET_CHARS = 300
UNANSWERED = (
    select(_messages.c.id)
    .where(
        _messages.c.thread_id == bindparam("thread_id"),
        _messages.c.role == "user",
        _messages.c.processed.is_(False),
    )
    .order_by(_messages.c.id)
)


def load_thread(session: Session, thread_id: int, *, lock: bool = False) -> Thread:
    """Load a thread to change it, or raise NotFound.

    ``lock`` takes the thread's row lock (PostgreSQL; SQLite's write
    transactions are serial anyway). Adding a message takes it too, and so
    does a run when it finishes and looks for messages still unanswered: in
    whichever order they commit, one of them sees the other, so a message
    that lands as a run ends is never left unanswered.
    """
    return load_row(session, Thread, thread_id, lock=lock)


def get_thread(session: Session, thread_id: int) -> dict[str, Any]:
    """Read one thread's row, or raise NotFound."""
    return read_row(session, Thread, thread_id)


def list_threads(
    session: Session, agent_id: int | None, skip: int, limit: int
) -> list[dict[str, Any]]:
    """Read a page of threads in creation order, of one agent or of all."""
    statement = select(_threads).order_by(_threads.c.created_at, _threads.c.id)
    if agent_id is not None:
        statement = statement.where(_threads.c.agent_id == agent_id)
    return fetch_rows(session, statement.offset(skip).limit(limit))


def create_thread(session: Session, agent_id: int, **fields: Any) -> Thread:
    """Start a thread with an agent (NotFound if there is no such agent)."""
    load_row(session, Agent, agent_id)
    thread = Thread(agent_id=agent_id, **fields)
    session.add(thread)
    _announce(session, EventType.THREAD_CREATED, thread)
    return thread


def update_thread(session: Session, thread_id: int, changes: ThreadUpdate) -> Thread:
    """Change the fields sent and leave the others as they are."""
    thread = load_thread(session, thread_id)
    for field, value in changes.changes().items():
        setattr(thread, field, value)
    _announce(session, EventType.THREAD_UPDATED, thread)
    return thread


def delete_thread(session: Session, thread_id: int) -> None:
    """Delete a thread with its messages and runs (the database cascades)."""
    thread = load_thread(session, thread_id)
    announce_deleted(session, thread)
    session.delete(thread)


def announce_deleted(session: Session, thread: Thread) -> None:
    """Announce a thread's deletion, also when it goes with its agent."""
    _announce(session, EventType.THREAD_DELETED, thread)


def _announce(session: Session, kind: EventType, thread: Thread) -> None:
    # Flushed first, so that the payload holds the row as it will be committed.
    session.flush()
    events.announce(session, events.thread_event(kind, serialize(ThreadOut, thread)))


def add_message(
    session: Session,
    thread_id: int,
    message: ThreadMessageCreate,
    *,
    processed: bool = False,
    partial: bool = False,
    run_id: int | None = None,
) -> dict[str, Any]:
    """Add a message to a thread and stamp the thread; return the message as announced.

    Raises NotFound if there is no such thread. ``processed`` marks a message
    that needs no answer (a run's own reply), ``partial`` a reply cut short,
    ``run_id`` the run that wrote it (its reply, its tool calls and results).
    The thread is locked before the time is read, so that messages of one
    thread are stamped, numbered, committed and announced in one order: a
    watcher sees them as a reload lists them.
    """
    locked = None
    if thread_id <= ID_MAX:
        locked = session.execute(LOCK_THREAD, {"thread_id": thread_id}).first()
    if locked is None:
        raise NotFound("Thread", thread_id)
    now = utcnow()
    session.execute(TOUCH_THREAD, {"thread_id": thread_id, "now": now})
    # In the response's field order, which the payload keeps.
    values = {
        "thread_id": thread_id,
        "role": message.role,
        "content": message.content,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "processed": processed,
        "run_id": run_id,
        "partial": partial,
        "timestamp": now,
        "metadata": message.metadata,
    }
    message_id = session.execute(INSERT_MESSAGE, values).scalar_one()
    # Every column but the id is what was just bound: nothing to read back.
    payload = dump_row(ThreadMessageOut, {"id": message_id, **values})
    events.announce(session, events.thread_message_created(payload))
    return payload


def list_messages(session: Session, thread_id: int, skip: int, limit: int) -> list[dict[str, Any]]:
    """Read a page of a thread's messages, oldest first, or raise NotFound."""
    if thread_id > ID_MAX or not session.execute(THREAD_EXISTS, {"id": thread_id}).scalar():
        raise NotFound("Thread", thread_id)
    params = {"thread_id": thread_id, "skip": skip, "limit": limit}
    return fetch_rows(session, THREAD_MESSAGES_PAGE, params)


def get_message(session: Session, thread_id: int, message_id: int) -> dict[str, Any]:
    """Read one message of a thread, or raise NotFound (also if it is another thread's)."""
    row = read_row(session, ThreadMessage, message_id)
    if row["thread_id"] != thread_id:
        raise NotFound("ThreadMessage", message_id)
    return row


def newest_messages(session: Session, thread_id: int, limit: int) -> list[dict[str, Any]]:
    """Read a thread's newest ``limit`` messages, oldest first, or raise NotFound.

    What a watcher opening a long thread wants to see first is where it is now.
    """
    if thread_id > ID_MAX or not session.execute(THREAD_EXISTS, {"id": thread_id}).scalar():
        raise NotFound("Thread", thread_id)
    rows = fetch_rows(session, NEWEST_THREAD_MESSAGES, {"thread_id": thread_id, "limit": limit})
    rows.reverse()
    return rows


def context_messages(
    session: Session,
    thread_id: int,
    limit: int,
    *,
    until: datetime | None = None,
    open_calls: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Return the thread's newest ``limit`` messages as Chat Completions messages, oldest first.

    ``until``: leave out people's messages stored after that time (a run
    resumed after an approval answers what it began with; later messages are
    its follow-up's). ``open_calls``: ids of tool calls whose results the
    caller is about to add (see :func:`chat_history`).
    """
    newest = (
        select(*(_messages.c[name] for name in _CONTEXT_COLUMNS))
        .where(_messages.c.thread_id == thread_id)
        .order_by(_messages.c.timestamp.desc(), _messages.c.id.desc())
        .limit(limit)
    )
    if until is not None:
        newest = newest.where(or_(_messages.c.role != "user", _messages.c.timestamp <= until))
    rows = fetch_rows(session, newest)
    rows.reverse()
    return chat_history(rows, open_calls)


_CONTEXT_COLUMNS = ("role", "content", "tool_calls", "tool_call_id", "name", "run_id")


def chat_history(
    rows: list[dict[str, Any]], open_calls: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Turn stored messages, oldest first, into a history a provider accepts.

    Providers refuse (400) an assistant message with ``tool_calls`` that is
    not followed by a result for each call, and a tool result whose call is
    not before it. So each call's result is moved to right after its call
    (a person's message stored while the calls ran comes after them), a
    result whose call is outside the window is left out, and so is an
    assistant message missing a result, with its results, unless the missing
    ones are all ``open_calls``. Calls and results are matched within the run
    that wrote them: ids are unique per run only.
    """
    results = {(row["run_id"], row["tool_call_id"]): row for row in rows if row["role"] == "tool"}
    history: list[dict[str, Any]] = []
    for row in rows:
        if row["role"] == "tool":
            continue
        if row["role"] != "assistant" or not row["tool_calls"]:
            history.append({"role": row["role"], "content": row["content"]})
            continue
        ids = [call.get("id") for call in row["tool_calls"]]
        answers = [results[key] for key in ((row["run_id"], id_) for id_ in ids) if key in results]
        missing = set(ids) - {answer["tool_call_id"] for answer in answers}
        if not missing <= set(open_calls):
            continue
        history.append(
            {
                "role": "assistant",
                "content": row["content"] or None,
                "tool_calls": row["tool_calls"],
            }
        )
        history += [
            {
                "role": "tool",
                "tool_call_id": answer["tool_call_id"],
                "name": answer["name"],
                "content": answer["content"],
            }
            for answer in answers
        ]
    return history


def unanswered(
    session: Session,
    thread_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[int]:
    """Return the ids of the thread's user messages that no run has answered yet.

    ``since``: only those stored after that time; ``until``: only those stored by then.
    """
    statement = UNANSWERED
    if since is not None:
        statement = statement.where(_messages.c.timestamp > since)
    if until is not None:
        statement = statement.where(_messages.c.timestamp <= until)
    return list(session.scalars(statement, {"thread_id": thread_id}))


def mark_answered(session: Session, message_ids: Iterable[int]) -> None:
    """Mark messages as answered by a run."""
    ids = list(message_ids)
    if ids:
        session.execute(update(_messages).where(_messages.c.id.in_(ids)).values(processed=True))


def search_messages(session: Session, agent_id: int, text: str, limit: int) -> list[dict[str, Any]]:
    """Find the agent's own thread messages containing ``text``, ignoring case, newest first.

    Each result names its thread and message and shows the message, or the
    part of a long one around the match.
    """
    params = {"agent_id": agent_id, "pattern": like_pattern(text), "limit": limit}
    rows = fetch_rows(session, SEARCH_MESSAGES, params)
    for row in rows:
        row["content"] = _snippet(row["content"], text)
    return rows


def _snippet(content: str, text: str) -> str:
    if len(content) <= SNIPPET_CHARS:
        return content
    at = max(content.lower().find(text.lower()), 0)
    start = max(at - (SNIPPET_CHARS - len(text)) // 2, 0)
    end = start + SNIPPET_CHARS
    return ("…" if start else "") + content[start:end] + ("…" if end < len(content) else "")


def delete_run_messages(session: Session, run_id: int) -> int:
    """Remove the messages a run wrote (a rolled-back run's reply and tool results); count them."""
    removed = delete(_messages).where(_messages.c.run_id == run_id).returning(_messages.c.id)
    return len(session.scalars(removed).all())
