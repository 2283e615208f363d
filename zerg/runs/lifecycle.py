"""A run from the moment a worker takes it to its end, and the runs that lost their worker.

A worker of the pool begins a run (:func:`begin_run`), streams the model's
reply with no session open, then finishes it (:func:`finish_run`), or records
a failure it could not handle (:func:`fail_run`). The runs of a process that
died are interrupted by another (:func:`mark_interrupted`: the reaper, and
every process as it starts); a run whose own process lost track of it, its
end never stored, is ended by that process's sweep (:func:`sweep_lost`).

Each of them ends the run through a conditional transition
(:mod:`zerg.runs.states`): the first to commit wins, and the others change
nothing at all. Every end of a run that had started announces ``stream_end``
to its watchers; then the thread's next run, or a follow-up for the messages
that arrived meanwhile, starts (:func:`zerg.runs.domain.after_end`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from zerg import agent_tools
from zerg import agents
from zerg import conversations
from zerg.db import after_commit
from zerg.db import app_of
from zerg.domain_errors import NotFound
from zerg.locks import Liveness
from zerg.models import Run
from zerg.models import utcnow
from zerg.providers import get_providers
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import approvals
from zerg.runs import tool_calls
from zerg.runs.context import build_context
from zerg.runs.context import chat_options
from zerg.runs.domain import SUPERSEDED
from zerg.runs.domain import after_end
from zerg.runs.execution_state import Execution
from zerg.runs.pool import get_runner
from zerg.runs.states import ACTIVE
from zerg.runs.states import active_runs
from zerg.runs.states import announce_run
from zerg.runs.states import announce_stream_end
from zerg.runs.states import lock_agent_of
from zerg.runs.states import lock_thread
from zerg.runs.states import lock_thread_of
from zerg.runs.states import record_end
from zerg.runs.states import transition
from zerg.schemas import ThreadMessageCreate

# Why the sweep ended a run: its worker is done with it, but its end was never stored.
LOST = "the run's end could not be stored (a database error); its process ended it later"

log = logging.getLogger(__name__)


def liveness_lock(instance_id: str) -> str:
    """Name the lock a runner holds for as long as its process lives."""
    return f"runner:{instance_id}"


def begin_run(session: Session, run_id: int) -> Execution | None:
    """Mark a queued run and its agent running and gather what the model needs.

    Returns None when there is nothing to execute: the run was cancelled,
    superseded or deleted before a worker got to it, or no provider offers
    its agent's model (the run then fails at once, and the thread's next run
    may start). The agent is read under a shared lock (``lock_agent``): a
    change of its status, or an end of one of its runs, waits for this run to
    be committed and then sees it running. An agent that was not running yet
    is marked so by :func:`mark_agent_running`, after this commits:
    marking it here would mean two runs of one agent beginning at once
    each waiting for the other's shared lock.
    """
    run = lock_thread_of(session, run_id)
    if run is None or run.status != "queued":
        return None
    thread_id = run.thread_id
    # Read under the thread's lock: a newer run may have superseded it.
    if active_runs(session, thread_id)[:1] != [run]:
        return None  # cancelled, or its turn comes when the runs ahead of it end
    try:
        agent = agents.lock_agent(session, run.agent_id, shared=True)
    except NotFound:
        return None
    app = app_of(session)
    provider = get_providers(app).provider_for(agent.model)
    now = utcnow()
    if provider is None:
        error = f"no configured provider offers model {agent.model!r}"
        values = {"started_at": now, "finished_at": now, "error": error, "duration_ms": 0}
        failed = transition(session, run.id, ("queued",), "failed", **values)
        if failed is not None:
            _close(session, failed, streamed=False)
        return None
    # A run resumed after its calls were decided has begun before: it goes on.
    began = run.started_at
    started = transition(session, run.id, ("queued",), "running", started_at=began or now)
    if started is None:
        return None
    rounds = tool_calls.last_round(session, run.id) if began is not None else 0
    calls: list[tool_calls.Call] = []
    call_ids: set[str] = set()
    if rounds:
        tool_calls.answer_rejected(session, run.id, thread_id)
        calls = tool_calls.start_pending(session, run.id)
        call_ids = tool_calls.used_ids(session, run.id)
    messages, answered = build_context(
        session,
        agent,
        thread_id,
        app.config["RUN_CONTEXT_MESSAGES"],
        until=began,
        open_calls={call.tool_call_id for call in calls},
    )
    registry = agent_tools.registry_for(session, agent)
    announce_run(session, started)
    events.announce(session, events.stream_event(EventType.STREAM_START, thread_id, run.id))
    log.info(
        "run %s started: agent %s, trigger %s, model %s", run.id, agent.id, run.trigger, agent.model
    )
    return Execution(
        run_id=run.id,
        thread_id=thread_id,
        agent_id=agent.id,
        model=agent.model,
        provider=provider,
        messages=messages,
        answered=answered,
        started=time.monotonic() - ((now - began).total_seconds() if began else 0),
        trigger=run.trigger,
        registry=registry,
        options=chat_options(agent, registry),
        agent_was_running=agent.status == "running",
        round=rounds,
        calls=calls,
        call_ids=call_ids,
    )


def mark_agent_running(session: Session, execution: Execution) -> None:
    """Mark a begun run's agent running, if it is not yet and one of its runs still is.

    One conditional UPDATE (``agents.mark_running``): it takes the agent's
    lock only when it changes the row, so of the runs of an idle agent that
    begin at once the first marks it and the others, finding it running, wait
    for nothing. An end of another run committed in between may have set it
    idle without seeing this run; this run may itself have ended already.
    """
    agents.mark_running(session, execution.agent_id)


def finish_run(session: Session, execution: Execution) -> None:
    """Store a streamed run's outcome: its reply, its status, its agent's, what comes next.

    A cancelled or interrupted run keeps what it streamed, marked partial; a
    run stopped for a newer one ends as that one's strategy asked (its
    ``stop_requested``), keeping or removing its reply, even if its stream
    had reached the end before the request did. A run that something else
    ended first (the reaper took its process for dead) stays as that left it:
    its late reply is dropped. If the thread was deleted meanwhile, only the
    end of the stream is announced.
    """
    if not lock_thread(session, execution.thread_id):
        log.info("run %s ended after its thread was deleted", execution.run_id)
        _announce_end(session, execution)
        return
    run = session.get(Run, execution.run_id, populate_existing=True)
    lock_agent_of(session, run)
    stop = run.stop_requested if run is not None else None
    discard = stop == "rollback"
    if stop and execution.status in ("success", "cancelled"):
        execution.status, execution.error = "cancelled", SUPERSEDED.get(stop)
    values = {
        "finished_at": utcnow(),
        "duration_ms": int((time.monotonic() - execution.started) * 1000),
        "error": execution.error,
    }
    if execution.usage is not None:
        values["prompt_tokens"] = execution.usage.prompt_tokens
        values["completion_tokens"] = execution.usage.completion_tokens
        values["total_tokens"] = execution.usage.total_tokens
    ended = transition(session, execution.run_id, ("running",), execution.status, **values)
    if ended is None:
        log.warning("run %s had ended before its worker did; nothing changes", execution.run_id)
        return
    if discard:
        conversations.delete_run_messages(session, ended.id)
    elif execution.round:
        # Before its reply and its stream's end: a cancel during a call answers it.
        _close_calls(session, ended)
    text = "".join(execution.parts)
    wrote = bool(text) or execution.round > 0
    if wrote and not discard and ended.status in ("success", "cancelled", "interrupted"):
        if text:
            reply = ThreadMessageCreate(role="assistant", content=text)
            conversations.add_message(
                session,
                execution.thread_id,
                reply,
                processed=True,
                partial=ended.status != "success",
                run_id=execution.run_id,
            )
        conversations.mark_answered(session, execution.answered)
    _announce_end(session, execution, discarded=discard and wrote)
    # Its calls are answered above; a rolled-back run's still need their statuses.
    calls = discard and execution.round > 0
    _close(session, ended, streamed=False, answered=execution.answered, calls=calls)


def fail_run(session: Session, run_id: int, error: str, execution: Execution | None = None) -> None:
    """Record a failure the worker could not handle, and end the stream watchers wait on.

    ``execution`` is what the worker had begun, if it had begun the run. A
    run something else ended first is left as it is; one deleted with its
    thread meanwhile gets only the end of its stream announced.
    """
    run = session.get(Run, run_id)
    if run is not None and lock_thread(session, run.thread_id):
        run = session.get(Run, run_id, populate_existing=True)
    lock_agent_of(session, run)
    streamed = run is not None and run.status == "running"
    ended = transition(session, run_id, ACTIVE, "failed", finished_at=utcnow(), error=error)
    if ended is not None:
        answered = execution.answered if execution is not None else None
        _close(session, ended, streamed=streamed, answered=answered)
    elif execution is not None and session.get(Run, run_id, populate_existing=True) is None:
        announce_stream_end(session, execution.thread_id, run_id, "failed", error)


def mark_interrupted(
    session: Session, *, owner: str | None = None, dead: Liveness | None = None
) -> int:
    """Interrupt the runs of a process that stopped or died; return how many.

    With ``owner``, that process's runs: it is shutting down, and nothing
    follows them. With ``dead``, the runs whose owner no longer holds its
    liveness lock: a process that died cannot finish them, while a live
    sibling's runs are left alone, and so are this process's own, whatever
    its lock looks like (its lost runs are its sweep's). Their threads' next
    runs and follow-ups then start here. Runs that never started end
    interrupted too, rather than wait for a process to adopt them, and so do
    the runs waiting behind them (which have no owner yet), and waiting runs
    left with nothing ahead of them: their messages stay unanswered, ready
    for a new run, and the thread is free for one.

    A run awaiting approval has no process to lose (:mod:`zerg.runs.approvals`):
    it is left waiting, and so are the runs queued behind it. A run queued to
    resume once its calls were decided, which no worker has begun again, is
    not ended either, since a person's decision would be lost: with ``dead``
    this process adopts it (owner and pool), with ``owner`` it is let go
    (no owner), for the next process that recovers runs to adopt.
    """
    if (owner is None) == (dead is None):
        raise TypeError("mark_interrupted takes either the owner that stopped or the locks")
    runner = get_runner(app_of(session))
    me = runner.instance_id
    verdicts: dict[str, bool] = {}

    def gone(run_owner: str | None) -> bool:
        if run_owner is None:
            return False
        if owner is not None:
            return run_owner == owner
        if run_owner not in verdicts:
            alive = run_owner == me or (dead is not None and dead.held(liveness_lock(run_owner)))
            verdicts[run_owner] = not alive
        return verdicts[run_owner]

    def kept(run: Run) -> bool:
        # Waiting for a person, or decided and waiting to resume: never ended here.
        return run.status == approvals.WAITING or approvals.resuming(run)

    def stale(runs: list[Run]) -> list[Run]:
        alive = any(kept(run) or (run.owner is not None and not gone(run.owner)) for run in runs)
        return [
            run for run in runs if not kept(run) and (gone(run.owner) if run.owner else not alive)
        ]

    def orphaned(runs: list[Run]) -> list[Run]:
        return [
            run
            for run in runs
            if approvals.resuming(run) and (gone(run.owner) or (run.owner is None and dead))
        ]

    def choose(runs: list[Run]) -> list[Run]:
        # Called under the thread's lock: the runs to hand over are settled here too.
        for run in orphaned(runs):
            run.owner = None if dead is None else me
            if dead is not None:
                after_commit(session, partial(runner.submit, run.id))
            log.warning("run %s, decided and waiting to resume, handed to %s", run.id, run.owner)
        return stale(runs)

    by_thread: dict[int, list[Run]] = {}
    for run in session.scalars(select(Run).where(Run.status.in_(ACTIVE)).order_by(Run.id)):
        by_thread.setdefault(run.thread_id, []).append(run)
    return _end_runs(
        session,
        [thread_id for thread_id, runs in by_thread.items() if stale(runs) or orphaned(runs)],
        choose,
        "interrupted",
        lambda run: (
            "the process running it stopped before it finished"
            if run.status == "running"
            else "the process that queued it stopped before it started"
        ),
        follow=dead is not None,
    )


def _unheld(session: Session) -> list[tuple[int, str, int]]:
    """Return (id, status, thread) of this process's active runs that its pool does not hold.

    The runs are read first, then the pool: a run not held by then has left
    the pool (or never reached it); it was not merely on its way in.
    """
    runner = get_runner(app_of(session))
    mine = select(Run.id, Run.status, Run.thread_id).where(
        Run.owner == runner.instance_id, Run.status.in_(ACTIVE)
    )
    rows = [(run_id, status, thread_id) for run_id, status, thread_id in session.execute(mine)]
    held = runner.held()
    return [row for row in rows if row[0] not in held]


def has_lost_runs(session: Session) -> bool:
    """Tell whether :func:`sweep_lost` has work, reading only (it needs a write session)."""
    return bool(_unheld(session))


def sweep_lost(session: Session) -> int:
    """End this process's runs that its pool has lost; return how many ended.

    A running run the pool no longer holds has a worker that is done with it
    and could store neither its end nor its failure (the database was away):
    it ends ``failed`` now. A queued run the pool does not hold (committed
    but not yet handed over, or dropped) is handed to the pool again, which
    is harmless if the first hand-over comes too: a run begins only once.
    """
    runner = get_runner(app_of(session))
    me = runner.instance_id
    unheld = _unheld(session)
    for run_id, status, _thread_id in unheld:
        if status == "queued":
            after_commit(session, partial(runner.submit, run_id))

    def lost(runs: list[Run]) -> list[Run]:
        # Read under the thread's lock, then what the pool holds: a run not
        # held by then has left the pool, and its end cannot commit meanwhile.
        running = [run for run in runs if run.owner == me and run.status == "running"]
        still_held = runner.held()
        return [run for run in running if run.id not in still_held]

    suspects = [thread_id for _run_id, status, thread_id in unheld if status == "running"]
    return _end_runs(session, suspects, lost, "failed", lambda _run: LOST, follow=True)


def _end_runs(
    session: Session,
    thread_ids: Iterable[int],
    choose: Callable[[list[Run]], list[Run]],
    status: str,
    reason: Callable[[Run], str],
    *,
    follow: bool,
) -> int:
    """End the runs ``choose`` picks among the active runs of some threads; return how many.

    Every thread is locked first, in id order, and only then are agents and
    runs changed, the order every ender keeps: two of them never wait for
    each other.
    """
    chosen: list[Run] = []
    for thread_id in sorted(set(thread_ids)):
        if lock_thread(session, thread_id):
            chosen += choose(active_runs(session, thread_id))
    ended: list[tuple[Run, bool]] = []
    now = utcnow()
    for run in chosen:
        streamed, error = run.status == "running", reason(run)
        lock_agent_of(session, run)
        done = transition(session, run.id, ACTIVE, status, finished_at=now, error=error)
        if done is not None:
            ended.append((done, streamed))
    for run, streamed in ended:
        if streamed and status == "interrupted":
            # Its owner may live after all (its lock looked free): it stops streaming.
            events.announce(session, events.run_cancel_requested(run.id, run.owner))
        _close(session, run, streamed=streamed, follow=follow)
    if ended:
        ids = ", ".join(str(run.id) for run, _streamed in ended)
        log.warning("ended %d run(s) as %s: %s", len(ended), status, ids)
    return len(ended)


def _close(
    session: Session,
    run: Run,
    *,
    streamed: bool,
    answered: Collection[int] | None = None,
    follow: bool = True,
    calls: bool = True,
) -> None:
    """Do the rest of a run's end, after its transition: announce, record, start what follows.

    ``streamed``: its stream started and its end is not announced yet.
    Tool calls it left without a result are answered first, whatever ended
    it, unless ``calls`` is False: its worker, which knows whether it made
    any, has answered them (one statement less for every run that made none).
    """
    if calls:
        _close_calls(session, run)
    if streamed:
        announce_stream_end(session, run.thread_id, run.id, run.status, run.error)
    log.info(
        "run %s ended: agent %s, trigger %s, status %s, %s ms, %s tokens",
        run.id,
        run.agent_id,
        run.trigger,
        run.status,
        run.duration_ms if run.duration_ms is not None else "unknown",
        run.total_tokens if run.total_tokens is not None else "unknown",
    )
    announce_run(session, run)
    record_end(session, run)
    if follow:
        after_end(session, run, answered)


def _close_calls(session: Session, run: Run) -> None:
    approvals.close_open_calls(session, run, run.error or f"the run ended {run.status}")


def _announce_end(session: Session, execution: Execution, *, discarded: bool = False) -> None:
    announce_stream_end(
        session,
        execution.thread_id,
        execution.run_id,
        execution.status,
        execution.error,
        discarded=discarded,
    )
