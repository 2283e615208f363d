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
from tests.helpers import create_agent
from tests.helpers import get_agent
from tests.helpers import wait_for
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from zerg import db
from zerg.models import Agent
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import cron
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import job_id
from zerg.runs.scheduler import run_scheduled_agent

MODEL = STANDIN_MODEL
EVERY_FIVE = "*/5 * * * *"
FIRST_TICK = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


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


def stopped_across_ticks(app: Flask, minutes: int) -> dict[str, Any]:
    """An agent on a five-minute schedule whose last scheduler stopped ``minutes`` ago."""
    agent = create_agent(
        app.test_client(), schedule=EVERY_FIVE, task_instructions="Report.", name="sleeper"
    )
    with db.session_scope(app) as session:
        row = session.get(Agent, agent["id"])
        assert row is not None
        # The tick the stopped scheduler was waiting for, long gone by now.
        row.next_run_at = cron.next_fire_time(
            EVERY_FIVE, datetime.now(UTC) - timedelta(minutes=minutes)
        )
    return agent


def scheduled_runs(app: Flask, agent_id: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = (
        app.test_client().get(f"/api/runs?agent_id={agent_id}&trigger=schedule").get_json()
    )
    return runs


def test_ticks_missed_while_stopped_are_logged_and_skipped_by_default(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    agent = stopped_across_ticks(app, minutes=17)
    with caplog.at_level(logging.WARNING, logger="zerg.runs.scheduler"):
        get_scheduler(app).start()
    missed = [r.getMessage() for r in caplog.records if "missed its tick" in r.getMessage()]
    assert len(missed) in (3, 4)  # 17 minutes span three or four five-minute ticks
    assert all(f"agent {agent['id']} " in line for line in missed)
    assert scheduled_runs(app, agent["id"]) == []
    assert datetime.fromisoformat(get_agent(app.test_client(), agent["id"])["next_run_at"]) > (
        datetime.now(UTC)
    )


def test_catch_up_latest_runs_the_latest_missed_tick_once_across_processes(
    make_app: AppFactory,
) -> None:
    first = make_app(SCHEDULE_CATCH_UP="latest", OFFLINE_DELAY_SECONDS=0.001)
    second = make_app(SCHEDULE_CATCH_UP="latest", OFFLINE_DELAY_SECONDS=0.001)
    agent = stopped_across_ticks(first, minutes=17)
    expected = missed_ticks_now()

    starting = [threading.Thread(target=get_scheduler(app).start) for app in (first, second)]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()

    runs = scheduled_runs(first, agent["id"])
    assert len(runs) == 1, [(r["scheduled_for"], r["created_at"]) for r in runs]
    assert datetime.fromisoformat(runs[0]["scheduled_for"]) == expected
    wait_for(
        lambda: scheduled_runs(first, agent["id"])[0]["status"] == "success",
        "the catch-up run to finish",
    )


def missed_ticks_now() -> datetime:
    """The latest five-minute tick before now: what catching up must run."""
    return next(cron.parse(EVERY_FIVE).fire_times_before(datetime.now(UTC))).astimezone(UTC)
