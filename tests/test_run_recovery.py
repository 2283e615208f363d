"""Runs whose worker is gone or lost track of them: reaped, swept, and their watchers told.

A process never takes its own live runs for dead, whatever its liveness lock
looks like; the runs of a process that died are interrupted by another; a run
whose end its own process could not store (the database was away) is ended
by that process's sweep once the database is back. Each end of a run that
had started reaches its watchers as ``stream_end``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text

from tests.conftest import AppFactory
from tests.helpers import orphan_run
from tests.helpers import reap_dead_owners
from tests.helpers import wait_for
from tests.test_locks import lose_lock
from tests.test_run_states import ACTIVE
from tests.test_runs import SLOW
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from tests.test_runs import wait_status
from zerg import db
from zerg import serving
from zerg.locks import make_locks
from zerg.models import Run
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.runs import lifecycle
from zerg.runs.pool import get_runner
from zerg.runs.scheduler import REAPER
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import reap_interrupted


def ends_of(seen: list[Event]) -> list[tuple[int, str]]:
    return [(e.data["run_id"], e.data["status"]) for e in seen if e.type is EventType.STREAM_END]


def test_the_reaper_never_interrupts_its_own_process_s_live_run(make_app: AppFactory) -> None:
    """One serving process holding the scheduler, a run spanning many reaper passes."""
    app = make_app(
        SCHEDULER_ENABLED=True,
        RUN_REAP_SECONDS=0.2,
        SCHEDULER_LOCK_POLL_SECONDS=0.2,
        OFFLINE_DELAY_SECONDS=0.1,
    )
    serving.start(app)
    jobs = get_scheduler(app)
    assert jobs.running
    client = app.test_client()
    thread = new_thread(client, "please take your time over this answer")
    run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]

    statuses: list[str] = []
    passes = set()
    deadline = time.monotonic() + 30
    while not statuses or statuses[-1] in ACTIVE:
        assert time.monotonic() < deadline, statuses[-1]
        statuses.append(client.get(f"/api/runs/{run_id}").get_json()["status"])
        passes.add(jobs.scheduler.get_job(REAPER).next_run_time)
        time.sleep(0.02)

    assert set(statuses[:-1]) <= set(ACTIVE), statuses
    assert statuses[-1] == "success"
    # The reaper ran all along, several times while the run was running.
    assert len(passes) >= 4
    assert [m["role"] for m in messages(client, thread["id"])] == ["user", "assistant"]
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_run_status"]) == ("idle", "success")


def test_the_reaper_takes_a_process_for_dead_only_when_its_lock_is_gone_twice(
    make_app: AppFactory,
) -> None:
    """A live process loses its liveness lock (its connection killed, its file removed).

    Its keeper would take the lock again within a poll; here it polls too
    seldom to, so the lock is still gone at the reaper's second pass.
    """
    owner = make_app(SCHEDULER_LOCK_POLL_SECONDS=3600, **SLOW)
    serving.start(owner)
    client = owner.test_client()
    thread = new_thread(client)
    run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client, run_id, "running")
    reaper = make_app()
    locks = make_locks(db.get_database(reaper).engine)
    try:
        lose_lock(owner, lifecycle.liveness_lock(get_runner(owner).instance_id))

        reap_interrupted(reaper, locks)
        assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "running"
        reap_interrupted(reaper, locks)
    finally:
        locks.close()

    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "interrupted"


def test_a_reaped_run_ends_its_stream_and_a_queued_one_has_none_to_end(app: Flask) -> None:
    seen: list[Event] = []
    events.get_bus(app).subscribe(seen.append)
    client = app.test_client()
    streaming, waiting = new_thread(client), new_thread(client)
    started = orphan_run(app, streaming)
    never_started = orphan_run(app, waiting)
    with db.session_scope(app) as session:
        assert lifecycle.begin_run(session, started) is not None
    assert reap_dead_owners(app) == 2

    assert ends_of(seen) == [(started, "interrupted")]
    final = [e.data for e in seen if e.type is EventType.RUN_UPDATED and e.data["finished_at"]]
    assert {(run["id"], run["status"]) for run in final} == {
        (started, "interrupted"),
        (never_started, "interrupted"),
    }
    # Its owner, were it alive after all, is told to stop streaming.
    cancels = [e.data for e in seen if e.type is EventType.RUN_CANCEL_REQUESTED]
    assert cancels == [{"run_id": started, "owner": "presumed-dead"}]


def wait_until_given_up(app: Flask) -> None:
    """Wait until the app's workers are done with their runs, ended or not."""
    wait_for(lambda: get_runner(app).in_flight() == 0, "the worker to give up", timeout=20)


