"""Cron schedules: APScheduler jobs that start agents' task runs.

``init_app`` builds the scheduler (stopped) and keeps it in ``app.extensions``;
only the serving entry points start it (see ``zerg.serving``), so tests and
CLI commands never spin up job threads. Agent events keep the jobs in step
with the database while it runs, and the process holding the scheduler lock
also reconciles them with the database every poll, since an event can be
lost, or come while the scheduler is loading.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from apscheduler.events import EVENT_JOB_ERROR
from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.events import JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from flask import current_app
from sqlalchemy.exc import IntegrityError

from zerg import agents
from zerg import cron
from zerg import idempotency
from zerg.config import ConfigError
from zerg.db import session_scope
from zerg.locks import Locks
from zerg.models import Agent
from zerg.models import utcnow
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.runs import approvals
from zerg.runs import domain
from zerg.runs import lifecycle
from zerg.runs.ticks import SCHEDULED_TIME
from zerg.runs.ticks import TickExecutor

EXTENSION_KEY = "zerg.scheduler"
# A job's schedule: the cron expression and the zone it is read in.
Schedule = tuple[str, str]
# What the scheduler reads the time from: an aware datetime, UTC by default.
Clock = Callable[[], datetime]
# The lock whose holder, alone of all processes on the database, schedules.
LOCK = "scheduler"
# Of the ticks missed while no scheduler ran: how many to keep, and to log one by one.
MISSED_KEPT = 1000
MISSED_LOGGED = 10
TICK = timedelta(microseconds=1)

log = logging.getLogger(__name__)


REAPER = "reap-interrupted-runs"
PURGER = "purge-idempotency-keys"
APPROVALS = "expire-tool-approvals"
# Expired keys are ignored at once by lookups; deleting them can wait this long.
PURGE_SECONDS = 3600


def job_id(agent_id: int) -> str:
    return f"agent-{agent_id}"


def run_scheduled_agent(app: Flask, agent_id: int, scheduled_for: datetime) -> bool:
    """The job: start the agent's run for the tick ``scheduled_for``; False if it was not started.

    It is handed the real app (never ``current_app``, which does not cross
    into APScheduler's threads) and the tick by its trigger (see
    :mod:`zerg.runs.ticks`), never one read from the clock. The run is keyed
    by (agent, scheduled time), so a tick fired twice, here or in another
    process, starts one run.
    """
    if not get_scheduler(app).holds_lock():
        # Between losing the lock and noticing it, the scheduler still fires.
        log.warning("agent %s fired after this process lost the scheduler lock; skipping", agent_id)
        return False
    scheduled_for = scheduled_for.astimezone(UTC)
    try:
        with session_scope(app) as session:
            agent = session.get(Agent, agent_id)
            if agent is None or not (agent.run_on_schedule and agent.schedule):
                log.info("agent %s is no longer scheduled; skipping", agent_id)
                return False
            agents.advance_schedule(session, agent, scheduled_for + timedelta(seconds=1))
            if not agent.task_instructions.strip():
                # Nothing to run is the agent's state, not the scheduler's failure.
                log.warning("agent %s has no task instructions; skipping its tick", agent_id)
                return False
            run = domain.queue_agent_run(session, agent_id, "schedule", scheduled_for)
            log.info(
                "schedule fired: agent %s, scheduled for %s, run %s",
                agent_id,
                scheduled_for.isoformat(),
                run.id,
            )
    except IntegrityError:
        log.info("agent %s already ran for %s; skipping the duplicate", agent_id, scheduled_for)
        return False
    return True


@dataclass
class SecondLook:
    """The liveness locks as the reaper reads them: free only if free at its last pass too.

    On PostgreSQL a live process's locks vanish with their connection, until
    its keeper takes them again within SCHEDULER_LOCK_POLL_SECONDS. A lock
    found free at two passes RUN_REAP_SECONDS apart is a dead process's.
    """

    locks: Locks
    free_before: frozenset[str]
    free: set[str] = field(default_factory=set)

    def held(self, name: str) -> bool:
        if self.locks.held(name):
            return True
        self.free.add(name)
        return name not in self.free_before


def reap_interrupted(app: Flask, dead: Locks) -> None:
    """The job: interrupt the runs of processes that died, without waiting for a restart.

    A process counts as dead once its liveness lock was free at two passes
    in a row (:class:`SecondLook`). Never this process's own: it is alive,
    whatever its lock looks like.
    """
    jobs = get_scheduler(app)
    look = SecondLook(dead, jobs.free_locks)
    with session_scope(app) as session:
        lifecycle.mark_interrupted(session, dead=look)
    jobs.free_locks = frozenset(look.free)


def purge_idempotency_keys(app: Flask) -> int:
    """The job: delete the expired idempotency keys; return how many went.

    Only the scheduler lock's holder purges, so that processes sharing the
    database do not all delete the same rows.
    """
    if not get_scheduler(app).holds_lock():
        log.warning("the purge fired after this process lost the scheduler lock; skipping")
        return 0
    with session_scope(app) as session:
        purged = idempotency.purge_expired(session)
    if purged:
        log.info("purged %d expired idempotency key(s)", purged)
    return purged


def expire_approvals(app: Flask) -> int:
    """The job: reject the tool calls nobody decided on in time; return how many.

    Only the scheduler lock's holder does it, reading the scheduler's clock;
    a pass that finds nothing overdue only reads. The runs it resumes go to
    this process's pool.
    """
    jobs = get_scheduler(app)
    if not jobs.holds_lock():
        log.warning("the approvals' timeout fired after this process lost the scheduler lock")
        return 0
    now = jobs.clock()
    with session_scope(app, write=False) as session:
        if not approvals.has_overdue(session, now):
            return 0
    with session_scope(app) as session:
        return approvals.expire_overdue(session, now)


def missed_ticks(agent: Agent, now: datetime) -> list[datetime]:
    """Return the ticks the agent's schedule passed while no process was scheduling, newest first.

    ``next_run_at`` is the tick the last scheduler was waiting for: every tick
    from it up to ``now`` went by without a run. At most MISSED_KEPT are listed.
    """
    if agent.schedule is None or agent.next_run_at is None or agent.next_run_at >= now:
        return []
    times = cron.parse(agent.schedule, agent.timezone).fire_times_before(now)
    due = agent.next_run_at
    missed = itertools.takewhile(lambda fire: fire >= due, itertools.islice(times, MISSED_KEPT))
    return [fire.astimezone(UTC) for fire in missed]


@dataclass
class Scheduler:
    """The app's APScheduler and the glue that keeps its jobs in step with agents.

    Its jobs change from request threads (agent events on the in-memory bus),
    the event listener (Redis) and the keeper thread (start, reconcile), so
    every change to them is made under one lock; nothing is published while
    it is held.
    """

    app: Flask
    scheduler: BackgroundScheduler
    # The schedule (and zone) each agent's job runs on, so that an agent event
    # that did not touch it (a run changing its status) leaves the job alone.
    applied: dict[int, Schedule] = field(default_factory=dict)
    # The process's locks once it holds the scheduler lock: jobs check it
    # before they start a run.
    locks: Locks | None = None
    # Where "now" comes from for the ticks: which were missed, which come next.
    clock: Clock = utcnow
    # The liveness locks the reaper found free at its last pass.
    free_locks: frozenset[str] = frozenset()
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def running(self) -> bool:
        """True while this process schedules: started, and not paused for a lost lock."""
        return bool(self.scheduler.state == STATE_RUNNING)

    def holds_lock(self) -> bool:
        """Tell whether this process may start scheduled runs (always, without locks)."""
        return self.locks is None or self.locks.holds(LOCK)

    def start(self, locks: Locks | None = None) -> None:
        """Schedule every scheduled agent, then start (or resume) the job thread.

        Of the ticks an agent's schedule passed while no process scheduled it
        (the last holder died, lost its lock or was stopped), the latest runs
        now if it is still within SCHEDULER_MISFIRE_GRACE_SECONDS, as it would
        have run late on a busy holder, so a failover or a restart that
        straddles a tick does not lose it; with SCHEDULE_CATCH_UP=latest it
        runs whatever its age. The others are logged and skipped, and
        ``next_run_at`` moves on to the next tick. With ``locks`` (the
        process's, holding the scheduler lock), jobs check the lock before
        each run, and the scheduler interrupts, every RUN_REAP_SECONDS, the runs of
        processes that died (their lock free at two passes), so they do not
        wait for a restart, deletes the expired idempotency keys every
        PURGE_SECONDS, and rejects the tool calls whose approval is overdue
        every TOOL_APPROVAL_CHECK_SECONDS.
        """
        if self.running:
            return
        # Not under the lock: the commit publishes agent events, and on the
        # in-memory bus their delivery (on_event) takes the lock while the
        # bus holds its own, so holding ours here could deadlock.
        now = self.clock()
        oldest_kept = now - timedelta(seconds=self.app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"])
        any_age = self.app.config["SCHEDULE_CATCH_UP"] == "latest"
        catch_up: list[tuple[int, datetime]] = []
        with session_scope(self.app) as session:
            scheduled = agents.scheduled_agents(session)
            for agent in scheduled:
                missed = missed_ticks(agent, now)
                if missed and (any_age or missed[0] >= oldest_kept):
                    catch_up.append((agent.id, missed.pop(0)))
                for fire in missed[:MISSED_LOGGED]:
                    log.warning("agent %s missed its tick at %s: no scheduler ran", agent.id, fire)
                if len(missed) > MISSED_LOGGED:
                    more = len(missed) - MISSED_LOGGED
                    log.warning("agent %s missed %d earlier ticks too", agent.id, more)
                # The first tick at or after now: the job's first, below.
                agents.advance_schedule(session, agent, now - TICK)
            wanted = {
                agent.id: (agent.schedule, agent.timezone) for agent in scheduled if agent.schedule
            }
        with self._lock:
            if self.running:
                return
            self.locks, self.free_locks = locks, frozenset()
            if locks is not None and self.scheduler.get_job(REAPER) is None:
                self.scheduler.add_job(
                    reap_interrupted,
                    "interval",
                    seconds=self.app.config["RUN_REAP_SECONDS"],
                    args=[self.app, locks],
                    id=REAPER,
                )
            if locks is not None and self.scheduler.get_job(PURGER) is None:
                self.scheduler.add_job(
                    purge_idempotency_keys,
                    "interval",
                    seconds=PURGE_SECONDS,
                    args=[self.app],
                    id=PURGER,
                )
            if locks is not None and self.scheduler.get_job(APPROVALS) is None:
                self.scheduler.add_job(
                    expire_approvals,
                    "interval",
                    seconds=self.app.config["TOOL_APPROVAL_CHECK_SECONDS"],
                    args=[self.app],
                    id=APPROVALS,
                )
            # Jobs made before a pause wait for ticks that the holder since
            # may have run; each job now waits for the first tick from now on,
            # the ticks before it having been dealt with above.
            self._apply({})
            self._apply(wanted, now)
            if self.scheduler.state == STATE_PAUSED:
                self.scheduler.resume()
            else:
                self.scheduler.start()
        for late in catch_up:
            log.info("agent %s: running its tick of %s, missed while no scheduler ran", *late)
            run_scheduled_agent(self.app, *late)
        log.info("scheduler started with %d job(s)", len(self.scheduler.get_jobs()))

    def pause(self) -> None:
        """Stop starting runs (the lock was lost) until :meth:`start` is called again."""
        with self._lock:
            if self.running:
                self.scheduler.pause()

    def shutdown(self) -> None:
        """Stop scheduling; jobs already running finish on their own.

        BackgroundScheduler.shutdown also joins its thread, and under gevent
        that join was seen to wait forever in a SIGTERM drain, so the worker
        was killed at the graceful timeout and its websockets never got 1012.
        The thread is a daemon that leaves its loop once the scheduler's
        wake-up is set, which BlockingScheduler.shutdown does: that is enough.
        """
        with self._lock:
            if self.scheduler.running:
                BlockingScheduler.shutdown(self.scheduler, wait=False)

    def reconcile(self) -> None:
        """Make the jobs match the scheduled agents in the database.

        Events keep the jobs in step as changes happen; this repairs what an
        event cannot: one lost on its way, or one that came while the
        scheduler was loading an older state.
        """
        with session_scope(self.app, write=False) as session:
            wanted = {
                agent.id: (agent.schedule, agent.timezone)
                for agent in agents.scheduled_agents(session)
                if agent.schedule
            }
        self._apply(wanted)

    def _apply(self, wanted: dict[int, Schedule], now: datetime | None = None) -> None:
        with self._lock:
            for agent_id in set(self.applied) - set(wanted):
                self.sync(agent_id, None, False)
            for agent_id, (schedule, timezone) in wanted.items():
                self.sync(agent_id, schedule, True, timezone, now=now)

    def sync(
        self,
        agent_id: int,
        schedule: str | None,
        run_on_schedule: bool,
        timezone: str = cron.DEFAULT_ZONE,
        *,
        now: datetime | None = None,
    ) -> None:
        """Add, replace or remove the agent's job to match its settings.

        A new job waits for its first tick at or after ``now`` (by default the
        clock's, once the scheduler runs; a job added to a stopped scheduler
        gets its time when :meth:`start` adds it again).
        """
        wanted = (schedule, timezone) if schedule and run_on_schedule else None
        with self._lock:
            if self.applied.get(agent_id) == wanted:
                return
            # Remove, then add: a stopped APScheduler keeps pending jobs in a list
            # where replace_existing does not replace, so a job changed before
            # start would otherwise be scheduled twice.
            if self.scheduler.get_job(job_id(agent_id)) is not None:
                self.scheduler.remove_job(job_id(agent_id))
            if wanted is None:
                self.applied.pop(agent_id, None)
                return
            self.applied[agent_id] = wanted
            trigger = cron.parse(*wanted)
            if now is None and self.running:
                now = self.clock()
            # APScheduler reads its own clock for a job given no first time.
            first = {} if now is None else {"next_run_time": trigger.get_next_fire_time(None, now)}
            self.scheduler.add_job(
                run_scheduled_agent,
                trigger=trigger,
                args=[self.app, agent_id],
                kwargs={"scheduled_for": SCHEDULED_TIME},
                id=job_id(agent_id),
                name=f"agent {agent_id}: {wanted[0]} ({wanted[1]})",
                **first,
            )

    def on_event(self, event: Event) -> None:
        """Follow agent creations, updates and deletions (bus subscriber)."""
        if event.type is EventType.AGENT_DELETED:
            self.sync(event.data["id"], None, False)
        elif event.type in (EventType.AGENT_CREATED, EventType.AGENT_UPDATED):
            data = event.data
            self.sync(data["id"], data["schedule"], data["run_on_schedule"], data["timezone"])

    def jobs(self) -> list[tuple[str, str, datetime | None]]:
        """List (job id, name, next run time) of the scheduled jobs."""
        return [
            (job.id, job.name, getattr(job, "next_run_time", None))
            for job in self.scheduler.get_jobs()
        ]


def _log_job_problem(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning("scheduled job %s missed its time %s", event.job_id, event.scheduled_run_time)
    else:
        log.error(
            "scheduled job %s failed: %r", event.job_id, event.exception, exc_info=event.exception
        )


def get_scheduler(app: Flask | None = None) -> Scheduler:
    """Return the current (or given) app's scheduler."""
    target = app if app is not None else current_app
    scheduler: Scheduler = target.extensions[EXTENSION_KEY]
    return scheduler


def init_app(app: Flask) -> None:
    """Build the app's scheduler, stopped; ``zerg.serving.start`` starts it."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.scheduler is already registered on this app")
    clock = app.config.get("SCHEDULER_CLOCK", utcnow)
    if not callable(clock):
        raise ConfigError(f"SCHEDULER_CLOCK must be a function returning the time, not {clock!r}")
    background = BackgroundScheduler(
        timezone=UTC,
        executors={"default": TickExecutor()},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"],
        },
    )
    background.add_listener(_log_job_problem, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler = Scheduler(app=app, scheduler=background, clock=clock)
    app.extensions[EXTENSION_KEY] = scheduler
    events.get_bus(app).subscribe(scheduler.on_event)
