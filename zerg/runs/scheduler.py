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
from flask import Flask
from flask import current_app
from sqlalchemy.exc import IntegrityError

from zerg import agents
from zerg import idempotency
from zerg.db import session_scope
from zerg.locks import Locks
from zerg.models import Agent
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.runs import cron
from zerg.runs import domain
from zerg.runs import lifecycle

EXTENSION_KEY = "zerg.scheduler"
# A job's schedule: the cron expression and the zone it is read in.
Schedule = tuple[str, str]
# The lock whose holder, alone of all processes on the database, schedules.
LOCK = "scheduler"
# Of the ticks missed while no scheduler ran: how many to keep, and to log one by one.
MISSED_KEPT = 1000
MISSED_LOGGED = 10
TICK = timedelta(microseconds=1)

log = logging.getLogger(__name__)


REAPER = "reap-interrupted-runs"
PURGER = "purge-idempotency-keys"
# Expired keys are ignored at once by lookups; deleting them can wait this long.
PURGE_SECONDS = 3600


def job_id(agent_id: int) -> str:
    return f"agent-{agent_id}"


def last_fire_time(
    trigger: cron.CronTrigger, now: datetime, lookback: timedelta
) -> datetime | None:
    """Return the latest time the trigger fired at or before ``now``, within ``lookback``."""
    latest: datetime = next(trigger.fire_times_before(now + TICK))
    return latest.astimezone(UTC) if latest >= now - lookback else None


def run_scheduled_agent(app: Flask, agent_id: int, scheduled_for: datetime | None = None) -> bool:
    """The job: start one scheduled run of the agent; False if it was not started.

    It is handed the real app (never ``current_app``, which does not cross
    into APScheduler's threads). The run is keyed by (agent, scheduled
    time), so a trigger that fires twice, here or in another process, starts
    one run.
    """
    grace = app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"]
    if not get_scheduler(app).holds_lock():
        # Between losing the lock and noticing it, the scheduler still fires.
        log.warning("agent %s fired after this process lost the scheduler lock; skipping", agent_id)
        return False
    try:
        with session_scope(app) as session:
            agent = session.get(Agent, agent_id)
            if agent is None or not (agent.run_on_schedule and agent.schedule):
                log.info("agent %s is no longer scheduled; skipping", agent_id)
                return False
            trigger = cron.parse(agent.schedule, agent.timezone)
            now = datetime.now(UTC)
            scheduled_for = scheduled_for or last_fire_time(
                trigger, now, timedelta(seconds=grace + 60)
            )
            if scheduled_for is None:
                log.warning("agent %s fired with no matching schedule time; skipping", agent_id)
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

        ``next_run_at`` is refreshed on the way, since ticks missed while no
        scheduler ran are not run later. With ``locks`` (the process's, holding
        the scheduler lock), jobs check the lock before each run, and the
        scheduler interrupts, every RUN_REAP_SECONDS, the runs of processes that
        died (their lock free at two passes), so they do not wait for a
        restart, and deletes the expired
        idempotency keys every PURGE_SECONDS.
        """
        if self.running:
            return
        # Not under the lock: the commit publishes agent events, and on the
        # in-memory bus their delivery (on_event) takes the lock while the
        # bus holds its own, so holding ours here could deadlock.
        now = datetime.now(UTC)
        latest_only = self.app.config["SCHEDULE_CATCH_UP"] == "latest"
        catch_up: list[tuple[int, datetime]] = []
        with session_scope(self.app) as session:
            scheduled = agents.scheduled_agents(session)
            for agent in scheduled:
                missed = missed_ticks(agent, now)
                if missed and latest_only:
                    catch_up.append((agent.id, missed.pop(0)))
                for fire in missed[:MISSED_LOGGED]:
                    log.warning("agent %s missed its tick at %s: no scheduler ran", agent.id, fire)
                if len(missed) > MISSED_LOGGED:
                    more = len(missed) - MISSED_LOGGED
                    log.warning("agent %s missed %d earlier ticks too", agent.id, more)
                agents.advance_schedule(session, agent)
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
            self._apply(wanted)
            if self.scheduler.state == STATE_PAUSED:
                self.scheduler.resume()
            else:
                self.scheduler.start()
        for agent_id, tick in catch_up:
            log.info("agent %s: catching up on its latest missed tick, %s", agent_id, tick)
            run_scheduled_agent(self.app, agent_id, tick)
        log.info("scheduler started with %d job(s)", len(self.scheduler.get_jobs()))

    def pause(self) -> None:
        """Stop starting runs (the lock was lost) until :meth:`start` is called again."""
        with self._lock:
            if self.running:
                self.scheduler.pause()

    def shutdown(self) -> None:
        with self._lock:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)

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

    def _apply(self, wanted: dict[int, Schedule]) -> None:
        with self._lock:
            for agent_id in set(self.applied) - set(wanted):
                self.sync(agent_id, None, False)
            for agent_id, (schedule, timezone) in wanted.items():
                self.sync(agent_id, schedule, True, timezone)

    def sync(
        self,
        agent_id: int,
        schedule: str | None,
        run_on_schedule: bool,
        timezone: str = cron.DEFAULT_ZONE,
    ) -> None:
        """Add, replace or remove the agent's job to match its settings."""
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
            self.scheduler.add_job(
                run_scheduled_agent,
                trigger=cron.parse(*wanted),
                args=[self.app, agent_id],
                id=job_id(agent_id),
                name=f"agent {agent_id}: {wanted[0]} ({wanted[1]})",
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
    background = BackgroundScheduler(
        timezone=UTC,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"],
        },
    )
    background.add_listener(_log_job_problem, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    scheduler = Scheduler(app=app, scheduler=background)
    app.extensions[EXTENSION_KEY] = scheduler
    events.get_bus(app).subscribe(scheduler.on_event)
