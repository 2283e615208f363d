"""Runs as transports ask for them: queued, cancelled, listed; and what follows a run's end.

A run is queued by a request, a websocket message or the scheduler (a
person's message and the run that answers it go in together, by
:func:`send_message`), and reaches the worker pool once the caller commits;
what a worker then does with it (begin, finish, fail) and how runs of lost or
dead processes end is :mod:`zerg.runs.lifecycle`. Each function here takes
the caller's session and leaves the commit to the caller; what it announces
goes out after that commit.

A thread runs one run at a time. A run asked for while another is active is
refused, queued behind it, or takes its place, as its ``multitask_strategy``
(:data:`zerg.schemas.MultitaskStrategy`) says. Runs waiting behind another
have no owner: whichever process ends a thread's run hands the thread's
oldest waiting run to its own pool, or else queues a follow-up for the
messages that arrived while the run was going (:func:`after_end`).
Everything that queues, begins, stops or ends a thread's run holds the
thread's row lock, so a run never waits behind one that has already ended,
and a message never waits for a run that has.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from typing import cast

from sqlalchemy import Table
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from zerg import agents
from zerg import conversations
from zerg.db import LIKE_ESCAPE
from zerg.db import after_commit
from zerg.db import app_of
from zerg.db import fetch_rows
from zerg.db import like_pattern
from zerg.db import load_row
from zerg.domain_errors import Conflict
from zerg.models import Agent
from zerg.models import Run
from zerg.models import utcnow
from zerg.realtime import events
from zerg.runs import approvals
from zerg.runs.pool import get_runner
from zerg.runs.states import ACTIVE
from zerg.runs.states import HOLDING
from zerg.runs.states import active_runs
from zerg.runs.states import announce_run
from zerg.runs.states import lock_thread
from zerg.runs.states import transition
from zerg.schemas import MultitaskStrategy
from zerg.schemas import ThreadMessageCreate

# The multitask strategies that stop the active run for the new one, and the
# error the stopped run ends with.
SUPERSEDED = {
    "interrupt": "interrupted by a newer run (multitask_strategy=interrupt)",
    "rollback": "rolled back for a newer run (multitask_strategy=rollback); "
    "its partial reply was removed",
}
# Runs people start; a follow-up of any other run (manual, scheduled) is "api".
PERSON_TRIGGERS = frozenset({"api", "websocket"})


def load_run(session: Session, run_id: int) -> Run:
    """Load a run, or raise NotFound."""
    return load_row(session, Run, run_id)


def list_runs(
    session: Session,
    *,
    agent_id: int | None = None,
    thread_id: int | None = None,
    status: str | None = None,
    trigger: str | None = None,
    q: str | None = None,
    skip: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Read a page of runs, newest first, optionally of one agent, thread, status or trigger.

    ``q`` keeps the runs whose agent's name or whose error contains it, ignoring case.
    """
    runs = cast(Table, Run.__table__)
    statement = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc())
    if agent_id is not None:
        statement = statement.where(runs.c.agent_id == agent_id)
    if thread_id is not None:
        statement = statement.where(runs.c.thread_id == thread_id)
    if status is not None:
        statement = statement.where(runs.c.status == status)
    if trigger is not None:
        statement = statement.where(runs.c.trigger == trigger)
    if q is not None:
        pattern = like_pattern(q)
        named = select(Agent.id).where(Agent.name.ilike(pattern, escape=LIKE_ESCAPE))
        matched = runs.c.error.ilike(pattern, escape=LIKE_ESCAPE)
        statement = statement.where(or_(matched, runs.c.agent_id.in_(named)))
    return fetch_rows(session, statement.offset(skip).limit(limit))


def _add_queued(
    session: Session,
    agent_id: int,
    thread_id: int,
    trigger: str,
    *,
    waiting: bool = False,
    **fields: object,
) -> Run:
    """Insert a queued run; unless it is ``waiting`` its turn, it starts once the session commits.

    A run that starts at once is owned by this process. A waiting one is owned
    by nobody until the process that ends the run before it takes it.
    """
    runner = get_runner(app_of(session))
    run = Run(
        agent_id=agent_id,
        thread_id=thread_id,
        trigger=trigger,
        status="queued",
        owner=None if waiting else runner.instance_id,
        **fields,
    )
    session.add(run)
    session.flush()
    announce_run(session, run)
    if not waiting:
        after_commit(session, partial(runner.submit, run.id))
    return run


