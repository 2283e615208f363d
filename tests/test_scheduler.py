"""The cron scheduler: jobs follow agents, scheduled runs start once per tick."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from apscheduler.job import Job
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.helpers import Clock
from tests.helpers import create_agent
from tests.helpers import get_agent
from tests.helpers import parse_utc
from tests.helpers import wait_for
from zerg import cron
from zerg import serving
from zerg.config import ConfigError
from zerg.db import session_scope
from zerg.models import Agent
from zerg.models import Base
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.runs.scheduler import Scheduler
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import job_id
from zerg.runs.scheduler import run_scheduled_agent
from zerg.runs.ticks import SCHEDULED_TIME

Rows = Callable[[type[Base]], int]

# Generous for a slow PostgreSQL; every wait returns as soon as its condition holds.
DEADLINE_SECONDS = 10.0
APSCHEDULER_THREAD = "APScheduler"
TASK = "Summarise the overnight alerts"
EVERY_MINUTE = "* * * * *"
# Schedules that cannot fire while a test runs, unless it runs at 06:30 or on Monday 09:00.
WEEKLY = "0 9 * * 1"
DAILY = "30 6 * * *"


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(OFFLINE_DELAY_SECONDS=0.001)


# --- helpers -------------------------------------------------------------------


def update_agent(client: FlaskClient, agent_id: int, **fields: Any) -> dict[str, Any]:
    response = client.put(f"/api/agents/{agent_id}", json=fields)
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def delete_agent(client: FlaskClient, agent_id: int) -> None:
    response = client.delete(f"/api/agents/{agent_id}")
    assert response.status_code == 204, response.get_data(as_text=True)


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def soon(seconds: float = 0.2) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def runs_of(app: Flask, agent_id: int) -> list[Run]:
    with session_scope(app, write=False) as session:
        return list(session.scalars(select(Run).where(Run.agent_id == agent_id).order_by(Run.id)))


def finished_runs(app: Flask, agent_id: int, count: int) -> list[Run]:
    """Wait until the agent has ``count`` runs and none is queued or running."""

    def done() -> bool:
        runs = runs_of(app, agent_id)
        return len(runs) == count and all(run.status not in ("queued", "running") for run in runs)

    wait_for(done, f"{count} finished run(s) of agent {agent_id}")
    return runs_of(app, agent_id)


def thread_with_messages(app: Flask, thread_id: int) -> tuple[Thread, list[ThreadMessage]]:
    with session_scope(app, write=False) as session:
        thread = session.get(Thread, thread_id)
        assert thread is not None
        messages = list(
            session.scalars(
                select(ThreadMessage)
                .where(ThreadMessage.thread_id == thread_id)
                .order_by(ThreadMessage.id)
            )
        )
        return thread, messages


def job_ids(app: Flask) -> list[str]:
    return [identifier for identifier, _name, _next in get_scheduler(app).jobs()]


def job_for(app: Flask, agent_id: int) -> Job:
    job = get_scheduler(app).scheduler.get_job(job_id(agent_id))
    assert job is not None, f"agent {agent_id} has no job"
    return job


def upcoming(job: Job) -> datetime:
    """The job's next run: APScheduler's own once started, else its trigger's next fire."""
    next_run: datetime | None = getattr(job, "next_run_time", None)
    if next_run is None:
        next_run = job.trigger.get_next_fire_time(None, datetime.now(UTC))
    assert next_run is not None
    return next_run


def assert_job_follows(app: Flask, agent: dict[str, Any]) -> Job:
    """The agent has exactly one job, on its schedule, due when the API says it is."""
    assert job_ids(app) == [job_id(agent["id"])]
    job = job_for(app, agent["id"])
    assert str(job.trigger) == str(cron.parse(agent["schedule"], agent["timezone"]))
    assert upcoming(job) == parse_utc(agent["next_run_at"])
    return job


