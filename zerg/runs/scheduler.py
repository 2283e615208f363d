"""Cron schedules: APScheduler jobs that start agents' task runs.

``init_app`` builds the scheduler (stopped) and keeps it in ``app.extensions``;
only the serving entry points start it (see ``zerg.serving``), so tests and
CLI commands never spin up job threads. Agent events keep the jobs in step
with the database while it runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from apscheduler.events import EVENT_JOB_ERROR
from apscheduler.events import EVENT_JOB_MISSED
from apscheduler.events import JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from flask import current_app
from sqlalchemy.exc import IntegrityError

from zerg import agents
from zerg.db import session_scope
from zerg.locks import Locks
from zerg.models import Agent
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.runs import cron
from zerg.runs import domain

EXTENSION_KEY = "zerg.scheduler"
REAP_SECONDS = 30

log = logging.getLogger(__name__)


def job_id(agent_id: int) -> str:
    return f"agent-{agent_id}"


def last_fire_time(trigger: CronTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """Return the latest time the trigger fired at or before ``now``, within ``lookback``."""
    fire = trigger.get_next_fire_time(None, now - lookback)
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest


def run_scheduled_agent(app: Flask, agent_id: int, scheduled_for: datetime | None = None) -> bool:
    """The job: start one scheduled run of the agent; False if it was not started.

    It is handed the real app (never ``current_app``, which does not cross
    into APScheduler's threads). The run is keyed by (agent, scheduled
    time), so a trigger that fires twice, here or in another process, starts
    one run.
    """
    grace = app.config["SCHEDULER_MISFIRE_GRACE_SECONDS"]
    try:
        with session_scope(app) as session:
            agent = session.get(Agent, agent_id)
            if agent is None or not (agent.run_on_schedule and agent.schedule):
                log.info("agent %s is no longer scheduled; skipping", agent_id)
                return False
            trigger = cron.parse(agent.schedule)
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


def reap_interrupted(app: Flask, dead: Locks) -> None:
    """The job: interrupt the runs of processes that died, without waiting for a restart."""
    with session_scope(app) as session:
        domain.mark_interrupted(session, dead=dead)


@dataclass
class Scheduler:
    """The app's APScheduler and the glue that keeps its jobs in step with agents."""

    app: Flask
    scheduler: BackgroundScheduler
    # The schedule each agent's job runs on, so that an agent event that did
    # not touch the schedule (a run changing its status) leaves the job alone.
    applied: dict[int, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self, reaper: Locks | None = None) -> None:
        """Schedule every scheduled agent, then start the job thread.

        ``next_run_at`` is refreshed on the way, since ticks missed while no
        scheduler ran are not run later. With ``reaper`` (the process's locks),
        the scheduler also interrupts, every REAP_SECONDS, the runs of
        processes that died, so they do not wait for a restart.
        """
        if self.running:
            return
        if reaper is not None:
            self.scheduler.add_job(
                reap_interrupted,
                "interval",
                seconds=REAP_SECONDS,
                args=[self.app, reaper],
                id="reap-interrupted-runs",
            )
        with session_scope(self.app) as session:
            for agent in agents.scheduled_agents(session):
                self.sync(agent.id, agent.schedule, agent.run_on_schedule)
                agents.advance_schedule(session, agent)
        self.scheduler.start()
        log.info("scheduler started with %d job(s)", len(self.scheduler.get_jobs()))

    def shutdown(self) -> None:
        if self.running:
            self.scheduler.shutdown(wait=False)

    def sync(self, agent_id: int, schedule: str | None, run_on_schedule: bool) -> None:
        """Add, replace or remove the agent's job to match its settings."""
        wanted = schedule if schedule and run_on_schedule else None
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
            trigger=cron.parse(wanted),
            args=[self.app, agent_id],
            id=job_id(agent_id),
            name=f"agent {agent_id}: {wanted}",
        )

    def on_event(self, event: Event) -> None:
        """Follow agent creations, updates and deletions (bus subscriber)."""
        if event.type is EventType.AGENT_DELETED:
            self.sync(event.data["id"], None, False)
        elif event.type in (EventType.AGENT_CREATED, EventType.AGENT_UPDATED):
            self.sync(event.data["id"], event.data["schedule"], event.data["run_on_schedule"])

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