def queue_thread_run(
    session: Session, thread_id: int, trigger: str, strategy: MultitaskStrategy = "reject"
) -> Run:
    """Queue a run of the thread's agent on its unanswered messages.

    While the thread has an active run, ``strategy`` decides: ``reject``
    raises Conflict; ``enqueue`` queues the new run behind the active ones;
    ``interrupt`` and ``rollback`` stop them (:func:`_supersede`) and queue
    the new run to start when the running one has ended. Raises NotFound for
    no such thread, Conflict when there is nothing to answer. The thread's
    lock settles racing callers; the one-running-run index is the database's
    last word.
    """
    thread = conversations.load_thread(session, thread_id, lock=True)
    active = active_runs(session, thread.id)
    if active and strategy == "reject":
        raise Conflict(
            f"Thread {thread.id} already has an active run ({active[0].id}); "
            "send multitask_strategy enqueue, interrupt or rollback to run anyway."
        )
    if not conversations.unanswered(session, thread.id):
        raise Conflict(f"Thread {thread.id} has no unanswered user message to run on.")
    if strategy in SUPERSEDED:
        for run in active:
            _supersede(session, run, strategy)
        active = [run for run in active if run.status == "running"]
    return _add_queued(session, thread.agent_id, thread.id, trigger, waiting=bool(active))


def _supersede(session: Session, run: Run, strategy: MultitaskStrategy) -> None:
    """Stop an active run for a newer one: a queued or waiting run at once, a running one later.

    A running run stops at its next piece; one awaiting approval ends at once.

    The running run's owner learns of it over the bus, like a cancel; how the
    run ends (its reply kept or removed) is recorded on the row, where the
    run's end reads it, so a run that ends before the request reaches it
    still ends as the request said, and one that ended first is left alone.
    """
    if run.status == "queued":
        _cancel_queued(session, run, SUPERSEDED[strategy], strategy)
        return
    if run.status == approvals.WAITING:
        # No worker holds it: it ends now, as a running run ends at its next piece.
        discard = strategy == "rollback"
        approvals.end_waiting(
            session, run, "cancelled", SUPERSEDED[strategy], stop=strategy, discard=discard
        )
        return
    # A rollback outranks an earlier interrupt or cancel, an interrupt a cancel.
    if strategy == "rollback" or run.stop_requested not in SUPERSEDED:
        run.stop_requested = strategy
    announce_run(session, run)
    events.announce(session, events.run_cancel_requested(run.id, run.owner))


def try_queue_thread_run(
    session: Session, thread_id: int, trigger: str, strategy: MultitaskStrategy = "reject"
) -> Run | None:
    """Queue a thread run as :func:`queue_thread_run` does, or return None where it refuses.

    For a message just stored: with ``reject`` and a run active, none is
    queued, and the follow-up of that run answers the message
    (:func:`after_end`). The attempt runs in a savepoint, so a refusal leaves
    the rest of the caller's transaction, such as that message, intact.
    """
    try:
        with session.begin_nested():
            return queue_thread_run(session, thread_id, trigger, strategy)
    except Conflict:
        return None


@dataclass(frozen=True)
class Sent:
    """A user message stored, and the run queued to answer it.

    ``run`` is None when the thread was busy and the strategy ``reject``: the
    message waits, and the active run's follow-up answers it.
    """

    message: dict[str, Any]
    run: Run | None


def send_message(
    session: Session,
    thread_id: int,
    message: ThreadMessageCreate,
    trigger: str,
    strategy: MultitaskStrategy = "reject",
) -> Sent:
    """Store a user message and queue a run to answer it, in the caller's transaction.

    The one way a person's message gets answered, whichever transport brings
    it: the message and its run commit together or not at all, and their
    events go out after that commit. While the thread has an active run,
    ``strategy`` decides as for :func:`queue_thread_run`, except that
    ``reject`` keeps the message rather than refusing it (see :class:`Sent`).
    Raises NotFound if there is no such thread.
    """
    if message.role != "user":
        raise ValueError(f"only a user message is answered, not a {message.role!r} one")
    stored = conversations.add_message(session, thread_id, message)
    return Sent(stored, try_queue_thread_run(session, thread_id, trigger, strategy))


