"""Runs: an agent answering a thread, streamed live and stored.

Starting a run (``queue_thread_run`` / ``queue_agent_run``) is a plain
database write in the caller's session; the caller commits, publishes, then
hands the run id to the app's :class:`Runner`, whose bounded worker pool
executes it. A worker never holds a session while the model talks: it opens
one short ``session_scope`` to begin, none while streaming, and one to finish.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime

from flask import Flask
from flask import current_app
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zerg import events
from zerg.db import session_scope
from zerg.errors import Conflict
from zerg.events import EventType
from zerg.llm import get_providers
from zerg.llm.base import ChatMessages
from zerg.llm.base import Provider
from zerg.llm.base import ProviderError
from zerg.llm.base import Usage
from zerg.locks import Locks
from zerg.models import Agent
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.models import utcnow
from zerg.schemas import AgentOut
from zerg.schemas import RunOut
from zerg.schemas import ThreadMessageOut
from zerg.schemas import serialize

EXTENSION_KEY = "zerg.runner"
ACTIVE = ("queued", "running")
FOLLOW_UP_TRIGGERS = frozenset({"api", "websocket"})

log = logging.getLogger(__name__)


def active_run_id(session: Session, thread_id: int) -> int | None:
    """Return the id of the thread's queued or running run, if it has one."""
    return session.scalar(
        select(Run.id).where(Run.thread_id == thread_id, Run.status.in_(ACTIVE)).limit(1)
    )


def has_unanswered(session: Session, thread_id: int) -> bool:
    """Tell whether the thread has user messages no run has answered yet."""
    return bool(
        session.scalar(
            select(func.count())
            .select_from(ThreadMessage)
            .where(
                ThreadMessage.thread_id == thread_id,
                ThreadMessage.role == "user",
                ThreadMessage.processed.is_(False),
            )
        )
    )


def queue_thread_run(session: Session, thread: Thread, trigger: str, owner: str) -> Run:
    """Add a queued run of the thread's agent on its unanswered messages.

    Raises Conflict when the thread already has an active run or nothing to
    answer. Two racing requests are settled by the database's one-active-run
    index; the loser gets the same Conflict.
    """
    running = active_run_id(session, thread.id)
    if running is not None:
        raise Conflict(f"Thread {thread.id} already has an active run ({running}).")
    if not has_unanswered(session, thread.id):
        raise Conflict(f"Thread {thread.id} has no unanswered user message to run on.")
    run = Run(
        agent_id=thread.agent_id, thread_id=thread.id, trigger=trigger, status="queued", owner=owner
    )
    session.add(run)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"Thread {thread.id} already has an active run.") from None
    return run


def queue_thread_run_if_idle(
    session: Session, thread: Thread, trigger: str, owner: str
) -> Run | None:
    """Queue a thread run unless one is active (or there is nothing to answer).

    The attempt runs in a savepoint, so losing a race for the thread leaves
    the rest of the caller's transaction, such as the message just stored,
    intact.
    """
    try:
        with session.begin_nested():
            return queue_thread_run(session, thread, trigger, owner)
    except Conflict:
        return None


def queue_agent_run(
    session: Session,
    agent: Agent,
    trigger: str,
    owner: str,
    scheduled_for: datetime | None = None,
) -> tuple[Thread, ThreadMessage, Run]:
    """Start the agent's task in a thread of its own; return the thread, task message and run.

    Task runs never write into a conversation someone has open. A scheduled
    run that fires twice for the same time fails here on the (agent,
    scheduled time) unique constraint, which callers treat as "already ran".
    """
    if not agent.task_instructions.strip():
        raise Conflict(f"Agent {agent.id} has no task instructions to run.")
    when = (scheduled_for or utcnow()).strftime("%Y-%m-%d %H:%M UTC")
    kind = "scheduled" if trigger == "schedule" else "manual"
    thread = Thread(
        agent_id=agent.id,
        title=f"{agent.name} · {kind} run {when}"[:255],
        thread_type=kind,
    )
    session.add(thread)
    session.flush()
    message = ThreadMessage(thread_id=thread.id, role="user", content=agent.task_instructions)
    run = Run(
        agent_id=agent.id,
        thread_id=thread.id,
        trigger=trigger,
        status="queued",
        scheduled_for=scheduled_for,
        owner=owner,
    )
    session.add_all([message, run])
    session.flush()
    return thread, message, run