def scheduler_of(app: Flask, running: bool) -> Scheduler:
    scheduler = get_scheduler(app)
    if running:
        scheduler.start()
        assert scheduler.running
    return scheduler


def new_scheduler_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.name == APSCHEDULER_THREAD
    ]


def explode() -> None:
    raise RuntimeError("boom from a scheduled job")


def append_to(items: list[str], value: str) -> None:
    items.append(value)


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "zerg.runs.scheduler" and record.levelno == logging.ERROR
    ]


# --- jobs follow the agents ------------------------------------------------------

RUNNING = pytest.mark.parametrize(
    "running", [pytest.param(False, id="stopped"), pytest.param(True, id="running")]
)
RUNNING_WITH_SYNC_BUG = pytest.mark.parametrize(
    "running",
    [
        pytest.param(False, id="stopped"),
        pytest.param(True, id="running"),
    ],
)


@RUNNING
def test_a_scheduled_agent_gets_a_job_due_at_its_next_run(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    job = assert_job_follows(app, agent)
    assert job.id == f"agent-{agent['id']}"
    assert (getattr(job, "next_run_time", None) is not None) is running
    assert upcoming(job) == cron.next_fire_time(WEEKLY)


@RUNNING
def test_a_schedule_runs_in_its_agents_time_zone(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(
        client, schedule="0 9 * * *", timezone="America/New_York", task_instructions=TASK
    )
    job = assert_job_follows(app, agent)
    assert "America/New_York" in str(job.trigger)
    new_york = upcoming(job).astimezone(cron.zone("America/New_York"))
    assert (new_york.hour, new_york.minute) == (9, 0)

    moved = update_agent(client, agent["id"], timezone="Asia/Tokyo")
    job = assert_job_follows(app, moved)
    tokyo = parse_utc(moved["next_run_at"]).astimezone(cron.zone("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (9, 0)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", None, 7, "EST5EDT,M3.2.0"])
def test_an_unknown_time_zone_is_refused_and_nothing_changes(
    client: FlaskClient, zone: object
) -> None:
    agent = create_agent(client, schedule=DAILY, task_instructions=TASK)
    created = client.post("/api/agents", json={"name": "x", "schedule": DAILY, "timezone": zone})
    assert created.status_code == 422
    assert created.get_json()["errors"][0]["loc"] == ["body", "timezone"]
    changed = client.patch(f"/api/agents/{agent['id']}", json={"timezone": zone})
    assert changed.status_code == 422
    assert get_agent(client, agent["id"]) == agent
    assert len(client.get("/api/agents").get_json()) == 1


@RUNNING
def test_agents_without_an_active_schedule_get_no_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    create_agent(client, name="plain")
    create_agent(client, name="paused", schedule=WEEKLY, run_on_schedule=False)
    create_agent(client, name="switched on, nothing to run on", run_on_schedule=True)
    assert get_scheduler(app).jobs() == []


@RUNNING_WITH_SYNC_BUG
def test_changing_the_schedule_replaces_the_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    before = assert_job_follows(app, agent)
    changed = update_agent(client, agent["id"], schedule=DAILY)
    after = assert_job_follows(app, changed)
    assert str(after.trigger) != str(before.trigger)
    assert parse_utc(changed["next_run_at"]) == cron.next_fire_time(DAILY)
    assert get_agent(client, agent["id"])["next_run_at"] == changed["next_run_at"]


@RUNNING
def test_run_on_schedule_false_removes_the_job_and_true_brings_it_back(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    paused = update_agent(client, agent["id"], run_on_schedule=False)
    assert job_ids(app) == []
    assert paused["next_run_at"] is None
    resumed = update_agent(client, agent["id"], run_on_schedule=True)
    assert_job_follows(app, resumed)


@RUNNING_WITH_SYNC_BUG
def test_pausing_after_a_schedule_change_removes_the_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    update_agent(client, agent["id"], schedule=DAILY)
    update_agent(client, agent["id"], run_on_schedule=False)
    assert job_ids(app) == []


def test_an_agent_paused_before_start_gets_no_job_at_start(app: Flask, client: FlaskClient) -> None:
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    update_agent(client, agent["id"], schedule=DAILY)
    update_agent(client, agent["id"], run_on_schedule=False)
    get_scheduler(app).start()
    assert job_ids(app) == []


@RUNNING
def test_clearing_the_schedule_removes_the_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    cleared = update_agent(client, agent["id"], schedule=None)
    assert job_ids(app) == []
    assert cleared["next_run_at"] is None


@RUNNING
def test_deleting_the_agent_removes_its_job_only(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    doomed = create_agent(client, name="doomed", schedule=WEEKLY, task_instructions=TASK)
    kept = create_agent(client, name="kept", schedule=DAILY, task_instructions=TASK)
    delete_agent(client, doomed["id"])
    assert_job_follows(app, kept)


@RUNNING_WITH_SYNC_BUG
def test_deleting_an_agent_after_a_schedule_change_removes_its_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    update_agent(client, agent["id"], schedule=DAILY)
    delete_agent(client, agent["id"])
    assert job_ids(app) == []


@RUNNING
def test_updates_that_keep_the_schedule_keep_the_job(
    app: Flask, client: FlaskClient, running: bool
) -> None:
    scheduler_of(app, running)
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    job = assert_job_follows(app, agent)
    renamed = update_agent(client, agent["id"], name="Renamed")
    resent = update_agent(client, agent["id"], schedule=WEEKLY, task_instructions="Other task")
    for current in (renamed, resent):
        assert job_for(app, agent["id"]) is job
        assert_job_follows(app, current)


def test_a_monday_schedule_runs_on_monday_at_nine_utc(app: Flask, client: FlaskClient) -> None:
    get_scheduler(app).start()
    before = datetime.now(UTC)
    agent = create_agent(client, schedule="0 9 * * 1", task_instructions=TASK)
    next_run = parse_utc(agent["next_run_at"])
    assert before < next_run <= before + timedelta(days=7)
    assert next_run.strftime("%A %H:%M:%S") == "Monday 09:00:00"
    assert job_for(app, agent["id"]).next_run_time == next_run


# --- starting the scheduler ------------------------------------------------------


def test_start_loads_the_agents_already_in_the_database(make_app: AppFactory) -> None:
    writer = make_app(OFFLINE_DELAY_SECONDS=0.001).test_client()
    weekly = create_agent(writer, name="weekly", schedule=WEEKLY, task_instructions=TASK)
    daily = create_agent(writer, name="daily", schedule=DAILY, task_instructions=TASK)
    create_agent(writer, name="paused", schedule=WEEKLY, run_on_schedule=False)
    create_agent(writer, name="plain")

    served = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_ENABLED=True)
    scheduler = get_scheduler(served)
    assert scheduler.jobs() == []
    serving.start(served)
    assert scheduler.running
    jobs = {identifier: next_run for identifier, _name, next_run in scheduler.jobs()}
    # The process that holds the scheduler also reaps the runs of dead processes,
    # purges the expired idempotency keys, and rejects overdue tool approvals.
    assert jobs.pop("reap-interrupted-runs") is not None
    assert jobs.pop("purge-idempotency-keys") is not None
    assert jobs.pop("expire-tool-approvals") is not None
    assert jobs == {
        job_id(weekly["id"]): parse_utc(weekly["next_run_at"]),
        job_id(daily["id"]): parse_utc(daily["next_run_at"]),
    }


def test_start_does_not_start_the_scheduler_when_it_is_disabled(make_app: AppFactory) -> None:
    writer = make_app(OFFLINE_DELAY_SECONDS=0.001).test_client()
    create_agent(writer, schedule=WEEKLY, task_instructions=TASK)
    before = set(threading.enumerate())
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_ENABLED=False)
    serving.start(app)
    assert not get_scheduler(app).running
    assert get_scheduler(app).jobs() == []
    assert new_scheduler_threads(before) == []


def test_building_an_app_starts_no_scheduler_thread(make_app: AppFactory) -> None:
    before = set(threading.enumerate())
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_ENABLED=True)
    create_agent(app.test_client(), schedule=WEEKLY, task_instructions=TASK)
    assert not get_scheduler(app).running
    assert new_scheduler_threads(before) == []


def test_a_clock_that_is_not_a_function_is_refused(make_app: AppFactory) -> None:
    with pytest.raises(ConfigError, match="SCHEDULER_CLOCK must be a function"):
        make_app(SCHEDULER_CLOCK="2099-06-01T08:00:00Z")


def test_the_scheduler_reads_the_clock_it_is_given(make_app: AppFactory) -> None:
    """Jobs wait for the first tick after the clock's now, not the wall clock's."""
    clock = Clock(datetime(2099, 6, 1, 6, 29, 59, tzinfo=UTC))
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_CLOCK=clock)
    client = app.test_client()
    before = create_agent(client, name="before", schedule=DAILY, task_instructions=TASK)
    scheduler = scheduler_of(app, running=True)
    clock.advance(days=1)
    after = create_agent(client, name="after", schedule=DAILY, task_instructions=TASK)

    assert job_for(app, before["id"]).next_run_time == datetime(2099, 6, 1, 6, 30, tzinfo=UTC)
    assert parse_utc(get_agent(client, before["id"])["next_run_at"]) == datetime(
        2099, 6, 1, 6, 30, tzinfo=UTC
    )
    assert job_for(app, after["id"]).next_run_time == datetime(2099, 6, 2, 6, 30, tzinfo=UTC)
    assert scheduler.running