def assert_swept(app: Flask, thread: dict[str, Any], run_id: int, seen: list[Event]) -> None:
    """The sweep ended the run failed, told its watchers, and freed its thread and agent."""
    client = app.test_client()
    run = wait_run(client, run_id, timeout=20)
    assert run["status"] == "failed"
    assert run["error"] == lifecycle.LOST
    wait_for(lambda: (run_id, "failed") in ends_of(seen), "the stream's end")
    assert ends_of(seen) == [(run_id, "failed")]
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_run_status"]) == ("error", "failed")
    # The question is still unanswered, and the thread takes a new run for it.
    again = client.post(f"/api/threads/{thread['id']}/run")
    assert again.status_code == 202
    assert wait_run(client, again.get_json()["id"])["status"] == "success"


def serve_a_running_run(app: Flask) -> tuple[dict[str, Any], int, list[Event]]:
    """Start serving, watch every event, and start a run; return its thread, id and the events."""
    serving.start(app)
    seen: list[Event] = []
    events.get_bus(app).subscribe(seen.append)
    client = app.test_client()
    thread = new_thread(client)
    run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client, run_id, "running")
    return thread, run_id, seen


def test_a_run_whose_end_cannot_be_stored_is_ended_by_its_process_s_sweep(
    make_app: AppFactory,
) -> None:
    """The runs table is gone as the run ends: neither its end nor its failure is stored."""
    app = make_app(SCHEDULER_LOCK_POLL_SECONDS=0.1, **SLOW)
    thread, run_id, seen = serve_a_running_run(app)
    engine = db.get_database(app).engine
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE runs RENAME TO runs_away"))
    try:
        wait_until_given_up(app)
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE runs_away RENAME TO runs"))

    assert_swept(app, thread, run_id, seen)


def test_a_run_whose_connection_dies_as_it_ends_is_ended_by_its_process_s_sweep(
    make_app: AppFactory, database_url: str
) -> None:
    """Its finishing and then its failing transaction each lose their connection."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL) to terminate a backend mid-transaction")
    app = make_app(SCHEDULER_LOCK_POLL_SECONDS=0.1, OFFLINE_DELAY_SECONDS=0.05)
    thread, run_id, seen = serve_a_running_run(app)
    engine = db.get_database(app).engine
    blocked = text("SELECT pid FROM pg_stat_activity WHERE :me = ANY(pg_blocking_pids(pid))")
    # The killer reads pg_stat_activity afresh each time: autocommit, no snapshot.
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as holder, autocommit.connect() as killer:
        # Whoever ends the run waits for the thread's lock, held here.
        holder.execute(
            text("SELECT id FROM agent_threads WHERE id = :id FOR UPDATE"), {"id": thread["id"]}
        )
        me = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        # A terminated backend may still be listed a moment: each step waits for a new one.
        killed: set[int] = set()

        def waiting() -> set[int]:
            return set(killer.execute(blocked, {"me": me}).scalars()) - killed

        for step in ("finishing", "recording the failure"):
            wait_for(lambda: bool(waiting()), step, timeout=20)
            [victim] = waiting()
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
            killed.add(victim)
        wait_until_given_up(app)
        holder.rollback()

    assert_swept(app, thread, run_id, seen)


def test_a_queued_run_its_pool_never_got_is_handed_over_by_the_sweep(
    make_app: AppFactory,
) -> None:
    """Committed as this process's, but never handed to its pool (the process was busy dying)."""
    app = make_app(SCHEDULER_LOCK_POLL_SECONDS=0.1, OFFLINE_DELAY_SECONDS=0.005)
    client = app.test_client()
    thread = new_thread(client)
    run_id = orphan_run(app, thread, owner=get_runner(app).instance_id)
    assert get_runner(app).held() == frozenset()

    serving.start(app)

    assert wait_run(client, run_id)["status"] == "success"
    assert [m["role"] for m in messages(client, thread["id"])] == ["user", "assistant"]
    with db.session_scope(app, write=False) as session:
        assert session.get(Run, run_id).owner == get_runner(app).instance_id
