"""Schedules people can trust: a failing schedule pauses itself, missed ticks are handled."""

from __future__ import annotations

import logging
import threading
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from tests.conftest import STANDIN_MODEL
from tests.conftest import AppFactory
from tests.helpers import Clock
from tests.helpers import create_agent
from tests.helpers import get_agent
from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from zerg import db
from zerg import serving
from zerg.models import Agent
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import job_id
from zerg.runs.scheduler import run_scheduled_agent

MODEL = STANDIN_MODEL
EVERY_FIVE = "*/5 * * * *"
FIRST_TICK = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
# A tick long after any day this suite runs on: APScheduler, which reads the
# real clock, never reaches the ticks of the tests whose clock is set near it.
LATER_TICK = datetime(2099, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def model_app(make_app: AppFactory, standin_config: dict[str, Any]) -> Flask:
    return make_app(**standin_config, SCHEDULE_MAX_FAILURES=2)


def tick(app: Flask, agent_id: int, number: int) -> dict[str, Any]:
    """Fire the agent's schedule for its ``number``-th tick and wait for the run to end."""
    client = app.test_client()
    assert run_scheduled_agent(app, agent_id, FIRST_TICK + timedelta(minutes=5 * number))

    def ended() -> bool:
        runs = client.get(f"/api/runs?agent_id={agent_id}&trigger=schedule").get_json()
        return len(runs) == number + 1 and runs[0]["status"] not in ("queued", "running")

    wait_for(ended, f"scheduled run {number} to end")
    return get_agent(client, agent_id)


def test_failed_scheduled_runs_in_a_row_pause_the_schedule(
    model_app: Flask, standin: OpenAIStandIn
) -> None:
    client = model_app.test_client()
    updates: list[dict[str, Any]] = []
    events.get_bus(model_app).subscribe(
        lambda event: updates.append(event.data) if event.type is EventType.AGENT_UPDATED else None
    )
    agent = create_agent(
        client, model=MODEL, schedule=EVERY_FIVE, task_instructions="Report.", name="flaky"
    )
    scheduler = get_scheduler(model_app)
    assert scheduler.scheduler.get_job(job_id(agent["id"])) is not None
    standin.script(Reply(status=500, message="down"), Reply(status=500, message="still down"))

    once = tick(model_app, agent["id"], 0)
    assert (once["consecutive_failures"], once["run_on_schedule"]) == (1, True)
    assert once["last_run_status"] == "failed"

    paused = tick(model_app, agent["id"], 1)
    assert paused["consecutive_failures"] == 2
    assert (paused["run_on_schedule"], paused["next_run_at"]) == (False, None)
    assert "schedule paused after 2 scheduled runs failed in a row" in paused["last_error"]
    assert "still down" in paused["last_error"]
    assert updates[-1]["run_on_schedule"] is False
    assert scheduler.scheduler.get_job(job_id(agent["id"])) is None

    # Switching it back on starts a fresh count, and brings the job back.
    resumed = client.patch(f"/api/agents/{agent['id']}", json={"run_on_schedule": True})
    assert resumed.get_json()["consecutive_failures"] == 0
    assert resumed.get_json()["next_run_at"] is not None
    assert scheduler.scheduler.get_job(job_id(agent["id"])) is not None


def test_a_success_clears_the_count_and_other_runs_do_not_count(
    model_app: Flask, standin: OpenAIStandIn
) -> None:
    client = model_app.test_client()
    agent = create_agent(
        client, model=MODEL, schedule=EVERY_FIVE, task_instructions="Report.", name="mostly fine"
    )
    standin.script(Reply(status=500, message="down"), Reply(pieces=["All ", "good."]))
    assert tick(model_app, agent["id"], 0)["consecutive_failures"] == 1
    assert tick(model_app, agent["id"], 1)["consecutive_failures"] == 0

    # A failed run that no schedule started leaves the count alone.
    standin.script(Reply(status=500, message="down"), Reply(status=500, message="down"))
    manual = client.post(f"/api/agents/{agent['id']}/run").get_json()
    wait_for(
        lambda: client.get(f"/api/runs/{manual['id']}").get_json()["status"] == "failed",
        "the manual run to fail",
    )
    after_manual = get_agent(client, agent["id"])
    assert (after_manual["consecutive_failures"], after_manual["run_on_schedule"]) == (0, True)
    assert tick(model_app, agent["id"], 2)["run_on_schedule"] is True


def test_a_bad_failure_limit_is_refused(make_app: AppFactory) -> None:
    from zerg.config import ConfigError

    for value in (0, "many", -1):
        with pytest.raises(ConfigError, match="SCHEDULE_MAX_FAILURES"):
            make_app(SCHEDULE_MAX_FAILURES=value)


def left_waiting_for(app: Flask, tick: datetime) -> dict[str, Any]:
    """An agent on a five-minute schedule whose last scheduler was waiting for ``tick``."""
    agent = create_agent(
        app.test_client(), schedule=EVERY_FIVE, task_instructions="Report.", name="sleeper"
    )
    with db.session_scope(app) as session:
        row = session.get(Agent, agent["id"])
        assert row is not None
        row.next_run_at = tick
    return agent


def scheduled_runs(app: Flask, agent_id: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = (
        app.test_client().get(f"/api/runs?agent_id={agent_id}&trigger=schedule").get_json()
    )
    return runs


def next_run_at(app: Flask, agent_id: int) -> datetime:
    return datetime.fromisoformat(get_agent(app.test_client(), agent_id)["next_run_at"])


def missed_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "missed its tick" in r.getMessage()]


def start_together(*apps: Flask) -> None:
    """Start the apps' schedulers at once, as processes coming up together would."""
    starting = [threading.Thread(target=get_scheduler(app).start) for app in apps]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()


def test_ticks_missed_beyond_the_grace_are_logged_and_skipped_by_default(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(LATER_TICK + timedelta(minutes=17))
    app = make_app(SCHEDULER_CLOCK=clock)
    agent = left_waiting_for(app, LATER_TICK)
    with caplog.at_level(logging.WARNING, logger="zerg.runs.scheduler"):
        get_scheduler(app).start()
    # 08:00, 08:05, 08:10 and 08:15 went by; at 08:17 the latest is 2 minutes late.
    assert missed_lines(caplog) == [
        f"agent {agent['id']} missed its tick at {LATER_TICK + timedelta(minutes=m)}: "
        "no scheduler ran"
        for m in (15, 10, 5, 0)
    ]
    assert scheduled_runs(app, agent["id"]) == []
    assert next_run_at(app, agent["id"]) == LATER_TICK + timedelta(minutes=20)


@pytest.mark.parametrize(
    ("catch_up", "late", "runs"),
    [
        pytest.param("none", timedelta(seconds=3), 1, id="within-the-grace"),
        pytest.param("none", timedelta(seconds=30), 1, id="at-the-grace"),
        pytest.param("none", timedelta(seconds=31), 0, id="beyond-the-grace"),
        pytest.param("latest", timedelta(minutes=2), 1, id="latest-whatever-its-age"),
    ],
)
def test_a_starting_scheduler_runs_the_latest_missed_tick_once_across_processes(
    make_app: AppFactory,
    caplog: pytest.LogCaptureFixture,
    catch_up: str,
    late: timedelta,
    runs: int,
) -> None:
    """Two schedulers start together ``late`` after a tick nobody ran; the one before it is old."""
    clock = Clock(LATER_TICK + late)
    config = {"SCHEDULE_CATCH_UP": catch_up, "OFFLINE_DELAY_SECONDS": 0.001}
    first = make_app(**config, SCHEDULER_CLOCK=clock)
    second = make_app(**config, SCHEDULER_CLOCK=clock)
    agent = left_waiting_for(first, LATER_TICK - timedelta(minutes=5))

    with caplog.at_level(logging.INFO, logger="zerg.runs.scheduler"):
        start_together(first, second)

    ran = scheduled_runs(first, agent["id"])
    assert [datetime.fromisoformat(run["scheduled_for"]) for run in ran] == [LATER_TICK] * runs
    assert next_run_at(first, agent["id"]) == LATER_TICK + timedelta(minutes=5)
    skipped = LATER_TICK - timedelta(minutes=5)
    assert f"agent {agent['id']} missed its tick at {skipped}: no scheduler ran" in (
        missed_lines(caplog)
    )
    if runs:
        wait_for(
            lambda: scheduled_runs(first, agent["id"])[0]["status"] == "success",
            "the late tick's run to finish",
        )


def test_a_failover_within_the_grace_runs_the_tick_the_old_holder_missed(
    make_app: AppFactory,
) -> None:
    """The holder stops just before a tick; the worker taking over 3 s later runs it, once."""
    clock = Clock(LATER_TICK - timedelta(seconds=10))
    config = {
        "SCHEDULER_ENABLED": True,
        "SCHEDULER_LOCK_POLL_SECONDS": 0.05,
        "SCHEDULER_CLOCK": clock,
        "OFFLINE_DELAY_SECONDS": 0.001,
    }
    holder, successor = make_app(**config), make_app(**config)
    agent = left_waiting_for(holder, LATER_TICK - timedelta(minutes=5))
    serving.start(holder)
    serving.start(successor)
    assert get_scheduler(holder).running and not get_scheduler(successor).running
    assert next_run_at(holder, agent["id"]) == LATER_TICK

    clock.advance(seconds=13)
    serving.stop(holder)

    wait_for(lambda: scheduled_runs(successor, agent["id"]) != [], "the successor to run the tick")
    assert get_scheduler(successor).running
    [run] = scheduled_runs(successor, agent["id"])
    assert datetime.fromisoformat(run["scheduled_for"]) == LATER_TICK
    assert next_run_at(successor, agent["id"]) == LATER_TICK + timedelta(minutes=5)