def test_starting_twice_is_harmless(app: Flask, client: FlaskClient) -> None:
    agent = create_agent(client, schedule=WEEKLY, task_instructions=TASK)
    before = set(threading.enumerate())
    scheduler = get_scheduler(app)
    scheduler.start()
    scheduler.start()
    assert len(new_scheduler_threads(before)) == 1
    assert_job_follows(app, agent)


# --- the job ----------------------------------------------------------------------


def test_one_tick_starts_one_scheduled_run_in_a_thread_of_its_own(
    app: Flask, client: FlaskClient, rows: Rows
) -> None:
    agent = create_agent(client, name="Watcher", schedule=EVERY_MINUTE, task_instructions=TASK)
    chat = client.post("/api/threads", json={"agent_id": agent["id"], "title": "Chat"})
    assert chat.status_code == 201, chat.get_json()
    tick = minute_floor(datetime.now(UTC))

    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is True
    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is False

    [run] = finished_runs(app, agent["id"], 1)
    assert (run.trigger, run.scheduled_for, run.status) == ("schedule", tick, "success")
    assert run.thread_id is not None and run.thread_id != chat.get_json()["id"]
    assert rows(Thread) == 2
    thread, messages = thread_with_messages(app, run.thread_id)
    assert thread.thread_type == "scheduled"
    assert thread.title == f"Watcher · scheduled run {tick:%Y-%m-%d %H:%M} UTC"
    assert [(m.role, m.processed) for m in messages] == [("user", True), ("assistant", True)]
    assert messages[0].content == TASK
    assert messages[1].content.endswith(f"You said: {TASK}")
    assert thread_with_messages(app, chat.get_json()["id"])[1] == []

    next_run = parse_utc(get_agent(client, agent["id"])["next_run_at"])
    assert next_run == tick + timedelta(minutes=1)


