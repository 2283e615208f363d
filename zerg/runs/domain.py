"""Every change to a run, and the context a run sends its model.

A run is queued by a request, a websocket message or the scheduler; a worker
of the pool begins it, streams the model's reply with no session open, then
finishes it; it may be cancelled, fail, or be interrupted when its process
stops. Each of those is one function here, taking the caller's session and
leaving the commit to the caller. What they announce (``run_updated``, the
start and end of a streamed reply, the agent's state) goes out after that
commit, and a queued run reaches the worker pool only then too.

A thread runs one run at a time. A run asked for while another is active is
refused, queued behind it, or takes its place, as its ``multitask_strategy``
(:data:`zerg.schemas.MultitaskStrategy`) says. Runs waiting behind another
have no owner: whichever process ends a thread's run hands the thread's
oldest waiting run to its own pool (:func:`_start_next`). Everything that
queues, begins, stops or ends a thread's run holds the thread's row lock, so
a run never waits behind one that has already ended.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from dataclasses import field
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
from zerg.errors import Conflict
from zerg.errors import NotFound
from zerg.locks import Locks
from zerg.models import Agent
from zerg.models import Run
from zerg.models import utcnow
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs.pool import get_runner
from zerg.runs.providers import get_providers
from zerg.runs.providers.base import ChatMessages
from zerg.runs.providers.base import Provider
from zerg.runs.providers.base import Usage
from zerg.schemas import MultitaskStrategy
from zerg.schemas import RunOut
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import serialize

ACTIVE = ("queued", "running")
# The multitask strategies that stop the active run for the new one, and the
# error the stopped run ends with.
SUPERSEDED = {
    "interrupt": "interrupted by a newer run (multitask_strategy=interrupt)",
    "rollback": "rolled back for a newer run (multitask_strategy=rollback); "
    "its partial reply was removed",
}
# Runs started by people answer messages that arrive while they stream; task
# runs (manual, scheduled) answer only their task.
FOLLOW_UP_TRIGGERS = frozenset({"api", "websocket"})

log = logging.getLogger(__name__)


@dataclass
class Execution:
    """What a worker carries from beginning a run to finishing it."""

    run_id: int
    thread_id: int
    agent_id: int
    model: str
    provider: Provider
    messages: ChatMessages
    answered: list[int]
    started: float
    trigger: str
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    status: str = "success"
    error: str | None = None


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


def active_runs(session: Session, thread_id: int) -> list[Run]:
    """Return the thread's running run, if any, then its queued ones in the order they start.

    Runs the session holds already are read again: callers ask under the
    thread's lock, for what the other holders of the lock committed.
    """
    statement = (
        select(Run)
        .where(Run.thread_id == thread_id, Run.status.in_(ACTIVE))
        .order_by(Run.status.desc(), Run.id)  # "running" sorts before "queued"
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(statement))


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
    _announce_run(session, run)
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
    """Stop an active run for a newer one: a queued run at once, a running one at its next piece.

    The running run's owner learns of it over the bus, like a cancel; how the
    run ends (its reply kept or removed) is recorded on the row, where the
    run's end reads it, so a run that ends before the request reaches it
    still ends as the request said, and one that ended first is left alone.
    """
    if run.status == "queued":
        _cancel_queued(session, run, SUPERSEDED[strategy])
        return
    # A rollback outranks an earlier interrupt or cancel, an interrupt a cancel.
    if strategy == "rollback" or run.stop_requested not in SUPERSEDED:
        run.stop_requested = strategy
    _announce_run(session, run)
    events.announce(session, events.run_cancel_requested(run.id, run.owner))


def try_queue_thread_run(
    session: Session, thread_id: int, trigger: str, strategy: MultitaskStrategy = "reject"
) -> Run | None:
    """Queue a thread run as :func:`queue_thread_run` does, or return None where it refuses.

    For a message just stored: with ``reject`` and a run active, none is
    queued, and that run's follow-up answers the message. The attempt runs in
    a savepoint, so a refusal leaves the rest of the caller's transaction,
    such as that message, intact.
    """
    try:
        with session.begin_nested():
            return queue_thread_run(session, thread_id, trigger, strategy)
    except Conflict:
        return None


def _start_next(session: Session, thread_id: int) -> Run | None:
    """Take the thread's next queued run into this process's pool, if it is waiting for one.

    Called wherever a thread's run ends, holding the thread's lock. The next
    run is left alone while a run is running, and when a pool has it already
    (it has an owner: it started the thread's queue, or was taken before).
    """
    active = active_runs(session, thread_id)
    if not active or active[0].status == "running" or active[0].owner is not None:
        return None
    runner = get_runner(app_of(session))
    run = active[0]
    run.owner = runner.instance_id
    after_commit(session, partial(runner.submit, run.id))
    return run


def _lock_thread(session: Session, thread_id: int | None) -> bool:
    """Take a run's thread's lock before its run starts or ends; False if the thread is gone.

    Every change to the status of a thread's runs is made holding it, so that
    whoever queues, begins, stops or ends one sees the others' changes.
    """
    if thread_id is None:
        return False
    try:
        conversations.load_thread(session, thread_id, lock=True)
    except NotFound:
        return False
    return True


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

    A queued run is cancelled at once. For a running one, a cancel request
    goes out on the bus once the session commits; the process that owns the
    run (this one or another) stops it, and it finishes ``cancelled`` keeping
    its partial reply. Raises Conflict for a finished run.
    """
    run = load_run(session, run_id)
    _lock_thread(session, run.thread_id)
    session.refresh(run)
    if run.status not in ACTIVE:
        raise Conflict(f"Run {run_id} has already finished ({run.status}).")
    if run.status == "queued":
        _cancel_queued(session, run, "cancelled before it started")
        if run.thread_id is not None:
            _start_next(session, run.thread_id)
        return run, True
    run.stop_requested = run.stop_requested or "cancel"
    _announce_run(session, run)
    events.announce(session, events.run_cancel_requested(run.id, run.owner))
    return run, False


def _cancel_queued(session: Session, run: Run, reason: str) -> None:
    """End a run that never started (the caller decides what starts in its place)."""
    run.status, run.finished_at, run.error = "cancelled", utcnow(), reason
    _announce_run(session, run)


def build_context(
    session: Session, agent: Agent, thread_id: int, limit: int
) -> tuple[list[dict[str, str]], list[int]]:
    """Return the messages to send the model and the ids of the messages they answer.

    When the thread is longer than ``limit`` the newest messages are kept:
    the model must see what it is answering. The unanswered ones are read
    first: under PostgreSQL's READ COMMITTED each statement sees the newest
    commits, so a message that lands in between is then in the context but
    not marked answered (a follow-up run answers it), rather than marked
    answered without the model having seen it.
    """
    answered = conversations.unanswered(session, thread_id)
    newest = conversations.context_messages(session, thread_id, limit)
    messages = [{"role": "system", "content": agent.system_instructions}]
    if not agent.system_instructions.strip():
        messages = []
    messages += [{"role": role, "content": content} for role, content in reversed(newest)]
    return messages, answered


def begin_run(session: Session, run_id: int) -> Execution | None:
    """Mark a queued run and its agent running and gather what the model needs.

    Returns None when there is nothing to execute: the run was cancelled,
    superseded or deleted before a worker got to it, or no provider offers
    its agent's model (the run then fails at once, and the thread's next run
    may start).
    """
    run = session.get(Run, run_id)
    if run is None or run.status != "queued" or not _lock_thread(session, run.thread_id):
        return None
    # Read again under the thread's lock: a newer run may have superseded it.
    if active_runs(session, run.thread_id)[:1] != [run]:
        return None  # cancelled, or its turn comes when the runs ahead of it end
    agent = session.get(Agent, run.agent_id)
    if agent is None:
        return None
    app = app_of(session)
    provider = get_providers(app).provider_for(agent.model)
    now = utcnow()
    run.started_at = now
    if provider is None:
        error = f"no configured provider offers model {agent.model!r}"
        run.status, run.finished_at, run.error, run.duration_ms = "failed", now, error, 0
        agent.last_error = error
        _settle_agent(session, agent, "failed")
        _count_outcome(session, agent, run)
        log.warning(
            "run %s ended: agent %s, trigger %s, status failed: %s",
            run.id,
            agent.id,
            run.trigger,
            error,
        )
        _announce_run(session, run)
        agents.announce_update(session, agent)
        _start_next(session, run.thread_id)
        return None
    messages, answered = build_context(
        session, agent, run.thread_id, app.config["RUN_CONTEXT_MESSAGES"]
    )
    run.status = "running"
    agent.status = "running"
    _announce_run(session, run)
    agents.announce_update(session, agent)
    events.announce(session, events.stream_event(EventType.STREAM_START, run.thread_id, run.id))
    log.info(
        "run %s started: agent %s, trigger %s, model %s", run.id, agent.id, run.trigger, agent.model
    )
    return Execution(
        run_id=run.id,
        thread_id=run.thread_id,
        agent_id=agent.id,
        model=agent.model,
        provider=provider,
        messages=messages,
        answered=answered,
        started=time.monotonic(),
        trigger=run.trigger,
    )


def finish_run(session: Session, execution: Execution) -> None:
    """Store a streamed run's outcome: its reply, its status, its agent's, the next run.

    A cancelled or interrupted run keeps what it streamed, marked partial; a
    run stopped for a newer one ends as that one's strategy asked (its
    ``stop_requested``), keeping or removing its reply, even if its stream
    had reached the end before the request did. Then the thread's next
    queued run starts; with none, messages that arrived while a person's run
    streamed get a run of their own. If the thread, the run or the agent was
    deleted meanwhile, only the end of the stream is announced.
    """
    if not _lock_thread(session, execution.thread_id):
        log.info("run %s ended after its thread was deleted", execution.run_id)
        _announce_end(session, execution)
        return
    run = session.get(Run, execution.run_id)
    agent = session.get(Agent, execution.agent_id)
    if run is None or agent is None:
        log.info("run %s ended after its agent was deleted", execution.run_id)
        _announce_end(session, execution)
        return
    discard = run.stop_requested == "rollback"
    if run.stop_requested and execution.status in ("success", "cancelled"):
        execution.status, execution.error = "cancelled", SUPERSEDED.get(run.stop_requested)
    text = "".join(execution.parts)
    if text and not discard and execution.status in ("success", "cancelled", "interrupted"):
        reply = ThreadMessageCreate(role="assistant", content=text)
        partial_reply = execution.status != "success"
        conversations.add_message(
            session, execution.thread_id, reply, processed=True, partial=partial_reply
        )
        conversations.mark_answered(session, execution.answered)
    _announce_end(session, execution, discarded=discard and bool(text))
    _record(run, agent, execution)
    _settle_agent(session, agent, execution.status)
    _count_outcome(session, agent, run)
    _announce_run(session, run)
    agents.announce_update(session, agent)
    if _start_next(session, execution.thread_id) is not None:
        return
    if execution.status == "success" and execution.trigger in FOLLOW_UP_TRIGGERS:
        try_queue_thread_run(session, execution.thread_id, execution.trigger)


def _record(run: Run, agent: Agent, execution: Execution) -> None:
    now = utcnow()
    run.status = execution.status
    run.finished_at = now
    run.duration_ms = int((time.monotonic() - execution.started) * 1000)
    run.error = execution.error
    if execution.usage is not None:
        run.prompt_tokens = execution.usage.prompt_tokens
        run.completion_tokens = execution.usage.completion_tokens
        run.total_tokens = execution.usage.total_tokens
    agent.last_error = execution.error if execution.status == "failed" else None
    log.info(
        "run %s ended: agent %s, trigger %s, status %s, %d ms, %s tokens",
        run.id,
        agent.id,
        run.trigger,
        run.status,
        run.duration_ms,
        run.total_tokens if run.total_tokens is not None else "unknown",
    )


def _count_outcome(session: Session, agent: Agent, run: Run) -> None:
    """Record a run's end on its agent, and pause a schedule that keeps failing.

    A success, whatever started it, clears the count of scheduled runs that
    failed in a row; reaching SCHEDULE_MAX_FAILURES turns the schedule off
    (the agent's event tells the scheduler) and says why in ``last_error``.
    Cancelled and interrupted runs neither count nor clear.
    """
    agent.last_run_at, agent.last_run_status = run.finished_at, run.status
    if run.status == "success":
        agent.consecutive_failures = 0
    elif run.status == "failed" and run.trigger == "schedule":
        agent.consecutive_failures += 1
        limit = app_of(session).config["SCHEDULE_MAX_FAILURES"]
        if agent.consecutive_failures >= limit and agent.run_on_schedule:
            agent.run_on_schedule, agent.next_run_at = False, None
            agent.last_error = (
                f"schedule paused after {agent.consecutive_failures} scheduled runs failed "
                f"in a row; the last: {run.error}"
            )
            log.warning("agent %s: %s", agent.id, agent.last_error)


def fail_run(session: Session, run_id: int, error: str, thread_id: int | None = None) -> None:
    """Record a failure the worker could not handle, and end the stream watchers wait on.

    ``thread_id`` names the thread whose watchers saw the stream start, if it
    had started; the end goes out even if the run itself is gone.
    """
    run = session.get(Run, run_id)
    locked = run is not None and run.status in ACTIVE and _lock_thread(session, run.thread_id)
    if run is not None and locked:
        session.refresh(run)
    if run is not None and run.status in ACTIVE:
        run.status, run.error, run.finished_at = "failed", error, utcnow()
        _announce_run(session, run)
        agent = session.get(Agent, run.agent_id)
        if agent is not None:
            agent.last_error = error
            _settle_agent(session, agent, "failed")
            _count_outcome(session, agent, run)
            agents.announce_update(session, agent)
    if thread_id is not None:
        _announce_stream_end(session, thread_id, run_id, "failed", error)
    if run is not None and run.thread_id is not None and locked:
        _start_next(session, run.thread_id)


def mark_interrupted(
    session: Session, *, owner: str | None = None, dead: Locks | None = None
) -> int:
    """Mark unfinished runs interrupted and free their agents; return how many.

    With ``owner``, only that process's runs (it is shutting down). With
    ``dead``, the runs whose owner no longer holds its liveness lock: a
    process that died cannot finish them, while a live sibling's runs are
    left alone. With neither, every unfinished run. Runs that never started
    end interrupted too, rather than wait for a process to adopt them, and so
    do the runs waiting behind them (which have no owner yet), and waiting
    runs left with nothing ahead of them: their messages stay unanswered,
    ready for a new run, and the thread is free for one.
    """

    def gone(run: Run) -> bool:
        if run.owner is None:  # waiting: it goes if what it waits for goes
            return False
        if owner is not None:
            return run.owner == owner
        return dead is None or not dead.held_elsewhere(liveness_lock(run.owner))

    statement = select(Run).where(Run.status.in_(ACTIVE)).order_by(Run.id)
    unfinished = list(session.scalars(statement))
    # Threads that keep a run with a live owner keep their waiting runs too.
    alive = {run.thread_id for run in unfinished if run.owner is not None and not gone(run)}
    stale = [
        run for run in unfinished if gone(run) or (run.owner is None and run.thread_id not in alive)
    ]
    now = utcnow()
    for run in stale:
        if run.status == "queued":
            run.error = "the process that queued it stopped before it started"
        else:
            run.error = "the process running it stopped before it finished"
        run.status, run.finished_at = "interrupted", now
        _announce_run(session, run)
    # One ended run per agent is enough for its record: they all ended alike.
    ended = {run.agent_id: run for run in stale}
    for agent_id in sorted(ended):
        agent = session.get(Agent, agent_id)
        if agent is not None:
            _count_outcome(session, agent, ended[agent_id])
            if agent.status == "running":
                _settle_agent(session, agent, "interrupted")
            agents.announce_update(session, agent)
    if stale:
        log.warning("marked %d unfinished run(s) as interrupted", len(stale))
    return len(stale)


def _settle_agent(session: Session, agent: Agent, outcome: str) -> None:
    """Set the agent's status after one of its runs ended with ``outcome``.

    It stays ``running`` while another of its runs executes; otherwise a
    failure leaves it ``error`` and any other end ``idle``.
    """
    session.flush()
    # Runs of one agent that end at once take turns on its row, so the last
    # to end sees that the others have (PostgreSQL reads committed rows only).
    # FOR NO KEY UPDATE, not FOR UPDATE: the latter also waits for the key-share
    # locks that inserting the agent's new threads and runs takes, and with a
    # scheduled tick being queued at the same moment PostgreSQL saw a deadlock.
    locked = select(Agent.id).where(Agent.id == agent.id).with_for_update(key_share=True)
    session.execute(locked)
    if agents.is_running(session, agent.id):
        agent.status = "running"
    else:
        agent.status = "error" if outcome == "failed" else "idle"


def liveness_lock(instance_id: str) -> str:
    """Name the lock a runner holds for as long as its process lives."""
    return f"runner:{instance_id}"


def _announce_run(session: Session, run: Run) -> None:
    session.flush()
    events.announce(session, events.run_updated(serialize(RunOut, run)))


def _announce_end(session: Session, execution: Execution, *, discarded: bool = False) -> None:
    _announce_stream_end(
        session,
        execution.thread_id,
        execution.run_id,
        execution.status,
        execution.error,
        discarded=discarded,
    )


def _announce_stream_end(
    session: Session,
    thread_id: int,
    run_id: int,
    status: str,
    error: str | None,
    *,
    discarded: bool = False,
) -> None:
    """Announce a stream's end; ``discarded``: what it streamed was removed, not stored."""
    end = events.stream_event(
        EventType.STREAM_END, thread_id, run_id, status=status, error=error, discarded=discarded
    )
    events.announce(session, end)