def build_context(
    session: Session, agent: Agent, thread_id: int, limit: int
) -> tuple[list[dict[str, str]], list[int]]:
    """Return the messages to send the model and the ids of the messages they answer.

    When the thread is longer than ``limit`` the newest messages are kept:
    the model must see what it is answering.
    """
    newest = session.scalars(
        select(ThreadMessage)
        .where(ThreadMessage.thread_id == thread_id, ThreadMessage.role != "tool")
        .order_by(ThreadMessage.timestamp.desc(), ThreadMessage.id.desc())
        .limit(limit)
    ).all()
    messages = [{"role": "system", "content": agent.system_instructions}]
    if not agent.system_instructions.strip():
        messages = []
    messages += [{"role": m.role, "content": m.content} for m in reversed(newest)]
    unanswered = session.scalars(
        select(ThreadMessage.id).where(
            ThreadMessage.thread_id == thread_id,
            ThreadMessage.role == "user",
            ThreadMessage.processed.is_(False),
        )
    ).all()
    return messages, list(unanswered)


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


class Runner:
    """The app's bounded pool of run workers, and the cancel switches of its runs."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        # Names this process as the owner of the runs it queues and executes.
        self.instance_id = uuid.uuid4().hex[:16]
        self._interrupting = False
        self.coalesce = app.config["STREAM_COALESCE_SECONDS"]
        self.context_messages = app.config["RUN_CONTEXT_MESSAGES"]
        self._pool = ThreadPoolExecutor(
            max_workers=app.config["RUN_WORKERS"], thread_name_prefix="zerg-run"
        )
        self._lock = threading.Lock()
        self._cancels: dict[int, threading.Event] = {}

    def submit(self, run_id: int) -> None:
        """Execute a committed, queued run in the background."""
        with self._lock:
            self._cancels[run_id] = threading.Event()
        self._pool.submit(self._execute, run_id)

    def cancel(self, run_id: int) -> bool:
        """Ask this process's worker to stop the run; False if it runs nowhere here."""
        with self._lock:
            switch = self._cancels.get(run_id)
        if switch is None:
            return False
        switch.set()
        return True

    def shutdown(self, grace: float = 0.0) -> None:
        """Stop taking runs; give running ones ``grace`` seconds, then interrupt them.

        Interrupted runs keep what they streamed, marked partial; runs still
        waiting in the queue are marked interrupted without starting. Only the
        first call does anything.
        """
        with self._lock:
            if self._interrupting:
                return
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        while self._running_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            self._interrupting = True
            for switch in self._cancels.values():
                switch.set()
        self._pool.shutdown(wait=True)
        mark_interrupted(self.app, owner=self.instance_id)

    def _running_ids(self) -> list[int]:
        with self._lock:
            return list(self._cancels)

    def in_flight(self) -> int:
        """Count the runs submitted here that have not finished."""
        with self._lock:
            return len(self._cancels)

    def _execute(self, run_id: int) -> None:
        try:
            execution = self._begin(run_id)
            if execution is not None:
                self._stream(execution)
                self._finish(execution)
        except Exception:
            log.exception("run %s failed unexpectedly", run_id)
            self._fail_quietly(run_id, "internal error while running")
        finally:
            with self._lock:
                self._cancels.pop(run_id, None)

    def _begin(self, run_id: int) -> Execution | None:
        """Mark the run and its agent running, and gather what the model needs."""
        with session_scope(self.app) as session:
            run = session.get(Run, run_id)
            if run is None or run.status != "queued" or run.thread_id is None:
                return None
            agent = session.get(Agent, run.agent_id)
            if agent is None:
                return None
            provider = get_providers(self.app).provider_for(agent.model)
            now = utcnow()
            run.started_at = now
            if provider is None:
                error = f"no configured provider offers model {agent.model!r}"
                run.status, run.finished_at, run.error, run.duration_ms = "failed", now, error, 0
                agent.status, agent.last_error = "error", error
                run_payload, agent_payload = serialize(RunOut, run), serialize(AgentOut, agent)
                execution = None
            else:
                messages, answered = build_context(
                    session, agent, run.thread_id, self.context_messages
                )
                run.status = "running"
                agent.status = "running"
                run_payload, agent_payload = serialize(RunOut, run), serialize(AgentOut, agent)
                execution = Execution(
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
        events.publish(events.run_updated(run_payload), self.app)
        events.publish(events.agent_event(EventType.AGENT_UPDATED, agent_payload), self.app)
        if execution is not None:
            events.publish(
                events.stream_event(EventType.STREAM_START, execution.thread_id, run_id), self.app
            )
        return execution

    def _stream(self, execution: Execution) -> None:
        """Relay the model's deltas, coalesced, until it ends, fails or is cancelled."""
        with self._lock:
            switch = self._cancels.get(execution.run_id) or threading.Event()
        pending: list[str] = []
        last_flush = 0.0

        def flush() -> None:
            nonlocal last_flush
            if pending:
                chunk = events.stream_event(
                    EventType.STREAM_CHUNK,
                    execution.thread_id,
                    execution.run_id,
                    content="".join(pending),
                )
                events.publish(chunk, self.app)
                pending.clear()
            last_flush = time.monotonic()

        stream = execution.provider.stream(execution.model, execution.messages)
        try:
            for item in stream:
                if switch.is_set():
                    break
                if isinstance(item, Usage):
                    execution.usage = item
                    continue
                execution.parts.append(item)
                pending.append(item)
                if time.monotonic() - last_flush >= self.coalesce:
                    flush()
            if switch.is_set():
                if self._interrupting:
                    execution.status = "interrupted"
                    execution.error = "the server shut down before the run finished"
                else:
                    execution.status = "cancelled"
            flush()
        except ProviderError as exc:
            execution.status, execution.error = "failed", str(exc)
        except Exception:
            log.exception("provider %s failed on run %s", execution.provider.name, execution.run_id)
            execution.status, execution.error = "failed", "the model provider failed unexpectedly"
        finally:
            # Closing the generator is how a provider learns to hang up.
            stream.close()

    def _finish(self, execution: Execution) -> None:
        """Store the outcome in one transaction, then announce it."""
        text = "".join(execution.parts)
        stored: dict[str, object] | None = None
        run_payload = agent_payload = None
        follow_up: int | None = None
        try:
            with session_scope(self.app) as session:
                # The thread's lock first, as message writers take it: see
                # zerg.api.threads.load_thread for why.
                thread = session.get(Thread, execution.thread_id, with_for_update=True)
                run = session.get(Run, execution.run_id)
                agent = session.get(Agent, execution.agent_id)
                if run is None or agent is None or thread is None:
                    log.info("run %s ended after its agent or thread was deleted", execution.run_id)
                else:
                    keep_reply = execution.status == "success" or (
                        execution.status in ("cancelled", "interrupted") and text
                    )
                    if keep_reply:
                        message = ThreadMessage(
                            thread_id=thread.id,
                            role="assistant",
                            content=text,
                            processed=True,
                            partial=execution.status != "success",
                        )
                        session.add(message)
                        session.execute(
                            update(ThreadMessage)
                            .where(ThreadMessage.id.in_(execution.answered))
                            .values(processed=True)
                        )
                        thread.updated_at = utcnow()
                        session.flush()
                        stored = serialize(ThreadMessageOut, message)
                    self._record(run, agent, execution)
                    session.flush()
                    run_payload, agent_payload = serialize(RunOut, run), serialize(AgentOut, agent)
                    if (
                        execution.status == "success"
                        and execution.trigger in FOLLOW_UP_TRIGGERS
                        and has_unanswered(session, thread.id)
                    ):
                        # Messages that arrived while this run streamed get their own run.
                        queued = queue_thread_run_if_idle(
                            session, thread, execution.trigger, self.instance_id
                        )
                        follow_up = queued.id if queued is not None else None
        except IntegrityError:
            # The agent was deleted between our reads and our writes (PostgreSQL).
            log.info("run %s ended after its agent was deleted", execution.run_id)
            stored = run_payload = agent_payload = None
            follow_up = None
        self._announce_end(execution, stored, run_payload, agent_payload)
        if follow_up is not None:
            self._announce_queued(follow_up)
            self.submit(follow_up)

    @staticmethod
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
        agent.last_run_at = now
        if execution.status == "failed":
            agent.status, agent.last_error = "error", execution.error
        else:
            agent.status, agent.last_error = "idle", None

    def _announce_end(
        self,
        execution: Execution,
        stored: dict[str, object] | None,
        run_payload: dict[str, object] | None,
        agent_payload: dict[str, object] | None,
    ) -> None:
        if stored is not None:
            events.publish(events.thread_message_created(stored), self.app)
        end = events.stream_event(
            EventType.STREAM_END,
            execution.thread_id,
            execution.run_id,
            status=execution.status,
            error=execution.error,
        )
        events.publish(end, self.app)
        if run_payload is not None:
            events.publish(events.run_updated(run_payload), self.app)
        if agent_payload is not None:
            events.publish(events.agent_event(EventType.AGENT_UPDATED, agent_payload), self.app)

    def _announce_queued(self, run_id: int) -> None:
        with session_scope(self.app, write=False) as session:
            run = session.get(Run, run_id)
            payload = serialize(RunOut, run) if run is not None else None
        if payload is not None:
            events.publish(events.run_updated(payload), self.app)

    def _fail_quietly(self, run_id: int, error: str) -> None:
        """Record a failure the worker could not handle, without raising again."""
        try:
            with session_scope(self.app) as session:
                run = session.get(Run, run_id)
                if run is not None and run.status in ACTIVE:
                    run.status, run.error, run.finished_at = "failed", error, utcnow()
                    agent = session.get(Agent, run.agent_id)
                    if agent is not None:
                        agent.status, agent.last_error = "error", error
        except Exception:
            log.exception("could not record the failure of run %s", run_id)


def mark_interrupted(app: Flask, *, owner: str | None = None, dead: Locks | None = None) -> int:
    """Mark unfinished runs interrupted and free their agents; return how many.

    With ``owner``, only that process's runs (it is shutting down). With
    ``dead``, the runs whose owner no longer holds its liveness lock, or has
    none: a process that died cannot finish them, while a live sibling's runs
    are left alone.
    """
    with session_scope(app) as session:
        statement = select(Run).where(Run.status.in_(ACTIVE))
        if owner is not None:
            statement = statement.where(Run.owner == owner)
        stale = [
            run
            for run in session.scalars(statement)
            if dead is None
            or run.owner is None
            or not dead.held_elsewhere(liveness_lock(run.owner))
        ]
        now = utcnow()
        for run in stale:
            run.status, run.finished_at = "interrupted", now
            run.error = "the process running it stopped before it finished"
        agent_ids = {run.agent_id for run in stale}
        if agent_ids:
            session.execute(
                update(Agent)
                .where(Agent.id.in_(agent_ids), Agent.status == "running")
                .values(status="idle")
            )
        payloads = [serialize(RunOut, run) for run in stale]
    for payload in payloads:
        events.publish(events.run_updated(payload), app)
    if payloads:
        log.warning("marked %d unfinished run(s) as interrupted", len(payloads))
    return len(payloads)


def liveness_lock(instance_id: str) -> str:
    """Name the lock a runner holds for as long as its process lives."""
    return f"runner:{instance_id}"


def get_runner(app: Flask | None = None) -> Runner:
    """Return the current (or given) app's runner."""
    target = app if app is not None else current_app
    runner: Runner = target.extensions[EXTENSION_KEY]
    return runner


def init_app(app: Flask) -> None:
    """Give the app its runner (worker threads start with the first run)."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.runner is already registered on this app")
    app.extensions[EXTENSION_KEY] = Runner(app)