def test_another_tick_starts_another_run(app: Flask, client: FlaskClient, rows: Rows) -> None:
    agent = create_agent(client, schedule=EVERY_MINUTE, task_instructions=TASK)
    tick = minute_floor(datetime.now(UTC))
    following = tick + timedelta(minutes=1)
    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is True
    assert run_scheduled_agent(app, agent["id"], scheduled_for=following) is True
    assert run_scheduled_agent(app, agent["id"], scheduled_for=following) is False

    runs = finished_runs(app, agent["id"], 2)
    assert [run.scheduled_for for run in runs] == [tick, following]
    assert [run.status for run in runs] == ["success", "success"]
    assert rows(Thread) == 2
    next_run = parse_utc(get_agent(client, agent["id"])["next_run_at"])
    assert next_run == following + timedelta(minutes=1)


def race(app: Flask, agent_id: int, tick: datetime) -> list[bool]:
    """Call the job for one tick from two threads released together; return their results."""
    barrier = threading.Barrier(2, timeout=DEADLINE_SECONDS)
    results: list[bool] = []
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            barrier.wait()
            results.append(run_scheduled_agent(app, agent_id, scheduled_for=tick))
        except BaseException as exc:
            errors.append(exc)

    callers = [threading.Thread(target=fire, name=f"racer-{n}") for n in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=DEADLINE_SECONDS)
    assert not any(caller.is_alive() for caller in callers)
    assert errors == []
    return results


