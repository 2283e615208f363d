"""Threads (conversations with one agent) and their messages."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import conversations
from zerg.api.admission import body_asks_for_run
from zerg.api.admission import starts_runs
from zerg.api.idempotency import idempotent
from zerg.api.io import commit
from zerg.api.io import located
from zerg.api.io import no_content
from zerg.api.io import page_params
from zerg.api.io import parse_body
from zerg.api.io import parse_optional_body
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_json
from zerg.api.io import respond_row
from zerg.api.io import respond_rows
from zerg.api.operations import DELETED
from zerg.api.operations import conflict
from zerg.api.operations import created
from zerg.api.operations import missing
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.api.operations import started
from zerg.db import get_db
from zerg.runs import domain as runs
from zerg.schemas import Page
from zerg.schemas import RunOut
from zerg.schemas import ThreadCreate
from zerg.schemas import ThreadMessageOut
from zerg.schemas import ThreadMessagePost
from zerg.schemas import ThreadMessageSentOut
from zerg.schemas import ThreadOut
from zerg.schemas import ThreadQuery
from zerg.schemas import ThreadRunCreate
from zerg.schemas import ThreadUpdate
from zerg.schemas import serialize

bp = Blueprint("threads", __name__, url_prefix="/threads")


@bp.get("")
@operation(
    "threads", "List threads", ok(ThreadOut, "Threads, oldest first.", many=True), query=ThreadQuery
)
def list_threads() -> Response:
    """List threads in creation order, optionally of one agent."""
    query = parse_query(ThreadQuery)
    skip, limit = page_params(query)
    rows = conversations.list_threads(get_db(), query.agent_id, skip, limit)
    return respond_rows(ThreadOut, rows)


@bp.post("")
@operation(
    "threads",
    "Start a thread",
    created(ThreadOut),
    body=ThreadCreate,
    also=(missing("No agent has the body's `agent_id`."),),
)
@idempotent
def create_thread() -> Response:
    """Start a thread with an agent."""
    body = parse_body(ThreadCreate)
    session = get_db(write=True)
    fields = body.model_dump()
    thread = conversations.create_thread(session, fields.pop("agent_id"), **fields)
    response = respond(ThreadOut, thread, 201)
    return commit(located(response, "api.threads.get_thread", thread_id=thread.id))


@bp.get("/<int:thread_id>")
@operation("threads", "Get a thread", ok(ThreadOut))
def get_thread(thread_id: int) -> Response:
    """Return one thread."""
    return respond_row(ThreadOut, conversations.get_thread(get_db(), thread_id))


@bp.route("/<int:thread_id>", methods=["PUT", "PATCH"])
@operation("threads", "Update a thread (the fields sent)", ok(ThreadOut), body=ThreadUpdate)
def update_thread(thread_id: int) -> Response:
    """Change the fields sent and leave the others as they are."""
    body = parse_body(ThreadUpdate)
    session = get_db(write=True)
    thread = conversations.update_thread(session, thread_id, body)
    session.commit()
    return respond(ThreadOut, thread)


@bp.delete("/<int:thread_id>")
@operation("threads", "Delete a thread", DELETED)
def delete_thread(thread_id: int) -> Response:
    """Delete a thread with its messages."""
    session = get_db(write=True)
    conversations.delete_thread(session, thread_id)
    session.commit()
    return no_content()


@bp.post("/<int:thread_id>/run")
@operation(
    "threads",
    "Answer a thread's unanswered messages",
    started(
        "Accepted: the run, queued (behind or instead of an active run, as "
        "`multitask_strategy` says)."
    ),
    body=ThreadRunCreate,
    body_required=False,
    also=(
        conflict(
            "A run of this thread is active and `multitask_strategy` is `reject`, "
            "or no message awaits an answer."
        ),
    ),
)
@starts_runs()
@idempotent
def run_thread(thread_id: int) -> Response:
    """Run the thread's agent on its unanswered messages (202).

    If a run of the thread is active, the optional body's
    ``multitask_strategy`` decides: ``reject`` (409, the default),
    ``enqueue``, ``interrupt`` or ``rollback``; the run answered is queued
    in every other case, and starts once the runs before it have ended.
    """
    body = parse_optional_body(ThreadRunCreate)
    session = get_db(write=True)
    run = runs.queue_thread_run(session, thread_id, "api", body.multitask_strategy)
    return commit(located(respond(RunOut, run, 202), "api.runs.get_run", run_id=run.id))


@bp.get("/<int:thread_id>/messages")
@operation(
    "threads",
    "List a thread's messages",
    ok(ThreadMessageOut, "Messages, oldest first.", many=True),
    query=Page,
)
def list_thread_messages(thread_id: int) -> Response:
    """List a thread's messages, oldest first."""
    skip, limit = page_params(parse_query(Page))
    rows = conversations.list_messages(get_db(), thread_id, skip, limit)
    return respond_rows(ThreadMessageOut, rows)


@bp.post("/<int:thread_id>/messages")
@operation(
    "threads",
    "Add a message to a thread, and with `run` have it answered",
    created(ThreadMessageSentOut),
    body=ThreadMessagePost,
)
@starts_runs(when=body_asks_for_run)
@idempotent
def create_thread_message(thread_id: int) -> Response:
    """Add a message to a thread; with ``run``, also queue the run that answers it.

    The message and its run are stored together or not at all. The answer's
    ``run`` is the run queued, or null if the thread was busy and
    ``multitask_strategy`` is ``reject``: the active run's follow-up then
    answers the message.
    """
    body = parse_body(ThreadMessagePost)
    session = get_db(write=True)
    if body.run is None:
        answer = conversations.add_message(session, thread_id, body)
    else:
        sent = runs.send_message(session, thread_id, body, "api", body.run.multitask_strategy)
        run = None if sent.run is None else serialize(RunOut, sent.run)
        answer = {**sent.message, "run": run}
    response = respond_json(answer, 201)
    return commit(
        located(
            response,
            "api.threads.get_thread_message",
            thread_id=thread_id,
            message_id=answer["id"],
        )
    )


@bp.get("/<int:thread_id>/messages/<int:message_id>")
@operation("threads", "Get one of a thread's messages", ok(ThreadMessageOut))
def get_thread_message(thread_id: int, message_id: int) -> Response:
    """Return one of a thread's messages."""
    row = conversations.get_message(get_db(), thread_id, message_id)
    return respond_row(ThreadMessageOut, row)