def _start_next(session: Session, thread_id: int) -> Run | None:
    """Take the thread's next queued run into this process's pool, if it is waiting for one.

    Called wherever a thread's run ends, holding the thread's lock. The next
    run is left alone while a run is running, and when a pool has it already
    (it has an owner: it started the thread's queue, or was taken before).
    """
    active = active_runs(session, thread_id)
    if not active or active[0].status in HOLDING or active[0].owner is not None:
        return None
    runner = get_runner(app_of(session))
    run = active[0]
    run.owner = runner.instance_id
    after_commit(session, partial(runner.submit, run.id))
    return run


def after_end(session: Session, run: Run, answered: Collection[int] | None = None) -> None:
    """Start what comes after a run that ended, however it ended, holding its thread's lock.

    The thread's next queued run starts if there is one. Otherwise, if user
    messages arrived after the run began (sent while it was busy, so left to
    it), a follow-up run answers them, with any others still unanswered. The
    messages the run itself was answering do not call for one: after a
    failure they wait for a client's retry, so a provider that keeps failing
    never makes follow-ups retry forever. ``answered`` names them where the
    caller knows them; otherwise the ones stored before the run began are
    taken to be them. A run that never began owes nothing.
    """
    if _start_next(session, run.thread_id) is not None:
        return
    if run.started_at is None:
        return
    if answered is None:
        arrived = conversations.unanswered(session, run.thread_id, since=run.started_at)
    else:
        arrived = sorted(set(conversations.unanswered(session, run.thread_id)) - set(answered))
    if arrived:
        trigger = run.trigger if run.trigger in PERSON_TRIGGERS else "api"
        try_queue_thread_run(session, run.thread_id, trigger)


def queue_agent_run(
    session: Session, agent_id: int, trigger: str, scheduled_for: datetime | None = None
) -> Run:
    """Start the agent's task in a new thread of its own, with the task as its first message.

    Task runs never write into a conversation someone has open. A scheduled
    run that fires twice for the same time fails here with IntegrityError on
    the (agent, scheduled time) unique constraint: callers treat it as
    "already ran".
    """
    agent = agents.load_agent(session, agent_id)
    if not agent.task_instructions.strip():
        raise Conflict(f"Agent {agent.id} has no task instructions to run.")
    when = (scheduled_for or utcnow()).strftime("%Y-%m-%d %H:%M UTC")
    kind = "scheduled" if trigger == "schedule" else "manual"
    thread = conversations.create_thread(
        session, agent.id, title=f"{agent.name} · {kind} run {when}"[:255], thread_type=kind
    )
    task = ThreadMessageCreate(role="user", content=agent.task_instructions)
    conversations.add_message(session, thread.id, task)
    return _add_queued(session, agent.id, thread.id, trigger, scheduled_for=scheduled_for)


def cancel_run(session: Session, run_id: int) -> tuple[Run, bool]:
    """Cancel a run; return it and whether it is over (False: it stops at its next piece).

    A queued run is cancelled at once, and so is one awaiting approval (no
    process holds it): its undecided calls are rejected and answered in its
    thread. For a running one, a cancel request goes out on the bus once the
    session commits; the process that owns the run (this one or another)
    stops it, and it finishes ``cancelled`` keeping its partial reply.
    Raises Conflict for a finished run.
    """
    run = load_run(session, run_id)
    lock_thread(session, run.thread_id)
    session.refresh(run)
    if run.status not in ACTIVE:
        raise Conflict(f"Run {run_id} has already finished ({run.status}).")
    if run.status == "queued":
        _cancel_queued(session, run, "cancelled before it started", "cancel")
        after_end(session, run)
        return run, True
    if run.status == approvals.WAITING:
        approvals.end_waiting(
            session, run, "cancelled", "cancelled while awaiting approval", stop="cancel"
        )
        after_end(session, run)
        return run, True
    run.stop_requested = run.stop_requested or "cancel"
    announce_run(session, run)
    events.announce(session, events.run_cancel_requested(run.id, run.owner))
    return run, False


def _cancel_queued(session: Session, run: Run, reason: str, stop: str) -> None:
    """End a queued run, saying what stopped it (``stop_requested``).

    The caller decides what starts in its place. A run queued to resume after
    its tool calls were decided (:mod:`zerg.runs.approvals`) began before:
    its calls are answered (or, for a rollback, its messages removed) and its
    stream ends.
    """
    values = {"finished_at": utcnow(), "error": reason, "stop_requested": stop}
    if transition(session, run.id, ("queued",), "cancelled", **values) is None:
        return
    if run.started_at is not None:
        approvals.end_stream(session, run, reason, discard=stop == "rollback")
    announce_run(session, run)