def test_racing_calls_for_one_tick_start_one_run(app: Flask, client: FlaskClient) -> None:
    """Both callers pass the application-level checks; only the unique key stops one."""
    agent = create_agent(client, schedule=EVERY_MINUTE, task_instructions=TASK)
    first = minute_floor(datetime.now(UTC))
    ticks = [first + timedelta(minutes=offset) for offset in range(3)]
    for tick in ticks:
        assert sorted(race(app, agent["id"], tick)) == [False, True]

    runs = finished_runs(app, agent["id"], len(ticks))
    assert [run.scheduled_for for run in runs] == ticks
    assert {run.status for run in runs} == {"success"}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"run_on_schedule": False}, id="unscheduled"),
        pytest.param({"schedule": None}, id="schedule-cleared"),
        pytest.param(None, id="deleted"),
    ],
)
def test_a_job_for_an_agent_no_longer_scheduled_starts_nothing(
    app: Flask, client: FlaskClient, rows: Rows, change: dict[str, Any] | None
) -> None:
    agent = create_agent(client, schedule=EVERY_MINUTE, task_instructions=TASK)
    if change is None:
        delete_agent(client, agent["id"])
    else:
        update_agent(client, agent["id"], **change)
    tick = minute_floor(datetime.now(UTC))
    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is False
    assert (rows(Run), rows(Thread), rows(ThreadMessage)) == (0, 0, 0)


def test_a_job_for_an_agent_that_never_existed_starts_nothing(app: Flask, rows: Rows) -> None:
    assert run_scheduled_agent(app, 4242, scheduled_for=minute_floor(datetime.now(UTC))) is False
    assert rows(Run) == 0


def test_a_job_for_an_agent_without_task_instructions_skips_the_tick(
    app: Flask, client: FlaskClient, rows: Rows, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerg.runs.scheduler")
    agent = create_agent(client, schedule=EVERY_MINUTE)
    tick = minute_floor(datetime.now(UTC))
    assert run_scheduled_agent(app, agent["id"], scheduled_for=tick) is False
    assert (rows(Run), rows(Thread), rows(ThreadMessage)) == (0, 0, 0)
    next_run = parse_utc(get_agent(client, agent["id"])["next_run_at"])
    assert next_run == tick + timedelta(minutes=1)
    assert any("no task instructions" in r.getMessage() for r in caplog.records)


# --- the tick a job is handed ---------------------------------------------------------


def latest_daily_tick() -> datetime:
    """The latest 06:30 UTC gone by: the agents below have no other tick within a day."""
    return next(cron.parse(DAILY).fire_times_before(datetime.now(UTC))).astimezone(UTC)


def test_a_job_that_runs_late_records_its_own_tick_not_the_latest(make_app: AppFactory) -> None:
    """With a grace of several intervals, a job an interval late still names its tick.

    APScheduler hands the job the time its trigger fired for (here a date
    trigger due the day before the latest tick); a job that read the clock
    instead would record the latest tick, and the latest tick's own run would
    then be dropped as a duplicate.
    """
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_MISFIRE_GRACE_SECONDS=3 * 86400)
    client = app.test_client()
    agent = create_agent(client, schedule=DAILY, task_instructions=TASK)
    late = latest_daily_tick() - timedelta(days=1)
    scheduler = scheduler_of(app, running=True)

    scheduler.scheduler.add_job(
        run_scheduled_agent,
        "date",
        run_date=late,
        args=[app, agent["id"]],
        kwargs={"scheduled_for": SCHEDULED_TIME},
    )

    [run] = finished_runs(app, agent["id"], 1)
    assert (run.scheduled_for, run.status) == (late, "success")
    # The latest tick is still free to run.
    assert run_scheduled_agent(app, agent["id"], scheduled_for=late + timedelta(days=1))


