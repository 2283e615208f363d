"""A run's status: a state machine that the database keeps.

``queued → running → success | failed | cancelled | interrupted``, and a run
that never started may end ``cancelled``, ``failed`` or ``interrupted`` too.
A running run whose tool calls need a person's yes waits ``awaiting_approval``
(:mod:`zerg.runs.approvals`), holding its thread but no worker and no
process, and goes back to ``queued`` once every call is decided; a cancel or
a newer run's strategy may end it while it waits.
Every change of status is one conditional ``UPDATE … WHERE status IN (…)``
(:func:`transition`) whose row count says whether it happened: of two enders
racing (a worker finishing, a cancel, the reaper, the sweep) exactly one wins,
and a final state is never left. The winner alone does the rest of the ending
(the reply, the agent's record, the events).

Every change to the status of a thread's runs is also made holding the
thread's row lock (:func:`lock_thread`), so whoever queues, begins, stops or
ends one reads what the others committed. Locks are taken in one order: the
thread, then the run's agent (:func:`lock_agent_of`), then the run. The agent
comes before the run because a scheduled tick fired twice holds the agent
(it advanced its schedule) while its duplicate run waits on the runs' unique
index for whoever last wrote a run of that tick: had that writer changed the
run first and then waited for the agent, each would wait for the other.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import agents
from zerg import conversations
from zerg.db import app_of
from zerg.domain_errors import NotFound
from zerg.models import Run
from zerg.models import Thread
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.schemas import RunOut
from zerg.schemas import serialize

# The statuses of a run that has not ended: no other is ever left.
ACTIVE = ("queued", "running", "awaiting_approval")
# The statuses of a thread's one run that has begun and not ended (the
# database's uq_runs_running_thread index allows one per thread).
HOLDING = ("running", "awaiting_approval")

log = logging.getLogger(__name__)


def lock_thread(session: Session, thread_id: int) -> bool:
    """Take a run's thread's lock before its run starts or ends; False if the thread is gone."""
    try:
        conversations.load_thread(session, thread_id, lock=True)
    except NotFound:
        return False
    return True


def lock_thread_of(session: Session, run_id: int) -> Run | None:
    """Load a run and take its thread's lock, in one statement; None if either is gone.

    What :func:`lock_thread` does for a run about to begin, a round trip
    sooner: under gevent, every round trip of a transaction is another turn
    waiting for the hub while it holds its locks.
    """
    statement = (
        select(Run)
        .join(Thread, Thread.id == Run.thread_id)
        .where(Run.id == run_id)
        .with_for_update(of=Thread)
        .execution_options(populate_existing=True)
    )
    run: Run | None = session.scalars(statement).one_or_none()
    return run


def active_runs(session: Session, thread_id: int) -> list[Run]:
    """Return the thread's running or waiting run, if any, then its queued ones in turn.

    Runs the session holds already are read again: callers ask under the
    thread's lock, for what the other holders of the lock committed.
    """
    statement = (
        select(Run)
        .where(Run.thread_id == thread_id, Run.status.in_(ACTIVE))
        .order_by(case((Run.status.in_(HOLDING), 0), else_=1), Run.id)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(statement))


def lock_agent_of(session: Session, run: Run | None) -> None:
    """Take the lock of a run's agent before changing the run's status (see the order above)."""
    if run is not None:
        try:
            agents.lock_agent(session, run.agent_id)
        except NotFound:
            pass


def transition(
    session: Session, run_id: int, sources: Collection[str], status: str, **values: Any
) -> Run | None:
    """Move a run from one of ``sources`` to ``status``; return it as stored, or None if it was not.

    None means the run is in none of ``sources`` (another ender won, or it is
    gone), and the caller must then change nothing else. The caller
    announces the run (:func:`announce_run`) once its other events are.
    """
    statement = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(tuple(sources)))
        .values(status=status, **values)
        .returning(Run)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    run: Run | None = session.scalars(statement).one_or_none()
    return run


def record_end(session: Session, run: Run) -> None:
    """Record an ended run on its agent: status, last error, outcome, failures in a row.

    The agent is read afresh under its row lock: runs of one agent that end
    at once take turns on it, so the last to end sees that the others have,
    and a count is never raised from a stale value. It stays ``running``
    while another of its runs executes; otherwise a failure leaves it
    ``error`` and any other end ``idle`` (a run that never started leaves an
    agent that is not running as it was, unless it failed). A success clears
    the count of scheduled runs that failed in a row; reaching
    SCHEDULE_MAX_FAILURES turns the schedule off (the agent's event tells the
    scheduler) and says why in ``last_error``. Cancelled and interrupted runs
    neither count nor clear.
    """
    try:
        agent = agents.lock_agent(session, run.agent_id)
    except NotFound:
        return
    if run.status == "failed":
        agent.last_error = run.error
    elif run.status != "interrupted":
        agent.last_error = None
    if agent.status == "running" or run.status == "failed":
        if agents.is_running(session, agent.id):
            agent.status = "running"
        else:
            agent.status = "error" if run.status == "failed" else "idle"
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
    agents.announce_update(session, agent)


def announce_run(session: Session, run: Run) -> None:
    """Announce a run's new state to its watchers once the session commits."""
    session.flush()
    events.announce(session, events.run_updated(serialize(RunOut, run)))


def announce_stream_end(
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