def test_an_agent_s_job_is_handed_the_tick_its_trigger_fired_for(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent's own job, left due at its latest tick, runs for exactly that tick."""
    caplog.set_level(logging.INFO, logger="zerg.runs.scheduler")
    app = make_app(OFFLINE_DELAY_SECONDS=0.001, SCHEDULER_MISFIRE_GRACE_SECONDS=2 * 86400)
    client = app.test_client()
    agent = create_agent(client, schedule=DAILY, task_instructions=TASK)
    scheduler = scheduler_of(app, running=True)
    job = job_for(app, agent["id"])
    assert job.kwargs == {"scheduled_for": SCHEDULED_TIME}
    tick = latest_daily_tick()

    job.modify(next_run_time=tick)

    [run] = finished_runs(app, agent["id"], 1)
    assert (run.scheduled_for, run.status) == (tick, "success")
    fired = [r.getMessage() for r in caplog.records if r.getMessage().startswith("schedule fired")]
    assert fired == [
        f"schedule fired: agent {agent['id']}, scheduled for {tick.isoformat()}, run {run.id}"
    ]
    assert upcoming(job_for(app, agent["id"])) == tick + timedelta(days=1)
    assert scheduler.running


def test_a_job_later_than_the_grace_is_logged_as_missed_and_starts_nothing(
    app: Flask, client: FlaskClient, rows: Rows, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerg.runs.scheduler")
    agent = create_agent(client, schedule=DAILY, task_instructions=TASK)
    scheduler = scheduler_of(app, running=True)

    scheduler.scheduler.add_job(
        run_scheduled_agent,
        "date",
        run_date=latest_daily_tick(),
        args=[app, agent["id"]],
        kwargs={"scheduled_for": SCHEDULED_TIME},
        id="too-late",
    )

    wait_for(
        lambda: any("too-late missed its time" in r.getMessage() for r in caplog.records),
        "the miss to be logged",
    )
    assert rows(Run) == 0
    assert scheduler.running


# --- failures do not stop the scheduler --------------------------------------------


def test_a_failing_job_is_logged_and_the_scheduler_keeps_running(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="zerg.runs.scheduler")
    scheduler = get_scheduler(app)
    scheduler.start()
    scheduler.scheduler.add_job(explode, "date", run_date=soon(), id="explode")
    wait_for(lambda: bool(failures_logged(caplog)), "the failure to be logged")
    assert scheduler.running

    ran: list[str] = []
    scheduler.scheduler.add_job(append_to, "date", run_date=soon(), args=[ran, "after"])
    wait_for(lambda: ran == ["after"], "the next job to run")
    assert scheduler.running

    [failure] = failures_logged(caplog)
    assert "explode" in failure.getMessage()
    assert "boom from a scheduled job" in failure.getMessage()
    assert failure.exc_info is not None


def test_a_scheduled_agent_without_task_instructions_does_not_stop_the_scheduler(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zerg.runs.scheduler")
    empty = create_agent(client, name="empty", schedule=EVERY_MINUTE)
    busy = create_agent(client, name="busy", schedule=EVERY_MINUTE, task_instructions=TASK)
    tick = minute_floor(datetime.now(UTC))
    scheduler = get_scheduler(app)
    scheduler.start()
    scheduler.scheduler.add_job(
        run_scheduled_agent, "date", run_date=soon(), args=[app, empty["id"], tick]
    )
    wait_for(
        lambda: any("no task instructions" in r.getMessage() for r in caplog.records),
        "the skipped tick to be logged",
    )

    scheduler.scheduler.add_job(
        run_scheduled_agent, "date", run_date=soon(), args=[app, busy["id"], tick]
    )
    [run] = finished_runs(app, busy["id"], 1)
    assert (run.scheduled_for, run.status) == (tick, "success")
    assert runs_of(app, empty["id"]) == []
    assert scheduler.running
    assert not failures_logged(caplog)


# --- flask scheduler list ---------------------------------------------------------------

LIST_LINE = re.compile(r"agent (\d+) \((.*)\): '(.*)' in (\S+), next run (\S+)")


def test_list_says_so_when_no_agent_is_scheduled(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner
) -> None:
    create_agent(client, name="plain")
    create_agent(client, name="paused", schedule=WEEKLY, run_on_schedule=False)
    result = runner.invoke(args=["scheduler", "list"])
    assert result.exit_code == 0, result.output
    assert result.output == "No agent runs on a schedule.\n"


def test_list_prints_each_scheduled_agent_with_its_next_run(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner
) -> None:
    weekly = create_agent(client, name="weekly", schedule=WEEKLY, task_instructions=TASK)
    create_agent(client, name="plain")
    create_agent(client, name="paused", schedule=DAILY, run_on_schedule=False)
    daily = create_agent(
        client, name="daily", schedule=DAILY, timezone="Asia/Kolkata", task_instructions=TASK
    )
    before = set(threading.enumerate())

    result = runner.invoke(args=["scheduler", "list"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    matches = [LIST_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    listed = [
        (int(m[1]), m[2], m[3], m[4], datetime.fromisoformat(m[5]))
        for m in matches
        if m is not None
    ]
    assert listed == [
        (
            agent["id"],
            agent["name"],
            agent["schedule"],
            agent["timezone"],
            parse_utc(agent["next_run_at"]),
        )
        for agent in (weekly, daily)
    ]
    assert not get_scheduler(app).running
    assert new_scheduler_threads(before) == []


def test_starting_refreshes_next_run_at_left_stale_by_downtime(
    app: Flask, client: FlaskClient
) -> None:
    agent = create_agent(client, schedule=DAILY, task_instructions=TASK)
    with session_scope(app) as session:
        stored = session.get(Agent, agent["id"])
        assert stored is not None
        stored.next_run_at = datetime(2020, 1, 1, 6, 30, tzinfo=UTC)

    get_scheduler(app).start()

    refreshed = parse_utc(get_agent(client, agent["id"])["next_run_at"])
    assert refreshed > datetime.now(UTC)
    assert (refreshed.hour, refreshed.minute) == (6, 30)


# --- concurrency and several workers -------------------------------------------------


@contextmanager
def interleaving() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so that races show."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)


@RUNNING
def test_sync_from_many_threads_at_once_keeps_one_job_per_agent(app: Flask, running: bool) -> None:
    """Request threads, the event listener and the election thread all change jobs."""
    scheduler = scheduler_of(app, running)
    choices = [WEEKLY, DAILY, None]
    barrier = threading.Barrier(8, timeout=DEADLINE_SECONDS)
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            barrier.wait()
            for step in range(300):
                scheduler.sync(step % 3 + 1, choices[(seed + step) % 3], True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(8)]
    with interleaving():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE_SECONDS)

    assert errors == []
    jobs = {job.id: str(job.trigger) for job in scheduler.scheduler.get_jobs()}
    assert jobs == {
        job_id(agent_id): str(cron.parse(*schedule))
        for agent_id, schedule in scheduler.applied.items()
    }


def scheduled_in_database(app: Flask) -> dict[str, str]:
    """The jobs the scheduled agents in the database call for: job id → trigger."""
    with session_scope(app, write=False) as session:
        agents = session.scalars(
            select(Agent).where(Agent.run_on_schedule.is_(True), Agent.schedule.is_not(None))
        ).all()
        return {job_id(agent.id): str(cron.parse(agent.schedule or "")) for agent in agents}


def scheduled_jobs(app: Flask) -> dict[str, str]:
    return {
        job.id: str(job.trigger)
        for job in get_scheduler(app).scheduler.get_jobs()
        if job.id.startswith("agent-")
    }


def churn_agents(client: FlaskClient, seed: int) -> None:
    """Create, change, pause and delete scheduled agents: the requests of one busy user."""
    made = []
    for index in range(6):
        schedule = WEEKLY if (seed + index) % 2 else DAILY
        made.append(
            create_agent(client, name=f"a{seed}-{index}", schedule=schedule, task_instructions=TASK)
        )
    for index, agent in enumerate(made):
        if index % 3 == 0:
            update_agent(client, agent["id"], schedule=f"{seed + index} 4 * * *")
        elif index % 3 == 1:
            update_agent(client, agent["id"], run_on_schedule=False)
        else:
            delete_agent(client, agent["id"])


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_schedule_changes_from_any_worker_reach_the_holder(
    make_app: AppFactory, request: pytest.FixtureRequest, backend: str
) -> None:
    """Two workers on one database, many requests on both; the holder's jobs follow.

    With the in-memory bus no event crosses between the workers, as when
    events are lost; with Redis they do, but may come while the holder loads.
    """
    config: dict[str, Any] = {
        "OFFLINE_DELAY_SECONDS": 0.001,
        "SCHEDULER_ENABLED": True,
        "SCHEDULER_LOCK_POLL_SECONDS": 0.2,
        "EVENT_BACKEND": backend,
    }
    if backend == "redis":
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
        config["EVENT_STREAM"] = request.getfixturevalue("redis_stream")
    holder, other = make_app(**config), make_app(**config)
    before = create_agent(
        other.test_client(), name="before", schedule=WEEKLY, task_instructions=TASK
    )
    serving.start(holder)
    serving.start(other)
    assert get_scheduler(holder).running and not get_scheduler(other).running
    update_agent(other.test_client(), before["id"], schedule=DAILY)

    workers = [
        threading.Thread(target=churn_agents, args=(worker.test_client(), seed))
        for seed, worker in enumerate([holder, other] * 3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    expected = scheduled_in_database(holder)
    assert len(expected) == 1 + 6 * 2
    wait_for(lambda: scheduled_jobs(holder) == expected, "the holder's jobs to follow")


def test_starting_while_agents_change_neither_deadlocks_nor_goes_stale(
    make_app: AppFactory,
) -> None:
    """Start publishes agent events while request threads publish theirs to it."""
    app = make_app(OFFLINE_DELAY_SECONDS=0.001)
    client = app.test_client()
    made = [
        create_agent(client, name=f"a{n}", schedule=WEEKLY, task_instructions=TASK)
        for n in range(40)
    ]
    barrier = threading.Barrier(5, timeout=DEADLINE_SECONDS)

    def flip(offset: int) -> None:
        own = app.test_client()
        barrier.wait()
        for agent in made[offset::4]:
            update_agent(own, agent["id"], schedule=DAILY)

    def start() -> None:
        barrier.wait()
        get_scheduler(app).start()

    threads = [threading.Thread(target=flip, args=(n,), daemon=True) for n in range(4)]
    threads.append(threading.Thread(target=start, daemon=True))
    with interleaving():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE_SECONDS)

    assert not any(thread.is_alive() for thread in threads), "deadlocked"
    get_scheduler(app).reconcile()
    assert scheduled_jobs(app) == scheduled_in_database(app)
    assert set(scheduled_jobs(app).values()) == {str(cron.parse(DAILY))}
